/*
 * HDF5 error translation (see util/checks.h for the pattern). HDF5 calls
 * return a negative herr_t or hid_t on failure; the message names the file
 * and dataset. HDF5's own error stack printing is turned off by the checkpoint
 * module so that each error reaches the user once, through libzero's log.
 */
#ifndef ZERO_UTIL_CHECKS_HDF5_H
#define ZERO_UTIL_CHECKS_HDF5_H

#include <hdf5.h>
#include "util/checks.h"

/* The innermost message on HDF5's error stack (e.g. "checksum error"), into buf. */
void zero_hdf5_last_error(char *buf, size_t size);

#define ZERO_H5_CHECK_GOTO(expr, status_var, label, fmt, ...) \
    do { \
        if ((expr) < 0) { \
            char zero_check_h5_[256]; \
            zero_hdf5_last_error(zero_check_h5_, sizeof(zero_check_h5_)); \
            ZERO_LOG_ERROR(fmt ": %s", ##__VA_ARGS__, zero_check_h5_); \
            (status_var) = ZERO_ERR_HDF5; \
            goto label; \
        } \
    } while (0)

#endif /* ZERO_UTIL_CHECKS_HDF5_H */
