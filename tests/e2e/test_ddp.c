/* Strategy ddp through ./bench on the cpu backend: the launcher re-executes
 * bench under mpirun (oversubscribing the cores when asked for more ranks
 * than there are), the ranks train exactly as single does on 2, 3 and 4
 * ranks with SGD and AdamW (--verify; AdamW also on OpenBLAS's Haswell
 * kernels), with buckets smaller than a layer and larger than the model,
 * and with --no-overlap; an already-launched bench
 * uses the launch's ranks and rejects a --gpus that disagrees; rank 0 alone
 * writes exactly one row with ranks, comm and bandwidth columns. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>

#include "harness/fault.h"
#include "harness/launch.h"
#include "kernels/backend.h"
#include "workloads/mlp.h"

/* [mpirun --allow-run-as-root --oversubscribe -np NP] bench --strategy ddp
 * --backend cpu --workload mlp-xs --iters 10 --warmup 0 --threads 1 --quiet
 * --out DIR/r.csv --gpus N [extra...] into r; launched_np 0: bench alone;
 * an --iters in extra replaces 10 (a flag may be given once). */
static void run_ddp_in(bench_run *r, int launched_np, int gpus, char *const extra[], char *const env[])
{
    char g[16], np[16];
    snprintf(g, sizeof g, "%d", gpus);
    snprintf(np, sizeof np, "%d", launched_np);
    char *args[64];
    int n = 0;
    if (launched_np > 0) {
        char *pre[] = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", np};
        for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) args[n++] = pre[i];
    }
    char *base[] = {(char *)bench_path(), "--strategy", "ddp", "--backend", "cpu", "--workload", "mlp-xs",
                    "--warmup", "0", "--threads", "1", "--quiet", "--out", r->csv_path, "--gpus", g};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) args[n++] = base[i];
    bool iters = false;
    for (int i = 0; extra && extra[i]; i++) iters |= strcmp(extra[i], "--iters") == 0;
    if (!iters) {
        args[n++] = "--iters";
        args[n++] = "10";
    }
    for (int i = 0; extra && extra[i] && n < 63; i++) args[n++] = extra[i];
    args[n] = NULL;
    run_argv_env(&r->res, env, args);
}

/* As run_ddp_in, into a new run. */
static bench_run *run_ddp_env(int launched_np, int gpus, char *const extra[], char *const env[])
{
    bench_run *r = bench_run_new();
    run_ddp_in(r, launched_np, gpus, extra, env);
    return r;
}

static bench_run *run_ddp(int launched_np, int gpus, char *const extra[])
{
    return run_ddp_env(launched_np, gpus, extra, NULL);
}

#if PB_EXPECT_MPI
static int cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Exit 0, exactly one row, status ok, within --verify's tolerance, and the
 * rank and communication columns filled. */
