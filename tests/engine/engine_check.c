/*
 * Engine correctness, run on every rank through zero-launch (world sizes 1-4).
 *
 * For every combination of stage (0-3), precision (fp32, bf16, fp16),
 * optimizer (Adam, AdamW, SGD with Nesterov momentum and with plain momentum,
 * Adagrad, Lion, Lamb),
 * gradient accumulation (1, 3) and clipping (off, 0.5), it trains a small
 * model whose gradients are deterministic functions of (step, micro-batch,
 * rank, parameter, element) -- different on every rank -- and compares the
 * final weights with a single-process reference: a plain double-precision loop
 * over the gradient averaged over ranks and micro-batches. Every rank computes
 * the reference itself (it knows every rank's gradients) and checks.
 *
 * Tolerances (per element, |engine - reference| <= atol + rtol * |reference|):
 *   fp32: rtol 1e-5, atol 1e-6   (fp32 arithmetic against double)
 *   bf16: rtol 2^-6, atol 2e-3   (weights and gradients rounded to 8 bits of mantissa)
 *   fp16: rtol 2^-9, atol 2e-4   (11 bits; the loss scale keeps gradients out of subnormals)
 * and stages 1-3 must match stage 0 of the same combination within the same
 * tolerance (the reductions sum in different orders; a stage that loses or
 * double-counts a slice is off by far more).
 *
 * The combinations with gradient accumulation 3 run with the late-write guard
 * (zero_optimization.check_grad_writes), which defers each bucket's reduction
 * to the trainer's next call: the right pattern (write, then zero_grad_ready)
 * must be silent and give the same weights.
 *
 * Built a second time as engine_check_device (-DENGINE_CHECK_DEVICE, CUDA
 * builds): the same model and reference with the engine in GPU memory
 * (mem_kind device), gradients computed on the host and copied into the
 * engine's device buffers, at stages 0-3 x fp32/bf16/fp16 x every optimizer
 * with accumulation 1 and no clipping, and for AdamW and Lamb also with
 * accumulation 3 and clipping 0.5 (no caller views). Each combination also
 * runs on the host engine in the same job, over the same communicator, and
 * the device's weights must match the host engine's within the tolerances
 * above, as well as the reference and stage 0. Several ranks on one GPU go
 * through the staged backend (the communicator chooses it where ranks share a
 * device). Every rank exits 77 where CUDA reports no device.
 *
 * With ZERO_TEST_OFFLOAD_OPTIMIZER=cpu (gpu-check's engine-staged-offload
 * step, the device build), stages 1-3 run with offload_optimizer.device
 * "cpu" (the CPU offload store) against the same reference and tolerances;
 * with =nvme (engine-staged-offload-nvme-2) likewise with "nvme" (on a
 * device rank the CPU offload over the NVMe store's file, in $TMPDIR or /tmp);
 * with =remote (engine-staged-offload-remote-2) with "remote" on the servers
 * zero-launch --optd starts (a device rank's CPU offload over the remote store);
 * stage 0, which has no owned shard to offload, runs without it.
 *
 * With ZERO_TEST_OFFLOAD_PARAM=cpu (gpu-check's engine-staged-param-offload
 * steps, the device build), stage 3 runs with offload_param.device "cpu"
 * (the shards in host memory, uploaded at each gather, 3 slots of 40
 * elements: several chunks per gather and per step window), and each such
 * device run is also run without offload_param in the same job: the weights
 * must be the same bits (the shards' home changes no arithmetic).
 *
 * With ZERO_TEST_QWZ=1 (engine-qwz-world*, engine-device-qwz-world*, gpu-check's
 * engine-staged-qwz step), only stage 3 runs, with zero_quantized_weights:
 * the weights the quantized gather returns must lie within the codec's
 * bound of the same engine's run without qwZ (qwz_check), which in turn
 * meets the reference; the device engine's quantized weights must match the
 * host engine's within the tolerances plus one int8 step (compare_qwz).
 * With both (engine-hpz-qwz-world4, engine-device-hpz-qwz-world4), hpZ's
 * quantized refresh must give the weights of qwZ alone bit for bit.
 *
 * With ZERO_TEST_QGZ=1 (engine-qgz-world*, engine-device-qgz-world*, gpu-check's
 * engine-staged-qgz step), only stage 3 runs, with zero_quantized_gradients:
 * the weights must lie within QGZ_EXTRA of the same engine's run without
 * qgZ (QGZ_FLIPPED where Adam's or Adagrad's update may turn around;
 * qgz_check; in fp32 some weight must differ, Lion's aside), which in turn
 * meets the reference. The device engine's must match the host engine's within the
 * plain tolerances: the device path reduces to the host's gradients bit for
 * bit (the kernels are the C codec's arithmetic), so only the optimizer's
 * arithmetic differs, as without qgZ. ZERO_TEST_NODE_SIZE=P describes the
 * job as nodes of P ranks (rank r on node r / P), so that qgZ at 4 ranks
 * with P = 2 reduces in two levels (engine-qgz-nodes4, engine-device-qgz-nodes4;
 * with ZERO_TEST_HPZ=2 too, engine-hpz-qgz-nodes4 and engine-device-hpz-qgz-nodes4,
 * qgZ's node communicator is hpZ's group, and hpz_exact holds the weights to
 * qgZ alone's bit for bit).
 *
 * Exit status: the number of failed combinations (0 = all passed).
 */
#include <zero/zero.h>

#include "rank_check.h"
#ifdef ENGINE_CHECK_DEVICE
#include <cuda_runtime_api.h>
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPARAM 6
#define STEPS 4
#define LR 0.01

static const int64_t shapes[NPARAM][3] = {{37, 0, 0}, {16, 9, 0}, {100, 0, 0}, {3, 3, 3}, {20, 20, 0}, {5, 0, 0}};
static const int ndims[NPARAM] = {1, 2, 1, 3, 2, 1};

