/*
 * CPU offload for a device engine (offload_optimizer.device "cpu" with
 * ZERO_MEM_DEVICE, lib/offload/store_cpu.c), world size 1, against the same
 * device engine without offload, in one process.
 *
 * The trainer queues everything on a non-blocking stream of its own and
 * writes each gradient with a kernel that spins first (device_trainer.cu), so
 * an offload copy that did not wait for the trainer's stream would read the
 * gradients before they are written.
 *
 * Checked, stages 1-3 x fp32/bf16/fp16 x AdamW, SGD (momentum, Nesterov),
 * Lion, Lamb (Lamb runs on the device through the store's staged ranges),
 * with gradient accumulation 2 and clipping in some cases:
 *  - the weights after every step, and each step's info. Tolerance: bit for
 *    bit where the arithmetic is the same (elementwise optimizers without
 *    clipping: the CPU kernel and the CUDA kernel run one per-element
 *    definition, lib/optim/optim_elem.h); otherwise one unit in the last
 *    place of the weights' dtype plus 1e-5 relative (the same bound as
 *    test_engine_device's device-against-host comparison);
 *  - a checkpoint saved with offload loads into an engine without it and the
 *    two train on to equal weights;
 *  - pinning refused (ZERO_OFFLOAD_PIN_LIMIT=1): one warning naming the
 *    transfer slots, and the same weights as with pinned slots;
 *  - offload_param "cpu" at stage 3 (the shards in host memory, uploaded at
 *    each gather through 3 slots of 50 elements, so several chunks per
 *    gather and per step window): fp32/bf16/fp16 x AdamW, SGD, Lamb, with
 *    and without the CPU optimizer offload, AdamW with accumulation 2 and
 *    clipping: the same bits as the same run with the shards in device
 *    memory, and zero_engine_memory counts no shard bytes (params 0) and no
 *    more in total apart from the fp32 master (at fp32 the in-memory shard
 *    is the master; without it the device store keeps its own);
 *  - offload_optimizer "nvme" (the CPU offload with its master and moments
 *    in the NVMe file), stages 1-3 x fp32/bf16/fp16 x AdamW, SGD, Lamb,
 *    bf16 AdamW with accumulation 2 and clipping, and with offload_param
 *    "cpu": as the CPU offload against the device engine (same tolerances),
 *    and the directory empty afterwards;
 *  - offload_optimizer "remote" (the CPU offload with its slots stepped on
 *    one zero-optd, run on a thread of this process): stages 1-3 x
 *    fp32/bf16/fp16 x AdamW and Lamb (Lamb on staged ranges read from and
 *    written to the server), SGD and Lion in bf16, accumulation 2 with clipping, and
 *    with offload_param "cpu": bit for bit the CPU offload with the state in
 *    this process (the server runs the same CPU kernel), with no state in
 *    device memory; a checkpoint saved with it loads into the CPU offload
 *    and the other way round, both training on to the same bits;
 *  - refused for device ranks, naming the key: offload_param "nvme", and
 *    "remote" with ratio < 1 or overlap_step;
 *  - stage-3 slices with offload_param "cpu": ZERO_ERR_UNSUPPORTED naming
 *    the key, and whole gathers work after it.
 *  - offload_optimizer.ratio 0.5 (the last buckets' state on the host, the
 *    rest stepped by the device kernels): stages 1-3 x fp32/bf16/fp16 AdamW,
 *    bf16 SGD and Lamb, fp16 with accumulation and clipping, with the same
 *    tolerances; the memory report holds part of the state in device memory
 *    (less than without offload) and counts the pinned slots; a checkpoint
 *    saved at ratio 0.5 loads without offload;
 *  - offload_optimizer.overlap_step (buckets stepped on the CPU during the
 *    backward, undone on overflow): stages 2-3, bf16 and fp16 AdamW (fp16
 *    from loss scale 2^17: gradients in [-1, 1) times the scale overflow in
 *    the first steps, which are undone, and later steps go through; asserted,
 *    at 2^16 none of these gradients overflowed), bf16 SGD
 *    with accumulation 2, at ratio 1 and 0.5, with the same tolerances, and
 *    the timers' overlap within [0, 1].
 * Without a CUDA device: exit 77.
 */
#include "device_trainer.h"
#include "optd_test.h"
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

