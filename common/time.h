/* Monotonic time for deadlines and timeouts, and the wall clock where a date is meant. */
#pragma once

#include <time.h>

/* CLOCK_MONOTONIC in milliseconds: for deadlines, never for dates. */
static inline long long
kiln_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CLOCK_REALTIME in milliseconds since the epoch: a date (e.g. the host's time for a guest). */
static inline long long
kiln_realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
