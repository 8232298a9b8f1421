/*
 * train_gpt's host backend (gpt_backend.h): gpt.c on the CPU, weights and
 * gradients in host memory, 16-bit engine buffers converted here.
 */
#include "gpt_backend.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- 16-bit conversions (round to nearest even), written for this example ---- */

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_from_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint16_t bf16_from_f32(float f)
{
    uint32_t u = bits_from_f32(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float f32_from_bf16(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

static uint16_t fp16_from_f32(float f)
{
    uint32_t u = bits_from_f32(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u);          /* NaN */
    if (a >= 0x477ff000u)                          /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {                         /* below 2^-14: subnormal or zero */
        /* Adding 0.5 shifts the value's bits so the fp32 adder rounds (to even) at 2^-24. */
        float r = f32_from_bits(a) + 0.5f;
        return (uint16_t)(sign | (bits_from_f32(r) - 0x3f000000u));
    }
    uint32_t mant_odd = (a >> 13) & 1u;
    a += 0xc8000fffu + mant_odd;                   /* rebias exponent (-112 << 23) and round */
    return (uint16_t)(sign | (a >> 13));
}

static float f32_from_fp16(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0)
        return f32_from_bits(sign) + (sign ? -1.0f : 1.0f) * ldexpf((float)m, -24);
    if (e == 31)
        return f32_from_bits(sign | 0x7f800000u | (m << 13));
    return f32_from_bits(sign | ((e + 112) << 23) | (m << 13));
}

static void host_to_f32(zero_dtype_t dt, const void *src, float *dst, size_t n)
{
    const uint16_t *s = src;
    long len = (long)n;
    if (dt == ZERO_BF16) {
#pragma omp parallel for schedule(static) if (len > 65536)
        for (long i = 0; i < len; i++)
            dst[i] = f32_from_bf16(s[i]);
    } else {
#pragma omp parallel for schedule(static) if (len > 65536)
        for (long i = 0; i < len; i++)
            dst[i] = f32_from_fp16(s[i]);
    }
}

/* dst (16-bit) += src (fp32), rounded once. */
static void host_add_to_16(zero_dtype_t dt, void *dst, const float *src, size_t n)
{
    uint16_t *d = dst;
    long len = (long)n;
    if (dt == ZERO_BF16) {
#pragma omp parallel for schedule(static) if (len > 65536)
        for (long i = 0; i < len; i++)
            d[i] = bf16_from_f32(f32_from_bf16(d[i]) + src[i]);
    } else {
#pragma omp parallel for schedule(static) if (len > 65536)
        for (long i = 0; i < len; i++)
            d[i] = fp16_from_f32(f32_from_fp16(d[i]) + src[i]);
    }
}

static int host_open(int device, zero_engine_params_t *ep)
{
    if (device != -1) {
        fprintf(stderr, "train_gpt: --device %d: this build trains on the host; train_gpt_cuda takes --device\n",
                device);
        return -1;
    }
    ep->field_mask |= ZERO_ENGINE_PARAM_FIELD_MEM_KIND;
    ep->mem_kind = ZERO_MEM_HOST;
    return 0;
}

static void host_close(void)
{
}

static void *host_create(const gpt_config_t *cfg, int batch, int seq_len)
{
    return gpt_create(cfg, batch, seq_len);
}

static void host_destroy(void *m)
{
    gpt_destroy(m);
}

static void host_forward_begin(void *m, const gpt_weights_t *w, const int *tokens, int batch, int seq_len)
{
    gpt_forward_begin(m, w, tokens, batch, seq_len);
}

static void host_forward_block(void *m, const gpt_weights_t *w, int layer)
{
    gpt_forward_block(m, w, layer);
}

static float host_forward_end(void *m, const gpt_weights_t *w, const int *targets)
{
    return gpt_forward_end(m, w, targets);
}

static void host_backward_end(void *m, const gpt_weights_t *w, const gpt_weights_t *g, float loss_scale)
{
    gpt_backward_end(m, w, g, loss_scale);
}

static void host_backward_block(void *m, const gpt_weights_t *w, const gpt_weights_t *g, int layer)
{
    gpt_backward_block(m, w, g, layer);
}

static void host_backward_begin(void *m, const gpt_weights_t *w, const gpt_weights_t *g)
{
    gpt_backward_begin(m, w, g);
}

static double host_target_loss(void *m, int b, int t)
{
    return gpt_target_loss(m, b, t);
}

static float *host_alloc(size_t n)
{
    return malloc(n * sizeof(float));
}

static void host_free(float *p)
{
    free(p);
}

static void host_zero(float *p, size_t n)
{
    memset(p, 0, n * sizeof(float));
}

static int host_check(void)
{
    return 0;
}

const gpt_backend_t gpt_backend = {
    .name = "host",
    .open = host_open,
    .close = host_close,
    .create = host_create,
    .destroy = host_destroy,
    .forward_begin = host_forward_begin,
    .forward_block = host_forward_block,
    .forward_end = host_forward_end,
    .backward_end = host_backward_end,
    .backward_block = host_backward_block,
    .backward_begin = host_backward_begin,
    .target_loss = host_target_loss,
    .alloc = host_alloc,
    .free = host_free,
    .zero = host_zero,
    .to_f32 = host_to_f32,
    .add_to_16 = host_add_to_16,
    .check = host_check,
};
