/*
 * zero-estimate: memory per rank (device and host) and communication per step
 * for a ZeRO run of a given size, from the ZeRO paper's formulas, DeepSpeed's
 * estimators and the buffers a DeepSpeed config implies.
 *
 *   zero-estimate --params 7.5e9 --world-size 64 --stage 2
 *
 * Prints a table for people, then the same figures as key=value lines for
 * scripts. Exit 0; 2 for a bad command line or a refused config; 1 otherwise.
 * docs/estimate.md documents every option, formula and output key.
 */
#include <zero/zero.h>

#include "estimate.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: zero-estimate --params N [--world-size N] [--ranks-per-node N] [--stage 0-3]\n"
    "                     [--largest-layer N] [--offload-optimizer none|cpu|nvme]\n"
    "                     [--offload-param none|cpu|nvme] [--dtype fp16|bf16|fp32]\n"
    "                     [--optimizer NAME] [--grad-accum N] [--bandwidth GB/s]\n"
    "                     [--max-in-cpu N] [--config FILE]\n"
    "       zero-estimate --help\n";

static const char help_text[] =
    "zero-estimate: memory per rank and communication per step for a ZeRO run.\n"
    "\n"
    "--params N             total parameters (required): 7500000000, 7.5e9, 7.5B,\n"
    "                       1.3M, 350K, 1T (K/M/B/T = 1e3/1e6/1e9/1e12)\n"
    "--largest-layer N      parameters of the largest layer (stage 3 gathers it\n"
    "                       whole); default unknown (counted as 0, with a note)\n"
    "--world-size N         data-parallel ranks N_d (default 1, or the world size\n"
    "                       the config's batch keys imply)\n"
    "--ranks-per-node N     ranks (GPUs) per node (default 8, at most the world\n"
    "                       size); host memory per node = per rank * N\n"
    "--stage S              ZeRO stage 0..3 (default 0, or the config's)\n"
    "--offload-optimizer D  none|cpu|nvme: where optimizer states live (stages 1-3)\n"
    "--offload-param D      none|cpu|nvme: where the parameter partition lives\n"
    "                       (stage 3 only)\n"
    "--max-in-cpu N         with --offload-param nvme: elements of the rank's\n"
    "                       partition kept in host memory, the rest on NVMe\n"
    "                       (default 1e9, or the config's offload_param.max_in_cpu)\n"
    "--dtype T              fp16|bf16|fp32: training dtype of parameters, gradients\n"
    "                       and communication (default fp16, or the config's)\n"
    "--optimizer O          adam|adamw|lamb (K = 12), sgd-momentum|adagrad|lion\n"
    "                       (K = 8), sgd (K = 4): K = optimizer bytes per parameter\n"
    "                       with 16-bit training; fp32 training drops the 4-byte\n"
    "                       master copy (default adam, or the config's)\n"
    "--grad-accum N         micro-batches per optimizer step (default 1, or the\n"
    "                       config's gradient_accumulation_steps)\n"
    "--bandwidth GB/s       bus bandwidth per rank for the time estimate, in 1e9\n"
    "                       bytes/s (default 50 = one 400 Gb/s link per rank)\n"
    "--config FILE          a DeepSpeed config: stage, precision, optimizer,\n"
    "                       offload devices, bucket and prefetch sizes, overlap_comm,\n"
    "                       sub_group_size, buffer counts; flags given on the\n"
    "                       command line override it\n"
    "--help                 this text\n"
    "\n"
    "GB = 1e9 bytes (the ZeRO paper's unit); the DeepSpeed estimator rows are in\n"
    "GiB = 2^30 bytes, as DeepSpeed prints them. Output: a table, then key=value\n"
    "lines (model_states_per_rank_gb=16.6 ...). Formulas: docs/estimate.md.\n"
    "Exit status: 0 done; 2 bad command line or refused config; 1 other failure.\n";

static int bad_flag(const char *flag, const char *value, const char *what)
{
    if (value)
        fprintf(stderr, "zero-estimate: %s: %s \"%s\"\n%s", flag, what, value, usage_text);
    else
        fprintf(stderr, "zero-estimate: %s: %s\n%s", flag, what, usage_text);
    return EXIT_USAGE;
}

