/*
 * The staged backend (builds with the cuda feature only): collectives on
 * device memory through a ring of pinned host slots and the host backends.
 *
 * Per collective, on the communicator's streams:
 *   order stream:  [wait for the caller's wait_event] -> record "start" ->
 *                  wait until the host releases this collective (a pinned
 *                  word the driver polls, cuStreamWaitValue32) ->
 *                  [record the caller's done_event]
 *   progress thread, once "start" is reached, chunk by chunk over the ring
 *   (staged_plan.h): copy the chunk in (device to slot, copy-in stream), run
 *   the host collective on the slot (direct or ucx backend, in place), copy
 *   it back out (copy-out stream); the copy of chunk k+1 runs while the
 *   collective of chunk k does. When every chunk is back, it writes the
 *   word, and the order stream (and so the caller's stream, waiting on
 *   done_event) goes on: the caller's stream never waits for the host.
 * On a failure (a peer died, a CUDA error, a timeout) every collective still
 * waiting is released at once, so no stream stays blocked; the error comes
 * back from the request, as for every backend.
 *
 * The slots are shared memory (zero_comm_mem_alloc), pinned with
 * cudaHostRegister, so ranks on one node run the host collective in place
 * through the direct path; where pinning fails (ulimit -l), they stay
 * pageable, with a warning.
 */
#ifndef ZERO_COMM_STAGED_H
#define ZERO_COMM_STAGED_H

#include "zero_build_config.h"
#include "comm/comm_internal.h"
#include "comm/staged_plan.h"

#if HAVE_CUDA
/* This rank's device key (staged_plan.h): "host/PCI bus id" of @p device
 * (-1: LOCAL_RANK modulo the visible devices); all zero when that device
 * cannot be asked. */
void zero_staged_device_key(int device, int local_rank, unsigned char key[ZERO_DEVICE_KEY_BYTES]);
/* Releases the backend's streams, slots and events (NULL allowed). After a
 * failure (@p failed) it does not wait for work queued behind the caller's
 * events. */
void zero_staged_destroy(zero_comm_t *comm, zero_staged_t *staged, int failed);
#endif

#endif /* ZERO_COMM_STAGED_H */
