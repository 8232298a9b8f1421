/*
 * The CUDA module: libzero.so links neither the CUDA runtime nor NCCL. Device
 * support lives in a separate shared module, libzero-cuda.so (installed beside
 * libzero.so), which links both and hands libzero one table of their entry
 * points (and of libzero's own device kernels). libzero loads it with dlopen the
 * first time something needs a device: a device memory kind, a device
 * collective, or the communicator's check for GPUs. A machine without CUDA
 * loads libzero.so and trains on host memory; asking it for device memory is an
 * error that names the module and why it could not be loaded.
 *
 * Where the module is looked for, first hit wins:
 *   1. $ZERO_CUDA_MODULE, a path (tests of a build tree point it at the build's);
 *   2. the directory libzero itself was loaded from (dladdr), as installed;
 *   3. the dynamic linker's search path (rpath, LD_LIBRARY_PATH, ld.so.conf).
 * The search runs once per process; its result (table or error) is kept.
 *
 * Only with HAVE_CUDA: the table is typed by the CUDA and NCCL headers, which a
 * CUDA build has at compile time even where their libraries are absent at run time.
 */
#ifndef ZERO_UTIL_CUDA_MODULE_H
#define ZERO_UTIL_CUDA_MODULE_H

#include "zero_build_config.h"
#include <stdint.h>
#include <zero/status.h>

/* The module's file name, as installed beside libzero.so. */
#define ZERO_CUDA_MODULE_NAME "libzero-cuda.so"
/* Bumped whenever zero_cuda_api_t changes: a module from another build is refused. */
#define ZERO_CUDA_MODULE_ABI 6
/* The one symbol the module exports: const zero_cuda_api_t *(uint32_t abi). */
#define ZERO_CUDA_MODULE_ENTRY "zero_cuda_module_api"

#if HAVE_CUDA
#include <cuda_runtime_api.h>
/* nccl.h declares a few functions as f() (no prototype): keep -Werror for our code only. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <nccl.h>
#pragma GCC diagnostic pop
#include "util/device_check.h"
#include "optim/optim_cuda.h"
#include "comm/quant_cuda.h"

/* Defined in the module (cuda_module_table.c), which links the runtime but not
 * the driver library: the driver's cuStreamWaitValue32, found once through
 * the runtime's entry-point query. @p stream waits until the 32-bit word at
 * @p dev_addr (a device address of mapped pinned memory) is >= @p value,
 * compared cyclically (wrap-around safe). Returns the driver's CUresult (0:
 * enqueued); 801 (not supported) when the driver has no such entry point. */
int zero_cuda_stream_wait_geq32(cudaStream_t stream, void *dev_addr, uint32_t value);

/* One entry per function used; each field has the name and type of the
 * function it points to, so a call reads ZERO_CUDA(cudaSetDevice)(device). */
