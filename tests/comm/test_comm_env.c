/* lib/comm unit tests: environment parsing, configuration, reduction kernels, a world of one. */
#include "test_main.h"
#include "comm/backend.h"
#include "comm/bootstrap.h"
#include "comm/shm.h"
#include "comm/staged_plan.h"
#include "zero_build_config.h"
#include "comm/reduce.h"
#include "util/clock.h"
#include "util/half.h"

#include <zero/zero.h>
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a fake environment and a log capture ---- */

typedef struct fake_env {
    const char *vars[40][2];
} fake_env_t;

static const char *fake_getenv(const char *name, void *arg)
{
    fake_env_t *e = arg;
    for (int i = 0; i < 40 && e->vars[i][0] != NULL; i++)
        if (strcmp(e->vars[i][0], name) == 0)
            return e->vars[i][1];
    return NULL;
}

static char last_error[1024];

static void capture(zero_log_level_t level, int rank, const char *module, const char *message, void *arg)
{
    (void)rank;
    (void)module;
    (void)arg;
    if (level == ZERO_LOG_LEVEL_ERROR)
        snprintf(last_error, sizeof(last_error), "%s", message);
}

#define TOKEN "0123456789abcdef0123456789abcdef"

/* Parses @p e; on error checks that the message mentions @p needle. */
static zero_status_t parse(fake_env_t *e, zero_comm_env_t *out, const char *needle)
{
    zero_status_t st;
    last_error[0] = '\0';
    zero_log_set_callback(capture, NULL);
    st = zero_comm_env_parse(fake_getenv, e, out);
    zero_log_set_callback(NULL, NULL);
    if (needle != NULL) {
        CU_ASSERT_EQUAL(st, ZERO_ERR_INVALID_ARG);
        if (strstr(last_error, needle) == NULL)
            fprintf(stderr, "error message '%s' does not mention '%s'\n", last_error, needle);
        CU_ASSERT_PTR_NOT_NULL(strstr(last_error, needle));
    }
    return st;
}

#define LAUNCH_ENV(rank, world, lrank, lsize)                                                             \
    {"RANK", rank}, {"WORLD_SIZE", world}, {"LOCAL_RANK", lrank}, {"LOCAL_SIZE", lsize},                  \
    {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}, {"ZERO_JOB_TOKEN", TOKEN}

