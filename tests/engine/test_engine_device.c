/*
 * The engine on a GPU (ZERO_MEM_DEVICE), world size 1, against the host
 * engine on the same gradients, in one process.
 *
 * The trainer is what the ordering contract in zero/engine.h promises to
 * serve: it queues everything on one stream of its own (non-blocking, so the
 * legacy default stream orders nothing for it), writes each gradient with a
 * kernel that first spins (device_trainer.cu), so a reduction the engine
 * started without waiting on that stream would read the buffer before the
 * kernel wrote it, and calls nothing but the engine's API: no
 * cudaDeviceSynchronize anywhere in this file. It waits on its own stream
 * only to read results back to the host.
 *
 * Checked:
 *  - stages 0-3 x fp32/bf16/fp16 x AdamW, Adam (adam_w_mode false), SGD
 *    with Nesterov momentum and with plain momentum, Adagrad, Lion, Lamb
 *    (and gradient accumulation, clipping and the legacy default stream):
 *    the weights after every step and each step's
 *    info. Bit-identical where the arithmetic is the same (every elementwise
 *    optimizer without clipping: the device runs the C reference's
 *    per-element code, lib/optim/optim_elem.h, and the multiplier is
 *    1 / loss scale whatever the norm); otherwise within one unit in the
 *    last place of the weights' dtype plus 1e-5 relative, since the norms
 *    are summed in another order (the clip coefficient and Lamb's trust
 *    ratios move by an ulp or so). Step info (stepped, skipped, loss scale,
 *    lr) equal; grad_norm within 1e-9 relative.
 *  - checkpoints: saved from the device, loaded by a host engine (another
 *    stage), equal weights; a step on each from there, equal weights; saved
 *    by the host, loaded by a fresh device engine, equal weights.
 *  - the engine's memory accounting: the same bytes on the device as the
 *    host engine holds for the same model and stage.
 * ZERO_TEST_COMM_BACKEND=nccl (gpu-check's engine-device step) puts
 * "comm_backend": "nccl" into every config: the engine's collectives then run
 * over a one-rank NCCL communicator instead of the self backend's device
 * copies (the default, which the sanitizer steps keep), against the same
 * host engine.
 * Without a CUDA device: exit 77.
 */
#include "device_trainer.h"
#include "test_main.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zero/convert.h>
#include <zero/zero.h>

#define NP 3
#define STEPS 4
/* Clock cycles each gradient kernel spins before writing (~0.5 ms; a tenth
 * with ZERO_TEST_QUICK=1, as under compute-sanitizer). */
static long long spin_cycles = 1000000LL;
static int quick;

static const char *const names[NP] = {"emb", "bias", "proj"};
static const int ndims[NP] = {2, 1, 2};
static const int64_t shapes[NP][2] = {{61, 7}, {7, 0}, {7, 33}};
static const int decays[NP] = {1, 0, 1};

typedef struct run_cfg {
    int stage;
    zero_dtype_t dtype;
    const char *opt;      /* config optimizer type */
    int gas;
    double clip;
    int legacy_stream;    /* device: NULL stream instead of the trainer's own */
} run_cfg_t;

typedef struct run_out {
    float w[STEPS][1024];          /* every parameter's weights, concatenated, as fp32 */
    zero_step_info_t info[STEPS];
    zero_engine_memory_t mem;
} run_out_t;

static size_t numel(int p)
{
    return (size_t)shapes[p][0] * (size_t)(ndims[p] == 2 ? shapes[p][1] : 1);
}

static size_t dsize(zero_dtype_t d)
{
    return d == ZERO_FP32 ? 4 : 2;
}

static void init_fn(const char *name, size_t offset, size_t count, float *out, void *user_data)
{
    uint32_t key = (uint32_t)(name[0] * 131 + name[1]);
    (void)user_data;
    for (size_t i = 0; i < count; i++)
        out[i] = 0.25f * zero_test_grad_value(key, (uint32_t)(offset + i));
}