/* OPT_SGD: Nesterov momentum; OPT_SGD_MOMENTUM: plain (heavy-ball) momentum. */
typedef enum { OPT_ADAM, OPT_ADAMW, OPT_SGD, OPT_ADAGRAD, OPT_LION, OPT_LAMB, OPT_SGD_MOMENTUM, OPT_COUNT } opt_t;
static const char *const opt_names[] = {"Adam", "AdamW", "SGD", "Adagrad", "Lion", "Lamb", "SGD-momentum"};

static size_t numel_of(int p)
{
    size_t n = 1;
    for (int k = 0; k < ndims[p]; k++)
        n *= (size_t)shapes[p][k];
    return n;
}

static int decays(int p) { return ndims[p] > 1; }   /* 1-d tensors (biases) are exempt */

static float init_value(int p, size_t i) { return 0.5f * sinf(0.91f * (float)i + 2.3f * (float)p) + 0.05f * (float)p; }

/* Different on every rank and micro-batch, but with a sign that does not depend on
 * them and a magnitude of at least 0.02, so that sign-driven optimizers (Lion,
 * Adam's early steps) do not flip on 16-bit rounding. */
static double grad_value(int step, int micro, int rank, int p, size_t i)
{
    double sign = i % 3 == 0 ? -1.0 : 1.0;
    return sign * (0.25 + 0.15 * sin(0.37 * (double)i + 1.3 * p + 0.71 * step) +
                   0.08 * sin(1.7 * rank + 0.29 * micro + 0.11 * (double)i));
}

static void init_cb(const char *name, size_t offset, size_t count, float *out, void *user)
{
    int p = (int)(intptr_t)user;
    (void)name;
    for (size_t k = 0; k < count; k++)
        out[k] = init_value(p, offset + k);
}

typedef struct combo {
    int stage;
    zero_dtype_t dtype;
    opt_t opt;
    int gas;
    double clip;
    int views;
    int no_param_offload;   /* leave out what ZERO_TEST_OFFLOAD_PARAM asks for */
    int hpz;   /* zero_hpz_partition_size (1: off) */
    int qwz;   /* zero_quantized_weights */
    int qgz;   /* zero_quantized_gradients */
} combo_t;

/* ---- the reference: one process, double precision ---- */

/* @p margin (NULL: not wanted): for Adam (L2 mode) and Adagrad, each
 * element's smallest |gradient after clipping + weight decay x weight| over
 * the steps, divided by the clipping factor (so in the unclipped gradient's
 * units); HUGE_VAL for the other optimizers. Their update is sign(that) x lr
 * at the first step whatever its size, so where it is near 0 any change of
 * the gradient may turn the update around (qgz_check). */
static void reference(const combo_t *c, int world, double *w_out[NPARAM], double *margin[NPARAM])
{
    double *m[NPARAM], *v[NPARAM], *g[NPARAM];
    for (int p = 0; p < NPARAM; p++) {
        size_t n = numel_of(p);
        m[p] = calloc(n, sizeof(double));
        v[p] = calloc(n, sizeof(double));
        g[p] = calloc(n, sizeof(double));
        for (size_t i = 0; i < n; i++) {
            w_out[p][i] = init_value(p, i);
            if (margin != NULL)
                margin[p][i] = HUGE_VAL;
        }
    }
    for (int step = 0; step < STEPS; step++) {
        double sq = 0.0, coef = 1.0, lr = LR;
        int t = step + 1;
        for (int p = 0; p < NPARAM; p++)
            for (size_t i = 0; i < numel_of(p); i++) {
                double s = 0.0;
                for (int r = 0; r < world; r++)
                    for (int mi = 0; mi < c->gas; mi++)
                        s += grad_value(step, mi, r, p, i);
                g[p][i] = s / (world * c->gas);
                sq += g[p][i] * g[p][i];
            }
        if (c->clip > 0.0) {
            double cc = c->clip / (sqrt(sq) + 1e-6);
            if (cc < 1.0)
                coef = cc;
        }
        for (int p = 0; p < NPARAM; p++) {
            size_t n = numel_of(p);
            double wd = decays(p) ? 0.01 : 0.0, wsq = 0.0, usq = 0.0, ratio;
            double *w = w_out[p];
            for (size_t i = 0; i < n; i++) {
                double gi = g[p][i] * coef;
                switch (c->opt) {
                case OPT_ADAM:
                case OPT_ADAMW:
                    if (c->opt == OPT_ADAM)
                        gi += wd * w[i];
                    else
                        w[i] *= 1.0 - lr * wd;
                    if (margin != NULL && c->opt == OPT_ADAM && fabs(gi) / coef < margin[p][i])
                        margin[p][i] = fabs(gi) / coef;
                    m[p][i] = 0.9 * m[p][i] + 0.1 * gi;
                    v[p][i] = 0.999 * v[p][i] + 0.001 * gi * gi;
                    w[i] -= lr / (1.0 - pow(0.9, t)) * m[p][i] / (sqrt(v[p][i]) / sqrt(1.0 - pow(0.999, t)) + 1e-8);
                    break;
                case OPT_SGD:
                case OPT_SGD_MOMENTUM: {
                    double d = gi + wd * w[i];
                    m[p][i] = t == 1 ? d : 0.9 * m[p][i] + d;
                    if (c->opt == OPT_SGD)
                        d = d + 0.9 * m[p][i];    /* nesterov */
                    else
                        d = m[p][i];              /* plain momentum: the buffer is the step */
                    w[i] -= lr * d;
                    break;
                }
                case OPT_ADAGRAD: {
                    double d = gi + wd * w[i];
                    if (margin != NULL && fabs(d) / coef < margin[p][i])
                        margin[p][i] = fabs(d) / coef;
                    m[p][i] += d * d;
                    w[i] -= lr * d / (sqrt(m[p][i]) + 1e-10);
                    break;
                }
                case OPT_LION: {
                    double u = 0.9 * m[p][i] + 0.1 * gi;
                    w[i] *= 1.0 - lr * wd;
                    w[i] -= lr * (u > 0 ? 1.0 : u < 0 ? -1.0 : 0.0);
                    m[p][i] = 0.99 * m[p][i] + 0.01 * gi;
                    break;
                }
                case OPT_LAMB: {
                    double u;
                    m[p][i] = 0.9 * m[p][i] + 0.1 * gi;
                    v[p][i] = 0.999 * v[p][i] + 0.001 * gi * gi;
                    u = m[p][i] / (sqrt(v[p][i]) + 1e-8) + wd * w[i];
                    wsq += w[i] * w[i];
                    usq += u * u;
                    g[p][i] = u;   /* keep u for the second pass */
                    break;
                }
                default:
                    break;
                }
            }
            if (c->opt == OPT_LAMB) {
                ratio = (wsq > 0 && usq > 0) ? sqrt(wsq) / sqrt(usq) : 1.0;
                if (wsq > 0 && usq > 0) {
                    if (ratio > 10.0)
                        ratio = 10.0;
                    if (ratio < 0.01)
                        ratio = 0.01;
                }
                for (size_t i = 0; i < n; i++)
                    w[i] -= lr * sqrt(1.0 - pow(0.999, t)) / (1.0 - pow(0.9, t)) * ratio * g[p][i];
            }
        }
    }
    for (int p = 0; p < NPARAM; p++) {
        free(m[p]);
        free(v[p]);
        free(g[p]);
    }
}

