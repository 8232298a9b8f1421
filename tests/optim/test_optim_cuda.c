/*
 * lib/optim's CUDA kernels (optim_cuda.h) against the host C reference: every
 * update bit for bit (same per-element code, -fmad=false), the gradient
 * statistics and Lamb's sums within 1e-12 relative (summation order), the
 * gate's decisions (overflow skips the update and leaves the state alone,
 * clipping), and the conversions and accumulation bit for bit.
 * Exits 77 (meson: skipped) where the CUDA runtime reports no device.
 */
#include "test_main.h"
#include "optim/optim.h"
#include "optim/optim_cuda.h"
#include "optim/optim_elem.h"
#include "util/half.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 100003   /* not a multiple of any block size */

static uint64_t rng = 0x853c49e6748fea9bull;

static float uniform(float lo, float hi)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (hi - lo) * (float)(rng >> 40) / 16777216.0f;
}

static void fill(float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = uniform(lo, hi);
}

/* Host and device copies of the arrays one update touches. */
typedef struct arrays {
    float *w, *g, *ga, *s1, *s2;
    uint16_t *h;
    float *dw, *dg, *dga, *ds1, *ds2;
    uint16_t *dh;
    zero_cuda_gate_t *gate;
    double *scratch, *sums;
} arrays_t;

static void *dev_alloc(size_t bytes)
{
    void *p = NULL;
    CU_ASSERT_FATAL(cudaMalloc(&p, bytes) == cudaSuccess);
    return p;
}

static void up(void *d, const void *h, size_t bytes)
{
    CU_ASSERT_FATAL(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice) == cudaSuccess);
}

