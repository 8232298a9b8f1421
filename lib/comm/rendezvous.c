#define ZERO_LOG_MODULE "comm"
#include "comm/rendezvous.h"
#include "util/alloc.h"
#include "util/checks.h"
#include "util/clock.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HELLO_MAGIC "ZERO-RDV"
#define REPLY_MAGIC "ZERO-RPL"
#define RDV_VERSION 1u
#define FRAME_MAGIC 0x5a46524du    /* "ZFRM" */
#define FRAME_BYTES 20

/* Control frames: magic, type, arg, arg2, arg3 (big-endian u32 each).
 * BYE: a rank is done; BYE_ACK: rank 0 saw every goodbye; ABORT: rank 0 tells
 * everyone that rank <arg> failed with status <arg2>, as seen by rank <arg3>;
 * FAILED: a rank tells rank 0 that its collective failed because of rank
 * <arg>, status <arg2>. */
enum frame_type { FRAME_BYE = 1, FRAME_BYE_ACK = 2, FRAME_ABORT = 3, FRAME_FAILED = 4 };

typedef struct peer_link {
    int fd;                         /* -1 once closed */
    int said_bye;
    unsigned char frame[FRAME_BYTES];
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

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Constant-time comparison: the time taken does not depend on where a guess differs. */
static int token_equal(const unsigned char *a, const unsigned char *b)
{
    unsigned char diff = 0;
    for (int i = 0; i < ZERO_COMM_TOKEN_BYTES; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

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

/* Moves exactly @p n bytes (fd non-blocking) before @p deadline. Returns 0, or
 * -1 with errno (ETIMEDOUT on deadline, EPIPE on a closed peer). */
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
            double left = deadline - zero_clock_now();
            if (left <= 0) {
                errno = ETIMEDOUT;
                return -1;
            }
            poll(&p, 1, left > 1.0 ? 1000 : (int)(left * 1000) + 1);
            continue;
        }
        return -1;
    }
    return 0;
}

/* ---- rank 0: the server ---- */

typedef struct pending_conn {
    int fd;
    char peer[64];
    unsigned char hello[ZERO_RDV_HELLO_BYTES];
    size_t have;            /* bytes of hello, then of blob */
    int rank;               /* -1 until the hello is accepted */
    uint32_t blob_len;
    unsigned char *blob;
} pending_conn_t;

static void pending_drop(pending_conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    zero_free(c->blob);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

/* Validates a complete hello. Returns 0 or -1 (refused: logged with the peer). */
static int hello_check(zero_rdv_t *rdv, const zero_comm_env_t *env, pending_conn_t *c)
{
    const unsigned char *h = c->hello;
    uint32_t version = get_u32(h + 8), rank = get_u32(h + 12), world = get_u32(h + 16), len = get_u32(h + 20);
    if (memcmp(h, HELLO_MAGIC, 8) != 0) {
        ZERO_LOG_WARN("rendezvous: refused connection from %s: not a libzero rendezvous hello", c->peer);
        return -1;
    }
    if (!token_equal(h + 24, env->token)) {
        ZERO_LOG_WARN("rendezvous: refused connection from %s: wrong job token", c->peer);
        return -1;
    }
    if (version != RDV_VERSION) {
        ZERO_LOG_WARN("rendezvous: refused connection from %s: protocol version %u, expected %u", c->peer,
                      version, RDV_VERSION);
        return -1;
    }
    if (world != (uint32_t)rdv->size || rank == 0 || rank >= (uint32_t)rdv->size) {
        ZERO_LOG_WARN("rendezvous: refused connection from %s: rank %u of world %u does not fit this job "
                      "(world %d)", c->peer, rank, world, rdv->size);
        return -1;
    }
    if (rdv->blobs[rank] != NULL) {
        ZERO_LOG_WARN("rendezvous: refused connection from %s: rank %u has already joined", c->peer, rank);
        return -1;
    }
    if (len == 0 || len > ZERO_RDV_MAX_BLOB) {
        ZERO_LOG_WARN("rendezvous: refused connection from %s (rank %u): blob length %u outside [1, %u]",
                      c->peer, rank, len, ZERO_RDV_MAX_BLOB);
        return -1;
    }
    c->blob = zero_malloc(len);
    if (c->blob == NULL) {
        ZERO_LOG_WARN("rendezvous: dropped connection from %s: out of memory", c->peer);
        return -1;
    }
    c->rank = (int)rank;
    c->blob_len = len;
    c->have = 0;
    return 0;
}

/* Reads what is available on a pending connection. Returns 1 when it is
 * complete (hello and blob), 0 to wait, -1 when it must be dropped. */
static int pending_read(zero_rdv_t *rdv, const zero_comm_env_t *env, pending_conn_t *c)
{
    for (;;) {
        unsigned char *dst;
        size_t want;
        ssize_t k;
        if (c->rank < 0) {
            dst = c->hello + c->have;
            want = ZERO_RDV_HELLO_BYTES - c->have;
        } else {
            dst = c->blob + c->have;
            want = c->blob_len - c->have;
        }
        k = recv(c->fd, dst, want, 0);
        if (k == 0) {
            ZERO_LOG_WARN("rendezvous: connection from %s closed before its %s was complete", c->peer,
                          c->rank < 0 ? "hello" : "address");
            return -1;
        }
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            ZERO_LOG_WARN("rendezvous: connection from %s failed: %s", c->peer, strerror(errno));
            return -1;
        }
        c->have += (size_t)k;
        if (c->rank < 0 && c->have == ZERO_RDV_HELLO_BYTES) {
            if (hello_check(rdv, env, c) != 0)
                return -1;
        } else if (c->rank >= 0 && c->have == c->blob_len) {
            return 1;
        }
    }
}

