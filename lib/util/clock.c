#define ZERO_LOG_MODULE "util"
#include "util/clock.h"
#include "util/log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

double zero_clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void zero_clock_sleep(double seconds)
{
    struct timespec ts;
    if (!(seconds > 0))
        return;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int zero_seconds_from_text(const char *text, double min, int min_exclusive, double max, double *seconds_p)
{
    char *end = NULL;
    double v;
    /* strtod alone would take leading blanks, hex floats, "inf" and "nan". */
    if (text == NULL || !((*text >= '0' && *text <= '9') || *text == '.' || *text == '-' || *text == '+'))
        return -1;
    for (const char *p = text; *p != '\0'; p++)
        if (*p == 'x' || *p == 'X')
            return -1;
    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !isfinite(v))
        return -1;
    if (v < min || (min_exclusive && v == min) || v > max)
        return -1;
    *seconds_p = v;
    return 0;
}

zero_status_t zero_seconds_parse(const char *what, const char *text, double min, int min_exclusive, double max,
                                 double *seconds_p)
{
    if (zero_seconds_from_text(text, min, min_exclusive, max, seconds_p) == 0)
        return ZERO_OK;
    ZERO_LOG_ERROR("%s='%s' is not a number of seconds in %c%g, %g]", what ? what : "duration",
                   text ? text : "(null)", min_exclusive ? '(' : '[', min, max);
    return ZERO_ERR_INVALID_ARG;
}
