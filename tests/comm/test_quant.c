/*
 * lib/comm/quant.c: block-wise int8/int4 quantization against a plain
 * reference written here in double (bit for bit), its error bound, the
 * special blocks (zeros, constants, subnormal scales, inf/NaN), every
 * length around the block size, 16-bit inputs and outputs, the fp32
 * accumulation of qgZ and its fused passes, every instruction-set level
 * of the codec against the baseline, and bad arguments.
 */
#include "test_main.h"
#include "comm/quant.h"
#include "util/half.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static double rnd01(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static const zero_quant_bits_t all_bits[] = {ZERO_QUANT_INT8, ZERO_QUANT_INT4};
static const size_t lengths[] = {0, 1, 2, 3, 255, 256, 257, 511, 513, 1000, 4099};
#define NLEN (sizeof(lengths) / sizeof(lengths[0]))

static int qmax(zero_quant_bits_t bits) { return bits == ZERO_QUANT_INT8 ? 127 : 7; }

/* Values whose magnitude differs block to block by orders of magnitude. */
static void fill_blocks(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double mag = pow(10.0, (double)((i / ZERO_QUANT_BLOCK) % 9) - 4.0);
        x[i] = (float)((rnd01() * 2.0 - 1.0) * mag);
    }
}

/* The reference decode of element i: its block's amax, the rounded integer,
 * and the value, all in double as the format defines them. */
static float reference_value(const float *x, size_t n, size_t i, int q_max)
{
    size_t first = i / ZERO_QUANT_BLOCK * ZERO_QUANT_BLOCK;
    size_t end = first + ZERO_QUANT_BLOCK < n ? first + ZERO_QUANT_BLOCK : n;
    double amax = 0.0;
    for (size_t j = first; j < end; j++) {
        if (!isfinite(x[j]))
            return NAN;
        amax = fabs((double)x[j]) > amax ? fabs((double)x[j]) : amax;
    }
    if (amax == 0.0)
        return 0.0f;
    double q = rint((double)x[i] * ((double)q_max / amax));
    q = q > q_max ? q_max : q < -q_max ? -q_max : q;
    /* Through an integer, as the wire carries it: -0 arrives as +0. */
    return (float)((double)(int)q * (amax / (double)q_max));
}

static void *encode_new(zero_quant_bits_t bits, zero_dtype_t dtype, const void *x, size_t n)
{
    size_t bytes = zero_quant_bytes(bits, n);
    void *buf = malloc(bytes ? bytes : 1);
    CU_ASSERT_FATAL(buf != NULL);
    CU_ASSERT_EQUAL(zero_quant_encode(bits, dtype, x, n, buf), 0);
    return buf;
}

static void test_sizes(void)
{
    CU_ASSERT_EQUAL(zero_quant_blocks(0), 0);
    CU_ASSERT_EQUAL(zero_quant_blocks(1), 1);
    CU_ASSERT_EQUAL(zero_quant_blocks(256), 1);
    CU_ASSERT_EQUAL(zero_quant_blocks(257), 2);
    CU_ASSERT_EQUAL(zero_quant_bytes(ZERO_QUANT_INT8, 257), 2 * 4 + 257);
    CU_ASSERT_EQUAL(zero_quant_bytes(ZERO_QUANT_INT4, 257), 2 * 4 + 129);
    CU_ASSERT_EQUAL(zero_quant_bytes(ZERO_QUANT_INT4, 256), 4 + 128);
    CU_ASSERT_EQUAL(zero_quant_bytes((zero_quant_bits_t)5, 10), 0);
}

/* Every length, both widths: decode equals the reference bit for bit and
 * stays within amax / (2 qmax) of the input. */
