/*
 * The host side of CPU offload for device ranks (store_cpu.c): the store that
 * holds the offloaded optimizer state, called the inner store, and the step
 * of one transfer slot against it. No CUDA here, so every build compiles it
 * and the CPU tests run what CPU offload's offload thread runs on each slot
 * (tests/offload/test_cpu_inner.c, against a live zero-optd).
 *
 * The inner store is whatever the factory (zero_store_create_for) made for
 * offload_optimizer.device: a host store in host memory ("cpu"), the NVMe
 * store's file ("nvme") or zero-optd servers ("remote": the remote store).
 * How a slot is stepped depends only on what the inner store says of itself:
 *
 *   - a store that does not prefer the step (host, NVMe): the range is
 *     acquired, lib/optim's CPU kernel reads the gradients from the slot and
 *     writes the weights back into it (zero_store_run_kernel_g16 in place),
 *     and the range is released dirty;
 *   - a store that prefers the step (zero_store_prefers_step: the state is
 *     outside this process, the remote store): the slot is handed to its step
 *     op in place, as both the gradient and the weights (the remote store
 *     sends each message's gradient from the slot, or through the server's
 *     region copies it out at submit, and writes the weights of
 *     a message only when its reply comes, which the server sends only once
 *     it has that gradient whole; gradient and weights have one element
 *     size here, so a reply covers only its own message's gradient, already
 *     sent), and waited for. Only gradients and weights travel.
 *
 * Threads: the offload thread steps slots while the trainer's thread may
 * acquire and release ranges (initial values, checkpoints, Lamb, a ratio < 1
 * store's other side). Every call here holds the inner store's lock for its
 * whole use of the store, so the inner store sees one caller at a time, as
 * store.h asks; the remote store's UCX workers are created serialized
 * (optd_ucx.h) for exactly this: two threads, one at a time. A slot's step
 * on the remote store keeps the lock across its waits for the servers (only
 * this thread progresses its workers, and nothing it waits for needs the
 * lock), so an acquire behind it waits at most the store's bound.
 */
#ifndef ZERO_OFFLOAD_CPU_INNER_H
#define ZERO_OFFLOAD_CPU_INNER_H

#include "offload/store.h"

#include <pthread.h>

typedef struct zero_cpu_inner {
    zero_store_t *store;             /* the offloaded state (owned) */
    zero_store_t *undo;              /* undoable steps: what they overwrote (a host store of store's layout); lazily */
    const zero_optim_ctx_t *optim;   /* the CPU kernels (borrowed) */
    pthread_mutex_t lock;            /* held for each call's whole use of store and undo */
} zero_cpu_inner_t;

/* Takes @p store (owned from here, also on failure: then destroyed) with the
 * kernels of @p optim (borrowed; must outlive @p in). Errors:
 * ZERO_ERR_INVALID_ARG (logged) for a store of device memory. */
zero_status_t zero_cpu_inner_init(zero_cpu_inner_t *in, zero_store_t *store, const zero_optim_ctx_t *optim);
/* Destroys the store and the undo copy. An @p in whose init failed, or a zeroed one, is fine. */
void zero_cpu_inner_fini(zero_cpu_inner_t *in);

/* zero_store_acquire / release / prefetch / flush of the inner store, under its lock. */
zero_status_t zero_cpu_inner_acquire(zero_cpu_inner_t *in, zero_store_range_t *range);
zero_status_t zero_cpu_inner_release(zero_cpu_inner_t *in, zero_store_range_t *range, int dirty);
zero_status_t zero_cpu_inner_prefetch(zero_cpu_inner_t *in, int group, size_t begin, size_t count);
zero_status_t zero_cpu_inner_flush(zero_cpu_inner_t *in);

/* Makes the undo copy, before the first undoable step. Errors:
 * ZERO_ERR_UNSUPPORTED (logged) where the inner store prefers the step (its
 * state is not in this process, so what a step overwrites cannot be kept
 * here without reading it back first); ZERO_ERR_NO_MEMORY. */
zero_status_t zero_cpu_inner_prepare_undo(zero_cpu_inner_t *in);

/*
 * The step @p st (a chunk of at most one range of the inner store: group,
 * begin and count in its offsets; grad_dtype == weight_dtype) on @p slot,
 * which holds st->count gradients of grad_dtype and gets the new weights in
 * weight_dtype (fp32: a copy of the master) in their place. st->grad and
 * st->weights are not read (they are the device's). Undoable steps first
 * copy what they overwrite into the undo copy (zero_cpu_inner_prepare_undo
 * made it). Adds the seconds spent to *busy_s (may be NULL).
 * Errors: the inner store's or the kernel's; a failed step leaves the slot
 * undefined.
 */
zero_status_t zero_cpu_inner_step(zero_cpu_inner_t *in, const zero_store_async_step_t *st, void *slot,
                                  double *busy_s);

/* Undoes the undoable step @p st (as given to zero_cpu_inner_step): master
 * and states from the undo copy, and the weights it wrote remade from the
 * restored master into @p slot (16-bit weights are the master rounded as the
 * kernels round it). Errors: ZERO_ERR_STATE (logged) for a step not
 * submitted undoable; the inner store's. */
zero_status_t zero_cpu_inner_undo(zero_cpu_inner_t *in, const zero_store_async_step_t *st, void *slot);

#endif /* ZERO_OFFLOAD_CPU_INNER_H */
