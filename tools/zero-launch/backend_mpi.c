#define ZERO_LOG_MODULE "launch"
#include "backend_mpi.h"

#include "remote.h"

#include "util/alloc.h"
#include "util/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

zero_launch_backend_t zero_launch_backend_from_name(const char *name)
{
    if (strcmp(name, "openmpi") == 0)
        return ZERO_LAUNCH_BACKEND_OPENMPI;
    if (strcmp(name, "mpich") == 0)
        return ZERO_LAUNCH_BACKEND_MPICH;
    if (strcmp(name, "slurm") == 0)
        return ZERO_LAUNCH_BACKEND_SLURM;
    return ZERO_LAUNCH_BACKEND_NONE;
}

const char *zero_launch_backend_default_exe(zero_launch_backend_t backend)
{
    switch (backend) {
    case ZERO_LAUNCH_BACKEND_OPENMPI:
        return "mpirun";
    case ZERO_LAUNCH_BACKEND_MPICH:
        return "mpiexec";
    case ZERO_LAUNCH_BACKEND_SLURM:
        return "srun";
    default:
        return NULL;
    }
}

/* A growing NULL-terminated argv; on allocation failure `failed` is set and later pushes do nothing. */
typedef struct argv_builder {
    char **argv;
    size_t count, cap;
    int failed;
} argv_builder_t;

static void push_owned(argv_builder_t *b, char *word)
{
    if (b->failed || word == NULL) {
        b->failed = 1;
        zero_free(word);
        return;
    }
    if (b->count + 2 > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 32;
        char **grown = zero_realloc(b->argv, cap * sizeof(*grown));
        if (grown == NULL) {
            b->failed = 1;
            zero_free(word);
            return;
        }
        b->argv = grown;
        b->cap = cap;
    }
    b->argv[b->count++] = word;
    b->argv[b->count] = NULL;
}

static void push(argv_builder_t *b, const char *word)
{
    push_owned(b, zero_strdup(word));
}

/* Appends the blank-separated words of @p text. */
static void push_words(argv_builder_t *b, const char *text)
{
    while (text != NULL && *text != '\0') {
        size_t n;
        text += strspn(text, " \t");
        n = strcspn(text, " \t");
        if (n > 0) {
            char *w = zero_malloc(n + 1);
            if (w != NULL) {
                memcpy(w, text, n);
                w[n] = '\0';
            }
            push_owned(b, w);
        }
        text += n;
    }
}

/* "h1:2,h2:2" (with_slots) or "h1,h2". */
static char *host_list(const zero_launch_pool_t *pool, int with_slots)
{
    size_t n = 1;
    char *list, *p;
    for (size_t i = 0; i < pool->count; i++)
        n += strlen(pool->nodes[i].host) + 24;
    list = zero_malloc(n);
    if (list == NULL)
        return NULL;
    p = list;
    *p = '\0';
    for (size_t i = 0; i < pool->count; i++) {
        const zero_launch_node_t *node = &pool->nodes[i];
        p += with_slots ? sprintf(p, "%s%s:%zu", i ? "," : "", node->host, node->n_slots)
                        : sprintf(p, "%s%s", i ? "," : "", node->host);
    }
    return list;
}

/* "A,B,C" of the environment's names. */
static char *name_list(const zero_launch_env_t *env, const char *prefix)
{
    size_t n = strlen(prefix) + 1;
    char *list, *p;
    for (size_t i = 0; i < env->count; i++)
        n += strlen(env->keys[i]) + 1;
    list = zero_malloc(n);
    if (list == NULL)
        return NULL;
    p = list + sprintf(list, "%s", prefix);
    for (size_t i = 0; i < env->count; i++)
        p += sprintf(p, "%s%s", i || prefix[0] ? "," : "", env->keys[i]);
    return list;
}

/* One CUDA_VISIBLE_DEVICES must serve every host: each host's selected slots must be the
 * first entries of the longest host's list (a host with fewer slots uses the first
 * LOCAL_SIZE of them). Returns the index of the node whose list is that list, or -1. */
