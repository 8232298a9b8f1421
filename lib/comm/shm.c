/*
 * The intra-node direct path (see shm.h for the protocol).
 */
#define ZERO_LOG_MODULE "comm"
#include "comm/shm.h"
#include "comm/backend.h"
#include "comm/reduce.h"
#include "comm/reduce_split.h"
#include "util/alloc.h"
#include "util/checks.h"
#include "util/byteorder.h"
#include "util/clock.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define CTRL_MAGIC 0x5a45524f53484d31ull    /* "ZEROSHM1" */
#define CTRL_BYTES 4096
#define PMAP_MAX 32            /* cached mappings of one peer's segments */
#define CHUNK_ELEMS ((size_t)1 << 16)   /* elements of scratch per partial, world size > 2 */
#define PARTIAL_MAX_BYTES 8             /* the largest partial element (f64, i64) */
#define SPINS 2000
#define SLEEP_NS 1000000L      /* futex slice between health checks */

typedef struct seg_ref {
    uint64_t id;      /* 0: not shareable */
    uint64_t size;
    uint64_t off;
    int32_t fd;
    uint32_t pad;
} seg_ref_t;

/* One rank's control page: written by its owner only. */
typedef struct ctrl {
    uint64_t magic;
    int32_t pid, rank;
    unsigned char pad0[48];
    _Atomic uint32_t posted;
    unsigned char pad1[60];
    _Atomic uint32_t mid;
    unsigned char pad2[60];
    _Atomic uint32_t done;
    unsigned char pad3[60];
    /* the descriptor of the collective announced by posted */
    uint32_t kind, dtype, op, pad;
    uint64_t count;
    seg_ref_t send, recv;
    uint64_t range_first, range_block;   /* ZERO_COLL_REDUCE_SCATTER_RANGE */
} ctrl_t;

_Static_assert(sizeof(ctrl_t) <= CTRL_BYTES, "the control page holds the descriptor");

typedef struct seg {
    struct seg *next;
    uint64_t id;
    int fd;
    unsigned char *base;
    size_t size;
} seg_t;

typedef struct pmap {
    uint64_t id;       /* 0: empty */
    unsigned char *base;
    size_t size;
    uint64_t used;     /* LRU clock */
} pmap_t;

struct zero_shm {
    int rank, size;
    const int *job_ranks;     /* the ranks errors name (zero_shm_name_ranks; NULL: rank) */
    int enabled;
    int ctrl_fd;
    ctrl_t *ctrl;
    const ctrl_t **peers;     /* every rank's control page (own included); NULL until attached */
    pid_t *pids;
    pthread_mutex_t lock;     /* the segment list */
    seg_t *segs;
    uint64_t next_id;
    pmap_t *pmaps;            /* size * PMAP_MAX */
    uint64_t clock;
    unsigned char *scratch;   /* 2 * CHUNK_ELEMS partials of up to PARTIAL_MAX_BYTES */
};

/* Rank @p r as errors name it: a rank of the job (zero_shm_name_ranks). */
static int named(const zero_shm_t *shm, int r)
{
    return shm->job_ranks != NULL && r >= 0 && r < shm->size ? shm->job_ranks[r] : r;
}

void zero_shm_name_ranks(zero_shm_t *shm, const int *job_ranks)
{
    if (shm != NULL)
        shm->job_ranks = job_ranks;
}

