/*
 * Bytes for UCX 1.13's own tcp listeners (ucx_attack.h).
 */
#include "ucx_attack.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CM_AM_ID 32          /* UCT_AM_ID_MAX: tcp's connection packets */
#define KEEPALIVE_AM_ID 35   /* UCT_TCP_EP_KEEPALIVE_AM_ID */
#define CONN_REQ 1u          /* UCT_TCP_CM_CONN_REQ */

static socklen_t sockaddr_len(int family)
{
    return family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

int zero_test_listening_sockets(pid_t pid, struct sockaddr_storage *out, int max)
{
    static unsigned long inodes[4096];
    int ninodes = 0, n = 0;
    char path[64], link[64], line[512];
    struct dirent *e;
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL && ninodes < 4096) {
        unsigned long ino;
        ssize_t len = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);
        if (len <= 0)
            continue;
        link[len] = '\0';
        if (sscanf(link, "socket:[%lu]", &ino) == 1)
            inodes[ninodes++] = ino;
    }
    closedir(d);
    for (int v6 = 0; v6 < 2; v6++) {
        snprintf(path, sizeof(path), "/proc/%d/net/tcp%s", (int)pid, v6 ? "6" : "");
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        while (fgets(line, sizeof(line), f) != NULL && n < max) {
            char local[80], *colon;
            unsigned st, port;
            unsigned long ino;
            int mine = 0;
            if (sscanf(line, " %*d: %79s %*s %x %*s %*s %*s %*u %*u %lu", local, &st, &ino) != 3 || st != 0x0A)
                continue;
            for (int i = 0; i < ninodes && !mine; i++)
                mine = inodes[i] == ino;
            if (!mine || (colon = strchr(local, ':')) == NULL || sscanf(colon + 1, "%x", &port) != 1)
                continue;
            *colon = '\0';
            memset(&out[n], 0, sizeof(out[n]));
            if (!v6) {   /* the address as the kernel's u32, printed in host order */
                struct sockaddr_in *sa = (struct sockaddr_in *)&out[n];
                sa->sin_family = AF_INET;
                sa->sin_addr.s_addr = (uint32_t)strtoul(local, NULL, 16);
                sa->sin_port = htons((uint16_t)port);
            } else {     /* four such words */
                struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&out[n];
                sa->sin6_family = AF_INET6;
                for (int w = 0; w < 4 && strlen(local) == 32; w++) {
                    char word[9];
                    uint32_t v;
                    memcpy(word, local + 8 * w, 8);
                    word[8] = '\0';
                    v = (uint32_t)strtoul(word, NULL, 16);
                    memcpy(sa->sin6_addr.s6_addr + 4 * w, &v, 4);
                }
                sa->sin6_port = htons((uint16_t)port);
            }
            n++;
        }
        fclose(f);
    }
    return n;
}

int zero_test_sockaddr_port(const struct sockaddr_storage *sa)
{
    return ntohs(sa->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
                                           : ((const struct sockaddr_in *)sa)->sin_port);
}

int zero_test_sockaddr_is_loopback(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    return sa->ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

void zero_test_sockaddr_text(const struct sockaddr_storage *sa, char *text, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    const void *a = sa->ss_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                              : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    inet_ntop(sa->ss_family, a, ip, sizeof(ip));
    snprintf(text, n, "%s,%d", ip, zero_test_sockaddr_port(sa));
}

int zero_test_sockaddr_parse(const char *text, struct sockaddr_storage *sa)
{
    char ip[INET6_ADDRSTRLEN + 1];
    const char *comma = strrchr(text, ',');
    int port;
    if (comma == NULL || (size_t)(comma - text) >= sizeof(ip) || (port = atoi(comma + 1)) <= 0 || port > 65535)
        return -1;
    memcpy(ip, text, (size_t)(comma - text));
    ip[comma - text] = '\0';
    memset(sa, 0, sizeof(*sa));
    if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)sa)->sin_addr) == 1) {
        sa->ss_family = AF_INET;
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)sa)->sin6_addr) == 1) {
        sa->ss_family = AF_INET6;
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
        return 0;
    }
    return -1;
}

