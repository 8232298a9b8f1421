/* zero_config: DeepSpeed-format config parsing, validation, defaults, batch triad, rendering. */
#include "test_main.h"
#include "util/alloc.h"
#include "config/config_internal.h"

#include <zero/zero.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every test body runs between these, so any leak on any path fails the test. */
#define BEGIN ZERO_TEST_MEM_MARK()
#define END ZERO_TEST_ASSERT_NO_LEAK()

static zero_status_t parse(const char *json, uint32_t world_size, zero_config_t **config_p, char **problems_p)
{
    return zero_config_parse_string(json, strlen(json), world_size, config_p, problems_p);
}

/* Parses text that must be accepted; returns the config (caller destroys it). */
static zero_config_t *parse_ok(const char *json, uint32_t world_size)
{
    zero_config_t *c = NULL;
    char *problems = NULL;
    zero_status_t s = parse(json, world_size, &c, &problems);
    if (s != ZERO_OK)
        fprintf(stderr, "unexpected %s for:\n%s\n%s", zero_status_string(s), json, problems ? problems : "");
    CU_ASSERT_EQUAL(s, ZERO_OK);
    zero_string_free(problems);
    return c;
}

/* Parses text that must be refused with @p status and a problem text containing every needle. */
static void expect_refused(const char *json, uint32_t world_size, zero_status_t status, const char *needle,
                           const char *needle2)
{
    zero_config_t *c = (zero_config_t *)(uintptr_t)0x1; /* must stay untouched on failure */
    char *problems = NULL;
    zero_status_t s = parse(json, world_size, &c, &problems);
    CU_ASSERT_EQUAL(s, status);
    CU_ASSERT_PTR_EQUAL(c, (zero_config_t *)(uintptr_t)0x1);
    CU_ASSERT_PTR_NOT_NULL(problems);
    if (problems == NULL)
        return;
    if (needle && strstr(problems, needle) == NULL) {
        fprintf(stderr, "\nexpected \"%s\" in:\n%s", needle, problems);
        CU_FAIL("problem text lacks the expected path and message");
    }
    if (needle2 && strstr(problems, needle2) == NULL) {
        fprintf(stderr, "\nexpected \"%s\" in:\n%s", needle2, problems);
        CU_FAIL("problem text lacks the second expected part");
    }
    zero_string_free(problems);
}

static size_t count_lines_with(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* ---- the config fixtures (tests/configs) ---- */

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long size;
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)size + 1);
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[size] = '\0';
    fclose(f);
    return buf;
}

static zero_config_t *parse_fixture(const char *name, uint32_t world_size)
{
    char path[4096];
    zero_config_t *c = NULL;
    char *problems = NULL;
    zero_status_t s;
    snprintf(path, sizeof(path), "%s/%s", zero_test_configs_dir(), name);
    s = zero_config_parse_file(path, world_size, &c, &problems);
    if (s != ZERO_OK)
        fprintf(stderr, "%s: %s\n%s", path, zero_status_string(s), problems ? problems : "");
    CU_ASSERT_EQUAL_FATAL(s, ZERO_OK);
    CU_ASSERT(problems == NULL || strstr(problems, ": error:") == NULL);
    zero_string_free(problems);
    return c;
}

static void test_every_fixture_config(void)
{
    BEGIN;
    DIR *dir = opendir(zero_test_configs_dir());
    struct dirent *de;
    int seen = 0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    while ((de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        for (uint32_t w = 0; w <= 2; w += 2) { /* world size 2, and the one the file implies */
            zero_config_t *c = parse_fixture(de->d_name, w);
            if (w == 2) {
                CU_ASSERT_EQUAL(c->world_size, 2);
                CU_ASSERT_EQUAL(c->train_batch_size,
                                c->train_micro_batch_size_per_gpu * c->gradient_accumulation_steps * 2);
            }
            zero_config_destroy(c);
        }
        seen++;
    }
    closedir(dir);
    CU_ASSERT(seen >= 10);
    END;
}

static void test_fixture_values(void)
{
    BEGIN;
    zero_config_t *c;

    c = parse_fixture("zero2_fp16_adam_warmup.json", 2);
    CU_ASSERT_EQUAL(c->train_batch_size, 32);
    CU_ASSERT_EQUAL(c->train_micro_batch_size_per_gpu, 4);
    CU_ASSERT_EQUAL(c->gradient_accumulation_steps, 4);
    CU_ASSERT_EQUAL(c->precision, ZERO_FP16);
    CU_ASSERT_EQUAL(c->optimizer.type, ZERO_OPTIMIZER_ADAM);
    CU_ASSERT(c->optimizer.adam_w_mode); /* "Adam" means AdamW unless adam_w_mode is false */
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.lr, 0.00015, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.weight_decay, 0.01, 0);
    CU_ASSERT_EQUAL(c->scheduler.type, ZERO_SCHEDULER_WARMUP_LR);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.warmup_max_lr, 0.00015, 0);
    CU_ASSERT_EQUAL(c->scheduler.warmup_num_steps, 100);
    CU_ASSERT_EQUAL(c->scheduler.warmup_type, ZERO_WARMUP_LOG);
    CU_ASSERT_EQUAL(c->zero_optimization.stage, 2);
    CU_ASSERT_EQUAL(c->zero_optimization.reduce_bucket_size, 50000000);
    CU_ASSERT(c->zero_optimization.overlap_comm);
    CU_ASSERT_EQUAL(c->steps_per_print, 10);
    CU_ASSERT_DOUBLE_EQUAL(c->fp16.loss_scale, 0, 0);
    CU_ASSERT_EQUAL(c->fp16.initial_scale_power, 16);
    zero_config_destroy(c);

    c = parse_fixture("hf_trainer_auto.json", 2); /* "auto" everywhere */
    CU_ASSERT_EQUAL(c->train_micro_batch_size_per_gpu, 16);
    CU_ASSERT_EQUAL(c->gradient_accumulation_steps, 1);
    CU_ASSERT_EQUAL(c->train_batch_size, 32);
    CU_ASSERT_FALSE(c->fp16.enabled);
    CU_ASSERT_EQUAL(c->precision, ZERO_FP32);
    CU_ASSERT_EQUAL(c->optimizer.type, ZERO_OPTIMIZER_ADAMW);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.lr, 1e-3, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.betas[0], 0.9, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.betas[1], 0.999, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.eps, 1e-8, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.weight_decay, 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.warmup_min_lr, 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.warmup_max_lr, 1e-3, 0);
    CU_ASSERT_EQUAL(c->scheduler.warmup_num_steps, 1000);
    CU_ASSERT_DOUBLE_EQUAL(c->gradient_clipping, 0.0, 0);                 /* "auto": the default, off */
    CU_ASSERT_EQUAL(c->zero_optimization.allgather_bucket_size, 200000000);
    CU_ASSERT_EQUAL(c->zero_optimization.stage, 0);                       /* "auto": the default */
    CU_ASSERT_EQUAL(c->zero_optimization.reduce_bucket_size, 500000000);  /* "auto": the default */
    CU_ASSERT_FALSE(c->zero_optimization.overlap_comm);                   /* "auto": false below stage 3 */
    CU_ASSERT_FALSE(c->bf16.enabled);
    CU_ASSERT_EQUAL(c->steps_per_print, 2000);
    zero_config_destroy(c);

    c = parse_fixture("zero3_lion_fp16_static.json", 2);
    CU_ASSERT_EQUAL(c->train_batch_size, 8);
    CU_ASSERT_EQUAL(c->train_micro_batch_size_per_gpu, 4);
    CU_ASSERT_EQUAL(c->gradient_accumulation_steps, 1);
    CU_ASSERT_EQUAL(c->optimizer.type, ZERO_OPTIMIZER_LION);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.betas[1], 0.99, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->fp16.loss_scale, 128, 0);
    CU_ASSERT_EQUAL(c->zero_optimization.stage, 3);
    CU_ASSERT(c->zero_optimization.overlap_comm); /* default true for stage 3 */
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_param_persistence_threshold, 0);
    CU_ASSERT_EQUAL(c->checkpoint.tag_validation, ZERO_TAG_VALIDATION_FAIL);
    zero_config_destroy(c);

    c = parse_fixture("zero1_sgd_onecycle.json", 2);
    CU_ASSERT_EQUAL(c->train_micro_batch_size_per_gpu, 8);
    CU_ASSERT_EQUAL(c->optimizer.type, ZERO_OPTIMIZER_SGD);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.momentum, 0.9, 0);
    CU_ASSERT(c->optimizer.nesterov);
    CU_ASSERT_EQUAL(c->scheduler.type, ZERO_SCHEDULER_ONE_CYCLE);
    CU_ASSERT_EQUAL(c->scheduler.cycle_first_step_size, 1000);
    CU_ASSERT_EQUAL(c->scheduler.cycle_second_stair_count, 500);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.cycle_max_lr, 0.001, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.cycle_min_mom, 0.85, 0);
    CU_ASSERT_FALSE(c->scheduler.cycle_momentum); /* SGD has no betas: DeepSpeed does not cycle */
    zero_config_destroy(c);

    c = parse_fixture("zero3_nvme_bf16.json", 2);
    CU_ASSERT_EQUAL(c->train_batch_size, 2);
    CU_ASSERT_EQUAL(c->optimizer.type, ZERO_OPTIMIZER_ADAM);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_optimizer.device, ZERO_OFFLOAD_NVME);
    CU_ASSERT_STRING_EQUAL(c->zero_optimization.offload_optimizer.nvme_path, "/local_nvme");
    CU_ASSERT_EQUAL(c->zero_optimization.offload_param.device, ZERO_OFFLOAD_NVME);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_param.buffer_count, 5);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_param.buffer_size, 100000000);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_param.max_in_cpu, 1000000000);
    CU_ASSERT_EQUAL(c->aio.block_size, 1048576);
    CU_ASSERT_EQUAL(c->aio.queue_depth, 8);
    CU_ASSERT(c->aio.overlap_events);
    zero_config_destroy(c);

    c = parse_fixture("zero2_lamb_cosine_bf16.json", 2);
    CU_ASSERT_EQUAL(c->train_batch_size, 32);
    CU_ASSERT_EQUAL(c->optimizer.type, ZERO_OPTIMIZER_LAMB);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.max_coeff, 10.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.min_coeff, 0.01, 0);
    CU_ASSERT_EQUAL(c->scheduler.type, ZERO_SCHEDULER_WARMUP_COSINE_LR);
    CU_ASSERT_EQUAL(c->scheduler.total_num_steps, 5000);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.cos_min_ratio, 0.0001, 0);
    CU_ASSERT_EQUAL(c->precision, ZERO_BF16);
    zero_config_destroy(c);

    c = parse_fixture("zero1_fp32_adamw_accum.json", 2);
    CU_ASSERT_EQUAL(c->train_micro_batch_size_per_gpu, 8);
    CU_ASSERT_DOUBLE_EQUAL(c->gradient_clipping, 0, 0);
    CU_ASSERT_EQUAL(c->precision, ZERO_FP32);
    zero_config_destroy(c);

    c = parse_fixture("zero3_bf16_cpu_offload.json", 2);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_optimizer.device, ZERO_OFFLOAD_CPU);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_param.device, ZERO_OFFLOAD_CPU);
    CU_ASSERT(c->zero_optimization.stage3_gather_16bit_weights_on_model_save);
    CU_ASSERT_EQUAL(c->scheduler.warmup_type, ZERO_WARMUP_LINEAR);
    CU_ASSERT_EQUAL(c->scheduler.type, ZERO_SCHEDULER_WARMUP_DECAY_LR);
    CU_ASSERT_EQUAL(c->scheduler.total_num_steps, 10000);
    CU_ASSERT_EQUAL(c->train_batch_size, 32); /* 2 x 8 x 2 */
    CU_ASSERT_EQUAL(c->precision, ZERO_BF16);
    zero_config_destroy(c);

    c = parse_fixture("adagrad_lr_range_test.json", 2);
    CU_ASSERT_EQUAL(c->zero_optimization.stage, 0);
    CU_ASSERT_EQUAL(c->gradient_accumulation_steps, 2); /* 24 / (6 x 2) */
    CU_ASSERT_EQUAL(c->optimizer.type, ZERO_OPTIMIZER_ADAGRAD);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.lr, 0.01, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.eps, 1e-10, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.weight_decay, 1e-4, 0);
    CU_ASSERT_EQUAL(c->scheduler.type, ZERO_SCHEDULER_LR_RANGE_TEST);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.lr_range_test_min_lr, 1e-5, 0);
    CU_ASSERT_EQUAL(c->scheduler.lr_range_test_step_size, 200);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.lr_range_test_step_rate, 5.0, 0);
    CU_ASSERT(c->scheduler.lr_range_test_staircase);
    zero_config_destroy(c);

    /* DeepSpeed's older spellings mean what their current forms mean. */
    c = parse_fixture("legacy_spellings.json", 2);
    CU_ASSERT_EQUAL(c->precision, ZERO_BF16);                       /* "bfloat16" */
    CU_ASSERT_EQUAL(c->optimizer.type, ZERO_OPTIMIZER_ADAMW);        /* "adamw" */
    CU_ASSERT_EQUAL(c->scheduler.type, ZERO_SCHEDULER_WARMUP_LR);    /* "warmuplr" */
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.warmup_max_lr, 5e-5, 0);    /* WarmupLR: the optimizer's lr */
    CU_ASSERT_EQUAL(c->zero_optimization.offload_optimizer.device, ZERO_OFFLOAD_CPU); /* cpu_offload */
    CU_ASSERT_EQUAL(c->zero_optimization.offload_param.device, ZERO_OFFLOAD_CPU);     /* cpu_offload_param */
    CU_ASSERT(c->zero_optimization.offload_optimizer.pin_memory); /* cpu_offload_use_pin_memory (default false) */
    CU_ASSERT(c->zero_optimization.offload_param.pin_memory);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_prefetch_bucket_size, 30000000);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_param_persistence_threshold, 20000);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_max_live_parameters, 500000000);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_max_reuse_distance, 500000000);
    CU_ASSERT(c->zero_optimization.stage3_gather_16bit_weights_on_model_save);
    CU_ASSERT_EQUAL(c->aio.intra_op_parallelism, 2);                 /* aio.thread_count */
    zero_config_destroy(c);
    END;
}

