#define ZERO_LOG_MODULE "optim"
#include "optim/optim.h"
#include "optim/optim_elem.h"
#include "util/alloc.h"
#include "util/half.h"
#include "util/log.h"

#include "util/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

_Static_assert((int)ZERO_OPTIM_ISA_C == (int)ZERO_CPU_ISA_C && (int)ZERO_OPTIM_ISA_AVX2 == (int)ZERO_CPU_ISA_AVX2 &&
                   (int)ZERO_OPTIM_ISA_AVX512 == (int)ZERO_CPU_ISA_AVX512,
               "zero_optim_isa_t mirrors zero_cpu_isa_t");

/* ---- instruction set selection ---- */

zero_optim_isa_t zero_optim_isa_detect(void)
{
    return (zero_optim_isa_t)zero_cpu_isa_detect();   /* the levels are the same (util/cpu.h) */
}

const char *zero_optim_isa_name(zero_optim_isa_t isa)
{
    switch (isa) {
    case ZERO_OPTIM_ISA_AUTO: return "auto";
    case ZERO_OPTIM_ISA_C: return "c";
    case ZERO_OPTIM_ISA_AVX2: return "avx2";
    case ZERO_OPTIM_ISA_AVX512: return "avx512";
    default: return "unknown";
    }
}

zero_status_t zero_optim_ctx_init(zero_optim_ctx_t *ctx, zero_optim_isa_t isa, zero_thread_pool_t *pool)
{
    if (ctx == NULL) {
        ZERO_LOG_ERROR("optimizer context is NULL");
        return ZERO_ERR_INVALID_ARG;
    }
    if (isa == ZERO_OPTIM_ISA_AUTO) {
        zero_cpu_isa_t chosen;
        zero_status_t status = zero_cpu_isa_choose("optimizer kernels", &chosen);
        if (status != ZERO_OK)
            return status;
        isa = (zero_optim_isa_t)chosen;
    } else {
        zero_status_t status = zero_cpu_isa_check((zero_cpu_isa_t)isa, "optimizer kernels");
        if (status != ZERO_OK)
            return status;
    }
    memset(ctx, 0, sizeof(*ctx));
    zero_optim_dsp_init_c(&ctx->dsp);
    if (isa >= ZERO_OPTIM_ISA_AVX2)
        zero_optim_dsp_init_avx2(&ctx->dsp);
    if (isa >= ZERO_OPTIM_ISA_AVX512)
        zero_optim_dsp_init_avx512(&ctx->dsp);
    ctx->isa = isa;
    ctx->pool = pool;
    ctx->chunk = ZERO_OPTIM_DEFAULT_CHUNK;
    return ZERO_OK;
}

zero_status_t zero_optim_ctx_set_chunk(zero_optim_ctx_t *ctx, size_t chunk)
{
    if (ctx == NULL || chunk < 64 || chunk % 64 != 0) {
        ZERO_LOG_ERROR("optimizer chunk must be a positive multiple of 64 elements, got %zu", chunk);
        return ZERO_ERR_INVALID_ARG;
    }
    ctx->chunk = chunk;
    return ZERO_OK;
}

/* ---- chunked, threaded execution ---- */

typedef void (*chunk_fn_t)(void *arg, size_t task, size_t begin, size_t end);

typedef struct chunk_job {
    chunk_fn_t fn;
    void *arg;
    size_t n, chunk;
} chunk_job_t;

static void chunk_trampoline(void *raw, size_t task, int thread_index)
{
    chunk_job_t *job = raw;
    size_t begin = task * job->chunk;
    size_t end = begin + job->chunk < job->n ? begin + job->chunk : job->n;
    (void)thread_index;
    job->fn(job->arg, task, begin, end);
}

static size_t chunk_count(const zero_optim_ctx_t *ctx, size_t n)
{
    return (n + ctx->chunk - 1) / ctx->chunk;
}

static void for_chunks(const zero_optim_ctx_t *ctx, size_t n, chunk_fn_t fn, void *arg)
{
    chunk_job_t job = {fn, arg, n, ctx->chunk};
    zero_thread_pool_parallel_for(ctx->pool, chunk_count(ctx, n), chunk_trampoline, &job);
}

static zero_status_t check_ctx(const zero_optim_ctx_t *ctx, const void *params)
{
    if (ctx == NULL || params == NULL || ctx->chunk < 64 || ctx->chunk % 64 != 0) {
        ZERO_LOG_ERROR("optimizer call without a valid context or parameters");
        return ZERO_ERR_INVALID_ARG;
    }
    return ZERO_OK;
}

static zero_status_t check_slice(const char *what, const zero_optim_slice_t *s, int need_g, int need_s1,
                                 int need_s2)
{
    if (s == NULL) {
        ZERO_LOG_ERROR("%s: slice is NULL", what);
        return ZERO_ERR_INVALID_ARG;
    }
    if (s->n == 0)
        return ZERO_OK;
    if (s->w == NULL || (need_g && s->g == NULL) || (need_s1 && s->s1 == NULL) || (need_s2 && s->s2 == NULL)) {
        ZERO_LOG_ERROR("%s: a weight, gradient or state buffer of a %zu-element slice is NULL", what, s->n);
        return ZERO_ERR_INVALID_ARG;
    }
    if ((int)s->w16_type < 0 || s->w16_type >= ZERO_OPTIM_W16_COUNT ||
        (s->w16_type != ZERO_OPTIM_W16_NONE && s->w16 == NULL)) {
        ZERO_LOG_ERROR("%s: 16-bit output type %d without a valid buffer", what, (int)s->w16_type);
        return ZERO_ERR_INVALID_ARG;
    }
    return ZERO_OK;
}

