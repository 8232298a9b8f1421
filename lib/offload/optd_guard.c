/*
 * The allow list in front of UCX's listening sockets in zero-optd
 * (optd_guard.h says what and why).
 */
#define ZERO_LOG_MODULE "optd"
#include "offload/optd_guard.h"
#include "util/alloc.h"
#include "util/checks.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86dd
#define ACCEPT 0xffffffffu   /* keep the whole packet */
#define DROP 0u
/* The program's size for @p n4 IPv4 and @p n6 IPv6 addresses (build_program's layout). */
#define PROGRAM_LEN(n4, n6) (16 + 2 * (n4) + 9 * (n6))

typedef struct guard_peer {
    int family;              /* AF_INET (addr[0..4)) or AF_INET6 */
    unsigned char addr[16];  /* network order */
    unsigned refs;
} guard_peer_t;

typedef struct guard_skip {
    dev_t dev;
    ino_t ino;
} guard_skip_t;

struct zero_optd_guard {
    pthread_mutex_t lock;
    guard_skip_t *skip;
    int nskip;
    guard_peer_t peers[ZERO_OPTD_GUARD_MAX_PEERS];
    int npeers;
    int listeners;   /* guarded by the last scan */
    int listeners6;  /* of them, IPv6 sockets */
};

/* Whether a guard exists in this process: it covers every listening socket
 * of the process, so a second one would overwrite the first's filters with
 * its own list (the one piece of process-wide state here, because what it
 * guards is process-wide). */
static atomic_int guard_exists;

int zero_optd_guard_enabled(void)
{
    const char *v = getenv("ZERO_OPTD_GUARD");
    return v == NULL || strcmp(v, "0") != 0;
}

static void peer_text(const guard_peer_t *p, char *out, size_t n)
{
    if (inet_ntop(p->family, p->addr, out, (socklen_t)n) == NULL)
        snprintf(out, n, "?");
}

/* @p sa's address as the filter sees it: an IPv4-mapped IPv6 address is
 * IPv4 (its packets are IPv4 packets). */
static zero_status_t peer_from_sockaddr(const struct sockaddr *sa, guard_peer_t *p)
{
    memset(p, 0, sizeof(*p));
    if (sa != NULL && sa->sa_family == AF_INET) {
        p->family = AF_INET;
        memcpy(p->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return ZERO_OK;
    }
    if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            p->family = AF_INET;
            memcpy(p->addr, &a->s6_addr[12], 4);
        } else {
            p->family = AF_INET6;
            memcpy(p->addr, a->s6_addr, 16);
        }
        return ZERO_OK;
    }
    ZERO_LOG_ERROR("zero-optd guard: a peer address must be IPv4 or IPv6 (got %s)",
                   sa == NULL ? "none" : "another family");
    return ZERO_ERR_INVALID_ARG;
}

static int peer_find(const zero_optd_guard_t *g, const guard_peer_t *p)
{
    for (int i = 0; i < g->npeers; i++)
        if (g->peers[i].family == p->family && memcmp(g->peers[i].addr, p->addr, 16) == 0)
            return i;
    return -1;
}

/* Word @p i of an address, in host order: what a BPF_W load of it gives. */
static uint32_t addr_word(const guard_peer_t *p, int i)
{
    uint32_t w;
    memcpy(&w, p->addr + 4 * i, 4);
    return ntohl(w);
}

/*
 * The filter for @p g's list, in @p prog (PROGRAM_LEN entries):
 *
 *       ldh  proto                     (ancillary: the packet's ethertype)
 *       jeq  #IPv4, next, 1
 *       ja   v6
 *       ld   [net + 12]                (IPv4 source)
 *       per IPv4 address: jeq #a, 0, 1 ; ret #ACCEPT
 *       ret  #DROP
 *   v6: jeq  #IPv6, 1, 0
 *       ret  #DROP
 *       ld [net + 8] ; st M[0] ; ... ; ld [net + 20] ; st M[3]   (IPv6 source, once)
 *       per IPv6 address: ld M[0] ; jeq w0, 0, 7 ; ld M[1] ; jeq w1, 0, 5 ;
 *                         ld M[2] ; jeq w2, 0, 3 ; ld M[3] ; jeq w3, 0, 1 ; ret #ACCEPT
 *       ret  #DROP
 *
 * Every conditional jump is local (classic BPF's are 8 bits) and the one
 * long one is ja's 32-bit offset, so the length is bounded only by BPF's
 * 4096 instructions. The source is loaded from the packet once: the kernel
 * turns each packet load below the network header into a dozen eBPF
 * instructions and charges the socket the converted program's size against
 * net.core.optmem_max; with a packet load per compared word, 33 IPv6
 * addresses already passed Debian 12's 20 KiB (tried 5 Dec 2026 in a
 * network namespace with the limit set so).
 */
