/*
 * Shared between config.c (public calls, problem list, rendering) and
 * config_schema.c (the walk from the JSON tree to zero_config_t).
 */
#ifndef ZERO_CONFIG_CONFIG_INTERNAL_H
#define ZERO_CONFIG_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zero/config.h>
#include <zero/export.h>
#include "config/config_json.h"

typedef enum config_severity {
    CONFIG_SEV_ERROR = 0,
    CONFIG_SEV_UNSUPPORTED = 1,
    CONFIG_SEV_WARNING = 2
} config_severity_t;

typedef struct config_problem {
    config_severity_t severity;
    uint32_t line, column;  /* 0 = no position */
    char *text;             /* "PATH: message" (or just the message) */
    size_t order;           /* collection order: the tie-break of the sort */
} config_problem_t;

#define CONFIG_PATH_MAX 512

typedef struct config_ctx {
    const char *source;     /* file name or "<string>" */
    uint32_t world_size;    /* as given (0 = unknown) */
    zero_config_t *config;
    config_problem_t *problems;
    size_t problem_count, problem_cap, problems_dropped;
    size_t errors, unsupported, warnings;
    bool out_of_memory;
    char path[CONFIG_PATH_MAX];
    size_t path_length;
    /* Out-of-scope features met, joined with ", " for the single warning. */
    char *ignored;
    size_t ignored_length;
} config_ctx_t;

/* Records one problem at @p line:@p column (0: no position). Its text is the
 * current path, then ".KEY" when @p key is not NULL (or "[i]" style keys as
 * given), then ": " and the message; with an empty path and no key, just the
 * message. */
void config_problem_at(config_ctx_t *ctx, config_severity_t severity, uint32_t line, uint32_t column,
                       const char *key, const char *fmt, ...) ZERO_PRINTF(6, 7);

/* Walks the tree into ctx->config (already filled with defaults by the walk). */
void config_schema_apply(config_ctx_t *ctx, zero_config_json_node_t *root);

/* Optimal-string-alignment distance (edits: insert, delete, substitute, swap neighbours). */
size_t config_edit_distance(const char *a, const char *b);

#endif /* ZERO_CONFIG_CONFIG_INTERNAL_H */
