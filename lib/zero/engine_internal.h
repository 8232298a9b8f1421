/*
 * Engine internals: the engine's state, and the lower layer every engine file
 * may call: engine_base.c (errors, waits), engine_mem.c (allocation, copies),
 * engine_pool.c (working-memory pools, gradient staging slots among them).
 * The upper files declare what they offer in their own headers, and calls go
 * one way only (docs/architecture.md, "Layers inside lib/zero"):
 *   engine_base <- engine_mem <- engine_pool
 *     <- engine_gather.h <- engine_grad_slice.h <- engine_step.h <- engine_ckpt.c, engine_slices.c, engine.c
 * with the arithmetic behind engine_ops.h, chosen per memory kind.
 */
#ifndef ZERO_ZERO_ENGINE_INTERNAL_H
#define ZERO_ZERO_ENGINE_INTERNAL_H

#include <zero/engine.h>

#include "comm/reduce_split.h"
#include "optim/loss_scaler.h"
#include "optim/lr_schedule.h"
#include "optim/optim.h"
#include "offload/store.h"
#include "offload/param_host.h"
#include "offload/param_store.h"
#include "optim/optim_hparams.h"
#include "zero/engine_ops.h"
#include "partition/layout.h"
#include "util/clock.h"
#include "util/thread_pool.h"

#include <stdarg.h>

/* Every parameter start is aligned to this many elements (and buckets padded to
 * a multiple of it times the world size): 256 bytes of fp32, whole cache lines
 * and vector registers for every kernel. */
#define ZERO_ENGINE_ALIGNMENT 64

/* Gradient buckets whose reduce-scatter may be in flight at once (stages 2-3);
 * DeepSpeed keeps two such buffers too. */
#define ZERO_ENGINE_MAX_REDUCTIONS 2

/* Stage 2's gradient staging slots (each the largest bucket's size): the
 * reductions in flight and the bucket being filled. When all are taken, the
 * oldest reduction is finished to free one. */
#define ZERO_ENGINE_STAGE2_STAGING_SLOTS (ZERO_ENGINE_MAX_REDUCTIONS + 1)

typedef enum engine_state {
    ENGINE_REGISTERING = 0,  /* params may be registered */
    ENGINE_READY,            /* set up; no backward open */
    ENGINE_IN_BACKWARD,      /* between backward_begin and backward_end */
    ENGINE_BACKWARD_DONE,    /* backward ended; zero_step expected */
    ENGINE_FAILED            /* engine_fail: only destroy is allowed */
} engine_state_t;

struct zero_param {
    zero_engine_h engine;
    int index;
    char *name;
    zero_dtype_t dtype;
    int ndim;
    int64_t shape[ZERO_PARAM_MAX_NDIM];
    size_t numel;
    int weight_decay;
    int param_group;     /* index into e->param_groups */
    const float *init_values;
    zero_param_init_fn_t init_fn;
    void *init_user_data;
    void *view_data;
    void *view_grad;
    int has_flat_offset;     /* placed in the adopted buffers of its dtype (zero_engine_adopt_flat) */
    size_t flat_offset;

    /* run time */
    void *data;          /* full weights (stage 3: only while gathered) */
    void *grad;          /* the buffer the backward adds into (NULL outside its window) */
    int ready;           /* grad_ready this micro-batch */
    int digest_valid;    /* late-write guard: grad_digest was taken at grad_ready */
    uint64_t grad_digest;
    int gather_count;    /* stage 3: nested gathers outstanding */
    int persistent;      /* stage 3: stays gathered */
    int grad_held;       /* stages 0-1: its gradient was non-zero after the last non-boundary zero_step */