static void check_row(const bench_run *r, int ranks, double tol)
{
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "ok");
    assert_string_equal(csv_get(&c, "strategy"), "ddp");
    assert_string_equal(csv_get(&c, "comm"), "mpi");
    assert_int_equal((int)csv_num(&c, "ranks"), ranks);
    assert_int_equal((int)csv_num(&c, "devices"), ranks);
    assert_int_equal((int)csv_num(&c, "oversubscribed"), ranks > cores() ? 1 : 0);
    double err = csv_num(&c, "verify_max_rel_err");
    if (!(err < tol)) fail_msg("ddp on %d ranks: max relative error %g vs single, tolerance %g", ranks, err, tol);
    if (!(csv_num(&c, "comm_ms") > 0)) fail_msg("comm_ms is %s", csv_get(&c, "comm_ms"));
    if (!(csv_num(&c, "busbw_gbps") > 0)) fail_msg("busbw_gbps is %s", csv_get(&c, "busbw_gbps"));
    /* nccl-tests' all-reduce factor, 1 on 2 ranks: 4/3 on 3, 3/2 on 4 (the
     * columns carry 6 significant digits) */
    double factor = 2.0 * (ranks - 1) / ranks, ratio = csv_num(&c, "busbw_gbps") / csv_num(&c, "algbw_gbps");
    if (!(fabs(ratio - factor) <= 1e-4 * factor))
        fail_msg("busbw/algbw is %.6f on %d ranks, expected 2(n-1)/n = %.6f", ratio, ranks, factor);
    /* what is all-reduced each step is the fp32 gradient of every parameter */
    double bytes = csv_num(&c, "comm_bytes_per_step");
    if (bytes != 4 * csv_num(&c, "params"))
        fail_msg("comm_bytes_per_step %s for %s fp32 parameters", csv_get(&c, "comm_bytes_per_step"),
                 csv_get(&c, "params"));
    double comm_ms = csv_num(&c, "comm_ms"), sync_ms = csv_num(&c, "sync_ms");
    double algbw = bytes / (comm_ms * 1e-3) / 1e9;
    if (!(fabs(csv_num(&c, "algbw_gbps") - algbw) <= 1e-3 * algbw))
        fail_msg("algbw_gbps %s, comm_bytes_per_step / comm_ms = %g GB/s", csv_get(&c, "algbw_gbps"), algbw);
    /* the share of communication backward hid: what sync did not wait for
     * (clamped at 0; 6 significant digits in each column) */
    double overlap = csv_num(&c, "overlap_pct"), hidden = 100.0 * (1.0 - sync_ms / comm_ms);
    assert_true(overlap >= 0 && overlap <= 100);
    if (!(fabs(overlap - (hidden > 0 ? hidden : 0)) <= 0.01))
        fail_msg("overlap_pct %g, 100 (1 - sync_ms / comm_ms) = %g", overlap, hidden);
    if (!strstr(csv_get(&c, "mpi"), "MPI")) fail_msg("mpi column is '%s'", csv_get(&c, "mpi"));
    csv_free(&c);
}

/* Each rank's loader generated its shard of mlp-xs's batch of 64 for each
 * of the 10 steps and nothing more (PB_TEST_LOADER_STATS), while --verify
 * (above) found the training single's: the shards are single's rows. */
static void expect_shards_only(const bench_run *r, int ranks)
{
    const int batch = 64, steps = 10, in = 256; /* mlp-xs: 256 features */
    for (int k = 0; k < ranks; k++) {
        int rows = (k + 1) * batch / ranks - k * batch / ranks;
        char want[160];
        snprintf(want, sizeof want, "bench: rank %d loader filled %d samples, %d bytes\n", k, steps * rows,
                 steps * rows * (in * 4 + 4));
        if (!strstr(r->res.err, want)) fail_msg("no '%.*s' in stderr:\n%s", (int)strlen(want) - 1, want, r->res.err);
    }
}

/* SGD: 1e-4 elementwise (ddp's error at this shape, 10 steps, is below
 * 3e-5). AdamW is judged normwise per tensor after step 3
 * (harness/verify_err.h): within 1e-5 (ddp's error here is below 2e-7 on
 * SkylakeX or Prescott kernels, 3.4e-7 on Haswell kernels); a run of 3
 * steps judges its last step, where a bias correction one step ahead gives
 * 1.9e-3 (after 10 steps it is below AdamW's grown rounding noise: 1.2e-4
 * against 1.9e-4 on Haswell kernels). */
static void check_matches(void **state, int ranks, const char *optimizer, const char *bucket_mb)
{
    bool adamw = strcmp(optimizer, "adamw") == 0;
    char *extra[] = {"--verify", "--optimizer", (char *)optimizer, "--bucket-mb", (char *)bucket_mb, NULL};
    char *env[] = {"PB_TEST_LOADER_STATS=1", NULL};
    bench_run *r = keep(state, run_ddp_env(0, ranks, extra, env));
    check_row(r, ranks, adamw ? 1e-5 : 1e-4);
    expect_shards_only(r, ranks);
    if (!adamw) return;
    char *early[] = {"--verify", "--optimizer", "adamw", "--bucket-mb", (char *)bucket_mb, "--iters", "3", NULL};
    check_row(keep(state, run_ddp(0, ranks, early)), ranks, 1e-5);
}

/* started outside mpirun: re-executed with N ranks; mlp-xs's batch of 64
 * gives 3 ranks shards of 21, 21 and 22 rows. Buckets of 0.01 MB cut every
 * layer into pieces; 1000 MB is one bucket for the whole model. */
