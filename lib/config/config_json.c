/*
 * Strict JSON with comments, with positions. See config_json.h.
 *
 * Why not cJSON here: it neither reports line and column nor detects duplicate
 * keys, accepts NUL-truncated input silently and recurses without a bound the
 * caller can name. A config reader's value is in its error messages, so it
 * owns its front end; cJSON stays the library's general JSON tool.
 */
#include "config/config_json.h"
#include "util/alloc.h"
#include "zero/config.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena: every node and string of one document; freed at once ---- */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, size;
    max_align_t data[];
} arena_block_t;

struct zero_config_json_doc {
    arena_block_t *blocks;
    zero_config_json_node_t *root;
};

#define ARENA_BLOCK_BYTES (64u * 1024u)

static void *arena_alloc(zero_config_json_doc_t *doc, size_t size)
{
    arena_block_t *b = doc->blocks;
    size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    if (b == NULL || b->size - b->used < size) {
        size_t bytes = size > ARENA_BLOCK_BYTES ? size : ARENA_BLOCK_BYTES;
        b = zero_malloc(sizeof(*b) + bytes);
        if (b == NULL)
            return NULL;
        b->used = 0;
        b->size = bytes;
        /* A big request gets its own block behind the current one, so the
         * current block's free space stays in use. */
        if (doc->blocks != NULL && bytes > ARENA_BLOCK_BYTES) {
            b->next = doc->blocks->next;
            doc->blocks->next = b;
        } else {
            b->next = doc->blocks;
            doc->blocks = b;
        }
    }
    void *p = (char *)b->data + b->used;
    b->used += size;
    return p;
}

void zero_config_json_free(zero_config_json_doc_t *doc)
{
    if (doc == NULL)
        return;
    arena_block_t *b = doc->blocks;
    while (b != NULL) {
        arena_block_t *next = b->next;
        zero_free(b);
        b = next;
    }
    zero_free(doc);
}

zero_config_json_node_t *zero_config_json_root(zero_config_json_doc_t *doc)
{
    return doc ? doc->root : NULL;
}

/* ---- "C" locale for number conversion, whatever the host program set ---- */

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static locale_t get_c_locale(void)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale;
}

void zero_config_json_format_double(double value, char *out, size_t out_size)
{
    locale_t loc = get_c_locale();
    locale_t old = loc ? uselocale(loc) : (locale_t)0;
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(out, out_size, "%.*g", precision, value);
        if (precision == 17 || (loc ? strtod_l(out, NULL, loc) : strtod(out, NULL)) == value)
            break;
    }
    if (loc)
        uselocale(old);
}

size_t zero_config_json_quote(const char *value, char *out, size_t out_size)
{
    size_t n = 0;
#define PUT(c) do { if (n + 1 < out_size) out[n] = (c); n++; } while (0)
    PUT('"');
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            PUT('\\');
            PUT((char)c);
        } else if (c == '\n') {
            PUT('\\'); PUT('n');
        } else if (c == '\t') {
            PUT('\\'); PUT('t');
        } else if (c == '\r') {
            PUT('\\'); PUT('r');
        } else if (c < 0x20 || c == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            for (int i = 0; esc[i]; i++)
                PUT(esc[i]);
        } else {
            PUT((char)c);
        }
    }
    PUT('"');
#undef PUT
    if (out_size > 0)
        out[n < out_size ? n : out_size - 1] = '\0';
    return n;
}

/* ---- parser ---- */

typedef struct parser {
    const unsigned char *text;
    size_t length, pos;
    uint32_t line, column;
    size_t values;
    zero_config_json_doc_t *doc;
    zero_config_json_error_t *error;
    zero_status_t status;
} parser_t;

static void fail_at(parser_t *p, uint32_t line, uint32_t column, const char *fmt, ...) ZERO_PRINTF(4, 5);

static void fail_at(parser_t *p, uint32_t line, uint32_t column, const char *fmt, ...)
{
    va_list ap;
    if (p->status != ZERO_OK)
        return;
    p->status = ZERO_ERR_CONFIG;
    p->error->line = line;
    p->error->column = column;
    va_start(ap, fmt);
    vsnprintf(p->error->message, sizeof(p->error->message), fmt, ap);
    va_end(ap);
}

