#include "late_fill.h"

#include <cuda_runtime_api.h>

__global__ static void late_fill_kernel(float *dst, size_t n, float value, long long spin_cycles)
{
    long long start = clock64();
    while (clock64() - start < spin_cycles) {
    }
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = value;
}

extern "C" int zero_test_late_fill(float *dst, size_t n, float value, long long spin_cycles, void *stream)
{
    late_fill_kernel<<<256, 256, 0, (cudaStream_t)stream>>>(dst, n, value, spin_cycles);
    return (int)cudaGetLastError();
}
