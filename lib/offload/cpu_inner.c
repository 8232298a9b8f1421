/* CPU offload's inner store and the step of one slot against it (see cpu_inner.h). */
#define ZERO_LOG_MODULE "offload"
#include "offload/cpu_inner.h"
#include "util/clock.h"
#include "util/log.h"

#include <string.h>

zero_status_t zero_cpu_inner_init(zero_cpu_inner_t *in, zero_store_t *store, const zero_optim_ctx_t *optim)
{
    memset(in, 0, sizeof(*in));
    if (store->desc.kind != ZERO_MEM_HOST) {
        /* the CPU kernels and the slots are host memory */
        ZERO_LOG_ERROR("cpu offload store: the offloaded state must be in host memory, not %s",
                       zero_mem_kind_string(store->desc.kind));
        zero_store_destroy(store);
        return ZERO_ERR_INVALID_ARG;
    }
    pthread_mutex_init(&in->lock, NULL);
    in->store = store;
    in->optim = optim;
    return ZERO_OK;
}

void zero_cpu_inner_fini(zero_cpu_inner_t *in)
{
    if (in->store == NULL)
        return;
    zero_store_destroy(in->store);
    zero_store_destroy(in->undo);
    pthread_mutex_destroy(&in->lock);
    memset(in, 0, sizeof(*in));
}

zero_status_t zero_cpu_inner_acquire(zero_cpu_inner_t *in, zero_store_range_t *range)
{
    zero_status_t status;
    pthread_mutex_lock(&in->lock);
    status = zero_store_acquire(in->store, range);
    pthread_mutex_unlock(&in->lock);
    return status;
}

zero_status_t zero_cpu_inner_release(zero_cpu_inner_t *in, zero_store_range_t *range, int dirty)
{
    zero_status_t status;
    pthread_mutex_lock(&in->lock);
    status = zero_store_release(in->store, range, dirty);
    pthread_mutex_unlock(&in->lock);
    return status;
}

zero_status_t zero_cpu_inner_prefetch(zero_cpu_inner_t *in, int group, size_t begin, size_t count)
{
    zero_status_t status;
    pthread_mutex_lock(&in->lock);
    status = zero_store_prefetch(in->store, group, begin, count, zero_store_fields(in->store));
    pthread_mutex_unlock(&in->lock);
    return status;
}

zero_status_t zero_cpu_inner_flush(zero_cpu_inner_t *in)
{
    zero_status_t status;
    pthread_mutex_lock(&in->lock);
    status = zero_store_flush(in->store);
    pthread_mutex_unlock(&in->lock);
    return status;
}

zero_status_t zero_cpu_inner_prepare_undo(zero_cpu_inner_t *in)
{
    zero_status_t status = ZERO_OK;
    pthread_mutex_lock(&in->lock);
    if (zero_store_prefers_step(in->store)) {
        ZERO_LOG_ERROR("cpu offload store: undoable steps (offload_optimizer.overlap_step) need the state in this "
                       "process; the %s store keeps it elsewhere", in->store->ops->name);
        status = ZERO_ERR_UNSUPPORTED;
    } else if (in->undo == NULL) {
        status = zero_store_host_create(&in->store->desc, &in->undo);
    }
    pthread_mutex_unlock(&in->lock);
    return status;
}

/* The step op of a store that prefers it, on the slot in place: the slot is
 * the gradient and the weights (cpu_inner.h says why that is safe). */
static zero_status_t step_in_place(zero_cpu_inner_t *in, const zero_store_async_step_t *st, void *slot)
{
    zero_store_async_step_t s = *st;
    zero_status_t status;
    s.grad = slot;
    s.weights = slot;
    s.weights_on_host = 0;
    status = zero_store_step_async(in->store, &s);
    /* waited for even after a failed submit: the messages already sent must
     * finish (or be abandoned) before the slot is reused */
    {
        zero_status_t st2 = zero_store_step_wait(in->store);
        if (status == ZERO_OK)
            status = st2;
    }
    return status;
}

/* The CPU kernel on the acquired range: 16-bit gradients in the slot, 16-bit
 * weights written over them; fp32: the gradient in, the new master copied out. */
