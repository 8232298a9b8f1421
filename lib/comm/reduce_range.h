/*
 * The reduce-scatter of a range: every rank holds the same window of a
 * reduce-scatter's input (a contiguous run of elements that lies in the
 * blocks of one or a few ranks) and only the ranks whose blocks it touches
 * receive a result, each its own part. That is MPI_Reduce_scatter with
 * uneven counts, for the engine's stage-3 gradient slices (engine_grad_slice.c):
 * a slice of a parameter is reduced straight into its owners' shards, moving
 * (W - 1) / W of the slice per rank on average where an allreduce of the
 * slice moves twice that.
 *
 * Every element is reduced in the same order as zero_comm_reduce_scatter
 * reduces it over the whole input on the same path (the ring, or the
 * intra-node direct path): the window's result is bit for bit the same as
 * that element's in the whole reduce-scatter.
 */
#ifndef ZERO_COMM_REDUCE_RANGE_H
#define ZERO_COMM_REDUCE_RANGE_H

#include <zero/comm.h>

/* Starts the reduce-scatter of elements [@p first, @p first + @p count) of a
 * virtual input of size x @p block elements, rank r's block being
 * [r x block, (r + 1) x block). @p sendbuf holds the window's @p count
 * elements, the same window on every rank. This rank receives the reduction
 * (@p op: ZERO_COMM_SUM or ZERO_COMM_AVG, over the world size) of the
 * window's part in its block, at @p recvbuf; nothing when the window misses
 * its block (recvbuf is then not touched, and may be any pointer). In place
 * when recvbuf == sendbuf + (the part's start - first) elements. Host memory
 * only. Ownership, lifetime and errors as zero_comm_reduce_scatter_start,
 * and ZERO_ERR_INVALID_ARG for a window outside the size x block elements. */
zero_status_t zero_comm_reduce_scatter_range_start(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t first,
                                                   size_t count, size_t block, zero_dtype_t dtype, zero_comm_op_t op,
                                                   zero_comm_request_h *request_p);

#endif /* ZERO_COMM_REDUCE_RANGE_H */
