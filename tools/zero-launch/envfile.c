#define ZERO_LOG_MODULE "launch"
#include "envfile.h"
#include "launch_util.h"

#include "util/alloc.h"
#include "util/checks.h"
#include "util/log.h"

#include <string.h>

void zero_launch_env_clear(zero_launch_env_t *env)
{
    for (size_t i = 0; i < env->count; i++) {
        zero_free(env->keys[i]);
        zero_free(env->values[i]);
    }
    zero_free(env->keys);
    zero_free(env->values);
    env->keys = NULL;
    env->values = NULL;
    env->count = 0;
}

const char *zero_launch_env_get(const zero_launch_env_t *env, const char *key)
{
    for (size_t i = 0; i < env->count; i++)
        if (strcmp(env->keys[i], key) == 0)
            return env->values[i];
    return NULL;
}

zero_status_t zero_launch_env_set(zero_launch_env_t *env, const char *key, const char *value)
{
    char *v = zero_strdup(value);
    char *k = NULL;
    char **keys, **values;

    if (v == NULL)
        goto nomem;
    for (size_t i = 0; i < env->count; i++) {
        if (strcmp(env->keys[i], key) == 0) {
            zero_free(env->values[i]);
            env->values[i] = v;
            return ZERO_OK;
        }
    }
    k = zero_strdup(key);
    if (k == NULL)
        goto nomem;
    keys = zero_realloc(env->keys, (env->count + 1) * sizeof(char *));
    if (keys == NULL)
        goto nomem;
    env->keys = keys;
    values = zero_realloc(env->values, (env->count + 1) * sizeof(char *));
    if (values == NULL)
        goto nomem;
    env->values = values;
    env->keys[env->count] = k;
    env->values[env->count] = v;
    env->count++;
    return ZERO_OK;
nomem:
    zero_free(k);
    zero_free(v);
    ZERO_LOG_ERROR("out of memory setting %s", key);
    return ZERO_ERR_NO_MEMORY;
}

int zero_launch_env_key_valid(const char *key, size_t len)
{
    if (len == 0 || (key[0] >= '0' && key[0] <= '9'))
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

zero_status_t zero_launch_envfile_parse(const char *text, const char *source, zero_launch_env_t *env)
{
    zero_status_t status = ZERO_OK;
    const char *p = text;
    unsigned lineno = 0;
    char *key = NULL, *value = NULL;

    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        const char *line_end = eol ? eol : p + strlen(p);
        const char *b = p, *e = line_end, *eq, *kb, *ke, *vb, *ve;
        lineno++;
        p = eol ? eol + 1 : line_end;
        zero_launch_trim(&b, &e);
        if (b == e || *b == '#')
            continue;
        if ((size_t)(e - b) > 7 && memcmp(b, "export", 6) == 0 && (b[6] == ' ' || b[6] == '\t')) {
            b += 7;
            zero_launch_trim(&b, &e);
        }
        eq = memchr(b, '=', (size_t)(e - b));
        ZERO_REQUIRE_GOTO(eq != NULL, ZERO_ERR_CONFIG, status, out, "%s:%u: malformed line '%.*s' (expected KEY=VALUE)",
                          source, lineno, (int)(e - b), b);
        kb = b;
        ke = eq;
        zero_launch_trim(&kb, &ke);
        ZERO_REQUIRE_GOTO(zero_launch_env_key_valid(kb, (size_t)(ke - kb)), ZERO_ERR_CONFIG, status, out,
                          "%s:%u: invalid variable name '%.*s' (expected [A-Za-z_][A-Za-z0-9_]*)", source, lineno,
                          (int)(ke - kb), kb);
        vb = eq + 1;
        ve = e;
        zero_launch_trim(&vb, &ve);
        if (ve - vb >= 2 && (*vb == '"' || *vb == '\'') && ve[-1] == *vb) {
            vb++;
            ve--;
        }
        key = zero_strndup(kb, (size_t)(ke - kb));
        value = zero_strndup(vb, (size_t)(ve - vb));
        ZERO_REQUIRE_GOTO(key != NULL && value != NULL, ZERO_ERR_NO_MEMORY, status, out, "%s: out of memory",
                          source);
        ZERO_CHECK_GOTO(zero_launch_env_set(env, key, value), status, out);
        zero_free(key);
        zero_free(value);
        key = value = NULL;
    }
out:
    zero_free(key);
    zero_free(value);
    return status;
}

zero_status_t zero_launch_envfile_load(const char *path, zero_launch_env_t *env, int *found_p)
{
    char *text = NULL;
    zero_status_t status = zero_launch_file_read(path, 0, &text);
    if (status == ZERO_ERR_NOT_FOUND) {
        *found_p = 0;
        return ZERO_OK;
    }
    if (status != ZERO_OK)
        return status;
    status = zero_launch_envfile_parse(text, path, env);
    zero_free(text);
    if (status == ZERO_OK)
        *found_p = 1;
    return status;
}
