#define ZERO_LOG_MODULE "alloc"
#include "zero_build_config.h"
#include "util/alloc.h"
#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/cuda_module.h"   /* CUDA calls go through the CUDA module's table */

/* Process-wide counters: accounting must see every allocation wherever it is made. */
static atomic_uint_fast64_t live_bytes[ZERO_MEM_KIND_COUNT];
static atomic_uint_fast64_t live_count[ZERO_MEM_KIND_COUNT];
static atomic_uint_fast64_t peak_bytes[ZERO_MEM_KIND_COUNT];
static atomic_uint_fast64_t alloc_calls;   /* zero_mem_alloc successes, for tests */

static void account_add(zero_mem_kind_t kind, size_t bytes)
{
    uint64_t now = atomic_fetch_add(&live_bytes[kind], bytes) + bytes;
    uint64_t peak = atomic_load(&peak_bytes[kind]);
    atomic_fetch_add(&live_count[kind], 1);
    while (now > peak && !atomic_compare_exchange_weak(&peak_bytes[kind], &peak, now))
        ;
}

static void account_sub(zero_mem_kind_t kind, size_t bytes)
{
    atomic_fetch_sub(&live_bytes[kind], bytes);
    atomic_fetch_sub(&live_count[kind], 1);
}

void zero_mem_get_stats(zero_mem_stats_t *stats_p)
{
    if (stats_p == NULL)
        return;
    for (int k = 0; k < ZERO_MEM_KIND_COUNT; k++) {
        stats_p->live_bytes[k] = atomic_load(&live_bytes[k]);
        stats_p->live_count[k] = atomic_load(&live_count[k]);
        stats_p->peak_bytes[k] = atomic_load(&peak_bytes[k]);
    }
}

const char *zero_mem_kind_string(zero_mem_kind_t kind)
{
    switch (kind) {
    case ZERO_MEM_HOST:   return "host";
    case ZERO_MEM_PINNED: return "pinned";
    case ZERO_MEM_DEVICE: return "device";
    default:              return "unknown";
    }
}

/* ---- small host allocations: a 16-byte header keeps the size ---- */

typedef union small_header {
    size_t size;
    max_align_t align;
} small_header_t;

void *zero_malloc(size_t size)
{
    small_header_t *h;
    if (size > SIZE_MAX - sizeof(*h))
        return NULL;
    h = malloc(sizeof(*h) + size);
    if (h == NULL)
        return NULL;
    h->size = size;
    account_add(ZERO_MEM_HOST, size);
    return h + 1;
}

void *zero_calloc(size_t count, size_t size)
{
    void *p;
    if (size != 0 && count > SIZE_MAX / size)
        return NULL;
    p = zero_malloc(count * size);
    if (p != NULL)
        memset(p, 0, count * size);
    return p;
}

void *zero_realloc(void *ptr, size_t size)
{
    small_header_t *h, *moved;
    size_t old;
    if (ptr == NULL)
        return zero_malloc(size);
    if (size > SIZE_MAX - sizeof(*h))
        return NULL;
    h = (small_header_t *)ptr - 1;
    old = h->size;
    moved = realloc(h, sizeof(*h) + size);
    if (moved == NULL)
        return NULL;
    moved->size = size;
    /* Count the change as one free and one allocation so peak stays honest. */
    account_sub(ZERO_MEM_HOST, old);
    account_add(ZERO_MEM_HOST, size);
    return moved + 1;
}

void zero_free(void *ptr)
{
    small_header_t *h;
    if (ptr == NULL)
        return;
    h = (small_header_t *)ptr - 1;
    account_sub(ZERO_MEM_HOST, h->size);
    free(h);
}

void zero_string_free(char *string)
{
    zero_free(string);
}

char *zero_strdup(const char *string)
{
    return zero_strndup(string, SIZE_MAX);
}

char *zero_strndup(const char *string, size_t max_length)
{
    size_t n;
    char *copy;
    if (string == NULL)
        return NULL;
    n = strnlen(string, max_length);
    copy = zero_malloc(n + 1);
    if (copy != NULL) {
        memcpy(copy, string, n);
        copy[n] = '\0';
    }
    return copy;
}

char *zero_asprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    int n;
    char *s;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return NULL;
    }
    s = zero_malloc((size_t)n + 1);
    if (s != NULL)
        vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

/* ---- large buffers: a registry keyed by address (device memory has no room
 * for a header), which also names leaks by tag ---- */

typedef struct mem_record {
    void *ptr;          /* NULL: empty slot; TOMBSTONE: deleted */
    size_t bytes;
    zero_mem_kind_t kind;
    unsigned char by_cuda;   /* pinned: cudaHostAlloc'd (else posix_memalign + mlock), freed the same way */
    char tag[40];
} mem_record_t;

