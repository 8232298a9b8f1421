/* lib/offload unit tests: the optimizer state store's front and the host store. */
#include "test_main.h"
#include "offload/store.h"
#include "offload/offload_ratio.h"
#include "offload/store_cpu.h"
#include "offload/store_remote.h"
#include "util/thread_pool.h"
#include "util/alloc.h"

#include <zero/zero.h>
#include <stdio.h>
#include <string.h>

static void test_host_store_roundtrip(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_desc_t d;
    zero_store_t *s = NULL;
    zero_store_range_t r;
    zero_store_bytes_t b;
    memset(&d, 0, sizeof(d));
    d.kind = ZERO_MEM_HOST;
    d.num_groups = 2;
    d.length[0] = 1000;
    d.length[1] = 37;
    d.num_states = 2;
    CU_ASSERT_EQUAL_FATAL(zero_store_host_create(&d, &s), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_fields(s), ZERO_STORE_ALL_FIELDS);
    zero_store_bytes(s, &b);
    CU_ASSERT_EQUAL(b.resident, (1000 + 37) * 3 * sizeof(float));
    CU_ASSERT_EQUAL(b.elsewhere, 0);

    /* starts zeroed; a dirty write is seen by a later acquire of an overlapping range */
    memset(&r, 0, sizeof(r));
    r.group = 0;
    r.begin = 10;
    r.count = 100;
    r.fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER) | ZERO_STORE_FIELD_BIT(ZERO_STORE_STATE2);
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &r), ZERO_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r.data[ZERO_STORE_MASTER]);
    CU_ASSERT_PTR_NULL(r.data[ZERO_STORE_STATE1]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r.data[ZERO_STORE_STATE2]);
    for (size_t i = 0; i < r.count; i++) {
        CU_ASSERT_EQUAL(r.data[ZERO_STORE_MASTER][i], 0.0f);
        r.data[ZERO_STORE_MASTER][i] = (float)i;
        r.data[ZERO_STORE_STATE2][i] = -(float)i;
    }
    CU_ASSERT_EQUAL(zero_store_release(s, &r, 1), ZERO_OK);
    CU_ASSERT_PTR_NULL(r.data[ZERO_STORE_MASTER]);
    r.begin = 50;
    r.count = 60;
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &r), ZERO_OK);
    CU_ASSERT_EQUAL(r.data[ZERO_STORE_MASTER][0], 40.0f);
    CU_ASSERT_EQUAL(r.data[ZERO_STORE_STATE2][59], -99.0f);
    CU_ASSERT_EQUAL(r.data[ZERO_STORE_MASTER][59], 99.0f);
    CU_ASSERT_EQUAL(zero_store_release(s, &r, 0), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_prefetch(s, 1, 0, 37, ZERO_STORE_ALL_FIELDS), ZERO_OK);
    zero_store_destroy(s);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_host_store_errors(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_desc_t d;
    zero_store_t *s = NULL;
    zero_store_range_t r;
    memset(&d, 0, sizeof(d));
    d.kind = ZERO_MEM_HOST;
    d.num_groups = 1;
    d.length[0] = 64;
    d.num_states = 1;
    CU_ASSERT_EQUAL_FATAL(zero_store_host_create(&d, &s), ZERO_OK);
    memset(&r, 0, sizeof(r));
    r.fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER);
    r.group = 1;   /* no such group */
    r.count = 1;
    CU_ASSERT_EQUAL(zero_store_acquire(s, &r), ZERO_ERR_INVALID_ARG);
    r.group = 0;
    r.begin = 60;
    r.count = 5;   /* past the end */
    CU_ASSERT_EQUAL(zero_store_acquire(s, &r), ZERO_ERR_INVALID_ARG);
    r.begin = 0;
    r.count = 64;
    r.fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_STATE2);   /* one state only */
    CU_ASSERT_EQUAL(zero_store_acquire(s, &r), ZERO_ERR_INVALID_ARG);
    r.fields = 0;
    CU_ASSERT_EQUAL(zero_store_acquire(s, &r), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_store_prefetch(s, 0, 65, 0, ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)), ZERO_ERR_INVALID_ARG);
    zero_store_destroy(s);
    d.num_states = 3;
    CU_ASSERT_EQUAL(zero_store_host_create(&d, &s), ZERO_ERR_INVALID_ARG);
    d.num_states = 0;
    d.num_groups = 0;
    CU_ASSERT_EQUAL(zero_store_host_create(&d, &s), ZERO_ERR_INVALID_ARG);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* fp32 training: the master is the caller's array, used in place and never freed by the store. */
