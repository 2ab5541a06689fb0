/* One definition of "the same configuration": bench sweep (resume and its
 * table), bench compare (pairing) and bench plot --compare (grouping), run
 * as a user runs them, on one crafted CSV built from a real run's row R:
 *
 *   - R itself;
 *   - for every column that is not a key (PB_KEY_NONE in harness/results.h:
 *     params, ranks, the environment, the metrics) a copy of R with only that
 *     column changed: the same configuration to all three tools, but that
 *     sweep's resume leaves out a copy whose environment differs (study/key.h:
 *     a column of the environment rule that R fills);
 *   - for every resume-only column (iters, warmup, seed) a copy of R with only
 *     that column changed: the same configuration to compare and plot, which
 *     pool runs that differ in how long they were measured, another one to
 *     sweep's resume;
 *   - for every pairing-key column a copy of R with only that column changed:
 *     another configuration to all three.
 *
 * Each row has its own samples_per_s, so a tool that pools the wrong rows
 * shows another mean: compare must print 1 + (key columns) configurations
 * and R's with the mean of R and its non-key and resume-only copies; plot's
 * .dat must hold the same configurations and means; sweep must find R's
 * configuration done (nothing run) with the mean of R and its non-key
 * copies. */
#include "tests/common/test_csv.h"

#include "harness/results.h"
#include "study/key.h"

enum { MAX_ROWS = PB_COL_COUNT + 1 };

typedef struct crafted {
    char field[MAX_ROWS][PB_COL_COUNT][PB_FIELD_MAX];
    int n;
    int n_key;          /* rows that are another configuration to all three tools */
    double pair_mean;   /* R's configuration as compare and plot pool it */
    double sweep_mean;  /* R's configuration as sweep's resume pools it */
    int pair_runs, sweep_runs;
} crafted;

