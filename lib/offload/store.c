/* The store front: argument checks shared by every implementation. */
#define ZERO_LOG_MODULE "offload"
#include "offload/store.h"
#include "util/log.h"

#include <string.h>

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

zero_optim_w16_t zero_store_w16_of(zero_dtype_t dtype)
{
    return dtype == ZERO_BF16 ? ZERO_OPTIM_W16_BF16 : dtype == ZERO_FP16 ? ZERO_OPTIM_W16_FP16 : ZERO_OPTIM_W16_NONE;
}

static int is_training_dtype(zero_dtype_t dtype)
{
    return dtype == ZERO_FP32 || dtype == ZERO_FP16 || dtype == ZERO_BF16;
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
    default:
        ZERO_LOG_ERROR("%s store: step with optimizer %s: only the elementwise optimizers (Adam, AdamW, SGD, "
                       "Adagrad, Lion) run where the state lives", store->ops->name,
                       zero_optimizer_type_string(step->optimizer));
        return ZERO_ERR_UNSUPPORTED;
    }
    if (!is_training_dtype(step->grad_dtype) || !is_training_dtype(step->weight_dtype) ||
        (step->count > 0 && (step->grad == NULL || step->weights == NULL))) {
        ZERO_LOG_ERROR("%s store: step of group %d [%zu, +%zu): gradient %s, weights %s, or a buffer missing",
                       store->ops->name, step->group, step->begin, step->count, zero_dtype_string(step->grad_dtype),
                       zero_dtype_string(step->weight_dtype));
        return ZERO_ERR_INVALID_ARG;
    }
    return store->ops->step_async(store, step);
}

zero_status_t zero_store_step_wait(zero_store_t *store)
{
    return store->ops->step_wait != NULL ? store->ops->step_wait(store) : ZERO_OK;
}

zero_status_t zero_store_run_kernel(const zero_optim_ctx_t *ctx, const zero_store_async_step_t *step, float *w,
                                    const float *g32, float *s1, float *s2, uint16_t *w16,
                                    zero_optim_w16_t w16_type, size_t n)
{
    zero_optim_slice_t s = {.w = w, .g = g32, .s1 = s1, .s2 = s2, .w16 = w16, .w16_type = w16_type, .n = n};
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
        return zero_optim_adam_step(ctx, &p, &s);
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
        return zero_optim_sgd_step(ctx, &p, &s);
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
        return zero_optim_adagrad_step(ctx, &p, &s);
    }
    case ZERO_OPTIMIZER_LION: {
        zero_optim_lion_params_t p;
        zero_optim_lion_defaults(&p);
        p.lr = step->lr;
        p.beta1 = step->beta1;
        p.beta2 = step->beta2;
        p.weight_decay = step->weight_decay;
        p.grad_scale = step->grad_scale;
        return zero_optim_lion_step(ctx, &p, &s);
    }
    default:
        ZERO_LOG_ERROR("optimizer step: %s is not an elementwise optimizer", zero_optimizer_type_string(step->optimizer));
        return ZERO_ERR_UNSUPPORTED;
    }
}

void zero_store_destroy(zero_store_t *store)
{
    if (store != NULL)
        store->ops->destroy(store);
}
