/*
 * bench_comm: bandwidth of the host-memory collectives (run on every rank by
 * bench/comm/run.sh through zero-launch).
 *
 * For each size (bytes of the largest buffer, as nccl-tests counts: the
 * allreduce vector, the reduce-scatter input, the allgather output) and each
 * of reduce-scatter, allgather, allgather in place and allreduce (fp32 sum),
 * it times --reps runs after a warm-up; a run's time is the slowest rank's.
 * Rank 0 prints CSV:
 *   op,world_size,bytes,reps,time_us_median,algbw_GBps,busbw_GBps
 * with algbw = bytes / time and busbw = algbw * (n-1)/n (reduce-scatter,
 * allgather) or * 2(n-1)/n (allreduce): the nccl-tests formulas.
 *
 * With --p2p (world size 2) it first measures the baseline: raw UCX
 * point-to-point bandwidth, a UCP tagged send of the message from rank 0 to
 * rank 1 answered by an 8-byte ack, with the same UCX settings (environment,
 * error-handling mode) as the communicator. Printed as op p2p, busbw = algbw.
 * It then prints
 *   summary: reduce_scatter_busbw_over_p2p=<x> allgather_busbw_over_p2p=<y>
 * where each ratio is the median, over the sizes >= 16 MiB, of the median busbw
 * divided by the median p2p bandwidth at the same size. The allgather figure is
 * the in-place allgather (each rank's block already in the output, as in ZeRO's
 * parameter gather); the out-of-place one, which also copies the rank's own
 * block, is printed on a comment line before it.
 */
#include <zero/zero.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucp/api/ucp.h>

#define MAX_SIZES 32
#define MAX_REPS 200

static int g_rank, g_size;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what, zero_status_t st)
{
    fprintf(stderr, "[rank %d] bench_comm: %s: %s\n", g_rank, what, zero_status_string(st));
    exit(1);
}

static int reps_for(size_t bytes, int reps_big)
{
    if (bytes <= ((size_t)1 << 20))
        return 20;
    if (bytes <= ((size_t)16 << 20))
        return reps_big + 2;
    return reps_big;
}

/* The slowest rank's time of one run. */
static double slowest(zero_comm_h comm, double t)
{
    float v = (float)t, out = 0;
    zero_status_t st = zero_comm_allreduce(comm, &v, &out, 1, ZERO_FP32, ZERO_COMM_MAX, ZERO_MEM_HOST);
    if (st != ZERO_OK)
        die("allreduce of timings", st);
    return out;
}

typedef enum { OP_RS, OP_AG, OP_AG_INPLACE, OP_AR, OP_COUNT } op_t;
static const char *op_name[] = {"reduce_scatter", "allgather", "allgather_inplace", "allreduce"};

static zero_status_t run_op(zero_comm_h comm, op_t op, float *send, float *recv, size_t elems)
{
    size_t per = elems / (size_t)g_size;
    switch (op) {
    case OP_RS: return zero_comm_reduce_scatter(comm, send, recv, per, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST);
    case OP_AG: return zero_comm_allgather(comm, send, recv, per, ZERO_FP32, ZERO_MEM_HOST);
    case OP_AG_INPLACE:   /* this rank's block already sits in the output, as in ZeRO's parameter gather */
        return zero_comm_allgather(comm, recv + (size_t)g_rank * per, recv, per, ZERO_FP32, ZERO_MEM_HOST);
    default:    return zero_comm_allreduce(comm, send, recv, elems, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST);
    }
}

/* ---- the point-to-point baseline: plain UCP, no libzero in the data path ---- */

typedef struct p2p {
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_ep_h ep;
} p2p_t;

static void wait_req(p2p_t *p, void *req)
{
    if (req == NULL)
        return;
    if (UCS_PTR_IS_ERR(req)) {
        fprintf(stderr, "p2p: %s\n", ucs_status_string(UCS_PTR_STATUS(req)));
        exit(1);
    }
    while (ucp_request_check_status(req) == UCS_INPROGRESS)
        ucp_worker_progress(p->worker);
    ucp_request_free(req);
}

