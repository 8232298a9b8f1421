/*
 * Multi-process communicator tests: each case starts a real job through
 * zero-launch (`--num_gpus N --master_port 0`: N local ranks, a free port) in
 * which every rank runs comm_rank over real UCX, and checks its outcome.
 *
 *   test_comm_jobs collectives N [--big]   every collective at world size N
 *   test_comm_jobs nonblocking N           request test/wait, progress during compute
 *   test_comm_jobs kill N K                rank K dies mid-collective: the others fail
 *                                          naming it, the launcher returns non-zero
 *   test_comm_jobs stall N K               rank K stays silent: the others time out naming it
 *   test_comm_jobs mismatch                two ranks disagree on a count: both fail cleanly
 *   test_comm_jobs badtoken                stray rendezvous clients are refused, the job forms
 *   test_comm_jobs run N MODE [ARG]        comm_rank MODE [ARG] at world size N must pass
 *                                          (direct, mixed, alloc-misuse)
 *   test_comm_jobs kill-direct N K         as kill, in a direct-path (shared memory) collective
 */
#include "test_main.h"
#include "util/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef ZERO_TEST_LAUNCHER
#error "ZERO_TEST_LAUNCHER must name zero-launch"
#endif
#ifndef ZERO_TEST_RANK_PROGRAM
#error "ZERO_TEST_RANK_PROGRAM must name comm_rank"
#endif

static int g_argc;
static char **g_argv;
static char g_dir[256];

static void make_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof(g_dir), "%s/zero-comm-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(g_dir));
    setenv("ZERO_TEST_DIR", g_dir, 1);
}

static void remove_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
}

static void path_in_dir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_dir, name);
}

