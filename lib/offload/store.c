/* The store front: argument checks shared by every implementation, and the
 * one place a config becomes a store. */
#define ZERO_LOG_MODULE "offload"
#include "offload/store.h"
#include "offload/optd_wire.h"
#include "offload/store_cpu.h"
#include "offload/store_nvme.h"
#include "offload/store_remote.h"
#include "util/alloc.h"
#include "util/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* An I/O or a server silent this long is an error when the options give none:
 * the communicator's default bound (ZERO_COMM_TIMEOUT). */
#define STORE_DEFAULT_TIMEOUT_S 300.0

unsigned zero_store_fields(const zero_store_t *store)
{
    unsigned fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER);
    for (int k = 0; k < store->desc.num_states; k++)
        fields |= ZERO_STORE_FIELD_BIT(ZERO_STORE_STATE1 + k);
    return fields;
}

static zero_status_t check_range(const zero_store_t *store, const char *what, int group, size_t begin, size_t count,
                                 unsigned fields)
{
    if (group < 0 || group >= store->desc.num_groups) {
        ZERO_LOG_ERROR("%s store: %s of group %d, which does not exist (%d groups)", store->ops->name, what, group,
                       store->desc.num_groups);
        return ZERO_ERR_INVALID_ARG;
    }
    if (begin > store->desc.length[group] || count > store->desc.length[group] - begin) {
        ZERO_LOG_ERROR("%s store: %s of [%zu, +%zu) outside group %d's %zu elements", store->ops->name, what, begin,
                       count, group, store->desc.length[group]);
        return ZERO_ERR_INVALID_ARG;
    }
    if (fields == 0 || (fields & ~zero_store_fields(store)) != 0) {
        ZERO_LOG_ERROR("%s store: %s asks for fields 0x%x, the store has 0x%x", store->ops->name, what, fields,
                       zero_store_fields(store));
        return ZERO_ERR_INVALID_ARG;
    }
    return ZERO_OK;
}

zero_status_t zero_store_acquire(zero_store_t *store, zero_store_range_t *range)
{
    zero_status_t status = check_range(store, "acquire", range->group, range->begin, range->count, range->fields);
    if (status != ZERO_OK)
        return status;
    memset(range->data, 0, sizeof(range->data));
    range->impl = NULL;
    return store->ops->acquire(store, range);
}

zero_status_t zero_store_release(zero_store_t *store, zero_store_range_t *range, int dirty)
{
    zero_status_t status = store->ops->release(store, range, dirty);
    memset(range->data, 0, sizeof(range->data));
    return status;
}

zero_status_t zero_store_prefetch(zero_store_t *store, int group, size_t begin, size_t count, unsigned fields)
{
    zero_status_t status = check_range(store, "prefetch", group, begin, count, fields);
    if (status != ZERO_OK || store->ops->prefetch == NULL)
        return status;
    return store->ops->prefetch(store, group, begin, count, fields);
}

void zero_store_bytes(const zero_store_t *store, zero_store_bytes_t *bytes_p)
{
    memset(bytes_p, 0, sizeof(*bytes_p));
    store->ops->bytes(store, bytes_p);
}

int zero_store_has_step_async(const zero_store_t *store)
{
    return store->ops->step_async != NULL;
}

int zero_store_prefers_step(const zero_store_t *store)
{
    return store->ops->step_async != NULL && store->ops->prefer_step;
}

int zero_store_steps_at(const zero_store_t *store, int group, size_t begin, size_t *run_end_p)
{
    size_t end = SIZE_MAX;
    int here = zero_store_prefers_step(store);
    if (here && store->ops->steps_at != NULL)
        here = store->ops->steps_at(store, group, begin, &end);
    if (run_end_p != NULL)
        *run_end_p = end;
    return here;
}

