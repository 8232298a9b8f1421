/*
 * The remote store: a rank's optimizer state on zero-optd servers
 * (optd_server.c), reached over UCX tagged messages (docs/optd.md).
 *
 * Each group's elements are split over the servers in contiguous pieces
 * (zero_split_range), so server s holds [lo, hi) of every group and never
 * sees the rest. A step or a transfer is cut per server piece and into
 * messages of at most CHUNK elements; up to `window` messages are in flight
 * (ring of request slots, completed in submission order), so the transfer of
 * one message overlaps the server's step of the one before, and pieces on
 * different servers proceed at once. Every wait is bounded by timeout_s and
 * watches the endpoints' failure flags: a server that dies or stalls is an
 * error naming it, after which the store refuses further use.
 *
 * Lamb runs on the servers in its two phases (docs/optd.md, "Lamb on the
 * server"): LAMB1 messages start at multiples of the caller's kernel chunk
 * from the range's start and their replies carry each chunk's sums, which
 * complete_oldest adds up in order, as the caller's own kernel adds them; the
 * split over servers is cut at such multiples too (the split hint).
 *
 * On the server's host STEP goes through the server's region on the data
 * connection when both ends allow it (map_region, step_piece_region;
 * docs/optd.md, "One-sided on one host: the region"): the gradient is
 * copied into a slot of the server's shared memory, only the header travels
 * as a message, and the weights are copied out of the slot when the reply
 * comes. Everything else, and everything over TCP, is tagged messages.
 */
#define ZERO_LOG_MODULE "offload"
#include "offload/store_remote.h"
#include "offload/optd_door.h"
#include "offload/optd_ucx.h"
#include "offload/optd_wire.h"
#include "util/alloc.h"
#include "util/byteorder.h"
#include "util/checks_ucx.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/thread_pool.h"

#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

/* Elements per message: small enough that the request slots stay a few MiB,
 * and that the weights' direction trails the gradients' by little: a reply
 * leaves only after its whole message arrived and was stepped, so a step
 * lasts at least the link time plus one message's upload and step (at
 * 10 Gbit/s, 0.63 ms here; 2.5 ms with 1 Mi elements, which would save the
 * two ends 1.6 ms of CPU per 4 Mi-element step in rendezvous handshakes:
 * docs/optd.md, "Where the CPU goes over TCP"). */
#define CHUNK ((size_t)1 << 18)
#define SLOT_TX_BYTES (ZERO_OPTD_HEADER_BYTES + ZERO_OPTD_MAX_HEAD + CHUNK * sizeof(float))
/* A reply's header message: the header and at most LAMB1's chunk sums (an
 * error's text is shorter); arrays come as their own message (split replies) */
#define SLOT_RX_BYTES (ZERO_OPTD_HEADER_BYTES + CHUNK / 64 * 2 * sizeof(double))
#define MAX_WINDOW 32

typedef struct server_link {
    struct remote_store *store;
    char *addr;                       /* "host:port" as configured */
    int index;
    ucp_ep_h ep;                      /* the control connection: peer-failure mode, so a dead server is seen */
    uint64_t key;                     /* from the doorway's answer */
    /* Same host: a second connection, on the store's shared-memory-only
     * context and without peer-failure mode (UCX 1.13 gives only such
     * endpoints shared memory), which then carries every request; the
     * control connection stays open as the server's pulse. NULL: requests
     * go on ep. */
    ucp_ep_h data_ep;
    uint64_t data_key;
    unsigned char hello_reply[ZERO_OPTD_HELLO_REPLY_BODY];
    /* The data connection's set-up messages live here, not on connect_data's
     * stack: a send to a dead server on it may outlive the call (request_done). */
    unsigned char data_msg[ZERO_OPTD_HEADER_BYTES + ZERO_OPTD_ATTACH_BODY];
    unsigned char data_reply[ZERO_OPTD_HEADER_BYTES + ZERO_OPTD_ATTACH_REPLY_HEAD + ZERO_OPTD_MAX_RKEY];
    /* The server's region for the data connection, mapped here (map_region;
     * docs/optd.md, "One-sided on one host"): request slot k's STEP puts its
     * gradient in region slot k and finds the weights there, and only the
     * header travels. NULL: STEP goes as tagged messages. */
    ucp_rkey_h rkey;
    unsigned char *region;
    size_t region_slot_bytes, region_half;   /* a slot's bytes; the weights' offset in it */
    size_t region_bytes;              /* of it, mapped and backed here (the window's slots); 0: none */
    int failed;                       /* set by the endpoint's error handler */
    ucs_status_t failed_status;
    size_t lo[ZERO_DTYPE_COUNT], hi[ZERO_DTYPE_COUNT];   /* its piece of each group */
} server_link_t;

typedef struct request_slot {
    int busy;
    int server;
    uint32_t type;
    uint64_t seq, key;                /* key: the connection's it went on (the reply carries it) */
    unsigned char *tx, *rx;
    size_t tx_len;
    ucp_worker_h worker;              /* the one its requests are on (the data connection's or the control's) */
    void *send_req, *recv_req;
    int split;                        /* the reply's array comes on its own (STEP, LAMB2, READ: optd_wire.h) */
    void *data_req;                   /* the receive of a split reply's array straight into out */
    ucp_tag_recv_info_t info, data_info;   /* the sizes of the reply and of its array, once received */
    void *out;                        /* where the reply body goes (split: the caller's buffer); NULL: none expected */
    size_t out_bytes;
    double *sums;                     /* LAMB1: the range's two sums the reply's chunk sums are added to */
    /* STEP_REGION: the weights in the server's region slot, copied into
     * region_out (the caller's) by complete_oldest once the reply says they
     * are there; NULL: not a region request */
    const unsigned char *region_in;
    void *region_out;
    size_t region_bytes;
    /* A STEP's or LAMB1's gradient, sent from the caller's memory as a
     * message of its own (a split request, version 6: send_request), not
     * copied into tx; NULL: tx holds the whole message */
    const void *tail;
    size_t tail_bytes;
    void *grad_req;                   /* its send; UCX reads the caller's gradient until it ends */
} request_slot_t;

typedef struct remote_store {
    zero_store_t base;
    zero_store_remote_opts_t opts;
    /* [CTL]: every control connection (peer-failure mode, UCX's own
     * transports); [DATA]: the context of the same-host data connections,
     * shared memory only (optd_ucx.h says why), opened with the first of
     * them; it keeps no worker of its own */
    zero_optd_ucx_t ucx[2];
    /* [s]: the worker of server s's data connection (no context of its own;
     * empty: none). One per server: a server killed mid-send then stops
     * only its FIFO (until version 8 it also carried that server's ticket
     * as UCX client id). */
    zero_optd_ucx_t *data_w;
    struct pollfd *pfd;               /* room for every worker's event descriptor (sleep_on_worker) */
    server_link_t *links;
    int num_links;
    request_slot_t slots[MAX_WINDOW];
    int window, head, inflight;       /* slots[head] is the oldest in flight */
    uint64_t next_seq;
    zero_status_t failed;             /* not ZERO_OK: a server failed; the store is unusable */
    zero_store_remote_stats_t stats;
} remote_store_t;

#define CTL 0
#define DATA 1

/* Progresses every worker; returns whether anything happened. */
static int progress(remote_store_t *r)
{
    int moved = zero_optd_ucx_progress(r->ucx, 2);
    return zero_optd_ucx_progress(r->data_w, r->num_links) | moved;
}

static void link_error_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    server_link_t *l = arg;
    (void)ep;
    if (!l->failed) {
        l->failed = 1;
        l->failed_status = status;
    }
}

/* Releases @p req, cancelling it if it is still in flight. A send to a
 * dead server on the data connection (no peer-failure mode) never ends and
 * cannot be cancelled, so the wait is short and the request is freed
 * anyway (UCX lets it finish, or drops it when the endpoint closes; its
 * buffer, a slot, lives until then). */
static void request_done(remote_store_t *r, ucp_worker_h worker, void **req)
{
    if (*req != NULL && !UCS_PTR_IS_ERR(*req)) {
        if (ucp_request_check_status(*req) == UCS_INPROGRESS) {
            double until = zero_clock_now() + 0.05;
            ucp_request_cancel(worker, *req);
            while (ucp_request_check_status(*req) == UCS_INPROGRESS && zero_clock_now() < until)
                progress(r);
        }
        ucp_request_free(*req);
    }
    *req = NULL;
}

