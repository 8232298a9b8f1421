/*
 * zero-optd's server: UCX tagged messages over client-server endpoints
 * (optd_server.h, docs/optd.md).
 *
 * The loop: progress the worker; accept queued connection requests (an
 * endpoint in peer-failure mode, then WELCOME with the connection's key);
 * close connections whose endpoint failed or that stayed silent past the
 * hello deadline; probe for one message of any tag, look its tag up (a key
 * no connection has is dropped unread), receive it into the connection's
 * buffer, decode, act, reply. Messages are received only after their size is
 * known and bounded, so no client can make the server allocate more than one
 * bounded message at a time.
 */
#define ZERO_LOG_MODULE "optd"
#include "offload/optd_server.h"
#include "offload/store.h"
#include "optim/optim.h"
#include "util/alloc.h"
#include "util/byteorder.h"
#include "util/checks_ucx.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/thread_pool.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <ucp/api/ucp.h>

#define DROP_BYTES 64            /* scratch a dropped message is received into (truncated) */
#define PENDING_REQUESTS ZERO_OPTD_MAX_CONNS   /* connection requests queued between turns of the loop */

typedef enum conn_state { CONN_FREE = 0, CONN_NEW, CONN_READY } conn_state_t;

typedef struct optd_conn {
    struct zero_optd_server *server;
    conn_state_t state;
    uint64_t key;                /* request tag; 0 when free */
    ucp_ep_h ep;
    int failed;                  /* the endpoint reported an error (set inside progress) */
    void *welcome_req;           /* WELCOME still in flight (never waited on: the client may not progress) */
    unsigned char welcome[ZERO_OPTD_WELCOME_BYTES];
    ucs_status_t failed_status;
    double opened_at;
    char peer[64];               /* "host:port" of the client */
    uint32_t rank;               /* from HELLO */
    uint32_t num_groups, num_states;
    uint64_t length[ZERO_OPTD_MAX_GROUPS];
    float *field[ZERO_OPTD_MAX_GROUPS][ZERO_OPTD_MAX_FIELDS];
    uint64_t state_bytes;        /* counted against the memory limit */
} optd_conn_t;

struct zero_optd_server {
    zero_optd_server_opts_t opts;
    ucp_context_h context;
    ucp_worker_h worker;
    ucp_listener_h listener;
    int efd;
    int port;
    zero_thread_pool_t *pool;
    zero_optim_ctx_t optim;
    optd_conn_t conns[ZERO_OPTD_MAX_CONNS];
    ucp_conn_request_h pending[PENDING_REQUESTS];
    int npending, pending_dropped;
    unsigned char *rx, *tx;      /* one message each way, ZERO_OPTD_MAX_MESSAGE */
    float *grad32;               /* a 16-bit gradient as fp32, ZERO_OPTD_MAX_ELEMS */
    uint64_t bytes;              /* state of every connection plus the buffers above */
    unsigned char drop[DROP_BYTES];
};

static void conn_error_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    optd_conn_t *c = arg;
    (void)ep;
    if (!c->failed) {
        c->failed = 1;
        c->failed_status = status;
    }
}

static void conn_request_cb(ucp_conn_request_h request, void *arg)
{
    zero_optd_server_t *s = arg;
    if (s->npending < PENDING_REQUESTS)
        s->pending[s->npending++] = request;
    else {
        ucp_listener_reject(s->listener, request);
        s->pending_dropped++;
    }
}

/* Waits for @p req while progressing; cancels it at @p deadline. */
static ucs_status_t wait_request(zero_optd_server_t *s, void *req, double deadline)
{
    ucs_status_t st;
    if (req == NULL)
        return UCS_OK;
    if (UCS_PTR_IS_ERR(req))
        return UCS_PTR_STATUS(req);
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS) {
        if (zero_clock_now() >= deadline) {
            ucp_request_cancel(s->worker, req);   /* completes it (tag requests), or not (endpoint close) */
            for (double until = zero_clock_now() + 1.0;
                 ucp_request_check_status(req) == UCS_INPROGRESS && zero_clock_now() < until;)
                ucp_worker_progress(s->worker);
            st = UCS_ERR_TIMED_OUT;
            break;
        }
        ucp_worker_progress(s->worker);
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
    c->server->bytes -= c->state_bytes;
    c->state_bytes = 0;
}

