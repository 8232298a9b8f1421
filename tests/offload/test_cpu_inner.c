/*
 * The host side of CPU offload for device ranks with its state on zero-optd
 * (offload_optimizer.device "remote" with mem_kind DEVICE): CPU offload's
 * offload thread steps each pinned slot through lib/offload/cpu_inner.h,
 * which hands the slot in place to the remote store's step op (the slot is
 * the gradient and the weights). No GPU here, so these tests run exactly that
 * code on host slots filled as the device -> host copy would fill them:
 *   - bit for bit: every elementwise optimizer, fp32/bf16/fp16, two live
 *     servers (a slot cut between them), slots of several messages with a
 *     window of 2 (a message's weights land in the slot while later
 *     gradients of the same slot are still to be sent): the slots' weights
 *     and, at the end, master and states equal the same steps with the state
 *     in this process (a host inner store, the CPU kernel), bit for bit;
 *   - checkpoints while stepping: a second thread steps the slots (the
 *     offload thread) while this one acquires ranges of the remote store
 *     (the trainer's thread saving a checkpoint); every acquire succeeds and
 *     the final state is still bit for bit the host store's; over the
 *     control connection and over the same-host data connection (its own
 *     UCX worker);
 *   - a zero-optd process killed between two slots: the next slot's step
 *     fails within the bound naming the server, and so does a later acquire;
 *   - a zero-optd process stalled (SIGSTOP) or killed while a slot's
 *     messages are in flight, with the trainer's thread waiting on the lock
 *     to acquire: the step fails within one bound (killed: at once) naming
 *     the server, and the waiting acquire then gets the store's refusal, so
 *     the lock held across the step's waits delays it by at most the bound;
 *   - the UCX workers of both contexts are serialized (the offload thread
 *     steps and the trainer's thread acquires; UCX does not check this
 *     itself, so ucp_worker_query does);
 *   - undoable steps (overlap_step) refused on the remote store, naming it.
 */
#include "optd_test.h"
#include "test_main.h"
#include "offload/cpu_inner.h"
#include "offload/optd_ucx.h"
#include "offload/store_remote.h"
#include "optim/optim.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const unsigned char job_token[16] = {7, 1, 7, 1, 7, 1, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9};

/* Group 0 is cut into slots of SLOT elements (two whole slots and a short
 * one); each slot is three STEP messages of the remote store (256 Ki
 * elements at most), more than its window of 2. */
#define SLOT ((size_t)600000)
#define LEN0 ((size_t)2 * SLOT + 12345)
#define LEN1 ((size_t)70001)

/* A zero-optd on a thread of this process, with the job token. */
static int local_server_start(zero_test_optd_t *t)
{
    zero_optd_server_opts_t o;
    memset(&o, 0, sizeof(o));
    o.threads = 2;
    o.have_token = 1;
    memcpy(o.token, job_token, sizeof(job_token));
    o.hello_timeout_s = 5.0;
    o.io_timeout_s = 10.0;
    return zero_test_optd_start(t, &o);
}

/* ---------- the two inner stores ---------- */

static void desc_for(zero_store_desc_t *d, int states)
{
    memset(d, 0, sizeof(*d));
    d->kind = ZERO_MEM_HOST;   /* the inner store's: CPU offload's offloaded state, packed */
    d->num_groups = 2;
    d->length[0] = LEN0;
    d->length[1] = LEN1;
    d->num_states = states;
}

/* A remote inner store on @p addrs (window 2), or NULL (asserted). */
static int remote_inner(zero_cpu_inner_t *in, const char *const *addrs, int n, int states, double timeout_s,
                        const zero_optim_ctx_t *ctx)
{
    zero_store_desc_t d;
    zero_store_remote_opts_t o;
    zero_store_t *s = NULL;
    desc_for(&d, states);
    memset(&o, 0, sizeof(o));
    o.servers = addrs;
    o.num_servers = n;
    memcpy(o.token, job_token, sizeof(job_token));
    o.timeout_s = timeout_s;
    o.window = 2;
    if (zero_store_remote_create(&d, &o, &s) != ZERO_OK)
        return 0;
    return zero_cpu_inner_init(in, s, ctx) == ZERO_OK;
}

static int host_inner(zero_cpu_inner_t *in, int states, const zero_optim_ctx_t *ctx)
{
    zero_store_desc_t d;
    zero_store_t *s = NULL;
    desc_for(&d, states);
    return zero_store_host_create(&d, &s) == ZERO_OK && zero_cpu_inner_init(in, s, ctx) == ZERO_OK;
}

