/*
 * bench_offload_engine: the engine's optimizer step (zero_step at the
 * accumulation boundary of a world-1 job, AdamW (or --optimizer), bf16 weights, ZeRO stage 1)
 * with its optimizer state in the rank (the host store), on NVMe (the NVMe
 * store, --sub-group elements per range) and on one local zero-optd (the
 * remote store), in the same run: three engines built alike, stepped in turn
 * so that a change of machine load hits all three.
 *
 * Figure per store: the median over --reps steps (after one warm-up) of the
 * wall time of zero_step, which holds the reduction (a copy at world 1), the
 * gradient check, the update through the store and the weights' publication.
 * Last line:
 *   summary: engine_nvme_step_over_host=<x> engine_remote_step_over_host=<y>
 *
 * Usage: bench_offload_engine --optd PATH --dir DIR [--n ELEMENTS] [--sub-group ELEMENTS] [--reps R]
 *                             [--threads T] [--optimizer TYPE]
 * --optimizer: the config's optimizer type (default AdamW; Lamb runs its two
 * phases on zero-optd, docs/optd.md).
 * --threads: the engines' thread pools (default 1: the machine's other
 * cores stay for zero-optd and the NVMe store's I/O thread).
 */
#include <zero/zero.h>

#include "util/clock.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { STORES = 3, PARAMS = 4 };
static const char *const store_names[STORES] = {"host", "nvme", "remote"};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void init_fn(const char *name, size_t offset, size_t count, float *out, void *user_data)
{
    (void)name;
    (void)user_data;
    for (size_t i = 0; i < count; i++)
        out[i] = 1e-3f * (float)((offset + i) % 1000);
}

static int threads = 1;
static const char *optimizer = "AdamW";

static zero_engine_h make_engine(const char *offload, size_t n, size_t sub_group, zero_param_h *params)
{
    char json[1024];
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = json, .num_threads = threads};
    zero_engine_h e = NULL;
    snprintf(json, sizeof(json),
             "{\"train_batch_size\": 1, \"bf16\": {\"enabled\": true}, \"steps_per_print\": 0,"
             " \"optimizer\": {\"type\": \"%s\", \"params\": {\"lr\": 1e-3, \"weight_decay\": 0.01}},"
             " \"zero_optimization\": {\"stage\": 1, \"sub_group_size\": %zu %s}}",
             optimizer, sub_group, offload);
    if (zero_engine_create(&ep, &e) != ZERO_OK) {
        fprintf(stderr, "bench_offload_engine: engine (%s): %s\n", offload, e ? zero_engine_last_error(e) : "");
        return NULL;
    }
    for (int p = 0; p < PARAMS; p++) {
        char name[16];
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN | ZERO_PARAM_FIELD_WEIGHT_DECAY, .name = name,
                               .dtype = ZERO_BF16, .ndim = 1, .shape = {(int64_t)(n / PARAMS)},
                               .init_fn = init_fn, .weight_decay = 1};
        snprintf(name, sizeof(name), "w%d", p);
        if (zero_param_register(e, &d, &params[p]) != ZERO_OK)
            goto fail;
    }
    if (zero_engine_setup(e) != ZERO_OK)
        goto fail;
    return e;
fail:
    fprintf(stderr, "bench_offload_engine: setup (%s): %s\n", offload, zero_engine_last_error(e));
    zero_engine_destroy(e);
    return NULL;
}

/* One micro-batch with a fixed bf16 gradient, and the timed step. */
static double train_step(zero_engine_h e, zero_param_h *params, size_t n)
{
    float seed;
    double t0;
    if (zero_backward_begin(e, &seed) != ZERO_OK)
        return -1.0;
    for (int p = 0; p < PARAMS; p++) {
        uint16_t *g = zero_param_grad(params[p]);
        for (size_t i = 0; i < n / PARAMS; i++)
            g[i] = (uint16_t)(0x3a00u + (i & 0xff));   /* small positive bf16 values */
    }
    if (zero_backward_end(e) != ZERO_OK)
        return -1.0;
    t0 = zero_clock_now();
    if (zero_step(e, NULL) != ZERO_OK)
        return -1.0;
    return zero_clock_now() - t0;
}

int main(int argc, char **argv)
{
    const char *optd = NULL, *dir = NULL;
    size_t n = (size_t)1 << 22, sub_group = (size_t)1 << 20;
    int reps = 7, port = 0, rc = 1;
    char port_file[] = "/tmp/zero-bench-offload-engine-XXXXXX", offload[STORES][512];
    zero_engine_h eng[STORES] = {0};
    zero_param_h params[STORES][PARAMS];
    double *times[STORES] = {0}, med[STORES];
    pid_t pid;
    FILE *f;
    int fd;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--optd") == 0)
            optd = argv[i + 1];
        else if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--n") == 0)
            n = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--sub-group") == 0)
            sub_group = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--optimizer") == 0)
            optimizer = argv[i + 1];
    }
    if (optd == NULL || dir == NULL || n < PARAMS || sub_group == 0 || reps < 1 || threads < 1) {
        fprintf(stderr, "usage: bench_offload_engine --optd PATH --dir DIR [--n ELEMENTS] [--sub-group ELEMENTS] "
                        "[--reps R] [--threads T] [--optimizer TYPE]\n");
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
        fprintf(stderr, "bench_offload_engine: zero-optd did not start\n");
        goto out;
    }
    snprintf(offload[0], sizeof(offload[0]), "%s", "");
    snprintf(offload[1], sizeof(offload[1]), ", \"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"%s\"}",
             dir);
    snprintf(offload[2], sizeof(offload[2]),
             ", \"offload_optimizer\": {\"device\": \"remote\", \"servers\": [\"127.0.0.1:%d\"]}", port);
    for (int s = 0; s < STORES; s++) {
        if ((eng[s] = make_engine(offload[s], n, sub_group, params[s])) == NULL)
            goto out;
        if ((times[s] = calloc((size_t)reps, sizeof(double))) == NULL)
            goto out;
    }
    for (int r = -1; r < reps; r++)   /* r = -1: warm-up */
        for (int s = 0; s < STORES; s++) {
            double t = train_step(eng[s], params[s], n);
            if (t < 0) {
                fprintf(stderr, "bench_offload_engine: %s step: %s\n", store_names[s], zero_engine_last_error(eng[s]));
                goto out;
            }
            if (r >= 0)
                times[s][r] = t;
        }
    printf("engine step, world 1, stage 1, %s, bf16, %zu elements, sub_group_size %zu, %d thread(s), median of %d:\n",
           optimizer, n, sub_group, threads, reps);
    for (int s = 0; s < STORES; s++) {
        qsort(times[s], (size_t)reps, sizeof(double), cmp_double);
        med[s] = reps % 2 ? times[s][reps / 2] : 0.5 * (times[s][reps / 2 - 1] + times[s][reps / 2]);
        printf("  %-6s %9.2f ms  (min %.2f, max %.2f)\n", store_names[s], 1e3 * med[s], 1e3 * times[s][0],
               1e3 * times[s][reps - 1]);
    }
    printf("summary: engine_nvme_step_over_host=%.2f engine_remote_step_over_host=%.2f\n", med[1] / med[0],
           med[2] / med[0]);
    rc = 0;
out:
    for (int s = 0; s < STORES; s++) {
        zero_engine_destroy(eng[s]);
        free(times[s]);
    }
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    return rc;
}
