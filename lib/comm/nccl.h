/*
 * The device-memory backend (builds with the cuda feature only): one NCCL
 * communicator per zero_comm, created on the first device call with the
 * unique id that rank 0 put into the rendezvous, and a communication stream.
 * Collectives are enqueued from the calling thread; the progress thread polls
 * their completion events and NCCL's asynchronous errors, and aborts the NCCL
 * communicator on a failure or a timeout so no rank hangs in a kernel.
 */
#ifndef ZERO_COMM_NCCL_H
#define ZERO_COMM_NCCL_H

#include "zero_build_config.h"
#include "comm/comm_internal.h"

#define ZERO_NCCL_ID_BYTES 128

#if HAVE_CUDA
/* Visible CUDA devices; 0 when the runtime reports none or fails (no driver). */
int zero_nccl_device_count(void);
zero_status_t zero_nccl_unique_id(unsigned char id[ZERO_NCCL_ID_BYTES]);
/* Agreement between the local set-up (device, stream) and ncclCommInitRank:
 * given this rank's set-up status, returns ZERO_OK only if every rank's set-up
 * succeeded (a rank that failed before joining would leave the others waiting
 * in ncclCommInitRank forever). */
typedef zero_status_t (*zero_nccl_agree_fn)(void *ctx, zero_status_t local);
/* The job's health while NCCL sets up: ZERO_OK, or the failure with *rank_p
 * set (another rank died: stop waiting for it). */
typedef zero_status_t (*zero_nccl_health_fn)(void *ctx, int *rank_p);
/* Sets up @p device and a stream, then (if @p agree is not NULL) agrees, then
 * creates the NCCL communicator, non-blocking: it polls the set-up, and
 * aborts it when @p health (may be NULL) reports a failure or @p timeout_s
 * passes (ZERO_ERR_TIMEOUT), so a rank that dies during the set-up fails the
 * others within the bound instead of leaving them in ncclCommInitRank. The
 * communicator stays non-blocking: a call that returns ncclInProgress is
 * polled the same way before its stream work is relied on. */
zero_status_t zero_nccl_create(const unsigned char id[ZERO_NCCL_ID_BYTES], int rank, int size, int device,
                               zero_nccl_agree_fn agree, void *agree_ctx, double timeout_s,
                               zero_nccl_health_fn health, void *health_ctx, zero_nccl_t **nccl_p);
/* @p abort: after a failure (ncclCommAbort rather than a collective destroy). */
void zero_nccl_destroy(zero_nccl_t *nccl, int abort);
/* Enqueues @p desc on the communication stream, after desc->wait_event (if
 * set) and before recording desc->done_event (if set); *event_p receives the
 * communicator's own completion event (polled by zero_nccl_test). */
zero_status_t zero_nccl_start(zero_nccl_t *nccl, const zero_coll_desc_t *desc, void **event_p);
/* ZERO_INPROGRESS, ZERO_OK, or the error (NCCL async error, CUDA error), logged. */
zero_status_t zero_nccl_test(zero_nccl_t *nccl, void *event);
void zero_nccl_event_free(void *event);
/* Aborts the NCCL communicator (any thread): kernels in flight return. */
void zero_nccl_abort(zero_nccl_t *nccl);
/* A world of one: device-to-device copies. With @p wait_event or @p done_event
 * (cudaEvent_t, NULL: none) the copy waits for the first on the device and
 * records the second after it (zero_comm_order_t); it is complete on return. */
zero_status_t zero_nccl_self_copy(void *dst, const void *src, size_t bytes, void *wait_event, void *done_event);
#endif

#endif /* ZERO_COMM_NCCL_H */
