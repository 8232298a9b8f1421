#define ZERO_LOG_MODULE "comm"
#include "comm/rendezvous.h"
#include "util/clock.h"
#include "util/alloc.h"
#include "util/byteorder.h"
#include "util/checks.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Refused and dropped connections logged one by one; after that they are
 * counted and summed up every DROP_SUMMARY_S, so a flood cannot flood the log. */
#define DROPS_LOGGED 16
#define DROP_SUMMARY_S 10.0
/* Connections accepted per turn of the server loop, so that a storm of new
 * connections cannot starve the ones already open. */
#define ACCEPT_BURST 256
/* How long a refused client is given to read its refusal before the close. */
#define REFUSAL_LINGER_S 1.0
/* A client's connect() attempt, at most (the SYN of a full backlog is retried by the kernel at 1 s, 3 s). */
#define CONNECT_ATTEMPT_S 5.0

typedef struct peer_link {
    int fd;                         /* -1 once closed */
    int said_bye;
    unsigned char frame[ZERO_RDV_FRAME_BYTES];
    size_t have;
} peer_link_t;

struct zero_rdv {
    int rank, size;
    unsigned char **blobs;
    uint32_t *blob_lens;
    unsigned char extra[ZERO_RDV_MAX_EXTRA];
    uint32_t extra_len;
    peer_link_t *links;             /* rank 0: one per rank (links[0] unused); others: links[0] = rank 0 */
    int nlinks;
    int failed_rank;                /* -1 while healthy */
    zero_status_t failed_status;    /* what the failure means for the collectives */
    int acked;                      /* others: rank 0 acknowledged our goodbye */
};

static void describe_peer(const struct sockaddr_storage *sa, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))   /* an IPv4 client of the dual-stack socket */
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof(host));
        else
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, n, "%s:%d", host, port);
}

static void tune_socket(int fd)
{
    int one = 1, idle = 10, intvl = 2, cnt = 3;
    /* Keep-alive finds a peer whose host vanished (no FIN ever comes) in ~16 s. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* Milliseconds for poll() until @p deadline, at most @p cap_s, at least 0. */
static int poll_ms(double deadline, double cap_s)
{
    double left = deadline - zero_clock_now();
    if (left <= 0)
        return 0;
    if (left > cap_s)
        left = cap_s;
    return (int)(left * 1000) + 1;
}

/* Moves exactly @p n bytes (fd non-blocking) before @p deadline. Returns 0, or
 * -1 with errno (ETIMEDOUT on deadline, EPIPE on a peer that closed). */
static int io_all(int fd, void *buf, size_t n, int writing, double deadline)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = writing ? send(fd, (char *)buf + done, n - done, MSG_NOSIGNAL)
                            : recv(fd, (char *)buf + done, n - done, 0);
        if (k > 0) {
            done += (size_t)k;
            continue;
        }
        if (k == 0) {
            errno = EPIPE;
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct pollfd p = {fd, (short)(writing ? POLLOUT : POLLIN), 0};
            if (deadline - zero_clock_now() <= 0) {
                errno = ETIMEDOUT;
                return -1;
            }
            poll(&p, 1, poll_ms(deadline, 1.0));
            continue;
        }
        return -1;
    }
    return 0;
}

/* ---- rank 0: the server ----
 *
 * One poll loop, every socket non-blocking. Each connection not yet joined is
 * a small state machine in a table of ZERO_RDV_MAX_PENDING slots, with a
 * deadline per phase: HELLO (the 64-byte hello, with the token) and RECORD
 * (the rank's address record, once the token was right) each get
 * conn_timeout_s; a refused client gets REFUSAL_LINGER_S to read its refusal.
 * When the table is full, a new connection evicts the oldest connection that
 * has not shown the token, so silent or slow clients can delay an honest rank
 * by at most one reconnect. */

typedef enum conn_phase { PHASE_FREE = 0, PHASE_HELLO, PHASE_RECORD, PHASE_REFUSING } conn_phase_t;

typedef struct pending_conn {
    int fd;
    conn_phase_t phase;
    char peer[64];
    double accepted_at;             /* eviction order: the oldest goes first */
    double deadline;                /* of the current phase */
    unsigned char hello[ZERO_RDV_HELLO_BYTES];
    size_t have;                    /* bytes of the hello, then of the record */
    zero_rdv_hello_t h;
    unsigned char *record;
} pending_conn_t;

/* Why a connection was dropped, for the summary of those not logged one by one. */
typedef enum drop_reason {
    DROP_EVICTED, DROP_DEADLINE, DROP_CLOSED, DROP_NOT_RDV, DROP_TOKEN, DROP_OTHER, DROP_REASONS
} drop_reason_t;

static const char *const drop_reason_names[DROP_REASONS] = {
    "evicted by newer connections", "past their deadline", "closed by the client early",
    "not a rendezvous hello", "wrong job token", "other",
};

typedef struct server {
    zero_rdv_t *rdv;
    const zero_comm_env_t *env;
    zero_rdv_job_t job;
    double conn_timeout;
    int joined;                     /* ranks whose record is in, rank 0 included */
    pending_conn_t pend[ZERO_RDV_MAX_PENDING];
    long drops_logged, drops_unlogged, drops_total;
    long unlogged_by_reason[DROP_REASONS];
    double next_summary;
} server_t;

/* Logs one dropped or refused connection, or only counts it once DROPS_LOGGED were logged. */
static void ZERO_PRINTF(3, 4) drop_log(server_t *s, drop_reason_t reason, const char *fmt, ...)
{
    s->drops_total++;
    if (s->drops_logged >= DROPS_LOGGED) {
        s->drops_unlogged++;
        s->unlogged_by_reason[reason]++;
        return;
    }
    s->drops_logged++;
    if (zero_log_enabled(ZERO_LOG_LEVEL_WARN)) {
        char msg[384];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        ZERO_LOG_WARN("rendezvous: %s%s", msg,
                      s->drops_logged == DROPS_LOGGED ? " (further ones are counted, not logged one by one)" : "");
    }
}

