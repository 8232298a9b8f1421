/*
 * The NVMe store (store_nvme.h). Layout of the file: for each group, for each
 * field kept on disk, one region of the group's length in fp32, padded to a
 * whole number of 4 KiB blocks, so that every region starts on a block and a
 * range's bytes lie in one contiguous run of blocks of each field's region.
 *
 * A staging buffer ("slot") holds one range: for each of its fields the whole
 * blocks the range touches (O_DIRECT moves whole aligned blocks). Its state:
 *   FREE     holds nothing
 *   READING  a read is in flight (prefetch or acquire)
 *   READY    holds the range's current values, not handed out (prefetched, or
 *            released and kept: a later acquire of the same range is a hit)
 *   HELD     handed out by acquire
 *   WRITING  a dirty release's write is in flight; its buffer is not reused
 *            until it completes
 * "pending" counts the slot's I/O requests in flight; a slot whose pending is
 * zero has finished its I/O and is settled by the caller's thread.
 *
 * Ordering, since the kernel orders nothing: a read or write waits for every
 * write in flight over a block it touches (read after write, write after
 * write). A dirty release writes whole blocks, so the parts of its first and
 * last block outside its range are first refreshed from the file (another
 * range may have written them since this slot read them), and every other
 * buffered copy overlapping the range is dropped.
 *
 * Threads: the caller's (one at a time, as every store) and the I/O thread(s),
 * which only take requests from the queue, run them and count them done,
 * under the store's mutex. Errors found there are kept (the first one) and
 * logged and returned by the next call from the caller's thread.
 */
#define ZERO_LOG_MODULE "offload"
#include "offload/store_nvme.h"
#include "util/alloc.h"
#include "util/checks.h"
#include "util/clock.h"
#include "util/log.h"
#include "zero_build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if HAVE_LIBURING
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#endif

/* Every I/O request's offset, length and buffer address are multiples of this
 * (the logical block size of every common device is 512 or 4096). */
#define NVME_ALIGN 4096u
#define NVME_ALIGN_ELEMS (NVME_ALIGN / sizeof(float))

typedef enum slot_state { SLOT_FREE = 0, SLOT_READING, SLOT_READY, SLOT_HELD, SLOT_WRITING } slot_state_t;

struct nvme_store;
struct nvme_slot;

/* One I/O request: at most block_size bytes of one field of one slot. */
typedef struct nvme_op {
    struct nvme_op *next;            /* in the queue */
    struct nvme_slot *slot;
    char *buf;
    size_t length;
    uint64_t offset;                 /* in the file */
    int write;
    int field;
} nvme_op_t;

typedef struct nvme_slot {
    slot_state_t state;
    int group;
    size_t begin, count;             /* the range, in elements */
    size_t ext_begin, ext_end;       /* the whole blocks it touches, in elements */
    unsigned fields;                 /* fields held (file fields only) */
    char *raw;                       /* the allocation buf[] lie in */
    char *buf[ZERO_STORE_NUM_FIELDS];/* [max_range + one block] each, aligned */
    int pending;                     /* requests in flight (under the mutex) */
    int write_failed;                /* the last write failed: the buffer is the only copy */
    int read_failed;                 /* the read in flight failed: the buffer holds nothing */
    uint64_t last_use;
    nvme_op_t *ops;                  /* [ops_per_slot] */
} nvme_slot_t;

typedef struct nvme_store {
    zero_store_t base;
    zero_store_nvme_params_t params;
    char *path;
    int fd;
    int direct;
    uint64_t file_bytes;
    uint64_t region[ZERO_DTYPE_COUNT][ZERO_STORE_NUM_FIELDS];   /* byte offset of each field region */
    unsigned file_fields[ZERO_DTYPE_COUNT];                      /* fields kept in the file, per group */
    float *adopted[ZERO_DTYPE_COUNT];                            /* master in the caller's memory */

    nvme_slot_t *slots;
    int num_slots;
    size_t slot_field_bytes;
    int slot_fields;                /* fields a slot has buffers for: num_states + 1 */
    size_t ops_per_slot;
    char *edge_raw, *edge;           /* one aligned block: partial-block merges */
    uint64_t use_clock;

    /* I/O: the queue and the completion state, under mutex */
    pthread_mutex_t mutex;
    pthread_cond_t done_cond;        /* a request completed */
    pthread_cond_t queue_cond;       /* threads backend: a request queued, or stopping */
    nvme_op_t *queue_head, *queue_tail;
    int stopping;
    zero_status_t async_status;      /* the first error the I/O threads found, not yet reported */
    /* An I/O wait passed params.timeout_s: requests may still be in flight on
     * the buffers, so every later call fails (ZERO_ERR_TIMEOUT) naming it. */
    int stalled;
    char async_message[512];
    pthread_t *threads;
    int num_threads;
    int use_uring;
#if HAVE_LIBURING
    struct io_uring ring;
    int ring_ready;
    int event_fd;                    /* wakes the I/O thread when a request is queued */
    int inflight;
#endif

    /* statistics (caller's thread, except the byte counts) */
    _Atomic uint64_t bytes_read, bytes_written;
    uint64_t acquires, acquire_hits;
    double wait_seconds;
} nvme_store_t;

static const char *const field_name[ZERO_STORE_NUM_FIELDS] = {"master", "optimizer state 1", "optimizer state 2"};

static size_t round_up(size_t value, size_t unit) { return (value + unit - 1) / unit * unit; }

