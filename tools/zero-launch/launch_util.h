/*
 * zero-launch internals shared by the parsers: reading a small text file and
 * parsing bounded integers. Not part of the public API.
 */
#ifndef ZERO_LAUNCH_UTIL_H
#define ZERO_LAUNCH_UTIL_H

#include <stddef.h>
#include <zero/status.h>

/* Files the launcher reads (hostfile, env file) are small; bigger is an error. */
#define ZERO_LAUNCH_MAX_FILE_BYTES (1u << 20)

/*
 * Reads @p path into a NUL-terminated counted string (*text_p, release with
 * zero_free). A missing file is ZERO_ERR_NOT_FOUND and is logged only when
 * @p missing_is_error is set; other failures (unreadable, too big, a NUL
 * byte inside) are always logged.
 */
zero_status_t zero_launch_file_read(const char *path, int missing_is_error, char **text_p);

/*
 * Parses a decimal integer in [min, max] that spans the whole of @p text
 * (no sign unless min < 0, no spaces). Returns 0 and writes *value_p, or -1.
 * Logs nothing: callers name the context.
 */
int zero_launch_parse_long(const char *text, long min, long max, long *value_p);

/* Trims ASCII spaces and tabs at both ends of [*begin, *end) in place. */
void zero_launch_trim(const char **begin, const char **end);

#endif /* ZERO_LAUNCH_UTIL_H */
