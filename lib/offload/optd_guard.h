/*
 * A kernel-side allow list in front of the TCP ports that UCX opens in
 * zero-optd (docs/optd.md, Safety: "Only approved peers reach UCX's ports").
 *
 * Why: every UCX 1.13 worker with a tcp transport listens on a TCP port of
 * its own (uct/tcp's interface listener, through which address-based
 * endpoints connect), on every network device it uses (and every worker
 * made later, such as a data connection's in a context with tcp, opens
 * more). UCX trusts what arrives there: 13
 * bytes (tcp's magic number and an active-message header longer than the
 * receive segment) abort the process (assertion in tcp_ep.c). We cannot
 * change UCX, so the guard keeps strangers from reaching those ports: it
 * attaches a classic BPF socket filter (SO_ATTACH_FILTER) to each of the
 * process's listening TCP sockets that it is not told to leave alone, and
 * the filter accepts a packet only when its source address is on the allow
 * list: the addresses of clients that proved the job token (zero-optd's
 * doorway calls zero_optd_guard_allow before it answers them).
 *
 * What the kernel does with it (Linux tcp_v4_rcv / tcp_v6_rcv: tcp_filter
 * runs on the listener for a SYN, and on the listener again for the
 * handshake's last ACK): a packet the filter drops is discarded silently,
 * so a stranger's SYN gets no SYN-ACK and no reset; its connect times out
 * (after the SYN retries, about two minutes by default) and nothing ever
 * reaches UCX. An accepted socket takes the listener's filter as it was when
 * the connection was made and keeps it: established connections are not
 * touched by later changes of the list (an approved peer forgotten later
 * keeps its open connections; it cannot open new ones).
 *
 * The filter reads the source address through the network header
 * (SKF_NET_OFF + 12 for IPv4, the four words at SKF_NET_OFF + 8 for IPv6)
 * after checking the packet's protocol, so one program serves IPv4
 * listeners, IPv6 listeners and dual-stack ones (an IPv4 peer of an IPv6
 * socket arrives as an IPv4 packet; approving it as ::ffff:a.b.c.d or as
 * a.b.c.d is the same).
 *
 * Limits (documented, not solved):
 *  - It tells peers apart by source address only. Every process on an
 *    approved host (on zero-optd's own host: every local user, through
 *    127.0.0.1 or the host's addresses) shares that host's addresses and so
 *    reaches UCX's ports once one client from there was approved. Loopback
 *    addresses get no special treatment: they are admitted like any other
 *    address, only after a client from them was approved.
 *  - Only listening sockets are guarded: connections UCX opens outwards
 *    (to a client's ports) are not, and need none (only that peer can talk
 *    on them).
 *  - A listener opened after the last scan is open to everyone until the
 *    next call here: call zero_optd_guard_refresh after creating a worker
 *    and before telling anyone its address.
 *  - At most ZERO_OPTD_GUARD_MAX_PEERS distinct addresses.
 *
 * One guard per process, and only in a process whose listening sockets are
 * all zero-optd's (the zero-optd tool): it covers every listening TCP socket
 * of the process but those it is told to skip, so a server on a thread of a
 * process that also holds UCX clients or other servers (the tests' servers)
 * must run without one: their listeners would get its list.
 *
 * Opt-out: ZERO_OPTD_GUARD=0 in the environment; zero_optd_guard_create then
 * creates no guard and says so (a warning) every time.
 *
 * Thread safety: every call may come from any thread; calls on one guard
 * are serialized by its lock.
 */
#ifndef ZERO_OFFLOAD_OPTD_GUARD_H
#define ZERO_OFFLOAD_OPTD_GUARD_H

#include <zero/status.h>

#include <sys/socket.h>

/* Distinct source addresses the allow list holds. The program is 16
 * instructions plus 2 per IPv4 and 9 per IPv6 address (classic BPF allows
 * 4096), but what bounds it is the kernel's charge: each guarded socket is
 * charged the program's converted size against net.core.optmem_max (20 KiB
 * by default on older kernels, Debian 12's 6.1 among them; 128 KiB on the
 * 6.18 kernel this was written on). 64 IPv6 addresses fit in 20 KiB
 * (test optmem_20k). One address per client host: a zero-optd serving more hosts than this
 * refuses the next one's address (zero_optd_guard_allow: ZERO_ERR_OVERFLOW),
 * it never opens up. */
#define ZERO_OPTD_GUARD_MAX_PEERS 64

typedef struct zero_optd_guard zero_optd_guard_t;

/*
 * Whether the guard is wanted: yes unless ZERO_OPTD_GUARD=0.
 */
