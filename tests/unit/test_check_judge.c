/* bench check's outlier rule (harness/check.h, docs/check.md "Outliers"):
 * a figure below the fraction times the median of its peers (the others of
 * its group, finite ones), and no verdict where there is no peer. */
#include "tests/common/test_util.h"

#include <math.h>

#include "harness/check.h"

static void test_slow_one_flagged_against_the_others_median(void **state)
{
    (void)state;
    double v[] = {10, 11, 2.5, 9}, med[4];
    int verdict[4];
    pb_check_judge(v, NULL, 4, 0.8, med, verdict);
    /* rank 2's peers: 10, 11, 9 -> 10; 2.5 < 8 */
    assert_float_equal(med[2], 10, 1e-12);
    assert_int_equal(verdict[2], 1);
    /* rank 0's peers: 11, 2.5, 9 -> 9: the slow one moves the median little */
    assert_float_equal(med[0], 9, 1e-12);
    assert_int_equal(verdict[0], 0);
    assert_int_equal(verdict[1], 0);
    assert_int_equal(verdict[3], 0);
}

static void test_two_ranks_each_judged_by_the_other(void **state)
{
    (void)state;
    double v[] = {10, 7.9}, med[2];
    int verdict[2];
    pb_check_judge(v, NULL, 2, 0.8, med, verdict);
    assert_int_equal(verdict[0], 0);
    assert_int_equal(verdict[1], 1); /* 7.9 < 0.8 x 10 */
    v[1] = 8.0;                      /* at the fraction exactly: not below */
    pb_check_judge(v, NULL, 2, 0.8, med, verdict);
    assert_int_equal(verdict[1], 0);
}

static void test_groups_and_missing_figures(void **state)
{
    (void)state;
    /* links: within-node (group 0) at ~100, across-node (group 1) at ~10 */
    double v[] = {100, 95, 10, 11, NAN, 50};
    int group[] = {0, 0, 1, 1, 1, 0}, verdict[6];
    double med[6];
    pb_check_judge(v, group, 6, 0.8, med, verdict);
    assert_int_equal(verdict[2], 0); /* judged against 11, not the NVLink ones */
    assert_int_equal(verdict[3], 0);
    assert_int_equal(verdict[4], -1); /* not measured: no verdict */
    assert_int_equal(verdict[5], 1);  /* 50 < 0.8 x median(100, 95) */
    assert_float_equal(med[5], 97.5, 1e-12);
    /* a lone member of its group has no peer */
    int alone[] = {0, 0, 1, 0, 0, 0};
    double w[] = {100, 95, 10, 90, 99, 98};
    pb_check_judge(w, alone, 6, 0.8, med, verdict);
    assert_int_equal(verdict[2], -1);
    assert_true(isnan(med[2]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_one_flagged_against_the_others_median),
        cmocka_unit_test(test_two_ranks_each_judged_by_the_other),
        cmocka_unit_test(test_groups_and_missing_figures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
