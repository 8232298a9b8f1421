/*
 * The CUDA module itself (libzero-cuda.so, util/cuda_module.h): the only
 * object that links the CUDA runtime and NCCL. It exports one function, which
 * hands libzero the table of their entry points and of libzero's own kernels.
 */
#include "util/cuda_module.h"

#include <cuda.h>
#include <pthread.h>
#include <string.h>

typedef CUresult (*wait_value32_fn)(CUstream, CUdeviceptr, cuuint32_t, unsigned int);
static wait_value32_fn wait_value32;
static pthread_once_t wait_value32_once = PTHREAD_ONCE_INIT;

static void find_wait_value32(void)
{
    void *fn = NULL;
    enum cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    /* 12000: the CUDA 12 form, which needs no NVreg_EnableStreamMemOPs */
    if (cudaGetDriverEntryPointByVersion("cuStreamWaitValue32", &fn, 12000, cudaEnableDefault, &found) == cudaSuccess &&
        found == cudaDriverEntryPointSuccess)
        memcpy(&wait_value32, &fn, sizeof(fn));   /* object to function pointer, as with dlsym */
    else
        (void)cudaGetLastError();
}

int zero_cuda_stream_wait_geq32(cudaStream_t stream, void *dev_addr, uint32_t value)
{
    pthread_once(&wait_value32_once, find_wait_value32);
    if (wait_value32 == NULL)
        return (int)CUDA_ERROR_NOT_SUPPORTED;
    return (int)wait_value32((CUstream)stream, (CUdeviceptr)(uintptr_t)dev_addr, value, CU_STREAM_WAIT_VALUE_GEQ);
}

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
    .cudaEventSynchronize = cudaEventSynchronize,
    .cudaEventDestroy = cudaEventDestroy,
    .ncclGetUniqueId = ncclGetUniqueId,
    .ncclCommInitRank = ncclCommInitRank,
    .ncclCommInitRankConfig = ncclCommInitRankConfig,
    .ncclCommDestroy = ncclCommDestroy,
    .ncclCommAbort = ncclCommAbort,
    .ncclCommGetAsyncError = ncclCommGetAsyncError,
    .ncclGetErrorString = ncclGetErrorString,
    .ncclAllReduce = ncclAllReduce,
    .ncclReduceScatter = ncclReduceScatter,
    .ncclAllGather = ncclAllGather,
    .ncclBroadcast = ncclBroadcast,
    .ncclGroupStart = ncclGroupStart,
    .ncclGroupEnd = ncclGroupEnd,
    .ncclSend = ncclSend,
    .ncclRecv = ncclRecv,
    .cudaMemsetAsync = cudaMemsetAsync,
    .cudaDeviceSynchronize = cudaDeviceSynchronize,
    .cudaGetDevice = cudaGetDevice,
    .cudaStreamQuery = cudaStreamQuery,
    .cudaHostRegister = cudaHostRegister,
    .cudaHostUnregister = cudaHostUnregister,
    .cudaHostGetDevicePointer = cudaHostGetDevicePointer,
    .cudaDeviceGetPCIBusId = cudaDeviceGetPCIBusId,
    .zero_cuda_stream_wait_geq32 = zero_cuda_stream_wait_geq32,
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
    .zero_cuda_quant_encode8 = zero_cuda_quant_encode8,
    .zero_cuda_quant_decode8 = zero_cuda_quant_decode8,
    .zero_cuda_quant_reduce8 = zero_cuda_quant_reduce8,
};

const zero_cuda_api_t *zero_cuda_module_api(uint32_t abi);

/* The table whatever @p abi asks for: the loader compares the versions and
 * names both when they differ. */
__attribute__((visibility("default"))) const zero_cuda_api_t *zero_cuda_module_api(uint32_t abi)
{
    (void)abi;
    return &module_api;
}