static void test_round_trip_fp32(void)
{
    for (size_t b = 0; b < 2; b++) {
        zero_quant_bits_t bits = all_bits[b];
        for (size_t l = 0; l < NLEN; l++) {
            size_t n = lengths[l];
            float *x = malloc((n + 1) * sizeof(float)), *y = malloc((n + 1) * sizeof(float));
            CU_ASSERT_FATAL(x && y);
            fill_blocks(x, n);
            void *enc = encode_new(bits, ZERO_FP32, x, n);
            CU_ASSERT_EQUAL(zero_quant_decode(bits, enc, n, ZERO_FP32, y), 0);
            size_t mismatches = 0, over_bound = 0;
            for (size_t i = 0; i < n; i++) {
                float ref = reference_value(x, n, i, qmax(bits));
                mismatches += memcmp(&ref, &y[i], sizeof(float)) != 0;
                size_t first = i / ZERO_QUANT_BLOCK * ZERO_QUANT_BLOCK;
                float amax = ((const float *)enc)[first / ZERO_QUANT_BLOCK];
                double bound = (double)amax / (2.0 * qmax(bits)) * (1.0 + 1e-6);
                over_bound += fabs((double)y[i] - (double)x[i]) > bound;
            }
            CU_ASSERT_EQUAL(mismatches, 0);
            CU_ASSERT_EQUAL(over_bound, 0);
            free(enc);
            free(x);
            free(y);
        }
    }
}

/* Zeros decode to zeros, a constant block and each block's largest element
 * are exact, and a block whose amax is subnormal keeps its scale. */
static void test_special_blocks(void)
{
    enum { N = 4 * ZERO_QUANT_BLOCK };
    static float x[N], y[N];
    for (size_t i = 0; i < ZERO_QUANT_BLOCK; i++) {
        x[i] = 0.0f;                                   /* block 0: zeros */
        x[ZERO_QUANT_BLOCK + i] = -3.25f;              /* block 1: a constant */
        x[2 * ZERO_QUANT_BLOCK + i] = (float)(rnd01() - 0.5) * 1e-3f;
        x[3 * ZERO_QUANT_BLOCK + i] = (float)(rnd01() - 0.5) * 4.0f * FLT_MIN / 1024.0f; /* subnormals */
    }
    x[2 * ZERO_QUANT_BLOCK + 17] = 7e-3f; /* block 2's largest */
    for (size_t b = 0; b < 2; b++) {
        zero_quant_bits_t bits = all_bits[b];
        void *enc = encode_new(bits, ZERO_FP32, x, N);
        CU_ASSERT_EQUAL(zero_quant_decode(bits, enc, N, ZERO_FP32, y), 0);
        size_t bad_zero = 0, bad_const = 0, bad_sub = 0;
        for (size_t i = 0; i < ZERO_QUANT_BLOCK; i++) {
            bad_zero += y[i] != 0.0f || signbit(y[i]);
            bad_const += y[ZERO_QUANT_BLOCK + i] != -3.25f;
            float s = y[3 * ZERO_QUANT_BLOCK + i], r = reference_value(x, N, 3 * ZERO_QUANT_BLOCK + i, qmax(bits));
            bad_sub += !isfinite(s) || memcmp(&s, &r, sizeof s) != 0;
        }
        CU_ASSERT_EQUAL(bad_zero, 0);
        CU_ASSERT_EQUAL(bad_const, 0);
        CU_ASSERT_EQUAL(bad_sub, 0);
        CU_ASSERT_EQUAL(y[2 * ZERO_QUANT_BLOCK + 17], 7e-3f);
        free(enc);
    }
}

/* An inf or NaN anywhere in a block makes that block NaN on arrival and
 * leaves its neighbours alone: a non-finite gradient is still detected after
 * a quantized hop, for every source dtype. */
