#define ZERO_LOG_MODULE "sampler"
#include <zero/sampler.h>

#include "util/alloc.h"
#include "util/log.h"

#include <string.h>

struct zero_sampler {
    zero_sampler_params_t p;
    uint64_t per_rank;         /* indices each rank gets per epoch */
    uint64_t batches;          /* micro-batches per epoch */
    uint64_t *perm;            /* the epoch's permutation of all samples */
    uint64_t perm_epoch;       /* epoch perm was built for */
    int perm_valid;
    uint64_t epoch, batch;     /* position of the next batch */
};

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A uniform integer in [0, bound) from a counter-based stream (rejection keeps it unbiased). */
static uint64_t uniform(uint64_t key, uint64_t *counter, uint64_t bound)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    for (;;) {
        uint64_t x = mix64(key ^ mix64((*counter)++));
        if (x < limit)
            return x % bound;
    }
}

static void build_perm(zero_sampler_h s, uint64_t epoch)
{
    uint64_t n = s->p.num_samples, key = mix64(s->p.seed) ^ mix64(epoch + 0x5151);
    uint64_t counter = 0;
    for (uint64_t i = 0; i < n; i++)
        s->perm[i] = i;
    if (s->p.shuffle)
        for (uint64_t i = n - 1; i > 0; i--) {   /* Fisher-Yates */
            uint64_t j = uniform(key, &counter, i + 1), t = s->perm[i];
            s->perm[i] = s->perm[j];
            s->perm[j] = t;
        }
    s->perm_epoch = epoch;
    s->perm_valid = 1;
}

zero_status_t zero_sampler_create(const zero_sampler_params_t *params, zero_sampler_h *sampler_p)
{
    zero_sampler_h s;
    uint64_t w;
    if (params == NULL || sampler_p == NULL) {
        ZERO_LOG_ERROR("zero_sampler_create: NULL argument");
        return ZERO_ERR_INVALID_ARG;
    }
    if (params->num_samples == 0 || params->batch_size == 0 || params->world_size < 1 || params->rank < 0 ||
        params->rank >= params->world_size) {
        ZERO_LOG_ERROR("zero_sampler_create: need num_samples >= 1, batch_size >= 1 and 0 <= rank < world_size "
                       "(got %llu, %llu, rank %d of %d)", (unsigned long long)params->num_samples,
                       (unsigned long long)params->batch_size, params->rank, params->world_size);
        return ZERO_ERR_INVALID_ARG;
    }
    if (params->num_samples > SIZE_MAX / sizeof(uint64_t)) {
        ZERO_LOG_ERROR("zero_sampler_create: %llu samples do not fit in memory", (unsigned long long)params->num_samples);
        return ZERO_ERR_OVERFLOW;
    }
    w = (uint64_t)params->world_size;
    s = zero_calloc(1, sizeof(*s));
    if (s == NULL)
        goto nomem;
    s->p = *params;
    s->per_rank = params->drop_last ? params->num_samples / w : (params->num_samples + w - 1) / w;
    s->batches = params->drop_last ? s->per_rank / params->batch_size
                                   : (s->per_rank + params->batch_size - 1) / params->batch_size;
    if (s->batches == 0) {
        ZERO_LOG_ERROR("zero_sampler_create: with drop_last, %llu samples over %d ranks leave no full batch of %llu",
                       (unsigned long long)params->num_samples, params->world_size,
                       (unsigned long long)params->batch_size);
        zero_free(s);
        return ZERO_ERR_INVALID_ARG;
    }
    s->perm = zero_malloc(params->num_samples * sizeof(uint64_t));
    if (s->perm == NULL) {
        zero_free(s);
        goto nomem;
    }
    *sampler_p = s;
    return ZERO_OK;
nomem:
    ZERO_LOG_ERROR("zero_sampler_create: out of memory");
    return ZERO_ERR_NO_MEMORY;
}

void zero_sampler_destroy(zero_sampler_h s)
{
    if (s == NULL)
        return;
    zero_free(s->perm);
    zero_free(s);
}

uint64_t zero_sampler_batches_per_epoch(zero_sampler_h s)
{
    return s ? s->batches : 0;
}

zero_status_t zero_sampler_next(zero_sampler_h s, uint64_t *indices, size_t *count_p, uint64_t *epoch_p,
                                uint64_t *batch_p)
{
    uint64_t first, last, w, n;
    if (s == NULL || indices == NULL || count_p == NULL)
        return ZERO_ERR_INVALID_ARG;
    if (!s->perm_valid || s->perm_epoch != s->epoch)
        build_perm(s, s->epoch);
    w = (uint64_t)s->p.world_size;
    n = s->p.num_samples;
    first = s->batch * s->p.batch_size;            /* position within the rank's share */
    last = first + s->p.batch_size;
    if (last > s->per_rank)
        last = s->per_rank;
    for (uint64_t k = first; k < last; k++) {
        uint64_t global = k * w + (uint64_t)s->p.rank;   /* strided split; padding wraps to the start */
        indices[k - first] = s->perm[global % n];
    }
    *count_p = (size_t)(last - first);
    if (epoch_p)
        *epoch_p = s->epoch;
    if (batch_p)
        *batch_p = s->batch;
    if (++s->batch == s->batches) {
        s->batch = 0;
        s->epoch++;
    }
    return ZERO_OK;
}

zero_status_t zero_sampler_seek(zero_sampler_h s, uint64_t step)
{
    if (s == NULL)
        return ZERO_ERR_INVALID_ARG;
    s->epoch = step / s->batches;
    s->batch = step % s->batches;
    return ZERO_OK;
}

void zero_sampler_position(zero_sampler_h s, uint64_t *epoch_p, uint64_t *batch_p)
{
    if (epoch_p)
        *epoch_p = s ? s->epoch : 0;
    if (batch_p)
        *batch_p = s ? s->batch : 0;
}
