/*
 * Time: the one monotonic clock and the one parser of durations in seconds
 * that libzero, its tools and its tests use (deadlines, timers, timeouts read
 * from the environment or the command line).
 */
#ifndef ZERO_UTIL_CLOCK_H
#define ZERO_UTIL_CLOCK_H

#include <zero/status.h>

/* Seconds on CLOCK_MONOTONIC (an arbitrary origin; only differences mean anything). */
double zero_clock_now(void);

/* Sleeps @p seconds (nothing for <= 0), resuming after signals. */
void zero_clock_sleep(double seconds);

/*
 * Parses a duration in seconds: a plain decimal number ("2.5", "30", "1e3"),
 * nothing before or after it, finite, within [@p min, @p max]; when
 * @p min_exclusive is non-zero, min itself is refused (for "> 0").
 * Returns 0 and writes *@p seconds_p, or -1 and logs nothing (for a caller
 * that reports the problem in its own words, e.g. a command-line error).
 */
int zero_seconds_from_text(const char *text, double min, int min_exclusive, double max, double *seconds_p);

/*
 * The same, logging "@p what='@p text' is not a number of seconds in (min, max]"
 * (or [min, max]) once on failure. @p what names the source: an environment
 * variable, a config key.
 * @return ZERO_OK, or ZERO_ERR_INVALID_ARG (logged); *@p seconds_p untouched then.
 */
zero_status_t zero_seconds_parse(const char *what, const char *text, double min, int min_exclusive, double max,
                                 double *seconds_p);

#endif /* ZERO_UTIL_CLOCK_H */
