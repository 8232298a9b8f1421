/*
 * lib/optim kernels: every SIMD level against the C reference (bit for bit
 * for the elementwise kernels, 1e-12 relative for the double sums), the
 * reference against a double-precision formula over a few steps, threaded
 * against single-threaded (bit for bit), the helpers, and bad calls.
 * With --bench it times every kernel at every level instead (checkasm style).
 */
#include "test_main.h"
#include "util/clock.h"
#include "optim/optim.h"
#include "util/half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- test utilities ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float rnd_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rnd_u32() & 0xffffff) / 16777216.0f;
}

static void fill(float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = rnd_uniform(lo, hi);
}

static int bits_equal(const void *a, const void *b, size_t bytes)
{
    return bytes == 0 || memcmp(a, b, bytes) == 0;
}

/* The levels this CPU has, above the reference. */
static int simd_levels(zero_optim_isa_t *levels)
{
    int count = 0;
    zero_optim_isa_t best = zero_optim_isa_detect();
    for (int isa = ZERO_OPTIM_ISA_AVX2; isa <= (int)best; isa++)
        levels[count++] = (zero_optim_isa_t)isa;
    return count;
}

static const size_t lengths[] = {0, 1, 7, 15, 16, 17, 31, 33, 1000, 65537};
#define NLENGTHS (sizeof(lengths) / sizeof(lengths[0]))
static const size_t offsets[] = {0, 1, 3};
#define MAXN (65537 + 8)

/* Five float arrays and a 16-bit one for each of two runs (reference, SIMD). */
typedef struct bufs {
    float *w, *g, *s1, *s2;
    uint16_t *h;
} bufs_t;

static void bufs_alloc(bufs_t *b)
{
    b->w = malloc(MAXN * sizeof(float));
    b->g = malloc(MAXN * sizeof(float));
    b->s1 = malloc(MAXN * sizeof(float));
    b->s2 = malloc(MAXN * sizeof(float));
    b->h = malloc(MAXN * sizeof(uint16_t));
    CU_ASSERT_FATAL(b->w && b->g && b->s1 && b->s2 && b->h);
}

static void bufs_free(bufs_t *b)
{
    free(b->w);
    free(b->g);
    free(b->s1);
    free(b->s2);
    free(b->h);
}

static void bufs_random(bufs_t *b)
{
    fill(b->w, MAXN, -1.0f, 1.0f);
    fill(b->g, MAXN, -1.0f, 1.0f);
    fill(b->s1, MAXN, -0.1f, 0.1f);
    fill(b->s2, MAXN, 0.0f, 0.01f);
    memset(b->h, 0xab, MAXN * sizeof(uint16_t));
}

static void bufs_copy(bufs_t *dst, const bufs_t *src)
{
    memcpy(dst->w, src->w, MAXN * sizeof(float));
    memcpy(dst->g, src->g, MAXN * sizeof(float));
    memcpy(dst->s1, src->s1, MAXN * sizeof(float));
    memcpy(dst->s2, src->s2, MAXN * sizeof(float));
    memcpy(dst->h, src->h, MAXN * sizeof(uint16_t));
}

static zero_optim_slice_t slice_of(bufs_t *b, size_t off, size_t n, zero_optim_w16_t t)
{
    zero_optim_slice_t s = {b->w + off, b->g + off, b->s1 + off, b->s2 + off, b->h + off, t, n};
    return s;
}

/* Whole buffers compared, so writes outside the slice are caught too. */
static int bufs_equal(const bufs_t *a, const bufs_t *b)
{
    return bits_equal(a->w, b->w, MAXN * sizeof(float)) && bits_equal(a->g, b->g, MAXN * sizeof(float)) &&
           bits_equal(a->s1, b->s1, MAXN * sizeof(float)) && bits_equal(a->s2, b->s2, MAXN * sizeof(float)) &&
           bits_equal(a->h, b->h, MAXN * sizeof(uint16_t));
}

/* One kernel invocation, parameterised by variant. */
typedef zero_status_t (*run_fn)(const zero_optim_ctx_t *ctx, int variant, const zero_optim_slice_t *s);

static zero_status_t run_adam(const zero_optim_ctx_t *ctx, int variant, const zero_optim_slice_t *s)
{
    zero_optim_adam_params_t p;
    zero_optim_adam_defaults(&p);
    p.lr = 1e-2f;
    p.adam_w_mode = variant & 1;
    p.bias_correction = (variant >> 1) & 1;
    p.weight_decay = (variant & 4) ? 0.01f : 0.0f;
    p.step = 3;
    p.grad_scale = 0.5f;
    return zero_optim_adam_step(ctx, &p, s);
}

/* run_adam's step with a fused second gradient addend. */
static zero_status_t run_adam_fused(const zero_optim_ctx_t *ctx, int variant, const zero_optim_slice_t *s,
                                    const float *g_add)
{
    zero_optim_adam_params_t p;
    zero_optim_adam_defaults(&p);
    p.lr = 1e-2f;
    p.adam_w_mode = variant & 1;
    p.bias_correction = (variant >> 1) & 1;
    p.weight_decay = (variant & 4) ? 0.01f : 0.0f;
    p.step = 3;
    p.grad_scale = 0.5f;
    return zero_optim_adam_step_fused(ctx, &p, s, g_add);
}

static zero_status_t run_sgd(const zero_optim_ctx_t *ctx, int variant, const zero_optim_slice_t *s)
{
    zero_optim_sgd_params_t p;
    zero_optim_sgd_defaults(&p);
    p.lr = 0.05f;
    p.momentum = (variant & 1) ? 0.9f : 0.0f;
    p.nesterov = (variant & 1) && (variant & 2);
    p.dampening = (variant & 1) && !(variant & 2) ? 0.1f : 0.0f;
    p.weight_decay = (variant & 4) ? 1e-3f : 0.0f;
    p.step = (variant & 8) ? 1 : 4;
    p.grad_scale = 0.25f;
    return zero_optim_sgd_step(ctx, &p, s);
}

static zero_status_t run_adagrad(const zero_optim_ctx_t *ctx, int variant, const zero_optim_slice_t *s)
{
    zero_optim_adagrad_params_t p;
    zero_optim_adagrad_defaults(&p);
    p.lr = 0.1f;
    p.lr_decay = (variant & 1) ? 0.01f : 0.0f;
    p.weight_decay = (variant & 2) ? 1e-2f : 0.0f;
    p.step = 5;
    p.grad_scale = 2.0f;
    return zero_optim_adagrad_step(ctx, &p, s);
}

static zero_status_t run_lion(const zero_optim_ctx_t *ctx, int variant, const zero_optim_slice_t *s)
{
    zero_optim_lion_params_t p;
    zero_optim_lion_defaults(&p);
    p.lr = 1e-3f;
    p.weight_decay = (variant & 1) ? 0.1f : 0.0f;
    p.grad_scale = 0.75f;
    return zero_optim_lion_step(ctx, &p, s);
}

static void lamb_params(zero_optim_lamb_params_t *p, int variant)
{
    zero_optim_lamb_defaults(p);
    p->lr = 1e-2f;
    p->weight_decay = (variant & 1) ? 0.01f : 0.0f;
    p->eps_inside_sqrt = (variant >> 1) & 1;
    p->bias_correction = !((variant >> 2) & 1);
    p->step = 2;
    p->grad_scale = 0.5f;
}

/* Lamb, both phases, three segments covering most of the slice. The norms
 * given to phase 2 are the reference's, so phase 2 is compared exactly. */
static double lamb_sums[2][6];
static int lamb_which;

static zero_status_t run_lamb(const zero_optim_ctx_t *ctx, int variant, const zero_optim_slice_t *s)
{
    zero_optim_lamb_params_t p;
    zero_optim_segment_t segs[3];
    double *ws = lamb_sums[lamb_which], *us = lamb_sums[lamb_which] + 3;
    zero_status_t status;
    size_t n = s->n;
    lamb_params(&p, variant);
    segs[0].start = 0;
    segs[0].len = n / 3;
    segs[1].start = n / 3 + (n > 6 ? 1 : 0);    /* one element left out between them */
    segs[1].len = n / 3 > 1 ? n / 3 - 1 : 0;
    segs[2].start = segs[1].start + segs[1].len;
    segs[2].len = n - segs[2].start;
    status = zero_optim_lamb_phase1(ctx, &p, s, segs, 3, ws, us);
    if (status != ZERO_OK)
        return status;
    return zero_optim_lamb_phase2(ctx, &p, s, segs, 3, lamb_sums[0], lamb_sums[0] + 3, NULL);
}

static void check_kernel(const char *name, run_fn run, int variants)
{
    zero_optim_isa_t levels[ZERO_OPTIM_ISA_COUNT];
    int nlevels = simd_levels(levels);
    zero_optim_ctx_t ref;
    bufs_t a, b;
    int failures = 0;
    ZERO_TEST_MEM_MARK();

    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ref, ZERO_OPTIM_ISA_C, NULL), ZERO_OK);
    bufs_alloc(&a);
    bufs_alloc(&b);
    for (int l = 0; l < nlevels; l++) {
        zero_optim_ctx_t simd;
        CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&simd, levels[l], NULL), ZERO_OK);
        /* The level really replaced the reference (else this test compares C with C). */
        CU_ASSERT_FATAL(simd.dsp.adam != ref.dsp.adam && simd.dsp.lamb1 != ref.dsp.lamb1 &&
                        simd.dsp.sgd != ref.dsp.sgd && simd.dsp.lion != ref.dsp.lion &&
                        simd.dsp.adagrad != ref.dsp.adagrad && simd.dsp.lamb2 != ref.dsp.lamb2);
        for (int variant = 0; variant < variants; variant++) {
            for (size_t li = 0; li < NLENGTHS; li++) {
                for (size_t oi = 0; oi < 3; oi++) {
                    for (int t = 0; t < ZERO_OPTIM_W16_COUNT; t++) {
                        size_t n = lengths[li], off = offsets[oi];
                        zero_optim_slice_t sa, sb;
                        if (n > 2000 && (oi == 2 || variant > 1))
                            continue;         /* keep the suite fast: long slices for a subset */
                        bufs_random(&a);
                        bufs_copy(&b, &a);
                        sa = slice_of(&a, off, n, (zero_optim_w16_t)t);
                        sb = slice_of(&b, off, n, (zero_optim_w16_t)t);
                        lamb_which = 0;
                        CU_ASSERT_EQUAL(run(&ref, variant, &sa), ZERO_OK);
                        lamb_which = 1;
                        CU_ASSERT_EQUAL(run(&simd, variant, &sb), ZERO_OK);
                        if (!bufs_equal(&a, &b)) {
                            if (failures++ < 5)
                                fprintf(stderr, "%s %s: variant %d n %zu offset %zu w16 %d differs from C\n",
                                        name, zero_optim_isa_name(levels[l]), variant, n, off, t);
                        }
                        if (run == run_lamb) {
                            for (int k = 0; k < 6; k++) {
                                double x = lamb_sums[0][k], y = lamb_sums[1][k];
                                if (fabs(x - y) > 1e-12 * fabs(x)) {
                                    if (failures++ < 5)
                                        fprintf(stderr, "lamb %s sums %d: %.17g vs %.17g\n",
                                                zero_optim_isa_name(levels[l]), k, x, y);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    CU_ASSERT_EQUAL(failures, 0);
    bufs_free(&a);
    bufs_free(&b);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_adam_simd(void) { check_kernel("adam", run_adam, 8); }
static void test_sgd_simd(void) { check_kernel("sgd", run_sgd, 16); }
static void test_adagrad_simd(void) { check_kernel("adagrad", run_adagrad, 4); }
static void test_lion_simd(void) { check_kernel("lion", run_lion, 2); }
static void test_lamb_simd(void) { check_kernel("lamb", run_lamb, 8); }

/* ---- reference against double-precision formulas ---- */

#define NREF 257
#define STEPS 5

static void grads_for_step(float *g, int step)
{
    for (int i = 0; i < NREF; i++)
        g[i] = sinf(0.37f * (float)i + 1.3f * (float)step) * (0.5f + 0.1f * (float)(i % 7));
}

static int close_to(double got, double want, double rel, double abs_tol)
{
    return fabs(got - want) <= rel * fabs(want) + abs_tol;
}

static void test_adam_reference(void)
{
    zero_optim_ctx_t ctx;
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_C, NULL), ZERO_OK);
    for (int mode = 0; mode < 2; mode++) {
        float w[NREF], g[NREF], m[NREF] = {0}, v[NREF] = {0};
        double wd_[NREF], md[NREF] = {0}, vd[NREF] = {0};
        zero_optim_adam_params_t p;
        zero_optim_adam_defaults(&p);
        p.lr = 0.01f;
        p.weight_decay = 0.1f;
        p.adam_w_mode = mode;
        p.grad_scale = 0.5f;
        for (int i = 0; i < NREF; i++)
            w[i] = (float)(wd_[i] = cos(0.1 * i));
        for (int t = 1; t <= STEPS; t++) {
            zero_optim_slice_t s = {w, g, m, v, NULL, ZERO_OPTIM_W16_NONE, NREF};
            double b1 = (double)p.beta1, b2 = (double)p.beta2, lr = (double)p.lr, wdec = (double)p.weight_decay;
            grads_for_step(g, t);
            p.step = t;
            CU_ASSERT_EQUAL(zero_optim_adam_step(&ctx, &p, &s), ZERO_OK);
            for (int i = 0; i < NREF; i++) {
                double gi = 0.5 * (double)g[i];
                if (!mode)
                    gi += wdec * wd_[i];
                else
                    wd_[i] *= 1.0 - lr * wdec;
                md[i] = b1 * md[i] + (1.0 - b1) * gi;
                vd[i] = b2 * vd[i] + (1.0 - b2) * gi * gi;
                wd_[i] -= lr / (1.0 - pow(b1, t)) * md[i] /
                          (sqrt(vd[i]) / sqrt(1.0 - pow(b2, t)) + (double)p.eps);
            }
        }
        /* Tolerance: 1e-6 absolute on O(1) weights after 5 steps of ~1e-2. */
        for (int i = 0; i < NREF; i++) {
            CU_ASSERT(close_to(w[i], wd_[i], 0, 1e-6));
            CU_ASSERT(close_to(m[i], md[i], 1e-5, 1e-7));
            CU_ASSERT(close_to(v[i], vd[i], 1e-5, 1e-9));
        }
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_sgd_reference(void)
{
    zero_optim_ctx_t ctx;
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_C, NULL), ZERO_OK);
    for (int nesterov = 0; nesterov < 2; nesterov++) {
        float w[NREF], g[NREF], buf[NREF];
        double wd_[NREF], bd[NREF];
        zero_optim_sgd_params_t p;
        zero_optim_sgd_defaults(&p);
        p.lr = 0.1f;
        p.momentum = 0.9f;
        p.nesterov = nesterov;
        p.dampening = nesterov ? 0.0f : 0.2f;
        p.weight_decay = 0.01f;
        for (int i = 0; i < NREF; i++) {
            w[i] = (float)(wd_[i] = sin(0.2 * i));
            buf[i] = 123.0f;               /* must be overwritten at step 1 */
        }
        for (int t = 1; t <= STEPS; t++) {
            zero_optim_slice_t s = {w, g, buf, NULL, NULL, ZERO_OPTIM_W16_NONE, NREF};
            grads_for_step(g, t);
            p.step = t;
            CU_ASSERT_EQUAL(zero_optim_sgd_step(&ctx, &p, &s), ZERO_OK);
            for (int i = 0; i < NREF; i++) {
                double d = (double)g[i] + (double)p.weight_decay * wd_[i];
                bd[i] = t == 1 ? d : (double)p.momentum * bd[i] + (1.0 - (double)p.dampening) * d;
                d = nesterov ? d + (double)p.momentum * bd[i] : bd[i];
                wd_[i] -= (double)p.lr * d;
            }
        }
        for (int i = 0; i < NREF; i++) {
            CU_ASSERT(close_to(w[i], wd_[i], 0, 2e-6));
            CU_ASSERT(close_to(buf[i], bd[i], 1e-5, 1e-6));
        }
    }
}

static void test_adagrad_reference(void)
{
    zero_optim_ctx_t ctx;
    float w[NREF], g[NREF], sum[NREF];
    double wd_[NREF], sd[NREF];
    zero_optim_adagrad_params_t p;
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_C, NULL), ZERO_OK);
    zero_optim_adagrad_defaults(&p);
    p.lr = 0.05f;
    p.lr_decay = 0.1f;
    p.weight_decay = 0.01f;
    p.initial_accumulator_value = 0.1f;
    CU_ASSERT_EQUAL(zero_optim_adagrad_init_state(&ctx, &p, sum, NREF), ZERO_OK);
    for (int i = 0; i < NREF; i++) {
        w[i] = (float)(wd_[i] = sin(0.3 * i));
        sd[i] = (double)0.1f;
        CU_ASSERT_EQUAL(sum[i], 0.1f);
    }
    for (int t = 1; t <= STEPS; t++) {
        zero_optim_slice_t s = {w, g, sum, NULL, NULL, ZERO_OPTIM_W16_NONE, NREF};
        double clr = (double)p.lr / (1.0 + (t - 1) * (double)p.lr_decay);
        grads_for_step(g, t);
        p.step = t;
        CU_ASSERT_EQUAL(zero_optim_adagrad_step(&ctx, &p, &s), ZERO_OK);
        for (int i = 0; i < NREF; i++) {
            double d = (double)g[i] + (double)p.weight_decay * wd_[i];
            sd[i] += d * d;
            wd_[i] -= clr * d / (sqrt(sd[i]) + (double)p.eps);
        }
    }
    for (int i = 0; i < NREF; i++) {
        CU_ASSERT(close_to(w[i], wd_[i], 0, 1e-6));
        CU_ASSERT(close_to(sum[i], sd[i], 1e-5, 0));
    }
}

static void test_lion_reference(void)
{
    zero_optim_ctx_t ctx;
    float w[NREF], g[NREF], m[NREF] = {0};
    double wd_[NREF], md[NREF] = {0};
    zero_optim_lion_params_t p;
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_C, NULL), ZERO_OK);
    zero_optim_lion_defaults(&p);
    p.lr = 1e-2f;
    p.weight_decay = 0.5f;
    for (int i = 0; i < NREF; i++)
        w[i] = (float)(wd_[i] = cos(0.3 * i));
    for (int t = 1; t <= STEPS; t++) {
        zero_optim_slice_t s = {w, g, m, NULL, NULL, ZERO_OPTIM_W16_NONE, NREF};
        grads_for_step(g, t);
        CU_ASSERT_EQUAL(zero_optim_lion_step(&ctx, &p, &s), ZERO_OK);
        for (int i = 0; i < NREF; i++) {
            double c = (double)p.beta1 * md[i] + (1.0 - (double)p.beta1) * g[i];
            wd_[i] *= 1.0 - (double)p.lr * (double)p.weight_decay;
            wd_[i] -= (double)p.lr * (c > 0 ? 1.0 : (c < 0 ? -1.0 : 0.0));
            md[i] = (double)p.beta2 * md[i] + (1.0 - (double)p.beta2) * g[i];
        }
    }
    /* The sign argument is never near zero for these inputs, so 1e-6 holds. */
    for (int i = 0; i < NREF; i++) {
        CU_ASSERT(close_to(w[i], wd_[i], 0, 1e-6));
        CU_ASSERT(close_to(m[i], md[i], 1e-5, 1e-7));
    }
}

/* Lamb over one parameter split across two "ranks": partial sums added as the
 * engine's allreduce would, against a double formula on the whole parameter. */
static void test_lamb_reference(void)
{
    zero_optim_ctx_t ctx;
    float w[NREF], g[NREF], m[NREF] = {0}, v[NREF] = {0};
    double wd_[NREF], md[NREF] = {0}, vd[NREF] = {0};
    zero_optim_lamb_params_t p;
    const size_t cut = 100;
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, NULL), ZERO_OK);
    zero_optim_lamb_defaults(&p);
    p.lr = 0.01f;
    p.weight_decay = 0.01f;
    p.max_coeff = 0.5f;                 /* the trust ratio is clipped at some steps */
    for (int i = 0; i < NREF; i++)
        w[i] = (float)(wd_[i] = 0.1 * cos(0.3 * i));
    for (int t = 1; t <= STEPS; t++) {
        zero_optim_slice_t r0 = {w, g, m, v, NULL, ZERO_OPTIM_W16_NONE, cut};
        zero_optim_slice_t r1 = {w + cut, g + cut, m + cut, v + cut, NULL, ZERO_OPTIM_W16_NONE, NREF - cut};
        zero_optim_segment_t s0 = {0, cut}, s1 = {0, NREF - cut};
        double w0, u0, w1, u1, wsum, usum, ws = 0, us = 0, ratio, step_size;
        float applied;
        grads_for_step(g, t);
        p.step = t;
        CU_ASSERT_EQUAL(zero_optim_lamb_phase1(&ctx, &p, &r0, &s0, 1, &w0, &u0), ZERO_OK);
        CU_ASSERT_EQUAL(zero_optim_lamb_phase1(&ctx, &p, &r1, &s1, 1, &w1, &u1), ZERO_OK);
        wsum = w0 + w1;
        usum = u0 + u1;
        CU_ASSERT_EQUAL(zero_optim_lamb_phase2(&ctx, &p, &r0, &s0, 1, &wsum, &usum, &applied), ZERO_OK);
        CU_ASSERT_EQUAL(zero_optim_lamb_phase2(&ctx, &p, &r1, &s1, 1, &wsum, &usum, NULL), ZERO_OK);
        {
            double u[NREF];
            for (int i = 0; i < NREF; i++) {
                double gi = (double)g[i];
                md[i] = (double)p.beta1 * md[i] + (1.0 - (double)p.beta1) * gi;
                vd[i] = (double)p.beta2 * vd[i] + (1.0 - (double)p.beta2) * gi * gi;
                u[i] = md[i] / (sqrt(vd[i]) + (double)p.eps) + (double)p.weight_decay * wd_[i];
                ws += wd_[i] * wd_[i];
                us += u[i] * u[i];
            }
            ratio = sqrt(ws) / sqrt(us);
            ratio = ratio > p.max_coeff ? p.max_coeff : (ratio < p.min_coeff ? p.min_coeff : ratio);
            CU_ASSERT(close_to(applied, ratio, 1e-5, 0));
            step_size = (double)p.lr * sqrt(1.0 - pow((double)p.beta2, t)) / (1.0 - pow((double)p.beta1, t));
            for (int i = 0; i < NREF; i++)
                wd_[i] -= step_size * ratio * u[i];
        }
    }
    for (int i = 0; i < NREF; i++) {
        CU_ASSERT(close_to(w[i], wd_[i], 0, 1e-6));
        CU_ASSERT(close_to(m[i], md[i], 1e-5, 1e-7));
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---- threads ---- */

static void test_threads_bit_identical(void)
{
    const size_t n = MAXN - 5;       /* 64 tasks of 1024 and a ragged end */
    zero_thread_pool_t *pool = NULL;
    zero_optim_ctx_t one, many;
    bufs_t a, b;
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_EQUAL_FATAL(zero_thread_pool_create(3, &pool), ZERO_OK);
    bufs_alloc(&a);
    bufs_alloc(&b);
    for (int isa = 0; isa <= (int)zero_optim_isa_detect(); isa++) {
        run_fn runs[] = {run_adam, run_sgd, run_adagrad, run_lion, run_lamb};
        CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&one, (zero_optim_isa_t)isa, NULL), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&many, (zero_optim_isa_t)isa, pool), ZERO_OK);
        CU_ASSERT_EQUAL(zero_optim_ctx_set_chunk(&one, 1024), ZERO_OK);
        CU_ASSERT_EQUAL(zero_optim_ctx_set_chunk(&many, 1024), ZERO_OK);
        for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
            zero_optim_slice_t sa, sb;
            bufs_random(&a);
            bufs_copy(&b, &a);
            sa = slice_of(&a, 1, n, ZERO_OPTIM_W16_BF16);
            sb = slice_of(&b, 1, n, ZERO_OPTIM_W16_BF16);
            lamb_which = 0;
            CU_ASSERT_EQUAL(runs[r](&one, 1, &sa), ZERO_OK);
            lamb_which = 1;
            CU_ASSERT_EQUAL(runs[r](&many, 1, &sb), ZERO_OK);
            CU_ASSERT(bufs_equal(&a, &b));
            if (runs[r] == run_lamb)
                CU_ASSERT(bits_equal(lamb_sums[0], lamb_sums[1], sizeof(lamb_sums[0])));
        }
        for (int dt = 0; dt < 3; dt++) {
            double s1, s2;
            size_t c1, c2;
            CU_ASSERT_EQUAL(zero_optim_sum_squares(&one, (zero_dtype_t)dt, a.g, n, &s1), ZERO_OK);
            CU_ASSERT_EQUAL(zero_optim_sum_squares(&many, (zero_dtype_t)dt, a.g, n, &s2), ZERO_OK);
            CU_ASSERT(bits_equal(&s1, &s2, sizeof(s1)));
            CU_ASSERT_EQUAL(zero_optim_count_nonfinite(&one, (zero_dtype_t)dt, a.g, n, &c1), ZERO_OK);
            CU_ASSERT_EQUAL(zero_optim_count_nonfinite(&many, (zero_dtype_t)dt, a.g, n, &c2), ZERO_OK);
            CU_ASSERT_EQUAL(c1, c2);
        }
    }
    bufs_free(&a);
    bufs_free(&b);
    zero_thread_pool_destroy(pool);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---- helpers ---- */

