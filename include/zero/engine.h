/*
 * The ZeRO engine: sharded data-parallel training behind a handful of calls.
 *
 * A trainer creates an engine from a DeepSpeed-style config and the launcher's
 * environment, registers its parameters in forward order, sets up, and then per
 * micro-batch runs its own forward and backward around the engine's calls:
 *
 *     zero_engine_create(&params, &eng);
 *     zero_param_register(eng, &desc, &fc1);            // every tensor, forward order
 *     zero_engine_setup(eng);                           // partition, allocate, initialise
 *     for (;;) {
 *         zero_gather(eng, layer, n);                   // stage 3: full weights of a layer
 *         ... forward reads zero_param_data(p) ...
 *         zero_release(eng, layer, n);
 *         float seed;
 *         zero_backward_begin(eng, &seed);              // dL/dlogits is multiplied by seed
 *         ... backward adds into zero_param_grad(p), then zero_grad_ready(eng, p) ...
 *         zero_backward_end(eng);
 *         zero_step(eng, &info);                        // at the accumulation boundary: update
 *     }
 *     zero_engine_destroy(eng);
 *
 * Stages (config zero_optimization.stage), as DeepSpeed's ZeRO:
 *   0  plain data parallel: gradients are all-reduced, every rank keeps and
 *      updates the whole model state;
 *   1  optimizer state (fp32 master weights and moments) is sharded: gradients
 *      are reduce-scattered at the boundary, each rank updates its shard, the
 *      updated weights are all-gathered;
 *   2  as 1, and gradients are sharded too: a bucket of gradients is
 *      reduce-scattered as soon as all its parameters are ready, and only the
 *      owned slice is kept;
 *   3  as 2, and the weights themselves are sharded: the full weights of a
 *      parameter exist only between zero_gather() and zero_release().
 *
 * Partitioning: parameters are laid out in registration order in one flat space
 * per dtype; the space is cut into buckets (about reduce_bucket_size elements of
 * whole parameters at stages 0-2, one parameter per bucket at stage 3) padded to
 * a multiple of world size x 64 elements, and each rank owns the same 1/W slice
 * of every bucket.
 *
 * Memory kind: an engine keeps its weights, gradients and optimizer state in
 * one kind of memory (zero_engine_params_t::mem_kind), which decides the
 * communication backend: host memory goes over UCX, device memory over NCCL
 * (a world of one copies on the device). Device memory needs a build with
 * the cuda feature, libzero's CUDA module (libzero-cuda.so) and a visible
 * CUDA device; otherwise zero_engine_create() fails with ZERO_ERR_UNSUPPORTED
 * and says which is missing. With ZERO_MEM_DEVICE, zero_param_data() and
 * zero_param_grad() return device pointers, and views (view_data, view_grad)
 * must be device memory of the engine's device.
 *
 * Ordering contract (ZERO_MEM_DEVICE). Every engine call that consumes or
 * produces device data is ordered on the trainer's CUDA stream
 * (zero_engine_params_t::cuda_stream) with CUDA events, not by the host
 * waiting:
 *   - zero_grad_ready() records an event on the trainer's stream, and the
 *     bucket's reduce-scatter waits for it on the communication stream, so the
 *     gradient kernels queued before the call are complete before it is read
 *     (recorded by the call that completes the bucket; at stages 0-1, whose
 *     reduction is at the boundary, by zero_step());
 *   - zero_gather() makes the trainer's stream wait for the gather (it returns
 *     at once); kernels queued after it see the full weights;
 *   - zero_release() records the event after which the buffer may be reused:
 *     kernels queued before it finish reading before any later gather or
 *     reduction writes into that buffer;
 *   - zero_step() enqueues the update and the all-gather; kernels queued after
 *     it see the updated weights and zeroed gradients.
 * The host blocks at most once per optimizer step, in zero_step() at the
 * accumulation boundary, to read the gradient statistics it needs for
 * zero_step_info_t (the norm and the skip decision; Lamb reads its norms a
 * second time); never per parameter or per bucket. A trainer that queues its
 * work on that stream and calls nothing else is correct without any
 * cudaDeviceSynchronize. Its own host reads of device data (the loss) are its
 * to synchronise. zero_engine_setup(), the checkpoint calls and
 * zero_engine_destroy() wait for the device (they are not in the hot path).
 * A trainer that uses several streams orders them against the given one
 * itself. At world size 1 a collective that must move data (stage 3's
 * gathers; the fp32 all-gather at stages 1-2) also waits on the host.
 *
 * Threads: an engine is used from one thread at a time (the trainer's). It owns
 * a kernel thread pool and its communicator owns a progress thread.
 *
 * Errors: every call returns zero_status_t; on failure the cause is logged once
 * and also kept as the engine's last error (zero_engine_last_error()). A call
 * that fails on bad input changes nothing. After a communication failure
 * (ZERO_ERR_COMM, ZERO_ERR_TIMEOUT) the engine can only be destroyed.
 */
#ifndef ZERO_ENGINE_H
#define ZERO_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <zero/comm.h>
#include <zero/config.h>
#include <zero/export.h>
#include <zero/memory.h>
#include <zero/status.h>
#include <zero/types.h>

ZERO_BEGIN_DECLS

/** An engine (opaque). */
typedef struct zero_engine *zero_engine_h;

/** A registered parameter (opaque; owned by its engine, valid until the engine is destroyed). */
typedef struct zero_param *zero_param_h;