static int build_program(const zero_optd_guard_t *g, struct sock_filter *prog)
{
    int n4 = 0, pc = 0;
    for (int i = 0; i < g->npeers; i++)
        if (g->peers[i].family == AF_INET)
            n4++;
    prog[pc++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_H | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PROTOCOL));
    prog[pc++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETHERTYPE_IPV4, 1, 0);
    prog[pc++] = (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, (uint32_t)(2 * n4 + 2));
    prog[pc++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_NET_OFF + 12));
    for (int i = 0; i < g->npeers; i++) {
        if (g->peers[i].family != AF_INET)
            continue;
        prog[pc++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, addr_word(&g->peers[i], 0), 0, 1);
        prog[pc++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, ACCEPT);
    }
    prog[pc++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, DROP);
    prog[pc++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETHERTYPE_IPV6, 1, 0);
    prog[pc++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, DROP);
    for (int w = 0; w < 4; w++) {
        prog[pc++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_NET_OFF + 8 + 4 * w));
        prog[pc++] = (struct sock_filter)BPF_STMT(BPF_ST, (uint32_t)w);
    }
    for (int i = 0; i < g->npeers; i++) {
        if (g->peers[i].family != AF_INET6)
            continue;
        for (int w = 0; w < 4; w++) {
            prog[pc++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_MEM, (uint32_t)w);
            prog[pc++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, addr_word(&g->peers[i], w), 0,
                                                      (uint8_t)(7 - 2 * w));
        }
        prog[pc++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, ACCEPT);
    }
    prog[pc++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, DROP);
    assert(pc == PROGRAM_LEN(n4, g->npeers - n4));
    return pc;
}

static void sock_text(int fd, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    guard_peer_t p;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    memset(&ss, 0, sizeof(ss));
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)) {
        peer_from_sockaddr((const struct sockaddr *)&ss, &p);
        peer_text(&p, host, sizeof(host));
        port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                             : ((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    snprintf(out, n, "%s:%d", host, port);
}

static int sockopt_int(int fd, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, name, &v, &len) != 0)
        return -1;
    return v;
}

/* Whether @p fd is a listening TCP socket over IPv4 or IPv6: its family
 * (AF_INET or AF_INET6), else 0. */
static int tcp_listener_family(int fd)
{
    int domain = sockopt_int(fd, SO_DOMAIN);
    return (domain == AF_INET || domain == AF_INET6) && sockopt_int(fd, SO_TYPE) == SOCK_STREAM &&
                   sockopt_int(fd, SO_PROTOCOL) == IPPROTO_TCP && sockopt_int(fd, SO_ACCEPTCONN) == 1
               ? domain
               : 0;
}

static int is_skipped(const zero_optd_guard_t *g, const struct stat *st)
{
    for (int i = 0; i < g->nskip; i++)
        if (g->skip[i].dev == st->st_dev && g->skip[i].ino == st->st_ino)
            return 1;
    return 0;
}

static zero_status_t attach(int fd, const struct sock_fprog *fprog, const char *what)
{
    char where[INET6_ADDRSTRLEN + 8];
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, fprog, sizeof(*fprog)) == 0)
        return ZERO_OK;
    int err = errno;
    sock_text(fd, where, sizeof(where));
    ZERO_LOG_ERROR("zero-optd guard: attaching the allow list (%u instructions) to %s %s: %s%s "
                   "(ZERO_OPTD_GUARD=0 runs without it, leaving UCX's ports open to every host)",
                   (unsigned)fprog->len, what, where, strerror(err),
                   err == ENOMEM ? "; net.core.optmem_max bounds a socket's filter" : "");
    return zero_status_from_errno(err);
}

/*
 * Attaches @p g's current filter to every listening TCP socket of the
 * process that is not skipped; g->listeners gets their number. Each
 * descriptor is duplicated first and examined through the duplicate, so
 * that a descriptor closed and reused by another thread meanwhile is
 * either the socket examined or not looked at: the filter never lands on a
 * socket that was not seen listening.
 */
