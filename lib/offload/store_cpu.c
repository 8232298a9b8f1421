/* CPU offload for device ranks: the state in host memory, the step on the
 * CPU, gradients and weights through a ring of pinned slots (see store_cpu.h). */
#define ZERO_LOG_MODULE "offload"
#include "offload/store_cpu.h"
#include "offload/cpu_inner.h"
#include "util/cuda_module.h"
#include "util/log.h"

#include <string.h>

void zero_store_cpu_params_default(zero_store_cpu_params_t *params)
{
    memset(params, 0, sizeof(*params));
    params->device = -1;
    params->slots = 4;
    params->slot_elems = (size_t)1 << 20;
    params->threads = 1;
    params->pin = 1;
    params->timeout_s = 300.0;
}

#if HAVE_CUDA
#include "util/alloc.h"
#include "util/checks_cuda.h"
#include "util/clock.h"
#include "util/slot_ring.h"
#include "util/thread_pool.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

/* One slot's worth of one step_async call. */
typedef struct cpu_chunk {
    zero_store_async_step_t step;   /* begin/count narrowed to the chunk; grad/weights moved to its start */
} cpu_chunk_t;

typedef struct cpu_store {
    zero_store_t base;
    zero_cpu_inner_t inner;                    /* the offloaded state (packed), from params->inner_create */
    zero_store_t *dev;                         /* ratio < 1: the rest, a host store in device memory (packed); or NULL */
    zero_offload_map_t map;                    /* which owned offsets are on which side (offload_ratio.h) */
    int device;
    cudaStream_t trainer;                      /* borrowed */
    cudaStream_t copy_in, copy_out;            /* device -> slot, slot -> device */
    cudaEvent_t grads_ready;                   /* on the trainer's stream, before the first copy of a step */
    cudaEvent_t *in_done, *out_done;           /* per slot */
    zero_slot_ring_t *ring;
    float *stage[ZERO_STORE_NUM_FIELDS];       /* device staging of acquire, max_range elements each */
    zero_store_range_t held;                   /* the one acquired range (owned offsets; direct: the device side's) */
    int holding;
    int held_direct;                           /* held is a range of dev handed out in place */
    zero_thread_pool_t *pool;
    zero_optim_ctx_t optim;
    double timeout_s;

    /* shared between the caller and the offload thread, under lock */
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    pthread_t thread;
    int thread_started, stop;
    cpu_chunk_t *chunks;
    size_t nchunks, chunks_cap;
    zero_status_t error;                       /* the first, sticky */
    size_t done_pub;                           /* chunks back on the device, as the offload thread last said */
    zero_store_cpu_stats_t stats;              /* published by the offload thread */

    /* the offload thread's own (reset by step_wait only while that thread is idle: every chunk done) */
    zero_slot_pipe_t pipe;
    zero_store_cpu_stats_t tstats;
} cpu_store_t;


/* ---- acquire / release: staged through device buffers ----
 *
 * The staging copies run on the trainer's stream, so they are ordered with
 * the engine's kernels that read or write the staging buffers there (the
 * legacy default stream does not order with a non-blocking trainer stream);
 * a copy to host memory is waited for before its host range is released. */

/* Acquire and release on the side of the state an extent is on (the host
 * side through the inner store's lock: the offload thread may be stepping). */
static zero_status_t side_acquire(cpu_store_t *c, int on_host, zero_store_range_t *r)
{
    return on_host ? zero_cpu_inner_acquire(&c->inner, r) : zero_store_acquire(c->dev, r);
}

static zero_status_t side_release(cpu_store_t *c, int on_host, zero_store_range_t *r, int dirty)
{
    return on_host ? zero_cpu_inner_release(&c->inner, r, dirty) : zero_store_release(c->dev, r, dirty);
}

/* One run of a staged range, at @p offset in the staging buffers and @p at
 * on its side: into the staging buffers (@p back 0: acquire) or back from
 * them (@p back 1: a dirty release). */
