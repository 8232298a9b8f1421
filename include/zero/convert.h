/*
 * Conversions between fp32 and the 16-bit training types, with the engine's
 * own rounding. A trainer that keeps fp32 initial values and hands the engine
 * 16-bit weights, or that reads 16-bit weights back for evaluation, gets from
 * these exactly the bits the engine would produce.
 */
#ifndef ZERO_CONVERT_H
#define ZERO_CONVERT_H

#include <stddef.h>
#include <zero/export.h>
#include <zero/status.h>
#include <zero/types.h>

ZERO_BEGIN_DECLS

/**
 * Converts @p count elements of @p src (type @p src_dtype) into @p dst (type
 * @p dst_dtype). The pairs supported are fp32 -> bf16, fp32 -> fp16,
 * bf16 -> fp32 and fp16 -> fp32, plus any training type to itself (a copy).
 *
 * Rounding is the engine's: the same kernels that write 16-bit weights after
 * the optimizer step (the best vector level this CPU allows, which the
 * engine's tests keep bit-identical to the plain C reference):
 *  - fp32 -> bf16 and fp32 -> fp16 round to nearest, ties to even (as CUDA's
 *    __float2bfloat16_rn and __float2half_rn); values beyond the 16-bit range
 *    become infinity of their sign (fp16: |x| >= 65520); fp16 keeps
 *    subnormals (down to 2^-24, below half of which gives a signed zero).
 *  - NaN stays NaN with its sign: bf16 keeps the top payload bits and sets the
 *    quiet bit (0x0040); fp16 gives the canonical quiet NaN 0x7e00 (| 0x8000
 *    when negative).
 *  - 16-bit -> fp32 is exact (every bf16 and fp16 value, subnormals included,
 *    is an fp32 value); an fp16 NaN comes back quiet with its payload (as the
 *    F16C instruction gives it), a bf16 NaN bit for bit.
 *
 * @p dst and @p src must not overlap unless they are the same pointer with the
 * same type. 16-bit elements are raw IEEE/bfloat16 bits in host byte order
 * (uint16_t). Returns ZERO_OK, or ZERO_ERR_INVALID_ARG (logged) for a NULL
 * buffer with @p count > 0 or a pair not listed above. Thread-safe; runs on
 * the calling thread.
 */
ZERO_API zero_status_t zero_convert(void *dst, zero_dtype_t dst_dtype, const void *src, zero_dtype_t src_dtype,
                                    size_t count);

ZERO_END_DECLS

#endif /* ZERO_CONVERT_H */