zero_status_t zero_store_step_set_hparams(zero_store_async_step_t *step, const zero_optim_hparams_t *hp)
{
    switch (hp->kind) {
    case ZERO_OPTIM_KIND_ADAM:
        /* adam_w_mode carries Adam versus AdamW; ADAM with the flag is what the wire sends for both */
        step->optimizer = ZERO_OPTIMIZER_ADAM;
        step->lr = hp->adam.lr;
        step->beta1 = hp->adam.beta1;
        step->beta2 = hp->adam.beta2;
        step->eps = hp->adam.eps;
        step->weight_decay = hp->adam.weight_decay;
        step->adam_w_mode = hp->adam.adam_w_mode;
        step->bias_correction = hp->adam.bias_correction;
        step->step = hp->adam.step;
        step->grad_scale = hp->adam.grad_scale;
        return ZERO_OK;
    case ZERO_OPTIM_KIND_SGD:
        step->optimizer = ZERO_OPTIMIZER_SGD;
        step->lr = hp->sgd.lr;
        step->momentum = hp->sgd.momentum;
        step->dampening = hp->sgd.dampening;
        step->weight_decay = hp->sgd.weight_decay;
        step->nesterov = hp->sgd.nesterov;
        step->step = hp->sgd.step;
        step->grad_scale = hp->sgd.grad_scale;
        return ZERO_OK;
    case ZERO_OPTIM_KIND_ADAGRAD:
        step->optimizer = ZERO_OPTIMIZER_ADAGRAD;
        step->lr = hp->adagrad.lr;
        step->lr_decay = hp->adagrad.lr_decay;
        step->eps = hp->adagrad.eps;
        step->weight_decay = hp->adagrad.weight_decay;
        step->step = hp->adagrad.step;
        step->grad_scale = hp->adagrad.grad_scale;
        return ZERO_OK;
    case ZERO_OPTIM_KIND_LION:
        step->optimizer = ZERO_OPTIMIZER_LION;
        step->lr = hp->lion.lr;
        step->beta1 = hp->lion.beta1;
        step->beta2 = hp->lion.beta2;
        step->weight_decay = hp->lion.weight_decay;
        step->grad_scale = hp->lion.grad_scale;
        return ZERO_OK;
    case ZERO_OPTIM_KIND_LAMB:
        step->optimizer = ZERO_OPTIMIZER_LAMB;
        step->lr = hp->lamb.lr;
        step->beta1 = hp->lamb.beta1;
        step->beta2 = hp->lamb.beta2;
        step->eps = hp->lamb.eps;
        step->weight_decay = hp->lamb.weight_decay;
        step->max_coeff = hp->lamb.max_coeff;
        step->min_coeff = hp->lamb.min_coeff;
        step->bias_correction = hp->lamb.bias_correction;
        step->eps_inside_sqrt = hp->lamb.eps_inside_sqrt;
        step->step = hp->lamb.step;
        step->grad_scale = hp->lamb.grad_scale;
        return ZERO_OK;
    default:
        ZERO_LOG_ERROR("optimizer step: %s has no step a store can run", zero_optim_kind_name(hp->kind));
        return ZERO_ERR_UNSUPPORTED;
    }
}

int zero_store_steps_lamb(const zero_store_t *store)
{
    return store->ops->step_async != NULL && store->ops->steps_lamb;
}

static int is_training_dtype(zero_dtype_t dtype)
{
    return dtype == ZERO_FP32 || dtype == ZERO_FP16 || dtype == ZERO_BF16;
}

int zero_store_can_cancel(const zero_store_t *store) { return store->ops->step_cancel != NULL; }

zero_status_t zero_store_step_cancel(zero_store_t *store)
{
    if (store->ops->step_cancel == NULL) {
        ZERO_LOG_ERROR("%s store: cannot undo its optimizer steps", store->ops->name);
        return ZERO_ERR_UNSUPPORTED;
    }
    return store->ops->step_cancel(store);
}

