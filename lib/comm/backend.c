/* The list of backends the front chooses from, and the self backend (a world of one). */
#define ZERO_LOG_MODULE "comm"
#include "comm/backend.h"
#include "comm/nccl.h"
#include "comm/staged_plan.h"
#include "util/log.h"

#include <string.h>

const zero_comm_backend_ops_t *const zero_comm_backends[] = {
    &zero_comm_backend_self,
    &zero_comm_backend_direct,   /* host memory on one node: declines unless every rank's buffers are shareable */
    &zero_comm_backend_ucx,      /* host memory: the ring */
#if HAVE_CUDA
    &zero_comm_backend_nccl,     /* device memory, one GPU per rank (comm->device_path) */
    &zero_comm_backend_staged,   /* device memory through pinned host memory: ranks that share a GPU */
#endif
    NULL,
};

const zero_comm_backend_ops_t *zero_comm_backend_select(const zero_comm_t *comm, const zero_coll_desc_t *d,
                                                        const zero_comm_backend_ops_t *after)
{
    const zero_comm_backend_ops_t *const *it = zero_comm_backends;
    if (after != NULL) {
        while (*it != NULL && *it != after)
            it++;
        if (*it != NULL)
            it++;
    }
    for (; *it != NULL; it++)
        if (((*it)->enable_bit & comm->cfg.backends) && (*it)->accepts(comm, d))
            return *it;
    return NULL;
}

zero_status_t zero_comm_backend_start(zero_comm_t *comm, zero_comm_request_h req, double now, int *peer_p)
{
    *peer_p = -1;
    while (req->backend != NULL) {
        int declined = 0;
        zero_status_t st = req->backend->start != NULL ? req->backend->start(comm, req, &declined, peer_p)
                                                       : ZERO_OK;   /* submit began it */
        if (st != ZERO_OK)
            return st;
        if (!declined) {
            req->backend_started = 1;
            req->started_at = now;
            return ZERO_OK;
        }
        req->backend = zero_comm_backend_select(comm, &req->desc, req->backend);
    }
    /* checked at start: some backend always takes a host collective */
    ZERO_LOG_ERROR("%s #%u: every backend declined it", zero_coll_name(req->desc.kind), req->seq);
    return ZERO_ERR_INTERNAL;
}

/* ---- self: a world of one; collectives are copies, done on the caller's thread ---- */

static int self_accepts(const zero_comm_t *comm, const zero_coll_desc_t *d)
{
#if HAVE_CUDA
    /* a world of one over NCCL (comm_backend "nccl"): NCCL takes what it can carry */
    if (comm->device_path == ZERO_DEVICE_PATH_NCCL && zero_comm_backend_nccl.accepts(comm, d))
        return 0;
#else
    (void)d;
#endif
    return comm->env.size == 1;
}

static zero_status_t self_submit(zero_comm_t *comm, zero_comm_request_h req, int *done_p)
{
    const zero_coll_desc_t *d = &req->desc;
    size_t bytes = d->count * zero_dtype_size(d->dtype);
    (void)comm;
    *done_p = 1;
#if HAVE_CUDA
    if (d->mem_kind == ZERO_MEM_DEVICE && d->kind != ZERO_COLL_BARRIER)
        return zero_nccl_self_copy(d->recvbuf, d->sendbuf, bytes, d->wait_event, d->done_event);
#endif
    if (d->kind == ZERO_COLL_BARRIER || d->sendbuf == d->recvbuf || bytes == 0)
        return ZERO_OK;
    memcpy(d->recvbuf, d->sendbuf, bytes);
    return ZERO_OK;
}

const zero_comm_backend_ops_t zero_comm_backend_self = {
    .name = "self",
    .enable_bit = ZERO_COMM_BACKEND_SELF,
    .accepts = self_accepts,
    .submit = self_submit,   /* completes every request: nothing is ever queued */
    .orders_on_streams = HAVE_CUDA,   /* device copies wait on and record the caller's events */
};
