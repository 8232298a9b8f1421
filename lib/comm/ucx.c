/*
 * Ring collectives over UCP tagged messages (host memory).
 *
 * A collective is a sequence of "units", each one chunk of one ring step:
 * rank r receives the unit's chunk from its left neighbour and sends one to
 * its right neighbour. Each block is cut into chunks; chunk group k (chunk k
 * of every block) runs through all steps of all phases before group k+1, so a
 * partial sum is forwarded by the very next unit and needs one scratch slot,
 * not a block. Every rank posts receives (up to chunks_in_flight ahead) and
 * processes them in unit order, and posts each send as soon as its data is
 * ready; the first send of the next groups (no dependency) goes out ahead, so
 * while group k is being reduced, group k+1 is already on the wire. Reduce-scatter phase: step s sends block (r-1-s) and receives block
 * (r-2-s), leaving block r fully reduced on rank r; partial sums travel as
 * fp32. Allgather phase: step s sends block (r-s) and receives block (r-s-1)
 * straight into the output. Allreduce is both phases; broadcast is a chain
 * from the root; barrier is an allgather of one byte.
 *
 * The all-to-all (internal, for qgZ) is relayed around the ring without the
 * unit pipeline: shift d = W-1 .. 1 carries every rank's block for rank r+d
 * over d hops, one whole block per hop and rank, each hop finished (sent and
 * received) before the next starts. A block in transit waits in one of two
 * scratch blocks (a hop receives into one while it sends the other), and the
 * last hop receives straight into the output. Each link carries (W-1)/2 of a
 * rank's data, where a ring all-gather of the same data would carry W-1.
 */
#define ZERO_LOG_MODULE "comm"
#include "comm/ucx.h"
#include "comm/backend.h"
#include "comm/reduce.h"
#include "comm/reduce_split.h"
#include "util/alloc.h"
#include "util/checks_ucx.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/ucx_pins.h"

#include <string.h>
#include <ucp/api/ucp.h>

#define MAX_INFLIGHT 16
#define SEND_WINDOW_FACTOR 2
#define SEND_MAX (MAX_INFLIGHT * SEND_WINDOW_FACTOR + MAX_INFLIGHT)

enum { PHASE_RS = 0, PHASE_AG = 1, PHASE_BCAST = 2, PHASE_A2A = 3 };

typedef struct recv_entry {
    void *req;          /* NULL: nothing to receive for this unit */
    int slot;           /* recv slot (reduce-scatter units), else -1 */
    size_t expect;      /* bytes expected */
} recv_entry_t;

typedef struct send_entry {
    void *req;          /* NULL: free entry */
    int pslot;          /* partial slot to release on completion, or -1 */
    int head;           /* posted ahead (counts against nheads) */
} send_entry_t;

typedef struct coll_state {
    int active;
    zero_coll_desc_t d;
    uint32_t seq;
    size_t es;                 /* bytes per element of the user's type */
    size_t ce;                 /* elements per chunk */
    uint64_t k;                /* chunks per step */
    uint64_t rs_steps, group;  /* units per chunk group: rs_steps + allgather/broadcast steps */
    uint64_t units_total;
    uint64_t post_idx, done_idx, send_idx;
    uint64_t head_k;           /* chunk groups whose first send was posted ahead */
    int nheads;                /* such sends still running */
    recv_entry_t recvs[MAX_INFLIGHT];
    send_entry_t sends[SEND_MAX];
    int nsends;
    int pfifo[MAX_INFLIGHT * SEND_WINDOW_FACTOR + 1];   /* partials waiting for their send, in order */
    int pfifo_head, pfifo_count;
    int local_copy_pending;
    double last_activity;
    unsigned char barrier_in, *barrier_out;
    /* the all-to-all's relay (see the top of this file) */
    struct {
        int shift, hop;              /* the hop running: shift d, hop h < d */
        uint64_t index;              /* hops finished before it (the tag's step) */
        int posted;                  /* this hop's receive and send are posted */
        void *recv_req, *send_req;
        int recv_done, send_done;
        unsigned char *scratch;      /* two blocks: hop parity picks the one received into */
    } a2a;
} coll_state_t;

struct zero_ucx {
    int rank, size, left, right;
    const int *job_ranks;            /* the ranks errors name (zero_ucx_name_ranks; NULL: rank) */
    size_t chunk_bytes;
    int inflight;
    ucp_context_h context;
    ucp_worker_h worker;
    ucp_address_t *address;
    size_t address_len;
    ucp_ep_h ep_left, ep_right;      /* the same endpoint when size == 2 */
    struct ep_owner *owner_left, *owner_right;   /* error-handler arguments */
    int efd;
    int peer_err_mode;               /* UCP_ERR_HANDLING_MODE_PEER on the endpoints */
    int failed_peer;
    ucs_status_t failed_status;
    unsigned char *slots;            /* inflight recv slots, then 2*inflight+1 partial slots */
    int recv_free[MAX_INFLIGHT], nrecv_free;
    int part_free[MAX_INFLIGHT * SEND_WINDOW_FACTOR + 1], npart_free;
    coll_state_t c;
};

/* Rank @p r as errors name it: a rank of the job (zero_ucx_name_ranks). */
static int named(const zero_ucx_t *ucx, int r)
{
    return ucx->job_ranks != NULL && r >= 0 && r < ucx->size ? ucx->job_ranks[r] : r;
}

void zero_ucx_name_ranks(zero_ucx_t *ucx, const int *job_ranks)
{
    if (ucx != NULL)
        ucx->job_ranks = job_ranks;
}

typedef struct ep_owner {
    zero_ucx_t *ucx;
    int peer;
} ep_owner_t;

static ep_owner_t *ep_owner_new(zero_ucx_t *ucx, int peer)
{
    ep_owner_t *o = zero_malloc(sizeof(*o));
    if (o != NULL) {
        o->ucx = ucx;
        o->peer = peer;
    }
    return o;
}

/* Runs on the progress thread (inside ucp_worker_progress). */
static void ep_error_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    ep_owner_t *o = arg;
    (void)ep;
    if (o->ucx->failed_peer < 0) {
        o->ucx->failed_peer = o->peer;
        o->ucx->failed_status = status;
    }
}

zero_status_t zero_ucx_create(int rank, int size, size_t chunk_bytes, int chunks_in_flight, int peer_err_mode,
                              const char *tls, zero_ucx_t **ucx_p)
{
    zero_status_t status = ZERO_OK;
    ucp_params_t params;
    ucp_worker_params_t wparams;
    ucp_config_t *config = NULL;
    zero_ucx_t *ucx;
    int nslots;

    if (chunks_in_flight < 1 || chunks_in_flight > MAX_INFLIGHT)
        return ZERO_ERR_INVALID_ARG;
    ucx = zero_calloc(1, sizeof(*ucx));
    if (ucx == NULL)
        return ZERO_ERR_NO_MEMORY;
    ucx->rank = rank;
    ucx->size = size;
    ucx->left = (rank + size - 1) % size;
    ucx->right = (rank + 1) % size;
    ucx->chunk_bytes = chunk_bytes;
    ucx->inflight = chunks_in_flight;
    ucx->failed_peer = -1;
    ucx->efd = -1;
    ucx->peer_err_mode = peer_err_mode;

    nslots = chunks_in_flight + SEND_WINDOW_FACTOR * chunks_in_flight + 1;
    ZERO_CHECK_GOTO(zero_mem_alloc(ZERO_MEM_HOST, (size_t)nslots * chunk_bytes, "comm ring slots",
                                   (void **)&ucx->slots), status, fail);
    for (int i = 0; i < chunks_in_flight; i++)
        ucx->recv_free[ucx->nrecv_free++] = i;
    for (int i = chunks_in_flight; i < nslots; i++)
        ucx->part_free[ucx->npart_free++] = i;

    ZERO_UCS_CHECK_GOTO(ucp_config_read(NULL, NULL, &config), status, fail, "UCX: %s", "reading the configuration");
    if (tls != NULL)
        ZERO_UCS_CHECK_GOTO(ucp_config_modify(config, "TLS", tls), status, fail, "UCX: cannot set the transports to '%s'",
                            tls);
    /* tcp's segments at UCX's defaults whatever this rank's environment
     * says: UCX 1.13's tcp receiver aborts on a message longer than its own
     * receive segment (a rank with UCX_TCP_TX_SEG_SIZE/RX_SEG_SIZE at 256k
     * killed its ring neighbour, tcp_ep.c:1404). The shared-memory FIFO is
     * not pinned here: our endpoints are made from worker addresses, which
     * carry the receiver's segment size (a rank with another
     * UCX_POSIX_SEG_SIZE or FIFO size ran its collectives; zero-optd's
     * client-server endpoints do not survive that, util/ucx_pins.h) */
    ZERO_CHECK_GOTO(zero_ucx_pin_sizes(config, tls, ZERO_UCX_PIN_TCP, "comm"), status, fail);
    memset(&params, 0, sizeof(params));
    params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
    params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;
    params.mt_workers_shared = 0;
    ZERO_UCS_CHECK_GOTO(ucp_init(&params, config, &ucx->context), status, fail, "UCX: %s", "ucp_init");
    memset(&wparams, 0, sizeof(wparams));
    wparams.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wparams.thread_mode = UCS_THREAD_MODE_SINGLE;   /* confined to one thread at a time */
    ZERO_UCS_CHECK_GOTO(ucp_worker_create(ucx->context, &wparams, &ucx->worker), status, fail,
                        "UCX: %s", "creating the worker");
    ZERO_UCS_CHECK_GOTO(ucp_worker_get_address(ucx->worker, &ucx->address, &ucx->address_len), status, fail,
                        "UCX: %s", "getting the worker address");
    if (ucp_worker_get_efd(ucx->worker, &ucx->efd) != UCS_OK)
        ucx->efd = -1;      /* no wake-up support: the progress thread polls with short sleeps */
    ucp_config_release(config);
    *ucx_p = ucx;
    return ZERO_OK;

fail:
    if (config != NULL)
        ucp_config_release(config);
    zero_ucx_destroy(ucx, 1, 0);
    return status;
}

void zero_ucx_address(const zero_ucx_t *ucx, const void **addr_p, size_t *len_p)
{
    *addr_p = ucx->address;
    *len_p = ucx->address_len;
}

static zero_status_t ep_create(zero_ucx_t *ucx, const void *addr, int peer, ucp_ep_h *ep_p,
                               struct ep_owner **owner_p)
{
    zero_status_t status = ZERO_OK;
    ucp_ep_params_t p;
    ep_owner_t *owner = ep_owner_new(ucx, peer);
    if (owner == NULL)
        return ZERO_ERR_NO_MEMORY;
    memset(&p, 0, sizeof(p));
    p.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                   UCP_EP_PARAM_FIELD_ERR_HANDLER;
    p.address = addr;
    /* UCX's peer-failure mode costs 4-5x bandwidth on shared memory here (it
     * rules out transports without failure detection), and the rendezvous
     * sockets already report a dead rank; it stays available as an option. */
    p.err_mode = ucx->peer_err_mode ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
    p.err_handler.cb = ep_error_cb;
    p.err_handler.arg = owner;
    ZERO_UCS_CHECK_GOTO(ucp_ep_create(ucx->worker, &p, ep_p), status, fail, "UCX: connecting to rank %d", named(ucx, peer));
    *owner_p = owner;
    return ZERO_OK;
fail:
    zero_free(owner);
    return status;
}

