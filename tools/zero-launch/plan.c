#define ZERO_LOG_MODULE "launch"
#include "plan.h"

#include "util/alloc.h"
#include "util/checks.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void zero_launch_plan_destroy(zero_launch_plan_t *plan)
{
    if (plan == NULL)
        return;
    if (plan->node_devices != NULL)
        for (size_t i = 0; i < plan->pool->count; i++)
            zero_free(plan->node_devices[i]);
    zero_free(plan->node_devices);
    zero_launch_pool_destroy(plan->pool);
    zero_free(plan->ranks);
    zero_free(plan->master_addr);
    zero_free(plan);
}

static char *slot_list(const zero_launch_node_t *node)
{
    size_t cap = node->n_slots * 6 + 1, used = 0;
    char *s = zero_malloc(cap);
    if (s == NULL)
        return NULL;
    s[0] = '\0';
    for (size_t k = 0; k < node->n_slots; k++)
        used += (size_t)snprintf(s + used, cap - used, "%s%d", k ? "," : "", node->slots[k]);
    return s;
}

zero_status_t zero_launch_plan_create(zero_launch_pool_t *pool, int local_only, const char *master_addr,
                                      int master_port, zero_launch_plan_t **plan_p)
{
    zero_status_t status = ZERO_OK;
    zero_launch_plan_t *plan = zero_calloc(1, sizeof(*plan));
    size_t r = 0;

    if (plan == NULL) {
        zero_launch_pool_destroy(pool);
        ZERO_LOG_ERROR("out of memory building the launch plan");
        return ZERO_ERR_NO_MEMORY;
    }
    plan->pool = pool;
    plan->world_size = zero_launch_pool_slots(pool);
    plan->ranks = zero_calloc(plan->world_size, sizeof(*plan->ranks));
    plan->node_devices = zero_calloc(pool->count, sizeof(char *));
    if (master_addr == NULL || master_addr[0] == '\0')
        master_addr = local_only ? "127.0.0.1" : pool->nodes[0].host;
    plan->master_addr = zero_strdup(master_addr);
    plan->master_port = master_port;
    ZERO_REQUIRE_GOTO(plan->ranks && plan->node_devices && plan->master_addr, ZERO_ERR_NO_MEMORY, status, fail,
                      "out of memory building the launch plan");
    for (size_t n = 0; n < pool->count; n++) {
        plan->node_devices[n] = slot_list(&pool->nodes[n]);
        ZERO_REQUIRE_GOTO(plan->node_devices[n] != NULL, ZERO_ERR_NO_MEMORY, status, fail,
                          "out of memory building the launch plan");
        for (size_t k = 0; k < pool->nodes[n].n_slots; k++, r++) {
            plan->ranks[r].rank = (int)r;
            plan->ranks[r].local_rank = (int)k;
            plan->ranks[r].node = (int)n;
            plan->ranks[r].slot = pool->nodes[n].slots[k];
        }
    }
    *plan_p = plan;
    return ZERO_OK;
fail:
    zero_launch_plan_destroy(plan);
    return status;
}

zero_status_t zero_launch_plan_rank_env(const zero_launch_plan_t *plan, size_t rank, const char *token,
                                        zero_launch_env_t *env)
{
    zero_status_t status = ZERO_OK;
    const zero_launch_rank_t *r = &plan->ranks[rank];
    const zero_launch_node_t *node = &plan->pool->nodes[r->node];
    char buf[32];
#define SET_INT(name_, value_) \
    do { \
        snprintf(buf, sizeof(buf), "%lld", (long long)(value_)); \
        ZERO_CHECK_GOTO(zero_launch_env_set(env, name_, buf), status, out); \
    } while (0)
    SET_INT("RANK", r->rank);
    SET_INT("LOCAL_RANK", r->local_rank);
    SET_INT("WORLD_SIZE", plan->world_size);
    SET_INT("LOCAL_SIZE", node->n_slots);
    SET_INT("CROSS_RANK", r->node);
    SET_INT("CROSS_SIZE", plan->pool->count);
    ZERO_CHECK_GOTO(zero_launch_env_set(env, "MASTER_ADDR", plan->master_addr), status, out);
    SET_INT("MASTER_PORT", plan->master_port);
    ZERO_CHECK_GOTO(zero_launch_env_set(env, "CUDA_VISIBLE_DEVICES", plan->node_devices[r->node]), status, out);
    ZERO_CHECK_GOTO(zero_launch_env_set(env, "ZERO_JOB_TOKEN", token), status, out);
#undef SET_INT
out:
    return status;
}

char *zero_launch_plan_format_rank(const zero_launch_plan_t *plan, size_t rank, const char *via)
{
    const zero_launch_rank_t *r = &plan->ranks[rank];
    const zero_launch_node_t *node = &plan->pool->nodes[r->node];
    return zero_asprintf("rank=%d local_rank=%d host=%s slot=%d local_size=%zu world_size=%zu cross_rank=%d "
                         "cross_size=%zu master_addr=%s master_port=%d cuda_visible_devices=%s via=%s",
                         r->rank, r->local_rank, node->host, r->slot, node->n_slots, plan->world_size, r->node,
                         plan->pool->count, plan->master_addr, plan->master_port, plan->node_devices[r->node],
                         via);
}

int zero_launch_host_is_local(const char *host, const char *hostname)
{
    size_t short_len;
    if (strcmp(host, "localhost") == 0 || strcmp(host, "localhost.localdomain") == 0 ||
        strcmp(host, "::1") == 0)
        return 1;
    if (strncmp(host, "127.", 4) == 0) {
        unsigned a, b, c, d;
        char tail;
        if (sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 && c < 256 &&
            d < 256)
            return 1;
    }
    if (hostname == NULL || hostname[0] == '\0')
        return 0;
    if (strcmp(host, hostname) == 0)
        return 1;
    short_len = strcspn(hostname, ".");
    return strlen(host) == short_len && strncmp(host, hostname, short_len) == 0;
}

zero_status_t zero_launch_token_generate(char *token)
{
    zero_status_t status = ZERO_OK;
    unsigned char bytes[ZERO_LAUNCH_TOKEN_CHARS / 2];
    size_t got = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ZERO_ERRNO_CHECK_GOTO(fd >= 0, status, out, "cannot open %s for the job token", "/dev/urandom");
    while (got < sizeof(bytes)) {
        ssize_t n = read(fd, bytes + got, sizeof(bytes) - got);
        if (n < 0 && errno == EINTR)
            continue;
        ZERO_ERRNO_CHECK_GOTO(n > 0, status, out_close, "cannot read %s for the job token", "/dev/urandom");
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(bytes); i++)
        snprintf(token + 2 * i, 3, "%02x", bytes[i]);
out_close:
    close(fd);
out:
    return status;
}
