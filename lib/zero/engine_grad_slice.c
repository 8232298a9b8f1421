/*
 * Stage 3's gradient slices: a trainer that computes one layer's gradient of
 * a stacked tensor at a time hands it over rows by rows
 * (zero_param_grad_slice, zero_grad_slice_ready), so stage 3 never holds the
 * full gradient of such a tensor, only the slices open or in flight.
 *
 * The layout keeps a parameter whole in one bucket, and rank r owns a
 * contiguous 1/W of it, so a slice's rows belong to one or a few ranks. Its
 * gradient is averaged by a reduce-scatter of the slice's range of the
 * bucket (comm/reduce_range.h), in place on the slice's buffer: only the
 * ranks that own some of its rows receive, each its own part, which it adds
 * into its gradient shard with the same accumulate operation as a whole
 * bucket's reduction. The communicator sums each element in the same order
 * as the whole bucket's reduce-scatter, so the result is bit for bit the
 * same at every world size.
 *
 * Buffers come from the stage-3 gradient pool (one-off buffers past it, as
 * for buckets); at most ZERO_ENGINE_MAX_REDUCTIONS slices reduce at once, so
 * the gradient memory a layer-by-layer backward holds is a few slices.
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_grad_slice.h"
#include "zero/engine_gather.h"
#include "comm/reduce_range.h"

#include "util/alloc.h"
#include "util/log.h"

#include <inttypes.h>
#include <string.h>

zero_status_t engine_rows_prepare(zero_engine_h e, struct zero_param *p, const char *call)
{
    uint64_t now = e->micro_steps + 1;
    if (p->rows_ready == NULL) {
        p->rows_ready = zero_calloc((size_t)p->shape[0], 1);
        if (p->rows_ready == NULL) {
            engine_error(e, ZERO_ERR_NO_MEMORY, "%s(%s): out of memory for its record of ready rows", call, p->name);
            return ZERO_ERR_NO_MEMORY;
        }
        p->rows_micro = 0;
    }
    if (p->rows_micro != now) {
        memset(p->rows_ready, 0, (size_t)p->shape[0]);
        p->rows_micro = now;
        p->rows_ready_count = 0;
        p->grad_in_slices = 0;
    }
    return ZERO_OK;
}

int64_t engine_rows_first_ready(const struct zero_param *p, int64_t first, int64_t count)
{
    for (int64_t i = first; i < first + count; i++)
        if (p->rows_ready[i])
            return i;
    return -1;
}

void engine_rows_mark(struct zero_param *p, int64_t first, int64_t count)
{
    memset(p->rows_ready + first, 1, (size_t)count);
    p->rows_ready_count += count;
}

/* The open (not yet handed over) slot of exactly these rows, or -1. */
static int find_open(zero_engine_h e, int param, int64_t first, int64_t count)
{
    for (int s = 0; s < e->num_grad_slices; s++) {
        const engine_grad_slice_t *g = &e->grad_slices[s];
        if (g->param == param && !g->reducing && g->first == first && g->count == count)
            return s;
    }
    return -1;
}

/* An open slot overlapping the rows without being them, or -1. */
static int find_open_overlap(zero_engine_h e, int param, int64_t first, int64_t count)
{
    for (int s = 0; s < e->num_grad_slices; s++) {
        const engine_grad_slice_t *g = &e->grad_slices[s];
        if (g->param == param && !g->reducing && !(g->first == first && g->count == count) &&
            g->first < first + count && first < g->first + g->count)
            return s;
    }
    return -1;
}

static int grad_slot(zero_engine_h e)
{
    engine_grad_slice_t *grown;
    for (int s = 0; s < e->num_grad_slices; s++)
        if (e->grad_slices[s].param < 0)
            return s;
    grown = zero_realloc(e->grad_slices, ((size_t)e->num_grad_slices + 1) * sizeof(*grown));
    if (grown == NULL)
        return -1;
    e->grad_slices = grown;
    memset(&grown[e->num_grad_slices], 0, sizeof(*grown));
    grown[e->num_grad_slices].param = -1;
    return e->num_grad_slices++;
}

static void put_buffer(zero_engine_h e, engine_grad_slice_t *g)
{
    if (g->buf != NULL) {
        if (g->one_off)
            engine_free(e, &e->mem.buffers, g->bytes, g->buf);
        else
            engine_pool_put(e, &e->grad_pool, g->buf, g->bytes);
    }
    g->buf = NULL;
    g->one_off = 0;
    g->reducing = 0;
    g->param = -1;
}

