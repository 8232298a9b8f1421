/*
 * Engine life cycle: create (config, communicator, kernels, schedule, scaler),
 * parameter registration, setup (partition, buffers, initial values), getters.
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_gather.h"
#include "zero/engine_grad_slice.h"
#include "zero/engine_step.h"

#include "util/alloc.h"
#include "util/cuda_module.h"
#include "util/half.h"
#include "util/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- create ---- */

static zero_status_t map_schedule(zero_engine_h e)
{
    const zero_config_t *c = e->config;
    const zero_config_scheduler_t *s = &c->scheduler;
    zero_lr_schedule_params_t p;
    zero_lr_schedule_type_t type;

    switch (s->type) {
    case ZERO_SCHEDULER_NONE:             type = ZERO_LR_CONSTANT; break;
    case ZERO_SCHEDULER_WARMUP_LR:        type = ZERO_LR_WARMUP; break;
    case ZERO_SCHEDULER_WARMUP_DECAY_LR:  type = ZERO_LR_WARMUP_DECAY; break;
    case ZERO_SCHEDULER_WARMUP_COSINE_LR: type = ZERO_LR_WARMUP_COSINE; break;
    case ZERO_SCHEDULER_ONE_CYCLE:        type = ZERO_LR_ONE_CYCLE; break;
    case ZERO_SCHEDULER_LR_RANGE_TEST:    type = ZERO_LR_RANGE_TEST; break;
    default:
        engine_error(e, ZERO_ERR_UNSUPPORTED, "scheduler.type %d is not known to the engine", (int)s->type);
        return ZERO_ERR_UNSUPPORTED;
    }
    zero_lr_schedule_defaults(&p, type);
    p.base_lr = c->optimizer.lr;
    p.warmup_min_lr = s->warmup_min_lr;
    p.warmup_max_lr = s->warmup_max_lr;
    p.warmup_num_steps = (int64_t)s->warmup_num_steps;
    p.warmup_type = s->warmup_type;
    p.total_num_steps = (int64_t)s->total_num_steps;
    p.warmup_min_ratio = s->warmup_min_ratio;
    p.cos_min_ratio = s->cos_min_ratio;
    p.cycle_first_step_size = (int64_t)s->cycle_first_step_size;
    p.cycle_second_step_size = (int64_t)s->cycle_second_step_size;
    p.cycle_first_stair_count = (int64_t)s->cycle_first_stair_count;
    p.cycle_second_stair_count = (int64_t)s->cycle_second_stair_count;
    p.decay_step_size = (int64_t)s->decay_step_size;
    p.cycle_min_lr = s->cycle_min_lr;
    p.cycle_max_lr = s->cycle_max_lr;
    p.decay_lr_rate = s->decay_lr_rate;
    p.cycle_momentum = s->cycle_momentum;
    p.cycle_min_mom = s->cycle_min_mom;
    p.cycle_max_mom = s->cycle_max_mom;
    p.decay_mom_rate = s->decay_mom_rate;
    p.lr_range_test_min_lr = s->lr_range_test_min_lr;
    p.lr_range_test_step_size = (int64_t)s->lr_range_test_step_size;
    p.lr_range_test_step_rate = s->lr_range_test_step_rate;
    p.lr_range_test_staircase = s->lr_range_test_staircase;
    uint64_t mark = zero_log_error_mark();
    if (zero_lr_schedule_init(&e->schedule, &p) != ZERO_OK) {
        engine_keep_error(e, mark, "scheduler: parameters rejected by the schedule");
        return ZERO_ERR_CONFIG;
    }
    return ZERO_OK;
}

static zero_status_t map_scaler(zero_engine_h e)
{
    const zero_config_fp16_t *f = &e->config->fp16;
    zero_loss_scaler_params_t p;
    zero_loss_scaler_defaults(&p);
    if (f->enabled) {
        p.dynamic = f->loss_scale == 0.0;
        p.static_scale = f->loss_scale > 0.0 ? f->loss_scale : 1.0;
        p.initial_scale_power = (int)f->initial_scale_power;
        p.scale_window = (int64_t)f->loss_scale_window;
        p.hysteresis = (int)f->hysteresis;
        p.consecutive_hysteresis = f->consecutive_hysteresis;
        p.min_scale = f->min_loss_scale;
    } else {
        p.dynamic = 0;
        p.static_scale = 1.0;
    }
    uint64_t mark = zero_log_error_mark();
    if (zero_loss_scaler_init(&e->scaler, &p) != ZERO_OK) {
        engine_keep_error(e, mark, "fp16: loss-scaler parameters rejected");
        return ZERO_ERR_CONFIG;
    }
    return ZERO_OK;
}

static int default_threads(zero_comm_h comm)
{
    const char *env = getenv("ZERO_NUM_THREADS");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int local = zero_comm_local_size(comm);
    if (env != NULL && *env != '\0') {
        char *end;
        long n = strtol(env, &end, 10);
        if (*end == '\0' && n >= 1 && n <= 1024)
            return (int)n;
        ZERO_LOG_WARN("ZERO_NUM_THREADS=\"%s\" is not a count in 1..1024; ignoring it", env);
    }
    if (cores < 1)
        cores = 1;
    if (local < 1)
        local = 1;
    return cores / local >= 1 ? (int)(cores / local) : 1;
}

/* The config's comm_backend, read before the communicator exists (the full
 * parse needs its world size): a quiet parse with the world size unknown.
 * A config that does not parse leaves the default; the full parse says why. */
static void config_comm_backends(const zero_engine_params_t *params, int have_path, zero_comm_params_t *cp)
{
    zero_config_t *c = NULL;
    char *problems = NULL;
    zero_status_t st = have_path ? zero_config_parse_file(params->config_path, 0, &c, &problems)
                                 : zero_config_parse_string(params->config_json, strlen(params->config_json), 0, &c,
                                                            &problems);
    zero_string_free(problems);
    if (st != ZERO_OK)
        return;
    if (c->comm_backend != ZERO_CONFIG_COMM_AUTO) {
        cp->field_mask |= ZERO_COMM_PARAM_FIELD_BACKENDS;
        cp->backends = ZERO_COMM_BACKEND_SELF | ZERO_COMM_BACKEND_UCX |
                       (c->comm_backend == ZERO_CONFIG_COMM_NCCL ? ZERO_COMM_BACKEND_NCCL : ZERO_COMM_BACKEND_STAGED);
    }
    zero_config_destroy(c);
}

/*
 * What the offload blocks ask for, checked at create, beyond what the config
 * checked when it was parsed (lib/config/config_schema.c, the one place for
 * these: nvme_path required with "nvme", optimizer offload only at stages
 * 1-3, offload_param ignored with a warning below stage 3). Optimizer state
 * on NVMe (lib/offload/store_nvme.c) or on zero-optd servers
 * (store_remote.c) is reached through the engine's store; "cpu" is where a
 * host rank's state already is (a device rank's goes to the CPU offload
 * store, check_device_offload). Parameters on NVMe: not with remote
 * optimizer state.
 */
static zero_status_t check_offload(zero_engine_h e)
{
    const zero_config_zero_t *z = &e->config->zero_optimization;
    zero_offload_device_t opt = z->offload_optimizer.device;
    if (z->offload_param.device == ZERO_OFFLOAD_NVME && z->stage == 3 && opt == ZERO_OFFLOAD_REMOTE) {
        /* the remote step writes the weights after it returns, into memory that must stay put */
        engine_error(e, ZERO_ERR_UNSUPPORTED, "zero_optimization.offload_param.device \"nvme\" with "
                     "offload_optimizer.device \"remote\" is not implemented in this version");
        return ZERO_ERR_UNSUPPORTED;
    }
    if ((opt == ZERO_OFFLOAD_CPU || z->offload_param.device == ZERO_OFFLOAD_CPU) && e->ops->host_readable)
        ZERO_LOG_INFO("zero_optimization.offload_*.device \"cpu\": this rank trains in host memory, where its "
                      "optimizer state and parameters already are%s",
                      z->offload_optimizer.ratio < 1.0 ? " (offload_optimizer.ratio has no effect)" : "");
    return ZERO_OK;
}

/*
 * Offload for ranks that train in device memory: offload_optimizer "cpu" at
 * stages 1-3 is the CPU offload store (lib/offload/store_cpu.c: the state in
 * host memory, the step on the CPU, gradients and weights through pinned
 * slots), "nvme" and "remote" the same store over the NVMe store's file or
 * zero-optd servers (the factory, zero_store_create_for, picks it for a
 * device descriptor); offload_param "cpu" at stage 3 keeps the weight shards
 * in host memory (lib/offload/param_host.h, uploaded at each gather). The
 * rest is refused, not half-done: ratio < 1 and overlap_step other than with
 * "cpu", and offload_param "nvme" (below stage 3 the config ignores
 * offload_param with a warning).
 */
static zero_status_t check_device_offload(zero_engine_h e)
{
    const zero_config_zero_t *z = &e->config->zero_optimization;
    zero_offload_device_t opt = z->offload_optimizer.device;
    if (e->ops->host_readable)
        return ZERO_OK;
    if (z->offload_param.device == ZERO_OFFLOAD_CPU && z->stage == 3 &&
        (z->zero_hpz_partition_size > 1 || z->zero_quantized_weights)) {
        /* hpZ's refresh reads the shards in device memory, and qwZ's encode
         * is not ordered after the shard's upload */
        engine_error(e, ZERO_ERR_UNSUPPORTED, "zero_optimization.%s with offload_param.device \"cpu\" and mem_kind "
                     "%s: not supported together in this version",
                     z->zero_hpz_partition_size > 1 ? "zero_hpz_partition_size" : "zero_quantized_weights",
                     zero_mem_kind_string(e->kind));
        return ZERO_ERR_UNSUPPORTED;
    }
    if ((opt == ZERO_OFFLOAD_NVME || opt == ZERO_OFFLOAD_REMOTE) &&
        (z->offload_optimizer.ratio < 1.0 || z->offload_optimizer.overlap_step)) {
        /* ratio picks buckets for host memory and overlap_step keeps an undo
         * copy of them there: neither is built for state in the NVMe file or
         * on zero-optd servers */
        engine_error(e, ZERO_ERR_UNSUPPORTED, "zero_optimization.offload_optimizer.%s with device \"%s\" and "
                     "mem_kind %s: only with device \"cpu\" in this version",
                     z->offload_optimizer.ratio < 1.0 ? "ratio < 1" : "overlap_step",
                     zero_offload_device_string(opt), zero_mem_kind_string(e->kind));
        return ZERO_ERR_UNSUPPORTED;
    }
    if (z->offload_param.device == ZERO_OFFLOAD_NVME && z->stage == 3) {
        engine_error(e, ZERO_ERR_UNSUPPORTED, "zero_optimization.offload_param.device \"nvme\" with mem_kind %s: "
                     "only \"cpu\" is implemented for ranks that train in device memory in this version",
                     zero_mem_kind_string(e->kind));
        return ZERO_ERR_UNSUPPORTED;
    }
    return ZERO_OK;
}

/* ZeRO++ hpZ: the communicator of this rank's group of zero_hpz_partition_size
 * consecutive ranks (DeepSpeed's grouping), split from the engine's. The
 * config checked that the size divides the world. */
