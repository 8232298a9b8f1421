/* zero-launch as a program: --dry-run plans and errors, real local launches at
 * world sizes 1-4 (every variable each rank sees, env files from HOME, the
 * working directory and DS_ENV_FILE, the job token), output tagging, and
 * failure handling (exit codes, teardown, SIGINT). The binaries come from
 * ZERO_LAUNCH_BIN and ZERO_LAUNCH_PRINT_ENV (set by meson). */
#include "test_main.h"

#include "envfile.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *zl_bin;
static const char *pe_bin;
static char tmp_root[] = "/tmp/zero-launch-run-XXXXXX";

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int suite_init(void)
{
    zl_bin = getenv("ZERO_LAUNCH_BIN");
    pe_bin = getenv("ZERO_LAUNCH_PRINT_ENV");
    if (zl_bin == NULL || pe_bin == NULL) {
        fprintf(stderr, "ZERO_LAUNCH_BIN and ZERO_LAUNCH_PRINT_ENV must be set (meson test does)\n");
        return 1;
    }
    if (mkdtemp(tmp_root) == NULL)
        return 1;
    return 0;
}

static int suite_clean(void)
{
    nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A fresh directory for one test: <root>/<name> with out/, home/ and work/. */
static void make_case(const char *name, char *dir, size_t cap)
{
    char sub[600];
    snprintf(dir, cap, "%s/%s", tmp_root, name);
    mkdir(dir, 0755);
    snprintf(sub, sizeof(sub), "%s/out", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof(sub), "%s/home", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof(sub), "%s/work", dir);
    mkdir(sub, 0755);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[700];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

/* Reads a whole file into a static-sized buffer ("" when missing). */
static void read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    buf[0] = '\0';
    if (f == NULL)
        return;
    n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/*
 * Starts zero-launch with @p args (NULL-terminated, without argv[0]) in
 * directory @p cwd, with HOME=@p home, the environment changes @p envmods
 * ("K=V" sets, "K" unsets; NULL-terminated or NULL), stdout and stderr into
 * <case>/stdout and <case>/stderr.
 */
static pid_t start_launcher(const char *case_dir, const char *cwd, const char *const *args,
                            const char *const *envmods)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    {
        char path[700], home[700];
        const char *argv[64];
        int n = 0, fd;
        snprintf(home, sizeof(home), "%s/home", case_dir);
        setenv("HOME", home, 1);
        unsetenv("DS_ENV_FILE");
        unsetenv("ZERO_JOB_TOKEN");
        setenv("CUDA_VISIBLE_DEVICES", "", 1); /* CPU-only: same plan on any test machine */
        /* The default hostfile is one the case controls (absent unless it writes
         * one), so the machine's /job/hostfile cannot change what is checked. */
        snprintf(path, sizeof(path), "%s/default_hostfile", case_dir);
        setenv("ZERO_LAUNCH_HOSTFILE", path, 1);
        for (size_t i = 0; envmods != NULL && envmods[i] != NULL; i++) {
            const char *eq = strchr(envmods[i], '=');
            if (eq == NULL) {
                unsetenv(envmods[i]);
            } else {
                char key[128];
                snprintf(key, sizeof(key), "%.*s", (int)(eq - envmods[i]), envmods[i]);
                setenv(key, eq + 1, 1);
            }
        }
        snprintf(path, sizeof(path), "%s/stdout", case_dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        close(fd);
        snprintf(path, sizeof(path), "%s/stderr", case_dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        close(fd);
        if (cwd != NULL && chdir(cwd) != 0)
            _exit(120);
        argv[n++] = zl_bin;
        for (size_t i = 0; args[i] != NULL && n < 63; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(zl_bin, (char *const *)argv);
        _exit(121);
    }
}

static int wait_launcher(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

static int run_launcher(const char *case_dir, const char *cwd, const char *const *args, const char *const *envmods)
{
    return wait_launcher(start_launcher(case_dir, cwd, args, envmods));
}

/* Parses <case>/out/rank<R>.env into @p env; 0 if it exists. */
static int rank_env(const char *case_dir, int rank, zero_launch_env_t *env)
{
    char path[700], text[8192];
    snprintf(path, sizeof(path), "%s/out/rank%d.env", case_dir, rank);
    if (access(path, F_OK) != 0)
        return -1;
    read_file(path, text, sizeof(text));
    return zero_launch_envfile_parse(text, path, env) == ZERO_OK ? 0 : -1;
}

static void assert_var(const zero_launch_env_t *env, const char *key, const char *expect)
{
    const char *got = zero_launch_env_get(env, key);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_STRING_EQUAL(got, expect);
    if (strcmp(got, expect) != 0)
        fprintf(stderr, "\n  %s: got '%s', expected '%s'\n", key, got, expect);
}

static void assert_var_int(const zero_launch_env_t *env, const char *key, long expect)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%ld", expect);
    assert_var(env, key, buf);
}

static int pid_alive(int pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH);
}

/* Whether <case>/out/rank<R>.<ext> exists. */
static int file_exists(const char *case_dir, const char *ext, int rank)
{
    char path[800];
    snprintf(path, sizeof(path), "%s/out/rank%d.%s", case_dir, rank, ext);
    return access(path, F_OK) == 0;
}

static void assert_stderr_contains(const char *case_dir, const char *needle)
{
    char path[700], text[16384];
    snprintf(path, sizeof(path), "%s/stderr", case_dir);
    read_file(path, text, sizeof(text));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, needle));
    if (strstr(text, needle) == NULL)
        fprintf(stderr, "\n  stderr lacks '%s'; it is:\n%s\n", needle, text);
}

/* ---------------- --dry-run ---------------- */

static void assert_plan_lines(const char *case_dir, const char *const *prefixes)
{
    char path[700], text[16384], *line, *save = NULL;
    size_t i = 0;
    snprintf(path, sizeof(path), "%s/stdout", case_dir);
    read_file(path, text, sizeof(text));
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save), i++) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(prefixes[i]);
        CU_ASSERT_EQUAL(strncmp(line, prefixes[i], strlen(prefixes[i])), 0);
        if (strncmp(line, prefixes[i], strlen(prefixes[i])) != 0)
            fprintf(stderr, "\n  line %zu: '%s'\n  expected prefix '%s'\n", i, line, prefixes[i]);
    }
    CU_ASSERT_PTR_NULL(prefixes[i]);
}