static zero_status_t stage_run(cpu_store_t *c, int on_host, size_t at, size_t offset, size_t count, int back)
{
    zero_store_range_t r = {.group = c->held.group, .begin = at, .count = count, .fields = c->held.fields};
    zero_status_t status = side_acquire(c, on_host, &r), st;
    enum cudaMemcpyKind kind = !on_host ? cudaMemcpyDeviceToDevice
                               : back   ? cudaMemcpyDeviceToHost
                                        : cudaMemcpyHostToDevice;
    if (status != ZERO_OK)
        return status;
    for (int f = 0; f < ZERO_STORE_NUM_FIELDS && status == ZERO_OK; f++) {
        float *stage = c->stage[f] + offset;
        if (!(r.fields & ZERO_STORE_FIELD_BIT(f)))
            continue;
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaMemcpyAsync)(back ? r.data[f] : stage, back ? stage : r.data[f],
                                                        count * sizeof(float), kind, c->trainer),
                             status, out, "cpu offload store: copying field %d of [%zu, +%zu) %s", f,
                             c->held.begin + offset, count, back ? "back" : "to the device");
    }
    if (status == ZERO_OK && back && on_host)   /* the host values are in place before the host range is released */
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamSynchronize)(c->trainer), status, out,
                             "cpu offload store: copying [%zu, +%zu) back to the host", c->held.begin + offset, count);
out:
    st = side_release(c, on_host, &r, back && status == ZERO_OK);
    return status != ZERO_OK ? status : st;
}

static zero_status_t stage_in_run(void *arg, int on_host, size_t at, size_t offset, size_t count)
{
    return stage_run(arg, on_host, at, offset, count, 0);
}

static zero_status_t stage_out_run(void *arg, int on_host, size_t at, size_t offset, size_t count)
{
    return stage_run(arg, on_host, at, offset, count, 1);
}

static zero_status_t cpu_acquire(zero_store_t *store, zero_store_range_t *range)
{
    cpu_store_t *c = (cpu_store_t *)store;
    const zero_offload_extent_t *x = zero_offload_map_find(&c->map, range->group, range->begin);
    zero_status_t status;
    if (c->holding) {
        ZERO_LOG_ERROR("cpu offload store: a second range acquired while one is held (one at a time)");
        return ZERO_ERR_INVALID_ARG;
    }
    if (range->count > store->max_range) {
        ZERO_LOG_ERROR("cpu offload store: a range of %zu elements exceeds the bound of %zu", range->count,
                       store->max_range);
        return ZERO_ERR_INVALID_ARG;
    }
    c->held = *range;
    if (x != NULL && !x->on_host && range->count <= x->begin + x->count - range->begin) {
        /* wholly in device memory (ratio < 1): the device arrays themselves */
        c->held.begin = x->at + (range->begin - x->begin);
        if ((status = zero_store_acquire(c->dev, &c->held)) != ZERO_OK)
            return status;
        memcpy(range->data, c->held.data, sizeof(range->data));
        c->held_direct = 1;
        c->holding = 1;
        return ZERO_OK;
    }
    status = zero_offload_map_runs(&c->map, range->group, range->begin, range->count, stage_in_run, c);
    if (status != ZERO_OK)
        return status;
    for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
        if (range->fields & ZERO_STORE_FIELD_BIT(f))
            range->data[f] = c->stage[f];
    c->held_direct = 0;
    c->holding = 1;
    return ZERO_OK;
}

static zero_status_t cpu_release(zero_store_t *store, zero_store_range_t *range, int dirty)
{
    cpu_store_t *c = (cpu_store_t *)store;
    zero_status_t status = ZERO_OK;
    (void)range;
    if (!c->holding)
        return ZERO_OK;
    c->holding = 0;
    if (c->held_direct)
        return zero_store_release(c->dev, &c->held, dirty);
    if (dirty)
        status = zero_offload_map_runs(&c->map, c->held.group, c->held.begin, c->held.count, stage_out_run, c);
    return status;
}

static void cpu_bytes(const zero_store_t *store, zero_store_bytes_t *bytes_p)
{
    const cpu_store_t *c = (const cpu_store_t *)store;
    zero_store_bytes_t inner;
    zero_store_bytes(c->inner.store, &inner);
    /* the offloaded state is in host memory, not in the engine's (device)
     * memory, and so are the inner store's working buffers (the remote
     * store's request slots and mapped regions) */
    bytes_p->elsewhere += inner.resident + inner.elsewhere + inner.staging;
    if (c->dev != NULL) {
        zero_store_bytes(c->dev, &inner);
        bytes_p->resident += inner.resident;
    }
    for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
        if (c->stage[f] != NULL)
            bytes_p->staging += (uint64_t)store->max_range * sizeof(float);
    bytes_p->pinned += (uint64_t)zero_slot_ring_pinned_slots(c->ring) * zero_slot_ring_slot_bytes(c->ring);
}

