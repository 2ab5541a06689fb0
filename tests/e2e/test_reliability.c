/* Reliability through ./bench on the cpu backend: SIGINT stops a run at a
 * step boundary and it writes nothing (exit 130, an existing CSV unchanged),
 * for one process and for the ddp launcher (bench re-executed under mpirun,
 * 2 ranks: no orphan processes left); the test-only fault switch PB_FAULT
 * makes rank 1 produce NaN (exit 1, a failed row at most), die or hang
 * (the job ends within --timeout + 10 s, naming a rank, no orphans; a hang,
 * with 2 and with 3 ranks, is named by the ranks that waited for it: rank
 * 1, its host, pid, phase and step); ranks started with different
 * configurations stop before the first step (exit 2, no row); a malformed
 * PB_FAULT is a usage error. Each run's time is bounded. The progress
 * slots behind those messages (kernels/progress.c) are also tested alone
 * (tests/unit/test_reliability_lib.c). The processes bench starts die
 * with it (a SIGKILLed launcher, sweep or plot leaves nothing running, and
 * no row); a signal to the launcher's whole process group ends the job as
 * a Ctrl-C does; the launcher bounds mpirun by the backstop (stand-ins for
 * mpirun on PATH). docs/reliability.md. */
#include "tests/common/test_csv.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <time.h>

#include "kernels/progress.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct job {
    char *dir;
    char csv_path[256];
    char err_path[256];
    pid_t pid;
    int exit_code; /* -signal when killed */
    bool ignore_sigchld; /* started with SIGCHLD ignored, as some job runners do */
    bool own_group; /* started in a process group of its own, as a terminal or `timeout` does */
    double seconds;
    char *err;
} job;

static int setup(void **state)
{
    job *j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->dir = make_temp_dir();
    snprintf(j->csv_path, sizeof j->csv_path, "%s/r.csv", j->dir);
    snprintf(j->err_path, sizeof j->err_path, "%s/stderr", j->dir);
    *state = j;
    return 0;
}

static int processes_with(const char *s, bool kill_them);

static int teardown(void **state)
{
    job *j = *state;
    if (j->pid > 0) { /* a failed assertion left it running */
        kill(j->pid, SIGKILL);
        waitpid(j->pid, NULL, 0);
    }
    processes_with(j->dir, true); /* and what it left running (its own folder is in their command line) */
    remove_temp_dir(j->dir);
    free(j->err);
    free(j);
    return 0;
}

/* Starts argv (argv[0] a path, or a name on PATH), stderr to a file,
 * env_add ("NAME=value", NULL-terminated, may be NULL) added. */
static void start_argv(job *j, char *const env_add[], char *const argv[])
{
    unlink(j->err_path); /* wait_for must not read the last job's stderr */
    j->seconds = now_s();
    j->pid = fork();
    assert_true(j->pid >= 0);
    if (j->own_group) setpgid(j->pid, j->pid); /* before any signal to the group */
    if (j->pid == 0) {
        int fd = open(j->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_RDWR);
        if (fd < 0 || null < 0) _exit(127);
        dup2(null, 0);
        dup2(null, 1);
        dup2(fd, 2);
        if (j->ignore_sigchld) signal(SIGCHLD, SIG_IGN); /* kept across exec */
        if (j->own_group) setpgid(0, 0);
        for (int i = 0; env_add && env_add[i]; i++) putenv(env_add[i]);
        execvp(argv[0], argv);
        _exit(127);
    }
}

/* Starts bench with args (without argv[0]), as start_argv. */
static void start(job *j, char *const env_add[], char *const args[])
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)bench_path();
    for (int i = 0; args[i] && argc < 63; i++) argv[argc++] = args[i];
    argv[argc] = NULL;
    start_argv(j, env_add, argv);
}