static void test_dry_run_plans(void)
{
    char c[512], hf[700];
    static const char *const p1[] = {"rank=0 local_rank=0 host=n0 slot=1 ", "rank=1 local_rank=0 host=n2 slot=0 ",
                                     "rank=2 local_rank=1 host=n2 slot=1 ", NULL};
    static const char *const p2[] = {"rank=0 local_rank=0 host=n0 slot=0 ", "rank=1 local_rank=1 host=n0 slot=1 ",
                                     "rank=2 local_rank=0 host=n1 slot=0 ", "rank=3 local_rank=1 host=n1 slot=1 ",
                                     NULL};
    static const char *const p3[] = {"rank=0 local_rank=0 host=n1 slot=0 local_size=1 world_size=4 cross_rank=0 "
                                     "cross_size=2 master_addr=n1 master_port=29500 cuda_visible_devices=0 via=ssh",
                                     "rank=1 local_rank=0 host=n2 slot=0 ", "rank=2 local_rank=1 host=n2 slot=1 ",
                                     "rank=3 local_rank=2 host=n2 slot=3 ", NULL};
    static const char *const p4[] = {"rank=0 local_rank=0 host=localhost slot=0 local_size=1 world_size=1 "
                                     "cross_rank=0 cross_size=1 master_addr=127.0.0.1 master_port=29500 "
                                     "cuda_visible_devices=0 via=local", NULL};
    static const char *const p5[] = {"rank=0 local_rank=0 host=localhost slot=1 ",
                                     "rank=1 local_rank=1 host=localhost slot=3 ", NULL};
    static const char *const p6[] = {"rank=0 local_rank=0 host=localhost slot=0 ",
                                     "rank=1 local_rank=1 host=localhost slot=1 ",
                                     "rank=2 local_rank=2 host=localhost slot=2 ", NULL};
    make_case("dry_run", c, sizeof(c));
    write_file(c, "hosts", "# three nodes\nn0 slots=2\n\nn1 slots=2 # the middle one\nn2 slots=4\n");
    snprintf(hf, sizeof(hf), "%s/hosts", c);

    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"-H", hf, "--dry-run", "-i", "n2:1,0@n0:1", "prog",
                                                           NULL}, NULL), 0);
    assert_plan_lines(c, p1);
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"--hostfile", hf, "--dry-run", "--num_nodes=2",
                                                           "--num_gpus", "2", "--", "prog", NULL}, NULL), 0);
    assert_plan_lines(c, p2);
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"--hostfile=" , "--dry-run", "prog", NULL}, NULL), 2);
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"-H", hf, "--dry_run", "-e", "n0@n2:2@n1:1", "prog",
                                                           "arg", NULL}, NULL), 0);
    assert_plan_lines(c, p3);
    /* No -H and no default hostfile: one local node. */
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"--dry-run", "prog", NULL}, NULL), 0);
    assert_plan_lines(c, p4);
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"--dry-run", "prog", NULL},
                                 (const char *[]){"CUDA_VISIBLE_DEVICES=3,1", NULL}), 0);
    assert_plan_lines(c, p5);
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"--dry-run", "--num_gpus", "3", "prog", NULL}, NULL), 0);
    assert_plan_lines(c, p6);
    /* No -H but the default hostfile exists: it is used. */
    write_file(c, "default_hostfile", "n0 slots=2\nn1 slots=2\n");
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"--dry-run", "--num_nodes", "2", "--num_gpus", "2",
                                                           "prog", NULL}, NULL), 0);
    assert_plan_lines(c, p2);
}