void zero_store_nvme_params_default(zero_store_nvme_params_t *params)
{
    memset(params, 0, sizeof(*params));
    params->buffer_count = 4;
    params->max_range = (size_t)1 << 20;
    params->block_size = 1048576;
    params->queue_depth = 8;
    params->io_threads = 1;
    params->io = ZERO_STORE_NVME_IO_URING;
    params->direct = 1;
    params->timeout_s = 300.0;
    params->config_block = "offload_optimizer";
    params->range_key = "sub_group_size";
    params->contents = "the optimizer state";
}

/* ---- completion (I/O threads, under the mutex) ---- */

static void op_complete_locked(nvme_store_t *s, nvme_op_t *op, long result)
{
    if (result != (long)op->length && s->async_status == ZERO_OK) {
        const char *verb = op->write ? "write" : "read";
        if (result < 0)
            snprintf(s->async_message, sizeof(s->async_message),
                     "nvme store: %s of %zu bytes at offset %llu of %s (%s, group %d) failed: %s", verb, op->length,
                     (unsigned long long)op->offset, s->path, field_name[op->field], op->slot->group,
                     strerror((int)-result));
        else
            snprintf(s->async_message, sizeof(s->async_message),
                     "nvme store: short %s: %ld of %zu bytes at offset %llu of %s (%s, group %d)", verb, result,
                     op->length, (unsigned long long)op->offset, s->path, field_name[op->field], op->slot->group);
        s->async_status = result < 0 ? zero_status_from_errno((int)-result) : ZERO_ERR_IO;
        if (s->async_status != ZERO_ERR_NO_MEMORY)
            s->async_status = ZERO_ERR_IO;
    }
    if (result != (long)op->length) {
        if (op->write)
            op->slot->write_failed = 1;
        else
            op->slot->read_failed = 1;
    }
    if (result > 0)
        atomic_fetch_add(op->write ? &s->bytes_written : &s->bytes_read, (uint64_t)result);
    op->slot->pending--;
    pthread_cond_broadcast(&s->done_cond);
}

static long op_run_sync(const nvme_store_t *s, const nvme_op_t *op)
{
    ssize_t n = op->write ? pwrite(s->fd, op->buf, op->length, (off_t)op->offset)
                          : pread(s->fd, op->buf, op->length, (off_t)op->offset);
    return n < 0 ? -(long)errno : (long)n;
}

/* ---- the pread/pwrite thread pool ---- */

static void *threads_main(void *arg)
{
    nvme_store_t *s = arg;
    pthread_mutex_lock(&s->mutex);
    for (;;) {
        nvme_op_t *op;
        long result;
        while (s->queue_head == NULL && !s->stopping)
            pthread_cond_wait(&s->queue_cond, &s->mutex);
        if (s->queue_head == NULL)
            break;   /* stopping, and nothing left */
        op = s->queue_head;
        s->queue_head = op->next;
        if (s->queue_head == NULL)
            s->queue_tail = NULL;
        pthread_mutex_unlock(&s->mutex);
        result = op_run_sync(s, op);
        pthread_mutex_lock(&s->mutex);
        op_complete_locked(s, op, result);
    }
    pthread_mutex_unlock(&s->mutex);
    return NULL;
}

/* ---- io_uring: one thread owns the ring ---- */

#if HAVE_LIBURING
#define URING_WAKE_TAG ((uint64_t)1)   /* user_data of the eventfd poll (ops are pointers, never 1) */

static int uring_arm_wake(nvme_store_t *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    if (sqe == NULL)
        return -1;
    io_uring_prep_poll_add(sqe, s->event_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, URING_WAKE_TAG);
    return 0;
}

static void *uring_main(void *arg)
{
    nvme_store_t *s = arg;
    int wake_armed = uring_arm_wake(s) == 0;
    for (;;) {
        struct io_uring_cqe *cqe;
        int rc, stop;
        pthread_mutex_lock(&s->mutex);
        while (s->queue_head != NULL && s->inflight < s->params.queue_depth) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
            nvme_op_t *op = s->queue_head;
            if (sqe == NULL)
                break;
            s->queue_head = op->next;
            if (s->queue_head == NULL)
                s->queue_tail = NULL;
            if (op->write)
                io_uring_prep_write(sqe, s->fd, op->buf, (unsigned)op->length, op->offset);
            else
                io_uring_prep_read(sqe, s->fd, op->buf, (unsigned)op->length, op->offset);
            io_uring_sqe_set_data(sqe, op);
            s->inflight++;
        }
        if (!wake_armed)
            wake_armed = uring_arm_wake(s) == 0;
        stop = s->stopping && s->queue_head == NULL && s->inflight == 0;
        pthread_mutex_unlock(&s->mutex);
        if (stop)
            break;
        io_uring_submit(&s->ring);
        rc = io_uring_wait_cqe(&s->ring, &cqe);
        if (rc == -EINTR)
            continue;
        if (rc < 0) {
            /* Waiting on the ring itself failed (not one request): report it
             * to the caller and wait again; the requests in flight still
             * complete through the ring. */
            pthread_mutex_lock(&s->mutex);
            if (s->async_status == ZERO_OK) {
                snprintf(s->async_message, sizeof(s->async_message), "nvme store: io_uring wait on %s failed: %s",
                         s->path, strerror(-rc));
                s->async_status = ZERO_ERR_IO;
            }
            pthread_mutex_unlock(&s->mutex);
            continue;
        }
        do {
            uint64_t tag = io_uring_cqe_get_data64(cqe);
            long result = cqe->res;
            io_uring_cqe_seen(&s->ring, cqe);
            if (tag == URING_WAKE_TAG) {
                uint64_t count;
                if (read(s->event_fd, &count, sizeof(count)) < 0 && errno != EAGAIN) {
                    /* nothing to do: the next poll fires again */
                }
                wake_armed = 0;
                continue;
            }
            pthread_mutex_lock(&s->mutex);
            s->inflight--;
            op_complete_locked(s, (nvme_op_t *)(uintptr_t)tag, result);
            pthread_mutex_unlock(&s->mutex);
        } while (io_uring_peek_cqe(&s->ring, &cqe) == 0);
    }
    return NULL;
}
#endif

