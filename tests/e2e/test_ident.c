/* Runs that can be named and traced (issue 15): bench --version, --tag,
 * the run_id in every row that also names the run's files and is printed
 * at start, --steps-out (every measured step of every rank, whole or
 * absent), and the progress lines. Each run is mlp-xs on the cpu backend
 * for a few steps. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <dirent.h>
#include <regex.h>
#include <stdbool.h>

#include "harness/phase_names.h"
#include "harness/results.h"

#ifndef PB_EXPECT_MPI
#define PB_EXPECT_MPI 0
#endif
#ifndef PB_EXPECT_CUDA
#define PB_EXPECT_CUDA 0
#endif

#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})

static bool has_flag(char *const args[], const char *flag)
{
    for (int i = 0; args && args[i]; i++)
        if (strcmp(args[i], flag) == 0) return true;
    return false;
}

/* A short run of r into its r.csv with extra flags (--iters 3 --warmup 1
 * unless they say otherwise); extra environment env; every file bench
 * writes limited to limit bytes (0: no limit). */
static void short_run_fsize(bench_run *r, char *const env[], rlim_t limit, char *const extra[])
{
    char *argv[48];
    int n = 0;
    char *base[] = {"--workload", "mlp-xs", "--backend", "cpu", "--threads", "1", "--out", r->csv_path};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) argv[n++] = base[i];
    if (!has_flag(extra, "--iters")) {
        argv[n++] = "--iters";
        argv[n++] = "3";
    }
    if (!has_flag(extra, "--warmup")) {
        argv[n++] = "--warmup";
        argv[n++] = "1";
    }
    for (int i = 0; extra && extra[i] && n < 47; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    run_bench_fsize(&r->res, limit, env, argv);
}

static void short_run(bench_run *r, char *const env[], char *const extra[]) { short_run_fsize(r, env, 0, extra); }

/* A usage error: exit 2, one line naming what, and no file written in the
 * run's folder (neither the CSV nor anything else). */
static void expect_usage(const bench_run *r, const char *what)
{
    if (r->res.exit_code != 2 || !strstr(r->res.err, what) || count_lines(r->res.err) != 1)
        fail_msg("expected exit 2 and one line with '%s'; got exit %d, stderr:\n%s", what, r->res.exit_code,
                 r->res.err);
    assert_false(file_exists(r->csv_path));
    DIR *d = opendir(r->dir);
    assert_non_null(d);
    struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) entries++;
    closedir(d);
    assert_int_equal(entries, 0);
}

static bool matches(const char *text, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB | REG_NEWLINE), 0);
    bool ok = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

/* No file in dir has ".tmp-" in its name. */
static void expect_no_temporary(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp-")) fail_msg("left behind: %s", e->d_name);
    closedir(d);
}

/* ------------------------------------------------------------------------ */
/* --version                                                                 */

static void test_version(void **state)
{
    (void)state;
    bench_result *r = calloc(1, sizeof *r);
    assert_non_null(r);
    for (int form = 0; form < 2; form++) {
        run_bench(r, form ? ARGV("version") : ARGV("--version"));
        if (r->exit_code != 0) fail_msg("exit %d: %s", r->exit_code, r->err);
        assert_string_equal(r->err, "");
        assert_true(matches(r->out, "^bench [0-9]+\\.[0-9]+\\.[0-9]+$"));
        assert_true(matches(r->out, "^git_rev [^ ]+$"));
        assert_true(matches(r->out, "^compiler (gcc|clang) [0-9]"));
        /* the build options are this build's, as the Makefile found them */
        assert_non_null(strstr(r->out, PB_EXPECT_CUDA ? "\ncuda on\n" : "\ncuda off\n"));
        assert_non_null(strstr(r->out, PB_EXPECT_MPI ? "\nmpi on\n" : "\nmpi off\n"));
        assert_non_null(strstr(r->out, PB_EXPECT_CUDA && PB_EXPECT_MPI ? "\nnccl on\n" : "\nnccl off\n"));
        assert_true(matches(r->out, "^nvtx (on|off)$"));
    }
    run_bench(r, ARGV("version", "extra"));
    assert_int_equal(r->exit_code, 2);
    assert_int_equal(count_lines(r->err), 1);
    assert_string_equal(r->out, "");
    free(r);
}

