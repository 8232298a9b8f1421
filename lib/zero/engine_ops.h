/*
 * The engine's arithmetic, one table per memory kind.
 *
 * Every operation the engine runs on gradients, weights and optimizer state
 * goes through an engine_ops_t: accumulating reduced gradients, the casts
 * between fp32 and bf16/fp16, the overflow check with the sum of squares,
 * unscaling with clipping, and each optimizer's update (Lamb in its two
 * phases). The engine picks the table once, by the memory kind its buffers
 * live in (engine_ops_for_kind), and never branches on the kind itself. The
 * host table (engine_ops_host.c) wraps lib/optim's SIMD kernels and thread
 * pool; a device table would launch kernels on a stream.
 *
 * Results. What the engine must know on the host (the non-finite count, the
 * sum of squares, Lamb's per-parameter norms) is accumulated by the kernels
 * into a result record: an array of doubles in the kind's memory, cleared at
 * the start of a step. The engine copies the slots it needs to the host with
 * result_read after all the kernels of that phase were queued, not per
 * bucket: for the host kind the copy is a memcpy; for a device kind it is
 * the step's one device-to-host copy (Lamb reads its norms a second time,
 * after phase 1, since they are summed over ranks before phase 2). Counts and
 * norms stay double from the kernel to the caller.
 *
 * Order (device kinds). A device table queues everything on one stream, the
 * trainer's (engine_ops_params_t::stream), so the engine's work and the
 * trainer's kernels are ordered without the host waiting. Collectives run on
 * the communicator's stream: order_begin records an event on the engine's
 * stream for the collective to wait on and hands out a completion event;
 * order_end makes the engine's stream wait for that completion. The host
 * table has neither (its data is in place when a call returns). The host
 * waits for the device only in result_read (once per step), download and
 * sync (set-up, checkpoints, destroy).
 *
 * Pointers passed to an operation are in the kind's memory, except where a
 * parameter says host. Errors are logged by the operation that detects them.
 */
#ifndef ZERO_ZERO_ENGINE_OPS_H
#define ZERO_ZERO_ENGINE_OPS_H

#include "optim/optim_hparams.h"
#include "util/thread_pool.h"

#include <stddef.h>
#include <stdint.h>
#include <zero/comm.h>
#include <zero/memory.h>
#include <zero/status.h>
#include <zero/types.h>

/* Slots of the per-step result record. */
enum {
    ENGINE_RESULT_NONFINITE = 0,     /* inf/nan gradients counted (as a double) */
    ENGINE_RESULT_SUM_SQUARES = 1,   /* sum of the squared (loss-scaled) gradients */
    ENGINE_RESULT_LAMB = 2,          /* Lamb: 2 per parameter p at LAMB + 2p: sum of w^2, sum of u^2 */
};

/* The number of slots a step needs for @p num_lamb_params parameters (0 without Lamb). */
static inline size_t engine_result_slots(size_t num_lamb_params)
{
    return ENGINE_RESULT_LAMB + 2 * num_lamb_params;
}

/* What a table's context is made for. */
typedef struct engine_ops_params {
    zero_thread_pool_t *pool;   /* runs host work (borrowed, may be NULL) */
    int device;                 /* device kinds: the CUDA device index; -1: local_rank modulo the visible devices */
    int local_rank;             /* this rank's index among the ranks of its node */
    void *stream;               /* device kinds: the trainer's cudaStream_t; NULL: the legacy default stream */
} engine_ops_params_t;

