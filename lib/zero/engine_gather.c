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
 *
 * Slices (zero_gather_slices): rows [first, first + count) of a parameter's
 * first dimension, one layer of a stacked tensor. The layout keeps a
 * parameter whole in one bucket, so a slice's elements lie in the shards of
 * one or a few consecutive ranks; each of those broadcasts its part straight
 * into the slice's block of the gather pool. Over all the layers of a tensor
 * every rank sends about its own shard once, as in the allgather of the whole
 * tensor. A gathered slice is a slot of e->slices (held by the trainer,
 * prefetched, or kept for reuse), and slices share the recorded order, the
 * prefetch window, the reuse rule and stage3_max_live_parameters with whole
 * parameters. At stages 0-2 (and for persistent parameters) a slice is a
 * window on weights the engine holds anyway; the bookkeeping is the same, so
 * balance errors show at every stage.
 *
 * offload_param "nvme" (host ranks): the shards are in a file
 * (offload/param_store.h); a gather reads this rank's part into its place in
 * the gathered buffer (a slice's part into the slice) and gathers in place,
 * and after each gather the next traced parameter's first buffer is read
 * ahead. engine_shard_open/close are the step's way to the shard either way.
 *
 * offload_param "cpu" (device ranks): the shards are in host memory
 * (offload/param_host.h); a gather uploads this rank's part through pinned
 * slots into its place in the gathered device buffer on the store's copy
 * stream and gathers in place after the upload's event, so a prefetched
 * gather (gather_ahead) uploads ahead in the traced order while the
 * trainer's stream runs on.
 * Device memory holds only gathered weights and the step's staging window.
 *
 * ZeRO++ qwZ (zero_quantized_weights): a gather travels as int8 blocks with a
 * float scale per 256 elements (comm/quant_coll.h) and is decoded on arrival,
 * every rank's slice including this rank's own, so every rank computes with
 * the same weights. The encoded bytes live behind the gathered weights in the
 * same block (one pool get per gather). Persistent parameters are gathered
 * unquantized: they are gathered once per step and are small by definition.
 *
 * ZeRO++ hpZ (zero_hpz_partition_size P > 1): each group of P consecutive
 * ranks (a node) holds a secondary copy of the 16-bit weights, every bucket
 * split P ways, and the non-persistent gathers (whole buckets and slices)
 * read it over the group's communicator, so they stay inside the node. After
 * the shards changed (the step, a checkpoint load, set-up:
 * engine_gather_drop_all marks every bucket's part stale), a bucket's first
 * gather is over all ranks from the shards, the one gather per step that
 * crosses nodes, and its finish keeps the group's part of the weights it
 * brought. So the refresh is the forward's own gathers, prefetched and
 * overlapped with the trainer's compute as they are, as DeepSpeed does; the
 * gathers after it stay inside the group. Under qwZ the refresh travels
 * quantized (decoded as any qwZ gather, so its block holds the wire bytes
 * behind the weights) and the gathers inside the group do not: they copy the
 * refreshed (decoded) weights exactly, so hpZ alone changes no bit, and hpZ
 * with qwZ gives the bits qwZ alone gives. Slices read the copy too: the
 * first slice gathered while some bucket's part is stale refreshes every
 * stale part at once (hpz_refresh: allgathers into the two scratch buffers,
 * keeping only the group's part, decoded straight into the copy under qwZ).
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_gather.h"

#include "comm/quant_coll.h"
#include "util/alloc.h"
#include "util/log.h"

#include <inttypes.h>
#include <string.h>

static size_t bucket_bytes(zero_engine_h e, int b)
{
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    return bk->length * dtype_bytes(e->layout->groups[bk->group].dtype);
}

/* Where the encoded bytes start in a qwZ block: behind the weights, aligned. */
static size_t wire_offset(zero_engine_h e, int b)
{
    return (bucket_bytes(e, b) + ZERO_MEM_ALIGNMENT - 1) / ZERO_MEM_ALIGNMENT * ZERO_MEM_ALIGNMENT;
}

size_t engine_gather_wire_bytes(zero_engine_h e, int b)
{
    if (!e->quantized_weights || e->buckets[b].persistent_slot != NULL)
        return 0;
    return zero_comm_quant_wire_bytes(ZERO_QUANT_INT8, e->layout->buckets[b].length / (size_t)e->world, e->world);
}

/* qwZ's allgather of @p slice elements a rank from @p shard into @p out, the
 * encoded blocks in @p wire. On host memory the quantized allgather
 * (comm/quant_coll.h) encodes, and decodes as it finishes. On device memory
 * the shard is encoded on the engine's stream into this rank's block of
 * @p wire, the blocks travel as bytes in an allgather ordered on that stream
 * (in place, so no copy), and quant_gather_decode decodes them after the
 * wait (@p out is then not touched here, and may be NULL). Both give the same
 * bytes: the kernels and quant.c share quant_elem.h. */
zero_status_t engine_quant_encode_slot(zero_engine_h e, zero_dtype_t dtype, const void *src, size_t n, void *slot)
{
    size_t used = zero_quant_bytes(ZERO_QUANT_INT8, n);
    zero_status_t status = e->ops->quant_encode8(e->ops_ctx, dtype, src, n, slot);
    /* the slot's padding behind the code is zeroed, as quant_coll.c's
     * encode_slot does, so no uninitialised device byte goes on the wire */
    if (status == ZERO_OK)
        status = e->ops->zero(e->ops_ctx, (char *)slot + used, zero_comm_quant_stride(ZERO_QUANT_INT8, n) - used);
    return status;
}

static zero_status_t quant_gather_start(zero_engine_h e, const void *shard, void *out, size_t slice,
                                        zero_dtype_t dtype, void *wire, zero_comm_request_h *req)
{
    size_t stride = zero_comm_quant_stride(ZERO_QUANT_INT8, slice);
    char *own = (char *)wire + (size_t)e->rank * stride;
    zero_status_t status;
    if (e->ops->quant_encode8 == NULL)
        return zero_comm_allgather_quant_start(e->comm, shard, out, slice, dtype, ZERO_QUANT_INT8, wire, req);
    status = engine_quant_encode_slot(e, dtype, shard, slice, own);
    if (status != ZERO_OK)
        return status;
    return engine_allgather_start(e, own, wire, stride, ZERO_U8, req);
}

/* After the wait for quant_gather_start's request: the blocks of ranks
 * [@p first, @p first + @p count) decoded into @p out, one slice after the
 * other, on the engine's stream (device memory; on host memory the request
 * has decoded already). */
static zero_status_t quant_gather_decode(zero_engine_h e, const void *wire, void *out, size_t slice,
                                         zero_dtype_t dtype, int first, int count, const char *what)
{
    size_t stride = zero_comm_quant_stride(ZERO_QUANT_INT8, slice), esz = dtype_bytes(dtype);
    uint64_t mark = zero_log_error_mark();
    if (e->ops->quant_decode8 == NULL)
        return ZERO_OK;
    for (int r = first; r < first + count; r++) {
        zero_status_t status = e->ops->quant_decode8(e->ops_ctx, dtype, (const char *)wire + (size_t)r * stride,
                                                     slice, (char *)out + (size_t)(r - first) * slice * esz);
        if (status != ZERO_OK)   /* this rank's kernel launch */
            return engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "%s: decoding rank %d's int8 blocks failed: %s",
                               what, r, zero_status_string(status));
    }
    return ZERO_OK;
}

/* ---- hpZ: the secondary copy ---- */

/* Where bucket @p b's part lies in the group's secondary copy (elements). */
static size_t secondary_offset(zero_engine_h e, int b)
{
    return zero_layout_bucket_shard_offset(e->layout, b) * (size_t)(e->world / e->hpz);
}

/* Whether bucket @p b's part of the secondary copy is out of date. A change
 * of the shards (e->hpz_stale) makes every bucket's part so, here, at the
 * first gather after it: a refreshing gather still in flight then (none is,
 * engine_gather_drop_all finishes them) could not make its part current. */
static int hpz_bucket_stale(zero_engine_h e, int b)
{
    if (e->hpz_stale) {
        for (int k = 0; k < e->layout->num_buckets; k++)
            e->buckets[k].hpz_stale = e->buckets[k].persistent_slot == NULL;
        e->hpz_stale = 0;
    }
    return e->buckets[b].hpz_stale;
}

/* Copies this group's part of bucket @p b's full weights @p full (a
 * refresh's, over all ranks) into the secondary copy, which is then current. */
static void hpz_keep_part(zero_engine_h e, int b, const void *full)
{
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    group_state_t *g = &e->groups[bk->group];
    size_t esz = dtype_bytes(g->dtype), part = bk->length / (size_t)e->hpz;
    engine_copy(e, (char *)g->params_secondary + secondary_offset(e, b) * esz,
                (const char *)full + (size_t)e->hpz_rank * part * esz, part * esz);
    e->buckets[b].hpz_stale = 0;
}

/* Waits for the refresh of bucket @p b in scratch slot @p slot and keeps this
 * group's part of it (a quantized refresh decodes only that part, into the
 * copy: on the host as the request finished, on the device here). */
static zero_status_t hpz_keep(zero_engine_h e, int slot, int b, zero_comm_request_h *req)
{
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    group_state_t *g = &e->groups[bk->group];
    size_t esz = dtype_bytes(g->dtype);
    char *tmp = (char *)e->hpz_scratch + (size_t)slot * e->hpz_scratch_bytes;
    zero_status_t status = engine_wait(e, req, "hpZ refresh allgather");
    if (status != ZERO_OK)
        return status;
    if (engine_gather_wire_bytes(e, b) == 0) {
        hpz_keep_part(e, b, tmp);
        return ZERO_OK;
    }
    /* the host's request decoded the part already (quant_gather_decode does nothing there) */
    status = quant_gather_decode(e, tmp, (char *)g->params_secondary + secondary_offset(e, b) * esz,
                                 bk->length / (size_t)e->world, g->dtype, e->hpz_rank * (e->world / e->hpz),
                                 e->world / e->hpz, "hpZ refresh allgather");
    if (status == ZERO_OK)
        e->buckets[b].hpz_stale = 0;
    return status;
}

size_t engine_gather_hpz_scratch_bytes(zero_engine_h e)
{
    size_t most = 0;
    if (e->hpz <= 1)
        return 0;
    for (int b = 0; b < e->layout->num_buckets; b++) {
        /* quantized, only the wire: the group's part is decoded straight into the copy */
        size_t bytes = engine_gather_wire_bytes(e, b) > 0 ? engine_gather_wire_bytes(e, b) : bucket_bytes(e, b);
        if (e->buckets[b].persistent_slot == NULL && bytes > most)
            most = bytes;
    }
    return (most + ZERO_MEM_ALIGNMENT - 1) / ZERO_MEM_ALIGNMENT * ZERO_MEM_ALIGNMENT;
}

/* Refreshes every stale part of the secondary copy from the shards (for the
 * slices, which read the copy without gathering its bucket): an allgather of
 * each such bucket over all ranks (quantized under qwZ), two in flight, each
 * keeping this group's part. A bucket whose refreshing gather is in flight
 * finishes that instead. */
static zero_status_t hpz_refresh(zero_engine_h e)
{
    int in_slot[2] = {-1, -1}, started = 0, stale = 0;
    zero_comm_request_h reqs[2] = {NULL, NULL};
    zero_status_t status = ZERO_OK;

    for (int b = 0; b < e->layout->num_buckets && status == ZERO_OK; b++) {
        if (hpz_bucket_stale(e, b) && e->buckets[b].hpz_refreshing)
            status = engine_gather_bucket_finish(e, b);
        stale += e->buckets[b].hpz_stale;
    }
    if (status != ZERO_OK || stale == 0)
        return status;
    if (e->hpz_scratch == NULL) {
        size_t most = engine_gather_hpz_scratch_bytes(e);   /* > 0: a non-persistent bucket is stale */
        status = engine_alloc_shared(e, &e->mem.pools, 2 * most, "hpZ refresh buffers", &e->hpz_scratch);
        if (status != ZERO_OK)
            return status;
        e->hpz_scratch_bytes = most;
    }
    for (int b = 0; b < e->layout->num_buckets && status == ZERO_OK; b++) {
        const zero_layout_bucket_t *bk = &e->layout->buckets[b];
        group_state_t *g = &e->groups[bk->group];
        size_t esz = dtype_bytes(g->dtype), slice = bk->length / (size_t)e->world;
        const char *shard = (const char *)g->params_shard + zero_layout_bucket_shard_offset(e->layout, b) * esz;
        int slot = started % 2;
        char *tmp = (char *)e->hpz_scratch + (size_t)slot * e->hpz_scratch_bytes;
        uint64_t mark;
        if (!e->buckets[b].hpz_stale)
            continue;
        if (in_slot[slot] >= 0) {   /* the older of the two in flight */
            status = hpz_keep(e, slot, in_slot[slot], &reqs[slot]);
            in_slot[slot] = -1;
            if (status != ZERO_OK)
                break;
        }
        mark = zero_log_error_mark();
        if (engine_gather_wire_bytes(e, b) > 0 && e->ops->quant_encode8 != NULL)   /* device: decoded in hpz_keep */
            status = quant_gather_start(e, shard, NULL, slice, g->dtype, tmp, &reqs[slot]);   /* out: host only */
        else if (engine_gather_wire_bytes(e, b) > 0)   /* only the group's part is decoded, straight into the copy */
            status = zero_comm_allgather_quant_part_start(e->comm, shard,
                                                          (char *)g->params_secondary + secondary_offset(e, b) * esz,
                                                          slice, g->dtype, ZERO_QUANT_INT8,
                                                          e->hpz_rank * (e->world / e->hpz), e->world / e->hpz,
                                                          tmp, &reqs[slot]);
        else
            status = engine_allgather_start(e, shard, tmp, slice, g->dtype, &reqs[slot]);
        if (status != ZERO_OK) {   /* not started on this rank: the others would wait for it */
            engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "hpZ: the allgather refreshing %s failed to start: %s",
                        e->params[bk->first_param]->name, zero_status_string(status));
            break;
        }
        in_slot[slot] = b;
        started++;
    }
    for (int i = 0; i < 2; i++) {   /* the rest, older first */
        int slot = (started + i) % 2;
        if (in_slot[slot] < 0)
            continue;
        if (status == ZERO_OK)
            status = hpz_keep(e, slot, in_slot[slot], &reqs[slot]);
        else
            (void)engine_wait(e, &reqs[slot], "hpZ refresh allgather");
    }
    return status;
}

/* Whether bucket @p b's next gather travels quantized (qwZ): under hpZ only
 * the refresh does (the gathers inside the group copy decoded weights), so
 * only its block holds wire bytes. As gather_bucket_start decides. */
static int gather_quantized(zero_engine_h e, int b)
{
    return engine_gather_wire_bytes(e, b) > 0 && (e->hpz <= 1 || hpz_bucket_stale(e, b));
}

/* Bytes of the block bucket @p b's next gather takes: the weights and, when
 * it travels quantized, the wire bytes behind them. */
static size_t block_bytes(zero_engine_h e, int b)
{
    return gather_quantized(e, b) ? wire_offset(e, b) + engine_gather_wire_bytes(e, b) : bucket_bytes(e, b);
}

static void free_bucket(zero_engine_h e, int b);
static void free_slice(zero_engine_h e, int s);

static int room_for(zero_engine_h e, uint64_t len, size_t bytes)
{
    if (e->live_elements + len > e->config->zero_optimization.stage3_max_live_parameters ||
        e->gather_pool.blocks_out == e->gather_pool.max_blocks)
        return 0;
    for (int k = 0; k < e->gather_pool.num_free; k++)
        if (e->gather_pool.free[k].length >= bytes)
            return 1;
    return 0;
}

/* Drops released weights kept for reuse (zero_release, zero_release_slices)
 * until @p len more elements fit within stage3_max_live_parameters and the
 * gather pool has a block of @p bytes, or nothing kept is left. */
static void make_room(zero_engine_h e, uint64_t len, size_t bytes)
{
    for (int b = 0; b < e->layout->num_buckets; b++) {
        if (room_for(e, len, bytes))
            return;
        if (e->buckets[b].cached)
            free_bucket(e, b);
    }
    for (int s = 0; s < e->num_slices; s++) {
        if (room_for(e, len, bytes))
            return;
        if (e->slices[s].param >= 0 && e->slices[s].cached)
            free_slice(e, s);
    }
}

/* A home for bucket @p b's full weights: its persistent slot, a pool block,
 * or (on demand only) a one-off buffer when the pool has no room; NULL with
 * ZERO_OK when a prefetch finds the pool full. */
static zero_status_t gathered_buffer(zero_engine_h e, int b, int prefetch)
{
    bucket_state_t *bs = &e->buckets[b];
    size_t bytes = block_bytes(e, b);
    zero_status_t status;
    if (bs->persistent_slot != NULL) {
        bs->gathered = bs->persistent_slot;
        bs->gathered_source = GATHERED_PERSISTENT;
        return ZERO_OK;
    }
    make_room(e, e->layout->buckets[b].length, bytes);
    bs->gathered = engine_pool_get(e, &e->gather_pool, bytes);
    bs->gathered_bytes = bytes;
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
                      e->params[e->layout->buckets[b].first_param]->name, e->gather_pool.capacity, bytes);
    }
    status = engine_alloc(e, &e->mem.buffers, bytes, "stage-3 gathered weights", &bs->gathered);
    if (status != ZERO_OK)
        return status;
    bs->gathered_source = GATHERED_ONE_OFF;
    return ZERO_OK;
}