static void conn_close(optd_conn_t *c, const char *why)
{
    zero_optd_server_t *s = c->server;
    ucp_request_param_t rp;
    if (c->state == CONN_FREE)
        return;
    if (why != NULL)
        ZERO_LOG_INFO("client %s (rank %d): connection closed: %s", c->peer,
                      c->state == CONN_READY ? (int)c->rank : -1, why);
    conn_free_state(c);
    if (c->welcome_req != NULL) {
        ucp_request_cancel(s->worker, c->welcome_req);
        ucp_request_free(c->welcome_req);   /* UCX completes it when the endpoint goes */
        c->welcome_req = NULL;
    }
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    /* A live client is flushed first, so a refusal just sent reaches it; a
     * failed one is dropped at once. Either way the wait is short. */
    rp.flags = c->failed ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    (void)wait_request(s, ucp_ep_close_nbx(c->ep, &rp), zero_clock_now() + 1.0);
    c->ep = NULL;
    c->state = CONN_FREE;
    c->key = 0;
    c->failed = 0;
}

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
    }
    snprintf(out, n, "%s:%d", host, port);
}

static uint64_t new_key(int slot)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint64_t)(zero_clock_now() * 1e9);
    /* bit 63 clear (replies set it), low 16 bits the slot: never WELCOME's tag */
    return ((r << 16) & ~ZERO_OPTD_TAG_REPLY) | (uint64_t)slot;
}

static void accept_pending(zero_optd_server_t *s)
{
    while (s->npending > 0) {
        ucp_conn_request_h req = s->pending[--s->npending];
        ucp_conn_request_attr_t attr;
        ucp_ep_params_t p;
        ucp_request_param_t rp;
        optd_conn_t *c = NULL;
        void *sreq;
        ucs_status_t st;
        char peer[64] = "?";

        attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
        if (ucp_conn_request_query(req, &attr) == UCS_OK)
            describe_sockaddr(&attr.client_address, peer, sizeof(peer));
        for (int i = 0; i < ZERO_OPTD_MAX_CONNS && c == NULL; i++)
            if (s->conns[i].state == CONN_FREE)
                c = &s->conns[i];
        if (c == NULL) {
            ZERO_LOG_WARN("client %s refused: all %d connections in use", peer, ZERO_OPTD_MAX_CONNS);
            ucp_listener_reject(s->listener, req);
            continue;
        }
        memset(&p, 0, sizeof(p));
        p.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                       UCP_EP_PARAM_FIELD_ERR_HANDLER;
        p.conn_request = req;
        p.err_mode = UCP_ERR_HANDLING_MODE_PEER;   /* a client that vanishes must free its state */
        p.err_handler.cb = conn_error_cb;
        p.err_handler.arg = c;
        c->server = s;
        c->failed = 0;
        st = ucp_ep_create(s->worker, &p, &c->ep);
        if (st != UCS_OK) {
            ZERO_LOG_WARN("client %s: could not create its endpoint: %s", peer, ucs_status_string(st));
            continue;
        }
        c->state = CONN_NEW;
        c->key = new_key((int)(c - s->conns));
        c->opened_at = zero_clock_now();
        snprintf(c->peer, sizeof(c->peer), "%s", peer);
        zero_put_le64(c->welcome, c->key);
        memset(&rp, 0, sizeof(rp));
        sreq = ucp_tag_send_nbx(c->ep, c->welcome, sizeof(c->welcome), ZERO_OPTD_TAG_WELCOME, &rp);
        if (UCS_PTR_IS_ERR(sreq)) {
            conn_close(c, "could not send WELCOME");
            continue;
        }
        c->welcome_req = sreq;   /* reaped by reap(); the hello deadline bounds it */
        ZERO_LOG_DEBUG("client %s connected (slot %d)", peer, (int)(c - s->conns));
    }
}

static optd_conn_t *conn_of_tag(zero_optd_server_t *s, uint64_t tag)
{
    size_t slot = (size_t)(tag & 0xffffu);
    if (slot >= ZERO_OPTD_MAX_CONNS || s->conns[slot].state == CONN_FREE || s->conns[slot].key != tag)
        return NULL;
    return &s->conns[slot];
}

