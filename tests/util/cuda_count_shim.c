/*
 * An LD_PRELOAD library for the CUDA module's tests (tests only): counts the
 * calls of cudaFreeHost and hands each one to the CUDA runtime's own, so
 * the runtime still does all the work. A test finds the count with
 * dlsym(RTLD_DEFAULT, "zero_test_cuda_free_host_calls").
 *
 * Why: on a machine without a usable CUDA driver every runtime call fails the
 * same way and cudaGetLastError always answers that error, so whether
 * libzero asked cudaFreeHost to free memory CUDA never gave it can only be
 * seen by counting the calls. libzero-cuda.so asks for the versioned symbol
 * (cudaFreeHost@libcudart.so.N); the dynamic linker takes this unversioned
 * definition first, as it does for any object without version information.
 *
 * The runtime's own: libzero dlopens its CUDA module RTLD_LOCAL
 * (lib/util/cuda_module.c), so libcudart is outside the global scope and
 * dlsym(RTLD_NEXT) from here finds nothing; the loaded libcudart is looked
 * up by name among the loaded objects instead and asked through its own
 * handle. zero_test_cuda_free_host_forwarded counts the calls it got.
 *
 * No CUDA header: cudaError_t is an enum, returned as an int.
 */
#include <dlfcn.h>
#include <link.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

/* The project builds with -fvisibility=hidden: these must be visible. */
__attribute__((visibility("default"))) int cudaFreeHost(void *ptr);
__attribute__((visibility("default"))) long zero_test_cuda_free_host_calls(void);
__attribute__((visibility("default"))) long zero_test_cuda_free_host_forwarded(void);

typedef int (*free_host_fn)(void *);

static atomic_long free_host_calls, free_host_forwarded;

long zero_test_cuda_free_host_calls(void)
{
    return atomic_load(&free_host_calls);
}

long zero_test_cuda_free_host_forwarded(void)
{
    return atomic_load(&free_host_forwarded);
}

/* dl_iterate_phdr callback: the loaded libcudart's own cudaFreeHost. */
static int find_cudart(struct dl_phdr_info *info, size_t size, void *data)
{
    void *handle;
    (void)size;
    if (info->dlpi_name == NULL || strstr(info->dlpi_name, "libcudart.so") == NULL)
        return 0;
    handle = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
    if (handle == NULL)
        return 0;
    *(void **)data = dlsym(handle, "cudaFreeHost");   /* libcudart's own scope: not this shim */
    dlclose(handle);                                  /* drops only the reference RTLD_NOLOAD took */
    return *(void **)data != NULL;
}

int cudaFreeHost(void *ptr)
{
    free_host_fn real;
    atomic_fetch_add(&free_host_calls, 1);
    *(void **)&real = dlsym(RTLD_NEXT, "cudaFreeHost");
    if (real == NULL)
        dl_iterate_phdr(find_cudart, &real);
    if (real == NULL)
        return 1;   /* cudaErrorInvalidValue: no runtime loaded (the forwarded count shows it) */
    atomic_fetch_add(&free_host_forwarded, 1);
    return real(ptr);
}
