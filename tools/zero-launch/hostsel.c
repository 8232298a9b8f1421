#define ZERO_LOG_MODULE "launch"
#include "hostsel.h"
#include "launch_util.h"

#include "util/alloc.h"
#include "util/checks.h"
#include "util/log.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

void zero_launch_pool_destroy(zero_launch_pool_t *pool)
{
    if (pool == NULL)
        return;
    for (size_t i = 0; i < pool->count; i++) {
        zero_free(pool->nodes[i].host);
        zero_free(pool->nodes[i].slots);
    }
    zero_free(pool->nodes);
    zero_free(pool);
}

size_t zero_launch_pool_slots(const zero_launch_pool_t *pool)
{
    size_t n = 0;
    for (size_t i = 0; i < pool->count; i++)
        n += pool->nodes[i].n_slots;
    return n;
}

static zero_launch_pool_t *pool_alloc(size_t count)
{
    zero_launch_pool_t *pool = zero_calloc(1, sizeof(*pool));
    if (pool == NULL)
        return NULL;
    pool->nodes = zero_calloc(count ? count : 1, sizeof(*pool->nodes));
    if (pool->nodes == NULL) {
        zero_free(pool);
        return NULL;
    }
    return pool;
}

/* Appends a node with a copy of @p slots; on failure the pool is unchanged. */
static zero_status_t pool_add(zero_launch_pool_t *pool, const char *host, const int *slots, size_t n_slots)
{
    zero_launch_node_t *node = &pool->nodes[pool->count];
    node->host = zero_strdup(host);
    node->slots = zero_malloc(n_slots * sizeof(int));
    if (node->host == NULL || node->slots == NULL) {
        zero_free(node->host);
        zero_free(node->slots);
        node->host = NULL;
        node->slots = NULL;
        ZERO_LOG_ERROR("out of memory building the host list");
        return ZERO_ERR_NO_MEMORY;
    }
    memcpy(node->slots, slots, n_slots * sizeof(int));
    node->n_slots = n_slots;
    pool->count++;
    return ZERO_OK;
}

