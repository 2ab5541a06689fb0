/* ./bench --backend cuda on a machine without a usable CUDA device (CI's):
 * a usage error naming the cause instead of a failed run. That the backend
 * is built as configured is tests/unit/test_cuda_build.c. */
#include "tests/common/test_util.h"

#include "harness/env.h"
#include "kernels/backend.h"

/* --backend cuda without a device: exit 2, one line naming the cause. */
static void test_backend_cuda_without_device(void **state)
{
    (void)state;
    char why[256] = "";
    if (pb_backend_cuda.device_count(why, sizeof why) > 0) skip();
    bench_result *r = calloc(1, sizeof *r);
    char *dir = make_temp_dir();
    char out[512];
    snprintf(out, sizeof out, "%s/r.csv", dir);
    char *args[] = {"--backend", "cuda", "--workload", "mlp-xs", "--out", out, NULL};
    run_bench(r, args);
    assert_int_equal(r->exit_code, 2);
    assert_int_equal(count_lines(r->err), 1);
    assert_non_null(strstr(r->err, "--backend cuda"));
    assert_non_null(strstr(r->err, why));
    assert_false(file_exists(out));
    remove_temp_dir(dir);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_cuda_without_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
