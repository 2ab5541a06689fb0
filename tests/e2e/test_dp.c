/* Strategy dp (DataParallel) through ./bench on the cpu backend: it trains
 * exactly as single does on 2, 3 and 4 devices (--verify), with its data
 * moved by the `local` comm (auto or named), rejects a batch it cannot
 * split, and its row times scatter/replicate/gather/reduce as phases of
 * their own that add up to the step, with device 0's peak memory. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>



/* bench --strategy dp --backend cpu --workload mlp-xs --iters 10 --warmup 0
 *       --threads 1 --quiet --out DIR/r.csv --gpus N --batch B [extra...] */
static bench_run *run_dp(int gpus, int batch, char *const extra[])
{
    bench_run *r = bench_run_new();
    char g[16], b[16];
    snprintf(g, sizeof g, "%d", gpus);
    snprintf(b, sizeof b, "%d", batch);
    char *args[48] = {"--strategy", "dp", "--backend", "cpu", "--workload", "mlp-xs", "--iters", "10",
                      "--warmup", "0", "--threads", "1", "--quiet", "--out", r->csv_path,
                      "--gpus", g, "--batch", b};
    int n = 19;
    for (int i = 0; extra && extra[i] && n < 47; i++) args[n++] = extra[i];
    args[n] = NULL;
    run_bench(&r->res, args);
    return r;
}

/* After 10 steps the parameters match single's on the same global batch. */
static void check_matches_single(void **state, int gpus, int batch, const char *optimizer)
{
    char *extra[] = {"--verify", "--optimizer", (char *)optimizer, NULL};
    bench_run *r = keep(state, run_dp(gpus, batch, extra));
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "ok");
    assert_string_equal(csv_get(&c, "strategy"), "dp");
    assert_int_equal((int)csv_num(&c, "devices"), gpus);
    assert_int_equal((int)csv_num(&c, "batch_per_device"), batch / gpus);
    double err = csv_num(&c, "verify_max_rel_err");
    if (!(err < 1e-4)) fail_msg("dp on %d devices, %s: max relative error %g vs single", gpus, optimizer, err);
    csv_free(&c);
}

/* AdamW divides by the gradient's own scale, so where a coordinate's
 * gradient is near zero the rounding of a split batch (shard sums added on
 * device 0 instead of one GEMM over all rows) shows in its update: on mlp-xs
 * the error stays near 1e-5 at batch 48 but reaches a few 1e-4 at 96 and
 * 192 (one weight of thousands). SGD stays near 1e-6 at every batch. */
static void test_2_devices_sgd(void **state) { check_matches_single(state, 2, 96, "sgd"); }
static void test_2_devices_adamw(void **state) { check_matches_single(state, 2, 48, "adamw"); }
static void test_3_devices_sgd(void **state) { check_matches_single(state, 3, 96, "sgd"); }
static void test_3_devices_adamw(void **state) { check_matches_single(state, 3, 48, "adamw"); }
static void test_4_devices_sgd(void **state) { check_matches_single(state, 4, 96, "sgd"); }
static void test_4_devices_adamw(void **state) { check_matches_single(state, 4, 48, "adamw"); }

/* A usage error: exit 2, one line naming both numbers, no row. */
static void check_usage_error(void **state, int gpus, int batch, const char *want)
{
    bench_run *r = keep(state, run_dp(gpus, batch, NULL));
    expect_exit(r, 2);
    assert_int_equal(count_lines(r->res.err), 1);
    if (!strstr(r->res.err, want)) fail_msg("stderr lacks '%s':\n%s", want, r->res.err);
    assert_false(file_exists(r->csv_path));
}

/* --comm local, named rather than picked by auto, trains the same */
static void test_comm_local_named(void **state)
{
    char *extra[] = {"--comm", "local", "--verify", NULL};
    bench_run *r = keep(state, run_dp(3, 48, extra));
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_string_equal(csv_get(&c, "comm"), "local");
    assert_true(csv_num(&c, "verify_max_rel_err") < 1e-4);
    csv_free(&c);
}

static void test_batch_not_divisible(void **state) { check_usage_error(state, 3, 50, "not divisible by --gpus 3"); }
static void test_one_device(void **state) { check_usage_error(state, 1, 48, "--gpus 1"); }

/* The DataParallel phases are timed on their own, every phase of the step is
 * accounted for, and device 0 (optimizer state, full-batch logits) has the
 * largest peak memory. */
