/*
 * The CUDA operations table: the engine's arithmetic on device memory, as
 * lib/optim's CUDA kernels (optim_cuda.cu, the same per-element updates as
 * the host's, optim_elem.h) queued on the trainer's stream. libzero.so links
 * no CUDA: every runtime call and every kernel launch goes through the CUDA
 * module's table (util/cuda_module.h, ZERO_CUDA(fn)), so this file needs the
 * CUDA headers at compile time only, and a build without them has no device
 * table (engine_ops_device() returns NULL and the engine refuses device memory).
 *
 * The host decides what needs the whole world: the engine reads the step's
 * statistics once (result_read, the one wait on the device per step), sums
 * them over ranks and decides overflow and clipping; unscale_clip hands that
 * decision to the device in the step's gate (zero_cuda_gate_t, by kernel
 * argument), which the update kernels read. Lamb's summed norms go down the
 * same way (zero_cuda_put2).
 *
 * Events: order_begin records one re-usable event on the stream (the
 * collective's wait; NCCL takes it as it stands when the collective is
 * queued) and lends a completion event from a free list; order_end makes the
 * stream wait for it and returns it to the list (a wait takes the event as it
 * stands, so it can be recorded again at once).
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_ops.h"

#include "zero_build_config.h"

#if HAVE_CUDA
#include "optim/optim.h"
#include "optim/optim_cuda.h"
#include "util/alloc.h"
#include "util/checks_cuda.h"
#include "util/cuda_module.h"
#include "util/log.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct device_ctx {
    int device;
    cudaStream_t stream;         /* the trainer's (not owned) */
    zero_cuda_gate_t *gate;      /* this step's decision (device) */
    double *scratch;             /* ZERO_CUDA_STATS_SCRATCH doubles for the sums (device) */
    double *lamb_sums;           /* 2 doubles: Lamb phase 2's summed norms (device) */
    cudaEvent_t wait_event;      /* recorded by order_begin; re-used */
    cudaEvent_t *free_events;    /* completion events ready to lend */
    int num_free, cap_free;
    int events_made;             /* every completion event made (all come back by destroy) */
    char name[64];
} device_ctx_t;

/* A kernel launcher's status (cudaError_t as int) as the engine's. Negative
 * (the int8 codec, quant_cuda.h): an error pending before the launch, not
 * the kernel's own. */
static zero_status_t launched(int err, const char *what, size_t n)
{
    if (err == 0)
        return ZERO_OK;
    if (err < 0) {
        err = -err;
        ZERO_LOG_ERROR("CUDA %s over %zu elements not launched: an earlier CUDA error was pending (the device's "
                       "earlier work or a call before it failed): %s (CUDA error %d)", what, n,
                       ZERO_CUDA(cudaGetErrorString)((cudaError_t)err), err);
        return err == (int)cudaErrorMemoryAllocation ? ZERO_ERR_NO_MEMORY : ZERO_ERR_CUDA;
    }
    ZERO_LOG_ERROR("CUDA %s over %zu elements: %s (CUDA error %d)", what, n,
                   ZERO_CUDA(cudaGetErrorString)((cudaError_t)err), err);
    return err == (int)cudaErrorMemoryAllocation ? ZERO_ERR_NO_MEMORY : ZERO_ERR_CUDA;
}

/* Makes the context's device current on this thread (the trainer's thread
 * may have another one current between calls). */
static zero_status_t use_device(device_ctx_t *c)
{
    zero_status_t status = ZERO_OK;
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaSetDevice)(c->device), status, out, "cudaSetDevice(%d)", c->device);
out:
    return status;
}

static void device_destroy(void *ctx);
static zero_status_t device_zero(void *ctx, void *ptr, size_t bytes);