static ucs_status_t wait_request(zero_ucx_t *ucx, void *req, double deadline)
{
    ucs_status_t st;
    if (req == NULL)
        return UCS_OK;
    if (UCS_PTR_IS_ERR(req))
        return UCS_PTR_STATUS(req);
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS && zero_clock_now() < deadline)
        ucp_worker_progress(ucx->worker);
    if (st == UCS_INPROGRESS) {
        ucp_request_cancel(ucx->worker, req);
        st = UCS_ERR_TIMED_OUT;
    }
    ucp_request_free(req);
    return st;
}

zero_status_t zero_ucx_connect(zero_ucx_t *ucx, const void *left_addr, const void *right_addr, double timeout_s)
{
    zero_status_t status = ZERO_OK;
    ucp_request_param_t rp;
    ucs_status_t st;
    ZERO_CHECK_GOTO(ep_create(ucx, right_addr, ucx->right, &ucx->ep_right, &ucx->owner_right), status, out);
    if (ucx->left == ucx->right)
        ucx->ep_left = ucx->ep_right;
    else
        ZERO_CHECK_GOTO(ep_create(ucx, left_addr, ucx->left, &ucx->ep_left, &ucx->owner_left), status, out);
    /* Wire up now rather than inside the first collective. */
    memset(&rp, 0, sizeof(rp));
    st = wait_request(ucx, ucp_worker_flush_nbx(ucx->worker, &rp), zero_clock_now() + timeout_s);
    ZERO_UCS_CHECK_GOTO(st, status, out, "UCX: connecting to ranks %d and %d", ucx->left, ucx->right);
out:
    return status;
}

static void ep_close(zero_ucx_t *ucx, ucp_ep_h ep, int force, double deadline)
{
    ucp_request_param_t rp;
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    /* Forced close exists only in peer-failure mode; otherwise a flush that
     * cannot finish (dead peer) is abandoned at the deadline and the worker's
     * destruction releases the endpoint. */
    rp.flags = force && ucx->peer_err_mode ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    if (force && !ucx->peer_err_mode)
        deadline = zero_clock_now() + 0.2;
    /* A failed flush (the peer already left) still closes the endpoint. */
    (void)wait_request(ucx, ucp_ep_close_nbx(ep, &rp), deadline);
}

void zero_ucx_destroy(zero_ucx_t *ucx, int force, double timeout_s)
{
    double deadline = zero_clock_now() + timeout_s;
    if (ucx == NULL)
        return;
    if (ucx->c.active)
        zero_ucx_coll_abort(ucx);
    if (ucx->ep_right != NULL)
        ep_close(ucx, ucx->ep_right, force, deadline);
    if (ucx->ep_left != NULL && ucx->ep_left != ucx->ep_right)
        ep_close(ucx, ucx->ep_left, force, deadline);
    zero_free(ucx->owner_right);
    zero_free(ucx->owner_left);
    if (ucx->address != NULL)
        ucp_worker_release_address(ucx->worker, ucx->address);
    if (ucx->worker != NULL)
        ucp_worker_destroy(ucx->worker);
    if (ucx->context != NULL)
        ucp_cleanup(ucx->context);
    zero_mem_free(ucx->slots);
    zero_free(ucx);
}

int zero_ucx_efd(const zero_ucx_t *ucx)
{
    return ucx->efd;
}

int zero_ucx_arm(zero_ucx_t *ucx)
{
    return ucx->efd >= 0 && ucp_worker_arm(ucx->worker) == UCS_OK;
}

unsigned zero_ucx_progress(zero_ucx_t *ucx)
{
    return ucp_worker_progress(ucx->worker);
}

int zero_ucx_failed_peer(const zero_ucx_t *ucx)
{
    return ucx->failed_peer;
}

/* ---- ring geometry ---- */

static int mod(int64_t a, int n)
{
    int64_t m = a % n;
    return (int)(m < 0 ? m + n : m);
}

/* Element offset and length of block @p b. */
static void block_range(const zero_ucx_t *ucx, int b, size_t *off_p, size_t *len_p)
{
    const zero_coll_desc_t *d = &ucx->c.d;
    size_t n = (size_t)ucx->size;
    if (d->kind == ZERO_COLL_ALLREDUCE) {
        size_t base = d->count / n, rem = d->count % n, bb = (size_t)b;
        *off_p = bb * base + (bb < rem ? bb : rem);
        *len_p = base + (bb < rem ? 1 : 0);
    } else if (d->kind == ZERO_COLL_BROADCAST) {
        *off_p = 0;
        *len_p = d->count;
    } else if (d->kind == ZERO_COLL_REDUCE_SCATTER_RANGE) {
        size_t hi;
        zero_coll_range_part(d, b, off_p, &hi);   /* rank b's part of the window (may be empty) */
        *len_p = hi - *off_p;
    } else {
        *off_p = (size_t)b * d->count;
        *len_p = d->count;
    }
}

static size_t chunk_len(const coll_state_t *c, size_t block_len, uint64_t k)
{
    size_t start = (size_t)k * c->ce;
    if (start >= block_len)
        return 0;
    return block_len - start < c->ce ? block_len - start : c->ce;
}

static uint64_t make_tag(uint32_t seq, int phase, uint64_t step, uint64_t chunk)
{
    return (uint64_t)(seq & 0xffffu) << 48 | (uint64_t)phase << 46 | (step & 0xffffu) << 30 | (chunk & 0x3fffffffu);
}

typedef struct unit {
    int phase;
    uint64_t step, chunk;
} unit_t;

static unit_t unit_of(const coll_state_t *c, uint64_t u)
{
    unit_t x;
    uint64_t j;
    x.chunk = u / c->group;
    j = u % c->group;
    x.phase = j < c->rs_steps ? PHASE_RS : c->d.kind == ZERO_COLL_BROADCAST ? PHASE_BCAST : PHASE_AG;
    x.step = j < c->rs_steps ? j : j - c->rs_steps;
    return x;
}