static int parse_u32(const char *text, uint32_t min, uint32_t max, uint32_t *out)
{
    char *end;
    unsigned long long v;
    if (text == NULL || *text < '0' || *text > '9')
        return -1;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_device(const char *text, zero_offload_device_t *out)
{
    if (strcasecmp(text, "none") == 0)
        *out = ZERO_OFFLOAD_NONE;
    else if (strcasecmp(text, "cpu") == 0)
        *out = ZERO_OFFLOAD_CPU;
    else if (strcasecmp(text, "nvme") == 0)
        *out = ZERO_OFFLOAD_NVME;
    else
        return -1;
    return 0;
}

static int parse_dtype(const char *text, zero_dtype_t *out)
{
    if (strcasecmp(text, "fp16") == 0)
        *out = ZERO_FP16;
    else if (strcasecmp(text, "bf16") == 0)
        *out = ZERO_BF16;
    else if (strcasecmp(text, "fp32") == 0)
        *out = ZERO_FP32;
    else
        return -1;
    return 0;
}

static const char *dtype_string(zero_dtype_t dtype)
{
    return dtype == ZERO_FP32 ? "fp32" : dtype == ZERO_BF16 ? "bf16" : "fp16";
}

/* Command-line values as given (NULL = not given), applied after the config. */
typedef struct cli {
    const char *params, *largest_layer, *world_size, *ranks_per_node, *stage;
    const char *offload_optimizer, *offload_param, *dtype, *optimizer, *grad_accum;
    const char *bandwidth, *max_in_cpu, *config;
} cli_t;

static const struct {
    const char *flag;
    size_t offset;
} flags[] = {
    {"--params", offsetof(cli_t, params)},
    {"--largest-layer", offsetof(cli_t, largest_layer)},
    {"--world-size", offsetof(cli_t, world_size)},
    {"--ranks-per-node", offsetof(cli_t, ranks_per_node)},
    {"--stage", offsetof(cli_t, stage)},
    {"--offload-optimizer", offsetof(cli_t, offload_optimizer)},
    {"--offload-param", offsetof(cli_t, offload_param)},
    {"--dtype", offsetof(cli_t, dtype)},
    {"--optimizer", offsetof(cli_t, optimizer)},
    {"--grad-accum", offsetof(cli_t, grad_accum)},
    {"--bandwidth", offsetof(cli_t, bandwidth)},
    {"--max-in-cpu", offsetof(cli_t, max_in_cpu)},
    {"--config", offsetof(cli_t, config)},
};

/* Returns 0, 1 for --help, or EXIT_USAGE (message printed). */
static int parse_args(int argc, char **argv, cli_t *cli)
{
    memset(cli, 0, sizeof(*cli));
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = NULL;
        size_t j, name_len;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return 1;
        const char *eq = strchr(arg, '=');
        name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        for (j = 0; j < sizeof(flags) / sizeof(flags[0]); j++) {
            if (strlen(flags[j].flag) == name_len && strncmp(arg, flags[j].flag, name_len) == 0)
                break;
        }
        if (j == sizeof(flags) / sizeof(flags[0])) {
            fprintf(stderr, "zero-estimate: unknown option \"%s\"\n%s", arg, usage_text);
            return EXIT_USAGE;
        }
        if (eq) {
            value = eq + 1;
        } else {
            if (i + 1 >= argc)
                return bad_flag(flags[j].flag, NULL, "needs a value");
            value = argv[++i];
        }
        const char **slot = (const char **)((char *)cli + flags[j].offset);
        if (*slot != NULL)
            return bad_flag(flags[j].flag, NULL, "given twice");
        if (*value == '\0')
            return bad_flag(flags[j].flag, NULL, "empty value");
        *slot = value;
    }
    if (cli->params == NULL)
        return bad_flag("--params", NULL, "is required (the total parameter count, e.g. 7.5e9)");
    return 0;
}

