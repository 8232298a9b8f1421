/*
 * Host-memory stand-ins for the CUDA runtime and NCCL calls that lib/comm/nccl.c,
 * lib/util/alloc.c and test_nccl_single.c make, and a C version of the
 * zero_cuda_flag_nonfinite kernel, linked into test_nccl_single as
 * comm-nccl-mock: the test's own logic and the backend's control flow (event
 * polling, abort once, create's failure paths) run on any machine. A world of
 * one: collectives copy. Events report "not ready" twice before completing.
 * At exit it fails the process if a stream, event, communicator or device
 * buffer is still alive.
 */
#include <cuda_runtime_api.h>
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <nccl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static cudaError_t last = cudaSuccess;
static int live_streams, live_events, live_comms, live_mallocs;
static cudaError_t fail(cudaError_t e) { last = e; return e; }
__attribute__((destructor)) static void report(void)
{
    fprintf(stderr, "mock: live at exit: streams %d events %d comms %d device buffers %d\n", live_streams,
            live_events, live_comms, live_mallocs);
    if (live_streams != 0 || live_events != 0 || live_comms != 0 || live_mallocs != 0)
        _exit(1);
}
cudaError_t cudaGetDeviceCount(int *c) { *c = 1; return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t e) { return e ? "mock error" : "no error"; }
cudaError_t cudaGetLastError(void) { cudaError_t e = last; last = cudaSuccess; return e; }
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }
cudaError_t cudaMalloc(void **p, size_t n) { *p = malloc(n ? n : 1); live_mallocs++; return cudaSuccess; }
cudaError_t cudaFree(void *p) { if (p) live_mallocs--; free(p); return cudaSuccess; }
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned f) { (void)f; *p = malloc(n); return cudaSuccess; }
cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, enum cudaMemcpyKind k) { (void)k; memmove(d, s, n); return cudaSuccess; }
cudaError_t cudaMemset(void *d, int v, size_t n) { memset(d, v, n); return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaDriverGetVersion(int *v) { *v = 13000; return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *v) { *v = 13000; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d)
{ memset(p, 0, sizeof(*p)); strcpy(p->name, "mock device (no GPU)"); p->major = 9; (void)d; return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned f) { (void)f; *s = (cudaStream_t)malloc(8); live_streams++; return cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t s) { free(s); live_streams--; return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t s) { (void)s; return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned f) { (void)f; *e = (cudaEvent_t)calloc(1, 8); live_events++; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) { (void)s; *(int *)e = 0; return cudaSuccess; }
cudaError_t cudaEventQuery(cudaEvent_t e) { return (*(int *)e)++ < 2 ? cudaErrorNotReady : cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { free(e); live_events--; return cudaSuccess; }
struct ncclComm { int rank, size, aborted; };
ncclResult_t ncclGetVersion(int *v) { *v = 22809; return ncclSuccess; }
ncclResult_t ncclGetUniqueId(ncclUniqueId *u) { memset(u, 7, sizeof(*u)); return ncclSuccess; }
const char *ncclGetErrorString(ncclResult_t r) { return r ? "mock nccl error" : "ok"; }
ncclResult_t ncclCommInitRank(ncclComm_t *c, int n, ncclUniqueId id, int r)
{ (void)id; if (r < 0 || r >= n) return ncclInvalidArgument; *c = calloc(1, sizeof(**c)); (*c)->rank = r; (*c)->size = n; live_comms++; return ncclSuccess; }
ncclResult_t ncclCommAbort(ncclComm_t c) { if (c->aborted++) fprintf(stderr, "mock: ncclCommAbort twice\n"), _exit(1); free(c); live_comms--; return ncclSuccess; }
ncclResult_t ncclCommDestroy(ncclComm_t c) { free(c); live_comms--; return ncclSuccess; }
ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *a) { (void)c; *a = ncclSuccess; return ncclSuccess; }
static size_t tsz(ncclDataType_t t) { return t == ncclFloat32 ? 4 : 2; }
ncclResult_t ncclAllReduce(const void *s, void *r, size_t n, ncclDataType_t t, ncclRedOp_t o, ncclComm_t c, cudaStream_t st)
{ (void)o; (void)c; (void)st; memmove(r, s, n * tsz(t));
  return ncclSuccess; }
ncclResult_t ncclReduceScatter(const void *s, void *r, size_t n, ncclDataType_t t, ncclRedOp_t o, ncclComm_t c, cudaStream_t st)
{ (void)o; (void)c; (void)st; memmove(r, s, n * tsz(t)); return ncclSuccess; }
ncclResult_t ncclAllGather(const void *s, void *r, size_t n, ncclDataType_t t, ncclComm_t c, cudaStream_t st)
{ (void)c; (void)st; memmove(r, s, n * tsz(t)); return ncclSuccess; }
ncclResult_t ncclBroadcast(const void *s, void *r, size_t n, ncclDataType_t t, int root, ncclComm_t c, cudaStream_t st)
{ (void)root; (void)c; (void)st; memmove(r, s, n * tsz(t)); return ncclSuccess; }
int zero_cuda_flag_nonfinite(const void *data, size_t count, int dtype, unsigned int *flag, void *stream);
int zero_cuda_flag_nonfinite(const void *data, size_t count, int dtype, unsigned int *flag, void *stream)
{
    (void)stream;
        for (size_t i = 0; i < count; i++) {
        int f;
        if (dtype == 0) f = (((const uint32_t *)data)[i] & 0x7f800000u) == 0x7f800000u;
        else if (dtype == 1) f = (((const uint16_t *)data)[i] & 0x7c00u) == 0x7c00u;
        else f = (((const uint16_t *)data)[i] & 0x7f80u) == 0x7f80u;
        if (f) { *flag |= 1u; break; }
    }
    return (int)cudaGetLastError();
}
