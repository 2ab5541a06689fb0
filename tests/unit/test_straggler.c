/* The straggler rule (harness/straggler.c) on made-up ranks: a rank's busy
 * time (step less sync) against its peers' median, beyond 10% and beyond
 * PB_STRAGGLER_NOISE_K times the noise; the phase its time goes to; and the
 * per-rank figures from step times. The runs through ./bench are in
 * tests/e2e/test_ddp.c (test_straggler_named, test_no_straggler_without_fault). */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <sched.h>
#include <unistd.h>

#include "harness/ranks.h"
#include "harness/straggler.h"

#define MAX_RANKS 8

/* n ranks of busy ms each (sync 1 ms on top: a waiting step), their time
 * in fwd (40%) and bwd (60%), each with standard error se. */
static void ranks_of(pb_rank_stats *r, int n, double busy, double se)
{
    for (int i = 0; i < n; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].busy_p50 = busy;
        r[i].busy_se = se;
        r[i].step_p50 = r[i].step_mean = r[i].step_p95 = busy + 1.0;
        r[i].phase_ms[PB_PHASE_FWD] = 0.4 * busy;
        r[i].phase_ms[PB_PHASE_BWD] = 0.6 * busy;
        r[i].phase_ms[PB_PHASE_SYNC] = 1.0;
        r[i].phase_ms[PB_PHASE_COMM] = 1.0;
        r[i].peak_tflops = NAN;
        r[i].device = i;
    }
}

static int judge(const pb_rank_stats *r, int n, pb_straggler_verdict *v)
{
    double scratch[2 * MAX_RANKS];
    return pb_straggler_find(r, n, PB_STRAGGLER_MIN_FRAC, scratch, v);
}

/* 4 ranks, rank 2 35% busier in bwd, steady: it alone is flagged, in bwd;
 * the others (faster than their peers' median, or equal) are not. */
static void test_slow_rank_named_with_phase(void **state)
{
    (void)state;
    pb_rank_stats r[4];
    pb_straggler_verdict v[4];
    ranks_of(r, 4, 10.0, 0.05);
    r[2].busy_p50 = 13.5;
    r[2].phase_ms[PB_PHASE_BWD] += 3.5;
    /* the others wait for it: more sync and comm, which is no straggling */
    r[0].phase_ms[PB_PHASE_SYNC] = r[1].phase_ms[PB_PHASE_SYNC] = r[3].phase_ms[PB_PHASE_SYNC] = 4.5;
    assert_int_equal(judge(r, 4, v), 1);
    assert_true(v[2].straggler);
    assert_int_equal(v[2].phase, PB_PHASE_BWD);
    assert_true(fabs(v[2].excess_pct - 35.0) < 1e-9);
    assert_true(fabs(v[2].threshold_pct - 10.0) < 1e-9);
    assert_true(fabs(v[2].phase_excess_ms - 3.5) < 1e-9);
    assert_false(v[0].straggler || v[1].straggler || v[3].straggler);
    char text[256];
    pb_straggler_describe(2, "node7", &r[2], &v[2], text, sizeof text);
    assert_string_equal(text, "rank 2 (host node7, device 2): +35% busy, in bwd (+3.5 ms)");
    double spread = 0;
    double scratch[8];
    assert_int_equal(pb_straggler_slowest(r, 4, scratch, &spread), 2);
    assert_true(fabs(spread - 35.0) < 1e-9);
}

/* Under 10% is not a straggler however steady; over 10% but within
 * K x the noise (its own steps' spread, or its peers' spread) is not either. */
