/*
 * The allocation fault shim (tests/comm/malloc_fail_shim.c, in LD_PRELOAD)
 * from a rank program, and the "scan K" protocol of tests/common/fault_scan.sh.
 *
 * fault_shim_arm(fn, size, k): on this thread, the k-th allocation from then
 * on made from the code of the object holding @p fn (libzero: the shared
 * library, or the program it is linked into), of exactly @p size bytes (0:
 * any), fails. Counting libzero's own allocations only keeps libc's, UCX's
 * or cJSON's on that thread from moving k. Returns 0, with a failed check,
 * where the shim is not loaded.
 * fault_shim_arm_thread(fn, k): the same for pthread_create: the k-th thread
 * this thread starts from then on from that code fails to start (EAGAIN).
 * fault_shim_fired(): whether either failed; disarms both.
 *
 * A scan (fault_scan.sh) runs one job per k = 1, 2, ...; the rank whose k-th
 * allocation was not made (it makes fewer) calls fault_scan_end(dir, name),
 * leaving DIR/NAME.end, which ends the scan.
 */
#ifndef ZERO_TEST_FAULT_SHIM_H
#define ZERO_TEST_FAULT_SHIM_H

#include <stddef.h>

int fault_shim_arm(void (*fn)(void), size_t size, long k);
int fault_shim_arm_thread(void (*fn)(void), long k);
int fault_shim_fired(void);
void fault_scan_end(const char *dir, const char *name);

#endif /* ZERO_TEST_FAULT_SHIM_H */
