/*
 * Environment lists and the DeepSpeed environment file (.deepspeed_env).
 *
 * File format, one entry a line:
 *     # comment (a line whose first non-blank character is '#')
 *     KEY=VALUE
 *     export KEY=VALUE        ("export " is accepted and ignored)
 * Blank lines are ignored. KEY is [A-Za-z_][A-Za-z0-9_]*, VALUE is everything
 * after the first '=', with blanks trimmed at both ends and one pair of
 * matching surrounding quotes ('...' or "...") removed; nothing else is
 * interpreted (no escapes, no $expansion): values are never given to a shell.
 * A later entry for the same KEY replaces the earlier one.
 */
#ifndef ZERO_LAUNCH_ENVFILE_H
#define ZERO_LAUNCH_ENVFILE_H

#include <stddef.h>
#include <zero/status.h>

/* An ordered KEY -> VALUE list; zero-initialise, release with _clear. */
typedef struct zero_launch_env {
    char **keys;
    char **values;
    size_t count;
} zero_launch_env_t;

/* Sets (or replaces, keeping its position) KEY. Copies both strings. */
zero_status_t zero_launch_env_set(zero_launch_env_t *env, const char *key, const char *value);

/* The value of @p key, or NULL. Valid until the entry is replaced or cleared. */
const char *zero_launch_env_get(const zero_launch_env_t *env, const char *key);

/* Frees every entry; the list is empty and reusable afterwards. */
void zero_launch_env_clear(zero_launch_env_t *env);

/* 1 if @p key is a valid variable name, else 0. */
int zero_launch_env_key_valid(const char *key, size_t len);

/*
 * Parses @p text (named @p source in messages) and sets its entries in
 * @p env. A malformed line is ZERO_ERR_CONFIG, logged as "source:line: ...";
 * entries before it have been set.
 */
zero_status_t zero_launch_envfile_parse(const char *text, const char *source, zero_launch_env_t *env);

/*
 * Reads @p path into @p env. A missing file is not an error: *found_p = 0.
 */
zero_status_t zero_launch_envfile_load(const char *path, zero_launch_env_t *env, int *found_p);

#endif /* ZERO_LAUNCH_ENVFILE_H */
