/*
 * bench_optim: memory bandwidth of every fused optimizer kernel and helper,
 * next to a triad measured in the same run on the same buffers, threads and
 * chunking. Prints one line per kernel and thread count, then
 *   summary: adamw_fp32_over_triad_1t=<x> adamw_fp32_over_triad_2t=<y> fused_adamw_speedup_1t=.. _2t=..
 *            fused_over_unfused=<z>
 *
 * Bytes counted per element are the bytes the kernel must read and write:
 *   triad   a[i] = b[i] + s * c[i]          12 (read b, c; write a), STREAM's count
 *   triad_inplace  a[i] = a[i] + s * b[i]   12 (read a, b; write a)
 *   adamw fp32   read g, w, m, v; write w, m, v      28 (+2 with a bf16/fp16 copy)
 *   sgd momentum read g, w, buf; write w, buf         20
 *   adagrad      read g, w, sum; write w, sum         20
 *   lion         read g, w, m; write w, m             20
 *   lamb (both phases) phase 1: read g, w, m, v, write m, v (24); phase 2: read w, m, v, write w (16)
 *   count_nonfinite fp32 4, sum_squares fp32 4, scale 8, to_bf16 6, from_bf16 6
 *   adamw_fused_add  AdamW over g + peer, summed in registers (a reduction's
 *                    last hop fused into the step): read g, peer, w, m, v;
 *                    write w, m, v                     32
 *   adamw_sum_first  the same work unfused: g += peer (12), then AdamW (28)  40
 * The fused pair is also timed against each other, and the summary adds
 * fused_adamw_speedup_<T>t = time(sum first) / time(fused).
 *
 * Two ranks of one machine (issue 17's figure, fused_over_unfused): two
 * processes, as two ranks of a job on one host, each owning half of a gradient
 * of --n elements whose two copies (one per rank) lie in one shared mapping,
 * as the direct path's collective buffers do. Unfused: the reduce-scatter's
 * last hop as the direct path runs it (zero_comm_reduce: the peer's partial of
 * the owned half added into the local one and written back), then AdamW over
 * the sum. Fused: AdamW over the local partial with the peer's added in
 * registers (zero_optim_adam_step_fused), the sum never written. Same
 * buffers, both ranks at once (a barrier starts every run), the order
 * alternating; per run the slower rank's time; fused_over_unfused is the
 * median over --reps (x3) runs of time(unfused) / time(fused). One thread per
 * rank (--rank-threads).
 * GB/s = bytes / median time of --reps runs (1 GB = 1e9 bytes; adamw_fp32, the
 * headline, 3 x --reps). Each kernel run alternates with a baseline run; the
 * ratio column is the median of the per-pair ratios.
 *
 * Usage: bench_optim [--n ELEMENTS] [--reps R] [--threads LIST] [--quick] [--only KERNEL] [--rank-threads T]
 *   --quick: only triad, adamw_fp32 and the fused pair; --only: one kernel (and the baseline);
 *   --chunk: elements per task (multiple of 64; default 65536).
 */
#include "comm/reduce.h"
#include "optim/optim.h"
#include "util/clock.h"
#include "util/alloc.h"
#include "util/thread_pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- the triads, vectorised as well as the kernels (AVX-512 when available) ---- */

#if HAVE_X86
__attribute__((target("avx512f"))) static void triad_avx512(float *a, const float *b, const float *c, float s,
                                                             size_t n)
{
    __m512 sv = _mm512_set1_ps(s);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(a + i, _mm512_add_ps(_mm512_loadu_ps(b + i), _mm512_mul_ps(sv, _mm512_loadu_ps(c + i))));
    for (; i < n; i++)
        a[i] = b[i] + s * c[i];
}
#endif

static void triad_c(float *a, const float *b, const float *c, float s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = b[i] + s * c[i];
}

typedef struct triad_job {
    float *a;
    const float *b, *c;
    float s;
    size_t n, chunk;
    int simd;
} triad_job_t;

