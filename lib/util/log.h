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

#include <stdint.h>

/* Cheap check callers can use to skip building expensive messages. */
int zero_log_enabled(zero_log_level_t level);

/*
 * Formats and delivers one message. @p file and @p line (the macros pass
 * __FILE__ and __LINE__; NULL/0 for none) are prefixed to DEBUG and TRACE
 * messages as "file:line: ". ERROR messages are always formatted, even below
 * the threshold, because the thread keeps them (zero_log_error_since).
 */
void zero_log_emit(zero_log_level_t level, const char *module, const char *file, int line, const char *fmt, ...)
    ZERO_PRINTF(5, 6);

/*
 * Per-thread record of ERROR messages, so that a caller that only passes a
 * status on can still report the detecting function's own words (the engine's
 * last error): take a mark before the call, and after a failure ask for the
 * first error this thread logged since then.
 *   uint64_t mark = zero_log_error_mark();
 *   status = callee(...);
 *   if (status != ZERO_OK && (msg = zero_log_error_since(mark)) != NULL) ...
 * zero_log_error_since returns NULL when the thread logged no error since the
 * mark (the error was detected on another thread, or not logged). The string
 * is the thread's own and stays valid until its next ERROR message.
 */
uint64_t zero_log_error_mark(void);
const char *zero_log_error_since(uint64_t mark);

/* The rank printed in every prefix; -1 (the default) prints no rank. */
void zero_log_set_rank(int rank);

#define ZERO_LOG_AT(level_, ...) \
    do { \
        if ((level_) == ZERO_LOG_LEVEL_ERROR || zero_log_enabled(level_)) \
            zero_log_emit(level_, ZERO_LOG_MODULE, __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define ZERO_LOG_ERROR(...) ZERO_LOG_AT(ZERO_LOG_LEVEL_ERROR, __VA_ARGS__)
#define ZERO_LOG_WARN(...)  ZERO_LOG_AT(ZERO_LOG_LEVEL_WARN, __VA_ARGS__)
#define ZERO_LOG_INFO(...)  ZERO_LOG_AT(ZERO_LOG_LEVEL_INFO, __VA_ARGS__)
#define ZERO_LOG_DEBUG(...) ZERO_LOG_AT(ZERO_LOG_LEVEL_DEBUG, __VA_ARGS__)
#define ZERO_LOG_TRACE(...) ZERO_LOG_AT(ZERO_LOG_LEVEL_TRACE, __VA_ARGS__)

#endif /* ZERO_UTIL_LOG_H */
