/*
 * The backward and the step (engine_step.c), for the files above it: the
 * life cycle in engine.c and the checkpoint code in engine_ckpt.c.
 */
#ifndef ZERO_ZERO_ENGINE_STEP_H
#define ZERO_ZERO_ENGINE_STEP_H

#include "zero/engine_internal.h"

/* The parameter's gradient buffer, taking its bucket's staging on first use
 * inside a backward (stages 2-3); NULL outside the gradient window. */
void *engine_param_grad_lazy(zero_param_h p);
/* Brings the fp32 masters to the weights the trainer sees (setup, checkpoint load). */
zero_status_t engine_write_back(zero_engine_h e);
/* Gradient staging of bucket @p b (stages 2-3), from the gradient pool; at
 * stage 2, when every slot is taken, the oldest reduction in flight is
 * finished to free one (so staging lives here, beside the reductions); a
 * one-off buffer only when nothing is in flight. Put returns it. */
zero_status_t engine_staging_get(zero_engine_h e, int b, void **ptr_p);
/* qgZ: bytes of bucket @p b's quantized reduction behind its staging (0 without qgZ). */
size_t engine_reduce_wire_bytes(zero_engine_h e, int b);
void engine_staging_put(zero_engine_h e, int b, void *ptr);
/* @p want, or the store's range bound (zero_store_max_range) where that is
 * smaller: the length of one range every walk over the owned state takes
 * (initial values, write-back, Lamb, checkpoints). */
size_t engine_range_max(zero_engine_h e, size_t want);
/* Every bucket's owned slice (its group, shard offset and length / W), in
 * bucket order, for the store's choice at offload_optimizer.ratio < 1
 * (offload/offload_ratio.h); *buckets_p (zero_free) holds
 * layout->num_buckets entries. ZERO_ERR_NO_MEMORY (engine error). */
zero_status_t engine_offload_buckets(zero_engine_h e, zero_offload_bucket_t **buckets_p);
/* The step's fp32 gradient scratch of every 16-bit group (setup). */
zero_status_t engine_scratch_alloc(zero_engine_h e);

#endif /* ZERO_ZERO_ENGINE_STEP_H */
