/* Which buckets CPU offload takes at offload_optimizer.ratio < 1 (see offload_ratio.h). */
#define ZERO_LOG_MODULE "offload"
#include "offload/offload_ratio.h"
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
