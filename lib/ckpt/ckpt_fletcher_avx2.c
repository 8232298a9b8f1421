/*
 * HDF5's Fletcher-32 with AVX2 (see ckpt_fletcher.h for why exact sums mod
 * 65535 give HDF5's bits). Only this file is compiled for AVX2 (the target
 * pragma below); ckpt_fletcher.c calls it only where the CPU has AVX2.
 *
 * Per iteration, 4 vectors = 64 words: each vector is byte-swapped into
 * big-endian words and xor'ed with 0x8000 (w - 32768, a signed 16-bit value),
 * then _mm256_madd_epi16 gives pair sums with weights 1 (the plain sum) and
 * 64..1 (the weighted sum within the 64 words). Over a run of m iterations
 * of T = 64 m words, with W_k the sum of iteration k and U_k its weighted sum,
 *   a = sum W_k,  b = sum_k 64 (m - 1 - k) W_k + sum_k U_k,
 * and the prefix term comes from adding the running sum vector to `vps` before
 * each iteration adds its own. The -32768 offsets are put back at the end:
 * a += 32768 T, b += 32768 T (T + 1) / 2. The last words (fewer than 64)
 * go through one more iteration, zero-padded in front.
 * 32-bit lane bounds for m <= 64 (all signed): a pair sum of ones is within
 * 2^16, so a lane of vs1 stays below 64 * 4 * 2^16 = 2^24 and one of vps
 * below 2^16 * 4 * 64 * 63 / 2 < 2^29; weighted pairs over the 4 vectors of
 * an iteration are at most 32768 * 316, so vs2 stays below 64 * 32768 * 316
 * < 2^30.
 */
#include "ckpt/ckpt_fletcher.h"
#include "ckpt/ckpt_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif

#include <immintrin.h>
#include <string.h>

#define CHUNK_ITERS 64 /* iterations of 64 words between reductions (see the bounds above) */

static inline int64_t hsum_epi32(__m256i v)
{
    __m256i w = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(v)),
                                 _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1)));
    __m128i x = _mm_add_epi64(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    return _mm_cvtsi128_si64(x) + _mm_extract_epi64(x, 1);
}

static inline __m256i words_signed(const uint8_t *p, __m256i swap, __m256i flip)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
    return _mm256_xor_si256(_mm256_shuffle_epi8(v, swap), flip);
}

/* Exact sums of the m * 64 words at @p d (m <= CHUNK_ITERS). */
static inline void iterations(const uint8_t *d, uint64_t m, uint64_t *a_p, uint64_t *b_p)
{
    const __m256i swap = _mm256_setr_epi8(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14, 1, 0, 3, 2, 5, 4, 7,
                                          6, 9, 8, 11, 10, 13, 12, 15, 14);
    const __m256i flip = _mm256_set1_epi16(-32768), ones = _mm256_set1_epi16(1);
    const __m256i k0 = _mm256_setr_epi16(64, 63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49);
    const __m256i k1 = _mm256_setr_epi16(48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33);
    const __m256i k2 = _mm256_setr_epi16(32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17);
    const __m256i k3 = _mm256_setr_epi16(16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
    __m256i vs1 = _mm256_setzero_si256(), vps = vs1, vs2 = vs1;
    uint64_t t = 64 * m;
    for (uint64_t k = 0; k < m; k++) {
        __m256i v0 = words_signed(d, swap, flip), v1 = words_signed(d + 32, swap, flip);
        __m256i v2 = words_signed(d + 64, swap, flip), v3 = words_signed(d + 96, swap, flip);
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(v0, ones), _mm256_madd_epi16(v1, ones)),
                                     _mm256_add_epi32(_mm256_madd_epi16(v2, ones), _mm256_madd_epi16(v3, ones)));
        __m256i u = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(v0, k0), _mm256_madd_epi16(v1, k1)),
                                     _mm256_add_epi32(_mm256_madd_epi16(v2, k2), _mm256_madd_epi16(v3, k3)));
        vps = _mm256_add_epi32(vps, vs1);
        vs1 = _mm256_add_epi32(vs1, s);
        vs2 = _mm256_add_epi32(vs2, u);
        d += 128;
    }
    *a_p = (uint64_t)(hsum_epi32(vs1) + (int64_t)(32768 * t));
    *b_p = (uint64_t)(64 * hsum_epi32(vps) + hsum_epi32(vs2) + (int64_t)(16384 * t * (t + 1)));
}

uint32_t ckpt_fletcher32_avx2(const void *data, size_t len)
{
    uint8_t pad[2 * 64];
    return ckpt_fl_drive(data, len, 64, CHUNK_ITERS, iterations, pad);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif
