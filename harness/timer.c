#define _POSIX_C_SOURCE 200809L
#include "timer.h"

#include <time.h>

double pb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

int pb_cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc != 0) return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0) rc = pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

struct timespec pb_time_after(clockid_t clock, double seconds)
{
    struct timespec t;
    clock_gettime(clock, &t);
    /* a bad or huge deadline must not make an invalid or overflowing time:
     * at most ten years, at least now */
    if (!(seconds > 0.0)) seconds = 0.0;
    if (seconds > 3.2e8) seconds = 3.2e8;
    double whole = (double)(time_t)seconds;
    t.tv_sec += (time_t)seconds;
    t.tv_nsec += (long)((seconds - whole) * 1e9);
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}
