/* The config -> kernel parameter mapping and the kernel dispatch (optim_hparams.h). */
#define ZERO_LOG_MODULE "optim"
#include "optim/optim_hparams.h"

#include "optim/lr_schedule.h"
#include "util/alloc.h"
#include "util/log.h"

#include <stdio.h>

#include <string.h>

zero_status_t zero_optim_hparams_from_config(const zero_config_optimizer_t *o, zero_optim_hparams_t *hp)
{
    memset(hp, 0, sizeof(*hp));
    switch (o->type) {
    case ZERO_OPTIMIZER_ADAM:
    case ZERO_OPTIMIZER_ADAMW:
        hp->kind = ZERO_OPTIM_KIND_ADAM;
        zero_optim_adam_defaults(&hp->adam);
        hp->adam.lr = (float)o->lr;
        hp->adam.beta1 = (float)o->betas[0];
        hp->adam.beta2 = (float)o->betas[1];
        hp->adam.eps = (float)o->eps;
        hp->adam.weight_decay = (float)o->weight_decay;
        hp->adam.adam_w_mode = o->type == ZERO_OPTIMIZER_ADAMW ? 1 : o->adam_w_mode;
        hp->adam.bias_correction = o->bias_correction;
        return ZERO_OK;
    case ZERO_OPTIMIZER_SGD:
        hp->kind = ZERO_OPTIM_KIND_SGD;
        zero_optim_sgd_defaults(&hp->sgd);
        hp->sgd.lr = (float)o->lr;
        hp->sgd.momentum = (float)o->momentum;
        hp->sgd.dampening = (float)o->dampening;
        hp->sgd.weight_decay = (float)o->weight_decay;
        hp->sgd.nesterov = o->nesterov;
        return ZERO_OK;
    case ZERO_OPTIMIZER_ADAGRAD:
        hp->kind = ZERO_OPTIM_KIND_ADAGRAD;
        zero_optim_adagrad_defaults(&hp->adagrad);
        hp->adagrad.lr = (float)o->lr;
        hp->adagrad.eps = (float)o->eps;
        hp->adagrad.weight_decay = (float)o->weight_decay;
        hp->adagrad.initial_accumulator_value = 0.0f;   /* DeepSpeed's Adagrad starts its sum at 0 */
        return ZERO_OK;
    case ZERO_OPTIMIZER_LION:
        hp->kind = ZERO_OPTIM_KIND_LION;
        zero_optim_lion_defaults(&hp->lion);
        hp->lion.lr = (float)o->lr;
        hp->lion.beta1 = (float)o->betas[0];
        hp->lion.beta2 = (float)o->betas[1];
        hp->lion.weight_decay = (float)o->weight_decay;
        return ZERO_OK;
    case ZERO_OPTIMIZER_LAMB:
        hp->kind = ZERO_OPTIM_KIND_LAMB;
        zero_optim_lamb_defaults(&hp->lamb);
        hp->lamb.lr = (float)o->lr;
        hp->lamb.beta1 = (float)o->betas[0];
        hp->lamb.beta2 = (float)o->betas[1];
        hp->lamb.eps = (float)o->eps;
        hp->lamb.weight_decay = (float)o->weight_decay;
        hp->lamb.max_coeff = (float)o->max_coeff;
        hp->lamb.min_coeff = (float)o->min_coeff;
        hp->lamb.bias_correction = o->bias_correction;
        return ZERO_OK;
    default:
        ZERO_LOG_ERROR("optimizer %s has no kernel", zero_optimizer_type_string(o->type));
        return ZERO_ERR_UNSUPPORTED;
    }
}