static const unsigned char *in_base(const coll_state_t *c)
{
    return c->d.kind == ZERO_COLL_BARRIER ? &c->barrier_in : c->d.sendbuf;
}

static unsigned char *out_base(const coll_state_t *c)
{
    return c->d.kind == ZERO_COLL_BARRIER ? c->barrier_out : c->d.recvbuf;
}

zero_status_t zero_ucx_coll_start(zero_ucx_t *ucx, const zero_coll_desc_t *desc, uint32_t seq)
{
    coll_state_t *c = &ucx->c;
    size_t maxlen, off;
    uint64_t rs_steps = 0, ag_steps = 0;
    int n = ucx->size;

    memset(c, 0, sizeof(*c));
    c->d = *desc;
    c->seq = seq;
    c->es = desc->kind == ZERO_COLL_BARRIER ? 1 : zero_dtype_size(desc->dtype);
    c->pfifo_head = 0;
    switch (desc->kind) {
    case ZERO_COLL_ALLREDUCE:
        rs_steps = ag_steps = (uint64_t)n - 1;
        c->ce = ucx->chunk_bytes / zero_comm_partial_size(desc->dtype);   /* partials of 16-bit data are fp32 */
        break;
    case ZERO_COLL_REDUCE_SCATTER:
    case ZERO_COLL_REDUCE_SCATTER_RANGE:   /* the same ring, with blocks of uneven (maybe zero) length */
    case ZERO_COLL_REDUCE_SCATTER_SPLIT:
        rs_steps = (uint64_t)n - 1;
        c->ce = ucx->chunk_bytes / zero_comm_partial_size(desc->dtype);
        break;
    case ZERO_COLL_ALLGATHER:
        ag_steps = (uint64_t)n - 1;
        c->ce = ucx->chunk_bytes / c->es;
        c->local_copy_pending = !desc->local_copy_by_caller &&
                                desc->sendbuf != (const unsigned char *)desc->recvbuf + (size_t)ucx->rank *
                                                     desc->count * c->es;
        break;
    case ZERO_COLL_BROADCAST:
        ag_steps = 1;
        c->ce = ucx->chunk_bytes / c->es;
        c->local_copy_pending = !desc->local_copy_by_caller && ucx->rank == desc->root &&
                                desc->sendbuf != desc->recvbuf;
        break;
    case ZERO_COLL_ALLTOALL:
        c->a2a.shift = n - 1;
        c->a2a.scratch = n > 2 ? zero_malloc(2 * desc->count * c->es + 1) : NULL;
        if (n > 2 && c->a2a.scratch == NULL) {
            ZERO_LOG_ERROR("all-to-all: out of memory for 2 x %zu bytes of relay scratch", desc->count * c->es);
            return ZERO_ERR_NO_MEMORY;
        }
        /* this rank's own block needs no hop */
        memcpy((unsigned char *)desc->recvbuf + (size_t)ucx->rank * desc->count * c->es,
               (const unsigned char *)desc->sendbuf + (size_t)ucx->rank * desc->count * c->es, desc->count * c->es);
        c->last_activity = zero_clock_now();
        c->active = 1;
        return ZERO_OK;
    case ZERO_COLL_BARRIER:
        ag_steps = (uint64_t)n - 1;
        c->ce = ucx->chunk_bytes;
        c->d.count = 1;
        c->barrier_in = 1;
        c->barrier_out = zero_calloc((size_t)n, 1);
        if (c->barrier_out == NULL) {
            ZERO_LOG_ERROR("barrier: out of memory");
            return ZERO_ERR_NO_MEMORY;
        }
        break;
    }
    block_range(ucx, 0, &off, &maxlen);   /* block 0 is never shorter than another, but in a range */
    for (int b = 1; desc->kind == ZERO_COLL_REDUCE_SCATTER_RANGE && b < n; b++) {
        size_t len;
        block_range(ucx, b, &off, &len);
        maxlen = len > maxlen ? len : maxlen;
    }
    c->k = maxlen == 0 ? 0 : (maxlen + c->ce - 1) / c->ce;
    if (c->k >= ((uint64_t)1 << 30)) {
        ZERO_LOG_ERROR("%s: %zu elements need %llu chunks, more than a tag holds (raise ZERO_COMM_CHUNK_BYTES)",
                       zero_coll_name(desc->kind), desc->count, (unsigned long long)c->k);
        zero_free(c->barrier_out);
        return ZERO_ERR_OVERFLOW;
    }
    c->rs_steps = rs_steps;
    c->group = rs_steps + ag_steps;
    c->units_total = c->group * c->k;
    c->last_activity = zero_clock_now();
    c->active = 1;
    return ZERO_OK;
}

/* What unit @p u receives: bytes, destination, slot need. Returns bytes (0: nothing). */
static size_t recv_spec(zero_ucx_t *ucx, uint64_t u, void **dst_p, int *needs_slot_p)
{
    coll_state_t *c = &ucx->c;
    unit_t x = unit_of(c, u);
    size_t off, len, clen;
    int b;
    *needs_slot_p = 0;
    switch (x.phase) {
    case PHASE_RS:
        b = mod((int64_t)ucx->rank - 2 - (int64_t)x.step, ucx->size);
        block_range(ucx, b, &off, &len);
        clen = chunk_len(c, len, x.chunk);
        *needs_slot_p = 1;
        *dst_p = NULL;
        return clen * (x.step == 0 ? c->es : zero_comm_partial_size(c->d.dtype));
    case PHASE_AG:
        b = mod((int64_t)ucx->rank - 1 - (int64_t)x.step, ucx->size);
        block_range(ucx, b, &off, &len);
        clen = chunk_len(c, len, x.chunk);
        *dst_p = out_base(c) + (off + x.chunk * c->ce) * c->es;
        return clen * c->es;
    default:  /* broadcast */
        if (ucx->rank == c->d.root)
            return 0;
        clen = chunk_len(c, c->d.count, x.chunk);
        *dst_p = out_base(c) + x.chunk * c->ce * c->es;
        return clen * c->es;
    }
}