static void test_thresholds(void **state)
{
    (void)state;
    pb_rank_stats r[3];
    pb_straggler_verdict v[3];
    ranks_of(r, 3, 10.0, 0.001);
    r[1].busy_p50 = 10.9; /* +9% */
    assert_int_equal(judge(r, 3, v), 0);
    r[1].busy_p50 = 11.2; /* +12%, steady: flagged */
    assert_int_equal(judge(r, 3, v), 1);
    assert_true(v[1].straggler);
    /* the same 12% from a rank whose median is uncertain by 0.5 ms: within
     * K x sqrt(0.5^2 + peers' 0.001^2) */
    r[1].busy_se = 0.5;
    assert_int_equal(judge(r, 3, v), 0);
    assert_true(fabs(v[1].threshold_pct - 100.0 * PB_STRAGGLER_NOISE_K * sqrt(0.25 + 1e-6) / 10.0) < 1e-6);
    /* peers that disagree among themselves by 4 ms: noise 1.4826 x MAD */
    pb_rank_stats q[5];
    pb_straggler_verdict w[5];
    ranks_of(q, 5, 10.0, 0.001);
    q[0].busy_p50 = 8.0;
    q[3].busy_p50 = 12.0;
    q[4].busy_p50 = 14.0; /* +40% on its peers' median 10, within K x 1.4826 x their MAD of 1 ms */
    assert_int_equal(judge(q, 5, w), 0);
    /* ranks sharing cores: +50% steady is the scheduler's, +150% is not */
    ranks_of(r, 3, 10.0, 0.001);
    r[1].busy_p50 = 15.0;
    double scratch[6];
    assert_int_equal(pb_straggler_find(r, 3, PB_STRAGGLER_SHARED_FRAC, scratch, v), 0);
    assert_true(fabs(v[1].threshold_pct - 100.0) < 1e-9);
    r[1].busy_p50 = 25.0;
    assert_int_equal(pb_straggler_find(r, 3, PB_STRAGGLER_SHARED_FRAC, scratch, v), 1);
    /* two ranks: each the other's only peer; only the slower one is flagged */
    ranks_of(r, 2, 10.0, 0.01);
    r[0].busy_p50 = 20.0;
    assert_int_equal(judge(r, 2, v), 1);
    assert_true(v[0].straggler && !v[1].straggler);
}

/* Time in no phase (a stall between phases) is where it goes when no
 * phase grew; a GEMM peak 25% under its peers' is added to the text. */
static void test_between_phases_and_peak(void **state)
{
    (void)state;
    pb_rank_stats r[3];
    pb_straggler_verdict v[3];
    ranks_of(r, 3, 10.0, 0.01);
    for (int i = 0; i < 3; i++) r[i].peak_tflops = 2.0;
    r[1].busy_p50 = 15.0;
    r[1].other_ms = 5.0;
    r[1].peak_tflops = 1.5;
    assert_int_equal(judge(r, 3, v), 1);
    assert_int_equal(v[1].phase, PB_STRAGGLER_NO_PHASE);
    assert_true(fabs(v[1].peak_pct + 25.0) < 1e-9);
    char text[256];
    pb_straggler_describe(1, "h", &r[1], &v[1], text, sizeof text);
    assert_string_equal(text, "rank 1 (host h, device 1): +50% busy, between phases (+5 ms), GEMM peak -25%");
}

/* From steps: busy is step less sync, per step; phase means; time in no
 * compute phase; the median's standard error from the steps' MAD. */
static void test_rank_stats_from_steps(void **state)
{
    (void)state;
    enum { N = 5 };
    double step[N] = {10, 12, 11, 30, 10};
    double ph[N * PB_PHASE_COUNT] = {0};
    double sync[N] = {2, 4, 3, 1, 2}, bwd[N] = {5, 5, 5, 26, 5};
    for (int i = 0; i < N; i++) {
        ph[i * PB_PHASE_COUNT + PB_PHASE_SYNC] = sync[i];
        ph[i * PB_PHASE_COUNT + PB_PHASE_COMM] = sync[i] + 1; /* overlaps bwd: not counted */
        ph[i * PB_PHASE_COUNT + PB_PHASE_BWD] = bwd[i];
        ph[i * PB_PHASE_COUNT + PB_PHASE_FWD] = 2;
    }
    double scratch[N];
    pb_rank_stats s;
    pb_rank_stats_compute(step, ph, N, scratch, &s);
    assert_true(fabs(s.step_p50 - 11) < 1e-12);
    assert_true(fabs(s.step_mean - 14.6) < 1e-12);
    /* busy 8, 8, 8, 29, 8: median 8, MAD 0 */
    assert_true(fabs(s.busy_p50 - 8) < 1e-12);
    assert_true(s.busy_se == 0.0);
    assert_true(fabs(s.phase_ms[PB_PHASE_BWD] - 9.2) < 1e-12);
    /* mean busy 12.2 less fwd 2 and bwd 9.2 */
    assert_true(fabs(s.other_ms - 1.0) < 1e-12);
    assert_true(isnan(s.peak_tflops));
}

