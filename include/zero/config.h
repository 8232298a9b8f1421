/*
 * Configuration: a DeepSpeed-format JSON file, parsed into a typed, validated
 * structure with every default filled in.
 *
 * The file is the one a DeepSpeed user already has (ds_config.json): the batch
 * triad, "optimizer", "scheduler", "fp16"/"bf16", "gradient_clipping",
 * "zero_optimization" (with "offload_optimizer"/"offload_param"), "aio",
 * "checkpoint" and the rest. docs/config.md lists every key with its type,
 * default and meaning, and says where libzero differs from DeepSpeed.
 *
 * Reading rules, in short:
 *   - JSON with comments: `//` and `#` line comments and block comments
 *     (DeepSpeed reads configs with hjson, which accepts them). Otherwise
 *     strict: no trailing commas, no duplicate keys, nothing after the
 *     top-level object, UTF-8 only, no NUL bytes, at most
 *     ZERO_CONFIG_MAX_DEPTH levels of nesting, at most ZERO_CONFIG_MAX_BYTES
 *     bytes.
 *   - A value "auto" (as Hugging Face writes configs) means the default.
 *   - Every problem is collected, not only the first; each names its place as
 *     a dotted JSON path (`zero_optimization.offload_optimizer.device`) and,
 *     where the parser knows it, the line and column.
 *   - A misspelt key is an error that suggests the nearest known key.
 *   - Keys of DeepSpeed features outside libzero's scope (activation
 *     checkpointing, tensorboard, flops_profiler, ...) are accepted with one
 *     warning that names them all.
 *   - Keys that DeepSpeed honours, that would change what training computes,
 *     and that libzero does not implement, are errors of their own kind
 *     (ZERO_ERR_UNSUPPORTED), never silently ignored. Most of them are
 *     accepted when they hold DeepSpeed's default value.
 *
 * Memory: a zero_config_t is allocated by the library and released with
 * zero_config_destroy(); every string it points to belongs to it. The caller
 * reads the fields and must not change them (the structure grows at its end in
 * later versions; never allocate or copy one yourself).
 */
#ifndef ZERO_CONFIG_H
#define ZERO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zero/export.h>
#include <zero/status.h>
#include <zero/types.h>

ZERO_BEGIN_DECLS

/** Largest config accepted, in bytes (file or string). */
#define ZERO_CONFIG_MAX_BYTES (16u * 1024u * 1024u)
/** Deepest nesting of objects and arrays accepted (the top-level object is level 1). */
#define ZERO_CONFIG_MAX_DEPTH 64
/** At most this many problems are listed; one more line then says how many were left out. */
#define ZERO_CONFIG_MAX_PROBLEMS 1000

/** "optimizer.type". The type names are matched without regard to case. */
typedef enum zero_optimizer_type {
    ZERO_OPTIMIZER_NONE    = 0, /**< no "optimizer" block: the engine must be given one another way */
    ZERO_OPTIMIZER_ADAM    = 1, /**< "Adam": decoupled weight decay (AdamW) unless params.adam_w_mode is false */
    ZERO_OPTIMIZER_ADAMW   = 2, /**< "AdamW": always decoupled weight decay */
    ZERO_OPTIMIZER_SGD     = 3, /**< "SGD" (torch.optim.SGD semantics: momentum, dampening, nesterov) */
    ZERO_OPTIMIZER_ADAGRAD = 4, /**< "Adagrad" */
    ZERO_OPTIMIZER_LAMB    = 5, /**< "Lamb" (DeepSpeed FusedLamb: max_coeff/min_coeff trust-ratio bounds) */
    ZERO_OPTIMIZER_LION    = 6  /**< "Lion" */
} zero_optimizer_type_t;

