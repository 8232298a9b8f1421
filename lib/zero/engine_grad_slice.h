/*
 * Stage 3's gradient slices (engine_grad_slice.c), for the files above it:
 * the backward's end in engine_step.c and the public slice calls in
 * engine_slices.c. Rows of a parameter's first dimension are handed over one
 * slice at a time, so the full gradient of a stacked tensor never exists.
 */
#ifndef ZERO_ZERO_ENGINE_GRAD_SLICE_H
#define ZERO_ZERO_ENGINE_GRAD_SLICE_H

#include "zero/engine_internal.h"

/* Makes @p p's gradient rows record belong to the open backward (cleared at
 * the first use in each micro-batch). ZERO_ERR_NO_MEMORY (logged) on first use. */
zero_status_t engine_rows_prepare(zero_engine_h e, struct zero_param *p, const char *call);
/* The first row in [first, first + count) already declared ready, or -1. */
int64_t engine_rows_first_ready(const struct zero_param *p, int64_t first, int64_t count);
/* Marks the rows ready (none of them may be). */
void engine_rows_mark(struct zero_param *p, int64_t first, int64_t count);

/* Stage 3, in a backward: the buffer of the open gradient slice of exactly
 * these rows, opening it (zeroed, from the gradient pool) when none is; NULL
 * with the engine's last error when rows overlap an open slice otherwise. */
void *engine_grad_slice_open(zero_engine_h e, struct zero_param *p, int64_t first, int64_t count);
/* Stage 3: hands the rows' gradient over: starts the average over ranks of
 * the open slice (opening a zeroed one when the trainer took none) and
 * finishes older ones beyond ZERO_ENGINE_MAX_REDUCTIONS in flight. */
zero_status_t engine_grad_slice_hand_over(zero_engine_h e, struct zero_param *p, int64_t first, int64_t count);
/* Stage 3, at zero_backward_end: hands over the slices still open (in the
 * order they were opened, the same on every rank) and finishes every one. */
zero_status_t engine_grad_slices_end(zero_engine_h e);
/* Frees the gradient slices' buffers and records (destroy). */
void engine_grad_slices_destroy(zero_engine_h e);

#endif /* ZERO_ZERO_ENGINE_GRAD_SLICE_H */