/** Bits of zero_engine_params_t::field_mask (never renumbered). */
enum zero_engine_params_field {
    ZERO_ENGINE_PARAM_FIELD_CONFIG_PATH = 1u << 0,
    ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON = 1u << 1,
    ZERO_ENGINE_PARAM_FIELD_COMM        = 1u << 2,
    ZERO_ENGINE_PARAM_FIELD_NUM_THREADS = 1u << 3,
    ZERO_ENGINE_PARAM_FIELD_SEED        = 1u << 4,
    ZERO_ENGINE_PARAM_FIELD_MEM_KIND    = 1u << 5,
    ZERO_ENGINE_PARAM_FIELD_MANUAL_LR_SCHEDULE = 1u << 6,
    ZERO_ENGINE_PARAM_FIELD_CHECKPOINT_KEEP_LAST = 1u << 7,
    ZERO_ENGINE_PARAM_FIELD_CUDA_STREAM = 1u << 8,
    ZERO_ENGINE_PARAM_FIELD_CUDA_DEVICE = 1u << 9
};

/**
 * Options of zero_engine_create(). Exactly one of config_path and config_json
 * must be set.
 */
typedef struct zero_engine_params {
    uint64_t field_mask;
    /** A DeepSpeed-style JSON config file (read during the call). */
    const char *config_path;
    /** The config as a NUL-terminated JSON string (copied during the call). */
    const char *config_json;
    /** A communicator to use; the caller keeps ownership and destroys it after
     *  the engine. Default: the engine creates one from the environment
     *  (zero_comm_create with default params) and destroys it with itself. */
    zero_comm_h comm;
    /** Threads for the optimizer kernels. Default: the online cores divided by
     *  the ranks on this node (at least 1); env ZERO_NUM_THREADS overrides. */
    int num_threads;
    /** Seed handed to init callbacks. Default 0. */
    uint64_t seed;
    /** Where weights, gradients and optimizer state live: ZERO_MEM_HOST (default)
     *  or ZERO_MEM_DEVICE (the GPU path: see "Memory kind" and the ordering
     *  contract above). ZERO_MEM_PINNED is ZERO_ERR_UNSUPPORTED, never quietly
     *  taken as host memory: page-locking model state only helps transfers to
     *  a device. */
    zero_mem_kind_t mem_kind;
    /** 1: zero_step() does not advance the config's LR schedule; the trainer
     *  calls zero_engine_lr_schedule_step() itself (e.g. once per epoch).
     *  Default 0: the schedule advances with every applied update, as DeepSpeed. */
    int manual_lr_schedule;
    /** > 0: zero_save_checkpoint() keeps only the newest N checkpoints in its
     *  directory (removing older tags after a successful save). Default 0: keep all. */
    int checkpoint_keep_last;
    /** ZERO_MEM_DEVICE: the trainer's cudaStream_t (as void *, so this header
     *  needs no CUDA header), on which the engine queues its work and orders
     *  its collectives (see the ordering contract). Default NULL: the legacy
     *  default stream. The caller keeps it alive until zero_engine_destroy().
     *  Ignored for host memory. */
    void *cuda_stream;
    /** ZERO_MEM_DEVICE: the CUDA device index (as the CUDA runtime numbers the
     *  devices this process sees). Default -1: LOCAL_RANK modulo the number of
     *  visible devices, which with zero-launch (it gives every rank of a node
     *  that node's CUDA_VISIBLE_DEVICES) is the rank's own GPU. The engine's
     *  own communicator uses the same device; a communicator passed in must
     *  have been created for it (zero_comm_params_t::cuda_device).
     *  zero_engine_create() makes it the calling thread's current device;
     *  call the engine from a thread where it is current. */
    int cuda_device;
} zero_engine_params_t;

/**
 * Fills part of a parameter's initial values: elements [offset, offset + count)
 * of the flattened tensor, as fp32, into @p out. The engine calls it only for
 * ranges this rank needs, so the values must depend on the element index alone
 * (not on the call pattern), and must be the same on every rank.
 */
typedef void (*zero_param_init_fn_t)(const char *name, size_t offset, size_t count, float *out, void *user_data);

/** Bits of zero_param_desc_t::field_mask (never renumbered). */
enum zero_param_desc_field {
    ZERO_PARAM_FIELD_WEIGHT_DECAY = 1u << 0,
    ZERO_PARAM_FIELD_INIT_VALUES  = 1u << 1,
    ZERO_PARAM_FIELD_INIT_FN      = 1u << 2,
    ZERO_PARAM_FIELD_VIEW         = 1u << 3,
    ZERO_PARAM_FIELD_PARAM_GROUP  = 1u << 4,
    ZERO_PARAM_FIELD_FLAT_OFFSET  = 1u << 5
};

/** Most dimensions of a parameter. */
#define ZERO_PARAM_MAX_NDIM 8

/**
 * A parameter to register. name, dtype, ndim and shape are always read;
 * the others only when their field bit is set.
 */
typedef struct zero_param_desc {
    uint64_t field_mask;
    /** Unique name, at most 255 bytes (copied). Checkpoints and merges use it. */
    const char *name;
    /** Element type of the weights and gradients the trainer sees: ZERO_FP32,
     *  or the precision the config trains in (bf16 with bf16.enabled, fp16
     *  with fp16.enabled). Master weights and optimizer state are always fp32. */
    zero_dtype_t dtype;
    int ndim;
    int64_t shape[ZERO_PARAM_MAX_NDIM];
    /** 1 (default): the optimizer's weight decay applies; 0: exempt (biases, norms). */
    int weight_decay;
    /** Initial values of the whole tensor as fp32, read during zero_engine_setup()
     *  (must stay valid until then). Every rank must pass the same values. */
    const float *init_values;
    /** Or: a callback for the initial values (see zero_param_init_fn_t). */
    zero_param_init_fn_t init_fn;
    void *init_user_data;
    /** Stages 0-2 only: the weights and gradients live in the caller's buffers
     *  (each numel elements of dtype, 64-byte aligned recommended), e.g. views
     *  into one contiguous allocation as llm.c keeps its model. The caller owns
     *  them and keeps them valid until the engine is destroyed. The engine
     *  writes updated weights into view_data and zeroes view_grad after each
     *  step. With neither init field set, view_data's content at setup is the
     *  initial value (rank 0's, broadcast). */
    void *view_data;
    void *view_grad;
    /* appended later: the fields above keep their offsets */
    /** The parameter group whose optimizer hyper-parameters update this
     *  parameter (torch's param_groups): an index from
     *  zero_engine_param_group_index(). Default 0, the group "default"
     *  (optimizer.params). weight_decay = 0 still exempts the parameter from
     *  its group's decay. Every rank must give each parameter the same group. */
    int param_group;
    /** With zero_engine_adopt_flat() (required then, refused otherwise): the
     *  parameter's first element in the adopted buffers of its dtype. Offsets
     *  must increase in registration order and tensors must not overlap;
     *  they need not be packed or aligned. The weights and gradient are then
     *  the buffers' elements [flat_offset, flat_offset + numel), and
     *  zero_param_data() / zero_param_grad() return pointers into them.
     *  With neither init field set, the weights' content at setup is the
     *  initial value (rank 0's, broadcast); with one, setup writes it there. */
    size_t flat_offset;
} zero_param_desc_t;