static zero_est_optimizer_t optimizer_from_config(const zero_config_optimizer_t *o, int *known)
{
    *known = 1;
    switch (o->type) {
    case ZERO_OPTIMIZER_ADAM:    return ZERO_EST_OPT_ADAM;
    case ZERO_OPTIMIZER_ADAMW:   return ZERO_EST_OPT_ADAMW;
    case ZERO_OPTIMIZER_LAMB:    return ZERO_EST_OPT_LAMB;
    case ZERO_OPTIMIZER_SGD:     return o->momentum > 0.0 ? ZERO_EST_OPT_SGD_MOMENTUM : ZERO_EST_OPT_SGD;
    case ZERO_OPTIMIZER_ADAGRAD: return ZERO_EST_OPT_ADAGRAD;
    case ZERO_OPTIMIZER_LION:    return ZERO_EST_OPT_LION;
    case ZERO_OPTIMIZER_NONE:    break;
    }
    *known = 0;
    return ZERO_EST_OPT_ADAM;
}

/* Reads the config into @p in. Returns 0 or EXIT_USAGE (problems printed). */
static int apply_config(const char *path, zero_est_input_t *in, int *config_world_size, int *no_optimizer)
{
    zero_config_t *cfg = NULL;
    char *problems = NULL;
    zero_status_t st = zero_config_parse_file(path, 0, &cfg, &problems);
    if (problems != NULL) {
        fputs(problems, stderr);
        zero_string_free(problems);
    }
    if (st != ZERO_OK) {
        fprintf(stderr, "zero-estimate: --config: \"%s\" refused (%s)\n", path, zero_status_string(st));
        return EXIT_USAGE;
    }
    const zero_config_zero_t *z = &cfg->zero_optimization;
    int known;
    in->stage = z->stage;
    in->dtype = cfg->precision;
    in->optimizer = optimizer_from_config(&cfg->optimizer, &known);
    *no_optimizer = !known;
    in->offload_optimizer = z->offload_optimizer.device;
    in->offload_param = z->offload_param.device;
    in->reduce_bucket_size = (double)z->reduce_bucket_size;
    in->allgather_bucket_size = (double)z->allgather_bucket_size;
    in->prefetch_bucket_size = (double)z->stage3_prefetch_bucket_size;
    in->max_live_parameters = (double)z->stage3_max_live_parameters;
    in->overlap_comm = z->overlap_comm;
    in->sub_group_size = (double)z->sub_group_size;
    in->optimizer_buffer_count = z->offload_optimizer.buffer_count;
    in->param_buffer_count = z->offload_param.buffer_count;
    in->param_buffer_size = (double)z->offload_param.buffer_size;
    in->param_max_in_cpu = (double)z->offload_param.max_in_cpu;
    if (cfg->gradient_accumulation_steps > 0)
        in->grad_accum = cfg->gradient_accumulation_steps;
    *config_world_size = (int)cfg->world_size;
    zero_config_destroy(cfg);
    return 0;
}

static double gb(double bytes) { return bytes / 1e9; }
static double gib(double bytes) { return bytes / 1073741824.0; }