static void test_env_launcher(void)
{
    ZERO_TEST_MEM_MARK();
    zero_comm_env_t env;
    fake_env_t ok = {{LAUNCH_ENV("3", "4", "1", "2"), {"CROSS_RANK", "1"}, {"CROSS_SIZE", "2"}}};
    fake_env_t derived = {{LAUNCH_ENV("3", "4", "1", "2")}};
    fake_env_t none = {{{NULL, NULL}}};

    CU_ASSERT_EQUAL_FATAL(parse(&ok, &env, NULL), ZERO_OK);
    CU_ASSERT_EQUAL(env.rank, 3);
    CU_ASSERT_EQUAL(env.size, 4);
    CU_ASSERT_EQUAL(env.local_rank, 1);
    CU_ASSERT_EQUAL(env.local_size, 2);
    CU_ASSERT_EQUAL(env.cross_rank, 1);
    CU_ASSERT_EQUAL(env.cross_size, 2);
    CU_ASSERT_STRING_EQUAL(env.master_addr, "127.0.0.1");
    CU_ASSERT_EQUAL(env.master_port, 29500);
    CU_ASSERT_EQUAL(env.has_token, 1);
    CU_ASSERT_EQUAL(env.token[0], 0x01);
    CU_ASSERT_EQUAL(env.token[15], 0xef);
    CU_ASSERT_STRING_EQUAL(env.source, "zero-launch");

    CU_ASSERT_EQUAL_FATAL(parse(&derived, &env, NULL), ZERO_OK);   /* node index derived */
    CU_ASSERT_EQUAL(env.cross_rank, 1);
    CU_ASSERT_EQUAL(env.cross_size, 2);

    CU_ASSERT_EQUAL_FATAL(parse(&none, &env, NULL), ZERO_OK);      /* no launcher: a world of one */
    CU_ASSERT_EQUAL(env.rank, 0);
    CU_ASSERT_EQUAL(env.size, 1);
    CU_ASSERT_STRING_EQUAL(env.source, "none");
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_env_errors(void)
{
    zero_comm_env_t env;
    struct {
        fake_env_t env;
        const char *needle;
    } cases[] = {
        {{{{"RANK", "0"}}}, "WORLD_SIZE"},
        {{{LAUNCH_ENV("2", "2", "0", "2")}}, "rank 2"},
        {{{LAUNCH_ENV("1", "2", "2", "2")}}, "local rank 2"},
        {{{LAUNCH_ENV("1", "2", "0", "3")}}, "local size 3"},
        {{{LAUNCH_ENV("abc", "2", "0", "2")}}, "RANK='abc'"},
        {{{LAUNCH_ENV("-1", "2", "0", "2")}}, "RANK='-1'"},
        {{{LAUNCH_ENV("1 ", "2", "0", "2")}}, "RANK='1 '"},
        {{{LAUNCH_ENV("", "2", "0", "2")}}, "RANK=''"},
        {{{LAUNCH_ENV("1", "99999999999", "0", "2")}}, "WORLD_SIZE"},
        {{{LAUNCH_ENV("1", "0", "0", "2")}}, "world size 0"},
        {{{LAUNCH_ENV("1", "2", "0", "2"), {"OMPI_COMM_WORLD_RANK", "0"}}}, "OMPI_COMM_WORLD_RANK=0"},
        {{{LAUNCH_ENV("1", "2", "0", "2"), {"OMPI_COMM_WORLD_SIZE", "3"}}}, "OMPI_COMM_WORLD_SIZE=3"},
        {{{LAUNCH_ENV("1", "2", "0", "2"), {"CROSS_RANK", "0"}}}, "CROSS_SIZE"},
        {{{LAUNCH_ENV("1", "2", "0", "2"), {"CROSS_RANK", "2"}, {"CROSS_SIZE", "2"}}}, "node index 2"},
        {{{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_SIZE", "2"}}}, "LOCAL_RANK"},
        {{{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"LOCAL_SIZE", "2"},
           {"MASTER_PORT", "1"}, {"ZERO_JOB_TOKEN", TOKEN}}}, "MASTER_ADDR"},
        {{{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"LOCAL_SIZE", "2"},
           {"MASTER_ADDR", "h"}, {"ZERO_JOB_TOKEN", TOKEN}}}, "MASTER_PORT"},
        {{{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"LOCAL_SIZE", "2"},
           {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}, {"ZERO_JOB_TOKEN", TOKEN}}}, "MASTER_PORT=70000"},
        {{{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"LOCAL_SIZE", "2"},
           {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}}, "ZERO_JOB_TOKEN is not set"},
        {{{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"LOCAL_SIZE", "2"},
           {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}, {"ZERO_ALLOW_NO_TOKEN", "yes"}}}, "ZERO_ALLOW_NO_TOKEN=1"},
        {{{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"LOCAL_SIZE", "2"},
           {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}, {"ZERO_JOB_TOKEN", "0123"}}}, "32 lowercase hex"},
        {{{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"LOCAL_SIZE", "2"}, {"MASTER_ADDR", "h"},
           {"MASTER_PORT", "1"}, {"ZERO_JOB_TOKEN", "0123456789ABCDEF0123456789abcdef"}}}, "position 10"},
        {{{{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}}},
         "OMPI_COMM_WORLD_LOCAL_SIZE"},
        {{{{"PMI_RANK", "0"}, {"PMI_SIZE", "2"}, {"MPI_LOCALRANKID", "0"}}}, "MPI_LOCALNRANKS"},
        {{{{"PMI_RANK", "2"}, {"PMI_SIZE", "2"}, {"MPI_LOCALRANKID", "0"}, {"MPI_LOCALNRANKS", "1"}}}, "rank 2"},
        {{{{"PMI_RANK", "x"}, {"PMI_SIZE", "2"}, {"MPI_LOCALRANKID", "0"}, {"MPI_LOCALNRANKS", "1"}}},
         "PMI_RANK='x'"},
        {{{{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "1"}}}, "SLURM_TASKS_PER_NODE"},
        {{{{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "1"}, {"SLURM_TASKS_PER_NODE", "2(x"}}},
         "SLURM_TASKS_PER_NODE='2(x'"},
        {{{{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "1"}, {"SLURM_NODEID", "3"},
           {"SLURM_TASKS_PER_NODE", "2(x2)"}}}, "no entry for node 3"},
    };
    ZERO_TEST_MEM_MARK();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        parse(&cases[i].env, &env, cases[i].needle);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_env_mpirun_srun(void)
{
    zero_comm_env_t env;
    fake_env_t ompi = {{{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "6"},
                        {"OMPI_COMM_WORLD_LOCAL_RANK", "2"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "3"},
                        {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "1234"}, {"ZERO_JOB_TOKEN", TOKEN}}};
    fake_env_t slurm = {{{"SLURM_PROCID", "4"}, {"SLURM_NTASKS", "5"}, {"SLURM_LOCALID", "0"},
                         {"SLURM_NODEID", "2"}, {"SLURM_NNODES", "3"}, {"SLURM_TASKS_PER_NODE", "2(x2),1"},
                         {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "1234"}, {"ZERO_ALLOW_NO_TOKEN", "1"}}};
    /* mpiexec.hydra inside an sbatch script: the batch step's SLURM_PROCID=0 must not win. */
    fake_env_t hydra = {{{"PMI_RANK", "3"}, {"PMI_SIZE", "4"}, {"MPI_LOCALRANKID", "1"}, {"MPI_LOCALNRANKS", "2"},
                         {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"SLURM_LOCALID", "0"},
                         {"SLURM_TASKS_PER_NODE", "1"}, {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "1234"},
                         {"ZERO_JOB_TOKEN", TOKEN}}};
    fake_env_t both = {{LAUNCH_ENV("1", "2", "1", "2"), {"OMPI_COMM_WORLD_RANK", "1"},
                        {"OMPI_COMM_WORLD_SIZE", "2"}}};

    CU_ASSERT_EQUAL_FATAL(parse(&ompi, &env, NULL), ZERO_OK);
    CU_ASSERT_EQUAL(env.rank, 5);
    CU_ASSERT_EQUAL(env.size, 6);
    CU_ASSERT_EQUAL(env.local_rank, 2);
    CU_ASSERT_EQUAL(env.local_size, 3);
    CU_ASSERT_EQUAL(env.cross_rank, 1);
    CU_ASSERT_EQUAL(env.cross_size, 2);
    CU_ASSERT_STRING_EQUAL(env.source, "mpirun");

    CU_ASSERT_EQUAL_FATAL(parse(&slurm, &env, NULL), ZERO_OK);
    CU_ASSERT_EQUAL(env.rank, 4);
    CU_ASSERT_EQUAL(env.local_size, 1);     /* node 2's entry of "2(x2),1" */
    CU_ASSERT_EQUAL(env.cross_rank, 2);
    CU_ASSERT_EQUAL(env.cross_size, 3);
    CU_ASSERT_EQUAL(env.has_token, 0);
    CU_ASSERT_STRING_EQUAL(env.source, "srun");

    CU_ASSERT_EQUAL_FATAL(parse(&hydra, &env, NULL), ZERO_OK);
    CU_ASSERT_EQUAL(env.rank, 3);
    CU_ASSERT_EQUAL(env.size, 4);
    CU_ASSERT_EQUAL(env.local_rank, 1);
    CU_ASSERT_EQUAL(env.local_size, 2);
    CU_ASSERT_EQUAL(env.cross_rank, 1);
    CU_ASSERT_EQUAL(env.cross_size, 2);
    CU_ASSERT_EQUAL(env.has_token, 1);
    CU_ASSERT_STRING_EQUAL(env.source, "mpiexec");

    CU_ASSERT_EQUAL(parse(&both, &env, NULL), ZERO_OK);   /* consistent values may coexist */
}

