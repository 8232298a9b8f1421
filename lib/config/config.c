/*
 * zero_config: the public calls. Reading the file, collecting problems into
 * one text (sorted by position), logging them when the caller did not take
 * them, and rendering the effective configuration back to JSON (from the key
 * tables, config_keys.c).
 */
#define ZERO_LOG_MODULE "config"
#include "config/config_internal.h"
#include "config/config_keys.h"
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
    for (uint32_t i = 0; i < config->zero_optimization.offload_optimizer.num_servers; i++)
        zero_free(config->zero_optimization.offload_optimizer.servers[i]);
    zero_free(config->zero_optimization.offload_optimizer.servers);
    for (uint32_t i = 0; i < config->num_param_groups; i++)
        zero_free(config->param_groups[i].name);
    zero_free(config->param_groups);
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
    case ZERO_OFFLOAD_REMOTE: return "remote";
    }
    return "unknown";
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

static void emit_pair(emitter_t *e, const char *key, const double pair[2])
{
    char a[40], b[40];
    member(e, key);
    zero_config_json_format_double(pair[0], a, sizeof(a));
    zero_config_json_format_double(pair[1], b, sizeof(b));
    puts_(e, "[");
    puts_(e, a);
    puts_(e, ", ");
    puts_(e, b);
    puts_(e, "]");
}

/* The canonical (first non-alias) name of an enum value. */
static const char *enum_name(const config_enum_name_t *names, int value)
{
    for (const config_enum_name_t *n = names; n->name; n++)
        if (!n->alias && n->value == value)
            return n->name;
    return "unknown";
}

/* Whether rendering @p rows writes at least one member (empty blocks are left out). */
static bool block_renders(const config_key_t *rows)
{
    for (const config_key_t *r = rows; r->key; r++)
        if ((r->stored && r->cls == CONFIG_IMPLEMENTED) || (r->type == CONFIG_OBJECT && r->sub && block_renders(r->sub)))
            return true;
    return false;
}

static void emit_rows(emitter_t *e, const zero_config_t *c, const config_key_t *rows);

/* "optimizer" / "scheduler": the type, its own params table, then the block's other rows. */
static void emit_typed_block(emitter_t *e, const zero_config_t *c, const char *key, const char *type_name,
                             const config_key_t *params, const config_key_t *rows)
{
    open_object(e, key);
    emit_string(e, "type", type_name);
    open_object(e, "params");
    if (params)
        emit_rows(e, c, params);
    close_object(e);
    emit_rows(e, c, rows);
    if (rows == config_optimizer_keys && c->num_param_groups > 0) {
        /* each group in full: optimizer.params with its overrides, by the same rows */
        open_object(e, "param_groups");
        for (uint32_t i = 0; i < c->num_param_groups; i++) {
            zero_config_t scratch = *c;
            scratch.optimizer = c->param_groups[i].optimizer;
            open_object(e, c->param_groups[i].name);
            emit_rows(e, &scratch, params);
            close_object(e);
        }
        close_object(e);
    }
    close_object(e);
}

/* offload_optimizer.servers (a custom row: an array of strings). */
static void emit_servers(emitter_t *e, const zero_config_offload_optimizer_t *oo)
{
    if (oo->num_servers == 0)
        return;
    member(e, "servers");
    puts_(e, "[");
    for (uint32_t i = 0; i < oo->num_servers; i++) {
        size_t need = zero_config_json_quote(oo->servers[i], NULL, 0) + 1;
        char *quoted = zero_malloc(need);
        if (quoted == NULL) {
            e->out_of_memory = true;
            break;
        }
        zero_config_json_quote(oo->servers[i], quoted, need);
        puts_(e, i ? ", " : "");
        puts_(e, quoted);
        zero_free(quoted);
    }
    puts_(e, "]");
}

/* Every stored row of @p rows with its effective value, nested blocks as objects, in table order. */
static void emit_rows(emitter_t *e, const zero_config_t *c, const config_key_t *rows)
{
    for (const config_key_t *r = rows; r->key; r++) {
        const char *field = (const char *)c + r->offset;
        if (r->type == CONFIG_OBJECT && r->sub == config_optimizer_keys) {
            if (c->optimizer.type != ZERO_OPTIMIZER_NONE)
                emit_typed_block(e, c, r->key, zero_optimizer_type_string(c->optimizer.type),
                                 config_optimizer_params_keys(c->optimizer.type), r->sub);
            continue;
        }
        if (r->type == CONFIG_OBJECT && r->sub == config_scheduler_keys) {
            if (c->scheduler.type != ZERO_SCHEDULER_NONE)
                emit_typed_block(e, c, r->key, zero_scheduler_type_string(c->scheduler.type),
                                 config_scheduler_params_keys(c->scheduler.type), r->sub);
            continue;
        }
        if (r->type == CONFIG_OBJECT && r->sub && block_renders(r->sub)) {
            open_object(e, r->key);
            emit_rows(e, c, r->sub);
            close_object(e);
            continue;
        }
        if (!r->stored || r->cls != CONFIG_IMPLEMENTED)
            continue;
        switch (r->type) {
        case CONFIG_BOOL: {
            bool v;
            memcpy(&v, field, sizeof(v));
            emit_bool(e, r->key, v);
            break;
        }
        case CONFIG_UINT: {
            uint64_t v = 0;
            uint32_t v32;
            if (r->size == sizeof(uint64_t)) {
                memcpy(&v, field, sizeof(v));
            } else {
                memcpy(&v32, field, sizeof(v32));
                v = v32;
            }
            if (v != 0 || !(r->flags & CONFIG_OMIT_ZERO))
                emit_u64(e, r->key, v);
            break;
        }
        case CONFIG_NUMBER: {
            double v;
            memcpy(&v, field, sizeof(v));
            emit_double(e, r->key, v);
            break;
        }
        case CONFIG_ENUM: {
            int v;
            memcpy(&v, field, sizeof(v));
            emit_string(e, r->key, enum_name(r->names, v));
            break;
        }
        case CONFIG_STRING: {
            const char *v;
            memcpy(&v, field, sizeof(v));
            if (v)
                emit_string(e, r->key, v);
            break;
        }
        case CONFIG_PAIR: {
            double v[2];
            memcpy(v, field, sizeof(v));
            emit_pair(e, r->key, v);
            break;
        }
        default: break;
        }
    }
    if (rows == config_offload_optimizer_keys)
        emit_servers(e, &c->zero_optimization.offload_optimizer);
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
    emit_rows(&e, c, config_top_keys);
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
