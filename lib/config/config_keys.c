/*
 * The key tables of the DeepSpeed config, one per block (see config_keys.h for
 * what a row holds and how to add one). Row order is the order of the docs'
 * tables and the order in which a misspelt key's nearest match is looked for.
 *
 * Defaults are DeepSpeed's code defaults (deepspeed/runtime/constants.py,
 * zero/config.py, zero/offload_config.py, precision_config.py,
 * swap_tensor/constants.py, lr_schedules.py and the optimizers' constructors);
 * docs/config.md lists the keys whose default differs and why.
 */
#include "config/config_keys.h"
#include "config/config_json.h"
#include "util/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- row builders: one key is one line ---- */

#define KEY(k) .key = (k)
#define ALIAS(a) .alias = (a)
#define AT(member) .stored = true, .offset = offsetof(zero_config_t, member), \
                   .size = sizeof(((zero_config_t *)0)->member)
#define DEF(text) .def = (text)
#define DOC(text) .doc = (text)
#define HINT(text) .hint = (text)
#define BY_CODE .def_by_code = true
#define READ_BY_CODE .flags = CONFIG_READ_BY_CODE
#define T_OBJECT_OF(table) .type = CONFIG_OBJECT, .sub = (table)

#define T_BOOL .type = CONFIG_BOOL
#define T_UINT(lo, hi) .type = CONFIG_UINT, .imin = (lo), .imax = (hi)
#define T_INT .type = CONFIG_INT
#define T_NUM(lo, hi, range) .type = CONFIG_NUMBER, .dmin = (lo), .dmax = (hi), .flags = (range)
#define T_NONNEG T_NUM(0.0, 0.0, CONFIG_NO_MAX)
#define T_ANY_NUMBER T_NUM(0.0, 0.0, CONFIG_NO_MIN | CONFIG_NO_MAX)
#define T_ENUM(table) .type = CONFIG_ENUM, .names = (table)
#define T_NULL .type = CONFIG_NULL
#define T_OBJECT .type = CONFIG_OBJECT
#define T_CUSTOM(type_text) .type = CONFIG_CUSTOM, .type_doc = (type_text)

#define NO_EFFECT(why) .cls = CONFIG_NO_EFFECT, .doc = (why)
#define DEFAULT_ONLY(feature) .cls = CONFIG_DEFAULT_ONLY, .doc = (feature)
#define OUT_OF_SCOPE .cls = CONFIG_OUT_OF_SCOPE, .type = CONFIG_ANY
#define OUT_OF_SCOPE_BY_CODE .cls = CONFIG_OUT_OF_SCOPE, .type = CONFIG_OBJECT
#define DEPRECATED .cls = CONFIG_DEPRECATED, .type = CONFIG_CUSTOM

#define NO_MAX UINT64_MAX
/* The batch triad: read and resolved by code (resolve_batch), rendered once known. */
#define BATCH_KEY .type = CONFIG_UINT, .imin = 1, .imax = (uint64_t)1 << 40, .type_doc = "integer ≥ 1", \
                  .flags = CONFIG_READ_BY_CODE | CONFIG_OMIT_ZERO, DEF("derived"), BY_CODE
#define U32_MAX ((uint64_t)UINT32_MAX)
#define END_OF_ROWS {.key = NULL}

/* ---- enum names ---- */

const config_enum_name_t config_offload_device_names[] = {
    {"none", ZERO_OFFLOAD_NONE, false}, {"cpu", ZERO_OFFLOAD_CPU, false}, {"nvme", ZERO_OFFLOAD_NVME, false},
    {"remote", ZERO_OFFLOAD_REMOTE, false}, {NULL, 0, false}};

const config_enum_name_t config_warmup_type_names[] = {
    {"log", ZERO_WARMUP_LOG, false}, {"linear", ZERO_WARMUP_LINEAR, false}, {NULL, 0, false}};

const config_enum_name_t config_aio_backend_names[] = {
    {"async_io", ZERO_AIO_ASYNC_IO, false}, {"aio", ZERO_AIO_ASYNC_IO, true}, {"async", ZERO_AIO_ASYNC_IO, true},
    {"deepnvme", ZERO_AIO_ASYNC_IO, true}, {"posix", ZERO_AIO_POSIX, false}, {NULL, 0, false}};

const config_enum_name_t config_tag_validation_names[] = {
    {"Ignore", ZERO_TAG_VALIDATION_IGNORE, false}, {"Warn", ZERO_TAG_VALIDATION_WARN, false},
    {"Fail", ZERO_TAG_VALIDATION_FAIL, false}, {NULL, 0, false}};

const config_enum_name_t config_comm_backend_names[] = {
    {"auto", ZERO_CONFIG_COMM_AUTO, false}, {"nccl", ZERO_CONFIG_COMM_NCCL, false},
    {"staged", ZERO_CONFIG_COMM_STAGED, false}, {NULL, 0, false}};

/* ---- top level ---- */

/* (the nested blocks' tables are defined below) */

