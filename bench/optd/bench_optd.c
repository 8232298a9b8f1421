/*
 * bench/run optd (driven by bench/optd/run.sh): the optimizer step with the
 * state on a zero-optd server (the remote store over UCX) against the same
 * step on the in-process host store, in one process and one run.
 *
 *   bench_optd (--optd PATH | --server HOST:PORT [--server-pid PID]) [--n ELEMS]
 *              [--piece ELEMS] [--reps R] [--window W]
 *
 * --optd starts a zero-optd on 127.0.0.1 (UCX then picks shared memory);
 * --server uses one already listening (run.sh starts it in another network
 * namespace, so the path is TCP). Adam(W), bf16 weights and gradients (the
 * remote path sends 2 bytes of gradient and receives 2 bytes of weight per
 * element), the range stepped in pieces of --piece elements as the engine's
 * per-bucket calls would.
 *
 * Prints a readable report and one line for run.sh:
 *   result: local_ms=<median host store step> remote_ms=<median remote step>
 *           sent_per_step=<bytes> received_per_step=<bytes> expected_per_way=<n*2>
 *           client_cpu_per_step_ms=<user+system CPU of this process per remote step>
 *           server_cpu_per_step_ms=<CPU of every zero-optd thread per remote step; -1: unknown>
 * The client's figure shows whether it burns a core while it waits; with the
 * server's (its own child with --optd, --server-pid otherwise: the kernel's
 * per-thread run time, so the server must be on this host) they show how
 * many of the host's cores one step keeps busy, which bounds the step where
 * client and server share a machine (bench/run optd's TCP paths).
 */
#include "offload/store_remote.h"
#include "optim/optim.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "optd_bench.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

static zero_status_t one_step(zero_store_t *s, const zero_optim_ctx_t *ctx, size_t n, size_t piece, int step,
                              const uint16_t *grad, uint16_t *weights)
{
    zero_status_t status = ZERO_OK;
    for (size_t at = 0; at < n && status == ZERO_OK; at += piece) {
        zero_store_async_step_t st;
        optd_bench_adamw(&st, ctx, at, n - at < piece ? n - at : piece, step, grad + at, weights + at);
        status = zero_store_step_async(s, &st);
    }
    return status == ZERO_OK ? zero_store_step_wait(s) : status;
}

/* CPU time in seconds of every thread of process @p pid so far (the run
 * time of /proc/PID/task/TID/schedstat, in nanoseconds, not clock ticks:
 * a step takes milliseconds); -1 when it cannot be read. */
static double process_cpu_seconds(pid_t pid)
{
    char path[64];
    double total = 0.0;
    struct dirent *d;
    DIR *dir;
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    if (pid <= 0 || (dir = opendir(path)) == NULL)
        return -1.0;
    while ((d = readdir(dir)) != NULL) {
        char stat_path[352];
        unsigned long long ns;
        FILE *f;
        if (d->d_name[0] == '.')
            continue;
        snprintf(stat_path, sizeof(stat_path), "%s/%s/schedstat", path, d->d_name);
        if ((f = fopen(stat_path, "r")) == NULL)
            continue;   /* a thread that just ended */
        if (fscanf(f, "%llu", &ns) == 1)
            total += (double)ns * 1e-9;
        fclose(f);
    }
    closedir(dir);
    return total;
}

