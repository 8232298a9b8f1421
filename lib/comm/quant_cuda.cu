// The int8 block codec on the GPU (quant_cuda.h has the contract). Encoding:
// one CUDA block of ZERO_QUANT_BLOCK threads per codec block: each thread loads one
// element, the block's integer max of the magnitudes' bit patterns is reduced
// in shared memory (an integer max is exact in any order, so the scale is the
// C codec's), and each thread rounds its element with quant_elem.h.
#include "comm/quant.h"   // ZERO_QUANT_BLOCK only: the .cu links none of libzero
#include "comm/quant_cuda.h"
#include "comm/quant_elem.h"
#include "util/cuda_launch.cuh"
#include "util/half.h"

#include <cuda_runtime.h>
#include <zero/types.h>

namespace {

constexpr int kQmax = 127;
constexpr unsigned kMaxBlocks = 65535;
static_assert(ZERO_QUANT_BLOCK == 256, "one thread per element of a codec block");

unsigned grid_for(size_t blocks)
{
    return (unsigned)(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

__device__ __forceinline__ float load(const void *x, int dtype, size_t i)
{
    if (dtype == ZERO_FP32)
        return ((const float *)x)[i];
    if (dtype == ZERO_BF16)
        return zero_bf16_to_f32(((const uint16_t *)x)[i]);
    return zero_f16_to_f32(((const uint16_t *)x)[i]);
}

__device__ __forceinline__ void store(void *y, int dtype, size_t i, float v)
{
    if (dtype == ZERO_FP32)
        ((float *)y)[i] = v;
    else if (dtype == ZERO_BF16)
        ((uint16_t *)y)[i] = zero_f32_to_bf16(v);
    else
        ((uint16_t *)y)[i] = zero_f32_to_f16(v);
}

__global__ void encode8_kernel(const void *x, int dtype, size_t n, size_t blocks, float *scales, int8_t *q)
{
    __shared__ int32_t most[ZERO_QUANT_BLOCK];
    for (size_t b = blockIdx.x; b < blocks; b += gridDim.x) {
        size_t i = b * ZERO_QUANT_BLOCK + threadIdx.x;
        float v = i < n ? load(x, dtype, i) : 0.0f;
        most[threadIdx.x] = zero_quant_mag(v);
        __syncthreads();
        for (unsigned half = ZERO_QUANT_BLOCK / 2; half > 0; half /= 2) {
            if (threadIdx.x < half && most[threadIdx.x + half] > most[threadIdx.x])
                most[threadIdx.x] = most[threadIdx.x + half];
            __syncthreads();
        }
        float amax = zero_quant_amax(most[0]);
        __syncthreads();   // most[0] is read by all before the next block overwrites it
        if (threadIdx.x == 0)
            scales[b] = amax;
        if (i < n)   // zeros, or a poisoned block: all zeros (quant.c's quantize_block)
            q[i] = amax > 0.0f ? zero_quant_one(v, zero_quant_inv(amax, kQmax), kQmax) : (int8_t)0;
    }
}

// One element decoded: a NaN scale makes every element of its block NaN, the
// quiet NaN quant.c writes (NAN).
__device__ __forceinline__ float decoded(int8_t q, float amax)
{
    return amax != amax ? zero_bits_f32(0x7fc00000u) : zero_quant_value(q, zero_quant_step(amax, kQmax));
}

__global__ void decode8_kernel(const float *scales, const int8_t *q, size_t n, int dtype, void *y)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        store(y, dtype, i, decoded(q[i], scales[i / ZERO_QUANT_BLOCK]));
    }
}

// qgZ: element i of each of the nblocks encoded vectors, decoded and summed
// in fp32 in block order from +0.0f (quant_coll.c's decode_reduced:
// zero_quant_decode_first_f32, zero_quant_decode_add_f32 for the middle
// blocks, zero_quant_decode_add_finish for the last), divided, then stored as
// decode8 stores.
__global__ void reduce8_kernel(const char *in, size_t block_stride, int nblocks, size_t n, size_t scale_bytes,
                               float divisor, int dtype, void *y)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int k = 0; k < nblocks; k++) {
            const char *enc = in + (size_t)k * block_stride;
            float amax = ((const float *)enc)[i / ZERO_QUANT_BLOCK];
            int8_t q = ((const int8_t *)(enc + scale_bytes))[i];
            acc += decoded(q, amax);
        }
        if (divisor != 1.0f)
            acc /= divisor;   // IEEE division: nvcc's default -prec-div=true (meson.build)
        // one quiet NaN, whatever payload the additions made (quant_cuda.h)
        store(y, dtype, i, acc != acc ? zero_bits_f32(0x7fc00000u) : acc);
    }
}

bool dtype_ok(int dtype)
{
    return dtype == ZERO_FP32 || dtype == ZERO_BF16 || dtype == ZERO_FP16;
}

int launched()
{
    return (int)cudaGetLastError();
}

}  // namespace

extern "C" int zero_cuda_quant_encode8(const void *x, int dtype, size_t n, void *out, void *stream)
{
    if (!dtype_ok(dtype))
        return (int)cudaErrorInvalidValue;
    if (n == 0)
        return 0;
    size_t blocks = (n + ZERO_QUANT_BLOCK - 1) / ZERO_QUANT_BLOCK;   // zero_quant_blocks
    float *scales = (float *)out;
    int8_t *q = (int8_t *)((char *)out + blocks * sizeof(float));
    if (int earlier = zero_cuda_pending())
        return earlier;
    encode8_kernel<<<grid_for(blocks), ZERO_QUANT_BLOCK, 0, (cudaStream_t)stream>>>(x, dtype, n, blocks, scales, q);
    return launched();
}

extern "C" int zero_cuda_quant_decode8(const void *in, size_t n, int dtype, void *y, void *stream)
{
    if (!dtype_ok(dtype))
        return (int)cudaErrorInvalidValue;
    if (n == 0)
        return 0;
    size_t blocks = (n + ZERO_QUANT_BLOCK - 1) / ZERO_QUANT_BLOCK;   // zero_quant_blocks
    const float *scales = (const float *)in;
    const int8_t *q = (const int8_t *)((const char *)in + blocks * sizeof(float));
    if (int earlier = zero_cuda_pending())
        return earlier;
    decode8_kernel<<<grid_for(blocks), ZERO_QUANT_BLOCK, 0, (cudaStream_t)stream>>>(scales, q, n, dtype, y);
    return launched();
}

extern "C" int zero_cuda_quant_reduce8(const void *in, size_t block_stride, int nblocks, size_t n, float divisor,
                                       int dtype, void *y, void *stream)
{
    size_t blocks = (n + ZERO_QUANT_BLOCK - 1) / ZERO_QUANT_BLOCK;   // zero_quant_blocks
    // every vector's scales must stay 4-byte aligned, and lie in its slot
    if (!dtype_ok(dtype) || nblocks < 1 || block_stride % sizeof(float) != 0 ||
        (nblocks > 1 && block_stride < blocks * sizeof(float) + n))
        return (int)cudaErrorInvalidValue;
    if (n == 0)
        return 0;
    if (int earlier = zero_cuda_pending())
        return earlier;
    reduce8_kernel<<<grid_for(blocks), ZERO_QUANT_BLOCK, 0, (cudaStream_t)stream>>>(
        (const char *)in, block_stride, nblocks, n, blocks * sizeof(float), divisor, dtype, y);
    return launched();
}