static zero_status_t device_create(const engine_ops_params_t *params, void **ctx_p)
{
    zero_status_t status;
    device_ctx_t *c;
    int count = 0, device;
    cudaError_t err;

    status = zero_cuda_require("training in device memory (mem_kind device)");
    if (status != ZERO_OK)
        return status;
    err = ZERO_CUDA(cudaGetDeviceCount)(&count);
    if (err != cudaSuccess || count < 1) {
        ZERO_LOG_ERROR("mem_kind device: no CUDA device is visible to this process (%s; CUDA_VISIBLE_DEVICES=%s)",
                       err != cudaSuccess ? ZERO_CUDA(cudaGetErrorString)(err) : "device count 0",
                       getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "(unset)");
        (void)ZERO_CUDA(cudaGetLastError)();   /* the sticky "no driver" error */
        return ZERO_ERR_UNSUPPORTED;
    }
    device = params->device >= 0 ? params->device : (params->local_rank > 0 ? params->local_rank : 0) % count;
    if (device >= count) {
        ZERO_LOG_ERROR("mem_kind device: CUDA device %d does not exist (%d visible; CUDA_VISIBLE_DEVICES=%s)", device,
                       count, getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "(unset)");
        return ZERO_ERR_INVALID_ARG;
    }
    c = zero_calloc(1, sizeof(*c));
    if (c == NULL) {
        ZERO_LOG_ERROR("device operations: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    c->device = device;
    c->stream = (cudaStream_t)params->stream;
    snprintf(c->name, sizeof(c->name), "cuda:%d", c->device);
    status = use_device(c);
    if (status != ZERO_OK)
        goto fail;
    status = zero_mem_alloc(ZERO_MEM_DEVICE, sizeof(zero_cuda_gate_t), "step gate", (void **)&c->gate);
    if (status == ZERO_OK)
        status = zero_mem_alloc(ZERO_MEM_DEVICE, ZERO_CUDA_STATS_SCRATCH * sizeof(double), "step sums scratch",
                                (void **)&c->scratch);
    if (status == ZERO_OK)
        status = zero_mem_alloc(ZERO_MEM_DEVICE, 2 * sizeof(double), "Lamb norms", (void **)&c->lamb_sums);
    if (status != ZERO_OK)
        goto fail;
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventCreateWithFlags)(&c->wait_event, cudaEventDisableTiming), status, fail,
                         "device operations: %s", "creating the ordering event");
    /* The gate starts as "no skip, grad_scale 1" until the first unscale_clip. */
    status = launched(ZERO_CUDA(zero_cuda_gate_set)(c->gate, 0.0, 1.0f, 0, c->stream), "gate set", 1);
    if (status != ZERO_OK)
        goto fail;
    *ctx_p = c;
    return ZERO_OK;
fail:
    device_destroy(c);
    return status;
}

static void device_destroy(void *ctx)
{
    device_ctx_t *c = ctx;
    if (c == NULL)
        return;
    if (use_device(c) == ZERO_OK)
        (void)ZERO_CUDA(cudaDeviceSynchronize)();   /* nothing queued may outlive the buffers */
    if (c->num_free != c->events_made)
        ZERO_LOG_WARN("device operations: %d ordering event(s) not returned at destroy", c->events_made - c->num_free);
    for (int i = 0; i < c->num_free; i++)
        ZERO_CUDA(cudaEventDestroy)(c->free_events[i]);
    zero_free(c->free_events);
    if (c->wait_event != NULL)
        ZERO_CUDA(cudaEventDestroy)(c->wait_event);
    zero_mem_free(c->gate);
    zero_mem_free(c->scratch);
    zero_mem_free(c->lamb_sums);
    zero_free(c);
}

static const char *device_describe(const void *ctx)
{
    return ((const device_ctx_t *)ctx)->name;
}

static zero_status_t device_result_create(void *ctx, size_t slots, double **record_p)
{
    zero_status_t status = zero_mem_alloc(ZERO_MEM_DEVICE, (slots ? slots : 1) * sizeof(double), "step results",
                                          (void **)record_p);
    if (status == ZERO_OK)
        status = device_zero(ctx, *record_p, (slots ? slots : 1) * sizeof(double));
    return status;
}

static void device_result_destroy(void *ctx, double *record)
{
    (void)ctx;
    zero_mem_free(record);
}

static zero_status_t device_zero(void *ctx, void *ptr, size_t bytes)
{
    device_ctx_t *c = ctx;
    zero_status_t status = ZERO_OK;
    if (bytes == 0)
        return ZERO_OK;
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaMemsetAsync)(ptr, 0, bytes, c->stream), status, out,
                         "zeroing %zu bytes of device memory", bytes);
out:
    return status;
}

static zero_status_t device_result_clear(void *ctx, double *record, size_t slots)
{
    return device_zero(ctx, record, slots * sizeof(double));
}

static zero_status_t device_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
    device_ctx_t *c = ctx;
    zero_status_t status = ZERO_OK;
    if (bytes == 0 || dst == src)
        return ZERO_OK;
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaMemcpyAsync)(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream), status, out,
                         "copying %zu bytes of device memory", bytes);
out:
    return status;
}