#define ZERO_CUDA_ENTRY(fn) __typeof__(fn) *fn
typedef struct zero_cuda_api {
    uint32_t abi;
    ZERO_CUDA_ENTRY(cudaGetDeviceCount);
    ZERO_CUDA_ENTRY(cudaSetDevice);
    ZERO_CUDA_ENTRY(cudaGetLastError);
    ZERO_CUDA_ENTRY(cudaGetErrorString);
    ZERO_CUDA_ENTRY(cudaMalloc);
    ZERO_CUDA_ENTRY(cudaFree);
    ZERO_CUDA_ENTRY(cudaHostAlloc);
    ZERO_CUDA_ENTRY(cudaFreeHost);
    ZERO_CUDA_ENTRY(cudaMemset);
    ZERO_CUDA_ENTRY(cudaMemcpy);
    ZERO_CUDA_ENTRY(cudaMemcpyAsync);
    ZERO_CUDA_ENTRY(cudaStreamWaitEvent);
    ZERO_CUDA_ENTRY(cudaStreamCreateWithFlags);
    ZERO_CUDA_ENTRY(cudaStreamDestroy);
    ZERO_CUDA_ENTRY(cudaStreamSynchronize);
    ZERO_CUDA_ENTRY(cudaEventCreateWithFlags);
    ZERO_CUDA_ENTRY(cudaEventRecord);
    ZERO_CUDA_ENTRY(cudaEventQuery);
    ZERO_CUDA_ENTRY(cudaEventSynchronize);     /* CPU offload's thread sleeps on blocking-sync events */
    ZERO_CUDA_ENTRY(cudaEventDestroy);
    ZERO_CUDA_ENTRY(cudaMemsetAsync);
    ZERO_CUDA_ENTRY(cudaDeviceSynchronize);
    ZERO_CUDA_ENTRY(cudaGetDevice);
    ZERO_CUDA_ENTRY(cudaStreamQuery);
    ZERO_CUDA_ENTRY(cudaHostRegister);          /* the staged backend (comm/staged.c) */
    ZERO_CUDA_ENTRY(cudaHostUnregister);
    ZERO_CUDA_ENTRY(cudaHostGetDevicePointer);
    ZERO_CUDA_ENTRY(cudaDeviceGetPCIBusId);
    ZERO_CUDA_ENTRY(zero_cuda_stream_wait_geq32);
    ZERO_CUDA_ENTRY(ncclGetUniqueId);
    ZERO_CUDA_ENTRY(ncclCommInitRank);
    ZERO_CUDA_ENTRY(ncclCommInitRankConfig);
    ZERO_CUDA_ENTRY(ncclCommDestroy);
    ZERO_CUDA_ENTRY(ncclCommAbort);
    ZERO_CUDA_ENTRY(ncclCommGetAsyncError);
    ZERO_CUDA_ENTRY(ncclGetErrorString);
    ZERO_CUDA_ENTRY(ncclAllReduce);
    ZERO_CUDA_ENTRY(ncclReduceScatter);
    ZERO_CUDA_ENTRY(ncclAllGather);
    ZERO_CUDA_ENTRY(ncclBroadcast);
    ZERO_CUDA_ENTRY(ncclGroupStart);             /* the device all-to-all (comm/nccl.c) */
    ZERO_CUDA_ENTRY(ncclGroupEnd);
    ZERO_CUDA_ENTRY(ncclSend);
    ZERO_CUDA_ENTRY(ncclRecv);
    ZERO_CUDA_ENTRY(zero_cuda_flag_nonfinite);   /* util/device_check.cu */
    /* lib/optim/optim_cuda.cu: the device operations of the engine (engine_ops_device.c) */
    ZERO_CUDA_ENTRY(zero_cuda_grad_stats);
    ZERO_CUDA_ENTRY(zero_cuda_gate_set);
    ZERO_CUDA_ENTRY(zero_cuda_adam);
    ZERO_CUDA_ENTRY(zero_cuda_sgd);
    ZERO_CUDA_ENTRY(zero_cuda_adagrad);
    ZERO_CUDA_ENTRY(zero_cuda_lion);
    ZERO_CUDA_ENTRY(zero_cuda_lamb1);
    ZERO_CUDA_ENTRY(zero_cuda_lamb2);
    ZERO_CUDA_ENTRY(zero_cuda_put2);
    ZERO_CUDA_ENTRY(zero_cuda_fill);
    ZERO_CUDA_ENTRY(zero_cuda_add16);
    ZERO_CUDA_ENTRY(zero_cuda_add32);
    ZERO_CUDA_ENTRY(zero_cuda_to_16);
    ZERO_CUDA_ENTRY(zero_cuda_from_16);
    ZERO_CUDA_ENTRY(zero_cuda_quant_encode8);   /* lib/comm/quant_cuda.cu: qwZ (engine_gather.c) */
    ZERO_CUDA_ENTRY(zero_cuda_quant_decode8);
    ZERO_CUDA_ENTRY(zero_cuda_quant_reduce8);   /* qgZ (engine_step.c) */
} zero_cuda_api_t;
#undef ZERO_CUDA_ENTRY

/* The loaded table, or NULL. Only for code that has already seen
 * zero_cuda_probe() or zero_cuda_require() succeed (no check here). */
const zero_cuda_api_t *zero_cuda_loaded(void);
#define ZERO_CUDA(fn) (zero_cuda_loaded()->fn)

/* Loads the module if it is not loaded yet (once per process). Returns the
 * table, or NULL without logging an error (DEBUG only): for callers that treat
 * "no CUDA here" as "no GPU" (the communicator's device check, pinned memory). */
const zero_cuda_api_t *zero_cuda_probe(void);
#endif

/*
 * ZERO_OK when the module is loaded (loading it if need be). Otherwise logs one
 * ERROR naming @p what (the request: "allocating 4096 bytes of device memory for
 * X"), the module, where it was looked for and the loader's reason, and returns
 * ZERO_ERR_UNSUPPORTED. In a build without CUDA it says so instead.
 */
zero_status_t zero_cuda_require(const char *what);

#endif /* ZERO_UTIL_CUDA_MODULE_H */