/** "scheduler.type" (matched without regard to case). */
typedef enum zero_scheduler_type {
    ZERO_SCHEDULER_NONE             = 0, /**< no "scheduler" block: the LR stays at optimizer.params.lr */
    ZERO_SCHEDULER_WARMUP_LR        = 1, /**< "WarmupLR" */
    ZERO_SCHEDULER_WARMUP_DECAY_LR  = 2, /**< "WarmupDecayLR" */
    ZERO_SCHEDULER_WARMUP_COSINE_LR = 3, /**< "WarmupCosineLR" */
    ZERO_SCHEDULER_ONE_CYCLE        = 4, /**< "OneCycle" */
    ZERO_SCHEDULER_LR_RANGE_TEST    = 5  /**< "LRRangeTest" */
} zero_scheduler_type_t;

/** "scheduler.params.warmup_type". */
typedef enum zero_warmup_type {
    ZERO_WARMUP_LOG    = 0, /**< "log" (the default): min + (max - min) * ln(step + 1) / ln(warmup_num_steps) */
    ZERO_WARMUP_LINEAR = 1  /**< "linear": min + (max - min) * step / warmup_num_steps */
} zero_warmup_type_t;

/** "zero_optimization.offload_optimizer.device" and "...offload_param.device". */
typedef enum zero_offload_device {
    ZERO_OFFLOAD_NONE = 0, /**< "none" (the default): no offload */
    ZERO_OFFLOAD_CPU  = 1, /**< "cpu": host memory */
    ZERO_OFFLOAD_NVME = 2, /**< "nvme": files under nvme_path, staged through host memory */
    ZERO_OFFLOAD_REMOTE = 3 /**< "remote" (libzero extension, offload_optimizer only): zero-optd servers (docs/optd.md) */
} zero_offload_device_t;

/** "checkpoint.tag_validation" (matched without regard to case). */
typedef enum zero_tag_validation {
    ZERO_TAG_VALIDATION_IGNORE = 0, /**< "Ignore": ranks may save under different tags */
    ZERO_TAG_VALIDATION_WARN   = 1, /**< "Warn" (the default): differing tags are logged */
    ZERO_TAG_VALIDATION_FAIL   = 2  /**< "Fail": differing tags fail the save */
} zero_tag_validation_t;

/** "aio.io_backend". */
typedef enum zero_aio_backend {
    ZERO_AIO_ASYNC_IO = 0, /**< "async_io" (the default; "aio", "async" and "deepnvme" are aliases) */
    ZERO_AIO_POSIX    = 1  /**< "posix": plain pread/pwrite */
} zero_aio_backend_t;

/** "comm_backend" (a libzero extension): which communicator backend carries
 *  collectives on device memory, for an engine with mem_kind device that
 *  creates its own communicator. */
typedef enum zero_config_comm_backend {
    ZERO_CONFIG_COMM_AUTO   = 0, /**< "auto" (the default): nccl, or staged where two ranks share a GPU */
    ZERO_CONFIG_COMM_NCCL   = 1, /**< "nccl": NCCL only (one GPU per rank) */
    ZERO_CONFIG_COMM_STAGED = 2  /**< "staged": through pinned host memory and the host collectives */
} zero_config_comm_backend_t;

/** "optimizer": the type and its "params", defaults filled for that type. */
typedef struct zero_config_optimizer {
    zero_optimizer_type_t type;
    double lr;              /**< learning rate (Adam/AdamW/Lamb/Lion/SGD 1e-3, Adagrad 1e-2) */
    double betas[2];        /**< Adam/AdamW/Lamb (0.9, 0.999); Lion (0.9, 0.999); unused otherwise */
    double eps;             /**< Adam/AdamW/Lamb 1e-8, Adagrad 1e-10; unused for SGD and Lion */
    double weight_decay;    /**< 0 by default */
    bool adam_w_mode;       /**< effective: true = decoupled weight decay (AdamW); always true for AdamW */
    bool bias_correction;   /**< Adam/AdamW/Lamb: true by default */
    double momentum;        /**< SGD: 0 by default */
    double dampening;       /**< SGD: 0 by default */
    bool nesterov;          /**< SGD: false by default (needs momentum > 0 and dampening 0) */
    double max_coeff;       /**< Lamb: upper bound of the trust ratio, 10.0 */
    double min_coeff;       /**< Lamb: lower bound of the trust ratio, 0.01 */
    bool legacy_fusion;     /**< "optimizer.legacy_fusion": accepted, no effect (kernel choice) */
} zero_config_optimizer_t;

