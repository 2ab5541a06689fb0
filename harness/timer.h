/* Host wall clock for CPU phases and whole steps: CLOCK_MONOTONIC. */
#ifndef PB_TIMER_H
#define PB_TIMER_H

#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

double pb_now_ms(void);
/* The absolute time `seconds` from now on `clock`, for the deadlines of
 * pthread_cond_timedwait (whose clock is the condition's). */
struct timespec pb_time_after(clockid_t clock, double seconds);

#ifdef __cplusplus
}
#endif
#endif /* PB_TIMER_H */
