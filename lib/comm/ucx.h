/*
 * The host-memory backend: a UCP worker, endpoints to the two ring
 * neighbours, and the ring collectives as a state machine that the progress
 * thread advances. Every UCX call after zero_ucx_create happens on the
 * progress thread (the worker is single-threaded); create and destroy run on
 * the API thread while the progress thread is not running.
 */
#ifndef ZERO_COMM_UCX_H
#define ZERO_COMM_UCX_H

#include <stddef.h>
#include <stdint.h>
#include "comm/comm_internal.h"

/* @p peer_err_mode: endpoints in UCP_ERR_HANDLING_MODE_PEER (UCX reports a
 * failed peer itself; slower transports on shared memory). @p tls: UCX's
 * transport list for this worker's context (as UCX_TLS), NULL: UCX_TLS or
 * UCX's default. */
zero_status_t zero_ucx_create(int rank, int size, size_t chunk_bytes, int chunks_in_flight, int peer_err_mode,
                              const char *tls, zero_ucx_t **ucx_p);
/* The worker address to publish (valid until destroy). */
void zero_ucx_address(const zero_ucx_t *ucx, const void **addr_p, size_t *len_p);
/* Connects to the left and right neighbours, given their addresses. */
zero_status_t zero_ucx_connect(zero_ucx_t *ucx, const void *left_addr, const void *right_addr, double timeout_s);
/* The ranks its errors name: @p job_ranks[r] for rank r (a split
 * communicator's ranks as the job's; not copied: it outlives the worker).
 * NULL (the default): its own ranks. */
void zero_ucx_name_ranks(zero_ucx_t *ucx, const int *job_ranks);
/* Closes the endpoints (flushing unless @p force) and frees everything. NULL allowed. */
void zero_ucx_destroy(zero_ucx_t *ucx, int force, double timeout_s);

/* The worker's event fd and arm (see ucp_worker_arm): 1 when it is safe to sleep on the fd. */
int zero_ucx_efd(const zero_ucx_t *ucx);
int zero_ucx_arm(zero_ucx_t *ucx);
/* Progresses the worker; returns the number of events. */
unsigned zero_ucx_progress(zero_ucx_t *ucx);

/* Starts @p desc as the active collective (one at a time). */
zero_status_t zero_ucx_coll_start(zero_ucx_t *ucx, const zero_coll_desc_t *desc, uint32_t seq);
/* Advances the active collective. Returns ZERO_INPROGRESS, ZERO_OK (done) or
 * an error (logged, naming the peer). *progressed_p: whether anything moved.
 * A collective idle for more than @p timeout_s fails with ZERO_ERR_TIMEOUT. */
zero_status_t zero_ucx_coll_advance(zero_ucx_t *ucx, double now, double timeout_s, int *progressed_p,
                                    int *peer_p);
/* Abandons the active collective after a failure: cancels what can be
 * cancelled; UCX requests still running are released when they end. */
void zero_ucx_coll_abort(zero_ucx_t *ucx);
/* A neighbour whose endpoint reported an error, or -1. */
int zero_ucx_failed_peer(const zero_ucx_t *ucx);

#endif /* ZERO_COMM_UCX_H */
