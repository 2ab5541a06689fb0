/* The files bench writes and reads, under what a user's machine does to
 * them (issue 12, items 1, 11, 12, 14, 15; docs/reliability.md):
 *
 * 1. a full disk: a file size limit (RLIMIT_FSIZE, inherited by bench: a
 *    write past it fails with EFBIG as one on a full disk fails with
 *    ENOSPC; no root, no mount) makes the row's append fail; the results
 *    CSV is left byte for byte as it was for single, ddp (2 ranks) and
 *    sweep rows, a CSV the run would have created does not exist, and
 *    --dump leaves no truncated .npy under its final name. (Two writers
 *    racing to create a CSV: tests/unit/test_files_lib.c.)
 * 2. a bad --dump (a file, a missing folder, a folder no file can be
 *    created in) is a usage error before any work: exit 2, nothing written.
 * 3. CRLF results files: appended to in CRLF, resumed by sweep, compared;
 *    a schema mismatch is named without a stray '\r' (in
 *    tests/unit/test_files_lib.c).
 * 4. FIFOs: --out (run, sweep) is refused with exit 2; compare refuses one
 *    without blocking.
 * 5. bench calibrate runs in a folder without results/ and writes nothing.
 * Every bench run is mlp-xs with 2 steps: about a second each. */
#include "tests/common/test_csv.h"
#include "tests/common/files_fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>

#include "harness/results.h"

#define RUN_FLAGS "--backend", "cpu", "--workload", "mlp-xs", "--iters", "2", "--warmup", "0", "--threads", "1", "--quiet"
/* not --quiet: the tests read the sweep's resume notice */
#define SWEEP_FLAGS "sweep", "--strategies", "single", "--gpus", "1", "--backend", "cpu", "--workload", "mlp-xs", \
                    "--iters", "2", "--warmup", "0", "--threads", "1"

static void expect_code(const files *f, int code)
{
    if (f->res.exit_code != code)
        fail_msg("bench exited %d, expected %d; stderr:\n%s", f->res.exit_code, code, f->res.err);
}

static void expect_err(const files *f, const char *phrase)
{
    if (!strstr(f->res.err, phrase)) fail_msg("stderr lacks '%s':\n%s", phrase, f->res.err);
}

/* Runs bench with every file it writes limited to `limit` bytes (0: no
 * limit; test_util.h). */
static void run_limited(files *f, rlim_t limit, char *const args[]) { run_bench_fsize(&f->res, limit, NULL, args); }

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* Names in a folder other than . and .., "" when empty. */
static void folder_entries(const char *dir, char *buf, size_t len)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    buf[0] = '\0';
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s ", e->d_name);
    closedir(d);
}

/* "\n" line ends to "\r\n", as a spreadsheet saves a CSV. */
static char *to_crlf(const char *text)
{
    char *out = malloc(2 * strlen(text) + 1), *w = out;
    assert_non_null(out);
    for (const char *p = text; *p; p++) {
        if (*p == '\n') *w++ = '\r';
        *w++ = *p;
    }
    *w = '\0';
    return out;
}

static void expect_unchanged(const char *path, const char *before)
{
    char *after = read_file(path);
    assert_non_null(after);
    if (strcmp(after, before) != 0)
        fail_msg("%s changed: %ld bytes before, %ld after (a torn row left behind?)", path, (long)strlen(before),
                 (long)strlen(after));
    free(after);
}

/* ------------------------------------------------------------------------ */
/* 1. a full disk                                                            */

/* The row's append fails partway: the CSV is left as it was, and the next
 * run appends to a file with whole rows only. */
static void test_full_disk_single_row(void **state)
{
    files *f = *state;
    run_limited(f, 0, (char *const[]){RUN_FLAGS, "--out", f->out, NULL});
    expect_code(f, 0);
    char *before = read_file(f->out);
    assert_non_null(before);
    /* room for a third of the next row */
    run_limited(f, strlen(before) + 120, (char *const[]){RUN_FLAGS, "--out", f->out, NULL});
    expect_code(f, 1);
    expect_unchanged(f->out, before);
    expect_err(f, "cannot append the row to");
    expect_err(f, "File too large");
    expect_err(f, "the file is left as it was");
    free(before);
    run_limited(f, 0, (char *const[]){RUN_FLAGS, "--out", f->out, NULL});
    expect_code(f, 0);
    csv c;
    csv_load(&c, f->out); /* no torn line */
    assert_int_equal(c.rows, 2);
    csv_free(&c);
}

/* The header of a new CSV does not fit: no file is left (not even an empty
 * one), and nothing else in the folder. */
static void test_full_disk_new_csv_left_absent(void **state)
{
    files *f = *state;
    char header[8192];
    size_t hlen = pb_results_header(header, sizeof header);
    run_limited(f, hlen / 2, (char *const[]){RUN_FLAGS, "--out", f->out, NULL});
    expect_code(f, 1);
    char names[1024];
    folder_entries(f->dir, names, sizeof names);
    assert_string_equal(names, "");
    expect_err(f, "cannot append the row to");
    expect_err(f, "no file is left (the run would have created it)");
}