/* Sends the reply in s->tx (header filled here) on @p c; 0 when delivered. */
static int send_reply(zero_optd_server_t *s, optd_conn_t *c, uint32_t type, uint64_t seq, int32_t status,
                      uint32_t body_len)
{
    zero_optd_header_t h = {.version = ZERO_OPTD_VERSION, .type = type | ZERO_OPTD_REPLY, .status = status,
                            .body_len = body_len, .conn_key = c->key, .seq = seq};
    ucp_request_param_t rp;
    ucs_status_t st;
    zero_optd_encode_header(s->tx, &h);
    memset(&rp, 0, sizeof(rp));
    st = wait_request(s, ucp_tag_send_nbx(c->ep, s->tx, ZERO_OPTD_HEADER_BYTES + body_len,
                                          c->key | ZERO_OPTD_TAG_REPLY, &rp),
                      zero_clock_now() + s->opts.io_timeout_s);
    if (st != UCS_OK) {
        ZERO_LOG_WARN("client %s: reply not delivered: %s", c->peer, ucs_status_string(st));
        return -1;
    }
    return 0;
}

/* An error reply whose text says what was wrong, then (close != 0) the close. */
static void refuse(zero_optd_server_t *s, optd_conn_t *c, uint32_t type, uint64_t seq, zero_status_t status,
                   int close, const char *fmt, ...) ZERO_PRINTF(7, 8);
