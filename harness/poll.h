/* Waiting under a deadline for something that finishes on its own (an NCCL
 * communicator's set-up, an enqueue that a non-blocking communicator answers
 * with ncclInProgress, a collective's end event), with the decision kept
 * apart from the library so that it is unit-tested with fakes
 * (tests/unit/test_poll.c) on machines without a GPU.
 *
 * The caller's query says done, pending or failed; pb_poll_until asks it
 * until it is not pending or the deadline passes. It always asks once more
 * after the deadline has passed before it says expired, so work that did
 * finish while the caller was descheduled is never reported as stuck. */
#ifndef PB_POLL_H
#define PB_POLL_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pb_poll {
    PB_POLL_DONE,    /* finished without error */
    PB_POLL_PENDING, /* still going (ncclInProgress, cudaErrorNotReady) */
    PB_POLL_FAILED,  /* finished with an error (the query keeps the details) */
    PB_POLL_EXPIRED, /* still pending when the deadline had passed */
} pb_poll;

typedef struct pb_poll_ops {
    pb_poll (*query)(void *arg);
    double (*now_ms)(void *arg);          /* NULL: pb_now_ms (monotonic) */
    void (*pause)(void *arg, long polls); /* NULL: spin, then 20 us sleeps */
    void *arg;
} pb_poll_ops;

/* One decision: what a query's answer means `elapsed_ms` after the wait
 * began, under a deadline of `deadline_s` seconds. */
pb_poll pb_poll_decide(pb_poll answer, double elapsed_ms, double deadline_s);

/* Asks ops->query until it is done or failed, or pending past the deadline
 * (PB_POLL_EXPIRED). *waited_ms (may be NULL): how long it waited. */
pb_poll pb_poll_until(const pb_poll_ops *ops, double deadline_s, double *waited_ms);

#ifdef __cplusplus
}
#endif
#endif /* PB_POLL_H */
