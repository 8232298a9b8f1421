/*
 * The host store: the state in this process's memory (host, or device memory
 * for a device engine), reached in place. Acquire hands out pointers into the
 * arrays and release has nothing to write back, so the identity store costs
 * the step nothing.
 */
#define ZERO_LOG_MODULE "offload"
#include "offload/store.h"
#include "util/alloc.h"
#include "util/log.h"

#include <string.h>

typedef struct host_store {
    zero_store_t base;
    float *grad32;          /* fp32 copy of a 16-bit gradient (host kind only), grown on demand */
    size_t grad32_len;
    float *field[ZERO_DTYPE_COUNT][ZERO_STORE_NUM_FIELDS];   /* NULL where absent */
    int owned[ZERO_DTYPE_COUNT][ZERO_STORE_NUM_FIELDS];      /* allocated here (not adopted) */
} host_store_t;

static zero_status_t host_acquire(zero_store_t *store, zero_store_range_t *range)
{
    host_store_t *h = (host_store_t *)store;
    for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
        if (range->fields & ZERO_STORE_FIELD_BIT(f))
            range->data[f] = h->field[range->group][f] + range->begin;
    return ZERO_OK;
}

static zero_status_t host_release(zero_store_t *store, zero_store_range_t *range, int dirty)
{
    (void)store;
    (void)range;
    (void)dirty;   /* written in place */
    return ZERO_OK;
}

static void host_bytes(const zero_store_t *store, zero_store_bytes_t *bytes_p)
{
    const host_store_t *h = (const host_store_t *)store;
    for (int g = 0; g < store->desc.num_groups; g++)
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
            if (h->owned[g][f])
                bytes_p->resident += (uint64_t)store->desc.length[g] * sizeof(float);
}

/* The step in place: the same shared kernel zero-optd runs (store.c). */
static zero_status_t host_step(zero_store_t *store, const zero_store_async_step_t *st)
{
    host_store_t *h = (host_store_t *)store;
    int g = st->group;
    size_t b = st->begin, n = st->count;
    float *w = h->field[g][ZERO_STORE_MASTER] + b;
    const float *g32 = st->grad;
    zero_optim_w16_t w16_type = zero_optim_w16_of(st->weight_dtype);
    zero_status_t status;

    if (store->desc.kind != ZERO_MEM_HOST || st->optim == NULL) {
        ZERO_LOG_ERROR("host store: a step in this process needs host memory and the optimizer kernels");
        return ZERO_ERR_UNSUPPORTED;
    }
    if (st->optimizer == ZERO_OPTIMIZER_LAMB && st->lamb_phase == 2) {
        g32 = NULL;   /* phase 2 reads no gradient */
    } else if (st->grad_dtype != ZERO_FP32) {
        if (n > h->grad32_len) {
            float *grown = zero_realloc(h->grad32, n * sizeof(float));
            if (grown == NULL) {
                ZERO_LOG_ERROR("host store: out of memory for a %zu-element fp32 gradient", n);
                return ZERO_ERR_NO_MEMORY;
            }
            h->grad32 = grown;
            h->grad32_len = n;
        }
        status = zero_optim_from_16(st->optim, zero_optim_w16_of(st->grad_dtype), h->grad32, st->grad, n);
        if (status != ZERO_OK)
            return status;
        g32 = h->grad32;
    }
    status = zero_store_run_kernel(st->optim, st, w, g32,
                                   h->field[g][ZERO_STORE_STATE1] ? h->field[g][ZERO_STORE_STATE1] + b : NULL,
                                   h->field[g][ZERO_STORE_STATE2] ? h->field[g][ZERO_STORE_STATE2] + b : NULL,
                                   w16_type != ZERO_OPTIM_W16_NONE ? st->weights : NULL, w16_type, n);
    if (status == ZERO_OK && w16_type == ZERO_OPTIM_W16_NONE && st->weights != NULL && st->weights != w)
        memcpy(st->weights, w, n * sizeof(float));   /* Lamb's phase 1 has none */
    return status;
}

static void host_destroy(zero_store_t *store)
{
    host_store_t *h = (host_store_t *)store;
    zero_free(h->grad32);
    for (int g = 0; g < ZERO_DTYPE_COUNT; g++)
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
            if (h->owned[g][f])
                zero_mem_free(h->field[g][f]);
    zero_free(h);
}

static const zero_store_ops_t host_ops = {
    .name = "host",
    .acquire = host_acquire,
    .release = host_release,
    .prefetch = NULL,   /* everything is here already */
    .bytes = host_bytes,
    .destroy = host_destroy,
    .step_async = host_step,
    .step_wait = NULL,   /* host_step finishes before it returns */
    .steps_lamb = 1,     /* for comparisons too (prefer_step is 0) */
};

static const char *const field_tag[ZERO_STORE_NUM_FIELDS] = {"master", "optimizer state 1", "optimizer state 2"};

zero_status_t zero_store_host_create(const zero_store_desc_t *desc, zero_store_t **store_p)
{
    zero_status_t status = ZERO_OK;
    host_store_t *h;

    if (desc->num_groups < 1 || desc->num_groups > ZERO_DTYPE_COUNT || desc->num_states < 0 ||
        desc->num_states > ZERO_STORE_NUM_FIELDS - 1) {
        ZERO_LOG_ERROR("host store: %d groups and %d optimizer states are outside 1..%d and 0..%d", desc->num_groups,
                       desc->num_states, ZERO_DTYPE_COUNT, ZERO_STORE_NUM_FIELDS - 1);
        return ZERO_ERR_INVALID_ARG;
    }
    h = zero_calloc(1, sizeof(*h));
    if (h == NULL) {
        ZERO_LOG_ERROR("host store: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    h->base.ops = &host_ops;
    h->base.desc = *desc;
    for (int g = 0; g < desc->num_groups; g++) {
        size_t bytes = desc->length[g] * sizeof(float);
        for (int f = 0; f <= desc->num_states; f++) {
            if (f == ZERO_STORE_MASTER && desc->adopt_master[g] != NULL) {
                h->field[g][f] = desc->adopt_master[g];
                continue;
            }
            status = zero_mem_alloc(desc->kind, bytes ? bytes : sizeof(float), field_tag[f],
                                    (void **)&h->field[g][f]);
            if (status != ZERO_OK)
                goto fail;
            h->owned[g][f] = 1;
            zero_mem_populate(desc->kind, h->field[g][f], bytes);   /* at setup, not in the first step */
            if ((status = zero_mem_set_zero(desc->kind, h->field[g][f], bytes)) != ZERO_OK)
                goto fail;
        }
    }
    *store_p = &h->base;
    return ZERO_OK;
fail:
    host_destroy(&h->base);
    return status;
}
