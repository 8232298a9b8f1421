/*
 * bench/run gpu: the device path on one GPU, each figure next to a baseline
 * measured in the same run.
 *
 * 1. AdamW kernel (lib/optim's zero_cuda_adam: fp32 master weights, gradients
 *    and moments, bf16 weights written back) over n = 1e8, 3e8, 1e9 elements,
 *    against cudaMemcpyAsync device-to-device of the same bytes: the kernel
 *    reads 16 and writes 14 bytes per element (30 bytes of traffic); the copy
 *    moves 15 bytes per element (read + write = 30). adamw_over_d2d = copy
 *    time / kernel time at the largest n that fits (target >= 0.85).
 * 2. A training step of the GPU trainer's model (examples/gpt/gpt_cuda.cu,
 *    bf16, AdamW, clipping 1.0) through the engine (ZERO_MEM_DEVICE, world 1,
 *    stages 0-3, the trainer's gather/release/grad_ready calls) against the
 *    same step with the same kernels called directly: the same forward and
 *    backward, the same 16-bit conversions, then per tensor the bf16 -> fp32
 *    cast, the gradient statistics, one host read of the gate, zero_cuda_adam
 *    with the bf16 write-back, and zeroing the gradients. Median of the timed
 *    steps, each ended by a stream synchronize. engine_step_over_direct = the
 *    worst (largest) stage's ratio (target <= 1.10).
 * 3. Device bytes per stage from zero_engine_memory (params + grads + master +
 *    optim_state) against the ZeRO formula at world size 1, (2 + 2 + 12) Psi
 *    for bf16 with AdamW; device_bytes_over_formula = the stage farthest from 1
 *    (target 0.95-1.05; padding to 64-element alignment makes it a little over 1).
 *
 * Last line: summary: adamw_over_d2d=<x> engine_step_over_direct=<y> device_bytes_over_formula=<z>
 * Without a CUDA device: the reason, the summary with na fields, exit status 77.
 * Options: --quick (n up to 1e8, fewer steps), --steps N (timed steps per stage, default 20).
 */
#include "gpt.h"
#include "gpt_backend.h"
#include "gpt_cuda.h"
#include "optim/optim_cuda.h"

#include <zero/zero.h>

#include <cuda_runtime_api.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A CUDA call, or a libzero launcher: negative is an error pending before
 * its launch (lib/util/cuda_launch.cuh). */
#define CUDA_OK(call)                                                                                       \
    do {                                                                                                    \
        int e_ = (int)(call);                                                                               \
        if (e_ != 0) {                                                                                      \
            fprintf(stderr, "bench_gpu: %s: %s%s\n", #call,                                                 \
                    cudaGetErrorString((cudaError_t)(e_ < 0 ? -e_ : e_)),                                   \
                    e_ < 0 ? " (pending before the launch)" : "");                                          \
            return -1;                                                                                      \
        }                                                                                                   \
    } while (0)