static int beta_ok(float b)
{
    return b >= 0.0f && b < 1.0f;
}

/* Scalars derived in double and rounded once, as torch does with its Python
 * float hyper-parameters. */
static float one_minus(float x)
{
    return (float)(1.0 - (double)x);
}

static float decay_factor(float lr, float wd)
{
    return (float)(1.0 - (double)lr * (double)wd);
}

static uint16_t *w16_at(const zero_optim_slice_t *s, size_t i)
{
    return s->w16_type != ZERO_OPTIM_W16_NONE ? s->w16 + i : NULL;
}

/* 16-bit gradients (the *_step_g16 calls): widened G16_BLOCK at a time into
 * a buffer on the worker's stack (2 KiB, in L1), so an fp32 copy of the
 * gradient is never stored. The elementwise kernels give the same bits for
 * any cut of a slice, so blocks change nothing in the result. */
#define G16_BLOCK ((size_t)512)

typedef struct g16_src {
    const uint16_t *g;          /* NULL: the slice's fp32 s->g */
    zero_optim_w16_t type;
} g16_src_t;

static const g16_src_t no_g16 = {NULL, ZERO_OPTIM_W16_NONE};

static zero_status_t check_g16(const char *what, const zero_optim_slice_t *s, const g16_src_t *g16)
{
    if (s != NULL && s->n > 0 && g16->g == NULL) {
        ZERO_LOG_ERROR("%s: the 16-bit gradient of a %zu-element slice is NULL", what, s->n);
        return ZERO_ERR_INVALID_ARG;
    }
    if (g16->type != ZERO_OPTIM_W16_BF16 && g16->type != ZERO_OPTIM_W16_FP16) {
        ZERO_LOG_ERROR("%s: 16-bit gradient type %d is neither bf16 nor fp16", what, (int)g16->type);
        return ZERO_ERR_INVALID_ARG;
    }
    return ZERO_OK;
}

/* A kernel over elements [i, i + m) of a job's slice with fp32 gradients @p g
 * (g[0] is element i's): each optimizer's one call of its dispatch entry. */
typedef void (*g32_block_fn)(void *job, size_t i, const float *g, size_t m);

/* The 16-bit path of every chunk function: [b, e) widened a block at a time
 * into the worker's stack, each block handed to @p fn. Each block's
 * gradients are read before @p fn writes its 16-bit weights, so the weights
 * may overwrite the gradients' own buffer (a CPU offload slot). */
static void g16_blocks(const zero_optim_ctx_t *ctx, const g16_src_t *g16, size_t b, size_t e, g32_block_fn fn,
                       void *job)
{
    float g[G16_BLOCK];
    for (size_t i = b, m; i < e; i += m) {
        m = e - i < G16_BLOCK ? e - i : G16_BLOCK;
        ctx->dsp.from_16[g16->type](g, g16->g + i, m);
        fn(job, i, g, m);
    }
}

/* ---- Adam / AdamW ---- */

void zero_optim_adam_defaults(zero_optim_adam_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->lr = 1e-3f;
    p->beta1 = 0.9f;
    p->beta2 = 0.999f;
    p->eps = 1e-8f;
    p->adam_w_mode = 1;
    p->bias_correction = 1;
    p->step = 1;
    p->grad_scale = 1.0f;
}

typedef struct adam_job {
    const zero_optim_ctx_t *ctx;
    const zero_optim_slice_t *s;
    const float *g_add;        /* NULL, or the fused second addend of the gradient */
    g16_src_t g16;
    zero_adam_k_t k;
} adam_job_t;

static void adam_block(void *raw, size_t i, const float *g, size_t m)
{
    adam_job_t *j = raw;
    const zero_optim_slice_t *s = j->s;
    j->ctx->dsp.adam(&j->k, s->w + i, g, s->s1 + i, s->s2 + i, w16_at(s, i), (int)s->w16_type, m);
}

static void adam_chunk(void *raw, size_t task, size_t b, size_t e)
{
    adam_job_t *j = raw;
    const zero_optim_slice_t *s = j->s;
    (void)task;
    if (j->g16.g != NULL)
        g16_blocks(j->ctx, &j->g16, b, e, adam_block, j);
    else if (j->g_add)
        j->ctx->dsp.adam_add(&j->k, s->w + b, s->g + b, j->g_add + b, s->s1 + b, s->s2 + b, w16_at(s, b),
                             (int)s->w16_type, e - b);
    else
        adam_block(j, b, s->g + b, e - b);
}

void zero_optim_adam_k(const zero_optim_adam_params_t *p, zero_adam_k_t *k)
{
    k->grad_scale = p->grad_scale;
    k->beta1 = p->beta1;
    k->one_minus_beta1 = one_minus(p->beta1);
    k->beta2 = p->beta2;
    k->one_minus_beta2 = one_minus(p->beta2);
    k->eps = p->eps;
    if (p->bias_correction) {
        double bc1 = 1.0 - pow((double)p->beta1, (double)p->step);
        double bc2 = 1.0 - pow((double)p->beta2, (double)p->step);
        k->step_size = (float)(p->lr / bc1);
        k->bc2_rsqrt = (float)(1.0 / sqrt(bc2));
    } else {
        k->step_size = p->lr;
        k->bc2_rsqrt = 1.0f;
    }
    k->decay_mul = p->adam_w_mode ? decay_factor(p->lr, p->weight_decay) : 1.0f;
    k->l2_wd = p->adam_w_mode ? 0.0f : p->weight_decay;
}

