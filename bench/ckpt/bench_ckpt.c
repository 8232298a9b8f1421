/*
 * bench/run ckpt: checkpoint save and load throughput per rank against a raw
 * write+fsync and read of the same bytes in the same run, the cost of the
 * fletcher32 checksums, and zero-ckpt-merge time and peak RSS; on rank 0 also
 * the Fletcher-32 kernels' throughput on 1 MiB buffers (portable C, AVX2 and
 * AVX-512 where the CPU has them, and which one ckpt_fletcher32 uses), in
 * cache and from DRAM, next to a plain 64-bit sum over the same bytes (the
 * memory-read speed they should approach).
 *
 * Run on every rank through zero-launch (bench/ckpt/run.sh: 2 ranks). The
 * model: one 8M-element embedding and 32 layers of 1M elements (bf16, 40M
 * parameters), stage 3, AdamW: each rank owns 20M elements, 240 MB of fp32
 * master weights and two moments. Each figure is the median over repeats of
 * the slowest rank's time (a collective save is done when every rank is).
 * The load reads with O_DIRECT where the file system has it (lib/ckpt/ckpt_plan.c);
 * "load, buffered reads" is the same load through the page cache
 * (ZERO_CKPT_BUFFERED_READS=1), measured in the same repeat.
 * Reads are cold when this process may write /proc/sys/vm/drop_caches
 * (root), else warm (stated in the output).
 *
 *   bench_ckpt DIR MERGE_TOOL [repeats]
 *
 * Last line: summary: save_over_raw=<x> load_over_raw=<y> merge_peak_rss_over_largest_tensor=<z>
 * (save_over_raw = raw write+fsync time / save time, so >= 1 is as fast as raw).
 */
#include "ckpt/ckpt_internal.h"
#include "util/clock.h"
#include "util/alloc.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NLAYERS 32
#define MAX_REPEATS 15

/* CPU seconds (user + system) of this process, all threads (the load reads on
 * several): less sensitive than wall time to other load on a shared machine. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double slowest(zero_comm_h comm, double t)
{
    float in = (float)t, out = in;
    zero_comm_allreduce(comm, &in, &out, 1, ZERO_FP32, ZERO_COMM_MAX, ZERO_MEM_HOST);
    return out;
}

/* Drops the page cache (rank 0, after everyone synced). Returns 1 if it worked. */
static int drop_caches(zero_comm_h comm)
{
    float ok = 0.0f, all = 0.0f;
    sync();
    zero_comm_barrier(comm);
    if (zero_comm_rank(comm) == 0) {
        int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
        if (fd >= 0) {
            ok = write(fd, "3\n", 2) == 2 ? 1.0f : 0.0f;
            close(fd);
        }
    }
    zero_comm_allreduce(comm, &ok, &all, 1, ZERO_FP32, ZERO_COMM_MAX, ZERO_MEM_HOST);
    return all > 0.0f;
}

static double raw_write(const char *path, zero_ckpt_group_data_t *g, const zero_layout_t *L)
{
    double t0 = zero_clock_now();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (int gi = 0; gi < L->num_groups; gi++) {
        float *arrays[3] = {g[gi].master, g[gi].state[0], g[gi].state[1]};
        for (int a = 0; a < 3; a++) {
            size_t bytes = L->groups[gi].shard_length * sizeof(float), done = 0;
            while (done < bytes) {
                ssize_t n = write(fd, (char *)arrays[a] + done, bytes - done);
                if (n <= 0) {
                    perror("raw write");
                    exit(1);
                }
                done += (size_t)n;
            }
        }
    }
    fsync(fd);
    close(fd);
    return zero_clock_now() - t0;
}

static double raw_read(const char *path, zero_ckpt_group_data_t *g, const zero_layout_t *L)
{
    double t0 = zero_clock_now();
    int fd = open(path, O_RDONLY);
    for (int gi = 0; gi < L->num_groups; gi++) {
        float *arrays[3] = {g[gi].master, g[gi].state[0], g[gi].state[1]};
        for (int a = 0; a < 3; a++) {
            size_t bytes = L->groups[gi].shard_length * sizeof(float), done = 0;
            while (done < bytes) {
                ssize_t n = read(fd, (char *)arrays[a] + done, bytes - done);
                if (n <= 0) {
                    perror("raw read");
                    exit(1);
                }
                done += (size_t)n;
            }
        }
    }
    close(fd);
    return zero_clock_now() - t0;
}