    /* slices along the first dimension (engine_gather.c, engine_grad_slice.c) */
    size_t row_elems;    /* elements per index of the first dimension (numel / shape[0]) */
    int slices_held;     /* gathered slices the trainer holds now */
    unsigned char *rows_ready;   /* [shape[0]]: gradient rows declared ready (valid for rows_micro) */
    uint64_t rows_micro;         /* micro_steps + 1 of the backward rows_ready belongs to (0: none yet) */
    int64_t rows_ready_count;
    int grad_in_slices;  /* stage 3: this micro-batch's gradient is handed over in slices */
};

/* One entry of the stage-3 gather order: a whole parameter (count 0) or its
 * rows [first, first + count). */
typedef struct engine_trace_entry {
    int param;
    int64_t first, count;
} engine_trace_entry_t;

/* A free extent of a pool: bytes [offset, offset + length). */
typedef struct engine_extent {
    size_t offset, length;
} engine_extent_t;

/* A pool of working memory (engine_pool.c): its capacity is reserved once,
 * its pages are backed the first time an allocation reaches them and kept
 * until the engine is destroyed, so steady-state steps neither allocate nor
 * fault. First fit over sorted free extents. */
typedef struct engine_pool {
    const char *name;
    char *base;               /* the reservation (NULL: capacity 0) */
    size_t capacity;          /* bytes reserved */
    size_t populated;         /* [0, populated) is backed and stays so */
    size_t in_use;            /* bytes handed out now */
    int shared;               /* base came from zero_comm_mem_alloc */
    int blocks_out, max_blocks; /* blocks handed out now, and at most (get refuses beyond) */
    engine_extent_t *free;    /* sorted by offset, never adjacent */
    int num_free, free_cap;   /* free_cap = blocks outstanding at most + 1 */
} engine_pool_t;

/* Where a stage-3 bucket's gathered weights are. */
typedef enum gathered_source {
    GATHERED_NONE = 0,
    GATHERED_POOL,            /* a block of the gather pool */
    GATHERED_PERSISTENT,      /* the bucket's own slot in the persistent region (held from setup) */
    GATHERED_ONE_OFF          /* the pool had no room: allocated for this gather, freed at release */
} gathered_source_t;

/* A bucket's run-time state (gradient staging at stages 2-3, gathers at 3). */
typedef struct bucket_state {
    void *staging;                 /* [length] of dtype: gradients (stages 2-3) */
    int staging_one_off;           /* staging allocated outside the gradient pool */
    int num_params;                /* parameters in the bucket (fixed at setup) */
    int params_ready;              /* parameters marked ready this micro-batch */
    int reduced;                   /* reduction started this micro-batch */
    zero_comm_request_h reduce_req;
    zero_comm_split_t split;       /* fused step: where the boundary's split reduce-scatter left the peers' partial */
    int overlap_submitted;         /* overlap_step: its offloaded pieces went to the store in this backward */
    void *gathered;                /* stage 3: [length] full weights (NULL: not gathered) */
    size_t gathered_bytes;         /* stage 3: its block's size (block_bytes: the weights, and qwZ's wire bytes
                                    * for a quantized gather) */
    gathered_source_t gathered_source;
    int cached;                    /* stage 3: released, kept because the trace uses it again soon */
    void *persistent_slot;         /* stage 3, persistent parameters: their full weights' home */
    zero_comm_request_h gather_req; /* stage 3: allgather in flight (prefetch) */
    int gather_quantized;          /* stage 3: gather_req moves qwZ blocks (decoded at its finish) */
    int hpz_stale;                 /* hpZ: its part of the secondary copy is out of date (see e->hpz_stale) */
    int hpz_refreshing;            /* hpZ: gather_req is over all ranks and refreshes that part at its finish */
} bucket_state_t;

/* A gathered slice of a parameter (engine_gather.c): a slot of e->slices. */
typedef struct engine_slice {
    int param;                     /* -1: a free slot */
    int64_t first, count;
    void *data;                    /* the slice's full weights */
    size_t bytes;
    gathered_source_t source;      /* GATHERED_NONE: a window on weights held anyway (stages 0-2, persistent) */
    int held;                      /* the trainer's nested gathers outstanding (0: prefetched or kept) */
    int cached;                    /* released, kept because the trace gathers it again soon */
    zero_comm_request_h *reqs;     /* [world]: a broadcast per owning rank in flight */
    int num_reqs;
} engine_slice_t;

