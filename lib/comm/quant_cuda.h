/*
 * The int8 block codec of quant.h on the GPU (quant_cuda.cu), for qwZ on
 * device ranks: same format, same bytes as zero_quant_encode/decode with
 * ZERO_QUANT_INT8, since both compute each element with quant_elem.h.
 * Reached through the CUDA module's table (util/cuda_module.h).
 *
 * Both enqueue on @p stream (a cudaStream_t; NULL the legacy stream) and
 * return 0 or the cudaError_t of the launch; or, where a CUDA error was
 * already pending on the calling thread (an asynchronous fault of earlier
 * work on the device, or a failed call nobody read), minus that cudaError_t
 * without launching: the failure is not the codec's. n == 0 returns 0 with
 * nothing checked. All pointers are device memory.
 * @p dtype is a zero_dtype_t: ZERO_FP32, ZERO_BF16 or ZERO_FP16 (others
 * return cudaErrorInvalidValue and enqueue nothing).
 */
#ifndef ZERO_COMM_QUANT_CUDA_H
#define ZERO_COMM_QUANT_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Encodes n values from @p x into @p out (zero_quant_bytes(ZERO_QUANT_INT8, n)
 * bytes, 4-byte aligned: the scales, then the integers). */
int zero_cuda_quant_encode8(const void *x, int dtype, size_t n, void *out, void *stream);

/* Decodes an encoded vector of n elements into @p y of @p dtype. */
int zero_cuda_quant_decode8(const void *in, size_t n, int dtype, void *y, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* ZERO_COMM_QUANT_CUDA_H */
