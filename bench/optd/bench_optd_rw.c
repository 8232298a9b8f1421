/*
 * bench_optd_rw: READ, WRITE and Lamb's two phases on a same-host data
 * connection with the server's region against one without (not run by
 * bench/run; docs/optd.md, "One-sided on one host: the region").
 *
 *   bench_optd_rw --server HOST:PORT [--n ELEMS] [--rounds R] [--reps K]
 *
 * On a region connection only STEP goes through the region; READ, WRITE,
 * LAMB1 and LAMB2 carry their arrays through the data connection's
 * shared-memory FIFO as before, but zero-optd no longer spins for such a
 * connection (it spins while one without a region is open). This measures
 * what that costs them: in each of R rounds (default 5) it opens a store
 * that maps the region (the default) and then one that does not ask for it
 * (ZERO_OPTD_ONESIDED=0 while it is created, so the server spins), one at
 * a time, and times K (default 5) of each operation over one group of N
 * elements (default 4 Mi; fp32 arrays, as the checkpoint path moves them):
 * READ of the master (acquire), WRITE of it (a dirty release), Lamb phase 1
 * and phase 2 (bf16 gradient and weights) and, for reference, an AdamW
 * STEP (bf16), each over the whole range. For a zero-optd on this host
 * started with ZERO_ALLOW_NO_TOKEN=1, e.g.
 *   ZERO_ALLOW_NO_TOKEN=1 build/tools/zero-optd/zero-optd --listen 127.0.0.1:0 --port-file F --threads 1 &
 * Prints a line per round and path and, last,
 *   result: n=N read_region_ms=.. read_tagged_ms=.. write_region_ms=.. write_tagged_ms=.. lamb1_region_ms=..
 *           lamb1_tagged_ms=.. lamb2_region_ms=.. lamb2_tagged_ms=.. step_region_ms=.. step_tagged_ms=..
 * (medians over every round's reps).
 */
#include "offload/store_remote.h"
#include "optim/optim.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "optd_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OP_READ, OP_WRITE, OP_LAMB1, OP_LAMB2, OP_STEP, NUM_OPS };
static const char *const op_names[NUM_OPS] = {"read", "write", "lamb1", "lamb2", "step"};

/* One step_async over [0, n) and its wait: AdamW, or Lamb's phase @p phase
 * (1 or 2; 0: AdamW). */
static zero_status_t step_all(zero_store_t *s, const zero_optim_ctx_t *ctx, size_t n, int phase, int step,
                              const uint16_t *grad, uint16_t *weights, double sums[2])
{
    zero_store_async_step_t st;
    zero_status_t status;
    optd_bench_adamw(&st, ctx, 0, n, step, phase == 2 ? NULL : grad, phase == 1 ? NULL : weights);
    if (phase)
        st.optimizer = ZERO_OPTIMIZER_LAMB;   /* the same hyper-parameters */
    st.lamb_phase = phase;
    st.lamb_sums = sums;
    st.max_coeff = 10.0f;
    st.min_coeff = 0.01f;
    status = zero_store_step_async(s, &st);
    return status == ZERO_OK ? zero_store_step_wait(s) : status;
}

