/*
 * The NVMe store (ZeRO-Infinity's optimizer state on disk): master weights
 * and optimizer states in one file per store under a directory, reached
 * through a bounded set of aligned, populated staging buffers.
 *
 * - acquire reads the range's fields into a free buffer (or finds them
 *   already there: prefetched, or released earlier and not yet reused) and
 *   hands out pointers into it; release dirty writes them back
 *   asynchronously, so the write overlaps the caller's work on the next
 *   range; prefetch issues the read of a range ahead of its acquire.
 * - I/O: io_uring (one I/O thread keeps up to queue_depth requests of at most
 *   block_size bytes in flight); where io_uring is missing at build or run
 *   time (seccomp, an old kernel) a pool of pread/pwrite threads, with a
 *   warning. O_DIRECT where the filesystem allows it (else the page cache,
 *   with a warning).
 * - The file is created (O_EXCL, named by rank, process and a sequence
 *   number, so concurrent ranks and jobs never collide), unlinked at once so
 *   that it disappears with the process however it ends, and its full size is
 *   reserved up front: a disk too small fails create, not a step.
 * - Errors (EIO, a short transfer) are detected on the I/O thread and
 *   reported, naming the file, field and byte offset, by the next call into
 *   the store (the asynchronous error model). Every wait for I/O is bounded
 *   by timeout_s: a stalled device is ZERO_ERR_TIMEOUT naming the file, not a
 *   hang (destroy still waits for requests in flight: their buffers are
 *   freed there). A failed write keeps its
 *   buffer: the data stays in memory, acquires of that range are served from
 *   it, and a later dirty release writes it again, so nothing is lost.
 *
 * Ranges: at most max_range elements (zero_store_max_range()); ranges need
 * not be aligned (partial 4 KiB blocks at a range's ends are merged with the
 * file's current contents on write). A master array the descriptor adopts
 * stays in the caller's memory and is handed out in place.
 * Thread safety: one caller at a time, as every store.
 */
#ifndef ZERO_OFFLOAD_STORE_NVME_H
#define ZERO_OFFLOAD_STORE_NVME_H

#include "offload/store.h"

#include <stdint.h>

typedef enum zero_store_nvme_io {
    ZERO_STORE_NVME_IO_URING = 0,    /* io_uring; the thread pool (with a warning) where unavailable */
    ZERO_STORE_NVME_IO_THREADS = 1   /* pread/pwrite threads (aio.io_backend "posix") */
} zero_store_nvme_io_t;

typedef struct zero_store_nvme_params {
    const char *dir;            /* existing directory for the file (offload_optimizer.nvme_path) */
    int rank;                   /* names the file */
    int buffer_count;           /* staging buffers (offload_optimizer.buffer_count), >= 1 */
    size_t max_range;           /* elements per field a buffer holds: the largest range, >= 1 */
    size_t block_size;          /* bytes per I/O request (aio.block_size; rounded up to 4 KiB) */
    int queue_depth;            /* I/O requests in flight at most (aio.queue_depth), >= 1 */
    int io_threads;             /* threads of the pread/pwrite pool (aio.intra_op_parallelism), >= 1 */
    zero_store_nvme_io_t io;
    int direct;                 /* try O_DIRECT (falls back with a warning) */
    /* An I/O request not done this long (a stalled device) is an error naming
     * the file (ZERO_ERR_TIMEOUT), and the store refuses further use: the
     * request may still land in its buffer. > 0. */
    double timeout_s;
    /* What the file holds, for messages: the config block whose keys tune it
     * ("offload_optimizer"), the key that bounds a range ("sub_group_size")
     * and the contents ("the optimizer state"); the defaults are these. */
    const char *config_block;
    const char *range_key;
    const char *contents;
} zero_store_nvme_params_t;

/* Defaults: DeepSpeed's (buffer_count 4, block_size 1 MiB, queue_depth 8, one
 * I/O thread), max_range 2^20 elements, io_uring, O_DIRECT, timeout 300 s
 * (the communicator's default bound); dir NULL, rank 0; the optimizer
 * state's names for messages. */
void zero_store_nvme_params_default(zero_store_nvme_params_t *params);

/* Creates the file under params->dir and the buffers; desc->kind must be
 * host memory. Errors: ZERO_ERR_INVALID_ARG / ZERO_ERR_UNSUPPORTED (bad
 * descriptor or parameters), ZERO_ERR_IO (the directory, the file, or its
 * reservation: a full disk), ZERO_ERR_NO_MEMORY; all logged. */
zero_status_t zero_store_nvme_create(const zero_store_desc_t *desc, const zero_store_nvme_params_t *params,
                                     zero_store_t **store_p);

/* What an NVMe store moved and how long its caller waited for it. */
typedef struct zero_store_nvme_stats {
    uint64_t bytes_read, bytes_written;   /* to and from the file, since create */
    uint64_t acquires, acquire_hits;      /* acquires; of them, found in a buffer (prefetched or kept) */
    double wait_seconds;                  /* the caller blocked on I/O (acquire, flush, buffer reuse) */
    const char *io;                       /* "io_uring" or "threads" */
    int direct;                           /* the file is open with O_DIRECT */
} zero_store_nvme_stats_t;

/* @p store must be an NVMe store. */
void zero_store_nvme_stats(const zero_store_t *store, zero_store_nvme_stats_t *stats_p);
/* Whether @p store is an NVMe store. */
int zero_store_is_nvme(const zero_store_t *store);

#endif /* ZERO_OFFLOAD_STORE_NVME_H */