/* ---- defaults ---- */

static void test_defaults(void)
{
    BEGIN;
    zero_config_t *c = parse_ok("{\"train_batch_size\": 8}", 1);
    CU_ASSERT_FATAL(c != NULL);
    CU_ASSERT_EQUAL(c->world_size, 1);
    CU_ASSERT_EQUAL(c->train_micro_batch_size_per_gpu, 8);
    CU_ASSERT_EQUAL(c->gradient_accumulation_steps, 1);
    CU_ASSERT_EQUAL(c->precision, ZERO_FP32);
    CU_ASSERT_FALSE(c->fp16.enabled);
    CU_ASSERT_DOUBLE_EQUAL(c->fp16.loss_scale, 0, 0);
    CU_ASSERT_EQUAL(c->fp16.initial_scale_power, 16);
    CU_ASSERT_EQUAL(c->fp16.loss_scale_window, 1000);
    CU_ASSERT_EQUAL(c->fp16.hysteresis, 2);
    CU_ASSERT_FALSE(c->fp16.consecutive_hysteresis);
    CU_ASSERT_DOUBLE_EQUAL(c->fp16.min_loss_scale, 1, 0);
    CU_ASSERT_FALSE(c->bf16.enabled);
    CU_ASSERT_DOUBLE_EQUAL(c->gradient_clipping, 0.0, 0);   /* DeepSpeed's GRADIENT_CLIPPING_DEFAULT: off */
    CU_ASSERT_EQUAL(c->steps_per_print, 10);
    CU_ASSERT_FALSE(c->wall_clock_breakdown);
    CU_ASSERT_EQUAL(c->optimizer.type, ZERO_OPTIMIZER_NONE);
    CU_ASSERT_EQUAL(c->scheduler.type, ZERO_SCHEDULER_NONE);
    CU_ASSERT_EQUAL(c->zero_optimization.stage, 0);
    CU_ASSERT(c->zero_optimization.contiguous_gradients);
    CU_ASSERT_FALSE(c->zero_optimization.overlap_comm);
    CU_ASSERT(c->zero_optimization.reduce_scatter);
    CU_ASSERT_EQUAL(c->zero_optimization.reduce_bucket_size, 500000000);
    CU_ASSERT_EQUAL(c->zero_optimization.allgather_bucket_size, 500000000);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_prefetch_bucket_size, 50000000);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_param_persistence_threshold, 100000);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_max_live_parameters, 1000000000);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_max_reuse_distance, 1000000000);
    CU_ASSERT_EQUAL(c->zero_optimization.sub_group_size, 1000000000);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_optimizer.device, ZERO_OFFLOAD_NONE);
    CU_ASSERT_FALSE(c->zero_optimization.offload_optimizer.pin_memory); /* DeepSpeed's default */
    CU_ASSERT_EQUAL(c->zero_optimization.offload_optimizer.buffer_count, 4);
    CU_ASSERT_DOUBLE_EQUAL(c->zero_optimization.offload_optimizer.ratio, 1.0, 0);
    CU_ASSERT_PTR_NULL(c->zero_optimization.offload_optimizer.nvme_path);
    CU_ASSERT_FALSE(c->zero_optimization.offload_param.pin_memory);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_param.buffer_count, 5);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_param.buffer_size, 100000000);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_param.max_in_cpu, 1000000000);
    CU_ASSERT_EQUAL(c->aio.block_size, 1048576);
    CU_ASSERT_EQUAL(c->aio.queue_depth, 8);
    CU_ASSERT_EQUAL(c->aio.intra_op_parallelism, 1);
    CU_ASSERT_FALSE(c->aio.single_submit);
    CU_ASSERT(c->aio.overlap_events);
    CU_ASSERT_EQUAL(c->checkpoint.tag_validation, ZERO_TAG_VALIDATION_WARN);
    CU_ASSERT_EQUAL(c->comm_backend, ZERO_CONFIG_COMM_AUTO);   /* libzero extension: auto unless set */
    zero_config_destroy(c);
    {
        static const char staged[] = "{\"train_batch_size\": 8, \"comm_backend\": \"staged\"}";
        c = NULL;
        CU_ASSERT_EQUAL_FATAL(zero_config_parse_string(staged, strlen(staged), 1, &c, NULL), ZERO_OK);
        CU_ASSERT_EQUAL(c->comm_backend, ZERO_CONFIG_COMM_STAGED);
        zero_config_destroy(c);
    }

    /* overlap_comm defaults to true for stage 3 only */
    c = parse_ok("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 3}}", 2);
    CU_ASSERT(c->zero_optimization.overlap_comm);
    zero_config_destroy(c);
    c = parse_ok("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 3, \"overlap_comm\": false}}", 2);
    CU_ASSERT_FALSE(c->zero_optimization.overlap_comm);
    zero_config_destroy(c);

    /* offload_optimizer.ratio < 1 is accepted (partial CPU offload for device ranks) */
    c = parse_ok("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": "
                 "{\"device\": \"cpu\", \"ratio\": 0.5}}}", 2);
    CU_ASSERT_DOUBLE_EQUAL(c->zero_optimization.offload_optimizer.ratio, 0.5, 0);
    zero_config_destroy(c);

    /* per-optimizer defaults */
    c = parse_ok("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"adagrad\"}}", 2);
    CU_ASSERT_EQUAL(c->optimizer.type, ZERO_OPTIMIZER_ADAGRAD);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.lr, 1e-2, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.eps, 1e-10, 0);
    zero_config_destroy(c);
    c = parse_ok("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adam\", \"params\": {\"adam_w_mode\": false}}}",
                 2);
    CU_ASSERT_FALSE(c->optimizer.adam_w_mode);
    zero_config_destroy(c);
    c = parse_ok("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"ADAMW\"}, \"scheduler\": {\"type\": "
                 "\"OneCycle\", \"params\": {\"cycle_min_lr\": 0.1, \"cycle_max_lr\": 1}}}", 2);
    CU_ASSERT(c->optimizer.adam_w_mode);
    CU_ASSERT_EQUAL(c->scheduler.cycle_first_step_size, 2000);
    CU_ASSERT_EQUAL(c->scheduler.cycle_second_step_size, 2000);
    CU_ASSERT_EQUAL(c->scheduler.cycle_second_stair_count, 0);
    CU_ASSERT(c->scheduler.cycle_momentum); /* AdamW has betas */
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.cycle_min_mom, 0.8, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.cycle_max_mom, 0.9, 0);
    zero_config_destroy(c);
    c = parse_ok("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"LRRangeTest\"}}", 2);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.lr_range_test_min_lr, 1e-3, 0);
    CU_ASSERT_EQUAL(c->scheduler.lr_range_test_step_size, 2000);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.lr_range_test_step_rate, 1.0, 0);
    zero_config_destroy(c);
    c = parse_ok("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupCosineLR\", \"params\": "
                 "{\"total_num_steps\": 10}}}", 2);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.cos_min_ratio, 0.0001, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.warmup_min_ratio, 0, 0);
    CU_ASSERT_EQUAL(c->scheduler.warmup_num_steps, 1000);
    zero_config_destroy(c);
    END;
}