static void test_2_ranks_sgd(void **state) { check_matches(state, 2, "sgd", "0.01"); }
static void test_3_ranks_sgd(void **state) { check_matches(state, 3, "sgd", "1000"); }
static void test_4_ranks_sgd(void **state) { check_matches(state, 4, "sgd", "0.01"); }
static void test_2_ranks_adamw(void **state) { check_matches(state, 2, "adamw", "1000"); }
static void test_3_ranks_adamw(void **state) { check_matches(state, 3, "adamw", "0.01"); }
static void test_4_ranks_adamw(void **state) { check_matches(state, 4, "adamw", "25"); }

/* With OpenBLAS's Haswell kernels (what many AVX2 CPUs select) single's
 * GEMMs over the whole batch round otherwise than the ranks' over their
 * shards, and AdamW's per-element steps amplify that in a few elements:
 * --verify judged elementwise after step 10 cried wolf (0.115 against
 * 5e-3); normwise per tensor after step 3 it passes (3.4e-7). Skipped where
 * the CPU cannot run them or the OpenBLAS build does not take
 * OPENBLAS_CORETYPE. */
static void test_adamw_haswell_kernels(void **state)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) skip();
    char *extra[] = {"--verify", "--optimizer", "adamw", NULL};
    char *env[] = {"OPENBLAS_CORETYPE=Haswell", NULL};
    bench_run *r = keep(state, run_ddp_env(0, 2, extra, env));
    csv c;
    csv_load(&c, r->csv_path);
    bool haswell = c.rows == 1 && strncmp(csv_get(&c, "blas_core"), "Haswell", 7) == 0;
    csv_free(&c);
    if (!haswell) skip();
    check_row(r, 2, 1e-5);
}

/* --no-overlap (one all-reduce after backward) trains exactly as buckets
 * during backward: on 2 ranks each sum has two terms, so the final
 * parameters are bit for bit the same whatever the bucketing; and hides no
 * communication (overlap_pct), its all-reduce timed in sync. */
static char *read_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s was not written", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n : 1);
    assert_non_null(buf);
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

/* --dump's batch0_x.npy is the whole global batch (mlp-xs: 64 x 256), as
 * single's, although rank 0's loader holds its shard alone. */
static void expect_batch0_whole(const char *dir)
{
    pb_shape shape = {.in = 256, .hidden = 256, .layers = 3, .classes = 10, .batch = 64};
    pb_layout layout;
    assert_int_equal(pb_mlp_layout(&shape, &layout), PB_OK);
    size_t n = 64 * 256, len = 0;
    float *x = malloc(n * sizeof(float)), *protos = malloc(10 * 256 * sizeof(float));
    int32_t *labels = malloc(64 * sizeof(int32_t));
    assert_true(x && protos && labels);
    pb_data_prototypes(&layout, 1234, protos); /* the default --seed */
    pb_data_fill(&layout, 1234, 0, 0, 64, protos, x, labels);
    char path[512];
    snprintf(path, sizeof path, "%s/batch0_x.npy", dir);
    char *file = read_bytes(path, &len);
    assert_true(len >= n * sizeof(float) && len - n * sizeof(float) < 256); /* header + the data */
    if (memcmp(file + len - n * sizeof(float), x, n * sizeof(float)) != 0)
        fail_msg("ddp's batch0_x.npy is not the global batch of step 0");
    free(file);
    free(x);
    free(protos);
    free(labels);
}

static void test_no_overlap_equals_overlap(void **state)
{
    char *bytes[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        char *dir = make_temp_dir();
        char *extra_overlap[] = {"--verify", "--bucket-mb", "0.01", "--dump", dir, NULL};
        char *extra_none[] = {"--verify", "--no-overlap", "--dump", dir, NULL};
        bench_run *r = keep(state, run_ddp(0, 2, i == 0 ? extra_overlap : extra_none));
        check_row(r, 2, 1e-4);
        if (i == 1) {
            csv c;
            csv_load(&c, r->csv_path);
            assert_string_equal(csv_get(&c, "bucket_mb"), ""); /* no buckets */
            /* every all-reduce is launched and waited for in sync: none is
             * hidden (measured 0; timed in bwd, sync was 0 and overlap 100) */
            if (!(csv_num(&c, "overlap_pct") < 90 && csv_num(&c, "sync_ms") > 0))
                fail_msg("--no-overlap: overlap_pct %s, sync_ms %s: the all-reduce is not timed in sync",
                         csv_get(&c, "overlap_pct"), csv_get(&c, "sync_ms"));
            csv_free(&c);
        }
        char path[512];
        snprintf(path, sizeof path, "%s/params_final.npy", dir);
        bytes[i] = read_bytes(path, &len[i]);
        if (i == 0) expect_batch0_whole(dir);
        remove_temp_dir(dir);
    }
    assert_true(len[0] > 128 && len[0] == len[1]);
    if (memcmp(bytes[0], bytes[1], len[0]) != 0) fail_msg("--no-overlap's final parameters differ from buckets'");
    free(bytes[0]);
    free(bytes[1]);
}

