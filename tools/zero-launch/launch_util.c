#define ZERO_LOG_MODULE "launch"
#include "launch_util.h"

#include "util/alloc.h"
#include "util/checks.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

zero_status_t zero_launch_file_read(const char *path, int missing_is_error, char **text_p)
{
    zero_status_t status = ZERO_OK;
    struct stat st;
    char *text = NULL;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 && errno == ENOENT && !missing_is_error)
        return ZERO_ERR_NOT_FOUND;
    ZERO_ERRNO_CHECK_GOTO(fd >= 0, status, out, "%s: cannot open", path);
    ZERO_ERRNO_CHECK_GOTO(fstat(fd, &st) == 0, status, out_close, "%s: cannot stat", path);
    ZERO_REQUIRE_GOTO(S_ISREG(st.st_mode), ZERO_ERR_IO, status, out_close, "%s: not a regular file", path);
    ZERO_REQUIRE_GOTO((unsigned long long)st.st_size <= ZERO_LAUNCH_MAX_FILE_BYTES, ZERO_ERR_IO, status,
                      out_close, "%s: %lld bytes, more than the %u allowed", path, (long long)st.st_size,
                      ZERO_LAUNCH_MAX_FILE_BYTES);
    text = zero_malloc((size_t)st.st_size + 1);
    ZERO_REQUIRE_GOTO(text != NULL, ZERO_ERR_NO_MEMORY, status, out_close, "%s: out of memory", path);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        ZERO_ERRNO_CHECK_GOTO(n >= 0, status, out_free, "%s: cannot read", path);
        if (n == 0)
            break; /* the file shrank while we read it: take what is there */
        got += (size_t)n;
    }
    text[got] = '\0';
    ZERO_REQUIRE_GOTO(strlen(text) == got, ZERO_ERR_CONFIG, status, out_free,
                      "%s: contains a NUL byte (not a text file)", path);
    *text_p = text;
    text = NULL;
out_free:
    zero_free(text);
out_close:
    close(fd);
out:
    return status;
}

int zero_launch_parse_long(const char *text, long min, long max, long *value_p)
{
    char *end = NULL;
    long value;
    if (text == NULL || *text == '\0' || *text == ' ' || *text == '\t' || *text == '+')
        return -1;
    if (*text == '-' && min >= 0)
        return -1;
    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
        return -1;
    *value_p = value;
    return 0;
}

void zero_launch_trim(const char **begin, const char **end)
{
    while (*begin < *end && (**begin == ' ' || **begin == '\t' || **begin == '\r'))
        (*begin)++;
    while (*end > *begin && ((*end)[-1] == ' ' || (*end)[-1] == '\t' || (*end)[-1] == '\r'))
        (*end)--;
}