/* ------------------------------------------------------------------------ */
/* --tag and run_id                                                          */

/* The id printed at start ("bench: run_id ID") into id. */
static void printed_id(const char *err, char *id, size_t len)
{
    const char *at = strstr(err, "bench: run_id ");
    if (!at) fail_msg("no run_id line on stderr:\n%s", err);
    at += strlen("bench: run_id ");
    snprintf(id, len, "%.*s", (int)strcspn(at, "\n"), at);
}

static void test_tag_and_run_id_in_row(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    short_run(r, NULL, ARGV("--tag", "nightly-2026.12_a"));
    expect_exit(r, 0);
    char first[96], second[96];
    printed_id(r->res.err, first, sizeof first);
    short_run(r, NULL, ARGV("--tag=other"));
    expect_exit(r, 0);
    printed_id(r->res.err, second, sizeof second);

    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 2);
    const pb_csv *d = &c.data;
    int tag = pb_csv_find(d, "tag"), id = pb_csv_find(d, "run_id");
    assert_true(tag >= 0 && id >= 0);
    assert_string_equal(pb_csv_get(d, 0, (size_t)tag), "nightly-2026.12_a");
    assert_string_equal(pb_csv_get(d, 1, (size_t)tag), "other");
    /* the printed id is the row's; two runs, two ids, of the documented form */
    assert_string_equal(pb_csv_get(d, 0, (size_t)id), first);
    assert_string_equal(pb_csv_get(d, 1, (size_t)id), second);
    assert_string_not_equal(first, second);
    assert_true(matches(first, "^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9_-]+-[0-9]+-[0-9a-f]{4}$"));
    csv_free(&c);

    /* PB_RUN_ID names the run beforehand (an nsys report, a job's log) */
    char *env[] = {"PB_RUN_ID=job42.step-1", NULL};
    short_run(r, env, ARGV("--quiet"));
    expect_exit(r, 0);
    csv_load(&c, r->csv_path);
    assert_string_equal(csv_get(&c, "run_id"), "job42.step-1");
    assert_string_equal(csv_get(&c, "tag"), "");
    csv_free(&c);
}

/* A tag is not part of the configuration: compare pairs runs that differ
 * only in it. */
static void test_tag_outside_the_key(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    short_run(r, NULL, ARGV("--tag", "a", "--quiet"));
    expect_exit(r, 0);
    char other[300];
    snprintf(other, sizeof other, "%s/b.csv", r->dir);
    char *argv[] = {"--workload", "mlp-xs", "--backend", "cpu", "--threads", "1", "--iters", "3", "--warmup", "1",
                    "--out", other, "--tag", "b", "--quiet", NULL};
    run_bench(&r->res, argv);
    expect_exit(r, 0);
    run_bench(&r->res, ARGV("compare", r->csv_path, other, "--threshold", "1000", "--format", "csv"));
    expect_exit(r, 0);
    assert_int_equal(count_lines(r->res.out), 2); /* the header and one paired configuration */
    assert_null(strstr(r->res.out, "only-"));
}

/* A sweep's runs each make their own id, even under a caller's PB_RUN_ID
 * (one id names one run), and carry a --tag given after "--". */
static void test_sweep_runs_own_ids(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char *env[] = {"PB_RUN_ID=shared", NULL};
    run_bench_env(&r->res, env,
                  ARGV("sweep", "--strategies", "single", "--gpus", "1", "--repeats", "2", "--iters", "2",
                       "--warmup", "0", "--threads", "1", "--backend", "cpu", "--out", r->csv_path, "--quiet", "--",
                       "--tag", "swept"));
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 2);
    int id = pb_csv_find(&c.data, "run_id"), tag = pb_csv_find(&c.data, "tag");
    assert_true(id >= 0 && tag >= 0);
    for (size_t i = 0; i < 2; i++) {
        assert_string_not_equal(pb_csv_get(&c.data, i, (size_t)id), "shared");
        assert_string_equal(pb_csv_get(&c.data, i, (size_t)tag), "swept");
    }
    assert_string_not_equal(pb_csv_get(&c.data, 0, (size_t)id), pb_csv_get(&c.data, 1, (size_t)id));
    csv_free(&c);
}

