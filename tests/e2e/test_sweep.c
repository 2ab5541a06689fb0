/* bench sweep, run as a user runs it (./bench as a child process):
 *
 * 1. bad sweep flags: exit 2, one line on stderr, nothing on stdout, no CSV;
 * 2. progress is plain lines (no \r, no escapes) when stderr is not a
 *    terminal, and the table is on stdout;
 * 3. resume: a sweep killed (SIGKILL to its process group) after its first
 *    row leaves whole rows only; the same command again runs only the rest
 *    and says how many it skipped; every combination then has exactly R ok
 *    rows, the header once, and the earlier rows unchanged;
 * 4. the baseline: a fresh run of the default CPU study compared with
 *    results/baselines/cpu-mlp-xs.csv at --threshold 90 passes, and the same
 *    run made 20x slower on paper fails, so the check is real;
 * 5. resume keys on every configuration column: a changed --lr, --batch,
 *    --threads, --iters, --seed, or run flag after -- (--momentum,
 *    --weight-decay, --calibrate) is a new configuration, an unchanged one
 *    (--lr 0.010 for 0.01 too) is skipped, a failed row is run again;
 * 6. two sweeps into one file at once run its rows once: the second waits
 *    for the first, says so, and then finds them done;
 * 7. a failed ddp child is reported by its own error line, not by the Open
 *    MPI notice that follows it;
 * 8. --quiet prints nothing on stderr but errors (no "skipping" notices);
 * 9. resume reuses only rows of this host, build and environment: rows of
 *    another say what differs, one line per column, and run again; the
 *    table's reference then comes from this environment too, not from a
 *    stale row; --resume-any keeps them;
 * 10. a weak study's rows keep the preset's workload name, and bench plot
 *    draws every strategy's efficiency with the sweep's reference;
 * 11. the cpu threads rule: without --threads each device of an N-device
 *    run gets cores/N BLAS threads, single x1 runs again at those threads
 *    as their reference, each row's efficiency is against it, and the
 *    table and the plots say which rule made the rows. */
#include "tests/common/test_csv.h"

#include <fcntl.h>
#include <signal.h>
#include <time.h>

#define BASELINE "results/baselines/cpu-mlp-xs.csv"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_bad_flags_exit_2(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[512];
    snprintf(out, sizeof out, "%s/s.csv", dir);
    char *const cases[][8] = {
        {"sweep", "--strategies", "single,bogus", "--out", out, NULL},
        {"sweep", "--gpus", "1,x", "--out", out, NULL},
        {"sweep", "--scaling", "medium", "--out", out, NULL},
        {"sweep", "--repeats", "0", "--out", out, NULL},
        {"sweep", "--frobnicate", "--out", out, NULL},
        {"sweep", "--out", out, "--", "--gpus", "4", NULL},
        {"sweep", "--out", out, "--iters", "0", NULL},
        {"sweep", "--strategies", "dp", "--gpus", "1", "--out", out, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bench_result r;
        run_bench(&r, cases[i]);
        if (r.exit_code != 2) fail_msg("case %zu: exit %d, stderr: %s", i, r.exit_code, r.err);
        assert_string_equal(r.out, "");
        assert_non_null(strstr(r.err, "bench: error: "));
        /* one line: the error (the last case also has its skip notice) */
        if (i + 1 < sizeof cases / sizeof cases[0]) assert_int_equal(count_lines(r.err), 1);
        assert_false(file_exists(out));
    }
    remove_temp_dir(dir);
}

static void test_plain_progress_and_table(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[512];
    snprintf(out, sizeof out, "%s/s.csv", dir);
    bench_result r;
    run_bench(&r, (char *const[]){"sweep", "--strategies", "single,dp", "--gpus", "1,2", "--iters", "5", "--threads",
                                  "1", "--backend", "cpu", "--out", out, NULL});
    if (r.exit_code != 0) fail_msg("exit %d: %s", r.exit_code, r.err);
    assert_null(strchr(r.err, '\r'));
    assert_null(strchr(r.err, '\033'));
    assert_non_null(strstr(r.err, "[1/2] single x1 batch 64, repeat 1/1: ok"));
    assert_non_null(strstr(r.err, "[2/2] dp x2 batch 128, repeat 1/1: ok"));
    assert_non_null(strstr(r.err, "skipping single x2"));
    assert_non_null(strstr(r.out, "weak scaling of mlp-xs on cpu"));
    assert_non_null(strstr(r.out, "efficiency"));
    assert_non_null(strstr(r.out, "100.0%"));
    csv c;
    csv_load(&c, out);
    assert_int_equal(c.rows, 2);
    csv_free(&c);
    remove_temp_dir(dir);
}

