/*
 * Optimizer hyper-parameters: the mapping from the config's "optimizer" block
 * onto the kernels' parameter structs (optim.h), and the one dispatch from a
 * mapped set to its kernel.
 *
 * zero_optim_hparams_t is a plain value: the engine maps the config once into
 * a base set, and every optimizer call takes a copy with the values that
 * change per step (lr, step number, gradient multiplier, a cycled momentum)
 * and per weight-decay run filled in by zero_optim_hparams_for_step. A caller
 * that needs several sets (parameter groups with their own lr or decay) keeps
 * one base per group and overrides its fields after mapping.
 */
#ifndef ZERO_OPTIM_OPTIM_HPARAMS_H
#define ZERO_OPTIM_OPTIM_HPARAMS_H

#include "optim/optim.h"

#include <zero/config.h>

/* Which kernel family a set drives. */
typedef enum zero_optim_kind {
    ZERO_OPTIM_KIND_ADAM = 0,   /* Adam and AdamW (adam.adam_w_mode tells them apart) */
    ZERO_OPTIM_KIND_SGD,
    ZERO_OPTIM_KIND_ADAGRAD,
    ZERO_OPTIM_KIND_LION,
    ZERO_OPTIM_KIND_LAMB,
    ZERO_OPTIM_KIND_COUNT
} zero_optim_kind_t;

/* One optimizer's hyper-parameters. Only the member of @p kind is meaningful. */
typedef struct zero_optim_hparams {
    zero_optim_kind_t kind;
    zero_optim_adam_params_t adam;
    zero_optim_sgd_params_t sgd;
    zero_optim_adagrad_params_t adagrad;
    zero_optim_lion_params_t lion;
    zero_optim_lamb_params_t lamb;
} zero_optim_hparams_t;

/* The values one step (and one weight-decay run of it) sets. */
typedef struct zero_optim_step_values {
    double lr;
    int64_t step;             /* from 1: steps taken, skipped ones not counted */
    float grad_scale;         /* multiplies every gradient: clip coefficient / loss scale */
    int decay;                /* 0: this run has no weight decay */
    int momentum_cycled;      /* a OneCycle schedule drives the momentum: use @p momentum */
    double momentum;          /* Adam, Lion: beta1 (Adam's beta2 becomes ZERO_LR_ONECYCLE_BETA2); SGD: momentum */
} zero_optim_step_values_t;

/*
 * Maps the config's optimizer block (types and DeepSpeed defaults as parsed)
 * onto @p hp, with lr, step and grad_scale at their neutral values until
 * zero_optim_hparams_for_step. Errors: ZERO_ERR_UNSUPPORTED (logged) for an
 * optimizer type without a kernel (ZERO_OPTIMIZER_NONE or unknown).
 */
zero_status_t zero_optim_hparams_from_config(const zero_config_optimizer_t *o, zero_optim_hparams_t *hp);

/* A copy of @p base with @p v applied. */
zero_optim_hparams_t zero_optim_hparams_for_step(const zero_optim_hparams_t *base, const zero_optim_step_values_t *v);

/* Optimizer state arrays per element: Adam, Lamb 2; SGD 1 with momentum, else 0; Adagrad, Lion 1. */
int zero_optim_hparams_num_states(const zero_optim_hparams_t *hp);

/* "adam", "sgd", "adagrad", "lion", "lamb" ("unknown" otherwise). */
const char *zero_optim_kind_name(zero_optim_kind_t kind);

/*
 * The elementwise update of @p hp's optimizer over slice @p s (the matching
 * zero_optim_*_step). Lamb has no elementwise step: it is
 * zero_optim_lamb_phase1/2 (ZERO_ERR_INVALID_ARG, logged, here).
 */
zero_status_t zero_optim_hparams_step(const zero_optim_ctx_t *ctx, const zero_optim_hparams_t *hp,
                                      const zero_optim_slice_t *s);

/* Whether @p hp's optimizer has a kernel that takes its gradient as two
 * addends summed in registers (zero_optim_hparams_step_fused): Adam/AdamW. */
int zero_optim_hparams_has_fused(const zero_optim_hparams_t *hp);

/* The update of @p hp's optimizer over the gradient s->g + g_add ([s->n]
 * fp32), the sum never stored: zero_optim_adam_step_fused for Adam/AdamW.
 * ZERO_ERR_UNSUPPORTED (logged) for an optimizer without such a kernel. */
zero_status_t zero_optim_hparams_step_fused(const zero_optim_ctx_t *ctx, const zero_optim_hparams_t *hp,
                                            const zero_optim_slice_t *s, const float *g_add);

/* Fills a freshly zeroed state array as the optimizer starts it (Adagrad:
 * initial_accumulator_value; the others start at 0, nothing to do). */
zero_status_t zero_optim_hparams_init_state(const zero_optim_ctx_t *ctx, const zero_optim_hparams_t *hp, float *s1,
                                            size_t n);

/*
 * Parameter groups (optimizer.param_groups, a libzero extension): group 0,
 * "default", is optimizer.params; group i >= 1 is config->param_groups[i - 1],
 * optimizer.params with that entry's keys applied. Each group keeps its own
 * mapped hyper-parameters; the engine picks a parameter's group at
 * registration and steps each run of its owned range with its group's set.
 *
 * Learning rates under a schedule: the schedule computes one rate (the
 * default group's); group i follows it in proportion to its own configured
 * rate, lr_i(t) = lr_i * schedule(t) / optimizer.params.lr, as torch's
 * LambdaLR scales each group from its own base rate. A group whose rate is
 * optimizer.params.lr gets the schedule's rate exactly.
 */
typedef struct zero_optim_group {
    char name[ZERO_CONFIG_PARAM_GROUP_NAME_MAX + 1];
    double lr;                    /* the configured rate (the schedule scales it) */
    zero_optim_hparams_t hparams; /* mapped once, as zero_optim_hparams_from_config */
} zero_optim_group_t;

/* The groups of @p c into a new array of *count_p >= 1 entries (free with
 * zero_free). Errors (logged): ZERO_ERR_UNSUPPORTED as
 * zero_optim_hparams_from_config; ZERO_ERR_CONFIG for a group whose lr differs
 * from an optimizer.params.lr of 0 (it has no proportion to follow);
 * ZERO_ERR_NO_MEMORY. */
zero_status_t zero_optim_groups_from_config(const zero_config_t *c, zero_optim_group_t **groups_p, int *count_p);

/* Group @p gi's rate when the schedule's (the default group's) rate is @p schedule_lr. */
double zero_optim_group_lr(const zero_optim_group_t *groups, int gi, double schedule_lr);

/* The state arrays per element the groups need together (the most any one needs). */
int zero_optim_groups_num_states(const zero_optim_group_t *groups, int count);

/* The index of the group named @p name, or -1. */
int zero_optim_groups_find(const zero_optim_group_t *groups, int count, const char *name);

/* A group's settings as one canonical line of text ("lr=... weight_decay=..."
 * with every hyper-parameter its optimizer has, %.17g), for checkpoints to
 * store and compare; truncated to @p size. Returns the length it needed. */
int zero_optim_group_describe(const zero_optim_group_t *group, char *buf, size_t size);

#endif /* ZERO_OPTIM_OPTIM_HPARAMS_H */