static void test_nonfinite(void)
{
    enum { N = 3 * ZERO_QUANT_BLOCK + 5 };
    static float x[N], y[N];
    static uint16_t h[N];
    const float specials[] = {INFINITY, -INFINITY, NAN};
    const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};
    for (size_t s = 0; s < 3; s++) {
        for (size_t d = 0; d < 3; d++) {
            for (size_t b = 0; b < 2; b++) {
                fill_blocks(x, N);
                x[ZERO_QUANT_BLOCK + 40] = specials[s];
                x[N - 1] = specials[s]; /* the short last block too */
                const void *src = x;
                if (dtypes[d] != ZERO_FP32) {
                    for (size_t i = 0; i < N; i++)
                        h[i] = dtypes[d] == ZERO_BF16 ? zero_f32_to_bf16(x[i]) : zero_f32_to_f16(x[i]);
                    src = h;
                }
                void *enc = encode_new(all_bits[b], dtypes[d], src, N);
                CU_ASSERT_EQUAL(zero_quant_decode(all_bits[b], enc, N, ZERO_FP32, y), 0);
                size_t nan_block1 = 0, nan_last = 0, nan_elsewhere = 0;
                for (size_t i = 0; i < N; i++) {
                    size_t blk = i / ZERO_QUANT_BLOCK;
                    if (blk == 1)
                        nan_block1 += isnan(y[i]) != 0;
                    else if (blk == 3)
                        nan_last += isnan(y[i]) != 0;
                    else
                        nan_elsewhere += !isfinite(y[i]);
                }
                CU_ASSERT_EQUAL(nan_block1, ZERO_QUANT_BLOCK);
                CU_ASSERT_EQUAL(nan_last, 5);
                CU_ASSERT_EQUAL(nan_elsewhere, 0);
                free(enc);
            }
        }
    }
}

/* 16-bit inputs quantize their fp32 values; 16-bit outputs are the fp32
 * decode rounded to nearest even. */
static void test_16bit(void)
{
    enum { N = 1000 };
    static float x[N], y32[N];
    static uint16_t h[N], y16[N];
    const zero_dtype_t dtypes[] = {ZERO_BF16, ZERO_FP16};
    for (size_t d = 0; d < 2; d++) {
        int bf = dtypes[d] == ZERO_BF16;
        fill_blocks(x, N);
        for (size_t i = 0; i < N; i++) {
            h[i] = bf ? zero_f32_to_bf16(x[i]) : zero_f32_to_f16(x[i]);
            x[i] = bf ? zero_bf16_to_f32(h[i]) : zero_f16_to_f32(h[i]);
        }
        for (size_t b = 0; b < 2; b++) {
            void *from16 = encode_new(all_bits[b], dtypes[d], h, N);
            void *from32 = encode_new(all_bits[b], ZERO_FP32, x, N);
            CU_ASSERT_EQUAL(memcmp(from16, from32, zero_quant_bytes(all_bits[b], N)), 0);
            CU_ASSERT_EQUAL(zero_quant_decode(all_bits[b], from16, N, ZERO_FP32, y32), 0);
            CU_ASSERT_EQUAL(zero_quant_decode(all_bits[b], from16, N, dtypes[d], y16), 0);
            size_t bad = 0;
            for (size_t i = 0; i < N; i++)
                bad += y16[i] != (bf ? zero_f32_to_bf16(y32[i]) : zero_f32_to_f16(y32[i]));
            CU_ASSERT_EQUAL(bad, 0);
            free(from16);
            free(from32);
        }
    }
}

/* qgZ's sum over W ranks accumulated in fp32: the error of the sum is at
 * most the sum of the parts' bounds, so it grows no faster than W. */
static void test_decode_add(void)
{
    enum { N = 2 * ZERO_QUANT_BLOCK + 77, W = 8 };
    static float part[W][N], acc[N];
    static double exact[N], bound[N];
    memset(acc, 0, sizeof acc);
    memset(exact, 0, sizeof exact);
    memset(bound, 0, sizeof bound);
    for (int r = 0; r < W; r++) {
        fill_blocks(part[r], N);
        void *enc = encode_new(ZERO_QUANT_INT8, ZERO_FP32, part[r], N);
        CU_ASSERT_EQUAL(zero_quant_decode_add_f32(ZERO_QUANT_INT8, enc, N, acc), 0);
        for (size_t i = 0; i < N; i++) {
            exact[i] += part[r][i];
            bound[i] += ((const float *)enc)[i / ZERO_QUANT_BLOCK] / 254.0 + fabs(exact[i]) * 2 * FLT_EPSILON;
        }
        free(enc);
    }
    size_t over = 0;
    for (size_t i = 0; i < N; i++)
        over += fabs((double)acc[i] - exact[i]) > bound[i];
    CU_ASSERT_EQUAL(over, 0);
}

/* The fused passes (zero_quant_decode_first_f32, zero_quant_decode_add_finish)
 * against the passes they replace, bit for bit: a zeroed sum, every part
 * added, the division, the rounding to each dtype; with a block of zeros
 * and a poisoned block among the parts. */
