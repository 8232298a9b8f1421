/*
 * Stage-3 parameter shards on NVMe (ZeRO-Infinity's offload_param with
 * device "nvme", for host ranks): the shard of each dtype group, in the
 * training dtype, lives in a file under offload_param.nvme_path, and the
 * engine reaches it only through windows (a range of elements of one group
 * opened, used, closed clean or dirty) and prefetch hints.
 *
 * It is the NVMe store (store_nvme.h) underneath, used as a carrier of raw
 * bytes: each group is one field of fp32-sized words holding the shard's
 * bytes, so the file layout, io_uring / thread-pool I/O, O_DIRECT, the
 * offload_param.buffer_count aligned staging buffers, read-after-write
 * ordering, bounded waits and the asynchronous error model are that store's.
 * A window of 16-bit elements that starts on an odd element takes the word
 * it starts in; the neighbour's bytes in it are read and written back
 * unchanged.
 *
 * offload_param.max_in_cpu (DeepSpeed's meaning: elements kept in CPU memory
 * when parameters are offloaded to NVMe) keeps the first max_in_cpu elements
 * of the rank's shards, group after group, in host memory for the whole run:
 * a fixed split, as DeepSpeed's flat CPU buffer is, not a cache. Windows
 * inside it are that memory; a window across the split reads the file and
 * takes its head from memory (and gives it back when closed dirty). With
 * every shard inside it (DeepSpeed's default 1e9 and a small model) there is
 * no file and no buffer. The buffers together hold at most the part of the
 * largest shard in the file (each at most buffer_size elements): a small
 * model's buffers are not several times its shard.
 *
 * Durability: none is needed, and there is no flush at a step's end. The
 * file is scratch (unlinked at once, gone on exit), checkpoints save the
 * fp32 masters from the optimizer store, not these bytes, and a load writes
 * the shards again from the masters. The NVMe store orders a read after the
 * writes over it, so the next gather sees the step's weights; a failed write
 * is an error at the next window over it (a gather: the engine turns FAILED).
 *
 * Thread safety: one caller at a time.
 */
#ifndef ZERO_OFFLOAD_PARAM_STORE_H
#define ZERO_OFFLOAD_PARAM_STORE_H

#include "offload/store.h"
#include "offload/store_nvme.h"

#include <stddef.h>
#include <stdint.h>

#include <zero/config.h>
#include <zero/status.h>
#include <zero/types.h>

typedef struct zero_param_store zero_param_store_t;

/* What to create: zero it, then fill it. */
typedef struct zero_param_store_options {
    int num_groups;                          /* 1 .. ZERO_DTYPE_COUNT */
    zero_dtype_t dtype[ZERO_DTYPE_COUNT];    /* each group's training dtype */
    size_t length[ZERO_DTYPE_COUNT];         /* each group's shard length (elements) */
    int rank;                                /* names the file and error messages */
    /* offload_param (nvme_path, buffer_count, buffer_size) and the aio block
     * (borrowed for the call) */
    const zero_config_t *config;
    double timeout_s;                        /* an I/O silent this long is an error; 0: 300 s */
} zero_param_store_options_t;

/* An open window: the caller fills group, begin and count; open fills data. */
typedef struct zero_param_window {
    int group;
    size_t begin, count;
    void *data;                  /* [count] elements of the group's dtype, valid until close */
    zero_store_range_t range;    /* the words underneath (the store's) */
    size_t in_cpu;               /* elements at its start kept in memory by max_in_cpu (the store's) */
    int open;
} zero_param_window_t;

/* Creates the memory max_in_cpu keeps, and the file and its buffers for the
 * rest (each buffer offload_param.buffer_size elements, at most what the
 * file part of a shard needs spread over buffer_count). Errors: ZERO_ERR_CONFIG (no
 * nvme_path), ZERO_ERR_INVALID_ARG (bad options), the NVMe store's
 * (ZERO_ERR_IO for a missing directory or a full disk); all logged. */
zero_status_t zero_param_store_create(const zero_param_store_options_t *opts, zero_param_store_t **store_p);
/* NULL allowed. */
void zero_param_store_destroy(zero_param_store_t *store);

/* The longest window (elements) of any group, whatever its start. */
size_t zero_param_store_max_window(const zero_param_store_t *store);

/* Opens @p w (count <= zero_param_store_max_window). Windows open at once
 * must not overlap where one is closed dirty. */
zero_status_t zero_param_store_open(zero_param_store_t *store, zero_param_window_t *w);
/* Closes @p w (no-op when it is not open); @p dirty: its data was written
 * and the file gets it (asynchronously: an error shows at a later call). */
zero_status_t zero_param_store_close(zero_param_store_t *store, zero_param_window_t *w, int dirty);
/* A hint: elements [begin, begin + count) of @p group will be opened soon
 * (clamped to one window). */
zero_status_t zero_param_store_prefetch(zero_param_store_t *store, int group, size_t begin, size_t count);
/* Copies elements [begin, begin + count) of @p group into @p dst, a window
 * at a time, reading the next window while the current one is copied. */
zero_status_t zero_param_store_read(zero_param_store_t *store, int group, size_t begin, size_t count, void *dst);
/* Waits for every write so far; the first error not yet reported. */
zero_status_t zero_param_store_flush(zero_param_store_t *store);

/* Bytes in this process (the staging buffers and the max_in_cpu memory) and in the file. */
void zero_param_store_bytes(const zero_param_store_t *store, zero_store_bytes_t *bytes_p);
/* The NVMe store's counters (bytes moved, hits, waits). */
void zero_param_store_stats(const zero_param_store_t *store, zero_store_nvme_stats_t *stats_p);

#endif /* ZERO_OFFLOAD_PARAM_STORE_H */
