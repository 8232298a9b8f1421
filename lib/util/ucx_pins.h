/*
 * UCX transport sizes pinned over the environment, shared by every UCX
 * context of the library (lib/comm's ring, lib/offload's zero-optd and its
 * clients).
 *
 * Why: UCX 1.13 trusts the sender's own value of some sizes when it writes
 * into its peer. tcp's receiver aborts on a message longer than its receive
 * segment (tcp_ep.c:1404, assertion hdr->length <= rx_seg_size): a job
 * member with UCX_TCP_TX_SEG_SIZE and UCX_TCP_RX_SEG_SIZE at 256k killed
 * its ring neighbour (lib/comm) or zero-optd. The shared-memory FIFO
 * (posix, sysv) trusts the sender's segment size, FIFO size and element
 * size on client-server endpoints (zero-optd's): another UCX_POSIX_SEG_SIZE
 * or FIFO size corrupted or aborted the peer (docs/optd.md, Safety). With
 * each group pinned to UCX's default on every process, no job member's
 * environment can make the two ends differ.
 *
 * The pinned sizes are UCX 1.13.1's defaults (`ucx_info -c -f`), so a
 * process that sets none of these runs with UCX's own sizes; the pins
 * that are no default, tcp's put (ZERO_UCX_PIN_TCP_PUT), its larger
 * receive segment and UCP's buffer sizes for unexpected messages
 * (ZERO_UCX_PIN_TCP_OPTD_RX), are asked only by zero-optd's contexts.
 */
#ifndef ZERO_UTIL_UCX_PINS_H
#define ZERO_UTIL_UCX_PINS_H

#include <ucp/api/ucp.h>
#include "util/checks.h"

/* The groups zero_ucx_pin_sizes may pin. */
#define ZERO_UCX_PIN_MM 1u    /* posix and sysv: MM_SEG_SIZE, MM_FIFO_SIZE, MM_FIFO_ELEM_SIZE */
#define ZERO_UCX_PIN_TCP 2u   /* tcp: TX_SEG_SIZE, RX_SEG_SIZE */
#define ZERO_UCX_PIN_TCP_PUT 4u   /* tcp: PUT_ENABLE=n (zero-optd's contexts only; below) */
#define ZERO_UCX_PIN_TCP_OPTD_RX 8u   /* tcp: RX_SEG_SIZE, and UCP's RX_MPOOL_SIZES (zero-optd's contexts only) */

/* The values pinned (UCX 1.13.1's defaults). */
#define ZERO_UCX_MM_SEG_SIZE "8256"
#define ZERO_UCX_MM_FIFO_SIZE "64"
#define ZERO_UCX_MM_FIFO_ELEM_SIZE "128"
#define ZERO_UCX_TCP_TX_SEG_SIZE "8kb"
#define ZERO_UCX_TCP_RX_SEG_SIZE "64kb"
/* tcp without its one-sided put (UCX's default is "y"), the one pin that is
 * not a default: UCX 1.13's tcp asserts that a put's acknowledgement finds
 * the put still awaited (tcp_ep.c:939), but a send that fails on a
 * connection the peer closed clears that flag while tcp goes on parsing
 * what it has already read, the acknowledgement among it; zero-optd died of
 * SIGABRT so when a client gave up on a stalled server mid-reply (a large
 * reply's rendezvous is a tcp put). Without the capability a peer's address
 * offers none either, so UCX's wire-up gives neither end a put lane and
 * large messages go by UCX's active-message rendezvous. docs/optd.md,
 * Safety, has the cost. lib/comm keeps its puts (its ring was not seen to
 * hit this, and its peers do not vanish while the job lives). */
#define ZERO_UCX_TCP_PUT_ENABLE "n"
/* tcp's receive segment on zero-optd's contexts (both ends of every one of
 * its connections open them through zero_optd_ucx_open, so the two ends
 * agree), over ZERO_UCX_TCP_RX_SEG_SIZE, the other pin that is no default.
 * Without a put lane a large message's rendezvous comes as active-message
 * fragments of at most the sender's receive segment, each read into that
 * segment and copied out; 256 KiB fragments instead of 64 KiB took about
 * 2 ms less of the client's CPU per step over TCP (docs/optd.md, "The
 * doorway"). A sender's fragment larger than its receiver's segment aborts
 * the receiver (tcp_ep.c:1404), so a client and a zero-optd must both have
 * it; the doorway refuses a peer of another wire version (ZERO_OPTD_VERSION). */
#define ZERO_UCX_OPTD_TCP_RX_SEG_SIZE "256kb"
/* The buffer sizes UCP keeps unexpected messages in on those contexts (a
 * context that may open tcp). UCX's default, "64,1kb", puts every message
 * above 1 KiB into a buffer of the largest active message an interface
 * takes, tcp's receive segment: a 4 KiB eager message waiting for the
 * server's loop then held 256 KiB (64 KiB before), and a job member's flood
 * of unclaimed 4 KiB messages over TCP grew the test process by 490-525
 * MiB instead of at most 156 (test_optd "a job member's gradients with no
 * header", under meson, whose MALLOC_PERTURB_ touches every byte of them).
 * Unexpected messages here are eager ones, at most tcp's eager threshold
 * (about 20 KiB); 8 KiB and 32 KiB buffers hold them closer. */
#define ZERO_UCX_OPTD_RX_MPOOL_SIZES "64,1kb,8kb,32kb"

/*
 * Whether @p list, a UCX list setting's value (entries separated by commas,
 * as UCX_TLS or UCX_SOCKADDR_TLS_PRIORITY), has an entry that is @p name
 * whole, as UCX compares them (" tcp" or "tcpx" is not "tcp"). With
 * @p suffixed, an entry of @p name and a ':' suffix counts too (UCX_TLS's
 * "tcp:aux" form).
 */
int zero_ucx_list_has(const char *list, const char *name, int suffixed);

/*
 * Pins on @p config (from ucp_config_read, before ucp_init) the sizes of
 * each group in @p groups whose transports the context may open: @p tls is
 * the context's UCX_TLS value where the caller sets one, NULL for the
 * environment's (none: UCX's own choice, which may open them all). A group
 * whose transports @p tls leaves out is skipped (UCX warns about a setting
 * no transport has at every worker). UCX applies each pin to the
 * transports whose table has it when a worker opens its interfaces, over
 * the environment's value. A process whose environment sets one of these
 * to another value logs one WARN per setting and process, naming the
 * variable, its value and the value used. Where two groups in @p groups
 * pin one setting, the later group's value is the one set (and warned
 * about): ZERO_UCX_PIN_TCP_OPTD_RX's receive segment over
 * ZERO_UCX_PIN_TCP's. @p who prefixes the error.
 * Errors: the UCX failure of ucp_config_modify, translated and logged.
 */
zero_status_t zero_ucx_pin_sizes(ucp_config_t *config, const char *tls, unsigned groups, const char *who);

#endif /* ZERO_UTIL_UCX_PINS_H */