/* Floats that exercise rounding: specials, subnormals, fp16 limits, ties. */
static float special_float(size_t i)
{
    static const uint32_t specials[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f800001u,
        0x00000001u, 0x807fffffu, 0x33000000u, 0x33000001u, 0x387fe000u, 0x38800000u, 0x477fe000u,
        0x477fefffu, 0x477ff000u, 0x3f808000u, 0x3f818000u, 0x3f800fffu, 0x3f801000u, 0x3f803000u,
        0x7f7fffffu, 0x7f7f8000u, 0x33800000u, 0x33c00000u};
    size_t ns = sizeof(specials) / sizeof(specials[0]);
    if (i < ns)
        return zero_bits_f32(specials[i]);
    if (i % 3 == 0)
        return zero_bits_f32(rnd_u32() ^ (rnd_u32() << 16));           /* any bit pattern */
    return rnd_uniform(-70000.0f, 70000.0f) * powf(2.0f, (float)((int)(rnd_u32() % 40) - 30));
}

static int same_value16(uint16_t a, uint16_t b, int bf16)
{
    float fa = bf16 ? zero_bf16_to_f32(a) : zero_f16_to_f32(a);
    float fb = bf16 ? zero_bf16_to_f32(b) : zero_f16_to_f32(b);
    return a == b || (isnan(fa) && isnan(fb));
}