/* ddp: rank 0 writes under mpirun. MPI needs files of some MB itself
 * (shared memory segments), so the limit is 256 MiB and the CSV is made
 * that large first: a sparse file (no disk used) whose first line is the
 * header and whose last byte ends a line, all that an append reads. */
static void test_full_disk_ddp_row(void **state)
{
    files *f = *state;
    const long limit = 256L << 20, size = limit - 100;
    char header[8192];
    size_t hlen = pb_results_header(header, sizeof header);
    int fd = open(f->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, header, hlen), (ssize_t)hlen);
    assert_int_equal(ftruncate(fd, size), 0);
    assert_int_equal(pwrite(fd, "\n", 1, size - 1), 1);
    assert_int_equal(close(fd), 0);

    run_limited(f, (rlim_t)limit,
                (char *const[]){RUN_FLAGS, "--strategy", "ddp", "--gpus", "2", "--timeout", "30", "--out", f->out, NULL});
    expect_code(f, 1);
    assert_int_equal(file_size(f->out), size);
    /* and its last bytes are the ones it had: nothing written, nothing cut */
    char tail[4096];
    fd = open(f->out, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, tail, sizeof tail, size - (long)sizeof tail), (ssize_t)sizeof tail);
    close(fd);
    for (size_t i = 0; i + 1 < sizeof tail; i++) assert_int_equal(tail[i], '\0');
    assert_int_equal(tail[sizeof tail - 1], '\n');
    expect_err(f, "cannot append the row to");
    expect_err(f, "the file is left as it was");
}

/* A sweep's run fails to append: the sweep reports it (exit 1) and its CSV
 * keeps only the rows it had. */
static void test_full_disk_sweep_row(void **state)
{
    files *f = *state;
    run_limited(f, 0, (char *const[]){SWEEP_FLAGS, "--out", f->out, NULL});
    expect_code(f, 0);
    char *before = read_file(f->out);
    assert_non_null(before);
    run_limited(f, strlen(before) + 120, (char *const[]){SWEEP_FLAGS, "--force", "--out", f->out, NULL});
    expect_code(f, 1);
    expect_err(f, "failed");
    expect_unchanged(f->out, before);
    free(before);
}

/* --dump cannot write params_init.npy (536 KiB for mlp-xs) in full: no
 * .npy under its final name and no temporary left; the run fails with a
 * failed row that says why. */
static void test_full_disk_dump(void **state)
{
    files *f = *state;
    char dump[600];
    snprintf(dump, sizeof dump, "%s/d", f->dir);
    run_limited(f, 100000, (char *const[]){RUN_FLAGS, "--out", f->out, "--dump", dump, NULL});
    expect_code(f, 1);
    expect_err(f, "params_init.npy");
    expect_err(f, "File too large");
    char names[1024];
    folder_entries(dump, names, sizeof names);
    assert_string_equal(names, "");
    csv c;
    csv_load(&c, f->out);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "failed");
    assert_non_null(strstr(csv_get(&c, "error"), "params_init.npy"));
    csv_free(&c);
}

/* ------------------------------------------------------------------------ */
/* 2. a bad --dump                                                           */

static void expect_dump_refused(files *f, const char *dump, const char *phrase, const char *strategy)
{
    char *before_names = calloc(1, 4096);
    assert_non_null(before_names);
    folder_entries(f->dir, before_names, 4096);
    run_limited(f, 0,
                (char *const[]){RUN_FLAGS, "--strategy", (char *)strategy, "--gpus", strcmp(strategy, "ddp") ? "1" : "2",
                                "--out", f->out, "--dump", (char *)dump, NULL});
    expect_code(f, 2);
    expect_err(f, "bench: error: --dump ");
    expect_err(f, dump);
    expect_err(f, phrase);
    assert_int_equal(count_lines(f->res.err), 1);
    assert_string_equal(f->res.out, "");
    /* nothing written: no row, no folder, no file */
    assert_false(file_exists(f->out));
    char after_names[4096];
    folder_entries(f->dir, after_names, sizeof after_names);
    assert_string_equal(after_names, before_names);
    free(before_names);
}

static void test_bad_dump_usage_error(void **state)
{
    files *f = *state;
    char path[600];
    snprintf(path, sizeof path, "%s/a-file", f->dir);
    write_text(path, "x");
    expect_dump_refused(f, path, "is a regular file, not a folder", "single");
    expect_dump_refused(f, path, "is a regular file, not a folder", "ddp"); /* before mpirun starts */
    snprintf(path, sizeof path, "%s/missing/d", f->dir);
    expect_dump_refused(f, path, "does not exist (--dump creates only the last folder of its path)", "single");
    /* no file can be created there, root included */
    expect_dump_refused(f, "/proc", "cannot create a file in folder '/proc'", "single");
    expect_dump_refused(f, "/proc/parbench-dump", "cannot create a file in folder '/proc'", "single");
    if (geteuid() != 0) { /* root may write in a read-only folder */
        snprintf(path, sizeof path, "%s/ro", f->dir);
        assert_int_equal(mkdir(path, 0555), 0);
        expect_dump_refused(f, path, "not writable", "single");
        chmod(path, 0755);
    }
}

