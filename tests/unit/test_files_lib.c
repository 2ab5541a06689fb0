/* The results CSV under what a user's machine does to it, through the
 * library (harness/results.c) without running bench (issue 12, items 1 and
 * 14; docs/reliability.md):
 * 1. two writers racing to create a CSV, one failing on a full disk (a file
 *    size limit), lose no row of the other.
 * 3. a CRLF results file of another schema is named without a stray '\r'.
 * Numbered as in tests/e2e/test_files.c, which runs bench for the rest. */
#include "tests/common/test_csv.h"
#include "tests/common/files_fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>

#include "harness/results.h"

/* ------------------------------------------------------------------------ */
/* 1. a full disk                                                            */

/* Two writers create the same CSV at once and the one that created it
 * fails (its file size limit is below the header): the other's row is in
 * the file, never in one the failing writer removed. Repeated, since the
 * order is up to the scheduler. */
static void test_racing_creators_lose_no_row(void **state)
{
    files *f = *state;
    pb_record *r = calloc(1, sizeof *r);
    assert_non_null(r);
    pb_record_set(r, PB_COL_STATUS, "ok");
    char row[1 << 16];
    size_t rlen = pb_results_format(r, row, sizeof row);
    assert_true(rlen > 0);
    for (int round = 0; round < 100; round++) {
        unlink(f->out);
        pid_t pids[2];
        for (int w = 0; w < 2; w++) {
            pids[w] = fork();
            assert_true(pids[w] >= 0);
            if (pids[w] == 0) {
                if (w == 0) {
                    struct rlimit lim;
                    getrlimit(RLIMIT_FSIZE, &lim);
                    lim.rlim_cur = 100;
                    signal(SIGXFSZ, SIG_IGN);
                    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(3);
                }
                _exit(pb_results_append(f->out, r) == PB_OK ? 0 : 1);
            }
        }
        int status[2];
        for (int w = 0; w < 2; w++) assert_int_equal(waitpid(pids[w], &status[w], 0), pids[w]);
        assert_true(WIFEXITED(status[0]) && WEXITSTATUS(status[0]) == 1);
        assert_true(WIFEXITED(status[1]) && WEXITSTATUS(status[1]) == 0);
        char *text = read_file(f->out);
        if (!text) fail_msg("round %d: the row of the writer that succeeded is lost (no file)", round);
        char header[8192];
        size_t hlen = pb_results_header(header, sizeof header);
        assert_int_equal(strlen(text), hlen + rlen);
        assert_memory_equal(text, header, hlen);
        assert_memory_equal(text + hlen, row, rlen);
        free(text);
    }
    free(r);
}

/* ------------------------------------------------------------------------ */
/* 3. CRLF results files                                                     */

/* Another schema saved with CRLF: refused, naming the column, with no '\r'
 * in the message (it used to read "('error', expected 'error')"). */
static void test_crlf_other_schema_named(void **state)
{
    files *f = *state;
    char header[8192];
    pb_results_header(header, sizeof header);
    char *last = strrchr(header, ',');
    assert_non_null(last);
    strcpy(last, "\r\n"); /* this build's header less its last column */
    write_text(f->out, header);
    assert_int_equal(pb_results_check_target(f->out), PB_ERR_SCHEMA);
    const char *msg = pb_error_message();
    assert_null(strchr(msg, '\r'));
    char want[64];
    snprintf(want, sizeof want, "at column %d ('', expected 'error')", PB_COL_COUNT);
    if (!strstr(msg, want)) fail_msg("message lacks \"%s\": %s", want, msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_racing_creators_lose_no_row, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_crlf_other_schema_named, files_setup, files_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