static void triad_task(void *raw, size_t task, int thread_index)
{
    triad_job_t *j = raw;
    size_t b = task * j->chunk, e = b + j->chunk < j->n ? b + j->chunk : j->n;
    (void)thread_index;
#if HAVE_X86
    if (j->simd) {
        triad_avx512(j->a + b, j->b + b, j->c + b, j->s, e - b);
        return;
    }
#endif
    triad_c(j->a + b, j->b + b, j->c + b, j->s, e - b);
}

/* ---- one measured case ---- */

typedef struct bench {
    zero_optim_ctx_t ctx;
    zero_thread_pool_t *pool;
    size_t n;
    float *w, *g, *m, *v, *peer;
    uint16_t *h;
    int simd_triad;
} bench_t;

enum {
    K_TRIAD, K_TRIAD_INPLACE, K_ADAMW, K_ADAMW_BF16, K_ADAMW_FP16, K_SGD, K_ADAGRAD, K_LION, K_LAMB,
    K_NONFINITE, K_SUMSQ, K_SCALE, K_TO_BF16, K_FROM_BF16, K_ADAMW_FUSED, K_ADAMW_SUM_FIRST, K_COUNT
};

static const struct {
    const char *name;
    double bytes;
} kinfo[K_COUNT] = {
    {"triad", 12}, {"triad_inplace", 12}, {"adamw_fp32", 28}, {"adamw_fp32+bf16", 30},
    {"adamw_fp32+fp16", 30}, {"sgd_momentum", 20}, {"adagrad", 20}, {"lion", 20}, {"lamb", 40},
    {"count_nonfinite_fp32", 4}, {"sum_squares_fp32", 4}, {"scale_fp32", 8}, {"to_bf16", 6}, {"from_bf16", 6},
    {"adamw_fused_add", 32}, {"adamw_sum_first", 40},
};

/* The baseline every kernel is compared with (see the header comment). */
#define BASELINE K_TRIAD_INPLACE

static int run_kernel(bench_t *b, int k)
{
    zero_optim_slice_t s = {b->w, b->g, b->m, b->v, b->h, ZERO_OPTIM_W16_NONE, b->n};
    zero_status_t st = ZERO_OK;
    switch (k) {
    case K_TRIAD:
    case K_TRIAD_INPLACE: {
        /* Both write m (m = w + s g, m = m + s g): m's values do not matter to
         * the kernels' speed, while v must stay non-negative. */
        triad_job_t j = {b->m, k == K_TRIAD ? b->w : b->m, b->g, 1e-3f, b->n,
                         b->ctx.chunk, b->simd_triad};
        zero_thread_pool_parallel_for(b->pool, (b->n + j.chunk - 1) / j.chunk, triad_task, &j);
        break;
    }
    case K_ADAMW_SUM_FIRST: {
        /* The reduction's last hop as it is today: the sum is written back... */
        triad_job_t j = {b->g, b->g, b->peer, 1.0f, b->n, b->ctx.chunk, b->simd_triad};
        zero_thread_pool_parallel_for(b->pool, (b->n + j.chunk - 1) / j.chunk, triad_task, &j);
    }
        /* ...and read again by the step. */
        /* fall through */
    case K_ADAMW_FUSED:
        /* fall through */
    case K_ADAMW:
    case K_ADAMW_BF16:
    case K_ADAMW_FP16: {
        zero_optim_adam_params_t p;
        zero_optim_adam_defaults(&p);
        p.weight_decay = 0.01f;
        p.step = 10;
        s.w16_type = k == K_ADAMW_BF16 ? ZERO_OPTIM_W16_BF16 : k == K_ADAMW_FP16 ? ZERO_OPTIM_W16_FP16 : ZERO_OPTIM_W16_NONE;
        st = zero_optim_adam_step_fused(&b->ctx, &p, &s, k == K_ADAMW_FUSED ? b->peer : NULL);
        break;
    }
    case K_SGD: {
        zero_optim_sgd_params_t p;
        zero_optim_sgd_defaults(&p);
        p.momentum = 0.9f;
        p.step = 10;
        st = zero_optim_sgd_step(&b->ctx, &p, &s);
        break;
    }
    case K_ADAGRAD: {
        zero_optim_adagrad_params_t p;
        zero_optim_adagrad_defaults(&p);
        s.s1 = b->v;                  /* non-negative */
        st = zero_optim_adagrad_step(&b->ctx, &p, &s);
        break;
    }
    case K_LION: {
        zero_optim_lion_params_t p;
        zero_optim_lion_defaults(&p);
        p.weight_decay = 0.01f;
        st = zero_optim_lion_step(&b->ctx, &p, &s);
        break;
    }
    case K_LAMB: {
        zero_optim_lamb_params_t p;
        zero_optim_segment_t seg = {0, b->n};
        double ws, us;
        zero_optim_lamb_defaults(&p);
        p.step = 10;
        st = zero_optim_lamb_phase1(&b->ctx, &p, &s, &seg, 1, &ws, &us);
        if (st == ZERO_OK)
            st = zero_optim_lamb_phase2(&b->ctx, &p, &s, &seg, 1, &ws, &us, NULL);
        break;
    }
    case K_NONFINITE: {
        size_t count;
        st = zero_optim_count_nonfinite(&b->ctx, ZERO_FP32, b->g, b->n, &count);
        if (st == ZERO_OK && count != 0)
            st = ZERO_ERR_INTERNAL;
        break;
    }
    case K_SUMSQ: {
        double sum;
        st = zero_optim_sum_squares(&b->ctx, ZERO_FP32, b->g, b->n, &sum);
        break;
    }
    case K_SCALE:
        st = zero_optim_scale(&b->ctx, b->m, 1.0f, b->n);
        break;
    case K_TO_BF16:
        st = zero_optim_to_16(&b->ctx, ZERO_OPTIM_W16_BF16, b->h, b->w, b->n);
        break;
    case K_FROM_BF16:
        st = zero_optim_from_16(&b->ctx, ZERO_OPTIM_W16_BF16, b->m, b->h, b->n);
        break;
    }
    return st == ZERO_OK ? 0 : -1;
}