static zero_status_t fail_store(remote_store_t *r, zero_status_t status)
{
    if (r->failed == ZERO_OK)
        r->failed = status;
    return status;
}

static zero_status_t settle(remote_store_t *r, zero_status_t status);

static const char *link_failure(const server_link_t *l)
{
    return ucs_status_string(l->failed_status);
}

/* A wait spins on the worker this long after the last event before it
 * sleeps on the worker's event descriptor: a reply that is already on its way
 * is taken without a wake-up, and a slow one (the server stepping, a loaded
 * machine) does not cost a core. */
#define SPIN_S 20e-6
/* A sleeping wait wakes at least this often to run the worker's progress
 * (keepalive, the endpoints' error handlers) and check its deadline, so a
 * dead or stalled server is still seen within the bound. */
#define SLEEP_SLICE_MS 10
/* What a wait sleeps when UCX reports events pending but progress finds none. */
#define BUSY_PAUSE_S 50e-6

/* Waits for events on the workers, for at most SLEEP_SLICE_MS or until
 * @p deadline, without using the CPU. */
static void sleep_on_worker(remote_store_t *r, double deadline)
{
    double left_ms = (deadline - zero_clock_now()) * 1e3;
    /* never below 0: poll takes a negative timeout as forever */
    int ms = left_ms <= 0 ? 0 : left_ms < SLEEP_SLICE_MS ? (int)left_ms + 1 : SLEEP_SLICE_MS;
    struct pollfd *pfd = r->pfd;
    int n = zero_optd_ucx_arm(r->ucx, 2, pfd);
    if (n >= 0) {
        int m = zero_optd_ucx_arm(r->data_w, r->num_links, pfd + n);
        n = m < 0 ? m : n + m;
    }
    if (n == -1) {
        /* "events pending", yet progress found none: on the data
         * connection this is a send waiting for room in the server's
         * shared-memory FIFO, which only the server's progress frees. Spinning
         * here took the core the server needed (a 5-20x slower step on the
         * loaded 2-core machine): give it up for a moment instead. */
        zero_clock_sleep(BUSY_PAUSE_S);
        return;
    }
    if (n < 0) {
        zero_clock_sleep(1e-4);   /* no event descriptor: poll gently */
        return;
    }
    r->stats.sleeps++;
    if (poll(pfd, (nfds_t)n, ms) == 0)
        r->stats.sleep_timeouts++;
}

/* Waits until @p req completes (NULL: already done), the link fails or the
 * deadline passes (*timed_out set). Returns the request's status or the
 * link's failure. Spins briefly, then sleeps on the workers' event
 * descriptors (see SPIN_S). */
static ucs_status_t wait_request(remote_store_t *r, server_link_t *l, void *req, double deadline, int *timed_out)
{
    ucs_status_t st;
    double last_event = zero_clock_now();
    *timed_out = 0;
    if (req == NULL)
        return UCS_OK;
    if (UCS_PTR_IS_ERR(req))
        return UCS_PTR_STATUS(req);
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS) {
        double now;
        if (l->failed)
            return l->failed_status;
        now = zero_clock_now();
        if (now >= deadline) {
            *timed_out = 1;
            return UCS_ERR_TIMED_OUT;
        }
        if (progress(r))
            last_event = now;
        else if (now - last_event > SPIN_S)
            sleep_on_worker(r, deadline);
    }
    return st;
}

/* wait_request for the store's requests: what went wrong is logged, naming
 * the server, and fails the store. */
static zero_status_t wait_on(remote_store_t *r, server_link_t *l, void *req, double deadline, const char *what)
{
    int timed_out;
    ucs_status_t st = wait_request(r, l, req, deadline, &timed_out);
    if (timed_out) {
        ZERO_LOG_ERROR("remote store: optimizer server %s (server %d of %d) did not answer %s within %.1f s",
                       l->addr, l->index, r->num_links, what, r->opts.timeout_s);
        return fail_store(r, ZERO_ERR_TIMEOUT);
    }
    if (st != UCS_OK) {
        ZERO_LOG_ERROR("remote store: optimizer server %s (server %d of %d) failed %s: %s", l->addr, l->index,
                       r->num_links, what, l->failed ? link_failure(l) : ucs_status_string(st));
        return fail_store(r, ZERO_ERR_COMM);
    }
    return ZERO_OK;
}

static const char *type_name(uint32_t type)
{
    switch (type) {
    case ZERO_OPTD_HELLO: return "HELLO";
    case ZERO_OPTD_STEP: return "STEP";
    case ZERO_OPTD_STEP_REGION: return "STEP";
    case ZERO_OPTD_READ: return "READ";
    case ZERO_OPTD_WRITE: return "WRITE";
    case ZERO_OPTD_BYE: return "BYE";
    case ZERO_OPTD_LAMB1: return "LAMB1";
    case ZERO_OPTD_LAMB2: return "LAMB2";
    default: return "?";
    }
}

/* LAMB1's reply: @p nchunks sums of w^2, then as many of u^2, one per chunk
 * in order. Added to the range's sums one at a time in that order, as
 * zero_optim_lamb_phase1 adds its chunks' partials (from 0.0, set when the
 * range was submitted; its messages complete in range order), so the
 * range's sums are that function's bit for bit. */
static void add_chunk_sums(double *sums, const unsigned char *body, size_t nchunks)
{
    for (size_t i = 0; i < nchunks; i++) {
        uint64_t w = zero_get_le64(body + 8 * i), u = zero_get_le64(body + 8 * (nchunks + i));
        double wd, ud;
        memcpy(&wd, &w, sizeof(wd));
        memcpy(&ud, &u, sizeof(ud));
        sums[0] += wd;
        sums[1] += ud;
    }
}

/* Releases @p q's requests (cancelling those still in flight). */
static void release_slot(remote_store_t *r, request_slot_t *q)
{
    request_done(r, q->worker, &q->send_req);
    request_done(r, q->worker, &q->grad_req);
    request_done(r, q->worker, &q->data_req);
    request_done(r, q->worker, &q->recv_req);
    q->busy = 0;
}

/* Finishes the oldest request in flight: its reply checked and its body delivered. */
static zero_status_t complete_oldest(remote_store_t *r)
{
    request_slot_t *q = &r->slots[r->head];
    server_link_t *l = &r->links[q->server];
    double deadline = zero_clock_now() + r->opts.timeout_s;
    zero_status_t status;
    zero_optd_header_t h;
    zero_optd_parse_t v;
    char what[64];

    snprintf(what, sizeof(what), "a %s request", type_name(q->type));
    if (r->failed != ZERO_OK) {
        /* an earlier request failed: abandon this one rather than wait for
         * it too, so that a step_wait over a full window of requests to a
         * stalled server ends within one timeout_s, not window x timeout_s */
        status = r->failed;
        goto out;
    }
    status = wait_on(r, l, q->send_req, deadline, what);
    if (status == ZERO_OK)
        status = wait_on(r, l, q->grad_req, deadline, what);
    if (status == ZERO_OK)
        status = wait_on(r, l, q->recv_req, deadline, what);
    if (status != ZERO_OK)
        goto out;
    if (q->recv_req != NULL && ucp_tag_recv_request_test(q->recv_req, &q->info) != UCS_OK)
        q->info.length = 0;   /* NULL: completed at once, q->info filled by UCX */
    v = zero_optd_decode_header(q->rx, q->info.length, 1, &h);
    if (v != ZERO_OPTD_PARSE_OK || (h.type & ~(ZERO_OPTD_REPLY | ZERO_OPTD_SPLIT)) != q->type || h.seq != q->seq ||
        h.conn_key != q->key) {
        if (v == ZERO_OPTD_PARSE_OK && h.status != 0 && h.body_len <= ZERO_OPTD_MAX_TEXT)
            goto refused;   /* an error reply to a message the server could not read */
        ZERO_LOG_ERROR("remote store: optimizer server %s sent a bad reply to %s: %s", l->addr, what,
                       v != ZERO_OPTD_PARSE_OK ? zero_optd_parse_string(v) : "another request's reply");
        status = fail_store(r, ZERO_ERR_PROTOCOL);
        goto out;
    }
    if (h.status != 0)
        goto refused;
    if (h.body_len != q->out_bytes || ((h.type & ZERO_OPTD_SPLIT) != 0) != q->split) {
        ZERO_LOG_ERROR("remote store: optimizer server %s answered %s with %u bytes%s, %zu expected", l->addr, what,
                       h.body_len, (h.type & ZERO_OPTD_SPLIT) ? " to follow" : "", q->out_bytes);
        status = fail_store(r, ZERO_ERR_PROTOCOL);
        goto out;
    }
    if (q->split) {   /* the array, received straight into the caller's buffer */
        status = wait_on(r, l, q->data_req, deadline, what);
        if (status != ZERO_OK)
            goto out;
        if (q->data_req != NULL && ucp_tag_recv_request_test(q->data_req, &q->data_info) != UCS_OK)
            q->data_info.length = 0;
        if (q->data_info.length != q->out_bytes) {
            ZERO_LOG_ERROR("remote store: optimizer server %s sent %zu bytes of %s's %zu", l->addr,
                           q->data_info.length, what, q->out_bytes);
            status = fail_store(r, ZERO_ERR_PROTOCOL);
            goto out;
        }
    } else if (q->out != NULL) {
        memcpy(q->out, q->rx + ZERO_OPTD_HEADER_BYTES, q->out_bytes);   /* HELLO's few bytes */
    } else if (q->sums != NULL) {
        add_chunk_sums(q->sums, q->rx + ZERO_OPTD_HEADER_BYTES, q->out_bytes / (2 * sizeof(double)));
    } else if (q->region_in != NULL) {
        /* this thread's copy, and only after the reply: nothing writes into
         * the caller's weights once a failed call has returned */
        memcpy(q->region_out, q->region_in, q->region_bytes);
        r->stats.bytes_received += q->region_bytes;
    }
    r->stats.bytes_received += ZERO_OPTD_HEADER_BYTES + h.body_len;
    goto out;
refused:
    ZERO_LOG_ERROR("remote store: optimizer server %s refused %s: %.*s", l->addr, what, (int)h.body_len,
                   (const char *)q->rx + ZERO_OPTD_HEADER_BYTES);
    status = fail_store(r, h.status < 0 && h.status >= ZERO_ERR_INTERNAL ? (zero_status_t)h.status : ZERO_ERR_COMM);
out:
    release_slot(r, q);
    r->head = (r->head + 1) % r->window;
    r->inflight--;
    return status;
}