static zero_status_t scan_attach(zero_optd_guard_t *g)
{
    zero_status_t status = ZERO_OK;
    struct sock_filter prog[PROGRAM_LEN(0, ZERO_OPTD_GUARD_MAX_PEERS)];   /* the longest: IPv6 only */
    struct sock_fprog fprog = {.len = 0, .filter = prog};
    struct dirent *e;
    int count = 0, count6 = 0;

    fprog.len = (unsigned short)build_program(g, prog);
    DIR *d = opendir("/proc/self/fd");
    ZERO_ERRNO_CHECK_GOTO(d != NULL, status, out, "zero-optd guard: listing %s", "/proc/self/fd");
    while ((e = readdir(d)) != NULL) {
        char *end;
        long n = strtol(e->d_name, &end, 10);
        struct stat st;
        if (*end != '\0' || end == e->d_name || n < 0 || n == dirfd(d))
            continue;
        int fd = fcntl((int)n, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            continue;   /* closed since readdir */
        int family = 0;
        if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && !is_skipped(g, &st) &&
            (family = tcp_listener_family(fd)) != 0) {
            zero_status_t s = attach(fd, &fprog, "the listening socket");
            if (s == ZERO_OK) {
                count++;
                count6 += family == AF_INET6;
            } else if (status == ZERO_OK) {
                status = s;
            }
        }
        close(fd);
    }
    closedir(d);
    g->listeners = count;
    g->listeners6 = count6;
out:
    return status;
}