static void refuse(zero_optd_server_t *s, optd_conn_t *c, uint32_t type, uint64_t seq, zero_status_t status,
                   int close, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf((char *)s->tx + ZERO_OPTD_HEADER_BYTES, ZERO_OPTD_MAX_TEXT, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((unsigned)n >= ZERO_OPTD_MAX_TEXT)
        n = ZERO_OPTD_MAX_TEXT - 1;
    ZERO_LOG_WARN("client %s: %s", c->peer, (char *)s->tx + ZERO_OPTD_HEADER_BYTES);
    if (send_reply(s, c, type, seq, status, (uint32_t)n) != 0 || close)
        conn_close(c, close ? "refused" : "reply failed");
}

static void handle_hello(zero_optd_server_t *s, optd_conn_t *c, const zero_optd_header_t *h, const unsigned char *body)
{
    zero_optd_hello_t hello;
    zero_optd_parse_t v = zero_optd_decode_hello(body, h->body_len, &hello);
    unsigned char diff = 0;
    uint64_t need = 0;

    if (v != ZERO_OPTD_PARSE_OK) {
        refuse(s, c, ZERO_OPTD_HELLO, h->seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: malformed HELLO: %s",
               zero_optd_parse_string(v));
        return;
    }
    for (unsigned i = 0; i < ZERO_OPTD_TOKEN_BYTES; i++)   /* constant time */
        diff |= (unsigned char)(hello.token[i] ^ s->opts.token[i]);
    if (s->opts.have_token && diff != 0) {
        refuse(s, c, ZERO_OPTD_HELLO, h->seq, ZERO_ERR_PROTOCOL, 1,
               "zero-optd: refused rank %u: its job token differs from this server's (a server serves one job)",
               hello.rank);
        return;
    }
    for (uint32_t g = 0; g < hello.num_groups; g++)
        need += hello.length[g] * (uint64_t)(1 + hello.num_states) * sizeof(float);
    if (s->opts.memory_limit != 0 && need > s->opts.memory_limit - s->bytes) {
        refuse(s, c, ZERO_OPTD_HELLO, h->seq, ZERO_ERR_NO_MEMORY, 1,
               "zero-optd: memory limit: rank %u's slices need %llu bytes, %llu of the limit %llu are in use",
               hello.rank, (unsigned long long)need, (unsigned long long)s->bytes,
               (unsigned long long)s->opts.memory_limit);
        return;
    }
    c->rank = hello.rank;
    c->num_groups = hello.num_groups;
    c->num_states = hello.num_states;
    memcpy(c->length, hello.length, sizeof(c->length));
    for (uint32_t g = 0; g < hello.num_groups; g++)
        for (uint32_t f = 0; f <= hello.num_states; f++) {
            size_t bytes = (size_t)hello.length[g] * sizeof(float);
            if (zero_mem_alloc(ZERO_MEM_HOST, bytes ? bytes : sizeof(float), "zero-optd client state",
                               (void **)&c->field[g][f]) != ZERO_OK) {
                refuse(s, c, ZERO_OPTD_HELLO, h->seq, ZERO_ERR_NO_MEMORY, 1,
                       "zero-optd: out of memory for rank %u's %llu bytes of state", hello.rank,
                       (unsigned long long)need);
                return;
            }
            memset(c->field[g][f], 0, bytes);
            c->state_bytes += bytes;
            s->bytes += bytes;
        }
    c->state = CONN_READY;
    ZERO_LOG_INFO("client %s: rank %u holds %llu bytes here (%u groups, %u states)", c->peer, hello.rank,
                  (unsigned long long)need, hello.num_groups, hello.num_states);
    (void)send_reply(s, c, ZERO_OPTD_HELLO, h->seq, ZERO_OK, 0);
}

/* Whether [begin, begin + count) of @p group lies in @p c's slice; refuses otherwise. */
static int range_ok(zero_optd_server_t *s, optd_conn_t *c, uint32_t type, uint64_t seq, uint32_t group,
                    uint32_t field, uint64_t begin, uint64_t count)
{
    if (group >= c->num_groups || field > c->num_states || begin > c->length[group] ||
        count > c->length[group] - begin) {
        refuse(s, c, type, seq, ZERO_ERR_INVALID_ARG, 1,
               "zero-optd: rank %u asked for field %u of group %u [%llu, +%llu), outside its %u groups of "
               "%llu elements and %u states", c->rank, field, group, (unsigned long long)begin,
               (unsigned long long)count, c->num_groups,
               (unsigned long long)(group < c->num_groups ? c->length[group] : 0), c->num_states);
        return 0;
    }
    return 1;
}

static void handle_step(zero_optd_server_t *s, optd_conn_t *c, const zero_optd_header_t *h, const unsigned char *body)
{
    zero_optd_step_t w;
    zero_store_async_step_t st;
    zero_optd_parse_t v = zero_optd_decode_step(body, h->body_len, &w);
    zero_optim_w16_t w16_type;
    const float *g32;
    float *master;
    zero_status_t status;
    size_t n;

    if (v != ZERO_OPTD_PARSE_OK) {
        refuse(s, c, ZERO_OPTD_STEP, h->seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: malformed STEP from rank %u: %s",
               c->rank, zero_optd_parse_string(v));
        return;
    }
    if (!range_ok(s, c, ZERO_OPTD_STEP, h->seq, w.group, 0, w.begin, w.count))
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
        refuse(s, c, ZERO_OPTD_STEP, h->seq, ZERO_ERR_INVALID_ARG, 1,
               "zero-optd: rank %u's optimizer needs more states than the %u it declared", c->rank, c->num_states);
        return;
    }
    g32 = w.grad;
    if (w.grad_dtype != 0) {
        status = zero_optim_from_16(&s->optim, w.grad_dtype == 2 ? ZERO_OPTIM_W16_BF16 : ZERO_OPTIM_W16_FP16,
                                    s->grad32, w.grad, n);
        if (status != ZERO_OK) {
            refuse(s, c, ZERO_OPTD_STEP, h->seq, status, 1, "zero-optd: converting rank %u's gradient failed",
                   c->rank);
            return;
        }
        g32 = s->grad32;
    }
    w16_type = w.weight_dtype == 2 ? ZERO_OPTIM_W16_BF16 : w.weight_dtype == 1 ? ZERO_OPTIM_W16_FP16
                                                                               : ZERO_OPTIM_W16_NONE;
    master = c->field[w.group][0] + w.begin;
    status = zero_store_run_kernel(&s->optim, &st, master, g32,
                                   c->num_states >= 1 ? c->field[w.group][1] + w.begin : NULL,
                                   c->num_states >= 2 ? c->field[w.group][2] + w.begin : NULL,
                                   w16_type != ZERO_OPTIM_W16_NONE ? (uint16_t *)(s->tx + ZERO_OPTD_HEADER_BYTES)
                                                                   : NULL,
                                   w16_type, n);
    if (status != ZERO_OK) {
        refuse(s, c, ZERO_OPTD_STEP, h->seq, status, 0,
               "zero-optd: rank %u's step of group %u [%llu, +%llu) failed: %s (hyper-parameters out of range?)",
               c->rank, w.group, (unsigned long long)w.begin, (unsigned long long)n, zero_status_string(status));
        return;
    }
    if (w16_type == ZERO_OPTIM_W16_NONE)
        memcpy(s->tx + ZERO_OPTD_HEADER_BYTES, master, n * sizeof(float));
    (void)send_reply(s, c, ZERO_OPTD_STEP, h->seq, ZERO_OK, (uint32_t)(n * zero_optd_dtype_size(w.weight_dtype)));
}