/* Queues requests (a list linked by next) and wakes the I/O threads. Under the mutex. */
static void queue_ops_locked(nvme_store_t *s, nvme_op_t *first, nvme_op_t *last)
{
    if (first == NULL)
        return;
    last->next = NULL;
    if (s->queue_tail != NULL)
        s->queue_tail->next = first;
    else
        s->queue_head = first;
    s->queue_tail = last;
#if HAVE_LIBURING
    if (s->use_uring) {
        uint64_t one = 1;
        if (write(s->event_fd, &one, sizeof(one)) < 0) {
            /* an eventfd write fails only on counter overflow: already signalled */
        }
        return;
    }
#endif
    pthread_cond_broadcast(&s->queue_cond);
}

/* ---- slots (caller's thread) ---- */

/* Reports the first asynchronous error once (logging it here, on the
 * caller's thread, so the caller's error record names it). */
static zero_status_t take_async_error_locked(nvme_store_t *s)
{
    zero_status_t status = s->async_status;
    if (status != ZERO_OK) {
        ZERO_LOG_ERROR("%s", s->async_message);
        s->async_status = ZERO_OK;
    }
    return status;
}

/* Waits for the next completion until @p deadline (zero_clock_now() seconds).
 * Past it: the store is stalled (logged once, naming the file, what was
 * waited for and @p slot's range, if any) and ZERO_ERR_TIMEOUT. */
static zero_status_t wait_done_locked(nvme_store_t *s, double deadline, const char *what, const nvme_slot_t *slot)
{
    double now = zero_clock_now();
    if (now < deadline) {
        struct timespec ts;
        double wake;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        wake = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec + (deadline - now);
        ts.tv_sec = (time_t)wake;
        ts.tv_nsec = (long)((wake - (double)ts.tv_sec) * 1e9);
        if (pthread_cond_timedwait(&s->done_cond, &s->mutex, &ts) != ETIMEDOUT)
            return ZERO_OK;
    }
    if (!s->stalled && slot != NULL)
        ZERO_LOG_ERROR("nvme store: %s of group %d [%zu, +%zu) on %s did not complete within %g s (a stalled "
                       "device?); the store refuses further use", what, slot->group, slot->begin, slot->count,
                       s->path, s->params.timeout_s);
    else if (!s->stalled)
        ZERO_LOG_ERROR("nvme store: %s on %s did not complete within %g s (a stalled device?); the store refuses "
                       "further use", what, s->path, s->params.timeout_s);
    s->stalled = 1;
    return ZERO_ERR_TIMEOUT;
}

/* Whether an earlier wait timed out (then logs that this call is refused). */
static zero_status_t check_stalled_locked(const nvme_store_t *s, const char *what)
{
    if (!s->stalled)
        return ZERO_OK;
    ZERO_LOG_ERROR("nvme store: %s refused: I/O on %s stalled earlier (over %g s)", what, s->path, s->params.timeout_s);
    return ZERO_ERR_TIMEOUT;
}

static zero_status_t wait_slot_locked(nvme_store_t *s, nvme_slot_t *slot)
{
    zero_status_t status = ZERO_OK;
    if (slot->pending > 0) {
        double t0 = zero_clock_now(), deadline = t0 + s->params.timeout_s;
        while (slot->pending > 0 && status == ZERO_OK)
            status = wait_done_locked(s, deadline, slot->state == SLOT_WRITING ? "a write" : "a read", slot);
        s->wait_seconds += zero_clock_now() - t0;
    }
    return status;
}

/* A slot whose I/O finished moves on: READING -> READY (FREE if the read
 * failed), WRITING -> READY (a failed write keeps write_failed and the data). */
static void settle_locked(nvme_slot_t *slot)
{
    if (slot->pending == 0 && (slot->state == SLOT_READING || slot->state == SLOT_WRITING)) {
        slot->state = slot->read_failed ? SLOT_FREE : SLOT_READY;
        slot->read_failed = 0;
    }
}

/* Copies the elements @p src and @p dst share, in the fields both hold, from
 * src's buffer into dst's. */
static void copy_overlap(nvme_slot_t *dst, const nvme_slot_t *src)
{
    size_t lo = dst->begin > src->begin ? dst->begin : src->begin;
    size_t hi = dst->begin + dst->count < src->begin + src->count ? dst->begin + dst->count : src->begin + src->count;
    if (dst->group != src->group || lo >= hi)
        return;
    for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
        if (dst->fields & src->fields & ZERO_STORE_FIELD_BIT(f))
            memcpy((float *)(void *)dst->buf[f] + (lo - dst->ext_begin),
                   (const float *)(const void *)src->buf[f] + (lo - src->ext_begin), (hi - lo) * sizeof(float));
}

static int blocks_overlap(const nvme_slot_t *a, int group, size_t ext_begin, size_t ext_end)
{
    return a->state != SLOT_FREE && a->group == group && a->ext_begin < ext_end && ext_begin < a->ext_end;
}

/* Read after write, write after write: waits for every other slot's write in
 * flight over the blocks [ext_begin, ext_end) of @p group. */