static void config_json(const run_cfg_t *c, char *buf, size_t size)
{
    const char *params = "{\"lr\": 0.01, \"weight_decay\": 0.1}", *type = c->opt;
    const char *precision = "", *backend = getenv("ZERO_TEST_COMM_BACKEND");
    char backend_key[64] = "";
    if (backend != NULL && backend[0] != '\0')
        snprintf(backend_key, sizeof(backend_key), ", \"comm_backend\": \"%s\"", backend);
    if (strcmp(c->opt, "Adam-L2") == 0) {   /* Adam proper: the decay added to the gradient */
        type = "Adam";
        params = "{\"lr\": 0.01, \"weight_decay\": 0.1, \"adam_w_mode\": false}";
    } else if (strcmp(c->opt, "SGD-momentum") == 0) {   /* heavy-ball momentum, no Nesterov */
        type = "SGD";
        params = "{\"lr\": 0.05, \"momentum\": 0.9, \"nesterov\": false, \"weight_decay\": 0.01}";
    } else if (strcmp(c->opt, "SGD") == 0)
        params = "{\"lr\": 0.05, \"momentum\": 0.9, \"nesterov\": true, \"weight_decay\": 0.01}";
    else if (strcmp(c->opt, "Adagrad") == 0)
        params = "{\"lr\": 0.05, \"weight_decay\": 0.01}";
    else if (strcmp(c->opt, "Lion") == 0)
        params = "{\"lr\": 0.001, \"weight_decay\": 0.1}";
    else if (strcmp(c->opt, "Lamb") == 0)
        params = "{\"lr\": 0.01, \"weight_decay\": 0.01}";
    if (c->dtype == ZERO_BF16)
        precision = ", \"bf16\": {\"enabled\": true}";
    else if (c->dtype == ZERO_FP16)
        precision = ", \"fp16\": {\"enabled\": true, \"initial_scale_power\": 8}";
    snprintf(buf, size,
             "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": %d,"
             " \"gradient_clipping\": %g, \"optimizer\": {\"type\": \"%s\", \"params\": %s},"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": 300,"
             " \"stage3_param_persistence_threshold\": 10}%s%s}",
             c->gas, c->clip, type, params, c->stage, precision, backend_key);
}

/* The host twin of zero_test_grad_add. */
static void host_grad_add(void *dst, zero_dtype_t dtype, size_t n, uint32_t key, float seed)
{
    for (size_t i = 0; i < n; i++) {
        float g = zero_test_grad_value(key, (uint32_t)i) * seed, d, r;
        uint16_t h;
        if (dtype == ZERO_FP32) {
            ((float *)dst)[i] += g;
            continue;
        }
        zero_convert(&h, dtype, &g, ZERO_FP32, 1);
        zero_convert(&r, ZERO_FP32, &h, dtype, 1);
        zero_convert(&d, ZERO_FP32, (uint16_t *)dst + i, dtype, 1);
        d = d + r;
        zero_convert((uint16_t *)dst + i, dtype, &d, ZERO_FP32, 1);
    }
}

typedef struct trainer {
    zero_engine_h e;
    zero_param_h p[NP];
    zero_mem_kind_t kind;
    cudaStream_t stream;
    zero_dtype_t dtype;
} trainer_t;

static int make_trainer(trainer_t *t, const run_cfg_t *c, zero_mem_kind_t kind, cudaStream_t stream)
{
    char json[1024];
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_NUM_THREADS |
                                             ZERO_ENGINE_PARAM_FIELD_MEM_KIND | ZERO_ENGINE_PARAM_FIELD_CUDA_STREAM,
                               .num_threads = 2, .mem_kind = kind, .cuda_stream = stream};
    memset(t, 0, sizeof(*t));
    config_json(c, json, sizeof(json));
    ep.config_json = json;
    t->kind = kind;
    t->stream = stream;
    t->dtype = c->dtype;
    if (zero_engine_create(&ep, &t->e) != ZERO_OK) {
        CU_FAIL("zero_engine_create");
        return 0;
    }
    for (int p = 0; p < NP; p++) {
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_WEIGHT_DECAY | ZERO_PARAM_FIELD_INIT_FN,
                               .name = names[p], .dtype = c->dtype, .ndim = ndims[p],
                               .weight_decay = decays[p], .init_fn = init_fn};
        d.shape[0] = shapes[p][0];
        d.shape[1] = shapes[p][1];
        if (zero_param_register(t->e, &d, &t->p[p]) != ZERO_OK) {
            CU_FAIL("zero_param_register");
            return 0;
        }
    }
    if (zero_engine_setup(t->e) != ZERO_OK) {
        fprintf(stderr, "setup: %s\n", zero_engine_last_error(t->e));
        CU_FAIL("zero_engine_setup");
        return 0;
    }
    return 1;
}