static void handle_range(zero_optd_server_t *s, optd_conn_t *c, const zero_optd_header_t *h, const unsigned char *body)
{
    uint32_t type = h->type;
    zero_optd_range_t r;
    zero_optd_parse_t v = zero_optd_decode_range(body, h->body_len, type == ZERO_OPTD_WRITE, &r);
    float *at;
    if (v != ZERO_OPTD_PARSE_OK) {
        refuse(s, c, type, h->seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: malformed %s from rank %u: %s",
               type == ZERO_OPTD_WRITE ? "WRITE" : "READ", c->rank, zero_optd_parse_string(v));
        return;
    }
    if (!range_ok(s, c, type, h->seq, r.group, r.field, r.begin, r.count))
        return;
    at = c->field[r.group][r.field] + r.begin;
    if (type == ZERO_OPTD_WRITE) {
        memcpy(at, r.data, (size_t)r.count * sizeof(float));
        (void)send_reply(s, c, type, h->seq, ZERO_OK, 0);
    } else {
        memcpy(s->tx + ZERO_OPTD_HEADER_BYTES, at, (size_t)r.count * sizeof(float));
        (void)send_reply(s, c, type, h->seq, ZERO_OK, (uint32_t)(r.count * sizeof(float)));
    }
}

/* Receives and drops a message nobody may send (unknown key, oversized). */
static void drop_message(zero_optd_server_t *s, ucp_tag_message_h msg)
{
    ucp_request_param_t rp;
    memset(&rp, 0, sizeof(rp));
    (void)wait_request(s, ucp_tag_msg_recv_nbx(s->worker, s->drop, sizeof(s->drop), msg, &rp),
                       zero_clock_now() + s->opts.io_timeout_s);
}