static zero_status_t wait_writes_over_locked(nvme_store_t *s, const nvme_slot_t *self, int group,
                                             size_t ext_begin, size_t ext_end)
{
    for (int i = 0; i < s->num_slots; i++) {
        nvme_slot_t *o = &s->slots[i];
        if (o != self && o->state == SLOT_WRITING && blocks_overlap(o, group, ext_begin, ext_end)) {
            zero_status_t status = wait_slot_locked(s, o);
            if (status != ZERO_OK)
                return status;
            settle_locked(o);
        }
    }
    return ZERO_OK;
}

/* A slot to fill: a free one, else the least recently used finished one
 * (never one holding the only copy of a failed write), waiting for writes in
 * flight when nothing else is left. NULL: every slot is held, or the wait
 * timed out (s->stalled). */
static nvme_slot_t *take_slot_locked(nvme_store_t *s)
{
    double deadline = zero_clock_now() + s->params.timeout_s;
    for (;;) {
        nvme_slot_t *best = NULL;
        int busy = 0;
        for (int i = 0; i < s->num_slots; i++) {
            nvme_slot_t *o = &s->slots[i];
            settle_locked(o);
            if (o->state == SLOT_FREE)
                return o;
            if (o->state == SLOT_READY && !o->write_failed) {
                if (best == NULL || o->last_use < best->last_use)
                    best = o;
            } else if (o->state == SLOT_READING || o->state == SLOT_WRITING) {
                busy = 1;
            }
        }
        if (best != NULL) {
            best->state = SLOT_FREE;
            return best;
        }
        if (!busy)
            return NULL;
        /* Everything not held is in flight: wait for the next completion. */
        double t0 = zero_clock_now();
        zero_status_t status = wait_done_locked(s, deadline, "waiting for a free buffer, the I/O in flight", NULL);
        s->wait_seconds += zero_clock_now() - t0;
        if (status != ZERO_OK)
            return NULL;
    }
}

/* Splits the slot's fields' blocks into requests and queues them. */
static void issue_locked(nvme_store_t *s, nvme_slot_t *slot, int write)
{
    nvme_op_t *first = NULL, *last = NULL;
    size_t n = 0;
    size_t bytes = (slot->ext_end - slot->ext_begin) * sizeof(float);
    for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++) {
        if (!(slot->fields & ZERO_STORE_FIELD_BIT(f)))
            continue;
        uint64_t base = s->region[slot->group][f] + slot->ext_begin * sizeof(float);
        for (size_t done = 0; done < bytes; done += s->params.block_size) {
            nvme_op_t *op = &slot->ops[n++];
            op->slot = slot;
            op->buf = slot->buf[f] + done;
            op->length = bytes - done < s->params.block_size ? bytes - done : s->params.block_size;
            op->offset = base + done;
            op->write = write;
            op->field = f;
            if (last != NULL)
                last->next = op;
            else
                first = op;
            last = op;
        }
    }
    slot->pending += (int)n;
    slot->state = write ? SLOT_WRITING : SLOT_READING;
    queue_ops_locked(s, first, last);
}

static void slot_assign(nvme_slot_t *slot, int group, size_t begin, size_t count, unsigned fields, uint64_t use)
{
    slot->group = group;
    slot->begin = begin;
    slot->count = count;
    slot->ext_begin = begin / NVME_ALIGN_ELEMS * NVME_ALIGN_ELEMS;
    slot->ext_end = round_up(begin + count, NVME_ALIGN_ELEMS);   /* count > 0: at least one block */
    slot->fields = fields;
    slot->write_failed = 0;
    slot->read_failed = 0;
    slot->last_use = use;
}

static nvme_slot_t *find_locked(nvme_store_t *s, int group, size_t begin, size_t count, unsigned fields)
{
    for (int i = 0; i < s->num_slots; i++) {
        nvme_slot_t *o = &s->slots[i];
        if (o->state != SLOT_FREE && o->state != SLOT_HELD && o->group == group && o->begin == begin &&
            o->count == count && (o->fields & fields) == fields)
            return o;
    }
    return NULL;
}

/* Starts reading a range into a fresh slot. NULL (nothing started): every slot is held. */
static nvme_slot_t *start_read_locked(nvme_store_t *s, int group, size_t begin, size_t count, unsigned fields)
{
    nvme_slot_t *slot = take_slot_locked(s);
    if (slot == NULL)
        return NULL;
    slot_assign(slot, group, begin, count, fields, ++s->use_clock);
    if (wait_writes_over_locked(s, slot, group, slot->ext_begin, slot->ext_end) != ZERO_OK) {
        slot->state = SLOT_FREE;
        return NULL;
    }
    issue_locked(s, slot, 0);
    return slot;
}

static unsigned file_fields_of(const nvme_store_t *s, int group, unsigned fields)
{
    return fields & s->file_fields[group];
}

static zero_status_t check_size(const nvme_store_t *s, const char *what, size_t count)
{
    if (count > s->base.max_range) {
        ZERO_LOG_ERROR("nvme store: %s of %zu elements exceeds its buffers of %zu elements (max_range; "
                       "%s.%s in the config)", what, count, s->base.max_range, s->params.config_block,
                       s->params.range_key);
        return ZERO_ERR_INVALID_ARG;
    }
    return ZERO_OK;
}

static zero_status_t nvme_prefetch(zero_store_t *store, int group, size_t begin, size_t count, unsigned fields)
{
    nvme_store_t *s = (nvme_store_t *)store;
    zero_status_t status;
    unsigned ff = count > 0 ? file_fields_of(s, group, fields) : 0;
    if ((status = check_size(s, "prefetch", count)) != ZERO_OK)
        return status;
    pthread_mutex_lock(&s->mutex);
    status = check_stalled_locked(s, "prefetch");
    if (status == ZERO_OK)
        status = take_async_error_locked(s);
    if (status == ZERO_OK && ff != 0 && find_locked(s, group, begin, count, ff) == NULL &&
        start_read_locked(s, group, begin, count, ff) == NULL && s->stalled)   /* a hint: with every slot held, nothing */
        status = ZERO_ERR_TIMEOUT;
    pthread_mutex_unlock(&s->mutex);
    return status;
}