static uint64_t rng;

static float rnd(void) { return (float)((double)(zero_test_xorshift(&rng) >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

/* The same pseudo-random master and states in every group of @p in, written
 * through its acquire / release (a checkpoint load takes this path). */
static void fill(zero_cpu_inner_t *in)
{
    rng = 0x9e3779b97f4a7c15ull;
    for (int g = 0; g < 2; g++) {
        zero_store_range_t r = {.group = g, .begin = 0, .count = in->store->desc.length[g],
                                .fields = zero_store_fields(in->store)};
        CU_ASSERT_EQUAL_FATAL(zero_cpu_inner_acquire(in, &r), ZERO_OK);
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
            for (size_t i = 0; r.data[f] != NULL && i < r.count; i++)
                r.data[f][i] = f == ZERO_STORE_STATE2 ? fabsf(rnd()) * 1e-3f : rnd();
        CU_ASSERT_EQUAL(zero_cpu_inner_release(in, &r, 1), ZERO_OK);
    }
}

/* Whether every field of every group of @p a and @p b holds the same bits. */
static int same_state(zero_cpu_inner_t *a, zero_cpu_inner_t *b)
{
    int same = 1;
    for (int g = 0; g < 2; g++) {
        zero_store_range_t ra = {.group = g, .begin = 0, .count = a->store->desc.length[g],
                                 .fields = zero_store_fields(a->store)};
        zero_store_range_t rb = ra;
        CU_ASSERT_EQUAL_FATAL(zero_cpu_inner_acquire(a, &ra), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_cpu_inner_acquire(b, &rb), ZERO_OK);
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
            if (ra.data[f] != NULL && memcmp(ra.data[f], rb.data[f], ra.count * sizeof(float)) != 0)
                same = 0;
        (void)zero_cpu_inner_release(a, &ra, 0);
        (void)zero_cpu_inner_release(b, &rb, 0);
    }
    return same;
}

/* One slot's step as CPU offload submits it (zero_store_step_set_hparams
 * fills these from the engine's set; here fixed, the lr per step). */
static void slot_step(zero_store_async_step_t *st, zero_optimizer_type_t type, int step, zero_dtype_t dtype,
                      const zero_optim_ctx_t *ctx)
{
    memset(st, 0, sizeof(*st));
    st->optimizer = type;
    st->lr = 1e-3f * (float)step;
    st->beta1 = 0.9f;
    st->beta2 = type == ZERO_OPTIMIZER_LION ? 0.99f : 0.999f;
    st->eps = 1e-8f;
    st->weight_decay = 0.01f;
    st->momentum = 0.9f;
    st->nesterov = 1;
    st->lr_decay = 0.01f;
    st->bias_correction = 1;
    st->step = step;
    st->grad_scale = 0.5f;
    st->grad_dtype = dtype;
    st->weight_dtype = dtype;   /* CPU offload moves both in the training dtype */
    st->optim = ctx;
}

/* Fills @p slot with @p n gradients of @p dtype, as the copy from the device would. */
static void fill_slot(void *slot, zero_dtype_t dtype, size_t n, uint64_t seed, const zero_optim_ctx_t *ctx)
{
    rng = seed;
    for (size_t i = 0; i < n; i++) {
        float v = rnd();
        if (dtype == ZERO_FP32)
            memcpy((float *)slot + i, &v, sizeof(v));
        else
            zero_optim_to_16(ctx, zero_optim_w16_of(dtype), (uint16_t *)slot + i, &v, 1);
    }
}

/* ---------- bit for bit ---------- */

typedef struct opt_case {
    zero_optimizer_type_t type;
    int states;
    const char *name;
} opt_case_t;

static const opt_case_t opt_cases[] = {
    {ZERO_OPTIMIZER_ADAM, 2, "Adam"},   {ZERO_OPTIMIZER_ADAMW, 2, "AdamW"}, {ZERO_OPTIMIZER_SGD, 1, "SGD"},
    {ZERO_OPTIMIZER_ADAGRAD, 1, "Adagrad"}, {ZERO_OPTIMIZER_LION, 1, "Lion"},
};

/* Three steps over every slot of both groups on both inner stores; the
 * slots' weights compared after each, the state at the end. */
static void compare_case(const char *const *addrs, const opt_case_t *oc, zero_dtype_t dtype,
                         const zero_optim_ctx_t *ctx)
{
    zero_cpu_inner_t host, remote;
    zero_store_remote_stats_t s0, s1;
    size_t es = zero_dtype_size(dtype);
    unsigned char *a = zero_malloc(SLOT * 4), *b = zero_malloc(SLOT * 4);
    size_t differ = 0;
    CU_ASSERT_FATAL(a != NULL && b != NULL);
    CU_ASSERT_FATAL(host_inner(&host, oc->states, ctx));
    CU_ASSERT_FATAL(remote_inner(&remote, addrs, 2, oc->states, 10.0, ctx));
    fill(&host);
    fill(&remote);
    zero_store_remote_stats(remote.store, &s0);
    for (int step = 1; step <= 3; step++)
        for (int g = 0; g < 2; g++)
            for (size_t at = 0; at < host.store->desc.length[g]; at += SLOT) {
                zero_store_async_step_t st;
                size_t n = host.store->desc.length[g] - at < SLOT ? host.store->desc.length[g] - at : SLOT;
                slot_step(&st, oc->type, step, dtype, ctx);
                st.group = g;
                st.begin = at;
                st.count = n;
                fill_slot(a, dtype, n, 1000u * (uint64_t)step + 10u * (uint64_t)g + at + 1, ctx);
                memcpy(b, a, n * es);
                CU_ASSERT_EQUAL_FATAL(zero_cpu_inner_step(&host, &st, a, NULL), ZERO_OK);
                CU_ASSERT_EQUAL_FATAL(zero_cpu_inner_step(&remote, &st, b, NULL), ZERO_OK);
                differ += memcmp(a, b, n * es) != 0;
            }
    zero_store_remote_stats(remote.store, &s1);
    /* the step op ran on the servers, and only gradients and weights travelled
     * (es bytes an element each way, plus a 120-byte head per message:
     * STEP_REGION's, through a same-host region, 32 + 88) */
    CU_ASSERT(s1.steps - s0.steps >= 3 * 4);
    CU_ASSERT(s1.bytes_sent - s0.bytes_sent <= 3 * (LEN0 + LEN1) * es + 120 * (s1.messages - s0.messages));
    CU_ASSERT(s1.bytes_received - s0.bytes_received <= 3 * (LEN0 + LEN1) * es + 120 * (s1.messages - s0.messages));
    CU_ASSERT_EQUAL(differ, 0);
    CU_ASSERT(same_state(&host, &remote));
    if (differ != 0)
        fprintf(stderr, "%s %s: %zu slots of weights differ\n", oc->name, zero_dtype_string(dtype), differ);
    zero_cpu_inner_fini(&host);
    zero_cpu_inner_fini(&remote);
    zero_free(a);
    zero_free(b);
}

static void test_bitwise(void)
{
    static const zero_dtype_t dtypes[] = {ZERO_BF16, ZERO_FP16, ZERO_FP32};
    zero_test_optd_t srv[2];
    const char *addrs[2];
    zero_optim_ctx_t ctx;
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, NULL), ZERO_OK);
    for (int s = 0; s < 2; s++) {
        CU_ASSERT_EQUAL_FATAL(local_server_start(&srv[s]), 0);
        addrs[s] = srv[s].addr;
    }
    /* every optimizer in bf16; Adam and SGD in fp16 and fp32 too */
    for (size_t o = 0; o < sizeof(opt_cases) / sizeof(opt_cases[0]); o++)
        for (int d = 0; d < 3; d++)
            if (d == 0 || opt_cases[o].type == ZERO_OPTIMIZER_ADAM || opt_cases[o].type == ZERO_OPTIMIZER_SGD)
                compare_case(addrs, &opt_cases[o], dtypes[d], &ctx);
    for (int s = 0; s < 2; s++)
        zero_test_optd_stop(&srv[s]);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---------- checkpoints while stepping ---------- */

typedef struct stepper {
    zero_cpu_inner_t *in;
    const zero_optim_ctx_t *ctx;
    zero_status_t status;
    volatile int done;
    unsigned char *slot;
} stepper_t;

/* The offload thread's part: three AdamW steps in bf16 over every slot, each
 * after a prefetch of the next (advance() in store_cpu.c). */
static void *stepper_main(void *arg)
{
    stepper_t *s = arg;
    for (int step = 1; step <= 3 && s->status == ZERO_OK; step++)
        for (int g = 0; g < 2 && s->status == ZERO_OK; g++)
            for (size_t at = 0; at < s->in->store->desc.length[g] && s->status == ZERO_OK; at += SLOT) {
                zero_store_async_step_t st;
                size_t n = s->in->store->desc.length[g] - at < SLOT ? s->in->store->desc.length[g] - at : SLOT;
                slot_step(&st, ZERO_OPTIMIZER_ADAMW, step, ZERO_BF16, s->ctx);
                st.group = g;
                st.begin = at;
                st.count = n;
                fill_slot(s->slot, ZERO_BF16, n, 77u * (uint64_t)step + (uint64_t)g + at, s->ctx);
                if (at + n < s->in->store->desc.length[g])   /* as the offload thread asks for the next chunk */
                    s->status = zero_cpu_inner_prefetch(s->in, g, at + n,
                                                        s->in->store->desc.length[g] - at - n < SLOT
                                                            ? s->in->store->desc.length[g] - at - n : SLOT);
                if (s->status == ZERO_OK)
                    s->status = zero_cpu_inner_step(s->in, &st, s->slot, NULL);
            }
    __atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* @p same_host 1: the requests on the same-host data connection (a second
 * UCX worker, ZERO_OPTD_SAME_HOST=1), 0: on the control connection. */
static void checkpoint_while_stepping(int same_host)
{
    zero_test_optd_t srv;
    const char *addrs[1];
    zero_optim_ctx_t ctx;
    zero_cpu_inner_t host, remote;
    stepper_t sh, sr;
    pthread_t th;
    uint64_t pick = 42;
    unsigned acquires = 0, failed = 0;
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, NULL), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(local_server_start(&srv), 0);
    addrs[0] = srv.addr;
    CU_ASSERT_FATAL(host_inner(&host, 2, &ctx));
    setenv("ZERO_OPTD_SAME_HOST", same_host ? "1" : "0", 1);
    CU_ASSERT_FATAL(remote_inner(&remote, addrs, 1, 2, 10.0, &ctx));
    unsetenv("ZERO_OPTD_SAME_HOST");
    {
        zero_store_remote_stats_t stats;
        zero_store_remote_stats(remote.store, &stats);
        CU_ASSERT_EQUAL(stats.same_host_links, same_host ? 1u : 0u);
    }
    fill(&host);
    fill(&remote);
    sh = (stepper_t){.in = &host, .ctx = &ctx, .slot = zero_malloc(SLOT * 2)};
    sr = (stepper_t){.in = &remote, .ctx = &ctx, .slot = zero_malloc(SLOT * 2)};
    CU_ASSERT_FATAL(sh.slot != NULL && sr.slot != NULL);
    stepper_main(&sh);   /* the reference, without anything beside it */
    CU_ASSERT_EQUAL(sh.status, ZERO_OK);

    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, stepper_main, &sr), 0);
    do {
        /* a checkpoint's read: a range of every field, released clean */
        int g = (int)(zero_test_xorshift(&pick) % 2);
        size_t len = remote.store->desc.length[g];
        size_t begin = (size_t)(zero_test_xorshift(&pick) % len);
        size_t count = 1 + (size_t)(zero_test_xorshift(&pick) % 300000);
        zero_store_range_t r = {.group = g, .begin = begin, .count = count < len - begin ? count : len - begin,
                                .fields = zero_store_fields(remote.store)};
        if (zero_cpu_inner_acquire(&remote, &r) != ZERO_OK) {
            failed++;
            break;
        }
        (void)zero_cpu_inner_release(&remote, &r, 0);
        acquires++;
    } while (!__atomic_load_n(&sr.done, __ATOMIC_ACQUIRE));
    pthread_join(th, NULL);
    printf("\n    %u acquires while stepping%s", acquires, same_host ? " (data connection)" : "");
    CU_ASSERT_EQUAL(failed, 0);
    CU_ASSERT(acquires > 0);
    CU_ASSERT_EQUAL(sr.status, ZERO_OK);
    CU_ASSERT(same_state(&host, &remote));
    zero_cpu_inner_fini(&host);
    zero_cpu_inner_fini(&remote);
    zero_free(sh.slot);
    zero_free(sr.slot);
    zero_test_optd_stop(&srv);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_checkpoint_while_stepping(void) { checkpoint_while_stepping(0); }

static void test_checkpoint_while_stepping_same_host(void) { checkpoint_while_stepping(1); }

/* ---------- a server killed or stalled, the trainer's thread on the lock; undo refused ---------- */

typedef struct slot_stepper {
    zero_cpu_inner_t *in;
    const zero_store_async_step_t *st;
    unsigned char *slot;
    const char *addr;
    zero_status_t status;
    double took;
    int named;   /* the error this thread logged names the server */
} slot_stepper_t;

/* The offload thread's step of one slot; the error is checked here, where it is logged. */
static void *slot_stepper_main(void *arg)
{
    slot_stepper_t *s = arg;
    uint64_t mark = zero_log_error_mark();
    double t0 = zero_clock_now();
    s->status = zero_cpu_inner_step(s->in, s->st, s->slot, NULL);
    s->took = zero_clock_now() - t0;
    s->named = s->status != ZERO_OK && zero_test_error_has(mark, s->addr);
    return NULL;
}

typedef enum lost_how {
    KILLED_BETWEEN,   /* SIGKILL before the slot's step */
    STALLED_MID,      /* SIGSTOP before the step: its messages are in flight, unanswered */
    KILLED_MID,       /* SIGSTOP before the step, SIGKILL while its messages are in flight */
} lost_how_t;

/* zero-optd (a process) lost @p how around a slot's step on another thread
 * (the offload thread), while this thread, a checkpoint's acquire, waits on
 * the inner store's lock. The step fails naming the server (killed: at
 * once; stalled: at the bound, once, not once per message in the window),
 * and the acquire behind the lock returns right after it with the store's
 * refusal. */
static void server_lost(lost_how_t how)
{
    static const char *const names[] = {"killed between slots", "stalled mid-slot", "killed mid-slot"};
    char addr[64];
    const char *addrs[1] = {addr};
    zero_optim_ctx_t ctx;
    zero_cpu_inner_t remote;
    zero_store_async_step_t st;
    zero_store_range_t r = {.group = 1, .begin = 0, .count = 1000, .fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)};
    slot_stepper_t s;
    pthread_t th;
    double timeout_s = 3.0, t0, acquire_took;
    zero_status_t acquired;
    uint64_t mark;
    pid_t pid;
    ZERO_TEST_MEM_MARK();
    memset(&s, 0, sizeof(s));
    s.slot = zero_malloc(SLOT * 2);
    CU_ASSERT_FATAL(s.slot != NULL);
    pid = zero_test_optd_spawn(job_token, addr, sizeof(addr));
    CU_ASSERT_FATAL(pid > 0);
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, NULL), ZERO_OK);
    CU_ASSERT_FATAL(remote_inner(&remote, addrs, 1, 2, timeout_s, &ctx));
    slot_step(&st, ZERO_OPTIMIZER_ADAMW, 1, ZERO_BF16, &ctx);
    st.count = SLOT;   /* three messages over a window of 2 */
    fill_slot(s.slot, ZERO_BF16, SLOT, 9, &ctx);
    CU_ASSERT_EQUAL(zero_cpu_inner_step(&remote, &st, s.slot, NULL), ZERO_OK);

    kill(pid, how == KILLED_BETWEEN ? SIGKILL : SIGSTOP);
    if (how == KILLED_BETWEEN)
        waitpid(pid, NULL, 0);
    st.begin = SLOT;
    s.in = &remote;
    s.st = &st;
    s.addr = addr;
    t0 = zero_clock_now();
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, slot_stepper_main, &s), 0);
    zero_clock_sleep(0.3);   /* mid-slot: the step holds the lock, its window sent, waiting for replies */
    if (how == KILLED_MID) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    mark = zero_log_error_mark();
    acquired = zero_cpu_inner_acquire(&remote, &r);   /* waits on the lock until the step gives up */
    acquire_took = zero_clock_now() - t0;
    pthread_join(th, NULL);
    if (how == STALLED_MID) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    printf("\n    %s: step %s after %.2f s, the acquire behind the lock answered after %.2f s", names[how],
           zero_status_string(s.status), s.took, acquire_took);
    CU_ASSERT(s.named);
    if (how == KILLED_MID) {
        CU_ASSERT_EQUAL(s.status, ZERO_ERR_COMM);
        CU_ASSERT(s.took < timeout_s);   /* UCX sees the closed connection: not the bound */
    } else if (how == KILLED_BETWEEN) {
        CU_ASSERT(s.status == ZERO_ERR_COMM || s.status == ZERO_ERR_TIMEOUT);
        CU_ASSERT(s.took < timeout_s + 2.0);
    } else {
        CU_ASSERT_EQUAL(s.status, ZERO_ERR_TIMEOUT);
        CU_ASSERT(s.took > 0.9 * timeout_s && s.took < 1.5 * timeout_s);   /* one bound, not one per message */
    }
    /* a checkpoint after it: refused, saying why */
    CU_ASSERT_NOT_EQUAL(acquired, ZERO_OK);
    CU_ASSERT(zero_test_error_has(mark, "resume from the last checkpoint"));
    CU_ASSERT(acquire_took < s.took + 1.0);
    if (acquired == ZERO_OK) {
        (void)zero_cpu_inner_release(&remote, &r, 0);
    }
    zero_cpu_inner_fini(&remote);
    zero_free(s.slot);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_server_killed(void) { server_lost(KILLED_BETWEEN); }