/* ---- the shard: in memory, or in the parameter file (offload_param "nvme") ---- */

size_t engine_shard_max(zero_engine_h e)
{
    if (e->param_host != NULL)
        return e->param_stage_elems;
    return e->param_store != NULL ? zero_param_store_max_window(e->param_store) : 0;
}

void *engine_shard_host(zero_engine_h e, int gi, size_t so)
{
    if (e->param_host == NULL)
        return NULL;
    return (char *)zero_param_host_shard(e->param_host, gi) + so * dtype_bytes(e->groups[gi].dtype);
}

zero_status_t engine_shard_open(zero_engine_h e, int gi, size_t so, size_t n, engine_shard_window_t *w)
{
    uint64_t mark = zero_log_error_mark();
    zero_status_t status;
    memset(w, 0, sizeof(*w));
    if (e->param_host != NULL) {
        if (n > e->param_stage_elems) {
            engine_error(e, ZERO_ERR_INVALID_ARG, "the %s weight shard window [%zu, +%zu) is longer than its device "
                         "staging (%zu elements)", zero_dtype_string(e->groups[gi].dtype), so, n, e->param_stage_elems);
            return ZERO_ERR_INVALID_ARG;
        }
        w->data = e->param_stage;
        w->staged = 1;
        w->group = gi;
        w->so = so;
        w->n = n;
        return ZERO_OK;
    }
    if (e->param_store == NULL) {
        w->data = (char *)e->groups[gi].params_shard + so * dtype_bytes(e->groups[gi].dtype);
        return ZERO_OK;
    }
    w->file.group = gi;
    w->file.begin = so;
    w->file.count = n;
    status = zero_param_store_open(e->param_store, &w->file);
    if (status != ZERO_OK) {
        engine_keep_error(e, mark, "the %s weight shard at [%zu, +%zu) cannot be read from its file: %s",
                          zero_dtype_string(e->groups[gi].dtype), so, n, zero_status_string(status));
        return status;
    }
    w->data = w->file.data;
    return ZERO_OK;
}

