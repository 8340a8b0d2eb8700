/* Monotonic time for deadlines and timeouts. */
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
