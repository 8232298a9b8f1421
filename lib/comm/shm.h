/*
 * The intra-node direct path: shareable host memory (zero_comm_mem_alloc) and
 * collectives that read the peers' buffers in place.
 *
 * Every rank owns a small control page (a memfd mapped shared) that holds its
 * handshake words and the descriptor of its current collective. At creation
 * every rank publishes (pid, fd of the control page) in its rendezvous record;
 * on one node every rank maps every peer's page through /proc/<pid>/fd/<fd>.
 * Buffers from zero_shm_alloc are memfd segments too, mapped by the peers the
 * same way, lazily, and cached by (rank, segment id).
 *
 * Per collective (sequence number s, the same on every rank):
 *   1. announce: a rank writes its descriptor (kind, count, dtype, op, and for
 *      each buffer: segment id, fd, size, offset, or "not shareable") and
 *      publishes posted = s+1; it waits for every peer's posted == s+1 and
 *      reads their descriptors. Every rank sees the same descriptors, so every
 *      rank makes the same choice: direct when all are shareable, else the ring.
 *   2. direct: a fused pass reads the peers' inputs and writes this rank's
 *      output (allreduce: reduce-scatter, a "mid" handshake, then allgather).
 *   3. done = s+1, then wait for every peer's done == s+1, so no rank reuses a
 *      buffer that a peer still reads.
 * Every wait spins briefly, then sleeps on a shared futex in short slices,
 * checking the rendezvous (dead or failed ranks) and the timeout in between.
 */
#ifndef ZERO_COMM_SHM_H
#define ZERO_COMM_SHM_H

#include <stddef.h>
#include <stdint.h>
#include "comm/comm_internal.h"

#define ZERO_SHM_RECORD_BYTES 8   /* in the rendezvous record: be32 pid, be32 control fd */

typedef struct zero_shm zero_shm_t;

/* Checks the job's health: ZERO_OK, or the failure with *rank_p set. */
typedef zero_status_t (*zero_shm_health_fn)(void *arg, int *rank_p);

zero_status_t zero_shm_create(int rank, int size, zero_shm_t **shm_p);
/* Unmaps everything: this rank's segments (still allocated ones are released)
 * and every mapping of a peer's. NULL allowed. */
void zero_shm_destroy(zero_shm_t *shm);

/* The ranks its errors name, as zero_ucx_name_ranks. */
void zero_shm_name_ranks(zero_shm_t *shm, const int *job_ranks);

/* This rank's record for the rendezvous. */
void zero_shm_record(const zero_shm_t *shm, unsigned char rec[ZERO_SHM_RECORD_BYTES]);
/* Maps every peer's control page from their records (@p recs[rank]). Returns
 * 1 when all could be mapped; 0 otherwise (logged at DEBUG; the direct path
 * stays off). */
int zero_shm_attach(zero_shm_t *shm, const unsigned char *const *recs);
/* Turns the direct path on once every rank attached (agreed by the caller). */
void zero_shm_enable(zero_shm_t *shm);
int zero_shm_enabled(const zero_shm_t *shm);

/* The allocator (any thread; serialised internally). */
zero_status_t zero_shm_alloc(zero_shm_t *shm, size_t bytes, void **ptr_p);
zero_status_t zero_shm_free(zero_shm_t *shm, void *ptr);

/* Runs the handshake of collective @p seq and, when every rank's buffers are
 * shareable, the collective itself. *direct_p: 1 when it ran (ZERO_OK), 0 when
 * the caller must run the ring. Errors are logged naming the peer (*peer_p). */
zero_status_t zero_shm_coll(zero_shm_t *shm, const zero_coll_desc_t *d, uint32_t seq, double timeout_s,
                            zero_shm_health_fn health, void *health_arg, int *direct_p, int *peer_p);

#endif /* ZERO_COMM_SHM_H */