zero_status_t engine_shard_close(zero_engine_h e, engine_shard_window_t *w, int dirty)
{
    uint64_t mark = zero_log_error_mark();
    zero_status_t status = ZERO_OK;
    if (w->staged && dirty) {
        status = zero_param_host_download(e->param_host, w->group, w->so, w->n, e->param_stage);
        if (status != ZERO_OK)
            engine_keep_error(e, mark, "copying the %s weight shard at [%zu, +%zu) to host memory failed: %s",
                              zero_dtype_string(e->groups[w->group].dtype), w->so, w->n, zero_status_string(status));
    }
    w->staged = 0;
    if (e->param_store != NULL && w->file.open) {
        status = zero_param_store_close(e->param_store, &w->file, dirty);
        if (status != ZERO_OK)
            engine_keep_error(e, mark, "writing the weight shard at [%zu, +%zu) to its file failed: %s",
                              w->file.begin, w->file.count, zero_status_string(status));
    }
    w->data = NULL;
    return status;
}

/* Copies shard elements [so, so + n) of group @p gi into @p dst (offload_param "nvme"). */
static zero_status_t shard_read(zero_engine_h e, int gi, size_t so, size_t n, void *dst)
{
    uint64_t mark = zero_log_error_mark();
    zero_status_t status = zero_param_store_read(e->param_store, gi, so, n, dst);
    if (status != ZERO_OK)
        engine_keep_error(e, mark, "reading the %s weight shard at [%zu, +%zu) from its file failed: %s",
                          zero_dtype_string(e->groups[gi].dtype), so, n, zero_status_string(status));
    return status;
}