static void expect_usage_error(const char *c, const char *const *args, const char *const *envmods,
                               const char *message)
{
    CU_ASSERT_EQUAL(run_launcher(c, NULL, args, envmods), 2);
    assert_stderr_contains(c, message);
}

static void test_dry_run_errors(void)
{
    char c[512], hf[700], dup[700], missing[700], msg[1024];
    make_case("dry_run_errors", c, sizeof(c));
    write_file(c, "hosts", "n0 slots=2\nn1 slots=2\n");
    write_file(c, "dup", "n0 slots=2\n\nn0 slots=1\n");
    snprintf(hf, sizeof(hf), "%s/hosts", c);
    snprintf(dup, sizeof(dup), "%s/dup", c);
    snprintf(missing, sizeof(missing), "%s/missing", c);

    snprintf(msg, sizeof(msg), "zero-launch: error: %s: cannot open: No such file or directory", missing);
    expect_usage_error(c, (const char *[]){"-H", missing, "--dry-run", "p", NULL}, NULL, msg);
    snprintf(msg, sizeof(msg), "zero-launch: error: %s:3: duplicate host 'n0' (first defined at line 1)", dup);
    expect_usage_error(c, (const char *[]){"-H", dup, "--dry-run", "p", NULL}, NULL, msg);
    expect_usage_error(c, (const char *[]){"-H", hf, "-i", "n0", "-e", "n1", "--dry-run", "p", NULL}, NULL,
                       "--include and --exclude are mutually exclusive");
    expect_usage_error(c, (const char *[]){"-H", hf, "-i", "n0", "--num_gpus", "1", "--dry-run", "p", NULL}, NULL,
                       "--num_nodes/--num_gpus cannot be combined with --include/--exclude");
    expect_usage_error(c, (const char *[]){"-H", hf, "--exclude=n1:2", "--dry-run", "p", NULL}, NULL,
                       "zero-launch: error: --exclude: unknown slot n1:2");
    expect_usage_error(c, (const char *[]){"-H", hf, "-i", "", "--dry-run", "p", NULL}, NULL,
                       "zero-launch: error: --include: empty host spec");
    expect_usage_error(c, (const char *[]){"-H", hf, "--exclude=", "--dry-run", "p", NULL}, NULL,
                       "zero-launch: error: --exclude: empty host spec");
    expect_usage_error(c, (const char *[]){"-H", hf, "-in7", "--dry-run", "p", NULL}, NULL,
                       "zero-launch: error: --include: unknown host 'n7'");
    expect_usage_error(c, (const char *[]){"-H", hf, "--num_nodes", "3", "--dry-run", "p", NULL}, NULL,
                       "--num_nodes 3 but only 2 hosts are available");
    expect_usage_error(c, (const char *[]){"--dry-run", NULL}, NULL, "no program given");
    expect_usage_error(c, (const char *[]){"--bogus", "p", NULL}, NULL, "unknown option '--bogus'");
    expect_usage_error(c, (const char *[]){"--master_port", "70000", "p", NULL}, NULL,
                       "--master_port: '70000' is not a whole number from 0 to 65535");
    expect_usage_error(c, (const char *[]){"--num_gpus", "0", "p", NULL}, NULL,
                       "--num_gpus: '0' is not a whole number from 1 to 4096");
    expect_usage_error(c, (const char *[]){"--launcher", "mpi", "p", NULL}, NULL,
                       "--launcher: 'mpi' is not one of ssh, pdsh, local");
    expect_usage_error(c, (const char *[]){"--term_grace", "-1", "p", NULL}, NULL,
                       "--term_grace: '-1' is not a number of seconds from 0 to 3600");
    expect_usage_error(c, (const char *[]){"--master_port", NULL}, NULL, "option '--master_port' needs a value");
    expect_usage_error(c, (const char *[]){"--dry-run=1", "p", NULL}, NULL, "option '--dry-run=1' takes no value");
    snprintf(msg, sizeof(msg), "--num_nodes 2 but there is no hostfile (%s/default_hostfile does not exist)", c);
    expect_usage_error(c, (const char *[]){"--num_nodes", "2", "--dry-run", "p", NULL}, NULL, msg);
    expect_usage_error(c, (const char *[]){"--dry-run", "--num_gpus", "3", "p", NULL},
                       (const char *[]){"CUDA_VISIBLE_DEVICES=3,1", NULL},
                       "--num_gpus 3 but CUDA_VISIBLE_DEVICES='3,1' lists only 2 devices");
    expect_usage_error(c, (const char *[]){"--dry-run", "p", NULL},
                       (const char *[]){"CUDA_VISIBLE_DEVICES=GPU-1234", NULL},
                       "CUDA_VISIBLE_DEVICES entry 'GPU-1234' is not a device index");
}