#define FAIL(p, ...) fail_at((p), (p)->line, (p)->column, __VA_ARGS__)

static void fail_nomem(parser_t *p)
{
    if (p->status == ZERO_OK) {
        p->status = ZERO_ERR_NO_MEMORY;
        snprintf(p->error->message, sizeof(p->error->message), "out of memory reading the config");
    }
}

static int peek(const parser_t *p)
{
    return p->pos < p->length ? p->text[p->pos] : -1;
}

/* Advances one byte, keeping line and column (columns count characters). */
static void advance(parser_t *p)
{
    unsigned char c = p->text[p->pos++];
    if (c == '\n') {
        p->line++;
        p->column = 1;
    } else if ((c & 0xC0) != 0x80) {
        p->column++;
    }
}

/* Skips blanks and comments; fails on an unterminated block comment. */
static void skip_space(parser_t *p)
{
    for (;;) {
        int c = peek(p);
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            advance(p);
        } else if (c == '#' || (c == '/' && p->pos + 1 < p->length && p->text[p->pos + 1] == '/')) {
            while (peek(p) != -1 && peek(p) != '\n')
                advance(p);
        } else if (c == '/' && p->pos + 1 < p->length && p->text[p->pos + 1] == '*') {
            uint32_t line = p->line, column = p->column;
            advance(p);
            advance(p);
            for (;;) {
                if (peek(p) == -1) {
                    fail_at(p, line, column, "unterminated /* comment");
                    return;
                }
                if (peek(p) == '*' && p->pos + 1 < p->length && p->text[p->pos + 1] == '/') {
                    advance(p);
                    advance(p);
                    break;
                }
                advance(p);
            }
        } else {
            return;
        }
    }
}

static zero_config_json_node_t *new_node(parser_t *p, zero_config_json_kind_t kind)
{
    zero_config_json_node_t *n;
    if (++p->values > ZERO_CONFIG_JSON_MAX_VALUES) {
        FAIL(p, "more than %u values: not a plausible config", ZERO_CONFIG_JSON_MAX_VALUES);
        return NULL;
    }
    n = arena_alloc(p->doc, sizeof(*n));
    if (n == NULL) {
        fail_nomem(p);
        return NULL;
    }
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->line = p->line;
    n->column = p->column;
    return n;
}

static void describe_char(int c, char *buf, size_t size)
{
    if (c == -1)
        snprintf(buf, size, "the end of the input");
    else if (c >= 0x21 && c < 0x7f)
        snprintf(buf, size, "'%c'", c);
    else if (c < 0x80)
        snprintf(buf, size, "byte 0x%02x", c);
    else
        snprintf(buf, size, "a non-ASCII character");
}

static unsigned hex_value(int c)
{
    if (c >= '0' && c <= '9') return (unsigned)(c - '0');
    if (c >= 'a' && c <= 'f') return (unsigned)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (unsigned)(c - 'A' + 10);
    return 16;
}

static int read_hex4(parser_t *p, unsigned *value)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned h = hex_value(peek(p));
        if (h > 15) {
            FAIL(p, "\\u must be followed by four hexadecimal digits");
            return -1;
        }
        v = v * 16 + h;
        advance(p);
    }
    *value = v;
    return 0;
}