/* Runs the baseline and kernel k alternately, rep after rep, so both see the
 * same machine state (this host is shared): *gbs_p is kernel k's median GB/s,
 * *base_p the baseline's, *ratio_p the median of the per-rep ratios. */
static int measure(bench_t *b, int k, int base, int reps, double *gbs_p, double *base_p, double *ratio_p)
{
    double tk[64], tb[64], ratio[64];
    if (reps > 64)
        reps = 64;
    if (run_kernel(b, k) != 0 || run_kernel(b, base) != 0)          /* warm-up */
        return -1;
    for (int r = 0; r < reps; r++) {
        double t0 = zero_clock_now(), t1, t2;
        run_kernel(b, base);
        t1 = zero_clock_now();
        run_kernel(b, k);
        t2 = zero_clock_now();
        tb[r] = t1 - t0;
        tk[r] = t2 - t1;
        ratio[r] = (kinfo[k].bytes / tk[r]) / (kinfo[base].bytes / tb[r]);
    }
    qsort(tk, (size_t)reps, sizeof(double), cmp_double);
    qsort(tb, (size_t)reps, sizeof(double), cmp_double);
    qsort(ratio, (size_t)reps, sizeof(double), cmp_double);
    *gbs_p = kinfo[k].bytes * (double)b->n / tk[reps / 2] / 1e9;
    *base_p = kinfo[base].bytes * (double)b->n / tb[reps / 2] / 1e9;
    *ratio_p = ratio[reps / 2];
    return 0;
}

static void fill(float *x, size_t n, float lo, float hi, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = lo + (hi - lo) * (float)(seed >> 8) / 16777216.0f;
    }
}

/* ---- two ranks of one machine: the reduction's last hop fused into the step ---- */

#define RANK_RUNS 64

typedef struct ranks_shared {
    pthread_barrier_t barrier;
    double t[2][2][RANK_RUNS];   /* [rank][0 unfused, 1 fused][run] */
    int failed[2];
} ranks_shared_t;

/* One rank: owns elements [r n, (r + 1) n) of the 2n-element gradient; its
 * own copy of the gradient is grads + r 2n, the peer's grads + (1 - r) 2n. */
