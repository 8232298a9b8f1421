/*
 * The DeepSpeed config schema: walks the JSON tree, fills zero_config_t and
 * records every problem with its dotted path.
 *
 * How a key is classified (docs/config.md says the same per key):
 *   - implemented: typed, range-checked, stored;
 *   - accepted with no effect: knobs of PyTorch-side machinery a C trainer
 *     does not have, or pure kernel/implementation choices (type-checked only);
 *   - unsupported unless default: DeepSpeed would change what a step computes
 *     and libzero does not, so any value but DeepSpeed's default is
 *     ZERO_ERR_UNSUPPORTED;
 *   - out of scope: whole DeepSpeed features that act outside the engine's step
 *     (monitors, profilers, activation checkpointing, ...): accepted, and named
 *     together in a single warning;
 *   - anything else: an unknown key, with the nearest known key suggested.
 */
#include "config/config_internal.h"
#include "config/config_keys.h"
#include "util/alloc.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef zero_config_json_node_t node_t;

#define J_NULL ZERO_CONFIG_JSON_NULL
#define J_BOOL ZERO_CONFIG_JSON_BOOL
#define J_NUMBER ZERO_CONFIG_JSON_NUMBER
#define J_STRING ZERO_CONFIG_JSON_STRING
#define J_ARRAY ZERO_CONFIG_JSON_ARRAY
#define J_OBJECT ZERO_CONFIG_JSON_OBJECT

#define BATCH_MAX ((uint64_t)1 << 40)
#define U32_MAX_VALUE ((uint64_t)UINT32_MAX)

/* ---- paths ---- */

static size_t path_push(config_ctx_t *ctx, const char *key)
{
    size_t saved = ctx->path_length;
    int n = snprintf(ctx->path + saved, CONFIG_PATH_MAX - saved, "%s%s", saved ? "." : "", key);
    if (n < 0 || saved + (size_t)n >= CONFIG_PATH_MAX)
        ctx->path_length = CONFIG_PATH_MAX - 1;
    else
        ctx->path_length = saved + (size_t)n;
    return saved;
}

static void path_pop(config_ctx_t *ctx, size_t saved)
{
    ctx->path_length = saved;
    ctx->path[saved] = '\0';
}

/* The full dotted path of @p key under the current path, for messages. */
static const char *full_path(const config_ctx_t *ctx, const char *key, char *buf, size_t size)
{
    int n = ctx->path_length == 0 ? snprintf(buf, size, "%s", key) : snprintf(buf, size, "%s.%s", ctx->path, key);
    if (n < 0 || (size_t)n >= size)
        buf[size - 1] = '\0'; /* a cut path still reads well in a message */
    return buf;
}

/* ---- problems ---- */

#define ERR(ctx, node, key, ...) \
    config_problem_at((ctx), CONFIG_SEV_ERROR, (node) ? (node)->line : 0, (node) ? (node)->column : 0, (key), __VA_ARGS__)
#define UNSUP(ctx, node, key, ...) \
    config_problem_at((ctx), CONFIG_SEV_UNSUPPORTED, (node) ? (node)->line : 0, (node) ? (node)->column : 0, (key), __VA_ARGS__)
#define WARN(ctx, node, key, ...) \
    config_problem_at((ctx), CONFIG_SEV_WARNING, (node) ? (node)->line : 0, (node) ? (node)->column : 0, (key), __VA_ARGS__)

/* A short description of a value for "got ..." in messages. */
static const char *describe(const node_t *n, char *buf, size_t size)
{
    switch (n->kind) {
    case J_NULL:
        return "null";
    case J_BOOL:
        return n->boolean ? "true" : "false";
    case J_NUMBER:
        snprintf(buf, size, "%.40s%s", n->text, n->text_length > 40 ? "..." : "");
        return buf;
    case J_STRING: {
        char shown[48];
        size_t len = n->text_length > 40 ? 40 : n->text_length;
        /* Cut on a character boundary so the message stays valid UTF-8. */
        while (len > 0 && len < n->text_length && ((unsigned char)n->text[len] & 0xC0) == 0x80)
            len--;
        memcpy(shown, n->text, len);
        shown[len] = '\0';
        zero_config_json_quote(shown, buf, size > 8 ? size - 4 : size);
        if (len < n->text_length) {
            size_t l = strlen(buf);
            if (l > 0 && l + 4 < size) {
                buf[l - 1] = '\0';
                strcat(buf, "...\"");
            }
        }
        return buf;
    }
    case J_ARRAY:
        return "an array";
    case J_OBJECT:
        return "an object";
    }
    return "a value";
}

#define DESCRIBE(n) describe((n), desc_buf_, sizeof(desc_buf_))

static bool is_auto(const node_t *n)
{
    return n->kind == J_STRING && strcmp(n->text, "auto") == 0;
}

/* ---- taking members ---- */

static node_t *take(node_t *obj, const char *key)
{
    node_t *n = zero_config_json_find(obj, key);
    if (n)
        n->used = true;
    return n;
}

/* A key DeepSpeed also accepts under a second name: both given is an error. */
static node_t *take_alias(config_ctx_t *ctx, node_t *obj, const char *key, const char *alias)
{
    node_t *a = take(obj, key), *b = take(obj, alias);
    if (a && b) {
        char other[CONFIG_PATH_MAX];
        config_problem_at(ctx, CONFIG_SEV_ERROR, b->key_line, b->key_column, alias,
                          "same setting as %s, which is also given; keep one", full_path(ctx, key, other, sizeof(other)));
    }
    return a ? a : b;
}

/* ---- conversions: on a bad value, record the problem and keep the default ---- */

static bool conv_bool(config_ctx_t *ctx, const node_t *n, bool *out)
{
    char desc_buf_[64];
    if (n == NULL || is_auto(n))
        return false;
    if (n->kind == J_BOOL) {
        *out = n->boolean;
        return true;
    }
    ERR(ctx, n, n->key, "expected true or false, got %s", DESCRIBE(n));
    return false;
}

static void range_text_u64(uint64_t min, uint64_t max, char *buf, size_t size)
{
    /* the type's own maximum goes unsaid; a tighter one (BATCH_MAX) is named */
    if (max == UINT64_MAX || max == U32_MAX_VALUE)
        snprintf(buf, size, "an integer >= %llu", (unsigned long long)min);
    else
        snprintf(buf, size, "an integer %llu..%llu", (unsigned long long)min, (unsigned long long)max);
}

/* Integers: written as integers, or as numbers with an integral value (5e8). */
static bool conv_u64(config_ctx_t *ctx, const node_t *n, uint64_t min, uint64_t max, uint64_t *out)
{
    char desc_buf_[64], range[64];
    uint64_t v = 0;
    bool ok = false;
    if (n == NULL || is_auto(n))
        return false;
    range_text_u64(min, max, range, sizeof(range));
    if (n->kind == J_NUMBER) {
        if (n->integral && n->text[0] != '-') {
            char *end;
            errno = 0;
            unsigned long long u = strtoull(n->text, &end, 10);
            ok = errno == 0 && *end == '\0';
            v = u;
        } else if (n->number == floor(n->number) && n->number >= 0 && n->number < 18446744073709551616.0) {
            v = (uint64_t)n->number;
            ok = true;
        } else if (n->integral && strcmp(n->text, "-0") == 0) {
            ok = true;
        }
    }
    if (!ok || v < min || v > max) {
        ERR(ctx, n, n->key, "expected %s, got %s", range, DESCRIBE(n));
        return false;
    }
    *out = v;
    return true;
}