static void test_parse_seconds(void)
{
    double s = 0;
    zero_log_set_callback(capture, NULL);
    CU_ASSERT_EQUAL(zero_seconds_parse("T", "2.5", 0.0, 1, 1e6, &s), ZERO_OK);
    CU_ASSERT_DOUBLE_EQUAL(s, 2.5, 1e-12);
    CU_ASSERT_EQUAL(zero_seconds_parse("T", "0", 0.0, 1, 1e6, &s), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_seconds_parse("T", "-3", 0.0, 1, 1e6, &s), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_seconds_parse("T", "5s", 0.0, 1, 1e6, &s), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_seconds_parse("T", "nan", 0.0, 1, 1e6, &s), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_seconds_parse("T", "", 0.0, 1, 1e6, &s), ZERO_ERR_INVALID_ARG);
    zero_log_set_callback(NULL, NULL);
    CU_ASSERT_DOUBLE_EQUAL(s, 2.5, 1e-12);   /* untouched on failure */
}

/* ---- reduction kernels against a plain reference ---- */

static float load(zero_dtype_t dt, const void *p, size_t i, int f32)
{
    if (f32 || dt == ZERO_FP32)
        return ((const float *)p)[i];
    return dt == ZERO_FP16 ? zero_f16_to_f32(((const uint16_t *)p)[i]) : zero_bf16_to_f32(((const uint16_t *)p)[i]);
}

static void test_reduce_kernels(void)
{
    enum { N = 70001 };   /* above the streaming-store threshold of the fp32 kernels */
    static float recv32[N], ref[N];
    static uint16_t recv16[N], local16[N], out16[N];
    static float local32[N], out32[N + 1];
    unsigned seed = 7;
    for (int dt = 0; dt < ZERO_DTYPE_COUNT; dt++) {
        for (int op = 0; op < ZERO_COMM_OP_COUNT; op++) {
            for (int recv_f32 = 0; recv_f32 < 2; recv_f32++) {
                for (int partial = 0; partial < 2; partial++) {
                    for (int in_place = 0; in_place < 2; in_place++) {
                        const void *recv, *local;
                        void *out;
                        int mismatches = 0;
                        if (in_place && (partial && dt != ZERO_FP32))
                            continue;   /* an fp32 partial never overwrites 16-bit input */
                        for (int i = 0; i < N; i++) {
                            float a = (float)((int)(rand_r(&seed) % 2001) - 1000) / 37.0f;
                            float b = (float)((int)(rand_r(&seed) % 2001) - 1000) / 37.0f;
                            recv32[i] = a;
                            local32[i] = b;
                            recv16[i] = dt == ZERO_FP16 ? zero_f32_to_f16(a) : zero_f32_to_bf16(a);
                            local16[i] = dt == ZERO_FP16 ? zero_f32_to_f16(b) : zero_f32_to_bf16(b);
                        }
                        recv = (recv_f32 || dt == ZERO_FP32) ? (const void *)recv32 : recv16;
                        local = dt == ZERO_FP32 ? (const void *)local32 : local16;
                        for (int i = 0; i < N; i++) {
                            float x = load((zero_dtype_t)dt, recv, (size_t)i, recv_f32);
                            float y = load((zero_dtype_t)dt, local, (size_t)i, 0);
                            float r = op == ZERO_COMM_MAX ? (x > y ? x : y) : x + y;
                            if (op == ZERO_COMM_AVG && !partial)
                                r /= 3.0f;
                            ref[i] = r;   /* fp32: rounded once below for 16-bit results */
                        }
                        /* out32 + 1: a destination that is not 16-byte aligned */
                        out = in_place ? (void *)local : (partial || dt == ZERO_FP32) ? (void *)(out32 + 1) : out16;
                        zero_comm_reduce((zero_comm_op_t)op, (zero_dtype_t)dt, recv_f32, recv, local, partial, out,
                                         N, op == ZERO_COMM_AVG ? 3.0f : 1.0f);
                        for (int i = 0; i < N; i++) {
                            uint32_t want, got;
                            if (partial || dt == ZERO_FP32) {
                                want = zero_f32_bits(ref[i]);
                                got = zero_f32_bits(((float *)out)[i]);
                            } else {
                                want = dt == ZERO_FP16 ? zero_f32_to_f16(ref[i]) : zero_f32_to_bf16(ref[i]);
                                got = ((uint16_t *)out)[i];
                            }
                            mismatches += want != got;   /* exact: one fp32 operation, one rounding */
                        }
                        if (mismatches)
                            fprintf(stderr, "kernel dt=%d op=%d recv_f32=%d partial=%d in_place=%d: %d mismatches\n",
                                    dt, op, recv_f32, partial, in_place, mismatches);
                        CU_ASSERT_EQUAL(mismatches, 0);
                    }
                }
            }
        }
    }
}

