/*
 * One element of every optimizer update, as the C reference (optim_ref.c)
 * and the CUDA kernels (optim_cuda.cu) both compute it: one definition of
 * the operation order, compiled for the host and, under nvcc, the device.
 * The SIMD kernels (optim_simd.h) follow the same order lane by lane.
 *
 * Every function takes the raw gradient (before grad_scale) and updates the
 * weight and state in place. Bit-identical results need IEEE operations in
 * this order with no multiply-add contraction: GCC's C11 default, clang's
 * FP_CONTRACT pragma in optim_ref.c, nvcc's -fmad=false (meson.build).
 */
#ifndef ZERO_OPTIM_ELEM_H
#define ZERO_OPTIM_ELEM_H

#include "optim/optim_dsp.h"

#include <math.h>

#if defined(__CUDACC__)
#define ZERO_ELEM static inline __host__ __device__
#else
#define ZERO_ELEM static inline
#endif

ZERO_ELEM void zero_elem_adam(const zero_adam_k_t *k, float g, float *w, float *m, float *v)
{
    float gi = g * k->grad_scale;
    float wi = *w;
    float mi, vi, den;
    if (k->l2_wd != 0.0f)
        gi = gi + k->l2_wd * wi;
    mi = k->beta1 * *m + k->one_minus_beta1 * gi;
    vi = k->beta2 * *v + k->one_minus_beta2 * (gi * gi);
    den = sqrtf(vi) * k->bc2_rsqrt + k->eps;
    wi = wi * k->decay_mul;
    wi = wi - k->step_size * (mi / den);
    *m = mi;
    *v = vi;
    *w = wi;
}

ZERO_ELEM void zero_elem_sgd(const zero_sgd_k_t *k, float g, float *w, float *buf)
{
    float d = g * k->grad_scale;
    float wi = *w;
    if (k->weight_decay != 0.0f)
        d = d + k->weight_decay * wi;
    if (k->momentum != 0.0f) {
        float b = k->first_step ? d : k->momentum * *buf + k->one_minus_dampening * d;
        *buf = b;
        d = k->nesterov ? d + k->momentum * b : b;
    }
    *w = wi - k->lr * d;
}

ZERO_ELEM void zero_elem_adagrad(const zero_adagrad_k_t *k, float g, float *w, float *sum)
{
    float d = g * k->grad_scale;
    float wi = *w;
    float s;
    if (k->weight_decay != 0.0f)
        d = d + k->weight_decay * wi;
    s = *sum + d * d;
    *w = wi - k->clr * (d / (sqrtf(s) + k->eps));
    *sum = s;
}

/* sign() as torch defines it: -1, +1, and the input itself for zeros and NaN. */
ZERO_ELEM float zero_elem_sign(float x)
{
    return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x);
}

ZERO_ELEM void zero_elem_lion(const zero_lion_k_t *k, float g, float *w, float *m)
{
    float d = g * k->grad_scale;
    float mi = *m;
    float c = k->beta1 * mi + k->one_minus_beta1 * d;
    float wi = *w * k->decay_mul;
    *w = wi - k->lr * zero_elem_sign(c);
    *m = k->beta2 * mi + k->one_minus_beta2 * d;
}

ZERO_ELEM float zero_elem_lamb_denom(const zero_lamb_k_t *k, float v)
{
    return k->eps_inside_sqrt ? sqrtf(v + k->eps) : sqrtf(v) + k->eps;
}

/* Lamb phase 1 for one element: m and v updated; returns the update u (the
 * caller sums w^2 and u^2 in double). */
ZERO_ELEM float zero_elem_lamb1(const zero_lamb_k_t *k, float g, float w, float *m, float *v)
{
    float d = g * k->grad_scale;
    float mi = k->beta1 * *m + k->one_minus_beta1 * d;
    float vi = k->beta2 * *v + k->one_minus_beta2 * (d * d);
    float u = mi / zero_elem_lamb_denom(k, vi) + k->weight_decay * w;
    *m = mi;
    *v = vi;
    return u;
}

/* Lamb phase 2 for one element: u recomputed from m, v, w; w -= coef * u. */
ZERO_ELEM void zero_elem_lamb2(const zero_lamb_k_t *k, float coef, float *w, float m, float v)
{
    float wi = *w;
    float u = m / zero_elem_lamb_denom(k, v) + k->weight_decay * wi;
    *w = wi - coef * u;
}

/* Lamb's trust ratio |w| / |u| from the sums of squares of a parameter,
 * clamped to [min_coeff, max_coeff]; 1 when either norm is zero. */
ZERO_ELEM float zero_elem_lamb_ratio(double w_sq, double u_sq, float max_coeff, float min_coeff)
{
    double wn = sqrt(w_sq), un = sqrt(u_sq), r;
    if (wn == 0.0 || un == 0.0)
        return 1.0f;
    r = wn / un;
    if (r > max_coeff)
        r = max_coeff;
    if (r < min_coeff)
        r = min_coeff;
    return (float)r;
}

/* DeepSpeed's clip coefficient max_norm / (total_norm + 1e-6), applied only
 * below 1; 1 when clipping is off or the norm is not finite. */
ZERO_ELEM float zero_elem_clip_coef(double total_norm, double max_norm)
{
    double coef;
    if (!(max_norm > 0.0) || !isfinite(total_norm))
        return 1.0f;
    coef = max_norm / (total_norm + 1e-6);
    return coef < 1.0 ? (float)coef : 1.0f;
}

#endif /* ZERO_OPTIM_ELEM_H */
