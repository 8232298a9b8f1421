/*
 * Block-wise symmetric quantization, the wire format of ZeRO++'s quantized
 * weight all-gather (qwZ) and quantized gradient reduce-scatter (qgZ).
 *
 * A vector of n values is cut into blocks of ZERO_QUANT_BLOCK elements (the
 * last one may be shorter). Each block keeps its largest magnitude `amax` as a
 * float, and every value x of the block becomes the integer
 *     q = round_to_nearest_even(x * qmax / amax),  |q| <= qmax,
 * with qmax = 127 for int8 and 7 for int4. Decoding gives q * (amax / qmax).
 *
 * Guarantees (each tested in tests/optim/test_quant.c):
 *   - error per element at most amax / (2 * qmax), up to float rounding
 *     (int8: amax / 254), so a block's error scales with its own largest value
 *     rather than the vector's;
 *   - a block of zeros decodes to exact zeros, and the element holding amax
 *     decodes to +-amax exactly (constant blocks are exact);
 *   - a block holding any inf or NaN decodes to NaN in every element, so the
 *     engine's non-finite check still sees the overflow after a quantized hop
 *     (the count of non-finite elements may grow to the block; only "any" is
 *     meaningful, which is all the loss scaler and the skip decision use);
 *   - encoding and decoding are deterministic and independent of threads and
 *     instruction set (the per-block scale arithmetic is done in double).
 *
 * Why 256 elements: the scale costs 4 bytes per block, 1.6% of an int8 block
 * and 3.1% of an int4 block; smaller blocks track outliers better but cost
 * more scale bytes. DeepSpeed's ZeRO++ quantizes in groups of similar size.
 *
 * Layout of an encoded buffer (zero_quant_bytes() bytes, native byte order,
 * as every other payload libzero sends between its own ranks):
 *     float amax[blocks]      then
 *     int8  q[n]              (int8), or
 *     uint8 q[(n + 1) / 2]    (int4: element 2i in the low nibble of byte i,
 *                              2i+1 in the high nibble, two's complement)
 * The scales come first so they stay 4-byte aligned whatever n is.
 */
#ifndef ZERO_COMM_QUANT_H
#define ZERO_COMM_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <zero/types.h>

#include "util/cpu.h"

#define ZERO_QUANT_BLOCK 256

typedef enum zero_quant_bits {
    ZERO_QUANT_INT4 = 4,
    ZERO_QUANT_INT8 = 8,
} zero_quant_bits_t;

/* Blocks covering n elements. */
size_t zero_quant_blocks(size_t n);
/* Bytes an encoded vector of n elements takes; 0 for a bad @p bits. */
size_t zero_quant_bytes(zero_quant_bits_t bits, size_t n);

/* Encodes n values of @p dtype (ZERO_FP32, ZERO_FP16 or ZERO_BF16) from @p x
 * into @p out (zero_quant_bytes(bits, n) bytes, 4-byte aligned). Returns 0, or
 * -1 for a bad bits/dtype (nothing written). */
int zero_quant_encode(zero_quant_bits_t bits, zero_dtype_t dtype, const void *x, size_t n, void *out);

/* Decodes an encoded vector of n elements into @p y of @p dtype (16-bit
 * results rounded to nearest even from the fp32 value). Returns 0 or -1. */
int zero_quant_decode(zero_quant_bits_t bits, const void *in, size_t n, zero_dtype_t dtype, void *y);

/* acc[i] += decoded[i] in fp32: qgZ's accumulation, so the error of a sum over
 * W ranks is W independent roundings of the parts rather than a re-quantized
 * running sum. Returns 0 or -1. */
int zero_quant_decode_add_f32(zero_quant_bits_t bits, const void *in, size_t n, float *acc);

/* acc[i] = 0 + decoded[i]: the first part of such a sum, bit for bit what
 * zeroing @p acc and zero_quant_decode_add_f32 give, in one pass. Returns 0 or -1. */
int zero_quant_decode_first_f32(zero_quant_bits_t bits, const void *in, size_t n, float *acc);

/* The last part of such a sum, finished in the same pass: y[i] = (acc[i] +
 * decoded[i]) / divisor rounded once to @p dtype (fp32, bf16 or fp16; no
 * division when @p divisor is 1), bit for bit what zero_quant_decode_add_f32,
 * the division and the rounding give one after the other. @p acc is only
 * read; @p y may be @p acc (fp32). Returns 0, or -1 for a bad bits/dtype. */
int zero_quant_decode_add_finish(zero_quant_bits_t bits, const void *in, size_t n, const float *acc, float divisor,
                                 zero_dtype_t dtype, void *y);

/* The codec's entry points as compiled for one instruction-set level. */
typedef struct zero_quant_codec {
    int (*encode)(zero_quant_bits_t bits, zero_dtype_t dtype, const void *x, size_t n, void *out);
    int (*decode)(zero_quant_bits_t bits, const void *in, size_t n, zero_dtype_t dtype, void *y);
    int (*decode_add_f32)(zero_quant_bits_t bits, const void *in, size_t n, float *acc);
    int (*decode_first_f32)(zero_quant_bits_t bits, const void *in, size_t n, float *acc);
    int (*decode_add_finish)(zero_quant_bits_t bits, const void *in, size_t n, const float *acc, float divisor,
                             zero_dtype_t dtype, void *y);
} zero_quant_codec_t;

/* The codec compiled for @p isa (util/cpu.h), for tests and benchmarks; NULL
 * when this build has no version for that level (only ZERO_CPU_ISA_C off
 * x86-64) or this CPU lacks it. Every level gives the same bits. The entry
 * points above run the level zero_cpu_isa_choose picks (ZERO_CPU_ISA, else the
 * CPU's best), chosen once at the first call. */
const zero_quant_codec_t *zero_quant_codec(zero_cpu_isa_t isa);

#endif /* ZERO_COMM_QUANT_H */
