/* Test kernels (tests/comm/late_fill.cu): device work that is still running when
 * the host moves on, and a kernel that faults. */
#ifndef ZERO_TEST_LATE_FILL_H
#define ZERO_TEST_LATE_FILL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Enqueues on @p stream (a cudaStream_t) a kernel that first spins for about
 * @p spin_cycles clock cycles and then sets @p n floats of @p dst to @p value:
 * work that is certainly still running when the host moves on. Returns the
 * launch's cudaError_t as an int (0: launched). */
int zero_test_late_fill(float *dst, size_t n, float value, long long spin_cycles, void *stream);

/* Enqueues on @p stream a kernel that spins for about @p spin_cycles clock
 * cycles and then writes through an address no allocation covers, a real
 * CUDA fault (cudaErrorIllegalAddress, sticky: every later CUDA call of the
 * process fails). Returns the launch's cudaError_t as an int. */
int zero_test_fault(long long spin_cycles, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* ZERO_TEST_LATE_FILL_H */
