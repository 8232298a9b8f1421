/*
 * CUDA helpers of lib/util (compiled only with the cuda feature).
 */
#ifndef ZERO_UTIL_DEVICE_CHECK_H
#define ZERO_UTIL_DEVICE_CHECK_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ORs 1 into *device_flag (device memory) if any of @p count elements of
 * @p data (device memory; dtype as zero_dtype_t: 0 fp32, 1 fp16, 2 bf16) is
 * inf or NaN. Enqueued on @p stream (a cudaStream_t); returns 0 or the
 * cudaError_t of the launch; or, where a CUDA error was already pending on
 * the calling thread (util/cuda_launch.cuh), minus that cudaError_t with
 * nothing launched: the failure is not this kernel's. */
int zero_cuda_flag_nonfinite(const void *data, size_t count, int dtype,
                             unsigned int *device_flag, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* ZERO_UTIL_DEVICE_CHECK_H */
