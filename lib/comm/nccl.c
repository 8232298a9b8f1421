#define ZERO_LOG_MODULE "comm"
#include "comm/nccl.h"
#include "comm/backend.h"
#include "comm/staged_plan.h"

#if HAVE_CUDA
/* Every CUDA and NCCL call goes through the CUDA module's table
 * (util/cuda_module.h): libzero.so links neither library. */
#include "util/alloc.h"
#include "util/checks_cuda.h"
#include "util/clock.h"
#include "util/cuda_module.h"
#include "util/log.h"

#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

struct zero_nccl {
    ncclComm_t comm;
    cudaStream_t stream;
    int device;
    int rank, size;
    double timeout_s;       /* the bound on a non-blocking call's completion */
    atomic_int aborted;     /* ncclCommAbort must run once */
};

/* Polls the non-blocking communicator @p comm until its pending call
 * finished: ZERO_OK, or the error (logged, naming @p what and @p rank). */
static zero_status_t settle(ncclComm_t comm, double timeout_s, zero_nccl_health_fn health, void *health_ctx,
                            const char *what, int rank)
{
    double t0 = zero_clock_now();
    for (;;) {
        ncclResult_t state = ncclInProgress, r;
        int bad = -1;
        zero_status_t hs;
        r = ZERO_CUDA(ncclCommGetAsyncError)(comm, &state);
        if (r != ncclSuccess)
            state = r;
        if (state == ncclSuccess)
            return ZERO_OK;
        if (state != ncclInProgress) {
            ZERO_LOG_ERROR("NCCL: %s on rank %d: %s", what, rank, ZERO_CUDA(ncclGetErrorString)(state));
            return state == ncclSystemError ? ZERO_ERR_COMM : ZERO_ERR_NCCL;
        }
        if (health != NULL && (hs = health(health_ctx, &bad)) != ZERO_OK) {
            ZERO_LOG_ERROR("NCCL: %s on rank %d stopped: rank %d failed (%s)", what, rank, bad,
                           zero_status_string(hs));
            return hs;
        }
        if (zero_clock_now() - t0 > timeout_s) {
            ZERO_LOG_ERROR("NCCL: %s on rank %d did not finish within %.1f s", what, rank, timeout_s);
            return ZERO_ERR_TIMEOUT;
        }
        usleep(500);
    }
}

_Static_assert(sizeof(ncclUniqueId) == ZERO_NCCL_ID_BYTES, "NCCL unique id size");

int zero_nccl_device_count(void)
{
    int count = 0;
    if (zero_cuda_probe() == NULL)
        return 0;   /* no module, no CUDA here: a host-only rank (its absence is an error only on device use) */
    if (ZERO_CUDA(cudaGetDeviceCount)(&count) != cudaSuccess) {
        (void)ZERO_CUDA(cudaGetLastError)();   /* clear the sticky "no driver" error */
        return 0;
    }
    return count;
}

zero_status_t zero_nccl_unique_id(unsigned char id[ZERO_NCCL_ID_BYTES])
{
    zero_status_t status = ZERO_OK;
    ncclUniqueId uid;
    ZERO_NCCL_CHECK_GOTO(ZERO_CUDA(ncclGetUniqueId)(&uid), status, out, "NCCL: %s", "ncclGetUniqueId");
    memcpy(id, &uid, sizeof(uid));
out:
    return status;
}

zero_status_t zero_nccl_create(const unsigned char id[ZERO_NCCL_ID_BYTES], int rank, int size, int device,
                               zero_nccl_agree_fn agree, void *agree_ctx, double timeout_s,
                               zero_nccl_health_fn health, void *health_ctx, zero_nccl_t **nccl_p)
{
    zero_status_t status = ZERO_OK, everyone;
    ncclUniqueId uid;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    int have_stream = 0;
    zero_nccl_t *n = zero_calloc(1, sizeof(*n));

    if (n == NULL) {
        ZERO_LOG_ERROR("NCCL: out of memory");
        status = ZERO_ERR_NO_MEMORY;
        goto agree;
    }
    n->device = device;
    n->rank = rank;
    n->size = size;
    n->timeout_s = timeout_s;
    memcpy(&uid, id, sizeof(uid));
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaSetDevice)(device), status, agree, "NCCL: ZERO_CUDA(cudaSetDevice)(%d)", device);
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamCreateWithFlags)(&n->stream, cudaStreamNonBlocking), status, agree,
                         "NCCL: %s", "creating the communication stream");
    have_stream = 1;