static void serve_message(zero_optd_server_t *s, ucp_tag_message_h msg, const ucp_tag_recv_info_t *info)
{
    optd_conn_t *c = conn_of_tag(s, info->sender_tag);
    zero_optd_header_t h;
    zero_optd_parse_t v;
    ucp_request_param_t rp;
    ucs_status_t st;

    if (c == NULL || c->failed) {
        ZERO_LOG_DEBUG("dropped a %zu-byte message with tag 0x%llx: no such connection", info->length,
                       (unsigned long long)info->sender_tag);
        drop_message(s, msg);
        return;
    }
    if (info->length > ZERO_OPTD_MAX_MESSAGE || info->length < ZERO_OPTD_HEADER_BYTES) {
        drop_message(s, msg);
        refuse(s, c, 0, 0, ZERO_ERR_PROTOCOL, 1,
               "zero-optd: a %zu-byte message is outside [%u, %u] bytes", info->length,
               ZERO_OPTD_HEADER_BYTES, ZERO_OPTD_MAX_MESSAGE);
        return;
    }
    memset(&rp, 0, sizeof(rp));
    st = wait_request(s, ucp_tag_msg_recv_nbx(s->worker, s->rx, info->length, msg, &rp),
                      zero_clock_now() + s->opts.io_timeout_s);
    if (st != UCS_OK) {
        char why[128];
        snprintf(why, sizeof(why), "receiving a %zu-byte message: %s", info->length, ucs_status_string(st));
        conn_close(c, why);
        return;
    }
    v = zero_optd_decode_header(s->rx, info->length, 0, &h);
    if (v != ZERO_OPTD_PARSE_OK) {
        refuse(s, c, 0, 0, ZERO_ERR_PROTOCOL, 1, "zero-optd: malformed message: %s", zero_optd_parse_string(v));
        return;
    }
    if (h.conn_key != c->key) {
        refuse(s, c, h.type, h.seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: message carries another connection's key");
        return;
    }
    if (c->state == CONN_NEW && h.type != ZERO_OPTD_HELLO) {
        refuse(s, c, h.type, h.seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: the first message must be HELLO (got type %u)",
               h.type);
        return;
    }
    switch (h.type) {
    case ZERO_OPTD_HELLO:
        if (c->state == CONN_READY)
            refuse(s, c, h.type, h.seq, ZERO_ERR_PROTOCOL, 1, "zero-optd: a second HELLO on one connection");
        else
            handle_hello(s, c, &h, s->rx + ZERO_OPTD_HEADER_BYTES);
        break;
    case ZERO_OPTD_STEP:
        handle_step(s, c, &h, s->rx + ZERO_OPTD_HEADER_BYTES);
        break;
    case ZERO_OPTD_READ:
    case ZERO_OPTD_WRITE:
        handle_range(s, c, &h, s->rx + ZERO_OPTD_HEADER_BYTES);
        break;
    case ZERO_OPTD_BYE:
        (void)send_reply(s, c, h.type, h.seq, ZERO_OK, 0);
        conn_close(c, NULL);
        break;
    default:
        break;   /* the decoder admits no other type */
    }
}

static void reap(zero_optd_server_t *s)
{
    double now = zero_clock_now();
    for (int i = 0; i < ZERO_OPTD_MAX_CONNS; i++) {
        optd_conn_t *c = &s->conns[i];
        if (c->state == CONN_FREE)
            continue;
        if (c->welcome_req != NULL && ucp_request_check_status(c->welcome_req) != UCS_INPROGRESS) {
            ucp_request_free(c->welcome_req);
            c->welcome_req = NULL;
        }
        if (c->failed) {
            char why[128];
            snprintf(why, sizeof(why), "the client went away (%s)", ucs_status_string(c->failed_status));
            conn_close(c, why);
        } else if (c->state == CONN_NEW && now - c->opened_at > s->opts.hello_timeout_s) {
            conn_close(c, "no HELLO within the deadline");
        }
    }
}

/* After a message, the loop spins this long before it sleeps: the wake-up
 * descriptor does not fire for every transport (shared memory), and a rank
 * mid-step sends its next piece within microseconds. */
#define SPIN_AFTER_ACTIVITY_S 0.2

zero_status_t zero_optd_server_run(zero_optd_server_t *s, volatile sig_atomic_t *stop)
{
    double last_reap = 0.0, last_activity = 0.0;
    while (!*stop) {
        ucp_tag_recv_info_t info;
        ucp_tag_message_h msg;
        while (ucp_worker_progress(s->worker) != 0)
            ;
        if (s->npending > 0)
            accept_pending(s);
        if (s->pending_dropped > 0) {
            ZERO_LOG_WARN("refused %d connection requests: more than %d arrived at once", s->pending_dropped,
                          PENDING_REQUESTS);
            s->pending_dropped = 0;
        }
        if (zero_clock_now() - last_reap > 0.05) {
            reap(s);
            last_reap = zero_clock_now();
        }
        msg = ucp_tag_probe_nb(s->worker, 0, 0, 1, &info);
        if (msg != NULL) {
            serve_message(s, msg, &info);
            last_activity = zero_clock_now();
            continue;
        }
        if (zero_clock_now() - last_activity < SPIN_AFTER_ACTIVITY_S)
            continue;
        if (s->efd >= 0 && ucp_worker_arm(s->worker) == UCS_OK) {
            struct pollfd pfd = {.fd = s->efd, .events = POLLIN};
            (void)poll(&pfd, 1, 5);
        } else {
            zero_clock_sleep(0.001);
        }
    }
    return ZERO_OK;
}

int zero_optd_server_port(const zero_optd_server_t *s)
{
    return s->port;
}

uint64_t zero_optd_server_bytes(const zero_optd_server_t *s)
{
    return s->bytes;
}

zero_status_t zero_optd_server_create(const zero_optd_server_opts_t *opts, zero_optd_server_t **server_p)
{
    zero_status_t status = ZERO_OK;
    zero_optd_server_t *s;
    ucp_params_t params;
    ucp_worker_params_t wparams;
    ucp_listener_params_t lparams;
    ucp_listener_attr_t lattr;
    struct addrinfo hints, *ai = NULL;
    char port_text[16];
    int rc;

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
    s->efd = -1;
    if (s->opts.hello_timeout_s <= 0)
        s->opts.hello_timeout_s = 10.0;
    if (s->opts.io_timeout_s <= 0)
        s->opts.io_timeout_s = 30.0;
    s->bytes = 2 * (uint64_t)ZERO_OPTD_MAX_MESSAGE + ZERO_OPTD_MAX_ELEMS * sizeof(float);
    if (s->opts.memory_limit != 0 && s->opts.memory_limit < s->bytes) {
        ZERO_LOG_ERROR("zero-optd: --memory %llu is below the %llu bytes of the server's own message buffers",
                       (unsigned long long)s->opts.memory_limit, (unsigned long long)s->bytes);
        zero_free(s);
        return ZERO_ERR_INVALID_ARG;
    }
    ZERO_CHECK_GOTO(zero_mem_alloc(ZERO_MEM_HOST, ZERO_OPTD_MAX_MESSAGE, "zero-optd receive buffer", (void **)&s->rx),
                    status, fail);
    ZERO_CHECK_GOTO(zero_mem_alloc(ZERO_MEM_HOST, ZERO_OPTD_MAX_MESSAGE, "zero-optd reply buffer", (void **)&s->tx),
                    status, fail);
    ZERO_CHECK_GOTO(zero_mem_alloc(ZERO_MEM_HOST, ZERO_OPTD_MAX_ELEMS * sizeof(float), "zero-optd fp32 gradient",
                                   (void **)&s->grad32), status, fail);
    if (opts->threads > 1)
        ZERO_CHECK_GOTO(zero_thread_pool_create(opts->threads, &s->pool), status, fail);
    ZERO_CHECK_GOTO(zero_optim_ctx_init(&s->optim, ZERO_OPTIM_ISA_AUTO, s->pool), status, fail);

    memset(&params, 0, sizeof(params));
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;
    ZERO_UCS_CHECK_GOTO(ucp_init(&params, NULL, &s->context), status, fail, "zero-optd: UCX: %s", "ucp_init");
    memset(&wparams, 0, sizeof(wparams));
    wparams.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wparams.thread_mode = UCS_THREAD_MODE_SINGLE;
    ZERO_UCS_CHECK_GOTO(ucp_worker_create(s->context, &wparams, &s->worker), status, fail, "zero-optd: UCX: %s",
                        "creating the worker");
    if (ucp_worker_get_efd(s->worker, &s->efd) != UCS_OK)
        s->efd = -1;

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
    memset(&lparams, 0, sizeof(lparams));
    lparams.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
    lparams.sockaddr.addr = ai->ai_addr;
    lparams.sockaddr.addrlen = ai->ai_addrlen;
    lparams.conn_handler.cb = conn_request_cb;
    lparams.conn_handler.arg = s;
    ZERO_UCS_CHECK_GOTO(ucp_listener_create(s->worker, &lparams, &s->listener), status, fail,
                        "zero-optd: listening on %s:%d", opts->host, opts->port);
    lattr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
    ZERO_UCS_CHECK_GOTO(ucp_listener_query(s->listener, &lattr), status, fail, "zero-optd: %s",
                        "querying the listener");
    s->port = lattr.sockaddr.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&lattr.sockaddr)->sin6_port)
                                                   : ntohs(((struct sockaddr_in *)&lattr.sockaddr)->sin_port);
    freeaddrinfo(ai);
    for (int i = 0; i < ZERO_OPTD_MAX_CONNS; i++)
        s->conns[i].server = s;
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
    for (int i = 0; i < ZERO_OPTD_MAX_CONNS; i++)
        conn_close(&s->conns[i], NULL);
    for (int i = 0; i < s->npending; i++)
        ucp_listener_reject(s->listener, s->pending[i]);
    if (s->listener != NULL)
        ucp_listener_destroy(s->listener);
    if (s->worker != NULL)
        ucp_worker_destroy(s->worker);
    if (s->context != NULL)
        ucp_cleanup(s->context);
    zero_thread_pool_destroy(s->pool);
    zero_mem_free(s->rx);
    zero_mem_free(s->tx);
    zero_mem_free(s->grad32);
    zero_free(s);
}