static size_t put_utf8(unsigned char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads a string literal at p->pos (the opening quote). Decoded text never
 * grows beyond the literal, so the literal's length bounds the buffer. */
static const char *read_string(parser_t *p, size_t *length_p)
{
    uint32_t line = p->line, column = p->column;
    size_t start = p->pos, end = start + 1;
    unsigned char *out;
    size_t n = 0;

    /* Find the closing quote first, to size the buffer. */
    while (end < p->length && p->text[end] != '"') {
        if (p->text[end] == '\\' && end + 1 < p->length)
            end++;
        end++;
    }
    out = arena_alloc(p->doc, end - start + 1);
    if (out == NULL) {
        fail_nomem(p);
        return NULL;
    }
    advance(p); /* opening quote */
    for (;;) {
        int c = peek(p);
        if (c == -1) {
            fail_at(p, line, column, "unterminated string");
            return NULL;
        }
        if (c == '"') {
            advance(p);
            break;
        }
        if (c < 0x20) {
            FAIL(p, "control character 0x%02x inside a string (write it as an escape)", c);
            return NULL;
        }
        if (c != '\\') {
            out[n++] = (unsigned char)c;
            advance(p);
            continue;
        }
        advance(p);
        c = peek(p);
        switch (c) {
        case '"': case '\\': case '/':
            out[n++] = (unsigned char)c;
            advance(p);
            break;
        case 'b': out[n++] = '\b'; advance(p); break;
        case 'f': out[n++] = '\f'; advance(p); break;
        case 'n': out[n++] = '\n'; advance(p); break;
        case 'r': out[n++] = '\r'; advance(p); break;
        case 't': out[n++] = '\t'; advance(p); break;
        case 'u': {
            unsigned cp, low;
            advance(p);
            if (read_hex4(p, &cp) != 0)
                return NULL;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (peek(p) != '\\' || p->pos + 1 >= p->length || p->text[p->pos + 1] != 'u') {
                    FAIL(p, "unpaired UTF-16 surrogate \\u%04X", cp);
                    return NULL;
                }
                advance(p);
                advance(p);
                if (read_hex4(p, &low) != 0)
                    return NULL;
                if (low < 0xDC00 || low > 0xDFFF) {
                    FAIL(p, "unpaired UTF-16 surrogate \\u%04X", cp);
                    return NULL;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                FAIL(p, "unpaired UTF-16 surrogate \\u%04X", cp);
                return NULL;
            } else if (cp == 0) {
                FAIL(p, "\\u0000 (NUL) is not allowed in a config string");
                return NULL;
            }
            n += put_utf8(out + n, cp);
            break;
        }
        default: {
            char what[32];
            describe_char(c, what, sizeof(what));
            FAIL(p, "invalid escape: backslash followed by %s", what);
            return NULL;
        }
        }
    }
    out[n] = '\0';
    *length_p = n;
    return (const char *)out;
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static zero_config_json_node_t *read_number(parser_t *p)
{
    zero_config_json_node_t *n = new_node(p, ZERO_CONFIG_JSON_NUMBER);
    size_t start = p->pos;
    char *lexeme, *end = NULL;
    locale_t loc;
    if (n == NULL)
        return NULL;
    n->integral = true;
    if (peek(p) == '-')
        advance(p);
    if (peek(p) == '0') {
        advance(p);
        if (is_digit(peek(p))) {
            FAIL(p, "invalid number: leading zeros are not allowed");
            return NULL;
        }
    } else if (is_digit(peek(p))) {
        while (is_digit(peek(p)))
            advance(p);
    } else {
        FAIL(p, "invalid number: expected a digit");
        return NULL;
    }
    if (peek(p) == '.') {
        n->integral = false;
        advance(p);
        if (!is_digit(peek(p))) {
            FAIL(p, "invalid number: expected a digit after '.'");
            return NULL;
        }
        while (is_digit(peek(p)))
            advance(p);
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        n->integral = false;
        advance(p);
        if (peek(p) == '+' || peek(p) == '-')
            advance(p);
        if (!is_digit(peek(p))) {
            FAIL(p, "invalid number: expected a digit in the exponent");
            return NULL;
        }
        while (is_digit(peek(p)))
            advance(p);
    }
    lexeme = arena_alloc(p->doc, p->pos - start + 1);
    if (lexeme == NULL) {
        fail_nomem(p);
        return NULL;
    }
    memcpy(lexeme, p->text + start, p->pos - start);
    lexeme[p->pos - start] = '\0';
    n->text = lexeme;
    n->text_length = p->pos - start;
    loc = get_c_locale();
    n->number = loc ? strtod_l(lexeme, &end, loc) : strtod(lexeme, &end);
    if (!isfinite(n->number)) { /* inf: the only non-finite value this grammar can produce */
        fail_at(p, n->line, n->column, "number %s is out of range", lexeme);
        return NULL;
    }
    return n;
}

static int literal(parser_t *p, const char *word)
{
    size_t len = strlen(word);
    if (p->length - p->pos < len || memcmp(p->text + p->pos, word, len) != 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        advance(p);
    return 1;
}

static zero_config_json_node_t *read_value(parser_t *p, int depth);

static void append_child(zero_config_json_node_t *parent, zero_config_json_node_t *child)
{
    if (parent->last)
        parent->last->next = child;
    else
        parent->first = child;
    parent->last = child;
    parent->count++;
}

static zero_config_json_node_t *read_object(parser_t *p, int depth)
{
    zero_config_json_node_t *obj = new_node(p, ZERO_CONFIG_JSON_OBJECT);
    if (obj == NULL)
        return NULL;
    advance(p); /* { */
    skip_space(p);
    if (peek(p) == '}') {
        advance(p);
        return obj;
    }
    for (;;) {
        uint32_t key_line, key_column;
        const char *key;
        size_t key_length;
        zero_config_json_node_t *value;
        char what[32];

        if (p->status != ZERO_OK)
            return NULL;
        if (peek(p) != '"') {
            describe_char(peek(p), what, sizeof(what));
            if (peek(p) == '}')
                FAIL(p, "trailing comma before '}'");
            else
                FAIL(p, "expected a key in double quotes, found %s", what);
            return NULL;
        }
        key_line = p->line;
        key_column = p->column;
        key = read_string(p, &key_length);
        if (key == NULL)
            return NULL;
        skip_space(p);
        if (p->status != ZERO_OK)
            return NULL;
        if (peek(p) != ':') {
            describe_char(peek(p), what, sizeof(what));
            FAIL(p, "expected ':' after key \"%.64s\", found %s", key, what);
            return NULL;
        }
        advance(p);
        skip_space(p);
        if (p->status != ZERO_OK)
            return NULL;
        value = read_value(p, depth + 1);
        if (value == NULL)
            return NULL;
        value->key = key;
        value->key_line = key_line;
        value->key_column = key_column;
        append_child(obj, value);
        skip_space(p);
        if (p->status != ZERO_OK)
            return NULL;
        if (peek(p) == ',') {
            advance(p);
            skip_space(p);
            continue;
        }
        if (peek(p) == '}') {
            advance(p);
            return obj;
        }
        describe_char(peek(p), what, sizeof(what));
        FAIL(p, "expected ',' or '}' after the value of \"%.64s\", found %s", key, what);
        return NULL;
    }
}

static zero_config_json_node_t *read_array(parser_t *p, int depth)
{
    zero_config_json_node_t *arr = new_node(p, ZERO_CONFIG_JSON_ARRAY);
    if (arr == NULL)
        return NULL;
    advance(p); /* [ */
    skip_space(p);
    if (peek(p) == ']') {
        advance(p);
        return arr;
    }
    for (;;) {
        zero_config_json_node_t *value;
        char what[32];
        if (p->status != ZERO_OK)
            return NULL;
        if (peek(p) == ']') {
            FAIL(p, "trailing comma before ']'");
            return NULL;
        }
        value = read_value(p, depth + 1);
        if (value == NULL)
            return NULL;
        append_child(arr, value);
        skip_space(p);
        if (p->status != ZERO_OK)
            return NULL;
        if (peek(p) == ',') {
            advance(p);
            skip_space(p);
            continue;
        }
        if (peek(p) == ']') {
            advance(p);
            return arr;
        }
        describe_char(peek(p), what, sizeof(what));
        FAIL(p, "expected ',' or ']' in an array, found %s", what);
        return NULL;
    }
}

static zero_config_json_node_t *read_value(parser_t *p, int depth)
{
    int c = peek(p);
    zero_config_json_node_t *n;
    char what[32];

    if (p->status != ZERO_OK)
        return NULL;
    if ((c == '{' || c == '[') && depth >= ZERO_CONFIG_MAX_DEPTH) {
        FAIL(p, "nesting deeper than %d levels", ZERO_CONFIG_MAX_DEPTH);
        return NULL;
    }
    switch (c) {
    case '{':
        return read_object(p, depth);
    case '[':
        return read_array(p, depth);
    case '"':
        n = new_node(p, ZERO_CONFIG_JSON_STRING);
        if (n == NULL)
            return NULL;
        n->text = read_string(p, &n->text_length);
        return n->text ? n : NULL;
    case 't':
    case 'f':
    case 'n':
        n = new_node(p, c == 'n' ? ZERO_CONFIG_JSON_NULL : ZERO_CONFIG_JSON_BOOL);
        if (n == NULL)
            return NULL;
        if (literal(p, "true")) {
            n->boolean = true;
            return n;
        }
        if (literal(p, "false") || literal(p, "null"))
            return n;
        break;
    default:
        if (c == '-' || is_digit(c))
            return read_number(p);
        break;
    }
    describe_char(c, what, sizeof(what));
    if (c >= 'a' && c <= 'z')
        FAIL(p, "expected a value, found a bare word (strings need double quotes)");
    else
        FAIL(p, "expected a value, found %s", what);
    return NULL;
}

/* One pass over the raw bytes: NUL and malformed UTF-8 are rejected before
 * anything else looks at the text. */
static int check_encoding(parser_t *p)
{
    const unsigned char *s = p->text;
    size_t n = p->length;
    uint32_t line = 1, column = 1;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t need;
        unsigned cp, min;
        if (c == 0) {
            fail_at(p, line, column, "NUL byte in the config: not a text file");
            return -1;
        }
        if (c < 0x80) {
            if (c == '\n') {
                line++;
                column = 1;
            } else {
                column++;
            }
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; min = 0x10000; }
        else {
            fail_at(p, line, column, "invalid UTF-8 byte 0x%02x", c);
            return -1;
        }
        if (n - i <= need) {
            fail_at(p, line, column, "truncated UTF-8 sequence at the end of the input");
            return -1;
        }
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                fail_at(p, line, column, "invalid UTF-8 sequence (byte 0x%02x)", c);
                return -1;
            }
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            fail_at(p, line, column, "invalid UTF-8 sequence (overlong, surrogate or out of range)");
            return -1;
        }
        i += need + 1;
        column++;
    }
    return 0;
}

