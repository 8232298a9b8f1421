/*
 * Plain C reference kernels. The operation order here is the contract every
 * SIMD version follows (see optim_dsp.h): change one, change all.
 */
#include "optim/optim_elem.h"

/* No multiply-add contraction: the levels must round identically. (GCC's
 * default for -std=c11 is -ffp-contract=off; clang needs the pragma.) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#include "util/half.h"

#include <math.h>
#include <zero/types.h>

static inline void store16(uint16_t *w16, int w16_type, size_t i, float x)
{
    if (w16_type == ZERO_OPTIM_W16_BF16)
        w16[i] = zero_f32_to_bf16(x);
    else if (w16_type == ZERO_OPTIM_W16_FP16)
        w16[i] = zero_f32_to_f16(x);
}

/* ga: NULL, or the second addend of the gradient (fused reduction). */
static void adam_c_body(const zero_adam_k_t *k, float *w, const float *g, const float *ga, float *m, float *v,
                        uint16_t *w16, int w16_type, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        zero_elem_adam(k, ga ? g[i] + ga[i] : g[i], &w[i], &m[i], &v[i]);
        store16(w16, w16_type, i, w[i]);
    }
}

static void adam_c(const zero_adam_k_t *k, float *w, const float *g, float *m, float *v,
                   uint16_t *w16, int w16_type, size_t n)
{
    adam_c_body(k, w, g, NULL, m, v, w16, w16_type, n);
}

static void adam_add_c(const zero_adam_k_t *k, float *w, const float *g, const float *ga, float *m, float *v,
                       uint16_t *w16, int w16_type, size_t n)
{
    adam_c_body(k, w, g, ga, m, v, w16, w16_type, n);
}

static void sgd_c(const zero_sgd_k_t *k, float *w, const float *g, float *buf,
                  uint16_t *w16, int w16_type, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        zero_elem_sgd(k, g[i], &w[i], buf ? &buf[i] : NULL);
        store16(w16, w16_type, i, w[i]);
    }
}

static void adagrad_c(const zero_adagrad_k_t *k, float *w, const float *g, float *sum,
                      uint16_t *w16, int w16_type, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        zero_elem_adagrad(k, g[i], &w[i], &sum[i]);
        store16(w16, w16_type, i, w[i]);
    }
}

static void lion_c(const zero_lion_k_t *k, float *w, const float *g, float *m,
                   uint16_t *w16, int w16_type, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        zero_elem_lion(k, g[i], &w[i], &m[i]);
        store16(w16, w16_type, i, w[i]);
    }
}

static void lamb1_c(const zero_lamb_k_t *k, const float *w, const float *g, float *m, float *v,
                    size_t n, double *w_sq, double *u_sq)
{
    double ws = 0.0, us = 0.0;
    for (size_t i = 0; i < n; i++) {
        float wi = w[i];
        float u = zero_elem_lamb1(k, g[i], wi, &m[i], &v[i]);
        ws += (double)wi * wi;
        us += (double)u * u;
    }
    *w_sq += ws;
    *u_sq += us;
}

static void lamb2_c(const zero_lamb_k_t *k, float coef, float *w, const float *m, const float *v,
                    uint16_t *w16, int w16_type, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        zero_elem_lamb2(k, coef, &w[i], m[i], v[i]);
        store16(w16, w16_type, i, w[i]);
    }
}

/* ---- helpers ---- */

static size_t count_nonfinite_f32_c(const void *x, size_t n)
{
    const float *p = x;
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += (zero_f32_bits(p[i]) & 0x7f800000u) == 0x7f800000u;
    return count;
}

static size_t count_nonfinite_f16_c(const void *x, size_t n)
{
    const uint16_t *p = x;
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += (p[i] & 0x7c00u) == 0x7c00u;
    return count;
}

static size_t count_nonfinite_bf16_c(const void *x, size_t n)
{
    const uint16_t *p = x;
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += (p[i] & 0x7f80u) == 0x7f80u;
    return count;
}

static double sum_squares_f32_c(const void *x, size_t n)
{
    const float *p = x;
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)p[i] * p[i];
    return s;
}

static double sum_squares_f16_c(const void *x, size_t n)
{
    const uint16_t *p = x;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double f = zero_f16_to_f32(p[i]);
        s += f * f;
    }
    return s;
}

static double sum_squares_bf16_c(const void *x, size_t n)
{
    const uint16_t *p = x;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double f = zero_bf16_to_f32(p[i]);
        s += f * f;
    }
    return s;
}

static void scale_f32_c(float *x, float s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] * s;
}

static void to_bf16_c(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = zero_f32_to_bf16(src[i]);
}

static void to_f16_c(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = zero_f32_to_f16(src[i]);
}

static void from_bf16_c(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = zero_bf16_to_f32(src[i]);
}

static void from_f16_c(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = zero_f16_to_f32(src[i]);
}

void zero_optim_dsp_init_c(zero_optim_dsp_t *dsp)
{
    dsp->adam = adam_c;
    dsp->adam_add = adam_add_c;
    dsp->sgd = sgd_c;
    dsp->adagrad = adagrad_c;
    dsp->lion = lion_c;
    dsp->lamb1 = lamb1_c;
    dsp->lamb2 = lamb2_c;
    dsp->count_nonfinite[ZERO_FP32] = count_nonfinite_f32_c;
    dsp->count_nonfinite[ZERO_FP16] = count_nonfinite_f16_c;
    dsp->count_nonfinite[ZERO_BF16] = count_nonfinite_bf16_c;
    dsp->sum_squares[ZERO_FP32] = sum_squares_f32_c;
    dsp->sum_squares[ZERO_FP16] = sum_squares_f16_c;
    dsp->sum_squares[ZERO_BF16] = sum_squares_bf16_c;
    dsp->scale_f32 = scale_f32_c;
    dsp->to_16[ZERO_OPTIM_W16_NONE] = NULL;
    dsp->to_16[ZERO_OPTIM_W16_BF16] = to_bf16_c;
    dsp->to_16[ZERO_OPTIM_W16_FP16] = to_f16_c;
    dsp->from_16[ZERO_OPTIM_W16_NONE] = NULL;
    dsp->from_16[ZERO_OPTIM_W16_BF16] = from_bf16_c;
    dsp->from_16[ZERO_OPTIM_W16_FP16] = from_f16_c;
}