static void p2p_setup(zero_comm_h comm, p2p_t *p)
{
    ucp_params_t params;
    ucp_worker_params_t wp;
    ucp_config_t *cfg;
    ucp_address_t *addr;
    size_t len;
    unsigned char mine[4096], all[2 * 4096];
    ucp_ep_params_t ep;
    ucp_request_param_t rp;
    zero_status_t st;

    memset(&params, 0, sizeof(params));
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_TAG;
    memset(&wp, 0, sizeof(wp));
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    if (ucp_config_read(NULL, NULL, &cfg) != UCS_OK || ucp_init(&params, cfg, &p->ctx) != UCS_OK ||
        ucp_worker_create(p->ctx, &wp, &p->worker) != UCS_OK ||
        ucp_worker_get_address(p->worker, &addr, &len) != UCS_OK || len + 4 > sizeof(mine)) {
        fprintf(stderr, "p2p: UCX setup failed\n");
        exit(1);
    }
    ucp_config_release(cfg);
    memset(mine, 0, sizeof(mine));
    memcpy(mine, &len, sizeof(uint32_t));
    memcpy(mine + 4, addr, len);
    ucp_worker_release_address(p->worker, addr);
    st = zero_comm_allgather(comm, mine, all, sizeof(mine) / 4, ZERO_FP32, ZERO_MEM_HOST);
    if (st != ZERO_OK)
        die("address exchange", st);
    memset(&ep, 0, sizeof(ep));
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep.address = (const ucp_address_t *)(all + (size_t)(1 - g_rank) * 4096 + 4);
    /* the communicator's endpoint mode (ZERO_COMM_UCX_ERR_MODE, default none) */
    ep.err_mode = getenv("ZERO_COMM_UCX_ERR_MODE") && strcmp(getenv("ZERO_COMM_UCX_ERR_MODE"), "peer") == 0
                      ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
    if (ucp_ep_create(p->worker, &ep, &p->ep) != UCS_OK) {
        fprintf(stderr, "p2p: ucp_ep_create failed\n");
        exit(1);
    }
    memset(&rp, 0, sizeof(rp));
    wait_req(p, ucp_worker_flush_nbx(p->worker, &rp));
}

static void p2p_close(zero_comm_h comm, p2p_t *p)
{
    ucp_request_param_t rp;
    zero_comm_barrier(comm);   /* both sides done before either closes */
    memset(&rp, 0, sizeof(rp));
    wait_req(p, ucp_ep_close_nbx(p->ep, &rp));   /* flush: both sides are still alive */
    ucp_worker_destroy(p->worker);
    ucp_cleanup(p->ctx);
}

/* One message of @p bytes from rank 0 to rank 1 and an 8-byte ack; rank 0's time. */
static double p2p_once(p2p_t *p, void *buf, size_t bytes)
{
    ucp_request_param_t rp;
    uint64_t ack = 0;
    double t0 = now_s();
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_MEMORY_TYPE;
    rp.memory_type = UCS_MEMORY_TYPE_HOST;
    if (g_rank == 0) {
        wait_req(p, ucp_tag_send_nbx(p->ep, buf, bytes, 1, &rp));
        wait_req(p, ucp_tag_recv_nbx(p->worker, &ack, sizeof(ack), 2, UINT64_MAX, &rp));
    } else {
        wait_req(p, ucp_tag_recv_nbx(p->worker, buf, bytes, 1, UINT64_MAX, &rp));
        wait_req(p, ucp_tag_send_nbx(p->ep, &ack, sizeof(ack), 2, &rp));
    }
    return now_s() - t0;
}

/* Both ranks send @p bytes to each other at once (the traffic of a ring at
 * world size 2); returns the time of the exchange. */
