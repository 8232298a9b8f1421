/*
 * A failure of one rank's own inside zero_comm_split reaches every rank at
 * once (comm.c), run on every rank through zero-launch:
 *
 *   split_fail DIR nomem K   world 2, tests/comm/malloc_fail_shim.c in LD_PRELOAD
 *   split_fail DIR nofile    world 2 or more
 *   split_fail DIR nothread  world 2, the shim in LD_PRELOAD
 *
 * nomem K: rank 1's K-th allocation in zero_comm_split fails (K 1-3: its own
 * buffers, allocated before the first exchange over the parent, in which it
 * then cannot take part; its error must say so). Only libzero's own
 * allocations are counted (zero_test_malloc_fail_from), so libc's or UCX's
 * on that thread do not move K. Rank 1's split returns ZERO_ERR_NO_MEMORY; every
 * other rank's split fails within FAIL_BOUND_S, with the parent failed and
 * naming rank 1 (zero_comm_failure): rank 1 failed it.
 *
 * nofile: rank 1 can open no more files during the split (RLIMIT_NOFILE at
 * its lowest free descriptor), so its eventfd fails with EMFILE, a failure it
 * tells the others in the split's first exchange. Every rank's split fails
 * within the bound, every other rank logging an error that names rank 1, and
 * the parent stays healthy: a barrier over it works afterwards.
 *
 * nothread: rank 1's split cannot start its new communicator's progress
 * thread (the shim fails its pthread_create), once every exchange over the
 * parent is done and the others are off to the new communicator's first
 * collective. As nomem: rank 1's split returns ZERO_ERR_NO_MEMORY, every
 * other rank's fails within the bound with the parent failed naming rank 1.
 *
 * scan K: as nomem K, any K (tests/common/fault_scan.sh runs K = 1, 2, ...
 * until rank 1 makes fewer allocations than K, DIR/split_scan.end): every
 * allocation of libzero's on rank 1's thread in zero_comm_split fails in
 * turn, whichever it is. All or none of the ranks' splits must fail, within
 * the bound: where the parent failed (memory for an exchange), every split
 * failed and the parent names rank 1; where it did not, the ranks agree over
 * it on the outcome, and a new communicator carries a barrier.
 *
 * In all, rank 1 stays in until every other rank is done (their marker
 * files in DIR, at most WAIT_S), so their failure cannot come from its exit.
 * The job runs with ZERO_COMM_TIMEOUT=120 (meson.build), far above the bound:
 * a rank that only learns it at the timeout fails the check.
 *
 * Exit status: the number of failed checks.
 */
#include <zero/zero.h>

#include "fault_shim.h"
#include "rank_check.h"
#include "scan_outcome.h"

#include "comm/comm_fail.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define FAIL_BOUND_S 30.0
#define WAIT_S 60.0

/* The errors this thread logs that name rank 1, and whether one said the
 * split's own buffers were short (rank 1, nomem K 1-3). */
static int named_rank1, own_buffers;

static void capture(zero_log_level_t level, int rank, const char *module, const char *message, void *user)
{
    (void)rank;
    (void)module;
    (void)user;
    if (level == ZERO_LOG_LEVEL_ERROR && strstr(message, "rank 1 ") != NULL)
        named_rank1++;
    if (level == ZERO_LOG_LEVEL_ERROR && strstr(message, "zero_comm_split: out of memory for its buffers") != NULL)
        own_buffers++;
    fprintf(stderr, "[%s] %s\n", module, message);
}

/* scan K (above). */
static void scan(zero_comm_h comm, const char *dir, long k)
{
    zero_comm_h child = NULL;
    zero_status_t st, why;
    int culprit = -1;
    double t0, took;

    if (check_rank == 1 && !fault_shim_arm((void (*)(void))zero_comm_split, 0, k))
        return;   /* the others wait for the timeout: the test fails anyway */
    t0 = check_now_s();
    st = zero_comm_split(comm, 0, check_rank, &child);
    took = check_now_s() - t0;
    if (check_rank == 1 && !fault_shim_fired()) {   /* fewer allocations than K: the scan is over */
        fault_scan_end(dir, "split_scan");
        EXPECT(st == ZERO_OK, "rank 1's split failed with no allocation failed (%s)", zero_status_string(st));
    }
    EXPECT(took < FAIL_BOUND_S, "allocation %ld: the split took %.1f s, not within %.0f s (ZERO_COMM_TIMEOUT is "
           "120 s)", k, took, FAIL_BOUND_S);
    why = scan_outcome(comm, st == ZERO_OK, k, "splits", &culprit);
    if (why != ZERO_OK)   /* rank 1 failed the parent: memory for an exchange */
        EXPECT(st != ZERO_OK && child == NULL, "allocation %ld: the parent failed (%s) but this rank's split did "
               "not", k, zero_status_string(why));
    else if (st == ZERO_OK)
        EXPECT(zero_comm_barrier(child) == ZERO_OK, "allocation %ld: a barrier over the new communicator failed", k);
    if (child != NULL)
        zero_comm_destroy(child);
    fprintf(stderr, "rank %d: allocation %ld: the split gave %s after %.2f s\n", check_rank, k,
            zero_status_string(st), took);
    if (check_rank == 1)
        check_markers_wait(dir, "split_scan", WAIT_S);
    else
        check_marker_leave(dir, "split_scan");
}

