#include <zero/types.h>

size_t zero_dtype_size(zero_dtype_t dtype)
{
    switch (dtype) {
    case ZERO_FP32: return 4;
    case ZERO_FP16:
    case ZERO_BF16: return 2;
    default:        return 0;
    }
}

const char *zero_dtype_string(zero_dtype_t dtype)
{
    switch (dtype) {
    case ZERO_FP32: return "fp32";
    case ZERO_FP16: return "fp16";
    case ZERO_BF16: return "bf16";
    default:        return "unknown";
    }
}