static long common_devices(const zero_launch_backend_job_t *job, const char *launcher)
{
    const zero_launch_plan_t *plan = job->plan;
    const zero_launch_pool_t *pool = plan->pool;
    size_t longest = 0;
    for (size_t i = 1; i < pool->count; i++)
        if (pool->nodes[i].n_slots > pool->nodes[longest].n_slots)
            longest = i;
    for (size_t i = 0; i < pool->count; i++) {
        const char *all = plan->node_devices[longest], *mine = plan->node_devices[i];
        size_t n = strlen(mine);
        if (strncmp(all, mine, n) != 0 || (all[n] != '\0' && all[n] != ',')) {
            ZERO_LOG_ERROR("--launcher %s: host '%s' would use slots %s but host '%s' slots %s; %s gives every "
                           "rank the same CUDA_VISIBLE_DEVICES, so every host's selected slots must be the "
                           "first ones of one list (use --num_gpus, or --launcher ssh)",
                           launcher, pool->nodes[i].host, mine, pool->nodes[longest].host, all,
                           job->exe ? job->exe : zero_launch_backend_default_exe(job->backend));
            return -1;
        }
    }
    return (long)longest;
}

zero_status_t zero_launch_backend_command(const zero_launch_backend_job_t *job, char ***argv_p,
                                          zero_launch_env_t *env_p)
{
    static const char *const names[] = {"", "openmpi", "mpich", "slurm"};
    const zero_launch_plan_t *plan = job->plan;
    const zero_launch_pool_t *pool = plan->pool;
    const char *launcher = names[job->backend];
    zero_launch_env_t env = {0};
    argv_builder_t b = {0};
    char number[32];
    zero_status_t st;
    long devices_node;

    if (job->backend == ZERO_LAUNCH_BACKEND_NONE)
        return ZERO_ERR_INVALID_ARG;
    devices_node = common_devices(job, launcher);
    if (devices_node < 0)
        return ZERO_ERR_UNSUPPORTED;

    /* The variables, in the order they are set: the env file's, then the four that always win. */
    st = ZERO_OK;
    for (size_t i = 0; job->file_env != NULL && i < job->file_env->count && st == ZERO_OK; i++)
        st = zero_launch_env_set(&env, job->file_env->keys[i], job->file_env->values[i]);
    snprintf(number, sizeof(number), "%d", plan->master_port);
    if (st == ZERO_OK)
        st = zero_launch_env_set(&env, "MASTER_ADDR", plan->master_addr);
    if (st == ZERO_OK)
        st = zero_launch_env_set(&env, "MASTER_PORT", number);
    if (st == ZERO_OK)
        st = zero_launch_env_set(&env, "CUDA_VISIBLE_DEVICES", plan->node_devices[devices_node]);
    if (st == ZERO_OK)
        st = zero_launch_env_set(&env, "ZERO_JOB_TOKEN", job->token);
    if (st != ZERO_OK)
        goto fail;

    push(&b, job->exe != NULL && job->exe[0] != '\0' ? job->exe : zero_launch_backend_default_exe(job->backend));
    snprintf(number, sizeof(number), "%zu", plan->world_size);
    switch (job->backend) {
    case ZERO_LAUNCH_BACKEND_OPENMPI:
        /* -H host:slots fills each host's slots in order: rank numbering = the plan's. */
        push(&b, "-n");
        push(&b, number);
        push(&b, "-H");
        push_owned(&b, host_list(pool, 1));
        if (job->tag_output)
            push(&b, "--tag-output");
        push_words(&b, job->extra_args);
        for (size_t i = 0; i < env.count; i++) {
            push(&b, "-x");
            push(&b, env.keys[i]);   /* by name: Open MPI takes the value from its environment */
        }
        break;
    case ZERO_LAUNCH_BACKEND_MPICH:
        push(&b, "-n");
        push(&b, number);
        push(&b, "-hosts");
        push_owned(&b, host_list(pool, 1));
        if (job->tag_output)
            push(&b, "-prepend-rank");
        push_words(&b, job->extra_args);
        push(&b, "-genvlist");
        push_owned(&b, name_list(&env, ""));
        break;
    case ZERO_LAUNCH_BACKEND_SLURM: {
        size_t per_node = pool->nodes[0].n_slots;
        for (size_t i = 1; i < pool->count; i++) {
            if (pool->nodes[i].n_slots != per_node) {
                ZERO_LOG_ERROR("--launcher slurm: host '%s' has %zu selected slots but host '%s' %zu; srun "
                               "starts the same number of tasks on every node (--ntasks-per-node)",
                               pool->nodes[i].host, pool->nodes[i].n_slots, pool->nodes[0].host, per_node);
                st = ZERO_ERR_UNSUPPORTED;
                goto fail;
            }
        }
        push(&b, "-N");
        snprintf(number, sizeof(number), "%zu", pool->count);
        push(&b, number);
        push(&b, "-n");
        snprintf(number, sizeof(number), "%zu", plan->world_size);
        push(&b, number);
        push_owned(&b, zero_asprintf("--ntasks-per-node=%zu", per_node));
        /* No hostfile (the one node "localhost"): Slurm picks the node. Otherwise the hostfile's
         * names are Slurm node names. */
        if (!(pool->count == 1 && strcmp(pool->nodes[0].host, "localhost") == 0)) {
            char *hosts = host_list(pool, 0);
            push_owned(&b, hosts != NULL ? zero_asprintf("--nodelist=%s", hosts) : NULL);
            zero_free(hosts);
        }
        if (job->tag_output)
            push(&b, "--label");
        push_words(&b, job->extra_args);
        push_owned(&b, name_list(&env, "--export=ALL"));
        break;
    }
    default:
        break;
    }
    for (char *const *w = job->program; w != NULL && *w != NULL; w++)
        push(&b, *w);
    if (b.failed) {
        st = ZERO_ERR_NO_MEMORY;
        goto fail;
    }
    for (size_t i = 0; i < env.count && st == ZERO_OK; i++)
        st = zero_launch_env_set(env_p, env.keys[i], env.values[i]);
    if (st != ZERO_OK)
        goto fail;
    zero_launch_env_clear(&env);
    *argv_p = b.argv;
    return ZERO_OK;
fail:
    zero_launch_env_clear(&env);
    zero_launch_argv_free(b.argv);
    return st;
}