/* Host <-> device on the stream, then wait for the stream: the host buffer
 * is the caller's again when this returns (a pageable copy may or may not
 * have been staged by then, so it is never left in flight). */
static zero_status_t transfer(device_ctx_t *c, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind dir,
                              const char *what)
{
    zero_status_t status = ZERO_OK;
    if (bytes > 0)
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaMemcpyAsync)(dst, src, bytes, dir, c->stream), status, out,
                             "%s %zu bytes", what, bytes);
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamSynchronize)(c->stream), status, out,
                         "waiting for the engine's stream (%s %zu bytes; an earlier kernel or collective may have "
                         "failed)", what, bytes);
out:
    return status;
}

static zero_status_t device_upload(void *ctx, void *dst, const void *host_src, size_t bytes)
{
    return transfer(ctx, dst, host_src, bytes, cudaMemcpyHostToDevice, "uploading");
}

static zero_status_t device_download(void *ctx, void *host_dst, const void *src, size_t bytes)
{
    return transfer(ctx, host_dst, src, bytes, cudaMemcpyDeviceToHost, "downloading");
}

static zero_status_t device_result_read(void *ctx, const double *record, size_t first, size_t count, double *host)
{
    return transfer(ctx, host, record + first, count * sizeof(double), cudaMemcpyDeviceToHost,
                    "reading the step's results,");
}

static zero_status_t device_sync(void *ctx)
{
    device_ctx_t *c = ctx;
    zero_status_t status = use_device(c);
    if (status != ZERO_OK)
        return status;
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaDeviceSynchronize)(), status, out,
                         "waiting for CUDA device %d (an earlier kernel or collective may have failed)", c->device);
out:
    return status;
}

static zero_status_t device_order_begin(void *ctx, zero_comm_order_t *order)
{
    device_ctx_t *c = ctx;
    zero_status_t status = ZERO_OK;
    cudaEvent_t done;
    if (c->num_free == 0) {
        if (c->cap_free == c->events_made) {
            int cap = c->cap_free ? 2 * c->cap_free : 16;
            cudaEvent_t *grown = zero_realloc(c->free_events, (size_t)cap * sizeof(*grown));
            if (grown == NULL) {
                ZERO_LOG_ERROR("device operations: out of memory for %d ordering events", cap);
                return ZERO_ERR_NO_MEMORY;
            }
            c->free_events = grown;
            c->cap_free = cap;
        }
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventCreateWithFlags)(&done, cudaEventDisableTiming), status, out,
                             "device operations: %s", "creating a completion event");
        c->events_made++;
    } else {
        done = c->free_events[--c->num_free];
    }
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)(c->wait_event, c->stream), status, give_back,
                         "device operations: %s", "recording the engine's stream before a collective");
    order->field_mask = ZERO_COMM_ORDER_FIELD_WAIT_EVENT | ZERO_COMM_ORDER_FIELD_DONE_EVENT;
    order->wait_event = c->wait_event;
    order->done_event = done;
    return ZERO_OK;
give_back:
    c->free_events[c->num_free++] = done;
out:
    return status;
}

static zero_status_t device_order_end(void *ctx, void *done_event)
{
    device_ctx_t *c = ctx;
    zero_status_t status = ZERO_OK;
    if (done_event == NULL)
        return ZERO_OK;
    /* The list has room: every lent event was counted in events_made <= cap_free. */
    c->free_events[c->num_free++] = (cudaEvent_t)done_event;
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamWaitEvent)(c->stream, (cudaEvent_t)done_event, 0), status, out,
                         "device operations: %s", "the engine's stream cannot wait for a collective");
out:
    return status;
}

static zero_status_t device_accumulate(void *ctx, zero_dtype_t dtype, void *dst, const void *src, size_t n)
{
    device_ctx_t *c = ctx;
    if (dtype == ZERO_FP32)
        return launched(ZERO_CUDA(zero_cuda_add32)(dst, src, n, c->stream), "gradient accumulation", n);
    if (dtype == ZERO_BF16 || dtype == ZERO_FP16)
        return launched(ZERO_CUDA(zero_cuda_add16)(dst, src, (int)zero_optim_w16_of(dtype), n, c->stream),
                        "gradient accumulation", n);
    ZERO_LOG_ERROR("accumulate: gradients of dtype %s are not supported", zero_dtype_string(dtype));
    return ZERO_ERR_INVALID_ARG;
}

