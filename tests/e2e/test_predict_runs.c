/* bench predict and bench compare --predicted, end to end:
 *  - the validation's CI share (scripts/predict-validate.sh quick: ddp on 2
 *    ranks with and without overlap, dp on 2 devices, predicted from single
 *    runs and bench comm fits measured in the same minute): every
 *    configuration predicted, its error in the CSV, and with
 *    PB_PREDICT_STRICT=1 the errors within the median 10% and
 *    largest 25% (what the whole validation meets here, docs/predict.md)
 *    when no other work was busy before the runs (1-minute load average
 *    under 1; otherwise any CPU timing is a measure of the neighbours, and
 *    ddp's ranks most: said, and not judged); memory per device within 5%
 *    of the runs' peak always;
 *  - the H100 example of the README: a topology file's grid, dp left out
 *    across nodes, efficiency 1 for one device and falling with devices;
 *  - compare --predicted: runs at 90% of the prediction pass, at 50% are
 *    below-model (exit 1), nothing to pair is exit 2;
 *  - bad command lines and inputs: exit 2, one line. */
#include "tests/common/files_fixture.h"

#include <math.h>

#include "study/csv_read.h"

static const char *const h100_single = "results/topologies/h100-mlp-l-bf16-single.csv";
static const char *const h100_topo = "results/topologies/h100-nvlink-ib400.topo";

static double col_num(const pb_csv *c, size_t row, const char *name)
{
    int k = pb_csv_find(c, name);
    assert_true(k >= 0);
    double v;
    if (!pb_csv_number(pb_csv_get(c, row, (size_t)k), &v)) return NAN;
    return v;
}

static const char *col(const pb_csv *c, size_t row, const char *name)
{
    int k = pb_csv_find(c, name);
    assert_true(k >= 0);
    return pb_csv_get(c, row, (size_t)k);
}

static double load_average(void)
{
    double l = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = 0;
        fclose(f);
    }
    return l;
}

static void test_validation_quick_share(void **state)
{
    files *f = *state;
    double before = load_average();
    char dir[600], script_env[64];
    snprintf(dir, sizeof dir, "%s/v", f->dir);
    snprintf(script_env, sizeof script_env, "PB_PREDICT_ITERS=10");
    /* bench predict's own limits: the 10% median, 25% largest */
    run_argv_env(&f->res, (char *[]){script_env, NULL},
                 (char *[]){"scripts/predict-validate.sh", dir, "quick", NULL});
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    /* exit 1 is the limits missed: judged below with the load in view */
    if (f->res.exit_code != 0 && f->res.exit_code != 1) fail_msg("exit %d\n%s", f->res.exit_code, f->res.err);
    char path[700];
    snprintf(path, sizeof path, "%s/predicted.csv", dir);
    pb_csv c;
    assert_int_equal(pb_csv_load(path, &c), PB_OK);
    assert_int_equal(c.nrows, 3); /* ddp, ddp --no-overlap, dp: each once */
    double worst = 0;
    for (size_t i = 0; i < c.nrows; i++) {
        double e = col_num(&c, i, "error_pct");
        assert_true(isfinite(e));
        assert_true(col_num(&c, i, "measured_step_ms") > 0);
        assert_string_equal(col(&c, i, "collectives"), "measured");
        worst = fmax(worst, fabs(e));
        /* memory does not depend on the machine's load: judged always */
        double mem = col_num(&c, i, "mem_mb_per_device"), mmem = col_num(&c, i, "measured_mem_mb_per_device");
        if (!(fabs(mem - mmem) <= 0.05 * mmem))
            fail_msg("%s: memory predicted %.1f MiB, measured %.1f", col(&c, i, "strategy"), mem, mmem);
        print_message("predict: %s no_overlap=%s: predicted %.1f ms, measured %.1f ms, error %+.1f%%\n",
                      col(&c, i, "strategy"), col(&c, i, "no_overlap"), col_num(&c, i, "step_ms"),
                      col_num(&c, i, "measured_step_ms"), e);
    }
    pb_csv_free(&c);
    assert_non_null(strstr(f->res.out, "median |error|"));
    /* the 1-minute load before the script (its own runs raise it after):
     * one other busy process already slowed 2 ddp ranks on 2 cores 3x
     * while it left the single inputs alone (measured here) */
    /* step times are judged only when asked (make predict-validate's
     * machine, PB_PREDICT_STRICT=1) and the machine is quiet: on a CI
     * runner of unknown cores and load, shared with other jobs, they are
     * a measure of the neighbours: reported, not a failure */
    const char *strict = getenv("PB_PREDICT_STRICT");
    if (before >= 1.0 || !strict || strcmp(strict, "1") != 0) {
        print_message("predict: load average %.1f on %ld cores before the runs%s: the errors (largest %.1f%%) are "
                      "reported, not judged\n",
                      before, cores, strict && strcmp(strict, "1") == 0 ? "" : ", PB_PREDICT_STRICT unset", worst);
        return;
    }
    if (f->res.exit_code != 0) fail_msg("the model misses on a quiet machine:\n%s", f->res.out);
}

