#define ZERO_LOG_MODULE "partition"
#include "partition/layout.h"
#include "util/alloc.h"
#include "util/log.h"

#include <stdio.h>
#include <string.h>

static int add_overflows(size_t a, size_t b, size_t *sum_p)
{
    if (a > SIZE_MAX - b)
        return 1;
    *sum_p = a + b;
    return 0;
}

/* Rounds @p x up to a multiple of @p m (m >= 1); returns 1 on overflow. */
static int round_up(size_t x, size_t m, size_t *out_p)
{
    size_t r = x % m;
    if (r == 0) {
        *out_p = x;
        return 0;
    }
    return add_overflows(x, m - r, out_p);
}

static zero_status_t check_desc(const zero_layout_param_desc_t *d, int index, size_t *numel_p)
{
    size_t numel = 1;
    if (d->name == NULL || d->name[0] == '\0') {
        ZERO_LOG_ERROR("parameter %d has no name", index);
        return ZERO_ERR_INVALID_ARG;
    }
    if (strlen(d->name) >= ZERO_LAYOUT_MAX_NAME) {
        ZERO_LOG_ERROR("parameter %d: name longer than %d bytes", index, ZERO_LAYOUT_MAX_NAME - 1);
        return ZERO_ERR_INVALID_ARG;
    }
    if ((unsigned)d->dtype >= ZERO_DTYPE_COUNT) {   /* the collective-only types (u8, i64, ...) included */
        ZERO_LOG_ERROR("parameter %s: dtype %d (%s) is not a training type (fp32, fp16, bf16)", d->name,
                       (int)d->dtype, zero_dtype_string(d->dtype));
        return ZERO_ERR_INVALID_ARG;
    }
    if (d->ndim < 0 || d->ndim > ZERO_LAYOUT_MAX_NDIM) {
        ZERO_LOG_ERROR("parameter %s: ndim %d outside 0..%d", d->name, d->ndim, ZERO_LAYOUT_MAX_NDIM);
        return ZERO_ERR_INVALID_ARG;
    }
    for (int i = 0; i < d->ndim; i++) {
        if (d->shape[i] < 0) {
            ZERO_LOG_ERROR("parameter %s: negative dimension %lld at axis %d", d->name,
                           (long long)d->shape[i], i);
            return ZERO_ERR_INVALID_ARG;
        }
        if (d->shape[i] != 0 && numel > SIZE_MAX / (size_t)d->shape[i]) {
            ZERO_LOG_ERROR("parameter %s: element count overflows", d->name);
            return ZERO_ERR_OVERFLOW;
        }
        numel *= (size_t)d->shape[i];
    }
    *numel_p = numel;
    return ZERO_OK;
}

/* A group of caller-placed parameters: their offsets as given (increasing in
 * registration order, not overlapping), one bucket over all of them, padded
 * at its end to a multiple of @p granule. */
static zero_status_t build_fixed_group(zero_layout_t *layout, int g, size_t granule)
{
    zero_layout_group_t *grp = &layout->groups[g];
    zero_layout_bucket_t *bk = &layout->buckets[layout->num_buckets];
    size_t end = 0;
    int prev = -1;
    bk->group = g;
    bk->offset = 0;
    bk->first_param = -1;
    for (int i = 0; i < layout->num_params; i++) {
        zero_layout_param_t *p = &layout->params[i];
        if (p->group != g)
            continue;
        if (p->offset < end) {
            ZERO_LOG_ERROR("parameter %s: offset %zu overlaps %s, which ends at %zu (fixed offsets must increase in "
                           "registration order)", p->name, p->offset, layout->params[prev].name, end);
            return ZERO_ERR_INVALID_ARG;
        }
        if (p->numel > SIZE_MAX - p->offset) {
            ZERO_LOG_ERROR("parameter %s: offset %zu plus %zu elements overflows", p->name, p->offset, p->numel);
            return ZERO_ERR_OVERFLOW;
        }
        if (bk->first_param < 0)
            bk->first_param = i;
        bk->num_params = i - bk->first_param + 1;
        p->bucket = layout->num_buckets;
        end = p->offset + p->numel;
        prev = i;
    }
    bk->used = end;
    if (round_up(end, granule, &bk->length)) {
        ZERO_LOG_ERROR("flat layout size overflows");
        return ZERO_ERR_OVERFLOW;
    }
    layout->num_buckets++;
    grp->num_buckets = 1;
    grp->length = bk->length;   /* an all-empty group gets its granule in the pass below */
    grp->shard_length = grp->length / (size_t)layout->world_size;
    return ZERO_OK;
}