/* Every parameter's weights as fp32, concatenated into @p out (stage 3: gathered for the read). */
static int read_weights(trainer_t *t, float *out)
{
    size_t at = 0;
    if (zero_gather(t->e, t->p, NP) != ZERO_OK)
        return 0;
    for (int p = 0; p < NP; p++) {
        size_t n = numel(p), bytes = n * dsize(t->dtype);
        unsigned char host[1024 * 4];
        const void *w = zero_param_data(t->p[p]);
        if (w == NULL)
            return 0;
        if (t->kind == ZERO_MEM_DEVICE) {
            /* on the trainer's stream, after what the engine queued there */
            if (cudaMemcpyAsync(host, w, bytes, cudaMemcpyDeviceToHost, t->stream) != cudaSuccess ||
                cudaStreamSynchronize(t->stream) != cudaSuccess)
                return 0;
        } else {
            memcpy(host, w, bytes);
        }
        zero_convert(out + at, ZERO_FP32, host, t->dtype, n);
        at += n;
    }
    return zero_release(t->e, t->p, NP) == ZERO_OK;
}

/* One micro-batch's backward: every gradient added by its kernel (or host twin), marked ready in reverse order. */
static int backward(trainer_t *t, int step, int micro)
{
    float seed;
    if (zero_backward_begin(t->e, &seed) != ZERO_OK)
        return 0;
    for (int p = NP - 1; p >= 0; p--) {
        void *g = zero_param_grad(t->p[p]);
        uint32_t key = (uint32_t)(1000 * step + 100 * micro + p + 1);
        if (g == NULL)
            return 0;
        if (t->kind == ZERO_MEM_DEVICE) {
            if (zero_test_grad_add(g, (int)t->dtype, numel(p), key, seed, spin_cycles, t->stream) != 0)
                return 0;
        } else {
            host_grad_add(g, t->dtype, numel(p), key, seed);
        }
        if (zero_grad_ready(t->e, t->p[p]) != ZERO_OK)
            return 0;
    }
    return zero_backward_end(t->e) == ZERO_OK;
}

/* Steps @p first .. @p last - 1 (stage 3 gathers around the backward as a trainer does). */
static int train(trainer_t *t, int first, int last, run_out_t *out)
{
    int gas = (int)zero_engine_config(t->e)->gradient_accumulation_steps;
    for (int s = first; s < last; s++) {
        zero_step_info_t info;
        for (int m = 0; m < gas; m++) {
            if (zero_gather(t->e, t->p, NP) != ZERO_OK || !backward(t, s, m) || zero_release(t->e, t->p, NP) != ZERO_OK ||
                zero_step(t->e, &info) != ZERO_OK) {
                fprintf(stderr, "step %d micro %d: %s\n", s, m, zero_engine_last_error(t->e));
                return 0;
            }
        }
        if (out != NULL) {
            out->info[s] = info;
            if (!read_weights(t, out->w[s]))
                return 0;
        }
    }
    if (out != NULL)
        zero_engine_memory(t->e, &out->mem);
    return 1;
}

static cudaStream_t trainer_stream;

static int run(const run_cfg_t *c, zero_mem_kind_t kind, run_out_t *out)
{
    trainer_t t;
    int ok = make_trainer(&t, c, kind, kind == ZERO_MEM_DEVICE && !c->legacy_stream ? trainer_stream : NULL) &&
             train(&t, 0, STEPS, out);
    zero_engine_destroy(t.e);
    return ok;
}

static double ulp_of(zero_dtype_t d)
{
    return d == ZERO_BF16 ? 1.0 / 128 : d == ZERO_FP16 ? 1.0 / 1024 : 1.0 / 8388608;
}