static void drop_buffer(zero_engine_h e, int b)
{
    bucket_state_t *bs = &e->buckets[b];
    if (bs->gathered_source == GATHERED_POOL)
        engine_pool_put(e, &e->gather_pool, bs->gathered, bs->gathered_bytes);
    else if (bs->gathered_source == GATHERED_ONE_OFF)
        engine_free(e, &e->mem.buffers, bs->gathered_bytes, bs->gathered);
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
    const char *shard;
    void *uploaded = NULL;   /* offload_param "cpu": the upload's event, which the allgather waits for */
    int refresh;             /* hpZ: over all ranks, keeping the group's part at the finish */
    zero_status_t status;
    uint64_t mark;

    if (bs->gathered != NULL)
        return ZERO_OK;   /* present or in flight */
    refresh = e->hpz > 1 && bs->persistent_slot == NULL && hpz_bucket_stale(e, b);
    status = gathered_buffer(e, b, prefetch);
    if (status != ZERO_OK)   /* this rank's memory (engine_alloc recorded why); the other ranks start this allgather */
        return engine_fail(e, ENGINE_FAIL_LOCAL, status, zero_log_error_mark(), "%s", e->last_error);
    if (bs->gathered == NULL)
        return ZERO_OK;   /* a prefetch without room: nothing started (as before) */
    if (e->param_store != NULL) {
        /* this rank's part is read from the file into its place in the
         * gathered buffer, and the allgather runs in place */
        void *mine = (char *)bs->gathered + (size_t)e->rank * slice * esz;
        status = shard_read(e, bk->group, zero_layout_bucket_shard_offset(e->layout, b), slice, mine);
        if (status != ZERO_OK) {   /* this rank's parameter file; the other ranks started this allgather */
            drop_buffer(e, b);
            return engine_fail(e, ENGINE_FAIL_LOCAL, status, zero_log_error_mark(), "%s", e->last_error);
        }
        shard = mine;
    } else if (e->param_host != NULL) {
        /* offload_param "cpu" (device ranks): this rank's part is uploaded
         * from host memory into its place, and the allgather runs in place,
         * after the upload's event (not the trainer's stream, which never
         * waits for an upload) */
        void *mine = (char *)bs->gathered + (size_t)e->rank * slice * esz;
        mark = zero_log_error_mark();
        status = zero_param_host_upload(e->param_host, bk->group, zero_layout_bucket_shard_offset(e->layout, b), slice,
                                        mine, &uploaded);
        if (status != ZERO_OK) {
            drop_buffer(e, b);   /* this rank's upload; the other ranks started this allgather */
            return engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "uploading the %s weight shard of %s failed: %s",
                               zero_dtype_string(g->dtype), e->params[bk->first_param]->name,
                               zero_status_string(status));
        }
        shard = mine;
    } else {
        shard = (const char *)g->params_shard + zero_layout_bucket_shard_offset(e->layout, b) * esz;
    }
    mark = zero_log_error_mark();
    bs->gather_quantized = 0;
    if (e->hpz > 1 && bs->persistent_slot == NULL && !refresh)   /* from the group's secondary copy */
        status = engine_allgather_start_on(e, e->hpz_comm,
                                           (const char *)g->params_secondary + secondary_offset(e, b) * esz,
                                           bs->gathered, bk->length / (size_t)e->hpz, g->dtype, &bs->gather_req);
    else if ((bs->gather_quantized = engine_gather_wire_bytes(e, b) > 0))
        status = quant_gather_start(e, shard, bs->gathered, slice, g->dtype, (char *)bs->gathered + wire_offset(e, b),
                                    &bs->gather_req);
    else
        status = engine_allgather_start_after(e, shard, bs->gathered, slice, g->dtype, uploaded, &bs->gather_req);
    bs->hpz_refreshing = refresh && status == ZERO_OK;
    if (status != ZERO_OK) {   /* not started on this rank: the others would wait for it */
        drop_buffer(e, b);
        return engine_fail(e, ENGINE_FAIL_LOCAL, status, mark, "allgather of %s failed to start: %s",
                           e->params[bk->first_param]->name, zero_status_string(status));
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
    bucket_state_t *bs = &e->buckets[b];
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    int quantized = bs->gather_req != NULL && bs->gather_quantized;   /* decoded once */
    int refreshed = bs->gather_req != NULL && bs->hpz_refreshing;
    zero_status_t status = engine_wait(e, &bs->gather_req, "stage-3 allgather");
    bs->hpz_refreshing = 0;
    if (status == ZERO_OK && quantized)
        status = quant_gather_decode(e, (char *)bs->gathered + wire_offset(e, b), bs->gathered,
                                     bk->length / (size_t)e->world, e->groups[bk->group].dtype, 0, e->world,
                                     "stage-3 allgather");
    if (status == ZERO_OK && refreshed)   /* hpZ: the group's part of what it brought is the copy's */
        hpz_keep_part(e, b, bs->gathered);
    return status;
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

/* ---- slices: slots, ranges, starting and freeing ---- */

size_t engine_row_elems(const struct zero_param *p)
{
    return p->ndim > 0 && p->shape[0] > 0 ? p->numel / (size_t)p->shape[0] : p->numel;
}

zero_status_t engine_slice_check(zero_engine_h e, zero_param_h p, int64_t first, int64_t count, const char *call)
{
    if (p == NULL || p->engine != e) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "%s: not a parameter of this engine", call);
        return ZERO_ERR_INVALID_ARG;
    }
    if (p->ndim < 1) {
        engine_error(e, ZERO_ERR_INVALID_ARG,
                     "%s(%s, rows [%" PRId64 ", %" PRId64 ")): a scalar has no first dimension to slice", call, p->name,
                     first, first + count);
        return ZERO_ERR_INVALID_ARG;
    }
    if (first < 0 || count < 1 || first >= p->shape[0] || count > p->shape[0] - first) {
        engine_error(e, ZERO_ERR_INVALID_ARG,
                     "%s(%s, rows [%" PRId64 ", %" PRId64 ")): out of range: the first dimension has %" PRId64
                     " indices (first must be in [0, %" PRId64 "), count >= 1, first + count <= %" PRId64 ")",
                     call, p->name, first, first + count, p->shape[0], p->shape[0], p->shape[0]);
        return ZERO_ERR_INVALID_ARG;
    }
    if (e->state == ENGINE_REGISTERING || e->state == ENGINE_FAILED) {
        engine_error(e, ZERO_ERR_STATE, "%s(%s, rows [%" PRId64 ", %" PRId64 ")): %s", call, p->name, first,
                     first + count,
                     e->state == ENGINE_FAILED ? "the engine failed earlier; destroy it" : "call zero_engine_setup first");
        return ZERO_ERR_STATE;
    }
    if (!e->ops->host_readable) {
        /* slices' broadcasts and allreduces are not ordered on the trainer's stream yet */
        engine_error(e, ZERO_ERR_UNSUPPORTED, "%s(%s, rows [%" PRId64 ", %" PRId64 ")): slices of parameters in %s "
                     "memory are not implemented in this version", call, p->name, first, first + count,
                     zero_mem_kind_string(e->kind));
        return ZERO_ERR_UNSUPPORTED;
    }
    return ZERO_OK;
}