static void test_decode_fused(void)
{
    enum { N = 3 * ZERO_QUANT_BLOCK + 5, PARTS = 3 };
    static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};
    static const float divisors[] = {1.0f, 3.0f};
    static float part[PARTS][N], want_acc[N], acc[N], want[N], got[N];
    void *enc[PARTS];
    for (size_t b = 0; b < sizeof(all_bits) / sizeof(all_bits[0]); b++) {
        zero_quant_bits_t bits = all_bits[b];
        for (int r = 0; r < PARTS; r++) {
            fill_blocks(part[r], N);
            if (r == 0)
                memset(part[r], 0, ZERO_QUANT_BLOCK * sizeof(float));
            if (r == 1)
                part[r][ZERO_QUANT_BLOCK + 7] = NAN;
            enc[r] = encode_new(bits, ZERO_FP32, part[r], N);
        }
        for (int parts = 1; parts <= PARTS; parts++) {
            static const size_t ns[] = {0, 299, N};
            for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
                size_t n = ns[k];
                /* the passes replaced: zero, add each part */
                memset(want_acc, 0, sizeof want_acc);
                for (int r = 0; r < parts; r++)
                    CU_ASSERT_EQUAL(zero_quant_decode_add_f32(bits, enc[r], n, want_acc), 0);
                /* fused: the first part decoded into the sum (world of one: zeroed) */
                memset(acc, 0x7f, sizeof acc);
                if (parts == 1)
                    memset(acc, 0, sizeof acc);
                else
                    CU_ASSERT_EQUAL(zero_quant_decode_first_f32(bits, enc[0], n, acc), 0);
                for (int r = 1; r < parts - 1; r++)
                    CU_ASSERT_EQUAL(zero_quant_decode_add_f32(bits, enc[r], n, acc), 0);
                if (parts > 1) {   /* the sum before the last part, bit for bit */
                    static float before[N];
                    memset(before, 0, sizeof before);
                    for (int r = 0; r < parts - 1; r++)
                        zero_quant_decode_add_f32(bits, enc[r], n, before);
                    CU_ASSERT_EQUAL(memcmp(acc, before, n * sizeof(float)), 0);
                }
                for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++) {
                    for (size_t v = 0; v < sizeof(divisors) / sizeof(divisors[0]); v++) {
                        size_t es = zero_dtype_size(dtypes[d]), bad = 0;
                        for (size_t i = 0; i < n; i++) {
                            float x = divisors[v] != 1.0f ? want_acc[i] / divisors[v] : want_acc[i];
                            if (dtypes[d] == ZERO_FP32)
                                want[i] = x;
                            else
                                ((uint16_t *)want)[i] = dtypes[d] == ZERO_BF16 ? zero_f32_to_bf16(x)
                                                                               : zero_f32_to_f16(x);
                        }
                        CU_ASSERT_EQUAL(zero_quant_decode_add_finish(bits, enc[parts - 1], n, acc, divisors[v],
                                                                     dtypes[d], got), 0);
                        for (size_t i = 0; i < n * es; i++)
                            bad += ((const unsigned char *)got)[i] != ((const unsigned char *)want)[i];
                        CU_ASSERT_EQUAL(bad, 0);
                    }
                }
            }
        }
        for (int r = 0; r < PARTS; r++)
            free(enc[r]);
    }
    /* in place (y = acc, fp32) and bad arguments */
    {
        float x[4] = {1, -2, 3, 4}, sum[4] = {1, 1, 1, 1}, dec[4];
        unsigned char buf[64];
        CU_ASSERT_EQUAL(zero_quant_encode(ZERO_QUANT_INT8, ZERO_FP32, x, 4, buf), 0);
        CU_ASSERT_EQUAL(zero_quant_decode(ZERO_QUANT_INT8, buf, 4, ZERO_FP32, dec), 0);
        CU_ASSERT_EQUAL(zero_quant_decode_add_finish(ZERO_QUANT_INT8, buf, 4, sum, 2.0f, ZERO_FP32, sum), 0);
        for (int i = 0; i < 4; i++)
            CU_ASSERT(sum[i] == (1.0f + dec[i]) / 2.0f);
        CU_ASSERT_EQUAL(zero_quant_decode_add_finish(ZERO_QUANT_INT8, buf, 4, sum, 1.0f, ZERO_I32, x), -1);
        CU_ASSERT_EQUAL(zero_quant_decode_add_finish((zero_quant_bits_t)2, buf, 4, sum, 1.0f, ZERO_FP32, x), -1);
        CU_ASSERT_EQUAL(zero_quant_decode_first_f32((zero_quant_bits_t)2, buf, 4, sum), -1);
    }
}