static zero_status_t serve(zero_rdv_t *rdv, const zero_comm_env_t *env, double deadline,
                           zero_rdv_extra_fn extra_fn, void *extra_arg)
{
    zero_status_t status = ZERO_OK;
    pending_conn_t pend[ZERO_RDV_MAX_PENDING];
    struct pollfd pfds[ZERO_RDV_MAX_PENDING + 1];
    int lfd = -1, joined = 1, one = 1, npend = 0;
    unsigned char *reply = NULL;
    size_t reply_len;

    for (int i = 0; i < ZERO_RDV_MAX_PENDING; i++) {
        memset(&pend[i], 0, sizeof(pend[i]));
        pend[i].fd = -1;
    }
    /* All interfaces, IPv6 and IPv4 at once where the host has IPv6: MASTER_ADDR
     * may name this host by an address other ranks reach but that a bind to
     * the name would miss (a host name mapped to 127.0.1.1, say). Every
     * connection still has to present the job token. */
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
        if (bind(lfd, (struct sockaddr *)&a6, sizeof(a6)) != 0 || listen(lfd, 128) != 0) {
            close(lfd);
            lfd = -1;
        }
    }
    if (lfd < 0) {
        struct sockaddr_in a4;
        memset(&a4, 0, sizeof(a4));
        a4.sin_family = AF_INET;
        a4.sin_addr.s_addr = htonl(INADDR_ANY);
        a4.sin_port = htons((uint16_t)env->master_port);
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ZERO_ERRNO_CHECK_GOTO(lfd >= 0, status, out, "rendezvous: %s", "socket");
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(lfd, (struct sockaddr *)&a4, sizeof(a4)) != 0 || listen(lfd, 128) != 0) {
            int err = errno;
            close(lfd);
            lfd = -1;
            errno = err;
        }
    }
    ZERO_ERRNO_CHECK_GOTO(lfd >= 0, status, out, "rendezvous: cannot listen on port %d (MASTER_PORT)",
                          env->master_port);
    set_nonblocking(lfd);
    ZERO_LOG_DEBUG("rendezvous: rank 0 serving on %s:%d for %d ranks", env->master_addr, env->master_port,
                   rdv->size);

    while (joined < rdv->size) {
        double left = deadline - zero_clock_now();
        int n = 0;
        if (left <= 0) {
            int missing = -1;
            for (int r = 1; r < rdv->size && missing < 0; r++)
                if (rdv->blobs[r] == NULL)
                    missing = r;
            ZERO_LOG_ERROR("rendezvous: %d of %d ranks joined within the rendezvous timeout (rank %d missing; "
                           "raise ZERO_RENDEZVOUS_TIMEOUT?)", joined, rdv->size, missing);
            status = ZERO_ERR_TIMEOUT;
            goto out;
        }
        pfds[n++] = (struct pollfd){lfd, POLLIN, 0};
        for (int i = 0; i < ZERO_RDV_MAX_PENDING; i++)
            if (pend[i].fd >= 0)
                pfds[n++] = (struct pollfd){pend[i].fd, POLLIN, 0};
        if (poll(pfds, (nfds_t)n, left > 1.0 ? 1000 : (int)(left * 1000) + 1) < 0 && errno != EINTR) {
            ZERO_ERRNO_CHECK_GOTO(0, status, out, "rendezvous: %s", "poll");
        }
        if (pfds[0].revents & POLLIN) {
            struct sockaddr_storage sa;
            socklen_t slen = sizeof(sa);
            int fd = accept4(lfd, (struct sockaddr *)&sa, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                int slot = -1;
                for (int i = 0; i < ZERO_RDV_MAX_PENDING && slot < 0; i++)
                    if (pend[i].fd < 0)
                        slot = i;
                if (slot < 0) {
                    char peer[64];
                    describe_peer(&sa, peer, sizeof(peer));
                    ZERO_LOG_WARN("rendezvous: refused connection from %s: %d connections already pending",
                                  peer, ZERO_RDV_MAX_PENDING);
                    close(fd);
                } else {
                    memset(&pend[slot], 0, sizeof(pend[slot]));
                    pend[slot].fd = fd;
                    pend[slot].rank = -1;
                    describe_peer(&sa, pend[slot].peer, sizeof(pend[slot].peer));
                    npend++;
                }
            }
        }
        for (int i = 0; i < ZERO_RDV_MAX_PENDING; i++) {
            int rc;
            if (pend[i].fd < 0)
                continue;
            rc = pending_read(rdv, env, &pend[i]);
            if (rc < 0) {
                pending_drop(&pend[i]);
                npend--;
            } else if (rc == 1) {
                int r = pend[i].rank;
                if (rdv->blobs[r] != NULL) {   /* raced with another claim of the same rank */
                    ZERO_LOG_WARN("rendezvous: refused connection from %s: rank %d has already joined",
                                  pend[i].peer, r);
                    pending_drop(&pend[i]);
                    npend--;
                    continue;
                }
                rdv->blobs[r] = pend[i].blob;
                rdv->blob_lens[r] = pend[i].blob_len;
                rdv->links[r].fd = pend[i].fd;
                ZERO_LOG_DEBUG("rendezvous: rank %d joined from %s", r, pend[i].peer);
                pend[i].blob = NULL;
                pend[i].fd = -1;
                npend--;
                joined++;
            }
        }
    }

    if (extra_fn != NULL)
        ZERO_CHECK_GOTO(extra_fn(extra_arg, rdv->size, (const unsigned char *const *)rdv->blobs, rdv->blob_lens,
                                 rdv->extra, &rdv->extra_len), status, out);

    /* Reply: header, lengths, blobs, extra bytes. */
    reply_len = ZERO_RDV_HELLO_BYTES + 4 * (size_t)rdv->size + rdv->extra_len;
    for (int r = 0; r < rdv->size; r++)
        reply_len += rdv->blob_lens[r];
    reply = zero_malloc(reply_len);
    ZERO_REQUIRE_GOTO(reply != NULL, ZERO_ERR_NO_MEMORY, status, out, "rendezvous: out of memory for the reply");
    {
        unsigned char *p = reply;
        memset(p, 0, ZERO_RDV_HELLO_BYTES);
        memcpy(p, REPLY_MAGIC, 8);
        put_u32(p + 8, RDV_VERSION);
        put_u32(p + 12, (uint32_t)rdv->size);
        put_u32(p + 16, rdv->extra_len);
        memcpy(p + 24, env->token, ZERO_COMM_TOKEN_BYTES);
        p += ZERO_RDV_HELLO_BYTES;
        for (int r = 0; r < rdv->size; r++, p += 4)
            put_u32(p, rdv->blob_lens[r]);
        for (int r = 0; r < rdv->size; r++) {
            memcpy(p, rdv->blobs[r], rdv->blob_lens[r]);
            p += rdv->blob_lens[r];
        }
        memcpy(p, rdv->extra, rdv->extra_len);
    }
    for (int r = 1; r < rdv->size; r++) {
        if (io_all(rdv->links[r].fd, reply, reply_len, 1, deadline) != 0) {
            ZERO_LOG_ERROR("rendezvous: cannot send the job's addresses to rank %d: %s", r, strerror(errno));
            status = errno == ETIMEDOUT ? ZERO_ERR_TIMEOUT : ZERO_ERR_COMM;
            goto out;
        }
        tune_socket(rdv->links[r].fd);
    }

