/* --verify's rule (docs/strategies.md, "--verify"): it judges the parameters
 * after PB_VERIFY_STEPS steps, where fp32 reordering has not yet drifted
 * (pb_verify_steps), SGD elementwise and AdamW normwise per tensor
 * (pb_verify_error). Runs of ./bench --verify that pass over 100 steps and
 * catch a wrong gradient are tests/e2e/test_verify.c. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>

#include "harness/run.h"
#include "harness/verify_err.h"

/* The judged step: PB_VERIFY_STEPS (AdamW: PB_VERIFY_STEPS_ADAMW), or the
 * last when there are fewer. */
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
    /* AdamW: before its rounding grows into parts of lr-sized steps */
    cfg.optimizer = PB_OPT_ADAMW;
    assert_int_equal(pb_verify_steps(&cfg), PB_VERIFY_STEPS_ADAMW);
    cfg.iters = 2;
    assert_int_equal(pb_verify_steps(&cfg), 2);
}

/* Two tensors of 10000 floats of 0.04 (a weight's scale): AdamW's measure
 * lets a few elements that moved by lr (1e-3) otherwise through, as rounding
 * noise flipping near-zero gradients' steps does, and SGD's does not; a
 * whole tensor a tenth of lr off fails AdamW's; NaN fails both. */
static void test_adamw_normwise_sgd_elementwise(void **state)
{
    (void)state;
    enum { N = 10000 };
    pb_model m = {.n_tensors = 2, .n_params = 2 * N};
    snprintf(m.tensor[0].name, sizeof m.tensor[0].name, "a.weight");
    snprintf(m.tensor[1].name, sizeof m.tensor[1].name, "b.weight");
    m.tensor[0].size = m.tensor[1].size = N;
    m.tensor[1].off = N;
    static float want[2 * N], got[2 * N];
    for (int i = 0; i < 2 * N; i++) want[i] = got[i] = i % 2 ? 0.04f : -0.04f;
    int worst = 7;
    assert_true(pb_verify_error(&m, PB_OPT_ADAMW, got, want, &worst) == 0.0);
    assert_int_equal(worst, -1);
    for (int i = N; i < N + 3; i++) got[i] += 1e-3f; /* ||d|| / ||q|| = 4.3e-4 */
    double adamw = pb_verify_error(&m, PB_OPT_ADAMW, got, want, &worst);
    if (!(adamw > 1e-5 && adamw < pb_verify_tolerance(PB_FP32, PB_OPT_ADAMW)))
        fail_msg("three elements off by lr: AdamW's measure %g", adamw);
    assert_int_equal(worst, 1);
    double sgd = pb_verify_error(&m, PB_OPT_SGD, got, want, &worst);
    if (!(sgd > pb_verify_tolerance(PB_FP32, PB_OPT_SGD))) fail_msg("SGD's measure %g", sgd);
    assert_int_equal(worst, -1);
    for (int i = 0; i < N; i++) got[i] += 1e-4f; /* 2.5e-3 */
    adamw = pb_verify_error(&m, PB_OPT_ADAMW, got, want, &worst);
    if (!(adamw > pb_verify_tolerance(PB_FP32, PB_OPT_ADAMW))) fail_msg("a whole tensor off: %g", adamw);
    assert_int_equal(worst, 0);
    got[5] = NAN;
    assert_true(isnan(pb_verify_error(&m, PB_OPT_ADAMW, got, want, NULL)));
    assert_true(isnan(pb_verify_error(&m, PB_OPT_SGD, got, want, NULL)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_steps),
        cmocka_unit_test(test_adamw_normwise_sgd_elementwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
