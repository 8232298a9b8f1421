/*
 * The host operations table: lib/optim's kernels (C / AVX2 / AVX-512 chosen
 * at run time) on the engine's thread pool, over host memory. The result
 * record is a host array, so reading it is a copy of a few doubles.
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_ops.h"

#include "util/alloc.h"
#include "util/half.h"
#include "util/log.h"

#include <math.h>
#include <string.h>

static zero_status_t host_create(const engine_ops_params_t *params, void **ctx_p)
{
    zero_optim_ctx_t *ctx = zero_calloc(1, sizeof(*ctx));
    zero_status_t status;
    if (ctx == NULL) {
        ZERO_LOG_ERROR("host operations: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    status = zero_optim_ctx_init(ctx, ZERO_OPTIM_ISA_AUTO, params->pool);   /* logs its own errors */
    if (status != ZERO_OK) {
        zero_free(ctx);
        return status;
    }
    *ctx_p = ctx;
    return ZERO_OK;
}

static void host_destroy(void *ctx)
{
    zero_free(ctx);
}

const zero_optim_ctx_t *engine_ops_host_optim(const void *ctx)
{
    return ctx;
}

static const char *host_describe(const void *ctx)
{
    return zero_optim_isa_name(((const zero_optim_ctx_t *)ctx)->isa);
}

static zero_status_t host_result_create(void *ctx, size_t slots, double **record_p)
{
    (void)ctx;
    *record_p = zero_calloc(slots ? slots : 1, sizeof(double));
    if (*record_p == NULL) {
        ZERO_LOG_ERROR("host operations: out of memory for a result record of %zu values", slots);
        return ZERO_ERR_NO_MEMORY;
    }
    return ZERO_OK;
}

static void host_result_destroy(void *ctx, double *record)
{
    (void)ctx;
    zero_free(record);
}

static zero_status_t host_result_clear(void *ctx, double *record, size_t slots)
{
    (void)ctx;
    memset(record, 0, slots * sizeof(double));
    return ZERO_OK;
}

static zero_status_t host_result_read(void *ctx, const double *record, size_t first, size_t count, double *host)
{
    (void)ctx;
    memcpy(host, record + first, count * sizeof(double));
    return ZERO_OK;
}

static zero_status_t host_zero(void *ctx, void *ptr, size_t bytes)
{
    (void)ctx;
    if (bytes > 0)
        memset(ptr, 0, bytes);
    return ZERO_OK;
}

/* copy, upload and download: all host memory. */
static zero_status_t host_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    if (bytes > 0 && dst != src)
        memcpy(dst, src, bytes);
    return ZERO_OK;
}

/* Plain loops: the reduced gradient slice of one bucket, a memory-bound add. */
static zero_status_t host_accumulate(void *ctx, zero_dtype_t dtype, void *dst, const void *src, size_t n)
{
    (void)ctx;
    if (dtype == ZERO_FP32) {
        float *d = dst;
        const float *s = src;
        for (size_t i = 0; i < n; i++)
            d[i] += s[i];
    } else if (dtype == ZERO_BF16) {
        uint16_t *d = dst;
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++)
            d[i] = zero_f32_to_bf16(zero_bf16_to_f32(d[i]) + zero_bf16_to_f32(s[i]));
    } else if (dtype == ZERO_FP16) {
        uint16_t *d = dst;
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++)
            d[i] = zero_f32_to_f16(zero_f16_to_f32(d[i]) + zero_f16_to_f32(s[i]));
    } else {
        ZERO_LOG_ERROR("accumulate: gradients of dtype %s are not supported", zero_dtype_string(dtype));
        return ZERO_ERR_INVALID_ARG;
    }
    return ZERO_OK;
}

static zero_status_t host_to_16(void *ctx, zero_dtype_t dtype, uint16_t *dst, const float *src, size_t n)
{
    return zero_optim_to_16(ctx, zero_optim_w16_of(dtype), dst, src, n);
}

static zero_status_t host_from_16(void *ctx, zero_dtype_t dtype, float *dst, const uint16_t *src, size_t n)
{
    return zero_optim_from_16(ctx, zero_optim_w16_of(dtype), dst, src, n);
}

static zero_status_t host_check_grads(void *ctx, zero_dtype_t dtype, const void *grads, size_t n, double *record)
{
    size_t bad = 0;
    double sq = 0.0;
    zero_status_t status = zero_optim_count_nonfinite(ctx, dtype, grads, n, &bad);
    if (status == ZERO_OK)
        status = zero_optim_sum_squares(ctx, dtype, grads, n, &sq);
    if (status != ZERO_OK)
        return status;
    record[ENGINE_RESULT_NONFINITE] += (double)bad;
    record[ENGINE_RESULT_SUM_SQUARES] += sq;
    return ZERO_OK;
}

