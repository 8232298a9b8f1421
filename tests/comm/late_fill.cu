#include "late_fill.h"

#include <cuda_runtime_api.h>
#include <stdint.h>

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

// Writes through an address no allocation covers: the kernel faults (an
// illegal address, a sticky error that ends the process's CUDA context), as
// a trainer's bug or a failing GPU would, after spinning @p spin_cycles.
__global__ static void fault_kernel(float *bad, long long spin_cycles)
{
    long long start = clock64();
    while (clock64() - start < spin_cycles) {
    }
    bad[threadIdx.x] = 1.0f;
}

extern "C" int zero_test_fault(long long spin_cycles, void *stream)
{
    fault_kernel<<<1, 32, 0, (cudaStream_t)stream>>>((float *)(uintptr_t)4096, spin_cycles);
    return (int)cudaGetLastError();
}