typedef struct engine_ops {
    const char *name;           /* "host", "cuda" */
    zero_mem_kind_t kind;       /* the memory its operations work on */
    int host_readable;          /* 1: the host may read and write that memory directly */

    zero_status_t (*create)(const engine_ops_params_t *params, void **ctx_p);
    /* Waits for the context's queued work first. */
    void (*destroy)(void *ctx);
    /* What the table runs on, for logs ("avx512", a device name). */
    const char *(*describe)(const void *ctx);

    /* The result record: [slots] doubles of the kind's memory. */
    zero_status_t (*result_create)(void *ctx, size_t slots, double **record_p);
    void (*result_destroy)(void *ctx, double *record);
    /* Sets every slot to 0. */
    zero_status_t (*result_clear)(void *ctx, double *record, size_t slots);
    /* Copies slots [first, first + count) into @p host: waits (on the host)
     * for the work queued before it; the step's one wait on the device. */
    zero_status_t (*result_read)(void *ctx, const double *record, size_t first, size_t count, double *host);

    /* Memory of the kind: zero and copy are queued in order with the
     * operations below; upload (from the host) and download (to the host)
     * are complete, in both directions, when they return. */
    zero_status_t (*zero)(void *ctx, void *ptr, size_t bytes);
    zero_status_t (*copy)(void *ctx, void *dst, const void *src, size_t bytes);
    zero_status_t (*upload)(void *ctx, void *dst, const void *host_src, size_t bytes);
    zero_status_t (*download)(void *ctx, void *host_dst, const void *src, size_t bytes);
    /* The host waits until every piece of work on the device is done (also
     * what other streams queued: set-up and checkpoints only). NULL: nothing
     * to wait for. */
    zero_status_t (*sync)(void *ctx);
    /* Collectives ordered on the engine's stream (see "Order" above); NULL
     * for kinds whose data is in place when a call returns. order_begin
     * fills @p order (a wait event recorded on the stream now, a completion
     * event the collective records); order_end makes the stream wait for
     * @p done_event and takes the event back (also for a collective that
     * failed to start: a never-recorded event is no wait). */
    zero_status_t (*order_begin)(void *ctx, zero_comm_order_t *order);
    zero_status_t (*order_end)(void *ctx, void *done_event);

    /* dst += src over @p n elements of @p dtype (16-bit sums in fp32, rounded once). */
    zero_status_t (*accumulate)(void *ctx, zero_dtype_t dtype, void *dst, const void *src, size_t n);
    /* fp32 <-> @p dtype (BF16 or FP16; round to nearest even). */
    zero_status_t (*to_16)(void *ctx, zero_dtype_t dtype, uint16_t *dst, const float *src, size_t n);
    zero_status_t (*from_16)(void *ctx, zero_dtype_t dtype, float *dst, const uint16_t *src, size_t n);
    /* Adds the non-finite count and the sum of squares of @p grads to the
     * record's NONFINITE and SUM_SQUARES slots. */
    zero_status_t (*check_grads)(void *ctx, zero_dtype_t dtype, const void *grads, size_t n, double *record);
    /* Unscale and clip: from the global sum of squares (host, summed over
     * ranks) and the loss scale, the gradient norm (*grad_norm_p, unscaled)
     * and the multiplier every gradient gets in the update (*grad_scale_p:
     * clip coefficient / loss scale; @p max_norm <= 0: no clipping). */
    void (*unscale_clip)(void *ctx, double sum_squares, double loss_scale, double max_norm, double *grad_norm_p,
                         float *grad_scale_p);

    /* The elementwise update of @p hp (Adam/AdamW, SGD, Adagrad, Lion) over @p s. */
    zero_status_t (*optimizer_step)(void *ctx, const zero_optim_hparams_t *hp, const zero_optim_slice_t *s);
    /* The fused step (optional: NULL where the kind has none; the engine then
     * keeps the unfused path). check_grads_add adds the sum of squares of
     * (a + b), formed in fp32 and never stored, times @p scale to the
     * record's SUM_SQUARES slot, and 1 to NONFINITE when that is not finite;
     * optimizer_step_fused is optimizer_step over the gradient s->g + g_add,
     * summed in registers (only for optimizers with such a kernel:
     * zero_optim_hparams_has_fused). */
    zero_status_t (*check_grads_add)(void *ctx, const float *a, const float *b, size_t n, double scale,
                                     double *record);
    zero_status_t (*optimizer_step_fused)(void *ctx, const zero_optim_hparams_t *hp, const zero_optim_slice_t *s,
                                          const float *g_add);
    /* 16-bit gradients (optional, as above): @p dst = the 16-bit average
     * ((peer + own) / @p divisor in fp32, rounded once to @p dtype, as a
     * reduce-scatter's last hop rounds it) widened to fp32; @p peer of
     * @p peer_dtype (fp32 or @p dtype). */
    zero_status_t (*average_from_16)(void *ctx, zero_dtype_t dtype, float *dst, const uint16_t *own,
                                     zero_dtype_t peer_dtype, const void *peer, float divisor, size_t n);
    /* Fills a zeroed state array as the optimizer starts it (Adagrad's accumulator). */
    zero_status_t (*init_state)(void *ctx, const zero_optim_hparams_t *hp, float *s1, size_t n);
    /* Lamb phase 1 over one parameter's piece @p s: updates the moments and
     * adds the piece's sums of w^2 and u^2 to record slots @p slot, @p slot + 1. */
    zero_status_t (*lamb_phase1)(void *ctx, const zero_optim_hparams_t *hp, const zero_optim_slice_t *s,
                                 double *record, size_t slot);
    /* Lamb phase 2 over the piece, with the parameter's global sums (host). */
    zero_status_t (*lamb_phase2)(void *ctx, const zero_optim_hparams_t *hp, const zero_optim_slice_t *s,
                                 double w_sq, double u_sq);
    /* qwZ on memory the host cannot read (optional: NULL on host memory,
     * where the quantized allgather of comm/quant_coll.h encodes and decodes):
     * the int8 block codec of comm/quant.h on the engine's stream, the same
     * bytes as zero_quant_encode/decode. encode8 writes
     * zero_quant_bytes(ZERO_QUANT_INT8, n) bytes to @p wire; decode8 reads
     * them and writes n elements of @p dtype (fp32, bf16 or fp16). */
    zero_status_t (*quant_encode8)(void *ctx, zero_dtype_t dtype, const void *src, size_t n, void *wire);
    zero_status_t (*quant_decode8)(void *ctx, zero_dtype_t dtype, const void *wire, size_t n, void *dst);
    /* qgZ on such memory (optional, NULL with the two above): @p nblocks
     * encoded vectors of n elements, @p block_stride bytes apart, decoded
     * and summed in fp32 in order from +0, divided by @p divisor unless it
     * is 1, rounded once to @p dtype (fp32, bf16 or fp16) into @p dst: the
     * arithmetic of the host's quantized reduce-scatter (comm/quant_coll.h),
     * the same bits (a NaN's payload aside). */
    zero_status_t (*quant_reduce8)(void *ctx, const void *wire, size_t block_stride, int nblocks, size_t n,
                                   float divisor, zero_dtype_t dtype, void *dst);
} engine_ops_t;

/* The host table (engine_ops_host.c). */
extern const engine_ops_t engine_ops_host;

/* The CUDA table (engine_ops_device.c: lib/optim's CUDA kernels and the CUDA
 * runtime, reached through the CUDA module's table, util/cuda_module.h);
 * NULL in a build without the cuda feature. */
const engine_ops_t *engine_ops_device(void);

/* The table for buffers of @p kind; NULL when this build has none for it. */
const engine_ops_t *engine_ops_for_kind(zero_mem_kind_t kind);

/* The lib/optim kernel context behind a host table's @p ctx (tests compare against it). */
const zero_optim_ctx_t *engine_ops_host_optim(const void *ctx);

#endif /* ZERO_ZERO_ENGINE_OPS_H */