static int rank_main(int r, float *grads, size_t n, int runs, int threads, ranks_shared_t *sh)
{
    float *own = grads + (size_t)r * 2 * n + (size_t)r * n;
    const float *peer = grads + (size_t)(1 - r) * 2 * n + (size_t)r * n;
    float *w = NULL, *m = NULL, *v = NULL;
    zero_thread_pool_t *pool = NULL;
    zero_optim_ctx_t ctx;
    zero_optim_adam_params_t p;
    int rc = -1;

    if (zero_mem_alloc(ZERO_MEM_HOST, n * sizeof(float), "rank w", (void **)&w) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, n * sizeof(float), "rank m", (void **)&m) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, n * sizeof(float), "rank v", (void **)&v) != ZERO_OK ||
        zero_thread_pool_create(threads, &pool) != ZERO_OK || zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, pool) != ZERO_OK)
        goto out;
    fill(w, n, -1.0f, 1.0f, 11u + (uint32_t)r);
    fill(m, n, -0.1f, 0.1f, 13u + (uint32_t)r);
    fill(v, n, 0.0f, 0.01f, 17u + (uint32_t)r);
    zero_optim_adam_defaults(&p);
    p.weight_decay = 0.01f;
    p.step = 10;
    rc = 0;
out:
    sh->failed[r] = rc;
    pthread_barrier_wait(&sh->barrier);
    if (sh->failed[0] == 0 && sh->failed[1] == 0) {
        zero_optim_slice_t s = {w, own, m, v, NULL, ZERO_OPTIM_W16_NONE, n};
        /* run -1 warms both up; then each run times one of each, the order alternating */
        for (int run = -1; run < runs; run++) {
            for (int i = 0; i < 2; i++) {
                int fused = (run & 1) ^ i;
                double t0;
                pthread_barrier_wait(&sh->barrier);
                t0 = zero_clock_now();
                if (!fused) {
                    zero_comm_reduce(ZERO_COMM_SUM, ZERO_FP32, 0, peer, own, 0, own, n, 1.0f);
                    if (zero_optim_adam_step_fused(&ctx, &p, &s, NULL) != ZERO_OK)
                        rc = -1;
                } else if (zero_optim_adam_step_fused(&ctx, &p, &s, peer) != ZERO_OK) {
                    rc = -1;
                }
                if (run >= 0)
                    sh->t[r][fused][run] = zero_clock_now() - t0;
            }
        }
    }
    if (pool != NULL)
        zero_thread_pool_destroy(pool);
    zero_mem_free(w);
    zero_mem_free(m);
    zero_mem_free(v);
    return rc;
}

/* Runs the two ranks; *ratio_p: median of time(unfused) / time(fused), each
 * the slower rank's; *unfused_p, *fused_p: median seconds. 0 or -1. */
static int two_ranks_fused(size_t n, int runs, int threads, double *ratio_p, double *unfused_p, double *fused_p)
{
    /* the shared record, then the two ranks' copies of a 2n-element gradient */
    size_t head = (sizeof(ranks_shared_t) + 63) & ~(size_t)63, bytes = head + 4 * n * sizeof(float);
    void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ranks_shared_t *sh = map;
    float *grads;
    pthread_barrierattr_t attr;
    pid_t pid;
    int status = 0, rc = -1;
    double ratio[RANK_RUNS], tu[RANK_RUNS], tf[RANK_RUNS];

    if (map == MAP_FAILED)
        return -1;
    if (runs > RANK_RUNS)
        runs = RANK_RUNS;
    grads = (float *)((char *)map + head);
    fill(grads, 4 * n, -1e-3f, 1e-3f, 5);   /* small: the sums drift slowly over the runs */
    pthread_barrierattr_init(&attr);
    pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_barrier_init(&sh->barrier, &attr, 2);
    pthread_barrierattr_destroy(&attr);
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        goto out;
    if (pid == 0)
        _exit(rank_main(1, grads, n, runs, threads, sh) == 0 ? 0 : 1);
    rc = rank_main(0, grads, n, runs, threads, sh);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = -1;
    if (rc == 0) {
        for (int i = 0; i < runs; i++) {
            tu[i] = sh->t[0][0][i] > sh->t[1][0][i] ? sh->t[0][0][i] : sh->t[1][0][i];
            tf[i] = sh->t[0][1][i] > sh->t[1][1][i] ? sh->t[0][1][i] : sh->t[1][1][i];
            ratio[i] = tu[i] / tf[i];
        }
        qsort(ratio, (size_t)runs, sizeof(double), cmp_double);
        qsort(tu, (size_t)runs, sizeof(double), cmp_double);
        qsort(tf, (size_t)runs, sizeof(double), cmp_double);
        *ratio_p = ratio[runs / 2];
        *unfused_p = tu[runs / 2];
        *fused_p = tf[runs / 2];
    }
out:
    pthread_barrier_destroy(&sh->barrier);
    munmap(map, bytes);
    return rc;
}

