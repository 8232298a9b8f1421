/* zero-launch parsers: hostfile, include/exclude selection, env files, the
 * plan and its per-rank variables, shell quoting of remote commands. Every
 * error case checks the exact message (it must name the file:line or the
 * host:slot at fault). */
#include "test_main.h"

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
#include <unistd.h>

/* ---- captured log: the last error message ---- */
static char last_error[2048];
static int error_count;

static void capture_log(zero_log_level_t level, int rank, const char *module, const char *message, void *user)
{
    (void)rank;
    (void)module;
    (void)user;
    if (level == ZERO_LOG_LEVEL_ERROR) {
        snprintf(last_error, sizeof(last_error), "%s", message);
        error_count++;
    }
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

static void reset_log(void)
{
    last_error[0] = '\0';
    error_count = 0;
}

/* ---------------- hostfile ---------------- */

static void test_hostfile_valid(void)
{
    ZERO_TEST_MEM_MARK();
    zero_launch_hostfile_t *hf = NULL;
    reset_log();
    CU_ASSERT_EQUAL_FATAL(zero_launch_hostfile_parse("# the workers\n\nworker-1 slots=4\n"
                                                     "  worker-2\tslots=2   # trailing comment\r\n"
                                                     "10.0.0.3 slots=1",
                                                     "hosts", &hf),
                          ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(hf->count, 3);
    CU_ASSERT_STRING_EQUAL(hf->hosts[0].name, "worker-1");
    CU_ASSERT_EQUAL(hf->hosts[0].slots, 4);
    CU_ASSERT_EQUAL(hf->hosts[0].line, 3);
    CU_ASSERT_STRING_EQUAL(hf->hosts[1].name, "worker-2");
    CU_ASSERT_EQUAL(hf->hosts[1].slots, 2);
    CU_ASSERT_EQUAL(hf->hosts[1].line, 4);
    CU_ASSERT_STRING_EQUAL(hf->hosts[2].name, "10.0.0.3");
    CU_ASSERT_EQUAL(hf->hosts[2].slots, 1);
    CU_ASSERT_EQUAL(error_count, 0);
    zero_launch_hostfile_destroy(hf);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void expect_hostfile_error(const char *text, const char *message)
{
    zero_launch_hostfile_t *hf = NULL;
    reset_log();
    CU_ASSERT_EQUAL(zero_launch_hostfile_parse(text, "hosts", &hf), ZERO_ERR_CONFIG);
    CU_ASSERT_PTR_NULL(hf);
    CU_ASSERT_EQUAL(error_count, 1);
    CU_ASSERT_STRING_EQUAL(last_error, message);
    if (strcmp(last_error, message) != 0)
        fprintf(stderr, "\n  got:      %s\n  expected: %s\n", last_error, message);
}

static void test_hostfile_errors(void)
{
    ZERO_TEST_MEM_MARK();
    expect_hostfile_error("a slots=2\nb\n", "hosts:2: malformed line 'b' (expected 'HOST slots=N')");
    expect_hostfile_error("a slots=2 extra\n", "hosts:1: malformed line 'a slots=2 extra' (expected 'HOST slots=N')");
    expect_hostfile_error("a slot=2\n", "hosts:1: malformed line 'a slot=2' (expected 'HOST slots=N')");
    expect_hostfile_error("a slots = 2\n", "hosts:1: malformed line 'a slots = 2' (expected 'HOST slots=N')");
    expect_hostfile_error("\n\na slots=x\n", "hosts:3: slots must be a whole number from 1 to 4096, got 'x'");
    expect_hostfile_error("a slots=0\n", "hosts:1: slots must be a whole number from 1 to 4096, got '0'");
    expect_hostfile_error("a slots=-1\n", "hosts:1: slots must be a whole number from 1 to 4096, got '-1'");
    expect_hostfile_error("a slots=4097\n", "hosts:1: slots must be a whole number from 1 to 4096, got '4097'");
    expect_hostfile_error("a slots=\n", "hosts:1: slots must be a whole number from 1 to 4096, got ''");
    expect_hostfile_error("a slots=2\nb slots=1\n# c\na slots=3\n",
                          "hosts:4: duplicate host 'a' (first defined at line 1)");
    expect_hostfile_error("a:1 slots=2\n",
                          "hosts:1: host name 'a:1' contains ':', which the --include/--exclude grammar reserves");
    expect_hostfile_error("a@b slots=2\n",
                          "hosts:1: host name 'a@b' contains '@', which the --include/--exclude grammar reserves");
    expect_hostfile_error("-oProxyCommand=x slots=1\n", "hosts:1: host name '-oProxyCommand=x' starts with '-'");
    expect_hostfile_error("# only a comment\n\n   \n", "hosts: no hosts defined (expected lines 'HOST slots=N')");
    expect_hostfile_error("", "hosts: no hosts defined (expected lines 'HOST slots=N')");
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_hostfile_load(void)
{
    ZERO_TEST_MEM_MARK();
    char dir[] = "/tmp/zero-launch-test-XXXXXX", path[256];
    zero_launch_hostfile_t *hf = NULL;
    FILE *f;
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/hostfile", dir);
    reset_log();
    CU_ASSERT_EQUAL(zero_launch_hostfile_load(path, &hf), ZERO_ERR_NOT_FOUND);
    CU_ASSERT(strstr(last_error, "hostfile: cannot open: No such file or directory") != NULL);
    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("n1 slots=2\nn1 slots=2\n", f);
    fclose(f);
    reset_log();
    CU_ASSERT_EQUAL(zero_launch_hostfile_load(path, &hf), ZERO_ERR_CONFIG);
    {
        char expect[512];
        snprintf(expect, sizeof(expect), "%s:2: duplicate host 'n1' (first defined at line 1)", path);
        CU_ASSERT_STRING_EQUAL(last_error, expect);
    }
    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("n1 slots=2\nn2 slots=3\n", f);
    fclose(f);
    CU_ASSERT_EQUAL_FATAL(zero_launch_hostfile_load(path, &hf), ZERO_OK);
    CU_ASSERT_EQUAL(hf->count, 2);
    CU_ASSERT_EQUAL(hf->hosts[1].slots, 3);
    zero_launch_hostfile_destroy(hf);
    unlink(path);
    rmdir(dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---------------- include / exclude / num_nodes / num_gpus ---------------- */

static zero_launch_pool_t *three_hosts(void)
{
    zero_launch_hostfile_t *hf = NULL;
    zero_launch_pool_t *pool = NULL;
    CU_ASSERT_EQUAL_FATAL(zero_launch_hostfile_parse("w0 slots=4\nw1 slots=4\nw2 slots=2\n", "h", &hf), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_launch_pool_from_hostfile(hf, &pool), ZERO_OK);
    zero_launch_hostfile_destroy(hf);
    return pool;
}

/* Renders a pool as "w0:0,1,2,3 w1:0,2" for compact comparisons. */
static void pool_str(const zero_launch_pool_t *pool, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < pool->count; i++) {
        used += (size_t)snprintf(out + used, cap - used, "%s%s:", i ? " " : "", pool->nodes[i].host);
        for (size_t k = 0; k < pool->nodes[i].n_slots; k++)
            used += (size_t)snprintf(out + used, cap - used, "%s%d", k ? "," : "", pool->nodes[i].slots[k]);
    }
}

static void expect_select(const char *include, const char *exclude, int num_nodes, int num_gpus,
                          const char *expect)
{
    zero_launch_pool_t *pool = three_hosts(), *sel = NULL;
    zero_launch_select_t s = {include, exclude, num_nodes, num_gpus};
    char got[256];
    reset_log();
    CU_ASSERT_EQUAL_FATAL(zero_launch_pool_select(pool, &s, &sel), ZERO_OK);
    pool_str(sel, got, sizeof(got));
    CU_ASSERT_STRING_EQUAL(got, expect);
    if (strcmp(got, expect) != 0)
        fprintf(stderr, "\n  got:      %s\n  expected: %s\n", got, expect);
    zero_launch_pool_destroy(sel);
    zero_launch_pool_destroy(pool);
}

static void expect_select_error(const char *include, const char *exclude, int num_nodes, int num_gpus,
                                const char *message)
{
    zero_launch_pool_t *pool = three_hosts(), *sel = NULL;
    zero_launch_select_t s = {include, exclude, num_nodes, num_gpus};
    reset_log();
    CU_ASSERT_EQUAL(zero_launch_pool_select(pool, &s, &sel), ZERO_ERR_CONFIG);
    CU_ASSERT_PTR_NULL(sel);
    CU_ASSERT_EQUAL(error_count, 1);
    CU_ASSERT_STRING_EQUAL(last_error, message);
    if (strcmp(last_error, message) != 0)
        fprintf(stderr, "\n  got:      %s\n  expected: %s\n", last_error, message);
    zero_launch_pool_destroy(pool);
}

static void test_select(void)
{
    ZERO_TEST_MEM_MARK();
    expect_select(NULL, NULL, 0, 0, "w0:0,1,2,3 w1:0,1,2,3 w2:0,1");
    /* include keeps hostfile order whatever the spec's order, slots ascending */
    expect_select("w1:2,0@w0", NULL, 0, 0, "w0:0,1,2,3 w1:0,2");
    expect_select("w2@w1:3,1,3", NULL, 0, 0, "w1:1,3 w2:0,1");
    expect_select("w1:0@w1:2", NULL, 0, 0, "w1:0,2");
    expect_select(NULL, "w1:0@w2", 0, 0, "w0:0,1,2,3 w1:1,2,3");
    expect_select(NULL, "w0:0,1,2,3", 0, 0, "w1:0,1,2,3 w2:0,1");
    expect_select(NULL, NULL, 2, 0, "w0:0,1,2,3 w1:0,1,2,3");
    expect_select(NULL, NULL, 0, 2, "w0:0,1 w1:0,1 w2:0,1");
    expect_select(NULL, NULL, 1, 3, "w0:0,1,2");
    expect_select(NULL, NULL, 3, 1, "w0:0 w1:0 w2:0");
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_select_errors(void)
{
    ZERO_TEST_MEM_MARK();
    expect_select_error("w0", "w1", 0, 0, "--include and --exclude are mutually exclusive");
    expect_select_error("w0", NULL, 1, 0, "--num_nodes/--num_gpus cannot be combined with --include/--exclude");
    expect_select_error(NULL, "w0", 0, 2, "--num_nodes/--num_gpus cannot be combined with --include/--exclude");
    expect_select_error("w9", NULL, 0, 0, "--include: unknown host 'w9'");
    expect_select_error("w0@w9:1", NULL, 0, 0, "--include: unknown host 'w9'");
    expect_select_error(NULL, "w3", 0, 0, "--exclude: unknown host 'w3'");
    expect_select_error("w2:2", NULL, 0, 0, "--include: unknown slot w2:2");
    expect_select_error("w0:1@w2:0,5", NULL, 0, 0, "--include: unknown slot w2:5");
    expect_select_error(NULL, "w0:4", 0, 0, "--exclude: unknown slot w0:4");
    expect_select_error("w0:x", NULL, 0, 0, "--include: slot 'x' of host 'w0' is not a slot number");
    expect_select_error("w0:-1", NULL, 0, 0, "--include: slot '-1' of host 'w0' is not a slot number");
    expect_select_error("w0:", NULL, 0, 0,
                        "--include: malformed node spec 'w0:' in 'w0:' (expected NODE[:SLOT[,SLOT...]][@NODE...])");
    expect_select_error("w0@", NULL, 0, 0,
                        "--include: malformed node spec '' in 'w0@' (expected NODE[:SLOT[,SLOT...]][@NODE...])");
    expect_select_error("@w0", NULL, 0, 0,
                        "--include: malformed node spec '' in '@w0' (expected NODE[:SLOT[,SLOT...]][@NODE...])");
    expect_select_error(NULL, "w0:1,,2", 0, 0,
                        "--exclude: malformed node spec 'w0:1,,2' in 'w0:1,,2' (expected NODE[:SLOT[,SLOT...]][@NODE...])");
    expect_select_error("w1@w0:1:2", NULL, 0, 0,
                        "--include: malformed node spec 'w0:1:2' in 'w1@w0:1:2' (expected NODE[:SLOT[,SLOT...]][@NODE...])");
    expect_select_error(":1", NULL, 0, 0,
                        "--include: malformed node spec ':1' in ':1' (expected NODE[:SLOT[,SLOT...]][@NODE...])");
    /* an empty spec is an error, not "every host" */
    expect_select_error("", NULL, 0, 0, "--include: empty host spec (expected NODE[:SLOT[,SLOT...]][@NODE...])");
    expect_select_error(NULL, "", 0, 0, "--exclude: empty host spec (expected NODE[:SLOT[,SLOT...]][@NODE...])");
    expect_select_error("", "", 0, 0, "--include and --exclude are mutually exclusive");
    expect_select_error(NULL, "w0@w1@w2", 0, 0, "--exclude 'w0@w1@w2' leaves no slot to run on");
    expect_select_error(NULL, NULL, 4, 0, "--num_nodes 4 but only 3 hosts are available");
    expect_select_error(NULL, NULL, 0, 3, "--num_gpus 3 but host 'w2' has only 2 slots");
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void expect_local(const char *cvd, int devices, int num_gpus, const char *expect)
{
    zero_launch_pool_t *pool = NULL;
    char got[256];
    reset_log();
    CU_ASSERT_EQUAL_FATAL(zero_launch_pool_create_local("localhost", cvd, devices, num_gpus, &pool), ZERO_OK);
    pool_str(pool, got, sizeof(got));
    CU_ASSERT_STRING_EQUAL(got, expect);
    if (strcmp(got, expect) != 0)
        fprintf(stderr, "\n  got:      %s\n  expected: %s\n", got, expect);
    zero_launch_pool_destroy(pool);
}

static void test_local_pool(void)
{
    ZERO_TEST_MEM_MARK();
    zero_launch_pool_t *pool = NULL, *sel = NULL;
    zero_launch_select_t s = {NULL, NULL, 0, 1};
    char got[64];
    expect_local(NULL, 0, 0, "localhost:0");        /* CPU-only: one process */
    expect_local(NULL, 0, 3, "localhost:0,1,2");    /* CPU-only: --num_gpus processes */
    expect_local(NULL, 2, 0, "localhost:0,1");      /* two CUDA devices */
    expect_local("3,1", 4, 0, "localhost:1,3");     /* CUDA_VISIBLE_DEVICES honoured */
    expect_local("", 4, 0, "localhost:0");          /* set but empty: no device */
    expect_local("", 0, 2, "localhost:0,1");
    expect_local("0,-1,2", 4, 0, "localhost:0");    /* a negative index ends the list */
    expect_local(NULL, 4, 2, "localhost:0,1");      /* --num_gpus: the first N devices */
    expect_local("6,4,5", 0, 2, "localhost:4,5");
    expect_local(NULL, 1, 4, "localhost:0,1,2,3");  /* more ranks than GPUs: N slots */

    reset_log();
    CU_ASSERT_EQUAL(zero_launch_pool_create_local("localhost", "GPU-abc", 0, 0, &pool), ZERO_ERR_CONFIG);
    CU_ASSERT_STRING_EQUAL(last_error, "CUDA_VISIBLE_DEVICES entry 'GPU-abc' is not a device index "
                                       "(device UUIDs are not supported; list indices)");
    reset_log();
    CU_ASSERT_EQUAL(zero_launch_pool_create_local("localhost", "1,1", 0, 0, &pool), ZERO_ERR_CONFIG);
    CU_ASSERT_STRING_EQUAL(last_error, "CUDA_VISIBLE_DEVICES='1,1' lists device 1 twice");
    reset_log();
    CU_ASSERT_EQUAL(zero_launch_pool_create_local("localhost", "1,,2", 0, 0, &pool), ZERO_ERR_CONFIG);
    CU_ASSERT_STRING_EQUAL(last_error, "CUDA_VISIBLE_DEVICES='1,,2': empty or overlong entry");

    /* an explicit CUDA_VISIBLE_DEVICES with too few devices is an error */
    reset_log();
    CU_ASSERT_EQUAL(zero_launch_pool_create_local("localhost", "5,2", 0, 3, &pool), ZERO_ERR_CONFIG);
    CU_ASSERT_STRING_EQUAL(last_error, "--num_gpus 3 but CUDA_VISIBLE_DEVICES='5,2' lists only 2 devices");

    /* selecting --num_gpus again on the local pool keeps it */
    CU_ASSERT_EQUAL_FATAL(zero_launch_pool_create_local("localhost", "5,2", 0, 1, &pool), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_launch_pool_select(pool, &s, &sel), ZERO_OK);
    pool_str(sel, got, sizeof(got));
    CU_ASSERT_STRING_EQUAL(got, "localhost:2");
    zero_launch_pool_destroy(sel);
    zero_launch_pool_destroy(pool);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---------------- env files ---------------- */

static void test_envfile_valid(void)
{
    ZERO_TEST_MEM_MARK();
    zero_launch_env_t env = {0};
    reset_log();
    CU_ASSERT_EQUAL_FATAL(zero_launch_envfile_parse("# comment\n\nA=1\r\n export B = two words \n"
                                                    "C=\"double quoted\"\nD='single'\nE=a=b\nF=\n"
                                                    "G=$HOME `id` ; rm -rf /\nH=\"unbalanced\nA=override",
                                                    "envf", &env),
                          ZERO_OK);
    CU_ASSERT_EQUAL(error_count, 0);
    CU_ASSERT_EQUAL_FATAL(env.count, 8);
    CU_ASSERT_STRING_EQUAL(env.keys[0], "A");                    /* replaced in place */
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "A"), "override");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "B"), "two words");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "C"), "double quoted");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "D"), "single");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "E"), "a=b");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "F"), "");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "G"), "$HOME `id` ; rm -rf /"); /* literal */
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "H"), "\"unbalanced");
    CU_ASSERT_PTR_NULL(zero_launch_env_get(&env, "Z"));
    zero_launch_env_clear(&env);
    CU_ASSERT_EQUAL(env.count, 0);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void expect_envfile_error(const char *text, const char *message)
{
    zero_launch_env_t env = {0};
    reset_log();
    CU_ASSERT_EQUAL(zero_launch_envfile_parse(text, "envf", &env), ZERO_ERR_CONFIG);
    CU_ASSERT_EQUAL(error_count, 1);
    CU_ASSERT_STRING_EQUAL(last_error, message);
    if (strcmp(last_error, message) != 0)
        fprintf(stderr, "\n  got:      %s\n  expected: %s\n", last_error, message);
    zero_launch_env_clear(&env);
}