int zero_optd_guard_enabled(void);

/*
 * Creates a guard with an empty allow list in *@p guard_p and attaches its
 * filter (which then drops every packet) to each of the process's listening
 * TCP sockets (IPv4 and IPv6) except @p skip_fds[0 .. @p nskip) (the
 * doorway's; @p skip_fds may be NULL when @p nskip is 0). Those are
 * remembered by socket, not by number: a later socket that reuses one of
 * the numbers is guarded. It first attaches the filter to a socket of its
 * own, so that a kernel that refuses it (no SO_ATTACH_FILTER, optmem_max too
 * small) is an error here, at start, and not at the first client.
 * With ZERO_OPTD_GUARD=0: logs a warning that UCX's ports are open to every
 * host that reaches them, sets *@p guard_p to NULL and returns ZERO_OK; every
 * other call takes that NULL as "no guard" and does nothing.
 * Errors: ZERO_ERR_INVALID_ARG (a bad argument, a skip fd that is not
 * open), ZERO_ERR_STATE (this process has a guard already), the errno's
 * status where the filter cannot be attached or memory runs out (logged,
 * naming the socket and ZERO_OPTD_GUARD=0);
 * *@p guard_p is then NULL. Sockets it attached the filter to before the
 * failure keep it.
 */
zero_status_t zero_optd_guard_create(const int *skip_fds, int nskip, zero_optd_guard_t **guard_p);

/*
 * Admits the source address of @p peer (AF_INET, or AF_INET6; an
 * IPv4-mapped IPv6 address is its IPv4 address; the port is ignored):
 * adds it to the allow list, or counts one more reference to it, then
 * re-scans the listening sockets and attaches the filter to all of them
 * (listeners opened since the last scan included). When this returns
 * ZERO_OK, a SYN from the address reaches every guarded listener.
 * Errors, after which the address is not admitted (a new address is left
 * out of the list again, its reference not counted):
 * ZERO_ERR_INVALID_ARG (NULL or another family), ZERO_ERR_OVERFLOW (the list
 * holds ZERO_OPTD_GUARD_MAX_PEERS other addresses: the caller refuses the
 * client, saying so), the errno's status where a listener refused the new
 * filter (logged; the listeners are given the previous list back).
 */
zero_status_t zero_optd_guard_allow(zero_optd_guard_t *guard, const struct sockaddr *peer);

/*
 * Drops one reference to @p peer's address (as zero_optd_guard_allow counted
 * it); the last one takes it off the list and the listeners get the new
 * filter (a re-scan, as in zero_optd_guard_allow). Connections already
 * accepted from it keep working (they keep the filter they were made with).
 * Errors: ZERO_ERR_INVALID_ARG (NULL, another family), ZERO_ERR_NOT_FOUND
 * (the address holds no reference: a caller's bug, logged), the errno's
 * status where a listener refused the new filter (logged; the address is
 * off the list anyway and the listeners that failed still admit it until
 * the next successful call).
 */
zero_status_t zero_optd_guard_forget(zero_optd_guard_t *guard, const struct sockaddr *peer);

/*
 * Re-scans the process's listening TCP sockets and attaches the current
 * filter to every one not skipped: a new UCX worker (zero-optd's worker for
 * a same-host data connection) opens listeners of its own, open to everyone
 * until this runs. Call it after creating a worker and before handing its
 * address out.
 * Errors: the errno's status of the first listener that refused the filter
 * (each failure logged with the listener's address; the others are guarded
 * anyway).
 */
zero_status_t zero_optd_guard_refresh(zero_optd_guard_t *guard);

/* Listening sockets the last scan of @p guard attached the filter to (0 for
 * a NULL guard): for logs and tests. */
int zero_optd_guard_listeners(zero_optd_guard_t *guard);
/* Of them, the IPv6 sockets (0 for a NULL guard): a peer admitted by an
 * IPv6 address reaches only those (zero-optd checks at start that an IPv6
 * doorway has some: optd_server.c). */
int zero_optd_guard_listeners_ipv6(zero_optd_guard_t *guard);

/* Addresses on @p guard's allow list (0 for a NULL guard). */
int zero_optd_guard_peers(zero_optd_guard_t *guard);

/*
 * Frees @p guard (NULL: nothing). The filters stay on the sockets, with the
 * list as it was: destroying the guard opens nothing up (a process that
 * needs a listener open again closes it).
 */
void zero_optd_guard_destroy(zero_optd_guard_t *guard);

#endif /* ZERO_OFFLOAD_OPTD_GUARD_H */