/* The row's phases add up to its step (5%): each step's time is the slowest
 * rank's, and so are that step's phases, taken from the same rank. Rank 0's
 * phases alone fell short of a step held up by rank 1. On a shape whose
 * loss is a third of the step, so that no work is timed in no phase. */
static void test_phases_add_up(void **state)
{
    char *extra[] = {"--iters", "20", PB_TEST_LARGE_LOSS_SHAPE, NULL};
    bench_run *r = keep(state, run_ddp(0, 2, extra));
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    expect_phases_add_up(&c);
    /* exposed communication is part of all communication */
    assert_true(csv_num(&c, "sync_ms") <= csv_num(&c, "comm_ms") + 1e-9 || csv_num(&c, "overlap_pct") == 0.0);
    /* the ranks yielded while they waited (world_mpi.c), and the row says so */
    if (!strstr(csv_get(&c, "env_vars"), "OMPI_MCA_mpi_yield_when_idle=1"))
        fail_msg("env_vars '%s' lacks OMPI_MCA_mpi_yield_when_idle=1", csv_get(&c, "env_vars"));
    csv_free(&c);
}

/* A user's own OMPI_MCA_mpi_yield_when_idle wins over bench's default. */
static void test_users_yield_setting_kept(void **state)
{
    char *extra[] = {"--iters", "2", NULL};
    setenv("OMPI_MCA_mpi_yield_when_idle", "0", 1);
    bench_run *r = keep(state, run_ddp(0, 2, extra));
    unsetenv("OMPI_MCA_mpi_yield_when_idle");
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    if (!strstr(csv_get(&c, "env_vars"), "OMPI_MCA_mpi_yield_when_idle=0"))
        fail_msg("env_vars '%s' lacks the user's OMPI_MCA_mpi_yield_when_idle=0", csv_get(&c, "env_vars"));
    csv_free(&c);
}

/* Rank 1 sleeps PB_FAULT_SLOW_MS before its optimizer, after the
 * all-reduce rank 0 waits for, in every step: rank 0's steps end without
 * it, so only the slowest rank's times show it in every step. Taking the
 * fastest rank's gave step_ms_min of a few ms. */
static void test_slowest_rank_reported(void **state)
{
    char *extra[] = {"--iters", "4", NULL};
    setenv("PB_FAULT", "rank=1,phase=opt,kind=slow", 1);
    bench_run *r = keep(state, run_ddp(0, 2, extra));
    unsetenv("PB_FAULT");
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    if (!(csv_num(&c, "step_ms_min") >= PB_FAULT_SLOW_MS))
        fail_msg("rank 1 slept %d ms in every step, but step_ms_min is %s", PB_FAULT_SLOW_MS,
                 csv_get(&c, "step_ms_min"));
    /* and it is the straggler, its time in no phase (the sleep is before
     * opt's span) */
    const char *who = csv_get(&c, "stragglers");
    if (strncmp(who, "rank 1 (host ", 13) != 0 || !strstr(who, "between phases"))
        fail_msg("stragglers: '%s'; expected rank 1, between phases", who);
    csv_free(&c);
}

/* --- stragglers (harness/straggler.h) ----------------------------------------
 * 3 ranks (oversubscribed on a 2-core machine, so Open MPI binds none and
 * the scheduler spreads them: on 2 ranks it binds rank 0 to core 0, and a
 * busier core 0 makes rank 0 a real straggler in a quarter of the runs
 * here), mlp-xs with a batch of 768 (256 a rank: about 2 ms busy a step,
 * where the default 64 gives 0.3 ms, which scheduling noise swamps),
 * --no-overlap (the comm thread's spinning all-reduce does not compete
 * with backward), 10 steps. */