static void test_bad_tag_and_run_id(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    static const char *const bad[] = {"a b", "", "x/y", "semi;colon", "0123456789012345678901234567890123456789"
                                                                       "01234567890123456789012345"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        short_run(r, NULL, ARGV("--tag", (char *)bad[i]));
        expect_usage(r, "--tag");
        assert_non_null(strstr(r->res.err, "allowed: 1 to 64 letters, digits"));
    }
    short_run(r, NULL, ARGV("--tag"));
    expect_usage(r, "--tag needs a value");
    char *env[] = {"PB_RUN_ID=has space", NULL};
    short_run(r, env, NULL);
    expect_usage(r, "PB_RUN_ID");
}

/* ------------------------------------------------------------------------ */
/* --steps-out                                                               */

/* The steps file's lines: header, then ranks x iters lines carrying id,
 * steps warmup .. warmup+iters-1 per rank, each step's phases within its
 * step time (no phase, nor their sum but comm's, longer than the step by
 * over 5% or 0.05 ms), and the row's last loss on rank 0's last line. */
static void check_steps(const char *path, const char *id, int ranks, int iters, int warmup, const char *loss_last)
{
    pb_csv s;
    if (pb_csv_load(path, &s) != PB_OK) fail_msg("%s: %s", path, pb_error_message());
    assert_int_equal(s.nrows, (size_t)(ranks * iters));
    assert_int_equal(s.nskipped, 0);
    assert_int_equal(pb_csv_find(&s, "run_id"), 0);
    assert_int_equal(pb_csv_find(&s, "rank"), 1);
    assert_int_equal(pb_csv_find(&s, "step"), 2);
    int step_ms = pb_csv_find(&s, "step_ms"), loss = pb_csv_find(&s, "loss");
    assert_int_equal(step_ms, 3 + PB_PHASE_COUNT);
    assert_int_equal(loss, 4 + PB_PHASE_COUNT);
    for (int p = 0; p < PB_PHASE_COUNT; p++) {
        char name[32];
        snprintf(name, sizeof name, "%s_ms", pb_phase_name((pb_phase)p));
        assert_int_equal(pb_csv_find(&s, name), 3 + p);
    }
    for (int r = 0; r < ranks; r++)
        for (int i = 0; i < iters; i++) {
            size_t row = (size_t)(r * iters + i);
            assert_string_equal(pb_csv_get(&s, row, 0), id);
            assert_int_equal(atoi(pb_csv_get(&s, row, 1)), r);
            assert_int_equal(atoi(pb_csv_get(&s, row, 2)), warmup + i);
            double step = strtod(pb_csv_get(&s, row, (size_t)step_ms), NULL), sum = 0.0;
            assert_true(step > 0.0);
            for (int p = 0; p < PB_PHASE_COUNT; p++) {
                if (p == PB_PHASE_COMM) continue; /* may overlap backward: sync_ms is its exposed part */
                double v = strtod(pb_csv_get(&s, row, (size_t)(3 + p)), NULL);
                assert_true(v >= 0.0 && v <= step * 1.05 + 0.05);
                sum += v;
            }
            /* within the step (a step of well under a ms has time outside its phases) */
            if (!(sum <= step * 1.05 + 0.05)) fail_msg("rank %d step %d: phases %.4f ms > step %.4f ms", r, i, sum, step);
            assert_true(strtod(pb_csv_get(&s, row, (size_t)loss), NULL) > 0.0);
        }
    /* rank 0's last loss is the row's (both %.6g) */
    assert_string_equal(pb_csv_get(&s, (size_t)iters - 1, (size_t)loss), loss_last);
    pb_csv_free(&s);
}

