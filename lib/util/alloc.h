/*
 * Counted allocation. Everything libzero allocates goes through here so that
 * zero_mem_get_stats() sees it and a test can assert that nothing leaked.
 *
 * - zero_malloc & co: small host bookkeeping (structs, strings). Counted as
 *   ZERO_MEM_HOST. Return NULL on failure; the caller logs what it was for.
 * - zero_mem_alloc/zero_mem_free: large buffers of any kind (host, pinned,
 *   device), 64-byte aligned, recorded with a tag so leaks can be named.
 *   zero_mem_alloc logs its own failure (kind, size, tag, cause).
 */
#ifndef ZERO_UTIL_ALLOC_H
#define ZERO_UTIL_ALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <zero/memory.h>
#include <zero/status.h>
#include <zero/export.h>

#define ZERO_MEM_ALIGNMENT 64

void *zero_malloc(size_t size);
void *zero_calloc(size_t count, size_t size);
void *zero_realloc(void *ptr, size_t size);
void zero_free(void *ptr);
char *zero_strdup(const char *string);
char *zero_strndup(const char *string, size_t max_length);
/* A formatted string in counted memory, or NULL when out of memory. */
char *zero_asprintf(const char *fmt, ...) ZERO_PRINTF(1, 2);

zero_status_t zero_mem_alloc(zero_mem_kind_t kind, size_t bytes, const char *tag, void **ptr_p);
/* Pinned (page-locked) host memory as zero_mem_alloc(ZERO_MEM_PINNED, ...),
 * but quiet: a failure (the locked-memory limit, cudaHostAlloc refusing) is
 * not logged; its cause goes to @p why (@p why_size bytes, may be NULL) and
 * ZERO_ERR_NO_MEMORY is returned, for callers that fall back to pageable
 * memory with a warning of their own. The same status codes (a size that
 * overflows: ZERO_ERR_OVERFLOW) and the same accounting as zero_mem_alloc,
 * through the same path. Freed with zero_mem_free. */
zero_status_t zero_mem_alloc_pinned_try(size_t bytes, const char *tag, void **ptr_p, char *why, size_t why_size);
/* Frees a buffer from zero_mem_alloc. NULL is allowed. A pointer the registry
 * does not know is an internal error: it is logged and left alone. */
void zero_mem_free(void *ptr);
/* The kind a zero_mem_alloc buffer was allocated as, or -1 if unknown. */
int zero_mem_kind_of(const void *ptr);
/* zero_mem_alloc calls made by this process so far (successful ones): a test
 * counts them across a stretch of code to assert that it allocates no buffers. */
uint64_t zero_mem_alloc_count(void);

/* Backs [ptr, ptr + bytes) of host memory with pages now (MADV_POPULATE_WRITE on
 * the whole pages inside it; where the kernel lacks it, one write per page), so
 * that no later access takes a page fault. Cheaper than faulting the same pages
 * one at a time (first touch costs ~15 us a page on some virtual machines), and
 * it moves that cost out of hot paths. Device memory: nothing to do. The content
 * is unchanged. Cannot fail: without the madvise it falls back to touching. */
void zero_mem_populate(zero_mem_kind_t kind, void *ptr, size_t bytes);

/* Kind-aware memory operations (cudaMemset/cudaMemcpy for device memory), so
 * layers above need not assume host memory. Return ZERO_OK, or the CUDA error
 * (logged) / ZERO_ERR_UNSUPPORTED for device memory in a build without CUDA. */
zero_status_t zero_mem_set_zero(zero_mem_kind_t kind, void *ptr, size_t bytes);
zero_status_t zero_mem_copy(zero_mem_kind_t dst_kind, void *dst, zero_mem_kind_t src_kind, const void *src,
                            size_t bytes);

/* Logs every live zero_mem_alloc buffer with its tag (tests call it on failure). */
void zero_mem_report_live(void);

#endif /* ZERO_UTIL_ALLOC_H */
