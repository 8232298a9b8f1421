/*
 * The engine reaches master weights and optimizer states only through its
 * optimizer state store (lib/offload/store.h): the step, the weights it
 * publishes, and checkpoint save and load.
 *
 * The test double is a copying store wrapped around the engine's own: every
 * acquire hands out fresh copies of the data and a dirty release copies them
 * back, as a store whose state lives elsewhere (NVMe, a server) does. So an
 * engine that wrote through a range it released clean, or kept a pointer
 * past release, would lose its update or read stale data, and training with
 * the wrapper would no longer match the same training without it bit for
 * bit. The wrapper also counts what it was asked (per phase of the test) and
 * checks that every clean release left the data as acquired. With its step
 * op set it runs the elementwise update itself (as zero-optd will), and the
 * engine must then hand it every owned range instead of acquiring it.
 */
#include "test_main.h"
#include "optd_test.h"
#include "offload/store.h"
#include "offload/store_remote.h"
#include "util/alloc.h"
#include "util/half.h"
#include "zero/engine_internal.h"
#include "zero/engine_ops.h"
#include "zero/engine_step.h"

#include <zero/zero.h>

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the copying, counting store ---- */

typedef struct counts {
    int acquires, releases_dirty, releases_clean, prefetches, steps, step_waits;
    size_t largest;               /* the longest range acquired, prefetched or stepped */
    int fields_seen;              /* union of the fields acquired */
    int clean_but_changed;        /* clean releases whose data the caller had changed */
    int outstanding;              /* acquired, not released */
    /* with a placement map (offload_optimizer.ratio < 1): */
    int acquired_offloaded;       /* acquires that reach into the part the store steps */
    int stepped_elsewhere;        /* step ranges not wholly inside that part */
    int stepped_after_acquire;    /* step ranges submitted after an acquire of the same step */
    int acquired_in_step;         /* acquires since the last step_wait */
    /* overlap_step: */
    int steps_in_backward;        /* step ranges submitted while the engine's backward was open */
    int undoable_steps, cancels;
} counts_t;

/* What an undoable step overwrote (the overlap mode's undo, in the test double). */
typedef struct undo_entry {
    int group;
    size_t begin, count;
    float *fields[ZERO_STORE_NUM_FIELDS];
    void *weights, *old_weights;
    size_t weight_bytes;
} undo_entry_t;

typedef struct copy_store {
    zero_store_t base;
    zero_store_t *inner;          /* the engine's own store */
    zero_optim_ctx_t optim;       /* the step op's kernels */
    zero_offload_map_t *map;      /* NULL, or which part the step op takes (the rest: acquired) */
    zero_engine_h engine;         /* the engine it serves (overlap test: is its backward open?) */
    undo_entry_t *undo;           /* undoable steps since the last wait */
    int num_undo, cap_undo;
    counts_t counts;
} copy_store_t;

static void undo_free(copy_store_t *c)
{
    for (int k = 0; k < c->num_undo; k++) {
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
            zero_free(c->undo[k].fields[f]);
        zero_free(c->undo[k].old_weights);
    }
    c->num_undo = 0;
}

/* Keeps what the step @p st is about to overwrite (fields of @p r, its weights). */
static void undo_keep(copy_store_t *c, const zero_store_async_step_t *st, const zero_store_range_t *r)
{
    undo_entry_t *u;
    if (c->num_undo == c->cap_undo) {
        c->cap_undo = c->cap_undo ? 2 * c->cap_undo : 16;
        c->undo = zero_realloc(c->undo, (size_t)c->cap_undo * sizeof(*c->undo));
        CU_ASSERT_PTR_NOT_NULL_FATAL(c->undo);
    }
    u = &c->undo[c->num_undo++];
    memset(u, 0, sizeof(*u));
    u->group = st->group;
    u->begin = st->begin;
    u->count = st->count;
    for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
        if (r->data[f] != NULL) {
            u->fields[f] = zero_malloc((st->count ? st->count : 1) * sizeof(float));
            memcpy(u->fields[f], r->data[f], st->count * sizeof(float));
        }
    u->weights = st->weights;
    u->weight_bytes = st->count * zero_dtype_size(st->weight_dtype);
    u->old_weights = zero_malloc(u->weight_bytes ? u->weight_bytes : 1);
    memcpy(u->old_weights, st->weights, u->weight_bytes);
}

/* Whether owned [begin, begin + count) of @p group lies wholly on the host side of @p map. */
static int wholly_offloaded(const zero_offload_map_t *map, int group, size_t begin, size_t count)
{
    const zero_offload_extent_t *x = zero_offload_map_find(map, group, begin);
    return x != NULL && x->on_host && count <= x->begin + x->count - begin;
}

/* Whether any of owned [begin, begin + count) of @p group is on the host side of @p map. */
static int touches_offloaded(const zero_offload_map_t *map, int group, size_t begin, size_t count)
{
    for (size_t so = begin; so < begin + count;) {
        const zero_offload_extent_t *x = zero_offload_map_find(map, group, so);
        if (x == NULL || x->on_host)
            return 1;
        so = x->begin + x->count;
    }
    return 0;
}

typedef struct copy_range {
    zero_store_range_t inner;
    float *copy[ZERO_STORE_NUM_FIELDS];
} copy_range_t;

static zero_status_t copy_acquire(zero_store_t *store, zero_store_range_t *range)
{
    copy_store_t *c = (copy_store_t *)store;
    copy_range_t *cr = zero_calloc(1, sizeof(*cr));
    zero_status_t status;
    if (cr == NULL)
        return ZERO_ERR_NO_MEMORY;
    cr->inner = *range;
    status = zero_store_acquire(c->inner, &cr->inner);
    if (status != ZERO_OK) {
        zero_free(cr);
        return status;
    }
    for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++) {
        if (cr->inner.data[f] == NULL)
            continue;
        cr->copy[f] = zero_malloc((range->count ? range->count : 1) * sizeof(float));
        memcpy(cr->copy[f], cr->inner.data[f], range->count * sizeof(float));
        range->data[f] = cr->copy[f];
    }
    range->impl = cr;
    c->counts.acquires++;
    if (range->count > c->counts.largest)
        c->counts.largest = range->count;
    c->counts.outstanding++;
    c->counts.fields_seen |= (int)range->fields;
    if (c->map != NULL && touches_offloaded(c->map, range->group, range->begin, range->count))
        c->counts.acquired_offloaded++;
    c->counts.acquired_in_step++;
    return ZERO_OK;
}

static zero_status_t copy_release(zero_store_t *store, zero_store_range_t *range, int dirty)
{
    copy_store_t *c = (copy_store_t *)store;
    copy_range_t *cr = range->impl;
    zero_status_t status;
    for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++) {
        if (cr->copy[f] == NULL)
            continue;
        if (dirty)
            memcpy(cr->inner.data[f], cr->copy[f], range->count * sizeof(float));
        else if (memcmp(cr->inner.data[f], cr->copy[f], range->count * sizeof(float)) != 0)
            c->counts.clean_but_changed++;
        /* poison what the caller had: a pointer kept past release reads NaN */
        for (size_t i = 0; i < range->count; i++)
            cr->copy[f][i] = NAN;
        zero_free(cr->copy[f]);
    }
    status = zero_store_release(c->inner, &cr->inner, dirty);
    zero_free(cr);
    range->impl = NULL;
    if (dirty)
        c->counts.releases_dirty++;
    else
        c->counts.releases_clean++;
    c->counts.outstanding--;
    return status;
}