static zero_status_t adam_run(const zero_optim_ctx_t *ctx, const zero_optim_adam_params_t *p,
                              const zero_optim_slice_t *s, const float *g_add, g16_src_t g16)
{
    adam_job_t job;
    zero_status_t status;

    if ((status = check_ctx(ctx, p)) != ZERO_OK || (status = check_slice("adam", s, g16.g == NULL, 1, 1)) != ZERO_OK)
        return status;
    if (p->step < 1 || !beta_ok(p->beta1) || !beta_ok(p->beta2) || !(p->lr >= 0.0f) || !(p->eps >= 0.0f) ||
        !(p->weight_decay >= 0.0f)) {
        ZERO_LOG_ERROR("adam: invalid hyper-parameters (step %lld, betas %g %g, lr %g, eps %g, weight_decay %g)",
                       (long long)p->step, p->beta1, p->beta2, p->lr, p->eps, p->weight_decay);
        return ZERO_ERR_INVALID_ARG;
    }
    job.ctx = ctx;
    job.s = s;
    job.g_add = s->n > 0 ? g_add : NULL;
    job.g16 = g16;
    zero_optim_adam_k(p, &job.k);
    for_chunks(ctx, s->n, adam_chunk, &job);
    return ZERO_OK;
}

zero_status_t zero_optim_adam_step(const zero_optim_ctx_t *ctx, const zero_optim_adam_params_t *p,
                                   const zero_optim_slice_t *s)
{
    return adam_run(ctx, p, s, NULL, no_g16);
}

zero_status_t zero_optim_adam_step_fused(const zero_optim_ctx_t *ctx, const zero_optim_adam_params_t *p,
                                         const zero_optim_slice_t *s, const float *g_add)
{
    return adam_run(ctx, p, s, g_add, no_g16);
}

zero_status_t zero_optim_adam_step_g16(const zero_optim_ctx_t *ctx, const zero_optim_adam_params_t *p,
                                       const zero_optim_slice_t *s, const uint16_t *g16, zero_optim_w16_t g16_type)
{
    g16_src_t src = {g16, g16_type};
    zero_status_t status = check_g16("adam", s, &src);
    return status != ZERO_OK ? status : adam_run(ctx, p, s, NULL, src);
}

/* ---- SGD ---- */

void zero_optim_sgd_defaults(zero_optim_sgd_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->lr = 1e-3f;
    p->step = 1;
    p->grad_scale = 1.0f;
}

typedef struct sgd_job {
    const zero_optim_ctx_t *ctx;
    const zero_optim_slice_t *s;
    g16_src_t g16;
    zero_sgd_k_t k;
} sgd_job_t;

static void sgd_block(void *raw, size_t i, const float *g, size_t m)
{
    sgd_job_t *j = raw;
    const zero_optim_slice_t *s = j->s;
    j->ctx->dsp.sgd(&j->k, s->w + i, g, j->k.momentum != 0.0f ? s->s1 + i : NULL, w16_at(s, i),
                    (int)s->w16_type, m);
}

static void sgd_chunk(void *raw, size_t task, size_t b, size_t e)
{
    sgd_job_t *j = raw;
    (void)task;
    if (j->g16.g != NULL)
        g16_blocks(j->ctx, &j->g16, b, e, sgd_block, j);
    else
        sgd_block(j, b, j->s->g + b, e - b);
}

void zero_optim_sgd_k(const zero_optim_sgd_params_t *p, zero_sgd_k_t *k)
{
    k->grad_scale = p->grad_scale;
    k->lr = p->lr;
    k->weight_decay = p->weight_decay;
    k->momentum = p->momentum;
    k->one_minus_dampening = one_minus(p->dampening);
    k->first_step = p->step == 1;
    k->nesterov = p->nesterov != 0;
}

static zero_status_t sgd_run(const zero_optim_ctx_t *ctx, const zero_optim_sgd_params_t *p, const zero_optim_slice_t *s,
                              g16_src_t g16)
{
    sgd_job_t job;
    zero_status_t status;

    if ((status = check_ctx(ctx, p)) != ZERO_OK ||
        (status = check_slice("sgd", s, g16.g == NULL, p->momentum != 0.0f, 0)) != ZERO_OK)
        return status;
    if (p->step < 1 || !(p->lr >= 0.0f) || !(p->momentum >= 0.0f) || !(p->weight_decay >= 0.0f) ||
        (p->nesterov && (p->momentum <= 0.0f || p->dampening != 0.0f))) {
        ZERO_LOG_ERROR("sgd: invalid hyper-parameters (step %lld, lr %g, momentum %g, dampening %g, "
                       "weight_decay %g, nesterov %d; nesterov needs momentum > 0 and no dampening)",
                       (long long)p->step, p->lr, p->momentum, p->dampening, p->weight_decay, p->nesterov);
        return ZERO_ERR_INVALID_ARG;
    }
    job.ctx = ctx;
    job.s = s;
    job.g16 = g16;
    zero_optim_sgd_k(p, &job.k);
    for_chunks(ctx, s->n, sgd_chunk, &job);
    return ZERO_OK;
}

zero_status_t zero_optim_sgd_step(const zero_optim_ctx_t *ctx, const zero_optim_sgd_params_t *p,
                              const zero_optim_slice_t *s)
{
    return sgd_run(ctx, p, s, no_g16);
}

zero_status_t zero_optim_sgd_step_g16(const zero_optim_ctx_t *ctx, const zero_optim_sgd_params_t *p,
                                  const zero_optim_slice_t *s, const uint16_t *g16, zero_optim_w16_t g16_type)
{
    g16_src_t src = {g16, g16_type};
    zero_status_t status = check_g16("sgd", s, &src);
    return status != ZERO_OK ? status : sgd_run(ctx, p, s, src);
}

/* ---- Adagrad ---- */

void zero_optim_adagrad_defaults(zero_optim_adagrad_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->lr = 1e-2f;
    p->eps = 1e-10f;
    p->step = 1;
    p->grad_scale = 1.0f;
}

