/*
 * AVX-512 (F, BW, VL, DQ) optimizer kernels; same structure as optim_avx2.c.
 * Installed only when the CPU reports all four extensions.
 */
#include "optim/optim_dsp.h"
#include "util/half.h"

#include <zero/types.h>

#if defined(__x86_64__) || defined(__i386__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#endif

#include <immintrin.h>
#include <string.h>

#define VW 16
#define FN(name) name##_avx512
typedef __m512 vf;
#define VPREFETCH4(i, a, b, c, d) do { } while (0)   /* no measured gain at 512 bits */
typedef struct { __m512d a, b; } vacc;

static inline vf vld(const float *p) { return _mm512_loadu_ps(p); }
static inline void vst(float *p, vf x) { _mm512_storeu_ps(p, x); }
static inline vf vset(float x) { return _mm512_set1_ps(x); }
static inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vsqrt(vf a) { return _mm512_sqrt_ps(a); }

static inline vf vsign(vf x)
{
    const vf zero = _mm512_setzero_ps();
    vf r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, zero, _CMP_GT_OQ), x, _mm512_set1_ps(1.0f));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, zero, _CMP_LT_OQ), r, _mm512_set1_ps(-1.0f));
}

static inline vf vld_bf16(const uint16_t *p)
{
    __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

static inline vf vld_f16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

/* Integer rounding rather than VCVTNEPS2BF16, which flushes subnormals. */
static inline __m256i cvt_bf16(vf x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i hi = _mm512_srli_epi32(u, 16);
    __mmask16 isnan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                              _mm512_set1_epi32(0x7f800000));
    __m512i bias = _mm512_add_epi32(_mm512_and_si512(hi, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x7fff));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
    r = _mm512_mask_blend_epi32(isnan, r, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(r);
}

static inline void vst16(uint16_t *p, vf x, int t)
{
    if (t == ZERO_OPTIM_W16_BF16) {
        _mm256_storeu_si256((__m256i *)p, cvt_bf16(x));
    } else {
        _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        if (nan) {                       /* canonical NaN, as zero_f32_to_f16 */
            float lanes[VW];
            _mm512_storeu_ps(lanes, x);
            for (int j = 0; j < VW; j++)
                if (nan & (1u << j))
                    p[j] = zero_f32_to_f16(lanes[j]);
        }
    }
}

static inline vacc vacc_zero(void)
{
    vacc a = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    return a;
}

static inline vacc vacc_sq(vacc a, vf x)
{
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    a.a = _mm512_add_pd(a.a, _mm512_mul_pd(lo, lo));
    a.b = _mm512_add_pd(a.b, _mm512_mul_pd(hi, hi));
    return a;
}

static inline double vacc_sum(vacc a)
{
    double lanes[8];
    _mm512_storeu_pd(lanes, _mm512_add_pd(a.a, a.b));
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

#include "optim/optim_simd.h"

static size_t count_nonfinite_f32_avx512(const void *x, size_t n)
{
    const float *p = x;
    const __m512i expo = _mm512_set1_epi32(0x7f800000);
    size_t count = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_loadu_si512((const void *)(p + i));
        count += (size_t)__builtin_popcount(_mm512_cmpeq_epi32_mask(_mm512_and_si512(u, expo), expo));
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        __m512i u = _mm512_maskz_loadu_epi32(k, p + i);
        count += (size_t)__builtin_popcount(_mm512_mask_cmpeq_epi32_mask(k, _mm512_and_si512(u, expo), expo));
    }
    return count;
}

static size_t count_nonfinite_16(const uint16_t *p, size_t n, uint16_t mask)
{
    const __m512i expo = _mm512_set1_epi16((short)mask);
    size_t count = 0, i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i u = _mm512_loadu_si512((const void *)(p + i));
        count += (size_t)__builtin_popcount(_mm512_cmpeq_epi16_mask(_mm512_and_si512(u, expo), expo));
    }
    if (i < n) {
        __mmask32 k = (__mmask32)((1u << (n - i)) - 1u);
        __m512i u = _mm512_maskz_loadu_epi16(k, p + i);
        count += (size_t)__builtin_popcount(_mm512_mask_cmpeq_epi16_mask(k, _mm512_and_si512(u, expo), expo));
    }
    return count;
}

static size_t count_nonfinite_f16_avx512(const void *x, size_t n)
{
    return count_nonfinite_16(x, n, 0x7c00u);
}

static size_t count_nonfinite_bf16_avx512(const void *x, size_t n)
{
    return count_nonfinite_16(x, n, 0x7f80u);
}

void zero_optim_dsp_init_avx512(zero_optim_dsp_t *dsp)
{
    init_common_avx512(dsp);
    dsp->count_nonfinite[ZERO_FP32] = count_nonfinite_f32_avx512;
    dsp->count_nonfinite[ZERO_FP16] = count_nonfinite_f16_avx512;
    dsp->count_nonfinite[ZERO_BF16] = count_nonfinite_bf16_avx512;
}

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#else /* not x86 */

void zero_optim_dsp_init_avx512(zero_optim_dsp_t *dsp)
{
    (void)dsp;
}

#endif
