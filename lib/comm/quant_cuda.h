/*
 * The int8 block codec of quant.h on the GPU (quant_cuda.cu), for qwZ and
 * qgZ on device ranks: same format, same bytes as zero_quant_encode/decode
 * with ZERO_QUANT_INT8, since both compute each element with quant_elem.h.
 * Reached through the CUDA module's table (util/cuda_module.h).
 *
 * All enqueue on @p stream (a cudaStream_t; NULL the legacy stream) and
 * return 0 or the cudaError_t of the launch; or, where a CUDA error was
 * already pending on the calling thread (an asynchronous fault of earlier
 * work on the device, or a failed call nobody read), minus that cudaError_t
 * without launching: the failure is not the codec's. n == 0 returns 0 once
 * the arguments pass, with no pending error looked for. All pointers are
 * device memory.
 * @p dtype is a zero_dtype_t: ZERO_FP32, ZERO_BF16 or ZERO_FP16 (others
 * return cudaErrorInvalidValue and enqueue nothing; so do other bad
 * arguments). int4 has no kernels: the engine quantizes with int8 only.
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

/* qgZ's decode-and-sum: @p nblocks encoded vectors of n elements each, the
 * k-th at @p in + k x @p block_stride bytes (a multiple of 4), decoded and
 * summed in fp32 in k order starting from +0.0f, divided by @p divisor
 * unless it is 1, rounded once to @p dtype into @p y: per element the
 * arithmetic of quant_coll.c's decode_reduced (zero_quant_decode_add_f32
 * over the blocks, the division, the cast), so the same bits, except that
 * every NaN result is the quiet NaN 0x7fc00000 (the C path keeps the payload
 * its additions give, which differs only for a sum whose finite parts
 * overflow to inf of both signs). nblocks >= 1; n may be 0 (nothing enqueued). */
int zero_cuda_quant_reduce8(const void *in, size_t block_stride, int nblocks, size_t n, float divisor, int dtype,
                            void *y, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* ZERO_COMM_QUANT_CUDA_H */
