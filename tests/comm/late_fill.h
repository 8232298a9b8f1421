/* A test kernel for ordering collectives after device work (tests/comm/late_fill.cu). */
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

#ifdef __cplusplus
}
#endif

#endif /* ZERO_TEST_LATE_FILL_H */