static zero_status_t complete_all(remote_store_t *r)
{
    zero_status_t first = ZERO_OK;
    while (r->inflight > 0) {
        zero_status_t status = complete_oldest(r);
        if (first == ZERO_OK)
            first = status;
    }
    return first;
}

/* A free slot for a request to @p server (completing the oldest when full). */
static zero_status_t take_slot(remote_store_t *r, int server, request_slot_t **slot_p)
{
    zero_status_t status = ZERO_OK;
    if (r->inflight == r->window)
        status = complete_oldest(r);
    if (status != ZERO_OK)
        return status;
    *slot_p = &r->slots[(r->head + r->inflight) % r->window];
    (*slot_p)->server = server;
    (*slot_p)->sums = NULL;
    (*slot_p)->region_in = NULL;
    (*slot_p)->tail = NULL;
    (*slot_p)->tail_bytes = 0;
    return ZERO_OK;
}

/* Sends @p q's request on @p key: tx alone, or for a split request tx (the
 * header and the head) and then the gradient from the caller's memory on
 * key | ZERO_OPTD_TAG_DATA (docs/optd.md, "The gradient's own message").
 * Not one message of two parts (UCP_DATATYPE_IOV): UCX 1.13 sends such a
 * message's rendezvous through bounce buffers (ucp_rndv_progress_am_bcopy,
 * ucp_dt_iov_gather), a copy on each side, which cost more than the copy it
 * saves (measured there). */
static void send_request(ucp_ep_h ep, request_slot_t *q, uint64_t key)
{
    ucp_request_param_t rp;
    memset(&rp, 0, sizeof(rp));
    q->send_req = ucp_tag_send_nbx(ep, q->tx, q->tx_len, key, &rp);
    q->grad_req = NULL;
    if (q->tail != NULL && !UCS_PTR_IS_ERR(q->send_req)) {
        memset(&rp, 0, sizeof(rp));
        q->grad_req = ucp_tag_send_nbx(ep, q->tail, q->tail_bytes, key | ZERO_OPTD_TAG_DATA, &rp);
    }
}

/* Sends the message in @p q->tx (body of @p body_len already written after
 * the header, but for a split request's gradient, q->tail) with its reply
 * receive posted first. UCX cannot cancel a send (one to a stalled server
 * on the data connection stays queued, and a forced close does not purge
 * it), and the gradient's is read from the caller's buffer: the transports
 * used read it only inside this thread's progress calls, and every public
 * call a failure ends settles (shuts the workers down) before it returns,
 * so nothing reads it after the caller has it back (store.h's contract:
 * valid until step_wait, or the failing call, returns). */
static zero_status_t submit(remote_store_t *r, request_slot_t *q, uint32_t type, uint32_t body_len, void *out,
                            size_t out_bytes)
{
    server_link_t *l = &r->links[q->server];
    ucp_ep_h ep = l->data_ep != NULL ? l->data_ep : l->ep;
    ucp_worker_h worker = l->data_ep != NULL ? r->data_w[l->index].worker : r->ucx[CTL].worker;
    uint64_t key = l->data_ep != NULL ? l->data_key : l->key;
    zero_optd_header_t h = {.version = ZERO_OPTD_VERSION, .type = type | (q->tail != NULL ? ZERO_OPTD_SPLIT : 0u),
                            .status = 0, .body_len = body_len, .conn_key = key, .seq = r->next_seq++};
    ucp_request_param_t rp;

    if (l->failed) {
        ZERO_LOG_ERROR("remote store: optimizer server %s (server %d of %d) failed: %s", l->addr, l->index,
                       r->num_links, link_failure(l));
        return fail_store(r, ZERO_ERR_COMM);
    }
    zero_optd_encode_header(q->tx, &h);
    q->type = type;
    q->seq = h.seq;
    q->key = key;
    q->worker = worker;
    q->out = out;
    q->out_bytes = out_bytes;
    q->tx_len = ZERO_OPTD_HEADER_BYTES + body_len - q->tail_bytes;
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_RECV_INFO;
    rp.recv_info.tag_info = &q->info;
    q->info.length = 0;
    q->recv_req = ucp_tag_recv_nbx(worker, q->rx, SLOT_RX_BYTES, key | ZERO_OPTD_TAG_REPLY, ~(ucp_tag_t)0, &rp);
    q->data_req = NULL;
    q->data_info.length = 0;
    q->split = out != NULL && (type == ZERO_OPTD_STEP || type == ZERO_OPTD_LAMB2 || type == ZERO_OPTD_READ);
    if (q->split) {
        /* The reply's array lands in the caller's buffer, in this thread's
         * progress calls only (shared memory without cma, tcp): a failed
         * store stops those before the caller has its buffer back (settle). */
        memset(&rp, 0, sizeof(rp));
        rp.op_attr_mask = UCP_OP_ATTR_FIELD_RECV_INFO;
        rp.recv_info.tag_info = &q->data_info;
        q->data_req = ucp_tag_recv_nbx(worker, out, out_bytes, key | ZERO_OPTD_TAG_REPLY | ZERO_OPTD_TAG_DATA,
                                       ~(ucp_tag_t)0, &rp);
    }
    send_request(ep, q, key);
    q->busy = 1;
    r->inflight++;
    r->stats.bytes_sent += q->tx_len + q->tail_bytes;
    r->stats.messages++;
    return ZERO_OK;
}

static zero_status_t check_usable(remote_store_t *r, const char *what)
{
    if (r->failed != ZERO_OK) {
        ZERO_LOG_ERROR("remote store: %s refused: an optimizer server failed earlier (%s); resume from the last "
                       "checkpoint", what, zero_status_string(r->failed));
        return r->failed;
    }
    return ZERO_OK;
}

/* For each piece of [begin, begin + count) of @p group of at most @p unit
 * elements (cut at multiples of it from where the range enters a server's
 * piece): the server, its local offset, the offset within the range, the
 * size. Servers hold ascending pieces, so the pieces come in range order. */
typedef zero_status_t (*piece_fn)(remote_store_t *r, int server, size_t local, size_t offset, size_t n, void *arg);

