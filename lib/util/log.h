/*
 * Internal logging macros. Each module defines ZERO_LOG_MODULE before
 * including this header (default "zero"). The rule: log an error once, in the
 * function that detects it, with the exact cause; callers pass the status on.
 */
#ifndef ZERO_UTIL_LOG_H
#define ZERO_UTIL_LOG_H

#include <zero/log.h>
#include <zero/export.h>

#ifndef ZERO_LOG_MODULE
#define ZERO_LOG_MODULE "zero"
#endif

/* Cheap check callers can use to skip building expensive messages. */
int zero_log_enabled(zero_log_level_t level);

void zero_log_emit(zero_log_level_t level, const char *module, const char *fmt, ...)
    ZERO_PRINTF(3, 4);

/* The rank printed in every prefix; -1 (the default) prints no rank. */
void zero_log_set_rank(int rank);

#define ZERO_LOG_AT(level_, ...) \
    do { \
        if (zero_log_enabled(level_)) \
            zero_log_emit(level_, ZERO_LOG_MODULE, __VA_ARGS__); \
    } while (0)

#define ZERO_LOG_ERROR(...) ZERO_LOG_AT(ZERO_LOG_LEVEL_ERROR, __VA_ARGS__)
#define ZERO_LOG_WARN(...)  ZERO_LOG_AT(ZERO_LOG_LEVEL_WARN, __VA_ARGS__)
#define ZERO_LOG_INFO(...)  ZERO_LOG_AT(ZERO_LOG_LEVEL_INFO, __VA_ARGS__)
#define ZERO_LOG_DEBUG(...) ZERO_LOG_AT(ZERO_LOG_LEVEL_DEBUG, __VA_ARGS__)
#define ZERO_LOG_TRACE(...) ZERO_LOG_AT(ZERO_LOG_LEVEL_TRACE, __VA_ARGS__)

#endif /* ZERO_UTIL_LOG_H */
