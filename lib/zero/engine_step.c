/*
 * Backward and step: gradient buffers, bucketed reduction (stages 2-3 during
 * the backward, stages 0-1 at the boundary), overflow check, global norm and
 * clipping, the optimizer kernels over the owned shard, and bringing the
 * updated weights back. The arithmetic goes through the operations table of
 * the engine's memory kind (e->ops, engine_ops.h); master weights and
 * optimizer states are reached only through the store (e->store, store.h).
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_gather.h"
#include "zero/engine_grad_slice.h"
#include "zero/engine_step.h"

#include "comm/quant_coll.h"
#include "util/alloc.h"
#include "util/half.h"
#include "util/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static size_t bucket_bytes(zero_engine_h e, int b)
{
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    return bk->length * dtype_bytes(e->layout->groups[bk->group].dtype);
}

/* ---- backward ---- */

/*
 * Stages 0-1 accumulate gradients in the buffers the trainer writes (its views
 * or the engine's flat gradients) over gradient_accumulation_steps
 * micro-batches, and reduce them once at the boundary. A trainer that zeroes
 * them between micro-batches (a zero_grad() at the top of every iteration, as
 * in a PyTorch loop without accumulation) silently trains on the last
 * micro-batch only. Detected from values: after a non-boundary zero_step each
 * parameter records whether its gradient holds anything; at the next
 * zero_backward_begin a gradient that held something and is now all zeros was
 * zeroed in between. Always on: both scans stop at the first non-zero element,
 * so an accumulated gradient costs one read. Zeroing after zero_backward_begin
 * (inside the backward) cannot be told from values and is not detected.
 */
static void *accumulated_grad(zero_engine_h e, const struct zero_param *p)
{
    const zero_layout_param_t *lp = &e->layout->params[p->index];
    if (p->view_grad != NULL)
        return p->view_grad;
    return (char *)e->groups[lp->group].grads_flat + lp->offset * dtype_bytes(p->dtype);
}

static int grad_any_nonzero(const void *grad, zero_dtype_t dtype, size_t n)
{
    if (dtype == ZERO_FP32) {
        const uint32_t *u = grad;
        for (size_t i = 0; i < n; i++)
            if (u[i] & 0x7fffffffu)   /* -0.0 is zero too */
                return 1;
    } else {
        const uint16_t *h = grad;
        for (size_t i = 0; i < n; i++)
            if (h[i] & 0x7fffu)
                return 1;
    }
    return 0;
}

static int accumulation_checked(zero_engine_h e)
{
    /* The scans read gradients on the host: only where the host can. */
    return engine_grads_whole(e) && e->gas > 1 && e->ops->host_readable && !e->grad_zeroing_warned;
}

/* After a non-boundary zero_step: which gradients hold something now. */
static void note_held_grads(zero_engine_h e)
{
    if (!accumulation_checked(e))
        return;
    for (int i = 0; i < e->num_params; i++) {
        struct zero_param *p = e->params[i];
        p->grad_held = grad_any_nonzero(accumulated_grad(e, p), p->dtype, p->numel);
    }
}

/* At zero_backward_begin inside a window: warn (once) when held gradients are all zeros. */
static void check_held_grads(zero_engine_h e)
{
    const char *first = NULL;
    int zeroed = 0;
    if (e->window_micro == 0 || !accumulation_checked(e))
        return;
    for (int i = 0; i < e->num_params; i++) {
        struct zero_param *p = e->params[i];
        if (p->grad_held && !grad_any_nonzero(accumulated_grad(e, p), p->dtype, p->numel)) {
            if (first == NULL)
                first = p->name;
            zeroed++;
        }
    }
    if (zeroed == 0)
        return;
    e->grad_zeroing_warned = 1;
    ZERO_LOG_WARN("micro-batch %d of %d: the accumulated gradients of %d parameter%s (first: %s) were zeroed since "
                  "the last zero_step, so only the window's last micro-batch counts; at stage %d the trainer must "
                  "not zero gradients between micro-batches (the engine zeroes them after each boundary step)",
                  e->window_micro + 1, e->gas, zeroed, zeroed == 1 ? "" : "s", first, e->stage);
}

/* ---- the late-write guard ----
 *
 * A digest of each gradient at zero_grad_ready, compared before the gradient is
 * reduced: four interleaved Fletcher sums over 64-bit words (mod 2^64). Any
 * change of a single word changes the first sums; a change that leaves all
 * eight sums equal needs cancelling edits at chosen positions, which a late
 * write of real gradients does not make. It reads the gradient once at a few
 * GB/s, next to a reduction that reads and writes it too. */
static uint64_t grad_digest(const void *data, size_t bytes)
{
    const unsigned char *p = data;
    uint64_t a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0}, tail = 0;
    size_t i = 0;
    for (; i + 32 <= bytes; i += 32)
        for (int k = 0; k < 4; k++) {
            uint64_t w;
            memcpy(&w, p + i + 8 * (size_t)k, 8);
            a[k] += w;
            b[k] += a[k];
        }
    for (; i < bytes; i++)
        tail = tail * 131 + p[i] + 1;
    return (a[0] ^ (b[0] * 3)) + (a[1] ^ (b[1] * 5)) * 7 + (a[2] ^ (b[2] * 11)) * 13 + (a[3] ^ (b[3] * 17)) * 19 +
           tail * 23 + (uint64_t)bytes;
}

/* Records @p p's gradient digest (at zero_grad_ready). */
static void guard_record(zero_engine_h e, struct zero_param *p)
{
    p->digest_valid = e->check_grad_writes && p->grad != NULL;
    if (p->digest_valid)
        p->grad_digest = grad_digest(p->grad, p->numel * dtype_bytes(p->dtype));
}

/* ZERO_ERR_STATE, naming the parameter, when @p p's gradient changed since its
 * zero_grad_ready. The micro-batch's gradients are then wrong on this rank and
 * its collectives may no longer match its peers', so the engine fails. */
static zero_status_t guard_check(zero_engine_h e, struct zero_param *p, const char *when)
{
    if (!p->digest_valid || p->grad == NULL)
        return ZERO_OK;
    if (grad_digest(p->grad, p->numel * dtype_bytes(p->dtype)) == p->grad_digest)
        return ZERO_OK;
    engine_error(e, ZERO_ERR_STATE,
                 "rank %d: the gradient of %s changed after zero_grad_ready declared it complete (found %s); at "
                 "stages 2-3 such a write is lost. Usual cause: an autograd hook that runs before the gradient is "
                 "written (LibTorch's Tensor::register_hook). Fix: add the hook's incoming gradient into "
                 "zero_param_grad() before zero_grad_ready, hook after accumulation instead, or mark gradients "
                 "ready after backward() returns (docs/cpp.md)",
                 e->rank, p->name, when);
    /* this rank's trainer: its peers may be waiting for this bucket's reduction */
    return engine_fail(e, ENGINE_FAIL_LOCAL, ZERO_ERR_STATE, zero_log_error_mark(), "%s", e->last_error);
}

/* Checks every ready parameter of bucket @p b (before its reduction starts). */
static zero_status_t guard_check_bucket(zero_engine_h e, int b, const char *when)
{
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    if (!e->check_grad_writes)
        return ZERO_OK;
    for (int i = bk->first_param; i < bk->first_param + bk->num_params; i++)
        if (e->layout->params[i].bucket == b && e->params[i]->ready) {
            zero_status_t status = guard_check(e, e->params[i], when);
            if (status != ZERO_OK)
                return status;
        }
    return ZERO_OK;
}

static zero_status_t reduce_bucket_start(zero_engine_h e, int b);

/* Starts the reduction a zero_grad_ready completed, deferred to this call. */
static zero_status_t start_pending_reduce(zero_engine_h e)
{
    int b = e->pending_reduce;
    if (b < 0)
        return ZERO_OK;
    e->pending_reduce = -1;
    return reduce_bucket_start(e, b);
}

/* ---- backward ---- */

zero_status_t zero_backward_begin(zero_engine_h e, float *seed_p)
{
    if (e == NULL || seed_p == NULL)
        return ZERO_ERR_INVALID_ARG;
    if (e->state != ENGINE_READY) {
        engine_error(e, ZERO_ERR_STATE, "zero_backward_begin: %s",
                     e->state == ENGINE_REGISTERING ? "call zero_engine_setup first"
                     : e->state == ENGINE_FAILED     ? "the engine failed earlier; destroy it"
                                                     : "a backward is already open (call zero_backward_end and zero_step)");
        return ZERO_ERR_STATE;
    }
    check_held_grads(e);
    for (int i = 0; i < e->num_params; i++) {
        struct zero_param *p = e->params[i];
        const zero_layout_param_t *lp = &e->layout->params[i];
        p->ready = 0;
        p->digest_valid = 0;
        if (p->view_grad != NULL)
            p->grad = p->view_grad;
        else if (engine_grads_whole(e))
            p->grad = (char *)e->groups[lp->group].grads_flat + lp->offset * dtype_bytes(p->dtype);
        else
            p->grad = NULL;   /* bucket staging, handed out on first use */
    }
    if (!engine_grads_whole(e)) {
        for (int b = 0; b < e->layout->num_buckets; b++) {
            e->buckets[b].params_ready = 0;
            e->buckets[b].reduced = 0;
        }
        e->reduce_head = e->reduce_tail = 0;
    }
    e->pending_reduce = -1;
    e->state = ENGINE_IN_BACKWARD;
    *seed_p = (float)(zero_loss_scaler_scale(&e->scaler) / (double)e->gas);
    return ZERO_OK;
}

static zero_status_t reduce_bucket_finish(zero_engine_h e, int b);
static zero_status_t overlap_submit(zero_engine_h e, int b);

size_t engine_reduce_wire_bytes(zero_engine_h e, int b)
{
    if (!e->quantized_gradients)
        return 0;
    if (e->qgz_cross != NULL)
        return zero_comm_reduce_scatter_quant_hier_wire_bytes(ZERO_QUANT_INT8, e->layout->buckets[b].length /
                                                              (size_t)e->own_world, zero_comm_size(e->qgz_node),
                                                              zero_comm_size(e->qgz_cross));
    return zero_comm_reduce_scatter_quant_wire_bytes(ZERO_QUANT_INT8, e->layout->buckets[b].length /
                                                     (size_t)e->own_world, e->own_world);
}

/* qgZ: where a staging block's wire bytes start, behind the gradients, aligned. */
static size_t staging_wire_offset(zero_engine_h e, int b)
{
    return (bucket_bytes(e, b) + ZERO_MEM_ALIGNMENT - 1) / ZERO_MEM_ALIGNMENT * ZERO_MEM_ALIGNMENT;
}

/* The bytes bucket @p b's gradient staging takes: its own length at stage 3;
 * at stage 2 every block is the largest bucket's size, so the pool's blocks are
 * interchangeable slots and any free one fits (no fragmentation). */
static size_t staging_block_bytes(zero_engine_h e, int b)
{
    size_t wire = engine_reduce_wire_bytes(e, b);
    if (e->stage == 2)
        return e->staging_bytes;
    return wire > 0 ? staging_wire_offset(e, b) + wire : bucket_bytes(e, b);
}

