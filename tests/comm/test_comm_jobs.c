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
 *   test_comm_jobs rdv-idle                64 idle connections to the rendezvous port do not
 *                                          stop a job from forming, nor make it blame the token
 *   test_comm_jobs rdv-deadline            idle and slow connections are dropped at the
 *                                          per-connection deadline
 *   test_comm_jobs rdv-wrong-token         a rank with a wrong token is told "token mismatch"
 *   test_comm_jobs rdv-client-errors       a rank that cannot join says why (refused, closed,
 *                                          no answer) and never blames the token
 *   test_comm_jobs rdv-hostile             a 3-rank job forms and communicates under 350
 *                                          hostile connections (tests/comm/rdv_attacker.c)
 *                                          in at most twice its unloaded formation time plus
 *                                          the per-connection deadline
 *   test_comm_jobs run N MODE [ARG]        comm_rank MODE [ARG] at world size N must pass
 *                                          (direct, mixed, alloc-misuse)
 *   test_comm_jobs kill-direct N K         as kill, in a direct-path (shared memory) collective
 *   test_comm_jobs ucx-tcp-seg             3 ranks over UCX's tcp, rank 1 with 256k tcp
 *                                          segments: every collective passes, rank 1 warns;
 *                                          then UCX_TLS=^tcp: nothing pinned, no UCX warning
 */
#include "test_main.h"
#include "rdv_attacker.h"
#include "util/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
static int g_master_port;       /* --master_port of the next launch; 0: the launcher picks one */

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
    char log[300], n[16], port[16];
    const char *argv[32];
    int a = 0;
    pid_t pid;
    snprintf(n, sizeof(n), "%d", nranks);
    snprintf(port, sizeof(port), "%d", g_master_port);
    path_in_dir(log, sizeof(log), "job.log");
    argv[a++] = ZERO_TEST_LAUNCHER;      /* zero-launch, one local node */
    argv[a++] = "--num_gpus";
    argv[a++] = n;
    argv[a++] = "--master_port";
    argv[a++] = port;
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

/* Three ranks over UCX's tcp (UCX_TLS=tcp), rank 1 run with 256k tcp
 * segments (COMM_RANK_UCX_RANK/COMM_RANK_UCX, comm_rank.c): UCX 1.13's tcp
 * receiver trusts the sender's segment, and rank 2 died of an assertion
 * (tcp_ep.c:1404) until every rank pinned them (util/ucx_pins.h). Every
 * collective must pass, and rank 1 say which setting it did not use. Then
 * a 2-rank job with UCX_TLS=^tcp: no "invalid configurations" warning from
 * UCX (a pin where no transport has it). */
