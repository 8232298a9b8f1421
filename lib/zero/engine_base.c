/*
 * What every engine file uses: recording the engine's last error, and waiting
 * for a collective with the failure turned into the engine's FAILED state.
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_internal.h"

#include "comm/alltoall.h"
#include "comm/comm_fail.h"
#include "util/alloc.h"
#include "util/log.h"

#include <stdio.h>
#include <string.h>

void engine_error(zero_engine_h e, zero_status_t status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->last_error, sizeof(e->last_error), fmt, ap);
    va_end(ap);
    ZERO_LOG_ERROR("%s (%s)", e->last_error, zero_status_string(status));
}

/* Through a copy: the arguments may include e->last_error itself (to keep the
 * message recorded already). */
static void keep_error_v(zero_engine_h e, uint64_t mark, const char *fmt, va_list ap)
{
    char message[sizeof(e->last_error)];
    const char *detected = zero_log_error_since(mark);
    if (detected != NULL)
        snprintf(message, sizeof(message), "%s", detected);
    else
        vsnprintf(message, sizeof(message), fmt, ap);
    memcpy(e->last_error, message, sizeof(message));
}

void engine_keep_error(zero_engine_h e, uint64_t mark, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    keep_error_v(e, mark, fmt, ap);
    va_end(ap);
}

zero_status_t engine_fail(zero_engine_h e, engine_fail_cause_t cause, zero_status_t status, uint64_t mark,
                          const char *fmt, ...)
{
    int culprit;
    va_list ap;
    va_start(ap, fmt);
    keep_error_v(e, mark, fmt, ap);
    va_end(ap);
    e->state = ENGINE_FAILED;
    if (zero_comm_failure(e->comm, &culprit) != ZERO_OK && culprit >= 0) {
        /* The job failed already (another rank, or a collective): name the
         * rank, which the progress thread logged but this thread's message
         * may not say. */
        size_t len = strlen(e->last_error);
        snprintf(e->last_error + len, sizeof(e->last_error) - len, " (the job failed: rank %d)", culprit);
        return status;   /* every rank knows */
    }
    if (cause == ENGINE_FAIL_LOCAL) {
        /* The peers may be in, or about to start, a collective this rank will
         * not join: fail them now rather than at ZERO_COMM_TIMEOUT. */
        char why[sizeof(e->last_error) + 48];
        snprintf(why, sizeof(why), "the engine failed on this rank: %s", e->last_error);
        zero_comm_fail_local(e->comm, status, why);
    }
    return status;
}

/* The fence of @p req, or -1. Few collectives are in flight at once (a few
 * buckets, a stage-3 prefetch window): a linear search. */
static int find_fence(zero_engine_h e, zero_comm_request_h req)
{
    for (int i = e->num_fences - 1; i >= 0; i--)
        if (e->fences[i].req == req)
            return i;
    return -1;
}

static int grow(void **array, int *cap, size_t elem)
{
    int n = *cap ? 2 * *cap : 16;
    void *grown = zero_realloc(*array, (size_t)n * elem);
    if (grown == NULL)
        return 0;
    *array = grown;
    *cap = n;
    return 1;
}

zero_status_t engine_wait(zero_engine_h e, zero_comm_request_h *req, const char *what)
{
    zero_status_t status, local = ZERO_OK;
    uint64_t mark;
    int f;
    if (*req == NULL)
        return ZERO_OK;
    mark = zero_log_error_mark();
    f = find_fence(e, *req);
    if (f >= 0) {
        /* The stream waits; the host goes on. The request is freed once the
         * host has waited for the stream anyway (engine_settle). */
        void *done = e->fences[f].done_event;
        e->fences[f] = e->fences[--e->num_fences];
        if (e->num_settling == e->cap_settling &&
            !grow((void **)&e->settling, &e->cap_settling, sizeof(*e->settling))) {
            /* no room to defer it: wait on the host instead (correct, only slower) */
            local = e->ops->order_end(e->ops_ctx, done);
            goto host_wait;
        }
        e->settling[e->num_settling++] = *req;
        *req = NULL;
        status = e->ops->order_end(e->ops_ctx, done);
        if (status != ZERO_OK)   /* this rank's CUDA event */
            engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "%s: the engine's stream cannot wait for it", what);
        return status;
    }
host_wait:
    if (local != ZERO_OK)   /* this rank's CUDA event: fail the peers first, so the wait below ends at once */
        engine_fail(e, ENGINE_FAIL_LOCAL, local, mark, "%s: the engine's stream cannot wait for it", what);
    status = zero_comm_request_wait(*req);
    zero_comm_request_free(*req);
    *req = NULL;
    if (local != ZERO_OK)
        return local;
    if (status != ZERO_OK)   /* the collective: usually detected and logged on the progress thread */
        engine_fail(e, ENGINE_FAIL_SHARED, status, mark, "%s failed: %s", what, zero_status_string(status));
    return status;
}

zero_status_t engine_settle(zero_engine_h e)
{
    zero_status_t status = ZERO_OK;
    uint64_t mark = zero_log_error_mark();
    for (int i = 0; i < e->num_settling; i++) {
        zero_status_t st = zero_comm_request_wait(e->settling[i]);
        zero_comm_request_free(e->settling[i]);
        if (status == ZERO_OK && st != ZERO_OK)
            status = st;
    }
    e->num_settling = 0;
    if (status != ZERO_OK)   /* the collectives' own failure */
        engine_fail(e, ENGINE_FAIL_SHARED, status, mark, "a collective on device memory failed: %s",
                    zero_status_string(status));
    return status;
}

