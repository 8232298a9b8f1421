/*
 * The host-side logic of the staged backend (comm/staged.c), kept apart from
 * CUDA so that every build compiles it and tests/comm/test_staged_plan checks
 * it on machines without a GPU:
 *
 *   - the choice of the device path (NCCL or staged) from every rank's device
 *     identity and the backend bits the user allowed;
 *   - the geometry of a staged collective: how a device collective is cut
 *     into chunks that fit one pinned slot, which byte ranges of the device
 *     buffers each chunk copies in and out, and the host collective it runs
 *     on the slot;
 *   - the pipeline over a bounded ring of slots (util/slot_ring.h, shared
 *     with CPU offload): which copy or collective may start next, so that
 *     the copy of chunk k+1 runs while the host collective of chunk k does,
 *     and no slot is refilled before its last copy back finished.
 */
#ifndef ZERO_COMM_STAGED_PLAN_H
#define ZERO_COMM_STAGED_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include "comm/comm_internal.h"
#include "util/slot_ring.h"

/* ---- which backend carries device memory ---- */

/* A rank's device identity in its rendezvous record: "host/PCI bus id",
 * NUL-padded; all zero when the rank has no usable CUDA device. */
#define ZERO_DEVICE_KEY_BYTES 96

typedef enum zero_device_path {
    ZERO_DEVICE_PATH_NONE = 0,   /* device collectives at world size > 1 are refused (why: the note) */
    ZERO_DEVICE_PATH_NCCL,
    ZERO_DEVICE_PATH_STAGED
} zero_device_path_t;

typedef struct zero_device_choice {
    zero_device_path_t path;
    int shared_a, shared_b;   /* the first two ranks found on one device; -1: none share */
    int missing;              /* the first rank without a device; -1: every rank has one */
    int automatic;            /* staged chosen by the rule (both allowed, a device shared): log it */
    char note[320];           /* why, in words (empty when nothing needs saying) */
} zero_device_choice_t;

/*
 * The rule, the same on every rank (every rank sees the same keys):
 *   - a world of one: NCCL when it is the only one of the two allowed and
 *     the rank has a device (comm_backend "nccl": the engine's collectives
 *     then run over NCCL at world size 1 too), else none (the self backend
 *     copies);
 *   - a rank without a device: none (device collectives fail);
 *   - only one of ZERO_COMM_BACKEND_NCCL and ZERO_COMM_BACKEND_STAGED in
 *     @p backends: that one, except NCCL where two ranks share a device (NCCL
 *     refuses that: none, with a note that names the ranks);
 *   - both (the default): staged when two ranks share a device, else NCCL;
 *   - neither: none.
 * @p keys[r] is rank r's key (ZERO_DEVICE_KEY_BYTES bytes).
 */
void zero_device_path_choose(uint32_t backends, int size, const unsigned char *const *keys,
                             zero_device_choice_t *choice);

/* The CUDA device a rank uses, the one rule for the NCCL and staged backends:
 * @p configured when >= 0 (zero_comm_params_t::cuda_device), else
 * @p local_rank modulo the @p count devices it sees (zero-launch gives every
 * rank of a node that node's CUDA_VISIBLE_DEVICES); 0 when it sees none. */
int zero_device_index(int configured, int local_rank, int count);

/* ---- one staged collective, cut into chunks ---- */

typedef struct zero_staged_geom {
    zero_coll_kind_t kind;   /* allreduce, reduce-scatter, allgather, broadcast, all-to-all */
    zero_dtype_t dtype;
    zero_comm_op_t op;
    size_t count;            /* as in zero_coll_desc_t */
    size_t es;               /* bytes per element */
    int size, rank, root;
    size_t chunk;            /* elements per chunk: of the whole (allreduce, broadcast) or of each rank's block */
    size_t chunks;           /* 0 when count is 0 */
} zero_staged_geom_t;

/* Cuts @p d into chunks whose staged bytes fit @p slot_bytes. Fails
 * (ZERO_ERR_INVALID_ARG, logged) when a slot cannot hold one element of every
 * rank, or for a kind the backend does not carry. */
zero_status_t zero_staged_geom_init(zero_staged_geom_t *g, const zero_coll_desc_t *d, int size, int rank,
                                    size_t slot_bytes);

/* One contiguous copy between a device buffer and a slot. */
typedef struct zero_staged_piece {
    size_t dev_off;    /* bytes from the start of sendbuf (copies in) or recvbuf (copies out) */
    size_t slot_off;   /* bytes from the start of the slot */
    size_t bytes;
} zero_staged_piece_t;

/* The copies of chunk @p k into the slot (device to host) and back out (host
 * to device), at most @p g->size pieces each; returns how many it wrote. A
 * broadcast copies in on the root only. */
int zero_staged_pieces_in(const zero_staged_geom_t *g, size_t k, zero_staged_piece_t *pieces);
int zero_staged_pieces_out(const zero_staged_geom_t *g, size_t k, zero_staged_piece_t *pieces);

/* The host collective of chunk @p k, in place on a slot that starts at
 * @p slot: a descriptor for the host backends (ZERO_MEM_HOST). */
void zero_staged_host_desc(const zero_staged_geom_t *g, size_t k, unsigned char *slot, zero_coll_desc_t *out);

/* ---- the pipeline over the ring of slots ----
 * zero_slot_pipe_t (util/slot_ring.h), shared with CPU offload for device
 * ranks: copy in, the host collective (the pipe's "work" stage), copy out. */

/* ---- the gate: a 32-bit word the order stream waits on ---- */

/* Whether a stream waiting for @p gen passes a gate word holding @p word
 * (the driver's cyclic >=: (int32_t)(word - gen) >= 0, so numbers may wrap). */
int zero_staged_gate_passes(uint32_t word, uint32_t gen);
/* The gate word after releasing every collective up to @p gen: the later of
 * @p word and @p gen, cyclically (a release never takes a gate back). */
uint32_t zero_staged_gate_raise(uint32_t word, uint32_t gen);

#endif /* ZERO_COMM_STAGED_PLAN_H */
