/*
 * Batched shard reads for zero_ckpt_load: HDF5 says where each chunk lies
 * (planning, on the calling thread: the library is not thread-safe), then a
 * few threads read the chunks with preadv straight into their destinations and
 * verify the fletcher32 of each, so that disk reads, copies and checksums of
 * different ranges overlap.
 *
 * A chunk whose every element goes to one place ("direct") is read in place,
 * its 4-byte checksum into the chunk's record; runs of direct chunks that lie
 * back to back in the file become one preadv of up to PLAN_OP_BYTES. A chunk
 * needed only in part, in several places, or only checked ("staged") is read
 * into the worker's buffer, verified, and the wanted parts copied out.
 *
 * Errors are recorded per read and reported (logged) by the calling thread
 * after every worker stopped, the first in plan order, so that the message
 * does not depend on timing.
 */
#define ZERO_LOG_MODULE "ckpt"
#include "ckpt/ckpt_internal.h"

#include "util/alloc.h"
#include "util/checks.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Bytes one preadv reads at most: large enough for the disk to stream, small
 * enough that the workers share a shard evenly. */
#define PLAN_OP_BYTES ((size_t)8 << 20)
/* Chunks in one read at most (two iovecs each, within IOV_MAX). */
#define PLAN_OP_CHUNKS 256

typedef struct plan_file {
    char *path;
    int fd;
    uint64_t size;
} plan_file_t;

typedef struct plan_copy {
    void *dst;
    size_t within, bytes;     /* byte offset in the chunk, and length */
} plan_copy_t;

typedef struct plan_chunk {
    int file, dataset;
    size_t index;             /* chunk number within its dataset */
    uint64_t offset;          /* in the file */
    size_t bytes;             /* data bytes (the checksum follows when checksum) */
    int checksum;
    void *direct;             /* the whole chunk goes here; NULL: staged */
    size_t first_copy, num_copies;   /* staged: parts copied out (none: verify only) */
    uint8_t tail[4];          /* the stored checksum of a direct chunk */
} plan_chunk_t;

typedef enum { OP_OK = 0, OP_READ, OP_SHORT, OP_CHECKSUM, OP_NO_MEMORY } op_result_t;

typedef struct plan_op {
    size_t first, count;      /* chunks */
    uint64_t offset;
    size_t bytes, staged_bytes;
    op_result_t result;
    size_t bad_chunk;         /* which chunk failed */
    int err_no;
} plan_op_t;

struct ckpt_plan {
    plan_file_t *files;
    int num_files, cap_files;
    char **datasets;          /* message prefixes ("<dir>/<file>: dataset ...") */
    int num_datasets, cap_datasets;
    plan_chunk_t *chunks;
    size_t num_chunks, cap_chunks;
    plan_copy_t *copies;
    size_t num_copies, cap_copies;
    /* while running */
    plan_op_t *ops;
    size_t num_ops, max_staged;
    atomic_size_t next_op;
};

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    size_t n;
    void *p;
    if (need <= *cap)
        return 0;
    n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    if ((p = zero_realloc(*arr, n * elem)) == NULL)
        return -1;
    *arr = p;
    *cap = n;
    return 0;
}

ckpt_plan_t *ckpt_plan_create(void)
{
    return zero_calloc(1, sizeof(ckpt_plan_t));
}

void ckpt_plan_destroy(ckpt_plan_t *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->num_files; i++) {
        if (p->files[i].fd >= 0)
            close(p->files[i].fd);
        zero_free(p->files[i].path);
    }
    for (int i = 0; i < p->num_datasets; i++)
        zero_free(p->datasets[i]);
    zero_free(p->files);
    zero_free(p->datasets);
    zero_free(p->chunks);
    zero_free(p->copies);
    zero_free(p->ops);
    zero_free(p);
}