/* Starts the launcher with @p nranks ranks of comm_rank @p args; output to job.log. */
static pid_t launch(int nranks, const char *const *args)
{
    char log[300], n[16];
    const char *argv[32];
    int a = 0;
    pid_t pid;
    snprintf(n, sizeof(n), "%d", nranks);
    path_in_dir(log, sizeof(log), "job.log");
    argv[a++] = ZERO_TEST_LAUNCHER;      /* zero-launch, one local node */
    argv[a++] = "--num_gpus";
    argv[a++] = n;
    argv[a++] = "--master_port";
    argv[a++] = "0";
    argv[a++] = ZERO_TEST_RANK_PROGRAM;
    for (int i = 0; args[i] != NULL && a < 31; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static void print_log(void)
{
    char path[300], buf[4096];
    FILE *f;
    size_t k;
    path_in_dir(path, sizeof(path), "job.log");
    if ((f = fopen(path, "r")) == NULL)
        return;
    fprintf(stderr, "---- job output ----\n");
    while ((k = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, k, stderr);
    fprintf(stderr, "--------------------\n");
    fclose(f);
}

static int log_contains(const char *needle)
{
    char path[300];
    FILE *f;
    char *text;
    long size;
    int found;
    path_in_dir(path, sizeof(path), "job.log");
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = calloc(1, (size_t)size + 1);
    found = text != NULL && fread(text, 1, (size_t)size, f) == (size_t)size && strstr(text, needle) != NULL;
    free(text);
    fclose(f);
    return found;
}

static int wait_rc(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int run_job(int nranks, const char *const *args)
{
    pid_t pid = launch(nranks, args);
    CU_ASSERT_FATAL(pid > 0);
    return wait_rc(pid);
}

/* ---- cases ---- */

static void test_collectives(void)
{
    int n = atoi(g_argv[2]);
    const char *args[] = {"collectives", g_argc > 3 ? g_argv[3] : NULL, NULL};
    int rc;
    make_dir();
    rc = run_job(n, args);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0)
        print_log();
    remove_dir();
}

static void test_run(void)
{
    int n = atoi(g_argv[2]);
    const char *args[] = {g_argv[3], g_argc > 4 ? g_argv[4] : NULL, NULL};
    int rc;
    make_dir();
    rc = run_job(n, args);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0)
        print_log();
    remove_dir();
}

static void test_nonblocking(void)
{
    int n = atoi(g_argv[2]);
    const char *args[] = {"nonblocking", NULL};
    int rc;
    make_dir();
    rc = run_job(n, args);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0)
        print_log();
    remove_dir();
}

/* kill: the victim dies (SIGKILL); stall: it stays alive but silent. */
static void check_failure_job(int stall)
{
    int n = atoi(g_argv[2]), victim = atoi(g_argv[3]), ok = 1;
    const char *args[] = {stall ? "stall" : g_argv[1], g_argv[3], NULL};
    double bound = stall ? 2.0 : 5.0;
    int rc;

    make_dir();
    setenv("ZERO_COMM_TIMEOUT", stall ? "2" : "5", 1);   /* the configured bound */
    rc = run_job(n, args);
    if (stall)
        CU_ASSERT_EQUAL(rc, 0)                /* nobody died */
    else
        CU_ASSERT_NOT_EQUAL(rc, 0);           /* the launcher reports the dead rank */
    for (int r = 0; r < n; r++) {
        char path[300], name[32], line[256] = "";
        FILE *f;
        int rank = -1, status = 0, named = 0;
        double elapsed = 1e9;
        if (r == victim)
            continue;
        snprintf(name, sizeof(name), "result.%d", r);
        path_in_dir(path, sizeof(path), name);
        f = fopen(path, "r");
        CU_ASSERT_PTR_NOT_NULL(f);
        if (f == NULL) {
            ok = 0;
            continue;
        }
        if (fgets(line, sizeof(line), f) == NULL ||
            sscanf(line, "rank %d status %d elapsed %lf named %d", &rank, &status, &elapsed, &named) != 4)
            ok = 0;
        fclose(f);
        CU_ASSERT_EQUAL(rank, r);
        if (stall)
            CU_ASSERT(status == -7 /* ZERO_ERR_TIMEOUT */ && elapsed >= bound)
        else
            CU_ASSERT(status == -6 /* ZERO_ERR_COMM */ || status == -7 /* ZERO_ERR_TIMEOUT */);
        CU_ASSERT_EQUAL(named, 1);
        /* Failure must be reported within the configured bound (plus start-up slack
         * on a loaded machine), never after a hang. */
        CU_ASSERT(elapsed < bound + 5.0);
        if (rank != r || named != 1 || elapsed >= bound + 5.0)
            ok = 0;
    }
    if (!ok || (rc == 0) != stall)
        print_log();
    unsetenv("ZERO_COMM_TIMEOUT");
    remove_dir();
}

static void test_kill(void)
{
    check_failure_job(0);
}

static void test_stall(void)
{
    check_failure_job(1);
}

static void test_mismatch(void)
{
    const char *args[] = {"mismatch", NULL};
    int rc;
    make_dir();
    rc = run_job(2, args);
    CU_ASSERT_EQUAL(rc, 0);      /* both ranks saw the protocol error they expected */
    for (int r = 0; r < 2; r++) {
        char path[300], name[32];
        snprintf(name, sizeof(name), "result.%d", r);
        path_in_dir(path, sizeof(path), name);
        CU_ASSERT_EQUAL(access(path, F_OK), 0);
    }
    if (rc != 0)
        print_log();
    remove_dir();
}

/* A stray client: connects to rank 0's rendezvous, sends @p data, and
 * returns 1 if the server closed the connection within 20 s. */
static int stray_client(int port, const void *data, size_t len)
{
    struct sockaddr_in a;
    double end = zero_clock_now() + 30;
    int fd = -1, closed = 0;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    while (zero_clock_now() < end) {         /* rank 0 may not listen yet */
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            break;
        if (fd >= 0)
            close(fd);
        fd = -1;
        usleep(20000);
    }
    if (fd < 0)
        return 0;
    if (len > 0 && send(fd, data, len, MSG_NOSIGNAL) != (ssize_t)len) {
        close(fd);
        return 1;   /* already refused */
    }
    end = zero_clock_now() + 20;
    while (!closed && zero_clock_now() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        char buf[256];
        if (poll(&p, 1, 200) > 0) {
            ssize_t k = recv(fd, buf, sizeof(buf), 0);
            if (k == 0 || (k < 0 && errno == ECONNRESET))
                closed = 1;
            else if (k > 0)
                break;      /* the server answered a stray client: wrong */
        }
    }
    close(fd);
    return closed;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void make_hello(unsigned char *h, const unsigned char *token, uint32_t rank, uint32_t world, uint32_t len)
{
    memset(h, 0, 64);
    memcpy(h, "ZERO-RDV", 8);
    put_u32(h + 8, 1);
    put_u32(h + 12, rank);
    put_u32(h + 16, world);
    put_u32(h + 20, len);
    memcpy(h + 24, token, 16);
}

static void test_badtoken(void)
{
    const char *args[] = {"rdv-delay", NULL};
    char path[300], hex[64] = "";
    unsigned char token[16], bad[16], hello[64], garbage[64];
    int port = 0, rc, silent = -1;
    struct sockaddr_in a;
    FILE *f = NULL;
    double end;
    pid_t pid;

    make_dir();
    pid = launch(2, args);
    CU_ASSERT_FATAL(pid > 0);
    /* Rank 1 publishes the job's port and token, then holds back its own join. */
    path_in_dir(path, sizeof(path), "rdv_env");
    for (end = zero_clock_now() + 60; zero_clock_now() < end && (f = fopen(path, "r")) == NULL;)
        usleep(20000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fscanf(f, "%d %63s", &port, hex), 2);
    fclose(f);
    CU_ASSERT_EQUAL_FATAL(strlen(hex), 32);
    for (int i = 0; i < 16; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        token[i] = (unsigned char)v;
        bad[i] = (unsigned char)(v ^ (i == 7 ? 0x10 : 0));
    }

    /* A client that connects and stays silent must not block the job. */
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (end = zero_clock_now() + 30; zero_clock_now() < end;) {
        silent = socket(AF_INET, SOCK_STREAM, 0);
        if (silent >= 0 && connect(silent, (struct sockaddr *)&a, sizeof(a)) == 0)
            break;
        if (silent >= 0)
            close(silent);
        silent = -1;
        usleep(20000);
    }
    CU_ASSERT(silent >= 0);

    make_hello(hello, bad, 1, 2, 100);                 /* wrong token (one bit) */
    CU_ASSERT(stray_client(port, hello, sizeof(hello)));
    memset(garbage, 'x', sizeof(garbage));             /* not a hello at all */
    CU_ASSERT(stray_client(port, garbage, sizeof(garbage)));
    make_hello(hello, token, 1, 2, 0x7fffffffu);       /* right token, oversized length */
    CU_ASSERT(stray_client(port, hello, sizeof(hello)));
    make_hello(hello, token, 7, 2, 100);               /* right token, rank outside the world */
    CU_ASSERT(stray_client(port, hello, sizeof(hello)));

    /* Now rank 1 joins: the job must form and run an allreduce. */
    path_in_dir(path, sizeof(path), "go");
    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    rc = wait_rc(pid);
    if (silent >= 0)
        close(silent);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(log_contains("refused connection from 127.0.0.1:"));
    CU_ASSERT(log_contains("wrong job token"));
    CU_ASSERT(log_contains("not a libzero rendezvous hello"));
    CU_ASSERT(log_contains("blob length 2147483647"));
    CU_ASSERT(log_contains("rank 7 of world 2"));
    if (rc != 0 || !log_contains("wrong job token"))
        print_log();
    remove_dir();
}

int main(int argc, char **argv)
{
    CU_TestInfo collectives[] = {{"collectives", test_collectives}, CU_TEST_INFO_NULL};
    CU_TestInfo nonblocking[] = {{"nonblocking", test_nonblocking}, CU_TEST_INFO_NULL};
    CU_TestInfo run_tests[] = {{"comm_rank mode", test_run}, CU_TEST_INFO_NULL};
    CU_TestInfo kill_tests[] = {{"rank killed mid-collective", test_kill}, CU_TEST_INFO_NULL};
    CU_TestInfo stall_tests[] = {{"silent rank times out", test_stall}, CU_TEST_INFO_NULL};
    CU_TestInfo mismatch_tests[] = {{"mismatched counts fail on both sides", test_mismatch}, CU_TEST_INFO_NULL};
    CU_TestInfo badtoken[] = {{"stray rendezvous clients refused", test_badtoken}, CU_TEST_INFO_NULL};
    CU_SuiteInfo suites[] = {{"comm jobs", NULL, NULL, NULL, NULL, NULL}, CU_SUITE_INFO_NULL};
    const char *mode = argc > 1 ? argv[1] : "";

    g_argc = argc;
    g_argv = argv;
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(mode, "collectives") == 0 && argc > 2)
        suites[0].pTests = collectives;
    else if (strcmp(mode, "nonblocking") == 0 && argc > 2)
        suites[0].pTests = nonblocking;
    else if ((strcmp(mode, "kill") == 0 || strcmp(mode, "kill-direct") == 0) && argc > 3)
        suites[0].pTests = kill_tests;
    else if (strcmp(mode, "run") == 0 && argc > 3)
        suites[0].pTests = run_tests;
    else if (strcmp(mode, "stall") == 0 && argc > 3)
        suites[0].pTests = stall_tests;
    else if (strcmp(mode, "badtoken") == 0)
        suites[0].pTests = badtoken;
    else if (strcmp(mode, "mismatch") == 0)
        suites[0].pTests = mismatch_tests;
    else {
        fprintf(stderr, "usage: test_comm_jobs collectives N [--big] | nonblocking N | kill N K | kill-direct N K | stall N K | "
                        "mismatch | badtoken | run N MODE [ARG]\n");
        return 2;
    }
    return zero_test_main(argc, argv, suites);
}