static bool conv_u32(config_ctx_t *ctx, const node_t *n, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (!conv_u64(ctx, n, min, max, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

/* Signed integers (DeepSpeed's -1 sentinels). */
static bool conv_i64(config_ctx_t *ctx, const node_t *n, int64_t *out)
{
    char desc_buf_[64];
    if (n == NULL || is_auto(n))
        return false;
    if (n->kind == J_NUMBER && n->number == floor(n->number) && fabs(n->number) < 9.0e15) {
        *out = (int64_t)n->number;
        return true;
    }
    ERR(ctx, n, n->key, "expected an integer, got %s", DESCRIBE(n));
    return false;
}


static bool conv_double(config_ctx_t *ctx, const node_t *n, double min, double max, int flags, double *out)
{
    char desc_buf_[64], range[96], lo[32], hi[32];
    if (n == NULL || is_auto(n))
        return false;
    zero_config_json_format_double(min, lo, sizeof(lo));
    zero_config_json_format_double(max, hi, sizeof(hi));
    if ((flags & CONFIG_NO_MIN) && (flags & CONFIG_NO_MAX))
        snprintf(range, sizeof(range), "a number");
    else if (flags & CONFIG_NO_MAX)
        snprintf(range, sizeof(range), "a number %s %s", (flags & CONFIG_MIN_OPEN) ? ">" : ">=", lo);
    else
        snprintf(range, sizeof(range), "a number in %c%s, %s%c", (flags & CONFIG_MIN_OPEN) ? '(' : '[', lo, hi,
                 (flags & CONFIG_MAX_OPEN) ? ')' : ']');
    if (n->kind == J_NUMBER) {
        double v = n->number;
        bool ok = true;
        if (!(flags & CONFIG_NO_MIN))
            ok = ok && ((flags & CONFIG_MIN_OPEN) ? v > min : v >= min);
        if (!(flags & CONFIG_NO_MAX))
            ok = ok && ((flags & CONFIG_MAX_OPEN) ? v < max : v <= max);
        if (ok) {
            *out = v;
            return true;
        }
    }
    ERR(ctx, n, n->key, "expected %s, got %s", range, DESCRIBE(n));
    return false;
}

static bool conv_nonneg(config_ctx_t *ctx, const node_t *n, double *out)
{
    return conv_double(ctx, n, 0.0, 0.0, CONFIG_NO_MAX, out);
}

/* Names are matched without regard to case; the message lists the canonical ones. */
static bool conv_enum(config_ctx_t *ctx, const node_t *n, const config_enum_name_t *entries, int *out)
{
    char desc_buf_[64], list[256];
    size_t len = 0;
    if (n == NULL || is_auto(n))
        return false;
    if (n->kind == J_STRING) {
        for (const config_enum_name_t *e = entries; e->name; e++) {
            if (strcasecmp(e->name, n->text) == 0) {
                *out = e->value;
                return true;
            }
        }
    }
    list[0] = '\0';
    for (const config_enum_name_t *e = entries; e->name && len < sizeof(list); e++) {
        int w = snprintf(list + len, sizeof(list) - len, "%s\"%s\"", len ? ", " : "", e->name);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    ERR(ctx, n, n->key, "expected one of %s, got %s", list, DESCRIBE(n));
    return false;
}

/* A value that must be an object (or absent); NULL when it is not one. */
static node_t *conv_object(config_ctx_t *ctx, node_t *n)
{
    char desc_buf_[64];
    if (n == NULL)
        return NULL;
    if (n->kind == J_OBJECT)
        return n;
    ERR(ctx, n, n->key, "expected an object, got %s", DESCRIBE(n));
    return NULL;
}

static void ignored_add(config_ctx_t *ctx, const char *name)
{
    size_t add = strlen(name) + 2;
    char *grown;
    if (ctx->ignored && strstr(ctx->ignored, name))
        return;
    grown = zero_realloc(ctx->ignored, ctx->ignored_length + add + 1);
    if (grown == NULL) {
        ctx->out_of_memory = true;
        return;
    }
    snprintf(grown + ctx->ignored_length, add + 1, "%s%s", ctx->ignored_length ? ", " : "", name);
    ctx->ignored = grown;
    ctx->ignored_length = strlen(grown);
}

/* ---- the table pass: every row whose key follows the common pattern ---- */

static void store(zero_config_t *c, const config_key_t *r, const void *value, size_t size)
{
    if (r->stored && r->size == size)
        memcpy((char *)c + r->offset, value, size);
}

/* An implemented key (or a no-effect one, into a scratch value): convert, range-check, store. */
static void read_value(config_ctx_t *ctx, const config_key_t *r, const node_t *n)
{
    switch (r->type) {
    case CONFIG_BOOL: {
        bool v;
        if (conv_bool(ctx, n, &v))
            store(ctx->config, r, &v, sizeof(v));
        break;
    }
    case CONFIG_UINT: {
        uint64_t v;
        uint32_t v32;
        if (!conv_u64(ctx, n, r->imin, r->imax, &v))
            break;
        v32 = (uint32_t)v;
        if (r->size == sizeof(uint64_t))
            store(ctx->config, r, &v, sizeof(v));
        else
            store(ctx->config, r, &v32, sizeof(v32));
        break;
    }
    case CONFIG_INT: {
        int64_t v;
        conv_i64(ctx, n, &v); /* never stored: type-checked only */
        break;
    }
    case CONFIG_NUMBER: {
        double v;
        if (conv_double(ctx, n, r->dmin, r->dmax, (int)(r->flags & ~(unsigned)CONFIG_NULL_IS_ABSENT), &v))
            store(ctx->config, r, &v, sizeof(v));
        break;
    }
    case CONFIG_ENUM: {
        int v;
        if (conv_enum(ctx, n, r->names, &v))
            store(ctx->config, r, &v, sizeof(v));
        break;
    }
    default: break;
    }
}

/* A key DeepSpeed honours and libzero does not: only DeepSpeed's default (r->def) passes. */
static void read_default_only(config_ctx_t *ctx, const config_key_t *r, const node_t *n)
{
    char desc_buf_[64], shown[32];
    const char *hint_sep = r->hint ? "; " : "", *hint = r->hint ? r->hint : "";
    switch (r->type) {
    case CONFIG_BOOL: {
        bool allowed = strcmp(r->def, "true") == 0, v = allowed;
        if (conv_bool(ctx, n, &v) && v != allowed)
            UNSUP(ctx, n, r->key, "%s is not implemented by libzero (only %s is accepted%s%s)", r->doc, r->def,
                  hint_sep, hint);
        break;
    }
    case CONFIG_INT: {
        int64_t allowed = strtoll(r->def, NULL, 10), v = allowed;
        if (conv_i64(ctx, n, &v) && v != allowed)
            UNSUP(ctx, n, r->key, "%s is not implemented by libzero (only %s is accepted%s%s)", r->doc, r->def,
                  hint_sep, hint);
        break;
    }
    case CONFIG_NUMBER: {
        double allowed = strtod(r->def, NULL);
        if (is_auto(n) || n->kind == J_NULL)
            break;
        if (n->kind != J_NUMBER) {
            ERR(ctx, n, r->key, "expected a number, got %s", DESCRIBE(n));
            break;
        }
        if (n->number != allowed) {
            zero_config_json_format_double(allowed, shown, sizeof(shown));
            UNSUP(ctx, n, r->key, "%s is not implemented by libzero (only %s is accepted%s%s)", r->doc, shown,
                  hint_sep, hint);
        }
        break;
    }
    case CONFIG_NULL:
        if (n->kind != J_NULL && !is_auto(n))
            UNSUP(ctx, n, r->key, "%s is not implemented by libzero (leave it out or null)", r->doc);
        break;
    default: break;
    }
}

/* Rows whose key has a rule of its own: their block's code reads them after this pass. */
static bool read_by_code(const config_key_t *r)
{
    return r->type == CONFIG_CUSTOM || r->type == CONFIG_OBJECT || r->cls == CONFIG_DEPRECATED ||
           (r->flags & CONFIG_READ_BY_CODE);
}

/*
 * The table pass over one block: takes every row's key (and its alias) from
 * @p obj and handles it by its class. Rows read by code are left to the block's
 * code; finish_rows() then reports what no row took.
 */
static void read_rows(config_ctx_t *ctx, node_t *obj, const config_key_t *rows)
{
    for (const config_key_t *r = rows; r->key; r++) {
        node_t *n;
        if (read_by_code(r))
            continue;
        n = r->alias ? take_alias(ctx, obj, r->key, r->alias) : take(obj, r->key);
        if (n == NULL || (n->kind == J_NULL && (r->flags & CONFIG_NULL_IS_ABSENT)))
            continue;
        switch (r->cls) {
        case CONFIG_IMPLEMENTED:
            read_value(ctx, r, n);
            break;
        case CONFIG_NO_EFFECT:
            /* type-checked, then dropped: read into a scratch config so nothing is stored */
            if (n->kind != J_NULL) {
                config_key_t scratch = *r;
                scratch.stored = false;
                read_value(ctx, &scratch, n);
            }
            break;
        case CONFIG_DEFAULT_ONLY:
            read_default_only(ctx, r, n);
            break;
        case CONFIG_OUT_OF_SCOPE: {
            char where[CONFIG_PATH_MAX];
            ignored_add(ctx, full_path(ctx, r->key, where, sizeof(where)));
            break;
        }
        case CONFIG_DEPRECATED: break;
        }
    }
}

/* ---- unknown keys ---- */

size_t config_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t *base, *row0, *row1, *row2, d;
    if (la > 128 || lb > 128)
        return (size_t)-1;
    base = zero_calloc(3 * (lb + 1), sizeof(size_t));
    if (base == NULL)
        return (size_t)-1;
    row0 = base;
    row1 = row0 + (lb + 1);
    row2 = row1 + (lb + 1);
    /* row2: previous-previous, row0: previous, row1: current (rotated below). */
    for (size_t j = 0; j <= lb; j++)
        row0[j] = j;
    for (size_t i = 1; i <= la; i++) {
        row1[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = row0[j] + 1;
            if (row1[j - 1] + 1 < best)
                best = row1[j - 1] + 1;
            if (row0[j - 1] + cost < best)
                best = row0[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && row2[j - 2] + 1 < best)
                best = row2[j - 2] + 1;
            row1[j] = best;
        }
        size_t *t = row2;
        row2 = row0;
        row0 = row1;
        row1 = t;
    }
    d = row0[lb];
    zero_free(base);
    return d;
}

static void consider(const char *key, const char *candidate, size_t len, size_t limit, const char **best,
                     size_t *best_d)
{
    size_t klen = strlen(candidate), d;
    /* Lengths further apart than the limit cannot be within it: skip the O(n*m) work. */
    if ((klen > len ? klen - len : len - klen) > limit)
        return;
    d = config_edit_distance(key, candidate);
    if (strcasecmp(key, candidate) == 0)
        d = 0;
    if (d < *best_d) {
        *best_d = d;
        *best = candidate;
    }
}

/* The nearest of @p known (NULL-terminated) within a third of the key's length (1 to 3 edits). */
static const char *nearest(const char *key, const char *const *known)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1, len = strlen(key);
    size_t limit = len / 3 < 1 ? 1 : (len / 3 > 3 ? 3 : len / 3);
    for (const char *const *k = known; *k; k++)
        consider(key, *k, len, limit, &best, &best_d);
    return best_d <= limit ? best : NULL;
}

/* Where a key lives when it was written in the wrong block. */
typedef struct key_home {
    const char *key;
    const char *path;
} key_home_t;

static const key_home_t key_homes[] = {
    {"stage", "zero_optimization.stage"},
    {"offload_optimizer", "zero_optimization.offload_optimizer"},
    {"offload_param", "zero_optimization.offload_param"},
    {"reduce_bucket_size", "zero_optimization.reduce_bucket_size"},
    {"allgather_bucket_size", "zero_optimization.allgather_bucket_size"},
    {"overlap_comm", "zero_optimization.overlap_comm"},
    {"contiguous_gradients", "zero_optimization.contiguous_gradients"},
    {"reduce_scatter", "zero_optimization.reduce_scatter"},
    {"sub_group_size", "zero_optimization.sub_group_size"},
    {"stage3_prefetch_bucket_size", "zero_optimization.stage3_prefetch_bucket_size"},
    {"stage3_param_persistence_threshold", "zero_optimization.stage3_param_persistence_threshold"},
    {"stage3_max_live_parameters", "zero_optimization.stage3_max_live_parameters"},
    {"stage3_max_reuse_distance", "zero_optimization.stage3_max_reuse_distance"},
    {"lr", "optimizer.params.lr"},
    {"betas", "optimizer.params.betas"},
    {"eps", "optimizer.params.eps"},
    {"weight_decay", "optimizer.params.weight_decay"},
    {"loss_scale", "fp16.loss_scale"},
    {"initial_scale_power", "fp16.initial_scale_power"},
    {"loss_scale_window", "fp16.loss_scale_window"},
    {"hysteresis", "fp16.hysteresis"},
    {"min_loss_scale", "fp16.min_loss_scale"},
    {"tag_validation", "checkpoint.tag_validation"},
    {"nvme_path", "zero_optimization.offload_optimizer.nvme_path"},
    {"block_size", "aio.block_size"},
    {"queue_depth", "aio.queue_depth"},
    {"warmup_num_steps", "scheduler.params.warmup_num_steps"},
    {"warmup_max_lr", "scheduler.params.warmup_max_lr"},
    {"warmup_min_lr", "scheduler.params.warmup_min_lr"},
    {"total_num_steps", "scheduler.params.total_num_steps"},
    {"train_batch_size", "train_batch_size"},
    {"train_micro_batch_size_per_gpu", "train_micro_batch_size_per_gpu"},
    {"gradient_accumulation_steps", "gradient_accumulation_steps"},
    {"gradient_clipping", "gradient_clipping"},
    {NULL, NULL},
};

/* Reports every member of @p obj that no handler took, suggesting the nearest known key. */
/* The nearest key or alias of @p rows, in row order (ties go to the earlier one). */
static const char *nearest_row(const char *key, const config_key_t *rows)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1, len = strlen(key);
    size_t limit = len / 3 < 1 ? 1 : (len / 3 > 3 ? 3 : len / 3);
    for (const config_key_t *r = rows; r->key; r++) {
        consider(key, r->key, len, limit, &best, &best_d);
        if (r->alias)
            consider(key, r->alias, len, limit, &best, &best_d);
    }
    return best_d <= limit ? best : NULL;
}

static void finish_rows(config_ctx_t *ctx, node_t *obj, const config_key_t *rows)
{
    for (node_t *m = obj->first; m; m = m->next) {
        char suggestion[CONFIG_PATH_MAX];
        const char *near;
        if (m->used)
            continue;
        m->used = true;
        /* Past the problem cap nothing more is listed: spare the suggestion work. */
        near = ctx->problem_count < ZERO_CONFIG_MAX_PROBLEMS ? nearest_row(m->key, rows) : NULL;
        if (near) {
            config_problem_at(ctx, CONFIG_SEV_ERROR, m->key_line, m->key_column, m->key,
                              "unknown key; did you mean \"%s\"?", full_path(ctx, near, suggestion, sizeof(suggestion)));
            continue;
        }
        for (const key_home_t *h = key_homes; h->key; h++) {
            if (strcmp(h->key, m->key) == 0 && strcmp(h->path, full_path(ctx, m->key, suggestion, sizeof(suggestion))) != 0) {
                near = h->path;
                break;
            }
        }
        if (near)
            config_problem_at(ctx, CONFIG_SEV_ERROR, m->key_line, m->key_column, m->key,
                              "unknown key here; it belongs at \"%s\"", near);
        else
            config_problem_at(ctx, CONFIG_SEV_ERROR, m->key_line, m->key_column, m->key,
                              "unknown key (docs/config.md lists the keys of %s)",
                              ctx->path_length ? ctx->path : "the top level");
    }
}

/* A block whose keys are all plain rows: the table pass, then the unknown keys. */
static void walk_rows_block(config_ctx_t *ctx, node_t *n, const char *name, const config_key_t *rows)
{
    size_t saved;
    if (n == NULL || conv_object(ctx, n) == NULL)
        return;
    saved = path_push(ctx, name);
    read_rows(ctx, n, rows);
    finish_rows(ctx, n, rows);
    path_pop(ctx, saved);
}

/* ---- duplicate keys (DeepSpeed rejects them too) ---- */

typedef struct member_ref {
    const node_t *node;
    size_t index;
} member_ref_t;

static int member_ref_cmp(const void *a, const void *b)
{
    const member_ref_t *x = a, *y = b;
    int c = strcmp(x->node->key, y->node->key);
    if (c != 0)
        return c;
    return x->index < y->index ? -1 : (x->index > y->index);
}

static void check_duplicates(config_ctx_t *ctx, node_t *n)
{
    if (n->kind == J_OBJECT && n->count > 1) {
        member_ref_t *refs = zero_malloc(n->count * sizeof(*refs));
        size_t i = 0;
        if (refs == NULL) {
            ctx->out_of_memory = true;
            return;
        }
        for (node_t *m = n->first; m; m = m->next, i++) {
            refs[i].node = m;
            refs[i].index = i;
        }
        qsort(refs, n->count, sizeof(*refs), member_ref_cmp);
        for (i = 1; i < n->count; i++) {
            if (strcmp(refs[i].node->key, refs[i - 1].node->key) == 0) {
                size_t first = i - 1;
                while (first > 0 && strcmp(refs[first - 1].node->key, refs[i].node->key) == 0)
                    first--;
                node_t *dup = (node_t *)refs[i].node;
                dup->used = true; /* reported here, not again as unknown */
                config_problem_at(ctx, CONFIG_SEV_ERROR, dup->key_line, dup->key_column, dup->key,
                                  "duplicate key (first given at line %u, column %u)",
                                  refs[first].node->key_line, refs[first].node->key_column);
            }
        }
        zero_free(refs);
    }
    if (n->kind == J_OBJECT || n->kind == J_ARRAY) {
        size_t i = 0;
        for (node_t *m = n->first; m; m = m->next, i++) {
            char element[32];
            size_t saved;
            if (n->kind == J_OBJECT) {
                saved = path_push(ctx, m->key);
            } else {
                /* "[i]" attaches to the previous component without a dot. */
                saved = ctx->path_length;
                snprintf(element, sizeof(element), "[%zu]", i);
                if (saved + strlen(element) < CONFIG_PATH_MAX) {
                    memcpy(ctx->path + saved, element, strlen(element) + 1);
                    ctx->path_length += strlen(element);
                }
            }
            check_duplicates(ctx, m);
            path_pop(ctx, saved);
        }
    }
}

/* ---- defaults ---- */

static void set_defaults(zero_config_t *c)
{
    memset(c, 0, sizeof(*c));
    for (const config_block_t *b = config_blocks; b->rows; b++)
        config_keys_apply_defaults(c, b->rows);
    /* Without an optimizer block the optimizer fields hold Adam's defaults (the
     * tables of the other types, applied above too, differ only for Adagrad). */
    config_keys_apply_defaults(c, config_adam_keys);

    /* The defaults that depend on other keys (rows marked def_by_code; zero from
     * the memset otherwise: no optimizer or scheduler, overlap_comm false below
     * stage 3, batch triad unknown). */
    c->precision = ZERO_FP32;
    c->scheduler.cycle_second_step_size = c->scheduler.cycle_first_step_size;
    c->scheduler.cycle_second_stair_count = c->scheduler.cycle_first_stair_count;
}

/* ---- zero_optimization ---- */

/* offload_optimizer.servers (libzero extension): a non-empty array of "host:port" strings. */
static void read_servers(config_ctx_t *ctx, node_t *obj, zero_config_offload_optimizer_t *o)
{
    char desc_buf_[64];
    node_t *n = take(obj, "servers");
    size_t i = 0;
    if (n == NULL || n->kind == J_NULL || is_auto(n))
        return;
    if (n->kind != J_ARRAY || n->count == 0 || n->count > 4096) {
        ERR(ctx, n, "servers", "expected an array of 1 to 4096 \"host:port\" strings, got %s", DESCRIBE(n));
        return;
    }
    o->servers = zero_calloc(n->count, sizeof(char *));
    if (o->servers == NULL) {
        ctx->out_of_memory = true;
        return;
    }
    for (node_t *e = n->first; e; e = e->next, i++) {
        const char *colon = e->kind == J_STRING ? strrchr(e->text, ':') : NULL;
        char key[32];
        snprintf(key, sizeof(key), "servers[%zu]", i);
        if (colon == NULL || colon == e->text || colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
            ERR(ctx, e, key, "expected \"host:port\", got %s", DESCRIBE(e));
            continue;
        }
        o->servers[o->num_servers] = zero_strdup(e->text);
        if (o->servers[o->num_servers] == NULL)
            ctx->out_of_memory = true;
        else
            o->num_servers++;
    }
}

/* ZERO_OPTD_SERVERS, set by `zero-launch --optd` for the servers it started:
 * the servers of "remote" when the config omits `servers` (or says "auto").
 * A list in the config wins; a different one in the variable is warned about,
 * since the servers the launcher started would then sit idle. */
static void servers_from_launcher(config_ctx_t *ctx, node_t *obj, zero_config_offload_optimizer_t *o)
{
    const char *list = getenv("ZERO_OPTD_SERVERS"), *at;
    size_t count = 1, i = 0;
    if (list == NULL || list[0] == '\0')
        return;
    if (o->num_servers > 0) {
        size_t len = 0;
        bool same = true;
        for (uint32_t k = 0; k < o->num_servers && same; k++) {
            size_t n = strlen(o->servers[k]);
            same = strncmp(list + len, o->servers[k], n) == 0 &&
                   (list[len + n] == (k + 1 < o->num_servers ? ',' : '\0'));
            len += n + 1;
        }
        if (!same)
            WARN(ctx, obj, "servers", "the config's list wins over ZERO_OPTD_SERVERS=%s (the zero-optd servers "
                 "zero-launch --optd started for this job), which stay unused", list);
        return;
    }
    for (at = list; *at; at++)
        count += *at == ',';
    if (count > 4096) {
        ERR(ctx, obj, "servers", "ZERO_OPTD_SERVERS lists more than 4096 servers");
        return;
    }
    o->servers = zero_calloc(count, sizeof(char *));
    if (o->servers == NULL) {
        ctx->out_of_memory = true;
        return;
    }
    for (at = list; i < count; i++) {
        const char *end = strchr(at, ',');
        size_t len = end ? (size_t)(end - at) : strlen(at);
        const char *colon = memrchr(at, ':', len);
        if (colon == NULL || colon == at || colon + 1 == at + len ||
            strspn(colon + 1, "0123456789") < (size_t)(at + len - colon - 1)) {
            ERR(ctx, obj, "servers", "ZERO_OPTD_SERVERS: entry %zu, \"%.*s\", is not \"host:port\"", i, (int)len, at);
            return;
        }
        o->servers[o->num_servers] = zero_strndup(at, len);
        if (o->servers[o->num_servers] == NULL) {
            ctx->out_of_memory = true;
            return;
        }
        o->num_servers++;
        at = end ? end + 1 : at + len;
    }
}

static void read_offload_device(config_ctx_t *ctx, node_t *obj, zero_offload_device_t *out)
{
    node_t *n = take(obj, "device");
    int v = (int)*out;
    if (n && n->kind == J_STRING && strcasecmp(n->text, "hpu") == 0) {
        UNSUP(ctx, n, "device", "offload to \"hpu\" (Gaudi) is not implemented by libzero");
        return;
    }
    if (conv_enum(ctx, n, config_offload_device_names, &v))
        *out = (zero_offload_device_t)v;
}

/* Returns whether a bad nvme_path was reported (so "required" is not said as well). */
static bool read_nvme_path(config_ctx_t *ctx, node_t *obj, char **out)
{
    char desc_buf_[64];
    node_t *n = take(obj, "nvme_path");
    if (n == NULL || n->kind == J_NULL || is_auto(n))
        return false;
    if (n->kind != J_STRING || n->text_length == 0) {
        ERR(ctx, n, "nvme_path", "expected a non-empty path string, got %s", DESCRIBE(n));
        return true;
    }
    zero_free(*out);
    *out = zero_strdup(n->text);
    if (*out == NULL)
        ctx->out_of_memory = true;
    return false;
}

static void walk_offload_optimizer(config_ctx_t *ctx, node_t *n, zero_config_offload_optimizer_t *o)
{
    node_t *obj;
    size_t saved;
    bool bad_path;
    if (n == NULL || n->kind == J_NULL)
        return;
    obj = conv_object(ctx, n);
    if (obj == NULL)
        return;
    saved = path_push(ctx, "offload_optimizer");
    read_rows(ctx, obj, config_offload_optimizer_keys);
    read_offload_device(ctx, obj, &o->device);
    bad_path = read_nvme_path(ctx, obj, &o->nvme_path);
    read_servers(ctx, obj, o);
    if (o->device == ZERO_OFFLOAD_REMOTE)
        servers_from_launcher(ctx, obj, o);
    finish_rows(ctx, obj, config_offload_optimizer_keys);
    if (o->device == ZERO_OFFLOAD_NVME && o->nvme_path == NULL && !bad_path)
        ERR(ctx, obj, "nvme_path", "required when device is \"nvme\"");
    if (o->device == ZERO_OFFLOAD_REMOTE && o->num_servers == 0)
        ERR(ctx, obj, "servers", "required when device is \"remote\" (a libzero extension: the zero-optd servers; "
            "or start them with zero-launch --optd, which sets ZERO_OPTD_SERVERS)");
    path_pop(ctx, saved);
}

static void walk_offload_param(config_ctx_t *ctx, node_t *n, zero_config_offload_param_t *o)
{
    node_t *obj;
    size_t saved;
    bool bad_path;
    if (n == NULL || n->kind == J_NULL)
        return;
    obj = conv_object(ctx, n);
    if (obj == NULL)
        return;
    saved = path_push(ctx, "offload_param");
    read_rows(ctx, obj, config_offload_param_keys);
    read_offload_device(ctx, obj, &o->device);
    if (o->device == ZERO_OFFLOAD_REMOTE) {
        ERR(ctx, obj, "device", "\"remote\" is for offload_optimizer only (parameters stay with the ranks)");
        o->device = ZERO_OFFLOAD_NONE;
    }
    bad_path = read_nvme_path(ctx, obj, &o->nvme_path);
    finish_rows(ctx, obj, config_offload_param_keys);
    if (o->device == ZERO_OFFLOAD_NVME && o->nvme_path == NULL && !bad_path)
        ERR(ctx, obj, "nvme_path", "required when device is \"nvme\"");
    path_pop(ctx, saved);
}

/* DeepSpeed's cpu_offload / cpu_offload_param: true means an offload block with device "cpu". */
static void deprecated_cpu_offload(config_ctx_t *ctx, node_t *obj, const char *key, const node_t *block,
                                   zero_offload_device_t *device, const char *replacement)
{
    node_t *n = take(obj, key);
    bool v = false;
    if (n == NULL || !conv_bool(ctx, n, &v))
        return;
    WARN(ctx, n, key, "deprecated; write \"%s\": {\"device\": \"cpu\"} instead", replacement);
    if (!v)
        return;
    if (block != NULL && block->kind != J_NULL) {
        char other[CONFIG_PATH_MAX];
        ERR(ctx, n, key, "conflicts with %s, which is also given; keep only %s",
            full_path(ctx, replacement, other, sizeof(other)), replacement);
        return;
    }
    *device = ZERO_OFFLOAD_CPU;
}

static void walk_zero(config_ctx_t *ctx, node_t *root, node_t *n)
{
    zero_config_zero_t *z = &ctx->config->zero_optimization;
    node_t *obj, *stage, *overlap, *opt_block, *param_block, *pin, *gfp16;
    uint64_t stage_value = 0;
    bool pin_value = true, stage_bad = false;
    size_t saved;
    char desc_buf_[64];

    if (n == NULL)
        return;
    if (n->kind == J_BOOL) {
        /* DeepSpeed's oldest form: "zero_optimization": true means stage 1. */
        node_t *ag = take(root, "allgather_size");
        WARN(ctx, n, "zero_optimization", "a boolean here is DeepSpeed's deprecated form; write {\"stage\": %d}",
             n->boolean ? 1 : 0);
        z->stage = n->boolean ? 1 : 0;
        if (ag)
            conv_u64(ctx, ag, 0, UINT64_MAX, &z->allgather_bucket_size);
        return;
    }
    if (n->kind != J_OBJECT) {
        ERR(ctx, n, "zero_optimization", "expected an object, got %s", DESCRIBE(n));
        return;
    }
    obj = n;
    saved = path_push(ctx, "zero_optimization");
    read_rows(ctx, obj, config_zero_keys);

    stage = take(obj, "stage");
    if (conv_u64(ctx, stage, 0, 3, &stage_value))
        z->stage = (int)stage_value;
    else if (stage && !is_auto(stage))
        stage_bad = true; /* reported; the checks that need a stage would only repeat it */
    /* DeepSpeed: null (or absent) means "overlap at stage 3". */
    z->overlap_comm = z->stage == 3;
    overlap = take(obj, "overlap_comm");
    if (overlap && overlap->kind != J_NULL)
        conv_bool(ctx, overlap, &z->overlap_comm);
    gfp16 = take(obj, "stage3_gather_fp16_weights_on_model_save");
    if (gfp16) {
        node_t *g16 = zero_config_json_find(obj, "stage3_gather_16bit_weights_on_model_save");
        if (g16 == NULL)
            g16 = zero_config_json_find(obj, "gather_16bit_weights_on_model_save");
        WARN(ctx, gfp16, gfp16->key, "deprecated; write stage3_gather_16bit_weights_on_model_save instead");
        if (g16)
            ERR(ctx, gfp16, gfp16->key, "same setting as %s, which is also given; keep one", g16->key);
        else
            conv_bool(ctx, gfp16, &z->stage3_gather_16bit_weights_on_model_save);
    }

    opt_block = take(obj, "offload_optimizer");
    param_block = take(obj, "offload_param");
    walk_offload_optimizer(ctx, opt_block, &z->offload_optimizer);
    walk_offload_param(ctx, param_block, &z->offload_param);

    /* Deprecated spellings DeepSpeed still maps. */
    deprecated_cpu_offload(ctx, obj, "cpu_offload", opt_block, &z->offload_optimizer.device, "offload_optimizer");
    deprecated_cpu_offload(ctx, obj, "cpu_offload_param", param_block, &z->offload_param.device, "offload_param");
    pin = take(obj, "cpu_offload_use_pin_memory");
    if (pin && conv_bool(ctx, pin, &pin_value)) {
        WARN(ctx, pin, pin->key, "deprecated; write pin_memory inside offload_optimizer / offload_param instead");
        /* It applies to the offloads the deprecated keys created. */
        if (opt_block == NULL)
            z->offload_optimizer.pin_memory = pin_value;
        if (param_block == NULL)
            z->offload_param.pin_memory = pin_value;
    }
    finish_rows(ctx, obj, config_zero_keys);

    if (z->zero_hpz_partition_size > 1 && ctx->world_size > 0 && ctx->world_size % z->zero_hpz_partition_size != 0) {
        node_t *hpz = zero_config_json_find(obj, "zero_hpz_partition_size");
        ERR(ctx, hpz != NULL ? hpz : obj, "zero_hpz_partition_size",
            "%llu does not divide the world size %u (hpZ groups are that many consecutive ranks)",
            (unsigned long long)z->zero_hpz_partition_size, (unsigned)ctx->world_size);
    }
    /* Options that need a stage. */
    if (z->offload_param.device != ZERO_OFFLOAD_NONE && z->stage != 3 && !stage_bad) {
        /* DeepSpeed hands offload_param to its stage-3 optimizer only and
         * ignores it below; so does libzero, saying so. */
        node_t *at = param_block ? param_block : obj;
        WARN(ctx, at, param_block ? "offload_param" : "cpu_offload_param",
             "ignored: parameter offload moves stage-3 parameter shards (zero_optimization.stage is %d; DeepSpeed "
             "ignores it below stage 3 too)", z->stage);
        z->offload_param.device = ZERO_OFFLOAD_NONE;
    }
    if (z->offload_optimizer.device != ZERO_OFFLOAD_NONE && z->stage == 0 && !stage_bad) {
        node_t *at = opt_block ? opt_block : obj;
        ERR(ctx, at, opt_block ? "offload_optimizer" : "cpu_offload",
            "optimizer offload needs stage 1, 2 or 3 (zero_optimization.stage is 0)");
    }
    path_pop(ctx, saved);
}

/* ---- optimizer ---- */

static const config_enum_name_t optimizer_types[] = {
    {"Adam", ZERO_OPTIMIZER_ADAM, false}, {"AdamW", ZERO_OPTIMIZER_ADAMW, false}, {"SGD", ZERO_OPTIMIZER_SGD, false},
    {"Adagrad", ZERO_OPTIMIZER_ADAGRAD, false}, {"Lamb", ZERO_OPTIMIZER_LAMB, false},
    {"Lion", ZERO_OPTIMIZER_LION, false}, {NULL, 0, false}};

/* DeepSpeed (and torch.optim, which DeepSpeed falls back to) optimizers libzero does not implement. */
static const char *const unsupported_optimizers[] = {
    "OneBitAdam", "ZeroOneAdam", "OneBitLamb", "MuAdam", "MuAdamW", "MuSGD", "Muon", "RMSprop", "Adadelta",
    "Adamax", "NAdam", "RAdam", "ASGD", "Rprop", "LBFGS", "SparseAdam", "Adafactor", NULL};

static const char *const optimizer_type_names[] = {"Adam", "AdamW", "SGD", "Adagrad", "Lamb", "Lion",
                                                   "OneBitAdam", "ZeroOneAdam", "OneBitLamb", NULL};

static void read_betas(config_ctx_t *ctx, node_t *obj, double betas[2])
{
    char desc_buf_[64];
    node_t *n = take(obj, "betas");
    double v[2] = {betas[0], betas[1]};
    bool ok = true;
    size_t i = 0;
    if (n == NULL || is_auto(n))
        return;
    if (n->kind != J_ARRAY || n->count != 2) {
        ERR(ctx, n, "betas", "expected an array of two numbers in [0, 1), got %s", DESCRIBE(n));
        return;
    }
    for (node_t *e = n->first; e; e = e->next, i++) {
        char key[16];
        snprintf(key, sizeof(key), "betas[%zu]", i);
        if (e->kind != J_NUMBER || !(e->number >= 0.0 && e->number < 1.0)) {
            ERR(ctx, e, key, "expected a number in [0, 1), got %s", DESCRIBE(e));
            ok = false;
        } else {
            v[i] = e->number;
        }
    }
    if (ok) {
        betas[0] = v[0];
        betas[1] = v[1];
    }
}

static void walk_optimizer_params(config_ctx_t *ctx, node_t *obj, zero_config_optimizer_t *o)
{
    const config_key_t *rows = config_optimizer_params_keys(o->type);
    node_t *n, *wmode, *nesterov;
    bool w_mode = true;

    read_rows(ctx, obj, rows);
    n = take(obj, "max_grad_norm");
    if (n)
        ERR(ctx, n, "max_grad_norm", "not an optimizer parameter in DeepSpeed; use the top-level gradient_clipping");
    switch (o->type) {
    case ZERO_OPTIMIZER_ADAM:
    case ZERO_OPTIMIZER_ADAMW:
        read_betas(ctx, obj, o->betas);
        wmode = take(obj, "adam_w_mode");
        if (conv_bool(ctx, wmode, &w_mode) && !w_mode && o->type == ZERO_OPTIMIZER_ADAMW)
            ERR(ctx, wmode, "adam_w_mode", "false contradicts type \"AdamW\"; use type \"Adam\" for L2 weight decay");
        o->adam_w_mode = o->type == ZERO_OPTIMIZER_ADAMW ? true : w_mode;
        break;
    case ZERO_OPTIMIZER_LAMB:
        read_betas(ctx, obj, o->betas);
        if (o->min_coeff > o->max_coeff)
            ERR(ctx, obj, "min_coeff", "must not exceed max_coeff");
        break;
    case ZERO_OPTIMIZER_LION:
        read_betas(ctx, obj, o->betas);
        break;
    case ZERO_OPTIMIZER_SGD:
        nesterov = zero_config_json_find(obj, "nesterov");
        if (o->nesterov && (o->momentum <= 0.0 || o->dampening != 0.0))
            ERR(ctx, nesterov, "nesterov", "needs momentum > 0 and dampening 0");
        break;
    case ZERO_OPTIMIZER_ADAGRAD:
    case ZERO_OPTIMIZER_NONE:
        break;
    }
    finish_rows(ctx, obj, rows);
}

/* A parameter group's name: it is written into checkpoints and log lines, so a plain token. */
static bool param_group_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > ZERO_CONFIG_PARAM_GROUP_NAME_MAX || strcmp(name, "default") == 0)
        return false;
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '.' && *c != '-')
            return false;
    return true;
}