agree:
    everyone = agree != NULL ? agree(agree_ctx, status) : status;
    if (status == ZERO_OK && everyone != ZERO_OK)
        status = everyone;   /* another rank failed (the agreement logged which) */
    if (status != ZERO_OK)
        goto fail;
    /* Non-blocking, so that a peer dying during the set-up cannot keep this
     * rank inside NCCL: the set-up is polled, and aborted on a failure. */
    config.blocking = 0;
    ZERO_NCCL_CHECK_GOTO(ZERO_CUDA(ncclCommInitRankConfig)(&n->comm, size, uid, rank, &config), status, fail,
                         "NCCL: ncclCommInitRankConfig (rank %d of %d, device %d)", rank, size, device);
    status = settle(n->comm, timeout_s, health, health_ctx, "setting up the communicator", rank);
    if (status != ZERO_OK)
        goto fail;
    *nccl_p = n;
    return ZERO_OK;
fail:
    /* A non-blocking ncclCommInitRankConfig may hand out a communicator and
     * still fail (at once or in settle): abort it, or its resources leak. */
    if (n != NULL && n->comm != NULL)
        ZERO_CUDA(ncclCommAbort)(n->comm);
    if (have_stream)
        ZERO_CUDA(cudaStreamDestroy)(n->stream);
    zero_free(n);
    return status;
}

void zero_nccl_destroy(zero_nccl_t *nccl, int abort)
{
    if (nccl == NULL)
        return;
    if (abort || atomic_load(&nccl->aborted)) {
        zero_nccl_abort(nccl);
    } else {
        ZERO_CUDA(cudaStreamSynchronize)(nccl->stream);
        ZERO_CUDA(ncclCommDestroy)(nccl->comm);
    }
    ZERO_CUDA(cudaStreamDestroy)(nccl->stream);
    zero_free(nccl);
}

static ncclDataType_t nccl_type(zero_dtype_t dtype)
{
    switch (dtype) {
    case ZERO_FP16: return ncclFloat16;
    case ZERO_BF16: return ncclBfloat16;
    case ZERO_U8:   return ncclUint8;
    case ZERO_I32:  return ncclInt32;
    case ZERO_I64:  return ncclInt64;
    case ZERO_F64:  return ncclFloat64;
    default:        return ncclFloat32;
    }
}

static ncclRedOp_t nccl_op(zero_comm_op_t op)
{
    switch (op) {
    case ZERO_COMM_AVG: return ncclAvg;
    case ZERO_COMM_MAX: return ncclMax;
    default:            return ncclSum;
    }
}

/* A call of a group that may go on: NCCL's non-blocking communicators may
 * answer ncclInProgress before the group ends. */
static int group_ok(ncclResult_t r)
{
    return r == ncclSuccess || r == ncclInProgress;
}

/* The all-to-all as one group of point-to-point calls (NCCL has no
 * all-to-all collective): block q of sendbuf to rank q, rank q's block for
 * this rank into block q of recvbuf, this rank's own block included (NCCL
 * copies it). The group is always ended, also after a failed call, so the
 * communicator is left with no open group; the first failure is returned. */
static ncclResult_t nccl_alltoall(zero_nccl_t *nccl, const zero_coll_desc_t *d, ncclDataType_t t)
{
    size_t bytes = d->count * zero_dtype_size(d->dtype);
    ncclResult_t r, end;
    if (d->count == 0)
        return ncclSuccess;   /* nothing to move on any rank (the counts match) */
    r = ZERO_CUDA(ncclGroupStart)();
    if (!group_ok(r))
        return r;
    for (int q = 0; q < nccl->size && group_ok(r); q++) {
        r = ZERO_CUDA(ncclSend)((const char *)d->sendbuf + (size_t)q * bytes, d->count, t, q, nccl->comm,
                                nccl->stream);
        if (group_ok(r))
            r = ZERO_CUDA(ncclRecv)((char *)d->recvbuf + (size_t)q * bytes, d->count, t, q, nccl->comm,
                                    nccl->stream);
    }
    end = ZERO_CUDA(ncclGroupEnd)();
    return group_ok(r) ? end : r;
}