/* ---- one combination on the engine ---- */

/* ZERO_TEST_HPZ=P (gpu-check's engine-staged-hpz step, and engine-hpz-world4
 * on the CPU): only stage 3 runs, each combination with
 * zero_hpz_partition_size P, and it must equal the same engine without hpZ
 * bit for bit (hpZ moves the 16-bit weights and rounds nothing). 1: off. */
static int hpz_size(int world)
{
    const char *v = getenv("ZERO_TEST_HPZ");
    int P = v != NULL ? atoi(v) : 1;
    return P > 1 && world % P == 0 ? P : 1;
}

/* ZERO_TEST_QWZ=1 (engine-qwz-world*, and gpu-check's engine-staged-qwz
 * step): only stage 3 runs, each combination with zero_quantized_weights
 * (qwz_check has what is checked). */
static int qwz_on(void)
{
    const char *v = getenv("ZERO_TEST_QWZ");
    return v != NULL && atoi(v) == 1;
}

/* ZERO_TEST_QGZ=1 (engine-qgz-world*, engine-device-qgz-world*): only stage
 * 3 runs, each combination with zero_quantized_gradients (qgz_check). */
static int qgz_on(void)
{
    const char *v = getenv("ZERO_TEST_QGZ");
    return v != NULL && atoi(v) == 1;
}

/* Whether ZERO_TEST_OFFLOAD_PARAM asks for offload_param "cpu" at stage 3. */
static int param_offload_asked(void)
{
    const char *v = getenv("ZERO_TEST_OFFLOAD_PARAM");
    return v != NULL && strcmp(v, "cpu") == 0;
}

/* The offload blocks ZERO_TEST_OFFLOAD_OPTIMIZER ("cpu", "nvme", "remote", stages 1-3) and
 * ZERO_TEST_OFFLOAD_PARAM ("cpu", stage 3) ask for. */