#define STRAGGLER_ARGS "--batch", "768", "--no-overlap", "--ranks-out", ranks_path

/* The --ranks-out file: one line per rank, rank by rank; returns the
 * loaded file. */
static void load_ranks(csv *f, const char *path, int ranks, const char *run_id)
{
    csv_load(f, path);
    assert_int_equal(f->rows, ranks);
    for (int r = 0; r < ranks; r++) {
        assert_string_equal(pb_csv_get(&f->data, (size_t)r, (size_t)pb_csv_find(&f->data, "run_id")), run_id);
        assert_int_equal(atoi(pb_csv_get(&f->data, (size_t)r, (size_t)pb_csv_find(&f->data, "rank"))), r);
        assert_int_equal(atoi(pb_csv_get(&f->data, (size_t)r, (size_t)pb_csv_find(&f->data, "device"))), r);
        /* where the rank ran: more ranks than cores, bench's launcher binds
         * rank r to core r mod cores (harness/launch.c); else Open MPI's
         * own binding, some CPUs */
        const char *cpus = pb_csv_get(&f->data, (size_t)r, (size_t)pb_csv_find(&f->data, "cpus"));
        if (ranks > cores()) {
            char want[16];
            snprintf(want, sizeof want, "%d", r % cores());
            if (strcmp(cpus, want) != 0)
                fail_msg("rank %d of %d on %d cores ran on CPUs '%s', want '%s'", r, ranks, cores(), cpus, want);
        } else if (!cpus[0] || !strchr("0123456789", cpus[0])) {
            fail_msg("rank %d: cpus '%s' is not a cpulist", r, cpus);
        }
    }
}

static const char *rank_field(const csv *f, int r, const char *name)
{
    int col = pb_csv_find(&f->data, name);
    if (col < 0) fail_msg("--ranks-out has no column %s", name);
    return pb_csv_get(&f->data, (size_t)r, (size_t)col);
}

/* Rank 2 spends PB_FAULT_STRETCH_MS more inside its backward every step
 * (PB_FAULT kind=stretch): it is named, with host, device and bwd, on
 * stderr and in the row, and its line of --ranks-out says so. Before: no
 * column, no warning, no file. */
static void test_straggler_named(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char ranks_path[300];
    snprintf(ranks_path, sizeof ranks_path, "%s/ranks.csv", r->dir);
    char *extra[] = {STRAGGLER_ARGS, NULL};
    char *env[] = {"PB_FAULT=rank=2,phase=bwd,kind=stretch", NULL};
    run_ddp_in(r, 0, 3, extra, env);
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    char want[128];
    snprintf(want, sizeof want, "rank 2 (host %s, device 2): +", csv_get(&c, "host"));
    const char *who = csv_get(&c, "stragglers");
    /* the worst first: the stretched rank, however noisy the others */
    if (strncmp(who, want, strlen(want)) != 0 || !strstr(who, "% busy, in bwd ("))
        fail_msg("stragglers: '%s'; expected it to start with '%s' and name bwd", who, want);
    assert_int_equal((int)csv_num(&c, "slowest_rank"), 2);
    assert_true(csv_num(&c, "rank_spread_pct") > 100.0);
    /* more ranks than cores: the launcher put rank 2 on core 0, rank 0's */
    if (3 > cores()) {
        char shares[64];
        snprintf(shares, sizeof shares, ", shares CPUs 0 with rank 0");
        if (!strstr(who, shares)) fail_msg("stragglers: '%s'; expected '%s' (3 ranks on %d cores)", who, shares, cores());
    }
    char warn[160];
    snprintf(warn, sizeof warn, "bench: warning: straggler: %s", want);
    if (!strstr(r->res.err, warn) || !strstr(r->res.err, "% busy, in bwd ("))
        fail_msg("no straggler warning naming rank 2 in bwd on stderr:\n%s", r->res.err);
    csv f;
    load_ranks(&f, ranks_path, 3, csv_get(&c, "run_id"));
    assert_string_equal(rank_field(&f, 2, "straggler"), "1");
    assert_string_equal(rank_field(&f, 2, "straggler_phase"), "bwd");
    assert_true(strtod(rank_field(&f, 2, "bwd_ms"), NULL) >= PB_FAULT_STRETCH_MS);
    assert_true(strtod(rank_field(&f, 2, "busy_ms_p50"), NULL) >= PB_FAULT_STRETCH_MS);
    /* its step is no longer than its peers': they wait for it in sync */
    assert_true(strtod(rank_field(&f, 0, "sync_ms"), NULL) > strtod(rank_field(&f, 2, "sync_ms"), NULL));
    csv_free(&f);
    csv_free(&c);
}

