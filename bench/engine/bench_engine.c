/*
 * bench/run engine, one configuration per launch: step time and model-state
 * bytes per rank of a synthetic model, next to the ZeRO paper's formula.
 *
 * Usage (under zero-launch): bench_engine --stage S [--dtype bf16|fp32]
 *        [--params N] [--layers L] [--steps K] [--mode whole|layerwise] [--bucket E]
 * (--bucket: reduce and allgather bucket size in elements, default N / 50;
 * --check-grad-writes: zero_optimization.check_grad_writes, the late-write guard;
 * --max-live: stage3_max_live_parameters, default DeepSpeed's 1e9, with which
 * release keeps the forward's layers for the backward, stage3_max_reuse_distance
 * allowing; a few layers' worth makes the backward gather them again)
 * The model: an embedding of N/50 elements and L layers of two square-ish
 * tensors sharing the rest. Each step, as a trainer runs it:
 *   - stage 3, --mode layerwise (default): the forward gathers and releases
 *     one layer at a time, the backward walks the layers in reverse,
 *     gathering each again; the engine prefetches the next layers in the
 *     order it recorded in the first step;
 *   - stage 3, --mode whole: one zero_gather of every tensor before the
 *     forward, one zero_release after the backward;
 *   - every stage: the backward writes a constant gradient into each tensor
 *     and marks it ready (stages 2-3 reduce during the backward), then
 *     zero_backward_end and zero_step.
 * step_ms is the time the step spends in the engine: the wall time of the
 * whole iteration minus the time the synthetic trainer spends writing its
 * gradients (the same at every stage), median over the steps after the
 * first two (the first records the gather order, the second is the first
 * with prefetch). Rank 0 prints one CSV row:
 *   world,stage,dtype,params,step_ms,state_bytes,peak_bytes,formula_bytes,peak_over_formula,
 *   mode,iter_ms,moved_bytes,triad_gbps,setup_s,populate_s,populate_touch_s
 * state_bytes is the persistent model state (weights, gradients, master,
 * moments); peak_bytes adds the stage-3 persistent parameters and the most
 * working memory held (pools, or buffers in use if more); formula_bytes is
 * the ZeRO paper's (2 + 2 + K) * Psi per rank with K = 12 (16-bit training,
 * fp32 master and Adam moments), divided as the stage divides it; for fp32
 * training 4 + 4 + K with K = 12 (master weights are kept apart from the
 * weights). The rest are measured in the same process:
 *   moved_bytes   fp32 only: bytes a rank must move through memory per step
 *                 at stages 1-2 (reduce-scatter reads W slices and writes
 *                 one, (W + 1) 4 Psi / W; AdamW reads g, w, m, v and writes
 *                 w, m, v, 28 Psi / W; the allgather reads and writes the W - 1
 *                 peer slices, 8 (W - 1) Psi / W): 24 Psi at W = 2;
 *   triad_gbps    this rank's memory bandwidth, a[i] = b[i] + s c[i] over
 *                 three 32 MiB arrays, every rank at once (as in a step),
 *                 12 bytes per element counted, best of 5;
 *   setup_s       zero_engine_setup (allocate and back the state, initial values);
 *   populate_s    mmap + MADV_POPULATE_WRITE of state_bytes of fresh memory
 *                 (after setup), every rank at once;
 *   populate_touch_s  the same plus one write per page: on a VM whose host
 *                 backs guest pages lazily (this one), only the write makes
 *                 the host provide the page, so this is what backing the
 *                 state really costs.
 */
#include <zero/zero.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Best of 5 triads over three 32 MiB arrays (backed and warmed first), GB/s. */
static double triad_gbps(zero_comm_h comm)
{
    size_t n = (size_t)8 << 20;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
    double best = 0.0;
    if (a == NULL || b == NULL || c == NULL) {
        free(a);
        free(b);
        free(c);
        return 0.0;
    }
    for (size_t i = 0; i < n; i++) {
        a[i] = 0.0f;
        b[i] = 1.0f;
        c[i] = 2.0f;
    }
    for (int r = 0; r < 5; r++) {
        double t0, t;
        zero_comm_barrier(comm);
        t0 = now();
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] + 0.5f * c[i];
        t = now() - t0;
        if (12.0 * (double)n / t / 1e9 > best)
            best = 12.0 * (double)n / t / 1e9;
    }
    if (a[n / 2] != 2.0f)   /* keeps the loop from being optimised away */
        best = 0.0;
    free(a);
    free(b);
    free(c);
    return best;
}

/* Seconds to back @p bytes of fresh anonymous memory with MADV_POPULATE_WRITE
 * (*populate_s) and then write one byte per page (*touch_s, the total). */
static void populate_cost(zero_comm_h comm, size_t bytes, double *populate_s, double *touch_s)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    double t0;
    char *p;
    *populate_s = *touch_s = 0.0;
    zero_comm_barrier(comm);
    t0 = now();
    p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0)
        fprintf(stderr, "bench_engine: MADV_POPULATE_WRITE not available; populate_s counts faults\n");
    *populate_s = now() - t0;
    for (size_t off = 0; off < bytes; off += page)
        ((volatile char *)p)[off] = 1;
    *touch_s = now() - t0;
    munmap(p, bytes);
}