static const char *const names[NP] = {"emb", "bias", "proj"};
static const int ndims[NP] = {2, 1, 2};
static const int64_t shapes[NP][2] = {{61, 7}, {7, 0}, {7, 33}};
static const int decays[NP] = {1, 0, 1};
static cudaStream_t trainer_stream;

typedef struct run_cfg {
    int stage;
    zero_dtype_t dtype;
    const char *opt;
    int gas;
    double clip;
    int offload;   /* offload_optimizer: 0 none, 1 "cpu", 2 "nvme" (the CPU offload over the NVMe file), 3 "remote" */
    int param;     /* offload_param "cpu" (stage 3) */
    double ratio;   /* offload_optimizer.ratio; 0: not given (1.0) */
    int overlap;    /* offload_optimizer.overlap_step */
    int scale_power; /* fp16 initial_scale_power; 0: 8 */
} run_cfg_t;

static zero_engine_memory_t last_memory;   /* of the last run(), after its steps */
static char nvme_dir[64];                  /* offload_optimizer.nvme_path of the "nvme" runs */
static int optd_port;                      /* the zero-optd of the "remote" runs (test_remote) */

typedef struct run_out {
    float w[STEPS][1024];
    zero_step_info_t info[STEPS];
    zero_engine_memory_t mem;
} run_out_t;

typedef struct trainer {
    zero_engine_h e;
    zero_param_h p[NP];
    zero_dtype_t dtype;
} trainer_t;

static size_t numel(int p)
{
    return (size_t)shapes[p][0] * (size_t)(ndims[p] == 2 ? shapes[p][1] : 1);
}

static size_t dsize(zero_dtype_t d) { return d == ZERO_FP32 ? 4 : 2; }

static void init_fn(const char *name, size_t offset, size_t count, float *out, void *user_data)
{
    uint32_t key = (uint32_t)(name[0] * 131 + name[1]);
    (void)user_data;
    for (size_t i = 0; i < count; i++)
        out[i] = 0.25f * zero_test_grad_value(key, (uint32_t)(offset + i));
}

static void config_json(const run_cfg_t *c, char *buf, size_t size)
{
    const char *params = "{\"lr\": 0.01, \"weight_decay\": 0.1}";
    const char *precision = "";
    char offload[256] = "", fp16[96];
    if (c->offload == 1)
        snprintf(offload, sizeof(offload),
                 ", \"offload_optimizer\": {\"device\": \"cpu\", \"buffer_count\": 3, \"ratio\": %.3g%s}",
                 c->ratio > 0 ? c->ratio : 1.0, c->overlap ? ", \"overlap_step\": true" : "");
    else if (c->offload == 2)
        snprintf(offload, sizeof(offload),
                 ", \"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"%s\", \"buffer_count\": 3}",
                 nvme_dir);
    else if (c->offload == 3)
        snprintf(offload, sizeof(offload),
                 ", \"offload_optimizer\": {\"device\": \"remote\", \"servers\": [\"127.0.0.1:%d\"], "
                 "\"buffer_count\": 3}", optd_port);
    snprintf(fp16, sizeof(fp16), ", \"fp16\": {\"enabled\": true, \"initial_scale_power\": %d}",
             c->scale_power > 0 ? c->scale_power : 8);
    if (strcmp(c->opt, "SGD") == 0)
        params = "{\"lr\": 0.05, \"momentum\": 0.9, \"nesterov\": true, \"weight_decay\": 0.01}";
    else if (strcmp(c->opt, "Lion") == 0)
        params = "{\"lr\": 0.001, \"weight_decay\": 0.1}";
    if (c->dtype == ZERO_BF16)
        precision = ", \"bf16\": {\"enabled\": true}";
    else if (c->dtype == ZERO_FP16)
        precision = fp16;
    /* sub_group_size 100: several slots per step, so the ring turns over (4 slots by default) */
    snprintf(buf, size,
             "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": %d,"
             " \"gradient_clipping\": %g, \"optimizer\": {\"type\": \"%s\", \"params\": %s},"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": 300, \"sub_group_size\": 100,"
             " \"stage3_param_persistence_threshold\": 10%s%s}%s}",
             c->gas, c->clip, c->opt, params, c->stage,
             offload, c->param ? ", \"offload_param\": {\"device\": \"cpu\", \"buffer_count\": 3, \"buffer_size\": 50}" : "",
             precision);
}

