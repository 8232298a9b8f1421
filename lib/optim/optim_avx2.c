/*
 * AVX2 (+F16C) optimizer kernels. Only this file is compiled for AVX2 (through
 * the target pragma below), so the rest of the library stays generic; the
 * table entries are installed only when the CPU has AVX2, FMA and F16C.
 */
#include "optim/optim_dsp.h"
#include "util/half.h"

#include <zero/types.h>

#if defined(__x86_64__) || defined(__i386__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>
#include <string.h>

#define VW 8
#define FN(name) name##_avx2
typedef __m256 vf;
/* Adam's four read streams are prefetched 8 KiB ahead into L2, once per
 * cache line: with 256-bit vectors the out-of-order window alone keeps too few
 * misses in flight (measured: AdamW at DRAM +15-30% on the 2-core Zen 4 VM;
 * the AVX-512 kernel gained nothing from it). Integer arithmetic on the
 * address: prefetching past the end is harmless, forming such a pointer is not. */
#define PF_BYTES 8192
#define VPF(p) _mm_prefetch((const char *)((uintptr_t)(p) + PF_BYTES), _MM_HINT_T1)
#define VPREFETCH4(i, a, b, c, d)                       \
    do {                                                \
        if (((i) & 15) == 0) {                          \
            VPF(a);                                     \
            VPF(b);                                     \
            VPF(c);                                     \
            VPF(d);                                     \
        }                                               \
    } while (0)
typedef struct { __m256d a, b; } vacc;

static inline vf vld(const float *p) { return _mm256_loadu_ps(p); }
static inline void vst(float *p, vf x) { _mm256_storeu_ps(p, x); }
static inline vf vset(float x) { return _mm256_set1_ps(x); }
static inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vsqrt(vf a) { return _mm256_sqrt_ps(a); }

static inline vf vsign(vf x)
{
    const vf zero = _mm256_setzero_ps();
    vf r = _mm256_blendv_ps(x, _mm256_set1_ps(1.0f), _mm256_cmp_ps(x, zero, _CMP_GT_OQ));
    return _mm256_blendv_ps(r, _mm256_set1_ps(-1.0f), _mm256_cmp_ps(x, zero, _CMP_LT_OQ));
}

static inline vf vld_bf16(const uint16_t *p)
{
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

static inline vf vld_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* Round to nearest even as zero_f32_to_bf16: NaN -> (bits >> 16) | 0x40. */
static inline __m128i cvt_bf16(vf x)
{
    __m256i u = _mm256_castps_si256(x);
    __m256i hi = _mm256_srli_epi32(u, 16);
    __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                       _mm256_set1_epi32(0x7f800000));
    __m256i bias = _mm256_add_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(1)), _mm256_set1_epi32(0x7fff));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), isnan);
    r = _mm256_packus_epi32(r, r);                 /* values fit 16 bits: no saturation */
    r = _mm256_permute4x64_epi64(r, 0x08);         /* quadwords 0 and 2 to the low half */
    return _mm256_castsi256_si128(r);
}

static inline void vst16(uint16_t *p, vf x, int t)
{
    if (t == ZERO_OPTIM_W16_BF16) {
        _mm_storeu_si128((__m128i *)p, cvt_bf16(x));
    } else {
        _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        /* The hardware keeps NaN payloads; zero_f32_to_f16 makes every NaN the
         * canonical quiet one. Rare, so patched lane by lane. */
        int nan = _mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
        if (nan) {
            float lanes[VW];
            _mm256_storeu_ps(lanes, x);
            for (int j = 0; j < VW; j++)
                if (nan & (1 << j))
                    p[j] = zero_f32_to_f16(lanes[j]);
        }
    }
}

static inline vacc vacc_zero(void)
{
    vacc a = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    return a;
}

static inline vacc vacc_sq(vacc a, vf x)
{
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    a.a = _mm256_add_pd(a.a, _mm256_mul_pd(lo, lo));
    a.b = _mm256_add_pd(a.b, _mm256_mul_pd(hi, hi));
    return a;
}

static inline double vacc_sum(vacc a)
{
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(a.a, a.b));
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

#include "optim/optim_simd.h"

/* Non-finite counts: an all-ones exponent. Lane counters are int32 and are
 * flushed every 2^20 vectors so they cannot overflow. */
static size_t count_nonfinite_f32_avx2(const void *x, size_t n)
{
    const float *p = x;
    const __m256i expo = _mm256_set1_epi32(0x7f800000);
    size_t count = 0, i = 0;
    while (i + VW <= n) {
        __m256i acc = _mm256_setzero_si256();
        size_t end = n - (n - i) % VW, lim = i + ((size_t)1 << 20) * VW;
        if (end > lim)
            end = lim;
        for (; i < end; i += VW) {
            __m256i u = _mm256_loadu_si256((const __m256i *)(p + i));
            acc = _mm256_sub_epi32(acc, _mm256_cmpeq_epi32(_mm256_and_si256(u, expo), expo));
        }
        int32_t lanes[8];
        _mm256_storeu_si256((__m256i *)lanes, acc);
        for (int j = 0; j < 8; j++)
            count += (size_t)lanes[j];
    }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, p + i, sizeof(u));
        count += (u & 0x7f800000u) == 0x7f800000u;
    }
    return count;
}

static size_t count_nonfinite_16(const uint16_t *p, size_t n, uint16_t mask)
{
    const __m256i expo = _mm256_set1_epi16((short)mask);
    size_t count = 0, i = 0;
    while (i + 16 <= n) {
        __m256i acc = _mm256_setzero_si256();
        size_t end = n - (n - i) % 16, lim = i + ((size_t)1 << 14) * 16;
        if (end > lim)
            end = lim;
        for (; i < end; i += 16) {
            __m256i u = _mm256_loadu_si256((const __m256i *)(p + i));
            acc = _mm256_sub_epi16(acc, _mm256_cmpeq_epi16(_mm256_and_si256(u, expo), expo));
        }
        uint16_t lanes[16];
        _mm256_storeu_si256((__m256i *)lanes, acc);
        for (int j = 0; j < 16; j++)
            count += lanes[j];
    }
    for (; i < n; i++)
        count += (p[i] & mask) == mask;
    return count;
}

static size_t count_nonfinite_f16_avx2(const void *x, size_t n)
{
    return count_nonfinite_16(x, n, 0x7c00u);
}

static size_t count_nonfinite_bf16_avx2(const void *x, size_t n)
{
    return count_nonfinite_16(x, n, 0x7f80u);
}

void zero_optim_dsp_init_avx2(zero_optim_dsp_t *dsp)
{
    init_common_avx2(dsp);
    dsp->count_nonfinite[ZERO_FP32] = count_nonfinite_f32_avx2;
    dsp->count_nonfinite[ZERO_FP16] = count_nonfinite_f16_avx2;
    dsp->count_nonfinite[ZERO_BF16] = count_nonfinite_bf16_avx2;
}

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#else /* not x86 */

void zero_optim_dsp_init_avx2(zero_optim_dsp_t *dsp)
{
    (void)dsp;
}

#endif
