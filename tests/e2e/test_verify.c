/* --verify's rule (docs/strategies.md, "--verify"): it judges the parameters
 * after PB_VERIFY_STEPS steps, where fp32 reordering has not yet drifted,
 * and reports the final difference as drift. With the default --threads,
 * dp, mp and ddp pass over 100 steps on a shape where the final difference
 * is far beyond the tolerance (dp's and ddp's split batch: 4e-3 against
 * 1e-4; mlp-s drifts the same way, 2.9e-2 after 100 steps, but takes 5x as
 * long), and a wrong gradient (PB_FAULT kind=skew, test-only: one gradient
 * element scaled by 1.05 on one device or rank) still fails the run. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <stdbool.h>

#include "harness/run.h"

/* 512-512-512-512-100, batch 128: dp's final difference after 100 steps is
 * 3.9e-3 (an ulp-level reordering that a flipped ReLU turns into a sample's
 * whole gradient), at a twentieth of mlp-s's time */
static bench_run *run_verify(const char *strategy, bool custom, const char *iters, char *const env[])
{
    bench_run *r = bench_run_new();
    char *args[32] = {"--strategy", (char *)strategy, "--gpus", "2", "--backend", "cpu", "--iters", (char *)iters,
                      "--verify", "--out", r->csv_path, "--workload", custom ? "custom" : "mlp-xs"};
    char *shape[] = {"--in", "512", "--hidden", "512", "--layers", "4", "--classes", "100", "--batch", "128"};
    int n = 13;
    for (size_t i = 0; custom && i < sizeof shape / sizeof *shape; i++) args[n++] = shape[i];
    args[n] = NULL;
    run_bench_env(&r->res, env, args);
    return r;
}

static void expect_passes_100_steps(void **state, const char *strategy)
{
    bench_run *r = keep(state, run_verify(strategy, true, "97", NULL)); /* + 3 warm-up steps */
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "ok");
    double err = csv_num(&c, "verify_max_rel_err");
    if (!(err < 1e-4)) fail_msg("%s: verify_max_rel_err %g after step 10", strategy, err);
    csv_free(&c);
    if (!strstr(r->res.err, "--verify: parameters after step 10 within"))
        fail_msg("no verdict at step 10:\n%s", r->res.err);
    if (!strstr(r->res.err, "--verify: after all 100 steps they differ by"))
        fail_msg("the final drift is not reported:\n%s", r->res.err);
}

static void test_dp_passes_100_steps(void **state) { expect_passes_100_steps(state, "dp"); }
static void test_mp_passes_100_steps(void **state) { expect_passes_100_steps(state, "mp"); }
static void test_ddp_passes_100_steps(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    expect_passes_100_steps(state, "ddp");
}

/* A wrong gradient on one device or rank from step 0 on: exit 1, an
 * invalid row with the measured figures, the judged step in the message. */
static void expect_skew_caught(void **state, const char *strategy, const char *fault)
{
    char env_fault[128];
    snprintf(env_fault, sizeof env_fault, "PB_FAULT=%s", fault);
    char *env[] = {env_fault, NULL};
    bench_run *r = keep(state, run_verify(strategy, false, "20", env));
    expect_exit(r, 1);
    if (!strstr(r->res.err, "PB_FAULT (test-only)") ||
        !strstr(r->res.err, "--verify: parameters after step 10 differ from single's by up to"))
        fail_msg("%s with %s: stderr:\n%s", strategy, fault, r->res.err);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "invalid");
    double err = csv_num(&c, "verify_max_rel_err");
    if (!(err > 1e-4)) fail_msg("%s with %s: verify_max_rel_err %g", strategy, fault, err);
    csv_free(&c);
}

static void test_dp_skew_caught(void **state) { expect_skew_caught(state, "dp", "kind=skew,device=1"); }
static void test_mp_skew_caught(void **state) { expect_skew_caught(state, "mp", "kind=skew,step=5"); }
static void test_ddp_skew_caught(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    expect_skew_caught(state, "ddp", "kind=skew,rank=1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dp_passes_100_steps, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mp_passes_100_steps, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_ddp_passes_100_steps, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_dp_skew_caught, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mp_skew_caught, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_ddp_skew_caught, run_setup, run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