static int make_trainer(trainer_t *t, const run_cfg_t *c)
{
    char json[1536];
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_NUM_THREADS |
                                             ZERO_ENGINE_PARAM_FIELD_MEM_KIND | ZERO_ENGINE_PARAM_FIELD_CUDA_STREAM,
                               .num_threads = 2, .mem_kind = ZERO_MEM_DEVICE, .cuda_stream = trainer_stream};
    memset(t, 0, sizeof(*t));
    config_json(c, json, sizeof(json));
    ep.config_json = json;
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

static int read_weights(trainer_t *t, float *out)
{
    size_t at = 0;
    if (zero_gather(t->e, t->p, NP) != ZERO_OK)
        return 0;
    for (int p = 0; p < NP; p++) {
        size_t n = numel(p), bytes = n * dsize(t->dtype);
        unsigned char host[1024 * 4];
        const void *w = zero_param_data(t->p[p]);
        if (w == NULL || cudaMemcpyAsync(host, w, bytes, cudaMemcpyDeviceToHost, trainer_stream) != cudaSuccess ||
            cudaStreamSynchronize(trainer_stream) != cudaSuccess)
            return 0;
        zero_convert(out + at, ZERO_FP32, host, t->dtype, n);
        at += n;
    }
    return zero_release(t->e, t->p, NP) == ZERO_OK;
}