static void test_ucx_tcp_seg(void)
{
    const char *args[] = {"collectives", NULL};
    int rc;
    make_dir();
    setenv("UCX_TLS", "tcp", 1);
    setenv("COMM_RANK_UCX_RANK", "1", 1);
    setenv("COMM_RANK_UCX", "UCX_TCP_TX_SEG_SIZE=256k UCX_TCP_RX_SEG_SIZE=256k", 1);
    rc = run_job(3, args);
    unsetenv("UCX_TLS");
    unsetenv("COMM_RANK_UCX_RANK");
    unsetenv("COMM_RANK_UCX");
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(log_contains("[zero rank 1] WARN ucx: UCX_TCP_TX_SEG_SIZE=256k is not used"));
    if (rc != 0 || !log_contains("UCX_TCP_TX_SEG_SIZE=256k is not used"))
        print_log();
    /* transports without tcp (an exclusion list): nothing pinned, so UCX
     * has no setting to call invalid at each worker */
    setenv("UCX_TLS", "^tcp", 1);
    rc = run_job(2, args);
    unsetenv("UCX_TLS");
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(!log_contains("invalid configurations"));
    if (rc != 0 || log_contains("invalid configurations"))
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

/* A stray client: connects to rank 0's rendezvous, sends @p data, and reads
 * what the server answers until it closes the connection (within 20 s).
 * Returns the refusal code of the answer (ZERO-RPL header, bytes 20-23), -1
 * when it closed without answering, -2 when it did not close or answered
 * something else (wrong either way). */
static int stray_client(int port, const void *data, size_t len)
{
    struct sockaddr_in a;
    double end = zero_clock_now() + 30;
    unsigned char answer[128];
    size_t have = 0;
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
        return -2;
    if (len > 0 && send(fd, data, len, MSG_NOSIGNAL) != (ssize_t)len) {
        close(fd);
        return -1;   /* already refused */
    }
    end = zero_clock_now() + 20;
    while (!closed && zero_clock_now() < end && have < sizeof(answer)) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 200) > 0) {
            ssize_t k = recv(fd, answer + have, sizeof(answer) - have, 0);
            if (k == 0 || (k < 0 && errno == ECONNRESET))
                closed = 1;
            else if (k > 0)
                have += (size_t)k;
        }
    }
    close(fd);
    if (!closed)
        return -2;
    if (have == 0)
        return -1;
    if (have != 64 || memcmp(answer, "ZERO-RPL", 8) != 0)
        return -2;
    for (int i = 24; i < 64; i++)
        if (answer[i] != 0)
            return -2;      /* a refusal must not carry the job's token */
    return (int)((uint32_t)answer[20] << 24 | (uint32_t)answer[21] << 16 | (uint32_t)answer[22] << 8 | answer[23]);
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

    /* Refusal codes: 1 token mismatch, 3 rank/world, 5 length (lib/comm/rdv_wire.h). */
    make_hello(hello, bad, 1, 2, 100);                 /* wrong token (one bit) */
    CU_ASSERT_EQUAL(stray_client(port, hello, sizeof(hello)), 1);
    memset(garbage, 'x', sizeof(garbage));             /* not a hello at all: closed, not answered */
    CU_ASSERT_EQUAL(stray_client(port, garbage, sizeof(garbage)), -1);
    make_hello(hello, token, 1, 2, 0x7fffffffu);       /* right token, oversized length */
    CU_ASSERT_EQUAL(stray_client(port, hello, sizeof(hello)), 5);
    make_hello(hello, token, 7, 2, 100);               /* right token, rank outside the world */
    CU_ASSERT_EQUAL(stray_client(port, hello, sizeof(hello)), 3);

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
    if (rc != 0 || !log_contains("wrong job token") || !log_contains("rank 7 of world 2"))
        print_log();
    remove_dir();
}

/* ---- rendezvous under hostile traffic ---- */

#define RDV_CONN_TIMEOUT "2"       /* ZERO_RENDEZVOUS_CONN_TIMEOUT of these jobs, seconds */

/* A port free on this host right now, for --master_port. */
static int pick_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int port = 0, fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* A connection to 127.0.0.1:@p port, retried until something listens (at most
 * @p timeout_s). Returns the fd or -1. */
static int connect_loopback(int port, double timeout_s)
{
    struct sockaddr_in a;
    double end = zero_clock_now() + timeout_s;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    do {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            return fd;
        if (fd >= 0)
            close(fd);
        usleep(5000);
    } while (zero_clock_now() < end);
    return -1;
}

static void touch(const char *name)
{
    char path[300];
    FILE *f;
    path_in_dir(path, sizeof(path), name);
    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
}

/* The latest formed.R time of a rdv-hold job (CLOCK_MONOTONIC), or -1 if a rank did not write it. */
static double formed_at(int nranks)
{
    double latest = 0;
    for (int r = 0; r < nranks; r++) {
        char path[300], name[32];
        double t = -1;
        FILE *f;
        snprintf(name, sizeof(name), "formed.%d", r);
        path_in_dir(path, sizeof(path), name);
        if ((f = fopen(path, "r")) == NULL)
            return -1;
        if (fscanf(f, "%lf", &t) != 1)
            t = -1;
        fclose(f);
        if (t < 0)
            return -1;
        if (t > latest)
            latest = t;
    }
    return latest;
}

/* The finding of issue 11: 64 connections that send nothing held rank 0's
 * whole pending table; rank 1 was refused, did not retry, and blamed the
 * token. Now they are evicted and the job forms at once. */
static void test_rdv_idle(void)
{
    const char *args[] = {"rdv-hold", NULL};
    int idle[64], rc, opened = 0;
    double t_go, formed;
    pid_t pid;

    make_dir();
    setenv("ZERO_RENDEZVOUS_CONN_TIMEOUT", "30", 1);   /* eviction, not the deadline, must let rank 1 in */
    g_master_port = pick_free_port();
    CU_ASSERT_FATAL(g_master_port > 0);
    pid = launch(3, args);
    CU_ASSERT_FATAL(pid > 0);
    for (int i = 0; i < 64; i++) {
        idle[i] = connect_loopback(g_master_port, i == 0 ? 60 : 5);
        opened += idle[i] >= 0;
    }
    CU_ASSERT_EQUAL(opened, 64);
    usleep(200000);           /* let rank 0 accept them all */
    t_go = zero_clock_now();
    touch("go");
    rc = wait_rc(pid);
    formed = formed_at(3);
    for (int i = 0; i < 64; i++)
        if (idle[i] >= 0)
            close(idle[i]);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(formed > 0);
    /* well within the 30 s deadline: the idle connections were evicted, not waited out */
    CU_ASSERT(formed - t_go < 15.0);
    CU_ASSERT(!log_contains("token"));
    if (formed > 0)
        fprintf(stderr, "rdv-idle: formed %.2f s after the ranks were let go, 64 idle connections open\n",
                formed - t_go);
    if (rc != 0 || formed < 0 || formed - t_go >= 15.0 || log_contains("token"))
        print_log();
    g_master_port = 0;
    unsetenv("ZERO_RENDEZVOUS_CONN_TIMEOUT");
    remove_dir();
}

/* Per-connection deadline: an idle client and one that sends its hello a byte
 * every 0.25 s are both closed by rank 0 once ZERO_RENDEZVOUS_CONN_TIMEOUT
 * (1 s here) has passed since they connected, not before, not much later. */
static void test_rdv_deadline(void)
{
    const char *args[] = {"rdv-hold", NULL};
    const char *hello_prefix = "ZERO-RDV";
    int fds[2], rc;
    double opened[2], closed_at[2] = {-1, -1}, next_byte = 0;
    size_t sent = 0;
    pid_t pid;

    make_dir();
    setenv("ZERO_RENDEZVOUS_CONN_TIMEOUT", "1", 1);
    g_master_port = pick_free_port();
    CU_ASSERT_FATAL(g_master_port > 0);
    pid = launch(2, args);
    CU_ASSERT_FATAL(pid > 0);
    for (int i = 0; i < 2; i++) {
        fds[i] = connect_loopback(g_master_port, 60);
        opened[i] = zero_clock_now();
        CU_ASSERT_FATAL(fds[i] >= 0);
    }
    while (zero_clock_now() < opened[0] + 6 && (closed_at[0] < 0 || closed_at[1] < 0)) {
        struct pollfd p[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
        if (closed_at[1] < 0 && zero_clock_now() >= next_byte && sent < strlen(hello_prefix)) {
            if (send(fds[1], hello_prefix + sent, 1, MSG_NOSIGNAL) == 1)   /* the slow one */
                sent++;
            next_byte = zero_clock_now() + 0.25;
        }
        if (poll(p, 2, 20) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            char buf[64];
            if (closed_at[i] < 0 && p[i].revents != 0 && recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT) <= 0)
                closed_at[i] = zero_clock_now();
        }
    }
    touch("go");
    rc = wait_rc(pid);
    for (int i = 0; i < 2; i++) {
        close(fds[i]);
        if (closed_at[i] > 0)
            fprintf(stderr, "rdv-deadline: %s connection closed by rank 0 after %.2f s\n",
                    i == 0 ? "idle" : "slow", closed_at[i] - opened[i]);
        else
            fprintf(stderr, "rdv-deadline: %s connection still open after 6 s\n", i == 0 ? "idle" : "slow");
        CU_ASSERT(closed_at[i] > 0);
        CU_ASSERT(closed_at[i] - opened[i] >= 0.9);
        CU_ASSERT(closed_at[i] - opened[i] < 4.0);
    }
    CU_ASSERT(sent >= 3);     /* it was still sending when it was dropped */
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(log_contains("no complete hello within 1.0 s"));
    if (rc != 0 || !log_contains("no complete hello within 1.0 s"))
        print_log();
    g_master_port = 0;
    unsetenv("ZERO_RENDEZVOUS_CONN_TIMEOUT");
    remove_dir();
}