static const char *offload_block(const combo_t *c)
{
    static char buf[512];
    const char *v = getenv("ZERO_TEST_OFFLOAD_OPTIMIZER"), *tmp = getenv("TMPDIR");
    buf[0] = '\0';
    if (v != NULL && strcmp(v, "cpu") == 0 && c->stage > 0)
        strcat(buf, ", \"offload_optimizer\": {\"device\": \"cpu\", \"buffer_count\": 3}, \"sub_group_size\": 100");
    else if (v != NULL && strcmp(v, "nvme") == 0 && c->stage > 0)   /* the file is unlinked at once: any directory */
        snprintf(buf, 300, ", \"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"%.128s\", \"buffer_count\": 3}, "
                 "\"sub_group_size\": 100", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    else if (v != NULL && strcmp(v, "remote") == 0 && c->stage > 0)   /* servers: zero-launch --optd */
        strcat(buf, ", \"offload_optimizer\": {\"device\": \"remote\", \"buffer_count\": 3}, \"sub_group_size\": 100");
    if (param_offload_asked() && c->stage == 3 && !c->no_param_offload)
        strcat(buf, ", \"offload_param\": {\"device\": \"cpu\", \"buffer_count\": 3, \"buffer_size\": 40}");
    return buf;
}

static char *config_json(const combo_t *c)
{
    static char buf[2048];
    const char *opt_params;
    char prec[160] = "";
    switch (c->opt) {
    case OPT_SGD: opt_params = "\"lr\": 0.01, \"momentum\": 0.9, \"nesterov\": true, \"weight_decay\": 0.01"; break;
    case OPT_SGD_MOMENTUM:
        opt_params = "\"lr\": 0.01, \"momentum\": 0.9, \"nesterov\": false, \"weight_decay\": 0.01";
        break;
    case OPT_ADAGRAD: opt_params = "\"lr\": 0.01, \"weight_decay\": 0.01, \"eps\": 1e-10"; break;
    case OPT_LION: opt_params = "\"lr\": 0.01, \"betas\": [0.9, 0.99], \"weight_decay\": 0.01"; break;
    case OPT_ADAM: opt_params = "\"lr\": 0.01, \"weight_decay\": 0.01, \"adam_w_mode\": false"; break;
    default: opt_params = "\"lr\": 0.01, \"weight_decay\": 0.01"; break;
    }
    if (c->dtype == ZERO_BF16)
        snprintf(prec, sizeof(prec), "\"bf16\": {\"enabled\": true},");
    else if (c->dtype == ZERO_FP16)
        snprintf(prec, sizeof(prec), "\"fp16\": {\"enabled\": true, \"initial_scale_power\": 12},");
    snprintf(buf, sizeof(buf),
             "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": %d,"
             " \"optimizer\": {\"type\": \"%s\", \"params\": {%s}}, %s"
             " \"gradient_clipping\": %g, \"steps_per_print\": 0,"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": 300, \"allgather_bucket_size\": 300,"
             " \"stage3_param_persistence_threshold\": 50, \"stage3_prefetch_bucket_size\": 200,"
             " \"check_grad_writes\": %s, \"zero_hpz_partition_size\": %d,"
             " \"zero_quantized_weights\": %s, \"zero_quantized_gradients\": %s%s}}",
             c->gas, c->opt == OPT_SGD_MOMENTUM ? "SGD" : opt_names[c->opt], opt_params, prec, c->clip, c->stage,
             c->gas == 3 ? "true" : "false", c->hpz > 1 ? c->hpz : 1, c->qwz ? "true" : "false",
             c->qgz ? "true" : "false", offload_block(c));
    return buf;
}

static int run_engine(zero_comm_h comm, const combo_t *c, zero_mem_kind_t kind, float *out[NPARAM])
{
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM |
                                             ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = config_json(c), .comm = comm, .num_threads = 2};
    zero_engine_h eng = NULL;
    zero_param_h h[NPARAM];
    int rank = zero_comm_rank(comm);
    size_t esz = zero_dtype_size(c->dtype), total = 0, offs[NPARAM];
    char *view_data = NULL, *view_grad = NULL;
    int rc = 1;
#ifdef ENGINE_CHECK_DEVICE
    int on_device = kind == ZERO_MEM_DEVICE;
    char host_grad[400 * 4];   /* the largest tensor (20 x 20) */
#endif
    ep.field_mask |= ZERO_ENGINE_PARAM_FIELD_MEM_KIND;
    ep.mem_kind = kind;

    if (zero_engine_create(&ep, &eng) != ZERO_OK)
        return 1;
    for (int p = 0; p < NPARAM; p++) {
        offs[p] = total;
        total += numel_of(p);
    }
    if (c->views) {   /* one contiguous caller-owned buffer, as llm.c keeps its weights */
        view_data = calloc(total, esz);
        view_grad = calloc(total, esz);
    }
    for (int p = 0; p < NPARAM; p++) {
        char name[32];
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_WEIGHT_DECAY | ZERO_PARAM_FIELD_INIT_FN,
                               .name = name, .dtype = c->dtype, .ndim = ndims[p], .weight_decay = decays(p),
                               .init_fn = init_cb, .init_user_data = (void *)(intptr_t)p};
        snprintf(name, sizeof(name), "layer%d.w", p);
        memcpy(d.shape, shapes[p], sizeof(shapes[p]));
        if (c->views) {
            d.field_mask |= ZERO_PARAM_FIELD_VIEW;
            d.view_data = view_data + offs[p] * esz;
            d.view_grad = view_grad + offs[p] * esz;
        }
        if (zero_param_register(eng, &d, &h[p]) != ZERO_OK)
            goto out;
    }
    if (zero_engine_setup(eng) != ZERO_OK)
        goto out;
    for (int step = 0; step < STEPS; step++) {
        for (int mi = 0; mi < c->gas; mi++) {
            float seed;
            zero_step_info_t info;
            /* forward: layer by layer, as a trainer would (two tensors a layer) */
            for (int p = 0; p < NPARAM; p += 2) {
                if (zero_gather(eng, &h[p], 2) != ZERO_OK)
                    goto out;
                if (zero_param_data(h[p]) == NULL || zero_param_data(h[p + 1]) == NULL) {
                    fprintf(stderr, "rank %d: no weights for %s while gathered\n", rank, zero_param_name(h[p]));
                    goto out;
                }
                if (zero_release(eng, &h[p], 2) != ZERO_OK)
                    goto out;
            }
            if (zero_backward_begin(eng, &seed) != ZERO_OK)
                goto out;
            for (int p = NPARAM - 2; p >= 0; p -= 2) {
                if (zero_gather(eng, &h[p], 2) != ZERO_OK)
                    goto out;
                for (int q = p + 1; q >= p; q--) {
                    void *gbuf = zero_param_grad(h[q]);
                    if (gbuf == NULL) {
                        fprintf(stderr, "rank %d: no gradient buffer for %s\n", rank, zero_param_name(h[q]));
                        goto out;
                    }
#ifdef ENGINE_CHECK_DEVICE
                    if (on_device) {
                        /* on the host, then into the device buffer (the legacy stream: the engine's) */
                        if (cudaMemcpy(host_grad, gbuf, numel_of(q) * esz, cudaMemcpyDeviceToHost) != cudaSuccess)
                            goto out;
                        for (size_t i = 0; i < numel_of(q); i++)
                            check_add(host_grad, c->dtype, i, (float)(seed * grad_value(step, mi, rank, q, i)));
                        if (cudaMemcpy(gbuf, host_grad, numel_of(q) * esz, cudaMemcpyHostToDevice) != cudaSuccess)
                            goto out;
                    } else
#endif
                    {
                        for (size_t i = 0; i < numel_of(q); i++)
                            check_add(gbuf, c->dtype, i, (float)(seed * grad_value(step, mi, rank, q, i)));
                    }
                    if (zero_grad_ready(eng, h[q]) != ZERO_OK)
                        goto out;
                }
                if (zero_release(eng, &h[p], 2) != ZERO_OK)
                    goto out;
            }
            if (zero_backward_end(eng) != ZERO_OK || zero_step(eng, &info) != ZERO_OK)
                goto out;
            if (info.boundary != (mi == c->gas - 1) || (info.boundary && !info.stepped)) {
                fprintf(stderr, "rank %d: step %d micro %d: boundary %d stepped %d\n", rank, step, mi, info.boundary,
                        info.stepped);
                goto out;
            }
        }
    }
    if (zero_engine_global_steps(eng) != STEPS || zero_engine_micro_steps(eng) != (uint64_t)(STEPS * c->gas)) {
        fprintf(stderr, "rank %d: counters %llu/%llu\n", rank, (unsigned long long)zero_engine_global_steps(eng),
                (unsigned long long)zero_engine_micro_steps(eng));
        goto out;
    }
    {
        /* Working memory over shared memory (world > 1): everything released and
         * reduced, the engine holds model state, persistent parameters and pools. */
        zero_engine_memory_t m;
        zero_engine_memory(eng, &m);
        if (m.buffers != 0 || m.pools > m.pools_bound ||
            m.total != m.params + m.grads + m.master + m.optim_state + m.persistent + m.pools) {
            fprintf(stderr, "rank %d: memory after the last step: buffers %llu pools %llu (bound %llu) total %llu\n",
                    rank, (unsigned long long)m.buffers, (unsigned long long)m.pools,
                    (unsigned long long)m.pools_bound, (unsigned long long)m.total);
            goto out;
        }
    }
    for (int p = 0; p < NPARAM; p++) {
        const void *data;
        if (zero_gather(eng, &h[p], 1) != ZERO_OK)
            goto out;
        data = zero_param_data(h[p]);
#ifdef ENGINE_CHECK_DEVICE
        if (on_device) {
            if (cudaMemcpy(host_grad, data, numel_of(p) * esz, cudaMemcpyDeviceToHost) != cudaSuccess)
                goto out;
            data = host_grad;
        }
#endif
        for (size_t i = 0; i < numel_of(p); i++)
            out[p][i] = check_load(data, c->dtype, i);
        if (c->views && data != view_data + offs[p] * esz) {
            fprintf(stderr, "rank %d: view parameter data is not the caller's buffer\n", rank);
            goto out;
        }
        if (zero_release(eng, &h[p], 1) != ZERO_OK)
            goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "rank %d: engine error: %s\n", rank, zero_engine_last_error(eng ? eng : NULL));
    zero_engine_destroy(eng);
    free(view_data);
    free(view_grad);
    return rc;
}

