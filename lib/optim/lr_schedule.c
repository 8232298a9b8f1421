#define ZERO_LOG_MODULE "optim"
#include "optim/lr_schedule.h"
#include "util/log.h"

#include <math.h>
#include <string.h>

void zero_lr_schedule_defaults(zero_lr_schedule_params_t *p, zero_lr_schedule_type_t type)
{
    memset(p, 0, sizeof(*p));
    p->type = type;
    p->base_lr = 1e-3;
    p->warmup_min_lr = 0.0;
    p->warmup_max_lr = 1e-3;
    p->warmup_num_steps = 1000;
    p->warmup_type = ZERO_WARMUP_LOG;
    p->total_num_steps = 0;
    p->warmup_min_ratio = 0.0;
    p->cos_min_ratio = 1e-4;
    p->cycle_first_step_size = 2000;
    p->cycle_second_step_size = -1;
    p->cycle_first_stair_count = 0;
    p->cycle_second_stair_count = -1;
    p->decay_step_size = 0;
    p->cycle_min_lr = 0.0;
    p->cycle_max_lr = 0.0;
    p->decay_lr_rate = 0.0;
    p->cycle_momentum = 1;
    p->cycle_min_mom = 0.8;
    p->cycle_max_mom = 0.9;
    p->decay_mom_rate = 0.0;
    p->lr_range_test_min_lr = 1e-3;
    p->lr_range_test_step_rate = 1.0;
    p->lr_range_test_step_size = 2000;
    p->lr_range_test_staircase = 0;
}

static int64_t warmup_steps(const zero_lr_schedule_params_t *p)
{
    return p->warmup_num_steps > 2 ? p->warmup_num_steps : 2;
}

/* gamma during warmup (it < N). */
static double warmup_gamma(const zero_lr_schedule_params_t *p, int64_t it)
{
    double n = (double)warmup_steps(p);
    if (p->warmup_type == ZERO_WARMUP_LINEAR)
        return (double)it / n;
    return (1.0 / log(n)) * log((double)it + 1.0);
}

static double cycle_size(const zero_lr_schedule_params_t *p, double *ratio_p)
{
    double first = (double)p->cycle_first_step_size;
    double second = p->cycle_second_step_size >= 0 ? (double)p->cycle_second_step_size : first;
    double total = first + second;
    *ratio_p = first / total;
    return total;
}

static double cycle_scale(const zero_lr_schedule_params_t *p, int64_t it)
{
    double ratio, total = cycle_size(p, &ratio);
    double b = (double)(it + 1);
    double cycle = floor(1.0 + b / total);
    double x = 1.0 + b / total - cycle;
    return x <= ratio ? x / ratio : (x - 1.0) / (ratio - 1.0);
}

double zero_lr_schedule_lr_at(const zero_lr_schedule_params_t *p, int64_t it)
{
    switch (p->type) {
    case ZERO_LR_CONSTANT:
        return p->base_lr;
    case ZERO_LR_WARMUP:
    case ZERO_LR_WARMUP_DECAY: {
        double gamma;
        int64_t n = warmup_steps(p);
        if (it < n) {
            gamma = warmup_gamma(p, it);
        } else if (p->type == ZERO_LR_WARMUP) {
            gamma = 1.0;
        } else {
            double span = (double)(p->total_num_steps - n);
            gamma = fmax(0.0, (double)(p->total_num_steps - it) / fmax(1.0, span));
        }
        return p->warmup_min_lr + (p->warmup_max_lr - p->warmup_min_lr) * gamma;
    }
    case ZERO_LR_WARMUP_COSINE: {
        int64_t n = warmup_steps(p);
        double ratio;
        if (it < n) {
            ratio = p->warmup_min_ratio + warmup_gamma(p, it) * (1.0 - p->warmup_min_ratio);
        } else {
            double real_last = (double)(it - n + 1);
            double real_total = fmax(1.0, (double)(p->total_num_steps - n));
            ratio = (1.0 + cos(M_PI * real_last / real_total)) / 2.0;
            ratio = fmax(0.0, p->cos_min_ratio + (1.0 - p->cos_min_ratio) * ratio);
        }
        return p->base_lr * ratio;
    }
    case ZERO_LR_ONE_CYCLE: {
        double ratio, total = cycle_size(p, &ratio);
        if ((double)it < total)
            return p->cycle_min_lr + (p->cycle_max_lr - p->cycle_min_lr) * cycle_scale(p, it);
        if (p->decay_step_size == 0 || p->decay_lr_rate == 0.0)
            return p->cycle_min_lr;
        {
            double d = (double)it - total + 1.0;
            return p->cycle_min_lr / (1.0 + p->decay_lr_rate * (d / (double)p->decay_step_size));
        }
    }
    case ZERO_LR_RANGE_TEST: {
        double interval = (double)(it + 1) / (double)p->lr_range_test_step_size;
        if (p->lr_range_test_staircase)
            interval = floor(interval);
        return p->lr_range_test_min_lr * (1.0 + p->lr_range_test_step_rate * interval);
    }
    }
    return p->base_lr;
}