/* A slice of a parameter's gradient at stage 3 (engine_grad_slice.c): a slot of e->grad_slices. */
typedef struct engine_grad_slice {
    int param;                     /* -1: a free slot */
    int64_t first, count;
    void *buf;                     /* [count * row_elems] of the dtype, from the gradient pool */
    size_t bytes;
    int one_off;                   /* buf allocated outside the pool */
    int reducing;                  /* handed over: the allreduce is in flight */
    uint64_t opened, started;      /* order of opening and of handing over (every rank the same) */
    zero_comm_request_h req;
} engine_grad_slice_t;

/* Blocks the stage-3 pools may hand out beyond one per bucket, for slices
 * (each held, prefetched, kept or reducing slice is a block). Past that a
 * prefetch stops and a gather or gradient slice gets a one-off buffer. */
#define ZERO_ENGINE_SLICE_BLOCKS 4096

/* One dtype group: weights, gradients and optimizer state of its owned range. */
typedef struct group_state {
    zero_dtype_t dtype;
    int adopted;            /* params_flat and grads_flat are the trainer's buffers (never freed here) */
    size_t length;          /* flat elements with padding */
    size_t own_length;      /* elements this rank updates: length at stage 0, else length / W */
    void *params_flat;      /* stages 0-2: [length] of dtype */
    void *params_shard;     /* stage 3: [own_length] of dtype (NULL with e->param_store: the shard is in its file) */
    void *params_secondary; /* stage 3 with hpZ: [length / hpz] of dtype, this group's part of every bucket */
    float *scratch;         /* step: fp32 gradients of one piece (see engine_step.c) */
    size_t scratch_length;
    /* The fused step (engine_step.c): the split reduce-scatter's partials of
     * the owned range, where the ring or the direct path at W > 2 leaves them
     * ([own_length] of peer_dtype). */
    void *peer_grads;
    int peer_grads_shared;  /* from engine_reserve: how to give it back */
    zero_dtype_t peer_dtype;
    void *grads_flat;       /* stages 0-1: [length] of dtype */
    void *grad_shard;       /* stages 2-3: [own_length] of dtype, the owned averaged gradients */
    /* The fp32 master weights and optimizer states of the owned range are in
     * the engine's store (e->store, group index = this group's): reached only
     * through acquire and release. */
    /* Runs of the owned range that share one parameter group and one
     * weight-decay setting: the step splits its pieces at their bounds, so a
     * bucket may mix groups and every element still gets its own group's
     * hyper-parameters. */
    size_t num_runs;
    size_t *run_start;      /* [num_runs + 1]: run r is [run_start[r], run_start[r + 1]) */
    int *run_decay;         /* [num_runs] */
    int *run_param_group;   /* [num_runs] */
    /* Lamb: the owned segments of each parameter. */
    size_t num_segments;
    zero_layout_segment_t *segments;
} group_state_t;

/* A collective on the engine's memory started ordered on its stream
 * (device kinds): its completion event, until engine_wait makes the stream
 * wait for it. */
typedef struct engine_fence {
    zero_comm_request_h req;
    void *done_event;
} engine_fence_t;

typedef struct engine_timers {
    double backward_wait, reduce, step, gather;
    double offload_exposed;   /* zero_step() waiting for a store's step ops (CPU offload, zero-optd) */
} engine_timers_t;

struct zero_engine {
    engine_state_t state;
    zero_config_t *config;
    zero_comm_h comm;
    int owns_comm;
    int rank, world;
    int stage;
    zero_mem_kind_t kind;            /* where weights, gradients and optimizer state live */
    void *cuda_stream;               /* device kinds: the trainer's stream (NULL: legacy default) */
    int cuda_device;                 /* device kinds: the trainer's choice, -1: from LOCAL_RANK */
    int manual_lr_schedule;          /* the trainer steps the schedule (zero_engine_lr_schedule_step) */
    /* Late-write guard (zero_optimization.check_grad_writes, or a debug build):
     * gradients are digested at zero_grad_ready and checked before their bucket
     * is reduced and at zero_backward_end. A bucket completed by a
     * zero_grad_ready starts reducing at the engine's next call rather than at
     * once (pending_reduce), so a write right after the ready call, before the
     * trainer calls the engine again, is caught too. */
    int check_grad_writes;
    int pending_reduce;              /* that bucket, or -1 */
    /* ZeRO++ qwZ (zero_quantized_weights, stage 3 only): gathers travel as
     * int8 blocks (engine_gather.c), the wire bytes behind the gathered weights */
    int quantized_weights;
    /* ZeRO++ qgZ (zero_quantized_gradients, stage 3 only): reductions travel
     * as int8 blocks through an all-to-all (engine_step.c), the wire bytes
     * behind the gradient staging */
    int quantized_gradients;
    /* The reduction fused into the step (engine_step.c, docs/engine.md): at
     * the boundary, each bucket's reduce-scatter leaves the peers' partial
     * unreduced and the optimizer adds it to the own gradients in registers.
     * Chosen at setup (engine_scratch_alloc); ZERO_FUSED_STEP=0 turns it off. */
    int fused_step;
    /* offload_optimizer.overlap_step (engine_step.c): at the boundary
     * micro-batch each bucket's offloaded pieces go to the store's step ops,
     * undoable, as soon as its reduction is finished, while the backward
     * goes on; zero_step steps the rest, or undoes them all on overflow.
     * Chosen at setup (engine_scratch_alloc). overlap_started: some went in
     * this backward. */
    int overlap_step, overlap_started;
    size_t fused_reserved;           /* bytes of the partials' shards (address space; in pools_bound) */
    /* ZeRO++ hpZ (zero_hpz_partition_size, stage 3 only): with hpz > 1 every
     * group of hpz consecutive ranks keeps a secondary copy of the 16-bit
     * weights (group_state_t::params_secondary), each bucket split hpz ways
     * over the group's communicator hpz_comm (split from comm); the
     * non-persistent gathers read it there. hpz_stale: the shards changed
     * since it was refreshed (the step, a load, set-up), so every bucket's
     * part is out of date (moved to bucket_state_t::hpz_stale at the next
     * gather): a bucket's first gather after that is over all ranks from the
     * shards and keeps the group's part (engine_gather.c). */
    int hpz;
    zero_comm_h hpz_comm;
    int hpz_rank;
    int hpz_stale;
    void *hpz_scratch;               /* the slices' refresh: two buckets (or their qwZ blocks) */
    /* qgZ across nodes (nodes of equal size > 1, ranks numbered node by
     * node): the two levels' communicators, this node's ranks (hpz_comm when
     * it is the node) and the same local rank on every node; NULL: flat qgZ. */
    zero_comm_h qgz_node, qgz_cross;
    size_t hpz_scratch_bytes;        /* of each */
    int checkpoint_keep_last;        /* > 0: saves keep only the newest N tags */
    zero_dtype_t precision;
    uint64_t seed;
    char last_error[512];