static int rows_overlap(int64_t a_first, int64_t a_count, int64_t b_first, int64_t b_count)
{
    return a_first < b_first + b_count && b_first < a_first + a_count;
}

/* The slot holding exactly rows [first, first + count) of parameter @p param, or -1. */
static int find_slice(zero_engine_h e, int param, int64_t first, int64_t count)
{
    for (int s = 0; s < e->num_slices; s++)
        if (e->slices[s].param == param && e->slices[s].first == first && e->slices[s].count == count)
            return s;
    return -1;
}

/* A slot of parameter @p param overlapping the rows without being them, held
 * by the trainer (@p held 1) or not (0), or -1. */
static int find_overlap(zero_engine_h e, int param, int64_t first, int64_t count, int held)
{
    for (int s = 0; s < e->num_slices; s++) {
        const engine_slice_t *sl = &e->slices[s];
        if (sl->param == param && (sl->held > 0) == held && !(sl->first == first && sl->count == count) &&
            rows_overlap(sl->first, sl->count, first, count))
            return s;
    }
    return -1;
}

/* A free slot (the array grows during the first steps, then is reused). */
static int slice_slot(zero_engine_h e)
{
    engine_slice_t *grown;
    for (int s = 0; s < e->num_slices; s++)
        if (e->slices[s].param < 0)
            return s;
    grown = zero_realloc(e->slices, ((size_t)e->num_slices + 1) * sizeof(*grown));
    if (grown == NULL)
        return -1;
    e->slices = grown;
    memset(&grown[e->num_slices], 0, sizeof(*grown));
    grown[e->num_slices].param = -1;
    grown[e->num_slices].reqs = zero_calloc((size_t)e->world, sizeof(zero_comm_request_h));
    if (grown[e->num_slices].reqs == NULL)
        return -1;
    return e->num_slices++;
}

static zero_status_t slice_finish(zero_engine_h e, int s)
{
    engine_slice_t *sl = &e->slices[s];
    zero_status_t status = ZERO_OK;
    for (int k = 0; k < sl->num_reqs; k++) {
        zero_status_t st = engine_wait(e, &sl->reqs[k], "stage-3 slice broadcast");
        if (status == ZERO_OK)
            status = st;
    }
    sl->num_reqs = 0;
    return status;
}

static void free_slice(zero_engine_h e, int s)
{
    engine_slice_t *sl = &e->slices[s];
    slice_finish(e, s);
    if (sl->source == GATHERED_POOL)
        engine_pool_put(e, &e->gather_pool, sl->data, sl->bytes);
    else if (sl->source == GATHERED_ONE_OFF)
        engine_free(e, &e->mem.buffers, sl->bytes, sl->data);
    if (sl->source != GATHERED_NONE)
        e->live_elements -= (uint64_t)sl->count * engine_row_elems(e->params[sl->param]);
    if (sl->held > 0)
        e->params[sl->param]->slices_held -= sl->held;
    sl->param = -1;
    sl->data = NULL;
    sl->source = GATHERED_NONE;
    sl->held = 0;
    sl->cached = 0;
}

/* Starts gathering rows [first, first + count) of parameter @p param into a
 * new slot (*slot_p; -1 with ZERO_OK when a prefetch finds no room). At
 * stage 3 each rank owning part of the rows broadcasts it into the slot's
 * block of the gather pool; at stages 0-2 and for persistent parameters the
 * slot is a window on the full weights. */
