/*
 * Optimizer kernels over a rank's owned slice (internal API; the engine in
 * lib/zero maps the parsed JSON config onto these structs).
 *
 * One call updates a whole contiguous slice: fp32 master weights w, fp32
 * gradients g and fp32 optimizer state, in one fused pass, optionally also
 * writing the updated weights as bf16 or fp16 (round to nearest even, as
 * lib/util/half.h). The work is cut into chunks (64 Ki elements by default)
 * that run on the context's thread pool. Sub-ranges cost nothing extra: to
 * give parameters with and without weight decay different settings, call
 * once per contiguous run with the pointers offset.
 *
 * Each kernel has a plain C reference and AVX2 / AVX-512 versions chosen at
 * run time from the CPU's features (see optim_dsp.h); the elementwise kernels
 * give bit-identical results at every level and any thread count.
 *
 * Formulas (g = grad_scale * gradient; t = step):
 *   Adam/AdamW (torch.optim.Adam/AdamW, DeepSpeed CPUAdam/FusedAdam):
 *     Adam mode: g += wd * w;  AdamW mode: w *= 1 - lr * wd
 *     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *     w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   SGD (torch.optim.SGD): d = g + wd w; buf = d at t = 1, else
 *     buf = mom buf + (1-dampening) d; d = nesterov ? d + mom buf : buf; w -= lr d
 *   Adagrad (torch.optim.Adagrad): d = g + wd w; sum += d^2;
 *     w -= lr / (1 + (t-1) lr_decay) * d / (sqrt(sum) + eps)
 *   Lion (lucidrains / torch-style): w *= 1 - lr wd; w -= lr sign(b1 m + (1-b1) g);
 *     m = b2 m + (1-b2) g
 *   Lamb (DeepSpeed FusedLamb): m, v as Adam; u = m / (sqrt(v) + eps) + wd w
 *     (sqrt(v + eps) with eps_inside_sqrt); per parameter
 *     ratio = clamp(||w|| / ||u||, min_coeff, max_coeff) (1 if either norm is 0);
 *     w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * ratio * u  (lr alone without bias correction).
 *
 * Thread safety: a context is read-only after init; calls that share a
 * thread pool must not run at the same time (one parallel_for per pool).
 */
#ifndef ZERO_OPTIM_OPTIM_H
#define ZERO_OPTIM_OPTIM_H

#include "optim/optim_dsp.h"
#include "util/thread_pool.h"

#include <stddef.h>
#include <stdint.h>
#include <zero/status.h>
#include <zero/types.h>

typedef enum zero_optim_isa {
    ZERO_OPTIM_ISA_AUTO = -1,  /* best the CPU has, or ZERO_CPU_ISA's level if set (util/cpu.h) */
    ZERO_OPTIM_ISA_C = 0,      /* the plain C reference */
    ZERO_OPTIM_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    ZERO_OPTIM_ISA_AVX512 = 2, /* AVX-512 F, BW, VL, DQ */
    ZERO_OPTIM_ISA_COUNT
} zero_optim_isa_t;

#define ZERO_OPTIM_DEFAULT_CHUNK ((size_t)65536)

typedef struct zero_optim_ctx {
    zero_optim_dsp_t dsp;
    zero_optim_isa_t isa;       /* the level in use */
    zero_thread_pool_t *pool;   /* borrowed; NULL runs everything on the caller */
    size_t chunk;               /* elements per task (multiple of 64) */
} zero_optim_ctx_t;

/* The best level this CPU (and OS) supports (zero_cpu_isa_detect, util/cpu.h). */
zero_optim_isa_t zero_optim_isa_detect(void);
/* "c", "avx2", "avx512" ("auto" for AUTO, "unknown" otherwise). */
const char *zero_optim_isa_name(zero_optim_isa_t isa);

/*
 * Fills the kernel table for @p isa. AUTO picks the level as zero_cpu_isa_choose
 * does: the one named by the environment variable ZERO_CPU_ISA (c|avx2|avx512),
 * else the best supported. A level the CPU lacks, asked for either way, is
 * ZERO_ERR_UNSUPPORTED (never silently lowered); an unknown ZERO_CPU_ISA value
 * is ZERO_ERR_INVALID_ARG.
 * @p pool is borrowed (may be NULL) and must outlive the context's use.
 */
