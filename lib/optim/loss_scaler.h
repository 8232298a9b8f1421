/*
 * Loss scaling for fp16 training, as DeepSpeed's DynamicLossScaler and static
 * LossScaler (deepspeed/runtime/fp16/loss_scaler.py), with serialisable state.
 *
 * Dynamic update, once per optimizer boundary, given whether any rank saw an
 * inf/nan gradient:
 *   overflow:  if hysteresis == 1 or cur_hysteresis == 1:
 *                  at min_scale (with raise_error_at_min_scale): error
 *                  else scale = max(scale / factor, min_scale)
 *              else cur_hysteresis -= 1
 *              last_overflow_iter = cur_iter
 *   clean:     if consecutive_hysteresis: cur_hysteresis = hysteresis
 *              if (cur_iter - last_overflow_iter) % scale_window == 0:
 *                  if not consecutive_hysteresis: cur_hysteresis = hysteresis
 *                  scale *= factor
 *   cur_iter += 1
 * starting from scale = 2^initial_scale_power, cur_iter = 0,
 * last_overflow_iter = -1, cur_hysteresis = hysteresis. So with no overflow
 * the scale first doubles after scale_window clean steps.
 *
 * Thread safety: none; the engine owns one scaler.
 */
#ifndef ZERO_OPTIM_LOSS_SCALER_H
#define ZERO_OPTIM_LOSS_SCALER_H

#include <stdint.h>
#include <zero/status.h>

typedef struct zero_loss_scaler_params {
    int dynamic;                  /* 1: dynamic (DeepSpeed loss_scale 0); 0: static_scale */
    double static_scale;          /* the fixed scale when !dynamic (> 0; 1 for bf16/fp32) */
    int initial_scale_power;      /* 16 */
    int64_t scale_window;         /* 1000 */
    int hysteresis;               /* 2 (DeepSpeed's delayed_shift) */
    int consecutive_hysteresis;   /* 0 */
    double min_scale;             /* 1 */
    double scale_factor;          /* 2 */
    int raise_error_at_min_scale; /* 1 */
} zero_loss_scaler_params_t;

/* Everything a checkpoint must keep (the params come from the config). */
typedef struct zero_loss_scaler_state {
    double cur_scale;
    int64_t cur_iter;
    int64_t last_overflow_iter;
    int cur_hysteresis;
} zero_loss_scaler_state_t;

typedef struct zero_loss_scaler {
    zero_loss_scaler_params_t params;
    zero_loss_scaler_state_t state;
} zero_loss_scaler_t;

/* DeepSpeed's fp16 defaults, dynamic. */
void zero_loss_scaler_defaults(zero_loss_scaler_params_t *params);

/* ZERO_ERR_INVALID_ARG for a window < 1, hysteresis < 1, factor <= 1,
 * min_scale <= 0, a power outside [-126, 127] or a static scale <= 0. */
zero_status_t zero_loss_scaler_init(zero_loss_scaler_t *ls, const zero_loss_scaler_params_t *params);

/* The scale to multiply the loss by (the seed of the backward pass). */
double zero_loss_scaler_scale(const zero_loss_scaler_t *ls);

/*
 * Records one boundary's overflow flag and adapts the scale (static: no-op).
 * Returns ZERO_ERR_LOSS_SCALE (logged, state unchanged) when an overflow must
 * lower the scale that is already at min_scale and raise_error_at_min_scale
 * is set: training cannot continue in fp16.
 */
zero_status_t zero_loss_scaler_update(zero_loss_scaler_t *ls, int overflow);

void zero_loss_scaler_get_state(const zero_loss_scaler_t *ls, zero_loss_scaler_state_t *state_p);
/* ZERO_ERR_INVALID_ARG for a non-positive scale or counters that cannot occur. */
zero_status_t zero_loss_scaler_set_state(zero_loss_scaler_t *ls, const zero_loss_scaler_state_t *state);

#endif /* ZERO_OPTIM_LOSS_SCALER_H */
