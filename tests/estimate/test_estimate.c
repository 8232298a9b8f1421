/*
 * zero-estimate's arithmetic (tools/zero-estimate/estimate.c), checked against
 * the worked examples it must reproduce:
 *   - the ZeRO paper (Rajbhandari et al., SC'20, arXiv:1910.02054): Figure 1
 *     (7.5B parameters, N_d = 64, K = 12: 120 GB, 31.4 GB, 16.6 GB, 1.9 GB),
 *     Table 1's 7.5B row at the other DP degrees, and the trillion-parameter
 *     model on 1024 GPUs with P_os+g+p (15.6 GB). The paper's GB is 1e9 bytes:
 *     16 * 7.5e9 bytes is 120 GB but 111.8 GiB.
 *   - DeepSpeed's memory-requirements page (docs/code-docs/source/memory.rst):
 *     t5-3b, 2851M parameters, 32M largest layer, one node of 8 GPUs; DeepSpeed
 *     prints bytes / 2^30 with two decimals.
 * Figures printed with one (paper) or two (DeepSpeed) decimals are compared
 * after the same rounding; exact byte counts are compared with a relative
 * tolerance of 1e-12 (doubles; every count here is exact below 2^53).
 */
#include "test_main.h"

#include "estimate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define REL_TOL 1e-12

static int close_rel(double a, double b)
{
    return fabs(a - b) <= REL_TOL * fmax(fabs(a), fabs(b));
}

/* The figure as printed with @p decimals decimals. */
static double rounded(double v, int decimals)
{
    double s = pow(10.0, decimals);
    return round(v * s) / s;
}

static zero_est_result_t run(double params, uint32_t world, int stage)
{
    zero_est_input_t in;
    zero_est_result_t r;
    char why[256];
    zero_est_input_defaults(&in);
    in.params = params;
    in.world_size = world;
    in.ranks_per_node = world < 8 ? world : 8;
    in.stage = stage;
    CU_ASSERT_EQUAL(zero_est_check(&in, why, sizeof(why)), 0);
    zero_est_compute(&in, &r);
    return r;
}

