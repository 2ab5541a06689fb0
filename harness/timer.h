/* Host wall clock for CPU phases and whole steps: CLOCK_MONOTONIC. */
#ifndef PB_TIMER_H
#define PB_TIMER_H

#include <pthread.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

double pb_now_ms(void);
/* The absolute time `seconds` from now on `clock`, for the deadlines of
 * pthread_cond_timedwait (whose clock is the condition's). */
struct timespec pb_time_after(clockid_t clock, double seconds);
/* A condition variable whose timed waits run on CLOCK_MONOTONIC, so a step
 * of the wall clock neither fires nor delays their deadlines (pair it with
 * pb_time_after(CLOCK_MONOTONIC, ...)). Returns pthread's error code. */
int pb_cond_init_monotonic(pthread_cond_t *cv);

#ifdef __cplusplus
}
#endif
#endif /* PB_TIMER_H */