/** Most parameter groups of "optimizer.param_groups", group 0 ("default") included. */
#define ZERO_CONFIG_MAX_PARAM_GROUPS 64

/** Longest parameter-group name, in bytes. */
#define ZERO_CONFIG_PARAM_GROUP_NAME_MAX 63

/**
 * One entry of "optimizer.param_groups" (a libzero extension): the optimizer's
 * hyper-parameters for the parameters registered into this group, i.e.
 * "optimizer.params" with the entry's keys overriding it. The entry takes the
 * keys of "optimizer.params" for the configured type (lr, betas, eps,
 * weight_decay, momentum, dampening, nesterov, max_coeff, min_coeff,
 * bias_correction, adam_w_mode; the same checks apply).
 */
typedef struct zero_config_param_group {
    char *name;                        /**< the entry's key: 1-63 of [A-Za-z0-9_.-], not "default" */
    zero_config_optimizer_t optimizer; /**< type and legacy_fusion as "optimizer"; params overridden */
} zero_config_param_group_t;

/**
 * "scheduler": the type and its "params" with DeepSpeed's defaults. Only the
 * fields of the chosen family are meaningful; the others hold their defaults.
 */
typedef struct zero_config_scheduler {
    zero_scheduler_type_t type;
    /* WarmupLR, WarmupDecayLR */
    double warmup_min_lr;            /**< 0 */
    double warmup_max_lr;            /**< WarmupLR: optimizer.params.lr (1e-3 without an optimizer block);
                                          WarmupDecayLR: 0.001 (DeepSpeed's defaults); "auto": optimizer.params.lr */
    /* WarmupLR, WarmupDecayLR, WarmupCosineLR */
    uint64_t warmup_num_steps;       /**< 1000 (DeepSpeed uses max(2, this)) */
    zero_warmup_type_t warmup_type;  /**< log */
    /* WarmupDecayLR, WarmupCosineLR: required */
    uint64_t total_num_steps;
    /* WarmupCosineLR (ratios of optimizer.params.lr) */
    double warmup_min_ratio;         /**< 0 */
    double cos_min_ratio;            /**< 0.0001 */
    /* OneCycle */
    double cycle_min_lr;             /**< required */
    double cycle_max_lr;             /**< required */
    double decay_lr_rate;            /**< 0 */
    uint64_t cycle_first_step_size;  /**< 2000 */
    uint64_t cycle_second_step_size; /**< cycle_first_step_size */
    uint64_t cycle_first_stair_count;  /**< 0 (no staircase) */
    uint64_t cycle_second_stair_count; /**< cycle_first_stair_count */
    uint64_t decay_step_size;        /**< 0 (no decay after the cycle) */
    bool cycle_momentum;             /**< effective: requested (default true) and the optimizer has betas
                                          (without an optimizer block: as requested) */
    double cycle_min_mom;            /**< 0.8 */
    double cycle_max_mom;            /**< 0.9 */
    double decay_mom_rate;           /**< 0 */
    /* LRRangeTest */
    double lr_range_test_min_lr;     /**< 1e-3 */
    uint64_t lr_range_test_step_size; /**< 2000 */
    double lr_range_test_step_rate;  /**< 1.0 */
    bool lr_range_test_staircase;    /**< false */
} zero_config_scheduler_t;