/* The same run without the fault flags no one ("none", no warning), and
 * still records every rank. On this 2-core machine the rule held over 42
 * such runs beside other builds (docs/statistics.md, "Stragglers"). */
static void test_no_straggler_without_fault(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char ranks_path[300];
    snprintf(ranks_path, sizeof ranks_path, "%s/ranks.csv", r->dir);
    char *extra[] = {STRAGGLER_ARGS, NULL};
    run_ddp_in(r, 0, 3, extra, NULL);
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    if (strcmp(csv_get(&c, "stragglers"), "none") != 0 || strstr(r->res.err, "straggler"))
        fail_msg("a run with no fault flagged '%s'; stderr:\n%s", csv_get(&c, "stragglers"), r->res.err);
    assert_true(csv_num(&c, "slowest_rank") >= 0 && csv_num(&c, "slowest_rank") <= 2);
    assert_true(csv_num(&c, "rank_spread_pct") >= 0);
    csv f;
    load_ranks(&f, ranks_path, 3, csv_get(&c, "run_id"));
    for (int k = 0; k < 3; k++) {
        assert_string_equal(rank_field(&f, k, "straggler"), "0");
        assert_true(strtod(rank_field(&f, k, "step_ms_p50"), NULL) > 0);
        assert_true(strtod(rank_field(&f, k, "busy_ms_p50"), NULL) > 0);
        assert_true(strtod(rank_field(&f, k, "fwd_ms"), NULL) > 0);
    }
    csv_free(&f);
    csv_free(&c);
}

/* --calibrate on every rank: the row's mfu is per device (rank). Batch 16
 * keeps the shards' GEMMs far from the peak (see test_training). */
static void test_mfu_per_device(void **state)
{
    char *extra[] = {"--calibrate", "--batch", "16", NULL};
    bench_run *r = keep(state, run_ddp(0, 2, extra));
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    expect_mfu_per_device(&c);
    csv_free(&c);
}

/* Already launched (mpirun -np 2 bench ...): the launch's ranks are used. */
static void test_already_launched(void **state)
{
    char *extra[] = {"--verify", NULL};
    bench_run *r = keep(state, run_ddp(2, 2, extra));
    check_row(r, 2, 1e-4);
}

/* A --gpus that disagrees with the launch is a usage error on every rank:
 * exit 2, a message naming both numbers, no row. */
static void test_gpus_disagree_with_launch(void **state)
{
    bench_run *r = keep(state, run_ddp(2, 3, NULL));
    expect_exit(r, 2);
    if (!strstr(r->res.err, "--gpus 3") || !strstr(r->res.err, "2 ranks"))
        fail_msg("stderr lacks the two counts:\n%s", r->res.err);
    assert_false(file_exists(r->csv_path));
}

/* A launch whose environment says 2 ranks where MPI itself has 1 (a
 * launcher that set the variables, no process manager behind them): a usage
 * error for a person, without run.c's source location. */
static void test_launch_env_disagrees_with_mpi(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char *env[] = {"OMPI_COMM_WORLD_SIZE=2", "OMPI_COMM_WORLD_RANK=0", NULL};
    char *args[] = {"--strategy", "ddp", "--backend", "cpu", "--workload", "mlp-xs", "--gpus", "2", "--iters", "2",
                    "--quiet", "--out", r->csv_path, NULL};
    run_bench_env(&r->res, env, args);
    expect_exit(r, 2);
    if (!strstr(r->res.err, "--gpus 2, but this MPI launch has 1 ranks") || has_source_location(r->res.err))
        fail_msg("stderr:\n%s", r->res.err);
    assert_false(file_exists(r->csv_path));
}