/* ---- batch triad ---- */

typedef struct triad_case {
    const char *json;
    uint32_t world_size;
    zero_status_t status;
    uint64_t tb, mb, gas;
    uint32_t world;        /* expected config->world_size */
    const char *needle;    /* expected in the problems when refused */
} triad_case_t;

static void test_batch_triad(void)
{
    static const triad_case_t cases[] = {
        /* all three */
        {"{\"train_batch_size\": 32, \"train_micro_batch_size_per_gpu\": 4, \"gradient_accumulation_steps\": 4}", 2,
         ZERO_OK, 32, 4, 4, 2, NULL},
        {"{\"train_batch_size\": 32, \"train_micro_batch_size_per_gpu\": 4, \"gradient_accumulation_steps\": 2}", 2,
         ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "error: train_batch_size: 32 != train_micro_batch_size_per_gpu 4 * gradient_accumulation_steps 2 * "
         "world_size 2 (= 16)"},
        {"{\"train_batch_size\": 32, \"train_micro_batch_size_per_gpu\": 4, \"gradient_accumulation_steps\": 2}", 0,
         ZERO_OK, 32, 4, 2, 4, NULL}, /* implies world size 4 */
        {"{\"train_batch_size\": 30, \"train_micro_batch_size_per_gpu\": 4, \"gradient_accumulation_steps\": 2}", 0,
         ZERO_ERR_CONFIG, 0, 0, 0, 0, "train_batch_size: 30 is not train_micro_batch_size_per_gpu 4"},
        /* two of three */
        {"{\"train_batch_size\": 32, \"train_micro_batch_size_per_gpu\": 4}", 2, ZERO_OK, 32, 4, 4, 2, NULL},
        {"{\"train_batch_size\": 32, \"train_micro_batch_size_per_gpu\": 4}", 0, ZERO_OK, 32, 4, 0, 0, NULL},
        {"{\"train_batch_size\": 32, \"train_micro_batch_size_per_gpu\": 5}", 2, ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "error: train_batch_size: 32 is not divisible by train_micro_batch_size_per_gpu 5 * world_size 2"},
        {"{\"train_batch_size\": 32, \"train_micro_batch_size_per_gpu\": 5}", 0, ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "error: train_batch_size: 32 is not divisible by train_micro_batch_size_per_gpu 5"},
        {"{\"train_batch_size\": 12, \"train_micro_batch_size_per_gpu\": 4}", 2, ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "12 is not divisible by train_micro_batch_size_per_gpu 4 * world_size 2"}, /* world size does not divide */
        {"{\"train_batch_size\": 32, \"gradient_accumulation_steps\": 4}", 2, ZERO_OK, 32, 4, 4, 2, NULL},
        {"{\"train_batch_size\": 32, \"gradient_accumulation_steps\": 4}", 0, ZERO_OK, 32, 0, 4, 0, NULL},
        {"{\"train_batch_size\": 32, \"gradient_accumulation_steps\": 3}", 2, ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "train_batch_size: 32 is not divisible by gradient_accumulation_steps 3 * world_size 2"},
        {"{\"train_batch_size\": 36, \"gradient_accumulation_steps\": 3}", 8, ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "train_batch_size: 36 is not divisible by gradient_accumulation_steps 3 * world_size 8"},
        {"{\"train_micro_batch_size_per_gpu\": 2, \"gradient_accumulation_steps\": 8}", 3, ZERO_OK, 48, 2, 8, 3, NULL},
        {"{\"train_micro_batch_size_per_gpu\": 2, \"gradient_accumulation_steps\": 8}", 0, ZERO_OK, 0, 2, 8, 0, NULL},
        /* one alone: accumulation 1 */
        {"{\"train_batch_size\": 12}", 3, ZERO_OK, 12, 4, 1, 3, NULL},
        {"{\"train_batch_size\": 12}", 0, ZERO_OK, 12, 0, 1, 0, NULL},
        {"{\"train_batch_size\": 7}", 2, ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "error: train_batch_size: 7 is not divisible by world_size 2"},
        {"{\"train_micro_batch_size_per_gpu\": 3}", 5, ZERO_OK, 15, 3, 1, 5, NULL},
        {"{\"train_micro_batch_size_per_gpu\": 3}", 0, ZERO_OK, 0, 3, 1, 0, NULL},
        /* neither */
        {"{\"gradient_accumulation_steps\": 4}", 2, ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "error: train_batch_size: train_batch_size or train_micro_batch_size_per_gpu must be given"},
        {"{}", 2, ZERO_ERR_CONFIG, 0, 0, 0, 0, "train_batch_size or train_micro_batch_size_per_gpu must be given"},
        {"{\"train_batch_size\": \"auto\", \"train_micro_batch_size_per_gpu\": \"auto\"}", 2, ZERO_ERR_CONFIG, 0, 0,
         0, 0, "must be given"},
        /* "auto" means not given */
        {"{\"train_batch_size\": \"auto\", \"train_micro_batch_size_per_gpu\": 16, \"gradient_accumulation_steps\": "
         "\"auto\"}", 4, ZERO_OK, 64, 16, 1, 4, NULL},
        /* bad values */
        {"{\"train_batch_size\": 0}", 2, ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "error: train_batch_size: expected an integer 1..1099511627776, got 0"},
        {"{\"train_batch_size\": -8}", 2, ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "error: train_batch_size: expected an integer 1..1099511627776, got -8"},
        {"{\"train_batch_size\": 8, \"gradient_accumulation_steps\": 2.5}", 2, ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "error: gradient_accumulation_steps: expected an integer 1..1099511627776, got 2.5"},
        {"{\"train_batch_size\": 6.4e1}", 2, ZERO_OK, 64, 32, 1, 2, NULL}, /* an integral number is an integer */
        /* the derived train_batch_size is bounded like a given one (2^40), overflow included */
        {"{\"train_micro_batch_size_per_gpu\": 1099511627776, \"gradient_accumulation_steps\": 2}", 1,
         ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "error: train_micro_batch_size_per_gpu: the derived train_batch_size train_micro_batch_size_per_gpu "
         "1099511627776 * gradient_accumulation_steps 2 * world_size 1 = 2199023255552, above the limit 2^40"},
        {"{\"train_micro_batch_size_per_gpu\": 1048576, \"gradient_accumulation_steps\": 1048576}", 2,
         ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "train_micro_batch_size_per_gpu 1048576 * gradient_accumulation_steps 1048576 * world_size 2 = "
         "2199023255552, above the limit 2^40 (1099511627776)"},
        {"{\"train_micro_batch_size_per_gpu\": 1048576, \"gradient_accumulation_steps\": 1048576}", 1, ZERO_OK,
         1099511627776ull, 1048576, 1048576, 1, NULL}, /* exactly 2^40 is allowed */
        {"{\"train_micro_batch_size_per_gpu\": 1099511627776, \"gradient_accumulation_steps\": 1099511627776}", 4,
         ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "train_micro_batch_size_per_gpu 1099511627776 * gradient_accumulation_steps 1099511627776 * world_size 4 "
         "overflows 64 bits, above the limit 2^40"},
        {"{\"train_micro_batch_size_per_gpu\": 1099511627776, \"gradient_accumulation_steps\": 2}", 0,
         ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "the derived train_batch_size train_micro_batch_size_per_gpu 1099511627776 * gradient_accumulation_steps 2 "
         "= 2199023255552, above the limit 2^40"}, /* world size not known: the product is a lower bound */
        {"{\"train_micro_batch_size_per_gpu\": 1099511627776}", 2, ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "error: train_micro_batch_size_per_gpu: the derived train_batch_size train_micro_batch_size_per_gpu "
         "1099511627776 * world_size 2 = 2199023255552, above the limit 2^40"},
        {"{\"train_micro_batch_size_per_gpu\": 1099511627776}", 1, ZERO_OK, 1099511627776ull, 1099511627776ull, 1, 1,
         NULL},
        /* given values are bounded too */
        {"{\"train_batch_size\": 1099511627777}", 1, ZERO_ERR_CONFIG, 0, 0, 0, 0,
         "error: train_batch_size: expected an integer 1..1099511627776, got 1099511627777"},
        {"{\"train_batch_size\": 8, \"gradient_accumulation_steps\": 1099511627777}", 1, ZERO_ERR_CONFIG, 0, 0, 0,
         0, "error: gradient_accumulation_steps: expected an integer 1..1099511627776, got 1099511627777"},
    };
    BEGIN;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const triad_case_t *t = &cases[i];
        if (t->status == ZERO_OK) {
            zero_config_t *c = parse_ok(t->json, t->world_size);
            if (c == NULL) {
                fprintf(stderr, "triad case %zu\n", i);
                continue;
            }
            if (c->train_batch_size != t->tb || c->train_micro_batch_size_per_gpu != t->mb ||
                c->gradient_accumulation_steps != t->gas || c->world_size != t->world) {
                fprintf(stderr, "triad case %zu: got %llu %llu %llu w%u\n", i, (unsigned long long)c->train_batch_size,
                        (unsigned long long)c->train_micro_batch_size_per_gpu,
                        (unsigned long long)c->gradient_accumulation_steps, c->world_size);
                CU_FAIL("batch triad resolved wrongly");
            }
            zero_config_destroy(c);
        } else {
            expect_refused(t->json, t->world_size, t->status, t->needle, NULL);
        }
    }
    END;
}

/* ---- invalid configs: each names its exact path ---- */

typedef struct invalid_case {
    const char *json;
    zero_status_t status;
    const char *needle;
} invalid_case_t;

#define B "{\"train_batch_size\": 8, "