static void test_h100_grid_from_a_topology(void **state)
{
    files *f = *state;
    run_bench(&f->res, (char *[]){"predict", "--single", (char *)h100_single, "--topology", (char *)h100_topo,
                                  "--strategies", "single,ddp,dp,mp", "--devices", "1,8,64,512", "--out", f->out,
                                  NULL});
    if (f->res.exit_code != 0) fail_msg("exit %d\n%s", f->res.exit_code, f->res.err);
    /* dp is one process: a node's 8 GPUs at most; mp one layer a stage */
    assert_non_null(strstr(f->res.err, "dp (one process) runs on 2 to 8 devices of one node"));
    assert_int_equal(count_substr(f->res.err, "left out"), 2);
    pb_csv c;
    assert_int_equal(pb_csv_load(f->out, &c), PB_OK);
    /* single x1, ddp x8 x64 x512, dp x8, mp x8 */
    assert_int_equal(c.nrows, 6);
    double prev = 0, prev_eff = 2;
    for (size_t i = 0; i < c.nrows; i++) {
        if (strcmp(col(&c, i, "strategy"), "single") == 0) {
            assert_float_equal(col_num(&c, i, "step_ms"), 7.87, 1e-9); /* the input itself */
            assert_float_equal(col_num(&c, i, "efficiency"), 1, 1e-9);
        }
        if (strcmp(col(&c, i, "strategy"), "ddp") != 0) continue;
        double step = col_num(&c, i, "step_ms"), eff = col_num(&c, i, "efficiency");
        /* weak scaling: more devices, more communication, never less */
        assert_true(step > prev && eff < prev_eff && eff > 0);
        assert_float_equal(col_num(&c, i, "batch_per_device"), 1024, 0);
        assert_float_equal(col_num(&c, i, "comm_exposed_ms") + col_num(&c, i, "comm_hidden_ms"),
                           col_num(&c, i, "comm_ms"), 1e-3);
        assert_string_equal(col(&c, i, "collectives"), "topology");
        assert_float_equal(col_num(&c, i, "nodes"), col_num(&c, i, "devices") / 8, 0);
        prev = step;
        prev_eff = eff;
    }
    pb_csv_free(&c);
}

static bool have_gnuplot(void) { return system("command -v gnuplot >/dev/null 2>&1") == 0; }

