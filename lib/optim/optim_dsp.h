/*
 * The optimizer kernel table (dav1d's DSP-init pattern): a plain C reference
 * for every kernel is assigned first, then the x86 initialisers override the
 * entries they implement for the level allowed. Kernels here work on one
 * chunk; lib/optim/optim.c splits a slice into chunks and runs them on the
 * thread pool.
 *
 * Every elementwise kernel performs the same IEEE operations in the same
 * order at every level (no FMA contraction, correctly rounded sqrt and
 * division), so the SIMD versions give results bit-identical to the
 * reference. Reductions (sums of squares) differ only in summation order.
 */
#ifndef ZERO_OPTIM_DSP_H
#define ZERO_OPTIM_DSP_H

#include <stddef.h>
#include <stdint.h>

/* The 16-bit copy of the updated weights a fused kernel writes, if any. */
typedef enum zero_optim_w16 {
    ZERO_OPTIM_W16_NONE = 0,
    ZERO_OPTIM_W16_BF16 = 1,
    ZERO_OPTIM_W16_FP16 = 2,
    ZERO_OPTIM_W16_COUNT
} zero_optim_w16_t;

/* Scalars precomputed once per call (lib/optim/optim.c derives them from the
 * public parameter structs). */
typedef struct zero_adam_k {
    float grad_scale;
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float eps;
    float bc2_rsqrt;      /* 1 / sqrt(1 - beta2^t), or 1 */
    float step_size;      /* lr / (1 - beta1^t), or lr */
    float decay_mul;      /* 1 - lr * wd in AdamW mode, else 1 */
    float l2_wd;          /* wd added to the gradient in Adam (L2) mode, else 0 */
} zero_adam_k_t;

typedef struct zero_sgd_k {
    float grad_scale;
    float lr;
    float weight_decay;
    float momentum;
    float one_minus_dampening;
    int first_step;       /* momentum buffer is initialised to the gradient */
    int nesterov;
} zero_sgd_k_t;

typedef struct zero_adagrad_k {
    float grad_scale;
    float clr;            /* lr / (1 + (t - 1) * lr_decay) */
    float weight_decay;
    float eps;
} zero_adagrad_k_t;

typedef struct zero_lion_k {
    float grad_scale;
    float lr;
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float decay_mul;      /* 1 - lr * wd */
} zero_lion_k_t;

typedef struct zero_lamb_k {
    float grad_scale;
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float eps;
    int eps_inside_sqrt;  /* denom = sqrt(v + eps) instead of sqrt(v) + eps */
    float weight_decay;
} zero_lamb_k_t;

/* w16 may be NULL when w16_type is ZERO_OPTIM_W16_NONE. */
typedef void (*zero_adam_fn)(const zero_adam_k_t *k, float *w, const float *g, float *m, float *v,
                             uint16_t *w16, int w16_type, size_t n);
/* Adam over the gradient g + ga, summed in registers and never stored. */
typedef void (*zero_adam_add_fn)(const zero_adam_k_t *k, float *w, const float *g, const float *ga, float *m,
                                 float *v, uint16_t *w16, int w16_type, size_t n);
typedef void (*zero_sgd_fn)(const zero_sgd_k_t *k, float *w, const float *g, float *buf,
                            uint16_t *w16, int w16_type, size_t n);
typedef void (*zero_adagrad_fn)(const zero_adagrad_k_t *k, float *w, const float *g, float *sum,
                                uint16_t *w16, int w16_type, size_t n);
typedef void (*zero_lion_fn)(const zero_lion_k_t *k, float *w, const float *g, float *m,
                             uint16_t *w16, int w16_type, size_t n);
/* Lamb phase 1: updates m and v, adds sum(w^2) and sum(u^2) into *w_sq, *u_sq. */
typedef void (*zero_lamb1_fn)(const zero_lamb_k_t *k, const float *w, const float *g, float *m, float *v,
                              size_t n, double *w_sq, double *u_sq);
/* Lamb phase 2: w -= coef * u, u recomputed from m, v, w. */
typedef void (*zero_lamb2_fn)(const zero_lamb_k_t *k, float coef, float *w, const float *m, const float *v,
                              uint16_t *w16, int w16_type, size_t n);

typedef struct zero_optim_dsp {
    zero_adam_fn adam;
    zero_adam_add_fn adam_add;
    zero_sgd_fn sgd;
    zero_adagrad_fn adagrad;
    zero_lion_fn lion;
    zero_lamb1_fn lamb1;
    zero_lamb2_fn lamb2;
    /* Helpers, indexed by zero_dtype_t (FP32, FP16, BF16). */
    size_t (*count_nonfinite[3])(const void *x, size_t n);
    double (*sum_squares[3])(const void *x, size_t n);
    void (*scale_f32)(float *x, float s, size_t n);
    /* Conversions, indexed by zero_optim_w16_t (BF16, FP16; NONE unused). */
    void (*to_16[ZERO_OPTIM_W16_COUNT])(uint16_t *dst, const float *src, size_t n);
    void (*from_16[ZERO_OPTIM_W16_COUNT])(float *dst, const uint16_t *src, size_t n);
} zero_optim_dsp_t;

void zero_optim_dsp_init_c(zero_optim_dsp_t *dsp);
void zero_optim_dsp_init_avx2(zero_optim_dsp_t *dsp);
void zero_optim_dsp_init_avx512(zero_optim_dsp_t *dsp);

#endif /* ZERO_OPTIM_DSP_H */