/** "fp16": dynamic (or static) loss scaling. */
typedef struct zero_config_fp16 {
    bool enabled;                 /**< false */
    double loss_scale;            /**< 0 = dynamic; > 0 = static scale */
    uint32_t initial_scale_power; /**< 16: dynamic scaling starts at 2^16 */
    uint64_t loss_scale_window;   /**< 1000 clean steps before the scale doubles */
    uint32_t hysteresis;          /**< 2 overflows tolerated before the scale halves */
    bool consecutive_hysteresis;  /**< false: true refills hysteresis after every clean step */
    double min_loss_scale;        /**< 1 */
    bool auto_cast;               /**< false; the trainer's forward casts its own inputs */
} zero_config_fp16_t;

/** "bf16" (or the legacy "bfloat16"). */
typedef struct zero_config_bf16 {
    bool enabled;                 /**< false */
    bool immediate_grad_update;   /**< false; accepted, an implementation choice with no numerical effect here */
} zero_config_bf16_t;

/** "zero_optimization.offload_optimizer". */
typedef struct zero_config_offload_optimizer {
    zero_offload_device_t device; /**< none */
    char *nvme_path;              /**< required for nvme; NULL when not given */
    bool pin_memory;              /**< false (DeepSpeed's default) */
    uint32_t buffer_count;        /**< 4 */
    bool pipeline_read;           /**< false */
    bool pipeline_write;          /**< false */
    bool fast_init;               /**< false */
    double ratio;                 /**< 1.0: the fraction of the buckets offloaded ("cpu", device ranks) */
    char **servers;               /**< libzero extension: "host:port" of each zero-optd; required for remote */
    uint32_t num_servers;         /**< entries of servers (0 when not given) */
    bool overlap_step;            /**< false; libzero extension: "cpu" for device ranks steps offloaded buckets
                                       on the CPU while the backward still runs (stages 2-3, no clipping) */
} zero_config_offload_optimizer_t;

/** "zero_optimization.offload_param" (stage 3 only). */
typedef struct zero_config_offload_param {
    zero_offload_device_t device; /**< none */
    char *nvme_path;              /**< required for nvme; NULL when not given */
    bool pin_memory;              /**< false (DeepSpeed's default) */
    uint32_t buffer_count;        /**< 5 */
    uint64_t buffer_size;         /**< 1e8 elements */
    uint64_t max_in_cpu;          /**< 1e9 elements */
} zero_config_offload_param_t;

/** "zero_optimization". Sizes are in elements, as in DeepSpeed. */
typedef struct zero_config_zero {
    int stage;                             /**< 0..3, default 0 */
    bool contiguous_gradients;             /**< true */
    bool overlap_comm;                     /**< true for stage 3, else false */
    bool reduce_scatter;                   /**< true */
    uint64_t reduce_bucket_size;           /**< 5e8 */
    bool allgather_partitions;             /**< true */
    uint64_t allgather_bucket_size;        /**< 5e8 */
    bool use_multi_rank_bucket_allreduce;  /**< true */
    bool load_from_fp32_weights;           /**< true */
    bool elastic_checkpoint;               /**< false; libzero reshards any checkpoint anyway */
    bool ignore_unused_parameters;         /**< true */
    bool round_robin_gradients;            /**< false */
    uint64_t sub_group_size;               /**< 1e9 */
    uint64_t stage3_prefetch_bucket_size;         /**< 5e7 */
    uint64_t stage3_param_persistence_threshold;  /**< 1e5 */
    uint64_t stage3_model_persistence_threshold;  /**< INT64_MAX (no bound) */
    uint64_t stage3_max_live_parameters;          /**< 1e9 */
    uint64_t stage3_max_reuse_distance;           /**< 1e9 */
    bool stage3_gather_16bit_weights_on_model_save; /**< false */
    uint64_t stage3_module_granularity_threshold; /**< 0 */
    bool stage3_use_all_reduce_for_fetch_params;  /**< false */
    zero_config_offload_optimizer_t offload_optimizer;
    zero_config_offload_param_t offload_param;
    /** false; libzero extension: digest each gradient at zero_grad_ready and
     *  check it is unchanged when its bucket is reduced and at
     *  zero_backward_end (always on in a buildtype=debug build of libzero) */
    bool check_grad_writes;
    /** false; ZeRO++ qwZ: at stage 3 the weights' gathers travel as int8
     *  with a float scale per 256 elements and are decoded on arrival (the
     *  step's fp32 master weights are not quantized) */
    bool zero_quantized_weights;
    /** false; ZeRO++ qgZ: at stage 3 the gradients' reduce-scatter travels
     *  as int8 with a float scale per 256 elements through an all-to-all and
     *  is summed in fp32 */
    bool zero_quantized_gradients;
    /** 1; ZeRO++ hpZ: at stage 3, with P > 1, every group of P consecutive
     *  ranks (a node) keeps a secondary copy of the 16-bit weights
     *  partitioned P ways, refreshed after each step by one all-gather over
     *  all ranks; the gathers of the forward and backward read it within the
     *  group. P divides the world size; host memory only, and not with
     *  offload_param "nvme" (zero_engine_create refuses both). */
    uint64_t zero_hpz_partition_size;
} zero_config_zero_t;