static zero_status_t setup_hpz(zero_engine_h e)
{
    uint64_t P = e->config->zero_optimization.zero_hpz_partition_size;
    uint64_t mark = zero_log_error_mark();
    zero_status_t status;

    if (P <= 1)
        return ZERO_OK;
    if (e->stage != 3) {
        if (e->rank == 0)
            ZERO_LOG_WARN("zero_optimization.zero_hpz_partition_size has no effect at stage %d: only stage 3 "
                          "gathers weights (as in DeepSpeed)", e->stage);
        return ZERO_OK;
    }
    if ((uint64_t)e->world % P != 0) {   /* the config was parsed against this world: a guard only */
        engine_error(e, ZERO_ERR_CONFIG, "zero_optimization.zero_hpz_partition_size %llu does not divide the world "
                     "size %d", (unsigned long long)P, e->world);
        return ZERO_ERR_CONFIG;
    }
    if (e->config->zero_optimization.offload_param.device == ZERO_OFFLOAD_NVME) {
        /* the secondary copy is refreshed from the shards in memory; with
         * offload_param "nvme" they are in a file */
        engine_error(e, ZERO_ERR_UNSUPPORTED, "zero_optimization.zero_hpz_partition_size with "
                     "offload_param.device \"nvme\": not supported together in this version");
        return ZERO_ERR_UNSUPPORTED;
    }
    if (P == (uint64_t)e->world)
        return ZERO_OK;   /* one group: the secondary copy would be the shards' allgather itself */
    /* In device memory over NCCL this is a second NCCL communicator whose
     * gathers overlap the job's reduce-scatters on another stream: safe only
     * because every rank issues them in one order (comm.md, split
     * communicators); keep the engine's collective sequence rank-independent. */
    status = zero_comm_split(e->comm, e->rank / (int)P, e->rank, &e->hpz_comm);
    if (status != ZERO_OK) {
        engine_keep_error(e, mark, "zero_hpz_partition_size %llu: cannot make the group's communicator: %s",
                          (unsigned long long)P, zero_status_string(status));
        return status;
    }
    e->hpz = (int)P;
    e->hpz_rank = zero_comm_rank(e->hpz_comm);
    e->hpz_stale = 1;
    if (zero_comm_cross_size(e->hpz_comm) > 1 && e->rank % (int)P == 0)
        ZERO_LOG_WARN("zero_hpz_partition_size %llu: the group of ranks %d..%d spans %d nodes (LOCAL_SIZE %d), so "
                      "its gathers cross nodes; use the ranks per node", (unsigned long long)P, e->rank,
                      e->rank + (int)P - 1, zero_comm_cross_size(e->hpz_comm), zero_comm_local_size(e->comm));
    return ZERO_OK;
}

/* ZeRO++ qgZ across nodes: hierarchical (comm/quant_coll.h) when the job is
 * nodes of equal size > 1 with its ranks numbered node by node (every rank
 * checks its own place; they agree by one allreduce), flat otherwise. */
static zero_status_t setup_qgz_hier(zero_engine_h e)
{
    int P = zero_comm_local_size(e->comm), N = zero_comm_cross_size(e->comm);
    uint8_t off = 0, any_off = 0;
    uint64_t mark = zero_log_error_mark();
    zero_status_t status;

    if (!e->quantized_gradients || e->world < 4 || P < 2 || N < 2)
        return ZERO_OK;
    off = P * N != e->world || e->rank != zero_comm_cross_rank(e->comm) * P + zero_comm_local_rank(e->comm);
    status = zero_comm_allreduce(e->comm, &off, &any_off, 1, ZERO_U8, ZERO_COMM_MAX, ZERO_MEM_HOST);
    if (status == ZERO_OK && any_off) {
        if (e->rank == 0)
            ZERO_LOG_WARN("zero_quantized_gradients: the ranks are not nodes of equal size numbered node by node "
                          "(LOCAL_SIZE %d, %d nodes): the gradients are reduced in one level over all ranks", P, N);
        return ZERO_OK;
    }
    if (status == ZERO_OK) {
        if (e->hpz_comm != NULL && e->hpz == P)
            e->qgz_node = e->hpz_comm;   /* hpZ's group is the node */
        else
            status = zero_comm_split(e->comm, zero_comm_cross_rank(e->comm), zero_comm_local_rank(e->comm),
                                     &e->qgz_node);
    }
    if (status == ZERO_OK)
        status = zero_comm_split(e->comm, zero_comm_local_rank(e->comm), zero_comm_cross_rank(e->comm), &e->qgz_cross);
    if (status != ZERO_OK)
        engine_keep_error(e, mark, "zero_quantized_gradients: cannot make the node communicators: %s",
                          zero_status_string(status));
    return status;
}

zero_status_t zero_engine_create(const zero_engine_params_t *params, zero_engine_h *engine_p)
{
    zero_status_t status;
    zero_engine_h e;
    uint64_t mask;
    int have_path, have_json, threads;
    uint64_t mark;

    if (params == NULL || engine_p == NULL) {
        ZERO_LOG_ERROR("zero_engine_create: params and engine_p must not be NULL");
        return ZERO_ERR_INVALID_ARG;
    }
    mask = params->field_mask;
    have_path = (mask & ZERO_ENGINE_PARAM_FIELD_CONFIG_PATH) && params->config_path != NULL;
    have_json = (mask & ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON) && params->config_json != NULL;
    if (have_path == have_json) {
        ZERO_LOG_ERROR("zero_engine_create: set exactly one of config_path and config_json");
        return ZERO_ERR_INVALID_ARG;
    }
    e = zero_calloc(1, sizeof(*e));
    if (e == NULL) {
        ZERO_LOG_ERROR("out of memory creating an engine");
        return ZERO_ERR_NO_MEMORY;
    }
    e->seed = (mask & ZERO_ENGINE_PARAM_FIELD_SEED) ? params->seed : 0;
    e->kind = (mask & ZERO_ENGINE_PARAM_FIELD_MEM_KIND) ? params->mem_kind : ZERO_MEM_HOST;
    e->manual_lr_schedule = (mask & ZERO_ENGINE_PARAM_FIELD_MANUAL_LR_SCHEDULE) ? params->manual_lr_schedule != 0 : 0;
    if ((mask & ZERO_ENGINE_PARAM_FIELD_CHECKPOINT_KEEP_LAST) && params->checkpoint_keep_last > 0)
        e->checkpoint_keep_last = params->checkpoint_keep_last;
    if (e->kind == ZERO_MEM_PINNED) {
        /* Not silently turned into host memory: page-locking the model state buys
         * nothing while the engine trains in host memory (pinning serves DMA to a
         * device), and without CUDA it would mean mlock'ing every buffer, which
         * RLIMIT_MEMLOCK (often 8 MiB) forbids for any real model. */
        ZERO_LOG_ERROR("zero_engine_create: mem_kind pinned is not supported: the engine keeps its model state "
                       "in host memory (ZERO_MEM_HOST); page-locked memory only speeds up transfers to a device, "
                       "and this version does not train on one");
        zero_free(e);
        return ZERO_ERR_UNSUPPORTED;
    }
    if (e->kind != ZERO_MEM_HOST && e->kind != ZERO_MEM_DEVICE) {
        ZERO_LOG_ERROR("zero_engine_create: mem_kind %d is not a memory kind the engine trains in (host or device)",
                       (int)params->mem_kind);
        zero_free(e);
        return ZERO_ERR_INVALID_ARG;
    }
    /* The table of the kind's arithmetic, before anything is set up: a build
     * or a machine that cannot train in device memory says so first. */
    e->ops = engine_ops_for_kind(e->kind);
    if (e->ops == NULL) {
        char what[96];
        snprintf(what, sizeof(what), "zero_engine_create: training in %s memory (mem_kind %s)",
                 zero_mem_kind_string(e->kind), zero_mem_kind_string(e->kind));
        status = zero_cuda_require(what);   /* logs why: no CUDA in this build */
        zero_free(e);
        return status != ZERO_OK ? status : ZERO_ERR_UNSUPPORTED;
    }
    e->cuda_stream = (mask & ZERO_ENGINE_PARAM_FIELD_CUDA_STREAM) ? params->cuda_stream : NULL;
    e->cuda_device = (mask & ZERO_ENGINE_PARAM_FIELD_CUDA_DEVICE) && params->cuda_device >= 0 ? params->cuda_device : -1;

    if ((mask & ZERO_ENGINE_PARAM_FIELD_COMM) && params->comm != NULL) {
        e->comm = params->comm;
    } else {
        /* The communicator's device (for NCCL) is the engine's, and so is its
         * device backend (comm_backend). */
        zero_comm_params_t cp = ZERO_COMM_PARAMS_INIT;
        if (e->cuda_device >= 0) {
            cp.field_mask |= ZERO_COMM_PARAM_FIELD_CUDA_DEVICE;
            cp.cuda_device = e->cuda_device;
        }
        if (e->kind == ZERO_MEM_DEVICE)
            config_comm_backends(params, have_path, &cp);
        status = zero_comm_create(&cp, &e->comm);
        if (status != ZERO_OK)
            goto err;
        e->owns_comm = 1;
    }
    e->rank = zero_comm_rank(e->comm);
    e->world = zero_comm_size(e->comm);

    /* The config is parsed against the real world size; problems are logged by the parser. */
    if (have_path)
        status = zero_config_parse_file(params->config_path, (uint32_t)e->world, &e->config, NULL);
    else
        status = zero_config_parse_string(params->config_json, strlen(params->config_json),
                                          (uint32_t)e->world, &e->config, NULL);
    if (status != ZERO_OK) {
        snprintf(e->last_error, sizeof(e->last_error), "invalid config %s", have_path ? params->config_path : "string");
        goto err;
    }
    e->stage = e->config->zero_optimization.stage;
#ifdef ZERO_BUILD_DEBUG
    e->check_grad_writes = 1;
#else
    e->check_grad_writes = e->config->zero_optimization.check_grad_writes;
#endif
    e->pending_reduce = -1;
    e->quantized_weights = e->stage == 3 && e->config->zero_optimization.zero_quantized_weights;
    if (e->config->zero_optimization.zero_quantized_weights && e->stage != 3 && e->rank == 0)
        ZERO_LOG_WARN("zero_optimization.zero_quantized_weights has no effect at stage %d: only stage 3 gathers "
                      "weights (as in DeepSpeed)", e->stage);
    e->quantized_gradients = e->stage == 3 && e->config->zero_optimization.zero_quantized_gradients;
    if (e->config->zero_optimization.zero_quantized_gradients && e->stage != 3 && e->rank == 0)
        ZERO_LOG_WARN("zero_optimization.zero_quantized_gradients has no effect at stage %d: as in DeepSpeed, "
                      "gradients are reduced quantized at stage 3 only", e->stage);
    status = setup_hpz(e);
    if (status == ZERO_OK)
        status = setup_qgz_hier(e);
    if (status != ZERO_OK)
        goto err;
    e->precision = e->config->precision;
    e->gas = (int)e->config->gradient_accumulation_steps;
    if (e->config->optimizer.type == ZERO_OPTIMIZER_NONE) {
        engine_error(e, ZERO_ERR_CONFIG, "optimizer: the config has no \"optimizer\" block; the engine needs one");
        status = ZERO_ERR_CONFIG;
        goto err;
    }
    status = check_offload(e);
    if (status != ZERO_OK)
        goto err;
    status = check_device_offload(e);
    if (status != ZERO_OK)
        goto err;
    if ((e->quantized_gradients || e->quantized_weights) && !e->ops->host_readable &&
        (e->ops->quant_encode8 == NULL || e->ops->quant_decode8 == NULL || e->ops->quant_reduce8 == NULL)) {
        /* the host's quantized collectives (comm/quant_coll.h) read and write
         * the buffers on the host: memory the host cannot read needs the
         * codec as operations (engine_gather.c, engine_step.c) */
        engine_error(e, ZERO_ERR_UNSUPPORTED, "zero_optimization.%s with mem_kind %s: the %s operations have no "
                     "int8 codec", e->quantized_gradients ? "zero_quantized_gradients" : "zero_quantized_weights",
                     zero_mem_kind_string(e->kind), e->ops->name);
        status = ZERO_ERR_UNSUPPORTED;
        goto err;
    }

    threads = (mask & ZERO_ENGINE_PARAM_FIELD_NUM_THREADS) && params->num_threads > 0 ? params->num_threads
                                                                                       : default_threads(e->comm);
    status = zero_thread_pool_create(threads, &e->pool);
    if (status != ZERO_OK)
        goto err;
    {
        /* The device: the trainer's choice, else LOCAL_RANK modulo the devices
         * this process sees (zero-launch gives every rank of a node the node's
         * CUDA_VISIBLE_DEVICES, so the runtime's index 0.. are those). */
        engine_ops_params_t op = {.pool = e->pool, .device = e->cuda_device, .local_rank = zero_comm_local_rank(e->comm),
                                  .stream = e->cuda_stream};
        mark = zero_log_error_mark();
        status = e->ops->create(&op, &e->ops_ctx);
        if (status != ZERO_OK) {
            engine_keep_error(e, mark, "zero_engine_create: cannot set up the %s operations", e->ops->name);
            goto err;
        }
    }
    if (e->check_grad_writes && !e->ops->host_readable) {
        /* The guard digests gradients on the host; on a device it would read
         * device memory from the CPU. */
        ZERO_LOG_INFO("zero_optimization.check_grad_writes: not available for gradients in %s memory; off",
                      zero_mem_kind_string(e->kind));
        e->check_grad_writes = 0;
    }
    mark = zero_log_error_mark();
    status = zero_optim_groups_from_config(e->config, &e->param_groups, &e->num_param_groups);
    if (status != ZERO_OK) {
        engine_keep_error(e, mark, "optimizer: cannot map the optimizer (%s)", zero_status_string(status));
        goto err;
    }
    e->hparams = e->param_groups[0].hparams;
    status = map_schedule(e);
    if (status != ZERO_OK)
        goto err;
    status = map_scaler(e);
    if (status != ZERO_OK)
        goto err;
    ZERO_LOG_DEBUG("engine: rank %d of %d, stage %d, %s, %d kernel threads (%s)", e->rank, e->world, e->stage,
                   zero_dtype_string(e->precision), threads, e->ops->describe(e->ops_ctx));
    *engine_p = e;
    return ZERO_OK;

err:
    zero_engine_destroy(e);
    return status;
}