/* Waits for the job (killing it after limit_s, which fails the test). */
static void finish(job *j, double limit_s)
{
    int status = 0;
    for (;;) {
        pid_t got = waitpid(j->pid, &status, WNOHANG);
        if (got == j->pid) break;
        if (now_s() - j->seconds > limit_s) {
            kill(j->pid, SIGKILL);
            waitpid(j->pid, &status, 0);
            j->pid = 0;
            fail_msg("bench did not end within %g s", limit_s);
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    j->pid = 0;
    j->seconds = now_s() - j->seconds;
    j->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    free(j->err);
    j->err = read_file(j->err_path);
    if (!j->err) j->err = strdup("");
}

/* Waits until the job's stderr holds text (the run is stepping). */
static void wait_for(job *j, const char *text, double limit_s)
{
    double t0 = now_s();
    for (;;) {
        char *e = read_file(j->err_path);
        bool found = e && strstr(e, text);
        free(e);
        if (found) return;
        if (now_s() - t0 > limit_s) fail_msg("'%s' did not appear on stderr within %g s", text, limit_s);
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
}

/* The next process in /proc other than this one, with its command line
 * (arguments joined by spaces) in buf; 0 at the end. */
static long next_process(DIR *d, char *buf, size_t cap)
{
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end = NULL;
        long pid = strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end || pid == getpid()) continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        size_t len = fread(buf, 1, cap - 1, f);
        fclose(f);
        for (size_t i = 0; i < len; i++)
            if (!buf[i]) buf[i] = ' ';
        buf[len] = '\0';
        return pid;
    }
    return 0;
}

/* Processes other than this one whose command line holds s (SIGKILLed
 * with kill_them). */
static int processes_with(const char *s, bool kill_them)
{
    int n = 0;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    char buf[8192];
    for (long pid; (pid = next_process(d, buf, sizeof buf));) {
        if (!strstr(buf, s)) continue;
        n++;
        if (kill_them) kill((pid_t)pid, SIGKILL);
    }
    closedir(d);
    return n;
}

/* No process of the run (its unique --out path) is left, within 3 s. */
static void expect_no_orphans(const job *j)
{
    double t0 = now_s();
    while (processes_with(j->csv_path, false) > 0) {
        if (now_s() - t0 > 3.0) fail_msg("%d processes of the run are left", processes_with(j->csv_path, false));
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
}

static void expect_exit(const job *j, int code)
{
    if (j->exit_code != code) fail_msg("exited %d, expected %d; stderr:\n%s", j->exit_code, code, j->err);
}

static void expect_err(const job *j, const char *text)
{
    if (!strstr(j->err, text)) fail_msg("stderr lacks '%s':\n%s", text, j->err);
}

/* Every row (if any) has status failed. */
static void expect_no_ok_row(const job *j)
{
    if (!file_exists(j->csv_path)) return;
    csv c;
    csv_load(&c, j->csv_path);
    int col = pb_csv_find(&c.data, "status");
    assert_true(col >= 0);
    for (size_t r = 0; r < c.data.nrows; r++)
        if (strcmp(pb_csv_get(&c.data, r, (size_t)col), "failed") != 0)
            fail_msg("row %zu has status %s, expected failed", r, pb_csv_get(&c.data, r, (size_t)col));
    csv_free(&c);
}

/* Once text appears on the job's stderr (within wait_s), SIGINT: the run
 * exits 130 saying it wrote no row. Returns the seconds it took to stop. */
static double interrupt_at(job *j, const char *text, double wait_s)
{
    wait_for(j, text, wait_s);
    double t0 = now_s();
    kill(j->pid, SIGINT);
    finish(j, 30);
    expect_exit(j, 130);
    expect_err(j, "interrupted by SIGINT");
    expect_err(j, "no row written");
    return now_s() - t0;
}

/* A finished single run's row in the job's CSV (a short mlp-xs run). */
static void append_one_row(job *j)
{
    char *args[] = {"--strategy", "single", "--backend", "cpu", "--workload", "mlp-xs", "--iters", "2",
                    "--warmup", "0", "--threads", "1", "--quiet", "--out", j->csv_path, NULL};
    start(j, NULL, args);
    finish(j, 30);
    expect_exit(j, 0);
}

static void test_sigint_single(void **state)
{
    job *j = *state;
    /* a finished run's row first: it must stay exactly as it is */
    append_one_row(j);
    char *before = read_file(j->csv_path);
    assert_non_null(before);

    char *args[] = {"--strategy", "single", "--backend", "cpu", "--workload", "mlp-s", "--iters", "100000",
                    "--warmup", "0", "--threads", "1", "--out", j->csv_path, NULL};
    start(j, NULL, args);
    double took = interrupt_at(j, "step 10/", 20);
    if (took > 5.0) fail_msg("took %.1f s to stop after SIGINT", took);
    char *after = read_file(j->csv_path);
    assert_non_null(after);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* A signal during --verify (after the last step) stops it within a step of
 * single and writes no row: the run was interrupted, whatever came before. */
static void test_sigint_during_verify(void **state)
{
    job *j = *state;
    char *args[] = {"--strategy", "dp", "--gpus", "2", "--backend", "cpu", "--workload", "mlp-s", "--iters", "40",
                    "--warmup", "0", "--threads", "1", "--verify", "--out", j->csv_path, NULL};
    start(j, NULL, args);
    double took = interrupt_at(j, "--verify: training single", 60);
    expect_err(j, "interrupted by SIGINT after the last step (during --verify)");
    if (took > 2.0) fail_msg("took %.1f s to stop after SIGINT (40 steps of single take ~3 s)", took);
    assert_false(file_exists(j->csv_path));
}

/* A signal during --calibrate stops it after the set of GEMMs under way and
 * writes no row: a set of this shape takes ~0.8 s on one core, the whole
 * calibration six of them (a warm-up and five timed), which the run used to
 * finish before it looked at the signal. */
static void test_sigint_during_calibrate(void **state)
{
    job *j = *state;
    char *args[] = {"--strategy", "single", "--backend", "cpu", "--in", "2048", "--hidden", "2048", "--layers", "8",
                    "--classes", "10", "--batch", "512", "--iters", "5", "--warmup", "0", "--threads", "1",
                    "--calibrate", "--out", j->csv_path, NULL};
    start(j, NULL, args);
    double took = interrupt_at(j, "calibrating:", 30);
    expect_err(j, "interrupted by SIGINT before step 0");
    if (took > 3.0) fail_msg("took %.1f s to stop after SIGINT during calibration", took);
    assert_false(file_exists(j->csv_path));
}

static void test_usage_error_bad_fault(void **state)
{
    job *j = *state;
    char *env[] = {"PB_FAULT=rank=1,kind=explode", NULL};
    char *args[] = {"--strategy", "single", "--backend", "cpu", "--workload", "mlp-xs", "--iters", "2",
                    "--quiet", "--out", j->csv_path, NULL};
    start(j, env, args);
    finish(j, 30);
    expect_exit(j, 2);
    expect_err(j, "PB_FAULT");
    assert_false(file_exists(j->csv_path));
}

/* kind=slow's ms= sleeps that long in every step, a fraction of a ms
 * included (the A/A script's known 10% slowdown, scripts/aa-test.sh), and
 * refuses a sleep that is not a positive number of ms. */
static void test_slow_fault_ms(void **state)
{
    job *j = *state;
    char *env[] = {"PB_FAULT=phase=fwd,kind=slow,ms=40.5", NULL};
    char *args[] = {"--strategy", "single", "--backend", "cpu", "--workload", "mlp-xs", "--iters", "3", "--warmup",
                    "0", "--threads", "1", "--quiet", "--out", j->csv_path, NULL};
    start(j, env, args);
    finish(j, 30);
    expect_exit(j, 0);
    expect_err(j, "slow: 40.5 ms more before phase fwd");
    csv c;
    csv_load(&c, j->csv_path);
    if (!(csv_num(&c, "step_ms_min") >= 40.5))
        fail_msg("every step slept 40.5 ms, but step_ms_min is %s", csv_get(&c, "step_ms_min"));
    csv_free(&c);
    char *bad[] = {"PB_FAULT=kind=slow,ms=0", NULL};
    remove(j->csv_path);
    start(j, bad, args);
    finish(j, 30);
    expect_exit(j, 2);
    expect_err(j, "PB_FAULT: ms=0; allowed: 0 < ms <= 60000");
    assert_false(file_exists(j->csv_path));
}

/* The fault hook sits in the phase timer, so it reaches every strategy:
 * NaN in a single run fails it like a real overflow; a dp device dying
 * ends the process. */
static void test_fault_in_one_process_strategies(void **state)
{
    job *j = *state;
    char *nan_env[] = {"PB_FAULT=step=2,phase=fwd,kind=nan", NULL};
    char *single[] = {"--strategy", "single", "--backend", "cpu", "--workload", "mlp-xs", "--iters", "5",
                      "--warmup", "0", "--threads", "1", "--quiet", "--out", j->csv_path, NULL};
    start(j, nan_env, single);
    finish(j, 30);
    expect_exit(j, 1);
    expect_err(j, "NaN at step 2");
    expect_no_ok_row(j);

    char *die_env[] = {"PB_FAULT=step=1,phase=bwd,kind=die", NULL};
    char *dp[] = {"--strategy", "dp", "--gpus", "2", "--backend", "cpu", "--workload", "mlp-xs", "--iters", "5",
                  "--warmup", "0", "--threads", "1", "--quiet", "--out", j->csv_path, NULL};
    start(j, die_env, dp);
    finish(j, 30);
    expect_exit(j, -SIGKILL);
    expect_err(j, "PB_FAULT (test-only): rank 0");
}

/* A device thread of a one-process strategy that hangs (a hung GPU) fails
 * the run within --timeout instead of stalling it: mp's neighbour stage
 * waits no longer than that for its activations, dp's device 0 no longer for
 * the other devices; exit 1, a failed row naming what was waited for, and
 * the stuck thread goes with the process. The runs use --timeout 2: the
 * whole run (start, the steps before the hang, the wait) must end before
 * 1.6 x 2 s, which a second deadline after the first (2 x 2 s) cannot. */
static void expect_stuck_device_fails(job *j, const char *fault, char *const args[], const char *why)
{
    const double timeout_s = 2;
    char env_fault[128];
    snprintf(env_fault, sizeof env_fault, "PB_FAULT=%s", fault);
    char *env[] = {env_fault, NULL};
    remove(j->csv_path);
    start(j, env, args);
    finish(j, timeout_s + 10);
    expect_exit(j, 1);
    if (!(j->seconds < 1.6 * timeout_s))
        fail_msg("%s: the run took %.1f s with --timeout %g (one deadline per wait: under %.1f s)", fault, j->seconds,
                 timeout_s, 1.6 * timeout_s);
    expect_err(j, "PB_FAULT (test-only): rank 0 on ");
    expect_err(j, why);
    if (has_source_location(j->err)) fail_msg("a message for people with a source location:\n%s", j->err);
    csv c;
    csv_load(&c, j->csv_path);
    assert_int_equal((int)c.data.nrows, 1);
    assert_string_equal(pb_csv_get(&c.data, 0, (size_t)pb_csv_find(&c.data, "status")), "failed");
    const char *err = pb_csv_get(&c.data, 0, (size_t)pb_csv_find(&c.data, "error"));
    if (!strstr(err, why)) fail_msg("the failed row's error is '%s'", err);
    csv_free(&c);
}

static void test_stuck_device_one_process(void **state)
{
    job *j = *state;
    char *mp[] = {"--strategy", "mp", "--gpus", "2", "--microbatches", "2", "--backend", "cpu", "--workload",
                  "mlp-xs", "--iters", "5", "--warmup", "0", "--threads", "1", "--timeout", "2", "--quiet", "--out",
                  j->csv_path, NULL};
    expect_stuck_device_fails(j, "device=0,step=2,phase=fwd,kind=hang", mp,
                              "mp step 2, stage 1: waited 2 s (--timeout) for stage 0's forward activations of "
                              "microbatch 1 of 2");
    expect_stuck_device_fails(j, "device=1,step=3,phase=bwd,kind=hang", mp,
                              "mp step 3, stage 0: waited 2 s (--timeout) for stage 1's input gradients of "
                              "microbatch 2 of 2");
    /* 3 stages: the stage a wait names is the hung one at the end of the
     * chain (stage 2 may give up first, waiting for 1, which waits for 0);
     * stage 0 hung in its backward is past every wait of the others, and
     * the step's own wait for it has the deadline */
    char *mp3[] = {"--strategy", "mp", "--gpus", "3", "--backend", "cpu", "--workload", "mlp-xs", "--iters", "5",
                   "--warmup", "0", "--threads", "1", "--timeout", "2", "--quiet", "--out", j->csv_path, NULL};
    expect_stuck_device_fails(j, "device=0,step=2,phase=fwd,kind=hang", mp3, "stage 0 made no progress");
    expect_stuck_device_fails(j, "device=0,step=2,phase=bwd,kind=hang", mp3,
                              "mp step 2: stage 0 did not finish its step within 2 s of the other stages (--timeout)");
    char *dp[] = {"--strategy", "dp", "--gpus", "2", "--backend", "cpu", "--workload", "mlp-xs", "--iters", "5",
                  "--warmup", "0", "--threads", "1", "--timeout", "2", "--quiet", "--out", j->csv_path, NULL};
    expect_stuck_device_fails(j, "device=1,step=2,phase=bwd,kind=hang", dp,
                              "dp step 2: device 1 did not finish its backward within 2 s of device 0 (--timeout)");
}

/* The pid a fake tool wrote to file NAME in the job's folder, once it has
 * (within limit_s). */
static pid_t pid_written(const job *j, const char *name, double limit_s)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", j->dir, name);
    for (double t0 = now_s(); now_s() - t0 < limit_s;) {
        char *text = read_file(path);
        long pid = text && strchr(text, '\n') ? strtol(text, NULL, 10) : 0;
        free(text);
        if (pid > 0) return (pid_t)pid;
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    fail_msg("%s was not written within %g s", name, limit_s);
    return 0;
}

/* pid has ended within limit_s (gone, or a zombie its new parent has not
 * reaped yet). */
static void expect_ended(pid_t pid, const char *what, double limit_s)
{
    for (double t0 = now_s();;) {
        char path[64], text[512] = "";
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f) return;
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = '\0';
        const char *state = strrchr(text, ')');
        if (!state || state[2] == 'Z') return;
        if (now_s() - t0 > limit_s) fail_msg("%s (pid %d) still runs %g s after bench was killed", what, (int)pid, limit_s);
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
}

/* SIGKILL to the job's bench (a launcher, a sweep) leaves no process of it
 * behind (within 3 s) and no row: the CSV is absent, or empty (a sweep
 * creates --out to hold its lock before its first run). */
static void expect_sigkill_leaves_nothing(job *j)
{
    kill(j->pid, SIGKILL);
    finish(j, 5);
    expect_exit(j, -SIGKILL);
    expect_no_orphans(j);
    struct stat sb;
    if (stat(j->csv_path, &sb) == 0 && sb.st_size != 0)
        fail_msg("%s has %lld bytes after bench was killed before any run ended", j->csv_path, (long long)sb.st_size);
}

/* A sweep killed with SIGKILL takes its current run with it: no run goes on
 * alone, to append a row after the user ended the sweep. */
static void test_killed_sweep_leaves_no_run(void **state)
{
    job *j = *state;
    char *args[] = {"sweep", "--strategies", "single", "--gpus", "1", "--workload", "mlp-s", "--backend", "cpu",
                    "--iters", "100000", "--warmup", "0", "--threads", "1", "--quiet", "--out", j->csv_path, NULL};
    start(j, NULL, args);
    /* the sweep and its run both carry --out in their command lines */
    for (double t0 = now_s(); processes_with(j->csv_path, false) < 2;) {
        if (now_s() - t0 > 10) fail_msg("the sweep did not start its run within 10 s");
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    expect_sigkill_leaves_nothing(j);
}

/* bench plot killed with SIGKILL takes gnuplot with it (a gnuplot stand-in
 * on PATH that only waits). */
static void test_killed_plot_leaves_no_gnuplot(void **state)
{
    job *j = *state;
    append_one_row(j);
    char path_env[4200], body[600], outdir[300];
    snprintf(body, sizeof body, "echo $$ > '%s/gnuplot.pid'\nexec sleep 30", j->dir);
    fake_tool(j->dir, "gnuplot", body, path_env, sizeof path_env);
    snprintf(outdir, sizeof outdir, "%s/plots", j->dir);
    char *env[] = {path_env, NULL};
    char *args[] = {"plot", j->csv_path, "--out", outdir, NULL};
    start(j, env, args);
    pid_t gnuplot = pid_written(j, "gnuplot.pid", 10);
    kill(j->pid, SIGKILL);
    finish(j, 5);
    expect_ended(gnuplot, "gnuplot", 2);
}

#if PB_EXPECT_MPI
/* bench --strategy ddp --gpus N (re-executed under mpirun) with extra args */
static void start_ddp_n(job *j, char *const env_add[], const char *workload, const char *iters, const char *gpus,
                        char *const extra[])
{
    char *args[64];
    int n = 0;
    char *base[] = {"--strategy", "ddp", "--backend", "cpu", "--workload", (char *)workload, "--iters",
                    (char *)iters, "--warmup", "0", "--threads", "1", "--gpus", (char *)gpus, "--out", j->csv_path};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) args[n++] = base[i];
    for (int i = 0; extra && extra[i] && n < 63; i++) args[n++] = extra[i];
    args[n] = NULL;
    start(j, env_add, args);
}

static void start_ddp(job *j, char *const env_add[], const char *workload, const char *iters, char *const extra[])
{
    start_ddp_n(j, env_add, workload, iters, "2", extra);
}

static void test_sigint_ddp_launcher(void **state)
{
    job *j = *state;
    start_ddp(j, NULL, "mlp-s", "100000", NULL);
    wait_for(j, "step 10/", 30);
    double t0 = now_s();
    kill(j->pid, SIGINT); /* the launcher alone, as a scheduler would */
    finish(j, 30);
    if (now_s() - t0 > 8.0) fail_msg("took %.1f s to stop after SIGINT", now_s() - t0);
    expect_exit(j, 130);
    expect_err(j, "interrupted by");
    assert_false(file_exists(j->csv_path));
    expect_no_orphans(j);
}

/* The rank of this run (its --out path in the command line) whose MPI rank
 * is `rank`, from its environment; 0 when none is found yet. */
static pid_t rank_pid(const job *j, int rank)
{
    char want[48];
    int wlen = snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank) + 1; /* with its NUL */
    pid_t found = 0;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    char buf[65536];
    for (long pid; !found && (pid = next_process(d, buf, sizeof buf));) {
        if (!strstr(buf, j->csv_path) || strstr(buf, "mpirun")) continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/environ", pid);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        for (size_t i = 0; i + (size_t)wlen <= len; i++)
            if ((i == 0 || !buf[i - 1]) && memcmp(buf + i, want, (size_t)wlen) == 0) found = (pid_t)pid;
    }
    closedir(d);
    return found;
}

/* SIGINT reaching one rank during its calibration (mpirun relays a signal
 * to the ranks one by one: another may finish calibrating first and go on
 * into the comm's collective set-up): the ranks must still stop together
 * at the first boundary, exit 130, no row. The interrupted rank used to
 * skip the set-up and wait at the boundary alone, a mismatched collective
 * that hung until mpirun's backstop. */
static void test_sigint_one_rank_during_calibrate(void **state)
{
    job *j = *state;
    char *extra[] = {"--in", "1024", "--hidden", "1024", "--layers", "8", "--classes", "10", "--batch", "512",
                     "--calibrate", "--timeout", "4", NULL};
    start_ddp(j, NULL, "mlp-xs", "5", extra);
    wait_for(j, "calibrating:", 30);
    pid_t r0 = 0;
    for (double t0 = now_s(); !r0 && now_s() - t0 < 10;) r0 = rank_pid(j, 0);
    if (!r0) fail_msg("rank 0's process not found");
    kill(r0, SIGINT); /* rank 0 alone: the writer of the row */
    finish(j, 30);
    expect_exit(j, 130);
    expect_err(j, "interrupted by SIGINT before step 0");
    assert_false(file_exists(j->csv_path));
    expect_no_orphans(j);
}

/* A ddp run that fails cleanly and says why: exit 1, the reason once (from
 * rank 0, in the failed row too), the word "failed" as the row's status
 * says, and nothing else on stderr: no MPI_Abort or mpirun banner, no
 * Open MPI "ORTE_ERROR_LOG: Out of resource" after it. */
static void expect_explained_failure(const job *j, const char *why)
{
    expect_exit(j, 1);
    expect_err(j, why);
    if (count_substr(j->err, why) != 1) fail_msg("'%s' said more than once:\n%s", why, j->err);
    expect_err(j, "the run failed");
    if (strstr(j->err, "invalid")) fail_msg("'invalid' for a failed run:\n%s", j->err);
    for (const char *l = j->err; *l; l += strcspn(l, "\n") + (l[strcspn(l, "\n")] == '\n'))
        if (strncmp(l, "bench", 5) != 0) fail_msg("a line that is not bench's:\n%s", j->err);
    if (!file_exists(j->csv_path)) fail_msg("no failed row; stderr:\n%s", j->err);
    csv c;
    csv_load(&c, j->csv_path);
    assert_int_equal((int)c.data.nrows, 1);
    assert_string_equal(pb_csv_get(&c.data, 0, (size_t)pb_csv_find(&c.data, "status")), "failed");
    const char *row_why = pb_csv_get(&c.data, 0, (size_t)pb_csv_find(&c.data, "error"));
    if (!strstr(row_why, why)) fail_msg("the failed row's error is '%s'", row_why);
    csv_free(&c);
    expect_no_orphans(j);
}

/* NaN injected on rank 1 (its loss, which the all-reduced loss carries to
 * every rank): every rank stops at the next step boundary, and rank 0
 * tells it */
static void test_nan_rank1(void **state)
{
    job *j = *state;
    char *env[] = {"PB_FAULT=rank=1,step=2,phase=fwd,kind=nan", NULL};
    char *extra[] = {"--quiet", NULL};
    start_ddp(j, env, "mlp-xs", "10", extra);
    finish(j, 30);
    expect_explained_failure(j, "loss is NaN at step 2;");
}

/* A learning rate that diverges: every rank's loss turns NaN at the same
 * step (the gradients are all-reduced) */
static void test_nan_every_rank(void **state)
{
    job *j = *state;
    char *extra[] = {"--quiet", "--lr", "10", NULL};
    start_ddp(j, NULL, "mlp-xs", "50", extra);
    finish(j, 30);
    expect_explained_failure(j, "loss is NaN at step ");
}

static void test_fault_ends_job(job *j, const char *kind, const char *gpus)
{
    char fault[128];
    snprintf(fault, sizeof fault, "PB_FAULT=rank=1,step=3,phase=bwd,kind=%s", kind);
    char *env[] = {fault, NULL};
    char *extra[] = {"--quiet", "--timeout", "3", NULL};
    start_ddp_n(j, env, "mlp-xs", "10", gpus, extra);
    finish(j, 3 + 10);
    if (j->exit_code == 0) fail_msg("kind=%s: exited 0; stderr:\n%s", kind, j->err);
    expect_err(j, "rank 1");
    expect_no_ok_row(j);
    expect_no_orphans(j);
}

static void test_die_rank1(void **state)
{
    job *j = *state;
    test_fault_ends_job(j, "die", "2");
}

/* The launcher's parent reports the job's failure even when it was started
 * with SIGCHLD ignored (whose children are reaped unseen unless it resets
 * it): a dying rank must not read as exit 0. */
static void test_die_rank1_sigchld_ignored(void **state)
{
    job *j = *state;
    j->ignore_sigchld = true;
    test_fault_ends_job(j, "die", "2");
}

/* The ranks whose deadline passed name the rank that holds them up, from
 * its progress slot: its rank, host and pid, its phase and step, and how
 * long it has not moved; and never a rank that waits with them. */
static void expect_hang_named(const job *j, int ranks)
{
    char host[256] = "unknown", want[512];
    gethostname(host, sizeof host - 1);
    expect_err(j, "ddp step 3: rank ");
    expect_err(j, "did not complete within 3 s (--timeout): ");
    snprintf(want, sizeof want, "rank 1 on %s (pid ", host);
    expect_err(j, want);
    expect_err(j, ") is stuck in phase bwd of step 3 (no progress for ");
    for (int r = 0; r < ranks; r++) {
        if (r == 1) continue;
        snprintf(want, sizeof want, "rank %d on %s (pid ", r, host);
        if (strstr(j->err, want)) fail_msg("rank %d, which waited, is named as behind:\n%s", r, j->err);
    }
    if (strstr(j->err, "another rank stopped or is stuck"))
        fail_msg("a generic message where rank 1 could be named:\n%s", j->err);
}

static void test_hang_rank1(void **state)
{
    job *j = *state;
    test_fault_ends_job(j, "hang", "2");
    expect_hang_named(j, 2);
}

static void test_hang_rank1_of_3(void **state)
{
    job *j = *state;
    test_fault_ends_job(j, "hang", "3");
    expect_hang_named(j, 3);
}

/* A rank stuck outside any collective (opt, after the last bucket) is
 * caught by the agreement before the next step, which names it too. */
static void test_hang_in_opt_named_at_boundary(void **state)
{
    job *j = *state;
    char *env[] = {"PB_FAULT=rank=1,step=3,phase=opt,kind=hang", NULL};
    char *extra[] = {"--quiet", "--timeout", "3", NULL};
    char host[256] = "unknown", want[512];
    gethostname(host, sizeof host - 1);
    start_ddp_n(j, env, "mlp-xs", "10", "2", extra);
    finish(j, 3 + 10);
    if (j->exit_code == 0) fail_msg("exited 0; stderr:\n%s", j->err);
    expect_err(j, "rank 0 of 2 on ");
    expect_err(j, "the ranks did not all reach the boundary before step 4 within 3 s (--timeout): ");
    snprintf(want, sizeof want, "rank 1 on %s (pid ", host);
    expect_err(j, want);
    expect_err(j, ") is stuck in phase opt of step 3 (no progress for ");
    if (strstr(j->err, "another rank stopped or is stuck"))
        fail_msg("a generic message where rank 1 could be named:\n%s", j->err);
    expect_no_ok_row(j);
    expect_no_orphans(j);
}

/* mpirun -np 1 bench ... --lr 0.01 : -np 1 bench ... --lr 0.1 --seed 2:
 * rank 0 names the first flag that differs, with both values, and the
 * others that differ too */
static void test_config_mismatch(void **state)
{
    job *j = *state;
    const char *b = bench_path();
    char *argv[64];
    int n = 0;
    char *pre[] = {"mpirun", "--allow-run-as-root", "--oversubscribe"};
    for (size_t i = 0; i < 3; i++) argv[n++] = pre[i];
    for (int r = 0; r < 2; r++) {
        char *one[] = {"-np", "1", (char *)b, "--strategy", "ddp", "--backend", "cpu", "--workload", "mlp-xs",
                       "--iters", "2", "--threads", "1", "--gpus", "2", "--quiet", "--out", j->csv_path,
                       "--seed", r ? "2" : "1", "--lr", r ? "0.1" : "0.01"};
        if (r) argv[n++] = ":";
        for (size_t i = 0; i < sizeof one / sizeof one[0]; i++) argv[n++] = one[i];
    }
    argv[n] = NULL;
    j->seconds = now_s();
    j->pid = fork();
    assert_true(j->pid >= 0);
    if (j->pid == 0) {
        int fd = open(j->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    finish(j, 30);
    expect_exit(j, 2);
    expect_err(j, "the 2 ranks were started with different configurations: rank 1's --lr 0.1 differs from rank 0's "
                  "0.01 (also differing: --seed); every rank needs the same flags");
    /* said once, by rank 0 */
    if (count_substr(j->err, "different configurations") != 1) fail_msg("said more than once:\n%s", j->err);
    expect_err(j, "bench[rank 0 on ");
    assert_false(file_exists(j->csv_path));
}

/* A signal to the whole process group (a terminal's Ctrl-C, `timeout`, a
 * scheduler: `kill -INT -- -PGID`) ends the job as a Ctrl-C does: rank 0
 * stops at a step boundary and says so, no row, every rank gone, 130/143
 * (mpirun, in a group of its own, gets one signal, from the launcher). */
static void test_group_signal_ddp(void **state)
{
    job *j = *state;
    static const int sigs[] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        j->own_group = true;
        start_ddp(j, NULL, "mlp-xs", "100000", NULL);
        wait_for(j, "step 10/", 30);
        double t0 = now_s();
        kill(-j->pid, sigs[i]);
        finish(j, 30);
        if (now_s() - t0 > 8.0) fail_msg("took %.1f s to stop after the group's signal", now_s() - t0);
        expect_exit(j, 128 + sigs[i]);
        expect_err(j, "interrupted by");
        expect_err(j, "no row written");
        assert_false(file_exists(j->csv_path));
        expect_no_orphans(j);
    }
}

/* The launcher killed with SIGKILL takes mpirun and the ranks with it; no
 * row is written. */
static void test_killed_launcher_leaves_nothing(void **state)
{
    job *j = *state;
    start_ddp(j, NULL, "mlp-xs", "100000", NULL);
    wait_for(j, "step 10/", 30);
    expect_sigkill_leaves_nothing(j);
}

/* Rank 0 writes no row for a job whose bench launcher is gone: its report
 * file (PB_LAUNCH_REPORT, set by the launcher for its ranks) is no longer
 * locked by anyone. The ranks finish; nothing is appended; exit 1. */
static void test_rank_writes_no_row_without_its_launcher(void **state)
{
    job *j = *state;
    char report[300], report_env[330];
    snprintf(report, sizeof report, "%s/.parbench-launch-test", j->dir);
    FILE *f = fopen(report, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(report_env, sizeof report_env, "PB_LAUNCH_REPORT=%s", report);
    char *env[] = {report_env, NULL};
    char *argv[] = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", (char *)bench_path(),
                    "--strategy", "ddp", "--backend", "cpu", "--workload", "mlp-xs", "--iters", "3", "--threads",
                    "1", "--gpus", "2", "--quiet", "--out", j->csv_path, NULL};
    start_argv(j, env, argv);
    finish(j, 30);
    if (j->exit_code == 0) fail_msg("exited 0; stderr:\n%s", j->err);
    expect_err(j, "the bench launcher that started this job has ended (killed?); no row written");
    assert_false(file_exists(j->csv_path));
    assert_false(file_exists(report)); /* the killed launcher's leftover is removed */
}

/* ddp with a stand-in mpirun running body and PB_TEST_BACKSTOP_S=1
 * (test-only: the launcher's backstop shortened from its minutes): the
 * launcher ends it within limit_s, exit 1, naming the backstop. */
static void expect_backstop_ends(job *j, const char *body, double limit_s)
{
    char path_env[4200];
    fake_tool(j->dir, "mpirun", body, path_env, sizeof path_env);
    char *env[] = {path_env, "PB_TEST_BACKSTOP_S=1", NULL};
    char *extra[] = {"--quiet", NULL};
    start_ddp(j, env, "mlp-xs", "5", extra);
    finish(j, 10);
    expect_exit(j, 1);
    expect_err(j, "did not end within the launcher's backstop (1 s;");
    if (j->seconds > limit_s) fail_msg("took %.1f s with a backstop of 1 s", j->seconds);
}

/* The launcher enforces the job's backstop itself: a stopped mpirun (a
 * stand-in on PATH that stops itself) is sent SIGTERM and SIGCONT, and the
 * launcher exits 1 saying so. */
static void test_stopped_mpirun_hits_backstop(void **state)
{
    job *j = *state;
    expect_backstop_ends(j, "kill -STOP $$\nexit 0", 4.0);
    expect_err(j, "it is stopped");
    assert_false(file_exists(j->csv_path));
}

/* A hung mpirun that ignores SIGTERM gets SIGKILL, with what it started
 * (its process group), after the grace period. */
static void test_hung_mpirun_is_killed(void **state)
{
    job *j = *state;
    char body[600];
    snprintf(body, sizeof body, "trap '' TERM INT\nsleep 30 &\necho $! > '%s/sleep.pid'\nwait", j->dir);
    expect_backstop_ends(j, body, 5.0);
    expect_err(j, "ignored SIGTERM for 1 s: SIGKILL");
    expect_ended(pid_written(j, "sleep.pid", 1), "mpirun's child", 2);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigint_single, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigint_during_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigint_during_calibrate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_error_bad_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_fault_ms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_in_one_process_strategies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stuck_device_one_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_sweep_leaves_no_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_plot_leaves_no_gnuplot, setup, teardown),
#if PB_EXPECT_MPI
        cmocka_unit_test_setup_teardown(test_sigint_ddp_launcher, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigint_one_rank_during_calibrate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nan_rank1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nan_every_rank, setup, teardown),
        cmocka_unit_test_setup_teardown(test_die_rank1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_die_rank1_sigchld_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hang_rank1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hang_rank1_of_3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hang_in_opt_named_at_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_signal_ddp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_launcher_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rank_writes_no_row_without_its_launcher, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_mpirun_hits_backstop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hung_mpirun_is_killed, setup, teardown),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
