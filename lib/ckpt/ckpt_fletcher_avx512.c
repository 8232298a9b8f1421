/*
 * HDF5's Fletcher-32 with AVX-512 (F + BW): ckpt_fletcher_avx2.c's method
 * with 512-bit vectors, 128 words per iteration (weights 128..1 for the sum
 * within the iteration). ckpt_fletcher.c calls it only where the CPU has
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

/* Weights n, n - 1, ..., n - 31 as 16-bit lanes. */
static inline __m512i weights(int n)
{
    int16_t w[32];
    for (int i = 0; i < 32; i++)
        w[i] = (int16_t)(n - i);
    return _mm512_loadu_si512((const void *)w);
}

uint32_t ckpt_fletcher32_avx512(const void *data, size_t len)
{
    const uint8_t *d = data;
    uint64_t words = len / 2;
    ckpt_fl_state_t st = {0, 0, 0};
    const __m512i swap = _mm512_broadcast_i32x4(_mm_setr_epi8(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
    const __m512i flip = _mm512_set1_epi16(-32768), ones = _mm512_set1_epi16(1);
    const __m512i k0 = weights(128), k1 = weights(96), k2 = weights(64), k3 = weights(32);

    while (words >= 128) {
        uint64_t m = words / 128, t;
        __m512i vs1 = _mm512_setzero_si512(), vps = vs1, vs2 = vs1;
        if (m > CHUNK_ITERS)
            m = CHUNK_ITERS;
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
        t = 128 * m;
        ckpt_fl_add(&st, t, (uint64_t)(hsum_epi32(vs1) + (int64_t)(32768 * t)),
                    (uint64_t)(128 * hsum_epi32(vps) + hsum_epi32(vs2) + (int64_t)(16384 * t * (t + 1))));
        words -= t;
    }
    return ckpt_fl_finish(&st, d, words, (int)(len & 1));
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif
