/*
 * The plain reference of qgZ's decode-and-sum, for the tests of its
 * implementations (the CUDA kernel in comm-quant-cuda, the engine's device
 * path on the CPU in codec_standin.c): @p w encoded int8 vectors of @p n
 * elements, @p stride bytes apart from @p enc, decoded and summed in fp32 in
 * order from +0 into @p acc (n floats, the caller's), divided by @p divisor
 * unless it is 1, rounded once to @p dtype (fp32, bf16, fp16) into @p y.
 * Written from the codec's documented arithmetic (comm/quant.h) with the
 * codec's own decode-and-add, not from quant_coll.c. Returns 0, or -1 when
 * the codec refuses the arguments.
 */
#ifndef ZERO_TEST_QUANT_SUM_REF_H
#define ZERO_TEST_QUANT_SUM_REF_H

#include <stddef.h>
#include <zero/types.h>

int quant_sum_ref(const void *enc, size_t stride, int w, size_t n, float divisor, zero_dtype_t dtype, float *acc,
                  void *y);

#endif /* ZERO_TEST_QUANT_SUM_REF_H */
