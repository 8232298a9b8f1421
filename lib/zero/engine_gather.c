/*
 * Stage 3: full weights only between gather and release. Each parameter is a
 * bucket of its own (padded to W x 64 elements), so gathering a parameter is one
 * allgather of every rank's slice. The order of gathers in the first
 * micro-batch is recorded; afterwards each gather starts the allgathers of the
 * parameters that follow it in that order (up to stage3_prefetch_bucket_size
 * elements, within stage3_max_live_parameters), so they overlap the trainer's
 * compute. Every rank makes the same calls, so every rank starts the same
 * collectives in the same order.
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_internal.h"

#include "util/alloc.h"
#include "util/log.h"

#include <string.h>

static size_t bucket_bytes(zero_engine_h e, int b)
{
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    return bk->length * dtype_bytes(e->layout->groups[bk->group].dtype);
}

zero_status_t engine_gather_bucket_start(zero_engine_h e, int b)
{
    bucket_state_t *bs = &e->buckets[b];
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    group_state_t *g = &e->groups[bk->group];
    size_t esz = dtype_bytes(g->dtype), slice = bk->length / (size_t)e->world;
    zero_status_t status;

    if (bs->gathered != NULL)
        return ZERO_OK;   /* present or in flight */
    status = engine_alloc(e, &e->mem.buffers, bucket_bytes(e, b), "stage-3 gathered weights", &bs->gathered);
    if (status != ZERO_OK)
        return status;
    status = zero_comm_allgather_start(e->comm, (const char *)g->params_shard + zero_layout_bucket_shard_offset(e->layout, b) * esz,
                                       bs->gathered, slice, g->dtype, e->kind, &bs->gather_req);
    if (status != ZERO_OK) {
        engine_free(e, &e->mem.buffers, bucket_bytes(e, b), bs->gathered);
        bs->gathered = NULL;
        e->state = ENGINE_FAILED;
        engine_error(e, status, "allgather of %s failed to start", e->params[bk->first_param]->name);
        return status;
    }
    e->live_elements += bk->length;
    return ZERO_OK;
}

zero_status_t engine_gather_bucket_finish(zero_engine_h e, int b)
{
    return engine_wait(e, &e->buckets[b].gather_req, "stage-3 allgather");
}

static void free_bucket(zero_engine_h e, int b)
{
    bucket_state_t *bs = &e->buckets[b];
    if (bs->gather_req != NULL)
        engine_gather_bucket_finish(e, b);
    if (bs->gathered != NULL)
        e->live_elements -= e->layout->buckets[b].length;
    engine_free(e, &e->mem.buffers, bucket_bytes(e, b), bs->gathered);
    bs->gathered = NULL;
}

void engine_gather_drop_all(zero_engine_h e)
{
    for (int i = 0; i < e->num_params; i++) {
        struct zero_param *p = e->params[i];
        int b = e->layout->params[i].bucket;
        if (e->buckets[b].gathered != NULL)
            free_bucket(e, b);
        p->data = NULL;
        p->gather_count = 0;
    }
}

static void trace_record(zero_engine_h e, int index)
{
    if (e->trace_done)
        return;
    if (e->trace_len == e->trace_cap) {
        size_t cap = e->trace_cap ? e->trace_cap * 2 : 64;
        int *grown = zero_realloc(e->trace, cap * sizeof(int));
        if (grown == NULL)
            return;   /* prefetch is an optimisation: without a trace, gathers stay on demand */
        e->trace = grown;
        e->trace_cap = cap;
    }
    e->trace[e->trace_len++] = index;
}