static void init_small(const char *name, size_t offset, size_t count, float *out, void *user)
{
    (void)name;
    (void)user;
    for (size_t i = 0; i < count; i++)
        out[i] = 0.01f * (float)((offset + i) % 101) - 0.5f;
}

/* Writes the synthetic gradient of @p h and marks it ready; returns the seconds spent writing. */
static double backward_one(zero_engine_h eng, zero_param_h h, zero_dtype_t dtype, float seed, int *bad)
{
    size_t n = zero_param_numel(h);
    void *g = zero_param_grad(h);
    double t0 = now();
    if (g == NULL) {
        *bad = 1;
        return 0.0;
    }
    if (dtype == ZERO_FP32) {
        for (size_t k = 0; k < n; k++)
            ((float *)g)[k] = 1e-3f * seed;
    } else {
        for (size_t k = 0; k < n; k++)
            ((uint16_t *)g)[k] = 0x3a83;   /* bf16 1e-3 */
    }
    t0 = now() - t0;
    if (zero_grad_ready(eng, h) != ZERO_OK)
        *bad = 1;
    return t0;
}

int main(int argc, char **argv)
{
    int stage = 0, layers = 48, steps = 4, layerwise = 1, check_grad_writes = 0;
    double params = 1e8, bucket = 0.0, max_live = 1e9;
    const char *dtype_name = "bf16";
    zero_dtype_t dtype;
    char json[1024];
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON};
    zero_engine_h eng;
    zero_comm_h comm;
    zero_param_h *h;
    int nparams, world, rank;
    double *times, *iters, setup_s, populate_s, touch_s, triad;
    zero_engine_memory_t mem;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--stage") && i + 1 < argc)
            stage = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc)
            dtype_name = argv[++i];
        else if (!strcmp(argv[i], "--params") && i + 1 < argc)
            params = atof(argv[++i]);
        else if (!strcmp(argv[i], "--layers") && i + 1 < argc)
            layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bucket") && i + 1 < argc)
            bucket = atof(argv[++i]);
        else if (!strcmp(argv[i], "--max-live") && i + 1 < argc)
            max_live = atof(argv[++i]);
        else if (!strcmp(argv[i], "--check-grad-writes"))
            check_grad_writes = 1;
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
            i++;
            layerwise = strcmp(argv[i], "whole") != 0;
            if (layerwise && strcmp(argv[i], "layerwise") != 0) {
                fprintf(stderr, "bench_engine: --mode is whole or layerwise\n");
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_engine --stage S [--dtype bf16|fp32] [--params N] [--layers L] [--steps K] "
                            "[--mode whole|layerwise] [--bucket ELEMS] [--max-live ELEMS] [--check-grad-writes]\n");
            return 2;
        }
    }
    if (bucket < 1.0)
        bucket = params / 50;
    dtype = !strcmp(dtype_name, "fp32") ? ZERO_FP32 : ZERO_BF16;
    if (steps < 3 || layers < 1 || params < 1e3 || stage < 0 || stage > 3) {
        fprintf(stderr, "bench_engine: need --steps >= 3, --layers >= 1, --params >= 1000, --stage 0..3\n");
        return 2;
    }
    /* Buckets of 2% of the model and a prefetch of about one layer, as one tunes DeepSpeed for a model this size. */
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": 1, %s"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-4, \"weight_decay\": 0.01}},"
             " \"steps_per_print\": 0, \"gradient_clipping\": 1.0,"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": %.0f, \"allgather_bucket_size\": %.0f,"
             " \"stage3_prefetch_bucket_size\": %.0f, \"stage3_param_persistence_threshold\": 0,"
             " \"stage3_max_live_parameters\": %.0f, \"check_grad_writes\": %s}}",
             dtype == ZERO_BF16 ? "\"bf16\": {\"enabled\": true}," : "", stage, bucket, bucket, params / layers,
             max_live, check_grad_writes ? "true" : "false");
    ep.config_json = json;
    if (zero_engine_create(&ep, &eng) != ZERO_OK)
        return 1;
    comm = zero_engine_comm(eng);
    world = zero_comm_size(comm);
    rank = zero_comm_rank(comm);
    nparams = 1 + 2 * layers;
    h = calloc((size_t)nparams, sizeof(*h));
    times = calloc((size_t)steps, sizeof(double));
    iters = calloc((size_t)steps, sizeof(double));
    {
        int64_t emb = (int64_t)(params / 50);
        int64_t per_tensor = (int64_t)((params - (double)emb) / (2.0 * layers));
        int64_t cols = 1024, rows = per_tensor / cols > 0 ? per_tensor / cols : 1;
        for (int i = 0; i < nparams; i++) {
            char name[64];
            zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN, .name = name, .dtype = dtype,
                                   .ndim = 2, .init_fn = init_small};
            if (i == 0) {
                snprintf(name, sizeof(name), "embedding");
                d.shape[0] = emb / cols > 0 ? emb / cols : 1;
            } else {
                snprintf(name, sizeof(name), "layer%d.%s", (i - 1) / 2, (i - 1) % 2 ? "w2" : "w1");
                d.shape[0] = rows;
            }
            d.shape[1] = cols;
            if (zero_param_register(eng, &d, &h[i]) != ZERO_OK)
                return 1;
        }
    }
    zero_comm_barrier(comm);
    setup_s = now();
    if (zero_engine_setup(eng) != ZERO_OK)
        return 1;
    setup_s = now() - setup_s;
    /* The cost of backing as many fresh bytes as the model state (each rank at once, as setup runs). */
    zero_engine_memory(eng, &mem);
    populate_cost(comm, (size_t)(mem.params + mem.grads + mem.master + mem.optim_state), &populate_s, &touch_s);
    triad = triad_gbps(comm);
    for (int s = 0; s < steps; s++) {
        float seed;
        double t0, fill = 0.0;
        int bad = 0;
        zero_comm_barrier(comm);
        t0 = now();
        /* forward */
        if (stage == 3 && !layerwise) {
            if (zero_gather(eng, h, (size_t)nparams) != ZERO_OK)
                return 1;
        } else {
            for (int i = 0; i < nparams; i += i == 0 ? 1 : 2) {   /* the embedding, then a layer (w1, w2) at a time */
                size_t n = i == 0 ? 1 : 2;
                if (zero_gather(eng, &h[i], n) != ZERO_OK || zero_release(eng, &h[i], n) != ZERO_OK)
                    return 1;
            }
        }
        /* backward, layers in reverse */
        if (zero_backward_begin(eng, &seed) != ZERO_OK)
            return 1;
        for (int i = nparams - 2; i >= -1; i -= 2) {
            int first = i < 1 ? 0 : i;
            size_t n = i < 1 ? 1 : 2;
            if (stage == 3 && layerwise && zero_gather(eng, &h[first], n) != ZERO_OK)
                return 1;
            for (int q = first + (int)n - 1; q >= first; q--)
                fill += backward_one(eng, h[q], dtype, seed, &bad);
            if (bad || (stage == 3 && layerwise && zero_release(eng, &h[first], n) != ZERO_OK))
                return 1;
        }
        if (stage == 3 && !layerwise && zero_release(eng, h, (size_t)nparams) != ZERO_OK)
            return 1;
        if (zero_backward_end(eng) != ZERO_OK || zero_step(eng, NULL) != ZERO_OK)
            return 1;
        iters[s] = now() - t0;
        times[s] = iters[s] - fill;
    }
    zero_engine_memory(eng, &mem);
    if (rank == 0 && getenv("ZERO_BENCH_TIMERS") != NULL) {
        zero_engine_timers_t t;
        zero_engine_timers(eng, &t);
        fprintf(stderr, "timers (s, all steps): backward_wait=%.3f reduce=%.3f step=%.3f gather=%.3f\n",
                t.backward_wait, t.reduce, t.step, t.gather);
    }
    if (rank == 0) {
        double psi = (double)mem.num_params, n = (double)world, w = dtype == ZERO_FP32 ? 4.0 : 2.0, k = 12.0;
        double formula = stage == 0 ? (w + w + k) * psi
                       : stage == 1 ? (w + w) * psi + k * psi / n
                       : stage == 2 ? w * psi + (w + k) * psi / n
                                    : (w + w + k) * psi / n;
        double moved = dtype == ZERO_FP32 ? ((n + 1) * 4 * psi + 28 * psi + 8 * (n - 1) * psi) / n : 0.0;
        uint64_t state = mem.params + mem.grads + mem.master + mem.optim_state;
        uint64_t work = mem.pools > mem.buffers_peak ? mem.pools : mem.buffers_peak;
        uint64_t peak = state + mem.persistent + work;
        /* the first two steps are warm-up: gather-order recording, first prefetch, first use of the pools */
        qsort(times + 2, (size_t)steps - 2, sizeof(double), cmp_double);
        qsort(iters + 2, (size_t)steps - 2, sizeof(double), cmp_double);
        printf("%d,%d,%s,%.0f,%.2f,%llu,%llu,%.0f,%.3f,%s,%.2f,%.0f,%.2f,%.3f,%.3f,%.3f\n", world, stage, dtype_name,
               psi, 1e3 * times[2 + (steps - 2) / 2], (unsigned long long)state, (unsigned long long)peak, formula,
               (double)peak / formula, stage == 3 ? (layerwise ? "layerwise" : "whole") : "-",
               1e3 * iters[2 + (steps - 2) / 2], moved, triad, setup_s, populate_s, touch_s);
    }
    free(h);
    free(times);
    free(iters);
    zero_engine_destroy(eng);
    return 0;
}
