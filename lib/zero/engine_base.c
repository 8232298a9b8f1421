/*
 * What every engine file uses: recording the engine's last error, and waiting
 * for a collective with the failure turned into the engine's FAILED state.
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_internal.h"

#include "util/log.h"

#include <stdio.h>

void engine_error(zero_engine_h e, zero_status_t status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->last_error, sizeof(e->last_error), fmt, ap);
    va_end(ap);
    ZERO_LOG_ERROR("%s (%s)", e->last_error, zero_status_string(status));
}

void engine_keep_error(zero_engine_h e, uint64_t mark, const char *fmt, ...)
{
    const char *detected = zero_log_error_since(mark);
    va_list ap;
    if (detected != NULL) {
        snprintf(e->last_error, sizeof(e->last_error), "%s", detected);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(e->last_error, sizeof(e->last_error), fmt, ap);
    va_end(ap);
}

zero_status_t engine_wait(zero_engine_h e, zero_comm_request_h *req, const char *what)
{
    zero_status_t status;
    uint64_t mark;
    if (*req == NULL)
        return ZERO_OK;
    mark = zero_log_error_mark();
    status = zero_comm_request_wait(*req);
    zero_comm_request_free(*req);
    *req = NULL;
    if (status != ZERO_OK) {
        e->state = ENGINE_FAILED;
        /* Usually detected on the progress thread, which logged it there. */
        engine_keep_error(e, mark, "%s failed: %s", what, zero_status_string(status));
    }
    return status;
}