static void test_row_phases_and_memory(void **state)
{
    char steps_path[300];
    char *dir = make_temp_dir();
    snprintf(steps_path, sizeof steps_path, "%s/steps.csv", dir);
    bench_run *r = keep(state, run_dp(4, 96, (char *const[]){"--steps-out", steps_path, NULL}));
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_string_equal(csv_get(&c, "status"), "ok");
    static const char *const own[] = {"scatter_ms", "replicate_ms", "gather_ms", "reduce_ms", "fwd_ms",
                                      "bwd_ms", "opt_ms"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (!(csv_num(&c, own[i]) > 0.0)) fail_msg("%s is %s, expected > 0", own[i], csv_get(&c, own[i]));
    /* its data moves through the `local` comm, timed in the phases above;
     * comm_ms would count that time twice */
    assert_string_equal(csv_get(&c, "comm"), "local");
    assert_true(csv_num(&c, "comm_ms") == 0.0);

    static const char *const phases[] = {"load_ms", "h2d_ms", "scatter_ms", "replicate_ms", "fwd_ms",
                                         "gather_ms", "bwd_ms", "reduce_ms", "opt_ms"};
    double sum = 0.0;
    for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) sum += csv_num(&c, phases[i]);
    double step = csv_num(&c, "step_ms_mean");
    if (!(sum <= 1.001 * step)) fail_msg("phases add up to %.4f ms, over the step mean %.4f ms", sum, step);
    /* step by step (--steps-out): the typical step's phases add up to it
     * within 5%; a step the host stopped between two phases (its CPU
     * quota's 100 ms stalls: bench check --stall-seconds) has time in
     * none, which the row's means alone would count against all */
    csv steps;
    csv_load(&steps, steps_path);
    assert_int_equal(steps.rows, 10);
    double ratio[10];
    for (int k = 0; k < 10; k++) {
        double part = 0.0;
        for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++)
            part += atof(pb_csv_get(&steps.data, (size_t)k, (size_t)pb_csv_find(&steps.data, phases[i])));
        ratio[k] = part / atof(pb_csv_get(&steps.data, (size_t)k, (size_t)pb_csv_find(&steps.data, "step_ms")));
    }
    for (int a = 1; a < 10; a++) /* insertion sort: the median of 10 */
        for (int b = a; b > 0 && ratio[b] < ratio[b - 1]; b--) {
            double t = ratio[b];
            ratio[b] = ratio[b - 1];
            ratio[b - 1] = t;
        }
    double median = (ratio[4] + ratio[5]) / 2;
    if (!(fabs(median - 1.0) <= 0.05))
        fail_msg("the median step's phases add up to %.1f%% of it (row: %.4f of %.4f ms)", 100 * median, sum, step);
    csv_free(&steps);
    remove_temp_dir(dir);

    double peak = csv_num(&c, "peak_mem_mb"), dev0 = csv_num(&c, "peak_mem_mb_dev0");
    assert_true(dev0 > 0.0);
    if (peak != dev0) fail_msg("peak_mem_mb %g, device 0's %g: device 0 should hold the most", peak, dev0);
    csv_free(&c);
}

/* Only device 0 keeps optimizer state: AdamW's second moment (one fp32 copy
 * of the parameters more than SGD's momentum) grows device 0's peak by
 * exactly that, and the peak over devices is still device 0's. */
static void test_adamw_state_on_device_0(void **state)
{
    char *adamw[] = {"--optimizer", "adamw", NULL};
    bench_run *a = run_dp(2, 48, adamw);
    bench_run *s = keep(state, run_dp(2, 48, NULL));
    expect_exit(s, 0);
    int a_exit = a->res.exit_code;
    csv ca, cs;
    csv_load(&ca, a->csv_path);
    bench_run_free(a);
    assert_int_equal(a_exit, 0);
    csv_load(&cs, s->csv_path);
    /* mlp-xs: 134154 parameters, 0.51 MB per fp32 copy */
    double grow = csv_num(&ca, "peak_mem_mb_dev0") - csv_num(&cs, "peak_mem_mb_dev0");
    if (fabs(grow - 134154.0 * 4 / 1048576.0) > 0.01) fail_msg("AdamW added %g MB on device 0", grow);
    assert_true(csv_num(&ca, "peak_mem_mb") == csv_num(&ca, "peak_mem_mb_dev0"));
    csv_free(&ca);
    csv_free(&cs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_2_devices_sgd, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_2_devices_adamw, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_3_devices_sgd, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_3_devices_adamw, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_4_devices_sgd, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_4_devices_adamw, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_comm_local_named, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_batch_not_divisible, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_one_device, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_row_phases_and_memory, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_adamw_state_on_device_0, run_setup, run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