/* Compares a device run with the host run: bitwise or within the tolerance above. */
static void compare(const run_cfg_t *c, const run_out_t *host, const run_out_t *dev)
{
    int bitwise = c->clip == 0.0 && strcmp(c->opt, "Lamb") != 0;
    size_t total = 0, differ = 0, beyond = 0;
    double worst = 0.0;
    for (int p = 0; p < NP; p++)
        total += numel(p);
    for (int s = 0; s < STEPS; s++) {
        CU_ASSERT_EQUAL(dev->info[s].stepped, host->info[s].stepped);
        CU_ASSERT_EQUAL(dev->info[s].skipped, host->info[s].skipped);
        CU_ASSERT_EQUAL(dev->info[s].loss_scale, host->info[s].loss_scale);
        CU_ASSERT_EQUAL(dev->info[s].lr, host->info[s].lr);
        CU_ASSERT(fabs(dev->info[s].grad_norm - host->info[s].grad_norm) <= 1e-9 * fabs(host->info[s].grad_norm) ||
                  (isinf(dev->info[s].grad_norm) && isinf(host->info[s].grad_norm)));
        for (size_t i = 0; i < total; i++) {
            double a = dev->w[s][i], b = host->w[s][i], d = fabs(a - b);
            if (memcmp(&dev->w[s][i], &host->w[s][i], sizeof(float)) != 0)
                differ++;
            if (d > worst)
                worst = d;
            if (d > ulp_of(c->dtype) * fabs(b) + 1e-5 * fabs(b) + 1e-30)
                beyond++;
        }
    }
    printf("\n    stage %d %s %s gas %d clip %g%s: %zu of %zu weights differ (worst %.3g)%s", c->stage,
           c->dtype == ZERO_FP32 ? "fp32" : c->dtype == ZERO_BF16 ? "bf16" : "fp16", c->opt, c->gas, c->clip,
           c->legacy_stream ? " legacy stream" : "", differ, (size_t)STEPS * total, worst,
           bitwise ? " (bitwise required)" : "");
    CU_ASSERT_EQUAL(beyond, 0);
    if (bitwise)
        CU_ASSERT_EQUAL(differ, 0);
    CU_ASSERT_EQUAL(dev->mem.params, host->mem.params);
    CU_ASSERT_EQUAL(dev->mem.grads, host->mem.grads);
    CU_ASSERT_EQUAL(dev->mem.master, host->mem.master);
    CU_ASSERT_EQUAL(dev->mem.optim_state, host->mem.optim_state);
    /* the step changed the weights (a run that did nothing would compare equal) */
    CU_ASSERT(memcmp(dev->w[0], dev->w[STEPS - 1], total * sizeof(float)) != 0);
}

static void run_pair(const run_cfg_t *c)
{
    run_out_t *host = calloc(1, sizeof(*host)), *dev = calloc(1, sizeof(*dev));
    CU_ASSERT_PTR_NOT_NULL_FATAL(host);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dev);
    if (run(c, ZERO_MEM_HOST, host) && run(c, ZERO_MEM_DEVICE, dev))
        compare(c, host, dev);
    else
        CU_FAIL("a run failed");
    free(host);
    free(dev);
}

static void test_matrix(void)
{
    static const char *const opts[] = {"AdamW", "Lamb", "SGD", "Adagrad", "Lion", "Adam-L2", "SGD-momentum"};
    static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};
    ZERO_TEST_MEM_MARK();
    for (int stage = 0; stage <= 3; stage++)
        for (int d = 0; d < 3; d++)
            for (int o = 0; o < (quick ? 2 : 7); o++) {
                run_cfg_t c = {.stage = stage, .dtype = dtypes[d], .opt = opts[o], .gas = 1};
                run_pair(&c);
            }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* Accumulation over micro-batches, clipping (norms summed on the device), the legacy stream. */
