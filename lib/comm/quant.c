/*
 * Block-wise symmetric int8/int4 quantization (quant.h has the format and
 * its guarantees). Plain C written so that compilers vectorise the inner
 * loops; the per-block scale is computed in double so a block whose largest
 * value is subnormal neither overflows the reciprocal nor loses the scale.
 */
#include "comm/quant.h"
#include "comm/quant_elem.h"
#include "util/half.h"

#include <math.h>
#include <string.h>

size_t zero_quant_blocks(size_t n)
{
    return (n + ZERO_QUANT_BLOCK - 1) / ZERO_QUANT_BLOCK;
}

static int qmax_of(zero_quant_bits_t bits)
{
    return bits == ZERO_QUANT_INT8 ? 127 : bits == ZERO_QUANT_INT4 ? 7 : 0;
}

size_t zero_quant_bytes(zero_quant_bits_t bits, size_t n)
{
    size_t scales = zero_quant_blocks(n) * sizeof(float);
    if (bits == ZERO_QUANT_INT8)
        return scales + n;
    if (bits == ZERO_QUANT_INT4)
        return scales + (n + 1) / 2;
    return 0;
}

/* One block's values as fp32, whatever the source dtype. */
static inline void load_block(zero_dtype_t dtype, const void *x, size_t first, size_t count, float *dst)
{
    if (dtype == ZERO_FP32) {
        memcpy(dst, (const float *)x + first, count * sizeof(float));
    } else if (dtype == ZERO_BF16) {
        const uint16_t *h = (const uint16_t *)x + first;
        for (size_t i = 0; i < count; i++)
            dst[i] = zero_bf16_to_f32(h[i]);
    } else {
        const uint16_t *h = (const uint16_t *)x + first;
        for (size_t i = 0; i < count; i++)
            dst[i] = zero_f16_to_f32(h[i]);
    }
}

/* The block's largest magnitude, or NaN when any element is inf or NaN,
 * found on the bit patterns (quant_elem.h); the full blocks have trip count
 * ZERO_QUANT_BLOCK, so the integer max vectorises at -O2. */
static inline float block_amax(const float *v, size_t count)
{
    int32_t most = 0;
    for (size_t i = 0; i < count; i++) {
        int32_t mag = zero_quant_mag(v[i]);
        most = mag > most ? mag : most;
    }
    return zero_quant_amax(most);
}

/* Quantizes one block to integers in [-qmax, qmax]. */
static inline void quantize_block(const float *v, size_t count, float amax, int qmax, int8_t *q)
{
    if (!(amax > 0.0f)) { /* zeros, or a poisoned block: the scale says it all */
        memset(q, 0, count);
        return;
    }
    double inv = zero_quant_inv(amax, qmax);
    for (size_t i = 0; i < count; i++)
        q[i] = zero_quant_one(v[i], inv, qmax);
}

/* One block: scale and integers. The full blocks call it with the constant
 * ZERO_QUANT_BLOCK, so each inlined loop has a known trip count and is
 * vectorised; only the last, short block runs the general loops. */
static inline float encode_block(zero_dtype_t dtype, const void *x, size_t first, size_t count, int qmax,
                                 float *v, int8_t *q)
{
    load_block(dtype, x, first, count, v);
    float amax = block_amax(v, count);
    quantize_block(v, count, amax, qmax, q);
    return amax;
}

int zero_quant_encode(zero_quant_bits_t bits, zero_dtype_t dtype, const void *x, size_t n, void *out)
{
    int qmax = qmax_of(bits);
    if (!qmax || (dtype != ZERO_FP32 && dtype != ZERO_BF16 && dtype != ZERO_FP16))
        return -1;
    size_t blocks = zero_quant_blocks(n);
    float *scales = (float *)out;
    uint8_t *payload = (uint8_t *)out + blocks * sizeof(float);
    float v[ZERO_QUANT_BLOCK];
    int8_t q[ZERO_QUANT_BLOCK];
    for (size_t b = 0; b < blocks; b++) {
        size_t first = b * ZERO_QUANT_BLOCK;
        size_t count = n - first < ZERO_QUANT_BLOCK ? n - first : ZERO_QUANT_BLOCK;
        scales[b] = count == ZERO_QUANT_BLOCK ? encode_block(dtype, x, first, ZERO_QUANT_BLOCK, qmax, v, q)
                                              : encode_block(dtype, x, first, count, qmax, v, q);
        if (bits == ZERO_QUANT_INT8) {
            memcpy(payload + first, q, count);
        } else {
            /* first is even (the block size is), so a block starts on a byte. */
            uint8_t *p = payload + first / 2;
            size_t i = 0;
            for (; i + 1 < count; i += 2)
                p[i / 2] = (uint8_t)(((unsigned)q[i] & 0xfu) | (((unsigned)q[i + 1] & 0xfu) << 4));
            if (i < count)
                p[i / 2] = (uint8_t)((unsigned)q[i] & 0xfu);
        }
    }
    return 0;
}