#define TOMBSTONE ((void *)(uintptr_t)1)

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static mem_record_t *registry;
static size_t registry_capacity;    /* power of two */
static size_t registry_used;        /* live + tombstones */

static size_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static int registry_grow(void)
{
    size_t new_capacity = registry_capacity ? registry_capacity * 2 : 64;
    mem_record_t *old = registry;
    size_t old_capacity = registry_capacity;
    mem_record_t *table = calloc(new_capacity, sizeof(*table));
    if (table == NULL)
        return -1;
    registry = table;
    registry_capacity = new_capacity;
    registry_used = 0;
    for (size_t i = 0; i < old_capacity; i++) {
        if (old[i].ptr != NULL && old[i].ptr != TOMBSTONE) {
            size_t j = ptr_hash(old[i].ptr) & (new_capacity - 1);
            while (table[j].ptr != NULL)
                j = (j + 1) & (new_capacity - 1);
            table[j] = old[i];
            registry_used++;
        }
    }
    free(old);
    return 0;
}

static int registry_insert(void *ptr, size_t bytes, zero_mem_kind_t kind, int by_cuda, const char *tag)
{
    size_t j;
    if ((registry_used + 1) * 4 > registry_capacity * 3 && registry_grow() != 0)
        return -1;
    j = ptr_hash(ptr) & (registry_capacity - 1);
    while (registry[j].ptr != NULL && registry[j].ptr != TOMBSTONE)
        j = (j + 1) & (registry_capacity - 1);
    if (registry[j].ptr == NULL)
        registry_used++;
    registry[j].ptr = ptr;
    registry[j].bytes = bytes;
    registry[j].kind = kind;
    registry[j].by_cuda = (unsigned char)by_cuda;
    snprintf(registry[j].tag, sizeof(registry[j].tag), "%s", tag ? tag : "?");
    return 0;
}

static mem_record_t *registry_find(const void *ptr)
{
    size_t j;
    /* The tombstone value marks deleted slots: it is never a live buffer. */
    if (registry_capacity == 0 || ptr == NULL || ptr == TOMBSTONE)
        return NULL;
    j = ptr_hash(ptr) & (registry_capacity - 1);
    while (registry[j].ptr != NULL) {
        if (registry[j].ptr == ptr)
            return &registry[j];
        j = (j + 1) & (registry_capacity - 1);
    }
    return NULL;
}

#if HAVE_CUDA
/* Pinned memory through CUDA only where a device is usable; on a CPU-only
 * node, or where the CUDA module cannot be loaded, page-locking with mlock
 * gives the same guarantee. */
static int cuda_device_present(void)
{
    int count = 0;
    return zero_cuda_probe() != NULL && ZERO_CUDA(cudaGetDeviceCount)(&count) == cudaSuccess && count > 0;
}
#endif

/*
 * Large host buffers are mapped on their own, aligned to 2 MiB and advised
 * MADV_HUGEPAGE, so that the kernel backs them with transparent huge pages
 * (where it offers them: "enabled" set to always or madvise). On some virtual
 * machines (shadow paging) the first access to every 4 KiB page traps into
 * the hypervisor, about 15 us a page, even after MADV_POPULATE_WRITE mapped it
 * in the guest; a 2 MiB page pays that once for 512 pages. Measured here on a
 * 240 MB buffer: 4 KiB pages 1.6-3.4 s to populate and write, huge pages 0.1 s.
 * The tail after the last whole huge page is mapped with small pages (no
 * memory beyond the request is used). Where huge pages are off, this is an
 * ordinary anonymous mapping.
 */
#define HUGE_PAGE_BYTES ((size_t)2 << 20)

static int host_is_mapped(size_t bytes)
{
    return bytes >= HUGE_PAGE_BYTES;
}

static size_t host_map_length(size_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (bytes + page - 1) & ~(page - 1);
}

static void *host_map(size_t bytes)
{
    size_t len = host_map_length(bytes);
    uintptr_t base, start;
    void *map;

    if (len > SIZE_MAX - HUGE_PAGE_BYTES) {
        errno = ENOMEM;
        return NULL;
    }
    /* over-map by one huge page and trim both ends to a 2 MiB-aligned start */
    map = mmap(NULL, len + HUGE_PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    base = (uintptr_t)map;
    start = (base + HUGE_PAGE_BYTES - 1) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1);
    if (start > base)
        munmap(map, start - base);
    if (base + len + HUGE_PAGE_BYTES > start + len)
        munmap((void *)(start + len), base + len + HUGE_PAGE_BYTES - (start + len));
#ifdef MADV_HUGEPAGE
    (void)madvise((void *)start, len, MADV_HUGEPAGE);   /* a hint: EINVAL without THP changes nothing */
#endif
    return (void *)start;
}

