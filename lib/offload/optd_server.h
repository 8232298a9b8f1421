/*
 * zero-optd's server (docs/optd.md): clients (ranks' remote stores,
 * store_remote.c) keep the fp32 master weights and optimizer states of
 * their slices here and send one STEP per gradient piece. They get their
 * UCX connections at its doorway, a TCP socket of its own: one request
 * (kind, job token, ticket, the client worker's address) is checked before
 * any UCX object exists and answered with the server worker's address or
 * the reason for a refusal (docs/optd.md, "The doorway"); zero-optd has no
 * UCX listener.
 *
 * Two threads serve every connection, in arrival order, as a pipeline of
 * ZERO_OPTD_SERVER_SLOTS messages: the thread that calls
 * zero_optd_server_run drives UCX and the doorway (answers requests,
 * receives the next messages, sends replies), a worker thread decodes each
 * received message and runs its step, whose kernels use a pool of
 * --threads threads. So while the worker steps one message, the next ones
 * are being received and the previous replies sent. Per connection: it
 * must show the job token at the doorway and again in its first message
 * (HELLO) within hello_timeout_s or it is closed; a message that is
 * malformed, oversized or out of its connection's bounds gets an error
 * reply naming the problem and the connection is closed; a client that disconnects (even mid-message) has
 * its state freed. Nothing a client sends stops the server or harms another
 * client's state.
 */
#ifndef ZERO_OFFLOAD_OPTD_SERVER_H
#define ZERO_OFFLOAD_OPTD_SERVER_H

#include "offload/optd_wire.h"

#include <signal.h>
#include <stdint.h>
#include <zero/status.h>

#define ZERO_OPTD_MAX_CONNS 1024
/* Same-host data connections held at once, each on a UCX worker of its own
 * (a shared-memory FIFO, a socket and descriptors): beyond them HELLO's
 * reply offers none and clients keep to their first connection. */
#define ZERO_OPTD_MAX_DATA_CONNS 64
/* Messages between their arrival and the delivery of their reply (each holds
 * a receive and a reply buffer of ZERO_OPTD_MAX_MESSAGE bytes). */
#define ZERO_OPTD_SERVER_SLOTS 4
/* The server's own buffers, counted against its memory limit: the slots and
 * the worker's fp32 copy of a 16-bit gradient. */
#define ZERO_OPTD_SERVER_BUFFER_BYTES \
    (2 * (uint64_t)ZERO_OPTD_SERVER_SLOTS * ZERO_OPTD_MAX_MESSAGE + ZERO_OPTD_MAX_ELEMS * sizeof(float))
/* Refused connection requests are logged in windows of
 * ZERO_OPTD_REFUSAL_WINDOW_S seconds: the first ZERO_OPTD_REFUSALS_IN_FULL
 * of a window one by one, the rest counted into one line at the window's
 * end (any local process can send such requests; docs/optd.md, Safety). */
#define ZERO_OPTD_REFUSALS_IN_FULL 5
#define ZERO_OPTD_REFUSAL_WINDOW_S 5.0

typedef struct zero_optd_server zero_optd_server_t;

typedef struct zero_optd_server_opts {
    const char *host;          /* address to listen on ("0.0.0.0", "127.0.0.1", a name) */
    int port;                  /* 0: any free port (zero_optd_server_port tells which) */
    int threads;               /* optimizer threads, >= 1 */
    uint64_t memory_limit;     /* bytes of state, data connections' regions and buffers over all clients; 0: no limit */
    int have_token;            /* 0: any token is accepted (ZERO_ALLOW_NO_TOKEN) */
    unsigned char token[ZERO_OPTD_TOKEN_BYTES];
    double hello_timeout_s;    /* a connection that has not said HELLO by then is closed (0: 10 s) */
    double io_timeout_s;       /* one message's receive or reply, at most (0: 30 s) */
    int guard;                 /* an allow list in front of UCX's own listening sockets (optd_guard.h): only for a
                                * process that is this server alone (the zero-optd tool); ZERO_OPTD_GUARD=0 still
                                * turns it off, with a warning */
} zero_optd_server_opts_t;

/* Creates the UCX contexts and opens the doorway (a TCP socket on
 * opts->host:opts->port, nonblocking, close-on-exec, SO_REUSEADDR; the
 * first address getaddrinfo gives that binds). Errors: ZERO_ERR_INVALID_ARG
 * (bad options or an address that does not resolve, logged), ZERO_ERR_COMM
 * (no socket could listen there, logged), ZERO_ERR_UNSUPPORTED (the control
 * worker's UCX address is over ZERO_OPTD_MAX_WORKER_ADDRESS; with opts.guard,
 * a doorway on an IPv6 address while UCX's tcp listens on IPv4 only: the
 * allow list could admit no client's UCX connection), a UCX failure,
 * ZERO_ERR_NO_MEMORY. */
zero_status_t zero_optd_server_create(const zero_optd_server_opts_t *opts, zero_optd_server_t **server_p);
/* The doorway's port (the one asked for, or the one port 0 got). */
int zero_optd_server_port(const zero_optd_server_t *server);
/* Serves until *stop becomes non-zero (a signal handler may set it). The
 * UCX side runs on the calling thread; one call at a time. */
zero_status_t zero_optd_server_run(zero_optd_server_t *server, volatile sig_atomic_t *stop);
/* Bytes of client state and buffers held now (any thread). */
uint64_t zero_optd_server_bytes(const zero_optd_server_t *server);
/* Closes every connection, the doorway's connections and its socket. NULL allowed. */
void zero_optd_server_destroy(zero_optd_server_t *server);

#endif /* ZERO_OFFLOAD_OPTD_SERVER_H */