/*
 * optimizer.param_groups (libzero extension): an object of named groups, each
 * an object of optimizer.params keys that override optimizer.params for the
 * parameters registered into it. Each entry is walked by the same rows and
 * checks as optimizer.params, on a scratch copy of the config that starts
 * from the parsed optimizer, so a group holds optimizer.params with its own
 * keys applied and an unknown or misspelt key is reported at its path.
 */
static void walk_param_groups(config_ctx_t *ctx, node_t *n)
{
    zero_config_t *c = ctx->config;
    node_t *obj = conv_object(ctx, n);
    size_t saved, count = 0;
    char desc_buf_[64];
    if (obj == NULL)
        return;
    for (node_t *g = obj->first; g; g = g->next)
        count++;
    if (count == 0)
        return;
    if (count + 1 > ZERO_CONFIG_MAX_PARAM_GROUPS) {
        ERR(ctx, obj, "param_groups", "%zu groups; at most %d besides \"default\"", count,
            ZERO_CONFIG_MAX_PARAM_GROUPS - 1);
        return;
    }
    c->param_groups = zero_calloc(count, sizeof(*c->param_groups));
    if (c->param_groups == NULL) {
        ctx->out_of_memory = true;
        return;
    }
    saved = path_push(ctx, "param_groups");
    for (node_t *g = obj->first; g; g = g->next) {
        zero_config_param_group_t *pg = &c->param_groups[c->num_param_groups];
        zero_config_t scratch = *c;
        node_t *gobj;
        size_t s2;
        bool duplicate = false;
        for (uint32_t k = 0; k < c->num_param_groups; k++)
            duplicate = duplicate || strcmp(c->param_groups[k].name, g->key) == 0;
        if (!param_group_name_ok(g->key) || duplicate) {
            ERR(ctx, g, g->key, "%s: a group name is 1-%d characters of A-Z a-z 0-9 _ . -, unique, and not "
                "\"default\" (group 0, optimizer.params itself)", duplicate ? "a second group of this name" :
                "not a group name", ZERO_CONFIG_PARAM_GROUP_NAME_MAX);
            continue;
        }
        gobj = conv_object(ctx, g);
        if (gobj == NULL)
            continue;
        s2 = path_push(ctx, g->key);
        ctx->config = &scratch;
        walk_optimizer_params(ctx, gobj, &scratch.optimizer);
        ctx->config = c;
        /* adam_w_mode is read by code whose default is true: a group without it keeps optimizer.params' */
        if (zero_config_json_find(gobj, "adam_w_mode") == NULL)
            scratch.optimizer.adam_w_mode = c->optimizer.adam_w_mode;
        path_pop(ctx, s2);
        pg->name = zero_strdup(g->key);
        if (pg->name == NULL) {
            ctx->out_of_memory = true;
            break;
        }
        pg->optimizer = scratch.optimizer;
        c->num_param_groups++;
    }
    path_pop(ctx, saved);
    (void)desc_buf_;
}