/* Starts @p optd on 127.0.0.1 with a free port; writes "127.0.0.1:PORT". */
static pid_t start_server(const char *optd, char *addr, size_t addr_len)
{
    char port_file[] = "/tmp/bench_optd_portXXXXXX";
    int port = 0, fd = mkstemp(port_file);
    pid_t pid;
    FILE *f;
    if (fd < 0)
        return -1;
    close(fd);
    unlink(port_file);
    pid = fork();
    if (pid == 0) {
        execl(optd, optd, "--listen", "127.0.0.1:0", "--port-file", port_file, (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    for (double t0 = zero_clock_now(); zero_clock_now() - t0 < 30 && port == 0; zero_clock_sleep(0.05))
        if ((f = fopen(port_file, "r")) != NULL) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
    unlink(port_file);
    if (port == 0) {
        fprintf(stderr, "bench_optd: zero-optd did not start\n");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    snprintf(addr, addr_len, "127.0.0.1:%d", port);
    return pid;
}

int main(int argc, char **argv)
{
    const char *optd = NULL, *server = NULL;
    size_t n = (size_t)1 << 22, piece = (size_t)1 << 20;
    int reps = 5, window = 4, rc = 1;
    char addr[280];
    const char *addrs[1] = {addr};
    zero_store_desc_t desc;
    zero_store_remote_opts_t ro;
    zero_store_t *host = NULL, *remote = NULL;
    zero_store_remote_stats_t s0, s1;
    zero_optim_ctx_t ctx;
    uint16_t *grad = NULL, *weights = NULL;
    double *t_local = NULL, *t_remote = NULL, local, rem, sent, received, cpu0, cpu, srv0, srv_cpu;
    pid_t pid = -1, server_pid = -1;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--optd") == 0)
            optd = argv[i + 1];
        else if (strcmp(argv[i], "--server") == 0)
            server = argv[i + 1];
        else if (strcmp(argv[i], "--server-pid") == 0)
            server_pid = (pid_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--n") == 0)
            n = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--piece") == 0)
            piece = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--window") == 0)
            window = atoi(argv[i + 1]);
    }
    if ((optd == NULL) == (server == NULL) || n == 0 || piece == 0 || reps < 1) {
        fprintf(stderr, "usage: bench_optd (--optd PATH | --server HOST:PORT [--server-pid PID]) [--n ELEMS] "
                        "[--piece ELEMS] [--reps R] [--window W]\n");
        return 2;
    }
    if (server != NULL) {
        snprintf(addr, sizeof(addr), "%s", server);
    } else {
        setenv("ZERO_ALLOW_NO_TOKEN", "1", 1);
        unsetenv("ZERO_JOB_TOKEN");
        if ((pid = start_server(optd, addr, sizeof(addr))) < 0)
            return 1;
        server_pid = pid;
    }

    optd_bench_remote_opts(&desc, &ro, addrs, n, 60, window);
    if (zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, NULL) != ZERO_OK ||
        zero_store_host_create(&desc, &host) != ZERO_OK || zero_store_remote_create(&desc, &ro, &remote) != ZERO_OK)
        goto out;
    grad = zero_malloc(n * 2);
    weights = zero_malloc(n * 2);
    t_local = zero_malloc(sizeof(double) * (size_t)reps);
    t_remote = zero_malloc(sizeof(double) * (size_t)reps);
    if (grad == NULL || weights == NULL || t_local == NULL || t_remote == NULL)
        goto out;
    optd_bench_fill_grad(grad, n);
    memset(weights, 0, n * 2);
    /* warm-up: first touch of both stores and the server's arrays */
    if (one_step(host, &ctx, n, piece, 1, grad, weights) != ZERO_OK ||
        one_step(remote, &ctx, n, piece, 1, grad, weights) != ZERO_OK)
        goto out;
    zero_store_remote_stats(remote, &s0);
    cpu = 0.0;
    srv_cpu = process_cpu_seconds(server_pid) < 0 ? -1.0 : 0.0;
    for (int k = 0; k < reps; k++) {
        double t0 = zero_clock_now();
        (void)one_step(host, &ctx, n, piece, 2 + k, grad, weights);
        t_local[k] = zero_clock_now() - t0;
        cpu0 = cpu_seconds();
        srv0 = srv_cpu < 0 ? 0.0 : process_cpu_seconds(server_pid);
        t0 = zero_clock_now();
        if (one_step(remote, &ctx, n, piece, 2 + k, grad, weights) != ZERO_OK)
            goto out;
        t_remote[k] = zero_clock_now() - t0;
        cpu += cpu_seconds() - cpu0;
        if (srv_cpu >= 0)
            srv_cpu += process_cpu_seconds(server_pid) - srv0;
    }
    zero_store_remote_stats(remote, &s1);
    sent = (double)(s1.bytes_sent - s0.bytes_sent) / reps;
    received = (double)(s1.bytes_received - s0.bytes_received) / reps;
    local = optd_bench_median(t_local, reps);
    rem = optd_bench_median(t_remote, reps);
    printf("server %s, %zu elements in pieces of %zu, Adam(W), bf16 weights and gradients, window %d, %d reps "
           "(medians)\n", addr, n, piece, window, reps);
    printf("host store (in process):  %8.2f ms/step\n", local * 1e3);
    printf("remote store (zero-optd): %8.2f ms/step  ratio %.2f; this process used %.2f ms of CPU per remote step\n",
           rem * 1e3, rem / local, cpu / reps * 1e3);
    if (srv_cpu >= 0)
        printf("the server used %.2f ms of CPU per remote step (all its threads); with this process's, %.2f cores "
               "busy during the remote step\n", srv_cpu / reps * 1e3, (cpu + srv_cpu) / reps / rem);
    printf("message bytes per step: %.0f sent, %.0f received (expected %.0f each way: 2 B per element, plus "
           "headers)\n", sent, received, (double)n * 2);
    printf("servers reached over a same-host data connection: %llu of 1, through the server's region: %llu of 1 "
           "(%llu bytes of it mapped in this process, in the store's staging bytes)\n",
           (unsigned long long)s1.same_host_links, (unsigned long long)s1.regions_mapped,
           (unsigned long long)s1.region_bytes);
    printf("waits that slept on the event descriptor: %.1f per step, %.1f of them woke at the time limit "
           "(no event)\n", (double)(s1.sleeps - s0.sleeps) / reps,
           (double)(s1.sleep_timeouts - s0.sleep_timeouts) / reps);
    printf("result: local_ms=%.3f remote_ms=%.3f sent_per_step=%.0f received_per_step=%.0f expected_per_way=%.0f "
           "client_cpu_per_step_ms=%.3f server_cpu_per_step_ms=%.3f regions=%llu\n", local * 1e3, rem * 1e3, sent, received,
           (double)n * 2, cpu / reps * 1e3, srv_cpu < 0 ? -1.0 : srv_cpu / reps * 1e3,
           (unsigned long long)s1.regions_mapped);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "bench_optd: a store could not be created or stepped (server %s)\n", addr);
    zero_store_destroy(remote);
    zero_store_destroy(host);
    zero_free(grad);
    zero_free(weights);
    zero_free(t_local);
    zero_free(t_remote);
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    return rc;
}