static void test_host_store_adopts_master(void)
{
    ZERO_TEST_MEM_MARK();
    float mine[16];
    zero_store_desc_t d;
    zero_store_t *s = NULL;
    zero_store_range_t r;
    zero_store_bytes_t b;
    for (int i = 0; i < 16; i++)
        mine[i] = (float)i + 0.5f;
    memset(&d, 0, sizeof(d));
    d.kind = ZERO_MEM_HOST;
    d.num_groups = 1;
    d.length[0] = 16;
    d.num_states = 1;
    d.adopt_master[0] = mine;
    CU_ASSERT_EQUAL_FATAL(zero_store_host_create(&d, &s), ZERO_OK);
    zero_store_bytes(s, &b);
    CU_ASSERT_EQUAL(b.resident, 16 * sizeof(float));   /* the state only */
    memset(&r, 0, sizeof(r));
    r.count = 16;
    r.fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER);
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &r), ZERO_OK);
    CU_ASSERT_PTR_EQUAL(r.data[ZERO_STORE_MASTER], mine);
    CU_ASSERT_EQUAL(r.data[ZERO_STORE_MASTER][3], 3.5f);   /* not zeroed */
    zero_store_release(s, &r, 1);
    zero_store_destroy(s);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* A master inside a larger caller buffer (a trainer's adopted weights: the
 * rank's owned range of them) is used in place, writes land in the caller's
 * buffer, and the elements around it are not touched. */
static void test_host_store_adopts_range_of_caller_buffer(void)
{
    ZERO_TEST_MEM_MARK();
    float weights[64];
    zero_store_desc_t d;
    zero_store_t *s = NULL;
    zero_store_range_t r;
    for (int i = 0; i < 64; i++)
        weights[i] = (float)i;
    memset(&d, 0, sizeof(d));
    d.kind = ZERO_MEM_HOST;
    d.num_groups = 1;
    d.length[0] = 16;
    d.num_states = 2;
    d.adopt_master[0] = weights + 32;   /* rank 2 of 4 owns [32, 48) */
    CU_ASSERT_EQUAL_FATAL(zero_store_host_create(&d, &s), ZERO_OK);
    memset(&r, 0, sizeof(r));
    r.begin = 4;
    r.count = 8;
    r.fields = ZERO_STORE_ALL_FIELDS & zero_store_fields(s);
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &r), ZERO_OK);
    CU_ASSERT_PTR_EQUAL(r.data[ZERO_STORE_MASTER], weights + 36);
    for (size_t i = 0; i < r.count; i++)
        r.data[ZERO_STORE_MASTER][i] = -1.0f;
    CU_ASSERT_EQUAL(zero_store_release(s, &r, 1), ZERO_OK);
    zero_store_destroy(s);
    for (int i = 0; i < 64; i++)
        CU_ASSERT_EQUAL(weights[i], i >= 36 && i < 44 ? -1.0f : (float)i);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* The remote store keeps the master on its servers: asked to adopt the
 * caller's array, it refuses (no silent copy), before connecting anywhere. */
