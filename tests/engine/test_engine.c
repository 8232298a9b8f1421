/*
 * Engine unit tests in one process (a world of one): misuse is a clear error
 * that changes nothing and leaks nothing; the fp16 loss scaler skips
 * overflowing steps exactly as DeepSpeed does; memory accounting is exact;
 * the distributed sampler covers every index once per epoch and fast-forwards
 * exactly. Multi-rank numerics are in engine_check.c.
 */
#include "test_main.h"
#include "util/alloc.h"

#include <zero/zero.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void quiet(void) { zero_log_set_level(ZERO_LOG_LEVEL_OFF); }
static void loud(void) { zero_log_set_level(ZERO_LOG_LEVEL_WARN); }

static zero_engine_h make_engine(const char *json)
{
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = json, .num_threads = 1};
    zero_engine_h e = NULL;
    CU_ASSERT_EQUAL(zero_engine_create(&ep, &e), ZERO_OK);
    return e;
}

static zero_param_desc_t desc(const char *name, zero_dtype_t dtype, int64_t n)
{
    zero_param_desc_t d = {.field_mask = 0, .name = name, .dtype = dtype, .ndim = 1, .shape = {n}};
    return d;
}

#define CFG(stage, extra) \
    "{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}}," \
    " \"zero_optimization\": {\"stage\": " #stage "}" extra "}"

