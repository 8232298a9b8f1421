/*
 * The optimizer state store: where a rank's fp32 master weights and optimizer
 * states live, and the one way the engine, the step loop and checkpoints reach
 * them (DESIGN.md section 4a).
 *
 * Nothing outside a store keeps a pointer to its data across calls: a caller
 * acquires a range of one dtype group (some fields of it), uses the pointers
 * the range then holds, and releases it, clean (read only) or dirty (written:
 * the store must keep the new values). A caller that knows what it will need
 * next says so with prefetch, so a store whose data lives elsewhere (NVMe
 * files, a remote optimizer server) can fetch it while the caller works.
 *
 * Implementations: the host store (store_host.c) is an identity mapping, its
 * arrays in this process's memory of the descriptor's kind, acquire returns
 * pointers into them and release does nothing; the NVMe store (store_nvme.h)
 * keeps them in a file and stages ranges through a few buffers; further
 * stores (zero-optd servers) implement the same operations. All are created
 * through zero_store_create_for (one branch per device). A store may also
 * run the optimizer update itself (the optional step ops, step_async and
 * step_wait: one interface, pipelined where the store can).
 *
 * Ranges: group g holds length[g] elements per field; a range [begin, begin +
 * count) of it must lie inside. Ranges acquired at the same time must not
 * overlap where one of them is dirty. A store with bounded buffers takes at
 * most zero_store_max_range() elements per range. Thread safety: one caller at a time per
 * store, unless an implementation states more.
 */
#ifndef ZERO_OFFLOAD_STORE_H
#define ZERO_OFFLOAD_STORE_H

#include "optim/optim_hparams.h"
#include "offload/offload_ratio.h"

#include <stddef.h>
#include <stdint.h>
#include "optim/optim.h"

#include <zero/config.h>
#include <zero/memory.h>
#include <zero/status.h>
#include <zero/types.h>

/* The arrays of one group, in the order a checkpoint names them. */
typedef enum zero_store_field {
    ZERO_STORE_MASTER = 0,   /* fp32 master weights */
    ZERO_STORE_STATE1 = 1,   /* first optimizer state (Adam: exp_avg; SGD: momentum; Adagrad: sum of squares) */
    ZERO_STORE_STATE2 = 2,   /* second optimizer state (Adam: exp_avg_sq) */
    ZERO_STORE_NUM_FIELDS
} zero_store_field_t;

#define ZERO_STORE_FIELD_BIT(f) (1u << (unsigned)(f))
#define ZERO_STORE_ALL_FIELDS ((1u << ZERO_STORE_NUM_FIELDS) - 1u)

typedef struct zero_store zero_store_t;

/* What a store holds. */
typedef struct zero_store_desc {
    zero_mem_kind_t kind;                /* where the host store's arrays live (host or device) */
    int num_groups;                      /* 1 .. ZERO_DTYPE_COUNT */
    size_t length[ZERO_DTYPE_COUNT];     /* elements per field of each group */
    int num_states;                      /* optimizer states per element: 0, 1 or 2 */
    /* Optional: a group's master weights are the caller's array (fp32
     * training, where the weights the trainer sees are the master): the store
     * uses it in place and never frees it. NULL: the store owns the array. */
    float *adopt_master[ZERO_DTYPE_COUNT];
} zero_store_desc_t;

/* One acquired range. The caller fills group, begin, count and fields;
 * acquire fills data[] (NULL for fields not asked for). */
typedef struct zero_store_range {
    int group;
    size_t begin, count;
    unsigned fields;                              /* ZERO_STORE_FIELD_BIT()s */
    float *data[ZERO_STORE_NUM_FIELDS];           /* [count] fp32 each, valid until release */
    void *impl;                                   /* the store's own */
} zero_store_range_t;

/* Bytes a store holds, by where they live. */
typedef struct zero_store_bytes {
    uint64_t resident;   /* in this process's memory of the store's kind (adopted arrays not counted) */
    uint64_t elsewhere;  /* in files or other processes */
    /* CPU offload for a device engine: */
    /* working buffers in memory of the store's kind, no state: the CPU
     * offload's device buffers of acquire; the remote store's request slots
     * and the same-host servers' regions it maps (the engine counts these in
     * its pools) */
    uint64_t staging;
    uint64_t pinned;     /* page-locked host transfer slots (host memory; not in elsewhere, which counts the state) */
} zero_store_bytes_t;

