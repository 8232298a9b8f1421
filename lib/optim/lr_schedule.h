/*
 * Learning-rate schedules with DeepSpeed's formulas
 * (deepspeed/runtime/lr_schedules.py), plus a constant schedule for trainers
 * that set the lr themselves (per-epoch schedules without a config scheduler).
 *
 * Step semantics, as DeepSpeed: a schedule starts at last_batch_iteration =
 * -1 with its initial lr (below); the engine runs an optimizer step with the
 * current lr and then calls zero_lr_schedule_step(), which increments
 * last_batch_iteration (to 0 after the first optimizer step) and computes the
 * lr for the next optimizer step. Skipped (overflow) steps do not step it.
 *
 * it = last_batch_iteration, N = max(2, warmup_num_steps), T = total_num_steps
 *   warmup gamma(it < N): log: ln(it + 1) / ln(N);  linear: it / N
 *   WarmupLR:       initial warmup_min_lr; lr = min + (max - min) * gamma, gamma = 1 for it >= N
 *   WarmupDecayLR:  as WarmupLR, then gamma = max(0, (T - it) / max(1, T - N))
 *   WarmupCosineLR: initial 0 (DeepSpeed's get_lr() before the first step);
 *                   lr = base_lr * ratio; it < N: ratio = wmin + gamma * (1 - wmin);
 *                   else ratio = max(0, cmin + (1 - cmin) * (1 + cos(pi * (it - N + 1) / (T - N))) / 2)
 *                   (T - N floored at 1: DeepSpeed divides by zero there)
 *   OneCycle:       initial cycle_min_lr (and cycle_min_mom); size = first + second,
 *                   ratio = first / size, b = it + 1, x = 1 + b/size - floor(1 + b/size),
 *                   s = x <= ratio ? x / ratio : (x - 1) / (ratio - 1);
 *                   it < size: lr = min_lr + (max_lr - min_lr) s, mom = max_mom - (max_mom - min_mom) s;
 *                   else d = it - size + 1: lr = min_lr / (1 + decay_lr_rate * d / decay_step_size),
 *                   mom = max_mom * (1 + decay_mom_rate * d / decay_step_size)
 *                   (no decay when decay_step_size or the rate is 0: min_lr, max_mom).
 *                   The stair counts are accepted and, as in DeepSpeed, unused.
 *                   DeepSpeed applies the momentum as betas = (mom, 0.99) for
 *                   Adam-like optimizers: ZERO_LR_ONECYCLE_BETA2.
 *   LRRangeTest:    initial min_lr; lr = min_lr * (1 + rate * i), i = (it + 1) / step_size,
 *                   floored when staircase.
 *
 * Thread safety: none; the engine owns one schedule.
 */
#ifndef ZERO_OPTIM_LR_SCHEDULE_H
#define ZERO_OPTIM_LR_SCHEDULE_H

#include <stdint.h>
#include <zero/config.h>
#include <zero/status.h>

#define ZERO_LR_ONECYCLE_BETA2 0.99

typedef enum zero_lr_schedule_type {
    ZERO_LR_CONSTANT = 0,      /* base_lr until zero_lr_schedule_set_lr */
    ZERO_LR_WARMUP,            /* WarmupLR */
    ZERO_LR_WARMUP_DECAY,      /* WarmupDecayLR */
    ZERO_LR_WARMUP_COSINE,     /* WarmupCosineLR */
    ZERO_LR_ONE_CYCLE,         /* OneCycle */
    ZERO_LR_RANGE_TEST         /* LRRangeTest */
} zero_lr_schedule_type_t;

/* zero_warmup_type_t (ZERO_WARMUP_LOG, ZERO_WARMUP_LINEAR) is the config's enum (zero/config.h). */

typedef struct zero_lr_schedule_params {
    zero_lr_schedule_type_t type;
    double base_lr;                 /* the optimizer's lr: CONSTANT, and WarmupCosineLR's base */
    /* WarmupLR, WarmupDecayLR, WarmupCosineLR */
    double warmup_min_lr, warmup_max_lr;
    int64_t warmup_num_steps;
    zero_warmup_type_t warmup_type;
    int64_t total_num_steps;
    double warmup_min_ratio, cos_min_ratio;
    /* OneCycle */
    int64_t cycle_first_step_size;
    int64_t cycle_second_step_size;   /* < 0: same as the first (DeepSpeed's None) */
    int64_t cycle_first_stair_count, cycle_second_stair_count;
    int64_t decay_step_size;
    double cycle_min_lr, cycle_max_lr, decay_lr_rate;
    int cycle_momentum;
    double cycle_min_mom, cycle_max_mom, decay_mom_rate;
    /* LRRangeTest */
    double lr_range_test_min_lr, lr_range_test_step_rate;
    int64_t lr_range_test_step_size;
    int lr_range_test_staircase;
} zero_lr_schedule_params_t;

/* What a checkpoint keeps. */
typedef struct zero_lr_schedule_state {
    int64_t last_batch_iteration;
    double lr;
    double momentum;
} zero_lr_schedule_state_t;

typedef struct zero_lr_schedule {
    zero_lr_schedule_params_t params;
    zero_lr_schedule_state_t state;
} zero_lr_schedule_t;

/* DeepSpeed's defaults for @p type (warmup 1000 steps log, OneCycle 2000/None,
 * momentum 0.8-0.9 cycled, range test 1e-3 / 2000 / 1.0, cos_min_ratio 1e-4). */
void zero_lr_schedule_defaults(zero_lr_schedule_params_t *params, zero_lr_schedule_type_t type);

/* Starts the schedule at last_batch_iteration = -1. ZERO_ERR_INVALID_ARG for
 * an unknown type or warmup type, negative step counts, a total_num_steps < 1
 * (decay, cosine), a first cycle step size < 1 or a range-test step size < 1. */
zero_status_t zero_lr_schedule_init(zero_lr_schedule_t *sched, const zero_lr_schedule_params_t *params);

/* Advances by one (DeepSpeed's step()) and recomputes lr and momentum. */
void zero_lr_schedule_step(zero_lr_schedule_t *sched);
/* DeepSpeed's step(batch_iteration): jumps to @p iteration (>= 0). */
zero_status_t zero_lr_schedule_step_to(zero_lr_schedule_t *sched, int64_t iteration);

double zero_lr_schedule_lr(const zero_lr_schedule_t *sched);
/* The cycled momentum (OneCycle with cycle_momentum); returns 0 and leaves
 * *momentum_p alone when the schedule does not drive momentum. */
int zero_lr_schedule_momentum(const zero_lr_schedule_t *sched, double *momentum_p);
/* Manual lr (per-epoch use): holds until the next step of a non-constant schedule. */
zero_status_t zero_lr_schedule_set_lr(zero_lr_schedule_t *sched, double lr);

void zero_lr_schedule_get_state(const zero_lr_schedule_t *sched, zero_lr_schedule_state_t *state_p);
zero_status_t zero_lr_schedule_set_state(zero_lr_schedule_t *sched, const zero_lr_schedule_state_t *state);

/* The lr and momentum at a given last_batch_iteration (>= 0), without state. */
double zero_lr_schedule_lr_at(const zero_lr_schedule_params_t *params, int64_t iteration);
int zero_lr_schedule_momentum_at(const zero_lr_schedule_params_t *params, int64_t iteration, double *momentum_p);

#endif /* ZERO_OPTIM_LR_SCHEDULE_H */