/* got against want within the tolerances of the top, widened by @p extra,
 * or element by element by @p extra_at (NULL: @p extra everywhere). */
static int compare_at(const char *what, const combo_t *c, int rank, float *got[NPARAM], double *const want[NPARAM],
                      double extra, double *const extra_at[NPARAM])
{
    double rtol = c->dtype == ZERO_FP32 ? 1e-5 : c->dtype == ZERO_BF16 ? 1.0 / 64 : 1.0 / 512;
    double atol = c->dtype == ZERO_FP32 ? 1e-6 : c->dtype == ZERO_BF16 ? 2e-3 : 2e-4;
    for (int p = 0; p < NPARAM; p++)
        for (size_t i = 0; i < numel_of(p); i++) {
            double d = fabs((double)got[p][i] - want[p][i]);
            if (!(d <= atol + (extra_at != NULL ? extra_at[p][i] : extra) + rtol * fabs(want[p][i]))) {
                fprintf(stderr,
                        "rank %d: %s: stage %d %s %s gas %d clip %g views %d: layer%d.w[%zu] = %.8g, expected %.8g\n",
                        rank, what, c->stage, zero_dtype_string(c->dtype), opt_names[c->opt], c->gas, c->clip,
                        c->views, p, i, got[p][i], want[p][i]);
                return 1;
            }
        }
    return 0;
}

static int compare_within(const char *what, const combo_t *c, int rank, float *got[NPARAM], double *const want[NPARAM],
                          double extra)
{
    return compare_at(what, c, rank, got, want, extra, NULL);
}

static int compare(const char *what, const combo_t *c, int rank, float *got[NPARAM], double *const want[NPARAM])
{
    return compare_within(what, c, rank, got, want, 0.0);
}

#ifdef ENGINE_CHECK_DEVICE
/* Bit for bit: @p got against @p want (floats widened, exactly). */
static int compare_exact(const char *what, const combo_t *c, int rank, float *got[NPARAM], double *const want[NPARAM])
{
    for (int p = 0; p < NPARAM; p++)
        for (size_t i = 0; i < numel_of(p); i++)
            if ((double)got[p][i] != want[p][i]) {
                fprintf(stderr, "rank %d: %s: stage %d %s %s gas %d clip %g: layer%d.w[%zu] = %.9g, expected %.9g\n",
                        rank, what, c->stage, zero_dtype_string(c->dtype), opt_names[c->opt], c->gas, c->clip, p, i,
                        got[p][i], want[p][i]);
                return 1;
            }
    return 0;
}

/* The device engine against the host engine. Under qwZ both return quantized
 * weights: the codec is the same bit for bit (comm-quant-cuda), but the
 * shards agree only within the tolerances (sums in another order), and a
 * shard one unit off may round to the next int8 step, so one step of the
 * largest block scale (maxabs / 127) is allowed on top. Weights that differ
 * in their bits are counted on stderr, as information for the GPU run. */
