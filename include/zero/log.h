/*
 * Logging.
 *
 * libzero writes its messages to stderr by default, one line each, prefixed with
 * the level and, once the process knows it, its rank:
 *     [zero rank 3] ERROR ckpt: global_step10/zero_rank_00003.h5: dataset /master/0: checksum mismatch
 * The threshold comes from the environment variable ZERO_LOG_LEVEL
 * (error, warn, info, debug, trace; default warn), read on first use, and can be
 * changed at any time with zero_log_set_level().
 *
 * A host program that keeps its own log can take every message through
 * zero_log_set_callback(). Logging settings are process-wide (a process holds
 * one rank), and every call here is thread-safe.
 */
#ifndef ZERO_LOG_H
#define ZERO_LOG_H

#include <zero/export.h>

ZERO_BEGIN_DECLS

typedef enum zero_log_level {
    ZERO_LOG_LEVEL_OFF   = 0, /**< nothing is logged */
    ZERO_LOG_LEVEL_ERROR = 1, /**< a call is failing; logged once, where detected */
    ZERO_LOG_LEVEL_WARN  = 2, /**< something is ignored or suspicious, training goes on */
    ZERO_LOG_LEVEL_INFO  = 3, /**< progress: steps_per_print lines, checkpoint saves */
    ZERO_LOG_LEVEL_DEBUG = 4, /**< per-call detail for debugging a run */
    ZERO_LOG_LEVEL_TRACE = 5  /**< per-message detail (collectives, rendezvous) */
} zero_log_level_t;

/**
 * Receives one formatted message (no trailing newline). @p module is a short
 * static name ("config", "comm", "ckpt", ...). The string is valid only during
 * the call. It may be called from any libzero thread, but never concurrently:
 * libzero serialises calls to it.
 */
typedef void (*zero_log_callback_t)(zero_log_level_t level, int rank, const char *module,
                                    const char *message, void *user_data);

/** Sets the threshold; messages above it are dropped before formatting. */
ZERO_API void zero_log_set_level(zero_log_level_t level);

/** The current threshold (after reading ZERO_LOG_LEVEL on first use). */
ZERO_API zero_log_level_t zero_log_get_level(void);

/**
 * Sends every message to @p callback instead of stderr, with @p user_data
 * passed through. NULL restores stderr. The caller keeps ownership of
 * @p user_data, which must stay valid until the callback is replaced.
 */
ZERO_API void zero_log_set_callback(zero_log_callback_t callback, void *user_data);

/**
 * Parses a level name (error, warn, info, debug, trace, off; case-insensitive).
 * Returns 0 and writes @p level_p on success, -1 if the name is unknown.
 */
ZERO_API int zero_log_level_parse(const char *name, zero_log_level_t *level_p);

ZERO_END_DECLS

#endif /* ZERO_LOG_H */
