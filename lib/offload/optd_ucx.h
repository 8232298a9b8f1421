/*
 * UCX set-up shared by zero-optd (optd_server.c) and the remote store
 * (store_remote.c): a context with its worker and event descriptor, and the
 * second, shared-memory-only context that carries a same-host data
 * connection (docs/optd.md, "One host: the data connection").
 *
 * Why two contexts: a connection must run in peer-failure mode for a dead
 * peer to be seen, and UCX 1.13 gives such endpoints no shared memory. An
 * endpoint without it gets shared memory, but in a context that also holds
 * CMA, UCX 1.13 takes a failed CMA copy to a dead peer as fatal (it aborts
 * the process). A context limited to the shared-memory FIFO transports
 * (posix, sysv: the sender copies into a segment the receiver mapped) has no
 * call that can fail when the peer dies: a dead peer's messages simply stop,
 * which the control connection (first context, peer-failure mode) reports.
 *
 * Why every context pins the FIFO's geometry (util/ucx_pins.h): UCX 1.13's
 * shared-memory transports (posix, sysv) trust the sender's own settings
 * when it writes into the receiver's FIFO: its segment size bounds what it
 * copies into the receiver's segment, its FIFO size and element size
 * index and fill the receiver's FIFO. A peer run with another
 * UCX_POSIX_SEG_SIZE, UCX_POSIX_FIFO_SIZE or UCX_POSIX_FIFO_ELEM_SIZE
 * (or the SYSV_ or MM_ names) corrupts the receiver's memory: zero-optd
 * died of SIGSEGV in ucs_mpool_put after a client with a 64 KiB segment
 * sent a step, and the client died the same way with a 2 KiB one. Both
 * sides pin the same values over the environment, so no job member's
 * environment can make them differ. tcp trusts the sender's segment too:
 * a client with UCX_TCP_TX_SEG_SIZE and RX_SEG_SIZE at 256k (and eager
 * messages) aborted zero-optd (assertion hdr->length <= rx_seg_size), so
 * its two segment sizes are pinned as well (lib/comm's ring pins those
 * too), and its put is turned off (util/ucx_pins.h,
 * ZERO_UCX_TCP_PUT_ENABLE). Other UCX settings tried (lanes, thresholds,
 * transports, rendezvous schemes) were found harmless to the peer
 * (docs/optd.md, Safety). No connection here is made by a UCX connection
 * manager (zero-optd's doorway hands out worker addresses: docs/optd.md,
 * "The doorway"), so UCX_SOCKADDR_TLS_PRIORITY plays no part (until
 * version 8 each context added tcp to it where it named none: UCX 1.13
 * killed the process that connected or listened with only managers the
 * host lacks).
 */
#ifndef ZERO_OFFLOAD_OPTD_UCX_H
#define ZERO_OFFLOAD_OPTD_UCX_H

#include <zero/status.h>

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <ucp/api/ucp.h>

#include "util/ucx_pins.h"

/* The data context's transports unless ZERO_OPTD_DATA_TLS names others (a
 * UCX_TLS value, for measuring other sets; one naming cma, or one that may
 * hold it: "sm", "shm", "all", "^...", is refused with a warning). posix
 * carries the messages, all of them eager (the sender copies into the
 * receiver's FIFO segments, the receiver copies out), and backs the
 * region. Until the doorway (wire version 8) the set was "posix,tcp": UCX
 * 1.13's connection manager connected a client-server endpoint only from a
 * context with a transport on the address's network device ("device lo is
 * not enabled"). Endpoints are made from worker addresses now, and posix
 * alone connects; without tcp a data connection's worker opens no tcp
 * listening socket, which any process that reached it could send UCX's tcp
 * wire (docs/optd.md, "The doorway"). */
#define ZERO_OPTD_DATA_TLS_DEFAULT "posix"
#define ZERO_OPTD_DATA_SETTINGS 5   /* entries zero_optd_data_settings fills, the NULL included */

/* The pin groups (util/ucx_pins.h) of every context zero_optd_ucx_open
 * makes, zero-optd's and its clients' alike: both ends of a connection must
 * agree on tcp's receive segment. */
#define ZERO_OPTD_UCX_PINS (ZERO_UCX_PIN_MM | ZERO_UCX_PIN_TCP | ZERO_UCX_PIN_TCP_PUT | ZERO_UCX_PIN_TCP_OPTD_RX)

typedef struct zero_optd_ucx {
    ucp_context_h context;
    ucp_worker_h worker;
    int efd;                      /* the worker's event descriptor; -1: none */
} zero_optd_ucx_t;

/*
 * Creates a context (tag matching and wake-ups) and a worker in @p u that
 * any thread may use, one at a time (UCX's serialized mode, through
 * zero_optd_worker_open). @p settings: NULL (UCX's own configuration, from
 * the environment) or name/value pairs of UCX settings without the UCX_
 * prefix, ending with NULL, which win over the environment's
 * (zero_optd_data_settings for the data context). Before those, the
 * FIFO's geometry, tcp's segments, tcp's put and tcp's larger receive
 * segment are pinned (zero_ucx_pin_sizes, the groups of ZERO_OPTD_UCX_PINS,
 * those of the context's transports: UCX_TLS, or a TLS entry of
 * @p settings). @p who prefixes the error logged.
 * Errors: the UCX failure, translated and logged; @p u is then left empty.
 */
