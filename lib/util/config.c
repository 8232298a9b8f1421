/*
 * zero_config: the public calls. Reading the file, collecting problems into
 * one text (sorted by position), logging them when the caller did not take
 * them, and rendering the effective configuration back to JSON.
 */
#define ZERO_LOG_MODULE "config"
#include "util/config_internal.h"
#include "util/alloc.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- problems ---- */

void config_problem_at(config_ctx_t *ctx, config_severity_t severity, uint32_t line, uint32_t column,
                       const char *key, const char *fmt, ...)
{
    char message[1024], *text;
    va_list ap;
    config_problem_t *p;

    switch (severity) {
    case CONFIG_SEV_ERROR: ctx->errors++; break;
    case CONFIG_SEV_UNSUPPORTED: ctx->unsupported++; break;
    case CONFIG_SEV_WARNING: ctx->warnings++; break;
    }
    if (ctx->problem_count >= ZERO_CONFIG_MAX_PROBLEMS) {
        ctx->problems_dropped++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    /* A key is the user's text: cut a very long one, the message stays readable. */
    if (key && ctx->path_length)
        text = zero_asprintf("%s.%.200s: %s", ctx->path, key, message);
    else if (key || ctx->path_length)
        text = zero_asprintf("%.200s: %s", key ? key : ctx->path, message);
    else
        text = zero_strdup(message);
    if (text == NULL) {
        ctx->out_of_memory = true;
        return;
    }
    if (ctx->problem_count == ctx->problem_cap) {
        size_t cap = ctx->problem_cap ? ctx->problem_cap * 2 : 16;
        config_problem_t *grown = zero_realloc(ctx->problems, cap * sizeof(*grown));
        if (grown == NULL) {
            zero_free(text);
            ctx->out_of_memory = true;
            return;
        }
        ctx->problems = grown;
        ctx->problem_cap = cap;
    }
    p = &ctx->problems[ctx->problem_count++];
    p->severity = severity;
    p->line = line;
    p->column = column;
    p->text = text;
    p->order = ctx->problem_count;
}

static const char *severity_name(config_severity_t s)
{
    switch (s) {
    case CONFIG_SEV_ERROR: return "error";
    case CONFIG_SEV_UNSUPPORTED: return "unsupported";
    case CONFIG_SEV_WARNING: return "warning";
    }
    return "error";
}

/* File order; problems without a position (cross-key checks, the summary warning) last. */
static int problem_cmp(const void *a, const void *b)
{
    const config_problem_t *x = a, *y = b;
    uint64_t kx = x->line ? ((uint64_t)x->line << 32 | x->column) : UINT64_MAX;
    uint64_t ky = y->line ? ((uint64_t)y->line << 32 | y->column) : UINT64_MAX;
    if (kx != ky)
        return kx < ky ? -1 : 1;
    return x->order < y->order ? -1 : (x->order > y->order);
}

static char *problem_line(const config_ctx_t *ctx, const config_problem_t *p)
{
    if (p->line)
        return zero_asprintf("%s:%u:%u: %s: %s", ctx->source, p->line, p->column, severity_name(p->severity),
                             p->text);
    return zero_asprintf("%s: %s: %s", ctx->source, severity_name(p->severity), p->text);
}

/* Joins every problem into one text (NULL when there are none). */
static char *problems_text(config_ctx_t *ctx)
{
    size_t total = 0, used = 0;
    char *all, **lines;
    if (ctx->problem_count == 0)
        return NULL;
    qsort(ctx->problems, ctx->problem_count, sizeof(*ctx->problems), problem_cmp);
    lines = zero_calloc(ctx->problem_count + 1, sizeof(*lines));
    if (lines == NULL)
        return NULL;
    for (size_t i = 0; i < ctx->problem_count; i++) {
        lines[i] = problem_line(ctx, &ctx->problems[i]);
        if (lines[i] == NULL)
            goto out_of_memory;
        total += strlen(lines[i]) + 1;
    }
    if (ctx->problems_dropped) {
        lines[ctx->problem_count] = zero_asprintf("%s: error: ... and %zu more problems not listed", ctx->source,
                                                  ctx->problems_dropped);
        if (lines[ctx->problem_count] == NULL)
            goto out_of_memory;
        total += strlen(lines[ctx->problem_count]) + 1;
    }
    all = zero_malloc(total + 1);
    if (all == NULL)
        goto out_of_memory;
    for (size_t i = 0; i <= ctx->problem_count; i++) {
        if (lines[i] == NULL)
            continue;
        size_t len = strlen(lines[i]);
        memcpy(all + used, lines[i], len);
        all[used + len] = '\n';
        used += len + 1;
        zero_free(lines[i]);
    }
    all[used] = '\0';
    zero_free(lines);
    return all;
out_of_memory:
    for (size_t i = 0; i <= ctx->problem_count; i++)
        zero_free(lines[i]);
    zero_free(lines);
    ctx->out_of_memory = true;
    return NULL;
}

static void log_problems(const config_ctx_t *ctx)
{
    for (size_t i = 0; i < ctx->problem_count; i++) {
        const config_problem_t *p = &ctx->problems[i];
        char *line = problem_line(ctx, p);
        if (p->severity == CONFIG_SEV_WARNING)
            ZERO_LOG_WARN("%s", line ? line : p->text);
        else
            ZERO_LOG_ERROR("%s", line ? line : p->text);
        zero_free(line);
    }
    if (ctx->problems_dropped)
        ZERO_LOG_ERROR("%s: ... and %zu more problems not listed", ctx->source, ctx->problems_dropped);
}

static void ctx_release(config_ctx_t *ctx)
{
    for (size_t i = 0; i < ctx->problem_count; i++)
        zero_free(ctx->problems[i].text);
    zero_free(ctx->problems);
    zero_free(ctx->ignored);
}

/* ---- parsing ---- */

static zero_status_t finish_parse(config_ctx_t *ctx, zero_status_t status, zero_config_t *config,
                                  zero_config_t **config_p, char **problems_p)
{
    if (status == ZERO_OK) {
        if (ctx->out_of_memory)
            status = ZERO_ERR_NO_MEMORY;
        else if (ctx->errors)
            status = ZERO_ERR_CONFIG;
        else if (ctx->unsupported)
            status = ZERO_ERR_UNSUPPORTED;
    }
    if (problems_p) {
        *problems_p = problems_text(ctx);
        if (ctx->out_of_memory && status == ZERO_OK) {
            zero_string_free(*problems_p);
            *problems_p = NULL;
            status = ZERO_ERR_NO_MEMORY;
        }
        ZERO_LOG_DEBUG("%s: %zu errors, %zu unsupported, %zu warnings (handed to the caller)", ctx->source,
                       ctx->errors, ctx->unsupported, ctx->warnings);
    } else {
        log_problems(ctx);
    }
    if (status == ZERO_ERR_NO_MEMORY && ctx->problem_count == 0)
        ZERO_LOG_ERROR("%s: out of memory reading the config", ctx->source);
    ctx_release(ctx);
    if (status != ZERO_OK) {
        zero_config_destroy(config);
        return status;
    }
    *config_p = config;
    return ZERO_OK;
}

static zero_status_t parse_text(const char *source, const char *text, size_t length, uint32_t world_size,
                                zero_config_t **config_p, char **problems_p)
{
    config_ctx_t ctx;
    zero_config_json_doc_t *doc = NULL;
    zero_config_json_error_t jerr;
    zero_status_t status;
    zero_config_t *config;

    memset(&ctx, 0, sizeof(ctx));
    ctx.source = source;
    ctx.world_size = world_size;
    config = zero_calloc(1, sizeof(*config));
    if (config == NULL) {
        ZERO_LOG_ERROR("%s: out of memory reading the config", source);
        if (problems_p)
            *problems_p = NULL;
        return ZERO_ERR_NO_MEMORY;
    }
    ctx.config = config;
    status = zero_config_json_parse(text, length, &doc, &jerr);
    if (status == ZERO_ERR_CONFIG) {
        config_problem_at(&ctx, CONFIG_SEV_ERROR, jerr.line, jerr.column, NULL, "%s", jerr.message);
        status = ZERO_OK; /* counted as an error: finish_parse turns it into ZERO_ERR_CONFIG */
    } else if (status == ZERO_OK) {
        config_schema_apply(&ctx, zero_config_json_root(doc));
        zero_config_json_free(doc);
    } else {
        ctx.out_of_memory = true;
        status = ZERO_OK;
    }
    return finish_parse(&ctx, status, config, config_p, problems_p);
}

zero_status_t zero_config_parse_string(const char *text, size_t length, uint32_t world_size,
                                       zero_config_t **config_p, char **problems_p)
{
    if (problems_p)
        *problems_p = NULL;
    if ((text == NULL && length != 0) || config_p == NULL) {
        ZERO_LOG_ERROR("zero_config_parse_string: %s is NULL", config_p == NULL ? "config_p" : "text");
        return ZERO_ERR_INVALID_ARG;
    }
    return parse_text("<string>", text ? text : "", length, world_size, config_p, problems_p);
}

/* An I/O failure is reported like any other problem, so a tool prints it the same way. */
static zero_status_t io_problem(const char *path, char **problems_p, const char *what, int err)
{
    if (problems_p) {
        *problems_p = zero_asprintf("%s: error: %s: %s\n", path, what, strerror(err));
        ZERO_LOG_DEBUG("%s: %s: %s (handed to the caller)", path, what, strerror(err));
    } else {
        ZERO_LOG_ERROR("%s: %s: %s", path, what, strerror(err));
    }
    return ZERO_ERR_IO;
}

zero_status_t zero_config_parse_file(const char *path, uint32_t world_size, zero_config_t **config_p,
                                     char **problems_p)
{
    struct stat st;
    char *buf = NULL;
    size_t cap, length = 0;
    zero_status_t status;
    int fd, err;

    if (problems_p)
        *problems_p = NULL;
    if (path == NULL || config_p == NULL) {
        ZERO_LOG_ERROR("zero_config_parse_file: %s is NULL", path == NULL ? "path" : "config_p");
        return ZERO_ERR_INVALID_ARG;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return io_problem(path, problems_p, "cannot open", errno);
    if (fstat(fd, &st) != 0) {
        err = errno;
        status = io_problem(path, problems_p, "cannot stat", err);
        goto out_close;
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > ZERO_CONFIG_MAX_BYTES) {
        if (problems_p)
            *problems_p = zero_asprintf("%s: error: file is %lld bytes, more than the limit of %u bytes\n", path,
                                        (long long)st.st_size, (unsigned)ZERO_CONFIG_MAX_BYTES);
        else
            ZERO_LOG_ERROR("%s: file is %lld bytes, more than the limit of %u bytes", path, (long long)st.st_size,
                           (unsigned)ZERO_CONFIG_MAX_BYTES);
        status = ZERO_ERR_CONFIG;
        goto out_close;
    }
    /* Read at most one byte past the limit: a pipe or a growing file cannot make us read forever. */
    cap = (S_ISREG(st.st_mode) && st.st_size > 0) ? (size_t)st.st_size + 1 : 4096;
    buf = zero_malloc(cap);
    if (buf == NULL)
        goto out_no_memory;
    for (;;) {
        ssize_t got;
        if (length == cap) {
            size_t limit = (size_t)ZERO_CONFIG_MAX_BYTES + 1;
            size_t grown_cap = cap * 2 > limit ? limit : cap * 2;
            char *grown;
            if (grown_cap <= cap)
                break; /* limit + 1 bytes read: the JSON layer reports the size */
            grown = zero_realloc(buf, grown_cap);
            if (grown == NULL)
                goto out_no_memory;
            buf = grown;
            cap = grown_cap;
        }
        got = read(fd, buf + length, cap - length);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            err = errno;
            status = io_problem(path, problems_p, "cannot read", err);
            goto out_free;
        }
        if (got == 0)
            break;
        length += (size_t)got;
    }
    close(fd);
    fd = -1;
    status = parse_text(path, buf, length, world_size, config_p, problems_p);
    goto out_free;

out_no_memory:
    ZERO_LOG_ERROR("%s: out of memory reading the config", path);
    status = ZERO_ERR_NO_MEMORY;
out_free:
    zero_free(buf);
out_close:
    if (fd >= 0)
        close(fd);
    return status;
}

void zero_config_destroy(zero_config_t *config)
{
    if (config == NULL)
        return;
    zero_free(config->zero_optimization.offload_optimizer.nvme_path);
    zero_free(config->zero_optimization.offload_param.nvme_path);
    zero_free(config);
}

/* ---- names ---- */

const char *zero_optimizer_type_string(zero_optimizer_type_t type)
{
    switch (type) {
    case ZERO_OPTIMIZER_NONE: return "none";
    case ZERO_OPTIMIZER_ADAM: return "Adam";
    case ZERO_OPTIMIZER_ADAMW: return "AdamW";
    case ZERO_OPTIMIZER_SGD: return "SGD";
    case ZERO_OPTIMIZER_ADAGRAD: return "Adagrad";
    case ZERO_OPTIMIZER_LAMB: return "Lamb";
    case ZERO_OPTIMIZER_LION: return "Lion";
    }
    return "unknown";
}

const char *zero_scheduler_type_string(zero_scheduler_type_t type)
{
    switch (type) {
    case ZERO_SCHEDULER_NONE: return "none";
    case ZERO_SCHEDULER_WARMUP_LR: return "WarmupLR";
    case ZERO_SCHEDULER_WARMUP_DECAY_LR: return "WarmupDecayLR";
    case ZERO_SCHEDULER_WARMUP_COSINE_LR: return "WarmupCosineLR";
    case ZERO_SCHEDULER_ONE_CYCLE: return "OneCycle";
    case ZERO_SCHEDULER_LR_RANGE_TEST: return "LRRangeTest";
    }
    return "unknown";
}

const char *zero_offload_device_string(zero_offload_device_t device)
{
    switch (device) {
    case ZERO_OFFLOAD_NONE: return "none";
    case ZERO_OFFLOAD_CPU: return "cpu";
    case ZERO_OFFLOAD_NVME: return "nvme";
    }
    return "unknown";
}

static const char *tag_validation_string(zero_tag_validation_t v)
{
    switch (v) {
    case ZERO_TAG_VALIDATION_IGNORE: return "Ignore";
    case ZERO_TAG_VALIDATION_WARN: return "Warn";
    case ZERO_TAG_VALIDATION_FAIL: return "Fail";
    }
    return "Warn";
}

/* ---- rendering ---- */

#define EMIT_MAX_DEPTH 8

typedef struct emitter {
    char *buf;
    size_t length, cap;
    bool out_of_memory;
    int depth;
    bool first[EMIT_MAX_DEPTH];
} emitter_t;

static void put(emitter_t *e, const char *s, size_t n)
{
    if (e->out_of_memory)
        return;
    if (e->length + n + 1 > e->cap) {
        size_t cap = e->cap ? e->cap : 4096;
        char *grown;
        while (e->length + n + 1 > cap)
            cap *= 2;
        grown = zero_realloc(e->buf, cap);
        if (grown == NULL) {
            e->out_of_memory = true;
            return;
        }
        e->buf = grown;
        e->cap = cap;
    }
    memcpy(e->buf + e->length, s, n);
    e->length += n;
    e->buf[e->length] = '\0';
}

static void puts_(emitter_t *e, const char *s)
{
    put(e, s, strlen(s));
}

/* Starts a member: separator, indent, quoted key. */
static void member(emitter_t *e, const char *key)
{
    char quoted[256];
    puts_(e, e->first[e->depth] ? "\n" : ",\n");
    e->first[e->depth] = false;
    for (int i = 0; i < e->depth; i++)
        puts_(e, "  ");
    zero_config_json_quote(key, quoted, sizeof(quoted));
    puts_(e, quoted);
    puts_(e, ": ");
}

static void open_object(emitter_t *e, const char *key)
{
    if (key)
        member(e, key);
    puts_(e, "{");
    e->depth++;
    e->first[e->depth] = true;
}

static void close_object(emitter_t *e)
{
    bool empty = e->first[e->depth];
    e->depth--;
    if (!empty) {
        puts_(e, "\n");
        for (int i = 0; i < e->depth; i++)
            puts_(e, "  ");
    }
    puts_(e, "}");
}

static void emit_bool(emitter_t *e, const char *key, bool v)
{
    member(e, key);
    puts_(e, v ? "true" : "false");
}

static void emit_u64(emitter_t *e, const char *key, uint64_t v)
{
    char text[32];
    member(e, key);
    snprintf(text, sizeof(text), "%llu", (unsigned long long)v);
    puts_(e, text);
}

static void emit_double(emitter_t *e, const char *key, double v)
{
    char text[40];
    member(e, key);
    zero_config_json_format_double(v, text, sizeof(text));
    puts_(e, text);
}

static void emit_string(emitter_t *e, const char *key, const char *v)
{
    size_t need = zero_config_json_quote(v, NULL, 0) + 1;
    char *quoted = zero_malloc(need);
    member(e, key);
    if (quoted == NULL) {
        e->out_of_memory = true;
        return;
    }
    zero_config_json_quote(v, quoted, need);
    puts_(e, quoted);
    zero_free(quoted);
}

static void emit_betas(emitter_t *e, const double betas[2])
{
    char a[40], b[40];
    member(e, "betas");
    zero_config_json_format_double(betas[0], a, sizeof(a));
    zero_config_json_format_double(betas[1], b, sizeof(b));
    puts_(e, "[");
    puts_(e, a);
    puts_(e, ", ");
    puts_(e, b);
    puts_(e, "]");
}

static void emit_optimizer(emitter_t *e, const zero_config_optimizer_t *o)
{
    open_object(e, "optimizer");
    emit_string(e, "type", zero_optimizer_type_string(o->type));
    open_object(e, "params");
    emit_double(e, "lr", o->lr);
    switch (o->type) {
    case ZERO_OPTIMIZER_ADAM:
    case ZERO_OPTIMIZER_ADAMW:
        emit_betas(e, o->betas);
        emit_double(e, "eps", o->eps);
        emit_double(e, "weight_decay", o->weight_decay);
        emit_bool(e, "bias_correction", o->bias_correction);
        emit_bool(e, "adam_w_mode", o->adam_w_mode);
        break;
    case ZERO_OPTIMIZER_LAMB:
        emit_betas(e, o->betas);
        emit_double(e, "eps", o->eps);
        emit_double(e, "weight_decay", o->weight_decay);
        emit_bool(e, "bias_correction", o->bias_correction);
        emit_double(e, "max_coeff", o->max_coeff);
        emit_double(e, "min_coeff", o->min_coeff);
        break;
    case ZERO_OPTIMIZER_LION:
        emit_betas(e, o->betas);
        emit_double(e, "weight_decay", o->weight_decay);
        break;
    case ZERO_OPTIMIZER_SGD:
        emit_double(e, "momentum", o->momentum);
        emit_double(e, "dampening", o->dampening);
        emit_double(e, "weight_decay", o->weight_decay);
        emit_bool(e, "nesterov", o->nesterov);
        break;
    case ZERO_OPTIMIZER_ADAGRAD:
        emit_double(e, "eps", o->eps);
        emit_double(e, "weight_decay", o->weight_decay);
        break;
    case ZERO_OPTIMIZER_NONE:
        break;
    }
    close_object(e);
    emit_bool(e, "legacy_fusion", o->legacy_fusion);
    close_object(e);
}

static void emit_scheduler(emitter_t *e, const zero_config_scheduler_t *s)
{
    const char *warmup_type = s->warmup_type == ZERO_WARMUP_LINEAR ? "linear" : "log";
    open_object(e, "scheduler");
    emit_string(e, "type", zero_scheduler_type_string(s->type));
    open_object(e, "params");
    switch (s->type) {
    case ZERO_SCHEDULER_WARMUP_LR:
    case ZERO_SCHEDULER_WARMUP_DECAY_LR:
        emit_double(e, "warmup_min_lr", s->warmup_min_lr);
        emit_double(e, "warmup_max_lr", s->warmup_max_lr);
        emit_u64(e, "warmup_num_steps", s->warmup_num_steps);
        emit_string(e, "warmup_type", warmup_type);
        if (s->type == ZERO_SCHEDULER_WARMUP_DECAY_LR)
            emit_u64(e, "total_num_steps", s->total_num_steps);
        break;
    case ZERO_SCHEDULER_WARMUP_COSINE_LR:
        emit_u64(e, "total_num_steps", s->total_num_steps);
        emit_double(e, "warmup_min_ratio", s->warmup_min_ratio);
        emit_u64(e, "warmup_num_steps", s->warmup_num_steps);
        emit_double(e, "cos_min_ratio", s->cos_min_ratio);
        emit_string(e, "warmup_type", warmup_type);
        break;
    case ZERO_SCHEDULER_ONE_CYCLE:
        emit_double(e, "cycle_min_lr", s->cycle_min_lr);
        emit_double(e, "cycle_max_lr", s->cycle_max_lr);
        emit_double(e, "decay_lr_rate", s->decay_lr_rate);
        emit_u64(e, "cycle_first_step_size", s->cycle_first_step_size);
        emit_u64(e, "cycle_second_step_size", s->cycle_second_step_size);
        emit_u64(e, "cycle_first_stair_count", s->cycle_first_stair_count);
        emit_u64(e, "cycle_second_stair_count", s->cycle_second_stair_count);
        emit_u64(e, "decay_step_size", s->decay_step_size);
        emit_bool(e, "cycle_momentum", s->cycle_momentum);
        emit_double(e, "cycle_min_mom", s->cycle_min_mom);
        emit_double(e, "cycle_max_mom", s->cycle_max_mom);
        emit_double(e, "decay_mom_rate", s->decay_mom_rate);
        break;
    case ZERO_SCHEDULER_LR_RANGE_TEST:
        emit_double(e, "lr_range_test_min_lr", s->lr_range_test_min_lr);
        emit_u64(e, "lr_range_test_step_size", s->lr_range_test_step_size);
        emit_double(e, "lr_range_test_step_rate", s->lr_range_test_step_rate);
        emit_bool(e, "lr_range_test_staircase", s->lr_range_test_staircase);
        break;
    case ZERO_SCHEDULER_NONE:
        break;
    }
    close_object(e);
    close_object(e);
}

static void emit_zero(emitter_t *e, const zero_config_zero_t *z)
{
    const zero_config_offload_optimizer_t *oo = &z->offload_optimizer;
    const zero_config_offload_param_t *op = &z->offload_param;
    open_object(e, "zero_optimization");
    emit_u64(e, "stage", (uint64_t)z->stage);
    emit_bool(e, "contiguous_gradients", z->contiguous_gradients);
    emit_bool(e, "overlap_comm", z->overlap_comm);
    emit_bool(e, "reduce_scatter", z->reduce_scatter);
    emit_u64(e, "reduce_bucket_size", z->reduce_bucket_size);
    emit_bool(e, "allgather_partitions", z->allgather_partitions);
    emit_u64(e, "allgather_bucket_size", z->allgather_bucket_size);
    emit_bool(e, "use_multi_rank_bucket_allreduce", z->use_multi_rank_bucket_allreduce);
    emit_bool(e, "load_from_fp32_weights", z->load_from_fp32_weights);
    emit_bool(e, "elastic_checkpoint", z->elastic_checkpoint);
    emit_bool(e, "ignore_unused_parameters", z->ignore_unused_parameters);
    emit_bool(e, "round_robin_gradients", z->round_robin_gradients);
    emit_bool(e, "check_grad_writes", z->check_grad_writes);
    emit_u64(e, "sub_group_size", z->sub_group_size);
    emit_u64(e, "stage3_prefetch_bucket_size", z->stage3_prefetch_bucket_size);
    emit_u64(e, "stage3_param_persistence_threshold", z->stage3_param_persistence_threshold);
    emit_u64(e, "stage3_model_persistence_threshold", z->stage3_model_persistence_threshold);
    emit_u64(e, "stage3_max_live_parameters", z->stage3_max_live_parameters);
    emit_u64(e, "stage3_max_reuse_distance", z->stage3_max_reuse_distance);
    emit_bool(e, "stage3_gather_16bit_weights_on_model_save", z->stage3_gather_16bit_weights_on_model_save);
    emit_u64(e, "stage3_module_granularity_threshold", z->stage3_module_granularity_threshold);
    emit_bool(e, "stage3_use_all_reduce_for_fetch_params", z->stage3_use_all_reduce_for_fetch_params);
    open_object(e, "offload_optimizer");
    emit_string(e, "device", zero_offload_device_string(oo->device));
    if (oo->nvme_path)
        emit_string(e, "nvme_path", oo->nvme_path);
    emit_bool(e, "pin_memory", oo->pin_memory);
    emit_u64(e, "buffer_count", oo->buffer_count);
    emit_bool(e, "pipeline_read", oo->pipeline_read);
    emit_bool(e, "pipeline_write", oo->pipeline_write);
    emit_bool(e, "fast_init", oo->fast_init);
    emit_double(e, "ratio", oo->ratio);
    close_object(e);
    open_object(e, "offload_param");
    emit_string(e, "device", zero_offload_device_string(op->device));
    if (op->nvme_path)
        emit_string(e, "nvme_path", op->nvme_path);
    emit_bool(e, "pin_memory", op->pin_memory);
    emit_u64(e, "buffer_count", op->buffer_count);
    emit_u64(e, "buffer_size", op->buffer_size);
    emit_u64(e, "max_in_cpu", op->max_in_cpu);
    close_object(e);
    close_object(e);
}

zero_status_t zero_config_to_json(const zero_config_t *c, char **json_p)
{
    emitter_t e;
    if (c == NULL || json_p == NULL) {
        ZERO_LOG_ERROR("zero_config_to_json: %s is NULL", c == NULL ? "config" : "json_p");
        return ZERO_ERR_INVALID_ARG;
    }
    memset(&e, 0, sizeof(e));
    open_object(&e, NULL);
    if (c->train_batch_size)
        emit_u64(&e, "train_batch_size", c->train_batch_size);
    if (c->train_micro_batch_size_per_gpu)
        emit_u64(&e, "train_micro_batch_size_per_gpu", c->train_micro_batch_size_per_gpu);
    if (c->gradient_accumulation_steps)
        emit_u64(&e, "gradient_accumulation_steps", c->gradient_accumulation_steps);
    emit_double(&e, "gradient_clipping", c->gradient_clipping);
    emit_u64(&e, "steps_per_print", c->steps_per_print);
    emit_bool(&e, "wall_clock_breakdown", c->wall_clock_breakdown);
    emit_bool(&e, "memory_breakdown", c->memory_breakdown);
    emit_bool(&e, "dataloader_drop_last", c->dataloader_drop_last);
    emit_bool(&e, "zero_allow_untested_optimizer", c->zero_allow_untested_optimizer);
    emit_bool(&e, "zero_force_ds_cpu_optimizer", c->zero_force_ds_cpu_optimizer);

    open_object(&e, "fp16");
    emit_bool(&e, "enabled", c->fp16.enabled);
    emit_bool(&e, "auto_cast", c->fp16.auto_cast);
    emit_double(&e, "loss_scale", c->fp16.loss_scale);
    emit_u64(&e, "initial_scale_power", c->fp16.initial_scale_power);
    emit_u64(&e, "loss_scale_window", c->fp16.loss_scale_window);
    emit_u64(&e, "hysteresis", c->fp16.hysteresis);
    emit_bool(&e, "consecutive_hysteresis", c->fp16.consecutive_hysteresis);
    emit_double(&e, "min_loss_scale", c->fp16.min_loss_scale);
    close_object(&e);
    open_object(&e, "bf16");
    emit_bool(&e, "enabled", c->bf16.enabled);
    emit_bool(&e, "immediate_grad_update", c->bf16.immediate_grad_update);
    close_object(&e);

    if (c->optimizer.type != ZERO_OPTIMIZER_NONE)
        emit_optimizer(&e, &c->optimizer);
    if (c->scheduler.type != ZERO_SCHEDULER_NONE)
        emit_scheduler(&e, &c->scheduler);
    emit_zero(&e, &c->zero_optimization);

    open_object(&e, "aio");
    emit_string(&e, "io_backend", c->aio.io_backend == ZERO_AIO_POSIX ? "posix" : "async_io");
    emit_u64(&e, "block_size", c->aio.block_size);
    emit_u64(&e, "queue_depth", c->aio.queue_depth);
    emit_u64(&e, "intra_op_parallelism", c->aio.intra_op_parallelism);
    emit_bool(&e, "single_submit", c->aio.single_submit);
    emit_bool(&e, "overlap_events", c->aio.overlap_events);
    close_object(&e);
    open_object(&e, "checkpoint");
    emit_string(&e, "tag_validation", tag_validation_string(c->checkpoint.tag_validation));
    emit_bool(&e, "load_universal", c->checkpoint.load_universal);
    close_object(&e);
    close_object(&e);
    puts_(&e, "\n");
    if (e.out_of_memory) {
        zero_free(e.buf);
        ZERO_LOG_ERROR("out of memory rendering the config as JSON");
        return ZERO_ERR_NO_MEMORY;
    }
    *json_p = e.buf;
    return ZERO_OK;
}
