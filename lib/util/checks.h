/*
 * Check macros: translate a foreign error into a zero_status_t at the
 * boundary, log it once with its cause, and jump to the clean-up label.
 * The pattern (NCCL's checks.h): the status variable is set before every jump.
 *
 *   zero_status_t status = ZERO_OK;
 *   int fd = open(path, O_RDONLY);
 *   ZERO_ERRNO_CHECK_GOTO(fd >= 0, status, out, "open %s", path);
 *   ...
 * out:
 *   return status;
 *
 * Library-specific variants live beside their library so that a module pulls
 * in only the headers it uses: util/checks_ucx.h, util/checks_cuda.h (CUDA and
 * NCCL), util/checks_hdf5.h (the one reader of HDF5's error stack; lib/ckpt
 * reports HDF5 failures through ckpt_fail_h5, which records the first error of
 * a rank for the cross-rank agreement and takes its cause from there). These
 * translators are the only errno, UCX and HDF5 maps in lib/: grep before adding one.
 */
#ifndef ZERO_UTIL_CHECKS_H
#define ZERO_UTIL_CHECKS_H

#include <errno.h>
#include <string.h>
#include <zero/status.h>
#include "util/log.h"

/* Maps an errno value to the closest status (ENOMEM -> NO_MEMORY, ETIMEDOUT -> TIMEOUT, ...). */
zero_status_t zero_status_from_errno(int err);

/* Propagates a libzero status; the callee has already logged it. */
#define ZERO_CHECK_GOTO(expr, status_var, label) \
    do { \
        zero_status_t zero_check_s_ = (expr); \
        if (zero_check_s_ != ZERO_OK) { \
            (status_var) = zero_check_s_; \
            goto label; \
        } \
    } while (0)

/* Fails with the given status and message when @p cond is false. */
#define ZERO_REQUIRE_GOTO(cond, err_status, status_var, label, ...) \
    do { \
        if (!(cond)) { \
            ZERO_LOG_ERROR(__VA_ARGS__); \
            (status_var) = (err_status); \
            goto label; \
        } \
    } while (0)

/* A libc call that reports failure through errno: @p ok_cond says success. */
#define ZERO_ERRNO_CHECK_GOTO(ok_cond, status_var, label, fmt, ...) \
    do { \
        if (!(ok_cond)) { \
            int zero_check_errno_ = errno; \
            ZERO_LOG_ERROR(fmt ": %s", ##__VA_ARGS__, strerror(zero_check_errno_)); \
            (status_var) = zero_status_from_errno(zero_check_errno_); \
            goto label; \
        } \
    } while (0)

#endif /* ZERO_UTIL_CHECKS_H */
