/*
 * The public calls for gradient slices (zero_param_grad_slice,
 * zero_grad_slice_ready): rows [first, first + count) of a parameter's first
 * dimension. At stages 0-2 a slice is a window on the parameter's gradient
 * buffer, and the parameter is marked ready (zero_grad_ready) once all its
 * rows are; at stage 3 each slice has its own buffer and is reduced on its
 * own (engine_grad_slice.c). The rows record is the same at every stage, so
 * a trainer's mistakes (rows declared twice, rows that only partly match an
 * open slice) show at every stage. The gather side is in engine_gather.c.
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_gather.h"
#include "zero/engine_grad_slice.h"
#include "zero/engine_step.h"

#include "util/log.h"

#include <inttypes.h>

/* The checks both calls share; ZERO_OK when the rows may be used now. */
static zero_status_t check_grad_rows(zero_engine_h e, struct zero_param *p, int64_t first, int64_t count,
                                     const char *call)
{
    zero_status_t status = engine_slice_check(e, p, first, count, call);
    int64_t ready;
    if (status != ZERO_OK)
        return status;
    if (e->state != ENGINE_IN_BACKWARD) {
        engine_error(e, ZERO_ERR_STATE, "%s(%s, rows [%" PRId64 ", %" PRId64 ")): no backward is open", call, p->name,
                     first, first + count);
        return ZERO_ERR_STATE;
    }
    status = engine_rows_prepare(e, p, call);
    if (status != ZERO_OK)
        return status;
    if (p->ready && !p->grad_in_slices) {
        engine_error(e, ZERO_ERR_STATE,
                     "%s(%s, rows [%" PRId64 ", %" PRId64 ")): the parameter was marked ready whole (zero_grad_ready) "
                     "in this micro-batch",
                     call, p->name, first, first + count);
        return ZERO_ERR_STATE;
    }
    if (e->stage == 3 && !p->grad_in_slices && p->grad != NULL) {
        engine_error(e, ZERO_ERR_STATE,
                     "%s(%s, rows [%" PRId64 ", %" PRId64 ")): zero_param_grad() handed out its whole gradient in this "
                     "micro-batch; hand a parameter over whole or in slices, not both",
                     call, p->name, first, first + count);
        return ZERO_ERR_STATE;
    }
    ready = engine_rows_first_ready(p, first, count);
    if (ready >= 0) {
        engine_error(e, ZERO_ERR_STATE,
                     "%s(%s, rows [%" PRId64 ", %" PRId64 ")): row %" PRId64 " was declared ready already in this "
                     "micro-batch",
                     call, p->name, first, first + count, ready);
        return ZERO_ERR_STATE;
    }
    return ZERO_OK;
}

void *zero_param_grad_slice(zero_param_h p, int64_t first, int64_t count)
{
    zero_engine_h e;
    char *grad;
    if (p == NULL)
        return NULL;
    e = p->engine;
    if (check_grad_rows(e, p, first, count, "zero_param_grad_slice") != ZERO_OK)
        return NULL;
    if (e->stage == 3)
        return engine_grad_slice_open(e, p, first, count);
    grad = engine_param_grad_lazy(p);
    if (grad == NULL)
        return NULL;
    return grad + (size_t)first * engine_row_elems(p) * dtype_bytes(p->dtype);
}

zero_status_t zero_grad_slice_ready(zero_engine_h e, zero_param_h p, int64_t first, int64_t count)
{
    zero_status_t status;
    if (e == NULL)
        return ZERO_ERR_INVALID_ARG;
    status = check_grad_rows(e, p, first, count, "zero_grad_slice_ready");
    if (status != ZERO_OK)
        return status;
    if (e->stage == 3) {
        status = engine_grad_slice_hand_over(e, p, first, count);
        if (status == ZERO_OK)
            engine_rows_mark(p, first, count);
        return status;
    }
    engine_rows_mark(p, first, count);
    if (p->rows_ready_count < p->shape[0])
        return ZERO_OK;
    return zero_grad_ready(e, p);
}