zero_status_t zero_nccl_start(zero_nccl_t *nccl, const zero_coll_desc_t *d, void **event_p)
{
    zero_status_t status = ZERO_OK;
    cudaEvent_t ev = NULL;
    ncclResult_t r = ncclSuccess;
    ncclDataType_t t = nccl_type(d->dtype);
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaSetDevice)(nccl->device), status, fail, "NCCL: ZERO_CUDA(cudaSetDevice)(%d)", nccl->device);
    /* Ordered after the caller's work (zero_comm_order_t): the stream waits on
     * the device, the host does not. */
    if (d->wait_event != NULL)
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamWaitEvent)(nccl->stream, (cudaEvent_t)d->wait_event, 0), status, fail,
                             "NCCL: %s #%zu elements: the communication stream cannot wait on the caller's "
                             "wait_event", zero_coll_name(d->kind), d->count);
    switch (d->kind) {
    case ZERO_COLL_ALLREDUCE:
        r = ZERO_CUDA(ncclAllReduce)(d->sendbuf, d->recvbuf, d->count, t, nccl_op(d->op), nccl->comm, nccl->stream);
        break;
    case ZERO_COLL_REDUCE_SCATTER:
        r = ZERO_CUDA(ncclReduceScatter)(d->sendbuf, d->recvbuf, d->count, t, nccl_op(d->op), nccl->comm, nccl->stream);
        break;
    case ZERO_COLL_ALLGATHER:
        r = ZERO_CUDA(ncclAllGather)(d->sendbuf, d->recvbuf, d->count, t, nccl->comm, nccl->stream);
        break;
    case ZERO_COLL_BROADCAST:
        r = ZERO_CUDA(ncclBroadcast)(d->sendbuf, d->recvbuf, d->count, t, d->root, nccl->comm, nccl->stream);
        break;
    case ZERO_COLL_ALLTOALL:
        r = nccl_alltoall(nccl, d, t);
        break;
    case ZERO_COLL_BARRIER:
    case ZERO_COLL_REDUCE_SCATTER_RANGE:
    case ZERO_COLL_REDUCE_SCATTER_SPLIT:
        /* Device barriers are host barriers, and the range and split
         * reduce-scatters are host only (nccl_accepts refuses them: the front
         * never sends them here). */
        break;
    }
    ZERO_NCCL_CHECK_GOTO(r, status, fail, "NCCL: %s of %zu elements", zero_coll_name(d->kind), d->count);
    /* A non-blocking communicator may still be enqueueing (its first
     * collectives connect the peers): the events below must come after it. */
    if (r == ncclInProgress &&
        (status = settle(nccl->comm, nccl->timeout_s, NULL, NULL, zero_coll_name(d->kind), nccl->rank)) != ZERO_OK)
        goto fail;
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventCreateWithFlags)(&ev, cudaEventDisableTiming), status, fail,
                         "NCCL: %s", "creating a completion event");
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)(ev, nccl->stream), status, fail_event, "NCCL: %s", "recording an event");
    if (d->done_event != NULL)
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)((cudaEvent_t)d->done_event, nccl->stream), status, fail_event,
                             "NCCL: %s of %zu elements: cannot record the caller's done_event on the communication "
                             "stream", zero_coll_name(d->kind), d->count);
    *event_p = ev;
    return ZERO_OK;
fail_event:
    ZERO_CUDA(cudaEventDestroy)(ev);
fail:
    return status;
}

zero_status_t zero_nccl_test(zero_nccl_t *nccl, void *event)
{
    zero_status_t status = ZERO_INPROGRESS;
    ncclResult_t async = ncclSuccess;
    cudaError_t err;
    /* The progress thread polls: make the communicator's device current there too. */
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaSetDevice)(nccl->device), status, out, "NCCL: ZERO_CUDA(cudaSetDevice)(%d)", nccl->device);
    ZERO_NCCL_CHECK_GOTO(ZERO_CUDA(ncclCommGetAsyncError)(nccl->comm, &async), status, out, "NCCL: %s", "ncclCommGetAsyncError");
    ZERO_NCCL_CHECK_GOTO(async, status, out, "NCCL: asynchronous error on rank %d", nccl->rank);
    err = ZERO_CUDA(cudaEventQuery)((cudaEvent_t)event);
    if (err == cudaErrorNotReady)
        return ZERO_INPROGRESS;
    ZERO_CUDA_CHECK_GOTO(err, status, out, "NCCL: collective on rank %d", nccl->rank);
    status = ZERO_OK;
