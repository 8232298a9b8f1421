/*
 * The engine's int8 codec operations (engine_ops.h: quant_encode8,
 * quant_decode8, quant_reduce8) done on the CPU by the C codec (comm/quant.h).
 * Put into a copy of the host operations table, they make the engine take
 * its device path for qwZ and qgZ (engine_gather.c, engine_step.c) on host
 * memory, so that path's logic runs without a GPU and can be held against
 * the host's quantized collectives (comm/quant_coll.h) bit for bit; the
 * kernels give the C codec's bytes (comm-quant-cuda checks that).
 *
 * reduce8 is the plain reference (tests/common/quant_sum_ref.h), not taken
 * from quant_coll.c, so the comparison checks both. Like a kernel, encode8
 * leaves garbage in the wire slot's padding: the engine must zero it, and
 * decode8 and reduce8 count padding bytes that arrive non-zero.
 */
#ifndef ZERO_TEST_CODEC_STANDIN_H
#define ZERO_TEST_CODEC_STANDIN_H

#include "zero/engine_ops.h"

typedef struct codec_standin_counts {
    int encodes, decodes, reduces;   /* calls */
    int dirty_pads;                  /* padding bytes read that were not zero */
} codec_standin_counts_t;

extern codec_standin_counts_t codec_standin;

/* Sets @p ops' three codec operations to the stand-ins. */
void codec_standin_install(engine_ops_t *ops);

#endif /* ZERO_TEST_CODEC_STANDIN_H */
