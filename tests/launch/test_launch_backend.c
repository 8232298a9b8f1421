/* zero-launch --launcher openmpi|mpich|slurm: the generated commands for
 * one- and two-host plans, the variables the foreign launcher must run with,
 * the --dry-run line, and the layouts each cannot express (exact messages).
 * Needs no MPI or Slurm installed: nothing is executed here (backends.sh runs
 * the real launchers). */
#include "test_main.h"

#include "backend_mpi.h"
#include "envfile.h"
#include "hostfile.h"
#include "hostsel.h"
#include "plan.h"
#include "remote.h"
#include "util/alloc.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char last_error[2048];

static void capture_log(zero_log_level_t level, int rank, const char *module, const char *message, void *user)
{
    (void)rank;
    (void)module;
    (void)user;
    if (level == ZERO_LOG_LEVEL_ERROR)
        snprintf(last_error, sizeof(last_error), "%s", message);
}

static int suite_init(void)
{
    zero_log_set_callback(capture_log, NULL);
    return 0;
}

static int suite_clean(void)
{
    zero_log_set_callback(NULL, NULL);
    return 0;
}

/* The plan of @p hostfile_text with selection @p include (NULL: all). */
static zero_launch_plan_t *make_plan(const char *hostfile_text, const char *include)
{
    zero_launch_hostfile_t *hf = NULL;
    zero_launch_pool_t *pool = NULL, *sel = NULL;
    zero_launch_select_t s = {include, NULL, 0, 0};
    zero_launch_plan_t *plan = NULL;
    CU_ASSERT_EQUAL_FATAL(zero_launch_hostfile_parse(hostfile_text, "hosts", &hf), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_launch_pool_from_hostfile(hf, &pool), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_launch_pool_select(pool, &s, &sel), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_launch_plan_create(sel, 0, NULL, 29500, &plan), ZERO_OK);
    zero_launch_pool_destroy(pool);
    zero_launch_hostfile_destroy(hf);
    return plan;
}

/* argv joined with single blanks. */
static void join(char **argv, char *out, size_t size)
{
    size_t n = 0;
    out[0] = '\0';
    for (char **w = argv; *w != NULL && n < size; w++)
        n += (size_t)snprintf(out + n, size - n, "%s%s", w == argv ? "" : " ", *w);
}

static char *const program[] = {"./train", "--config", "a b.json", NULL};

static void expect_command(zero_launch_backend_t backend, const zero_launch_plan_t *plan, const char *exe,
                           const char *extra, int tag, const zero_launch_env_t *file_env, const char *expect)
{
    zero_launch_backend_job_t job = {.backend = backend, .plan = plan, .exe = exe, .extra_args = extra,
                                     .tag_output = tag, .file_env = file_env,
                                     .token = "0123456789abcdef0123456789abcdef", .program = program};
    char **argv = NULL, line[4096];
    zero_launch_env_t env = {0};
    CU_ASSERT_EQUAL_FATAL(zero_launch_backend_command(&job, &argv, &env), ZERO_OK);
    join(argv, line, sizeof(line));
    CU_ASSERT_STRING_EQUAL(line, expect);
    if (strcmp(line, expect) != 0)
        fprintf(stderr, "\n  got:      %s\n  expected: %s\n", line, expect);
    /* The values travel in the launcher's environment, never on its command line. */
    CU_ASSERT_PTR_NULL(strstr(line, job.token));
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "ZERO_JOB_TOKEN"), job.token);
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "MASTER_ADDR"), plan->master_addr);
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "MASTER_PORT"), "29500");
    zero_launch_argv_free(argv);
    zero_launch_env_clear(&env);
}