const config_key_t config_top_keys[] = {
    {KEY("train_batch_size"), BATCH_KEY, AT(train_batch_size), DOC("samples per optimizer step, over all ranks")},
    {KEY("train_micro_batch_size_per_gpu"), BATCH_KEY, AT(train_micro_batch_size_per_gpu),
     DOC("samples per rank per forward/backward")},
    {KEY("gradient_accumulation_steps"), BATCH_KEY, AT(gradient_accumulation_steps),
     DOC("micro-batches per optimizer step")},
    {KEY("optimizer"), T_OBJECT_OF(config_optimizer_keys)},
    {KEY("scheduler"), T_OBJECT_OF(config_scheduler_keys)},
    {KEY("fp16"), T_OBJECT_OF(config_fp16_keys)},
    {KEY("bf16"), T_OBJECT_OF(config_bf16_keys)},
    {KEY("bfloat16"), DEPRECATED},
    {KEY("gradient_clipping"), T_NONNEG, AT(gradient_clipping), DEF("0.0"),
     DOC("bound on the global L2 norm of the averaged, unscaled gradient; 0 = off")},
    {KEY("steps_per_print"), T_UINT(0, NO_MAX), AT(steps_per_print), DEF("10"), DOC("progress line every N steps; 0 = never")},
    {KEY("wall_clock_breakdown"), T_BOOL, AT(wall_clock_breakdown), DEF("false"),
     DOC("per-phase timings in the progress lines")},
    {KEY("memory_breakdown"), T_BOOL, AT(memory_breakdown), DEF("false"), DOC("memory use in the progress lines")},
    {KEY("dataloader_drop_last"), T_BOOL, AT(dataloader_drop_last), DEF("false"),
     DOC("the distributed sampler drops the last partial batch")},
    {KEY("zero_optimization"), T_OBJECT_OF(config_zero_keys)},
    {KEY("aio"), T_OBJECT_OF(config_aio_keys)},
    {KEY("checkpoint"), T_OBJECT_OF(config_checkpoint_keys)},
    {KEY("zero_allow_untested_optimizer"), T_BOOL, AT(zero_allow_untested_optimizer), DEF("false"),
     DOC("stored; every libzero optimizer is tested")},
    {KEY("zero_force_ds_cpu_optimizer"), T_BOOL, AT(zero_force_ds_cpu_optimizer), DEF("true"),
     DOC("stored; libzero's CPU optimizer is its own")},
    {KEY("comm_backend"), T_ENUM(config_comm_backend_names), AT(comm_backend), DEF("\"auto\""),
     DOC("libzero extension: the backend of collectives on GPU memory (`mem_kind` device, an engine that creates "
         "its communicator): `nccl`; `staged` (through pinned host memory and the host collectives: several "
         "ranks on one GPU, or GPUs without NCCL peer access); `auto`: `staged` where two ranks share a GPU, "
         "else `nccl`. At world size 1 `auto` and `staged` copy on the device (the `self` backend) and `nccl` "
         "runs them over NCCL ([comm.md](comm.md#staged-device-collectives-staged))")},
    {KEY("prescale_gradients"), T_BOOL, DEFAULT_ONLY("gradient prescaling"), DEF("false")},
    {KEY("gradient_predivide_factor"), T_ANY_NUMBER, DEFAULT_ONLY("a gradient predivide factor"), DEF("1.0")},
    {KEY("communication_data_type"), T_NULL, DEFAULT_ONLY("a separate gradient communication dtype"), DEF("null")},
    {KEY("sparse_gradients"), T_BOOL, DEFAULT_ONLY("sparse (CSR) gradients"), DEF("false")},
    {KEY("disable_allgather"), T_BOOL, DEFAULT_ONLY("disable_allgather"), DEF("false")},
    {KEY("amp"), T_CUSTOM("object"), .cls = CONFIG_DEFAULT_ONLY, DEF("{\"enabled\": false}"),
     DOC("Apex AMP (amp.enabled)")},
    {KEY("data_types"), T_OBJECT_OF(config_data_types_keys)},
    {KEY("sequence_parallel_size"), T_ANY_NUMBER, DEFAULT_ONLY("sequence parallelism"), DEF("1")},
    {KEY("allgather_size"), DEPRECATED},
    /* DeepSpeed features acting outside the engine's step: accepted, named in one warning. */
    {KEY("activation_checkpointing"), OUT_OF_SCOPE},
    {KEY("tensorboard"), OUT_OF_SCOPE},
    {KEY("wandb"), OUT_OF_SCOPE},
    {KEY("csv_monitor"), OUT_OF_SCOPE},
    {KEY("comet"), OUT_OF_SCOPE},
    {KEY("monitor_config"), OUT_OF_SCOPE},
    {KEY("comms_logger"), OUT_OF_SCOPE},
    {KEY("flops_profiler"), OUT_OF_SCOPE},
    {KEY("autotuning"), OUT_OF_SCOPE},
    {KEY("compression_training"), OUT_OF_SCOPE},
    {KEY("data_efficiency"), OUT_OF_SCOPE},
    {KEY("curriculum_learning"), OUT_OF_SCOPE},
    {KEY("sparse_attention"), OUT_OF_SCOPE},
    {KEY("pipeline"), OUT_OF_SCOPE},
    {KEY("eigenvalue"), OUT_OF_SCOPE},
    {KEY("progressive_layer_drop"), OUT_OF_SCOPE},
    {KEY("quantize_training"), OUT_OF_SCOPE},
    {KEY("hybrid_engine"), OUT_OF_SCOPE},
    {KEY("weight_quantization"), OUT_OF_SCOPE},
    {KEY("compile"), OUT_OF_SCOPE},
    {KEY("timers"), OUT_OF_SCOPE},
    {KEY("nebula"), OUT_OF_SCOPE},
    {KEY("datastates"), OUT_OF_SCOPE},
    {KEY("torch_autocast"), OUT_OF_SCOPE},
    {KEY("vocabulary_size"), OUT_OF_SCOPE},
    {KEY("dump_state"), OUT_OF_SCOPE},
    {KEY("seq_parallel_communication_data_type"), OUT_OF_SCOPE},
    {KEY("use_data_before_expert_parallelism"), OUT_OF_SCOPE},
    {KEY("expert_parallel"), OUT_OF_SCOPE},
    {KEY("graph_harvesting"), OUT_OF_SCOPE},
    {KEY("log_level"), OUT_OF_SCOPE},
    /* These two are unsupported when switched on (they change the batch or the partitioning). */
    {KEY("elasticity"), OUT_OF_SCOPE_BY_CODE},
    {KEY("tensor_parallel"), OUT_OF_SCOPE_BY_CODE},
    END_OF_ROWS};

const config_key_t config_data_types_keys[] = {
    {KEY("grad_accum_dtype"), T_NULL, DEFAULT_ONLY("a separate gradient accumulation dtype"), DEF("null")},
    {KEY("param_dtype"), T_NULL, DEFAULT_ONLY("a separate parameter dtype"), DEF("null")},
    {KEY("buffer_dtype"), T_NULL, DEFAULT_ONLY("a separate buffer dtype"), DEF("null")},
    END_OF_ROWS};

/* ---- precision ---- */

const config_key_t config_fp16_keys[] = {
    {KEY("enabled"), T_BOOL, AT(fp16.enabled), DEF("false"), DOC("fp16 mixed precision with loss scaling")},
    {KEY("auto_cast"), T_BOOL, AT(fp16.auto_cast), DEF("false"),
     DOC("stored; casting the forward's inputs is the trainer's business in C")},
    {KEY("loss_scale"), T_NONNEG, AT(fp16.loss_scale), DEF("0"), DOC("0 = dynamic loss scaling; > 0 = this static scale")},
    {KEY("initial_scale_power"), T_UINT(0, 127), AT(fp16.initial_scale_power), DEF("16"),
     DOC("dynamic scaling starts at 2^power")},
    {KEY("loss_scale_window"), T_UINT(1, NO_MAX), AT(fp16.loss_scale_window), DEF("1000"),
     DOC("clean steps since the last overflow before the scale doubles")},
    {KEY("hysteresis"), T_UINT(1, U32_MAX), AT(fp16.hysteresis), DEF("2"),
     DOC("overflows tolerated before the scale halves (delayed shift)")},
    {KEY("consecutive_hysteresis"), T_BOOL, AT(fp16.consecutive_hysteresis), DEF("false"),
     DOC("refill hysteresis after every clean step")},
    {KEY("min_loss_scale"), T_NUM(0.0, 0.0, CONFIG_MIN_OPEN | CONFIG_NO_MAX), AT(fp16.min_loss_scale), DEF("1"),
     DOC("the scale never drops below this; overflowing at it is `ZERO_ERR_LOSS_SCALE`")},
    {KEY("fp16_master_weights_and_grads"), T_BOOL, DEFAULT_ONLY("fp16 master weights and gradients"), DEF("false")},
    {KEY("fused_mode"), T_BOOL, NO_EFFECT("legacy kernel choice")},
    END_OF_ROWS};