/* Which pieces the engine hands to step_async: those on the host side. */
static int cpu_steps_at(const zero_store_t *store, int group, size_t begin, size_t *run_end_p)
{
    const cpu_store_t *c = (const cpu_store_t *)store;
    const zero_offload_extent_t *x = zero_offload_map_find(&c->map, group, begin);
    if (x == NULL) {
        *run_end_p = SIZE_MAX;
        return 1;
    }
    *run_end_p = x->begin + x->count;
    return x->on_host;
}

/* ---- the step: the offload thread runs the pipe over the slot ring ---- */

static void fail_locked(cpu_store_t *c, zero_status_t status)
{
    if (c->error == ZERO_OK)
        c->error = status;
    pthread_cond_broadcast(&c->done);
}

/* Whether @p ev completed: 1 yes, 0 not yet, -1 failed (logged). Never blocks. */
static int event_done(cudaEvent_t ev, const char *what)
{
    cudaError_t err = ZERO_CUDA(cudaEventQuery)(ev);
    if (err == cudaSuccess)
        return 1;
    if (err == cudaErrorNotReady)
        return 0;
    ZERO_LOG_ERROR("cpu offload store: %s: %s", what, ZERO_CUDA(cudaGetErrorString)(err));
    return -1;
}

/* One pass over what may start (offload thread, lock not held). Returns
 * whether anything moved, or an error status through @p status_p. */
static int advance(cpu_store_t *c, zero_status_t *status_p)
{
    zero_slot_pipe_t *p = &c->pipe;
    unsigned ready = zero_slot_pipe_ready(p);
    int moved = 0, done;
    cpu_chunk_t ch;

    if (ready & ZERO_SLOT_COPY_IN) {
        unsigned slot = zero_slot_pipe_slot(p, p->d2h_issued);
        size_t bytes;
        pthread_mutex_lock(&c->lock);
        ch = c->chunks[p->d2h_issued];
        pthread_mutex_unlock(&c->lock);
        bytes = ch.step.count * zero_dtype_size(ch.step.grad_dtype);
        if (ZERO_CUDA(cudaMemcpyAsync)(zero_slot_ring_slot(c->ring, slot), ch.step.grad, bytes,
                                        cudaMemcpyDeviceToHost, c->copy_in) != cudaSuccess ||
            ZERO_CUDA(cudaEventRecord)(c->in_done[slot], c->copy_in) != cudaSuccess) {
            ZERO_LOG_ERROR("cpu offload store: cannot start copying %zu bytes of gradients to the host: %s", bytes,
                           ZERO_CUDA(cudaGetErrorString)(ZERO_CUDA(cudaGetLastError)()));
            *status_p = ZERO_ERR_CUDA;
            return 0;
        }
        c->tstats.bytes_down += bytes;
        p->d2h_issued++;
        moved = 1;
    }
    if (p->d2h_done < p->d2h_issued) {
        done = event_done(c->in_done[zero_slot_pipe_slot(p, p->d2h_done)], "copying gradients to the host");
        if (done < 0) {
            *status_p = ZERO_ERR_CUDA;
            return 0;
        }
        if (done) {
            p->d2h_done++;
            moved = 1;
        }
    }
    if (zero_slot_pipe_ready(p) & ZERO_SLOT_WORK) {
        unsigned slot = zero_slot_pipe_slot(p, p->work_started);
        zero_status_t status = ZERO_OK;
        cpu_chunk_t next;
        int has_next;
        pthread_mutex_lock(&c->lock);
        ch = c->chunks[p->work_started];
        has_next = p->work_started + 1 < c->nchunks;
        if (has_next)
            next = c->chunks[p->work_started + 1];
        pthread_mutex_unlock(&c->lock);
        p->work_started++;
        /* NVMe arrays: the next chunk's read overlaps this chunk's step (the host store ignores it) */
        if (has_next)
            status = zero_cpu_inner_prefetch(&c->inner, next.step.group, next.step.begin, next.step.count);
        if (status == ZERO_OK)
            status = zero_cpu_inner_step(&c->inner, &ch.step, zero_slot_ring_slot(c->ring, slot),
                                         &c->tstats.cpu_step_s);
        if (status != ZERO_OK) {
            *status_p = status;
            return 0;
        }
        p->work_done++;
        c->tstats.chunks++;
        moved = 1;
    }
    if (zero_slot_pipe_ready(p) & ZERO_SLOT_COPY_OUT) {
        unsigned slot = zero_slot_pipe_slot(p, p->h2d_issued);
        size_t bytes;
        int failed;
        pthread_mutex_lock(&c->lock);
        ch = c->chunks[p->h2d_issued];
        pthread_mutex_unlock(&c->lock);
        bytes = ch.step.count * zero_dtype_size(ch.step.weight_dtype);
        if (ch.step.weights_on_host) {
            /* offload_param "cpu": the weights are host memory, no bounce
             * through the device (the event below still moves the pipe on) */
            memcpy(ch.step.weights, zero_slot_ring_slot(c->ring, slot), bytes);
            failed = 0;
        } else {
            failed = ZERO_CUDA(cudaMemcpyAsync)(ch.step.weights, zero_slot_ring_slot(c->ring, slot), bytes,
                                                cudaMemcpyHostToDevice, c->copy_out) != cudaSuccess;
            if (!failed)
                c->tstats.bytes_up += bytes;
        }
        if (failed || ZERO_CUDA(cudaEventRecord)(c->out_done[slot], c->copy_out) != cudaSuccess) {
            ZERO_LOG_ERROR("cpu offload store: cannot start copying %zu bytes of weights to the device: %s", bytes,
                           ZERO_CUDA(cudaGetErrorString)(ZERO_CUDA(cudaGetLastError)()));
            *status_p = ZERO_ERR_CUDA;
            return 0;
        }
        p->h2d_issued++;
        moved = 1;
    }
    if (p->h2d_done < p->h2d_issued) {
        done = event_done(c->out_done[zero_slot_pipe_slot(p, p->h2d_done)], "copying weights to the device");
        if (done < 0) {
            *status_p = ZERO_ERR_CUDA;
            return 0;
        }
        if (done) {
            p->h2d_done++;
            moved = 1;
        }
    }
    return moved;
}