/* ---- a world of one, and creation errors ---- */

static void clear_launch_env(void)
{
    static const char *names[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_SIZE", "OMPI_COMM_WORLD_RANK",
                                  "PMI_RANK", "SLURM_PROCID", "ZERO_COMM_TIMEOUT", "ZERO_RENDEZVOUS_TIMEOUT",
                                  "ZERO_COMM_CHUNK_BYTES", "ZERO_COMM_CHUNKS_IN_FLIGHT",
                                  "ZERO_COMM_STAGED_SLOT_BYTES", "ZERO_COMM_STAGED_SLOTS", "ZERO_COMM_STAGED_PIN"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
}

static void test_world_of_one(void)
{
    ZERO_TEST_MEM_MARK();
    zero_comm_h comm = NULL;
    zero_comm_request_h req = NULL;
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {0};
    uint16_t h[3], g[3];

    clear_launch_env();
    CU_ASSERT_EQUAL_FATAL(zero_comm_create(NULL, &comm), ZERO_OK);
    CU_ASSERT_EQUAL(zero_comm_rank(comm), 0);
    CU_ASSERT_EQUAL(zero_comm_size(comm), 1);
    CU_ASSERT_EQUAL(zero_comm_local_size(comm), 1);
    CU_ASSERT_EQUAL(zero_comm_cross_size(comm), 1);

    CU_ASSERT_EQUAL(zero_comm_allreduce(comm, a, b, 5, ZERO_FP32, ZERO_COMM_AVG, ZERO_MEM_HOST), ZERO_OK);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof(a)), 0);
    for (int i = 0; i < 3; i++)
        h[i] = zero_f32_to_bf16((float)i + 0.5f);
    CU_ASSERT_EQUAL(zero_comm_reduce_scatter(comm, h, g, 3, ZERO_BF16, ZERO_COMM_SUM, ZERO_MEM_PINNED), ZERO_OK);
    CU_ASSERT_EQUAL(memcmp(h, g, sizeof(h)), 0);
    memset(b, 0, sizeof(b));
    CU_ASSERT_EQUAL(zero_comm_allgather(comm, a, b, 5, ZERO_FP32, ZERO_MEM_HOST), ZERO_OK);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof(a)), 0);
    CU_ASSERT_EQUAL(zero_comm_broadcast(comm, a, a, 5, ZERO_FP32, 0, ZERO_MEM_HOST), ZERO_OK);
    CU_ASSERT_EQUAL(zero_comm_barrier(comm), ZERO_OK);
    CU_ASSERT_EQUAL(zero_comm_allreduce(comm, NULL, NULL, 0, ZERO_FP16, ZERO_COMM_MAX, ZERO_MEM_HOST), ZERO_OK);

    CU_ASSERT_EQUAL(zero_comm_allreduce_start(comm, a, b, 5, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST, &req), ZERO_OK);
    CU_ASSERT_EQUAL(zero_comm_request_test(req), ZERO_OK);
    CU_ASSERT_EQUAL(zero_comm_request_wait(req), ZERO_OK);
    zero_comm_request_free(req);
    zero_comm_request_free(NULL);
    CU_ASSERT_EQUAL(zero_comm_request_test(NULL), ZERO_ERR_INVALID_ARG);

    /* argument errors */
    zero_log_set_callback(capture, NULL);
    CU_ASSERT_EQUAL(zero_comm_allreduce(comm, NULL, b, 5, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST),
                    ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_comm_allreduce(comm, a, b, 5, (zero_dtype_t)99, ZERO_COMM_SUM, ZERO_MEM_HOST),
                    ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_comm_allreduce(comm, a, b, 5, ZERO_DTYPE_COUNT, ZERO_COMM_SUM, ZERO_MEM_HOST),
                    ZERO_ERR_INVALID_ARG);   /* a count, not a type */
    CU_ASSERT_EQUAL(zero_comm_allreduce(comm, a, b, 1, ZERO_I64, ZERO_COMM_AVG, ZERO_MEM_HOST),
                    ZERO_ERR_INVALID_ARG);   /* integers are not averaged */
    CU_ASSERT_EQUAL(zero_comm_allreduce(comm, a, b, 5, ZERO_FP32, (zero_comm_op_t)9, ZERO_MEM_HOST),
                    ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_comm_allreduce(comm, a, b, 5, ZERO_FP32, ZERO_COMM_SUM, (zero_mem_kind_t)9),
                    ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_comm_allreduce(comm, a, a + 1, 3, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST),
                    ZERO_ERR_INVALID_ARG);       /* partial overlap */
    CU_ASSERT_PTR_NOT_NULL(strstr(last_error, "overlap"));
    CU_ASSERT_EQUAL(zero_comm_allgather(comm, a + 1, a, 2, ZERO_FP32, ZERO_MEM_HOST), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_comm_broadcast(comm, a, b, 5, ZERO_FP32, 1, ZERO_MEM_HOST), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_comm_allreduce(comm, a, b, SIZE_MAX / 2, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST),
                    ZERO_ERR_OVERFLOW);
    CU_ASSERT_EQUAL(zero_comm_allreduce_start(comm, a, b, 5, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST, NULL),
                    ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_comm_barrier(NULL), ZERO_ERR_INVALID_ARG);
    zero_log_set_callback(NULL, NULL);
    CU_ASSERT_STRING_EQUAL(zero_comm_op_string(ZERO_COMM_AVG), "avg");
    CU_ASSERT_STRING_EQUAL(zero_comm_op_string((zero_comm_op_t)7), "unknown");
    zero_comm_destroy(comm);
    zero_comm_destroy(NULL);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_create_errors(void)
{
    ZERO_TEST_MEM_MARK();
    zero_comm_h comm = NULL;
    zero_comm_params_t p = ZERO_COMM_PARAMS_INIT;

    clear_launch_env();
    zero_log_set_callback(capture, NULL);
    setenv("RANK", "3", 1);
    setenv("WORLD_SIZE", "2", 1);
    CU_ASSERT_EQUAL(zero_comm_create(NULL, &comm), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NULL(comm);
    CU_ASSERT_PTR_NOT_NULL(strstr(last_error, "rank 3"));
    clear_launch_env();

    setenv("ZERO_COMM_TIMEOUT", "soon", 1);
    CU_ASSERT_EQUAL(zero_comm_create(NULL, &comm), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(last_error, "ZERO_COMM_TIMEOUT"));
    clear_launch_env();
    setenv("ZERO_COMM_CHUNK_BYTES", "12", 1);
    CU_ASSERT_EQUAL(zero_comm_create(NULL, &comm), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(last_error, "ZERO_COMM_CHUNK_BYTES"));
    clear_launch_env();
    /* the staged backend's ring: each variable named when out of range */
    {
        static const char *const bad[][2] = {{"ZERO_COMM_STAGED_SLOT_BYTES", "4096"},
                                             {"ZERO_COMM_STAGED_SLOT_BYTES", "4 MiB"},
                                             {"ZERO_COMM_STAGED_SLOTS", "0"},
                                             {"ZERO_COMM_STAGED_SLOTS", "17"},
                                             {"ZERO_COMM_STAGED_PIN", "2"}};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            setenv(bad[i][0], bad[i][1], 1);
            last_error[0] = '\0';
            CU_ASSERT_EQUAL(zero_comm_create(NULL, &comm), ZERO_ERR_INVALID_ARG);
            CU_ASSERT_PTR_NOT_NULL(strstr(last_error, bad[i][0]));
            clear_launch_env();
        }
        setenv("ZERO_COMM_STAGED_SLOTS", "16", 1);   /* the bounds themselves are fine */
        setenv("ZERO_COMM_STAGED_SLOT_BYTES", "65536", 1);
        setenv("ZERO_COMM_STAGED_PIN", "0", 1);
        CU_ASSERT_EQUAL_FATAL(zero_comm_create(NULL, &comm), ZERO_OK);
        zero_comm_destroy(comm);
        comm = NULL;
        clear_launch_env();
    }
#if !HAVE_CUDA
    /* a device backend asked of a build without CUDA: refused, by name */
    p.field_mask = ZERO_COMM_PARAM_FIELD_BACKENDS;
    p.backends = ZERO_COMM_BACKEND_UCX | ZERO_COMM_BACKEND_STAGED;
    last_error[0] = '\0';
    CU_ASSERT_EQUAL(zero_comm_create(&p, &comm), ZERO_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(last_error, "staged"));
#endif

    p.field_mask = ZERO_COMM_PARAM_FIELD_CHUNKS_IN_FLIGHT;
    p.chunks_in_flight = 0;
    CU_ASSERT_EQUAL(zero_comm_create(&p, &comm), ZERO_ERR_INVALID_ARG);
    p.field_mask = ZERO_COMM_PARAM_FIELD_TIMEOUT;
    p.timeout_s = -1;
    CU_ASSERT_EQUAL(zero_comm_create(&p, &comm), ZERO_ERR_INVALID_ARG);
    p.field_mask = ZERO_COMM_PARAM_FIELD_BACKENDS;
    p.backends = 1u << 9;
    CU_ASSERT_EQUAL(zero_comm_create(&p, &comm), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_comm_create(NULL, NULL), ZERO_ERR_INVALID_ARG);

    /* params win over the environment: a valid field overrides a bad variable */
    setenv("ZERO_COMM_TIMEOUT", "7", 1);
    p.field_mask = ZERO_COMM_PARAM_FIELD_TIMEOUT | ZERO_COMM_PARAM_FIELD_BACKENDS;
    p.timeout_s = 1.5;
    p.backends = ZERO_COMM_BACKEND_UCX;   /* no self backend: a world of one cannot run host calls */
    CU_ASSERT_EQUAL_FATAL(zero_comm_create(&p, &comm), ZERO_OK);
    CU_ASSERT_EQUAL(zero_comm_barrier(comm), ZERO_ERR_UNSUPPORTED);
    zero_comm_destroy(comm);
    clear_launch_env();
    zero_log_set_callback(NULL, NULL);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---- a fake rank 0 that answers with a bad reply ---- */

typedef struct fake_server {
    int lfd;
    int mode;           /* 0: oversized record length, 1: foreign token */
} fake_server_t;

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static int read_full(int fd, void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = recv(fd, (char *)buf + done, n - done, 0);
        if (k <= 0)
            return -1;
        done += (size_t)k;
    }
    return 0;
}