#define ZERO_OK_OR(call)                                                                                    \
    do {                                                                                                    \
        zero_status_t s_ = (call);                                                                          \
        if (s_ != ZERO_OK) {                                                                                \
            fprintf(stderr, "bench_gpu: %s: %s\n", #call, zero_status_string(s_));                          \
            return -1;                                                                                      \
        }                                                                                                   \
    } while (0)

static cudaStream_t stream;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- 1. AdamW against a device-to-device copy ---- */

static zero_adam_k_t adamw_k(void)
{
    zero_adam_k_t k = {0};
    k.grad_scale = 1.0f;
    k.beta1 = 0.9f;
    k.one_minus_beta1 = 0.1f;
    k.beta2 = 0.95f;
    k.one_minus_beta2 = 0.05f;
    k.eps = 1e-8f;
    k.bc2_rsqrt = 1.0f;
    k.step_size = 1e-3f;
    k.decay_mul = 1.0f - 1e-3f * 0.1f;
    return k;
}

/* Times the kernel and the copy at @p n; *ratio_p = copy / kernel. 1 when n does not fit. */
static int adamw_vs_copy(size_t n, int reps, double *ratio_p)
{
    size_t free_b = 0, total_b = 0, copy_bytes = 15 * n;
    CUDA_OK(cudaMemGetInfo(&free_b, &total_b));
    if (16 * n + 2 * n + 2 * copy_bytes + (1u << 30) > free_b) {
        printf("adamw: n=%.0e does not fit (%.1f GiB free)\n", (double)n, (double)free_b / (1 << 30));
        return 1;
    }
    float *w, *g, *m, *v;
    uint16_t *w16;
    void *src, *dst;
    zero_cuda_gate_t *gate;
    CUDA_OK(cudaMalloc((void **)&w, 4 * n));
    CUDA_OK(cudaMalloc((void **)&g, 4 * n));
    CUDA_OK(cudaMalloc((void **)&m, 4 * n));
    CUDA_OK(cudaMalloc((void **)&v, 4 * n));
    CUDA_OK(cudaMalloc((void **)&w16, 2 * n));
    CUDA_OK(cudaMalloc(&src, copy_bytes));
    CUDA_OK(cudaMalloc(&dst, copy_bytes));
    CUDA_OK(cudaMalloc((void **)&gate, sizeof(*gate)));
    CUDA_OK(cudaMemsetAsync(w, 0, 4 * n, stream));
    CUDA_OK(cudaMemsetAsync(g, 0, 4 * n, stream));
    CUDA_OK(cudaMemsetAsync(m, 0, 4 * n, stream));
    CUDA_OK(cudaMemsetAsync(v, 0, 4 * n, stream));
    CUDA_OK(cudaMemsetAsync(src, 1, copy_bytes, stream));
    CUDA_OK((cudaError_t)zero_cuda_gate_set(gate, 1.0, 1.0f, 0, stream));
    zero_adam_k_t k = adamw_k();
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    double t_adam[16], t_copy[16];
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        float ms;
        CUDA_OK(cudaEventRecord(e0, stream));
        CUDA_OK((cudaError_t)zero_cuda_adam(&k, gate, w, g, NULL, m, v, w16, ZERO_OPTIM_W16_BF16, n, stream));
        CUDA_OK(cudaEventRecord(e1, stream));
        CUDA_OK(cudaEventSynchronize(e1));
        CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
        if (r >= 0)
            t_adam[r] = ms;
        CUDA_OK(cudaEventRecord(e0, stream));
        CUDA_OK(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice, stream));
        CUDA_OK(cudaEventRecord(e1, stream));
        CUDA_OK(cudaEventSynchronize(e1));
        CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
        if (r >= 0)
            t_copy[r] = ms;
    }
    double ta = median(t_adam, reps), tc = median(t_copy, reps);
    printf("adamw: n=%.0e adamw_ms=%.3f (%.0f GB/s of 30 bytes/element) d2d_copy_ms=%.3f (%.0f GB/s read+write) "
           "adamw_over_d2d=%.3f\n",
           (double)n, ta, 30.0 * (double)n / ta / 1e6, tc, 2.0 * (double)copy_bytes / tc / 1e6, tc / ta);
    *ratio_p = tc / ta;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    void *all[] = {w, g, m, v, w16, src, dst, gate};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        cudaFree(all[i]);
    return 0;
}

/* ---- 2. and 3. the GPU trainer's step, through the engine and direct ---- */

enum { NT_MAX = GPT_NUM_GLOBAL + 8 * GPT_NUM_BLOCK };

typedef struct model_run {
    gpt_config_t cfg;
    int B, T, nt;          /* tensors: global then blocks */
    int layer[NT_MAX], tensor[NT_MAX];
    size_t numel[NT_MAX];
    int *x, *y;            /* host tokens */
    void *model;           /* gpt_backend (CUDA) activations */
    float *w32[NT_MAX], *g32[NT_MAX]; /* fp32 scratch the model reads and adds into */
    float *wblock[8 * GPT_NUM_BLOCK], *gblock[8 * GPT_NUM_BLOCK];
    gpt_weights_t w, g;
} model_run_t;

static int slot(const model_run_t *r, int layer, int tensor)
{
    return layer < 0 ? tensor : GPT_NUM_GLOBAL + layer * GPT_NUM_BLOCK + tensor;
}

