/*
 * The engine's operations table (lib/zero/engine_ops.h) and the optimizer
 * hyper-parameter mapping (lib/optim/optim_hparams.h): every host operation
 * gives the same bits as calling lib/optim's kernel directly, results come
 * back through the result record, and the config maps onto each optimizer's
 * kernel parameters with its values.
 */
#include "test_main.h"
#include "optim/lr_schedule.h"
#include "optim/optim_hparams.h"
#include "zero_build_config.h"
#include "util/alloc.h"
#include "util/half.h"
#include "zero/engine_ops.h"

#include <zero/zero.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Large enough for several 64 Ki-element chunks on two threads, and an odd tail. */
#define N ((size_t)3 * 65536 + 77)

typedef struct fixture {
    zero_thread_pool_t *pool;
    void *ctx;
    const engine_ops_t *ops;
    const zero_optim_ctx_t *direct;   /* the kernels the table wraps */
} fixture_t;

static void fixture_open(fixture_t *f)
{
    memset(f, 0, sizeof(*f));
    CU_ASSERT_EQUAL_FATAL(zero_thread_pool_create(2, &f->pool), ZERO_OK);
    f->ops = engine_ops_for_kind(ZERO_MEM_HOST);
    CU_ASSERT_PTR_EQUAL_FATAL(f->ops, &engine_ops_host);
    engine_ops_params_t params = {.pool = f->pool, .device = 0, .stream = NULL};
    CU_ASSERT_EQUAL_FATAL(f->ops->create(&params, &f->ctx), ZERO_OK);
    f->direct = engine_ops_host_optim(f->ctx);
}

static void fixture_close(fixture_t *f)
{
    f->ops->destroy(f->ctx);
    zero_thread_pool_destroy(f->pool);
}

static float *random_floats(size_t n, unsigned seed, float lo, float hi)
{
    float *x = zero_malloc(n * sizeof(float));
    srand(seed);
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * (float)rand() / (float)RAND_MAX;
    return x;
}

static float *copy_floats(const float *x, size_t n)
{
    float *y = zero_malloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static zero_config_t *parse(const char *json)
{
    zero_config_t *c = NULL;
    CU_ASSERT_EQUAL(zero_config_parse_string(json, strlen(json), 1, &c, NULL), ZERO_OK);
    return c;
}

/* Host memory has the host table; device memory the CUDA table exactly in a
 * build with the cuda feature (its host-side fields checked here, its
 * kernels by engine-device on a GPU); pinned memory none. */
static void test_tables_per_kind(void)
{
    const engine_ops_t *dev = engine_ops_for_kind(ZERO_MEM_DEVICE);
    CU_ASSERT_PTR_EQUAL(engine_ops_for_kind(ZERO_MEM_HOST), &engine_ops_host);
    CU_ASSERT_TRUE(engine_ops_host.host_readable);
    CU_ASSERT_PTR_NULL(engine_ops_host.order_begin);
    CU_ASSERT_PTR_EQUAL(dev, engine_ops_device());
    if (HAVE_CUDA) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(dev);
        CU_ASSERT_EQUAL(dev->kind, ZERO_MEM_DEVICE);
        CU_ASSERT_FALSE(dev->host_readable);
        CU_ASSERT_PTR_NOT_NULL(dev->order_begin);
        CU_ASSERT_PTR_NOT_NULL(dev->order_end);
        CU_ASSERT_PTR_NOT_NULL(dev->sync);
    } else {
        CU_ASSERT_PTR_NULL(dev);
    }
    CU_ASSERT_PTR_NULL(engine_ops_for_kind(ZERO_MEM_PINNED));
}