static void *fake_server_main(void *arg)
{
    fake_server_t *f = arg;
    unsigned char hello[64], reply[64 + 8], blob[65536];
    uint32_t len;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    if (read_full(fd, hello, 64) == 0) {
        len = (uint32_t)hello[20] << 24 | (uint32_t)hello[21] << 16 | (uint32_t)hello[22] << 8 | hello[23];
        if (len <= sizeof(blob) && read_full(fd, blob, len) == 0) {
            memset(reply, 0, sizeof(reply));
            memcpy(reply, "ZERO-RPL", 8);
            put32(reply + 8, 1);
            put32(reply + 12, 2);
            memcpy(reply + 24, hello + 24, 16);      /* echo the token ... */
            if (f->mode == 1)
                reply[30] ^= 1;                      /* ... or a foreign one */
            put32(reply + 64, 0x7fffffffu);          /* rank 0's record: 2 GiB */
            put32(reply + 68, 16);
            (void)!send(fd, reply, sizeof(reply), MSG_NOSIGNAL);
        }
    }
    usleep(200000);
    close(fd);
    return NULL;
}

static void test_client_bounds(void)
{
    for (int mode = 0; mode < 2; mode++) {
        ZERO_TEST_MEM_MARK();
        fake_server_t f = {-1, mode};
        struct sockaddr_in a;
        socklen_t alen = sizeof(a);
        pthread_t th;
        zero_comm_h comm = NULL;
        char port[16];
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        f.lfd = socket(AF_INET, SOCK_STREAM, 0);
        CU_ASSERT_FATAL(f.lfd >= 0);
        CU_ASSERT_FATAL(bind(f.lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(f.lfd, 4) == 0);
        CU_ASSERT_FATAL(getsockname(f.lfd, (struct sockaddr *)&a, &alen) == 0);
        snprintf(port, sizeof(port), "%d", ntohs(a.sin_port));
        CU_ASSERT_FATAL(pthread_create(&th, NULL, fake_server_main, &f) == 0);
        clear_launch_env();
        setenv("RANK", "1", 1);
        setenv("WORLD_SIZE", "2", 1);
        setenv("LOCAL_RANK", "1", 1);
        setenv("LOCAL_SIZE", "2", 1);
        setenv("MASTER_ADDR", "127.0.0.1", 1);
        setenv("MASTER_PORT", port, 1);
        setenv("ZERO_JOB_TOKEN", TOKEN, 1);
        setenv("ZERO_RENDEZVOUS_TIMEOUT", "20", 1);
        last_error[0] = '\0';
        zero_log_set_callback(capture, NULL);
        CU_ASSERT_EQUAL(zero_comm_create(NULL, &comm), ZERO_ERR_PROTOCOL);
        zero_log_set_callback(NULL, NULL);
        CU_ASSERT_PTR_NULL(comm);
        CU_ASSERT_PTR_NOT_NULL(strstr(last_error, mode == 0 ? "blob length 2147483647" : "foreign reply"));
        CU_ASSERT_PTR_NOT_NULL(strstr(last_error, "127.0.0.1"));
        pthread_join(th, NULL);
        close(f.lfd);
        clear_launch_env();
        unsetenv("MASTER_ADDR");
        unsetenv("MASTER_PORT");
        unsetenv("ZERO_JOB_TOKEN");
        ZERO_TEST_ASSERT_NO_LEAK();
    }
}

/* The front picks backends from the list by memory kind, world size and the
 * params' backend bits; a backend that declines hands over to the next. */
static void test_backend_selection(void)
{
    zero_comm_t *comm = calloc(1, sizeof(*comm));
    zero_coll_desc_t host = {ZERO_COLL_ALLREDUCE, NULL, NULL, 8, ZERO_FP32, ZERO_COMM_SUM, 0, ZERO_MEM_HOST, 0, NULL, NULL, 0, 0};
    zero_coll_desc_t device = host;
    zero_shm_t *peer = NULL;
    const uint32_t all = ZERO_COMM_BACKEND_SELF | ZERO_COMM_BACKEND_UCX | ZERO_COMM_BACKEND_NCCL | ZERO_COMM_BACKEND_STAGED;
    ZERO_TEST_MEM_MARK();
    device.mem_kind = ZERO_MEM_DEVICE;
    CU_ASSERT_PTR_NOT_NULL_FATAL(comm);

    comm->env.size = 1;
    comm->cfg.backends = all;
    CU_ASSERT_PTR_EQUAL(zero_comm_backend_select(comm, &host, NULL), &zero_comm_backend_self);
    CU_ASSERT_PTR_EQUAL(zero_comm_backend_select(comm, &device, NULL), &zero_comm_backend_self);
    comm->cfg.backends = ZERO_COMM_BACKEND_UCX;
    CU_ASSERT_PTR_NULL(zero_comm_backend_select(comm, &host, NULL));

    /* two ranks, no direct path: the ring; nothing after it */
    comm->env.size = 2;
    comm->cfg.backends = all;
    CU_ASSERT_PTR_EQUAL(zero_comm_backend_select(comm, &host, NULL), &zero_comm_backend_ucx);
    CU_ASSERT_PTR_NULL(zero_comm_backend_select(comm, &host, &zero_comm_backend_ucx));
#if HAVE_CUDA
    /* device memory: the backend the communicator chose at creation, and none before */
    CU_ASSERT_PTR_NULL(zero_comm_backend_select(comm, &device, NULL));
    comm->device_path = ZERO_DEVICE_PATH_NCCL;
    CU_ASSERT_PTR_EQUAL(zero_comm_backend_select(comm, &device, NULL), &zero_comm_backend_nccl);
    comm->device_path = ZERO_DEVICE_PATH_STAGED;
    CU_ASSERT_PTR_EQUAL(zero_comm_backend_select(comm, &device, NULL), &zero_comm_backend_staged);
    CU_ASSERT_PTR_EQUAL(zero_comm_backend_select(comm, &host, NULL), &zero_comm_backend_ucx);   /* host stays host */
    comm->cfg.backends = ZERO_COMM_BACKEND_SELF | ZERO_COMM_BACKEND_UCX;
    CU_ASSERT_PTR_NULL(zero_comm_backend_select(comm, &device, NULL));
    comm->device_path = ZERO_DEVICE_PATH_NCCL;
#else
    CU_ASSERT_PTR_NULL(zero_comm_backend_select(comm, &device, NULL));
#endif
    comm->cfg.backends = ZERO_COMM_BACKEND_SELF;
    CU_ASSERT_PTR_NULL(zero_comm_backend_select(comm, &host, NULL));

    /* with the direct path on: direct first, the ring when it declines */
    comm->cfg.backends = all;
    CU_ASSERT_EQUAL_FATAL(zero_shm_create(0, 2, &comm->shm), ZERO_OK);
    CU_ASSERT_PTR_EQUAL(zero_comm_backend_select(comm, &host, NULL), &zero_comm_backend_ucx);
    {
        /* "rank 1" lives in this process too: its control page maps like a peer's */
        unsigned char rec0[ZERO_SHM_RECORD_BYTES], rec1[ZERO_SHM_RECORD_BYTES];
        const unsigned char *recs[2] = {rec0, rec1};
        CU_ASSERT_EQUAL_FATAL(zero_shm_create(1, 2, &peer), ZERO_OK);
        zero_shm_record(comm->shm, rec0);
        zero_shm_record(peer, rec1);
        CU_ASSERT_EQUAL_FATAL(zero_shm_attach(comm->shm, recs), 1);
    }
    zero_shm_enable(comm->shm);
    CU_ASSERT_PTR_EQUAL(zero_comm_backend_select(comm, &host, NULL), &zero_comm_backend_direct);
    CU_ASSERT_PTR_EQUAL(zero_comm_backend_select(comm, &host, &zero_comm_backend_direct), &zero_comm_backend_ucx);
#if HAVE_CUDA
    CU_ASSERT_PTR_EQUAL(zero_comm_backend_select(comm, &device, NULL), &zero_comm_backend_nccl);
#endif
    zero_shm_destroy(comm->shm);
    zero_shm_destroy(peer);
    free(comm);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* Clears the captured error before a call that must fail, and checks after it
 * that the message mentions @p needle. */
static void expect_error_start(void)
{
    last_error[0] = '\0';
    zero_log_set_callback(capture, NULL);
}

static void expect_error_end(const char *needle)
{
    zero_log_set_callback(NULL, NULL);
    if (strstr(last_error, needle) == NULL)
        fprintf(stderr, "error message '%s' does not mention '%s'\n", last_error, needle);
    CU_ASSERT_PTR_NOT_NULL(strstr(last_error, needle));
}

/* The ordering argument of the *_start_ordered calls (zero_comm_order_t) on
 * host memory: NULL or an order without events is the plain call; a CUDA
 * event for host or pinned memory, or a field this version does not know, is
 * refused with a message that says why, and nothing is started. */
static void test_ordering_argument(void)
{
    ZERO_TEST_MEM_MARK();
    zero_comm_h comm = NULL;
    zero_comm_request_h req = NULL, untouched = (zero_comm_request_h)&req;
    float a[4] = {1, 2, 3, 4}, b[4] = {0};
    int fake_event;   /* host collectives must refuse any event before touching it */
    zero_comm_order_t none = ZERO_COMM_ORDER_INIT, wait = ZERO_COMM_ORDER_INIT, done = ZERO_COMM_ORDER_INIT;
    zero_comm_order_t unset = ZERO_COMM_ORDER_INIT, unknown = ZERO_COMM_ORDER_INIT;

    wait.field_mask = ZERO_COMM_ORDER_FIELD_WAIT_EVENT;
    wait.wait_event = &fake_event;
    done.field_mask = ZERO_COMM_ORDER_FIELD_DONE_EVENT;
    done.done_event = &fake_event;
    unset.wait_event = &fake_event;   /* not in field_mask: not read */
    unknown.field_mask = 1u << 7;
    clear_launch_env();
    CU_ASSERT_EQUAL_FATAL(zero_comm_create(NULL, &comm), ZERO_OK);

    /* no order, an empty one, and an event left out of field_mask: the plain call */
    CU_ASSERT_EQUAL(zero_comm_allreduce_start_ordered(comm, a, b, 4, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST, NULL,
                                                      &req), ZERO_OK);
    CU_ASSERT_EQUAL(zero_comm_request_wait(req), ZERO_OK);
    zero_comm_request_free(req);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof(a)), 0);
    memset(b, 0, sizeof(b));
    CU_ASSERT_EQUAL(zero_comm_allgather_start_ordered(comm, a, b, 4, ZERO_FP32, ZERO_MEM_HOST, &none, &req), ZERO_OK);
    CU_ASSERT_EQUAL(zero_comm_request_wait(req), ZERO_OK);
    zero_comm_request_free(req);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof(a)), 0);
    CU_ASSERT_EQUAL(zero_comm_broadcast_start_ordered(comm, a, b, 4, ZERO_FP32, 0, ZERO_MEM_PINNED, &unset, &req),
                    ZERO_OK);
    CU_ASSERT_EQUAL(zero_comm_request_wait(req), ZERO_OK);
    zero_comm_request_free(req);

    /* events for host memory, and unknown fields, are refused */
    req = untouched;
    expect_error_start();
    CU_ASSERT_EQUAL(zero_comm_allreduce_start_ordered(comm, a, b, 4, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST, &wait,
                                                      &req), ZERO_ERR_INVALID_ARG);
    expect_error_end("cannot wait on CUDA work");
    CU_ASSERT_PTR_NOT_NULL(strstr(last_error, "wait_event"));
    CU_ASSERT_PTR_NOT_NULL(strstr(last_error, "host memory"));
    expect_error_start();
    CU_ASSERT_EQUAL(zero_comm_reduce_scatter_start_ordered(comm, a, b, 4, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_PINNED,
                                                           &done, &req), ZERO_ERR_INVALID_ARG);
    expect_error_end("done_event");
    CU_ASSERT_PTR_NOT_NULL(strstr(last_error, "pinned"));
    expect_error_start();
    CU_ASSERT_EQUAL(zero_comm_allgather_start_ordered(comm, a, b, 4, ZERO_FP32, ZERO_MEM_HOST, &done, &req),
                    ZERO_ERR_INVALID_ARG);
    expect_error_end("allgather");
    expect_error_start();
    CU_ASSERT_EQUAL(zero_comm_broadcast_start_ordered(comm, a, b, 4, ZERO_FP32, 0, ZERO_MEM_HOST, &wait, &req),
                    ZERO_ERR_INVALID_ARG);
    expect_error_end("broadcast");
    expect_error_start();
    CU_ASSERT_EQUAL(zero_comm_allreduce_start_ordered(comm, a, b, 4, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST,
                                                      &unknown, &req), ZERO_ERR_INVALID_ARG);
    expect_error_end("0x80");
    CU_ASSERT_PTR_EQUAL(req, untouched);   /* nothing was started */

    /* which backends order device work on CUDA streams */
    CU_ASSERT_EQUAL(zero_comm_backend_ucx.orders_on_streams, 0);
    CU_ASSERT_EQUAL(zero_comm_backend_direct.orders_on_streams, 0);
    CU_ASSERT_EQUAL(zero_comm_backend_self.orders_on_streams, HAVE_CUDA);
#if HAVE_CUDA
    CU_ASSERT_EQUAL(zero_comm_backend_nccl.orders_on_streams, 1);
#endif
    zero_comm_destroy(comm);
    ZERO_TEST_ASSERT_NO_LEAK();
}

int main(int argc, char **argv)
{
    CU_TestInfo tests[] = {
        {"environment from zero-launch", test_env_launcher},
        {"environment errors name the variable", test_env_errors},
        {"environment from mpirun, mpiexec (hydra) and srun", test_env_mpirun_srun},
        {"durations", test_parse_seconds},
        {"reduction kernels", test_reduce_kernels},
        {"world of one", test_world_of_one},
        {"backend selection", test_backend_selection},
        {"the ordering argument on host memory", test_ordering_argument},
        {"creation errors", test_create_errors},
        {"a rank refuses rank 0's malformed reply", test_client_bounds},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"comm", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return zero_test_main(argc, argv, suites);
}