out:
    return status;
}

void zero_nccl_event_free(void *event)
{
    if (event != NULL)
        ZERO_CUDA(cudaEventDestroy)((cudaEvent_t)event);
}

void zero_nccl_abort(zero_nccl_t *nccl)
{
    if (nccl != NULL && atomic_exchange(&nccl->aborted, 1) == 0)
        ZERO_CUDA(ncclCommAbort)(nccl->comm);
}

zero_status_t zero_nccl_self_copy(void *dst, const void *src, size_t bytes, void *wait_event, void *done_event)
{
    zero_status_t status = ZERO_OK;
    cudaStream_t stream = NULL;

    /* A world of one reaches here without the device check that loads the module. */
    ZERO_CHECK_GOTO(zero_cuda_require("copying device memory (a collective at world size 1)"), status, out);
    if (wait_event == NULL && done_event == NULL) {
        if (dst == src || bytes == 0)
            return ZERO_OK;
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaMemcpy)(dst, src, bytes, cudaMemcpyDeviceToDevice), status, out,
                             "copying %zu bytes of device memory", bytes);
        return ZERO_OK;
    }
    /* Ordered: on a stream of its own that waits for the caller's event. With
     * data to move, complete on the host when this returns (a world of one
     * has no progress to overlap), so done_event is already reached when it
     * is recorded. In place (the engine's reductions at world size 1) there
     * is nothing to move: done_event is recorded after the wait and the host
     * does not wait at all, so the caller's stream stays the only order. */
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamCreateWithFlags)(&stream, cudaStreamNonBlocking), status, out,
                         "world of one: %s", "creating a stream for an ordered device copy");
    if (wait_event != NULL)
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamWaitEvent)(stream, (cudaEvent_t)wait_event, 0), status, out,
                             "world of one: the copy of %zu bytes cannot wait on the caller's wait_event", bytes);
    if (dst != src && bytes > 0)
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaMemcpyAsync)(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), status, out,
                             "copying %zu bytes of device memory", bytes);
    if (done_event != NULL)
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)((cudaEvent_t)done_event, stream), status, out,
                             "world of one: %s", "cannot record the caller's done_event");
    if (dst != src && bytes > 0)
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamSynchronize)(stream), status, out,
                             "world of one: ordered copy of %zu bytes", bytes);
out:
    if (stream != NULL)
        ZERO_CUDA(cudaStreamDestroy)(stream);
    return status;
}

/* ---- NCCL as a communicator backend (comm/backend.h) ---- */

/* Every rank's device set-up succeeded? A host allreduce (MAX) of "rank + 1
 * where it failed", so that all ranks fail together, naming one that failed,
 * instead of the others waiting in ncclCommInitRank for it. */
static zero_status_t agree_nccl_setup(void *ctx, zero_status_t local)
{
    zero_comm_h comm = ctx;
    int64_t mine = local != ZERO_OK ? comm->env.rank + 1 : 0, worst = 0;
    zero_status_t status;
    if (!(comm->cfg.backends & ZERO_COMM_BACKEND_UCX))
        return local;   /* no host path to agree over: NCCL's own set-up decides */
    status = zero_comm_allreduce(comm, &mine, &worst, 1, ZERO_I64, ZERO_COMM_MAX, ZERO_MEM_HOST);
    if (status != ZERO_OK) {
        ZERO_LOG_ERROR("NCCL: the ranks could not agree that their CUDA devices are set up: %s",
                       zero_status_string(status));
        return status;
    }
    if (worst > 0 && local == ZERO_OK)
        ZERO_LOG_ERROR("NCCL: rank %d could not set up its CUDA device (see its log): no rank creates the NCCL "
                       "communicator", (int)worst - 1);
    return worst > 0 ? ZERO_ERR_CUDA : ZERO_OK;
}

static int nccl_accepts(const zero_comm_t *comm, const zero_coll_desc_t *d)
{
    /* device_path is NCCL at world size 1 too where only NCCL is allowed (zero_device_path_choose) */
    return d->mem_kind == ZERO_MEM_DEVICE && d->kind != ZERO_COLL_BARRIER &&
           d->kind != ZERO_COLL_REDUCE_SCATTER_RANGE && d->kind != ZERO_COLL_REDUCE_SCATTER_SPLIT &&
           comm->device_path == ZERO_DEVICE_PATH_NCCL;
}

