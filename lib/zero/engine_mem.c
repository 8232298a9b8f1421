/*
 * The engine's memory: allocation with its accounting (zero_engine_memory_t),
 * buffers shared with the communicator for collectives, address space for the
 * pools, and the zero/copy/upload operations on buffers of the engine's kind.
 * The lowest layer of lib/zero (see docs/architecture.md): it calls nothing in
 * the other engine files but engine_base.c.
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_internal.h"

#include "util/alloc.h"
#include "util/log.h"

#include <stdio.h>

void engine_zero(zero_engine_h e, void *ptr, size_t bytes)
{
    (void)e->ops->zero(e->ops_ctx, ptr, bytes);   /* host: cannot fail; device: shows at the next wait */
}

void engine_copy(zero_engine_h e, void *dst, const void *src, size_t bytes)
{
    (void)e->ops->copy(e->ops_ctx, dst, src, bytes);
}

zero_status_t engine_upload(zero_engine_h e, void *dst, const void *host_src, size_t bytes)
{
    return e->ops->upload(e->ops_ctx, dst, host_src, bytes);
}

zero_status_t engine_download(zero_engine_h e, void *host_dst, const void *src, size_t bytes)
{
    return e->ops->download(e->ops_ctx, host_dst, src, bytes);
}

void engine_buffers_add(zero_engine_h e, size_t bytes)
{
    e->mem.buffers += bytes;
    if (e->mem.buffers > e->mem.buffers_peak)
        e->mem.buffers_peak = e->mem.buffers;
}

/* Every engine buffer is backed with pages when it is allocated (setup, pool
 * growth), not by faults on first touch in a step: see zero_mem_populate. */
zero_status_t engine_alloc(zero_engine_h e, uint64_t *category, size_t bytes, const char *tag, void **ptr_p)
{
    uint64_t mark = zero_log_error_mark();
    zero_status_t status = zero_mem_alloc(e->kind, bytes, tag, ptr_p);
    if (status != ZERO_OK) {
        engine_keep_error(e, mark, "cannot allocate %zu bytes for %s", bytes, tag);
        return status;
    }
    zero_mem_populate(e->kind, *ptr_p, bytes);
    *category += bytes;
    e->mem.total += bytes;
    if (category == &e->mem.buffers && e->mem.buffers > e->mem.buffers_peak)
        e->mem.buffers_peak = e->mem.buffers;
    return ZERO_OK;
}

/* Buffers that collectives read or write (the full weights and gradients, the
 * stage-3 shard, stage-2 staging) come from the communicator's allocator when
 * the job has peers in host memory: then the intra-node direct path can read
 * them in place instead of copying through UCX. */
static int shared_alloc(zero_engine_h e)
{
    return e->kind == ZERO_MEM_HOST && e->world > 1;
}

zero_status_t engine_alloc_shared(zero_engine_h e, uint64_t *category, size_t bytes, const char *tag, void **ptr_p)
{
    zero_status_t status;
    uint64_t mark;
    if (!shared_alloc(e))
        return engine_alloc(e, category, bytes, tag, ptr_p);
    mark = zero_log_error_mark();
    status = zero_comm_mem_alloc(e->comm, bytes ? bytes : 1, ptr_p);
    if (status != ZERO_OK) {
        engine_keep_error(e, mark, "cannot allocate %zu bytes of shared memory for %s", bytes, tag);
        return status;
    }
    zero_mem_populate(e->kind, *ptr_p, bytes);
    *category += bytes;
    e->mem.total += bytes;
    if (category == &e->mem.buffers && e->mem.buffers > e->mem.buffers_peak)
        e->mem.buffers_peak = e->mem.buffers;
    return ZERO_OK;
}

void engine_free_shared(zero_engine_h e, uint64_t *category, size_t bytes, void *ptr)
{
    if (!shared_alloc(e)) {
        engine_free(e, category, bytes, ptr);
        return;
    }
    if (ptr == NULL)
        return;
    zero_comm_mem_free(e->comm, ptr);
    *category -= bytes;
    e->mem.total -= bytes;
}

zero_status_t engine_reserve(zero_engine_h e, size_t bytes, const char *tag, int *shared_p, void **ptr_p)
{
    zero_status_t status;
    *shared_p = shared_alloc(e);
    /* Large blocks come straight from mmap in both cases (glibc's threshold is
     * far below a pool), so nothing is backed until used. */
    status = *shared_p ? zero_comm_mem_alloc(e->comm, bytes, ptr_p) : zero_mem_alloc(e->kind, bytes, tag, ptr_p);
    if (status != ZERO_OK)
        snprintf(e->last_error, sizeof(e->last_error), "cannot reserve %zu bytes for the %s pool", bytes, tag);
    return status;
}

void engine_unreserve(zero_engine_h e, int shared, void *ptr)
{
    if (shared)
        zero_comm_mem_free(e->comm, ptr);
    else
        zero_mem_free(ptr);
}

void engine_free(zero_engine_h e, uint64_t *category, size_t bytes, void *ptr)
{
    if (ptr == NULL)
        return;
    zero_mem_free(ptr);
    *category -= bytes;
    e->mem.total -= bytes;
}