/** "aio": asynchronous I/O for NVMe offload. */
typedef struct zero_config_aio {
    zero_aio_backend_t io_backend;  /**< async_io */
    uint64_t block_size;            /**< 1048576 bytes */
    uint32_t queue_depth;           /**< 8 */
    uint32_t intra_op_parallelism;  /**< 1 (the older key "thread_count" is an alias) */
    bool single_submit;             /**< false */
    bool overlap_events;            /**< true */
} zero_config_aio_t;

/** "checkpoint". */
typedef struct zero_config_checkpoint {
    zero_tag_validation_t tag_validation; /**< Warn */
    bool load_universal;                  /**< false; accepted, libzero reshards natively */
} zero_config_checkpoint_t;

/** The effective configuration: every default filled, the batch triad resolved. */
typedef struct zero_config {
    /**
     * The data-parallel world size the triad was resolved against: the one
     * given to the parse call, or, when that was 0, the one the file implies
     * (all three batch keys given), else 0 (unknown).
     */
    uint32_t world_size;
    /**
     * The batch triad: train_batch_size = train_micro_batch_size_per_gpu *
     * gradient_accumulation_steps * world_size. With a known world size all
     * three are set. With an unknown one, a value that cannot be derived yet
     * is 0.
     */
    uint64_t train_batch_size;
    uint64_t train_micro_batch_size_per_gpu;
    uint64_t gradient_accumulation_steps;

    /** ZERO_FP16 when fp16.enabled, ZERO_BF16 when bf16.enabled, else ZERO_FP32. */
    zero_dtype_t precision;
    zero_config_fp16_t fp16;
    zero_config_bf16_t bf16;

    double gradient_clipping;    /**< global L2-norm bound; 0 = off (the default, as in DeepSpeed) */
    uint64_t steps_per_print;    /**< 10; 0 = never */
    bool wall_clock_breakdown;   /**< false */
    bool memory_breakdown;       /**< false */
    bool dataloader_drop_last;   /**< false: the distributed sampler keeps the last partial batch */
    bool zero_allow_untested_optimizer; /**< false; accepted (every libzero optimizer is tested) */
    bool zero_force_ds_cpu_optimizer;   /**< true; accepted */
    zero_config_comm_backend_t comm_backend; /**< ZERO_CONFIG_COMM_AUTO; libzero extension */

    zero_config_optimizer_t optimizer;
    zero_config_scheduler_t scheduler;
    zero_config_zero_t zero_optimization;
    zero_config_aio_t aio;
    zero_config_checkpoint_t checkpoint;
    /* appended later: the fields above keep their offsets */
    /**
     * "optimizer.param_groups" (libzero extension), in the order the config
     * lists them: entry i is parameter group i + 1 of an engine (group 0,
     * "default", is "optimizer.params" itself). NULL and 0 without the key.
     */
    zero_config_param_group_t *param_groups;
    uint32_t num_param_groups;
} zero_config_t;

