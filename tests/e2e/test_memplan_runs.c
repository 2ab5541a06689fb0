/* The run's memory plan (harness/memplan.h) against runs of ./bench: its
 * devices' figures against what the cpu backend counts it allocated (the
 * row's peak_mem_mb columns) and its host figure against the measured peak
 * RSS (host_rss_mb); and the overcommitted run of issue 12 (mlp-xs at
 * batch 16777216, ~130 GB, which the OOM killer used to end with exit 137
 * and no row) refused at once: exit 1, the out-of-memory message with what
 * it needed and what was available, a failed row. The plan's numbers alone
 * are tests/unit/test_memplan.c. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>
#include <time.h>

#include "harness/memplan.h"
#include "tests/common/memplan_plan.h"

#define MIB 1048576.0

/* --- against what a run holds ------------------------------------------------ */

/* Runs args for 3 steps; the plan of its devices must be what the cpu
 * backend counted (exactly, to the row's precision), and its host figure
 * no more than the peak RSS and no less than it once the margin is added. */
static void check_against_run(void **state, char *const *args, int ranks)
{
    bench_run *r = keep(state, bench_run_new());
    char *run_args[48];
    int n = 0;
    while (args[n]) {
        run_args[n] = args[n];
        n++;
    }
    char *tail[] = {"--iters", "2", "--warmup", "1", "--quiet", "--out", r->csv_path, NULL};
    for (int i = 0; tail[i]; i++) run_args[n++] = tail[i];
    run_args[n] = NULL;
    run_bench(&r->res, run_args);
    expect_exit(r, 0);
    pb_memplan p = plan_of(args, true, ranks);
    csv c;
    csv_load(&c, r->csv_path);
    double dev0 = csv_num(&c, "peak_mem_mb_dev0"), dmax = csv_num(&c, "peak_mem_mb"), rss = csv_num(&c, "host_rss_mb");
    csv_free(&c);
    double pmax = 0.0;
    for (int i = 0; i < p.n_devices; i++)
        if (p.device[i] > pmax) pmax = p.device[i];
    if (fabs(p.device[0] / MIB - dev0) > 0.01 || fabs(pmax / MIB - dmax) > 0.01)
        fail_msg("%s: plan device 0 %.3f MiB, max %.3f; the backend counted %.3f and %.3f", args[3],
                 p.device[0] / MIB, pmax / MIB, dev0, dmax);
    /* a rank's RSS is its share (ranks alike without --verify) */
    double host = p.host / ranks / MIB, margin = pb_memplan_host_margin(&p, ranks) / ranks / MIB;
    if (host > rss) fail_msg("%s: the plan counts %.1f MiB, more than the peak RSS %.1f", args[3], host, rss);
    /* a sanitizer's shadow memory is no part of a run */
    if (!getenv("ASAN_OPTIONS") && rss > host + margin)
        fail_msg("%s: peak RSS %.1f MiB beyond the plan %.1f + margin %.1f", args[3], rss, host, margin);
}

static void test_single_against_run(void **state)
{
    char *args[] = {"--backend", "cpu", "--workload", "mlp-s", "--verify", "--optimizer", "adamw", NULL};
    check_against_run(state, args, 1);
}

static void test_dp_against_run(void **state)
{
    char *args[] = {"--backend", "cpu", "--workload", "mlp-s", "--strategy", "dp", "--gpus", "2", NULL};
    check_against_run(state, args, 1);
}

static void test_dp_3_devices_against_run(void **state)
{
    char *args[] = {"--backend", "cpu", "--workload", "mlp-xs", "--strategy", "dp", "--gpus", "3", "--batch", "96",
                    NULL};
    check_against_run(state, args, 1);
}

static void test_mp_against_run(void **state)
{
    char *args[] = {"--backend", "cpu", "--workload", "mlp-s", "--strategy", "mp", "--gpus", "2", "--microbatches",
                    "4", NULL};
    check_against_run(state, args, 1);
}

/* 1F1B's slots (min(m, p - stage)) and send buffer, 3 stages: the plan
 * follows the schedule, not GPipe's slot per microbatch */