static zero_status_t slice_start(zero_engine_h e, int param, int64_t first, int64_t count, int prefetch, int *slot_p)
{
    struct zero_param *p = e->params[param];
    const zero_layout_param_t *lp = &e->layout->params[param];
    const zero_layout_bucket_t *bk = &e->layout->buckets[lp->bucket];
    group_state_t *g = &e->groups[lp->group];
    size_t esz = dtype_bytes(p->dtype), row = engine_row_elems(p), len = (size_t)count * row;
    size_t shard = bk->length / (size_t)e->world;
    size_t a = lp->offset - bk->offset + (size_t)first * row, z = a + len;   /* bucket coordinates */
    /* the ranks holding the bucket's parts: every rank's shard (hpZ: the group's secondary copy) */
    zero_comm_h comm = e->comm;
    int owners = e->world, me = e->rank;
    /* NULL with offload_param: the shard is then read from its file below */
    const char *source = g->params_shard == NULL ? NULL
                         : (const char *)g->params_shard + zero_layout_bucket_shard_offset(e->layout, lp->bucket) * esz;
    engine_slice_t *sl;
    zero_status_t status;
    int s;

    *slot_p = -1;
    if (e->param_host != NULL && !p->persistent) {
        /* this rank's part would be broadcast from params_shard, which does
         * not exist (the shard is in host memory): refused, not read from a
         * NULL-based pointer (a whole gather uploads it: zero_gather); a
         * prefetch of a refused slice left in the trace starts nothing */
        if (prefetch)
            return ZERO_OK;
        engine_error(e, ZERO_ERR_UNSUPPORTED, "zero_gather_slices(%s): stage-3 slices with "
                     "zero_optimization.offload_param.device \"cpu\" on a device rank are not implemented in this "
                     "version (gather the whole parameter with zero_gather)", p->name);
        return ZERO_ERR_UNSUPPORTED;
    }
    if (e->stage == 3 && !p->persistent && prefetch) {
        make_room(e, len, len * esz);
        if (!room_for(e, len, len * esz))
            return ZERO_OK;
    }
    s = slice_slot(e);
    if (s < 0) {
        /* This rank's memory: the other ranks start this slice's broadcasts
         * (a prefetch too: skipping it here alone would shift this rank's
         * collectives against theirs), so the engine fails and tells them. */
        return engine_fail(e, ENGINE_FAIL_LOCAL, ZERO_ERR_NO_MEMORY, zero_log_error_mark(),
                           "gathering %s rows [%" PRId64 ", %" PRId64 "): out of memory for its record", p->name,
                           first, first + count);
    }
    sl = &e->slices[s];
    sl->first = first;
    sl->count = count;
    sl->bytes = len * esz;
    sl->held = 0;
    sl->cached = 0;
    sl->num_reqs = 0;
    if (e->stage < 3) {
        sl->data = (char *)(p->view_data != NULL ? p->view_data : p->data) + (size_t)first * row * esz;
        sl->source = GATHERED_NONE;
        sl->param = param;
        *slot_p = s;
        return ZERO_OK;
    }
    if (p->persistent) {
        /* its whole weights stay gathered: the slice is a window on them */
        status = engine_gather_bucket_start(e, lp->bucket);
        if (status == ZERO_OK)
            status = engine_gather_bucket_finish(e, lp->bucket);
        if (status != ZERO_OK)
            return status;
        sl->data = (char *)e->buckets[lp->bucket].gathered + a * esz;
        sl->source = GATHERED_NONE;
        sl->param = param;
        *slot_p = s;
        return ZERO_OK;
    }
    if (e->hpz > 1 && hpz_bucket_stale(e, lp->bucket) && (status = hpz_refresh(e)) != ZERO_OK) {
        sl->param = -1;
        return status;
    }
    make_room(e, len, sl->bytes);
    sl->data = engine_pool_get(e, &e->gather_pool, sl->bytes);
    sl->source = GATHERED_POOL;
    if (sl->data == NULL) {
        if (!e->pool_overflow_warned) {
            e->pool_overflow_warned = 1;
            if (e->gather_pool.blocks_out == e->gather_pool.max_blocks)
                ZERO_LOG_WARN("gathering %s rows [%" PRId64 ", %" PRId64 "): the gather pool has handed out its "
                              "most blocks (%d); such gathers allocate and free their own buffer (slow: gather "
                              "fewer slices at once, or larger ones)",
                              p->name, first, first + count, e->gather_pool.max_blocks);
            else
                ZERO_LOG_WARN("gathering %s rows [%" PRId64 ", %" PRId64 "): the gather pool (%zu bytes, "
                              "stage3_max_live_parameters) has no room for %zu bytes more; such gathers allocate "
                              "and free their own buffer (slow: raise stage3_max_live_parameters or gather less at "
                              "once)",
                              p->name, first, first + count, e->gather_pool.capacity, sl->bytes);
        }
        status = engine_alloc(e, &e->mem.buffers, sl->bytes, "stage-3 gathered slice", &sl->data);
        if (status != ZERO_OK)   /* as for the record above (engine_alloc recorded why) */
            return engine_fail(e, ENGINE_FAIL_LOCAL, status, zero_log_error_mark(), "%s", e->last_error);
        sl->source = GATHERED_ONE_OFF;
    }
    sl->param = param;
    e->live_elements += len;
    *slot_p = s;
    if (e->hpz > 1) {   /* from the group's secondary copy: its owners are the group's ranks */
        comm = e->hpz_comm;
        owners = e->hpz;
        me = e->hpz_rank;
        shard = bk->length / (size_t)e->hpz;
        source = (const char *)g->params_secondary + secondary_offset(e, lp->bucket) * esz;
    }
    for (int r = (int)(a / shard); r < owners && (size_t)r * shard < z; r++) {
        size_t lo = a > (size_t)r * shard ? a : (size_t)r * shard;
        size_t hi = z < (size_t)(r + 1) * shard ? z : (size_t)(r + 1) * shard;
        const void *src = NULL;
        uint64_t mark;
        if (r == me && e->param_store != NULL) {   /* (the engine refuses hpZ with offload_param) */
            size_t so = zero_layout_bucket_shard_offset(e->layout, lp->bucket) + lo - (size_t)r * shard;
            /* read into the slice's own place: the root's broadcast is then in place */
            src = (char *)sl->data + (lo - a) * esz;
            status = shard_read(e, lp->group, so, hi - lo, (void *)src);
            if (status != ZERO_OK) {   /* this rank's parameter file; the other ranks started this broadcast */
                free_slice(e, s);
                *slot_p = -1;
                return engine_fail(e, ENGINE_FAIL_LOCAL, status, zero_log_error_mark(), "%s", e->last_error);
            }
        } else if (r == me) {
            src = source + (lo - (size_t)r * shard) * esz;
        }
        mark = zero_log_error_mark();
        status = zero_comm_broadcast_start(comm, src, (char *)sl->data + (lo - a) * esz, hi - lo, p->dtype, r,
                                           e->kind, &sl->reqs[sl->num_reqs]);
        if (status != ZERO_OK) {   /* not started on this rank: the others would wait for it */
            free_slice(e, s);
            *slot_p = -1;
            return engine_fail(e, ENGINE_FAIL_LOCAL, status, mark,
                               "broadcast of %s rows [%" PRId64 ", %" PRId64 ") from rank %d failed to start: %s",
                               p->name, first, first + count, r, zero_status_string(status));
        }
        sl->num_reqs++;
    }
    return ZERO_OK;
}

void engine_gather_drop_all(zero_engine_h e)
{
    e->hpz_stale = 1;   /* the shards are about to change */
    for (int s = 0; s < e->num_slices; s++)
        if (e->slices[s].param >= 0)
            free_slice(e, s);
    for (int i = 0; i < e->num_params; i++) {
        struct zero_param *p = e->params[i];
        int b = e->layout->params[i].bucket;
        if (e->buckets[b].gathered != NULL)
            free_bucket(e, b);
        p->data = NULL;
        p->gather_count = 0;
        p->slices_held = 0;
    }
}

void engine_slices_destroy(zero_engine_h e)
{
    for (int s = 0; s < e->num_slices; s++) {
        if (e->slices[s].param >= 0)
            free_slice(e, s);
        zero_free(e->slices[s].reqs);
    }
    zero_free(e->slices);
    e->slices = NULL;
    e->num_slices = 0;
}

zero_status_t engine_slices_check_released(zero_engine_h e, const char *call)
{
    for (int s = 0; s < e->num_slices; s++) {
        const engine_slice_t *sl = &e->slices[s];
        if (sl->param >= 0 && sl->held > 0) {
            engine_error(e, ZERO_ERR_STATE,
                         "%s: rows [%" PRId64 ", %" PRId64 ") of %s are still gathered (zero_gather_slices); release "
                         "every slice first",
                         call, sl->first, sl->first + sl->count, e->params[sl->param]->name);
            return ZERO_ERR_STATE;
        }
    }
    return ZERO_OK;
}

/* ---- the recorded order and prefetch ---- */

static void trace_record(zero_engine_h e, int index, int64_t first, int64_t count)
{
    if (e->trace_done)
        return;
    if (e->trace_len == e->trace_cap) {
        size_t cap = e->trace_cap ? e->trace_cap * 2 : 64;
        engine_trace_entry_t *grown = zero_realloc(e->trace, cap * sizeof(*grown));
        if (grown == NULL)
            return;   /* prefetch is an optimisation: without a trace, gathers stay on demand */
        e->trace = grown;
        e->trace_cap = cap;
    }
    e->trace[e->trace_len++] = (engine_trace_entry_t){index, first, count};
}