zero_optim_hparams_t zero_optim_hparams_for_step(const zero_optim_hparams_t *base, const zero_optim_step_values_t *v)
{
    zero_optim_hparams_t hp = *base;
    float lr = (float)v->lr;
    switch (hp.kind) {
    case ZERO_OPTIM_KIND_ADAM:
        hp.adam.lr = lr;
        hp.adam.step = v->step;
        hp.adam.grad_scale = v->grad_scale;
        if (!v->decay)
            hp.adam.weight_decay = 0.0f;
        if (v->momentum_cycled) {
            hp.adam.beta1 = (float)v->momentum;
            hp.adam.beta2 = (float)ZERO_LR_ONECYCLE_BETA2;
        }
        break;
    case ZERO_OPTIM_KIND_SGD:
        hp.sgd.lr = lr;
        hp.sgd.step = v->step;
        hp.sgd.grad_scale = v->grad_scale;
        if (!v->decay)
            hp.sgd.weight_decay = 0.0f;
        if (v->momentum_cycled)
            hp.sgd.momentum = (float)v->momentum;
        break;
    case ZERO_OPTIM_KIND_ADAGRAD:
        hp.adagrad.lr = lr;
        hp.adagrad.step = v->step;
        hp.adagrad.grad_scale = v->grad_scale;
        if (!v->decay)
            hp.adagrad.weight_decay = 0.0f;
        break;
    case ZERO_OPTIM_KIND_LION:
        hp.lion.lr = lr;
        hp.lion.grad_scale = v->grad_scale;
        if (!v->decay)
            hp.lion.weight_decay = 0.0f;
        if (v->momentum_cycled)
            hp.lion.beta1 = (float)v->momentum;
        break;
    case ZERO_OPTIM_KIND_LAMB:
        /* Lamb keeps its betas under a cycled momentum, as DeepSpeed's FusedLamb does. */
        hp.lamb.lr = lr;
        hp.lamb.step = v->step;
        hp.lamb.grad_scale = v->grad_scale;
        if (!v->decay)
            hp.lamb.weight_decay = 0.0f;
        break;
    default:
        break;
    }
    return hp;
}

int zero_optim_hparams_num_states(const zero_optim_hparams_t *hp)
{
    switch (hp->kind) {
    case ZERO_OPTIM_KIND_ADAM:
    case ZERO_OPTIM_KIND_LAMB:
        return 2;
    case ZERO_OPTIM_KIND_SGD:
        return hp->sgd.momentum != 0.0f ? 1 : 0;
    case ZERO_OPTIM_KIND_ADAGRAD:
    case ZERO_OPTIM_KIND_LION:
        return 1;
    default:
        return 0;
    }
}

const char *zero_optim_kind_name(zero_optim_kind_t kind)
{
    static const char *const names[ZERO_OPTIM_KIND_COUNT] = {"adam", "sgd", "adagrad", "lion", "lamb"};
    return kind >= 0 && kind < ZERO_OPTIM_KIND_COUNT ? names[kind] : "unknown";
}

zero_status_t zero_optim_hparams_step(const zero_optim_ctx_t *ctx, const zero_optim_hparams_t *hp,
                                      const zero_optim_slice_t *s)
{
    switch (hp->kind) {
    case ZERO_OPTIM_KIND_ADAM:
        return zero_optim_adam_step(ctx, &hp->adam, s);
    case ZERO_OPTIM_KIND_SGD:
        return zero_optim_sgd_step(ctx, &hp->sgd, s);
    case ZERO_OPTIM_KIND_ADAGRAD:
        return zero_optim_adagrad_step(ctx, &hp->adagrad, s);
    case ZERO_OPTIM_KIND_LION:
        return zero_optim_lion_step(ctx, &hp->lion, s);
    default:
        ZERO_LOG_ERROR("optimizer %s has no elementwise step (Lamb runs in two phases)", zero_optim_kind_name(hp->kind));
        return ZERO_ERR_INVALID_ARG;
    }
}

int zero_optim_hparams_has_fused(const zero_optim_hparams_t *hp)
{
    return hp->kind == ZERO_OPTIM_KIND_ADAM;
}

zero_status_t zero_optim_hparams_step_fused(const zero_optim_ctx_t *ctx, const zero_optim_hparams_t *hp,
                                            const zero_optim_slice_t *s, const float *g_add)
{
    if (!zero_optim_hparams_has_fused(hp)) {
        ZERO_LOG_ERROR("optimizer %s has no fused step (its gradient as two addends)", zero_optim_kind_name(hp->kind));
        return ZERO_ERR_UNSUPPORTED;
    }
    return zero_optim_adam_step_fused(ctx, &hp->adam, s, g_add);
}

zero_status_t zero_optim_hparams_init_state(const zero_optim_ctx_t *ctx, const zero_optim_hparams_t *hp, float *s1,
                                            size_t n)
{
    if (hp->kind != ZERO_OPTIM_KIND_ADAGRAD || s1 == NULL)
        return ZERO_OK;
    return zero_optim_adagrad_init_state(ctx, &hp->adagrad, s1, n);
}

