/* Monotonic time for the communicator's deadlines. */
#ifndef ZERO_COMM_TIMEUTIL_H
#define ZERO_COMM_TIMEUTIL_H

#include <time.h>

static inline double zero_comm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void zero_comm_sleep(double seconds)
{
    struct timespec ts;
    if (seconds <= 0)
        return;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0)
        ;
}

#endif /* ZERO_COMM_TIMEUTIL_H */