static int count_str(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* Starts bench with args (without argv[0]) in the background, stdout and
 * stderr to /dev/null, in a process group of its own; returns its pid. */
static pid_t spawn_bench(char *const args[])
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)bench_path();
    for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

static void test_resume_after_kill(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[512];
    snprintf(out, sizeof out, "%s/s.csv", dir);
    /* 4 combinations x 2 repeats; the single x1 rows come first */
    char *const args[] = {"sweep", "--strategies", "single,dp,mp,ddp", "--gpus", "1,2", "--repeats", "2",
                          "--iters", "20", "--threads", "1", "--backend", "cpu", "--out", out, NULL};
    pid_t pid = spawn_bench(args);
    /* kill the sweep and its child as soon as the first row is in */
    bool killed = false;
    for (int waited = 0; waited < 60000; waited++) {
        char *text = read_file(out);
        int lines = text ? count_lines(text) : 0;
        free(text);
        if (lines >= 2) {
            kill(-pid, SIGKILL);
            killed = true;
            break;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) fail_msg("the sweep ended before it was killed");
        sleep_ms(1);
    }
    assert_true(killed);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    sleep_ms(100); /* a straggler would write now */

    char *before = read_file(out);
    assert_non_null(before);
    size_t before_len = strlen(before);
    assert_true(before_len > 0 && before[before_len - 1] == '\n'); /* no partial line */
    csv c;
    csv_load(&c, out); /* fails on a torn row */
    int k = c.rows;
    csv_free(&c);
    assert_true(k >= 1 && k < 8);

    bench_result r;
    run_bench(&r, args);
    if (r.exit_code != 0) fail_msg("resumed sweep: exit %d: %s", r.exit_code, r.err);
    char expect[768];
    snprintf(expect, sizeof expect, "%d of 8 runs already in %s with status ok: skipped", k, out);
    if (!strstr(r.err, expect)) fail_msg("expected '%s' on stderr, got: %s", expect, r.err);

    char *after = read_file(out);
    assert_non_null(after);
    assert_memory_equal(after, before, before_len); /* earlier rows intact */
    assert_int_equal(count_str(after, "time_utc,"), 1); /* header once */
    csv_load(&c, out);
    assert_int_equal(c.rows, 8);
    int scol = pb_csv_find(&c.data, "strategy"), dcol = pb_csv_find(&c.data, "devices"),
        okcol = pb_csv_find(&c.data, "status");
    const char *want[4][2] = {{"single", "1"}, {"dp", "2"}, {"mp", "2"}, {"ddp", "2"}};
    for (int w = 0; w < 4; w++) {
        int seen = 0;
        for (size_t row = 0; row < c.data.nrows; row++)
            if (strcmp(pb_csv_get(&c.data, row, (size_t)scol), want[w][0]) == 0 &&
                strcmp(pb_csv_get(&c.data, row, (size_t)dcol), want[w][1]) == 0 &&
                strcmp(pb_csv_get(&c.data, row, (size_t)okcol), "ok") == 0)
                seen++;
        if (seen != 2) fail_msg("%s x%s: %d ok rows, want 2", want[w][0], want[w][1], seen);
    }
    csv_free(&c);

    /* a third run has nothing left to do */
    run_bench(&r, args);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.err, "8 of 8 runs already in"));
    free(before);
    free(after);
    remove_temp_dir(dir);
}

