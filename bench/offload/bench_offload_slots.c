/*
 * bench_offload_slots: the host side of CPU offload for device ranks with its
 * state on zero-optd (offload_optimizer.device "remote" with mem_kind DEVICE,
 * docs/optd.md), timed without a GPU: one AdamW step over --n elements (bf16
 * gradients and weights), a slot of --slot elements at a time, each slot
 * filled from the gradients in memory (a memcpy standing in for the device ->
 * host copy) and stepped by zero_cpu_inner_step, exactly as the offload
 * thread steps it, against
 *   - host: the same with the state in this process (a host inner store: the
 *     CPU kernel on the slot in place; the "cpu" offload's path);
 *   - remote: the slot handed in place to the remote store on --server (its
 *     step op, then a wait per slot);
 *   - store: the remote store stepped as a host rank's engine steps it:
 *     step_async for each piece of --slot elements without waiting between
 *     them, one step_wait (the pipeline never drains between pieces), on a
 *     second connection to the same server.
 * The three run in turn, --reps times after one warm-up each, so a change of
 * load hits all three. Figures: the median step of each. Last line:
 *   summary: offload_remote_slots_over_host=<x> offload_remote_slots_over_store=<y>
 * x: what remote state costs a device rank's CPU side over state in the rank;
 * y: what waiting at the end of every slot costs over the unbroken pipeline.
 *
 * Usage: bench_offload_slots --server HOST:PORT [--n ELEMS] [--slot ELEMS] [--reps R] [--threads T]
 * The job token comes from ZERO_JOB_TOKEN, as zero-optd's (bench/offload-slots/run.sh starts both).
 */
#include "offload/cpu_inner.h"
#include "offload/optd_wire.h"
#include "offload/store_remote.h"
#include "optim/optim.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/thread_pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HOST, REMOTE, STORE, WAYS };
static const char *const way_names[WAYS] = {"host (slots, state in the process)", "remote (slots on zero-optd)",
                                            "store (remote store, unbroken pipeline)"};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void adamw(zero_store_async_step_t *st, int step, const zero_optim_ctx_t *ctx)
{
    memset(st, 0, sizeof(*st));
    st->optimizer = ZERO_OPTIMIZER_ADAMW;
    st->lr = 1e-3f;
    st->beta1 = 0.9f;
    st->beta2 = 0.999f;
    st->eps = 1e-8f;
    st->weight_decay = 0.01f;
    st->bias_correction = 1;
    st->step = step;
    st->grad_scale = 1.0f;
    st->grad_dtype = ZERO_BF16;
    st->weight_dtype = ZERO_BF16;
    st->optim = ctx;
}

/* One step of @p way; returns its seconds, or -1 on an error (logged by the store). */
static double one_step(int way, zero_cpu_inner_t *inner, zero_store_t *store, int step, size_t n, size_t slot_elems,
                       const uint16_t *grad, uint16_t *slot, uint16_t *weights, const zero_optim_ctx_t *ctx)
{
    double t0 = zero_clock_now();
    zero_status_t status = ZERO_OK;
    for (size_t at = 0; at < n && status == ZERO_OK; at += slot_elems) {
        zero_store_async_step_t st;
        size_t count = n - at < slot_elems ? n - at : slot_elems;
        adamw(&st, step, ctx);
        st.begin = at;
        st.count = count;
        if (way == STORE) {
            st.grad = grad + at;
            st.weights = weights + at;
            status = zero_store_step_async(store, &st);
        } else {
            memcpy(slot, grad + at, count * sizeof(uint16_t));   /* the device -> host copy */
            status = zero_cpu_inner_step(inner, &st, slot, NULL);
            if (status == ZERO_OK)
                memcpy(weights + at, slot, count * sizeof(uint16_t));   /* ... and back */
        }
    }
    if (way == STORE && status == ZERO_OK)
        status = zero_store_step_wait(store);
    return status == ZERO_OK ? zero_clock_now() - t0 : -1.0;
}

