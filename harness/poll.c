/* Waiting under a deadline, the decision apart from the library: poll.h. */
#define _POSIX_C_SOURCE 200809L
#include "poll.h"

#include <time.h>

#include "timer.h"

pb_poll pb_poll_decide(pb_poll answer, double elapsed_ms, double deadline_s)
{
    if (answer != PB_POLL_PENDING) return answer;
    return elapsed_ms > deadline_s * 1e3 ? PB_POLL_EXPIRED : PB_POLL_PENDING;
}

/* Spin briefly (a bucket's all-reduce usually ends within microseconds of
 * the end of backward), then sleep so that a stuck peer costs no core. */
static void default_pause(void *arg, long polls)
{
    (void)arg;
    if (polls > 1000) {
        struct timespec ts = {0, 20000}; /* 20 us */
        nanosleep(&ts, NULL);
    }
}

pb_poll pb_poll_until(const pb_poll_ops *ops, double deadline_s, double *waited_ms)
{
    double t0 = ops->now_ms ? ops->now_ms(ops->arg) : pb_now_ms();
    double elapsed = 0.0;
    pb_poll p = PB_POLL_PENDING;
    for (long polls = 0;; polls++) {
        /* the clock before the query: an expiry is then decided on an
         * answer given after the deadline had passed */
        elapsed = (ops->now_ms ? ops->now_ms(ops->arg) : pb_now_ms()) - t0;
        p = pb_poll_decide(ops->query(ops->arg), elapsed, deadline_s);
        if (p != PB_POLL_PENDING) break;
        if (ops->pause)
            ops->pause(ops->arg, polls);
        else
            default_pause(ops->arg, polls);
    }
    if (waited_ms) *waited_ms = elapsed;
    return p;
}