static void futex_wake(_Atomic uint32_t *w)
{
    (void)syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void futex_wait(const _Atomic uint32_t *w, uint32_t seen)
{
    struct timespec ts = {0, SLEEP_NS};
    (void)syscall(SYS_futex, (const uint32_t *)w, FUTEX_WAIT, seen, &ts, NULL, 0);
}

static void cpu_relax(void)
{
#if defined(__SSE2__)
    _mm_pause();
#endif
}

zero_status_t zero_shm_create(int rank, int size, zero_shm_t **shm_p)
{
    zero_shm_t *shm = zero_calloc(1, sizeof(*shm));
    if (shm == NULL) {
        ZERO_LOG_ERROR("shared memory: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    shm->rank = rank;
    shm->size = size;
    shm->ctrl_fd = -1;
    if (pthread_mutex_init(&shm->lock, NULL) != 0) {
        zero_free(shm);
        ZERO_LOG_ERROR("shared memory: pthread_mutex_init failed");
        return ZERO_ERR_NO_MEMORY;
    }
    if (size > 1) {
        /* Without a control page the direct path stays off; the ring still works. */
        shm->ctrl_fd = memfd_create("zero-comm-ctrl", MFD_CLOEXEC);
        if (shm->ctrl_fd >= 0 && ftruncate(shm->ctrl_fd, CTRL_BYTES) == 0) {
            void *p = mmap(NULL, CTRL_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, shm->ctrl_fd, 0);
            if (p != MAP_FAILED) {
                shm->ctrl = p;
                shm->ctrl->magic = CTRL_MAGIC;
                shm->ctrl->pid = (int32_t)getpid();
                shm->ctrl->rank = rank;
            }
        }
        if (shm->ctrl == NULL)
            ZERO_LOG_DEBUG("shared memory: no control page (%s): the direct path is off", strerror(errno));
    }
    *shm_p = shm;
    return ZERO_OK;
}

static void unmap_peers(zero_shm_t *shm)
{
    if (shm->pmaps != NULL) {
        for (int i = 0; i < shm->size * PMAP_MAX; i++)
            if (shm->pmaps[i].id != 0)
                munmap(shm->pmaps[i].base, shm->pmaps[i].size);
        zero_free(shm->pmaps);
        shm->pmaps = NULL;
    }
    if (shm->peers != NULL) {
        for (int r = 0; r < shm->size; r++)
            if (r != shm->rank && shm->peers[r] != NULL)
                munmap((void *)shm->peers[r], CTRL_BYTES);
        zero_free(shm->peers);
        shm->peers = NULL;
    }
}

void zero_shm_destroy(zero_shm_t *shm)
{
    int left = 0;
    if (shm == NULL)
        return;
    unmap_peers(shm);
    while (shm->segs != NULL) {
        seg_t *s = shm->segs;
        shm->segs = s->next;
        munmap(s->base, s->size);
        close(s->fd);
        zero_free(s);
        left++;
    }
    if (left > 0)
        ZERO_LOG_WARN("zero_comm_destroy: released %d buffer(s) from zero_comm_mem_alloc still allocated", left);
    if (shm->ctrl != NULL)
        munmap(shm->ctrl, CTRL_BYTES);
    if (shm->ctrl_fd >= 0)
        close(shm->ctrl_fd);
    zero_free(shm->pids);
    zero_free(shm->scratch);
    pthread_mutex_destroy(&shm->lock);
    zero_free(shm);
}

void zero_shm_record(const zero_shm_t *shm, unsigned char rec[ZERO_SHM_RECORD_BYTES])
{
    zero_put_be32(rec, (uint32_t)getpid());
    zero_put_be32(rec + 4, shm->ctrl != NULL ? (uint32_t)shm->ctrl_fd : UINT32_MAX);
}

/* Opens another process's file descriptor (same user, one node) read-only. */
static int open_peer_fd(pid_t pid, int fd)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
    return open(path, O_RDONLY | O_CLOEXEC);
}

static void *map_peer(pid_t pid, int fd, size_t size)
{
    void *p;
    int f = open_peer_fd(pid, fd);
    if (f < 0)
        return NULL;
    p = mmap(NULL, size, PROT_READ, MAP_SHARED, f, 0);
    close(f);
    return p == MAP_FAILED ? NULL : p;
}

int zero_shm_attach(zero_shm_t *shm, const unsigned char *const *recs)
{
    int n = shm->size;
    if (shm->ctrl == NULL)
        return 0;
    shm->peers = zero_calloc((size_t)n, sizeof(*shm->peers));
    shm->pids = zero_calloc((size_t)n, sizeof(*shm->pids));
    shm->pmaps = zero_calloc((size_t)n * PMAP_MAX, sizeof(*shm->pmaps));
    shm->scratch = zero_malloc(2 * CHUNK_ELEMS * PARTIAL_MAX_BYTES);
    if (shm->peers == NULL || shm->pids == NULL || shm->pmaps == NULL || shm->scratch == NULL)
        goto off;
    for (int r = 0; r < n; r++) {
        uint32_t pid = zero_get_be32(recs[r]), fd = zero_get_be32(recs[r] + 4);
        const ctrl_t *c;
        shm->pids[r] = (pid_t)pid;
        if (r == shm->rank) {
            shm->peers[r] = shm->ctrl;
            continue;
        }
        if (fd == UINT32_MAX || fd > INT_MAX) {
            ZERO_LOG_DEBUG("shared memory: rank %d has no control page: the direct path is off", r);
            goto off;
        }
        c = map_peer((pid_t)pid, (int)fd, CTRL_BYTES);
        if (c == NULL) {
            ZERO_LOG_DEBUG("shared memory: cannot map rank %d's control page (pid %u fd %u): %s: the direct path "
                           "is off", r, pid, fd, strerror(errno));
            goto off;
        }
        shm->peers[r] = c;
        if (c->magic != CTRL_MAGIC || c->rank != r || c->pid != (int32_t)pid) {
            ZERO_LOG_DEBUG("shared memory: rank %d's control page does not match its record (another node?): the "
                           "direct path is off", r);
            goto off;
        }
    }
    return 1;
off:
    unmap_peers(shm);
    return 0;
}

void zero_shm_enable(zero_shm_t *shm)
{
    shm->enabled = shm->peers != NULL;
}

int zero_shm_enabled(const zero_shm_t *shm)
{
    return shm != NULL && shm->enabled;
}

/* ---- the allocator ---- */

zero_status_t zero_shm_alloc(zero_shm_t *shm, size_t bytes, void **ptr_p)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), size;
    seg_t *s;
    void *p;
    int fd;

    if (bytes > SIZE_MAX - page) {
        ZERO_LOG_ERROR("zero_comm_mem_alloc: %zu bytes is too large", bytes);
        return ZERO_ERR_OVERFLOW;
    }
    size = (bytes + page - 1) / page * page;
    s = zero_calloc(1, sizeof(*s));
    if (s == NULL) {
        ZERO_LOG_ERROR("zero_comm_mem_alloc: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    fd = memfd_create("zero-comm-buffer", MFD_CLOEXEC);
    if (fd < 0) {
        int err = errno;   /* before the log and the free can change it */
        ZERO_LOG_ERROR("zero_comm_mem_alloc: memfd_create: %s", strerror(err));
        zero_free(s);
        return zero_status_from_errno(err);   /* out of descriptors: ZERO_ERR_IO; ENOMEM: ZERO_ERR_NO_MEMORY */
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        ZERO_LOG_ERROR("zero_comm_mem_alloc: sizing a shared segment of %zu bytes: %s", size, strerror(errno));
        close(fd);
        zero_free(s);
        return ZERO_ERR_NO_MEMORY;
    }
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        ZERO_LOG_ERROR("zero_comm_mem_alloc: mapping %zu bytes: %s", size, strerror(errno));
        close(fd);
        zero_free(s);
        return ZERO_ERR_NO_MEMORY;
    }
    s->fd = fd;
    s->base = p;
    s->size = size;
    pthread_mutex_lock(&shm->lock);
    s->id = ++shm->next_id;
    s->next = shm->segs;
    shm->segs = s;
    pthread_mutex_unlock(&shm->lock);
    *ptr_p = p;
    return ZERO_OK;
}

zero_status_t zero_shm_free(zero_shm_t *shm, void *ptr)
{
    seg_t **pp, *s = NULL;
    pthread_mutex_lock(&shm->lock);
    for (pp = &shm->segs; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->base == ptr) {
            s = *pp;
            *pp = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&shm->lock);
    if (s == NULL) {
        ZERO_LOG_ERROR("zero_comm_mem_free: %p was not returned by zero_comm_mem_alloc on this communicator (or "
                       "was freed already)", ptr);
        return ZERO_ERR_INVALID_ARG;
    }
    munmap(s->base, s->size);
    close(s->fd);
    zero_free(s);
    return ZERO_OK;
}

/* Fills @p ref for [p, p + bytes) when it lies inside one of our segments. */
static void own_ref(zero_shm_t *shm, const void *p, size_t bytes, seg_ref_t *ref)
{
    const unsigned char *q = p;
    memset(ref, 0, sizeof(*ref));
    pthread_mutex_lock(&shm->lock);
    for (seg_t *s = shm->segs; s != NULL; s = s->next) {
        if (q >= s->base && q < s->base + s->size && bytes <= (size_t)(s->base + s->size - q)) {
            ref->id = s->id;
            ref->size = s->size;
            ref->off = (uint64_t)(q - s->base);
            ref->fd = s->fd;
            break;
        }
    }
    pthread_mutex_unlock(&shm->lock);
}

/* The address of a peer's buffer, mapping its segment on first use. */
static const unsigned char *peer_ptr(zero_shm_t *shm, int peer, const seg_ref_t *ref, size_t bytes)
{
    pmap_t *m = shm->pmaps + (size_t)peer * PMAP_MAX, *slot = NULL;
    if (ref->off > ref->size || bytes > ref->size - ref->off) {
        ZERO_LOG_ERROR("shared memory: rank %d's buffer descriptor is out of bounds", named(shm, peer));
        return NULL;
    }
    for (int i = 0; i < PMAP_MAX; i++) {
        if (m[i].id == ref->id && m[i].size == ref->size) {
            m[i].used = ++shm->clock;
            return m[i].base + ref->off;
        }
    }
    for (int i = 0; i < PMAP_MAX; i++) {
        if (m[i].id == 0) {
            slot = &m[i];
            break;
        }
        if (slot == NULL || m[i].used < slot->used)
            slot = &m[i];
    }
    if (slot->id != 0) {   /* evict the least recently used mapping */
        munmap(slot->base, slot->size);
        slot->id = 0;
    }
    slot->base = map_peer(shm->pids[peer], ref->fd, ref->size);
    if (slot->base == NULL) {
        ZERO_LOG_ERROR("shared memory: cannot map rank %d's buffer (segment %llu, %llu bytes): %s", named(shm, peer),
                       (unsigned long long)ref->id, (unsigned long long)ref->size, strerror(errno));
        return NULL;
    }
    slot->id = ref->id;
    slot->size = ref->size;
    slot->used = ++shm->clock;
    return slot->base + ref->off;
}

/* ---- the collectives ---- */

typedef struct wait_ctx {
    zero_shm_t *shm;
    const zero_coll_desc_t *d;
    double timeout_s;
    zero_shm_health_fn health;
    void *health_arg;
    int *peer_p;
} wait_ctx_t;

/* Waits until every peer's word at @p off equals @p want. */
static zero_status_t wait_peers(wait_ctx_t *w, size_t off, uint32_t want, const char *what)
{
    zero_shm_t *shm = w->shm;
    for (int k = 0; k < shm->size; k++) {
        const _Atomic uint32_t *word;
        double t0 = 0;
        int spins = 0;
        uint32_t v;
        if (k == shm->rank)
            continue;
        word = (const _Atomic uint32_t *)((const unsigned char *)shm->peers[k] + off);
        while ((v = atomic_load_explicit(word, memory_order_acquire)) != want) {
            zero_status_t st;
            int dead = -1;
            double now;
            if (spins < SPINS) {
                spins++;
                cpu_relax();
                continue;
            }
            if (t0 == 0)
                t0 = zero_clock_now();
            futex_wait(word, v);
            if ((st = w->health(w->health_arg, &dead)) != ZERO_OK) {
                ZERO_LOG_DEBUG("%s: stopped waiting for rank %d (%s): rank %d failed", zero_coll_name(w->d->kind),
                               k, what, dead);
                *w->peer_p = dead;
                return st;
            }
            now = zero_clock_now();
            if (now - t0 > w->timeout_s) {
                ZERO_LOG_ERROR("%s (%zu x %s, shared memory): no progress for %.1f s waiting for rank %d (%s; "
                               "ZERO_COMM_TIMEOUT sets this bound)", zero_coll_name(w->d->kind), w->d->count,
                               zero_dtype_string(w->d->dtype), w->timeout_s, named(shm, k), what);
                *w->peer_p = k;
                return ZERO_ERR_TIMEOUT;
            }
        }
    }
    return ZERO_OK;
}

static void publish(_Atomic uint32_t *word, uint32_t v)
{
    atomic_store_explicit(word, v, memory_order_release);
    futex_wake(word);
}

/* out[i] = op over ranks of ins[k][i], i < n; accumulated in partials (fp32
 * for 16-bit data) and rounded once. This rank's own input comes last, as the kernels' "local" operand, so
 * @p out may be it (in place). */
static void reduce_direct(zero_shm_t *shm, const zero_coll_desc_t *d, const unsigned char *const *ins,
                          unsigned char *out, size_t n)
{
    int W = shm->size, r = shm->rank;
    size_t es = zero_dtype_size(d->dtype), ps = zero_comm_partial_size(d->dtype);
    float div = d->op == ZERO_COMM_AVG ? (float)W : 1.0f;
    if (W == 2) {
        zero_comm_reduce(d->op, d->dtype, 0, ins[1 - r], ins[r], 0, out, n, div);
        return;
    }
    for (size_t c = 0; c < n; c += CHUNK_ELEMS) {
        size_t m = n - c < CHUNK_ELEMS ? n - c : CHUNK_ELEMS;
        unsigned char *a = shm->scratch, *b = shm->scratch + CHUNK_ELEMS * ps, *t;
        int k0 = (r + 1) % W, k1 = (r + 2) % W;
        zero_comm_reduce(d->op, d->dtype, 0, ins[k0] + c * es, ins[k1] + c * es, 1, a, m, 1.0f);
        for (int j = 3; j < W; j++) {
            int k = (r + j) % W;
            zero_comm_reduce(d->op, d->dtype, 1, a, ins[k] + c * es, 1, b, m, 1.0f);
            t = a;
            a = b;
            b = t;
        }
        zero_comm_reduce(d->op, d->dtype, 1, a, ins[r] + c * es, 0, out + c * es, m, div);
    }
}

/* The split reduce-scatter's partial (W > 2): op over the peers' inputs only,
 * in reduce_direct's order (so adding this rank's own input to it gives
 * reduce_direct's sum), into @p out of the partial type. */
static void reduce_peers(zero_shm_t *shm, const zero_coll_desc_t *d, const unsigned char *const *ins,
                         unsigned char *out, size_t n)
{
    int W = shm->size, r = shm->rank;
    size_t es = zero_dtype_size(d->dtype), ps = zero_comm_partial_size(d->dtype);
    for (size_t c = 0; c < n; c += CHUNK_ELEMS) {
        size_t m = n - c < CHUNK_ELEMS ? n - c : CHUNK_ELEMS;
        unsigned char *a = shm->scratch, *b = shm->scratch + CHUNK_ELEMS * ps, *t;
        int k0 = (r + 1) % W, k1 = (r + 2) % W;
        zero_comm_reduce(d->op, d->dtype, 0, ins[k0] + c * es, ins[k1] + c * es, 1, W == 3 ? out + c * ps : a, m,
                         1.0f);
        for (int j = 3; j < W; j++) {
            int k = (r + j) % W;
            zero_comm_reduce(d->op, d->dtype, 1, a, ins[k] + c * es, 1, j == W - 1 ? out + c * ps : b, m, 1.0f);
            t = a;
            a = b;
            b = t;
        }
    }
}

static void block_of(size_t count, int W, int b, size_t *off_p, size_t *len_p)
{
    size_t base = count / (size_t)W, rem = count % (size_t)W, bb = (size_t)b;
    *off_p = bb * base + (bb < rem ? bb : rem);
    *len_p = base + (bb < rem ? 1 : 0);
}

zero_status_t zero_shm_coll(zero_shm_t *shm, const zero_coll_desc_t *d, uint32_t seq, double timeout_s,
                            zero_shm_health_fn health, void *health_arg, int *direct_p, int *peer_p)
{
    const unsigned char *srcs[64], **src = srcs;
    const unsigned char *rsrcs[64], **rsrc = rsrcs;
    wait_ctx_t w = {shm, d, timeout_s, health, health_arg, peer_p};
    ctrl_t *me = shm->ctrl;
    int W = shm->size, r = shm->rank, all_ok = 1, not_ok = -1;
    size_t es, send_bytes, recv_bytes, part_lo = 0, part_hi = 0;
    uint32_t tick = seq + 1u;
    zero_status_t status = ZERO_OK;

    *direct_p = 0;
    if (!shm->enabled || d->count == 0 || d->mem_kind == ZERO_MEM_DEVICE ||
        (d->kind != ZERO_COLL_ALLREDUCE && d->kind != ZERO_COLL_REDUCE_SCATTER && d->kind != ZERO_COLL_ALLGATHER &&
         d->kind != ZERO_COLL_ALLTOALL && d->kind != ZERO_COLL_REDUCE_SCATTER_RANGE &&
         d->kind != ZERO_COLL_REDUCE_SCATTER_SPLIT))
        return ZERO_OK;
    es = zero_dtype_size(d->dtype);
    send_bytes = d->count * es *
                 (d->kind == ZERO_COLL_REDUCE_SCATTER || d->kind == ZERO_COLL_ALLTOALL ||
                  d->kind == ZERO_COLL_REDUCE_SCATTER_SPLIT ? (size_t)W : 1);
    recv_bytes = d->count * es * (d->kind == ZERO_COLL_ALLGATHER || d->kind == ZERO_COLL_ALLTOALL ? (size_t)W : 1);
    if (d->kind == ZERO_COLL_REDUCE_SCATTER_RANGE) {
        zero_coll_range_part(d, r, &part_lo, &part_hi);
        recv_bytes = (part_hi - part_lo) * es;
    }

    /* 1. announce */
    me->kind = (uint32_t)d->kind;
    me->dtype = (uint32_t)d->dtype;
    me->op = (uint32_t)d->op;
    me->count = d->count;
    me->range_first = d->range_first;
    me->range_block = d->range_block;
    own_ref(shm, d->sendbuf, send_bytes, &me->send);
    if (d->kind == ZERO_COLL_REDUCE_SCATTER_RANGE)
        me->recv = me->send;   /* no peer reads this rank's output (it may be empty) */
    else if (d->kind == ZERO_COLL_REDUCE_SCATTER_SPLIT)
        me->recv = me->send;   /* its partial's buffer is written by this rank only: need not be shareable */
    else
        own_ref(shm, d->recvbuf, recv_bytes, &me->recv);
    if (me->send.id == 0 || me->recv.id == 0) {
        all_ok = 0;
        not_ok = r;
    }
    publish(&me->posted, tick);
    if ((status = wait_peers(&w, offsetof(ctrl_t, posted), tick, "announce")) != ZERO_OK)
        return status;
    for (int k = 0; k < W; k++) {
        const ctrl_t *c = shm->peers[k];
        if (k == r)
            continue;
        if (c->kind != (uint32_t)d->kind || c->count != d->count || c->dtype != (uint32_t)d->dtype ||
            (d->kind != ZERO_COLL_ALLGATHER && c->op != (uint32_t)d->op) ||
            (d->kind == ZERO_COLL_REDUCE_SCATTER_RANGE &&
             (c->range_first != d->range_first || c->range_block != d->range_block))) {
            ZERO_LOG_ERROR("%s (%zu x %s): rank %d started %s of %llu x %s instead (do all ranks call the same "
                           "collectives with the same counts?)", zero_coll_name(d->kind), d->count,
                           zero_dtype_string(d->dtype), named(shm, k), zero_coll_name((zero_coll_kind_t)c->kind),
                           (unsigned long long)c->count,
                           zero_dtype_string((zero_dtype_t)c->dtype));
            *peer_p = k;
            return ZERO_ERR_PROTOCOL;
        }
        if (c->send.id == 0 || c->recv.id == 0) {
            all_ok = 0;
            if (not_ok < 0)
                not_ok = k;
        }
    }
    if (!all_ok) {
        ZERO_LOG_DEBUG("%s #%u (%zu x %s): ring path (rank %d's buffers are not from zero_comm_mem_alloc)",
                       zero_coll_name(d->kind), seq, d->count, zero_dtype_string(d->dtype), not_ok);
        /* A rank whose part of a range is empty only sends on the ring and may
         * finish, and announce its next collective over this one, before a
         * peer has read this announcement: nobody leaves until all have. */
        if (d->kind == ZERO_COLL_REDUCE_SCATTER_RANGE) {
            publish(&me->mid, tick);
            return wait_peers(&w, offsetof(ctrl_t, mid), tick, "announce read");
        }
        return ZERO_OK;
    }
    ZERO_LOG_DEBUG("%s #%u (%zu x %s): direct path (shared memory)", zero_coll_name(d->kind), seq, d->count,
                   zero_dtype_string(d->dtype));

    if (W > 64) {
        src = zero_malloc((size_t)W * sizeof(*src));
        rsrc = zero_malloc((size_t)W * sizeof(*rsrc));
        if (src == NULL || rsrc == NULL) {
            ZERO_LOG_ERROR("%s: out of memory", zero_coll_name(d->kind));
            status = ZERO_ERR_NO_MEMORY;
            *peer_p = r;
            goto out;
        }
    }
    /* 2. map the peers' buffers (ours directly) */
    for (int k = 0; k < W; k++) {
        const ctrl_t *c = shm->peers[k];
        if (k == r) {
            src[k] = d->sendbuf;
            rsrc[k] = d->recvbuf;
            continue;
        }
        src[k] = peer_ptr(shm, k, &c->send, send_bytes);
        rsrc[k] = d->kind == ZERO_COLL_ALLREDUCE ? peer_ptr(shm, k, &c->recv, recv_bytes) : NULL;
        if (src[k] == NULL || (d->kind == ZERO_COLL_ALLREDUCE && rsrc[k] == NULL)) {
            status = ZERO_ERR_COMM;
            *peer_p = k;
            goto out;
        }
    }

    /* 3. the fused pass */
    if (d->kind == ZERO_COLL_REDUCE_SCATTER) {
        for (int k = 0; k < W; k++)
            src[k] += (size_t)r * d->count * es;
        reduce_direct(shm, d, src, d->recvbuf, d->count);
    } else if (d->kind == ZERO_COLL_REDUCE_SCATTER_RANGE) {
        /* this rank's part of the window, read from every rank's copy of it; in place,
         * the part is written over while no peer reads it (each reads its own part) */
        for (int k = 0; k < W; k++)
            src[k] += part_lo * es;
        if (part_hi > part_lo)
            reduce_direct(shm, d, src, d->recvbuf, part_hi - part_lo);
    } else if (d->kind == ZERO_COLL_REDUCE_SCATTER_SPLIT) {
        zero_comm_split_t *split = d->recvbuf;
        for (int k = 0; k < W; k++)
            src[k] += (size_t)r * d->count * es;
        if (W == 2)
            split->partial = src[1 - r];   /* zero copy: the peer's block, read where it is (reduce_split.h) */
        else
            reduce_peers(shm, d, src, split->buf, d->count);
    } else if (d->kind == ZERO_COLL_ALLTOALL) {
        /* each peer's block for this rank, straight out of its send buffer */
        for (int j = 0; j < W; j++) {
            int k = (r + j) % W;
            memcpy((unsigned char *)d->recvbuf + (size_t)k * d->count * es, src[k] + (size_t)r * d->count * es,
                   d->count * es);
        }
    } else if (d->kind == ZERO_COLL_ALLGATHER) {
        for (int j = 1; j < W; j++) {
            int k = (r + j) % W;
            memcpy((unsigned char *)d->recvbuf + (size_t)k * d->count * es, src[k], d->count * es);
        }
    } else {
        size_t off, len;
        block_of(d->count, W, r, &off, &len);
        for (int k = 0; k < W; k++)
            src[k] += off * es;
        if (len > 0)
            reduce_direct(shm, d, src, (unsigned char *)d->recvbuf + off * es, len);
        /* every block reduced before anyone copies (in place, a peer may still
         * be reading the input block we would overwrite) */
        publish(&me->mid, tick);
        if ((status = wait_peers(&w, offsetof(ctrl_t, mid), tick, "reduction")) != ZERO_OK)
            goto out;
        for (int j = 1; j < W; j++) {
            int k = (r + j) % W;
            block_of(d->count, W, k, &off, &len);
            memcpy((unsigned char *)d->recvbuf + off * es, rsrc[k] + off * es, len * es);
        }
    }

    /* 4. nobody leaves while a peer may still read its buffers */
    publish(&me->done, tick);
    status = wait_peers(&w, offsetof(ctrl_t, done), tick, "completion");
    if (status == ZERO_OK)
        *direct_p = 1;
out:
    if (src != srcs)
        zero_free(src);
    if (rsrc != rsrcs)
        zero_free(rsrc);
    return status;
}

/* ---- the direct path as a communicator backend (comm/backend.h) ---- */

static int direct_accepts(const zero_comm_t *comm, const zero_coll_desc_t *d)
{
    return comm->env.size > 1 && d->mem_kind != ZERO_MEM_DEVICE && zero_shm_enabled(comm->shm);
}

/* Runs the whole collective at start: the handshake decides, the same way on
 * every rank, whether every buffer is shareable; if not, the ring takes it. */
static zero_status_t direct_start(zero_comm_t *comm, zero_comm_request_h req, int *declined_p, int *peer_p)
{
    int direct = 0;
    zero_status_t status = zero_shm_coll(comm->shm, &req->desc, req->seq, comm->cfg.timeout_s, zero_comm_health,
                                         comm, &direct, peer_p);
    *declined_p = status == ZERO_OK && !direct;
    return status;
}

const zero_comm_backend_ops_t zero_comm_backend_direct = {
    .name = "direct",
    .enable_bit = ZERO_COMM_BACKEND_UCX,   /* part of the host backend; ZERO_COMM_DIRECT=0 turns it off */
    .accepts = direct_accepts,
    .start = direct_start,   /* runs the whole collective: no advance, nothing to abort */
};
