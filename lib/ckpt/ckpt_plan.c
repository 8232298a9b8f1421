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
 * Where the file system takes O_DIRECT, reads bypass the page cache: each op
 * (at most PLAN_DIRECT_OP_BYTES) is read, widened to the device's alignment,
 * into the worker's aligned buffer, and each chunk is verified there and
 * copied to its destination. Why: a buffered read first fills page-cache pages,
 * and on the virtual machines this runs on, memory the guest freed earlier
 * (the cache bench/ckpt and a restarted job drop) is handed back to the host
 * and costs as much to take again as the read itself. The safe load already
 * pays that once for its held buffer; O_DIRECT spares it the second time. The copy out
 * of the buffer replaces the kernel's copy out of the cache, so the CPU cost
 * is the same. Files without O_DIRECT, and ZERO_CKPT_BUFFERED_READS=1, take
 * the buffered path.
 *
 * Hold mode (the safe load, ckpt_plan_set_hold): nothing is written to the
 * destinations while reading. Each op (up to PLAN_OP_BYTES) is read, with
 * O_DIRECT where the file takes it, into its own aligned slot of one held
 * buffer, and its chunks are verified there; ckpt_plan_commit copies them into
 * place once every rank agreed. Each byte is copied once, as in the other
 * modes, and the held buffer is the load's only large fresh memory.
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
#include <stdlib.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Bytes one preadv reads at most: large enough for the disk to stream, small
 * enough that the workers share a shard evenly. */
#define PLAN_OP_BYTES ((size_t)8 << 20)
/* Bytes one O_DIRECT read covers at most (the worker's buffer: a 2 MiB page
 * and the alignment either side; a larger chunk is one read of its own). */
#define PLAN_DIRECT_OP_BYTES ((size_t)2 << 20)
/* Chunks in one read at most (two iovecs each, within IOV_MAX). */
#define PLAN_OP_CHUNKS 256

typedef struct plan_file {
    char *path;
    int fd;
    int dfd;                  /* the same file opened O_DIRECT, or -1 (buffered reads) */
    atomic_int direct_failed; /* an O_DIRECT read was refused (EINVAL): buffered from then on */
    size_t dio_align;         /* offsets, lengths and addresses of O_DIRECT reads */
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

/* hold: bytes read outside the plan (a dataset that is not chunked), copied to dst on commit */
typedef struct plan_held_extra {
    void *dst, *bytes_held;
    size_t bytes;
} plan_held_extra_t;

typedef enum { OP_OK = 0, OP_READ, OP_SHORT, OP_CHECKSUM, OP_NO_MEMORY } op_result_t;

typedef struct plan_op {
    size_t first, count;      /* chunks */
    uint64_t offset;
    size_t bytes, staged_bytes;
    size_t held_at;           /* hold: where the op's read lands in the held buffer */
    size_t data_at;           /* hold: where its first chunk's bytes lie there (after the read) */
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
    size_t max_direct, direct_align;   /* O_DIRECT buffer bytes a worker needs, and their alignment */
    atomic_size_t next_op;
    /* hold mode (ckpt_plan_set_hold): the chunks as read, kept until ckpt_plan_commit */
    int hold;
    uint8_t *held;       /* aligned to direct_align inside held_mem, for O_DIRECT reads of any size */
    uint8_t *held_mem;
    size_t held_bytes;
    plan_held_extra_t *extras;
    size_t num_extras, cap_extras;
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
        if (p->files[i].dfd >= 0)
            close(p->files[i].dfd);
        zero_free(p->files[i].path);
    }
    for (int i = 0; i < p->num_datasets; i++)
        zero_free(p->datasets[i]);
    ckpt_plan_clear(p);
    zero_free(p->files);
    zero_free(p->datasets);
    zero_free(p->chunks);
    zero_free(p->copies);
    zero_free(p->ops);
    zero_free(p->extras);
    zero_free(p);
}

void ckpt_plan_set_hold(ckpt_plan_t *p, int hold)
{
    p->hold = hold;
}

int ckpt_plan_holding(const ckpt_plan_t *p)
{
    return p->hold;
}

void *ckpt_plan_hold_extra(ckpt_plan_t *p, void *dst, size_t bytes, ckpt_err_t *err)
{
    void *held = NULL;
    if (grow((void **)&p->extras, &p->cap_extras, p->num_extras + 1, sizeof(*p->extras)) ||
        (held = zero_malloc(bytes > 0 ? bytes : 1)) == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "checkpoint load: out of memory for %zu bytes held until the ranks agree",
                  bytes);
        return NULL;
    }
    p->extras[p->num_extras++] = (plan_held_extra_t){dst, held, bytes};
    return held;
}

