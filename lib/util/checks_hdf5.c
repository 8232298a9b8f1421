#include "util/checks_hdf5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per thread, like the logger's last error. Serial HDF5 is process-global and
 * not thread-safe, but a thread-safe build keeps one stack per thread, and so
 * do we. */
static _Thread_local char h5_innermost[256];
static _Thread_local int h5_errno;

static herr_t keep_innermost(unsigned n, const H5E_error2_t *e, void *data)
{
    const char *at;
    (void)data;
    if (n == 0 && e->desc != NULL && e->desc[0] != '\0')
        snprintf(h5_innermost, sizeof(h5_innermost), "%s", e->desc);
    /* HDF5's file drivers write "errno = N" into their messages */
    if (h5_errno == 0 && e->desc != NULL && (at = strstr(e->desc, "errno = ")) != NULL)
        h5_errno = atoi(at + strlen("errno = "));
    return 0;
}

/* Called by HDF5 as a call fails, before anything can clear the stack. */
static herr_t on_h5_error(hid_t stack, void *data)
{
    (void)data;
    h5_innermost[0] = '\0';
    h5_errno = 0;
    H5Ewalk2(stack, H5E_WALK_UPWARD, keep_innermost, NULL);   /* upward: the most specific first */
    return 0;
}

void zero_hdf5_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, on_h5_error, NULL);
}

void zero_hdf5_last_error(char *buf, size_t size)
{
    if (buf == NULL || size == 0)
        return;
    if (h5_errno > 0)
        snprintf(buf, size, "%s (HDF5: %s)", strerror(h5_errno), h5_innermost[0] ? h5_innermost : "error");
    else
        snprintf(buf, size, "%s", h5_innermost[0] ? h5_innermost : "HDF5 error");
    for (char *c = buf; *c; c++)   /* HDF5 puts newlines inside some messages */
        if (*c == '\n')
            *c = ' ';
}