/* Gradient staging of a bucket, from the gradient pool (reserved and, at stage
 * 2, backed at setup); a one-off buffer when the trainer holds more gradients at
 * once than the pool has room for (warned once: that is slow and unbounded). */
zero_status_t engine_staging_get(zero_engine_h e, int b, void **ptr_p)
{
    size_t bytes = staging_block_bytes(e, b);
    *ptr_p = engine_pool_get(e, &e->grad_pool, bytes);
    /* Stage 2: every slot taken; the oldest reduction in flight gives one back. */
    while (*ptr_p == NULL && e->stage == 2 && e->reduce_head < e->reduce_tail) {
        zero_status_t status = reduce_bucket_finish(e, e->reduce_order[e->reduce_head]);
        if (status != ZERO_OK)
            return status;
        e->reduce_head++;
        *ptr_p = engine_pool_get(e, &e->grad_pool, bytes);
    }
    if (*ptr_p != NULL)
        return ZERO_OK;
    if (!e->pool_overflow_warned) {
        e->pool_overflow_warned = 1;
        ZERO_LOG_WARN("gradient of %s: the gradient pool (%zu bytes) has no room for %zu bytes more; such "
                      "gradients allocate and free their own buffer (slow, and more memory: mark gradients ready "
                      "as the backward produces them%s)",
                      e->params[e->layout->buckets[b].first_param]->name, e->grad_pool.capacity, bytes,
                      e->stage == 3 ? ", or raise reduce_bucket_size" : "");
    }
    e->buckets[b].staging_one_off = 1;
    return engine_alloc(e, &e->mem.buffers, bytes, "gradient bucket", ptr_p);
}

void engine_staging_put(zero_engine_h e, int b, void *ptr)
{
    size_t bytes = staging_block_bytes(e, b);
    if (ptr == NULL)
        return;
    if (e->buckets[b].staging_one_off)
        engine_free(e, &e->mem.buffers, bytes, ptr);
    else
        engine_pool_put(e, &e->grad_pool, ptr, bytes);
    e->buckets[b].staging_one_off = 0;
}

/* Stages 2-3: the staging buffer of bucket @p b, taken and zeroed on first use. */
static zero_status_t bucket_staging(zero_engine_h e, int b)
{
    bucket_state_t *bs = &e->buckets[b];
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    zero_status_t status;
    if (bs->staging != NULL)
        return ZERO_OK;
    status = engine_staging_get(e, b, &bs->staging);
    if (status != ZERO_OK)
        return status;
    engine_zero(e, bs->staging, bucket_bytes(e, b));
    for (int i = bk->first_param; i < bk->first_param + bk->num_params; i++) {
        const zero_layout_param_t *lp = &e->layout->params[i];
        struct zero_param *p = e->params[i];
        if (lp->bucket == b && p->view_grad == NULL)
            p->grad = (char *)bs->staging + (lp->offset - bk->offset) * dtype_bytes(p->dtype);
    }
    return ZERO_OK;
}

void *engine_param_grad_lazy(zero_param_h p)
{
    zero_engine_h e = p->engine;
    if (p->grad != NULL || e->state != ENGINE_IN_BACKWARD || engine_grads_whole(e) || p->ready)
        return p->grad;
    /* A new bucket's staging is wanted: this is the trainer's next call after the
     * guard deferred a reduction, so start it (checked) and free its slot sooner. */
    if (start_pending_reduce(e) != ZERO_OK)
        return NULL;
    if (bucket_staging(e, e->layout->params[p->index].bucket) != ZERO_OK)
        return NULL;
    return p->grad;
}

/*
 * qgZ on memory the host cannot read (ops quant_reduce8; device ranks). The
 * host's quantized reduce-scatter (comm/quant_coll.h) encodes and decodes on
 * the host around all-to-alls of the encoded bytes; here the same steps run
 * as the engine's operations on its stream (kernels that share quant_elem.h
 * with the C codec), and the all-to-alls are ordered on that stream, so the
 * host never waits. The wire keeps quant_coll.h's layout and size (its fp32
 * sums are used by the two-level form only). Every block is encoded, summed
 * in fp32 in rank order and rounded once as quant_coll.c does: the host's
 * values, bit for bit.
 *  - one level: the W blocks encoded; an all-to-all; at the finish, the W
 *    received decoded and summed into this rank's slice, divided by W;
 *  - two levels (qgz_cross): the P x N blocks encoded in level 1's order;
 *    an all-to-all inside the node, which the stream (not the host) waits
 *    for; for every node n, the P blocks for rank (n, p) decoded and summed
 *    in fp32 and encoded again; an all-to-all across nodes; at the finish,
 *    the N received decoded and summed, divided by P x N. Both all-to-alls
 *    start here, one after the other on every rank.
 */
static int qgz_on_device(zero_engine_h e)
{
    return e->quantized_gradients && e->ops->quant_reduce8 != NULL;
}

/* Where qgZ's wire of bucket @p b lies, and its parts (quant_coll.c's layout). */
typedef struct qgz_wire {
    size_t stride;      /* bytes of one encoded block */
    int P, N;           /* two levels: ranks per node, nodes; one level: P = W, N = 1 */
    char *s1, *r1;      /* level 1 (the only one with one level): blocks sent, received */
    char *s2, *r2;      /* level 2: blocks sent, received */
    float *acc;         /* level 2: the node's N partial sums, fp32 */
} qgz_wire_t;

static qgz_wire_t qgz_wire(zero_engine_h e, int b, size_t slice)
{
    qgz_wire_t w;
    w.stride = zero_comm_quant_stride(ZERO_QUANT_INT8, slice);
    w.P = e->qgz_cross != NULL ? zero_comm_size(e->qgz_node) : e->own_world;
    w.N = e->qgz_cross != NULL ? zero_comm_size(e->qgz_cross) : 1;
    w.s1 = (char *)e->buckets[b].staging + staging_wire_offset(e, b);
    w.r1 = w.s1 + (size_t)w.P * (size_t)w.N * w.stride;
    w.s2 = w.r1 + (size_t)w.P * (size_t)w.N * w.stride;
    w.r2 = w.s2 + (size_t)w.N * w.stride;
    w.acc = (float *)(void *)(w.r2 + (size_t)w.N * w.stride);
    return w;
}

static zero_status_t qgz_device_start(zero_engine_h e, int b, size_t slice, zero_dtype_t dtype)
{
    bucket_state_t *bs = &e->buckets[b];
    qgz_wire_t w = qgz_wire(e, b, slice);
    const char *grads = bs->staging;
    size_t es = dtype_bytes(dtype);
    zero_comm_request_h level1 = NULL;
    zero_status_t status = ZERO_OK;
    if (e->qgz_cross == NULL) {
        for (int k = 0; k < w.P && status == ZERO_OK; k++)
            status = engine_quant_encode_slot(e, dtype, grads + (size_t)k * slice * es, slice,
                                              w.s1 + (size_t)k * w.stride);
        if (status != ZERO_OK)
            return status;
        return engine_alltoall_start_on(e, e->comm, w.s1, w.r1, w.stride, ZERO_U8, &bs->reduce_req);
    }
    /* Level 1's message to node peer p: the blocks of the ranks (n, p), rank n x P + p, in node order. */
    for (int p = 0; p < w.P && status == ZERO_OK; p++)
        for (int n = 0; n < w.N && status == ZERO_OK; n++)
            status = engine_quant_encode_slot(e, dtype, grads + ((size_t)n * (size_t)w.P + (size_t)p) * slice * es,
                                              slice, w.s1 + ((size_t)p * (size_t)w.N + (size_t)n) * w.stride);
    if (status == ZERO_OK)
        status = engine_alltoall_start_on(e, e->qgz_node, w.s1, w.r1, (size_t)w.N * w.stride, ZERO_U8, &level1);
    if (status == ZERO_OK)
        status = engine_wait(e, &level1, "qgZ's all-to-all inside the node");
    /* node n's partial sum: the P blocks for rank (n, this local rank), N x stride apart */
    for (int n = 0; n < w.N && status == ZERO_OK; n++) {
        status = e->ops->quant_reduce8(e->ops_ctx, w.r1 + (size_t)n * w.stride, (size_t)w.N * w.stride, w.P, slice,
                                       1.0f, ZERO_FP32, w.acc + (size_t)n * slice);
        if (status == ZERO_OK)
            status = engine_quant_encode_slot(e, ZERO_FP32, w.acc + (size_t)n * slice, slice,
                                              w.s2 + (size_t)n * w.stride);
    }
    if (status != ZERO_OK)
        return status;
    return engine_alltoall_start_on(e, e->qgz_cross, w.s2, w.r2, w.stride, ZERO_U8, &bs->reduce_req);
}

/* After the wait for qgz_device_start's request: the received blocks decoded
 * and summed into this rank's slice of the staging, in @p dtype. */
static zero_status_t qgz_device_finish(zero_engine_h e, int b, size_t slice, zero_dtype_t dtype)
{
    qgz_wire_t w = qgz_wire(e, b, slice);
    const char *received = e->qgz_cross != NULL ? w.r2 : w.r1;
    int blocks = e->qgz_cross != NULL ? w.N : w.P;
    return e->ops->quant_reduce8(e->ops_ctx, received, w.stride, blocks, slice, (float)(w.P * w.N), dtype,
                                 (char *)e->buckets[b].staging + (size_t)e->own_rank * slice * dtype_bytes(dtype));
}

/* Starts the reduce-scatter of bucket @p b (stages 2-3): views are copied in
 * first; the reduction is in place, rank r's slice landing at its own offset. */
static zero_status_t reduce_bucket_start(zero_engine_h e, int b)
{
    bucket_state_t *bs = &e->buckets[b];
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    zero_dtype_t dtype = e->layout->groups[bk->group].dtype;
    size_t esz = dtype_bytes(dtype), slice = bk->length / (size_t)e->own_world;
    zero_status_t status;
    uint64_t mark;

    status = guard_check_bucket(e, b, "when its gradient bucket was reduced");
    if (status != ZERO_OK)
        return status;
    status = bucket_staging(e, b);
    if (status != ZERO_OK)
        return status;
    for (int i = bk->first_param; i < bk->first_param + bk->num_params; i++) {
        const zero_layout_param_t *lp = &e->layout->params[i];
        struct zero_param *p = e->params[i];
        if (lp->bucket != b)
            continue;
        if (p->view_grad != NULL) {
            engine_copy(e, (char *)bs->staging + (lp->offset - bk->offset) * esz, p->view_grad, p->numel * esz);
            engine_zero(e, p->view_grad, p->numel * esz);
        } else {
            p->grad = NULL;   /* the trainer's window on this gradient is over */
        }
    }
    bs->reduced = 1;
    mark = zero_log_error_mark();
    if (qgz_on_device(e))   /* ZeRO++ qgZ on the engine's stream (above) */
        status = qgz_device_start(e, b, slice, dtype);
    else if (e->quantized_gradients && e->qgz_cross != NULL)   /* ZeRO++ qgZ in two levels (comm/quant_coll.h) */
        status = zero_comm_reduce_scatter_quant_hier_start(e->qgz_node, e->qgz_cross, bs->staging,
                                                           (char *)bs->staging + (size_t)e->own_rank * slice * esz,
                                                           slice, dtype, ZERO_COMM_AVG, ZERO_QUANT_INT8,
                                                           (char *)bs->staging + staging_wire_offset(e, b),
                                                           &bs->reduce_req);
    else if (e->quantized_gradients)   /* ZeRO++ qgZ (comm/quant_coll.h) */
        status = zero_comm_reduce_scatter_quant_start(e->comm, bs->staging,
                                                      (char *)bs->staging + (size_t)e->own_rank * slice * esz, slice,
                                                      dtype, ZERO_COMM_AVG, ZERO_QUANT_INT8,
                                                      (char *)bs->staging + staging_wire_offset(e, b), &bs->reduce_req);
    else
        status = engine_reduce_scatter_start(e, bs->staging, (char *)bs->staging + (size_t)e->own_rank * slice * esz,
                                             slice, dtype, ZERO_COMM_AVG, &bs->reduce_req);
    if (status != ZERO_OK)   /* not started on this rank: the others would wait for it */
        return engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "reduce-scatter of gradient bucket %d failed to start: "
                           "%s", b, zero_status_string(status));
    e->reduce_order[e->reduce_tail++] = b;
    return ZERO_OK;
}

