/*
 * bench/run optd: the optimizer step with the state on a local zero-optd
 * process (the remote store over UCX, here shared memory / loopback) against
 * the same step on the in-process host store, in one run.
 *
 *   bench_optd --optd PATH [--n ELEMS] [--piece ELEMS] [--reps R] [--window W]
 *
 * Adam, bf16 weights and gradients (the remote path sends 2 bytes of gradient
 * and receives 2 bytes of weight per element), the range stepped in pieces of
 * --piece elements as the engine's per-bucket calls would. Prints per store
 * the median step time, the ratio, the message bytes per step against the
 * expected 4 bytes per element, and as the path's baseline the bandwidth of
 * streaming fp32 state through the same server (acquire of the master: READ
 * replies, UCX tagged messages on the same endpoints, no optimizer work).
 * Last line: summary: optd_step_over_local=<x> optd_step_throughput_over_path=<y>
 */
#include "offload/store_remote.h"
#include "optim/optim.h"
#include "util/alloc.h"
#include "util/clock.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[n / 2];
}

static zero_status_t one_step(zero_store_t *s, const zero_optim_ctx_t *ctx, size_t n, size_t piece, int step,
                              const uint16_t *grad, uint16_t *weights)
{
    zero_status_t status = ZERO_OK;
    for (size_t at = 0; at < n && status == ZERO_OK; at += piece) {
        zero_store_async_step_t st;
        memset(&st, 0, sizeof(st));
        st.group = 0;
        st.begin = at;
        st.count = n - at < piece ? n - at : piece;
        st.optimizer = ZERO_OPTIMIZER_ADAMW;
        st.lr = 1e-4f;
        st.beta1 = 0.9f;
        st.beta2 = 0.999f;
        st.eps = 1e-8f;
        st.weight_decay = 0.01f;
        st.bias_correction = 1;
        st.step = step;
        st.grad_scale = 1.0f;
        st.grad_dtype = ZERO_BF16;
        st.grad = grad + at;
        st.weight_dtype = ZERO_BF16;
        st.weights = weights + at;
        st.optim = ctx;
        status = zero_store_step_async(s, &st);
    }
    return status == ZERO_OK ? zero_store_step_wait(s) : status;
}

