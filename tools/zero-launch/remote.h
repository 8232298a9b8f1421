/*
 * Building the command lines of remote ranks.
 *
 * A remote rank runs as
 *     ssh [-p PORT] -o BatchMode=yes [$ZERO_LAUNCH_SSH_OPTS] HOST 'COMMAND'
 * where COMMAND is
 *     exec 'ZERO_LAUNCH' --remote_exec --cwd 'CWD' --term_grace 'G' --env_stdin
 *          -- 'PROGRAM' 'ARG'...                                        (ssh)
 *     exec 'ZERO_LAUNCH' --remote_exec --cwd 'CWD' --term_grace 'G'
 *          'KEY=VALUE'... -- 'PROGRAM' 'ARG'...                         (pdsh)
 * Every word is single-quoted (a ' inside becomes '\''), so the remote login
 * shell (any POSIX shell) passes each one through unchanged: no expansion,
 * no word splitting. With ssh the variables (the job token among them) do not
 * appear on any command line: they travel on the session's stdin as
 * "KEY=VALUE\0...\0\0" (zero_launch_env_serialize), and the stdin staying
 * open is what keeps the rank alive. zero-launch's --remote_exec mode (see
 * zero-launch.c) changes directory, sets the variables and runs the program
 * without a shell.
 */
#ifndef ZERO_LAUNCH_REMOTE_H
#define ZERO_LAUNCH_REMOTE_H

#include <zero/status.h>

#include "envfile.h"

/* @p s single-quoted for a POSIX shell (counted string, zero_free); NULL
 * when out of memory. */
char *zero_launch_shell_quote(const char *s);

typedef struct zero_launch_remote_params {
    const char *launcher_path;   /* zero-launch on the remote host (same path) */
    const char *cwd;             /* directory to run in */
    const char *term_grace;      /* seconds, as given on the command line */
    int env_stdin;               /* ssh: variables come on stdin, and the rank
                                    ends when stdin closes; else (pdsh) they
                                    are words of the command */
    const zero_launch_env_t *env;/* variables to set (pdsh) */
    char *const *argv;           /* program and arguments, NULL-terminated */
} zero_launch_remote_params_t;

/* The COMMAND string above (counted string in *command_p, zero_free). */
zero_status_t zero_launch_remote_command(const zero_launch_remote_params_t *params, char **command_p);

/*
 * argv for running @p command on @p host through ssh ("ssh") or pdsh
 * ("pdsh"), NULL-terminated, counted (release with zero_launch_argv_free).
 * @p ssh_port 0 leaves the port to ssh's configuration; @p ssh_opts (may be
 * NULL) is split at blanks into extra ssh arguments. For pdsh the ssh
 * options travel in PDSH_SSH_ARGS_APPEND, which the caller sets from
 * *pdsh_ssh_args_p (counted, NULL for ssh).
 */
zero_status_t zero_launch_remote_argv(const char *launcher, const char *host, int ssh_port, const char *ssh_opts,
                                      const char *command, char ***argv_p, char **pdsh_ssh_args_p);

void zero_launch_argv_free(char **argv);

/*
 * @p env as "KEY=VALUE\0" entries followed by one more "\0" (counted buffer in
 * *data_p, zero_free; its length in *len_p).
 */
zero_status_t zero_launch_env_serialize(const zero_launch_env_t *env, char **data_p, size_t *len_p);

/*
 * Parses a zero_launch_env_serialize block of @p len bytes into @p env.
 * Returns the bytes consumed (through the final NUL), 0 when the block is
 * not complete yet, or -1 when an entry is not KEY=VALUE with a valid key.
 */
long zero_launch_env_deserialize(const char *data, size_t len, zero_launch_env_t *env);

#endif /* ZERO_LAUNCH_REMOTE_H */