static void print_human(const zero_est_input_t *in, const zero_est_result_t *r, bool layer_known,
                        bool no_optimizer, const char *config)
{
    const char *s3 = in->stage == 3 ? "" : " (stage 3 only)";
    printf("zero-estimate: %.0f parameters, largest layer %s", in->params, layer_known ? "" : "unknown");
    if (layer_known)
        printf("%.0f", in->largest_layer);
    printf("\n  world size %u = %u node%s x %u rank%s, stage %d, %s, %s (K = %d bytes/param), "
           "offload optimizer %s, param %s\n",
           in->world_size, r->nodes, r->nodes == 1 ? "" : "s", in->ranks_per_node,
           in->ranks_per_node == 1 ? "" : "s", in->stage, dtype_string(in->dtype),
           zero_est_optimizer_string(in->optimizer), r->k, zero_offload_device_string(in->offload_optimizer),
           zero_offload_device_string(in->offload_param));
    if (config)
        printf("  config %s\n", config);
    if (no_optimizer)
        printf("  note: the config has no \"optimizer\" block; Adam assumed\n");
    if (!layer_known && in->stage == 3)
        printf("  note: --largest-layer not given; largest-layer terms counted as 0\n");

    printf("\nModel states per rank (ZeRO paper; GB = 1e9 bytes)\n");
    printf("  %-34s %12.3f GB\n", "parameters", gb(r->params_bytes));
    printf("  %-34s %12.3f GB\n", "gradients", gb(r->grads_bytes));
    printf("  %-34s %12.3f GB\n", "optimizer states", gb(r->optim_bytes));
    printf("  %-34s %12.3f GB   (no ZeRO: %.1f GB)\n", "total", gb(r->model_states_bytes), gb(r->baseline_bytes));
    printf("  %-34s %12.3f / %.3f / %.3f GB\n", "on device / host / NVMe", gb(r->device_states_bytes),
           gb(r->host_states_bytes), gb(r->nvme_states_bytes));

    printf("\nBuffers per rank implied by the config\n");
    printf("  %-34s %12.3f GB%s\n", "reduce bucket(s)", gb(r->reduce_bucket_bytes),
           in->overlap_comm ? "   (x2: overlap_comm)" : "");
    printf("  %-34s %12.3f GB%s\n", "allgather bucket", gb(r->allgather_bucket_bytes),
           in->stage == 1 || in->stage == 2 ? "" : " (stages 1-2 only)");
    printf("  %-34s %12.3f GB%s\n", "gathered parameters (live bound)", gb(r->gathered_params_bytes), s3);
    printf("  %-34s %12.3f GB%s\n", "largest layer's gradient", gb(r->layer_grads_bytes), s3);
    printf("  %-34s %12.3f GB%s\n", "prefetch bucket (within the bound)", gb(r->prefetch_bucket_bytes), s3);
    printf("  %-34s %12.3f GB\n", "host staging (offload)", gb(r->host_staging_bytes));

    printf("\nTotal per rank: device %.3f GB, host %.3f GB (per node of %u: %.3f GB)\n",
           gb(r->device_total_bytes), gb(r->host_total_bytes), in->ranks_per_node, gb(r->host_total_node_bytes));

    printf("\nDeepSpeed's estimator (mixed-precision Adam; GiB = 2^30 bytes, as DeepSpeed prints)\n");
    if (!r->ds_valid) {
        printf("  none for %s\n", in->stage == 0 ? "stage 0"
                                                 : "offload_param without offload_optimizer");
    } else {
        printf("  %s: per CPU (node) | per GPU\n",
               in->stage == 3 ? "estimate_zero3_model_states_mem_needs" : "estimate_zero2_model_states_mem_needs");
        if (in->stage == 3) {
            printf("  %9.2fGB | %7.2fGB   zero_init=1\n", gib(r->ds_cpu_bytes), gib(r->ds_gpu_bytes));
            printf("  %9.2fGB | %7.2fGB   zero_init=0\n", gib(r->ds_cpu_no_init_bytes), gib(r->ds_gpu_bytes));
        } else {
            printf("  %9.2fGB | %7.2fGB\n", gib(r->ds_cpu_bytes), gib(r->ds_gpu_bytes));
        }
    }

    printf("\nCommunication per optimizer step per rank (%s)\n", dtype_string(in->dtype));
    if (in->world_size == 1) {
        printf("  none: world size 1\n");
    } else {
        printf("  %-34s %12.4g elements (%s)\n", "paper's volume", r->comm_paper_elements,
               in->stage == 3 ? "3 x Psi" : "2 x Psi");
        printf("  %-34s %12.4g elements (%llu micro-batch%s)\n", "collective payload per step",
               r->comm_elements_per_step, (unsigned long long)in->grad_accum, in->grad_accum == 1 ? "" : "es");
        printf("  %-34s %12.3f GB   (ring: (N-1)/N of each payload)\n", "sent per rank",
               gb(r->comm_bytes_per_rank));
        printf("  %-34s %12.3f s    (at %g GB/s bus bandwidth)\n", "time", r->comm_time_s, in->bandwidth_gbps);
    }
}

static void kv(const char *key, double bytes)
{
    printf("%s_bytes=%.0f\n%s_gb=%.1f\n", key, bytes, key, gb(bytes));
}