/*
 * One optimizer step over a range, run by the store where the state lives
 * (the optional step ops; the one step interface of a store): the reduced,
 * averaged gradient of [begin, begin + count) of group @c group goes in, the
 * state is updated there, and the updated weights come back in the training
 * dtype. The hyper-parameters are this step's (schedule-derived lr, step
 * number, grad_scale = clip coefficient / loss scale, the decay of this
 * range), as lib/optim defines them; zero_store_step_set_hparams fills them
 * from the engine's mapped set. A struct so it can grow; zero it first.
 */
typedef struct zero_store_async_step {
    int group;
    size_t begin, count;
    zero_optimizer_type_t optimizer;   /* ADAM, ADAMW, SGD, ADAGRAD, LION, or LAMB (one phase: below) */
    float lr, beta1, beta2, eps, weight_decay;
    float momentum, dampening;         /* SGD */
    float lr_decay;                    /* Adagrad */
    int adam_w_mode, bias_correction;  /* Adam (AdamW forces adam_w_mode) */
    int nesterov;                      /* SGD */
    int64_t step;                      /* from 1 (not used by Lion) */
    float grad_scale;
    zero_dtype_t grad_dtype;           /* FP32, FP16 or BF16: the training dtype (no fp32 copy needed) */
    const void *grad;                  /* [count] of grad_dtype; the caller's until zero_store_step_wait */
    zero_dtype_t weight_dtype;         /* FP32 (a copy of the master) or the 16-bit training dtype */
    void *weights;                     /* [count] of weight_dtype; final after zero_store_step_wait */
    int weights_on_host;               /* a device engine's weights in host memory (offload_param "cpu"):
                                        * the CPU offload store writes them there, not to the device */
    /* 1: keep what this update overwrites (master, states) until the next
     * step_wait, so zero_store_step_cancel can undo it (the overlap mode,
     * whose steps start before the step's overflow check); needs step_cancel */
    int undoable;
    const zero_optim_ctx_t *optim;     /* kernels for stores that run the step in this process; LAMB: the
                                        * caller's, whose chunk and level its sums follow (every store) */
    /* LAMB, on stores with ops->steps_lamb: one of its two phases over the
     * range, which must lie inside one parameter (its trust ratio is per
     * parameter). Phase 1 updates the moments from the gradient (weights not
     * written, may be NULL) and leaves in lamb_sums[0..1] the range's sums of
     * w^2 and u^2, bit for bit those of zero_optim_lamb_phase1 over one
     * segment [0, count) with @c optim (chunks of optim->chunk from begin,
     * each summed by optim's level); final after zero_store_step_wait. The
     * caller adds them over its ranges and ranks, then phase 2 applies the
     * trust ratio with lamb_sums holding the parameter's totals (read when
     * the step is submitted; the gradient is not read and may be NULL). */
    int lamb_phase;                    /* 1 or 2 */
    double *lamb_sums;                 /* [2] */
    float max_coeff, min_coeff;        /* the trust ratio's clamp */
    int eps_inside_sqrt;
} zero_store_async_step_t;