/* ------------------------------------------------------------------------ */
/* 3. CRLF results files                                                     */

/* A sweep's file saved with CRLF line ends: compare reads it, the sweep
 * resumes from it (nothing to run again), and a run appends to it with the
 * file's own line end, so the file stays CRLF throughout. */
static void test_crlf_resume_compare_append(void **state)
{
    files *f = *state;
    run_limited(f, 0, (char *const[]){SWEEP_FLAGS, "--out", f->out, NULL});
    expect_code(f, 0);
    char *lf = read_file(f->out), *crlf = to_crlf(lf);
    char crlf_path[600];
    snprintf(crlf_path, sizeof crlf_path, "%s/crlf.csv", f->dir);
    write_text(crlf_path, crlf);

    run_limited(f, 0, (char *const[]){"compare", f->out, crlf_path, NULL});
    expect_code(f, 0);
    run_limited(f, 0, (char *const[]){SWEEP_FLAGS, "--out", crlf_path, NULL});
    expect_code(f, 0);
    expect_err(f, "1 of 1 runs already in");
    expect_unchanged(crlf_path, crlf);

    run_limited(f, 0, (char *const[]){RUN_FLAGS, "--out", crlf_path, NULL});
    expect_code(f, 0);
    char *text = read_file(crlf_path);
    assert_int_equal(strncmp(text, crlf, strlen(crlf)), 0); /* the rows it had, then one more */
    assert_int_equal(count_lines(text), 3);
    assert_int_equal(count_substr(text, "\r\n"), 3);
    csv c;
    csv_load(&c, crlf_path);
    assert_int_equal(c.rows, 2);
    csv_free(&c);
    free(text);
    free(lf);
    free(crlf);
}

/* ------------------------------------------------------------------------ */
/* 4. FIFOs and other files that are not regular                             */

static void test_fifo_refused(void **state)
{
    files *f = *state;
    char fifo[600];
    snprintf(fifo, sizeof fifo, "%s/fifo", f->dir);
    assert_int_equal(mkfifo(fifo, 0644), 0);

    run_limited(f, 0, (char *const[]){RUN_FLAGS, "--out", fifo, NULL});
    expect_code(f, 2);
    expect_err(f, "is a FIFO (named pipe); rows are appended to regular files only");
    assert_int_equal(count_lines(f->res.err), 1);
    run_limited(f, 0, (char *const[]){SWEEP_FLAGS, "--out", fifo, NULL});
    expect_code(f, 2);
    expect_err(f, "is a FIFO (named pipe)");

    /* compare: refused at once, not read (no writer: it would block); the
     * timeout only bounds the test should it block */
    char header[8192];
    pb_results_header(header, sizeof header);
    write_text(f->out, header);
    char *argv[] = {"timeout", "20", (char *)bench_path(), "compare", f->out, fifo, NULL};
    run_argv_env(&f->res, NULL, argv);
    expect_code(f, 2);
    expect_err(f, "fifo: is a FIFO (named pipe); give a results CSV file (regular files only)");
    assert_int_equal(count_lines(f->res.err), 1);

    /* the library refuses one at append time too (made after the check) */
    pb_record *r = calloc(1, sizeof *r);
    assert_non_null(r);
    pb_error_clear();
    assert_int_not_equal(pb_results_append(fifo, r), PB_OK);
    assert_non_null(strstr(pb_error_message(), "FIFO"));
    free(r);
    /* and /dev/null is no CSV either */
    pb_error_clear();
    assert_int_equal(pb_results_check_target("/dev/null"), PB_ERR_USAGE);
    assert_non_null(strstr(pb_error_message(), "is a character device"));
}

/* ------------------------------------------------------------------------ */
/* 5. bench calibrate outside the repository                                 */

static void test_calibrate_outside_repository(void **state)
{
    files *f = *state;
    char bench[4096], cwd[4096];
    assert_non_null(realpath(bench_path(), bench));
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(f->dir), 0); /* no results/ here: the default --out's folder */
    char *argv[] = {bench, "calibrate", "--backend", "cpu", "--workload", "mlp-xs", "--threads", "1", NULL};
    run_argv_env(&f->res, NULL, argv);
    assert_int_equal(chdir(cwd), 0);
    expect_code(f, 0);
    if (!strstr(f->res.out, "mlp-xs_step_gemms_ms")) fail_msg("stdout:\n%s", f->res.out);
    char names[1024];
    folder_entries(f->dir, names, sizeof names);
    assert_string_equal(names, ""); /* it wrote nothing */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_disk_single_row, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_new_csv_left_absent, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_ddp_row, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_sweep_row, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_dump, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_bad_dump_usage_error, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_crlf_resume_compare_append, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_fifo_refused, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_calibrate_outside_repository, files_setup, files_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