/** Bits of zero_flat_buffers_t::field_mask (never renumbered). */
enum zero_flat_buffers_field {
    ZERO_FLAT_BUFFERS_FIELD_CAPACITY = 1u << 0
};

/**
 * A trainer's own contiguous weight and gradient buffers of one dtype, for
 * zero_engine_adopt_flat(). dtype, weights, grads and numel are always read.
 */
typedef struct zero_flat_buffers {
    uint64_t field_mask;
    /** The element type of both buffers: ZERO_FP32, or the config's 16-bit precision. */
    zero_dtype_t dtype;
    /** All weights of this dtype, each tensor at its flat_offset (llm.c's params_memory). */
    void *weights;
    /** All gradients of this dtype, at the same offsets (llm.c's grads_memory). */
    void *grads;
    /** Elements the tensors occupy: every registered tensor of this dtype lies in [0, numel). */
    size_t numel;
    /** Elements each buffer really holds (>= numel), so the partition may pad
     *  into [numel, capacity). Default (bit unset): numel. Must be at least
     *  what zero_engine_flat_capacity() returns for numel. */
    size_t capacity;
} zero_flat_buffers_t;

/**
 * Creates an engine: parses the config (the batch triad is resolved against
 * the communicator's world size), joins or takes the communicator, starts the
 * kernel thread pool.
 * @return ZERO_OK; ZERO_ERR_CONFIG / ZERO_ERR_UNSUPPORTED (the config is
 *         invalid or asks for what this version cannot do: every problem is
 *         logged), ZERO_ERR_INVALID_ARG, the communicator's errors,
 *         ZERO_ERR_NO_MEMORY. On failure nothing is left allocated and
 *         *engine_p is untouched.
 */
ZERO_API zero_status_t zero_engine_create(const zero_engine_params_t *params, zero_engine_h *engine_p);

/**
 * Destroys an engine, its buffers, its thread pool and (unless it was given
 * one) its communicator, which makes it collective: every rank should call it.
 * NULL is allowed.
 */
ZERO_API void zero_engine_destroy(zero_engine_h engine);

/**
 * Registers a parameter (before zero_engine_setup; every rank registers the
 * same parameters in the same order). *param_p receives a handle owned by the
 * engine. Errors: ZERO_ERR_STATE (after setup), ZERO_ERR_INVALID_ARG (empty or
 * duplicate name, bad shape, a dtype that does not match the config's
 * precision, both init fields; with adopted buffers a missing, overlapping,
 * decreasing or out-of-range flat_offset, or a view; a flat_offset without
 * them), ZERO_ERR_UNSUPPORTED (views at stage 3), ZERO_ERR_NO_MEMORY.
 */
ZERO_API zero_status_t zero_param_register(zero_engine_h engine, const zero_param_desc_t *desc,
                                           zero_param_h *param_p);

/**
 * Zero-copy adoption of a trainer's flat buffers (stages 0-2, before any
 * zero_param_register()). The engine uses @p buffers->weights and
 * @p buffers->grads in place as its flat weight and gradient spaces of
 * @p buffers->dtype: reductions run on the trainer's gradients, the optimizer
 * writes the trainer's weights, and updated weights are all-gathered into
 * them; the engine keeps no second copy of either. Every parameter registered
 * afterwards must then name its place with ZERO_PARAM_FIELD_FLAT_OFFSET in
 * the adopted buffers of its dtype (call this once per dtype the model has;
 * a model is adopted whole or not at all).
 *
 * Partition: the buffers of one dtype are one bucket. Rank r of W owns the
 * contiguous elements [r L / W, (r + 1) L / W) of it, where L is numel
 * rounded up to zero_engine_flat_capacity(): the rounding is the only
 * padding, taken from the slack [numel, capacity) the trainer provides
 * (elements between tensors are padding too). Setup zeroes the padding of
 * both buffers, and it stays zero.
 *
 * With fp32 buffers the owned range of the weights is the fp32 master itself
 * (stages 0-2): the engine's model state is then only the optimizer moments
 * of the owned range (Adam: 8 / W bytes per parameter at stages 1-2), plus the
 * bounded buffers zero_engine_memory_t lists. With 16-bit buffers the fp32
 * master of the owned range is the engine's, as without adoption. Optimizer
 * state offloaded to a store that cannot keep its master in the trainer's
 * memory (remote servers) fails zero_engine_setup() with ZERO_ERR_UNSUPPORTED.
 *
 * Gradients: at every stage they accumulate in the trainer's buffer over the
 * accumulation window, the engine reduces them at the boundary (in place: the
 * buffer's content after zero_step() is not the trainer's any more) and then
 * zeroes the whole buffer. So stage 2 behaves as stage 1 here: the trainer
 * holds the full gradient buffer, which is what stage 2 would shard, and a
 * reduction once per window costs less than once per micro-batch.
 * zero_grad_ready() is optional and only feeds the late-write guard.
 *
 * Communication: buffers from zero_comm_mem_alloc() of the engine's
 * communicator take the intra-node direct path, others the UCX ring.
 *
 * Ownership: the trainer owns both buffers and keeps them valid and in
 * place until zero_engine_destroy(); the engine never frees them. The trainer
 * must not write the weights (except through setup's initial values) nor
 * read the gradients after zero_backward_end() of a window's last micro-batch
 * until zero_step() returns.
 *
 * @return ZERO_OK; ZERO_ERR_STATE (after a registration or setup, or this
 *         dtype already adopted), ZERO_ERR_UNSUPPORTED (stage 3, or an engine
 *         whose memory kind is not the host), ZERO_ERR_INVALID_ARG (NULL
 *         buffers, the same buffer for weights and gradients, a dtype the
 *         config does not train in, capacity below numel). Nothing is kept
 *         on failure.
 */