/* ---------------- real local launches ---------------- */

static void test_local_world_sizes(void)
{
    ZERO_TEST_MEM_MARK();
    char c[512], home[600], work[600], out[600], tokens[5][64] = {{0}};
    make_case("world", c, sizeof(c));
    snprintf(home, sizeof(home), "%s/home", c);
    snprintf(work, sizeof(work), "%s/work", c);
    snprintf(out, sizeof(out), "%s/out", c);
    write_file(home, ".deepspeed_env", "# from HOME\nA=home\nB=home\nHOME_ONLY=h x\n");
    write_file(work, ".deepspeed_env", "B=cwd\nexport C = 'cwd value'\n");

    for (int world = 1; world <= 4; world++) {
        char ngpus[8], dir[64], master_port[16] = "";
        snprintf(ngpus, sizeof(ngpus), "%d", world);
        snprintf(dir, sizeof(dir), "world%d", world);
        make_case(dir, c, sizeof(c));
        snprintf(out, sizeof(out), "%s/out", c);
        {
            /* HOME and work of the first case directory, outputs in this one */
            char h[600];
            snprintf(h, sizeof(h), "%s/home", c);
            rmdir(h);
            CU_ASSERT_EQUAL(symlink(home, h), 0);
        }
        CU_ASSERT_EQUAL(run_launcher(c, work, (const char *[]){"--num_gpus", ngpus, "--master_port", "0", pe_bin,
                                                               out, "--var", "A", "--var", "B", "--var", "C",
                                                               "--var", "HOME_ONLY", "--var", "KEEP", "a1", "b 2",
                                                               NULL},
                                     (const char *[]){"KEEP=inherited", NULL}),
                        0);
        for (int r = 0; r < world; r++) {
            zero_launch_env_t env = {0};
            const char *token, *port;
            char cvd[32] = "", exp_cwd[700];
            for (int k = 0; k < world; k++)
                snprintf(cvd + strlen(cvd), sizeof(cvd) - strlen(cvd), "%s%d", k ? "," : "", k);
            CU_ASSERT_EQUAL_FATAL(rank_env(c, r, &env), 0);
            assert_var_int(&env, "RANK", r);
            assert_var_int(&env, "LOCAL_RANK", r);
            assert_var_int(&env, "WORLD_SIZE", world);
            assert_var_int(&env, "LOCAL_SIZE", world);
            assert_var_int(&env, "CROSS_RANK", 0);
            assert_var_int(&env, "CROSS_SIZE", 1);
            assert_var(&env, "MASTER_ADDR", "127.0.0.1");
            assert_var(&env, "CUDA_VISIBLE_DEVICES", cvd);
            assert_var(&env, "A", "home");          /* $HOME/.deepspeed_env */
            assert_var(&env, "B", "cwd");           /* ./.deepspeed_env overrides it */
            assert_var(&env, "C", "cwd value");
            assert_var(&env, "HOME_ONLY", "h x");
            assert_var(&env, "KEEP", "inherited");  /* the launcher's environment passes through */
            assert_var(&env, "ARGS", "[a1] [b 2]");
            snprintf(exp_cwd, sizeof(exp_cwd), "%s", work);
            {
                char real[700];
                if (realpath(work, real) != NULL)
                    snprintf(exp_cwd, sizeof(exp_cwd), "%s", real);
            }
            assert_var(&env, "CWD", exp_cwd);
            port = zero_launch_env_get(&env, "MASTER_PORT");
            CU_ASSERT_PTR_NOT_NULL_FATAL(port);
            CU_ASSERT(atoi(port) > 0 && atoi(port) < 65536);
            if (r == 0)
                snprintf(master_port, sizeof(master_port), "%s", port);
            CU_ASSERT_STRING_EQUAL(port, master_port); /* one port for all ranks */
            token = zero_launch_env_get(&env, "ZERO_JOB_TOKEN");
            CU_ASSERT_PTR_NOT_NULL_FATAL(token);
            CU_ASSERT_EQUAL(strlen(token), 32);
            CU_ASSERT_EQUAL(strspn(token, "0123456789abcdef"), 32);
            if (r == 0)
                snprintf(tokens[world], sizeof(tokens[world]), "%s", token);
            CU_ASSERT_STRING_EQUAL(token, tokens[world]); /* identical across ranks */
            zero_launch_env_clear(&env);
        }
        CU_ASSERT(!file_exists(c, "env", world)); /* exactly `world` ranks ran */
    }
    for (int a = 1; a <= 4; a++) /* fresh per launch */
        for (int b = a + 1; b <= 4; b++)
            CU_ASSERT_STRING_NOT_EQUAL(tokens[a], tokens[b]);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_env_file_variants(void)
{
    char c[512], home[600], work[600], out[600], abs_file[700];
    zero_launch_env_t env = {0};
    make_case("envfiles", c, sizeof(c));
    snprintf(home, sizeof(home), "%s/home", c);
    snprintf(work, sizeof(work), "%s/work", c);
    snprintf(out, sizeof(out), "%s/out", c);
    snprintf(abs_file, sizeof(abs_file), "%s/abs.env", c);
    write_file(home, ".deepspeed_env", "A=default-home\n");
    write_file(home, "custom.env", "A=custom-home\nH=1\n");
    write_file(work, "custom.env", "A=custom-cwd\nRANK=99\nZERO_JOB_TOKEN=fromfile\n");
    write_file(c, "abs.env", "A=absolute\n");

    /* DS_ENV_FILE renames the file in both places; per-rank variables win over it */
    CU_ASSERT_EQUAL(run_launcher(c, work, (const char *[]){"--num_gpus", "2", pe_bin, out, "--var", "A", "--var",
                                                           "H", NULL},
                                 (const char *[]){"DS_ENV_FILE=custom.env", NULL}),
                    0);
    for (int r = 0; r < 2; r++) {
        CU_ASSERT_EQUAL_FATAL(rank_env(c, r, &env), 0);
        assert_var(&env, "A", "custom-cwd");
        assert_var(&env, "H", "1");
        assert_var_int(&env, "RANK", r);
        assert_var(&env, "ZERO_JOB_TOKEN", "fromfile"); /* a token set by the user is passed through */
        assert_var(&env, "MASTER_PORT", "29500");        /* the default port */
        zero_launch_env_clear(&env);
    }
    /* --dry-run reads the same files and shows what every rank gets: the
     * entries in file order (a later file's value replacing an earlier one),
     * without those the launcher's per-rank variables override (RANK) */
    {
        static const char *const plan_env[] = {"rank=0 local_rank=0 host=localhost slot=0 ",
                                               "rank=1 local_rank=1 host=localhost slot=1 ", "env A=custom-cwd",
                                               "env H=1", "env ZERO_JOB_TOKEN=fromfile", NULL};
        static const char *const plan_default[] = {"rank=0 local_rank=0 host=localhost slot=0 ",
                                                   "env A=default-home", NULL};
        char hf[700];
        /* an explicit hostfile: the plan must not depend on the machine's default one */
        write_file(c, "hosts", "localhost slots=2\n");
        snprintf(hf, sizeof(hf), "%s/hosts", c);
        CU_ASSERT_EQUAL(run_launcher(c, work, (const char *[]){"-H", hf, "--dry-run", "--num_gpus", "2", pe_bin, NULL},
                                     (const char *[]){"DS_ENV_FILE=custom.env", NULL}),
                        0);
        assert_plan_lines(c, plan_env);
        CU_ASSERT_EQUAL(run_launcher(c, work, (const char *[]){"-H", hf, "--dry-run", "--num_gpus", "1", pe_bin, NULL},
                                     NULL),
                        0);
        assert_plan_lines(c, plan_default);
    }
    /* an absolute DS_ENV_FILE is read once, from where it is */
    CU_ASSERT_EQUAL(run_launcher(c, work, (const char *[]){pe_bin, out, "--var", "A", NULL},
                                 (const char *[]){"DS_ENV_FILE=x", NULL}),
                    0); /* x exists nowhere: no variables, no error */
    CU_ASSERT_EQUAL_FATAL(rank_env(c, 0, &env), 0);
    assert_var(&env, "A", "<unset>");
    zero_launch_env_clear(&env);
    {
        char ds[800];
        snprintf(ds, sizeof(ds), "DS_ENV_FILE=%s", abs_file);
        CU_ASSERT_EQUAL(run_launcher(c, work, (const char *[]){pe_bin, out, "--var", "A", NULL},
                                     (const char *[]){ds, "ZERO_JOB_TOKEN=exported-token", NULL}),
                        0);
    }
    CU_ASSERT_EQUAL_FATAL(rank_env(c, 0, &env), 0);
    assert_var(&env, "A", "absolute");
    assert_var(&env, "ZERO_JOB_TOKEN", "exported-token");
    zero_launch_env_clear(&env);

    /* a bad line is an error naming file:line, and nothing starts */
    write_file(work, ".deepspeed_env", "OK=1\nthis is not an assignment\n");
    CU_ASSERT_EQUAL(run_launcher(c, work, (const char *[]){pe_bin, out, NULL}, NULL), 2);
    assert_stderr_contains(c, "zero-launch: error: .deepspeed_env:2: malformed line 'this is not an assignment' "
                              "(expected KEY=VALUE)");
    /* ... in a dry run too */
    {
        char hf[700];
        snprintf(hf, sizeof(hf), "%s/hosts", c);
        CU_ASSERT_EQUAL(run_launcher(c, work, (const char *[]){"-H", hf, "--dry-run", pe_bin, NULL}, NULL), 2);
    }
    assert_stderr_contains(c, "zero-launch: error: .deepspeed_env:2: malformed line 'this is not an assignment' "
                              "(expected KEY=VALUE)");
}

static void test_multi_node_plan_locally(void)
{
    char c[512], hf[700], out[600];
    zero_launch_env_t env = {0};
    static const int cross[] = {0, 0, 1}, local[] = {0, 1, 0}, lsize[] = {2, 2, 1};
    static const char *const cvd[] = {"0,1", "0,1", "0"};
    make_case("two_local_nodes", c, sizeof(c));
    snprintf(out, sizeof(out), "%s/out", c);
    /* both names are this machine: forked directly, with a two-node layout */
    write_file(c, "hosts", "localhost slots=2\n127.0.0.1 slots=1\n");
    snprintf(hf, sizeof(hf), "%s/hosts", c);
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"-H", hf, pe_bin, out, NULL}, NULL), 0);
    for (int r = 0; r < 3; r++) {
        CU_ASSERT_EQUAL_FATAL(rank_env(c, r, &env), 0);
        assert_var_int(&env, "RANK", r);
        assert_var_int(&env, "LOCAL_RANK", local[r]);
        assert_var_int(&env, "WORLD_SIZE", 3);
        assert_var_int(&env, "LOCAL_SIZE", lsize[r]);
        assert_var_int(&env, "CROSS_RANK", cross[r]);
        assert_var_int(&env, "CROSS_SIZE", 2);
        assert_var(&env, "MASTER_ADDR", "localhost"); /* the first host of a hostfile */
        assert_var(&env, "CUDA_VISIBLE_DEVICES", cvd[r]);
        zero_launch_env_clear(&env);
    }
    /* --launcher local runs any host's ranks here */
    write_file(c, "hosts", "nodeA slots=1\nnodeB slots=2\n");
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"-H", hf, "--launcher", "local", "-e", "nodeB:0",
                                                           "--master_addr", "10.9.9.9", pe_bin, out, NULL}, NULL),
                    0);
    CU_ASSERT_EQUAL_FATAL(rank_env(c, 1, &env), 0);
    assert_var_int(&env, "CROSS_RANK", 1);
    assert_var(&env, "CUDA_VISIBLE_DEVICES", "1");
    assert_var(&env, "MASTER_ADDR", "10.9.9.9");
    zero_launch_env_clear(&env);
}

