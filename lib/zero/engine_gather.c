/*
 * Stage 3: full weights only between gather and release. Each parameter is a
 * bucket of its own (padded to W x 64 elements), so gathering a parameter is one
 * allgather of every rank's slice. The order of gathers in the first
 * micro-batch is recorded; afterwards each gather starts the allgathers of the
 * parameters that follow it in that order (up to stage3_prefetch_bucket_size
 * elements, within stage3_max_live_parameters), so they overlap the trainer's
 * compute. Every rank makes the same calls, so every rank starts the same
 * collectives in the same order.
 *
 * Gathered weights live in the gather pool (engine_pool.c), whose pages are
 * backed once and reused, or, for parameters under
 * stage3_param_persistence_threshold, in their own slot of a region held from
 * setup. A gather on demand that finds the pool full gets a one-off buffer
 * (warned once); a prefetch that finds it full just stops.
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_gather.h"

#include "util/alloc.h"
#include "util/log.h"

#include <string.h>

static size_t bucket_bytes(zero_engine_h e, int b)
{
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    return bk->length * dtype_bytes(e->layout->groups[bk->group].dtype);
}

static void free_bucket(zero_engine_h e, int b);

/* Drops released weights kept for reuse (zero_release) until @p len more
 * elements fit within stage3_max_live_parameters and the gather pool has a
 * block of @p bytes, or nothing kept is left. */
static void make_room(zero_engine_h e, uint64_t len, size_t bytes)
{
    uint64_t max_live = e->config->zero_optimization.stage3_max_live_parameters;
    for (int b = 0; b < e->layout->num_buckets; b++) {
        int fits = e->live_elements + len <= max_live;
        for (int k = 0; fits && k < e->gather_pool.num_free; k++)
            if (e->gather_pool.free[k].length >= bytes)
                return;
        if (e->buckets[b].cached)
            free_bucket(e, b);
    }
}

/* A home for bucket @p b's full weights: its persistent slot, a pool block,
 * or (on demand only) a one-off buffer when the pool has no room; NULL with
 * ZERO_OK when a prefetch finds the pool full. */
static zero_status_t gathered_buffer(zero_engine_h e, int b, int prefetch)
{
    bucket_state_t *bs = &e->buckets[b];
    zero_status_t status;
    if (bs->persistent_slot != NULL) {
        bs->gathered = bs->persistent_slot;
        bs->gathered_source = GATHERED_PERSISTENT;
        return ZERO_OK;
    }
    make_room(e, e->layout->buckets[b].length, bucket_bytes(e, b));
    bs->gathered = engine_pool_get(e, &e->gather_pool, bucket_bytes(e, b));
    if (bs->gathered != NULL) {
        bs->gathered_source = GATHERED_POOL;
        return ZERO_OK;
    }
    if (prefetch)
        return ZERO_OK;
    if (!e->pool_overflow_warned) {
        e->pool_overflow_warned = 1;
        ZERO_LOG_WARN("gathering %s: the gather pool (%zu bytes, stage3_max_live_parameters) has no room for %zu "
                      "bytes more; such gathers allocate and free their own buffer (slow: raise "
                      "stage3_max_live_parameters or gather less at once)",
                      e->params[e->layout->buckets[b].first_param]->name, e->gather_pool.capacity, bucket_bytes(e, b));
    }
    status = engine_alloc(e, &e->mem.buffers, bucket_bytes(e, b), "stage-3 gathered weights", &bs->gathered);
    if (status != ZERO_OK)
        return status;
    bs->gathered_source = GATHERED_ONE_OFF;
    return ZERO_OK;
}

static void drop_buffer(zero_engine_h e, int b)
{
    bucket_state_t *bs = &e->buckets[b];
    if (bs->gathered_source == GATHERED_POOL)
        engine_pool_put(e, &e->gather_pool, bs->gathered, bucket_bytes(e, b));
    else if (bs->gathered_source == GATHERED_ONE_OFF)
        engine_free(e, &e->mem.buffers, bucket_bytes(e, b), bs->gathered);
    bs->gathered = NULL;
    bs->gathered_source = GATHERED_NONE;
    bs->cached = 0;
}