/* The job's health as the progress thread sees it (it watches the
 * rendezvous while this thread waits in the NCCL set-up). */
static zero_status_t nccl_health(void *ctx, int *rank_p)
{
    zero_comm_h comm = ctx;
    int failed = atomic_load(&comm->failed);
    if (failed == 0)
        return ZERO_OK;
    *rank_p = comm->failed_rank;
    return (zero_status_t)failed;
}

/* The NCCL communicator, created on the first device call. */
static zero_status_t nccl_prepare(zero_comm_t *comm, const zero_coll_desc_t *d)
{
    int device;
    zero_nccl_t *nccl = NULL;
    zero_status_t status;
    (void)d;
    if (atomic_load(&comm->nccl) != NULL)
        return ZERO_OK;
    if (comm->nccl_create_status != ZERO_OK) {
        ZERO_LOG_ERROR("device-memory collective: the NCCL communicator could not be created on an earlier call "
                       "(%s; logged then), and is not tried again", zero_status_string(comm->nccl_create_status));
        return comm->nccl_create_status;
    }
    if (!comm->have_nccl_id) {
        if (comm->parent != NULL)   /* split_device_path: the child's rank 0 sent zeros */
            ZERO_LOG_ERROR("device-memory collective: this communicator made by zero_comm_split has no NCCL id "
                           "(its rank 0 could not make one at the split; logged there)");
        else
            ZERO_LOG_ERROR("device-memory collective: not every rank has a CUDA device, so the job has no NCCL "
                           "communicator");
        return ZERO_ERR_UNSUPPORTED;
    }
    device = zero_device_index(comm->cfg.cuda_device, comm->env.local_rank, zero_nccl_device_count());
    status = zero_nccl_create(comm->nccl_id, comm->env.rank, comm->env.size, device, agree_nccl_setup, comm,
                              comm->cfg.timeout_s, nccl_health, comm, &nccl);
    if (status == ZERO_OK)
        atomic_store(&comm->nccl, nccl);
    else
        comm->nccl_create_status = status;
    return status;
}

/* Enqueues the collective on the communication stream, in the caller's order. */
static zero_status_t nccl_submit(zero_comm_t *comm, zero_comm_request_h req, int *done_p)
{
    *done_p = 0;
    return zero_nccl_start(atomic_load(&comm->nccl), &req->desc, &req->backend_data);
}

/* Completion is the event recorded after the collective. */
static zero_status_t nccl_advance(zero_comm_t *comm, zero_comm_request_h req, double now, int *progressed_p,
                                  int *peer_p)
{
    zero_status_t status = zero_nccl_test(atomic_load(&comm->nccl), req->backend_data);
    (void)progressed_p;
    (void)peer_p;
    if (status == ZERO_INPROGRESS && now - req->started_at > comm->cfg.timeout_s) {
        ZERO_LOG_ERROR("%s #%u on device memory did not finish within %.1f s: aborting NCCL",
                       zero_coll_name(req->desc.kind), req->seq, comm->cfg.timeout_s);
        status = ZERO_ERR_TIMEOUT;
    }
    if (status != ZERO_INPROGRESS) {
        zero_nccl_event_free(req->backend_data);
        req->backend_data = NULL;
    }
    return status;
}

static void nccl_backend_abort(zero_comm_t *comm, zero_comm_request_h req)
{
    (void)comm;
    zero_nccl_event_free(req->backend_data);
    req->backend_data = NULL;
}

/* No rank may stay stuck in an NCCL kernel. */
static void nccl_fail(zero_comm_t *comm)
{
    zero_nccl_abort(atomic_load(&comm->nccl));
}

const zero_comm_backend_ops_t zero_comm_backend_nccl = {
    .name = "nccl",
    .enable_bit = ZERO_COMM_BACKEND_NCCL,
    .accepts = nccl_accepts,
    .prepare = nccl_prepare,
    .submit = nccl_submit,   /* enqueued on the stream: no start on the progress thread */
    .advance = nccl_advance,
    .abort = nccl_backend_abort,
    .fail = nccl_fail,
    .orders_on_streams = 1,   /* zero_nccl_start waits on and records the caller's events */
};
#endif /* HAVE_CUDA */
