/*
 * Stage-3 parameter shards on NVMe (param_store.h): element windows mapped
 * onto word ranges of an NVMe store that has one field (the "master" field,
 * used for raw bytes) and no optimizer states.
 */
#define ZERO_LOG_MODULE "offload"
#include "offload/param_store.h"
#include "util/alloc.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define WORD ((size_t)sizeof(float))

struct zero_param_store {
    /* The NVMe store: group g holds ceil(length * esz / 4) words (its whole
     * shard, so that a window's words are one range whatever its start);
     * NULL when max_in_cpu keeps every shard in memory. */
    zero_store_t *words;
    int num_groups;
    size_t esz[ZERO_DTYPE_COUNT];        /* bytes per element of each group */
    size_t length[ZERO_DTYPE_COUNT];
    /* max_in_cpu: elements [0, in_cpu[g]) of group g live in cpu[g], not in
     * the file (the file's bytes there are stale, never read as such). */
    size_t in_cpu[ZERO_DTYPE_COUNT];
    void *cpu[ZERO_DTYPE_COUNT];
    uint64_t cpu_bytes;
    size_t max_window;                   /* elements, any group, any start */
};

/* Elements of @p esz bytes that fit in @p words words from any start: a
 * start inside a word loses the bytes before it. */
static size_t window_elems(size_t words, size_t esz)
{
    size_t bytes = words * WORD;
    if (esz % WORD == 0)
        return bytes / esz;
    return bytes > WORD - esz ? (bytes - (WORD - esz)) / esz : 0;
}

/* DeepSpeed's offload_param.max_in_cpu: the first @p max_in_cpu elements of
 * this rank's shards, group after group, stay in host memory for the whole
 * run (a fixed split, as DeepSpeed's flat CPU buffer is, not a cache); the
 * rest live in the file. A 16-bit group's split falls on a word so that the
 * file part starts on one. */
static zero_status_t keep_in_cpu(zero_param_store_t *ps, uint64_t max_in_cpu)
{
    uint64_t left = max_in_cpu;
    for (int g = 0; g < ps->num_groups; g++) {
        size_t n = left < ps->length[g] ? (size_t)left : ps->length[g];
        zero_status_t status;
        if (n < ps->length[g])
            n = n * ps->esz[g] / WORD * WORD / ps->esz[g];   /* down to a whole word */
        left -= n;
        ps->in_cpu[g] = n;
        if (n == 0)
            continue;
        status = zero_mem_alloc(ZERO_MEM_HOST, n * ps->esz[g], "offload_param max_in_cpu shard", &ps->cpu[g]);
        if (status != ZERO_OK)
            return status;
        memset(ps->cpu[g], 0, n * ps->esz[g]);   /* zeros, as a fresh file reads; populated now, not in a step */
        ps->cpu_bytes += n * ps->esz[g];
    }
    return ZERO_OK;
}

