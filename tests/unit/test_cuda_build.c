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
        assert_non_null(pb_backend_cuda.gemm_fwd);
        assert_non_null(pb_backend_cuda.gemm_bwd);
        assert_non_null(pb_backend_cuda.softmax_xent);
        assert_non_null(pb_backend_cuda.optimizer);
        assert_non_null(pb_backend_cuda.calibrate);
        assert_non_null(pb_backend_cuda.capture_begin);
    } else {
        assert_null(pb_backend_cuda.gemm_fwd);
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

/* test_gpu where there is no device: "skipped: no usable GPU (why)" and
 * exit 77 (automake's "skipped"), which device-check.sh reads as is. */
static void test_gpu_tests_skip_without_device(void **state)
{
    (void)state;
    char why[256] = "";
    if (!PB_EXPECT_CUDA || pb_backend_cuda.device_count(why, sizeof why) > 0) skip();
    bench_result *r = calloc(1, sizeof *r);
    char *argv[] = {PB_TEST_GPU_BIN, NULL};
    run_argv_env(r, NULL, argv);
    assert_int_equal(r->exit_code, 77);
    assert_non_null(strstr(r->out, "skipped: no usable GPU ("));
    free(r);
}

/* `make test-gpu` with test_gpu at build_dir/tests/test_gpu, neither it nor
 * bench remade (-o), in the repository root the tests run in. MAKEFLAGS is
 * emptied so an outer `make test`'s jobserver and variables stay out. */
static void run_make_test_gpu(bench_result *r, const char *build_dir)
{
    assert_true(strlen(build_dir) < 512);
    char build[600], o_bin[600], o_bench[600];
    snprintf(build, sizeof build, "BUILD=%s", build_dir);
    snprintf(o_bin, sizeof o_bin, "--old-file=%s/tests/test_gpu", build_dir);
    snprintf(o_bench, sizeof o_bench, "--old-file=%s", bench_path());
    char *env[] = {"MAKEFLAGS=", "MAKELEVEL=", NULL};
    char *argv[] = {"make", "-s", "--no-print-directory", build, o_bin, o_bench, "--old-file=bench",
                    "--old-file=build-san/bench", "test-gpu", NULL};
    run_argv_env(r, env, argv);
}

/* make test-gpu on a machine without a GPU is a success that says it
 * skipped (the README's promise), not make's "Error 77" and exit 2. */
static void test_make_test_gpu_skips_with_success(void **state)
{
    (void)state;
    char why[256] = "";
    if (!file_exists(PB_TEST_GPU_BIN) || pb_backend_cuda.device_count(why, sizeof why) > 0) skip();
    char build_dir[512];
    snprintf(build_dir, sizeof build_dir, "%s", PB_TEST_GPU_BIN);
    *strrchr(build_dir, '/') = '\0'; /* BUILD/tests */
    *strrchr(build_dir, '/') = '\0'; /* BUILD */
    bench_result *r = calloc(1, sizeof *r);
    run_make_test_gpu(r, build_dir);
    if (r->exit_code != 0) fail_msg("make test-gpu exited %d:\n%s%s", r->exit_code, r->out, r->err);
    assert_non_null(strstr(r->out, "test-gpu skipped: no usable GPU ("));
    assert_null(strstr(r->err, "Error"));
    free(r);
}

/* Only 77 is turned into success: a test_gpu that fails (exit 1) or
 * crashes fails make test-gpu, and one that skips passes. A stand-in
 * program in a temporary BUILD folder plays test_gpu. */
static void test_make_test_gpu_fails_on_failure(void **state)
{
    (void)state;
    static const struct { const char *body; int make_exit; } cases[] = {
        {"echo 'test-gpu skipped: no usable GPU (stand-in)'; exit 77", 0},
        {"echo '[  FAILED  ] 1 test'; exit 1", 2},
        {"kill -SEGV $$", 2},
        {"exit 0", 0},
    };
    char *dir = make_temp_dir();
    char tests_dir[512], path_env[4200];
    snprintf(tests_dir, sizeof tests_dir, "%s/tests", dir);
    assert_int_equal(mkdir(tests_dir, 0755), 0);
    bench_result *r = calloc(1, sizeof *r);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_tool(tests_dir, "test_gpu", cases[i].body, path_env, sizeof path_env);
        run_make_test_gpu(r, dir);
        if (r->exit_code != cases[i].make_exit)
            fail_msg("stand-in '%s': make test-gpu exited %d, expected %d:\n%s%s", cases[i].body, r->exit_code,
                     cases[i].make_exit, r->out, r->err);
    }
    free(r);
    remove_temp_dir(dir);
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
        cmocka_unit_test(test_make_test_gpu_skips_with_success),
        cmocka_unit_test(test_make_test_gpu_fails_on_failure),
        cmocka_unit_test(test_driver_version_parsed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