/* --plot and bench plot of a predict CSV: both images, from the same rows */
static void test_plot_of_a_prediction(void **state)
{
    files *f = *state;
    if (!have_gnuplot()) {
        print_message("predict: gnuplot not on PATH; the plot is not drawn here\n");
        return;
    }
    run_bench(&f->res, (char *[]){"predict", "--single", (char *)h100_single, "--topology", (char *)h100_topo,
                                  "--strategies", "ddp,dp", "--devices", "8,64", "--out", f->out, "--plot", f->dir,
                                  "--quiet", NULL});
    if (f->res.exit_code != 0) fail_msg("exit %d\n%s", f->res.exit_code, f->res.err);
    char path[700], sub[600];
    static const char *const names[] = {"predict-throughput.png", "predict-throughput.svg", "predict-efficiency.png",
                                        "predict-efficiency.svg"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", f->dir, names[i]);
        assert_true(file_exists(path));
    }
    snprintf(sub, sizeof sub, "%s/p", f->dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    run_bench(&f->res, (char *[]){"plot", f->out, "--out", sub, NULL});
    if (f->res.exit_code != 0) fail_msg("exit %d\n%s", f->res.exit_code, f->res.err);
    snprintf(path, sizeof path, "%s/predict-efficiency.png", sub);
    assert_true(file_exists(path));
    assert_null(strstr(f->res.err, "warning"));
}

/* a run CSV of the columns compare --predicted pairs by */
static void write_measured(const char *path, double sps)
{
    char text[1024];
    snprintf(text, sizeof text,
             "strategy,status,workload,backend,precision,devices,batch_global,microbatches,bucket_mb,no_overlap,"
             "threads,samples_per_s\n"
             "ddp,ok,mlp-l,cuda,bf16,8,8192,,25,0,1,%.1f\n"
             "ddp,ok,mlp-l,cuda,bf16,8,8192,,25,0,1,%.1f\n"
             "ddp,failed,mlp-l,cuda,bf16,8,8192,,25,0,1,\n",
             sps, sps);
    write_text(path, text);
}

static void test_compare_predicted_flags_below_model(void **state)
{
    files *f = *state;
    run_bench(&f->res, (char *[]){"predict", "--single", (char *)h100_single, "--topology", (char *)h100_topo,
                                  "--strategies", "ddp", "--devices", "8", "--out", f->out, "--quiet", NULL});
    assert_int_equal(f->res.exit_code, 0);
    pb_csv c;
    assert_int_equal(pb_csv_load(f->out, &c), PB_OK);
    double pred = col_num(&c, 0, "samples_per_s");
    pb_csv_free(&c);
    char meas[600];
    snprintf(meas, sizeof meas, "%s/m.csv", f->dir);
    /* 10% below: within the default threshold (25%) */
    write_measured(meas, pred * 0.9);
    run_bench(&f->res, (char *[]){"compare", "--predicted", f->out, meas, NULL});
    if (f->res.exit_code != 0) fail_msg("exit %d\n%s%s", f->res.exit_code, f->res.out, f->res.err);
    assert_non_null(strstr(f->res.out, "1 configurations compared, 0 below-model"));
    /* ... but not within --threshold 5 */
    run_bench(&f->res, (char *[]){"compare", "--predicted", f->out, meas, "--threshold", "5", NULL});
    assert_int_equal(f->res.exit_code, 1);
    /* half the prediction: below-model */
    write_measured(meas, pred * 0.5);
    run_bench(&f->res, (char *[]){"compare", "--predicted", f->out, meas, NULL});
    assert_int_equal(f->res.exit_code, 1);
    assert_non_null(strstr(f->res.out, "below-model"));
    assert_non_null(strstr(f->res.out, "-50.0%"));
    /* faster than predicted is never flagged */
    write_measured(meas, pred * 3);
    run_bench(&f->res, (char *[]){"compare", "--predicted=", NULL});
    assert_int_equal(f->res.exit_code, 2);
    run_bench(&f->res, (char *[]){"compare", "--predicted", f->out, meas, NULL});
    assert_int_equal(f->res.exit_code, 0);
    /* nothing pairs: exit 2, said */
    write_text(meas, "strategy,status,workload,backend,precision,devices,batch_global,microbatches,bucket_mb,"
                     "no_overlap,threads,samples_per_s\nddp,ok,mlp-l,cuda,bf16,16,8192,,25,0,1,5\n");
    run_bench(&f->res, (char *[]){"compare", "--predicted", f->out, meas, NULL});
    assert_int_equal(f->res.exit_code, 2);
    assert_non_null(strstr(f->res.err, "nothing was compared"));
    /* a run CSV given as the prediction */
    run_bench(&f->res, (char *[]){"compare", "--predicted", meas, f->out, NULL});
    assert_int_equal(f->res.exit_code, 2);
    assert_non_null(strstr(f->res.err, "not a bench predict CSV"));
}

/* predicted memory is the run's own plan: zero 3, tp and mp 1f1b runs of
 * mlp-xs, predicted --against them, have mem_mb_per_device equal to their
 * peak_mem_mb (which the backends hold to the plan) */
#define CFG_ARGS 14

/* Runs each configuration briefly (2 steps, 1 thread) on the workload,
 * each must exit 0; then predicts the runs from the single rows into
 * f->out (errors not judged). */
static void predict_runs(files *f, const char *workload, char *cfgs[][CFG_ARGS], size_t count, char *single,
                         char *runs)
{
    char *common[] = {"--quiet", "--workload", (char *)workload, "--iters", "2", "--warmup", "1", "--threads", "1"};
    for (size_t k = 0; k < count; k++) {
        char *argv[24];
        int n = 0;
        for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) argv[n++] = common[i];
        for (int i = 0; i < CFG_ARGS && cfgs[k][i]; i++) argv[n++] = cfgs[k][i];
        argv[n] = NULL;
        run_bench(&f->res, argv);
        if (f->res.exit_code != 0) fail_msg("run %zu: exit %d\n%s", k, f->res.exit_code, f->res.err);
    }
    run_bench(&f->res, (char *[]){"predict", "--single", single, "--against", runs, "--intra-gbps", "1", "--out",
                                  f->out, "--quiet", "--max-median-error", "1e6", "--max-error", "1e6", NULL});
    if (f->res.exit_code != 0) fail_msg("exit %d\n%s", f->res.exit_code, f->res.err);
}