/*
 * Nothing could move: sleep until the copy the pipe needs next is done.
 * Returns 0 when no copy is in flight (then nothing here will wake the
 * thread but step_async), or -1 when the copy failed (*status_p set).
 *
 * Why blocking-sync events (cudaEventBlockingSync, cudaEventSynchronize on
 * this thread) and not cudaLaunchHostFunc: this thread sleeps in the driver
 * until the copy's completion interrupt (no 20 us naps, no spinning core next
 * to the CPU step), the wait returns the copy's own error, and nothing runs on
 * the driver's single callback thread, which would stall each copy stream
 * until a host function returned and which does not run host functions after
 * an error at all (the thread would then only learn of it from a timeout).
 * The trainer's thread never comes here: it only queues (step_async) and
 * waits for the whole step (step_wait). Order: each stream runs its copies in
 * order, and this thread waits for the oldest copy of one stream at a time,
 * then advance() moves the counters in order.
 */
static int wait_pending(cpu_store_t *c, zero_status_t *status_p)
{
    zero_slot_pipe_t *p = &c->pipe;
    unsigned which = zero_slot_pipe_wait_for(p);
    cudaEvent_t ev;
    cudaError_t err;
    const char *what;
    if (which == 0)
        return 0;
    /* the gradients first when the CPU step waits for them; else the oldest copy back, which frees a slot */
    if (which == ZERO_SLOT_COPY_IN) {
        ev = c->in_done[zero_slot_pipe_slot(p, p->d2h_done)];
        what = "copying gradients to the host";
    } else {
        ev = c->out_done[zero_slot_pipe_slot(p, p->h2d_done)];
        what = "copying weights to the device";
    }
    err = ZERO_CUDA(cudaEventSynchronize)(ev);
    if (err == cudaSuccess)
        return 1;
    ZERO_LOG_ERROR("cpu offload store: %s: %s", what, ZERO_CUDA(cudaGetErrorString)(err));
    *status_p = ZERO_ERR_CUDA;
    return -1;
}