/* Page-locked host memory of @p rounded bytes: cudaHostAlloc where a device is
 * usable, else posix_memalign + mlock; *@p by_cuda says which (raw_free frees
 * it the same way). 0, or -1 with the cause in @p why (nothing logged:
 * zero_mem_alloc logs, zero_mem_alloc_pinned_try lets its caller decide). */
static int pinned_raw(size_t rounded, void **ptr_p, int *by_cuda, char *why, size_t why_size)
{
    void *ptr = NULL;
    int rc;
#if HAVE_CUDA
    if (cuda_device_present()) {
        cudaError_t err = ZERO_CUDA(cudaHostAlloc)(&ptr, rounded, cudaHostAllocPortable);
        if (err != cudaSuccess) {
            (void)ZERO_CUDA(cudaGetLastError)();   /* not sticky: later CUDA calls must not see it */
            snprintf(why, why_size, "cudaHostAlloc: %s", ZERO_CUDA(cudaGetErrorString)(err));
            return -1;
        }
        *ptr_p = ptr;
        *by_cuda = 1;
        return 0;
    }
#endif
    rc = posix_memalign(&ptr, 4096, rounded);
    if (rc != 0) {
        snprintf(why, why_size, "%s", strerror(rc));
        return -1;
    }
    if (mlock(ptr, rounded) != 0) {
        int err = errno;
        free(ptr);
        snprintf(why, why_size, "mlock: %s (raise RLIMIT_MEMLOCK, see ulimit -l, or set pin_memory to false)",
                 strerror(err));
        return -1;
    }
    *ptr_p = ptr;
    *by_cuda = 0;
    return 0;
}

/* @p by_cuda as in pinned_raw (0 for the other kinds). */
static zero_status_t raw_alloc(zero_mem_kind_t kind, size_t bytes, const char *tag, void **ptr_p, int *by_cuda)
{
    size_t rounded = (bytes + ZERO_MEM_ALIGNMENT - 1) & ~(size_t)(ZERO_MEM_ALIGNMENT - 1);
    void *ptr = NULL;
    int rc;

    if (rounded == 0)
        rounded = ZERO_MEM_ALIGNMENT;
    switch (kind) {
    case ZERO_MEM_HOST:
        if (host_is_mapped(bytes)) {
            if ((ptr = host_map(bytes)) == NULL) {
                ZERO_LOG_ERROR("cannot allocate %zu bytes of host memory for %s: mmap: %s", bytes, tag,
                               strerror(errno));
                return ZERO_ERR_NO_MEMORY;
            }
            break;
        }
        rc = posix_memalign(&ptr, ZERO_MEM_ALIGNMENT, rounded);
        if (rc != 0) {
            ZERO_LOG_ERROR("cannot allocate %zu bytes of host memory for %s: %s", bytes, tag, strerror(rc));
            return ZERO_ERR_NO_MEMORY;
        }
        break;
    case ZERO_MEM_PINNED: {
        char why[160];
        if (pinned_raw(rounded, &ptr, by_cuda, why, sizeof(why)) != 0) {
            ZERO_LOG_ERROR("cannot allocate %zu bytes of pinned memory for %s: %s", bytes, tag, why);
            return ZERO_ERR_NO_MEMORY;
        }
        break;
    }
    case ZERO_MEM_DEVICE:
    {
        char what[256];
        snprintf(what, sizeof(what), "allocating %zu bytes of device memory for %s", bytes, tag);
        zero_status_t loaded = zero_cuda_require(what);   /* no module: an error naming it */
        if (loaded != ZERO_OK)
            return loaded;
#if HAVE_CUDA
        cudaError_t err = ZERO_CUDA(cudaMalloc)(&ptr, rounded);
        if (err != cudaSuccess) {
            ZERO_LOG_ERROR("cannot allocate %zu bytes of device memory for %s: cudaMalloc: %s",
                           bytes, tag, ZERO_CUDA(cudaGetErrorString)(err));
            return err == cudaErrorMemoryAllocation ? ZERO_ERR_NO_MEMORY : ZERO_ERR_CUDA;
        }
#endif
        break;
    }
    default:
        ZERO_LOG_ERROR("cannot allocate %s: unknown memory kind %d", tag, (int)kind);
        return ZERO_ERR_INVALID_ARG;
    }
    *ptr_p = ptr;
    return ZERO_OK;
}