static int model_setup(model_run_t *r)
{
    r->cfg = (gpt_config_t){.vocab = 256, .context = 128, .channels = 256, .layers = 4, .heads = 8};
    r->B = 8;
    r->T = 128;
    r->nt = GPT_NUM_GLOBAL + r->cfg.layers * GPT_NUM_BLOCK;
    r->w.block = r->wblock;
    r->g.block = r->gblock;
    for (int l = -1; l < r->cfg.layers; l++)
        for (int t = 0; t < (l < 0 ? GPT_NUM_GLOBAL : GPT_NUM_BLOCK); t++) {
            int k = slot(r, l, t);
            r->layer[k] = l;
            r->tensor[k] = t;
            r->numel[k] = gpt_tensor_numel(&r->cfg, l, t);
            r->w32[k] = gpt_backend.alloc(r->numel[k]);
            r->g32[k] = gpt_backend.alloc(r->numel[k]);
            if (r->w32[k] == NULL || r->g32[k] == NULL)
                return -1;
            if (l < 0) {
                r->w.global[t] = r->w32[k];
                r->g.global[t] = r->g32[k];
            } else {
                r->w.block[l * GPT_NUM_BLOCK + t] = r->w32[k];
                r->g.block[l * GPT_NUM_BLOCK + t] = r->g32[k];
            }
        }
    r->x = malloc(sizeof(int) * (size_t)(r->B * r->T));
    r->y = malloc(sizeof(int) * (size_t)(r->B * r->T));
    if (r->x == NULL || r->y == NULL)
        return -1;
    for (int i = 0; i < r->B * r->T; i++) {
        r->x[i] = (i * 131 + 7) % r->cfg.vocab;
        r->y[i] = (i * 71 + 3) % r->cfg.vocab;
    }
    r->model = gpt_backend.create(&r->cfg, r->B, r->T);
    return r->model != NULL ? 0 : -1;
}

static void model_teardown(model_run_t *r)
{
    if (r->model != NULL)
        gpt_backend.destroy(r->model);
    for (int k = 0; k < r->nt; k++) {
        gpt_backend.free(r->w32[k]);
        gpt_backend.free(r->g32[k]);
    }
    free(r->x);
    free(r->y);
}

/* The model's weights of @p first..first+count-1 from bf16 @p w16; their fp32 gradients zeroed. */
static void load(model_run_t *r, int first, int count, void *const *w16)
{
    for (int k = first; k < first + count; k++) {
        gpt_backend.to_f32(ZERO_BF16, w16[k], r->w32[k], r->numel[k]);
        gpt_backend.zero(r->g32[k], r->numel[k]);
    }
}

static void fold(model_run_t *r, int first, int count, void *const *g16)
{
    for (int k = first; k < first + count; k++)
        gpt_backend.add_to_16(ZERO_BF16, g16[k], r->g32[k], r->numel[k]);
}