static zero_status_t post_recv(zero_ucx_t *ucx, uint64_t u)
{
    coll_state_t *c = &ucx->c;
    recv_entry_t *e = &c->recvs[u % (uint64_t)ucx->inflight];
    void *dst;
    int needs_slot;
    size_t bytes = recv_spec(ucx, u, &dst, &needs_slot);
    unit_t x = unit_of(c, u);
    ucp_request_param_t rp;
    void *req;

    e->req = NULL;
    e->slot = -1;
    e->expect = bytes;
    if (bytes == 0)
        return ZERO_OK;
    if (needs_slot) {
        e->slot = ucx->recv_free[--ucx->nrecv_free];   /* the window guarantees one is free */
        dst = ucx->slots + (size_t)e->slot * ucx->chunk_bytes;
    }
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_MEMORY_TYPE | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
    rp.memory_type = UCS_MEMORY_TYPE_HOST;
    req = ucp_tag_recv_nbx(ucx->worker, dst, bytes, make_tag(c->seq, x.phase, x.step, x.chunk), UINT64_MAX, &rp);
    if (UCS_PTR_IS_ERR(req)) {
        ZERO_LOG_ERROR("%s: receiving from rank %d: %s", zero_coll_name(c->d.kind), named(ucx, ucx->left),
                       ucs_status_string(UCS_PTR_STATUS(req)));
        if (e->slot >= 0)
            ucx->recv_free[ucx->nrecv_free++] = e->slot;
        e->slot = -1;
        return zero_status_from_ucs(UCS_PTR_STATUS(req));
    }
    e->req = req;
    return ZERO_OK;
}

/* Reduces a received reduce-scatter chunk. Returns 0, or 1 if it must wait for a partial slot. */
static int process_unit(zero_ucx_t *ucx, uint64_t u, recv_entry_t *e)
{
    coll_state_t *c = &ucx->c;
    unit_t x = unit_of(c, u);
    size_t off, len, clen;
    const unsigned char *local, *recv;
    int b, last;

    if (x.phase != PHASE_RS || e->expect == 0)
        return 0;
    b = mod((int64_t)ucx->rank - 2 - (int64_t)x.step, ucx->size);
    block_range(ucx, b, &off, &len);
    clen = chunk_len(c, len, x.chunk);
    local = in_base(c) + (off + x.chunk * c->ce) * c->es;
    recv = ucx->slots + (size_t)e->slot * ucx->chunk_bytes;
    last = x.step == (uint64_t)ucx->size - 2;
    if (!last) {
        int p;
        if (ucx->npart_free == 0)
            return 1;
        p = ucx->part_free[--ucx->npart_free];
        zero_comm_reduce(c->d.op, c->d.dtype, x.step > 0, recv, local, 1,
                         ucx->slots + (size_t)p * ucx->chunk_bytes, clen, 1.0f);
        c->pfifo[(c->pfifo_head + c->pfifo_count) % (int)(sizeof(c->pfifo) / sizeof(c->pfifo[0]))] = p;
        c->pfifo_count++;
    } else if (c->d.kind == ZERO_COLL_REDUCE_SCATTER_SPLIT) {
        /* the caller adds its own block (reduce_split.h): keep the partial */
        size_t ps = x.step > 0 ? zero_comm_partial_size(c->d.dtype) : c->es;
        zero_comm_split_t *split = c->d.recvbuf;
        memcpy((unsigned char *)split->buf + x.chunk * c->ce * ps, recv, clen * ps);
    } else {
        unsigned char *out = c->d.kind == ZERO_COLL_ALLREDUCE ? out_base(c) + (off + x.chunk * c->ce) * c->es
                                                              : out_base(c) + x.chunk * c->ce * c->es;
        zero_comm_reduce(c->d.op, c->d.dtype, x.step > 0, recv, local, 0, out, clen,
                         c->d.op == ZERO_COMM_AVG ? (float)ucx->size : 1.0f);
    }
    ucx->recv_free[ucx->nrecv_free++] = e->slot;
    e->slot = -1;
    return 0;
}

/* What unit @p u sends: source and bytes; *dep_p: the unit that must be
 * processed first (UINT64_MAX: none); *partial_p: takes the next partial. */
static size_t send_spec(zero_ucx_t *ucx, uint64_t u, const void **src_p, uint64_t *dep_p, int *partial_p)
{
    coll_state_t *c = &ucx->c;
    unit_t x = unit_of(c, u);
    size_t off, len, clen;
    int b;
    *dep_p = UINT64_MAX;
    *partial_p = 0;
    switch (x.phase) {
    case PHASE_RS:
        b = mod((int64_t)ucx->rank - 1 - (int64_t)x.step, ucx->size);
        block_range(ucx, b, &off, &len);
        clen = chunk_len(c, len, x.chunk);
        if (x.step == 0) {
            *src_p = in_base(c) + (off + x.chunk * c->ce) * c->es;
            return clen * c->es;
        }
        *dep_p = u - 1;
        *partial_p = clen > 0;
        *src_p = NULL;
        return clen * zero_comm_partial_size(c->d.dtype);
    case PHASE_AG:
        b = mod((int64_t)ucx->rank - (int64_t)x.step, ucx->size);
        block_range(ucx, b, &off, &len);
        clen = chunk_len(c, len, x.chunk);
        if (x.step == 0 && c->d.kind != ZERO_COLL_ALLREDUCE) {
            *src_p = in_base(c) + x.chunk * c->ce * c->es;     /* our own block, from the input */
        } else {
            *src_p = out_base(c) + (off + x.chunk * c->ce) * c->es;
            *dep_p = u - 1;   /* the previous step's chunk (allreduce: its final reduction) */
        }
        return clen * c->es;
    default:   /* broadcast */
        if (ucx->right == c->d.root)
            return 0;
        clen = chunk_len(c, c->d.count, x.chunk);
        if (ucx->rank == c->d.root) {
            *src_p = (const unsigned char *)c->d.sendbuf + x.chunk * c->ce * c->es;
        } else {
            *src_p = out_base(c) + x.chunk * c->ce * c->es;
            *dep_p = u;
        }
        return clen * c->es;
    }
}