/* ---- every instruction-set level of the codec, bit for bit ---- */

static uint32_t rnd32(void)
{
    rnd01();
    return (uint32_t)(rng_state >> 32);
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* n fp32 values of one input class. */
enum { CLASS_ZEROS, CLASS_CONSTANT, CLASS_SUBNORMAL, CLASS_SPREAD, CLASS_TIES, CLASS_NONFINITE, CLASS_HUGE,
       CLASS_RANDOM_BITS, CLASSES };
static void fill_class(int cls, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rnd32();
        switch (cls) {
        case CLASS_ZEROS:   /* +0 and -0 */
            x[i] = from_bits(r & 0x80000000u);
            break;
        case CLASS_CONSTANT:
            x[i] = (i / ZERO_QUANT_BLOCK) % 2 ? -3.7f : 1e-3f;
            break;
        case CLASS_SUBNORMAL:
            x[i] = from_bits(r & 0x807fffffu);
            break;
        case CLASS_SPREAD:
            x[i] = (float)((rnd01() * 2.0 - 1.0) * pow(10.0, (double)(r % 13) - 6.0));
            break;
        case CLASS_TIES: {   /* odd multiples of half a step: x * qmax / amax lands on (or within a
                              * double rounding of) k + 1/2, where a fused multiply-add rounds otherwise */
            size_t blk = i / ZERO_QUANT_BLOCK;   /* one amax a block, its first element */
            float amax = (float)(1.0 + (double)blk / 64.0 + (double)(blk * 2654435761u % 4096u) / 65536.0);
            int q_max = (r >> 12) % 2 ? 127 : 7;
            x[i] = i % ZERO_QUANT_BLOCK == 0 ? amax
                                             : (float)((double)amax * (double)(2 * (int)((r >> 13) % (unsigned)q_max) + 1) /
                                                       (2.0 * q_max));
            break;
        }
        case CLASS_NONFINITE: {   /* finite blocks with inf, -inf, quiet and signalling NaNs here and there */
            static const uint32_t odd[] = {0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc12345u, 0x7f800001u};
            x[i] = r % 97 == 0 ? from_bits(odd[(r >> 8) % 5]) : (float)(rnd01() - 0.5);
            break;
        }
        case CLASS_HUGE:   /* near FLT_MAX, so that sums of parts overflow */
            x[i] = (r & 1 ? -1.0f : 1.0f) * (FLT_MAX - (float)(r % 7) * 1e31f);
            break;
        default:
            x[i] = from_bits(r);
        }
    }
}

/* @p n values as @p dtype in @p dst: fp32 as is; 16-bit from the fp32 values,
 * except the random-bits class, whose 16-bit inputs are random bits too. */
static void as_dtype(int cls, zero_dtype_t dtype, const float *x, size_t n, void *dst)
{
    for (size_t i = 0; i < n; i++) {
        if (dtype == ZERO_FP32)
            ((float *)dst)[i] = x[i];
        else if (cls == CLASS_RANDOM_BITS)
            ((uint16_t *)dst)[i] = (uint16_t)rnd32();
        else
            ((uint16_t *)dst)[i] = dtype == ZERO_BF16 ? zero_f32_to_bf16(x[i]) : zero_f32_to_f16(x[i]);
    }
}

static float dtype_value(zero_dtype_t dtype, const void *x, size_t i)
{
    if (dtype == ZERO_FP32)
        return ((const float *)x)[i];
    return dtype == ZERO_BF16 ? zero_bf16_to_f32(((const uint16_t *)x)[i]) : zero_f16_to_f32(((const uint16_t *)x)[i]);
}