static void drop_summary(server_t *s, double now)
{
    if (s->drops_unlogged > 0) {
        char parts[512];
        size_t len = 0;
        for (int r = 0; r < DROP_REASONS; r++)
            if (s->unlogged_by_reason[r] > 0 && len < sizeof(parts))
                len += (size_t)snprintf(parts + len, sizeof(parts) - len, "%s%ld %s", len > 0 ? ", " : "",
                                        s->unlogged_by_reason[r], drop_reason_names[r]);
        ZERO_LOG_WARN("rendezvous: %ld more connections dropped or refused since the last report: %s (%ld in all "
                      "so far)", s->drops_unlogged, parts, s->drops_total);
    }
    memset(s->unlogged_by_reason, 0, sizeof(s->unlogged_by_reason));
    s->drops_unlogged = 0;
    s->next_summary = now + DROP_SUMMARY_S;
}

static void conn_close(pending_conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    zero_free(c->record);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->phase = PHASE_FREE;
}

/* Answers a client that spoke the protocol but cannot join, so it can say why,
 * then gives it REFUSAL_LINGER_S to read that before the close. */
static void conn_refuse(server_t *s, pending_conn_t *c, zero_rdv_refusal_t code, const char *why)
{
    unsigned char answer[ZERO_RDV_REPLY_HEAD_BYTES];
    drop_log(s, code == ZERO_RDV_REFUSED_TOKEN ? DROP_TOKEN : DROP_OTHER, "refused connection from %s: %s", c->peer,
             why);
    zero_rdv_refusal_write(answer, code);
    /* 64 bytes into a fresh socket's empty buffer: never short */
    (void)!send(c->fd, answer, sizeof(answer), MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(c->fd, SHUT_WR);
    zero_free(c->record);
    c->record = NULL;
    c->phase = PHASE_REFUSING;
    c->deadline = zero_clock_now() + REFUSAL_LINGER_S;
}

static void joined_link_event(server_t *s, int r);

/* The hello is complete and valid: the token was right. */
static void conn_hello_done(server_t *s, pending_conn_t *c)
{
    char why[160];
    /* A rank that joined and lost its connection comes back before the loop
     * saw the close: look at its old link first. */
    if (s->rdv->blobs[c->h.rank] != NULL)
        joined_link_event(s, (int)c->h.rank);
    if (s->rdv->blobs[c->h.rank] != NULL) {
        snprintf(why, sizeof(why), "rank %u has already joined", c->h.rank);
        conn_refuse(s, c, ZERO_RDV_REFUSED_RANK_TAKEN, why);
        return;
    }
    c->record = zero_malloc(c->h.record_len);
    if (c->record == NULL) {
        drop_log(s, DROP_OTHER, "dropped connection from %s (rank %u): out of memory for its %u-byte record", c->peer,
                 c->h.rank, c->h.record_len);
        conn_close(c);
        return;
    }
    c->phase = PHASE_RECORD;
    c->have = 0;
    c->deadline = zero_clock_now() + s->conn_timeout;
}

static void conn_hello_refused(server_t *s, pending_conn_t *c, zero_rdv_parse_t verdict)
{
    char why[200];
    switch (verdict) {
    case ZERO_RDV_PARSE_NOT_RDV:
        drop_log(s, DROP_NOT_RDV, "refused connection from %s: not a libzero rendezvous hello", c->peer);
        conn_close(c);     /* not our protocol: not answered */
        return;
    case ZERO_RDV_PARSE_WORLD:
        snprintf(why, sizeof(why), "rank %u of world %u does not fit this job (world %d)", c->h.rank, c->h.world,
                 s->rdv->size);
        break;
    case ZERO_RDV_PARSE_VERSION:
        snprintf(why, sizeof(why), "protocol version %u, expected %u", c->h.version, ZERO_RDV_VERSION);
        break;
    case ZERO_RDV_PARSE_LENGTH:
        snprintf(why, sizeof(why), "(rank %u) blob length %u outside [1, %u]", c->h.rank, c->h.record_len,
                 ZERO_RDV_MAX_BLOB);
        break;
    default:
        snprintf(why, sizeof(why), "%s", zero_rdv_parse_string(verdict));
        break;
    }
    conn_refuse(s, c, zero_rdv_refusal_of(verdict), why);
}

/* The record is in: the connection becomes rank h.rank's link. */
static void conn_join(server_t *s, pending_conn_t *c)
{
    zero_rdv_t *rdv = s->rdv;
    int r = (int)c->h.rank;
    if (rdv->blobs[r] != NULL) {   /* two connections claimed one rank at once */
        char why[96];
        snprintf(why, sizeof(why), "rank %d has already joined", r);
        conn_refuse(s, c, ZERO_RDV_REFUSED_RANK_TAKEN, why);
        return;
    }
    rdv->blobs[r] = c->record;
    rdv->blob_lens[r] = c->h.record_len;
    rdv->links[r].fd = c->fd;
    ZERO_LOG_DEBUG("rendezvous: rank %d joined from %s", r, c->peer);
    c->record = NULL;
    c->fd = -1;
    conn_close(c);
    s->joined++;
}

/* Reads what has arrived on a pending connection and moves its state machine on. */
static void conn_progress(server_t *s, pending_conn_t *c)
{
    while (c->phase != PHASE_FREE) {
        unsigned char sink[512], *dst;
        size_t want;
        ssize_t k;
        switch (c->phase) {
        case PHASE_HELLO:
            dst = c->hello + c->have;
            want = ZERO_RDV_HELLO_BYTES - c->have;
            break;
        case PHASE_RECORD:
            dst = c->record + c->have;
            want = c->h.record_len - c->have;
            break;
        default:            /* refusing: whatever comes is discarded */
            dst = sink;
            want = sizeof(sink);
            break;
        }
        k = recv(c->fd, dst, want, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (k <= 0) {
            if (c->phase == PHASE_HELLO)
                drop_log(s, DROP_CLOSED, "connection from %s %s before its hello was complete (%zu of %d bytes)", c->peer,
                         k == 0 ? "closed" : strerror(errno), c->have, ZERO_RDV_HELLO_BYTES);
            else if (c->phase == PHASE_RECORD)
                drop_log(s, DROP_CLOSED, "connection from %s (rank %u) %s before its address record was complete (%zu of %u bytes)",
                         c->peer, c->h.rank, k == 0 ? "closed" : strerror(errno), c->have, c->h.record_len);
            conn_close(c);
            return;
        }
        if (c->phase == PHASE_REFUSING)
            continue;
        c->have += (size_t)k;
        if (c->phase == PHASE_HELLO) {
            size_t need;
            zero_rdv_parse_t v = zero_rdv_hello_parse(c->hello, c->have, &s->job, &c->h, &need);
            if (v == ZERO_RDV_PARSE_OK)
                conn_hello_done(s, c);
            else if (v != ZERO_RDV_PARSE_MORE)
                conn_hello_refused(s, c, v);
        } else if (c->have == c->h.record_len) {
            conn_join(s, c);
        }
    }
}

/* Frees a slot for a new connection: the oldest refused one, else the oldest
 * that has not shown the token. Returns the slot, or -1 when every slot holds
 * a client that showed the token. */
static int evict_one(server_t *s)
{
    int victim = -1;
    for (int pass = 0; pass < 2 && victim < 0; pass++) {
        conn_phase_t phase = pass == 0 ? PHASE_REFUSING : PHASE_HELLO;
        for (int i = 0; i < ZERO_RDV_MAX_PENDING; i++)
            if (s->pend[i].phase == phase &&
                (victim < 0 || s->pend[i].accepted_at < s->pend[victim].accepted_at))
                victim = i;
    }
    if (victim < 0)
        return -1;
    if (s->pend[victim].phase == PHASE_HELLO)
        drop_log(s, DROP_EVICTED, "dropped connection from %s: evicted by a newer one (%d connections pending, %zu of %d hello "
                 "bytes after %.1f s)", s->pend[victim].peer, ZERO_RDV_MAX_PENDING, s->pend[victim].have,
                 ZERO_RDV_HELLO_BYTES, zero_clock_now() - s->pend[victim].accepted_at);
    conn_close(&s->pend[victim]);
    return victim;
}

/* Accepts what the listening socket has, up to ACCEPT_BURST. Returns 0, or -1
 * when no descriptor could be freed for a waiting connection (the caller
 * stops watching the socket for a moment instead of spinning). */
static int accept_burst(server_t *s, int lfd)
{
    for (int n = 0; n < ACCEPT_BURST; n++) {
        struct sockaddr_storage sa;
        socklen_t slen = sizeof(sa);
        int slot = -1, fd = accept4(lfd, (struct sockaddr *)&sa, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        pending_conn_t *c;
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && evict_one(s) >= 0)
                continue;   /* a descriptor is free again */
            if (errno == EMFILE || errno == ENFILE) {
                drop_log(s, DROP_OTHER, "cannot accept a connection: %s (every pending connection showed the token)",
                         strerror(errno));
                return -1;
            }
            return 0;       /* EAGAIN: nothing more waiting */
        }
        for (int i = 0; i < ZERO_RDV_MAX_PENDING && slot < 0; i++)
            if (s->pend[i].phase == PHASE_FREE)
                slot = i;
        if (slot < 0 && (slot = evict_one(s)) < 0) {
            char peer[64];
            describe_peer(&sa, peer, sizeof(peer));
            drop_log(s, DROP_OTHER, "refused connection from %s: %d connections that showed the token are pending", peer,
                     ZERO_RDV_MAX_PENDING);
            close(fd);
            continue;
        }
        c = &s->pend[slot];
        memset(c, 0, sizeof(*c));
        c->fd = fd;
        c->phase = PHASE_HELLO;
        c->accepted_at = zero_clock_now();
        c->deadline = c->accepted_at + s->conn_timeout;
        describe_peer(&sa, c->peer, sizeof(c->peer));
        conn_progress(s, c);     /* an honest client's hello is usually here already */
    }
    return 0;
}

static void expire_pending(server_t *s, double now)
{
    for (int i = 0; i < ZERO_RDV_MAX_PENDING; i++) {
        pending_conn_t *c = &s->pend[i];
        if (c->phase == PHASE_FREE || now < c->deadline)
            continue;
        if (c->phase == PHASE_HELLO)
            drop_log(s, DROP_DEADLINE, "dropped connection from %s: no complete hello within %.1f s (%zu of %d bytes; "
                     "ZERO_RENDEZVOUS_CONN_TIMEOUT)", c->peer, s->conn_timeout, c->have, ZERO_RDV_HELLO_BYTES);
        else if (c->phase == PHASE_RECORD)
            drop_log(s, DROP_DEADLINE, "dropped connection from %s (rank %u): its address record was not complete within %.1f s "
                     "(%zu of %u bytes; ZERO_RENDEZVOUS_CONN_TIMEOUT)", c->peer, c->h.rank, s->conn_timeout,
                     c->have, c->h.record_len);
        conn_close(c);
    }
}

/* A rank that joined sends nothing until the answer: anything readable means
 * it closed (it gave up, or died) or broke the protocol. Its place opens
 * again, so the rank can join anew when it retries. */
static void joined_link_event(server_t *s, int r)
{
    zero_rdv_t *rdv = s->rdv;
    char byte;
    ssize_t k = recv(rdv->links[r].fd, &byte, 1, MSG_DONTWAIT);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    ZERO_LOG_WARN("rendezvous: rank %d %s before the job formed; waiting for it to join again", r,
                  k == 0 ? "closed its connection" : k > 0 ? "sent unexpected bytes" : strerror(errno));
    close(rdv->links[r].fd);
    rdv->links[r].fd = -1;
    zero_free(rdv->blobs[r]);
    rdv->blobs[r] = NULL;
    rdv->blob_lens[r] = 0;
    s->joined--;
}

static int listen_on(const zero_comm_env_t *env)
{
    int lfd, one = 1;
    /* All interfaces, IPv6 and IPv4 at once where the host has IPv6: MASTER_ADDR
     * may name this host by an address other ranks reach but that a bind to
     * the name would miss (a host name mapped to 127.0.1.1, say). Every
     * connection still has to present the job token. The backlog is the
     * system's maximum: the loop drains it, and an honest SYN that finds it
     * full would wait a second for the kernel's retransmission. */
    lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd >= 0) {
        struct sockaddr_in6 a6;
        int zero = 0;
        memset(&a6, 0, sizeof(a6));
        a6.sin6_family = AF_INET6;
        a6.sin6_addr = in6addr_any;
        a6.sin6_port = htons((uint16_t)env->master_port);
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        if (bind(lfd, (struct sockaddr *)&a6, sizeof(a6)) == 0 && listen(lfd, SOMAXCONN) == 0)
            return lfd;
        close(lfd);
    }
    {
        struct sockaddr_in a4;
        int err;
        memset(&a4, 0, sizeof(a4));
        a4.sin_family = AF_INET;
        a4.sin_addr.s_addr = htonl(INADDR_ANY);
        a4.sin_port = htons((uint16_t)env->master_port);
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0)
            return -1;
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(lfd, (struct sockaddr *)&a4, sizeof(a4)) == 0 && listen(lfd, SOMAXCONN) == 0)
            return lfd;
        err = errno;
        close(lfd);
        errno = err;
        return -1;
    }
}

