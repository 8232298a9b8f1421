/*
 * Bytes for UCX 1.13's own tcp listeners, for tests of what a process that
 * listens through UCX survives (test_common): each UCX worker with tcp
 * listens on a port of its own per network device (uct/tcp, the
 * interface's listener), which reads bytes before any job token
 * (docs/optd.md, Safety, "UCX's own tcp listeners"). The wire here is UCX
 * 1.13.1's (src/uct/tcp/tcp.h): an 8-byte magic, then active messages of a
 * 5-byte header (am_id, little-endian u32 length) and a body; am_id 32
 * carries tcp's connection packets, 35 keep-alives.
 */
#ifndef ZERO_TEST_UCX_ATTACK_H
#define ZERO_TEST_UCX_ATTACK_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#define ZERO_TEST_UCX_TCP_MAGIC 0xCAFEBABE12345678ull   /* UCT_TCP_MAGIC_NUMBER */

/* What one connection sends (zero_test_ucx_tcp_bytes). */
typedef enum zero_test_ucx_tcp_form {
    ZERO_TEST_UCX_TCP_GARBAGE,   /* 64 random bytes, never the magic: UCX closes the connection */
    ZERO_TEST_UCX_TCP_HALF,      /* a connection request cut in the magic, the header or the
                                  * request (by the connection's number k): UCX waits */
    ZERO_TEST_UCX_TCP_CONNREQ,   /* the magic, a whole CONN_REQ (a random sequence number, the
                                  * socket's own address), 4 keep-alives: UCX accepts it */
    ZERO_TEST_UCX_TCP_FATAL,     /* the magic and a header whose length (1 MiB) exceeds the
                                  * receive segment, 13 bytes: UCX 1.13 aborts the process
                                  * (tcp_ep.c:1404 assertion) */
} zero_test_ucx_tcp_form_t;

/* The listening TCP sockets of process @p pid (its descriptors' socket
 * inodes looked up in /proc/PID/net/tcp and tcp6, state LISTEN) into
 * @p out (room for @p max). Returns how many, or -1 where /proc says
 * nothing about @p pid. */
int zero_test_listening_sockets(pid_t pid, struct sockaddr_storage *out, int max);
/* The port of @p sa (host order); whether it is a loopback address. */
int zero_test_sockaddr_port(const struct sockaddr_storage *sa);
int zero_test_sockaddr_is_loopback(const struct sockaddr_storage *sa);
/* "IP,PORT" of @p sa into @p text (@p n bytes), and back (0, or -1 for
 * text that is no IPv4 or IPv6 address and port). */
void zero_test_sockaddr_text(const struct sockaddr_storage *sa, char *text, size_t n);
int zero_test_sockaddr_parse(const char *text, struct sockaddr_storage *sa);

/* A TCP connection to @p to, from @p from where not NULL (bound first,
 * port 0: e.g. 127.0.0.2 to come from another loopback address), made
 * within @p timeout_s seconds (a SYN a filter drops is retried for minutes
 * otherwise). The socket returned is blocking. Returns it, or -1 with errno
 * (ECONNREFUSED: nothing listens; ETIMEDOUT: no answer within the time). */
int zero_test_tcp_connect(const struct sockaddr_storage *to, const struct sockaddr_storage *from, double timeout_s);
/* Closes @p fd, with a reset (SO_LINGER 0) where @p reset. */
void zero_test_tcp_close(int fd, int reset);

/* Fills @p b (room for 128 bytes) with what connection number @p k of
 * @p form sends on the connected socket @p fd; returns the byte count. */
size_t zero_test_ucx_tcp_bytes(zero_test_ucx_tcp_form_t form, unsigned k, int fd, unsigned char *b);
/* Connects to @p to (from @p from, or any address; within @p timeout_s),
 * sends @p form's bytes and closes (a reset where @p reset). Returns 0, or
 * -1 with errno. */
int zero_test_ucx_tcp_send(const struct sockaddr_storage *to, const struct sockaddr_storage *from,
                           zero_test_ucx_tcp_form_t form, int reset, double timeout_s);

#endif /* ZERO_TEST_UCX_ATTACK_H */