static zero_status_t nvme_acquire(zero_store_t *store, zero_store_range_t *range)
{
    nvme_store_t *s = (nvme_store_t *)store;
    zero_status_t status;
    unsigned ff = range->count > 0 ? file_fields_of(s, range->group, range->fields) : 0;
    nvme_slot_t *slot = NULL;

    if ((status = check_size(s, "acquire", range->count)) != ZERO_OK)
        return status;
    pthread_mutex_lock(&s->mutex);
    if ((status = check_stalled_locked(s, "acquire")) != ZERO_OK || (status = take_async_error_locked(s)) != ZERO_OK)
        goto out;
    s->acquires++;
    if (ff != 0) {
        slot = find_locked(s, range->group, range->begin, range->count, ff);
        if (slot != NULL) {
            s->acquire_hits++;
        } else if ((slot = start_read_locked(s, range->group, range->begin, range->count, ff)) == NULL) {
            if (s->stalled) {
                status = ZERO_ERR_TIMEOUT;
                goto out;
            }
            ZERO_LOG_ERROR("nvme store: acquire of group %d [%zu, +%zu) finds all %d buffers held "
                           "(release a range first, or raise %s.buffer_count)",
                           range->group, range->begin, range->count, s->num_slots, s->params.config_block);
            status = ZERO_ERR_STATE;
            goto out;
        }
        if ((status = wait_slot_locked(s, slot)) != ZERO_OK)
            goto out;   /* the read may still land in the buffer: the slot stays as it is */
        settle_locked(slot);
        status = take_async_error_locked(s);
        if (status == ZERO_OK && slot->state == SLOT_FREE) {
            /* its read failed, and another error was reported first */
            ZERO_LOG_ERROR("nvme store: reading group %d [%zu, +%zu) from %s failed (see the earlier error)",
                           range->group, range->begin, range->count, s->path);
            status = ZERO_ERR_IO;
        }
        if (status != ZERO_OK) {
            if (!slot->write_failed)
                slot->state = SLOT_FREE;   /* a failed read: its buffer holds nothing */
            goto out;
        }
        /* A failed write's buffer is the newest copy of its elements: the file is not. */
        for (int i = 0; i < s->num_slots; i++)
            if (&s->slots[i] != slot && s->slots[i].write_failed && s->slots[i].state != SLOT_FREE)
                copy_overlap(slot, &s->slots[i]);
        slot->state = SLOT_HELD;
        slot->last_use = ++s->use_clock;
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
            if (ff & ZERO_STORE_FIELD_BIT(f))
                range->data[f] = (float *)(void *)slot->buf[f] + (range->begin - slot->ext_begin);
    }
    if (range->count == 0)   /* nothing to point at: any valid address will do */
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
            if (range->fields & ZERO_STORE_FIELD_BIT(f))
                range->data[f] = (float *)(void *)s->edge;
    if ((range->fields & ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)) && s->adopted[range->group] != NULL)
        range->data[ZERO_STORE_MASTER] = s->adopted[range->group] + range->begin;
    range->impl = slot;
out:
    pthread_mutex_unlock(&s->mutex);
    return status;
}

/* The parts of the slot's first and last block outside its range: read from
 * the file (after writes in flight over them) so that writing whole blocks
 * keeps what other ranges wrote there. */
static zero_status_t merge_edges_locked(nvme_store_t *s, nvme_slot_t *slot)
{
    size_t edges[2];
    int num_edges = 0;
    size_t end = slot->begin + slot->count;
    if (slot->begin != slot->ext_begin)
        edges[num_edges++] = slot->ext_begin;
    /* The last block, unless the range ends on a block or it is the first block again. */
    if (end != slot->ext_end && (num_edges == 0 || slot->ext_end - NVME_ALIGN_ELEMS != edges[0]))
        edges[num_edges++] = slot->ext_end - NVME_ALIGN_ELEMS;
    for (int e = 0; e < num_edges; e++) {
        size_t block = edges[e];
        zero_status_t status = wait_writes_over_locked(s, slot, slot->group, block, block + NVME_ALIGN_ELEMS);
        if (status != ZERO_OK)
            return status;
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++) {
            if (!(slot->fields & ZERO_STORE_FIELD_BIT(f)))
                continue;
            nvme_op_t op = {.slot = slot, .buf = s->edge, .length = NVME_ALIGN, .write = 0, .field = f,
                            .offset = s->region[slot->group][f] + block * sizeof(float)};
            long result = op_run_sync(s, &op);
            if (result != (long)NVME_ALIGN) {
                if (result < 0)
                    ZERO_LOG_ERROR("nvme store: read of %u bytes at offset %llu of %s (%s, group %d) failed: %s",
                                   NVME_ALIGN, (unsigned long long)op.offset, s->path, field_name[f], slot->group,
                                   strerror((int)-result));
                else
                    ZERO_LOG_ERROR("nvme store: short read: %ld of %u bytes at offset %llu of %s (%s, group %d)",
                                   result, NVME_ALIGN, (unsigned long long)op.offset, s->path, field_name[f],
                                   slot->group);
                return ZERO_ERR_IO;
            }
            atomic_fetch_add(&s->bytes_read, (uint64_t)NVME_ALIGN);
            /* Copy in every element of the block outside [begin, end). */
            float *dst = (float *)(void *)slot->buf[f] + (block - slot->ext_begin);
            const float *src = (const float *)(const void *)s->edge;
            for (size_t i = 0; i < NVME_ALIGN_ELEMS; i++) {
                size_t element = block + i;
                if (element < slot->begin || element >= end)
                    dst[i] = src[i];
            }
        }
    }
    return ZERO_OK;
}

