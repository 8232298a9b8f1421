/* The plain reference of qgZ's decode-and-sum (quant_sum_ref.h). */
#include "quant_sum_ref.h"

#include "comm/quant.h"
#include "util/half.h"

#include <string.h>

int quant_sum_ref(const void *enc, size_t stride, int w, size_t n, float divisor, zero_dtype_t dtype, float *acc,
                  void *y)
{
    memset(acc, 0, n * sizeof(float));
    for (int k = 0; k < w; k++)
        if (zero_quant_decode_add_f32(ZERO_QUANT_INT8, (const char *)enc + (size_t)k * stride, n, acc) != 0)
            return -1;
    for (size_t i = 0; i < n; i++) {
        float v = divisor != 1.0f ? acc[i] / divisor : acc[i];
        if (dtype == ZERO_FP32)
            ((float *)y)[i] = v;
        else if (dtype == ZERO_BF16)
            ((uint16_t *)y)[i] = zero_f32_to_bf16(v);
        else
            ((uint16_t *)y)[i] = zero_f32_to_f16(v);
    }
    return 0;
}