static void print_keys(const zero_est_input_t *in, const zero_est_result_t *r)
{
    printf("\n# key=value (GB = 1e9 bytes, GiB = 2^30 bytes)\n");
    printf("params=%.0f\nlargest_layer_params=%.0f\n", in->params, in->largest_layer);
    printf("world_size=%u\nranks_per_node=%u\nnodes=%u\nstage=%d\n", in->world_size, in->ranks_per_node,
           r->nodes, in->stage);
    printf("dtype=%s\noptimizer=%s\noptimizer_bytes_per_param=%d\n", dtype_string(in->dtype),
           zero_est_optimizer_string(in->optimizer), r->k);
    printf("offload_optimizer=%s\noffload_param=%s\ngrad_accum=%llu\n",
           zero_offload_device_string(in->offload_optimizer), zero_offload_device_string(in->offload_param),
           (unsigned long long)in->grad_accum);
    printf("param_bytes_per_rank=%.0f\ngrad_bytes_per_rank=%.0f\noptimizer_state_bytes_per_rank=%.0f\n",
           r->params_bytes, r->grads_bytes, r->optim_bytes);
    kv("model_states_per_rank", r->model_states_bytes);
    kv("baseline_per_rank", r->baseline_bytes);
    kv("device_model_states_per_rank", r->device_states_bytes);
    kv("host_model_states_per_rank", r->host_states_bytes);
    kv("nvme_model_states_per_rank", r->nvme_states_bytes);
    printf("reduce_bucket_bytes=%.0f\nallgather_bucket_bytes=%.0f\n", r->reduce_bucket_bytes,
           r->allgather_bucket_bytes);
    printf("stage3_gathered_params_bytes=%.0f\nstage3_layer_grads_bytes=%.0f\nstage3_prefetch_bucket_bytes=%.0f\n",
           r->gathered_params_bytes, r->layer_grads_bytes, r->prefetch_bucket_bytes);
    printf("host_staging_bytes=%.0f\n", r->host_staging_bytes);
    kv("device_total_per_rank", r->device_total_bytes);
    kv("host_total_per_rank", r->host_total_bytes);
    kv("host_total_per_node", r->host_total_node_bytes);
    if (r->ds_valid) {
        printf("deepspeed_estimator=%s\n", in->stage == 3 ? "zero3" : "zero2");
        printf("deepspeed_gpu_per_rank_bytes=%.0f\ndeepspeed_gpu_per_rank_gib=%.2f\n", r->ds_gpu_bytes,
               gib(r->ds_gpu_bytes));
        printf("deepspeed_cpu_per_node_bytes=%.0f\ndeepspeed_cpu_per_node_gib=%.2f\n", r->ds_cpu_bytes,
               gib(r->ds_cpu_bytes));
        if (in->stage == 3)
            printf("deepspeed_cpu_per_node_no_zero_init_bytes=%.0f\ndeepspeed_cpu_per_node_no_zero_init_gib=%.2f\n",
                   r->ds_cpu_no_init_bytes, gib(r->ds_cpu_no_init_bytes));
    } else {
        printf("deepspeed_estimator=none\n");
    }
    printf("comm_paper_volume_elements=%.0f\ncomm_elements_per_step=%.0f\n", r->comm_paper_elements,
           r->comm_elements_per_step);
    printf("comm_bytes_per_rank=%.0f\ncomm_gb_per_rank=%.3f\n", r->comm_bytes_per_rank, gb(r->comm_bytes_per_rank));
    printf("bandwidth_gbps=%g\ncomm_time_s=%.6f\n", in->bandwidth_gbps, r->comm_time_s);
}