int zero_test_tcp_connect(const struct sockaddr_storage *to, const struct sockaddr_storage *from, double timeout_s)
{
    int fd = socket(to->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), err = 0;
    socklen_t len = sizeof(err);
    struct pollfd p;
    if (fd < 0)
        return -1;
    if (from != NULL && bind(fd, (const struct sockaddr *)from, sockaddr_len(from->ss_family)) != 0)
        goto fail;
    if (connect(fd, (const struct sockaddr *)to, sockaddr_len(to->ss_family)) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        p = (struct pollfd){.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, (int)(timeout_s * 1000)) != 1) {
            errno = ETIMEDOUT;
            goto fail;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            errno = err != 0 ? err : errno;
            goto fail;
        }
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
        goto fail;
    return fd;
fail:
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

void zero_test_tcp_close(int fd, int reset)
{
    if (reset) {
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    close(fd);
}

/* An active message's header at @p b: returns its 5 bytes. */
static size_t am_header(unsigned char *b, uint8_t am_id, uint32_t length)
{
    b[0] = am_id;
    memcpy(b + 1, &length, 4);   /* little-endian hosts only, as UCX's own wire */
    return 5;
}

size_t zero_test_ucx_tcp_bytes(zero_test_ucx_tcp_form_t form, unsigned k, int fd, unsigned char *b)
{
    uint64_t magic = ZERO_TEST_UCX_TCP_MAGIC, sn = ((uint64_t)rand() << 32) ^ (uint64_t)rand() ^ k;
    struct sockaddr_storage self;
    socklen_t self_len = sizeof(self);
    uint32_t event = CONN_REQ, sa_len;
    size_t n = 0;
    if (form == ZERO_TEST_UCX_TCP_GARBAGE) {
        for (n = 0; n < 64; n++)
            b[n] = (unsigned char)rand();
        b[0] = (unsigned char)(0x78 ^ 1 ^ (b[0] & 0x0e));   /* never the magic's first byte (0x78) */
        return n;
    }
    memcpy(b, &magic, 8);
    n = 8;
    if (form == ZERO_TEST_UCX_TCP_FATAL)
        return n + am_header(b + n, 0, 1u << 20);
    memset(&self, 0, sizeof(self));
    (void)getsockname(fd, (struct sockaddr *)&self, &self_len);
    sa_len = sockaddr_len(self.ss_family);   /* the listener's family: UCX's sockaddr_len */
    n += am_header(b + n, CM_AM_ID, 4 + 1 + 8 + sa_len);   /* event, flags, conn_sn, address */
    memcpy(b + n, &event, 4);
    n += 4;
    b[n++] = 0;
    memcpy(b + n, &sn, 8);
    n += 8;
    memcpy(b + n, &self, sa_len);
    n += sa_len;
    if (form == ZERO_TEST_UCX_TCP_HALF)   /* cut in the magic, in the header or in the request */
        return (size_t[]){3, 8 + 3, 8 + 5 + 6}[k % 3];
    for (int i = 0; i < 4; i++)
        n += am_header(b + n, KEEPALIVE_AM_ID, 0);
    return n;
}

int zero_test_ucx_tcp_send(const struct sockaddr_storage *to, const struct sockaddr_storage *from,
                           zero_test_ucx_tcp_form_t form, int reset, double timeout_s)
{
    unsigned char b[128];
    size_t n;
    int fd = zero_test_tcp_connect(to, from, timeout_s), rc = 0;
    if (fd < 0)
        return -1;
    n = zero_test_ucx_tcp_bytes(form, (unsigned)rand(), fd, b);
    if (write(fd, b, n) != (ssize_t)n)
        rc = -1;
    zero_test_tcp_close(fd, reset);
    return rc;
}
