/*
 * Gradient staging of the buckets at stages 2-3: the buffers the backward adds
 * into and the reduce-scatter reduces in place. Stage 3 takes them from the
 * gradient pool (engine_pool.c), sized to the bucket; stage 2 keeps a pool of
 * shared buffers of the largest bucket's size, so peers keep their mappings.
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_internal.h"

#include "util/alloc.h"
#include "util/log.h"

static size_t bucket_bytes(zero_engine_h e, int b)
{
    const zero_layout_bucket_t *bk = &e->layout->buckets[b];
    return bk->length * dtype_bytes(e->layout->groups[bk->group].dtype);
}

/* Stage 3: gradient staging sized to the bucket (one parameter), from the
 * gradient pool; a one-off buffer when the trainer holds more gradients at
 * once than the pool has room for. Stage 2: a pool of shared buffers of the
 * largest bucket's size, kept once allocated, so peers keep their mappings. */
zero_status_t engine_staging_get(zero_engine_h e, int b, void **ptr_p)
{
    zero_status_t status;
    if (e->stage == 3) {
        *ptr_p = engine_pool_get(e, &e->grad_pool, bucket_bytes(e, b));
        if (*ptr_p != NULL)
            return ZERO_OK;
        if (!e->pool_overflow_warned) {
            e->pool_overflow_warned = 1;
            ZERO_LOG_WARN("gradient of %s: the gradient pool (%zu bytes) has no room for %zu bytes more; such "
                          "gradients allocate and free their own buffer (slow: mark gradients ready as the backward "
                          "produces them, or raise reduce_bucket_size)",
                          e->params[e->layout->buckets[b].first_param]->name, e->grad_pool.capacity,
                          bucket_bytes(e, b));
        }
        e->buckets[b].staging_one_off = 1;
        return engine_alloc(e, &e->mem.buffers, bucket_bytes(e, b), "gradient bucket", ptr_p);
    }
    if (e->staging_pool_count > 0) {
        *ptr_p = e->staging_pool[--e->staging_pool_count];
        engine_buffers_add(e, e->staging_bytes);
        return ZERO_OK;
    }
    if (e->staging_pool_total == e->staging_pool_cap) {
        /* Room to keep it when it comes back, made now so put cannot fail. */
        int cap = e->staging_pool_cap ? 2 * e->staging_pool_cap : 8;
        void **grown = zero_realloc(e->staging_pool, (size_t)cap * sizeof(void *));
        if (grown == NULL) {
            engine_error(e, ZERO_ERR_NO_MEMORY, "gradient staging: out of memory");
            return ZERO_ERR_NO_MEMORY;
        }
        e->staging_pool = grown;
        e->staging_pool_cap = cap;
    }
    status = engine_alloc_shared(e, &e->mem.pools, e->staging_bytes, "gradient bucket", ptr_p);
    if (status != ZERO_OK)
        return status;
    e->staging_pool_total++;
    engine_buffers_add(e, e->staging_bytes);
    return ZERO_OK;
}

void engine_staging_put(zero_engine_h e, int b, void *ptr)
{
    if (ptr == NULL)
        return;
    if (e->stage == 3) {
        if (e->buckets[b].staging_one_off)
            engine_free(e, &e->mem.buffers, bucket_bytes(e, b), ptr);
        else
            engine_pool_put(e, &e->grad_pool, ptr, bucket_bytes(e, b));
        e->buckets[b].staging_one_off = 0;
        return;
    }
    e->mem.buffers -= e->staging_bytes;
    e->staging_pool[e->staging_pool_count++] = ptr;
}

void engine_staging_pool_clear(zero_engine_h e)
{
    for (int k = 0; k < e->staging_pool_count; k++)
        engine_free_shared(e, &e->mem.pools, e->staging_bytes, e->staging_pool[k]);
    zero_free(e->staging_pool);
    e->staging_pool = NULL;
    e->staging_pool_count = e->staging_pool_cap = e->staging_pool_total = 0;
}