typedef struct adagrad_job {
    const zero_optim_ctx_t *ctx;
    const zero_optim_slice_t *s;
    g16_src_t g16;
    zero_adagrad_k_t k;
} adagrad_job_t;

static void adagrad_block(void *raw, size_t i, const float *g, size_t m)
{
    adagrad_job_t *j = raw;
    const zero_optim_slice_t *s = j->s;
    j->ctx->dsp.adagrad(&j->k, s->w + i, g, s->s1 + i, w16_at(s, i), (int)s->w16_type, m);
}

static void adagrad_chunk(void *raw, size_t task, size_t b, size_t e)
{
    adagrad_job_t *j = raw;
    (void)task;
    if (j->g16.g != NULL)
        g16_blocks(j->ctx, &j->g16, b, e, adagrad_block, j);
    else
        adagrad_block(j, b, j->s->g + b, e - b);
}

void zero_optim_adagrad_k(const zero_optim_adagrad_params_t *p, zero_adagrad_k_t *k)
{
    k->grad_scale = p->grad_scale;
    k->clr = (float)((double)p->lr / (1.0 + (double)(p->step - 1) * p->lr_decay));
    k->weight_decay = p->weight_decay;
    k->eps = p->eps;
}

static zero_status_t adagrad_run(const zero_optim_ctx_t *ctx, const zero_optim_adagrad_params_t *p, const zero_optim_slice_t *s,
                              g16_src_t g16)
{
    adagrad_job_t job;
    zero_status_t status;

    if ((status = check_ctx(ctx, p)) != ZERO_OK || (status = check_slice("adagrad", s, g16.g == NULL, 1, 0)) != ZERO_OK)
        return status;
    if (p->step < 1 || !(p->lr >= 0.0f) || !(p->lr_decay >= 0.0f) || !(p->eps >= 0.0f) ||
        !(p->weight_decay >= 0.0f)) {
        ZERO_LOG_ERROR("adagrad: invalid hyper-parameters (step %lld, lr %g, lr_decay %g, eps %g, weight_decay %g)",
                       (long long)p->step, p->lr, p->lr_decay, p->eps, p->weight_decay);
        return ZERO_ERR_INVALID_ARG;
    }
    job.ctx = ctx;
    job.s = s;
    job.g16 = g16;
    zero_optim_adagrad_k(p, &job.k);
    for_chunks(ctx, s->n, adagrad_chunk, &job);
    return ZERO_OK;
}

zero_status_t zero_optim_adagrad_step(const zero_optim_ctx_t *ctx, const zero_optim_adagrad_params_t *p,
                              const zero_optim_slice_t *s)
{
    return adagrad_run(ctx, p, s, no_g16);
}

zero_status_t zero_optim_adagrad_step_g16(const zero_optim_ctx_t *ctx, const zero_optim_adagrad_params_t *p,
                                  const zero_optim_slice_t *s, const uint16_t *g16, zero_optim_w16_t g16_type)
{
    g16_src_t src = {g16, g16_type};
    zero_status_t status = check_g16("adagrad", s, &src);
    return status != ZERO_OK ? status : adagrad_run(ctx, p, s, src);
}

zero_status_t zero_optim_adagrad_init_state(const zero_optim_ctx_t *ctx, const zero_optim_adagrad_params_t *p,
                                            float *sum, size_t n)
{
    zero_status_t status;
    if ((status = check_ctx(ctx, p)) != ZERO_OK)
        return status;
    if (n > 0 && sum == NULL) {
        ZERO_LOG_ERROR("adagrad: state buffer of %zu elements is NULL", n);
        return ZERO_ERR_INVALID_ARG;
    }
    if (!(p->initial_accumulator_value >= 0.0f)) {
        ZERO_LOG_ERROR("adagrad: initial_accumulator_value %g is negative", p->initial_accumulator_value);
        return ZERO_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < n; i++)
        sum[i] = p->initial_accumulator_value;
    return ZERO_OK;
}

/* ---- Lion ---- */

void zero_optim_lion_defaults(zero_optim_lion_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->lr = 1e-4f;
    p->beta1 = 0.9f;
    p->beta2 = 0.99f;
    p->grad_scale = 1.0f;
}

typedef struct lion_job {
    const zero_optim_ctx_t *ctx;
    const zero_optim_slice_t *s;
    g16_src_t g16;
    zero_lion_k_t k;
} lion_job_t;

static void lion_block(void *raw, size_t i, const float *g, size_t m)
{
    lion_job_t *j = raw;
    const zero_optim_slice_t *s = j->s;
    j->ctx->dsp.lion(&j->k, s->w + i, g, s->s1 + i, w16_at(s, i), (int)s->w16_type, m);
}

static void lion_chunk(void *raw, size_t task, size_t b, size_t e)
{
    lion_job_t *j = raw;
    (void)task;
    if (j->g16.g != NULL)
        g16_blocks(j->ctx, &j->g16, b, e, lion_block, j);
    else
        lion_block(j, b, j->s->g + b, e - b);
}

void zero_optim_lion_k(const zero_optim_lion_params_t *p, zero_lion_k_t *k)
{
    k->grad_scale = p->grad_scale;
    k->lr = p->lr;
    k->beta1 = p->beta1;
    k->one_minus_beta1 = one_minus(p->beta1);
    k->beta2 = p->beta2;
    k->one_minus_beta2 = one_minus(p->beta2);
    k->decay_mul = decay_factor(p->lr, p->weight_decay);
}