zero_status_t zero_store_step_async(zero_store_t *store, const zero_store_async_step_t *step)
{
    zero_status_t status;
    if (store->ops->step_async == NULL) {
        ZERO_LOG_ERROR("%s store: runs no optimizer steps itself", store->ops->name);
        return ZERO_ERR_UNSUPPORTED;
    }
    status = check_range(store, "step", step->group, step->begin, step->count, ZERO_STORE_FIELD_BIT(0));
    if (status != ZERO_OK)
        return status;
    switch (step->optimizer) {
    case ZERO_OPTIMIZER_ADAM:
    case ZERO_OPTIMIZER_ADAMW:
    case ZERO_OPTIMIZER_SGD:
    case ZERO_OPTIMIZER_ADAGRAD:
    case ZERO_OPTIMIZER_LION:
        break;
    case ZERO_OPTIMIZER_LAMB:
        if (!store->ops->steps_lamb) {
            ZERO_LOG_ERROR("%s store: runs no Lamb steps (its trust ratio needs norms summed over ranks between "
                           "its phases: the caller runs it on acquired ranges)", store->ops->name);
            return ZERO_ERR_UNSUPPORTED;
        }
        if ((step->lamb_phase != 1 && step->lamb_phase != 2) || step->lamb_sums == NULL || step->optim == NULL ||
            (step->count > 0 && (step->lamb_phase == 1 ? step->grad == NULL : step->weights == NULL)) ||
            !is_training_dtype(step->lamb_phase == 1 ? step->grad_dtype : step->weight_dtype)) {
            ZERO_LOG_ERROR("%s store: Lamb step of group %d [%zu, +%zu): phase %d (1 or 2), its sums, the caller's "
                           "kernels and the phase's buffer (gradient, then weights) are needed", store->ops->name,
                           step->group, step->begin, step->count, step->lamb_phase);
            return ZERO_ERR_INVALID_ARG;
        }
        return store->ops->step_async(store, step);
    default:
        ZERO_LOG_ERROR("%s store: step with optimizer %s: only Adam, AdamW, SGD, Adagrad, Lion and Lamb run where "
                       "the state lives", store->ops->name, zero_optimizer_type_string(step->optimizer));
        return ZERO_ERR_UNSUPPORTED;
    }
    if (!is_training_dtype(step->grad_dtype) || !is_training_dtype(step->weight_dtype) ||
        (step->count > 0 && (step->grad == NULL || step->weights == NULL))) {
        ZERO_LOG_ERROR("%s store: step of group %d [%zu, +%zu): gradient %s, weights %s, or a buffer missing",
                       store->ops->name, step->group, step->begin, step->count, zero_dtype_string(step->grad_dtype),
                       zero_dtype_string(step->weight_dtype));
        return ZERO_ERR_INVALID_ARG;
    }
    if (step->undoable && store->ops->step_cancel == NULL) {
        ZERO_LOG_ERROR("%s store: an undoable step, but the store cannot undo steps", store->ops->name);
        return ZERO_ERR_UNSUPPORTED;
    }
    return store->ops->step_async(store, step);
}

double zero_store_step_busy(const zero_store_t *store)
{
    return store->ops->step_busy != NULL ? store->ops->step_busy(store) : 0.0;
}

zero_status_t zero_store_step_wait(zero_store_t *store)
{
    return store->ops->step_wait != NULL ? store->ops->step_wait(store) : ZERO_OK;
}

static void lamb_params_of(const zero_store_async_step_t *step, zero_optim_lamb_params_t *p)
{
    zero_optim_lamb_defaults(p);
    p->lr = step->lr;
    p->beta1 = step->beta1;
    p->beta2 = step->beta2;
    p->eps = step->eps;
    p->weight_decay = step->weight_decay;
    p->max_coeff = step->max_coeff;
    p->min_coeff = step->min_coeff;
    p->bias_correction = step->bias_correction != 0;
    p->eps_inside_sqrt = step->eps_inside_sqrt != 0;
    p->step = step->step;
    p->grad_scale = step->grad_scale;
}

/* Lamb's phase of @p step over the whole slice as one segment (the engine's
 * own kernel call per range: engine_ops_host.c). */