static void test_fresh_run_against_baseline(void **state)
{
    (void)state;
    assert_true(file_exists(BASELINE));
    char *dir = make_temp_dir();
    char fresh[512], slowed[512];
    snprintf(fresh, sizeof fresh, "%s/fresh.csv", dir);
    snprintf(slowed, sizeof slowed, "%s/slowed.csv", dir);
    /* the default CPU study (docs/sweep.md), one repeat */
    bench_result r;
    run_bench(&r, (char *const[]){"sweep", "--strategies", "single,dp,mp,ddp", "--gpus", "1,2", "--workload",
                                  "mlp-xs", "--backend", "cpu", "--iters", "20", "--threads", "1", "--quiet", "--out",
                                  fresh, NULL});
    if (r.exit_code != 0) fail_msg("fresh sweep: exit %d: %s", r.exit_code, r.err);

    run_bench(&r, (char *const[]){"compare", BASELINE, fresh, "--threshold", "90", NULL});
    if (r.exit_code != 0) fail_msg("compare: exit %d\n%s%s", r.exit_code, r.out, r.err);
    /* every fresh configuration found its baseline */
    assert_non_null(strstr(r.out, "0 only in current"));
    assert_non_null(strstr(r.out, ": 0 regression"));

    /* 20x slower on paper: the same comparison fails */
    write_slowed(fresh, slowed, 20.0);
    run_bench(&r, (char *const[]){"compare", BASELINE, slowed, "--threshold", "90", NULL});
    if (r.exit_code != 1) fail_msg("compare of a 20x slowdown: exit %d\n%s%s", r.exit_code, r.out, r.err);
    remove_temp_dir(dir);
}

/* Runs the small sweep with extra arguments (and environment, may be
 * NULL), which must exit with `code`; returns whether it said that it
 * skipped the one run as already in the file. */
static bool sweep_skipped(const char *out, char *const env[], char *const extra[], int code)
{
    char *args[32] = {"sweep", "--strategies", "single", "--gpus", "1", "--backend", "cpu", "--out", (char *)out};
    int n = 9;
    bool iters = false, threads = false; /* given in extra: not the defaults too (a flag given twice is refused) */
    for (int i = 0; extra[i]; i++) {
        iters |= strcmp(extra[i], "--iters") == 0;
        threads |= strcmp(extra[i], "--threads") == 0;
        args[n++] = extra[i];
    }
    /* the defaults go before any "--" in extra */
    int at = 9;
    while (at < n && strcmp(args[at], "--") != 0) at++;
    char *defaults[4];
    int nd = 0;
    if (!iters) defaults[nd++] = "--iters", defaults[nd++] = "5";
    if (!threads) defaults[nd++] = "--threads", defaults[nd++] = "1";
    memmove(args + at + nd, args + at, (size_t)(n - at) * sizeof *args);
    memcpy(args + at, defaults, (size_t)nd * sizeof *args);
    n += nd;
    args[n] = NULL;
    bench_result *r = calloc(1, sizeof *r);
    run_bench_env(r, env, args);
    if (r->exit_code != code) fail_msg("sweep: exit %d, not %d: %s", r->exit_code, code, r->err);
    bool skipped = strstr(r->err, "1 of 1 runs already in") != NULL;
    free(r);
    return skipped;
}

static void test_resume_keys_on_every_flag(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[512];
    snprintf(out, sizeof out, "%s/s.csv", dir);
    /* an invalid row (--verify caught a wrong gradient) and a failed row
     * are no runs of it: the next sweep runs it */
    assert_false(sweep_skipped(out, (char *[]){"PB_FAULT=kind=skew", NULL}, (char *[]){"--", "--verify", NULL}, 1));
    assert_false(sweep_skipped(out, (char *[]){"PB_FAULT=step=2,kind=nan", NULL}, (char *[]){NULL}, 1));
    assert_false(sweep_skipped(out, NULL, (char *[]){NULL}, 0));
    /* each changes the numbers or the measurement: a new configuration */
    char *const changed[][4] = {
        {"--lr", "0.02", NULL},      {"--", "--momentum", "0.5", NULL}, {"--", "--weight-decay", "0.01", NULL},
        {"--", "--calibrate", NULL}, {"--batch", "32", NULL},           {"--threads", "2", NULL},
        {"--iters", "6", NULL},      {"--seed", "7", NULL},
    };
    int rows = 3;
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++) {
        bool skipped = sweep_skipped(out, NULL, changed[i], 0);
        if (skipped) fail_msg("%s %s: resumed from the rows of another configuration", changed[i][0], changed[i][1]);
        csv c;
        csv_load(&c, out);
        assert_int_equal(c.rows, ++rows);
        csv_free(&c);
    }
    /* the first configuration again, its lr spelled otherwise: skipped */
    assert_true(sweep_skipped(out, NULL, (char *[]){"--lr", "0.010", NULL}, 0));
    assert_true(sweep_skipped(out, NULL, (char *[]){"--", "--momentum", "0.5", NULL}, 0));
    /* --force runs it again all the same */
    assert_false(sweep_skipped(out, NULL, (char *[]){"--force", NULL}, 0));
    csv c;
    csv_load(&c, out);
    assert_int_equal(c.rows, rows + 1);
    csv_free(&c);
    remove_temp_dir(dir);
}