/* Sends @p reply to every rank at once, without blocking on any one; a rank
 * that takes nothing for conn_timeout fails the rendezvous. */
static zero_status_t send_reply_all(server_t *s, const unsigned char *reply, size_t reply_len)
{
    zero_rdv_t *rdv = s->rdv;
    zero_status_t status = ZERO_OK;
    size_t *sent = zero_calloc((size_t)rdv->size, sizeof(*sent));
    double *progress_at = zero_calloc((size_t)rdv->size, sizeof(*progress_at));
    struct pollfd *pfds = zero_calloc((size_t)rdv->size, sizeof(*pfds));
    int *who = zero_calloc((size_t)rdv->size, sizeof(*who));
    ZERO_REQUIRE_GOTO(sent && progress_at && pfds && who, ZERO_ERR_NO_MEMORY, status, out,
                      "rendezvous: out of memory for %d ranks' answers", rdv->size);
    for (int r = 1; r < rdv->size; r++)
        progress_at[r] = zero_clock_now();
    for (;;) {
        int n = 0;
        double now = zero_clock_now();
        for (int r = 1; r < rdv->size; r++) {
            if (sent[r] == reply_len)
                continue;
            if (now - progress_at[r] > s->conn_timeout) {
                ZERO_LOG_ERROR("rendezvous: rank %d took none of the job's addresses for %.1f s (%zu of %zu bytes "
                               "sent)", r, now - progress_at[r], sent[r], reply_len);
                status = ZERO_ERR_TIMEOUT;
                goto out;
            }
            who[n] = r;
            pfds[n++] = (struct pollfd){rdv->links[r].fd, POLLOUT, 0};
        }
        if (n == 0)
            break;
        if (poll(pfds, (nfds_t)n, 100) < 0 && errno != EINTR)
            ZERO_ERRNO_CHECK_GOTO(0, status, out, "rendezvous: %s", "poll");
        for (int i = 0; i < n; i++) {
            int r = who[i];
            ssize_t k;
            if (pfds[i].revents == 0)
                continue;
            k = send(rdv->links[r].fd, reply + sent[r], reply_len - sent[r], MSG_NOSIGNAL | MSG_DONTWAIT);
            if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                continue;
            if (k <= 0) {
                ZERO_LOG_ERROR("rendezvous: cannot send the job's addresses to rank %d: %s", r,
                               k == 0 ? "connection closed" : strerror(errno));
                status = ZERO_ERR_COMM;
                goto out;
            }
            sent[r] += (size_t)k;
            progress_at[r] = zero_clock_now();
        }
    }
    for (int r = 1; r < rdv->size; r++)
        tune_socket(rdv->links[r].fd);
out:
    zero_free(sent);
    zero_free(progress_at);
    zero_free(pfds);
    zero_free(who);
    return status;
}

