/* bench compare as a user meets it. The reader, statistics and pairing
 * under it (sections 1 to 3) are called directly in
 * tests/unit/test_compare.c.
 *
 * 4. The command as a user meets it: ./bench compare on CSVs written here
 *    with pb_results_format (so they carry this build's header exactly):
 *    identical -> 0; 20% slower with cv 0.01 over 20 steps -> 1; 20% slower
 *    with cv 0.5 -> 0; bad files and bad flags -> 2 with one line naming
 *    the file or flag; text, md, csv and json output. */
#include "tests/common/compare_rows.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>

#include "harness/stats.h"
#include "study/compare.h"
#include "study/csv_read.h"
#include "harness/results.h"

#ifndef FIXTURE_DIR
#define FIXTURE_DIR "tests/compare"
#endif

/* ------------------------------------------------------------------------ */
/* CSV files                                                                 */

static void write_text(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_rows(const char *path, const rowspec *rows, size_t n)
{
    char *t = csv_text(rows, n);
    write_text(path, t, strlen(t));
    free(t);
}

/* ------------------------------------------------------------------------ */
/* 4. the command                                                            */

typedef struct cli {
    char *dir;
    char base[4200], cur[4200], other[4200];
    bench_result *r;
} cli;

static int cli_setup(void **state)
{
    pb_error_clear();
    cli *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->dir = make_temp_dir();
    snprintf(c->base, sizeof c->base, "%s/baseline.csv", c->dir);
    snprintf(c->cur, sizeof c->cur, "%s/current.csv", c->dir);
    snprintf(c->other, sizeof c->other, "%s/other.csv", c->dir);
    c->r = calloc(1, sizeof *c->r);
    assert_non_null(c->r);
    *state = c;
    return 0;
}

static int cli_teardown(void **state)
{
    cli *c = *state;
    remove_temp_dir(c->dir);
    free(c->r);
    free(c);
    return 0;
}

static void show(const bench_result *r)
{
    print_message("exit %d\nstdout:\n%s\nstderr:\n%s\n", r->exit_code, r->out, r->err);
}

/* bench compare BASE CUR [extra...] */
static bench_result *run_compare(cli *c, const char *base, const char *cur, const char *const *extra)
{
    char *argv[24];
    memset(c->r, 0, sizeof *c->r);
    int n = 0;
    argv[n++] = "compare";
    argv[n++] = (char *)base;
    argv[n++] = (char *)cur;
    for (int i = 0; extra && extra[i] && n < 23; i++) argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    run_bench(c->r, argv);
    return c->r;
}

static void expect_exit(const bench_result *r, int code)
{
    if (r->exit_code != code) show(r);
    assert_int_equal(r->exit_code, code);
}

/* Exit 2, nothing on stdout, one line on stderr holding every phrase. */
static void expect_bad_input(const bench_result *r, const char *const *phrases)
{
    bool ok = r->exit_code == 2 && !r->out[0] && count_lines(r->err) == 1;
    for (int i = 0; phrases[i]; i++) ok = ok && strstr(r->err, phrases[i]);
    if (!ok) {
        show(r);
        for (int i = 0; phrases[i]; i++) print_message("expected: %s\n", phrases[i]);
    }
    assert_int_equal(r->exit_code, 2);
    assert_string_equal(r->out, "");
    assert_int_equal(count_lines(r->err), 1);
    for (int i = 0; phrases[i]; i++) assert_non_null(strstr(r->err, phrases[i]));
}

#define PHRASES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define FLAGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static const rowspec two_configs[] = {{.sps = 1000, .cv = 0.01}, {.threads = 2, .sps = 1800, .cv = 0.01}};

static void test_cli_identical_exits_0(void **state)
{
    cli *c = *state;
    write_rows(c->base, two_configs, 2);
    bench_result *r = run_compare(c, c->base, c->base, NULL);
    expect_exit(r, 0);
    assert_string_equal(r->err, "");
    assert_non_null(strstr(r->out, "config"));
    assert_non_null(strstr(r->out, "single cuda mlp-xs fp32 threads=1"));
    assert_non_null(strstr(r->out, "1/1"));
    assert_non_null(strstr(r->out, "+0.0%"));
    assert_non_null(strstr(r->out, "0 regressions, 0 improvements, 2 same"));
    assert_null(strstr(r->out, "env:"));
    /* no trailing blanks on any line */
    assert_null(strstr(r->out, " \n"));
}

static void test_cli_20pct_slower_tight_exits_1(void **state)
{
    cli *c = *state;
    write_rows(c->base, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1);
    write_rows(c->cur, (rowspec[]){{.sps = 800, .cv = 0.01}}, 1);
    bench_result *r = run_compare(c, c->base, c->cur, NULL);
    expect_exit(r, 1);
    assert_non_null(strstr(r->out, "-20.0%"));
    assert_non_null(strstr(r->out, "<0.0001"));
    assert_non_null(strstr(r->out, "regression\n"));
    assert_non_null(strstr(r->out, "1 regression,"));
    assert_string_equal(r->err, "");
}

static void test_cli_20pct_slower_in_noise_exits_0(void **state)
{
    cli *c = *state;
    write_rows(c->base, (rowspec[]){{.sps = 1000, .cv = 0.5}}, 1);
    write_rows(c->cur, (rowspec[]){{.sps = 800, .cv = 0.5}}, 1);
    bench_result *r = run_compare(c, c->base, c->cur, NULL);
    expect_exit(r, 0);
    assert_non_null(strstr(r->out, "-20.0%"));
    assert_non_null(strstr(r->out, "noise\n"));
    assert_non_null(strstr(r->out, "0 regressions"));
}

static void test_cli_threshold_and_metric(void **state)
{
    cli *c = *state;
    write_rows(c->base, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1);
    write_rows(c->cur, (rowspec[]){{.sps = 800, .cv = 0.01}}, 1);
    expect_exit(run_compare(c, c->base, c->cur, FLAGS("--threshold", "25")), 0);
    expect_exit(run_compare(c, c->base, c->cur, FLAGS("--threshold=25%")), 0);
    expect_exit(run_compare(c, c->base, c->cur, FLAGS("--threshold", "19.9")), 1);
    bench_result *r = run_compare(c, c->base, c->cur, FLAGS("--metric", "step_ms_mean"));
    expect_exit(r, 1);
    assert_non_null(strstr(r->out, "+25.0%"));
    assert_non_null(strstr(r->out, "step_ms_mean (lower is better)"));
    r = run_compare(c, c->base, c->cur, FLAGS("--metric", "model_tflops", "--alpha", "0.001"));
    expect_exit(r, 1);
    assert_non_null(strstr(r->out, "alpha 0.001"));
    /* improvements do not fail */
    expect_exit(run_compare(c, c->cur, c->base, NULL), 0);
}

static void test_cli_env_and_one_sided_rows(void **state)
{
    cli *c = *state;
    write_rows(c->base, (rowspec[]){{.sps = 1000, .cv = 0.01}, {.workload = "mlp-s", .sps = 50, .cv = 0.01}}, 2);
    write_rows(c->cur,
               (rowspec[]){{.sps = 1001, .cv = 0.01, .driver = "560.35.03"},
                           {.threads = 8, .sps = 3000, .cv = 0.01, .driver = "560.35.03"}},
               2);
    bench_result *r = run_compare(c, c->base, c->cur, NULL);
    expect_exit(r, 0);
    /* environment first, then the table, then the one-sided rows */
    assert_int_equal(strncmp(r->out, "env: driver: 550.54.15 -> 560.35.03\n", 36), 0);
    const char *table = strstr(r->out, "config"), *only_b = strstr(r->out, "only in baseline: single cuda mlp-s fp32");
    const char *only_c =
        strstr(r->out, "only in current: single cuda mlp-xs fp32 threads=8 (1 run, samples_per_s 3000)");
    assert_non_null(table);
    assert_non_null(only_b);
    assert_non_null(only_c);
    assert_true(table < only_b && only_b < only_c);
    assert_non_null(strstr(r->out, "1 only in baseline, 1 only in current"));
}

/* Two real runs, the second with OMPI_MCA_btl=tcp,self and another
 * NCCL_ALGO set: compare names both variables beside the version
 * differences, and a variable named like a secret, or holding a token, is
 * in neither row. */
static void test_cli_env_vars_of_two_runs(void **state)
{
    cli *c = *state;
    bool btl_unset = !getenv("OMPI_MCA_btl");
    char *base_env[] = {"NCCL_ALGO=Ring", NULL};
    char *cur_env[] = {"NCCL_ALGO=Tree", "OMPI_MCA_btl=tcp,self", "NCCL_SECRET_SAUCE=hunter2",
                       "UCX_TLS=ghp_abcdefghijklmnopqrstuvwxyz0123456789", NULL};
    const char *files[] = {c->base, c->cur};
    char **envs[] = {base_env, cur_env};
    for (int i = 0; i < 2; i++) {
        char *argv[] = {"--workload", "mlp-xs", "--iters", "3", "--warmup", "1", "--backend", "cpu", "--threads", "1",
                        "--quiet", "--out", (char *)files[i], NULL};
        memset(c->r, 0, sizeof *c->r);
        run_bench_env(c->r, envs[i], argv);
        expect_exit(c->r, 0);
        char *text = read_file(files[i]);
        assert_non_null(text);
        assert_null(strstr(text, "hunter2"));
        assert_null(strstr(text, "SECRET"));
        assert_null(strstr(text, "ghp_"));
        assert_non_null(strstr(text, i ? "NCCL_ALGO=Tree" : "NCCL_ALGO=Ring"));
        free(text);
    }
    bench_result *r = run_compare(c, c->base, c->cur, NULL);
    if (r->exit_code == 2) show(r);
    assert_true(r->exit_code == 0 || r->exit_code == 1); /* two 3-step runs: any verdict */
    if (!strstr(r->out, "env: NCCL_ALGO: Ring -> Tree\n")) show(r);
    assert_non_null(strstr(r->out, "env: NCCL_ALGO: Ring -> Tree\n"));
    if (btl_unset) assert_non_null(strstr(r->out, "env: OMPI_MCA_btl: (unset) -> tcp,self\n"));
    else print_message("OMPI_MCA_btl is set around the test: its (unset) side is not checked\n");
    assert_null(strstr(r->out, "hunter2"));
    /* the environment above the table */
    assert_true(strstr(r->out, "env: NCCL_ALGO") < strstr(r->out, "config"));
}

static void test_cli_format_md(void **state)
{
    cli *c = *state;
    write_rows(c->base, two_configs, 2);
    write_rows(c->cur,
               (rowspec[]){{.sps = 800, .cv = 0.01, .driver = "560"},
                           {.threads = 2, .sps = 1800, .cv = 0.01, .driver = "560"}},
               2);
    bench_result *r = run_compare(c, c->base, c->cur, FLAGS("--format", "md"));
    expect_exit(r, 1);
    assert_non_null(strstr(r->out, "- env: driver: 550.54.15 -> 560\n"));
    /* a table: header, separator, one line per pair, every line with the
     * same number of cells */
    int table_lines = 0, pipes = -1;
    for (const char *line = r->out; *line;) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        if (*line == '|') {
            int n = 0;
            for (const char *q = line; q < end; q++) n += *q == '|' && (q == line || q[-1] != '\\');
            if (pipes < 0) pipes = n;
            assert_int_equal(n, pipes);
            assert_int_equal(end[-1], '|');
            table_lines++;
        }
        line = end + 1;
    }
    assert_int_equal(pipes, 9);
    assert_int_equal(table_lines, 4);
    assert_non_null(strstr(r->out, "| config | runs | baseline | current | change | p | mde | verdict |\n|:---|"));
    assert_non_null(strstr(r->out, " | regression |\n"));
}