static void test_mp_1f1b_against_run(void **state)
{
    char *args[] = {"--backend", "cpu", "--workload", "mlp-xs", "--strategy", "mp", "--gpus", "3", "--batch", "96",
                    "--microbatches", "8", "--schedule", "1f1b", NULL};
    check_against_run(state, args, 1);
}

static void test_ddp_against_run(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *args[] = {"--backend", "cpu", "--workload", "mlp-s", "--strategy", "ddp", "--gpus", "2", NULL};
    check_against_run(state, args, 2);
}

/* tp: a rank's part of the model (its shards' parameters, gradients and
 * AdamW state, the split activations divided) over the whole batch */
static void test_tp_against_run(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *args[] = {"--backend", "cpu", "--workload", "mlp-s", "--strategy", "tp", "--gpus", "2", "--optimizer",
                    "adamw", NULL};
    check_against_run(state, args, 2);
}

static void test_tp_gpt_against_run(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *args[] = {"--backend", "cpu", "--workload", "gpt-xs", "--strategy", "tp", "--gpus", "4", NULL};
    check_against_run(state, args, 4);
}

/* --sequence-parallel: the residual stream, the residual after attention
 * and the LayerNorms' statistics held for 1/T of the tokens, the head's
 * gathered input whole (with the mesh's dp2 x tp2 below) */
static void test_tp_gpt_sequence_parallel_against_run(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *args[] = {"--backend", "cpu", "--workload", "gpt-xs", "--strategy", "tp", "--gpus", "4",
                    "--sequence-parallel", NULL};
    check_against_run(state, args, 4);
    char *mesh[] = {"--backend", "cpu", "--workload", "gpt-xs", "--strategy", "mesh", "--gpus", "4", "--dp", "2",
                    "--tp", "2", "--sequence-parallel", NULL};
    check_against_run(state, mesh, 4);
}

/* mesh dp2 x tp2: tp's part over a replica's half of the batch (the dp
 * all-reduce runs in place on the cpu) */
static void test_mesh_against_run(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *args[] = {"--backend", "cpu", "--workload", "gpt-xs", "--strategy", "mesh", "--gpus", "4", "--dp", "2",
                    "--tp", "2", "--optimizer", "adamw", NULL};
    check_against_run(state, args, 4);
}

/* mesh dp2 x tp2 with ZeRO in the dp group: zero's plan over a rank's tp
 * part (stage 3's two gathered blocks of the part, its gradient pool) */
static void test_mesh_zero_against_run(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    static char *const stages[] = {"1", "3"};
    for (int i = 0; i < 2; i++) {
        char *args[] = {"--backend", "cpu", "--workload", "gpt-xs", "--strategy", "mesh", "--gpus", "4", "--dp", "2",
                        "--tp", "2", "--zero-stage", stages[i], "--optimizer", "adamw", NULL};
        check_against_run(state, args, 4);
    }
}

/* mesh tp2 x pp2 under 1F1B: a figure per stage (stage 0, rank 0's, with
 * min(m, p) = 2 slots and the tied head's other end; stage 1 one slot, the
 * targets and the input-gradient send slots), each what its ranks allocate */
static void test_mesh_pp_against_run(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *args[] = {"--backend", "cpu", "--workload", "gpt-xs", "--strategy", "mesh", "--gpus", "4", "--tp", "2",
                    "--pp", "2", "--microbatches", "4", "--schedule", "1f1b", "--optimizer", "adamw", NULL};
    check_against_run(state, args, 4);
}

/* mesh dp2 x pp2 with ZeRO 1 in the dp group: a figure per stage, pipe's
 * replica without optimizer state plus zero's chunks of the stage's blocks
 * (reduced gradients, AdamW's state) and its padding buffer */
static void test_mesh_pp_zero_against_run(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *args[] = {"--backend", "cpu", "--workload", "gpt-xs", "--strategy", "mesh", "--gpus", "4", "--dp", "2",
                    "--pp", "2", "--microbatches", "2", "--schedule", "1f1b", "--zero-stage", "1", "--optimizer",
                    "adamw", NULL};
    check_against_run(state, args, 4);
}

/* zero's plan (its own: shards, the full or pooled gradients, stage 3's two
 * gathered blocks) is what each stage allocates: on mlp-xs, and on gpt-xs
 * with AdamW and buckets of one block (the gradient pool, the tied head) */
static void test_zero_against_run(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    static char *const stages[] = {"1", "2", "3"};
    for (int i = 0; i < 3; i++) {
        char *args[] = {"--backend", "cpu", "--workload", "mlp-xs", "--strategy", "zero", "--gpus", "2",
                        "--zero-stage", stages[i], NULL};
        check_against_run(state, args, 2);
    }
    char *gpt[] = {"--backend", "cpu", "--workload", "gpt-xs", "--strategy", "zero", "--gpus", "2", "--zero-stage", "3",
                   "--optimizer", "adamw", "--bucket-mb", "0.01", NULL};
    check_against_run(state, gpt, 2);
}

static void test_overcommitted_run_refused(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char *args[] = {"--workload", "mlp-xs", "--batch", "16777216", "--backend", "cpu", "--quiet", "--out",
                    r->csv_path, NULL};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_bench(&r->res, args);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    expect_exit(r, 1);
    /* refused before allocating: no 130 GB touched, so at once */
    if (took > 5.0) fail_msg("took %.1f s to refuse", took);
    if (!strstr(r->res.err, "out of host memory: the run needs about ") || !strstr(r->res.err, " MiB available") ||
        !strstr(r->res.err, "refused before allocating"))
        fail_msg("stderr:\n%s", r->res.err);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "failed");
    assert_non_null(strstr(csv_get(&c, "error"), "out of host memory: the run needs about "));
    static const char *const figures[] = {"step_ms_p50", "step_ms_mean", "samples_per_s", "loss_last", "host_rss_mb"};
    for (size_t i = 0; i < sizeof figures / sizeof *figures; i++) assert_string_equal(csv_get(&c, figures[i]), "");
    assert_string_equal(csv_get(&c, "batch_global"), "16777216");
    csv_free(&c);
}

/* --- the row's plan columns --------------------------------------------------- */

/* Every strategy on both workloads: the row's planned figure of its
 * largest device (mem_plan_mb) within 1% of what the cpu backend counted
 * (peak_mem_mb; the plan is exact there, the 1% is the row's rounding and
 * room for a strategy whose transient buffers it does not foresee), and its
 * parts adding up to it. */
static void test_plan_columns_match_peak(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    static const char *const workloads[] = {"mlp-xs", "gpt-xs"};
    static const char *const strategies[][2] = {{"single", "1"}, {"dp", "2"}, {"mp", "2"}, {"ddp", "2"}};
    int runs = 0;
    for (size_t w = 0; w < 2; w++)
        for (size_t k = 0; k < 4; k++) {
            if (strcmp(strategies[k][0], "ddp") == 0 && !PB_EXPECT_MPI) continue;
            char *args[] = {"--backend", "cpu", "--workload", (char *)workloads[w], "--strategy",
                            (char *)strategies[k][0], "--gpus", (char *)strategies[k][1], "--iters", "1",
                            "--warmup", "0", "--quiet", "--out", r->csv_path, NULL};
            run_bench(&r->res, args);
            expect_exit(r, 0);
            runs++;
        }
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, runs);
    for (int i = 0; i < c.rows; i++) {
        double peak = atof(csv_field(&c, i, "peak_mem_mb")), plan = atof(csv_field(&c, i, "mem_plan_mb"));
        double parts = atof(csv_field(&c, i, "mem_plan_params_mb")) + atof(csv_field(&c, i, "mem_plan_grads_mb")) +
                       atof(csv_field(&c, i, "mem_plan_optim_mb")) + atof(csv_field(&c, i, "mem_plan_acts_mb"));
        const char *what = csv_field(&c, i, "strategy"), *wl = csv_field(&c, i, "workload");
        if (!(peak > 0) || fabs(plan - peak) > 0.01 * peak)
            fail_msg("%s %s: mem_plan_mb %.4f, peak_mem_mb %.4f", wl, what, plan, peak);
        if (fabs(parts - plan) > 1e-4 * plan)
            fail_msg("%s %s: the parts add up to %.5f MB, mem_plan_mb %.5f", wl, what, parts, plan);
        /* every strategy here keeps whole fp32 parameters, gradients and
         * momentum on its largest device, or a stage's share of them */
        if (!(atof(csv_field(&c, i, "mem_plan_params_mb")) > 0)) fail_msg("%s %s: no parameters", wl, what);
    }
    csv_free(&c);
}