static void test_memory_is_the_runs_plan(void **state)
{
    files *f = *state;
    char single[600], runs[600];
    snprintf(single, sizeof single, "%s/single.csv", f->dir);
    snprintf(runs, sizeof runs, "%s/runs.csv", f->dir);
    char *cfgs[][CFG_ARGS] = {
        {"--strategy", "single", "--gpus", "1", "--out", single, NULL},
        {"--strategy", "zero", "--gpus", "2", "--zero-stage", "3", "--out", runs, NULL},
        {"--strategy", "tp", "--gpus", "2", "--out", runs, NULL},
        {"--strategy", "mp", "--gpus", "2", "--microbatches", "8", "--schedule", "1f1b", "--out", runs},
        /* ZeRO within the mesh's dp group: predicted, not left out */
        {"--strategy", "mesh", "--gpus", "4", "--dp", "2", "--tp", "2", "--zero-stage", "3", "--out", runs, NULL},
        /* pipeline stages in the mesh: predicted, their plan the run's */
        {"--strategy", "mesh", "--gpus", "4", "--dp", "2", "--pp", "2", "--microbatches", "4", "--schedule", "1f1b",
         "--out", runs},
    };
    predict_runs(f, "mlp-xs", cfgs, sizeof cfgs / sizeof cfgs[0], single, runs);
    pb_csv c, m;
    assert_int_equal(pb_csv_load(f->out, &c), PB_OK);
    assert_int_equal(pb_csv_load(runs, &m), PB_OK);
    assert_int_equal(c.nrows, 5);
    for (size_t i = 0; i < c.nrows; i++) {
        double want = col_num(&c, i, "measured_mem_mb_per_device");
        assert_true(want > 0);
        if (strcmp(col(&c, i, "pp"), "2") == 0) {
            /* the plan's largest stage (the run's mem_plan_mb), the
             * volumes rank 0's as the run's, the schedule the run's */
            assert_string_equal(col(&c, i, "schedule"), "1f1b");
            for (size_t j = 0; j < m.nrows; j++)
                if (strcmp(col(&m, j, "pp"), "2") == 0) {
                    double plan = col_num(&m, j, "mem_plan_mb");
                    assert_float_equal(col_num(&c, i, "mem_mb_per_device"), plan, 1e-3 * plan);
                    assert_float_equal(col_num(&c, i, "allreduce_bytes_per_step"),
                                       col_num(&m, j, "allreduce_bytes_per_step"), 1.0);
                    assert_float_equal(col_num(&c, i, "p2p_bytes_per_step"),
                                       col_num(&m, j, "p2p_bytes_per_step"), 1.0);
                }
            continue;
        }
        assert_float_equal(col_num(&c, i, "mem_mb_per_device"), want, 1e-3 * want);
        if (strcmp(col(&c, i, "strategy"), "mesh") != 0) continue;
        assert_string_equal(col(&c, i, "zero_stage"), "3");
        /* the volumes are the run's own (docs/strategies.md, the mesh's ZeRO) */
        for (size_t j = 0; j < m.nrows; j++)
            if (strcmp(col(&m, j, "strategy"), "mesh") == 0 && strcmp(col(&m, j, "pp"), "2") != 0) {
                assert_float_equal(col_num(&c, i, "reduce_scatter_bytes_per_step"),
                                   col_num(&m, j, "reduce_scatter_bytes_per_step"), 1.0);
                assert_float_equal(col_num(&c, i, "allgather_bytes_per_step"),
                                   col_num(&m, j, "allgather_bytes_per_step"), 1.0);
                assert_float_equal(col_num(&c, i, "allreduce_bytes_per_step"),
                                   col_num(&m, j, "allreduce_bytes_per_step"), 1.0);
            }
    }
    pb_csv_free(&m);
    pb_csv_free(&c);
}