static void *open_slot(zero_engine_h e, struct zero_param *p, int64_t first, int64_t count)
{
    size_t bytes = (size_t)count * engine_row_elems(p) * dtype_bytes(p->dtype);
    engine_grad_slice_t *g;
    int s = grad_slot(e);
    if (s < 0) {
        /* This rank's memory: the other ranks will reduce this slice and wait
         * for this rank's share, so the engine fails and tells them. */
        (void)engine_fail(e, ENGINE_FAIL_LOCAL, ZERO_ERR_NO_MEMORY, zero_log_error_mark(),
                          "gradient of %s rows [%" PRId64 ", %" PRId64 "): out of memory for its record", p->name,
                          first, first + count);
        return NULL;
    }
    g = &e->grad_slices[s];
    g->buf = engine_pool_get(e, &e->grad_pool, bytes);
    g->one_off = 0;
    if (g->buf == NULL) {
        if (!e->pool_overflow_warned) {
            e->pool_overflow_warned = 1;
            ZERO_LOG_WARN("gradient of %s rows [%" PRId64 ", %" PRId64 "): the gradient pool (%zu bytes) has no room "
                          "for %zu bytes more; such gradients allocate and free their own buffer (slow: hand slices "
                          "over as the backward produces them)",
                          p->name, first, first + count, e->grad_pool.capacity, bytes);
        }
        zero_status_t status = engine_alloc(e, &e->mem.buffers, bytes, "stage-3 gradient slice", &g->buf);
        if (status != ZERO_OK) {   /* as for the record above (engine_alloc recorded why) */
            (void)engine_fail(e, ENGINE_FAIL_LOCAL, status, zero_log_error_mark(), "%s", e->last_error);
            return NULL;
        }
        g->one_off = 1;
    }
    engine_zero(e, g->buf, bytes);
    g->param = p->index;
    g->first = first;
    g->count = count;
    g->bytes = bytes;
    g->reducing = 0;
    g->opened = e->grad_slice_seq++;
    g->req = NULL;
    /* The parameter's gradient now goes in slices for this micro-batch: the
     * backward's end does not reduce its bucket, and zero_param_grad() and
     * zero_grad_ready() refuse it (it counts as marked). */
    p->grad_in_slices = 1;
    p->ready = 1;
    e->buckets[e->layout->params[p->index].bucket].reduced = 1;
    return g->buf;
}

void *engine_grad_slice_open(zero_engine_h e, struct zero_param *p, int64_t first, int64_t count)
{
    int s = find_open(e, p->index, first, count), o;
    if (s >= 0)
        return e->grad_slices[s].buf;
    o = find_open_overlap(e, p->index, first, count);
    if (o >= 0) {
        engine_error(e, ZERO_ERR_STATE,
                     "gradient of %s rows [%" PRId64 ", %" PRId64 "): overlaps the open slice of rows [%" PRId64
                     ", %" PRId64 "); declare it ready first, or use the same rows",
                     p->name, first, first + count, e->grad_slices[o].first,
                     e->grad_slices[o].first + e->grad_slices[o].count);
        return NULL;
    }
    return open_slot(e, p, first, count);
}

/* Slot @p g's rows as elements [*a_p, *z_p) of its bucket, where this rank's
 * part of them starts (*lo_p; at most *z_p), and the bucket's shard length. */
static void slot_window(zero_engine_h e, const engine_grad_slice_t *g, size_t *a_p, size_t *z_p, size_t *lo_p,
                        size_t *shard_p)
{
    const struct zero_param *p = e->params[g->param];
    const zero_layout_param_t *lp = &e->layout->params[g->param];
    const zero_layout_bucket_t *bk = &e->layout->buckets[lp->bucket];
    size_t row = engine_row_elems(p), shard = bk->length / (size_t)e->own_world;
    size_t a = lp->offset - bk->offset + (size_t)g->first * row, z = a + (size_t)g->count * row;
    size_t own_lo = (size_t)e->own_rank * shard, lo = a > own_lo ? a : own_lo;
    *a_p = a;
    *z_p = z;
    *lo_p = lo < z ? lo : z;
    *shard_p = shard;
}

/* Waits for slot @p s's reduce-scatter and adds this rank's part into its gradient shard. */
static zero_status_t finish_slot(zero_engine_h e, int s)
{
    engine_grad_slice_t *g = &e->grad_slices[s];
    struct zero_param *p = e->params[g->param];
    const zero_layout_param_t *lp = &e->layout->params[g->param];
    group_state_t *gs = &e->groups[lp->group];
    size_t esz = dtype_bytes(p->dtype), a, z, lo, shard;
    size_t own_lo, own_hi, hi;
    zero_status_t status = engine_wait(e, &g->req, "gradient slice reduce-scatter");
    slot_window(e, g, &a, &z, &lo, &shard);
    own_lo = (size_t)e->own_rank * shard;
    own_hi = own_lo + shard;
    hi = z < own_hi ? z : own_hi;
    if (status == ZERO_OK && lo < hi) {
        uint64_t mark = zero_log_error_mark();
        status = e->ops->accumulate(e->ops_ctx, p->dtype,
                                    (char *)gs->grad_shard +
                                        (zero_layout_bucket_shard_offset(e->layout, lp->bucket) + lo - own_lo) * esz,
                                    (char *)g->buf + (lo - a) * esz, hi - lo);
        if (status != ZERO_OK)   /* this rank's kernel */
            engine_fail(e, ENGINE_FAIL_LOCAL, status, mark,
                        "adding the averaged gradient of %s rows [%" PRId64 ", %" PRId64 ") failed", p->name, g->first,
                        g->first + g->count);
    }
    put_buffer(e, g);
    return status;
}