static zero_status_t nvme_release(zero_store_t *store, zero_store_range_t *range, int dirty)
{
    nvme_store_t *s = (nvme_store_t *)store;
    nvme_slot_t *slot = range->impl;
    zero_status_t status = ZERO_OK;
    range->impl = NULL;
    if (slot == NULL)
        return ZERO_OK;   /* only adopted fields: nothing staged */
    pthread_mutex_lock(&s->mutex);
    if (!dirty) {
        slot->state = SLOT_READY;   /* a failed write's data stays here (write_failed) until a dirty release */
        goto out;
    }
    if ((status = check_stalled_locked(s, "a dirty release")) != ZERO_OK) {
        slot->write_failed = 1;   /* not written: the buffer keeps the only copy */
        slot->state = SLOT_READY;
        goto out;
    }
    /* Every other buffered copy of these elements is now stale. */
    for (int i = 0; i < s->num_slots; i++) {
        nvme_slot_t *o = &s->slots[i];
        if (o == slot || o->state == SLOT_FREE || o->state == SLOT_HELD || o->group != slot->group ||
            o->begin >= slot->begin + slot->count || slot->begin >= o->begin + o->count)
            continue;
        if ((status = wait_slot_locked(s, o)) != ZERO_OK) {
            slot->write_failed = 1;
            slot->state = SLOT_READY;
            goto out;
        }
        settle_locked(o);
        if (o->write_failed)
            copy_overlap(o, slot);   /* the only copy of its range: kept, and kept current */
        else
            o->state = SLOT_FREE;
    }
    if ((status = merge_edges_locked(s, slot)) != ZERO_OK) {
        slot->write_failed = 1;   /* nothing written: the buffer stays the only copy */
        slot->state = SLOT_READY;
        goto out;
    }
    if ((status = wait_writes_over_locked(s, slot, slot->group, slot->ext_begin, slot->ext_end)) != ZERO_OK) {
        slot->write_failed = 1;
        slot->state = SLOT_READY;
        goto out;
    }
    slot->write_failed = 0;
    issue_locked(s, slot, 1);
    status = take_async_error_locked(s);
out:
    pthread_mutex_unlock(&s->mutex);
    return status;
}

/* Waits for every write in flight; returns the first error not yet reported. */
static zero_status_t nvme_flush(zero_store_t *store)
{
    nvme_store_t *s = (nvme_store_t *)store;
    zero_status_t status;
    pthread_mutex_lock(&s->mutex);
    status = check_stalled_locked(s, "flush");
    for (int i = 0; i < s->num_slots && status == ZERO_OK; i++) {
        status = wait_slot_locked(s, &s->slots[i]);
        settle_locked(&s->slots[i]);
    }
    if (status == ZERO_OK)
        status = take_async_error_locked(s);
    pthread_mutex_unlock(&s->mutex);
    return status;
}

static void nvme_bytes(const zero_store_t *store, zero_store_bytes_t *bytes_p)
{
    const nvme_store_t *s = (const nvme_store_t *)store;
    bytes_p->resident = (uint64_t)s->num_slots * (uint64_t)s->slot_fields * s->slot_field_bytes;
    bytes_p->elsewhere = s->file_bytes;
}

static void stop_io(nvme_store_t *s)
{
    pthread_mutex_lock(&s->mutex);
    s->stopping = 1;
    pthread_cond_broadcast(&s->queue_cond);
#if HAVE_LIBURING
    if (s->use_uring) {
        uint64_t one = 1;
        if (write(s->event_fd, &one, sizeof(one)) < 0) {
            /* already signalled */
        }
    }
#endif
    pthread_mutex_unlock(&s->mutex);
    for (int i = 0; i < s->num_threads; i++)
        pthread_join(s->threads[i], NULL);
    s->num_threads = 0;
}

static void nvme_destroy(zero_store_t *store)
{
    nvme_store_t *s = (nvme_store_t *)store;
    stop_io(s);   /* lets every queued request finish first */
#if HAVE_LIBURING
    if (s->ring_ready)
        io_uring_queue_exit(&s->ring);
    if (s->event_fd >= 0)
        close(s->event_fd);
#endif
    if (s->fd >= 0)
        close(s->fd);
    if (s->slots != NULL) {
        for (int i = 0; i < s->num_slots; i++) {
            zero_mem_free(s->slots[i].raw);
            zero_free(s->slots[i].ops);
        }
        zero_free(s->slots);
    }
    zero_mem_free(s->edge_raw);
    zero_free(s->threads);
    zero_free(s->path);
    pthread_cond_destroy(&s->queue_cond);
    pthread_cond_destroy(&s->done_cond);
    pthread_mutex_destroy(&s->mutex);
    zero_free(s);
}

static const zero_store_ops_t nvme_ops = {
    .name = "nvme",
    .acquire = nvme_acquire,
    .release = nvme_release,
    .prefetch = nvme_prefetch,
    .flush = nvme_flush,
    .bytes = nvme_bytes,
    .destroy = nvme_destroy,
};

int zero_store_is_nvme(const zero_store_t *store) { return store != NULL && store->ops == &nvme_ops; }