/* Through the engine: train_gpt.c's micro-batch, one micro-batch per step. */
static int engine_steps(model_run_t *r, int stage, int warm, int steps, double *ms_p, double *bytes_ratio_p)
{
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": %d, \"gradient_accumulation_steps\": 1,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-3, \"betas\": [0.9, 0.95],"
             " \"weight_decay\": 0.1}}, \"bf16\": {\"enabled\": true}, \"gradient_clipping\": 1.0,"
             " \"zero_optimization\": {\"stage\": %d}}",
             r->B, stage);
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_MEM_KIND |
                                             ZERO_ENGINE_PARAM_FIELD_CUDA_STREAM,
                               .config_json = json, .mem_kind = ZERO_MEM_DEVICE, .cuda_stream = stream};
    zero_engine_h eng = NULL;
    zero_param_h p[NT_MAX];
    void *w16[NT_MAX], *g16[NT_MAX];
    double t[256];
    int rc = -1, L = r->cfg.layers;
    zero_status_t cs = zero_engine_create(&ep, &eng);
    if (cs != ZERO_OK) {
        fprintf(stderr, "bench_gpu: zero_engine_create at stage %d: %s\n", stage, zero_status_string(cs));
        return -1;
    }
    for (int k = 0; k < r->nt; k++) {
        char name[64];
        long shape[2];
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_WEIGHT_DECAY};
        gpt_tensor_info(&r->cfg, r->layer[k], r->tensor[k], name, sizeof(name), &d.ndim, shape);
        d.name = name;
        d.dtype = ZERO_BF16;
        d.shape[0] = shape[0];
        d.shape[1] = shape[1];
        d.weight_decay = d.ndim >= 2;
        if (zero_param_register(eng, &d, &p[k]) != ZERO_OK)
            goto out;
    }
    if (zero_engine_setup(eng) != ZERO_OK)
        goto out;
    for (int s = 0; s < warm + steps; s++) {
        float seed;
        zero_step_info_t info;
        double t0 = now();
        if (zero_gather(eng, p, GPT_NUM_GLOBAL) != ZERO_OK)
            goto out;
        for (int k = 0; k < GPT_NUM_GLOBAL; k++)
            w16[k] = zero_param_data(p[k]);
        load(r, 0, GPT_NUM_GLOBAL, w16);
        gpt_backend.forward_begin(r->model, &r->w, r->x, r->B, r->T);
        for (int l = 0; l < L; l++) {
            int f = slot(r, l, 0);
            if (zero_gather(eng, &p[f], GPT_NUM_BLOCK) != ZERO_OK)
                goto out;
            for (int k = f; k < f + GPT_NUM_BLOCK; k++)
                w16[k] = zero_param_data(p[k]);
            load(r, f, GPT_NUM_BLOCK, w16);
            gpt_backend.forward_block(r->model, &r->w, l);
            if (zero_release(eng, &p[f], GPT_NUM_BLOCK) != ZERO_OK)
                goto out;
        }
        gpt_backend.forward_end(r->model, &r->w, r->y);
        if (zero_backward_begin(eng, &seed) != ZERO_OK)
            goto out;
        gpt_backend.backward_end(r->model, &r->w, &r->g, seed);
        for (int k = GPT_LNF_W; k <= GPT_LNF_B; k++) {
            g16[k] = zero_param_grad(p[k]);
            fold(r, k, 1, g16);
            if (zero_grad_ready(eng, p[k]) != ZERO_OK)
                goto out;
        }
        for (int l = L - 1; l >= 0; l--) {
            int f = slot(r, l, 0);
            if (zero_gather(eng, &p[f], GPT_NUM_BLOCK) != ZERO_OK)
                goto out;
            for (int k = f; k < f + GPT_NUM_BLOCK; k++)
                w16[k] = zero_param_data(p[k]);
            load(r, f, GPT_NUM_BLOCK, w16);
            gpt_backend.backward_block(r->model, &r->w, &r->g, l);
            for (int k = f; k < f + GPT_NUM_BLOCK; k++) {
                g16[k] = zero_param_grad(p[k]);
                fold(r, k, 1, g16);
                if (zero_grad_ready(eng, p[k]) != ZERO_OK)
                    goto out;
            }
            if (zero_release(eng, &p[f], GPT_NUM_BLOCK) != ZERO_OK)
                goto out;
        }
        gpt_backend.backward_begin(r->model, &r->w, &r->g);
        for (int k = GPT_WTE; k <= GPT_WPE; k++) {
            g16[k] = zero_param_grad(p[k]);
            fold(r, k, 1, g16);
            if (zero_grad_ready(eng, p[k]) != ZERO_OK)
                goto out;
        }
        if (zero_release(eng, p, GPT_NUM_GLOBAL) != ZERO_OK || zero_backward_end(eng) != ZERO_OK ||
            zero_step(eng, &info) != ZERO_OK || cudaStreamSynchronize(stream) != cudaSuccess ||
            gpt_backend.check() != 0)
            goto out;
        if (s >= warm)
            t[s - warm] = 1e3 * (now() - t0);
    }
    *ms_p = median(t, steps);
    zero_engine_memory_t mem;
    if (zero_engine_memory(eng, &mem) != ZERO_OK)
        goto out;
    double held = (double)(mem.params + mem.grads + mem.master + mem.optim_state);
    double formula = 16.0 * (double)mem.num_params;
    *bytes_ratio_p = held / formula;
    printf("memory: stage=%d params=%llu grads=%llu master=%llu optim_state=%llu num_params=%llu "
           "formula_16psi=%.0f device_bytes_over_formula=%.4f\n",
           stage, (unsigned long long)mem.params, (unsigned long long)mem.grads, (unsigned long long)mem.master,
           (unsigned long long)mem.optim_state, (unsigned long long)mem.num_params, formula, *bytes_ratio_p);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "bench_gpu: engine at stage %d: %s\n", stage, zero_engine_last_error(eng));
    zero_engine_destroy(eng);
    return rc;
}