static zero_status_t serve(zero_rdv_t *rdv, const zero_comm_env_t *env, double deadline, double conn_timeout,
                           zero_rdv_extra_fn extra_fn, void *extra_arg)
{
    zero_status_t status = ZERO_OK;
    server_t *s = NULL;
    struct pollfd *pfds = NULL;
    int *who = NULL;                /* pfds[i] is: -1 the listener, 0..MAX_PENDING-1 a slot, MAX_PENDING + r rank r */
    int lfd = -1;
    double listen_paused_until = 0;
    unsigned char *reply = NULL;
    size_t reply_len, nfds_max = 1 + ZERO_RDV_MAX_PENDING + (size_t)rdv->size;

    s = zero_calloc(1, sizeof(*s));
    pfds = zero_calloc(nfds_max, sizeof(*pfds));
    who = zero_calloc(nfds_max, sizeof(*who));
    ZERO_REQUIRE_GOTO(s && pfds && who, ZERO_ERR_NO_MEMORY, status, out,
                      "rendezvous: out of memory for a job of %d ranks", rdv->size);
    s->rdv = rdv;
    s->env = env;
    s->job.size = (uint32_t)rdv->size;
    s->job.token = env->token;
    s->conn_timeout = conn_timeout;
    s->joined = 1;
    s->next_summary = zero_clock_now() + DROP_SUMMARY_S;
    for (int i = 0; i < ZERO_RDV_MAX_PENDING; i++)
        s->pend[i].fd = -1;

    lfd = listen_on(env);
    ZERO_ERRNO_CHECK_GOTO(lfd >= 0, status, out, "rendezvous: cannot listen on port %d (MASTER_PORT)",
                          env->master_port);
    set_nonblocking(lfd);
    ZERO_LOG_DEBUG("rendezvous: rank 0 serving on %s:%d for %d ranks", env->master_addr, env->master_port,
                   rdv->size);

    while (s->joined < rdv->size) {
        double now = zero_clock_now(), wake = deadline;
        int n = 0;
        if (now >= deadline) {
            int missing = -1;
            for (int r = 1; r < rdv->size && missing < 0; r++)
                if (rdv->blobs[r] == NULL)
                    missing = r;
            drop_summary(s, now);
            ZERO_LOG_ERROR("rendezvous: %d of %d ranks joined within the rendezvous timeout (rank %d missing; "
                           "%ld other connections dropped or refused; raise ZERO_RENDEZVOUS_TIMEOUT?)", s->joined,
                           rdv->size, missing, s->drops_total);
            status = ZERO_ERR_TIMEOUT;
            goto out;
        }
        expire_pending(s, now);
        if (now >= s->next_summary)
            drop_summary(s, now);
        if (now >= listen_paused_until) {
            who[n] = -1;
            pfds[n++] = (struct pollfd){lfd, POLLIN, 0};
        } else if (listen_paused_until < wake) {
            wake = listen_paused_until;
        }
        for (int i = 0; i < ZERO_RDV_MAX_PENDING; i++) {
            if (s->pend[i].phase == PHASE_FREE)
                continue;
            if (s->pend[i].deadline < wake)
                wake = s->pend[i].deadline;
            who[n] = i;
            pfds[n++] = (struct pollfd){s->pend[i].fd, POLLIN, 0};
        }
        for (int r = 1; r < rdv->size; r++) {
            if (rdv->links[r].fd < 0)
                continue;
            who[n] = ZERO_RDV_MAX_PENDING + r;
            pfds[n++] = (struct pollfd){rdv->links[r].fd, POLLIN, 0};
        }
        if (s->next_summary < wake)
            wake = s->next_summary;
        if (poll(pfds, (nfds_t)n, poll_ms(wake, 1.0)) < 0 && errno != EINTR)
            ZERO_ERRNO_CHECK_GOTO(0, status, out, "rendezvous: %s", "poll");
        for (int i = 0; i < n; i++) {
            if (pfds[i].revents == 0)
                continue;
            if (who[i] < 0) {
                if (accept_burst(s, lfd) != 0)
                    listen_paused_until = zero_clock_now() + 0.1;
            } else if (who[i] < ZERO_RDV_MAX_PENDING) {
                /* the slot may have been evicted and reused by the accept burst */
                if (s->pend[who[i]].fd == pfds[i].fd)
                    conn_progress(s, &s->pend[who[i]]);
            } else if (rdv->links[who[i] - ZERO_RDV_MAX_PENDING].fd == pfds[i].fd) {
                joined_link_event(s, who[i] - ZERO_RDV_MAX_PENDING);
            }
        }
    }
    close(lfd);        /* the job is complete: nobody else gets in */
    lfd = -1;
    drop_summary(s, zero_clock_now());

    if (extra_fn != NULL)
        ZERO_CHECK_GOTO(extra_fn(extra_arg, rdv->size, (const unsigned char *const *)rdv->blobs, rdv->blob_lens,
                                 rdv->extra, &rdv->extra_len), status, out);

    /* Answer: header, lengths, records, extra bytes. */
    reply_len = ZERO_RDV_REPLY_HEAD_BYTES + 4 * (size_t)rdv->size + rdv->extra_len;
    for (int r = 0; r < rdv->size; r++)
        reply_len += rdv->blob_lens[r];
    reply = zero_malloc(reply_len);
    ZERO_REQUIRE_GOTO(reply != NULL, ZERO_ERR_NO_MEMORY, status, out, "rendezvous: out of memory for the reply");
    {
        unsigned char *p = reply;
        zero_rdv_reply_head_write(p, &s->job, rdv->extra_len);
        p += ZERO_RDV_REPLY_HEAD_BYTES;
        for (int r = 0; r < rdv->size; r++, p += 4)
            zero_put_be32(p, rdv->blob_lens[r]);
        for (int r = 0; r < rdv->size; r++) {
            memcpy(p, rdv->blobs[r], rdv->blob_lens[r]);
            p += rdv->blob_lens[r];
        }
        memcpy(p, rdv->extra, rdv->extra_len);
    }
    status = send_reply_all(s, reply, reply_len);

out:
    zero_free(reply);
    if (s != NULL)
        for (int i = 0; i < ZERO_RDV_MAX_PENDING; i++)
            if (s->pend[i].phase != PHASE_FREE)
                conn_close(&s->pend[i]);
    if (lfd >= 0)
        close(lfd);
    zero_free(s);
    zero_free(pfds);
    zero_free(who);
    return status;
}

