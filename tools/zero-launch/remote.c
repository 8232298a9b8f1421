#define ZERO_LOG_MODULE "launch"
#include "remote.h"

#include "util/alloc.h"
#include "util/checks.h"
#include "util/log.h"

#include <stdio.h>
#include <string.h>

char *zero_launch_shell_quote(const char *s)
{
    size_t n = 2, i = 0;
    char *q;
    for (const char *p = s; *p; p++)
        n += *p == '\'' ? 4 : 1;
    q = zero_malloc(n + 1);
    if (q == NULL)
        return NULL;
    q[i++] = '\'';
    for (const char *p = s; *p; p++) {
        if (*p == '\'') {
            memcpy(q + i, "'\\''", 4);
            i += 4;
        } else {
            q[i++] = *p;
        }
    }
    q[i++] = '\'';
    q[i] = '\0';
    return q;
}

typedef struct strbuf {
    char *data;
    size_t len, cap;
} strbuf_t;

static int sb_append(strbuf_t *sb, const char *s)
{
    size_t n = strlen(s);
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 256;
        char *grown;
        while (sb->len + n + 1 > cap)
            cap *= 2;
        grown = zero_realloc(sb->data, cap);
        if (grown == NULL)
            return -1;
        sb->data = grown;
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, s, n + 1);
    sb->len += n;
    return 0;
}

/* Appends " 'word'" (the space only between words). */
static int sb_append_word(strbuf_t *sb, const char *word)
{
    char *q = zero_launch_shell_quote(word);
    int rc = q == NULL || (sb->len > 0 && sb_append(sb, " ") != 0) || sb_append(sb, q) != 0 ? -1 : 0;
    zero_free(q);
    return rc;
}

zero_status_t zero_launch_remote_command(const zero_launch_remote_params_t *params, char **command_p)
{
    strbuf_t sb = {0};
    int rc = sb_append(&sb, "exec");
    rc = rc || sb_append_word(&sb, params->launcher_path) || sb_append(&sb, " --remote_exec --cwd") ||
         sb_append_word(&sb, params->cwd) || sb_append(&sb, " --term_grace") ||
         sb_append_word(&sb, params->term_grace);
    if (!rc && params->env_stdin)
        rc = sb_append(&sb, " --env_stdin");
    for (size_t i = 0; !rc && !params->env_stdin && i < params->env->count; i++) {
        char *kv = zero_asprintf("%s=%s", params->env->keys[i], params->env->values[i]);
        rc = kv == NULL || sb_append_word(&sb, kv);
        zero_free(kv);
    }
    rc = rc || sb_append(&sb, " --");
    for (size_t i = 0; !rc && params->argv[i] != NULL; i++)
        rc = sb_append_word(&sb, params->argv[i]);
    if (rc) {
        zero_free(sb.data);
        ZERO_LOG_ERROR("out of memory building a remote command line");
        return ZERO_ERR_NO_MEMORY;
    }
    *command_p = sb.data;
    return ZERO_OK;
}

void zero_launch_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (size_t i = 0; argv[i] != NULL; i++)
        zero_free(argv[i]);
    zero_free(argv);
}

static int argv_push(char ***argv, size_t *n, const char *word, size_t len)
{
    char **grown = zero_realloc(*argv, (*n + 2) * sizeof(char *));
    if (grown == NULL)
        return -1;
    *argv = grown;
    grown[*n] = zero_strndup(word, len);
    grown[*n + 1] = NULL;
    if (grown[*n] == NULL)
        return -1;
    (*n)++;
    return 0;
}

zero_status_t zero_launch_remote_argv(const char *launcher, const char *host, int ssh_port, const char *ssh_opts,
                                      const char *command, char ***argv_p, char **pdsh_ssh_args_p)
{
    char **argv = NULL, **opts = NULL;
    size_t n = 0, n_opts = 0;
    char port[16];
    int rc = 0;
    int pdsh = strcmp(launcher, "pdsh") == 0;
    strbuf_t sb = {0};

    snprintf(port, sizeof(port), "%d", ssh_port);
    if (ssh_port > 0)
        rc = rc || argv_push(&opts, &n_opts, "-p", 2) || argv_push(&opts, &n_opts, port, strlen(port));
    rc = rc || argv_push(&opts, &n_opts, "-o", 2) || argv_push(&opts, &n_opts, "BatchMode=yes", 13);
    for (const char *p = ssh_opts; !rc && p != NULL && *p;) {
        size_t len;
        p += strspn(p, " \t\n");
        len = strcspn(p, " \t\n");
        if (len > 0)
            rc = argv_push(&opts, &n_opts, p, len);
        p += len;
    }
    if (pdsh) {
        rc = rc || argv_push(&argv, &n, "pdsh", 4) || argv_push(&argv, &n, "-S", 2) ||
             argv_push(&argv, &n, "-R", 2) || argv_push(&argv, &n, "ssh", 3) || argv_push(&argv, &n, "-w", 2) ||
             argv_push(&argv, &n, host, strlen(host)) || argv_push(&argv, &n, command, strlen(command));
        for (size_t i = 0; !rc && i < n_opts; i++)
            rc = (i && sb_append(&sb, " ")) || sb_append(&sb, opts[i]);
    } else {
        rc = rc || argv_push(&argv, &n, "ssh", 3);
        for (size_t i = 0; !rc && i < n_opts; i++)
            rc = argv_push(&argv, &n, opts[i], strlen(opts[i]));
        rc = rc || argv_push(&argv, &n, host, strlen(host)) || argv_push(&argv, &n, command, strlen(command));
    }
    zero_launch_argv_free(opts);
    if (rc) {
        zero_launch_argv_free(argv);
        zero_free(sb.data);
        ZERO_LOG_ERROR("out of memory building the %s command line for %s", launcher, host);
        return ZERO_ERR_NO_MEMORY;
    }
    *argv_p = argv;
    *pdsh_ssh_args_p = sb.data;
    return ZERO_OK;
}

zero_status_t zero_launch_env_serialize(const zero_launch_env_t *env, char **data_p, size_t *len_p)
{
    size_t len = 1, used = 0;
    char *data;
    for (size_t i = 0; i < env->count; i++)
        len += strlen(env->keys[i]) + strlen(env->values[i]) + 2;
    data = zero_malloc(len);
    if (data == NULL) {
        ZERO_LOG_ERROR("out of memory serialising %zu variables", env->count);
        return ZERO_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < env->count; i++)
        used += (size_t)sprintf(data + used, "%s=%s", env->keys[i], env->values[i]) + 1;
    data[used++] = '\0';
    *data_p = data;
    *len_p = used;
    return ZERO_OK;
}

long zero_launch_env_deserialize(const char *data, size_t len, zero_launch_env_t *env)
{
    size_t pos = 0;
    while (pos < len) {
        const char *entry = data + pos, *nul = memchr(entry, '\0', len - pos), *eq;
        char *key;
        int ok;
        if (nul == NULL)
            return 0;
        if (nul == entry)
            return (long)(pos + 1); /* the empty entry ends the block */
        eq = memchr(entry, '=', (size_t)(nul - entry));
        if (eq == NULL || !zero_launch_env_key_valid(entry, (size_t)(eq - entry)))
            return -1;
        key = zero_strndup(entry, (size_t)(eq - entry));
        ok = key != NULL && zero_launch_env_set(env, key, eq + 1) == ZERO_OK;
        zero_free(key);
        if (!ok)
            return -1;
        pos = (size_t)(nul - data) + 1;
    }
    return 0;
}