/* Waits for bucket @p b's reduction, adds the owned slice into the gradient shard, frees the staging. */
static zero_status_t reduce_bucket_finish(zero_engine_h e, int b)
{
    bucket_state_t *bs = &e->buckets[b];
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    group_state_t *g = &e->groups[bk->group];
    size_t esz = dtype_bytes(g->dtype), slice = bk->length / (size_t)e->own_world;
    zero_status_t status = engine_wait(e, &bs->reduce_req, "gradient reduce-scatter");
    if (status != ZERO_OK)
        return status;
    if (bs->staging != NULL) {
        uint64_t mark = zero_log_error_mark();
        if (qgz_on_device(e) && (status = qgz_device_finish(e, b, slice, g->dtype)) != ZERO_OK) {
            engine_staging_put(e, b, bs->staging);
            bs->staging = NULL;
            return engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "decoding the quantized gradients of bucket %d "
                               "failed", b);   /* this rank's kernel */
        }
        status = e->ops->accumulate(e->ops_ctx, g->dtype,
                                    (char *)g->grad_shard + zero_layout_bucket_shard_offset(e->layout, b) * esz,
                                    (char *)bs->staging + (size_t)e->own_rank * slice * esz, slice);
        engine_staging_put(e, b, bs->staging);
        bs->staging = NULL;
        if (status != ZERO_OK)   /* this rank's kernel */
            return engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "adding the reduced gradients of bucket %d failed",
                               b);
    }
    /* overlap_step: the boundary micro-batch's gradients of this bucket are final */
    if (e->overlap_step && e->window_micro == e->gas - 1 && !bs->overlap_submitted)
        return overlap_submit(e, b);
    return ZERO_OK;
}

/* Stages 2-3: finishes the reductions that are complete (the oldest first: they
 * complete in start order), and waits for the oldest while more than
 * ZERO_ENGINE_MAX_REDUCTIONS are in flight, so gradient staging stays at a few
 * buckets however long the backward is. @p all: finish every one. */
static zero_status_t reap_reductions(zero_engine_h e, int all)
{
    while (e->reduce_head < e->reduce_tail) {
        int b = e->reduce_order[e->reduce_head];
        zero_status_t status;
        if (!all && e->reduce_tail - e->reduce_head <= ZERO_ENGINE_MAX_REDUCTIONS &&
            zero_comm_request_test(e->buckets[b].reduce_req) == ZERO_INPROGRESS)
            break;
        status = reduce_bucket_finish(e, b);
        if (status != ZERO_OK)
            return status;
        e->reduce_head++;
    }
    return ZERO_OK;
}

zero_status_t zero_grad_ready(zero_engine_h e, zero_param_h p)
{
    int b;
    if (e == NULL || p == NULL || p->engine != e) {
        if (e)
            engine_error(e, ZERO_ERR_INVALID_ARG, "zero_grad_ready: not a parameter of this engine");
        return ZERO_ERR_INVALID_ARG;
    }
    if (e->state != ENGINE_IN_BACKWARD) {
        engine_error(e, ZERO_ERR_STATE, "zero_grad_ready(%s): no backward is open", p->name);
        return ZERO_ERR_STATE;
    }
    if (p->ready) {
        engine_error(e, ZERO_ERR_STATE, "zero_grad_ready(%s): already marked in this micro-batch", p->name);
        return ZERO_ERR_STATE;
    }
    if (!engine_grads_whole(e)) {
        /* The guard's deferred bucket first: the trainer has called back since. */
        zero_status_t status = start_pending_reduce(e);
        if (status != ZERO_OK)
            return status;
    }
    p->ready = 1;
    guard_record(e, p);
    if (engine_grads_whole(e))
        return ZERO_OK;
    b = e->layout->params[p->index].bucket;
    if (++e->buckets[b].params_ready == e->buckets[b].num_params) {
        zero_status_t status;
        if (e->check_grad_writes) {
            e->pending_reduce = b;
            return reap_reductions(e, 0);
        }
        status = reduce_bucket_start(e, b);
        if (status != ZERO_OK)
            return status;
    }
    return reap_reductions(e, 0);
}

zero_status_t zero_backward_end(zero_engine_h e)
{
    zero_status_t status = ZERO_OK;
    double t0;
    if (e == NULL)
        return ZERO_ERR_INVALID_ARG;
    if (e->state != ENGINE_IN_BACKWARD) {
        engine_error(e, ZERO_ERR_STATE, "zero_backward_end: no backward is open");
        return ZERO_ERR_STATE;
    }
    t0 = zero_clock_now();
    if (!engine_grads_whole(e))
        status = start_pending_reduce(e);
    if (e->stage == 3 && status == ZERO_OK)
        status = engine_grad_slices_end(e);   /* gradient slices: their parameters' buckets are done */
    if (!engine_grads_whole(e) && status == ZERO_OK) {
        /* Every bucket not reduced yet goes now, in bucket order (the same on every
         * rank), finishing older reductions as it goes so that staging stays within
         * the pool's few slots. */
        for (int b = 0; b < e->layout->num_buckets && status == ZERO_OK; b++)
            if (!e->buckets[b].reduced) {
                status = reduce_bucket_start(e, b);
                if (status == ZERO_OK)
                    status = reap_reductions(e, 0);
            }
        {
            zero_status_t st = reap_reductions(e, 1);
            if (status == ZERO_OK)
                status = st;
        }
        for (int i = 0; i < e->num_params; i++)
            e->params[i]->grad = NULL;
    } else if (engine_grads_whole(e)) {
        for (int i = 0; i < e->num_params && status == ZERO_OK; i++)
            if (e->params[i]->ready)
                status = guard_check(e, e->params[i], "at zero_backward_end");
        for (int i = 0; i < e->num_params; i++)
            if (e->params[i]->view_grad == NULL)
                e->params[i]->grad = NULL;
    }
    e->timers.backward_wait += zero_clock_now() - t0;
    if (status != ZERO_OK)
        return status;
    e->state = ENGINE_BACKWARD_DONE;
    return ZERO_OK;
}

/* ---- the boundary ----
 *
 * The owned range of a group (everything at stage 0, the shard otherwise) is
 * walked in pieces that never cross a weight-decay run or, at stages 1-2, a
 * bucket (the owned range is one slice of every bucket there). For each piece
 * the optimizer kernel reads the averaged gradient (converted to fp32 in a
 * small scratch when it is 16-bit), updates the fp32 master and moments (a
 * range acquired from the store and released dirty), and
 * writes the 16-bit weights straight to where the trainer sees them: the full
 * weights at stage 0, the owned slice inside the full weights at stages 1-2
 * (then all-gathered in place), the shard at stage 3. So the model state
 * stays at the ZeRO formula: no full-size temporary at any stage.
 */