/* Informational lines come from rank 0 alone, and once: the auto-backend
 * notice (which every rank resolves before MPI starts), the progress and
 * the row's line, whether bench re-executes itself (its parent has said the
 * notice) or was launched. CUDA_VISIBLE_DEVICES is emptied so that auto
 * picks cpu, and says so, on a machine with GPUs too. */
static void test_info_lines_once(void **state)
{
    for (int launched = 0; launched < 2; launched++) {
        bench_run *r = keep(state, bench_run_new());
        char *argv[] = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2",
                        (char *)bench_path(), "--strategy", "ddp", "--backend", "auto", "--workload", "mlp-xs",
                        "--gpus", "2", "--iters", "2", "--warmup", "0", "--threads", "1", "--out", r->csv_path,
                        NULL};
        char *env[] = {"CUDA_VISIBLE_DEVICES=", NULL};
        run_argv_env(&r->res, env, launched ? argv : argv + 5);
        expect_exit(r, 0);
        if (count_substr(r->res.err, "row appended to") != 1 || count_substr(r->res.err, "backend auto: using") != 1 ||
            count_substr(r->res.err, "step 2/2") != 1)
            fail_msg("%s: an informational line missing or repeated:\n%s", launched ? "launched" : "re-executed",
                     r->res.err);
    }
}

/* Usage errors are found before any launch: exit 2, one line, no row. */
static void test_usage_errors_before_launch(void **state)
{
    char *tiny[] = {"--bucket-mb", "0.0001", NULL};
    bench_run *r = keep(state, run_ddp(0, 2, tiny));
    expect_exit(r, 2);
    assert_int_equal(count_lines(r->res.err), 1);
    assert_non_null(strstr(r->res.err, "--bucket-mb"));
    assert_false(file_exists(r->csv_path));

    char *comm[] = {"--comm", "none", NULL};
    r = keep(state, run_ddp(0, 2, comm));
    expect_exit(r, 2);
    assert_int_equal(count_lines(r->res.err), 1);
    assert_non_null(strstr(r->res.err, "--comm none"));

    /* `local` joins the devices of one process; ddp has a process per device */
    char *local[] = {"--comm", "local", NULL};
    r = keep(state, run_ddp(0, 2, local));
    expect_exit(r, 2);
    assert_int_equal(count_lines(r->res.err), 1);
    assert_non_null(strstr(r->res.err, "--comm local"));
    assert_non_null(strstr(r->res.err, "allowed: auto, mpi, nccl"));
    assert_false(file_exists(r->csv_path));

    /* --bucket-mb and --no-overlap are ddp's */
    bench_result *b = calloc(1, sizeof *b);
    assert_non_null(b);
    char *args[] = {"--strategy", "single", "--backend", "cpu", "--no-overlap", "--out", "/tmp/pb_never.csv", NULL};
    run_bench(b, args);
    assert_int_equal(b->exit_code, 2);
    assert_non_null(strstr(b->err, "--no-overlap applies to --strategy ddp"));
    free(b);
}

/* --device-map for ddp (test-only: several ranks on one GPU through NCCL)
 * names one device per rank; on the cpu backend it is refused (a rank is a
 * process with its own threads, nothing to map): exit 2, one line, no row,
 * before any launch. On cuda it is accepted: on a machine without a GPU
 * the run then stops at the missing device, not at the flag. */
