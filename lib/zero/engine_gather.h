/*
 * Stage 3 gathers (engine_gather.c), for the files above it: the step and
 * the checkpoint code drop every gathered copy before they rewrite the shards.
 */
#ifndef ZERO_ZERO_ENGINE_GATHER_H
#define ZERO_ZERO_ENGINE_GATHER_H

#include "zero/engine_internal.h"

/* A window on the stage-3 shard of group @p gi, elements [so, so + n): a
 * pointer into params_shard, or, with offload_param "nvme", into a staging
 * buffer of the parameter file, or, with offload_param "cpu" on a device
 * rank, the device staging e->param_stage (write-only: its content at open
 * is not the shard's; closed dirty, it is downloaded into the host shard).
 * n is at most engine_shard_max. Close it dirty when written; closing an
 * unopened window does nothing. One window at a time with offload_param. */
typedef struct engine_shard_window {
    void *data;
    zero_param_window_t file;
    int staged, group;           /* offload_param "cpu": data is e->param_stage for [so, so + n) of group */
    size_t so, n;
} engine_shard_window_t;
zero_status_t engine_shard_open(zero_engine_h e, int gi, size_t so, size_t n, engine_shard_window_t *w);
zero_status_t engine_shard_close(zero_engine_h e, engine_shard_window_t *w, int dirty);
/* The longest shard window (0: no bound, the shard is in memory). */
size_t engine_shard_max(zero_engine_h e);
/* offload_param "cpu" on a device rank: shard element @p so of group @p gi in
 * host memory (where the CPU offload store's step writes the weights); NULL
 * without it. */
void *engine_shard_host(zero_engine_h e, int gi, size_t so);

/* Starts the allgather of bucket @p bucket's weights into a gather buffer (no-op when gathered). */
zero_status_t engine_gather_bucket_start(zero_engine_h e, int bucket);
/* Waits for it; the parameter's data then points at the full weights. */
zero_status_t engine_gather_bucket_finish(zero_engine_h e, int bucket);
/* qwZ: bytes of bucket @p bucket's encoded gather over all ranks, which its
 * gather block holds behind the weights (0 without qwZ, and for persistent
 * parameters, which are gathered unquantized). Under hpZ only the gathers
 * that refresh the secondary copy use them; those inside the group are not
 * quantized. */
size_t engine_gather_wire_bytes(zero_engine_h e, int bucket);
/* Device qwZ and qgZ (ops quant_encode8): @p n elements of @p dtype from
 * @p src encoded with the int8 codec into @p slot, a wire slot of
 * zero_comm_quant_stride(ZERO_QUANT_INT8, n) bytes, its padding behind the
 * code zeroed; queued on the engine's stream. Errors as the operations'. */
zero_status_t engine_quant_encode_slot(zero_engine_h e, zero_dtype_t dtype, const void *src, size_t n, void *slot);
/* hpZ: the bytes of each of the two buffers of the slices' refresh (the
 * largest non-persistent bucket's allgather over all ranks, or its qwZ wire
 * bytes, aligned); 0 without hpZ or when every parameter is persistent. The
 * pools hold twice this from the first slice gathered with a stale copy on. */
size_t engine_gather_hpz_scratch_bytes(zero_engine_h e);
/* Waits for every gather in flight and frees every gathered copy (not the
 * persistent ones) and every gathered slice. */
void engine_gather_drop_all(zero_engine_h e);
/* ZERO_ERR_STATE, naming the first, while the trainer holds a gathered slice (@p call: for the message). */
zero_status_t engine_slices_check_released(zero_engine_h e, const char *call);
/* Frees the slices' records (destroy). */
void engine_slices_destroy(zero_engine_h e);

/* Elements per index of @p p's first dimension (numel / shape[0]). */
size_t engine_row_elems(const struct zero_param *p);
/* Checks a slice's arguments and the engine's state, naming @p call, the
 * parameter and the rows: ZERO_ERR_INVALID_ARG (not this engine's, no
 * dimension, out of range), ZERO_ERR_STATE (before setup, failed). */
zero_status_t engine_slice_check(zero_engine_h e, zero_param_h p, int64_t first, int64_t count, const char *call);

#endif /* ZERO_ZERO_ENGINE_GATHER_H */