static zero_status_t for_each_piece(remote_store_t *r, int group, size_t begin, size_t count, size_t unit,
                                    piece_fn fn, void *arg)
{
    size_t end = begin + count;
    for (int s = 0; s < r->num_links; s++) {
        const server_link_t *l = &r->links[s];
        size_t lo = begin > l->lo[group] ? begin : l->lo[group];
        size_t hi = end < l->hi[group] ? end : l->hi[group];
        for (size_t at = lo; at < hi; at += unit) {
            size_t n = hi - at < unit ? hi - at : unit;
            zero_status_t status = fn(r, s, at - l->lo[group], at - begin, n, arg);
            if (status != ZERO_OK)
                return status;
        }
    }
    return ZERO_OK;
}

typedef struct transfer_arg {
    int group, field;
    float *data;    /* the range's values of the field */
} transfer_arg_t;

static zero_status_t read_piece(remote_store_t *r, int server, size_t local, size_t offset, size_t n, void *arg)
{
    const transfer_arg_t *t = arg;
    zero_optd_range_t rr = {.group = (uint32_t)t->group, .field = (uint32_t)t->field, .begin = local, .count = n};
    request_slot_t *q;
    zero_status_t status = take_slot(r, server, &q);
    if (status != ZERO_OK)
        return status;
    zero_optd_encode_range_head(q->tx + ZERO_OPTD_HEADER_BYTES, &rr);
    return submit(r, q, ZERO_OPTD_READ, ZERO_OPTD_RANGE_HEAD, t->data + offset, n * sizeof(float));
}

static zero_status_t write_piece(remote_store_t *r, int server, size_t local, size_t offset, size_t n, void *arg)
{
    const transfer_arg_t *t = arg;
    zero_optd_range_t rr = {.group = (uint32_t)t->group, .field = (uint32_t)t->field, .begin = local, .count = n};
    request_slot_t *q;
    zero_status_t status = take_slot(r, server, &q);
    if (status != ZERO_OK)
        return status;
    zero_optd_encode_range_head(q->tx + ZERO_OPTD_HEADER_BYTES, &rr);
    memcpy(q->tx + ZERO_OPTD_HEADER_BYTES + ZERO_OPTD_RANGE_HEAD, t->data + offset, n * sizeof(float));
    return submit(r, q, ZERO_OPTD_WRITE, (uint32_t)(ZERO_OPTD_RANGE_HEAD + n * sizeof(float)), NULL, 0);
}

static zero_status_t remote_acquire(zero_store_t *store, zero_store_range_t *range)
{
    remote_store_t *r = (remote_store_t *)store;
    zero_status_t status = check_usable(r, "acquire");
    float *block;
    int nfields = 0;
    if (status != ZERO_OK)
        return status;
    for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
        nfields += (range->fields & ZERO_STORE_FIELD_BIT(f)) != 0;
    block = zero_malloc((range->count ? range->count : 1) * (size_t)nfields * sizeof(float));
    if (block == NULL) {
        ZERO_LOG_ERROR("remote store: out of memory for a %zu-element range of %d fields", range->count, nfields);
        return ZERO_ERR_NO_MEMORY;
    }
    range->impl = block;
    for (int f = 0, k = 0; f < ZERO_STORE_NUM_FIELDS && status == ZERO_OK; f++) {
        transfer_arg_t t = {.group = range->group, .field = f, .data = block + (size_t)k * range->count};
        if (!(range->fields & ZERO_STORE_FIELD_BIT(f)))
            continue;
        range->data[f] = t.data;
        k++;
        status = for_each_piece(r, range->group, range->begin, range->count, CHUNK, read_piece, &t);
    }
    if (status == ZERO_OK)
        status = complete_all(r);
    else
        (void)complete_all(r);
    status = settle(r, status);   /* before the block is freed: READ replies land in it */
    if (status != ZERO_OK) {
        zero_free(block);
        range->impl = NULL;
    }
    return status;
}

static zero_status_t remote_release(zero_store_t *store, zero_store_range_t *range, int dirty)
{
    remote_store_t *r = (remote_store_t *)store;
    zero_status_t status = ZERO_OK;
    if (dirty) {
        status = check_usable(r, "a dirty release");
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS && status == ZERO_OK; f++) {
            transfer_arg_t t = {.group = range->group, .field = f, .data = range->data[f]};
            if (range->data[f] != NULL)
                status = for_each_piece(r, range->group, range->begin, range->count, CHUNK, write_piece, &t);
        }
        if (status == ZERO_OK)
            status = complete_all(r);
        else
            (void)complete_all(r);
        status = settle(r, status);
    }
    zero_free(range->impl);
    range->impl = NULL;
    return status;
}

typedef struct step_arg {
    const zero_store_async_step_t *step;
    zero_optd_step_t wire;
    size_t grad_es, weight_es;
} step_arg_t;

/* STEP over the server's region (map_region): the gradient into region slot
 * k (k: the request slot's index, so no two requests in flight share one),
 * the header alone as a message; the weights come back in the same slot. */
static zero_status_t step_piece_region(remote_store_t *r, request_slot_t *q, step_arg_t *a, size_t offset, size_t n)
{
    const server_link_t *l = &r->links[q->server];
    unsigned char *slot = l->region + (size_t)(q - r->slots) * l->region_slot_bytes;
    a->wire.slot = (uint32_t)(q - r->slots);
    zero_optd_encode_step_region(q->tx + ZERO_OPTD_HEADER_BYTES, &a->wire);
    memcpy(slot, (const unsigned char *)a->step->grad + offset * a->grad_es, n * a->grad_es);
    q->region_in = slot + l->region_half;
    q->region_out = (unsigned char *)a->step->weights + offset * a->weight_es;
    q->region_bytes = n * a->weight_es;
    r->stats.bytes_sent += n * a->grad_es;
    return submit(r, q, ZERO_OPTD_STEP_REGION, ZERO_OPTD_STEP_REGION_BODY, NULL, 0);
}

static zero_status_t step_piece(remote_store_t *r, int server, size_t local, size_t offset, size_t n, void *arg)
{
    step_arg_t *a = arg;
    request_slot_t *q;
    zero_status_t status = take_slot(r, server, &q);
    if (status != ZERO_OK)
        return status;
    a->wire.begin = local;
    a->wire.count = n;
    if (r->links[server].region != NULL)
        return step_piece_region(r, q, a, offset, n);
    zero_optd_encode_step_head(q->tx + ZERO_OPTD_HEADER_BYTES, &a->wire);
    q->tail = (const unsigned char *)a->step->grad + offset * a->grad_es;   /* sent from there, not copied */
    q->tail_bytes = n * a->grad_es;
    return submit(r, q, ZERO_OPTD_STEP, (uint32_t)(ZERO_OPTD_STEP_HEAD + n * a->grad_es),
                  (unsigned char *)a->step->weights + offset * a->weight_es, n * a->weight_es);
}

typedef struct lamb_arg {
    const zero_store_async_step_t *step;
    zero_optd_lamb_t wire;
    size_t grad_es, weight_es;
} lamb_arg_t;

static zero_status_t lamb_piece(remote_store_t *r, int server, size_t local, size_t offset, size_t n, void *arg)
{
    lamb_arg_t *a = arg;
    const zero_store_async_step_t *st = a->step;
    unsigned char *body;
    request_slot_t *q;
    zero_status_t status = take_slot(r, server, &q);
    if (status != ZERO_OK)
        return status;
    body = q->tx + ZERO_OPTD_HEADER_BYTES;
    a->wire.begin = local;
    a->wire.count = n;
    zero_optd_encode_lamb_head(body, &a->wire);
    if (st->lamb_phase == 2)
        return submit(r, q, ZERO_OPTD_LAMB2, ZERO_OPTD_LAMB_HEAD,
                      (unsigned char *)st->weights + offset * a->weight_es, n * a->weight_es);
    q->tail = (const unsigned char *)st->grad + offset * a->grad_es;   /* sent from there, not copied */
    q->tail_bytes = n * a->grad_es;
    q->sums = st->lamb_sums;
    return submit(r, q, ZERO_OPTD_LAMB1, (uint32_t)(ZERO_OPTD_LAMB_HEAD + n * a->grad_es), NULL,
                  (size_t)zero_optd_lamb_chunks(n, a->wire.chunk) * 2 * sizeof(double));
}

/* Lamb's phase st->lamb_phase over the range (docs/optd.md, "Lamb on the
 * server"). Phase 1's messages start at multiples of the caller's chunk from
 * the range's start, so each server's chunks are the caller's; a split that
 * cuts the range elsewhere (a store created without the range's start in its
 * hint) is refused before anything is sent. */