static void test_conversions(void)
{
    enum { N = 20011 };
    float *src = malloc(N * sizeof(float)), *back = malloc(N * sizeof(float));
    uint16_t *h = malloc(N * sizeof(uint16_t)), *all = malloc(65536 * sizeof(uint16_t));
    float *all_f = malloc(65536 * sizeof(float));
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_FATAL(src && back && h && all && all_f);
    for (size_t i = 0; i < N; i++)
        src[i] = special_float(i);
    for (int i = 0; i < 65536; i++)
        all[i] = (uint16_t)i;
    for (int isa = 0; isa <= (int)zero_optim_isa_detect(); isa++) {
        zero_optim_ctx_t ctx;
        CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, (zero_optim_isa_t)isa, NULL), ZERO_OK);
        for (int t = ZERO_OPTIM_W16_BF16; t <= ZERO_OPTIM_W16_FP16; t++) {
            int bf16 = t == ZERO_OPTIM_W16_BF16, bad = 0;
            /* fp32 -> 16 bit: exactly half.h, NaN canonicalised the same way. */
            CU_ASSERT_EQUAL(zero_optim_to_16(&ctx, (zero_optim_w16_t)t, h, src, N), ZERO_OK);
            for (size_t i = 0; i < N; i++)
                bad += h[i] != (bf16 ? zero_f32_to_bf16(src[i]) : zero_f32_to_f16(src[i]));
            CU_ASSERT_EQUAL(bad, 0);
            /* every 16-bit pattern -> fp32: exact (NaN payloads compared as NaN). */
            bad = 0;
            CU_ASSERT_EQUAL(zero_optim_from_16(&ctx, (zero_optim_w16_t)t, all_f, all, 65536), ZERO_OK);
            for (int i = 0; i < 65536; i++) {
                float want = bf16 ? zero_bf16_to_f32(all[i]) : zero_f16_to_f32(all[i]);
                bad += !(zero_f32_bits(all_f[i]) == zero_f32_bits(want) || (isnan(all_f[i]) && isnan(want)));
            }
            CU_ASSERT_EQUAL(bad, 0);
            (void)same_value16;
        }
    }
    free(src);
    free(back);
    free(h);
    free(all);
    free(all_f);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_nonfinite_and_norms(void)
{
    enum { N = 70001 };
    float *f = malloc(N * sizeof(float));
    uint16_t *h16 = malloc(N * sizeof(uint16_t)), *b16 = malloc(N * sizeof(uint16_t));
    float *scaled_ref = malloc(N * sizeof(float)), *scaled = malloc(N * sizeof(float));
    static const size_t bad_at[] = {0, 5, 16, 17, 4095, 65535, 65536, N - 1};
    double want_sq[3] = {0, 0, 0};
    float saved[8];
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_FATAL(f && h16 && b16 && scaled_ref && scaled);
    fill(f, N, -3.0f, 3.0f);
    for (size_t i = 0; i < N; i++) {
        h16[i] = zero_f32_to_f16(f[i]);
        b16[i] = zero_f32_to_bf16(f[i]);
        want_sq[ZERO_FP32] += (double)f[i] * f[i];
        want_sq[ZERO_FP16] += (double)zero_f16_to_f32(h16[i]) * zero_f16_to_f32(h16[i]);
        want_sq[ZERO_BF16] += (double)zero_bf16_to_f32(b16[i]) * zero_bf16_to_f32(b16[i]);
    }
    for (int isa = 0; isa <= (int)zero_optim_isa_detect(); isa++) {
        zero_optim_ctx_t ctx;
        const void *bufs[3] = {f, h16, b16};
        size_t count;
        double sq;
        CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, (zero_optim_isa_t)isa, NULL), ZERO_OK);
        for (int dt = 0; dt < 3; dt++) {
            /* Tolerance: 1e-12 relative (double sums in another order). */
            CU_ASSERT_EQUAL(zero_optim_sum_squares(&ctx, (zero_dtype_t)dt, bufs[dt], N, &sq), ZERO_OK);
            CU_ASSERT(close_to(sq, want_sq[dt], 1e-12, 0));
            CU_ASSERT_EQUAL(zero_optim_count_nonfinite(&ctx, (zero_dtype_t)dt, bufs[dt], N, &count), ZERO_OK);
            CU_ASSERT_EQUAL(count, 0);
        }
        /* Poison known places: inf, -inf, NaN; every one counted, at any length. */
        for (size_t k = 0; k < sizeof(bad_at) / sizeof(bad_at[0]); k++) {
            float val = k % 3 == 0 ? INFINITY : (k % 3 == 1 ? -INFINITY : NAN);
            saved[k] = f[bad_at[k]];
            f[bad_at[k]] = val;
            h16[bad_at[k]] = zero_f32_to_f16(val);
            b16[bad_at[k]] = zero_f32_to_bf16(val);
        }
        for (int dt = 0; dt < 3; dt++) {
            CU_ASSERT_EQUAL(zero_optim_count_nonfinite(&ctx, (zero_dtype_t)dt, bufs[dt], N, &count), ZERO_OK);
            CU_ASSERT_EQUAL(count, sizeof(bad_at) / sizeof(bad_at[0]));
            CU_ASSERT_EQUAL(zero_optim_count_nonfinite(&ctx, (zero_dtype_t)dt, bufs[dt], 17, &count), ZERO_OK);
            CU_ASSERT_EQUAL(count, 3);   /* 0, 5, 16 */
            CU_ASSERT_EQUAL(zero_optim_count_nonfinite(&ctx, (zero_dtype_t)dt, bufs[dt], 16, &count), ZERO_OK);
            CU_ASSERT_EQUAL(count, 2);
            /* The norm pass sees the overflow too: the sum is not finite. */
            CU_ASSERT_EQUAL(zero_optim_sum_squares(&ctx, (zero_dtype_t)dt, bufs[dt], N, &sq), ZERO_OK);
            CU_ASSERT(!isfinite(sq));
            CU_ASSERT_EQUAL(zero_optim_sum_squares(&ctx, (zero_dtype_t)dt, bufs[dt], 5, &sq), ZERO_OK);
            CU_ASSERT(isinf(sq));                               /* only the inf at 0 */
        }
        /* fp16 overflow: 65520 and above round to inf and count as overflow. */
        h16[1] = zero_f32_to_f16(65520.0f);
        CU_ASSERT_EQUAL(zero_optim_count_nonfinite(&ctx, ZERO_FP16, h16, 2, &count), ZERO_OK);
        CU_ASSERT_EQUAL(count, 2);
        h16[1] = zero_f32_to_f16(f[1]);
        for (size_t k = 0; k < sizeof(bad_at) / sizeof(bad_at[0]); k++) {
            f[bad_at[k]] = saved[k];
            h16[bad_at[k]] = zero_f32_to_f16(saved[k]);
            b16[bad_at[k]] = zero_f32_to_bf16(saved[k]);
        }
        /* scale: bit-exact with x * s. */
        memcpy(scaled, f, N * sizeof(float));
        for (size_t i = 0; i < N; i++)
            scaled_ref[i] = f[i] * 0.3f;
        CU_ASSERT_EQUAL(zero_optim_scale(&ctx, scaled + 1, 0.3f, N - 1), ZERO_OK);
        CU_ASSERT_EQUAL(scaled[0], f[0]);
        CU_ASSERT(bits_equal(scaled + 1, scaled_ref + 1, (N - 1) * sizeof(float)));
    }
    free(f);
    free(h16);
    free(b16);
    free(scaled_ref);
    free(scaled);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_clip_coef(void)
{
    CU_ASSERT_EQUAL(zero_optim_clip_coef(10.0, 0.0), 1.0f);       /* clipping off */
    CU_ASSERT_EQUAL(zero_optim_clip_coef(0.5, 1.0), 1.0f);        /* under the limit */
    CU_ASSERT(close_to(zero_optim_clip_coef(4.0, 1.0), 1.0 / (4.0 + 1e-6), 1e-7, 0));
    CU_ASSERT(close_to(zero_optim_clip_coef(1.0, 1.0), 1.0 / (1.0 + 1e-6), 1e-7, 0)); /* just above: clipped */
    CU_ASSERT_EQUAL(zero_optim_clip_coef(INFINITY, 1.0), 1.0f);
    CU_ASSERT_EQUAL(zero_optim_clip_coef(NAN, 1.0), 1.0f);
}