    zero_thread_pool_t *pool;
    /* The arithmetic on the engine's buffers, chosen by kind (engine_ops.h),
     * its context, and the step's result record of ops memory. */
    const engine_ops_t *ops;
    void *ops_ctx;
    double *result;
    size_t result_slots;
    /* Device kinds: collectives started and not yet waited for (their
     * completion events), and those the stream already waits for, whose
     * requests are freed at the next point where the host waits anyway
     * (engine_settle: the step's result read, checkpoints, destroy). */
    engine_fence_t *fences;
    int num_fences, cap_fences;
    zero_comm_request_h *settling;
    int num_settling, cap_settling;
    zero_optim_hparams_t hparams;    /* the config's optimizer, mapped once (lib/optim): group 0's */
    zero_optim_group_t *param_groups; /* [num_param_groups]: each group's name, rate and mapped set (lib/optim) */
    int num_param_groups;
    zero_store_t *store;             /* master weights and optimizer states (lib/offload/store.h) */
    /* Stage 3 with offload_param.device "nvme" (host ranks): the weight
     * shards live in a file (lib/offload/param_store.h) and are reached
     * through engine_shard_* (engine_gather.h); NULL: they are params_shard. */
    zero_param_store_t *param_store;
    /* Stage 3 with offload_param.device "cpu" on a device rank: the weight
     * shards live in host memory (lib/offload/param_host.h), uploaded at each
     * gather; a shard window of the step is param_stage (device memory,
     * param_stage_elems elements of the widest dtype, counted in buffers),
     * downloaded into the host shard when closed dirty. NULL otherwise. */
    zero_param_host_t *param_host;
    void *param_stage;
    size_t param_stage_elems, param_stage_bytes;
    zero_lr_schedule_t schedule;
    zero_loss_scaler_t scaler;

    /* zero_engine_adopt_flat: the trainer's buffers, by dtype (weights NULL:
     * that dtype is not adopted); a model is adopted whole or not at all */
    zero_flat_buffers_t adopted[ZERO_DTYPE_COUNT];
    int num_adopted;

    /* parameters */
    int num_params, cap_params;
    struct zero_param **params;

    /* partition and buffers (after setup) */
    zero_layout_t *layout;          /* world = own_world (1 at stage 0) */
    int own_world, own_rank;
    group_state_t groups[ZERO_DTYPE_COUNT];
    bucket_state_t *buckets;
    /* stages 2-3: buckets whose reduce-scatter started this micro-batch, in start
     * order (they complete in that order): [reduce_head, reduce_tail) still running */
    int *reduce_order;
    int reduce_head, reduce_tail;
    uint64_t live_elements;          /* stage 3: elements gathered or being gathered */

    /* counters */
    uint64_t micro_steps, global_steps, skipped_steps;
    int window_micro;                /* micro-batches into the current accumulation window */
    double last_grad_norm;
    int gas;                         /* gradient accumulation steps */

    /* stage 3 gather trace (order of the first window) and prefetch */
    engine_trace_entry_t *trace;
    size_t trace_len, trace_cap, trace_pos;
    int trace_done;

    /* slices: gathered ones (engine_gather.c) and stage 3's gradient slices
     * (engine_grad_slice.c), in slots reused across steps */
    engine_slice_t *slices;
    int num_slices;
    engine_grad_slice_t *grad_slices;
    int num_grad_slices;
    uint64_t grad_slice_seq;

    /* stage 2: the bytes of one gradient staging slot (the largest bucket) */
    size_t staging_bytes;

    /* the pools stage 3's gathers and stages 2-3's gradient staging come from,
     * and stage 3's region holding the persistent parameters' full weights */
    engine_pool_t gather_pool, grad_pool;
    void *persistent_region;
    int persistent_region_shared;
    int pool_overflow_warned;        /* a one-off buffer was needed (logged once) */
    int grad_zeroing_warned;         /* stages 0-1: the trainer zeroed accumulated gradients (logged once) */

    /* accounting */
    zero_engine_memory_t mem;
    engine_timers_t timers;
};

/* Records the engine's last error (and logs it once at ERROR): for errors the
 * engine itself detects. */