/* The per-rank file's cpus (harness/ranks.c): the calling thread's
 * affinity as a Linux cpulist, ranges joined, cut with "..." to fit. */
static void test_cpulist(void **state)
{
    (void)state;
    cpu_set_t saved, one;
    assert_int_equal(sched_getaffinity(0, sizeof saved, &saved), 0);
    int first = -1, n = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &saved)) {
            if (first < 0) first = c;
            n++;
        }
    char buf[PB_RANK_CPUS_CHARS], want[64];
    /* one CPU */
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    pb_ranks_cpulist(buf, sizeof buf);
    snprintf(want, sizeof want, "%d", first);
    assert_string_equal(buf, want);
    assert_int_equal(sched_setaffinity(0, sizeof saved, &saved), 0);
    /* every CPU this test may use: contiguous ones as a range */
    pb_ranks_cpulist(buf, sizeof buf);
    int last = first;
    while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, &saved)) last++;
    if (n == last - first + 1) {
        if (n == 1) snprintf(want, sizeof want, "%d", first);
        else snprintf(want, sizeof want, "%d-%d", first, last);
        assert_string_equal(buf, want);
    }
    /* too little room: cut, ending in "..." within the buffer, or "" where
     * not even that fits */
    if (n > 1) {
        char small[4], tiny[3];
        CPU_ZERO(&one);
        CPU_SET(first, &one);
        CPU_SET(last, &one);
        assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
        size_t need = (size_t)snprintf(want, sizeof want, last == first + 1 ? "%d-%d" : "%d,%d", first, last);
        if (need >= sizeof small) {
            pb_ranks_cpulist(small, sizeof small);
            assert_string_equal(small, "...");
        }
        pb_ranks_cpulist(tiny, sizeof tiny);
        assert_string_equal(tiny, "");
        assert_int_equal(sched_setaffinity(0, sizeof saved, &saved), 0);
    }
    char none[1] = {'x'};
    pb_ranks_cpulist(none, sizeof none);
    assert_int_equal(none[0], '\0');
}

/* Which ranks' cpulists name a CPU in common (the straggler line's
 * "shares CPUs ... with rank N"): ranges and single CPUs, a cut list's
 * readable part, nothing readable never overlapping. */
static void test_cpulists_overlap(void **state)
{
    (void)state;
    assert_true(pb_ranks_cpulists_overlap("0", "0"));
    assert_false(pb_ranks_cpulists_overlap("0", "1"));
    assert_true(pb_ranks_cpulists_overlap("0-3,8", "8"));
    assert_true(pb_ranks_cpulists_overlap("2", "0-3"));
    assert_false(pb_ranks_cpulists_overlap("0-3,8", "4-7,9"));
    assert_true(pb_ranks_cpulists_overlap("4-7,12,...", "12-15"));
    assert_false(pb_ranks_cpulists_overlap("", "0"));
    assert_false(pb_ranks_cpulists_overlap("...", "0-8191"));
    assert_true(pb_ranks_cpulists_overlap("8191", "8000-9000"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_rank_named_with_phase),
        cmocka_unit_test(test_thresholds),
        cmocka_unit_test(test_between_phases_and_peak),
        cmocka_unit_test(test_rank_stats_from_steps),
        cmocka_unit_test(test_cpulist),
        cmocka_unit_test(test_cpulists_overlap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
