// Device-side check for non-finite values (inf/nan) in a buffer: the fp16
// overflow test runs where the gradients live, and only one flag crosses to
// the host. Compiled with nvcc for sm_80 and sm_90 when the cuda feature is on.
#include "util/device_check.h"
#include "util/cuda_launch.cuh"

#include <cuda_runtime.h>
#include <stdint.h>

namespace {

__device__ __forceinline__ bool nonfinite_bits(uint32_t bits, uint32_t exp_mask)
{
    return (bits & exp_mask) == exp_mask;
}

__global__ void flag_nonfinite(const void *data, size_t count, int dtype, unsigned int *flag)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    bool found = false;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count && !found; i += stride) {
        if (dtype == 0)
            found = nonfinite_bits(((const uint32_t *)data)[i], 0x7f800000u);
        else if (dtype == 1)
            found = nonfinite_bits(((const uint16_t *)data)[i], 0x7c00u);
        else
            found = nonfinite_bits(((const uint16_t *)data)[i], 0x7f80u);
    }
    if (__syncthreads_or(found) && threadIdx.x == 0)
        atomicOr(flag, 1u);
}

} // namespace

extern "C" int zero_cuda_flag_nonfinite(const void *data, size_t count, int dtype,
                                         unsigned int *device_flag, void *stream)
{
    const int threads = 256;
    size_t blocks = (count + threads - 1) / threads;
    if (blocks > 4096)
        blocks = 4096;
    if (blocks == 0)
        return (int)cudaSuccess;
    if (int earlier = zero_cuda_pending())   // device_check.h: not this kernel's
        return earlier;
    flag_nonfinite<<<(unsigned)blocks, threads, 0, (cudaStream_t)stream>>>(data, count, dtype, device_flag);
    return (int)cudaGetLastError();
}
