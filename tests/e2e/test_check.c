/* bench check through ./bench (docs/check.md): healthy CPU ranks exit 0
 * with no outlier and every row written; a rank whose GEMM is made slow, or
 * a pair whose exchanges are stretched (PB_CHECK_FAULT, test-only), is
 * flagged by name with exit 1; bad input is exit 2, one line, nothing
 * written. The ranks share this host's 2 cores with other jobs, so the
 * healthy run judges at --min-fraction 0.25 (a figure a quarter of its
 * peers' is no noise the check's best-of passes leave); the faults slow by
 * 10x, far below the fractions the fault runs judge at. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <stdbool.h>

/* bench check --ranks N --quiet --out DIR/r.csv [extra...] with env, in r;
 * --stall-seconds 0 unless extra gives it (the probe spins every core for
 * its seconds: only where a test asks for it) */
static void run_check_into(bench_run *r, int ranks, char *const extra[], char *const env[])
{
    char n[16];
    snprintf(n, sizeof n, "%d", ranks);
    char *args[32] = {(char *)bench_path(), "check", "--ranks", n, "--quiet", "--out", r->csv_path};
    int k = 7;
    bool stall = false;
    for (int i = 0; extra && extra[i] && k < 31; i++) {
        stall = stall || strcmp(extra[i], "--stall-seconds") == 0;
        args[k++] = extra[i];
    }
    if (!stall) {
        args[k++] = "--stall-seconds";
        args[k++] = "0";
    }
    args[k] = NULL;
    run_argv_env(&r->res, env, args);
}

static bench_run *run_check(int ranks, char *const extra[], char *const env[])
{
    bench_run *r = bench_run_new();
    run_check_into(r, ranks, extra, env);
    return r;
}

/* The row of record `what` for rank (and peer, -1: none); fails if absent. */
static size_t find_row(const csv *c, const char *what, int rank, int peer)
{
    char rk[16], pr[16];
    snprintf(rk, sizeof rk, "%d", rank);
    snprintf(pr, sizeof pr, "%d", peer);
    for (size_t i = 0; i < c->data.nrows; i++)
        if (strcmp(csv_field(c, i, "record"), what) == 0 && strcmp(csv_field(c, i, "rank"), rk) == 0 &&
            (peer < 0 || strcmp(csv_field(c, i, "peer"), pr) == 0) && csv_field(c, i, "outlier")[0])
            return i;
    fail_msg("no judged %s row for rank %d peer %d", what, rank, peer);
    return 0;
}

static void test_healthy_three_ranks_exit_0(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *extra[] = {"--min-fraction", "0.25", "--stall-seconds", "0.5", NULL};
    bench_run *r = keep(state, run_check(3, extra, NULL));
    expect_exit(r, 0);
    assert_non_null(strstr(r->res.out, "# rank"));
    /* the CPU stall probe's line (how much it finds is the host's) */
    const char *stall = strstr(r->res.out, "# cpu stalls: every core busy for 0.5 s: ");
    if (!stall) fail_msg("no cpu stalls line in:\n%s", r->res.out);
    double pct = -1;
    assert_int_equal(sscanf(stall, "# cpu stalls: every core busy for 0.5 s: %lf%%", &pct), 1);
    assert_true(pct >= 0 && pct <= 100);
    assert_null(strstr(r->res.out, " !"));
    assert_null(strstr(r->res.err, "outlier"));
    csv c;
    csv_load(&c, r->csv_path);
    /* 3 gemm + 3 mem + 3 pairs x 3 sizes + 3 all-reduce sizes */
    assert_int_equal((int)c.data.nrows, 18);
    int gemm = 0, mem = 0, link = 0, ar = 0;
    for (size_t i = 0; i < c.data.nrows; i++) {
        const char *rec = csv_field(&c, i, "record");
        double v, s;
        if (!pb_csv_number(csv_field(&c, i, "value"), &v) || !(v > 0)) fail_msg("row %zu: value '%s'", i, csv_field(&c, i, "value"));
        assert_true(pb_csv_number(csv_field(&c, i, "seconds"), &s) && s > 0 && s < 60);
        assert_string_equal(csv_field(&c, i, "ranks"), "3");
        assert_string_equal(csv_field(&c, i, "comm"), "mpi");
        if (csv_field(&c, i, "outlier")[0]) assert_string_equal(csv_field(&c, i, "outlier"), "0");
        gemm += strcmp(rec, "gemm") == 0;
        mem += strcmp(rec, "mem") == 0;
        ar += strcmp(rec, "all_reduce") == 0;
        if (strcmp(rec, "link") == 0) {
            link++;
            assert_string_equal(csv_field(&c, i, "scope"), "within-node");
            assert_string_equal(csv_field(&c, i, "host"), csv_field(&c, i, "peer_host"));
        }
    }
    assert_int_equal(gemm, 3);
    assert_int_equal(mem, 3);
    assert_int_equal(link, 9);
    assert_int_equal(ar, 3);
    csv_free(&c);
}