static void test_envfile_errors(void)
{
    ZERO_TEST_MEM_MARK();
    expect_envfile_error("A=1\nnot a line\n", "envf:2: malformed line 'not a line' (expected KEY=VALUE)");
    expect_envfile_error("\n\n1A=2\n", "envf:3: invalid variable name '1A' (expected [A-Za-z_][A-Za-z0-9_]*)");
    expect_envfile_error("=x\n", "envf:1: invalid variable name '' (expected [A-Za-z_][A-Za-z0-9_]*)");
    expect_envfile_error("A B=1\n", "envf:1: invalid variable name 'A B' (expected [A-Za-z_][A-Za-z0-9_]*)");
    expect_envfile_error("A-B=1\n", "envf:1: invalid variable name 'A-B' (expected [A-Za-z_][A-Za-z0-9_]*)");
    expect_envfile_error("export\n", "envf:1: malformed line 'export' (expected KEY=VALUE)");
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_envfile_load(void)
{
    ZERO_TEST_MEM_MARK();
    char dir[] = "/tmp/zero-launch-test-XXXXXX", path[256], expect[512];
    zero_launch_env_t env = {0};
    int found = -1;
    FILE *f;
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/.deepspeed_env", dir);
    CU_ASSERT_EQUAL(zero_launch_envfile_load(path, &env, &found), ZERO_OK);
    CU_ASSERT_EQUAL(found, 0);
    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("NCCL_DEBUG=INFO\nbad\n", f);
    fclose(f);
    reset_log();
    CU_ASSERT_EQUAL(zero_launch_envfile_load(path, &env, &found), ZERO_ERR_CONFIG);
    snprintf(expect, sizeof(expect), "%s:2: malformed line 'bad' (expected KEY=VALUE)", path);
    CU_ASSERT_STRING_EQUAL(last_error, expect);
    zero_launch_env_clear(&env);
    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("NCCL_DEBUG=INFO\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(zero_launch_envfile_load(path, &env, &found), ZERO_OK);
    CU_ASSERT_EQUAL(found, 1);
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "NCCL_DEBUG"), "INFO");
    zero_launch_env_clear(&env);
    unlink(path);
    rmdir(dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---------------- plan ---------------- */

static void test_plan(void)
{
    ZERO_TEST_MEM_MARK();
    zero_launch_pool_t *pool = three_hosts(), *sel = NULL;
    zero_launch_select_t s = {"w1:3,1@w0:0,2", NULL, 0, 0};
    zero_launch_plan_t *plan = NULL;
    zero_launch_env_t env = {0};
    char *line;
    static const int expect_slot[] = {0, 2, 1, 3}, expect_local[] = {0, 1, 0, 1}, expect_node[] = {0, 0, 1, 1};

    CU_ASSERT_EQUAL_FATAL(zero_launch_pool_select(pool, &s, &sel), ZERO_OK);
    zero_launch_pool_destroy(pool);
    CU_ASSERT_EQUAL_FATAL(zero_launch_plan_create(sel, 0, NULL, ZERO_LAUNCH_DEFAULT_PORT, &plan), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(plan->world_size, 4);
    CU_ASSERT_STRING_EQUAL(plan->master_addr, "w0"); /* the first host */
    for (int r = 0; r < 4; r++) {
        CU_ASSERT_EQUAL(plan->ranks[r].rank, r);
        CU_ASSERT_EQUAL(plan->ranks[r].slot, expect_slot[r]);
        CU_ASSERT_EQUAL(plan->ranks[r].local_rank, expect_local[r]);
        CU_ASSERT_EQUAL(plan->ranks[r].node, expect_node[r]);
    }
    CU_ASSERT_EQUAL_FATAL(zero_launch_plan_rank_env(plan, 3, "0123456789abcdef0123456789abcdef", &env), ZERO_OK);
    CU_ASSERT_EQUAL(env.count, 10);
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "RANK"), "3");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "LOCAL_RANK"), "1");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "WORLD_SIZE"), "4");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "LOCAL_SIZE"), "2");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "CROSS_RANK"), "1");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "CROSS_SIZE"), "2");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "MASTER_ADDR"), "w0");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "MASTER_PORT"), "29500");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "CUDA_VISIBLE_DEVICES"), "1,3");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&env, "ZERO_JOB_TOKEN"), "0123456789abcdef0123456789abcdef");
    zero_launch_env_clear(&env);
    line = zero_launch_plan_format_rank(plan, 1, "ssh");
    CU_ASSERT_PTR_NOT_NULL_FATAL(line);
    CU_ASSERT_STRING_EQUAL(line, "rank=1 local_rank=1 host=w0 slot=2 local_size=2 world_size=4 cross_rank=0 "
                                 "cross_size=2 master_addr=w0 master_port=29500 cuda_visible_devices=0,2 via=ssh");
    zero_free(line);
    zero_launch_plan_destroy(plan);

    /* the master address: given, or 127.0.0.1 for a local-only job */
    pool = three_hosts();
    CU_ASSERT_EQUAL_FATAL(zero_launch_plan_create(pool, 1, NULL, 1234, &plan), ZERO_OK);
    CU_ASSERT_STRING_EQUAL(plan->master_addr, "127.0.0.1");
    CU_ASSERT_EQUAL(plan->master_port, 1234);
    CU_ASSERT_EQUAL(plan->world_size, 10);
    zero_launch_plan_destroy(plan);
    pool = three_hosts();
    CU_ASSERT_EQUAL_FATAL(zero_launch_plan_create(pool, 0, "10.1.2.3", 1, &plan), ZERO_OK);
    CU_ASSERT_STRING_EQUAL(plan->master_addr, "10.1.2.3");
    zero_launch_plan_destroy(plan);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_host_is_local(void)
{
    CU_ASSERT_TRUE(zero_launch_host_is_local("localhost", "node7"));
    CU_ASSERT_TRUE(zero_launch_host_is_local("127.0.0.1", "node7"));
    CU_ASSERT_TRUE(zero_launch_host_is_local("127.1.2.3", "node7"));
    CU_ASSERT_TRUE(zero_launch_host_is_local("::1", "node7"));
    CU_ASSERT_TRUE(zero_launch_host_is_local("node7", "node7.example.com"));
    CU_ASSERT_TRUE(zero_launch_host_is_local("node7.example.com", "node7.example.com"));
    CU_ASSERT_FALSE(zero_launch_host_is_local("node8", "node7"));
    CU_ASSERT_FALSE(zero_launch_host_is_local("node", "node7"));
    CU_ASSERT_FALSE(zero_launch_host_is_local("10.231.0.1", "node7"));
    CU_ASSERT_FALSE(zero_launch_host_is_local("127.0.0.1.5", "node7"));
    CU_ASSERT_FALSE(zero_launch_host_is_local("127.256.0.1", "node7"));
    CU_ASSERT_FALSE(zero_launch_host_is_local("128.0.0.1", ""));
}

