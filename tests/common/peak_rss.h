/*
 * Peak resident memory of this process, for tests that bound it
 * (tests/engine/param_offload_rss.c, tests/offload/test_store_nvme.c):
 * Linux's VmHWM, which /proc/self/clear_refs can set back to the current RSS
 * so that a test measures the peak of one piece of work from its start.
 */
#ifndef ZERO_TEST_PEAK_RSS_H
#define ZERO_TEST_PEAK_RSS_H

/* The value of @p key ("VmHWM:", "VmRSS:") in /proc/self/status, KiB; -1 when
 * it cannot be read. */
long peak_rss_status_kib(const char *key);

/* Sets the peak (VmHWM) to the current RSS. 1 when done; 0 when this kernel
 * or sandbox does not allow it (the caller skips its check). */
int peak_rss_reset(void);

#endif /* ZERO_TEST_PEAK_RSS_H */
