/*
 * HDF5's Fletcher-32 with AVX-512 (F + BW): ckpt_fletcher_avx2.c's method
 * with 512-bit vectors, 128 words per iteration (weights 128..1 for the sum
 * within the iteration); the last words (fewer than 128) zero-padded in front
 * to one more iteration. ckpt_fletcher.c calls it only where the CPU has
 * AVX-512F and AVX-512BW.
 * 32-bit lane bounds for m <= 32 iterations (signed): a lane of vs1 stays
 * below 32 * 4 * 2^16 = 2^23, one of vps below 2^16 * 4 * 32 * 31 / 2 < 2^27;
 * weighted pairs over the 4 vectors of an iteration are at most
 * 32768 * (255 + 191 + 127 + 63), so vs2 stays below 32 * 32768 * 636 < 2^30.
 */
#include "ckpt/ckpt_fletcher.h"
#include "ckpt/ckpt_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw")
#endif

#include <immintrin.h>
#include <string.h>

#define CHUNK_ITERS 32 /* iterations of 128 words between reductions (see the bounds above) */

static inline int64_t hsum_epi32(__m512i v)
{
    return _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)),
                                                    _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1))));
}

static inline __m512i words_signed(const uint8_t *p, __m512i swap, __m512i flip)
{
    return _mm512_xor_si512(_mm512_shuffle_epi8(_mm512_loadu_si512((const void *)p), swap), flip);
}

/* The weights 128..1 as 16-bit lanes, 32 per vector. */
static const int16_t weights_128[128] = {
    128, 127, 126, 125, 124, 123, 122, 121, 120, 119, 118, 117, 116, 115, 114, 113, 112, 111, 110, 109, 108, 107,
    106, 105, 104, 103, 102, 101, 100, 99,  98,  97,  96,  95,  94,  93,  92,  91,  90,  89,  88,  87,  86,  85,
    84,  83,  82,  81,  80,  79,  78,  77,  76,  75,  74,  73,  72,  71,  70,  69,  68,  67,  66,  65,  64,  63,
    62,  61,  60,  59,  58,  57,  56,  55,  54,  53,  52,  51,  50,  49,  48,  47,  46,  45,  44,  43,  42,  41,
    40,  39,  38,  37,  36,  35,  34,  33,  32,  31,  30,  29,  28,  27,  26,  25,  24,  23,  22,  21,  20,  19,
    18,  17,  16,  15,  14,  13,  12,  11,  10,  9,   8,   7,   6,   5,   4,   3,   2,   1};

/* Exact sums of the m * 128 words at @p d (m <= CHUNK_ITERS). */
static inline void iterations(const uint8_t *d, uint64_t m, uint64_t *a_p, uint64_t *b_p)
{
    const __m512i swap = _mm512_broadcast_i32x4(_mm_setr_epi8(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
    const __m512i flip = _mm512_set1_epi16(-32768), ones = _mm512_set1_epi16(1);
    const __m512i k0 = _mm512_loadu_si512((const void *)weights_128);
    const __m512i k1 = _mm512_loadu_si512((const void *)(weights_128 + 32));
    const __m512i k2 = _mm512_loadu_si512((const void *)(weights_128 + 64));
    const __m512i k3 = _mm512_loadu_si512((const void *)(weights_128 + 96));
    __m512i vs1 = _mm512_setzero_si512(), vps = vs1, vs2 = vs1;
    uint64_t t = 128 * m;
    for (uint64_t k = 0; k < m; k++) {
        __m512i v0 = words_signed(d, swap, flip), v1 = words_signed(d + 64, swap, flip);
        __m512i v2 = words_signed(d + 128, swap, flip), v3 = words_signed(d + 192, swap, flip);
        __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_madd_epi16(v0, ones), _mm512_madd_epi16(v1, ones)),
                                     _mm512_add_epi32(_mm512_madd_epi16(v2, ones), _mm512_madd_epi16(v3, ones)));
        __m512i u = _mm512_add_epi32(_mm512_add_epi32(_mm512_madd_epi16(v0, k0), _mm512_madd_epi16(v1, k1)),
                                     _mm512_add_epi32(_mm512_madd_epi16(v2, k2), _mm512_madd_epi16(v3, k3)));
        vps = _mm512_add_epi32(vps, vs1);
        vs1 = _mm512_add_epi32(vs1, s);
        vs2 = _mm512_add_epi32(vs2, u);
        d += 256;
    }
    *a_p = (uint64_t)(hsum_epi32(vs1) + (int64_t)(32768 * t));
    *b_p = (uint64_t)(128 * hsum_epi32(vps) + hsum_epi32(vs2) + (int64_t)(16384 * t * (t + 1)));
}

uint32_t ckpt_fletcher32_avx512(const void *data, size_t len)
{
    uint8_t pad[2 * 128];
    return ckpt_fl_drive(data, len, 128, CHUNK_ITERS, iterations, pad);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif
