/*
 * zero-estimate's arithmetic, apart from its command line so that tests can
 * check every figure directly (tests/estimate/).
 *
 * Three families of figures, all per rank unless the name says per node:
 *   - the ZeRO paper's model-state formulas (Rajbhandari et al., SC'20,
 *     arXiv:1910.02054, section 5.1), generalised to the training dtype and the
 *     optimizer's bytes per parameter K, and split into device, host and NVMe
 *     by the offload choice;
 *   - DeepSpeed's own estimators, verbatim
 *     (estimate_zero2_model_states_mem_needs and
 *     estimate_zero3_model_states_mem_needs, deepspeed/runtime/zero/);
 *   - the buffers a config implies (reduce and allgather buckets, stage-3
 *     gathered parameters and prefetch, NVMe staging buffers) and the
 *     communication volume per optimizer step with its time at a bus bandwidth.
 *
 * Sizes are bytes held in doubles (exact below 2^53, i.e. 9e15 bytes).
 * docs/estimate.md gives every formula and its source.
 */
#ifndef ZERO_TOOLS_ESTIMATE_H
#define ZERO_TOOLS_ESTIMATE_H

#include <stdbool.h>
#include <stdint.h>
#include <zero/config.h>
#include <zero/types.h>

/* The optimizer decides K, the bytes of optimizer state per parameter. */
typedef enum zero_est_optimizer {
    ZERO_EST_OPT_ADAM = 0,     /* Adam: fp32 exp_avg + exp_avg_sq */
    ZERO_EST_OPT_ADAMW,        /* as Adam */
    ZERO_EST_OPT_LAMB,         /* as Adam */
    ZERO_EST_OPT_SGD,          /* no state (momentum 0) */
    ZERO_EST_OPT_SGD_MOMENTUM, /* one fp32 momentum buffer */
    ZERO_EST_OPT_ADAGRAD,      /* one fp32 sum of squares */
    ZERO_EST_OPT_LION          /* one fp32 exp_avg */
} zero_est_optimizer_t;

typedef struct zero_est_input {
    double params;                /* Psi, total parameters (> 0) */
    double largest_layer;         /* parameters of the largest layer (0 = unknown) */
    uint32_t world_size;          /* N_d, data-parallel ranks (>= 1) */
    uint32_t ranks_per_node;      /* 1 .. world_size */
    int stage;                    /* 0..3 */
    zero_offload_device_t offload_optimizer; /* stages 1-3 */
    zero_offload_device_t offload_param;     /* stage 3 only */
    zero_dtype_t dtype;           /* training dtype: parameters, gradients, communication */
    zero_est_optimizer_t optimizer;
    uint64_t grad_accum;          /* micro-batches per optimizer step (>= 1) */
    /* config-implied buffers, in elements as in DeepSpeed */
    double reduce_bucket_size;
    double allgather_bucket_size;
    double prefetch_bucket_size;
    double max_live_parameters;
    bool overlap_comm;
    double sub_group_size;
    uint32_t optimizer_buffer_count;  /* offload_optimizer.buffer_count (NVMe staging) */
    uint32_t param_buffer_count;      /* offload_param.buffer_count */
    double param_buffer_size;         /* offload_param.buffer_size, elements */
    double param_max_in_cpu;          /* offload_param.max_in_cpu, elements: with nvme, the first this many of
                                       * the rank's parameter partition stay in host memory (DeepSpeed's) */
    double bandwidth_gbps;            /* bus bandwidth, GB/s (1e9 bytes/s), > 0 */
} zero_est_input_t;

