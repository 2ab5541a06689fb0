/* bench comm's arithmetic (harness/comm_fit.h): nccl-tests' busbw factors,
 * and the alpha-beta fit on synthetic times whose alpha, beta and
 * breakpoint are known: one line, two regimes (a protocol switch), noise
 * that must not be split, and the degenerate cases. */
#include "tests/common/test_util.h"

#include <math.h>

#include "harness/comm_fit.h"

static void test_busbw_factors_are_nccl_tests(void **state)
{
    (void)state;
    /* doc/PERFORMANCE.md: allreduce 2(n-1)/n, reduce_scatter and allgather
     * (n-1)/n, broadcast 1; sendrecv 1 */
    static const int ns[] = {1, 2, 3, 4, 8, 512};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        double n = ns[i];
        assert_float_equal(pb_busbw_factor(PB_COLL_ALL_REDUCE, ns[i]), 2 * (n - 1) / n, 1e-12);
        assert_float_equal(pb_busbw_factor(PB_COLL_REDUCE_SCATTER, ns[i]), (n - 1) / n, 1e-12);
        assert_float_equal(pb_busbw_factor(PB_COLL_ALL_GATHER, ns[i]), (n - 1) / n, 1e-12);
        assert_float_equal(pb_busbw_factor(PB_COLL_BROADCAST, ns[i]), 1.0, 0);
        assert_float_equal(pb_busbw_factor(PB_COLL_SENDRECV, ns[i]), 1.0, 0);
    }
    assert_float_equal(pb_busbw_factor(PB_COLL_ALL_REDUCE, 8), 1.75, 1e-12);
    for (int c = 0; c < PB_COLL_COUNT; c++) assert_int_equal(pb_coll_find(pb_coll_name((pb_coll)c)), c);
    assert_int_equal(pb_coll_find("allreduce"), PB_COLL_COUNT);
}

/* 8 B to 1 GiB doubling: 28 sizes */
static int ladder(double *bytes)
{
    int n = 0;
    for (double s = 8; s <= (double)(1 << 30); s *= 2) bytes[n++] = s;
    return n;
}

/* time in us of alpha + bytes / beta (GB/s) */
static double line(double alpha_us, double beta_gbps, double bytes) { return alpha_us + bytes / (beta_gbps * 1e3); }

/* deterministic noise in [-amp, amp] */
static double wobble(int i, double amp) { return amp * sin(i * 12.9898 + 78.233); }

static void test_one_line_is_recovered(void **state)
{
    (void)state;
    double b[40], t[40];
    int n = ladder(b);
    for (int i = 0; i < n; i++) t[i] = line(25.0, 12.0, b[i]) * (1 + wobble(i, 0.01));
    pb_fit_segment seg[PB_FIT_MAX_SEGMENTS];
    /* 1% noise is no breakpoint */
    assert_int_equal(pb_fit_alpha_beta(b, t, n, seg), 1);
    assert_float_equal(seg[0].alpha_us, 25.0, 25.0 * 0.03);
    assert_float_equal(seg[0].beta_gbps, 12.0, 12.0 * 0.03);
    assert_true(seg[0].rel_rms < 0.012);
    assert_int_equal(seg[0].points, n);
    assert_float_equal(seg[0].bytes_lo, 8, 0);
    assert_float_equal(seg[0].bytes_hi, (double)(1 << 30), 0);
}

static void test_protocol_switch_is_a_breakpoint(void **state)
{
    (void)state;
    /* below 64 KiB a low-latency protocol (2 us, 2 GB/s), from 64 KiB on a
     * bandwidth protocol (30 us, 100 GB/s): the fit must cut at 64 KiB */
    double b[40], t[40];
    int n = ladder(b);
    for (int i = 0; i < n; i++) t[i] = (b[i] < 65536 ? line(2.0, 2.0, b[i]) : line(30.0, 100.0, b[i])) * (1 + wobble(i, 0.005));
    pb_fit_segment seg[PB_FIT_MAX_SEGMENTS];
    int k = pb_fit_alpha_beta(b, t, n, seg);
    assert_int_equal(k, 2);
    assert_float_equal(seg[0].bytes_hi, 32768, 0);
    assert_float_equal(seg[1].bytes_lo, 65536, 0);
    assert_float_equal(seg[0].alpha_us, 2.0, 0.1);
    assert_float_equal(seg[0].beta_gbps, 2.0, 0.1);
    assert_float_equal(seg[1].alpha_us, 30.0, 1.5);
    assert_float_equal(seg[1].beta_gbps, 100.0, 3.0);
    assert_int_equal(seg[0].points + seg[1].points, n);
}

static void test_three_regimes_at_most(void **state)
{
    (void)state;
    double b[40], t[40];
    int n = ladder(b);
    for (int i = 0; i < n; i++)
        t[i] = b[i] < 4096 ? line(1.0, 1.0, b[i]) : b[i] < (1 << 22) ? line(40.0, 20.0, b[i]) : line(900.0, 200.0, b[i]);
    pb_fit_segment seg[PB_FIT_MAX_SEGMENTS];
    assert_int_equal(pb_fit_alpha_beta(b, t, n, seg), 3);
    assert_float_equal(seg[1].bytes_lo, 4096, 0);
    assert_float_equal(seg[2].bytes_lo, (double)(1 << 22), 0);
    assert_float_equal(seg[2].beta_gbps, 200.0, 2.0);
}

static void test_degenerate_inputs(void **state)
{
    (void)state;
    pb_fit_segment seg[PB_FIT_MAX_SEGMENTS];
    double b[4] = {8, 16, 32, 64}, flat[4] = {5, 5, 5, 5};
    assert_int_equal(pb_fit_alpha_beta(b, flat, 1, seg), 0);
    /* time that does not grow: all latency, bandwidth unbounded */
    assert_int_equal(pb_fit_alpha_beta(b, flat, 4, seg), 1);
    assert_float_equal(seg[0].alpha_us, 5.0, 1e-9);
    assert_true(isinf(seg[0].beta_gbps));
    /* time that falls with size (noise at tiny sizes): slope held at 0, not a negative bandwidth */
    double falling[4] = {8, 7, 6, 5};
    assert_int_equal(pb_fit_alpha_beta(b, falling, 4, seg), 1);
    assert_true(seg[0].beta_gbps > 0);
    /* pure bandwidth: alpha held at 0, not negative */
    double bw[4];
    for (int i = 0; i < 4; i++) bw[i] = b[i] / 1e3 * (i % 2 ? 1.3 : 0.8);
    assert_int_equal(pb_fit_alpha_beta(b, bw, 4, seg), 1);
    assert_true(seg[0].alpha_us >= 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_busbw_factors_are_nccl_tests),
        cmocka_unit_test(test_one_line_is_recovered),
        cmocka_unit_test(test_protocol_switch_is_a_breakpoint),
        cmocka_unit_test(test_three_regimes_at_most),
        cmocka_unit_test(test_degenerate_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
