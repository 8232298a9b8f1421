/*
 * Scalar conversions between fp32 and the 16-bit types, rounding to nearest
 * even (as CUDA's __float2half_rn and __float2bfloat16_rn do). NaN stays NaN
 * (made quiet), overflow gives infinity. SIMD kernels have their own vector
 * versions and are tested against these. Under nvcc the same functions are
 * compiled for the device too, so CUDA kernels round exactly as the host does.
 */
#ifndef ZERO_UTIL_HALF_H
#define ZERO_UTIL_HALF_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define ZERO_HALF_FN static inline __host__ __device__
#else
#define ZERO_HALF_FN static inline
#endif

ZERO_HALF_FN uint32_t zero_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

ZERO_HALF_FN float zero_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

ZERO_HALF_FN float zero_bf16_to_f32(uint16_t h)
{
    return zero_bits_f32((uint32_t)h << 16);
}

ZERO_HALF_FN uint16_t zero_f32_to_bf16(float f)
{
    uint32_t u = zero_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)       /* NaN: keep it quiet and NaN */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);           /* round to nearest even */
    return (uint16_t)(u >> 16);
}

ZERO_HALF_FN float zero_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else {                                  /* subnormal: normalise */
            int shift = 0;
            while ((mant & 0x400u) == 0) {
                mant <<= 1;
                shift++;
            }
            mant &= 0x3ffu;
            u = sign | ((uint32_t)(127 - 15 + 1 - shift) << 23) | (mant << 13);
        }
    } else if (exp == 0x1fu) {
        /* inf, or NaN made quiet (payload kept): what F16C's vcvtph2ps gives,
         * so the vector kernels and this reference agree on signalling NaNs */
        u = sign | 0x7f800000u | (mant << 13) | (mant != 0 ? 0x00400000u : 0u);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    return zero_bits_f32(u);
}

ZERO_HALF_FN uint16_t zero_f32_to_f16(float f)
{
    uint32_t u = zero_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u)                                    /* NaN */
        return (uint16_t)(sign | 0x7e00u);
    if (abs >= 0x477ff000u)                                   /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (abs < 0x38800000u) {                                  /* below 2^-14: subnormal or zero */
        /* Scale into the subnormal grid (units of 2^-24) and round to nearest even. */
        uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        int exp = (int)(abs >> 23);
        int shift = 126 - exp;                                /* 113 - exp + 13 */
        uint32_t value, rem, half;
        if (abs < 0x33000000u)                                /* below 2^-25: rounds to zero */
            return (uint16_t)sign;
        value = mant >> shift;
        rem = mant & ((1u << shift) - 1u);
        half = 1u << (shift - 1);
        if (rem > half || (rem == half && (value & 1u)))
            value++;
        return (uint16_t)(sign | value);
    }
    /* Normal: rebias the exponent and round the mantissa to 10 bits. */
    abs += 0xc8000000u;                                       /* (15 - 127) << 23 */
    abs += 0xfffu + ((abs >> 13) & 1u);
    return (uint16_t)(sign | (abs >> 13));
}

#endif /* ZERO_UTIL_HALF_H */