/* ---- destroy ---- */

static void free_param_host(zero_engine_h e);

static void free_group(zero_engine_h e, group_state_t *g)
{
    size_t esz = dtype_bytes(g->dtype);
    if (g->adopted)   /* the trainer's */
        g->params_flat = g->grads_flat = NULL;
    engine_free_shared(e, &e->mem.params, g->length * esz, g->params_flat);
    engine_free_shared(e, &e->mem.params, g->own_length * esz, g->params_shard);
    if (e->hpz > 1)
        engine_free(e, &e->mem.params, g->length / (size_t)e->hpz * esz, g->params_secondary);
    engine_free_shared(e, &e->mem.grads, g->length * esz, g->grads_flat);
    engine_free(e, &e->mem.grads, g->own_length * esz, g->grad_shard);
    zero_free(g->run_start);
    zero_free(g->run_decay);
    zero_free(g->run_param_group);
    zero_free(g->segments);
    memset(g, 0, sizeof(*g));
}

/* The pools, the step scratch and the persistent region (not the buckets' state). */
static void free_working_memory(zero_engine_h e)
{
    if (e->result != NULL)
        e->ops->result_destroy(e->ops_ctx, e->result);
    e->result = NULL;
    engine_pool_destroy(e, &e->gather_pool);
    engine_pool_destroy(e, &e->grad_pool);
    if (e->layout != NULL) {
        for (int gi = 0; gi < e->layout->num_groups; gi++) {
            group_state_t *g = &e->groups[gi];
            engine_free(e, &e->mem.pools, g->scratch_length * sizeof(float), g->scratch);
            if (g->peer_grads != NULL)
                engine_unreserve(e, g->peer_grads_shared, g->peer_grads);
            g->scratch = NULL;
            g->scratch_length = 0;
            g->peer_grads = NULL;
        }
    }
    if (e->persistent_region_shared)
        engine_free_shared(e, &e->mem.persistent, e->mem.persistent, e->persistent_region);
    else
        engine_free(e, &e->mem.persistent, e->mem.persistent, e->persistent_region);
    e->persistent_region = NULL;
    engine_free_shared(e, &e->mem.pools, 2 * e->hpz_scratch_bytes, e->hpz_scratch);
    e->hpz_scratch = NULL;
    e->hpz_scratch_bytes = 0;
    e->hpz_stale = 1;
}

void zero_engine_destroy(zero_engine_h e)
{
    if (e == NULL)
        return;
    /* Nothing the engine queued on the device may still use what is freed below. */
    if (e->ops != NULL && e->ops_ctx != NULL && e->ops->sync != NULL)
        (void)e->ops->sync(e->ops_ctx);
    if (e->buckets != NULL && e->layout != NULL) {
        for (int b = 0; b < e->layout->num_buckets; b++) {
            bucket_state_t *bs = &e->buckets[b];
            if (bs->reduce_req) {
                zero_comm_request_free(bs->reduce_req);   /* waits: its buffer is freed next */
                bs->reduce_req = NULL;
            }
            if (bs->gather_req) {
                zero_comm_request_free(bs->gather_req);
                bs->gather_req = NULL;
            }
            engine_staging_put(e, b, bs->staging);
            bs->staging = NULL;
            if (bs->gathered_source == GATHERED_ONE_OFF)   /* its block's size (qwZ: wire bytes too) */
                engine_free(e, &e->mem.buffers, bs->gathered_bytes, bs->gathered);
            bs->gathered = NULL;
        }
    }
    engine_slices_destroy(e);        /* before the pools their blocks come from */
    engine_grad_slices_destroy(e);
    /* Ordered collectives: the requests were freed above or wait in
     * settling; the stream waits for what it has not waited for yet, which
     * gives the events back before the operations' context goes. */
    for (int i = 0; i < e->num_fences; i++)
        (void)e->ops->order_end(e->ops_ctx, e->fences[i].done_event);
    e->num_fences = 0;
    if (e->ops != NULL && e->ops_ctx != NULL)
        (void)engine_settle(e);
    zero_free(e->fences);
    zero_free(e->settling);
    zero_free(e->buckets);
    zero_free(e->reduce_order);
    free_working_memory(e);
    zero_store_destroy(e->store);   /* before the weights it may have adopted */
    e->store = NULL;
    zero_param_store_destroy(e->param_store);
    e->param_store = NULL;
    free_param_host(e);
    if (e->layout != NULL)
        for (int g = 0; g < e->layout->num_groups; g++)
            free_group(e, &e->groups[g]);
    zero_layout_destroy(e->layout);
    for (int i = 0; i < e->num_params; i++) {
        zero_free(e->params[i]->name);
        zero_free(e->params[i]);
    }
    zero_free(e->params);
    zero_free(e->trace);
    zero_free(e->param_groups);
    if (e->ops != NULL && e->ops_ctx != NULL)
        e->ops->destroy(e->ops_ctx);
    zero_thread_pool_destroy(e->pool);
    zero_config_destroy(e->config);
    zero_comm_destroy(e->qgz_cross);   /* split communicators go before the one they were split from */
    if (e->qgz_node != e->hpz_comm)
        zero_comm_destroy(e->qgz_node);
    zero_comm_destroy(e->hpz_comm);
    if (e->owns_comm)
        zero_comm_destroy(e->comm);
    zero_free(e);
}

/* ---- adoption of the trainer's flat buffers ---- */

zero_status_t zero_engine_flat_capacity(zero_engine_h e, size_t numel, size_t *capacity_p)
{
    size_t granule;
    if (e == NULL || capacity_p == NULL) {
        ZERO_LOG_ERROR("zero_engine_flat_capacity: NULL argument");
        return ZERO_ERR_INVALID_ARG;
    }
    /* zero_layout_build's granule for a group of fixed offsets: one bucket,
     * padded to a multiple of the owning ranks times the alignment */
    granule = (size_t)ZERO_ENGINE_ALIGNMENT * (size_t)(e->stage == 0 ? 1 : e->world);
    if (numel > SIZE_MAX - (granule - 1)) {
        engine_error(e, ZERO_ERR_OVERFLOW, "zero_engine_flat_capacity: %zu elements overflow when padded", numel);
        return ZERO_ERR_OVERFLOW;
    }
    *capacity_p = (numel + granule - 1) / granule * granule;
    return ZERO_OK;
}

zero_status_t zero_engine_adopt_flat(zero_engine_h e, const zero_flat_buffers_t *b)
{
    size_t capacity;
    if (e == NULL || b == NULL) {
        ZERO_LOG_ERROR("zero_engine_adopt_flat: NULL argument");
        return ZERO_ERR_INVALID_ARG;
    }
    if (e->state != ENGINE_REGISTERING || e->num_params > 0) {
        engine_error(e, ZERO_ERR_STATE, "zero_engine_adopt_flat: adopt the buffers before registering parameters "
                     "(and before zero_engine_setup)");
        return ZERO_ERR_STATE;
    }
    if (e->stage == 3) {
        engine_error(e, ZERO_ERR_UNSUPPORTED, "zero_engine_adopt_flat: stage 3 shards the weights themselves, so "
                     "the engine cannot use a trainer's full buffers as its flat spaces (stages 0-2 only)");
        return ZERO_ERR_UNSUPPORTED;
    }
    if (e->kind != ZERO_MEM_HOST) {
        engine_error(e, ZERO_ERR_UNSUPPORTED, "zero_engine_adopt_flat: only host-memory engines adopt buffers");
        return ZERO_ERR_UNSUPPORTED;
    }
    if (b->dtype != ZERO_FP32 && b->dtype != e->precision) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "zero_engine_adopt_flat: dtype %s does not match the config's precision "
                     "%s; use that or fp32", zero_dtype_string(b->dtype), zero_dtype_string(e->precision));
        return ZERO_ERR_INVALID_ARG;
    }
    if (e->adopted[b->dtype].weights != NULL) {
        engine_error(e, ZERO_ERR_STATE, "zero_engine_adopt_flat: %s buffers are adopted already (one pair per dtype)",
                     zero_dtype_string(b->dtype));
        return ZERO_ERR_STATE;
    }
    if (b->weights == NULL || b->grads == NULL || b->weights == b->grads) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "zero_engine_adopt_flat: %s weights and grads must be two buffers "
                     "(weights %p, grads %p)", zero_dtype_string(b->dtype), b->weights, b->grads);
        return ZERO_ERR_INVALID_ARG;
    }
    capacity = (b->field_mask & ZERO_FLAT_BUFFERS_FIELD_CAPACITY) ? b->capacity : b->numel;
    if (capacity < b->numel || capacity > SIZE_MAX / 8) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "zero_engine_adopt_flat: %s capacity %zu is below numel %zu or too large",
                     zero_dtype_string(b->dtype), capacity, b->numel);
        return ZERO_ERR_INVALID_ARG;
    }
    e->adopted[b->dtype] = *b;
    e->adopted[b->dtype].capacity = capacity;
    e->num_adopted++;
    return ZERO_OK;
}

/* A parameter's place in the adopted buffers (at registration): required
 * once anything is adopted, in range, after the dtype's previous parameter. */
static zero_status_t check_flat_offset(zero_engine_h e, const zero_param_desc_t *d, size_t numel)
{
    const zero_flat_buffers_t *b = &e->adopted[d->dtype];
    if (!(d->field_mask & ZERO_PARAM_FIELD_FLAT_OFFSET) || b->weights == NULL) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "zero_param_register(%s): %s", d->name,
                     b->weights == NULL && e->num_adopted == 0
                         ? "a flat_offset needs the dtype's buffers adopted first (zero_engine_adopt_flat)"
                     : b->weights == NULL ? "its dtype has no adopted buffers, but others do: adopt a buffer pair for "
                                            "every dtype the model has (a model is adopted whole or not at all)"
                                          : "with adopted buffers every parameter needs ZERO_PARAM_FIELD_FLAT_OFFSET");
        return ZERO_ERR_INVALID_ARG;
    }
    if (d->field_mask & ZERO_PARAM_FIELD_VIEW) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "zero_param_register(%s): a view and a flat_offset exclude each other",
                     d->name);
        return ZERO_ERR_INVALID_ARG;
    }
    if (d->flat_offset > b->numel || numel > b->numel - d->flat_offset) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "zero_param_register(%s): elements [%zu, +%zu) outside the adopted %s "
                     "buffers' %zu", d->name, d->flat_offset, numel, zero_dtype_string(d->dtype), b->numel);
        return ZERO_ERR_INVALID_ARG;
    }
    for (int i = e->num_params - 1; i >= 0; i--) {
        const struct zero_param *q = e->params[i];
        if (q->dtype != d->dtype)
            continue;
        if (d->flat_offset < q->flat_offset + q->numel) {
            engine_error(e, ZERO_ERR_INVALID_ARG, "zero_param_register(%s): offset %zu overlaps %s [%zu, +%zu) or comes "
                         "before it (offsets must increase in registration order)", d->name, d->flat_offset, q->name,
                         q->flat_offset, q->numel);
            return ZERO_ERR_INVALID_ARG;
        }
        break;
    }
    return ZERO_OK;
}

/* ---- registration ---- */

zero_status_t zero_param_register(zero_engine_h e, const zero_param_desc_t *d, zero_param_h *param_p)
{
    struct zero_param *p;
    size_t numel = 1;
    uint64_t m;

    if (e == NULL || d == NULL || param_p == NULL) {
        ZERO_LOG_ERROR("zero_param_register: NULL argument");
        return ZERO_ERR_INVALID_ARG;
    }
    m = d->field_mask;
    if (e->state != ENGINE_REGISTERING) {
        engine_error(e, ZERO_ERR_STATE, "zero_param_register(%s): parameters must be registered before zero_engine_setup",
                     d->name ? d->name : "?");
        return ZERO_ERR_STATE;
    }
    if (d->name == NULL || d->name[0] == '\0' || strlen(d->name) >= ZERO_LAYOUT_MAX_NAME) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "zero_param_register: parameter %d needs a name of 1..%d bytes",
                     e->num_params, ZERO_LAYOUT_MAX_NAME - 1);
        return ZERO_ERR_INVALID_ARG;
    }
    for (int i = 0; i < e->num_params; i++) {
        if (strcmp(e->params[i]->name, d->name) == 0) {
            engine_error(e, ZERO_ERR_INVALID_ARG, "zero_param_register(%s): name already registered", d->name);
            return ZERO_ERR_INVALID_ARG;
        }
    }
    if (d->dtype != ZERO_FP32 && d->dtype != e->precision) {
        engine_error(e, ZERO_ERR_INVALID_ARG,
                     "zero_param_register(%s): dtype %s does not match the config's precision %s "
                     "(fp16.enabled / bf16.enabled); use that or fp32",
                     d->name, zero_dtype_string(d->dtype), zero_dtype_string(e->precision));
        return ZERO_ERR_INVALID_ARG;
    }
    if (d->ndim < 0 || d->ndim > ZERO_PARAM_MAX_NDIM) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "zero_param_register(%s): ndim %d outside 0..%d", d->name, d->ndim,
                     ZERO_PARAM_MAX_NDIM);
        return ZERO_ERR_INVALID_ARG;
    }
    for (int k = 0; k < d->ndim; k++) {
        if (d->shape[k] < 0 || (d->shape[k] > 0 && numel > SIZE_MAX / 8 / (size_t)d->shape[k])) {
            engine_error(e, ZERO_ERR_INVALID_ARG, "zero_param_register(%s): bad dimension %lld at axis %d", d->name,
                         (long long)d->shape[k], k);
            return ZERO_ERR_INVALID_ARG;
        }
        numel *= (size_t)d->shape[k];
    }
    if ((m & ZERO_PARAM_FIELD_INIT_VALUES) && (m & ZERO_PARAM_FIELD_INIT_FN)) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "zero_param_register(%s): set init_values or init_fn, not both", d->name);
        return ZERO_ERR_INVALID_ARG;
    }
    if ((m & ZERO_PARAM_FIELD_INIT_VALUES) && d->init_values == NULL && numel > 0) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "zero_param_register(%s): init_values is NULL", d->name);
        return ZERO_ERR_INVALID_ARG;
    }
    if ((m & ZERO_PARAM_FIELD_INIT_FN) && d->init_fn == NULL) {
        engine_error(e, ZERO_ERR_INVALID_ARG, "zero_param_register(%s): init_fn is NULL", d->name);
        return ZERO_ERR_INVALID_ARG;
    }
    if ((m & ZERO_PARAM_FIELD_PARAM_GROUP) && (d->param_group < 0 || d->param_group >= e->num_param_groups)) {
        engine_error(e, ZERO_ERR_INVALID_ARG,
                     "zero_param_register(%s): param_group %d is not a group of this engine (0..%d: \"default\" and "
                     "optimizer.param_groups; see zero_engine_param_group_index)",
                     d->name, d->param_group, e->num_param_groups - 1);
        return ZERO_ERR_INVALID_ARG;
    }
    if (m & ZERO_PARAM_FIELD_VIEW) {
        if (e->stage == 3) {
            engine_error(e, ZERO_ERR_UNSUPPORTED,
                         "zero_param_register(%s): caller-owned views are for stages 0-2; at stage 3 the engine "
                         "owns the sharded weights", d->name);
            return ZERO_ERR_UNSUPPORTED;
        }
        if (numel > 0 && (d->view_data == NULL || d->view_grad == NULL)) {
            engine_error(e, ZERO_ERR_INVALID_ARG, "zero_param_register(%s): a view needs view_data and view_grad",
                         d->name);
            return ZERO_ERR_INVALID_ARG;
        }
    }
    if (e->num_adopted > 0 || (m & ZERO_PARAM_FIELD_FLAT_OFFSET)) {
        zero_status_t status = check_flat_offset(e, d, numel);
        if (status != ZERO_OK)
            return status;
    }
    if (e->num_params == e->cap_params) {
        int cap = e->cap_params ? e->cap_params * 2 : 64;
        struct zero_param **grown = zero_realloc(e->params, (size_t)cap * sizeof(*grown));
        if (grown == NULL)
            goto err_nomem;
        e->params = grown;
        e->cap_params = cap;
    }
    p = zero_calloc(1, sizeof(*p));
    if (p == NULL)
        goto err_nomem;
    p->name = zero_strdup(d->name);
    if (p->name == NULL) {
        zero_free(p);
        goto err_nomem;
    }
    p->engine = e;
    p->index = e->num_params;
    p->dtype = d->dtype;
    p->ndim = d->ndim;
    memcpy(p->shape, d->shape, sizeof(p->shape[0]) * (size_t)d->ndim);
    p->numel = numel;
    p->weight_decay = (m & ZERO_PARAM_FIELD_WEIGHT_DECAY) ? (d->weight_decay != 0) : 1;
    p->param_group = (m & ZERO_PARAM_FIELD_PARAM_GROUP) ? d->param_group : 0;
    if (m & ZERO_PARAM_FIELD_INIT_VALUES)
        p->init_values = d->init_values;
    if (m & ZERO_PARAM_FIELD_INIT_FN) {
        p->init_fn = d->init_fn;
        p->init_user_data = d->init_user_data;
    }
    if (m & ZERO_PARAM_FIELD_VIEW) {
        p->view_data = d->view_data;
        p->view_grad = d->view_grad;
    }
    if (m & ZERO_PARAM_FIELD_FLAT_OFFSET) {
        p->has_flat_offset = 1;
        p->flat_offset = d->flat_offset;
    }
    e->params[e->num_params++] = p;
    *param_p = p;
    return ZERO_OK;

err_nomem:
    engine_error(e, ZERO_ERR_NO_MEMORY, "zero_param_register(%s): out of memory", d->name);
    return ZERO_ERR_NO_MEMORY;
}

/* ---- setup ---- */

/*
 * The ranks' agreement before set-up's collectives. Every rank must have
 * registered the same parameters: compare the count and per-parameter 64-bit
 * hashes (name, dtype, shape, parameter group) with rank 0's. A refusal of
 * this rank's own before it (@p own: its partition could not be built, or its
 * adopted buffers are too small) goes into the same allreduce, so that every
 * rank fails here at once naming the lowest refusing rank and its status,
 * rather than waiting for it in the collectives that follow until
 * ZERO_COMM_TIMEOUT. Each refusal is a value (world - rank) << 8 | -status:
 * the maximum is the lowest rank's. The communicator stays usable (nothing
 * failed it): the engine goes back to registering, as after any refusal.
 */
static zero_status_t agree_on_registration(zero_engine_h e, zero_status_t own)
{
    zero_status_t status;
    int64_t *mine = NULL, *root = NULL, count = e->num_params;
    int64_t flag[2] = {0, own != ZERO_OK ? ((int64_t)(e->world - e->rank) << 8) | (int64_t)(-own & 0xff) : 0};
    size_t n = (size_t)e->num_params;
    int first_diff = -1;
    uint64_t mark = zero_log_error_mark();

    status = zero_comm_broadcast(e->comm, &count, &count, 1, ZERO_I64, 0, ZERO_MEM_HOST);
    if (status != ZERO_OK)
        goto comm_fail;
    /* Every rank takes part in the broadcast of rank 0's count hashes, its
     * own count the same or not: a rank that skipped it would meet the
     * others in the wrong collective. */
    mine = zero_calloc(n ? n : 1, sizeof(*mine));
    root = zero_calloc(count > 0 ? (size_t)count : 1, sizeof(*root));
    if (mine == NULL || root == NULL) {
        /* Local: the other ranks are in the broadcast below, waiting for
         * this rank; fail them now. */
        zero_free(mine);
        zero_free(root);
        return engine_fail(e, ENGINE_FAIL_LOCAL, ZERO_ERR_NO_MEMORY, mark,
                           "setup: out of memory comparing registrations across ranks");
    }
    for (size_t i = 0; i < n; i++) {
        /* the registrations, not the layout: a refusing rank may have none */
        const struct zero_param *p = e->params[i];
        uint64_t h = 1469598103934665603ULL;
        const unsigned char *s = (const unsigned char *)p->name;
        while (*s)
            h = (h ^ *s++) * 1099511628211ULL;
        h = (h ^ (uint64_t)p->dtype) * 1099511628211ULL;
        h = (h ^ (uint64_t)p->param_group) * 1099511628211ULL;
        for (int k = 0; k < p->ndim; k++)
            h = (h ^ (uint64_t)p->shape[k]) * 1099511628211ULL;
        mine[i] = (int64_t)h;
    }
    if (e->rank == 0)   /* count == n here */
        memcpy(root, mine, n * sizeof(*root));
    status = zero_comm_broadcast(e->comm, root, root, (size_t)count, ZERO_I64, 0, ZERO_MEM_HOST);
    if (status != ZERO_OK)
        goto comm_fail;
    if (count != e->num_params) {
        first_diff = -2;
    } else {
        for (size_t i = 0; i < n && first_diff < 0; i++)
            if (mine[i] != root[i])
                first_diff = (int)i;
    }
    flag[0] = first_diff != -1;
    status = zero_comm_allreduce(e->comm, flag, flag, 2, ZERO_I64, ZERO_COMM_MAX, ZERO_MEM_HOST);
    zero_free(mine);
    zero_free(root);
    if (status != ZERO_OK)
        goto comm_fail_nofree;
    if (own != ZERO_OK)
        return own;   /* its own cause is recorded already */
    if (flag[1] != 0) {
        int culprit = e->world - (int)(flag[1] >> 8);
        zero_status_t why = (zero_status_t)(-(int)(flag[1] & 0xff));
        engine_error(e, why, "setup: rank %d refused the set-up (%s; its log says why): no rank sets up", culprit,
                     zero_status_string(why));
        return why;
    }
    if (flag[0] != 0) {
        if (first_diff == -2)
            engine_error(e, ZERO_ERR_INVALID_ARG, "setup: this rank registered %d parameters, rank 0 registered %lld",
                         e->num_params, (long long)count);
        else if (first_diff >= 0)
            engine_error(e, ZERO_ERR_INVALID_ARG,
                         "setup: parameter %d (%s) differs from rank 0's in name, dtype, shape or "
                         "parameter group", first_diff,
                         e->params[first_diff]->name);
        else
            engine_error(e, ZERO_ERR_INVALID_ARG, "setup: another rank registered different parameters");
        return ZERO_ERR_INVALID_ARG;
    }
    return ZERO_OK;

comm_fail:
    zero_free(mine);
    zero_free(root);
comm_fail_nofree:
    /* a failed collective: the communicator logged the cause (here or on its progress thread) */
    return engine_fail(e, ENGINE_FAIL_SHARED, status, mark, "setup: checking registrations across ranks failed: %s",
                       zero_status_string(status));
}

/* Runs of the owned range with one parameter group and one weight-decay
 * setting; padding joins the run before it. */
static zero_status_t build_runs(zero_engine_h e, int gi)
{
    group_state_t *g = &e->groups[gi];
    size_t count = 0, runs = 0;
    zero_layout_rank_segments(e->layout, gi, e->own_rank, NULL, 0, &count);
    g->segments = zero_calloc(count ? count : 1, sizeof(*g->segments));
    g->run_start = zero_calloc(count + 2, sizeof(size_t));
    g->run_decay = zero_calloc(count + 1, sizeof(int));
    g->run_param_group = zero_calloc(count + 1, sizeof(int));
    if (g->segments == NULL || g->run_start == NULL || g->run_decay == NULL || g->run_param_group == NULL) {
        engine_error(e, ZERO_ERR_NO_MEMORY, "setup: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    zero_layout_rank_segments(e->layout, gi, e->own_rank, g->segments, count, &count);
    g->num_segments = count;
    g->run_start[0] = 0;
    for (size_t s = 0; s < count; s++) {
        const struct zero_param *p = e->params[g->segments[s].param];
        if (runs > 0 && g->run_decay[runs - 1] == p->weight_decay && g->run_param_group[runs - 1] == p->param_group)
            continue;
        if (runs > 0)
            g->run_start[runs] = g->segments[s].shard_offset;
        g->run_decay[runs] = p->weight_decay;
        g->run_param_group[runs++] = p->param_group;
    }
    if (runs == 0)
        g->run_decay[runs++] = 1;
    g->run_start[runs] = g->own_length;
    g->num_runs = runs;
    return ZERO_OK;
}

/* The trainer's own weights of @p p whose content at setup is its initial
 * value (a view or a place in adopted buffers, with no init field), or NULL. */
static void *content_init(zero_engine_h e, const struct zero_param *p)
{
    if (p->init_values != NULL || p->init_fn != NULL)
        return NULL;
    if (p->view_data != NULL)
        return p->view_data;
    if (p->has_flat_offset)
        return (char *)e->adopted[p->dtype].weights + p->flat_offset * dtype_bytes(p->dtype);
    return NULL;
}

/* The fp32 initial values of elements [off, off + n) of parameter @p p into the host array @p out. */
static void initial_values(zero_engine_h e, struct zero_param *p, size_t off, size_t n, float *out)
{
    const void *content = content_init(e, p);
    if (p->init_values != NULL) {
        memcpy(out, p->init_values + off, n * sizeof(float));
    } else if (p->init_fn != NULL) {
        p->init_fn(p->name, off, n, out, p->init_user_data);
    } else if (content != NULL) {
        /* rank 0's content was broadcast into every rank's buffer before this */
        size_t esz = dtype_bytes(p->dtype);
        if (p->dtype == ZERO_FP32) {
            zero_mem_copy(ZERO_MEM_HOST, out, e->kind, (const char *)content + off * esz, n * esz);
        } else {
            uint16_t h[256];
            for (size_t done = 0; done < n; done += 256) {
                size_t m = n - done < 256 ? n - done : 256;
                zero_mem_copy(ZERO_MEM_HOST, h, e->kind, (const uint16_t *)content + off + done, m * esz);
                for (size_t k = 0; k < m; k++)
                    out[done + k] = p->dtype == ZERO_BF16 ? zero_bf16_to_f32(h[k]) : zero_f16_to_f32(h[k]);
            }
        }
    } else {
        memset(out, 0, n * sizeof(float));
    }
}

/* Whether every adopted buffer pair holds its group's padded length (before
 * anything touches the trainer's buffers, so a refused setup leaves them as
 * they were). */
static zero_status_t check_adopted_capacity(zero_engine_h e)
{
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        const zero_layout_group_t *lg = &e->layout->groups[gi];
        const zero_flat_buffers_t *b = &e->adopted[lg->dtype];
        if (b->weights == NULL || b->capacity >= lg->length)
            continue;
        engine_error(e, ZERO_ERR_INVALID_ARG,
                     "setup: the adopted %s buffers hold %zu elements; the partition over %d rank%s needs %zu "
                     "(numel %zu padded: pass capacity = zero_engine_flat_capacity(), and the slack with it)",
                     zero_dtype_string(lg->dtype), b->capacity, e->own_world, e->own_world == 1 ? "" : "s",
                     lg->length, b->numel);
        return ZERO_ERR_INVALID_ARG;
    }
    return ZERO_OK;
}

/* Group @p gi's flat spaces are the trainer's adopted buffers (one bucket, the
 * trainer's offsets; capacity checked by check_adopted_capacity), their
 * padding zeroed (between tensors and after the last one). Not counted in
 * zero_engine_memory: the trainer's memory. */
static zero_status_t adopt_group(zero_engine_h e, int gi)
{
    group_state_t *g = &e->groups[gi];
    const zero_flat_buffers_t *b = &e->adopted[g->dtype];
    size_t esz = dtype_bytes(g->dtype), end = 0;
    g->adopted = 1;
    g->params_flat = b->weights;
    g->grads_flat = b->grads;
    for (int i = 0; i < e->num_params; i++) {
        const zero_layout_param_t *lp = &e->layout->params[i];
        if (lp->group != gi)
            continue;
        engine_zero(e, (char *)g->params_flat + end * esz, (lp->offset - end) * esz);
        engine_zero(e, (char *)g->grads_flat + end * esz, (lp->offset - end) * esz);
        end = lp->offset + lp->numel;
    }
    engine_zero(e, (char *)g->params_flat + end * esz, (g->length - end) * esz);
    engine_zero(e, (char *)g->grads_flat + end * esz, (g->length - end) * esz);
    return build_runs(e, gi);
}

/* Stage-3 weight shards in a file (offload_param.device "nvme"; host ranks:
 * device ranks are refused before). */
static int param_offload_nvme(zero_engine_h e)
{
    return e->stage == 3 && e->config->zero_optimization.offload_param.device == ZERO_OFFLOAD_NVME;
}

/* Every group's dtype and shard length into @p dtype and @p length (the
 * parameter stores' options); returns the number of groups. */
static int shard_groups(zero_engine_h e, zero_dtype_t *dtype, size_t *length)
{
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        dtype[gi] = e->groups[gi].dtype;
        length[gi] = e->groups[gi].own_length;
    }
    return e->layout->num_groups;
}

/* The parameter file of offload_param "nvme": every group's shard, in the
 * training dtype; its staging buffers are counted as the params. */
static zero_status_t setup_param_store(zero_engine_h e, double timeout_s)
{
    zero_param_store_options_t opts;
    zero_store_bytes_t bytes;
    uint64_t mark = zero_log_error_mark();
    zero_status_t status;

    memset(&opts, 0, sizeof(opts));
    opts.num_groups = shard_groups(e, opts.dtype, opts.length);
    opts.rank = e->rank;
    opts.config = e->config;
    opts.timeout_s = timeout_s;
    status = zero_param_store_create(&opts, &e->param_store);
    if (status != ZERO_OK) {
        engine_keep_error(e, mark, "setup: cannot create the parameter file of offload_param \"nvme\"");
        return status;
    }
    zero_param_store_bytes(e->param_store, &bytes);
    e->mem.params += bytes.resident;
    e->mem.total += bytes.resident;
    return ZERO_OK;
}

/* Stage-3 weight shards in host memory for a device rank (offload_param "cpu"). */
static int param_offload_host(zero_engine_h e)
{
    return e->stage == 3 && e->config->zero_optimization.offload_param.device == ZERO_OFFLOAD_CPU &&
           !e->ops->host_readable;
}

/* Most elements per transfer slot of offload_param "cpu": 4 Mi (8 MiB of
 * bf16), so buffer_count slots bound the pinned memory whatever buffer_size. */
#define PARAM_SLOT_ELEMS_MAX ((size_t)1 << 22)

/* offload_param "cpu" on a device rank: every group's shard in host memory,
 * offload_param.buffer_count pinned slots of min(buffer_size, 4 Mi, the
 * longest shard) elements, and the step's device staging window of up to
 * every slot's elements (one download keeps every slot busy). Neither the
 * shards nor the slots are device memory; the staging is, in buffers. */
static zero_status_t setup_param_host(zero_engine_h e, double timeout_s)
{
    const zero_config_offload_param_t *op = &e->config->zero_optimization.offload_param;
    zero_param_host_options_t opts;
    size_t longest = 1, widest = 1, slot_elems;
    uint64_t mark = zero_log_error_mark();
    zero_status_t status;

    memset(&opts, 0, sizeof(opts));
    opts.num_groups = shard_groups(e, opts.dtype, opts.length);
    for (int gi = 0; gi < opts.num_groups; gi++) {
        if (opts.length[gi] > longest)
            longest = opts.length[gi];
        if (dtype_bytes(opts.dtype[gi]) > widest)
            widest = dtype_bytes(opts.dtype[gi]);
    }
    slot_elems = longest < PARAM_SLOT_ELEMS_MAX ? longest : PARAM_SLOT_ELEMS_MAX;
    if (op->buffer_size >= 1 && op->buffer_size < slot_elems)
        slot_elems = (size_t)op->buffer_size;
    opts.slots = op->buffer_count > 64 ? 64 : (op->buffer_count < 1 ? 1 : (unsigned)op->buffer_count);
    opts.slot_bytes = slot_elems * widest < 8 ? 8 : slot_elems * widest;
    opts.pin = 1;   /* the ring always (where it can), as the optimizer's; the shards never */
    opts.pin_limit = zero_offload_pin_limit();
    opts.device = -1;
    opts.cuda_stream = e->cuda_stream;
    opts.timeout_s = timeout_s;
#if HAVE_CUDA
    if ((status = zero_cuda_require("offload_param \"cpu\" for a device engine")) != ZERO_OK ||
        ZERO_CUDA(cudaGetDevice)(&opts.device) != cudaSuccess) {
        engine_keep_error(e, mark, "setup: no CUDA device for offload_param \"cpu\"");
        return status != ZERO_OK ? status : ZERO_ERR_CUDA;
    }
#endif
    status = zero_param_host_create(&opts, &e->param_host);
    if (status != ZERO_OK) {
        engine_keep_error(e, mark, "setup: cannot create the host parameter shards of offload_param \"cpu\"");
        return status;
    }
    e->param_stage_elems = slot_elems * opts.slots < longest ? slot_elems * opts.slots : longest;
    e->param_stage_bytes = e->param_stage_elems * widest;
    return engine_alloc(e, &e->mem.buffers, e->param_stage_bytes, "offload_param device staging", &e->param_stage);
}

static void free_param_host(zero_engine_h e)
{
    if (e->param_stage != NULL)
        engine_free(e, &e->mem.buffers, e->param_stage_bytes, e->param_stage);
    e->param_stage = NULL;
    zero_param_host_destroy(e->param_host);
    e->param_host = NULL;
}

static zero_status_t setup_group(zero_engine_h e, int gi)
{
    zero_status_t status;
    group_state_t *g = &e->groups[gi];
    const zero_layout_group_t *lg = &e->layout->groups[gi];
    size_t esz;

    g->dtype = lg->dtype;
    esz = dtype_bytes(g->dtype);
    g->length = lg->length;
    g->own_length = lg->shard_length;   /* the layout's world is 1 at stage 0 */

    if (e->adopted[g->dtype].weights != NULL)
        return adopt_group(e, gi);
    if (e->stage < 3) {
        status = engine_alloc_shared(e, &e->mem.params, g->length * esz, "params", &g->params_flat);
        if (status != ZERO_OK)
            return status;
        engine_zero(e, g->params_flat, g->length * esz);
    } else if (!param_offload_nvme(e) && !param_offload_host(e)) {
        status = engine_alloc_shared(e, &e->mem.params, g->own_length * esz, "params shard", &g->params_shard);
        if (status != ZERO_OK)
            return status;
        engine_zero(e, g->params_shard, g->own_length * esz);
        if (e->hpz > 1) {
            status = engine_alloc(e, &e->mem.params, g->length / (size_t)e->hpz * esz, "hpZ secondary weights",
                                  &g->params_secondary);
            if (status != ZERO_OK)
                return status;
        }
    }
    if (e->stage < 2) {
        status = engine_alloc_shared(e, &e->mem.grads, g->length * esz, "grads", &g->grads_flat);
        if (status != ZERO_OK)
            return status;
        engine_zero(e, g->grads_flat, g->length * esz);
    } else {
        status = engine_alloc(e, &e->mem.grads, g->own_length * esz, "grad shard", &g->grad_shard);
        if (status != ZERO_OK)
            return status;
        engine_zero(e, g->grad_shard, g->own_length * esz);
    }
    return build_runs(e, gi);
}

/* Lamb on zero-optd (docs/optd.md, "Lamb on the server"): the servers form
 * its sums per kernel chunk from the start of each range the step hands
 * them, so the remote store must split the groups over servers only at chunk
 * multiples from a range start. Lamb's ranges start at the owned parameter
 * segments (lamb_step: the remote store bounds no range); the chunk is the
 * host table's. Empty for other optimizers and tables. The starts are
 * zero_malloc'ed; the caller frees them. */
static zero_status_t lamb_split_hint(zero_engine_h e, zero_store_split_hint_t *hint)
{
    memset(hint, 0, sizeof(*hint));
    if (e->hparams.kind != ZERO_OPTIM_KIND_LAMB || e->ops != &engine_ops_host)
        return ZERO_OK;
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        group_state_t *g = &e->groups[gi];
        size_t *starts = zero_malloc((g->num_segments ? g->num_segments : 1) * sizeof(size_t));
        if (starts == NULL) {
            engine_error(e, ZERO_ERR_NO_MEMORY, "setup: out of memory");
            return ZERO_ERR_NO_MEMORY;
        }
        for (size_t s = 0; s < g->num_segments; s++)
            starts[s] = g->segments[s].shard_offset;   /* in shard order */
        hint->starts[gi] = starts;
        hint->num_starts[gi] = g->num_segments;
    }
    hint->chunk = engine_ops_host_optim(e->ops_ctx)->chunk;
    return ZERO_OK;
}

/* The store of the master weights and optimizer states of every group's owned
 * range, made by lib/offload's factory from the offload config. In fp32
 * training the weights the trainer sees are the master weights where the
 * owned range is contiguous in them (stage 0: everything; stage 3: the
 * shard; stages 1-2: the trainer's adopted buffer, one bucket): the store
 * adopts those arrays (a store that cannot refuses, and setup fails). */
static zero_status_t setup_store(zero_engine_h e)
{
    const zero_config_offload_optimizer_t *off = &e->config->zero_optimization.offload_optimizer;
    zero_store_options_t opts;
    zero_store_desc_t desc;
    zero_store_bytes_t bytes;
    zero_offload_bucket_t *buckets = NULL;
    uint64_t master_bytes = 0, full_bytes = 0, mark = zero_log_error_mark();
    zero_status_t status;

    memset(&opts, 0, sizeof(opts));
    opts.device = zero_store_device_from_config(off->device);
    opts.nvme_path = off->nvme_path;
    opts.servers = (const char *const *)off->servers;
    opts.cuda_stream = e->cuda_stream;   /* device engines: the CPU offload store's copies wait on it */
    opts.cuda_device = -1;               /* the device the operations table made current on this thread */
    opts.threads = zero_thread_pool_size(e->pool);
    opts.num_servers = (int)off->num_servers;
    opts.rank = e->rank;
    opts.config = e->config;
    /* a stalled disk or server is reported within the communicator's bound */
    opts.timeout_s = 300.0;
    {
        const char *v = getenv("ZERO_COMM_TIMEOUT");
        if (v != NULL && zero_seconds_parse("ZERO_COMM_TIMEOUT", v, 0.0, 1, 1e6, &opts.timeout_s) != ZERO_OK)
            opts.timeout_s = 300.0;   /* the communicator refused it already */
    }
    memset(&desc, 0, sizeof(desc));
    desc.kind = e->kind;
    desc.num_groups = e->layout->num_groups;
    desc.num_states = zero_optim_groups_num_states(e->param_groups, e->num_param_groups);
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        group_state_t *g = &e->groups[gi];
        desc.length[gi] = g->own_length;
        if (g->dtype == ZERO_FP32 && e->stage == 0)
            desc.adopt_master[gi] = g->params_flat;
        else if (g->dtype == ZERO_FP32 && g->adopted)
            /* the trainer's buffer is one bucket, so the owned range is one
             * contiguous run of its weights: the master in place */
            desc.adopt_master[gi] = (float *)g->params_flat + (size_t)e->own_rank * g->own_length;
        else if (g->dtype == ZERO_FP32 && e->stage == 3 && g->params_shard != NULL)
            desc.adopt_master[gi] = g->params_shard;
    }
    if (param_offload_nvme(e)) {
        status = setup_param_store(e, opts.timeout_s);
        if (status != ZERO_OK)
            return status;
    }
    if (param_offload_host(e)) {
        status = setup_param_host(e, opts.timeout_s);
        if (status != ZERO_OK)
            return status;
    }
    if (off->ratio < 1.0 && !e->ops->host_readable && opts.device == ZERO_STORE_DEVICE_CPU) {
        /* offload_optimizer.ratio < 1: the store picks its buckets from their owned slices */
        if ((status = engine_offload_buckets(e, &buckets)) != ZERO_OK)
            return status;
        opts.buckets = buckets;
        opts.num_buckets = e->layout->num_buckets;
        opts.ratio = off->ratio;
    }
    status = lamb_split_hint(e, &opts.split);
    if (status == ZERO_OK)
        status = zero_store_create_for(&opts, &desc, &e->store);
    for (int gi = 0; gi < ZERO_DTYPE_COUNT; gi++)
        zero_free((void *)opts.split.starts[gi]);
    zero_free(buckets);
    if (status != ZERO_OK) {
        engine_keep_error(e, mark, "setup: cannot create the optimizer state store");
        return status;
    }
    /* Accounting as before the store: what it holds in this process's memory,
     * the master part (where it did not adopt the weights) and the rest (the
     * optimizer states); a store that keeps part of every field elsewhere
     * (ratio < 1) keeps that share of each. */
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        uint64_t field = (uint64_t)e->groups[gi].own_length * sizeof(float);
        if (e->store->desc.adopt_master[gi] == NULL)
            master_bytes += field;
        full_bytes += field * (uint64_t)desc.num_states;
    }
    full_bytes += master_bytes;
    zero_store_bytes(e->store, &bytes);
    if (bytes.resident < full_bytes)
        master_bytes = (uint64_t)((double)master_bytes * ((double)bytes.resident / (double)full_bytes));
    if (master_bytes > bytes.resident)
        master_bytes = bytes.resident;
    e->mem.master += master_bytes;
    e->mem.optim_state += bytes.resident - master_bytes;
    /* the store's working buffers (CPU offload: its device staging; the
     * remote store on a host rank: its request slots and mapped regions)
     * are held from setup like the pools; CPU offload's pinned slots are
     * host memory */
    e->mem.pools += bytes.staging;
    e->mem.offload_pinned = bytes.pinned;
    e->mem.total += bytes.resident + bytes.staging;
    return ZERO_OK;
}

/* Initial values of group @p gi's owned range, a block at a time through the
 * store: master weights of the owned segments from their parameters' init
 * source (padding 0), optimizer states as the optimizer starts them. */