ZERO_API zero_status_t zero_engine_adopt_flat(zero_engine_h engine, const zero_flat_buffers_t *buffers);

/**
 * The elements adopted flat buffers holding @p numel elements of tensors must
 * have room for (zero_flat_buffers_t::capacity) on this engine: numel rounded
 * up to a multiple of 64 x W at stages 1-2 (W the world size) and of 64 at
 * stage 0, so every rank owns an equal, 256-byte aligned (for fp32, from an
 * aligned base) range. At most 64 x W - 1 elements of slack.
 * @return ZERO_OK; ZERO_ERR_INVALID_ARG (NULL argument), ZERO_ERR_OVERFLOW.
 */
ZERO_API zero_status_t zero_engine_flat_capacity(zero_engine_h engine, size_t numel, size_t *capacity_p);

/**
 * Collective. Builds the partition, checks that every rank registered the same
 * parameters (ZERO_ERR_INVALID_ARG on every rank otherwise, naming the first
 * difference), allocates weights, gradients, master weights and moments, and
 * fills the weights with their initial values.
 */
ZERO_API zero_status_t zero_engine_setup(zero_engine_h engine);

/**
 * The full weights of @p param (numel elements of its dtype), for the forward
 * and backward to read. Stages 0-2: always valid after setup. Stage 3: valid
 * only between zero_gather() and zero_release() of the parameter (NULL
 * otherwise). Do not write to it: the engine owns the weights.
 */
ZERO_API void *zero_param_data(zero_param_h param);

/**
 * The gradient buffer of @p param (numel elements of its dtype) that the
 * backward adds into. Valid from zero_backward_begin() until zero_grad_ready()
 * of the parameter or zero_backward_end(), whichever comes first; zero at the
 * start of each accumulation window (stages 0-1) or micro-batch (stages 2-3:
 * each micro-batch's gradients are reduced into the shard at once). At stage 3
 * the parameter must be gathered while its gradient is produced. NULL outside
 * that window or on error. At stage 2, when every gradient staging slot is
 * taken, this first waits for the oldest reduction in flight (see
 * zero_engine_memory_t). With adopted buffers (zero_engine_adopt_flat) it is
 * the parameter's place in the trainer's gradient buffer, handed out from
 * zero_backward_begin() to zero_backward_end() at every stage, and gradients
 * accumulate there over the whole window as at stages 0-1.
 */
ZERO_API void *zero_param_grad(zero_param_h param);

/** The parameter's name (owned by the engine). */
ZERO_API const char *zero_param_name(zero_param_h param);
/** The parameter's element count. */
ZERO_API size_t zero_param_numel(zero_param_h param);

/**
 * Stage 3: makes the full weights of @p count parameters available (allgather
 * of their shards), waiting for any prefetch already started for them. After
 * the first training step the engine knows the order of gathers and prefetches
 * the next parameters (up to stage3_prefetch_bucket_size elements ahead).
 * Parameters under stage3_param_persistence_threshold elements stay gathered.
 * At stages 0-2 a no-op for registered parameters (ZERO_ERR_INVALID_ARG for a
 * handle of another engine).
 */
ZERO_API zero_status_t zero_gather(zero_engine_h engine, const zero_param_h *params, size_t count);

/**
 * Stage 3: releases the full weights gathered by zero_gather() (persistent ones
 * stay); zero_param_data() is NULL afterwards. When the recorded order gathers
 * a parameter again within stage3_max_reuse_distance elements in the same
 * accumulation window, and the live elements are within
 * stage3_max_live_parameters, the engine keeps its weights in the gather pool
 * (DeepSpeed's rule), so that gather costs nothing; they are dropped when a
 * gather needs the room. Nothing is allocated or freed (see zero_engine_memory_t).
 */
ZERO_API zero_status_t zero_release(zero_engine_h engine, const zero_param_h *params, size_t count);

/* ---- slices of stacked parameters (stage 3 layer by layer) ----
 *
 * A trainer that stacks each kind of tensor across layers, as llm.c does
 * (one (L, 3C, C) tensor for every layer's QKV weights), gathers, reads and
 * hands over gradients one layer at a time through slices: the indices
 * [first, first + count) of a parameter's first dimension, a contiguous run
 * of count x (numel / shape[0]) elements. At stage 3 only the slice's weights
 * are gathered (from the ranks that own them) and only the slice's gradient
 * is held, so peak working memory follows one layer, not the stacked tensor.
 *
 * The calls do the same bookkeeping at every stage, so a trainer written for
 * stage 3 runs unchanged at stages 0-2 (where slices are windows on the full
 * weights and gradients, and nothing is communicated) and its balance
 * errors show there too. Every rank makes the same slice calls in the same
 * order (they start collectives at stage 3).
 */

/** Rows [first, first + count) of @p param along its first dimension. */
typedef struct zero_param_slice {
    zero_param_h param;   /**< a parameter of the engine, with at least one dimension */
    int64_t first;        /**< first index, 0 <= first < shape[0] */
    int64_t count;        /**< indices, 1 <= count <= shape[0] - first */
} zero_param_slice_t;

