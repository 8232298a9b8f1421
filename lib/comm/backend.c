/* The list of backends the front chooses from, and the self backend (a world of one). */
#define ZERO_LOG_MODULE "comm"
#include "comm/backend.h"
#include "comm/nccl.h"

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

/* ---- self: a world of one; collectives are copies, done on the caller's thread ---- */

static int self_accepts(const zero_comm_t *comm, const zero_coll_desc_t *d)
{
    (void)d;
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