static zero_status_t lamb_step(remote_store_t *r, const zero_store_async_step_t *st)
{
    size_t chunk = st->optim->chunk, unit = CHUNK;
    lamb_arg_t a;
    memset(&a, 0, sizeof(a));
    if (st->lamb_phase == 1) {
        if (chunk > CHUNK || chunk < 64 || chunk % 64 != 0) {
            ZERO_LOG_ERROR("remote store: Lamb with a %zu-element kernel chunk: zero-optd takes multiples of 64 up "
                           "to %zu", chunk, (size_t)CHUNK);
            return ZERO_ERR_UNSUPPORTED;
        }
        for (int s = 1; s < r->num_links; s++) {
            size_t cut = r->links[s].lo[st->group];
            if (cut > st->begin && cut < st->begin + st->count && (cut - st->begin) % chunk != 0) {
                ZERO_LOG_ERROR("remote store: Lamb range [%zu, +%zu) of group %d is split between optimizer servers "
                               "%d and %d %zu elements in, not at a multiple of its %zu-element kernel chunk (the "
                               "store was created without this range's start in its split hint)", st->begin,
                               st->count, st->group, s - 1, s, cut - st->begin, chunk);
                return ZERO_ERR_UNSUPPORTED;
            }
        }
        unit = CHUNK / chunk * chunk;
        st->lamb_sums[0] = 0.0;   /* the chunks' sums are added from here as the replies come */
        st->lamb_sums[1] = 0.0;
        a.grad_es = zero_dtype_size(st->grad_dtype);
        a.wire.grad_dtype = (uint32_t)st->grad_dtype;   /* the wire numbers dtypes as zero_dtype_t */
    } else {
        a.weight_es = zero_dtype_size(st->weight_dtype);
        a.wire.weight_dtype = (uint32_t)st->weight_dtype;
        a.wire.w_sq = st->lamb_sums[0];
        a.wire.u_sq = st->lamb_sums[1];
    }
    a.step = st;
    a.wire.group = (uint32_t)st->group;
    a.wire.isa = (uint32_t)st->optim->isa;   /* the wire numbers levels as zero_optim_isa_t */
    a.wire.step = st->step;
    a.wire.chunk = (uint32_t)chunk;
    a.wire.flags = (st->bias_correction ? ZERO_OPTD_FLAG_BIAS_CORRECTION : 0u) |
                   (st->eps_inside_sqrt ? ZERO_OPTD_FLAG_EPS_INSIDE_SQRT : 0u);
    a.wire.lr = st->lr;
    a.wire.beta1 = st->beta1;
    a.wire.beta2 = st->beta2;
    a.wire.eps = st->eps;
    a.wire.weight_decay = st->weight_decay;
    a.wire.max_coeff = st->max_coeff;
    a.wire.min_coeff = st->min_coeff;
    a.wire.grad_scale = st->grad_scale;
    r->stats.steps++;
    return settle(r, for_each_piece(r, st->group, st->begin, st->count, unit, lamb_piece, &a));
}

static zero_status_t remote_step(zero_store_t *store, const zero_store_async_step_t *st)
{
    remote_store_t *r = (remote_store_t *)store;
    zero_status_t status = check_usable(r, "step");
    step_arg_t a;
    if (status != ZERO_OK)
        return status;
    if (st->optimizer == ZERO_OPTIMIZER_LAMB)
        return lamb_step(r, st);
    memset(&a, 0, sizeof(a));
    a.step = st;
    a.wire.group = (uint32_t)st->group;
    a.wire.optimizer = st->optimizer == ZERO_OPTIMIZER_SGD ? ZERO_OPTD_SGD
                       : st->optimizer == ZERO_OPTIMIZER_ADAGRAD ? ZERO_OPTD_ADAGRAD
                       : st->optimizer == ZERO_OPTIMIZER_LION ? ZERO_OPTD_LION : ZERO_OPTD_ADAM;
    a.wire.grad_dtype = (uint32_t)st->grad_dtype;      /* the wire numbers dtypes as zero_dtype_t */
    a.wire.weight_dtype = (uint32_t)st->weight_dtype;
    a.wire.step = st->step;
    a.wire.lr = st->lr;
    a.wire.beta1 = st->beta1;
    a.wire.beta2 = st->beta2;
    a.wire.eps = st->eps;
    a.wire.weight_decay = st->weight_decay;
    a.wire.momentum = st->momentum;
    a.wire.dampening = st->dampening;
    a.wire.lr_decay = st->lr_decay;
    a.wire.grad_scale = st->grad_scale;
    a.wire.flags = (st->adam_w_mode || st->optimizer == ZERO_OPTIMIZER_ADAMW ? ZERO_OPTD_FLAG_ADAM_W_MODE : 0u) |
                   (st->bias_correction ? ZERO_OPTD_FLAG_BIAS_CORRECTION : 0u) |
                   (st->nesterov ? ZERO_OPTD_FLAG_NESTEROV : 0u);
    a.grad_es = zero_dtype_size(st->grad_dtype);
    a.weight_es = zero_dtype_size(st->weight_dtype);
    r->stats.steps++;
    return settle(r, for_each_piece(r, st->group, st->begin, st->count, CHUNK, step_piece, &a));
}

static zero_status_t remote_step_wait(zero_store_t *store)
{
    remote_store_t *r = (remote_store_t *)store;
    zero_status_t status = complete_all(r);
    /* a step_async that failed has settled its requests already */
    return settle(r, status == ZERO_OK ? r->failed : status);
}

static void remote_bytes(const zero_store_t *store, zero_store_bytes_t *bytes_p)
{
    const remote_store_t *r = (const remote_store_t *)store;
    for (int g = 0; g < store->desc.num_groups; g++)
        bytes_p->elsewhere += (uint64_t)store->desc.length[g] * (uint64_t)(1 + store->desc.num_states) * sizeof(float);
    /* Working buffers, no state (resident is the state held here, which the
     * engine reports as master and moments): the request slots, and the
     * servers' regions mapped here, shared memory that the server also
     * counts against its --memory but whose every page is backed in this
     * process too (map_region), so in its resident set. */
    bytes_p->staging += (uint64_t)r->window * (SLOT_TX_BYTES + SLOT_RX_BYTES);
    for (int s = 0; s < r->num_links; s++)
        bytes_p->staging += r->links[s].region_bytes;
}

/* Closes @p ep (of @p worker) within 1 s: by force (nothing flushed), or flushed first. */
static void close_ep(remote_store_t *r, ucp_worker_h worker, ucp_ep_h ep, int force)
{
    ucp_request_param_t rp;
    void *req;
    double deadline = zero_clock_now() + 1.0;
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    rp.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    req = ucp_ep_close_nbx(ep, &rp);
    if (req != NULL && !UCS_PTR_IS_ERR(req)) {
        while (ucp_request_check_status(req) == UCS_INPROGRESS && zero_clock_now() < deadline)
            progress(r);
        if (ucp_request_check_status(req) == UCS_INPROGRESS)
            ucp_request_cancel(worker, req);
        ucp_request_free(req);
    }
}

/* Unmaps @p l's region (its requests were completed or abandoned), while
 * its worker still exists. */
static void unmap_region(server_link_t *l)
{
    if (l->rkey != NULL)
        ucp_rkey_destroy(l->rkey);
    l->rkey = NULL;
    l->region = NULL;
    l->region_bytes = 0;
}

static void close_link(remote_store_t *r, server_link_t *l)
{
    unmap_region(l);
    if (l->data_ep != NULL) {
        /* Not in peer-failure mode: a forced close may upset a live peer
         * (UCX's note on UCP_EP_CLOSE_FLAG_FORCE), so it is flushed unless
         * the server failed. */
        close_ep(r, r->data_w[l->index].worker, l->data_ep, r->failed != ZERO_OK);
        l->data_ep = NULL;
    }
    zero_optd_ucx_close(&r->data_w[l->index]);   /* its worker only */
    if (l->ep != NULL)
        close_ep(r, r->ucx[CTL].worker, l->ep, 1);   /* peer-failure mode: the server sees the close either way */
    l->ep = NULL;
}

/* Abandons what is in flight, closes every connection and destroys every
 * worker: nothing the store posted can touch memory afterwards. */
static void shut_down(remote_store_t *r)
{
    while (r->inflight > 0) {
        release_slot(r, &r->slots[r->head]);
        r->head = (r->head + 1) % r->window;
        r->inflight--;
    }
    for (int s = 0; s < r->num_links; s++)
        close_link(r, &r->links[s]);
    zero_optd_ucx_close(&r->ucx[CTL]);   /* its worker and context (registrations too) */
}

