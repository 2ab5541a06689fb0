/* bench comm through ./bench (docs/comm.md): the `local` comm on 2 threads,
 * the `mpi` comm on 2 ranks that bench launches itself and on 3 ranks under
 * the user's own mpirun, on small sizes: rows written for every collective
 * and size, #wrong 0, busbw = algbw x nccl-tests' factor for the rank
 * count, algbw = bytes / time, a fit per collective; a wrong result
 * (PB_COMMBENCH_CORRUPT, test-only) is a failed row and exit 1; bad input
 * is exit 2, one line, nothing written; bench compare of two comm CSVs says
 * regression when one side is slower; bench plot draws one. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>

#include "harness/comm_fit.h"

/* [mpirun ... -np NP] bench comm --comm COMM --gpus N --sizes SIZES --iters 3
 * --warmup 1 --quiet --out DIR/r.csv [extra...]; an --iters in extra replaces 3 */
static bench_run *run_comm(int launched_np, const char *comm, int ranks, const char *sizes, char *const extra[],
                           char *const env[])
{
    bench_run *r = bench_run_new();
    char g[16], np[16];
    snprintf(g, sizeof g, "%d", ranks);
    snprintf(np, sizeof np, "%d", launched_np);
    char *args[48];
    int n = 0;
    if (launched_np > 0) {
        char *pre[] = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", np};
        for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) args[n++] = pre[i];
    }
    char *base[] = {(char *)bench_path(), "comm", "--comm", (char *)comm, "--gpus", g, "--sizes", (char *)sizes,
                    "--warmup", "1", "--quiet", "--out", r->csv_path};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) args[n++] = base[i];
    bool iters = false; /* a flag is given once: extra's --iters replaces 3 */
    for (int i = 0; extra && extra[i]; i++) iters |= strcmp(extra[i], "--iters") == 0;
    if (!iters) {
        args[n++] = "--iters";
        args[n++] = "3";
    }
    for (int i = 0; extra && extra[i] && n < 47; i++) args[n++] = extra[i];
    args[n] = NULL;
    run_argv_env(&r->res, env, args);
    return r;
}

static double num(const csv *c, size_t row, const char *name)
{
    double v;
    if (!pb_csv_number(csv_field(c, row, name), &v)) fail_msg("row %zu: %s '%s' is not a number", row, name, csv_field(c, row, name));
    return v;
}

/* Every size row of every collective: right, and its figures nccl-tests'.
 * Returns the size rows; *fits the fit rows. */
