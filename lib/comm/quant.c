/*
 * Block-wise symmetric int8/int4 quantization (quant.h has the format and
 * its guarantees). Plain C written so that compilers vectorise the inner
 * loops; the per-block scale is computed in double so a block whose largest
 * value is subnormal neither overflows the reciprocal nor loses the scale.
 */
/* Clang could fuse quant_elem.h's multiply and add where the level has FMA
 * (GCC does not under -std=c11): the levels would round some halves apart. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#include "comm/quant.h"
#include "comm/quant_elem.h"
#include "util/cpu.h"
#include "util/half.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

/* The codec's entry points are compiled once per instruction-set level of
 * util/cpu.h (x86-64 and GCC or Clang: AVX-512, AVX2 and the baseline; one
 * plain version elsewhere), from the same C. Baseline SSE2 holds two doubles
 * a vector and the scale arithmetic is in double: AVX-512 encodes about 2.5x
 * and decodes about 2x as fast here (docs/benchmarks.md). The public entry
 * points run the level zero_cpu_isa_choose picks, once, at the first call
 * (ZERO_CPU_ISA, else the CPU's best), as the optimizer and checkpoint kernels
 * do; zero_quant_codec gives each level's version to the tests, which check
 * every level this CPU has against the baseline bit for bit. The bits are the
 * same on every level because the C asks for the same IEEE operations in the
 * same order and nothing contracts them (-std=c11; quant_elem.h). */
#if defined(__x86_64__) && defined(__GNUC__)
#define QUANT_LEVELS 1
#define QUANT_AVX2 __attribute__((target("avx2,fma,f16c")))
#define QUANT_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
#endif

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

/* Inlined into each level's encode (QUANT_CODEC below). */
static inline __attribute__((always_inline)) int encode_into(zero_quant_bits_t bits, zero_dtype_t dtype, const void *x,
                                                             size_t n, void *out)
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

/* What a decoded block becomes (decode_into). */
typedef enum {
    DECODE_TO,       /* y = decoded, as the dtype */
    DECODE_ADD,      /* acc += decoded (fp32) */
    DECODE_FIRST,    /* acc = 0 + decoded: a zeroed acc and DECODE_ADD in one pass, bit for bit */
    DECODE_FINISH    /* y = (acc + decoded) / divisor as the dtype; acc is only read */
} decode_mode_t;

typedef struct decode_out {
    decode_mode_t mode;
    zero_dtype_t dtype;   /* DECODE_TO, DECODE_FINISH */
    void *y;              /* the results (fp32 for DECODE_ADD / DECODE_FIRST) */
    const float *acc;     /* DECODE_FINISH: the sum of the other parts */
    float divisor;        /* DECODE_FINISH: 1 (no division) or what the sum is averaged over */
} decode_out_t;

/* @p count fp32 values stored at element @p first of @p y as @p dtype. */
static inline void store_as(zero_dtype_t dtype, const float *v, size_t count, void *y, size_t first)
{
    if (dtype == ZERO_FP32) {
        memcpy((float *)y + first, v, count * sizeof(float));
    } else if (dtype == ZERO_BF16) {
        uint16_t *h = (uint16_t *)y + first;
        for (size_t i = 0; i < count; i++)
            h[i] = zero_f32_to_bf16(v[i]);
    } else {
        uint16_t *h = (uint16_t *)y + first;
        for (size_t i = 0; i < count; i++)
            h[i] = zero_f32_to_f16(v[i]);
    }
}

/* One block decoded and stored; called with the constant ZERO_QUANT_BLOCK for
 * full blocks (see encode_block). */
static inline void decode_block(zero_quant_bits_t bits, const uint8_t *payload, size_t first, size_t count,
                                float amax, int qmax, const decode_out_t *o, float *v, int8_t *q)
{
    unpack_block(bits, payload, first, count, q);
    dequantize_block(q, count, amax, qmax, v);
    switch (o->mode) {
    case DECODE_TO:
        store_as(o->dtype, v, count, o->y, first);
        break;
    case DECODE_ADD: {
        float *acc = (float *)o->y + first;
        for (size_t i = 0; i < count; i++)
            acc[i] += v[i];
        break;
    }
    case DECODE_FIRST: {
        float *acc = (float *)o->y + first;
        for (size_t i = 0; i < count; i++)
            acc[i] = 0.0f + v[i];
        break;
    }
    case DECODE_FINISH: {
        const float *acc = o->acc + first;
        for (size_t i = 0; i < count; i++)
            v[i] = acc[i] + v[i];
        if (o->divisor != 1.0f)
            for (size_t i = 0; i < count; i++)
                v[i] /= o->divisor;
        store_as(o->dtype, v, count, o->y, first);
        break;
    }
    }
}

/* Inlined into each entry point below with its mode a constant, so each
 * clone of each gets its own straight loops. */
static inline __attribute__((always_inline)) int decode_into(zero_quant_bits_t bits, const void *in, size_t n,
                                                             const decode_out_t *o)
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
            decode_block(bits, payload, first, ZERO_QUANT_BLOCK, scales[b], qmax, o, v, q);
        else
            decode_block(bits, payload, first, count, scales[b], qmax, o, v, q);
    }
    return 0;
}