int main(int argc, char **argv)
{
    cli_t cli;
    zero_est_input_t in;
    zero_est_result_t r;
    char why[256];
    int config_world_size = 0, no_optimizer = 0, rc;
    uint32_t u;
    double d;

    rc = parse_args(argc, argv, &cli);
    if (rc == 1) {
        fputs(help_text, stdout);
        return 0;
    }
    if (rc != 0)
        return rc;

    zero_est_input_defaults(&in);
    if (cli.config && (rc = apply_config(cli.config, &in, &config_world_size, &no_optimizer)) != 0)
        return rc;

    if (zero_est_count_parse(cli.params, &in.params) != 0)
        return bad_flag("--params", cli.params, "expected a positive count like 7.5e9, 7.5B or 1.3M, got");
    if (cli.largest_layer && zero_est_count_parse(cli.largest_layer, &in.largest_layer) != 0)
        return bad_flag("--largest-layer", cli.largest_layer, "expected a positive count like 2e8 or 200M, got");
    if (cli.world_size) {
        if (parse_u32(cli.world_size, 1, 1u << 24, &u) != 0)
            return bad_flag("--world-size", cli.world_size, "expected an integer 1..16777216, got");
        in.world_size = u;
    } else if (config_world_size > 0) {
        in.world_size = (uint32_t)config_world_size;
    }
    if (cli.ranks_per_node) {
        if (parse_u32(cli.ranks_per_node, 1, 1u << 24, &u) != 0)
            return bad_flag("--ranks-per-node", cli.ranks_per_node, "expected an integer 1 or more, got");
        in.ranks_per_node = u;
    } else {
        in.ranks_per_node = in.world_size < 8 ? in.world_size : 8;
    }
    if (cli.stage) {
        if (parse_u32(cli.stage, 0, 3, &u) != 0)
            return bad_flag("--stage", cli.stage, "expected 0, 1, 2 or 3, got");
        in.stage = (int)u;
    }
    if (!cli.config) /* DeepSpeed's default: overlap_comm true for stage 3 only */
        in.overlap_comm = in.stage == 3;
    if (cli.offload_optimizer && parse_device(cli.offload_optimizer, &in.offload_optimizer) != 0)
        return bad_flag("--offload-optimizer", cli.offload_optimizer, "expected none, cpu or nvme, got");
    if (cli.offload_param && parse_device(cli.offload_param, &in.offload_param) != 0)
        return bad_flag("--offload-param", cli.offload_param, "expected none, cpu or nvme, got");
    if (cli.dtype && parse_dtype(cli.dtype, &in.dtype) != 0)
        return bad_flag("--dtype", cli.dtype, "expected fp16, bf16 or fp32, got");
    if (cli.optimizer) {
        if (zero_est_optimizer_parse(cli.optimizer, &in.optimizer) != 0)
            return bad_flag("--optimizer", cli.optimizer,
                            "expected adam, adamw, lamb, sgd, sgd-momentum, adagrad or lion, got");
        no_optimizer = 0;
    }
    if (cli.grad_accum) {
        if (parse_u32(cli.grad_accum, 1, 0x7fffffffu, &u) != 0)
            return bad_flag("--grad-accum", cli.grad_accum, "expected an integer 1 or more, got");
        in.grad_accum = u;
    }
    if (cli.bandwidth) {
        char *end;
        errno = 0;
        d = strtod(cli.bandwidth, &end);
        if (errno != 0 || *end != '\0' || !(d > 0.0) || !isfinite(d) || cli.bandwidth[0] < '0'
            || cli.bandwidth[0] > '9')
            return bad_flag("--bandwidth", cli.bandwidth, "expected a positive number of GB/s, got");
        in.bandwidth_gbps = d;
    }
    if (cli.max_in_cpu) {   /* 0 (every element on NVMe) or a count */
        if (strcmp(cli.max_in_cpu, "0") == 0)
            in.param_max_in_cpu = 0.0;
        else if (zero_est_count_parse(cli.max_in_cpu, &in.param_max_in_cpu) != 0)
            return bad_flag("--max-in-cpu", cli.max_in_cpu, "expected 0 or a count like 1e9 or 250M, got");
    }
    /* A stage that cannot offload, lowered on the command line below a config
     * that offloads, is a contradiction to report, not to resolve silently. */
    if (zero_est_check(&in, why, sizeof(why)) != 0) {
        if (cli.config && ((in.offload_optimizer != ZERO_OFFLOAD_NONE && !cli.offload_optimizer)
                           || (in.offload_param != ZERO_OFFLOAD_NONE && !cli.offload_param)))
            fprintf(stderr, "zero-estimate: %s (offload from --config %s)\n%s", why, cli.config, usage_text);
        else
            fprintf(stderr, "zero-estimate: %s\n%s", why, usage_text);
        return EXIT_USAGE;
    }

    zero_est_compute(&in, &r);
    print_human(&in, &r, cli.largest_layer != NULL, no_optimizer != 0, cli.config);
    print_keys(&in, &r);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "zero-estimate: writing the output failed: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
