/*
 * docs/config.md against the config's key tables (lib/config/config_keys.c).
 *
 * Every block's table in the page sits between "<!-- keys: ID -->" and
 * "<!-- end keys -->" and must be, line for line, the Markdown the table
 * renders (config_block_markdown): the same keys, types, ranges, defaults and
 * meanings, and no key the table lacks. Keys the tables keep out of the
 * page's tables (out of scope, deprecated spellings, keys with a rule of their
 * own) must still be named in the page. A disagreement names the table, the
 * key and both texts.
 *
 *   test_config_docs                 runs the checks (registered with meson test)
 *   test_config_docs --update FILE   rewrites the marked tables of FILE from the key tables
 *
 * The rows themselves are checked too: a stored row's field has the size its
 * type needs, its default lies in its own range, and zero_config_to_json
 * renders it.
 */
#include "test_main.h"
#include "util/alloc.h"
#include "config/config_keys.h"

#include <zero/zero.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CONFIG_DOC_PATH
#error "CONFIG_DOC_PATH (docs/config.md in the source tree) is set by tests/config/meson.build"
#endif

#define BEGIN_MARK "<!-- keys: "
#define END_MARK "<!-- end keys -->"

static char *read_file(const char *path)
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

/* The text between the markers of table @p id in @p doc: [*begin_p, *end_p), or 0 if absent. */
static int find_section(const char *doc, const char *id, const char **begin_p, const char **end_p)
{
    char mark[128];
    const char *b, *e;
    snprintf(mark, sizeof(mark), BEGIN_MARK "%s -->\n", id);
    b = strstr(doc, mark);
    if (b == NULL)
        return 0;
    b += strlen(mark);
    e = strstr(b, END_MARK);
    if (e == NULL)
        return 0;
    *begin_p = b;
    *end_p = e;
    return 1;
}

/* The key named by a Markdown table line "| `key` ...", for messages. */
static void line_key(const char *line, size_t len, char *out, size_t size)
{
    const char *a = memchr(line, '`', len), *b = a ? memchr(a + 1, '`', len - (size_t)(a + 1 - line)) : NULL;
    snprintf(out, size, "%.*s", a && b ? (int)(b - a - 1) : 0, a && b ? a + 1 : "");
}

/* Compares the page's table with the rendering, line by line; prints each difference. */
static int compare_table(const char *id, const char *page, size_t page_len, const char *want)
{
    int differences = 0;
    const char *p = page, *w = want, *page_end = page + page_len;
    while (p < page_end || *w) {
        const char *pn = p < page_end ? memchr(p, '\n', (size_t)(page_end - p)) : NULL;
        const char *wn = *w ? strchr(w, '\n') : NULL;
        size_t pl = p < page_end ? (size_t)((pn ? pn : page_end) - p) : 0;
        size_t wl = *w ? (size_t)((wn ? wn : w + strlen(w)) - w) : 0;
        if (pl != wl || memcmp(p, w, pl) != 0) {
            char key[128];
            line_key(wl ? w : p, wl ? wl : pl, key, sizeof(key));
            fprintf(stderr, "docs/config.md, table \"%s\", key `%s`:\n  the key table says: %.*s\n  the page says:      %.*s\n",
                    id, key, wl ? (int)wl : 9, wl ? w : "(no line)", pl ? (int)pl : 9, pl ? p : "(no line)");
            differences++;
        }
        p = p < page_end ? (pn ? pn + 1 : page_end) : p;
        w = *w ? (wn ? wn + 1 : w + wl) : w;
    }
    return differences;
}