static void test_token(void)
{
    char a[ZERO_LAUNCH_TOKEN_CHARS + 1], b[ZERO_LAUNCH_TOKEN_CHARS + 1];
    CU_ASSERT_EQUAL_FATAL(zero_launch_token_generate(a), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_launch_token_generate(b), ZERO_OK);
    CU_ASSERT_EQUAL(strlen(a), 32);
    CU_ASSERT_EQUAL(strspn(a, "0123456789abcdef"), 32);
    CU_ASSERT_STRING_NOT_EQUAL(a, b);
}

/* ---------------- remote command lines ---------------- */

static void test_shell_quote(void)
{
    ZERO_TEST_MEM_MARK();
    static const char *const words[] = {"plain", "", "two words", "it's", "'", "$HOME", "`id`", "a\"b",
                                        "back\\slash", "new\nline", "*", "; rm -rf /", "--"};
    size_t n = sizeof(words) / sizeof(words[0]);
    char *q = zero_launch_shell_quote("it's");
    char cmd[4096] = "printf '%s\\0'", out[4096];
    size_t used = strlen(cmd), got = 0;
    FILE *p;

    CU_ASSERT_STRING_EQUAL(q, "'it'\\''s'");
    zero_free(q);
    q = zero_launch_shell_quote("");
    CU_ASSERT_STRING_EQUAL(q, "''");
    zero_free(q);
    /* a real POSIX shell gives every word back unchanged */
    for (size_t i = 0; i < n; i++) {
        q = zero_launch_shell_quote(words[i]);
        used += (size_t)snprintf(cmd + used, sizeof(cmd) - used, " %s", q);
        zero_free(q);
    }
    p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    got = fread(out, 1, sizeof(out), p);
    CU_ASSERT_EQUAL(pclose(p), 0);
    for (size_t i = 0, off = 0; i < n; i++) {
        CU_ASSERT_FATAL(off < got);
        CU_ASSERT_STRING_EQUAL(out + off, words[i]);
        off += strlen(out + off) + 1;
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_remote_command(void)
{
    ZERO_TEST_MEM_MARK();
    zero_launch_env_t env = {0};
    char *argv[] = {"./train", "--lr", "it's 1", NULL};
    char *command = NULL, **ssh = NULL, *pdsh_args = NULL;
    zero_launch_remote_params_t rp = {"/opt/zero/bin/zero-launch", "/home/u/my run", "3", 1, &env, argv};
    static const char *const expect_ssh[] = {"ssh", "-p", "2222", "-o", "BatchMode=yes", "-i", "/k/id",
                                             "-o", "LogLevel=ERROR", "10.0.0.2", "CMD", NULL};

    CU_ASSERT_EQUAL_FATAL(zero_launch_env_set(&env, "RANK", "1"), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_launch_env_set(&env, "X", "a b'c"), ZERO_OK);
    /* ssh: the variables travel on stdin, never on a command line */
    CU_ASSERT_EQUAL_FATAL(zero_launch_remote_command(&rp, &command), ZERO_OK);
    CU_ASSERT_STRING_EQUAL(command, "exec '/opt/zero/bin/zero-launch' --remote_exec --cwd '/home/u/my run' "
                                    "--term_grace '3' --env_stdin -- './train' '--lr' 'it'\\''s 1'");
    zero_free(command);
    /* pdsh: they are quoted words of the command */
    rp.env_stdin = 0;
    CU_ASSERT_EQUAL_FATAL(zero_launch_remote_command(&rp, &command), ZERO_OK);
    CU_ASSERT_STRING_EQUAL(command, "exec '/opt/zero/bin/zero-launch' --remote_exec --cwd '/home/u/my run' "
                                    "--term_grace '3' 'RANK=1' 'X=a b'\\''c' -- './train' '--lr' "
                                    "'it'\\''s 1'");
    zero_free(command);

    CU_ASSERT_EQUAL_FATAL(zero_launch_remote_argv("ssh", "10.0.0.2", 2222, "  -i /k/id\t-o LogLevel=ERROR ", "CMD",
                                                  &ssh, &pdsh_args),
                          ZERO_OK);
    CU_ASSERT_PTR_NULL(pdsh_args);
    for (size_t i = 0; expect_ssh[i] != NULL || ssh[i] != NULL; i++) {
        CU_ASSERT_FATAL(expect_ssh[i] != NULL && ssh[i] != NULL);
        CU_ASSERT_STRING_EQUAL(ssh[i], expect_ssh[i]);
    }
    zero_launch_argv_free(ssh);

    CU_ASSERT_EQUAL_FATAL(zero_launch_remote_argv("pdsh", "w1", 0, NULL, "CMD", &ssh, &pdsh_args), ZERO_OK);
    CU_ASSERT_STRING_EQUAL(ssh[0], "pdsh");
    CU_ASSERT_STRING_EQUAL(ssh[1], "-S");
    CU_ASSERT_STRING_EQUAL(ssh[4], "-w");
    CU_ASSERT_STRING_EQUAL(ssh[5], "w1");
    CU_ASSERT_STRING_EQUAL(ssh[6], "CMD");
    CU_ASSERT_PTR_NULL(ssh[7]);
    CU_ASSERT_STRING_EQUAL(pdsh_args, "-o BatchMode=yes");
    zero_launch_argv_free(ssh);
    zero_free(pdsh_args);
    zero_launch_env_clear(&env);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_env_serialize(void)
{
    ZERO_TEST_MEM_MARK();
    zero_launch_env_t env = {0}, back = {0};
    char *data = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(zero_launch_env_set(&env, "A", "1"), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_launch_env_set(&env, "B", "x=y z\n'q'"), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_launch_env_set(&env, "EMPTY", ""), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_launch_env_serialize(&env, &data, &len), ZERO_OK);
    CU_ASSERT_EQUAL(len, strlen("A=1") + 1 + strlen("B=x=y z\n'q'") + 1 + strlen("EMPTY=") + 1 + 1);
    /* incomplete prefixes are "not yet", the whole block parses back */
    for (size_t cut = 0; cut < len; cut++) {
        CU_ASSERT_EQUAL(zero_launch_env_deserialize(data, cut, &back), 0);
        zero_launch_env_clear(&back);
    }
    CU_ASSERT_EQUAL(zero_launch_env_deserialize(data, len, &back), (long)len);
    CU_ASSERT_EQUAL_FATAL(back.count, 3);
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&back, "B"), "x=y z\n'q'");
    CU_ASSERT_STRING_EQUAL(zero_launch_env_get(&back, "EMPTY"), "");
    zero_launch_env_clear(&back);
    CU_ASSERT_EQUAL(zero_launch_env_deserialize("1A=2\0\0", 6, &back), -1);
    CU_ASSERT_EQUAL(zero_launch_env_deserialize("NOEQUALS\0\0", 10, &back), -1);
    zero_launch_env_clear(&back);
    zero_free(data);
    zero_launch_env_clear(&env);
    ZERO_TEST_ASSERT_NO_LEAK();
}

int main(int argc, char **argv)
{
    static CU_TestInfo hostfile_tests[] = {
        {"valid", test_hostfile_valid},
        {"errors", test_hostfile_errors},
        {"load", test_hostfile_load},
        CU_TEST_INFO_NULL,
    };
    static CU_TestInfo select_tests[] = {
        {"include_exclude_num", test_select},
        {"errors", test_select_errors},
        {"local_pool", test_local_pool},
        CU_TEST_INFO_NULL,
    };
    static CU_TestInfo envfile_tests[] = {
        {"valid", test_envfile_valid},
        {"errors", test_envfile_errors},
        {"load", test_envfile_load},
        CU_TEST_INFO_NULL,
    };
    static CU_TestInfo plan_tests[] = {
        {"plan_and_rank_env", test_plan},
        {"host_is_local", test_host_is_local},
        {"token", test_token},
        {"shell_quote", test_shell_quote},
        {"remote_command", test_remote_command},
        {"env_serialize", test_env_serialize},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {
        {"launch_hostfile", suite_init, suite_clean, NULL, NULL, hostfile_tests},
        {"launch_select", suite_init, suite_clean, NULL, NULL, select_tests},
        {"launch_envfile", suite_init, suite_clean, NULL, NULL, envfile_tests},
        {"launch_plan", suite_init, suite_clean, NULL, NULL, plan_tests},
        CU_SUITE_INFO_NULL,
    };
    return zero_test_main(argc, argv, suites);
}