/* Starts allgathers of the parameters that follow @p last in the recorded order. */
static zero_status_t prefetch_after(zero_engine_h e, int last)
{
    const zero_config_zero_t *z = &e->config->zero_optimization;
    uint64_t budget = z->stage3_prefetch_bucket_size, live = e->live_elements;
    size_t pos = e->trace_pos;
    if (!e->trace_done || e->trace_len == 0 || budget == 0)
        return ZERO_OK;
    /* find @p last at or after the cursor (the order repeats every micro-batch) */
    for (size_t k = 0; k < e->trace_len; k++) {
        size_t at = (pos + k) % e->trace_len;
        if (e->trace[at] == last) {
            pos = at;
            break;
        }
    }
    e->trace_pos = (pos + 1) % e->trace_len;
    /* The window ahead is bounded by the budget, counting what is already gathered or in flight. */
    for (size_t k = 1; k < e->trace_len; k++) {
        int next = e->trace[(pos + k) % e->trace_len];
        int b = e->layout->params[next].bucket;
        uint64_t len = e->layout->buckets[b].length;
        zero_status_t status;
        if (len > budget)
            break;
        budget -= len;
        if (e->buckets[b].gathered != NULL)
            continue;
        if (live + len > z->stage3_max_live_parameters)
            break;
        status = engine_gather_bucket_start(e, b);
        if (status != ZERO_OK)
            return status;
        live += len;
    }
    return ZERO_OK;
}

static zero_status_t check_params(zero_engine_h e, const zero_param_h *params, size_t count, const char *call)
{
    if (e == NULL || (count > 0 && params == NULL))
        return ZERO_ERR_INVALID_ARG;
    for (size_t i = 0; i < count; i++) {
        if (params[i] == NULL || params[i]->engine != e) {
            engine_error(e, ZERO_ERR_INVALID_ARG, "%s: entry %zu is not a parameter of this engine", call, i);
            return ZERO_ERR_INVALID_ARG;
        }
    }
    if (e->state == ENGINE_REGISTERING || e->state == ENGINE_FAILED) {
        engine_error(e, ZERO_ERR_STATE, "%s: %s", call,
                     e->state == ENGINE_FAILED ? "the engine failed earlier; destroy it" : "call zero_engine_setup first");
        return ZERO_ERR_STATE;
    }
    return ZERO_OK;
}

zero_status_t zero_gather(zero_engine_h e, const zero_param_h *params, size_t count)
{
    zero_status_t status = check_params(e, params, count, "zero_gather");
    double t0;
    if (status != ZERO_OK || e->stage < 3)
        return status;
    t0 = zero_clock_now();
    for (size_t i = 0; i < count && status == ZERO_OK; i++) {
        struct zero_param *p = params[i];
        int b = e->layout->params[p->index].bucket;
        trace_record(e, p->index);
        if (p->gather_count > 0 || e->buckets[b].gathered != NULL)
            continue;
        if (e->live_elements + e->layout->buckets[b].length > e->config->zero_optimization.stage3_max_live_parameters)
            ZERO_LOG_DEBUG("gathering %s exceeds stage3_max_live_parameters; gathered on demand", p->name);
        status = engine_gather_bucket_start(e, b);
    }
    for (size_t i = 0; i < count && status == ZERO_OK; i++) {
        struct zero_param *p = params[i];
        int b = e->layout->params[p->index].bucket;
        status = engine_gather_bucket_finish(e, b);
        if (status == ZERO_OK) {
            p->data = e->buckets[b].gathered;
            p->gather_count++;
        }
    }
    if (status == ZERO_OK && count > 0)
        status = prefetch_after(e, params[count - 1]->index);
    e->timers.gather += zero_clock_now() - t0;
    return status;
}

zero_status_t zero_release(zero_engine_h e, const zero_param_h *params, size_t count)
{
    zero_status_t status = check_params(e, params, count, "zero_release");
    if (status != ZERO_OK || e->stage < 3)
        return status;
    for (size_t i = 0; i < count; i++) {
        struct zero_param *p = params[i];
        if (p->gather_count == 0) {
            engine_error(e, ZERO_ERR_STATE, "zero_release(%s): not gathered", p->name);
            return ZERO_ERR_STATE;
        }
    }
    for (size_t i = 0; i < count; i++) {
        struct zero_param *p = params[i];
        if (--p->gather_count > 0 || p->persistent)
            continue;
        free_bucket(e, e->layout->params[p->index].bucket);
        p->data = NULL;
    }
    return ZERO_OK;
}
