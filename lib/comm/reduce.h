/*
 * Reduction kernels of the host ring and the direct path. Every combination
 * they need: the received operand is either the user's dtype (first step) or
 * a partial, the local operand is always the user's dtype, and the result is
 * either a partial or the final value in the user's dtype (rounded once;
 * divided by the world size for ZERO_COMM_AVG). Partials of 16-bit types are
 * fp32; every other type is its own partial (the "is_f32" flags below then
 * change nothing).
 */
#ifndef ZERO_COMM_REDUCE_H
#define ZERO_COMM_REDUCE_H

#include <stddef.h>
#include <zero/comm.h>

/* out[i] = op(recv[i], local[i]) for i < n. @p out may equal @p local (in
 * place); it never overlaps @p recv. @p final_div: divisor applied to sums
 * (the world size for AVG on the last step, else 1). */
void zero_comm_reduce(zero_comm_op_t op, zero_dtype_t dtype, int recv_is_f32, const void *recv, const void *local,
                      int out_is_f32, void *out, size_t n, float final_div);

/* Bytes of one partial element of @p dtype (fp32 for 16-bit types, else the type's own size). */
size_t zero_comm_partial_size(zero_dtype_t dtype);

#endif /* ZERO_COMM_REDUCE_H */