typedef struct zero_store_ops {
    const char *name;
    zero_status_t (*acquire)(zero_store_t *store, zero_store_range_t *range);
    zero_status_t (*release)(zero_store_t *store, zero_store_range_t *range, int dirty);
    zero_status_t (*prefetch)(zero_store_t *store, int group, size_t begin, size_t count, unsigned fields);
    zero_status_t (*flush)(zero_store_t *store);   /* NULL: nothing is ever in flight */
    void (*bytes)(const zero_store_t *store, zero_store_bytes_t *bytes_p);
    void (*destroy)(zero_store_t *store);
    /* Optional, the step ops (NULL: the caller acquires ranges and runs the
     * kernels itself): step_async may return before the update is done, so
     * the transfers of one range overlap the store's work on the previous;
     * step_wait finishes every step submitted and returns the first error
     * (NULL: step_async finishes each step before it returns). Lamb comes
     * here only where steps_lamb is set, one phase at a time; a range with
     * an acquire open never does. */
    zero_status_t (*step_async)(zero_store_t *store, const zero_store_async_step_t *step);
    zero_status_t (*step_wait)(zero_store_t *store);
    /* 1: the engine hands its elementwise updates to step_async instead of
     * acquiring ranges (the state is outside this process, so only gradients
     * and weights should travel: zero-optd). 0: the step ops exist for
     * comparisons only (the host store); the engine runs its own kernels,
     * of its memory kind, on acquired ranges. */
    int prefer_step;
    /* 1: step_async takes Lamb's two phases (zero_store_async_step_t's
     * lamb_phase), so a caller that prefers the step runs Lamb there too
     * (zero-optd); 0: the caller runs Lamb on acquired ranges. */
    int steps_lamb;
    /* Optional: seconds this store's own threads spent in the optimizer
     * kernel so far (CPU offload); NULL: not counted. */
    double (*step_busy)(const zero_store_t *store);
    /* Optional, with prefer_step: whether the step ops take the piece of
     * @p group that starts at owned offset @p begin (1), or the engine runs
     * its own kernels on acquired ranges there (0); *run_end_p gets where
     * that answer next changes (a piece must end there). NULL: prefer_step
     * over the whole range (CPU offload at offload_optimizer.ratio < 1 keeps
     * part of the state in device memory). */
    int (*steps_at)(const zero_store_t *store, int group, size_t begin, size_t *run_end_p);
    /* Optional: as step_wait, then undoes every step submitted since the
     * last wait (each submitted undoable): master, states and the weights it
     * wrote are as before them. NULL: steps cannot be undone. */
    zero_status_t (*step_cancel)(zero_store_t *store);
} zero_store_ops_t;

/* The part every store shares; implementations embed it first. */
struct zero_store {
    const zero_store_ops_t *ops;
    zero_store_desc_t desc;
    size_t max_range;   /* elements per range at most; 0: no bound */
};

/* Where the optimizer state is kept: "zero_optimization.offload_optimizer.device". */
typedef enum zero_store_device {
    ZERO_STORE_DEVICE_NONE = 0,   /* no offload: the host store, arrays of the descriptor's kind */
    ZERO_STORE_DEVICE_CPU,        /* "cpu": host memory; for a device engine the CPU offload store (store_cpu.h) */
    ZERO_STORE_DEVICE_NVME,       /* "nvme": files under nvme_path (store_nvme.h); for a device engine under
                                   * the CPU offload store */
    ZERO_STORE_DEVICE_REMOTE,     /* "remote": zero-optd servers (store_remote.h); for a device engine under
                                   * the CPU offload store (its slots stepped on the servers) */
} zero_store_device_t;

/*
 * Where a caller's step ranges start, for a store that splits a group over
 * places and must not cut through a kernel chunk of a range: Lamb's sums are
 * formed per chunk of `chunk` elements from a range's start (zero-optd:
 * docs/optd.md, "Lamb on the server"), so the remote store cuts its split
 * only at chunk multiples from the range start at or before the cut. Ranges
 * must be whole ranges of the starts, or pieces of them cut at multiples of
 * the chunk. chunk 0: no hint.
 */
typedef struct zero_store_split_hint {
    const size_t *starts[ZERO_DTYPE_COUNT];   /* sorted offsets in each group (borrowed for the call) */
    size_t num_starts[ZERO_DTYPE_COUNT];
    size_t chunk;
} zero_store_split_hint_t;

/* How the engine wants its store: the offload config and who asks. Zero it
 * before filling it, so fields added later start at their defaults. */
typedef struct zero_store_options {
    zero_store_device_t device;
    const char *nvme_path;        /* NVME: the directory for this rank's files */
    const char *const *servers;   /* REMOTE: the servers' "host:port" (borrowed for the call) */
    int num_servers;
    int rank;                     /* the asking rank (file names, server choice, error messages) */
    const zero_config_t *config;  /* NVME: buffer_count, sub_group_size and the aio block (borrowed) */
    double timeout_s;             /* NVME, REMOTE: an I/O or a server silent this long is an error; 0: 300 s */
    /* CPU with a device engine (desc->kind ZERO_MEM_DEVICE): */
    void *cuda_stream;            /* the trainer's stream (NULL: the legacy default stream) */
    int cuda_device;              /* the rank's device; -1: the calling thread's current one */
    int threads;                  /* CPU threads of the step; 0: 1 */
    zero_store_split_hint_t split; /* REMOTE with Lamb: where the step's ranges start */
    /* offload_optimizer.ratio < 1 (CPU with a device engine): every
     * bucket's owned slice (in owned order within each group) and the ratio;
     * the store keeps that fraction of the buckets, those whose gradients
     * arrive first (zero_offload_ratio_pick), in host memory and the rest in
     * device memory. NULL buckets: everything in host memory (ratio 1). */
    const zero_offload_bucket_t *buckets;
    int num_buckets;
    double ratio;
} zero_store_options_t;