/* The same step, no engine: bf16 weights and gradients, fp32 master and moments per tensor. */
static int direct_steps(model_run_t *r, int warm, int steps, double *ms_p)
{
    void *w16[NT_MAX] = {0}, *g16[NT_MAX] = {0};
    float *master[NT_MAX] = {0}, *mom[NT_MAX] = {0}, *var[NT_MAX] = {0}, *g32;
    double *scratch;
    zero_cuda_gate_t *gate, host_gate;
    size_t most = 0;
    double t[256];
    int L = r->cfg.layers;
    for (int k = 0; k < r->nt; k++) {
        size_t n = r->numel[k];
        most = n > most ? n : most;
        CUDA_OK(cudaMalloc(&w16[k], 2 * n));
        CUDA_OK(cudaMalloc(&g16[k], 2 * n));
        CUDA_OK(cudaMalloc((void **)&master[k], 4 * n));
        CUDA_OK(cudaMalloc((void **)&mom[k], 4 * n));
        CUDA_OK(cudaMalloc((void **)&var[k], 4 * n));
        CUDA_OK(cudaMemsetAsync(master[k], 0, 4 * n, stream));
        CUDA_OK(cudaMemsetAsync(mom[k], 0, 4 * n, stream));
        CUDA_OK(cudaMemsetAsync(var[k], 0, 4 * n, stream));
        CUDA_OK(cudaMemsetAsync(g16[k], 0, 2 * n, stream));
        CUDA_OK((cudaError_t)zero_cuda_to_16(w16[k], master[k], ZERO_OPTIM_W16_BF16, n, stream));
    }
    CUDA_OK(cudaMalloc((void **)&g32, 4 * most));
    CUDA_OK(cudaMalloc((void **)&scratch, sizeof(double) * ZERO_CUDA_STATS_SCRATCH));
    CUDA_OK(cudaMalloc((void **)&gate, sizeof(*gate)));
    zero_adam_k_t k_adam = adamw_k();
    for (int s = 0; s < warm + steps; s++) {
        double t0 = now();
        load(r, 0, GPT_NUM_GLOBAL, w16);
        gpt_backend.forward_begin(r->model, &r->w, r->x, r->B, r->T);
        for (int l = 0; l < L; l++) {
            load(r, slot(r, l, 0), GPT_NUM_BLOCK, w16);
            gpt_backend.forward_block(r->model, &r->w, l);
        }
        gpt_backend.forward_end(r->model, &r->w, r->y);
        gpt_backend.backward_end(r->model, &r->w, &r->g, 1.0f);
        fold(r, GPT_LNF_W, 2, g16);
        for (int l = L - 1; l >= 0; l--) {
            load(r, slot(r, l, 0), GPT_NUM_BLOCK, w16);
            gpt_backend.backward_block(r->model, &r->w, &r->g, l);
            fold(r, slot(r, l, 0), GPT_NUM_BLOCK, g16);
        }
        gpt_backend.backward_begin(r->model, &r->w, &r->g);
        fold(r, GPT_WTE, 2, g16);
        /* the step: statistics over every gradient, one host read, the update */
        CUDA_OK((cudaError_t)zero_cuda_gate_reset(gate, stream));
        for (int k = 0; k < r->nt; k++)
            CUDA_OK((cudaError_t)zero_cuda_grad_stats(g16[k], ZERO_BF16, r->numel[k], gate, scratch, stream));
        CUDA_OK(cudaMemcpyAsync(&host_gate, gate, sizeof(host_gate), cudaMemcpyDeviceToHost, stream));
        CUDA_OK(cudaStreamSynchronize(stream));
        CUDA_OK((cudaError_t)zero_cuda_gate_prepare(gate, 1.0, 1.0, stream));
        for (int k = 0; k < r->nt; k++) {
            CUDA_OK((cudaError_t)zero_cuda_from_16(g32, g16[k], ZERO_OPTIM_W16_BF16, r->numel[k], stream));
            CUDA_OK((cudaError_t)zero_cuda_adam(&k_adam, gate, master[k], g32, NULL, mom[k], var[k], w16[k],
                                                ZERO_OPTIM_W16_BF16, r->numel[k], stream));
            CUDA_OK(cudaMemsetAsync(g16[k], 0, 2 * r->numel[k], stream));
        }
        CUDA_OK(cudaStreamSynchronize(stream));
        if (gpt_backend.check() != 0)
            return -1;
        if (s >= warm)
            t[s - warm] = 1e3 * (now() - t0);
    }
    *ms_p = median(t, steps);
    for (int k = 0; k < r->nt; k++) {
        cudaFree(w16[k]);
        cudaFree(g16[k]);
        cudaFree(master[k]);
        cudaFree(mom[k]);
        cudaFree(var[k]);
    }
    cudaFree(g32);
    cudaFree(scratch);
    cudaFree(gate);
    return 0;
}