zero_status_t zero_layout_build(const zero_layout_param_desc_t *params, int num_params,
                                int world_size, size_t alignment, size_t bucket_elems,
                                zero_layout_t **layout_p)
{
    return zero_layout_build_at(params, NULL, num_params, world_size, alignment, bucket_elems, layout_p);
}

zero_status_t zero_layout_build_at(const zero_layout_param_desc_t *params, const size_t *offsets, int num_params,
                                   int world_size, size_t alignment, size_t bucket_elems,
                                   zero_layout_t **layout_p)
{
    zero_status_t status = ZERO_OK;
    zero_layout_t *layout;
    int group_of_dtype[ZERO_DTYPE_COUNT];
    size_t granule;

    if (layout_p == NULL || num_params < 0 || (num_params > 0 && params == NULL)) {
        ZERO_LOG_ERROR("invalid layout request (%d parameters)", num_params);
        return ZERO_ERR_INVALID_ARG;
    }
    if (world_size < 1 || alignment < 1 || bucket_elems < 1) {
        ZERO_LOG_ERROR("invalid layout geometry: world size %d, alignment %zu, bucket %zu elements",
                       world_size, alignment, bucket_elems);
        return ZERO_ERR_INVALID_ARG;
    }
    if (alignment > SIZE_MAX / (size_t)world_size) {
        ZERO_LOG_ERROR("alignment %zu times world size %d overflows", alignment, world_size);
        return ZERO_ERR_OVERFLOW;
    }
    granule = alignment * (size_t)world_size;

    layout = zero_calloc(1, sizeof(*layout));
    if (layout == NULL)
        goto err_nomem;
    layout->world_size = world_size;
    layout->alignment = alignment;
    layout->bucket_elems = bucket_elems;
    layout->num_params = num_params;
    /* A bucket holds at least one parameter, so there are at most num_params buckets. */
    layout->params = zero_calloc((size_t)(num_params ? num_params : 1), sizeof(*layout->params));
    layout->buckets = zero_calloc((size_t)(num_params ? num_params : 1), sizeof(*layout->buckets));
    if (layout->params == NULL || layout->buckets == NULL)
        goto err_nomem;

    for (int d = 0; d < ZERO_DTYPE_COUNT; d++)
        group_of_dtype[d] = -1;
    for (int i = 0; i < num_params; i++) {
        zero_layout_param_t *p = &layout->params[i];
        const zero_layout_param_desc_t *d = &params[i];
        int fixed = offsets != NULL && offsets[i] != ZERO_LAYOUT_NO_OFFSET;
        status = check_desc(d, i, &p->numel);
        if (status != ZERO_OK)
            goto err;
        for (int j = 0; j < i; j++) {
            if (strcmp(layout->params[j].name, d->name) == 0) {
                ZERO_LOG_ERROR("parameter %d: name %s already registered as parameter %d", i, d->name, j);
                status = ZERO_ERR_INVALID_ARG;
                goto err;
            }
        }
        snprintf(p->name, sizeof(p->name), "%s", d->name);
        p->dtype = d->dtype;
        p->ndim = d->ndim;
        memcpy(p->shape, d->shape, sizeof(p->shape[0]) * (size_t)d->ndim);
        if (group_of_dtype[d->dtype] < 0) {
            group_of_dtype[d->dtype] = layout->num_groups;
            layout->groups[layout->num_groups].dtype = d->dtype;
            layout->groups[layout->num_groups].fixed = fixed ? 1 : -1;   /* as its first parameter */
            layout->num_groups++;
        }
        p->group = group_of_dtype[d->dtype];
        if ((layout->groups[p->group].fixed == 1) != fixed) {
            ZERO_LOG_ERROR("parameter %s: %s offset, but the %s parameters before it %s", d->name,
                           fixed ? "a fixed" : "no fixed", zero_dtype_string(d->dtype),
                           fixed ? "have none (fix the offsets of every parameter of a dtype or of none)"
                                    : "have fixed offsets");
            status = ZERO_ERR_INVALID_ARG;
            goto err;
        }
        if (fixed)
            p->offset = offsets[i];
    }

    /* Groups one after another; within a group, parameters in registration order. */
    for (int g = 0; g < layout->num_groups; g++) {
        zero_layout_group_t *grp = &layout->groups[g];
        zero_layout_bucket_t *cur = NULL;
        size_t next_bucket_offset = 0;
        grp->first_bucket = layout->num_buckets;
        if (grp->fixed == 1) {
            status = build_fixed_group(layout, g, granule);
            if (status != ZERO_OK)
                goto err;
            continue;
        }
        for (int i = 0; i < num_params; i++) {
            zero_layout_param_t *p = &layout->params[i];
            size_t start, end;
            if (p->group != g)
                continue;
            if (cur != NULL) {
                if (round_up(cur->offset + cur->used, alignment, &start) ||
                    add_overflows(start, p->numel, &end))
                    goto err_overflow;
                if (end - cur->offset > bucket_elems) {
                    /* Close the current bucket; the parameter opens the next one. */
                    if (round_up(cur->used, granule, &cur->length) ||
                        add_overflows(cur->offset, cur->length, &next_bucket_offset))
                        goto err_overflow;
                    cur = NULL;
                }
            }
            if (cur == NULL) {
                cur = &layout->buckets[layout->num_buckets++];
                cur->group = g;
                cur->offset = next_bucket_offset;
                cur->first_param = i;
                cur->num_params = 0;
                start = cur->offset;
                if (add_overflows(start, p->numel, &end))
                    goto err_overflow;
            }
            p->offset = start;
            p->bucket = (int)(cur - layout->buckets);
            cur->used = end - cur->offset;
            cur->num_params = i - cur->first_param + 1;
        }
        if (cur != NULL) {
            if (round_up(cur->used, granule, &cur->length) ||
                add_overflows(cur->offset, cur->length, &next_bucket_offset))
                goto err_overflow;
            /* An empty-only bucket (all parameters with zero elements) still takes one granule,
             * so every bucket has a non-empty slice on every rank. */
            if (cur->length == 0) {
                cur->length = granule;
                next_bucket_offset = cur->offset + granule;
            }
        }
        grp->num_buckets = layout->num_buckets - grp->first_bucket;
        grp->length = next_bucket_offset;
        grp->shard_length = grp->length / (size_t)world_size;
    }
    /* Buckets closed mid-loop above may also be empty of elements: give them a granule too.
     * (Offsets were computed from lengths, so fix offsets in one more pass.) */
    for (int g = 0; g < layout->num_groups; g++) {
        zero_layout_group_t *grp = &layout->groups[g];
        size_t offset = 0;
        for (int b = grp->first_bucket; b < grp->first_bucket + grp->num_buckets; b++) {
            zero_layout_bucket_t *bk = &layout->buckets[b];
            size_t shift = offset - bk->offset;   /* >= 0: earlier buckets only grow */
            if (bk->length == 0)
                bk->length = granule;
            bk->offset = offset;
            for (int i = bk->first_param; i < bk->first_param + bk->num_params; i++)
                if (layout->params[i].group == g)
                    layout->params[i].offset += shift;
            offset += bk->length;
        }
        grp->length = offset;
        grp->shard_length = offset / (size_t)world_size;
    }

    for (int g = 0; g < layout->num_groups; g++)
        layout->groups[g].fixed = layout->groups[g].fixed == 1;
    *layout_p = layout;
    return ZERO_OK;

err_overflow:
    ZERO_LOG_ERROR("flat layout size overflows");
    status = ZERO_ERR_OVERFLOW;
    goto err;
err_nomem:
    ZERO_LOG_ERROR("out of memory building the layout of %d parameters", num_params);
    status = ZERO_ERR_NO_MEMORY;
err:
    zero_layout_destroy(layout);
    return status;
}