/* K reps of each operation on store @p s, their times in @p t[op][k]. */
static int measure(zero_store_t *s, const zero_optim_ctx_t *ctx, size_t n, int reps, int *step,
                   const uint16_t *grad, uint16_t *weights, double *t[NUM_OPS])
{
    for (int k = 0; k < reps; k++) {
        zero_store_range_t r;
        double sums[2] = {0, 0}, t0;
        memset(&r, 0, sizeof(r));
        r.count = n;
        r.fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER);
        t0 = zero_clock_now();
        if (zero_store_acquire(s, &r) != ZERO_OK)
            return -1;
        t[OP_READ][k] = zero_clock_now() - t0;
        t0 = zero_clock_now();
        if (zero_store_release(s, &r, 1) != ZERO_OK)
            return -1;
        t[OP_WRITE][k] = zero_clock_now() - t0;
        ++*step;
        t0 = zero_clock_now();
        if (step_all(s, ctx, n, 1, *step, grad, weights, sums) != ZERO_OK)
            return -1;
        t[OP_LAMB1][k] = zero_clock_now() - t0;
        t0 = zero_clock_now();
        if (step_all(s, ctx, n, 2, *step, grad, weights, sums) != ZERO_OK)
            return -1;
        t[OP_LAMB2][k] = zero_clock_now() - t0;
        t0 = zero_clock_now();
        if (step_all(s, ctx, n, 0, *step, grad, weights, sums) != ZERO_OK)
            return -1;
        t[OP_STEP][k] = zero_clock_now() - t0;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *server = NULL;
    size_t n = (size_t)4 << 20;
    int rounds = 5, reps = 5, rc = 1, step = 0;
    const char *addrs[1];
    zero_store_desc_t desc;
    zero_store_remote_opts_t ro;
    zero_optim_ctx_t ctx;
    uint16_t *grad = NULL, *weights = NULL;
    double *t[2][NUM_OPS] = {{NULL}};
    int no_memory;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--server") == 0)
            server = argv[i + 1];
        else if (strcmp(argv[i], "--n") == 0)
            n = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
    }
    if (server == NULL || n == 0 || rounds < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_optd_rw --server HOST:PORT [--n ELEMS] [--rounds R] [--reps K]\n");
        return 2;
    }
    setenv("ZERO_ALLOW_NO_TOKEN", "1", 1);
    unsetenv("ZERO_JOB_TOKEN");
    unsetenv("ZERO_OPTD_SAME_HOST");
    addrs[0] = server;
    optd_bench_remote_opts(&desc, &ro, addrs, n, 30, 4);
    if (zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, NULL) != ZERO_OK)
        return 1;
    grad = zero_calloc(n, sizeof(uint16_t));
    weights = zero_calloc(n, sizeof(uint16_t));
    no_memory = grad == NULL || weights == NULL;
    for (int p = 0; p < 2; p++)
        for (int op = 0; op < NUM_OPS; op++) {
            t[p][op] = zero_calloc((size_t)rounds * (size_t)reps, sizeof(double));
            no_memory |= t[p][op] == NULL;   /* any of them, not only the last */
        }
    if (no_memory)
        goto out;
    optd_bench_fill_grad(grad, n);
    for (int round = 0; round < rounds; round++)
        for (int p = 0; p < 2; p++) {   /* p 0: the region; 1: tagged (ZERO_OPTD_ONESIDED=0) */
            zero_store_t *s = NULL;
            zero_store_remote_stats_t stats;
            double *at[NUM_OPS];
            zero_status_t created;
            if (p == 1)
                setenv("ZERO_OPTD_ONESIDED", "0", 1);
            created = zero_store_remote_create(&desc, &ro, &s);
            unsetenv("ZERO_OPTD_ONESIDED");
            if (created != ZERO_OK)
                goto out;
            zero_store_remote_stats(s, &stats);
            if (stats.same_host_links != 1 || stats.regions_mapped != (p == 0 ? 1u : 0u)) {
                fprintf(stderr, "bench_optd_rw: %s store: %llu data connections, %llu regions (1 and %d expected)\n",
                        p == 0 ? "the region" : "the tagged", (unsigned long long)stats.same_host_links,
                        (unsigned long long)stats.regions_mapped, p == 0);
                zero_store_destroy(s);
                goto out;
            }
            for (int op = 0; op < NUM_OPS; op++)
                at[op] = t[p][op] + (size_t)round * (size_t)reps;
            if (measure(s, &ctx, n, reps, &step, grad, weights, at) != 0) {
                fprintf(stderr, "bench_optd_rw: an operation failed (server %s)\n", server);
                zero_store_destroy(s);
                goto out;
            }
            zero_store_destroy(s);
            printf("round %d, %-6s:", round + 1, p == 0 ? "region" : "tagged");
            for (int op = 0; op < NUM_OPS; op++) {
                double v[64];
                int m = reps < 64 ? reps : 64;
                memcpy(v, at[op], (size_t)m * sizeof(double));
                printf(" %s %.2f ms", op_names[op], optd_bench_median(v, m) * 1e3);
            }
            printf("\n");
        }
    printf("result: n=%zu", n);
    for (int op = 0; op < NUM_OPS; op++)
        for (int p = 0; p < 2; p++)
            printf(" %s_%s_ms=%.3f", op_names[op], p == 0 ? "region" : "tagged",
                   optd_bench_median(t[p][op], rounds * reps) * 1e3);
    printf("\n");
    rc = 0;
out:
    for (int p = 0; p < 2; p++)
        for (int op = 0; op < NUM_OPS; op++)
            zero_free(t[p][op]);
    zero_free(grad);
    zero_free(weights);
    return rc;
}
