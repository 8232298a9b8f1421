#include "device_trainer.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

__global__ static void grad_add_kernel(void *dst, int dtype, size_t n, uint32_t key, float seed, long long spin)
{
    long long start = clock64();
    while (clock64() - start < spin) {
    }
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = zero_test_grad_value(key, (uint32_t)i) * seed;
        if (dtype == 0) {
            float *d = (float *)dst;
            d[i] = d[i] + g;
        } else if (dtype == 1) {
            __half *d = (__half *)dst;
            float rounded = __half2float(__float2half_rn(g));
            d[i] = __float2half_rn(__half2float(d[i]) + rounded);
        } else {
            __nv_bfloat16 *d = (__nv_bfloat16 *)dst;
            float rounded = __bfloat162float(__float2bfloat16_rn(g));
            d[i] = __float2bfloat16_rn(__bfloat162float(d[i]) + rounded);
        }
    }
}

extern "C" int zero_test_grad_add(void *dst, int dtype, size_t n, uint32_t key, float seed, long long spin_cycles,
                                  void *stream)
{
    if (n == 0)
        return 0;
    grad_add_kernel<<<64, 256, 0, (cudaStream_t)stream>>>(dst, dtype, n, key, seed, spin_cycles);
    return (int)cudaGetLastError();
}
