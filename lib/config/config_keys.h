/*
 * The config's key tables: one table per config block, one row per key.
 *
 * A row says everything the reader needs to know about a key that follows the
 * common pattern: its name and DeepSpeed's other spelling, its JSON type and
 * range, its default (as JSON text, the same text docs/config.md shows), where
 * it is stored in zero_config_t, how libzero treats it (the class) and one
 * line of documentation. config_schema.c reads every such row in one generic
 * pass; docs/config.md's key tables are generated from these rows and a test
 * (tests/config/test_config_docs.c) fails when the page and the rows disagree;
 * zero_config_to_json (config.c) renders the stored rows in table order.
 *
 * Adding a key:
 *   - a plain key (bool, integer, number, enum, path; stored or not) is one
 *     row in its block's table in config_keys.c, e.g.
 *         {KEY("sub_group_size"), U64(1, NO_MAX), AT(zero_optimization.sub_group_size), DEF("1e9"),
 *          DOC("tile size for the optimizer step over partitions")},
 *     then `build/tests/config/test_config_docs --update docs/config.md`
 *     rewrites the page's table; a stored key also needs its field in
 *     include/zero/config.h (zero_config_to_json renders every stored row);
 *   - a key with a rule of its own (a required key, a default that depends on
 *     another key, a cross-key check) keeps its typed, stored row with the flag
 *     CONFIG_READ_BY_CODE (so the defaults, the docs and the rendering still
 *     come from the row) and gets its reading code in config_schema.c after the
 *     table pass of its block; a key that is not stored at all is a
 *     CONFIG_CUSTOM row; a nested block is a CONFIG_OBJECT row naming its
 *     table in .sub.
 */
#ifndef ZERO_CONFIG_CONFIG_KEYS_H
#define ZERO_CONFIG_CONFIG_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zero/config.h>

/* A name of an enum-valued key; aliases are accepted but not shown as choices. */
typedef struct config_enum_name {
    const char *name;
    int value;
    bool alias;
} config_enum_name_t;

typedef enum config_type {
    CONFIG_BOOL,   /* true / false -> bool */
    CONFIG_UINT,   /* integer in [imin, imax] (5e8 counts) -> unsigned field of 4 or 8 bytes, or int */
    CONFIG_INT,    /* signed integer (DeepSpeed's -1 sentinels); never stored */
    CONFIG_NUMBER, /* number in the range of dmin, dmax and flags -> double */
    CONFIG_ENUM,   /* one of names[] (any case) -> enum field */
    CONFIG_STRING, /* a string -> char * owned by the config (rendered when not NULL) */
    CONFIG_PAIR,   /* two numbers -> double[2] */
    CONFIG_NULL,   /* any JSON value; only null is accepted (class DEFAULT_ONLY) */
    CONFIG_ANY,    /* any JSON value (class OUT_OF_SCOPE) */
    CONFIG_OBJECT, /* a nested block, walked by its own code */
    CONFIG_CUSTOM  /* read by code after the table pass (a rule of its own) */
} config_type_t;

typedef enum config_class {
    CONFIG_IMPLEMENTED = 0, /* typed, range-checked, stored (or acted on) */
    CONFIG_NO_EFFECT,       /* PyTorch-side machinery or a kernel choice: type-checked, dropped */
    CONFIG_DEFAULT_ONLY,    /* DeepSpeed would change the step: any value but the default is unsupported */
    CONFIG_OUT_OF_SCOPE,    /* a DeepSpeed feature outside the step: named in the single warning */
    CONFIG_DEPRECATED       /* an old spelling, mapped by code with a warning */
} config_class_t;

/* Range flags of CONFIG_NUMBER rows. */
enum {
    CONFIG_MIN_OPEN = 1, /* (dmin, ... */
    CONFIG_MAX_OPEN = 2, /* ..., dmax) */
    CONFIG_NO_MAX = 4,
    CONFIG_NO_MIN = 8,
    CONFIG_NULL_IS_ABSENT = 16, /* null means "not given" (instead of a type error) */
    CONFIG_READ_BY_CODE = 32,   /* stored and rendered from the row, but read by the block's code */
    CONFIG_OMIT_ZERO = 64       /* rendered only when not 0 (the batch triad while the world size is unknown) */
};