zero_status_t zero_config_json_parse(const char *text, size_t length, zero_config_json_doc_t **doc_p,
                                     zero_config_json_error_t *error)
{
    parser_t p;
    zero_config_json_node_t *root;
    memset(error, 0, sizeof(*error));
    memset(&p, 0, sizeof(p));
    p.text = (const unsigned char *)text;
    p.length = length;
    p.line = 1;
    p.column = 1;
    p.error = error;
    if (length > ZERO_CONFIG_MAX_BYTES) {
        fail_at(&p, 0, 0, "config is %zu bytes, more than the limit of %u bytes", length,
                (unsigned)ZERO_CONFIG_MAX_BYTES);
        return p.status;
    }
    if (check_encoding(&p) != 0)
        return p.status;
    p.doc = zero_calloc(1, sizeof(*p.doc));
    if (p.doc == NULL) {
        fail_nomem(&p);
        return p.status;
    }
    /* A UTF-8 byte order mark is tolerated (editors on some systems write one). */
    if (length >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        p.pos = 3;
    skip_space(&p);
    if (p.status == ZERO_OK && peek(&p) == -1)
        FAIL(&p, "empty config: expected a JSON object");
    if (p.status == ZERO_OK && peek(&p) != '{') {
        char what[32];
        describe_char(peek(&p), what, sizeof(what));
        FAIL(&p, "the config must be a JSON object ('{ ... }'), found %s", what);
    }
    root = p.status == ZERO_OK ? read_value(&p, 0) : NULL;
    if (p.status == ZERO_OK) {
        skip_space(&p);
        if (p.status == ZERO_OK && peek(&p) != -1)
            FAIL(&p, "unexpected text after the end of the top-level object");
    }
    if (p.status != ZERO_OK) {
        zero_config_json_free(p.doc);
        return p.status;
    }
    p.doc->root = root;
    *doc_p = p.doc;
    return ZERO_OK;
}

zero_config_json_node_t *zero_config_json_find(const zero_config_json_node_t *object, const char *key)
{
    if (object == NULL || object->kind != ZERO_CONFIG_JSON_OBJECT)
        return NULL;
    for (zero_config_json_node_t *m = object->first; m; m = m->next)
        if (strcmp(m->key, key) == 0)
            return m;
    return NULL;
}