/* ---- other ranks: the client ----
 *
 * Connect, send hello and record, read the answer. A failure that can be
 * transient (rank 0 not listening yet, the connection closed or reset because
 * rank 0 dropped it while flooded, a connect that timed out) is retried with
 * exponential back-off and jitter until the rendezvous timeout; a refusal
 * (rank 0 answered why) or a malformed answer is final. */

typedef enum join_outcome { JOIN_DONE, JOIN_RETRY, JOIN_FAILED } join_outcome_t;

typedef struct join_attempt {
    char why[400];                  /* the last transient failure, for the final message */
    zero_status_t status;           /* JOIN_FAILED: the error (already logged) */
} join_attempt_t;

/* One connect() to MASTER_ADDR:MASTER_PORT. Returns the fd, or -1 with the reason in @p a. */
static int connect_once(const zero_comm_env_t *env, double deadline, join_attempt_t *a)
{
    struct addrinfo *res = NULL, hints;
    char port[16];
    int fd = -1, rc;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", env->master_port);
    if ((rc = getaddrinfo(env->master_addr, port, &hints, &res)) != 0) {
        /* the name may not resolve yet: retried */
        snprintf(a->why, sizeof(a->why), "cannot resolve MASTER_ADDR '%s': %s", env->master_addr, gai_strerror(rc));
        return -1;
    }
    snprintf(a->why, sizeof(a->why), "no usable address");
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        int err = 0;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            snprintf(a->why, sizeof(a->why), "socket: %s", strerror(errno));
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            double until = zero_clock_now() + CONNECT_ATTEMPT_S;
            socklen_t sl = sizeof(err);
            int k = poll(&p, 1, poll_ms(until < deadline ? until : deadline, CONNECT_ATTEMPT_S));
            if (k == 0)
                err = ETIMEDOUT;
            else if (k < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0)
                err = errno;
            if (err == 0)
                break;      /* connected */
        }
        if (err == ECONNREFUSED)
            snprintf(a->why, sizeof(a->why), "connection refused (nothing listens there yet: is rank 0 running? "
                     "MASTER_ADDR/MASTER_PORT right?)");
        else if (err == ETIMEDOUT)
            snprintf(a->why, sizeof(a->why), "connection attempt timed out (host reachable? port filtered?)");
        else
            snprintf(a->why, sizeof(a->why), "connect: %s", strerror(err));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Copies the records and extra bytes of a parsed answer into @p rdv. */
static zero_status_t take_reply(zero_rdv_t *rdv, const zero_rdv_reply_t *reply)
{
    const unsigned char *p = reply->records;
    for (int r = 0; r < rdv->size; r++) {
        uint32_t len = zero_rdv_reply_record_len(reply, (uint32_t)r);
        rdv->blobs[r] = zero_malloc(len);
        if (rdv->blobs[r] == NULL) {
            ZERO_LOG_ERROR("rendezvous: out of memory for rank %d's %u-byte address record", r, len);
            return ZERO_ERR_NO_MEMORY;
        }
        memcpy(rdv->blobs[r], p, len);
        rdv->blob_lens[r] = len;
        p += len;
    }
    memcpy(rdv->extra, reply->extra, reply->extra_len);
    rdv->extra_len = reply->extra_len;
    return ZERO_OK;
}