static void test_tag_output(void)
{
    char c[512], out[600], path[700], text[16384], expect[64], *line, *save = NULL;
    int next[2] = {0, 0}, count = 0;
    make_case("tag", c, sizeof(c));
    snprintf(out, sizeof(out), "%s/out", c);
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"--tag_output", "--num_gpus", "2", pe_bin, out,
                                                           "--print", "50", NULL}, NULL), 0);
    snprintf(path, sizeof(path), "%s/stdout", c);
    read_file(path, text, sizeof(text));
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save), count++) {
        int r = -1;
        CU_ASSERT_EQUAL(sscanf(line, "[rank %d] ", &r), 1);
        CU_ASSERT_FATAL(r == 0 || r == 1);
        snprintf(expect, sizeof(expect), "[rank %d] out %d of rank %d", r, next[r], r);
        CU_ASSERT_STRING_EQUAL(line, expect); /* whole lines, in order per rank */
        next[r]++;
    }
    CU_ASSERT_EQUAL(count, 100);
    snprintf(path, sizeof(path), "%s/stderr", c);
    read_file(path, text, sizeof(text));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "[rank 1] err 49 of rank 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "[rank 0] err 0 of rank 0\n"));
}

/* ---------------- failures ---------------- */

static int rank_pid(const char *c, int r)
{
    zero_launch_env_t env = {0};
    int pid = -1;
    if (rank_env(c, r, &env) == 0 && zero_launch_env_get(&env, "PID") != NULL)
        pid = atoi(zero_launch_env_get(&env, "PID"));
    zero_launch_env_clear(&env);
    return pid;
}

