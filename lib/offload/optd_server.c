/*
 * zero-optd's server: UCX tagged messages over endpoints made from worker
 * addresses that its doorway hands out (optd_server.h, docs/optd.md).
 *
 * Two threads. The UCX thread (the caller of zero_optd_server_run) owns the
 * workers, the doorway and every endpoint: it progresses the workers, takes
 * doorway connections and answers their one request each (door_service:
 * refused before any UCX object exists, or accepted with an endpoint to the
 * client's worker address and an answer naming ours), closes connections
 * whose endpoint failed or that stayed silent past the hello deadline,
 * probes for messages and receives them into free slots, and sends the
 * replies; with nothing to do it sleeps on UCX's event descriptors, the
 * doorway's sockets and the worker's done_fd. The worker
 * thread takes the received slots, oldest first but never ahead of an older
 * message of the same connection (next_work), decodes, acts (allocates a
 * client's state, runs a step, copies a range) and leaves the reply in the
 * slot. A message is probed before it is received, so its size is known and
 * bounded first (a key no connection has, or a size over the bound, is
 * dropped unread); at most ZERO_OPTD_SERVER_SLOTS messages are held.
 *
 * Who touches what: slot states are handed over under s->lock (a slot's
 * connection and arrival number are set by the UCX thread before it leaves
 * FREE); a connection's endpoint, UCX state and life cycle belong to the
 * UCX thread; what HELLO declared (rank, groups, state arrays) to the worker,
 * which the UCX thread frees only once no slot of the connection is in use
 * (c->inflight == 0), so closing a connection with messages in flight
 * marks it closing and finishes when its last slot is freed.
 * Replies of one connection are sent in arrival order (older_unanswered),
 * which is its request order, on one endpoint and tag, so UCX delivers them
 * in that order.
 *
 * A same-host data connection that asks for it gets a region of shared
 * memory (region_open, at ATTACH): STEP_REGION's gradient and weights are
 * in its slots and only headers travel; every slot index and count is
 * checked against the region (handle_step), and the region goes with the
 * connection (conn_close). docs/optd.md, "One-sided on one host: the region".
 */
#define ZERO_LOG_MODULE "optd"
#include "offload/optd_server.h"
#include "offload/optd_guard.h"
#include "offload/optd_ucx.h"
#include "offload/store.h"
#include "optim/optim.h"
#include "util/alloc.h"
#include "util/byteorder.h"
#include "util/checks_ucx.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/thread_pool.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#define DROP_BYTES 64            /* scratch a dropped message is received into (truncated) */
#define DROPS 64                 /* dropped messages whose receive may be in flight at once */
/* Doorway connections held at once, each until its request is whole and
 * answered or its deadline (hello_timeout_s) passes; when a new one finds
 * the table full, the oldest is closed (door_accept), so idle connections
 * cannot lock good clients out: a flood only makes each wait its turn. */
#define DOOR_ENTRIES 64
/* Doorway connections accepted per pass of the loop at most, so a flood of
 * connections does not keep it from the slots. */
#define DOOR_ACCEPTS_PER_PASS 16
/* While busy the loop looks at the doorway's sockets this often (one poll
 * of all of them); asleep, they are among what wakes it. */
#define DOOR_INTERVAL_S 1e-3
#define SLOTS ZERO_OPTD_SERVER_SLOTS
/* This host's addresses admitted at most for its own clients (door_admit). */
#define HOST_ADDRS 16

typedef enum conn_state { CONN_FREE = 0, CONN_NEW, CONN_READY } conn_state_t;

typedef struct optd_conn {
    struct zero_optd_server *server;
    /* the UCX thread's */
    conn_state_t state;
    uint64_t key;                /* request tag; 0 when free */
    ucp_ep_h ep;
    int failed;                  /* the endpoint reported an error (set inside progress) */
    int stuck;                   /* a request of it timed out: close it by force (UCX purges what is left) */
    int closing;                 /* closed while slots of it were in use: finished when inflight drops to 0 */
    int inflight;                /* slots of this connection in use */
    char close_why[128];
    void *attach_req;            /* a data connection's answer to ATTACH, in flight */
    unsigned char attach_reply[ZERO_OPTD_HEADER_BYTES + ZERO_OPTD_ATTACH_REPLY_HEAD + ZERO_OPTD_MAX_RKEY];
    /* A data connection's region (docs/optd.md, "One-sided on one host"):
     * shared memory of the data context (ucp_mem_map ALLOCATE), which its
     * client maps through the packed rkey sent in ATTACH's reply and in
     * which STEP_REGION's gradient and weights travel. Set by the UCX
     * thread at ATTACH (before any message of the connection takes a
     * slot), read by the worker, unmapped with the connection (inflight 0).
     * NULL: none; its client steps over tagged messages. */
    ucp_mem_h region;
    unsigned char *region_base;
    uint32_t region_slots, region_elems;
    uint64_t region_bytes;       /* counted in the server's bytes (the memory limit) */
    ucs_status_t failed_status;
    double opened_at;
    char peer[64];               /* "host:port" of the client */
    struct sockaddr_storage peer_sa;   /* its doorway connection's source address ... */
    int admitted;                /* ... on the guard's allow list for this connection (forgotten when it closes) */
    int admitted_host;           /* a client on this host: counted in server->host_clients (door_admit) */
    int data;                    /* a same-host data connection: no peer-failure mode (shared memory) */
    /* A data connection's own worker (of the data context) and its event
     * descriptor, made when its request is accepted and destroyed with it.
     * A worker has one shared-memory FIFO that every sender to it writes
     * into, and UCX's reader takes the elements in order: a sender killed
     * after reserving an element and before flagging it written (UCX 1.13
     * mm_ep.c: the copy of up to a segment lies between the two) leaves
     * that element unread for good, and every message behind it, from any
     * client. With one worker per connection only the dead client's FIFO
     * stops, and it goes with the connection. */
    ucp_worker_h worker;
    int efd;
    int data_index;              /* its place in server->data_conns; -1: not in it (yet) */
    /* The doorway admits a data connection only if its request carries
     * the ticket of a control connection that said HELLO (its reply hands
     * the ticket out; docs/optd.md, Safety): so a process
     * without the job token never gets an endpoint or a shared-memory FIFO
     * here. A control connection's ticket: random, set by the UCX thread at
     * accept (before any message of it takes a slot, so the worker
     * thread reads it in handle_hello), 0 once used or closed. A data
     * connection's ticket_key: the key of the control connection whose
     * ticket it carried; its ATTACH must name that one. */
    uint64_t ticket;
    uint64_t ticket_key;
    struct optd_conn *partner;   /* a client's control and data connections point at each other */
    atomic_int dead;             /* closing or failed: the worker skips its messages */
    /* whose state this connection's messages use: itself, or for an attached
     * data connection its control connection (set before any of its messages
     * takes a slot; its slots count in the owner's inflight too) */
    struct optd_conn *owner;
    /* the worker's (the UCX thread frees the arrays once inflight is 0) */
    int hello_done;
    int refused;                 /* a refusal that closes it was made: later messages are skipped */
    uint64_t strays;             /* the UCX thread's: gradients of it no header announced, dropped */
    uint32_t rank;               /* from HELLO */
    uint32_t num_groups, num_states;
    uint64_t length[ZERO_OPTD_MAX_GROUPS];
    float *field[ZERO_OPTD_MAX_GROUPS][ZERO_OPTD_MAX_FIELDS];
    uint64_t state_bytes;        /* counted against the memory limit */
} optd_conn_t;

typedef enum slot_state {
    SLOT_FREE = 0,
    SLOT_RECEIVING,              /* UCX thread: the receive is posted */
    SLOT_READY,                  /* the worker's: to decode and act on */
    SLOT_DONE,                   /* handled: the reply (if any) is in tx */
    SLOT_SENDING,                /* UCX thread: the reply is posted */
    SLOT_FINISHED                /* reply delivered (or none): freed when it reaches the head */
} slot_state_t;

typedef enum slot_kind {
    SLOT_MESSAGE = 0,            /* a received message, in rx */
    SLOT_OVERSIZED,              /* dropped for its size: the worker refuses it */
    SLOT_LOST                    /* the receive failed: nothing to do */
} slot_kind_t;

/* A request the UCX thread does not wait for: reap() frees it once it
 * ended, or lets go of it at its deadline (cancelled if it is still in
 * flight, which ends a posted receive; UCX releases the rest when they end,
 * or with their worker). */
typedef struct held {
    void *req;
    ucp_worker_h worker;
    double deadline;
} held_t;

/* Refused doorway requests, logged through refusal_log: any process that
 * reaches the port can send them, so a flood must not fill the server's
 * log. In each window of ZERO_OPTD_REFUSAL_WINDOW_S the first
 * ZERO_OPTD_REFUSALS_IN_FULL are logged as they come; the rest are counted,
 * and one line at the window's end gives their number and the last one's
 * client and cause (optd_server.h). */
typedef struct refusal_log {
    double window_start;
    int in_window;               /* refusals since window_start */
    int unlogged;                /* of them, not logged one by one */
    char peer[64];               /* the last unlogged one's client and cause */
    char why[160];
} refusal_log_t;

enum { GRADIENT_NONE = 0, GRADIENT_WAITING, GRADIENT_POSTED };
enum { FENCE_NONE = 0, FENCE_OPEN, FENCE_CLOSED };   /* optd_slot_t.fenced */
/* A fenced slot whose request UCX has not ended this long after its
 * connection was closed is retired (fence_sweep): UCX 1.13 never ends some
 * (a probed eager multi-fragment message's receive waits in the worker's
 * fragment hash, which no endpoint close purges, for fragments a dead client
 * never sends), and with only SLOTS slots a few such would stop zero-optd
 * serving anyone. A retired slot's buffers stay parked until shutdown
 * (2 x ZERO_OPTD_MAX_MESSAGE, counted in the memory limit); at most
 * FENCE_RETIRED_MAX buffers in all, beyond which (or the limit) a slot
 * stays fenced. */
#define FENCE_RETIRE_S 10.0
#define FENCE_RETIRED_MAX 128

typedef struct optd_slot {
    slot_state_t state;          /* under s->lock where the worker may look */
    int used;                    /* the UCX thread's: holds a message (state not FREE, or about to be) */
    uint64_t seq;                /* its message's place in arrival order (set before it leaves FREE) */
    slot_kind_t kind;
    optd_conn_t *conn;
    size_t length;               /* bytes of the message */
    void *req;                   /* the receive, then the reply's send (split: the array's) */
    void *head_req;              /* a split reply's header send, while in flight */
    double deadline;
    /* Its receive or send passed the io bound unfinished: UCX 1.13 cancels
     * neither a probed message's receive nor a send, so progress may still
     * write into rx (or read tx) until UCX ends the request, which it does
     * when the endpoint is closed by force (its requests purged) or the data
     * worker destroyed. Such a slot keeps req (and head_req) and, once
     * FINISHED, stays used (state FREE, counted in no inflight): FENCE_OPEN
     * while its connection is open, FENCE_CLOSED once conn_close closed the
     * endpoint, and fence_sweep frees it when UCX has ended its requests,
     * never before (docs/optd.md, Safety). */
    int fenced;
    /* FENCE_CLOSED: when fence_retire may retire it (not deadline:
     * expire_requests zeroes that) */
    double fence_until;
    unsigned char *rx, *tx;      /* ZERO_OPTD_MAX_MESSAGE each */
    /* the worker's verdict */
    int reply;                   /* send tx (header encoded) */
    uint32_t reply_len;
    int split;                   /* the reply goes as header, then body on the data tag (optd_wire.h) */
    int close;                   /* close the connection after the reply */
    int hello_ok;                /* the connection said HELLO and was accepted */
    /* A split STEP or LAMB1 request (version 6): GRADIENT_POSTED once its
     * header is in and the gradient's receive (req) is posted after the head,
     * GRADIENT_WAITING while an older message of its connection, in a slot, is
     * still coming in (take_gradient); grad_info: what arrived */
    int gradient;
    ucp_tag_recv_info_t grad_info;
} optd_slot_t;

/* A doorway connection waiting for its request (docs/optd.md, "The
 * doorway"): read without blocking into buf, bounded by the request's size
 * limit, then answered and closed. */
typedef struct door_entry {
    int fd;                      /* -1: free */
    double opened;               /* accepted at: the oldest is closed first when the table is full */
    size_t got;                  /* bytes of the request in buf */
    char peer[64];
    struct sockaddr_storage sa;  /* the client's address, admitted to UCX's ports when it is accepted */
    unsigned char buf[ZERO_OPTD_DOOR_REQUEST_MAX];
} door_entry_t;

struct zero_optd_server {
    zero_optd_server_opts_t opts;
    /* [CTL]: the control connections (peer-failure mode, UCX's own
     * transports); [DATA]: the context of the same-host data connections,
     * shared memory only (optd_ucx.h says why), each on a worker of its own */
    zero_optd_ucx_t ucx[2];
    int data_ok;                 /* the data context is open: data connections are offered */
    /* the doorway: the listening socket and the connections on it */
    int listen_fd;
    /* the allow list in front of UCX's own listening sockets (optd_guard.h;
     * NULL: none, opts.guard 0 or ZERO_OPTD_GUARD=0) */
    zero_optd_guard_t *guard;
    door_entry_t door[DOOR_ENTRIES];
    ucp_address_t *ctl_address;  /* the control worker's address, in every control connection's answer */
    size_t ctl_address_len;
    unsigned char door_answer[ZERO_OPTD_DOOR_ANSWER_MAX];
    int onesided;                /* data connections get a region when they ask (not with ZERO_OPTD_ONESIDED=0 at start) */
    int done_fd;                 /* eventfd: the worker thread finished a slot; -1: none */
    int port;
    zero_thread_pool_t *pool;
    zero_optim_ctx_t optim;
    optd_conn_t conns[ZERO_OPTD_MAX_CONNS];
    /* the data connections (each on its worker): progressed, probed and
     * armed by the UCX thread; ndata_conns is read by the worker thread
     * when it answers HELLO (whether to offer a data connection), and the
     * loop spins only while one without a region is open (fifo_senders) */
    optd_conn_t *data_conns[ZERO_OPTD_MAX_DATA_CONNS];
    atomic_int ndata_conns;
    /* The message slots, in any order: a message takes a free one and
     * leaves it when its reply is delivered. Each connection's messages are
     * handled and answered in arrival order (seq); other connections' go
     * past a slot still receiving (a header whose gradient has not come:
     * docs/optd.md, "The gradient's own message"). Before 5 Dec 2026 this was
     * a ring, handled, answered and freed in arrival order across
     * connections. */
    optd_slot_t slots[SLOTS];
    uint64_t next_seq;           /* UCX thread: the next message's seq */
    int nused;                   /* UCX thread: slots in use */
    /* UCX thread: rx/tx buffers of retired fenced slots (fence_sweep),
     * which a request UCX never ended may still write or read: freed only
     * after the workers are destroyed */
    unsigned char *retired[FENCE_RETIRED_MAX];
    int nretired;
    pthread_mutex_t lock;
    pthread_cond_t wake;         /* a slot became READY, or stop */
    pthread_t thread;
    int thread_started, thread_stop;
    float *grad32;               /* the worker's: LAMB1's 16-bit gradient as fp32, ZERO_OPTD_MAX_ELEMS */
    atomic_uint_fast64_t bytes;  /* state of every connection plus the buffers */
    unsigned char drop[DROP_BYTES];
    /* requests the loop does not wait for (held_t): receives of dropped
     * messages (drop_message), closes of live control connections
     * (conn_close) */
    held_t drops[DROPS];
    int ndrops;
    held_t closes[ZERO_OPTD_MAX_CONNS];
    int ncloses;
    refusal_log_t refusals;      /* the UCX thread's (refusal_log) */
    /* This host's own addresses, on the allow list while a client on this
     * host is connected (host_clients of them; door_admit): such a
     * client's UCX connects to the tcp interface listening socket of ours
     * it picks (with --listen 0.0.0.0, the one on lo) from that socket's
     * own address, which need not be the one its doorway connection came
     * from. */
    struct sockaddr_storage host_addrs[HOST_ADDRS];
    int nhost_addrs;
    int host_clients;
};

