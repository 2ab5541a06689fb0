/* --verify's rule (docs/strategies.md, "--verify"): it judges the parameters
 * after PB_VERIFY_STEPS steps, where fp32 reordering has not yet drifted
 * (pb_verify_steps). Runs of ./bench --verify that pass over 100 steps and
 * catch a wrong gradient are tests/e2e/test_verify.c. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <stdbool.h>

#include "harness/run.h"

/* The judged step: PB_VERIFY_STEPS, or the last when there are fewer. */
static void test_verify_steps(void **state)
{
    (void)state;
    pb_config cfg;
    pb_config_defaults(&cfg);
    cfg.warmup = 3;
    cfg.iters = 97;
    assert_int_equal(pb_verify_steps(&cfg), PB_VERIFY_STEPS);
    cfg.iters = 2;
    assert_int_equal(pb_verify_steps(&cfg), 5);
    cfg.warmup = 0;
    cfg.iters = PB_VERIFY_STEPS;
    assert_int_equal(pb_verify_steps(&cfg), PB_VERIFY_STEPS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