/*
 * Ends every public call that a failure ended, before the caller has its
 * buffers back: a split reply's array is received straight into the
 * caller's weights (or an acquire's block), and UCX 1.13 cannot cancel a
 * receive it has matched to a rendezvous already in progress (the cancel is
 * ignored; the data goes on landing when the worker is progressed, as the
 * store's destroy does). The transports used (shared memory without cma,
 * tcp) write only inside this process's own ucp_worker_progress calls, so
 * once the workers are destroyed nothing can; the failed store had no use
 * for them (check_usable refuses it). docs/optd.md, "The weights' own message".
 */
static zero_status_t settle(remote_store_t *r, zero_status_t status)
{
    if (r->failed != ZERO_OK)
        shut_down(r);
    return status;
}

static void remote_destroy(zero_store_t *store)
{
    remote_store_t *r = (remote_store_t *)store;
    if (r->ucx[CTL].worker != NULL && r->failed == ZERO_OK) {
        (void)complete_all(r);
        /* The data connections close first, flushed, while the servers still
         * hold their ends; BYE then goes on the control connection, and the
         * server drops its end of the data connection with it. */
        for (int s = 0; s < r->num_links; s++)
            if (r->links[s].data_ep != NULL) {
                unmap_region(&r->links[s]);
                close_ep(r, r->data_w[s].worker, r->links[s].data_ep, 0);
                r->links[s].data_ep = NULL;
            }
        /* BYE frees the state on the servers at once (they would also see the close) */
        for (int s = 0; s < r->num_links && r->failed == ZERO_OK; s++) {
            request_slot_t *q;
            if (r->links[s].ep != NULL && r->links[s].key != 0 && take_slot(r, s, &q) == ZERO_OK)
                (void)submit(r, q, ZERO_OPTD_BYE, 0, NULL, 0);
        }
        (void)complete_all(r);
    }
    shut_down(r);   /* after a failure: done already (settle) */
    for (int s = 0; s < r->num_links; s++)
        zero_free(r->links[s].addr);
    zero_free(r->links);
    zero_free(r->data_w);
    zero_free(r->pfd);
    for (int i = 0; i < MAX_WINDOW; i++) {
        zero_mem_free(r->slots[i].tx);
        zero_mem_free(r->slots[i].rx);
    }
    zero_optd_ucx_close(&r->ucx[DATA]);   /* its context (shut_down closed [CTL]) */
    zero_free(r);
}

static const zero_store_ops_t remote_ops = {
    .name = "remote",
    .acquire = remote_acquire,
    .release = remote_release,
    .prefetch = NULL,   /* acquire fetches with the whole window in flight already */
    .bytes = remote_bytes,
    .destroy = remote_destroy,
    .step_async = remote_step,
    .step_wait = remote_step_wait,
    /* the state is on the servers: only gradients and weights should travel
     * (without this the engine acquired and released every range, 24 bytes
     * of state per element per step over the network instead of 4) */
    .prefer_step = 1,
    .steps_lamb = 1,   /* LAMB1 and LAMB2 */
};

/* Splits "host:port" (the last colon; "[v6]:port" too) into its parts. */
static int split_address(const char *addr, char *host, size_t host_len, char *port, size_t port_len)
{
    const char *colon = strrchr(addr, ':');
    size_t n;
    if (colon == NULL || colon == addr || colon[1] == '\0' || strlen(colon + 1) >= port_len)
        return -1;
    n = (size_t)(colon - addr);
    if (addr[0] == '[' && n >= 2 && addr[n - 1] == ']') {
        addr++;
        n -= 2;
    }
    if (n >= host_len)
        return -1;
    memcpy(host, addr, n);
    host[n] = '\0';
    snprintf(port, port_len, "%s", colon + 1);
    return 0;
}

/* Whether @p ai is an address of this host (in this network namespace):
 * binding a socket to it works only then. */
static int address_is_local(const struct addrinfo *ai)
{
    struct sockaddr_storage sa;
    int fd, rc;
    if (ai->ai_addrlen > sizeof(sa) || (ai->ai_family != AF_INET && ai->ai_family != AF_INET6))
        return 0;
    memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
    if (ai->ai_family == AF_INET)
        ((struct sockaddr_in *)&sa)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&sa)->sin6_port = 0;
    fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    rc = bind(fd, (const struct sockaddr *)&sa, ai->ai_addrlen);
    close(fd);
    return rc == 0;
}

/* The data connection's set-up waits at most this long (or timeout_s if
 * shorter): it is optional, the control connection works without it. */
#define DATA_SETUP_S 5.0

/* Maps the server's region for @p l's data connection (ATTACH's reply
 * @p ar) with ucp_rkey_ptr and backs every page of the mapping now.
 * Returns 0, or -1 with the reason in @p why: no region offered, one smaller
 * than asked, or an rkey that cannot be unpacked or mapped here (another PID
 * namespace, no right to open the server's /proc/PID/fd link, a transport
 * without rkey_ptr). The link then keeps STEP on tagged messages. */
static int map_region(remote_store_t *r, server_link_t *l, const zero_optd_attach_reply_t *ar, char *why,
                      size_t why_len)
{
    size_t slot_bytes = (size_t)zero_optd_region_slot_bytes((uint32_t)CHUNK), bytes;
    void *first = NULL;
    const char *step = "";
    ucs_status_t st;
    int err;
    if (ar->rkey_len == 0) {
        snprintf(why, why_len, "the server offered no region (ZERO_OPTD_ONESIDED=0 there, or see its log)");
        return -1;
    }
    if (ar->slots < (uint32_t)r->window || ar->slot_elems != (uint32_t)CHUNK) {
        snprintf(why, why_len, "its region has %u slots of %u elements, %d of %zu asked for", ar->slots,
                 ar->slot_elems, r->window, (size_t)CHUNK);
        return -1;
    }
    bytes = (size_t)r->window * slot_bytes;
    st = zero_optd_region_map(l->data_ep, ar->rkey, ar->address, bytes, &l->rkey, &first, &step);
    if (st != UCS_OK && strcmp(step, "unpacked") == 0) {
        snprintf(why, why_len, "its rkey cannot be unpacked here: %s", ucs_status_string(st));
        return -1;
    }
    if (st != UCS_OK) {
        /* a server checks that its region maps in its own process before
         * offering it (region_open), so: another PID namespace, or no right
         * to open its /proc/PID/fd link */
        snprintf(why, why_len, "its region cannot be mapped here (ucp_rkey_ptr: %s; another PID namespace, or no "
                 "right to open the server's /proc/PID/fd link)", ucs_status_string(st));
        return -1;
    }
    err = zero_optd_region_populate(first, bytes);
    if (err != 0) {
        snprintf(why, why_len, "its region's pages could not be mapped here: %s", strerror(err));
        goto fail;
    }
    l->region = first;
    l->region_slot_bytes = slot_bytes;
    l->region_half = (size_t)CHUNK * sizeof(float);
    l->region_bytes = bytes;
    return 0;
fail:
    ucp_rkey_destroy(l->rkey);
    l->rkey = NULL;
    return -1;
}

/* Asks the doorway at @p ai (its port @p port; 0: the address's own) for a
 * connection of @p kind offering @p worker's address, and creates the
 * endpoint to the address the server answers with (@p p: the caller's
 * endpoint parameters but the address) in *@p ep_p, its key in *@p key_p.
 * Returns 0; -1 with the cause in @p why, and *@p refused the server's
 * status when it refused (its text in @p why then; ZERO_OK otherwise). */
