/*
 * Bootstrap: who am I in the job? Parses the launcher's environment into a
 * zero_comm_env_t. The lookup goes through a function so tests can feed a table.
 */
#ifndef ZERO_COMM_BOOTSTRAP_H
#define ZERO_COMM_BOOTSTRAP_H

#include <zero/status.h>

#define ZERO_COMM_TOKEN_HEX 32        /* ZERO_JOB_TOKEN: 32 lowercase hex characters */
#define ZERO_COMM_TOKEN_BYTES 16
#define ZERO_COMM_MAX_WORLD 65536     /* the ring's tags carry the step in 16 bits */
#define ZERO_COMM_MAX_ADDR 255

typedef struct zero_comm_env {
    int rank, size;
    int local_rank, local_size;
    int cross_rank, cross_size;
    char master_addr[ZERO_COMM_MAX_ADDR + 1];   /* empty for a world of one */
    int master_port;                            /* 0 for a world of one */
    unsigned char token[ZERO_COMM_TOKEN_BYTES]; /* all zero when has_token is 0 */
    int has_token;
    const char *source;                         /* "zero-launch", "mpirun", "mpiexec", "srun", "none" */
} zero_comm_env_t;

/* Returns the value of @p name or NULL. */
typedef const char *(*zero_comm_getenv_fn)(const char *name, void *arg);

/* Parses the environment (@p getenv_fn NULL: the process environment). Every
 * missing, malformed or contradictory variable is logged by name and gives
 * ZERO_ERR_INVALID_ARG. */
zero_status_t zero_comm_env_parse(zero_comm_getenv_fn getenv_fn, void *arg, zero_comm_env_t *env_p);

#endif /* ZERO_COMM_BOOTSTRAP_H */