/**
 * Makes the weights of @p count slices available, each until its
 * zero_release_slices(); zero_param_slice_data() then points at them. At
 * stage 3 a slice's elements are broadcast by the ranks whose shards hold
 * them (one collective per owning rank, usually one or two), waiting for any
 * prefetch already started for that slice. Gathers are recorded in the first
 * micro-batch's order as zero_gather()'s are, slices and whole parameters in
 * one order, and later gathers prefetch the slices and parameters that follow
 * (up to stage3_prefetch_bucket_size elements), and release keeps a slice the
 * order gathers again soon (stage3_max_reuse_distance), as for whole
 * parameters. Slices of a parameter under stage3_param_persistence_threshold
 * are windows on its persistent copy.
 *
 * Gathering the same slice again nests (release it as often). Errors, each
 * naming the parameter and the rows in zero_engine_last_error(), with nothing
 * gathered by the call left gathered:
 *  - ZERO_ERR_INVALID_ARG: a handle of another engine, a parameter with no
 *    dimension, first or count out of range;
 *  - ZERO_ERR_STATE: before zero_engine_setup() or after a failure; a slice
 *    overlapping another slice of the parameter that is gathered now (release
 *    it first, or gather the same rows); a slice of a parameter gathered
 *    whole by zero_gather() (stage 3), or gathered whole while a slice of it
 *    is (zero_gather() says so).
 */
ZERO_API zero_status_t zero_gather_slices(zero_engine_h engine, const zero_param_slice_t *slices, size_t count);

/**
 * Releases slices gathered by zero_gather_slices(), each given with the same
 * first and count. ZERO_ERR_STATE, naming the parameter and rows, for a slice
 * that is not gathered (unbalanced) or only overlaps a gathered one; nothing
 * is released then. ZERO_ERR_INVALID_ARG as zero_gather_slices().
 */
ZERO_API zero_status_t zero_release_slices(zero_engine_h engine, const zero_param_slice_t *slices, size_t count);

/**
 * The weights of rows [first, first + count) of @p param (count x numel /
 * shape[0] elements of its dtype, row first at the start), while a gathered
 * slice contains those rows; NULL otherwise (out of range, or not gathered).
 * At stages 0-2 it is a window on zero_param_data(). Do not write to it.
 */
ZERO_API void *zero_param_slice_data(zero_param_h param, int64_t first, int64_t count);

/**
 * The gradient buffer of rows [first, first + count) of @p param (count x
 * numel / shape[0] elements of its dtype), for the backward to add into, from
 * zero_backward_begin() until zero_grad_slice_ready() of those rows or
 * zero_backward_end(). At stage 3 it holds that slice only: zeroed when first
 * asked for in a micro-batch, the same buffer while those rows are open, and
 * neither this nor zero_param_grad() ever holds the full gradient of a
 * parameter handed over in slices. At stages 0-2 it is a window on
 * zero_param_grad(). NULL (the reason in zero_engine_last_error()) outside a
 * backward, for rows out of range, rows already declared ready, a parameter
 * marked with zero_grad_ready(), and at stage 3 rows overlapping an open
 * slice that are not the same rows or a parameter whose whole gradient
 * zero_param_grad() handed out this micro-batch (at stages 0-2 slices are
 * windows and may take any shape). A parameter is handed over whole or in slices within a
 * micro-batch, not both.
 */
ZERO_API void *zero_param_grad_slice(zero_param_h param, int64_t first, int64_t count);

/**
 * Declares the gradient of rows [first, first + count) of @p param complete
 * for this micro-batch: the slice counterpart of zero_grad_ready(). At stage 3
 * the slice's gradient is averaged over the ranks now (a reduce-scatter into
 * the ranks that own its rows, in flight while the backward goes on; at most
 * two at once) and each of them adds its part to its gradient shard; the
 * buffer goes back to the engine. Rows never declared ready contribute zero (their gradient
 * buffers still open at zero_backward_end() are handed over then, in the
 * order they were opened). At stages 0-2 the parameter counts as ready
 * (zero_grad_ready()) once all its rows are. Every rank declares the same
 * slices in the same order.
 *
 * Errors (ZERO_ERR_INVALID_ARG for bad arguments, ZERO_ERR_STATE otherwise),
 * naming the parameter and rows: no backward open, rows out of range or
 * declared ready before in this micro-batch, a parameter already marked with
 * zero_grad_ready(), and at stage 3 rows that only partly match an open
 * slice or a parameter whose whole gradient zero_param_grad() handed out.
 * The late-write guard (check_grad_writes) does not cover slices: the buffer
 * must not be written after this call.
 *
 * Cost: each rank sends the parts of the slice that other ranks own, as a
 * reduce-scatter of the whole parameter would, and each element is summed in
 * that reduce-scatter's order: the result is bit for bit the same as handing
 * the gradient over whole (except with zero_quantized_gradients, where whole
 * buckets are reduced quantized and slices are not).
 */
ZERO_API zero_status_t zero_grad_slice_ready(zero_engine_h engine, zero_param_h param, int64_t first,
                                             int64_t count);

/**
 * Starts the backward of a micro-batch. Returns, in *seed_p, the factor the
 * trainer multiplies dL/d(output) by: the loss scale divided by the number of
 * accumulation steps (1 / gas with bf16 or fp32). Gradients then come out
 * scaled, and the engine unscales them. ZERO_ERR_STATE if a backward is
 * already open.
 */
ZERO_API zero_status_t zero_backward_begin(zero_engine_h engine, float *seed_p);