void zero_layout_destroy(zero_layout_t *layout)
{
    if (layout == NULL)
        return;
    zero_free(layout->params);
    zero_free(layout->buckets);
    zero_free(layout);
}

int zero_layout_find(const zero_layout_t *layout, const char *name)
{
    for (int i = 0; i < layout->num_params; i++)
        if (strcmp(layout->params[i].name, name) == 0)
            return i;
    return -1;
}

void zero_layout_bucket_slice(const zero_layout_t *layout, int b, int rank,
                              size_t *begin_p, size_t *end_p)
{
    const zero_layout_bucket_t *bk = &layout->buckets[b];
    size_t slice = bk->length / (size_t)layout->world_size;
    *begin_p = bk->offset + (size_t)rank * slice;
    *end_p = *begin_p + slice;
}

size_t zero_layout_bucket_shard_offset(const zero_layout_t *layout, int b)
{
    /* Bucket offsets are sums of lengths that all divide by world_size. */
    return layout->buckets[b].offset / (size_t)layout->world_size;
}

void zero_layout_rank_segments(const zero_layout_t *layout, int group, int rank,
                               zero_layout_segment_t *segments, size_t capacity, size_t *count_p)
{
    const zero_layout_group_t *grp = &layout->groups[group];
    size_t count = 0;
    for (int b = grp->first_bucket; b < grp->first_bucket + grp->num_buckets; b++) {
        const zero_layout_bucket_t *bk = &layout->buckets[b];
        size_t s, e, shard_base = zero_layout_bucket_shard_offset(layout, b);
        zero_layout_bucket_slice(layout, b, rank, &s, &e);
        for (int i = bk->first_param; i < bk->first_param + bk->num_params; i++) {
            const zero_layout_param_t *p = &layout->params[i];
            size_t lo, hi;
            if (p->group != group)
                continue;
            lo = p->offset > s ? p->offset : s;
            hi = p->offset + p->numel < e ? p->offset + p->numel : e;
            if (lo >= hi)
                continue;
            if (count < capacity) {
                segments[count].param = i;
                segments[count].param_offset = lo - p->offset;
                segments[count].shard_offset = shard_base + (lo - s);
                segments[count].length = hi - lo;
            }
            count++;
        }
    }
    *count_p = count;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t zero_layout_fingerprint(const zero_layout_t *layout)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    uint64_t fields[3] = {(uint64_t)layout->world_size, layout->alignment, layout->bucket_elems};
    h = fnv1a(h, fields, sizeof(fields));
    for (int i = 0; i < layout->num_params; i++) {
        const zero_layout_param_t *p = &layout->params[i];
        int64_t dims[ZERO_LAYOUT_MAX_NDIM + 2] = {(int64_t)p->dtype, (int64_t)p->ndim};
        memcpy(dims + 2, p->shape, sizeof(p->shape[0]) * (size_t)p->ndim);
        h = fnv1a(h, p->name, strlen(p->name) + 1);
        h = fnv1a(h, dims, sizeof(dims[0]) * (size_t)(p->ndim + 2));
        if (layout->groups[p->group].fixed) {   /* placed by the caller: the offsets decide too */
            uint64_t offset = p->offset;
            h = fnv1a(h, &offset, sizeof(offset));
        }
    }
    return h;
}

int zero_layout_same_model(const zero_layout_t *a, const zero_layout_t *b, char *why, size_t why_size)
{
    if (a->num_params != b->num_params) {
        snprintf(why, why_size, "%d parameters vs %d", a->num_params, b->num_params);
        return 0;
    }
    for (int i = 0; i < a->num_params; i++) {
        const zero_layout_param_t *p = &a->params[i], *q = &b->params[i];
        if (strcmp(p->name, q->name) != 0) {
            snprintf(why, why_size, "parameter %d is %s vs %s", i, p->name, q->name);
            return 0;
        }
        if (p->dtype != q->dtype) {
            snprintf(why, why_size, "parameter %s: dtype %s vs %s", p->name,
                     zero_dtype_string(p->dtype), zero_dtype_string(q->dtype));
            return 0;
        }
        if (p->ndim != q->ndim || memcmp(p->shape, q->shape, sizeof(p->shape[0]) * (size_t)p->ndim) != 0) {
            snprintf(why, why_size, "parameter %s: shapes differ", p->name);
            return 0;
        }
    }
    return 1;
}