zero_status_t zero_launch_pool_from_hostfile(const zero_launch_hostfile_t *hostfile,
                                             zero_launch_pool_t **pool_p)
{
    zero_status_t status = ZERO_OK;
    zero_launch_pool_t *pool = pool_alloc(hostfile->count);
    int *range = zero_malloc(ZERO_LAUNCH_MAX_SLOTS * sizeof(int));

    ZERO_REQUIRE_GOTO(pool != NULL && range != NULL, ZERO_ERR_NO_MEMORY, status, out,
                      "out of memory building the host list");
    for (int s = 0; s < ZERO_LAUNCH_MAX_SLOTS; s++)
        range[s] = s;
    for (size_t i = 0; i < hostfile->count; i++)
        ZERO_CHECK_GOTO(pool_add(pool, hostfile->hosts[i].name, range, (size_t)hostfile->hosts[i].slots),
                        status, out);
    *pool_p = pool;
    pool = NULL;
out:
    zero_launch_pool_destroy(pool);
    zero_free(range);
    return status;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

zero_status_t zero_launch_pool_create_local(const char *host, const char *cuda_visible_devices,
                                            int device_count, int num_gpus, zero_launch_pool_t **pool_p)
{
    zero_status_t status = ZERO_OK;
    zero_launch_pool_t *pool = pool_alloc(1);
    int *slots = zero_malloc(ZERO_LAUNCH_MAX_SLOTS * sizeof(int));
    size_t n = 0;

    ZERO_REQUIRE_GOTO(pool != NULL && slots != NULL, ZERO_ERR_NO_MEMORY, status, out,
                      "out of memory building the host list");
    if (cuda_visible_devices != NULL) {
        const char *p = cuda_visible_devices;
        while (*p != '\0') {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            char entry[32];
            long value;
            ZERO_REQUIRE_GOTO(len > 0 && len < sizeof(entry), ZERO_ERR_CONFIG, status, out,
                              "CUDA_VISIBLE_DEVICES='%s': empty or overlong entry", cuda_visible_devices);
            memcpy(entry, p, len);
            entry[len] = '\0';
            if (entry[0] == '-')
                break; /* CUDA stops enumerating at an invalid (negative) index */
            ZERO_REQUIRE_GOTO(zero_launch_parse_long(entry, 0, ZERO_LAUNCH_MAX_SLOTS - 1, &value) == 0,
                              ZERO_ERR_CONFIG, status, out,
                              "CUDA_VISIBLE_DEVICES entry '%s' is not a device index "
                              "(device UUIDs are not supported; list indices)", entry);
            for (size_t i = 0; i < n; i++)
                ZERO_REQUIRE_GOTO(slots[i] != (int)value, ZERO_ERR_CONFIG, status, out,
                                  "CUDA_VISIBLE_DEVICES='%s' lists device %ld twice", cuda_visible_devices,
                                  value);
            ZERO_REQUIRE_GOTO(n < ZERO_LAUNCH_MAX_SLOTS, ZERO_ERR_CONFIG, status, out,
                              "CUDA_VISIBLE_DEVICES lists more than %d devices", ZERO_LAUNCH_MAX_SLOTS);
            slots[n++] = (int)value;
            p = comma ? comma + 1 : p + len;
        }
        qsort(slots, n, sizeof(int), cmp_int);
    } else {
        for (int d = 0; d < device_count && d < ZERO_LAUNCH_MAX_SLOTS; d++)
            slots[n++] = d;
    }
    if (num_gpus > 0 && (size_t)num_gpus <= n) {
        n = (size_t)num_gpus; /* the first N visible devices */
    } else if (num_gpus > 0 || n == 0) {
        int count = num_gpus > 0 ? num_gpus : 1;
        /* more ranks than devices (or none): slots 0..N-1, unless the user
         * restricted the devices explicitly */
        ZERO_REQUIRE_GOTO(cuda_visible_devices == NULL || n == 0, ZERO_ERR_CONFIG, status, out,
                          "--num_gpus %d but CUDA_VISIBLE_DEVICES='%s' lists only %zu device%s", num_gpus,
                          cuda_visible_devices, n, n == 1 ? "" : "s");
        ZERO_REQUIRE_GOTO(count <= ZERO_LAUNCH_MAX_SLOTS, ZERO_ERR_CONFIG, status, out,
                          "--num_gpus %d: at most %d slots per host", count, ZERO_LAUNCH_MAX_SLOTS);
        n = 0;
        for (int s = 0; s < count; s++)
            slots[n++] = s;
    }
    ZERO_CHECK_GOTO(pool_add(pool, host, slots, n), status, out);
    *pool_p = pool;
    pool = NULL;
out:
    zero_launch_pool_destroy(pool);
    zero_free(slots);
    return status;
}

/* Index of @p host in @p pool, or -1. */
static long pool_find(const zero_launch_pool_t *pool, const char *host, size_t len)
{
    for (size_t i = 0; i < pool->count; i++)
        if (strlen(pool->nodes[i].host) == len && memcmp(pool->nodes[i].host, host, len) == 0)
            return (long)i;
    return -1;
}

/*
 * Marks in @p mark (one flag per pool slot, node by node) the slots that the
 * spec string @p spec names.
 */
static zero_status_t parse_spec(const zero_launch_pool_t *pool, const char *option, const char *spec,
                                const size_t *first_slot, unsigned char *mark)
{
    const char *p = spec;
    for (;;) {
        const char *at = strchr(p, '@');
        size_t len = at ? (size_t)(at - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        size_t host_len = colon ? (size_t)(colon - p) : len;
        long node;

        if (len == 0 || host_len == 0 || (colon && colon + 1 == p + len) ||
            (colon && memchr(colon + 1, ':', (size_t)(p + len - colon - 1)) != NULL)) {
            ZERO_LOG_ERROR("%s: malformed node spec '%.*s' in '%s' (expected NODE[:SLOT[,SLOT...]][@NODE...])",
                           option, (int)len, p, spec);
            return ZERO_ERR_CONFIG;
        }
        node = pool_find(pool, p, host_len);
        if (node < 0) {
            ZERO_LOG_ERROR("%s: unknown host '%.*s'", option, (int)host_len, p);
            return ZERO_ERR_CONFIG;
        }
        if (colon == NULL) {
            memset(mark + first_slot[node], 1, pool->nodes[node].n_slots);
        } else {
            const char *q = colon + 1, *end = p + len;
            while (q <= end) {
                const char *comma = memchr(q, ',', (size_t)(end - q));
                size_t slen = comma ? (size_t)(comma - q) : (size_t)(end - q);
                char number[16];
                long slot;
                size_t k;
                if (slen == 0 || slen >= sizeof(number)) {
                    ZERO_LOG_ERROR("%s: malformed node spec '%.*s' in '%s' (expected NODE[:SLOT[,SLOT...]][@NODE...])",
                                   option, (int)len, p, spec);
                    return ZERO_ERR_CONFIG;
                }
                memcpy(number, q, slen);
                number[slen] = '\0';
                if (zero_launch_parse_long(number, 0, ZERO_LAUNCH_MAX_SLOTS - 1, &slot) != 0) {
                    ZERO_LOG_ERROR("%s: slot '%s' of host '%.*s' is not a slot number", option, number,
                                   (int)host_len, p);
                    return ZERO_ERR_CONFIG;
                }
                for (k = 0; k < pool->nodes[node].n_slots; k++)
                    if (pool->nodes[node].slots[k] == (int)slot)
                        break;
                if (k == pool->nodes[node].n_slots) {
                    ZERO_LOG_ERROR("%s: unknown slot %.*s:%ld", option, (int)host_len, p, slot);
                    return ZERO_ERR_CONFIG;
                }
                mark[first_slot[node] + k] = 1;
                q += slen + 1;
            }
        }
        if (at == NULL)
            return ZERO_OK;
        p = at + 1;
    }
}

zero_status_t zero_launch_pool_select(const zero_launch_pool_t *pool, const zero_launch_select_t *sel,
                                      zero_launch_pool_t **selected_p)
{
    zero_status_t status = ZERO_OK;
    /* Given at all, even as "": an empty spec names no host and is refused
     * below rather than read as "not given" (which would select every host). */
    int have_include = sel->include != NULL;
    int have_exclude = sel->exclude != NULL;
    size_t total = zero_launch_pool_slots(pool);
    size_t *first_slot = zero_calloc(pool->count, sizeof(size_t));
    unsigned char *mark = zero_calloc(total ? total : 1, 1);
    int *slots = zero_malloc((total ? total : 1) * sizeof(int));
    zero_launch_pool_t *out = pool_alloc(pool->count);
    size_t nodes_kept = 0;

    ZERO_REQUIRE_GOTO(first_slot && mark && slots && out, ZERO_ERR_NO_MEMORY, status, fail,
                      "out of memory selecting hosts");
    ZERO_REQUIRE_GOTO(!(have_include && have_exclude), ZERO_ERR_CONFIG, status, fail,
                      "--include and --exclude are mutually exclusive");
    ZERO_REQUIRE_GOTO(!((have_include || have_exclude) && (sel->num_nodes > 0 || sel->num_gpus > 0)),
                      ZERO_ERR_CONFIG, status, fail,
                      "--num_nodes/--num_gpus cannot be combined with --include/--exclude");
    ZERO_REQUIRE_GOTO(!have_include || sel->include[0] != '\0', ZERO_ERR_CONFIG, status, fail,
                      "--include: empty host spec (expected NODE[:SLOT[,SLOT...]][@NODE...])");
    ZERO_REQUIRE_GOTO(!have_exclude || sel->exclude[0] != '\0', ZERO_ERR_CONFIG, status, fail,
                      "--exclude: empty host spec (expected NODE[:SLOT[,SLOT...]][@NODE...])");
    for (size_t i = 1; i < pool->count; i++)
        first_slot[i] = first_slot[i - 1] + pool->nodes[i - 1].n_slots;

    if (have_include) {
        ZERO_CHECK_GOTO(parse_spec(pool, "--include", sel->include, first_slot, mark), status, fail);
    } else {
        memset(mark, 1, total);
        if (have_exclude) {
            unsigned char *drop = zero_calloc(total ? total : 1, 1);
            ZERO_REQUIRE_GOTO(drop != NULL, ZERO_ERR_NO_MEMORY, status, fail, "out of memory selecting hosts");
            status = parse_spec(pool, "--exclude", sel->exclude, first_slot, drop);
            for (size_t s = 0; s < total; s++)
                mark[s] = (unsigned char)(mark[s] && !drop[s]);
            zero_free(drop);
            if (status != ZERO_OK)
                goto fail;
        }
    }
    if (sel->num_nodes > 0) {
        ZERO_REQUIRE_GOTO((size_t)sel->num_nodes <= pool->count, ZERO_ERR_CONFIG, status, fail,
                          "--num_nodes %d but only %zu host%s available", sel->num_nodes, pool->count,
                          pool->count == 1 ? " is" : "s are");
    }
    for (size_t i = 0; i < pool->count; i++) {
        const zero_launch_node_t *node = &pool->nodes[i];
        size_t n = 0;
        if (sel->num_nodes > 0 && nodes_kept == (size_t)sel->num_nodes)
            break;
        for (size_t k = 0; k < node->n_slots; k++)
            if (mark[first_slot[i] + k])
                slots[n++] = node->slots[k];
        if (n == 0)
            continue;
        if (sel->num_gpus > 0) {
            ZERO_REQUIRE_GOTO((size_t)sel->num_gpus <= n, ZERO_ERR_CONFIG, status, fail,
                              "--num_gpus %d but host '%s' has only %zu slot%s", sel->num_gpus, node->host, n,
                              n == 1 ? "" : "s");
            n = (size_t)sel->num_gpus;
        }
        ZERO_CHECK_GOTO(pool_add(out, node->host, slots, n), status, fail);
        nodes_kept++;
    }
    ZERO_REQUIRE_GOTO(out->count > 0, ZERO_ERR_CONFIG, status, fail,
                      "--exclude '%s' leaves no slot to run on", have_exclude ? sel->exclude : "");
    *selected_p = out;
    out = NULL;
fail:
    zero_launch_pool_destroy(out);
    zero_free(slots);
    zero_free(mark);
    zero_free(first_slot);
    return status;
}

int zero_launch_count_cuda_devices(void)
{
    DIR *dir = opendir("/dev");
    struct dirent *ent;
    int count = 0;
    if (dir == NULL)
        return 0;
    while ((ent = readdir(dir)) != NULL) {
        const char *name = ent->d_name;
        if (strncmp(name, "nvidia", 6) != 0 || name[6] == '\0')
            continue;
        name += 6;
        while (*name >= '0' && *name <= '9')
            name++;
        if (*name == '\0')
            count++;
    }
    closedir(dir);
    return count;
}