static void test_steps_out_single(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char pattern[300];
    snprintf(pattern, sizeof pattern, "%s/steps-{run_id}.csv", r->dir);
    char dump[300];
    snprintf(dump, sizeof dump, "%s/dump-{run_id}", r->dir);
    short_run(r, NULL, ARGV("--steps-out", pattern, "--dump", dump, "--iters", "4", "--warmup", "2"));
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    const char *id = csv_get(&c, "run_id");
    char path[300];
    snprintf(path, sizeof path, "%s/steps-%s.csv", r->dir, id);
    check_steps(path, id, 1, 4, 2, csv_get(&c, "loss_last"));
    /* the dump folder is named by the same id */
    snprintf(path, sizeof path, "%s/dump-%s/params_final.npy", r->dir, id);
    assert_true(file_exists(path));
    csv_free(&c);
}

static void test_steps_out_ddp_every_rank(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    bench_run *r = keep(state, bench_run_new());
    char steps[300];
    snprintf(steps, sizeof steps, "%s/steps.csv", r->dir);
    short_run(r, NULL, ARGV("--strategy", "ddp", "--gpus", "2", "--steps-out", steps, "--iters", "3"));
    expect_exit(r, 0);
    /* the launcher printed the id once; the ranks took it */
    assert_int_equal(count_substr(r->res.err, "bench: run_id "), 1);
    char printed[96];
    printed_id(r->res.err, printed, sizeof printed);
    csv c;
    csv_load(&c, r->csv_path);
    assert_string_equal(csv_get(&c, "run_id"), printed);
    check_steps(steps, printed, 2, 3, 1, csv_get(&c, "loss_last"));
    csv_free(&c);
}

/* Bad --steps-out paths: exit 2, one line, nothing written. */
static void test_steps_out_bad_path(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char missing[300], same[300];
    snprintf(missing, sizeof missing, "%s/no/such/folder/steps.csv", r->dir);
    short_run(r, NULL, ARGV("--steps-out", missing));
    expect_usage(r, "--steps-out");
    short_run(r, NULL, ARGV("--steps-out", r->dir));
    expect_usage(r, "is a directory");
    snprintf(same, sizeof same, "%s", r->csv_path);
    short_run(r, NULL, ARGV("--steps-out", same));
    expect_usage(r, "is the --out results file");
    short_run(r, NULL, ARGV("--steps-out", "/dev/null"));
    expect_usage(r, "character device");
    short_run(r, NULL, ARGV("--steps-out"));
    expect_usage(r, "--steps-out needs a value");
}

/* --ranks-out: a one-process run writes its one rank, {run_id} named,
 * judged by no one (no peers: empty verdict, row's stragglers empty); bad
 * paths are usage errors as --steps-out's, and it may not be the steps
 * file. */
static void test_ranks_out_single(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char pattern[300];
    snprintf(pattern, sizeof pattern, "%s/ranks-{run_id}.csv", r->dir);
    short_run(r, NULL, ARGV("--ranks-out", pattern, "--quiet"));
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_string_equal(csv_get(&c, "stragglers"), "");
    assert_string_equal(csv_get(&c, "slowest_rank"), "");
    char path[300];
    snprintf(path, sizeof path, "%s/ranks-%s.csv", r->dir, csv_get(&c, "run_id"));
    csv f;
    csv_load(&f, path);
    assert_int_equal(f.rows, 1);
    assert_string_equal(csv_get(&f, "run_id"), csv_get(&c, "run_id"));
    assert_string_equal(csv_get(&f, "rank"), "0");
    assert_string_equal(csv_get(&f, "device"), "0");
    assert_string_equal(csv_get(&f, "host"), csv_get(&c, "host"));
    assert_string_equal(csv_get(&f, "straggler"), "");
    /* its step median is the row's (one rank: the same steps) */
    assert_string_equal(csv_get(&f, "step_ms_p50"), csv_get(&c, "step_ms_p50"));
    csv_free(&f);
    csv_free(&c);
    remove(path);
    remove(r->csv_path);
    short_run(r, NULL, ARGV("--ranks-out", r->dir));
    expect_usage(r, "--ranks-out");
    char same[300];
    snprintf(same, sizeof same, "%s/same.csv", r->dir);
    short_run(r, NULL, ARGV("--ranks-out", same, "--steps-out", same));
    expect_usage(r, "is the --steps-out file");
}