static void test_tables_match_page(void)
{
    char *doc = read_file(CONFIG_DOC_PATH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    for (const config_block_t *b = config_blocks; b->rows; b++) {
        const char *begin, *end;
        char *want = config_block_markdown(b);
        CU_ASSERT_PTR_NOT_NULL_FATAL(want);
        if (!find_section(doc, b->doc_id, &begin, &end)) {
            fprintf(stderr, "docs/config.md has no table \"%s\" (" BEGIN_MARK "%s --> ... " END_MARK ")\n",
                    b->doc_id, b->doc_id);
            CU_FAIL("a key table is missing from docs/config.md");
        } else if (compare_table(b->doc_id, begin, (size_t)(end - begin), want) != 0) {
            CU_FAIL("docs/config.md disagrees with the key tables (run test_config_docs --update docs/config.md)");
        }
        zero_free(want);
    }
    /* ... and every marked table in the page is one of the key tables. */
    for (const char *m = strstr(doc, BEGIN_MARK); m; m = strstr(m + 1, BEGIN_MARK)) {
        char id[64];
        int known = 0;
        if (m > doc && m[-1] != '\n')
            continue; /* a marker quoted in the prose, not a table */
        if (sscanf(m + strlen(BEGIN_MARK), "%63[^ -]", id) != 1)
            id[0] = '\0';
        for (const config_block_t *b = config_blocks; b->rows; b++)
            known = known || strcmp(b->doc_id, id) == 0;
        if (!known) {
            fprintf(stderr, "docs/config.md has a table \"%s\" that no key table matches\n", id);
            CU_FAIL("docs/config.md documents a block the config does not have");
        }
    }
    free(doc);
}

/* A whole-word `key` (or `block.key`) in backquotes somewhere in the page. */
static int named_in_page(const char *doc, const char *key)
{
    size_t len = strlen(key);
    for (const char *p = strstr(doc, key); p; p = strstr(p + 1, key)) {
        char before = p > doc ? p[-1] : ' ', after = p[len];
        if ((before == '`' || before == '.' || before == '"') &&
            (after == '`' || after == '"' || after == '.' || after == ':' || after == '['))
            return 1;
    }
    return 0;
}

static void test_other_keys_named(void)
{
    char *doc = read_file(CONFIG_DOC_PATH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    for (const config_block_t *b = config_blocks; b->rows; b++) {
        for (const config_key_t *r = b->rows; r->key; r++) {
            if (config_key_documented(r))
                continue;
            if (!named_in_page(doc, r->key)) {
                fprintf(stderr, "docs/config.md never names `%s` (block \"%s\")\n", r->key, b->doc_id);
                CU_FAIL("a key of the tables is missing from docs/config.md");
            }
        }
    }
    free(doc);
}

static void test_rows_consistent(void)
{
    for (const config_block_t *b = config_blocks; b->rows; b++) {
        for (const config_key_t *r = b->rows; r->key; r++) {
            size_t want = 0;
            switch (r->type) {
            case CONFIG_BOOL: want = sizeof(bool); break;
            case CONFIG_NUMBER: want = sizeof(double); break;
            case CONFIG_ENUM: want = sizeof(int); break;
            case CONFIG_UINT: want = r->size == sizeof(uint32_t) || r->size == sizeof(uint64_t) ? r->size : 0; break;
            case CONFIG_STRING: want = sizeof(char *); break;
            case CONFIG_PAIR: want = 2 * sizeof(double); break;
            default: break;
            }
            if (r->stored && r->size != want) {
                fprintf(stderr, "%s.%s: field of %zu bytes for its type\n", b->path, r->key, r->size);
                CU_FAIL("a stored row's field does not fit its type");
            }
            if (r->type == CONFIG_UINT && r->stored && r->size == sizeof(uint32_t) && r->imax > UINT32_MAX)
                CU_FAIL("a 32-bit field with a 64-bit range");
            if (r->cls == CONFIG_IMPLEMENTED && r->stored && !r->def_by_code && r->def == NULL &&
                r->type != CONFIG_STRING) {
                fprintf(stderr, "%s.%s: stored without a default\n", b->path, r->key);
                CU_FAIL("a stored row has no default");
            }
            if (r->type == CONFIG_UINT && r->def && !r->def_by_code) {
                double d = strtod(r->def, NULL);
                if (d < (double)r->imin || d > (double)r->imax) {
                    fprintf(stderr, "%s.%s: default %s outside its range\n", b->path, r->key, r->def);
                    CU_FAIL("a default outside its own range");
                }
            }
            if ((r->cls == CONFIG_DEFAULT_ONLY || r->cls == CONFIG_NO_EFFECT) && r->doc == NULL)
                CU_FAIL("an unsupported or no-effect row without the feature's name");
        }
    }
}

/* Whether every stored row of @p rows appears as a member in @p json (the rendering). */
static void check_rendered(const char *json, const config_key_t *rows, const char *what)
{
    for (const config_key_t *r = rows; r->key; r++) {
        char member[160];
        if (!r->stored || r->cls != CONFIG_IMPLEMENTED || r->type == CONFIG_STRING) /* a string: only when set */
            continue;
        snprintf(member, sizeof(member), "\"%s\": ", r->key);
        if (strstr(json, member) == NULL) {
            fprintf(stderr, "zero_config_to_json leaves out %s (%s): add it to config.c\n", r->key, what);
            CU_FAIL("a stored key is missing from the rendering");
        }
    }
}

static void render_and_check(const char *json_in, const config_key_t *rows, const char *what)
{
    zero_config_t *c = NULL;
    char *problems = NULL, *json = NULL;
    zero_status_t s = zero_config_parse_string(json_in, strlen(json_in), 2, &c, &problems);
    if (s != ZERO_OK)
        fprintf(stderr, "%s: %s", json_in, problems ? problems : "");
    CU_ASSERT_EQUAL_FATAL(s, ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_config_to_json(c, &json), ZERO_OK);
    check_rendered(json, rows, what);
    zero_string_free(json);
    zero_string_free(problems);
    zero_config_destroy(c);
}

/* Every stored key is rendered by zero_config_to_json (so a new row cannot be forgotten there). */
static void test_rows_rendered(void)
{
    static const char *const optimizers[] = {"Adam", "Lamb", "Lion", "SGD", "Adagrad", NULL};
    static const char *const schedulers[][2] = {
        {"WarmupLR", ""}, {"WarmupDecayLR", "\"total_num_steps\": 10"},
        {"WarmupCosineLR", "\"total_num_steps\": 10"}, {"OneCycle", "\"cycle_min_lr\": 0, \"cycle_max_lr\": 1"},
        {"LRRangeTest", ""}, {NULL, NULL}};
    char json[512];
    ZERO_TEST_MEM_MARK();
    render_and_check("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 3, \"offload_optimizer\": "
                     "{\"device\": \"cpu\"}, \"offload_param\": {\"device\": \"cpu\"}}}",
                     config_top_keys, "top level");
    for (const config_block_t *b = config_blocks; b->rows; b++)
        if (strncmp(b->path, "optimizer.", 10) != 0 && strncmp(b->path, "scheduler.", 10) != 0)
            render_and_check("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adam\"}, \"zero_optimization\": "
                             "{\"stage\": 3}}", b->rows, b->doc_id);
    for (const char *const *o = optimizers; *o; o++) {
        snprintf(json, sizeof(json), "{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"%s\"}}", *o);
        for (const config_block_t *b = config_blocks; b->rows; b++)
            if (strcmp(b->doc_id, *o) == 0)
                render_and_check(json, b->rows, b->doc_id);
    }
    for (size_t i = 0; schedulers[i][0]; i++) {
        snprintf(json, sizeof(json), "{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"%s\", \"params\": {%s}}}",
                 schedulers[i][0], schedulers[i][1]);
        for (const config_block_t *b = config_blocks; b->rows; b++)
            if (strcmp(b->doc_id, schedulers[i][0]) == 0)
                render_and_check(json, b->rows, b->doc_id);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* Rewrites every marked table of @p path from the key tables. */
static int update(const char *path)
{
    char *doc = read_file(path), *out = NULL;
    size_t out_len = 0;
    FILE *f;
    const char *at;
    if (doc == NULL) {
        perror(path);
        return 1;
    }
    f = open_memstream(&out, &out_len);
    at = doc;
    for (;;) {
        const char *m = strstr(at, BEGIN_MARK), *begin, *end;
        char id[64];
        const config_block_t *b;
        if (m == NULL || sscanf(m + strlen(BEGIN_MARK), "%63[^ -]", id) != 1 || !find_section(m, id, &begin, &end))
            break;
        for (b = config_blocks; b->rows && strcmp(b->doc_id, id) != 0; b++)
            ;
        fwrite(at, 1, (size_t)(begin - at), f);
        if (b->rows) {
            char *table = config_block_markdown(b);
            fputs(table ? table : "", f);
            zero_free(table);
        } else {
            fprintf(stderr, "%s: table \"%s\" matches no key table; left as it is\n", path, id);
            fwrite(begin, 1, (size_t)(end - begin), f);
        }
        at = end;
    }
    fputs(at, f);
    fclose(f);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(out, 1, out_len, f) != out_len) {
        perror(path);
        return 1;
    }
    fclose(f);
    free(out);
    free(doc);
    return 0;
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"the page's key tables are the key tables", test_tables_match_page},
        {"keys outside the tables are named in the page", test_other_keys_named},
        {"rows are consistent", test_rows_consistent},
        {"stored rows are rendered", test_rows_rendered},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {{"config-docs", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    if (argc == 3 && strcmp(argv[1], "--update") == 0)
        return update(argv[2]);
    return zero_test_main(argc, argv, suites);
}