static void test_device_map_ranks(void **state)
{
    char *cpu[] = {"--device-map", "0,0", NULL};
    bench_run *r = keep(state, run_ddp(0, 2, cpu));
    expect_exit(r, 2);
    assert_int_equal(count_lines(r->res.err), 1);
    if (!strstr(r->res.err, "--device-map for strategy ddp places ranks on CUDA devices; allowed: with --backend cuda"))
        fail_msg("cpu backend:\n%s", r->res.err);
    assert_false(file_exists(r->csv_path));

    char *three[] = {"--device-map", "0,0,0", NULL};
    r = keep(state, run_ddp(0, 2, three));
    expect_exit(r, 2);
    assert_int_equal(count_lines(r->res.err), 1);
    if (!strstr(r->res.err, "--device-map has 3 entries; allowed: one per rank (--gpus 2)"))
        fail_msg("3 entries for 2 ranks:\n%s", r->res.err);
    assert_false(file_exists(r->csv_path));

    char why[256] = "";
    if (pb_backend_cuda.device_count(why, sizeof why) > 0) return; /* a GPU here: device-check runs it */
    r = keep(state, bench_run_new());
    char *argv[] = {(char *)bench_path(), "--strategy", "ddp", "--backend", "cuda", "--workload", "mlp-xs", "--gpus",
                    "2", "--device-map", "0,0", "--quiet", "--out", r->csv_path, NULL};
    run_argv_env(&r->res, NULL, argv);
    expect_exit(r, 2);
    if (strstr(r->res.err, "--device-map") || !strstr(r->res.err, "--backend cuda: no usable CUDA device"))
        fail_msg("cuda backend without a GPU:\n%s", r->res.err);
    assert_false(file_exists(r->csv_path));
}

/* The command the launcher re-executes itself with, read by an `mpirun` on
 * PATH that only records its arguments: the rank count, a backstop, no
 * terminal input (mpirun runs outside the terminal's foreground group), the
 * report file passed to every node, the program and the user's flags
 * unchanged. CPU ranks keep Open MPI's binding (`--bind-to none` is for GPU
 * ranks, which cannot run here). That mpirun exits 0 having run no rank:
 * without rank 0's report of its row, the launcher exits 1 and says so. */
static void test_reexec_command(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char body[700], path_env[4200], args_file[600];
    snprintf(args_file, sizeof args_file, "%s/args", r->dir);
    snprintf(body, sizeof body, "echo \"$@\" > '%s'", args_file);
    fake_tool(r->dir, "mpirun", body, path_env, sizeof path_env);
    char *env_add[] = {path_env, NULL};
    char *argv[] = {(char *)bench_path(), "--strategy", "ddp", "--backend", "cpu", "--workload", "mlp-xs",
                    "--gpus", "2", "--iters", "3", "--quiet", "--out", r->csv_path, NULL};
    run_argv_env(&r->res, env_add, argv);
    expect_exit(r, 1);
    assert_non_null(strstr(r->res.err, "mpirun exited 0, but rank 0 did not report a row appended to"));
    char *got = read_file(args_file);
    assert_non_null(got);
    assert_null(strstr(got, "--bind-to"));
    assert_non_null(strstr(got, "-np 2 "));
    assert_non_null(strstr(got, "--timeout "));
    assert_non_null(strstr(got, "--stdin none "));
    assert_non_null(strstr(got, "-x PB_LAUNCH_REPORT "));
    assert_non_null(strstr(got, "--strategy ddp --backend cpu --workload mlp-xs --gpus 2 --iters 3 --quiet"));
    assert_int_equal(strstr(got, "--allow-run-as-root") != NULL, geteuid() == 0);
    assert_false(file_exists(r->csv_path));
    free(got);
}

#else
/* A build without MPI still knows ddp, and says why it cannot run it. */
static void test_without_mpi(void **state)
{
    bench_run *r = keep(state, run_ddp(0, 2, NULL));
    expect_exit(r, 2);
    assert_non_null(strstr(r->res.err, "built without MPI"));
    assert_false(file_exists(r->csv_path));
}
#endif

int main(void)
{
#if PB_EXPECT_MPI
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_2_ranks_sgd, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_3_ranks_sgd, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_4_ranks_sgd, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_2_ranks_adamw, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_3_ranks_adamw, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_4_ranks_adamw, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_adamw_haswell_kernels, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_no_overlap_equals_overlap, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_phases_add_up, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_users_yield_setting_kept, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_already_launched, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mfu_per_device, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_slowest_rank_reported, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_straggler_named, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_no_straggler_without_fault, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_reexec_command, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_gpus_disagree_with_launch, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_launch_env_disagrees_with_mpi, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_info_lines_once, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_usage_errors_before_launch, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_device_map_ranks, run_setup, run_teardown),
    };
#else
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_without_mpi, run_setup, run_teardown),
    };
#endif
    return cmocka_run_group_tests(tests, NULL, NULL);
}
