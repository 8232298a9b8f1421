// Launch status for libzero's kernel launchers (.cu files only; each
// launcher's header states the convention for its C callers).
#ifndef ZERO_UTIL_CUDA_LAUNCH_CUH
#define ZERO_UTIL_CUDA_LAUNCH_CUH

#include <cuda_runtime.h>

// An error pending on this thread before a launch is not that launch's: a
// fault of earlier asynchronous work (sticky: the launch would fail with it
// and cudaGetLastError after it would name it) or a failed call nobody read
// (not sticky, but cudaGetLastError after the launch would return it all the
// same). The launchers return it negated with nothing launched (0: none
// pending), so their callers can say the failure came before. Peeked, not
// cleared: the error stays for whoever owns it. A fault that lands between
// this check and the launch can still read as the launch's.
static inline int zero_cuda_pending(void)
{
    return -(int)cudaPeekAtLastError();
}

#endif
