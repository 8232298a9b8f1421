/*
 * An engine failure local to one rank fails every rank at once (engine_fail,
 * comm/comm_fail.h), run on every rank through zero-launch (world sizes 2-3):
 *
 *   local_fail DIR [setup]
 *
 * A stage-2 fp32 AdamW trainer keeps its optimizer state on NVMe under DIR
 * (aio.io_backend "posix": the store's own threads pwrite the file). After a
 * first clean step, rank 1 lowers its RLIMIT_FSIZE to 0 (SIGXFSZ ignored), so
 * that its store's next write of the file fails with EFBIG: a real I/O error
 * of that rank alone, in the middle of zero_step, where the other ranks go on
 * to gather the updated weights and wait for rank 1's share.
 *
 * Checks:
 *  - rank 1's zero_step fails, naming the I/O error;
 *  - every other rank's zero_step fails too, within FAIL_BOUND_S of the start
 *    of that step, and its last error names rank 1. The test runs with
 *    ZERO_COMM_TIMEOUT=120 (meson.build), far above the bound, so a rank that
 *    only learns it at the timeout fails the check;
 *  - rank 1 stays alive until every other rank has failed (it waits for
 *    their marker files, at most WAIT_S): without the failure path they
 *    would learn it only when rank 1's process exits, after the bound.
 *
 * With "nomem" (host build only; tests/comm/malloc_fail_shim.c in
 * LD_PRELOAD), rank 1's cause is memory instead: after the clean step its
 * next allocation of the step's sum over ranks (the overflow count and the
 * squared norm, world x 2 doubles: sum_over_ranks_f64) fails, while the
 * others are in that allgather. Rank 1's step must fail with
 * ZERO_ERR_NO_MEMORY naming that sum; the other checks are the same.
 *
 * With "save" (host build only; the same shim), rank 1's first allocation
 * in zero_save_checkpoint fails (rendering the config), before the save's
 * first agreement, which the others are in. Every rank's save must fail
 * within the bound, the others naming rank 1, and the engines and the
 * communicator stay usable: one more step succeeds on every rank.
 *
 * With "setup" (host build only), rank 1 lowers the limit before
 * zero_engine_setup instead: no file of its can be sized (a shared-memory
 * segment, its store's file), a failure of that rank alone after every rank
 * agreed on the registrations, while the others go on to publish the
 * weights; the checks are the same, with zero_engine_setup as step 0.
 *
 * Built a second time as local_fail_device (-DLOCAL_FAIL_DEVICE, CUDA builds;
 * every rank exits 77 without a device): the same trainer with the engine in
 * GPU memory and no offload, several ranks on one GPU (staged backend). The
 * local failure is then a real CUDA fault of rank 1 (tests/comm/late_fill.cu:
 * a kernel on the engine's stream writes through an unmapped address, which
 * is sticky), and rank 1's step must fail with a CUDA error; the other
 * checks are the same.
 *
 * Exit status: the number of failed checks.
 */
#include <zero/zero.h>

#include "fault_shim.h"
#include "rank_check.h"
#ifdef LOCAL_FAIL_DEVICE
#include "late_fill.h"
#include <cuda_runtime_api.h>
#endif

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define NPARAM 3
#define NUMEL 8192
#define MAX_STEPS 4
#define FAIL_BOUND_S 30.0
#define WAIT_S 60.0

/* One micro-batch and the step; the first failing call's status. */
static zero_status_t train_step(zero_engine_h eng, zero_param_h *h, int step)
{
    static float grad[NUMEL];
    float seed;
    zero_status_t st = zero_backward_begin(eng, &seed);
    for (int p = NPARAM - 1; p >= 0 && st == ZERO_OK; p--) {
        for (int i = 0; i < NUMEL; i++)
            grad[i] = 0.001f * (float)((i + p + step + check_rank) % 13);
#ifdef LOCAL_FAIL_DEVICE
        /* a device pointer: copied on the legacy stream, which the engine's (NULL) stream is */
        (void)cudaMemcpy(zero_param_grad(h[p]), grad, sizeof(grad), cudaMemcpyHostToDevice);
#else
        if (zero_param_grad(h[p]) == NULL)   /* a failed engine hands out none */
            return ZERO_ERR_STATE;
        memcpy(zero_param_grad(h[p]), grad, sizeof(grad));
#endif
        st = zero_grad_ready(eng, h[p]);
    }
    if (st == ZERO_OK)
        st = zero_backward_end(eng);
    if (st == ZERO_OK)
        st = zero_step(eng, NULL);
    return st;
}