static zero_status_t run_lamb(const zero_optim_ctx_t *ctx, const zero_store_async_step_t *step,
                              const zero_optim_slice_t *s)
{
    zero_optim_lamb_params_t p;
    zero_optim_segment_t seg = {0, s->n};
    lamb_params_of(step, &p);
    if (step->lamb_sums == NULL) {
        ZERO_LOG_ERROR("optimizer step: Lamb without its sums");
        return ZERO_ERR_INVALID_ARG;
    }
    if (step->lamb_phase == 1) {
        zero_optim_slice_t s1 = *s;   /* phase 1 writes no weights */
        s1.w16 = NULL;
        s1.w16_type = ZERO_OPTIM_W16_NONE;
        return zero_optim_lamb_phase1(ctx, &p, &s1, &seg, 1, &step->lamb_sums[0], &step->lamb_sums[1]);
    }
    if (step->lamb_phase == 2)
        return zero_optim_lamb_phase2(ctx, &p, s, &seg, 1, &step->lamb_sums[0], &step->lamb_sums[1], NULL);
    ZERO_LOG_ERROR("optimizer step: Lamb phase %d (1 or 2)", step->lamb_phase);
    return ZERO_ERR_INVALID_ARG;
}

zero_status_t zero_store_lamb_chunk_sums(const zero_optim_ctx_t *ctx, const zero_store_async_step_t *step, float *w,
                                         const float *g32, float *s1, float *s2, size_t n, double *w_sq,
                                         double *u_sq)
{
    zero_optim_slice_t s = {.w = w, .g = g32, .s1 = s1, .s2 = s2, .w16_type = ZERO_OPTIM_W16_NONE, .n = n};
    size_t nseg = (n + ctx->chunk - 1) / ctx->chunk;
    zero_optim_segment_t *segs;
    zero_optim_lamb_params_t p;
    zero_status_t status;
    if (nseg == 0)
        return ZERO_OK;
    segs = zero_malloc(nseg * sizeof(*segs));
    if (segs == NULL) {
        ZERO_LOG_ERROR("Lamb phase 1: out of memory for %zu chunk segments", nseg);
        return ZERO_ERR_NO_MEMORY;
    }
    /* One segment per chunk: each is one task of the kernel, its sums that
     * chunk's (0.0 + the chunk's partial, which is the partial itself). */
    for (size_t i = 0; i < nseg; i++) {
        segs[i].start = i * ctx->chunk;
        segs[i].len = n - segs[i].start < ctx->chunk ? n - segs[i].start : ctx->chunk;
    }
    lamb_params_of(step, &p);
    status = zero_optim_lamb_phase1(ctx, &p, &s, segs, nseg, w_sq, u_sq);
    zero_free(segs);
    return status;
}

/* The kernel of @p step over slice @p s: fp32 gradients in s.g, or 16-bit
 * ones in @p g16 (of @p g16_type) when it is not NULL. */