int main(int argc, char **argv)
{
    const char *server = NULL, *token_hex = getenv("ZERO_JOB_TOKEN");
    size_t n = (size_t)4 << 20, slot_elems = (size_t)1 << 20;
    int reps = 7, threads = 1, rc = 1;
    zero_store_desc_t desc;
    zero_store_remote_opts_t ro;
    zero_thread_pool_t *pool = NULL;
    zero_optim_ctx_t ctx;
    zero_cpu_inner_t inner[2];
    zero_store_t *host = NULL, *remote = NULL, *store = NULL;
    uint16_t *grad = NULL, *slot = NULL, *weights = NULL;
    double *times[WAYS] = {NULL}, median[WAYS];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            fprintf(stderr, "bench_offload_slots: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--server") == 0)
            server = v;
        else if (strcmp(a, "--n") == 0)
            n = (size_t)strtoull(v, NULL, 10);
        else if (strcmp(a, "--slot") == 0)
            slot_elems = (size_t)strtoull(v, NULL, 10);
        else if (strcmp(a, "--reps") == 0)
            reps = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            threads = atoi(v);
        else {
            fprintf(stderr, "bench_offload_slots: unknown argument %s\n", a);
            return 2;
        }
        i++;
    }
    if (server == NULL || n < 1 || slot_elems < 1 || reps < 1 || threads < 1) {
        fprintf(stderr, "usage: bench_offload_slots --server HOST:PORT [--n ELEMS] [--slot ELEMS] [--reps R] "
                        "[--threads T]\n");
        return 2;
    }
    memset(&inner, 0, sizeof(inner));
    memset(&desc, 0, sizeof(desc));
    desc.kind = ZERO_MEM_HOST;
    desc.num_groups = 1;
    desc.length[0] = n;
    desc.num_states = 2;
    memset(&ro, 0, sizeof(ro));
    ro.servers = &server;
    ro.num_servers = 1;
    ro.timeout_s = 300.0;
    if (token_hex != NULL && zero_optd_token_parse(token_hex, strlen(token_hex), ro.token) != 0) {
        fprintf(stderr, "bench_offload_slots: ZERO_JOB_TOKEN is not 32 lowercase hex digits\n");
        return 2;
    }
    grad = zero_malloc(n * sizeof(uint16_t));
    weights = zero_malloc(n * sizeof(uint16_t));
    slot = zero_malloc(slot_elems * sizeof(uint16_t));
    for (int w = 0; w < WAYS; w++)
        times[w] = zero_calloc((size_t)reps, sizeof(double));
    if (grad == NULL || weights == NULL || slot == NULL || times[WAYS - 1] == NULL || times[0] == NULL ||
        times[1] == NULL)
        goto out;
    for (size_t i = 0; i < n; i++)
        grad[i] = (uint16_t)(0x3c00u + (uint16_t)(i % 251u));   /* bf16 values near 2^-7 .. 1 */
    if (zero_thread_pool_create(threads, &pool) != ZERO_OK || zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, pool) != ZERO_OK ||
        zero_store_host_create(&desc, &host) != ZERO_OK || zero_cpu_inner_init(&inner[0], host, &ctx) != ZERO_OK ||
        zero_store_remote_create(&desc, &ro, &remote) != ZERO_OK ||
        zero_cpu_inner_init(&inner[1], remote, &ctx) != ZERO_OK || zero_store_remote_create(&desc, &ro, &store) != ZERO_OK)
        goto out;

    printf("bench_offload_slots: %zu elements, slots of %zu, AdamW bf16, %d reps, %d threads, server %s\n", n,
           slot_elems, reps, threads, server);
    for (int r = -1; r < reps; r++)
        for (int w = 0; w < WAYS; w++) {
            double t = one_step(w, w == STORE ? NULL : &inner[w], store, r + 2, n, slot_elems, grad, slot, weights,
                                &ctx);
            if (t < 0) {
                fprintf(stderr, "bench_offload_slots: the %s step failed\n", way_names[w]);
                goto out;
            }
            if (r >= 0)
                times[w][r] = t;
        }
    for (int w = 0; w < WAYS; w++) {
        qsort(times[w], (size_t)reps, sizeof(double), cmp_double);
        median[w] = times[w][reps / 2];
        printf("%-42s median %8.2f ms (min %.2f, max %.2f)\n", way_names[w], median[w] * 1e3, times[w][0] * 1e3,
               times[w][reps - 1] * 1e3);
    }
    printf("summary: offload_remote_slots_over_host=%.3f offload_remote_slots_over_store=%.3f\n",
           median[REMOTE] / median[HOST], median[REMOTE] / median[STORE]);
    rc = 0;
out:
    zero_cpu_inner_fini(&inner[0]);   /* host and remote with them (zero_cpu_inner_init took them) */
    zero_cpu_inner_fini(&inner[1]);
    zero_store_destroy(store);
    zero_thread_pool_destroy(pool);
    for (int w = 0; w < WAYS; w++)
        zero_free(times[w]);
    zero_free(grad);
    zero_free(weights);
    zero_free(slot);
    return rc;
}