static void summary(const char *a, const char *b, const char *c)
{
    printf("summary: adamw_over_d2d=%s engine_step_over_direct=%s device_bytes_over_formula=%s\n", a, b, c);
}

int main(int argc, char **argv)
{
    int quick = 0, steps = 20, warm = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
            steps = atoi(argv[++i]);
        else {
            fprintf(stderr, "bench_gpu: unknown option '%s' (--quick, --steps N)\n", argv[i]);
            return 2;
        }
    }
    if (steps < 1 || steps > 200)
        steps = 20;
    if (quick)
        steps = steps > 5 ? 5 : steps;
    void *sp = NULL;
    int rc = gpt_cuda_open(-1, &sp, NULL);
    if (rc != 0) {
        printf("gpu: no usable CUDA device (the reason is above): nothing measured\n");
        summary("na", "na", "na");
        return rc == 1 ? 77 : 1;
    }
    stream = sp;
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        printf("gpu: %s, %.1f GiB\n", prop.name, (double)prop.totalGlobalMem / (1 << 30));

    char a[32] = "na", b[32] = "na", c[32] = "na";
    size_t sizes[] = {100000000, 300000000, 1000000000};
    int nsizes = quick ? 1 : 3;
    for (int i = 0; i < nsizes; i++) {
        double ratio;
        int r = adamw_vs_copy(sizes[i], quick ? 3 : 5, &ratio);
        if (r < 0)
            return 1;
        if (r == 0)
            snprintf(a, sizeof(a), "%.3f", ratio);
    }

    model_run_t run = {0};
    if (model_setup(&run) != 0) {
        model_teardown(&run);
        return 1;
    }
    printf("model: params=%zu channels=%d layers=%d heads=%d context=%d micro_batch=%d bf16 AdamW clip 1.0\n",
           gpt_num_parameters(&run.cfg), run.cfg.channels, run.cfg.layers, run.cfg.heads, run.T, run.B);
    double worst_step = 0, worst_bytes = 1, direct_ms = 0;
    int ok = 1;
    for (int stage = 0; stage <= 3 && ok; stage++) {
        double ems, ratio;
        /* the direct step before each engine stage, so both see the same clocks and heat */
        if (direct_steps(&run, warm, steps, &direct_ms) != 0 ||
            engine_steps(&run, stage, warm, steps, &ems, &ratio) != 0) {
            ok = 0;
            break;
        }
        printf("step: stage=%d engine_ms=%.3f direct_ms=%.3f engine_step_over_direct=%.3f\n", stage, ems, direct_ms,
               ems / direct_ms);
        if (ems / direct_ms > worst_step)
            worst_step = ems / direct_ms;
        if (fabs(ratio - 1.0) > fabs(worst_bytes - 1.0))
            worst_bytes = ratio;
    }
    if (ok) {
        snprintf(b, sizeof(b), "%.3f", worst_step);
        snprintf(c, sizeof(c), "%.4f", worst_bytes);
    }
    model_teardown(&run);
    gpt_cuda_close();
    summary(a, b, c);
    return ok ? 0 : 1;
}
