/*
 * Memory kinds and allocation accounting.
 *
 * Every buffer libzero allocates is one of three kinds, and the kind decides
 * which communication backend moves it (host and pinned memory: UCX; device
 * memory: NCCL). The library counts the live bytes of each kind, so a test or a
 * trainer can check that nothing leaked and read what libzero holds.
 * The counters are process-wide and updated atomically.
 */
#ifndef ZERO_MEMORY_H
#define ZERO_MEMORY_H

#include <stdint.h>
#include <zero/export.h>

ZERO_BEGIN_DECLS

typedef enum zero_mem_kind {
    ZERO_MEM_HOST   = 0, /**< ordinary pageable host memory */
    ZERO_MEM_PINNED = 1, /**< page-locked host memory (cudaHostAlloc with CUDA, mlock without) */
    ZERO_MEM_DEVICE = 2, /**< CUDA device memory (only with the cuda feature) */
    ZERO_MEM_KIND_COUNT
} zero_mem_kind_t;

typedef struct zero_mem_stats {
    uint64_t live_bytes[ZERO_MEM_KIND_COUNT];  /**< bytes allocated and not yet freed */
    uint64_t live_count[ZERO_MEM_KIND_COUNT];  /**< allocations not yet freed */
    uint64_t peak_bytes[ZERO_MEM_KIND_COUNT];  /**< highest live_bytes seen */
} zero_mem_stats_t;

/** Writes the current counters of all kinds into @p stats_p (must not be NULL). */
ZERO_API void zero_mem_get_stats(zero_mem_stats_t *stats_p);

/** A static name for a kind: "host", "pinned", "device" ("unknown" otherwise). */
ZERO_API const char *zero_mem_kind_string(zero_mem_kind_t kind);

/**
 * Releases a string that a libzero call returned to the caller (error lists,
 * effective-config JSON, client_sd text). NULL is allowed and does nothing.
 */
ZERO_API void zero_string_free(char *string);

ZERO_END_DECLS

#endif /* ZERO_MEMORY_H */