#define CTL 0
#define DATA 1

/* The worker that @p c's endpoint and requests are on. */
static ucp_worker_h conn_worker(const optd_conn_t *c)
{
    return c->data ? c->worker : c->server->ucx[CTL].worker;
}

/* Progresses each data connection's worker (shared memory: polling its
 * FIFO is a few loads). Returns whether anything happened. */
static int progress_data_conns(zero_optd_server_t *s)
{
    int moved = 0;
    for (int i = 0; i < atomic_load(&s->ndata_conns); i++)
        moved |= ucp_worker_progress(s->data_conns[i]->worker) != 0;
    return moved;
}

/* Progresses every worker: the control context's, the data context's own
 * (it holds no endpoint) and each data connection's. Returns whether
 * anything happened. */
static int progress_all(zero_optd_server_t *s)
{
    int moved = zero_optd_ucx_progress(s->ucx, 2);
    return progress_data_conns(s) | moved;
}

static void conn_error_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    optd_conn_t *c = arg;
    if (c->ep != ep)
        return;   /* an endpoint closed earlier, still flushing: its slot may serve another client now */
    if (!c->failed) {
        c->failed = 1;
        c->failed_status = status;
    }
}

/* Ends the refusal log's window once ZERO_OPTD_REFUSAL_WINDOW_S passed, with
 * one line for the refusals it did not log one by one. */
static void refusal_log_flush(zero_optd_server_t *s, double now)
{
    refusal_log_t *r = &s->refusals;
    if (r->in_window == 0 || now - r->window_start < ZERO_OPTD_REFUSAL_WINDOW_S)
        return;
    if (r->unlogged > 0)
        ZERO_LOG_WARN("%d more connection requests refused in the last %.0f s (the first %d of each %.0f s are "
                      "logged one by one); the last: %s%s%s%s",
                      r->unlogged, now - r->window_start, ZERO_OPTD_REFUSALS_IN_FULL, ZERO_OPTD_REFUSAL_WINDOW_S,
                      r->peer[0] ? "client " : "", r->peer, r->peer[0] ? ": " : "", r->why);
    r->in_window = 0;
    r->unlogged = 0;
}

/* Logs @p count refused connection requests from @p peer (NULL: several)
 * for the cause @p fmt says, within the limits above. */
static void refusal_log(zero_optd_server_t *s, int count, const char *peer, const char *fmt, ...) ZERO_PRINTF(4, 5);
static void refusal_log(zero_optd_server_t *s, int count, const char *peer, const char *fmt, ...)
{
    refusal_log_t *r = &s->refusals;
    double now = zero_clock_now();
    char why[sizeof(r->why)];
    va_list ap;
    refusal_log_flush(s, now);
    if (r->in_window == 0)
        r->window_start = now;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (r->in_window < ZERO_OPTD_REFUSALS_IN_FULL) {
        if (peer != NULL)
            ZERO_LOG_WARN("client %s: %s", peer, why);
        else
            ZERO_LOG_WARN("%s", why);
    } else {
        r->unlogged += count;
        snprintf(r->peer, sizeof(r->peer), "%s", peer != NULL ? peer : "");
        snprintf(r->why, sizeof(r->why), "%s", why);
    }
    r->in_window += count;
}

/* Waits for @p req (of @p worker) while progressing; cancels it at @p deadline. */
static ucs_status_t wait_request(zero_optd_server_t *s, ucp_worker_h worker, void *req, double deadline)
{
    ucs_status_t st;
    if (req == NULL)
        return UCS_OK;
    if (UCS_PTR_IS_ERR(req))
        return UCS_PTR_STATUS(req);
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS) {
        if (zero_clock_now() >= deadline) {
            ucp_request_cancel(worker, req);   /* completes it (tag requests), or not (endpoint close) */
            for (double until = zero_clock_now() + 1.0;
                 ucp_request_check_status(req) == UCS_INPROGRESS && zero_clock_now() < until;)
                progress_all(s);
            st = UCS_ERR_TIMED_OUT;
            break;
        }
        progress_all(s);
    }
    ucp_request_free(req);
    return st;
}

static void conn_free_state(optd_conn_t *c)
{
    for (int g = 0; g < ZERO_OPTD_MAX_GROUPS; g++)
        for (int f = 0; f < ZERO_OPTD_MAX_FIELDS; f++) {
            zero_mem_free(c->field[g][f]);
            c->field[g][f] = NULL;
        }
    atomic_fetch_sub(&c->server->bytes, c->state_bytes);
    c->state_bytes = 0;
}

/* Ends the receives and replies of @p c's slots at the next turn of the
 * loop instead of at the io bound: its client is gone (its control
 * connection failed), and a data connection has no error handler of its own
 * that would end them. */
static void expire_requests(zero_optd_server_t *s, optd_conn_t *c)
{
    for (int i = 0; i < SLOTS; i++)
        if (s->slots[i].used && s->slots[i].conn == c)
            s->slots[i].deadline = 0.0;
}

/* Lets go of held request @p i of @p list (@p n of them). */
static void held_forget(held_t *list, int *n, int i)
{
    if (ucp_request_check_status(list[i].req) == UCS_INPROGRESS)
        ucp_request_cancel(list[i].worker, list[i].req);
    ucp_request_free(list[i].req);
    list[i] = list[--*n];
}

/* Holds @p req (of @p worker) in @p list (@p n of at most @p cap) until
 * @p deadline; a full list first lets go of its oldest. */
static void held_add(held_t *list, int *n, int cap, void *req, ucp_worker_h worker, double deadline)
{
    if (*n == cap) {
        int oldest = 0;
        for (int i = 1; i < *n; i++)
            if (list[i].deadline < list[oldest].deadline)
                oldest = i;
        held_forget(list, n, oldest);
    }
    list[(*n)++] = (held_t){.req = req, .worker = worker, .deadline = deadline};
}

/* Frees the requests of @p list that ended and lets go of those past their
 * deadline; of all of them with @p all. With @p worker, only (and all of)
 * those of that worker, which is about to be destroyed. */
static void held_reap(held_t *list, int *n, int all, ucp_worker_h worker)
{
    double now = zero_clock_now();
    for (int i = 0; i < *n;) {
        int keep = worker != NULL ? list[i].worker != worker
                                  : !all && now < list[i].deadline &&
                                        ucp_request_check_status(list[i].req) == UCS_INPROGRESS;
        if (keep)
            i++;
        else
            held_forget(list, n, i);
    }
}

/* Takes @p bytes of the memory limit for the caller (all of them: no
 * limit). Two threads take: the UCX thread a region (region_open), the
 * worker a client's state (handle_hello); a compare and swap, so the two
 * never take the same room. -1 when they would pass the limit, with
 * *@p in_use_p what was in use. */
static int bytes_take(zero_optd_server_t *s, uint64_t bytes, uint64_t *in_use_p)
{
    uint64_t in_use = atomic_load(&s->bytes);
    do {
        *in_use_p = in_use;
        if (s->opts.memory_limit != 0 && (in_use > s->opts.memory_limit || bytes > s->opts.memory_limit - in_use))
            return -1;
    } while (!atomic_compare_exchange_weak(&s->bytes, &in_use, in_use + bytes));
    return 0;
}

/* Allocates data connection @p c's region of @p slots slots of @p elems
 * elements (ATTACH asked for it; the wire bounds both), every page of it
 * backed now, and packs its rkey into @p ar (*@p rkey_buf, released by the
 * caller with ucp_rkey_buffer_release). On any failure (the memory limit, a
 * full /dev/shm, which UCX answers with memory no client can map, no
 * shared-memory allocator in the data context) it frees what it took, logs
 * why and leaves @p ar empty: the client then steps over tagged messages. */
static void region_open(zero_optd_server_t *s, optd_conn_t *c, uint32_t slots, uint32_t elems,
                        zero_optd_attach_reply_t *ar, void **rkey_buf)
{
    uint64_t bytes = slots * zero_optd_region_slot_bytes(elems);
    uint64_t in_use;
    ucp_mem_map_params_t mp;
    ucp_mem_attr_t ma;
    ucp_mem_h memh = NULL;
    ucp_rkey_h own = NULL;
    size_t rkey_len = 0;
    const char *why, *step = "";
    void *here = NULL;
    ucs_status_t st;
    int err;

    memset(ar, 0, sizeof(*ar));
    *rkey_buf = NULL;
    if (bytes_take(s, bytes, &in_use) != 0) {
        ZERO_LOG_WARN("client %s: no region for its data connection: its %llu bytes would pass the memory "
                      "limit %llu (%llu in use); it steps over tagged messages", c->peer,
                      (unsigned long long)bytes, (unsigned long long)s->opts.memory_limit,
                      (unsigned long long)in_use);
        return;
    }
    memset(&mp, 0, sizeof(mp));
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS;
    mp.address = NULL;
    mp.length = (size_t)bytes;
    mp.flags = UCP_MEM_MAP_ALLOCATE;
    st = ucp_mem_map(s->ucx[DATA].context, &mp, &memh);
    if (st != UCS_OK) {
        memh = NULL;
        why = ucs_status_string(st);
        goto fail;
    }
    ma.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
    if (ucp_mem_query(memh, &ma) != UCS_OK || ma.length < bytes) {
        why = "ucp_mem_query";
        goto fail;
    }
    if (ucp_rkey_pack(s->ucx[DATA].context, memh, rkey_buf, &rkey_len) != UCS_OK) {
        *rkey_buf = NULL;
        why = "ucp_rkey_pack";
        goto fail;
    }
    if (rkey_len == 0 || rkey_len > ZERO_OPTD_MAX_RKEY) {
        why = "its packed rkey is too long";
        goto fail;
    }
    /* What a client will ask, asked here first (its mapping here is released
     * at once): ucp_mem_map ALLOCATE falls back without a word where the
     * data context's shared-memory allocator fails, a full /dev/shm for
     * one, to huge pages, thp, mmap or the heap, none of which an rkey_ptr
     * reaches ("Destination is unreachable"), and UCX 1.13 tells no
     * allocation method (ucp_mem_query: address, length, memory type).
     * Such a region would only hold the memory limit's bytes until its
     * connection closed. Before the populate: such pages are not touched. */
    st = zero_optd_region_map(c->ep, *rkey_buf, (uint64_t)(uintptr_t)ma.address, (size_t)bytes, &own, &here, &step);
    if (st != UCS_OK) {
        why = strcmp(step, "unpacked") == 0 ? "its own rkey cannot be unpacked"
                                            : "UCX placed it in memory no client can map (not shared memory): "
                                              "a full /dev/shm (or UCX_POSIX_DIR)?";
        goto fail;
    }
    ucp_rkey_destroy(own);
    err = zero_optd_region_populate(ma.address, (size_t)bytes);
    if (err != 0) {
        why = err == EINVAL ? "this kernel cannot populate it (MADV_POPULATE_WRITE, Linux 5.14)"
                            : "it could not be backed (a full /dev/shm?)";
        goto fail;
    }
    c->region = memh;
    c->region_base = ma.address;
    c->region_slots = slots;
    c->region_elems = elems;
    c->region_bytes = bytes;
    ar->address = (uint64_t)(uintptr_t)ma.address;
    ar->slots = slots;
    ar->slot_elems = elems;
    ar->rkey_len = (uint32_t)rkey_len;
    ar->rkey = *rkey_buf;
    return;
fail:
    ZERO_LOG_WARN("client %s: no region of %llu bytes for its data connection (%s); it steps over tagged messages",
                  c->peer, (unsigned long long)bytes, why);
    if (*rkey_buf != NULL)
        ucp_rkey_buffer_release(*rkey_buf);
    *rkey_buf = NULL;
    if (memh != NULL)
        ucp_mem_unmap(s->ucx[DATA].context, memh);
    atomic_fetch_sub(&s->bytes, bytes);
}

/* Frees @p c's region (no slot of it is in use). The client's mapping
 * keeps the pages until it unmaps them; the file is gone already. */
static void region_close(zero_optd_server_t *s, optd_conn_t *c)
{
    if (c->region == NULL)
        return;
    ucp_mem_unmap(s->ucx[DATA].context, c->region);
    atomic_fetch_sub(&s->bytes, c->region_bytes);
    c->region = NULL;
    c->region_base = NULL;
    c->region_slots = c->region_elems = 0;
    c->region_bytes = 0;
}

/* Destroys data connection @p c's worker (its endpoint is closed, no slot
 * of it is in use), and with it its FIFO and anything a dead sender
 * left there; takes @p c out of server->data_conns if it is there (a
 * request the doorway refuses after opening its worker never joined). */
static void data_worker_free(zero_optd_server_t *s, optd_conn_t *c)
{
    held_reap(s->drops, &s->ndrops, 1, c->worker);
    ucp_worker_destroy(c->worker);
    c->worker = NULL;
    c->efd = -1;
    if (c->data_index >= 0) {
        int n = atomic_load(&s->ndata_conns) - 1;
        s->data_conns[c->data_index] = s->data_conns[n];
        s->data_conns[c->data_index]->data_index = c->data_index;
        atomic_store(&s->ndata_conns, n);
        c->data_index = -1;
    }
}

/* Lets go of @p q's requests (UCX releases them when they end). */
static void fence_drop(optd_slot_t *q)
{
    if (q->req != NULL)
        ucp_request_free(q->req);
    q->req = NULL;
    if (q->head_req != NULL)
        ucp_request_free(q->head_req);
    q->head_req = NULL;
}

static int request_running(void *req)
{
    return req != NULL && ucp_request_check_status(req) == UCS_INPROGRESS;
}

/* @p q's connection was closed FENCE_RETIRE_S ago and UCX still has not
 * ended its request: parks its buffers (UCX may still use them; freed at
 * destroy) and gives it new ones. 0: not yet, or no room or memory (it stays
 * fenced, the safe side; tried again a bound later). */
static int fence_retire(zero_optd_server_t *s, optd_slot_t *q)
{
    unsigned char *rx = NULL, *tx = NULL;
    uint64_t in_use;
    if (zero_clock_now() < q->fence_until)
        return 0;
    q->fence_until = zero_clock_now() + FENCE_RETIRE_S;
    if (s->nretired + 2 > FENCE_RETIRED_MAX || bytes_take(s, 2 * (uint64_t)ZERO_OPTD_MAX_MESSAGE, &in_use) != 0) {
        ZERO_LOG_WARN("zero-optd: a slot's request is still unfinished %.0f s after its connection closed; "
                      "%d slots retired already, memory in use %llu bytes: it stays out of the pool",
                      FENCE_RETIRE_S, s->nretired / 2, (unsigned long long)atomic_load(&s->bytes));
        return 0;
    }
    if (zero_mem_alloc(ZERO_MEM_HOST, ZERO_OPTD_MAX_MESSAGE, "zero-optd receive buffer", (void **)&rx) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, ZERO_OPTD_MAX_MESSAGE, "zero-optd reply buffer", (void **)&tx) != ZERO_OK) {
        zero_mem_free(rx);
        atomic_fetch_sub(&s->bytes, 2 * (uint64_t)ZERO_OPTD_MAX_MESSAGE);
        ZERO_LOG_WARN("zero-optd: no memory to replace a retired slot's buffers: it stays out of the pool");
        return 0;
    }
    ZERO_LOG_WARN("zero-optd: a slot's request is still unfinished %.0f s after its connection closed: "
                  "its buffers are parked until shutdown and the slot gets new ones", FENCE_RETIRE_S);
    s->retired[s->nretired++] = q->rx;
    s->retired[s->nretired++] = q->tx;
    q->rx = rx;
    q->tx = tx;
    return 1;
}

