/*
 * CPU offload for device ranks (store_cpu.c): the optimizer state store of
 * offload/store.h for an engine whose weights and gradients are in device
 * memory and whose master weights and optimizer states are outside it: in
 * host memory (offload_optimizer.device "cpu"), an NVMe file ("nvme") or on
 * zero-optd servers ("remote"), always with a device engine
 * (docs/offload.md, docs/optd.md).
 *
 * The step (the step ops, prefer_step): each piece of the owned gradient is
 * copied device -> one slot of a bounded ring of pinned host slots
 * (util/slot_ring.h) in the training dtype, 2 bytes an element for bf16 and
 * fp16, on a copy stream that first waits for an event recorded on the
 * trainer's stream. The store's offload thread (never the caller's) waits
 * for the slot's copy, runs lib/optim's CPU kernel reading the 16-bit
 * gradients from the slot and writing the 16-bit weights back into the same
 * slot (zero_store_run_kernel_g16), and copies the slot host -> device on a
 * second copy stream; the copy of one slot overlaps the step of the next.
 * step_wait returns when every weight is back on the device.
 *
 * The offloaded state lives in an inner store that params->inner_create
 * makes (the factory: the NVMe store's file for "nvme", zero-optd servers
 * for "remote"), else in a host store in ordinary host memory. The step of a
 * slot against it is cpu_inner.h's: the CPU kernel on the acquired range, or
 * where the inner store prefers the step (the remote store) its step op on
 * the slot in place, so only gradients and weights leave the process. The
 * offload thread asks for the next chunk's range first (prefetch: an NVMe
 * read overlaps this step); the inner store's errors fail the step
 * (step_wait) or the next acquire.
 *
 * acquire / release (initial values, checkpoints, Lamb, the write-back) stage
 * the range through device buffers of max_range elements per field, so the
 * engine's device kernels see device memory as with the plain device store;
 * one range at a time.
 *
 * offload_optimizer.ratio < 1: only the buckets marked offloaded have their
 * state in host memory; the others' state is in device memory (packed arrays
 * of the device's host store), and the store tells the engine (steps_at) to
 * step those pieces with its own device kernels on acquired ranges, which
 * are then the device arrays themselves (no staging). A range across both
 * sides is staged.
 *
 * The overlap mode (offload_optimizer.overlap_step): steps submitted
 * undoable while the backward still runs; the offload thread first copies
 * what each such chunk's update overwrites into an undo copy of the host
 * arrays (made at the first undoable step), and step_cancel puts it back and
 * remakes the weights those chunks wrote (refused where the inner store
 * prefers the step: cpu_inner.h). Every step_async records its own
 * event on the trainer's stream, so each call's copies wait for exactly the
 * work queued before it.
 */
#ifndef ZERO_OFFLOAD_STORE_CPU_H
#define ZERO_OFFLOAD_STORE_CPU_H

#include "offload/store.h"

typedef struct zero_store_cpu_params {
    int device;              /* the rank's CUDA device; -1: the calling thread's current device */
    void *stream;            /* the trainer's stream (a cudaStream_t; NULL: the legacy default stream) */
    unsigned slots;          /* transfer slots in the ring: offload_optimizer.buffer_count */
    size_t slot_elems;       /* elements per slot, and the store's range bound */
    int threads;             /* CPU threads of the optimizer step (>= 1) */
    int pin;                 /* 0: pageable slots without trying to pin */
    size_t piece_max;        /* bytes pinned per call at most; 0: 1 GiB */
    size_t pin_limit;        /* bytes pinned in all at most; 0: no limit (ZERO_OFFLOAD_PIN_LIMIT) */
    double timeout_s;        /* step_wait gives up after this long (> 0) */
    /* Optional: makes the store that holds the offloaded state, over @p desc
     * (ZERO_MEM_HOST, each group's offloaded elements, packed; no adopted
     * master), with @p arg = inner_arg; it must take ranges of slot_elems
     * elements. Called once, in zero_store_cpu_create; the CPU offload store
     * owns what it makes. NULL: a host store in host memory. */
    zero_status_t (*inner_create)(const zero_store_desc_t *desc, void *arg, zero_store_t **store_p);
    void *inner_arg;
    /* ratio < 1 (borrowed for the call): every bucket's owned slice and
     * whether it is offloaded (zero_offload_ratio_pick); NULL buckets: all
     * the state in host memory */
    const zero_offload_bucket_t *buckets;
    int num_buckets;
    const unsigned char *offloaded;
} zero_store_cpu_params_t;

/* The defaults: 4 slots of 1 Mi elements, 1 thread, pinned, 300 s. */
void zero_store_cpu_params_default(zero_store_cpu_params_t *params);

/*
 * Creates the store over @p desc (desc->kind must be ZERO_MEM_DEVICE; the
 * arrays go to host memory and adopt_master is ignored, as the master cannot
 * be a device array). Starts the offload thread. Errors:
 * ZERO_ERR_INVALID_ARG (logged) for bad params; ZERO_ERR_UNSUPPORTED
 * (logged) in a build without CUDA or without the CUDA module;
 * ZERO_ERR_CUDA, ZERO_ERR_NO_MEMORY (logged).
 */
zero_status_t zero_store_cpu_create(const zero_store_desc_t *desc, const zero_store_cpu_params_t *params,
                                    zero_store_t **store_p);

/* What the step moved and where its time went, since creation. */
typedef struct zero_store_cpu_stats {
    uint64_t bytes_down, bytes_up;   /* device -> host gradients, host -> device weights */
    uint64_t chunks;                 /* slots stepped */
    double cpu_step_s;               /* in the CPU kernel (offload thread); with an inner store that prefers
                                      * the step, in its step op (zero-optd: transfers and the servers' step) */
    double exposed_s;                /* the caller blocked in step_wait */
    unsigned pinned_slots, slots;
} zero_store_cpu_stats_t;

/* @p store must be a store of zero_store_cpu_create. */
void zero_store_cpu_stats(const zero_store_t *store, zero_store_cpu_stats_t *stats_p);

#endif /* ZERO_OFFLOAD_STORE_CPU_H */