/* A plain read of the buffer (four 64-bit sums): the memory-read baseline. */
static uint64_t plain_sum(const void *data, size_t len)
{
    const uint64_t *p = data;
    uint64_t a = 0, b = 0, c = 0, e = 0;
    for (size_t i = 0; i + 4 <= len / 8; i += 4) {
        a += p[i];
        b += p[i + 1];
        c += p[i + 2];
        e += p[i + 3];
    }
    return a + b + c + e;
}

/* GB/s of @p f (plain_sum when NULL) over @p len bytes of @p buf in 1 MiB
 * pieces, walked front to back; the whole walk @p reps times (@p len = 1 MiB:
 * the same buffer, in cache). */
static double walk_s(ckpt_fletcher32_fn f, const unsigned char *buf, size_t len, int reps)
{
    volatile uint64_t sink = 0;
    double t0 = zero_clock_now();
    for (int r = 0; r < reps; r++)
        for (size_t off = 0; off < len; off += (size_t)1 << 20)
            sink += f != NULL ? f(buf + off, (size_t)1 << 20) : plain_sum(buf + off, (size_t)1 << 20);
    (void)sink;
    return (double)len * reps / (zero_clock_now() - t0) / 1e9;
}

/* Prints the Fletcher-32 throughput lines (rank 0): every kernel this CPU
 * runs and a plain read, interleaved, median of 9 passes; in cache (one 1 MiB
 * buffer 64 times) and from DRAM (64 MiB). */
static void bench_checksum(void)
{
    static const char *names[] = {"portable", "avx2", "avx512"};
    enum { NK = 3, PASSES = 9 };
    size_t big = (size_t)64 << 20, one = (size_t)1 << 20;
    unsigned char *buf = malloc(big);
    if (buf == NULL)
        return;
    for (size_t i = 0; i < big; i++)
        buf[i] = (unsigned char)(i * 2654435761u >> 13);
    for (int where = 0; where < 2; where++) {
        double g[NK + 1][PASSES], med[NK + 1] = {0}, best;
        char line[512];
        int n = 0;
        for (int r = 0; r < PASSES; r++)
            for (int k = 0; k <= NK; k++) {
                ckpt_fletcher32_fn f = k < NK ? ckpt_fletcher32_kernel(names[k]) : NULL;
                if (k < NK && f == NULL)
                    continue;
                g[k][r] = where == 0 ? walk_s(f, buf, one, 64) : walk_s(f, buf, big, 1);
            }
        for (int k = 0; k <= NK; k++)
            if (k == NK || ckpt_fletcher32_kernel(names[k]) != NULL)
                med[k] = median(g[k], PASSES);
        best = med[0];
        n = snprintf(line, sizeof(line), "fletcher32, 1 MiB buffers %s:", where == 0 ? "in cache" : "from DRAM");
        for (int k = 0; k < NK; k++) {
            if (med[k] == 0)
                continue;
            n += snprintf(line + n, sizeof(line) - (size_t)n, " %s %.1f GB/s,", names[k], med[k]);
            if (strcmp(names[k], ckpt_fletcher32_kernel_name()) == 0)
                best = med[k];
        }
        printf("%s dispatched %s = %.2fx portable; plain 64-bit sum %.1f GB/s (dispatched at %.2fx of it)\n", line,
               ckpt_fletcher32_kernel_name(), best / med[0], med[NK], best / med[NK]);
    }
    free(buf);
}