static void walk_optimizer(config_ctx_t *ctx, node_t *n)
{
    zero_config_optimizer_t *o = &ctx->config->optimizer;
    node_t *obj = conv_object(ctx, n), *type, *params, *groups;
    size_t saved;
    char desc_buf_[64];
    int t = 0;
    if (obj == NULL)
        return;
    saved = path_push(ctx, "optimizer");
    type = take(obj, "type");
    params = take(obj, "params");
    groups = take(obj, "param_groups");
    read_rows(ctx, obj, config_optimizer_keys);
    finish_rows(ctx, obj, config_optimizer_keys);
    if (type == NULL) {
        ERR(ctx, obj, "type", "required (Adam, AdamW, SGD, Adagrad, Lamb or Lion)");
    } else if (type->kind != J_STRING || is_auto(type)) {
        ERR(ctx, type, "type", "expected an optimizer name (Adam, AdamW, SGD, Adagrad, Lamb or Lion), got %s",
            DESCRIBE(type));
    } else {
        const config_enum_name_t *e;
        for (e = optimizer_types; e->name; e++)
            if (strcasecmp(e->name, type->text) == 0)
                break;
        if (e->name) {
            t = e->value;
        } else {
            bool known_elsewhere = false;
            for (const char *const *u = unsupported_optimizers; *u; u++)
                known_elsewhere = known_elsewhere || strcasecmp(*u, type->text) == 0;
            if (known_elsewhere) {
                UNSUP(ctx, type, "type", "optimizer %s is not implemented by libzero (Adam, AdamW, SGD, Adagrad, "
                      "Lamb and Lion are)", DESCRIBE(type));
            } else {
                const char *near = nearest(type->text, optimizer_type_names);
                if (near)
                    ERR(ctx, type, "type", "unknown optimizer %s; did you mean \"%s\"?", DESCRIBE(type), near);
                else
                    ERR(ctx, type, "type", "unknown optimizer %s (Adam, AdamW, SGD, Adagrad, Lamb or Lion)",
                        DESCRIBE(type));
            }
        }
    }
    if (t != 0) {
        o->type = (zero_optimizer_type_t)t;
        /* The type's own defaults (Adagrad's lr and eps differ) before the params override them. */
        config_keys_apply_defaults(ctx->config, config_optimizer_params_keys(o->type));
        if (params && params->kind != J_NULL) {
            node_t *pobj = conv_object(ctx, params);
            if (pobj) {
                size_t s2 = path_push(ctx, "params");
                walk_optimizer_params(ctx, pobj, o);
                path_pop(ctx, s2);
            }
        } else {
            o->adam_w_mode = true;
        }
        if (groups && groups->kind != J_NULL)
            walk_param_groups(ctx, groups);
    }
    path_pop(ctx, saved);
}

