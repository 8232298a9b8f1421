#define ZERO_LOG_MODULE "comm"
#include "comm/bootstrap.h"
#include "util/log.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *process_getenv(const char *name, void *arg)
{
    (void)arg;
    return getenv(name);
}

typedef struct env_reader {
    zero_comm_getenv_fn fn;
    void *arg;
} env_reader_t;

static const char *env_get(const env_reader_t *r, const char *name)
{
    const char *v = r->fn(name, r->arg);
    return v;   /* an empty value counts as set: it is then reported as not a number */
}

/* Strict decimal: digits only, no sign, no spaces, fits an int. */
static int parse_uint(const char *text, int *value_p)
{
    long v = 0;
    if (text == NULL || *text == '\0')
        return -1;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > INT_MAX)
            return -1;
    }
    *value_p = (int)v;
    return 0;
}

/* Reads an integer variable; @p required: missing is an error. Returns 1 if
 * present, 0 if absent (not required), -1 on error (logged). */
static int read_int(const env_reader_t *r, const char *name, int required, int *value_p)
{
    const char *v = env_get(r, name);
    if (v == NULL) {
        if (required) {
            ZERO_LOG_ERROR("environment: %s is not set", name);
            return -1;
        }
        return 0;
    }
    if (parse_uint(v, value_p) != 0) {
        ZERO_LOG_ERROR("environment: %s='%s' is not a non-negative integer", name, v);
        return -1;
    }
    return 1;
}