static zero_status_t device_to_16(void *ctx, zero_dtype_t dtype, uint16_t *dst, const float *src, size_t n)
{
    device_ctx_t *c = ctx;
    return launched(ZERO_CUDA(zero_cuda_to_16)(dst, src, (int)zero_optim_w16_of(dtype), n, c->stream),
                    "conversion to 16 bits", n);
}

static zero_status_t device_quant_encode8(void *ctx, zero_dtype_t dtype, const void *src, size_t n, void *wire)
{
    device_ctx_t *c = ctx;
    return launched(ZERO_CUDA(zero_cuda_quant_encode8)(src, (int)dtype, n, wire, c->stream), "int8 block encoding", n);
}

static zero_status_t device_quant_decode8(void *ctx, zero_dtype_t dtype, const void *wire, size_t n, void *dst)
{
    device_ctx_t *c = ctx;
    return launched(ZERO_CUDA(zero_cuda_quant_decode8)(wire, n, (int)dtype, dst, c->stream), "int8 block decoding", n);
}

static zero_status_t device_quant_reduce8(void *ctx, const void *wire, size_t block_stride, int nblocks, size_t n,
                                          float divisor, zero_dtype_t dtype, void *dst)
{
    device_ctx_t *c = ctx;
    return launched(ZERO_CUDA(zero_cuda_quant_reduce8)(wire, block_stride, nblocks, n, divisor, (int)dtype, dst,
                                                       c->stream),
                    "int8 block decoding and summing", n);
}

static zero_status_t device_from_16(void *ctx, zero_dtype_t dtype, float *dst, const uint16_t *src, size_t n)
{
    device_ctx_t *c = ctx;
    return launched(ZERO_CUDA(zero_cuda_from_16)(dst, src, (int)zero_optim_w16_of(dtype), n, c->stream),
                    "conversion from 16 bits", n);
}

static zero_status_t device_check_grads(void *ctx, zero_dtype_t dtype, const void *grads, size_t n, double *record)
{
    device_ctx_t *c = ctx;
    /* The record's first two slots (NONFINITE, SUM_SQUARES) are laid out as a
     * gate's first two fields, which is all zero_cuda_grad_stats adds into. */
    _Static_assert(ENGINE_RESULT_NONFINITE == 0 && ENGINE_RESULT_SUM_SQUARES == 1, "record slots as the gate");
    _Static_assert(offsetof(zero_cuda_gate_t, nonfinite) == 0 && offsetof(zero_cuda_gate_t, sumsq) == sizeof(double),
                   "gate layout");
    return launched(ZERO_CUDA(zero_cuda_grad_stats)(grads, (int)dtype, n, (zero_cuda_gate_t *)(void *)record,
                                                   c->scratch, c->stream),
                    "gradient check", n);
}

/* The host's arithmetic (engine_ops_host.c), then the decision to the device. */
static void device_unscale_clip(void *ctx, double sum_squares, double loss_scale, double max_norm,
                                double *grad_norm_p, float *grad_scale_p)
{
    device_ctx_t *c = ctx;
    double norm = sqrt(sum_squares) / loss_scale;
    float clip = zero_optim_clip_coef(norm, max_norm);
    *grad_norm_p = norm;
    *grad_scale_p = (float)(clip / loss_scale);
    /* A failed launch shows at the next wait on the stream (result_read, sync). */
    (void)launched(ZERO_CUDA(zero_cuda_gate_set)(c->gate, norm, *grad_scale_p, 0, c->stream), "gate set", 1);
}

static zero_status_t device_optimizer_step(void *ctx, const zero_optim_hparams_t *hp, const zero_optim_slice_t *s)
{
    device_ctx_t *c = ctx;
    int t = (int)s->w16_type;
    switch (hp->kind) {
    case ZERO_OPTIM_KIND_ADAM: {
        zero_adam_k_t k;
        zero_optim_adam_k(&hp->adam, &k);
        return launched(ZERO_CUDA(zero_cuda_adam)(&k, c->gate, s->w, s->g, NULL, s->s1, s->s2, s->w16, t, s->n,
                                                  c->stream), "Adam update", s->n);
    }
    case ZERO_OPTIM_KIND_SGD: {
        zero_sgd_k_t k;
        zero_optim_sgd_k(&hp->sgd, &k);
        return launched(ZERO_CUDA(zero_cuda_sgd)(&k, c->gate, s->w, s->g, s->s1, s->w16, t, s->n, c->stream),
                        "SGD update", s->n);
    }
    case ZERO_OPTIM_KIND_ADAGRAD: {
        zero_adagrad_k_t k;
        zero_optim_adagrad_k(&hp->adagrad, &k);
        return launched(ZERO_CUDA(zero_cuda_adagrad)(&k, c->gate, s->w, s->g, s->s1, s->w16, t, s->n, c->stream),
                        "Adagrad update", s->n);
    }
    case ZERO_OPTIM_KIND_LION: {
        zero_lion_k_t k;
        zero_optim_lion_k(&hp->lion, &k);
        return launched(ZERO_CUDA(zero_cuda_lion)(&k, c->gate, s->w, s->g, s->s1, s->w16, t, s->n, c->stream),
                        "Lion update", s->n);
    }
    default:
        ZERO_LOG_ERROR("device operations: optimizer %s has no elementwise step (Lamb runs in two phases)",
                       zero_optim_kind_name(hp->kind));
        return ZERO_ERR_INVALID_ARG;
    }
}