zero_status_t engine_sync(zero_engine_h e)
{
    uint64_t mark = zero_log_error_mark();
    zero_status_t status = e->ops->sync != NULL ? e->ops->sync(e->ops_ctx) : ZERO_OK;
    if (status != ZERO_OK)   /* this rank's device work */
        return engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "waiting for the device failed: %s",
                           zero_status_string(status));
    return engine_settle(e);
}

/* Fills @p order for a collective on the engine's memory (no field for kinds
 * without ordering: the plain call). */
static zero_status_t order_begin(zero_engine_h e, zero_comm_order_t *order)
{
    *order = (zero_comm_order_t)ZERO_COMM_ORDER_INIT;
    if (e->ops->order_begin == NULL)
        return ZERO_OK;
    if (e->num_fences == e->cap_fences && !grow((void **)&e->fences, &e->cap_fences, sizeof(*e->fences))) {
        ZERO_LOG_ERROR("out of memory for the ordering of a collective");
        return ZERO_ERR_NO_MEMORY;
    }
    return e->ops->order_begin(e->ops_ctx, order);
}

/* After the start: the fence is kept (started) or its event given back (failed). */
static zero_status_t order_started(zero_engine_h e, const zero_comm_order_t *order, zero_status_t status,
                                   zero_comm_request_h req)
{
    if (order->done_event == NULL)
        return status;
    if (status != ZERO_OK) {
        (void)e->ops->order_end(e->ops_ctx, order->done_event);   /* never recorded: no wait */
        return status;
    }
    e->fences[e->num_fences].req = req;   /* order_begin made the room */
    e->fences[e->num_fences].done_event = order->done_event;
    e->num_fences++;
    return ZERO_OK;
}

zero_status_t engine_allreduce_start(zero_engine_h e, void *buf, size_t count, zero_dtype_t dtype, zero_comm_op_t op,
                                     zero_comm_request_h *req_p)
{
    zero_comm_order_t order;
    zero_status_t status = order_begin(e, &order);
    if (status != ZERO_OK)
        return status;
    status = zero_comm_allreduce_start_ordered(e->comm, buf, buf, count, dtype, op, e->kind, &order, req_p);
    return order_started(e, &order, status, status == ZERO_OK ? *req_p : NULL);
}

zero_status_t engine_reduce_scatter_start(zero_engine_h e, const void *sendbuf, void *recvbuf, size_t recvcount,
                                          zero_dtype_t dtype, zero_comm_op_t op, zero_comm_request_h *req_p)
{
    zero_comm_order_t order;
    zero_status_t status = order_begin(e, &order);
    if (status != ZERO_OK)
        return status;
    status = zero_comm_reduce_scatter_start_ordered(e->comm, sendbuf, recvbuf, recvcount, dtype, op, e->kind, &order,
                                                    req_p);
    return order_started(e, &order, status, status == ZERO_OK ? *req_p : NULL);
}

/* The engine's ordered allgather over @p comm (the engine's or a split of
 * it), after @p after where not NULL (else after the engine's stream). */
static zero_status_t allgather_start_over(zero_engine_h e, zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                          size_t sendcount, zero_dtype_t dtype, void *after, zero_comm_request_h *req_p)
{
    zero_comm_order_t order;
    zero_status_t status = order_begin(e, &order);
    if (status != ZERO_OK)
        return status;
    if (after != NULL) {
        /* it follows the engine's stream already; an order without a wait
         * event (a host engine) could not wait for it: never dropped */
        if (!(order.field_mask & ZERO_COMM_ORDER_FIELD_WAIT_EVENT)) {
            ZERO_LOG_ERROR("allgather: ordered after an event, but this engine's operations order nothing on streams");
            if (order.done_event != NULL)
                (void)e->ops->order_end(e->ops_ctx, order.done_event);   /* never recorded: no wait */
            return ZERO_ERR_INTERNAL;
        }
        order.wait_event = after;
    }
    status = zero_comm_allgather_start_ordered(comm, sendbuf, recvbuf, sendcount, dtype, e->kind, &order, req_p);
    return order_started(e, &order, status, status == ZERO_OK ? *req_p : NULL);
}

zero_status_t engine_allgather_start_on(zero_engine_h e, zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                        size_t sendcount, zero_dtype_t dtype, zero_comm_request_h *req_p)
{
    return allgather_start_over(e, comm, sendbuf, recvbuf, sendcount, dtype, NULL, req_p);
}

zero_status_t engine_allgather_start_after(zero_engine_h e, const void *sendbuf, void *recvbuf, size_t sendcount,
                                           zero_dtype_t dtype, void *after, zero_comm_request_h *req_p)
{
    return allgather_start_over(e, e->comm, sendbuf, recvbuf, sendcount, dtype, after, req_p);
}

zero_status_t engine_allgather_start(zero_engine_h e, const void *sendbuf, void *recvbuf, size_t sendcount,
                                     zero_dtype_t dtype, zero_comm_request_h *req_p)
{
    return allgather_start_over(e, e->comm, sendbuf, recvbuf, sendcount, dtype, NULL, req_p);
}

zero_status_t engine_alltoall_start_on(zero_engine_h e, zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                       size_t count, zero_dtype_t dtype, zero_comm_request_h *req_p)
{
    zero_comm_order_t order;
    zero_status_t status = order_begin(e, &order);
    if (status != ZERO_OK)
        return status;
    status = zero_comm_alltoall_start_ordered(comm, sendbuf, recvbuf, count, dtype, e->kind, &order, req_p);
    return order_started(e, &order, status, status == ZERO_OK ? *req_p : NULL);
}