static int door_connect(remote_store_t *r, const struct addrinfo *ai, uint16_t port, uint32_t kind, uint64_t ticket,
                        ucp_worker_h worker, ucp_ep_params_t *p, double deadline, ucp_ep_h *ep_p, uint64_t *key_p,
                        zero_status_t *refused, char *why, size_t why_len)
{
    unsigned char answer[ZERO_OPTD_DOOR_ANSWER_MAX];
    struct sockaddr_storage sa;
    zero_optd_door_answer_t ans;
    ucs_status_t st;
    *refused = ZERO_OK;
    *ep_p = NULL;
    if (ai->ai_addrlen > sizeof(sa)) {
        snprintf(why, why_len, "an address of %u bytes", (unsigned)ai->ai_addrlen);
        return -1;
    }
    memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
    if (port != 0 && ai->ai_family == AF_INET)
        ((struct sockaddr_in *)&sa)->sin_port = htons(port);
    else if (port != 0 && ai->ai_family == AF_INET6)
        ((struct sockaddr_in6 *)&sa)->sin6_port = htons(port);
    if (zero_optd_door_ask((const struct sockaddr *)&sa, ai->ai_addrlen, kind, r->opts.token, ticket, worker, deadline,
                           answer, &ans, why, why_len) != 0)
        return -1;
    if (ans.status != 0) {
        /* a status of the server's own, or COMM for one it should not send */
        *refused = ans.status < 0 && ans.status >= ZERO_ERR_INTERNAL ? (zero_status_t)ans.status : ZERO_ERR_COMM;
        snprintf(why, why_len, "%.*s", (int)ans.len, ans.text);
        return -1;
    }
    p->field_mask |= UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    p->address = ans.address;
    st = ucp_ep_create(worker, p, ep_p);
    if (st != UCS_OK) {
        *ep_p = NULL;
        snprintf(why, why_len, "no endpoint to the address it answered with: %s", ucs_status_string(st));
        return -1;
    }
    *key_p = ans.conn_key;
    return 0;
}

/* Same host: asks the doorway (the port HELLO's reply named) with the ticket
 * HELLO's reply handed out for a connection without peer-failure mode, on
 * the store's shared-memory-only context (UCX 1.13 gives only such
 * endpoints shared memory; without CMA in the context a dead peer cannot
 * make UCX abort the process: optd_ucx.h), on a worker of its own, and
 * ATTACHes it to the control connection, which stays open so that a dead
 * server is still seen at once (its error handler) and the server sees a
 * dead client. zero-optd checks the ticket before it creates anything for
 * the request (docs/optd.md, Safety). Any failure is logged (info) and
 * leaves the link on its control connection. Skipped with
 * ZERO_OPTD_SAME_HOST=0 (docs/optd.md). */
static void connect_data(remote_store_t *r, server_link_t *l, const struct addrinfo *ai)
{
    uint32_t port = zero_get_le32(l->hello_reply);
    uint64_t ticket = zero_get_le64(l->hello_reply + 8);
    double deadline = zero_clock_now() + (r->opts.timeout_s < DATA_SETUP_S ? r->opts.timeout_s : DATA_SETUP_S);
    unsigned char *msg = l->data_msg, *reply = l->data_reply;
    zero_optd_header_t h;
    zero_optd_attach_t a;
    ucp_ep_params_t p;
    ucp_request_param_t rp;
    ucp_ep_h ep = NULL;
    uint64_t key = 0;
    ucp_worker_h worker = NULL;
    zero_optd_attach_reply_t ar;
    ucp_tag_recv_info_t reply_info;
    const char *data_settings[ZERO_OPTD_DATA_SETTINGS];
    void *rreq, *sreq;
    ucs_status_t st;
    char detail[ZERO_OPTD_MAX_DOOR_TEXT + 64], why[sizeof(detail) + 16];
    zero_status_t refused;
    int timed_out;

    if (port == 0 || port > 65535 || ticket == 0 || !zero_optd_same_host_enabled() || !address_is_local(ai))
        return;
    zero_optd_data_settings(data_settings);
    if (r->ucx[DATA].context == NULL) {
        if (zero_optd_ucx_open(&r->ucx[DATA], data_settings, "remote store: the same-host data context") !=
            ZERO_OK) {
            snprintf(why, sizeof(why), "no shared-memory UCX context");
            goto fallback;
        }
        /* only the context is shared: each data connection has its worker */
        ucp_worker_destroy(r->ucx[DATA].worker);
        r->ucx[DATA].worker = NULL;
        r->ucx[DATA].efd = -1;
    }
    if (zero_optd_worker_open(r->ucx[DATA].context, &r->data_w[l->index].worker, &r->data_w[l->index].efd,
                              "remote store: a data connection's worker") != ZERO_OK) {
        snprintf(why, sizeof(why), "no worker");
        goto fallback;
    }
    worker = r->data_w[l->index].worker;
    memset(&p, 0, sizeof(p));
    p.field_mask = UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    p.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    if (door_connect(r, ai, (uint16_t)port, ZERO_OPTD_DOOR_DATA, ticket, worker, &p, deadline, &ep, &key, &refused,
                     detail, sizeof(detail)) != 0) {
        snprintf(why, sizeof(why), "%s%s", refused != ZERO_OK ? "refused: " : "", detail);
        goto fallback;
    }
    h = (zero_optd_header_t){.version = ZERO_OPTD_VERSION, .type = ZERO_OPTD_ATTACH, .status = 0,
                             .body_len = ZERO_OPTD_ATTACH_BODY, .conn_key = key, .seq = r->next_seq++};
    zero_optd_encode_header(msg, &h);
    memset(&a, 0, sizeof(a));
    a.control_key = l->key;
    memcpy(a.token, r->opts.token, ZERO_OPTD_TOKEN_BYTES);
    if (zero_optd_onesided_enabled()) {   /* a region slot per request slot, each a message's room */
        a.flags = ZERO_OPTD_ATTACH_REGION;
        a.slots = (uint32_t)r->window;
        a.slot_elems = (uint32_t)CHUNK;
    }
    zero_optd_encode_attach(msg + ZERO_OPTD_HEADER_BYTES, &a);
    memset(reply, 0, sizeof(l->data_reply));
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_RECV_INFO;
    rp.recv_info.tag_info = &reply_info;
    reply_info.length = 0;
    rreq = ucp_tag_recv_nbx(worker, reply, sizeof(l->data_reply), key | ZERO_OPTD_TAG_REPLY, ~(ucp_tag_t)0, &rp);
    memset(&rp, 0, sizeof(rp));
    sreq = ucp_tag_send_nbx(ep, msg, sizeof(l->data_msg), key, &rp);
    st = wait_request(r, l, sreq, deadline, &timed_out);
    if (st == UCS_OK)
        st = wait_request(r, l, rreq, deadline, &timed_out);
    if (st == UCS_OK && rreq != NULL && ucp_tag_recv_request_test(rreq, &reply_info) != UCS_OK)
        reply_info.length = 0;   /* NULL: completed at once, reply_info filled by UCX */
    request_done(r, worker, &sreq);
    request_done(r, worker, &rreq);
    if (st != UCS_OK) {
        snprintf(why, sizeof(why), "no answer to ATTACH");
        goto fallback;
    }
    if (zero_optd_decode_header(reply, reply_info.length, 1, &h) != ZERO_OPTD_PARSE_OK ||
        h.type != (ZERO_OPTD_ATTACH | ZERO_OPTD_REPLY) || h.status != 0 || h.conn_key != key ||
        zero_optd_decode_attach_reply(reply + ZERO_OPTD_HEADER_BYTES, h.body_len, &ar) != ZERO_OPTD_PARSE_OK) {
        snprintf(why, sizeof(why), "ATTACH refused");
        goto fallback;
    }
    l->data_ep = ep;
    l->data_key = key;
    r->stats.same_host_links++;
    if (a.flags & ZERO_OPTD_ATTACH_REGION) {
        char no_region[160];
        if (map_region(r, l, &ar, no_region, sizeof(no_region)) == 0)
            r->stats.regions_mapped++;
        else   /* once per server and store */
            ZERO_LOG_WARN("remote store: optimizer server %s: STEP goes over tagged messages on the same-host data "
                          "connection, not through the server's region: %s", l->addr, no_region);
    }
    return;
fallback:
    ZERO_LOG_INFO("remote store: optimizer server %s: no same-host data connection (%s); requests use the first "
                  "connection", l->addr, why);
    if (ep != NULL)
        close_ep(r, worker, ep, 0);
    zero_optd_ucx_close(&r->data_w[l->index]);   /* the worker only; its requests were released */
}

/* The doorway (the control connection's endpoint and key), then HELLO
 * (token and the slices it will hold). */