char *zero_launch_backend_format(char *const *argv, const zero_launch_env_t *env)
{
    size_t n = 4;
    char *line, *p;
    char **quoted;
    size_t words = env->count, k = 0;
    for (char *const *w = argv; *w != NULL; w++)
        words++;
    quoted = zero_calloc(words + 1, sizeof(*quoted));
    if (quoted == NULL)
        return NULL;
    for (size_t i = 0; i < env->count; i++) {
        int hidden = strcmp(env->keys[i], "ZERO_JOB_TOKEN") == 0;
        char *kv = zero_asprintf("%s=%s", env->keys[i], hidden ? "<hidden>" : env->values[i]);
        quoted[k++] = kv != NULL ? zero_launch_shell_quote(kv) : NULL;
        zero_free(kv);
    }
    for (char *const *w = argv; *w != NULL; w++)
        quoted[k++] = zero_launch_shell_quote(*w);
    line = NULL;
    for (size_t i = 0; i < words; i++) {
        if (quoted[i] == NULL)
            goto out;
        n += strlen(quoted[i]) + 1;
    }
    line = zero_malloc(n);
    if (line == NULL)
        goto out;
    p = line + sprintf(line, "env");
    for (size_t i = 0; i < words; i++)
        p += sprintf(p, " %s", quoted[i]);
out:
    for (size_t i = 0; i < words; i++)
        zero_free(quoted[i]);
    zero_free(quoted);
    return line;
}

int zero_launch_backend_exec(char *const *argv, const zero_launch_env_t *env)
{
    static const char *const rank_vars[] = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE",
                                            "LOCAL_WORLD_SIZE", "CROSS_RANK", "CROSS_SIZE"};
    for (size_t i = 0; i < sizeof(rank_vars) / sizeof(rank_vars[0]); i++)
        unsetenv(rank_vars[i]);
    for (size_t i = 0; i < env->count; i++) {
        if (setenv(env->keys[i], env->values[i], 1) != 0) {
            ZERO_LOG_ERROR("cannot set %s for '%s': %s", env->keys[i], argv[0], strerror(errno));
            return 1;
        }
    }
    fflush(stdout);
    fflush(stderr);
    execvp(argv[0], argv);
    ZERO_LOG_ERROR("cannot run '%s': %s", argv[0], strerror(errno));
    return 127;
}