static void release_partial(zero_ucx_t *ucx, int p)
{
    if (p >= 0)
        ucx->part_free[ucx->npart_free++] = p;
}

static zero_status_t fail_peer(zero_ucx_t *ucx, int peer, ucs_status_t st, const char *what)
{
    coll_state_t *c = &ucx->c;
    zero_status_t status = st == UCS_ERR_MESSAGE_TRUNCATED ? ZERO_ERR_PROTOCOL : ZERO_ERR_COMM;
    ZERO_LOG_ERROR("%s (%zu x %s): %s rank %d failed: %s", zero_coll_name(c->d.kind), c->d.count,
                   zero_dtype_string(c->d.dtype), what, named(ucx, peer), ucs_status_string(st));
    return status;
}

/* Posts the send of unit @p u if its data is ready: ZERO_OK (posted or
 * nothing to send), ZERO_INPROGRESS (not ready), or an error. */
static zero_status_t post_send(zero_ucx_t *ucx, uint64_t u, int head, int *progressed_p, int *peer_p)
{
    coll_state_t *c = &ucx->c;
    const void *src = NULL;
    uint64_t dep;
    int partial, pslot = -1;
    size_t bytes = send_spec(ucx, u, &src, &dep, &partial);
    unit_t x = unit_of(c, u);
    ucp_request_param_t rp;
    void *req;

    if (dep != UINT64_MAX && (head || dep >= c->done_idx))
        return ZERO_INPROGRESS;
    if (partial) {
        int cap = (int)(sizeof(c->pfifo) / sizeof(c->pfifo[0]));
        pslot = c->pfifo[c->pfifo_head];
        c->pfifo_head = (c->pfifo_head + 1) % cap;
        c->pfifo_count--;
        src = ucx->slots + (size_t)pslot * ucx->chunk_bytes;
    }
    *progressed_p = 1;
    if (bytes == 0)
        return ZERO_OK;
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_MEMORY_TYPE;
    rp.memory_type = UCS_MEMORY_TYPE_HOST;
    req = ucp_tag_send_nbx(ucx->ep_right, src, bytes, make_tag(c->seq, x.phase, x.step, x.chunk), &rp);
    if (req == NULL) {
        release_partial(ucx, pslot);
    } else if (UCS_PTR_IS_ERR(req)) {
        release_partial(ucx, pslot);
        *peer_p = ucx->right;
        return fail_peer(ucx, ucx->right, UCS_PTR_STATUS(req), "sending to");
    } else {
        for (int i = 0; i < SEND_MAX; i++) {
            if (c->sends[i].req == NULL) {
                c->sends[i].req = req;
                c->sends[i].pslot = pslot;
                c->sends[i].head = head;
                break;
            }
        }
        c->nsends++;
        c->nheads += head;
    }
    return ZERO_OK;
}

/* The all-to-all's relay: one hop at a time (see the top of this file). */
static zero_status_t a2a_advance(zero_ucx_t *ucx, double now, double timeout_s, int *progressed_p, int *peer_p)
{
    coll_state_t *c = &ucx->c;
    size_t bytes = c->d.count * c->es;
    int n = ucx->size, r = ucx->rank;

    while (c->a2a.shift > 0) {
        int d = c->a2a.shift, h = c->a2a.hop;
        if (!c->a2a.posted) {
            /* hop 0 sends this rank's block for rank r + d; later hops forward
             * what the previous hop received. The last hop (h = d - 1) brings
             * the block of rank r - d for this rank. */
            const unsigned char *src = h == 0 ? (const unsigned char *)c->d.sendbuf + (size_t)mod(r + d, n) * bytes
                                              : c->a2a.scratch + (size_t)((h - 1) & 1) * bytes;
            unsigned char *dst = h == d - 1 ? (unsigned char *)c->d.recvbuf + (size_t)mod(r - d, n) * bytes
                                            : c->a2a.scratch + (size_t)(h & 1) * bytes;
            uint64_t tag = make_tag(c->seq, PHASE_A2A, c->a2a.index, 0);
            ucp_request_param_t rp;
            memset(&rp, 0, sizeof(rp));
            rp.op_attr_mask = UCP_OP_ATTR_FIELD_MEMORY_TYPE | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
            rp.memory_type = UCS_MEMORY_TYPE_HOST;
            c->a2a.recv_req = ucp_tag_recv_nbx(ucx->worker, dst, bytes, tag, UINT64_MAX, &rp);
            if (UCS_PTR_IS_ERR(c->a2a.recv_req)) {
                ucs_status_t st = UCS_PTR_STATUS(c->a2a.recv_req);
                c->a2a.recv_req = NULL;
                *peer_p = ucx->left;
                return fail_peer(ucx, ucx->left, st, "receiving from");
            }
            rp.op_attr_mask = UCP_OP_ATTR_FIELD_MEMORY_TYPE;
            c->a2a.send_req = ucp_tag_send_nbx(ucx->ep_right, src, bytes, tag, &rp);
            if (UCS_PTR_IS_ERR(c->a2a.send_req)) {
                ucs_status_t st = UCS_PTR_STATUS(c->a2a.send_req);
                c->a2a.send_req = NULL;
                *peer_p = ucx->right;
                return fail_peer(ucx, ucx->right, st, "sending to");
            }
            c->a2a.recv_done = 0;
            c->a2a.send_done = c->a2a.send_req == NULL;
            c->a2a.posted = 1;
            *progressed_p = 1;
        }
        if (!c->a2a.recv_done) {
            ucp_tag_recv_info_t info;
            ucs_status_t st = ucp_tag_recv_request_test(c->a2a.recv_req, &info);
            if (st == UCS_INPROGRESS)
                break;
            ucp_request_free(c->a2a.recv_req);
            c->a2a.recv_req = NULL;
            if (st != UCS_OK) {
                *peer_p = ucx->left;
                return fail_peer(ucx, ucx->left, st, "receiving from");
            }
            if (info.length != bytes) {
                ZERO_LOG_ERROR("all-to-all: rank %d sent %zu bytes where %zu were expected (do all ranks call the "
                               "same collectives with the same counts?)", named(ucx, ucx->left), info.length, bytes);
                *peer_p = ucx->left;
                return ZERO_ERR_PROTOCOL;
            }
            c->a2a.recv_done = 1;
            *progressed_p = 1;
        }
        if (!c->a2a.send_done) {
            ucs_status_t st = ucp_request_check_status(c->a2a.send_req);
            if (st == UCS_INPROGRESS)
                break;
            ucp_request_free(c->a2a.send_req);
            c->a2a.send_req = NULL;
            if (st != UCS_OK) {
                *peer_p = ucx->right;
                return fail_peer(ucx, ucx->right, st, "sending to");
            }
            c->a2a.send_done = 1;
            *progressed_p = 1;
        }
        c->a2a.posted = 0;
        c->a2a.index++;
        if (++c->a2a.hop == d) {
            c->a2a.hop = 0;
            c->a2a.shift--;
        }
    }
    if (*progressed_p)
        c->last_activity = now;
    if (c->a2a.shift == 0) {
        zero_free(c->a2a.scratch);
        c->a2a.scratch = NULL;
        c->active = 0;
        return ZERO_OK;
    }
    if (now - c->last_activity > timeout_s) {
        *peer_p = !c->a2a.recv_done ? ucx->left : ucx->right;
        ZERO_LOG_ERROR("all-to-all (%zu x %s): no progress for %.1f s waiting for rank %d (stuck or overloaded; "
                       "ZERO_COMM_TIMEOUT sets this bound)", c->d.count, zero_dtype_string(c->d.dtype), timeout_s,
                       named(ucx, *peer_p));
        return ZERO_ERR_TIMEOUT;
    }
    return ZERO_INPROGRESS;
}