/* ---- bad calls ---- */

static void test_bad_calls(void)
{
    zero_optim_ctx_t ctx;
    float w[4] = {0}, g[4] = {0}, m[4] = {0}, v[4] = {0};
    zero_optim_slice_t s = {w, g, m, v, NULL, ZERO_OPTIM_W16_NONE, 4};
    zero_optim_adam_params_t ap;
    zero_optim_sgd_params_t sp;
    zero_optim_lamb_params_t lp;
    zero_optim_segment_t segs[2] = {{0, 3}, {2, 2}};
    double ws[2], us[2];
    size_t count;
    ZERO_TEST_MEM_MARK();

    CU_ASSERT_EQUAL(zero_optim_ctx_init(NULL, ZERO_OPTIM_ISA_C, NULL), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_optim_ctx_init(&ctx, (zero_optim_isa_t)7, NULL), ZERO_ERR_INVALID_ARG);
    setenv("ZERO_CPU_ISA", "sse9", 1);
    CU_ASSERT_EQUAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, NULL), ZERO_ERR_INVALID_ARG);
    setenv("ZERO_CPU_ISA", "c", 1);
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, NULL), ZERO_OK);
    CU_ASSERT_EQUAL(ctx.isa, ZERO_OPTIM_ISA_C);
    unsetenv("ZERO_CPU_ISA");
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, NULL), ZERO_OK);
    CU_ASSERT_EQUAL(ctx.isa, zero_optim_isa_detect());
    CU_ASSERT_EQUAL(zero_optim_ctx_set_chunk(&ctx, 100), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_optim_ctx_set_chunk(&ctx, 0), ZERO_ERR_INVALID_ARG);

    zero_optim_adam_defaults(&ap);
    CU_ASSERT_EQUAL(zero_optim_adam_step(&ctx, &ap, NULL), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_optim_adam_step(&ctx, NULL, &s), ZERO_ERR_INVALID_ARG);
    s.w16_type = ZERO_OPTIM_W16_BF16;                    /* no 16-bit buffer */
    CU_ASSERT_EQUAL(zero_optim_adam_step(&ctx, &ap, &s), ZERO_ERR_INVALID_ARG);
    s.w16_type = ZERO_OPTIM_W16_NONE;
    s.s2 = NULL;
    CU_ASSERT_EQUAL(zero_optim_adam_step(&ctx, &ap, &s), ZERO_ERR_INVALID_ARG);
    s.s2 = v;
    ap.step = 0;
    CU_ASSERT_EQUAL(zero_optim_adam_step(&ctx, &ap, &s), ZERO_ERR_INVALID_ARG);
    ap.step = 1;
    ap.beta2 = 1.0f;
    CU_ASSERT_EQUAL(zero_optim_adam_step(&ctx, &ap, &s), ZERO_ERR_INVALID_ARG);
    ap.beta2 = 0.999f;
    CU_ASSERT_EQUAL(zero_optim_adam_step(&ctx, &ap, &s), ZERO_OK);

    zero_optim_sgd_defaults(&sp);
    sp.nesterov = 1;                                      /* nesterov without momentum */
    CU_ASSERT_EQUAL(zero_optim_sgd_step(&ctx, &sp, &s), ZERO_ERR_INVALID_ARG);
    sp.nesterov = 0;
    s.s1 = NULL;                                          /* fine without momentum */
    CU_ASSERT_EQUAL(zero_optim_sgd_step(&ctx, &sp, &s), ZERO_OK);
    sp.momentum = 0.9f;
    CU_ASSERT_EQUAL(zero_optim_sgd_step(&ctx, &sp, &s), ZERO_ERR_INVALID_ARG);
    s.s1 = m;

    zero_optim_lamb_defaults(&lp);
    CU_ASSERT_EQUAL(zero_optim_lamb_phase1(&ctx, &lp, &s, segs, 2, ws, us), ZERO_ERR_INVALID_ARG); /* overlap */
    segs[1].start = 3;
    segs[1].len = 2;                                      /* past the end */
    CU_ASSERT_EQUAL(zero_optim_lamb_phase1(&ctx, &lp, &s, segs, 2, ws, us), ZERO_ERR_INVALID_ARG);
    segs[1].len = 1;
    CU_ASSERT_EQUAL(zero_optim_lamb_phase1(&ctx, &lp, &s, segs, 2, NULL, us), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_optim_lamb_phase1(&ctx, &lp, &s, segs, 2, ws, us), ZERO_OK);
    CU_ASSERT_EQUAL(zero_optim_lamb_phase2(&ctx, &lp, &s, segs, 2, NULL, us, NULL), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_optim_lamb_phase2(&ctx, &lp, &s, segs, 2, ws, us, NULL), ZERO_OK);
    lp.min_coeff = 20.0f;                                 /* min above max */
    CU_ASSERT_EQUAL(zero_optim_lamb_phase2(&ctx, &lp, &s, segs, 2, ws, us, NULL), ZERO_ERR_INVALID_ARG);

    CU_ASSERT_EQUAL(zero_optim_count_nonfinite(&ctx, ZERO_DTYPE_COUNT, w, 4, &count), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_optim_count_nonfinite(&ctx, ZERO_FP32, NULL, 4, &count), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_optim_count_nonfinite(&ctx, ZERO_FP32, NULL, 0, &count), ZERO_OK);
    CU_ASSERT_EQUAL(count, 0);
    CU_ASSERT_EQUAL(zero_optim_to_16(&ctx, ZERO_OPTIM_W16_NONE, (uint16_t *)m, w, 4), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_optim_scale(&ctx, NULL, 2.0f, 4), ZERO_ERR_INVALID_ARG);
    ZERO_TEST_ASSERT_NO_LEAK();
}


/* The fused reduction: Adam over (g, g_add) at every level, threaded, equals
 * Adam over the stored sum g + g_add, bit for bit (the gradient buffers are
 * left untouched). */
static void test_adam_fused_add(void)
{
    zero_optim_isa_t levels[4];
    int nlev = simd_levels(levels);
    bufs_t fused, summed;
    float *addend = malloc(MAXN * sizeof(float)), *g_saved = malloc(MAXN * sizeof(float));
    CU_ASSERT_FATAL(addend && g_saved);
    bufs_alloc(&fused);
    bufs_alloc(&summed);
    for (int lev = -1; lev < nlev; lev++) {
        zero_optim_ctx_t ctx;
        CU_ASSERT_FATAL(zero_optim_ctx_init(&ctx, lev < 0 ? ZERO_OPTIM_ISA_C : levels[lev], NULL) == ZERO_OK);
        for (size_t l = 0; l < NLENGTHS; l++) {
            for (int variant = 0; variant < 8; variant++) {
                zero_optim_w16_t t = (zero_optim_w16_t)(variant % ZERO_OPTIM_W16_COUNT);
                size_t off = offsets[(size_t)variant % 3], n = lengths[l];
                bufs_random(&fused);
                fill(addend, MAXN, -1.0f, 1.0f);
                bufs_copy(&summed, &fused);
                memcpy(g_saved, fused.g, MAXN * sizeof(float));
                for (size_t i = 0; i < MAXN; i++)
                    summed.g[i] = fused.g[i] + addend[i];
                zero_optim_slice_t sf = slice_of(&fused, off, n, t), ss = slice_of(&summed, off, n, t);
                CU_ASSERT_EQUAL(run_adam_fused(&ctx, variant, &sf, addend + off), ZERO_OK);
                CU_ASSERT_EQUAL(run_adam(&ctx, variant, &ss), ZERO_OK);
                memcpy(summed.g, g_saved, MAXN * sizeof(float)); /* compare all but g, then g itself */
                CU_ASSERT_TRUE(bufs_equal(&fused, &summed));
            }
        }
    }
    bufs_free(&fused);
    bufs_free(&summed);
    free(addend);
    free(g_saved);
}

