/*
 * The split reduce-scatter: a sum reduce-scatter whose last addition is left
 * to the caller (internal API; the engine's fused step uses it).
 *
 * A plain reduce-scatter ends on every rank with "received partial + own
 * block" written to the output; whoever reads the result next (an optimizer
 * step) reads it back. This variant stops one addition short: rank r's own
 * block r of sendbuf is left as it is, and the sum of the OTHER ranks' blocks
 * r (the partial) is handed over for the caller to add where it consumes the
 * gradient (zero_optim_adam_step_fused adds it in registers).
 *
 * Where the partial is:
 *   - the direct path (one node, every rank's sendbuf from
 *     zero_comm_mem_alloc), two ranks: nothing moves; partial points at the
 *     peer's block r inside the peer's own sendbuf (zero copy). It stays
 *     valid as long as the peer does not write that block, and while this
 *     rank's direct path does not map more than 32 other shareable segments of
 *     that peer (its mapping cache); the caller must make sure the peer writes
 *     nothing there before this rank has read it (the engine: every rank
 *     clears its gradients only after the weights' allgather, which no rank
 *     enters before its step is done);
 *   - the direct path, three or more ranks: the other ranks' blocks summed
 *     into buf (in the order the plain reduce-scatter sums them);
 *   - the ring: the last hop's received chunks copied into buf.
 * The sums are the plain reduce-scatter's, in its order: adding own block to
 * the partial (fp32 for 16-bit data) gives its pre-division sum bit for bit.
 *
 * The partial's element type is partial_dtype (zero_comm_split_partial_dtype):
 * the data's type at world size 2 (the peer's block as it is), else the
 * reduction's partial type (fp32 for fp16/bf16, the type itself otherwise).
 */
#ifndef ZERO_COMM_REDUCE_SPLIT_H
#define ZERO_COMM_REDUCE_SPLIT_H

#include <stddef.h>
#include <zero/comm.h>

typedef struct zero_comm_split {
    void *buf;                  /* in: count elements of partial_dtype, the caller's (host memory) */
    const void *partial;        /* out, valid once the request completed: buf, or the peer's block */
} zero_comm_split_t;

/* The partial's element type for @p dtype on @p comm (see above). */
zero_dtype_t zero_comm_split_partial_dtype(zero_comm_h comm, zero_dtype_t dtype);

/*
 * Starts the split reduce-scatter of @p sendbuf ([size * count] of @p dtype,
 * host memory, read only) into @p split (borrowed until the request
 * completes). World size 2 or more; ZERO_ERR_UNSUPPORTED for one rank (there
 * is no peer) or device memory. Every rank must call it with the same count
 * and dtype, in the same order as its other collectives.
 */
zero_status_t zero_comm_reduce_scatter_split_start(zero_comm_h comm, const void *sendbuf, size_t count,
                                                   zero_dtype_t dtype, zero_comm_split_t *split,
                                                   zero_comm_request_h *request_p);

#endif /* ZERO_COMM_REDUCE_SPLIT_H */
