/*
 * Quantized collectives: ZeRO++'s qwZ all-gather (and the qgZ reduce-scatter)
 * over the communicator's ordinary backends.
 *
 * The codec (quant.h) runs at the edges and the backends carry its output as
 * plain bytes, so the ring (ucx), the intra-node direct path (shm) and the
 * world of one (self) all carry quantized collectives without knowing the
 * format, and a new backend carries them too. Encoding runs on the caller's
 * thread when the collective starts; decoding runs when the backend has moved
 * the bytes, before the request completes (comm.c's zero_comm_finish_t), on
 * the progress thread: the caller's wait returns decoded values.
 *
 * Every rank's block, its own included, is decoded from its encoded form, so
 * every rank ends with the same values (data-parallel replicas must agree).
 *
 * The wire buffer is the caller's: zero_comm_quant_wire_bytes() bytes of host
 * memory, untouched until the request completes. Taken from
 * zero_comm_mem_alloc on a multi-rank node, the direct path carries the
 * collective; ordinary memory goes over the ring.
 */
#ifndef ZERO_COMM_QUANT_COLL_H
#define ZERO_COMM_QUANT_COLL_H

#include <zero/comm.h>
#include "comm/quant.h"

/* Bytes between ranks' encoded blocks in the wire buffer (a multiple of 16). */
size_t zero_comm_quant_stride(zero_quant_bits_t bits, size_t count);
/* Bytes of the wire buffer of a quantized all-gather of @p count elements per
 * rank over @p size ranks. */
size_t zero_comm_quant_wire_bytes(zero_quant_bits_t bits, size_t count, int size);

/* All-gather of @p count elements of @p dtype (ZERO_FP32, ZERO_BF16 or
 * ZERO_FP16) per rank, each rank's block travelling encoded with @p bits:
 * recvbuf receives size x count decoded values in rank order. @p sendbuf may
 * be recvbuf + rank x count (in place). Host memory only. Errors as
 * zero_comm_allgather_start, and ZERO_ERR_INVALID_ARG for a bad dtype or bits. */
zero_status_t zero_comm_allgather_quant_start(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                              zero_dtype_t dtype, zero_quant_bits_t bits, void *wire,
                                              zero_comm_request_h *request_p);

/* The all-gather above, decoding only the blocks of ranks [@p first,
 * @p first + @p nblocks) into @p partbuf (nblocks x count values, rank
 * order): for a caller that keeps a part of the result (hpZ's refresh keeps
 * its group's part), the other blocks still travel but cost no decoding and
 * no copy. Every rank encodes its block at the call, so @p sendbuf may lie
 * in @p partbuf. Errors as above, and
 * ZERO_ERR_INVALID_ARG for a range outside [0, size). */
zero_status_t zero_comm_allgather_quant_part_start(zero_comm_h comm, const void *sendbuf, void *partbuf, size_t count,
                                                   zero_dtype_t dtype, zero_quant_bits_t bits, int first, int nblocks,
                                                   void *wire, zero_comm_request_h *request_p);

/* Bytes of the wire buffer of a quantized reduce-scatter of @p count elements
 * per rank over @p size ranks: the encoded blocks sent, those received, and
 * the fp32 sum. */
size_t zero_comm_reduce_scatter_quant_wire_bytes(zero_quant_bits_t bits, size_t count, int size);

/* Reduce-scatter (ZeRO++ qgZ) of size x count elements of @p dtype into
 * @p recvbuf (count elements), with @p op ZERO_COMM_SUM or ZERO_COMM_AVG. Each
 * rank encodes block k of sendbuf for rank k; one all-to-all moves the encoded
 * blocks (each rank's data crosses the wire once, quantized once); each rank
 * decodes the W blocks it received and adds them in fp32 in rank order, then
 * rounds once to @p dtype. So the error is the sum of W independent block
 * roundings, never a re-quantized running sum: it does not compound with the
 * world size. A non-finite input makes its block NaN and so the sum's
 * elements of that block: overflow is still detected. @p recvbuf may be
 * sendbuf + rank x count (in place). Host memory only. */
zero_status_t zero_comm_reduce_scatter_quant_start(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                                   zero_dtype_t dtype, zero_comm_op_t op, zero_quant_bits_t bits,
                                                   void *wire, zero_comm_request_h *request_p);

/* Bytes of the wire buffer of the hierarchical form below: the encoded
 * blocks sent and received at each level and the node's fp32 partial sums. */
size_t zero_comm_reduce_scatter_quant_hier_wire_bytes(zero_quant_bits_t bits, size_t count, int local_size,
                                                      int nodes);

/* The same reduce-scatter in two levels (ZeRO++'s hierarchical qgZ), for a
 * world of N nodes of P ranks numbered node by node (rank n x P + p): @p node
 * joins this node's ranks (rank p of P), @p cross the ranks of the same p on
 * every node (rank n of N), both split from the world (zero_comm_split).
 * Level 1, inside the node: an all-to-all of the encoded blocks, each rank
 * getting, for every node n, the blocks meant for rank (n, p), which it sums
 * in fp32 over the node's ranks and encodes again. Level 2, across nodes: an
 * all-to-all of those partial sums, each rank summing the N it gets in fp32
 * and rounding once. Only level 2 crosses nodes: each rank sends N - 1
 * encoded blocks of count elements, where the flat form relays W - 1 around
 * the ring. The error is two block roundings per element (the node's input,
 * the node's sum) plus the sum's, whatever N and P. A non-finite input makes
 * its block NaN at both levels. recvbuf may be in sendbuf (in place); both
 * levels are queued at once (the second waits for the first); the request
 * completes with the second. Host memory only; @p op SUM or AVG (over P x N). */
zero_status_t zero_comm_reduce_scatter_quant_hier_start(zero_comm_h node, zero_comm_h cross, const void *sendbuf,
                                                        void *recvbuf, size_t count, zero_dtype_t dtype,
                                                        zero_comm_op_t op, zero_quant_bits_t bits, void *wire,
                                                        zero_comm_request_h *request_p);

#endif /* ZERO_COMM_QUANT_COLL_H */