static int same_entry(const engine_trace_entry_t *t, int param, int64_t first, int64_t count)
{
    return t->param == param && t->first == first && t->count == count;
}

/* Elements an entry gathers: the bucket of a whole parameter, or the rows. */
static uint64_t entry_length(zero_engine_h e, const engine_trace_entry_t *t)
{
    if (t->count == 0)
        return e->layout->buckets[e->layout->params[t->param].bucket].length;
    return (uint64_t)t->count * engine_row_elems(e->params[t->param]);
}

/* Starts the gathers that follow @p last (a whole parameter or a slice) in the recorded order. */
static zero_status_t gather_ahead(zero_engine_h e, engine_trace_entry_t last)
{
    const zero_config_zero_t *z = &e->config->zero_optimization;
    uint64_t budget = z->stage3_prefetch_bucket_size, live = e->live_elements;
    size_t pos = e->trace_pos;
    if (!e->trace_done || e->trace_len == 0 || budget == 0)
        return ZERO_OK;
    /* find @p last at or after the cursor (the order repeats every micro-batch) */
    for (size_t k = 0; k < e->trace_len; k++) {
        size_t at = (pos + k) % e->trace_len;
        if (same_entry(&e->trace[at], last.param, last.first, last.count)) {
            pos = at;
            break;
        }
    }
    e->trace_pos = (pos + 1) % e->trace_len;
    /* The window ahead is bounded by the budget, counting what is already gathered or in flight. */
    for (size_t k = 1; k < e->trace_len; k++) {
        const engine_trace_entry_t *t = &e->trace[(pos + k) % e->trace_len];
        uint64_t len = entry_length(e, t);
        zero_status_t status;
        /* The trace wraps to the next micro-batch; when this one ends in an
         * update, the step drops every gather (it rewrites the shards), so
         * gathering across it would be wasted work. */
        if (pos + k >= e->trace_len && e->window_micro == e->gas - 1)
            break;
        if (len > budget)
            break;
        budget -= len;
        if (t->count > 0) {
            int s;
            if (e->params[t->param]->persistent || find_slice(e, t->param, t->first, t->count) >= 0 ||
                find_overlap(e, t->param, t->first, t->count, 1) >= 0)
                continue;   /* there already, a window, or its rows are held in another shape: on demand */
            status = slice_start(e, t->param, t->first, t->count, 1, &s);
            if (status != ZERO_OK)
                return status;
            if (s < 0)
                break;   /* no room: the rest waits for releases */
            continue;
        }
        {
            int b = e->layout->params[t->param].bucket;
            if (e->buckets[b].gathered != NULL)
                continue;
            if (live + len > z->stage3_max_live_parameters) {
                make_room(e, len, block_bytes(e, b));
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
    }
    return ZERO_OK;
}

/* offload_param "nvme": the file read of the first whole parameter past the
 * prefetch window (its first buffer's worth), so that its gather, when it
 * comes, finds the data in a staging buffer. Within the micro-batch only
 * when it ends in an update, as the gathers. */
static zero_status_t file_ahead(zero_engine_h e)
{
    size_t pos = e->trace_pos;
    if (e->param_store == NULL || !e->trace_done || e->trace_len == 0 ||
        e->config->zero_optimization.stage3_prefetch_bucket_size == 0)
        return ZERO_OK;
    for (size_t k = 0; k < e->trace_len; k++) {
        const engine_trace_entry_t *t = &e->trace[(pos + k) % e->trace_len];
        const zero_layout_bucket_t *bk;
        int b;
        if (pos + k >= e->trace_len && e->window_micro == e->gas - 1)
            break;
        if (t->count > 0 || e->params[t->param]->persistent)
            continue;
        b = e->layout->params[t->param].bucket;
        if (e->buckets[b].gathered != NULL)
            continue;
        bk = &e->layout->buckets[b];
        return zero_param_store_prefetch(e->param_store, bk->group, zero_layout_bucket_shard_offset(e->layout, b),
                                         bk->length / (size_t)e->world);
    }
    return ZERO_OK;
}

static zero_status_t prefetch_after(zero_engine_h e, engine_trace_entry_t last)
{
    zero_status_t status = gather_ahead(e, last);
    return status != ZERO_OK ? status : file_ahead(e);
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
    for (size_t i = 0; i < count; i++)
        if (params[i]->slices_held > 0 && !params[i]->persistent) {
            engine_error(e, ZERO_ERR_STATE,
                         "zero_gather(%s): %d slice%s of it %s gathered (zero_gather_slices); release them before "
                         "gathering it whole",
                         params[i]->name, params[i]->slices_held, params[i]->slices_held == 1 ? "" : "s",
                         params[i]->slices_held == 1 ? "is" : "are");
            return ZERO_ERR_STATE;
        }
    t0 = zero_clock_now();
    for (size_t i = 0; i < count && status == ZERO_OK; i++) {
        struct zero_param *p = params[i];
        int b = e->layout->params[p->index].bucket;
        trace_record(e, p->index, 0, 0);
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
        status = prefetch_after(e, (engine_trace_entry_t){params[count - 1]->index, 0, 0});
    e->timers.gather += zero_clock_now() - t0;
    return status;
}

/* Whether the entry (a whole parameter, count 0, or a slice) is gathered
 * again, by the recorded order, before stage3_max_reuse_distance elements of
 * other gathers (DeepSpeed's rule), in this accumulation window (the update
 * drops every gather), while the live elements are within
 * stage3_max_live_parameters: then release keeps its weights (layer by layer,
 * the backward finds the forward's layers still there when memory allows). */
static int reused_soon(zero_engine_h e, int index, int64_t first, int64_t count)
{
    const zero_config_zero_t *z = &e->config->zero_optimization;
    uint64_t distance = 0;
    if (!e->trace_done || e->trace_len == 0 || e->live_elements > z->stage3_max_live_parameters)
        return 0;
    for (size_t k = 0; k < e->trace_len; k++) {
        size_t at = e->trace_pos + k;
        const engine_trace_entry_t *t;
        if (at >= e->trace_len) {
            if (e->window_micro == e->gas - 1)
                return 0;
            at -= e->trace_len;
        }
        t = &e->trace[at];
        if (same_entry(t, index, first, count))
            return 1;
        distance += entry_length(e, t);
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
        if (reused_soon(e, p->index, 0, 0))
            e->buckets[b].cached = 1;   /* dropped by make_room when its room is needed */
        else
            free_bucket(e, b);
    }
    return ZERO_OK;
}

/* ---- slices: the public calls ---- */

/* Checks every slice of a call: arguments, range, the engine's state, and
 * (for gathers, @p gather) that no slice overlaps a held slice, or another
 * slice of the call, without being the same rows, and that no parameter is
 * gathered whole. */
static zero_status_t check_slices(zero_engine_h e, const zero_param_slice_t *slices, size_t count, int gather,
                                  const char *call)
{
    if (e == NULL)
        return ZERO_ERR_INVALID_ARG;
    if (count > 0 && slices == NULL) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "%s: slices is NULL", call);
        return ZERO_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < count; i++) {
        const zero_param_slice_t *q = &slices[i];
        zero_status_t status = engine_slice_check(e, q->param, q->first, q->count, call);
        int s;
        if (status != ZERO_OK)
            return status;
        if (!gather)
            continue;
        if (e->stage == 3 && q->param->gather_count > 0 && !q->param->persistent) {
            engine_error(e, ZERO_ERR_STATE,
                         "%s(%s, rows [%" PRId64 ", %" PRId64 ")): the parameter is gathered whole (zero_gather); "
                         "release it first",
                         call, q->param->name, q->first, q->first + q->count);
            return ZERO_ERR_STATE;
        }
        s = find_overlap(e, q->param->index, q->first, q->count, 1);
        if (s >= 0) {
            engine_error(e, ZERO_ERR_STATE,
                         "%s(%s, rows [%" PRId64 ", %" PRId64 ")): overlaps rows [%" PRId64 ", %" PRId64
                         "), gathered now; release them first (or gather the same rows)",
                         call, q->param->name, q->first, q->first + q->count, e->slices[s].first,
                         e->slices[s].first + e->slices[s].count);
            return ZERO_ERR_STATE;
        }
        for (size_t j = 0; j < i; j++) {
            const zero_param_slice_t *o = &slices[j];
            if (o->param == q->param && !(o->first == q->first && o->count == q->count) &&
                rows_overlap(o->first, o->count, q->first, q->count)) {
                engine_error(e, ZERO_ERR_STATE,
                             "%s(%s, rows [%" PRId64 ", %" PRId64 ")): overlaps rows [%" PRId64 ", %" PRId64
                             ") of entry %zu of the same call",
                             call, q->param->name, q->first, q->first + q->count, o->first, o->first + o->count, j);
                return ZERO_ERR_STATE;
            }
        }
    }
    return ZERO_OK;
}

/* Takes back the holds zero_gather_slices placed on slices [0, n) of its call (after a failure). */
static void unhold(zero_engine_h e, const zero_param_slice_t *slices, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int s = find_slice(e, slices[i].param->index, slices[i].first, slices[i].count);
        if (s < 0 || e->slices[s].held == 0)
            continue;
        e->slices[s].held--;
        slices[i].param->slices_held--;
        if (e->slices[s].held == 0)
            free_slice(e, s);
    }
}

