/*
 * Allocation fault shim (tests only): an LD_PRELOAD library whose malloc fails
 * one chosen call of one thread, so a test can make a real allocation of
 * libzero's fail on one rank (zero_malloc calls malloc) without root and
 * without hooks in the library.
 *
 * A test finds these with dlsym(RTLD_DEFAULT, ...) and calls them on the
 * thread whose allocation should fail:
 *   zero_test_malloc_fail_from(fn)   counts only the calls made from the code
 *       (executable segment) of the loaded object holding function @p fn
 *       (libzero.so, or the test executable libzero is linked into), so that
 *       allocations of libc, UCX or cJSON on that thread never shift the
 *       count; NULL: every caller. 1, or 0 (nothing changed) where no loaded
 *       object holds @p fn. Set it before arming; it stays until changed.
 *   zero_test_malloc_fail_at(k)      the @p k-th counted call from then on
 *       returns NULL (ENOMEM), once; k 0 disarms.
 *   zero_test_malloc_fail_size(size, k)  the same, counting only calls for
 *       exactly @p size bytes (zero_malloc asks for more than its caller: its
 *       header, lib/util/alloc.c).
 *   zero_test_thread_fail_at(k)      the @p k-th counted pthread_create from
 *       then on fails with EAGAIN (no thread made), once; k 0 disarms. It
 *       counts apart from malloc's calls, from the same code (fail_from).
 *   zero_test_malloc_failed()        whether either fired.
 * Other threads (progress threads, UCX's) are never failed. Every other call
 * goes to glibc's own allocator (__libc_malloc), so free, calloc and realloc
 * match.
 *
 * Not for sanitizer builds: ASan's malloc comes first there and this one is
 * never called (meson.build does not build the test there).
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

void *__libc_malloc(size_t size);

/* The project builds with -fvisibility=hidden: the interposed calls must be visible. */
__attribute__((visibility("default"))) void *malloc(size_t size);
__attribute__((visibility("default"))) int zero_test_malloc_fail_from(void (*fn)(void));
__attribute__((visibility("default"))) void zero_test_malloc_fail_at(long k);
__attribute__((visibility("default"))) void zero_test_malloc_fail_size(size_t size, long k);
__attribute__((visibility("default"))) int zero_test_malloc_failed(void);
__attribute__((visibility("default"))) void zero_test_thread_fail_at(long k);
__attribute__((visibility("default"))) int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                                                          void *(*start)(void *), void *arg);

/* initial-exec: reading them must not allocate (this is malloc) */
static __thread long countdown __attribute__((tls_model("initial-exec")));
static __thread size_t only_size __attribute__((tls_model("initial-exec")));   /* 0: every size */
static __thread uintptr_t from_lo __attribute__((tls_model("initial-exec")));  /* [lo, hi): 0, 0 every caller */
static __thread uintptr_t from_hi __attribute__((tls_model("initial-exec")));
static __thread int fired __attribute__((tls_model("initial-exec")));
static __thread long thread_countdown __attribute__((tls_model("initial-exec")));

typedef struct {
    uintptr_t addr, lo, hi;
} code_range_t;

/* dl_iterate_phdr callback: the executable segment holding range->addr. */
static int find_code(struct dl_phdr_info *info, size_t size, void *data)
{
    code_range_t *range = data;
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = (uintptr_t)info->dlpi_addr + (uintptr_t)ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && range->addr >= lo && range->addr - lo < ph->p_memsz) {
            range->lo = lo;
            range->hi = lo + (uintptr_t)ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

int zero_test_malloc_fail_from(void (*fn)(void))
{
    code_range_t range = {(uintptr_t)fn, 0, 0};
    if (fn != NULL && dl_iterate_phdr(find_code, &range) == 0)
        return 0;
    from_lo = range.lo;
    from_hi = range.hi;
    return 1;
}

void zero_test_malloc_fail_size(size_t size, long k)
{
    only_size = size;
    countdown = k;
    fired = 0;
}

void zero_test_malloc_fail_at(long k)
{
    zero_test_malloc_fail_size(0, k);
    thread_countdown = 0;
}

void zero_test_thread_fail_at(long k)
{
    thread_countdown = k;
    fired = 0;
}

int zero_test_malloc_failed(void)
{
    return fired;
}

void *malloc(size_t size)
{
    if (countdown > 0 && (only_size == 0 || size == only_size)) {
        uintptr_t caller = (uintptr_t)__builtin_return_address(0);
        if ((from_hi == 0 || (caller >= from_lo && caller < from_hi)) && --countdown == 0) {
            fired = 1;
            errno = ENOMEM;
            return NULL;
        }
    }
    return __libc_malloc(size);
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg)
{
    static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    if (thread_countdown > 0) {
        uintptr_t caller = (uintptr_t)__builtin_return_address(0);
        if ((from_hi == 0 || (caller >= from_lo && caller < from_hi)) && --thread_countdown == 0) {
            fired = 1;
            return EAGAIN;
        }
    }
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "pthread_create");
    return real != NULL ? real(thread, attr, start, arg) : EAGAIN;
}