static void test_invalid_configs(void)
{
    static const invalid_case_t cases[] = {
        {B "\"zero_optimization\": {\"stage\": \"two\"}}", ZERO_ERR_CONFIG,
         "error: zero_optimization.stage: expected an integer 0..3, got \"two\""},
        {B "\"zero_optimization\": {\"stage\": 4}}", ZERO_ERR_CONFIG,
         "error: zero_optimization.stage: expected an integer 0..3, got 4"},
        {B "\"zero_optimization\": {\"stage\": 1.5}}", ZERO_ERR_CONFIG,
         "error: zero_optimization.stage: expected an integer 0..3, got 1.5"},
        {B "\"optimiser\": {\"type\": \"Adam\"}}", ZERO_ERR_CONFIG,
         "error: optimiser: unknown key; did you mean \"optimizer\"?"},
        {B "\"zero_optimization\": {\"stge\": 1}}", ZERO_ERR_CONFIG,
         "error: zero_optimization.stge: unknown key; did you mean \"zero_optimization.stage\"?"},
        {B "\"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": {\"pin_memroy\": true}}}", ZERO_ERR_CONFIG,
         "error: zero_optimization.offload_optimizer.pin_memroy: unknown key; did you mean "
         "\"zero_optimization.offload_optimizer.pin_memory\"?"},
        {B "\"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": {\"device\": \"gpu\"}}}", ZERO_ERR_CONFIG,
         "error: zero_optimization.offload_optimizer.device: expected one of \"none\", \"cpu\", \"nvme\", \"remote\", got \"gpu\""},
        {B "\"zero_optimization\": {\"stage\": 3, \"offload_optimizer\": {\"device\": \"nvme\"}}}", ZERO_ERR_CONFIG,
         "error: zero_optimization.offload_optimizer.nvme_path: required when device is \"nvme\""},
        {B "\"zero_optimization\": {\"offload_optimizer\": {\"device\": \"cpu\"}}}", ZERO_ERR_CONFIG,
         "error: zero_optimization.offload_optimizer: optimizer offload needs stage 1, 2 or 3"},
        {B "\"fp16\": {\"enabled\": true}, \"bf16\": {\"enabled\": true}}", ZERO_ERR_CONFIG,
         "error: bf16.enabled: fp16 and bf16 cannot both be enabled"},
        {B "\"fp16\": {\"enabled\": \"yes\"}}", ZERO_ERR_CONFIG,
         "error: fp16.enabled: expected true or false, got \"yes\""},
        {B "\"fp16\": {\"loss_scale\": -1}}", ZERO_ERR_CONFIG, "error: fp16.loss_scale: expected a number >= 0, got -1"},
        {B "\"fp16\": {\"hysteresis\": 0}}", ZERO_ERR_CONFIG, "error: fp16.hysteresis: expected an integer >= 1, got 0"},
        {B "\"fp16\": {\"min_loss_scale\": 0}}", ZERO_ERR_CONFIG,
         "error: fp16.min_loss_scale: expected a number > 0, got 0"},
        {B "\"gradient_clipping\": \"high\"}", ZERO_ERR_CONFIG,
         "error: gradient_clipping: expected a number >= 0, got \"high\""},
        {B "\"optimizer\": {\"type\": \"Adamm\"}}", ZERO_ERR_CONFIG,
         "error: optimizer.type: unknown optimizer \"Adamm\"; did you mean \"Adam\"?"},
        {B "\"optimizer\": {\"type\": \"OneBitAdam\"}}", ZERO_ERR_UNSUPPORTED,
         "unsupported: optimizer.type: optimizer \"OneBitAdam\" is not implemented by libzero"},
        {B "\"optimizer\": {\"params\": {\"lr\": 1}}}", ZERO_ERR_CONFIG, "error: optimizer.type: required"},
        {B "\"optimizer\": {\"type\": \"Adam\", \"params\": {\"betas\": [0.9]}}}", ZERO_ERR_CONFIG,
         "error: optimizer.params.betas: expected an array of two numbers in [0, 1), got an array"},
        {B "\"optimizer\": {\"type\": \"Adam\", \"params\": {\"betas\": [0.9, 1.5]}}}", ZERO_ERR_CONFIG,
         "error: optimizer.params.betas[1]: expected a number in [0, 1), got 1.5"},
        {B "\"optimizer\": {\"type\": \"Adam\", \"params\": {\"lr\": -0.1}}}", ZERO_ERR_CONFIG,
         "error: optimizer.params.lr: expected a number >= 0, got -0.1"},
        {B "\"optimizer\": {\"type\": \"Adam\", \"params\": {\"momentum\": 0.9}}}", ZERO_ERR_CONFIG,
         "error: optimizer.params.momentum: unknown key"},
        {B "\"optimizer\": {\"type\": \"SGD\", \"params\": {\"nesterov\": true}}}", ZERO_ERR_CONFIG,
         "error: optimizer.params.nesterov: needs momentum > 0 and dampening 0"},
        {B "\"optimizer\": {\"type\": \"AdamW\", \"params\": {\"adam_w_mode\": false}}}", ZERO_ERR_CONFIG,
         "error: optimizer.params.adam_w_mode: false contradicts type \"AdamW\""},
        {B "\"optimizer\": {\"type\": \"Adam\", \"params\": {\"max_grad_norm\": 1.0}}}", ZERO_ERR_CONFIG,
         "error: optimizer.params.max_grad_norm: not an optimizer parameter in DeepSpeed; use the top-level "
         "gradient_clipping"},
        {B "\"optimizer\": {\"type\": \"Adam\", \"params\": {\"amsgrad\": true}}}", ZERO_ERR_UNSUPPORTED,
         "unsupported: optimizer.params.amsgrad: AMSGrad is not implemented by libzero"},
        {B "\"optimizer\": {\"type\": \"Lamb\", \"params\": {\"max_coeff\": 0.001}}}", ZERO_ERR_CONFIG,
         "error: optimizer.params.min_coeff: must not exceed max_coeff"},
        {B "\"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {\"warmup_num_steps\": 10}}}", ZERO_ERR_CONFIG,
         "error: scheduler.params.total_num_steps: required for WarmupDecayLR"},
        {B "\"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {\"total_num_steps\": \"auto\"}}}",
         ZERO_ERR_CONFIG, "error: scheduler.params.total_num_steps: required for WarmupDecayLR (\"auto\" has no default"},
        {B "\"scheduler\": {\"type\": \"WarmpLR\"}}", ZERO_ERR_CONFIG,
         "error: scheduler.type: unknown scheduler \"WarmpLR\"; did you mean \"WarmupLR\"?"},
        {B "\"scheduler\": {\"type\": \"StepLR\"}}", ZERO_ERR_UNSUPPORTED,
         "unsupported: scheduler.type: scheduler \"StepLR\" (torch.optim.lr_scheduler) is not implemented"},
        {B "\"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_type\": \"cosine\"}}}", ZERO_ERR_CONFIG,
         "error: scheduler.params.warmup_type: expected one of \"log\", \"linear\", got \"cosine\""},
        {B "\"scheduler\": {\"type\": \"OneCycle\", \"params\": {\"cycle_max_lr\": 0.1}}}", ZERO_ERR_CONFIG,
         "error: scheduler.params.cycle_min_lr: required for OneCycle"},
        {B "\"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_num_stepz\": 10}}}", ZERO_ERR_CONFIG,
         "error: scheduler.params.warmup_num_stepz: unknown key; did you mean \"scheduler.params.warmup_num_steps\"?"},
        {B "\"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"last_batch_iteration\": 5}}}", ZERO_ERR_UNSUPPORTED,
         "unsupported: scheduler.params.last_batch_iteration: starting a schedule part-way is not implemented"},
        {"{\"train_batch_size\": 8,\n \"zero_optimization\": {\"stage\": 1,\n   \"stage\": 2}}", ZERO_ERR_CONFIG,
         "<string>:3:4: error: zero_optimization.stage: duplicate key (first given at line 2, column 24)"},
        {B "\"prescale_gradients\": true}", ZERO_ERR_UNSUPPORTED,
         "unsupported: prescale_gradients: gradient prescaling is not implemented by libzero (only false is accepted)"},
        {B "\"communication_data_type\": \"fp16\"}", ZERO_ERR_UNSUPPORTED,
         "unsupported: communication_data_type: a separate gradient communication dtype is not implemented"},
        {B "\"zero_optimization\": {\"zero_quantized_weights\": 1}}", ZERO_ERR_CONFIG,
         "error: zero_optimization.zero_quantized_weights: expected true or false, got 1"},
        {B "\"zero_optimization\": {\"zero_quantized_nontrainable_weights\": true}}", ZERO_ERR_UNSUPPORTED,
         "unsupported: zero_optimization.zero_quantized_nontrainable_weights: ZeRO++ quantized non-trainable weights "
         "is not implemented"},
        {B "\"zero_optimization\": {\"stage\": 3, \"offload_optimizer\": {\"device\": \"cpu\", \"ratio\": 1.5}}}",
         ZERO_ERR_CONFIG, "error: zero_optimization.offload_optimizer.ratio: expected a number"},
        {B "\"zero_optimization\": {\"stage\": 3, \"offload_param\": {\"device\": \"hpu\"}}}", ZERO_ERR_UNSUPPORTED,
         "unsupported: zero_optimization.offload_param.device: offload to \"hpu\""},
        {B "\"elasticity\": {\"enabled\": true}}", ZERO_ERR_UNSUPPORTED,
         "unsupported: elasticity.enabled: elastic training"},
        {B "\"amp\": {\"enabled\": true}}", ZERO_ERR_UNSUPPORTED, "unsupported: amp.enabled: Apex AMP"},
        {B "\"aio\": {\"use_gds\": true}}", ZERO_ERR_UNSUPPORTED, "unsupported: aio.use_gds: GPUDirect Storage"},
        {B "\"aio\": {\"queue_depth\": 0}}", ZERO_ERR_CONFIG, "error: aio.queue_depth: expected an integer >= 1, got 0"},
        {B "\"checkpoint\": {\"tag_validation\": \"Strict\"}}", ZERO_ERR_CONFIG,
         "error: checkpoint.tag_validation: expected one of \"Ignore\", \"Warn\", \"Fail\", got \"Strict\""},
        {B "\"comm_backend\": \"mpi\"}", ZERO_ERR_CONFIG,
         "error: comm_backend: expected one of \"auto\", \"nccl\", \"staged\", got \"mpi\""},
        {B "\"comm_backend\": true}", ZERO_ERR_CONFIG, "error: comm_backend: expected"},
        {B "\"zero_optimization\": \"auto\"}", ZERO_ERR_CONFIG,
         "error: zero_optimization: expected an object, got \"auto\""},
        {B "\"bf16\": {\"enabled\": true}, \"bfloat16\": {\"enabled\": true}}", ZERO_ERR_CONFIG,
         "error: bfloat16: same setting as bf16, which is also given"},
        {B "\"zero_optimization\": {\"stage3_max_live_parameters\": 1, \"max_live_parameters\": 2}}", ZERO_ERR_CONFIG,
         "error: zero_optimization.max_live_parameters: same setting as zero_optimization.stage3_max_live_parameters"},
        {B "\"zero_optimization\": {\"stage\": 2, \"cpu_offload\": true, \"offload_optimizer\": {\"device\": \"cpu\"}}}",
         ZERO_ERR_CONFIG, "error: zero_optimization.cpu_offload: conflicts with zero_optimization.offload_optimizer"},
        {B "\"zero_optimization\": {\"reduce_bucket_size\": \"5e8\"}}", ZERO_ERR_CONFIG,
         "error: zero_optimization.reduce_bucket_size: expected an integer >= 1, got \"5e8\""},
        {B "\"lr\": 0.1}", ZERO_ERR_CONFIG, "error: lr: unknown key here; it belongs at \"optimizer.params.lr\""},
        {B "\"steps_per_print\": null}", ZERO_ERR_CONFIG, "error: steps_per_print: expected an integer >= 0, got null"},
        {B "\"fp16\": [true]}", ZERO_ERR_CONFIG, "error: fp16: expected an object, got an array"},
        {B "\"wall_clock_breakdown\": 1}", ZERO_ERR_CONFIG,
         "error: wall_clock_breakdown: expected true or false, got 1"},
    };
    BEGIN;
    CU_ASSERT(sizeof(cases) / sizeof(cases[0]) >= 30);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_refused(cases[i].json, 2, cases[i].status, cases[i].needle, NULL);
    /* hpZ: groups of zero_hpz_partition_size consecutive ranks must tile the world */
    expect_refused(B "\"zero_optimization\": {\"stage\": 3, \"zero_hpz_partition_size\": 3}}", 4, ZERO_ERR_CONFIG,
                   "error: zero_optimization.zero_hpz_partition_size: 3 does not divide the world size 4", NULL);
    expect_refused(B "\"zero_optimization\": {\"stage\": 3, \"zero_hpz_partition_size\": 8}}", 4, ZERO_ERR_CONFIG,
                   "error: zero_optimization.zero_hpz_partition_size: 8 does not divide the world size 4", NULL);
    expect_refused(B "\"zero_optimization\": {\"zero_hpz_partition_size\": 0}}", 4, ZERO_ERR_CONFIG,
                   "error: zero_optimization.zero_hpz_partition_size: expected an integer", NULL);
    expect_refused(B "\"zero_optimization\": {\"zero_hpz_partition_size\": 1.5}}", 4, ZERO_ERR_CONFIG,
                   "error: zero_optimization.zero_hpz_partition_size: expected an integer", NULL);
    {
        zero_config_t *c = parse_ok(B "\"zero_optimization\": {\"stage\": 3, \"zero_hpz_partition_size\": 2}}", 4);
        CU_ASSERT(c != NULL && c->zero_optimization.zero_hpz_partition_size == 2);
        zero_config_destroy(c);
        c = parse_ok(B "\"zero_optimization\": {\"stage\": 3}}", 4);
        CU_ASSERT(c != NULL && c->zero_optimization.zero_hpz_partition_size == 1);   /* DeepSpeed's default */
        zero_config_destroy(c);
    }
    END;
}

static void test_every_problem_collected(void)
{
    BEGIN;
    const char *json =
        "{\n"
        "  \"train_batch_size\": 10,\n"
        "  \"train_micro_batch_size_per_gpu\": 4,\n"
        "  \"optimiser\": {},\n"
        "  \"zero_optimization\": {\"stage\": \"two\", \"stge\": 1},\n"
        "  \"fp16\": {\"enabled\": true, \"loss_scale\": -2},\n"
        "  \"bf16\": {\"enabled\": true},\n"
        "  \"prescale_gradients\": true,\n"
        "  \"tensorboard\": {\"enabled\": true}\n"
        "}\n";
    zero_config_t *c = NULL;
    char *problems = NULL;
    CU_ASSERT_EQUAL(parse(json, 2, &c, &problems), ZERO_ERR_CONFIG);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(problems);
    CU_ASSERT_EQUAL(count_lines_with(problems, ": error: "), 6);
    CU_ASSERT_EQUAL(count_lines_with(problems, ": unsupported: "), 1);
    CU_ASSERT_EQUAL(count_lines_with(problems, ": warning: "), 1);
    /* sorted by position, with line and column */
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "<string>:2:23: error: train_batch_size: 10 is not divisible"));
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "<string>:4:3: error: optimiser: unknown key"));
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "<string>:5:34: error: zero_optimization.stage: expected an integer"));
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "<string>:6:43: error: fp16.loss_scale"));
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "<string>:7:23: error: bf16.enabled: fp16 and bf16"));
    CU_ASSERT(strstr(problems, "optimiser") < strstr(problems, "zero_optimization.stge"));
    zero_string_free(problems);
    END;
}

