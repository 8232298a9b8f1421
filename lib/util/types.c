#include <zero/types.h>

size_t zero_dtype_size(zero_dtype_t dtype)
{
    switch (dtype) {
    case ZERO_FP32: return 4;
    case ZERO_FP16:
    case ZERO_BF16: return 2;
    case ZERO_U8:   return 1;
    case ZERO_I32:  return 4;
    case ZERO_I64:
    case ZERO_F64:  return 8;
    default:        return 0;
    }
}

const char *zero_dtype_string(zero_dtype_t dtype)
{
    switch (dtype) {
    case ZERO_FP32: return "fp32";
    case ZERO_FP16: return "fp16";
    case ZERO_BF16: return "bf16";
    case ZERO_U8:   return "u8";
    case ZERO_I32:  return "i32";
    case ZERO_I64:  return "i64";
    case ZERO_F64:  return "f64";
    default:        return "unknown";
    }
}
