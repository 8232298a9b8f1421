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
 * The CPU offload store (store_cpu.h) keeps the offloaded buckets' owned
 * slices in host memory and the others in device memory; the placement map
 * below says, for every owned offset, which side holds it and where
 * (docs/offload.md, "offload_optimizer.ratio").
 */
#ifndef ZERO_OFFLOAD_OFFLOAD_RATIO_H
#define ZERO_OFFLOAD_OFFLOAD_RATIO_H

#include <stddef.h>
#include <zero/status.h>
#include <zero/types.h>

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

/* One bucket's owned slice: owned offsets [begin, begin + count) of its dtype
 * group (zero_layout_bucket_shard_offset and length / W at stages 1-3). */
typedef struct zero_offload_bucket {
    int group;
    size_t begin, count;
} zero_offload_bucket_t;

/* A run of owned offsets of one group that lives on one side. */
typedef struct zero_offload_extent {
    size_t begin, count;   /* owned offsets [begin, begin + count) */
    int on_host;           /* 1: the host arrays (stepped on the CPU); 0: the device arrays */
    size_t at;             /* where the run starts in that side's arrays of the group */
} zero_offload_extent_t;

/*
 * Where each owned element of every group lives: extents in owned order,
 * neighbours on the same side merged, each side's arrays packed (the host
 * side of group g holds length[g][1] elements, the device side length[g][0]).
 */
typedef struct zero_offload_map {
    int num_groups;
    size_t length[ZERO_DTYPE_COUNT][2];            /* [group][on_host] */
    zero_offload_extent_t *extents[ZERO_DTYPE_COUNT];
    size_t num_extents[ZERO_DTYPE_COUNT];
} zero_offload_map_t;

/*
 * Builds @p map for @p num_groups groups of @p own_length elements from the
 * buckets' owned slices (@p buckets, in owned order within each group) and
 * @p offloaded (zero_offload_ratio_pick; NULL: every bucket on the host).
 * The slices of a group must tile [0, own_length) in order. Free with
 * zero_offload_map_free. Errors: ZERO_ERR_INVALID_ARG (logged: a group out of
 * range, a gap or overlap, naming the bucket), ZERO_ERR_NO_MEMORY.
 */
zero_status_t zero_offload_map_build(int num_groups, const size_t *own_length, int num_buckets,
                                     const zero_offload_bucket_t *buckets, const unsigned char *offloaded,
                                     zero_offload_map_t *map);

/* NULL allowed; leaves @p map empty. */
void zero_offload_map_free(zero_offload_map_t *map);

/*
 * The extent of @p group holding owned offset @p so (binary search), or NULL
 * when @p so is past the group's end.
 */
const zero_offload_extent_t *zero_offload_map_find(const zero_offload_map_t *map, int group, size_t so);

/*
 * Owned [so, so + count) of @p group cut where the side changes: calls
 * @p fn once per run, in order, with the run's side, its offset in that
 * side's arrays, its offset from @p so and its length; stops at the first
 * status other than ZERO_OK and returns it. ZERO_ERR_INVALID_ARG (logged) for
 * a range past the group's end.
 */
typedef zero_status_t (*zero_offload_run_fn)(void *arg, int on_host, size_t at, size_t offset, size_t count);
zero_status_t zero_offload_map_runs(const zero_offload_map_t *map, int group, size_t so, size_t count,
                                    zero_offload_run_fn fn, void *arg);

#endif /* ZERO_OFFLOAD_OFFLOAD_RATIO_H */
