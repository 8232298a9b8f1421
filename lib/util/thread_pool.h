/*
 * A small fixed-size thread pool for data-parallel kernels (optimizer steps
 * over an owned slice) and blocking I/O. The calling thread takes part in
 * every parallel_for, so a pool of N threads runs N-1 workers.
 *
 * Thread safety: one parallel_for at a time per pool (the engine owns its pool);
 * create/destroy from one thread.
 */
#ifndef ZERO_UTIL_THREAD_POOL_H
#define ZERO_UTIL_THREAD_POOL_H

#include <stddef.h>
#include <zero/status.h>

typedef struct zero_thread_pool zero_thread_pool_t;

/* Runs task @p task_index of @p task_count on thread @p thread_index (0 = caller). */
typedef void (*zero_task_fn_t)(void *arg, size_t task_index, int thread_index);

/* @p num_threads >= 1 (1: everything runs on the caller). */
zero_status_t zero_thread_pool_create(int num_threads, zero_thread_pool_t **pool_p);
void zero_thread_pool_destroy(zero_thread_pool_t *pool);
int zero_thread_pool_size(const zero_thread_pool_t *pool);

/* Runs fn for every task index in [0, task_count), tasks handed out in order,
 * and returns when all have finished. */
void zero_thread_pool_parallel_for(zero_thread_pool_t *pool, size_t task_count,
                                   zero_task_fn_t fn, void *arg);

/* Splits [0, count) into @p parts nearly equal ranges, each a multiple of
 * @p granule except the last; writes range @p part into *begin_p, *end_p. */
void zero_split_range(size_t count, size_t parts, size_t part, size_t granule,
                      size_t *begin_p, size_t *end_p);

#endif /* ZERO_UTIL_THREAD_POOL_H */
