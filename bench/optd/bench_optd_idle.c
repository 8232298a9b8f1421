/*
 * bench_optd_idle: what a zero-optd costs while its clients are idle (not
 * run by bench/run; docs/optd.md, "An idle server").
 *
 *   bench_optd_idle --server HOST:PORT --server-pid PID [--conns N] [--seconds S]
 *
 * For a zero-optd on this host (PID, started with ZERO_ALLOW_NO_TOKEN=1;
 * docs/optd.md, "An idle server", shows how), measures its CPU (user +
 * system, all threads, from /proc/PID/stat) over S seconds (default 8) with
 * no client of this process, then opens N remote stores (default 64,
 * ZERO_OPTD_MAX_DATA_CONNS: each one a control and a same-host data
 * connection), waits a second and measures again while they are idle.
 * Prints
 *   idle: conns=0 cpu_percent=<p0> conns=N data_conns=<k> cpu_percent=<pN>
 * The open-file limit must allow about 10 descriptors per store here.
 */
#include "offload/store_remote.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "optd_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* CPU seconds process @p pid used so far (clock ticks: S is seconds long); -1: unknown. */
static double stat_cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long ut, st;
    const char *after;
    size_t n;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1.0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields 14 and 15 (utime, stime), counted after the command's closing parenthesis */
    if ((after = strrchr(buf, ')')) == NULL ||
        sscanf(after + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1.0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Percent of one core that @p pid used over the next @p seconds. */
static double cpu_percent(pid_t pid, double seconds)
{
    double c0 = stat_cpu_seconds(pid), t0 = zero_clock_now(), c1;
    zero_clock_sleep(seconds);
    c1 = stat_cpu_seconds(pid);
    return c0 < 0 || c1 < 0 ? -1.0 : (c1 - c0) / (zero_clock_now() - t0) * 100.0;
}

int main(int argc, char **argv)
{
    const char *server = NULL;
    pid_t pid = -1;
    int conns = 64, opened = 0, rc = 1;
    unsigned long long data_conns = 0;
    double seconds = 8.0, idle0, idle_n;
    char addr[280];
    const char *addrs[1] = {addr};
    zero_store_t **stores = NULL;
    zero_store_desc_t desc;
    zero_store_remote_opts_t ro;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--server") == 0)
            server = argv[i + 1];
        else if (strcmp(argv[i], "--server-pid") == 0)
            pid = (pid_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--conns") == 0)
            conns = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
    }
    if (server == NULL || pid <= 0 || conns < 1 || seconds <= 0) {
        fprintf(stderr, "usage: bench_optd_idle --server HOST:PORT --server-pid PID [--conns N] [--seconds S]\n");
        return 2;
    }
    setenv("ZERO_ALLOW_NO_TOKEN", "1", 1);
    unsetenv("ZERO_JOB_TOKEN");
    snprintf(addr, sizeof(addr), "%s", server);
    zero_clock_sleep(1.0);
    idle0 = cpu_percent(pid, seconds);

    optd_bench_remote_opts(&desc, &ro, addrs, 1024, 30, 2);
    if ((stores = zero_calloc((size_t)conns, sizeof(*stores))) == NULL)
        goto out;
    for (; opened < conns; opened++) {
        zero_store_remote_stats_t st;
        if (zero_store_remote_create(&desc, &ro, &stores[opened]) != ZERO_OK) {
            fprintf(stderr, "bench_optd_idle: store %d of %d could not be created\n", opened + 1, conns);
            goto out;
        }
        zero_store_remote_stats(stores[opened], &st);
        data_conns += st.same_host_links;
    }
    zero_clock_sleep(1.0);
    idle_n = cpu_percent(pid, seconds);
    printf("zero-optd's CPU while idle, over %.1f s each: %.2f%% of a core with no client, %.2f%% with %d idle "
           "stores (%llu of them on a same-host data connection)\n", seconds, idle0, idle_n, conns, data_conns);
    printf("idle: conns=0 cpu_percent=%.2f conns=%d data_conns=%llu cpu_percent=%.2f\n", idle0, conns, data_conns,
           idle_n);
    rc = 0;
out:
    for (int i = 0; i < opened; i++)
        zero_store_destroy(stores[i]);
    zero_free(stores);
    return rc;
}
