/* CUDA runtime and NCCL error translation (see util/checks.h); only with HAVE_CUDA. */
#ifndef ZERO_UTIL_CHECKS_CUDA_H
#define ZERO_UTIL_CHECKS_CUDA_H

#include "zero_build_config.h"
#include "util/checks.h"

#if HAVE_CUDA
/* The error strings come from the CUDA module's table (util/cuda_module.h):
 * only code that has the module loaded reaches these checks. */
#include "util/cuda_module.h"

#define ZERO_CUDA_CHECK_GOTO(expr, status_var, label, fmt, ...) \
    do { \
        cudaError_t zero_check_cuda_ = (expr); \
        if (zero_check_cuda_ != cudaSuccess) { \
            ZERO_LOG_ERROR(fmt ": %s (CUDA error %d)", ##__VA_ARGS__, \
                           ZERO_CUDA(cudaGetErrorString)(zero_check_cuda_), (int)zero_check_cuda_); \
            (status_var) = zero_check_cuda_ == cudaErrorMemoryAllocation ? ZERO_ERR_NO_MEMORY \
                                                                          : ZERO_ERR_CUDA; \
            goto label; \
        } \
    } while (0)

#define ZERO_NCCL_CHECK_GOTO(expr, status_var, label, fmt, ...) \
    do { \
        ncclResult_t zero_check_nccl_ = (expr); \
        if (zero_check_nccl_ != ncclSuccess && zero_check_nccl_ != ncclInProgress) { \
            ZERO_LOG_ERROR(fmt ": %s", ##__VA_ARGS__, ZERO_CUDA(ncclGetErrorString)(zero_check_nccl_)); \
            (status_var) = zero_check_nccl_ == ncclSystemError ? ZERO_ERR_COMM : ZERO_ERR_NCCL; \
            goto label; \
        } \
    } while (0)
#endif

#endif /* ZERO_UTIL_CHECKS_CUDA_H */