/* Every level of the codec this CPU has (util/cpu.h: AVX-512, AVX2; the
 * public entry points run one of them) against the baseline level, bit for
 * bit, in every entry point: input classes from zeros to random bit patterns,
 * lengths around the vector widths and the block, inputs and outputs off
 * their natural alignment, every dtype and mode. The baseline itself against
 * the double reference (reference_value), element by element. */
static void test_levels(void)
{
    enum { MAXN = 2 * ZERO_QUANT_BLOCK + 40, OFF = 3 };
    static const size_t ns[] = {0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 65, 255, 256, 257, 2 * ZERO_QUANT_BLOCK + 33};
    static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};
    static const float divisors[] = {1.0f, 3.0f, 0.5f};
    static float x32[MAXN], fx[MAXN], acc0[MAXN + OFF], ref[MAXN];
    static float xin[MAXN + OFF], acc_c[MAXN + OFF], acc_l[MAXN + OFF];
    static unsigned char enc_c[sizeof(float) * 8 + MAXN + 16], enc_l[sizeof(float) * 8 + MAXN + 16];
    static float out_c[MAXN + OFF], out_l[MAXN + OFF];
    const zero_quant_codec_t *base = zero_quant_codec(ZERO_CPU_ISA_C);
    size_t compared = 0, levels = 0, bad = 0;
    CU_ASSERT_FATAL(base != NULL);
#if defined(__x86_64__) && defined(__GNUC__)
    /* an x86-64 build has every level; the CPU decides which run */
    CU_ASSERT(zero_quant_codec(zero_cpu_isa_detect()) != NULL);
#endif
    CU_ASSERT(zero_quant_codec((zero_cpu_isa_t)ZERO_CPU_ISA_COUNT) == NULL);
    for (int level = ZERO_CPU_ISA_C; level < ZERO_CPU_ISA_COUNT; level++) {
        const zero_quant_codec_t *codec = zero_quant_codec((zero_cpu_isa_t)level);
        if (codec == NULL)
            continue;
        levels++;
        for (int cls = 0; cls < CLASSES; cls++)
            for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++)
                for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++)
                    for (size_t b = 0; b < sizeof(all_bits) / sizeof(all_bits[0]); b++) {
                        size_t n = ns[k], es = zero_dtype_size(dtypes[d]), off = (k + (size_t)cls) % (OFF + 1);
                        size_t wire_off = 4 * (k % 2);   /* the scales need 4-byte alignment, no more */
                        zero_quant_bits_t bits = all_bits[b];
                        /* inputs at element offset off: 16-bit ones land on 2-byte boundaries */
                        void *x = (char *)xin + off * es;
                        fill_class(cls, x32, n);
                        as_dtype(cls, dtypes[d], x32, n, x);
                        memset(enc_c, 0xa5, sizeof enc_c);
                        memset(enc_l, 0xa5, sizeof enc_l);
                        CU_ASSERT_EQUAL(base->encode(bits, dtypes[d], x, n, enc_c + wire_off), 0);
                        CU_ASSERT_EQUAL(codec->encode(bits, dtypes[d], x, n, enc_l + wire_off), 0);
                        bad += memcmp(enc_c, enc_l, sizeof enc_c) != 0;
                        const void *in = enc_c + wire_off;
                        if (level == ZERO_CPU_ISA_C) {   /* the baseline against the reference */
                            for (size_t i = 0; i < n; i++)
                                fx[i] = dtype_value(dtypes[d], x, i);
                            CU_ASSERT_EQUAL(base->decode(bits, in, n, ZERO_FP32, out_c + off), 0);
                            for (size_t i = 0; i < n; i++) {
                                ref[i] = reference_value(fx, n, i, qmax(bits));
                                bad += memcmp(&ref[i], &out_c[off + i], sizeof(float)) != 0;
                            }
                            compared++;
                            continue;
                        }
                        /* decode to each dtype, at an output offset */
                        for (size_t e = 0; e < sizeof(dtypes) / sizeof(dtypes[0]); e++) {
                            size_t oes = zero_dtype_size(dtypes[e]);
                            memset(out_c, 0x5a, sizeof out_c);
                            memset(out_l, 0x5a, sizeof out_l);
                            CU_ASSERT_EQUAL(base->decode(bits, in, n, dtypes[e], (char *)out_c + off * oes), 0);
                            CU_ASSERT_EQUAL(codec->decode(bits, in, n, dtypes[e], (char *)out_l + off * oes), 0);
                            bad += memcmp(out_c, out_l, sizeof out_c) != 0;
                        }
                        /* the sums: a running sum of this class's values (so sums overflow
                         * and carry NaN), the first part, the last part finished */
                        fill_class(cls == CLASS_RANDOM_BITS ? CLASS_SPREAD : cls, acc0, n + OFF);
                        memcpy(acc_c, acc0, sizeof acc_c);
                        memcpy(acc_l, acc0, sizeof acc_l);
                        CU_ASSERT_EQUAL(base->decode_add_f32(bits, in, n, acc_c + off), 0);
                        CU_ASSERT_EQUAL(codec->decode_add_f32(bits, in, n, acc_l + off), 0);
                        bad += memcmp(acc_c, acc_l, sizeof acc_c) != 0;
                        memcpy(acc_c, acc0, sizeof acc_c);
                        memcpy(acc_l, acc0, sizeof acc_l);
                        CU_ASSERT_EQUAL(base->decode_first_f32(bits, in, n, acc_c + off), 0);
                        CU_ASSERT_EQUAL(codec->decode_first_f32(bits, in, n, acc_l + off), 0);
                        bad += memcmp(acc_c, acc_l, sizeof acc_c) != 0;
                        for (size_t e = 0; e < sizeof(dtypes) / sizeof(dtypes[0]); e++)
                            for (size_t v = 0; v < sizeof(divisors) / sizeof(divisors[0]); v++) {
                                size_t oes = zero_dtype_size(dtypes[e]);
                                memset(out_c, 0x5a, sizeof out_c);
                                memset(out_l, 0x5a, sizeof out_l);
                                CU_ASSERT_EQUAL(base->decode_add_finish(bits, in, n, acc0 + off, divisors[v], dtypes[e],
                                                                        (char *)out_c + off * oes), 0);
                                CU_ASSERT_EQUAL(codec->decode_add_finish(bits, in, n, acc0 + off, divisors[v],
                                                                         dtypes[e], (char *)out_l + off * oes), 0);
                                bad += memcmp(out_c, out_l, sizeof out_c) != 0;
                            }
                        compared++;
                    }
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(levels >= 1 && compared > 0);
    printf("\n    codec levels compared: %zu (%zu cases, %zu differing)\n", levels, compared, bad);
}

