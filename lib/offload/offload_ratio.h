/*
 * offload_optimizer.ratio < 1 for device ranks: which buckets' optimizer
 * state goes to the host (stepped by the CPU offload store) and which stays
 * on the device (stepped by the device kernels). Host-side logic only, so the
 * unit tests check it without a GPU.
 *
 * The buckets offloaded are those whose gradients arrive first in the
 * backward: their CPU step has the most time to hide behind the rest of the
 * backward, while the buckets that arrive last, stepped on the GPU, finish
 * soonest after it. The backward produces the last registered parameters
 * first, so without a traced order the arrival order is the bucket index
 * from the highest down.
 *
 * The engine does not use this yet: ratio < 1 is refused by the config
 * (docs/offload.md, "CPU offload for device ranks").
 */
#ifndef ZERO_OFFLOAD_OFFLOAD_RATIO_H
#define ZERO_OFFLOAD_OFFLOAD_RATIO_H

#include <zero/status.h>

/*
 * Marks offloaded[b] = 1 for the round(ratio * num_buckets) buckets
 * (half away from zero; at least one when ratio > 0 and there is a bucket)
 * that come first in @p arrival (bucket indices in the order their gradients
 * arrive, a permutation of 0 .. num_buckets - 1; NULL: num_buckets - 1 down
 * to 0), 0 for the others; *count_p (may be NULL) gets how many.
 * Errors: ZERO_ERR_INVALID_ARG (logged) for ratio outside [0, 1], a negative
 * count, a NULL @p offloaded with buckets, or @p arrival that is not a
 * permutation (naming the first bad entry).
 */
zero_status_t zero_offload_ratio_pick(int num_buckets, const int *arrival, double ratio, unsigned char *offloaded,
                                      int *count_p);

#endif /* ZERO_OFFLOAD_OFFLOAD_RATIO_H */
