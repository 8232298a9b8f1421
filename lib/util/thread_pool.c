#define ZERO_LOG_MODULE "threads"
#include "util/thread_pool.h"
#include "util/alloc.h"
#include "util/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

struct zero_thread_pool {
    int num_threads;
    pthread_t *workers;           /* num_threads - 1 */
    pthread_mutex_t lock;
    pthread_cond_t work_ready;
    pthread_cond_t work_done;
    /* The current job, published under lock with a new generation number. */
    uint64_t generation;
    zero_task_fn_t fn;
    void *arg;
    size_t task_count;
    atomic_size_t next_task;
    int busy_workers;
    int shutting_down;
};

typedef struct worker_start {
    zero_thread_pool_t *pool;
    int index;
} worker_start_t;

static void run_tasks(zero_thread_pool_t *pool, int thread_index)
{
    for (;;) {
        size_t task = atomic_fetch_add(&pool->next_task, 1);
        if (task >= pool->task_count)
            break;
        pool->fn(pool->arg, task, thread_index);
    }
}

static void *worker_main(void *raw)
{
    worker_start_t start = *(worker_start_t *)raw;
    zero_thread_pool_t *pool = start.pool;
    uint64_t seen = 0;

    zero_free(raw);
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->shutting_down && pool->generation == seen)
            pthread_cond_wait(&pool->work_ready, &pool->lock);
        if (pool->shutting_down)
            break;
        seen = pool->generation;
        pthread_mutex_unlock(&pool->lock);
        run_tasks(pool, start.index);
        pthread_mutex_lock(&pool->lock);
        if (--pool->busy_workers == 0)
            pthread_cond_signal(&pool->work_done);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

zero_status_t zero_thread_pool_create(int num_threads, zero_thread_pool_t **pool_p)
{
    zero_thread_pool_t *pool;
    int started = 0;

    if (num_threads < 1 || pool_p == NULL) {
        ZERO_LOG_ERROR("thread pool needs at least one thread, got %d", num_threads);
        return ZERO_ERR_INVALID_ARG;
    }
    pool = zero_calloc(1, sizeof(*pool));
    if (pool == NULL)
        goto err_alloc;
    pool->num_threads = num_threads;
    if (num_threads > 1) {
        pool->workers = zero_calloc((size_t)num_threads - 1, sizeof(*pool->workers));
        if (pool->workers == NULL)
            goto err_free_pool;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work_ready, NULL);
    pthread_cond_init(&pool->work_done, NULL);
    atomic_init(&pool->next_task, 0);

    for (; started < num_threads - 1; started++) {
        worker_start_t *start = zero_malloc(sizeof(*start));
        int rc;
        if (start == NULL)
            goto err_stop;
        start->pool = pool;
        start->index = started + 1;
        rc = pthread_create(&pool->workers[started], NULL, worker_main, start);
        if (rc != 0) {
            zero_free(start);
            ZERO_LOG_ERROR("cannot start worker thread %d: %s", started + 1, strerror(rc));
            pool->num_threads = started + 1;
            zero_thread_pool_destroy(pool);
            return ZERO_ERR_NO_MEMORY;
        }
    }
    *pool_p = pool;
    return ZERO_OK;

err_stop:
    pool->num_threads = started + 1;
    zero_thread_pool_destroy(pool);
    goto err_alloc;
err_free_pool:
    zero_free(pool);
err_alloc:
    ZERO_LOG_ERROR("out of memory creating a pool of %d threads", num_threads);
    return ZERO_ERR_NO_MEMORY;
}

void zero_thread_pool_destroy(zero_thread_pool_t *pool)
{
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->shutting_down = 1;
    pthread_cond_broadcast(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->num_threads - 1; i++)
        pthread_join(pool->workers[i], NULL);
    pthread_cond_destroy(&pool->work_done);
    pthread_cond_destroy(&pool->work_ready);
    pthread_mutex_destroy(&pool->lock);
    zero_free(pool->workers);
    zero_free(pool);
}

int zero_thread_pool_size(const zero_thread_pool_t *pool)
{
    return pool ? pool->num_threads : 1;
}

void zero_thread_pool_parallel_for(zero_thread_pool_t *pool, size_t task_count,
                                   zero_task_fn_t fn, void *arg)
{
    if (task_count == 0)
        return;
    if (pool == NULL || pool->num_threads == 1 || task_count == 1) {
        for (size_t i = 0; i < task_count; i++)
            fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&pool->lock);
    pool->fn = fn;
    pool->arg = arg;
    pool->task_count = task_count;
    atomic_store(&pool->next_task, 0);
    pool->busy_workers = pool->num_threads - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);

    run_tasks(pool, 0);

    pthread_mutex_lock(&pool->lock);
    while (pool->busy_workers > 0)
        pthread_cond_wait(&pool->work_done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
}

void zero_split_range(size_t count, size_t parts, size_t part, size_t granule,
                      size_t *begin_p, size_t *end_p)
{
    size_t granules, per, extra, begin, end;
    if (granule == 0)
        granule = 1;
    if (parts == 0)
        parts = 1;
    granules = (count + granule - 1) / granule;
    per = granules / parts;
    extra = granules % parts;
    begin = (part * per + (part < extra ? part : extra)) * granule;
    end = begin + (per + (part < extra ? 1 : 0)) * granule;
    if (begin > count)
        begin = count;
    if (end > count)
        end = count;
    *begin_p = begin;
    *end_p = end;
}