static int check_rows(const bench_run *r, const char *comm, int ranks, int *fits)
{
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    int sizes = 0, per_coll[PB_COLL_COUNT] = {0}, fit_coll[PB_COLL_COUNT] = {0};
    *fits = 0;
    for (size_t i = 0; i < c.data.nrows; i++) {
        pb_coll coll = pb_coll_find(csv_field(&c, i, "collective"));
        if (coll == PB_COLL_COUNT) fail_msg("row %zu: collective '%s'", i, csv_field(&c, i, "collective"));
        assert_string_equal(csv_field(&c, i, "status"), "ok");
        assert_string_equal(csv_field(&c, i, "comm"), comm);
        assert_int_equal((int)num(&c, i, "ranks"), ranks);
        double factor = pb_busbw_factor(coll, ranks);
        if (strcmp(csv_field(&c, i, "record"), "fit") == 0) {
            (*fits)++;
            fit_coll[coll]++;
            assert_true(num(&c, i, "alpha_us") >= 0);
            assert_float_equal(num(&c, i, "busbw_factor"), factor, 1e-5);
            continue;
        }
        assert_string_equal(csv_field(&c, i, "record"), "size");
        sizes++;
        per_coll[coll]++;
        assert_int_equal((int)num(&c, i, "wrong"), 0);
        double bytes = num(&c, i, "bytes"), count = num(&c, i, "count"), t = num(&c, i, "time_us_p50");
        double algbw = num(&c, i, "algbw_gbps"), busbw = num(&c, i, "busbw_gbps");
        /* nccl-tests' size convention: reduce_scatter and all_gather count
         * per rank, the size the whole array */
        bool whole = coll == PB_COLL_REDUCE_SCATTER || coll == PB_COLL_ALL_GATHER;
        assert_float_equal(bytes, count * 4 * (whole ? ranks : 1), 0);
        assert_true(t > 0 && num(&c, i, "time_us_min") <= t && t <= num(&c, i, "time_us_max"));
        /* 6 significant digits in each column */
        if (fabs(algbw - bytes / (t * 1e3)) > 2e-5 * algbw)
            fail_msg("%s %g B: algbw %g, bytes / time %g", csv_field(&c, i, "collective"), bytes, algbw, bytes / (t * 1e3));
        if (fabs(busbw - algbw * factor) > 2e-5 * busbw + 1e-12)
            fail_msg("%s on %d ranks: busbw %g, algbw %g x factor %g", csv_field(&c, i, "collective"), ranks, busbw, algbw,
                     factor);
        assert_float_equal(num(&c, i, "busbw_factor"), factor, 1e-5);
    }
    for (int k = 0; k < PB_COLL_COUNT; k++) {
        if (per_coll[k] == 0) fail_msg("no size row of %s", pb_coll_name((pb_coll)k));
        if (fit_coll[k] == 0) fail_msg("no fit row of %s", pb_coll_name((pb_coll)k));
    }
    /* the table: a line per size, nccl-tests' columns */
    assert_non_null(strstr(r->res.out, "#wrong"));
    assert_non_null(strstr(r->res.out, "# fit all_reduce"));
    int lines = 0;
    for (const char *p = r->res.out; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
        lines += *p != '#' && *p != '\n';
    assert_int_equal(lines, sizes);
    csv_free(&c);
    return sizes;
}

static void test_local_two_threads(void **state)
{
    bench_run *r = keep(state, run_comm(0, "local", 2, "8:4K", NULL, NULL));
    int fits;
    /* 10 sizes x 5 collectives, every size at least one float per rank */
    assert_int_equal(check_rows(r, "local", 2, &fits), 50);
}

static void test_mpi_two_ranks_launched_by_bench(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    bench_run *r = keep(state, run_comm(0, "mpi", 2, "8:1K", NULL, NULL));
    int fits;
    assert_int_equal(check_rows(r, "mpi", 2, &fits), 40);
    /* bench comm has no run id: its launch passes none (mpirun warned
     * "could not find environment variable PB_RUN_ID") */
    if (strstr(r->res.err, "PB_RUN_ID")) fail_msg("mpirun's noise on stderr:\n%s", r->res.err);
}

static void test_mpi_three_ranks_under_mpirun(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    /* 16 B to 1 KiB on 3 ranks: reduce_scatter and all_gather have no
     * element per rank at 8 B, and round 16 B down to 12 */
    bench_run *r = keep(state, run_comm(3, "mpi", 3, "16:1K", NULL, NULL));
    int fits;
    assert_int_equal(check_rows(r, "mpi", 3, &fits), 35);
}

static void test_wrong_result_fails_its_rows(void **state)
{
    char *env[] = {"PB_COMMBENCH_CORRUPT=all_gather", NULL};
    char *only[] = {"--collectives", "all_gather,broadcast", NULL};
    bench_run *r = keep(state, run_comm(0, "local", 2, "8:64", only, env));
    expect_exit(r, 1);
    assert_non_null(strstr(r->res.err, "wrong"));
    csv c;
    csv_load(&c, r->csv_path);
    int failed = 0;
    for (size_t i = 0; i < c.data.nrows; i++) {
        if (strcmp(csv_field(&c, i, "record"), "size") != 0) continue;
        bool ag = strcmp(csv_field(&c, i, "collective"), "all_gather") == 0;
        assert_string_equal(csv_field(&c, i, "status"), ag ? "failed" : "ok");
        assert_int_equal((int)num(&c, i, "wrong"), ag ? 1 : 0);
        failed += ag;
    }
    assert_int_equal(failed, 4);
    assert_int_equal(count_substr(r->res.out, "  failed"), 4);
    csv_free(&c);
}

static void test_bad_input_exit_2_nothing_written(void **state)
{
    (void)state;
    static const char *const bad[][3] = {
        {"--gpus", "1", NULL},          {"--sizes", "2:8", NULL},         {"--sizes", "64:8", NULL},
        {"--sizes", "8,,16", NULL},     {"--collectives", "alltoall", NULL}, {"--iters", "0", NULL},
        {"--comm", "nosuch", NULL},     {"--backend", "tpu", NULL},       {"--frobnicate", NULL, NULL},
        /* 4 ranks of two 16 GiB buffers: more than any CI host has */
        {"--sizes", "8:16G", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *extra[4] = {(char *)bad[i][0], (char *)bad[i][1], NULL, NULL};
        /* run_comm's own --sizes and --gpus would be given twice: the line by hand */
        bench_run *r = bench_run_new();
        char *args[16];
        int n = 0;
        char *base[] = {(char *)bench_path(), "comm", "--comm", "local", "--quiet", "--out", r->csv_path};
        for (size_t k = 0; k < sizeof base / sizeof base[0]; k++) args[n++] = base[k];
        if (strcmp(bad[i][0], "--sizes") == 0 && strcmp(bad[i][1], "8:16G") == 0) {
            args[n++] = "--gpus";
            args[n++] = "4";
        }
        for (int k = 0; extra[k]; k++) args[n++] = extra[k];
        args[n] = NULL;
        run_argv_env(&r->res, NULL, args);
        if (r->res.exit_code != 2)
            fail_msg("%s %s: exit %d, want 2; stderr: %s", bad[i][0], bad[i][1] ? bad[i][1] : "", r->res.exit_code,
                     r->res.err);
        if (count_lines(r->res.err) != 1) fail_msg("%s: stderr is not one line: %s", bad[i][0], r->res.err);
        assert_string_equal(r->res.out, "");
        assert_false(file_exists(r->csv_path));
        bench_run_free(r);
    }
    /* the default ladder stops where the host runs out; below its first
     * size (4096 ranks' processes alone overflow any CI host) it refuses */
    if (PB_EXPECT_MPI) {
        bench_run *r = bench_run_new();
        char *args[] = {(char *)bench_path(), "comm", "--comm", "mpi", "--gpus", "4096", "--out", r->csv_path, NULL};
        run_argv_env(&r->res, NULL, args);
        if (r->res.exit_code != 2 || count_lines(r->res.err) != 1 || !strstr(r->res.err, "out of host memory"))
            fail_msg("4096 mpi ranks: exit %d, stderr: %s", r->res.exit_code, r->res.err);
        assert_false(file_exists(r->csv_path));
        bench_run_free(r);
    }
    /* --help: the flags with their defaults, exit 0, nothing written */
    bench_result res;
    char *help[] = {"comm", "--help", NULL};
    run_bench(&res, help);
    assert_int_equal(res.exit_code, 0);
    assert_non_null(strstr(res.out, "--sizes MIN:MAX|LIST"));
    assert_non_null(strstr(res.out, "[8:1G"));
}

/* A copy of src whose size rows take `slow` times as long (busbw and algbw
 * divided by it), written as bench writes CSV. */
static void write_slower(const char *src, const char *dst, double slow)
{
    csv c;
    csv_load(&c, src);
    FILE *f = fopen(dst, "w");
    assert_non_null(f);
    static const char *const times[] = {"time_us_p50", "time_us_min", "time_us_max", "time_us_mean"};
    static const char *const bws[] = {"algbw_gbps", "busbw_gbps"};
    for (size_t k = 0; k < c.data.ncols; k++) fprintf(f, "%s%s", k ? "," : "", pb_csv_name(&c.data, k));
    fputc('\n', f);
    for (size_t i = 0; i < c.data.nrows; i++) {
        bool size = strcmp(csv_field(&c, i, "record"), "size") == 0;
        for (size_t k = 0; k < c.data.ncols; k++) {
            const char *name = pb_csv_name(&c.data, k), *v = pb_csv_get(&c.data, i, k);
            double x, scale = 1;
            for (size_t t = 0; t < 4; t++) scale = strcmp(name, times[t]) == 0 ? slow : scale;
            for (size_t t = 0; t < 2; t++) scale = strcmp(name, bws[t]) == 0 ? 1 / slow : scale;
            if (k) fputc(',', f);
            if (size && scale != 1 && pb_csv_number(v, &x)) fprintf(f, "%.6g", x * scale);
            else if (strpbrk(v, ",\"")) fprintf(f, "\"%s\"", v); /* no quote inside any field bench writes here */
            else fputs(v, f);
        }
        fputc('\n', f);
    }
    fclose(f);
    csv_free(&c);
}

static void test_compare_two_comm_csvs(void **state)
{
    /* 10 repeats: each size's spread is known well enough to call a 2x slower side significant */
    char *more[] = {"--collectives", "all_reduce,sendrecv", "--iters", "10", NULL};
    bench_run *r = keep(state, run_comm(0, "local", 2, "1K:64K", more, NULL));
    expect_exit(r, 0);
    char slow[300];
    snprintf(slow, sizeof slow, "%s/slow.csv", r->dir);
    write_slower(r->csv_path, slow, 2.0);
    bench_result res;
    char *same[] = {"compare", r->csv_path, r->csv_path, NULL};
    run_bench(&res, same);
    if (res.exit_code != 0) fail_msg("compare with itself: exit %d\n%s\n%s", res.exit_code, res.out, res.err);
    assert_non_null(strstr(res.out, "0 regressions"));
    char *worse[] = {"compare", r->csv_path, slow, NULL};
    run_bench(&res, worse);
    if (res.exit_code != 1) fail_msg("compare against 2x slower: exit %d\n%s\n%s", res.exit_code, res.out, res.err);
    assert_non_null(strstr(res.out, " regression\n"));
    assert_non_null(strstr(res.out, "-50.0%"));
    /* and the other way round: faster is no regression */
    char *better[] = {"compare", slow, r->csv_path, NULL};
    run_bench(&res, better);
    if (res.exit_code != 0) fail_msg("compare 2x faster: exit %d\n%s", res.exit_code, res.out);
    /* a comm CSV against a run CSV: bad input */
    char run_csv[300];
    snprintf(run_csv, sizeof run_csv, "%s/run.csv", r->dir);
    FILE *f = fopen(run_csv, "w");
    assert_non_null(f);
    fputs("time_utc,status,strategy\n2026-01-01T00:00:00Z,ok,single\n", f);
    fclose(f);
    char *mixed[] = {"compare", r->csv_path, run_csv, NULL};
    run_bench(&res, mixed);
    assert_int_equal(res.exit_code, 2);
}

static void test_plot_draws_busbw(void **state)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) skip();
    char *only[] = {"--collectives", "all_reduce,broadcast", NULL};
    bench_run *r = keep(state, run_comm(0, "local", 2, "8:4K", only, NULL));
    expect_exit(r, 0);
    char out[300], png[400];
    snprintf(out, sizeof out, "%s/img", r->dir);
    bench_result res;
    char *args[] = {"plot", r->csv_path, "--out", out, NULL};
    run_bench(&res, args);
    if (res.exit_code != 0) fail_msg("plot: exit %d\n%s", res.exit_code, res.err);
    snprintf(png, sizeof png, "%s/comm-local-cpu-x2-busbw.png", out);
    assert_true(file_exists(png));
    assert_non_null(strstr(res.out, png));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_local_two_threads, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mpi_two_ranks_launched_by_bench, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mpi_three_ranks_under_mpirun, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_result_fails_its_rows, run_setup, run_teardown),
        cmocka_unit_test(test_bad_input_exit_2_nothing_written),
        cmocka_unit_test_setup_teardown(test_compare_two_comm_csvs, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_plot_draws_busbw, run_setup, run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