zero_status_t zero_param_store_create(const zero_param_store_options_t *opts, zero_param_store_t **store_p)
{
    const zero_config_offload_param_t *op;
    const zero_config_t *config;
    zero_store_nvme_params_t params;
    zero_store_desc_t desc;
    zero_param_store_t *ps;
    size_t longest = 1, want_words = 1, shard_words = 2;
    int in_file = 0;   /* some group has elements in the file */
    zero_status_t status;

    *store_p = NULL;
    if (opts == NULL || opts->config == NULL || opts->num_groups < 1 || opts->num_groups > ZERO_DTYPE_COUNT) {
        ZERO_LOG_ERROR("offload_param: bad options for the parameter store");
        return ZERO_ERR_INVALID_ARG;
    }
    config = opts->config;
    op = &config->zero_optimization.offload_param;
    if (op->nvme_path == NULL || op->nvme_path[0] == '\0') {
        ZERO_LOG_ERROR("rank %d: zero_optimization.offload_param.device \"nvme\" needs offload_param.nvme_path (the "
                       "directory for the parameter file)", opts->rank);
        return ZERO_ERR_CONFIG;
    }
    ps = zero_calloc(1, sizeof(*ps));
    if (ps == NULL) {
        ZERO_LOG_ERROR("offload_param: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    ps->num_groups = opts->num_groups;
    memset(&desc, 0, sizeof(desc));
    desc.kind = ZERO_MEM_HOST;
    desc.num_groups = opts->num_groups;
    desc.num_states = 0;
    for (int g = 0; g < opts->num_groups; g++) {
        size_t esz = zero_dtype_size(opts->dtype[g]);
        if (esz == 0 || esz > 8) {
            ZERO_LOG_ERROR("offload_param: group %d has no element size", g);
            zero_free(ps);
            return ZERO_ERR_INVALID_ARG;
        }
        ps->esz[g] = esz;
        ps->length[g] = opts->length[g];
        desc.length[g] = (opts->length[g] * esz + WORD - 1) / WORD;
    }
    status = keep_in_cpu(ps, op->max_in_cpu);
    if (status != ZERO_OK) {
        zero_param_store_destroy(ps);
        return status;
    }
    for (int g = 0; g < opts->num_groups; g++) {
        size_t esz = ps->esz[g], file_words;
        if (ps->in_cpu[g] == ps->length[g])
            continue;   /* all in memory: this group asks nothing of the buffers */
        in_file = 1;
        if (desc.length[g] > longest)
            longest = desc.length[g];
        /* a buffer holds buffer_size elements of this group from any start */
        {
            uint64_t elems = op->buffer_size;
            size_t words = elems > SIZE_MAX / 8 ? SIZE_MAX / 8 : (size_t)((elems * esz + WORD - 1) / WORD + 1);
            if (words > want_words)
                want_words = words;
        }
        /* ... but all the buffers together need hold no more than the part of
         * the shard in the file (a small model: DeepSpeed's 1e8 elements per
         * buffer would be several times its shard) */
        file_words = desc.length[g] - ps->in_cpu[g] * esz / WORD;
        file_words = (file_words + (size_t)op->buffer_count - 1) / (size_t)op->buffer_count + 1;
        if (file_words > shard_words)
            shard_words = file_words;
    }
    if (!in_file) {
        /* no file, but a wrong nvme_path is still the config's mistake: say
         * so now, not when a larger model first needs the file */
        struct stat st;
        int rc = stat(op->nvme_path, &st);
        if (rc != 0 || !S_ISDIR(st.st_mode)) {
            ZERO_LOG_ERROR("rank %d: offload_param.nvme_path %s: %s", opts->rank, op->nvme_path,
                           rc != 0 ? strerror(errno) : "not a directory");
            zero_param_store_destroy(ps);
            return ZERO_ERR_IO;
        }
        ZERO_LOG_INFO("offload_param: rank %d keeps all its %llu bytes of parameter shards in memory "
                      "(offload_param.max_in_cpu %llu elements): no parameter file", opts->rank,
                      (unsigned long long)ps->cpu_bytes, (unsigned long long)op->max_in_cpu);
        ps->max_window = SIZE_MAX;
        *store_p = ps;
        return ZERO_OK;
    }
    zero_store_nvme_params_default(&params);
    params.dir = op->nvme_path;
    params.rank = opts->rank;
    params.buffer_count = op->buffer_count > (uint32_t)INT32_MAX ? INT32_MAX : (int)op->buffer_count;
    /* buffer_size elements, at most what the file part of a shard needs
     * (two words at least: a 16-bit window starting inside a word) */
    params.max_range = want_words < shard_words ? want_words : shard_words;
    if (params.max_range > longest)
        params.max_range = longest;
    if (params.max_range < 2)
        params.max_range = 2;
    params.block_size = (size_t)config->aio.block_size;
    params.queue_depth = config->aio.queue_depth > 4096 ? 4096 : (int)config->aio.queue_depth;
    params.io_threads = config->aio.intra_op_parallelism > 64 ? 64 : (int)config->aio.intra_op_parallelism;
    params.io = config->aio.io_backend == ZERO_AIO_POSIX ? ZERO_STORE_NVME_IO_THREADS : ZERO_STORE_NVME_IO_URING;
    params.timeout_s = opts->timeout_s > 0 ? opts->timeout_s : 300.0;
    params.config_block = "offload_param";
    params.range_key = "buffer_size";
    params.contents = "the stage-3 parameter shards";
    status = zero_store_nvme_create(&desc, &params, &ps->words);
    if (status != ZERO_OK) {
        zero_param_store_destroy(ps);
        return status;
    }
    ps->max_window = SIZE_MAX;
    for (int g = 0; g < opts->num_groups; g++) {
        size_t w = window_elems(params.max_range, ps->esz[g]);
        if (w < ps->max_window)
            ps->max_window = w;
    }
    if (ps->max_window == 0)
        ps->max_window = 1;   /* cannot happen: a buffer holds at least two words */
    *store_p = ps;
    return ZERO_OK;
}

void zero_param_store_destroy(zero_param_store_t *store)
{
    if (store == NULL)
        return;
    zero_store_destroy(store->words);
    for (int g = 0; g < store->num_groups; g++)
        zero_mem_free(store->cpu[g]);
    zero_free(store);
}

size_t zero_param_store_max_window(const zero_param_store_t *store) { return store->max_window; }

/* The words under elements [begin, begin + count) of @p group. */
static int words_of(const zero_param_store_t *ps, int group, size_t begin, size_t count, size_t *first_p,
                    size_t *num_p)
{
    size_t esz, lo, hi;
    if (group < 0 || group >= ps->num_groups || begin > ps->length[group] || count > ps->length[group] - begin ||
        count > ps->max_window) {
        ZERO_LOG_ERROR("offload_param: window [%zu, +%zu) of group %d is outside its shard (%zu elements) or longer "
                       "than a buffer (%zu)", begin, count, group,
                       group >= 0 && group < ps->num_groups ? ps->length[group] : 0, ps->max_window);
        return -1;
    }
    esz = ps->esz[group];
    lo = begin * esz / WORD;
    hi = ((begin + count) * esz + WORD - 1) / WORD;
    *first_p = lo;
    *num_p = hi - lo;
    return 0;
}

zero_status_t zero_param_store_open(zero_param_store_t *store, zero_param_window_t *w)
{
    size_t first, num, esz, in_cpu;
    zero_status_t status;
    w->open = 0;
    w->data = NULL;
    w->in_cpu = 0;
    if (words_of(store, w->group, w->begin, w->count, &first, &num) != 0)
        return ZERO_ERR_INVALID_ARG;
    esz = store->esz[w->group];
    in_cpu = store->in_cpu[w->group];
    memset(&w->range, 0, sizeof(w->range));
    if (w->begin + w->count <= in_cpu) {   /* all in memory */
        w->in_cpu = w->count;
        w->data = (char *)store->cpu[w->group] + w->begin * esz;
        w->open = 1;
        return ZERO_OK;
    }
    w->range.group = w->group;
    w->range.begin = first;
    w->range.count = num;
    w->range.fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER);
    status = zero_store_acquire(store->words, &w->range);
    if (status != ZERO_OK)
        return status;
    w->data = (char *)(void *)w->range.data[ZERO_STORE_MASTER] + (w->begin * esz - first * WORD);
    if (w->begin < in_cpu) {   /* its head is in memory: the file's bytes there are stale */
        w->in_cpu = in_cpu - w->begin;
        memcpy(w->data, (const char *)store->cpu[w->group] + w->begin * esz, w->in_cpu * esz);
    }
    w->open = 1;
    return ZERO_OK;
}

zero_status_t zero_param_store_close(zero_param_store_t *store, zero_param_window_t *w, int dirty)
{
    size_t esz = store->esz[w->group];
    if (!w->open)
        return ZERO_OK;
    w->open = 0;
    if (dirty && w->in_cpu > 0)
        memcpy((char *)store->cpu[w->group] + w->begin * esz, w->data, w->in_cpu * esz);
    w->data = NULL;
    if (w->in_cpu == w->count)
        return ZERO_OK;
    return zero_store_release(store->words, &w->range, dirty);
}

zero_status_t zero_param_store_prefetch(zero_param_store_t *store, int group, size_t begin, size_t count)
{
    size_t first, num;
    if (group >= 0 && group < store->num_groups && begin < store->length[group]) {
        if (count > store->length[group] - begin)
            count = store->length[group] - begin;
        if (count > store->max_window)
            count = store->max_window;
        if (begin + count <= store->in_cpu[group])
            return ZERO_OK;   /* in memory */
    }
    if (count == 0)
        return ZERO_OK;
    if (words_of(store, group, begin, count, &first, &num) != 0)
        return ZERO_ERR_INVALID_ARG;
    return zero_store_prefetch(store->words, group, first, num, ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER));
}