zero_status_t engine_offload_buckets(zero_engine_h e, zero_offload_bucket_t **buckets_p)
{
    zero_offload_bucket_t *buckets = zero_calloc((size_t)(e->layout->num_buckets ? e->layout->num_buckets : 1),
                                                 sizeof(*buckets));
    *buckets_p = buckets;
    if (buckets == NULL) {
        engine_error(e, ZERO_ERR_NO_MEMORY, "setup: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    /* the owned range of a group is its buckets' slices in bucket order (stages 1-3) */
    for (int b = 0; b < e->layout->num_buckets; b++)
        buckets[b] = (zero_offload_bucket_t){.group = e->layout->buckets[b].group,
                                             .begin = zero_layout_bucket_shard_offset(e->layout, b),
                                             .count = e->layout->buckets[b].length / (size_t)e->own_world};
    return ZERO_OK;
}

/* Piece length bound: the store's range bound where it has one (the NVMe
 * store's buffers hold one sub_group_size piece, so each piece is one range,
 * read ahead while the one before is updated), else enough 64 Ki-element
 * kernel chunks for every thread, and a scratch that stays in the caches. */
static size_t piece_max(zero_engine_h e)
{
    size_t bound = zero_store_max_range(e->store), shard = engine_shard_max(e);
    if (bound == 0)
        bound = (size_t)zero_thread_pool_size(e->pool) * 2 * ZERO_OPTIM_DEFAULT_CHUNK;
    /* offload_param "nvme": a piece's weights are one window of the parameter file */
    return shard > 0 && shard < bound ? shard : bound;
}

size_t engine_range_max(zero_engine_h e, size_t want)
{
    size_t bound = zero_store_max_range(e->store), shard = engine_shard_max(e);
    if (shard > 0 && (bound == 0 || shard < bound))
        bound = shard;
    return bound > 0 && bound < want ? bound : want;
}

/* The bucket of group @p gi whose owned slice holds owned offset @p so (stages 1-2). */
static int owned_bucket(zero_engine_h e, int gi, size_t so)
{
    const zero_layout_group_t *lg = &e->layout->groups[gi];
    int lo = lg->first_bucket, hi = lg->first_bucket + lg->num_buckets - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (zero_layout_bucket_shard_offset(e->layout, mid) <= so)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Where owned offset @p so lives in the group's flat space, and how many owned
 * elements from there on are contiguous in it. */
static size_t owned_to_flat(zero_engine_h e, int gi, size_t so, size_t *contiguous_p)
{
    group_state_t *g = &e->groups[gi];
    if (e->stage == 0) {
        *contiguous_p = g->own_length - so;
        return so;
    } else {
        int b = owned_bucket(e, gi, so);
        size_t begin, end, base = zero_layout_bucket_shard_offset(e->layout, b);
        zero_layout_bucket_slice(e->layout, b, e->own_rank, &begin, &end);
        *contiguous_p = end - begin - (so - base);
        return begin + (so - base);
    }
}

/* The averaged gradients at owned offset @p so (dtype), and how many are contiguous. */
static void *grad_at(zero_engine_h e, int gi, size_t so, size_t *contiguous_p)
{
    group_state_t *g = &e->groups[gi];
    size_t esz = dtype_bytes(g->dtype);
    if (!engine_grads_whole(e)) {
        *contiguous_p = g->own_length - so;
        return (char *)g->grad_shard + so * esz;
    }
    return (char *)g->grads_flat + owned_to_flat(e, gi, so, contiguous_p) * esz;
}

/* Whether group @p gi's weights are the store's fp32 master itself (fp32 at
 * stages 0 and 3, unless the master or the shard lives elsewhere): then they
 * are updated in place and no weights are written. */
static int weights_are_master(zero_engine_h e, int gi) { return e->store->desc.adopt_master[gi] != NULL; }

/* Opens where the updated weights of owned [so, so + n) go, in the group's
 * dtype: the owned part of the full weights (stages 0-2) or the shard
 * (stage 3: in memory, or a window of the parameter file with offload_param
 * "nvme"; n at most engine_shard_max). *weights_p is NULL where the weights
 * are the master. Otherwise an fp32 group's weights are a copy of the
 * master, written as it changes (the allgather of stages 1-2 sends them).
 * Close with weights_close, dirty when written. */
static zero_status_t weights_open(zero_engine_h e, int gi, size_t so, size_t n, engine_shard_window_t *w,
                                  void **weights_p)
{
    group_state_t *g = &e->groups[gi];
    size_t contiguous;
    zero_status_t status;
    memset(w, 0, sizeof(*w));
    *weights_p = NULL;
    if (weights_are_master(e, gi))
        return ZERO_OK;
    if (e->stage == 3) {
        status = engine_shard_open(e, gi, so, n, w);
        *weights_p = w->data;
        return status;
    }
    *weights_p = (char *)g->params_flat + owned_to_flat(e, gi, so, &contiguous) * dtype_bytes(g->dtype);
    return ZERO_OK;
}

static zero_status_t weights_close(zero_engine_h e, engine_shard_window_t *w, int dirty)
{
    return engine_shard_close(e, w, dirty);
}

/* The 16-bit weights in @p weights (NULL for fp32: the kernels write no 16-bit copy). */
static uint16_t *w16_of(zero_engine_h e, int gi, void *weights)
{
    return e->groups[gi].dtype == ZERO_FP32 ? NULL : weights;
}

/* After an update of n elements of an fp32 group whose weights (@p weights)
 * are not the master: the weights become the master's new values. */
static void copy_master_to_weights(zero_engine_h e, int gi, void *weights, const float *master, size_t n)
{
    if (e->groups[gi].dtype == ZERO_FP32 && weights != NULL && weights != (const void *)master)
        engine_copy(e, weights, master, n * sizeof(float));
}

/* fp32 gradients of [so, so + n): the buffer itself for fp32, else converted into the scratch. */
static zero_status_t grad32(zero_engine_h e, int gi, size_t so, size_t n, const float **grads_p)
{
    group_state_t *g = &e->groups[gi];
    size_t contiguous;
    void *src = grad_at(e, gi, so, &contiguous);
    if (g->dtype == ZERO_FP32) {
        *grads_p = src;
        return ZERO_OK;
    }
    *grads_p = g->scratch;
    return e->ops->from_16(e->ops_ctx, g->dtype, g->scratch, src, n);
}

/* ---- the fused step ----
 *
 * Unfused, the boundary's reduce-scatter ends on every rank with "received
 * partial + own gradients, divided by W" written into the owned slice, and
 * the step reads that slice back. Fused, each bucket goes through the split
 * reduce-scatter (comm/reduce_split.h): the own gradients stay as they are in
 * the gradient buffer, the other ranks' sum (the partial) is left where the
 * communicator put it (the peer's own buffer on the direct path at two ranks,
 * else g->peer_grads), and the optimizer kernel adds the two in registers
 * with 1/W folded into its gradient multiplier. The sum is never written, and
 * the reduction does not read and write the owned slice: for AdamW with fp32
 * state the step moves 32 bytes per element instead of 12 + 28.
 *
 * The overflow check and the global norm need the whole gradient before any
 * update (a skipped step changes nothing; clipping scales every element by
 * the norm), so they run first, in a read-only pass over both addends
 * (check_grads_fused: 8 bytes per element, against the unfused check's
 * 2 x 4 over the written sum). The sum of squares of (own + partial) is
 * divided by W^2 in double.
 *
 * 16-bit groups widen their gradients into an fp32 piece scratch before the
 * kernel anyway (grad32); there the average is formed while widening
 * (average_from_16: own + partial, divided by W and rounded to 16 bits exactly
 * as the unfused last hop rounds it), in the cache-sized scratch, and the
 * plain kernel reads it: the same bytes from memory as the fused kernel.
 *
 * Arithmetic: the own + partial addition is the reduce-scatter's last one
 * (IEEE addition commutes). fp32: at W = 2 (W a power of two) the factor 1/W
 * folded into the multiplier is exact, so the weights equal the unfused
 * path's bit for bit unless clipping applies (the norm's squares are summed
 * in another order, so the clip coefficient may differ in its last bit); at
 * W = 3 g x (s/3) differs from (g / 3) x s by a rounding. 16-bit: the update
 * is the unfused one bit for bit, the norm summed in another grouping.
 * tests/engine/fused_check.c states the tolerances.
 *
 * Taken (fused_choose) at stage 1 with the engine's own buffers, host memory
 * (the table has the fused operations), two or more ranks, every parameter
 * group's optimizer with a fused kernel (Adam/AdamW), a store that lets the
 * engine run the kernel (not zero-optd), unless ZERO_FUSED_STEP=0. It
 * reserves g->peer_grads, one shard of partials (4/W bytes per fp32
 * parameter) as address space: unused on the direct path at two ranks, backed
 * where the ring (or the direct path at W > 2) writes it. Not taken:
 * stage 2 with the engine's buffers reduces each bucket during the backward
 * into the gradient shard and frees its staging, so fusing its last addition
 * into the step would mean holding every bucket's staging until the boundary,
 * the memory stage 2 exists to save; adopted flat buffers (stages 1-2) exist
 * so that the engine holds no gradient memory, which the partials' shard
 * would add. Both keep the unfused path. */

static zero_status_t fused_choose(zero_engine_h e)
{
    const char *env = getenv("ZERO_FUSED_STEP");
    int wanted = 1, kernels = 1;
    e->fused_step = 0;
    if (env != NULL && strcmp(env, "0") != 0 && strcmp(env, "1") != 0) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "ZERO_FUSED_STEP=%s: expected 0 (the unfused step) or 1 (the default)",
                     env);
        return ZERO_ERR_INVALID_ARG;
    }
    if (env != NULL && strcmp(env, "0") == 0)
        wanted = 0;
    for (int i = 0; i < e->num_param_groups; i++)
        kernels = kernels && zero_optim_hparams_has_fused(&e->param_groups[i].hparams);
    e->fused_step = wanted && kernels && e->stage == 1 && e->num_adopted == 0 && e->own_world >= 2 && e->ops->check_grads_add != NULL && e->ops->optimizer_step_fused != NULL &&
                    !zero_store_prefers_step(e->store);
    if (e->rank == 0)
        ZERO_LOG_DEBUG("the reduction fused into the step: %s", e->fused_step ? "on" : "off");
    return ZERO_OK;
}

/* The peers' partial at owned offset @p so (of g->peer_dtype). Pieces never
 * cross a bucket at stages 1-2, so the piece's partial is contiguous. */
static const void *peer_at(zero_engine_h e, int gi, size_t so)
{
    int b = owned_bucket(e, gi, so);
    return (const char *)e->buckets[b].split.partial +
           (so - zero_layout_bucket_shard_offset(e->layout, b)) * dtype_bytes(e->groups[gi].peer_dtype);
}

/* The fused path's gradients of [so, so + n) in fp32. fp32 groups: the own
 * gradients and the partial, both in place (*peer_p: the kernel's second
 * addend; 1/W still to apply). 16-bit groups: the average itself, formed into
 * the piece scratch as the 16-bit gradients are widened anyway (*peer_p
 * NULL; rounded to 16 bits as the unfused hop rounds it, so the step is the
 * unfused step's bit for bit). */
static zero_status_t grads_fused(zero_engine_h e, int gi, size_t so, size_t n, const float **own_p,
                                 const float **peer_p)
{
    group_state_t *g = &e->groups[gi];
    size_t contiguous;
    const void *own = grad_at(e, gi, so, &contiguous), *peer = peer_at(e, gi, so);
    if (g->dtype == ZERO_FP32) {
        *own_p = own;
        *peer_p = peer;   /* fp32 too: the peer's block at W = 2, the fp32 sum of the others otherwise */
        return ZERO_OK;
    }
    *own_p = g->scratch;
    *peer_p = NULL;
    return e->ops->average_from_16(e->ops_ctx, g->dtype, g->scratch, own, g->peer_dtype, peer,
                                   (float)e->own_world, n);
}

/* The fused path's check: the overflow count and the sum of squares of the
 * averaged gradients, from the two addends (fp32: of (own + partial), divided
 * by W^2 in double; 16-bit: of the average formed in the scratch). */
static zero_status_t check_grads_fused(zero_engine_h e)
{
    uint64_t mark = zero_log_error_mark();
    double scale = 1.0 / ((double)e->own_world * (double)e->own_world);
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        group_state_t *g = &e->groups[gi];
        size_t so = 0;
        while (so < g->own_length) {
            size_t n;
            const float *own, *peer;
            zero_status_t status;
            grad_at(e, gi, so, &n);
            if (g->dtype != ZERO_FP32 && n > g->scratch_length)
                n = g->scratch_length;
            status = grads_fused(e, gi, so, n, &own, &peer);
            if (status == ZERO_OK && peer != NULL)
                status = e->ops->check_grads_add(e->ops_ctx, own, peer, n, scale, e->result);
            else if (status == ZERO_OK)
                status = e->ops->check_grads(e->ops_ctx, ZERO_FP32, own, n, e->result);
            if (status != ZERO_OK)   /* this rank's kernel */
                return engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "step: checking the %s gradients at owned "
                                   "offset %zu failed", zero_dtype_string(g->dtype), so);
            so += n;
        }
    }
    return ZERO_OK;
}

/* The end of the piece that starts at @p so within run @p r. */
static size_t piece_end(zero_engine_h e, int gi, size_t so, size_t r)
{
    group_state_t *g = &e->groups[gi];
    size_t contiguous, end = g->run_start[r + 1], side_end;
    if (end > so + piece_max(e))
        end = so + piece_max(e);
    /* offload_optimizer.ratio < 1: a piece is stepped by the store or by the engine, never both */
    (void)zero_store_steps_at(e->store, gi, so, &side_end);
    if (end > side_end)
        end = side_end;
    if (e->stage == 1 || e->stage == 2) {
        owned_to_flat(e, gi, so, &contiguous);
        if (end > so + contiguous)
            end = so + contiguous;
    }
    return end;
}

/* Stages 0-1, and adopted buffers at every stage: reduce the whole gradient
 * buffers (views copied in first), in place. */