static zero_status_t run_kernel(const zero_optim_ctx_t *ctx, const zero_store_async_step_t *step,
                                const zero_optim_slice_t *sp, const uint16_t *g16, zero_optim_w16_t g16_type)
{
    const zero_optim_slice_t s = *sp;
    switch (step->optimizer) {
    case ZERO_OPTIMIZER_ADAM:
    case ZERO_OPTIMIZER_ADAMW: {
        zero_optim_adam_params_t p;
        zero_optim_adam_defaults(&p);
        p.lr = step->lr;
        p.beta1 = step->beta1;
        p.beta2 = step->beta2;
        p.eps = step->eps;
        p.weight_decay = step->weight_decay;
        p.adam_w_mode = step->optimizer == ZERO_OPTIMIZER_ADAMW ? 1 : step->adam_w_mode != 0;
        p.bias_correction = step->bias_correction != 0;
        p.step = step->step;
        p.grad_scale = step->grad_scale;
        return g16 != NULL ? zero_optim_adam_step_g16(ctx, &p, &s, g16, g16_type)
                           : zero_optim_adam_step(ctx, &p, &s);
    }
    case ZERO_OPTIMIZER_SGD: {
        zero_optim_sgd_params_t p;
        zero_optim_sgd_defaults(&p);
        p.lr = step->lr;
        p.momentum = step->momentum;
        p.dampening = step->dampening;
        p.weight_decay = step->weight_decay;
        p.nesterov = step->nesterov != 0;
        p.step = step->step;
        p.grad_scale = step->grad_scale;
        return g16 != NULL ? zero_optim_sgd_step_g16(ctx, &p, &s, g16, g16_type)
                           : zero_optim_sgd_step(ctx, &p, &s);
    }
    case ZERO_OPTIMIZER_ADAGRAD: {
        zero_optim_adagrad_params_t p;
        zero_optim_adagrad_defaults(&p);
        p.lr = step->lr;
        p.lr_decay = step->lr_decay;
        p.eps = step->eps;
        p.weight_decay = step->weight_decay;
        p.step = step->step;
        p.grad_scale = step->grad_scale;
        return g16 != NULL ? zero_optim_adagrad_step_g16(ctx, &p, &s, g16, g16_type)
                           : zero_optim_adagrad_step(ctx, &p, &s);
    }
    case ZERO_OPTIMIZER_LION: {
        zero_optim_lion_params_t p;
        zero_optim_lion_defaults(&p);
        p.lr = step->lr;
        p.beta1 = step->beta1;
        p.beta2 = step->beta2;
        p.weight_decay = step->weight_decay;
        p.grad_scale = step->grad_scale;
        return g16 != NULL ? zero_optim_lion_step_g16(ctx, &p, &s, g16, g16_type)
                           : zero_optim_lion_step(ctx, &p, &s);
    }
    case ZERO_OPTIMIZER_LAMB:
        if (g16 != NULL) {
            ZERO_LOG_ERROR("optimizer step: Lamb takes fp32 gradients");
            return ZERO_ERR_UNSUPPORTED;
        }
        return run_lamb(ctx, step, &s);
    default:
        ZERO_LOG_ERROR("optimizer step: %s is not an elementwise optimizer", zero_optimizer_type_string(step->optimizer));
        return ZERO_ERR_UNSUPPORTED;
    }
}

zero_status_t zero_store_run_kernel(const zero_optim_ctx_t *ctx, const zero_store_async_step_t *step, float *w,
                                    const float *g32, float *s1, float *s2, uint16_t *w16,
                                    zero_optim_w16_t w16_type, size_t n)
{
    zero_optim_slice_t s = {.w = w, .g = g32, .s1 = s1, .s2 = s2, .w16 = w16, .w16_type = w16_type, .n = n};
    return run_kernel(ctx, step, &s, NULL, ZERO_OPTIM_W16_NONE);
}

zero_status_t zero_store_run_kernel_g16(const zero_optim_ctx_t *ctx, const zero_store_async_step_t *step, float *w,
                                        const uint16_t *g16, zero_optim_w16_t g16_type, float *s1, float *s2,
                                        uint16_t *w16, zero_optim_w16_t w16_type, size_t n)
{
    zero_optim_slice_t s = {.w = w, .g = NULL, .s1 = s1, .s2 = s2, .w16 = w16, .w16_type = w16_type, .n = n};
    if (g16 == NULL && n > 0) {
        ZERO_LOG_ERROR("optimizer step: the 16-bit gradient of a %zu-element range is NULL", n);
        return ZERO_ERR_INVALID_ARG;
    }
    return run_kernel(ctx, step, &s, g16, g16_type);
}

void zero_store_destroy(zero_store_t *store)
{
    if (store != NULL)
        store->ops->destroy(store);
}

zero_status_t zero_store_flush(zero_store_t *store)
{
    return store->ops->flush != NULL ? store->ops->flush(store) : ZERO_OK;
}

size_t zero_store_max_range(const zero_store_t *store) { return store->max_range; }

