/*
 * zero_engine_setup is all or nothing over the ranks, whichever of one
 * rank's allocations fails, run on every rank through zero-launch:
 *
 *   setup_scan DIR scan K STAGE   tests/comm/malloc_fail_shim.c in LD_PRELOAD
 *
 * Rank 1's K-th allocation of libzero's own in zero_engine_setup fails
 * (fault_shim.h; tests/common/fault_scan.sh runs K = 1, 2, ... until rank 1
 * makes fewer, DIR/setup_scan.end). Every rank's setup must end within
 * FAIL_BOUND_S (ZERO_COMM_TIMEOUT is 120 s) with the same outcome: where
 * the communicator failed (a failure of rank 1's after the ranks' agreement)
 * it names rank 1, and a rank whose setup finished first fails its next step
 * within the bound; where it did not (a refusal in the agreement), the ranks
 * compare their outcomes over it, and an engine set up everywhere takes a
 * step. Rank 1 stays in until every other rank is done
 * (their marker files), so their failure cannot come from its exit.
 *
 * Exit status: the number of failed checks.
 */
#include <zero/zero.h>

#include "fault_shim.h"
#include "rank_check.h"
#include "scan_outcome.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPARAM 3
#define FAIL_BOUND_S 30.0
#define WAIT_S 60.0

/* One step of constant gradients on every parameter. */
static zero_status_t one_step(zero_engine_h eng, zero_param_h *h)
{
    float seed;
    zero_status_t st = zero_backward_begin(eng, &seed);
    for (int p = NPARAM - 1; p >= 0 && st == ZERO_OK; p--) {
        float *g = zero_param_grad(h[p]);
        size_t n = zero_param_numel(h[p]);
        if (g == NULL)
            return ZERO_ERR_STATE;
        for (size_t i = 0; i < n; i++)
            g[i] = 0.5f;
        st = zero_grad_ready(eng, h[p]);
    }
    if (st == ZERO_OK)
        st = zero_backward_end(eng);
    if (st == ZERO_OK)
        st = zero_step(eng, NULL);
    return st;
}

int main(int argc, char **argv)
{
    char json[512];
    zero_comm_h comm;
    zero_engine_h eng = NULL;
    zero_param_h h[NPARAM];
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM};
    zero_status_t st = ZERO_ERR_STATE, why;
    int culprit = -1, stage;
    long k;
    double t0, took;

    if (argc != 5 || strcmp(argv[2], "scan") != 0 || (k = atol(argv[3])) < 1 || (stage = atoi(argv[4])) < 0 ||
        stage > 3) {
        fprintf(stderr, "usage: setup_scan DIR scan K STAGE\n");
        return 2;
    }
    if (rank_check_begin(&comm) != 0)
        return 1;
    check_marker_clear(argv[1], "setup_scan", check_rank);
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"train_batch_size\": %d, \"steps_per_print\": 0,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.001}},"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": 1000}}",
             check_world, stage);
    ep.config_json = json;
    ep.comm = comm;
    EXPECT(zero_engine_create(&ep, &eng) == ZERO_OK, "zero_engine_create failed");
    for (int p = 0; p < NPARAM && eng != NULL; p++) {
        char name[16];
        zero_param_desc_t d = {.name = name, .dtype = ZERO_FP32, .ndim = 1, .shape = {1000 + 7 * (size_t)p}};
        snprintf(name, sizeof(name), "w%d", p);
        EXPECT(zero_param_register(eng, &d, &h[p]) == ZERO_OK, "registering %s: %s", name,
               zero_engine_last_error(eng));
    }
    if (check_failures > 0 || zero_comm_barrier(comm) != ZERO_OK)
        goto out;   /* every rank in step before rank 1 arms its failure */
    if (check_rank == 1 && !fault_shim_arm((void (*)(void))zero_engine_setup, 0, k))
        goto out;   /* the others wait for the timeout: the test fails anyway */
    t0 = check_now_s();
    st = zero_engine_setup(eng);
    took = check_now_s() - t0;
    if (check_rank == 1 && !fault_shim_fired()) {   /* fewer allocations than K: the scan is over */
        fault_scan_end(argv[1], "setup_scan");
        EXPECT(st == ZERO_OK, "rank 1's setup failed with no allocation failed (%s)", zero_engine_last_error(eng));
    }
    EXPECT(took < FAIL_BOUND_S, "allocation %ld: setup took %.1f s, not within %.0f s (ZERO_COMM_TIMEOUT is 120 s)",
           k, took, FAIL_BOUND_S);
    why = scan_outcome(comm, st == ZERO_OK, k, "setups", &culprit);
    if (why != ZERO_OK && st == ZERO_OK) {
        /* This rank's setup finished before rank 1's failure after the
         * agreement reached it (nothing of its own waited for rank 1 by
         * then): its next call must fail, at once. */
        double t1 = check_now_s();
        zero_status_t next = one_step(eng, h);
        EXPECT(next != ZERO_OK && check_now_s() - t1 < FAIL_BOUND_S,
               "allocation %ld: the communicator failed (%s), yet a step after this rank's setup gave %s after "
               "%.1f s", k, zero_status_string(why), zero_status_string(next), check_now_s() - t1);
    } else if (why == ZERO_OK && st == ZERO_OK) {
        EXPECT((st = one_step(eng, h)) == ZERO_OK, "allocation %ld: a step after setup failed: %s", k,
               zero_engine_last_error(eng));
    }
    fprintf(stderr, "rank %d: allocation %ld: setup %s after %.2f s%s%s\n", check_rank, k,
            zero_status_string(st), took, st != ZERO_OK ? ": " : "", st != ZERO_OK ? zero_engine_last_error(eng) : "");
    if (check_rank == 1)
        check_markers_wait(argv[1], "setup_scan", WAIT_S);
    else
        check_marker_leave(argv[1], "setup_scan");
out:
    zero_engine_destroy(eng);
    if (check_rank == 1)
        check_marker_clear(argv[1], "setup_scan", -1);
    return rank_check_end(comm);
}