const config_key_t config_bf16_keys[] = {
    {KEY("enabled"), T_BOOL, AT(bf16.enabled), DEF("false"), DOC("bf16 mixed precision (no loss scaling)")},
    {KEY("immediate_grad_update"), T_BOOL, AT(bf16.immediate_grad_update), DEF("false"),
     DOC("stored; an implementation choice with no numerical effect in libzero")},
    {KEY("check_grad_overflow"), T_BOOL, DEFAULT_ONLY("bf16 overflow checking with skipped steps"), DEF("false")},
    {KEY("bf16_master_weights_and_grads"), T_BOOL, DEFAULT_ONLY("bf16 master weights and gradients"), DEF("false")},
    {KEY("bf16_optimizer_states"), T_BOOL, DEFAULT_ONLY("bf16 optimizer states"), DEF("false")},
    END_OF_ROWS};

/* ---- zero_optimization ---- */

const config_key_t config_zero_keys[] = {
    {KEY("stage"), T_UINT(0, 3), AT(zero_optimization.stage), READ_BY_CODE, DEF("0"),
     DOC("0 plain data parallel, 1 optimizer states, 2 + gradients, 3 + parameters partitioned")},
    {KEY("contiguous_gradients"), T_BOOL, AT(zero_optimization.contiguous_gradients), DEF("true"),
     DOC("gradients copied into one contiguous buffer as they are produced")},
    {KEY("reduce_scatter"), T_BOOL, AT(zero_optimization.reduce_scatter), DEF("true"),
     DOC("reduce-scatter (not allreduce) to average gradients")},
    {KEY("reduce_bucket_size"), T_UINT(1, NO_MAX), AT(zero_optimization.reduce_bucket_size), DEF("5e8"),
     DOC("elements reduced at a time")},
    {KEY("use_multi_rank_bucket_allreduce"), T_BOOL, AT(zero_optimization.use_multi_rank_bucket_allreduce), DEF("true"),
     DOC("stored (communication scheduling)")},
    {KEY("allgather_partitions"), T_BOOL, AT(zero_optimization.allgather_partitions), DEF("true"),
     DOC("allgather (not broadcasts) to collect updated partitions")},
    {KEY("allgather_bucket_size"), T_UINT(1, NO_MAX), AT(zero_optimization.allgather_bucket_size), DEF("5e8"),
     DOC("elements allgathered at a time")},
    {KEY("overlap_comm"), T_BOOL, .type_doc = "bool or null", AT(zero_optimization.overlap_comm), READ_BY_CODE,
     DEF("true for stage 3, else false"), BY_CODE,
     DOC("overlap gradient reduction with backward")},
    {KEY("load_from_fp32_weights"), T_BOOL, AT(zero_optimization.load_from_fp32_weights), DEF("true"),
     DOC("initialize fp32 master weights from the checkpoint's fp32 copy")},
    {KEY("elastic_checkpoint"), T_BOOL, AT(zero_optimization.elastic_checkpoint), DEF("false"),
     DOC("stored; libzero reshards any checkpoint to any world size anyway")},
    {KEY("offload_param"), T_OBJECT_OF(config_offload_param_keys), .type_doc = "object or null", DEF("none"), DOC("see below; stage 3 only (ignored with a warning below, as in DeepSpeed)")},
    {KEY("offload_optimizer"), T_OBJECT_OF(config_offload_optimizer_keys), .type_doc = "object or null", DEF("none"), DOC("see below; stages 1, 2, 3")},
    {KEY("sub_group_size"), T_UINT(1, NO_MAX), AT(zero_optimization.sub_group_size), DEF("1e9"),
     DOC("elements per range of the optimizer step over the owned state; with `nvme` also the size of each staging buffer and of every range the engine reads or writes ([offload.md](offload.md))")},
    {KEY("cpu_offload_param"), DEPRECATED},
    {KEY("cpu_offload_use_pin_memory"), DEPRECATED},
    {KEY("cpu_offload"), DEPRECATED},
    {KEY("stage3_prefetch_bucket_size"), ALIAS("prefetch_bucket_size"), T_UINT(0, NO_MAX),
     AT(zero_optimization.stage3_prefetch_bucket_size), DEF("5e7"), DOC("stage 3: elements fetched ahead of use")},
    {KEY("stage3_param_persistence_threshold"), ALIAS("param_persistence_threshold"), T_UINT(0, NO_MAX),
     AT(zero_optimization.stage3_param_persistence_threshold), DEF("1e5"),
     DOC("stage 3: parameters smaller than this stay unpartitioned")},
    {KEY("stage3_model_persistence_threshold"), ALIAS("model_persistence_threshold"), T_UINT(0, NO_MAX),
     AT(zero_optimization.stage3_model_persistence_threshold), DEF("9223372036854775807"),
     DOC("stage 3: bound on the elements kept unpartitioned (2^63−1: none)")},
    {KEY("stage3_max_live_parameters"), ALIAS("max_live_parameters"), T_UINT(0, NO_MAX),
     AT(zero_optimization.stage3_max_live_parameters), DEF("1e9"), DOC("stage 3: elements resident before releasing")},
    {KEY("stage3_max_reuse_distance"), ALIAS("max_reuse_distance"), T_UINT(0, NO_MAX),
     AT(zero_optimization.stage3_max_reuse_distance), DEF("1e9"),
     DOC("stage 3: do not release a parameter reused within this distance")},
    {KEY("stage3_gather_16bit_weights_on_model_save"), ALIAS("gather_16bit_weights_on_model_save"), T_BOOL,
     AT(zero_optimization.stage3_gather_16bit_weights_on_model_save), DEF("false"),
     DOC("gather full 16-bit weights when saving the model")},
    {KEY("stage3_gather_fp16_weights_on_model_save"), DEPRECATED},
    {KEY("stage3_module_granularity_threshold"), ALIAS("module_granularity_threshold"), T_UINT(0, NO_MAX),
     AT(zero_optimization.stage3_module_granularity_threshold), DEF("0"), DOC("stored (module fetch granularity)")},
    {KEY("stage3_use_all_reduce_for_fetch_params"), ALIAS("use_all_reduce_for_fetch_params"), T_BOOL,
     AT(zero_optimization.stage3_use_all_reduce_for_fetch_params), DEF("false"), DOC("stored (fetch with allreduce)")},
    {KEY("ignore_unused_parameters"), T_BOOL, AT(zero_optimization.ignore_unused_parameters), DEF("true"),
     DOC("parameters that get no gradient are not an error")},
    {KEY("legacy_stage1"), T_BOOL, DEFAULT_ONLY("the legacy stage-1 implementation"), DEF("false")},
    {KEY("round_robin_gradients"), T_BOOL, AT(zero_optimization.round_robin_gradients), DEF("false"),
     DOC("stored (offload copy scheduling)")},
    {KEY("check_grad_writes"), T_BOOL, AT(zero_optimization.check_grad_writes), DEF("false"),
     DOC("libzero extension: the late-write guard, always on in a `buildtype=debug` build "
         "([engine.md](engine.md#late-write-guard))")},
    {KEY("zero_hpz_partition_size"), T_UINT(1, 65536), AT(zero_optimization.zero_hpz_partition_size), DEF("1"),
     DOC("ZeRO++ hpZ, stage 3: a secondary copy of the 16-bit weights partitioned over groups of this many "
         "consecutive ranks (a node), so that the forward's and backward's gathers stay in the group; must divide "
         "the world size ([engine.md](engine.md#zero-hierarchical-partitioning-hpz))")},
    {KEY("zero_quantized_weights"), T_BOOL, AT(zero_optimization.zero_quantized_weights), DEF("false"),
     DOC("ZeRO++ qwZ, stage 3: weights gathered as int8 with a scale per 256 elements "
         "([engine.md](engine.md#zero-quantized-weights-and-gradients))")},
    {KEY("zero_quantized_nontrainable_weights"), T_BOOL, DEFAULT_ONLY("ZeRO++ quantized non-trainable weights"),
     DEF("false")},
    {KEY("zero_quantized_gradients"), T_BOOL, AT(zero_optimization.zero_quantized_gradients), DEF("false"),
     DOC("ZeRO++ qgZ, stage 3: gradients reduce-scattered as int8 through an all-to-all, summed in fp32 "
         "([engine.md](engine.md#zero-quantized-weights-and-gradients))")},
    {KEY("zeropp_loco_param"), T_NULL, DEFAULT_ONLY("LoCo-ZeRO++"), DEF("null")},
    {KEY("mics_shard_size"), T_INT, DEFAULT_ONLY("MiCS sharding"), DEF("-1")},
    {KEY("mics_hierarchical_params_gather"), T_BOOL, DEFAULT_ONLY("MiCS hierarchical gather"), DEF("false")},
    {KEY("memory_efficient_linear"), T_BOOL, NO_EFFECT("PyTorch module machinery")},
    {KEY("pipeline_loading_checkpoint"), T_BOOL, NO_EFFECT("PyTorch module machinery")},
    {KEY("override_module_apply"), T_BOOL, NO_EFFECT("PyTorch module machinery")},
    {KEY("log_trace_cache_warnings"), T_BOOL, NO_EFFECT("PyTorch module machinery")},
    {KEY("zenflow"), T_NULL, DEFAULT_ONLY("ZenFlow"), DEF("null")},
    END_OF_ROWS};