/* accumulate: fp32 adds; 16-bit sums are taken in fp32 and rounded once. */
static void test_accumulate(void)
{
    ZERO_TEST_MEM_MARK();
    fixture_t f;
    float *a = random_floats(N, 1, -4.0f, 4.0f), *b = random_floats(N, 2, -4.0f, 4.0f), *a0 = copy_floats(a, N);
    uint16_t *h = zero_malloc(N * sizeof(uint16_t)), *k = zero_malloc(N * sizeof(uint16_t));
    int bad = 0;
    fixture_open(&f);
    CU_ASSERT_EQUAL(f.ops->accumulate(f.ctx, ZERO_FP32, a, b, N), ZERO_OK);
    for (size_t i = 0; i < N; i++)
        bad += a[i] != a0[i] + b[i];
    CU_ASSERT_EQUAL(bad, 0);
    for (int t = 0; t < 2; t++) {
        zero_dtype_t dt = t == 0 ? ZERO_BF16 : ZERO_FP16;
        for (size_t i = 0; i < N; i++) {
            h[i] = dt == ZERO_BF16 ? zero_f32_to_bf16(a0[i]) : zero_f32_to_f16(a0[i]);
            k[i] = dt == ZERO_BF16 ? zero_f32_to_bf16(b[i]) : zero_f32_to_f16(b[i]);
        }
        CU_ASSERT_EQUAL(f.ops->accumulate(f.ctx, dt, h, k, N), ZERO_OK);
        bad = 0;
        for (size_t i = 0; i < N; i++) {
            float want = dt == ZERO_BF16 ? zero_bf16_to_f32(zero_f32_to_bf16(a0[i])) + zero_bf16_to_f32(k[i])
                                         : zero_f16_to_f32(zero_f32_to_f16(a0[i])) + zero_f16_to_f32(k[i]);
            bad += h[i] != (dt == ZERO_BF16 ? zero_f32_to_bf16(want) : zero_f32_to_f16(want));
        }
        CU_ASSERT_EQUAL(bad, 0);
    }
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);
    CU_ASSERT_EQUAL(f.ops->accumulate(f.ctx, ZERO_I64, a, b, 4), ZERO_ERR_INVALID_ARG);
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    fixture_close(&f);
    zero_free(a);
    zero_free(b);
    zero_free(a0);
    zero_free(h);
    zero_free(k);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_casts(void)
{
    ZERO_TEST_MEM_MARK();
    fixture_t f;
    float *x = random_floats(N, 3, -100.0f, 100.0f), *y1 = zero_malloc(N * sizeof(float)),
          *y2 = zero_malloc(N * sizeof(float));
    uint16_t *h1 = zero_malloc(N * sizeof(uint16_t)), *h2 = zero_malloc(N * sizeof(uint16_t));
    fixture_open(&f);
    for (int t = 0; t < 2; t++) {
        zero_dtype_t dt = t == 0 ? ZERO_BF16 : ZERO_FP16;
        CU_ASSERT_EQUAL(f.ops->to_16(f.ctx, dt, h1, x, N), ZERO_OK);
        CU_ASSERT_EQUAL(zero_optim_to_16(f.direct, zero_optim_w16_of(dt), h2, x, N), ZERO_OK);
        CU_ASSERT_EQUAL(memcmp(h1, h2, N * sizeof(uint16_t)), 0);
        CU_ASSERT_EQUAL(f.ops->from_16(f.ctx, dt, y1, h1, N), ZERO_OK);
        CU_ASSERT_EQUAL(zero_optim_from_16(f.direct, zero_optim_w16_of(dt), y2, h1, N), ZERO_OK);
        CU_ASSERT_EQUAL(memcmp(y1, y2, N * sizeof(float)), 0);
    }
    fixture_close(&f);
    zero_free(x);
    zero_free(y1);
    zero_free(y2);
    zero_free(h1);
    zero_free(h2);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* check_grads adds to the record, across calls, exactly what the direct kernels return. */
static void test_check_grads_and_result_record(void)
{
    ZERO_TEST_MEM_MARK();
    fixture_t f;
    float *g = random_floats(N, 4, -3.0f, 3.0f);
    double *record = NULL, host[ENGINE_RESULT_LAMB + 2] = {0};
    double sq1 = 0, sq2 = 0;
    size_t bad1 = 0, bad2 = 0, half = N / 2;
    fixture_open(&f);
    g[5] = INFINITY;
    g[N - 1] = NAN;
    CU_ASSERT_EQUAL_FATAL(f.ops->result_create(f.ctx, engine_result_slots(1), &record), ZERO_OK);
    CU_ASSERT_EQUAL(f.ops->result_clear(f.ctx, record, engine_result_slots(1)), ZERO_OK);
    CU_ASSERT_EQUAL(f.ops->check_grads(f.ctx, ZERO_FP32, g, half, record), ZERO_OK);
    CU_ASSERT_EQUAL(f.ops->check_grads(f.ctx, ZERO_FP32, g + half, N - half - 1, record), ZERO_OK);
    CU_ASSERT_EQUAL(f.ops->result_read(f.ctx, record, ENGINE_RESULT_NONFINITE, 2, host), ZERO_OK);
    zero_optim_count_nonfinite(f.direct, ZERO_FP32, g, half, &bad1);
    zero_optim_count_nonfinite(f.direct, ZERO_FP32, g + half, N - half - 1, &bad2);
    zero_optim_sum_squares(f.direct, ZERO_FP32, g, half, &sq1);
    zero_optim_sum_squares(f.direct, ZERO_FP32, g + half, N - half - 1, &sq2);
    CU_ASSERT_EQUAL(host[ENGINE_RESULT_NONFINITE], 1.0);
    CU_ASSERT_EQUAL(host[ENGINE_RESULT_NONFINITE], (double)bad1 + (double)bad2);
    CU_ASSERT_FALSE(isfinite(host[ENGINE_RESULT_SUM_SQUARES]));
    /* finite part: bit-equal to the direct sum, and the record stays double
     * (a sum above FLT_MAX is not rounded to inf) */
    g[5] = 3e19f;
    CU_ASSERT_EQUAL(f.ops->result_clear(f.ctx, record, engine_result_slots(1)), ZERO_OK);
    CU_ASSERT_EQUAL(f.ops->check_grads(f.ctx, ZERO_FP32, g, half, record), ZERO_OK);
    CU_ASSERT_EQUAL(f.ops->result_read(f.ctx, record, 0, 2, host), ZERO_OK);
    zero_optim_sum_squares(f.direct, ZERO_FP32, g, half, &sq1);
    CU_ASSERT_EQUAL(host[ENGINE_RESULT_NONFINITE], 0.0);
    CU_ASSERT_EQUAL(memcmp(&host[ENGINE_RESULT_SUM_SQUARES], &sq1, sizeof(double)), 0);
    CU_ASSERT_TRUE(isfinite(host[ENGINE_RESULT_SUM_SQUARES]) && host[ENGINE_RESULT_SUM_SQUARES] > 9e38);
    (void)sq2;
    /* 16-bit gradients too */
    {
        uint16_t *h = zero_malloc(half * sizeof(uint16_t));
        double sq = 0;
        size_t bad = 0;
        for (size_t i = 0; i < half; i++)
            h[i] = zero_f32_to_bf16(g[i + 10]);
        h[7] = 0x7f80;   /* bf16 inf */
        f.ops->result_clear(f.ctx, record, 2);
        CU_ASSERT_EQUAL(f.ops->check_grads(f.ctx, ZERO_BF16, h, half, record), ZERO_OK);
        f.ops->result_read(f.ctx, record, 0, 2, host);
        zero_optim_count_nonfinite(f.direct, ZERO_BF16, h, half, &bad);
        zero_optim_sum_squares(f.direct, ZERO_BF16, h, half, &sq);
        CU_ASSERT_EQUAL(host[0], (double)bad);
        CU_ASSERT_EQUAL(bad, 1);
        CU_ASSERT_FALSE(isfinite(host[1]));
        zero_free(h);
    }
    f.ops->result_destroy(f.ctx, record);
    fixture_close(&f);
    zero_free(g);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_unscale_clip(void)
{
    fixture_t f;
    double norm;
    float scale;
    fixture_open(&f);
    /* sum of squares 400 at loss scale 4: norm 20 / 4 = 5; clipping to 1 */
    f.ops->unscale_clip(f.ctx, 400.0, 4.0, 1.0, &norm, &scale);
    CU_ASSERT_EQUAL(norm, 5.0);
    CU_ASSERT_EQUAL(scale, (float)(zero_optim_clip_coef(5.0, 1.0) / 4.0));
    CU_ASSERT(fabsf(scale - 0.05f) < 1e-6f);
    /* no clipping (max 0, or the norm below it): just the unscale */
    f.ops->unscale_clip(f.ctx, 400.0, 4.0, 0.0, &norm, &scale);
    CU_ASSERT_EQUAL(scale, 0.25f);
    f.ops->unscale_clip(f.ctx, 400.0, 4.0, 100.0, &norm, &scale);
    CU_ASSERT_EQUAL(scale, 0.25f);
    fixture_close(&f);
}

/* One optimizer through the table and directly, from the same state: same bits in w, s1, s2 and w16. */
static void compare_step(fixture_t *f, const zero_optim_hparams_t *hp, int with_w16)
{
    float *w = random_floats(N, 10, -1.0f, 1.0f), *g = random_floats(N, 11, -0.1f, 0.1f);
    float *s1 = random_floats(N, 12, -0.01f, 0.01f), *s2 = random_floats(N, 13, 0.0f, 0.001f);
    float *w_b = copy_floats(w, N), *s1_b = copy_floats(s1, N), *s2_b = copy_floats(s2, N);
    uint16_t *h = zero_calloc(N, sizeof(uint16_t)), *h_b = zero_calloc(N, sizeof(uint16_t));
    zero_optim_slice_t a = {w, g, s1, s2, with_w16 ? h : NULL, with_w16 ? ZERO_OPTIM_W16_BF16 : ZERO_OPTIM_W16_NONE, N};
    zero_optim_slice_t b = {w_b, g, s1_b, s2_b, with_w16 ? h_b : NULL, a.w16_type, N};
    zero_status_t direct;
    CU_ASSERT_EQUAL(f->ops->optimizer_step(f->ctx, hp, &a), ZERO_OK);
    switch (hp->kind) {
    case ZERO_OPTIM_KIND_ADAM:    direct = zero_optim_adam_step(f->direct, &hp->adam, &b); break;
    case ZERO_OPTIM_KIND_SGD:     direct = zero_optim_sgd_step(f->direct, &hp->sgd, &b); break;
    case ZERO_OPTIM_KIND_ADAGRAD: direct = zero_optim_adagrad_step(f->direct, &hp->adagrad, &b); break;
    case ZERO_OPTIM_KIND_LION:    direct = zero_optim_lion_step(f->direct, &hp->lion, &b); break;
    default:                      direct = ZERO_ERR_INVALID_ARG; break;
    }
    CU_ASSERT_EQUAL(direct, ZERO_OK);
    CU_ASSERT_EQUAL(memcmp(w, w_b, N * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(s1, s1_b, N * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(s2, s2_b, N * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(h, h_b, N * sizeof(uint16_t)), 0);
    /* and the step did something */
    {
        float *w0 = random_floats(N, 10, -1.0f, 1.0f);
        CU_ASSERT_NOT_EQUAL(memcmp(w, w0, N * sizeof(float)), 0);
        zero_free(w0);
    }
    zero_free(w);
    zero_free(g);
    zero_free(s1);
    zero_free(s2);
    zero_free(w_b);
    zero_free(s1_b);
    zero_free(s2_b);
    zero_free(h);
    zero_free(h_b);
}

#define OPT(type, params) \
    "{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"" type "\", \"params\": {" params "}}}"

static void test_optimizer_steps_equal_direct_kernels(void)
{
    ZERO_TEST_MEM_MARK();
    static const char *const configs[] = {
        OPT("Adam", "\"lr\": 0.01, \"weight_decay\": 0.1, \"adam_w_mode\": false"),
        OPT("AdamW", "\"lr\": 0.002, \"betas\": [0.8, 0.95], \"eps\": 1e-6, \"weight_decay\": 0.01"),
        OPT("SGD", "\"lr\": 0.1, \"momentum\": 0.9, \"nesterov\": true, \"weight_decay\": 0.001"),
        OPT("SGD", "\"lr\": 0.1, \"momentum\": 0.9, \"dampening\": 0.1"),
        OPT("Adagrad", "\"lr\": 0.05, \"eps\": 1e-8, \"weight_decay\": 0.01"),
        OPT("Lion", "\"lr\": 0.0003, \"betas\": [0.9, 0.99], \"weight_decay\": 0.1"),
    };
    fixture_t f;
    fixture_open(&f);
    for (size_t c = 0; c < sizeof(configs) / sizeof(configs[0]); c++) {
        zero_config_t *cfg = parse(configs[c]);
        zero_optim_hparams_t base, hp;
        zero_optim_step_values_t v = {.lr = 0.004, .step = 3, .grad_scale = 0.5f, .decay = 1};
        CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
        CU_ASSERT_EQUAL_FATAL(zero_optim_hparams_from_config(&cfg->optimizer, &base), ZERO_OK);
        hp = zero_optim_hparams_for_step(&base, &v);
        compare_step(&f, &hp, 0);
        compare_step(&f, &hp, 1);
        v.decay = 0;
        v.momentum_cycled = 1;
        v.momentum = 0.85;
        hp = zero_optim_hparams_for_step(&base, &v);
        compare_step(&f, &hp, 1);
        zero_config_destroy(cfg);
    }
    fixture_close(&f);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* Lamb's two phases: the table's phase 1 adds the norms into the record slots;
 * phase 2 with those sums equals the direct two-phase call on one segment. */
static void test_lamb_phases_equal_direct_kernels(void)
{
    ZERO_TEST_MEM_MARK();
    fixture_t f;
    zero_config_t *cfg = parse(OPT("Lamb", "\"lr\": 0.01, \"weight_decay\": 0.01, \"max_coeff\": 5.0"));
    zero_optim_hparams_t base, hp;
    zero_optim_step_values_t v = {.lr = 0.01, .step = 2, .grad_scale = 1.0f, .decay = 1};
    float *w = random_floats(N, 20, -1.0f, 1.0f), *g = random_floats(N, 21, -0.1f, 0.1f);
    float *s1 = random_floats(N, 22, -0.01f, 0.01f), *s2 = random_floats(N, 23, 0.0f, 0.001f);
    float *w_b = copy_floats(w, N), *s1_b = copy_floats(s1, N), *s2_b = copy_floats(s2, N);
    zero_optim_slice_t a = {w, g, s1, s2, NULL, ZERO_OPTIM_W16_NONE, N}, b = {w_b, g, s1_b, s2_b, NULL, 0, N};
    zero_optim_segment_t seg = {0, N};
    double *record = NULL, host[2], wsq = 0, usq = 0;
    fixture_open(&f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL_FATAL(zero_optim_hparams_from_config(&cfg->optimizer, &base), ZERO_OK);
    CU_ASSERT_EQUAL(base.kind, ZERO_OPTIM_KIND_LAMB);
    CU_ASSERT_EQUAL(base.lamb.max_coeff, 5.0f);
    hp = zero_optim_hparams_for_step(&base, &v);
    CU_ASSERT_EQUAL_FATAL(f.ops->result_create(f.ctx, engine_result_slots(3), &record), ZERO_OK);
    f.ops->result_clear(f.ctx, record, engine_result_slots(3));
    /* parameter 2 of 3: slots LAMB + 4, LAMB + 5 */
    CU_ASSERT_EQUAL(f.ops->lamb_phase1(f.ctx, &hp, &a, record, ENGINE_RESULT_LAMB + 4), ZERO_OK);
    CU_ASSERT_EQUAL(zero_optim_lamb_phase1(f.direct, &hp.lamb, &b, &seg, 1, &wsq, &usq), ZERO_OK);
    CU_ASSERT_EQUAL(f.ops->result_read(f.ctx, record, ENGINE_RESULT_LAMB + 4, 2, host), ZERO_OK);
    CU_ASSERT_EQUAL(memcmp(&host[0], &wsq, sizeof(double)), 0);
    CU_ASSERT_EQUAL(memcmp(&host[1], &usq, sizeof(double)), 0);
    CU_ASSERT(wsq > 0.0 && usq > 0.0);
    CU_ASSERT_EQUAL(f.ops->result_read(f.ctx, record, ENGINE_RESULT_LAMB, 2, host), ZERO_OK);
    CU_ASSERT_EQUAL(host[0], 0.0);   /* other parameters' slots untouched */
    CU_ASSERT_EQUAL(memcmp(s1, s1_b, N * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(s2, s2_b, N * sizeof(float)), 0);
    a.g = b.g = NULL;
    CU_ASSERT_EQUAL(f.ops->lamb_phase2(f.ctx, &hp, &a, wsq, usq), ZERO_OK);
    CU_ASSERT_EQUAL(zero_optim_lamb_phase2(f.direct, &hp.lamb, &b, &seg, 1, &wsq, &usq, NULL), ZERO_OK);
    CU_ASSERT_EQUAL(memcmp(w, w_b, N * sizeof(float)), 0);
    /* Lamb has no elementwise step */
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);
    CU_ASSERT_EQUAL(f.ops->optimizer_step(f.ctx, &hp, &a), ZERO_ERR_INVALID_ARG);
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    f.ops->result_destroy(f.ctx, record);
    fixture_close(&f);
    zero_config_destroy(cfg);
    zero_free(w);
    zero_free(g);
    zero_free(s1);
    zero_free(s2);
    zero_free(w_b);
    zero_free(s1_b);
    zero_free(s2_b);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* The mapping: config values land in the right kernel fields; per-step values
 * and the decay switch override them; a cycled momentum drives beta1 (and
 * Adam's beta2 becomes OneCycle's). */
static void test_hparams_mapping(void)
{
    zero_config_t *c = parse(OPT("AdamW", "\"lr\": 0.002, \"betas\": [0.8, 0.95], \"eps\": 1e-6, "
                                          "\"weight_decay\": 0.01, \"bias_correction\": false"));
    zero_optim_hparams_t base, hp;
    zero_optim_step_values_t v = {.lr = 0.5, .step = 7, .grad_scale = 0.25f, .decay = 1};
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL_FATAL(zero_optim_hparams_from_config(&c->optimizer, &base), ZERO_OK);
    CU_ASSERT_EQUAL(base.kind, ZERO_OPTIM_KIND_ADAM);
    CU_ASSERT_EQUAL(base.adam.lr, 0.002f);
    CU_ASSERT_EQUAL(base.adam.beta1, 0.8f);
    CU_ASSERT_EQUAL(base.adam.beta2, 0.95f);
    CU_ASSERT_EQUAL(base.adam.eps, 1e-6f);
    CU_ASSERT_EQUAL(base.adam.weight_decay, 0.01f);
    CU_ASSERT_EQUAL(base.adam.adam_w_mode, 1);
    CU_ASSERT_EQUAL(base.adam.bias_correction, 0);
    CU_ASSERT_EQUAL(zero_optim_hparams_num_states(&base), 2);
    hp = zero_optim_hparams_for_step(&base, &v);
    CU_ASSERT_EQUAL(hp.adam.lr, 0.5f);
    CU_ASSERT_EQUAL(hp.adam.step, 7);
    CU_ASSERT_EQUAL(hp.adam.grad_scale, 0.25f);
    CU_ASSERT_EQUAL(hp.adam.weight_decay, 0.01f);
    CU_ASSERT_EQUAL(base.adam.lr, 0.002f);   /* the base is untouched */
    v.decay = 0;
    v.momentum_cycled = 1;
    v.momentum = 0.7;
    hp = zero_optim_hparams_for_step(&base, &v);
    CU_ASSERT_EQUAL(hp.adam.weight_decay, 0.0f);
    CU_ASSERT_EQUAL(hp.adam.beta1, 0.7f);
    CU_ASSERT_EQUAL(hp.adam.beta2, (float)ZERO_LR_ONECYCLE_BETA2);
    zero_config_destroy(c);

    c = parse(OPT("SGD", "\"lr\": 0.1, \"momentum\": 0.9, \"dampening\": 0.0, \"nesterov\": true"));
    CU_ASSERT_EQUAL_FATAL(zero_optim_hparams_from_config(&c->optimizer, &base), ZERO_OK);
    CU_ASSERT_EQUAL(base.kind, ZERO_OPTIM_KIND_SGD);
    CU_ASSERT_EQUAL(base.sgd.momentum, 0.9f);
    CU_ASSERT_EQUAL(base.sgd.nesterov, 1);
    CU_ASSERT_EQUAL(zero_optim_hparams_num_states(&base), 1);
    hp = zero_optim_hparams_for_step(&base, &v);
    CU_ASSERT_EQUAL(hp.sgd.momentum, 0.7f);
    zero_config_destroy(c);
    c = parse(OPT("SGD", "\"lr\": 0.1"));
    CU_ASSERT_EQUAL_FATAL(zero_optim_hparams_from_config(&c->optimizer, &base), ZERO_OK);
    CU_ASSERT_EQUAL(zero_optim_hparams_num_states(&base), 0);
    zero_config_destroy(c);

    c = parse(OPT("Adagrad", "\"lr\": 0.05"));
    CU_ASSERT_EQUAL_FATAL(zero_optim_hparams_from_config(&c->optimizer, &base), ZERO_OK);
    CU_ASSERT_EQUAL(base.kind, ZERO_OPTIM_KIND_ADAGRAD);
    CU_ASSERT_EQUAL(base.adagrad.initial_accumulator_value, 0.0f);
    CU_ASSERT_EQUAL(zero_optim_hparams_num_states(&base), 1);
    zero_config_destroy(c);

    c = parse(OPT("Lion", "\"lr\": 0.0003, \"betas\": [0.9, 0.98]"));
    CU_ASSERT_EQUAL_FATAL(zero_optim_hparams_from_config(&c->optimizer, &base), ZERO_OK);
    CU_ASSERT_EQUAL(base.kind, ZERO_OPTIM_KIND_LION);
    CU_ASSERT_EQUAL(base.lion.beta2, 0.98f);
    hp = zero_optim_hparams_for_step(&base, &v);
    CU_ASSERT_EQUAL(hp.lion.beta1, 0.7f);
    CU_ASSERT_EQUAL(hp.lion.beta2, 0.98f);
    zero_config_destroy(c);

    c = parse(OPT("Lamb", "\"lr\": 0.01, \"betas\": [0.9, 0.99]"));
    CU_ASSERT_EQUAL_FATAL(zero_optim_hparams_from_config(&c->optimizer, &base), ZERO_OK);
    hp = zero_optim_hparams_for_step(&base, &v);
    CU_ASSERT_EQUAL(hp.lamb.beta1, 0.9f);   /* Lamb keeps its betas under a cycled momentum */
    CU_ASSERT_EQUAL(zero_optim_hparams_num_states(&base), 2);
    zero_config_destroy(c);

    /* no optimizer block: a clear error */
    c = parse("{\"train_batch_size\": 1}");
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);
    CU_ASSERT_EQUAL(zero_optim_hparams_from_config(&c->optimizer, &base), ZERO_ERR_UNSUPPORTED);
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    zero_config_destroy(c);
}

/* Adagrad's accumulator starts at initial_accumulator_value; the others' state at 0. */
static void test_init_state(void)
{
    fixture_t f;
    zero_optim_hparams_t hp;
    float s[130];
    memset(&hp, 0, sizeof(hp));
    fixture_open(&f);
    hp.kind = ZERO_OPTIM_KIND_ADAGRAD;
    hp.adagrad.initial_accumulator_value = 0.25f;
    memset(s, 0, sizeof(s));
    CU_ASSERT_EQUAL(f.ops->init_state(f.ctx, &hp, s, 130), ZERO_OK);
    CU_ASSERT_EQUAL(s[0], 0.25f);
    CU_ASSERT_EQUAL(s[129], 0.25f);
    hp.kind = ZERO_OPTIM_KIND_ADAM;
    memset(s, 0, sizeof(s));
    CU_ASSERT_EQUAL(f.ops->init_state(f.ctx, &hp, s, 130), ZERO_OK);
    CU_ASSERT_EQUAL(s[0], 0.0f);
    fixture_close(&f);
}

int main(int argc, char **argv)
{
    CU_TestInfo tests[] = {
        {"a table per memory kind (device: builds with cuda)", test_tables_per_kind},
        {"accumulate", test_accumulate},
        {"casts fp32 <-> bf16/fp16 equal the direct kernels", test_casts},
        {"check_grads into the result record equals the direct kernels", test_check_grads_and_result_record},
        {"unscale and clip", test_unscale_clip},
        {"optimizer steps equal the direct kernels", test_optimizer_steps_equal_direct_kernels},
        {"Lamb phases equal the direct kernels", test_lamb_phases_equal_direct_kernels},
        {"hyper-parameter mapping from the config", test_hparams_mapping},
        {"initial optimizer state", test_init_state},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"engine-ops", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return zero_test_main(argc, argv, suites);
}
