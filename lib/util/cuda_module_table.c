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
    .zero_cuda_flag_nonfinite = zero_cuda_flag_nonfinite,
};

const zero_cuda_api_t *zero_cuda_module_api(uint32_t abi);

/* The table whatever @p abi asks for: the loader compares the versions and
 * names both when they differ. */
__attribute__((visibility("default"))) const zero_cuda_api_t *zero_cuda_module_api(uint32_t abi)
{
    (void)abi;
    return &module_api;
}