zero_status_t zero_gather_slices(zero_engine_h e, const zero_param_slice_t *slices, size_t count)
{
    zero_status_t status = check_slices(e, slices, count, 1, "zero_gather_slices");
    double t0;
    size_t i;
    if (status != ZERO_OK)
        return status;
    t0 = zero_clock_now();
    /* Start every slice (or take the prefetched or kept one), then wait for them all. */
    for (i = 0; i < count; i++) {
        const zero_param_slice_t *q = &slices[i];
        int index = q->param->index, s = find_slice(e, index, q->first, q->count), other;
        if (e->stage == 3)
            trace_record(e, index, q->first, q->count);
        /* a prefetched or kept slice in another shape gives way */
        while ((other = find_overlap(e, index, q->first, q->count, 0)) >= 0)
            free_slice(e, other);
        if (s < 0) {
            status = slice_start(e, index, q->first, q->count, 0, &s);
            if (status != ZERO_OK)
                break;
        }
        e->slices[s].held++;
        e->slices[s].cached = 0;
        q->param->slices_held++;
    }
    for (size_t k = 0; k < i && status == ZERO_OK; k++) {
        int s = find_slice(e, slices[k].param->index, slices[k].first, slices[k].count);
        status = slice_finish(e, s);
    }
    if (status != ZERO_OK) {
        if (e->state != ENGINE_FAILED)
            unhold(e, slices, i);
        e->timers.gather += zero_clock_now() - t0;
        return status;
    }
    if (count > 0)
        status = prefetch_after(e, (engine_trace_entry_t){slices[count - 1].param->index, slices[count - 1].first,
                                                          slices[count - 1].count});
    e->timers.gather += zero_clock_now() - t0;
    return status;
}

zero_status_t zero_release_slices(zero_engine_h e, const zero_param_slice_t *slices, size_t count)
{
    zero_status_t status = check_slices(e, slices, count, 0, "zero_release_slices");
    if (status != ZERO_OK)
        return status;
    /* Every slice must be held as often as the call names it: check all first, so that an error releases nothing. */
    for (size_t i = 0; i < count; i++) {
        const zero_param_slice_t *q = &slices[i];
        int s = find_slice(e, q->param->index, q->first, q->count), times = 0;
        for (size_t j = 0; j <= i; j++)
            times += slices[j].param == q->param && slices[j].first == q->first && slices[j].count == q->count;
        if (s < 0 || e->slices[s].held < times) {
            int o = find_overlap(e, q->param->index, q->first, q->count, 1);
            if (o >= 0)
                engine_error(e, ZERO_ERR_STATE,
                             "zero_release_slices(%s, rows [%" PRId64 ", %" PRId64 ")): not gathered as such; rows [%" PRId64
                             ", %" PRId64 ") are (release a slice with the first and count it was gathered with)",
                             q->param->name, q->first, q->first + q->count, e->slices[o].first,
                             e->slices[o].first + e->slices[o].count);
            else
                engine_error(e, ZERO_ERR_STATE,
                             "zero_release_slices(%s, rows [%" PRId64 ", %" PRId64 ")): not gathered%s (every release "
                             "needs a zero_gather_slices of the same rows)",
                             q->param->name, q->first, q->first + q->count, s >= 0 ? " that often" : "");
            return ZERO_ERR_STATE;
        }
    }
    for (size_t i = 0; i < count; i++) {
        const zero_param_slice_t *q = &slices[i];
        int s = find_slice(e, q->param->index, q->first, q->count);
        engine_slice_t *sl = &e->slices[s];
        q->param->slices_held--;
        if (--sl->held > 0)
            continue;
        if (sl->source != GATHERED_NONE && reused_soon(e, q->param->index, q->first, q->count))
            sl->cached = 1;   /* dropped by make_room when its room is needed */
        else
            free_slice(e, s);
    }
    return ZERO_OK;
}

void *zero_param_slice_data(zero_param_h p, int64_t first, int64_t count)
{
    zero_engine_h e;
    if (p == NULL || p->ndim < 1 || first < 0 || count < 1 || first >= p->shape[0] || count > p->shape[0] - first)
        return NULL;
    e = p->engine;
    for (int s = 0; s < e->num_slices; s++) {
        const engine_slice_t *sl = &e->slices[s];
        if (sl->param == p->index && sl->held > 0 && sl->num_reqs == 0 && sl->first <= first &&
            first + count <= sl->first + sl->count)
            return (char *)sl->data + (size_t)(first - sl->first) * engine_row_elems(p) * dtype_bytes(p->dtype);
    }
    return NULL;
}
