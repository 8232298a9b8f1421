/*
 * TCP rendezvous served by rank 0 (see docs/comm.md for the wire format).
 *
 * Every rank contributes a blob (its UCX worker address and flags); rank 0
 * collects all of them, may append "extra" bytes (the NCCL unique id), and
 * sends everything back to every rank. Each connection starts with a fixed
 * 64-byte hello carrying the job token, compared in constant time; a client
 * with a wrong token, a malformed hello or an oversized length is refused (told
 * why when it speaks the protocol) and logged by its address, and the job forms
 * without it. The message formats and their parsers are in rdv_wire.h.
 *
 * Hostile traffic: rank 0 serves every connection from one poll loop without
 * blocking on any; a connection not yet joined holds one of
 * ZERO_RDV_MAX_PENDING slots and must finish each phase (hello, record) within
 * the per-connection timeout; when the slots are full, the oldest connection
 * that has not shown the token is evicted. A rank whose connection fails for a
 * reason that may pass (refused, closed, reset, timed out) retries with
 * back-off and jitter until the rendezvous timeout.
 *
 * The connections stay open for the life of the communicator: a rank that
 * dies closes its socket, rank 0 sees it and relays an abort naming it to the
 * others. zero_rdv_shutdown is the collective goodbye that makes a closed
 * socket afterwards harmless.
 */
#ifndef ZERO_COMM_RENDEZVOUS_H
#define ZERO_COMM_RENDEZVOUS_H

#include <poll.h>
#include <stdint.h>
#include <zero/status.h>
#include "comm/bootstrap.h"
#include "comm/rdv_wire.h"

#define ZERO_RDV_MAX_PENDING 64           /* connections not yet joined, held at once */
#define ZERO_RDV_CONN_TIMEOUT_S 5.0       /* default per-connection phase deadline */

typedef struct zero_rdv zero_rdv_t;

/* Rank 0 only: called once every blob is in; writes up to ZERO_RDV_MAX_EXTRA
 * bytes into @p extra and their count into *extra_len_p. */
typedef zero_status_t (*zero_rdv_extra_fn)(void *arg, int size, const unsigned char *const *blobs,
                                           const uint32_t *blob_lens, unsigned char *extra,
                                           uint32_t *extra_len_p);

/* Forms the job: rank 0 serves, the others join. @p timeout_s bounds the
 * whole rendezvous (ZERO_RENDEZVOUS_TIMEOUT); @p conn_timeout_s bounds each
 * phase of one connection (ZERO_RENDEZVOUS_CONN_TIMEOUT): rank 0 drops a
 * connection whose hello or record is not complete in time, a rank gives up
 * one attempt whose hello rank 0 does not take in time. */
zero_status_t zero_rdv_create(const zero_comm_env_t *env, double timeout_s, double conn_timeout_s, const void *blob,
                              uint32_t blob_len, zero_rdv_extra_fn extra_fn, void *extra_arg, zero_rdv_t **rdv_p);
void zero_rdv_destroy(zero_rdv_t *rdv);

/* The blob of @p rank and the extra bytes, valid until zero_rdv_destroy. */
const unsigned char *zero_rdv_blob(const zero_rdv_t *rdv, int rank, uint32_t *len_p);
const unsigned char *zero_rdv_extra(const zero_rdv_t *rdv, uint32_t *len_p);

/* The sockets the progress thread should watch (POLLIN); returns how many were written. */
int zero_rdv_pollfds(const zero_rdv_t *rdv, struct pollfd *fds, int max);

/* Non-blocking health check: reads whatever arrived. ZERO_OK while healthy;
 * once a rank died (ZERO_ERR_COMM) or another rank reported a failure (its
 * status), that status with *failed_rank_p set (rank 0 relays every failure to
 * every other rank). Logs the first failure it learns of. */
zero_status_t zero_rdv_check(zero_rdv_t *rdv, int *failed_rank_p);

/* This rank's collective failed because of @p failed_rank (already logged
 * here): tell rank 0, which relays it, so every rank stops at once. */
void zero_rdv_report(zero_rdv_t *rdv, int failed_rank, zero_status_t status);

/* Collective goodbye, bounded by @p timeout_s: returns once every rank said
 * goodbye (rank 0) or rank 0 acknowledged ours (others). @p progress (may be
 * NULL) runs while waiting, so that data still in flight keeps moving. */
zero_status_t zero_rdv_shutdown(zero_rdv_t *rdv, double timeout_s, void (*progress)(void *), void *progress_arg);

#endif /* ZERO_COMM_RENDEZVOUS_H */