static void *offload_thread(void *arg)
{
    cpu_store_t *c = arg;
    (void)ZERO_CUDA(cudaSetDevice)(c->device);
    pthread_mutex_lock(&c->lock);
    for (;;) {
        zero_status_t status = ZERO_OK;
        int moved;
        while (!c->stop && (c->error != ZERO_OK || c->pipe.h2d_done == c->nchunks))
            pthread_cond_wait(&c->wake, &c->lock);
        if (c->stop)
            break;
        c->pipe.chunks = c->nchunks;   /* step_async may have added chunks */
        pthread_mutex_unlock(&c->lock);
        moved = advance(c, &status);
        pthread_mutex_lock(&c->lock);
        if (status != ZERO_OK) {
            fail_locked(c, status);
            continue;
        }
        c->stats.bytes_down = c->tstats.bytes_down;
        c->stats.bytes_up = c->tstats.bytes_up;
        c->stats.chunks = c->tstats.chunks;
        c->stats.cpu_step_s = c->tstats.cpu_step_s;
        c->done_pub = c->pipe.h2d_done;
        if (c->pipe.h2d_done == c->nchunks)
            pthread_cond_broadcast(&c->done);   /* and wait at the top without letting go of the lock */
        if (!moved) {
            int waited;
            pthread_mutex_unlock(&c->lock);
            waited = wait_pending(c, &status);
            pthread_mutex_lock(&c->lock);
            if (waited < 0)
                fail_locked(c, status);
            else if (waited == 0 && !c->stop && c->pipe.chunks == c->nchunks)
                pthread_cond_wait(&c->wake, &c->lock);   /* nothing in flight: only new chunks move it */
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static zero_status_t cpu_step_async(zero_store_t *store, const zero_store_async_step_t *step)
{
    cpu_store_t *c = (cpu_store_t *)store;
    size_t per = zero_slot_ring_slot_bytes(c->ring) / zero_dtype_size(step->grad_dtype);
    size_t need, at;
    const zero_offload_extent_t *x = zero_offload_map_find(&c->map, step->group, step->begin);
    zero_status_t status = ZERO_OK;

    if (per > store->max_range)
        per = store->max_range;   /* a chunk is one range of the arrays (the NVMe store's buffers hold that) */
    need = (step->count + per - 1) / per;

    if (step->grad_dtype != step->weight_dtype) {
        ZERO_LOG_ERROR("cpu offload store: gradients in %s and weights in %s: both are the training dtype",
                       zero_dtype_string(step->grad_dtype), zero_dtype_string(step->weight_dtype));
        return ZERO_ERR_INVALID_ARG;
    }
    if (x == NULL || !x->on_host || step->count > x->begin + x->count - step->begin) {
        /* the engine cuts its pieces where steps_at's answer changes */
        ZERO_LOG_ERROR("cpu offload store: step of [%zu, +%zu) of group %d is not wholly in host memory", step->begin,
                       step->count, step->group);
        return ZERO_ERR_INVALID_ARG;
    }
    at = x->at + (step->begin - x->begin);   /* where the host side keeps it */
    pthread_mutex_lock(&c->lock);
    if (c->error != ZERO_OK) {
        status = c->error;
        goto out;
    }
    if (step->undoable && (status = zero_cpu_inner_prepare_undo(&c->inner)) != ZERO_OK)
        goto out;
    /* This call's copies start after everything the trainer's stream holds now
     * (the reductions). Recorded at every call, not once per step: in the
     * overlap mode each bucket's gradients are handed over as soon as its
     * reduction is queued, while the backward goes on queueing work. The wait
     * takes the event as it stands, so one event serves every call. */
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)(c->grads_ready, c->trainer), status, out, "cpu offload store: %s",
                         "recording the gradients' event");
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamWaitEvent)(c->copy_in, c->grads_ready, 0), status, out,
                         "cpu offload store: %s", "ordering the copies after the gradients");
    if (c->nchunks + need > c->chunks_cap) {
        size_t cap = c->chunks_cap ? c->chunks_cap : 64;
        cpu_chunk_t *grown;
        while (cap < c->nchunks + need)
            cap *= 2;
        grown = zero_realloc(c->chunks, cap * sizeof(*grown));
        if (grown == NULL) {
            ZERO_LOG_ERROR("cpu offload store: out of memory for %zu chunks", cap);
            status = ZERO_ERR_NO_MEMORY;
            goto out;
        }
        c->chunks = grown;
        c->chunks_cap = cap;
    }
    for (size_t k = 0; k < need; k++) {
        cpu_chunk_t *ch = &c->chunks[c->nchunks++];
        size_t off = k * per;
        ch->step = *step;
        ch->step.begin = at + off;   /* host side offsets from here on */
        ch->step.count = step->count - off < per ? step->count - off : per;
        ch->step.grad = (const char *)step->grad + off * zero_dtype_size(step->grad_dtype);
        ch->step.weights = (char *)step->weights + off * zero_dtype_size(step->weight_dtype);
        ch->step.optim = &c->optim;
    }
    pthread_cond_signal(&c->wake);
out:
    pthread_mutex_unlock(&c->lock);
    return status;
}

/* Undoes every chunk of this step (all back on the device, the offload
 * thread idle): master and states from the undo copy, then the weights the
 * chunk wrote, made again from the restored master (the 16-bit weights are
 * the master rounded as the kernels round it; fp32 ones are the master) in
 * the first slot and copied back to the device. */