zero_status_t zero_optd_guard_create(const int *skip_fds, int nskip, zero_optd_guard_t **guard_p)
{
    zero_status_t status = ZERO_OK;
    zero_optd_guard_t *g = NULL;
    int probe = -1;

    if (guard_p == NULL || nskip < 0 || (nskip > 0 && skip_fds == NULL)) {
        ZERO_LOG_ERROR("zero-optd guard: bad arguments to zero_optd_guard_create");
        return ZERO_ERR_INVALID_ARG;
    }
    *guard_p = NULL;
    if (!zero_optd_guard_enabled()) {
        ZERO_LOG_WARN("ZERO_OPTD_GUARD=0: no allow list in front of UCX's ports: any host that reaches them can "
                      "abort zero-optd (docs/optd.md, Safety)");
        return ZERO_OK;
    }
    if (atomic_exchange(&guard_exists, 1) != 0) {
        ZERO_LOG_ERROR("zero-optd guard: this process has one already (a guard covers every listening socket of "
                       "its process)");
        return ZERO_ERR_STATE;
    }
    g = zero_calloc(1, sizeof(*g));
    if (g == NULL) {
        atomic_store(&guard_exists, 0);
        ZERO_LOG_ERROR("zero-optd guard: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    pthread_mutex_init(&g->lock, NULL);
    if (nskip > 0) {
        g->skip = zero_calloc((size_t)nskip, sizeof(*g->skip));
        ZERO_REQUIRE_GOTO(g->skip != NULL, ZERO_ERR_NO_MEMORY, status, fail, "zero-optd guard: out of memory");
    }
    for (int i = 0; i < nskip; i++) {
        struct stat st;
        ZERO_REQUIRE_GOTO(fstat(skip_fds[i], &st) == 0, ZERO_ERR_INVALID_ARG, status, fail,
                          "zero-optd guard: descriptor %d to leave open: %s", skip_fds[i], strerror(errno));
        g->skip[g->nskip].dev = st.st_dev;
        g->skip[g->nskip++].ino = st.st_ino;
    }
    /* A kernel that refuses the filter says so now, not at the first client. */
    probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ZERO_ERRNO_CHECK_GOTO(probe >= 0, status, fail, "zero-optd guard: %s", "a socket to try the filter on");
    {
        struct sock_filter prog[PROGRAM_LEN(0, 0)];
        struct sock_fprog fprog = {.len = (unsigned short)build_program(g, prog), .filter = prog};
        ZERO_CHECK_GOTO(attach(probe, &fprog, "a socket of its own,"), status, fail);
    }
    close(probe);
    probe = -1;
    ZERO_CHECK_GOTO(scan_attach(g), status, fail);
    ZERO_LOG_DEBUG("zero-optd guard: %d listening sockets admit no one yet", g->listeners);
    *guard_p = g;
    return ZERO_OK;
fail:
    if (probe >= 0)
        close(probe);
    zero_optd_guard_destroy(g);
    return status;
}

/* Takes @p guard's lock for @p peer: *@p p is its entry as the list would
 * hold it, @p text (INET6_ADDRSTRLEN bytes) its address, *@p index its
 * place on the list (-1: not there). Errors (the lock not taken): those of
 * peer_from_sockaddr. */
static zero_status_t lock_peer(zero_optd_guard_t *guard, const struct sockaddr *peer, guard_peer_t *p, char *text,
                               int *index)
{
    zero_status_t status = peer_from_sockaddr(peer, p);
    if (status != ZERO_OK)
        return status;
    peer_text(p, text, INET6_ADDRSTRLEN);
    pthread_mutex_lock(&guard->lock);
    *index = peer_find(guard, p);
    return ZERO_OK;
}

zero_status_t zero_optd_guard_allow(zero_optd_guard_t *guard, const struct sockaddr *peer)
{
    zero_status_t status;
    guard_peer_t p;
    char text[INET6_ADDRSTRLEN];
    int i;

    if (guard == NULL)
        return ZERO_OK;
    ZERO_CHECK_GOTO(lock_peer(guard, peer, &p, text, &i), status, out_unlocked);
    if (i >= 0) {
        guard->peers[i].refs++;
        status = scan_attach(guard);   /* new listeners since the last call */
        if (status != ZERO_OK)
            guard->peers[i].refs--;
        goto out;
    }
    if (guard->npeers == ZERO_OPTD_GUARD_MAX_PEERS) {
        ZERO_LOG_ERROR("zero-optd guard: the allow list is full (%d addresses): %s is not admitted",
                       ZERO_OPTD_GUARD_MAX_PEERS, text);
        status = ZERO_ERR_OVERFLOW;
        goto out;
    }
    p.refs = 1;
    guard->peers[guard->npeers++] = p;
    status = scan_attach(guard);
    if (status != ZERO_OK) {
        guard->npeers--;
        (void)scan_attach(guard);   /* the previous list back where it went on (failures logged) */
        goto out;
    }
    ZERO_LOG_DEBUG("zero-optd guard: %s admitted to %d listening sockets", text, guard->listeners);
out:
    pthread_mutex_unlock(&guard->lock);
out_unlocked:
    return status;
}

zero_status_t zero_optd_guard_forget(zero_optd_guard_t *guard, const struct sockaddr *peer)
{
    zero_status_t status;
    guard_peer_t p;
    char text[INET6_ADDRSTRLEN];
    int i;

    if (guard == NULL)
        return ZERO_OK;
    ZERO_CHECK_GOTO(lock_peer(guard, peer, &p, text, &i), status, out_unlocked);
    if (i < 0) {
        ZERO_LOG_ERROR("zero-optd guard: forgetting %s, which is not on the allow list", text);
        status = ZERO_ERR_NOT_FOUND;
        goto out;
    }
    status = ZERO_OK;
    if (--guard->peers[i].refs > 0)
        goto out;
    guard->peers[i] = guard->peers[--guard->npeers];
    status = scan_attach(guard);
    ZERO_LOG_DEBUG("zero-optd guard: %s no longer admitted", text);
out:
    pthread_mutex_unlock(&guard->lock);
out_unlocked:
    return status;
}

zero_status_t zero_optd_guard_refresh(zero_optd_guard_t *guard)
{
    if (guard == NULL)
        return ZERO_OK;
    pthread_mutex_lock(&guard->lock);
    zero_status_t status = scan_attach(guard);
    pthread_mutex_unlock(&guard->lock);
    return status;
}

/* The number of guarded listeners (@p what 1; 6: the IPv6 ones) or of
 * addresses on the list (0), read under @p guard's lock; 0 for a NULL
 * guard. */
static int count_of(zero_optd_guard_t *guard, int what)
{
    if (guard == NULL)
        return 0;
    pthread_mutex_lock(&guard->lock);
    int n = what == 1 ? guard->listeners : what == 6 ? guard->listeners6 : guard->npeers;
    pthread_mutex_unlock(&guard->lock);
    return n;
}

int zero_optd_guard_listeners(zero_optd_guard_t *guard)
{
    return count_of(guard, 1);
}

int zero_optd_guard_listeners_ipv6(zero_optd_guard_t *guard)
{
    return count_of(guard, 6);
}

int zero_optd_guard_peers(zero_optd_guard_t *guard)
{
    return count_of(guard, 0);
}

void zero_optd_guard_destroy(zero_optd_guard_t *guard)
{
    if (guard == NULL)
        return;
    pthread_mutex_destroy(&guard->lock);
    zero_free(guard->skip);
    zero_free(guard);
    atomic_store(&guard_exists, 0);
}