/* SLURM_TASKS_PER_NODE: "2(x3),1" = 2,2,2,1; picks entry @p node. */
static int slurm_tasks_for_node(const char *list, int node, int *count_p)
{
    int index = 0;
    const char *p = list;
    while (*p) {
        char *end;
        long count, repeat = 1;
        errno = 0;
        if (*p < '0' || *p > '9')
            return -1;
        count = strtol(p, &end, 10);
        if (errno != 0 || count <= 0 || count > INT_MAX)
            return -1;
        p = end;
        if (*p == '(') {
            if (p[1] != 'x' || p[2] < '0' || p[2] > '9')
                return -1;
            repeat = strtol(p + 2, &end, 10);
            if (errno != 0 || repeat <= 0 || *end != ')')
                return -1;
            p = end + 1;
        }
        if (node >= index && node < index + repeat) {
            *count_p = (int)count;
            /* the rest of the list must still be well formed */
        }
        if (repeat > INT_MAX - index)
            return -1;
        index += (int)repeat;
        if (*p == ',')
            p++;
        else if (*p != '\0')
            return -1;
    }
    return node < index ? 0 : -1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

zero_status_t zero_comm_env_parse(zero_comm_getenv_fn getenv_fn, void *arg, zero_comm_env_t *env_p)
{
    env_reader_t r = {getenv_fn ? getenv_fn : process_getenv, arg};
    zero_comm_env_t env;
    const char *v;
    int have_local_rank = 0, have_local_size = 0, have_cross_rank = 0, have_cross_size = 0;

    if (env_p == NULL)
        return ZERO_ERR_INVALID_ARG;
    memset(&env, 0, sizeof(env));
    env.cross_rank = -1;
    env.cross_size = -1;

    if (env_get(&r, "RANK") != NULL) {
        int ompi;
        env.source = "zero-launch";
        if (read_int(&r, "RANK", 1, &env.rank) < 0 || read_int(&r, "WORLD_SIZE", 1, &env.size) < 0)
            return ZERO_ERR_INVALID_ARG;
        if ((have_local_rank = read_int(&r, "LOCAL_RANK", 0, &env.local_rank)) < 0)
            return ZERO_ERR_INVALID_ARG;
        have_local_size = read_int(&r, "LOCAL_SIZE", 0, &env.local_size);
        if (have_local_size == 0)
            have_local_size = read_int(&r, "LOCAL_WORLD_SIZE", 0, &env.local_size);   /* torchrun */
        if (have_local_size < 0)
            return ZERO_ERR_INVALID_ARG;
        if ((have_cross_rank = read_int(&r, "CROSS_RANK", 0, &env.cross_rank)) < 0 ||
            (have_cross_size = read_int(&r, "CROSS_SIZE", 0, &env.cross_size)) < 0)
            return ZERO_ERR_INVALID_ARG;
        /* Started by mpirun around a RANK-setting wrapper: both must agree. */
        switch (read_int(&r, "OMPI_COMM_WORLD_RANK", 0, &ompi)) {
        case -1:
            return ZERO_ERR_INVALID_ARG;
        case 1:
            if (ompi != env.rank) {
                ZERO_LOG_ERROR("environment: RANK=%d and OMPI_COMM_WORLD_RANK=%d disagree", env.rank, ompi);
                return ZERO_ERR_INVALID_ARG;
            }
            break;
        default:
            break;
        }
        switch (read_int(&r, "OMPI_COMM_WORLD_SIZE", 0, &ompi)) {
        case -1:
            return ZERO_ERR_INVALID_ARG;
        case 1:
            if (ompi != env.size) {
                ZERO_LOG_ERROR("environment: WORLD_SIZE=%d and OMPI_COMM_WORLD_SIZE=%d disagree", env.size, ompi);
                return ZERO_ERR_INVALID_ARG;
            }
            break;
        default:
            break;
        }
    } else if (env_get(&r, "OMPI_COMM_WORLD_RANK") != NULL) {
        env.source = "mpirun";
        if (read_int(&r, "OMPI_COMM_WORLD_RANK", 1, &env.rank) < 0 ||
            read_int(&r, "OMPI_COMM_WORLD_SIZE", 1, &env.size) < 0 ||
            read_int(&r, "OMPI_COMM_WORLD_LOCAL_RANK", 1, &env.local_rank) < 0 ||
            read_int(&r, "OMPI_COMM_WORLD_LOCAL_SIZE", 1, &env.local_size) < 0)
            return ZERO_ERR_INVALID_ARG;
        have_local_rank = have_local_size = 1;
    } else if (env_get(&r, "PMI_RANK") != NULL) {
        /* MPICH's Hydra (mpiexec.hydra, mpirun.mpich). Checked before SLURM_PROCID: an mpiexec
         * inside an sbatch script inherits the batch step's SLURM_PROCID=0 in every rank. */
        env.source = "mpiexec";
        if (read_int(&r, "PMI_RANK", 1, &env.rank) < 0 || read_int(&r, "PMI_SIZE", 1, &env.size) < 0 ||
            read_int(&r, "MPI_LOCALRANKID", 1, &env.local_rank) < 0 ||
            read_int(&r, "MPI_LOCALNRANKS", 1, &env.local_size) < 0)
            return ZERO_ERR_INVALID_ARG;
        have_local_rank = have_local_size = 1;
    } else if (env_get(&r, "SLURM_PROCID") != NULL) {
        int node = 0, nodes;
        env.source = "srun";
        if (read_int(&r, "SLURM_PROCID", 1, &env.rank) < 0 || read_int(&r, "SLURM_NTASKS", 1, &env.size) < 0 ||
            read_int(&r, "SLURM_LOCALID", 1, &env.local_rank) < 0)
            return ZERO_ERR_INVALID_ARG;
        have_local_rank = 1;
        if ((have_cross_rank = read_int(&r, "SLURM_NODEID", 0, &node)) < 0 ||
            (have_cross_size = read_int(&r, "SLURM_NNODES", 0, &nodes)) < 0)
            return ZERO_ERR_INVALID_ARG;
        if (have_cross_rank)
            env.cross_rank = node;
        if (have_cross_size)
            env.cross_size = nodes;
        if ((have_local_size = read_int(&r, "SLURM_NTASKS_PER_NODE", 0, &env.local_size)) < 0)
            return ZERO_ERR_INVALID_ARG;
        if (!have_local_size && (v = env_get(&r, "SLURM_TASKS_PER_NODE")) != NULL) {
            if (slurm_tasks_for_node(v, node, &env.local_size) != 0) {
                ZERO_LOG_ERROR("environment: SLURM_TASKS_PER_NODE='%s' is malformed or has no entry for "
                               "node %d", v, node);
                return ZERO_ERR_INVALID_ARG;
            }
            have_local_size = 1;
        }
        if (!have_local_size) {
            ZERO_LOG_ERROR("environment: srun job without SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE");
            return ZERO_ERR_INVALID_ARG;
        }
    } else {
        /* No launcher: a world of one. */
        env.source = "none";
        env.rank = 0;
        env.size = 1;
        env.local_rank = 0;
        env.local_size = 1;
        env.cross_rank = 0;
        env.cross_size = 1;
        *env_p = env;
        return ZERO_OK;
    }

    if (env.size < 1 || env.size > ZERO_COMM_MAX_WORLD) {
        ZERO_LOG_ERROR("environment (%s): world size %d is outside [1, %d]", env.source, env.size,
                       ZERO_COMM_MAX_WORLD);
        return ZERO_ERR_INVALID_ARG;
    }
    if (env.rank >= env.size) {
        ZERO_LOG_ERROR("environment (%s): rank %d is not below the world size %d", env.source, env.rank, env.size);
        return ZERO_ERR_INVALID_ARG;
    }
    if (!have_local_rank || !have_local_size) {
        if (env.size == 1 && !have_local_rank && !have_local_size) {
            env.local_rank = 0;
            env.local_size = 1;
        } else {
            ZERO_LOG_ERROR("environment (%s): %s is not set", env.source,
                           have_local_rank ? "LOCAL_SIZE" : "LOCAL_RANK");
            return ZERO_ERR_INVALID_ARG;
        }
    }
    if (env.local_size < 1 || env.local_size > env.size) {
        ZERO_LOG_ERROR("environment (%s): local size %d is outside [1, world size %d]", env.source,
                       env.local_size, env.size);
        return ZERO_ERR_INVALID_ARG;
    }
    if (env.local_rank >= env.local_size) {
        ZERO_LOG_ERROR("environment (%s): local rank %d is not below the local size %d", env.source,
                       env.local_rank, env.local_size);
        return ZERO_ERR_INVALID_ARG;
    }
    if (have_cross_rank != have_cross_size && env.source[0] == 'z') {
        ZERO_LOG_ERROR("environment: %s is set without %s", have_cross_rank ? "CROSS_RANK" : "CROSS_SIZE",
                       have_cross_rank ? "CROSS_SIZE" : "CROSS_RANK");
        return ZERO_ERR_INVALID_ARG;
    }
    if (env.cross_size < 0 || env.cross_rank < 0) {
        /* Not given: derive it for homogeneous nodes. */
        env.cross_size = (env.size + env.local_size - 1) / env.local_size;
        env.cross_rank = env.rank / env.local_size;
    }
    if (env.cross_size < 1 || env.cross_rank >= env.cross_size || env.cross_size > env.size) {
        ZERO_LOG_ERROR("environment (%s): node index %d / node count %d are inconsistent (world size %d)",
                       env.source, env.cross_rank, env.cross_size, env.size);
        return ZERO_ERR_INVALID_ARG;
    }

    if (env.size > 1) {
        const char *addr = env_get(&r, "MASTER_ADDR");
        int port;
        if (addr == NULL || addr[0] == '\0') {
            ZERO_LOG_ERROR("environment (%s): MASTER_ADDR is not set (the rendezvous address of rank 0)",
                           env.source);
            return ZERO_ERR_INVALID_ARG;
        }
        if (strlen(addr) > ZERO_COMM_MAX_ADDR) {
            ZERO_LOG_ERROR("environment: MASTER_ADDR is longer than %d characters", ZERO_COMM_MAX_ADDR);
            return ZERO_ERR_INVALID_ARG;
        }
        snprintf(env.master_addr, sizeof(env.master_addr), "%s", addr);
        if (read_int(&r, "MASTER_PORT", 1, &port) < 0)
            return ZERO_ERR_INVALID_ARG;
        if (port < 1 || port > 65535) {
            ZERO_LOG_ERROR("environment: MASTER_PORT=%d is outside [1, 65535]", port);
            return ZERO_ERR_INVALID_ARG;
        }
        env.master_port = port;
    }

    v = env_get(&r, "ZERO_JOB_TOKEN");
    if (v != NULL) {
        if (strlen(v) != ZERO_COMM_TOKEN_HEX) {
            ZERO_LOG_ERROR("environment: ZERO_JOB_TOKEN must be %d lowercase hex characters (has %zu)",
                           ZERO_COMM_TOKEN_HEX, strlen(v));
            return ZERO_ERR_INVALID_ARG;
        }
        for (int i = 0; i < ZERO_COMM_TOKEN_BYTES; i++) {
            int hi = hex_value(v[2 * i]), lo = hex_value(v[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                ZERO_LOG_ERROR("environment: ZERO_JOB_TOKEN has a character that is not lowercase hex "
                               "at position %d", hi < 0 ? 2 * i : 2 * i + 1);
                return ZERO_ERR_INVALID_ARG;
            }
            env.token[i] = (unsigned char)(hi << 4 | lo);
        }
        env.has_token = 1;
    } else if (env.size > 1) {
        const char *allow = env_get(&r, "ZERO_ALLOW_NO_TOKEN");
        if (allow == NULL || strcmp(allow, "1") != 0) {
            ZERO_LOG_ERROR("environment: ZERO_JOB_TOKEN is not set; a job of %d ranks needs one so that no "
                           "stray process can join (zero-launch sets it; set ZERO_ALLOW_NO_TOKEN=1 on every "
                           "rank to run without)", env.size);
            return ZERO_ERR_INVALID_ARG;
        }
        ZERO_LOG_WARN("ZERO_JOB_TOKEN is not set and ZERO_ALLOW_NO_TOKEN=1: the rendezvous accepts any "
                      "client that knows the address");
    }
    *env_p = env;
    return ZERO_OK;
}