zero_status_t zero_optim_ctx_init(zero_optim_ctx_t *ctx, zero_optim_isa_t isa, zero_thread_pool_t *pool);
/* Elements per task: a multiple of 64, at least 64 (tests use small chunks). */
zero_status_t zero_optim_ctx_set_chunk(zero_optim_ctx_t *ctx, size_t chunk);

/* The 16-bit weight type of @p dtype (NONE for fp32 and anything else). */
static inline zero_optim_w16_t zero_optim_w16_of(zero_dtype_t dtype)
{
    return dtype == ZERO_BF16 ? ZERO_OPTIM_W16_BF16 : dtype == ZERO_FP16 ? ZERO_OPTIM_W16_FP16 : ZERO_OPTIM_W16_NONE;
}

/* The slice one call updates. s1/s2 are the optimizer's state arrays:
 *   Adam, Lamb: s1 = exp_avg, s2 = exp_avg_sq;  SGD: s1 = momentum buffer
 *   (unused, may be NULL, when momentum is 0);  Adagrad: s1 = sum;
 *   Lion: s1 = exp_avg.  w16 is written when w16_type is BF16 or FP16. */
typedef struct zero_optim_slice {
    float *w;
    const float *g;
    float *s1;
    float *s2;
    uint16_t *w16;
    zero_optim_w16_t w16_type;
    size_t n;
} zero_optim_slice_t;

typedef struct zero_optim_adam_params {
    float lr, beta1, beta2, eps, weight_decay;
    int adam_w_mode;        /* 1: decoupled decay (AdamW), 0: L2 added to the gradient */
    int bias_correction;
    int64_t step;           /* this update's step number, from 1 */
    float grad_scale;       /* multiplies every gradient (unscale * clip), 1 for none */
} zero_optim_adam_params_t;

typedef struct zero_optim_sgd_params {
    float lr, momentum, dampening, weight_decay;
    int nesterov;           /* requires momentum > 0 and dampening == 0 (as torch) */
    int64_t step;           /* from 1; at step 1 the momentum buffer starts as the gradient */
    float grad_scale;
} zero_optim_sgd_params_t;

typedef struct zero_optim_adagrad_params {
    float lr, lr_decay, eps, weight_decay;
    float initial_accumulator_value;   /* used by zero_optim_adagrad_init_state */
    int64_t step;
    float grad_scale;
} zero_optim_adagrad_params_t;

typedef struct zero_optim_lion_params {
    float lr, beta1, beta2, weight_decay;
    float grad_scale;
} zero_optim_lion_params_t;

typedef struct zero_optim_lamb_params {
    float lr, beta1, beta2, eps, weight_decay;
    float max_coeff, min_coeff;
    int bias_correction;
    int eps_inside_sqrt;
    int64_t step;
    float grad_scale;
} zero_optim_lamb_params_t;

/* Defaults of torch / DeepSpeed (lr 1e-3 where they have one; step 1; grad_scale 1). */
void zero_optim_adam_defaults(zero_optim_adam_params_t *p);     /* betas .9/.999, eps 1e-8, AdamW mode */
void zero_optim_sgd_defaults(zero_optim_sgd_params_t *p);       /* all zero but lr */
void zero_optim_adagrad_defaults(zero_optim_adagrad_params_t *p); /* lr 1e-2, eps 1e-10 */
void zero_optim_lion_defaults(zero_optim_lion_params_t *p);     /* lr 1e-4, betas .9/.99 */
void zero_optim_lamb_defaults(zero_optim_lamb_params_t *p);     /* eps 1e-8, max 10, min .01 */

/* The per-call scalars each kernel takes (optim_dsp.h), derived from the
 * parameters exactly as the step functions below derive them; the CUDA
 * kernels (optim_cuda.h) take the same, so both paths round alike. No
 * validation: that is the step functions' (or the caller's) job. */
void zero_optim_adam_k(const zero_optim_adam_params_t *p, zero_adam_k_t *k);
void zero_optim_sgd_k(const zero_optim_sgd_params_t *p, zero_sgd_k_t *k);
void zero_optim_adagrad_k(const zero_optim_adagrad_params_t *p, zero_adagrad_k_t *k);
void zero_optim_lion_k(const zero_optim_lion_params_t *p, zero_lion_k_t *k);
void zero_optim_lamb_k(const zero_optim_lamb_params_t *p, zero_lamb_k_t *k);
/* Lamb's phase-2 step size: lr, times sqrt(1 - beta2^t) / (1 - beta1^t) with
 * bias correction. */