zero_status_t zero_optd_ucx_open(zero_optd_ucx_t *u, const char *const *settings, const char *who);
/*
 * Creates a worker of @p context in UCX's serialized mode (any thread, one
 * at a time) in @p worker and gets its event descriptor in @p efd (-1:
 * none). zero-optd gives each same-host data connection a worker of its own
 * this way (optd_server.c says why), and so does the remote store for each
 * server's (store_remote.c).
 * Errors: the UCX failure, translated and logged with @p who; @p worker is
 * then NULL.
 */
zero_status_t zero_optd_worker_open(ucp_context_h context, ucp_worker_h *worker, int *efd, const char *who);
/* Destroys what zero_optd_ucx_open created (an empty @p u too). */
void zero_optd_ucx_close(zero_optd_ucx_t *u);

/* Whether same-host data connections are wanted: yes unless
 * ZERO_OPTD_SAME_HOST=0 (docs/optd.md, "One host: the data connection").
 * A client then asks for none; zero-optd then offers none and its doorway
 * refuses them. */
int zero_optd_same_host_enabled(void);
/* Whether a same-host data connection carries STEP's arrays in a region of
 * the server's shared memory (docs/optd.md, "One-sided on one host"): yes
 * unless ZERO_OPTD_ONESIDED=0. A client then does not ask for one; zero-optd
 * then allocates none (its clients step over tagged messages). */
int zero_optd_onesided_enabled(void);
/*
 * Gives every page of the shared mapping [@p ptr, + @p bytes) (page-aligned)
 * its memory now, so that a full file system behind it (/dev/shm) is this
 * error and not a SIGBUS at the first touch in a step, and no step takes a
 * page fault. Returns 0, or the errno of MADV_POPULATE_WRITE (EINVAL on a
 * kernel before 5.14: the caller then goes without the region, since
 * touching the pages could not fail safely).
 */
int zero_optd_region_populate(void *ptr, size_t bytes);
/*
 * Maps the region [@p address, + @p bytes) of the packed rkey @p rkey_buf
 * here through @p ep's context, as one contiguous range: *@p rkey_p (the
 * caller destroys it with ucp_rkey_destroy; unmapping it) and *@p ptr_p,
 * its first byte here. Both ends must map, contiguously. On failure
 * *@p rkey_p is NULL and *@p step_p says which step failed ("unpacked" or
 * "mapped"). A client maps a server's region with it; the server asks it of
 * its own region before offering it, since ucp_mem_map ALLOCATE falls back
 * without a word to memory no rkey_ptr reaches (a full /dev/shm).
 */
ucs_status_t zero_optd_region_map(ucp_ep_h ep, const void *rkey_buf, uint64_t address, size_t bytes,
                                  ucp_rkey_h *rkey_p, void **ptr_p, const char **step_p);
/* The data context's settings for zero_optd_ucx_open: its transports
 * ($ZERO_OPTD_DATA_TLS or ZERO_OPTD_DATA_TLS_DEFAULT) and no rendezvous. */
void zero_optd_data_settings(const char *settings[ZERO_OPTD_DATA_SETTINGS]);

/*
 * Whether zero-optd's UCX contexts should keep their network devices to the
 * one interface that holds @p addr (the --listen address): then 1, with
 * that interface's name in @p dev (@p n bytes, IF_NAMESIZE is enough), for
 * UCX's NET_DEVICES. Why: every worker of a context with tcp (the control
 * context, the data context and each data connection's worker) opens a
 * listening socket of UCX's own on every network device it uses (UCX 1.13
 * uct/tcp, the interface's listener, bound to the device's address), and
 * those ports take bytes from anyone who reaches them before any job token
 * is read; a few wrong bytes abort the process (docs/optd.md, Safety). A
 * server told to listen on 127.0.0.1 had them on every interface.
 * 0 (keep UCX's choice) where UCX_NET_DEVICES is set (the user's choice),
 * @p addr is a wildcard (0.0.0.0, ::) or on no interface, or the host has
 * RDMA devices (/sys/class/infiniband: NET_DEVICES names them too, and one
 * interface's name would take them away).
 */
int zero_optd_listen_device(const struct sockaddr *addr, char *dev, size_t n);

/*
 * This host's IPv4 and IPv6 interface addresses (getifaddrs: IPv4 first,
 * ports 0), up to @p max of them into @p out; returns how many (0 where
 * getifaddrs fails). zero-optd admits them to UCX's ports for a client on
 * its own host (optd_server.c, door_admit), whose UCX may connect from
 * another of them than its doorway connection came from.
 */
int zero_optd_host_addresses(struct sockaddr_storage *out, int max);
/* Whether @p sa (AF_INET or AF_INET6; an IPv4-mapped IPv6 address counts as
 * its IPv4 address) is one of this host's interface addresses. */
int zero_optd_is_host_address(const struct sockaddr *sa);

/* Progresses every opened worker of @p u[0..n); returns whether anything happened. */
int zero_optd_ucx_progress(zero_optd_ucx_t *u, int n);
/*
 * Arms every opened worker of @p u[0..n) for a sleep and adds their event
 * descriptors to @p pfd (room for n). Returns the number added; -1 when a
 * worker has events pending (progress instead of sleeping); -2 when one has
 * no event descriptor or cannot be armed (sleep briefly without them).
 */
int zero_optd_ucx_arm(zero_optd_ucx_t *u, int n, struct pollfd *pfd);
/* The same for one worker @p worker with event descriptor @p efd: 1 (the
 * descriptor is in *@p pfd), -1 or -2 as above. */
int zero_optd_worker_arm(ucp_worker_h worker, int efd, struct pollfd *pfd);

#endif /* ZERO_OFFLOAD_OPTD_UCX_H */