static void test_cli_format_csv(void **state)
{
    cli *c = *state;
    write_rows(c->base, (rowspec[]){{.sps = 1000, .cv = 0.01}, {.workload = "mlp-s", .sps = 50, .cv = 0.01}}, 2);
    write_rows(c->cur, (rowspec[]){{.sps = 800, .cv = 0.01, .driver = "560"}}, 1);
    bench_result *r = run_compare(c, c->base, c->cur, FLAGS("--format=csv"));
    expect_exit(r, 1);
    /* stdout is CSV only; the environment went to stderr */
    assert_non_null(strstr(r->err, "env: driver: 550.54.15 -> 560"));
    pb_csv out;
    parse_ok(r->out, &out);
    assert_int_equal(out.nrows, 2);
    assert_int_equal(out.nskipped, 0);
    int verdict = pb_csv_find(&out, "verdict"), change = pb_csv_find(&out, "change_pct");
    int p = pb_csv_find(&out, "p"), wl = pb_csv_find(&out, "workload"), rb = pb_csv_find(&out, "runs_baseline");
    assert_true(verdict >= 0 && change >= 0 && p >= 0 && wl >= 0 && rb >= 0);
    assert_string_equal(pb_csv_get(&out, 0, (size_t)verdict), "regression");
    assert_float_equal(strtod(pb_csv_get(&out, 0, (size_t)change), NULL), -20, 1e-6);
    assert_true(strtod(pb_csv_get(&out, 0, (size_t)p), NULL) < 1e-10);
    assert_string_equal(pb_csv_get(&out, 1, (size_t)wl), "mlp-s");
    assert_string_equal(pb_csv_get(&out, 1, (size_t)verdict), "only-baseline");
    assert_string_equal(pb_csv_get(&out, 1, (size_t)change), "");
    assert_string_equal(pb_csv_get(&out, 1, (size_t)rb), "1");
    pb_csv_free(&out);
}

