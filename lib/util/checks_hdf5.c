#include "util/checks_hdf5.h"

#include <stdio.h>

typedef struct walk_state {
    char *buf;
    size_t size;
} walk_state_t;

/* Walks outward from the innermost error, keeping the first (most specific) one. */
static herr_t keep_innermost(unsigned n, const H5E_error2_t *err, void *data)
{
    walk_state_t *state = data;
    if (n == 0 && err->desc != NULL)
        snprintf(state->buf, state->size, "%s", err->desc);
    return 0;
}

void zero_hdf5_last_error(char *buf, size_t size)
{
    walk_state_t state = {buf, size};
    if (size == 0)
        return;
    snprintf(buf, size, "HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, keep_innermost, &state);
}
