/* Host wall clock for CPU phases and whole steps: CLOCK_MONOTONIC. */
#ifndef PB_TIMER_H
#define PB_TIMER_H

#ifdef __cplusplus
extern "C" {
#endif

double pb_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif /* PB_TIMER_H */