static void test_remote_store_refuses_adopted_master(void)
{
    ZERO_TEST_MEM_MARK();
    float weights[16];
    const char *servers[1] = {"127.0.0.1:1"};
    zero_store_remote_opts_t opts;
    zero_store_desc_t d;
    zero_store_t *s = NULL;
    memset(&d, 0, sizeof(d));
    memset(&opts, 0, sizeof(opts));
    d.kind = ZERO_MEM_HOST;
    d.num_groups = 1;
    d.length[0] = 16;
    d.num_states = 2;
    d.adopt_master[0] = weights;
    opts.servers = servers;
    opts.num_servers = 1;
    opts.timeout_s = 1.0;
    CU_ASSERT_EQUAL(zero_store_remote_create(&d, &opts, &s), ZERO_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NULL(s);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* offload_optimizer.ratio's choice of buckets: the first to arrive, rounded counts, bad orders refused. */
static void test_ratio_pick(void)
{
    unsigned char off[8];
    int count = -1;
    const int arrival[5] = {2, 4, 0, 3, 1};
    const int repeat[5] = {2, 4, 2, 3, 1}, out_of_range[5] = {0, 1, 2, 3, 5};
    /* default order: the highest buckets first (the backward's last parameters arrive first) */
    CU_ASSERT_EQUAL(zero_offload_ratio_pick(5, NULL, 0.5, off, &count), ZERO_OK);
    CU_ASSERT_EQUAL(count, 3);   /* 2.5 rounds up */
    CU_ASSERT(off[4] && off[3] && off[2] && !off[1] && !off[0]);
    CU_ASSERT_EQUAL(zero_offload_ratio_pick(5, arrival, 0.4, off, &count), ZERO_OK);
    CU_ASSERT_EQUAL(count, 2);
    CU_ASSERT(off[2] && off[4] && !off[0] && !off[1] && !off[3]);
    CU_ASSERT_EQUAL(zero_offload_ratio_pick(5, arrival, 1.0, off, &count), ZERO_OK);
    CU_ASSERT_EQUAL(count, 5);
    CU_ASSERT_EQUAL(zero_offload_ratio_pick(5, arrival, 0.0, off, &count), ZERO_OK);
    CU_ASSERT_EQUAL(count, 0);
    CU_ASSERT(!off[0] && !off[1] && !off[2] && !off[3] && !off[4]);
    CU_ASSERT_EQUAL(zero_offload_ratio_pick(5, arrival, 0.01, off, &count), ZERO_OK);
    CU_ASSERT_EQUAL(count, 1);   /* a ratio above 0 offloads something */
    CU_ASSERT(off[2] && !off[4]);
    CU_ASSERT_EQUAL(zero_offload_ratio_pick(0, NULL, 0.5, NULL, &count), ZERO_OK);
    CU_ASSERT_EQUAL(count, 0);
    CU_ASSERT_EQUAL(zero_offload_ratio_pick(5, repeat, 0.5, off, &count), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_offload_ratio_pick(5, out_of_range, 0.5, off, &count), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_offload_ratio_pick(5, NULL, 1.5, off, &count), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_offload_ratio_pick(5, NULL, -0.1, off, &count), ZERO_ERR_INVALID_ARG);
}

/* Records the runs zero_offload_map_runs reports. */
typedef struct seen_runs {
    int n;
    int on_host[8];
    size_t at[8], offset[8], count[8];
} seen_runs_t;

static zero_status_t note_run(void *arg, int on_host, size_t at, size_t offset, size_t count)
{
    seen_runs_t *s = arg;
    if (s->n >= 8)
        return ZERO_ERR_OVERFLOW;
    s->on_host[s->n] = on_host;
    s->at[s->n] = at;
    s->offset[s->n] = offset;
    s->count[s->n++] = count;
    return ZERO_OK;
}

/* offload_optimizer.ratio's placement: each side packed, neighbours merged,
 * ranges cut where the side changes, bad bucket lists refused. */
static void test_ratio_map(void)
{
    /* group 0: [0,100) [100,250) [250,300); group 1: [0,64) [64,128) */
    const zero_offload_bucket_t buckets[5] = {{0, 0, 100}, {0, 100, 150}, {0, 250, 50}, {1, 0, 64}, {1, 64, 64}};
    const zero_offload_bucket_t gap[2] = {{0, 0, 100}, {0, 101, 199}};
    const size_t own[2] = {300, 128}, own_long[2] = {301, 128};
    unsigned char off[5];
    const zero_offload_extent_t *x;
    zero_offload_map_t map;
    seen_runs_t runs;
    int count;

    ZERO_TEST_MEM_MARK();
    /* 0.5 of 5 buckets: 3, the last three (the backward's first) */
    CU_ASSERT_EQUAL_FATAL(zero_offload_ratio_pick(5, NULL, 0.5, off, &count), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_offload_map_build(2, own, 5, buckets, off, &map), ZERO_OK);
    CU_ASSERT_EQUAL(map.num_extents[0], 2);
    CU_ASSERT_EQUAL(map.num_extents[1], 1);   /* buckets 3 and 4 merged */
    CU_ASSERT_EQUAL(map.length[0][0], 250);
    CU_ASSERT_EQUAL(map.length[0][1], 50);
    CU_ASSERT_EQUAL(map.length[1][0], 0);
    CU_ASSERT_EQUAL(map.length[1][1], 128);
    x = zero_offload_map_find(&map, 0, 249);
    CU_ASSERT(x != NULL && !x->on_host && x->begin == 0 && x->count == 250 && x->at == 0);
    x = zero_offload_map_find(&map, 0, 250);
    CU_ASSERT(x != NULL && x->on_host && x->begin == 250 && x->count == 50 && x->at == 0);
    x = zero_offload_map_find(&map, 1, 127);
    CU_ASSERT(x != NULL && x->on_host && x->at == 0 && x->count == 128);
    CU_ASSERT_PTR_NULL(zero_offload_map_find(&map, 0, 300));
    CU_ASSERT_PTR_NULL(zero_offload_map_find(&map, 2, 0));
    /* a range across the split: the device run, then the host run at the host side's start */
    memset(&runs, 0, sizeof(runs));
    CU_ASSERT_EQUAL(zero_offload_map_runs(&map, 0, 200, 100, note_run, &runs), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(runs.n, 2);
    CU_ASSERT(!runs.on_host[0] && runs.at[0] == 200 && runs.offset[0] == 0 && runs.count[0] == 50);
    CU_ASSERT(runs.on_host[1] && runs.at[1] == 0 && runs.offset[1] == 50 && runs.count[1] == 50);
    memset(&runs, 0, sizeof(runs));
    CU_ASSERT_EQUAL(zero_offload_map_runs(&map, 0, 260, 30, note_run, &runs), ZERO_OK);
    CU_ASSERT(runs.n == 1 && runs.on_host[0] && runs.at[0] == 10 && runs.count[0] == 30);
    CU_ASSERT_EQUAL(zero_offload_map_runs(&map, 0, 290, 11, note_run, &runs), ZERO_ERR_INVALID_ARG);
    zero_offload_map_free(&map);

    /* another pick: the packed offsets follow the owned order on each side */
    off[0] = 1, off[1] = 0, off[2] = 1, off[3] = 0, off[4] = 1;
    CU_ASSERT_EQUAL_FATAL(zero_offload_map_build(2, own, 5, buckets, off, &map), ZERO_OK);
    CU_ASSERT_EQUAL(map.num_extents[0], 3);
    x = zero_offload_map_find(&map, 0, 260);
    CU_ASSERT(x != NULL && x->on_host && x->at == 100);   /* after bucket 0's 100 host elements */
    x = zero_offload_map_find(&map, 1, 70);
    CU_ASSERT(x != NULL && x->on_host && x->at == 0 && x->begin == 64);
    x = zero_offload_map_find(&map, 1, 10);
    CU_ASSERT(x != NULL && !x->on_host && x->at == 0);
    zero_offload_map_free(&map);

    /* no bucket list: everything on the host */
    CU_ASSERT_EQUAL_FATAL(zero_offload_map_build(2, own, 0, NULL, NULL, &map), ZERO_OK);
    CU_ASSERT(map.length[0][1] == 300 && map.length[1][1] == 128 && map.length[0][0] == 0);
    zero_offload_map_free(&map);
    /* a gap, a short cover, a bad group */
    CU_ASSERT_EQUAL(zero_offload_map_build(1, own, 2, gap, NULL, &map), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_offload_map_build(2, own_long, 5, buckets, off, &map), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_offload_map_build(1, own, 5, buckets, off, &map), ZERO_ERR_INVALID_ARG);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* The store-level kernel of CPU offload (zero_store_run_kernel_g16, in place
 * over the slot) against the host store's step on the same 16-bit gradients:
 * the same master, states and 16-bit weights, bit for bit. */
static void test_run_kernel_g16_as_host_step(void)
{
    enum { N = 5000 };
    static float w[N], m[N], v[N], g32[N];
    static uint16_t slot[N], g16[N], w16_host[N];
    zero_thread_pool_t *pool = NULL;
    zero_optim_ctx_t ctx;
    zero_store_desc_t d;
    zero_store_t *host = NULL;
    zero_store_range_t r;
    zero_store_async_step_t st;
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_EQUAL_FATAL(zero_thread_pool_create(2, &pool), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, pool), ZERO_OK);
    memset(&d, 0, sizeof(d));
    d.kind = ZERO_MEM_HOST;
    d.num_groups = 1;
    d.length[0] = N;
    d.num_states = 2;
    CU_ASSERT_EQUAL_FATAL(zero_store_host_create(&d, &host), ZERO_OK);
    for (int i = 0; i < N; i++) {
        w[i] = 0.001f * (float)(i % 97) - 0.04f;
        g32[i] = 0.01f * (float)((i * 7) % 31) - 0.15f;
    }
    CU_ASSERT_EQUAL(zero_optim_to_16(&ctx, ZERO_OPTIM_W16_BF16, g16, g32, N), ZERO_OK);
    memset(&st, 0, sizeof(st));
    st.group = 0;
    st.count = N;
    st.optimizer = ZERO_OPTIMIZER_ADAMW;
    st.lr = 1e-2f;
    st.beta1 = 0.9f;
    st.beta2 = 0.999f;
    st.eps = 1e-8f;
    st.weight_decay = 0.1f;
    st.bias_correction = 1;
    st.step = 3;
    st.grad_scale = 0.5f;
    st.grad_dtype = st.weight_dtype = ZERO_BF16;
    st.optim = &ctx;
    /* the host store: master from w, its own 16-bit widening */
    r = (zero_store_range_t){.group = 0, .begin = 0, .count = N, .fields = zero_store_fields(host)};
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(host, &r), ZERO_OK);
    memcpy(r.data[ZERO_STORE_MASTER], w, sizeof(w));
    CU_ASSERT_EQUAL(zero_store_release(host, &r, 1), ZERO_OK);
    st.grad = g16;
    st.weights = w16_host;
    CU_ASSERT_EQUAL(zero_store_step_async(host, &st), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_step_wait(host), ZERO_OK);
    /* CPU offload's kernel, in place over a slot holding the gradients */
    memcpy(slot, g16, sizeof(slot));
    CU_ASSERT_EQUAL(zero_store_run_kernel_g16(&ctx, &st, w, slot, ZERO_OPTIM_W16_BF16, m, v, slot,
                                              ZERO_OPTIM_W16_BF16, N), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(host, &r), ZERO_OK);
    CU_ASSERT_EQUAL(memcmp(r.data[ZERO_STORE_MASTER], w, sizeof(w)), 0);
    CU_ASSERT_EQUAL(memcmp(r.data[ZERO_STORE_STATE1], m, sizeof(m)), 0);
    CU_ASSERT_EQUAL(memcmp(r.data[ZERO_STORE_STATE2], v, sizeof(v)), 0);
    CU_ASSERT_EQUAL(zero_store_release(host, &r, 0), ZERO_OK);
    CU_ASSERT_EQUAL(memcmp(slot, w16_host, sizeof(slot)), 0);
    CU_ASSERT(memcmp(slot, g16, sizeof(slot)) != 0);   /* the step wrote the weights over the gradients */
    zero_store_destroy(host);
    zero_thread_pool_destroy(pool);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* CPU offload's store asked for host memory, or in a process without a GPU: refused, nothing leaked. */
static void test_cpu_store_refusals(void)
{
    zero_store_desc_t d;
    zero_store_cpu_params_t p;
    zero_store_t *s = NULL;
    ZERO_TEST_MEM_MARK();
    memset(&d, 0, sizeof(d));
    d.kind = ZERO_MEM_HOST;
    d.num_groups = 1;
    d.length[0] = 16;
    d.num_states = 2;
    zero_store_cpu_params_default(&p);
    CU_ASSERT_NOT_EQUAL(zero_store_cpu_create(&d, &p, &s), ZERO_OK);
    CU_ASSERT_PTR_NULL(s);
    d.kind = ZERO_MEM_DEVICE;
    p.slots = 0;
    CU_ASSERT_NOT_EQUAL(zero_store_cpu_create(&d, &p, &s), ZERO_OK);
    CU_ASSERT_PTR_NULL(s);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* "remote" for a device descriptor: the factory makes the CPU offload store
 * over a remote store, never the remote store itself (which takes host memory
 * only). Without a GPU the CPU offload's set-up is what fails; with one, the
 * unreachable server (127.0.0.1:1) is. Either way not the remote store's
 * refusal of device memory. */
static void test_remote_for_device_goes_through_cpu_offload(void)
{
    const char *servers[1] = {"127.0.0.1:1"};
    zero_store_options_t o;
    zero_store_desc_t d;
    zero_store_t *s = NULL;
    const char *first;
    ZERO_TEST_MEM_MARK();
    memset(&o, 0, sizeof(o));
    o.device = ZERO_STORE_DEVICE_REMOTE;
    o.servers = servers;
    o.num_servers = 1;
    o.cuda_device = -1;
    o.timeout_s = 2.0;
    memset(&d, 0, sizeof(d));
    d.kind = ZERO_MEM_DEVICE;
    d.num_groups = 1;
    d.length[0] = 16;
    d.num_states = 2;
    zero_test_first_error_begin();
    CU_ASSERT_NOT_EQUAL(zero_store_create_for(&o, &d, &s), ZERO_OK);
    first = zero_test_first_error_end();
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT(strstr(first, "remote store: bad descriptor") == NULL);
    CU_ASSERT(strstr(first, "cpu offload store") != NULL || strstr(first, "CPU offload for a device engine") != NULL ||
              strstr(first, "127.0.0.1:1") != NULL);
    if (strstr(first, "remote store: bad descriptor") != NULL)
        fprintf(stderr, "refused by the remote store, not the CPU offload: %s\n", first);
    ZERO_TEST_ASSERT_NO_LEAK();
}

int main(int argc, char **argv)
{
    CU_TestInfo tests[] = {
        {"host store: acquire, write, release, read back", test_host_store_roundtrip},
        {"host store: bad ranges and descriptors", test_host_store_errors},
        {"host store: an adopted master", test_host_store_adopts_master},
        {"host store: a master range inside the caller's buffer", test_host_store_adopts_range_of_caller_buffer},
        {"remote store: refuses an adopted master", test_remote_store_refuses_adopted_master},
        {"offload_optimizer.ratio: the buckets that arrive first", test_ratio_pick},
        {"offload_optimizer.ratio: the placement of the buckets' state", test_ratio_map},
        {"CPU offload's in-place 16-bit kernel == the host store's step", test_run_kernel_g16_as_host_step},
        {"CPU offload store: bad kinds and params refused", test_cpu_store_refusals},
        {"remote for a device descriptor: the CPU offload store over the remote store", test_remote_for_device_goes_through_cpu_offload},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"offload", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return zero_test_main(argc, argv, suites);
}