zero_status_t zero_param_store_read(zero_param_store_t *store, int group, size_t begin, size_t count, void *dst)
{
    size_t esz, off = 0;
    if (group < 0 || group >= store->num_groups) {
        ZERO_LOG_ERROR("offload_param: read of group %d: no such group", group);
        return ZERO_ERR_INVALID_ARG;
    }
    esz = store->esz[group];
    while (off < count) {
        size_t n = count - off < store->max_window ? count - off : store->max_window;
        zero_param_window_t w = {.group = group, .begin = begin + off, .count = n};
        zero_status_t status = zero_param_store_open(store, &w);
        if (status != ZERO_OK)
            return status;
        /* the next window's read runs while this one is copied */
        if (off + n < count)
            status = zero_param_store_prefetch(store, group, begin + off + n, count - off - n);
        memcpy((char *)dst + off * esz, w.data, n * esz);
        {
            zero_status_t st = zero_param_store_close(store, &w, 0);
            if (status == ZERO_OK)
                status = st;
        }
        if (status != ZERO_OK)
            return status;
        off += n;
    }
    return ZERO_OK;
}

zero_status_t zero_param_store_flush(zero_param_store_t *store)
{
    return store->words != NULL ? zero_store_flush(store->words) : ZERO_OK;
}

void zero_param_store_bytes(const zero_param_store_t *store, zero_store_bytes_t *bytes_p)
{
    memset(bytes_p, 0, sizeof(*bytes_p));
    if (store->words != NULL)
        zero_store_bytes(store->words, bytes_p);
    bytes_p->resident += store->cpu_bytes;
}

void zero_param_store_stats(const zero_param_store_t *store, zero_store_nvme_stats_t *stats_p)
{
    if (store->words != NULL) {
        zero_store_nvme_stats(store->words, stats_p);
    } else {
        memset(stats_p, 0, sizeof(*stats_p));
        stats_p->io = "none";
    }
}