/* The NVMe store's parameters from the config's offload_optimizer and aio blocks. */
static zero_status_t nvme_params_for(const zero_store_options_t *opts, const zero_store_desc_t *desc,
                                     zero_store_nvme_params_t *params_p)
{
    const zero_config_t *config = opts->config;
    const zero_config_offload_optimizer_t *oo;
    zero_store_nvme_params_t params;
    size_t longest = 1;

    if (config == NULL) {
        ZERO_LOG_ERROR("rank %d: an NVMe optimizer state store needs the config (its aio block)", opts->rank);
        return ZERO_ERR_INVALID_ARG;
    }
    oo = &config->zero_optimization.offload_optimizer;
    for (int g = 0; g < desc->num_groups; g++)
        if (desc->length[g] > longest)
            longest = desc->length[g];
    zero_store_nvme_params_default(&params);
    params.dir = opts->nvme_path != NULL ? opts->nvme_path : oo->nvme_path;
    params.rank = opts->rank;
    params.buffer_count = oo->buffer_count > (uint32_t)INT32_MAX ? INT32_MAX : (int)oo->buffer_count;
    /* DeepSpeed streams the state sub-group by sub-group: its buffers hold one sub-group. */
    params.max_range = config->zero_optimization.sub_group_size < longest ? (size_t)config->zero_optimization.sub_group_size
                                                                           : longest;
    params.block_size = (size_t)config->aio.block_size;
    /* io_uring refuses rings over 32768 entries; far fewer requests in flight already saturate a device */
    params.queue_depth = config->aio.queue_depth > 4096 ? 4096 : (int)config->aio.queue_depth;
    params.io_threads = config->aio.intra_op_parallelism > 64 ? 64 : (int)config->aio.intra_op_parallelism;
    params.io = config->aio.io_backend == ZERO_AIO_POSIX ? ZERO_STORE_NVME_IO_THREADS : ZERO_STORE_NVME_IO_URING;
    params.timeout_s = opts->timeout_s > 0 ? opts->timeout_s : STORE_DEFAULT_TIMEOUT_S;
    if (params.dir == NULL) {
        ZERO_LOG_ERROR("rank %d: offload_optimizer.device \"nvme\" needs offload_optimizer.nvme_path (the directory "
                       "for the state file)", opts->rank);
        return ZERO_ERR_INVALID_ARG;
    }
    *params_p = params;
    return ZERO_OK;
}

/* The NVMe store of a host engine. */
static zero_status_t create_nvme(const zero_store_options_t *opts, const zero_store_desc_t *desc,
                                 zero_store_t **store_p)
{
    zero_store_nvme_params_t params;
    zero_status_t status = nvme_params_for(opts, desc, &params);
    return status != ZERO_OK ? status : zero_store_nvme_create(desc, &params, store_p);
}

/* The remote store on the servers of the options, with the job's token
 * (ZERO_JOB_TOKEN, as zero-optd reads it). The master weights live on the
 * servers, so nothing is adopted: the step writes the weights back instead. */
static zero_status_t create_remote(const zero_store_options_t *opts, const zero_store_desc_t *desc,
                                   zero_store_t **store_p)
{
    zero_store_remote_opts_t ro;
    zero_store_desc_t remote = *desc;
    const char *token = getenv("ZERO_JOB_TOKEN");

    if (opts->servers == NULL || opts->num_servers < 1) {
        ZERO_LOG_ERROR("rank %d: offload_optimizer.device \"remote\" needs offload_optimizer.servers", opts->rank);
        return ZERO_ERR_INVALID_ARG;
    }
    memset(&ro, 0, sizeof(ro));
    if (token != NULL && token[0] != '\0' && zero_optd_token_parse(token, strlen(token), ro.token) != 0) {
        ZERO_LOG_ERROR("rank %d: ZERO_JOB_TOKEN is not 32 lowercase hex digits; the optimizer servers need the job's "
                       "token", opts->rank);
        return ZERO_ERR_INVALID_ARG;
    }
    ro.servers = opts->servers;
    ro.num_servers = opts->num_servers;
    ro.rank = opts->rank;
    ro.timeout_s = opts->timeout_s > 0 ? opts->timeout_s : STORE_DEFAULT_TIMEOUT_S;
    ro.split = opts->split;
    memset(remote.adopt_master, 0, sizeof(remote.adopt_master));
    return zero_store_remote_create(&remote, &ro, store_p);
}