static zero_status_t copy_prefetch(zero_store_t *store, int group, size_t begin, size_t count, unsigned fields)
{
    copy_store_t *c = (copy_store_t *)store;
    (void)group;
    (void)begin;
    (void)fields;
    c->counts.prefetches++;
    if (count > c->counts.largest)
        c->counts.largest = count;
    return ZERO_OK;
}

static void copy_bytes(const zero_store_t *store, zero_store_bytes_t *bytes_p)
{
    zero_store_bytes(((const copy_store_t *)store)->inner, bytes_p);
}

static void copy_destroy(zero_store_t *store)
{
    copy_store_t *c = (copy_store_t *)store;
    zero_store_destroy(c->inner);
    undo_free(c);
    zero_free(c->undo);
    zero_offload_map_free(c->map);
    zero_free(c->map);
    zero_free(c);
}

/* The update where the state is: the inner store's arrays, lib/optim's
 * kernel through the store's shared wrapper, gradients as they come (16-bit
 * where training is). Finished at once; step_wait counts the waits. */
static zero_status_t copy_step(zero_store_t *store, const zero_store_async_step_t *st)
{
    copy_store_t *c = (copy_store_t *)store;
    zero_store_range_t r = {.group = st->group, .begin = st->begin, .count = st->count,
                            .fields = zero_store_fields(c->inner)};
    zero_optim_w16_t w16 = zero_optim_w16_of(st->weight_dtype);
    float *g32 = NULL;
    const float *g = st->grad;
    zero_status_t status = zero_store_acquire(c->inner, &r);
    if (status != ZERO_OK)
        return status;
    if (c->map != NULL && !wholly_offloaded(c->map, st->group, st->begin, st->count))
        c->counts.stepped_elsewhere++;
    if (c->counts.acquired_in_step > 0)
        c->counts.stepped_after_acquire++;
    if (c->engine != NULL && c->engine->state == ENGINE_IN_BACKWARD)
        c->counts.steps_in_backward++;
    if (st->undoable) {
        c->counts.undoable_steps++;
        undo_keep(c, st, &r);
    }
    if (st->grad_dtype != ZERO_FP32) {
        g32 = zero_malloc((st->count ? st->count : 1) * sizeof(float));
        if (g32 == NULL) {
            zero_store_release(c->inner, &r, 0);
            return ZERO_ERR_NO_MEMORY;
        }
        status = zero_optim_from_16(&c->optim, zero_optim_w16_of(st->grad_dtype), g32, st->grad, st->count);
        g = g32;
    }
    if (status == ZERO_OK)
        status = zero_store_run_kernel(&c->optim, st, r.data[ZERO_STORE_MASTER], g, r.data[ZERO_STORE_STATE1],
                                       r.data[ZERO_STORE_STATE2], w16 != ZERO_OPTIM_W16_NONE ? st->weights : NULL,
                                       w16, st->count);
    if (status == ZERO_OK && w16 == ZERO_OPTIM_W16_NONE && st->weights != r.data[ZERO_STORE_MASTER])
        memcpy(st->weights, r.data[ZERO_STORE_MASTER], st->count * sizeof(float));
    zero_store_release(c->inner, &r, 1);
    zero_free(g32);
    c->counts.steps++;
    if (st->count > c->counts.largest)
        c->counts.largest = st->count;
    return status;
}

static zero_status_t copy_step_wait(zero_store_t *store)
{
    ((copy_store_t *)store)->counts.step_waits++;
    ((copy_store_t *)store)->counts.acquired_in_step = 0;
    undo_free((copy_store_t *)store);
    return ZERO_OK;
}

/* Puts back what the undoable steps since the last wait overwrote, the last first. */
static zero_status_t copy_step_cancel(zero_store_t *store)
{
    copy_store_t *c = (copy_store_t *)store;
    for (int k = c->num_undo - 1; k >= 0; k--) {
        undo_entry_t *u = &c->undo[k];
        zero_store_range_t r = {.group = u->group, .begin = u->begin, .count = u->count,
                                .fields = zero_store_fields(c->inner)};
        zero_status_t status = zero_store_acquire(c->inner, &r);
        if (status != ZERO_OK)
            return status;
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
            if (u->fields[f] != NULL)
                memcpy(r.data[f], u->fields[f], u->count * sizeof(float));
        memcpy(u->weights, u->old_weights, u->weight_bytes);
        zero_store_release(c->inner, &r, 1);
    }
    c->counts.cancels++;
    c->counts.acquired_in_step = 0;
    undo_free(c);
    return ZERO_OK;
}

/* As CPU offload at ratio < 1: the step op takes the map's host side. */
static int split_steps_at(const zero_store_t *store, int group, size_t begin, size_t *run_end_p)
{
    const zero_offload_extent_t *x = zero_offload_map_find(((const copy_store_t *)store)->map, group, begin);
    CU_ASSERT_PTR_NOT_NULL(x);
    if (x == NULL)
        return 1;
    *run_end_p = x->begin + x->count;
    return x->on_host;
}

static const zero_store_ops_t copy_ops = {
    .name = "copying test", .acquire = copy_acquire, .release = copy_release, .prefetch = copy_prefetch,
    .bytes = copy_bytes, .destroy = copy_destroy,
};
static const zero_store_ops_t copy_ops_with_step = {
    .name = "copying test with step", .acquire = copy_acquire, .release = copy_release,
    .prefetch = copy_prefetch, .bytes = copy_bytes, .destroy = copy_destroy, .step_async = copy_step,
    .step_wait = copy_step_wait, .prefer_step = 1,
};
static const zero_store_ops_t copy_ops_split = {
    .name = "copying test with a split step", .acquire = copy_acquire, .release = copy_release,
    .prefetch = copy_prefetch, .bytes = copy_bytes, .destroy = copy_destroy, .step_async = copy_step,
    .step_wait = copy_step_wait, .prefer_step = 1, .steps_at = split_steps_at,
};
static const zero_store_ops_t copy_ops_overlap = {
    .name = "copying test with a split, undoable step", .acquire = copy_acquire, .release = copy_release,
    .prefetch = copy_prefetch, .bytes = copy_bytes, .destroy = copy_destroy, .step_async = copy_step,
    .step_wait = copy_step_wait, .prefer_step = 1, .steps_at = split_steps_at, .step_cancel = copy_step_cancel,
};

/* Puts the copying store in front of @p e's store (after setup); with
 * @p max_range > 0 it takes ranges of at most that many elements. A store
 * with the step op adopts nothing (as zero-optd's): the engine hands it the
 * weights to write, even where they are the inner store's master. */
static copy_store_t *wrap_store_bounded(zero_engine_h e, int with_step, size_t max_range)
{
    copy_store_t *c = zero_calloc(1, sizeof(*c));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&c->optim, ZERO_OPTIM_ISA_AUTO, NULL), ZERO_OK);
    c->base.ops = with_step ? &copy_ops_with_step : &copy_ops;
    c->base.desc = e->store->desc;
    c->base.max_range = max_range;
    if (with_step)
        memset(c->base.desc.adopt_master, 0, sizeof(c->base.desc.adopt_master));
    c->inner = e->store;
    e->store = &c->base;
    return c;
}

