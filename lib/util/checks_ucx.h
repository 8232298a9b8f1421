/* UCX status translation (see util/checks.h for the pattern). */
#ifndef ZERO_UTIL_CHECKS_UCX_H
#define ZERO_UTIL_CHECKS_UCX_H

#include <ucs/type/status.h>
#include "util/checks.h"

zero_status_t zero_status_from_ucs(ucs_status_t status);

#define ZERO_UCS_CHECK_GOTO(expr, status_var, label, fmt, ...) \
    do { \
        ucs_status_t zero_check_ucs_ = (expr); \
        if (zero_check_ucs_ != UCS_OK && zero_check_ucs_ != UCS_INPROGRESS) { \
            ZERO_LOG_ERROR(fmt ": %s", ##__VA_ARGS__, ucs_status_string(zero_check_ucs_)); \
            (status_var) = zero_status_from_ucs(zero_check_ucs_); \
            goto label; \
        } \
    } while (0)

#endif /* ZERO_UTIL_CHECKS_UCX_H */