double zero_optim_lamb_step_size(const zero_optim_lamb_params_t *p);

/* Each returns ZERO_ERR_INVALID_ARG (logged) for NULL buffers with n > 0, a
 * missing w16 buffer, a step < 1, or hyper-parameters out of range. */
zero_status_t zero_optim_adam_step(const zero_optim_ctx_t *ctx, const zero_optim_adam_params_t *p,
                                   const zero_optim_slice_t *s);
/* Adam over the gradient s->g + g_add ([s->n] fp32; NULL: plain Adam), the
 * sum formed in registers and never stored. A reduce-scatter's last hop hands
 * its received partial here instead of writing the sum and reading it back:
 * AdamW with fp32 state then moves 32 bytes per element instead of 40. The
 * sum is the same IEEE addition, so the result equals summing first, bit for
 * bit. Errors as zero_optim_adam_step. */
zero_status_t zero_optim_adam_step_fused(const zero_optim_ctx_t *ctx, const zero_optim_adam_params_t *p,
                                         const zero_optim_slice_t *s, const float *g_add);
zero_status_t zero_optim_sgd_step(const zero_optim_ctx_t *ctx, const zero_optim_sgd_params_t *p,
                                  const zero_optim_slice_t *s);
zero_status_t zero_optim_adagrad_step(const zero_optim_ctx_t *ctx, const zero_optim_adagrad_params_t *p,
                                      const zero_optim_slice_t *s);
zero_status_t zero_optim_lion_step(const zero_optim_ctx_t *ctx, const zero_optim_lion_params_t *p,
                                   const zero_optim_slice_t *s);
/*
 * The same four steps with the gradient in 16 bits: @p g16 ([s->n] of
 * @p g16_type, BF16 or FP16) replaces s->g, which is not read (may be NULL).
 * Each worker widens a few hundred gradients at a time into a buffer on its
 * stack, so no fp32 copy of the gradient is stored: CPU offload for device
 * ranks reads the 2-byte gradients straight from the transfer slot they
 * arrived in and writes the 16-bit weights into the slot that goes back.
 * The widening is zero_optim_from_16's, so the result equals
 * zero_optim_from_16 followed by the fp32 step, bit for bit. Errors as the
 * fp32 steps, and ZERO_ERR_INVALID_ARG (logged) for a NULL @p g16 with n > 0
 * or another @p g16_type.
 */
zero_status_t zero_optim_adam_step_g16(const zero_optim_ctx_t *ctx, const zero_optim_adam_params_t *p,
                                       const zero_optim_slice_t *s, const uint16_t *g16, zero_optim_w16_t g16_type);
zero_status_t zero_optim_sgd_step_g16(const zero_optim_ctx_t *ctx, const zero_optim_sgd_params_t *p,
                                      const zero_optim_slice_t *s, const uint16_t *g16, zero_optim_w16_t g16_type);
zero_status_t zero_optim_adagrad_step_g16(const zero_optim_ctx_t *ctx, const zero_optim_adagrad_params_t *p,
                                          const zero_optim_slice_t *s, const uint16_t *g16,
                                          zero_optim_w16_t g16_type);
zero_status_t zero_optim_lion_step_g16(const zero_optim_ctx_t *ctx, const zero_optim_lion_params_t *p,
                                       const zero_optim_slice_t *s, const uint16_t *g16, zero_optim_w16_t g16_type);
/* Fills Adagrad's sum with p->initial_accumulator_value. */
zero_status_t zero_optim_adagrad_init_state(const zero_optim_ctx_t *ctx, const zero_optim_adagrad_params_t *p,
                                            float *sum, size_t n);

/*
 * Lamb in two phases, because a parameter may be split across ranks:
 *   1. zero_optim_lamb_phase1 updates m and v over every segment and writes,
 *      per segment, the partial sums of w^2 and u^2 over this rank's piece;
 *   2. the engine adds the partial sums of each parameter over all ranks
 *      (allreduce) and passes the totals to zero_optim_lamb_phase2, which
 *      applies w -= step_size * ratio * u (u recomputed from m, v, w).
 * Segments are (start, len) within the slice, in increasing order, not
 * overlapping; elements outside every segment are left untouched. The partial
 * sums do not depend on the thread count (fixed chunking, summed in order).
 * The slice's g is not read by phase 2 and may be NULL there.
 */