static zero_status_t reduce_full_grads(zero_engine_h e)
{
    zero_status_t status = ZERO_OK;
    int nb = e->layout->num_buckets;
    zero_comm_request_h *reqs;

    for (int i = 0; i < e->num_params; i++) {
        struct zero_param *p = e->params[i];
        const zero_layout_param_t *lp = &e->layout->params[i];
        if (p->view_grad != NULL) {
            size_t esz = dtype_bytes(p->dtype);
            engine_copy(e, (char *)e->groups[lp->group].grads_flat + lp->offset * esz, p->view_grad, p->numel * esz);
        }
    }
    reqs = zero_calloc((size_t)(nb ? nb : 1), sizeof(*reqs));
    if (reqs == NULL) {   /* the other ranks go on to reduce these buckets with this rank */
        engine_error(e, ZERO_ERR_NO_MEMORY, "step: out of memory");
        return engine_fail(e, ENGINE_FAIL_LOCAL, ZERO_ERR_NO_MEMORY, zero_log_error_mark(), "%s", e->last_error);
    }
    for (int b = 0; b < nb && status == ZERO_OK; b++) {
        const zero_layout_bucket_t *bk = &e->layout->buckets[b];
        group_state_t *g = &e->groups[bk->group];
        size_t esz = dtype_bytes(g->dtype);
        char *base = (char *)g->grads_flat + bk->offset * esz;
        uint64_t mark = zero_log_error_mark();
        if (e->stage == 0) {
            status = engine_allreduce_start(e, base, bk->length, g->dtype, ZERO_COMM_AVG, &reqs[b]);
        } else if (e->fused_step) {
            /* the last addition is the step's (see "the fused step" below) */
            size_t slice = bk->length / (size_t)e->world;
            bucket_state_t *bs = &e->buckets[b];
            bs->split.buf = (char *)g->peer_grads +
                            zero_layout_bucket_shard_offset(e->layout, b) * dtype_bytes(g->peer_dtype);
            status = zero_comm_reduce_scatter_split_start(e->comm, base, slice, g->dtype, &bs->split, &reqs[b]);
        } else {
            size_t slice = bk->length / (size_t)e->world;
            status = engine_reduce_scatter_start(e, base, base + (size_t)e->rank * slice * esz, slice, g->dtype,
                                                 ZERO_COMM_AVG, &reqs[b]);
        }
        if (status != ZERO_OK)   /* not started on this rank: the others would wait for it */
            engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "gradient reduction of bucket %d failed to start: %s", b,
                        zero_status_string(status));
    }
    for (int b = 0; b < nb; b++) {
        zero_status_t st = engine_wait(e, &reqs[b], "gradient reduction");
        if (status == ZERO_OK)
            status = st;
    }
    zero_free(reqs);
    return status;
}

/*
 * Sums @p n doubles over the ranks that own slices, in double precision: every
 * rank's values are allgathered as f64 and added in rank order. Not an f64
 * allreduce: its order of addition follows the backend (the ring starts each
 * block at a different rank, the direct path reduces in its own order, chunk
 * sizes move the seams), so the last bits of a norm, and with them the clip
 * coefficient and the weights, would depend on ZERO_COMM_DIRECT and
 * ZERO_COMM_CHUNK_BYTES. Summed in rank order they depend only on the values,
 * and every rank gets the same bits; n is a handful of values per step.
 * Rounding these sums to fp32 would turn a finite sum of squares above FLT_MAX
 * (a gradient norm above ~1.8e19) into inf, which the overflow check would
 * take for a non-finite gradient.
 */
static zero_status_t sum_over_ranks_f64(zero_engine_h e, double *values, size_t n, const char *what)
{
    int world = zero_comm_size(e->comm);
    zero_status_t status;
    uint64_t mark;
    double *all;
    if (e->own_world <= 1 || n == 0)
        return ZERO_OK;
    all = zero_calloc((size_t)world * n, sizeof(*all));
    if (all == NULL)   /* this rank's own: the others are off to the allgather below, fail them now */
        return engine_fail(e, ENGINE_FAIL_LOCAL, ZERO_ERR_NO_MEMORY, zero_log_error_mark(),
                           "%s: out of memory for %d x %zu values", what, world, n);
    mark = zero_log_error_mark();
    status = zero_comm_allgather(e->comm, values, all, n, ZERO_F64, ZERO_MEM_HOST);
    if (status != ZERO_OK) {   /* a failed collective */
        zero_free(all);
        return engine_fail(e, ENGINE_FAIL_SHARED, status, mark, "%s: gathering them from every rank failed: %s", what,
                           zero_status_string(status));
    }
    for (size_t i = 0; i < n; i++) {
        double sum = 0.0;
        for (int r = 0; r < world; r++)
            sum += all[(size_t)r * n + i];
        values[i] = sum;
    }
    zero_free(all);
    return ZERO_OK;
}

/* Queues the overflow check and the sum of squares over the owned averaged
 * gradients of every group into the step's result record (its NONFINITE and
 * SUM_SQUARES slots, in double). */
static zero_status_t check_grads_fused(zero_engine_h e);

static zero_status_t check_grads(zero_engine_h e)
{
    uint64_t mark = zero_log_error_mark();
    if (e->fused_step)
        return check_grads_fused(e);
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        group_state_t *g = &e->groups[gi];
        size_t so = 0;
        while (so < g->own_length) {
            size_t n;
            const void *src = grad_at(e, gi, so, &n);
            zero_status_t status = e->ops->check_grads(e->ops_ctx, g->dtype, src, n, e->result);
            if (status != ZERO_OK)   /* this rank's kernel (it logged the cause); a step on an unchecked
                                      * gradient would be wrong */
                return engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "step: checking the %s gradients at owned "
                                   "offset %zu failed", zero_dtype_string(g->dtype), so);
            so += n;
        }
    }
    return ZERO_OK;
}

static void zero_grads(zero_engine_h e)
{
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        group_state_t *g = &e->groups[gi];
        if (g->grads_flat)
            engine_zero(e, g->grads_flat, g->length * dtype_bytes(g->dtype));
        if (g->grad_shard)
            engine_zero(e, g->grad_shard, g->own_length * dtype_bytes(g->dtype));
    }
    for (int i = 0; i < e->num_params; i++)
        if (e->params[i]->view_grad)
            engine_zero(e, e->params[i]->view_grad, e->params[i]->numel * dtype_bytes(e->params[i]->dtype));
}

/* Stages 1-2: all-gather every bucket's updated owned slice into the full
 * weights, in place (the step wrote the slice there: 16-bit weights from the
 * kernel, fp32 weights as a copy of the master), so no master range is held
 * while the collectives run. */
static zero_status_t allgather_weights(zero_engine_h e, int gi)
{
    group_state_t *g = &e->groups[gi];
    const zero_layout_group_t *lg = &e->layout->groups[gi];
    size_t esz = dtype_bytes(g->dtype);
    zero_status_t status = ZERO_OK;
    zero_comm_request_h *reqs = zero_calloc((size_t)(lg->num_buckets ? lg->num_buckets : 1), sizeof(*reqs));
    if (reqs == NULL) {   /* the other ranks go on to gather these weights with this rank */
        engine_error(e, ZERO_ERR_NO_MEMORY, "step: out of memory");
        return engine_fail(e, ENGINE_FAIL_LOCAL, ZERO_ERR_NO_MEMORY, zero_log_error_mark(), "%s", e->last_error);
    }
    for (int k = 0; k < lg->num_buckets && status == ZERO_OK; k++) {
        int b = lg->first_bucket + k;
        const zero_layout_bucket_t *bk = &e->layout->buckets[b];
        size_t slice = bk->length / (size_t)e->world;
        char *full = (char *)g->params_flat + bk->offset * esz;
        uint64_t mark = zero_log_error_mark();
        status = engine_allgather_start(e, full + (size_t)e->rank * slice * esz, full, slice, g->dtype, &reqs[k]);
        if (status != ZERO_OK)   /* not started on this rank: the others would wait for it */
            engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "allgather of updated weights (bucket %d) failed to "
                        "start: %s", b, zero_status_string(status));
    }
    for (int k = 0; k < lg->num_buckets; k++) {
        zero_status_t st = engine_wait(e, &reqs[k], "allgather of updated weights");
        if (status == ZERO_OK)
            status = st;
    }
    zero_free(reqs);
    return status;
}

static void copy_to_views(zero_engine_h e)
{
    for (int i = 0; i < e->num_params; i++) {
        struct zero_param *p = e->params[i];
        if (p->view_data != NULL)
            engine_copy(e, p->view_data, p->data, p->numel * dtype_bytes(p->dtype));
    }
}

/* After the owned weights changed: all-gather them (stages 1-2) and refresh views. */
static zero_status_t publish_weights(zero_engine_h e)
{
    zero_status_t status = ZERO_OK;
    if (e->stage == 1 || e->stage == 2)
        for (int gi = 0; gi < e->layout->num_groups && status == ZERO_OK; gi++)
            status = allgather_weights(e, gi);
    if (status == ZERO_OK && e->stage < 3)
        copy_to_views(e);
    return status;
}

/* Brings the fp32 masters to the weights the trainer sees (at setup; the step
 * fuses the 16-bit conversion into the optimizer kernel instead), a range of
 * at most the store's bound at a time. */
zero_status_t engine_write_back(zero_engine_h e)
{
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        group_state_t *g = &e->groups[gi];
        size_t so = 0;
        if (weights_are_master(e, gi))
            continue;
        while (so < g->own_length) {
            size_t n = g->own_length - so;
            if (e->stage == 1 || e->stage == 2)
                owned_to_flat(e, gi, so, &n);
            n = engine_range_max(e, n);
            uint64_t mark = zero_log_error_mark();
            zero_store_range_t r = {.group = gi, .begin = so, .count = n,
                                    .fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)};
            engine_shard_window_t w;
            void *weights;
            zero_status_t status = zero_store_acquire(e->store, &r);
            if (status == ZERO_OK) {
                status = weights_open(e, gi, so, n, &w, &weights);
                if (status == ZERO_OK && g->dtype == ZERO_FP32)
                    copy_master_to_weights(e, gi, weights, r.data[ZERO_STORE_MASTER], n);
                else if (status == ZERO_OK)
                    status = e->ops->to_16(e->ops_ctx, g->dtype, weights, r.data[ZERO_STORE_MASTER], n);
                zero_status_t st = weights_close(e, &w, 1);
                if (status == ZERO_OK)
                    status = st;
                st = zero_store_release(e->store, &r, 0);
                if (status == ZERO_OK)
                    status = st;
            }
            if (status != ZERO_OK) {
                engine_keep_error(e, mark, "writing the %s weights at owned offset %zu failed",
                                  zero_dtype_string(g->dtype), so);
                return status;
            }
            so += n;
        }
    }
    return publish_weights(e);
}

/* The optimizer over the piece [lo, hi) of group @p gi's owned range, with
 * parameter group @p pg's hyper-parameters and this step's values @p v (lr
 * and decay set per run): the one place the step updates master weights and
 * states. A store that prefers to run the update itself (zero-optd) gets the
 * gradients in the training dtype and the hyper-parameters, and may still be
 * working when this returns (the caller waits once, after the last piece);
 * otherwise the range is acquired, the kernel of the engine's kind runs on
 * it, and it is released dirty. */