int main(int argc, char **argv)
{
    zero_comm_h comm, child = NULL;
    zero_status_t st;
    double t0, took;
    int nomem = argc == 4 && strcmp(argv[2], "nomem") == 0, culprit = -1;
    int nothread = argc == 3 && strcmp(argv[2], "nothread") == 0;
    int scanning = argc == 4 && strcmp(argv[2], "scan") == 0;
    long k = nomem || scanning ? atol(argv[3]) : 0;
    struct rlimit old = {0, 0};

    if (!((nomem || scanning) && k > 0) && !(argc == 3 && (strcmp(argv[2], "nofile") == 0 || nothread))) {
        fprintf(stderr, "usage: split_fail DIR nomem|scan K | split_fail DIR nofile|nothread\n");
        return 2;
    }
    if (rank_check_begin(&comm) != 0)
        return 1;
    if (check_world < 2) {
        fprintf(stderr, "split_fail: needs at least 2 ranks\n");
        return 2;
    }
    check_marker_clear(argv[1], scanning ? "split_scan" : "split_fail", check_rank);
    zero_log_set_callback(capture, NULL);
    /* every rank in step before rank 1 arms its failure */
    EXPECT(zero_comm_barrier(comm) == ZERO_OK, "the first barrier failed");
    if (scanning) {
        scan(comm, argv[1], k);
        zero_log_set_callback(NULL, NULL);
        if (check_rank == 1)
            check_marker_clear(argv[1], "split_scan", -1);
        return rank_check_end(comm);
    }
    if (check_rank == 1) {
        if (nomem) {
            if (!fault_shim_arm((void (*)(void))zero_comm_split, 0, k))
                return rank_check_end(NULL);   /* the others wait for the timeout: the test fails anyway */
        } else if (nothread) {
            if (!fault_shim_arm_thread((void (*)(void))zero_comm_split, 1))
                return rank_check_end(NULL);
        } else {
            int fd = dup(0);
            struct rlimit rl;
            if (fd >= 0)
                close(fd);
            EXPECT(getrlimit(RLIMIT_NOFILE, &old) == 0, "getrlimit: %s", strerror(errno));
            rl = old;
            rl.rlim_cur = (rlim_t)fd;
            EXPECT(fd >= 0 && setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit(RLIMIT_NOFILE, %d): %s", fd,
                   strerror(errno));
        }
    }
    t0 = check_now_s();
    st = zero_comm_split(comm, 0, check_rank, &child);
    took = check_now_s() - t0;
    if (check_rank == 1 && !nomem && !nothread)
        EXPECT(setrlimit(RLIMIT_NOFILE, &old) == 0, "restoring RLIMIT_NOFILE: %s", strerror(errno));
    EXPECT(st != ZERO_OK && child == NULL, "rank %d's split did not fail (%s)", check_rank, zero_status_string(st));
    if (child != NULL)
        zero_comm_destroy(child);
    if (check_rank == 1) {
        if (nomem) {
            EXPECT(fault_shim_fired(), "allocation %ld of the split was not made", k);
            EXPECT(st == ZERO_ERR_NO_MEMORY, "rank 1's split gave %s, expected out of memory",
                   zero_status_string(st));
            EXPECT(own_buffers == 1, "allocation %ld was not one of the split's own buffers", k);
        } else if (nothread) {
            EXPECT(fault_shim_fired(), "the split started no thread");
            EXPECT(st == ZERO_ERR_NO_MEMORY, "rank 1's split gave %s, expected out of memory",
                   zero_status_string(st));
        }
        fprintf(stderr, "rank 1: the split failed as intended after %.2f s: %s\n", took, zero_status_string(st));
        check_markers_wait(argv[1], "split_fail", WAIT_S);
    } else {
        EXPECT(took < FAIL_BOUND_S, "the split failed %.1f s after it began, not within %.0f s (ZERO_COMM_TIMEOUT "
               "is 120 s)", took, FAIL_BOUND_S);
        if (nomem || nothread) {
            zero_status_t why = zero_comm_failure(comm, &culprit);
            EXPECT(why != ZERO_OK && culprit == 1, "the parent is not failed naming rank 1 (%s, rank %d)",
                   zero_status_string(why), culprit);
        } else {
            EXPECT(named_rank1 > 0, "no error logged here names rank 1");
        }
        fprintf(stderr, "rank %d: the split failed after %.2f s: %s\n", check_rank, took, zero_status_string(st));
        check_marker_leave(argv[1], "split_fail");
    }
    if (!nomem && !nothread) {
        /* nothing failed the parent: it still carries collectives */
        zero_status_t why = zero_comm_failure(comm, &culprit);
        EXPECT(why == ZERO_OK, "the parent failed (%s, rank %d)", zero_status_string(why), culprit);
        EXPECT(zero_comm_barrier(comm) == ZERO_OK, "a barrier over the parent failed after the split");
    }
    zero_log_set_callback(NULL, NULL);
    if (check_rank == 1)   /* the others' markers are theirs to leave; rank 1 is the last to need them */
        check_marker_clear(argv[1], "split_fail", -1);
    return rank_check_end(comm);
}