int ckpt_plan_file(ckpt_plan_t *p, const char *path, ckpt_err_t *err)
{
    plan_file_t *f;
    struct stat st;
    size_t cap = (size_t)p->cap_files;

    for (int i = 0; i < p->num_files; i++)
        if (strcmp(p->files[i].path, path) == 0)
            return i;
    if (grow((void **)&p->files, &cap, (size_t)p->num_files + 1, sizeof(*p->files))) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "%s: out of memory planning the read", path);
        return -1;
    }
    p->cap_files = (int)cap;
    f = &p->files[p->num_files];
    if ((f->path = zero_strdup(path)) == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "%s: out of memory planning the read", path);
        return -1;
    }
    if ((f->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(f->fd, &st) != 0) {
        ckpt_fail_errno(err, "cannot open checkpoint file %s", path);
        if (f->fd >= 0)
            close(f->fd);
        zero_free(f->path);
        return -1;
    }
    f->size = (uint64_t)st.st_size;
    (void)posix_fadvise(f->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return p->num_files++;
}

int ckpt_plan_dataset(ckpt_plan_t *p, const char *what, ckpt_err_t *err)
{
    size_t cap = (size_t)p->cap_datasets;
    if (p->num_datasets > 0 && strcmp(p->datasets[p->num_datasets - 1], what) == 0)
        return p->num_datasets - 1;
    if (grow((void **)&p->datasets, &cap, (size_t)p->num_datasets + 1, sizeof(*p->datasets)) ||
        (p->datasets[p->num_datasets] = zero_strdup(what)) == NULL) {
        p->cap_datasets = (int)cap;
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "%s: out of memory planning the read", what);
        return -1;
    }
    p->cap_datasets = (int)cap;
    return p->num_datasets++;
}

static zero_status_t add_copy(ckpt_plan_t *p, plan_chunk_t *c, void *dst, size_t within, size_t bytes,
                              ckpt_err_t *err)
{
    if (c->num_copies > 0) {
        /* the next part of the same chunk, next in the destination too: one copy */
        plan_copy_t *last = &p->copies[c->first_copy + c->num_copies - 1];
        if ((char *)last->dst + last->bytes == (char *)dst && last->within + last->bytes == within) {
            last->bytes += bytes;
            if (c->num_copies == 1 && last->within == 0 && last->bytes == c->bytes) {
                c->direct = last->dst;    /* the parts made up the whole chunk */
                c->num_copies = 0;
                p->num_copies--;
            }
            return ZERO_OK;
        }
    }
    if (grow((void **)&p->copies, &p->cap_copies, p->num_copies + 1, sizeof(*p->copies))) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "%s: out of memory planning the read", p->datasets[c->dataset]);
        return ZERO_ERR_NO_MEMORY;
    }
    if (c->num_copies == 0)
        c->first_copy = p->num_copies;
    p->copies[p->num_copies++] = (plan_copy_t){dst, within, bytes};
    c->num_copies++;
    return ZERO_OK;
}

zero_status_t ckpt_plan_add(ckpt_plan_t *p, const ckpt_plan_chunk_desc_t *d, void *dst, size_t within, size_t bytes,
                            ckpt_err_t *err)
{
    plan_chunk_t *c = p->num_chunks > 0 ? &p->chunks[p->num_chunks - 1] : NULL;
    size_t stored = d->bytes + (d->checksum ? 4 : 0);

    if (d->offset > p->files[d->file].size || stored > p->files[d->file].size - d->offset) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: chunk %zu lies beyond the end of the file (truncated file)",
                  p->datasets[d->dataset], d->index);
        return ZERO_ERR_CHECKPOINT;
    }
    /* the same chunk as the last one (one chunk spans two segments): one read */
    if (c != NULL && c->file == d->file && c->offset == d->offset && c->direct == NULL)
        return dst == NULL ? ZERO_OK : add_copy(p, c, dst, within, bytes, err);
    if (grow((void **)&p->chunks, &p->cap_chunks, p->num_chunks + 1, sizeof(*p->chunks))) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "%s: out of memory planning the read", p->datasets[d->dataset]);
        return ZERO_ERR_NO_MEMORY;
    }
    c = &p->chunks[p->num_chunks++];
    memset(c, 0, sizeof(*c));
    c->file = d->file;
    c->dataset = d->dataset;
    c->index = d->index;
    c->offset = d->offset;
    c->bytes = d->bytes;
    c->checksum = d->checksum;
    if (dst != NULL && within == 0 && bytes == d->bytes)
        c->direct = dst;
    else if (dst != NULL)
        return add_copy(p, c, dst, within, bytes, err);
    return ZERO_OK;
}