static zero_status_t step_kernel(zero_cpu_inner_t *in, const zero_store_async_step_t *st, void *slot)
{
    zero_store_range_t r = {.group = st->group, .begin = st->begin, .count = st->count,
                            .fields = zero_store_fields(in->store)};
    zero_status_t status = zero_store_acquire(in->store, &r), rel;
    if (status != ZERO_OK)
        return status;
    if (st->undoable) {
        /* what the update overwrites, for step_cancel (the overlap mode) */
        zero_store_range_t u = r;
        if (in->undo == NULL) {
            ZERO_LOG_ERROR("cpu offload store: an undoable step of [%zu, +%zu) without the undo copy", st->begin,
                           st->count);
            status = ZERO_ERR_STATE;
        } else if ((status = zero_store_acquire(in->undo, &u)) == ZERO_OK) {
            for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
                if (u.data[f] != NULL)
                    memcpy(u.data[f], r.data[f], st->count * sizeof(float));
            status = zero_store_release(in->undo, &u, 1);
        }
        if (status != ZERO_OK) {
            (void)zero_store_release(in->store, &r, 0);
            return status;
        }
    }
    if (st->grad_dtype != ZERO_FP32)
        status = zero_store_run_kernel_g16(in->optim, st, r.data[ZERO_STORE_MASTER], slot,
                                           zero_optim_w16_of(st->grad_dtype), r.data[ZERO_STORE_STATE1],
                                           r.data[ZERO_STORE_STATE2], slot, zero_optim_w16_of(st->weight_dtype),
                                           st->count);
    else
        status = zero_store_run_kernel(in->optim, st, r.data[ZERO_STORE_MASTER], slot, r.data[ZERO_STORE_STATE1],
                                       r.data[ZERO_STORE_STATE2], NULL, ZERO_OPTIM_W16_NONE, st->count);
    if (status == ZERO_OK && st->weight_dtype == ZERO_FP32)
        memcpy(slot, r.data[ZERO_STORE_MASTER], st->count * sizeof(float));
    rel = zero_store_release(in->store, &r, 1);
    return status != ZERO_OK ? status : rel;
}

zero_status_t zero_cpu_inner_step(zero_cpu_inner_t *in, const zero_store_async_step_t *st, void *slot,
                                  double *busy_s)
{
    double t0 = zero_clock_now();
    zero_status_t status;
    pthread_mutex_lock(&in->lock);
    if (zero_store_prefers_step(in->store)) {
        if (st->undoable) {   /* prepare_undo refuses this; a guard for a caller that skipped it */
            ZERO_LOG_ERROR("cpu offload store: an undoable step on the %s store", in->store->ops->name);
            status = ZERO_ERR_UNSUPPORTED;
        } else {
            status = step_in_place(in, st, slot);
        }
    } else {
        status = step_kernel(in, st, slot);
    }
    pthread_mutex_unlock(&in->lock);
    if (busy_s != NULL)
        *busy_s += zero_clock_now() - t0;
    return status;
}

zero_status_t zero_cpu_inner_undo(zero_cpu_inner_t *in, const zero_store_async_step_t *st, void *slot)
{
    zero_store_range_t r = {.group = st->group, .begin = st->begin, .count = st->count,
                            .fields = zero_store_fields(in->store)};
    zero_store_range_t u = r;
    zero_status_t status, rel;
    if (!st->undoable || in->undo == NULL) {
        ZERO_LOG_ERROR("cpu offload store: cannot undo a step of [%zu, +%zu) submitted without undo", st->begin,
                       st->count);
        return ZERO_ERR_STATE;
    }
    pthread_mutex_lock(&in->lock);
    if ((status = zero_store_acquire(in->store, &r)) != ZERO_OK)
        goto out;
    if ((status = zero_store_acquire(in->undo, &u)) == ZERO_OK) {
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
            if (r.data[f] != NULL)
                memcpy(r.data[f], u.data[f], st->count * sizeof(float));
        if (st->weight_dtype == ZERO_FP32)
            memcpy(slot, r.data[ZERO_STORE_MASTER], st->count * sizeof(float));
        else
            status = zero_optim_to_16(in->optim, zero_optim_w16_of(st->weight_dtype), slot,
                                      r.data[ZERO_STORE_MASTER], st->count);
        (void)zero_store_release(in->undo, &u, 0);
    }
    rel = zero_store_release(in->store, &r, 1);
    if (status == ZERO_OK)
        status = rel;
out:
    pthread_mutex_unlock(&in->lock);
    return status;
}
