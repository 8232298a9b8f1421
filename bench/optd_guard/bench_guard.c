/*
 * bench/run optd_guard: what the allow list in front of UCX's ports
 * (lib/offload/optd_guard.c) costs a TCP stream. A connection accepted from
 * a guarded listener keeps the listener's filter and runs it on every
 * packet it receives, so zero-optd's TCP clients' data passes through it.
 * One stream of --mib MiB (written --chunk bytes at a time, default 256 KiB;
 * below that with TCP_NODELAY, so that each write is a packet of its own)
 * over 127.0.0.1 into an accepted socket, three ways
 * alternated --reps times (the order rotating): no guard ("none"), a guard
 * allowing 127.0.0.1 alone ("one"), and one holding the list's bound, 63
 * other IPv4 addresses before 127.0.0.1, so every packet runs the longest
 * IPv4 path ("full"). Prints each run, each way's median, and last
 *   summary: guard_one_over_none=<r> guard_full_over_none=<s>
 * (throughput ratios; 1.0 is no cost). Over loopback the kernel hands TCP
 * 64 KiB packets; a NIC without receive offload hands it MTU-sized ones,
 * about 40 times as many filter runs per byte: --chunk 1448 gives packets
 * of that size here.
 */
#include "offload/optd_guard.h"

#include <zero/zero.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
#define WAYS 3

static const char *const way_name[WAYS] = {"none", "one", "full"};

typedef struct sender {
    int fd;
    size_t bytes;
    size_t chunk;   /* bytes per write */
} sender_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *send_all(void *arg)
{
    sender_t *s = arg;
    static char buf[CHUNK];
    for (size_t sent = 0; sent < s->bytes;) {
        size_t n = s->bytes - sent < s->chunk ? s->bytes - sent : s->chunk;
        ssize_t w = write(s->fd, buf, n);
        if (w <= 0)
            break;
        sent += (size_t)w;
    }
    return NULL;
}

static int allow_text(zero_optd_guard_t *g, const char *host)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, host, &a.sin_addr);
    return zero_optd_guard_allow(g, (struct sockaddr *)&a) == ZERO_OK ? 0 : -1;
}

/* One stream of @p bytes, written @p chunk at a time, into a socket
 * accepted from a listener guarded as @p way says; returns GB/s, or -1. */
static double one_run(int way, size_t bytes, size_t chunk)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    zero_optd_guard_t *g = NULL;
    static char buf[CHUNK];
    double gbs = -1.0;
    pthread_t thread;
    sender_t s = {.fd = -1, .bytes = bytes, .chunk = chunk};
    int one = 1;
    int rx = -1, lfd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 4) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &len) != 0)
        goto out;
    if (way > 0) {
        if (zero_optd_guard_create(NULL, 0, &g) != ZERO_OK)
            goto out;
        for (int i = 0; way == 2 && i < ZERO_OPTD_GUARD_MAX_PEERS - 1; i++) {
            char host[32];
            snprintf(host, sizeof(host), "10.255.%d.%d", i / 200, 1 + i % 200);
            if (allow_text(g, host) != 0)
                goto out;
        }
        if (allow_text(g, "127.0.0.1") != 0)   /* last: compared last */
            goto out;
    }
    s.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s.fd >= 0 && chunk < CHUNK)   /* each small write its own packet */
        setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (s.fd < 0 || connect(s.fd, (struct sockaddr *)&a, sizeof(a)) != 0 || (rx = accept(lfd, NULL, NULL)) < 0)
        goto out;
    double t0 = now();
    if (pthread_create(&thread, NULL, send_all, &s) != 0)
        goto out;
    size_t got = 0;
    for (ssize_t r; got < bytes && (r = read(rx, buf, CHUNK)) > 0;)
        got += (size_t)r;
    double t = now() - t0;
    pthread_join(thread, NULL);
    if (got == bytes)
        gbs = (double)bytes / t / 1e9;
out:
    if (rx >= 0)
        close(rx);
    if (s.fd >= 0)
        close(s.fd);
    zero_optd_guard_destroy(g);   /* the filter stays on the listener, closed next */
    if (lfd >= 0)
        close(lfd);
    return gbs;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    size_t mib = 1024, chunk = CHUNK;
    int reps = 9;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--mib") == 0)
            mib = (size_t)atol(argv[i + 1]);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--chunk") == 0)
            chunk = (size_t)atol(argv[i + 1]);
    }
    if (mib == 0 || reps < 1 || reps > 100 || chunk == 0 || chunk > CHUNK) {
        fprintf(stderr, "usage: bench_guard [--mib M] [--reps R (1-100)] [--chunk BYTES (1-%d)]\n", CHUNK);
        return 2;
    }
    double runs[WAYS][100], med[WAYS];
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < WAYS; k++) {
            int way = (r + k) % WAYS;
            runs[way][r] = one_run(way, mib << 20, chunk);
            if (runs[way][r] < 0) {
                fprintf(stderr, "bench_guard: run %d (%s) failed\n", r, way_name[way]);
                return 1;
            }
            printf("run %d %s: %.2f GB/s\n", r, way_name[way], runs[way][r]);
        }
    for (int w = 0; w < WAYS; w++) {
        qsort(runs[w], (size_t)reps, sizeof(double), cmp_double);
        med[w] = runs[w][reps / 2];
        printf("%s: median %.2f GB/s (%.2f-%.2f) over %d runs of %zu MiB in writes of %zu bytes\n", way_name[w],
               med[w], runs[w][0], runs[w][reps - 1], reps, mib, chunk);
    }
    printf("summary: guard_one_over_none=%.3f guard_full_over_none=%.3f\n", med[1] / med[0], med[2] / med[0]);
    return 0;
}