zero_status_t zero_ucx_coll_advance(zero_ucx_t *ucx, double now, double timeout_s, int *progressed_p, int *peer_p)
{
    coll_state_t *c = &ucx->c;
    int W = ucx->inflight, progressed = 0;
    zero_status_t status;

    if (ucx->failed_peer >= 0) {
        *peer_p = ucx->failed_peer;
        return fail_peer(ucx, ucx->failed_peer, ucx->failed_status, "the connection to");
    }
    if (c->d.kind == ZERO_COLL_ALLTOALL) {
        return a2a_advance(ucx, now, timeout_s, progressed_p, peer_p);
    }
    /* 1. receives, up to W ahead of processing */
    while (c->post_idx < c->units_total && c->post_idx < c->done_idx + (uint64_t)W) {
        if ((status = post_recv(ucx, c->post_idx)) != ZERO_OK) {
            *peer_p = ucx->left;
            return status;
        }
        c->post_idx++;
        progressed = 1;
    }
    /* 2. process completed receives in order */
    while (c->done_idx < c->post_idx) {
        recv_entry_t *e = &c->recvs[c->done_idx % (uint64_t)W];
        if (e->req != NULL) {
            ucp_tag_recv_info_t info;
            ucs_status_t st = ucp_tag_recv_request_test(e->req, &info);
            if (st == UCS_INPROGRESS)
                break;
            ucp_request_free(e->req);
            e->req = NULL;
            if (st == UCS_OK && info.length != e->expect) {
                ZERO_LOG_ERROR("%s: rank %d sent %zu bytes where %zu were expected (do all ranks call the "
                               "same collectives with the same counts?)", zero_coll_name(c->d.kind), named(ucx, ucx->left),
                               info.length, e->expect);
                *peer_p = ucx->left;
                return ZERO_ERR_PROTOCOL;
            }
            if (st != UCS_OK) {
                *peer_p = ucx->left;
                return fail_peer(ucx, ucx->left, st, "receiving from");
            }
        }
        if (process_unit(ucx, c->done_idx, e) != 0)
            break;
        c->done_idx++;
        progressed = 1;
    }
    /* 3. sends whose data is ready, in unit order */
    while (c->send_idx < c->units_total && c->nsends < SEND_MAX - W) {
        uint64_t u = c->send_idx;
        if (u % c->group == 0 && u / c->group < c->head_k) {
            c->send_idx++;      /* posted ahead */
            continue;
        }
        status = post_send(ucx, u, 0, &progressed, peer_p);
        if (status == ZERO_INPROGRESS)
            break;
        if (status != ZERO_OK)
            return status;
        if (u % c->group == 0)
            c->head_k = u / c->group + 1;
        c->send_idx++;
    }
    /* 3b. the first send of the next chunk groups, ahead of order */
    if (c->head_k * c->group < c->send_idx)
        c->head_k = (c->send_idx + c->group - 1) / c->group;
    while (c->head_k < c->k && c->head_k < c->done_idx / c->group + (uint64_t)W && c->nheads < W &&
           c->nsends < SEND_MAX) {
        status = post_send(ucx, c->head_k * c->group, 1, &progressed, peer_p);
        if (status == ZERO_INPROGRESS)
            break;      /* this collective's heads depend on a receive (broadcast off the root) */
        if (status != ZERO_OK)
            return status;
        c->head_k++;
    }
    /* 4. completed sends */
    for (int i = 0; i < SEND_MAX && c->nsends > 0; i++) {
        ucs_status_t st;
        if (c->sends[i].req == NULL)
            continue;
        st = ucp_request_check_status(c->sends[i].req);
        if (st == UCS_INPROGRESS)
            continue;
        ucp_request_free(c->sends[i].req);
        c->sends[i].req = NULL;
        release_partial(ucx, c->sends[i].pslot);
        if (c->sends[i].head)
            c->nheads--;
        c->nsends--;
        progressed = 1;
        if (st != UCS_OK) {
            *peer_p = ucx->right;
            return fail_peer(ucx, ucx->right, st, "sending to");
        }
    }
    /* Our own block into the output, while the first chunks are on the wire. */
    if (c->local_copy_pending) {
        size_t bytes = c->d.count * c->es;
        unsigned char *dst = c->d.kind == ZERO_COLL_BROADCAST ? out_base(c)
                                                              : out_base(c) + (size_t)ucx->rank * bytes;
        memcpy(dst, c->d.sendbuf, bytes);
        c->local_copy_pending = 0;
    }
    *progressed_p = progressed;
    if (progressed)
        c->last_activity = now;
    if (c->done_idx == c->units_total && c->send_idx == c->units_total && c->nsends == 0) {
        zero_free(c->barrier_out);
        c->barrier_out = NULL;
        c->active = 0;
        return ZERO_OK;
    }
    if (now - c->last_activity > timeout_s) {
        int waiting_recv = c->done_idx < c->post_idx;
        *peer_p = waiting_recv ? ucx->left : ucx->right;
        ZERO_LOG_ERROR("%s (%zu x %s): no progress for %.1f s waiting for rank %d (stuck or overloaded; "
                       "ZERO_COMM_TIMEOUT sets this bound)", zero_coll_name(c->d.kind), c->d.count,
                       zero_dtype_string(c->d.dtype), timeout_s, named(ucx, *peer_p));
        return ZERO_ERR_TIMEOUT;
    }
    return ZERO_INPROGRESS;
}