static void test_paper_figure1(void)
{
    ZERO_TEST_MEM_MARK();
    /* Figure 1: Psi = 7.5B, N_d = 64, K = 12 (mixed-precision Adam). */
    const double expect_gb[4] = {120.0, 31.4, 16.6, 1.9};
    const double expect_bytes[4] = {120e9, 31.40625e9, 16.640625e9, 1.875e9};
    for (int stage = 0; stage <= 3; stage++) {
        zero_est_result_t r = run(7.5e9, 64, stage);
        CU_ASSERT_EQUAL(r.k, 12);
        CU_ASSERT(close_rel(r.model_states_bytes, expect_bytes[stage]));
        CU_ASSERT_DOUBLE_EQUAL(rounded(r.model_states_bytes / 1e9, 1), expect_gb[stage], 1e-9);
        CU_ASSERT(close_rel(r.baseline_bytes, 120e9));
    }
    /* The paper's unit is 1e9 bytes: in GiB the baseline would read 111.8. */
    CU_ASSERT_DOUBLE_EQUAL(rounded(run(7.5e9, 64, 0).model_states_bytes / 1073741824.0, 1), 111.8, 1e-9);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_paper_table1(void)
{
    ZERO_TEST_MEM_MARK();
    /* Table 1, 7.5B row: P_os, P_os+g, P_os+g+p at N_d = 1, 4, 16, 64, 256, 1024 (GB). */
    static const struct { uint32_t nd; double os, osg, osgp; int dec_osgp; } rows[] = {
        {1, 120, 120, 120, 0},     {4, 52.5, 41.3, 30, 0},     {16, 35.6, 21.6, 7.5, 1},
        {64, 31.4, 16.6, 1.88, 2}, {256, 30.4, 15.4, 0.47, 2}, {1024, 30.1, 15.1, 0.12, 2},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CU_ASSERT_DOUBLE_EQUAL(rounded(run(7.5e9, rows[i].nd, 1).model_states_bytes / 1e9, 1), rows[i].os, 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(rounded(run(7.5e9, rows[i].nd, 2).model_states_bytes / 1e9, 1), rows[i].osg, 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(rounded(run(7.5e9, rows[i].nd, 3).model_states_bytes / 1e9, rows[i].dec_osgp),
                               rows[i].osgp, 1e-9);
    }
    /* The trillion-parameter model on 1024 GPUs with P_os+g+p: 16 TB / 1024 = 15.6 GB. */
    zero_est_result_t r = run(1e12, 1024, 3);
    CU_ASSERT(close_rel(r.model_states_bytes, 15.625e9));
    CU_ASSERT_DOUBLE_EQUAL(rounded(r.model_states_bytes / 1e9, 1), 15.6, 1e-9);
    CU_ASSERT(close_rel(r.baseline_bytes, 16e12));
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_deepspeed_zero3_docs(void)
{
    ZERO_TEST_MEM_MARK();
    /* memory.rst, estimate_zero3_model_states_mem_needs_all_cold(total_params=2851e6,
     * largest_layer_params=32e6, num_gpus_per_node=8, num_nodes=1):
     *   per CPU | per GPU | options (offload_param, offload_optimizer, zero_init) */
    static const struct { bool opt, par, init; double cpu, gpu; } rows[] = {
        {true, true, true, 71.69, 0.12},    {true, true, false, 127.45, 0.12},
        {true, false, true, 63.72, 0.78},   {true, false, false, 127.45, 0.78},
        {false, false, true, 1.43, 6.09},   {false, false, false, 127.45, 6.09},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        double cpu, gpu;
        zero_est_ds_zero3(2851e6, 32e6, 8, 1, rows[i].opt, rows[i].par, rows[i].init, &cpu, &gpu);
        CU_ASSERT_DOUBLE_EQUAL(rounded(cpu / 1073741824.0, 2), rows[i].cpu, 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(rounded(gpu / 1073741824.0, 2), rows[i].gpu, 1e-9);
    }
    /* The same through zero_est_compute: stage 3, both offloaded to the CPU. */
    zero_est_input_t in;
    zero_est_result_t r;
    char why[256];
    zero_est_input_defaults(&in);
    in.params = 2851e6;
    in.largest_layer = 32e6;
    in.world_size = 8;
    in.ranks_per_node = 8;
    in.stage = 3;
    in.offload_optimizer = ZERO_OFFLOAD_CPU;
    in.offload_param = ZERO_OFFLOAD_CPU;
    CU_ASSERT_EQUAL_FATAL(zero_est_check(&in, why, sizeof(why)), 0);
    zero_est_compute(&in, &r);
    CU_ASSERT(r.ds_valid);
    CU_ASSERT_DOUBLE_EQUAL(rounded(r.ds_cpu_bytes / 1073741824.0, 2), 71.69, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rounded(r.ds_cpu_no_init_bytes / 1073741824.0, 2), 127.45, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rounded(r.ds_gpu_bytes / 1073741824.0, 2), 0.12, 1e-9);
    CU_ASSERT(close_rel(r.ds_largest_layer_bytes, 128e6));
    /* offload_param without offload_optimizer: DeepSpeed has no such row. */
    in.offload_optimizer = ZERO_OFFLOAD_NONE;
    zero_est_compute(&in, &r);
    CU_ASSERT(!r.ds_valid);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_deepspeed_zero2_docs(void)
{
    ZERO_TEST_MEM_MARK();
    double cpu, gpu;
    /* memory.rst, estimate_zero2_model_states_mem_needs_all_cold(total_params=2851e6,
     * num_gpus_per_node=8, num_nodes=1): cpu_offload=1 -> 127.45GB | 5.31GB. */
    zero_est_ds_zero2(2851e6, 8, 1, true, &cpu, &gpu);
    CU_ASSERT_DOUBLE_EQUAL(rounded(cpu / 1073741824.0, 2), 127.45, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rounded(gpu / 1073741824.0, 2), 5.31, 1e-9);
    /* cpu_offload=0: the page's 127.45GB host figure still holds; its 15.93GB
     * GPU figure came from the older 4*Psi + 16*Psi/N. Current DeepSpeed
     * (stage_1_and_2.py) computes 2*Psi + int(18*Psi/N) = 11.28 GiB. */
    zero_est_ds_zero2(2851e6, 8, 1, false, &cpu, &gpu);
    CU_ASSERT_DOUBLE_EQUAL(rounded(cpu / 1073741824.0, 2), 127.45, 1e-9);
    CU_ASSERT(close_rel(gpu, 2.0 * 2851e6 + floor(18.0 * 2851e6 / 8.0)));
    CU_ASSERT_DOUBLE_EQUAL(rounded(gpu / 1073741824.0, 2), 11.28, 1e-9);
    /* Multi-node host memory with offload: max(4 * total_gpus, 16) * 1.5 per node. */
    zero_est_ds_zero2(1e9, 8, 4, true, &cpu, &gpu);
    CU_ASSERT(close_rel(cpu, 1e9 * 128.0 * 1.5));
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_optimizer_k(void)
{
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_EQUAL(zero_est_k(ZERO_EST_OPT_ADAM, ZERO_FP16), 12);
    CU_ASSERT_EQUAL(zero_est_k(ZERO_EST_OPT_ADAMW, ZERO_BF16), 12);
    CU_ASSERT_EQUAL(zero_est_k(ZERO_EST_OPT_LAMB, ZERO_FP16), 12);
    CU_ASSERT_EQUAL(zero_est_k(ZERO_EST_OPT_SGD_MOMENTUM, ZERO_FP16), 8);
    CU_ASSERT_EQUAL(zero_est_k(ZERO_EST_OPT_SGD, ZERO_FP16), 4);
    CU_ASSERT_EQUAL(zero_est_k(ZERO_EST_OPT_ADAGRAD, ZERO_BF16), 8);
    CU_ASSERT_EQUAL(zero_est_k(ZERO_EST_OPT_LION, ZERO_FP16), 8);
    /* fp32 training keeps no separate master copy */
    CU_ASSERT_EQUAL(zero_est_k(ZERO_EST_OPT_ADAM, ZERO_FP32), 8);
    CU_ASSERT_EQUAL(zero_est_k(ZERO_EST_OPT_SGD, ZERO_FP32), 0);

    zero_est_optimizer_t o;
    CU_ASSERT_EQUAL(zero_est_optimizer_parse("AdamW", &o), 0);
    CU_ASSERT_EQUAL(o, ZERO_EST_OPT_ADAMW);
    CU_ASSERT_EQUAL(zero_est_optimizer_parse("sgd-momentum", &o), 0);
    CU_ASSERT_EQUAL(o, ZERO_EST_OPT_SGD_MOMENTUM);
    CU_ASSERT_EQUAL(zero_est_optimizer_parse("adamax", &o), -1);
    CU_ASSERT_EQUAL(zero_est_optimizer_parse(NULL, &o), -1);

    /* fp32 AdamW, stage 1, 64 ranks: 4 + 4 + 8/64 bytes per parameter. */
    zero_est_input_t in;
    zero_est_result_t r;
    zero_est_input_defaults(&in);
    in.params = 7.5e9;
    in.world_size = 64;
    in.ranks_per_node = 8;
    in.stage = 1;
    in.dtype = ZERO_FP32;
    in.optimizer = ZERO_EST_OPT_ADAMW;
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.model_states_bytes, 7.5e9 * (8.0 + 8.0 / 64.0)));
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_count_parse(void)
{
    ZERO_TEST_MEM_MARK();
    static const struct { const char *text; double value; } good[] = {
        {"7.5e9", 7.5e9}, {"7500000000", 7.5e9}, {"7.5B", 7.5e9}, {"7.5b", 7.5e9}, {"1.3M", 1.3e6},
        {"350k", 3.5e5}, {"1T", 1e12}, {"12", 12}, {".5K", 500}, {"2.5G", 2.5e9}, {"1.5", 2},
    };
    static const char *bad[] = {"", "-1", "+5", "0", "0.2", "abc", "7.5X", "1e", "inf", "nan", "0x10",
                                "7.5BB", " 7", "7 ", "1e19", "1e400"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        double v = 0;
        CU_ASSERT_EQUAL(zero_est_count_parse(good[i].text, &v), 0);
        CU_ASSERT_DOUBLE_EQUAL(v, good[i].value, 0.0);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        double v = -7;
        if (zero_est_count_parse(bad[i], &v) == 0)
            fprintf(stderr, "accepted bad count \"%s\"\n", bad[i]);
        CU_ASSERT_EQUAL(zero_est_count_parse(bad[i], &v), -1);
        CU_ASSERT_DOUBLE_EQUAL(v, -7, 0.0); /* untouched on failure */
    }
    CU_ASSERT_EQUAL(zero_est_count_parse(NULL, &(double){0}), -1);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void expect_bad(const zero_est_input_t *in, const char *flag)
{
    char why[256] = "";
    CU_ASSERT_EQUAL(zero_est_check(in, why, sizeof(why)), -1);
    if (strstr(why, flag) == NULL)
        fprintf(stderr, "message \"%s\" does not name %s\n", why, flag);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, flag));
}

static void test_check(void)
{
    ZERO_TEST_MEM_MARK();
    zero_est_input_t ok, in;
    char why[256];
    zero_est_input_defaults(&ok);
    ok.params = 1e9;
    ok.world_size = 16;
    ok.ranks_per_node = 8;
    CU_ASSERT_EQUAL(zero_est_check(&ok, why, sizeof(why)), 0);

    in = ok; in.params = 0;                 expect_bad(&in, "--params");
    in = ok; in.largest_layer = 2e9;        expect_bad(&in, "--largest-layer");
    in = ok; in.world_size = 0;             expect_bad(&in, "--world-size");
    in = ok; in.ranks_per_node = 0;         expect_bad(&in, "--ranks-per-node");
    in = ok; in.ranks_per_node = 17;        expect_bad(&in, "--ranks-per-node");
    in = ok; in.stage = 4;                  expect_bad(&in, "--stage");
    in = ok; in.offload_optimizer = ZERO_OFFLOAD_CPU; expect_bad(&in, "--offload-optimizer");
    in = ok; in.stage = 2; in.offload_param = ZERO_OFFLOAD_NVME; expect_bad(&in, "--offload-param");
    in = ok; in.grad_accum = 0;             expect_bad(&in, "--grad-accum");
    in = ok; in.bandwidth_gbps = 0;         expect_bad(&in, "--bandwidth");
    in = ok; in.bandwidth_gbps = INFINITY;  expect_bad(&in, "--bandwidth");
    in = ok; in.param_max_in_cpu = -1;      expect_bad(&in, "--max-in-cpu");
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_offload_placement(void)
{
    ZERO_TEST_MEM_MARK();
    zero_est_input_t in;
    zero_est_result_t r;
    const double psi = 8e9, n = 32;
    zero_est_input_defaults(&in);
    in.params = psi;
    in.largest_layer = 1e8;
    in.world_size = 32;
    in.ranks_per_node = 8;
    in.stage = 3;
    in.dtype = ZERO_BF16;

    /* no offload: all of 16 * Psi / N on the device */
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.device_states_bytes, 16.0 * psi / n));
    CU_ASSERT_DOUBLE_EQUAL(r.host_states_bytes, 0.0, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(r.host_staging_bytes, 0.0, 0.0);

    /* both to the CPU: the device keeps the gradient partition */
    in.offload_optimizer = ZERO_OFFLOAD_CPU;
    in.offload_param = ZERO_OFFLOAD_CPU;
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.device_states_bytes, 2.0 * psi / n));
    CU_ASSERT(close_rel(r.host_states_bytes, 14.0 * psi / n));
    CU_ASSERT(close_rel(r.host_staging_bytes, 4.0 * psi / n)); /* fp32 gradient slice */
    CU_ASSERT(close_rel(r.host_total_node_bytes, 8.0 * 18.0 * psi / n));
    CU_ASSERT(close_rel(r.model_states_bytes, 16.0 * psi / n)); /* placement moves, never changes, the total */

    /* both to NVMe, max_in_cpu 0: states on NVMe, host holds the staging buffers */
    in.offload_optimizer = ZERO_OFFLOAD_NVME;
    in.offload_param = ZERO_OFFLOAD_NVME;
    in.param_max_in_cpu = 0;
    zero_est_compute(&in, &r);
    CU_ASSERT_DOUBLE_EQUAL(r.host_states_bytes, 0.0, 0.0);
    CU_ASSERT(close_rel(r.nvme_states_bytes, 14.0 * psi / n));
    CU_ASSERT(close_rel(r.host_staging_bytes,
                        4.0 * psi / n + 4.0 * fmin(1e9, psi / n) * 4.0 + 5.0 * 1e8 * 2.0));

    /* max_in_cpu (DeepSpeed's default 1e9) above the partition (2.5e8
     * elements): it all stays in host memory, no parameter staging */
    in.param_max_in_cpu = 1e9;
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.host_states_bytes, 2.0 * psi / n));
    CU_ASSERT(close_rel(r.nvme_states_bytes, 12.0 * psi / n));
    CU_ASSERT(close_rel(r.host_staging_bytes, 4.0 * psi / n + 4.0 * fmin(1e9, psi / n) * 4.0));
    CU_ASSERT(close_rel(r.model_states_bytes, 16.0 * psi / n));

    /* max_in_cpu 1e8 inside it: 1e8 elements in memory, the rest on NVMe, staging back */
    in.param_max_in_cpu = 1e8;
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.host_states_bytes, 1e8 * 2.0));
    CU_ASSERT(close_rel(r.nvme_states_bytes, 12.0 * psi / n + (psi / n - 1e8) * 2.0));
    CU_ASSERT(close_rel(r.host_staging_bytes,
                        4.0 * psi / n + 4.0 * fmin(1e9, psi / n) * 4.0 + 5.0 * 1e8 * 2.0));
    CU_ASSERT(close_rel(r.model_states_bytes, 16.0 * psi / n));

    /* max_in_cpu only matters with nvme: cpu keeps all of it in memory whatever it says */
    in.offload_param = ZERO_OFFLOAD_CPU;
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.host_states_bytes, 2.0 * psi / n));
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_buffers(void)
{
    ZERO_TEST_MEM_MARK();
    zero_est_input_t in;
    zero_est_result_t r;
    zero_est_input_defaults(&in);
    in.params = 1e10;
    in.world_size = 8;
    in.ranks_per_node = 8;
    in.stage = 2;
    in.reduce_bucket_size = 5e7;
    in.allgather_bucket_size = 2e8;
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.reduce_bucket_bytes, 1e8));
    CU_ASSERT(close_rel(r.allgather_bucket_bytes, 4e8));
    CU_ASSERT(close_rel(r.device_total_bytes, r.model_states_bytes + 5e8));
    in.overlap_comm = true; /* two reduce buckets in flight */
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.reduce_bucket_bytes, 2e8));

    /* A bucket never exceeds the model. */
    in.params = 1e6;
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.allgather_bucket_bytes, 2e6));

    /* Stage 3: the live bound, at least the largest layer, at most the model. */
    in.params = 1e10;
    in.stage = 3;
    in.overlap_comm = false;
    in.largest_layer = 3e8;
    in.max_live_parameters = 1e8;
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.gathered_params_bytes, 6e8));
    CU_ASSERT(close_rel(r.layer_grads_bytes, 6e8));
    CU_ASSERT_DOUBLE_EQUAL(r.allgather_bucket_bytes, 0.0, 0.0);
    in.max_live_parameters = 1e9;
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.gathered_params_bytes, 2e9));
    CU_ASSERT(close_rel(r.prefetch_bucket_bytes, 1e8));
    CU_ASSERT(close_rel(r.device_total_bytes, r.model_states_bytes + 1e8 + 2e9 + 6e8));
    in.max_live_parameters = 1e12;
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.gathered_params_bytes, 2e10));
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_communication(void)
{
    ZERO_TEST_MEM_MARK();
    zero_est_input_t in;
    zero_est_result_t r;
    const double psi = 7.5e9;
    zero_est_input_defaults(&in);
    in.params = psi;
    in.world_size = 64;
    in.ranks_per_node = 8;
    in.bandwidth_gbps = 25.0;

    for (int stage = 0; stage <= 2; stage++) { /* the paper: 2 * Psi, as plain data parallelism */
        in.stage = stage;
        zero_est_compute(&in, &r);
        CU_ASSERT(close_rel(r.comm_paper_elements, 2.0 * psi));
        CU_ASSERT(close_rel(r.comm_bytes_per_rank, 2.0 * psi * 63.0 / 64.0 * 2.0));
        CU_ASSERT(close_rel(r.comm_time_s, r.comm_bytes_per_rank / 25e9));
    }
    in.stage = 3; /* 1.5 x */
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.comm_paper_elements, 3.0 * psi));
    CU_ASSERT(close_rel(r.comm_bytes_per_rank, 3.0 * psi * 63.0 / 64.0 * 2.0));

    /* Accumulating 4 micro-batches: stages 0-1 once per step, stage 2
     * reduce-scatters every micro-batch, stage 3 does everything per micro-batch. */
    in.grad_accum = 4;
    static const double per_psi[4] = {2.0, 2.0, 5.0, 12.0};
    for (int stage = 0; stage <= 3; stage++) {
        in.stage = stage;
        zero_est_compute(&in, &r);
        CU_ASSERT(close_rel(r.comm_elements_per_step, per_psi[stage] * psi));
    }
    in.dtype = ZERO_FP32; /* fp32 doubles the bytes */
    zero_est_compute(&in, &r);
    CU_ASSERT(close_rel(r.comm_bytes_per_rank, 12.0 * psi * 63.0 / 64.0 * 4.0));

    in.world_size = 1; /* nothing to communicate */
    in.ranks_per_node = 1;
    zero_est_compute(&in, &r);
    CU_ASSERT_DOUBLE_EQUAL(r.comm_bytes_per_rank, 0.0, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(r.comm_time_s, 0.0, 0.0);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_nodes(void)
{
    ZERO_TEST_MEM_MARK();
    zero_est_input_t in;
    zero_est_result_t r;
    zero_est_input_defaults(&in);
    in.params = 1e9;
    in.world_size = 12;
    in.ranks_per_node = 8;
    in.stage = 1;
    zero_est_compute(&in, &r);
    CU_ASSERT_EQUAL(r.nodes, 2); /* the last node partly filled */
    in.world_size = 1024;
    zero_est_compute(&in, &r);
    CU_ASSERT_EQUAL(r.nodes, 128);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static CU_TestInfo estimate_tests[] = {
    {"ZeRO paper Figure 1 (7.5B, N_d 64)", test_paper_figure1},
    {"ZeRO paper Table 1 and the 1T / 1024-GPU example", test_paper_table1},
    {"DeepSpeed ZeRO-3 estimator, docs example", test_deepspeed_zero3_docs},
    {"DeepSpeed ZeRO-2 estimator, docs example", test_deepspeed_zero2_docs},
    {"optimizer bytes per parameter K", test_optimizer_k},
    {"parameter counts 7.5e9 / 7.5B / 1.3M", test_count_parse},
    {"bad input names its option", test_check},
    {"offload moves states between device, host, NVMe", test_offload_placement},
    {"config buffers", test_buffers},
    {"communication volume and time", test_communication},
    {"nodes", test_nodes},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"estimate", NULL, NULL, NULL, NULL, estimate_tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    return zero_test_main(argc, argv, suites);
}
