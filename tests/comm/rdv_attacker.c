/* The hostile client population of the rendezvous tests (see rdv_attacker.h). */
#include "rdv_attacker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { KIND_IDLE, KIND_SLOW, KIND_GARBAGE, KIND_WRONG_TOKEN };

static double atk_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t atk_rand(attacker_t *a)
{
    a->rng ^= a->rng << 13;
    a->rng ^= a->rng >> 7;
    a->rng ^= a->rng << 17;
    return (uint32_t)(a->rng >> 32);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* What a connection of its kind sends: a hello of the real protocol (rank 1
 * of a world of 3, a 100-byte record) with a random token, or random bytes. */
static void make_message(attacker_t *a, atk_conn_t *c)
{
    memset(c->msg, 0, sizeof(c->msg));
    c->sent = 0;
    if (c->kind == KIND_GARBAGE) {
        c->msg_len = 16 + atk_rand(a) % (sizeof(c->msg) - 16);
        for (size_t i = 0; i < c->msg_len; i++)
            c->msg[i] = (unsigned char)atk_rand(a);
        return;
    }
    memcpy(c->msg, "ZERO-RDV", 8);
    put_be32(c->msg + 8, 1);
    put_be32(c->msg + 12, 1);
    put_be32(c->msg + 16, 3);
    put_be32(c->msg + 20, 100);
    for (int i = 0; i < 16; i++)
        c->msg[24 + i] = (unsigned char)atk_rand(a);
    for (size_t i = 64; i < sizeof(c->msg); i++)
        c->msg[i] = (unsigned char)atk_rand(a);
    c->msg_len = c->kind == KIND_IDLE ? 0 : sizeof(c->msg);
}

static void conn_closed(atk_conn_t *c, double now)
{
    close(c->fd);
    c->fd = -1;
    c->connecting = 0;
    c->reopen_at = now + ATK_REOPEN_S;
}

/* Starts a non-blocking connect. Returns 0, or -1 when nothing listens yet. */
static int conn_open(attacker_t *a, atk_conn_t *c, double now)
{
    struct sockaddr_in addr;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->reopen_at = now + ATK_REOPEN_S;
        return 0;
    }
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)a->port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 && errno != EINPROGRESS) {
        int refused = errno == ECONNREFUSED;
        close(fd);
        c->reopen_at = now + (refused ? 0.002 : ATK_REOPEN_S);
        return refused ? -1 : 0;
    }
    c->fd = fd;
    c->connecting = 1;
    make_message(a, c);
    return 0;
}

static void conn_connected(attacker_t *a, atk_conn_t *c, double now)
{
    long k = atomic_fetch_add(&a->opened, 1);
    c->connecting = 0;
    if (k < ATK_MAX_OPENS)
        a->open_times[k] = now;
    if (!c->ever_connected) {
        c->ever_connected = 1;
        atomic_fetch_add(&a->connected_once, 1);
    }
    c->next_byte_at = now;
    if (c->kind == KIND_GARBAGE || c->kind == KIND_WRONG_TOKEN) {
        ssize_t s = send(c->fd, c->msg, c->msg_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        c->sent = s > 0 ? (size_t)s : 0;
    }
}

static void conn_readable(attacker_t *a, atk_conn_t *c, double now)
{
    unsigned char buf[256];
    for (;;) {
        ssize_t k = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (k > 0) {
            /* a refusal: ZERO-RPL, code 1 (token mismatch) in bytes 20-23 */
            if (k >= 24 && memcmp(buf, "ZERO-RPL", 8) == 0 && buf[23] == 1 && buf[20] == 0)
                atomic_fetch_add(&a->refusals, 1);
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        atomic_fetch_add(&a->closed_by_server, 1);
        conn_closed(c, now);
        return;
    }
}

static void *attacker_main(void *arg)
{
    attacker_t *a = arg;
    struct pollfd pfds[ATK_TOTAL];
    int who[ATK_TOTAL];
    while (!atomic_load(&a->stop)) {
        double now = atk_now();
        int n = 0, refused = 0;
        for (int i = 0; i < ATK_TOTAL && !refused; i++) {
            atk_conn_t *c = &a->conns[i];
            if (c->fd < 0 && now >= c->reopen_at && conn_open(a, c, now) != 0)
                refused = 1;    /* nothing listens yet: try again shortly */
        }
        for (int i = 0; i < ATK_TOTAL; i++) {
            atk_conn_t *c = &a->conns[i];
            if (c->fd < 0)
                continue;
            if (!c->connecting && c->kind == KIND_SLOW && c->sent < c->msg_len && now >= c->next_byte_at) {
                if (send(c->fd, c->msg + c->sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
                    c->sent++;
                c->next_byte_at = now + 1.0;
            }
            who[n] = i;
            pfds[n++] = (struct pollfd){c->fd, (short)(c->connecting ? POLLOUT : POLLIN), 0};
        }
        if (poll(pfds, (nfds_t)n, refused ? 2 : 10) <= 0)
            continue;
        now = atk_now();
        for (int i = 0; i < n; i++) {
            atk_conn_t *c = &a->conns[who[i]];
            if (pfds[i].revents == 0)
                continue;
            if (c->connecting) {
                int err = 0;
                socklen_t sl = sizeof(err);
                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0 || err != 0)
                    conn_closed(c, now);
                else
                    conn_connected(a, c, now);
            } else {
                conn_readable(a, c, now);
            }
        }
    }
    return NULL;
}

int attacker_start(attacker_t *a, int port)
{
    memset(a, 0, sizeof(*a));
    a->port = port;
    a->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)port;
    a->open_times = calloc(ATK_MAX_OPENS, sizeof(double));
    if (a->open_times == NULL)
        return -1;
    for (int i = 0; i < ATK_TOTAL; i++) {
        a->conns[i].fd = -1;
        a->conns[i].kind = i < ATK_IDLE ? KIND_IDLE
                           : i < ATK_IDLE + ATK_SLOW ? KIND_SLOW
                           : i < ATK_IDLE + ATK_SLOW + ATK_GARBAGE ? KIND_GARBAGE : KIND_WRONG_TOKEN;
    }
    if (pthread_create(&a->thread, NULL, attacker_main, a) != 0) {
        free(a->open_times);
        a->open_times = NULL;
        return -1;
    }
    a->started = 1;
    return 0;
}

void attacker_stop(attacker_t *a)
{
    if (a->started) {
        atomic_store(&a->stop, 1);
        pthread_join(a->thread, NULL);
        a->started = 0;
    }
    for (int i = 0; i < ATK_TOTAL; i++)
        if (a->conns[i].fd >= 0) {
            close(a->conns[i].fd);
            a->conns[i].fd = -1;
        }
    free(a->open_times);
    a->open_times = NULL;
}

long attacker_opened_between(const attacker_t *a, double from, double to)
{
    long n = atomic_load(&((attacker_t *)a)->opened), count = 0;
    if (n > ATK_MAX_OPENS)
        n = ATK_MAX_OPENS;
    for (long i = 0; i < n; i++)
        if (a->open_times[i] >= from && a->open_times[i] <= to)
            count++;
    return count;
}