/**
 * Optional, per parameter: its gradient for this micro-batch is complete.
 * At stage 2-3, a bucket whose parameters are all ready starts its
 * reduce-scatter now, overlapping the rest of the backward. Every rank must
 * mark parameters in the same order. ZERO_ERR_STATE outside a backward or if
 * the parameter was already marked.
 *
 * The gradient must be complete when this is called: at stages 2-3 a later
 * write to it is lost. With zero_optimization.check_grad_writes (and in a
 * buildtype=debug build of libzero) the engine digests the gradient here and
 * checks it before the bucket is reduced and at zero_backward_end; a bucket
 * this call completes then starts reducing at the trainer's next engine call.
 * A changed gradient makes that check's call return ZERO_ERR_STATE, naming
 * the parameter in zero_engine_last_error(); the engine is then failed
 * (destroy it). See docs/cpp.md for the autograd hooks that get this right.
 *
 * With zero_optimization.offload_optimizer.overlap_step (ZERO_MEM_DEVICE,
 * CPU offload), in the last micro-batch of a step the store may rewrite this
 * rank's owned slice of the 16-bit weights of a bucket once every parameter
 * in it is ready, on its own copy stream, ordered only after the work queued
 * on the trainer's stream before the engine call that hands the bucket over:
 * queue every kernel of this backward that reads the parameter's weights
 * (e.g. the input gradient, dX = dY W^T) before marking it ready.
 */
ZERO_API zero_status_t zero_grad_ready(zero_engine_h engine, zero_param_h param);

/** Ends the micro-batch's backward: reduces what is not reduced yet (stages 2-3).
 *  ZERO_ERR_STATE from the late-write guard as zero_grad_ready() says. */
ZERO_API zero_status_t zero_backward_end(zero_engine_h engine);

/** What zero_step() did. */
typedef struct zero_step_info {
    int boundary;            /**< 1 at an accumulation boundary (an update was attempted) */
    int stepped;             /**< 1 if the optimizer updated the weights */
    int skipped;             /**< 1 if the update was skipped for inf/nan gradients (fp16) */
    double lr;               /**< learning rate used for this update (parameter group 0's; the others:
                                  zero_engine_param_group_lr() before the call) */
    double loss_scale;       /**< loss scale in effect for this window (1 without fp16) */
    double grad_norm;        /**< global L2 norm of the averaged, unscaled gradient (before clipping) */
    uint64_t global_steps;   /**< updates attempted so far, skipped ones included */
    uint64_t micro_steps;    /**< micro-batches so far */
} zero_step_info_t;

/**
 * Ends a micro-batch. Between boundaries it only counts. At the boundary
 * (every gradient_accumulation_steps micro-batches) it reduces the gradients,
 * unscales them, checks all ranks for inf/nan, clips by the global norm, steps
 * the optimizer on the owned shard, advances the schedule (unless skipped), and
 * brings the updated weights back (allgather at stages 0-2; stage 3 keeps them
 * sharded). @p info_p may be NULL. ZERO_ERR_STATE without a completed backward;
 * ZERO_ERR_LOSS_SCALE when fp16 overflows at the minimum loss scale.
 */
ZERO_API zero_status_t zero_step(zero_engine_h engine, zero_step_info_t *info_p);

/* ---- parameter groups ----
 *
 * As torch's optimizer param_groups: each parameter belongs to one group, and
 * each group has its own optimizer hyper-parameters (lr, weight_decay, betas,
 * eps, momentum, dampening, nesterov, bias_correction, adam_w_mode, Lamb's
 * max_coeff and min_coeff; whatever optimizer.params of the configured type
 * takes). Group 0 is "default": optimizer.params itself. The other groups come
 * from the config's optimizer.param_groups (a libzero extension: an object of
 * named objects, each overriding keys of optimizer.params), numbered from 1 in
 * the order the config lists them:
 *
 *     "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "weight_decay": 0.1},
 *                   "param_groups": {"no_decay": {"weight_decay": 0.0},
 *                                    "embeddings": {"lr": 1e-4}}}
 *
 * A trainer looks a group's index up by name after zero_engine_create() and
 * puts it in zero_param_desc_t::param_group (field ZERO_PARAM_FIELD_PARAM_GROUP)
 * at registration. A group no parameter joins is allowed (it updates nothing).
 *
 * Schedules: the config's LR schedule computes the default group's rate;
 * every group follows it in proportion to its own rate, lr_g(t) =
 * lr_g * schedule(t) / optimizer.params.lr (torch's LambdaLR-style scaling
 * from each group's base rate; DeepSpeed's WarmupLR, WarmupDecayLR, OneCycle
 * and LRRangeTest would instead give every group the same absolute rate
 * unless their limits are lists; docs/engine.md). zero_engine_set_lr() sets
 * the default group's rate, and the others follow in the same proportion.
 * A cycled momentum (OneCycle) is the same for every group, as in DeepSpeed.
 *
 * Checkpoints store every group's name and settings and which parameters it
 * holds; loading the optimizer state into different groups is an error naming
 * the group (see zero_checkpoint_load_options_t::allow_param_group_change).
 */

/** How many parameter groups the engine has (1 + entries of optimizer.param_groups). */
ZERO_API int zero_engine_num_param_groups(zero_engine_h engine);

/**
 * The index of the parameter group named @p name ("default" is 0) into
 * *index_p, for zero_param_desc_t::param_group. Valid from
 * zero_engine_create() on. Errors: ZERO_ERR_NOT_FOUND (no such group; the
 * message lists the groups), ZERO_ERR_INVALID_ARG (NULL argument); *index_p
 * is untouched on error.
 */
ZERO_API zero_status_t zero_engine_param_group_index(zero_engine_h engine, const char *name, int *index_p);

/** The name of parameter group @p index (owned by the engine), or NULL for an index out of range. */
ZERO_API const char *zero_engine_param_group_name(zero_engine_h engine, int index);

/** The learning rate parameter group @p index's next update will use (the
 *  schedule's rate scaled as above); NAN for an index out of range. */
ZERO_API double zero_engine_param_group_lr(zero_engine_h engine, int index);

/** The learning rate the next update will use (parameter group 0's; see
 *  zero_engine_param_group_lr() for the others). */