/* Opens @p f a second time with O_DIRECT where its file system takes it (else
 * dfd = -1): the alignment from statx (STATX_DIOALIGN, Linux 6.1), else 4096,
 * a multiple of every common logical block size. */
static void open_direct(plan_file_t *f)
{
    size_t align = 4096;
    const char *env = getenv("ZERO_CKPT_BUFFERED_READS");
    f->dfd = -1;
    atomic_init(&f->direct_failed, 0);
    if (env != NULL && strcmp(env, "0") != 0)
        return;
#ifdef STATX_DIOALIGN
    {
        struct statx sx;
        if (statx(f->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
            if (sx.stx_dio_offset_align == 0)
                return;   /* the file system has no O_DIRECT for this file */
            align = sx.stx_dio_offset_align > sx.stx_dio_mem_align ? sx.stx_dio_offset_align : sx.stx_dio_mem_align;
        }
    }
#endif
    if (align == 0 || (align & (align - 1)) != 0 || align > ((size_t)1 << 16))
        return;
    f->dfd = open(f->path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    f->dio_align = align;
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
    open_direct(f);
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

/* Bytes an O_DIRECT read of [offset, offset + bytes) covers, widened to the
 * file's alignment on both sides; *start_p: where it starts. */
static size_t direct_span(const plan_file_t *f, uint64_t offset, size_t bytes, uint64_t *start_p)
{
    uint64_t a = f->dio_align, start = offset & ~(a - 1), end = (offset + bytes + a - 1) & ~(a - 1);
    if (start_p != NULL)
        *start_p = start;
    return (size_t)(end - start);
}

/* Groups the chunks into reads: back to back in one file, up to PLAN_OP_BYTES
 * (PLAN_DIRECT_OP_BYTES with O_DIRECT). */
static zero_status_t make_ops(ckpt_plan_t *p, ckpt_err_t *err)
{
    size_t cap = 0;
    p->num_ops = 0;
    p->max_staged = 0;
    p->max_direct = 0;
    p->direct_align = 1;
    for (size_t i = 0; i < p->num_chunks; i++) {
        const plan_chunk_t *c = &p->chunks[i];
        const plan_file_t *f = &p->files[c->file];
        size_t stored = c->bytes + (c->checksum ? 4 : 0);
        size_t limit = f->dfd >= 0 && !p->hold ? PLAN_DIRECT_OP_BYTES : PLAN_OP_BYTES;
        plan_op_t *op = p->num_ops > 0 ? &p->ops[p->num_ops - 1] : NULL;
        if (op == NULL || p->chunks[op->first].file != c->file || op->offset + op->bytes != c->offset ||
            op->bytes + stored > limit || op->count >= PLAN_OP_CHUNKS) {
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
        if (f->dfd >= 0) {
            size_t span = direct_span(f, op->offset, op->bytes, NULL);
            if (span > p->max_direct)
                p->max_direct = span;
            if (f->dio_align > p->direct_align)
                p->direct_align = f->dio_align;
        }
    }
    if (p->hold) {
        /* each op's read gets its own slot, aligned for O_DIRECT and widened to it */
        size_t at = 0, align = p->direct_align > 4096 ? p->direct_align : 4096;
        for (size_t i = 0; i < p->num_ops; i++) {
            plan_op_t *op = &p->ops[i];
            const plan_file_t *f = &p->files[p->chunks[op->first].file];
            uint64_t start = op->offset;
            size_t span = f->dfd >= 0 ? direct_span(f, op->offset, op->bytes, &start) : op->bytes;
            op->held_at = at;
            op->data_at = at + (size_t)(op->offset - start);
            at += span + align - 1;
            at &= ~(align - 1);
        }
        p->held_bytes = at;
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

/* Checks each chunk of @p op against its fletcher32 (when @p verify) and copies
 * it to its destinations (when @p copy); @p data holds the op's bytes as stored
 * in the file. A mismatch is recorded in @p op and stops it before any copy of
 * that chunk. */
static void chunks_check_copy(ckpt_plan_t *p, plan_op_t *op, const uint8_t *data, int verify, int copy)
{
    for (size_t i = 0; i < op->count; i++) {
        plan_chunk_t *c = &p->chunks[op->first + i];
        const uint8_t *bytes = data + (size_t)(c->offset - op->offset);
        if (verify && c->checksum && !ckpt_chunk_checksum_ok(bytes, c->bytes, bytes + c->bytes)) {
            op->result = OP_CHECKSUM;
            op->bad_chunk = op->first + i;
            return;
        }
        if (!copy)
            continue;
        if (c->direct != NULL)
            memcpy(c->direct, bytes, c->bytes);
        for (size_t k = 0; k < c->num_copies; k++) {
            const plan_copy_t *cp = &p->copies[c->first_copy + k];
            memcpy(cp->dst, bytes + cp->within, cp->bytes);
        }
    }
}

/* Reads @p op with O_DIRECT into @p buf (aligned, the op's direct_span
 * bytes); *data_p: where the op's first byte landed (NULL: the read failed,
 * recorded in @p op). 0, or -1 when the file refused the read (EINVAL: the
 * caller reads it buffered). */
static int read_op_direct(ckpt_plan_t *p, plan_op_t *op, uint8_t *buf, const uint8_t **data_p)
{
    plan_file_t *f = &p->files[p->chunks[op->first].file];
    uint64_t start;
    size_t span = direct_span(f, op->offset, op->bytes, &start), need = (size_t)(op->offset - start) + op->bytes;
    size_t got = 0;

    *data_p = NULL;
    while (got < need) {
        ssize_t n = pread(f->dfd, buf + got, span - got, (off_t)(start + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EINVAL) {
            atomic_store(&f->direct_failed, 1);
            return -1;
        }
        if (n <= 0) {
            op->result = n == 0 ? OP_SHORT : OP_READ;
            op->err_no = n == 0 ? 0 : errno;
            op->bad_chunk = op->first;
            return 0;
        }
        got += (size_t)n;
        if (got < need && got % f->dio_align != 0)
            break;   /* a short read off the alignment: the file ended */
    }
    if (got < need) {
        op->result = OP_SHORT;
        op->bad_chunk = op->first;
        return 0;
    }
    *data_p = buf + (size_t)(op->offset - start);
    return 0;
}

/* Reads @p op with O_DIRECT into @p buf (aligned, p->max_direct bytes), then
 * verifies each chunk there and copies it out. 0, or -1 when the file refused
 * the read (EINVAL: the caller reads it buffered). */
static int run_op_direct(ckpt_plan_t *p, plan_op_t *op, uint8_t *buf)
{
    const uint8_t *data;
    if (read_op_direct(p, op, buf, &data) != 0)
        return -1;
    if (data != NULL)
        chunks_check_copy(p, op, data, 1, 1);
    return 0;
}

/* Hold mode: reads @p op into its slot of the held buffer (O_DIRECT where the
 * file takes it, else buffered) and verifies its chunks there; the copies to
 * the destinations wait for ckpt_plan_commit. */
static void run_op_hold(ckpt_plan_t *p, plan_op_t *op)
{
    plan_file_t *f = &p->files[p->chunks[op->first].file];
    const uint8_t *data = NULL;
    struct iovec iov;

    if (f->dfd >= 0 && !atomic_load(&f->direct_failed) && read_op_direct(p, op, p->held + op->held_at, &data) == 0) {
        if (data != NULL)
            op->data_at = (size_t)(data - p->held);
        else
            return;
    } else {
        /* the slot is at least op->bytes past data_at (make_ops) */
        iov = (struct iovec){p->held + op->data_at, op->bytes};
        if (preadv_all(f->fd, &iov, 1, op->offset) != 0) {
            op->result = errno == 0 ? OP_SHORT : OP_READ;
            op->err_no = errno;
            op->bad_chunk = op->first;
            return;
        }
    }
    chunks_check_copy(p, op, p->held + op->data_at, 1, 0);
}

static void *worker_main(void *arg)
{
    ckpt_plan_t *p = arg;
    uint8_t *staging = NULL, *direct_mem = NULL, *direct = NULL;
    size_t i;
    while ((i = atomic_fetch_add(&p->next_op, 1)) < p->num_ops) {
        plan_op_t *op = &p->ops[i];
        const plan_file_t *f = &p->files[p->chunks[op->first].file];
        if (p->hold) {
            run_op_hold(p, op);
            continue;
        }
        if (f->dfd >= 0 && !atomic_load(&f->direct_failed)) {
            if (direct == NULL) {
                if (zero_mem_alloc(ZERO_MEM_HOST, p->max_direct + p->direct_align, "ckpt direct read buffer",
                                   (void **)&direct_mem) != ZERO_OK) {
                    op->result = OP_NO_MEMORY;
                    op->bad_chunk = op->first;
                    continue;
                }
                direct = (uint8_t *)(((uintptr_t)direct_mem + p->direct_align - 1) & ~(uintptr_t)(p->direct_align - 1));
            }
            if (run_op_direct(p, op, direct) == 0)
                continue;
        }
        if (op->staged_bytes > 0 && staging == NULL &&
            zero_mem_alloc(ZERO_MEM_HOST, p->max_staged, "ckpt read staging", (void **)&staging) != ZERO_OK) {
            op->result = OP_NO_MEMORY;
            op->bad_chunk = op->first;
            continue;
        }
        run_op(p, op, staging);
    }
    zero_mem_free(staging);
    zero_mem_free(direct_mem);
    return NULL;
}

/* Runs @p fn on @p threads threads (the calling thread is one of them; a
 * thread that cannot start is not needed: the others take its ops). */
static void run_workers(ckpt_plan_t *p, int threads, void *(*fn)(void *))
{
    pthread_t tid[CKPT_PLAN_MAX_THREADS];
    int started = 0;
    if (threads > CKPT_PLAN_MAX_THREADS)
        threads = CKPT_PLAN_MAX_THREADS;
    if ((size_t)threads > p->num_ops)
        threads = (int)p->num_ops;
    atomic_store(&p->next_op, 0);
    for (int t = 1; t < threads; t++)
        if (pthread_create(&tid[started], NULL, fn, p) == 0)
            started++;
    fn(p);
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
}

/*
 * The held buffer is fresh memory, and on the virtual machines this runs on
 * the first access to each 4 KiB page of it traps into the hypervisor (~15 us
 * a page). zero_mem_alloc maps it with 2 MiB pages where the kernel offers
 * them (one trap, not 512), and this thread maps the pages ahead of the
 * readers (MADV_POPULATE_WRITE writes no data, so it can race them safely)
 * while they wait on the disk.
 */
typedef struct populate_job {
    void *ptr;
    size_t bytes;
} populate_job_t;

static void *populate_main(void *arg)
{
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
    const populate_job_t *job = arg;
    const uintptr_t page = 4096, step = (uintptr_t)4 << 20;
    uintptr_t begin = ((uintptr_t)job->ptr + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)job->ptr + job->bytes) & ~(page - 1);
    for (uintptr_t at = begin; at < end; at += step)
        if (madvise((void *)at, end - at < step ? end - at : step, MADV_POPULATE_WRITE) != 0)
            return NULL;   /* before Linux 5.14: the readers fault the pages in */
    return NULL;
}

static void *commit_main(void *arg)
{
    ckpt_plan_t *p = arg;
    size_t i;
    while ((i = atomic_fetch_add(&p->next_op, 1)) < p->num_ops)
        chunks_check_copy(p, &p->ops[i], p->held + p->ops[i].data_at, 0, 1);
    return NULL;
}

void ckpt_plan_commit(ckpt_plan_t *p, int threads)
{
    if (p->held != NULL)
        run_workers(p, threads, commit_main);
    for (size_t i = 0; i < p->num_extras; i++)
        memcpy(p->extras[i].dst, p->extras[i].bytes_held, p->extras[i].bytes);
    ckpt_plan_clear(p);
}

zero_status_t ckpt_plan_run(ckpt_plan_t *p, int threads, ckpt_err_t *err)
{
    zero_status_t status;
    populate_job_t populate = {0};
    pthread_t populate_tid;
    int populating = 0;

    zero_mem_free(p->held_mem);   /* a second run in hold mode holds only its own chunks */
    p->held_mem = p->held = NULL;
    if ((status = make_ops(p, err)) != ZERO_OK)
        return status;
    if (p->num_ops == 0)
        return ZERO_OK;
    if (p->hold) {
        /* below 2 MiB zero_mem_alloc aligns to 64 bytes only: an O_DIRECT read there would fail */
        if (zero_mem_alloc(ZERO_MEM_HOST, p->held_bytes + p->direct_align, "ckpt load held chunks",
                           (void **)&p->held_mem) != ZERO_OK) {
            ckpt_fail(err, ZERO_ERR_NO_MEMORY, "checkpoint load: out of memory for the %zu bytes held until every "
                      "rank has read and verified its part", p->held_bytes);
            return ZERO_ERR_NO_MEMORY;
        }
        p->held = (uint8_t *)(((uintptr_t)p->held_mem + p->direct_align - 1) & ~(uintptr_t)(p->direct_align - 1));
        populate = (populate_job_t){p->held, p->held_bytes};
        populating = pthread_create(&populate_tid, NULL, populate_main, &populate) == 0;
    }
    run_workers(p, threads, worker_main);
    if (populating)
        pthread_join(populate_tid, NULL);

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
                      p->max_staged > p->max_direct ? p->max_staged : p->max_direct + p->direct_align);
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
    zero_mem_free(p->held_mem);
    p->held_mem = p->held = NULL;
    p->held_bytes = 0;
    for (size_t i = 0; i < p->num_extras; i++)
        zero_free(p->extras[i].bytes_held);
    p->num_extras = 0;
}