static void host_unscale_clip(void *ctx, double sum_squares, double loss_scale, double max_norm, double *grad_norm_p,
                              float *grad_scale_p)
{
    double norm = sqrt(sum_squares) / loss_scale;
    float clip = zero_optim_clip_coef(norm, max_norm);
    (void)ctx;
    *grad_norm_p = norm;
    *grad_scale_p = (float)(clip / loss_scale);
}

static zero_status_t host_optimizer_step(void *ctx, const zero_optim_hparams_t *hp, const zero_optim_slice_t *s)
{
    return zero_optim_hparams_step(ctx, hp, s);
}

static zero_status_t host_check_grads_add(void *ctx, const float *a, const float *b, size_t n, double scale,
                                          double *record)
{
    double sq = 0.0;
    zero_status_t status = zero_optim_sum_squares_add(ctx, a, b, n, &sq);
    if (status != ZERO_OK)
        return status;
    if (!isfinite(sq))
        record[ENGINE_RESULT_NONFINITE] += 1.0;
    record[ENGINE_RESULT_SUM_SQUARES] += sq * scale;
    return ZERO_OK;
}

static zero_status_t host_optimizer_step_fused(void *ctx, const zero_optim_hparams_t *hp, const zero_optim_slice_t *s,
                                               const float *g_add)
{
    return zero_optim_hparams_step_fused(ctx, hp, s, g_add);
}

static zero_status_t host_average_from_16(void *ctx, zero_dtype_t dtype, float *dst, const uint16_t *own,
                                          zero_dtype_t peer_dtype, const void *peer, float divisor, size_t n)
{
    return zero_optim_average_from_16(ctx, zero_optim_w16_of(dtype), dst, own, peer, peer_dtype == ZERO_FP32,
                                      divisor, n);
}

static zero_status_t host_init_state(void *ctx, const zero_optim_hparams_t *hp, float *s1, size_t n)
{
    return zero_optim_hparams_init_state(ctx, hp, s1, n);
}

static zero_status_t host_lamb_phase1(void *ctx, const zero_optim_hparams_t *hp, const zero_optim_slice_t *s,
                                      double *record, size_t slot)
{
    zero_optim_segment_t seg = {0, s->n};
    double wsq = 0.0, usq = 0.0;
    zero_status_t status = zero_optim_lamb_phase1(ctx, &hp->lamb, s, &seg, 1, &wsq, &usq);
    if (status != ZERO_OK)
        return status;
    record[slot] += wsq;
    record[slot + 1] += usq;
    return ZERO_OK;
}

static zero_status_t host_lamb_phase2(void *ctx, const zero_optim_hparams_t *hp, const zero_optim_slice_t *s,
                                      double w_sq, double u_sq)
{
    zero_optim_segment_t seg = {0, s->n};
    return zero_optim_lamb_phase2(ctx, &hp->lamb, s, &seg, 1, &w_sq, &u_sq, NULL);
}

const engine_ops_t engine_ops_host = {
    .name = "host",
    .kind = ZERO_MEM_HOST,
    .host_readable = 1,
    .create = host_create,
    .destroy = host_destroy,
    .describe = host_describe,
    .result_create = host_result_create,
    .result_destroy = host_result_destroy,
    .result_clear = host_result_clear,
    .result_read = host_result_read,
    .zero = host_zero,
    .copy = host_copy,
    .upload = host_copy,
    .download = host_copy,
    .accumulate = host_accumulate,
    .to_16 = host_to_16,
    .from_16 = host_from_16,
    .check_grads = host_check_grads,
    .unscale_clip = host_unscale_clip,
    .optimizer_step = host_optimizer_step,
    .check_grads_add = host_check_grads_add,
    .optimizer_step_fused = host_optimizer_step_fused,
    .average_from_16 = host_average_from_16,
    .init_state = host_init_state,
    .lamb_phase1 = host_lamb_phase1,
    .lamb_phase2 = host_lamb_phase2,
};

const engine_ops_t *engine_ops_for_kind(zero_mem_kind_t kind)
{
    switch (kind) {
    case ZERO_MEM_HOST:
        return &engine_ops_host;
    case ZERO_MEM_DEVICE:
        return engine_ops_device();
    default:
        return NULL;
    }
}
