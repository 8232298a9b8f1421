/*
 * The JSON front end of the config reader: strict JSON plus comments
 * (`//` and `#` lines, block comments), with the line and column of every value, so that a
 * problem can be reported where it is. Input is checked first as a whole:
 * size, NUL bytes, UTF-8. Then one recursive-descent pass builds a tree in an
 * arena (one free releases it), with bounded depth and value count.
 *
 * Duplicate keys are kept in the tree; zero_config_json_find() returns the
 * first, and the config layer reports duplicates with their JSON path.
 */
#ifndef ZERO_CONFIG_CONFIG_JSON_H
#define ZERO_CONFIG_CONFIG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zero/status.h>

/* Most values (of any kind) one document may hold: bounds memory (about 100 bytes a value)
 * on hostile input; a real config has a few hundred. */
#define ZERO_CONFIG_JSON_MAX_VALUES (1u << 18)

typedef enum zero_config_json_kind {
    ZERO_CONFIG_JSON_NULL,
    ZERO_CONFIG_JSON_BOOL,
    ZERO_CONFIG_JSON_NUMBER,
    ZERO_CONFIG_JSON_STRING,
    ZERO_CONFIG_JSON_ARRAY,
    ZERO_CONFIG_JSON_OBJECT
} zero_config_json_kind_t;

typedef struct zero_config_json_node zero_config_json_node_t;
struct zero_config_json_node {
    zero_config_json_kind_t kind;
    uint32_t line, column;         /* where the value starts (1-based; column counts characters) */
    uint32_t key_line, key_column; /* where its key starts, inside an object */
    bool boolean;
    bool integral;                 /* a number written without fraction or exponent */
    bool used;                     /* set by the config layer when it consumed this member */
    double number;
    const char *text;              /* string value (decoded, NUL-terminated) or number lexeme */
    size_t text_length;
    const char *key;               /* member name inside an object (decoded), else NULL */
    zero_config_json_node_t *first, *last; /* children of arrays and objects, in order */
    zero_config_json_node_t *next;
    size_t count;
};

typedef struct zero_config_json_doc zero_config_json_doc_t;

/* Where parsing stopped, for the single syntax error a document can have. */
typedef struct zero_config_json_error {
    uint32_t line, column;          /* 0 when no position applies (e.g. too large) */
    char message[256];
} zero_config_json_error_t;

/*
 * Parses @p length bytes at @p text. On success *doc_p holds the tree (free it
 * with zero_config_json_free). On a syntax or limit error returns
 * ZERO_ERR_CONFIG and fills @p error (nothing is logged: the caller reports it);
 * ZERO_ERR_NO_MEMORY when the arena cannot grow.
 */
zero_status_t zero_config_json_parse(const char *text, size_t length, zero_config_json_doc_t **doc_p,
                                     zero_config_json_error_t *error);
void zero_config_json_free(zero_config_json_doc_t *doc);
zero_config_json_node_t *zero_config_json_root(zero_config_json_doc_t *doc);

/* First member named @p key of @p object (NULL if absent or @p object is not an object). */
zero_config_json_node_t *zero_config_json_find(const zero_config_json_node_t *object, const char *key);

/* Writes @p value as a JSON string literal (quotes, escapes) into @p out; returns bytes needed. */
size_t zero_config_json_quote(const char *value, char *out, size_t out_size);

/* Shortest "%.Ng" text of @p value that reads back to the same double ("C" locale). */
void zero_config_json_format_double(double value, char *out, size_t out_size);

#endif /* ZERO_CONFIG_CONFIG_JSON_H */