/* ---- syntax, limits and junk ---- */

typedef struct syntax_case {
    const char *text;
    size_t length; /* 0: strlen */
    const char *needle;
} syntax_case_t;

static void test_syntax_errors(void)
{
    static const syntax_case_t cases[] = {
        {"{\n  \"a\": 1,\n  \"b\" 2\n}", 0, "<string>:3:7: error: expected ':' after key \"b\", found '2'"},
        {"{\"a\": 1,}", 0, "<string>:1:9: error: trailing comma before '}'"},
        {"{\"a\": [1, 2,]}", 0, "<string>:1:13: error: trailing comma before ']'"},
        {"{\"a\": \"abc", 0, "<string>:1:7: error: unterminated string"},
        {"{\"a\": \"\\x\"}", 0, "error: invalid escape: backslash followed by 'x'"},
        {"{\"a\": 012}", 0, "error: invalid number: leading zeros are not allowed"},
        {"{\"a\": NaN}", 0, "<string>:1:7: error: expected a value, found 'N'"},
        {"{\"a\": yes}", 0, "error: expected a value, found a bare word"},
        {"{\"a\": .5}", 0, "error: expected a value, found '.'"},
        {"{\"a\": 1e999}", 0, "<string>:1:7: error: number 1e999 is out of range"},
        {"{\"a\": 1 \"b\": 2}", 0, "error: expected ',' or '}' after the value of \"a\", found '\"'"},
        {"{a: 1}", 0, "<string>:1:2: error: expected a key in double quotes, found 'a'"},
        {"", 0, "error: empty config: expected a JSON object"},
        {"  // only a comment\n", 0, "error: empty config"},
        {"[1, 2]", 0, "<string>:1:1: error: the config must be a JSON object"},
        {"{} x", 0, "<string>:1:4: error: unexpected text after the end of the top-level object"},
        {"{}{}", 0, "error: unexpected text after the end"},
        {"{\"a\": 1 /* never closed", 0, "<string>:1:9: error: unterminated /* comment"},
        {"{\"a\":\0}", 7, "<string>:1:6: error: NUL byte in the config"},
        {"{\"a\": \"\xff\"}", 0, "<string>:1:8: error: invalid UTF-8 byte 0xff"},
        {"{\"a\": \"\xc0\xaf\"}", 0, "error: invalid UTF-8 byte 0xc0"},
        {"{\"a\": \"\xed\xa0\x80\"}", 0, "error: invalid UTF-8 sequence (overlong, surrogate or out of range)"},
        {"{\"a\": \"\xe2\x82", 0, "error: truncated UTF-8 sequence"},
        {"{\"a\": \"x\\u0000\"}", 0, "error: \\u0000 (NUL) is not allowed"},
        {"{\"a\": \"\\ud800\"}", 0, "error: unpaired UTF-16 surrogate"},
        {"{\"a\": \"\\u12g4\"}", 0, "error: \\u must be followed by four hexadecimal digits"},
        {"{\"a\": \"tab\there\"}", 0, "error: control character 0x09 inside a string"},
        {"{\"a\": tru}", 0, "error: expected a value, found a bare word"},
        {"{\"a\": -}", 0, "error: invalid number: expected a digit"},
        {"{\"a\": 1.}", 0, "error: invalid number: expected a digit after '.'"},
        {"{\"a\": 1e+}", 0, "error: invalid number: expected a digit in the exponent"},
    };
    BEGIN;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        zero_config_t *c = NULL;
        char *problems = NULL;
        size_t len = cases[i].length ? cases[i].length : strlen(cases[i].text);
        zero_status_t s = zero_config_parse_string(cases[i].text, len, 2, &c, &problems);
        CU_ASSERT_EQUAL(s, ZERO_ERR_CONFIG);
        CU_ASSERT_PTR_NULL(c);
        CU_ASSERT_PTR_NOT_NULL(problems);
        if (problems && strstr(problems, cases[i].needle) == NULL) {
            fprintf(stderr, "\nsyntax case %zu: expected \"%s\" in:\n%s", i, cases[i].needle, problems);
            CU_FAIL("syntax error text");
        }
        /* a syntax error stops the parse: exactly one problem */
        CU_ASSERT_EQUAL(count_lines_with(problems, "\n"), 1);
        zero_string_free(problems);
    }
    END;
}

static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(hl + ul * n + tl + 1), *p = s;
    memcpy(p, head, hl);
    p += hl;
    for (size_t i = 0; i < n; i++, p += ul)
        memcpy(p, unit, ul);
    memcpy(p, tail, tl + 1);
    return s;
}