static void test_failure_exit_code(void)
{
    char c[512], out[600];
    make_case("fail", c, sizeof(c));
    snprintf(out, sizeof(out), "%s/out", c);
    /* rank 1 exits 3; ranks 0 and 2 would sleep a minute */
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"--num_gpus", "3", "--term_grace", "0.5", pe_bin, out,
                                                           "--fail", "1:3", "--sleep", "60", NULL}, NULL), 3);
    assert_stderr_contains(c, "zero-launch: rank 1 on localhost exited with status 3; stopping the other ranks");
    for (int r = 0; r < 3; r++) {
        int pid = rank_pid(c, r);
        CU_ASSERT(pid > 0);
        CU_ASSERT(!pid_alive(pid));
    }
    CU_ASSERT(file_exists(c, "term", 0)); /* stopped by SIGTERM */
    CU_ASSERT(file_exists(c, "term", 2));
    CU_ASSERT(!file_exists(c, "term", 1));
}

static void test_killed_rank(void)
{
    char c[512], out[600];
    make_case("killed", c, sizeof(c));
    snprintf(out, sizeof(out), "%s/out", c);
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"--num_gpus", "2", "--term_grace", "0.5", pe_bin, out,
                                                           "--kill", "1", "--sleep", "60", NULL}, NULL), 128 + SIGKILL);
    assert_stderr_contains(c, "zero-launch: rank 1 on localhost was killed by signal 9");
    CU_ASSERT(!pid_alive(rank_pid(c, 0)));
    CU_ASSERT(file_exists(c, "term", 0));
}

