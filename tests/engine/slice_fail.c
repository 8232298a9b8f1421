/*
 * A stage-3 slice whose record this rank cannot allocate fails every rank at
 * once (engine_fail), run on every rank through zero-launch (world 2, host,
 * tests/comm/malloc_fail_shim.c in LD_PRELOAD):
 *
 *   slice_fail DIR gather   rank 1's record of the slice it gathers
 *                           (zero_gather_slices of a whole parameter, whose
 *                           broadcasts come from both ranks) cannot be made
 *   slice_fail DIR grad     rank 1's record of a gradient slice
 *                           (zero_param_grad_slice) cannot be made, while
 *                           rank 0 reduces that slice and ends the backward
 *
 * The failing allocation is picked by its size (the record's, plus
 * zero_malloc's header: lib/util/alloc.c), the first of that size in the
 * call. Checks: rank 1's call fails naming "out of memory for its record"
 * and its engine is failed (zero_backward_begin refuses); rank 0's call
 * fails within FAIL_BOUND_S, its last error naming rank 1. The job runs with
 * ZERO_COMM_TIMEOUT=120 (meson.build), far above the bound, and rank 1 stays
 * in until rank 0 is done (its marker file in DIR, at most WAIT_S), so rank
 * 0's failure cannot come from rank 1's exit.
 *
 * Exit status: the number of failed checks.
 */
#include <zero/zero.h>

#include "fault_shim.h"
#include "rank_check.h"
#include "zero/engine_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define NUMEL 8192
#define FAIL_BOUND_S 30.0
#define WAIT_S 60.0

int main(int argc, char **argv)
{
    char json[512];
    zero_comm_h comm;
    zero_engine_h eng = NULL;
    zero_param_h h = NULL;
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM |
                                             ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = json, .num_threads = 1};
    zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN, .name = "w", .dtype = ZERO_FP32, .ndim = 1,
                           .shape = {NUMEL}, .init_fn = check_init_ramp};
    size_t header = sizeof(max_align_t) > sizeof(size_t) ? sizeof(max_align_t) : sizeof(size_t);
    int grad = argc == 3 && strcmp(argv[2], "grad") == 0;
    zero_status_t st;
    double t0, took;
    float seed;

    if (argc != 3 || (!grad && strcmp(argv[2], "gather") != 0)) {
        fprintf(stderr, "usage: slice_fail DIR gather|grad\n");
        return 2;
    }
    if (rank_check_begin(&comm) != 0)
        return 1;
    if (check_world != 2) {
        fprintf(stderr, "slice_fail: needs 2 ranks\n");
        return 2;
    }
    check_marker_clear(argv[1], "slice_fail", check_rank);
    /* every parameter partitioned (no persistent ones): a slice is gathered by broadcasts */
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"train_batch_size\": 2, \"steps_per_print\": 0,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.001}},"
             " \"zero_optimization\": {\"stage\": 3, \"stage3_param_persistence_threshold\": 0}}");
    ep.comm = comm;
    if (zero_engine_create(&ep, &eng) != ZERO_OK || zero_param_register(eng, &d, &h) != ZERO_OK ||
        zero_engine_setup(eng) != ZERO_OK) {
        check_failed(__FILE__, __LINE__, "setting up the engine failed: %s", eng ? zero_engine_last_error(eng) : "");
        goto out;
    }
    EXPECT(zero_comm_barrier(comm) == ZERO_OK, "the first barrier failed");
    if (grad)
        EXPECT(zero_backward_begin(eng, &seed) == ZERO_OK, "zero_backward_begin: %s", zero_engine_last_error(eng));
    if (check_rank == 1 &&
        !fault_shim_arm((void (*)(void))zero_engine_setup,
                        header + (grad ? sizeof(engine_grad_slice_t) : sizeof(engine_slice_t)), 1))
        goto out;
    t0 = check_now_s();
    if (grad) {
        float *g = zero_param_grad_slice(h, 0, NUMEL);
        st = g == NULL ? ZERO_ERR_NO_MEMORY : ZERO_OK;
        if (g != NULL) {
            for (int i = 0; i < NUMEL; i++)
                g[i] = 0.001f * (float)(i % 13);
            st = zero_grad_slice_ready(eng, h, 0, NUMEL);
            if (st == ZERO_OK)
                st = zero_backward_end(eng);
        }
    } else {
        zero_param_slice_t all = {h, 0, NUMEL};
        st = zero_gather_slices(eng, &all, 1);
    }
    took = check_now_s() - t0;
    if (check_rank == 1) {
        EXPECT(fault_shim_fired(), "no allocation of the record's size was made");
        EXPECT(st == ZERO_ERR_NO_MEMORY && strstr(zero_engine_last_error(eng), "out of memory for its record"),
               "rank 1's call gave %s, expected out of memory for the slice's record (%s)", zero_status_string(st),
               zero_engine_last_error(eng));
        fprintf(stderr, "rank 1: failed as intended: %s\n", zero_engine_last_error(eng));
        st = zero_backward_begin(eng, &seed);
        EXPECT(st != ZERO_OK, "rank 1's engine is not failed: zero_backward_begin succeeded");
        check_markers_wait(argv[1], "slice_fail", WAIT_S);
    } else {
        const char *why = zero_engine_last_error(eng);
        EXPECT(st != ZERO_OK, "rank 0's %s succeeded though rank 1's failed", grad ? "backward" : "gather");
        EXPECT(took < FAIL_BOUND_S, "rank 0 failed %.1f s after the call began, not within %.0f s "
               "(ZERO_COMM_TIMEOUT is 120 s)", took, FAIL_BOUND_S);
        EXPECT(strstr(why, "rank 1") != NULL, "the last error does not name rank 1: %s", why);
        fprintf(stderr, "rank 0: failed after %.2f s: %s (%s)\n", took, why, zero_status_string(st));
        check_marker_leave(argv[1], "slice_fail");
    }
out:
    zero_engine_destroy(eng);
    if (check_rank == 1)
        check_marker_clear(argv[1], "slice_fail", -1);
    return rank_check_end(comm);
}