static void test_two_sweeps_into_one_file(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[512];
    snprintf(out, sizeof out, "%s/s.csv", dir);
    char *const args[] = {"sweep", "--strategies", "single", "--gpus", "1", "--repeats", "3", "--iters", "20",
                          "--threads", "1", "--backend", "cpu", "--out", out, NULL};
    pid_t pid = spawn_bench(args);
    /* the second starts once the first is under way (its file exists) */
    for (int waited = 0; !file_exists(out) && waited < 30000; waited++) sleep_ms(1);
    assert_true(file_exists(out));
    bench_result *r = calloc(1, sizeof *r);
    run_bench(r, args);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (r->exit_code != 0) fail_msg("second sweep: exit %d: %s", r->exit_code, r->err);
    assert_non_null(strstr(r->err, "another sweep is running into"));
    assert_non_null(strstr(r->err, "3 of 3 runs already in"));
    csv c;
    csv_load(&c, out);
    assert_int_equal(c.rows, 3); /* not 3 per sweep */
    csv_free(&c);
    free(r);
    remove_temp_dir(dir);
}

static void test_failed_child_own_error_line(void **state)
{
    (void)state;
#if !PB_EXPECT_MPI
    skip();
#endif
    char *dir = make_temp_dir();
    char out[512];
    snprintf(out, sizeof out, "%s/s.csv", dir);
    bench_result *r = calloc(1, sizeof *r);
    /* rank 1's loss turns NaN: the ranks say why, then Open MPI's
     * MPI_ABORT notice ends the child's stderr */
    run_bench_env(r, (char *[]){"PB_FAULT=rank=1,step=2,kind=nan", NULL},
                  (char *[]){"sweep", "--strategies", "ddp", "--gpus", "2", "--iters", "5", "--threads", "1",
                             "--backend", "cpu", "--quiet", "--out", out, NULL});
    assert_int_equal(r->exit_code, 1);
    const char *line = strstr(r->err, "ddp x2 batch 128, repeat 1/1 failed (exit 1): ");
    if (!line) fail_msg("no failure line: %s", r->err);
    char shown[1024];
    snprintf(shown, sizeof shown, "%.*s", (int)strcspn(line, "\n"), line);
    if (!strstr(shown, "]: error: loss is NaN at step 2")) fail_msg("the child's own error not shown: %s", shown);
    free(r);
    remove_temp_dir(dir);
}

static void test_quiet_prints_errors_only(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[512];
    snprintf(out, sizeof out, "%s/s.csv", dir);
    /* the default combinations: four of them are skipped, silently */
    bench_result *r = calloc(1, sizeof *r);
    run_bench(r, (char *const[]){"sweep", "--iters", "3", "--warmup", "1", "--threads", "1", "--backend", "cpu",
                                 "--quiet", "--out", out, NULL});
    if (r->exit_code != 0) fail_msg("exit %d: %s", r->exit_code, r->err);
    assert_string_equal(r->err, "");
    assert_non_null(strstr(r->out, "efficiency"));
    /* resumed: still nothing */
    run_bench(r, (char *const[]){"sweep", "--iters", "3", "--warmup", "1", "--threads", "1", "--backend", "cpu",
                                 "--quiet", "--out", out, NULL});
    assert_int_equal(r->exit_code, 0);
    assert_string_equal(r->err, "");
    /* a failed run is still reported */
    run_bench_env(r, (char *[]){"PB_FAULT=step=2,kind=nan", NULL},
                  (char *const[]){"sweep", "--strategies", "single", "--gpus", "1", "--iters", "4", "--threads", "1",
                                  "--backend", "cpu", "--seed", "9", "--quiet", "--out", out, NULL});
    assert_int_equal(r->exit_code, 1);
    assert_non_null(strstr(r->err, "single x1 batch 64, repeat 1/1 failed (exit 1)"));
    assert_int_equal(count_lines(r->err), 1);
    free(r);
    remove_temp_dir(dir);
}