static zero_status_t connect_link(remote_store_t *r, server_link_t *l)
{
    zero_status_t status = ZERO_OK;
    char host[256], port[16], why[ZERO_OPTD_MAX_DOOR_TEXT + 64];
    struct addrinfo hints, *ai = NULL;
    ucp_ep_params_t p;
    zero_optd_hello_t hello;
    request_slot_t *q;
    zero_status_t refused = ZERO_OK;
    int rc;

    if (split_address(l->addr, host, sizeof(host), port, sizeof(port)) != 0) {
        ZERO_LOG_ERROR("remote store: optimizer server address \"%s\" is not HOST:PORT", l->addr);
        return ZERO_ERR_INVALID_ARG;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        ZERO_LOG_ERROR("remote store: optimizer server %s: cannot resolve it: %s", l->addr, gai_strerror(rc));
        return ZERO_ERR_INVALID_ARG;
    }
    memset(&p, 0, sizeof(p));
    p.field_mask = UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
    p.err_mode = UCP_ERR_HANDLING_MODE_PEER;   /* a dead server must be seen, not waited on */
    p.err_handler.cb = link_error_cb;
    p.err_handler.arg = l;
    if (door_connect(r, ai, 0, ZERO_OPTD_DOOR_CONTROL, 0, r->ucx[CTL].worker, &p,
                     zero_clock_now() + r->opts.timeout_s, &l->ep, &l->key, &refused, why, sizeof(why)) != 0) {
        if (refused != ZERO_OK)
            ZERO_LOG_ERROR("remote store: optimizer server %s refused the connection: %s", l->addr, why);
        else
            ZERO_LOG_ERROR("remote store: optimizer server %s: no connection: %s", l->addr, why);
        status = refused != ZERO_OK ? refused : ZERO_ERR_COMM;
        goto out;
    }

    memset(&hello, 0, sizeof(hello));
    memcpy(hello.token, r->opts.token, ZERO_OPTD_TOKEN_BYTES);
    hello.rank = (uint32_t)r->opts.rank;
    hello.num_groups = (uint32_t)r->base.desc.num_groups;
    hello.num_states = (uint32_t)r->base.desc.num_states;
    for (int g = 0; g < r->base.desc.num_groups; g++)
        hello.length[g] = l->hi[g] - l->lo[g];
    ZERO_CHECK_GOTO(take_slot(r, l->index, &q), status, out);
    zero_optd_encode_hello(q->tx + ZERO_OPTD_HEADER_BYTES, &hello);
    ZERO_CHECK_GOTO(submit(r, q, ZERO_OPTD_HELLO, ZERO_OPTD_HELLO_BODY, l->hello_reply, sizeof(l->hello_reply)),
                    status, out);
    status = complete_all(r);
    if (status == ZERO_OK)
        connect_data(r, l, ai);
out:
    freeaddrinfo(ai);
    return status;
}

/* Where the split over servers cuts group @p g near @p cut: at @p cut
 * without a hint, else moved down to a multiple of the hint's chunk from the
 * last range start at or before it (so no chunk of a range is cut; cuts stay
 * in order, as they only move down and never below that start). */
static size_t split_cut(const zero_store_split_hint_t *h, int g, size_t cut)
{
    const size_t *st = h->starts[g];
    size_t lo = 0, hi = h->num_starts[g];
    if (h->chunk == 0 || st == NULL || hi == 0 || cut <= st[0])
        return cut;
    while (hi - lo > 1) {   /* st[lo] <= cut < st[hi] (or hi is the end) */
        size_t mid = lo + (hi - lo) / 2;
        if (st[mid] <= cut)
            lo = mid;
        else
            hi = mid;
    }
    return st[lo] + (cut - st[lo]) / h->chunk * h->chunk;
}

/* The hint's starts are sorted and inside their groups. */
static int split_hint_ok(const zero_store_split_hint_t *h, const zero_store_desc_t *desc)
{
    if (h->chunk == 0)
        return 1;
    for (int g = 0; g < desc->num_groups; g++)
        for (size_t i = 0; i < h->num_starts[g]; i++)
            if (h->starts[g] == NULL || h->starts[g][i] > desc->length[g] ||
                (i > 0 && h->starts[g][i] < h->starts[g][i - 1]))
                return 0;
    return 1;
}

zero_status_t zero_store_remote_create(const zero_store_desc_t *desc, const zero_store_remote_opts_t *opts,
                                       zero_store_t **store_p)
{
    zero_status_t status = ZERO_OK;
    remote_store_t *r;

    if (desc->num_groups < 1 || desc->num_groups > ZERO_DTYPE_COUNT || desc->num_states < 0 ||
        desc->num_states > ZERO_STORE_NUM_FIELDS - 1 || desc->kind != ZERO_MEM_HOST || opts->num_servers < 1 ||
        opts->servers == NULL || opts->timeout_s <= 0 || opts->window < 0 || opts->window > MAX_WINDOW ||
        !split_hint_ok(&opts->split, desc)) {
        ZERO_LOG_ERROR("remote store: bad descriptor or options (%d groups, %d states, %d servers, timeout %g s, "
                       "window %d, split hint with a %zu-element chunk; host memory only, hint starts sorted in "
                       "their groups)", desc->num_groups, desc->num_states, opts->num_servers, opts->timeout_s,
                       opts->window, opts->split.chunk);
        return ZERO_ERR_INVALID_ARG;
    }
    for (int g = 0; g < desc->num_groups; g++)
        if (desc->adopt_master[g] != NULL) {
            ZERO_LOG_ERROR("remote store: the master weights live on the optimizer servers; group %d cannot adopt "
                           "the caller's array (the step writes the weights back instead)", g);
            return ZERO_ERR_UNSUPPORTED;
        }
    r = zero_calloc(1, sizeof(*r));
    if (r == NULL) {
        ZERO_LOG_ERROR("remote store: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    r->base.ops = &remote_ops;
    r->base.desc = *desc;
    r->ucx[CTL].efd = r->ucx[DATA].efd = -1;
    r->opts = *opts;
    r->opts.servers = NULL;   /* the caller's; copied into the links */
    r->window = opts->window ? opts->window : 4;
    r->links = zero_calloc((size_t)opts->num_servers, sizeof(*r->links));
    r->data_w = zero_calloc((size_t)opts->num_servers, sizeof(*r->data_w));
    r->pfd = zero_calloc((size_t)opts->num_servers + 2, sizeof(*r->pfd));
    if (r->links == NULL || r->data_w == NULL || r->pfd == NULL) {
        ZERO_LOG_ERROR("remote store: out of memory");
        zero_free(r->links);
        zero_free(r->data_w);
        zero_free(r->pfd);
        zero_free(r);
        return ZERO_ERR_NO_MEMORY;
    }
    r->num_links = opts->num_servers;
    for (int s = 0; s < r->num_links; s++) {
        server_link_t *l = &r->links[s];
        l->store = r;
        l->index = s;
        r->data_w[s].efd = -1;
        l->addr = zero_strdup(opts->servers[s]);
        if (l->addr == NULL) {
            ZERO_LOG_ERROR("remote store: out of memory");
            status = ZERO_ERR_NO_MEMORY;
            goto fail;
        }
        for (int g = 0; g < desc->num_groups; g++) {
            zero_split_range(desc->length[g], (size_t)r->num_links, (size_t)s, 1, &l->lo[g], &l->hi[g]);
            /* the first piece starts at 0 and the last ends at the length, whatever the hint */
            if (s > 0)
                l->lo[g] = split_cut(&opts->split, g, l->lo[g]);
            if (s < r->num_links - 1)
                l->hi[g] = split_cut(&opts->split, g, l->hi[g]);
        }
    }
    memset(&r->opts.split, 0, sizeof(r->opts.split));   /* the caller's, for this call only */
    for (int i = 0; i < r->window; i++) {
        ZERO_CHECK_GOTO(zero_mem_alloc(ZERO_MEM_HOST, SLOT_TX_BYTES, "remote store send slot",
                                       (void **)&r->slots[i].tx), status, fail);
        ZERO_CHECK_GOTO(zero_mem_alloc(ZERO_MEM_HOST, SLOT_RX_BYTES, "remote store reply slot",
                                       (void **)&r->slots[i].rx), status, fail);
    }

    ZERO_CHECK_GOTO(zero_optd_ucx_open(&r->ucx[CTL], NULL, "remote store"), status, fail);
    for (int s = 0; s < r->num_links; s++)
        ZERO_CHECK_GOTO(connect_link(r, &r->links[s]), status, fail);
    *store_p = &r->base;
    return ZERO_OK;
fail:
    remote_destroy(&r->base);
    return status;
}

void zero_store_remote_stats(const zero_store_t *store, zero_store_remote_stats_t *stats_p)
{
    const remote_store_t *r = (const remote_store_t *)store;
    *stats_p = r->stats;
    stats_p->region_bytes = 0;
    for (int s = 0; s < r->num_links; s++)
        stats_p->region_bytes += r->links[s].region_bytes;
}