/* ---- scheduler ---- */

static const config_enum_name_t scheduler_types[] = {
    {"WarmupLR", ZERO_SCHEDULER_WARMUP_LR, false}, {"WarmupDecayLR", ZERO_SCHEDULER_WARMUP_DECAY_LR, false},
    {"WarmupCosineLR", ZERO_SCHEDULER_WARMUP_COSINE_LR, false}, {"OneCycle", ZERO_SCHEDULER_ONE_CYCLE, false},
    {"LRRangeTest", ZERO_SCHEDULER_LR_RANGE_TEST, false}, {NULL, 0, false}};

static const char *const scheduler_type_names[] = {"WarmupLR", "WarmupDecayLR", "WarmupCosineLR", "OneCycle",
                                                   "LRRangeTest", NULL};

/* torch.optim.lr_scheduler classes, which DeepSpeed falls back to. */
static const char *const unsupported_schedulers[] = {
    "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "CyclicLR",
    "OneCycleLR", "LambdaLR", "MultiplicativeLR", "ReduceLROnPlateau", "LinearLR", "ConstantLR", "PolynomialLR",
    "SequentialLR", "ChainedScheduler", NULL};

static void required_steps(config_ctx_t *ctx, node_t *obj, const char *key, const char *type_name, uint64_t *out)
{
    node_t *n = take(obj, key);
    if (n == NULL || is_auto(n)) {
        ERR(ctx, n ? n : obj, key, "required for %s%s", type_name,
            n ? " (\"auto\" has no default here: give the number of steps)" : "");
        return;
    }
    conv_u64(ctx, n, 1, UINT64_MAX, out);
}

static void required_lr(config_ctx_t *ctx, node_t *obj, const char *key, const char *type_name, double *out)
{
    node_t *n = take(obj, key);
    if (n == NULL || is_auto(n)) {
        ERR(ctx, n ? n : obj, key, "required for %s%s", type_name,
            n ? " (\"auto\" has no default here)" : "");
        return;
    }
    conv_nonneg(ctx, n, out);
}

static void walk_scheduler_params(config_ctx_t *ctx, node_t *obj, zero_config_scheduler_t *s)
{
    const config_key_t *rows = config_scheduler_params_keys(s->type);
    const zero_config_optimizer_t *o = &ctx->config->optimizer;
    const char *name = zero_scheduler_type_string(s->type);
    node_t *steps = zero_config_json_find(obj, "warmup_num_steps"), *max_lr;

    read_rows(ctx, obj, rows);
    switch (s->type) {
    case ZERO_SCHEDULER_WARMUP_LR:
    case ZERO_SCHEDULER_WARMUP_DECAY_LR:
        /* "auto" is the Hugging Face trainer's word for "the optimizer's learning
         * rate", which is what it writes there (WarmupLR's default too). */
        max_lr = zero_config_json_find(obj, "warmup_max_lr");
        if (max_lr && is_auto(max_lr) && o->type != ZERO_OPTIMIZER_NONE)
            s->warmup_max_lr = o->lr;
        if (s->type == ZERO_SCHEDULER_WARMUP_DECAY_LR) {
            required_steps(ctx, obj, "total_num_steps", name, &s->total_num_steps);
            if (s->total_num_steps != 0 && s->total_num_steps < s->warmup_num_steps)
                WARN(ctx, steps ? steps : obj, "total_num_steps", "is less than warmup_num_steps (%llu < %llu)",
                     (unsigned long long)s->total_num_steps, (unsigned long long)s->warmup_num_steps);
        }
        break;
    case ZERO_SCHEDULER_WARMUP_COSINE_LR:
        required_steps(ctx, obj, "total_num_steps", name, &s->total_num_steps);
        if (s->total_num_steps != 0 && s->total_num_steps < s->warmup_num_steps)
            WARN(ctx, steps ? steps : obj, "total_num_steps", "is less than warmup_num_steps (%llu < %llu)",
                 (unsigned long long)s->total_num_steps, (unsigned long long)s->warmup_num_steps);
        break;
    case ZERO_SCHEDULER_ONE_CYCLE: {
        node_t *second, *second_stairs;
        required_lr(ctx, obj, "cycle_min_lr", name, &s->cycle_min_lr);
        required_lr(ctx, obj, "cycle_max_lr", name, &s->cycle_max_lr);
        second = take(obj, "cycle_second_step_size");
        s->cycle_second_step_size = s->cycle_first_step_size;
        if (second && second->kind != J_NULL)
            conv_u64(ctx, second, 1, UINT64_MAX, &s->cycle_second_step_size);
        second_stairs = take(obj, "cycle_second_stair_count");
        s->cycle_second_stair_count = s->cycle_first_stair_count;
        if (second_stairs && second_stairs->kind != J_NULL)
            conv_u64(ctx, second_stairs, 0, UINT64_MAX, &s->cycle_second_stair_count);
        break;
    }
    case ZERO_SCHEDULER_LR_RANGE_TEST:
    case ZERO_SCHEDULER_NONE:
        break;
    }
    finish_rows(ctx, obj, rows);
}