/* The fused step's check: sum of (a + b)^2, the sum formed in fp32, against
 * a plain double loop over the same fp32 sums (relative 1e-12: only the order
 * of the double additions differs); bit-identical with and without threads;
 * non-finite when one a[i] + b[i] overflows or is NaN. */
static void test_sum_squares_add(void)
{
    const size_t n = 300007;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    zero_thread_pool_t *pool = NULL;
    zero_optim_ctx_t one, many;
    double ref = 0.0, s1 = 0.0, s2 = 0.0;
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_FATAL(a != NULL && b != NULL);
    CU_ASSERT_EQUAL_FATAL(zero_thread_pool_create(3, &pool), ZERO_OK);
    fill(a, n, -1.0f, 1.0f);
    fill(b, n, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        float sum = a[i] + b[i];
        ref += (double)sum * (double)sum;
    }
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&one, ZERO_OPTIM_ISA_AUTO, NULL), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&many, ZERO_OPTIM_ISA_AUTO, pool), ZERO_OK);
    CU_ASSERT_EQUAL(zero_optim_ctx_set_chunk(&one, 4096), ZERO_OK);
    CU_ASSERT_EQUAL(zero_optim_ctx_set_chunk(&many, 4096), ZERO_OK);
    CU_ASSERT_EQUAL(zero_optim_sum_squares_add(&one, a, b, n, &s1), ZERO_OK);
    CU_ASSERT_EQUAL(zero_optim_sum_squares_add(&many, a, b, n, &s2), ZERO_OK);
    CU_ASSERT(fabs(s1 - ref) <= 1e-12 * ref);
    CU_ASSERT(bits_equal(&s1, &s2, sizeof(s1)));
    a[77777] = 3e38f;   /* finite addends, an infinite sum */
    b[77777] = 3e38f;
    CU_ASSERT_EQUAL(zero_optim_sum_squares_add(&many, a, b, n, &s2), ZERO_OK);
    CU_ASSERT(!isfinite(s2));
    a[77777] = NAN;
    CU_ASSERT_EQUAL(zero_optim_sum_squares_add(&many, a, b, n, &s2), ZERO_OK);
    CU_ASSERT(!isfinite(s2));
    CU_ASSERT_EQUAL(zero_optim_sum_squares_add(&many, a, b, 0, &s2), ZERO_OK);
    CU_ASSERT_EQUAL(s2, 0.0);
    CU_ASSERT_EQUAL(zero_optim_sum_squares_add(&many, NULL, b, 5, &s2), ZERO_ERR_INVALID_ARG);
    zero_thread_pool_destroy(pool);
    free(a);
    free(b);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---- 16-bit gradients (CPU offload reads them from its transfer slots) ---- */

/* One step of optimizer @p which (0 adamw, 1 adam L2 with decay, 2 sgd with
 * momentum, 3 adagrad, 4 lion) over @p s: fp32 s->g when @p g16 is NULL, else
 * the 16-bit gradients through the *_step_g16 kernels. */
static zero_status_t run_g16_case(const zero_optim_ctx_t *ctx, int which, const zero_optim_slice_t *s,
                                  const uint16_t *g16, zero_optim_w16_t gt)
{
    switch (which) {
    case 0:
    case 1: {
        zero_optim_adam_params_t p;
        zero_optim_adam_defaults(&p);
        p.lr = 1e-2f;
        p.adam_w_mode = which == 0;
        p.weight_decay = 0.01f;
        p.step = 5;
        p.grad_scale = 0.25f;
        return g16 ? zero_optim_adam_step_g16(ctx, &p, s, g16, gt) : zero_optim_adam_step(ctx, &p, s);
    }
    case 2: {
        zero_optim_sgd_params_t p;
        zero_optim_sgd_defaults(&p);
        p.lr = 1e-2f;
        p.momentum = 0.9f;
        p.weight_decay = 0.01f;
        p.step = 2;
        p.grad_scale = 0.5f;
        return g16 ? zero_optim_sgd_step_g16(ctx, &p, s, g16, gt) : zero_optim_sgd_step(ctx, &p, s);
    }
    case 3: {
        zero_optim_adagrad_params_t p;
        zero_optim_adagrad_defaults(&p);
        p.step = 4;
        p.lr_decay = 0.01f;
        p.grad_scale = 2.0f;
        return g16 ? zero_optim_adagrad_step_g16(ctx, &p, s, g16, gt) : zero_optim_adagrad_step(ctx, &p, s);
    }
    default: {
        zero_optim_lion_params_t p;
        zero_optim_lion_defaults(&p);
        p.weight_decay = 0.1f;
        return g16 ? zero_optim_lion_step_g16(ctx, &p, s, g16, gt) : zero_optim_lion_step(ctx, &p, s);
    }
    }
}

/* Every level, 3 threads, chunks of 192 (blocks of 512 cross chunk ends):
 * the 16-bit-gradient kernels against the C reference's widening
 * (zero_optim_from_16) followed by its fp32 step, bit for bit: weights,
 * states and the 16-bit weights; also with the weights written over the
 * gradients in the same buffer, as a transfer slot is stepped in place. */