static int float_dtype(zero_dtype_t dtype)
{
    return dtype == ZERO_FP32 || dtype == ZERO_BF16 || dtype == ZERO_FP16;
}

/* One level's five entry points (zero_quant_codec_t), each with its decode
 * mode a constant so that each gets its own straight loops. */
#define QUANT_CODEC(level, attr)                                                                                   \
    attr static int encode_##level(zero_quant_bits_t bits, zero_dtype_t dtype, const void *x, size_t n, void *out) \
    {                                                                                                              \
        return encode_into(bits, dtype, x, n, out);                                                                \
    }                                                                                                              \
    attr static int decode_##level(zero_quant_bits_t bits, const void *in, size_t n, zero_dtype_t dtype, void *y)  \
    {                                                                                                              \
        decode_out_t o = {DECODE_TO, dtype, y, NULL, 1.0f};                                                        \
        return float_dtype(dtype) ? decode_into(bits, in, n, &o) : -1;                                             \
    }                                                                                                              \
    attr static int decode_add_##level(zero_quant_bits_t bits, const void *in, size_t n, float *acc)               \
    {                                                                                                              \
        decode_out_t o = {DECODE_ADD, ZERO_FP32, acc, NULL, 1.0f};                                                 \
        return decode_into(bits, in, n, &o);                                                                       \
    }                                                                                                              \
    attr static int decode_first_##level(zero_quant_bits_t bits, const void *in, size_t n, float *acc)             \
    {                                                                                                              \
        decode_out_t o = {DECODE_FIRST, ZERO_FP32, acc, NULL, 1.0f};                                               \
        return decode_into(bits, in, n, &o);                                                                       \
    }                                                                                                              \
    attr static int decode_finish_##level(zero_quant_bits_t bits, const void *in, size_t n, const float *acc,      \
                                          float divisor, zero_dtype_t dtype, void *y)                              \
    {                                                                                                              \
        decode_out_t o = {DECODE_FINISH, dtype, y, acc, divisor};                                                  \
        return float_dtype(dtype) ? decode_into(bits, in, n, &o) : -1;                                             \
    }                                                                                                              \
    static const zero_quant_codec_t codec_##level = {encode_##level, decode_##level, decode_add_##level,           \
                                                     decode_first_##level, decode_finish_##level};

QUANT_CODEC(c, )
#ifdef QUANT_LEVELS
QUANT_CODEC(avx2, QUANT_AVX2)
QUANT_CODEC(avx512, QUANT_AVX512)
#endif

const zero_quant_codec_t *zero_quant_codec(zero_cpu_isa_t isa)
{
    if (isa == ZERO_CPU_ISA_C)
        return &codec_c;
#ifdef QUANT_LEVELS
    /* the levels' own test (AVX2 with FMA and F16C; AVX-512 F, BW, VL, DQ) */
    if ((isa == ZERO_CPU_ISA_AVX2 || isa == ZERO_CPU_ISA_AVX512) && zero_cpu_isa_detect() >= isa)
        return isa == ZERO_CPU_ISA_AVX2 ? &codec_avx2 : &codec_avx512;
#endif
    return NULL;
}

static const zero_quant_codec_t *chosen = &codec_c;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

/* A ZERO_CPU_ISA that is no level, or one above the CPU's, is logged there as
 * an error and leaves the baseline: every level gives the same bits, and the
 * engine refuses to start on such a value anyway (its optimizer context
 * checks the same). A level this build has no version of falls back to the
 * next one down. */
static void choose(void)
{
    zero_cpu_isa_t isa = ZERO_CPU_ISA_C;
    if (zero_cpu_isa_choose("quantization codec", &isa) != ZERO_OK)
        isa = ZERO_CPU_ISA_C;
    for (int level = (int)isa; level >= ZERO_CPU_ISA_C; level--) {
        const zero_quant_codec_t *codec = zero_quant_codec((zero_cpu_isa_t)level);
        if (codec != NULL) {
            chosen = codec;
            break;
        }
    }
}

static const zero_quant_codec_t *codec(void)
{
    pthread_once(&chosen_once, choose);
    return chosen;
}

int zero_quant_encode(zero_quant_bits_t bits, zero_dtype_t dtype, const void *x, size_t n, void *out)
{
    return codec()->encode(bits, dtype, x, n, out);
}

int zero_quant_decode(zero_quant_bits_t bits, const void *in, size_t n, zero_dtype_t dtype, void *y)
{
    return codec()->decode(bits, in, n, dtype, y);
}

int zero_quant_decode_add_f32(zero_quant_bits_t bits, const void *in, size_t n, float *acc)
{
    return codec()->decode_add_f32(bits, in, n, acc);
}

int zero_quant_decode_first_f32(zero_quant_bits_t bits, const void *in, size_t n, float *acc)
{
    return codec()->decode_first_f32(bits, in, n, acc);
}

int zero_quant_decode_add_finish(zero_quant_bits_t bits, const void *in, size_t n, const float *acc, float divisor,
                                 zero_dtype_t dtype, void *y)
{
    return codec()->decode_add_finish(bits, in, n, acc, divisor, dtype, y);
}