static void test_kill_escalation(void)
{
    char c[512], out[600];
    make_case("escalate", c, sizeof(c));
    snprintf(out, sizeof(out), "%s/out", c);
    /* the survivors ignore SIGTERM: SIGKILL follows after the grace */
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"--num_gpus", "3", "--term_grace", "0.3", pe_bin, out,
                                                           "--ignore_term", "--fail", "0:4", "--sleep", "60", NULL},
                                 NULL), 4);
    for (int r = 1; r < 3; r++) {
        CU_ASSERT(rank_pid(c, r) > 0);
        CU_ASSERT(!pid_alive(rank_pid(c, r)));
        CU_ASSERT(!file_exists(c, "term", r));
    }
}

static void test_others_exit_on_their_own(void)
{
    char c[512], out[600];
    make_case("own", c, sizeof(c));
    snprintf(out, sizeof(out), "%s/out", c);
    /* rank 0 fails, the others finish normally within the grace: nobody is signalled */
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"--num_gpus", "3", "--term_grace", "30", pe_bin, out,
                                                           "--fail", "0:7", "--sleep", "0.2", NULL}, NULL), 7);
    for (int r = 1; r < 3; r++)
        CU_ASSERT(!file_exists(c, "term", r));
}

static void test_sigint_teardown(void)
{
    char c[512], out[600];
    pid_t launcher;
    int ready = 0;
    make_case("sigint", c, sizeof(c));
    snprintf(out, sizeof(out), "%s/out", c);
    launcher = start_launcher(c, NULL, (const char *[]){"--num_gpus", "3", "--term_grace", "2", pe_bin, out,
                                                        "--sleep", "60", NULL}, NULL);
    CU_ASSERT_FATAL(launcher > 0);
    for (int tries = 0; tries < 2000 && !ready; tries++) {
        ready = file_exists(c, "env", 0) && file_exists(c, "env", 1) &&
                file_exists(c, "env", 2);
        if (!ready)
            sleep_ms(10);
    }
    CU_ASSERT_FATAL(ready);
    CU_ASSERT_EQUAL(kill(launcher, SIGINT), 0);
    CU_ASSERT_EQUAL(wait_launcher(launcher), 128 + SIGINT);
    for (int r = 0; r < 3; r++) {
        CU_ASSERT(!pid_alive(rank_pid(c, r))); /* no stray process left */
        CU_ASSERT(file_exists(c, "term", r));
    }
    assert_stderr_contains(c, "zero-launch: received SIGINT; stopping all ranks");
}

static void test_exec_failure(void)
{
    char c[512];
    make_case("noexec", c, sizeof(c));
    CU_ASSERT_EQUAL(run_launcher(c, NULL, (const char *[]){"--num_gpus", "2", "--term_grace", "0.2",
                                                           "/nonexistent/program", NULL}, NULL), 127);
    assert_stderr_contains(c, "cannot run '/nonexistent/program': No such file or directory");
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"dry_run_plans", test_dry_run_plans},
        {"dry_run_errors", test_dry_run_errors},
        {"local_world_sizes_1_to_4", test_local_world_sizes},
        {"env_file_variants", test_env_file_variants},
        {"multi_node_plan_locally", test_multi_node_plan_locally},
        {"tag_output", test_tag_output},
        {"failure_exit_code", test_failure_exit_code},
        {"killed_rank", test_killed_rank},
        {"kill_escalation", test_kill_escalation},
        {"others_exit_on_their_own", test_others_exit_on_their_own},
        {"sigint_teardown", test_sigint_teardown},
        {"exec_failure", test_exec_failure},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {
        {"launch_run", suite_init, suite_clean, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    /* silence libzero logging from the env-file parser used to read results */
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);
    return zero_test_main(argc, argv, suites);
}