static void test_g16_steps(void)
{
    const size_t n = 65537, off = 1;
    zero_thread_pool_t *pool = NULL;
    zero_optim_ctx_t ref;
    zero_optim_isa_t levels[ZERO_OPTIM_ISA_COUNT];
    int nlevels = simd_levels(levels + 1) + 1;
    bufs_t a, b;
    uint16_t *g16 = malloc(MAXN * sizeof(uint16_t));
    CU_ASSERT_FATAL(g16 != NULL);
    levels[0] = ZERO_OPTIM_ISA_C;
    CU_ASSERT_EQUAL_FATAL(zero_thread_pool_create(3, &pool), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ref, ZERO_OPTIM_ISA_C, NULL), ZERO_OK);
    bufs_alloc(&a);
    bufs_alloc(&b);
    for (int gt = ZERO_OPTIM_W16_BF16; gt <= ZERO_OPTIM_W16_FP16; gt++) {
        for (int which = 0; which < 5; which++) {
            for (int li = 0; li < nlevels; li++) {
                for (int in_place = 0; in_place < 2; in_place++) {
                    zero_optim_ctx_t ctx;
                    zero_optim_slice_t sa, sb;
                    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_init(&ctx, levels[li], pool), ZERO_OK);
                    CU_ASSERT_EQUAL_FATAL(zero_optim_ctx_set_chunk(&ctx, 192), ZERO_OK);
                    bufs_random(&a);
                    /* the 16-bit gradients, and the reference's fp32 widening of them */
                    CU_ASSERT_EQUAL(zero_optim_to_16(&ref, (zero_optim_w16_t)gt, g16, a.g, MAXN), ZERO_OK);
                    CU_ASSERT_EQUAL(zero_optim_from_16(&ref, (zero_optim_w16_t)gt, a.g, g16, MAXN), ZERO_OK);
                    bufs_copy(&b, &a);
                    sa = slice_of(&a, off, n, (zero_optim_w16_t)gt);
                    CU_ASSERT_EQUAL(run_g16_case(&ref, which, &sa, NULL, ZERO_OPTIM_W16_NONE), ZERO_OK);
                    sb = slice_of(&b, off, n, (zero_optim_w16_t)gt);
                    sb.g = NULL;   /* not read */
                    if (in_place) {
                        memcpy(b.h, g16, MAXN * sizeof(uint16_t));
                        sb.w16 = b.h + off;
                        CU_ASSERT_EQUAL(run_g16_case(&ctx, which, &sb, b.h + off, (zero_optim_w16_t)gt), ZERO_OK);
                        /* outside the slice the buffer keeps the gradients */
                        CU_ASSERT_EQUAL(b.h[0], g16[0]);
                        CU_ASSERT_EQUAL(b.h[off + n], g16[off + n]);
                        b.h[0] = a.h[0];
                        memcpy(b.h + off + n, a.h + off + n, (MAXN - off - n) * sizeof(uint16_t));
                    } else {
                        CU_ASSERT_EQUAL(run_g16_case(&ctx, which, &sb, g16 + off, (zero_optim_w16_t)gt), ZERO_OK);
                    }
                    if (!bufs_equal(&a, &b)) {
                        CU_FAIL("16-bit gradient step differs from widen + fp32 step");
                        fprintf(stderr, "  %s, optimizer %d, level %s, in place %d\n",
                                gt == ZERO_OPTIM_W16_BF16 ? "bf16" : "fp16", which,
                                zero_optim_isa_name(levels[li]), in_place);
                    }
                }
            }
        }
    }
    /* bad calls: no gradient, an fp32 "16-bit" type */
    {
        zero_optim_adam_params_t p;
        zero_optim_slice_t s = slice_of(&a, 0, 8, ZERO_OPTIM_W16_NONE);
        zero_optim_adam_defaults(&p);
        CU_ASSERT_EQUAL(zero_optim_adam_step_g16(&ref, &p, &s, NULL, ZERO_OPTIM_W16_BF16), ZERO_ERR_INVALID_ARG);
        CU_ASSERT_EQUAL(zero_optim_adam_step_g16(&ref, &p, &s, g16, ZERO_OPTIM_W16_NONE), ZERO_ERR_INVALID_ARG);
    }
    bufs_free(&a);
    bufs_free(&b);
    free(g16);
    zero_thread_pool_destroy(pool);
}

static CU_TestInfo kernel_tests[] = {
    {"adam: every SIMD level == C reference", test_adam_simd},
    {"adam with a fused gradient addend == adam over the sum", test_adam_fused_add},
    {"sum of squares of a two-addend gradient", test_sum_squares_add},
    {"sgd: every SIMD level == C reference", test_sgd_simd},
    {"adagrad: every SIMD level == C reference", test_adagrad_simd},
    {"lion: every SIMD level == C reference", test_lion_simd},
    {"lamb: every SIMD level == C reference", test_lamb_simd},
    {"adam/adamw reference vs double formula", test_adam_reference},
    {"sgd reference vs double formula", test_sgd_reference},
    {"adagrad reference vs double formula", test_adagrad_reference},
    {"lion reference vs double formula", test_lion_reference},
    {"lamb split over two ranks vs double formula", test_lamb_reference},
    {"threaded == single-threaded, bit for bit", test_threads_bit_identical},
    {"fp32 <-> bf16/fp16 conversions", test_conversions},
    {"non-finite counts, sums of squares, scale", test_nonfinite_and_norms},
    {"clip coefficient", test_clip_coef},
    {"bad calls", test_bad_calls},
    {"16-bit gradients (all optimizers, levels, in place) == widen + fp32 step", test_g16_steps},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"optim kernels", NULL, NULL, NULL, NULL, kernel_tests},
    CU_SUITE_INFO_NULL,
};

/* checkasm-style --bench: every kernel at every level on an in-cache slice
 * (4096 elements, so compute rather than memory is measured), ns per element
 * and the speed-up over the C reference. Timings are printed, never asserted. */
static int run_bench(void)
{
    static const struct {
        const char *name;
        run_fn run;
    } kernels[] = {{"adamw", run_adam}, {"sgd", run_sgd}, {"adagrad", run_adagrad}, {"lion", run_lion},
                   {"lamb", run_lamb}};
    const size_t n = 4096;
    const int iters = 2000;
    bufs_t b;
    b.w = malloc(MAXN * sizeof(float));
    b.g = malloc(MAXN * sizeof(float));
    b.s1 = malloc(MAXN * sizeof(float));
    b.s2 = malloc(MAXN * sizeof(float));
    b.h = malloc(MAXN * sizeof(uint16_t));
    if (!(b.w && b.g && b.s1 && b.s2 && b.h)) {
        bufs_free(&b);
        return 1;
    }
    printf("%-8s %-6s %-5s %10s %9s\n", "kernel", "level", "w16", "ns/elt", "vs c");
    for (size_t k = 0; k < sizeof(kernels) / sizeof(kernels[0]); k++) {
        for (int t = 0; t < ZERO_OPTIM_W16_COUNT; t++) {
            double c_ns = 0.0;
            for (int isa = 0; isa <= (int)zero_optim_isa_detect(); isa++) {
                zero_optim_ctx_t ctx;
                zero_optim_slice_t s;
                double t0, ns;
                if (zero_optim_ctx_init(&ctx, (zero_optim_isa_t)isa, NULL) != ZERO_OK) {
                    bufs_free(&b);
                    return 1;
                }
                bufs_random(&b);
                s = slice_of(&b, 0, n, (zero_optim_w16_t)t);
                lamb_which = 0;
                kernels[k].run(&ctx, 1, &s);                       /* warm-up */
                t0 = zero_clock_now();
                for (int i = 0; i < iters; i++)
                    kernels[k].run(&ctx, 1, &s);
                ns = (zero_clock_now() - t0) * 1e9 / ((double)iters * (double)n);
                if (isa == 0)
                    c_ns = ns;
                printf("%-8s %-6s %-5s %10.3f %9.2f\n", kernels[k].name, zero_optim_isa_name((zero_optim_isa_t)isa),
                       t == 0 ? "none" : (t == ZERO_OPTIM_W16_BF16 ? "bf16" : "fp16"), ns, c_ns / ns);
            }
        }
    }
    bufs_free(&b);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--bench") == 0)
        return run_bench();
    return zero_test_main(argc, argv, suites);
}