int main(int argc, char **argv)
{
    size_t n = (size_t)64 << 20;
    int reps = 7, threads[8] = {1, 2}, nthreads = 2, quick = 0, rc = 1, rank_threads = 1;
    double fused_over_unfused = 0, unfused_s = 0, fused_s = 0;
    const char *only = NULL;
    size_t chunk = ZERO_OPTIM_DEFAULT_CHUNK;
    double adamw_ratio[8] = {0}, fused_speedup[8] = {0};
    bench_t b;
    memset(&b, 0, sizeof(b));

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
            n = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            char *list = argv[++i], *tok, *save = NULL;
            nthreads = 0;
            for (tok = strtok_r(list, ",", &save); tok && nthreads < 8; tok = strtok_r(NULL, ",", &save))
                threads[nthreads++] = atoi(tok);
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
            chunk = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--rank-threads") == 0 && i + 1 < argc) {
            rank_threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--n ELEMENTS] [--reps R] [--threads 1,2] [--quick] [--only KERNEL] [--chunk ELEMENTS] [--rank-threads T]\n", argv[0]);
            return 2;
        }
    }
    if (n < 2 || reps < 1 || nthreads < 1 || rank_threads < 1) {
        fprintf(stderr, "bench_optim: --n (at least 2), --reps and --rank-threads must be positive, --threads "
                "non-empty\n");
        return 2;
    }
    /* First, before the single-process buffers exist: two ranks, half of --n each. */
    if (only == NULL || strcmp(only, "fused_over_unfused") == 0) {
        if (two_ranks_fused(n / 2, 3 * reps, rank_threads, &fused_over_unfused, &unfused_s, &fused_s) != 0) {
            fprintf(stderr, "bench_optim: the two-rank fused/unfused runs failed\n");
            return 1;
        }
        printf("two ranks of one machine, %zu elements each, %d thread(s) per rank, median of %d runs: "
               "unfused (last hop zero_comm_reduce, then AdamW) %.2f ms (%.2f GB/s per rank at 40 B/elt), "
               "fused %.2f ms (%.2f GB/s per rank at 32 B/elt); time unfused / fused = %.3f\n", n / 2,
               rank_threads, 3 * reps, unfused_s * 1e3, 40.0 * (double)(n / 2) / unfused_s / 1e9, fused_s * 1e3,
               32.0 * (double)(n / 2) / fused_s / 1e9, fused_over_unfused);
        fflush(stdout);
        if (only != NULL)
            return 0;
    }
    if (zero_mem_alloc(ZERO_MEM_HOST, n * sizeof(float), "bench w", (void **)&b.w) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, n * sizeof(float), "bench g", (void **)&b.g) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, n * sizeof(float), "bench m", (void **)&b.m) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, n * sizeof(float), "bench v", (void **)&b.v) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, n * sizeof(float), "bench peer", (void **)&b.peer) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, n * sizeof(uint16_t), "bench h", (void **)&b.h) != ZERO_OK)
        goto out;
    b.n = n;
    fill(b.w, n, -1.0f, 1.0f, 1);
    fill(b.g, n, -1.0f, 1.0f, 2);
    fill(b.m, n, -0.1f, 0.1f, 3);
    fill(b.v, n, 0.0f, 0.01f, 4);
    fill(b.peer, n, -1e-3f, 1e-3f, 5); /* small: g drifts slowly under repeated sums */
    memset(b.h, 0, n * sizeof(uint16_t));