/* Groups the chunks into reads: back to back in one file, up to PLAN_OP_BYTES. */
static zero_status_t make_ops(ckpt_plan_t *p, ckpt_err_t *err)
{
    size_t cap = 0;
    p->num_ops = 0;
    p->max_staged = 0;
    for (size_t i = 0; i < p->num_chunks; i++) {
        const plan_chunk_t *c = &p->chunks[i];
        size_t stored = c->bytes + (c->checksum ? 4 : 0);
        plan_op_t *op = p->num_ops > 0 ? &p->ops[p->num_ops - 1] : NULL;
        if (op == NULL || p->chunks[op->first].file != c->file || op->offset + op->bytes != c->offset ||
            op->bytes + stored > PLAN_OP_BYTES || op->count >= PLAN_OP_CHUNKS) {
            if (grow((void **)&p->ops, &cap, p->num_ops + 1, sizeof(*p->ops))) {
                ckpt_fail(err, ZERO_ERR_NO_MEMORY, "checkpoint load: out of memory planning the read");
                return ZERO_ERR_NO_MEMORY;
            }
            op = &p->ops[p->num_ops++];
            memset(op, 0, sizeof(*op));
            op->first = i;
            op->offset = c->offset;
        }
        op->count++;
        op->bytes += stored;
        if (c->direct == NULL) {
            op->staged_bytes += stored;
            if (op->staged_bytes > p->max_staged)
                p->max_staged = op->staged_bytes;
        }
    }
    return ZERO_OK;
}

/* preadv until done; 0, or -1 with errno (0: the file ended early). */
static int preadv_all(int fd, struct iovec *iov, int n, uint64_t offset)
{
    while (n > 0) {
        ssize_t got = preadv(fd, iov, n, (off_t)offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (got == 0)
                errno = 0;
            return -1;
        }
        offset += (uint64_t)got;
        while (n > 0 && (size_t)got >= iov->iov_len) {
            got -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + got;
            iov->iov_len -= (size_t)got;
        }
    }
    return 0;
}

static void run_op(ckpt_plan_t *p, plan_op_t *op, uint8_t *staging)
{
    struct iovec iov[2 * PLAN_OP_CHUNKS];
    int n = 0;
    size_t at = 0;

    for (size_t i = 0; i < op->count; i++) {
        plan_chunk_t *c = &p->chunks[op->first + i];
        if (c->direct != NULL) {
            iov[n++] = (struct iovec){c->direct, c->bytes};
            if (c->checksum)
                iov[n++] = (struct iovec){c->tail, 4};
        } else {
            size_t stored = c->bytes + (c->checksum ? 4 : 0);
            if (n > 0 && iov[n - 1].iov_base == staging + at - iov[n - 1].iov_len)
                iov[n - 1].iov_len += stored;     /* staged chunks back to back: one iovec */
            else
                iov[n++] = (struct iovec){staging + at, stored};
            at += stored;
        }
    }
    if (preadv_all(p->files[p->chunks[op->first].file].fd, iov, n, op->offset) != 0) {
        op->result = errno == 0 ? OP_SHORT : OP_READ;
        op->err_no = errno;
        op->bad_chunk = op->first;
        return;
    }
    at = 0;
    for (size_t i = 0; i < op->count; i++) {
        plan_chunk_t *c = &p->chunks[op->first + i];
        const uint8_t *data = c->direct != NULL ? c->direct : staging + at;
        if (c->checksum && !ckpt_chunk_checksum_ok(data, c->bytes, c->direct != NULL ? c->tail : data + c->bytes)) {
            op->result = OP_CHECKSUM;
            op->bad_chunk = op->first + i;
            return;
        }
        if (c->direct == NULL) {
            for (size_t k = 0; k < c->num_copies; k++) {
                const plan_copy_t *cp = &p->copies[c->first_copy + k];
                memcpy(cp->dst, data + cp->within, cp->bytes);
            }
            at += c->bytes + (c->checksum ? 4 : 0);
        }
    }
}

