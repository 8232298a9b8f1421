/*
 * Allocation fault shim (tests only): an LD_PRELOAD library whose malloc fails
 * one chosen call of one thread, so a test can make a real allocation of
 * libzero's fail on one rank (zero_malloc calls malloc) without root and
 * without hooks in the library.
 *
 * A test finds zero_test_malloc_fail_at with dlsym(RTLD_DEFAULT, ...) and
 * calls it on the thread whose allocation should fail: the @p k-th call of
 * malloc on that thread from then on returns NULL (ENOMEM), once; k 0
 * disarms. zero_test_malloc_fail_size(size, k) counts only the calls for
 * exactly @p size bytes (zero_malloc asks for more than its caller: its
 * header, lib/util/alloc.c). zero_test_malloc_failed() says whether it fired. Other threads
 * (progress threads, UCX's) are never failed. Every other call goes to
 * glibc's own allocator (__libc_malloc), so free, calloc and realloc match.
 *
 * Not for sanitizer builds: ASan's malloc comes first there and this one is
 * never called (meson.build does not build the test there).
 */
#include <errno.h>
#include <stddef.h>

void *__libc_malloc(size_t size);

/* The project builds with -fvisibility=hidden: the interposed calls must be visible. */
__attribute__((visibility("default"))) void *malloc(size_t size);
__attribute__((visibility("default"))) void zero_test_malloc_fail_at(long k);
__attribute__((visibility("default"))) void zero_test_malloc_fail_size(size_t size, long k);
__attribute__((visibility("default"))) int zero_test_malloc_failed(void);

/* initial-exec: reading them must not allocate (this is malloc) */
static __thread long countdown __attribute__((tls_model("initial-exec")));
static __thread size_t only_size __attribute__((tls_model("initial-exec")));   /* 0: every size */
static __thread int fired __attribute__((tls_model("initial-exec")));

void zero_test_malloc_fail_size(size_t size, long k)
{
    only_size = size;
    countdown = k;
    fired = 0;
}

void zero_test_malloc_fail_at(long k)
{
    zero_test_malloc_fail_size(0, k);
}

int zero_test_malloc_failed(void)
{
    return fired;
}

void *malloc(size_t size)
{
    if (countdown > 0 && (only_size == 0 || size == only_size) && --countdown == 0) {
        fired = 1;
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(size);
}