ZERO_API double zero_engine_lr(zero_engine_h engine);
/** Sets the learning rate (for trainers whose schedule is per epoch and whose config has no scheduler). */
ZERO_API zero_status_t zero_engine_set_lr(zero_engine_h engine, double lr);
/**
 * Advances the config's LR schedule by one (for trainers that created the
 * engine with manual_lr_schedule, e.g. stepping once per epoch).
 * ZERO_ERR_STATE without manual_lr_schedule.
 */
ZERO_API zero_status_t zero_engine_lr_schedule_step(zero_engine_h engine);
/** The current loss scale (1 without fp16). */
ZERO_API double zero_engine_loss_scale(zero_engine_h engine);
/** Updates attempted so far (skipped ones included). */
ZERO_API uint64_t zero_engine_global_steps(zero_engine_h engine);
/** Micro-batches so far. */
ZERO_API uint64_t zero_engine_micro_steps(zero_engine_h engine);
/** Updates skipped for overflow so far. */
ZERO_API uint64_t zero_engine_skipped_steps(zero_engine_h engine);
/** The global gradient norm of the last update (0 before the first). */
ZERO_API double zero_engine_grad_norm(zero_engine_h engine);
/** The effective configuration (owned by the engine). */
ZERO_API const zero_config_t *zero_engine_config(zero_engine_h engine);
/** The communicator the engine uses (owned by the engine unless it was given one). */
ZERO_API zero_comm_h zero_engine_comm(zero_engine_h engine);
/** The message of the engine's last error ("" if none); owned by the engine. */
ZERO_API const char *zero_engine_last_error(zero_engine_h engine);

/**
 * Bytes this rank holds, by kind, in the engine's memory (GPU memory with
 * ZERO_MEM_DEVICE: the same figures a host engine reports for the same model
 * and stage).
 *
 * Model state (params, grads, master, optim_state) is allocated and backed
 * with pages at zero_engine_setup(). Working memory comes from pools whose
 * pages are backed the first time they are used and then kept and reused, so
 * that steady-state steps neither allocate nor take page faults:
 *  - stage 3, gathered weights and prefetch: at most
 *    min(non-persistent model, stage3_max_live_parameters elements);
 *  - stage 3, gradient staging: at most min(whole model,
 *    max(reduce_bucket_size elements, 3 x the largest parameter));
 *  - stage 2, gradient staging: at most 3 slots of the largest bucket's size
 *    (2 reducing, 1 being filled; fewer where 3 would take more than 3/4 of
 *    what stage 1's full gradients hold beyond stage 2's shard), backed at
 *    setup; when every slot is taken the next bucket waits for the oldest
 *    reduction. With W > 1, stage-2 buckets hold at most (W - 1) / (4 W) of
 *    the model (or one larger parameter), so stage 2 never holds more than
 *    stage 1 for a trainer that marks gradients ready as the backward
 *    produces them;
 *  - 16-bit training, every stage: the step's fp32 scratch (a few hundred
 *    thousand elements per dtype group).
 * Stage-3 slices (zero_gather_slices, zero_param_grad_slice) take their
 * blocks from the same two pools.
 * Element counts are taken in bytes of the widest parameter dtype. A stage-3
 * gather or gradient that finds its pool without room gets a one-off buffer
 * (allocated and freed around its use, warned once); those count in buffers
 * and total, not pools.
 */
typedef struct zero_engine_memory {
    uint64_t params;        /**< weights the trainer sees (full at stages 0-2, shard at 3); 0 with adopted
                                 buffers (the trainer's memory, never counted here), and 0 on a device rank
                                 with offload_param "cpu" (the shards are in host memory; the step's
                                 device staging window counts in buffers) */
    uint64_t grads;         /**< gradients in the parameters' dtype: full (stages 0-1), owned shard (2-3);
                                 0 with adopted buffers */
    uint64_t master;        /**< fp32 master weights (owned shard); 0 where they are the weights themselves
                                 (fp32 at stages 0 and 3, and adopted fp32 buffers at stages 1-2) */
    uint64_t optim_state;   /**< optimizer moments (owned shard) */
    uint64_t buffers;       /**< working buffers in use now: gradient staging, gathered weights (from the
                                 pools, or one-off when a pool is full) */
    uint64_t buffers_peak;  /**< the most buffers ever in use at once */
    uint64_t total;         /**< everything held: params + grads + master + optim_state + persistent +
                                 pools + one-off buffers in use */
    uint64_t num_params;    /**< registered elements (Psi) */
    /* appended later: the fields above keep their offsets */
    uint64_t persistent;    /**< stage 3: full weights of the parameters under
                                 stage3_param_persistence_threshold, held from setup */
    uint64_t pools;         /**< pages the working-memory pools hold now (backed, kept, reused),
                                 and the optimizer store's working buffers, held from setup (a
                                 device rank's CPU offload: its device staging; offload_optimizer
                                 "remote" on a host rank: the request slots and the same-host
                                 servers' regions mapped here, 8 MiB per server); after
                                 zero_release() of everything, stage 3 holds model state +
                                 persistent + pools and nothing more */
    uint64_t pools_bound;   /**< what the pools may grow to at most, from the sizes above (stage 2:
                                 the staging slots, which pools holds from setup on; a trainer that
                                 marks no gradient ready before zero_backward_end holds every bucket
                                 at once and gets one-off buffers beyond them) */
    uint64_t offload_pinned; /**< offload_optimizer "cpu" for a device rank: page-locked host transfer slots
                                 (host memory, not in total; the device staging buffers of that store count in
                                 pools and total, the state it keeps in host memory in none of these) */
} zero_engine_memory_t;

/** Fills *memory_p with the engine's current accounting. */
ZERO_API zero_status_t zero_engine_memory(zero_engine_h engine, zero_engine_memory_t *memory_p);

/** Seconds this rank has spent in the engine's phases since it was created
 *  (the totals wall_clock_breakdown prints). */