static zero_status_t lion_run(const zero_optim_ctx_t *ctx, const zero_optim_lion_params_t *p, const zero_optim_slice_t *s,
                              g16_src_t g16)
{
    lion_job_t job;
    zero_status_t status;

    if ((status = check_ctx(ctx, p)) != ZERO_OK || (status = check_slice("lion", s, g16.g == NULL, 1, 0)) != ZERO_OK)
        return status;
    if (!beta_ok(p->beta1) || !beta_ok(p->beta2) || !(p->lr >= 0.0f) || !(p->weight_decay >= 0.0f)) {
        ZERO_LOG_ERROR("lion: invalid hyper-parameters (betas %g %g, lr %g, weight_decay %g)",
                       p->beta1, p->beta2, p->lr, p->weight_decay);
        return ZERO_ERR_INVALID_ARG;
    }
    job.ctx = ctx;
    job.s = s;
    job.g16 = g16;
    zero_optim_lion_k(p, &job.k);
    for_chunks(ctx, s->n, lion_chunk, &job);
    return ZERO_OK;
}

zero_status_t zero_optim_lion_step(const zero_optim_ctx_t *ctx, const zero_optim_lion_params_t *p,
                              const zero_optim_slice_t *s)
{
    return lion_run(ctx, p, s, no_g16);
}

zero_status_t zero_optim_lion_step_g16(const zero_optim_ctx_t *ctx, const zero_optim_lion_params_t *p,
                                  const zero_optim_slice_t *s, const uint16_t *g16, zero_optim_w16_t g16_type)
{
    g16_src_t src = {g16, g16_type};
    zero_status_t status = check_g16("lion", s, &src);
    return status != ZERO_OK ? status : lion_run(ctx, p, s, src);
}

/* ---- Lamb ---- */

void zero_optim_lamb_defaults(zero_optim_lamb_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->lr = 1e-3f;
    p->beta1 = 0.9f;
    p->beta2 = 0.999f;
    p->eps = 1e-8f;
    p->max_coeff = 10.0f;
    p->min_coeff = 0.01f;
    p->bias_correction = 1;
    p->step = 1;
    p->grad_scale = 1.0f;
}

/* One task: a chunk of one segment. */
typedef struct lamb_task {
    size_t seg, begin, end;
} lamb_task_t;

typedef struct lamb_job {
    const zero_optim_ctx_t *ctx;
    const zero_optim_slice_t *s;
    zero_lamb_k_t k;
    const lamb_task_t *tasks;
    double *partial;           /* phase 1: 2 per task */
    const float *coef;         /* phase 2: per segment */
} lamb_job_t;

void zero_optim_lamb_k(const zero_optim_lamb_params_t *p, zero_lamb_k_t *k)
{
    k->grad_scale = p->grad_scale;
    k->beta1 = p->beta1;
    k->one_minus_beta1 = one_minus(p->beta1);
    k->beta2 = p->beta2;
    k->one_minus_beta2 = one_minus(p->beta2);
    k->eps = p->eps;
    k->eps_inside_sqrt = p->eps_inside_sqrt != 0;
    k->weight_decay = p->weight_decay;
}

static zero_status_t lamb_check(const char *what, const zero_optim_ctx_t *ctx, const zero_optim_lamb_params_t *p,
                                const zero_optim_slice_t *s, int need_g, const zero_optim_segment_t *segs,
                                size_t nseg)
{
    zero_status_t status;
    size_t prev_end = 0;
    if ((status = check_ctx(ctx, p)) != ZERO_OK || (status = check_slice(what, s, need_g, 1, 1)) != ZERO_OK)
        return status;
    if (p->step < 1 || !beta_ok(p->beta1) || !beta_ok(p->beta2) || !(p->lr >= 0.0f) || !(p->eps >= 0.0f) ||
        !(p->weight_decay >= 0.0f) || !(p->min_coeff >= 0.0f) || !(p->max_coeff >= p->min_coeff)) {
        ZERO_LOG_ERROR("%s: invalid hyper-parameters (step %lld, betas %g %g, lr %g, eps %g, weight_decay %g, "
                       "coeff range [%g, %g])", what, (long long)p->step, p->beta1, p->beta2, p->lr, p->eps,
                       p->weight_decay, p->min_coeff, p->max_coeff);
        return ZERO_ERR_INVALID_ARG;
    }
    if (nseg > 0 && segs == NULL) {
        ZERO_LOG_ERROR("%s: %zu segments but no segment list", what, nseg);
        return ZERO_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < nseg; i++) {
        if (segs[i].start < prev_end || segs[i].len > s->n || segs[i].start > s->n - segs[i].len) {
            ZERO_LOG_ERROR("%s: segment %zu (start %zu, len %zu) overlaps the previous one or leaves the "
                           "%zu-element slice", what, i, segs[i].start, segs[i].len, s->n);
            return ZERO_ERR_INVALID_ARG;
        }
        prev_end = segs[i].start + segs[i].len;
    }
    return ZERO_OK;
}

/* Cuts every segment into chunks; *tasks_p is zero_malloc'ed (NULL when there are none). */
static zero_status_t lamb_tasks(const zero_optim_ctx_t *ctx, const zero_optim_segment_t *segs, size_t nseg,
                                lamb_task_t **tasks_p, size_t *count_p)
{
    size_t count = 0, t = 0;
    lamb_task_t *tasks;
    for (size_t i = 0; i < nseg; i++)
        count += chunk_count(ctx, segs[i].len);
    *tasks_p = NULL;
    *count_p = 0;
    if (count == 0)
        return ZERO_OK;
    tasks = zero_malloc(count * sizeof(*tasks));
    if (tasks == NULL) {
        ZERO_LOG_ERROR("lamb: out of memory for %zu task descriptors", count);
        return ZERO_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < nseg; i++) {
        for (size_t off = 0; off < segs[i].len; off += ctx->chunk) {
            tasks[t].seg = i;
            tasks[t].begin = segs[i].start + off;
            tasks[t].end = segs[i].start + (off + ctx->chunk < segs[i].len ? off + ctx->chunk : segs[i].len);
            t++;
        }
    }
    *tasks_p = tasks;
    *count_p = count;
    return ZERO_OK;
}

