/*
 * What the zero-optd benchmarks share: the remote store they open (one group,
 * two states, one server), the median of a run's times, and the AdamW step
 * bench_optd and bench_optd_rw send (bf16 gradient and weights, the same
 * hyper-parameters), so that their figures describe the same step.
 */
#ifndef ZERO_BENCH_OPTD_BENCH_H
#define ZERO_BENCH_OPTD_BENCH_H

#include "offload/store.h"
#include "offload/store_remote.h"
#include "optim/optim.h"

#include <stdlib.h>
#include <string.h>

static inline int optd_bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of @p v[0..n) (sorts @p v). */
static inline double optd_bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), optd_bench_cmp_double);
    return v[n / 2];
}

/* *@p desc and *@p ro cleared and set for a host store of one group of @p n
 * elements with two states (AdamW's), kept on the one server *@p addr (the
 * caller's array of one address, which must outlive *@p ro), each request
 * answered within @p timeout_s, @p window messages in flight. */
static inline void optd_bench_remote_opts(zero_store_desc_t *desc, zero_store_remote_opts_t *ro, const char **addr,
                                          size_t n, double timeout_s, int window)
{
    memset(desc, 0, sizeof(*desc));
    desc->kind = ZERO_MEM_HOST;
    desc->num_groups = 1;
    desc->length[0] = n;
    desc->num_states = 2;
    memset(ro, 0, sizeof(*ro));
    ro->servers = addr;
    ro->num_servers = 1;
    ro->timeout_s = timeout_s;
    ro->window = window;
}

/* @p grad[0..n) set to bf16 values around 0.0078 .. 0.016 (a pattern of 256,
 * so every element steps and none is special). */
static inline void optd_bench_fill_grad(uint16_t *grad, size_t n)
{
    for (size_t i = 0; i < n; i++)
        grad[i] = (uint16_t)(0x3c00u + (i & 0xffu));
}

/* *@p st cleared and set to AdamW's step @p step over [@p begin, + @p count)
 * of group 0 with bf16 @p grad and @p weights (the caller's pointers, as
 * they are), stepped with @p ctx. */
static inline void optd_bench_adamw(zero_store_async_step_t *st, const zero_optim_ctx_t *ctx, size_t begin,
                                    size_t count, int step, const uint16_t *grad, uint16_t *weights)
{
    memset(st, 0, sizeof(*st));
    st->begin = begin;
    st->count = count;
    st->optimizer = ZERO_OPTIMIZER_ADAMW;
    st->lr = 1e-4f;
    st->beta1 = 0.9f;
    st->beta2 = 0.999f;
    st->eps = 1e-8f;
    st->weight_decay = 0.01f;
    st->bias_correction = 1;
    st->step = step;
    st->grad_scale = 1.0f;
    st->grad_dtype = ZERO_BF16;
    st->grad = grad;
    st->weight_dtype = ZERO_BF16;
    st->weights = weights;
    st->optim = ctx;
}

#endif