/* tp and the dp2 x tp2 mesh on gpt-xs, predicted from its single rows:
 * memory the runs' plan, the all-reduce volume the runs' own (4 of b s h a
 * block, plus the mesh's dp all-reduce of the rank's part), the mesh's
 * shape in its row; and compare --predicted pairs the mesh by it */
static void test_gpt_tp_and_mesh_against_runs(void **state)
{
    files *f = *state;
    char single[600], runs[600];
    snprintf(single, sizeof single, "%s/single.csv", f->dir);
    snprintf(runs, sizeof runs, "%s/runs.csv", f->dir);
    char *cfgs[][CFG_ARGS] = {
        {"--strategy", "single", "--gpus", "1", "--out", single, NULL},
        {"--strategy", "tp", "--gpus", "2", "--out", runs, NULL},
        {"--strategy", "mesh", "--gpus", "4", "--dp", "2", "--tp", "2", "--out", runs},
    };
    predict_runs(f, "gpt-xs", cfgs, sizeof cfgs / sizeof cfgs[0], single, runs);
    pb_csv c, m;
    assert_int_equal(pb_csv_load(f->out, &c), PB_OK);
    assert_int_equal(pb_csv_load(runs, &m), PB_OK);
    assert_int_equal(c.nrows, 2);
    for (size_t i = 0; i < c.nrows; i++) {
        double want = col_num(&c, i, "measured_mem_mb_per_device");
        assert_true(want > 0);
        assert_float_equal(col_num(&c, i, "mem_mb_per_device"), want, 1e-3 * want);
        bool mesh = strcmp(col(&c, i, "strategy"), "mesh") == 0;
        assert_string_equal(col(&c, i, "dp"), mesh ? "2" : "");
        assert_string_equal(col(&c, i, "tp"), mesh ? "2" : "");
        for (size_t j = 0; j < m.nrows; j++)
            if (strcmp(col(&m, j, "strategy"), col(&c, i, "strategy")) == 0)
                assert_float_equal(col_num(&c, i, "allreduce_bytes_per_step"),
                                   col_num(&m, j, "allreduce_bytes_per_step"), 1.0);
        assert_true(col_num(&c, i, "comm_exposed_ms") == col_num(&c, i, "comm_ms"));
    }
    pb_csv_free(&m);
    pb_csv_free(&c);
    /* compare --predicted pairs both (exit 0 or 1: the verdict is the
     * machine's; nothing paired would be exit 2) */
    run_bench(&f->res, (char *[]){"compare", "--predicted", f->out, runs, "--threshold", "100", NULL});
    assert_int_equal(f->res.exit_code, 0);
}

