/*
 * zero_convert (include/zero/convert.h): the public fp32 <-> bf16/fp16
 * conversions give bit for bit what the engine's kernels give (every
 * instruction-set level this CPU has, and the scalar reference of
 * lib/util/half.h), and the documented values on the edge cases: ties to even,
 * overflow to infinity, fp16 subnormals, signed zeros, NaN.
 */
#include "test_main.h"

#include "optim/optim.h"
#include "util/half.h"

#include <zero/convert.h>
#include <zero/log.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* fp32 bit patterns with their expected bf16 and fp16 bits. */
typedef struct {
    uint32_t f32;
    uint16_t bf16, fp16;
    const char *what;
} edge_case_t;

static const edge_case_t edge_cases[] = {
    {0x3f800000u, 0x3f80, 0x3c00, "1.0"},
    {0xbf800000u, 0xbf80, 0xbc00, "-1.0"},
    {0x00000000u, 0x0000, 0x0000, "+0"},
    {0x80000000u, 0x8000, 0x8000, "-0"},
    {0x7f800000u, 0x7f80, 0x7c00, "+inf"},
    {0xff800000u, 0xff80, 0xfc00, "-inf"},
    {0x7fc00000u, 0x7fc0, 0x7e00, "quiet NaN"},
    {0xffc00000u, 0xffc0, 0xfe00, "negative quiet NaN"},
    {0x7f800001u, 0x7fc0, 0x7e00, "signalling NaN, low payload: stays NaN, made quiet"},
    {0x7fa12345u, 0x7fe1, 0x7e00, "NaN with payload: bf16 keeps the top bits"},
    /* bf16 ties: the 16 bits dropped are exactly 0x8000 */
    {0x3f808000u, 0x3f80, 0x3c04, "bf16 tie, even below: down"},
    {0x3f818000u, 0x3f82, 0x3c0c, "bf16 tie, odd below: up"},
    {0x3f808001u, 0x3f81, 0x3c04, "just above a bf16 tie: up"},
    {0x7f7fffffu, 0x7f80, 0x7c00, "FLT_MAX: rounds to inf in both"},
    /* fp16 ties: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 */
    {0x3f801000u, 0x3f80, 0x3c00, "fp16 tie, even below: down"},
    {0x3f803000u, 0x3f80, 0x3c02, "fp16 tie, odd below: up"},
    {0x477fe000u, 0x4780, 0x7bff, "65504 = fp16 max"},
    {0x477fefffu, 0x4780, 0x7bff, "just below 65520: fp16 max"},
    {0x477ff000u, 0x4780, 0x7c00, "65520: fp16 overflows to inf"},
    /* fp16 subnormals (2^-24 is the smallest) */
    {0x33800000u, 0x3380, 0x0001, "2^-24: smallest fp16 subnormal"},
    {0x33000000u, 0x3300, 0x0000, "2^-25: tie between 0 and 2^-24, to even 0"},
    {0x33c00000u, 0x33c0, 0x0002, "3 * 2^-25: tie, to even 2 * 2^-24"},
    {0x33000001u, 0x3300, 0x0001, "just above 2^-25: up to 2^-24"},
    {0xb3800000u, 0xb380, 0x8001, "-2^-24"},
    {0x387fc000u, 0x3880, 0x03ff, "largest fp16 subnormal"},
    {0x38800000u, 0x3880, 0x0400, "2^-14: smallest fp16 normal"},
    {0x00000001u, 0x0000, 0x0000, "smallest fp32 subnormal"},
    {0x007fffffu, 0x0080, 0x0000, "largest fp32 subnormal: bf16 rounds up to the smallest normal"},
};

static float f32_of(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

static void test_edge_cases(void)
{
    size_t n = sizeof(edge_cases) / sizeof(edge_cases[0]);
    float src[64];
    uint16_t bf16[64], fp16[64];
    CU_ASSERT_FATAL(n <= 64);
    for (size_t i = 0; i < n; i++)
        src[i] = f32_of(edge_cases[i].f32);
    CU_ASSERT_EQUAL_FATAL(zero_convert(bf16, ZERO_BF16, src, ZERO_FP32, n), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_convert(fp16, ZERO_FP16, src, ZERO_FP32, n), ZERO_OK);
    for (size_t i = 0; i < n; i++) {
        if (bf16[i] != edge_cases[i].bf16 || fp16[i] != edge_cases[i].fp16) {
            printf("\n    %s (0x%08x): bf16 0x%04x (expected 0x%04x), fp16 0x%04x (expected 0x%04x)",
                   edge_cases[i].what, edge_cases[i].f32, bf16[i], edge_cases[i].bf16, fp16[i], edge_cases[i].fp16);
            CU_FAIL("edge case");
        }
    }
}

/* Every 16-bit pattern back to fp32: exact, and as the reference. */
static void test_all_16bit_to_f32(void)
{
    uint16_t *h = malloc(65536 * sizeof(*h));
    float *f = malloc(65536 * sizeof(*f));
    CU_ASSERT_FATAL(h != NULL && f != NULL);
    for (uint32_t i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    for (int t = 0; t < 2; t++) {
        zero_dtype_t dtype = t == 0 ? ZERO_BF16 : ZERO_FP16;
        size_t bad = 0;
        CU_ASSERT_EQUAL_FATAL(zero_convert(f, ZERO_FP32, h, dtype, 65536), ZERO_OK);
        for (uint32_t i = 0; i < 65536; i++) {
            float want = t == 0 ? zero_bf16_to_f32((uint16_t)i) : zero_f16_to_f32((uint16_t)i);
            uint16_t back;
            if (memcmp(&want, &f[i], sizeof(float)) != 0)
                bad++;
            /* and back: exact for every non-NaN pattern */
            back = t == 0 ? zero_f32_to_bf16(f[i]) : zero_f32_to_f16(f[i]);
            if (!isnan(f[i]) && back != (uint16_t)i)
                bad++;
        }
        /* every kernel level gives the same bits (signalling NaNs made quiet, as F16C does) */
        for (int isa = 0; isa <= (int)zero_optim_isa_detect(); isa++) {
            zero_optim_ctx_t ctx;
            float *k = malloc(65536 * sizeof(*k));
            CU_ASSERT_FATAL(k != NULL);
            CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, (zero_optim_isa_t)isa, NULL), ZERO_OK);
            CU_ASSERT_EQUAL_FATAL(zero_optim_from_16(&ctx, t == 0 ? ZERO_OPTIM_W16_BF16 : ZERO_OPTIM_W16_FP16, k, h,
                                                     65536), ZERO_OK);
            for (uint32_t i = 0; i < 65536; i++)
                if (memcmp(&k[i], &f[i], sizeof(float)) != 0) {
                    if (bad < 1000)
                        printf("\n    %s 0x%04x -> fp32: the %s kernel gives 0x%08x, zero_convert 0x%08x",
                               zero_dtype_string(dtype), i, zero_optim_isa_name((zero_optim_isa_t)isa),
                               zero_f32_bits(k[i]), zero_f32_bits(f[i]));
                    bad += 1000;
                }
            free(k);
        }
        if (bad > 0)
            printf("\n    %s -> fp32: %zu mismatches", zero_dtype_string(dtype), bad);
        CU_ASSERT_EQUAL(bad, 0);
    }
    free(h);
    free(f);
}