static zero_status_t step_range(zero_engine_h e, int gi, size_t lo, size_t hi, int pg,
                                const zero_optim_step_values_t *v, int undoable)
{
    group_state_t *g = &e->groups[gi];
    zero_optim_hparams_t hp = zero_optim_hparams_for_step(&e->param_groups[pg].hparams, v);
    const float *grads, *peer = NULL;
    zero_store_range_t r = {.group = gi, .begin = lo, .count = hi - lo, .fields = zero_store_fields(e->store)};
    zero_optim_slice_t s;
    engine_shard_window_t win;
    void *weights;
    zero_status_t status, st;

    if (zero_store_steps_at(e->store, gi, lo, NULL)) {
        zero_store_async_step_t step;
        size_t contiguous;
        memset(&step, 0, sizeof(step));
        step.group = gi;
        step.begin = lo;
        step.count = hi - lo;
        step.grad_dtype = g->dtype;
        step.grad = grad_at(e, gi, lo, &contiguous);   /* pieces never cross a contiguous run */
        step.weight_dtype = g->dtype;
        step.undoable = undoable;
        /* such a store adopts nothing, and offload_param "nvme" is refused
         * with it (zero_engine_create), so the weights are in memory; with
         * offload_param "cpu" on a device rank, host memory the store
         * writes itself (no device window, nothing to close) */
        step.weights = e->stage == 3 ? engine_shard_host(e, gi, lo) : NULL;
        step.weights_on_host = step.weights != NULL;
        if (step.weights == NULL && (status = weights_open(e, gi, lo, hi - lo, &win, &step.weights)) != ZERO_OK)
            return status;
        status = zero_store_step_set_hparams(&step, &hp);
        return status != ZERO_OK ? status : zero_store_step_async(e->store, &step);
    }
    if (e->fused_step)
        status = grads_fused(e, gi, lo, hi - lo, &grads, &peer);
    else
        status = grad32(e, gi, lo, hi - lo, &grads);
    if (status == ZERO_OK && peer != NULL) {
        /* the partial is the kernel's second addend; 1/W (the average) joins the gradient multiplier */
        zero_optim_step_values_t fv = *v;
        fv.grad_scale = v->grad_scale / (float)e->own_world;
        hp = zero_optim_hparams_for_step(&e->param_groups[pg].hparams, &fv);
    }
    if (status != ZERO_OK)
        return status;
    status = zero_store_acquire(e->store, &r);
    if (status != ZERO_OK)
        return status;
    status = weights_open(e, gi, lo, hi - lo, &win, &weights);
    if (status == ZERO_OK) {
        s = (zero_optim_slice_t){
            .w = r.data[ZERO_STORE_MASTER],
            .g = grads,
            .s1 = r.data[ZERO_STORE_STATE1],
            .s2 = r.data[ZERO_STORE_STATE2],
            .w16 = w16_of(e, gi, weights),
            .w16_type = zero_optim_w16_of(g->dtype),
            .n = hi - lo,
        };
        status = peer != NULL ? e->ops->optimizer_step_fused(e->ops_ctx, &hp, &s, peer)
                              : e->ops->optimizer_step(e->ops_ctx, &hp, &s);
        if (status == ZERO_OK)
            copy_master_to_weights(e, gi, weights, r.data[ZERO_STORE_MASTER], hi - lo);
    }
    st = weights_close(e, &win, 1);
    if (status == ZERO_OK)
        status = st;
    st = zero_store_release(e->store, &r, 1);
    return status != ZERO_OK ? status : st;
}

/* The pieces of owned [lo, hi) of group @p gi through step_range, telling
 * the store about the next piece first, so a store whose state lives
 * elsewhere fetches it while this one is updated. Pieces end at run bounds,
 * so each runs with its parameter group's settings and rate (@p values holds
 * the schedule's rate, the default group's). @p which: -1 every piece, 1 only
 * those the store steps (zero_store_steps_at), 0 only the engine's.
 * @p undoable: the store's steps may be undone (overlap_step). */
static zero_status_t step_span(zero_engine_h e, int gi, size_t lo, size_t hi, const zero_optim_step_values_t *values,
                               int which, int undoable)
{
    group_state_t *g = &e->groups[gi];
    unsigned fields = zero_store_fields(e->store);
    zero_status_t status = ZERO_OK;
    size_t so = lo, r = 0, end;
    if (lo >= hi)
        return ZERO_OK;
    while (g->run_start[r + 1] <= so)
        r++;
    end = piece_end(e, gi, so, r);
    if (end > hi)
        end = hi;
    while (so < hi && status == ZERO_OK) {
        size_t next = end, next_r = r, next_end = end;
        if (next < hi) {
            while (g->run_start[next_r + 1] <= next)
                next_r++;
            next_end = piece_end(e, gi, next, next_r);
            if (next_end > hi)
                next_end = hi;
            if (which != 1 && !zero_store_steps_at(e->store, gi, next, NULL))
                status = zero_store_prefetch(e->store, gi, next, next_end - next, fields);
        }
        if (status == ZERO_OK && (which < 0 || zero_store_steps_at(e->store, gi, so, NULL) == which)) {
            zero_optim_step_values_t v = *values;
            int pg = g->run_param_group[r];
            v.decay = g->run_decay[r];
            v.lr = zero_optim_group_lr(e->param_groups, pg, values->lr);
            status = step_range(e, gi, so, end, pg, &v, undoable);
        }
        so = next;
        r = next_r;
        end = next_end;
    }
    return status;
}

/* Bucket @p b's owned slice: group, [*lo_p, *hi_p) (stages 1-3). */
static int bucket_span(zero_engine_h e, int b, size_t *lo_p, size_t *hi_p)
{
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    *lo_p = zero_layout_bucket_shard_offset(e->layout, b);
    *hi_p = *lo_p + bk->length / (size_t)e->own_world;
    return bk->group;
}

/* The elementwise optimizers: every owned piece of every group. With a store
 * that steps pieces itself, in two passes: the store's pieces first, so their
 * transfers and its CPU step start at once, then the engine's own (CPU
 * offload at offload_optimizer.ratio < 1), whose device kernels then run
 * while the store works; one wait at the end. With overlap_step the store's
 * pieces went in during the backward, bucket by bucket; the first pass
 * hands over those of any bucket that did not. */
static zero_status_t elementwise_step(zero_engine_h e, const zero_optim_step_values_t *values)
{
    zero_status_t status = ZERO_OK;
    int split = zero_store_prefers_step(e->store);
    if (split && e->overlap_step) {
        for (int b = 0; b < e->layout->num_buckets && status == ZERO_OK; b++) {
            size_t lo, hi;
            int gi = bucket_span(e, b, &lo, &hi);
            if (!e->buckets[b].overlap_submitted)
                status = step_span(e, gi, lo, hi, values, 1, 0);
        }
    }
    for (int pass = split && e->overlap_step ? 1 : 0; pass < (split ? 2 : 1) && status == ZERO_OK; pass++)
        for (int gi = 0; gi < e->layout->num_groups && status == ZERO_OK; gi++)
            status = step_span(e, gi, 0, e->groups[gi].own_length, values, split ? pass == 0 : -1, 0);
    if (split) {
        /* every piece submitted: the updated weights are in place once this returns */
        double t0 = zero_clock_now();
        zero_status_t st = zero_store_step_wait(e->store);
        e->timers.offload_exposed += zero_clock_now() - t0;
        if (status == ZERO_OK)
            status = st;
    }
    return status;
}

/* Lamb's ranges: each owned parameter segment of each group, in pieces of
 * the store's range bound, in this order (both phases, and zero-optd's
 * split hint, which are made from it, rely on it). A range lies inside one
 * parameter and never crosses a bucket slice, so its gradients and 16-bit
 * weights are contiguous. */
typedef zero_status_t (*lamb_range_fn)(zero_engine_h e, int gi, const zero_layout_segment_t *sg, size_t so,
                                       size_t count, void *arg);

static zero_status_t for_each_lamb_range(zero_engine_h e, lamb_range_fn fn, void *arg)
{
    zero_status_t status = ZERO_OK;
    for (int gi = 0; gi < e->layout->num_groups && status == ZERO_OK; gi++) {
        group_state_t *g = &e->groups[gi];
        for (size_t s = 0; s < g->num_segments && status == ZERO_OK; s++) {
            const zero_layout_segment_t *sg = &g->segments[s];
            for (size_t off = 0; off < sg->length && status == ZERO_OK;) {
                size_t count = engine_range_max(e, sg->length - off);
                status = fn(e, gi, sg, sg->shard_offset + off, count, arg);
                off += count;
            }
        }
    }
    return status;
}

/* The hyper-parameters of parameter @p param this step: its group's settings and rate, its decay. */
static zero_optim_hparams_t lamb_hparams(zero_engine_h e, int param, const zero_optim_step_values_t *values)
{
    zero_optim_step_values_t v = *values;
    int pg = e->params[param]->param_group;
    v.decay = e->params[param]->weight_decay;
    v.lr = zero_optim_group_lr(e->param_groups, pg, values->lr);
    return zero_optim_hparams_for_step(&e->param_groups[pg].hparams, &v);
}

typedef struct lamb_pass {
    const zero_optim_step_values_t *values;
    int pass;              /* 1 or 2 */
    double *sums;          /* pass 2: every parameter's totals */
    double *range_sums;    /* on the store, pass 1: 2 per range, in range order */
    size_t range;          /* ranges done this pass */
} lamb_pass_t;

/* One range of one phase in this process, on the range acquired from the
 * store: phase 1 adds its sums into the result record, phase 2 applies the
 * trust ratio with the parameter's totals. */
static zero_status_t lamb_range_here(zero_engine_h e, int gi, const zero_layout_segment_t *sg, size_t so,
                                     size_t count, void *arg)
{
    lamb_pass_t *lp = arg;
    group_state_t *g = &e->groups[gi];
    zero_optim_hparams_t hp = lamb_hparams(e, sg->param, lp->values);
    zero_store_range_t r = {.group = gi, .begin = so, .count = count, .fields = zero_store_fields(e->store)};
    zero_optim_slice_t sl = {
        /* the weights are written in phase 2 only */
        .w16_type = lp->pass == 2 ? zero_optim_w16_of(g->dtype) : zero_optim_w16_of(ZERO_FP32),
        .n = count,
    };
    engine_shard_window_t win;
    void *weights = NULL;
    zero_status_t status = ZERO_OK, st;
    if (lp->pass == 1)
        status = grad32(e, gi, so, count, &sl.g);
    if (status == ZERO_OK)
        status = zero_store_acquire(e->store, &r);
    if (status != ZERO_OK)
        return status;
    memset(&win, 0, sizeof(win));
    if (lp->pass == 2)
        status = weights_open(e, gi, so, count, &win, &weights);
    sl.w16 = w16_of(e, gi, weights);
    sl.w = r.data[ZERO_STORE_MASTER];
    sl.s1 = r.data[ZERO_STORE_STATE1];
    sl.s2 = r.data[ZERO_STORE_STATE2];
    if (status != ZERO_OK) {
        /* the window did not open: the range is released below */
    } else if (lp->pass == 1) {
        status = e->ops->lamb_phase1(e->ops_ctx, &hp, &sl, e->result, ENGINE_RESULT_LAMB + 2 * (size_t)sg->param);
    } else {
        status = e->ops->lamb_phase2(e->ops_ctx, &hp, &sl, lp->sums[2 * (size_t)sg->param],
                                     lp->sums[2 * (size_t)sg->param + 1]);
        if (status == ZERO_OK)
            copy_master_to_weights(e, gi, weights, sl.w, count);
    }
    st = weights_close(e, &win, lp->pass == 2);
    if (status == ZERO_OK)
        status = st;
    st = zero_store_release(e->store, &r, 1);   /* both phases write (moments, then weights) */
    return status != ZERO_OK ? status : st;
}