int main(int argc, char **argv)
{
    zero_layout_param_desc_t d[NLAYERS + 1];
    char names[NLAYERS + 1][32], path[1024];
    zero_layout_t *L = NULL;
    zero_comm_h comm;
    zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
    zero_ckpt_meta_t meta;
    int rank, world, repeats = argc > 3 ? atoi(argv[3]) : 3, cold;
    double t_save[MAX_REPEATS], t_save_nock[MAX_REPEATS], t_raw_w[MAX_REPEATS], t_load[MAX_REPEATS],
        t_raw_r[MAX_REPEATS], c_raw_r[MAX_REPEATS], c_load[MAX_REPEATS], t_load_ip[MAX_REPEATS],
        t_load_vf[MAX_REPEATS], t_load_buf[MAX_REPEATS];
    size_t bytes = 0;

    if (argc < 3) {
        fprintf(stderr, "usage: bench_ckpt DIR MERGE_TOOL [repeats] (under zero-launch)\n");
        return 2;
    }
    if (repeats < 1 || repeats > MAX_REPEATS)
        repeats = 3;
    if (zero_comm_create(NULL, &comm) != ZERO_OK)
        return 1;
    rank = zero_comm_rank(comm);
    world = zero_comm_size(comm);
    for (int i = 0; i <= NLAYERS; i++) {
        snprintf(names[i], sizeof(names[i]), i == 0 ? "embed.weight" : "layer%d.weight", i - 1);
        d[i].name = names[i];
        d[i].dtype = ZERO_BF16;
        d[i].ndim = 2;
        d[i].shape[0] = i == 0 ? 8192 : 1024;
        d[i].shape[1] = 1024;
    }
    if (zero_layout_build(d, NLAYERS + 1, world, 64, (size_t)50 << 20, &L) != ZERO_OK)
        return 1;
    memset(g, 0, sizeof(g));
    for (int gi = 0; gi < L->num_groups; gi++) {
        size_t n = L->groups[gi].shard_length;
        for (int a = 0; a < 3; a++) {
            float *p = malloc(n * sizeof(float));
            for (size_t j = 0; j < n; j++)
                p[j] = (float)((j * 2654435761u + (size_t)a + (size_t)rank) % 100003u) * 1e-3f;
            if (a == 0)
                g[gi].master = p;
            else
                g[gi].state[a - 1] = p;
        }
        bytes += 3 * n * sizeof(float);
    }
    memset(&meta, 0, sizeof(meta));
    meta.stage = 3;
    strcpy(meta.optimizer, "AdamW");
    meta.num_states = 2;
    strcpy(meta.state_names[0], "exp_avg");
    strcpy(meta.state_names[1], "exp_avg_sq");
    meta.config_json = (char *)"{}";
    meta.loss_scale = 1.0;

    cold = drop_caches(comm);
    snprintf(path, sizeof(path), "%s/raw_rank%d.bin", argv[1], rank);
    for (int r = 0; r < repeats; r++) {
        zero_ckpt_save_params_t sp = {"bench", ZERO_TAG_VALIDATION_FAIL, 0, "{}", NULL, 0};
        zero_ckpt_load_params_t lp = {"bench", 1, 2, {"exp_avg", "exp_avg_sq"}, ZERO_CKPT_LOAD_SCRATCH, NULL, NULL};
        double t0, c0;

        /* each timed write starts with no dirty pages (sync) and, when allowed, a cold cache */
        drop_caches(comm);
        t_raw_w[r] = slowest(comm, raw_write(path, g, L));

        setenv("ZERO_CKPT_BENCH_NO_CHECKSUM", "1", 1);
        drop_caches(comm);
        t0 = zero_clock_now();
        if (zero_ckpt_save(comm, argv[1], &sp, L, rank, &meta, g) != ZERO_OK)
            return 1;
        t_save_nock[r] = slowest(comm, zero_clock_now() - t0);
        unsetenv("ZERO_CKPT_BENCH_NO_CHECKSUM");

        drop_caches(comm);
        t0 = zero_clock_now();
        if (zero_ckpt_save(comm, argv[1], &sp, L, rank, &meta, g) != ZERO_OK)
            return 1;
        t_save[r] = slowest(comm, zero_clock_now() - t0);

        drop_caches(comm);
        c0 = cpu_s();
        t_raw_r[r] = slowest(comm, raw_read(path, g, L));
        c_raw_r[r] = cpu_s() - c0;
        drop_caches(comm);
        t0 = zero_clock_now();
        c0 = cpu_s();
        if (zero_ckpt_load(comm, argv[1], &lp, L, rank, g, NULL, NULL, NULL) != ZERO_OK)
            return 1;
        c_load[r] = cpu_s() - c0;
        t_load[r] = slowest(comm, zero_clock_now() - t0);
        /* the same load through the page cache (the read path before O_DIRECT) */
        setenv("ZERO_CKPT_BUFFERED_READS", "1", 1);
        drop_caches(comm);
        t0 = zero_clock_now();
        if (zero_ckpt_load(comm, argv[1], &lp, L, rank, g, NULL, NULL, NULL) != ZERO_OK)
            return 1;
        t_load_buf[r] = slowest(comm, zero_clock_now() - t0);
        unsetenv("ZERO_CKPT_BUFFERED_READS");
        drop_caches(comm);
        lp.mode = ZERO_CKPT_LOAD_VERIFY_FIRST;
        t0 = zero_clock_now();
        if (zero_ckpt_load(comm, argv[1], &lp, L, rank, g, NULL, NULL, NULL) != ZERO_OK)
            return 1;
        t_load_vf[r] = slowest(comm, zero_clock_now() - t0);
        drop_caches(comm);
        lp.mode = ZERO_CKPT_LOAD_DIRECT;
        t0 = zero_clock_now();
        if (zero_ckpt_load(comm, argv[1], &lp, L, rank, g, NULL, NULL, NULL) != ZERO_OK)
            return 1;
        t_load_ip[r] = slowest(comm, zero_clock_now() - t0);
        lp.mode = ZERO_CKPT_LOAD_SCRATCH;
        if (rank == 0)
            printf("repeat %d: raw_write %.3f s, save %.3f s (no checksum %.3f s), raw_read %.3f s (cpu %.3f s), "
                   "load %.3f s (cpu %.3f s), load buffered %.3f s, verify-first %.3f s, direct %.3f s\n", r,
                   t_raw_w[r], t_save[r], t_save_nock[r], t_raw_r[r], c_raw_r[r], t_load[r], c_load[r], t_load_buf[r],
                   t_load_vf[r], t_load_ip[r]);
    }
    unlink(path);
    {
        double rw = median(t_raw_w, repeats), sv = median(t_save, repeats), sn = median(t_save_nock, repeats);
        double rr = median(t_raw_r, repeats), ld = median(t_load, repeats), mb = (double)bytes / 1e6;
        double mt = 0, peak = 0, largest = 0;
        if (rank == 0) {
            char cmd[2048], line[512];
            FILE *p;
            snprintf(cmd, sizeof(cmd), "%s %s -o %s/merged.safetensors --stats 2>&1", argv[2], argv[1], argv[1]);
            p = popen(cmd, "r");
            while (p != NULL && fgets(line, sizeof(line), p) != NULL) {
                long pk = 0, lg = 0, tot = 0;
                double s = 0;
                if (sscanf(line, "peak_rss_bytes=%ld largest_tensor_bytes=%ld total_bytes=%ld seconds=%lf", &pk, &lg,
                           &tot, &s) == 4) {
                    peak = (double)pk;
                    largest = (double)lg;
                    mt = s;
                }
            }
            if (p != NULL)
                pclose(p);
            snprintf(cmd, sizeof(cmd), "%s/merged.safetensors", argv[1]);
            unlink(cmd);
            printf("world %d, %.1f MB per rank (fp32 master + exp_avg + exp_avg_sq), %d repeats, medians; reads %s\n",
                   world, mb, repeats, cold ? "cold (page cache dropped)" : "warm (cannot drop the page cache)");
            printf("raw write+fsync: %8.3f s  %8.1f MB/s per rank\n", rw, mb / rw);
            printf("save:            %8.3f s  %8.1f MB/s per rank  (%.2fx raw)\n", sv, mb / sv, rw / sv);
            printf("save, no fletcher32: %4.3f s  %8.1f MB/s per rank  (checksums cost %.1f%%)\n", sn, mb / sn,
                   100.0 * (sv - sn) / sn);
            printf("raw read:        %8.3f s  %8.1f MB/s per rank\n", rr, mb / rr);
            printf("load:            %8.3f s  %8.1f MB/s per rank  (%.2fx raw)\n", ld, mb / ld, rr / ld);
            printf("load, buffered reads: %3.3f s  %8.1f MB/s per rank  (%.2fx raw; through the page cache)\n",
                   median(t_load_buf, repeats), mb / median(t_load_buf, repeats), rr / median(t_load_buf, repeats));
            printf("load, verify-first: %5.3f s  %8.1f MB/s per rank  (%.2fx raw; two passes, no scratch)\n",
                   median(t_load_vf, repeats), mb / median(t_load_vf, repeats), rr / median(t_load_vf, repeats));
            printf("load, direct:    %8.3f s  %8.1f MB/s per rank  (%.2fx raw; one pass, no scratch)\n",
                   median(t_load_ip, repeats), mb / median(t_load_ip, repeats), rr / median(t_load_ip, repeats));
            printf("cpu of rank 0 (all threads): raw read %.3f s, load %.3f s (medians)\n", median(c_raw_r, repeats),
                   median(c_load, repeats));
            printf("merge (safetensors fp32, %.1f MB model): %.3f s, peak RSS %.1f MB, largest tensor %.1f MB\n",
                   40.0 * 1048576 * 4 / 1e6, mt, peak / 1e6, largest / 1e6);
            bench_checksum();
            printf("summary: save_over_raw=%.2f load_over_raw=%.2f merge_peak_rss_over_largest_tensor=%.2f\n", rw / sv,
                   rr / ld, largest > 0 ? peak / largest : -1.0);
        }
    }
    for (int gi = 0; gi < L->num_groups; gi++) {
        free(g[gi].master);
        free(g[gi].state[0]);
        free(g[gi].state[1]);
    }
    zero_layout_destroy(L);
    zero_comm_destroy(comm);
    return 0;
}