/* The slot handed over first among those reducing, or -1. */
static int oldest_reducing(zero_engine_h e, int *in_flight_p)
{
    int best = -1, n = 0;
    for (int s = 0; s < e->num_grad_slices; s++) {
        const engine_grad_slice_t *g = &e->grad_slices[s];
        if (g->param < 0 || !g->reducing)
            continue;
        n++;
        if (best < 0 || g->started < e->grad_slices[best].started)
            best = s;
    }
    if (in_flight_p)
        *in_flight_p = n;
    return best;
}

/* Finishes reductions, the oldest first: those complete, and the oldest while
 * more than ZERO_ENGINE_MAX_REDUCTIONS are in flight (@p all: every one). */
static zero_status_t reap(zero_engine_h e, int all)
{
    int n, s;
    while ((s = oldest_reducing(e, &n)) >= 0) {
        zero_status_t status;
        if (!all && n <= ZERO_ENGINE_MAX_REDUCTIONS && zero_comm_request_test(e->grad_slices[s].req) == ZERO_INPROGRESS)
            break;
        status = finish_slot(e, s);
        if (status != ZERO_OK)
            return status;
    }
    return ZERO_OK;
}

static zero_status_t start_slot(zero_engine_h e, int s)
{
    engine_grad_slice_t *g = &e->grad_slices[s];
    struct zero_param *p = e->params[g->param];
    uint64_t mark = zero_log_error_mark();
    size_t a, lo, z, shard;
    zero_status_t status;
    g->reducing = 1;
    g->started = e->grad_slice_seq++;
    slot_window(e, g, &a, &z, &lo, &shard);
    /* In place: this rank's part of the average lands where finish_slot() reads it. */
    status = zero_comm_reduce_scatter_range_start(e->comm, g->buf, (char *)g->buf + (lo - a) * dtype_bytes(p->dtype),
                                                  a, z - a, shard, p->dtype, ZERO_COMM_AVG, &g->req);
    if (status != ZERO_OK) {   /* not started on this rank: the others would wait for it */
        engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "reduce-scatter of the gradient of %s rows [%" PRId64 ", %"
                    PRId64 ") failed to start: %s", p->name, g->first, g->first + g->count,
                    zero_status_string(status));
        g->req = NULL;
        put_buffer(e, g);
        return status;
    }
    return reap(e, 0);
}

zero_status_t engine_grad_slice_hand_over(zero_engine_h e, struct zero_param *p, int64_t first, int64_t count)
{
    int s = find_open(e, p->index, first, count);
    if (s < 0) {
        int o = find_open_overlap(e, p->index, first, count);
        if (o >= 0) {
            engine_error(e, ZERO_ERR_STATE,
                         "zero_grad_slice_ready(%s, rows [%" PRId64 ", %" PRId64 ")): overlaps the open slice of rows [%"
                         PRId64 ", %" PRId64 ") without being it (declare the rows that zero_param_grad_slice opened)",
                         p->name, first, first + count, e->grad_slices[o].first,
                         e->grad_slices[o].first + e->grad_slices[o].count);
            return ZERO_ERR_STATE;
        }
        /* The trainer wrote nothing for these rows: a zero gradient, reduced all
         * the same so every rank runs the same collectives. */
        if (open_slot(e, p, first, count) == NULL)
            return ZERO_ERR_NO_MEMORY;
        s = find_open(e, p->index, first, count);
    }
    return start_slot(e, s);
}

zero_status_t engine_grad_slices_end(zero_engine_h e)
{
    zero_status_t status = ZERO_OK;
    for (;;) {
        int first_open = -1;
        for (int s = 0; s < e->num_grad_slices; s++) {
            const engine_grad_slice_t *g = &e->grad_slices[s];
            if (g->param >= 0 && !g->reducing && (first_open < 0 || g->opened < e->grad_slices[first_open].opened))
                first_open = s;
        }
        if (first_open < 0)
            break;
        engine_rows_mark(e->params[e->grad_slices[first_open].param], e->grad_slices[first_open].first,
                         e->grad_slices[first_open].count);
        status = start_slot(e, first_open);
        if (status != ZERO_OK)
            return status;
    }
    return reap(e, 1);
}

void engine_grad_slices_destroy(zero_engine_h e)
{
    for (int s = 0; s < e->num_grad_slices; s++) {
        engine_grad_slice_t *g = &e->grad_slices[s];
        if (g->param < 0)
            continue;
        if (g->req != NULL) {
            zero_comm_request_free(g->req);   /* waits: its buffer is freed next */
            g->req = NULL;
        }
        put_buffer(e, g);
    }
    zero_free(e->grad_slices);
    e->grad_slices = NULL;
    e->num_grad_slices = 0;
    for (int i = 0; i < e->num_params; i++) {
        zero_free(e->params[i]->rows_ready);
        e->params[i]->rows_ready = NULL;
    }
}