static copy_store_t *wrap_store(zero_engine_h e, int with_step)
{
    return wrap_store_bounded(e, with_step, 0);
}

/* ---- training ---- */

static void init_fn(const char *name, size_t offset, size_t count, float *out, void *user_data)
{
    (void)user_data;
    for (size_t i = 0; i < count; i++)
        out[i] = 0.5f * sinf((float)(offset + i) * 0.37f + (float)name[0]);
}

#define NUM_PARAMS 3
static const int64_t param_numel[NUM_PARAMS] = {1000, 77, 4100};

/* 1: every parameter decays, so a group is one run and only the buckets cut the step's pieces */
static int all_decay;

/* An engine of the three parameters; with @p chunk > 0 its host kernels run
 * at level @p isa in chunks of @p chunk elements (set before setup, as the
 * store is made there). */
static zero_engine_h make_engine_kernels(const char *json, zero_dtype_t dtype, zero_param_h *params,
                                         zero_optim_isa_t isa, size_t chunk)
{
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = json, .num_threads = 2};
    zero_engine_h e = NULL;
    static const char *const names[NUM_PARAMS] = {"a.weight", "b.bias", "c.weight"};
    CU_ASSERT_EQUAL_FATAL(zero_engine_create(&ep, &e), ZERO_OK);
    if (chunk > 0) {
        zero_optim_ctx_t *ctx = (zero_optim_ctx_t *)engine_ops_host_optim(e->ops_ctx);
        CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(ctx, isa, ctx->pool), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_set_chunk(ctx, chunk), ZERO_OK);
    }
    for (int i = 0; i < NUM_PARAMS; i++) {
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN | ZERO_PARAM_FIELD_WEIGHT_DECAY,
                               .name = names[i], .dtype = dtype, .ndim = 1, .shape = {param_numel[i]},
                               .init_fn = init_fn, .weight_decay = all_decay || i != 1};
        CU_ASSERT_EQUAL_FATAL(zero_param_register(e, &d, &params[i]), ZERO_OK);
    }
    CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
    return e;
}

static zero_engine_h make_engine(const char *json, zero_dtype_t dtype, zero_param_h *params)
{
    return make_engine_kernels(json, dtype, params, ZERO_OPTIM_ISA_AUTO, 0);
}

/* One micro-batch: gradients written and marked ready parameter by parameter (the last first, as a
 * backward produces them), then zero_step; its info. */
