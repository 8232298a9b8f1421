/*
 * The per-element arithmetic of the block codec (quant.h), as the C codec
 * (quant.c) and the CUDA kernels (quant_cuda.cu) both compute it: one
 * definition compiled for the host and, under nvcc, the device, so a block
 * encoded on a GPU has the same bytes as the same block encoded by the C
 * codec. The pattern is optim/optim_elem.h's. Bit-identical results need
 * these IEEE double operations in this order with no contraction (GCC's C11
 * default; nvcc's -fmad=false, meson.build) and never -ffast-math, which
 * could fold the rounding pair away.
 */
#ifndef ZERO_COMM_QUANT_ELEM_H
#define ZERO_COMM_QUANT_ELEM_H

#include "util/half.h"

#include <stdint.h>

#if defined(__CUDACC__)
#define ZERO_QUANT_FN static inline __host__ __device__
#else
#define ZERO_QUANT_FN static inline
#endif

/* Adding and then subtracting 1.5 * 2^52 rounds a double of magnitude below
 * 2^51 to the nearest integer, ties to even: what nearbyint gives in the
 * default rounding mode, bit for bit, but as two additions the compiler can
 * vectorise, where nearbyint is a library call per element on baseline
 * x86-64 (no SSE4.1 round instruction). */
#define ZERO_QUANT_ROUND_MAGIC 6755399441055744.0

/* The magnitude of @p v as its bit pattern (sign cleared). For these the
 * integer order is the float order, and inf and every NaN lie above all finite
 * values, so an integer max over a block finds both; integer max also
 * vectorises (and reduces on a GPU) where a float max with NaN semantics does not. */
ZERO_QUANT_FN int32_t zero_quant_mag(float v)
{
    return (int32_t)(zero_f32_bits(v) & 0x7fffffffu);
}

/* A block's scale (amax) from the largest zero_quant_mag of its elements:
 * NaN when any element is inf or NaN. */
ZERO_QUANT_FN float zero_quant_amax(int32_t most)
{
    return most >= 0x7f800000 ? zero_bits_f32(0x7fc00000u) : zero_bits_f32((uint32_t)most);
}

/* The factor a block's values are multiplied by, in double so that a
 * subnormal amax neither overflows the reciprocal nor loses the scale. Only
 * for amax > 0 (a block of zeros or a poisoned block encodes all zeros). */
ZERO_QUANT_FN double zero_quant_inv(float amax, int qmax)
{
    return (double)qmax / (double)amax;
}

/* One value as an integer in [-qmax, qmax]. |v * inv| <= qmax up to
 * rounding; the clamp keeps that exact. */
ZERO_QUANT_FN int8_t zero_quant_one(float v, double inv, int qmax)
{
    double hi = qmax, lo = -qmax;
    double r = ((double)v * inv + ZERO_QUANT_ROUND_MAGIC) - ZERO_QUANT_ROUND_MAGIC;
    r = r > hi ? hi : r;
    r = r < lo ? lo : r;
    return (int8_t)(int32_t)r;
}

/* The value one integer step stands for in a block of this amax. */
ZERO_QUANT_FN double zero_quant_step(float amax, int qmax)
{
    return (double)amax / (double)qmax;
}

/* One integer back to fp32 (the NaN of a poisoned block is the caller's). */
ZERO_QUANT_FN float zero_quant_value(int8_t q, double step)
{
    return (float)((double)q * step);
}

#endif /* ZERO_COMM_QUANT_ELEM_H */