static int compare_qwz(const char *what, const combo_t *c, int rank, float *got[NPARAM], double *const want[NPARAM])
{
    double maxabs = 0.0;
    size_t differ = 0, total = 0;
    if (!c->qwz)
        return compare(what, c, rank, got, want);
    for (int p = 0; p < NPARAM; p++)
        for (size_t i = 0; i < numel_of(p); i++) {
            maxabs = fabs(want[p][i]) > maxabs ? fabs(want[p][i]) : maxabs;
            differ += (double)got[p][i] != want[p][i];
            total++;
        }
    if (differ > 0)
        fprintf(stderr, "rank %d: %s (qwZ): %s %s gas %d: %zu of %zu weights differ in their bits\n", rank, what,
                zero_dtype_string(c->dtype), opt_names[c->opt], c->gas, differ, total);
    return compare_within(what, c, rank, got, want, maxabs / 127.0 * (1.0 + 1e-6));
}
#endif

/* hpZ's run against the same engine without it: equal bit for bit (NaN never
 * appears here, so == on the values is the bitwise test). */
static int hpz_exact(zero_comm_h comm, const combo_t *c, zero_mem_kind_t kind, int rank, float *got[NPARAM])
{
    combo_t plain = *c;
    float *ref[NPARAM];
    int bad = 0;
    if (c->hpz <= 1)
        return 0;
    plain.hpz = 1;
    for (int p = 0; p < NPARAM; p++)
        ref[p] = calloc(numel_of(p), sizeof(float));
    if (run_engine(comm, &plain, kind, ref) != 0)
        bad = 1;
    for (int p = 0; p < NPARAM && !bad; p++)
        for (size_t i = 0; i < numel_of(p) && !bad; i++)
            if (memcmp(&got[p][i], &ref[p][i], sizeof(float)) != 0) {
                fprintf(stderr, "rank %d: %s hpZ %d against no hpZ: %s %s gas %d: layer%d.w[%zu] = %.9g, expected "
                        "%.9g (bit for bit)\n", rank, kind == ZERO_MEM_HOST ? "host" : "device", c->hpz,
                        zero_dtype_string(c->dtype), opt_names[c->opt], c->gas, p, i, got[p][i], ref[p][i]);
                bad = 1;
            }
    for (int p = 0; p < NPARAM; p++)
        free(ref[p]);
    return bad;
}

/* The quantization error qwZ may add to a weight of magnitude |w| when no
 * weight exceeds @p maxabs: half an int8 step of the largest possible block
 * scale (amax / 254, quant.h), plus the rounding of the decoded value to the
 * dtype (generously a whole unit in the last place). */
static double qwz_bound(zero_dtype_t dtype, double maxabs, double w)
{
    double ulp = dtype == ZERO_FP32 ? 0x1p-23 : dtype == ZERO_BF16 ? 0x1p-7 : 0x1p-10;
    return maxabs / 254.0 * (1.0 + 1e-6) + fabs(w) * ulp + 1e-7;
}

/* The end of qwz_check and qgz_check: fails @p bad when no weight differs
 * from the unquantized run (@p differ 0: the codec was never applied) in
 * fp32; on success @p got takes the unquantized weights @p ref, for the
 * reference checks. Frees @p ref. */
static int quant_took_effect(const char *what, const combo_t *c, zero_mem_kind_t kind, int rank, int bad, int differ,
                             float *got[NPARAM], float *ref[NPARAM])
{
    if (!bad && !differ && c->dtype == ZERO_FP32) {
        fprintf(stderr, "rank %d: %s %s: fp32 %s gas %d: every weight is the unquantized one (nothing was "
                "quantized)\n", rank, kind == ZERO_MEM_HOST ? "host" : "device", what, opt_names[c->opt], c->gas);
        bad = 1;
    }
    for (int p = 0; p < NPARAM; p++) {
        if (!bad)
            memcpy(got[p], ref[p], numel_of(p) * sizeof(float));
        free(ref[p]);
    }
    return bad;
}

/* qwZ's run (@p got, the weights as the quantized gather gives them) against
 * the same engine without qwZ: qwZ changes only what the gather returns, not
 * the training (these gradients do not depend on the weights), so every
 * weight is the unquantized one within qwz_bound, and in fp32 some weight
 * must differ (a gather that forgot to quantize would pass the bound). On
 * success @p got becomes the unquantized run, for the reference checks. */
static int qwz_check(zero_comm_h comm, const combo_t *c, zero_mem_kind_t kind, int rank, float *got[NPARAM])
{
    combo_t plain = *c;
    float *ref[NPARAM];
    double maxabs = 0.0;
    int bad = 0, differ = 0;
    if (!c->qwz)
        return 0;
    plain.qwz = 0;
    for (int p = 0; p < NPARAM; p++)
        ref[p] = calloc(numel_of(p), sizeof(float));
    if (run_engine(comm, &plain, kind, ref) != 0)
        bad = 1;
    for (int p = 0; p < NPARAM && !bad; p++)
        for (size_t i = 0; i < numel_of(p); i++)
            maxabs = fabs((double)ref[p][i]) > maxabs ? fabs((double)ref[p][i]) : maxabs;
    for (int p = 0; p < NPARAM && !bad; p++)
        for (size_t i = 0; i < numel_of(p) && !bad; i++) {
            double d = fabs((double)got[p][i] - (double)ref[p][i]);
            differ |= d != 0.0;
            if (!(d <= qwz_bound(c->dtype, maxabs, ref[p][i]))) {
                fprintf(stderr, "rank %d: %s qwZ against no qwZ: %s %s gas %d: layer%d.w[%zu] = %.9g, unquantized "
                        "%.9g (bound %.3g)\n", rank, kind == ZERO_MEM_HOST ? "host" : "device",
                        zero_dtype_string(c->dtype), opt_names[c->opt], c->gas, p, i, got[p][i], ref[p][i],
                        qwz_bound(c->dtype, maxabs, ref[p][i]));
                bad = 1;
            }
        }
    return quant_took_effect("qwZ", c, kind, rank, bad, differ, got, ref);
}