static void *worker_main(void *arg)
{
    ckpt_plan_t *p = arg;
    uint8_t *staging = NULL;
    size_t i;
    while ((i = atomic_fetch_add(&p->next_op, 1)) < p->num_ops) {
        plan_op_t *op = &p->ops[i];
        if (op->staged_bytes > 0 && staging == NULL &&
            zero_mem_alloc(ZERO_MEM_HOST, p->max_staged, "ckpt read staging", (void **)&staging) != ZERO_OK) {
            op->result = OP_NO_MEMORY;
            op->bad_chunk = op->first;
            continue;
        }
        run_op(p, op, staging);
    }
    zero_mem_free(staging);
    return NULL;
}

zero_status_t ckpt_plan_run(ckpt_plan_t *p, int threads, ckpt_err_t *err)
{
    pthread_t tid[CKPT_PLAN_MAX_THREADS];
    int started = 0;
    zero_status_t status;

    if ((status = make_ops(p, err)) != ZERO_OK)
        return status;
    if (p->num_ops == 0)
        return ZERO_OK;
    if (threads > CKPT_PLAN_MAX_THREADS)
        threads = CKPT_PLAN_MAX_THREADS;
    if ((size_t)threads > p->num_ops)
        threads = (int)p->num_ops;
    atomic_store(&p->next_op, 0);
    /* the calling thread is one of the workers; a thread that cannot start is not needed */
    for (int t = 1; t < threads; t++)
        if (pthread_create(&tid[started], NULL, worker_main, p) == 0)
            started++;
    worker_main(p);
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);

    for (size_t i = 0; i < p->num_ops; i++) {
        const plan_op_t *op = &p->ops[i];
        const plan_chunk_t *c = &p->chunks[op->bad_chunk];
        const char *what = op->result != OP_OK ? p->datasets[c->dataset] : NULL;
        switch (op->result) {
        case OP_OK:
            continue;
        case OP_READ:
            /* a read error that is no errno (0) is still an I/O error, never ZERO_OK */
            status = op->err_no != 0 ? zero_status_from_errno(op->err_no) : ZERO_ERR_IO;
            ckpt_fail(err, status, "%s: cannot read chunk %zu from %s: %s", what, c->index, p->files[c->file].path,
                      strerror(op->err_no));
            return status;
        case OP_SHORT:
            ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: cannot read chunk %zu (the file ended early: corrupt or "
                      "truncated file)", what, c->index);
            return ZERO_ERR_CHECKPOINT;
        case OP_CHECKSUM:
            ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: checksum mismatch in chunk %zu (elements %zu..%zu): the file is "
                      "corrupt", what, c->index, c->index * (c->bytes / sizeof(float)),
                      (c->index + 1) * (c->bytes / sizeof(float)) - 1);
            return ZERO_ERR_CHECKPOINT;
        case OP_NO_MEMORY:
            ckpt_fail(err, ZERO_ERR_NO_MEMORY, "%s: out of memory for %zu bytes of read staging", what,
                      p->max_staged);
            return ZERO_ERR_NO_MEMORY;
        }
    }
    return ZERO_OK;
}

void ckpt_plan_clear(ckpt_plan_t *p)
{
    p->num_chunks = 0;
    p->num_copies = 0;
    p->num_ops = 0;
}