/* Says what was wrong with rank 0's answer. */
static void log_bad_reply(const zero_rdv_t *rdv, const zero_comm_env_t *env, zero_rdv_parse_t v,
                          const zero_rdv_reply_t *reply)
{
    char what[160];
    switch (v) {
    case ZERO_RDV_PARSE_LENGTH:
        if (reply->bad_rank >= reply->world)
            snprintf(what, sizeof(what), "an extra length %u above %u", reply->extra_len, ZERO_RDV_MAX_EXTRA);
        else
            snprintf(what, sizeof(what), "a blob length %u for rank %u outside [1, %u]", reply->bad_len,
                     reply->bad_rank, ZERO_RDV_MAX_BLOB);
        ZERO_LOG_ERROR("rendezvous: rank 0 at %s:%d sent %s", env->master_addr, env->master_port, what);
        return;
    case ZERO_RDV_PARSE_TOKEN:
        snprintf(what, sizeof(what), "another job's token (two jobs on one port?)");
        break;
    case ZERO_RDV_PARSE_VERSION:
        snprintf(what, sizeof(what), "protocol version %u, this rank speaks %u", reply->version, ZERO_RDV_VERSION);
        break;
    case ZERO_RDV_PARSE_WORLD:
        snprintf(what, sizeof(what), "world size %u, this rank's is %d", reply->world, rdv->size);
        break;
    default:
        snprintf(what, sizeof(what), "%s (another program on this port?)", zero_rdv_parse_string(v));
        break;
    }
    ZERO_LOG_ERROR("rendezvous: rank 0 at %s:%d sent a foreign reply: %s", env->master_addr, env->master_port, what);
}

/* One attempt to join: connect, hello and record, answer. */
static join_outcome_t join_once(zero_rdv_t *rdv, const zero_comm_env_t *env, double deadline, double conn_timeout,
                                const unsigned char *message, size_t message_len, join_attempt_t *a)
{
    zero_rdv_job_t job = {(uint32_t)rdv->size, env->token};
    unsigned char *buf = NULL;
    size_t have = 0, need = ZERO_RDV_REPLY_HEAD_BYTES, cap = 0;
    double send_deadline = zero_clock_now() + conn_timeout;
    join_outcome_t outcome = JOIN_RETRY;
    int fd = connect_once(env, deadline, a);
    if (fd < 0)
        return JOIN_RETRY;
    if (io_all(fd, (void *)message, message_len, 1, send_deadline < deadline ? send_deadline : deadline) != 0) {
        snprintf(a->why, sizeof(a->why), "%s while sending this rank's hello",
                 errno == ETIMEDOUT ? "timed out (ZERO_RENDEZVOUS_CONN_TIMEOUT)"
                 : errno == EPIPE || errno == ECONNRESET ? "connection closed by rank 0" : strerror(errno));
        goto out;
    }
    /* Now the answer: it comes once every rank has joined, so the wait is the
     * rendezvous timeout. If rank 0 dropped this connection instead, the
     * close shows it. */
    for (;;) {
        zero_rdv_reply_t reply;
        zero_rdv_parse_t v;
        if (need > cap) {
            unsigned char *bigger = zero_realloc(buf, need);
            if (bigger == NULL) {
                ZERO_LOG_ERROR("rendezvous: out of memory for rank 0's %zu-byte answer", need);
                a->status = ZERO_ERR_NO_MEMORY;
                outcome = JOIN_FAILED;
                goto out;
            }
            buf = bigger;
            cap = need;
        }
        /* exactly what the answer still lacks: control frames may follow it */
        if (io_all(fd, buf + have, need - have, 0, deadline) != 0) {
            if (errno == ETIMEDOUT) {
                ZERO_LOG_ERROR("rendezvous: rank 0 at %s:%d took this rank's hello but did not answer within the "
                               "rendezvous timeout (%zu bytes of its answer came; other ranks missing?)",
                               env->master_addr, env->master_port, have);
                a->status = ZERO_ERR_TIMEOUT;
                outcome = JOIN_FAILED;
            } else {
                snprintf(a->why, sizeof(a->why), "connection closed by rank 0 before it answered (%s after %zu bytes of "
                         "the answer; rank 0 drops connections it cannot serve in time)",
                         errno == EPIPE ? "orderly close" : strerror(errno), have);
            }
            goto out;
        }
        have = need;
        v = zero_rdv_reply_parse(buf, have, &job, &reply, &need);
        if (v == ZERO_RDV_PARSE_MORE)
            continue;
        if (v == ZERO_RDV_PARSE_OK) {
            a->status = take_reply(rdv, &reply);
            if (a->status != ZERO_OK) {
                outcome = JOIN_FAILED;
                goto out;
            }
            rdv->links[0].fd = fd;
            fd = -1;
            tune_socket(rdv->links[0].fd);
            outcome = JOIN_DONE;
        } else if (v == ZERO_RDV_PARSE_REFUSED) {
            ZERO_LOG_ERROR("rendezvous: rank 0 at %s:%d refused rank %d: %s", env->master_addr, env->master_port,
                           rdv->rank, zero_rdv_refusal_string(reply.code));
            a->status = ZERO_ERR_PROTOCOL;
            outcome = JOIN_FAILED;
        } else {
            log_bad_reply(rdv, env, v, &reply);
            a->status = ZERO_ERR_PROTOCOL;
            outcome = JOIN_FAILED;
        }
        goto out;
    }
out:
    zero_free(buf);
    if (fd >= 0)
        close(fd);
    return outcome;
}

/* A small generator for the back-off jitter; the state lives with the caller. */
static double jitter01(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (double)(*state >> 11) / 9007199254740992.0;
}