/* What qgZ may change in a weight, on top of the plain tolerances: each
 * rank's gradient block is rounded to an int8 step of its largest value
 * (error <= amax / 254, quant.h), so the averaged gradient is off by at most
 * 0.5 / 254 = 0.002 here (|gradient| <= 0.48); relative to the smallest
 * gradients (0.02) that is 10%, which moves an Adam-like update (lr x
 * m / sqrt(v)) by at most 10% of lr a step: 4 steps x 0.1 x 0.01 = 4e-3.
 * A wrong average (a sum, a lost or doubled block) moves SGD's weights by
 * several times that. */
#define QGZ_EXTRA 4e-3
/* Except where Adam (L2 mode) or Adagrad divide by an input near 0. With
 * clipping (factor ~0.075 here) the weight decay (0.01 x w) is as large as
 * the clipped gradient, and on a few elements the two cancel: at 4 ranks one
 * has |clipped gradient + decay| = 8e-7 at step 1. The update there is
 * sign(input) x lr whatever its size, so qgZ's error turns it around: 2 lr,
 * seen as 0.0198-0.0205 at 4 ranks (one and two levels alike). Not a fault of
 * the reduction: the reference's double arithmetic with each rank's gradient
 * int8-rounded in blocks gives 0.0199 (Adam) and 0.0201 (Adagrad) too, and a
 * 0.1% relative change of the exact gradient with no quantization 0.0198 at
 * gas 3; without clipping, or with AdamW, the same runs differ by <= 1e-4.
 * So such an element (the reference's margin below QGZ_FRAGILE, in
 * unclipped gradient units: two int8 roundings of 0.002, a 16-bit rounding
 * of 0.002, the weights' own difference; 4-10 of the 713 elements) may move
 * by 2 lr a step, every other one by QGZ_EXTRA only. */
#define QGZ_FRAGILE 8e-3
#define QGZ_FLIPPED (2.0 * LR * STEPS)

/* qgZ's run against the same engine without qgZ, within QGZ_EXTRA (or
 * QGZ_FLIPPED where the reference says the update may turn around); in fp32
 * some weight must differ (a reduction that forgot to quantize would pass
 * the bound), except with Lion, whose update takes only the signs, which
 * qgZ keeps here (|gradient| >= 0.02, ten times its error). The largest
 * difference goes to stderr on rank 0 (to see how close the bound is). On
 * success @p got becomes the unquantized run, for the reference checks. */
static int qgz_check(zero_comm_h comm, const combo_t *c, zero_mem_kind_t kind, int rank, float *got[NPARAM])
{
    combo_t plain = *c;
    float *ref[NPARAM];
    double *as_double[NPARAM], *margin[NPARAM], *extra_at[NPARAM], most = 0.0, most_firm = 0.0;
    int bad = 0, fragile = 0;
    if (!c->qgz)
        return 0;
    plain.qgz = 0;
    for (int p = 0; p < NPARAM; p++) {
        ref[p] = calloc(numel_of(p), sizeof(float));
        as_double[p] = malloc(numel_of(p) * sizeof(double));
        margin[p] = malloc(numel_of(p) * sizeof(double));
        extra_at[p] = malloc(numel_of(p) * sizeof(double));
    }
    reference(c, zero_comm_size(comm), as_double, margin);   /* as_double: overwritten below */
    if (run_engine(comm, &plain, kind, ref) != 0)
        bad = 1;
    for (int p = 0; p < NPARAM && !bad; p++)
        for (size_t i = 0; i < numel_of(p); i++) {
            double d = fabs((double)got[p][i] - (double)ref[p][i]);
            int flips = margin[p][i] < QGZ_FRAGILE;
            fragile += flips;
            extra_at[p][i] = flips ? QGZ_FLIPPED : QGZ_EXTRA;
            as_double[p][i] = ref[p][i];
            most = d > most ? d : most;
            most_firm = !flips && d > most_firm ? d : most_firm;
        }
    if (!bad && rank == 0)
        fprintf(stderr, "rank 0: %s qgZ against no qgZ: %s %s gas %d clip %g: largest difference %.3g, %.3g where "
                "the update cannot turn (bound %g; %d elements may turn, bound %g)\n",
                kind == ZERO_MEM_HOST ? "host" : "device", zero_dtype_string(c->dtype), opt_names[c->opt], c->gas,
                c->clip, most, most_firm, QGZ_EXTRA, fragile, QGZ_FLIPPED);
    if (!bad)
        bad = compare_at("qgZ against no qgZ", c, rank, got, as_double, 0.0, extra_at);
    for (int p = 0; p < NPARAM; p++) {
        free(as_double[p]);
        free(margin[p]);
        free(extra_at[p]);
    }
    /* Lion steps by signs only: its weights may all be the unquantized ones */
    return quant_took_effect("qgZ", c, kind, rank, bad, most > 0.0 || c->opt == OPT_LION, got, ref);
}

int main(void)
{
    zero_comm_h comm;
    int failures = 0, combos = 0, world, rank;
    static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};
    float *got[NPARAM], *stage0[3][OPT_COUNT][2][2][NPARAM];
    double *want[NPARAM];

#ifdef ENGINE_CHECK_DEVICE
    {
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
            printf("engine_check_device: no CUDA device: skipped\n");
            return 77;
        }
    }
