#define ZERO_LOG_MODULE "optim"
#include "optim/loss_scaler.h"
#include "util/log.h"

#include <math.h>
#include <string.h>

void zero_loss_scaler_defaults(zero_loss_scaler_params_t *params)
{
    memset(params, 0, sizeof(*params));
    params->dynamic = 1;
    params->static_scale = 1.0;
    params->initial_scale_power = 16;
    params->scale_window = 1000;
    params->hysteresis = 2;
    params->consecutive_hysteresis = 0;
    params->min_scale = 1.0;
    params->scale_factor = 2.0;
    params->raise_error_at_min_scale = 1;
}

zero_status_t zero_loss_scaler_init(zero_loss_scaler_t *ls, const zero_loss_scaler_params_t *params)
{
    const zero_loss_scaler_params_t *p = params;
    if (ls == NULL || p == NULL) {
        ZERO_LOG_ERROR("loss scaler or its parameters is NULL");
        return ZERO_ERR_INVALID_ARG;
    }
    if (!p->dynamic) {
        if (!(p->static_scale > 0.0) || !isfinite(p->static_scale)) {
            ZERO_LOG_ERROR("static loss scale %g must be a positive finite number", p->static_scale);
            return ZERO_ERR_INVALID_ARG;
        }
    } else if (p->scale_window < 1 || p->hysteresis < 1 || !(p->scale_factor > 1.0) || !(p->min_scale > 0.0) ||
               p->initial_scale_power < -126 || p->initial_scale_power > 127) {
        ZERO_LOG_ERROR("dynamic loss scaler: invalid parameters (initial_scale_power %d, loss_scale_window %lld, "
                       "hysteresis %d, min_loss_scale %g, scale factor %g)", p->initial_scale_power,
                       (long long)p->scale_window, p->hysteresis, p->min_scale, p->scale_factor);
        return ZERO_ERR_INVALID_ARG;
    }
    ls->params = *p;
    ls->state.cur_scale = p->dynamic ? ldexp(1.0, p->initial_scale_power) : p->static_scale;
    ls->state.cur_iter = 0;
    ls->state.last_overflow_iter = -1;
    ls->state.cur_hysteresis = p->dynamic ? p->hysteresis : 1;
    return ZERO_OK;
}

double zero_loss_scaler_scale(const zero_loss_scaler_t *ls)
{
    return ls->state.cur_scale;
}

zero_status_t zero_loss_scaler_update(zero_loss_scaler_t *ls, int overflow)
{
    const zero_loss_scaler_params_t *p = &ls->params;
    zero_loss_scaler_state_t *s = &ls->state;

    if (!p->dynamic)
        return ZERO_OK;
    if (overflow) {
        if (p->hysteresis == 1 || s->cur_hysteresis == 1) {
            if (s->cur_scale == p->min_scale && p->raise_error_at_min_scale) {
                ZERO_LOG_ERROR("gradient overflow with the loss scale already at its minimum %g: "
                               "cannot lower it further (fp16 training diverged)", p->min_scale);
                return ZERO_ERR_LOSS_SCALE;
            }
            s->cur_scale = fmax(s->cur_scale / p->scale_factor, p->min_scale);
        } else {
            s->cur_hysteresis--;
        }
        s->last_overflow_iter = s->cur_iter;
    } else {
        if (p->consecutive_hysteresis)
            s->cur_hysteresis = p->hysteresis;
        if ((s->cur_iter - s->last_overflow_iter) % p->scale_window == 0) {
            if (!p->consecutive_hysteresis)
                s->cur_hysteresis = p->hysteresis;
            s->cur_scale *= p->scale_factor;
        }
    }
    s->cur_iter++;
    return ZERO_OK;
}

void zero_loss_scaler_get_state(const zero_loss_scaler_t *ls, zero_loss_scaler_state_t *state_p)
{
    *state_p = ls->state;
}

zero_status_t zero_loss_scaler_set_state(zero_loss_scaler_t *ls, const zero_loss_scaler_state_t *state)
{
    if (ls == NULL || state == NULL || !(state->cur_scale > 0.0) || !isfinite(state->cur_scale) ||
        state->cur_iter < 0 || state->last_overflow_iter < -1 || state->last_overflow_iter >= state->cur_iter ||
        state->cur_hysteresis < 1 || (ls->params.dynamic && state->cur_hysteresis > ls->params.hysteresis)) {
        ZERO_LOG_ERROR("loss scaler state is inconsistent (scale %g, iteration %lld, last overflow %lld, "
                       "hysteresis %d)", state ? state->cur_scale : 0.0, state ? (long long)state->cur_iter : 0LL,
                       state ? (long long)state->last_overflow_iter : 0LL, state ? state->cur_hysteresis : 0);
        return ZERO_ERR_INVALID_ARG;
    }
    ls->state = *state;
    return ZERO_OK;
}