#if HAVE_X86
    b.simd_triad = __builtin_cpu_supports("avx512f");
#endif

    printf("bench_optim: %zu elements (%.0f MiB per fp32 array), median of %d runs, kernels %s, "
           "triad %s, chunk %zu\n", n, (double)n * 4 / 1048576.0, reps,
           zero_optim_isa_name(zero_optim_isa_detect()), b.simd_triad ? "avx512" : "c", chunk);
    printf("%-22s %7s %9s %8s %13s %8s %8s\n", "kernel", "threads", "bytes/elt", "GB/s", "baseline", "GB/s", "ratio");
    for (int ti = 0; ti < nthreads; ti++) {
        if (zero_thread_pool_create(threads[ti], &b.pool) != ZERO_OK)
            goto out;
        if (zero_optim_ctx_init(&b.ctx, ZERO_OPTIM_ISA_AUTO, b.pool) != ZERO_OK ||
            zero_optim_ctx_set_chunk(&b.ctx, chunk) != ZERO_OK) {
            zero_thread_pool_destroy(b.pool);
            goto out;
        }
        if (ti == 0)
            printf("(kernels at level %s; ZERO_CPU_ISA=c|avx2|avx512 forces one)\n", zero_optim_isa_name(b.ctx.isa));
        for (int k = 0; k < K_COUNT; k++) {
            double gbs, base_gbs, ratio;
            int base = BASELINE;
            if (k == BASELINE || (quick && k != K_TRIAD && k != K_ADAMW && k != K_ADAMW_FUSED) ||
                (only != NULL && strcmp(only, kinfo[k].name) != 0))
                continue;
            /* The headline pair gets three times the reps: a steadier median. */
            if (measure(&b, k, base, k == K_ADAMW ? 3 * reps : reps, &gbs, &base_gbs, &ratio) != 0) {
                fprintf(stderr, "bench_optim: kernel %s failed\n", kinfo[k].name);
                zero_thread_pool_destroy(b.pool);
                goto out;
            }
            printf("%-22s %7d %9.0f %8.2f %13s %8.2f %8.3f\n", kinfo[k].name, threads[ti], kinfo[k].bytes, gbs,
                   kinfo[base].name, base_gbs, ratio);
            if (k == K_ADAMW)
                adamw_ratio[ti] = ratio;
            if (k == K_ADAMW_FUSED) {
                /* And against the unfused pair directly: the ratio of times. */
                double unfused_gbs;
                if (measure(&b, K_ADAMW_FUSED, K_ADAMW_SUM_FIRST, 3 * reps, &gbs, &unfused_gbs, &ratio) != 0) {
                    zero_thread_pool_destroy(b.pool);
                    goto out;
                }
                fused_speedup[ti] = ratio * kinfo[K_ADAMW_SUM_FIRST].bytes / kinfo[K_ADAMW_FUSED].bytes;
                printf("%-22s %7d %9.0f %8.2f %13s %8.2f %8.3f  (time: sum first / fused = %.3f)\n",
                       kinfo[k].name, threads[ti], kinfo[k].bytes, gbs, kinfo[K_ADAMW_SUM_FIRST].name, unfused_gbs,
                       ratio, fused_speedup[ti]);
            }
            fflush(stdout);
        }
        zero_thread_pool_destroy(b.pool);
        b.pool = NULL;
    }
    printf("summary:");
    for (int ti = 0; ti < nthreads; ti++)
        printf(" adamw_fp32_over_triad_%dt=%.3f", threads[ti], adamw_ratio[ti]);
    for (int ti = 0; ti < nthreads; ti++)
        printf(" fused_adamw_speedup_%dt=%.3f", threads[ti], fused_speedup[ti]);
    printf(" fused_over_unfused=%.3f\n", fused_over_unfused);
    rc = 0;
out:
    zero_mem_free(b.w);
    zero_mem_free(b.peer);
    zero_mem_free(b.g);
    zero_mem_free(b.m);
    zero_mem_free(b.v);
    zero_mem_free(b.h);
    return rc;
}
