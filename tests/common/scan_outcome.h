/*
 * The outcome check of one job of an allocation fault scan (fault_shim.h,
 * fault_scan.sh) whose programs link libzero's static archive (this needs
 * its internal comm/comm_fail.h): one rank's allocation K failed inside a
 * collective call (a split, a setup) and every rank's call returned.
 *
 * scan_outcome(comm, ok, k, what, &culprit): compares the ranks' outcomes
 * (@p ok: whether this rank's call succeeded) over @p comm, unless @p comm
 * failed. Returns ZERO_OK where it did not fail (a failed check where the
 * outcomes differ), else its failure, and the rank it names in *culprit
 * (a failed check where that is not rank 1). The failing rank fails @p comm
 * (zero_comm_fail_local) before its call returns, but its progress thread
 * marks it failed a moment later, so the exchange may be what shows it.
 */
#ifndef ZERO_TEST_SCAN_OUTCOME_H
#define ZERO_TEST_SCAN_OUTCOME_H

#include <zero/zero.h>

#include "rank_check.h"

#include "comm/comm_fail.h"

#include <stdint.h>

static inline zero_status_t scan_outcome(zero_comm_h comm, int ok, long k, const char *what, int *culprit_p)
{
    int64_t mine[2] = {ok != 0, -(int64_t)(ok != 0)}, most[2] = {0, 0};
    zero_status_t why = zero_comm_failure(comm, culprit_p);
    if (why == ZERO_OK &&
        zero_comm_allreduce(comm, mine, most, 2, ZERO_I64, ZERO_COMM_MAX, ZERO_MEM_HOST) != ZERO_OK) {
        why = zero_comm_failure(comm, culprit_p);
        EXPECT(why != ZERO_OK, "allocation %ld: an exchange failed, the communicator not", k);
    }
    if (why != ZERO_OK)
        EXPECT(*culprit_p == 1, "allocation %ld: the communicator failed naming rank %d, not 1", k, *culprit_p);
    else
        EXPECT(most[0] == -most[1], "allocation %ld: some ranks' %s failed, others' did not (here: %s)", k, what,
               ok ? "succeeded" : "failed");
    return why;
}

#endif /* ZERO_TEST_SCAN_OUTCOME_H */