/* Returns to the pool the fenced slots whose connection is closed and whose
 * requests UCX has ended (purged with the endpoint's forced close, or let go
 * with a destroyed data worker): nothing more lands in them; or, where UCX
 * never ends one, with new buffers (fence_retire). */
static void fence_sweep(zero_optd_server_t *s)
{
    for (int i = 0; i < SLOTS; i++) {
        optd_slot_t *q = &s->slots[i];
        if (!q->used || q->fenced != FENCE_CLOSED)
            continue;
        if ((request_running(q->req) || request_running(q->head_req)) && !fence_retire(s, q))
            continue;
        fence_drop(q);
        q->fenced = FENCE_NONE;
        q->used = 0;
        s->nused--;
    }
}

/* @p c's endpoint was just closed by force (a fenced slot's slot_request
 * set c->stuck): its fenced slots wait for UCX to end their requests
 * (fence_sweep), except a data connection's, whose worker is destroyed next
 * and takes them along. */
static void fence_closed(zero_optd_server_t *s, const optd_conn_t *c)
{
    for (int i = 0; i < SLOTS; i++) {
        optd_slot_t *q = &s->slots[i];
        if (!q->used || q->fenced != FENCE_OPEN || q->conn != c || q->state != SLOT_FREE)
            continue;
        q->fenced = FENCE_CLOSED;
        q->fence_until = zero_clock_now() + FENCE_RETIRE_S;   /* fence_retire */
        if (c->worker != NULL)
            fence_drop(q);
    }
}

/* Takes back from the allow list what door_admit put there for @p c (its
 * failures are logged by the guard). */
static void door_unadmit(zero_optd_server_t *s, optd_conn_t *c)
{
    if (c->admitted)
        (void)zero_optd_guard_forget(s->guard, (const struct sockaddr *)&c->peer_sa);
    if (c->admitted_host && --s->host_clients == 0) {
        for (int i = 0; i < s->nhost_addrs; i++)
            (void)zero_optd_guard_forget(s->guard, (const struct sockaddr *)&s->host_addrs[i]);
        s->nhost_addrs = 0;
    }
    c->admitted = c->admitted_host = 0;
}

/* Admits @p c's client to UCX's ports (nothing without a guard): its
 * doorway connection's source address @p sa and, for a client on this host
 * (@p sa one of its addresses), every address of the host while such a
 * client is connected (host_addrs says why; they expose nothing more: any
 * process of the host can connect from @p sa already, and a peer elsewhere
 * that claims a source address of this host gets no handshake, its SYN-ACK
 * going to this host). Returns ZERO_OK, or the guard's error with nothing
 * admitted. */
static zero_status_t door_admit(zero_optd_server_t *s, optd_conn_t *c, const struct sockaddr_storage *sa)
{
    zero_status_t status;
    if (s->guard == NULL)
        return ZERO_OK;
    status = zero_optd_guard_allow(s->guard, (const struct sockaddr *)sa);
    if (status != ZERO_OK)
        return status;
    c->peer_sa = *sa;
    c->admitted = 1;
    if (!zero_optd_is_host_address((const struct sockaddr *)sa))
        return ZERO_OK;
    if (s->host_clients == 0) {
        int n = zero_optd_host_addresses(s->host_addrs, HOST_ADDRS);
        for (int i = 0; i < n; i++) {
            status = zero_optd_guard_allow(s->guard, (const struct sockaddr *)&s->host_addrs[i]);
            if (status != ZERO_OK) {
                while (i-- > 0)
                    (void)zero_optd_guard_forget(s->guard, (const struct sockaddr *)&s->host_addrs[i]);
                door_unadmit(s, c);
                return status;
            }
        }
        s->nhost_addrs = n;
    }
    s->host_clients++;
    c->admitted_host = 1;
    return ZERO_OK;
}

/* Closes @p c now, or, while slots of it are in use, once the last one is
 * freed (advance_slots): the worker may be using its state. */
static void conn_close(optd_conn_t *c, const char *why)
{
    zero_optd_server_t *s = c->server;
    ucp_request_param_t rp;
    void *close_req;
    if (c->state == CONN_FREE)
        return;
    atomic_store(&c->dead, 1);
    if (c->partner != NULL) {
        /* a client's control and data connections go together */
        optd_conn_t *p = c->partner;
        c->partner = NULL;
        p->partner = NULL;
        /* A data connection closed with its control connection was closed
         * by its client before BYE, or its client is gone: dropped at once
         * (flushing it would only time out). A control connection closed
         * with its data connection (a refusal there) is flushed as usual. */
        if (c->failed || p->data)
            p->stuck = 1;
        if (c->failed)
            expire_requests(s, p);
        conn_close(p, why != NULL ? why : "its other connection closed");
    }
    /* A data connection's slots are of no more use: it gets no replies
     * once closing (advance_ring) and is closed by force. Left, a slot
     * whose gradient never comes held the connection, and its slot, to the
     * io bound: closed on a failed reply to a vanished client (UCX's
     * "Endpoint timeout" on its shared memory), its control connection
     * closed with it, so that connection's own failure, seen later, no
     * longer expired anything (reap skips closing connections): the next
     * client waited 29-30 s (docs/optd.md, Safety). */
    if (c->data && c->inflight > 0)
        expire_requests(s, c);
    if (c->inflight > 0) {
        if (!c->closing && why != NULL)
            snprintf(c->close_why, sizeof(c->close_why), "%s", why);
        c->closing = 1;
        return;
    }
    if (c->closing)
        why = c->close_why[0] ? c->close_why : NULL;
    if (why != NULL)
        ZERO_LOG_INFO("client %s (rank %d): connection closed: %s", c->peer,
                      c->hello_done ? (int)c->rank : -1, why);
    conn_free_state(c);
    if (c->attach_req != NULL) {
        ucp_request_cancel(conn_worker(c), c->attach_req);
        ucp_request_free(c->attach_req);
        c->attach_req = NULL;
    }
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    /* A live client's control connection is flushed first, so a refusal
     * just sent reaches it; the loop does not wait for that (a client that
     * does not read could hold it up to the bound, 1 s per connection, and
     * a hostile one open many): reap() ends or lets go of the close. A
     * failed client is dropped at once, and so is a data connection: its
     * replies were complete once in the client's FIFO, and its worker goes
     * with it. */
    rp.flags = c->failed || c->stuck || c->data ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    close_req = ucp_ep_close_nbx(c->ep, &rp);
    c->ep = NULL;
    region_close(s, c);
    fence_closed(s, c);
    if (c->worker != NULL) {
        if (close_req != NULL && !UCS_PTR_IS_ERR(close_req))
            ucp_request_free(close_req);   /* released with the worker */
        data_worker_free(s, c);
    } else if (close_req != NULL && !UCS_PTR_IS_ERR(close_req)) {
        held_add(s->closes, &s->ncloses, ZERO_OPTD_MAX_CONNS, close_req, conn_worker(c), zero_clock_now() + 1.0);
    }
    fence_sweep(s);
    door_unadmit(s, c);
    c->state = CONN_FREE;
    c->key = 0;
    c->failed = 0;
    c->stuck = 0;
    c->closing = 0;
    c->close_why[0] = '\0';
    c->hello_done = 0;
    c->refused = 0;
    c->strays = 0;
    c->data = 0;
    c->ticket = 0;   /* expires with its connection */
    c->ticket_key = 0;
    c->owner = c;
    c->rank = 0;
    c->num_groups = c->num_states = 0;
    memset(c->length, 0, sizeof(c->length));
}

/* "host:port" of @p sa, an IPv6 host in brackets ("[::1]:5000", as a
 * client's server address is written). */
static void describe_sockaddr(const struct sockaddr_storage *sa, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, n, "[%s]:%d", host, port);
        return;
    }
    snprintf(out, n, "%s:%d", host, port);
}

static uint64_t new_key(int slot)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint64_t)(zero_clock_now() * 1e9);
    /* bits 63 and 62 clear (replies and split replies' arrays set them), low
     * 16 bits the slot: never another key's reply tag */
    return ((r << 16) & ~(ZERO_OPTD_TAG_REPLY | ZERO_OPTD_TAG_DATA)) | (uint64_t)slot;
}

/* A data connection's ticket: 64 random bits, never 0 (no ticket). 0 when getrandom fails: that
 * control connection then gets no data connection (a guessable ticket would
 * defeat its purpose). */
static uint64_t new_ticket(void)
{
    uint64_t t = 0;
    if (getrandom(&t, sizeof(t), GRND_NONBLOCK) != (ssize_t)sizeof(t))
        return 0;
    return t != 0 ? t : 1;
}

/* The control connection whose ticket is @p id (and uses the ticket up), or
 * NULL: then the doorway refuses the data connection before anything of it
 * exists. Every connection is compared, so the time taken does not tell how
 * much of a guess matched. */
static optd_conn_t *take_ticket(zero_optd_server_t *s, uint64_t id)
{
    optd_conn_t *owner = NULL;
    for (int i = 0; i < ZERO_OPTD_MAX_CONNS; i++) {
        optd_conn_t *c = &s->conns[i];
        int match = id != 0 && c->ticket == id;
        /* not one being closed either (slots of it still in use) */
        if (match && c->state == CONN_READY && !c->data && c->partner == NULL && !c->failed && !c->closing)
            owner = c;
    }
    if (owner != NULL)
        owner->ticket = 0;   /* single use */
    return owner;
}

/* ---------- the doorway (docs/optd.md, "The doorway") ---------- */

/* Closes doorway entry @p e (its socket; the entry is free again). */
static void door_drop(zero_optd_server_t *s, door_entry_t *e)
{
    if (e->fd < 0)
        return;
    close(e->fd);
    e->fd = -1;
    e->got = 0;
}

/* Sends the answer in s->door_answer (@p len bytes) with one nonblocking
 * send and closes @p e: a client that does not read is not waited for, and
 * an answer that does not go out whole is not finished later (the client
 * sees the connection close without one). */
static void door_answer(zero_optd_server_t *s, door_entry_t *e, size_t len)
{
    ssize_t n = send(e->fd, s->door_answer, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n != (ssize_t)len)
        ZERO_LOG_DEBUG("client %s: the doorway's answer did not go out whole", e->peer);
    door_drop(s, e);
}

/* Refuses @p e's request (of @p kind, 0: unknown) with @p status and the
 * reason @p fmt says, in the answer and in the refusal log. */
static void door_refuse(zero_optd_server_t *s, door_entry_t *e, uint32_t kind, zero_status_t status, const char *fmt,
                        ...) ZERO_PRINTF(5, 6);
static void door_refuse(zero_optd_server_t *s, door_entry_t *e, uint32_t kind, zero_status_t status, const char *fmt,
                        ...)
{
    char text[ZERO_OPTD_MAX_DOOR_TEXT + 1];
    zero_optd_door_answer_t ans;
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > ZERO_OPTD_MAX_DOOR_TEXT)
        n = ZERO_OPTD_MAX_DOOR_TEXT;
    refusal_log(s, 1, e->peer, "%s", text);
    memset(&ans, 0, sizeof(ans));
    ans.kind = kind <= ZERO_OPTD_DOOR_DATA ? kind : 0;
    ans.status = status;
    ans.len = (uint32_t)n;
    ans.text = text;
    door_answer(s, e, zero_optd_encode_door_answer(s->door_answer, &ans));
}

/* The doorway's checks, in order, before any UCX object exists (magic and
 * version, the job token, a data request's ticket, room), then the
 * connection: an endpoint to the client's worker address, on the control
 * worker (peer-failure mode) or on a data connection's own worker (none),
 * and the answer with its key and the address of the worker the client
 * connects to. The request in @p e is whole (or malformed: @p v). */
static void door_decide(zero_optd_server_t *s, door_entry_t *e, const zero_optd_door_request_t *rq,
                        zero_optd_parse_t v)
{
    zero_optd_door_answer_t ans;
    optd_conn_t *c = NULL, *ticket_owner = NULL;
    ucp_address_t *data_address = NULL;
    size_t data_address_len = 0;
    unsigned char diff = 0;
    ucp_ep_params_t p;
    ucs_status_t st;
    int data;

    if (v == ZERO_OPTD_PARSE_VERSION) {
        door_refuse(s, e, 0, ZERO_ERR_PROTOCOL, "protocol version %u expected, the request has version %u",
                    ZERO_OPTD_VERSION, rq->version);
        return;
    }
    if (v != ZERO_OPTD_PARSE_OK) {
        door_refuse(s, e, 0, ZERO_ERR_PROTOCOL, "malformed doorway request: %s", zero_optd_parse_string(v));
        return;
    }
    data = rq->kind == ZERO_OPTD_DOOR_DATA;
    for (unsigned i = 0; i < ZERO_OPTD_TOKEN_BYTES; i++)   /* constant time */
        diff |= (unsigned char)(rq->token[i] ^ s->opts.token[i]);
    if (s->opts.have_token && diff != 0) {
        door_refuse(s, e, rq->kind, ZERO_ERR_PROTOCOL,
                    "refused: its job token differs from this server's (a server serves one job)");
        return;
    }
    /* data connections off: checked before the ticket, which is then not
     * used up (HELLO's reply hands none out then anyway) */
    if (data && !s->data_ok) {
        door_refuse(s, e, rq->kind, ZERO_ERR_UNSUPPORTED,
                    "no data connections on this server (ZERO_OPTD_SAME_HOST=0, or no shared-memory context)");
        return;
    }
    if (data && (ticket_owner = take_ticket(s, rq->ticket)) == NULL) {
        door_refuse(s, e, rq->kind, ZERO_ERR_PROTOCOL,
                    "data connection refused: no valid ticket (none, a wrong one, one used, or its control "
                    "connection is closing)");
        return;
    }
    for (int i = 0; i < ZERO_OPTD_MAX_CONNS && c == NULL; i++)
        if (s->conns[i].state == CONN_FREE)
            c = &s->conns[i];
    if (c == NULL) {
        door_refuse(s, e, rq->kind, ZERO_ERR_COMM, "refused: all %d connections in use", ZERO_OPTD_MAX_CONNS);
        return;
    }
    if (data && (atomic_load(&s->ndata_conns) == ZERO_OPTD_MAX_DATA_CONNS ||
                 zero_optd_worker_open(s->ucx[DATA].context, &c->worker, &c->efd,
                                       "zero-optd: a data connection's worker") != ZERO_OK)) {
        /* the client falls back to its control connection */
        door_refuse(s, e, rq->kind, ZERO_ERR_COMM, "data connection refused: %d of %d in use, or no worker for it",
                    atomic_load(&s->ndata_conns), ZERO_OPTD_MAX_DATA_CONNS);
        return;
    }
    /* The client's address on the allow list of UCX's ports before it is
     * answered (and any listener opened since the last call guarded: it
     * rescans; with the data context posix alone a data connection's worker
     * opens none). */
    if (door_admit(s, c, &e->sa) != ZERO_OK) {
        if (data)
            data_worker_free(s, c);
        door_refuse(s, e, rq->kind, ZERO_ERR_COMM,
                    "refused: its address cannot be admitted to the server's UCX ports (the allow list is full or "
                    "the kernel refused the filter: the server's log says which)");
        return;
    }
    if (data && ucp_worker_get_address(c->worker, &data_address, &data_address_len) != UCS_OK) {
        door_unadmit(s, c);
        data_worker_free(s, c);
        door_refuse(s, e, rq->kind, ZERO_ERR_COMM, "data connection refused: its worker has no address");
        return;
    }
    memset(&p, 0, sizeof(p));
    p.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    p.address = rq->address;
    if (data) {
        /* UCX 1.13 gives peer-failure endpoints no shared memory; a data
         * connection's client is watched through its control connection,
         * and its context has no transport that can abort the process
         * when the client dies (optd_ucx.h) */
        p.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    } else {
        p.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLER;
        p.err_mode = UCP_ERR_HANDLING_MODE_PEER;   /* a client that vanishes must free its state */
        p.err_handler.cb = conn_error_cb;
        p.err_handler.arg = c;
    }
    c->server = s;
    c->failed = 0;
    c->data = data;
    atomic_store(&c->dead, 0);
    /* a token holder's address only: UCX parses it here */
    st = ucp_ep_create(conn_worker(c), &p, &c->ep);
    if (st != UCS_OK) {
        if (data_address != NULL)
            ucp_worker_release_address(c->worker, data_address);
        if (c->worker != NULL)
            data_worker_free(s, c);
        c->data = 0;
        door_unadmit(s, c);
        door_refuse(s, e, rq->kind, ZERO_ERR_COMM, "could not create an endpoint to its worker address: %s",
                    ucs_status_string(st));
        return;
    }
    if (data) {
        int n = atomic_load(&s->ndata_conns);
        c->data_index = n;
        s->data_conns[n] = c;
        atomic_store(&s->ndata_conns, n + 1);
    }
    c->ticket = data ? 0 : new_ticket();
    c->ticket_key = data ? ticket_owner->key : 0;
    c->state = CONN_NEW;
    c->owner = c;
    c->key = new_key((int)(c - s->conns));
    c->opened_at = zero_clock_now();
    snprintf(c->peer, sizeof(c->peer), "%s", e->peer);
    memset(&ans, 0, sizeof(ans));
    ans.kind = rq->kind;
    ans.status = 0;
    ans.conn_key = c->key;
    ans.address = data ? (const void *)data_address : (const void *)s->ctl_address;
    ans.len = (uint32_t)(data ? data_address_len : s->ctl_address_len);
    door_answer(s, e, zero_optd_encode_door_answer(s->door_answer, &ans));
    if (data_address != NULL)
        ucp_worker_release_address(c->worker, data_address);
    ZERO_LOG_DEBUG("client %s connected (slot %d%s)", c->peer, (int)(c - s->conns), data ? ", data" : "");
}