static zero_step_info_t micro_step(zero_engine_h e, zero_param_h *params, zero_dtype_t dtype, int k)
{
    zero_step_info_t info;
    float seed;
    memset(&info, 0, sizeof(info));
    CU_ASSERT_EQUAL_FATAL(zero_backward_begin(e, &seed), ZERO_OK);
    for (int i = NUM_PARAMS - 1; i >= 0; i--) {
        void *g = zero_param_grad(params[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(g);
        for (int64_t j = 0; j < param_numel[i]; j++) {
            float v = seed * 0.01f * cosf((float)j * 0.11f + (float)(k * 7 + i));
            if (dtype == ZERO_FP32)
                ((float *)g)[j] = v;
            else if (dtype == ZERO_FP16)
                ((uint16_t *)g)[j] = zero_f32_to_f16(v);
            else
                ((uint16_t *)g)[j] = zero_f32_to_bf16(v);
        }
        CU_ASSERT_EQUAL_FATAL(zero_grad_ready(e, params[i]), ZERO_OK);
    }
    CU_ASSERT_EQUAL_FATAL(zero_backward_end(e), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_step(e, &info), ZERO_OK);
    return info;
}

static void train_step(zero_engine_h e, zero_param_h *params, zero_dtype_t dtype, int k)
{
    CU_ASSERT_EQUAL(micro_step(e, params, dtype, k).stepped, 1);
}

/* Two engines hold the same bits: the weights the trainer sees, and every
 * master and state array (read through each one's store). */
static void assert_same_state(zero_engine_h a, zero_engine_h b)
{
    CU_ASSERT_EQUAL_FATAL(a->layout->num_groups, b->layout->num_groups);
    for (int gi = 0; gi < a->layout->num_groups; gi++) {
        group_state_t *ga = &a->groups[gi], *gb = &b->groups[gi];
        size_t esz = zero_dtype_size(ga->dtype);
        zero_store_range_t ra = {.group = gi, .begin = 0, .count = ga->own_length, .fields = zero_store_fields(a->store)};
        zero_store_range_t rb = ra;
        if (ga->params_flat != NULL)
            CU_ASSERT_EQUAL(memcmp(ga->params_flat, gb->params_flat, ga->length * esz), 0);
        if (ga->params_shard != NULL)
            CU_ASSERT_EQUAL(memcmp(ga->params_shard, gb->params_shard, ga->own_length * esz), 0);
        CU_ASSERT_EQUAL_FATAL(zero_store_acquire(a->store, &ra), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_store_acquire(b->store, &rb), ZERO_OK);
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
            if (ra.data[f] != NULL)
                CU_ASSERT_EQUAL(memcmp(ra.data[f], rb.data[f], ga->own_length * sizeof(float)), 0);
        zero_store_release(a->store, &ra, 0);
        zero_store_release(b->store, &rb, 0);
    }
}

#define CFG(stage, precision, optimizer) \
    "{\"train_batch_size\": 1, " precision "\"optimizer\": " optimizer ", \"gradient_clipping\": 0.5," \
    " \"zero_optimization\": {\"stage\": " #stage ", \"reduce_bucket_size\": 2048, \"allgather_bucket_size\": 2048}}"
#define BF16 "\"bf16\": {\"enabled\": true}, "
#define ADAMW "{\"type\": \"AdamW\", \"params\": {\"lr\": 0.01, \"weight_decay\": 0.1}}"
#define LAMB "{\"type\": \"Lamb\", \"params\": {\"lr\": 0.01, \"weight_decay\": 0.1}}"
#define SGD "{\"type\": \"SGD\", \"params\": {\"lr\": 0.05, \"momentum\": 0.9}}"

typedef struct store_case {
    const char *json;
    zero_dtype_t dtype;
} store_case_t;

static const store_case_t cases[] = {
    {CFG(0, BF16, ADAMW), ZERO_BF16}, {CFG(1, BF16, ADAMW), ZERO_BF16}, {CFG(2, BF16, SGD), ZERO_BF16},
    {CFG(3, BF16, ADAMW), ZERO_BF16}, {CFG(1, "", ADAMW), ZERO_FP32},   {CFG(0, "", SGD), ZERO_FP32},
    {CFG(3, "", ADAMW), ZERO_FP32},   {CFG(1, BF16, LAMB), ZERO_BF16},  {CFG(0, "", LAMB), ZERO_FP32},
};
#define NUM_CASES (sizeof(cases) / sizeof(cases[0]))

/* The step, and the weights it publishes, go through acquire and release: same
 * bits as without the copying store; every update released dirty, every read
 * clean and unchanged, nothing left acquired, the next piece prefetched. */
static void test_step_goes_through_the_store(void)
{
    ZERO_TEST_MEM_MARK();
    for (size_t c = 0; c < NUM_CASES; c++) {
        unsigned failures_before = CU_get_number_of_failures();
        zero_param_h pa[NUM_PARAMS], pb[NUM_PARAMS];
        zero_engine_h a = make_engine(cases[c].json, cases[c].dtype, pa);
        zero_engine_h b = make_engine(cases[c].json, cases[c].dtype, pb);
        copy_store_t *store = wrap_store(b, 0);
        int lamb = strstr(cases[c].json, "Lamb") != NULL;
        for (int k = 0; k < 3; k++) {
            train_step(a, pa, cases[c].dtype, k);
            train_step(b, pb, cases[c].dtype, k);
        }
        assert_same_state(a, b);
        CU_ASSERT(store->counts.acquires > 0);
        CU_ASSERT(store->counts.releases_dirty > 0);
        CU_ASSERT_EQUAL(store->counts.clean_but_changed, 0);
        CU_ASSERT_EQUAL(store->counts.outstanding, 0);
        CU_ASSERT_EQUAL(store->counts.steps, 0);
        /* the update acquires master and every state */
        CU_ASSERT_EQUAL(store->counts.fields_seen & (int)zero_store_fields(b->store),
                        (int)zero_store_fields(b->store));
        /* parameter b has no weight decay, so every owned range has several pieces */
        if (!lamb)
            CU_ASSERT(store->counts.prefetches > 0);
        if (CU_get_number_of_failures() > failures_before)
            fprintf(stderr, "case %zu: %s\n", c, cases[c].json);
        zero_engine_destroy(a);
        zero_engine_destroy(b);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* The end of a case: nothing left acquired, nothing written through a clean
 * release; the case printed when it failed; both engines destroyed. */
static void finish_case(const copy_store_t *store, unsigned failures_before, const char *what, size_t c,
                        zero_engine_h a, zero_engine_h b)
{
    CU_ASSERT_EQUAL(store->counts.outstanding, 0);
    CU_ASSERT_EQUAL(store->counts.clean_but_changed, 0);
    if (CU_get_number_of_failures() > failures_before)
        fprintf(stderr, "case %zu: %s\n", c, what);
    zero_engine_destroy(a);
    zero_engine_destroy(b);
}

/* A store with its own step op gets every elementwise update: the engine
 * acquires nothing for it, and the result is the same bits. Lamb still goes
 * through acquire and release. */
static void test_store_step_op_runs_the_update(void)
{
    ZERO_TEST_MEM_MARK();
    for (size_t c = 0; c < NUM_CASES; c++) {
        unsigned failures_before = CU_get_number_of_failures();
        zero_param_h pa[NUM_PARAMS], pb[NUM_PARAMS];
        zero_engine_h a = make_engine(cases[c].json, cases[c].dtype, pa);
        zero_engine_h b = make_engine(cases[c].json, cases[c].dtype, pb);
        copy_store_t *store = wrap_store(b, 1);
        int lamb = strstr(cases[c].json, "Lamb") != NULL;
        counts_t seen;
        for (int k = 0; k < 3; k++) {
            train_step(a, pa, cases[c].dtype, k);
            train_step(b, pb, cases[c].dtype, k);
        }
        seen = store->counts;   /* before the comparison, which acquires too */
        assert_same_state(a, b);
        if (lamb) {
            CU_ASSERT_EQUAL(seen.steps, 0);
            CU_ASSERT(seen.releases_dirty > 0);
        } else {
            CU_ASSERT(seen.steps >= 3 * b->layout->num_groups);
            CU_ASSERT_EQUAL(seen.step_waits, 3);   /* one wait per step, after every piece */
            CU_ASSERT_EQUAL(seen.releases_dirty, 0);
            /* nothing acquired: fp32 weights come back from the step op and are allgathered in place */
            CU_ASSERT_EQUAL(seen.acquires, 0);
            CU_ASSERT_EQUAL(seen.prefetches, 0);
        }
        finish_case(store, failures_before, cases[c].json, c, a, b);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* offload_optimizer.ratio 0.5 as CPU offload places it (the engine's bucket
 * slices, zero_offload_ratio_pick, zero_offload_map_build): the engine
 * hands the step op exactly the offloaded buckets' pieces, never a piece
 * across the split, all of them before it runs its own kernels on the
 * others (acquired, never reaching into the offloaded part), and trains to
 * the same bits as without the split. */
/* Gives @p store (wrapped around @p b's store, with the step op) CPU
 * offload's placement at @p ratio: the engine's bucket slices,
 * zero_offload_ratio_pick, zero_offload_map_build. Returns the elements on
 * the host side. */
static size_t install_split(copy_store_t *store, zero_engine_h b, double ratio, const zero_store_ops_t *ops)
{
    zero_offload_bucket_t *buckets = NULL;
    unsigned char *offloaded = zero_calloc((size_t)b->layout->num_buckets, 1);
    size_t own[ZERO_DTYPE_COUNT] = {0}, on_host = 0;
    int count = 0;
    store->base.ops = ops;
    store->map = zero_calloc(1, sizeof(*store->map));
    CU_ASSERT_PTR_NOT_NULL_FATAL(offloaded);
    CU_ASSERT_PTR_NOT_NULL_FATAL(store->map);
    CU_ASSERT_EQUAL_FATAL(engine_offload_buckets(b, &buckets), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_offload_ratio_pick(b->layout->num_buckets, NULL, ratio, offloaded, &count), ZERO_OK);
    for (int gi = 0; gi < b->layout->num_groups; gi++)
        own[gi] = b->groups[gi].own_length;
    CU_ASSERT_EQUAL_FATAL(zero_offload_map_build(b->layout->num_groups, own, b->layout->num_buckets, buckets,
                                                 offloaded, store->map), ZERO_OK);
    for (int gi = 0; gi < b->layout->num_groups; gi++)
        on_host += store->map->length[gi][1];
    zero_free(buckets);
    zero_free(offloaded);
    return on_host;
}

static void test_ratio_split_step(void)
{
    static const store_case_t split_cases[] = {
        {CFG(1, BF16, ADAMW), ZERO_BF16}, {CFG(2, BF16, SGD), ZERO_BF16}, {CFG(3, BF16, ADAMW), ZERO_BF16},
        {CFG(1, "", ADAMW), ZERO_FP32},   {CFG(3, "", SGD), ZERO_FP32},
    };
    ZERO_TEST_MEM_MARK();
    all_decay = 1;   /* no run bound at the split: the engine must cut the pieces there itself */
    for (size_t c = 0; c < sizeof(split_cases) / sizeof(split_cases[0]); c++) {
        unsigned failures_before = CU_get_number_of_failures();
        zero_param_h pa[NUM_PARAMS], pb[NUM_PARAMS];
        zero_engine_h a = make_engine(split_cases[c].json, split_cases[c].dtype, pa);
        zero_engine_h b = make_engine(split_cases[c].json, split_cases[c].dtype, pb);
        copy_store_t *store = wrap_store(b, 1);
        size_t on_host, owned = 0;
        counts_t seen;
        CU_ASSERT_FATAL(b->layout->num_buckets >= 2);   /* reduce_bucket_size 2048: a + b, then c */
        on_host = install_split(store, b, 0.5, &copy_ops_split);
        for (int gi = 0; gi < b->layout->num_groups; gi++)
            owned += b->groups[gi].own_length;
        CU_ASSERT(on_host > 0 && on_host < owned);
        for (int k = 0; k < 3; k++) {
            train_step(a, pa, split_cases[c].dtype, k);
            train_step(b, pb, split_cases[c].dtype, k);
        }
        seen = store->counts;   /* before the comparison, which acquires too */
        assert_same_state(a, b);
        CU_ASSERT(seen.steps >= 3);
        CU_ASSERT(seen.acquires >= 3);
        CU_ASSERT_EQUAL(seen.step_waits, 3);
        CU_ASSERT_EQUAL(seen.stepped_elsewhere, 0);
        CU_ASSERT_EQUAL(seen.acquired_offloaded, 0);
        CU_ASSERT_EQUAL(seen.stepped_after_acquire, 0);
        finish_case(store, failures_before, split_cases[c].json, c, a, b);
    }
    all_decay = 0;
    ZERO_TEST_ASSERT_NO_LEAK();
}

#define OCFG(stage, precision, optimizer, gas) \
    "{\"train_batch_size\": " #gas ", \"train_micro_batch_size_per_gpu\": 1, " precision "\"optimizer\": " optimizer \
    ", \"zero_optimization\": {\"stage\": " #stage ", \"reduce_bucket_size\": 2048, \"allgather_bucket_size\": 2048," \
    " \"offload_optimizer\": {\"device\": \"cpu\", \"overlap_step\": true}}}"
#define FP16 "\"fp16\": {\"enabled\": true, \"initial_scale_power\": 24}, "
#define WARMUP "\"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_max_lr\": 0.01, \"warmup_num_steps\": 4}}, "

/*
 * offload_optimizer.overlap_step, the engine's side: a copying store with a
 * split, undoable step op stands in for CPU offload (the host engine's own
 * store steps nothing on the CPU, so the test switches the mode on after
 * wrapping it). Each bucket's offloaded pieces go to the store while the
 * backward is still open, undoable; zero_step steps the rest, and an fp16
 * step that overflows (initial scale 2^24: the first two) is undone. The
 * weights, masters and moments equal the engine's without the wrapper bit for
 * bit, at ratio 0.5 and 1, stages 2-3, with accumulation, and with a warmup
 * schedule (the early step takes the rate zero_step would).
 */
static void test_overlap_step(void)
{
    static const store_case_t overlap_cases[] = {
        {OCFG(2, BF16, ADAMW, 1), ZERO_BF16}, {OCFG(3, BF16, SGD, 2), ZERO_BF16},
        {OCFG(2, FP16, ADAMW, 1), ZERO_FP16}, {OCFG(3, FP16, ADAMW, 2), ZERO_FP16},
        {OCFG(2, "", ADAMW, 2), ZERO_FP32},
        /* the rate changes every step (and not on a skipped one): the early step must take zero_step's */
        {OCFG(2, FP16 WARMUP, ADAMW, 1), ZERO_FP16},
    };
    ZERO_TEST_MEM_MARK();
    all_decay = 1;
    for (size_t c = 0; c < sizeof(overlap_cases) / sizeof(overlap_cases[0]); c++)
        for (int half = 0; half < 2; half++) {
            unsigned failures_before = CU_get_number_of_failures();
            zero_param_h pa[NUM_PARAMS], pb[NUM_PARAMS];
            zero_engine_h a = make_engine(overlap_cases[c].json, overlap_cases[c].dtype, pa);
            zero_engine_h b = make_engine(overlap_cases[c].json, overlap_cases[c].dtype, pb);
            copy_store_t *store = wrap_store(b, 1);
            int skipped = 0, gas = b->gas;
            counts_t seen;
            CU_ASSERT_EQUAL(a->overlap_step, 0);   /* the host store: no effect */
            install_split(store, b, half ? 0.5 : 1.0, &copy_ops_overlap);
            store->engine = b;
            b->overlap_step = 1;
            for (int k = 0; k < 6; k++)
                for (int m = 0; m < gas; m++) {
                    zero_step_info_t ia = micro_step(a, pa, overlap_cases[c].dtype, k * gas + m);
                    zero_step_info_t ib = micro_step(b, pb, overlap_cases[c].dtype, k * gas + m);
                    CU_ASSERT_EQUAL(ia.stepped, ib.stepped);
                    CU_ASSERT_EQUAL(ia.skipped, ib.skipped);
                    skipped += ib.skipped;
                }
            seen = store->counts;   /* before the comparison, which acquires too */
            assert_same_state(a, b);
            CU_ASSERT(seen.steps_in_backward > 0);
            CU_ASSERT_EQUAL(seen.undoable_steps, seen.steps_in_backward);
            CU_ASSERT_EQUAL(seen.cancels, skipped);
            CU_ASSERT(overlap_cases[c].dtype == ZERO_FP16 ? skipped > 0 && skipped < 6 : skipped == 0);
            CU_ASSERT_EQUAL(seen.stepped_elsewhere, 0);
            CU_ASSERT_EQUAL(seen.acquired_offloaded, 0);
            CU_ASSERT_EQUAL(store->counts.outstanding, 0);
            if (CU_get_number_of_failures() > failures_before)
                fprintf(stderr, "case %zu, ratio %s: %s\n", c, half ? "0.5" : "1", overlap_cases[c].json);
            zero_engine_destroy(a);
            zero_engine_destroy(b);
        }
    all_decay = 0;
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* overlap_step where an early step could differ from zero_step's (clipping, Lamb, a schedule stepped by hand), or
 * where there is no backward to overlap (stage 1): refused at setup, naming
 * the key and the reason. */
static void test_overlap_step_refused(void)
{
    static const struct {
        const char *json, *reason;
        int manual_lr;   /* zero_engine_params_t::manual_lr_schedule */
    } refused[] = {
        {"{\"train_batch_size\": 1, \"optimizer\": " ADAMW ", \"gradient_clipping\": 1.0, \"zero_optimization\": {\"stage\": 2, "
         "\"offload_optimizer\": {\"device\": \"cpu\", \"overlap_step\": true}}}", "gradient_clipping 0", 0},
        {"{\"train_batch_size\": 1, \"optimizer\": " ADAMW ", \"zero_optimization\": {\"stage\": 1, "
         "\"offload_optimizer\": {\"device\": \"cpu\", \"overlap_step\": true}}}", "stage 2 or 3", 0},
        {"{\"train_batch_size\": 1, \"optimizer\": " LAMB ", \"zero_optimization\": {\"stage\": 3, "
         "\"offload_optimizer\": {\"device\": \"cpu\", \"overlap_step\": true}}}", "Lamb", 0},
        {"{\"train_batch_size\": 1, \"optimizer\": " ADAMW ", \"zero_optimization\": {\"stage\": 2, "
         "\"offload_optimizer\": {\"device\": \"cpu\", \"overlap_step\": true}}}", "manual_lr_schedule", 1},
    };
    ZERO_TEST_MEM_MARK();
    for (size_t c = 0; c < sizeof(refused) / sizeof(refused[0]); c++) {
        zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON |
                                                 (refused[c].manual_lr ? ZERO_ENGINE_PARAM_FIELD_MANUAL_LR_SCHEDULE : 0),
                                   .config_json = refused[c].json,
                                   .manual_lr_schedule = refused[c].manual_lr};
        zero_param_desc_t d = {.name = "w", .dtype = ZERO_FP32, .ndim = 1, .shape = {100}};
        zero_param_h p;
        zero_engine_h e = NULL;
        zero_status_t created = zero_engine_create(&ep, &e);
        if (created != ZERO_OK)
            fprintf(stderr, "case %zu: %s\n", c, zero_engine_last_error(e));
        CU_ASSERT_EQUAL_FATAL(created, ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_param_register(e, &d, &p), ZERO_OK);
        CU_ASSERT_EQUAL(zero_engine_setup(e), ZERO_ERR_CONFIG);
        CU_ASSERT_PTR_NOT_NULL(strstr(zero_engine_last_error(e), "offload_optimizer.overlap_step"));
        CU_ASSERT_PTR_NOT_NULL(strstr(zero_engine_last_error(e), refused[c].reason));
        if (strstr(zero_engine_last_error(e), refused[c].reason) == NULL)
            fprintf(stderr, "case %zu: %s\n", c, zero_engine_last_error(e));
        zero_engine_destroy(e);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

static char *make_dir(void)
{
    char tmpl[] = "/tmp/zero-engine-store-XXXXXX";
    char *d = mkdtemp(tmpl);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    return strdup(d);
}

static void remove_dir(char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    free(dir);
}

/* Save reads the masters and states through the store (clean, all fields),
 * load writes them through it (dirty): after save, a step, and load, the next
 * step gives the same bits as an engine that never took the extra step. */
static void test_checkpoint_goes_through_the_store(void)
{
    ZERO_TEST_MEM_MARK();
    static const size_t which[] = {1, 3, 4, 7};
    for (size_t w = 0; w < sizeof(which) / sizeof(which[0]); w++) {
        const store_case_t *sc = &cases[which[w]];
        unsigned failures_before = CU_get_number_of_failures();
        zero_param_h pa[NUM_PARAMS], pb[NUM_PARAMS];
        zero_engine_h a = make_engine(sc->json, sc->dtype, pa);
        zero_engine_h b = make_engine(sc->json, sc->dtype, pb);
        copy_store_t *store = wrap_store(b, 0);
        char *dir = make_dir();
        counts_t before;
        for (int k = 0; k < 2; k++) {
            train_step(a, pa, sc->dtype, k);
            train_step(b, pb, sc->dtype, k);
        }
        before = store->counts;
        CU_ASSERT_EQUAL_FATAL(zero_save_checkpoint(b, dir, "t", NULL), ZERO_OK);
        CU_ASSERT_EQUAL(store->counts.acquires - before.acquires, b->layout->num_groups);
        CU_ASSERT_EQUAL(store->counts.releases_clean - before.releases_clean, b->layout->num_groups);
        CU_ASSERT_EQUAL(store->counts.releases_dirty, before.releases_dirty);
        CU_ASSERT_EQUAL(store->counts.fields_seen, (int)zero_store_fields(b->store));
        train_step(b, pb, sc->dtype, 9);   /* moves the state on */
        before = store->counts;
        CU_ASSERT_EQUAL_FATAL(zero_load_checkpoint(b, dir, "t", NULL, NULL), ZERO_OK);
        /* one dirty range per group for the load; the 16-bit weights are then
         * rebuilt from the masters, read clean */
        CU_ASSERT_EQUAL(store->counts.releases_dirty - before.releases_dirty, b->layout->num_groups);
        CU_ASSERT_EQUAL(store->counts.acquires - before.acquires,
                        b->layout->num_groups + store->counts.releases_clean - before.releases_clean);
        if (sc->dtype != ZERO_FP32)
            CU_ASSERT(store->counts.releases_clean > before.releases_clean);
        train_step(a, pa, sc->dtype, 2);
        train_step(b, pb, sc->dtype, 2);
        assert_same_state(a, b);
        CU_ASSERT_EQUAL(store->counts.outstanding, 0);
        CU_ASSERT_EQUAL(store->counts.clean_but_changed, 0);
        if (CU_get_number_of_failures() > failures_before)
            fprintf(stderr, "case %zu: %s\n", which[w], sc->json);
        zero_engine_destroy(a);
        zero_engine_destroy(b);
        remove_dir(dir);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* A store that takes ranges of at most 97 elements (as the NVMe store takes
 * at most sub_group_size): the step, initial values aside, the write-back,
 * Lamb and checkpoints (streamed through the store, no whole-array acquire)
 * all stay within it, with the same bits as the unbounded engine, and a
 * checkpoint saved through the bounded store resumes exactly. */
static void test_range_bound_everywhere(void)
{
    ZERO_TEST_MEM_MARK();
    static const size_t which[] = {1, 2, 3, 4, 6, 7};
    const size_t bound = 97;
    for (size_t w = 0; w < sizeof(which) / sizeof(which[0]); w++) {
        const store_case_t *sc = &cases[which[w]];
        unsigned failures_before = CU_get_number_of_failures();
        zero_param_h pa[NUM_PARAMS], pb[NUM_PARAMS];
        zero_engine_h a = make_engine(sc->json, sc->dtype, pa);
        zero_engine_h b = make_engine(sc->json, sc->dtype, pb);
        copy_store_t *store = wrap_store_bounded(b, 0, bound);
        char *dir = make_dir();
        counts_t before;
        for (int k = 0; k < 3; k++) {
            train_step(a, pa, sc->dtype, k);
            train_step(b, pb, sc->dtype, k);
        }
        CU_ASSERT(store->counts.acquires > 0);
        CU_ASSERT(store->counts.largest <= bound);
        before = store->counts;
        CU_ASSERT_EQUAL_FATAL(zero_save_checkpoint(b, dir, "t", NULL), ZERO_OK);
        CU_ASSERT(store->counts.acquires - before.acquires > b->layout->num_groups);   /* streamed in pieces */
        CU_ASSERT_EQUAL(store->counts.releases_dirty, before.releases_dirty);
        train_step(b, pb, sc->dtype, 9);   /* moves the state on */
        before = store->counts;
        CU_ASSERT_EQUAL_FATAL(zero_load_checkpoint(b, dir, "t", NULL, NULL), ZERO_OK);
        CU_ASSERT(store->counts.releases_dirty - before.releases_dirty > b->layout->num_groups);
        CU_ASSERT(store->counts.largest <= bound);
        train_step(a, pa, sc->dtype, 3);
        train_step(b, pb, sc->dtype, 3);
        CU_ASSERT(store->counts.largest <= bound);
        CU_ASSERT_EQUAL(store->counts.outstanding, 0);
        CU_ASSERT_EQUAL(store->counts.clean_but_changed, 0);
        assert_same_state(a, b);
        if (CU_get_number_of_failures() > failures_before)
            fprintf(stderr, "case %zu: %s\n", which[w], sc->json);
        zero_engine_destroy(a);
        zero_engine_destroy(b);
        remove_dir(dir);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* The factory: none and cpu give the host store; nvme and remote are not in
 * this version and say so. */
static void test_store_factory(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_options_t opts;
    zero_store_desc_t desc;
    zero_store_t *s = NULL;
    memset(&opts, 0, sizeof(opts));
    memset(&desc, 0, sizeof(desc));
    desc.kind = ZERO_MEM_HOST;
    desc.num_groups = 1;
    desc.length[0] = 100;
    desc.num_states = 2;
    CU_ASSERT_EQUAL(zero_store_device_from_config(ZERO_OFFLOAD_NONE), ZERO_STORE_DEVICE_NONE);
    CU_ASSERT_EQUAL(zero_store_device_from_config(ZERO_OFFLOAD_CPU), ZERO_STORE_DEVICE_CPU);
    CU_ASSERT_EQUAL(zero_store_device_from_config(ZERO_OFFLOAD_NVME), ZERO_STORE_DEVICE_NVME);
    for (int d = ZERO_STORE_DEVICE_NONE; d <= ZERO_STORE_DEVICE_CPU; d++) {
        opts.device = (zero_store_device_t)d;
        CU_ASSERT_EQUAL_FATAL(zero_store_create_for(&opts, &desc, &s), ZERO_OK);
        CU_ASSERT_STRING_EQUAL(s->ops->name, "host");
        CU_ASSERT_FALSE(zero_store_prefers_step(s));   /* its step ops are for comparisons */
        zero_store_destroy(s);
        s = NULL;
    }
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);
    opts.device = ZERO_STORE_DEVICE_NVME;   /* without the config its aio block comes from */
    CU_ASSERT_EQUAL(zero_store_create_for(&opts, &desc, &s), ZERO_ERR_INVALID_ARG);
    opts.device = ZERO_STORE_DEVICE_REMOTE;   /* without servers */
    CU_ASSERT_EQUAL(zero_store_create_for(&opts, &desc, &s), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NULL(s);
    /* the step front: Lamb needs its phase, sums and kernels, and a store
     * that runs Lamb (the host store does, for comparisons; a store without
     * steps_lamb refuses it); missing buffers are refused */
    opts.device = ZERO_STORE_DEVICE_NONE;
    CU_ASSERT_EQUAL_FATAL(zero_store_create_for(&opts, &desc, &s), ZERO_OK);
    {
        zero_optim_hparams_t hp;
        zero_store_async_step_t step;
        zero_optim_ctx_t ctx;
        uint16_t g[4] = {0}, w[4];
        double sums[2];
        zero_store_ops_t no_lamb = *s->ops;
        const zero_store_ops_t *ops = s->ops;
        CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, NULL), ZERO_OK);
        memset(&hp, 0, sizeof(hp));
        memset(&step, 0, sizeof(step));
        hp.kind = ZERO_OPTIM_KIND_LAMB;
        zero_optim_lamb_defaults(&hp.lamb);
        hp.lamb.max_coeff = 7.0f;
        CU_ASSERT_EQUAL(zero_store_step_set_hparams(&step, &hp), ZERO_OK);
        CU_ASSERT_EQUAL(step.optimizer, ZERO_OPTIMIZER_LAMB);
        CU_ASSERT_EQUAL(step.max_coeff, 7.0f);
        CU_ASSERT(zero_store_steps_lamb(s));
        step.count = 4;
        step.grad = g;
        step.grad_dtype = ZERO_BF16;
        step.weights = w;
        step.weight_dtype = ZERO_BF16;
        step.optim = &ctx;
        CU_ASSERT_EQUAL(zero_store_step_async(s, &step), ZERO_ERR_INVALID_ARG);   /* no phase */
        step.lamb_phase = 1;
        CU_ASSERT_EQUAL(zero_store_step_async(s, &step), ZERO_ERR_INVALID_ARG);   /* no sums */
        step.lamb_sums = sums;
        CU_ASSERT_EQUAL(zero_store_step_async(s, &step), ZERO_OK);
        no_lamb.steps_lamb = 0;
        s->ops = &no_lamb;
        CU_ASSERT_FALSE(zero_store_steps_lamb(s));
        CU_ASSERT_EQUAL(zero_store_step_async(s, &step), ZERO_ERR_UNSUPPORTED);
        s->ops = ops;
        step.optimizer = ZERO_OPTIMIZER_ADAMW;
        step.weights = NULL;
        CU_ASSERT_EQUAL(zero_store_step_async(s, &step), ZERO_ERR_INVALID_ARG);
    }
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    zero_store_destroy(s);
    ZERO_TEST_ASSERT_NO_LEAK();
}


/* ---- zero-optd: the engine hands the remote store its step ---- */

/* With "device": "remote" the engine's elementwise step is zero-optd's STEP
 * (the gradient out, the weights back: 2 + 2 bytes per bf16 element plus
 * headers), never an acquire and a dirty release of the state (24 bytes per
 * element: master and two moments read, then written back); same bits as
 * the state in the rank. */
static void test_remote_store_gets_the_step(void)
{
    zero_optd_server_opts_t o = {.threads = 1, .hello_timeout_s = 5.0, .io_timeout_s = 5.0};
    zero_test_optd_t t;
    zero_param_h pa[NUM_PARAMS], pb[NUM_PARAMS];
    zero_store_remote_stats_t s0, s1;
    zero_engine_memory_t m;
    zero_store_bytes_t sb;
    char json[512];
    zero_engine_h a, b;
    size_t owned = 0;

    CU_ASSERT_EQUAL_FATAL(zero_test_optd_start(&t, &o), 0);
    snprintf(json, sizeof(json),
             "{\"train_batch_size\": 1, " BF16 "\"optimizer\": " ADAMW ", \"gradient_clipping\": 0.5,"
             " \"zero_optimization\": {\"stage\": 1, \"reduce_bucket_size\": 2048, \"offload_optimizer\":"
             " {\"device\": \"remote\", \"servers\": [\"127.0.0.1:%d\"]}}}", zero_optd_server_port(t.server));
    unsetenv("ZERO_JOB_TOKEN");   /* the server has none either */
    a = make_engine(CFG(1, BF16, ADAMW), ZERO_BF16, pa);
    b = make_engine(json, ZERO_BF16, pb);
    CU_ASSERT_STRING_EQUAL_FATAL(b->store->ops->name, "remote");
    for (int gi = 0; gi < b->layout->num_groups; gi++)
        owned += b->groups[gi].own_length;
    train_step(a, pa, ZERO_BF16, 0);
    train_step(b, pb, ZERO_BF16, 0);
    zero_store_remote_stats(b->store, &s0);
    train_step(a, pa, ZERO_BF16, 1);
    train_step(b, pb, ZERO_BF16, 1);
    zero_store_remote_stats(b->store, &s1);
    CU_ASSERT(s1.steps > s0.steps);
    /* The memory report: no state in this process (master and moments are
     * on the server); the store's request slots and the region it maps are
     * working buffers, in pools */
    zero_engine_memory(b, &m);
    zero_store_bytes(b->store, &sb);
    CU_ASSERT_EQUAL(m.master + m.optim_state, 0u);
    CU_ASSERT(sb.staging > s1.region_bytes);
    CU_ASSERT(m.pools >= sb.staging);
    CU_ASSERT_EQUAL(m.total, m.params + m.grads + m.master + m.optim_state + m.persistent + m.pools);
    /* 2 bytes of gradient per element each way, plus a 120-byte head per
     * message (STEP_REGION's, through a same-host region: 32 + 88) */
    CU_ASSERT(s1.bytes_sent - s0.bytes_sent <= 2 * owned + 120 * (s1.messages - s0.messages));
    CU_ASSERT(s1.bytes_received - s0.bytes_received <= 2 * owned + 120 * (s1.messages - s0.messages));
    if (s1.steps == s0.steps || s1.bytes_sent - s0.bytes_sent > 3 * owned)
        fprintf(stderr, "remote step: %llu steps, %llu bytes sent, %llu received for %zu elements\n",
                (unsigned long long)(s1.steps - s0.steps), (unsigned long long)(s1.bytes_sent - s0.bytes_sent),
                (unsigned long long)(s1.bytes_received - s0.bytes_received), owned);
    train_step(a, pa, ZERO_BF16, 2);
    train_step(b, pb, ZERO_BF16, 2);
    assert_same_state(a, b);
    zero_engine_destroy(a);
    zero_engine_destroy(b);
    zero_test_optd_stop(&t);
}

/* Lamb with "device": "remote", one and two servers, stages 1-3, bf16 and
 * fp32: phase 1 goes to zero-optd as LAMB1 (the gradient out, each chunk's
 * sums back), phase 2 as LAMB2 (the parameter's totals out, the weights
 * back), never the state; the same bits as the state in the rank. Both
 * engines' kernels run at the C level in 128-element chunks, so a range has
 * many chunks, the second server's cut falls inside c.weight (moved to a
 * chunk multiple from its start), and the servers (at their own best level)
 * must use the client's level for the sums to match. */
static void test_remote_store_runs_lamb(void)
{
    zero_optd_server_opts_t o = {.threads = 1, .hello_timeout_s = 5.0, .io_timeout_s = 5.0};
    zero_test_optd_t t[2];
    static const struct {
        int stage;
        const char *precision;
        zero_dtype_t dtype;
    } lamb_cases[] = {{1, BF16, ZERO_BF16}, {2, BF16, ZERO_BF16}, {3, BF16, ZERO_BF16}, {3, "", ZERO_FP32},
                      {1, "", ZERO_FP32}};
    unsetenv("ZERO_JOB_TOKEN");   /* the servers have none either */
    for (int s = 0; s < 2; s++) {
        CU_ASSERT_EQUAL_FATAL(zero_test_optd_start(&t[s], &o), 0);
    }
    for (int nserv = 1; nserv <= 2; nserv++)
        for (size_t c = 0; c < sizeof(lamb_cases) / sizeof(lamb_cases[0]); c++) {
            unsigned failures_before = CU_get_number_of_failures();
            zero_param_h pa[NUM_PARAMS], pb[NUM_PARAMS];
            zero_store_remote_stats_t s0, s1;
            char local[512], remote[640], servers[64];
            zero_engine_h a, b;
            size_t owned = 0, ranges = 0;
            zero_dtype_t dt = lamb_cases[c].dtype;
            snprintf(servers, sizeof(servers), nserv == 1 ? "\"127.0.0.1:%d\"" : "\"127.0.0.1:%d\", \"127.0.0.1:%d\"",
                     zero_optd_server_port(t[0].server), zero_optd_server_port(t[1].server));
            snprintf(local, sizeof(local),
                     "{\"train_batch_size\": 1, %s\"optimizer\": " LAMB ", \"gradient_clipping\": 0.5,"
                     " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": 2048, "
                     "\"allgather_bucket_size\": 2048", lamb_cases[c].precision, lamb_cases[c].stage);
            snprintf(remote, sizeof(remote), "%s, \"offload_optimizer\": {\"device\": \"remote\", \"servers\": [%s]}}}",
                     local, servers);
            strcat(local, "}}");
            a = make_engine_kernels(local, dt, pa, ZERO_OPTIM_ISA_C, 128);
            b = make_engine_kernels(remote, dt, pb, ZERO_OPTIM_ISA_C, 128);
            CU_ASSERT_STRING_EQUAL_FATAL(b->store->ops->name, "remote");
            for (int gi = 0; gi < b->layout->num_groups; gi++) {
                owned += b->groups[gi].own_length;
                ranges += b->groups[gi].num_segments;
            }
            train_step(a, pa, dt, 0);
            train_step(b, pb, dt, 0);
            zero_store_remote_stats(b->store, &s0);
            train_step(a, pa, dt, 1);
            train_step(b, pb, dt, 1);
            zero_store_remote_stats(b->store, &s1);
            /* two phases per range, each at least one message */
            CU_ASSERT(s1.steps - s0.steps == 2 * ranges);
            /* out: 2 or 4 bytes of gradient per element plus a 128-byte head per message; back: the weights,
             * 16 bytes per 128-element chunk (at most one chunk more per range and message) and the headers */
            {
                size_t es = zero_dtype_size(dt), msgs = s1.messages - s0.messages;
                uint64_t sent = s1.bytes_sent - s0.bytes_sent, received = s1.bytes_received - s0.bytes_received;
                CU_ASSERT(sent <= es * owned + 128 * msgs);
                CU_ASSERT(received <= es * owned + 16 * (owned / 128 + msgs) + 32 * msgs);
                if (sent > es * owned + 128 * msgs)
                    fprintf(stderr, "remote Lamb: %llu bytes sent, %llu received in %zu messages for %zu elements\n",
                            (unsigned long long)sent, (unsigned long long)received, msgs, owned);
            }
            train_step(a, pa, dt, 2);
            train_step(b, pb, dt, 2);
            assert_same_state(a, b);
            if (CU_get_number_of_failures() > failures_before)
                fprintf(stderr, "Lamb on %d server(s), stage %d, %s\n", nserv, lamb_cases[c].stage,
                        zero_dtype_string(dt));
            zero_engine_destroy(a);
            zero_engine_destroy(b);
        }
    for (int s = 0; s < 2; s++)
        zero_test_optd_stop(&t[s]);
}

int main(int argc, char **argv)
{
    CU_TestInfo tests[] = {
        {"the step goes through the store", test_step_goes_through_the_store},
        {"a store's step op runs the update", test_store_step_op_runs_the_update},
        {"offload_optimizer.ratio 0.5: the store steps its buckets, the engine the rest", test_ratio_split_step},
        {"offload_optimizer.overlap_step: buckets stepped during the backward, undone on overflow", test_overlap_step},
        {"offload_optimizer.overlap_step: refused with clipping, at stage 1, with Lamb, with manual_lr_schedule", test_overlap_step_refused},
        {"checkpoints go through the store", test_checkpoint_goes_through_the_store},
        {"a store's range bound holds everywhere", test_range_bound_everywhere},
        {"the store factory", test_store_factory},
        {"zero-optd gets the step, not the state", test_remote_store_gets_the_step},
        {"zero-optd runs Lamb's phases, bit for bit", test_remote_store_runs_lamb},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"engine-store", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return zero_test_main(argc, argv, suites);
}