typedef struct zero_engine_timers {
    double backward_wait; /**< zero_backward_end(): waiting for and finishing the micro-batch's reductions */
    double reduce;        /**< zero_step() at the boundary: reducing the gradients (stages 0-1 mostly) */
    double step;          /**< zero_step(): unscale, overflow check, clipping and the optimizer on the shard */
    double gather;        /**< allgather of updated weights (stages 0-2) and zero_gather() waits (stage 3) */
    /* appended later: the fields above keep their offsets */
    double offload_exposed; /**< part of step: zero_step() waiting for an optimizer step run where the state
                                 lives (CPU offload for device ranks, zero-optd), the offload time not hidden
                                 behind other work; 0 without such a store */
    double offload_overlap; /**< CPU offload for device ranks: the fraction of the offload thread's CPU step
                                 time the trainer did not wait for, max(0, 1 - offload_exposed / CPU step
                                 time); 0 without it; near 0 unless offload_optimizer.overlap_step steps
                                 buckets on the CPU while the backward runs (else the step is waited for at
                                 the boundary) */
} zero_engine_timers_t;

/** Fills *timers_p with the engine's accumulated phase times. Thread safety as the engine's other calls. */
ZERO_API zero_status_t zero_engine_timers(zero_engine_h engine, zero_engine_timers_t *timers_p);

/* ---- checkpoints (collective: every rank calls them) ---- */

/** Bits of zero_checkpoint_load_options_t::field_mask (never renumbered). */
enum zero_checkpoint_load_field {
    ZERO_CHECKPOINT_LOAD_FIELD_OPTIMIZER_STATES = 1u << 0,
    ZERO_CHECKPOINT_LOAD_FIELD_LR_SCHEDULER     = 1u << 1,
    ZERO_CHECKPOINT_LOAD_FIELD_MODULE_ONLY      = 1u << 2,
    ZERO_CHECKPOINT_LOAD_FIELD_ALLOW_PARAM_GROUP_CHANGE = 1u << 3
};

/** What zero_load_checkpoint() restores (DeepSpeed's load_checkpoint options). */
typedef struct zero_checkpoint_load_options {
    uint64_t field_mask;
    /** 1 (default): the optimizer moments; 0: they restart at zero. */
    int load_optimizer_states;
    /** 1 (default): the LR schedule's position; 0: the schedule keeps its current state. */
    int load_lr_scheduler_states;
    /** 0 (default); 1: only the weights (no moments, schedule, loss scaler or counters). */
    int load_module_only;
    /* appended later: the fields above keep their offsets */
    /** 0 (default): loading the optimizer state fails with ZERO_ERR_CHECKPOINT,
     *  naming the group, when the engine's parameter groups differ from the
     *  checkpoint's (a group missing, other settings, other parameters in it;
     *  a checkpoint from before parameter groups holds every parameter in
     *  "default", whose settings it did not record). 1: load anyway; the
     *  engine's own groups and settings apply from the next step on, and each
     *  parameter's moments are loaded as saved. Without the optimizer state
     *  (load_optimizer_states 0, load_module_only 1) groups are not compared. */
    int allow_param_group_change;
} zero_checkpoint_load_options_t;

/**
 * Saves the engine's whole state (fp32 master weights, optimizer moments,
 * counters, loss scaler, LR schedule, the config and the partition map) as one
 * HDF5 file per rank under <save_dir>/<tag>/, plus the trainer's own state
 * @p client_sd_json (a JSON text, may be NULL) as <tag>/client_sd.json, and
 * points <save_dir>/latest at it. The commit is atomic: a crash at any moment
 * leaves the previous checkpoint loadable and latest naming a complete one.
 * Collective; call it at an accumulation boundary (after zero_step()).
 * @p tag NULL means "global_step<N>"; any other tag must be a safe single path
 * component (no '/', not "." or "..", no control characters) and the same on
 * every rank (checkpoint.tag_validation decides what a mismatch does).
 * Errors: ZERO_ERR_INVALID_ARG (bad tag), ZERO_ERR_STATE (mid-accumulation or
 * in a backward), ZERO_ERR_IO / ZERO_ERR_HDF5, the communicator's errors.
 * A filesystem failure at any point (full disk or quota, I/O error, short
 * write, failed fsync or rename) returns the same error on every rank, and
 * zero_engine_last_error() names the failing rank, the file and the errno
 * text; latest and every checkpoint already on disk stay as they were, the
 * temporary directory is removed, and the engine's state is untouched, so
 * training can go on and a later save can succeed. Only ZERO_ERR_COMM and
 * ZERO_ERR_TIMEOUT (a rank died during the save) leave the engine failed.
 */
ZERO_API zero_status_t zero_save_checkpoint(zero_engine_h engine, const char *save_dir, const char *tag,
                                            const char *client_sd_json);

/**
 * Loads a checkpoint saved by zero_save_checkpoint(), at this or any other
 * world size and stage (resharded from the saved partition map, no conversion
 * step). @p tag NULL reads <load_dir>/latest. @p options NULL restores
 * everything. On success *client_sd_json_p (if not NULL) receives the saved
 * client_sd text (NULL if none was saved); release it with zero_string_free().
 * Collective. A load that fails leaves the engine exactly as it was.
 * Errors: ZERO_ERR_NOT_FOUND (no such tag, empty or dangling latest),
 * ZERO_ERR_CHECKPOINT (missing shard, corrupt or truncated file, flipped bit,
 * format version, a different model: the file, dataset or parameter is
 * named), ZERO_ERR_STATE (before setup or in a backward), ZERO_ERR_IO,
 * ZERO_ERR_HDF5, the communicator's errors.
 */
ZERO_API zero_status_t zero_load_checkpoint(zero_engine_h engine, const char *load_dir, const char *tag,
                                            const zero_checkpoint_load_options_t *options, char **client_sd_json_p);

ZERO_END_DECLS

#endif /* ZERO_ENGINE_H */