/* One block's integers back, sign-extended ((n ^ 8) - 8 maps the nibble's
 * two's complement 0..15 to -8..7). */
static inline void unpack_block(zero_quant_bits_t bits, const uint8_t *payload, size_t first, size_t count, int8_t *q)
{
    if (bits == ZERO_QUANT_INT8) {
        memcpy(q, payload + first, count);
        return;
    }
    const uint8_t *p = payload + first / 2;
    for (size_t i = 0; i < count / 2; i++) {
        q[2 * i] = (int8_t)((int)((p[i] & 0xfu) ^ 8u) - 8);
        q[2 * i + 1] = (int8_t)((int)((p[i] >> 4) ^ 8u) - 8);
    }
    if (count & 1)
        q[count - 1] = (int8_t)((int)((p[count / 2] & 0xfu) ^ 8u) - 8);
}

/* Decodes one block to fp32. A NaN amax makes every element NaN. */
static inline void dequantize_block(const int8_t *q, size_t count, float amax, int qmax, float *v)
{
    if (isnan(amax)) {
        for (size_t i = 0; i < count; i++)
            v[i] = NAN;
        return;
    }
    double step = zero_quant_step(amax, qmax);
    for (size_t i = 0; i < count; i++)
        v[i] = zero_quant_value(q[i], step);
}

typedef enum { STORE_FP32, STORE_BF16, STORE_FP16, STORE_ADD_FP32 } store_mode_t;

/* One block decoded and stored; called with the constant ZERO_QUANT_BLOCK for
 * full blocks (see encode_block). */
static inline void decode_block(zero_quant_bits_t bits, const uint8_t *payload, size_t first, size_t count,
                                float amax, int qmax, store_mode_t mode, void *y, float *v, int8_t *q)
{
    unpack_block(bits, payload, first, count, q);
    dequantize_block(q, count, amax, qmax, v);
    switch (mode) {
    case STORE_FP32:
        memcpy((float *)y + first, v, count * sizeof(float));
        break;
    case STORE_ADD_FP32: {
        float *acc = (float *)y + first;
        for (size_t i = 0; i < count; i++)
            acc[i] += v[i];
        break;
    }
    case STORE_BF16: {
        uint16_t *h = (uint16_t *)y + first;
        for (size_t i = 0; i < count; i++)
            h[i] = zero_f32_to_bf16(v[i]);
        break;
    }
    case STORE_FP16: {
        uint16_t *h = (uint16_t *)y + first;
        for (size_t i = 0; i < count; i++)
            h[i] = zero_f32_to_f16(v[i]);
        break;
    }
    }
}

static int decode_into(zero_quant_bits_t bits, const void *in, size_t n, store_mode_t mode, void *y)
{
    int qmax = qmax_of(bits);
    if (!qmax)
        return -1;
    size_t blocks = zero_quant_blocks(n);
    const float *scales = (const float *)in;
    const uint8_t *payload = (const uint8_t *)in + blocks * sizeof(float);
    float v[ZERO_QUANT_BLOCK];
    int8_t q[ZERO_QUANT_BLOCK];
    for (size_t b = 0; b < blocks; b++) {
        size_t first = b * ZERO_QUANT_BLOCK;
        size_t count = n - first < ZERO_QUANT_BLOCK ? n - first : ZERO_QUANT_BLOCK;
        if (count == ZERO_QUANT_BLOCK)
            decode_block(bits, payload, first, ZERO_QUANT_BLOCK, scales[b], qmax, mode, y, v, q);
        else
            decode_block(bits, payload, first, count, scales[b], qmax, mode, y, v, q);
    }
    return 0;
}

int zero_quant_decode(zero_quant_bits_t bits, const void *in, size_t n, zero_dtype_t dtype, void *y)
{
    switch (dtype) {
    case ZERO_FP32:
        return decode_into(bits, in, n, STORE_FP32, y);
    case ZERO_BF16:
        return decode_into(bits, in, n, STORE_BF16, y);
    case ZERO_FP16:
        return decode_into(bits, in, n, STORE_FP16, y);
    default:
        return -1;
    }
}

int zero_quant_decode_add_f32(zero_quant_bits_t bits, const void *in, size_t n, float *acc)
{
    return decode_into(bits, in, n, STORE_ADD_FP32, acc);
}