static zero_status_t join(zero_rdv_t *rdv, const zero_comm_env_t *env, double deadline, double conn_timeout,
                          const void *blob, uint32_t blob_len)
{
    zero_rdv_job_t job = {(uint32_t)rdv->size, env->token};
    join_attempt_t a;
    unsigned char *message;
    double backoff = 0.01, start = zero_clock_now();
    uint64_t seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)(start * 1e9) ^ (uint64_t)rdv->rank;
    int attempts = 0;
    join_outcome_t outcome;

    message = zero_malloc(ZERO_RDV_HELLO_BYTES + (size_t)blob_len);
    if (message == NULL) {
        ZERO_LOG_ERROR("rendezvous: out of memory for this rank's hello");
        return ZERO_ERR_NO_MEMORY;
    }
    zero_rdv_hello_write(message, &job, (uint32_t)rdv->rank, blob_len);
    memcpy(message + ZERO_RDV_HELLO_BYTES, blob, blob_len);
    memset(&a, 0, sizeof(a));
    seed |= 1;
    for (;;) {
        double left, pause;
        attempts++;
        outcome = join_once(rdv, env, deadline, conn_timeout, message, ZERO_RDV_HELLO_BYTES + (size_t)blob_len, &a);
        if (outcome != JOIN_RETRY)
            break;
        left = deadline - zero_clock_now();
        /* full jitter on [backoff/2, backoff): ranks dropped together do not come back together */
        pause = backoff * (0.5 + 0.5 * jitter01(&seed));
        if (pause >= left) {
            /* no time for another attempt: the rendezvous timeout ends in the pause */
            zero_clock_sleep(left);
            ZERO_LOG_ERROR("rendezvous: rank %d could not join rank 0 at %s:%d within the rendezvous timeout "
                           "(%.1f s, %d attempts); last attempt: %s", rdv->rank, env->master_addr, env->master_port,
                           zero_clock_now() - start, attempts, a.why);
            a.status = ZERO_ERR_TIMEOUT;
            outcome = JOIN_FAILED;
            break;
        }
        ZERO_LOG_DEBUG("rendezvous: attempt %d to join rank 0 failed (%s); retrying", attempts, a.why);
        zero_clock_sleep(pause);
        backoff = backoff * 2 > 1.0 ? 1.0 : backoff * 2;
    }
    zero_free(message);
    return outcome == JOIN_DONE ? ZERO_OK : a.status;
}

zero_status_t zero_rdv_create(const zero_comm_env_t *env, double timeout_s, double conn_timeout_s, const void *blob,
                              uint32_t blob_len, zero_rdv_extra_fn extra_fn, void *extra_arg, zero_rdv_t **rdv_p)
{
    zero_status_t status = ZERO_OK;
    double deadline = zero_clock_now() + timeout_s;
    zero_rdv_t *rdv;

    if (env == NULL || blob == NULL || rdv_p == NULL || blob_len == 0 || blob_len > ZERO_RDV_MAX_BLOB ||
        env->size < 2 || env->size > ZERO_RDV_MAX_WORLD || !(conn_timeout_s > 0))
        return ZERO_ERR_INVALID_ARG;
    rdv = zero_calloc(1, sizeof(*rdv));
    if (rdv == NULL)
        return ZERO_ERR_NO_MEMORY;
    rdv->rank = env->rank;
    rdv->size = env->size;
    rdv->failed_rank = -1;
    rdv->failed_status = ZERO_ERR_COMM;
    rdv->nlinks = env->rank == 0 ? env->size : 1;
    rdv->blobs = zero_calloc((size_t)env->size, sizeof(*rdv->blobs));
    rdv->blob_lens = zero_calloc((size_t)env->size, sizeof(*rdv->blob_lens));
    rdv->links = zero_calloc((size_t)rdv->nlinks, sizeof(*rdv->links));
    ZERO_REQUIRE_GOTO(rdv->blobs && rdv->blob_lens && rdv->links, ZERO_ERR_NO_MEMORY, status, fail,
                      "rendezvous: out of memory for %d ranks", env->size);
    for (int i = 0; i < rdv->nlinks; i++)
        rdv->links[i].fd = -1;

    if (env->rank == 0) {
        rdv->blobs[0] = zero_malloc(blob_len);
        ZERO_REQUIRE_GOTO(rdv->blobs[0] != NULL, ZERO_ERR_NO_MEMORY, status, fail, "rendezvous: out of memory");
        memcpy(rdv->blobs[0], blob, blob_len);
        rdv->blob_lens[0] = blob_len;
        ZERO_CHECK_GOTO(serve(rdv, env, deadline, conn_timeout_s, extra_fn, extra_arg), status, fail);
    } else {
        ZERO_CHECK_GOTO(join(rdv, env, deadline, conn_timeout_s, blob, blob_len), status, fail);
    }
    *rdv_p = rdv;
    return ZERO_OK;

fail:
    zero_rdv_destroy(rdv);
    return status;
}

void zero_rdv_destroy(zero_rdv_t *rdv)
{
    if (rdv == NULL)
        return;
    for (int i = 0; i < rdv->nlinks && rdv->links; i++)
        if (rdv->links[i].fd >= 0)
            close(rdv->links[i].fd);
    for (int r = 0; r < rdv->size && rdv->blobs; r++)
        zero_free(rdv->blobs[r]);
    zero_free(rdv->blobs);
    zero_free(rdv->blob_lens);
    zero_free(rdv->links);
    zero_free(rdv);
}

const unsigned char *zero_rdv_blob(const zero_rdv_t *rdv, int rank, uint32_t *len_p)
{
    *len_p = rdv->blob_lens[rank];
    return rdv->blobs[rank];
}

const unsigned char *zero_rdv_extra(const zero_rdv_t *rdv, uint32_t *len_p)
{
    *len_p = rdv->extra_len;
    return rdv->extra;
}

int zero_rdv_pollfds(const zero_rdv_t *rdv, struct pollfd *fds, int max)
{
    int n = 0;
    for (int i = 0; i < rdv->nlinks && n < max; i++)
        if (rdv->links[i].fd >= 0)
            fds[n++] = (struct pollfd){rdv->links[i].fd, POLLIN, 0};
    return n;
}

