/*
 * A bound on UCX's own log lines (ucx_log.h).
 */
#define ZERO_LOG_MODULE "ucx"
#include "util/ucx_log.h"
#include "util/clock.h"
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <ucs/debug/log_def.h>

typedef struct source_count {
    const char *file;       /* UCX's __FILE__ (a string literal); NULL: the shared entry */
    unsigned line;
    double window_start;
    unsigned printed;       /* in this window */
    unsigned long counted;  /* not printed, not logged yet */
    char last[256];         /* the last counted message */
} source_count_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static source_count_t sources[ZERO_UCX_LOG_SOURCES + 1];   /* the last: every other line */
static int nsources;
static int installed;

static const char *base_name(const char *file)
{
    const char *slash = file != NULL ? strrchr(file, '/') : NULL;
    return file == NULL ? "(other lines)" : slash != NULL ? slash + 1 : file;
}

/* Moves @p e's count into @p out (for logging outside the lock); returns
 * whether there was one. */
static int take_count(source_count_t *e, source_count_t *out)
{
    if (e->counted == 0)
        return 0;
    *out = *e;
    e->counted = 0;
    return 1;
}

static void log_count(const source_count_t *c)
{
    ZERO_LOG_WARN("%lu more UCX messages from %s:%u (the first %d of each %.0f s are printed); the last: %s",
                  c->counted, base_name(c->file), c->line, ZERO_UCX_LOG_FIRST, ZERO_UCX_LOG_WINDOW_S, c->last);
}

static ucs_log_func_rc_t limit(const char *file, unsigned line, const char *function, ucs_log_level_t level,
                               const ucs_log_component_config_t *comp_conf, const char *message, va_list ap)
{
    source_count_t *e = NULL, report;
    int has_report = 0, pass = 1;
    double now;
    (void)function;
    (void)comp_conf;
    if (level == UCS_LOG_LEVEL_FATAL || level > UCS_LOG_LEVEL_INFO)
        return UCS_LOG_FUNC_RC_CONTINUE;
    now = zero_clock_now();
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nsources && e == NULL; i++)
        if (sources[i].file == file && sources[i].line == line)
            e = &sources[i];
    if (e == NULL && nsources < ZERO_UCX_LOG_SOURCES) {
        e = &sources[nsources++];
        e->file = file;
        e->line = line;
        e->window_start = now;
    }
    if (e == NULL)
        e = &sources[ZERO_UCX_LOG_SOURCES];   /* file NULL, line 0 */
    if (now - e->window_start >= ZERO_UCX_LOG_WINDOW_S) {
        has_report = take_count(e, &report);
        e->window_start = now;
        e->printed = 0;
    }
    if (e->printed < ZERO_UCX_LOG_FIRST) {
        e->printed++;
    } else {
        va_list copy;
        va_copy(copy, ap);
        vsnprintf(e->last, sizeof(e->last), message, copy);
        va_end(copy);
        e->counted++;
        pass = 0;
    }
    pthread_mutex_unlock(&lock);
    if (has_report)
        log_count(&report);
    return pass ? UCS_LOG_FUNC_RC_CONTINUE : UCS_LOG_FUNC_RC_STOP;
}

void zero_ucx_log_limit_install(void)
{
    pthread_mutex_lock(&lock);
    if (!installed)
        ucs_log_push_handler(limit);
    installed = 1;
    pthread_mutex_unlock(&lock);
}

void zero_ucx_log_limit_flush(void)
{
    for (int i = 0; i <= ZERO_UCX_LOG_SOURCES; i++) {
        source_count_t report;
        int has_report;
        pthread_mutex_lock(&lock);
        has_report = take_count(&sources[i], &report);
        sources[i].printed = 0;
        sources[i].window_start = zero_clock_now();
        pthread_mutex_unlock(&lock);
        if (has_report)
            log_count(&report);
    }
}