/* Bytes of transfer slots that may be pinned in all, from ZERO_OFFLOAD_PIN_LIMIT
 * (a way to bound locked memory and to test the fallback); 0 (no limit) when
 * unset or not a byte count (then with a warning). Each offload ring
 * (the optimizer's, the parameters') takes it as its own limit. */
size_t zero_offload_pin_limit(void);

/* The device named by a config's offload_optimizer.device. */
zero_store_device_t zero_store_device_from_config(zero_offload_device_t device);

/*
 * The one way to create the store an engine uses: the implementation for
 * @p opts->device over @p desc. Errors: ZERO_ERR_UNSUPPORTED (logged) for a
 * device this version has no store for; the chosen store's own.
 */
zero_status_t zero_store_create_for(const zero_store_options_t *opts, const zero_store_desc_t *desc,
                                    zero_store_t **store_p);

/* The host store: arrays of desc->kind, populated (no page faults later) and
 * zeroed. Errors: ZERO_ERR_INVALID_ARG (bad descriptor, logged),
 * ZERO_ERR_NO_MEMORY. */
zero_status_t zero_store_host_create(const zero_store_desc_t *desc, zero_store_t **store_p);

/* Checks @p range against the store (group, bounds, fields it has), then
 * acquires it. Errors: ZERO_ERR_INVALID_ARG (logged), or the store's. */
zero_status_t zero_store_acquire(zero_store_t *store, zero_store_range_t *range);
/* Releases @p range (@p dirty: its data was written); clears data[]. */
zero_status_t zero_store_release(zero_store_t *store, zero_store_range_t *range, int dirty);
/* A hint: [begin, begin + count) of @p group will be acquired soon. */
zero_status_t zero_store_prefetch(zero_store_t *store, int group, size_t begin, size_t count, unsigned fields);
/* Waits until every dirty release so far is where the store keeps its data
 * (the file, the server), and returns an error from that not yet returned by
 * another call (stores with asynchronous writes report their errors at the
 * next call; this is the call that leaves none unreported). */
zero_status_t zero_store_flush(zero_store_t *store);
/* The largest range (elements) one acquire or prefetch may name; 0: no bound. */
size_t zero_store_max_range(const zero_store_t *store);
/* The fields the store has: master, and one per optimizer state. */
unsigned zero_store_fields(const zero_store_t *store);
void zero_store_bytes(const zero_store_t *store, zero_store_bytes_t *bytes_p);
/* Whether the store has the step ops (step_async). */
int zero_store_has_step_async(const zero_store_t *store);
/* Whether the engine should run its elementwise updates through the step ops
 * (ops->prefer_step): the state lives outside this process. */
int zero_store_prefers_step(const zero_store_t *store);
/* Whether the store runs Lamb's phases itself (ops->steps_lamb). */
int zero_store_steps_lamb(const zero_store_t *store);

/* Whether the engine should hand the piece of @p group starting at owned
 * offset @p begin to the step ops (ops->steps_at, else prefer_step);
 * *run_end_p (may be NULL) gets the end of the run with the same answer (no
 * bound: SIZE_MAX). */
int zero_store_steps_at(const zero_store_t *store, int group, size_t begin, size_t *run_end_p);
/*
 * Fills @p step's optimizer and hyper-parameter fields from @p hp (a set of
 * zero_optim_hparams_for_step, this step's values in), leaving the range,
 * buffers and Lamb's phase and sums as they are. Lossless: the store's kernel
 * gets the very values the engine's own would.
 */