/* Elements per transfer slot of CPU offload for device ranks: one
 * sub_group_size piece, at most 16 Mi elements (64 MiB of fp32 gradients), at
 * most the longest owned range: buffer_count slots bound the pinned memory. */
#define CPU_SLOT_ELEMS_MAX ((size_t)1 << 24)

size_t zero_offload_pin_limit(void)
{
    const char *v = getenv("ZERO_OFFLOAD_PIN_LIMIT");
    char *end = NULL;
    unsigned long long n;
    if (v == NULL || v[0] == '\0')
        return 0;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0') {
        ZERO_LOG_WARN("ZERO_OFFLOAD_PIN_LIMIT=\"%s\" is not a byte count; ignoring it", v);
        return 0;
    }
    return (size_t)n;
}

/* What create_cpu_inner needs: the options, and the CPU offload store's slot (its range bound). */
typedef struct cpu_inner_arg {
    const zero_store_options_t *opts;
    size_t slot_elems;
} cpu_inner_arg_t;

/* The store under CPU offload (store_cpu.h's inner_create) over @p desc, the
 * offloaded part in host memory: the NVMe store's file for "nvme", a slot's
 * range per buffer; the remote store for "remote" (without the Lamb split
 * hint: a device engine's Lamb runs on acquired ranges, docs/optd.md). */
static zero_status_t create_cpu_inner(const zero_store_desc_t *desc, void *arg, zero_store_t **store_p)
{
    const cpu_inner_arg_t *a = arg;
    if (a->opts->device == ZERO_STORE_DEVICE_NVME) {
        zero_store_nvme_params_t nvme;
        zero_status_t status = nvme_params_for(a->opts, desc, &nvme);
        if (status != ZERO_OK)
            return status;
        nvme.max_range = a->slot_elems;   /* a chunk's range per buffer (chunks never exceed max_range) */
        return zero_store_nvme_create(desc, &nvme, store_p);
    }
    if (a->opts->device == ZERO_STORE_DEVICE_REMOTE) {
        zero_store_options_t o = *a->opts;
        memset(&o.split, 0, sizeof(o.split));
        return create_remote(&o, desc, store_p);
    }
    return zero_store_host_create(desc, store_p);
}

/* The CPU offload store of a device engine from offload_optimizer; its
 * master and moments in host memory ("cpu"), or in the store that
 * create_cpu_inner makes ("nvme", "remote"). */
