/* Which buckets CPU offload takes at offload_optimizer.ratio < 1 (see offload_ratio.h). */
#define ZERO_LOG_MODULE "offload"
#include "offload/offload_ratio.h"
#include "util/alloc.h"
#include "util/log.h"

#include <math.h>
#include <string.h>

zero_status_t zero_offload_ratio_pick(int num_buckets, const int *arrival, double ratio, unsigned char *offloaded,
                                      int *count_p)
{
    int take;
    if (num_buckets < 0 || !(ratio >= 0.0 && ratio <= 1.0) || (num_buckets > 0 && offloaded == NULL)) {
        ZERO_LOG_ERROR("offload_optimizer.ratio %g over %d buckets: the ratio must lie in [0, 1] and the count be "
                       "non-negative", ratio, num_buckets);
        return ZERO_ERR_INVALID_ARG;
    }
    if (num_buckets == 0) {
        if (count_p != NULL)
            *count_p = 0;
        return ZERO_OK;
    }
    memset(offloaded, 0, (size_t)num_buckets);
    if (arrival != NULL) {
        /* a permutation: every index once (offloaded[] doubles as the seen marks, cleared below) */
        for (int k = 0; k < num_buckets; k++) {
            int b = arrival[k];
            if (b < 0 || b >= num_buckets || offloaded[b]) {
                ZERO_LOG_ERROR("offload_optimizer.ratio: arrival order entry %d (bucket %d) is %s", k, b,
                               b < 0 || b >= num_buckets ? "out of range" : "a repeat");
                memset(offloaded, 0, (size_t)num_buckets);
                return ZERO_ERR_INVALID_ARG;
            }
            offloaded[b] = 1;
        }
        memset(offloaded, 0, (size_t)num_buckets);
    }
    take = (int)floor(ratio * (double)num_buckets + 0.5);
    if (take == 0 && ratio > 0.0)
        take = 1;
    if (take > num_buckets)
        take = num_buckets;
    for (int k = 0; k < take; k++)
        offloaded[arrival != NULL ? arrival[k] : num_buckets - 1 - k] = 1;
    if (count_p != NULL)
        *count_p = take;
    return ZERO_OK;
}

void zero_offload_map_free(zero_offload_map_t *map)
{
    if (map == NULL)
        return;
    for (int g = 0; g < ZERO_DTYPE_COUNT; g++)
        zero_free(map->extents[g]);
    memset(map, 0, sizeof(*map));
}

zero_status_t zero_offload_map_build(int num_groups, const size_t *own_length, int num_buckets,
                                     const zero_offload_bucket_t *buckets, const unsigned char *offloaded,
                                     zero_offload_map_t *map)
{
    size_t next[ZERO_DTYPE_COUNT] = {0};
    memset(map, 0, sizeof(*map));
    if (num_groups < 1 || num_groups > ZERO_DTYPE_COUNT || num_buckets < 0 || (num_buckets > 0 && buckets == NULL)) {
        ZERO_LOG_ERROR("offload placement: %d groups and %d buckets are outside 1..%d and 0..", num_groups,
                       num_buckets, ZERO_DTYPE_COUNT);
        return ZERO_ERR_INVALID_ARG;
    }
    map->num_groups = num_groups;
    for (int g = 0; g < num_groups; g++) {
        /* at most one extent per bucket of the group, plus a group without buckets */
        map->extents[g] = zero_calloc((size_t)num_buckets + 1, sizeof(zero_offload_extent_t));
        if (map->extents[g] == NULL) {
            ZERO_LOG_ERROR("offload placement: out of memory");
            zero_offload_map_free(map);
            return ZERO_ERR_NO_MEMORY;
        }
    }
    for (int b = 0; b < num_buckets; b++) {
        const zero_offload_bucket_t *bk = &buckets[b];
        int g = bk->group, host = offloaded == NULL || offloaded[b];
        zero_offload_extent_t *last;
        if (g < 0 || g >= num_groups || bk->begin != next[g] || bk->count > own_length[g] - bk->begin) {
            ZERO_LOG_ERROR("offload placement: bucket %d (group %d, owned [%zu, +%zu)) does not follow on at %zu "
                           "inside the group's %zu elements", b, g, bk->begin, bk->count,
                           g >= 0 && g < num_groups ? next[g] : 0, g >= 0 && g < num_groups ? own_length[g] : 0);
            zero_offload_map_free(map);
            return ZERO_ERR_INVALID_ARG;
        }
        next[g] += bk->count;
        if (bk->count == 0)
            continue;
        last = map->num_extents[g] > 0 ? &map->extents[g][map->num_extents[g] - 1] : NULL;
        if (last != NULL && last->on_host == host) {
            last->count += bk->count;
        } else {
            map->extents[g][map->num_extents[g]++] =
                (zero_offload_extent_t){.begin = bk->begin, .count = bk->count, .on_host = host,
                                        .at = map->length[g][host]};
        }
        map->length[g][host] += bk->count;
    }
    for (int g = 0; g < num_groups; g++) {
        if (num_buckets == 0 && own_length[g] > 0) {
            /* no bucket list: the whole group on the host (ratio 1) */
            map->extents[g][0] = (zero_offload_extent_t){.begin = 0, .count = own_length[g], .on_host = 1, .at = 0};
            map->num_extents[g] = 1;
            map->length[g][1] = own_length[g];
        } else if (next[g] != own_length[g]) {
            ZERO_LOG_ERROR("offload placement: the buckets of group %d cover %zu of its %zu owned elements", g,
                           next[g], own_length[g]);
            zero_offload_map_free(map);
            return ZERO_ERR_INVALID_ARG;
        }
    }
    return ZERO_OK;
}

const zero_offload_extent_t *zero_offload_map_find(const zero_offload_map_t *map, int group, size_t so)
{
    size_t lo = 0, hi;
    const zero_offload_extent_t *x;
    if (group < 0 || group >= map->num_groups || map->num_extents[group] == 0)
        return NULL;
    x = map->extents[group];
    hi = map->num_extents[group] - 1;
    while (lo < hi) {   /* the last extent that begins at or before so */
        size_t mid = (lo + hi + 1) / 2;
        if (x[mid].begin <= so)
            lo = mid;
        else
            hi = mid - 1;
    }
    return so >= x[lo].begin && so - x[lo].begin < x[lo].count ? &x[lo] : NULL;
}

zero_status_t zero_offload_map_runs(const zero_offload_map_t *map, int group, size_t so, size_t count,
                                    zero_offload_run_fn fn, void *arg)
{
    size_t done = 0;
    while (done < count) {
        const zero_offload_extent_t *x = zero_offload_map_find(map, group, so + done);
        size_t in, n;
        zero_status_t status;
        if (x == NULL) {
            ZERO_LOG_ERROR("offload placement: owned [%zu, +%zu) of group %d runs past its end", so, count, group);
            return ZERO_ERR_INVALID_ARG;
        }
        in = so + done - x->begin;
        n = x->count - in < count - done ? x->count - in : count - done;
        if ((status = fn(arg, x->on_host, x->at + in, done, n)) != ZERO_OK)
            return status;
        done += n;
    }
    return ZERO_OK;
}
