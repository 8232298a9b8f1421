/*
 * bench_grad_slice: the collective behind one stage-3 gradient slice
 * (zero_grad_slice_ready), before and after it became a reduce-scatter of the
 * slice's range (run on every rank by bench/slices/run.sh through zero-launch).
 *
 * The geometry is a layer-by-layer backward of llm.c's 12 stacked tensors
 * (L layers of width C, fp32, as the engine lays them out at stage 3: one
 * parameter per bucket, padded to 64 x W elements, rank r owning the r-th
 * 1/W): for every layer, last to first, and every stacked tensor, the
 * slice's elements are averaged
 *   - "allreduce": in place over the whole slice (the first version);
 *   - "range": the reduce-scatter of the slice's range of its bucket, each
 *     rank receiving the part it owns (now).
 * Buffers come from zero_comm_mem_alloc (the direct path, which the engine's
 * pools take on one node) or, with --ring, from malloc (the ucx ring). The two
 * alternate, backward by backward, --reps times; rank 0 prints the median
 * time of a backward's collectives for each and the bytes each rank moves per
 * backward (ring: what it sends; direct path: what it reads from peers), then
 *   summary: range_over_allreduce_time=<t> range_over_allreduce_bytes=<b>
 */
#include <zero/zero.h>
#include "comm/reduce_range.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { STACKED = 12 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    long long L = 12, C = 384;
    int reps = 5, ring = 0, rank, world, rc = 1;
    zero_comm_h comm = NULL;
    size_t rows[STACKED], bucket[STACKED], max_slice = 0;
    double *t_ar = NULL, *t_rs = NULL, bytes_ar = 0, bytes_rs = 0;
    float *buf = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc)
            L = atoll(argv[++i]);
        else if (strcmp(argv[i], "--width") == 0 && i + 1 < argc)
            C = atoll(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--ring") == 0)
            ring = 1;
    }
    if (L < 1 || C < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_grad_slice [--layers L] [--width C] [--reps N] [--ring]\n");
        return 2;
    }
    if (zero_comm_create(NULL, &comm) != ZERO_OK)
        return 1;
    rank = zero_comm_rank(comm);
    world = zero_comm_size(comm);
    {
        /* one layer's rows of ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb */
        const size_t r[STACKED] = {C, C, 3 * C * C, 3 * C, C * C, C, C, C, 4 * C * C, 4 * C, 4 * C * C, C};
        size_t granule = 64 * (size_t)world;
        for (int k = 0; k < STACKED; k++) {
            rows[k] = r[k];
            bucket[k] = (r[k] * (size_t)L + granule - 1) / granule * granule;
            max_slice = r[k] > max_slice ? r[k] : max_slice;
        }
    }
    t_ar = calloc((size_t)reps, sizeof(double));
    t_rs = calloc((size_t)reps, sizeof(double));
    if (t_ar == NULL || t_rs == NULL)
        goto out;
    if (ring)
        buf = malloc(max_slice * sizeof(float));
    else if (zero_comm_mem_alloc(comm, max_slice * sizeof(float), (void **)&buf) != ZERO_OK)
        buf = NULL;
    if (buf == NULL)
        goto out;
    for (size_t i = 0; i < max_slice; i++)
        buf[i] = 1e-3f * (float)((i * 7 + (size_t)rank) % 101);
    /* the bytes this rank moves per backward */
    for (long long l = 0; l < L; l++)
        for (int k = 0; k < STACKED; k++) {
            size_t block = bucket[k] / (size_t)world, a = (size_t)l * rows[k], z = a + rows[k], mine = 0, all = 0;
            for (int q = 0; q < world; q++) {
                size_t lo = a > (size_t)q * block ? a : (size_t)q * block;
                size_t hi = z < (size_t)(q + 1) * block ? z : (size_t)(q + 1) * block;
                size_t part = hi > lo ? hi - lo : 0;
                all += part;
                if (q == rank)
                    mine = part;
            }
            /* allreduce: 2 (W - 1) / W of the slice; range: the others' parts (ring, summed over
             * ranks the same as (W - 1) x each part read from the peers on the direct path) */
            bytes_ar += 2.0 * (double)(world - 1) / world * (double)rows[k] * sizeof(float);
            bytes_rs += ring ? (double)(all - mine) * sizeof(float)
                             : (double)(world - 1) * (double)mine * sizeof(float);
        }
    for (int rep = -1; rep < reps; rep++)   /* rep -1: warm-up */
        for (int mode = 0; mode < 2; mode++) {
            double t0;
            zero_comm_barrier(comm);
            t0 = now_s();
            for (long long l = L - 1; l >= 0; l--)
                for (int k = STACKED - 1; k >= 0; k--) {
                    zero_comm_request_h req = NULL;
                    size_t block = bucket[k] / (size_t)world, a = (size_t)l * rows[k];
                    size_t lo = a > (size_t)rank * block ? a : (size_t)rank * block;
                    zero_status_t st;
                    if (lo > a + rows[k])
                        lo = a + rows[k];
                    st = mode == 0 ? zero_comm_allreduce_start(comm, buf, buf, rows[k], ZERO_FP32, ZERO_COMM_AVG,
                                                               ZERO_MEM_HOST, &req)
                                   : zero_comm_reduce_scatter_range_start(comm, buf, buf + (lo - a), a, rows[k],
                                                                          block, ZERO_FP32, ZERO_COMM_AVG, &req);
                    if (st == ZERO_OK)
                        st = zero_comm_request_wait(req);
                    zero_comm_request_free(req);
                    if (st != ZERO_OK) {
                        fprintf(stderr, "rank %d: %s\n", rank, zero_status_string(st));
                        goto out;
                    }
                }
            zero_comm_barrier(comm);
            if (rep >= 0)
                (mode == 0 ? t_ar : t_rs)[rep] = now_s() - t0;
        }
    qsort(t_ar, (size_t)reps, sizeof(double), cmp_double);
    qsort(t_rs, (size_t)reps, sizeof(double), cmp_double);
    if (rank == 0) {
        double ar = t_ar[reps / 2], rs = t_rs[reps / 2];
        printf("grad-slices: path=%s world=%d L=%lld C=%lld slices=%lld reps=%d: allreduce %.3f ms %.3f MiB/rank; "
               "range %.3f ms %.3f MiB/rank (rank 0)\n",
               ring ? "ring" : "direct", world, L, C, L * STACKED, reps, 1e3 * ar, bytes_ar / 1048576.0, 1e3 * rs,
               bytes_rs / 1048576.0);
        printf("summary: path=%s range_over_allreduce_time=%.3f range_over_allreduce_bytes=%.3f\n",
               ring ? "ring" : "direct", rs / ar, bytes_rs / bytes_ar);
    }
    rc = 0;
out:
    if (ring)
        free(buf);
    else if (buf != NULL)
        zero_comm_mem_free(comm, buf);
    free(t_ar);
    free(t_rs);
    zero_comm_destroy(comm);
    return rc;
}