static void lamb1_task(void *raw, size_t task, int thread_index)
{
    lamb_job_t *j = raw;
    const lamb_task_t *t = &j->tasks[task];
    const zero_optim_slice_t *s = j->s;
    double *out = &j->partial[2 * task];
    (void)thread_index;
    out[0] = 0.0;
    out[1] = 0.0;
    j->ctx->dsp.lamb1(&j->k, s->w + t->begin, s->g + t->begin, s->s1 + t->begin, s->s2 + t->begin,
                      t->end - t->begin, &out[0], &out[1]);
}

zero_status_t zero_optim_lamb_phase1(const zero_optim_ctx_t *ctx, const zero_optim_lamb_params_t *p,
                                     const zero_optim_slice_t *s, const zero_optim_segment_t *segs,
                                     size_t nseg, double *w_sq_p, double *u_sq_p)
{
    lamb_job_t job;
    lamb_task_t *tasks = NULL;
    size_t count = 0;
    zero_status_t status;

    if ((status = lamb_check("lamb phase 1", ctx, p, s, 1, segs, nseg)) != ZERO_OK)
        return status;
    if (nseg > 0 && (w_sq_p == NULL || u_sq_p == NULL)) {
        ZERO_LOG_ERROR("lamb phase 1: output arrays for %zu segments are NULL", nseg);
        return ZERO_ERR_INVALID_ARG;
    }
    if ((status = lamb_tasks(ctx, segs, nseg, &tasks, &count)) != ZERO_OK)
        return status;
    memset(&job, 0, sizeof(job));
    job.ctx = ctx;
    job.s = s;
    job.tasks = tasks;
    zero_optim_lamb_k(p, &job.k);
    if (count > 0) {
        job.partial = zero_malloc(2 * count * sizeof(double));
        if (job.partial == NULL) {
            ZERO_LOG_ERROR("lamb phase 1: out of memory for %zu partial sums", 2 * count);
            status = ZERO_ERR_NO_MEMORY;
            goto out_tasks;
        }
        zero_thread_pool_parallel_for(ctx->pool, count, lamb1_task, &job);
    }
    /* Outputs written only now, summed in task order: independent of threads. */
    for (size_t i = 0; i < nseg; i++) {
        w_sq_p[i] = 0.0;
        u_sq_p[i] = 0.0;
    }
    for (size_t t = 0; t < count; t++) {
        w_sq_p[tasks[t].seg] += job.partial[2 * t];
        u_sq_p[tasks[t].seg] += job.partial[2 * t + 1];
    }
    zero_free(job.partial);
out_tasks:
    zero_free(tasks);
    return status;
}

float zero_optim_lamb_ratio(const zero_optim_lamb_params_t *p, double w_sq, double u_sq)
{
    return zero_elem_lamb_ratio(w_sq, u_sq, p->max_coeff, p->min_coeff);
}

double zero_optim_lamb_step_size(const zero_optim_lamb_params_t *p)
{
    if (p->bias_correction) {
        double bc1 = 1.0 - pow((double)p->beta1, (double)p->step);
        double bc2 = 1.0 - pow((double)p->beta2, (double)p->step);
        return (double)p->lr * sqrt(bc2) / bc1;
    }
    return p->lr;
}

static void lamb2_task(void *raw, size_t task, int thread_index)
{
    lamb_job_t *j = raw;
    const lamb_task_t *t = &j->tasks[task];
    const zero_optim_slice_t *s = j->s;
    (void)thread_index;
    j->ctx->dsp.lamb2(&j->k, j->coef[t->seg], s->w + t->begin, s->s1 + t->begin, s->s2 + t->begin,
                      w16_at(s, t->begin), (int)s->w16_type, t->end - t->begin);
}

zero_status_t zero_optim_lamb_phase2(const zero_optim_ctx_t *ctx, const zero_optim_lamb_params_t *p,
                                     const zero_optim_slice_t *s, const zero_optim_segment_t *segs,
                                     size_t nseg, const double *w_sq, const double *u_sq, float *ratio_p)
{
    lamb_job_t job;
    lamb_task_t *tasks = NULL;
    float *coef = NULL;
    size_t count = 0;
    double step_size = p != NULL ? p->lr : 0.0;
    zero_status_t status;

    if ((status = lamb_check("lamb phase 2", ctx, p, s, 0, segs, nseg)) != ZERO_OK)
        return status;
    if (nseg > 0 && (w_sq == NULL || u_sq == NULL)) {
        ZERO_LOG_ERROR("lamb phase 2: norm arrays for %zu segments are NULL", nseg);
        return ZERO_ERR_INVALID_ARG;
    }
    if (nseg == 0)
        return ZERO_OK;
    step_size = zero_optim_lamb_step_size(p);
    coef = zero_malloc(nseg * sizeof(*coef));
    if (coef == NULL) {
        ZERO_LOG_ERROR("lamb phase 2: out of memory for %zu coefficients", nseg);
        return ZERO_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < nseg; i++)
        coef[i] = (float)step_size * zero_optim_lamb_ratio(p, w_sq[i], u_sq[i]);
    if ((status = lamb_tasks(ctx, segs, nseg, &tasks, &count)) != ZERO_OK)
        goto out_coef;
    memset(&job, 0, sizeof(job));
    job.ctx = ctx;
    job.s = s;
    job.tasks = tasks;
    job.coef = coef;
    zero_optim_lamb_k(p, &job.k);
    zero_thread_pool_parallel_for(ctx->pool, count, lamb2_task, &job);
    if (ratio_p != NULL)
        for (size_t i = 0; i < nseg; i++)
            ratio_p[i] = zero_optim_lamb_ratio(p, w_sq[i], u_sq[i]);
    zero_free(tasks);
out_coef:
    zero_free(coef);
    return status;
}

