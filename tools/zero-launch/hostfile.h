/*
 * Hostfile parsing (DeepSpeed/MPI style):
 *
 *     # comment
 *     worker-1 slots=4
 *     worker-2 slots=4   # trailing comments are allowed too
 *
 * One host per line, a name and "slots=N" (1 <= N <= ZERO_LAUNCH_MAX_SLOTS)
 * separated by spaces or tabs; '#' starts a comment; blank lines are ignored.
 * A duplicate host, a malformed line, a host name containing one of the
 * characters the include/exclude grammar reserves (@ : , = #) and a file with
 * no hosts are errors (ZERO_ERR_CONFIG) whose message names source:line.
 */
#ifndef ZERO_LAUNCH_HOSTFILE_H
#define ZERO_LAUNCH_HOSTFILE_H

#include <stddef.h>
#include <zero/status.h>

#define ZERO_LAUNCH_MAX_SLOTS 4096

typedef struct zero_launch_host {
    char *name;       /* owned */
    int slots;        /* >= 1 */
    unsigned line;    /* 1-based line in the source */
} zero_launch_host_t;

typedef struct zero_launch_hostfile {
    zero_launch_host_t *hosts; /* in file order */
    size_t count;              /* >= 1 */
} zero_launch_hostfile_t;

/*
 * Parses @p text; @p source names it in messages (usually the path).
 * On success *hostfile_p owns everything (release with
 * zero_launch_hostfile_destroy); on failure nothing is allocated, the cause
 * is logged once, and the status is ZERO_ERR_CONFIG (or ZERO_ERR_NO_MEMORY).
 */
zero_status_t zero_launch_hostfile_parse(const char *text, const char *source,
                                         zero_launch_hostfile_t **hostfile_p);

/* Reads and parses @p path; a missing file is ZERO_ERR_NOT_FOUND (logged). */
zero_status_t zero_launch_hostfile_load(const char *path, zero_launch_hostfile_t **hostfile_p);

/* NULL is allowed. */
void zero_launch_hostfile_destroy(zero_launch_hostfile_t *hostfile);

#endif /* ZERO_LAUNCH_HOSTFILE_H */