static void test_accumulation_clipping_streams(void)
{
    ZERO_TEST_MEM_MARK();
    for (int stage = 0; stage <= 3; stage++) {
        run_cfg_t acc = {.stage = stage, .dtype = ZERO_BF16, .opt = "Adam", .gas = 3};
        run_cfg_t clip = {.stage = stage, .dtype = ZERO_FP16, .opt = "AdamW", .gas = 2, .clip = 0.5};
        run_cfg_t legacy = {.stage = stage, .dtype = ZERO_FP32, .opt = "AdamW", .gas = 1, .legacy_stream = 1};
        run_pair(&acc);
        run_pair(&clip);
        run_pair(&legacy);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* Device -> host -> device through checkpoints, across stages. */
static void test_checkpoints_across_kinds(void)
{
    ZERO_TEST_MEM_MARK();
    char dir[] = "/tmp/zero-engine-device-XXXXXX";
    run_cfg_t dev_cfg = {.stage = 3, .dtype = ZERO_BF16, .opt = "AdamW", .gas = 1};
    run_cfg_t host_cfg = {.stage = 1, .dtype = ZERO_BF16, .opt = "AdamW", .gas = 1};
    static float a[1024], b[1024];
    trainer_t dev, host, dev2;
    size_t total = numel(0) + numel(1) + numel(2);
    char *client = NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    CU_ASSERT_FATAL(make_trainer(&dev, &dev_cfg, ZERO_MEM_DEVICE, trainer_stream));
    CU_ASSERT_FATAL(make_trainer(&host, &host_cfg, ZERO_MEM_HOST, NULL));
    CU_ASSERT_FATAL(train(&dev, 0, 3, NULL));
    CU_ASSERT_EQUAL(zero_save_checkpoint(dev.e, dir, "from_device", "{\"step\": 3}"), ZERO_OK);
    CU_ASSERT_EQUAL(zero_load_checkpoint(host.e, dir, "from_device", NULL, &client), ZERO_OK);
    CU_ASSERT_PTR_NOT_NULL(client);
    zero_string_free(client);
    CU_ASSERT(read_weights(&dev, a) && read_weights(&host, b));
    CU_ASSERT_EQUAL(memcmp(a, b, total * sizeof(float)), 0);
    CU_ASSERT_EQUAL(zero_engine_global_steps(host.e), 3);
    /* the same step on both from there */
    CU_ASSERT(train(&dev, 3, 4, NULL) && train(&host, 3, 4, NULL));
    CU_ASSERT(read_weights(&dev, a) && read_weights(&host, b));
    CU_ASSERT_EQUAL(memcmp(a, b, total * sizeof(float)), 0);
    /* host -> a fresh device engine */
    CU_ASSERT_EQUAL(zero_save_checkpoint(host.e, dir, "from_host", NULL), ZERO_OK);
    CU_ASSERT_FATAL(make_trainer(&dev2, &dev_cfg, ZERO_MEM_DEVICE, trainer_stream));
    CU_ASSERT_EQUAL(zero_load_checkpoint(dev2.e, dir, NULL, NULL, NULL), ZERO_OK);   /* latest */
    CU_ASSERT(read_weights(&dev2, a));
    CU_ASSERT_EQUAL(memcmp(a, b, total * sizeof(float)), 0);
    /* and it trains on to the same weights as the host */
    CU_ASSERT(train(&dev2, 4, 5, NULL) && train(&host, 4, 5, NULL));
    CU_ASSERT(read_weights(&dev2, a) && read_weights(&host, b));
    CU_ASSERT_EQUAL(memcmp(a, b, total * sizeof(float)), 0);
    zero_engine_destroy(dev2.e);
    zero_engine_destroy(host.e);
    zero_engine_destroy(dev.e);
    {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        CU_ASSERT_EQUAL(system(cmd), 0);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

int main(int argc, char **argv)
{
    int count = 0, status;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        printf("no CUDA device (%s): skipped\n", err != cudaSuccess ? cudaGetErrorString(err) : "count 0");
        return 77;
    }
    if (cudaStreamCreateWithFlags(&trainer_stream, cudaStreamNonBlocking) != cudaSuccess) {
        printf("cannot create the trainer's stream\n");
        return 1;
    }
    zero_log_set_level(ZERO_LOG_LEVEL_ERROR);
    quick = getenv("ZERO_TEST_QUICK") != NULL && strcmp(getenv("ZERO_TEST_QUICK"), "1") == 0;
    if (quick)
        spin_cycles /= 10;
    CU_TestInfo tests[] = {
        {"stages 0-3 x fp32/bf16/fp16 x every optimizer: device as host", test_matrix},
        {"accumulation, clipping, the legacy default stream", test_accumulation_clipping_streams},
        {"checkpoints: device -> host -> device, across stages", test_checkpoints_across_kinds},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"engine-device", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    status = zero_test_main(argc, argv, suites);
    cudaStreamDestroy(trainer_stream);
    return status;
}