out:
    zero_free(reply);
    for (int i = 0; i < ZERO_RDV_MAX_PENDING; i++)
        if (pend[i].fd >= 0)
            pending_drop(&pend[i]);
    (void)npend;
    if (lfd >= 0)
        close(lfd);
    return status;
}

/* ---- other ranks: the client ---- */

static int try_connect(const zero_comm_env_t *env, double deadline)
{
    struct addrinfo *res = NULL;
    int fd = -1;
    struct addrinfo hints;
    char port[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", env->master_port);
    if (getaddrinfo(env->master_addr, port, &hints, &res) != 0)
        return -1;      /* the name may not resolve yet: retried */
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            int err = errno, soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (err == EINPROGRESS) {
                struct pollfd p = {fd, POLLOUT, 0};
                double left = deadline - zero_clock_now();
                int ms = left > 5.0 ? 5000 : (left > 0 ? (int)(left * 1000) + 1 : 0);
                if (poll(&p, 1, ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
                    soerr == 0)
                    continue;   /* connected */
            }
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static zero_status_t join(zero_rdv_t *rdv, const zero_comm_env_t *env, double deadline, const void *blob,
                          uint32_t blob_len)
{
    zero_status_t status = ZERO_OK;
    unsigned char hello[ZERO_RDV_HELLO_BYTES], head[ZERO_RDV_HELLO_BYTES];
    double backoff = 0.01;
    int fd = -1, tries = 0;
    uint32_t *lens = NULL;

    while ((fd = try_connect(env, deadline)) < 0) {
        double left = deadline - zero_clock_now();
        tries++;
        if (left <= 0) {
            ZERO_LOG_ERROR("rendezvous: cannot reach rank 0 at %s:%d after %d attempts within the rendezvous "
                           "timeout (is rank 0 running? MASTER_ADDR/MASTER_PORT right?)", env->master_addr,
                           env->master_port, tries);
            return ZERO_ERR_TIMEOUT;
        }
        zero_clock_sleep(backoff < left ? backoff : left);
        backoff = backoff * 2 > 1.0 ? 1.0 : backoff * 2;
    }
    rdv->links[0].fd = fd;

    memset(hello, 0, sizeof(hello));
    memcpy(hello, HELLO_MAGIC, 8);
    put_u32(hello + 8, RDV_VERSION);
    put_u32(hello + 12, (uint32_t)rdv->rank);
    put_u32(hello + 16, (uint32_t)rdv->size);
    put_u32(hello + 20, blob_len);
    memcpy(hello + 24, env->token, ZERO_COMM_TOKEN_BYTES);
    if (io_all(fd, hello, sizeof(hello), 1, deadline) != 0 || io_all(fd, (void *)blob, blob_len, 1, deadline) != 0)
        goto io_error;
    if (io_all(fd, head, sizeof(head), 0, deadline) != 0)
        goto io_error;
    if (memcmp(head, REPLY_MAGIC, 8) != 0 || get_u32(head + 8) != RDV_VERSION ||
        !token_equal(head + 24, env->token) || get_u32(head + 12) != (uint32_t)rdv->size ||
        get_u32(head + 16) > ZERO_RDV_MAX_EXTRA) {
        ZERO_LOG_ERROR("rendezvous: rank 0 at %s:%d sent a malformed or foreign reply (other job? other world "
                       "size?)", env->master_addr, env->master_port);
        return ZERO_ERR_PROTOCOL;
    }
    rdv->extra_len = get_u32(head + 16);
    lens = zero_malloc(4 * (size_t)rdv->size);
    ZERO_REQUIRE_GOTO(lens != NULL, ZERO_ERR_NO_MEMORY, status, out, "rendezvous: out of memory");
    if (io_all(fd, lens, 4 * (size_t)rdv->size, 0, deadline) != 0)
        goto io_error;
    for (int r = 0; r < rdv->size; r++) {
        uint32_t len = get_u32((unsigned char *)&lens[r]);
        if (len == 0 || len > ZERO_RDV_MAX_BLOB) {
            ZERO_LOG_ERROR("rendezvous: rank 0 at %s:%d sent a blob length %u for rank %d outside [1, %u]",
                           env->master_addr, env->master_port, len, r, ZERO_RDV_MAX_BLOB);
            status = ZERO_ERR_PROTOCOL;
            goto out;
        }
        rdv->blob_lens[r] = len;
    }
    for (int r = 0; r < rdv->size; r++) {
        rdv->blobs[r] = zero_malloc(rdv->blob_lens[r]);
        ZERO_REQUIRE_GOTO(rdv->blobs[r] != NULL, ZERO_ERR_NO_MEMORY, status, out, "rendezvous: out of memory");
        if (io_all(fd, rdv->blobs[r], rdv->blob_lens[r], 0, deadline) != 0)
            goto io_error;
    }
    if (io_all(fd, rdv->extra, rdv->extra_len, 0, deadline) != 0)
        goto io_error;
    tune_socket(fd);
    goto out;

io_error:
    if (errno == ETIMEDOUT) {
        ZERO_LOG_ERROR("rendezvous: rank 0 at %s:%d did not complete the rendezvous within its timeout",
                       env->master_addr, env->master_port);
        status = ZERO_ERR_TIMEOUT;
    } else {
        ZERO_LOG_ERROR("rendezvous: connection to rank 0 at %s:%d failed: %s (rank 0 refuses a wrong "
                       "ZERO_JOB_TOKEN or world size)", env->master_addr, env->master_port,
                       errno == EPIPE ? "closed by rank 0" : strerror(errno));
        status = ZERO_ERR_COMM;
    }
out:
    zero_free(lens);
    return status;
}

zero_status_t zero_rdv_create(const zero_comm_env_t *env, double timeout_s, const void *blob, uint32_t blob_len,
                              zero_rdv_extra_fn extra_fn, void *extra_arg, zero_rdv_t **rdv_p)
{
    zero_status_t status = ZERO_OK;
    double deadline = zero_clock_now() + timeout_s;
    zero_rdv_t *rdv;

    if (env == NULL || blob == NULL || rdv_p == NULL || blob_len == 0 || blob_len > ZERO_RDV_MAX_BLOB ||
        env->size < 2)
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
        ZERO_CHECK_GOTO(serve(rdv, env, deadline, extra_fn, extra_arg), status, fail);
    } else {
        ZERO_CHECK_GOTO(join(rdv, env, deadline, blob, blob_len), status, fail);
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

static void send_frame(int fd, uint32_t type, uint32_t arg, uint32_t arg2, uint32_t arg3)
{
    unsigned char f[FRAME_BYTES] = {0};
    put_u32(f, FRAME_MAGIC);
    put_u32(f + 4, type);
    put_u32(f + 8, arg);
    put_u32(f + 12, arg2);
    put_u32(f + 16, arg3);
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
                send_frame(rdv->links[r].fd, FRAME_ABORT, (uint32_t)failed, (uint32_t)(int32_t)status,
                           (uint32_t)reporter);
    }
}

/* Reads frames on link @p i. Returns 0, or -1 when the link closed or misbehaved (handled). */
static int link_read(zero_rdv_t *rdv, int i)
{
    peer_link_t *l = &rdv->links[i];
    int peer = link_rank(rdv, i);
    for (;;) {
        ssize_t k = recv(l->fd, l->frame + l->have, FRAME_BYTES - l->have, MSG_DONTWAIT);
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
        if (l->have < FRAME_BYTES)
            continue;
        l->have = 0;
        if (get_u32(l->frame) != FRAME_MAGIC) {
            close(l->fd);
            l->fd = -1;
            mark_failed(rdv, peer, ZERO_ERR_PROTOCOL, rdv->rank, "sent a malformed control frame");
            return -1;
        }
        arg = get_u32(l->frame + 8);
        arg2 = get_u32(l->frame + 12);
        arg3 = get_u32(l->frame + 16);
        switch (get_u32(l->frame + 4)) {
        case FRAME_BYE:
            l->said_bye = 1;
            break;
        case FRAME_BYE_ACK:
            rdv->acked = 1;
            break;
        case FRAME_ABORT:
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
        case FRAME_FAILED:
            if (rdv->rank == 0 && arg < (uint32_t)rdv->size && rdv->failed_rank < 0) {
                char why[160];
                snprintf(why, sizeof(why), "failed: %s (reported by rank %d)", zero_status_string(status_of_wire(arg2)),
                         peer);
                mark_failed(rdv, (int)arg, status_of_wire(arg2), peer, why);
            }
            break;
        default:
            close(l->fd);
            l->fd = -1;
            mark_failed(rdv, peer, ZERO_ERR_PROTOCOL, rdv->rank, "sent an unknown control frame");
            return -1;
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
            send_frame(rdv->links[0].fd, FRAME_FAILED, (uint32_t)failed_rank, (uint32_t)(int32_t)status,
                       (uint32_t)rdv->rank);
    }
}

zero_status_t zero_rdv_shutdown(zero_rdv_t *rdv, double timeout_s, void (*progress)(void *), void *progress_arg)
{
    double deadline = zero_clock_now() + timeout_s;
    int failed;
    if (rdv->rank != 0 && rdv->links[0].fd >= 0)
        send_frame(rdv->links[0].fd, FRAME_BYE, 0, 0, 0);
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
                send_frame(rdv->links[r].fd, FRAME_BYE_ACK, 0, 0, 0);
    return ZERO_OK;
}