static void test_misuse_is_an_error(void)
{
    ZERO_TEST_MEM_MARK();
    zero_engine_h e = make_engine(CFG(1, ""));
    zero_engine_h other = make_engine(CFG(1, ""));
    zero_param_h p = NULL, q = NULL, foreign = NULL;
    zero_param_desc_t d = desc("w", ZERO_FP32, 10), dq = desc("v", ZERO_FP32, 10);
    zero_step_info_t info;
    float seed;
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(other);
    quiet();
    CU_ASSERT_EQUAL(zero_backward_begin(e, &seed), ZERO_ERR_STATE);            /* before setup */
    CU_ASSERT_EQUAL(zero_param_register(e, &d, &p), ZERO_OK);
    CU_ASSERT_EQUAL(zero_param_register(e, &d, &q), ZERO_ERR_INVALID_ARG);     /* duplicate name */
    CU_ASSERT_PTR_NULL(q);
    d = desc("h", ZERO_BF16, 4);
    CU_ASSERT_EQUAL(zero_param_register(e, &d, &q), ZERO_ERR_INVALID_ARG);     /* bf16 in an fp32 config */
    d = desc("", ZERO_FP32, 4);
    CU_ASSERT_EQUAL(zero_param_register(e, &d, &q), ZERO_ERR_INVALID_ARG);     /* no name */
    d = desc("neg", ZERO_FP32, -4);
    CU_ASSERT_EQUAL(zero_param_register(e, &d, &q), ZERO_ERR_INVALID_ARG);
    d = desc("both", ZERO_FP32, 4);
    d.field_mask = ZERO_PARAM_FIELD_INIT_VALUES | ZERO_PARAM_FIELD_INIT_FN;
    CU_ASSERT_EQUAL(zero_param_register(e, &d, &q), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_STRING_EQUAL(zero_engine_last_error(e), "zero_param_register(both): set init_values or init_fn, not both");
    CU_ASSERT_PTR_NULL(q);
    CU_ASSERT_EQUAL(zero_param_register(other, &dq, &foreign), ZERO_OK);
    CU_ASSERT_EQUAL(zero_step(e, &info), ZERO_ERR_STATE);                      /* before setup */
    CU_ASSERT_EQUAL(zero_engine_setup(e), ZERO_OK);
    CU_ASSERT_EQUAL(zero_engine_setup(e), ZERO_ERR_STATE);                     /* twice */
    d = desc("late", ZERO_FP32, 4);
    CU_ASSERT_EQUAL(zero_param_register(e, &d, &q), ZERO_ERR_STATE);           /* after setup */
    CU_ASSERT_EQUAL(zero_step(e, &info), ZERO_ERR_STATE);                      /* no backward */
    CU_ASSERT_EQUAL(zero_grad_ready(e, p), ZERO_ERR_STATE);                    /* no backward */
    CU_ASSERT_EQUAL(zero_gather(e, &foreign, 1), ZERO_ERR_INVALID_ARG);        /* another engine's */
    CU_ASSERT_PTR_NULL(zero_param_grad(p));                                    /* outside the window */
    CU_ASSERT_EQUAL(zero_engine_set_lr(e, -1.0), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_backward_begin(e, &seed), ZERO_OK);
    CU_ASSERT_PTR_NOT_NULL(zero_param_grad(p));
    CU_ASSERT_EQUAL(zero_backward_begin(e, &seed), ZERO_ERR_STATE);            /* already open */
    CU_ASSERT_EQUAL(zero_grad_ready(e, p), ZERO_OK);
    CU_ASSERT_EQUAL(zero_grad_ready(e, p), ZERO_ERR_STATE);                    /* twice */
    CU_ASSERT_EQUAL(zero_grad_ready(e, foreign), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_step(e, &info), ZERO_ERR_STATE);                      /* backward not ended */
    CU_ASSERT_EQUAL(zero_backward_end(e), ZERO_OK);
    CU_ASSERT_EQUAL(zero_backward_end(e), ZERO_ERR_STATE);
    CU_ASSERT_EQUAL(zero_step(e, &info), ZERO_OK);
    CU_ASSERT_EQUAL(info.stepped, 1);
    CU_ASSERT_EQUAL(zero_engine_set_lr(e, 0.5), ZERO_OK);                      /* no scheduler: allowed */
    CU_ASSERT_EQUAL(zero_engine_lr_schedule_step(e), ZERO_ERR_STATE);          /* the engine steps it */
    CU_ASSERT_DOUBLE_EQUAL(zero_engine_lr(e), 0.5, 0.0);
    loud();
    zero_engine_destroy(e);
    zero_engine_destroy(other);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_bad_configs_and_stage3_rules(void)
{
    ZERO_TEST_MEM_MARK();
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON};
    zero_engine_h e = (zero_engine_h)0x1;
    zero_param_h p, v = NULL;
    zero_param_desc_t d = desc("w", ZERO_FP32, 300);
    float data[4], grad[4];
    quiet();
    ep.config_json = "{\"train_batch_size\": 1}";     /* no optimizer */
    CU_ASSERT_EQUAL(zero_engine_create(&ep, &e), ZERO_ERR_CONFIG);
    ep.config_json = "{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 5}}";
    CU_ASSERT_EQUAL(zero_engine_create(&ep, &e), ZERO_ERR_CONFIG);
    ep.field_mask |= ZERO_ENGINE_PARAM_FIELD_CONFIG_PATH;
    ep.config_path = "x.json";                          /* both sources */
    CU_ASSERT_EQUAL(zero_engine_create(&ep, &e), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_PTR_EQUAL(e, (zero_engine_h)0x1);
    loud();

    e = make_engine("{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
                    " \"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_num_steps\": 10}},"
                    " \"zero_optimization\": {\"stage\": 3, \"stage3_param_persistence_threshold\": 0}}");
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    quiet();
    {
        zero_param_desc_t vd = desc("view", ZERO_FP32, 4);
        vd.field_mask = ZERO_PARAM_FIELD_VIEW;
        vd.view_data = data;
        vd.view_grad = grad;
        CU_ASSERT_EQUAL(zero_param_register(e, &vd, &v), ZERO_ERR_UNSUPPORTED);   /* views are stages 0-2 */
        CU_ASSERT_PTR_NULL(v);
    }
    CU_ASSERT_EQUAL(zero_param_register(e, &d, &p), ZERO_OK);
    CU_ASSERT_EQUAL(zero_engine_setup(e), ZERO_OK);
    CU_ASSERT_PTR_NULL(zero_param_data(p));                                    /* not gathered */
    CU_ASSERT_EQUAL(zero_release(e, &p, 1), ZERO_ERR_STATE);                   /* not gathered */
    CU_ASSERT_EQUAL(zero_engine_set_lr(e, 0.1), ZERO_ERR_STATE);               /* the scheduler owns it */
    CU_ASSERT_EQUAL(zero_gather(e, &p, 1), ZERO_OK);
    CU_ASSERT_PTR_NOT_NULL(zero_param_data(p));
    {
        float seed;
        zero_step_info_t info;
        CU_ASSERT_EQUAL(zero_backward_begin(e, &seed), ZERO_OK);
        CU_ASSERT_EQUAL(zero_backward_end(e), ZERO_OK);
        CU_ASSERT_EQUAL(zero_step(e, &info), ZERO_ERR_STATE);                  /* still gathered */
    }
    loud();
    zero_engine_destroy(e);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* fp16 with hysteresis 2, window 3: the scale and skips follow DeepSpeed's
 * DynamicLossScaler; skipped steps count as global steps, do not move the
 * schedule and leave the weights alone. */
static void test_fp16_overflow_skips(void)
{
    ZERO_TEST_MEM_MARK();
    zero_engine_h e = make_engine(
        "{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
        " \"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_min_lr\": 0.001, \"warmup_max_lr\": 0.01,"
        " \"warmup_num_steps\": 10, \"warmup_type\": \"linear\"}},"
        " \"fp16\": {\"enabled\": true, \"initial_scale_power\": 10, \"loss_scale_window\": 3, \"hysteresis\": 2},"
        " \"zero_optimization\": {\"stage\": 2}}");
    zero_param_h p;
    zero_param_desc_t d = desc("w", ZERO_FP16, 8);
    /* overflow pattern over 9 boundaries, and the scale seen at each */
    static const int overflow[9] = {0, 1, 1, 0, 0, 0, 1, 0, 0};
    static const double scale_before[9] = {1024, 1024, 1024, 512, 512, 512, 1024, 1024, 1024};
    uint64_t expected_skipped = 0;
    double lr_seen[9];
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_EQUAL(zero_param_register(e, &d, &p), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
    quiet();
    for (int k = 0; k < 9; k++) {
        float seed;
        zero_step_info_t info;
        uint16_t before[8], *w = zero_param_data(p), *g;
        memcpy(before, w, sizeof(before));
        CU_ASSERT_EQUAL(zero_backward_begin(e, &seed), ZERO_OK);
        CU_ASSERT_DOUBLE_EQUAL(seed, scale_before[k], 0.0);
        g = zero_param_grad(p);
        for (int i = 0; i < 8; i++)
            g[i] = overflow[k] && i == 3 ? 0x7c00 /* +inf */ : 0x3c00 /* 1.0 */;
        CU_ASSERT_EQUAL(zero_backward_end(e), ZERO_OK);
        CU_ASSERT_EQUAL(zero_step(e, &info), ZERO_OK);
        expected_skipped += (uint64_t)overflow[k];
        CU_ASSERT_EQUAL(info.skipped, overflow[k]);
        CU_ASSERT_EQUAL(info.stepped, !overflow[k]);
        CU_ASSERT_DOUBLE_EQUAL(info.loss_scale, scale_before[k], 0.0);
        CU_ASSERT_EQUAL(info.global_steps, (uint64_t)k + 1);
        CU_ASSERT_EQUAL(zero_engine_skipped_steps(e), expected_skipped);
        lr_seen[k] = info.lr;
        if (overflow[k]) {
            CU_ASSERT_EQUAL(memcmp(before, w, sizeof(before)), 0);
        } else {
            CU_ASSERT_NOT_EQUAL(memcmp(before, w, sizeof(before)), 0);
        }
    }
    loud();
    /* The schedule advanced only on the 6 real updates: lr of update j (0-based) is
     * WarmupLR's value at last_batch_iteration j - 1 (j = 0: the initial lr). */
    {
        int j = 0;
        for (int k = 0; k < 9; k++) {
            if (overflow[k])
                continue;
            CU_ASSERT_DOUBLE_EQUAL(lr_seen[k], j == 0 ? 0.001 : 0.001 + 0.009 * (double)(j - 1) / 10.0, 1e-12);
            j++;
        }
    }
    zero_engine_destroy(e);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ZeRO++ qgZ at stage 3: an inf gradient still makes the step skip after the
 * quantized reduction (the codec makes its block NaN), a finite one steps; and
 * the same with qwZ on, so both quantized paths run in one engine. */
static void test_qgz_overflow_detected(void)
{
    for (int with_qwz = 0; with_qwz < 2; with_qwz++) {
        ZERO_TEST_MEM_MARK();
        char cfg[512];
        zero_engine_h e;
        zero_param_h p;
        zero_param_desc_t d = desc("w", ZERO_FP16, 600);
        snprintf(cfg, sizeof(cfg),
                 "{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
                 " \"fp16\": {\"enabled\": true, \"initial_scale_power\": 10},"
                 " \"zero_optimization\": {\"stage\": 3, \"stage3_param_persistence_threshold\": 0,"
                 " \"zero_quantized_gradients\": true, \"zero_quantized_weights\": %s}}",
                 with_qwz ? "true" : "false");
        e = make_engine(cfg);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        CU_ASSERT_EQUAL(zero_param_register(e, &d, &p), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
        quiet();
        for (int k = 0; k < 3; k++) {
            float seed;
            zero_step_info_t info;
            uint16_t *g;
            CU_ASSERT_EQUAL_FATAL(zero_gather(e, &p, 1), ZERO_OK);
            CU_ASSERT_EQUAL(zero_backward_begin(e, &seed), ZERO_OK);
            g = zero_param_grad(p);
            CU_ASSERT_PTR_NOT_NULL_FATAL(g);
            for (int i = 0; i < 600; i++)
                g[i] = k == 1 && i == 300 ? 0x7c00 /* +inf */ : 0x3c00 /* 1.0 */;
            CU_ASSERT_EQUAL(zero_grad_ready(e, p), ZERO_OK);
            CU_ASSERT_EQUAL(zero_backward_end(e), ZERO_OK);
            CU_ASSERT_EQUAL(zero_release(e, &p, 1), ZERO_OK);
            CU_ASSERT_EQUAL(zero_step(e, &info), ZERO_OK);
            CU_ASSERT_EQUAL(info.skipped, k == 1);
            CU_ASSERT_EQUAL(info.stepped, k != 1);
        }
        loud();
        zero_engine_destroy(e);
        ZERO_TEST_ASSERT_NO_LEAK();
    }
}

static void test_loss_scale_error_at_minimum(void)
{
    ZERO_TEST_MEM_MARK();
    zero_engine_h e = make_engine(
        "{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
        " \"fp16\": {\"enabled\": true, \"initial_scale_power\": 1, \"hysteresis\": 1, \"min_loss_scale\": 1},"
        " \"zero_optimization\": {\"stage\": 1}}");
    zero_param_h p;
    zero_param_desc_t d = desc("w", ZERO_FP16, 4);
    zero_status_t last = ZERO_OK;
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_EQUAL(zero_param_register(e, &d, &p), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
    quiet();
    for (int k = 0; k < 3 && last == ZERO_OK; k++) {   /* scale 2 -> 1 -> error */
        float seed;
        uint16_t *g;
        CU_ASSERT_EQUAL(zero_backward_begin(e, &seed), ZERO_OK);
        g = zero_param_grad(p);
        g[0] = 0x7e00;   /* NaN */
        CU_ASSERT_EQUAL(zero_backward_end(e), ZERO_OK);
        last = zero_step(e, NULL);
    }
    loud();
    CU_ASSERT_EQUAL(last, ZERO_ERR_LOSS_SCALE);
    zero_engine_destroy(e);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* Model-state bytes at a world of one: stage 0 with bf16 and AdamW holds
 * 2 (weights) + 2 (grads) + 4 (master) + 8 (moments) bytes per padded element. */
static void test_memory_accounting(void)
{
    ZERO_TEST_MEM_MARK();
    for (int stage = 0; stage <= 3; stage++) {
        char json[512];
        zero_engine_h e;
        zero_param_h p[2];
        zero_param_desc_t d0 = desc("a", ZERO_BF16, 1000), d1 = desc("b", ZERO_BF16, 100);
        zero_engine_memory_t m;
        size_t padded = 1024 + 128;   /* each parameter starts at a multiple of 64 elements */
        snprintf(json, sizeof(json),
                 "{\"train_batch_size\": 1, \"bf16\": {\"enabled\": true},"
                 " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
                 " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": 100000}}", stage);
        e = make_engine(json);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        CU_ASSERT_EQUAL(zero_param_register(e, &d0, &p[0]), ZERO_OK);
        CU_ASSERT_EQUAL(zero_param_register(e, &d1, &p[1]), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
        CU_ASSERT_EQUAL(zero_engine_memory(e, &m), ZERO_OK);
        CU_ASSERT_EQUAL(m.num_params, 1100);
        if (stage == 3)   /* one bucket per parameter: 1000 -> 1024, 100 -> 128 */
            padded = 1024 + 128;
        else              /* one bucket: b starts at 1024, ends at 1124 -> 1152 */
            padded = 1152;
        CU_ASSERT_EQUAL(m.params, 2 * padded);
        CU_ASSERT_EQUAL(m.grads, 2 * padded);   /* full (stages 0-1) or shard (2-3), in bf16 */
        CU_ASSERT_EQUAL(m.master, 4 * padded);
        CU_ASSERT_EQUAL(m.optim_state, 8 * padded);
        CU_ASSERT_EQUAL(m.buffers, 0);
        /* stage 3: both are under the default persistence threshold (1e5): their full weights are held */
        CU_ASSERT_EQUAL(m.persistent, stage == 3 ? 2 * padded : 0);
        /* bf16: the step's fp32 scratch (the owned range here is smaller than a piece), held from setup;
         * stage 2 also its gradient staging, backed at setup: one slot of the one bucket (bf16) */
        CU_ASSERT_EQUAL(m.pools, 4 * padded + (stage == 2 ? 2 * padded : 0));
        CU_ASSERT_TRUE(m.pools <= m.pools_bound);
        CU_ASSERT_EQUAL(m.total, m.params + m.grads + m.master + m.optim_state + m.persistent + m.pools);
        zero_engine_destroy(e);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* One micro-batch of three parameters in backward order, each gradient written
 * either before zero_grad_ready (right) or after it (the naive autograd
 * pre-hook). Returns the first error status (ZERO_OK if none), the step
 * included. */
static zero_status_t one_step_writes(zero_engine_h e, zero_param_h *p, int write_after_ready)
{
    float seed;
    zero_status_t status = zero_backward_begin(e, &seed);
    for (int i = 2; i >= 0 && status == ZERO_OK; i--) {
        float *g = zero_param_grad(p[i]);
        if (g == NULL)
            return ZERO_ERR_STATE;
        if (!write_after_ready)
            for (size_t k = 0; k < zero_param_numel(p[i]); k++)
                g[k] += seed * (0.01f * (float)(k % 7) + 0.001f * (float)i);
        status = zero_grad_ready(e, p[i]);
        if (write_after_ready && status == ZERO_OK)
            for (size_t k = 0; k < zero_param_numel(p[i]); k++)
                g[k] += seed * (0.01f * (float)(k % 7) + 0.001f * (float)i);
    }
    if (status == ZERO_OK)
        status = zero_backward_end(e);
    if (status == ZERO_OK)
        status = zero_step(e, NULL);
    return status;
}

static void test_late_gradient_writes_are_caught(void)
{
    ZERO_TEST_MEM_MARK();
    char json[512];
    for (int stage = 0; stage <= 3; stage++) {
        for (int naive = 0; naive <= 1; naive++) {
            /* stages 0-2: one bucket of three; stage 3: one per parameter, so a
             * late write to the last gradient of each bucket is what is caught */
            zero_engine_h e;
            zero_param_h p[3];
            zero_param_desc_t d[3] = {desc("w0", ZERO_FP32, 100), desc("w1", ZERO_FP32, 37),
                                      desc("w2", ZERO_FP32, 64)};
            zero_status_t status = ZERO_OK;
            snprintf(json, sizeof(json),
                     "{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
                     " \"zero_optimization\": {\"stage\": %d, \"check_grad_writes\": true}}", stage);
            e = make_engine(json);
            CU_ASSERT_PTR_NOT_NULL_FATAL(e);
            for (int i = 0; i < 3; i++)
                CU_ASSERT_EQUAL(zero_param_register(e, &d[i], &p[i]), ZERO_OK);
            CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
            if (naive)
                quiet();
            for (int step = 0; step < 3 && status == ZERO_OK; step++)
                status = one_step_writes(e, p, naive);
            loud();
            if (naive) {
                const char *msg = zero_engine_last_error(e);
                CU_ASSERT_EQUAL(status, ZERO_ERR_STATE);
                CU_ASSERT_PTR_NOT_NULL(strstr(msg, "changed after zero_grad_ready"));
                CU_ASSERT_PTR_NOT_NULL(strstr(msg, "register_hook"));
                /* stage 3 catches w2's write at w1's zero_grad_ready; stages 0-2 name the first changed in order */
                CU_ASSERT_PTR_NOT_NULL(strstr(msg, stage == 3 ? "gradient of w2 " : "gradient of w0 "));
                if (status != ZERO_ERR_STATE || strstr(msg, "changed after") == NULL)
                    fprintf(stderr, "stage %d: naive hook not caught: status %d, \"%s\"\n", stage, (int)status, msg);
            } else {
                CU_ASSERT_EQUAL(status, ZERO_OK);
                CU_ASSERT_EQUAL(zero_engine_global_steps(e), 3);
            }
            zero_engine_destroy(e);
        }
    }
#ifndef ZERO_BUILD_DEBUG
    {
        /* Off by default (outside debug builds): the naive pattern then goes unnoticed at stage 0. */
        zero_engine_h e = make_engine(CFG(0, ""));
        zero_param_h p[3];
        zero_param_desc_t d[3] = {desc("w0", ZERO_FP32, 10), desc("w1", ZERO_FP32, 10), desc("w2", ZERO_FP32, 10)};
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        for (int i = 0; i < 3; i++)
            CU_ASSERT_EQUAL(zero_param_register(e, &d[i], &p[i]), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
        CU_ASSERT_EQUAL(one_step_writes(e, p, 1), ZERO_OK);
        zero_engine_destroy(e);
    }
#endif
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_views_share_the_callers_buffer(void)
{
    ZERO_TEST_MEM_MARK();
    zero_engine_h e = make_engine(CFG(2, ""));
    float weights[30], grads[30];
    zero_param_h a, b;
    zero_param_desc_t da = desc("a", ZERO_FP32, 10), db = desc("b", ZERO_FP32, 20);
    float seed;
    for (int i = 0; i < 30; i++) {
        weights[i] = (float)i;   /* no init source: the view's content is the initial value */
        grads[i] = 0.0f;
    }
    da.field_mask = db.field_mask = ZERO_PARAM_FIELD_VIEW;
    da.view_data = weights;
    da.view_grad = grads;
    db.view_data = weights + 10;
    db.view_grad = grads + 10;
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_EQUAL(zero_param_register(e, &da, &a), ZERO_OK);
    CU_ASSERT_EQUAL(zero_param_register(e, &db, &b), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
    CU_ASSERT_PTR_EQUAL(zero_param_data(b), weights + 10);
    CU_ASSERT_EQUAL(weights[17], 17.0f);
    CU_ASSERT_EQUAL(zero_backward_begin(e, &seed), ZERO_OK);
    CU_ASSERT_PTR_EQUAL(zero_param_grad(b), grads + 10);
    for (int i = 0; i < 30; i++)
        grads[i] = 1.0f;
    CU_ASSERT_EQUAL(zero_backward_end(e), ZERO_OK);
    CU_ASSERT_EQUAL(zero_step(e, NULL), ZERO_OK);
    /* AdamW's first step (no weight decay) moves every weight by lr against the gradient's sign */
    for (int i = 0; i < 30; i++) {
        CU_ASSERT_DOUBLE_EQUAL(weights[i], (float)i - 0.01f, 1e-5);
        CU_ASSERT_EQUAL(grads[i], 0.0f);
    }
    zero_engine_destroy(e);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---- steady state: no allocation, bounded pools (issue 19) ---- */

#define SS_LAYERS 6
#define SS_BIG 4096    /* elements of a layer's weight: a multiple of 64, so no padding */
#define SS_SMALL 100   /* a layer's bias: under the persistence threshold at stage 3 (padded to 128) */

typedef enum { SS_WHOLE, SS_LAYERWISE } ss_mode_t;

/* One training step as a trainer does it: stage 3 gathers either the whole
 * model before the forward (and keeps it through the backward) or one layer
 * at a time (forward in order, backward in reverse); the backward fills each
 * gradient and marks it ready. Returns the number of failed calls. */
static int ss_step(zero_engine_h e, zero_param_h *h, ss_mode_t mode, zero_dtype_t dtype, zero_engine_memory_t *m)
{
    int bad = 0, n = 2 * SS_LAYERS;
    float seed;
    if (mode == SS_WHOLE) {
        bad += zero_gather(e, h, (size_t)n) != ZERO_OK;
        for (int i = 0; i < n; i++)
            bad += zero_param_data(h[i]) == NULL;
    } else {
        for (int l = 0; l < SS_LAYERS; l++) {
            bad += zero_gather(e, &h[2 * l], 2) != ZERO_OK;
            bad += zero_param_data(h[2 * l]) == NULL;
            bad += zero_release(e, &h[2 * l], 2) != ZERO_OK;
        }
    }
    bad += zero_backward_begin(e, &seed) != ZERO_OK;
    for (int l = SS_LAYERS - 1; l >= 0; l--) {
        if (mode == SS_LAYERWISE)
            bad += zero_gather(e, &h[2 * l], 2) != ZERO_OK;
        for (int q = 2 * l + 1; q >= 2 * l; q--) {
            void *g = zero_param_grad(h[q]);
            size_t numel = zero_param_numel(h[q]);
            if (g == NULL) {
                bad++;
                continue;
            }
            for (size_t k = 0; k < numel; k++) {
                if (dtype == ZERO_FP32)
                    ((float *)g)[k] = 1e-3f * seed;
                else
                    ((uint16_t *)g)[k] = 0x3a83;   /* bf16 1e-3 */
            }
            bad += zero_grad_ready(e, h[q]) != ZERO_OK;
        }
        if (mode == SS_LAYERWISE)
            bad += zero_release(e, &h[2 * l], 2) != ZERO_OK;
    }
    if (mode == SS_WHOLE)
        bad += zero_release(e, h, (size_t)n) != ZERO_OK;
    bad += zero_backward_end(e) != ZERO_OK;
    bad += zero_step(e, NULL) != ZERO_OK;
    bad += zero_engine_memory(e, m) != ZERO_OK;
    return bad;
}

/* After the first step, a step allocates no buffer (zero_mem_alloc is not
 * called: nothing is allocated and returned to the system per step) at any
 * stage, in both ways of using stage 3; the pools stay within the bound the
 * header documents, computed here from the config; and after zero_release of
 * everything, stage 3 holds the model state, the persistent parameters and
 * the pools, nothing more. */
static void test_steady_state_allocates_nothing(void)
{
    ZERO_TEST_MEM_MARK();
    static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16};
    for (int stage = 0; stage <= 3; stage++)
        for (int di = 0; di < 2; di++)
            for (int mode = SS_WHOLE; mode <= (stage == 3 ? SS_LAYERWISE : SS_WHOLE); mode++) {
                zero_dtype_t dtype = dtypes[di];
                size_t esz = zero_dtype_size(dtype);
                /* layerwise: room for three layers' weights live (one in use, two prefetched) */
                uint64_t max_live = mode == SS_LAYERWISE ? 3 * SS_BIG : 1000000000;
                char json[768];
                zero_engine_h e;
                zero_param_h h[2 * SS_LAYERS];
                zero_engine_memory_t m, first;
                uint64_t before, state, nonpersistent = (uint64_t)SS_LAYERS * SS_BIG * esz;
                uint64_t model = nonpersistent + (uint64_t)SS_LAYERS * 128 * esz, gather_cap, grad_cap;
                snprintf(json, sizeof(json),
                         "{\"train_batch_size\": 1, %s \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
                         " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": %d,"
                         " \"allgather_bucket_size\": %d, \"stage3_param_persistence_threshold\": 1000,"
                         " \"stage3_prefetch_bucket_size\": %d, \"stage3_max_live_parameters\": %llu}}",
                         dtype == ZERO_BF16 ? "\"bf16\": {\"enabled\": true}," : "", stage, 2 * SS_BIG, 2 * SS_BIG,
                         2 * SS_BIG, (unsigned long long)max_live);
                e = make_engine(json);
                CU_ASSERT_PTR_NOT_NULL_FATAL(e);
                for (int i = 0; i < 2 * SS_LAYERS; i++) {
                    char name[32];
                    zero_param_desc_t d = desc(name, dtype, i % 2 ? SS_SMALL : SS_BIG);
                    snprintf(name, sizeof(name), "layer%d.%s", i / 2, i % 2 ? "bias" : "weight");
                    CU_ASSERT_EQUAL(zero_param_register(e, &d, &h[i]), ZERO_OK);
                }
                CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
                /* step 1 records the order of gathers, prefetch starts in step 2 */
                CU_ASSERT_EQUAL(ss_step(e, h, (ss_mode_t)mode, dtype, &first), 0);
                CU_ASSERT_EQUAL(ss_step(e, h, (ss_mode_t)mode, dtype, &first), 0);
                for (int step = 2; step < 5; step++) {
                    before = zero_mem_alloc_count();
                    CU_ASSERT_EQUAL(ss_step(e, h, (ss_mode_t)mode, dtype, &m), 0);
                    if (zero_mem_alloc_count() != before)
                        fprintf(stderr, "stage %d %s mode %d step %d: %llu buffer allocations\n", stage,
                                zero_dtype_string(dtype), mode, step,
                                (unsigned long long)(zero_mem_alloc_count() - before));
                    CU_ASSERT_EQUAL(zero_mem_alloc_count(), before);
                    CU_ASSERT_EQUAL(m.pools, first.pools);   /* grown once, then reused */
                }
                state = m.params + m.grads + m.master + m.optim_state;
                CU_ASSERT_EQUAL(m.buffers, 0);   /* everything released, every reduction done */
                CU_ASSERT_EQUAL(m.total, state + m.persistent + m.pools);
                CU_ASSERT_TRUE(m.pools <= m.pools_bound);
                CU_ASSERT_TRUE(m.buffers_peak <= m.pools_bound);
                if (stage == 3) {
                    gather_cap = max_live * esz < nonpersistent ? max_live * esz : nonpersistent;
                    grad_cap = 3 * SS_BIG * esz > 2 * SS_BIG * esz ? 3 * SS_BIG * esz : 2 * SS_BIG * esz;
                    if (grad_cap > model)
                        grad_cap = model;
                    CU_ASSERT_EQUAL(m.persistent, (uint64_t)SS_LAYERS * 128 * esz);
                    /* the bound: the two pools plus the bf16 step scratch (all of the shard here) */
                    CU_ASSERT_EQUAL(m.pools_bound, gather_cap + grad_cap + (dtype == ZERO_BF16 ? 4 * model / esz : 0));
                    if (mode == SS_LAYERWISE)   /* three layers live at most, so the pool never took more */
                        CU_ASSERT_TRUE(m.pools - (dtype == ZERO_BF16 ? 4 * model / esz : 0) <=
                                       3 * SS_BIG * esz + grad_cap);
                    /* the weights the trainer sees after release: none outside persistent and pools */
                    for (int i = 0; i < 2 * SS_LAYERS; i++)
                        if (i % 2 == 0)
                            CU_ASSERT_PTR_NULL(zero_param_data(h[i]));
                }
                zero_engine_destroy(e);
            }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* A trainer that gathers more at once than stage3_max_live_parameters allows
 * still gets correct weights: what does not fit in the gather pool gets a
 * one-off buffer, freed again at release (memory back to state + pools). */
static void test_gather_beyond_the_pool(void)
{
    ZERO_TEST_MEM_MARK();
    char json[512];
    zero_engine_h e;
    zero_param_h h[4];
    static float init[4][SS_BIG];
    zero_engine_memory_t m;
    snprintf(json, sizeof(json),
             "{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
             " \"zero_optimization\": {\"stage\": 3, \"stage3_param_persistence_threshold\": 0,"
             " \"stage3_max_live_parameters\": %d}}", SS_BIG);
    e = make_engine(json);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    for (int i = 0; i < 4; i++) {
        char name[16];
        zero_param_desc_t d = desc(name, ZERO_FP32, SS_BIG);
        snprintf(name, sizeof(name), "w%d", i);
        for (int k = 0; k < SS_BIG; k++)
            init[i][k] = (float)(i * SS_BIG + k);
        d.field_mask = ZERO_PARAM_FIELD_INIT_VALUES;
        d.init_values = init[i];
        CU_ASSERT_EQUAL(zero_param_register(e, &d, &h[i]), ZERO_OK);
    }
    CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
    quiet();   /* the engine warns once about the one-off buffers */
    CU_ASSERT_EQUAL(zero_gather(e, h, 4), ZERO_OK);
    loud();
    CU_ASSERT_EQUAL(zero_engine_memory(e, &m), ZERO_OK);
    CU_ASSERT_EQUAL(m.pools, (uint64_t)SS_BIG * 4);    /* one parameter's worth: the pool's whole capacity */
    CU_ASSERT_EQUAL(m.buffers, (uint64_t)SS_BIG * 4 * 4);
    for (int i = 0; i < 4; i++) {
        const float *w = zero_param_data(h[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        CU_ASSERT_EQUAL(w[0], init[i][0]);
        CU_ASSERT_EQUAL(w[SS_BIG - 1], init[i][SS_BIG - 1]);
    }
    CU_ASSERT_EQUAL(zero_release(e, h, 4), ZERO_OK);
    CU_ASSERT_EQUAL(zero_engine_memory(e, &m), ZERO_OK);
    CU_ASSERT_EQUAL(m.buffers, 0);
    CU_ASSERT_EQUAL(m.total, m.params + m.grads + m.master + m.optim_state + m.persistent + m.pools);
    zero_engine_destroy(e);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---- sampler ---- */

static void test_sampler_covers_each_index_once(void)
{
    ZERO_TEST_MEM_MARK();
    for (int world = 1; world <= 4; world++)
        for (uint64_t n = 1; n <= 23; n += 11) {
            int *seen = calloc(n, sizeof(int));
            uint64_t total = 0;
            for (int r = 0; r < world; r++) {
                zero_sampler_params_t sp = {.num_samples = n, .batch_size = 3, .world_size = world, .rank = r,
                                            .seed = 9, .shuffle = 1, .drop_last = 0};
                zero_sampler_h s;
                uint64_t idx[3], epoch, batch;
                size_t cnt;
                CU_ASSERT_EQUAL_FATAL(zero_sampler_create(&sp, &s), ZERO_OK);
                for (uint64_t b = 0; b < zero_sampler_batches_per_epoch(s); b++) {
                    CU_ASSERT_EQUAL(zero_sampler_next(s, idx, &cnt, &epoch, &batch), ZERO_OK);
                    CU_ASSERT_EQUAL(epoch, 0);
                    CU_ASSERT_EQUAL(batch, b);
                    for (size_t k = 0; k < cnt; k++) {
                        CU_ASSERT_FATAL(idx[k] < n);
                        seen[idx[k]]++;
                    }
                    total += cnt;
                }
                zero_sampler_position(s, &epoch, &batch);
                CU_ASSERT_EQUAL(epoch, 1);
                CU_ASSERT_EQUAL(batch, 0);
                zero_sampler_destroy(s);
            }
            /* every index at least once; padding repeats only to make the split even */
            CU_ASSERT_EQUAL(total, (n + (uint64_t)world - 1) / (uint64_t)world * (uint64_t)world);
            for (uint64_t i = 0; i < n; i++)
                CU_ASSERT(seen[i] >= 1 && (uint64_t)seen[i] <= 1 + ((uint64_t)world > n ? (uint64_t)world : 1));
            free(seen);
        }
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_sampler_drop_last_and_epochs(void)
{
    ZERO_TEST_MEM_MARK();
    zero_sampler_params_t sp = {.num_samples = 10, .batch_size = 2, .world_size = 3, .rank = 1, .seed = 5,
                                .shuffle = 1, .drop_last = 1};
    zero_sampler_h s, t;
    uint64_t a[2], b[2], e0[2];
    size_t na, nb;
    CU_ASSERT_EQUAL_FATAL(zero_sampler_create(&sp, &s), ZERO_OK);
    CU_ASSERT_EQUAL(zero_sampler_batches_per_epoch(s), 1);   /* 10 / 3 = 3 per rank -> one batch of 2 */
    CU_ASSERT_EQUAL(zero_sampler_next(s, e0, &na, NULL, NULL), ZERO_OK);
    CU_ASSERT_EQUAL(na, 2);
    CU_ASSERT_EQUAL(zero_sampler_next(s, a, &na, NULL, NULL), ZERO_OK);   /* epoch 1: reshuffled */
    /* With seed 5 the epoch-1 permutation gives this rank other samples than
     * epoch 0 did (a sampler that forgot to reshuffle would repeat them). */
    CU_ASSERT(memcmp(a, e0, sizeof(a)) != 0);
    zero_sampler_destroy(s);
    /* the same (seed, epoch) gives the same order on a new sampler */
    CU_ASSERT_EQUAL_FATAL(zero_sampler_create(&sp, &t), ZERO_OK);
    CU_ASSERT_EQUAL(zero_sampler_next(t, b, &nb, NULL, NULL), ZERO_OK);
    CU_ASSERT_EQUAL(memcmp(b, e0, sizeof(b)), 0);
    zero_sampler_destroy(t);
    {
        zero_sampler_params_t bad = sp;
        zero_sampler_h x = (zero_sampler_h)0x1;
        quiet();
        bad.num_samples = 2;   /* drop_last with fewer samples than ranks x batch */
        CU_ASSERT_EQUAL(zero_sampler_create(&bad, &x), ZERO_ERR_INVALID_ARG);
        bad = sp;
        bad.rank = 3;
        CU_ASSERT_EQUAL(zero_sampler_create(&bad, &x), ZERO_ERR_INVALID_ARG);
        loud();
        CU_ASSERT_PTR_EQUAL(x, (zero_sampler_h)0x1);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_sampler_seek_matches_iteration(void)
{
    ZERO_TEST_MEM_MARK();
    zero_sampler_params_t sp = {.num_samples = 37, .batch_size = 4, .world_size = 2, .rank = 0, .seed = 77,
                                .shuffle = 1, .drop_last = 0};
    zero_sampler_h run, jump;
    uint64_t seq[60][4];
    size_t cnt[60];
    CU_ASSERT_EQUAL_FATAL(zero_sampler_create(&sp, &run), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_sampler_create(&sp, &jump), ZERO_OK);
    for (int k = 0; k < 60; k++)
        zero_sampler_next(run, seq[k], &cnt[k], NULL, NULL);
    /* 37 samples over 2 ranks: 19 each -> 5 batches an epoch, the last of 3 */
    CU_ASSERT_EQUAL(zero_sampler_batches_per_epoch(run), 5);
    CU_ASSERT_EQUAL(cnt[4], 3);
    for (int k = 0; k < 60; k += 7) {
        uint64_t idx[4];
        size_t c;
        CU_ASSERT_EQUAL(zero_sampler_seek(jump, (uint64_t)k), ZERO_OK);
        CU_ASSERT_EQUAL(zero_sampler_next(jump, idx, &c, NULL, NULL), ZERO_OK);
        CU_ASSERT_EQUAL(c, cnt[k]);
        CU_ASSERT_EQUAL(memcmp(idx, seq[k], c * sizeof(uint64_t)), 0);
    }
    zero_sampler_destroy(run);
    zero_sampler_destroy(jump);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_manual_schedule_and_memory_kind(void)
{
    ZERO_TEST_MEM_MARK();
    const char *json = "{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"SGD\", \"params\": {\"lr\": 0.1}},"
                       " \"scheduler\": {\"type\": \"LRRangeTest\", \"params\": {\"lr_range_test_min_lr\": 0.1,"
                       " \"lr_range_test_step_size\": 1, \"lr_range_test_step_rate\": 1.0}}}";
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON |
                                             ZERO_ENGINE_PARAM_FIELD_MANUAL_LR_SCHEDULE,
                               .config_json = json, .manual_lr_schedule = 1};
    zero_engine_h e = NULL, d = (zero_engine_h)0x1;
    zero_param_h p;
    zero_param_desc_t pd = desc("w", ZERO_FP32, 4);
    double lr0;
    CU_ASSERT_EQUAL_FATAL(zero_engine_create(&ep, &e), ZERO_OK);
    CU_ASSERT_EQUAL(zero_param_register(e, &pd, &p), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
    lr0 = zero_engine_lr(e);
    for (int k = 0; k < 3; k++) {   /* updates do not move a manual schedule */
        float seed;
        CU_ASSERT_EQUAL(zero_backward_begin(e, &seed), ZERO_OK);
        CU_ASSERT_EQUAL(zero_backward_end(e), ZERO_OK);
        CU_ASSERT_EQUAL(zero_step(e, NULL), ZERO_OK);
    }
    CU_ASSERT_DOUBLE_EQUAL(zero_engine_lr(e), lr0, 0.0);
    CU_ASSERT_EQUAL(zero_engine_lr_schedule_step(e), ZERO_OK);   /* e.g. once per epoch */
    CU_ASSERT(zero_engine_lr(e) > lr0);
    zero_engine_destroy(e);

    /* the device path is not in this version: refused, not downgraded */
    ep.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_MEM_KIND;
    ep.mem_kind = ZERO_MEM_DEVICE;
    quiet();
    CU_ASSERT_EQUAL(zero_engine_create(&ep, &d), ZERO_ERR_UNSUPPORTED);
    loud();
    CU_ASSERT_PTR_EQUAL(d, (zero_engine_h)0x1);
    /* pinned host memory: refused with its reason, not quietly taken as host memory */
    ep.mem_kind = ZERO_MEM_PINNED;
    quiet();
    CU_ASSERT_EQUAL(zero_engine_create(&ep, &d), ZERO_ERR_UNSUPPORTED);
    loud();
    CU_ASSERT_PTR_EQUAL(d, (zero_engine_h)0x1);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* A finite gradient whose norm exceeds FLT_MAX's square root (~1.8e19) is a
 * gradient, not an overflow: the step is applied and the norm reported. */
static void test_huge_finite_grad_norm(void)
{
    ZERO_TEST_MEM_MARK();
    for (int stage = 0; stage <= 1; stage++) {
        zero_engine_h e = make_engine(stage == 0 ? CFG(0, ", \"gradient_clipping\": 1.0")
                                                 : CFG(1, ", \"gradient_clipping\": 1.0"));
        zero_param_desc_t d = desc("w", ZERO_FP32, 4);
        zero_param_h p;
        zero_step_info_t info;
        float seed, *g, w0, *w;
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        CU_ASSERT_EQUAL(zero_param_register(e, &d, &p), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
        w = zero_param_data(p);
        w0 = w[0];
        CU_ASSERT_EQUAL(zero_backward_begin(e, &seed), ZERO_OK);
        g = zero_param_grad(p);
        CU_ASSERT_PTR_NOT_NULL_FATAL(g);
        for (int i = 0; i < 4; i++)
            g[i] = 1e19f;   /* squares 1e38 each: the sum 4e38 is above FLT_MAX */
        CU_ASSERT_EQUAL(zero_backward_end(e), ZERO_OK);
        CU_ASSERT_EQUAL(zero_step(e, &info), ZERO_OK);
        CU_ASSERT_EQUAL(info.stepped, 1);
        CU_ASSERT_EQUAL(info.skipped, 0);
        CU_ASSERT_EQUAL(zero_engine_skipped_steps(e), 0);
        CU_ASSERT(isfinite(info.grad_norm));
        CU_ASSERT_DOUBLE_EQUAL(info.grad_norm / 2e19, 1.0, 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(zero_engine_grad_norm(e) / 2e19, 1.0, 1e-6);
        CU_ASSERT(isfinite(w[0]) && w[0] != w0);   /* clipped to norm 1, then applied */
        zero_engine_destroy(e);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

typedef struct first_error {
    int count;
    char message[512];
} first_error_t;

static void keep_first_error(zero_log_level_t level, int rank, const char *module, const char *message, void *user)
{
    first_error_t *f = user;
    (void)rank;
    (void)module;
    if (level == ZERO_LOG_LEVEL_ERROR && f->count++ == 0)
        snprintf(f->message, sizeof(f->message), "%s", message);
}

/* The engine's last error is the message of the function that detected the
 * problem (here the checkpoint writer), not a paraphrase of it. */
static void test_last_error_is_the_detectors_message(void)
{
    ZERO_TEST_MEM_MARK();
    zero_engine_h e = make_engine(CFG(1, ""));
    zero_param_desc_t d = desc("w", ZERO_FP32, 8);
    zero_param_h p;
    first_error_t first = {0};
    char dir[] = "/tmp/zero_last_error_XXXXXX", file[64], want[sizeof(first.message) + 16];
    FILE *f;
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/not_a_dir", dir);
    f = fopen(file, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    CU_ASSERT_EQUAL(zero_param_register(e, &d, &p), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
    zero_log_set_callback(keep_first_error, &first);
    CU_ASSERT_NOT_EQUAL(zero_save_checkpoint(e, file, "t", NULL), ZERO_OK);   /* a file, not a directory */
    zero_log_set_callback(NULL, NULL);
    CU_ASSERT(first.count >= 1);
    CU_ASSERT(first.message[0] != '\0');
    /* a collective call's error names the rank that detected it, as every rank agreed on it */
    snprintf(want, sizeof(want), "rank 0: %s", first.message);
    CU_ASSERT_STRING_EQUAL(zero_engine_last_error(e), want);
    if (strcmp(zero_engine_last_error(e), want) != 0)
        fprintf(stderr, "\n  last error: '%s'\n  detected:   '%s'\n", zero_engine_last_error(e), want);
    zero_engine_destroy(e);
    unlink(file);
    rmdir(dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---- porting aids (issue 13): set-up warnings, accumulation check, memory_breakdown ---- */

typedef struct {
    int warnings, infos;
    char warning[8][1024];
    char info[16][1024];
} log_capture_t;

static void capture(zero_log_level_t level, int rank, const char *module, const char *message, void *user_data)
{
    log_capture_t *c = user_data;
    (void)rank;
    (void)module;
    if (level == ZERO_LOG_LEVEL_WARN && c->warnings < 8)
        snprintf(c->warning[c->warnings++], sizeof(c->warning[0]), "%s", message);
    else if (level == ZERO_LOG_LEVEL_INFO && c->infos < 16)
        snprintf(c->info[c->infos++], sizeof(c->info[0]), "%s", message);
}

/* Registers @p n parameters and sets up, capturing what the set-up logs. */
static void setup_captured(const char *json, zero_param_desc_t *descs, int n, log_capture_t *c)
{
    zero_engine_h e = make_engine(json);
    zero_param_h p;
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    memset(c, 0, sizeof(*c));
    zero_log_set_callback(capture, c);
    for (int i = 0; i < n; i++)
        CU_ASSERT_EQUAL(zero_param_register(e, &descs[i], &p), ZERO_OK);
    CU_ASSERT_EQUAL(zero_engine_setup(e), ZERO_OK);
    zero_log_set_callback(NULL, NULL);
    zero_engine_destroy(e);
}

static void test_setup_warnings(void)
{
    ZERO_TEST_MEM_MARK();
    log_capture_t c;
    uint16_t w16[64] = {0}, g16[64] = {0};
    float init[64] = {0};
    zero_param_desc_t two32[2] = {desc("a", ZERO_FP32, 64), desc("b", ZERO_FP32, 64)};
    zero_param_desc_t mixed[2] = {desc("a", ZERO_FP32, 64), desc("b", ZERO_BF16, 64)};
    zero_param_desc_t view[1] = {desc("embed", ZERO_BF16, 64)};

    loud();
    /* bf16 in the config, every parameter fp32: one warning naming both */
    setup_captured(CFG(1, ", \"bf16\": {\"enabled\": true}"), two32, 2, &c);
    CU_ASSERT_EQUAL(c.warnings, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.warning[0], "enables bf16 (bf16.enabled) but all 2 registered parameters are fp32"));
    /* one bf16 parameter among them: it trains in bf16, nothing to say */
    setup_captured(CFG(1, ", \"bf16\": {\"enabled\": true}"), mixed, 2, &c);
    CU_ASSERT_EQUAL(c.warnings, 0);
    /* fp32 config, fp32 parameters: nothing */
    setup_captured(CFG(1, ""), two32, 2, &c);
    CU_ASSERT_EQUAL(c.warnings, 0);

    /* a bf16 view without fp32 initial values: the master starts rounded */
    view[0].field_mask = ZERO_PARAM_FIELD_VIEW;
    view[0].view_data = w16;
    view[0].view_grad = g16;
    setup_captured(CFG(1, ", \"bf16\": {\"enabled\": true}"), view, 1, &c);
    CU_ASSERT_EQUAL(c.warnings, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.warning[0], "1 view with 16-bit weights and no fp32 initial values (first: embed)"));
    /* with them: nothing */
    view[0].field_mask |= ZERO_PARAM_FIELD_INIT_VALUES;
    view[0].init_values = init;
    setup_captured(CFG(1, ", \"bf16\": {\"enabled\": true}"), view, 1, &c);
    CU_ASSERT_EQUAL(c.warnings, 0);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* Stages 0-1 with accumulation: three windows of two micro-batches through
 * views; with @p zero_between the trainer zeroes its gradient buffer at the top
 * of every iteration. Returns the warnings logged (captured into *c). */
static void run_accumulation(int stage, int zero_between, log_capture_t *c)
{
    char json[512];
    float weights[256], grads[256];
    zero_param_desc_t d = desc("w", ZERO_FP32, 256);
    zero_param_h p;
    zero_engine_h e;
    snprintf(json, sizeof(json),
             "{\"train_batch_size\": 2, \"gradient_accumulation_steps\": 2,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
             " \"zero_optimization\": {\"stage\": %d}}", stage);
    e = make_engine(json);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    for (int i = 0; i < 256; i++)
        weights[i] = grads[i] = 0.0f;
    d.field_mask = ZERO_PARAM_FIELD_VIEW;
    d.view_data = weights;
    d.view_grad = grads;
    CU_ASSERT_EQUAL(zero_param_register(e, &d, &p), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
    memset(c, 0, sizeof(*c));
    zero_log_set_callback(capture, c);
    for (int micro = 0; micro < 6; micro++) {
        float seed;
        if (zero_between)
            memset(grads, 0, sizeof(grads));   /* the mistake: a zero_grad() per micro-batch */
        CU_ASSERT_EQUAL(zero_backward_begin(e, &seed), ZERO_OK);
        for (int i = 0; i < 256; i++)
            grads[i] += 1.0f;
        CU_ASSERT_EQUAL(zero_grad_ready(e, p), ZERO_OK);
        CU_ASSERT_EQUAL(zero_backward_end(e), ZERO_OK);
        CU_ASSERT_EQUAL(zero_step(e, NULL), ZERO_OK);
    }
    zero_log_set_callback(NULL, NULL);
    zero_engine_destroy(e);
}

static void test_accumulation_zeroing_warning(void)
{
    ZERO_TEST_MEM_MARK();
    log_capture_t c;
    loud();
    for (int stage = 0; stage <= 1; stage++) {
        run_accumulation(stage, 1, &c);
        CU_ASSERT_EQUAL(c.warnings, 1);   /* once, though it happened three times */
        CU_ASSERT_PTR_NOT_NULL(strstr(c.warning[0], "micro-batch 2 of 2: the accumulated gradients of 1 parameter "
                                                    "(first: w) were zeroed since the last zero_step"));
        run_accumulation(stage, 0, &c);
        CU_ASSERT_EQUAL(c.warnings, 0);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* memory_breakdown: true adds the memory lines to every progress line. */
static void test_memory_breakdown(void)
{
    ZERO_TEST_MEM_MARK();
    log_capture_t c;
    for (int on = 0; on <= 1; on++) {
        char json[512];
        zero_param_desc_t d = desc("w", ZERO_FP32, 262144);   /* 1 MiB of fp32 */
        zero_param_h p;
        zero_engine_h e;
        float seed;
        int memory_lines = 0, progress_lines = 0;
        snprintf(json, sizeof(json),
                 "{\"train_batch_size\": 1, \"steps_per_print\": 1, \"memory_breakdown\": %s,"
                 " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
                 " \"zero_optimization\": {\"stage\": 1}}", on ? "true" : "false");
        e = make_engine(json);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        CU_ASSERT_EQUAL(zero_param_register(e, &d, &p), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
        memset(&c, 0, sizeof(c));
        loud();
        zero_log_set_callback(capture, &c);
        for (int k = 0; k < 2; k++) {
            CU_ASSERT_EQUAL(zero_backward_begin(e, &seed), ZERO_OK);
            CU_ASSERT_EQUAL(zero_backward_end(e), ZERO_OK);
            CU_ASSERT_EQUAL(zero_step(e, NULL), ZERO_OK);
        }
        zero_log_set_callback(NULL, NULL);
        for (int i = 0; i < c.infos; i++) {
            if (strncmp(c.info[i], "step=", 5) == 0)
                progress_lines++;
            if (strncmp(c.info[i], "memory (MiB): engine params=1.00 grads=1.00 master=", 51) == 0) {
                memory_lines++;
                CU_ASSERT_PTR_NOT_NULL(strstr(c.info[i], "optim_state=2.00"));   /* AdamW's two moments */
                CU_ASSERT(i + 1 < c.infos && strncmp(c.info[i + 1], "memory (MiB): libzero host=", 27) == 0 &&
                          strstr(c.info[i + 1], "process rss=") != NULL);
            }
        }
        CU_ASSERT_EQUAL(progress_lines, 2);
        CU_ASSERT_EQUAL(memory_lines, on ? 2 : 0);
        if (memory_lines == 0 && on)
            for (int i = 0; i < c.infos; i++)
                printf("\n    logged: %s", c.info[i]);
        zero_engine_destroy(e);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

static CU_TestInfo engine_tests[] = {
    {"set-up warnings: 16-bit config with fp32 parameters, bare 16-bit views", test_setup_warnings},
    {"stages 0-1: gradients zeroed between micro-batches are warned of", test_accumulation_zeroing_warning},
    {"memory_breakdown prints memory with each progress line", test_memory_breakdown},
    {"manual LR schedule; memory kinds", test_manual_schedule_and_memory_kind},
    {"misuse is an error that changes nothing", test_misuse_is_an_error},
    {"bad configs; stage-3 rules", test_bad_configs_and_stage3_rules},
    {"fp16 overflow skips as DeepSpeed", test_fp16_overflow_skips},
    {"qgZ (and qwZ): an inf gradient still skips the step", test_qgz_overflow_detected},
    {"fp16 overflow at the minimum scale is an error", test_loss_scale_error_at_minimum},
    {"memory accounting per stage", test_memory_accounting},
    {"views share the caller's buffer", test_views_share_the_callers_buffer},
    {"late-write guard: a gradient written after zero_grad_ready", test_late_gradient_writes_are_caught},
    {"steady-state steps allocate nothing; pools bounded", test_steady_state_allocates_nothing},
    {"a gather beyond the pool gets one-off buffers", test_gather_beyond_the_pool},
    {"a finite gradient norm above 1.8e19 is not an overflow", test_huge_finite_grad_norm},
    {"last error: the detecting function's message", test_last_error_is_the_detectors_message},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo sampler_tests[] = {
    {"every index once per epoch across ranks", test_sampler_covers_each_index_once},
    {"drop_last, epochs, determinism, bad input", test_sampler_drop_last_and_epochs},
    {"seek equals iterating", test_sampler_seek_matches_iteration},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"engine", NULL, NULL, NULL, NULL, engine_tests},
    {"sampler", NULL, NULL, NULL, NULL, sampler_tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    return zero_test_main(argc, argv, suites);
}
