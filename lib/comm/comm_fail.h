/*
 * Failing a communicator for a cause local to this rank (comm.c).
 *
 * A rank that fails on its own (a CUDA error of its kernels or events, an I/O
 * error of its state store, memory it could not get) while its peers are
 * about to wait for it in a collective would leave them waiting until
 * ZERO_COMM_TIMEOUT, or until its process exits. zero_comm_fail_local makes
 * every rank fail at once instead, naming this rank and the status: the
 * communicator fails here and the rendezvous tells every other rank, as when
 * a collective fails on this rank.
 *
 * For callers above the communicator (the engine); the backends' own
 * failures take the front's paths in comm.c.
 */
#ifndef ZERO_COMM_FAIL_H
#define ZERO_COMM_FAIL_H

#include <zero/comm.h>

/* Fails @p comm, and the communicator it was split from (whose rendezvous
 * reaches every rank), with @p status (not ZERO_OK) because of @p cause (a
 * phrase for the log: "rank R: <cause> (<status>); the communicator fails
 * ..."). Any thread; returns at once, the progress thread acts on it (at
 * the latest when zero_comm_destroy stops it, so a destroy right after
 * still tells the others). Does
 * nothing when the communicator already failed (the first cause is kept) or
 * in a world of one over the self backend (no progress thread: nobody
 * waits, and the communicator stays usable); a world of one over NCCL
 * fails, telling nobody.
 * NULL @p comm: nothing. */
void zero_comm_fail_local(zero_comm_h comm, zero_status_t status, const char *cause);

/* ZERO_OK while @p comm and the communicators it was split from are healthy;
 * else the status it failed with, and *rank_p the rank named as the cause
 * (-1: unknown), as a rank of the job (the communicator at the top of the
 * chain), also where @p comm is a split one whose own ranks differ. Any
 * thread; reads only what the progress thread recorded (a failure it has
 * not acted on yet reads as healthy). */
zero_status_t zero_comm_failure(zero_comm_h comm, int *rank_p);

#endif /* ZERO_COMM_FAIL_H */