/* ---- helpers ---- */

static int dtype_ok(zero_dtype_t dtype)
{
    return dtype == ZERO_FP32 || dtype == ZERO_FP16 || dtype == ZERO_BF16;
}

typedef struct reduce_job {
    const zero_optim_ctx_t *ctx;
    zero_dtype_t dtype;
    const void *x;
    size_t *counts;
    double *sums;
} reduce_job_t;

static void count_chunk(void *raw, size_t task, size_t b, size_t e)
{
    reduce_job_t *j = raw;
    const char *x = (const char *)j->x + b * zero_dtype_size(j->dtype);
    j->counts[task] = j->ctx->dsp.count_nonfinite[j->dtype](x, e - b);
}

static void sumsq_chunk(void *raw, size_t task, size_t b, size_t e)
{
    reduce_job_t *j = raw;
    const char *x = (const char *)j->x + b * zero_dtype_size(j->dtype);
    j->sums[task] = j->ctx->dsp.sum_squares[j->dtype](x, e - b);
}

static zero_status_t check_buffer(const char *what, const zero_optim_ctx_t *ctx, zero_dtype_t dtype,
                                  const void *x, size_t n, const void *out)
{
    if (ctx == NULL || out == NULL || !dtype_ok(dtype) || (n > 0 && x == NULL)) {
        ZERO_LOG_ERROR("%s: invalid argument (dtype %d, %zu elements at %p)", what, (int)dtype, n, x);
        return ZERO_ERR_INVALID_ARG;
    }
    return ZERO_OK;
}

zero_status_t zero_optim_count_nonfinite(const zero_optim_ctx_t *ctx, zero_dtype_t dtype, const void *x,
                                         size_t n, size_t *count_p)
{
    reduce_job_t job = {ctx, dtype, x, NULL, NULL};
    size_t tasks, total = 0;
    zero_status_t status;
    if ((status = check_buffer("count_nonfinite", ctx, dtype, x, n, count_p)) != ZERO_OK)
        return status;
    tasks = chunk_count(ctx, n);
    if (tasks > 0) {
        job.counts = zero_malloc(tasks * sizeof(size_t));
        if (job.counts == NULL) {
            ZERO_LOG_ERROR("count_nonfinite: out of memory for %zu partial counts", tasks);
            return ZERO_ERR_NO_MEMORY;
        }
        for_chunks(ctx, n, count_chunk, &job);
        for (size_t t = 0; t < tasks; t++)
            total += job.counts[t];
        zero_free(job.counts);
    }
    *count_p = total;
    return ZERO_OK;
}

zero_status_t zero_optim_sum_squares(const zero_optim_ctx_t *ctx, zero_dtype_t dtype, const void *x,
                                     size_t n, double *sum_p)
{
    reduce_job_t job = {ctx, dtype, x, NULL, NULL};
    size_t tasks;
    double total = 0.0;
    zero_status_t status;
    if ((status = check_buffer("sum_squares", ctx, dtype, x, n, sum_p)) != ZERO_OK)
        return status;
    tasks = chunk_count(ctx, n);
    if (tasks > 0) {
        job.sums = zero_malloc(tasks * sizeof(double));
        if (job.sums == NULL) {
            ZERO_LOG_ERROR("sum_squares: out of memory for %zu partial sums", tasks);
            return ZERO_ERR_NO_MEMORY;
        }
        for_chunks(ctx, n, sumsq_chunk, &job);
        for (size_t t = 0; t < tasks; t++)
            total += job.sums[t];
        zero_free(job.sums);
    }
    *sum_p = total;
    return ZERO_OK;
}

/* Sum of squares of a + b: the fused step's gradient check. The sum is
 * formed in fp32 (the step's own addition) into a block on the stack and
 * squared by the SIMD sum_squares kernel, so the pass reads a and b once and
 * writes nothing back to memory. Per task the blocks' sums are added in
 * order, the tasks in task order: deterministic for a given chunk size. */
#define SUM_ADD_BLOCK 1024

typedef struct sum_add_job {
    const zero_optim_ctx_t *ctx;
    const float *a, *b;
    double *sums;
} sum_add_job_t;

static void sum_add_chunk(void *raw, size_t task, size_t b, size_t e)
{
    sum_add_job_t *j = raw;
    float block[SUM_ADD_BLOCK];
    double sum = 0.0;
    for (size_t i = b; i < e; i += SUM_ADD_BLOCK) {
        size_t m = e - i < SUM_ADD_BLOCK ? e - i : SUM_ADD_BLOCK;
        for (size_t k = 0; k < m; k++)
            block[k] = j->a[i + k] + j->b[i + k];
        sum += j->ctx->dsp.sum_squares[ZERO_FP32](block, m);
    }
    j->sums[task] = sum;
}

zero_status_t zero_optim_sum_squares_add(const zero_optim_ctx_t *ctx, const float *a, const float *b, size_t n,
                                         double *sum_p)
{
    sum_add_job_t job = {ctx, a, b, NULL};
    size_t tasks;
    double total = 0.0;
    zero_status_t status;
    if ((status = check_buffer("sum_squares_add", ctx, ZERO_FP32, a, n, sum_p)) != ZERO_OK ||
        (status = check_buffer("sum_squares_add", ctx, ZERO_FP32, b, n, sum_p)) != ZERO_OK)
        return status;
    tasks = chunk_count(ctx, n);
    if (tasks > 0) {
        job.sums = zero_malloc(tasks * sizeof(double));
        if (job.sums == NULL) {
            ZERO_LOG_ERROR("sum_squares_add: out of memory for %zu partial sums", tasks);
            return ZERO_ERR_NO_MEMORY;
        }
        for_chunks(ctx, n, sum_add_chunk, &job);
        for (size_t t = 0; t < tasks; t++)
            total += job.sums[t];
        zero_free(job.sums);
    }
    *sum_p = total;
    return ZERO_OK;
}