/**
 * Parses the DeepSpeed-format config file at @p path.
 *
 * @param path        the file (at most ZERO_CONFIG_MAX_BYTES bytes).
 * @param world_size  the data-parallel world size to resolve the batch triad
 *                    against, or 0 for "unknown": the triad is then resolved as
 *                    far as the file allows and config->world_size says which
 *                    world size the file implies (0 if none).
 * @param config_p    receives the new configuration on success (untouched on
 *                    failure). Release it with zero_config_destroy().
 * @param problems_p  may be NULL. Otherwise it always receives (on success and
 *                    on failure) a library-allocated text with one line per
 *                    problem, or NULL when there is nothing to report. Each line
 *                    reads "SOURCE:LINE:COLUMN: SEVERITY: PATH: message" (or
 *                    "SOURCE: SEVERITY: PATH: message" where no position
 *                    applies), SEVERITY being "error", "unsupported" or
 *                    "warning". Release it with zero_string_free().
 *
 * Logging: when @p problems_p is NULL the call logs every problem itself
 * (errors and unsupported keys at ERROR, warnings at WARN level, module
 * "config"), so nothing is lost. When @p problems_p is not NULL the caller has
 * taken the problems over and the call logs none of them (only a DEBUG
 * summary), so a tool that prints the list does not print anything twice.
 *
 * @return ZERO_OK (warnings may have been reported);
 *         ZERO_ERR_CONFIG when at least one error was found (syntax, type,
 *         range, unknown key, inconsistency);
 *         ZERO_ERR_UNSUPPORTED when the only problems are keys libzero does
 *         not implement;
 *         ZERO_ERR_IO when the file cannot be opened or read (the errno text is
 *         in the problem text);
 *         ZERO_ERR_INVALID_ARG for a NULL @p path or @p config_p;
 *         ZERO_ERR_NO_MEMORY.
 *
 * Thread safety: may be called from several threads at once.
 */
ZERO_API zero_status_t zero_config_parse_file(const char *path, uint32_t world_size,
                                              zero_config_t **config_p, char **problems_p);

/**
 * As zero_config_parse_file(), for a config held in memory: @p length bytes at
 * @p text (no terminating NUL needed; a NUL byte inside is an error). Problem
 * lines name the source "<string>".
 */
ZERO_API zero_status_t zero_config_parse_string(const char *text, size_t length, uint32_t world_size,
                                                zero_config_t **config_p, char **problems_p);

/**
 * Releases a configuration and every string it owns. NULL is allowed.
 * Thread safety: not while another thread still reads the configuration.
 */
ZERO_API void zero_config_destroy(zero_config_t *config);

/**
 * Renders the effective configuration as DeepSpeed-format JSON (pretty-printed,
 * two-space indent, trailing newline): every key with its effective value,
 * "auto" and deprecated spellings resolved to their canonical keys. Parsing the
 * text again with the same world size gives an equal configuration. Keys of the
 * batch triad that are still unknown (world size unknown) are left out.
 *
 * @param config  the configuration (not NULL).
 * @param json_p  receives the library-allocated text on success; release it
 *                with zero_string_free().
 * @return ZERO_OK, ZERO_ERR_INVALID_ARG (a NULL argument), ZERO_ERR_NO_MEMORY.
 * Thread safety: may be called concurrently on the same configuration.
 */
ZERO_API zero_status_t zero_config_to_json(const zero_config_t *config, char **json_p);

/** DeepSpeed's spelling of an optimizer type ("Adam", "AdamW", ...; "none"); never NULL. */
ZERO_API const char *zero_optimizer_type_string(zero_optimizer_type_t type);

/** DeepSpeed's spelling of a scheduler type ("WarmupLR", ...; "none"); never NULL. */
ZERO_API const char *zero_scheduler_type_string(zero_scheduler_type_t type);

/** "none", "cpu" or "nvme" ("unknown" otherwise); never NULL. */
ZERO_API const char *zero_offload_device_string(zero_offload_device_t device);

ZERO_END_DECLS

#endif /* ZERO_CONFIG_H */