/* Random fp32 (every exponent, NaN and inf included) to 16 bits: zero_convert,
 * the scalar reference and the kernels of every instruction-set level agree
 * bit for bit, at lengths that exercise the vector tails. */
static void test_random_against_kernels(void)
{
    enum { N = 1 << 18 };
    float *src = malloc(N * sizeof(*src));
    uint16_t *got = malloc(N * sizeof(*got)), *kern = malloc(N * sizeof(*kern));
    uint32_t state = 12345u;
    CU_ASSERT_FATAL(src != NULL && got != NULL && kern != NULL);
    for (size_t i = 0; i < N; i++) {
        uint32_t bits;
        state = state * 1664525u + 1013904223u;
        bits = state ^ (state >> 15) * 2654435761u;
        if (i % 7 == 0)   /* near the fp16 range, where ties and subnormals are */
            bits = (bits & 0x807fffffu) | ((uint32_t)(100 + (bits >> 24) % 45) << 23);
        if (i % 11 == 0)  /* exact ties: the bits dropped are exactly half */
            bits = (bits & 0xffff0000u) | 0x8000u;
        src[i] = f32_of(bits);
    }
    for (int t = 0; t < 2; t++) {
        zero_dtype_t dtype = t == 0 ? ZERO_BF16 : ZERO_FP16;
        zero_optim_w16_t w16 = t == 0 ? ZERO_OPTIM_W16_BF16 : ZERO_OPTIM_W16_FP16;
        size_t lengths[] = {1, 7, 15, 17, 33, 1000, N};
        for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
            size_t n = lengths[li], bad = 0;
            CU_ASSERT_EQUAL_FATAL(zero_convert(got, dtype, src, ZERO_FP32, n), ZERO_OK);
            for (size_t i = 0; i < n; i++)
                if (got[i] != (t == 0 ? zero_f32_to_bf16(src[i]) : zero_f32_to_f16(src[i])))
                    bad++;
            for (int isa = 0; isa <= (int)zero_optim_isa_detect(); isa++) {
                zero_optim_ctx_t ctx;
                CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, (zero_optim_isa_t)isa, NULL), ZERO_OK);
                CU_ASSERT_EQUAL_FATAL(zero_optim_to_16(&ctx, w16, kern, src, n), ZERO_OK);
                if (memcmp(kern, got, n * sizeof(*got)) != 0) {
                    printf("\n    %s, %zu elements: the %s kernel differs", zero_dtype_string(dtype), n,
                           zero_optim_isa_name((zero_optim_isa_t)isa));
                    bad++;
                }
            }
            CU_ASSERT_EQUAL(bad, 0);
        }
    }
    free(src);
    free(got);
    free(kern);
}

static void test_bad_arguments(void)
{
    float f[4] = {0};
    uint16_t h[4] = {0};
    zero_log_level_t old = zero_log_get_level();
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);
    CU_ASSERT_EQUAL(zero_convert(h, ZERO_BF16, h, ZERO_FP16, 4), ZERO_ERR_INVALID_ARG);  /* 16 <-> 16 */
    CU_ASSERT_EQUAL(zero_convert(h, ZERO_I32, f, ZERO_FP32, 4), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_convert(NULL, ZERO_BF16, f, ZERO_FP32, 4), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_convert(h, ZERO_BF16, NULL, ZERO_FP32, 4), ZERO_ERR_INVALID_ARG);
    zero_log_set_level(old);
    CU_ASSERT_EQUAL(zero_convert(NULL, ZERO_BF16, NULL, ZERO_FP32, 0), ZERO_OK);
    f[0] = 3.0f;
    CU_ASSERT_EQUAL(zero_convert(f + 1, ZERO_FP32, f, ZERO_FP32, 1), ZERO_OK);   /* a copy */
    CU_ASSERT_EQUAL(f[1], 3.0f);
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"edge cases: ties, overflow, subnormals, NaN", test_edge_cases},
        {"every 16-bit pattern to fp32", test_all_16bit_to_f32},
        {"random fp32 against every kernel level", test_random_against_kernels},
        {"bad arguments", test_bad_arguments},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {
        {"convert", NULL, NULL, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return zero_test_main(argc, argv, suites);
}
