/*
 * Internal to ckpt_fletcher*.c: Fletcher-32 as exact sums reduced mod 65535.
 *
 * For n 16-bit words w_i (an odd trailing byte b counts as one more word
 * b << 8), HDF5's result is s2 << 16 | s1 with s1 = R(S1), s2 = R(S2),
 *   S1 = sum w_i,  S2 = sum (n - i) w_i   (i from 0; exact integers),
 *   R(0) = 0, R(S) = ((S - 1) mod 65535) + 1 for S > 0.
 * Why: HDF5 adds the same non-negative terms in uint32 (its 360-word blocks
 * keep them below 2^32) and folds x -> (x & 0xffff) + (x >> 16), which keeps x
 * congruent mod 65535 and maps a positive x to a positive one; its last folds
 * leave a value <= 65535. So its s1 is 0 iff S1 is 0, and otherwise the one
 * value in 1..65535 congruent to S1. S1 and S2 are 0 iff every word is 0.
 *
 * Any block structure gives the same sums: a block of t words with exact
 * a = sum w, b = sum (t - i) w appended to a prefix (S1, S2) gives
 *   S1 + a,  S2 + t * S1 + b.
 */
#ifndef ZERO_CKPT_FLETCHER_H
#define ZERO_CKPT_FLETCHER_H

#include <stdint.h>
#include <string.h>

typedef struct {
    uint64_t r1, r2; /* S1, S2 mod 65535 */
    int nonzero;     /* some word was not 0 (S1 > 0) */
} ckpt_fl_state_t;

/* Appends a block of @p t words with exact sums @p a, @p b. Bounds: t*65535
 * and b below 2^64 - 2^32 (callers pass blocks of at most a few thousand words). */
static inline void ckpt_fl_add(ckpt_fl_state_t *s, uint64_t t, uint64_t a, uint64_t b)
{
    s->r2 = (s->r2 + (t % 65535u) * s->r1 + b % 65535u) % 65535u;
    s->r1 = (s->r1 + a) % 65535u;
    s->nonzero |= a != 0;
}

static inline uint32_t ckpt_fl_final(const ckpt_fl_state_t *s)
{
    uint32_t s1, s2;
    if (!s->nonzero)
        return 0;
    s1 = s->r1 == 0 ? 65535u : (uint32_t)s->r1;
    s2 = s->r2 == 0 ? 65535u : (uint32_t)s->r2;
    return s2 << 16 | s1;
}

/* Tails shorter than this many words are summed here, one word at a time
 * (faster than a padded vector iteration). */
#define CKPT_FL_SCALAR_WORDS 8

/* The last few words (fewer than CKPT_FL_SCALAR_WORDS, or any number) and an
 * odd byte; returns HDF5's checksum. */
static inline uint32_t ckpt_fl_finish(ckpt_fl_state_t *s, const uint8_t *d, uint64_t words, int odd_byte)
{
    uint64_t a = 0, b = 0;
    for (uint64_t i = 0; i < words; i++) {
        uint64_t w = (uint64_t)d[2 * i] << 8 | d[2 * i + 1];
        a += w;
        b += (words - i) * w;
    }
    if (words > 0)
        ckpt_fl_add(s, words, a, b);
    if (odd_byte) {
        uint64_t w = (uint64_t)d[2 * words] << 8;
        ckpt_fl_add(s, 1, w, w);
    }
    return ckpt_fl_final(s);
}

/* Exact sums (a = sum of words, b = sum of (count - i) * word) of @p iters
 * iterations of a kernel's words at @p d. */
typedef void (*ckpt_fl_iterations_fn)(const uint8_t *d, uint64_t iters, uint64_t *a_p, uint64_t *b_p);

/* The SIMD kernels' common driver: whole iterations of @p iter_words words,
 * at most @p max_iters between reductions, then the rest padded in front to
 * one more iteration (zeros in front change neither sum: a word's weight is
 * its distance to the end), then the scalar tail. Inlined into each kernel's
 * file, so that @p iterations is compiled for that file's instruction set.
 * @p pad: room for one iteration (2 * iter_words bytes). */
static inline uint32_t ckpt_fl_drive(const void *data, size_t len, uint64_t iter_words, uint64_t max_iters,
                                     ckpt_fl_iterations_fn iterations, uint8_t *pad)
{
    const uint8_t *d = data;
    uint64_t words = len / 2, a, b;
    ckpt_fl_state_t st = {0, 0, 0};

    while (words >= iter_words) {
        uint64_t m = words / iter_words;
        if (m > max_iters)
            m = max_iters;
        iterations(d, m, &a, &b);
        ckpt_fl_add(&st, iter_words * m, a, b);
        d += 2 * iter_words * m;
        words -= iter_words * m;
    }
    if (words >= CKPT_FL_SCALAR_WORDS) {
        memset(pad, 0, 2 * iter_words);
        memcpy(pad + 2 * (iter_words - words), d, 2 * words);
        iterations(pad, 1, &a, &b);
        ckpt_fl_add(&st, words, a, b);
        d += 2 * words;
        words = 0;
    }
    return ckpt_fl_finish(&st, d, words, (int)(len & 1));
}

#endif
