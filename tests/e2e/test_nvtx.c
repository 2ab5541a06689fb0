/* NVTX ranges, seen the way a profiler sees them: bench runs with the NVTX
 * recorder (tests/nvtx/nvtx_recorder.c) attached through NVTX's documented
 * injection interface (NVTX_INJECTION64_PATH), which writes every range push
 * and pop to NVTX_RECORD_FILE; the tests check the recorded tree. */
#include "tests/common/test_util.h"

#include <stdbool.h>

#include "harness/nvtx.h"

#ifdef PB_HAVE_NVTX
static const bool have_nvtx = true;
#else
static const bool have_nvtx = false;
#endif

#ifndef PB_NVTX_RECORDER /* set by tests/nvtx/module.mk */
#define PB_NVTX_RECORDER "build/tests/libnvtx_recorder.so"
#endif

#define MAX_DEPTH 16

/* The phases single runs inside each step, in order: load by the harness,
 * the rest by the strategy. No comm/sync: single has no communication. */
static const char *const single_phases[] = {"load", "h2d", "fwd", "bwd", "opt"};
#define N_SINGLE_PHASES (int)(sizeof single_phases / sizeof single_phases[0])

/* Checks a recorder file: every event in domain PB_NVTX_DOMAIN, pushes and
 * pops balanced and properly nested, exactly `steps` top-level ranges named
 * "step 0".."step steps-1" in order, each holding exactly `phases` (in that
 * order) at depth 2 and nothing deeper, and no "sync" range. On failure,
 * returns false with the reason in why. */
static bool check_record(const char *text, int steps, const char *const *phases, int n_phases, char *why,
                         size_t why_len)
{
    int depth = 0, step_seen = 0, phase_seen = 0, line_no = 0;
    bool domain_created = false;
    char *copy = strdup(text), *save = NULL;
    bool ok = false;
#define FAIL(...)                                                                                             \
    do {                                                                                                      \
        int o_ = snprintf(why, why_len, "line %d: ", line_no);                                               \
        snprintf(why + o_, why_len - (size_t)o_, __VA_ARGS__);                                               \
        goto done;                                                                                            \
    } while (0)
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        char kind[16], domain[128];
        int n = 0, level = 0;
        if (sscanf(line, "%15s %127s %n", kind, domain, &n) < 2) FAIL("unreadable event '%s'", line);
        if (strcmp(kind, "domain") == 0) {
            if (strcmp(domain, PB_NVTX_DOMAIN) == 0) domain_created = true;
            continue;
        }
        if (strcmp(domain, PB_NVTX_DOMAIN) != 0) FAIL("event outside domain %s: '%s'", PB_NVTX_DOMAIN, line);
        if (strcmp(kind, "push") == 0) {
            int m = 0;
            if (sscanf(line + n, "%d %n", &level, &m) != 1) FAIL("unreadable push '%s'", line);
            const char *msg = line + n + m;
            if (level != depth + 1) FAIL("push at depth %d with %d open: '%s'", level, depth, line);
            depth = level;
            if (strcmp(msg, "sync") == 0) FAIL("a sync range, but single has no communication");
            if (level == 1) {
                char want[32];
                snprintf(want, sizeof want, "step %d", step_seen);
                if (strcmp(msg, want) != 0) FAIL("top-level range '%s', expected '%s'", msg, want);
                step_seen++;
                phase_seen = 0;
            } else if (level == 2) {
                if (phase_seen >= n_phases) FAIL("extra phase '%s' in step %d", msg, step_seen - 1);
                if (strcmp(msg, phases[phase_seen]) != 0)
                    FAIL("phase '%s' in step %d, expected '%s'", msg, step_seen - 1, phases[phase_seen]);
                phase_seen++;
            } else {
                FAIL("range '%s' at depth %d; phases must be leaves at depth 2", msg, level);
            }
        } else if (strcmp(kind, "pop") == 0) {
            if (sscanf(line + n, "%d", &level) != 1) FAIL("unreadable pop '%s'", line);
            if (depth == 0 || level != depth) FAIL("pop of depth %d with %d open", level, depth);
            if (level == 1 && phase_seen != n_phases)
                FAIL("step %d closed after %d of %d phases", step_seen - 1, phase_seen, n_phases);
            depth--;
        } else {
            FAIL("unexpected event '%s'", line); /* marks, start/end ranges: bench uses none */
        }
    }
    if (!domain_created) FAIL("domain %s was never created", PB_NVTX_DOMAIN);
    if (depth != 0) FAIL("%d ranges still open at the end", depth);
    if (step_seen != steps) FAIL("%d step ranges, expected %d", step_seen, steps);
    ok = true;
