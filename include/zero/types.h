/*
 * Element types of parameters, gradients and communication buffers.
 */
#ifndef ZERO_TYPES_H
#define ZERO_TYPES_H

#include <stddef.h>
#include <zero/export.h>

ZERO_BEGIN_DECLS

/**
 * Element types. The first ZERO_DTYPE_COUNT are the training types that
 * parameters and gradients may have; the rest are for collectives only
 * (flags, byte counts, sizes, norms kept in double): zero_comm_* accepts
 * every value here, zero_param_register only the training types.
 */
typedef enum zero_dtype {
    ZERO_FP32 = 0, /**< IEEE binary32 */
    ZERO_FP16 = 1, /**< IEEE binary16 (reduced with fp32 accumulation) */
    ZERO_BF16 = 2, /**< bfloat16: the top 16 bits of a binary32 (reduced with fp32 accumulation) */
    ZERO_DTYPE_COUNT, /**< the number of training types (the ones above) */
    ZERO_U8 = 8,   /**< unsigned 8-bit integer (collectives only; ZERO_COMM_SUM wraps modulo 256) */
    ZERO_I32 = 9,  /**< signed 32-bit integer (collectives only; sums must not overflow) */
    ZERO_I64 = 10, /**< signed 64-bit integer (collectives only; sums must not overflow) */
    ZERO_F64 = 11, /**< IEEE binary64 (collectives only) */
    ZERO_DTYPE_END /**< one past the last element type */
} zero_dtype_t;

/** Bytes per element (1, 2, 4 or 8); 0 for an unknown type. */
ZERO_API size_t zero_dtype_size(zero_dtype_t dtype);

/** A static name: "fp32", "fp16", "bf16", "u8", "i32", "i64", "f64" ("unknown" otherwise). */
ZERO_API const char *zero_dtype_string(zero_dtype_t dtype);

ZERO_END_DECLS

#endif /* ZERO_TYPES_H */