zero_status_t zero_optim_groups_from_config(const zero_config_t *c, zero_optim_group_t **groups_p, int *count_p)
{
    int count = 1 + (int)c->num_param_groups;
    zero_optim_group_t *groups = zero_calloc((size_t)count, sizeof(*groups));
    zero_status_t status;
    if (groups == NULL) {
        ZERO_LOG_ERROR("optimizer: out of memory for %d parameter groups", count);
        return ZERO_ERR_NO_MEMORY;
    }
    snprintf(groups[0].name, sizeof(groups[0].name), "default");
    groups[0].lr = c->optimizer.lr;
    status = zero_optim_hparams_from_config(&c->optimizer, &groups[0].hparams);
    for (int i = 1; i < count && status == ZERO_OK; i++) {
        const zero_config_param_group_t *pg = &c->param_groups[i - 1];
        snprintf(groups[i].name, sizeof(groups[i].name), "%s", pg->name);
        groups[i].lr = pg->optimizer.lr;
        if (groups[i].lr != groups[0].lr && groups[0].lr == 0.0) {
            ZERO_LOG_ERROR("optimizer.param_groups.%s.lr: a group's rate follows the schedule in proportion to "
                           "optimizer.params.lr, which is 0; give optimizer.params.lr a rate",
                           pg->name);
            status = ZERO_ERR_CONFIG;
            break;
        }
        status = zero_optim_hparams_from_config(&pg->optimizer, &groups[i].hparams);
    }
    if (status != ZERO_OK) {
        zero_free(groups);
        return status;
    }
    *groups_p = groups;
    *count_p = count;
    return ZERO_OK;
}

double zero_optim_group_lr(const zero_optim_group_t *groups, int gi, double schedule_lr)
{
    if (gi == 0 || groups[gi].lr == groups[0].lr)
        return schedule_lr;
    /* the schedule's factor first: 1.0 exactly while it sits at the base rate */
    return groups[gi].lr * (schedule_lr / groups[0].lr);
}

int zero_optim_groups_num_states(const zero_optim_group_t *groups, int count)
{
    int most = 0;
    for (int i = 0; i < count; i++) {
        int n = zero_optim_hparams_num_states(&groups[i].hparams);
        most = n > most ? n : most;
    }
    return most;
}

int zero_optim_groups_find(const zero_optim_group_t *groups, int count, const char *name)
{
    for (int i = 0; i < count && name != NULL; i++)
        if (strcmp(groups[i].name, name) == 0)
            return i;
    return -1;
}

int zero_optim_group_describe(const zero_optim_group_t *group, char *buf, size_t size)
{
    const zero_optim_hparams_t *hp = &group->hparams;
    switch (hp->kind) {
    case ZERO_OPTIM_KIND_ADAM:
        return snprintf(buf, size, "adam lr=%.17g betas=%.9g,%.9g eps=%.9g weight_decay=%.9g adam_w_mode=%d "
                        "bias_correction=%d", group->lr, hp->adam.beta1, hp->adam.beta2, hp->adam.eps,
                        hp->adam.weight_decay, hp->adam.adam_w_mode, hp->adam.bias_correction);
    case ZERO_OPTIM_KIND_SGD:
        return snprintf(buf, size, "sgd lr=%.17g momentum=%.9g dampening=%.9g weight_decay=%.9g nesterov=%d",
                        group->lr, hp->sgd.momentum, hp->sgd.dampening, hp->sgd.weight_decay, hp->sgd.nesterov);
    case ZERO_OPTIM_KIND_ADAGRAD:
        return snprintf(buf, size, "adagrad lr=%.17g eps=%.9g weight_decay=%.9g", group->lr, hp->adagrad.eps,
                        hp->adagrad.weight_decay);
    case ZERO_OPTIM_KIND_LION:
        return snprintf(buf, size, "lion lr=%.17g betas=%.9g,%.9g weight_decay=%.9g", group->lr, hp->lion.beta1,
                        hp->lion.beta2, hp->lion.weight_decay);
    case ZERO_OPTIM_KIND_LAMB:
        return snprintf(buf, size, "lamb lr=%.17g betas=%.9g,%.9g eps=%.9g weight_decay=%.9g max_coeff=%.9g "
                        "min_coeff=%.9g bias_correction=%d", group->lr, hp->lamb.beta1, hp->lamb.beta2, hp->lamb.eps,
                        hp->lamb.weight_decay, hp->lamb.max_coeff, hp->lamb.min_coeff, hp->lamb.bias_correction);
    default:
        return snprintf(buf, size, "unknown");
    }
}