/* The table's line of a strategy: its runs and samples/s (strategy,
 * devices, threads, batch, runs, samples/s, speedup, efficiency). */
static void table_line(const char *out, const char *strategy, int *runs, double *sps, double *eff)
{
    char start[40];
    snprintf(start, sizeof start, "\n%s ", strategy);
    const char *line = strstr(out, start);
    if (!line) fail_msg("no %s line in the table:\n%s", strategy, out);
    *eff = NAN;
    if (sscanf(line, " %*s %*s %*s %*s %d %lf %*s %lf", runs, sps, eff) < 2) fail_msg("unreadable line: %s", line);
}

static void test_resume_same_environment_only(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[512], first[512];
    snprintf(out, sizeof out, "%s/s.csv", dir);
    snprintf(first, sizeof first, "%s/first.csv", dir);
    char *const args[] = {"sweep", "--strategies", "single,dp", "--gpus", "1,2", "--iters", "5", "--threads", "1",
                          "--backend", "cpu", "--out", out, NULL};
    bench_result *r = calloc(1, sizeof *r);
    run_bench(r, args);
    if (r->exit_code != 0) fail_msg("exit %d: %s", r->exit_code, r->err);
    assert_int_equal(rename(out, first), 0);

    /* the same rows from another build: run again, one line per column */
    write_edited(first, out, 1.0, -1, "git_rev", "0123abc");
    run_bench(r, args);
    if (r->exit_code != 0) fail_msg("exit %d: %s", r->exit_code, r->err);
    if (!strstr(r->err, "resume: 2 rows from host ") ||
        !strstr(r->err, "(git_rev 0123abc) not reused: git_rev 0123abc -> "))
        fail_msg("no line saying what differs: %s", r->err);
    assert_null(strstr(r->err, "already in"));
    assert_non_null(strstr(r->err, "[2/2] dp x2"));
    csv c;
    csv_load(&c, out);
    assert_int_equal(c.rows, 4);
    csv_free(&c);
    /* now this build's rows are there: nothing to run */
    run_bench(r, args);
    assert_int_equal(r->exit_code, 0);
    assert_non_null(strstr(r->err, "2 of 2 runs already in"));

    /* a stale, halved reference from another host: not reused, and not the
     * table's reference (its single x1 is this host's fresh run alone) */
    write_edited(first, out, 2.0, -1, "host", "elsewhere");
    run_bench(r, args);
    if (r->exit_code != 0) fail_msg("exit %d: %s", r->exit_code, r->err);
    assert_non_null(strstr(r->err, "resume: 2 rows from host elsewhere ("));
    assert_non_null(strstr(r->err, "not reused: host elsewhere -> "));
    assert_null(strstr(r->err, "not reused: git_rev")); /* only what differs */
    csv_load(&c, out);
    assert_int_equal(c.rows, 4);
    double fresh_single = strtod(pb_csv_get(&c.data, 2, (size_t)pb_csv_find(&c.data, "samples_per_s")), NULL);
    assert_string_equal(pb_csv_get(&c.data, 2, (size_t)pb_csv_find(&c.data, "strategy")), "single");
    csv_free(&c);
    int runs;
    double sps, eff;
    table_line(r->out, "single", &runs, &sps, &eff);
    assert_int_equal(runs, 1);
    assert_true(fabs(sps - fresh_single) <= 1e-5 * fresh_single);
    assert_true(fabs(eff - 100.0) < 0.05); /* the reference is that same run */

    /* --resume-any keeps them, says so, and the table says it mixes */
    write_edited(first, out, 1.0, -1, "host", "elsewhere");
    run_bench(r, (char *const[]){"sweep", "--strategies", "single,dp", "--gpus", "1,2", "--iters", "5", "--threads",
                                 "1", "--backend", "cpu", "--resume-any", "--out", out, NULL});
    if (r->exit_code != 0) fail_msg("exit %d: %s", r->exit_code, r->err);
    assert_non_null(strstr(r->err, "resume: 2 rows from host elsewhere ("));
    assert_non_null(strstr(r->err, "kept (--resume-any): host elsewhere -> "));
    assert_non_null(strstr(r->err, "2 of 2 runs already in"));
    assert_non_null(strstr(r->out, "2 rows from another host, build or environment included (--resume-any)"));
    free(r);
    remove_temp_dir(dir);
}

