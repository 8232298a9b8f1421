/*
 * Launcher backends that start every rank through one foreign command, as
 * DeepSpeed's --launcher openmpi|mpich|slurm do: Open MPI's mpirun, MPICH's
 * mpiexec (Hydra) or Slurm's srun. zero-launch builds the command from the
 * plan and then becomes it (exec), so the job's lifetime, signals and exit
 * status are the foreign launcher's.
 *
 * The ranks read their rank and sizes from that launcher's own variables
 * (OMPI_COMM_WORLD_*, PMI_RANK/MPI_LOCALRANKID..., SLURM_PROCID...; see
 * lib/comm/bootstrap.c). What zero-launch adds travels in the foreign
 * launcher's ENVIRONMENT and is named (not valued) on its command line, so
 * the job token never appears in `ps` and values may hold any character:
 *   MASTER_ADDR MASTER_PORT ZERO_JOB_TOKEN CUDA_VISIBLE_DEVICES
 *   and every env-file (.deepspeed_env) variable
 * are exported with `-x NAME` (Open MPI), `-genvlist A,B,...` (MPICH) or
 * `--export=ALL,A,B,...` (srun).
 */
#ifndef ZERO_LAUNCH_BACKEND_MPI_H
#define ZERO_LAUNCH_BACKEND_MPI_H

#include <zero/status.h>

#include "envfile.h"
#include "plan.h"

typedef enum zero_launch_backend {
    ZERO_LAUNCH_BACKEND_NONE = 0,   /* not one of these: ssh, pdsh, local */
    ZERO_LAUNCH_BACKEND_OPENMPI,
    ZERO_LAUNCH_BACKEND_MPICH,
    ZERO_LAUNCH_BACKEND_SLURM,
} zero_launch_backend_t;

/* "openmpi", "mpich", "slurm" -> the backend; anything else -> NONE. */
zero_launch_backend_t zero_launch_backend_from_name(const char *name);

/* The program run when the caller names none: "mpirun", "mpiexec", "srun". */
const char *zero_launch_backend_default_exe(zero_launch_backend_t backend);

typedef struct zero_launch_backend_job {
    zero_launch_backend_t backend;
    const zero_launch_plan_t *plan;
    const char *exe;                   /* the launcher program; NULL = the default above */
    const char *extra_args;            /* blank-separated words put after the layout options; may be NULL */
    int tag_output;                    /* --tag-output / -prepend-rank / --label */
    const zero_launch_env_t *file_env; /* env-file variables (may be NULL) */
    const char *token;                 /* ZERO_JOB_TOKEN */
    char *const *program;              /* the rank program and its arguments, NULL-terminated */
} zero_launch_backend_job_t;

/*
 * Builds the foreign launcher's argv (NULL-terminated, counted; release with
 * zero_launch_argv_free) and the variables to set in its environment before
 * it runs (@p env_p, appended to; the env file's first, then MASTER_ADDR,
 * MASTER_PORT, CUDA_VISIBLE_DEVICES, ZERO_JOB_TOKEN, which win).
 *
 * Layouts the foreign launcher cannot express are ZERO_ERR_UNSUPPORTED,
 * logged with the host at fault: a host whose selected slots are not the
 * first ones of the longest host's list (one CUDA_VISIBLE_DEVICES, the
 * longest list, serves all ranks, each using entry LOCAL_RANK), and for srun
 * hosts with different slot counts (--ntasks-per-node).
 */
zero_status_t zero_launch_backend_command(const zero_launch_backend_job_t *job, char ***argv_p,
                                          zero_launch_env_t *env_p);

/*
 * The command as one shell line for --dry-run (counted string, zero_free):
 * "env 'K=V' ... 'exe' 'arg' ...", every word single-quoted, with the value of
 * ZERO_JOB_TOKEN replaced by "<hidden>".
 */
char *zero_launch_backend_format(char *const *argv, const zero_launch_env_t *env);

/*
 * Sets @p env in this process's environment, removes the rank variables of an
 * enclosing launch (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_SIZE, LOCAL_WORLD_SIZE,
 * CROSS_RANK, CROSS_SIZE: the rendezvous would prefer them to the foreign
 * launcher's own) and executes @p argv (PATH lookup). Returns only on
 * failure, with 127 (the program cannot be run, logged) or 1.
 */
int zero_launch_backend_exec(char *const *argv, const zero_launch_env_t *env);

#endif /* ZERO_LAUNCH_BACKEND_MPI_H */
