/*
 * Stage 3 gathers (engine_gather.c), for the files above it: the step and
 * the checkpoint code drop every gathered copy before they rewrite the shards.
 */
#ifndef ZERO_ZERO_ENGINE_GATHER_H
#define ZERO_ZERO_ENGINE_GATHER_H

#include "zero/engine_internal.h"

/* Starts the allgather of bucket @p bucket's weights into a gather buffer (no-op when gathered). */
zero_status_t engine_gather_bucket_start(zero_engine_h e, int bucket);
/* Waits for it; the parameter's data then points at the full weights. */
zero_status_t engine_gather_bucket_finish(zero_engine_h e, int bucket);
/* qwZ: bytes of bucket @p bucket's encoded gather (0 without qwZ, and for
 * persistent parameters, which are gathered unquantized). */
size_t engine_gather_wire_bytes(zero_engine_h e, int bucket);
/* Waits for every gather in flight and frees every gathered copy (not the persistent ones). */
void engine_gather_drop_all(zero_engine_h e);

#endif /* ZERO_ZERO_ENGINE_GATHER_H */