static zero_status_t create_cpu(const zero_store_options_t *opts, const zero_store_desc_t *desc,
                                zero_store_t **store_p)
{
    zero_store_cpu_params_t params;
    cpu_inner_arg_t inner;
    size_t longest = 1;
    zero_store_cpu_params_default(&params);
    for (int g = 0; g < desc->num_groups; g++)
        if (desc->length[g] > longest)
            longest = desc->length[g];
    params.slot_elems = longest < CPU_SLOT_ELEMS_MAX ? longest : CPU_SLOT_ELEMS_MAX;
    if (opts->config != NULL) {
        const zero_config_t *config = opts->config;
        uint32_t count = config->zero_optimization.offload_optimizer.buffer_count;
        if (config->zero_optimization.sub_group_size < params.slot_elems)
            params.slot_elems = (size_t)config->zero_optimization.sub_group_size;
        params.slots = count > 64 ? 64 : count;   /* more slots than that only pin more memory */
    }
    params.device = opts->cuda_device;
    params.stream = opts->cuda_stream;
    params.threads = opts->threads > 0 ? opts->threads : 1;
    params.pin_limit = zero_offload_pin_limit();
    params.timeout_s = opts->timeout_s > 0 ? opts->timeout_s : STORE_DEFAULT_TIMEOUT_S;
    if (opts->device == ZERO_STORE_DEVICE_REMOTE)
        /* the remote store bounds each request to the servers by timeout_s
         * and names the server that stalled; the CPU offload's own wait
         * only backs that up, so it must not end first. It counts from
         * step_wait over the whole step, though: a step longer than this in
         * all still ends here (docs/offload.md, zero-optd below the CPU
         * offload) */
        params.timeout_s *= 2;
    if (opts->device != ZERO_STORE_DEVICE_CPU) {
        inner.opts = opts;
        inner.slot_elems = params.slot_elems;
        params.inner_create = create_cpu_inner;
        params.inner_arg = &inner;
    }
    if (opts->buckets != NULL && opts->num_buckets > 0 && opts->ratio < 1.0) {
        zero_status_t status;
        int count;
        unsigned char *offloaded = zero_calloc((size_t)opts->num_buckets, 1);
        if (offloaded == NULL) {
            ZERO_LOG_ERROR("rank %d: out of memory", opts->rank);
            return ZERO_ERR_NO_MEMORY;
        }
        /* no traced arrival order: the backward produces the last buckets first */
        status = zero_offload_ratio_pick(opts->num_buckets, NULL, opts->ratio, offloaded, &count);
        if (status == ZERO_OK && count == 0) {
            /* nothing to offload: the plain store in device memory, stepped by the device kernels */
            ZERO_LOG_INFO("rank %d: offload_optimizer.ratio %g offloads none of %d buckets: the optimizer state stays "
                          "in device memory", opts->rank, opts->ratio, opts->num_buckets);
            status = zero_store_host_create(desc, store_p);
        } else if (status == ZERO_OK) {
            ZERO_LOG_INFO("rank %d: offload_optimizer.ratio %g: %d of %d buckets stepped on the CPU", opts->rank,
                          opts->ratio, count, opts->num_buckets);
            params.buckets = opts->buckets;
            params.num_buckets = opts->num_buckets;
            params.offloaded = offloaded;
            status = zero_store_cpu_create(desc, &params, store_p);
        }
        zero_free(offloaded);
        return status;
    }
    return zero_store_cpu_create(desc, &params, store_p);
}

zero_store_device_t zero_store_device_from_config(zero_offload_device_t device)
{
    switch (device) {
    case ZERO_OFFLOAD_CPU:
        return ZERO_STORE_DEVICE_CPU;
    case ZERO_OFFLOAD_NVME:
        return ZERO_STORE_DEVICE_NVME;
    case ZERO_OFFLOAD_REMOTE:
        return ZERO_STORE_DEVICE_REMOTE;
    default:
        return ZERO_STORE_DEVICE_NONE;
    }
}

zero_status_t zero_store_create_for(const zero_store_options_t *opts, const zero_store_desc_t *desc,
                                    zero_store_t **store_p)
{
    switch (opts->device) {
    case ZERO_STORE_DEVICE_NONE:
        return zero_store_host_create(desc, store_p);
    case ZERO_STORE_DEVICE_CPU: {
        if (desc->kind == ZERO_MEM_DEVICE)
            return create_cpu(opts, desc, store_p);
        /* A host engine's state is in host memory already: the host store. */
        zero_store_desc_t host = *desc;
        if (host.kind != ZERO_MEM_HOST)   /* another kind's master cannot be adopted into host memory */
            memset(host.adopt_master, 0, sizeof(host.adopt_master));
        host.kind = ZERO_MEM_HOST;
        return zero_store_host_create(&host, store_p);
    }
    case ZERO_STORE_DEVICE_NVME:
        /* a device engine: the CPU offload store over the file (its kernels
         * must not be handed the NVMe store's host buffers) */
        return desc->kind == ZERO_MEM_DEVICE ? create_cpu(opts, desc, store_p) : create_nvme(opts, desc, store_p);
    case ZERO_STORE_DEVICE_REMOTE:
        /* a device engine: the CPU offload store, its slots stepped on the servers */
        return desc->kind == ZERO_MEM_DEVICE ? create_cpu(opts, desc, store_p) : create_remote(opts, desc, store_p);
    default:
        ZERO_LOG_ERROR("rank %d: optimizer state device %d is not known", opts->rank, (int)opts->device);
        return ZERO_ERR_UNSUPPORTED;
    }
}