static void test_server_stalled_mid_slot(void) { server_lost(STALLED_MID); }

static void test_server_killed_mid_slot(void) { server_lost(KILLED_MID); }

/* The offload thread steps on the remote store's workers and the trainer's
 * thread acquires on them: both contexts' workers must be in UCX's
 * serialized mode (single mode allows one thread; UCX 1.13 does not check
 * it, so a regression would pass every other test here). */
static void test_workers_serialized(void)
{
    const char *data[ZERO_OPTD_DATA_SETTINGS];
    zero_optd_data_settings(data);
    for (int k = 0; k < 2; k++) {
        zero_optd_ucx_t u;
        ucp_worker_attr_t attr;
        CU_ASSERT_EQUAL_FATAL(zero_optd_ucx_open(&u, k == 0 ? NULL : data, "offload-cpu-inner"), ZERO_OK);
        memset(&attr, 0, sizeof(attr));
        attr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
        CU_ASSERT_EQUAL(ucp_worker_query(u.worker, &attr), UCS_OK);
        CU_ASSERT_EQUAL(attr.thread_mode, UCS_THREAD_MODE_SERIALIZED);
        zero_optd_ucx_close(&u);
    }
}

static void test_undo_refused(void)
{
    zero_test_optd_t srv;
    const char *addrs[1];
    zero_optim_ctx_t ctx;
    zero_cpu_inner_t remote, host;
    uint64_t mark;
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, NULL), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(local_server_start(&srv), 0);
    addrs[0] = srv.addr;
    CU_ASSERT_FATAL(remote_inner(&remote, addrs, 1, 2, 10.0, &ctx));
    CU_ASSERT_FATAL(host_inner(&host, 2, &ctx));
    mark = zero_log_error_mark();
    CU_ASSERT_EQUAL(zero_cpu_inner_prepare_undo(&remote), ZERO_ERR_UNSUPPORTED);
    CU_ASSERT(zero_test_error_has(mark, "overlap_step"));
    CU_ASSERT(zero_test_error_has(mark, "remote"));
    CU_ASSERT_EQUAL(zero_cpu_inner_prepare_undo(&host), ZERO_OK);   /* the host store keeps its undo copy */
    zero_cpu_inner_fini(&remote);
    zero_cpu_inner_fini(&host);
    zero_test_optd_stop(&srv);
    ZERO_TEST_ASSERT_NO_LEAK();
}

int main(int argc, char **argv)
{
    CU_TestInfo tests[] = {
        {"slots stepped on two zero-optd == on the host, bitwise", test_bitwise},
        {"checkpoint reads from another thread while the slots step: bitwise", test_checkpoint_while_stepping},
        {"the same over the same-host data connection", test_checkpoint_while_stepping_same_host},
        {"zero-optd killed between slots: an error naming it; the acquire on the lock then refused",
         test_server_killed},
        {"zero-optd stalled mid-slot: one bound, naming it; the acquire on the lock then refused",
         test_server_stalled_mid_slot},
        {"zero-optd killed mid-slot: at once, naming it; the acquire on the lock then refused",
         test_server_killed_mid_slot},
        {"the optd UCX workers (both contexts) are serialized", test_workers_serialized},
        {"undoable steps refused on the remote store", test_undo_refused},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"offload-cpu-inner", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    zero_log_set_level(ZERO_LOG_LEVEL_ERROR);
    return zero_test_main(argc, argv, suites);
}