static void down(void *h, const void *d, size_t bytes)
{
    CU_ASSERT_FATAL(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
}

static void arrays_init(arrays_t *a)
{
    memset(a, 0, sizeof(*a));
    a->w = malloc(N * sizeof(float));
    a->g = malloc(N * sizeof(float));
    a->ga = malloc(N * sizeof(float));
    a->s1 = malloc(N * sizeof(float));
    a->s2 = malloc(N * sizeof(float));
    a->h = malloc(N * sizeof(uint16_t));
    CU_ASSERT_FATAL(a->w && a->g && a->ga && a->s1 && a->s2 && a->h);
    fill(a->w, N, -1.0f, 1.0f);
    fill(a->g, N, -1.0f, 1.0f);
    fill(a->ga, N, -0.5f, 0.5f);
    fill(a->s1, N, -0.1f, 0.1f);
    fill(a->s2, N, 0.0f, 0.01f);
    memset(a->h, 0, N * sizeof(uint16_t));
    a->dw = dev_alloc(N * sizeof(float));
    a->dg = dev_alloc(N * sizeof(float));
    a->dga = dev_alloc(N * sizeof(float));
    a->ds1 = dev_alloc(N * sizeof(float));
    a->ds2 = dev_alloc(N * sizeof(float));
    a->dh = dev_alloc(N * sizeof(uint16_t));
    a->gate = dev_alloc(sizeof(zero_cuda_gate_t));
    a->scratch = dev_alloc(ZERO_CUDA_STATS_SCRATCH * sizeof(double));
    a->sums = dev_alloc(2 * sizeof(double));
    up(a->dw, a->w, N * sizeof(float));
    up(a->dg, a->g, N * sizeof(float));
    up(a->dga, a->ga, N * sizeof(float));
    up(a->ds1, a->s1, N * sizeof(float));
    up(a->ds2, a->s2, N * sizeof(float));
    up(a->dh, a->h, N * sizeof(uint16_t));
}

static void arrays_free(arrays_t *a)
{
    free(a->w), free(a->g), free(a->ga), free(a->s1), free(a->s2), free(a->h);
    cudaFree(a->dw), cudaFree(a->dg), cudaFree(a->dga), cudaFree(a->ds1), cudaFree(a->ds2), cudaFree(a->dh);
    cudaFree(a->gate), cudaFree(a->scratch), cudaFree(a->sums);
}

/* Device arrays equal the host's, bit for bit. */
static int same(const void *host, const void *dev, size_t bytes)
{
    void *copy = malloc(bytes);
    int eq;
    CU_ASSERT_FATAL(copy != NULL);
    down(copy, dev, bytes);
    eq = memcmp(copy, host, bytes) == 0;
    free(copy);
    return eq;
}

static int close_rel(double a, double b, double tol)
{
    return fabs(a - b) <= tol * fmax(fabs(a), fabs(b));
}

/* Gradient statistics and the gate on the device, checked against the host;
 * returns the device's grad_scale, which the host reference then uses. */
static float run_gate(arrays_t *a, double loss_scale, double max_norm)
{
    zero_cuda_gate_t gate;
    double host_sq = 0.0;
    CU_ASSERT_FATAL(zero_cuda_gate_reset(a->gate, NULL) == 0);
    CU_ASSERT_FATAL(zero_cuda_grad_stats(a->dg, ZERO_FP32, N, a->gate, a->scratch, NULL) == 0);
    CU_ASSERT_FATAL(zero_cuda_gate_prepare(a->gate, loss_scale, max_norm, NULL) == 0);
    down(&gate, a->gate, sizeof(gate));
    for (size_t i = 0; i < N; i++)
        host_sq += (double)a->g[i] * a->g[i];
    CU_ASSERT_EQUAL(gate.nonfinite, 0.0);
    CU_ASSERT_EQUAL(gate.skip, 0);
    CU_ASSERT_TRUE(close_rel(gate.sumsq, host_sq, 1e-12));
    CU_ASSERT_TRUE(close_rel(gate.grad_norm, sqrt(host_sq) / loss_scale, 1e-12));
    double clip = zero_optim_clip_coef(sqrt(host_sq) / loss_scale, max_norm);
    CU_ASSERT_TRUE(close_rel(gate.grad_scale, clip / loss_scale, 1e-6));
    if (max_norm > 0.0)
        CU_ASSERT_TRUE(clip < 1.0f);   /* the case clips */
    return gate.grad_scale;
}

static void host_ctx(zero_optim_ctx_t *ctx)
{
    CU_ASSERT_FATAL(zero_optim_ctx_init(ctx, ZERO_OPTIM_ISA_C, NULL) == ZERO_OK);
}

static void test_adam(void)
{
    for (int variant = 0; variant < 4; variant++) {
        arrays_t a;
        zero_optim_ctx_t ctx;
        zero_optim_adam_params_t p;
        zero_adam_k_t k;
        int fused = variant & 1;
        zero_optim_w16_t t = (variant & 2) ? ZERO_OPTIM_W16_BF16 : ZERO_OPTIM_W16_FP16;
        arrays_init(&a);
        host_ctx(&ctx);
        zero_optim_adam_defaults(&p);
        p.lr = 1e-2f;
        p.weight_decay = 0.01f;
        p.step = 7;
        p.grad_scale = run_gate(&a, 4.0, 1.0);
        zero_optim_adam_k(&p, &k);
        CU_ASSERT_EQUAL(zero_cuda_adam(&k, a.gate, a.dw, a.dg, fused ? a.dga : NULL, a.ds1, a.ds2, a.dh, t, N,
                                       NULL), 0);
        zero_optim_slice_t s = {a.w, a.g, a.s1, a.s2, a.h, t, N};
        CU_ASSERT_EQUAL(zero_optim_adam_step_fused(&ctx, &p, &s, fused ? a.ga : NULL), ZERO_OK);
        CU_ASSERT_EQUAL(cudaDeviceSynchronize(), cudaSuccess);
        CU_ASSERT_TRUE(same(a.w, a.dw, N * sizeof(float)));
        CU_ASSERT_TRUE(same(a.s1, a.ds1, N * sizeof(float)));
        CU_ASSERT_TRUE(same(a.s2, a.ds2, N * sizeof(float)));
        CU_ASSERT_TRUE(same(a.h, a.dh, N * sizeof(uint16_t)));
        arrays_free(&a);
    }
}

static void test_sgd_adagrad_lion(void)
{
    arrays_t a;
    zero_optim_ctx_t ctx;
    float gs;
    host_ctx(&ctx);
    for (int which = 0; which < 3; which++) {
        arrays_init(&a);
        gs = run_gate(&a, 1.0, 0.0);
        CU_ASSERT_EQUAL(gs, 1.0f);
        zero_optim_slice_t s = {a.w, a.g, a.s1, NULL, a.h, ZERO_OPTIM_W16_BF16, N};
        if (which == 0) {
            zero_optim_sgd_params_t p;
            zero_sgd_k_t k;
            zero_optim_sgd_defaults(&p);
            p.lr = 0.05f, p.momentum = 0.9f, p.nesterov = 1, p.weight_decay = 1e-3f, p.step = 3;
            zero_optim_sgd_k(&p, &k);
            CU_ASSERT_EQUAL(zero_cuda_sgd(&k, a.gate, a.dw, a.dg, a.ds1, a.dh, ZERO_OPTIM_W16_BF16, N, NULL), 0);
            CU_ASSERT_EQUAL(zero_optim_sgd_step(&ctx, &p, &s), ZERO_OK);
        } else if (which == 1) {
            zero_optim_adagrad_params_t p;
            zero_adagrad_k_t k;
            zero_optim_adagrad_defaults(&p);
            p.lr_decay = 0.01f, p.weight_decay = 1e-2f, p.step = 5;
            for (size_t i = 0; i < N; i++)
                a.s1[i] = fabsf(a.s1[i]);
            up(a.ds1, a.s1, N * sizeof(float));
            zero_optim_adagrad_k(&p, &k);
            CU_ASSERT_EQUAL(zero_cuda_adagrad(&k, a.gate, a.dw, a.dg, a.ds1, a.dh, ZERO_OPTIM_W16_BF16, N, NULL), 0);
            CU_ASSERT_EQUAL(zero_optim_adagrad_step(&ctx, &p, &s), ZERO_OK);
        } else {
            zero_optim_lion_params_t p;
            zero_lion_k_t k;
            zero_optim_lion_defaults(&p);
            p.weight_decay = 0.1f;
            zero_optim_lion_k(&p, &k);
            CU_ASSERT_EQUAL(zero_cuda_lion(&k, a.gate, a.dw, a.dg, a.ds1, a.dh, ZERO_OPTIM_W16_BF16, N, NULL), 0);
            CU_ASSERT_EQUAL(zero_optim_lion_step(&ctx, &p, &s), ZERO_OK);
        }
        CU_ASSERT_EQUAL(cudaDeviceSynchronize(), cudaSuccess);
        CU_ASSERT_TRUE(same(a.w, a.dw, N * sizeof(float)));
        CU_ASSERT_TRUE(same(a.s1, a.ds1, N * sizeof(float)));
        CU_ASSERT_TRUE(same(a.h, a.dh, N * sizeof(uint16_t)));
        arrays_free(&a);
    }
}

static void test_lamb(void)
{
    arrays_t a;
    zero_optim_ctx_t ctx;
    zero_optim_lamb_params_t p;
    zero_lamb_k_t k;
    zero_optim_segment_t seg = {0, N};
    double host_w = 0.0, host_u = 0.0, dev_sums[2];
    arrays_init(&a);
    host_ctx(&ctx);
    zero_optim_lamb_defaults(&p);
    p.lr = 1e-2f, p.weight_decay = 0.01f, p.step = 2, p.max_coeff = 0.5f;
    p.grad_scale = run_gate(&a, 1.0, 0.0);
    zero_optim_lamb_k(&p, &k);
    CU_ASSERT_FATAL(cudaMemset(a.sums, 0, 2 * sizeof(double)) == cudaSuccess);
    CU_ASSERT_EQUAL(zero_cuda_lamb1(&k, a.gate, a.dw, a.dg, a.ds1, a.ds2, N, a.sums, a.scratch, NULL), 0);
    zero_optim_slice_t s = {a.w, a.g, a.s1, a.s2, a.h, ZERO_OPTIM_W16_FP16, N};
    CU_ASSERT_EQUAL(zero_optim_lamb_phase1(&ctx, &p, &s, &seg, 1, &host_w, &host_u), ZERO_OK);
    down(dev_sums, a.sums, sizeof(dev_sums));
    CU_ASSERT_TRUE(same(a.s1, a.ds1, N * sizeof(float)));
    CU_ASSERT_TRUE(same(a.s2, a.ds2, N * sizeof(float)));
    CU_ASSERT_TRUE(close_rel(dev_sums[0], host_w, 1e-12));
    CU_ASSERT_TRUE(close_rel(dev_sums[1], host_u, 1e-12));
    /* Phase 2 from the device's sums on both sides: then it is exact. */
    CU_ASSERT_EQUAL(zero_cuda_lamb2(&k, a.gate, zero_optim_lamb_step_size(&p), p.max_coeff, p.min_coeff, a.sums,
                                    a.dw, a.ds1, a.ds2, a.dh, ZERO_OPTIM_W16_FP16, N, NULL), 0);
    CU_ASSERT_EQUAL(zero_optim_lamb_phase2(&ctx, &p, &s, &seg, 1, &dev_sums[0], &dev_sums[1], NULL), ZERO_OK);
    CU_ASSERT_EQUAL(cudaDeviceSynchronize(), cudaSuccess);
    CU_ASSERT_TRUE(same(a.w, a.dw, N * sizeof(float)));
    CU_ASSERT_TRUE(same(a.h, a.dh, N * sizeof(uint16_t)));
    arrays_free(&a);
}

/* An inf in one 16-bit gradient: the gate says skip, the update leaves every
 * array as it was, and the norm reads +inf. */
static void test_overflow_skips(void)
{
    arrays_t a;
    zero_cuda_gate_t gate;
    zero_optim_adam_params_t p;
    zero_adam_k_t k;
    uint16_t *g16 = malloc(N * sizeof(uint16_t)), *dg16 = dev_alloc(N * sizeof(uint16_t));
    CU_ASSERT_FATAL(g16 != NULL);
    arrays_init(&a);
    for (size_t i = 0; i < N; i++)
        g16[i] = zero_f32_to_f16(a.g[i]);
    g16[N / 2] = 0x7c00u; /* +inf */
    up(dg16, g16, N * sizeof(uint16_t));
    CU_ASSERT_EQUAL(zero_cuda_gate_reset(a.gate, NULL), 0);
    CU_ASSERT_EQUAL(zero_cuda_grad_stats(dg16, ZERO_FP16, N, a.gate, a.scratch, NULL), 0);
    CU_ASSERT_EQUAL(zero_cuda_gate_prepare(a.gate, 1024.0, 1.0, NULL), 0);
    zero_optim_adam_defaults(&p);
    zero_optim_adam_k(&p, &k);
    CU_ASSERT_EQUAL(zero_cuda_adam(&k, a.gate, a.dw, a.dg, NULL, a.ds1, a.ds2, NULL, ZERO_OPTIM_W16_NONE, N, NULL), 0);
    down(&gate, a.gate, sizeof(gate));
    CU_ASSERT_EQUAL(gate.nonfinite, 1.0);
    CU_ASSERT_EQUAL(gate.skip, 1);
    CU_ASSERT_TRUE(isinf(gate.grad_norm));
    CU_ASSERT_TRUE(same(a.w, a.dw, N * sizeof(float)));
    CU_ASSERT_TRUE(same(a.s1, a.ds1, N * sizeof(float)));
    CU_ASSERT_TRUE(same(a.s2, a.ds2, N * sizeof(float)));
    arrays_free(&a);
    free(g16);
    cudaFree(dg16);
}

static void test_conversions_and_accumulate(void)
{
    arrays_t a;
    float *back = malloc(N * sizeof(float)), *acc = malloc(N * sizeof(float));
    uint16_t *h = malloc(N * sizeof(uint16_t));
    CU_ASSERT_FATAL(back && acc && h);
    arrays_init(&a);
    a.w[0] = NAN, a.w[1] = INFINITY, a.w[2] = 1e-40f, a.w[3] = 65520.0f, a.w[4] = -0.0f, a.w[5] = 3e-8f;
    up(a.dw, a.w, N * sizeof(float));
    for (int t = ZERO_OPTIM_W16_BF16; t <= ZERO_OPTIM_W16_FP16; t++) {
        int bf = t == ZERO_OPTIM_W16_BF16;
        for (size_t i = 0; i < N; i++) {
            h[i] = bf ? zero_f32_to_bf16(a.w[i]) : zero_f32_to_f16(a.w[i]);
            back[i] = bf ? zero_bf16_to_f32(h[i]) : zero_f16_to_f32(h[i]);
        }
        CU_ASSERT_EQUAL(zero_cuda_to_16(a.dh, a.dw, t, N, NULL), 0);
        CU_ASSERT_EQUAL(zero_cuda_from_16(a.dg, a.dh, t, N, NULL), 0);
        CU_ASSERT_EQUAL(cudaDeviceSynchronize(), cudaSuccess);
        CU_ASSERT_TRUE(same(h, a.dh, N * sizeof(uint16_t)));
        CU_ASSERT_TRUE(same(back, a.dg, N * sizeof(float)));
        /* acc += 16-bit gradients, in fp32 */
        for (size_t i = 0; i < N; i++)
            acc[i] = a.s1[i] + back[i];
        CU_ASSERT_EQUAL(zero_cuda_accumulate(a.ds1, a.dh, bf ? ZERO_BF16 : ZERO_FP16, N, NULL), 0);
        CU_ASSERT_TRUE(same(acc, a.ds1, N * sizeof(float)));
        memcpy(a.s1, acc, N * sizeof(float));
    }
    arrays_free(&a);
    free(back), free(acc), free(h);
}

/* A CUDA error pending before a launcher is not its kernel's: returned
 * negated (optim_cuda.h), nothing launched, the error left in place. A
 * non-sticky one here (cudaSetDevice(-1)); before, the kernels ran and each
 * call returned that error as its own launch's. */
static void test_earlier_error(void)
{
    arrays_t a;
    const int want = -(int)cudaErrorInvalidDevice;
    arrays_init(&a);
    up(a.dw, a.w, N * sizeof(float));
    CU_ASSERT_FATAL(cudaDeviceSynchronize() == cudaSuccess);
    CU_ASSERT(cudaSetDevice(-1) == cudaErrorInvalidDevice);   /* pending on this thread, not sticky */
    CU_ASSERT_EQUAL(zero_cuda_fill(a.dw, 7.0f, N, NULL), want);
    CU_ASSERT_EQUAL(zero_cuda_to_16(a.dh, a.dw, ZERO_OPTIM_W16_BF16, N, NULL), want);
    CU_ASSERT_EQUAL(zero_cuda_gate_set(a.gate, 1.0, 1.0f, 0, NULL), want);
    CU_ASSERT_EQUAL(zero_cuda_grad_stats(a.dg, ZERO_FP32, N, a.gate, a.scratch, NULL), want);
    CU_ASSERT_EQUAL(cudaGetLastError(), cudaErrorInvalidDevice);   /* still there for its owner; now read */
    CU_ASSERT_TRUE(same(a.w, a.dw, N * sizeof(float)));             /* the fill did not run */
    CU_ASSERT_EQUAL(zero_cuda_fill(a.dw, 7.0f, N, NULL), 0);         /* read: launches again */
    CU_ASSERT_EQUAL(cudaDeviceSynchronize(), cudaSuccess);
    arrays_free(&a);
}

static CU_TestInfo cuda_tests[] = {
    {"adam/adamw (fused addend, bf16/fp16 copies) == host reference", test_adam},
    {"sgd, adagrad, lion == host reference", test_sgd_adagrad_lion},
    {"lamb both phases == host reference", test_lamb},
    {"overflow: the gate skips the update", test_overflow_skips},
    {"conversions and fp32 accumulation", test_conversions_and_accumulate},
    {"an earlier CUDA error is not the kernel's", test_earlier_error},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"optim-cuda", NULL, NULL, NULL, NULL, cuda_tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        printf("no CUDA device (%s): skipped\n", err != cudaSuccess ? cudaGetErrorString(err) : "count 0");
        return 77;
    }
    return zero_test_main(argc, argv, suites);
}