static zero_status_t undo_chunks(cpu_store_t *c)
{
    zero_status_t status = ZERO_OK;
    void *slot = zero_slot_ring_slot(c->ring, 0);
    for (size_t k = 0; k < c->nchunks && status == ZERO_OK; k++) {
        const zero_store_async_step_t *st = &c->chunks[k].step;
        size_t bytes = st->count * zero_dtype_size(st->weight_dtype);
        if ((status = zero_cpu_inner_undo(&c->inner, st, slot)) != ZERO_OK)
            return status;
        if (ZERO_CUDA(cudaMemcpyAsync)(st->weights, slot, bytes, cudaMemcpyHostToDevice, c->copy_out) != cudaSuccess ||
            ZERO_CUDA(cudaStreamSynchronize)(c->copy_out) != cudaSuccess) {
            ZERO_LOG_ERROR("cpu offload store: restoring %zu bytes of weights on the device: %s", bytes,
                           ZERO_CUDA(cudaGetErrorString)(ZERO_CUDA(cudaGetLastError)()));
            status = ZERO_ERR_CUDA;
        }
    }
    return status;
}

/* step_wait (@p cancel 0) and step_cancel (1): every chunk back on the device, then undone when cancelled. */
static zero_status_t finish_step(cpu_store_t *c, int cancel)
{
    double t0 = zero_clock_now();
    zero_status_t status;
    struct timespec until;

    /* pthread_cond_timedwait takes CLOCK_REALTIME; the fraction of timeout_s counts too */
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)c->timeout_s;
    until.tv_nsec += (long)((c->timeout_s - (double)(time_t)c->timeout_s) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->lock);
    while (c->error == ZERO_OK && c->done_pub < c->nchunks) {
        if (pthread_cond_timedwait(&c->done, &c->lock, &until) == ETIMEDOUT) {
            ZERO_LOG_ERROR("cpu offload store: the step did not finish within %g s (%zu of %zu slots back on the "
                           "device)", c->timeout_s, c->done_pub, c->nchunks);
            c->error = ZERO_ERR_TIMEOUT;
        }
    }
    status = c->error;
    if (status == ZERO_OK && cancel && (status = undo_chunks(c)) != ZERO_OK)
        c->error = status;   /* half undone: the state is inconsistent, so the store is failed */
    if (status == ZERO_OK) {
        /* the next step starts where this one's ring position ended */
        unsigned base = c->nchunks > 0 ? zero_slot_pipe_next_base(&c->pipe) : c->pipe.base;
        /* the offload thread is idle (every chunk done): the pipe is free to reset */
        zero_slot_pipe_init(&c->pipe, 0, zero_slot_ring_slots(c->ring), base);
        c->nchunks = 0;
        c->done_pub = 0;
    }
    c->stats.exposed_s += zero_clock_now() - t0;
    pthread_mutex_unlock(&c->lock);
    return status;
}

static zero_status_t cpu_step_wait(zero_store_t *store) { return finish_step((cpu_store_t *)store, 0); }

static zero_status_t cpu_step_cancel(zero_store_t *store) { return finish_step((cpu_store_t *)store, 1); }

static void cpu_destroy(zero_store_t *store)
{
    cpu_store_t *c = (cpu_store_t *)store;
    if (c->thread_started) {
        pthread_mutex_lock(&c->lock);
        c->stop = 1;
        pthread_cond_broadcast(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
    }
    if (c->copy_in != NULL)
        (void)ZERO_CUDA(cudaStreamSynchronize)(c->copy_in);   /* no copy may still touch a slot */
    if (c->copy_out != NULL)
        (void)ZERO_CUDA(cudaStreamSynchronize)(c->copy_out);
    for (unsigned i = 0; c->ring != NULL && i < zero_slot_ring_slots(c->ring); i++) {
        if (c->in_done != NULL && c->in_done[i] != NULL)
            ZERO_CUDA(cudaEventDestroy)(c->in_done[i]);
        if (c->out_done != NULL && c->out_done[i] != NULL)
            ZERO_CUDA(cudaEventDestroy)(c->out_done[i]);
    }
    if (c->grads_ready != NULL)
        ZERO_CUDA(cudaEventDestroy)(c->grads_ready);
    if (c->copy_in != NULL)
        ZERO_CUDA(cudaStreamDestroy)(c->copy_in);
    if (c->copy_out != NULL)
        ZERO_CUDA(cudaStreamDestroy)(c->copy_out);
    for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
        zero_mem_free(c->stage[f]);
    zero_free(c->in_done);
    zero_free(c->out_done);
    zero_slot_ring_destroy(c->ring);
    zero_thread_pool_destroy(c->pool);
    zero_cpu_inner_fini(&c->inner);
    zero_store_destroy(c->dev);
    zero_offload_map_free(&c->map);
    zero_free(c->chunks);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->done);
    pthread_mutex_destroy(&c->lock);
    (void)ZERO_CUDA(cudaGetLastError)();
    zero_free(c);
}