void engine_error(zero_engine_h e, zero_status_t status, const char *fmt, ...) ZERO_PRINTF(3, 4);
/* For errors a callee detected and logged: the engine's last error becomes that
 * callee's own message, the first ERROR this thread logged since @p mark (from
 * zero_log_error_mark() before the call). Only when the thread logged none
 * (the error came from another thread, e.g. the communicator's progress
 * thread) is @p fmt used instead; it is not logged again. */
void engine_keep_error(zero_engine_h e, uint64_t mark, const char *fmt, ...) ZERO_PRINTF(3, 4);

/* Why the engine fails (engine_fail). */
typedef enum engine_fail_cause {
    /* This rank's own error, which its peers cannot see: its CUDA work (a
     * kernel launch, an event, reading the step's results), its state store
     * (an I/O error), memory it could not get, a collective it could not
     * start. They may be waiting, or about to wait, for this rank in a
     * collective. */
    ENGINE_FAIL_LOCAL,
    /* A cause every rank meets: a collective that failed (the communicator
     * already failed and told every rank), or a decision all ranks take from
     * the same summed values (fp16 overflow at the minimum loss scale). */
    ENGINE_FAIL_SHARED
} engine_fail_cause_t;

/* The one way the engine fails: records the last error as engine_keep_error
 * does (a message logged since @p mark, e.g. by engine_error, wins), sets
 * ENGINE_FAILED (only destroy is allowed after), and for a local cause fails
 * the communicator too (comm/comm_fail.h), so that every rank fails at once,
 * naming this rank and @p status, instead of waiting for it until
 * ZERO_COMM_TIMEOUT. To keep the message recorded already: "%s",
 * e->last_error. Returns @p status. */
zero_status_t engine_fail(zero_engine_h e, engine_fail_cause_t cause, zero_status_t status, uint64_t mark,
                          const char *fmt, ...) ZERO_PRINTF(5, 6);

/* Buffer allocation with the engine's accounting (category: a field of zero_engine_memory_t). */
zero_status_t engine_alloc(zero_engine_h e, uint64_t *category, size_t bytes, const char *tag, void **ptr_p);
void engine_free(zero_engine_h e, uint64_t *category, size_t bytes, void *ptr);
/* The same for buffers collectives use: from zero_comm_mem_alloc in a multi-rank host job. */
zero_status_t engine_alloc_shared(zero_engine_h e, uint64_t *category, size_t bytes, const char *tag, void **ptr_p);
void engine_free_shared(zero_engine_h e, uint64_t *category, size_t bytes, void *ptr);
/* Address space for a pool: @p bytes, not backed yet and not counted (shared
 * memory in a multi-rank host job; *shared_p says which, for unreserve). */
zero_status_t engine_reserve(zero_engine_h e, size_t bytes, const char *tag, int *shared_p, void **ptr_p);
void engine_unreserve(zero_engine_h e, int shared, void *ptr);
/* Counts @p bytes more working buffers in use (buffers, buffers_peak). */
void engine_buffers_add(zero_engine_h e, size_t bytes);

/* Memory operations on the engine's buffers (of e->kind), through the
 * operations table: zero and copy are queued in order with the engine's
 * other work; upload (host to engine, initial values and loaded
 * checkpoints) and download (engine to host, checkpoints) are complete when
 * they return. Errors are logged by the table; zero and copy report theirs
 * at the next wait. */
void engine_zero(zero_engine_h e, void *ptr, size_t bytes);
void engine_copy(zero_engine_h e, void *dst, const void *src, size_t bytes);
zero_status_t engine_upload(zero_engine_h e, void *dst, const void *host_src, size_t bytes);
zero_status_t engine_download(zero_engine_h e, void *host_dst, const void *src, size_t bytes);

/* Waits for a request, frees it, and turns a failure into the engine's FAILED
 * state. For a collective started by engine_*_start on a kind with ordering
 * (device memory) the wait is the engine's stream's, not the host's: the
 * stream waits for the collective, the request is freed by engine_settle,
 * and a failure shows there (or at the communicator's next call). */