/* zero's stage and mp's schedule are keys: a zero 3 prediction pairs a
 * zero 3 run and not a zero 1 run, and a 1f1b prediction a 1f1b run */
static void test_compare_predicted_pairs_by_stage_and_schedule(void **state)
{
    files *f = *state;
    run_bench(&f->res, (char *[]){"predict", "--single", (char *)h100_single, "--topology", (char *)h100_topo,
                                  "--strategies", "zero,mp", "--zero-stage", "3", "--schedule", "1f1b",
                                  "--microbatches", "8", "--devices", "2", "--out", f->out, "--quiet", NULL});
    if (f->res.exit_code != 0) fail_msg("exit %d\n%s", f->res.exit_code, f->res.err);
    pb_csv c;
    assert_int_equal(pb_csv_load(f->out, &c), PB_OK);
    assert_int_equal(c.nrows, 2);
    assert_string_equal(pb_csv_get(&c, 0, (size_t)pb_csv_find(&c, "zero_stage")), "3");
    /* stage 3 gathers every block twice but the last (its backward keeps
     * forward's gather): more than one pass, less than two */
    double ag = col_num(&c, 0, "allgather_bytes_per_step"), rs = col_num(&c, 0, "reduce_scatter_bytes_per_step");
    assert_true(ag > rs && ag < 2 * rs);
    assert_string_equal(pb_csv_get(&c, 1, (size_t)pb_csv_find(&c, "schedule")), "1f1b");
    char text[1024], meas[600];
    snprintf(text, sizeof text,
             "strategy,status,workload,backend,precision,devices,batch_global,microbatches,bucket_mb,no_overlap,"
             "threads,schedule,zero_stage,samples_per_s\n"
             "zero,ok,mlp-l,cuda,bf16,2,%.0f,,25,0,1,,3,%.1f\n"
             "zero,ok,mlp-l,cuda,bf16,2,%.0f,,25,0,1,,1,1\n"
             "mp,ok,mlp-l,cuda,bf16,2,%.0f,8,,,1,gpipe,,1\n",
             col_num(&c, 0, "batch_global"), col_num(&c, 0, "samples_per_s"), col_num(&c, 0, "batch_global"),
             col_num(&c, 1, "batch_global"));
    pb_csv_free(&c);
    snprintf(meas, sizeof meas, "%s/m.csv", f->dir);
    write_text(meas, text);
    run_bench(&f->res, (char *[]){"compare", "--predicted", f->out, meas, NULL});
    if (f->res.exit_code != 0) fail_msg("exit %d\n%s%s", f->res.exit_code, f->res.out, f->res.err);
    assert_non_null(strstr(f->res.out, "1 configurations compared, 0 below-model"));
    assert_non_null(strstr(f->res.err, "2 measured configurations have no prediction"));
}