#ifndef LOCAL_FAIL_DEVICE
/* This rank's files cannot grow from now on (SIGXFSZ ignored: EFBIG). */
static void forbid_file_growth(void)
{
    struct rlimit rl = {0, 0};
    signal(SIGXFSZ, SIG_IGN);
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0) {
        rl.rlim_cur = 0;
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            check_failed(__FILE__, __LINE__, "setrlimit(RLIMIT_FSIZE) failed: %s", strerror(errno));
    }
}
#endif

int main(int argc, char **argv)
{
    char json[1024];
    zero_comm_h comm;
    zero_engine_h eng = NULL;
    zero_param_h h[NPARAM];
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM |
                                             ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = json, .num_threads = 1};
    zero_status_t st = ZERO_OK;
    double t_step = 0, t_failed = 0;
    int failed_at = -1, at_setup = argc == 3 && strcmp(argv[2], "setup") == 0;
    int nomem = argc == 3 && strcmp(argv[2], "nomem") == 0, save = argc == 3 && strcmp(argv[2], "save") == 0;

    if (argc != 2 && !at_setup && !nomem && !save) {
        fprintf(stderr, "usage: local_fail DIR [setup|nomem|save]\n");
        return 2;
    }
#ifdef LOCAL_FAIL_DEVICE
    {
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
            printf("local_fail_device: no CUDA device: skipped\n");
            return 77;
        }
    }
    ep.field_mask |= ZERO_ENGINE_PARAM_FIELD_MEM_KIND;
    ep.mem_kind = ZERO_MEM_DEVICE;
#endif
    if (rank_check_begin(&comm) != 0)
        return 1;
    if (check_world < 2) {
        fprintf(stderr, "local_fail: needs at least 2 ranks\n");
        return 2;
    }
    check_marker_clear(argv[1], "local_fail", check_rank);
#ifdef LOCAL_FAIL_DEVICE
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"train_batch_size\": %d, \"steps_per_print\": 0,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.001}},"
             " \"zero_optimization\": {\"stage\": 2, \"reduce_bucket_size\": %d}}",
             check_world, NUMEL);
#else
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"train_batch_size\": %d, \"steps_per_print\": 0,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.001}},"
             " \"aio\": {\"io_backend\": \"posix\"},"
             " \"zero_optimization\": {\"stage\": 2, \"reduce_bucket_size\": %d,"
             " \"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"%s\", \"buffer_count\": 2}}}",
             check_world, NUMEL, argv[1]);
#endif
    ep.comm = comm;
    if (zero_engine_create(&ep, &eng) != ZERO_OK) {
        check_failed(__FILE__, __LINE__, "zero_engine_create failed");
        goto out;
    }
    for (int p = 0; p < NPARAM; p++) {
        char name[16];
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN, .name = name, .dtype = ZERO_FP32, .ndim = 1,
                               .shape = {NUMEL}, .init_fn = check_init_ramp};
        snprintf(name, sizeof(name), "w%d", p);
        if (zero_param_register(eng, &d, &h[p]) != ZERO_OK) {
            check_failed(__FILE__, __LINE__, "registering %s failed: %s", name, zero_engine_last_error(eng));
            goto out;
        }
    }
#ifndef LOCAL_FAIL_DEVICE
    if (at_setup) {
        if (check_rank == 1)
            forbid_file_growth();
        t_step = check_now_s();
        st = zero_engine_setup(eng);
        if (st != ZERO_OK) {
            t_failed = check_now_s();
            failed_at = 0;
        }
        for (int step = 1; step < MAX_STEPS && st == ZERO_OK; step++) {
            t_step = check_now_s();
            st = train_step(eng, h, step);
            if (st != ZERO_OK) {
                t_failed = check_now_s();
                failed_at = step;
            }
        }
        goto check;
    }
#endif
    if (zero_engine_setup(eng) != ZERO_OK) {
        check_failed(__FILE__, __LINE__, "setup failed: %s", zero_engine_last_error(eng));
        goto out;
    }
    st = train_step(eng, h, 0);
    EXPECT(st == ZERO_OK, "the clean first step failed: %s", zero_engine_last_error(eng));
    if (st != ZERO_OK)
        goto out;
#ifdef LOCAL_FAIL_DEVICE
    if (check_rank == 1) {
        /* a real fault of this rank's own device work, on the engine's stream */
        int err = zero_test_fault(0, NULL);
        EXPECT(err == 0, "the faulting kernel did not launch: %d", err);
        (void)cudaDeviceSynchronize();   /* the fault has happened before the next step starts */
    }