static void send_frame(int fd, zero_rdv_frame_type_t type, uint32_t arg, uint32_t arg2, uint32_t arg3)
{
    unsigned char f[ZERO_RDV_FRAME_BYTES];
    zero_rdv_frame_write(f, type, arg, arg2, arg3);
    /* Small and rare: the socket buffer takes it; a dead peer's EPIPE is ignored. */
    (void)!send(fd, f, sizeof(f), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Peer rank behind link @p i. */
static int link_rank(const zero_rdv_t *rdv, int i)
{
    return rdv->rank == 0 ? i : 0;
}

static zero_status_t status_of_wire(uint32_t v)
{
    int32_t s = (int32_t)v;
    return s < 0 && s >= ZERO_ERR_INTERNAL ? (zero_status_t)s : ZERO_ERR_COMM;
}

/* Records the first failure, seen by rank @p reporter; rank 0 relays it to
 * every other rank (the failed one too: it may be alive, e.g. after a
 * protocol error). @p why NULL: already logged by whoever detected it. */
static void mark_failed(zero_rdv_t *rdv, int failed, zero_status_t status, int reporter, const char *why)
{
    if (rdv->failed_rank >= 0)
        return;
    rdv->failed_rank = failed;
    rdv->failed_status = status;
    if (why != NULL)
        ZERO_LOG_ERROR("rank %d %s", failed, why);
    if (rdv->rank == 0) {
        for (int r = 1; r < rdv->nlinks; r++)
            if (rdv->links[r].fd >= 0 && r != reporter)
                send_frame(rdv->links[r].fd, ZERO_RDV_FRAME_ABORT, (uint32_t)failed, (uint32_t)(int32_t)status,
                           (uint32_t)reporter);
    }
}

/* Reads frames on link @p i. Returns 0, or -1 when the link closed or misbehaved (handled). */
static int link_read(zero_rdv_t *rdv, int i)
{
    peer_link_t *l = &rdv->links[i];
    int peer = link_rank(rdv, i);
    for (;;) {
        ssize_t k = recv(l->fd, l->frame + l->have, ZERO_RDV_FRAME_BYTES - l->have, MSG_DONTWAIT);
        zero_rdv_frame_t f;
        zero_rdv_parse_t v;
        size_t need;
        uint32_t arg, arg2, arg3;
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            close(l->fd);
            l->fd = -1;
            if (!l->said_bye && !rdv->acked)
                mark_failed(rdv, peer, ZERO_ERR_COMM, rdv->rank,
                            rdv->rank == 0 ? "died or closed its connection to rank 0"
                                           : "(the rendezvous server) died or closed its connection");
            return -1;
        }
        if (k < 0)
            return 0;
        l->have += (size_t)k;
        v = zero_rdv_frame_parse(l->frame, l->have, &f, &need);
        if (v == ZERO_RDV_PARSE_MORE)
            continue;
        l->have = 0;
        if (v != ZERO_RDV_PARSE_OK) {
            close(l->fd);
            l->fd = -1;
            mark_failed(rdv, peer, ZERO_ERR_PROTOCOL, rdv->rank,
                        v == ZERO_RDV_PARSE_TYPE ? "sent an unknown control frame" : "sent a malformed control frame");
            return -1;
        }
        arg = f.arg;
        arg2 = f.arg2;
        arg3 = f.arg3;
        switch (f.type) {
        case ZERO_RDV_FRAME_BYE:
            l->said_bye = 1;
            break;
        case ZERO_RDV_FRAME_BYE_ACK:
            rdv->acked = 1;
            break;
        case ZERO_RDV_FRAME_ABORT:
            if (rdv->rank != 0 && arg < (uint32_t)rdv->size && rdv->failed_rank < 0) {
                rdv->failed_status = status_of_wire(arg2);
                if (arg == (uint32_t)rdv->rank) {
                    /* we are alive: name the rank that had trouble with us */
                    rdv->failed_rank = arg3 < (uint32_t)rdv->size ? (int)arg3 : 0;
                    ZERO_LOG_ERROR("rank %d reported a failed collective with this rank: %s", rdv->failed_rank,
                                   zero_status_string(rdv->failed_status));
                } else {
                    rdv->failed_rank = (int)arg;
                    if (arg3 == 0)
                        ZERO_LOG_ERROR("rank %u died or failed: %s (reported by rank 0)", arg,
                                       zero_status_string(rdv->failed_status));
                    else
                        ZERO_LOG_ERROR("rank %u failed: %s (reported by rank %u, relayed by rank 0)", arg,
                                       zero_status_string(rdv->failed_status), arg3);
                }
            }
            break;
        case ZERO_RDV_FRAME_FAILED:
            if (rdv->rank == 0 && arg < (uint32_t)rdv->size && rdv->failed_rank < 0) {
                char why[160];
                snprintf(why, sizeof(why), "failed: %s (reported by rank %d)", zero_status_string(status_of_wire(arg2)),
                         peer);
                mark_failed(rdv, (int)arg, status_of_wire(arg2), peer, why);
            }
            break;
        default:
            break;      /* zero_rdv_frame_parse admits only the types above */
        }
    }
}

zero_status_t zero_rdv_check(zero_rdv_t *rdv, int *failed_rank_p)
{
    for (int i = 0; i < rdv->nlinks; i++)
        if (rdv->links[i].fd >= 0)
            link_read(rdv, i);
    if (rdv->failed_rank >= 0) {
        *failed_rank_p = rdv->failed_rank;
        return rdv->failed_status;
    }
    return ZERO_OK;
}

void zero_rdv_report(zero_rdv_t *rdv, int failed_rank, zero_status_t status)
{
    if (rdv->failed_rank >= 0)
        return;
    if (rdv->rank == 0) {
        mark_failed(rdv, failed_rank, status, 0, NULL);
    } else {
        rdv->failed_rank = failed_rank;
        rdv->failed_status = status;
        if (rdv->links[0].fd >= 0)
            send_frame(rdv->links[0].fd, ZERO_RDV_FRAME_FAILED, (uint32_t)failed_rank, (uint32_t)(int32_t)status,
                       (uint32_t)rdv->rank);
    }
}

zero_status_t zero_rdv_shutdown(zero_rdv_t *rdv, double timeout_s, void (*progress)(void *), void *progress_arg)
{
    double deadline = zero_clock_now() + timeout_s;
    int failed;
    if (rdv->rank != 0 && rdv->links[0].fd >= 0)
        send_frame(rdv->links[0].fd, ZERO_RDV_FRAME_BYE, 0, 0, 0);
    for (;;) {
        struct pollfd fds[64];
        int done = 1, n;
        if (zero_rdv_check(rdv, &failed) != ZERO_OK)
            return ZERO_ERR_COMM;
        if (rdv->rank == 0) {
            for (int r = 1; r < rdv->nlinks; r++)
                if (rdv->links[r].fd >= 0 && !rdv->links[r].said_bye)
                    done = 0;
        } else {
            done = rdv->acked || rdv->links[0].fd < 0;
        }
        if (done)
            break;
        if (zero_clock_now() > deadline) {
            ZERO_LOG_WARN("shutdown: not every rank said goodbye within %.1f s", timeout_s);
            return ZERO_ERR_TIMEOUT;
        }
        if (progress != NULL)
            progress(progress_arg);
        n = zero_rdv_pollfds(rdv, fds, 64);
        poll(fds, (nfds_t)n, progress != NULL ? 0 : 100);
    }
    if (rdv->rank == 0)
        for (int r = 1; r < rdv->nlinks; r++)
            if (rdv->links[r].fd >= 0)
                send_frame(rdv->links[r].fd, ZERO_RDV_FRAME_BYE_ACK, 0, 0, 0);
    return ZERO_OK;
}
