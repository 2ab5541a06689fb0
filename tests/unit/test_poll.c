/* harness/poll.c with fakes: the deadline logic that the nccl comm runs
 * around communicator set-up, every enqueue and every wait (a sequence of
 * ncclCommGetAsyncError / cudaEventQuery answers and clock readings). */
#include "tests/common/test_util.h"

#include "harness/poll.h"

typedef struct fake {
    const pb_poll *answers; /* one per query; the last repeats */
    int n_answers, queries;
    const double *times; /* one per clock reading; the last repeats */
    int n_times, readings;
    long pauses;
} fake;

static pb_poll fake_query(void *arg)
{
    fake *f = arg;
    int i = f->queries < f->n_answers ? f->queries : f->n_answers - 1;
    f->queries++;
    return f->answers[i];
}

static double fake_now(void *arg)
{
    fake *f = arg;
    int i = f->readings < f->n_times ? f->readings : f->n_times - 1;
    f->readings++;
    return f->times[i];
}

static void fake_pause(void *arg, long polls)
{
    fake *f = arg;
    assert_int_equal(polls, f->pauses); /* counted from 0, one per pending answer */
    f->pauses++;
}

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static pb_poll run(fake *f, double deadline_s, double *waited)
{
    pb_poll_ops ops = {fake_query, fake_now, fake_pause, f};
    return pb_poll_until(&ops, deadline_s, waited);
}

static void test_decide(void **state)
{
    (void)state;
    assert_int_equal(pb_poll_decide(PB_POLL_DONE, 1e9, 1.0), PB_POLL_DONE);
    assert_int_equal(pb_poll_decide(PB_POLL_FAILED, 0.0, 1.0), PB_POLL_FAILED);
    assert_int_equal(pb_poll_decide(PB_POLL_PENDING, 1000.0, 1.0), PB_POLL_PENDING); /* at the deadline: not past */
    assert_int_equal(pb_poll_decide(PB_POLL_PENDING, 1000.5, 1.0), PB_POLL_EXPIRED);
}

/* in progress twice, then done: done, after two pauses */
static void test_in_progress_then_done(void **state)
{
    (void)state;
    static const pb_poll a[] = {PB_POLL_PENDING, PB_POLL_PENDING, PB_POLL_DONE};
    static const double t[] = {0, 1, 2, 3};
    fake f = {a, N(a), 0, t, N(t), 0, 0};
    double waited = -1;
    assert_int_equal(run(&f, 5.0, &waited), PB_POLL_DONE);
    assert_int_equal(f.queries, 3);
    assert_int_equal(f.pauses, 2);
    assert_true(waited == 3.0);
}

/* an error while in progress (a peer's socket closed): failed at once */
static void test_error_ends_wait(void **state)
{
    (void)state;
    static const pb_poll a[] = {PB_POLL_PENDING, PB_POLL_FAILED, PB_POLL_DONE};
    static const double t[] = {0, 1, 2};
    fake f = {a, N(a), 0, t, N(t), 0, 0};
    assert_int_equal(run(&f, 5.0, NULL), PB_POLL_FAILED);
    assert_int_equal(f.queries, 2);
}

/* a peer that never arrives: expired once the clock passes the deadline,
 * and not before (the answers stay "in progress" for ever) */
static void test_stuck_expires(void **state)
{
    (void)state;
    static const pb_poll a[] = {PB_POLL_PENDING};
    static const double t[] = {100, 600, 1100, 1999, 2000, 2000.5, 99999};
    fake f = {a, N(a), 0, t, N(t), 0, 0};
    double waited = 0;
    assert_int_equal(run(&f, 1.9, &waited), PB_POLL_EXPIRED);
    assert_true(waited == 1900.5); /* 2000.5 - 100 */
    assert_int_equal(f.queries, 5); /* at 600, 1100, 1999, 2000 (not past) and 2000.5 */
}

/* done on the first query even with the deadline long gone (a descheduled
 * caller): never reported as stuck; and a zero deadline still asks once */
static void test_done_late_is_done(void **state)
{
    (void)state;
    static const pb_poll a[] = {PB_POLL_DONE};
    static const double t[] = {0, 1e9};
    fake f = {a, N(a), 0, t, N(t), 0, 0};
    assert_int_equal(run(&f, 1.0, NULL), PB_POLL_DONE);
    fake g = {a, N(a), 0, t, N(t), 0, 0};
    assert_int_equal(run(&g, 0.0, NULL), PB_POLL_DONE);
    assert_int_equal(g.queries, 1);
}

/* the query that decides "expired" is asked after the deadline has passed:
 * work that ends just then is done, not expired */
static void test_last_query_after_deadline(void **state)
{
    (void)state;
    static const pb_poll a[] = {PB_POLL_PENDING, PB_POLL_DONE};
    static const double t[] = {0, 500, 1500};
    fake f = {a, N(a), 0, t, N(t), 0, 0};
    assert_int_equal(run(&f, 1.0, NULL), PB_POLL_DONE);
}

/* the real clock and pause: a pending query expires within a few ms of a
 * 50 ms deadline */
static void test_real_clock(void **state)
{
    (void)state;
    static const pb_poll a[] = {PB_POLL_PENDING};
    fake f = {a, N(a), 0, NULL, 0, 0, 0};
    pb_poll_ops ops = {fake_query, NULL, NULL, &f};
    double waited = 0;
    assert_int_equal(pb_poll_until(&ops, 0.05, &waited), PB_POLL_EXPIRED);
    assert_true(waited > 50.0 && waited < 1000.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_in_progress_then_done),
        cmocka_unit_test(test_error_ends_wait),
        cmocka_unit_test(test_stuck_expires),
        cmocka_unit_test(test_done_late_is_done),
        cmocka_unit_test(test_last_query_after_deadline),
        cmocka_unit_test(test_real_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