static void walk_scheduler(config_ctx_t *ctx, node_t *n)
{
    zero_config_scheduler_t *s = &ctx->config->scheduler;
    const zero_config_optimizer_t *o = &ctx->config->optimizer;
    node_t *obj = conv_object(ctx, n), *type, *params;
    size_t saved;
    char desc_buf_[64];
    int t = 0;
    if (obj == NULL)
        return;
    saved = path_push(ctx, "scheduler");
    type = take(obj, "type");
    params = take(obj, "params");
    finish_rows(ctx, obj, config_scheduler_keys);
    if (type == NULL) {
        ERR(ctx, obj, "type", "required (WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle or LRRangeTest)");
    } else if (type->kind != J_STRING || is_auto(type)) {
        ERR(ctx, type, "type", "expected a scheduler name (WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle or "
            "LRRangeTest), got %s", DESCRIBE(type));
    } else {
        const config_enum_name_t *e;
        for (e = scheduler_types; e->name; e++)
            if (strcasecmp(e->name, type->text) == 0)
                break;
        if (e->name) {
            t = e->value;
        } else {
            bool torch = false;
            for (const char *const *u = unsupported_schedulers; *u; u++)
                torch = torch || strcasecmp(*u, type->text) == 0;
            if (torch) {
                UNSUP(ctx, type, "type", "scheduler %s (torch.optim.lr_scheduler) is not implemented by libzero; use "
                      "one of DeepSpeed's (WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle, LRRangeTest)",
                      DESCRIBE(type));
            } else {
                const char *near = nearest(type->text, scheduler_type_names);
                if (near)
                    ERR(ctx, type, "type", "unknown scheduler %s; did you mean \"%s\"?", DESCRIBE(type), near);
                else
                    ERR(ctx, type, "type", "unknown scheduler %s (WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle "
                        "or LRRangeTest)", DESCRIBE(type));
            }
        }
    }
    if (t != 0) {
        node_t *pobj = NULL;
        size_t s2;
        s->type = (zero_scheduler_type_t)t;
        /* DeepSpeed's WarmupLR peaks at the optimizer's learning rate unless told
         * otherwise; WarmupDecayLR keeps its table default, 0.001. */
        if (s->type == ZERO_SCHEDULER_WARMUP_LR)
            s->warmup_max_lr = o->type != ZERO_OPTIMIZER_NONE ? o->lr : 1e-3;
        if (params && params->kind != J_NULL)
            pobj = conv_object(ctx, params);
        s2 = path_push(ctx, "params");
        if (pobj) {
            walk_scheduler_params(ctx, pobj, s);
        } else if (!params || params->kind == J_NULL) {
            /* No params: the required ones are missing. */
            if (s->type == ZERO_SCHEDULER_WARMUP_DECAY_LR || s->type == ZERO_SCHEDULER_WARMUP_COSINE_LR)
                ERR(ctx, obj, "total_num_steps", "required for %s", zero_scheduler_type_string(s->type));
            if (s->type == ZERO_SCHEDULER_ONE_CYCLE)
                ERR(ctx, obj, "cycle_min_lr", "required for OneCycle (and cycle_max_lr)");
        }
        path_pop(ctx, s2);
        /* DeepSpeed cycles momentum only for optimizers with betas, and says so. */
        if (s->type == ZERO_SCHEDULER_ONE_CYCLE && s->cycle_momentum &&
            (o->type == ZERO_OPTIMIZER_SGD || o->type == ZERO_OPTIMIZER_ADAGRAD)) {
            s->cycle_momentum = false;
            WARN(ctx, pobj ? pobj : obj, "params.cycle_momentum", "optimizer %s has no betas, so momentum is not "
                 "cycled (as in DeepSpeed)", zero_optimizer_type_string(o->type));
        }
    }
    path_pop(ctx, saved);
}

/* ---- aio, checkpoint ---- */

static void walk_aio(config_ctx_t *ctx, node_t *n)
{
    zero_config_aio_t *a = &ctx->config->aio;
    node_t *obj, *par, *tc;
    size_t saved;
    if (n == NULL || n->kind == J_NULL)
        return;
    obj = conv_object(ctx, n);
    if (obj == NULL)
        return;
    saved = path_push(ctx, "aio");
    read_rows(ctx, obj, config_aio_keys);
    par = take(obj, "intra_op_parallelism");
    tc = take(obj, "thread_count");
    if (tc) {
        if (par)
            ERR(ctx, tc, "thread_count", "same setting as aio.intra_op_parallelism, which is also given; keep one");
        else
            WARN(ctx, tc, "thread_count", "deprecated; write intra_op_parallelism instead");
    }
    conv_u32(ctx, par ? par : tc, 1, UINT32_MAX, &a->intra_op_parallelism);
    finish_rows(ctx, obj, config_aio_keys);
    path_pop(ctx, saved);
}

static void walk_checkpoint(config_ctx_t *ctx, node_t *n)
{
    node_t *obj = conv_object(ctx, n);
    size_t saved;
    if (obj == NULL)
        return;
    saved = path_push(ctx, "checkpoint");
    read_rows(ctx, obj, config_checkpoint_keys);
    walk_rows_block(ctx, take(obj, "parallel_write"), "parallel_write", config_parallel_write_keys);
    finish_rows(ctx, obj, config_checkpoint_keys);
    path_pop(ctx, saved);
}

/* ---- top level ---- */

static void only_disabled_block(config_ctx_t *ctx, node_t *root, const char *key, const char *what)
{
    node_t *n = take(root, key), *en;
    bool v = false;
    if (n == NULL || n->kind == J_NULL)
        return;
    if (conv_object(ctx, n) == NULL)
        return;
    en = zero_config_json_find(n, "enabled");
    if (en && conv_bool(ctx, en, &v) && v) {
        char where[CONFIG_PATH_MAX];
        snprintf(where, sizeof(where), "%s.enabled", key);
        UNSUP(ctx, en, where, "%s is not implemented by libzero", what);
    }
}

/*
 * The derived train_batch_size = mb * gas * world_size (world_size 0, not
 * known yet, counts as 1: the product is then a lower bound). Products above
 * BATCH_MAX, the bound on the given values, are refused like given values
 * above it; the multiplication is checked so a wrapped product cannot pass.
 */
static bool derive_batch(config_ctx_t *ctx, const node_t *at, const char *key, uint64_t mb, uint64_t gas,
                         bool has_gas, uint64_t w, uint64_t *tb_p)
{
    uint64_t prod;
    bool overflow = __builtin_mul_overflow(mb, gas, &prod) || __builtin_mul_overflow(prod, w ? w : 1, &prod);
    char factors[160];
    if (has_gas)
        snprintf(factors, sizeof(factors), "train_micro_batch_size_per_gpu %llu * gradient_accumulation_steps %llu",
                 (unsigned long long)mb, (unsigned long long)gas);
    else
        snprintf(factors, sizeof(factors), "train_micro_batch_size_per_gpu %llu", (unsigned long long)mb);
    if (overflow || prod > BATCH_MAX) {
        char product[48] = "overflows 64 bits";
        if (!overflow)
            snprintf(product, sizeof(product), "= %llu", (unsigned long long)prod);
        if (w != 0)
            ERR(ctx, at, key, "the derived train_batch_size %s * world_size %llu %s, above the limit 2^40 "
                "(1099511627776)", factors, (unsigned long long)w, product);
        else
            ERR(ctx, at, key, "the derived train_batch_size %s %s, above the limit 2^40 (1099511627776)", factors,
                product);
        return false;
    }
    *tb_p = prod;
    return true;
}