const config_key_t config_offload_optimizer_keys[] = {
    {KEY("device"), T_ENUM(config_offload_device_names), AT(zero_optimization.offload_optimizer.device), READ_BY_CODE,
     DEF("\"none\""), DOC("where optimizer states live: `cpu` (a host rank's memory: no change; a device rank's: host memory, the step on the CPU, 16-bit gradients and weights through pinned slots, stage 1-3, [offload.md](offload.md#cpu-offload-for-device-ranks)), `nvme` (files under `nvme_path`; a device rank's under the CPU offload), `remote` (zero-optd, a libzero extension; a device rank's under the CPU offload, its slots stepped on the servers, [optd.md](optd.md)); `nvme` and `remote` need stage 1-3; the step runs on the CPU (`\"hpu\"` is unsupported)")},
    {KEY("nvme_path"), .type = CONFIG_STRING, .type_doc = "non-empty string",
     AT(zero_optimization.offload_optimizer.nvme_path), READ_BY_CODE, DOC("directory for state files; required for `nvme` (need not exist when only checked)")},
    {KEY("pin_memory"), T_BOOL, AT(zero_optimization.offload_optimizer.pin_memory), DEF("false"),
     DOC("page-locked staging memory; host ranks: no effect (the NVMe buffers are ordinary, populated, aligned memory); device ranks with `cpu`: no effect, the state stays pageable and only the `buffer_count` transfer slots are pinned, whatever the value (`ZERO_OFFLOAD_PIN_LIMIT` bounds them)")},
    {KEY("buffer_count"), T_UINT(1, U32_MAX), AT(zero_optimization.offload_optimizer.buffer_count), DEF("4"),
     DOC("NVMe staging buffers; each holds one range (`sub_group_size` elements) of the master and of every optimizer state, where DeepSpeed's holds one tensor; device ranks with `cpu` or `remote`: the pinned transfer slots (at most 64), each min(`sub_group_size`, 2^24) elements of 4 bytes")},
    {KEY("pipeline_read"), T_BOOL, AT(zero_optimization.offload_optimizer.pipeline_read), DEF("false"),
     DOC("overlap reading the next tile with the current step")},
    {KEY("pipeline_write"), T_BOOL, AT(zero_optimization.offload_optimizer.pipeline_write), DEF("false"),
     DOC("overlap writing the previous tile")},
    {KEY("fast_init"), T_BOOL, AT(zero_optimization.offload_optimizer.fast_init), DEF("false"),
     DOC("fast NVMe initialization")},
    {KEY("ratio"), T_NUM(0.0, 1.0, 0), AT(zero_optimization.offload_optimizer.ratio), DEF("1.0"),
     DOC("the fraction of the buckets whose optimizer state and step go to the CPU (device ranks with `cpu`, stages 1-3: those whose gradients arrive first; the rest stay on the device, [offload.md](offload.md#offload_optimizerratio)); host ranks: no effect")},
    {KEY("overlap_step"), T_BOOL, AT(zero_optimization.offload_optimizer.overlap_step), DEF("false"),
     DOC("libzero extension: with `cpu` on a device rank at stage 2 or 3, each offloaded bucket is stepped on the CPU as soon as its gradients are reduced in the last micro-batch, while the backward goes on; needs `gradient_clipping` 0, an elementwise optimizer and the engine's own LR schedule; a step that overflows is undone ([offload.md](offload.md#the-overlap-mode-overlap_step)); host ranks: no effect")},
    {KEY("servers"), T_CUSTOM("array of \"host:port\" strings"),
     DOC("libzero extension: the zero-optd servers of `\"remote\"` ([optd.md](optd.md)); required for `remote` unless `zero-launch --optd` gives them (`ZERO_OPTD_SERVERS`), which a list here overrides")},
    END_OF_ROWS};