static double p2p_bidir_once(p2p_t *p, void *sbuf, void *rbuf, size_t bytes)
{
    ucp_request_param_t rp;
    void *rreq, *sreq;
    double t0 = now_s();
    memset(&rp, 0, sizeof(rp));
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_MEMORY_TYPE;
    rp.memory_type = UCS_MEMORY_TYPE_HOST;
    rreq = ucp_tag_recv_nbx(p->worker, rbuf, bytes, 3, UINT64_MAX, &rp);
    sreq = ucp_tag_send_nbx(p->ep, sbuf, bytes, 3, &rp);
    wait_req(p, sreq);
    wait_req(p, rreq);
    return now_s() - t0;
}

int main(int argc, char **argv)
{
    size_t min_bytes = 4096, max_bytes = (size_t)256 << 20, sizes[MAX_SIZES];
    int nsizes = 0, reps_big = 5, do_p2p = 0;
    double p2p_bw[MAX_SIZES] = {0}, p2p_bidir_bw[MAX_SIZES] = {0}, ratio_rs[MAX_SIZES], ratio_ag[MAX_SIZES];
    double ratio_rs_bidir[MAX_SIZES], ratio_ag_bidir[MAX_SIZES], ratio_ag_oop[MAX_SIZES];
    int nratio = 0;
    zero_comm_h comm;
    zero_status_t st;
    float *send, *recv;
    p2p_t p2p;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--min") == 0 && i + 1 < argc)
            min_bytes = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
            max_bytes = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps_big = atoi(argv[++i]);
        else if (strcmp(argv[i], "--p2p") == 0)
            do_p2p = 1;
        else {
            fprintf(stderr, "usage: bench_comm [--min BYTES] [--max BYTES] [--reps N] [--p2p]\n");
            return 2;
        }
    }
    if (reps_big < 1 || reps_big > MAX_REPS - 2 || min_bytes < 64 || max_bytes < min_bytes)
        return 2;
    for (size_t b = min_bytes; b <= max_bytes && nsizes < MAX_SIZES; b *= 4)
        sizes[nsizes++] = b;

    st = zero_comm_create(NULL, &comm);
    if (st != ZERO_OK)
        die("zero_comm_create", st);
    g_rank = zero_comm_rank(comm);
    g_size = zero_comm_size(comm);
    send = aligned_alloc(64, max_bytes);
    recv = aligned_alloc(64, max_bytes);
    if (send == NULL || recv == NULL)
        die("allocating buffers", ZERO_ERR_NO_MEMORY);
    for (size_t i = 0; i < max_bytes / 4; i++) {
        send[i] = (float)((i + (size_t)g_rank) % 7);
        recv[i] = 0;
    }

    if (g_rank == 0)
        printf("op,world_size,bytes,reps,time_us_median,algbw_GBps,busbw_GBps\n");
    do_p2p = do_p2p && g_size == 2;
    if (do_p2p)
        p2p_setup(comm, &p2p);
    /* Per size, the repetitions of every measurement are interleaved (p2p, p2p
     * both ways, reduce-scatter, allgather, allreduce, again ...), so that a
     * change in the machine's load hits baseline and collectives alike. */
    for (int s = 0; s < nsizes; s++) {
        size_t bytes = sizes[s] - sizes[s] % ((size_t)4 * (size_t)g_size);
        size_t elems = bytes / 4;
        int reps = reps_for(bytes, reps_big);
        double t[OP_COUNT + 2][MAX_REPS], bw[OP_COUNT];
        for (int o = 0; o < OP_COUNT; o++) {   /* warm-up */
            st = run_op(comm, (op_t)o, send, recv, elems);
            if (st != ZERO_OK)
                die(op_name[o], st);
        }
        if (do_p2p) {
            zero_comm_barrier(comm);
            p2p_once(&p2p, send, sizes[s]);
            p2p_bidir_once(&p2p, send, recv, sizes[s]);
        }
        for (int r = 0; r < reps; r++) {
            if (do_p2p) {
                zero_comm_barrier(comm);
                t[OP_COUNT][r] = p2p_once(&p2p, send, sizes[s]);     /* rank 0's round trip */
                zero_comm_barrier(comm);
                t[OP_COUNT + 1][r] = slowest(comm, p2p_bidir_once(&p2p, send, recv, sizes[s]));
            }
            for (int o = 0; o < OP_COUNT; o++) {
                double t0;
                zero_comm_barrier(comm);
                t0 = now_s();
                st = run_op(comm, (op_t)o, send, recv, elems);
                if (st != ZERO_OK)
                    die(op_name[o], st);
                t[o][r] = slowest(comm, now_s() - t0);
            }
        }
        if (g_rank != 0)
            continue;
        if (do_p2p) {
            double m = median(t[OP_COUNT], reps), mb = median(t[OP_COUNT + 1], reps);
            p2p_bw[s] = (double)sizes[s] / m / 1e9;
            p2p_bidir_bw[s] = (double)sizes[s] / mb / 1e9;
            printf("p2p,2,%zu,%d,%.1f,%.3f,%.3f\n", sizes[s], reps, m * 1e6, p2p_bw[s], p2p_bw[s]);
            printf("p2p_bidir,2,%zu,%d,%.1f,%.3f,%.3f\n", sizes[s], reps, mb * 1e6, p2p_bidir_bw[s],
                   p2p_bidir_bw[s]);
        }
        for (int o = 0; o < OP_COUNT; o++) {
            double m = median(t[o], reps), alg = (double)bytes / m / 1e9;
            bw[o] = alg * (o == OP_AR ? 2.0 : 1.0) * (double)(g_size - 1) / (double)g_size;
            printf("%s,%d,%zu,%d,%.1f,%.3f,%.3f\n", op_name[o], g_size, bytes, reps, m * 1e6, alg, bw[o]);
        }
        fflush(stdout);
        if (do_p2p && sizes[s] >= ((size_t)16 << 20)) {
            ratio_rs[s] = bw[OP_RS] / p2p_bw[s];
            ratio_ag[s] = bw[OP_AG_INPLACE] / p2p_bw[s];
            ratio_ag_oop[s] = bw[OP_AG] / p2p_bw[s];
            ratio_rs_bidir[s] = bw[OP_RS] / p2p_bidir_bw[s];
            ratio_ag_bidir[s] = bw[OP_AG_INPLACE] / p2p_bidir_bw[s];
        }
    }
    if (do_p2p)
        p2p_close(comm, &p2p);
    if (g_rank == 0) {
        double rs[MAX_SIZES], ag[MAX_SIZES], rsb[MAX_SIZES], agb[MAX_SIZES], ago[MAX_SIZES];
        for (int s = 0; s < nsizes; s++) {
            if (p2p_bw[s] > 0 && sizes[s] >= ((size_t)16 << 20)) {
                rs[nratio] = ratio_rs[s];
                ag[nratio] = ratio_ag[s];
                rsb[nratio] = ratio_rs_bidir[s];
                ago[nratio] = ratio_ag_oop[s];
                agb[nratio++] = ratio_ag_bidir[s];
            }
        }
        if (nratio > 0) {
            printf("# out-of-place allgather (also copies its own block): allgather_busbw_over_p2p=%.2f\n",
                   median(ago, nratio));
            printf("# against p2p_bidir (each direction while both run, as in the ring): "
                   "reduce_scatter=%.2f allgather_inplace=%.2f\n", median(rsb, nratio), median(agb, nratio));
            printf("summary: reduce_scatter_busbw_over_p2p=%.2f allgather_busbw_over_p2p=%.2f\n",
                   median(rs, nratio), median(ag, nratio));
        }
    }
    free(send);
    free(recv);
    zero_comm_destroy(comm);
    return 0;
}