void zero_ucx_coll_abort(zero_ucx_t *ucx)
{
    coll_state_t *c = &ucx->c;
    if (!c->active)
        return;
    if (c->a2a.recv_req != NULL) {
        ucp_request_cancel(ucx->worker, c->a2a.recv_req);
        ucp_request_free(c->a2a.recv_req);
        c->a2a.recv_req = NULL;
    }
    if (c->a2a.send_req != NULL) {
        ucp_request_free(c->a2a.send_req);
        c->a2a.send_req = NULL;
    }
    zero_free(c->a2a.scratch);
    c->a2a.scratch = NULL;
    for (uint64_t u = c->done_idx; u < c->post_idx; u++) {
        recv_entry_t *e = &c->recvs[u % (uint64_t)ucx->inflight];
        if (e->req != NULL) {
            ucp_request_cancel(ucx->worker, e->req);
            ucp_request_free(e->req);      /* released by UCX once the cancel lands */
            e->req = NULL;
        }
        if (e->slot >= 0)
            ucx->recv_free[ucx->nrecv_free++] = e->slot;
        e->slot = -1;
    }
    for (int i = 0; i < SEND_MAX; i++) {
        if (c->sends[i].req != NULL) {
            /* A send cannot be cancelled; the slot stays allocated until destroy. */
            ucp_request_free(c->sends[i].req);
            c->sends[i].req = NULL;
        }
    }
    c->nsends = 0;
    c->nheads = 0;
    zero_free(c->barrier_out);
    c->barrier_out = NULL;
    c->active = 0;
}

/* ---- the ring as a communicator backend (comm/backend.h) ---- */

static int ring_accepts(const zero_comm_t *comm, const zero_coll_desc_t *d)
{
    return comm->env.size > 1 && d->mem_kind != ZERO_MEM_DEVICE;
}

static zero_status_t ring_start(zero_comm_t *comm, zero_comm_request_h req, int *declined_p, int *peer_p)
{
    zero_status_t status = zero_ucx_coll_start(comm->ucx, &req->desc, req->seq);
    *declined_p = 0;
    if (status != ZERO_OK)
        *peer_p = comm->env.rank;   /* this rank cannot take part: the others would wait for it forever */
    return status;
}

static zero_status_t ring_advance(zero_comm_t *comm, zero_comm_request_h req, double now, int *progressed_p,
                                  int *peer_p)
{
    (void)req;
    *progressed_p = zero_ucx_progress(comm->ucx) > 0;
    return zero_ucx_coll_advance(comm->ucx, now, comm->cfg.timeout_s, progressed_p, peer_p);
}

static void ring_abort(zero_comm_t *comm, zero_comm_request_h req)
{
    if (req->backend_started)
        zero_ucx_coll_abort(comm->ucx);
}

static unsigned ring_idle(zero_comm_t *comm)
{
    return comm->ucx != NULL ? zero_ucx_progress(comm->ucx) : 0;
}

static int ring_pollfds(zero_comm_t *comm, struct pollfd *fds, int max)
{
    if (comm->ucx == NULL || zero_ucx_efd(comm->ucx) < 0 || max < 1)
        return 0;
    if (!zero_ucx_arm(comm->ucx))
        return -1;   /* events are waiting */
    fds[0] = (struct pollfd){zero_ucx_efd(comm->ucx), POLLIN, 0};
    return 1;
}

const zero_comm_backend_ops_t zero_comm_backend_ucx = {
    .name = "ucx",
    .enable_bit = ZERO_COMM_BACKEND_UCX,
    .accepts = ring_accepts,
    .start = ring_start,
    .advance = ring_advance,
    .abort = ring_abort,
    .idle = ring_idle,
    .pollfds = ring_pollfds,
    .wakes_through_fds = 1,
    .failures_may_echo = 1,
};