zero_status_t engine_wait(zero_engine_h e, zero_comm_request_h *req, const char *what);
/* The collectives on the engine's buffers (of e->kind): zero_comm_*_start,
 * ordered after the work queued on the engine's stream where the kind has one. */
zero_status_t engine_allreduce_start(zero_engine_h e, void *buf, size_t count, zero_dtype_t dtype, zero_comm_op_t op,
                                     zero_comm_request_h *req_p);
zero_status_t engine_reduce_scatter_start(zero_engine_h e, const void *sendbuf, void *recvbuf, size_t recvcount,
                                          zero_dtype_t dtype, zero_comm_op_t op, zero_comm_request_h *req_p);
zero_status_t engine_allgather_start(zero_engine_h e, const void *sendbuf, void *recvbuf, size_t sendcount,
                                     zero_dtype_t dtype, zero_comm_request_h *req_p);
/* The same, ordered after @p after (a device event recorded after the
 * engine's stream as it stands now, e.g. an upload's on another stream)
 * instead of the engine's stream; NULL: engine_allgather_start. */
zero_status_t engine_allgather_start_after(zero_engine_h e, const void *sendbuf, void *recvbuf, size_t sendcount,
                                           zero_dtype_t dtype, void *after, zero_comm_request_h *req_p);
/* engine_allgather_start over @p comm, a communicator split from the engine's
 * (hpZ's group): the same ordering on the engine's stream. */
zero_status_t engine_allgather_start_on(zero_engine_h e, zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                        size_t sendcount, zero_dtype_t dtype, zero_comm_request_h *req_p);
/* The all-to-all (comm/alltoall.h) of @p count elements a block over @p comm
 * (the engine's, or qgZ's node and cross-node splits of it), ordered as the
 * collectives above: device qgZ moves its encoded blocks with it. */
zero_status_t engine_alltoall_start_on(zero_engine_h e, zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                       size_t count, zero_dtype_t dtype, zero_comm_request_h *req_p);
/* Frees the requests whose collectives the stream waited for (engine_wait);
 * call where the host has waited for the stream, so they are complete. The
 * first failure turns the engine FAILED. */
zero_status_t engine_settle(zero_engine_h e);
/* The host waits for all of the engine's device work (set-up, checkpoints),
 * then settles. */
zero_status_t engine_sync(zero_engine_h e);

/* engine_pool.c: create (reserve @p capacity bytes for at most @p max_blocks
 * blocks out at once), destroy, get (NULL when no free extent is large
 * enough: the caller decides), put, and whether a pointer is the pool's. */
zero_status_t engine_pool_create(zero_engine_h e, engine_pool_t *pool, const char *name, size_t capacity,
                                 int max_blocks);
void engine_pool_destroy(zero_engine_h e, engine_pool_t *pool);
void *engine_pool_get(zero_engine_h e, engine_pool_t *pool, size_t bytes);
void engine_pool_put(zero_engine_h e, engine_pool_t *pool, void *ptr, size_t bytes);
int engine_pool_owns(const engine_pool_t *pool, const void *ptr);
/* Backs the pool's whole capacity now (setup), so that no step faults pages in. */
void engine_pool_populate(zero_engine_h e, engine_pool_t *pool);


static inline size_t dtype_bytes(zero_dtype_t d) { return zero_dtype_size(d); }

/* Whether gradients are kept whole (the engine's flat buffer, or the
 * trainer's adopted one) and reduced once per accumulation window at the
 * boundary: stages 0-1, and every stage with adopted buffers, whose trainer
 * holds the whole gradient anyway. Otherwise (stages 2-3) each micro-batch's
 * buckets are reduced into the owned gradient shard during the backward. */
static inline int engine_grads_whole(zero_engine_h e) { return e->stage < 2 || e->num_adopted > 0; }

#endif /* ZERO_ZERO_ENGINE_INTERNAL_H */