/* A run that fails writes no steps file, and leaves one already there as
 * it was (no partial file, no temporary beside it). */
static void test_steps_out_failed_run_leaves_none(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char steps[300], fresh[300];
    snprintf(steps, sizeof steps, "%s/old.csv", r->dir);
    snprintf(fresh, sizeof fresh, "%s/new.csv", r->dir);
    FILE *f = fopen(steps, "w");
    assert_non_null(f);
    fputs("earlier\n", f);
    assert_int_equal(fclose(f), 0);
    char *env[] = {"PB_FAULT=step=2,phase=fwd,kind=nan", NULL};
    short_run(r, env, ARGV("--steps-out", steps, "--quiet"));
    expect_exit(r, 1);
    char *text = read_file(steps);
    assert_string_equal(text, "earlier\n");
    free(text);
    short_run(r, env, ARGV("--steps-out", fresh, "--quiet"));
    expect_exit(r, 1);
    assert_false(file_exists(fresh));
    expect_no_temporary(r->dir);
}

/* A steps file that cannot be written fails the run (exit 1, a failed row
 * naming it) and leaves no file; a row that cannot be appended takes its
 * steps file with it. */
static void test_steps_out_full_disk(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char steps[300];
    snprintf(steps, sizeof steps, "%s/steps.csv", r->dir);
    /* 40 steps are ~3.6 kB, the new CSV with its failed row ~1.4 kB */
    short_run_fsize(r, NULL, 2500, ARGV("--steps-out", steps, "--iters", "40", "--quiet"));
    expect_exit(r, 1);
    assert_non_null(strstr(r->res.err, "--steps-out"));
    assert_false(file_exists(steps));
    expect_no_temporary(r->dir);
    csv c;
    csv_load(&c, r->csv_path);
    assert_string_equal(csv_get(&c, "status"), "failed");
    assert_non_null(strstr(csv_get(&c, "error"), "--steps-out"));
    csv_free(&c);
    remove(r->csv_path);
    /* 3 steps (~0.5 kB) fit, the new CSV (~1.3 kB) does not */
    short_run_fsize(r, NULL, 1000, ARGV("--steps-out", steps, "--quiet"));
    expect_exit(r, 1);
    assert_non_null(strstr(r->res.err, "cannot append the row"));
    assert_false(file_exists(steps));
    assert_false(file_exists(r->csv_path));
    expect_no_temporary(r->dir);
}

/* ------------------------------------------------------------------------ */
/* progress lines                                                            */

static void test_progress_lines(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    short_run(r, NULL, ARGV("--iters", "20", "--calibrate"));
    expect_exit(r, 0);
    /* one per 10 measured steps, as Megatron-LM prints them; stderr only */
    assert_int_equal(count_substr(r->res.err, "bench: step "), 2);
    static const char *const line =
        "^bench: step (10|20)/20 \\| [0-9.]+ ms/step \\| [0-9]+ samples/s \\| [0-9.e+-]+ TFLOP/s/device \\| "
        "mfu [0-9.]+ \\| loss [0-9.]+ \\| mem [0-9.]+ MB peak$";
    assert_true(matches(r->res.err, line));
    assert_string_equal(r->res.out, "");
    short_run(r, NULL, ARGV("--iters", "20", "--quiet"));
    expect_exit(r, 0);
    assert_string_equal(r->res.err, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test_setup_teardown(test_tag_and_run_id_in_row, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_tag_outside_the_key, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_runs_own_ids, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_bad_tag_and_run_id, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_steps_out_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_steps_out_ddp_every_rank, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_steps_out_bad_path, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_ranks_out_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_steps_out_failed_run_leaves_none, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_steps_out_full_disk, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_progress_lines, run_setup, run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