static void test_weak_rows_keep_preset_and_plot(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[512], plots[512], dat[700];
    snprintf(out, sizeof out, "%s/s.csv", dir);
    snprintf(plots, sizeof plots, "%s/plots", dir);
    snprintf(dat, sizeof dat, "%s/mlp-xs-cpu-efficiency.dat", plots);
    bench_result *r = calloc(1, sizeof *r);
    run_bench(r, (char *const[]){"sweep", "--strategies", "single,dp,mp", "--gpus", "1,2", "--iters", "5",
                                 "--threads", "1", "--backend", "cpu", "--quiet", "--out", out, NULL});
    if (r->exit_code != 0) fail_msg("exit %d: %s", r->exit_code, r->err);
    int runs;
    double sps, mp_eff;
    table_line(r->out, "mp", &runs, &sps, &mp_eff);
    csv c;
    csv_load(&c, out);
    assert_int_equal(c.rows, 3);
    int wcol = pb_csv_find(&c.data, "workload");
    for (size_t row = 0; row < c.data.nrows; row++) /* batch 64 and 128: the preset all the same */
        assert_string_equal(pb_csv_get(&c.data, row, (size_t)wcol), "mlp-xs");
    csv_free(&c);

    /* there are no `custom` rows to plot: the message names what there is */
    run_bench(r, (char *const[]){"plot", out, "--workload", "custom", "--out", plots, NULL});
    assert_int_equal(r->exit_code, 2);
    assert_non_null(strstr(r->err, "has no ok rows of workload 'custom'"));
    assert_non_null(strstr(r->err, "the CSV also has mlp-xs"));

    /* the plot's weak series are the sweep's: mp x2 (batch 128, each stage
     * the whole batch) against single x1 at 64, as in the sweep's table */
    run_bench(r, (char *const[]){"plot", out, "--keep-data", "--out", plots, NULL});
    bool no_gnuplot = r->exit_code != 0 && strstr(r->err, "gnuplot") && !file_exists(dat);
    if (r->exit_code != 0 && !no_gnuplot) fail_msg("plot: exit %d: %s", r->exit_code, r->err);
    if (!no_gnuplot) {
        assert_null(strstr(r->err, "no 1-device run to compare"));
        char *text = read_file(dat);
        assert_non_null(text);
        /* labelled with its batch where the lines' batches differ */
        const char *mp = strstr(text, "\"mp\"");
        if (!mp) mp = strstr(text, "\"mp, ");
        if (!mp) fail_msg("no mp line in %s:\n%s", dat, text);
        double devices = 0, eff = 0;
        assert_int_equal(sscanf(strchr(mp, '\n'), " %lf %lf", &devices, &eff), 2);
        assert_true(devices == 2);
        if (fabs(eff - mp_eff) > 0.06) fail_msg("plot's mp efficiency %g%%, the sweep's %g%%", eff, mp_eff);
        free(text);
    }
    free(r);
    remove_temp_dir(dir);
}