static void resolve_batch(config_ctx_t *ctx, node_t *root, const node_t *tb_node, const node_t *mb_node,
                          const node_t *gas_node, bool tb_ok, bool mb_ok, bool gas_ok)
{
    zero_config_t *c = ctx->config;
    uint64_t tb = c->train_batch_size, mb = c->train_micro_batch_size_per_gpu, gas = c->gradient_accumulation_steps;
    uint64_t w = ctx->world_size, prod;
    bool has_tb = tb_node && tb_ok, has_mb = mb_node && mb_ok, has_gas = gas_node && gas_ok;
    const node_t *at = tb_node ? tb_node : root;

    if ((tb_node && !tb_ok) || (mb_node && !mb_ok) || (gas_node && !gas_ok)) {
        /* A bad value was reported already; reset so nothing half-derived is kept. */
        c->train_batch_size = c->train_micro_batch_size_per_gpu = c->gradient_accumulation_steps = 0;
        return;
    }
    c->train_batch_size = c->train_micro_batch_size_per_gpu = c->gradient_accumulation_steps = 0;
    c->world_size = ctx->world_size;
    if (!has_tb && !has_mb) {
        config_problem_at(ctx, CONFIG_SEV_ERROR, 0, 0, "train_batch_size", "train_batch_size or train_micro_batch_size_per_gpu must be given (with "
            "gradient_accumulation_steps they determine the third through the world size)");
        return;
    }
    if (has_tb && has_mb && has_gas) {
        if (__builtin_mul_overflow(mb, gas, &prod) || (w != 0 && __builtin_mul_overflow(prod, w, &prod))) {
            ERR(ctx, at, "train_batch_size", "train_micro_batch_size_per_gpu * gradient_accumulation_steps * "
                "world_size overflows");
            return;
        }
        if (w != 0 && tb != prod) {
            ERR(ctx, at, "train_batch_size", "%llu != train_micro_batch_size_per_gpu %llu * "
                "gradient_accumulation_steps %llu * world_size %llu (= %llu)", (unsigned long long)tb,
                (unsigned long long)mb, (unsigned long long)gas, (unsigned long long)w, (unsigned long long)prod);
            return;
        }
        if (w == 0) {
            if (tb % prod != 0 || tb / prod > UINT32_MAX) {
                ERR(ctx, at, "train_batch_size", "%llu is not train_micro_batch_size_per_gpu %llu * "
                    "gradient_accumulation_steps %llu times a world size", (unsigned long long)tb,
                    (unsigned long long)mb, (unsigned long long)gas);
                return;
            }
            c->world_size = (uint32_t)(tb / prod);
        }
        c->train_batch_size = tb;
        c->train_micro_batch_size_per_gpu = mb;
        c->gradient_accumulation_steps = gas;
        return;
    }
    if (has_tb && (has_mb || has_gas)) {
        /* train_batch_size and one of the others: the third is tb / (known * w) */
        uint64_t known = has_mb ? mb : gas, div = known;
        const char *known_key = has_mb ? "train_micro_batch_size_per_gpu" : "gradient_accumulation_steps";
        if (w != 0 && __builtin_mul_overflow(known, w, &div))
            div = 0;
        if (div == 0 || tb % div != 0) {
            if (w != 0)
                ERR(ctx, at, "train_batch_size", "%llu is not divisible by %s %llu * world_size %llu",
                    (unsigned long long)tb, known_key, (unsigned long long)known, (unsigned long long)w);
            else
                ERR(ctx, at, "train_batch_size", "%llu is not divisible by %s %llu", (unsigned long long)tb, known_key,
                    (unsigned long long)known);
            return;
        }
        c->train_batch_size = tb;
        if (has_mb) {
            c->train_micro_batch_size_per_gpu = mb;
            if (w != 0)
                c->gradient_accumulation_steps = tb / div;
        } else {
            c->gradient_accumulation_steps = gas;
            if (w != 0)
                c->train_micro_batch_size_per_gpu = tb / div;
        }
        return;
    }
    if (has_mb && has_gas) {
        if (!derive_batch(ctx, mb_node, "train_micro_batch_size_per_gpu", mb, gas, true, w, &prod))
            return;
        c->train_micro_batch_size_per_gpu = mb;
        c->gradient_accumulation_steps = gas;
        if (w != 0)
            c->train_batch_size = prod;
        return;
    }
    /* One of the two alone: accumulation is 1. */
    c->gradient_accumulation_steps = 1;
    if (has_tb) {
        c->train_batch_size = tb;
        if (w != 0) {
            if (tb % w != 0) {
                ERR(ctx, at, "train_batch_size", "%llu is not divisible by world_size %llu", (unsigned long long)tb,
                    (unsigned long long)w);
                c->train_batch_size = c->gradient_accumulation_steps = 0;
                return;
            }
            c->train_micro_batch_size_per_gpu = tb / w;
        }
    } else {
        if (!derive_batch(ctx, mb_node, "train_micro_batch_size_per_gpu", mb, 1, false, w, &prod)) {
            c->gradient_accumulation_steps = 0;
            return;
        }
        c->train_micro_batch_size_per_gpu = mb;
        if (w != 0)
            c->train_batch_size = prod;
    }
}

void config_schema_apply(config_ctx_t *ctx, zero_config_json_node_t *root)
{
    zero_config_t *c = ctx->config;
    node_t *tb, *mb, *gas, *bf, *bf_old, *n;
    bool tb_ok = false, mb_ok = false, gas_ok = false;

    set_defaults(c);
    check_duplicates(ctx, root);

    tb = take(root, "train_batch_size");
    mb = take(root, "train_micro_batch_size_per_gpu");
    gas = take(root, "gradient_accumulation_steps");
    if (tb && is_auto(tb))
        tb = NULL;
    if (mb && is_auto(mb))
        mb = NULL;
    if (gas && is_auto(gas))
        gas = NULL;
    tb_ok = tb && conv_u64(ctx, tb, 1, BATCH_MAX, &c->train_batch_size);
    mb_ok = mb && conv_u64(ctx, mb, 1, BATCH_MAX, &c->train_micro_batch_size_per_gpu);
    gas_ok = gas && conv_u64(ctx, gas, 1, BATCH_MAX, &c->gradient_accumulation_steps);

    walk_zero(ctx, root, take(root, "zero_optimization"));
    take(root, "allgather_size"); /* only meaningful with the boolean zero_optimization form */

    walk_rows_block(ctx, take(root, "fp16"), "fp16", config_fp16_keys);
    bf = take(root, "bf16");
    bf_old = take(root, "bfloat16");
    if (bf_old) {
        if (bf)
            config_problem_at(ctx, CONFIG_SEV_ERROR, bf_old->key_line, bf_old->key_column, "bfloat16",
                              "same setting as bf16, which is also given; keep bf16");
        else
            config_problem_at(ctx, CONFIG_SEV_WARNING, bf_old->key_line, bf_old->key_column, "bfloat16",
                              "deprecated spelling; write bf16 instead");
    }
    walk_rows_block(ctx, bf ? bf : bf_old, bf ? "bf16" : "bfloat16", config_bf16_keys);
    if (c->fp16.enabled && c->bf16.enabled) {
        node_t *en = zero_config_json_find(bf ? bf : bf_old, "enabled");
        ERR(ctx, en, bf ? "bf16.enabled" : "bfloat16.enabled", "fp16 and bf16 cannot both be enabled");
    }
    c->precision = c->fp16.enabled ? ZERO_FP16 : (c->bf16.enabled ? ZERO_BF16 : ZERO_FP32);

    walk_optimizer(ctx, take(root, "optimizer"));
    walk_scheduler(ctx, take(root, "scheduler"));
    walk_aio(ctx, take(root, "aio"));
    walk_checkpoint(ctx, take(root, "checkpoint"));

    /* The top level's own rows: implemented keys, keys accepted at DeepSpeed's
     * default only, and out-of-scope features (named in one warning). */
    read_rows(ctx, root, config_top_keys);
    only_disabled_block(ctx, root, "amp", "Apex AMP (amp.enabled)");
    walk_rows_block(ctx, take(root, "data_types"), "data_types", config_data_types_keys);

    /* Two out-of-scope features would change the batch or the partitioning when switched on. */
    n = take(root, "elasticity");
    if (n) {
        node_t *en = n->kind == J_OBJECT ? zero_config_json_find(n, "enabled") : NULL;
        if (en && en->kind == J_BOOL && en->boolean)
            UNSUP(ctx, en, "elasticity.enabled", "elastic training (which chooses the batch sizes) is not "
                  "implemented by libzero");
        else
            ignored_add(ctx, "elasticity");
    }
    n = take(root, "tensor_parallel");
    if (n) {
        node_t *tp = n->kind == J_OBJECT ? zero_config_json_find(n, "autotp_size") : NULL;
        if (tp && tp->kind == J_NUMBER && tp->number > 1)
            UNSUP(ctx, tp, "tensor_parallel.autotp_size", "tensor parallelism is not implemented by libzero");
        else
            ignored_add(ctx, "tensor_parallel");
    }
    finish_rows(ctx, root, config_top_keys);

    resolve_batch(ctx, root, tb, mb, gas, tb_ok, mb_ok, gas_ok);

    if (ctx->ignored)
        config_problem_at(ctx, CONFIG_SEV_WARNING, 0, 0, NULL,
                          "accepted but ignored, outside libzero's scope (see docs/config.md): %s", ctx->ignored);
}