static void raw_free(zero_mem_kind_t kind, void *ptr, size_t bytes, int by_cuda)
{
    switch (kind) {
    case ZERO_MEM_HOST:
        if (host_is_mapped(bytes))
            munmap(ptr, host_map_length(bytes));
        else
            free(ptr);
        break;
    case ZERO_MEM_PINNED:
#if HAVE_CUDA
        /* Only what CUDA gave: asking cudaFreeHost for a posix_memalign block
         * failed and left that error for the next cudaGetLastError. */
        if (by_cuda) {
            (void)ZERO_CUDA(cudaFreeHost)(ptr);   /* a device was present, so the module is loaded */
            break;
        }
#else
        (void)by_cuda;
#endif
        munlock(ptr, bytes ? bytes : ZERO_MEM_ALIGNMENT);   /* what pinned_raw locked: 0 bytes locked a block */
        free(ptr);
        break;
    case ZERO_MEM_DEVICE:
#if HAVE_CUDA
        ZERO_CUDA(cudaFree)(ptr);   /* allocated, so the module is loaded */
#endif
        break;
    default:
        break;
    }
}

/* Where an allocation's failure goes: the log (@p why NULL: zero_mem_alloc),
 * or only @p why (zero_mem_alloc_pinned_try, whose caller decides). */
static void alloc_failed(char *why, size_t why_size, const char *fmt, ...) ZERO_PRINTF(3, 4);
static void alloc_failed(char *why, size_t why_size, const char *fmt, ...)
{
    char message[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why != NULL ? why : message, why != NULL ? why_size : sizeof(message), fmt, ap);
    va_end(ap);
    if (why == NULL)
        ZERO_LOG_ERROR("%s", message);
}

/* The one allocation path of both entry points: the size check, the memory,
 * the registry and the accounting. @p why as in alloc_failed; only pinned
 * memory is asked for quietly. */
static zero_status_t mem_alloc(zero_mem_kind_t kind, size_t bytes, const char *tag, void **ptr_p, char *why,
                               size_t why_size)
{
    void *ptr = NULL;
    zero_status_t status;
    int by_cuda = 0;

    if (ptr_p == NULL) {
        alloc_failed(why, why_size, "cannot allocate %s: ptr_p is NULL", tag);
        return ZERO_ERR_INVALID_ARG;
    }
    /* The most any path adds: a mapped host buffer's rounding to a base page
     * (at most a huge page) plus the huge page host_map over-maps by; the
     * others round to ZERO_MEM_ALIGNMENT. Without it a size within a page of
     * SIZE_MAX wrapped host_map_length to 0 and "succeeded". */
    if (bytes > SIZE_MAX - 2 * HUGE_PAGE_BYTES) {
        alloc_failed(why, why_size, "cannot allocate %zu bytes for %s: size overflows", bytes, tag);
        return ZERO_ERR_OVERFLOW;
    }
    if (why != NULL) {
        size_t rounded = (bytes + ZERO_MEM_ALIGNMENT - 1) & ~(size_t)(ZERO_MEM_ALIGNMENT - 1);
        if (pinned_raw(rounded ? rounded : ZERO_MEM_ALIGNMENT, &ptr, &by_cuda, why, why_size) != 0)
            return ZERO_ERR_NO_MEMORY;
    } else if ((status = raw_alloc(kind, bytes, tag, &ptr, &by_cuda)) != ZERO_OK) {
        return status;
    }
    pthread_mutex_lock(&registry_lock);
    if (registry_insert(ptr, bytes, kind, by_cuda, tag) != 0) {
        pthread_mutex_unlock(&registry_lock);
        raw_free(kind, ptr, bytes, by_cuda);
        alloc_failed(why, why_size, "cannot record allocation of %s: out of host memory", tag);
        return ZERO_ERR_NO_MEMORY;
    }
    pthread_mutex_unlock(&registry_lock);
    account_add(kind, bytes);
    atomic_fetch_add(&alloc_calls, 1);
    *ptr_p = ptr;
    return ZERO_OK;
}

zero_status_t zero_mem_alloc(zero_mem_kind_t kind, size_t bytes, const char *tag, void **ptr_p)
{
    return mem_alloc(kind, bytes, tag, ptr_p, NULL, 0);
}

zero_status_t zero_mem_alloc_pinned_try(size_t bytes, const char *tag, void **ptr_p, char *why, size_t why_size)
{
    char local[160];
    if (why == NULL || why_size == 0) {
        why = local;
        why_size = sizeof(local);
    }
    why[0] = '\0';
    return mem_alloc(ZERO_MEM_PINNED, bytes, tag, ptr_p, why, why_size);
}

