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
/* Frees a buffer from zero_mem_alloc. NULL is allowed. A pointer the registry
 * does not know is an internal error: it is logged and left alone. */
void zero_mem_free(void *ptr);
/* Maps every page of host memory [ptr, ptr + bytes) now (MADV_POPULATE_WRITE,
 * no data written), so that first touches later cost no page faults (about
 * 15 us per 4 KiB page on some machines). Returns 1 when the kernel did it, 0
 * when it cannot (before Linux 5.14: the pages fault in on first use). */
int zero_mem_populate(void *ptr, size_t bytes);
/* The kind a zero_mem_alloc buffer was allocated as, or -1 if unknown. */
int zero_mem_kind_of(const void *ptr);

/* Kind-aware memory operations (cudaMemset/cudaMemcpy for device memory), so
 * layers above need not assume host memory. Return ZERO_OK, or the CUDA error
 * (logged) / ZERO_ERR_UNSUPPORTED for device memory in a build without CUDA. */
zero_status_t zero_mem_set_zero(zero_mem_kind_t kind, void *ptr, size_t bytes);
zero_status_t zero_mem_copy(zero_mem_kind_t dst_kind, void *dst, zero_mem_kind_t src_kind, const void *src,
                            size_t bytes);

/* Logs every live zero_mem_alloc buffer with its tag (tests call it on failure). */
void zero_mem_report_live(void);

#endif /* ZERO_UTIL_ALLOC_H */