void zero_store_nvme_stats(const zero_store_t *store, zero_store_nvme_stats_t *stats_p)
{
    const nvme_store_t *s = (const nvme_store_t *)store;
    memset(stats_p, 0, sizeof(*stats_p));
    stats_p->bytes_read = atomic_load(&((nvme_store_t *)s)->bytes_read);
    stats_p->bytes_written = atomic_load(&((nvme_store_t *)s)->bytes_written);
    stats_p->acquires = s->acquires;
    stats_p->acquire_hits = s->acquire_hits;
    stats_p->wait_seconds = s->wait_seconds;
    stats_p->io = s->use_uring ? "io_uring" : "threads";
    stats_p->direct = s->direct;
}

/* ---- create ---- */

static zero_status_t open_file(nvme_store_t *s)
{
    static _Atomic unsigned sequence;
    zero_status_t status = ZERO_OK;
    struct stat st;
    int flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC;
    int rc;

    ZERO_ERRNO_CHECK_GOTO(stat(s->params.dir, &st) == 0, status, out, "nvme store: nvme_path %s", s->params.dir);
    ZERO_REQUIRE_GOTO(S_ISDIR(st.st_mode), ZERO_ERR_IO, status, out, "nvme store: nvme_path %s is not a directory",
                      s->params.dir);
    s->path = zero_asprintf("%s/zero-optstate-rank%05d-pid%ld-%u.bin", s->params.dir, s->params.rank, (long)getpid(),
                            atomic_fetch_add(&sequence, 1u));
    ZERO_REQUIRE_GOTO(s->path != NULL, ZERO_ERR_NO_MEMORY, status, out, "nvme store: out of memory");
    s->fd = -1;
    if (s->params.direct) {
        s->fd = open(s->path, flags | O_DIRECT, 0600);
        if (s->fd >= 0)
            s->direct = 1;
        else if (errno == EINVAL)
            ZERO_LOG_WARN("nvme store: %s does not allow O_DIRECT (tmpfs?): %s goes through the page cache",
                          s->params.dir, s->params.contents);
        else
            ZERO_ERRNO_CHECK_GOTO(0, status, out, "nvme store: create %s", s->path);
    }
    if (s->fd < 0) {
        s->fd = open(s->path, flags, 0600);
        ZERO_ERRNO_CHECK_GOTO(s->fd >= 0, status, out, "nvme store: create %s", s->path);
    }
    /* Gone from the directory at once: whatever ends the process, no file is left behind. */
    ZERO_ERRNO_CHECK_GOTO(unlink(s->path) == 0, status, out, "nvme store: unlink %s", s->path);
    /* Reserve every block now: a full disk fails here, not in a step. */
    rc = posix_fallocate(s->fd, 0, (off_t)s->file_bytes);
    if (rc != 0) {
        ZERO_LOG_ERROR("nvme store: reserving %llu bytes for %s in %s (%s) failed: %s",
                       (unsigned long long)s->file_bytes, s->params.contents, s->params.dir, s->path, strerror(rc));
        status = rc == ENOMEM ? ZERO_ERR_NO_MEMORY : ZERO_ERR_IO;
    }
out:
    return status;
}

static zero_status_t start_io(nvme_store_t *s)
{
    zero_status_t status = ZERO_OK;
    int rc;
    s->use_uring = 0;
#if HAVE_LIBURING
    s->event_fd = -1;
    if (s->params.io == ZERO_STORE_NVME_IO_URING) {
        /* entries: the requests in flight plus the wake-up poll */
        rc = io_uring_queue_init((unsigned)s->params.queue_depth + 1, &s->ring, 0);
        if (rc == 0) {
            s->ring_ready = 1;
            s->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            ZERO_ERRNO_CHECK_GOTO(s->event_fd >= 0, status, out, "nvme store: eventfd for %s", s->path);
            s->use_uring = 1;
        } else {
            ZERO_LOG_WARN("nvme store: io_uring is unavailable (%s; seccomp or an old kernel?): using %d "
                          "pread/pwrite threads", strerror(-rc), s->params.io_threads);
        }
    }
#else
    if (s->params.io == ZERO_STORE_NVME_IO_URING)
        ZERO_LOG_WARN("nvme store: libzero was built without liburing: using %d pread/pwrite threads",
                      s->params.io_threads);
#endif
    s->threads = zero_calloc((size_t)s->params.io_threads, sizeof(*s->threads));
    ZERO_REQUIRE_GOTO(s->threads != NULL, ZERO_ERR_NO_MEMORY, status, out, "nvme store: out of memory");
    for (int i = 0; i < (s->use_uring ? 1 : s->params.io_threads); i++) {
#if HAVE_LIBURING
        rc = pthread_create(&s->threads[i], NULL, s->use_uring ? uring_main : threads_main, s);
#else
        rc = pthread_create(&s->threads[i], NULL, threads_main, s);
#endif
        if (rc != 0) {
            ZERO_LOG_ERROR("nvme store: starting I/O thread %d: %s", i, strerror(rc));
            status = ZERO_ERR_NO_MEMORY;
            goto out;
        }
        s->num_threads++;
    }
out:
    return status;
}