/* python3 checks JSON text against assertions (a script reading `d`);
 * returns its exit code (0: valid JSON and every assertion held). */
static int check_json(const char *dir, const char *text, const char *asserts)
{
    char path[4200], script[8192];
    snprintf(path, sizeof path, "%s/out.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    snprintf(script, sizeof script, "import json\nd = json.load(open('%s'))\n%s\n", path, asserts);
    bench_result *r = calloc(1, sizeof *r);
    assert_non_null(r);
    run_argv_env(r, NULL, (char *const[]){"python3", "-c", script, NULL});
    if (r->exit_code) print_message("python3:\n%s%s\njson:\n%s\n", r->out, r->err, text);
    int code = r->exit_code;
    free(r);
    return code;
}

/* --format json: one valid JSON object on stdout with the verdict, exit
 * code, settings, environment differences and every configuration (paired,
 * one-sided) with its figures; null where there is no figure; the exit
 * code is the text format's. */
static void test_cli_format_json(void **state)
{
    cli *c = *state;
    write_rows(c->base, (rowspec[]){{.sps = 1000, .cv = 0.01}, {.workload = "mlp-s", .sps = 50, .cv = 0.01}}, 2);
    write_rows(c->cur, (rowspec[]){{.sps = 800, .cv = 0.01, .driver = "560"}}, 1);
    bench_result *r = run_compare(c, c->base, c->cur, FLAGS("--format", "json", "--threshold", "7"));
    expect_exit(r, 1);
    assert_string_equal(r->err, "");
    assert_int_equal(check_json(c->dir, r->out,
                                "assert d['verdict'] == 'regression' and d['exit_code'] == 1, d\n"
                                "assert d['metric'] == 'samples_per_s' and d['higher_is_better'] is True\n"
                                "assert d['threshold_pct'] == 7 and d['alpha'] == 0.01\n"
                                "assert d['counts']['regression'] == 1 and d['counts']['only-baseline'] == 1\n"
                                "assert d['environment'] == [{'column': 'driver', 'baseline': '550.54.15', "
                                "'current': '560'}], d['environment']\n"
                                "c = d['configurations']\n"
                                "assert len(c) == 2\n"
                                "assert c[0]['config']['workload'] == 'mlp-xs' and c[0]['verdict'] == 'regression'\n"
                                "assert abs(c[0]['change_pct'] + 20) < 1e-6 and c[0]['p'] < 1e-10\n"
                                "assert c[0]['baseline'] == 1000 and c[0]['current'] == 800\n"
                                "assert c[1]['verdict'] == 'only-baseline' and c[1]['current'] is None\n"
                                "assert c[1]['change_pct'] is None and c[1]['runs_baseline'] == 1\n"),
                     0);
    /* a pass: the same verdict and code as the text format's */
    r = run_compare(c, c->base, c->base, FLAGS("--format=json"));
    expect_exit(r, 0);
    assert_int_equal(check_json(c->dir, r->out,
                                "assert d['verdict'] == 'pass' and d['exit_code'] == 0\n"
                                "assert d['environment'] == [] and d['counts']['same'] == 2\n"),
                     0);
}

static void test_cli_old_schema_and_torn_line(void **state)
{
    cli *c = *state;
    write_rows(c->cur, (rowspec[]){{.sps = 100000, .cv = 0.01}}, 1);
    bench_result *r = run_compare(c, FIXTURE_DIR "/old_schema.csv", c->cur, NULL);
    expect_exit(r, 0);
    /* cpu rows against cuda rows: different configurations, listed */
    assert_non_null(strstr(r->out, "only in baseline: single cpu mlp-xs fp32"));
    assert_non_null(strstr(r->out, "only in current: single cuda mlp-xs fp32"));
    assert_non_null(strstr(r->err, "old_schema.csv:5: skipped (the last line has no final newline"));
    assert_non_null(strstr(r->err, "old_schema.csv: 1 row not compared"));
    assert_non_null(strstr(r->err, "configuration columns are only in"));
    assert_non_null(strstr(r->err, "nothing was compared"));
    /* against itself: pairs, and the torn row does not fail it */
    r = run_compare(c, FIXTURE_DIR "/old_schema.csv", FIXTURE_DIR "/old_schema.csv", NULL);
    expect_exit(r, 0);
    assert_non_null(strstr(r->out, "2 same"));
    /* its cpu mlp-xs configuration in this build's schema pairs with it on
     * either side: each file's key is read at its own columns (they part
     * from `devices` on), and a key column one file lacks is left out */
    char *t = csv_text((rowspec[]){{.sps = 100000, .cv = 0.01}}, 1);
    char *cuda = strstr(t, ",single,cuda,") + strlen(",single");
    memmove(cuda + 4, cuda + 5, strlen(cuda + 5) + 1); /* ",cuda," -> ",cpu," */
    memcpy(cuda, ",cpu", 4);
    write_text(c->cur, t, strlen(t));
    free(t);
    r = run_compare(c, FIXTURE_DIR "/old_schema.csv", c->cur, NULL);
    expect_exit(r, 0);
    assert_non_null(strstr(r->out, "1 same"));
    r = run_compare(c, c->cur, FIXTURE_DIR "/old_schema.csv", NULL);
    expect_exit(r, 0);
    assert_non_null(strstr(r->out, "1 same"));
}

static void test_cli_trailing_partial_line_skipped(void **state)
{
    cli *c = *state;
    char *t = csv_text((rowspec[]){{.sps = 1000, .cv = 0.01}, {.sps = 700, .cv = 0.01}}, 2);
    size_t len = strlen(t);
    write_text(c->base, t, len - 40); /* the second row torn */
    write_rows(c->cur, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1);
    bench_result *r = run_compare(c, c->base, c->cur, NULL);
    expect_exit(r, 0);
    assert_non_null(strstr(r->out, "1/1"));
    assert_non_null(strstr(r->err, "baseline.csv:3: skipped"));
    free(t);
}

static void test_cli_bad_files_exit_2(void **state)
{
    cli *c = *state;
    write_rows(c->cur, two_configs, 2);
    char *good = csv_text(two_configs, 2);

    /* empty file */
    write_text(c->base, "", 0);
    expect_bad_input(run_compare(c, c->base, c->cur, NULL), PHRASES(c->base, "empty file"));
    /* the other side empty too: the file named is the empty one */
    expect_bad_input(run_compare(c, c->cur, c->base, NULL), PHRASES(c->base, "empty file"));

    /* garbage text */
    const char *garbage = "Lorem ipsum dolor sit amet\nconsectetur adipiscing elit\n";
    write_text(c->base, garbage, strlen(garbage));
    expect_bad_input(run_compare(c, c->base, c->cur, NULL), PHRASES(c->base, ":1: not a parbench results CSV"));

    /* binary garbage */
    const char bin[] = "\x7f" "ELF\x02\x01\x01\0\0\0\0\0";
    write_text(c->base, bin, sizeof bin - 1);
    expect_bad_input(run_compare(c, c->base, c->cur, NULL), PHRASES(c->base, ":1: binary data"));

    /* a valid header, then garbage lines */
    char *hdr = strndup(good, (size_t)(strchr(good, '\n') - good + 1));
    static char text[1 << 16];
    snprintf(text, sizeof text, "%shello\nworld\n", hdr);
    write_text(c->base, text, strlen(text));
    expect_bad_input(run_compare(c, c->base, c->cur, NULL),
                     PHRASES(c->base, "no complete rows: 2 malformed lines skipped, the first at line 2"));

    /* a header and no rows */
    write_text(c->base, hdr, strlen(hdr));
    expect_bad_input(run_compare(c, c->base, c->cur, NULL), PHRASES(c->base, "no rows after the header"));

    /* mismatched header: another tool's CSV */
    const char *other = "name,value\nx,1\n";
    write_text(c->base, other, strlen(other));
    expect_bad_input(run_compare(c, c->base, c->cur, NULL),
                     PHRASES(c->base, "not a parbench results CSV: no known column in its header",
                             "(it starts with 'name')"));

    /* mismatched header: a needed column renamed */
    char *renamed = strdup(good);
    char *col = strstr(renamed, "samples_per_s");
    memcpy(col, "samples_per_x", 13);
    write_text(c->base, renamed, strlen(renamed));
    expect_bad_input(run_compare(c, c->base, c->cur, NULL),
                     PHRASES(c->base, ":1: the header lacks column that compare needs: samples_per_s"));
    /* ... which --metric does not need */
    expect_exit(run_compare(c, c->base, c->cur, FLAGS("--metric", "model_tflops")), 0);

    /* missing columns: a header cut after `precision` */
    const char *cut = "time_utc,status,strategy,backend,comm,workload,in,hidden,layers,classes,params,"
                      "batch_global,batch_per_device,devices,ranks,microbatches,bucket_mb,oversubscribed,precision\n"
                      "2026-01-01T00:00:00Z,ok,single,cpu,none,mlp-xs,256,256,3,10,134154,64,64,1,1,,,0,fp32\n";
    write_text(c->base, cut, strlen(cut));
    expect_bad_input(run_compare(c, c->base, c->cur, NULL),
                     PHRASES(c->base, "lacks columns that compare needs: iters, step_ms_cv, samples_per_s"));

    /* mismatched header: rows of a wider schema under a narrower header */
    static char wider[1 << 16];
    const char *row1 = strchr(good, '\n') + 1;
    snprintf(wider, sizeof wider, "%.*s%.*s,extra\n", (int)(row1 - good), good, (int)(strchr(row1, '\n') - row1), row1);
    write_text(c->base, wider, strlen(wider));
    expect_bad_input(run_compare(c, c->base, c->cur, NULL),
                     PHRASES(c->base, ":2: more fields than the header's"));

    /* a figure that is not a number */
    char *word = strdup(good);
    char *v = strstr(strchr(word, '\n'), ",1000,");
    memcpy(v + 1, "fast", 4);
    write_text(c->base, word, strlen(word));
    expect_bad_input(run_compare(c, c->base, c->cur, NULL),
                     PHRASES(c->base, ":2: samples_per_s 'fast' is not a positive number"));

    /* a stray quote */
    char *quote = strdup(good);
    char *q = strstr(strchr(quote, '\n'), ",single,");
    q[3] = '"';
    write_text(c->base, quote, strlen(quote));
    char field[64];
    snprintf(field, sizeof field, ":2: malformed CSV in field %d (column 'strategy')", PB_COL_STRATEGY + 1);
    expect_bad_input(run_compare(c, c->base, c->cur, NULL), PHRASES(c->base, field));

    /* missing file, directory */
    expect_bad_input(run_compare(c, c->cur, "/nonexistent/current.csv", NULL),
                     PHRASES("/nonexistent/current.csv: cannot open"));
    expect_bad_input(run_compare(c, c->dir, c->cur, NULL), PHRASES(c->dir, "is a directory"));

    free(quote);
    free(word);
    free(renamed);
    free(hdr);
    free(good);
}

static void test_cli_bad_flags_exit_2(void **state)
{
    cli *c = *state;
    write_rows(c->base, two_configs, 2);
    const struct {
        const char *args[6];
        const char *phrase[3];
    } cases[] = {
        {{"--threshold", "abc"}, {"--threshold: 'abc' is not a number", "allowed: 0 to 1000 (percent)"}},
        {{"--threshold", "-1"}, {"--threshold: -1 is out of range", "allowed: 0 to 1000"}},
        {{"--threshold", "2000"}, {"--threshold: 2000 is out of range", "allowed: 0 to 1000"}},
        {{"--threshold", "nan"}, {"--threshold: 'nan' is not a number", "allowed"}},
        {{"--threshold"}, {"--threshold needs a value", "allowed: 0 to 1000"}},
        {{"--threshold", "--metric", "mfu"}, {"--threshold needs a value", "allowed"}},
        {{"--metric", "speed"},
         {"--metric: unknown 'speed'", "allowed: samples_per_s, model_tflops, mfu, step_ms_mean"}},
        {{"--metric="}, {"--metric needs a value", "allowed: samples_per_s"}},
        {{"--format", "xml"}, {"--format: unknown 'xml'", "allowed: text, md, csv"}},
        {{"--alpha", "0"}, {"--alpha: 0 is out of range", "allowed: 1e-06 to 0.5"}},
        {{"--alpha", "0.9"}, {"--alpha: 0.9 is out of range", "allowed"}},
        {{"--frobnicate"}, {"unknown flag '--frobnicate'", "allowed: --threshold, --metric, --alpha, --format"}},
        {{"third.csv"}, {"unexpected argument 'third.csv'", "two files"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bench_result *r = run_compare(c, c->base, c->base, cases[i].args);
        expect_bad_input(r, PHRASES(cases[i].phrase[0], cases[i].phrase[1]));
    }
    /* flags are checked before the files are read */
    expect_bad_input(run_compare(c, "/nonexistent/a.csv", "/nonexistent/b.csv", FLAGS("--format", "xml")),
                     PHRASES("--format: unknown 'xml'"));
    /* one file, none */
    char *one[] = {"compare", c->base, NULL};
    run_bench(c->r, one);
    expect_bad_input(c->r, PHRASES("compare needs two files", "BASELINE.csv CURRENT.csv", "got 1"));
    char *none[] = {"compare", NULL};
    run_bench(c->r, none);
    expect_bad_input(c->r, PHRASES("compare needs two files", "got 0"));
    /* --help */
    char *help[] = {"compare", "--help", NULL};
    run_bench(c->r, help);
    expect_exit(c->r, 0);
    assert_non_null(strstr(c->r->out, "usage: bench compare BASELINE.csv CURRENT.csv"));
    assert_non_null(strstr(c->r->out, "--threshold PCT"));
    assert_non_null(strstr(c->r->out, "[5]"));
    assert_string_equal(c->r->err, "");
}

/* A configuration ok in BASELINE whose every CURRENT run failed (or was
 * invalid) is a regression, named as such; a CURRENT with no ok row never passes; a
 * BASELINE with none is nothing to compare against (exit 2). */
static void test_cli_failed_in_current(void **state)
{
    cli *c = *state;
    write_rows(c->base, (rowspec[]){{.sps = 1000, .cv = 0.01}, {.workload = "mlp-s", .sps = 500, .cv = 0.01}}, 2);
    write_rows(c->cur, (rowspec[]){{.sps = 1000, .cv = 0.01}, {.workload = "mlp-s", .status = "failed"}}, 2);
    bench_result *r = run_compare(c, c->base, c->cur, NULL);
    expect_exit(r, 1);
    assert_non_null(strstr(r->out, "failed in current: single cuda mlp-s fp32 (baseline 1 ok run, samples_per_s 500; "
                                   "current 1 failed, none ok: 'out of memory')"));
    assert_non_null(strstr(r->out, ": 1 regression (1 failed in current), 0 improvements, 1 same"));
    r = run_compare(c, c->base, c->cur, (const char *[]){"--format", "csv", NULL});
    expect_exit(r, 1);
    assert_non_null(strstr(r->out, ",failed-in-current\n"));
    /* an invalid run (--verify failed) is no ok run either */
    write_rows(c->cur, (rowspec[]){{.sps = 1000, .cv = 0.01}, {.workload = "mlp-s", .status = "invalid"}}, 2);
    r = run_compare(c, c->base, c->cur, NULL);
    expect_exit(r, 1);
    assert_non_null(strstr(r->out, ": 1 regression (1 failed in current), 0 improvements, 1 same"));

    /* every current run failed: exit 1, whether or not they pair */
    write_rows(c->cur, (rowspec[]){{.status = "failed"}, {.workload = "mlp-s", .status = "failed"}}, 2);
    r = run_compare(c, c->base, c->cur, NULL);
    expect_exit(r, 1);
    assert_non_null(strstr(r->out, ": 2 regressions (2 failed in current)"));
    assert_non_null(strstr(r->err, "every current run failed"));
    write_rows(c->cur, (rowspec[]){{.workload = "mlp-m", .status = "failed"}}, 1);
    r = run_compare(c, c->base, c->cur, NULL);
    expect_exit(r, 1);
    assert_non_null(strstr(r->err, "no row with status ok and a samples_per_s value (1 not compared); every current "
                                   "run failed"));

    /* failed in BASELINE, ok now: fixed, not a regression */
    write_rows(c->cur, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1);
    write_rows(c->base, (rowspec[]){{.sps = 1000, .cv = 0.01}, {.workload = "mlp-s", .status = "failed"}}, 2);
    write_rows(c->cur, (rowspec[]){{.sps = 1000, .cv = 0.01}, {.workload = "mlp-s", .sps = 500, .cv = 0.01}}, 2);
    r = run_compare(c, c->base, c->cur, NULL);
    expect_exit(r, 0);
    /* a baseline with no ok row */
    write_rows(c->base, (rowspec[]){{.status = "failed"}}, 1);
    r = run_compare(c, c->base, c->cur, NULL);
    expect_bad_input(r, (const char *[]){"baseline.csv: no row with status ok", "nothing to compare against", NULL});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cli_identical_exits_0, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_20pct_slower_tight_exits_1, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_20pct_slower_in_noise_exits_0, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_threshold_and_metric, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_env_and_one_sided_rows, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_env_vars_of_two_runs, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_format_md, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_format_csv, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_format_json, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_old_schema_and_torn_line, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_failed_in_current, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_trailing_partial_line_skipped, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_bad_files_exit_2, cli_setup, cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_bad_flags_exit_2, cli_setup, cli_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
