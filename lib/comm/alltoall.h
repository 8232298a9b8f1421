/*
 * The all-to-all for callers above the communicator (internal API; the
 * engine's qgZ on device memory uses it).
 *
 * Rank r sends block q of @p sendbuf (count elements) to rank q and receives
 * rank q's block r into block q of @p recvbuf, its own block included. The
 * buffers hold size x count elements each and must not overlap. Host memory
 * goes over the host backends (the ring, the direct path, a world of one);
 * device memory over NCCL (one group of ncclSend/ncclRecv) or the staged
 * backend (each chunk's blocks through a pinned slot), ordered by @p order
 * as the public *_start_ordered collectives are (zero/comm.h). Every rank
 * must call it with the same count and dtype, in the same order as its other
 * collectives on @p comm.
 */
#ifndef ZERO_COMM_ALLTOALL_H
#define ZERO_COMM_ALLTOALL_H

#include <stddef.h>
#include <zero/comm.h>

/* Starts the all-to-all; ownership, lifetime and errors as
 * zero_comm_allreduce_start_ordered, and ZERO_ERR_INVALID_ARG for
 * overlapping buffers. */
zero_status_t zero_comm_alltoall_start_ordered(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                               zero_dtype_t dtype, zero_mem_kind_t mem_kind,
                                               const zero_comm_order_t *order, zero_comm_request_h *request_p);

#endif /* ZERO_COMM_ALLTOALL_H */