static void test_slow_rank_named_exit_1(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *env[] = {"PB_CHECK_FAULT=gemm:1", NULL};
    bench_run *r = keep(state, run_check(2, NULL, env));
    expect_exit(r, 1);
    assert_non_null(strstr(r->res.err, "outlier: rank 1 on "));
    assert_non_null(strstr(r->res.err, "GEMM"));
    /* (rank 0's memory may be flagged too: 2 ranks bound to a core each of a
     * shared host differ by more than 0.8 at times; its GEMM never is) */
    csv c;
    csv_load(&c, r->csv_path);
    assert_string_equal(csv_field(&c, find_row(&c, "gemm", 1, -1), "outlier"), "1");
    assert_string_equal(csv_field(&c, find_row(&c, "gemm", 0, -1), "outlier"), "0");
    double frac;
    assert_true(pb_csv_number(csv_field(&c, find_row(&c, "gemm", 1, -1), "fraction"), &frac) && frac < 0.8);
    csv_free(&c);
}

static void test_slow_link_named_exit_1(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *env[] = {"PB_CHECK_FAULT=link:0-2", NULL};
    char *extra[] = {"--min-fraction", "0.5", NULL};
    bench_run *r = keep(state, run_check(3, extra, env));
    expect_exit(r, 1);
    assert_non_null(strstr(r->res.err, "outlier: link 0-2 ("));
    assert_non_null(strstr(r->res.out, "0-2  within-node"));
    csv c;
    csv_load(&c, r->csv_path);
    assert_string_equal(csv_field(&c, find_row(&c, "link", 0, 2), "outlier"), "1");
    assert_string_equal(csv_field(&c, find_row(&c, "link", 0, 1), "outlier"), "0");
    assert_string_equal(csv_field(&c, find_row(&c, "link", 1, 2), "outlier"), "0");
    csv_free(&c);
}

static void test_bad_input_exit_2_nothing_written(void **state)
{
    (void)state;
    static char *const bad[][4] = {
        {"--min-fraction", "1.5", NULL}, {"--min-fraction", "0", NULL}, {"--min-fraction", "x", NULL},
        {"--ranks", "1", NULL},          {"--comm", "local", NULL},     {"--bogus", NULL},
        {"--timeout", "0", NULL},        {"--stall-seconds", "-1", NULL}, {"--stall-seconds", "601", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bench_run *r = run_check(2, bad[i], NULL);
        if (r->res.exit_code != 2) fail_msg("%s: exit %d; stderr:\n%s", bad[i][0], r->res.exit_code, r->res.err);
        assert_int_equal(count_lines(r->res.err), 1);
        assert_false(has_source_location(r->res.err));
        assert_false(file_exists(r->csv_path));
        bench_run_free(r);
    }
    /* an --out of another schema (a results CSV) is refused and left as it was */
    bench_run *other = bench_run_new();
    FILE *f = fopen(other->csv_path, "w");
    assert_non_null(f);
    fputs("time_utc,status,strategy\n", f);
    fclose(f);
    run_check_into(other, 2, NULL, NULL);
    assert_int_equal(other->res.exit_code, 2);
    assert_non_null(strstr(other->res.err, other->csv_path));
    char *text = read_file(other->csv_path);
    assert_string_equal(text, "time_utc,status,strategy\n");
    free(text);
    bench_run_free(other);
    if (!PB_EXPECT_MPI) return;
    char *env[] = {"PB_CHECK_FAULT=gemm:5", NULL};
    bench_run *r = run_check(2, NULL, env);
    assert_int_equal(r->res.exit_code, 2);
    assert_non_null(strstr(r->res.err, "PB_CHECK_FAULT"));
    assert_false(file_exists(r->csv_path));
    bench_run_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_healthy_three_ranks_exit_0, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_slow_rank_named_exit_1, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_slow_link_named_exit_1, run_setup, run_teardown),
        cmocka_unit_test(test_bad_input_exit_2_nothing_written),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