static void test_cpu_threads_rule(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[512], plots[512];
    snprintf(out, sizeof out, "%s/s.csv", dir);
    snprintf(plots, sizeof plots, "%s/img", dir);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int t1 = (int)cores, t2 = cores / 2 > 0 ? (int)(cores / 2) : 1;
    bench_result r;
    /* Prescott's kernels, as the CI machines' OpenBLAS picks: the quiet runs'
     * warning reaches the table as a note */
    run_bench_env(&r, (char *const[]){"OPENBLAS_CORETYPE=Prescott", NULL},
                  (char *const[]){"sweep", "--strategies", "single,dp", "--gpus", "1,2", "--iters", "3", "--warmup",
                                  "1", "--backend", "cpu", "--out", out, NULL});
    if (r.exit_code != 0) fail_msg("exit %d: %s", r.exit_code, r.err);
    if (system("grep -qw avx /proc/cpuinfo") == 0) assert_non_null(strstr(r.out, "ran BLAS kernels below this CPU"));
    csv c;
    csv_load(&c, out);
    /* single x1 at all the cores, dp x2 at half each, and single x1 again at
     * half (its reference) where that is another count */
    assert_int_equal(c.rows, t1 == t2 ? 2 : 3);
    double ref = NAN, dp = NAN;
    for (size_t i = 0; i < (size_t)c.rows; i++) {
        int devices = atoi(csv_field(&c, i, "devices")), threads = atoi(csv_field(&c, i, "threads"));
        const char *strategy = csv_field(&c, i, "strategy");
        assert_int_equal(threads, devices == 1 && strcmp(strategy, "single") == 0 && i == 0 ? t1 : t2);
        if (strcmp(strategy, "single") == 0 && threads == t2) ref = atof(csv_field(&c, i, "samples_per_s"));
        if (strcmp(strategy, "dp") == 0) dp = atof(csv_field(&c, i, "samples_per_s"));
    }
    csv_free(&c);
    if (t1 != t2) assert_non_null(strstr(r.err, "single x1 (reference at"));
    /* the table: the rule, and dp's efficiency against single x1 at its threads */
    assert_non_null(strstr(r.out, "threads per device: cores/devices"));
    assert_non_null(strstr(r.out, "at the same threads per device"));
    char want[64];
    snprintf(want, sizeof want, "%.1f%%", 100.0 * dp / (2 * ref));
    const char *dp_line = strstr(r.out, "\ndp ");
    assert_non_null(dp_line);
    dp_line++;
    if (!strstr(dp_line, want) || strstr(dp_line, want) > strchr(dp_line, '\n'))
        fail_msg("want %s in: %s", want, r.out);

    /* with --threads the table says it is the same for every run */
    run_bench(&r, (char *const[]){"sweep", "--strategies", "single,dp", "--gpus", "1,2", "--iters", "3", "--warmup",
                                  "1", "--backend", "cpu", "--threads", "1", "--out", out, NULL});
    if (r.exit_code != 0) fail_msg("exit %d: %s", r.exit_code, r.err);
    assert_non_null(strstr(r.out, "threads per device: 1 for every run (--threads)"));

    /* the plots: where gnuplot is, the efficiency plot names the threads */
    if (system("command -v gnuplot >/dev/null 2>&1") == 0) {
        run_bench(&r, (char *const[]){"plot", out, "--out", plots, NULL});
        if (r.exit_code != 0) fail_msg("plot exit %d: %s", r.exit_code, r.err);
        char svg[1024];
        snprintf(svg, sizeof svg, "%s/mlp-xs-cpu-efficiency.svg", plots);
        char *text = read_file(svg);
        if (!text) fail_msg("no %s: %s", svg, r.out);
        if (t1 != t2) assert_non_null(strstr(text, "threads/device:"));
        free(text);
    }
    remove_temp_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_flags_exit_2),
        cmocka_unit_test(test_plain_progress_and_table),
        cmocka_unit_test(test_resume_after_kill),
        cmocka_unit_test(test_fresh_run_against_baseline),
        cmocka_unit_test(test_resume_keys_on_every_flag),
        cmocka_unit_test(test_two_sweeps_into_one_file),
        cmocka_unit_test(test_failed_child_own_error_line),
        cmocka_unit_test(test_quiet_prints_errors_only),
        cmocka_unit_test(test_resume_same_environment_only),
        cmocka_unit_test(test_weak_rows_keep_preset_and_plot),
        cmocka_unit_test(test_cpu_threads_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