zero_status_t zero_store_nvme_create(const zero_store_desc_t *desc, const zero_store_nvme_params_t *params,
                                     zero_store_t **store_p)
{
    zero_status_t status = ZERO_OK;
    nvme_store_t *s;
    uint64_t offset = 0;

    if (desc->num_groups < 1 || desc->num_groups > ZERO_DTYPE_COUNT || desc->num_states < 0 ||
        desc->num_states > ZERO_STORE_NUM_FIELDS - 1) {
        ZERO_LOG_ERROR("nvme store: %d groups and %d optimizer states are outside 1..%d and 0..%d", desc->num_groups,
                       desc->num_states, ZERO_DTYPE_COUNT, ZERO_STORE_NUM_FIELDS - 1);
        return ZERO_ERR_INVALID_ARG;
    }
    if (desc->kind != ZERO_MEM_HOST) {
        ZERO_LOG_ERROR("nvme store: only host-memory state is staged through NVMe (the descriptor asks for %s "
                       "memory; device ranks need the CPU offload path)", zero_mem_kind_string(desc->kind));
        return ZERO_ERR_UNSUPPORTED;
    }
    if (params->dir == NULL || params->dir[0] == '\0' || params->buffer_count < 1 || params->max_range < 1 ||
        params->block_size < 1 || params->queue_depth < 1 || params->io_threads < 1 || !(params->timeout_s > 0) ||
        params->max_range > (SIZE_MAX / sizeof(float)) / 2) {
        ZERO_LOG_ERROR("nvme store: bad parameters (dir %s, buffer_count %d, max_range %zu, block_size %zu, "
                       "queue_depth %d, io_threads %d)", params->dir ? params->dir : "(none)", params->buffer_count,
                       params->max_range, params->block_size, params->queue_depth, params->io_threads);
        return ZERO_ERR_INVALID_ARG;
    }
    s = zero_calloc(1, sizeof(*s));
    if (s == NULL) {
        ZERO_LOG_ERROR("nvme store: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    pthread_mutex_init(&s->mutex, NULL);
    {
        /* timed waits on the monotonic clock (a clock change must not stretch a timeout) */
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&s->done_cond, &attr);
        pthread_condattr_destroy(&attr);
    }
    pthread_cond_init(&s->queue_cond, NULL);
    s->fd = -1;
#if HAVE_LIBURING
    s->event_fd = -1;
#endif
    s->base.ops = &nvme_ops;
    s->base.desc = *desc;
    s->params = *params;
    s->params.block_size = round_up(params->block_size, NVME_ALIGN);
    s->params.max_range = round_up(params->max_range, NVME_ALIGN_ELEMS);
    s->base.max_range = params->max_range;

    for (int g = 0; g < desc->num_groups; g++) {
        size_t region = round_up(desc->length[g] * sizeof(float), NVME_ALIGN);
        if (region == 0)
            region = NVME_ALIGN;
        s->adopted[g] = desc->adopt_master[g];
        for (int f = 0; f <= desc->num_states; f++) {
            if (f == ZERO_STORE_MASTER && s->adopted[g] != NULL)
                continue;
            s->file_fields[g] |= ZERO_STORE_FIELD_BIT(f);
            s->region[g][f] = offset;
            offset += region;
        }
    }
    s->file_bytes = offset;
    if (offset > 0)
        ZERO_CHECK_GOTO(open_file(s), status, fail);

    /* The buffers: each field's part holds max_range elements plus the block a
     * range not starting on a block spills into. Populated now, not in a step. */
    s->num_slots = params->buffer_count;
    s->slot_field_bytes = (s->params.max_range + NVME_ALIGN_ELEMS) * sizeof(float);
    /* only the fields this store has (the parameter file's store has the
     * master field alone); the others' pointers stay NULL and are never used:
     * every range's fields are masked by file_fields */
    s->slot_fields = desc->num_states + 1;
    s->ops_per_slot = (size_t)s->slot_fields * ((s->slot_field_bytes + s->params.block_size - 1) / s->params.block_size);
    s->slots = zero_calloc((size_t)s->num_slots, sizeof(*s->slots));
    ZERO_REQUIRE_GOTO(s->slots != NULL, ZERO_ERR_NO_MEMORY, status, fail, "nvme store: out of memory");
    ZERO_CHECK_GOTO(zero_mem_alloc(ZERO_MEM_HOST, 2 * NVME_ALIGN, "nvme store edge block", (void **)&s->edge_raw),
                    status, fail);
    s->edge = (char *)round_up((size_t)(uintptr_t)s->edge_raw, NVME_ALIGN);
    for (int i = 0; i < s->num_slots && offset > 0; i++) {
        nvme_slot_t *slot = &s->slots[i];
        char *raw;
        size_t bytes = (size_t)s->slot_fields * s->slot_field_bytes + NVME_ALIGN;
        slot->ops = zero_calloc(s->ops_per_slot, sizeof(*slot->ops));
        ZERO_REQUIRE_GOTO(slot->ops != NULL, ZERO_ERR_NO_MEMORY, status, fail, "nvme store: out of memory");
        ZERO_CHECK_GOTO(zero_mem_alloc(ZERO_MEM_HOST, bytes, "nvme store buffer", (void **)&raw), status, fail);
        zero_mem_populate(ZERO_MEM_HOST, raw, bytes);
        slot->raw = raw;
        for (int f = 0; f < s->slot_fields; f++)
            slot->buf[f] = (char *)round_up((size_t)(uintptr_t)raw, NVME_ALIGN) + (size_t)f * s->slot_field_bytes;
        slot->state = SLOT_FREE;
    }
    ZERO_CHECK_GOTO(start_io(s), status, fail);
    ZERO_LOG_INFO("nvme store: %llu bytes of optimizer state in %s (%s, %s), %d buffers of %zu elements per field",
                  (unsigned long long)s->file_bytes, s->params.dir, s->direct ? "O_DIRECT" : "page cache",
                  s->use_uring ? "io_uring" : "pread/pwrite threads", s->num_slots, s->params.max_range);
    *store_p = &s->base;
    return ZERO_OK;
fail:
    nvme_destroy(&s->base);
    return status;
}