zero_status_t zero_store_step_set_hparams(zero_store_async_step_t *step, const zero_optim_hparams_t *hp);
/* Checks @p step (range, dtypes, optimizer, buffers; for Lamb the phase,
 * lamb_sums and optim) and submits it. Pipelining: a store may overlap the
 * transfers of one step call with the update of the previous; @p step->grad
 * must stay valid and unchanged until zero_store_step_wait returns (the
 * remote store sends it from there, not from a copy), or until this call
 * returns if it fails: a failure leaves nothing reading it. @p step->weights
 * (and Lamb's phase-1 sums) may be written from this call on, and are
 * complete once zero_store_step_wait returns: read or reuse them only
 * then. The remote store writes a piece's as its reply comes in, which
 * may be inside this call or a later step_async (a full window of
 * requests completes its oldest first: store_remote.c, take_slot). Where
 * grad and weights are one buffer (CPU offload's slot), their element sizes
 * must match. Errors: ZERO_ERR_INVALID_ARG (logged),
 * ZERO_ERR_UNSUPPORTED (no step op, or Lamb on a store without
 * steps_lamb), or the store's. */
zero_status_t zero_store_step_async(zero_store_t *store, const zero_store_async_step_t *step);
/* Seconds the store's own threads spent in the optimizer kernel so far
 * (ops->step_busy; 0 where the store does not count them). */
double zero_store_step_busy(const zero_store_t *store);
/* Waits for every step submitted since the last wait; the first error. */
zero_status_t zero_store_step_wait(zero_store_t *store);
/* Whether the store can undo its steps (ops->step_cancel). */
int zero_store_can_cancel(const zero_store_t *store);
/* Waits for every step submitted since the last wait and undoes them (each
 * must have been submitted undoable). Errors: ZERO_ERR_UNSUPPORTED (logged)
 * without the op, or the store's. */
zero_status_t zero_store_step_cancel(zero_store_t *store);
/*
 * The kernel of @p step over one slice in this process: the elementwise
 * lib/optim kernel with @p step's hyper-parameters, on fp32 master @p w,
 * fp32 gradient @p g32 (already converted), states @p s1, @p s2, writing
 * @p w16 (w16_type) when the training dtype is 16-bit. The host store and
 * zero-optd share it, so a remote step is bitwise the local one. Lamb: the
 * step's phase over one segment [0, n) (phase 1 writes step->lamb_sums,
 * phase 2 reads them; g32 is not read there).
 */
zero_status_t zero_store_run_kernel(const zero_optim_ctx_t *ctx, const zero_store_async_step_t *step, float *w,
                                    const float *g32, float *s1, float *s2, uint16_t *w16,
                                    zero_optim_w16_t w16_type, size_t n);

/*
 * Lamb phase 1 of @p step (its hyper-parameters) over the @p n elements at
 * @p w, @p g32, @p s1, @p s2, cut into chunks of ctx->chunk from the start:
 * per chunk its sums of w^2 (@p w_sq[i]) and u^2 (@p u_sq[i]), each formed
 * as zero_optim_lamb_phase1 forms a chunk's, so adding them from 0.0 in
 * chunk order gives that function's sums over one segment [0, n) bit for
 * bit. zero-optd answers LAMB1 with them. @p w_sq and @p u_sq hold
 * ceil(n / ctx->chunk) each. Errors: as zero_optim_lamb_phase1.
 */
zero_status_t zero_store_lamb_chunk_sums(const zero_optim_ctx_t *ctx, const zero_store_async_step_t *step, float *w,
                                         const float *g32, float *s1, float *s2, size_t n, double *w_sq,
                                         double *u_sq);

/*
 * As zero_store_run_kernel with the gradient in 16 bits: @p g16 ([n] of
 * @p g16_type, BF16 or FP16) is widened a block at a time inside the kernel
 * (zero_optim_*_step_g16), never stored as fp32. @p w16 may be @p g16 itself
 * (the kernel reads each block of gradients before it writes that block's
 * weights): CPU offload steps a transfer slot in place. Bitwise equal to
 * zero_optim_from_16 followed by zero_store_run_kernel.
 */
zero_status_t zero_store_run_kernel_g16(const zero_optim_ctx_t *ctx, const zero_store_async_step_t *step, float *w,
                                        const uint16_t *g16, zero_optim_w16_t g16_type, float *s1, float *s2,
                                        uint16_t *w16, zero_optim_w16_t w16_type, size_t n);

/* NULL allowed. */
void zero_store_destroy(zero_store_t *store);


#endif /* ZERO_OFFLOAD_STORE_H */