typedef struct config_key {
    const char *key;
    const char *alias;   /* DeepSpeed's other spelling (both given: an error), or NULL */
    config_type_t type;
    config_class_t cls;
    unsigned flags;
    uint64_t imin, imax; /* CONFIG_UINT */
    double dmin, dmax;   /* CONFIG_NUMBER */
    const config_enum_name_t *names; /* CONFIG_ENUM */
    const struct config_key *sub;    /* CONFIG_OBJECT: the nested block's table, or NULL */
    bool stored;         /* offset and size name a field of zero_config_t */
    size_t offset, size;
    /*
     * The default as JSON text ("5e8", "true", "\"Warn\"", "null"), applied to
     * the field before the file is read and accepted by DEFAULT_ONLY rows. For
     * CONFIG_CUSTOM and CONFIG_OBJECT rows it is only what docs/config.md shows
     * ("derived", "none"); NULL shows as "—".
     */
    const char *def;
    bool def_by_code;    /* the default depends on another key and is set by code, not from def */
    const char *type_doc; /* the docs' type cell where the type alone does not say it, else NULL */
    const char *doc;     /* one line for docs/config.md (for DEFAULT_ONLY: the feature's name) */
    const char *hint;    /* DEFAULT_ONLY: appended to the refusal, e.g. what to do instead */
} config_key_t;

/* A block's table: rows end with a row whose key is NULL. */
typedef struct config_block {
    const char *path;      /* dotted path of the block ("" for the top level) */
    const char *doc_id;    /* the name of the table in docs/config.md */
    const config_key_t *rows;
} config_block_t;

/* The tables (config_keys.c). */
extern const config_key_t config_top_keys[];
extern const config_key_t config_fp16_keys[];
extern const config_key_t config_bf16_keys[];
extern const config_key_t config_zero_keys[];
extern const config_key_t config_offload_optimizer_keys[];
extern const config_key_t config_offload_param_keys[];
extern const config_key_t config_aio_keys[];
extern const config_key_t config_checkpoint_keys[];
extern const config_key_t config_parallel_write_keys[];
extern const config_key_t config_data_types_keys[];
extern const config_key_t config_optimizer_keys[];
extern const config_key_t config_adam_keys[];
extern const config_key_t config_lamb_keys[];
extern const config_key_t config_lion_keys[];
extern const config_key_t config_sgd_keys[];
extern const config_key_t config_adagrad_keys[];
extern const config_key_t config_scheduler_keys[];
extern const config_key_t config_warmup_lr_keys[];
extern const config_key_t config_warmup_decay_lr_keys[];
extern const config_key_t config_warmup_cosine_lr_keys[];
extern const config_key_t config_one_cycle_keys[];
extern const config_key_t config_lr_range_test_keys[];

extern const config_enum_name_t config_offload_device_names[];
extern const config_enum_name_t config_warmup_type_names[];
extern const config_enum_name_t config_aio_backend_names[];
extern const config_enum_name_t config_tag_validation_names[];
extern const config_enum_name_t config_comm_backend_names[];

/* Every table, each once, ending with {NULL, NULL, NULL}: for the docs and the tests. */
extern const config_block_t config_blocks[];

/* The table of an optimizer's / a scheduler's params (NULL for NONE). */
const config_key_t *config_optimizer_params_keys(zero_optimizer_type_t type);
const config_key_t *config_scheduler_params_keys(zero_scheduler_type_t type);

/*
 * Renders @p block's table as the Markdown docs/config.md holds (header row
 * included, one line a key, each ending in '\n'). Library-allocated; release
 * with zero_free(). NULL when out of memory.
 */
char *config_block_markdown(const config_block_t *block);

/* The docs' text of a row's default: def with the JSON quotes kept, "—" for none. */
const char *config_key_default_text(const config_key_t *row);

/* Whether @p row has a line in its block's table in docs/config.md (out-of-scope,
 * deprecated and undocumented rows are named in the page's prose instead). */
bool config_key_documented(const config_key_t *row);

/* Sets every field that @p rows store to the row's default. */
void config_keys_apply_defaults(zero_config_t *config, const config_key_t *rows);

#endif /* ZERO_CONFIG_CONFIG_KEYS_H */