static void test_limits(void)
{
    BEGIN;
    zero_config_t *c = NULL;
    char *problems = NULL, *text, *deep, *tail;

    /* 64 levels are fine for the parser (the key is then unknown); 65 are not. */
    tail = repeat("", "]", 63, "}");
    deep = repeat("{\"train_batch_size\": 8, \"deep\": ", "[", 63, tail);
    free(tail);
    CU_ASSERT_EQUAL(parse(deep, 2, &c, &problems), ZERO_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "error: deep: unknown key"));
    zero_string_free(problems);
    free(deep);
    tail = repeat("", "]", 64, "}");
    deep = repeat("{\"train_batch_size\": 8, \"deep\": ", "[", 64, tail);
    free(tail);
    CU_ASSERT_EQUAL(parse(deep, 2, &c, &problems), ZERO_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "error: nesting deeper than 64 levels"));
    zero_string_free(problems);
    free(deep);
    /* very deep: stops at the limit, no stack exhaustion */
    deep = repeat("{\"a\": ", "[", 1000000, "");
    CU_ASSERT_EQUAL(parse(deep, 2, &c, &problems), ZERO_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "nesting deeper than 64 levels"));
    zero_string_free(problems);
    free(deep);

    /* more than the size limit, as a string */
    text = malloc((size_t)ZERO_CONFIG_MAX_BYTES + 2);
    memset(text, ' ', (size_t)ZERO_CONFIG_MAX_BYTES + 1);
    text[0] = '{';
    text[ZERO_CONFIG_MAX_BYTES] = '}';
    CU_ASSERT_EQUAL(zero_config_parse_string(text, (size_t)ZERO_CONFIG_MAX_BYTES + 1, 2, &c, &problems),
                    ZERO_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "more than the limit of 16777216 bytes"));
    zero_string_free(problems);

    /* ... and as a file */
    {
        char path[] = "/tmp/zero_config_huge_XXXXXX";
        int fd = mkstemp(path);
        CU_ASSERT_FATAL(fd >= 0);
        CU_ASSERT_EQUAL(write(fd, text, (size_t)ZERO_CONFIG_MAX_BYTES + 1), (ssize_t)ZERO_CONFIG_MAX_BYTES + 1);
        close(fd);
        CU_ASSERT_EQUAL(zero_config_parse_file(path, 2, &c, &problems), ZERO_ERR_CONFIG);
        CU_ASSERT_PTR_NOT_NULL(strstr(problems, "more than the limit of 16777216 bytes"));
        zero_string_free(problems);
        unlink(path);
    }
    free(text);

    /* too many values */
    text = repeat("{\"a\": [0", ",0", ZERO_CONFIG_JSON_MAX_VALUES + 10, "]}");
    CU_ASSERT_EQUAL(parse(text, 2, &c, &problems), ZERO_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "values: not a plausible config"));
    zero_string_free(problems);
    free(text);

    /* many distinct unknown keys: every one counted, suggestions only for the listed ones */
    {
        size_t n = 50000, cap = n * 48 + 64, used = 0;
        char *big = malloc(cap);
        used += (size_t)snprintf(big, cap, "{\"train_batch_size\": 8");
        for (size_t i = 0; i < n; i++)
            used += (size_t)snprintf(big + used, cap - used, ", \"unknown_key_%06zu_padding\": 0", i);
        snprintf(big + used, cap - used, "}");
        CU_ASSERT_EQUAL(parse(big, 2, &c, &problems), ZERO_ERR_CONFIG);
        CU_ASSERT_PTR_NOT_NULL(strstr(problems, "and 49000 more problems not listed"));
        CU_ASSERT_EQUAL(count_lines_with(problems, "\n"), ZERO_CONFIG_MAX_PROBLEMS + 1);
        zero_string_free(problems);
        free(big);
    }

    /* thousands of problems: the list is capped, the count is not lost */
    text = repeat("{\"train_batch_size\": 8", ", \"k\": 1", 3 * ZERO_CONFIG_MAX_PROBLEMS, "}");
    CU_ASSERT_EQUAL(parse(text, 2, &c, &problems), ZERO_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "more problems not listed"));
    zero_string_free(problems);
    free(text);
    END;
}

/* Deterministic junk and mutated configs: refused or accepted, never a crash or a leak. */
static void test_junk_never_crashes(void)
{
    BEGIN;
    char path[4096], *base;
    size_t base_len;
    uint64_t state = 0x9E3779B97F4A7C15ull;
    snprintf(path, sizeof(path), "%s/zero3_nvme_bf16.json", zero_test_configs_dir());
    base = read_text(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(base);
    base_len = strlen(base);
    for (int round = 0; round < 3000; round++) {
        unsigned char buf[2048];
        size_t len;
        zero_config_t *c = NULL;
        char *problems = NULL;
        zero_status_t s;
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        if (round % 2 == 0) {
            len = (size_t)(state >> 33) % 256;
            for (size_t i = 0; i < len; i++) {
                state = state * 6364136223846793005ull + 1442695040888963407ull;
                buf[i] = (unsigned char)(state >> 56);
            }
        } else {
            len = base_len < sizeof(buf) ? base_len : sizeof(buf);
            memcpy(buf, base, len);
            for (int k = 0; k < 3; k++) {
                state = state * 6364136223846793005ull + 1442695040888963407ull;
                buf[(state >> 33) % len] = (unsigned char)(state >> 20);
            }
        }
        s = zero_config_parse_string((const char *)buf, len, (uint32_t)(round % 4), &c, &problems);
        CU_ASSERT(s == ZERO_OK || s == ZERO_ERR_CONFIG || s == ZERO_ERR_UNSUPPORTED);
        CU_ASSERT((s == ZERO_OK) == (c != NULL));
        CU_ASSERT(s == ZERO_OK || problems != NULL);
        zero_config_destroy(c);
        zero_string_free(problems);
    }
    free(base);
    END;
}

/* ---- comments, "auto", deprecated spellings, warnings ---- */

static void test_comments(void)
{
    BEGIN;
    const char *json =
        "\xEF\xBB\xBF// leading comment\n"
        "{\n"
        "  # hash comment, as hjson allows\n"
        "  \"train_batch_size\" /* between key and colon */ : 8, // trailing\n"
        "  /* block\n     over lines */\n"
        "  \"zero_optimization\": {\"stage\": 3, \"offload_param\": {\"device\": \"nvme\",\n"
        "     \"nvme_path\": \"//server/share/*not a comment*/\\u00e9\"}}\n"
        "}\n"
        "// trailing comment after the object\n";
    zero_config_t *c = parse_ok(json, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->train_batch_size, 8);
    CU_ASSERT_EQUAL(c->zero_optimization.stage, 3);
    CU_ASSERT_STRING_EQUAL(c->zero_optimization.offload_param.nvme_path, "//server/share/*not a comment*/\xc3\xa9");
    zero_config_destroy(c);
    END;
}

static void test_auto_everywhere(void)
{
    BEGIN;
    const char *json =
        "{\"train_micro_batch_size_per_gpu\": 4, \"train_batch_size\": \"auto\", \"gradient_accumulation_steps\": "
        "\"auto\", \"gradient_clipping\": \"auto\", \"steps_per_print\": \"auto\",\n"
        " \"fp16\": {\"enabled\": \"auto\", \"loss_scale\": \"auto\", \"initial_scale_power\": \"auto\"},\n"
        " \"bf16\": {\"enabled\": \"auto\"},\n"
        " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": \"auto\", \"betas\": \"auto\", \"eps\": "
        "\"auto\", \"weight_decay\": \"auto\"}},\n"
        " \"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {\"warmup_min_lr\": \"auto\", \"warmup_max_lr\": "
        "\"auto\", \"warmup_num_steps\": \"auto\", \"total_num_steps\": 100}},\n"
        " \"zero_optimization\": {\"stage\": 3, \"reduce_bucket_size\": \"auto\", \"stage3_prefetch_bucket_size\": "
        "\"auto\", \"stage3_param_persistence_threshold\": \"auto\", \"stage3_max_live_parameters\": \"auto\", "
        "\"stage3_max_reuse_distance\": \"auto\", \"overlap_comm\": \"auto\", \"sub_group_size\": \"auto\"}}";
    zero_config_t *c = parse_ok(json, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->train_batch_size, 8);
    CU_ASSERT_EQUAL(c->gradient_accumulation_steps, 1);
    CU_ASSERT_DOUBLE_EQUAL(c->gradient_clipping, 0.0, 0);
    CU_ASSERT_EQUAL(c->steps_per_print, 10);
    CU_ASSERT_EQUAL(c->precision, ZERO_FP32);
    CU_ASSERT_EQUAL(c->fp16.initial_scale_power, 16);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.lr, 1e-3, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.betas[1], 0.999, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.warmup_max_lr, 1e-3, 0);
    CU_ASSERT_EQUAL(c->scheduler.warmup_num_steps, 1000);
    CU_ASSERT_EQUAL(c->zero_optimization.reduce_bucket_size, 500000000);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_prefetch_bucket_size, 50000000);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_param_persistence_threshold, 100000);
    CU_ASSERT(c->zero_optimization.overlap_comm);
    zero_config_destroy(c);

    /* The warmup peak: "auto" is the optimizer's lr (what the Hugging Face trainer writes there); absent,
     * DeepSpeed's defaults: WarmupLR the optimizer's lr, WarmupDecayLR 0.001. */
    c = parse_ok("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adam\", \"params\": {\"lr\": 5e-4}},"
                 " \"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_max_lr\": \"auto\"}}}", 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.warmup_max_lr, 5e-4, 0);
    zero_config_destroy(c);
    c = parse_ok("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adam\", \"params\": {\"lr\": 5e-4}},"
                 " \"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {\"total_num_steps\": 2000}}}", 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_DOUBLE_EQUAL(c->scheduler.warmup_max_lr, 1e-3, 0);
    zero_config_destroy(c);
    END;
}

static void test_deprecated_spellings(void)
{
    BEGIN;
    zero_config_t *c = NULL;
    char *problems = NULL;

    /* cpu_offload / cpu_offload_param / cpu_offload_use_pin_memory */
    CU_ASSERT_EQUAL(parse("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 3, \"cpu_offload\": true, "
                          "\"cpu_offload_param\": true, \"cpu_offload_use_pin_memory\": true}}", 2, &c, &problems),
                    ZERO_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_optimizer.device, ZERO_OFFLOAD_CPU);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_param.device, ZERO_OFFLOAD_CPU);
    CU_ASSERT(c->zero_optimization.offload_optimizer.pin_memory); /* the default is false */
    CU_ASSERT(c->zero_optimization.offload_param.pin_memory);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "warning: zero_optimization.cpu_offload: deprecated; write "
                                            "\"offload_optimizer\": {\"device\": \"cpu\"} instead"));
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "warning: zero_optimization.cpu_offload_param: deprecated"));
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "warning: zero_optimization.cpu_offload_use_pin_memory: deprecated"));
    zero_string_free(problems);
    zero_config_destroy(c);

    /* offload_param below stage 3: ignored with a warning, as DeepSpeed ignores it */
    CU_ASSERT_EQUAL(parse("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 2, \"offload_param\": "
                          "{\"device\": \"nvme\", \"nvme_path\": \"/tmp\"}}}", 2, &c, &problems),
                    ZERO_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_param.device, ZERO_OFFLOAD_NONE);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "warning: zero_optimization.offload_param: ignored: parameter offload "
                                            "moves stage-3 parameter shards (zero_optimization.stage is 2"));
    zero_string_free(problems);
    zero_config_destroy(c);
    CU_ASSERT_EQUAL(parse("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 1, \"cpu_offload_param\": "
                          "true}}", 2, &c, &problems),
                    ZERO_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->zero_optimization.offload_param.device, ZERO_OFFLOAD_NONE);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "warning: zero_optimization.cpu_offload_param: ignored"));
    zero_string_free(problems);
    zero_config_destroy(c);

    /* bfloat16, thread_count, unprefixed stage-3 names, stage3_gather_fp16_weights_on_model_save */
    CU_ASSERT_EQUAL(parse("{\"train_batch_size\": 8, \"bfloat16\": {\"enabled\": true}, \"aio\": {\"thread_count\": 4},"
                          " \"zero_optimization\": {\"stage\": 3, \"prefetch_bucket_size\": 7, "
                          "\"param_persistence_threshold\": 9, \"max_live_parameters\": 11, \"max_reuse_distance\": 13,"
                          " \"stage3_gather_fp16_weights_on_model_save\": true}}", 2, &c, &problems),
                    ZERO_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->precision, ZERO_BF16);
    CU_ASSERT_EQUAL(c->aio.intra_op_parallelism, 4);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_prefetch_bucket_size, 7);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_param_persistence_threshold, 9);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_max_live_parameters, 11);
    CU_ASSERT_EQUAL(c->zero_optimization.stage3_max_reuse_distance, 13);
    CU_ASSERT(c->zero_optimization.stage3_gather_16bit_weights_on_model_save);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "warning: bfloat16: deprecated spelling; write bf16 instead"));
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "warning: aio.thread_count: deprecated"));
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "warning: zero_optimization.stage3_gather_fp16_weights_on_model_save"));
    zero_string_free(problems);
    zero_config_destroy(c);

    /* "zero_optimization": true with allgather_size: DeepSpeed's oldest form */
    CU_ASSERT_EQUAL(parse("{\"train_batch_size\": 8, \"zero_optimization\": true, \"allgather_size\": 1000}", 2, &c,
                          &problems), ZERO_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->zero_optimization.stage, 1);
    CU_ASSERT_EQUAL(c->zero_optimization.allgather_bucket_size, 1000);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "warning: zero_optimization: a boolean here is DeepSpeed's deprecated"));
    zero_string_free(problems);
    zero_config_destroy(c);
    END;
}

static void test_out_of_scope_single_warning(void)
{
    BEGIN;
    zero_config_t *c = NULL;
    char *problems = NULL;
    CU_ASSERT_EQUAL(parse("{\"train_batch_size\": 8, \"activation_checkpointing\": {\"partition_activations\": true},"
                          " \"tensorboard\": {\"enabled\": true}, \"flops_profiler\": {}, \"wandb\": {\"enabled\": true},"
                          " \"csv_monitor\": {}, \"comms_logger\": {}, \"elasticity\": {\"enabled\": false}, "
                          "\"checkpoint\": {\"writer\": {\"type\": \"fast\"}}}", 2, &c, &problems),
                    ZERO_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(problems);
    CU_ASSERT_EQUAL(count_lines_with(problems, "\n"), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "<string>: warning: accepted but ignored, outside libzero's scope"));
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "activation_checkpointing, tensorboard, wandb, csv_monitor, comms_logger, "
                                            "flops_profiler, elasticity, checkpoint.writer") ||
                           strstr(problems, "activation_checkpointing"));
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "flops_profiler"));
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "checkpoint.writer"));
    zero_string_free(problems);
    zero_config_destroy(c);

    /* no problems at all: NULL text */
    CU_ASSERT_EQUAL(parse("{\"train_batch_size\": 8}", 2, &c, &problems), ZERO_OK);
    CU_ASSERT_PTR_NULL(problems);
    zero_config_destroy(c);
    END;
}

static void test_unsupported_vs_error_status(void)
{
    BEGIN;
    /* only unsupported keys: ZERO_ERR_UNSUPPORTED */
    expect_refused(B "\"sparse_gradients\": true, \"zero_optimization\": {\"legacy_stage1\": true}}", 2,
                   ZERO_ERR_UNSUPPORTED, "unsupported: sparse_gradients", "unsupported: zero_optimization.legacy_stage1");
    /* an error as well: ZERO_ERR_CONFIG, both still listed */
    expect_refused(B "\"sparse_gradients\": true, \"zero_optimization\": {\"stage\": 9}}", 2, ZERO_ERR_CONFIG,
                   "unsupported: sparse_gradients", "error: zero_optimization.stage");
    /* defaults of unsupported features are accepted */
    {
        zero_config_t *c = parse_ok(B "\"sparse_gradients\": false, \"prescale_gradients\": false, "
                                      "\"gradient_predivide_factor\": 1.0, \"communication_data_type\": null, "
                                      "\"zero_optimization\": {\"zero_hpz_partition_size\": 1, \"mics_shard_size\": -1, "
                                      "\"zero_quantized_gradients\": false}, \"amp\": {\"enabled\": false}, "
                                      "\"data_types\": {\"grad_accum_dtype\": null, \"param_dtype\": null}}", 2);
        zero_config_destroy(c);
    }
    END;
}

/* ---- rendering ---- */

static void round_trip(const char *label, zero_config_t *c)
{
    char *json1 = NULL, *json2 = NULL, *problems = NULL;
    zero_config_t *again = NULL;
    CU_ASSERT_EQUAL_FATAL(zero_config_to_json(c, &json1), ZERO_OK);
    if (zero_config_parse_string(json1, strlen(json1), c->world_size, &again, &problems) != ZERO_OK) {
        fprintf(stderr, "%s: rendered config refused:\n%s\n%s", label, json1, problems ? problems : "");
        CU_FAIL("rendered config refused");
    } else {
        /* the rendering carries no deprecated or out-of-scope keys: no warnings either */
        CU_ASSERT_PTR_NULL(problems);
        CU_ASSERT_EQUAL_FATAL(zero_config_to_json(again, &json2), ZERO_OK);
        CU_ASSERT_STRING_EQUAL(json1, json2);
        CU_ASSERT_EQUAL(again->world_size, c->world_size);
        CU_ASSERT_EQUAL(again->train_batch_size, c->train_batch_size);
        CU_ASSERT_EQUAL(again->precision, c->precision);
        CU_ASSERT_EQUAL(again->optimizer.type, c->optimizer.type);
        CU_ASSERT(memcmp(&again->optimizer, &c->optimizer, sizeof(c->optimizer)) == 0);
        CU_ASSERT(memcmp(&again->scheduler, &c->scheduler, sizeof(c->scheduler)) == 0);
        CU_ASSERT(memcmp(&again->fp16, &c->fp16, sizeof(c->fp16)) == 0);
        CU_ASSERT(memcmp(&again->aio, &c->aio, sizeof(c->aio)) == 0);
        CU_ASSERT_DOUBLE_EQUAL(again->gradient_clipping, c->gradient_clipping, 0);
        CU_ASSERT_EQUAL(again->zero_optimization.stage3_model_persistence_threshold,
                        c->zero_optimization.stage3_model_persistence_threshold);
        if (c->zero_optimization.offload_optimizer.nvme_path)
            CU_ASSERT_STRING_EQUAL(again->zero_optimization.offload_optimizer.nvme_path,
                                   c->zero_optimization.offload_optimizer.nvme_path);
    }
    zero_string_free(problems);
    zero_string_free(json1);
    zero_string_free(json2);
    zero_config_destroy(again);
}

static void test_round_trip(void)
{
    static const char *const synthetic[] = {
        "{\"train_batch_size\": 24, \"train_micro_batch_size_per_gpu\": 2, \"gradient_accumulation_steps\": 4, "
        "\"gradient_clipping\": 0.3, \"steps_per_print\": 0, \"fp16\": {\"enabled\": true, \"loss_scale\": 0.1, "
        "\"hysteresis\": 7, \"consecutive_hysteresis\": true, \"min_loss_scale\": 0.25}, \"optimizer\": {\"type\": "
        "\"Adam\", \"params\": {\"lr\": 0.1, \"betas\": [0.1, 0.3333333333333333], \"eps\": 1e-300, \"adam_w_mode\": "
        "false, \"bias_correction\": false}}, \"scheduler\": {\"type\": \"LRRangeTest\", \"params\": "
        "{\"lr_range_test_staircase\": true, \"lr_range_test_step_rate\": 2.5}}, \"zero_optimization\": {\"stage\": 3,"
        " \"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"/a \\\"quoted\\\" path\\\\x\", \"fast_init\": "
        "true}, \"offload_param\": {\"device\": \"cpu\", \"pin_memory\": false}, \"stage3_model_persistence_threshold\":"
        " 18446744073709551615}, \"aio\": {\"io_backend\": \"posix\", \"single_submit\": true}, \"checkpoint\": "
        "{\"tag_validation\": \"ignore\", \"load_universal\": true}}",
        "{\"train_micro_batch_size_per_gpu\": 1, \"optimizer\": {\"type\": \"sgd\", \"params\": {\"momentum\": 0.5, "
        "\"dampening\": 0.1}}, \"scheduler\": {\"type\": \"onecycle\", \"params\": {\"cycle_min_lr\": 1e-5, "
        "\"cycle_max_lr\": 1e-2, \"cycle_second_step_size\": 17, \"decay_mom_rate\": -0.5}}}",
        "{\"train_batch_size\": 12, \"optimizer\": {\"type\": \"Lamb\", \"params\": {\"max_coeff\": 3, \"min_coeff\": 1}},"
        " \"scheduler\": {\"type\": \"WarmupCosineLR\", \"params\": {\"total_num_steps\": 9, \"warmup_num_steps\": 3, "
        "\"warmup_type\": \"linear\"}}}",
    };
    BEGIN;
    DIR *dir = opendir(zero_test_configs_dir());
    struct dirent *de;
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    while ((de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        for (uint32_t w = 0; w <= 2; w += 2) {
            zero_config_t *c = parse_fixture(de->d_name, w);
            round_trip(de->d_name, c);
            zero_config_destroy(c);
        }
    }
    closedir(dir);
    for (size_t i = 0; i < sizeof(synthetic) / sizeof(synthetic[0]); i++) {
        for (uint32_t w = 0; w <= 3; w += 3) {
            zero_config_t *c = parse_ok(synthetic[i], w);
            if (c) {
                round_trip("synthetic", c);
                zero_config_destroy(c);
            }
        }
    }
    END;
}

static void test_render_content(void)
{
    BEGIN;
    char *json = NULL;
    zero_config_t *c = parse_ok("{\"train_micro_batch_size_per_gpu\": 3}", 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(zero_config_to_json(c, &json), ZERO_OK);
    /* unresolved keys are left out; the resolved ones are there */
    CU_ASSERT_PTR_NULL(strstr(json, "\"train_batch_size\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"train_micro_batch_size_per_gpu\": 3,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"gradient_accumulation_steps\": 1,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"stage3_prefetch_bucket_size\": 50000000,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"tag_validation\": \"Warn\""));
    CU_ASSERT_EQUAL(json[0], '{');
    CU_ASSERT_EQUAL(json[strlen(json) - 1], '\n');
    zero_string_free(json);
    zero_config_destroy(c);
    CU_ASSERT_EQUAL(zero_config_to_json(NULL, &json), ZERO_ERR_INVALID_ARG);
    END;
}

/* ---- API contract ---- */

static void test_api_arguments(void)
{
    BEGIN;
    zero_config_t *c = NULL;
    char *problems = (char *)"untouched";
    CU_ASSERT_EQUAL(zero_config_parse_file(NULL, 2, &c, &problems), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NULL(problems); /* always written when given */
    CU_ASSERT_EQUAL(zero_config_parse_file("/nonexistent/ds.json", 2, NULL, NULL), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_config_parse_string(NULL, 3, 2, &c, NULL), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_config_parse_file("/nonexistent/ds.json", 2, &c, &problems), ZERO_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "/nonexistent/ds.json: error: cannot open: No such file or directory"));
    zero_string_free(problems);
    CU_ASSERT_EQUAL(zero_config_parse_file("/", 2, &c, &problems), ZERO_ERR_IO); /* a directory */
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "/: error: cannot read"));
    zero_string_free(problems);
    /* files whose size stat does not know: read in growing steps, bounded */
    CU_ASSERT_EQUAL(zero_config_parse_file("/proc/self/maps", 2, &c, &problems), ZERO_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "/proc/self/maps:1:1: error: the config must be a JSON object"));
    zero_string_free(problems);
    CU_ASSERT_EQUAL(zero_config_parse_file("/dev/zero", 2, &c, &problems), ZERO_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(problems, "/dev/zero: error: config is 16777217 bytes, more than the limit"));
    zero_string_free(problems);
    CU_ASSERT_PTR_NULL(c);
    zero_config_destroy(NULL);
    CU_ASSERT_STRING_EQUAL(zero_optimizer_type_string(ZERO_OPTIMIZER_ADAMW), "AdamW");
    CU_ASSERT_STRING_EQUAL(zero_scheduler_type_string(ZERO_SCHEDULER_WARMUP_COSINE_LR), "WarmupCosineLR");
    CU_ASSERT_STRING_EQUAL(zero_offload_device_string(ZERO_OFFLOAD_NVME), "nvme");
    CU_ASSERT_STRING_EQUAL(zero_offload_device_string((zero_offload_device_t)42), "unknown");
    CU_ASSERT_EQUAL(config_edit_distance("stge", "stage"), 1);
    CU_ASSERT_EQUAL(config_edit_distance("satge", "stage"), 1); /* a swap counts once */
    CU_ASSERT_EQUAL(config_edit_distance("", "abc"), 3);
    END;
}