/* The NVMe arrays' writes (the host store has none); called between steps. */
static zero_status_t cpu_flush(zero_store_t *store)
{
    return zero_cpu_inner_flush(&((cpu_store_t *)store)->inner);
}

static double cpu_step_busy(const zero_store_t *store)
{
    cpu_store_t *c = (cpu_store_t *)(uintptr_t)store;
    double busy;
    pthread_mutex_lock(&c->lock);
    busy = c->stats.cpu_step_s;
    pthread_mutex_unlock(&c->lock);
    return busy;
}

static const zero_store_ops_t cpu_ops = {
    .name = "cpu offload",
    .acquire = cpu_acquire,
    .release = cpu_release,
    .prefetch = NULL,   /* acquire copies on demand; the step reads the gradients as they come */
    .flush = cpu_flush,
    .bytes = cpu_bytes,
    .destroy = cpu_destroy,
    .step_async = cpu_step_async,
    .step_wait = cpu_step_wait,
    .prefer_step = 1,   /* only gradients and weights should cross PCIe */
    .step_busy = cpu_step_busy,
    .steps_at = cpu_steps_at,
    .step_cancel = cpu_step_cancel,
};

/* The slots' events: waited for by the offload thread asleep (wait_pending). */
static const unsigned slot_event_flags = cudaEventDisableTiming | cudaEventBlockingSync;