typedef struct map_job {
    const zero_optim_ctx_t *ctx;
    float *f;
    const float *cf;
    uint16_t *h;
    const uint16_t *ch;
    float s;
    zero_optim_w16_t type;
} map_job_t;

static void scale_chunk(void *raw, size_t task, size_t b, size_t e)
{
    map_job_t *j = raw;
    (void)task;
    j->ctx->dsp.scale_f32(j->f + b, j->s, e - b);
}

static void to16_chunk(void *raw, size_t task, size_t b, size_t e)
{
    map_job_t *j = raw;
    (void)task;
    j->ctx->dsp.to_16[j->type](j->h + b, j->cf + b, e - b);
}

static void from16_chunk(void *raw, size_t task, size_t b, size_t e)
{
    map_job_t *j = raw;
    (void)task;
    j->ctx->dsp.from_16[j->type](j->f + b, j->ch + b, e - b);
}

zero_status_t zero_optim_scale(const zero_optim_ctx_t *ctx, float *x, float s, size_t n)
{
    map_job_t job = {ctx, x, NULL, NULL, NULL, s, ZERO_OPTIM_W16_NONE};
    if (ctx == NULL || (n > 0 && x == NULL)) {
        ZERO_LOG_ERROR("scale: invalid argument (%zu elements at %p)", n, (void *)x);
        return ZERO_ERR_INVALID_ARG;
    }
    for_chunks(ctx, n, scale_chunk, &job);
    return ZERO_OK;
}

static zero_status_t check_convert(const char *what, const zero_optim_ctx_t *ctx, zero_optim_w16_t type,
                                   const void *dst, const void *src, size_t n)
{
    if (ctx == NULL || (type != ZERO_OPTIM_W16_BF16 && type != ZERO_OPTIM_W16_FP16) ||
        (n > 0 && (dst == NULL || src == NULL))) {
        ZERO_LOG_ERROR("%s: invalid argument (type %d, %zu elements)", what, (int)type, n);
        return ZERO_ERR_INVALID_ARG;
    }
    return ZERO_OK;
}

zero_status_t zero_optim_to_16(const zero_optim_ctx_t *ctx, zero_optim_w16_t type, uint16_t *dst,
                               const float *src, size_t n)
{
    map_job_t job = {ctx, NULL, src, dst, NULL, 0.0f, type};
    zero_status_t status;
    if ((status = check_convert("to_16", ctx, type, dst, src, n)) != ZERO_OK)
        return status;
    for_chunks(ctx, n, to16_chunk, &job);
    return ZERO_OK;
}

zero_status_t zero_optim_from_16(const zero_optim_ctx_t *ctx, zero_optim_w16_t type, float *dst,
                                 const uint16_t *src, size_t n)
{
    map_job_t job = {ctx, dst, NULL, NULL, src, 0.0f, type};
    zero_status_t status;
    if ((status = check_convert("from_16", ctx, type, dst, src, n)) != ZERO_OK)
        return status;
    for_chunks(ctx, n, from16_chunk, &job);
    return ZERO_OK;
}

/* The 16-bit average of two addends, widened back to fp32: the arithmetic of
 * a reduce-scatter's last hop (comm/reduce.c: received + local in fp32,
 * divided, rounded once), so the result equals what the unfused hop writes. */
typedef struct avg16_job {
    zero_optim_w16_t type;
    float *dst;
    const uint16_t *own;
    const void *peer;
    int peer_f32;
    float divisor;
} avg16_job_t;

static float widen16(zero_optim_w16_t type, uint16_t h)
{
    return type == ZERO_OPTIM_W16_BF16 ? zero_bf16_to_f32(h) : zero_f16_to_f32(h);
}

static void avg16_chunk(void *raw, size_t task, size_t b, size_t e)
{
    avg16_job_t *j = raw;
    (void)task;
    for (size_t i = b; i < e; i++) {
        float peer = j->peer_f32 ? ((const float *)j->peer)[i] : widen16(j->type, ((const uint16_t *)j->peer)[i]);
        float avg = (peer + widen16(j->type, j->own[i])) / j->divisor;
        j->dst[i] = widen16(j->type, j->type == ZERO_OPTIM_W16_BF16 ? zero_f32_to_bf16(avg) : zero_f32_to_f16(avg));
    }
}

zero_status_t zero_optim_average_from_16(const zero_optim_ctx_t *ctx, zero_optim_w16_t type, float *dst,
                                         const uint16_t *own, const void *peer, int peer_f32, float divisor, size_t n)
{
    avg16_job_t job = {type, dst, own, peer, peer_f32, divisor};
    zero_status_t status;
    if ((status = check_convert("average_from_16", ctx, type, dst, own, n)) != ZERO_OK)
        return status;
    if ((n > 0 && peer == NULL) || !(divisor > 0.0f)) {
        ZERO_LOG_ERROR("average_from_16: invalid argument (peer %p, divisor %g)", peer, (double)divisor);
        return ZERO_ERR_INVALID_ARG;
    }
    for_chunks(ctx, n, avg16_chunk, &job);
    return ZERO_OK;
}

float zero_optim_clip_coef(double total_norm, double max_norm)
{
    return zero_elem_clip_coef(total_norm, max_norm);
}
