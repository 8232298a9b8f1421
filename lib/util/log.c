#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

/* Process-wide by nature: one process is one rank, and the host program's log
 * sink is a process property. Everything else in libzero hangs off handles. */
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static atomic_int log_level = ZERO_LOG_LEVEL_WARN;
static atomic_int log_rank = -1;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static zero_log_callback_t log_callback;
static void *log_user_data;

/* Per thread: ERROR messages logged so far, the count at the last mark, and
 * the first ERROR message after that mark (plus the latest, for a caller whose
 * mark was overtaken by a nested one). */
#define LOG_MESSAGE_MAX 2048
static _Thread_local uint64_t thread_errors;
static _Thread_local uint64_t thread_mark;
static _Thread_local char thread_first_error[LOG_MESSAGE_MAX];
static _Thread_local char thread_latest_error[LOG_MESSAGE_MAX];

static const char *const level_names[] = {"off", "error", "warn", "info", "debug", "trace"};

int zero_log_level_parse(const char *name, zero_log_level_t *level_p)
{
    if (name == NULL || level_p == NULL)
        return -1;
    for (int i = 0; i <= ZERO_LOG_LEVEL_TRACE; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *level_p = (zero_log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *level_p = ZERO_LOG_LEVEL_WARN;
        return 0;
    }
    return -1;
}

static void log_read_env(void)
{
    const char *env = getenv("ZERO_LOG_LEVEL");
    zero_log_level_t level;
    if (env == NULL || *env == '\0')
        return;
    if (zero_log_level_parse(env, &level) == 0)
        atomic_store(&log_level, (int)level);
    else
        fprintf(stderr, "[zero] WARN log: ZERO_LOG_LEVEL=\"%s\" is not one of "
                        "off, error, warn, info, debug, trace; keeping warn\n", env);
}

void zero_log_set_level(zero_log_level_t level)
{
    pthread_once(&log_once, log_read_env);
    if (level < ZERO_LOG_LEVEL_OFF)
        level = ZERO_LOG_LEVEL_OFF;
    if (level > ZERO_LOG_LEVEL_TRACE)
        level = ZERO_LOG_LEVEL_TRACE;
    atomic_store(&log_level, (int)level);
}

zero_log_level_t zero_log_get_level(void)
{
    pthread_once(&log_once, log_read_env);
    return (zero_log_level_t)atomic_load(&log_level);
}

void zero_log_set_callback(zero_log_callback_t callback, void *user_data)
{
    pthread_mutex_lock(&log_lock);
    log_callback = callback;
    log_user_data = user_data;
    pthread_mutex_unlock(&log_lock);
}

void zero_log_set_rank(int rank)
{
    atomic_store(&log_rank, rank);
}

int zero_log_enabled(zero_log_level_t level)
{
    return level != ZERO_LOG_LEVEL_OFF && (int)level <= (int)zero_log_get_level();
}

uint64_t zero_log_error_mark(void)
{
    thread_mark = thread_errors;
    thread_first_error[0] = '\0';
    return thread_mark;
}

const char *zero_log_error_since(uint64_t mark)
{
    if (thread_errors <= mark)
        return NULL;
    return thread_mark == mark ? thread_first_error : thread_latest_error;
}

/* "../lib/zero/engine.c" (meson's path from the build directory) -> "lib/zero/engine.c". */
static const char *source_path(const char *file)
{
    while (file[0] == '.' && (file[1] == '/' || (file[1] == '.' && file[2] == '/')))
        file += file[1] == '/' ? 2 : 3;
    return file;
}

void zero_log_emit(zero_log_level_t level, const char *module, const char *file, int line, const char *fmt, ...)
{
    char message[LOG_MESSAGE_MAX];
    size_t at = 0;
    va_list ap;
    int rank = atomic_load(&log_rank);

    if (file != NULL && level >= ZERO_LOG_LEVEL_DEBUG) {
        int n = snprintf(message, sizeof(message), "%s:%d: ", source_path(file), line);
        at = n > 0 && (size_t)n < sizeof(message) ? (size_t)n : 0;
    }
    va_start(ap, fmt);
    vsnprintf(message + at, sizeof(message) - at, fmt, ap);
    va_end(ap);

    if (level == ZERO_LOG_LEVEL_ERROR) {
        if (thread_errors == thread_mark)
            snprintf(thread_first_error, sizeof(thread_first_error), "%s", message);
        snprintf(thread_latest_error, sizeof(thread_latest_error), "%s", message);
        thread_errors++;
        if (!zero_log_enabled(level))
            return;   /* kept for the caller, not printed */
    }

    pthread_mutex_lock(&log_lock);
    if (log_callback != NULL) {
        log_callback(level, rank, module, message, log_user_data);
    } else {
        static const char *const upper[] = {"OFF", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
        const char *name = (level >= 0 && level <= ZERO_LOG_LEVEL_TRACE) ? upper[level] : "?";
        if (rank >= 0)
            fprintf(stderr, "[zero rank %d] %s %s: %s\n", rank, name, module, message);
        else
            fprintf(stderr, "[zero] %s %s: %s\n", name, module, message);
    }
    pthread_mutex_unlock(&log_lock);
}