static int train(trainer_t *t, int first, int last, run_out_t *out)
{
    int gas = (int)zero_engine_config(t->e)->gradient_accumulation_steps;
    for (int s = first; s < last; s++) {
        zero_step_info_t info;
        for (int m = 0; m < gas; m++) {
            float seed;
            if (zero_gather(t->e, t->p, NP) != ZERO_OK || zero_backward_begin(t->e, &seed) != ZERO_OK)
                return 0;
            for (int p = NP - 1; p >= 0; p--) {
                void *g = zero_param_grad(t->p[p]);
                uint32_t key = (uint32_t)(1000 * s + 100 * m + p + 1);
                if (g == NULL || zero_test_grad_add(g, (int)t->dtype, numel(p), key, seed, 200000LL, trainer_stream) != 0 ||
                    zero_grad_ready(t->e, t->p[p]) != ZERO_OK)
                    return 0;
            }
            if (zero_backward_end(t->e) != ZERO_OK || zero_release(t->e, t->p, NP) != ZERO_OK ||
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
    return 1;
}

static int run(const run_cfg_t *c, run_out_t *out)
{
    trainer_t t;
    zero_engine_timers_t timers;
    int ok = make_trainer(&t, c) && train(&t, 0, STEPS, out);
    if (ok)
        CU_ASSERT_EQUAL(zero_engine_memory(t.e, &last_memory), ZERO_OK);
    if (ok && zero_engine_timers(t.e, &timers) == ZERO_OK) {
        /* the offloaded step is waited for at the boundary, and counted; none without offload
         * (Lamb runs on the device over staged ranges: no step ops, nothing waited for) */
        int stepped_on_cpu = c->offload && strcmp(c->opt, "Lamb") != 0;
        CU_ASSERT(stepped_on_cpu ? timers.offload_exposed > 0.0 : timers.offload_exposed == 0.0);
        CU_ASSERT(timers.offload_overlap >= 0.0 && timers.offload_overlap <= 1.0);
        CU_ASSERT(timers.offload_exposed <= timers.step);
    }
    if (ok)
        CU_ASSERT_EQUAL(zero_engine_memory(t.e, &out->mem), ZERO_OK);
    zero_engine_destroy(t.e);
    return ok;
}

static double ulp_of(zero_dtype_t d)
{
    return d == ZERO_BF16 ? 1.0 / 128 : d == ZERO_FP16 ? 1.0 / 1024 : 1.0 / 8388608;
}

static void compare(const run_cfg_t *c, const run_out_t *plain, const run_out_t *off)
{
    int bitwise = c->clip == 0.0 && strcmp(c->opt, "Lamb") != 0;
    size_t total = numel(0) + numel(1) + numel(2), differ = 0, beyond = 0;
    for (int s = 0; s < STEPS; s++) {
        CU_ASSERT_EQUAL(off->info[s].stepped, plain->info[s].stepped);
        CU_ASSERT_EQUAL(off->info[s].skipped, plain->info[s].skipped);
        CU_ASSERT_EQUAL(off->info[s].loss_scale, plain->info[s].loss_scale);
        for (size_t i = 0; i < total; i++) {
            double a = off->w[s][i], b = plain->w[s][i];
            differ += memcmp(&off->w[s][i], &plain->w[s][i], sizeof(float)) != 0;
            beyond += fabs(a - b) > ulp_of(c->dtype) * fabs(b) + 1e-5 * fabs(b) + 1e-30;
        }
    }
    int moved = 0;
    printf("\n    offload ratio %g%s stage %d %s %s gas %d clip %g: %zu of %zu weights differ%s",
           c->ratio > 0 ? c->ratio : 1.0, c->overlap ? " overlap" : "", c->stage,
           c->dtype == ZERO_FP32 ? "fp32" : c->dtype == ZERO_BF16 ? "bf16" : "fp16", c->opt, c->gas, c->clip, differ,
           (size_t)STEPS * total, bitwise ? " (bitwise required)" : "");
    CU_ASSERT_EQUAL(beyond, 0);
    if (bitwise)
        CU_ASSERT_EQUAL(differ, 0);
    for (int s = 1; s < STEPS; s++)
        moved |= off->info[s].stepped;
    if (moved)   /* fp16 from a high loss scale may skip every step */
        CU_ASSERT(memcmp(off->w[0], off->w[STEPS - 1], total * sizeof(float)) != 0);
    if (c->overlap && c->dtype == ZERO_FP16) {
        /* the undo path ran (a skipped step) and so did the early step (a later one went through) */
        int skipped = 0;
        for (int s = 0; s < STEPS; s++)
            skipped += off->info[s].skipped;
        CU_ASSERT(skipped > 0);
        CU_ASSERT(moved);
    }
}

static void run_pair(run_cfg_t c)
{
    run_out_t *plain = calloc(1, sizeof(*plain)), *off = calloc(1, sizeof(*off));
    int device = c.offload > 0 ? c.offload : 1;
    CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
    CU_ASSERT_PTR_NOT_NULL_FATAL(off);
    c.offload = 0;
    if (!run(&c, plain)) {
        CU_FAIL("the run without offload failed");
    }
    c.offload = device;
    if (run(&c, off)) {
        uint64_t state_plain = plain->mem.master + plain->mem.optim_state;
        uint64_t state_off = off->mem.master + off->mem.optim_state;
        compare(&c, plain, off);
        /* the pinned slots are counted; ratio < 1 keeps part of the state in device memory */
        CU_ASSERT(off->mem.offload_pinned > 0);
        CU_ASSERT_EQUAL(plain->mem.offload_pinned, 0);
        if (c.ratio > 0 && c.ratio < 1) {
            /* fp32 at stage 3: without offload the shard is the master, the device part's master is its own */
            CU_ASSERT(state_off > 0);
            if (c.dtype != ZERO_FP32 || c.stage != 3)
                CU_ASSERT(state_off < state_plain);
        } else {
            CU_ASSERT_EQUAL(state_off, 0);
        }
    } else {
        CU_FAIL("the run with CPU offload failed");
    }
    free(plain);
    free(off);
}

static void test_matrix(void)
{
    static const char *const opts[] = {"AdamW", "SGD", "Lion", "Lamb"};
    static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};
    ZERO_TEST_MEM_MARK();
    for (int stage = 1; stage <= 3; stage++)
        for (int d = 0; d < 3; d++)
            for (int o = 0; o < 4; o++)
                run_pair((run_cfg_t){.stage = stage, .dtype = dtypes[d], .opt = opts[o], .gas = 1});
    for (int stage = 1; stage <= 3; stage++) {
        run_pair((run_cfg_t){.stage = stage, .dtype = ZERO_BF16, .opt = "AdamW", .gas = 2});
        run_pair((run_cfg_t){.stage = stage, .dtype = ZERO_FP16, .opt = "AdamW", .gas = 2, .clip = 0.5});
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* offload_optimizer.ratio 0.5: part of the buckets stepped on the CPU, the rest on the device. */
static void test_ratio_half(void)
{
    static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};
    ZERO_TEST_MEM_MARK();
    for (int stage = 1; stage <= 3; stage++) {
        for (int d = 0; d < 3; d++)
            run_pair((run_cfg_t){.stage = stage, .dtype = dtypes[d], .opt = "AdamW", .gas = 1, .ratio = 0.5});
        run_pair((run_cfg_t){.stage = stage, .dtype = ZERO_BF16, .opt = "SGD", .gas = 1, .ratio = 0.5});
        run_pair((run_cfg_t){.stage = stage, .dtype = ZERO_BF16, .opt = "Lamb", .gas = 1, .ratio = 0.5});
        run_pair((run_cfg_t){.stage = stage, .dtype = ZERO_FP16, .opt = "AdamW", .gas = 2, .clip = 0.5,
                             .ratio = 0.5});
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* overlap_step: the buckets stepped while the backward still runs, undone when the step overflows. */
static void test_overlap(void)
{
    ZERO_TEST_MEM_MARK();
    for (int stage = 2; stage <= 3; stage++)
        for (int half = 0; half < 2; half++) {
            double ratio = half ? 0.5 : 0.0;
            run_pair((run_cfg_t){.stage = stage, .dtype = ZERO_BF16, .opt = "AdamW", .gas = 1, .ratio = ratio,
                                 .overlap = 1});
            run_pair((run_cfg_t){.stage = stage, .dtype = ZERO_FP16, .opt = "AdamW", .gas = 1, .ratio = ratio,
                                 .overlap = 1, .scale_power = 17});
            run_pair((run_cfg_t){.stage = stage, .dtype = ZERO_BF16, .opt = "SGD", .gas = 2, .ratio = ratio,
                                 .overlap = 1});
        }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* A checkpoint saved by @p with, loaded by @p without: equal weights, and
 * equal after one more step each. */
static void checkpoint_across(run_cfg_t with, run_cfg_t without)
{
    char dir[] = "/tmp/zero-device-offload-XXXXXX", cmd[256];
    static float a[1024], b[1024];
    size_t total = numel(0) + numel(1) + numel(2);
    trainer_t t1, t2;
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    CU_ASSERT_FATAL(make_trainer(&t1, &with) && make_trainer(&t2, &without));
    CU_ASSERT(train(&t1, 0, 2, NULL));
    CU_ASSERT_EQUAL(zero_save_checkpoint(t1.e, dir, "offloaded", NULL), ZERO_OK);
    CU_ASSERT_EQUAL(zero_load_checkpoint(t2.e, dir, NULL, NULL, NULL), ZERO_OK);
    CU_ASSERT(read_weights(&t1, a) && read_weights(&t2, b));
    CU_ASSERT_EQUAL(memcmp(a, b, total * sizeof(float)), 0);
    CU_ASSERT(train(&t1, 2, 3, NULL) && train(&t2, 2, 3, NULL));
    CU_ASSERT(read_weights(&t1, a) && read_weights(&t2, b));
    CU_ASSERT_EQUAL(memcmp(a, b, total * sizeof(float)), 0);
    zero_engine_destroy(t1.e);
    zero_engine_destroy(t2.e);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* A checkpoint with CPU offload, loaded without it. */
static void checkpoint_without_offload(double ratio)
{
    run_cfg_t with = {.stage = 2, .dtype = ZERO_BF16, .opt = "AdamW", .gas = 1, .offload = 1, .ratio = ratio};
    run_cfg_t without = with;
    without.offload = 0;
    checkpoint_across(with, without);
}

static void test_checkpoint_without_offload(void)
{
    checkpoint_without_offload(0.0);
    checkpoint_without_offload(0.5);
}

/* Pinning refused: one warning, pageable slots, the same weights. */
static void test_pinning_refused(void)
{
    run_cfg_t c = {.stage = 3, .dtype = ZERO_BF16, .opt = "AdamW", .gas = 1, .offload = 1};
    run_out_t *pinned = calloc(1, sizeof(*pinned)), *pageable = calloc(1, sizeof(*pageable));
    char path[] = "/tmp/zero-device-offload-log-XXXXXX", line[1024];
    int fd = mkstemp(path), saved, warnings = 0;
    FILE *f;
    CU_ASSERT_FATAL(pinned != NULL && pageable != NULL && fd >= 0);
    CU_ASSERT(run(&c, pinned));
    setenv("ZERO_OFFLOAD_PIN_LIMIT", "1", 1);
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    CU_ASSERT(run(&c, pageable));
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    zero_log_set_level(ZERO_LOG_LEVEL_ERROR);
    unsetenv("ZERO_OFFLOAD_PIN_LIMIT");
    f = fdopen(fd, "r");
    CU_ASSERT_FATAL(f != NULL);
    rewind(f);
    while (fgets(line, sizeof(line), f) != NULL)
        warnings += strstr(line, "offload_optimizer transfer slots: cannot pin") != NULL;
    fclose(f);
    unlink(path);
    CU_ASSERT_EQUAL(warnings, 1);
    CU_ASSERT_EQUAL(memcmp(pinned->w, pageable->w, sizeof(pinned->w)), 0);
    free(pinned);
    free(pageable);
}

/* offload_optimizer "nvme" for a device rank: the CPU offload with its
 * master and moments in the NVMe file (sub_group_size 100 per range), as the
 * device engine without offload; nothing left in the directory. */
static void test_nvme_under_cpu_offload(void)
{
    static const char *const opts[] = {"AdamW", "SGD", "Lamb"};
    static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};
    char cmd[160];
    ZERO_TEST_MEM_MARK();
    for (int stage = 1; stage <= 3; stage++)
        for (int d = 0; d < 3; d++)
            for (int o = 0; o < 3; o++)
                run_pair((run_cfg_t){.stage = stage, .dtype = dtypes[d], .opt = opts[o], .gas = 1, .offload = 2});
    run_pair((run_cfg_t){.stage = 3, .dtype = ZERO_BF16, .opt = "AdamW", .gas = 2, .clip = 0.5, .offload = 2});
    run_pair((run_cfg_t){.stage = 3, .dtype = ZERO_BF16, .opt = "AdamW", .gas = 1, .offload = 2, .param = 1});
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", nvme_dir);
    CU_ASSERT_EQUAL(system(cmd), 0);   /* the state file was unlinked at once */
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---- offload_optimizer "remote": the CPU offload's slots stepped on zero-optd ---- */

/* The same run with the state on the server and in this process (the CPU
 * offload): the same bits, every step's info the same, no state in device
 * memory. Lamb too: both run it on the device over staged ranges. */
static void remote_pair(run_cfg_t c)
{
    run_out_t *cpu = calloc(1, sizeof(*cpu)), *remote = calloc(1, sizeof(*remote));
    CU_ASSERT_PTR_NOT_NULL_FATAL(cpu);
    CU_ASSERT_PTR_NOT_NULL_FATAL(remote);
    c.offload = 1;
    CU_ASSERT_FATAL(run(&c, cpu));
    c.offload = 3;
    if (run(&c, remote)) {
        int same = memcmp(cpu->w, remote->w, sizeof(cpu->w)) == 0;
        printf("\n    remote stage %d %s %s gas %d clip %g offload_param %d: %s", c.stage,
               c.dtype == ZERO_FP32 ? "fp32" : c.dtype == ZERO_BF16 ? "bf16" : "fp16", c.opt, c.gas, c.clip, c.param,
               same ? "same bits as the CPU offload" : "DIFFERENT from the CPU offload");
        CU_ASSERT(same);
        for (int s = 0; s < STEPS; s++) {
            CU_ASSERT_EQUAL(remote->info[s].stepped, cpu->info[s].stepped);
            CU_ASSERT_EQUAL(remote->info[s].skipped, cpu->info[s].skipped);
            CU_ASSERT_EQUAL(remote->info[s].loss_scale, cpu->info[s].loss_scale);
        }
        CU_ASSERT(memcmp(remote->w[0], remote->w[STEPS - 1], sizeof(remote->w[0])) != 0);
        CU_ASSERT(remote->mem.offload_pinned > 0);
        CU_ASSERT_EQUAL(remote->mem.master + remote->mem.optim_state, 0);
    } else {
        CU_FAIL("the run with remote optimizer state failed");
    }
    free(cpu);
    free(remote);
}

static void test_remote(void)
{
    static const char *const opts[] = {"AdamW", "SGD", "Lion", "Lamb"};
    static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};
    zero_optd_server_opts_t o = {.threads = 2, .hello_timeout_s = 5.0, .io_timeout_s = 30.0};
    zero_test_optd_t t;
    run_cfg_t rc = {.stage = 2, .dtype = ZERO_BF16, .opt = "AdamW", .gas = 1, .offload = 3};
    run_cfg_t cc = rc;
    ZERO_TEST_MEM_MARK();
    unsetenv("ZERO_JOB_TOKEN");   /* the server has none either */
    CU_ASSERT_EQUAL_FATAL(zero_test_optd_start(&t, &o), 0);
    optd_port = zero_optd_server_port(t.server);
    /* AdamW and Lamb in every precision, SGD and Lion in bf16 */
    for (int stage = 1; stage <= 3; stage++)
        for (int d = 0; d < 3; d++)
            for (int k = 0; k < 4; k++)
                if (dtypes[d] == ZERO_BF16 || k == 0 || k == 3)
                    remote_pair((run_cfg_t){.stage = stage, .dtype = dtypes[d], .opt = opts[k], .gas = 1});
    for (int stage = 1; stage <= 3; stage++)
        remote_pair((run_cfg_t){.stage = stage, .dtype = ZERO_FP16, .opt = "AdamW", .gas = 2, .clip = 0.5});
    remote_pair((run_cfg_t){.stage = 3, .dtype = ZERO_BF16, .opt = "AdamW", .gas = 1, .param = 1});
    /* checkpoints stream from the server and are pushed back to it */
    cc.offload = 1;
    checkpoint_across(rc, cc);
    checkpoint_across(cc, rc);
    rc.opt = cc.opt = "Lamb";
    checkpoint_across(rc, cc);
    zero_test_optd_stop(&t);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* offload_param "cpu": the same run with the shards in device memory gives
 * the same bits, and the device holds no shard. */
static void param_pair(run_cfg_t c)
{
    run_out_t *plain = calloc(1, sizeof(*plain)), *off = calloc(1, sizeof(*off));
    zero_engine_memory_t m_plain;
    CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
    CU_ASSERT_PTR_NOT_NULL_FATAL(off);
    c.param = 0;
    CU_ASSERT_FATAL(run(&c, plain));
    m_plain = last_memory;
    c.param = 1;
    if (run(&c, off)) {
        int same = memcmp(plain->w, off->w, sizeof(plain->w)) == 0;
        printf("\n    offload_param stage 3 %s %s gas %d clip %g optimizer offload %d: %s; device params %llu -> %llu "
               "bytes, total %llu -> %llu", c.dtype == ZERO_FP32 ? "fp32" : c.dtype == ZERO_BF16 ? "bf16" : "fp16",
               c.opt, c.gas, c.clip, c.offload, same ? "same bits" : "DIFFERENT",
               (unsigned long long)m_plain.params, (unsigned long long)last_memory.params,
               (unsigned long long)m_plain.total, (unsigned long long)last_memory.total);
        CU_ASSERT(same);
        for (int s = 0; s < STEPS; s++) {
            CU_ASSERT_EQUAL(off->info[s].stepped, plain->info[s].stepped);
            CU_ASSERT_EQUAL(off->info[s].skipped, plain->info[s].skipped);
        }
        CU_ASSERT(m_plain.params > 0);
        CU_ASSERT_EQUAL(last_memory.params, 0);
        /* fp32 without optimizer offload: the shard was the master, which now
         * lives apart from it on the device; everything else shrinks */
        CU_ASSERT(last_memory.total - last_memory.master <= m_plain.total - m_plain.master);
        CU_ASSERT(memcmp(off->w[0], off->w[STEPS - 1], sizeof(off->w[0])) != 0);
    } else {
        CU_FAIL("the run with offload_param \"cpu\" failed");
    }
    free(plain);
    free(off);
}

static void test_param_offload(void)
{
    static const char *const opts[] = {"AdamW", "SGD", "Lamb"};
    static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};
    ZERO_TEST_MEM_MARK();
    for (int off = 0; off <= 1; off++)
        for (int d = 0; d < 3; d++)
            for (int o = 0; o < 3; o++)
                param_pair((run_cfg_t){.stage = 3, .dtype = dtypes[d], .opt = opts[o], .gas = 1, .offload = off});
    param_pair((run_cfg_t){.stage = 3, .dtype = ZERO_BF16, .opt = "AdamW", .gas = 2, .offload = 1});
    param_pair((run_cfg_t){.stage = 3, .dtype = ZERO_FP16, .opt = "AdamW", .gas = 2, .clip = 0.5, .offload = 0});
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* What stays refused for device ranks: offload_param "nvme", and remote
 * optimizer state with ratio < 1 or overlap_step, each naming the key, with
 * nothing left behind. */
static void test_refused(void)
{
    static const char *const blocks[3] = {
        "\"offload_param\": {\"device\": \"nvme\", \"nvme_path\": \"/tmp\"}",
        "\"offload_optimizer\": {\"device\": \"remote\", \"servers\": [\"127.0.0.1:1\"], \"ratio\": 0.5}",
        "\"offload_optimizer\": {\"device\": \"remote\", \"servers\": [\"127.0.0.1:1\"], \"overlap_step\": true}"};
    static const char *const keys[3] = {"offload_param.device \"nvme\"",
                                        "offload_optimizer.ratio < 1 with device \"remote\"",
                                        "offload_optimizer.overlap_step with device \"remote\""};
    ZERO_TEST_MEM_MARK();
    for (int i = 0; i < 3; i++) {
        char json[512];
        zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_MEM_KIND |
                                                 ZERO_ENGINE_PARAM_FIELD_CUDA_STREAM,
                                   .mem_kind = ZERO_MEM_DEVICE, .cuda_stream = trainer_stream};
        zero_engine_h e = NULL;
        zero_status_t status;
        const char *first_error;
        snprintf(json, sizeof(json),
                 "{\"train_micro_batch_size_per_gpu\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": "
                 "{\"lr\": 0.01}}, \"bf16\": {\"enabled\": true}, \"zero_optimization\": {\"stage\": 3, %s}}",
                 blocks[i]);
        ep.config_json = json;
        zero_test_first_error_begin();
        status = zero_engine_create(&ep, &e);
        first_error = zero_test_first_error_end();
        if (status == ZERO_OK) {
            CU_FAIL("a device engine accepted an offload it does not implement");
            zero_engine_destroy(e);
            continue;
        }
        CU_ASSERT_EQUAL(status, ZERO_ERR_UNSUPPORTED);
        printf("\n    refused: %s", first_error);
        CU_ASSERT_PTR_NOT_NULL(strstr(first_error, keys[i]));
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* Stage-3 slices with offload_param "cpu": refused at the call, naming the
 * key (this rank's part would be broadcast from a shard in device memory,
 * which does not exist); whole gathers still work after it. */
static void test_slices_refused(void)
{
    trainer_t t;
    zero_param_slice_t sl;
    const char *first_error;
    zero_status_t status;
    ZERO_TEST_MEM_MARK();
    if (!make_trainer(&t, &(run_cfg_t){.stage = 3, .dtype = ZERO_BF16, .opt = "AdamW", .gas = 1, .param = 1})) {
        zero_engine_destroy(t.e);
        return;
    }
    sl = (zero_param_slice_t){.param = t.p[0], .first = 3, .count = 5};   /* emb: 427 elements, not persistent */
    zero_test_first_error_begin();
    status = zero_gather_slices(t.e, &sl, 1);
    first_error = zero_test_first_error_end();
    CU_ASSERT_EQUAL(status, ZERO_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(first_error, "offload_param.device \"cpu\""));
    printf("\n    refused: %s", first_error);
    CU_ASSERT_EQUAL(zero_gather(t.e, t.p, NP), ZERO_OK);
    CU_ASSERT_EQUAL(zero_release(t.e, t.p, NP), ZERO_OK);
    zero_engine_destroy(t.e);
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
    strcpy(nvme_dir, "/tmp/zero-device-nvme-XXXXXX");
    if (mkdtemp(nvme_dir) == NULL) {
        printf("cannot make a directory for the NVMe runs\n");
        return 1;
    }
    CU_TestInfo tests[] = {
        {"stages 1-3 x fp32/bf16/fp16 x optimizers: CPU offload as the device engine", test_matrix},
        {"ratio 0.5: the first buckets on the CPU, the rest on the device, as the device engine", test_ratio_half},
        {"overlap_step: buckets stepped during the backward, undone on overflow, as the device engine", test_overlap},
        {"a checkpoint saved with CPU offload (ratio 1 and 0.5) loads without it", test_checkpoint_without_offload},
        {"pinning refused: one warning, pageable slots, same weights", test_pinning_refused},
        {"offload_param cpu at stage 3: the same bits, no shard in device memory", test_param_offload},
        {"offload_optimizer nvme under the CPU offload: as the device engine", test_nvme_under_cpu_offload},
        {"offload_optimizer remote: the CPU offload's slots stepped on zero-optd, bit for bit", test_remote},
        {"offload_param nvme, remote with ratio < 1 or overlap_step: refused for device ranks", test_refused},
        {"offload_param cpu: stage-3 slices refused at the call", test_slices_refused},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"engine-device-offload", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    status = zero_test_main(argc, argv, suites);
    rmdir(nvme_dir);
    cudaStreamDestroy(trainer_stream);
    return status;
}