zero_status_t zero_store_cpu_create(const zero_store_desc_t *desc, const zero_store_cpu_params_t *params,
                                    zero_store_t **store_p)
{
    zero_store_desc_t host = *desc, dev = *desc;
    int any_dev = 0;
    zero_slot_ring_params_t rp;
    zero_status_t status;
    cpu_store_t *c;
    unsigned slots = params->slots;

    if (desc->kind != ZERO_MEM_DEVICE || slots < 1 || params->slot_elems < 1 || params->threads < 1 ||
        !(params->timeout_s > 0)) {
        ZERO_LOG_ERROR("cpu offload store: needs a device engine, at least one slot, one element per slot, one "
                       "thread and a timeout (kind %s, %u slots of %zu elements, %d threads, %g s)",
                       zero_mem_kind_string(desc->kind), slots, params->slot_elems, params->threads,
                       params->timeout_s);
        return ZERO_ERR_INVALID_ARG;
    }
    if ((status = zero_cuda_require("CPU offload for a device engine")) != ZERO_OK)
        return status;
    c = zero_calloc(1, sizeof(*c));
    if (c == NULL) {
        ZERO_LOG_ERROR("cpu offload store: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->done, NULL);
    c->base.ops = &cpu_ops;
    c->base.desc = *desc;
    memset(c->base.desc.adopt_master, 0, sizeof(c->base.desc.adopt_master));
    c->base.max_range = params->slot_elems;
    c->trainer = (cudaStream_t)params->stream;
    c->timeout_s = params->timeout_s;
    c->device = params->device;
    if (c->device < 0)
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaGetDevice)(&c->device), status, fail, "cpu offload store: %s",
                             "cudaGetDevice");
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaSetDevice)(c->device), status, fail, "cpu offload store: cudaSetDevice(%d)",
                         c->device);

    /* which owned ranges are offloaded (all of them without a bucket list) */
    if ((status = zero_offload_map_build(desc->num_groups, desc->length, params->buckets != NULL ? params->num_buckets : 0,
                                         params->buckets, params->offloaded, &c->map)) != ZERO_OK)
        goto fail;
    /* the offloaded arrays: the inner store the factory makes (the NVMe
     * store's file, zero-optd servers), else ordinary host memory, never
     * pinned (only the ring is) */
    host.kind = ZERO_MEM_HOST;
    memset(host.adopt_master, 0, sizeof(host.adopt_master));
    memset(dev.adopt_master, 0, sizeof(dev.adopt_master));
    for (int g = 0; g < desc->num_groups; g++) {
        host.length[g] = c->map.length[g][1];
        dev.length[g] = c->map.length[g][0];
        any_dev = any_dev || dev.length[g] > 0;
    }
    {
        zero_store_t *inner = NULL;
        status = params->inner_create != NULL ? params->inner_create(&host, params->inner_arg, &inner)
                                              : zero_store_host_create(&host, &inner);
        if (status != ZERO_OK || (status = zero_cpu_inner_init(&c->inner, inner, &c->optim)) != ZERO_OK)
            goto fail;
    }
    /* the rest (ratio < 1): device memory, as without offload */
    if (any_dev && (status = zero_store_host_create(&dev, &c->dev)) != ZERO_OK)
        goto fail;

    memset(&rp, 0, sizeof(rp));
    rp.slots = slots;
    rp.slot_bytes = params->slot_elems * sizeof(float);   /* fp32 training moves 4 bytes an element */
    rp.pin = params->pin;
    rp.piece_max = params->piece_max;
    rp.pin_limit = params->pin_limit;
    rp.what = "offload_optimizer transfer slots";
    if ((status = zero_slot_ring_create(&rp, &c->ring)) != ZERO_OK)
        goto fail;
    c->stats.slots = slots;
    c->stats.pinned_slots = zero_slot_ring_pinned_slots(c->ring);

    for (int f = 0; f <= desc->num_states; f++)
        if ((status = zero_mem_alloc(ZERO_MEM_DEVICE, params->slot_elems * sizeof(float), "cpu offload staging",
                                     (void **)&c->stage[f])) != ZERO_OK)
            goto fail;
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamCreateWithFlags)(&c->copy_in, cudaStreamNonBlocking), status, fail,
                         "cpu offload store: %s", "creating the copy-in stream");
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamCreateWithFlags)(&c->copy_out, cudaStreamNonBlocking), status, fail,
                         "cpu offload store: %s", "creating the copy-out stream");
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventCreateWithFlags)(&c->grads_ready, cudaEventDisableTiming), status, fail,
                         "cpu offload store: %s", "creating an event");
    c->in_done = zero_calloc(slots, sizeof(*c->in_done));
    c->out_done = zero_calloc(slots, sizeof(*c->out_done));
    if (c->in_done == NULL || c->out_done == NULL) {
        ZERO_LOG_ERROR("cpu offload store: out of memory");
        status = ZERO_ERR_NO_MEMORY;
        goto fail;
    }
    for (unsigned i = 0; i < slots; i++) {
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventCreateWithFlags)(&c->in_done[i], slot_event_flags), status,
                             fail, "cpu offload store: %s", "creating an event");
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventCreateWithFlags)(&c->out_done[i], slot_event_flags), status,
                             fail, "cpu offload store: %s", "creating an event");
    }
    if ((status = zero_thread_pool_create(params->threads, &c->pool)) != ZERO_OK ||
        (status = zero_optim_ctx_init(&c->optim, ZERO_OPTIM_ISA_AUTO, c->pool)) != ZERO_OK)
        goto fail;
    zero_slot_pipe_init(&c->pipe, 0, slots, 0);
    if (pthread_create(&c->thread, NULL, offload_thread, c) != 0) {
        ZERO_LOG_ERROR("cpu offload store: cannot start the offload thread");
        status = ZERO_ERR_NO_MEMORY;
        goto fail;
    }
    c->thread_started = 1;
    ZERO_LOG_DEBUG("cpu offload store: device %d, %u slots of %zu elements (%u pinned), %d CPU threads", c->device,
                   slots, params->slot_elems, c->stats.pinned_slots, params->threads);
    *store_p = &c->base;
    return ZERO_OK;
fail:
    cpu_destroy(&c->base);
    return status;
}

void zero_store_cpu_stats(const zero_store_t *store, zero_store_cpu_stats_t *stats_p)
{
    cpu_store_t *c = (cpu_store_t *)(uintptr_t)store;
    pthread_mutex_lock(&c->lock);
    *stats_p = c->stats;
    pthread_mutex_unlock(&c->lock);
}

#else /* !HAVE_CUDA */

zero_status_t zero_store_cpu_create(const zero_store_desc_t *desc, const zero_store_cpu_params_t *params,
                                    zero_store_t **store_p)
{
    (void)desc;
    (void)params;
    (void)store_p;
    return zero_cuda_require("CPU offload for a device engine");   /* says this build has no CUDA */
}

void zero_store_cpu_stats(const zero_store_t *store, zero_store_cpu_stats_t *stats_p)
{
    (void)store;
    memset(stats_p, 0, sizeof(*stats_p));
}
#endif