/* Rank 1 presents a wrong token: rank 0 answers why, rank 1 says so. */
static void test_rdv_wrong_token(void)
{
    const char *args[] = {"rdv-wrong-token", NULL};
    int rc;
    make_dir();
    setenv("ZERO_RENDEZVOUS_TIMEOUT", "4", 1);
    rc = run_job(2, args);
    CU_ASSERT_EQUAL(rc, 0);     /* rank 1 failed with ZERO_ERR_PROTOCOL, rank 0 timed out */
    CU_ASSERT(log_contains("refused rank 1: token mismatch"));
    CU_ASSERT(log_contains("wrong job token"));       /* rank 0's side */
    if (rc != 0 || !log_contains("refused rank 1: token mismatch"))
        print_log();
    setenv("ZERO_RENDEZVOUS_TIMEOUT", "60", 1);
    remove_dir();
}

/* Runs comm_rank as rank 1 of 2 against 127.0.0.1:@p port (no launcher),
 * output to job.log, and returns its exit status. */
static int run_lone_rank1(int port)
{
    char log[300], port_text[16];
    pid_t pid;
    path_in_dir(log, sizeof(log), "job.log");
    snprintf(port_text, sizeof(port_text), "%d", port);
    pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setenv("RANK", "1", 1);
        setenv("WORLD_SIZE", "2", 1);
        setenv("LOCAL_RANK", "1", 1);
        setenv("LOCAL_SIZE", "2", 1);
        setenv("MASTER_ADDR", "127.0.0.1", 1);
        setenv("MASTER_PORT", port_text, 1);
        setenv("ZERO_JOB_TOKEN", "00112233445566778899aabbccddeeff", 1);
        setenv("ZERO_RENDEZVOUS_TIMEOUT", "3", 1);
        setenv("ZERO_RENDEZVOUS_CONN_TIMEOUT", "1", 1);
        execl(ZERO_TEST_RANK_PROGRAM, ZERO_TEST_RANK_PROGRAM, "collectives", (char *)NULL);
        _exit(127);
    }
    CU_ASSERT_FATAL(pid > 0);
    return wait_rc(pid);
}

typedef struct fake_rank0 {
    int lfd;
    int answer;                 /* 0: close each connection at once; 1: read the hello, never answer */
    atomic_int stop;
    int held[256];
    int nheld;
} fake_rank0_t;

static void *fake_rank0_main(void *arg)
{
    fake_rank0_t *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {f->lfd, POLLIN, 0};
        int fd;
        if (poll(&p, 1, 50) <= 0)
            continue;
        if ((fd = accept(f->lfd, NULL, NULL)) < 0)
            continue;
        if (f->answer == 0 || f->nheld == 256)
            close(fd);
        else
            f->held[f->nheld++] = fd;
    }
    for (int i = 0; i < f->nheld; i++)
        close(f->held[i]);
    return NULL;
}

