/*
 * A bounded ring of host transfer slots between a device and the host, and
 * the three-stage pipeline that runs over it. Host-side logic only (no CUDA
 * call here), so every build compiles it and the unit tests check it on
 * machines without a GPU. The pipeline has two users; the slot ring itself
 * only CPU offload (the staged backend's slots are shared-memory buffers, see
 * comm/staged.h):
 *
 *   - the staged backend (comm/staged.c): a device collective is cut into
 *     chunks; each chunk is copied device -> slot, reduced by a host
 *     collective on the slot, copied slot -> device;
 *   - CPU offload for device ranks (offload/store_cpu.c): each piece of the
 *     owned gradient is copied device -> slot in the training dtype, the CPU
 *     optimizer step reads it and writes the 16-bit weights into the slot,
 *     and the slot is copied back to the device.
 *
 * The slots (zero_slot_ring_t) are page-locked in pieces of at most
 * ZERO_SLOT_RING_PIECE_MAX bytes (pinning one very large buffer fails in the
 * field and costs milliseconds per call); when pinning fails (a small
 * `ulimit -l`, cudaHostAlloc refusing) the ring logs one warning and the
 * remaining slots are ordinary pageable memory: slower copies, never a crash.
 */
#ifndef ZERO_UTIL_SLOT_RING_H
#define ZERO_UTIL_SLOT_RING_H

#include <stddef.h>
#include <stdint.h>
#include <zero/status.h>

/* ---- the pipeline over the ring ---- */

/*
 * Chunk k uses slot (base + k) % slots. Every stage runs its chunks in order
 * (one copy stream each way; the middle stage, a host collective or a CPU
 * optimizer step, one chunk at a time). The counters are the chunks past
 * each stage; the caller advances them as it issues and completes work.
 */
typedef struct zero_slot_pipe {
    size_t chunks;
    unsigned slots;       /* the ring's size */
    unsigned base;        /* the slot of chunk 0 (the ring rotates on across runs) */
    size_t d2h_issued, d2h_done;
    size_t work_started, work_done;
    size_t h2d_issued, h2d_done;
} zero_slot_pipe_t;

enum zero_slot_action {
    ZERO_SLOT_COPY_IN = 1u << 0,   /* copy chunk d2h_issued into its slot (device to host) */
    ZERO_SLOT_WORK = 1u << 1,      /* start the host work on chunk work_started */
    ZERO_SLOT_COPY_OUT = 1u << 2   /* copy chunk h2d_issued back out of its slot (host to device) */
};

void zero_slot_pipe_init(zero_slot_pipe_t *p, size_t chunks, unsigned slots, unsigned base);
/* The slot of chunk @p k. */
unsigned zero_slot_pipe_slot(const zero_slot_pipe_t *p, size_t k);
/* The actions that may start now (zero_slot_action bits). A slot is refilled
 * only once the copy out of its previous chunk finished; at most one chunk is
 * in the host work at a time. */
unsigned zero_slot_pipe_ready(const zero_slot_pipe_t *p);
/* With nothing ready (zero_slot_pipe_ready 0), the copy in flight whose
 * completion to wait for: ZERO_SLOT_COPY_IN (chunk d2h_done's copy into its
 * slot) when the host work waits for it or no copy back is in flight, else
 * ZERO_SLOT_COPY_OUT (chunk h2d_done's copy back, which frees its slot for
 * the next copy in); 0 when no copy is in flight. A thread that sleeps on
 * that copy (CPU offload's blocking-sync events) never polls, and every
 * copy it waits for was issued, so the wait always ends. */
unsigned zero_slot_pipe_wait_for(const zero_slot_pipe_t *p);
/* Whether every chunk is copied back. */
int zero_slot_pipe_finished(const zero_slot_pipe_t *p);
/* The slot where the next run starts (the ring position after this one). */
unsigned zero_slot_pipe_next_base(const zero_slot_pipe_t *p);

/* ---- the slots ---- */

/* The most bytes pinned in one call. */
#define ZERO_SLOT_RING_PIECE_MAX ((size_t)1 << 30)

typedef struct zero_slot_ring zero_slot_ring_t;

typedef struct zero_slot_ring_params {
    unsigned slots;        /* >= 1 */
    size_t slot_bytes;     /* >= 1, at most piece_max */
    int pin;               /* 0: pageable slots, no attempt to pin (pin_memory false) */
    size_t piece_max;      /* bytes pinned per call at most; 0: ZERO_SLOT_RING_PIECE_MAX */
    size_t pin_limit;      /* bytes pinned in all at most (a piece past it is not pinned); 0: no limit */
    const char *what;      /* names the ring in the warning and the allocation tags ("offload_optimizer slots") */
} zero_slot_ring_params_t;

/*
 * Allocates the slots: whole slots per piece, as many as fit in piece_max
 * bytes. Pinning is tried piece by piece; at the first failure (or the first
 * piece that would take the pinned bytes past pin_limit) one WARN names
 * @p what, the bytes, the cause and the fallback, and every later piece is
 * allocated pageable without another try. Slots are populated (no first-touch
 * faults in the step). Errors: ZERO_ERR_INVALID_ARG (logged) for bad params,
 * ZERO_ERR_NO_MEMORY (logged) when even pageable memory is refused.
 */
zero_status_t zero_slot_ring_create(const zero_slot_ring_params_t *params, zero_slot_ring_t **ring_p);
/* NULL allowed. The caller makes sure no copy still touches a slot. */
void zero_slot_ring_destroy(zero_slot_ring_t *ring);
unsigned zero_slot_ring_slots(const zero_slot_ring_t *ring);
size_t zero_slot_ring_slot_bytes(const zero_slot_ring_t *ring);
/* Slot @p i's memory (slot_bytes bytes, 64-byte aligned). */
void *zero_slot_ring_slot(const zero_slot_ring_t *ring, unsigned i);
/* Whether slot @p i is page-locked. */
int zero_slot_ring_slot_pinned(const zero_slot_ring_t *ring, unsigned i);
/* Slots page-locked, and pieces allocated (tests check the cut). */
unsigned zero_slot_ring_pinned_slots(const zero_slot_ring_t *ring);
unsigned zero_slot_ring_pieces(const zero_slot_ring_t *ring);

#endif /* ZERO_UTIL_SLOT_RING_H */