const config_key_t config_offload_param_keys[] = {
    {KEY("device"), T_ENUM(config_offload_device_names), AT(zero_optimization.offload_param.device), READ_BY_CODE,
     DEF("\"none\""), DOC("where stage-3 parameter shards live: `cpu` (host memory: no change for a host rank; a device rank's shards are uploaded at each gather, [offload.md](offload.md#stage-3-parameter-shards-in-host-memory-for-device-ranks)), `nvme` (a file under `nvme_path`, host ranks; [offload.md](offload.md#stage-3-parameter-shards-on-nvme)) (`\"hpu\"` and `\"remote\"` are unsupported)")},
    {KEY("nvme_path"), .type = CONFIG_STRING, .type_doc = "non-empty string",
     AT(zero_optimization.offload_param.nvme_path), READ_BY_CODE, DOC("directory for the parameter file; required for `nvme`")},
    {KEY("pin_memory"), T_BOOL, AT(zero_optimization.offload_param.pin_memory), DEF("false"),
     DOC("page-locked staging memory; no effect (host ranks have nothing to stage; a device rank's `cpu` transfer slots are always pinned where possible, its shards never)")},
    {KEY("buffer_count"), T_UINT(1, U32_MAX), AT(zero_optimization.offload_param.buffer_count), DEF("5"),
     DOC("NVMe staging buffers of the parameter file; with `cpu` on a device rank, the pinned transfer slots (at most 64, each min(`buffer_size`, 4 Mi, the longest shard) elements)")},
    {KEY("buffer_size"), T_UINT(1, NO_MAX), AT(zero_optimization.offload_param.buffer_size), DEF("1e8"),
     DOC("elements per staging buffer; a gather reads a shard a buffer at a time. libzero caps it so that the `buffer_count` buffers together hold no more than the part of the largest shard in the file (a small model's buffers are not several times its shard)")},
    {KEY("max_in_cpu"), T_UINT(0, NO_MAX), AT(zero_optimization.offload_param.max_in_cpu), DEF("1e9"),
     DOC("elements of this rank's shards kept in host memory with `nvme`, as in DeepSpeed: the first `max_in_cpu` elements, dtype group after group, stay in memory for the whole run (a fixed split, not a cache), the rest live in the file; with the default, a shard under 1e9 elements stays in memory and there is no file (set 0 to put every shard in the file)")},
    END_OF_ROWS};

/* ---- aio, checkpoint ---- */

const config_key_t config_aio_keys[] = {
    {KEY("io_backend"), T_ENUM(config_aio_backend_names), AT(aio.io_backend), DEF("\"async_io\""),
     DOC("`aio`, `async`, `deepnvme` are aliases of `async_io`")},
    {KEY("block_size"), T_UINT(1, NO_MAX), AT(aio.block_size), DEF("1048576"), DOC("bytes per I/O request")},
    {KEY("queue_depth"), T_UINT(1, U32_MAX), AT(aio.queue_depth), DEF("8"), DOC("requests in flight")},
    {KEY("intra_op_parallelism"), T_UINT(1, U32_MAX), AT(aio.intra_op_parallelism), READ_BY_CODE, DEF("1"),
     DOC("I/O threads per operation (`thread_count` is the deprecated name)")},
    {KEY("thread_count"), DEPRECATED},
    {KEY("single_submit"), T_BOOL, AT(aio.single_submit), DEF("false"), DOC("submit requests one at a time")},
    {KEY("overlap_events"), T_BOOL, AT(aio.overlap_events), DEF("true"), DOC("overlap submission and completion")},
    {KEY("use_gds"), T_BOOL, DEFAULT_ONLY("GPUDirect Storage"), DEF("false")},
    END_OF_ROWS};

const config_key_t config_checkpoint_keys[] = {
    {KEY("tag_validation"), T_ENUM(config_tag_validation_names), AT(checkpoint.tag_validation), DEF("\"Warn\""),
     DOC("what to do when ranks save under different tags")},
    {KEY("load_universal"), T_BOOL, AT(checkpoint.load_universal), DEF("false"),
     DOC("stored; libzero loads any checkpoint at any world size without a universal conversion")},
    {KEY("use_node_local_storage"), T_BOOL, DEFAULT_ONLY("node-local checkpoint storage"), DEF("false")},
    {KEY("parallel_write"), T_OBJECT_OF(config_parallel_write_keys)},
    {KEY("writer"), OUT_OF_SCOPE, .flags = CONFIG_NULL_IS_ABSENT},
    END_OF_ROWS};

/* ---- optimizer ---- */

const config_key_t config_optimizer_keys[] = {
    {KEY("type"), T_CUSTOM("string"), DEF("none"), DOC("required in the block: Adam, AdamW, SGD, Adagrad, Lamb or Lion")},
    {KEY("params"), T_OBJECT, .type_doc = "object", DOC("the optimizer's parameters (tables below)")},
    {KEY("legacy_fusion"), T_BOOL, AT(optimizer.legacy_fusion), DEF("false"), DOC("stored; no effect (kernel choice)")},
    {KEY("param_groups"), T_CUSTOM("object of objects"),
     DOC("libzero extension: parameter groups by name, each overriding keys of `params` ([engine.md](engine.md#parameter-groups)); "
         "group 0 is `\"default\"`, the others follow in the order given")},
    END_OF_ROWS};

/* max_grad_norm is refused by code in every optimizer (DeepSpeed's gradient_clipping is the one clip). */
#define MAX_GRAD_NORM {KEY("max_grad_norm"), T_CUSTOM(NULL)}
#define LR(def, doc) {KEY("lr"), T_NONNEG, AT(optimizer.lr), DEF(def), DOC(doc)}
#define BETAS {KEY("betas"), .type = CONFIG_PAIR, .type_doc = "two numbers in [0, 1)", AT(optimizer.betas), READ_BY_CODE, \
               DEF("[0.9, 0.999]"), DOC("moment decay rates")}
#define WEIGHT_DECAY(doc) {KEY("weight_decay"), T_NONNEG, AT(optimizer.weight_decay), DEF("0"), DOC(doc)}
#define AMSGRAD {KEY("amsgrad"), T_BOOL, DEFAULT_ONLY("AMSGrad"), DEF("false")}
#define MAXIMIZE {KEY("maximize"), T_BOOL, DEFAULT_ONLY("maximize"), DEF("false")}

const config_key_t config_adam_keys[] = {
    LR("1e-3", "learning rate"),
    BETAS,
    {KEY("eps"), T_NONNEG, AT(optimizer.eps), DEF("1e-8"), DOC("added to the denominator")},
    WEIGHT_DECAY("decoupled (AdamW) unless `adam_w_mode` is false: then L2, added to the gradient"),
    {KEY("bias_correction"), T_BOOL, AT(optimizer.bias_correction), DEF("true"), DOC("bias-corrected moments")},
    {KEY("adam_w_mode"), T_BOOL, AT(optimizer.adam_w_mode), READ_BY_CODE, DEF("true"),
     DOC("decoupled weight decay; false is an error with type `AdamW`")},
    AMSGRAD,
    {KEY("torch_adam"), T_BOOL, NO_EFFECT("kernel choice")},
    MAX_GRAD_NORM,
    END_OF_ROWS};

const config_key_t config_lamb_keys[] = {
    LR("1e-3", "learning rate"),
    BETAS,
    {KEY("eps"), T_NONNEG, AT(optimizer.eps), DEF("1e-8"), DOC("added to the denominator")},
    WEIGHT_DECAY("decoupled weight decay"),
    {KEY("bias_correction"), T_BOOL, AT(optimizer.bias_correction), DEF("true"), DOC("bias-corrected moments")},
    {KEY("max_coeff"), T_NONNEG, AT(optimizer.max_coeff), DEF("10.0"), DOC("upper bound of the trust ratio")},
    {KEY("min_coeff"), T_NONNEG, AT(optimizer.min_coeff), DEF("0.01"),
     DOC("lower bound of the trust ratio (≤ `max_coeff`)")},
    {KEY("eps_inside_sqrt"), T_BOOL, DEFAULT_ONLY("eps inside the square root"), DEF("false")},
    AMSGRAD,
    MAX_GRAD_NORM,
    END_OF_ROWS};

const config_key_t config_lion_keys[] = {
    LR("1e-3", "learning rate"),
    BETAS,
    WEIGHT_DECAY("decoupled weight decay"),
    MAX_GRAD_NORM,
    END_OF_ROWS};

const config_key_t config_sgd_keys[] = {
    LR("1e-3", "learning rate"),
    {KEY("momentum"), T_NONNEG, AT(optimizer.momentum), DEF("0"), DOC("momentum factor")},
    {KEY("dampening"), T_NONNEG, AT(optimizer.dampening), DEF("0"), DOC("dampening of the momentum")},
    WEIGHT_DECAY("L2, added to the gradient (torch.optim.SGD)"),
    {KEY("nesterov"), T_BOOL, AT(optimizer.nesterov), DEF("false"),
     DOC("Nesterov momentum; needs `momentum` > 0 and `dampening` 0")},
    MAXIMIZE,
    {KEY("foreach"), T_BOOL, NO_EFFECT("kernel choice")},
    {KEY("differentiable"), T_BOOL, NO_EFFECT("autograd machinery")},
    {KEY("fused"), T_BOOL, NO_EFFECT("kernel choice")},
    MAX_GRAD_NORM,
    END_OF_ROWS};

const config_key_t config_adagrad_keys[] = {
    LR("1e-2", "learning rate"),
    {KEY("eps"), T_NONNEG, AT(optimizer.eps), DEF("1e-10"), DOC("added to the denominator")},
    WEIGHT_DECAY("L2, added to the gradient"),
    {KEY("lr_decay"), T_ANY_NUMBER, DEFAULT_ONLY("Adagrad lr_decay"), DEF("0")},
    {KEY("initial_accumulator_value"), T_ANY_NUMBER, DEFAULT_ONLY("Adagrad initial_accumulator_value"), DEF("0")},
    MAXIMIZE,
    AMSGRAD,
    {KEY("foreach"), T_BOOL, NO_EFFECT("kernel choice")},
    MAX_GRAD_NORM,
    END_OF_ROWS};

/* ---- scheduler ---- */

const config_key_t config_scheduler_keys[] = {
    {KEY("type"), T_CUSTOM("string"), DEF("none"),
     DOC("required in the block: WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle or LRRangeTest")},
    {KEY("params"), T_OBJECT, .type_doc = "object", DOC("the schedule's parameters (tables below)")},
    END_OF_ROWS};

#define LAST_BATCH_ITERATION {KEY("last_batch_iteration"), T_INT, DEFAULT_ONLY("starting a schedule part-way"), \
                              DEF("-1"), HINT("resume from a checkpoint instead")}
#define WARMUP_MIN_LR {KEY("warmup_min_lr"), T_NONNEG, AT(scheduler.warmup_min_lr), DEF("0"), \
                       DOC("learning rate at step 0")}
/* DeepSpeed's WarmupLR peaks at the optimizer's lr by default, WarmupDecayLR at 0.001. */
#define WARMUP_MAX_LR {KEY("warmup_max_lr"), T_NONNEG, AT(scheduler.warmup_max_lr), DEF("the optimizer's `lr`"), \
                       BY_CODE, DOC("learning rate at the end of warmup (1e-3 without an optimizer block)")}
#define DECAY_WARMUP_MAX_LR {KEY("warmup_max_lr"), T_NONNEG, AT(scheduler.warmup_max_lr), DEF("0.001"), \
                             DOC("learning rate at the end of warmup; `\"auto\"` means the optimizer's `lr`")}
#define WARMUP_NUM_STEPS {KEY("warmup_num_steps"), T_UINT(1, NO_MAX), AT(scheduler.warmup_num_steps), DEF("1000"), \
                          DOC("steps of warmup (DeepSpeed's formulas use max(2, this))")}
#define WARMUP_TYPE {KEY("warmup_type"), T_ENUM(config_warmup_type_names), AT(scheduler.warmup_type), DEF("\"log\""), \
                     DOC("shape of the warmup")}
#define TOTAL_NUM_STEPS {KEY("total_num_steps"), T_UINT(1, NO_MAX), AT(scheduler.total_num_steps), READ_BY_CODE, \
                         DEF("required"), BY_CODE, \
                         DOC("length of the schedule; less than `warmup_num_steps` is a warning")}

const config_key_t config_warmup_lr_keys[] = {
    WARMUP_MIN_LR, WARMUP_MAX_LR, WARMUP_NUM_STEPS, WARMUP_TYPE, LAST_BATCH_ITERATION, END_OF_ROWS};

const config_key_t config_warmup_decay_lr_keys[] = {
    WARMUP_MIN_LR, DECAY_WARMUP_MAX_LR, WARMUP_NUM_STEPS, WARMUP_TYPE, TOTAL_NUM_STEPS, LAST_BATCH_ITERATION, END_OF_ROWS};

const config_key_t config_warmup_cosine_lr_keys[] = {
    TOTAL_NUM_STEPS,
    {KEY("warmup_min_ratio"), T_NUM(0.0, 1.0, 0), AT(scheduler.warmup_min_ratio), DEF("0"),
     DOC("start of warmup, as a ratio of the optimizer's `lr`")},
    WARMUP_NUM_STEPS,
    {KEY("cos_min_ratio"), T_NUM(0.0, 1.0, 0), AT(scheduler.cos_min_ratio), DEF("0.0001"),
     DOC("end of the cosine, as a ratio of the optimizer's `lr`")},
    WARMUP_TYPE,
    LAST_BATCH_ITERATION,
    END_OF_ROWS};

const config_key_t config_one_cycle_keys[] = {
    {KEY("cycle_min_lr"), .type = CONFIG_NUMBER, .flags = CONFIG_NO_MAX | CONFIG_READ_BY_CODE, AT(scheduler.cycle_min_lr), DEF("required"), BY_CODE, DOC("learning rate at the cycle's ends")},
    {KEY("cycle_max_lr"), .type = CONFIG_NUMBER, .flags = CONFIG_NO_MAX | CONFIG_READ_BY_CODE, AT(scheduler.cycle_max_lr), DEF("required"), BY_CODE, DOC("learning rate at the cycle's peak")},
    {KEY("decay_lr_rate"), T_NONNEG, AT(scheduler.decay_lr_rate), DEF("0"), DOC("decay rate after the cycle")},
    {KEY("cycle_first_step_size"), T_UINT(1, NO_MAX), AT(scheduler.cycle_first_step_size), DEF("2000"),
     DOC("steps of the rising half")},
    {KEY("cycle_second_step_size"), T_UINT(1, NO_MAX), .type_doc = "integer ≥ 1 or null",
     AT(scheduler.cycle_second_step_size), READ_BY_CODE, DEF("= cycle_first_step_size"), BY_CODE,
     DOC("steps of the falling half")},
    {KEY("cycle_first_stair_count"), T_UINT(0, NO_MAX), AT(scheduler.cycle_first_stair_count), DEF("0"),
     DOC("stairs in the rising half (0: no staircase)")},
    {KEY("cycle_second_stair_count"), T_UINT(0, NO_MAX), .type_doc = "integer ≥ 0 or null",
     AT(scheduler.cycle_second_stair_count), READ_BY_CODE, DEF("= cycle_first_stair_count"), BY_CODE,
     DOC("stairs in the falling half")},
    {KEY("decay_step_size"), T_UINT(0, NO_MAX), AT(scheduler.decay_step_size), DEF("0"),
     DOC("steps between decays after the cycle (0: no decay)")},
    {KEY("cycle_momentum"), T_BOOL, AT(scheduler.cycle_momentum), DEF("true"),
     DOC("cycle the first beta too (only optimizers with betas)")},
    {KEY("cycle_min_mom"), T_NUM(0.0, 1.0, CONFIG_MAX_OPEN), AT(scheduler.cycle_min_mom), DEF("0.8"),
     DOC("momentum at the cycle's peak")},
    {KEY("cycle_max_mom"), T_NUM(0.0, 1.0, CONFIG_MAX_OPEN), AT(scheduler.cycle_max_mom), DEF("0.9"),
     DOC("momentum at the cycle's ends")},
    {KEY("decay_mom_rate"), T_NUM(0.0, 0.0, CONFIG_NO_MIN | CONFIG_NO_MAX), AT(scheduler.decay_mom_rate), DEF("0"),
     DOC("momentum decay rate after the cycle")},
    LAST_BATCH_ITERATION,
    END_OF_ROWS};

const config_key_t config_lr_range_test_keys[] = {
    {KEY("lr_range_test_min_lr"), T_NONNEG, AT(scheduler.lr_range_test_min_lr), DEF("1e-3"),
     DOC("learning rate at step 0")},
    {KEY("lr_range_test_step_size"), T_UINT(1, NO_MAX), AT(scheduler.lr_range_test_step_size), DEF("2000"),
     DOC("steps per increase")},
    {KEY("lr_range_test_step_rate"), T_NONNEG, AT(scheduler.lr_range_test_step_rate), DEF("1.0"),
     DOC("increase per step size")},
    {KEY("lr_range_test_staircase"), T_BOOL, AT(scheduler.lr_range_test_staircase), DEF("false"),
     DOC("increase in stairs, not continuously")},
    LAST_BATCH_ITERATION,
    END_OF_ROWS};

const config_key_t *config_optimizer_params_keys(zero_optimizer_type_t type)
{
    switch (type) {
    case ZERO_OPTIMIZER_ADAM:
    case ZERO_OPTIMIZER_ADAMW: return config_adam_keys;
    case ZERO_OPTIMIZER_LAMB: return config_lamb_keys;
    case ZERO_OPTIMIZER_LION: return config_lion_keys;
    case ZERO_OPTIMIZER_SGD: return config_sgd_keys;
    case ZERO_OPTIMIZER_ADAGRAD: return config_adagrad_keys;
    case ZERO_OPTIMIZER_NONE: break;
    }
    return NULL;
}

const config_key_t *config_scheduler_params_keys(zero_scheduler_type_t type)
{
    switch (type) {
    case ZERO_SCHEDULER_WARMUP_LR: return config_warmup_lr_keys;
    case ZERO_SCHEDULER_WARMUP_DECAY_LR: return config_warmup_decay_lr_keys;
    case ZERO_SCHEDULER_WARMUP_COSINE_LR: return config_warmup_cosine_lr_keys;
    case ZERO_SCHEDULER_ONE_CYCLE: return config_one_cycle_keys;
    case ZERO_SCHEDULER_LR_RANGE_TEST: return config_lr_range_test_keys;
    case ZERO_SCHEDULER_NONE: break;
    }
    return NULL;
}

const config_key_t config_parallel_write_keys[] = {
    {KEY("pipeline_stage"), T_BOOL, NO_EFFECT("pipeline parallelism")},
    END_OF_ROWS};

const config_block_t config_blocks[] = {
    {"", "top", config_top_keys},
    {"data_types", "data_types", config_data_types_keys},
    {"fp16", "fp16", config_fp16_keys},
    {"bf16", "bf16", config_bf16_keys},
    {"zero_optimization", "zero_optimization", config_zero_keys},
    {"zero_optimization.offload_optimizer", "offload_optimizer", config_offload_optimizer_keys},
    {"zero_optimization.offload_param", "offload_param", config_offload_param_keys},
    {"aio", "aio", config_aio_keys},
    {"checkpoint", "checkpoint", config_checkpoint_keys},
    {"checkpoint.parallel_write", "parallel_write", config_parallel_write_keys},
    {"optimizer", "optimizer", config_optimizer_keys},
    {"optimizer.params", "Adam", config_adam_keys},
    {"optimizer.params", "Lamb", config_lamb_keys},
    {"optimizer.params", "Lion", config_lion_keys},
    {"optimizer.params", "SGD", config_sgd_keys},
    {"optimizer.params", "Adagrad", config_adagrad_keys},
    {"scheduler", "scheduler", config_scheduler_keys},
    {"scheduler.params", "WarmupLR", config_warmup_lr_keys},
    {"scheduler.params", "WarmupDecayLR", config_warmup_decay_lr_keys},
    {"scheduler.params", "WarmupCosineLR", config_warmup_cosine_lr_keys},
    {"scheduler.params", "OneCycle", config_one_cycle_keys},
    {"scheduler.params", "LRRangeTest", config_lr_range_test_keys},
    {NULL, NULL, NULL}};

/* ---- defaults ---- */

/* An integer default as written in the table: digits, or a number such as 5e8. */
static uint64_t default_uint(const char *text)
{
    if (text[strspn(text, "0123456789")] == '\0')
        return strtoull(text, NULL, 10);
    return (uint64_t)strtod(text, NULL);
}

void config_keys_apply_defaults(zero_config_t *config, const config_key_t *rows)
{
    for (const config_key_t *r = rows; r->key; r++) {
        char *field = (char *)config + r->offset;
        if (!r->stored || r->def == NULL || r->def_by_code || r->cls != CONFIG_IMPLEMENTED)
            continue;
        switch (r->type) {
        case CONFIG_BOOL: {
            bool v = strcmp(r->def, "true") == 0;
            memcpy(field, &v, sizeof(v));
            break;
        }
        case CONFIG_UINT: {
            uint64_t v = default_uint(r->def);
            uint32_t v32 = (uint32_t)v;
            if (r->size == sizeof(uint64_t))
                memcpy(field, &v, sizeof(v));
            else
                memcpy(field, &v32, sizeof(v32));
            break;
        }
        case CONFIG_NUMBER: {
            double v = strtod(r->def, NULL);
            memcpy(field, &v, sizeof(v));
            break;
        }
        case CONFIG_PAIR: {
            double v[2];
            if (sscanf(r->def, "[%lf, %lf]", &v[0], &v[1]) == 2)
                memcpy(field, v, sizeof(v));
            break;
        }
        case CONFIG_ENUM: {
            size_t len = strlen(r->def);
            /* the table writes "\"name\"" */
            for (const config_enum_name_t *e = r->names; e->name; e++) {
                if (len == strlen(e->name) + 2 && strncmp(r->def + 1, e->name, len - 2) == 0) {
                    int v = e->value;
                    memcpy(field, &v, sizeof(v));
                    break;
                }
            }
            break;
        }
        default: break;
        }
    }
}

/* ---- documentation ---- */

const char *config_key_default_text(const config_key_t *row)
{
    return row->def ? row->def : "—";
}

bool config_key_documented(const config_key_t *row)
{
    return row->doc != NULL && row->cls != CONFIG_OUT_OF_SCOPE && row->cls != CONFIG_DEPRECATED;
}

static void type_text(const config_key_t *r, char *buf, size_t size)
{
    char lo[40], hi[40];
    if (r->type_doc) {
        snprintf(buf, size, "%s", r->type_doc);
        return;
    }
    if (r->names) {
        size_t used = 0;
        buf[0] = '\0';
        for (const config_enum_name_t *e = r->names; e->name && used < size; e++) {
            if (e->alias)
                continue;
            int w = snprintf(buf + used, size - used, "%s`\"%s\"`", used ? " \\| " : "", e->name);
            if (w < 0)
                break;
            used += (size_t)w;
        }
        return;
    }
    zero_config_json_format_double(r->dmin, lo, sizeof(lo));
    zero_config_json_format_double(r->dmax, hi, sizeof(hi));
    switch (r->type) {
    case CONFIG_BOOL: snprintf(buf, size, "bool"); break;
    case CONFIG_UINT:
        if (r->imax == UINT64_MAX || r->imax == UINT32_MAX)
            snprintf(buf, size, "integer ≥ %llu", (unsigned long long)r->imin);
        else
            snprintf(buf, size, "integer %llu..%llu", (unsigned long long)r->imin, (unsigned long long)r->imax);
        break;
    case CONFIG_INT: snprintf(buf, size, "integer"); break;
    case CONFIG_NUMBER:
        if ((r->flags & CONFIG_NO_MIN) && (r->flags & CONFIG_NO_MAX))
            snprintf(buf, size, "number");
        else if (r->flags & CONFIG_NO_MAX)
            snprintf(buf, size, "number %s %s", (r->flags & CONFIG_MIN_OPEN) ? ">" : "≥", lo);
        else
            snprintf(buf, size, "number in %c%s, %s%c", (r->flags & CONFIG_MIN_OPEN) ? '(' : '[', lo, hi,
                     (r->flags & CONFIG_MAX_OPEN) ? ')' : ']');
        break;
    case CONFIG_NULL: snprintf(buf, size, "null"); break;
    case CONFIG_ENUM: snprintf(buf, size, "string"); break; /* not reached: enum rows have names */
    case CONFIG_STRING: snprintf(buf, size, "string"); break;
    case CONFIG_PAIR: snprintf(buf, size, "two numbers"); break;
    case CONFIG_OBJECT: snprintf(buf, size, "object"); break;
    case CONFIG_ANY:
    case CONFIG_CUSTOM: snprintf(buf, size, "—"); break;
    }
}

char *config_block_markdown(const config_block_t *block)
{
    char *text = zero_strdup("| key | type | default | meaning |\n|---|---|---|---|\n");
    for (const config_key_t *r = block->rows; r->key && text; r++) {
        char type[256], key[160], def[160], *line, *grown;
        const char *d = config_key_default_text(r);

        if (!config_key_documented(r))
            continue;
        type_text(r, type, sizeof(type));
        if (r->alias)
            snprintf(key, sizeof(key), "`%s` (or `%s`)", r->key, r->alias);
        else
            snprintf(key, sizeof(key), "`%s`", r->key);
        /* JSON strings, arrays and objects read best as code; plain words and numbers as they are. */
        if (d[0] == '"' || d[0] == '[' || d[0] == '{')
            snprintf(def, sizeof(def), "`%s`", d);
        else
            snprintf(def, sizeof(def), "%s", d);
        switch (r->cls) {
        case CONFIG_NO_EFFECT: line = zero_asprintf("| %s | %s | %s | accepted, no effect (%s) |\n", key, type, def, r->doc); break;
        case CONFIG_DEFAULT_ONLY:
            line = zero_asprintf("| %s | %s | %s | unsupported unless %s: %s%s%s%s |\n", key, type, def, def, r->doc,
                                 r->hint ? " (" : "", r->hint ? r->hint : "", r->hint ? ")" : "");
            break;
        default: line = zero_asprintf("| %s | %s | %s | %s |\n", key, type, def, r->doc); break;
        }
        grown = line ? zero_asprintf("%s%s", text, line) : NULL;
        zero_free(line);
        zero_free(text);
        text = grown;
    }
    return text;
}
