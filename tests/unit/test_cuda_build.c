/* The CUDA backend is compiled and linked whenever the build found nvcc
 * (PB_EXPECT_CUDA=1), also on machines with no GPU such as CI's; without a
 * usable device it reports a cause instead of failing (the run that shows
 * it to a user: tests/e2e/test_cuda_build_runs.c). */
#include "tests/common/test_util.h"

#include "kernels/driver_version.h"
#include "kernels/backend.h"

#ifndef PB_EXPECT_CUDA
#error "tests.mk passes PB_EXPECT_CUDA"
#endif

static void test_backend_built_as_configured(void **state)
{
    (void)state;
    assert_int_equal(pb_cuda_built(), PB_EXPECT_CUDA);
    assert_string_equal(pb_backend_cuda.name, "cuda");
    if (PB_EXPECT_CUDA) {
        /* the real backend fills every compute slot; the stub has none */
        assert_non_null(pb_backend_cuda.linear_fwd);
        assert_non_null(pb_backend_cuda.linear_bwd);
        assert_non_null(pb_backend_cuda.softmax_xent);
        assert_non_null(pb_backend_cuda.optimizer);
        assert_non_null(pb_backend_cuda.calibrate);
        assert_non_null(pb_backend_cuda.capture_begin);
    } else {
        assert_null(pb_backend_cuda.linear_fwd);
    }
}

/* Without a usable device: a count of 0 and a cause that names it, never a
 * crash. A built backend must not blame the build. */
static void test_no_device_has_a_cause(void **state)
{
    (void)state;
    char why[256] = "";
    int n = pb_backend_cuda.device_count(why, sizeof why);
    if (n > 0) skip();
    assert_int_equal(n, 0);
    assert_true(strlen(why) > 10);
    if (PB_EXPECT_CUDA) assert_null(strstr(why, "built without CUDA"));
    else assert_non_null(strstr(why, "built without CUDA"));
}

/* make test-gpu where there is no device: "skipped: no CUDA device" and
 * exit 77 (automake's "skipped"), so a CI job can run it unconditionally. */
static void test_gpu_tests_skip_without_device(void **state)
{
    (void)state;
    char why[256] = "";
    if (!PB_EXPECT_CUDA || pb_backend_cuda.device_count(why, sizeof why) > 0) skip();
    bench_result *r = calloc(1, sizeof *r);
    char *argv[] = {PB_TEST_GPU_BIN, NULL};
    run_argv_env(r, NULL, argv);
    assert_int_equal(r->exit_code, 77);
    assert_non_null(strstr(r->out, "skipped: no CUDA device"));
    free(r);
}

/* The driver column: the kernel module's version, from the line formats the
 * open and the proprietary modules print (the first seen on an H200 here). */
static void test_driver_version_parsed(void **state)
{
    (void)state;
    char v[32];
    assert_true(pb_parse_driver_version(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  "
        "(dvs-builder@U16-I3-B03-4-3)  Thu Oct  9 2025\n", v, sizeof v));
    assert_string_equal(v, "580.159.04");
    assert_true(pb_parse_driver_version(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n", v, sizeof v));
    assert_string_equal(v, "535.104.05");
    assert_false(pb_parse_driver_version("no module here\n", v, sizeof v));
    assert_false(pb_parse_driver_version("NVIDIA UNIX Kernel Module for x86_64 Release\n", v, sizeof v));
    assert_false(pb_parse_driver_version("Kernel Module 580.159.04\n", v, 4)); /* too long for out */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_built_as_configured),
        cmocka_unit_test(test_no_device_has_a_cause),
        cmocka_unit_test(test_gpu_tests_skip_without_device),
        cmocka_unit_test(test_driver_version_parsed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
