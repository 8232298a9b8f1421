/*
 * Flat partition layout: the single source of truth for where every parameter
 * lives, which bucket it is reduced in and which rank owns which range
 * (DESIGN.md section 4). Used by the engine, checkpoints, merging and resharding.
 *
 * Parameters are laid out in registration order in one flat space per dtype
 * group. Each parameter starts at a multiple of `alignment` elements. The flat
 * space is cut into buckets of whole parameters of about `bucket_elems`
 * elements (a parameter larger than that is a bucket of its own); each bucket's
 * length is padded to a multiple of world_size * alignment, and rank r owns the
 * r-th of world_size equal slices of every bucket. Padding is zero and owned
 * like any other element, so every rank's slice of a bucket has the same length.
 *
 * A group whose parameters have fixed offsets (the caller's own buffer, used
 * in place) keeps those offsets, unaligned and packed as the caller has them,
 * and is ONE bucket: [0, end of its last parameter rounded up to a multiple
 * of world_size * alignment). Every rank then owns one contiguous range of the
 * caller's buffer, which is what lets an owned range of fp32 weights be the
 * master in place; the rounding is the only padding, at the end (the caller
 * provides it as slack). Elements between fixed parameters are padding too.
 *
 * A layout is immutable after zero_layout_build(); queries are thread-safe.
 */
#ifndef ZERO_PARTITION_LAYOUT_H
#define ZERO_PARTITION_LAYOUT_H

#include <stddef.h>
#include <stdint.h>
#include <zero/status.h>
#include <zero/types.h>

#define ZERO_LAYOUT_MAX_NDIM 8
#define ZERO_LAYOUT_MAX_NAME 256

typedef struct zero_layout_param_desc {
    const char *name;                      /* unique, <= ZERO_LAYOUT_MAX_NAME-1 bytes */
    zero_dtype_t dtype;
    int ndim;                              /* 0 (scalar) .. ZERO_LAYOUT_MAX_NDIM */
    int64_t shape[ZERO_LAYOUT_MAX_NDIM];
} zero_layout_param_desc_t;

typedef struct zero_layout_param {
    char name[ZERO_LAYOUT_MAX_NAME];
    zero_dtype_t dtype;
    int ndim;
    int64_t shape[ZERO_LAYOUT_MAX_NDIM];
    size_t numel;
    int group;          /* index into the layout's groups */
    size_t offset;      /* first element in the group's flat space (aligned) */
    int bucket;         /* global bucket index */
} zero_layout_param_t;

typedef struct zero_layout_bucket {
    int group;
    size_t offset;      /* first element in the group's flat space */
    size_t length;      /* padded length: a multiple of world_size * alignment */
    size_t used;        /* elements up to the end of its last parameter */
    int first_param;    /* parameters [first_param, first_param + num_params) */
    int num_params;
} zero_layout_bucket_t;

typedef struct zero_layout_group {
    zero_dtype_t dtype;
    size_t length;          /* flat elements including all padding */
    size_t shard_length;    /* elements each rank owns in this group: length / world_size */
    int first_bucket;
    int num_buckets;
    int fixed;              /* the parameters' offsets came from the caller (one bucket; not saved in checkpoints) */
} zero_layout_group_t;

/* A run of elements a rank owns that belongs to one parameter. */
typedef struct zero_layout_segment {
    int param;              /* parameter index */
    size_t param_offset;    /* first element within the parameter */
    size_t shard_offset;    /* first element within the rank's shard of the group */
    size_t length;
} zero_layout_segment_t;

typedef struct zero_layout {
    int world_size;
    size_t alignment;
    size_t bucket_elems;
    int num_params;
    zero_layout_param_t *params;
    int num_buckets;
    zero_layout_bucket_t *buckets;
    int num_groups;
    zero_layout_group_t groups[ZERO_DTYPE_COUNT];
} zero_layout_t;

/*
 * Builds the layout of @p num_params parameters (registration order) for
 * @p world_size ranks. @p alignment (elements, >= 1) and @p bucket_elems
 * (>= 1) as described above. Errors: ZERO_ERR_INVALID_ARG (duplicate or empty
 * name, bad shape, dtype, world size), ZERO_ERR_OVERFLOW (sizes overflow),
 * ZERO_ERR_NO_MEMORY; each logged naming the parameter.
 * The caller owns the result; release with zero_layout_destroy().
 */
zero_status_t zero_layout_build(const zero_layout_param_desc_t *params, int num_params,
                                int world_size, size_t alignment, size_t bucket_elems,
                                zero_layout_t **layout_p);

/* No fixed offset (zero_layout_build_at). */
#define ZERO_LAYOUT_NO_OFFSET SIZE_MAX

/*
 * As zero_layout_build, with parameter i placed at element @p offsets[i] of
 * its group's flat space where that is not ZERO_LAYOUT_NO_OFFSET (the
 * caller's own buffer, used in place: see the group rule above). Either every
 * parameter of a dtype has a fixed offset or none (ZERO_ERR_INVALID_ARG, as
 * are overlapping or decreasing offsets). @p offsets NULL: none fixed.
 */
zero_status_t zero_layout_build_at(const zero_layout_param_desc_t *params, const size_t *offsets, int num_params,
                                   int world_size, size_t alignment, size_t bucket_elems,
                                   zero_layout_t **layout_p);
void zero_layout_destroy(zero_layout_t *layout);

/* The parameter with this name, or -1. */
int zero_layout_find(const zero_layout_t *layout, const char *name);

/* Range [*begin_p, *end_p) of the group's flat space that @p rank owns within bucket @p b. */
void zero_layout_bucket_slice(const zero_layout_t *layout, int b, int rank,
                              size_t *begin_p, size_t *end_p);

/* Offset within the rank's shard of its group where bucket @p b's slice starts. */
size_t zero_layout_bucket_shard_offset(const zero_layout_t *layout, int b);

/*
 * The parameter segments rank @p rank owns in group @p group, in flat order
 * (padding excluded). Writes up to @p capacity segments into @p segments and
 * the total number into *count_p (call with capacity 0 to size the array).
 */
void zero_layout_rank_segments(const zero_layout_t *layout, int group, int rank,
                               zero_layout_segment_t *segments, size_t capacity, size_t *count_p);

/*
 * A 64-bit fingerprint of everything that decides placement (names, dtypes,
 * shapes, world size, alignment, bucket size): ranks compare it at setup, and
 * checkpoints store it, to detect mismatched registrations.
 */
uint64_t zero_layout_fingerprint(const zero_layout_t *layout);

/* Same model (names, dtypes, shapes, order), regardless of world size or buckets. Returns 1 or 0;
 * on 0 writes a message naming the first difference into @p why. */
int zero_layout_same_model(const zero_layout_t *a, const zero_layout_t *b, char *why, size_t why_size);

#endif /* ZERO_PARTITION_LAYOUT_H */