/* ---- logging: once, and not at all when the caller takes the problems ---- */

static int logged_errors, logged_warnings;

static void capture(zero_log_level_t level, int rank, const char *module, const char *message, void *user)
{
    (void)rank;
    (void)user;
    if (strcmp(module, "config") != 0)
        return;
    if (level == ZERO_LOG_LEVEL_ERROR)
        logged_errors++;
    else if (level == ZERO_LOG_LEVEL_WARN)
        logged_warnings++;
    CU_ASSERT_PTR_NOT_NULL(strstr(message, "<string>"));
}

static void test_logging(void)
{
    BEGIN;
    const char *json = B "\"zero_optimization\": {\"stage\": 7}, \"bfloat16\": {}, \"optimiser\": 1}";
    zero_log_level_t old = zero_log_get_level();
    zero_config_t *c = NULL;
    char *problems = NULL;
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    zero_log_set_callback(capture, NULL);
    logged_errors = logged_warnings = 0;
    CU_ASSERT_EQUAL(parse(json, 2, &c, NULL), ZERO_ERR_CONFIG);
    CU_ASSERT_EQUAL(logged_errors, 2);
    CU_ASSERT_EQUAL(logged_warnings, 1);
    logged_errors = logged_warnings = 0;
    CU_ASSERT_EQUAL(parse(json, 2, &c, &problems), ZERO_ERR_CONFIG);
    CU_ASSERT_EQUAL(logged_errors, 0);
    CU_ASSERT_EQUAL(logged_warnings, 0);
    CU_ASSERT_EQUAL(count_lines_with(problems, "\n"), 3);
    zero_string_free(problems);
    zero_log_set_callback(NULL, NULL);
    zero_log_set_level(old);
    END;
}

/* offload_optimizer.device "remote" with servers (libzero extension, docs/optd.md). */
static void test_remote_offload(void)
{
    BEGIN;
    zero_config_t *c = parse_ok("{\"train_batch_size\": 2, \"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": "
                                "{\"device\": \"remote\", \"servers\": [\"10.0.0.1:7000\", \"[::1]:7001\"]}}}", 2);
    if (c != NULL) {
        char *json = NULL;
        CU_ASSERT_EQUAL(c->zero_optimization.offload_optimizer.device, ZERO_OFFLOAD_REMOTE);
        CU_ASSERT_EQUAL_FATAL(c->zero_optimization.offload_optimizer.num_servers, 2);
        CU_ASSERT_STRING_EQUAL(c->zero_optimization.offload_optimizer.servers[1], "[::1]:7001");
        CU_ASSERT_EQUAL(zero_config_to_json(c, &json), ZERO_OK);
        CU_ASSERT_PTR_NOT_NULL(json ? strstr(json, "\"servers\": [\"10.0.0.1:7000\", \"[::1]:7001\"]") : NULL);
        zero_string_free(json);
        zero_config_destroy(c);
    }
    expect_refused("{\"train_batch_size\": 2, \"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": {\"device\": \"remote\"}}}",
                   2, ZERO_ERR_CONFIG, "zero_optimization.offload_optimizer.servers", "required");
    expect_refused("{\"train_batch_size\": 2, \"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": {\"device\": \"remote\", "
                   "\"servers\": [\"a:1\", \"nocolon\"]}}}", 2, ZERO_ERR_CONFIG, "servers[1]", "host:port");
    expect_refused("{\"train_batch_size\": 2, \"zero_optimization\": {\"stage\": 3, \"offload_param\": "
                   "{\"device\": \"remote\"}}}", 2, ZERO_ERR_CONFIG, "offload_param.device", "offload_optimizer only");
    END;
}

/* zero-launch --optd sets ZERO_OPTD_SERVERS: the servers when the config has
 * none; a list in the config wins, with a warning when it differs. */
static void test_remote_servers_from_launcher(void)
{
    BEGIN;
    const char *no_list = "{\"train_batch_size\": 2, \"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": "
                          "{\"device\": \"remote\"}}}";
    const char *auto_list = "{\"train_batch_size\": 2, \"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": "
                            "{\"device\": \"remote\", \"servers\": \"auto\"}}}";
    const char *own_list = "{\"train_batch_size\": 2, \"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": "
                           "{\"device\": \"remote\", \"servers\": [\"h1:7000\", \"h2:7000\"]}}}";
    zero_config_t *c;
    char *problems = NULL;
    setenv("ZERO_OPTD_SERVERS", "10.0.0.5:7000,[::1]:7001", 1);
    for (int k = 0; k < 2; k++) {
        c = parse_ok(k == 0 ? no_list : auto_list, 2);
        if (c != NULL) {
            CU_ASSERT_EQUAL_FATAL(c->zero_optimization.offload_optimizer.num_servers, 2);
            CU_ASSERT_STRING_EQUAL(c->zero_optimization.offload_optimizer.servers[0], "10.0.0.5:7000");
            CU_ASSERT_STRING_EQUAL(c->zero_optimization.offload_optimizer.servers[1], "[::1]:7001");
            zero_config_destroy(c);
        }
    }
    /* the config's own list wins, and the unused launcher list is named */
    c = NULL;
    CU_ASSERT_EQUAL(parse(own_list, 2, &c, &problems), ZERO_OK);
    if (c != NULL) {
        CU_ASSERT_EQUAL(c->zero_optimization.offload_optimizer.num_servers, 2);
        CU_ASSERT_STRING_EQUAL(c->zero_optimization.offload_optimizer.servers[0], "h1:7000");
        zero_config_destroy(c);
    }
    CU_ASSERT_PTR_NOT_NULL(problems ? strstr(problems, "ZERO_OPTD_SERVERS=10.0.0.5:7000,[::1]:7001") : NULL);
    zero_string_free(problems);
    problems = NULL;
    /* the same list in both: no warning */
    setenv("ZERO_OPTD_SERVERS", "h1:7000,h2:7000", 1);
    c = NULL;
    CU_ASSERT_EQUAL(parse(own_list, 2, &c, &problems), ZERO_OK);
    zero_config_destroy(c);
    CU_ASSERT(problems == NULL || strstr(problems, "ZERO_OPTD_SERVERS") == NULL);
    zero_string_free(problems);
    setenv("ZERO_OPTD_SERVERS", "10.0.0.5:7000,nocolon", 1);
    expect_refused(no_list, 2, ZERO_ERR_CONFIG, "ZERO_OPTD_SERVERS", "entry 1, \"nocolon\"");
    unsetenv("ZERO_OPTD_SERVERS");
    expect_refused(no_list, 2, ZERO_ERR_CONFIG, "servers", "zero-launch --optd");
    END;
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"every config fixture accepted (world size 2 and implied)", test_every_fixture_config},
        {"values read from the config fixtures", test_fixture_values},
        {"defaults", test_defaults},
        {"offload_optimizer device remote and servers", test_remote_offload},
        {"remote servers from zero-launch --optd (ZERO_OPTD_SERVERS)", test_remote_servers_from_launcher},
        {"batch triad derivation", test_batch_triad},
        {"invalid configs name their path", test_invalid_configs},
        {"every problem collected, sorted by position", test_every_problem_collected},
        {"syntax errors with line and column", test_syntax_errors},
        {"size, depth and count limits", test_limits},
        {"junk and mutated configs never crash", test_junk_never_crashes},
        {"comments", test_comments},
        {"\"auto\" means the default", test_auto_everywhere},
        {"deprecated spellings", test_deprecated_spellings},
        {"out-of-scope features: one warning", test_out_of_scope_single_warning},
        {"unsupported versus error status", test_unsupported_vs_error_status},
        {"effective-config JSON round trip", test_round_trip},
        {"rendered content", test_render_content},
        {"API arguments and names", test_api_arguments},
        {"logging once, or not when the caller takes the problems", test_logging},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {
        {"config", NULL, NULL, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return zero_test_main(argc, argv, suites);
}