/* Starts the allgather of bucket @p b; a prefetch (@p prefetch) that finds no
 * room in the pool starts nothing (and returns ZERO_OK). */
static zero_status_t gather_bucket_start(zero_engine_h e, int b, int prefetch)
{
    bucket_state_t *bs = &e->buckets[b];
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    group_state_t *g = &e->groups[bk->group];
    size_t esz = dtype_bytes(g->dtype), slice = bk->length / (size_t)e->world;
    zero_status_t status;
    uint64_t mark;

    if (bs->gathered != NULL)
        return ZERO_OK;   /* present or in flight */
    status = gathered_buffer(e, b, prefetch);
    if (status != ZERO_OK || bs->gathered == NULL)
        return status;
    mark = zero_log_error_mark();
    status = engine_allgather_start(e, (const char *)g->params_shard + zero_layout_bucket_shard_offset(e->layout, b) * esz,
                                    bs->gathered, slice, g->dtype, &bs->gather_req);
    if (status != ZERO_OK) {
        drop_buffer(e, b);
        e->state = ENGINE_FAILED;
        engine_keep_error(e, mark, "allgather of %s failed to start: %s", e->params[bk->first_param]->name,
                          zero_status_string(status));
        return status;
    }
    e->live_elements += bk->length;
    return ZERO_OK;
}

zero_status_t engine_gather_bucket_start(zero_engine_h e, int b)
{
    return gather_bucket_start(e, b, 0);
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
    drop_buffer(e, b);
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
        /* The trace wraps to the next micro-batch; when this one ends in an
         * update, the step drops every gather (it rewrites the shards), so
         * gathering across it would be wasted work. */
        if (pos + k >= e->trace_len && e->window_micro == e->gas - 1)
            break;
        if (len > budget)
            break;
        budget -= len;
        if (e->buckets[b].gathered != NULL)
            continue;
        if (live + len > z->stage3_max_live_parameters) {
            make_room(e, len, bucket_bytes(e, b));
            live = e->live_elements;
            if (live + len > z->stage3_max_live_parameters)
                break;
        }
        status = gather_bucket_start(e, b, 1);
        if (status != ZERO_OK)
            return status;
        if (e->buckets[b].gathered == NULL)
            break;   /* the pool is full: the rest waits for releases */
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
            e->buckets[b].cached = 0;
        }
    }
    if (status == ZERO_OK && count > 0)
        status = prefetch_after(e, params[count - 1]->index);
    e->timers.gather += zero_clock_now() - t0;
    return status;
}

/* Whether parameter @p index is gathered again, by the recorded order, before
 * stage3_max_reuse_distance elements of other gathers (DeepSpeed's rule), in
 * this accumulation window (the update drops every gather), while the live
 * elements are within stage3_max_live_parameters: then release keeps its
 * weights (layer by layer, the backward finds the forward's layers still
 * there when memory allows). */
static int reused_soon(zero_engine_h e, int index)
{
    const zero_config_zero_t *z = &e->config->zero_optimization;
    uint64_t distance = 0;
    if (!e->trace_done || e->trace_len == 0 || e->live_elements > z->stage3_max_live_parameters)
        return 0;
    for (size_t k = 0; k < e->trace_len; k++) {
        size_t at = e->trace_pos + k;
        int next;
        if (at >= e->trace_len) {
            if (e->window_micro == e->gas - 1)
                return 0;
            at -= e->trace_len;
        }
        next = e->trace[at];
        if (next == index)
            return 1;
        distance += e->layout->buckets[e->layout->params[next].bucket].length;
        if (distance > z->stage3_max_reuse_distance)
            return 0;
    }
    return 0;
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
        int b = e->layout->params[p->index].bucket;
        if (--p->gather_count > 0 || p->persistent)
            continue;
        p->data = NULL;
        if (reused_soon(e, p->index))
            e->buckets[b].cached = 1;   /* dropped by make_room when its room is needed */
        else
            free_bucket(e, b);
    }
    return ZERO_OK;
}