static zero_status_t device_init_state(void *ctx, const zero_optim_hparams_t *hp, float *s1, size_t n)
{
    device_ctx_t *c = ctx;
    if (hp->kind != ZERO_OPTIM_KIND_ADAGRAD || hp->adagrad.initial_accumulator_value == 0.0f)
        return ZERO_OK;   /* the others start at zero, as the array already is */
    return launched(ZERO_CUDA(zero_cuda_fill)(s1, hp->adagrad.initial_accumulator_value, n, c->stream),
                    "Adagrad's initial accumulator", n);
}

static zero_status_t device_lamb_phase1(void *ctx, const zero_optim_hparams_t *hp, const zero_optim_slice_t *s,
                                        double *record, size_t slot)
{
    device_ctx_t *c = ctx;
    zero_lamb_k_t k;
    zero_optim_lamb_k(&hp->lamb, &k);
    return launched(ZERO_CUDA(zero_cuda_lamb1)(&k, c->gate, s->w, s->g, s->s1, s->s2, s->n, record + slot, c->scratch,
                                               c->stream), "Lamb phase 1", s->n);
}

static zero_status_t device_lamb_phase2(void *ctx, const zero_optim_hparams_t *hp, const zero_optim_slice_t *s,
                                        double w_sq, double u_sq)
{
    device_ctx_t *c = ctx;
    zero_lamb_k_t k;
    zero_status_t status;
    zero_optim_lamb_k(&hp->lamb, &k);
    /* One slot for every parameter: the stream runs each put before the next kernel reads it. */
    status = launched(ZERO_CUDA(zero_cuda_put2)(c->lamb_sums, w_sq, u_sq, c->stream), "Lamb norms", 2);
    if (status != ZERO_OK)
        return status;
    return launched(ZERO_CUDA(zero_cuda_lamb2)(&k, c->gate, zero_optim_lamb_step_size(&hp->lamb), hp->lamb.max_coeff,
                                               hp->lamb.min_coeff, c->lamb_sums, s->w, s->s1, s->s2, s->w16,
                                               (int)s->w16_type, s->n, c->stream), "Lamb phase 2", s->n);
}

static const engine_ops_t device_ops = {
    .name = "cuda",
    .kind = ZERO_MEM_DEVICE,
    .host_readable = 0,
    .create = device_create,
    .destroy = device_destroy,
    .describe = device_describe,
    .result_create = device_result_create,
    .result_destroy = device_result_destroy,
    .result_clear = device_result_clear,
    .result_read = device_result_read,
    .zero = device_zero,
    .copy = device_copy,
    .upload = device_upload,
    .download = device_download,
    .sync = device_sync,
    .order_begin = device_order_begin,
    .order_end = device_order_end,
    .accumulate = device_accumulate,
    .to_16 = device_to_16,
    .from_16 = device_from_16,
    .quant_encode8 = device_quant_encode8,
    .quant_decode8 = device_quant_decode8,
    .quant_reduce8 = device_quant_reduce8,
    .check_grads = device_check_grads,
    .unscale_clip = device_unscale_clip,
    .optimizer_step = device_optimizer_step,
    .init_state = device_init_state,
    .lamb_phase1 = device_lamb_phase1,
    .lamb_phase2 = device_lamb_phase2,
};

const engine_ops_t *engine_ops_device(void)
{
    return &device_ops;
}

#else /* !HAVE_CUDA */

const engine_ops_t *engine_ops_device(void)
{
    return NULL;
}

#endif