static zero_status_t init_group_state(zero_engine_h e, int gi)
{
    enum { INIT_BLOCK = 1 << 16 };
    group_state_t *g = &e->groups[gi];
    zero_status_t status = ZERO_OK;
    size_t s = 0, block = engine_range_max(e, INIT_BLOCK);
    /* fp32 adopted buffers: the master is the trainer's weights (padding zeroed by adopt_group),
     * where the store took them in place (a store whose master lives elsewhere copies them) */
    int in_place = g->adopted && g->dtype == ZERO_FP32 && e->store->desc.adopt_master[gi] != NULL;
    float *host = zero_malloc(INIT_BLOCK * sizeof(float));
    if (host == NULL) {
        engine_error(e, ZERO_ERR_NO_MEMORY, "setup: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    for (size_t lo = 0; lo < g->own_length && status == ZERO_OK; lo += block) {
        size_t hi = g->own_length - lo < block ? g->own_length : lo + block;
        uint64_t mark = zero_log_error_mark();
        zero_store_range_t r = {.group = gi, .begin = lo, .count = hi - lo, .fields = zero_store_fields(e->store)};
        status = zero_store_acquire(e->store, &r);
        if (status != ZERO_OK) {
            engine_keep_error(e, mark, "setup: cannot reach the optimizer state of the %s group at %zu",
                              zero_dtype_string(g->dtype), lo);
            break;
        }
        if (!in_place)
            engine_zero(e, r.data[ZERO_STORE_MASTER], r.count * sizeof(float));
        for (int k = 1; k < ZERO_STORE_NUM_FIELDS; k++)
            if (r.data[k] != NULL)
                engine_zero(e, r.data[k], r.count * sizeof(float));
        status = e->ops->init_state(e->ops_ctx, &e->hparams, r.data[ZERO_STORE_STATE1], r.count);
        if (status != ZERO_OK)
            engine_keep_error(e, mark, "setup: initialising the optimizer state of the %s group failed",
                              zero_dtype_string(g->dtype));
        /* the owned segments overlapping [lo, hi), in shard order */
        while (s < g->num_segments && g->segments[s].shard_offset + g->segments[s].length <= lo)
            s++;
        for (size_t t = s; status == ZERO_OK && t < g->num_segments && g->segments[t].shard_offset < hi; t++) {
            const zero_layout_segment_t *sg = &g->segments[t];
            size_t from = sg->shard_offset > lo ? sg->shard_offset : lo;
            size_t to = sg->shard_offset + sg->length < hi ? sg->shard_offset + sg->length : hi;
            if (in_place && content_init(e, e->params[sg->param]) != NULL)
                continue;   /* the master is these very weights, which hold the value already */
            initial_values(e, e->params[sg->param], sg->param_offset + (from - sg->shard_offset), to - from, host);
            status = engine_upload(e, r.data[ZERO_STORE_MASTER] + (from - lo), host, (to - from) * sizeof(float));
            if (status != ZERO_OK)
                engine_keep_error(e, mark, "setup: cannot upload the initial values of %s",
                                  e->params[sg->param]->name);
        }
        {
            zero_status_t st = zero_store_release(e->store, &r, 1);
            if (status == ZERO_OK && st != ZERO_OK) {
                engine_keep_error(e, mark, "setup: cannot keep the initial optimizer state of the %s group",
                                  zero_dtype_string(g->dtype));
                status = st;
            }
        }
    }
    zero_free(host);
    return status;
}

/* Broadcast rank 0's view content for view parameters that have no init source. */
static zero_status_t broadcast_view_inits(zero_engine_h e)
{
    for (int i = 0; i < e->num_params; i++) {
        struct zero_param *p = e->params[i];
        zero_status_t status;
        uint64_t mark;
        void *content = content_init(e, p);
        if (content == NULL || p->numel == 0)
            continue;
        mark = zero_log_error_mark();
        status = zero_comm_broadcast(e->comm, content, content, p->numel, p->dtype, 0, e->kind);
        if (status != ZERO_OK)   /* a failed collective */
            return engine_fail(e, ENGINE_FAIL_SHARED, status, mark, "setup: broadcasting the initial value of %s "
                               "failed: %s", p->name, zero_status_string(status));
    }
    return ZERO_OK;
}

/* Stage 3: the persistent parameters' region (held from setup) and the
 * gather and gradient pools, sized as docs/engine.md states:
 *   gather pool   min(non-persistent model, stage3_max_live_parameters elements)
 *   gradient pool min(whole model, max(reduce_bucket_size elements,
 *                     (ZERO_ENGINE_MAX_REDUCTIONS + 1) x the largest parameter))
 * in bytes of the widest dtype. Only the reservation is made here; pages are
 * backed when first used. Every stage: the step's fp32 scratch. */
static zero_status_t setup_working_memory(zero_engine_h e)
{
    const zero_config_zero_t *z = &e->config->zero_optimization;
    size_t esz_max = 1, model = 0, nonpersistent = 0, persistent = 0, largest = 0;
    size_t gather_cap, grad_cap;
    zero_status_t status;
    uint64_t mark;

    status = engine_scratch_alloc(e);
    if (status != ZERO_OK)
        return status;
    e->result_slots = engine_result_slots(e->hparams.kind == ZERO_OPTIM_KIND_LAMB ? (size_t)e->num_params : 0);
    mark = zero_log_error_mark();
    status = e->ops->result_create(e->ops_ctx, e->result_slots, &e->result);
    if (status != ZERO_OK) {
        engine_keep_error(e, mark, "setup: cannot allocate the step's result record");
        return status;
    }
    e->mem.pools_bound = e->mem.pools + e->fused_reserved;   /* the fused step's partials: backed as the ring writes them */
    if (e->stage == 2 && !engine_grads_whole(e)) {
        /* Gradient staging: slots of the largest bucket's size, backed now so no
         * step faults. ZERO_ENGINE_STAGE2_STAGING_SLOTS of them (fewer with fewer
         * buckets), and fewer still, down to one, where that many would take more
         * than 3/4 of what stage 1's full gradients hold beyond stage 2's shard:
         * a parameter larger than the bucket bound makes a large bucket, and stage
         * 2 then gives up overlap (a bucket waits for the previous reduction)
         * rather than need more memory than stage 1. */
        uint64_t budget = 0;
        int slots = e->layout->num_buckets < ZERO_ENGINE_STAGE2_STAGING_SLOTS ? e->layout->num_buckets
                                                                               : ZERO_ENGINE_STAGE2_STAGING_SLOTS;
        for (int b = 0; b < e->layout->num_buckets; b++) {
            const zero_layout_bucket_t *bk = &e->layout->buckets[b];
            size_t bytes = bk->length * dtype_bytes(e->layout->groups[bk->group].dtype);
            if (bytes > e->staging_bytes)
                e->staging_bytes = bytes;
        }
        e->staging_bytes = (e->staging_bytes + ZERO_MEM_ALIGNMENT - 1) / ZERO_MEM_ALIGNMENT * ZERO_MEM_ALIGNMENT;
        for (int i = 0; i < e->num_params; i++)
            budget += (uint64_t)e->params[i]->numel * dtype_bytes(e->params[i]->dtype);
        budget = budget / 4 * 3 / (uint64_t)e->world * (uint64_t)(e->world - 1);
        while (slots > 1 && (uint64_t)slots * e->staging_bytes > budget)
            slots--;
        status = engine_pool_create(e, &e->grad_pool, "stage-2 gradient staging", (size_t)slots * e->staging_bytes,
                                    slots);
        if (status != ZERO_OK)
            return status;
        engine_pool_populate(e, &e->grad_pool);
        e->mem.pools_bound += e->grad_pool.capacity;
    }
    if (e->stage < 3)
        return ZERO_OK;
    for (int gi = 0; gi < e->layout->num_groups; gi++)
        if (dtype_bytes(e->groups[gi].dtype) > esz_max)
            esz_max = dtype_bytes(e->groups[gi].dtype);
    for (int b = 0; b < e->layout->num_buckets; b++) {
        const zero_layout_bucket_t *bk = &e->layout->buckets[b];
        size_t bytes = bk->length * dtype_bytes(e->layout->groups[bk->group].dtype);
        model += bytes;
        if (bytes > largest)
            largest = bytes;
        if (e->params[bk->first_param]->persistent)
            persistent += bytes;
        else
            nonpersistent += bytes;
    }
    if (persistent > 0) {
        size_t at = 0;
        e->persistent_region_shared = e->kind == ZERO_MEM_HOST && e->world > 1;
        status = engine_alloc_shared(e, &e->mem.persistent, persistent, "stage-3 persistent parameters",
                                     &e->persistent_region);
        if (status != ZERO_OK)
            return status;
        for (int b = 0; b < e->layout->num_buckets; b++) {
            const zero_layout_bucket_t *bk = &e->layout->buckets[b];
            if (!e->params[bk->first_param]->persistent)
                continue;
            e->buckets[b].persistent_slot = (char *)e->persistent_region + at;
            at += bk->length * dtype_bytes(e->layout->groups[bk->group].dtype);
        }
    }
    gather_cap = z->stage3_max_live_parameters < nonpersistent / esz_max ? (size_t)z->stage3_max_live_parameters * esz_max
                                                                          : nonpersistent;
    if (e->quantized_weights) {
        /* qwZ: each block also holds the encoded bytes of its gather, about
         * one byte per element plus the scales and each rank's alignment. */
        size_t wire = 0;
        for (int b = 0; b < e->layout->num_buckets; b++)
            if (!e->params[e->layout->buckets[b].first_param]->persistent)
                wire += engine_gather_wire_bytes(e, b) + ZERO_MEM_ALIGNMENT;   /* the weights' end, aligned */
        if (gather_cap < nonpersistent && (size_t)z->stage3_max_live_parameters * 2 < wire)
            wire = (size_t)z->stage3_max_live_parameters * 2;   /* as many live elements' wire bytes */
        gather_cap += wire;
    }
    grad_cap = (size_t)z->reduce_bucket_size * esz_max;
    if (grad_cap < (ZERO_ENGINE_MAX_REDUCTIONS + 1) * largest)
        grad_cap = (ZERO_ENGINE_MAX_REDUCTIONS + 1) * largest;
    if (grad_cap > model)
        grad_cap = model;
    if (e->quantized_gradients) {
        /* qgZ: each staging block also holds its reduction's wire bytes (the
         * encoded blocks sent and received, and the fp32 sum of the slice):
         * bounded here like the staging itself, by the buckets it can hold. */
        size_t wire = 0, cap = 0;
        for (int b = 0; b < e->layout->num_buckets && cap < grad_cap; b++) {
            const zero_layout_bucket_t *bk = &e->layout->buckets[b];
            cap += bk->length * dtype_bytes(e->layout->groups[bk->group].dtype);
            wire += engine_reduce_wire_bytes(e, b) + ZERO_MEM_ALIGNMENT;
        }
        grad_cap += wire;
    }
    status = engine_pool_create(e, &e->gather_pool, "stage-3 gathered weights", gather_cap,
                                e->layout->num_buckets + ZERO_ENGINE_SLICE_BLOCKS);
    if (status == ZERO_OK)
        status = engine_pool_create(e, &e->grad_pool, "stage-3 gradient staging", grad_cap,
                                    e->layout->num_buckets + ZERO_ENGINE_SLICE_BLOCKS);
    if (status != ZERO_OK)
        return status;
    e->mem.pools_bound += e->gather_pool.capacity + e->grad_pool.capacity + 2 * engine_gather_hpz_scratch_bytes(e);
    return ZERO_OK;
}

/*
 * Set-up warnings for what trains without error but not as the trainer meant
 * (issue 13). Rank 0 only: every rank registered the same parameters
 * (agree_on_registration), so the others would say the same.
 */
static void warn_silent_mismatches(zero_engine_h e)
{
    int num_fp32 = 0, num_bare_views = 0;
    const char *first_bare_view = NULL;
    if (e->rank != 0)
        return;
    for (int i = 0; i < e->num_params; i++) {
        const struct zero_param *p = e->params[i];
        if (p->dtype == ZERO_FP32)
            num_fp32++;
        else if (content_init(e, p) != NULL) {
            if (first_bare_view == NULL)
                first_bare_view = p->name;
            num_bare_views++;
        }
    }
    if (e->precision != ZERO_FP32 && e->num_params > 0 && num_fp32 == e->num_params)
        ZERO_LOG_WARN("setup: the config enables %s (%s.enabled) but all %d registered parameters are fp32: training "
                      "runs in fp32 (no 16-bit weights, gradients or communication); register the parameters as %s "
                      "to train in 16 bits, or disable %s in the config",
                      zero_dtype_string(e->precision), e->precision == ZERO_FP16 ? "fp16" : "bf16", e->num_params,
                      zero_dtype_string(e->precision), zero_dtype_string(e->precision));
    if (num_bare_views > 0)
        ZERO_LOG_WARN("setup: %d view%s with 16-bit weights and no fp32 initial values (first: %s): the fp32 master "
                      "weights start from the rounded 16-bit values; pass the fp32 values as init_values (or an "
                      "init_fn) to start from them",
                      num_bare_views, num_bare_views == 1 ? "" : "s", first_bare_view);
}

zero_status_t zero_engine_setup(zero_engine_h e)
{
    zero_status_t status;
    uint64_t mark;
    zero_layout_param_desc_t *descs = NULL;
    size_t *offsets = NULL;
    const zero_config_zero_t *z;
    size_t bucket_elems;
    int agreed = 0;

    if (e == NULL)
        return ZERO_ERR_INVALID_ARG;
    if (e->state != ENGINE_REGISTERING) {
        engine_error(e, ZERO_ERR_STATE, "zero_engine_setup: the engine is already set up");
        return ZERO_ERR_STATE;
    }
    z = &e->config->zero_optimization;
    /* The trainer's work so far (views it filled on its stream) is done
     * before set-up reads it. */
    status = engine_sync(e);
    if (status != ZERO_OK)
        return status;
    e->own_world = e->stage == 0 ? 1 : e->world;
    e->own_rank = e->stage == 0 ? 0 : e->rank;
    /* Buckets: whole parameters up to the reduce (and allgather) bucket size; at
     * stage 3 one parameter per bucket, since each is gathered on its own. */
    bucket_elems = z->reduce_bucket_size;
    if (z->allgather_bucket_size < bucket_elems)
        bucket_elems = z->allgather_bucket_size;
    if (e->stage == 3)
        bucket_elems = 1;
    if (e->stage == 2 && e->world > 1) {
        /* Stage 2 keeps at most ZERO_ENGINE_STAGE2_STAGING_SLOTS buckets of
         * gradient staging besides its 1/W gradient shard. Buckets of at most
         * (W - 1) / W of the model over (slots + 1) keep the two below the full
         * gradient buffer stage 1 holds, with room to spare for the padding that
         * more buckets bring: stage 2 never needs more memory than stage 1. */
        uint64_t model = 0, cap;
        for (int i = 0; i < e->num_params; i++)
            model += e->params[i]->numel;
        cap = model * (uint64_t)(e->world - 1) / ((uint64_t)e->world * (ZERO_ENGINE_STAGE2_STAGING_SLOTS + 1));
        if (cap < bucket_elems)
            bucket_elems = cap;
    }
    if (bucket_elems < 1)
        bucket_elems = 1;

    descs = zero_calloc((size_t)(e->num_params ? e->num_params : 1), sizeof(*descs));
    offsets = zero_calloc((size_t)(e->num_params ? e->num_params : 1), sizeof(*offsets));
    if (descs == NULL || offsets == NULL) {
        engine_error(e, ZERO_ERR_NO_MEMORY, "setup: out of memory");
        status = ZERO_ERR_NO_MEMORY;
    } else {
        for (int i = 0; i < e->num_params; i++) {
            descs[i].name = e->params[i]->name;
            descs[i].dtype = e->params[i]->dtype;
            descs[i].ndim = e->params[i]->ndim;
            memcpy(descs[i].shape, e->params[i]->shape, sizeof(descs[i].shape));
            offsets[i] = e->params[i]->has_flat_offset ? e->params[i]->flat_offset : ZERO_LAYOUT_NO_OFFSET;
        }
        mark = zero_log_error_mark();
        /* adopted buffers: the trainer's offsets, one bucket per dtype */
        status = zero_layout_build_at(descs, offsets, e->num_params, e->own_world, ZERO_ENGINE_ALIGNMENT,
                                      bucket_elems, &e->layout);
        if (status != ZERO_OK)
            engine_keep_error(e, mark, "setup: cannot build the partition");
        else
            status = check_adopted_capacity(e);
    }
    zero_free(descs);
    zero_free(offsets);
    /* A refusal of this rank's own so far is part of the agreement, which
     * every rank joins: none waits for a rank that stopped here. */
    status = agree_on_registration(e, status);
    if (status != ZERO_OK && e->layout == NULL)   /* nothing built here to undo */
        return status;
    if (status != ZERO_OK)
        goto err;
    /* Every rank agreed and goes on to the collectives below (the initial
     * values, publishing the weights); a failure of this rank's alone from
     * here (memory, its store, its device) fails the engine and the
     * communicator (err), so the others do not wait for it. */
    agreed = 1;
    status = broadcast_view_inits(e);
    if (status != ZERO_OK)
        goto err;
    e->buckets = zero_calloc((size_t)(e->layout->num_buckets ? e->layout->num_buckets : 1), sizeof(*e->buckets));
    e->reduce_order = zero_calloc((size_t)(e->layout->num_buckets ? e->layout->num_buckets : 1), sizeof(int));
    if (e->buckets == NULL || e->reduce_order == NULL) {
        engine_error(e, ZERO_ERR_NO_MEMORY, "setup: out of memory");
        status = ZERO_ERR_NO_MEMORY;
        goto err;
    }
    for (int i = 0; i < e->num_params; i++)
        e->buckets[e->layout->params[i].bucket].num_params++;
    for (int g = 0; g < e->layout->num_groups; g++) {
        status = setup_group(e, g);
        if (status != ZERO_OK)
            goto err;
    }
    status = setup_store(e);
    /* The store zeroed its arrays with the device's plain calls (legacy
     * stream); the initial values come on the engine's stream. */
    if (status == ZERO_OK)
        status = engine_sync(e);
    for (int g = 0; g < e->layout->num_groups && status == ZERO_OK; g++)
        status = init_group_state(e, g);
    if (status != ZERO_OK)
        goto err;
    for (int i = 0; i < e->num_params; i++) {
        struct zero_param *p = e->params[i];
        const zero_layout_param_t *lp = &e->layout->params[i];
        e->mem.num_params += p->numel;
        if (e->stage < 3)
            p->data = (char *)e->groups[lp->group].params_flat + lp->offset * dtype_bytes(p->dtype);
        else
            p->persistent = p->numel <= z->stage3_param_persistence_threshold;
        if (engine_grads_whole(e) && p->view_grad == NULL)
            p->grad = NULL;   /* handed out from backward_begin on */
    }
    status = setup_working_memory(e);
    if (status != ZERO_OK)
        goto err;
    warn_silent_mismatches(e);
    /* The weights the trainer sees, from the fp32 masters. */
    status = engine_write_back(e);
    if (status == ZERO_OK)
        status = engine_sync(e);   /* the weights are in place for a trainer on any stream */
    if (status != ZERO_OK)
        goto err;
    e->state = ENGINE_READY;
    return ZERO_OK;

err:
    if (agreed && e->state != ENGINE_FAILED)   /* this rank's own cause (a collective's failed the engine already) */
        engine_fail(e, ENGINE_FAIL_LOCAL, status, zero_log_error_mark(), "%s", e->last_error);
    if (e->state != ENGINE_FAILED) {
        /* Leave the engine as before setup: registrations stay, buffers go. */
        free_working_memory(e);
        zero_free(e->buckets);
        e->buckets = NULL;
        zero_free(e->reduce_order);
        e->reduce_order = NULL;
        zero_store_destroy(e->store);
        e->store = NULL;
        zero_param_store_destroy(e->param_store);
        e->param_store = NULL;
        free_param_host(e);
        for (int g = 0; g < e->layout->num_groups; g++)
            free_group(e, &e->groups[g]);
        zero_layout_destroy(e->layout);
        e->layout = NULL;
        memset(&e->mem, 0, sizeof(e->mem));
    }
    return status;
}

/* ---- getters ---- */

void *zero_param_data(zero_param_h p)
{
    if (p == NULL)
        return NULL;
    if (p->view_data != NULL)
        return p->view_data;
    return p->data;
}

void *zero_param_grad(zero_param_h p)
{
    return p ? engine_param_grad_lazy(p) : NULL;
}

const char *zero_param_name(zero_param_h p)
{
    return p ? p->name : "";
}

size_t zero_param_numel(zero_param_h p)
{
    return p ? p->numel : 0;
}

double zero_engine_lr(zero_engine_h e)
{
    return zero_lr_schedule_lr(&e->schedule);
}

int zero_engine_num_param_groups(zero_engine_h e)
{
    return e ? e->num_param_groups : 0;
}

zero_status_t zero_engine_param_group_index(zero_engine_h e, const char *name, int *index_p)
{
    int gi;
    char known[256] = "";
    size_t used = 0;
    if (e == NULL || name == NULL || index_p == NULL) {
        if (e)
            engine_error(e, ZERO_ERR_INVALID_ARG, "zero_engine_param_group_index: name and index_p must not be NULL");
        return ZERO_ERR_INVALID_ARG;
    }
    gi = zero_optim_groups_find(e->param_groups, e->num_param_groups, name);
    if (gi >= 0) {
        *index_p = gi;
        return ZERO_OK;
    }
    for (int i = 0; i < e->num_param_groups && used < sizeof(known); i++) {
        int n = snprintf(known + used, sizeof(known) - used, "%s\"%s\"", i ? ", " : "", e->param_groups[i].name);
        used += n > 0 ? (size_t)n : 0;
    }
    engine_error(e, ZERO_ERR_NOT_FOUND,
                 "zero_engine_param_group_index: no parameter group \"%s\" (the groups are %s; others are added "
                 "under optimizer.param_groups in the config)", name, known);
    return ZERO_ERR_NOT_FOUND;
}

const char *zero_engine_param_group_name(zero_engine_h e, int index)
{
    if (e == NULL || index < 0 || index >= e->num_param_groups)
        return NULL;
    return e->param_groups[index].name;
}

double zero_engine_param_group_lr(zero_engine_h e, int index)
{
    if (e == NULL || index < 0 || index >= e->num_param_groups)
        return NAN;
    return zero_optim_group_lr(e->param_groups, index, zero_lr_schedule_lr(&e->schedule));
}

zero_status_t zero_engine_set_lr(zero_engine_h e, double lr)
{
    if (e == NULL || !(lr >= 0.0) || !isfinite(lr)) {
        if (e)
            engine_error(e, ZERO_ERR_INVALID_ARG, "zero_engine_set_lr: lr must be a finite number >= 0");
        return ZERO_ERR_INVALID_ARG;
    }
    if (e->config->scheduler.type != ZERO_SCHEDULER_NONE) {
        engine_error(e, ZERO_ERR_STATE,
                     "zero_engine_set_lr: the config has a scheduler (%s) that sets the lr every step; remove it "
                     "from the config to drive the lr yourself",
                     zero_scheduler_type_string(e->config->scheduler.type));
        return ZERO_ERR_STATE;
    }
    return zero_lr_schedule_set_lr(&e->schedule, lr);
}

double zero_engine_loss_scale(zero_engine_h e) { return zero_loss_scaler_scale(&e->scaler); }
zero_status_t zero_engine_lr_schedule_step(zero_engine_h e)
{
    if (e == NULL)
        return ZERO_ERR_INVALID_ARG;
    if (!e->manual_lr_schedule) {
        engine_error(e, ZERO_ERR_STATE, "zero_engine_lr_schedule_step: the engine steps the schedule itself; create it "
                     "with manual_lr_schedule to step it by hand");
        return ZERO_ERR_STATE;
    }
    zero_lr_schedule_step(&e->schedule);
    return ZERO_OK;
}

uint64_t zero_engine_global_steps(zero_engine_h e) { return e->global_steps; }
uint64_t zero_engine_micro_steps(zero_engine_h e) { return e->micro_steps; }
uint64_t zero_engine_skipped_steps(zero_engine_h e) { return e->skipped_steps; }
double zero_engine_grad_norm(zero_engine_h e) { return e->last_grad_norm; }

zero_status_t zero_engine_timers(zero_engine_h e, zero_engine_timers_t *timers_p)
{
    if (e == NULL || timers_p == NULL)
        return ZERO_ERR_INVALID_ARG;
    double busy = e->store != NULL ? zero_store_step_busy(e->store) : 0.0;
    *timers_p = (zero_engine_timers_t){.backward_wait = e->timers.backward_wait, .reduce = e->timers.reduce,
                                       .step = e->timers.step, .gather = e->timers.gather,
                                       .offload_exposed = e->timers.offload_exposed};
    if (busy > 0.0 && e->timers.offload_exposed < busy)
        timers_p->offload_overlap = 1.0 - e->timers.offload_exposed / busy;
    return ZERO_OK;
}
const zero_config_t *zero_engine_config(zero_engine_h e) { return e->config; }
zero_comm_h zero_engine_comm(zero_engine_h e) { return e->comm; }
const char *zero_engine_last_error(zero_engine_h e) { return e ? e->last_error : ""; }

zero_status_t zero_engine_memory(zero_engine_h e, zero_engine_memory_t *memory_p)
{
    if (e == NULL || memory_p == NULL)
        return ZERO_ERR_INVALID_ARG;
    *memory_p = e->mem;
    return ZERO_OK;
}
