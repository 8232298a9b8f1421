/*
 * Element types of parameters, gradients and communication buffers.
 */
#ifndef ZERO_TYPES_H
#define ZERO_TYPES_H

#include <stddef.h>
#include <zero/export.h>

ZERO_BEGIN_DECLS

typedef enum zero_dtype {
    ZERO_FP32 = 0, /**< IEEE binary32 */
    ZERO_FP16 = 1, /**< IEEE binary16 (reduced with fp32 accumulation) */
    ZERO_BF16 = 2, /**< bfloat16: the top 16 bits of a binary32 (reduced with fp32 accumulation) */
    ZERO_DTYPE_COUNT
} zero_dtype_t;

/** Bytes per element (4 or 2); 0 for an unknown type. */
ZERO_API size_t zero_dtype_size(zero_dtype_t dtype);

/** A static name: "fp32", "fp16", "bf16" ("unknown" otherwise). */
ZERO_API const char *zero_dtype_string(zero_dtype_t dtype);

ZERO_END_DECLS

#endif /* ZERO_TYPES_H */
