/*
 * HDF5's Fletcher-32 (the fletcher32 filter's checksum), computed here so that
 * shard chunks can be written and read with H5Dwrite_chunk / H5Dread_chunk,
 * bypassing HDF5's filter pipeline (its per-chunk buffer copies cost more than
 * the I/O). The result is bit-identical to HDF5's: the same 16-bit big-endian
 * words, the same end-around-carry folds after every 360 words, the same
 * uint32 arithmetic (tests/ckpt checks it against libhdf5 on random data, and
 * every load verifies through HDF5's own filter when read by other tools).
 *
 * Per block of t words, the word loop "s1 += w; s2 += s1" adds
 *   s1 += sum(w_i),  s2 += t * s1_before + sum((t - i) * w_i)   (i from 0),
 * which the block loop computes with independent lanes (vectorisable; the
 * products fit 32 bits for t <= 360). This portable version runs wherever no
 * SIMD kernel applies (non-x86, or x86 without AVX2); ckpt_fletcher32 picks,
 * once at the first call, the AVX-512 kernel (ckpt_fletcher_avx512.c) where
 * the CPU has AVX-512F and BW, else the AVX2 one (ckpt_fletcher_avx2.c) where
 * it has AVX2: about 10x this version. ZERO_CPU_ISA=c or avx2 (as for the
 * optimizer kernels) caps the choice.
 */
#include "ckpt/ckpt_internal.h"
#include "util/byteorder.h"
#include "util/cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static inline uint32_t fold(uint32_t x) { return (x & 0xffffu) + (x >> 16); }

#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("O3")))
#endif
static void block_sums(const uint8_t *d, uint32_t t, uint32_t *a_p, uint32_t *b_p)
{
    uint32_t a = 0, b = 0;
    for (uint32_t i = 0; i < t; i++) {
        uint32_t w = (uint32_t)d[2 * i] << 8 | d[2 * i + 1];
        a += w;
        b += (t - i) * w;
    }
    *a_p = a;
    *b_p = b;
}

/* Most of the portable version's time goes here. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("O3")))
#endif
static void block_sums_360(const uint8_t *d, uint32_t *a_p, uint32_t *b_p)
{
    uint32_t a = 0, b = 0;
    for (uint32_t i = 0; i < 360; i++) {
        uint32_t w = (uint32_t)d[2 * i] << 8 | d[2 * i + 1];
        a += w;
        b += (360 - i) * w;
    }
    *a_p = a;
    *b_p = b;
}

uint32_t ckpt_fletcher32_portable(const void *data, size_t len)
{
    const uint8_t *d = data;
    size_t words = len / 2;
    uint32_t s1 = 0, s2 = 0, a, b;

    while (words > 0) {
        uint32_t t = words > 360 ? 360 : (uint32_t)words;
        if (t == 360)
            block_sums_360(d, &a, &b);
        else
            block_sums(d, t, &a, &b);
        s2 += t * s1 + b;
        s1 += a;
        s1 = fold(s1);
        s2 = fold(s2);
        d += 2 * (size_t)t;
        words -= t;
    }
    if (len % 2) {
        s1 += (uint32_t)d[0] << 8;
        s2 += s1;
        s1 = fold(s1);
        s2 = fold(s2);
    }
    s1 = fold(s1);
    s2 = fold(s2);
    return (s2 << 16) | s1;
}

/* ---- dispatch ---- */

static ckpt_fletcher32_fn chosen = ckpt_fletcher32_portable;
static const char *chosen_name = "portable";
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

/* The kernel for the level zero_cpu_isa_choose picks (ZERO_CPU_ISA, as for the
 * optimizer kernels, else the CPU's best). A ZERO_CPU_ISA that is no level, or
 * one above the CPU's, is logged there as an error and leaves the portable
 * kernel: every kernel computes the same checksum, and the engine refuses to
 * start on such a value anyway (its optimizer context makes the same check). */
static void choose(void)
{
    zero_cpu_isa_t cap = ZERO_CPU_ISA_C;
    if (zero_cpu_isa_choose("checkpoint checksums", &cap) != ZERO_OK)
        cap = ZERO_CPU_ISA_C;
    if (cap >= ZERO_CPU_ISA_AVX512 && ckpt_fletcher32_kernel("avx512") != NULL) {
        chosen = ckpt_fletcher32_kernel("avx512");
        chosen_name = "avx512";
    } else if (cap >= ZERO_CPU_ISA_AVX2 && ckpt_fletcher32_kernel("avx2") != NULL) {
        chosen = ckpt_fletcher32_kernel("avx2");
        chosen_name = "avx2";
    }
}

ckpt_fletcher32_fn ckpt_fletcher32_kernel(const char *name)
{
    if (strcmp(name, "portable") == 0)
        return ckpt_fletcher32_portable;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2"))
        return ckpt_fletcher32_avx2;
    if (strcmp(name, "avx512") == 0 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
        return ckpt_fletcher32_avx512;
#endif
    if (strcmp(name, "auto") == 0) {
        pthread_once(&chosen_once, choose);
        return chosen;
    }
    return NULL;
}

const char *ckpt_fletcher32_kernel_name(void)
{
    pthread_once(&chosen_once, choose);
    return chosen_name;
}

/* Below this many bytes the portable version is as fast (the SIMD kernels'
 * fixed cost: reductions, padding a partial iteration). */
#define SIMD_MIN_BYTES 128

uint32_t ckpt_fletcher32(const void *data, size_t len)
{
    if (len < SIMD_MIN_BYTES)
        return ckpt_fletcher32_portable(data, len);
    pthread_once(&chosen_once, choose);
    return chosen(data, len);
}

int ckpt_chunk_checksum_ok(const void *data, size_t bytes, const unsigned char tail[4])
{
    uint32_t stored = zero_get_le32(tail), sum = ckpt_fletcher32(data, bytes);
    uint32_t swapped = ((sum & 0x00ff00ffu) << 8) | ((sum >> 8) & 0x00ff00ffu);
    return stored == sum || stored == swapped;
}