#undef FAIL
done:
    free(copy);
    return ok;
}

static char *recorder_path(void)
{
    char *p = realpath(PB_NVTX_RECORDER, NULL);
    if (!p) fail_msg("NVTX recorder %s not built (make test builds it)", PB_NVTX_RECORDER);
    return p;
}

static void test_single_ranges_through_injection(void **state)
{
    (void)state;
    if (!have_nvtx) skip(); /* built without the NVTX headers: ranges are no-ops */
    char *lib = recorder_path(), *dir = make_temp_dir();
    char inject[4200], record[300], rec_path[256], out[256];
    snprintf(rec_path, sizeof rec_path, "%s/nvtx.txt", dir);
    snprintf(inject, sizeof inject, "NVTX_INJECTION64_PATH=%s", lib);
    snprintf(record, sizeof record, "NVTX_RECORD_FILE=%s", rec_path);
    snprintf(out, sizeof out, "%s/r.csv", dir);
    char *env[] = {inject, record, NULL};
    char *args[] = {"--workload", "mlp-xs", "--strategy", "single", "--iters", "3", "--warmup", "1",
                    "--quiet", "--out", out, NULL};
    bench_result *r = calloc(1, sizeof *r);
    run_bench_env(r, env, args);
    if (r->exit_code != 0) fail_msg("bench exited %d: %s", r->exit_code, r->err);
    char *text = read_file(rec_path);
    if (!text) fail_msg("the recorder wrote no %s: the injection did not attach", rec_path);
    char why[512] = "";
    if (!check_record(text, 1 + 3, single_phases, N_SINGLE_PHASES, why, sizeof why))
        fail_msg("NVTX ranges of single: %s\n--- record ---\n%s", why, text);
    /* 4 steps x (1 step + 5 phases) x (push + pop) + the domain */
    assert_int_equal(count_lines(text), 4 * 6 * 2 + 1);
    free(text);
    free(r);
    free(lib);
    remove_temp_dir(dir);
}

/* Negative control: without NVTX_INJECTION64_PATH nothing loads the
 * recorder, so no record appears; the record above comes from the injection. */
static void test_no_injection_no_record(void **state)
{
    (void)state;
    if (!have_nvtx) skip();
    unsetenv("NVTX_INJECTION64_PATH"); /* e.g. when the tests run under nsys */
    char *dir = make_temp_dir();
    char record[300], rec_path[256], out[256];
    snprintf(rec_path, sizeof rec_path, "%s/nvtx.txt", dir);
    snprintf(record, sizeof record, "NVTX_RECORD_FILE=%s", rec_path);
    snprintf(out, sizeof out, "%s/r.csv", dir);
    char *env[] = {record, NULL};
    char *args[] = {"--workload", "mlp-xs", "--iters", "3", "--warmup", "1", "--quiet", "--out", out, NULL};
    bench_result *r = calloc(1, sizeof *r);
    run_bench_env(r, env, args);
    assert_int_equal(r->exit_code, 0);
    assert_false(file_exists(rec_path));
    free(r);
    remove_temp_dir(dir);
}

/* A tool that declines to attach (here: no record file named) must leave
 * the run intact: NVTX turns every call into a no-op. */