static void test_commands(void)
{
    ZERO_TEST_MEM_MARK();
    zero_launch_plan_t *two = make_plan("w0 slots=2\nw1 slots=2\n", NULL);
    zero_launch_env_t file_env = {0};
    CU_ASSERT_EQUAL_FATAL(zero_launch_env_set(&file_env, "NCCL_IB_HCA", "mlx5_0,mlx5_1"), ZERO_OK);

    expect_command(ZERO_LAUNCH_BACKEND_OPENMPI, two, NULL, NULL, 0, NULL,
                   "mpirun -n 4 -H w0:2,w1:2 -x MASTER_ADDR -x MASTER_PORT -x CUDA_VISIBLE_DEVICES "
                   "-x ZERO_JOB_TOKEN ./train --config a b.json");
    expect_command(ZERO_LAUNCH_BACKEND_OPENMPI, two, "mpirun.openmpi", " --bind-to  none ", 1, &file_env,
                   "mpirun.openmpi -n 4 -H w0:2,w1:2 --tag-output --bind-to none -x NCCL_IB_HCA -x MASTER_ADDR "
                   "-x MASTER_PORT -x CUDA_VISIBLE_DEVICES -x ZERO_JOB_TOKEN ./train --config a b.json");
    expect_command(ZERO_LAUNCH_BACKEND_MPICH, two, NULL, NULL, 1, &file_env,
                   "mpiexec -n 4 -hosts w0:2,w1:2 -prepend-rank -genvlist "
                   "NCCL_IB_HCA,MASTER_ADDR,MASTER_PORT,CUDA_VISIBLE_DEVICES,ZERO_JOB_TOKEN ./train --config a b.json");
    expect_command(ZERO_LAUNCH_BACKEND_SLURM, two, NULL, NULL, 1, &file_env,
                   "srun -N 2 -n 4 --ntasks-per-node=2 --nodelist=w0,w1 --label "
                   "--export=ALL,NCCL_IB_HCA,MASTER_ADDR,MASTER_PORT,CUDA_VISIBLE_DEVICES,ZERO_JOB_TOKEN "
                   "./train --config a b.json");
    zero_launch_plan_destroy(two);

    /* Uneven slot counts: fine for mpirun/mpiexec (host:slots), not for srun. */
    zero_launch_plan_t *uneven = make_plan("w0 slots=2\nw1 slots=1\n", NULL);
    expect_command(ZERO_LAUNCH_BACKEND_MPICH, uneven, "mpiexec.hydra", NULL, 0, NULL,
                   "mpiexec.hydra -n 3 -hosts w0:2,w1:1 -genvlist "
                   "MASTER_ADDR,MASTER_PORT,CUDA_VISIBLE_DEVICES,ZERO_JOB_TOKEN ./train --config a b.json");
    zero_launch_plan_destroy(uneven);

    /* No hostfile: one node "localhost"; srun chooses the node itself. */
    zero_launch_pool_t *local = NULL;
    zero_launch_plan_t *plan = NULL;
    CU_ASSERT_EQUAL_FATAL(zero_launch_pool_create_local("localhost", NULL, 0, 2, &local), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_launch_plan_create(local, 1, NULL, 29500, &plan), ZERO_OK);
    expect_command(ZERO_LAUNCH_BACKEND_SLURM, plan, "/opt/slurm/bin/srun", NULL, 0, NULL,
                   "/opt/slurm/bin/srun -N 1 -n 2 --ntasks-per-node=2 "
                   "--export=ALL,MASTER_ADDR,MASTER_PORT,CUDA_VISIBLE_DEVICES,ZERO_JOB_TOKEN ./train --config a b.json");
    zero_launch_plan_destroy(plan);
    zero_launch_env_clear(&file_env);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void expect_refused(zero_launch_backend_t backend, const char *hosts, const char *include, const char *message)
{
    zero_launch_plan_t *plan = make_plan(hosts, include);
    zero_launch_backend_job_t job = {.backend = backend, .plan = plan, .token = "t", .program = program};
    char **argv = NULL;
    zero_launch_env_t env = {0};
    last_error[0] = '\0';
    CU_ASSERT_EQUAL(zero_launch_backend_command(&job, &argv, &env), ZERO_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NULL(argv);
    CU_ASSERT_EQUAL(env.count, 0);
    CU_ASSERT_STRING_EQUAL(last_error, message);
    if (strcmp(last_error, message) != 0)
        fprintf(stderr, "\n  got:      %s\n  expected: %s\n", last_error, message);
    zero_launch_plan_destroy(plan);
}

static void test_refused_layouts(void)
{
    ZERO_TEST_MEM_MARK();
    expect_refused(ZERO_LAUNCH_BACKEND_OPENMPI, "w0 slots=2\nw1 slots=2\n", "w0@w1:1",
                   "--launcher openmpi: host 'w1' would use slots 1 but host 'w0' slots 0,1; mpirun gives every "
                   "rank the same CUDA_VISIBLE_DEVICES, so every host's selected slots must be the first ones "
                   "of one list (use --num_gpus, or --launcher ssh)");
    expect_refused(ZERO_LAUNCH_BACKEND_MPICH, "w0 slots=4\nw1 slots=4\n", "w0:0,1,3@w1:0,1,2",
                   "--launcher mpich: host 'w1' would use slots 0,1,2 but host 'w0' slots 0,1,3; mpiexec gives "
                   "every rank the same CUDA_VISIBLE_DEVICES, so every host's selected slots must be the first "
                   "ones of one list (use --num_gpus, or --launcher ssh)");
    expect_refused(ZERO_LAUNCH_BACKEND_SLURM, "w0 slots=2\nw1 slots=1\n", NULL,
                   "--launcher slurm: host 'w1' has 1 selected slots but host 'w0' 2; srun starts the same "
                   "number of tasks on every node (--ntasks-per-node)");
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_names_and_format(void)
{
    ZERO_TEST_MEM_MARK();
    zero_launch_env_t env = {0};
    char *const argv[] = {"mpirun", "-n", "2", "./it's", NULL};
    char *line;
    CU_ASSERT_EQUAL(zero_launch_backend_from_name("openmpi"), ZERO_LAUNCH_BACKEND_OPENMPI);
    CU_ASSERT_EQUAL(zero_launch_backend_from_name("mpich"), ZERO_LAUNCH_BACKEND_MPICH);
    CU_ASSERT_EQUAL(zero_launch_backend_from_name("slurm"), ZERO_LAUNCH_BACKEND_SLURM);
    CU_ASSERT_EQUAL(zero_launch_backend_from_name("ssh"), ZERO_LAUNCH_BACKEND_NONE);
    CU_ASSERT_EQUAL(zero_launch_backend_from_name("OpenMPI"), ZERO_LAUNCH_BACKEND_NONE);
    CU_ASSERT_EQUAL_FATAL(zero_launch_env_set(&env, "UCX_TLS", "tcp,sm"), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_launch_env_set(&env, "ZERO_JOB_TOKEN", "0123456789abcdef0123456789abcdef"), ZERO_OK);
    line = zero_launch_backend_format(argv, &env);
    CU_ASSERT_PTR_NOT_NULL_FATAL(line);
    CU_ASSERT_STRING_EQUAL(line, "env 'UCX_TLS=tcp,sm' 'ZERO_JOB_TOKEN=<hidden>' 'mpirun' '-n' '2' './it'\\''s'");
    zero_free(line);
    zero_launch_env_clear(&env);
    ZERO_TEST_ASSERT_NO_LEAK();
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"commands", test_commands},
        {"refused_layouts", test_refused_layouts},
        {"names_and_format", test_names_and_format},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {
        {"launch_backend", suite_init, suite_clean, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return zero_test_main(argc, argv, suites);
}