uint64_t zero_mem_alloc_count(void)
{
    return atomic_load(&alloc_calls);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23   /* Linux 5.14; older kernels answer EINVAL and we touch instead */
#endif

void zero_mem_populate(zero_mem_kind_t kind, void *ptr, size_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t begin, end;
    if (kind == ZERO_MEM_DEVICE || ptr == NULL || bytes == 0 || page == 0)
        return;
    /* Whole pages inside the buffer only: the partial pages at its ends may be
     * shared with other heap blocks, and touching writes. */
    begin = ((uintptr_t)ptr + page - 1) & ~(uintptr_t)(page - 1);
    end = ((uintptr_t)ptr + bytes) & ~(uintptr_t)(page - 1);
    if (end <= begin)
        return;
    if (madvise((void *)begin, end - begin, MADV_POPULATE_WRITE) == 0)
        return;
    /* Writing back the value read keeps the content; volatile so it is not elided. */
    for (uintptr_t a = begin; a < end; a += page) {
        volatile unsigned char *q = (volatile unsigned char *)a;
        *q = *q;
    }
}

void zero_mem_free(void *ptr)
{
    mem_record_t *rec;
    zero_mem_kind_t kind;
    size_t bytes;
    int by_cuda;

    if (ptr == NULL)
        return;
    pthread_mutex_lock(&registry_lock);
    rec = registry_find(ptr);
    if (rec == NULL) {
        pthread_mutex_unlock(&registry_lock);
        ZERO_LOG_ERROR("internal: zero_mem_free(%p) of a buffer it did not allocate", ptr);
        return;
    }
    kind = rec->kind;
    bytes = rec->bytes;
    by_cuda = rec->by_cuda;
    rec->ptr = TOMBSTONE;
    pthread_mutex_unlock(&registry_lock);

    raw_free(kind, ptr, bytes, by_cuda);
    account_sub(kind, bytes);
}

int zero_mem_kind_of(const void *ptr)
{
    mem_record_t *rec;
    int kind = -1;
    pthread_mutex_lock(&registry_lock);
    rec = registry_find(ptr);
    if (rec != NULL)
        kind = (int)rec->kind;
    pthread_mutex_unlock(&registry_lock);
    return kind;
}

void zero_mem_report_live(void)
{
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < registry_capacity; i++) {
        if (registry[i].ptr != NULL && registry[i].ptr != TOMBSTONE)
            ZERO_LOG_ERROR("live %s buffer %p: %zu bytes, tag %s", zero_mem_kind_string(registry[i].kind),
                           registry[i].ptr, registry[i].bytes, registry[i].tag);
    }
    pthread_mutex_unlock(&registry_lock);
}

zero_status_t zero_mem_set_zero(zero_mem_kind_t kind, void *ptr, size_t bytes)
{
    if (bytes == 0)
        return ZERO_OK;
    if (kind != ZERO_MEM_DEVICE) {
        memset(ptr, 0, bytes);
        return ZERO_OK;
    }
    {
        zero_status_t status = zero_cuda_require("zeroing device memory");
        if (status != ZERO_OK)
            return status;
    }
#if HAVE_CUDA
    {
        cudaError_t err = ZERO_CUDA(cudaMemset)(ptr, 0, bytes);
        if (err != cudaSuccess) {
            ZERO_LOG_ERROR("cudaMemset of %zu bytes: %s", bytes, ZERO_CUDA(cudaGetErrorString)(err));
            return ZERO_ERR_CUDA;
        }
    }
#endif
    return ZERO_OK;
}

zero_status_t zero_mem_copy(zero_mem_kind_t dst_kind, void *dst, zero_mem_kind_t src_kind, const void *src,
                            size_t bytes)
{
    if (bytes == 0 || dst == src)
        return ZERO_OK;
    if (dst_kind != ZERO_MEM_DEVICE && src_kind != ZERO_MEM_DEVICE) {
        memmove(dst, src, bytes);
        return ZERO_OK;
    }
    {
        zero_status_t status = zero_cuda_require("copying device memory");
        if (status != ZERO_OK)
            return status;
    }
#if HAVE_CUDA
    {
        cudaError_t err = ZERO_CUDA(cudaMemcpy)(dst, src, bytes, cudaMemcpyDefault);
        if (err != cudaSuccess) {
            ZERO_LOG_ERROR("cudaMemcpy of %zu bytes: %s", bytes, ZERO_CUDA(cudaGetErrorString)(err));
            return ZERO_ERR_CUDA;
        }
    }
#endif
    return ZERO_OK;
}