typedef struct zero_est_result {
    uint32_t nodes;                /* ceil(world_size / ranks_per_node) */
    int bytes_per_elem;            /* training dtype: 2 or 4 */
    int k;                         /* optimizer bytes per parameter (paper's K) */

    /* paper: model states per rank, wherever they live */
    double params_bytes;           /* 16-bit (or fp32) working parameters */
    double grads_bytes;            /* gradients in the training dtype */
    double optim_bytes;            /* K bytes per owned parameter */
    double model_states_bytes;     /* the three above */
    double baseline_bytes;         /* stage 0: (2*b + K) * Psi, the paper's baseline */

    /* where they live */
    double device_states_bytes;
    double host_states_bytes;
    double nvme_states_bytes;

    /* buffers implied by the config */
    double reduce_bucket_bytes;    /* gradient bucket(s) on the device */
    double allgather_bucket_bytes; /* stages 1-2: parameter allgather chunk */
    double gathered_params_bytes;  /* stage 3: bound on gathered 16-bit parameters */
    double layer_grads_bytes;      /* stage 3: full gradient of the largest layer */
    double prefetch_bucket_bytes;  /* stage 3: informational, inside gathered_params_bytes */
    double host_staging_bytes;     /* fp32 gradient slice for the host optimizer, NVMe staging */
    double device_total_bytes;
    double host_total_bytes;       /* per rank */
    double host_total_node_bytes;  /* per node: ranks_per_node * host_total_bytes */

    /* DeepSpeed's estimators (mixed-precision Adam assumed); valid flags */
    bool ds_valid;
    double ds_gpu_bytes;           /* per GPU */
    double ds_cpu_bytes;           /* per node ("per CPU"), zero_init=1 for stage 3 */
    double ds_cpu_no_init_bytes;   /* per node, stage 3 without zero.Init; = ds_cpu_bytes for stage 1-2 */
    double ds_largest_layer_bytes; /* stage 3: 4 * largest_layer */

    /* communication per optimizer step */
    double comm_paper_elements;    /* the paper's volume: 2*Psi (stages 0-2), 3*Psi (stage 3), per micro-batch step */
    double comm_elements_per_step; /* collective payload per step, with grad_accum micro-batches */
    double comm_bytes_per_rank;    /* bytes each rank sends per step (ring: (N-1)/N of each payload) */
    double comm_time_s;            /* comm_bytes_per_rank / bandwidth */
} zero_est_result_t;

/* Bytes of optimizer state per parameter (K) for an optimizer and training dtype. */
int zero_est_k(zero_est_optimizer_t optimizer, zero_dtype_t dtype);

/* "Adam", "SGD (momentum)", ... */
const char *zero_est_optimizer_string(zero_est_optimizer_t optimizer);

/* Parses adam|adamw|lamb|sgd|sgd-momentum|adagrad|lion (any case); 0 or -1. */
int zero_est_optimizer_parse(const char *text, zero_est_optimizer_t *out);

/* Parses a count: 7.5e9, 7500000000, 7.5B, 1.3M, 350K, 1T (suffixes any case,
 * powers of ten). Positive, finite, at most 1e18; the result is rounded to an
 * integer. 0 or -1. */
int zero_est_count_parse(const char *text, double *out);

/* Fills @p in with DeepSpeed's defaults: world size 1, one rank per node,
 * stage 0, fp16, Adam, no offload, buckets 5e8/5e8, prefetch 5e7, max live
 * 1e9, sub_group_size 1e9, buffer counts 4/5, param buffer 1e8, 50 GB/s. */
void zero_est_input_defaults(zero_est_input_t *in);

/* Checks @p in; on a problem writes a message naming the option into @p why
 * and returns -1, else 0. */
int zero_est_check(const zero_est_input_t *in, char *why, size_t why_len);

/* Computes every figure. @p in must have passed zero_est_check(). */
void zero_est_compute(const zero_est_input_t *in, zero_est_result_t *out);

/* DeepSpeed's estimators alone, as in deepspeed/runtime/zero/stage_1_and_2.py
 * and stage3.py (additional_buffer_factor 1.5). Bytes; the figures DeepSpeed
 * prints are these divided by 2^30. */
void zero_est_ds_zero2(double params, uint32_t gpus_per_node, uint32_t nodes, bool cpu_offload,
                       double *cpu_p, double *gpu_p);
void zero_est_ds_zero3(double params, double largest_layer, uint32_t gpus_per_node, uint32_t nodes,
                       bool cpu_offload, bool cpu_offload_params, bool zero_init,
                       double *cpu_p, double *gpu_p);

#endif /* ZERO_TOOLS_ESTIMATE_H */
