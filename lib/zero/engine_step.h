/*
 * The backward and the step (engine_step.c), for the files above it: the
 * life cycle in engine.c and the checkpoint code in engine_ckpt.c.
 */
#ifndef ZERO_ZERO_ENGINE_STEP_H
#define ZERO_ZERO_ENGINE_STEP_H

#include "zero/engine_internal.h"

/* The parameter's gradient buffer, taking its bucket's staging on first use
 * inside a backward (stages 2-3); NULL outside the gradient window. */
void *engine_param_grad_lazy(zero_param_h p);
/* Brings the fp32 masters to the weights the trainer sees (setup, checkpoint load). */
zero_status_t engine_write_back(zero_engine_h e);
/* The step's fp32 gradient scratch of every 16-bit group (setup). */
zero_status_t engine_scratch_alloc(zero_engine_h e);

#endif /* ZERO_ZERO_ENGINE_STEP_H */
