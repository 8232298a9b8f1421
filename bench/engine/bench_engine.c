/*
 * bench/run engine, one configuration per launch: step time and model-state
 * bytes per rank of a synthetic model, next to the ZeRO paper's formula.
 *
 * Usage (under zero-launch): bench_engine --stage S [--dtype bf16|fp32]
 *        [--params N] [--layers L] [--steps K]
 * The model: an embedding of N/50 elements and L layers of two square-ish
 * tensors sharing the rest. Each step: the forward gathers and releases every
 * layer (stage 3), the backward walks the layers in reverse writing a constant
 * gradient and marking it ready (so stage 2-3 reduce during the backward), then
 * zero_step. Rank 0 prints one CSV row:
 *   world,stage,dtype,params,step_ms,state_bytes,peak_bytes,formula_bytes,peak_over_formula
 * step_ms is the median over the steps after the first; state_bytes the
 * persistent model state (weights, gradients, master, moments); peak_bytes adds
 * the most bucket, gather and scratch buffers held at once; formula_bytes is
 * the ZeRO paper's (2 + 2 + K) * Psi per rank with K = 12 (16-bit training,
 * fp32 master and Adam moments), divided as the stage divides it; for fp32
 * training 4 + 4 + K with K = 12 (master weights are kept apart from the weights).
 */
#include <zero/zero.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void init_small(const char *name, size_t offset, size_t count, float *out, void *user)
{
    (void)name;
    (void)user;
    for (size_t i = 0; i < count; i++)
        out[i] = 0.01f * (float)((offset + i) % 101) - 0.5f;
}

int main(int argc, char **argv)
{
    int stage = 0, layers = 48, steps = 4;
    double params = 1e8;
    const char *dtype_name = "bf16";
    zero_dtype_t dtype;
    char json[1024];
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON};
    zero_engine_h eng;
    zero_param_h *h;
    int nparams, world, rank;
    double *times;
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
        else {
            fprintf(stderr, "usage: bench_engine --stage S [--dtype bf16|fp32] [--params N] [--layers L] [--steps K]\n");
            return 2;
        }
    }
    dtype = !strcmp(dtype_name, "fp32") ? ZERO_FP32 : ZERO_BF16;
    if (steps < 2 || layers < 1 || params < 1e3 || stage < 0 || stage > 3) {
        fprintf(stderr, "bench_engine: need --steps >= 2, --layers >= 1, --params >= 1000, --stage 0..3\n");
        return 2;
    }
    /* Buckets of 2% of the model and a prefetch of about one layer, as one tunes DeepSpeed for a model this size. */
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": 1, %s"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-4, \"weight_decay\": 0.01}},"
             " \"steps_per_print\": 0, \"gradient_clipping\": 1.0,"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": %.0f, \"allgather_bucket_size\": %.0f,"
             " \"stage3_prefetch_bucket_size\": %.0f, \"stage3_param_persistence_threshold\": 0}}",
             dtype == ZERO_BF16 ? "\"bf16\": {\"enabled\": true}," : "", stage, params / 50, params / 50,
             params / layers);
    ep.config_json = json;
    if (zero_engine_create(&ep, &eng) != ZERO_OK)
        return 1;
    world = zero_comm_size(zero_engine_comm(eng));
    rank = zero_comm_rank(zero_engine_comm(eng));
    nparams = 1 + 2 * layers;
    h = calloc((size_t)nparams, sizeof(*h));
    times = calloc((size_t)steps, sizeof(double));
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
    if (zero_engine_setup(eng) != ZERO_OK)
        return 1;
    for (int s = 0; s < steps; s++) {
        float seed;
        double t0 = now();
        for (int i = 0; i < nparams; i++) {   /* forward, parameter by parameter */
            if (zero_gather(eng, &h[i], 1) != ZERO_OK || zero_release(eng, &h[i], 1) != ZERO_OK)
                return 1;
        }
        if (zero_backward_begin(eng, &seed) != ZERO_OK)
            return 1;
        for (int i = nparams - 1; i >= 0; i--) {
            void *g;
            size_t n = zero_param_numel(h[i]);
            if (zero_gather(eng, &h[i], 1) != ZERO_OK)
                return 1;
            g = zero_param_grad(h[i]);
            if (dtype == ZERO_FP32) {
                for (size_t k = 0; k < n; k++)
                    ((float *)g)[k] = 1e-3f * seed;
            } else {
                for (size_t k = 0; k < n; k++)
                    ((uint16_t *)g)[k] = 0x3a83;   /* bf16 1e-3 */
            }
            if (zero_grad_ready(eng, h[i]) != ZERO_OK || zero_release(eng, &h[i], 1) != ZERO_OK)
                return 1;
        }
        if (zero_backward_end(eng) != ZERO_OK || zero_step(eng, NULL) != ZERO_OK)
            return 1;
        times[s] = now() - t0;
    }
    zero_engine_memory(eng, &mem);
    if (rank == 0) {
        double psi = (double)mem.num_params, n = (double)world, w = dtype == ZERO_FP32 ? 4.0 : 2.0, k = 12.0;
        double formula = stage == 0 ? (w + w + k) * psi
                       : stage == 1 ? (w + w) * psi + k * psi / n
                       : stage == 2 ? w * psi + (w + k) * psi / n
                                    : (w + w + k) * psi / n;
        uint64_t state = mem.params + mem.grads + mem.master + mem.optim_state;
        uint64_t peak = state + mem.buffers_peak;
        qsort(times + 1, (size_t)steps - 1, sizeof(double), cmp_double);
        /* fp32 training keeps the master apart from the weights at stages 1-2 only */
        printf("%d,%d,%s,%.0f,%.1f,%llu,%llu,%.0f,%.3f\n", world, stage, dtype_name, psi,
               1e3 * times[1 + (steps - 1) / 2], (unsigned long long)state, (unsigned long long)peak, formula,
               (double)peak / formula);
    }
    free(h);
    free(times);
    zero_engine_destroy(eng);
    return 0;
}