/* --- --device-mem-mb ------------------------------------------------------------ */

/* A cap below the plan of the largest device: exit 1 before anything is
 * allocated, with the device, both figures and the split in the message
 * and the failed row (which also keeps the plan); a cap of exactly the
 * plan runs, so the backend, which refuses any allocation beyond the cap,
 * never held more than the plan on any device. */
static void test_device_cap(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char *base[] = {"--backend", "cpu", "--workload", "mlp-xs", "--strategy", "dp", "--gpus", "2", NULL};
    pb_memplan p = plan_of(base, true, 1);
    int big = pb_memplan_largest(&p);
    double need = p.device[big] / MIB;
    char cap[32];
    snprintf(cap, sizeof cap, "%.6f", need - 0.05);
    char *args[] = {"--backend", "cpu", "--workload", "mlp-xs", "--strategy", "dp", "--gpus", "2", "--iters", "1",
                    "--warmup", "0", "--quiet", "--device-mem-mb", cap, "--out", r->csv_path, NULL};
    run_bench(&r->res, args);
    expect_exit(r, 1);
    char want[160];
    snprintf(want, sizeof want, "out of device memory: device %d needs %.1f MB, has %.1f MB (params ", big, need,
             need - 0.05);
    if (!strstr(r->res.err, want) || !strstr(r->res.err, "under --device-mem-mb; refused before allocating"))
        fail_msg("wanted '%s' in stderr:\n%s", want, r->res.err);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "failed");
    assert_non_null(strstr(csv_get(&c, "error"), want));
    assert_string_equal(csv_get(&c, "peak_mem_mb"), "");
    assert_string_equal(csv_get(&c, "step_ms_p50"), "");
    if (fabs(csv_num(&c, "mem_plan_mb") - need) > 1e-4) fail_msg("mem_plan_mb %s", csv_get(&c, "mem_plan_mb"));
    csv_free(&c);

    /* exactly the plan (rounded up to the flag's precision) */
    snprintf(cap, sizeof cap, "%.9f", ceil(need * 1e9) / 1e9);
    run_bench(&r->res, args);
    expect_exit(r, 0);
}

/* The sweep goes on past a configuration that does not fit: single x1
 * (5.0 MB) is refused under a 4 MB cap, mp x2 (3.3 MB per stage) runs.
 * The figure single x1 needs is test_device_cap's to check against the
 * plan; here only that it is over the cap, so that a change to the GPT's
 * activations does not break this test. */
static void test_sweep_goes_on_past_the_cap(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char *args[] = {"sweep", "--strategies", "single,mp", "--gpus", "1,2", "--workload", "gpt-xs", "--scaling",
                    "strong", "--iters", "1", "--warmup", "0", "--threads", "1", "--out", r->csv_path, "--",
                    "--device-mem-mb", "4", NULL};
    run_bench(&r->res, args);
    expect_exit(r, 1); /* a run failed */
    const char *said = "single x1 batch 8, repeat 1/1 failed (exit 1): bench: error: out of device memory: "
                       "device 0 needs ";
    const char *refused = strstr(r->res.err, said);
    double needs = 0;
    int end = 0;
    if (!refused || sscanf(refused + strlen(said), "%lf MB, has 4.0 MB%n", &needs, &end) != 1 || end == 0 ||
        needs <= 4.0 ||
        !strstr(r->res.err, "mp x2 batch 8, repeat 1/1: ok"))
        fail_msg("stderr:\n%s", r->res.err);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 2);
    for (int i = 0; i < c.rows; i++) {
        bool single = strcmp(csv_field(&c, i, "strategy"), "single") == 0;
        assert_string_equal(csv_field(&c, i, "status"), single ? "failed" : "ok");
    }
    csv_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_single_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_dp_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_dp_3_devices_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mp_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mp_1f1b_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_ddp_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_tp_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_tp_gpt_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_tp_gpt_sequence_parallel_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_zero_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mesh_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mesh_zero_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mesh_pp_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mesh_pp_zero_against_run, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_overcommitted_run_refused, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_plan_columns_match_peak, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_device_cap, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_goes_on_past_the_cap, run_setup, run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
