/*
 * Building the command lines of remote ranks.
 *
 * A remote rank runs as
 *     ssh [-p PORT] -o BatchMode=yes [$ZERO_LAUNCH_SSH_OPTS] HOST 'COMMAND'
 * where COMMAND is
 *     exec 'ZERO_LAUNCH' --remote_exec --cwd 'CWD' --term_grace 'G' [--watch_stdin]
 *          'KEY=VALUE'... -- 'PROGRAM' 'ARG'...
 * Every word is single-quoted (a ' inside becomes '\''), so the remote login
 * shell (any POSIX shell) passes each one through unchanged: no expansion,
 * no word splitting. zero-launch's --remote_exec mode (see zero-launch.c) then
 * changes directory, sets the variables and runs the program without a shell.
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
    int watch_stdin;             /* end the rank when stdin closes (ssh) */
    const zero_launch_env_t *env;/* variables to set */
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

#endif /* ZERO_LAUNCH_REMOTE_H */