static void test_declined_injection_leaves_run_intact(void **state)
{
    (void)state;
    if (!have_nvtx) skip();
    char *lib = recorder_path(), *dir = make_temp_dir();
    char inject[4200], out[256];
    snprintf(inject, sizeof inject, "NVTX_INJECTION64_PATH=%s", lib);
    snprintf(out, sizeof out, "%s/r.csv", dir);
    unsetenv("NVTX_RECORD_FILE");
    char *env[] = {inject, NULL};
    char *args[] = {"--workload", "mlp-xs", "--iters", "2", "--warmup", "0", "--quiet", "--out", out, NULL};
    bench_result *r = calloc(1, sizeof *r);
    run_bench_env(r, env, args);
    assert_int_equal(r->exit_code, 0);
    assert_non_null(strstr(r->err, "nvtx_recorder: NVTX_RECORD_FILE is not set"));
    char *csv = read_file(out);
    assert_non_null(csv);
    assert_int_equal(count_lines(csv), 2); /* header + the row */
    free(csv);
    free(r);
    free(lib);
    remove_temp_dir(dir);
}

/* The checker itself must reject each kind of wrong record, or the test
 * above could pass on anything. */
static void test_checker_rejects_bad_records(void **state)
{
    (void)state;
    static const char *const phases[] = {"load", "h2d"};
    char why[512];
#define STEP(k) "push parbench 1 step " #k "\npush parbench 2 load\npop parbench 2\n" \
                "push parbench 2 h2d\npop parbench 2\npop parbench 1\n"
    const char *good = "domain parbench\n" STEP(0) STEP(1);
    assert_true(check_record(good, 2, phases, 2, why, sizeof why));
    static const struct {
        const char *record, *reason;
    } bad[] = {
        {STEP(0) STEP(1), "never created"},
        {"domain parbench\n" STEP(0), "1 step ranges, expected 2"},
        {"domain parbench\n" STEP(1) STEP(0), "expected 'step 0'"},
        {"domain parbench\n" STEP(0) "push parbench 1 step 1\npush parbench 2 load\npop parbench 2\n"
                                     "push parbench 2 h2d\npop parbench 2\n",
         "still open"},
        {"domain parbench\n" STEP(0) "push parbench 1 step 1\npush parbench 2 h2d\npop parbench 2\n",
         "expected 'load'"},
        {"domain parbench\n" STEP(0) "push parbench 1 step 1\npush parbench 2 load\npop parbench 2\n"
                                     "pop parbench 1\n",
         "after 1 of 2 phases"},
        {"domain parbench\n" STEP(0) "push parbench 1 step 1\npush parbench 2 load\npush parbench 3 x\n",
         "depth 3"},
        {"domain parbench\n" STEP(0) "push parbench 1 step 1\npush parbench 2 sync\n", "sync"},
        {"domain parbench\n" STEP(0) "push other 1 step 1\n", "outside domain"},
        {"domain parbench\n" STEP(0) "push parbench 2 load\n", "depth 2 with 0 open"},
        {"domain parbench\n" STEP(0) "pop parbench 1\n", "with 0 open"},
        {"domain parbench\n" STEP(0) "mark parbench x\n" STEP(1), "unexpected event"},
    };
#undef STEP
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        if (check_record(bad[i].record, 2, phases, 2, why, sizeof why))
            fail_msg("bad record %zu accepted:\n%s", i, bad[i].record);
        if (!strstr(why, bad[i].reason))
            fail_msg("bad record %zu rejected for '%s', expected '%s'", i, why, bad[i].reason);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_rejects_bad_records),
        cmocka_unit_test(test_single_ranges_through_injection),
        cmocka_unit_test(test_no_injection_no_record),
        cmocka_unit_test(test_declined_injection_leaves_run_intact),
    };
    return cmocka_run_group_tests_name("nvtx", tests, NULL, NULL);
}
