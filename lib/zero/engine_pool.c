/*
 * The engine's working-memory pools (see engine_internal.h).
 *
 * Why: stage 3 used to allocate its gathered weights and gradient staging per
 * parameter per step and free them after use. glibc hands blocks that large
 * back to the kernel, so every step faulted the same bytes in again, and first
 * touch costs ~15 us per 4 KiB page on the virtual machines this runs on: a
 * 1e7-parameter stage-3 step spent most of its time in page faults. A pool
 * reserves its whole capacity once (address space only), backs pages with
 * zero_mem_populate the first time an allocation reaches them, and keeps them:
 * in steady state a step neither allocates nor faults.
 *
 * The allocator is first fit over a sorted list of free extents, coalesced on
 * put. It serves a few blocks per parameter per step (hundreds to thousands),
 * so a linear walk costs nothing next to the collectives the blocks feed. The
 * list has room for one extent more than there are blocks to hand out, fixed
 * at creation, so get and put never allocate either; get refuses a block
 * beyond that number (the caller decides, as when no extent is large enough).
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_internal.h"

#include "util/alloc.h"
#include "util/log.h"

#include <string.h>

/* Blocks start on this many bytes (the communicator's and kernels' alignment). */
#define POOL_ALIGN ((size_t)ZERO_MEM_ALIGNMENT)

static size_t align_up(size_t n)
{
    return (n + POOL_ALIGN - 1) & ~(POOL_ALIGN - 1);
}

zero_status_t engine_pool_create(zero_engine_h e, engine_pool_t *pool, const char *name, size_t capacity,
                                 int max_blocks)
{
    zero_status_t status;
    memset(pool, 0, sizeof(*pool));
    pool->name = name;
    capacity = align_up(capacity);
    if (capacity == 0)
        return ZERO_OK;
    pool->max_blocks = max_blocks;
    pool->free_cap = max_blocks + 1;
    pool->free = zero_calloc((size_t)pool->free_cap, sizeof(*pool->free));
    if (pool->free == NULL) {
        engine_error(e, ZERO_ERR_NO_MEMORY, "setup: out of memory for the %s pool", name);
        return ZERO_ERR_NO_MEMORY;
    }
    /* Reserve only: pages are backed as allocations first reach them. Shared
     * memory in a multi-rank host job, so collectives on pool blocks take the
     * intra-node direct path. */
    status = engine_reserve(e, capacity, name, &pool->shared, (void **)&pool->base);
    if (status != ZERO_OK) {
        zero_free(pool->free);
        pool->free = NULL;
        return status;
    }
    pool->capacity = capacity;
    pool->free[0] = (engine_extent_t){0, capacity};
    pool->num_free = 1;
    return ZERO_OK;
}

void engine_pool_destroy(zero_engine_h e, engine_pool_t *pool)
{
    if (pool->base != NULL)
        engine_unreserve(e, pool->shared, pool->base);
    e->mem.pools -= pool->populated;
    e->mem.total -= pool->populated;
    zero_free(pool->free);
    memset(pool, 0, sizeof(*pool));
}

void *engine_pool_get(zero_engine_h e, engine_pool_t *pool, size_t bytes)
{
    size_t need = align_up(bytes ? bytes : 1), off, end;
    int i;
    if (pool->blocks_out == pool->max_blocks)
        return NULL;   /* the free list has room for max_blocks + 1 extents only */
    for (i = 0; i < pool->num_free; i++)
        if (pool->free[i].length >= need)
            break;
    if (i == pool->num_free)
        return NULL;
    off = pool->free[i].offset;
    pool->free[i].offset += need;
    pool->free[i].length -= need;
    if (pool->free[i].length == 0) {
        memmove(&pool->free[i], &pool->free[i + 1], (size_t)(pool->num_free - i - 1) * sizeof(*pool->free));
        pool->num_free--;
    }
    end = off + need;
    if (end > pool->populated) {
        /* First use of these pages: back them now, once, and keep them. */
        zero_mem_populate(e->kind, pool->base + pool->populated, end - pool->populated);
        e->mem.pools += end - pool->populated;
        e->mem.total += end - pool->populated;
        pool->populated = end;
    }
    pool->in_use += need;
    pool->blocks_out++;
    engine_buffers_add(e, need);
    return pool->base + off;
}

void engine_pool_populate(zero_engine_h e, engine_pool_t *pool)
{
    if (pool->populated >= pool->capacity)
        return;
    zero_mem_populate(e->kind, pool->base + pool->populated, pool->capacity - pool->populated);
    e->mem.pools += pool->capacity - pool->populated;
    e->mem.total += pool->capacity - pool->populated;
    pool->populated = pool->capacity;
}

int engine_pool_owns(const engine_pool_t *pool, const void *ptr)
{
    const char *p = ptr;
    return pool->base != NULL && p >= pool->base && p < pool->base + pool->capacity;
}

void engine_pool_put(zero_engine_h e, engine_pool_t *pool, void *ptr, size_t bytes)
{
    size_t need = align_up(bytes ? bytes : 1), off = (size_t)((char *)ptr - pool->base);
    int i = 0;
    while (i < pool->num_free && pool->free[i].offset < off)
        i++;
    /* Merge with the extent before and/or after; else insert (room is reserved). */
    if (i > 0 && pool->free[i - 1].offset + pool->free[i - 1].length == off) {
        pool->free[i - 1].length += need;
        if (i < pool->num_free && off + need == pool->free[i].offset) {
            pool->free[i - 1].length += pool->free[i].length;
            memmove(&pool->free[i], &pool->free[i + 1], (size_t)(pool->num_free - i - 1) * sizeof(*pool->free));
            pool->num_free--;
        }
    } else if (i < pool->num_free && off + need == pool->free[i].offset) {
        pool->free[i].offset = off;
        pool->free[i].length += need;
    } else {
        memmove(&pool->free[i + 1], &pool->free[i], (size_t)(pool->num_free - i) * sizeof(*pool->free));
        pool->free[i] = (engine_extent_t){off, need};
        pool->num_free++;
    }
    pool->in_use -= need;
    pool->blocks_out--;
    e->mem.buffers -= need;
}