#endif
    if (getenv("ZERO_TEST_NODE_SIZE") != NULL)   /* the job as nodes of that many ranks (hierarchical qgZ) */
        rank_check_describe_nodes(atoi(getenv("ZERO_TEST_NODE_SIZE")));
    if (rank_check_begin(&comm) != 0)
        return 100;
    world = check_world;
    rank = check_rank;
    for (int p = 0; p < NPARAM; p++) {
        got[p] = calloc(numel_of(p), sizeof(float));
        want[p] = calloc(numel_of(p), sizeof(double));
    }
    memset(stage0, 0, sizeof(stage0));
    for (int stage = hpz_size(world) > 1 || qwz_on() || qgz_on() ? 3 : 0; stage <= 3; stage++)
        for (int di = 0; di < 3; di++)
            for (int o = 0; o < OPT_COUNT; o++)
                for (int gi = 0; gi < 2; gi++)
                    for (int ci = 0; ci < 2; ci++) {
                        combo_t c = {.stage = stage, .dtype = dtypes[di], .opt = (opt_t)o, .gas = gi ? 3 : 1,
                                     .clip = ci ? 0.5 : 0.0, .hpz = hpz_size(world), .qwz = qwz_on(),
                                     .qgz = qgz_on()};
                        /* views on a rotating subset of the stage 0-2 runs */
                        c.views = stage < 3 && (o + gi + ci) % 3 == 0;
#ifdef ENGINE_CHECK_DEVICE
                        if (gi != ci || (gi && o != OPT_ADAMW && o != OPT_LAMB))
                            continue;   /* the device subset (see the top) */
                        c.views = 0;
                        combos++;
                        /* the host engine first, over the same communicator: the device must match it */
                        if (run_engine(comm, &c, ZERO_MEM_HOST, got) != 0) {
                            failures++;
                            continue;
                        }
                        for (int p = 0; p < NPARAM; p++)
                            for (size_t i = 0; i < numel_of(p); i++)
                                want[p][i] = got[p][i];
                        if (run_engine(comm, &c, ZERO_MEM_DEVICE, got) != 0 ||
                            compare_qwz("device against the host engine", &c, rank, got, want) ||
                            hpz_exact(comm, &c, ZERO_MEM_DEVICE, rank, got) ||
                            qwz_check(comm, &c, ZERO_MEM_DEVICE, rank, got) ||
                            qgz_check(comm, &c, ZERO_MEM_DEVICE, rank, got)) {
                            failures++;
                            continue;
                        }
                        if (stage == 3 && param_offload_asked()) {
                            /* the same device run without offload_param: the same bits */
                            combo_t plain = c;
                            plain.no_param_offload = 1;
                            for (int p = 0; p < NPARAM; p++)
                                for (size_t i = 0; i < numel_of(p); i++)
                                    want[p][i] = got[p][i];
                            if (run_engine(comm, &plain, ZERO_MEM_DEVICE, got) != 0 ||
                                compare_exact("offload_param \"cpu\" against the device engine without it", &c, rank,
                                              got, want)) {
                                failures++;
                                continue;
                            }
                        }
#else
                        combos++;
                        if (run_engine(comm, &c, ZERO_MEM_HOST, got) != 0 || hpz_exact(comm, &c, ZERO_MEM_HOST, rank, got) ||
                            qwz_check(comm, &c, ZERO_MEM_HOST, rank, got) ||
                            qgz_check(comm, &c, ZERO_MEM_HOST, rank, got)) {
                            failures++;
                            continue;
                        }
#endif
                        reference(&c, world, want, NULL);
                        if (compare("against the reference", &c, rank, got, want)) {
                            failures++;
                            continue;
                        }
                        if (stage == 0) {
                            for (int p = 0; p < NPARAM; p++) {
                                stage0[di][o][gi][ci][p] = malloc(numel_of(p) * sizeof(float));
                                memcpy(stage0[di][o][gi][ci][p], got[p], numel_of(p) * sizeof(float));
                            }
                        } else if (stage0[di][o][gi][ci][0] != NULL) {
                            for (int p = 0; p < NPARAM; p++)
                                for (size_t i = 0; i < numel_of(p); i++)
                                    want[p][i] = stage0[di][o][gi][ci][p][i];
                            failures += compare("against stage 0", &c, rank, got, want);
                        }
                    }
    for (int di = 0; di < 3; di++)
        for (int o = 0; o < OPT_COUNT; o++)
            for (int gi = 0; gi < 2; gi++)
                for (int ci = 0; ci < 2; ci++)
                    for (int p = 0; p < NPARAM; p++)
                        free(stage0[di][o][gi][ci][p]);
    for (int p = 0; p < NPARAM; p++) {
        free(got[p]);
        free(want[p]);
    }
    /* Every rank but 0 registers a different shape: setup fails on every rank, naming it. */
    if (world > 1) {
        zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM,
                                   .comm = comm};
        char json[256];
        zero_engine_h eng = NULL;
        zero_param_h h;
        zero_param_desc_t d = {.name = "mismatch", .dtype = ZERO_FP32, .ndim = 1, .shape = {rank == 0 ? 10 : 11}};
        snprintf(json, sizeof(json), "{\"train_batch_size\": %d, \"optimizer\": {\"type\": \"SGD\"}}", world);
        ep.config_json = json;
        combos++;
        if (zero_engine_create(&ep, &eng) != ZERO_OK || zero_param_register(eng, &d, &h) != ZERO_OK ||
            zero_engine_setup(eng) != ZERO_ERR_INVALID_ARG ||
            (rank != 0 && strstr(zero_engine_last_error(eng), "parameter 0 (mismatch) differs from rank 0") == NULL)) {
            fprintf(stderr, "rank %d: mismatched registration not reported: %s\n", rank,
                    eng ? zero_engine_last_error(eng) : "no engine");
            failures++;
        }
        zero_engine_destroy(eng);
    }
    zero_comm_destroy(comm);
    printf("engine_check rank %d of %d: %d of %d combinations passed\n", rank, world, combos - failures, combos);
    return failures > 99 ? 99 : failures;
}
