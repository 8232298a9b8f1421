/*
 * A rank that fails the job (zero_comm_fail_local: the engine's own failures,
 * a split communicator's told to the job) and destroys its communicator at
 * once, before its progress thread has acted on the failure (run on every
 * rank through zero-launch, world 2, ZERO_COMM_TIMEOUT=120):
 *
 *   fail_destroy DIR
 *
 * Rank 1 fails the job and calls zero_comm_destroy right after; rank 0 waits
 * in an allreduce for rank 1's share. Rank 0's allreduce must fail within
 * FAIL_BOUND_S, the job naming rank 1. Rank 1 stays in until rank 0 is done
 * (its marker file in DIR, at most WAIT_S), so rank 0's failure cannot come
 * from rank 1's exit. The destroy may win the race with the progress thread;
 * a failure handed over but not acted on must still be told (comm.c,
 * progress_main), or rank 1's destroy waits for a goodbye that never comes
 * and rank 0 for rank 1's share, both until the timeout (seen every time
 * without it: rank 0 failed after 120 s).
 *
 * Exit status: the number of failed checks.
 */
#include <zero/zero.h>

#include "comm/comm_fail.h"
#include "rank_check.h"

#include <stdio.h>
#include <string.h>

#define FAIL_BOUND_S 30.0
#define WAIT_S 60.0

int main(int argc, char **argv)
{
    zero_comm_h comm;
    float in[256] = {0}, out[256];
    zero_status_t st;
    double t0, took;
    int culprit = -1;

    if (argc != 2) {
        fprintf(stderr, "usage: fail_destroy DIR\n");
        return 2;
    }
    if (rank_check_begin(&comm) != 0)
        return 1;
    if (check_world != 2) {
        fprintf(stderr, "fail_destroy: needs 2 ranks\n");
        return 2;
    }
    check_marker_clear(argv[1], "fail_destroy", check_rank);
    EXPECT(zero_comm_barrier(comm) == ZERO_OK, "the first barrier failed");
    if (check_rank == 1) {
        zero_comm_fail_local(comm, ZERO_ERR_NO_MEMORY, "fail_destroy: this rank gives up");
        t0 = check_now_s();
        zero_comm_destroy(comm);   /* at once: its progress thread may not have acted yet */
        took = check_now_s() - t0;
        fprintf(stderr, "rank 1: failed the job and destroyed its communicator in %.3f s\n", took);
        EXPECT(took < FAIL_BOUND_S, "rank 1's destroy took %.1f s (it waited for the others' goodbye)", took);
        check_markers_wait(argv[1], "fail_destroy", WAIT_S);
        check_marker_clear(argv[1], "fail_destroy", -1);
        return rank_check_end(NULL);
    }
    t0 = check_now_s();
    st = zero_comm_allreduce(comm, in, out, 256, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST);
    took = check_now_s() - t0;
    EXPECT(st != ZERO_OK, "rank 0's allreduce succeeded without rank 1");
    EXPECT(took < FAIL_BOUND_S, "rank 0's allreduce failed %.1f s after it began, not within %.0f s "
           "(ZERO_COMM_TIMEOUT is 120 s)", took, FAIL_BOUND_S);
    EXPECT(zero_comm_failure(comm, &culprit) != ZERO_OK && culprit == 1, "the job's failure names rank %d, not 1",
           culprit);
    fprintf(stderr, "rank 0: failed after %.3f s: %s, naming rank %d\n", took, zero_status_string(st), culprit);
    check_marker_leave(argv[1], "fail_destroy");
    return rank_check_end(comm);
}