/* Whether Lamb runs where the state lives: a store that prefers the step and
 * runs Lamb's phases (zero-optd) under the host table, whose kernels' chunk
 * and level the store's sums follow. */
static int lamb_on_store(zero_engine_h e)
{
    return zero_store_prefers_step(e->store) && zero_store_steps_lamb(e->store) && e->ops == &engine_ops_host;
}

/* One range of one phase submitted to the store: phase 1 sends the gradient
 * (training dtype) and gets the range's sums (final after the wait); phase 2
 * sends the parameter's totals and gets the weights, as the elementwise step
 * does (such a store adopts nothing and offload_param "nvme" is refused with
 * it, so the weights are in memory and the window needs no close). */
static zero_status_t lamb_range_on_store(zero_engine_h e, int gi, const zero_layout_segment_t *sg, size_t so,
                                         size_t count, void *arg)
{
    lamb_pass_t *lp = arg;
    group_state_t *g = &e->groups[gi];
    zero_optim_hparams_t hp = lamb_hparams(e, sg->param, lp->values);
    zero_store_async_step_t step;
    engine_shard_window_t win;
    zero_status_t status;
    size_t contiguous;
    memset(&step, 0, sizeof(step));
    step.group = gi;
    step.begin = so;
    step.count = count;
    step.optim = engine_ops_host_optim(e->ops_ctx);
    step.lamb_phase = lp->pass;
    if (lp->pass == 1) {
        step.grad_dtype = g->dtype;
        step.grad = grad_at(e, gi, so, &contiguous);
        step.lamb_sums = &lp->range_sums[2 * lp->range];
    } else {
        step.weight_dtype = g->dtype;
        /* the store reads the totals when the step is submitted */
        step.lamb_sums = &lp->sums[2 * (size_t)sg->param];
        status = weights_open(e, gi, so, count, &win, &step.weights);
        if (status != ZERO_OK)
            return status;
    }
    lp->range++;
    status = zero_store_step_set_hparams(&step, &hp);
    return status != ZERO_OK ? status : zero_store_step_async(e->store, &step);
}

static zero_status_t count_range(zero_engine_h e, int gi, const zero_layout_segment_t *sg, size_t so, size_t count,
                                 void *arg)
{
    (void)e, (void)gi, (void)sg, (void)so, (void)count;
    ++*(size_t *)arg;
    return ZERO_OK;
}

typedef struct lamb_add {
    const double *range_sums;
    double *sums;
    size_t range;
} lamb_add_t;

/* Phase 1 on the store: the range's sums into its parameter's, in range
 * order, as host_lamb_phase1 adds each range's into the cleared record. */
static zero_status_t add_range_sums(zero_engine_h e, int gi, const zero_layout_segment_t *sg, size_t so,
                                    size_t count, void *arg)
{
    lamb_add_t *la = arg;
    (void)e, (void)gi, (void)so, (void)count;
    la->sums[2 * (size_t)sg->param] += la->range_sums[2 * la->range];
    la->sums[2 * (size_t)sg->param + 1] += la->range_sums[2 * la->range + 1];
    la->range++;
    return ZERO_OK;
}

/* Lamb: phase 1 over every range, its per-parameter sums of w^2 and u^2
 * summed over ranks, then phase 2 (the trust ratio stays per parameter; each
 * range runs with its parameter's group settings and rate). Here: on ranges
 * acquired from the store, the sums gathered in the result record and read
 * once. On the store (zero-optd): every range's phase submitted and waited
 * for, the ranges' sums added in the same order, so the weights are the
 * same bits; the state never travels. */