/* A rank that cannot join reports what happened, never the token. */
static void test_rdv_client_errors(void)
{
    static const char *const cases[] = {"refused", "closed", "silent"};
    static const char *const expect[] = {
        "connection refused",
        "closed by rank 0 before it answered",
        "did not answer within the rendezvous timeout",
    };
    make_dir();
    for (int k = 0; k < 3; k++) {
        fake_rank0_t f;
        pthread_t thread;
        struct sockaddr_in a;
        int port = pick_free_port(), rc, one = 1;
        CU_ASSERT_FATAL(port > 0);
        memset(&f, 0, sizeof(f));
        f.lfd = -1;
        if (k > 0) {   /* a listener that drops every connection, or takes it and stays silent */
            memset(&a, 0, sizeof(a));
            a.sin_family = AF_INET;
            a.sin_port = htons((uint16_t)port);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            f.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            setsockopt(f.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            CU_ASSERT_FATAL(bind(f.lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(f.lfd, 64) == 0);
            f.answer = k == 2;
            CU_ASSERT_FATAL(pthread_create(&thread, NULL, fake_rank0_main, &f) == 0);
        }
        rc = run_lone_rank1(port);
        if (k > 0) {
            atomic_store(&f.stop, 1);
            pthread_join(thread, NULL);
            close(f.lfd);
        }
        CU_ASSERT_NOT_EQUAL(rc, 0);
        CU_ASSERT(log_contains(expect[k]));
        CU_ASSERT(!log_contains("token"));
        if (rc == 0 || !log_contains(expect[k]) || log_contains("token")) {
            fprintf(stderr, "case %s:\n", cases[k]);
            print_log();
        }
    }
    remove_dir();
}

/* Raises the soft descriptor limit to what the attacker needs. Returns 0, or
 * -1 when the hard limit is too low (the test is then skipped, with a note). */
static int raise_fd_limit(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur >= want)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
        return -1;
    rl.rlim_cur = want;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

/* One 3-rank rdv-hold job; @p a: the attacker to aim at it (NULL: unloaded).
 * Returns the formation time (go to the last rank formed) or -1. */
#define ATK_BURST 20

static double hostile_run(attacker_t *a, long *opened_during_p)
{
    const char *args[] = {"rdv-hold", NULL};
    int burst_fd[ATK_BURST];
    double t_go, formed, burst_first = 1e300;
    long burst_opened_during = 0;
    int rc;
    pid_t pid;

    g_master_port = pick_free_port();
    CU_ASSERT_FATAL(g_master_port > 0);
    if (a != NULL)
        CU_ASSERT_FATAL(attacker_start(a, g_master_port) == 0);
    pid = launch(3, args);
    CU_ASSERT_FATAL(pid > 0);
    if (a != NULL) {
        /* every hostile connection is open once before the ranks 1 and 2 start to join */
        double end = zero_clock_now() + 60;
        while (atomic_load(&a->connected_once) < ATK_TOTAL && zero_clock_now() < end)
            usleep(5000);
        CU_ASSERT_EQUAL(atomic_load(&a->connected_once), ATK_TOTAL);
    } else {
        int probe = connect_loopback(g_master_port, 60);   /* rank 0 listens */
        CU_ASSERT(probe >= 0);
        if (probe >= 0)
            close(probe);
    }
    t_go = zero_clock_now();
    touch("go");
    if (a != NULL) {
        /* A fresh burst of idle connections as the ranks start to join, so that
         * the attack also opens connections while the job forms, however fast
         * it forms (the attacker's own reopens may all fall outside the window). */
        for (int k = 0; k < ATK_BURST; k++) {
            burst_fd[k] = connect_loopback(g_master_port, 5);
            if (burst_fd[k] >= 0 && burst_opened_during == 0)
                burst_first = zero_clock_now();
            burst_opened_during += burst_fd[k] >= 0;
        }
    }
    rc = wait_rc(pid);
    formed = formed_at(3);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(formed > t_go);
    if (a != NULL) {
        for (int k = 0; k < ATK_BURST; k++)
            if (burst_fd[k] >= 0)
                close(burst_fd[k]);
        /* the burst counts when its first connection was open before the job had formed */
        *opened_during_p = attacker_opened_between(a, t_go, formed) + (burst_first < formed ? burst_opened_during : 0);
        fprintf(stderr, "rdv-hostile: attacker: %ld connects (%ld while the job formed), %ld closed by rank 0, "
                "%ld token-mismatch answers\n", atomic_load(&a->opened), *opened_during_p,
                atomic_load(&a->closed_by_server), atomic_load(&a->refusals));
        attacker_stop(a);
    }
    if (rc != 0 || formed <= t_go)
        print_log();
    g_master_port = 0;
    return rc == 0 && formed > t_go ? formed - t_go : -1;
}

static void test_rdv_hostile(void)
{
    static attacker_t attacker;    /* 350 connections' state: not on the stack */
    double conn_timeout = atof(RDV_CONN_TIMEOUT), unloaded, loaded;
    long opened_during = 0;

    if (raise_fd_limit(ATK_TOTAL + 256) != 0) {
        fprintf(stderr, "rdv-hostile: skipped: the descriptor limit (ulimit -Hn) is below %d\n", ATK_TOTAL + 256);
        exit(77);
    }
    setenv("ZERO_RENDEZVOUS_CONN_TIMEOUT", RDV_CONN_TIMEOUT, 1);
    make_dir();
    unloaded = hostile_run(NULL, NULL);
    remove_dir();
    make_dir();
    loaded = hostile_run(&attacker, &opened_during);
    fprintf(stderr, "rdv-hostile: formation %.3f s unloaded, %.3f s under attack (bound 2 x %.3f + %.1f = %.3f s)\n",
            unloaded, loaded, unloaded, conn_timeout, 2 * unloaded + conn_timeout);
    CU_ASSERT(unloaded > 0);
    CU_ASSERT(loaded > 0);
    CU_ASSERT(loaded <= 2 * unloaded + conn_timeout);
    CU_ASSERT(opened_during > 0);           /* the attack went on while the job formed */
    CU_ASSERT(atomic_load(&attacker.refusals) > 0);   /* wrong tokens were told so */
    CU_ASSERT(log_contains("wrong job token"));
    if (loaded <= 0 || loaded > 2 * unloaded + conn_timeout)
        print_log();
    unsetenv("ZERO_RENDEZVOUS_CONN_TIMEOUT");
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
    CU_TestInfo rdv_idle[] = {{"64 idle connections do not stop the job", test_rdv_idle}, CU_TEST_INFO_NULL};
    CU_TestInfo rdv_deadline[] = {{"idle and slow connections dropped at the deadline", test_rdv_deadline},
                                  CU_TEST_INFO_NULL};
    CU_TestInfo rdv_wrong_token[] = {{"a wrong token is told token mismatch", test_rdv_wrong_token},
                                     CU_TEST_INFO_NULL};
    CU_TestInfo rdv_client_errors[] = {{"a rank that cannot join says why", test_rdv_client_errors},
                                       CU_TEST_INFO_NULL};
    CU_TestInfo ucx_tcp_seg[] = {{"a rank with other tcp segments: every collective passes", test_ucx_tcp_seg},
                                 CU_TEST_INFO_NULL};
    CU_TestInfo rdv_hostile[] = {{"the job forms under hostile traffic", test_rdv_hostile}, CU_TEST_INFO_NULL};
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
    else if (strcmp(mode, "rdv-idle") == 0)
        suites[0].pTests = rdv_idle;
    else if (strcmp(mode, "rdv-deadline") == 0)
        suites[0].pTests = rdv_deadline;
    else if (strcmp(mode, "rdv-wrong-token") == 0)
        suites[0].pTests = rdv_wrong_token;
    else if (strcmp(mode, "rdv-client-errors") == 0)
        suites[0].pTests = rdv_client_errors;
    else if (strcmp(mode, "rdv-hostile") == 0)
        suites[0].pTests = rdv_hostile;
    else if (strcmp(mode, "mismatch") == 0)
        suites[0].pTests = mismatch_tests;
    else if (strcmp(mode, "ucx-tcp-seg") == 0)
        suites[0].pTests = ucx_tcp_seg;
    else {
        fprintf(stderr, "usage: test_comm_jobs collectives N [--big] | nonblocking N | kill N K | kill-direct N K | stall N K | "
                        "mismatch | badtoken | rdv-idle | rdv-deadline | rdv-wrong-token | rdv-client-errors | rdv-hostile | "
                        "ucx-tcp-seg | run N MODE [ARG]\n");
        return 2;
    }
    return zero_test_main(argc, argv, suites);
}