int zero_lr_schedule_momentum_at(const zero_lr_schedule_params_t *p, int64_t it, double *momentum_p)
{
    double ratio, total;
    if (p->type != ZERO_LR_ONE_CYCLE || !p->cycle_momentum)
        return 0;
    total = cycle_size(p, &ratio);
    if ((double)it < total) {
        *momentum_p = p->cycle_max_mom - (p->cycle_max_mom - p->cycle_min_mom) * cycle_scale(p, it);
    } else if (p->decay_step_size == 0 || p->decay_mom_rate == 0.0) {
        *momentum_p = p->cycle_max_mom;
    } else {
        double d = (double)it - total + 1.0;
        *momentum_p = p->cycle_max_mom * (1.0 + p->decay_mom_rate * (d / (double)p->decay_step_size));
    }
    return 1;
}

zero_status_t zero_lr_schedule_init(zero_lr_schedule_t *sched, const zero_lr_schedule_params_t *p)
{
    const char *bad = NULL;
    if (sched == NULL || p == NULL) {
        ZERO_LOG_ERROR("lr schedule or its parameters is NULL");
        return ZERO_ERR_INVALID_ARG;
    }
    switch (p->type) {
    case ZERO_LR_CONSTANT:
        break;
    case ZERO_LR_WARMUP:
    case ZERO_LR_WARMUP_DECAY:
    case ZERO_LR_WARMUP_COSINE:
        if (p->warmup_num_steps < 0)
            bad = "warmup_num_steps is negative";
        else if (p->warmup_type != ZERO_WARMUP_LOG && p->warmup_type != ZERO_WARMUP_LINEAR)
            bad = "warmup_type is neither log nor linear";
        else if (p->type != ZERO_LR_WARMUP && p->total_num_steps < 1)
            bad = "total_num_steps must be at least 1";
        break;
    case ZERO_LR_ONE_CYCLE:
        if (p->cycle_first_step_size < 1)
            bad = "cycle_first_step_size must be at least 1";
        else if (p->decay_step_size < 0)
            bad = "decay_step_size is negative";
        break;
    case ZERO_LR_RANGE_TEST:
        if (p->lr_range_test_step_size < 1)
            bad = "lr_range_test_step_size must be at least 1";
        break;
    default:
        bad = "unknown schedule type";
        break;
    }
    if (bad != NULL) {
        ZERO_LOG_ERROR("lr schedule (type %d): %s", (int)p->type, bad);
        return ZERO_ERR_INVALID_ARG;
    }
    sched->params = *p;
    sched->state.last_batch_iteration = -1;
    sched->state.momentum = 0.0;
    switch (p->type) {
    case ZERO_LR_CONSTANT: sched->state.lr = p->base_lr; break;
    case ZERO_LR_WARMUP:
    case ZERO_LR_WARMUP_DECAY: sched->state.lr = p->warmup_min_lr; break;
    case ZERO_LR_WARMUP_COSINE: sched->state.lr = 0.0; break;
    case ZERO_LR_ONE_CYCLE:
        sched->state.lr = p->cycle_min_lr;
        sched->state.momentum = p->cycle_min_mom;
        break;
    case ZERO_LR_RANGE_TEST: sched->state.lr = p->lr_range_test_min_lr; break;
    }
    return ZERO_OK;
}

static void recompute(zero_lr_schedule_t *sched)
{
    const zero_lr_schedule_params_t *p = &sched->params;
    if (p->type != ZERO_LR_CONSTANT)
        sched->state.lr = zero_lr_schedule_lr_at(p, sched->state.last_batch_iteration);
    zero_lr_schedule_momentum_at(p, sched->state.last_batch_iteration, &sched->state.momentum);
}

void zero_lr_schedule_step(zero_lr_schedule_t *sched)
{
    sched->state.last_batch_iteration++;
    recompute(sched);
}

zero_status_t zero_lr_schedule_step_to(zero_lr_schedule_t *sched, int64_t iteration)
{
    if (iteration < 0) {
        ZERO_LOG_ERROR("lr schedule: cannot step to negative iteration %lld", (long long)iteration);
        return ZERO_ERR_INVALID_ARG;
    }
    sched->state.last_batch_iteration = iteration;
    recompute(sched);
    return ZERO_OK;
}

double zero_lr_schedule_lr(const zero_lr_schedule_t *sched)
{
    return sched->state.lr;
}

int zero_lr_schedule_momentum(const zero_lr_schedule_t *sched, double *momentum_p)
{
    if (sched->params.type != ZERO_LR_ONE_CYCLE || !sched->params.cycle_momentum)
        return 0;
    *momentum_p = sched->state.momentum;
    return 1;
}

zero_status_t zero_lr_schedule_set_lr(zero_lr_schedule_t *sched, double lr)
{
    if (!(lr >= 0.0) || !isfinite(lr)) {
        ZERO_LOG_ERROR("lr schedule: learning rate %g must be finite and non-negative", lr);
        return ZERO_ERR_INVALID_ARG;
    }
    sched->state.lr = lr;
    return ZERO_OK;
}

void zero_lr_schedule_get_state(const zero_lr_schedule_t *sched, zero_lr_schedule_state_t *state_p)
{
    *state_p = sched->state;
}

zero_status_t zero_lr_schedule_set_state(zero_lr_schedule_t *sched, const zero_lr_schedule_state_t *state)
{
    if (state == NULL || state->last_batch_iteration < -1 || !isfinite(state->lr) || !isfinite(state->momentum)) {
        ZERO_LOG_ERROR("lr schedule state is invalid (iteration %lld)",
                       state ? (long long)state->last_batch_iteration : 0LL);
        return ZERO_ERR_INVALID_ARG;
    }
    sched->state = *state;
    return ZERO_OK;
}