static void test_bad_arguments(void)
{
    float x[4] = {1, 2, 3, 4}, y[4];
    unsigned char buf[64];
    CU_ASSERT_EQUAL(zero_quant_encode((zero_quant_bits_t)3, ZERO_FP32, x, 4, buf), -1);
    CU_ASSERT_EQUAL(zero_quant_encode(ZERO_QUANT_INT8, ZERO_U8, x, 4, buf), -1);
    CU_ASSERT_EQUAL(zero_quant_encode(ZERO_QUANT_INT8, ZERO_FP32, x, 4, buf), 0);
    CU_ASSERT_EQUAL(zero_quant_decode((zero_quant_bits_t)16, buf, 4, ZERO_FP32, y), -1);
    CU_ASSERT_EQUAL(zero_quant_decode(ZERO_QUANT_INT8, buf, 4, ZERO_I32, y), -1);
    CU_ASSERT_EQUAL(zero_quant_decode_add_f32((zero_quant_bits_t)0, buf, 4, y), -1);
}

static CU_TestInfo quant_tests[] = {
    {"sizes", test_sizes},
    {"round trip fp32 against the reference", test_round_trip_fp32},
    {"zeros, constants, largest element, subnormal scales", test_special_blocks},
    {"inf and NaN poison exactly their block", test_nonfinite},
    {"16-bit inputs and outputs", test_16bit},
    {"fp32 accumulation over ranks", test_decode_add},
    {"fused first and last passes of a sum, bit for bit", test_decode_fused},
    {"every instruction-set level, bit for bit", test_levels},
    {"bad arguments", test_bad_arguments},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"quant", NULL, NULL, NULL, NULL, quant_tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    return zero_test_main(argc, argv, suites);
}