static zero_status_t lamb_step(zero_engine_h e, const zero_optim_step_values_t *values)
{
    zero_status_t status = ZERO_OK;
    size_t n = (size_t)e->num_params, nranges = 0;
    int on_store = lamb_on_store(e);
    lamb_pass_t lp = {.values = values};
    double *sums;
    if (on_store)
        (void)for_each_lamb_range(e, count_range, &nranges);
    sums = zero_calloc(2 * (n ? n : 1) + 2 * nranges, sizeof(double));
    if (sums == NULL) {
        engine_error(e, ZERO_ERR_NO_MEMORY, "step: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    lp.sums = sums;
    lp.range_sums = sums + 2 * (n ? n : 1);
    for (lp.pass = 1; lp.pass <= 2 && status == ZERO_OK; lp.pass++) {
        lp.range = 0;
        status = for_each_lamb_range(e, on_store ? lamb_range_on_store : lamb_range_here, &lp);
        if (on_store) {
            double t0 = zero_clock_now();
            zero_status_t st = zero_store_step_wait(e->store);   /* even after an error: nothing left in flight */
            e->timers.offload_exposed += zero_clock_now() - t0;
            if (status == ZERO_OK)
                status = st;
        }
        if (lp.pass == 1 && status == ZERO_OK) {
            if (on_store) {
                lamb_add_t la = {.range_sums = lp.range_sums, .sums = sums};
                status = for_each_lamb_range(e, add_range_sums, &la);
            } else {
                status = e->ops->result_read(e->ops_ctx, e->result, ENGINE_RESULT_LAMB, 2 * n, sums);
            }
        }
        if (lp.pass == 1 && status == ZERO_OK)
            status = sum_over_ranks_f64(e, sums, 2 * n, "Lamb: summing the parameter norms");
    }
    zero_free(sums);
    return status;
}

/* The fp32 scratch 16-bit groups convert gradients into, held from setup
 * (counted in pools) so the step allocates nothing. */
static zero_status_t overlap_choose(zero_engine_h e);

zero_status_t engine_scratch_alloc(zero_engine_h e)
{
    zero_status_t status = fused_choose(e);
    if (status == ZERO_OK)
        status = overlap_choose(e);
    if (status != ZERO_OK)
        return status;
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        group_state_t *g = &e->groups[gi];
        size_t len = g->own_length < piece_max(e) ? g->own_length : piece_max(e);
        if (e->fused_step) {
            /* Address space only: the direct path at two ranks never writes
             * it (the partial is read in the peer's buffer), the ring backs
             * the pages it writes. In pools_bound, not in pools. */
            size_t bytes = (g->own_length ? g->own_length : 1) *
                           dtype_bytes(zero_comm_split_partial_dtype(e->comm, g->dtype));
            g->peer_dtype = zero_comm_split_partial_dtype(e->comm, g->dtype);
            status = engine_reserve(e, bytes, "fused step: the peers' partial gradients", &g->peer_grads_shared,
                                    &g->peer_grads);
            if (status != ZERO_OK)
                return status;
            e->fused_reserved += bytes;
        }
        if (g->dtype == ZERO_FP32)
            continue;
        if (e->hparams.kind == ZERO_OPTIM_KIND_LAMB)
            for (size_t s = 0; s < g->num_segments; s++)
                if (g->segments[s].length > len)
                    len = g->segments[s].length;
        status = engine_alloc(e, &e->mem.pools, (len ? len : 1) * sizeof(float), "fp32 gradient scratch",
                              (void **)&g->scratch);
        if (status != ZERO_OK)
            return status;
        g->scratch_length = len ? len : 1;
    }
    return ZERO_OK;
}

/* Resident set of this process now and at its peak, in bytes (0 where unknown). */
static void process_rss(uint64_t *now_p, uint64_t *peak_p)
{
    struct rusage usage;
    unsigned long long size_pages, resident_pages;
    FILE *statm = fopen("/proc/self/statm", "r");
    *now_p = 0;
    *peak_p = 0;
    if (statm != NULL) {
        if (fscanf(statm, "%llu %llu", &size_pages, &resident_pages) == 2)
            *now_p = (uint64_t)resident_pages * (uint64_t)sysconf(_SC_PAGESIZE);
        fclose(statm);
    }
    if (getrusage(RUSAGE_SELF, &usage) == 0)
        *peak_p = (uint64_t)usage.ru_maxrss * 1024u;   /* Linux reports KiB */
}

/* memory_breakdown: the engine's own accounting (zero_engine_memory), what
 * libzero holds per memory kind (zero_mem_get_stats) and the process's
 * resident set, in MiB, after the progress line (DeepSpeed's see_memory_usage). */
static void print_memory(zero_engine_h e)
{
    const double mib = 1.0 / (1024.0 * 1024.0);
    const zero_engine_memory_t *m = &e->mem;
    zero_mem_stats_t stats;
    uint64_t rss, rss_peak;
    zero_mem_get_stats(&stats);
    process_rss(&rss, &rss_peak);
    zero_log_emit(ZERO_LOG_LEVEL_INFO, "engine", NULL, 0,
                  "memory (MiB): engine params=%.2f grads=%.2f master=%.2f optim_state=%.2f persistent=%.2f "
                  "buffers=%.2f buffers_peak=%.2f pools=%.2f total=%.2f",
                  (double)m->params * mib, (double)m->grads * mib, (double)m->master * mib,
                  (double)m->optim_state * mib, (double)m->persistent * mib, (double)m->buffers * mib,
                  (double)m->buffers_peak * mib, (double)m->pools * mib, (double)m->total * mib);
    zero_log_emit(ZERO_LOG_LEVEL_INFO, "engine", NULL, 0,
                  "memory (MiB): libzero host=%.2f (peak %.2f) pinned=%.2f (peak %.2f) device=%.2f (peak %.2f); "
                  "process rss=%.2f (peak %.2f)",
                  (double)stats.live_bytes[ZERO_MEM_HOST] * mib, (double)stats.peak_bytes[ZERO_MEM_HOST] * mib,
                  (double)stats.live_bytes[ZERO_MEM_PINNED] * mib, (double)stats.peak_bytes[ZERO_MEM_PINNED] * mib,
                  (double)stats.live_bytes[ZERO_MEM_DEVICE] * mib, (double)stats.peak_bytes[ZERO_MEM_DEVICE] * mib,
                  (double)rss * mib, (double)rss_peak * mib);
}

static void print_step(zero_engine_h e, const zero_step_info_t *info)
{
    uint64_t every = e->config->steps_per_print;
    if (e->rank != 0 || every == 0 || info->global_steps % every != 0 || zero_log_get_level() == ZERO_LOG_LEVEL_OFF)
        return;
    /* Printed whatever the log threshold, as DeepSpeed prints it: the config asked for it. */
    zero_log_emit(ZERO_LOG_LEVEL_INFO, "engine", NULL, 0, "step=%llu skipped=%llu lr=%.6g loss_scale=%g grad_norm=%.6g",
                  (unsigned long long)info->global_steps, (unsigned long long)e->skipped_steps, info->lr,
                  info->loss_scale, info->grad_norm);
    if (e->config->wall_clock_breakdown)
        zero_log_emit(ZERO_LOG_LEVEL_INFO, "engine", NULL, 0,
                      "time (ms, total since start): backward_wait=%.1f reduce=%.1f step=%.1f gather=%.1f",
                      1e3 * e->timers.backward_wait, 1e3 * e->timers.reduce, 1e3 * e->timers.step,
                      1e3 * e->timers.gather);
    if (e->config->memory_breakdown)
        print_memory(e);
}

/* The schedule's values of the step numbered @p global_step (lr, the
 * optimizer's step count, momentum); grad_scale is left to the caller. */
static void step_values(zero_engine_h e, uint64_t global_step, zero_optim_step_values_t *values)
{
    values->lr = zero_lr_schedule_lr(&e->schedule);
    values->step = (int64_t)(global_step - e->skipped_steps);
    values->momentum_cycled = zero_lr_schedule_momentum(&e->schedule, &values->momentum);
}

/*
 * overlap_step: bucket @p b's gradients are final (the boundary micro-batch,
 * its reduction finished): its pieces that the store steps go to it now,
 * undoable, with the values zero_step would give them. They are the same:
 * the schedule and the loss scale change only in zero_step, the step number
 * is the next one, and with gradient_clipping 0 the gradient multiplier is
 * 1 / loss scale whatever the norm (unscale_clip's clip coefficient is 1).
 * A bucket with gradient slices this micro-batch waits for zero_step (its
 * slices may still add to it).
 */
static zero_status_t overlap_submit(zero_engine_h e, int b)
{
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    zero_optim_step_values_t values = {0};
    zero_status_t status;
    uint64_t mark = zero_log_error_mark();
    size_t lo, hi;
    int gi = bucket_span(e, b, &lo, &hi);
    for (int i = bk->first_param; i < bk->first_param + bk->num_params; i++)
        if (e->layout->params[i].bucket == b && e->params[i]->grad_in_slices)
            return ZERO_OK;
    step_values(e, e->global_steps + 1, &values);
    values.grad_scale = (float)(1.0 / zero_loss_scaler_scale(&e->scaler));
    e->buckets[b].overlap_submitted = 1;
    e->overlap_started = 1;
    status = step_span(e, gi, lo, hi, &values, 1, 1);
    if (status != ZERO_OK)   /* this rank's store */
        return engine_fail(e, ENGINE_FAIL_LOCAL, status, mark,
                           "offload_optimizer.overlap_step: handing bucket %d to the CPU step failed", b);
    return ZERO_OK;
}

/* After zero_step's update or undo: no bucket handed over. */
static void overlap_reset(zero_engine_h e)
{
    for (int b = 0; b < e->layout->num_buckets; b++)
        e->buckets[b].overlap_submitted = 0;
    e->overlap_started = 0;
}

/*
 * offload_optimizer.overlap_step at setup: refused where the early step
 * could differ from zero_step's (clipping needs the global norm before any
 * update; Lamb's trust ratio needs norms over ranks; a schedule stepped by
 * hand may change the rate after the backward) or where there is no
 * backward to overlap (stage 1 and adopted buffers reduce at the step). On
 * by then only with a store that steps on the CPU and can undo (CPU offload
 * for device ranks); elsewhere it has no effect.
 */
static zero_status_t overlap_choose(zero_engine_h e)
{
    const char *why = NULL;
    e->overlap_step = 0;
    if (!e->config->zero_optimization.offload_optimizer.overlap_step)
        return ZERO_OK;
    if (engine_grads_whole(e))
        why = "needs ZeRO stage 2 or 3 with the engine's own buffers (stage 1 and adopted flat buffers reduce the "
              "gradients at zero_step, after the backward)";
    else if (e->config->gradient_clipping > 0.0)
        why = "needs gradient_clipping 0 (clipping scales every gradient by the global norm, known only after the "
              "backward)";
    else if (e->hparams.kind == ZERO_OPTIM_KIND_LAMB)
        why = "does not run Lamb (its trust ratio needs norms summed over the ranks between its two phases)";
    else if (e->manual_lr_schedule)
        why = "needs the engine to step the LR schedule (manual_lr_schedule could change the rate after the buckets "
              "were stepped)";
    if (why != NULL) {
        engine_error(e, ZERO_ERR_CONFIG, "zero_optimization.offload_optimizer.overlap_step %s", why);
        return ZERO_ERR_CONFIG;
    }
    if (!zero_store_prefers_step(e->store) || !zero_store_can_cancel(e->store)) {
        if (e->rank == 0)
            ZERO_LOG_INFO("zero_optimization.offload_optimizer.overlap_step has no effect: the %s store does not step "
                          "the optimizer on the CPU (only offload_optimizer \"cpu\" for ranks that train in device "
                          "memory does)", e->store->ops->name);
        return ZERO_OK;
    }
    e->overlap_step = 1;
    return ZERO_OK;
}

zero_status_t zero_step(zero_engine_h e, zero_step_info_t *info_p)
{
    zero_status_t status = ZERO_OK;
    zero_step_info_t info = {0};
    zero_optim_step_values_t values = {0};
    double totals[2] = {0.0, 0.0};
    double scale, lr, t0;
    uint64_t check_mark;
    int overflow;

    if (e == NULL)
        return ZERO_ERR_INVALID_ARG;
    if (e->state != ENGINE_BACKWARD_DONE) {
        engine_error(e, ZERO_ERR_STATE, "zero_step: %s",
                     e->state == ENGINE_FAILED ? "the engine failed earlier; destroy it"
                                               : "no completed backward (call zero_backward_begin/_end first)");
        return ZERO_ERR_STATE;
    }
    if (e->stage == 3) {
        for (int i = 0; i < e->num_params; i++)
            if (e->params[i]->gather_count > 0 && !e->params[i]->persistent) {
                engine_error(e, ZERO_ERR_STATE, "zero_step: %s is still gathered; release every parameter first",
                             e->params[i]->name);
                return ZERO_ERR_STATE;
            }
        e->trace_done = e->trace_len > 0;
    }
    status = engine_slices_check_released(e, "zero_step");
    if (status != ZERO_OK)
        return status;
    e->micro_steps++;
    info.micro_steps = e->micro_steps;
    scale = zero_loss_scaler_scale(&e->scaler);
    info.loss_scale = scale;
    info.lr = zero_lr_schedule_lr(&e->schedule);
    if (++e->window_micro < e->gas) {
        note_held_grads(e);
        e->state = ENGINE_READY;
        info.global_steps = e->global_steps;
        if (info_p)
            *info_p = info;
        return ZERO_OK;
    }
    info.boundary = 1;
    e->window_micro = 0;

    /* 1. reduce (stages 0-1 and adopted buffers; stages 2-3 reduced during the backward) */
    t0 = zero_clock_now();
    if (engine_grads_whole(e)) {
        status = reduce_full_grads(e);
        if (status != ZERO_OK)
            return status;
    }
    if (e->stage == 3)
        engine_gather_drop_all(e);   /* in-flight gathers read the shards the step rewrites */

    /* 2. overflow check and global norm over the owned gradients into the
     * result record, read once, summed over ranks */
    check_mark = zero_log_error_mark();
    status = e->ops->result_clear(e->ops_ctx, e->result, e->result_slots);
    if (status == ZERO_OK)
        status = check_grads(e);
    if (status == ZERO_OK)
        status = e->ops->result_read(e->ops_ctx, e->result, ENGINE_RESULT_NONFINITE, 2, totals);
    /* The host has waited for the device (the step's one wait): the
     * collectives the stream waited for are complete; free their requests. */
    if (status != ZERO_OK)   /* this rank's kernels or its read of their results */
        return engine_fail(e, ENGINE_FAIL_LOCAL, status, check_mark, "step: the gradient check failed");
    status = engine_settle(e);   /* a failed collective: engine_settle fails the engine */
    if (status != ZERO_OK)
        return status;
    status = sum_over_ranks_f64(e, totals, 2, "step: summing the overflow counts and gradient norms");
    if (status != ZERO_OK)
        return status;
    e->timers.reduce += zero_clock_now() - t0;
    overflow = totals[ENGINE_RESULT_NONFINITE] != 0.0 || !isfinite(totals[ENGINE_RESULT_SUM_SQUARES]);
    if (overflow)
        info.grad_norm = INFINITY;
    else
        e->ops->unscale_clip(e->ops_ctx, totals[ENGINE_RESULT_SUM_SQUARES], scale, e->config->gradient_clipping,
                             &info.grad_norm, &values.grad_scale);
    e->global_steps++;
    info.global_steps = e->global_steps;

    if (overflow) {
        uint64_t mark = zero_log_error_mark();
        if (e->overlap_started) {
            /* overlap_step: buckets already stepped on the CPU go back to before this step */
            t0 = zero_clock_now();
            status = zero_store_step_cancel(e->store);
            e->timers.offload_exposed += zero_clock_now() - t0;
            overlap_reset(e);
            if (status != ZERO_OK)   /* this rank's store */
                return engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "step %llu overflowed, and undoing the "
                                   "buckets stepped during the backward failed (%s)",
                                   (unsigned long long)e->global_steps, zero_status_string(status));
        }
        status = zero_loss_scaler_update(&e->scaler, 1);
        if (status != ZERO_OK)   /* every rank decides it from the same summed overflow count */
            return engine_fail(e, ENGINE_FAIL_SHARED, status, mark, "fp16 gradients overflow at the minimum loss "
                               "scale %g: training cannot continue", scale);
        e->skipped_steps++;
        info.skipped = 1;
        if (e->precision != ZERO_FP16)
            ZERO_LOG_WARN("step %llu: inf/nan in the gradients; update skipped", (unsigned long long)e->global_steps);
    } else {
        /* 3. the optimizer over the owned range (unscale and clip folded into
         * grad_scale), fused with the 16-bit write */
        step_values(e, e->global_steps, &values);
        lr = values.lr;
        e->last_grad_norm = info.grad_norm;
        t0 = zero_clock_now();
        check_mark = zero_log_error_mark();
        if (e->hparams.kind == ZERO_OPTIM_KIND_LAMB)
            status = lamb_step(e, &values);
        else
            status = elementwise_step(e, &values);
        overlap_reset(e);
        if (status != ZERO_OK)   /* this rank's kernels or state store; a half-applied update leaves the state
                                  * inconsistent */
            return engine_fail(e, ENGINE_FAIL_LOCAL, status, check_mark, "step %llu: the optimizer update failed (%s)",
                               (unsigned long long)e->global_steps, zero_status_string(status));
        e->timers.step += zero_clock_now() - t0;

        /* 4. bring the weights back */
        t0 = zero_clock_now();
        status = publish_weights(e);
        if (status != ZERO_OK)
            return status;
        e->timers.gather += zero_clock_now() - t0;
        if (!e->manual_lr_schedule)
            zero_lr_schedule_step(&e->schedule);
        zero_loss_scaler_update(&e->scaler, 0);   /* a clean step never fails */
        info.stepped = 1;
        info.lr = lr;
    }
    zero_grads(e);
    print_step(e, &info);
    e->state = ENGINE_READY;
    if (info_p)
        *info_p = info;
    return ZERO_OK;
}