int main(int argc, char **argv)
{
    const char *optd = NULL;
    size_t n = (size_t)1 << 22, piece = (size_t)1 << 20;
    int reps = 5, window = 4;
    char port_file[] = "/tmp/bench_optd_portXXXXXX";
    char addr[64];
    const char *addrs[1] = {addr};
    zero_store_desc_t desc;
    zero_store_remote_opts_t ro;
    zero_store_t *host = NULL, *remote = NULL;
    zero_store_remote_stats_t s0, s1;
    zero_store_range_t r;
    zero_optim_ctx_t ctx;
    uint16_t *grad, *weights;
    double *t_local, *t_remote, *t_path, local, rem, path_bw, bytes_per_step;
    int port = 0, fd;
    pid_t pid;
    FILE *f;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--optd") == 0)
            optd = argv[i + 1];
        else if (strcmp(argv[i], "--n") == 0)
            n = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--piece") == 0)
            piece = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--window") == 0)
            window = atoi(argv[i + 1]);
    }
    if (optd == NULL || n == 0 || piece == 0 || reps < 1) {
        fprintf(stderr, "usage: bench_optd --optd PATH [--n ELEMS] [--piece ELEMS] [--reps R] [--window W]\n");
        return 2;
    }
    fd = mkstemp(port_file);
    if (fd < 0)
        return 1;
    close(fd);
    unlink(port_file);
    setenv("ZERO_ALLOW_NO_TOKEN", "1", 1);
    unsetenv("ZERO_JOB_TOKEN");
    pid = fork();
    if (pid == 0) {
        execl(optd, optd, "--listen", "127.0.0.1:0", "--port-file", port_file, (char *)NULL);
        _exit(127);
    }
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
        return 1;
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);

    memset(&desc, 0, sizeof(desc));
    desc.kind = ZERO_MEM_HOST;
    desc.num_groups = 1;
    desc.length[0] = n;
    desc.num_states = 2;
    memset(&ro, 0, sizeof(ro));
    ro.servers = addrs;
    ro.num_servers = 1;
    ro.timeout_s = 60;
    ro.window = window;
    if (zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, NULL) != ZERO_OK ||
        zero_store_host_create(&desc, &host) != ZERO_OK || zero_store_remote_create(&desc, &ro, &remote) != ZERO_OK) {
        kill(pid, SIGKILL);
        return 1;
    }
    grad = zero_malloc(n * 2);
    weights = zero_malloc(n * 2);
    t_local = zero_malloc(sizeof(double) * (size_t)reps);
    t_remote = zero_malloc(sizeof(double) * (size_t)reps);
    t_path = zero_malloc(sizeof(double) * (size_t)reps);
    for (size_t i = 0; i < n; i++)
        grad[i] = (uint16_t)(0x3c00u + (i & 0xffu));   /* bf16 values around 0.0078 .. 0.016 */
    memset(weights, 0, n * 2);
    /* warm-up: first touch of both stores and the server's arrays */
    if (one_step(host, &ctx, n, piece, 1, grad, weights) != ZERO_OK ||
        one_step(remote, &ctx, n, piece, 1, grad, weights) != ZERO_OK) {
        kill(pid, SIGKILL);
        return 1;
    }
    zero_store_remote_stats(remote, &s0);
    for (int k = 0; k < reps; k++) {
        double t0 = zero_clock_now();
        (void)one_step(host, &ctx, n, piece, 2 + k, grad, weights);
        t_local[k] = zero_clock_now() - t0;
        t0 = zero_clock_now();
        if (one_step(remote, &ctx, n, piece, 2 + k, grad, weights) != ZERO_OK) {
            kill(pid, SIGKILL);
            return 1;
        }
        t_remote[k] = zero_clock_now() - t0;
    }
    zero_store_remote_stats(remote, &s1);
    bytes_per_step = (double)(s1.bytes_sent + s1.bytes_received - s0.bytes_sent - s0.bytes_received) / reps;
    for (int k = 0; k < reps; k++) {
        double t0 = zero_clock_now();
        memset(&r, 0, sizeof(r));
        r.count = n;
        r.fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER);
        if (zero_store_acquire(remote, &r) != ZERO_OK) {
            kill(pid, SIGKILL);
            return 1;
        }
        t_path[k] = zero_clock_now() - t0;
        zero_store_release(remote, &r, 0);
    }
    local = median(t_local, reps);
    rem = median(t_remote, reps);
    path_bw = (double)n * 4 / median(t_path, reps);
    printf("elements %zu, pieces of %zu, Adam(W), bf16 weights and gradients, window %d, %d reps (medians)\n", n,
           piece, window, reps);
    printf("host store (in process):  %8.2f ms/step\n", local * 1e3);
    printf("remote store (zero-optd): %8.2f ms/step  ratio %.2f\n", rem * 1e3, rem / local);
    printf("bytes per step: %.0f (expected %.0f: 2 B gradient + 2 B weight per element, plus headers)\n",
           bytes_per_step, (double)n * 4);
    printf("path baseline: fp32 stream through the same server %.2f GB/s; step moved %.2f GB/s\n", path_bw / 1e9,
           bytes_per_step / rem / 1e9);
    printf("summary: optd_step_over_local=%.2f optd_step_throughput_over_path=%.2f\n", rem / local,
           bytes_per_step / rem / path_bw);
    zero_store_destroy(remote);
    zero_store_destroy(host);
    zero_free(grad);
    zero_free(weights);
    zero_free(t_local);
    zero_free(t_remote);
    zero_free(t_path);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    return 0;
}