static void test_bad_input_is_a_usage_error(void **state)
{
    files *f = *state;
    char topo[600];
    snprintf(topo, sizeof topo, "%s/t.topo", f->dir);
    write_text(topo, "gpus_per_node = 8\nintra_busbw_gbps = 450\nnvlink = 4\n");
    char other[600];
    snprintf(other, sizeof other, "%s/other.csv", f->dir);
    write_text(other, "a,b\n1,2\n");
    struct {
        char *args[16];
        const char *says;
    } cases[] = {
        {{"predict", "--devices", "8", NULL}, "--single SINGLE.csv is required"},
        {{"predict", "--single", (char *)h100_single, "--devices", "0", "--topology", (char *)h100_topo, NULL},
         "--devices '0'"},
        {{"predict", "--single", (char *)h100_single, "--devices", "8,x", NULL}, "--devices '8,x'"},
        {{"predict", "--single", (char *)h100_single, "--topology", topo, NULL}, "unknown key 'nvlink'"},
        {{"predict", "--single", (char *)h100_single, "--batch", "8", "--batch-per-device", "8", NULL},
         "give one"},
        {{"predict", "--single", (char *)h100_single, "--strategies", "fsdp", NULL}, "unknown 'fsdp'"},
        {{"predict", "--single", (char *)h100_single, "--strategies", "mesh", NULL}, "mesh needs --tp T"},
        {{"predict", "--single", (char *)h100_single, "--zero-stage", "4", NULL}, "--zero-stage '4'"},
        {{"predict", "--single", (char *)h100_single, "--schedule", "zb", NULL}, "give gpipe or 1f1b"},
        {{"predict", "--single", other, NULL}, "not a results CSV"},
        {{"predict", "--single", (char *)h100_single, "--frobnicate", NULL}, "unknown flag '--frobnicate'"},
        /* the shared pace is the cpu's */
        {{"predict", "--single", (char *)h100_single, "--single-shared", (char *)h100_single, NULL},
         "--single-shared is the pace of cpu devices"},
        {{"predict", "--single", (char *)h100_single, "--single-shared", NULL}, "--single-shared needs a path"},
        /* ddp on 8 devices needs collective figures */
        {{"predict", "--single", (char *)h100_single, "--strategies", "ddp", "--devices", "8", NULL},
         "needs collective figures"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_bench(&f->res, cases[i].args);
        if (f->res.exit_code != 2 || !strstr(f->res.err, cases[i].says))
            fail_msg("case %zu: exit %d, wanted 2 and '%s' in:\n%s", i, f->res.exit_code, cases[i].says,
                     f->res.err);
        assert_int_equal(count_lines(f->res.err), 1);
        assert_false(file_exists(f->out));
    }
    run_bench(&f->res, (char *[]){"predict", "--help", NULL});
    assert_int_equal(f->res.exit_code, 0);
    assert_non_null(strstr(f->res.out, "example:"));
}

/* a single run of `workload` at `batch` rows (0: its own) and `threads`
 * into `out`, 2 steps */
static void single_into(files *f, const char *workload, const char *batch, const char *threads, const char *out)
{
    char *args[16] = {"--quiet", "--workload", (char *)workload, "--iters", "2", "--warmup", "0", "--threads",
                      (char *)threads, "--out", (char *)out, NULL};
    if (batch) {
        args[11] = "--batch";
        args[12] = (char *)batch;
    }
    run_bench(&f->res, args);
    assert_int_equal(f->res.exit_code, 0);
}

/* predict --single single --single-shared shared: exit 2, one line saying
 * `says`, no file */
static void shared_refused(files *f, char *single, char *shared, const char *says)
{
    run_bench(&f->res, (char *[]){"predict", "--single", single, "--single-shared", shared, "--out", f->out, NULL});
    if (f->res.exit_code != 2 || !strstr(f->res.err, says))
        fail_msg("exit %d, wanted 2 and '%s' in:\n%s", f->res.exit_code, says, f->res.err);
    assert_int_equal(count_lines(f->res.err), 1);
    assert_false(file_exists(f->out));
}

/* --single-shared takes single rows at 1 thread of --single's workload,
 * each at rows --single has a 1-thread row for */
static void test_single_shared_inputs(void **state)
{
    files *f = *state;
    char mlp[600], gpt[600], two[600], rows16[600];
    snprintf(mlp, sizeof mlp, "%s/mlp.csv", f->dir);
    snprintf(gpt, sizeof gpt, "%s/gpt.csv", f->dir);
    snprintf(two, sizeof two, "%s/two.csv", f->dir);
    snprintf(rows16, sizeof rows16, "%s/rows16.csv", f->dir);
    single_into(f, "mlp-s", "8", "1", mlp);
    single_into(f, "gpt-xs", NULL, "1", gpt);
    single_into(f, "mlp-s", "8", "2", two);
    single_into(f, "mlp-s", "16", "1", rows16);
    shared_refused(f, mlp, gpt, "--single-shared rows are gpt-xs on cpu in fp32; --single's are mlp-s");
    shared_refused(f, mlp, two, "no ok row of strategy single at 1 thread");
    shared_refused(f, mlp, rows16, "its row at 16 rows has no --single row at 1 thread and 16 rows");
    /* its own rows: taken (single alone needs no collective figures) */
    run_bench(&f->res, (char *[]){"predict", "--single", mlp, "--single-shared", mlp, "--strategies", "single",
                                  "--devices", "1", "--out", f->out, "--quiet", NULL});
    if (f->res.exit_code != 0) fail_msg("exit %d\n%s", f->res.exit_code, f->res.err);
}

/* --step: the summary says which step was judged; on the mean step, runs
 * whose mean is well above their median are noted (stalls), and --step
 * median judges step_ms_p50 instead; a bad --step is a usage error */
static void test_which_step_is_judged(void **state)
{
    files *f = *state;
    char single[600], runs[600];
    snprintf(single, sizeof single, "%s/single.csv", f->dir);
    snprintf(runs, sizeof runs, "%s/runs.csv", f->dir);
    const char *head = "strategy,status,workload,backend,precision,optimizer,in,hidden,layers,classes,batch_global,"
                       "threads,load_ms,h2d_ms,fwd_ms,bwd_ms,opt_ms,step_ms_mean,step_ms_p50\n";
    char text[1024];
    snprintf(text, sizeof text, "%ssingle,ok,w,cpu,fp32,adamw,10,10,2,10,8,1,0,0,4,8,1,13,13\n", head);
    write_text(single, text);
    /* the same run measured twice: a mean of 26 (stalls) over a median of 13 */
    snprintf(text, sizeof text, "%ssingle,ok,w,cpu,fp32,adamw,10,10,2,10,8,1,0,0,4,8,1,26,13\n", head);
    write_text(runs, text);
    char *mean[] = {"predict", "--single", single, "--against", runs, "--out", f->out, "--max-error", "1e6",
                    "--max-median-error", "1e6", NULL};
    run_bench(&f->res, mean);
    if (f->res.exit_code != 0) fail_msg("exit %d\n%s", f->res.exit_code, f->res.err);
    assert_non_null(strstr(f->res.out, "# 1 configurations, mean step: median |error| 50.0%"));
    assert_non_null(strstr(f->res.err, "1 of 1 measured runs have a mean step over 1.15x their median"));
    char *median[] = {"predict", "--single", single, "--against", runs, "--out", f->out, "--step", "median", NULL};
    run_bench(&f->res, median);
    if (f->res.exit_code != 0) fail_msg("exit %d\n%s", f->res.exit_code, f->res.err);
    assert_non_null(strstr(f->res.out, "# 1 configurations, median step: median |error| 0.0%"));
    assert_null(strstr(f->res.err, "1.15x"));
    remove(f->out);
    run_bench(&f->res, (char *[]){"predict", "--single", single, "--against", runs, "--out", f->out, "--step", "p99",
                                  NULL});
    assert_int_equal(f->res.exit_code, 2);
    assert_non_null(strstr(f->res.err, "--step 'p99': give mean or median"));
    assert_false(file_exists(f->out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_h100_grid_from_a_topology, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_plot_of_a_prediction, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_compare_predicted_flags_below_model, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_memory_is_the_runs_plan, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_gpt_tp_and_mesh_against_runs, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_compare_predicted_pairs_by_stage_and_schedule, files_setup,
                                        files_teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_is_a_usage_error, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_single_shared_inputs, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_which_step_is_judged, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_validation_quick_share, files_setup, files_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