static void write_field(FILE *f, const char *v, bool last)
{
    fputc('"', f);
    for (const char *p = v; *p; p++) {
        if (*p == '"') fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
    fputc(last ? '\n' : ',', f);
}

/* A value unlike v: a number plus one, text with a suffix, "1" for empty. */
static void changed(const char *v, char *out, size_t len)
{
    double x;
    if (!*v)
        snprintf(out, len, "1");
    else if (pb_csv_number(v, &x))
        snprintf(out, len, "%.15g", x + 1);
    else
        snprintf(out, len, "%.200s-x", v);
}

static void craft(crafted *c, const pb_csv *run, const char *path)
{
    memset(c, 0, sizeof *c);
    int col[PB_COL_COUNT];
    for (int k = 0; k < PB_COL_COUNT; k++) {
        col[k] = pb_csv_find(run, pb_column_name((pb_column)k));
        assert_true(col[k] >= 0);
    }
    /* R, then the same-to-all copies, the resume-only copies, the key copies */
    for (int pass = 0; pass < 4; pass++)
        for (int k = 0; k < PB_COL_COUNT; k++) {
            pb_key_role role = pb_column_key((pb_column)k);
            bool mine;
            if (pass == 0) mine = k == 0;
            else if (pass == 1)
                mine = role == PB_KEY_NONE && k != PB_COL_STATUS && k != PB_COL_SAMPLES_PER_S && k != PB_COL_ERROR;
            else if (pass == 2) mine = role == PB_KEY_RESUME;
            else mine = role == PB_KEY_ALL;
            if (!mine) continue;
            int r = c->n++;
            for (int j = 0; j < PB_COL_COUNT; j++)
                snprintf(c->field[r][j], PB_FIELD_MAX, "%s", pb_csv_get(run, 0, (size_t)col[j]));
            if (pass) changed(pb_csv_get(run, 0, (size_t)col[k]), c->field[r][k], PB_FIELD_MAX);
            double sps = 1000 + 37 * r; /* distinct per row */
            snprintf(c->field[r][PB_COL_SAMPLES_PER_S], PB_FIELD_MAX, "%g", sps);
            if (pass <= 2) c->pair_mean += sps, c->pair_runs++;
            /* another host, build or library: not this sweep's row */
            bool other_env = pass == 1 && pb_key_uses(PB_KEY_ENV, (pb_column)k) && *pb_csv_get(run, 0, (size_t)col[k]);
            if (pass <= 1 && !other_env) c->sweep_mean += sps, c->sweep_runs++;
            if (pass == 3) c->n_key++;
        }
    c->pair_mean /= c->pair_runs;
    c->sweep_mean /= c->sweep_runs;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    char header[1 << 13]; /* as bench writes it: sweep appends to the file */
    size_t len = pb_results_header(header, sizeof header);
    assert_true(len > 0 && len < sizeof header);
    fwrite(header, 1, len, f);
    for (int r = 0; r < c->n; r++)
        for (int k = 0; k < PB_COL_COUNT; k++) write_field(f, c->field[r][k], k + 1 == PB_COL_COUNT);
    assert_int_equal(fclose(f), 0);
}

static char *const sweep_args[] = {"sweep", "--strategies", "single", "--gpus", "1", "--backend", "cpu",
                                   "--iters", "5", "--threads", "1", "--out", NULL, NULL};

static void run_sweep(bench_result *r, const char *out)
{
    char *args[sizeof sweep_args / sizeof sweep_args[0]];
    memcpy(args, sweep_args, sizeof args);
    args[12] = (char *)out;
    run_bench(r, args);
    if (r->exit_code != 0) fail_msg("sweep: exit %d: %s", r->exit_code, r->err);
}

static void test_three_tools_one_key(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char real[512], path[512], plots[512], dat[600];
    snprintf(real, sizeof real, "%s/real.csv", dir);
    snprintf(path, sizeof path, "%s/crafted.csv", dir);
    snprintf(plots, sizeof plots, "%s/plots", dir);
    snprintf(dat, sizeof dat, "%s/compare-samples_per_s.dat", plots);
    bench_result *r = calloc(1, sizeof *r);

    /* R: the row the sweep's own run writes */
    run_sweep(r, real);
    csv run;
    csv_load(&run, real);
    assert_int_equal(run.rows, 1);
    crafted *c = calloc(1, sizeof *c);
    craft(c, &run.data, path);
    csv_free(&run);
    assert_true(c->n_key >= 20 && c->pair_runs > c->sweep_runs && c->sweep_runs > 10);

    /* compare: 1 + n_key configurations, R's with its pooled mean */
    run_bench(r, (char *[]){"compare", path, path, "--format", "csv", NULL});
    if (r->exit_code != 0) fail_msg("compare: exit %d: %s", r->exit_code, r->err);
    pb_csv out;
    assert_int_equal(pb_csv_parse("compare's output", r->out, strlen(r->out), &out), PB_OK);
    assert_int_equal(out.nrows, 1 + c->n_key);
    int runs = pb_csv_find(&out, "runs_baseline"), base = pb_csv_find(&out, "baseline");
    assert_true(runs >= 0 && base >= 0);
    int found = 0;
    for (size_t i = 0; i < out.nrows; i++) {
        double m = strtod(pb_csv_get(&out, i, (size_t)base), NULL);
        long n = strtol(pb_csv_get(&out, i, (size_t)runs), NULL, 10);
        if (fabs(m - c->pair_mean) < 1e-6 * c->pair_mean) {
            found++;
            assert_int_equal(n, c->pair_runs);
        } else {
            assert_int_equal(n, 1); /* a key copy: a configuration of its own */
        }
    }
    assert_int_equal(found, 1);
    pb_csv_free(&out);

    /* plot --compare: the same configurations, the same mean for R's */
    run_bench(r, (char *[]){"plot", "--compare", path, path, "--out", plots, "--keep-data", "--quiet", NULL});
    /* without gnuplot (scripts/run-tests.sh installs it) plot cannot run: as test_plot, skip it */
    bool no_gnuplot = r->exit_code != 0 && strstr(r->err, "gnuplot") && !file_exists(dat);
    if (no_gnuplot) fprintf(stderr, "test_key_agree: no gnuplot on PATH: plot not checked\n");
    if (r->exit_code != 0 && !no_gnuplot) fail_msg("plot: exit %d: %s", r->exit_code, r->err);
    char *text = no_gnuplot ? strdup("header\n") : read_file(dat);
    assert_non_null(text);
    int lines = 0;
    found = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (lines++ == 0) continue; /* the header */
        /* "config" "settings" baseline ...: the first number after the two
         * quoted labels (docs/plots.md; a label has no double quote) */
        char *end = line;
        for (int quotes = 0; quotes < 4 && *end; end++) quotes += *end == '"';
        double m = strtod(end, NULL);
        if (fabs(m - c->pair_mean) < 1e-5 * c->pair_mean) found++;
    }
    free(text);
    if (!no_gnuplot) {
        assert_int_equal(lines - 1, 1 + c->n_key);
        assert_int_equal(found, 1);
    }

    /* sweep: R's configuration is done (nothing run), with its own mean */
    run_sweep(r, path);
    char want[128];
    snprintf(want, sizeof want, "%d of %d runs already in", 1, 1);
    if (!strstr(r->err, want)) fail_msg("sweep ran R's configuration again: %s", r->err);
    char sps[32];
    snprintf(sps, sizeof sps, " %.6g ", c->sweep_mean);
    int table_runs = -1;
    const char *row = strstr(r->out, "\nsingle ");
    assert_non_null(row);
    assert_int_equal(sscanf(row, " single %*s %*s %*s %d", &table_runs), 1); /* devices threads batch runs */
    assert_int_equal(table_runs, c->sweep_runs);
    if (!strstr(row, sps)) fail_msg("sweep's table lacks R's mean%s: %s", sps, r->out);

    free(c);
    free(r);
    remove_temp_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_tools_one_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