/* Reads what @p e's socket holds, up to the request's end (its head first,
 * then the address its head announces: never more than the bound), and
 * decides once it is whole or malformed. A connection closed early is
 * dropped (and counted as a refusal). */
static void door_read(zero_optd_server_t *s, door_entry_t *e)
{
    zero_optd_door_request_t rq;
    zero_optd_parse_t v = zero_optd_decode_door_request(e->buf, e->got, &rq);
    while (v == ZERO_OPTD_PARSE_SHORT) {
        size_t want = e->got < ZERO_OPTD_DOOR_REQUEST_HEAD ? ZERO_OPTD_DOOR_REQUEST_HEAD
                                                           : ZERO_OPTD_DOOR_REQUEST_HEAD + (size_t)rq.address_len;
        ssize_t n = recv(e->fd, e->buf + e->got, want - e->got, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;   /* more later */
        if (n <= 0) {
            refusal_log(s, 1, e->peer, "doorway connection closed after %zu bytes, before its request was whole",
                        e->got);
            door_drop(s, e);
            return;
        }
        e->got += (size_t)n;
        v = zero_optd_decode_door_request(e->buf, e->got, &rq);
    }
    door_decide(s, e, &rq, v);
}

/* Accepts what waits on the listening socket (at most DOOR_ACCEPTS_PER_PASS)
 * into doorway entries; with the table full, the oldest entry is closed to
 * make room. */
static void door_accept(zero_optd_server_t *s)
{
    for (int k = 0; k < DOOR_ACCEPTS_PER_PASS; k++) {
        struct sockaddr_storage sa;
        socklen_t sa_len = sizeof(sa);
        door_entry_t *e = NULL;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&sa, &sa_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;   /* EAGAIN: none waiting; anything else (EMFILE ...): tried again next pass */
        for (int i = 0; i < DOOR_ENTRIES && e == NULL; i++)
            if (s->door[i].fd < 0)
                e = &s->door[i];
        if (e == NULL) {
            door_entry_t *oldest = &s->door[0];
            for (int i = 1; i < DOOR_ENTRIES; i++)
                if (s->door[i].opened < oldest->opened)
                    oldest = &s->door[i];
            refusal_log(s, 1, oldest->peer, "doorway connection closed after %zu bytes: %d newer ones waiting",
                        oldest->got, DOOR_ENTRIES);
            door_drop(s, oldest);
            e = oldest;
        }
        e->fd = fd;
        e->got = 0;
        e->opened = zero_clock_now();
        describe_sockaddr(&sa, e->peer, sizeof(e->peer));
        e->sa = sa;
    }
}

/* One look at the doorway, without waiting: accepts what waits and reads
 * every entry whose socket has something (or an error). Returns whether
 * anything did. */
static int door_service(zero_optd_server_t *s)
{
    struct pollfd pfd[1 + DOOR_ENTRIES];
    int idx[1 + DOOR_ENTRIES], n = 1;
    pfd[0] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
    for (int i = 0; i < DOOR_ENTRIES; i++)
        if (s->door[i].fd >= 0) {
            pfd[n] = (struct pollfd){.fd = s->door[i].fd, .events = POLLIN};
            idx[n++] = i;
        }
    if (poll(pfd, (nfds_t)n, 0) <= 0)
        return 0;
    for (int k = 1; k < n; k++)
        if (pfd[k].revents != 0 && s->door[idx[k]].fd == pfd[k].fd)
            door_read(s, &s->door[idx[k]]);
    if (pfd[0].revents & POLLIN)
        door_accept(s);
    return 1;
}

/* Closes doorway entries older than the hello deadline. */
static void door_expire(zero_optd_server_t *s, double now)
{
    for (int i = 0; i < DOOR_ENTRIES; i++)
        if (s->door[i].fd >= 0 && now - s->door[i].opened > s->opts.hello_timeout_s) {
            refusal_log(s, 1, s->door[i].peer, "doorway connection closed after %zu bytes: no whole request "
                        "within %.0f s", s->door[i].got, s->opts.hello_timeout_s);
            door_drop(s, &s->door[i]);
        }
}

static optd_conn_t *conn_of_tag(zero_optd_server_t *s, uint64_t tag)
{
    size_t slot = (size_t)(tag & 0xffffu);
    if (slot >= ZERO_OPTD_MAX_CONNS || s->conns[slot].state == CONN_FREE || s->conns[slot].closing ||
        s->conns[slot].key != tag)
        return NULL;
    return &s->conns[slot];
}

/* ---------- the worker: decode, act, leave the reply in the slot ---------- */

/* The reply in @p q->tx (its body already there): encodes the header. */
static void slot_reply(optd_slot_t *q, uint32_t type, uint64_t seq, int32_t status, uint32_t body_len)
{
    zero_optd_header_t h = {.version = ZERO_OPTD_VERSION, .type = type | ZERO_OPTD_REPLY, .status = status,
                            .body_len = body_len, .conn_key = q->conn->key, .seq = seq};
    /* arrays the client hands its caller go as their own message (optd_wire.h) */
    q->split = status == 0 && body_len > 0 &&
               (type == ZERO_OPTD_STEP || type == ZERO_OPTD_LAMB2 || type == ZERO_OPTD_READ);
    if (q->split)
        h.type |= ZERO_OPTD_SPLIT;
    zero_optd_encode_header(q->tx, &h);
    q->reply = 1;
    q->reply_len = ZERO_OPTD_HEADER_BYTES + body_len;
}

/* An error reply whose text says what was wrong, then (close != 0) the close. */
static void refuse(optd_slot_t *q, uint32_t type, uint64_t seq, zero_status_t status, int close, const char *fmt,
                   ...) ZERO_PRINTF(6, 7);
static void refuse(optd_slot_t *q, uint32_t type, uint64_t seq, zero_status_t status, int close, const char *fmt,
                   ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf((char *)q->tx + ZERO_OPTD_HEADER_BYTES, ZERO_OPTD_MAX_TEXT, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((unsigned)n >= ZERO_OPTD_MAX_TEXT)
        n = ZERO_OPTD_MAX_TEXT - 1;
    ZERO_LOG_WARN("client %s: %s", q->conn->peer, (char *)q->tx + ZERO_OPTD_HEADER_BYTES);
    slot_reply(q, type, seq, status, (uint32_t)n);
    if (close) {
        q->close = 1;
        q->conn->refused = 1;
    }
}

static void handle_hello(zero_optd_server_t *s, optd_slot_t *q, const zero_optd_header_t *h,
                         const unsigned char *body)
{
    optd_conn_t *c = q->conn;
    zero_optd_hello_t hello;
    zero_optd_parse_t v = zero_optd_decode_hello(body, h->body_len, &hello);
    unsigned char diff = 0;
    uint64_t need = 0, in_use;
    int data_ok;

    if (v != ZERO_OPTD_PARSE_OK) {
        refuse(q, ZERO_OPTD_HELLO, h->seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: malformed HELLO: %s",
               zero_optd_parse_string(v));
        return;
    }
    for (unsigned i = 0; i < ZERO_OPTD_TOKEN_BYTES; i++)   /* constant time */
        diff |= (unsigned char)(hello.token[i] ^ s->opts.token[i]);
    if (s->opts.have_token && diff != 0) {
        refuse(q, ZERO_OPTD_HELLO, h->seq, ZERO_ERR_PROTOCOL, 1,
               "zero-optd: refused rank %u: its job token differs from this server's (a server serves one job)",
               hello.rank);
        return;
    }
    for (uint32_t g = 0; g < hello.num_groups; g++)
        need += hello.length[g] * (uint64_t)(1 + hello.num_states) * sizeof(float);
    /* taken now, whole: the UCX thread takes regions meanwhile (bytes_take) */
    if (bytes_take(s, need, &in_use) != 0) {
        refuse(q, ZERO_OPTD_HELLO, h->seq, ZERO_ERR_NO_MEMORY, 1,
               "zero-optd: memory limit: rank %u's slices need %llu bytes, %llu of the limit %llu are in use",
               hello.rank, (unsigned long long)need, (unsigned long long)in_use,
               (unsigned long long)s->opts.memory_limit);
        return;
    }
    c->state_bytes = need;   /* given back by conn_free_state, also when an allocation below fails */
    c->rank = hello.rank;
    c->num_groups = hello.num_groups;
    c->num_states = hello.num_states;
    memcpy(c->length, hello.length, sizeof(c->length));
    for (uint32_t g = 0; g < hello.num_groups; g++)
        for (uint32_t f = 0; f <= hello.num_states; f++) {
            size_t bytes = (size_t)hello.length[g] * sizeof(float);
            if (zero_mem_alloc(ZERO_MEM_HOST, bytes ? bytes : sizeof(float), "zero-optd client state",
                               (void **)&c->field[g][f]) != ZERO_OK) {
                refuse(q, ZERO_OPTD_HELLO, h->seq, ZERO_ERR_NO_MEMORY, 1,
                       "zero-optd: out of memory for rank %u's %llu bytes of state", hello.rank,
                       (unsigned long long)need);
                return;
            }
            memset(c->field[g][f], 0, bytes);
        }
    c->hello_done = 1;
    q->hello_ok = 1;
    ZERO_LOG_INFO("client %s: rank %u holds %llu bytes here (%u groups, %u states)", c->peer, hello.rank,
                  (unsigned long long)need, hello.num_groups, hello.num_states);
    /* The reply offers a data connection: a client on this host may ask the
     * doorway (this port) for a second connection with the ticket, which
     * UCX can give shared memory (not when every data connection is taken:
     * the doorway would refuse it, nor without a ticket). */
    data_ok = s->data_ok && c->ticket != 0 && atomic_load(&s->ndata_conns) < ZERO_OPTD_MAX_DATA_CONNS;
    zero_put_le32(q->tx + ZERO_OPTD_HEADER_BYTES, data_ok ? (uint32_t)s->port : 0u);
    zero_put_le32(q->tx + ZERO_OPTD_HEADER_BYTES + 4, 0);
    zero_put_le64(q->tx + ZERO_OPTD_HEADER_BYTES + 8, data_ok ? c->ticket : 0u);
    slot_reply(q, ZERO_OPTD_HELLO, h->seq, ZERO_OK, ZERO_OPTD_HELLO_REPLY_BODY);
}

/* Whether [begin, begin + count) of @p group lies in the connection's slice; refuses otherwise. */
static int range_ok(optd_slot_t *q, uint32_t type, uint64_t seq, uint32_t group, uint32_t field, uint64_t begin,
                    uint64_t count)
{
    const optd_conn_t *c = q->conn->owner;
    if (group >= c->num_groups || field > c->num_states || begin > c->length[group] ||
        count > c->length[group] - begin) {
        refuse(q, type, seq, ZERO_ERR_INVALID_ARG, 1,
               "zero-optd: rank %u asked for field %u of group %u [%llu, +%llu), outside its %u groups of "
               "%llu elements and %u states", c->rank, field, group, (unsigned long long)begin,
               (unsigned long long)count, c->num_groups,
               (unsigned long long)(group < c->num_groups ? c->length[group] : 0), c->num_states);
        return 0;
    }
    return 1;
}

/* The 16-bit type of a wire dtype (1 fp16, 2 bf16; NONE for fp32). */
static zero_optim_w16_t wire_w16(uint32_t dtype)
{
    return dtype == 2 ? ZERO_OPTIM_W16_BF16 : dtype == 1 ? ZERO_OPTIM_W16_FP16 : ZERO_OPTIM_W16_NONE;
}

/* LAMB1's gradient (@p n of wire @p dtype) as fp32: itself, or widened
 * into the worker's buffer (Lamb's phase-1 sums take fp32; STEP widens
 * inside its kernel). NULL (the message refused) on failure. */
static const float *grad_f32(zero_optd_server_t *s, const zero_optim_ctx_t *ctx, optd_slot_t *q,
                             const zero_optd_header_t *h, uint32_t dtype, const void *grad, size_t n)
{
    zero_status_t status;
    if (dtype == 0)
        return grad;
    status = zero_optim_from_16(ctx, wire_w16(dtype), s->grad32, grad, n);
    if (status != ZERO_OK) {
        refuse(q, h->type, h->seq, status, 1, "zero-optd: converting rank %u's gradient failed",
               q->conn->owner->rank);
        return NULL;
    }
    return s->grad32;
}

/* STEP (the gradient in the message, the weights in the reply) and
 * STEP_REGION (both in a slot of the data connection's region: only the
 * header travels; docs/optd.md, "One-sided on one host"). A region slot is
 * checked against what region_open allocated: the slot index, the count
 * against the slot's room; nothing is read from the region but the
 * gradient's values. */
static void handle_step(zero_optd_server_t *s, optd_slot_t *q, const zero_optd_header_t *h,
                        const unsigned char *body)
{
    optd_conn_t *c = q->conn->owner;   /* the state: a data connection uses its control connection's */
    const optd_conn_t *d = q->conn;    /* the region: the data connection's own */
    int region = h->type == ZERO_OPTD_STEP_REGION;
    zero_optd_step_t w;
    zero_store_async_step_t st;
    zero_optd_parse_t v = region ? zero_optd_decode_step_region(body, h->body_len, &w)
                                 : zero_optd_decode_step(body, h->body_len, &w);
    zero_optim_w16_t w16_type;
    unsigned char *out = q->tx + ZERO_OPTD_HEADER_BYTES;
    float *master, *s1, *s2;
    uint16_t *w16;
    zero_status_t status;
    size_t n;

    if (v != ZERO_OPTD_PARSE_OK) {
        refuse(q, h->type, h->seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: malformed %s from rank %u: %s",
               region ? "STEP_REGION" : "STEP", c->rank, zero_optd_parse_string(v));
        return;
    }
    if (region) {
        if (d->region == NULL) {
            refuse(q, h->type, h->seq, ZERO_ERR_PROTOCOL, 1,
                   "zero-optd: STEP_REGION from rank %u on a connection without a region", c->rank);
            return;
        }
        /* at most the slot's elements, and in bytes for both dtypes (the
         * kernel reads count gradients from the slot's first half and writes
         * count weights, 4 bytes each for fp32, into its second, each half
         * region_elems * 4 bytes; a dtype wider than 4 bytes would not fit).
         * count <= 2^20 (the decoder) and slot < 32: no overflow below. */
        size_t half = (size_t)d->region_elems * sizeof(float);
        if (w.slot >= d->region_slots || w.count * zero_optd_dtype_size(w.grad_dtype) > half ||
            w.count * zero_optd_dtype_size(w.weight_dtype) > half || w.count > d->region_elems) {
            refuse(q, h->type, h->seq, ZERO_ERR_INVALID_ARG, 1,
                   "zero-optd: rank %u's STEP_REGION names slot %u with %llu elements; its region has %u slots of "
                   "%u elements", c->rank, w.slot, (unsigned long long)w.count, d->region_slots, d->region_elems);
            return;
        }
        /* the gradient in the slot's first half, the weights into its second */
        w.grad = d->region_base + w.slot * zero_optd_region_slot_bytes(d->region_elems);
        out = (unsigned char *)w.grad + half;
    }
    if (!range_ok(q, h->type, h->seq, w.group, 0, w.begin, w.count))
        return;
    n = (size_t)w.count;
    memset(&st, 0, sizeof(st));
    st.group = (int)w.group;
    st.begin = (size_t)w.begin;
    st.count = n;
    st.optimizer = w.optimizer == ZERO_OPTD_ADAM ? ZERO_OPTIMIZER_ADAM
                   : w.optimizer == ZERO_OPTD_SGD ? ZERO_OPTIMIZER_SGD
                   : w.optimizer == ZERO_OPTD_ADAGRAD ? ZERO_OPTIMIZER_ADAGRAD : ZERO_OPTIMIZER_LION;
    st.lr = w.lr;
    st.beta1 = w.beta1;
    st.beta2 = w.beta2;
    st.eps = w.eps;
    st.weight_decay = w.weight_decay;
    st.momentum = w.momentum;
    st.dampening = w.dampening;
    st.lr_decay = w.lr_decay;
    st.adam_w_mode = (w.flags & ZERO_OPTD_FLAG_ADAM_W_MODE) != 0;
    st.bias_correction = (w.flags & ZERO_OPTD_FLAG_BIAS_CORRECTION) != 0;
    st.nesterov = (w.flags & ZERO_OPTD_FLAG_NESTEROV) != 0;
    st.step = w.step;
    st.grad_scale = w.grad_scale;
    if ((st.optimizer == ZERO_OPTIMIZER_ADAM && c->num_states < 2) ||
        (st.optimizer != ZERO_OPTIMIZER_SGD && st.optimizer != ZERO_OPTIMIZER_ADAM && c->num_states < 1) ||
        (st.optimizer == ZERO_OPTIMIZER_SGD && st.momentum != 0.0f && c->num_states < 1)) {
        refuse(q, h->type, h->seq, ZERO_ERR_INVALID_ARG, 1,
               "zero-optd: rank %u's optimizer needs more states than the %u it declared", c->rank, c->num_states);
        return;
    }
    w16_type = wire_w16(w.weight_dtype);
    master = c->field[w.group][0] + w.begin;
    s1 = c->num_states >= 1 ? c->field[w.group][1] + w.begin : NULL;
    s2 = c->num_states >= 2 ? c->field[w.group][2] + w.begin : NULL;
    w16 = w16_type != ZERO_OPTIM_W16_NONE ? (uint16_t *)(void *)out : NULL;
    /* A 16-bit gradient is widened inside the kernel, a block at a time,
     * straight from the receive slot: no fp32 copy of it is written and
     * read back (0.4 ms of a 4 Mi-element step). Bitwise the same as
     * widening first (zero_store_run_kernel_g16). */
    if (w.grad_dtype != 0)
        status = zero_store_run_kernel_g16(&s->optim, &st, master, w.grad, wire_w16(w.grad_dtype), s1, s2, w16,
                                           w16_type, n);
    else
        status = zero_store_run_kernel(&s->optim, &st, master, w.grad, s1, s2, w16, w16_type, n);
    if (status != ZERO_OK) {
        refuse(q, h->type, h->seq, status, 0,
               "zero-optd: rank %u's step of group %u [%llu, +%llu) failed: %s (hyper-parameters out of range?)",
               c->rank, w.group, (unsigned long long)w.begin, (unsigned long long)n, zero_status_string(status));
        return;
    }
    if (w16_type == ZERO_OPTIM_W16_NONE)
        memcpy(out, master, n * sizeof(float));
    /* STEP_REGION's reply is the header alone: the weights are in the slot */
    slot_reply(q, h->type, h->seq, ZERO_OK, region ? 0u : (uint32_t)(n * zero_optd_dtype_size(w.weight_dtype)));
}

/* LAMB1 and LAMB2 (optd_wire.h; docs/optd.md, "Lamb on the server"): the
 * kernels of the client's level and chunk, so that phase 1's chunk sums are
 * the ones its own kernel would form; phase 2 applies the trust ratio of the
 * parameter's totals the client sends. */
static void handle_lamb(zero_optd_server_t *s, optd_slot_t *q, const zero_optd_header_t *h,
                        const unsigned char *body)
{
    optd_conn_t *c = q->conn->owner;   /* the state: a data connection uses its control connection's */
    int phase = h->type == ZERO_OPTD_LAMB1 ? 1 : 2;
    unsigned char *out = q->tx + ZERO_OPTD_HEADER_BYTES;
    zero_optd_lamb_t w;
    zero_optd_parse_t v = zero_optd_decode_lamb(body, h->body_len, phase, &w);
    zero_store_async_step_t st;
    zero_optim_ctx_t ctx;
    zero_optim_w16_t w16_type;
    const float *g32;
    float *master, *m, *vv;
    double sums[2];
    zero_status_t status;
    size_t n;

    if (v != ZERO_OPTD_PARSE_OK) {
        refuse(q, h->type, h->seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: malformed LAMB%d from rank %u: %s", phase,
               c->rank, zero_optd_parse_string(v));
        return;
    }
    if (!range_ok(q, h->type, h->seq, w.group, 0, w.begin, w.count))
        return;
    if (c->num_states < 2) {
        refuse(q, h->type, h->seq, ZERO_ERR_INVALID_ARG, 1,
               "zero-optd: rank %u's Lamb needs 2 states, it declared %u", c->rank, c->num_states);
        return;
    }
    /* A context per message: it only fills a table (the pool is the
     * server's). Its level is the client's, up to the server's own (its CPU's,
     * or lower where zero-optd's ZERO_CPU_ISA says so: s->optim), so servers
     * of one job on different CPUs refuse alike, whichever host runs them. */
    if (w.isa > (uint32_t)s->optim.isa || zero_optim_ctx_init(&ctx, (zero_optim_isa_t)w.isa, s->pool) != ZERO_OK ||
        zero_optim_ctx_set_chunk(&ctx, w.chunk) != ZERO_OK) {
        refuse(q, h->type, h->seq, ZERO_ERR_UNSUPPORTED, 0,
               "zero-optd: rank %u's Lamb sums need the %s kernels, above this server's %s (its CPU, or its "
               "ZERO_CPU_ISA; set ZERO_CPU_ISA on the ranks to a level both have)", c->rank,
               zero_optim_isa_name((zero_optim_isa_t)w.isa), zero_optim_isa_name(s->optim.isa));
        return;
    }
    n = (size_t)w.count;
    memset(&st, 0, sizeof(st));
    st.group = (int)w.group;
    st.begin = (size_t)w.begin;
    st.count = n;
    st.optimizer = ZERO_OPTIMIZER_LAMB;
    st.lamb_phase = phase;
    st.lr = w.lr;
    st.beta1 = w.beta1;
    st.beta2 = w.beta2;
    st.eps = w.eps;
    st.weight_decay = w.weight_decay;
    st.max_coeff = w.max_coeff;
    st.min_coeff = w.min_coeff;
    st.bias_correction = (w.flags & ZERO_OPTD_FLAG_BIAS_CORRECTION) != 0;
    st.eps_inside_sqrt = (w.flags & ZERO_OPTD_FLAG_EPS_INSIDE_SQRT) != 0;
    st.step = w.step;
    st.grad_scale = w.grad_scale;
    master = c->field[w.group][0] + w.begin;
    m = c->field[w.group][1] + w.begin;
    vv = c->field[w.group][2] + w.begin;
    if (phase == 1) {
        size_t nchunks = (size_t)zero_optd_lamb_chunks(w.count, w.chunk);
        g32 = grad_f32(s, &ctx, q, h, w.grad_dtype, w.grad, n);
        if (g32 == NULL)
            return;
        /* the reply: nchunks sums of w^2, then nchunks of u^2 (as stored: little-endian hosts only) */
        status = zero_store_lamb_chunk_sums(&ctx, &st, master, g32, m, vv, n, (double *)(void *)out,
                                            (double *)(void *)(out + nchunks * sizeof(double)));
        if (status == ZERO_OK)
            slot_reply(q, h->type, h->seq, ZERO_OK, (uint32_t)(2 * nchunks * sizeof(double)));
    } else {
        sums[0] = w.w_sq;
        sums[1] = w.u_sq;
        st.lamb_sums = sums;
        w16_type = wire_w16(w.weight_dtype);
        status = zero_store_run_kernel(&ctx, &st, master, NULL, m, vv,
                                       w16_type != ZERO_OPTIM_W16_NONE ? (uint16_t *)(void *)out : NULL, w16_type, n);
        if (status == ZERO_OK) {
            if (w16_type == ZERO_OPTIM_W16_NONE)
                memcpy(out, master, n * sizeof(float));
            slot_reply(q, h->type, h->seq, ZERO_OK, (uint32_t)(n * zero_optd_dtype_size(w.weight_dtype)));
        }
    }
    if (status != ZERO_OK)
        refuse(q, h->type, h->seq, status, 0,
               "zero-optd: rank %u's Lamb phase %d of group %u [%llu, +%llu) failed: %s (hyper-parameters out of "
               "range?)", c->rank, phase, w.group, (unsigned long long)w.begin, (unsigned long long)n,
               zero_status_string(status));
}

static void handle_range(optd_slot_t *q, const zero_optd_header_t *h, const unsigned char *body)
{
    optd_conn_t *c = q->conn->owner;
    uint32_t type = h->type;
    zero_optd_range_t r;
    zero_optd_parse_t v = zero_optd_decode_range(body, h->body_len, type == ZERO_OPTD_WRITE, &r);
    float *at;
    if (v != ZERO_OPTD_PARSE_OK) {
        refuse(q, type, h->seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: malformed %s from rank %u: %s",
               type == ZERO_OPTD_WRITE ? "WRITE" : "READ", c->rank, zero_optd_parse_string(v));
        return;
    }
    if (!range_ok(q, type, h->seq, r.group, r.field, r.begin, r.count))
        return;
    at = c->field[r.group][r.field] + r.begin;
    if (type == ZERO_OPTD_WRITE) {
        memcpy(at, r.data, (size_t)r.count * sizeof(float));
        slot_reply(q, type, h->seq, ZERO_OK, 0);
    } else {
        memcpy(q->tx + ZERO_OPTD_HEADER_BYTES, at, (size_t)r.count * sizeof(float));
        slot_reply(q, type, h->seq, ZERO_OK, (uint32_t)(r.count * sizeof(float)));
    }
}

static void handle_slot(zero_optd_server_t *s, optd_slot_t *q)
{
    optd_conn_t *c = q->conn;
    zero_optd_header_t h;
    zero_optd_parse_t v;

    if (q->kind == SLOT_LOST || c->refused || atomic_load(&c->dead) || atomic_load(&c->owner->dead))
        return;
    if (q->kind == SLOT_OVERSIZED) {
        refuse(q, 0, 0, ZERO_ERR_PROTOCOL, 1, "zero-optd: a %zu-byte message is outside [%u, %u] bytes", q->length,
               ZERO_OPTD_HEADER_BYTES, ZERO_OPTD_MAX_MESSAGE);
        return;
    }
    v = zero_optd_decode_header(q->rx, q->length, 0, &h);
    if (v != ZERO_OPTD_PARSE_OK) {
        refuse(q, 0, 0, ZERO_ERR_PROTOCOL, 1, "zero-optd: malformed message: %s", zero_optd_parse_string(v));
        return;
    }
    if (h.conn_key != c->key) {
        refuse(q, h.type, h.seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: message carries another connection's key");
        return;
    }
    if (c->owner != c && (h.type == ZERO_OPTD_HELLO || h.type == ZERO_OPTD_ATTACH)) {
        refuse(q, h.type, h.seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: a data connection is already attached");
        return;
    }
    if (h.type == ZERO_OPTD_ATTACH) {   /* only a data connection's first message, taken on the UCX thread */
        refuse(q, h.type, h.seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: ATTACH on a connection that said HELLO");
        return;
    }
    if (!c->owner->hello_done && h.type != ZERO_OPTD_HELLO) {
        refuse(q, h.type, h.seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: the first message must be HELLO (got type %u)",
               h.type);
        return;
    }
    switch (h.type) {
    case ZERO_OPTD_HELLO:
        if (c->hello_done)
            refuse(q, h.type, h.seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: a second HELLO on one connection");
        else
            handle_hello(s, q, &h, q->rx + ZERO_OPTD_HEADER_BYTES);
        break;
    case ZERO_OPTD_STEP:
    case ZERO_OPTD_STEP_REGION:
        handle_step(s, q, &h, q->rx + ZERO_OPTD_HEADER_BYTES);
        break;
    case ZERO_OPTD_READ:
    case ZERO_OPTD_WRITE:
        handle_range(q, &h, q->rx + ZERO_OPTD_HEADER_BYTES);
        break;
    case ZERO_OPTD_LAMB1:
    case ZERO_OPTD_LAMB2:
        handle_lamb(s, q, &h, q->rx + ZERO_OPTD_HEADER_BYTES);
        break;
    case ZERO_OPTD_BYE:
        slot_reply(q, h.type, h.seq, ZERO_OK, 0);
        q->close = 1;
        c->refused = 1;   /* nothing after BYE is served */
        break;
    default:
        break;   /* the decoder admits no other type */
    }
}

/* Whether a message of @p q's connection older than @p q is in a slot
 * whose state is below @p below (RECEIVING < READY < DONE < SENDING; under
 * s->lock, or on the UCX thread, which alone sets a slot's conn and seq,
 * before it leaves FREE). */
static int older_of_conn_below(const zero_optd_server_t *s, const optd_slot_t *q, slot_state_t below)
{
    for (int i = 0; i < SLOTS; i++) {
        const optd_slot_t *p = &s->slots[i];
        if (p != q && p->state != SLOT_FREE && p->state < below && p->conn == q->conn && p->seq < q->seq)
            return 1;
    }
    return 0;
}

/* The worker's next slot (under s->lock): the oldest READY one with no older
 * message of its connection unhandled. NULL: none. */
static optd_slot_t *next_work(zero_optd_server_t *s)
{
    optd_slot_t *best = NULL;
    for (int i = 0; i < SLOTS; i++) {
        optd_slot_t *q = &s->slots[i];
        if (q->state == SLOT_READY && (best == NULL || q->seq < best->seq) &&
            !older_of_conn_below(s, q, SLOT_DONE))
            best = q;
    }
    return best;
}

static void *worker_main(void *arg)
{
    zero_optd_server_t *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->thread_stop) {
        optd_slot_t *q = next_work(s);
        if (q == NULL) {
            pthread_cond_wait(&s->wake, &s->lock);
            continue;
        }
        pthread_mutex_unlock(&s->lock);
        handle_slot(s, q);
        pthread_mutex_lock(&s->lock);
        q->state = SLOT_DONE;
        if (s->done_fd >= 0) {   /* wake the UCX thread if it sleeps: the reply is ready to go */
            uint64_t one = 1;
            (void)!write(s->done_fd, &one, sizeof(one));
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---------- the UCX thread: the message slots ---------- */

/* Receives and drops a message (probed on @p worker) nobody may send
 * (unknown key, oversized), without waiting for it: the rest of a message
 * whose sender died mid-send never comes (on the data connection's FIFO its
 * first segment arrives alone), and waiting here held up every client for
 * the io bound. reap() finishes it, or cancels it at the io bound. */
static void drop_message(zero_optd_server_t *s, ucp_worker_h worker, ucp_tag_message_h msg)
{
    ucp_request_param_t rp;
    void *req;
    memset(&rp, 0, sizeof(rp));
    req = ucp_tag_msg_recv_nbx(worker, s->drop, sizeof(s->drop), msg, &rp);
    if (req == NULL || UCS_PTR_IS_ERR(req))
        return;
    /* At most DROPS held: beyond them (a flood from a hostile or broken
     * client) the oldest is let go before its io bound. Waiting for this
     * one instead, as before 4 Dec 2026, stalled every client up to the io
     * bound per message. */
    held_add(s->drops, &s->ndrops, DROPS, req, worker, zero_clock_now() + s->opts.io_timeout_s);
}

static void slot_set(zero_optd_server_t *s, optd_slot_t *q, slot_state_t state)
{
    pthread_mutex_lock(&s->lock);
    q->state = state;
    if (state == SLOT_READY)
        pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

static slot_state_t slot_get(zero_optd_server_t *s, optd_slot_t *q)
{
    slot_state_t state;
    pthread_mutex_lock(&s->lock);
    state = q->state;
    pthread_mutex_unlock(&s->lock);
    return state;
}

/* The first message of a data connection @p c, on the UCX thread (it
 * decides which connection's state the data connection uses, before any of
 * its messages takes a slot): ATTACH with the key of the client's control
 * connection, which said HELLO and has no data connection yet, and the job
 * token. Accepted: the two are paired and the reply (a bare header) is
 * sent; anything else closes the data connection without a reply (the
 * client then keeps using its control connection). */
static void attach_data(zero_optd_server_t *s, optd_conn_t *c, ucp_tag_message_h msg, const ucp_tag_recv_info_t *info)
{
    unsigned char buf[ZERO_OPTD_HEADER_BYTES + ZERO_OPTD_ATTACH_BODY];
    zero_optd_header_t h;
    zero_optd_attach_t a;
    optd_conn_t *ctl;
    ucp_request_param_t rp;
    zero_optd_attach_reply_t ar;
    unsigned char diff = 0;
    void *req, *rkey_buf = NULL;

    if (info->length != sizeof(buf)) {
        drop_message(s, conn_worker(c), msg);
        conn_close(c, "a data connection's first message must be ATTACH");
        return;
    }
    memset(&rp, 0, sizeof(rp));
    if (wait_request(s, conn_worker(c), ucp_tag_msg_recv_nbx(conn_worker(c), buf, sizeof(buf), msg, &rp),
                     zero_clock_now() + s->opts.io_timeout_s) != UCS_OK) {
        conn_close(c, "receiving ATTACH failed");
        return;
    }
    if (zero_optd_decode_header(buf, sizeof(buf), 0, &h) != ZERO_OPTD_PARSE_OK || h.type != ZERO_OPTD_ATTACH ||
        h.conn_key != c->key || zero_optd_decode_attach(buf + ZERO_OPTD_HEADER_BYTES, h.body_len, &a) !=
                                    ZERO_OPTD_PARSE_OK) {
        conn_close(c, "a data connection's first message must be ATTACH");
        return;
    }
    for (unsigned i = 0; i < ZERO_OPTD_TOKEN_BYTES; i++)   /* constant time */
        diff |= (unsigned char)(a.token[i] ^ s->opts.token[i]);
    ctl = conn_of_tag(s, a.control_key);
    if ((s->opts.have_token && diff != 0) || ctl == NULL || ctl->data || ctl->state != CONN_READY ||
        ctl->partner != NULL || ctl->failed || a.control_key != c->ticket_key) {
        conn_close(c, "ATTACH: no such control connection, one already attached, not the one whose ticket it "
                      "carried, or another job's token");
        return;
    }
    c->owner = ctl;
    c->partner = ctl;
    ctl->partner = c;
    c->state = CONN_READY;
    memset(&ar, 0, sizeof(ar));
    if ((a.flags & ZERO_OPTD_ATTACH_REGION) && s->onesided)
        region_open(s, c, a.slots, a.slot_elems, &ar, &rkey_buf);
    h.type = ZERO_OPTD_ATTACH | ZERO_OPTD_REPLY;
    h.status = 0;
    h.body_len = ZERO_OPTD_ATTACH_REPLY_HEAD + ar.rkey_len;
    zero_optd_encode_header(c->attach_reply, &h);
    zero_optd_encode_attach_reply(c->attach_reply + ZERO_OPTD_HEADER_BYTES, &ar);
    if (rkey_buf != NULL)
        ucp_rkey_buffer_release(rkey_buf);
    memset(&rp, 0, sizeof(rp));
    req = ucp_tag_send_nbx(c->ep, c->attach_reply, ZERO_OPTD_HEADER_BYTES + h.body_len,
                           c->key | ZERO_OPTD_TAG_REPLY, &rp);
    if (UCS_PTR_IS_ERR(req)) {
        conn_close(c, "could not answer ATTACH");
        return;
    }
    c->attach_req = req;   /* reaped by reap() */
    ZERO_LOG_DEBUG("client %s: data connection attached to %s", c->peer, ctl->peer);
}

/* A split request's gradient is in (docs/optd.md, "The gradient's own
 * message"): the slot now holds the message version 5 would have sent, for
 * the worker to decode as ever (a gradient shorter than the header said
 * leaves it short: refused there). */
static void join_gradient(optd_slot_t *q)
{
    q->length += q->grad_info.length;
    zero_optd_join_split_request(q->rx);
}

/* Whether an older message of @p q's connection is still coming in (its
 * receive in flight, or a split header's gradient waiting to be posted). A
 * connection's gradients share one tag, and UCX matches them to receives in
 * the order those are posted, so they are posted in arrival order: a
 * header that came by rendezvous (a client with UCX_RNDV_THRESH below 128
 * bytes) can end after the next header, which came in place, and
 * each would get the other's gradient (offload-optd, "two split requests of
 * one connection"). */
static int gradient_ahead(zero_optd_server_t *s, const optd_slot_t *q)
{
    for (int i = 0; i < SLOTS; i++) {
        optd_slot_t *p = &s->slots[i];
        if (p != q && p->used && p->seq < q->seq && p->conn == q->conn && p->kind == SLOT_MESSAGE &&
            p->gradient != GRADIENT_POSTED && slot_get(s, p) == SLOT_RECEIVING)
            return 1;
    }
    return 0;
}

/* Version 6: @p q's message has come whole. If it is a split STEP or LAMB1
 * header of its own connection, the receive of its gradient (on the
 * request's tag | ZERO_OPTD_TAG_DATA, of the bytes the header says) is
 * posted into the slot right after the head, under the slot's io deadline:
 * a client that sends the header and never the gradient loses the
 * connection at that bound (slot_request cancels the receive), as one that
 * stops mid-message. Returns whether the receive is in flight (q->req), or
 * waits for a message ahead of it (gradient_ahead; slot_receive posts it);
 * otherwise the slot goes to the worker as it is (a whole message, or one it
 * refuses: zero_optd_decode_header takes no split request unjoined). */
static int take_gradient(zero_optd_server_t *s, optd_slot_t *q)
{
    optd_conn_t *c = q->conn;
    zero_optd_header_t h;
    ucp_request_param_t rp;
    size_t bytes;
    void *req;
    if (q->kind != SLOT_MESSAGE || q->gradient == GRADIENT_POSTED || c->failed || c->closing ||
        zero_optd_decode_split_request(q->rx, q->length, &h, &bytes) != ZERO_OPTD_PARSE_OK || h.conn_key != c->key)
        return 0;
    q->deadline = zero_clock_now() + s->opts.io_timeout_s;
    if (gradient_ahead(s, q)) {   /* slot_receive posts it once those are in */
        q->gradient = GRADIENT_WAITING;
        return 1;
    }
    /* always a request (UCX 1.13 leaves recv_info unset when a receive
     * completes in place): its length is read when it ends (slot_receive) */
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
    q->grad_info.length = 0;
    q->gradient = GRADIENT_POSTED;
    /* the slot holds ZERO_OPTD_MAX_MESSAGE: the head and 4 x MAX_ELEMS bytes fit */
    req = ucp_tag_recv_nbx(conn_worker(c), q->rx + q->length, bytes, c->key | ZERO_OPTD_TAG_DATA, ~(ucp_tag_t)0,
                           &rp);
    if (req == NULL || UCS_PTR_IS_ERR(req)) {
        ZERO_LOG_WARN("client %s: receiving a %zu-byte gradient: %s", c->peer, bytes,
                      ucs_status_string(UCS_PTR_STATUS(req)));
        q->kind = SLOT_LOST;
        conn_close(c, "a gradient could not be received");
        return 0;
    }
    q->req = req;
    return 1;
}

static ucs_status_t slot_request(zero_optd_server_t *s, optd_slot_t *q);

/* slot_request for a RECEIVING slot: a split request's gradient, once its
 * header is in, keeps it receiving (take_gradient; a gradient waiting for
 * the messages ahead of it is posted once they are in, within the io
 * bound); once the gradient is in, it is joined to its header. */
static ucs_status_t slot_receive(zero_optd_server_t *s, optd_slot_t *q)
{
    ucs_status_t st;
    if (q->gradient == GRADIENT_WAITING) {
        if (!gradient_ahead(s, q))
            return take_gradient(s, q) ? UCS_INPROGRESS : UCS_OK;
        if (zero_clock_now() < q->deadline)
            return UCS_INPROGRESS;
        q->conn->stuck = 1;
        return UCS_ERR_TIMED_OUT;
    }
    if (q->gradient == GRADIENT_POSTED && ucp_request_check_status(q->req) == UCS_OK &&
        ucp_tag_recv_request_test(q->req, &q->grad_info) != UCS_OK)
        q->grad_info.length = 0;
    st = slot_request(s, q);
    if (st != UCS_OK)
        return st;
    if (q->gradient == GRADIENT_POSTED) {
        join_gradient(q);
        return UCS_OK;
    }
    return take_gradient(s, q) ? UCS_INPROGRESS : UCS_OK;
}

/* Takes the message @p msg, probed on @p worker, into a free slot (one is). */
static void take_message(zero_optd_server_t *s, ucp_worker_h worker, ucp_tag_message_h msg,
                         const ucp_tag_recv_info_t *info)
{
    optd_conn_t *c = conn_of_tag(s, info->sender_tag);
    optd_slot_t *q;
    ucp_request_param_t rp;

    /* a key is only good on its own connection's worker: a message claiming
     * a control connection's key on the data worker, or the reverse, is dropped */
    if (c == NULL || c->failed || conn_worker(c) != worker) {
        ZERO_LOG_DEBUG("dropped a %zu-byte message with tag 0x%llx: no such connection", info->length,
                       (unsigned long long)info->sender_tag);
        drop_message(s, worker, msg);
        return;
    }
    /* A closing connection gets no more replies (advance_ring), so its
     * messages are dropped unread. Taken into a slot, each would hold it
     * under a fresh io bound: a vanished client's data connection (no error
     * handler of its own) closes once its last slot leaves, and until then
     * the requests it had queued could refill the slots its expired ones
     * freed (a split header whose gradient never comes holds one to the
     * bound), and a few vanished clients could fill every slot
     * (docs/optd.md, Safety). */
    if (c->closing) {
        ZERO_LOG_DEBUG("dropped a %zu-byte message of closing connection %s", info->length, c->peer);
        drop_message(s, worker, msg);
        return;
    }
    if (c->data && c->state == CONN_NEW) {
        attach_data(s, c, msg, info);
        return;
    }
    for (q = s->slots; q->used; q++)
        ;   /* one is free (take_messages) */
    q->used = 1;
    q->seq = s->next_seq++;
    s->nused++;
    q->conn = c;
    if (c->owner != c)
        c->owner->inflight++;   /* the owner's state stays until this slot leaves */
    q->length = info->length;
    q->reply = q->close = q->hello_ok = 0;
    q->gradient = GRADIENT_NONE;
    q->req = NULL;
    c->inflight++;
    if (info->length > ZERO_OPTD_MAX_MESSAGE || info->length < ZERO_OPTD_HEADER_BYTES) {
        drop_message(s, worker, msg);
        q->kind = SLOT_OVERSIZED;
        slot_set(s, q, SLOT_READY);
        return;
    }
    memset(&rp, 0, sizeof(rp));
    q->kind = SLOT_MESSAGE;
    q->req = ucp_tag_msg_recv_nbx(worker, q->rx, info->length, msg, &rp);
    q->deadline = zero_clock_now() + s->opts.io_timeout_s;
    if (UCS_PTR_IS_ERR(q->req)) {
        ZERO_LOG_WARN("client %s: receiving a %zu-byte message: %s", c->peer, info->length,
                      ucs_status_string(UCS_PTR_STATUS(q->req)));
        q->req = NULL;
        q->kind = SLOT_LOST;
        conn_close(c, "a message could not be received");
        slot_set(s, q, SLOT_READY);
        return;
    }
    if (q->req == NULL) {   /* completed in place */
        slot_set(s, q, take_gradient(s, q) ? SLOT_RECEIVING : SLOT_READY);
        return;
    }
    slot_set(s, q, SLOT_RECEIVING);   /* the worker waits for READY */
}

/* Takes the messages waiting on data connection @p c's worker (NULL: on
 * the control worker) into free slots while there are any. Returns whether it
 * took any. */
static int take_messages(zero_optd_server_t *s, optd_conn_t *c)
{
    ucp_worker_h worker = c != NULL ? c->worker : s->ucx[CTL].worker;
    int took = 0;
    while (s->nused < SLOTS) {
        ucp_tag_recv_info_t info;
        /* every tag but a split request's gradient (ZERO_OPTD_TAG_DATA):
         * that one is received by its header's slot (take_gradient) */
        ucp_tag_message_h msg = ucp_tag_probe_nb(worker, 0, ZERO_OPTD_TAG_DATA, 1, &info);
        if (msg == NULL)
            break;
        take_message(s, worker, msg, &info);
        took = 1;
        if (c != NULL && c->worker != worker)
            break;   /* closed, its worker destroyed */
    }
    return took;
}

/* The request of @p q: UCS_INPROGRESS, or its end (freed); at its deadline
 * UCS_ERR_TIMED_OUT, the request cancelled where UCX can, kept and the
 * slot fenced (optd_slot_t.fenced). */
static ucs_status_t slot_request(zero_optd_server_t *s, optd_slot_t *q)
{
    ucs_status_t st = ucp_request_check_status(q->req);
    if (st == UCS_INPROGRESS) {
        if (zero_clock_now() < q->deadline)
            return st;
        /* UCX 1.13 cancels only a receive still unmatched (a split
         * request's gradient: ucp_request.c:217), not a probed message's
         * (ucp_tag_msg_recv_nbx) nor a send: UCX ends those when the stuck
         * endpoint is closed by force (purged), and until then progress
         * could still write into this slot: it leaves the pool until then */
        ucp_request_cancel(conn_worker(q->conn), q->req);
        q->conn->stuck = 1;
        q->fenced = FENCE_OPEN;   /* req kept until UCX ends it (fence_sweep) */
        expire_requests(s, q->conn);   /* its other slots too: the close (and the fence's end) comes at once */
        return UCS_ERR_TIMED_OUT;
    }
    ucp_request_free(q->req);
    q->req = NULL;
    return st;
}

/* A split reply's header send that failed with its array's: freed, UCX
 * releases it when the endpoint closes (as slot_request's sends). */
static void release_head_send(optd_slot_t *q)
{
    if (q->head_req != NULL)
        ucp_request_free(q->head_req);
    q->head_req = NULL;
}

/* The slots in use, oldest message first, into @p out; returns their number. */
static int slots_by_age(zero_optd_server_t *s, optd_slot_t **out)
{
    int n = 0;
    for (int i = 0; i < SLOTS; i++) {
        int j = n;
        if (!s->slots[i].used)
            continue;
        for (; j > 0 && out[j - 1]->seq > s->slots[i].seq; j--)
            out[j] = out[j - 1];
        out[j] = &s->slots[i];
        n++;
    }
    return n;
}

/* Whether an older message of @p q's connection has no reply on its way
 * yet: one connection's replies go in order (its client matches them so). */
static int older_unanswered(zero_optd_server_t *s, const optd_slot_t *q)
{
    int older;
    pthread_mutex_lock(&s->lock);
    older = older_of_conn_below(s, q, SLOT_SENDING);
    pthread_mutex_unlock(&s->lock);
    return older;
}

/* Moves the slots on, oldest first: finished receives to the worker,
 * handled slots' replies onto the wire in each connection's order,
 * delivered ones freed. Returns whether anything moved. */
static int advance_slots(zero_optd_server_t *s)
{
    optd_slot_t *order[SLOTS];
    int moved = 0, n;
    fence_sweep(s);
    n = slots_by_age(s, order);
    for (int i = 0; i < n; i++) {
        optd_slot_t *q = order[i];
        slot_state_t state = slot_get(s, q);
        ucs_status_t st;
        if (state == SLOT_RECEIVING && (st = slot_receive(s, q)) != UCS_INPROGRESS) {
            if (st != UCS_OK) {
                char why[128];
                snprintf(why, sizeof(why), "receiving a %zu-byte message: %s", q->length, ucs_status_string(st));
                q->kind = SLOT_LOST;
                conn_close(q->conn, why);
            }
            slot_set(s, q, SLOT_READY);
            moved = 1;
        } else if (state == SLOT_DONE && !older_unanswered(s, q)) {
            optd_conn_t *c = q->conn;
            moved = 1;
            if (q->hello_ok && c->state == CONN_NEW)
                c->state = CONN_READY;
            if (q->reply && !c->failed && !c->closing) {
                ucp_request_param_t rp;
                uint64_t tag = c->key | ZERO_OPTD_TAG_REPLY;
                memset(&rp, 0, sizeof(rp));
                if (q->split) {   /* the header alone, then the array on the data tag */
                    q->head_req = ucp_tag_send_nbx(c->ep, q->tx, ZERO_OPTD_HEADER_BYTES, tag, &rp);
                    if (UCS_PTR_IS_ERR(q->head_req)) {
                        q->req = q->head_req;
                        q->head_req = NULL;
                    } else {
                        q->req = ucp_tag_send_nbx(c->ep, q->tx + ZERO_OPTD_HEADER_BYTES,
                                                  q->reply_len - ZERO_OPTD_HEADER_BYTES, tag | ZERO_OPTD_TAG_DATA,
                                                  &rp);
                    }
                    if (q->req == NULL) {   /* the array went at once: wait for the header's send alone */
                        q->req = q->head_req;
                        q->head_req = NULL;
                    }
                } else {
                    q->req = ucp_tag_send_nbx(c->ep, q->tx, q->reply_len, tag, &rp);
                }
                q->deadline = zero_clock_now() + s->opts.io_timeout_s;
                if (UCS_PTR_IS_ERR(q->req)) {
                    release_head_send(q);
                    ZERO_LOG_WARN("client %s: reply not sent: %s", c->peer,
                                  ucs_status_string(UCS_PTR_STATUS(q->req)));
                    q->req = NULL;
                    conn_close(c, "reply failed");
                } else if (q->req != NULL) {
                    slot_set(s, q, SLOT_SENDING);
                    continue;
                }
            }
            slot_set(s, q, SLOT_FINISHED);
            if (q->close)
                conn_close(c, q->reply ? "refused" : NULL);
        } else if (state == SLOT_SENDING && (st = slot_request(s, q)) != UCS_INPROGRESS) {
            moved = 1;
            if (st == UCS_OK && q->head_req != NULL) {   /* a split reply's header is still going */
                q->req = q->head_req;
                q->head_req = NULL;
                continue;
            }
            if (!q->fenced)
                release_head_send(q);
            slot_set(s, q, SLOT_FINISHED);
            if (st != UCS_OK) {
                ZERO_LOG_WARN("client %s: reply not delivered: %s", q->conn->peer, ucs_status_string(st));
                conn_close(q->conn, "reply failed");
            } else if (q->close) {
                conn_close(q->conn, "refused");
            }
        }
    }
    for (int i = 0; i < n; i++) {
        optd_slot_t *q = order[i];
        optd_conn_t *c = q->conn;
        optd_conn_t *owner = c->owner;
        if (slot_get(s, q) != SLOT_FINISHED)
            continue;
        slot_set(s, q, SLOT_FREE);
        if (!q->fenced) {   /* a fenced one stays out of the pool: fence_sweep frees it */
            q->used = 0;
            s->nused--;
        }
        if (--c->inflight == 0 && c->closing)
            conn_close(c, NULL);
        if (owner != c && --owner->inflight == 0 && owner->closing)
            conn_close(owner, NULL);
    }
    return moved;
}

/* Whether a message of @p c waits unread (the slots were full when it came:
 * the client did say something in time, the server has not read it yet). */
static int message_waiting(zero_optd_server_t *s, const optd_conn_t *c)
{
    ucp_tag_recv_info_t info;
    return ucp_tag_probe_nb(conn_worker(c), c->key, ~(ucp_tag_t)0, 0, &info) != NULL;
}

/* Whether a message of @p c may still claim a gradient waiting in UCX's
 * queue: a header of it in a slot that is still coming in or waits to
 * post its gradient's receive (RECEIVING, the gradient not posted: a posted
 * receive has taken the first gradient queued already), or a message of it
 * not yet taken into a slot. A client sends each gradient after its
 * header on the same endpoint, and UCX delivers one endpoint's messages in
 * order (eager, and a rendezvous' first fragment), so a gradient of @p c
 * queued while neither holds was announced by no header. */
static int gradient_expected(zero_optd_server_t *s, const optd_conn_t *c)
{
    for (int i = 0; i < SLOTS; i++) {
        optd_slot_t *q = &s->slots[i];
        if (q->used && q->conn == c && q->kind == SLOT_MESSAGE && q->gradient != GRADIENT_POSTED &&
            slot_get(s, q) == SLOT_RECEIVING)
            return 1;
    }
    return message_waiting(s, c);
}

/* Drops @p msg, a gradient (tag @p tag) probed on @p worker that no header
 * claims: of no connection (@p c NULL: closed, garbage), or of live
 * connection @p c, which sent it without a header (a job member's bug or
 * malice; the first one is logged naming the client). Each is counted by
 * the DEBUG line (offload-optd counts them). */
static void drop_stray(zero_optd_server_t *s, ucp_worker_h worker, ucp_tag_message_h msg, optd_conn_t *c,
                       uint64_t tag, size_t length)
{
    /* the rank is the worker's (HELLO): read here only once CONN_READY
     * says its reply went, when the worker wrote it before handing the slot
     * back under s->lock (hello_done, the worker's too, may be being
     * written now: a stray can come while HELLO is handled) */
    if (c != NULL && c->strays++ == 0)
        ZERO_LOG_WARN("client %s (rank %d): dropping gradients that no request of it announced (more are counted "
                      "at DEBUG level)", c->peer, c->owner->state == CONN_READY ? (int)c->owner->rank : -1);
    ZERO_LOG_DEBUG("dropped a %zu-byte gradient with tag 0x%llx: %s", length, (unsigned long long)tag,
                   c == NULL ? "no such connection" : "no header of its connection announced it");
    drop_message(s, worker, msg);
}

/*
 * Split requests' gradients that no header waits for (docs/optd.md, "The
 * gradient's own message"): take_messages never probes the data tag, so
 * without this they stay in UCX's unexpected queue, which grows without
 * bound, until their connection closes. On @p worker: the gradients at the
 * front of its queue (any connection's), dropped while they are of no
 * connection or of one that expects none (gradient_expected); the first
 * that may be claimed stops the look. With @p c, its own tag too, whatever
 * is in front (reap's sweep: a gradient of another connection waiting for
 * its header cannot hide c's). The loop runs it every STRAY_INTERVAL_S
 * on each worker, whether or not anything moved, and reap every 50 ms per
 * connection: so a flood of them holds at most what arrives meanwhile.
 */
static void drop_stray_gradients(zero_optd_server_t *s, ucp_worker_h worker, optd_conn_t *c)
{
    ucp_tag_t tag = c != NULL ? c->key | ZERO_OPTD_TAG_DATA : ZERO_OPTD_TAG_DATA;
    ucp_tag_t mask = c != NULL ? ~(ucp_tag_t)0 : ZERO_OPTD_TAG_DATA | ZERO_OPTD_TAG_REPLY;
    for (;;) {
        ucp_tag_recv_info_t info;
        optd_conn_t *owner;
        ucp_tag_message_h msg = ucp_tag_probe_nb(worker, tag, mask, 0, &info);
        if (msg == NULL)
            return;
        owner = conn_of_tag(s, info.sender_tag & ~ZERO_OPTD_TAG_DATA);
        if (owner != NULL && conn_worker(owner) == worker && (owner->failed || gradient_expected(s, owner)))
            return;
        msg = ucp_tag_probe_nb(worker, info.sender_tag, ~(ucp_tag_t)0, 1, &info);
        if (msg == NULL)
            return;
        /* a closing connection's: its header was dropped (take_message), no warning */
        drop_stray(s, worker, msg, owner != NULL && conn_worker(owner) == worker && !owner->closing ? owner : NULL,
                   info.sender_tag, info.length);
    }
}

static void reap(zero_optd_server_t *s)
{
    double now = zero_clock_now();
    held_reap(s->drops, &s->ndrops, 0, NULL);
    held_reap(s->closes, &s->ncloses, 0, NULL);
    drop_stray_gradients(s, s->ucx[CTL].worker, NULL);
    door_expire(s, now);
    for (int i = 0; i < ZERO_OPTD_MAX_CONNS; i++) {
        optd_conn_t *c = &s->conns[i];
        if (c->state == CONN_FREE)
            continue;
        if (c->attach_req != NULL && ucp_request_check_status(c->attach_req) != UCS_INPROGRESS) {
            ucp_request_free(c->attach_req);
            c->attach_req = NULL;
        }
        if (c->closing)
            continue;
        if (!c->failed) {   /* its own tag, past another's gradient in front */
            drop_stray_gradients(s, conn_worker(c), c);
            if (c->data)
                drop_stray_gradients(s, c->worker, NULL);   /* other tags on its worker */
        }
        if (c->failed) {
            char why[128];
            snprintf(why, sizeof(why), "the client went away (%s)", ucs_status_string(c->failed_status));
            conn_close(c, why);
        } else if (c->state == CONN_NEW && c->inflight == 0 && now - c->opened_at > s->opts.hello_timeout_s &&
                   !message_waiting(s, c)) {
            conn_close(c, "no HELLO within the deadline");
        }
    }
}

/* With nothing to do, the loop spins this long after its last activity
 * before it sleeps, while a same-host data connection without a region is
 * open: a rank mid-step sends its next piece within microseconds, and a
 * sender waiting for room in the shared-memory FIFO needs this side's
 * progress. A connection with a region sends only STEP's headers through
 * its FIFO (READ, WRITE and Lamb still send arrays there, and measured no
 * slower without the spin: bench/optd/bench_optd_rw): the spin only cost
 * CPU there (5 Dec 2026, alternated against a server that spun for region
 * connections too: steps of
 * 3.4-4.7 ms against 4.6-7.7 ms, 3.2-4.1 ms of the server's CPU per step
 * against 4.2-6.6 ms; docs/optd.md, "One-sided on one host"). Without one
 * it sleeps at once: over TCP the kernel holds what arrives and the event
 * descriptor wakes the loop, while each pass of the spin is an epoll_wait
 * on UCX's sockets that finds nothing (a 4 Mi-element step: 3179 of them
 * against 243, with the same 75 receives; 1.2-1.5 ms of the server's 8-10 ms
 * of CPU, on a machine both ends share: docs/optd.md, "Where the CPU goes
 * over TCP").
 * It sleeps in poll on UCX's event descriptors (one per worker) and on the
 * worker thread's done_fd, for at most SLEEP_SLICE_MS, so the reaping of
 * connections (hello deadlines, failed clients) keeps running while it is
 * idle. After IDLE_AFTER_S without activity the slice is SLEEP_SLICE_IDLE_MS
 * (reap's own interval): each wake-up arms, progresses and probes every
 * data connection's worker, which with 64 idle data connections cost 3.75%
 * of a core at 5 ms slices (docs/optd.md, "An idle server"). Events still
 * wake it at once; only a wake-up that nothing asked for comes later. */
#define SPIN_AFTER_ACTIVITY_S 50e-6
#define SLEEP_SLICE_MS 5
#define IDLE_AFTER_S 1.0
#define SLEEP_SLICE_IDLE_MS 50
/* While a data connection is open (spinning or not), the loop progresses
 * the control context's workers (TCP: each progress is an epoll_wait on
 * UCX's sockets) only this often, unless they moved on their last progress
 * or the loop just woke: with a same-host client stepping, it made one such
 * call per pass (with the data worker's own, about 10% of the server's CPU:
 * docs/optd.md, "Where the server's CPU goes on one host"). A TCP client's
 * message waits in the kernel at most this much longer; without a data
 * connection open these workers are progressed on every pass. */
#define CTL_PROGRESS_INTERVAL_S 100e-6
/* What the loop sleeps when UCX reports events pending but nothing moved. */
#define BUSY_PAUSE_S 50e-6
/* How often the loop looks for gradients no header claims at the front of
 * each worker's queue (drop_stray_gradients; reap looks behind them every
 * 50 ms): a client that sends only gradients holds at most what arrives in
 * this time in UCX's unexpected queue, where before they stayed until the
 * connection closed. A probe per worker when nothing is queued. */
#define STRAY_INTERVAL_S 1e-3
/* At most this many progress calls in a row (each worker) before the loop
 * goes on to the slots: a client that sends without a pause kept it in
 * progress, piling what it sent up in UCX's unexpected queue (with gradients
 * no header claims: 100 MiB and more over loopback TCP), unseen by the slots
 * and by drop_stray_gradients. */
#define PROGRESS_BURST 64

/* Whether a data connection without a region is open (the loop then spins
 * before it sleeps: SPIN_AFTER_ACTIVITY_S). */
static int fifo_senders(zero_optd_server_t *s)
{
    for (int i = 0; i < atomic_load(&s->ndata_conns); i++)
        if (s->data_conns[i]->region == NULL)
            return 1;
    return 0;
}

/* Sleeps until UCX or the worker thread has something, or @p slice_ms end. */
static void sleep_until_event(zero_optd_server_t *s, int slice_ms)
{
    struct pollfd pfd[3 + ZERO_OPTD_MAX_DATA_CONNS + 1 + DOOR_ENTRIES];
    int n, ndoor = 0;
    if (s->done_fd < 0) {
        zero_clock_sleep(1e-4);
        return;
    }
    /* the doorway's sockets after done_fd: a connection or a request wakes the loop */
    pfd[1] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
    ndoor = 1;
    for (int i = 0; i < DOOR_ENTRIES; i++)
        if (s->door[i].fd >= 0)
            pfd[1 + ndoor++] = (struct pollfd){.fd = s->door[i].fd, .events = POLLIN};
    n = zero_optd_ucx_arm(s->ucx, 2, pfd + 1 + ndoor);
    for (int i = 0; n >= 0 && i < atomic_load(&s->ndata_conns); i++) {
        int rc = zero_optd_worker_arm(s->data_conns[i]->worker, s->data_conns[i]->efd, pfd + 1 + ndoor + n);
        n = rc < 0 ? rc : n + 1;
    }
    if (n == -1) {
        /* UCX has events pending, yet nothing moved: a reply waiting for
         * room in a client's shared-memory FIFO, which only that client's
         * progress frees. A short pause, not a spin, leaves it the core. */
        zero_clock_sleep(BUSY_PAUSE_S);
        return;
    }
    pfd[0] = (struct pollfd){.fd = s->done_fd, .events = POLLIN};
    /* a worker that cannot be armed: only done_fd and the doorway, and a short sleep */
    if (poll(pfd, (nfds_t)(1 + ndoor + (n < 0 ? 0 : n)), n < 0 ? 1 : slice_ms) > 0 && (pfd[0].revents & POLLIN)) {
        uint64_t count;
        (void)!read(s->done_fd, &count, sizeof(count));
    }
}

zero_status_t zero_optd_server_run(zero_optd_server_t *s, volatile sig_atomic_t *stop)
{
    double last_reap = 0.0, last_activity = 0.0, last_ctl = 0.0, last_strays = 0.0, last_door = 0.0;
    int woke = 1, ctl_busy = 0;
    while (!*stop) {
        int moved = 0;
        double now = zero_clock_now();
        if (woke || ctl_busy || atomic_load(&s->ndata_conns) == 0 || now - last_ctl >= CTL_PROGRESS_INTERVAL_S) {
            last_ctl = now;
            ctl_busy = 0;
            for (int i = 0; i < PROGRESS_BURST && zero_optd_ucx_progress(s->ucx, 2); i++)
                ctl_busy = moved = 1;
        }
        for (int i = 0; i < PROGRESS_BURST && progress_data_conns(s); i++)
            moved = 1;
        if (woke || now - last_door >= DOOR_INTERVAL_S) {
            moved |= door_service(s);
            last_door = now;
        }
        woke = 0;
        refusal_log_flush(s, now);
        if (zero_clock_now() - last_reap > 0.05) {
            reap(s);
            last_reap = zero_clock_now();
        }
        moved |= advance_slots(s);
        /* the data connections first: the requests of same-host clients */
        for (int i = 0; i < atomic_load(&s->ndata_conns); i++)
            moved |= take_messages(s, s->data_conns[i]);
        moved |= take_messages(s, NULL);
        if (zero_clock_now() - last_strays >= STRAY_INTERVAL_S) {
            drop_stray_gradients(s, s->ucx[CTL].worker, NULL);
            for (int i = 0; i < atomic_load(&s->ndata_conns); i++)
                drop_stray_gradients(s, s->data_conns[i]->worker, NULL);
            last_strays = zero_clock_now();
        }
        if (moved) {
            last_activity = zero_clock_now();
            continue;
        }
        /* Nothing moved: the worker thread may be stepping (it writes done_fd
         * when it finishes a slot) or UCX is waiting for the network. */
        if (zero_clock_now() - last_activity < SPIN_AFTER_ACTIVITY_S && fifo_senders(s))
            continue;
        sleep_until_event(s, zero_clock_now() - last_activity > IDLE_AFTER_S ? SLEEP_SLICE_IDLE_MS : SLEEP_SLICE_MS);
        woke = 1;
    }
    return ZERO_OK;
}

int zero_optd_server_port(const zero_optd_server_t *s)
{
    return s->port;
}

uint64_t zero_optd_server_bytes(const zero_optd_server_t *s)
{
    return atomic_load(&s->bytes);
}

/* Whether the doorway @p fd is bound to one IPv6 address (not ::, not an
 * IPv4-mapped one): its clients then all come over IPv6. */
static int door_ipv6_only(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    const struct in6_addr *a = &((const struct sockaddr_in6 *)&sa)->sin6_addr;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 || sa.ss_family != AF_INET6)
        return 0;
    return !IN6_IS_ADDR_UNSPECIFIED(a) && !IN6_IS_ADDR_V4MAPPED(a);
}

zero_status_t zero_optd_server_create(const zero_optd_server_opts_t *opts, zero_optd_server_t **server_p)
{
    zero_status_t status = ZERO_OK;
    zero_optd_server_t *s;
    /* room for NET_DEVICES after each: the caller's list ends at the first NULL */
    const char *ctl_settings[3] = {NULL, NULL, NULL};
    const char *data_settings[ZERO_OPTD_DATA_SETTINGS + 2] = {NULL};
    char net_device[IF_NAMESIZE];
    struct addrinfo hints, *ai = NULL;
    char port_text[16];
    int rc, listen_errno = EADDRNOTAVAIL;

    if (opts->host == NULL || opts->port < 0 || opts->port > 65535 || opts->threads < 1 || opts->threads > 1024) {
        ZERO_LOG_ERROR("zero-optd: bad options (host %s, port %d, threads %d)", opts->host ? opts->host : "(none)",
                       opts->port, opts->threads);
        return ZERO_ERR_INVALID_ARG;
    }
    s = zero_calloc(1, sizeof(*s));
    if (s == NULL) {
        ZERO_LOG_ERROR("zero-optd: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    s->opts = *opts;
    s->onesided = zero_optd_onesided_enabled();
    s->ucx[CTL].efd = s->ucx[DATA].efd = -1;
    s->listen_fd = -1;
    for (int i = 0; i < DOOR_ENTRIES; i++)
        s->door[i].fd = -1;
    s->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);   /* -1: the UCX thread polls gently instead */
    if (s->opts.hello_timeout_s <= 0)
        s->opts.hello_timeout_s = 10.0;
    if (s->opts.io_timeout_s <= 0)
        s->opts.io_timeout_s = 30.0;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    for (int i = 0; i < ZERO_OPTD_MAX_CONNS; i++) {
        s->conns[i].server = s;
        s->conns[i].owner = &s->conns[i];
        s->conns[i].efd = -1;
        s->conns[i].data_index = -1;
    }
    atomic_init(&s->bytes, ZERO_OPTD_SERVER_BUFFER_BYTES);
    if (s->opts.memory_limit != 0 && s->opts.memory_limit < ZERO_OPTD_SERVER_BUFFER_BYTES) {
        ZERO_LOG_ERROR("zero-optd: --memory %llu is below the %llu bytes of the server's own message buffers",
                       (unsigned long long)s->opts.memory_limit, (unsigned long long)ZERO_OPTD_SERVER_BUFFER_BYTES);
        zero_optd_server_destroy(s);
        return ZERO_ERR_INVALID_ARG;
    }
    for (int i = 0; i < SLOTS; i++) {
        ZERO_CHECK_GOTO(zero_mem_alloc(ZERO_MEM_HOST, ZERO_OPTD_MAX_MESSAGE, "zero-optd receive buffer",
                                       (void **)&s->slots[i].rx), status, fail);
        ZERO_CHECK_GOTO(zero_mem_alloc(ZERO_MEM_HOST, ZERO_OPTD_MAX_MESSAGE, "zero-optd reply buffer",
                                       (void **)&s->slots[i].tx), status, fail);
    }
    ZERO_CHECK_GOTO(zero_mem_alloc(ZERO_MEM_HOST, ZERO_OPTD_MAX_ELEMS * sizeof(float), "zero-optd fp32 gradient",
                                   (void **)&s->grad32), status, fail);
    if (opts->threads > 1)
        ZERO_CHECK_GOTO(zero_thread_pool_create(opts->threads, &s->pool), status, fail);
    ZERO_CHECK_GOTO(zero_optim_ctx_init(&s->optim, ZERO_OPTIM_ISA_AUTO, s->pool), status, fail);

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(port_text, sizeof(port_text), "%d", opts->port);
    rc = getaddrinfo(opts->host, port_text, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        ZERO_LOG_ERROR("zero-optd: cannot listen on %s:%d: %s", opts->host, opts->port, gai_strerror(rc));
        status = ZERO_ERR_INVALID_ARG;
        goto fail;
    }
    /* UCX's own tcp listeners (one per worker and network device) on the
     * --listen address's interface only, not on every one (optd_ucx.h) */
    zero_optd_data_settings(data_settings);
    if (zero_optd_listen_device(ai->ai_addr, net_device, sizeof(net_device))) {
        ctl_settings[0] = data_settings[ZERO_OPTD_DATA_SETTINGS - 1] = "NET_DEVICES";
        ctl_settings[1] = data_settings[ZERO_OPTD_DATA_SETTINGS] = net_device;
        ZERO_LOG_INFO("zero-optd: UCX's tcp listens on %s only (the interface of %s)", net_device, opts->host);
    }
    ZERO_CHECK_GOTO(zero_optd_ucx_open(&s->ucx[CTL], ctl_settings, "zero-optd"), status, fail);
    ZERO_UCS_CHECK_GOTO(ucp_worker_get_address(s->ucx[CTL].worker, &s->ctl_address, &s->ctl_address_len), status,
                        fail, "zero-optd: %s", "the control worker's address");
    if (s->ctl_address_len > ZERO_OPTD_MAX_WORKER_ADDRESS) {
        ZERO_LOG_ERROR("zero-optd: the control worker's UCX address has %zu bytes, over the doorway's bound of %u "
                       "(UCX_TLS or UCX_NET_DEVICES can name fewer transports or devices)",
                       s->ctl_address_len, ZERO_OPTD_MAX_WORKER_ADDRESS);
        status = ZERO_ERR_UNSUPPORTED;
        goto fail;
    }

    /* The doorway: a plain TCP socket, the only thing zero-optd listens on
     * itself (docs/optd.md, "The doorway"); UCX has no listener here. */
    for (struct addrinfo *a = ai; a != NULL && s->listen_fd < 0; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
        struct sockaddr_storage bound;
        socklen_t bound_len = sizeof(bound);
        if (fd < 0) {
            listen_errno = errno;
            continue;
        }
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0 ||
            getsockname(fd, (struct sockaddr *)&bound, &bound_len) != 0) {
            listen_errno = errno;
            close(fd);
            continue;
        }
        s->listen_fd = fd;
        s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                              : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    }
    if (s->listen_fd < 0) {
        ZERO_LOG_ERROR("zero-optd: cannot listen on %s:%d: %s", opts->host, opts->port, strerror(listen_errno));
        status = ZERO_ERR_COMM;
        goto fail;
    }
    /* The same-host data connections' context: without it (or with
     * ZERO_OPTD_SAME_HOST=0) HELLO's reply offers none and the doorway
     * refuses data requests, so clients keep to their control connection. */
    if (!zero_optd_same_host_enabled()) {
        /* ZERO_OPTD_SAME_HOST=0 for the server too: no process on this host
         * reaches its shared memory (docs/optd.md, Safety) */
        ZERO_LOG_INFO("zero-optd: no same-host data connections (ZERO_OPTD_SAME_HOST=0): clients on this host use "
                      "their first connection");
    } else if (zero_optd_ucx_open(&s->ucx[DATA], data_settings, "zero-optd: the same-host data context") !=
               ZERO_OK) {
        ZERO_LOG_WARN("zero-optd: no same-host data connections: clients on this host use their first connection "
                      "(TCP)");
    } else {
        s->data_ok = 1;
    }
    freeaddrinfo(ai);
    ai = NULL;
    /* Every listening socket of UCX's tcp interfaces exists now (the data
     * connections' workers' come later: the doorway's allow rescans); the
     * doorway is left open. */
    if (opts->guard)
        ZERO_CHECK_GOTO(zero_optd_guard_create(&s->listen_fd, 1, &s->guard), status, fail);
    /* The allow list admits a client by its doorway connection's source
     * address, and the client's UCX connects to the addresses UCX's tcp
     * listens on, from its own address of their family: a doorway on an
     * IPv6 address (not ::) with UCX listening on IPv4 alone (UCX 1.13
     * takes a device's IPv4 address first, UCX_TCP_AF_PRIO) admits IPv6
     * addresses only, and every client's UCX connection would be dropped
     * (tried: "Destination is unreachable" at the client, 5 Dec 2026). */
    if (door_ipv6_only(s->listen_fd) && zero_optd_guard_listeners(s->guard) > 0 &&
        zero_optd_guard_listeners_ipv6(s->guard) == 0) {
        ZERO_LOG_ERROR("zero-optd: --listen %s is an IPv6 address, but UCX's tcp listens on IPv4 addresses only: "
                       "the allow list admits each client by its doorway address (IPv6), so its UCX connection "
                       "(IPv4) would be dropped. Listen on an IPv4 address, or run without the allow list "
                       "(ZERO_OPTD_GUARD=0)", opts->host);
        status = ZERO_ERR_UNSUPPORTED;
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, worker_main, s) != 0) {
        ZERO_LOG_ERROR("zero-optd: could not start the worker thread");
        status = ZERO_ERR_NO_MEMORY;
        goto fail;
    }
    s->thread_started = 1;
    *server_p = s;
    return ZERO_OK;
fail:
    if (ai != NULL)
        freeaddrinfo(ai);
    zero_optd_server_destroy(s);
    return status;
}

void zero_optd_server_destroy(zero_optd_server_t *s)
{
    if (s == NULL)
        return;
    refusal_log_flush(s, s->refusals.window_start + ZERO_OPTD_REFUSAL_WINDOW_S);   /* the count of a window not ended */
    if (s->thread_started) {
        pthread_mutex_lock(&s->lock);
        s->thread_stop = 1;
        pthread_cond_broadcast(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    /* messages still in their slots: their receives and replies are abandoned */
    for (int i = 0; i < SLOTS; i++) {
        optd_slot_t *q = &s->slots[i];
        if (!q->used)
            continue;
        if (q->req != NULL && !q->fenced) {
            q->deadline = 0.0;   /* cancel now */
            (void)slot_request(s, q);
        }
        fence_drop(q);   /* what is left: UCX releases it with its endpoint or worker */
        q->used = 0;
        q->fenced = FENCE_NONE;
    }
    s->nused = 0;
    held_reap(s->drops, &s->ndrops, 1, NULL);
    for (int i = 0; i < ZERO_OPTD_MAX_CONNS; i++)
        s->conns[i].inflight = 0;
    for (int i = 0; i < ZERO_OPTD_MAX_CONNS; i++)
        conn_close(&s->conns[i], NULL);
    /* the flushes of live clients' closes: a moment, as the loop would give them */
    for (double until = zero_clock_now() + 1.0; s->ncloses > 0 && zero_clock_now() < until;) {
        progress_all(s);
        held_reap(s->closes, &s->ncloses, 0, NULL);
    }
    held_reap(s->closes, &s->ncloses, 1, NULL);
    for (int i = 0; i < DOOR_ENTRIES; i++)
        door_drop(s, &s->door[i]);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->ctl_address != NULL)
        ucp_worker_release_address(s->ucx[CTL].worker, s->ctl_address);
    zero_optd_ucx_close(&s->ucx[DATA]);
    zero_optd_ucx_close(&s->ucx[CTL]);
    zero_optd_guard_destroy(s->guard);
    zero_thread_pool_destroy(s->pool);
    for (int i = 0; i < SLOTS; i++) {
        zero_mem_free(s->slots[i].rx);
        zero_mem_free(s->slots[i].tx);
    }
    for (int i = 0; i < s->nretired; i++)   /* the workers are gone: nothing uses them now */
        zero_mem_free(s->retired[i]);
    zero_mem_free(s->grad32);
    if (s->done_fd >= 0)
        close(s->done_fd);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    zero_free(s);
}
