/*
 * An LD_PRELOAD library for the CUDA module's tests (tests only): counts the
 * calls of cudaFreeHost and hands each one to the CUDA runtime's own
 * (RTLD_NEXT), so the runtime still does all the work. A test finds the count
 * with dlsym(RTLD_DEFAULT, "zero_test_cuda_free_host_calls").
 *
 * Why: on a machine without a usable CUDA driver every runtime call fails the
 * same way and cudaGetLastError always answers that error, so whether
 * libzero asked cudaFreeHost to free memory CUDA never gave it can only be
 * seen by counting the calls. libzero-cuda.so asks for the versioned symbol
 * (cudaFreeHost@libcudart.so.N); the dynamic linker takes this unversioned
 * definition first, as it does for any object without version information.
 *
 * No CUDA header: cudaError_t is an enum, returned as an int.
 */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>

/* The project builds with -fvisibility=hidden: both must be visible. */
__attribute__((visibility("default"))) int cudaFreeHost(void *ptr);
__attribute__((visibility("default"))) long zero_test_cuda_free_host_calls(void);

static atomic_long free_host_calls;

long zero_test_cuda_free_host_calls(void)
{
    return atomic_load(&free_host_calls);
}

int cudaFreeHost(void *ptr)
{
    int (*real)(void *);
    *(void **)&real = dlsym(RTLD_NEXT, "cudaFreeHost");
    atomic_fetch_add(&free_host_calls, 1);
    return real != NULL ? real(ptr) : 1;   /* 1: cudaErrorInvalidValue, should the runtime be missing */
}
