/*
 * The CUDA module itself (libzero-cuda.so, util/cuda_module.h): the only
 * object that links the CUDA runtime and NCCL. It exports one function, which
 * hands libzero the table of their entry points and of libzero's own kernels.
 */
#include "util/cuda_module.h"

static const zero_cuda_api_t module_api = {
    .abi = ZERO_CUDA_MODULE_ABI,
    .cudaGetDeviceCount = cudaGetDeviceCount,
    .cudaSetDevice = cudaSetDevice,
    .cudaGetLastError = cudaGetLastError,
    .cudaGetErrorString = cudaGetErrorString,
    .cudaMalloc = cudaMalloc,
    .cudaFree = cudaFree,
    .cudaHostAlloc = cudaHostAlloc,
    .cudaFreeHost = cudaFreeHost,
    .cudaMemset = cudaMemset,
    .cudaMemcpy = cudaMemcpy,
    .cudaStreamCreateWithFlags = cudaStreamCreateWithFlags,
    .cudaMemcpyAsync = cudaMemcpyAsync,
    .cudaStreamWaitEvent = cudaStreamWaitEvent,
    .cudaStreamDestroy = cudaStreamDestroy,
    .cudaStreamSynchronize = cudaStreamSynchronize,
    .cudaEventCreateWithFlags = cudaEventCreateWithFlags,
    .cudaEventRecord = cudaEventRecord,
    .cudaEventQuery = cudaEventQuery,
    .cudaEventDestroy = cudaEventDestroy,
    .ncclGetUniqueId = ncclGetUniqueId,
    .ncclCommInitRank = ncclCommInitRank,
    .ncclCommDestroy = ncclCommDestroy,
    .ncclCommAbort = ncclCommAbort,
    .ncclCommGetAsyncError = ncclCommGetAsyncError,
    .ncclGetErrorString = ncclGetErrorString,
    .ncclAllReduce = ncclAllReduce,
    .ncclReduceScatter = ncclReduceScatter,
    .ncclAllGather = ncclAllGather,
    .ncclBroadcast = ncclBroadcast,
    .cudaMemsetAsync = cudaMemsetAsync,
    .cudaDeviceSynchronize = cudaDeviceSynchronize,
    .cudaGetDevice = cudaGetDevice,
    .cudaStreamQuery = cudaStreamQuery,
    .zero_cuda_flag_nonfinite = zero_cuda_flag_nonfinite,
    .zero_cuda_grad_stats = zero_cuda_grad_stats,
    .zero_cuda_gate_set = zero_cuda_gate_set,
    .zero_cuda_adam = zero_cuda_adam,
    .zero_cuda_sgd = zero_cuda_sgd,
    .zero_cuda_adagrad = zero_cuda_adagrad,
    .zero_cuda_lion = zero_cuda_lion,
    .zero_cuda_lamb1 = zero_cuda_lamb1,
    .zero_cuda_lamb2 = zero_cuda_lamb2,
    .zero_cuda_put2 = zero_cuda_put2,
    .zero_cuda_fill = zero_cuda_fill,
    .zero_cuda_add16 = zero_cuda_add16,
    .zero_cuda_add32 = zero_cuda_add32,
    .zero_cuda_to_16 = zero_cuda_to_16,
    .zero_cuda_from_16 = zero_cuda_from_16,
};

const zero_cuda_api_t *zero_cuda_module_api(uint32_t abi);

/* The table whatever @p abi asks for: the loader compares the versions and
 * names both when they differ. */
__attribute__((visibility("default"))) const zero_cuda_api_t *zero_cuda_module_api(uint32_t abi)
{
    (void)abi;
    return &module_api;
}