#else
    if (check_rank == 1 && nomem) {
        /* zero_calloc(world x 2 doubles) plus zero_malloc's header (lib/util/alloc.c: a union of size_t
         * and max_align_t); rank 1's error names the sum, so another allocation of that size fails the check */
        size_t header = sizeof(max_align_t) > sizeof(size_t) ? sizeof(max_align_t) : sizeof(size_t);
        (void)fault_shim_arm((void (*)(void))zero_engine_setup, header + (size_t)check_world * 2 * sizeof(double), 1);
    } else if (save) {
        char dir[4096];
        int armed = 0;
        snprintf(dir, sizeof(dir), "%s/local_fail_ckpt.%d", argv[1], check_world);
        if (check_rank == 1)   /* its first allocation of libzero's in the save */
            armed = fault_shim_arm((void (*)(void))zero_engine_setup, 0, 1);
        t_step = check_now_s();
        st = zero_save_checkpoint(eng, dir, "t1", NULL);
        if (st != ZERO_OK) {
            t_failed = check_now_s();
            failed_at = 1;
        }
        if (armed)
            (void)fault_shim_fired();   /* disarmed */
        goto check;
    } else if (check_rank == 1) {
        forbid_file_growth();
    }
#endif
    for (int step = 1; step < MAX_STEPS; step++) {
        t_step = check_now_s();
        st = train_step(eng, h, step);
        if (st != ZERO_OK) {
            t_failed = check_now_s();
            failed_at = step;
            break;
        }
    }
#ifndef LOCAL_FAIL_DEVICE
check:
#endif
    if (check_rank == 1) {
#ifdef LOCAL_FAIL_DEVICE
        EXPECT(failed_at > 0, "rank 1's engine went on after a CUDA fault: no step failed");
        EXPECT(st == ZERO_ERR_CUDA, "rank 1's step failed with %s, expected a CUDA error (%s)",
               zero_status_string(st), zero_engine_last_error(eng));
#else
        EXPECT(failed_at >= 0, "rank 1's store could still write with RLIMIT_FSIZE 0: no step failed");
        if (save)
            EXPECT(st == ZERO_ERR_NO_MEMORY && strstr(zero_engine_last_error(eng), "rendering the config"),
                   "rank 1's save failed with %s, expected out of memory rendering the config (%s)",
                   zero_status_string(st), zero_engine_last_error(eng));
        else if (nomem)
            EXPECT(st == ZERO_ERR_NO_MEMORY && strstr(zero_engine_last_error(eng), "summing the overflow counts"),
                   "rank 1's step failed with %s, expected out of memory in the sum over ranks (%s)",
                   zero_status_string(st), zero_engine_last_error(eng));
        else   /* at setup the first file to grow may be a shared-memory segment (out of memory) */
            EXPECT(st == ZERO_ERR_IO || (at_setup && st == ZERO_ERR_NO_MEMORY),
                   "rank 1's step failed with %s, expected an I/O error (%s)", zero_status_string(st),
                   zero_engine_last_error(eng));
#endif
        fprintf(stderr, "rank 1: step %d failed as intended: %s\n", failed_at, zero_engine_last_error(eng));
        /* stay alive until the others failed: their failure must not be this process's exit */
        check_markers_wait(argv[1], "local_fail", WAIT_S);
    } else {
        EXPECT(failed_at >= 0, "no step failed on this rank though rank 1's did");
        if (failed_at >= 0) {
            const char *why = zero_engine_last_error(eng);
            EXPECT(t_failed - t_step < FAIL_BOUND_S, "step %d failed %.1f s after it began, not within %.0f s "
                   "(ZERO_COMM_TIMEOUT is 120 s)", failed_at, t_failed - t_step, FAIL_BOUND_S);
            EXPECT(strstr(why, "rank 1") != NULL, "the last error does not name rank 1: %s", why);
            fprintf(stderr, "rank %d: step %d failed %.2f s after it began: %s (%s)\n", check_rank, failed_at,
                    t_failed - t_step, why, zero_status_string(st));
            check_marker_leave(argv[1], "local_fail");
        }
    }
#ifndef LOCAL_FAIL_DEVICE
    if (save)   /* a failed save leaves the engines and the communicator as they were */
        EXPECT((st = train_step(eng, h, MAX_STEPS)) == ZERO_OK, "a step after the failed save failed: %s (%s)",
               zero_status_string(st), zero_engine_last_error(eng));
#endif
out:
    zero_engine_destroy(eng);
    if (check_rank == 1)   /* the others' markers are theirs to leave; rank 1 is the last to need them */
        check_marker_clear(argv[1], "local_fail", -1);
    return rank_check_end(comm);
}