typedef struct zero_optim_segment {
    size_t start, len;
} zero_optim_segment_t;

zero_status_t zero_optim_lamb_phase1(const zero_optim_ctx_t *ctx, const zero_optim_lamb_params_t *p,
                                     const zero_optim_slice_t *s, const zero_optim_segment_t *segs,
                                     size_t nseg, double *w_sq_p, double *u_sq_p);
/* ratio_p: optional [nseg] output of the trust ratios applied (NULL: not wanted). */
zero_status_t zero_optim_lamb_phase2(const zero_optim_ctx_t *ctx, const zero_optim_lamb_params_t *p,
                                     const zero_optim_slice_t *s, const zero_optim_segment_t *segs,
                                     size_t nseg, const double *w_sq, const double *u_sq, float *ratio_p);
/* The trust ratio for one parameter's global sums (DeepSpeed's rule). */
float zero_optim_lamb_ratio(const zero_optim_lamb_params_t *p, double w_sq, double u_sq);

/* Helpers, vectorised and threaded the same way. dtype is FP32, FP16 or BF16. */
zero_status_t zero_optim_count_nonfinite(const zero_optim_ctx_t *ctx, zero_dtype_t dtype, const void *x,
                                         size_t n, size_t *count_p);
/* Sum of squares in double (deterministic for a given chunk size, any threads).
 * It doubles as the overflow check: any inf or NaN makes the sum non-finite,
 * while finite fp32/fp16/bf16 squares cannot overflow a double sum (each is
 * below 1.2e77), so !isfinite(total) <=> some rank saw a non-finite gradient,
 * provided the total over ranks stays in double too. Rounded to fp32 it would
 * not: a finite sum above FLT_MAX (a norm above ~1.8e19) becomes inf. */
zero_status_t zero_optim_sum_squares(const zero_optim_ctx_t *ctx, zero_dtype_t dtype, const void *x,
                                     size_t n, double *sum_p);
/* Sum over i of (a[i] + b[i])^2, the sum formed in fp32 as the fused steps
 * form it (zero_optim_adam_step_fused) and never stored; the squares summed
 * in double (deterministic for a given chunk size, any threads). Non-finite
 * exactly when some a[i] + b[i] is, as zero_optim_sum_squares. The engine's
 * fused step checks its gradients with it, reading both addends once. */
zero_status_t zero_optim_sum_squares_add(const zero_optim_ctx_t *ctx, const float *a, const float *b, size_t n,
                                         double *sum_p);
zero_status_t zero_optim_scale(const zero_optim_ctx_t *ctx, float *x, float s, size_t n);
zero_status_t zero_optim_to_16(const zero_optim_ctx_t *ctx, zero_optim_w16_t type, uint16_t *dst,
                               const float *src, size_t n);
zero_status_t zero_optim_from_16(const zero_optim_ctx_t *ctx, zero_optim_w16_t type, float *dst,
                                 const uint16_t *src, size_t n);

/* dst[i] = ((peer[i] + own[i]) / divisor, summed in fp32 and rounded once to
 * @p type) widened back to fp32: the 16-bit average a reduce-scatter's last
 * hop writes (comm/reduce.c), formed where the step converts its gradients
 * to fp32 anyway, so it is never written to the gradient buffer. @p peer is
 * fp32 (@p peer_f32) or of @p type. */
zero_status_t zero_optim_average_from_16(const zero_optim_ctx_t *ctx, zero_optim_w16_t type, float *dst,
                                         const uint16_t *own, const void *peer, int peer_f32, float divisor,
                                         size_t n);

/*
 * Gradient clipping by global norm, as DeepSpeed: coef = max_norm /
 * (total_norm + 1e-6), applied only when below 1. Returns the multiplier to
 * fold into grad_scale: 1 when max_norm <= 0 (clipping off) or coef >= 1.
 * A non-finite total_norm gives 1 (the overflow check skips that step).
 */
float zero_optim_clip_coef(double total_norm, double max_norm);

#endif /* ZERO_OPTIM_OPTIM_H */
