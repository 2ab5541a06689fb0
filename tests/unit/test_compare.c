/* The CSV reader and the comparison under bench compare, called directly.
 *
 * 1. The reader (pb_csv_parse): RFC 4180 quoting, CRLF, blank lines, torn
 *    rows (a trailing partial line, a torn row mid-file) skipped, garbage
 *    refused with "FILE:LINE", and a deterministic fuzz loop that must never
 *    crash (run it under `make SAN=1 test`).
 * 2. The statistics: the regularized incomplete beta and Student's t CDF
 *    against closed forms and table quantiles; Welch's t and df by hand.
 * 3. Pairing (pb_compare_tables): repeats, one-sided configurations,
 *    canonical numbers, rows not ok, older schemas, verdicts, env diffs;
 *    drift inside a side, the minimum detectable effect and the warning
 *    when repeats are too few for the threshold, against values computed
 *    by hand (mpmath, 30 digits).
 * 4. The command as a user meets it (./bench compare):
 *    tests/e2e/test_compare_runs.c. */
#include "tests/common/compare_rows.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>
#include <time.h>

#include "harness/stats.h"
#include "study/compare.h"
#include "study/compare_cli.h"
#include "study/csv_read.h"
#include "harness/results.h"

#ifndef FIXTURE_DIR
#define FIXTURE_DIR "tests/compare"
#endif

static int setup_clear(void **state)
{
    (void)state;
    pb_error_clear();
    return 0;
}

/* The error of parsing text, which must fail with exit code 2. */
static const char *parse_fails(const char *text, size_t len)
{
    pb_csv c;
    pb_error_clear();
    pb_status st = pb_csv_parse("t.csv", text, len, &c);
    assert_int_not_equal(st, PB_OK);
    assert_int_equal(pb_status_exit_code(st), 2);
    assert_null(c.text);
    assert_int_equal(c.nrows, 0);
    return pb_error_message();
}

#define NOCV NAN
/* a string literal, its embedded NULs included */
#define PARSE_FAILS(lit) parse_fails((lit), sizeof(lit) - 1)

/* ------------------------------------------------------------------------ */
/* 1. the reader                                                             */

static void test_csv_quoting(void **state)
{
    (void)state;
    pb_csv c;
    parse_ok("a,b,c,d\n"
             "\"x,1\",\"he said \"\"hi\"\"\",,\"\"\n"
             "plain,\"\"\"\",3,\"a\"\"b,c\"\n",
             &c);
    assert_int_equal(c.ncols, 4);
    assert_int_equal(c.nrows, 2);
    assert_int_equal(c.nskipped, 0);
    assert_string_equal(pb_csv_name(&c, 2), "c");
    assert_string_equal(pb_csv_get(&c, 0, 0), "x,1");
    assert_string_equal(pb_csv_get(&c, 0, 1), "he said \"hi\"");
    assert_string_equal(pb_csv_get(&c, 0, 2), "");
    assert_string_equal(pb_csv_get(&c, 0, 3), "");
    assert_string_equal(pb_csv_get(&c, 1, 1), "\"");
    assert_string_equal(pb_csv_get(&c, 1, 3), "a\"b,c");
    assert_int_equal(c.line[0], 2);
    assert_int_equal(c.line[1], 3);
    assert_int_equal(pb_csv_find(&c, "d"), 3);
    assert_int_equal(pb_csv_find(&c, "e"), -1);
    pb_csv_free(&c);
}

static void test_csv_crlf_and_blank_lines(void **state)
{
    (void)state;
    pb_csv c;
    parse_ok("a,b\r\n1,2\r\n\r\n\n3,4\r\n", &c);
    assert_int_equal(c.nrows, 2);
    assert_int_equal(c.nskipped, 0);
    assert_string_equal(pb_csv_name(&c, 1), "b");
    assert_string_equal(pb_csv_get(&c, 0, 1), "2");
    assert_string_equal(pb_csv_get(&c, 1, 0), "3");
    assert_int_equal(c.line[1], 5);
    pb_csv_free(&c);
}

static void test_csv_our_rows_round_trip(void **state)
{
    (void)state;
    rowspec rows[] = {{.sps = 1000, .cv = 0.01}, {.workload = "mlp-s", .sps = 50, .cv = 0.02, .status = "failed"}};
    char *t = csv_text(rows, 2);
    pb_csv c;
    parse_ok(t, &c);
    assert_int_equal(c.ncols, PB_COL_COUNT);
    for (int k = 0; k < PB_COL_COUNT; k++)
        assert_string_equal(pb_csv_name(&c, (size_t)k), pb_column_name((pb_column)k));
    assert_int_equal(c.nrows, 2);
    assert_string_equal(pb_csv_get(&c, 0, PB_COL_GPU_NAME), "NVIDIA H100 80GB HBM3");
    assert_string_equal(pb_csv_get(&c, 1, PB_COL_ERROR), "out of memory");
    assert_string_equal(pb_csv_get(&c, 0, PB_COL_SAMPLES_PER_S), "1000");
    pb_csv_free(&c);
    free(t);
}

static void test_csv_trailing_partial_line_skipped(void **state)
{
    (void)state;
    pb_csv c;
    /* no final newline: skipped whatever it holds, even a full field count */
    parse_ok("a,b,c\n1,2,3\n4,5", &c);
    assert_int_equal(c.nrows, 1);
    assert_int_equal(c.nskipped, 1);
    assert_int_equal(c.skip[0].line, 3);
    assert_int_equal(c.skip[0].reason, PB_CSV_SKIP_NO_NEWLINE);
    pb_csv_free(&c);
    parse_ok("a,b,c\n1,2,3\n4,5,6", &c);
    assert_int_equal(c.nrows, 1);
    assert_int_equal(c.skip[0].reason, PB_CSV_SKIP_NO_NEWLINE);
    pb_csv_free(&c);
    /* torn inside a quoted field, no newline */
    parse_ok("a,b,c\n1,2,3\n4,\"x,", &c);
    assert_int_equal(c.nrows, 1);
    assert_int_equal(c.nskipped, 1);
    pb_csv_free(&c);
    /* a short last line with its newline */
    parse_ok("a,b,c\n1,2,3\n4,5\n", &c);
    assert_int_equal(c.nrows, 1);
    assert_int_equal(c.skip[0].reason, PB_CSV_SKIP_SHORT);
    assert_int_equal(c.skip[0].fields, 2);
    char why[128];
    assert_non_null(strstr(pb_csv_skip_text(&c.skip[0], c.ncols, why, sizeof why), "2 of 3 fields"));
    pb_csv_free(&c);
}

/* The appender ends a torn line before the next row, so a torn row can sit
 * mid-file: skipped, the rows around it kept. */
static void test_csv_torn_row_mid_file_skipped(void **state)
{
    (void)state;
    pb_csv c;
    parse_ok("a,b,c\n1,2,3\n4,\"5\n7,8,9\n10,11\n12,13,14\n", &c);
    assert_int_equal(c.nrows, 3);
    assert_int_equal(c.nskipped, 2);
    assert_int_equal(c.skip[0].line, 3);
    assert_int_equal(c.skip[0].reason, PB_CSV_SKIP_OPEN_QUOTE);
    assert_int_equal(c.skip[1].line, 5);
    assert_int_equal(c.skip[1].reason, PB_CSV_SKIP_SHORT);
    assert_string_equal(pb_csv_get(&c, 1, 0), "7");
    assert_string_equal(pb_csv_get(&c, 2, 2), "14");
    assert_int_equal(c.line[2], 6);
    pb_csv_free(&c);
}

static void test_csv_garbage_refused(void **state)
{
    (void)state;
    const char *m;
    m = PARSE_FAILS("");
    assert_non_null(strstr(m, "t.csv: empty file"));
    m = PARSE_FAILS("a,b\n1,2\n3\0,4\n");
    assert_non_null(strstr(m, "t.csv:3: binary data"));
    m = PARSE_FAILS("a,b\n1,2\n3,4,5\n");
    assert_non_null(strstr(m, "t.csv:3: more fields than the header's 2"));
    m = PARSE_FAILS("a,b\n1,x\"y\"\n");
    assert_non_null(strstr(m, "t.csv:2: malformed CSV in field 2 (column 'b')"));
    m = PARSE_FAILS("a,b\n\"1\"2,3\n");
    assert_non_null(strstr(m, "t.csv:2: malformed CSV in field 1"));
    m = PARSE_FAILS("a,b,a\n1,2,3\n");
    assert_non_null(strstr(m, "t.csv:1: header names column 'a' twice"));
    m = PARSE_FAILS("a,,c\n1,2,3\n");
    assert_non_null(strstr(m, "t.csv:1: header column 2 has no name"));
    m = PARSE_FAILS("a,\"b\n1,2\n");
    assert_non_null(strstr(m, "t.csv:1: malformed header"));
    m = PARSE_FAILS("\n1,2\n");
    assert_non_null(strstr(m, "t.csv:1: header column 1 has no name"));
    /* every message is one line */
    assert_null(strchr(m, '\n'));
}

static void test_csv_header_only_and_limits(void **state)
{
    (void)state;
    pb_csv c;
    parse_ok("a,b", &c); /* a header without newline is still the header */
    assert_int_equal(c.ncols, 2);
    assert_int_equal(c.nrows, 0);
    pb_csv_free(&c);
    /* more columns than the reader takes */
    size_t n = (PB_CSV_MAX_COLS + 1) * 2;
    char *wide = malloc(n + 1);
    assert_non_null(wide);
    for (size_t i = 0; i < n; i += 2) {
        wide[i] = 'a';
        wide[i + 1] = ',';
    }
    wide[n - 1] = '\n';
    const char *m = parse_fails(wide, n);
    assert_non_null(strstr(m, "more than 4096 columns"));
    free(wide);
}

static void test_csv_load_errors(void **state)
{
    (void)state;
    pb_csv c;
    pb_error_clear();
    assert_int_equal(pb_csv_load("/nonexistent/x.csv", &c), PB_ERR_USAGE);
    assert_non_null(strstr(pb_error_message(), "/nonexistent/x.csv: cannot open (No such file or directory)"));
    pb_error_clear();
    assert_int_equal(pb_csv_load("/tmp", &c), PB_ERR_USAGE);
    assert_non_null(strstr(pb_error_message(), "/tmp: is a directory"));
    pb_error_clear();
    assert_int_equal(pb_csv_load(FIXTURE_DIR "/old_schema.csv", &c), PB_OK);
    assert_int_equal(c.nrows, 3);
    assert_int_equal(c.nskipped, 1);
    assert_int_equal(c.skip[0].line, 5);
    assert_string_equal(pb_csv_get(&c, 0, (size_t)pb_csv_find(&c, "cpu_model")), "Intel(R) Xeon(R) \"Gold\" 6338");
    pb_csv_free(&c);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random bytes, and random mutations of a valid results file: any input
 * returns a status, and on success every stored row has the header's
 * field count and readable NUL-terminated fields. */
static void test_csv_fuzz_no_crash(void **state)
{
    (void)state;
    rowspec rows[] = {{.sps = 1000, .cv = 0.01}, {.workload = "mlp-s", .sps = 50, .cv = NOCV}, {.sps = 900, .cv = 0.2}};
    char *valid = csv_text(rows, 3);
    size_t vlen = strlen(valid);
    char *buf = malloc(vlen + 64);
    assert_non_null(buf);
    static const char alphabet[] = {',', '"', '\n', '\r', 'a', '1', '\0', ' ', '.', '\x1b'};
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    size_t ok = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len;
        if (iter % 4 == 0) { /* short random buffers from CSV's alphabet */
            len = rng_next(&seed) % 48;
            for (size_t i = 0; i < len; i++) buf[i] = alphabet[rng_next(&seed) % sizeof alphabet];
        } else { /* a valid file, truncated and with a few bytes changed */
            len = 1 + rng_next(&seed) % vlen;
            memcpy(buf, valid, len);
            int flips = (int)(rng_next(&seed) % 4);
            for (int k = 0; k < flips; k++) buf[rng_next(&seed) % len] = alphabet[rng_next(&seed) % sizeof alphabet];
        }
        pb_csv c;
        pb_error_clear();
        pb_status st = pb_csv_parse("fuzz.csv", buf, len, &c);
        if (st != PB_OK) {
            assert_true(pb_status_exit_code(st) == 2);
            assert_non_null(strstr(pb_error_message(), "fuzz.csv"));
            assert_null(strchr(pb_error_message(), '\n'));
            continue;
        }
        ok++;
        assert_true(c.ncols >= 1);
        size_t total = 0;
        for (size_t r = 0; r < c.nrows; r++) {
            assert_true(c.line[r] >= 2);
            for (size_t k = 0; k < c.ncols; k++) total += strlen(pb_csv_get(&c, r, k));
        }
        assert_true(total <= len);
        pb_csv_free(&c);
    }
    assert_true(ok > 1000); /* the mutations did not all fail */
    free(buf);
    free(valid);
}

/* ------------------------------------------------------------------------ */
/* 2. statistics                                                             */

static void test_incbeta_closed_forms(void **state)
{
    (void)state;
    for (double x = 0.05; x < 1; x += 0.1) {
        assert_float_equal(pb_stats_incbeta(1, 1, x), x, 1e-12);
        assert_float_equal(pb_stats_incbeta(2, 1, x), x * x, 1e-12);
        assert_float_equal(pb_stats_incbeta(1, 3, x), 1 - pow(1 - x, 3), 1e-12);
        /* I_x(2,2) = 3x^2 - 2x^3 */
        assert_float_equal(pb_stats_incbeta(2, 2, x), 3 * x * x - 2 * x * x * x, 1e-12);
        /* symmetry */
        assert_float_equal(pb_stats_incbeta(3.5, 0.5, x), 1 - pb_stats_incbeta(0.5, 3.5, 1 - x), 1e-12);
    }
    assert_float_equal(pb_stats_incbeta(7.3, 7.3, 0.5), 0.5, 1e-12);
    assert_float_equal(pb_stats_incbeta(2, 3, 0), 0, 0);
    assert_float_equal(pb_stats_incbeta(2, 3, 1), 1, 0);
    assert_true(isnan(pb_stats_incbeta(0, 1, 0.5)));
    assert_true(isnan(pb_stats_incbeta(1, 1, NAN)));
}

static void test_t_cdf_known_values(void **state)
{
    (void)state;
    const double pi = 3.14159265358979323846;
    for (double t = -6; t <= 6; t += 0.37) {
        /* df 1 is Cauchy; df 2, 3 and 4 have closed forms */
        assert_float_equal(pb_stats_t_cdf(t, 1), 0.5 + atan(t) / pi, 1e-10);
        assert_float_equal(pb_stats_t_cdf(t, 2), 0.5 + t / (2 * sqrt(2 + t * t)), 1e-10);
        double u = t / sqrt(3);
        assert_float_equal(pb_stats_t_cdf(t, 3), 0.5 + (u / (1 + u * u) + atan(u)) / pi, 1e-10);
        double q = 1 + t * t / 4;
        assert_float_equal(pb_stats_t_cdf(t, 4), 0.5 + 0.375 * (t / sqrt(q)) * (1 - t * t / (12 * q)), 1e-10);
        /* symmetric about 0 */
        assert_float_equal(pb_stats_t_cdf(t, 7.5) + pb_stats_t_cdf(-t, 7.5), 1.0, 1e-12);
    }
    /* quantiles from Student's t tables (6-7 significant digits) */
    assert_float_equal(pb_stats_t_cdf(2.763769, 10), 0.99, 1e-7);
    assert_float_equal(pb_stats_t_cdf(2.042272, 30), 0.975, 1e-7);
    assert_float_equal(pb_stats_t_cdf(4.032143, 5), 0.995, 1e-7);
    assert_float_equal(pb_stats_t_cdf(3.551808, 20), 0.999, 1e-7);
    assert_float_equal(pb_stats_t_cdf(-2.527977, 20), 0.01, 1e-7);
    assert_float_equal(pb_stats_t_cdf(2.364217, 100), 0.99, 1e-7);
    /* fractional df, against mpmath's betainc at 30 digits */
    assert_float_equal(pb_stats_t_cdf(-2.5, 7.3), 0.019825117332800225, 1e-12);
    assert_float_equal(pb_stats_t_cdf(-1.397, 36.2), 0.085459561591855779, 1e-12);
    assert_float_equal(pb_stats_t_cdf(-4.0, 2.5), 0.019506487920659125, 1e-12);
    assert_float_equal(pb_stats_t_cdf(-1, 0.5), 0.30112161084132208, 1e-12);
    assert_float_equal(pb_stats_t_cdf(0.7, 123.4), 0.75737755818580682, 1e-12);
    assert_float_equal(pb_stats_t_cdf(-3, 1000), 0.0013833545221191229, 1e-14);
    assert_float_equal(pb_stats_t_cdf(-10, 50) / 8.038667344167707e-14, 1, 1e-9);
    /* large df tends to the normal */
    assert_float_equal(pb_stats_t_cdf(1.959964, 1e5), 0.975, 1e-5);
    assert_float_equal(pb_stats_t_cdf(1.959964, 1e9), 0.975, 1e-7);
    assert_float_equal(pb_stats_t_cdf(-2.326348, 2e6), 0.01, 1e-6);
    /* fractional df lies between its neighbours */
    double lo = pb_stats_t_cdf(-2.0, 3), mid = pb_stats_t_cdf(-2.0, 3.5), hi = pb_stats_t_cdf(-2.0, 4);
    assert_true(lo > mid && mid > hi);
    /* tails and edges */
    assert_true(pb_stats_t_cdf(-70, 36) < 1e-30);
    assert_float_equal(pb_stats_t_cdf(INFINITY, 3), 1, 0);
    assert_float_equal(pb_stats_t_cdf(-INFINITY, 3), 0, 0);
    assert_float_equal(pb_stats_t_cdf(0, 3), 0.5, 1e-15);
    assert_true(isnan(pb_stats_t_cdf(1, 0)));
    assert_true(isnan(pb_stats_t_cdf(NAN, 3)));
}

static void test_welch_by_hand(void **state)
{
    (void)state;
    pb_stats_mean b = {.mean = 10, .se2 = 1, .df = 9};
    pb_stats_mean c = {.mean = 12, .se2 = 4, .df = 4};
    double t, df;
    assert_true(pb_stats_welch(b, c, &t, &df));
    assert_float_equal(t, 2 / sqrt(5), 1e-12);
    assert_float_equal(df, 25 / (1.0 / 9 + 16.0 / 4), 1e-10);
    /* equal variances and sizes: df = 2(n-1) */
    pb_stats_mean e1 = {.mean = 1, .se2 = 0.5, .df = 9}, e2 = {.mean = 2, .se2 = 0.5, .df = 9};
    assert_true(pb_stats_welch(e1, e2, &t, &df));
    assert_float_equal(t, 1, 1e-12);
    assert_float_equal(df, 18, 1e-10);
    /* no spread on one side: not testable */
    pb_stats_mean none = {.mean = 12, .se2 = 0, .df = 0};
    assert_false(pb_stats_welch(b, none, &t, &df));
    assert_true(isnan(t));
    /* zero spread, a difference: infinitely significant */
    pb_stats_mean z1 = {.mean = 1, .se2 = 0, .df = 3}, z2 = {.mean = 2, .se2 = 0, .df = 3};
    assert_true(pb_stats_welch(z1, z2, &t, &df));
    assert_true(isinf(t) && t > 0);
}

/* cmocka's assert_float_equal compares in single precision (it casts its
 * arguments to float, and an expression's first operand alone): the
 * statistics below are checked to the digits they were computed to. */
static void near(double got, double want, double tol, const char *what, int line)
{
    if (!(fabs(got - want) <= tol)) fail_msg("line %d: %s = %.17g, expected %.17g +- %g", line, what, got, want, tol);
}
#define assert_near(got, want, tol) near((got), (want), (tol), #got, __LINE__)

static void test_t_quantile(void **state)
{
    (void)state;
    /* Student's tables and mpmath's inverse at 30 digits */
    assert_near(pb_stats_t_quantile(0.99, 4), 3.74694738797919581, 1e-9);
    assert_near(pb_stats_t_quantile(0.8, 4), 0.940964577235181364, 1e-9);
    assert_near(pb_stats_t_quantile(0.99, 7.3), 2.96394044758389641, 1e-9);
    assert_near(pb_stats_t_quantile(0.8, 2.5), 1.01016387472223894, 1e-9);
    assert_near(pb_stats_t_quantile(0.975, 30), 2.042272, 1e-6);
    assert_near(pb_stats_t_quantile(0.99, 1), tan(3.14159265358979323846 * 0.49), 1e-8); /* Cauchy */
    /* symmetric, and the CDF's inverse */
    assert_near(pb_stats_t_quantile(0.01, 4), -3.74694738797919581, 1e-9);
    assert_near(pb_stats_t_quantile(0.5, 3), 0, 1e-12);
    for (double p = 0.05; p < 1; p += 0.1) assert_near(pb_stats_t_cdf(pb_stats_t_quantile(p, 5.5), 5.5), p, 1e-12);
    assert_true(isinf(pb_stats_t_quantile(1, 4)));
    assert_true(isnan(pb_stats_t_quantile(0.5, 0)));
}

/* ------------------------------------------------------------------------ */
/* 3. pairing                                                                */

typedef struct compared {
    pb_csv base, cur;
    pb_compare_result r;
} compared;

static void compare_rows(compared *c, const rowspec *b, size_t nb, const rowspec *cu, size_t nc, const char *metric,
                         double threshold)
{
    char *tb = csv_text(b, nb), *tc = csv_text(cu, nc);
    parse_ok(tb, &c->base);
    parse_ok(tc, &c->cur);
    free(tb);
    free(tc);
    pb_compare_opts o;
    pb_compare_defaults(&o);
    if (metric) o.metric = metric;
    if (threshold >= 0) o.threshold_pct = threshold;
    pb_status st = pb_compare_tables(&c->base, "base.csv", &c->cur, "cur.csv", &o, &c->r);
    if (st != PB_OK) print_message("%s\n", pb_error_message());
    assert_int_equal(st, PB_OK);
}

static void compared_free(compared *c)
{
    pb_compare_free(&c->r);
    pb_csv_free(&c->base);
    pb_csv_free(&c->cur);
}

static void test_pairing_repeats_and_one_sided(void **state)
{
    (void)state;
    rowspec b[] = {
        {.sps = 1000, .cv = 0.01},                              /* A */
        {.workload = "mlp-s", .sps = 50, .cv = 0.01},           /* B: baseline only */
        {.sps = 1010, .cv = 0.01, .iters = 50},                 /* A again: iters differ, still A */
        {.workload = "mlp-s", .sps = 1, .status = "failed"},    /* not compared */
        {.threads = 2, .sps = 1500, .cv = 0.01},                /* C */
    };
    rowspec c[] = {
        {.threads = 4, .sps = 2000, .cv = 0.01}, /* D: current only */
        {.sps = 990, .cv = 0.01},                /* A */
        {.sps = 1000, .cv = 0.01},
        {.sps = 1005, .cv = 0.01},
        {.threads = 2, .sps = 1510, .cv = 0.01}, /* C */
    };
    compared x;
    compare_rows(&x, b, 5, c, 5, NULL, -1);
    pb_compare_result *r = &x.r;
    assert_int_equal(r->npairs, 4);
    assert_int_equal(r->ignored_base, 1);
    assert_int_equal(r->ignored_cur, 0);
    /* baseline order, then current-only */
    assert_int_equal(r->pairs[0].base.runs, 2);
    assert_int_equal(r->pairs[0].cur.runs, 3);
    assert_int_equal(r->pairs[0].base.row, 0);
    assert_int_equal(r->pairs[0].cur.row, 1);
    assert_float_equal(r->pairs[0].base.mean, 1005, 1e-9);
    assert_float_equal(r->pairs[0].cur.mean, 998.333333333, 1e-6);
    assert_float_equal(r->pairs[0].base.df, 1, 0);
    assert_float_equal(r->pairs[0].base.se2, 50.0 / 2, 1e-9); /* s^2 = 50, n = 2 */
    assert_int_equal(r->pairs[0].verdict, PB_VERDICT_SAME);
    assert_int_equal(r->pairs[1].verdict, PB_VERDICT_ONLY_BASELINE);
    assert_int_equal(r->pairs[1].base.row, 1);
    assert_int_equal(r->pairs[1].cur.runs, 0);
    assert_int_equal(r->pairs[2].verdict, PB_VERDICT_SAME);
    assert_int_equal(r->pairs[2].base.row, 4);
    assert_int_equal(r->pairs[3].verdict, PB_VERDICT_ONLY_CURRENT);
    assert_int_equal(r->pairs[3].cur.row, 0);
    assert_int_equal(r->count[PB_VERDICT_SAME], 2);
    /* threads tells A from C from D, so labels show it; the shape does not */
    for (size_t k = 0; k < r->nkey; k++) {
        if (strcmp(r->key_name[k], "threads") == 0) assert_true(r->key_varies[k]);
        if (strcmp(r->key_name[k], "hidden") == 0) assert_false(r->key_varies[k]);
    }
    /* one run: the per-step spread, se^2 = (value * cv)^2 / iters */
    assert_float_equal(r->pairs[2].base.se2, 15.0 * 15.0 / 20, 1e-9);
    assert_float_equal(r->pairs[2].base.df, 19, 0);
    compared_free(&x);
}

static void test_pairing_canonical_numbers(void **state)
{
    (void)state;
    /* "0.010" and "0.01", "1" and "1.0" are the same configuration */
    const char *hdr;
    char *t = csv_text((rowspec[]){{.sps = 1000, .cv = 0.01}}, 1);
    pb_csv b, c;
    parse_ok(t, &b);
    char *edited = malloc(strlen(t) + 16);
    assert_non_null(edited);
    hdr = strchr(t, '\n') + 1;
    size_t hl = (size_t)(hdr - t);
    memcpy(edited, t, hl);
    char *row = strdup(hdr);
    char *lr = strstr(row, ",0.01,");
    assert_non_null(lr);
    *lr = '\0';
    sprintf(edited + hl, "%s,0.010,%s", row, lr + 6);
    parse_ok(edited, &c);
    pb_compare_opts o;
    pb_compare_defaults(&o);
    pb_compare_result r;
    assert_int_equal(pb_compare_tables(&b, "b", &c, "c", &o, &r), PB_OK);
    assert_int_equal(r.npairs, 1);
    assert_int_equal(r.pairs[0].verdict, PB_VERDICT_SAME);
    pb_compare_free(&r);
    pb_csv_free(&b);
    pb_csv_free(&c);
    free(row);
    free(edited);
    free(t);
}

static void test_verdicts(void **state)
{
    (void)state;
    compared x;
    /* 20% slower, tight: regression */
    compare_rows(&x, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1, (rowspec[]){{.sps = 800, .cv = 0.01}}, 1, NULL, -1);
    assert_int_equal(x.r.pairs[0].verdict, PB_VERDICT_REGRESSION);
    assert_float_equal(x.r.pairs[0].change_pct, -20, 1e-9);
    assert_true(x.r.pairs[0].p < 1e-10);
    compared_free(&x);
    /* 20% slower, noisy (cv 0.5 over 20 steps): noise */
    compare_rows(&x, (rowspec[]){{.sps = 1000, .cv = 0.5}}, 1, (rowspec[]){{.sps = 800, .cv = 0.5}}, 1, NULL, -1);
    assert_int_equal(x.r.pairs[0].verdict, PB_VERDICT_NOISE);
    assert_true(x.r.pairs[0].p > 0.05 && x.r.pairs[0].p < 0.2);
    compared_free(&x);
    /* 20% faster: improvement */
    compare_rows(&x, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1, (rowspec[]){{.sps = 1200, .cv = 0.01}}, 1, NULL, -1);
    assert_int_equal(x.r.pairs[0].verdict, PB_VERDICT_IMPROVEMENT);
    compared_free(&x);
    /* significant but within the threshold: same */
    compare_rows(&x, (rowspec[]){{.sps = 1000, .cv = 0.001}}, 1, (rowspec[]){{.sps = 970, .cv = 0.001}}, 1, NULL, -1);
    assert_int_equal(x.r.pairs[0].verdict, PB_VERDICT_SAME);
    assert_true(x.r.pairs[0].p < 0.01);
    compared_free(&x);
    /* threshold 25: 20% slower is within it */
    compare_rows(&x, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1, (rowspec[]){{.sps = 800, .cv = 0.01}}, 1, NULL, 25);
    assert_int_equal(x.r.pairs[0].verdict, PB_VERDICT_SAME);
    compared_free(&x);
    /* a single step measured (iters 1): no spread to test with */
    compare_rows(&x, (rowspec[]){{.sps = 1000, .cv = 0, .iters = 1}}, 1, (rowspec[]){{.sps = 800, .cv = 0.01}}, 1,
                 NULL, -1);
    assert_int_equal(x.r.pairs[0].verdict, PB_VERDICT_NO_SPREAD);
    compared_free(&x);
    /* lower is better: step_ms_mean up 25% is the same regression */
    compare_rows(&x, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1, (rowspec[]){{.sps = 800, .cv = 0.01}}, 1,
                 "step_ms_mean", -1);
    assert_false(x.r.higher_better);
    assert_int_equal(x.r.pairs[0].verdict, PB_VERDICT_REGRESSION);
    assert_float_equal(x.r.pairs[0].change_pct, 25, 1e-6);
    compared_free(&x);
}

static void test_repeats_use_run_to_run_spread(void **state)
{
    (void)state;
    compared x;
    rowspec b[] = {{.sps = 1000, .cv = 0.01}, {.sps = 1010, .cv = 0.01}, {.sps = 990, .cv = 0.01}};
    rowspec tight[] = {{.sps = 800, .cv = 0.01}, {.sps = 810, .cv = 0.01}, {.sps = 790, .cv = 0.01}};
    rowspec loose[] = {{.sps = 500, .cv = 0.01}, {.sps = 1300, .cv = 0.01}, {.sps = 600, .cv = 0.01}};
    compare_rows(&x, b, 3, tight, 3, NULL, -1);
    assert_int_equal(x.r.pairs[0].verdict, PB_VERDICT_REGRESSION);
    /* Welch by hand: means 1000 and 800, s^2 = 100 on both sides, n = 3 */
    assert_float_equal(x.r.pairs[0].t, -200 / sqrt(100.0 / 3 + 100.0 / 3), 1e-9);
    assert_float_equal(x.r.pairs[0].df, 4, 1e-9);
    compared_free(&x);
    /* the same mean drop, but the runs disagree: the steps' cv does not
     * rescue it, the run-to-run spread decides */
    compare_rows(&x, b, 3, loose, 3, NULL, -1);
    assert_int_equal(x.r.pairs[0].verdict, PB_VERDICT_NOISE);
    compared_free(&x);
    /* repeats on one side, one run on the other */
    compare_rows(&x, b, 3, (rowspec[]){{.sps = 800, .cv = 0.01}}, 1, NULL, -1);
    assert_int_equal(x.r.pairs[0].verdict, PB_VERDICT_REGRESSION);
    assert_float_equal(x.r.pairs[0].cur.se2, 8.0 * 8.0 / 20, 1e-9);
    compared_free(&x);
}

/* time_utc `minute` minutes after 2026-01-02T03:00:00Z, in one of 24 slots */
static const char *minute(long m)
{
    static char slot[24][32];
    static size_t next;
    char *buf = slot[next++ % 24];
    time_t t = 1767322800 + m * 60; /* 2026-01-02T03:00:00Z */
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, sizeof slot[0], "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/* The runs of one side, samples_per_s values in time order, one a minute
 * from first_minute on. */
static void side_rows(rowspec *rows, const double *sps, size_t n, long first_minute)
{
    for (size_t i = 0; i < n; i++) rows[i] = (rowspec){.sps = sps[i], .cv = 0.01, .time_utc = minute(first_minute + (long)i)};
}

/* BASELINE's runs, then CURRENT's from cur_minute on (nb: right after). */
static void compare_sides_at(compared *x, const double *b, size_t nb, const double *c, size_t nc, long cur_minute)
{
    rowspec rb[6], rc[6];
    side_rows(rb, b, nb, 0);
    side_rows(rc, c, nc, cur_minute);
    compare_rows(x, rb, nb, rc, nc, NULL, -1);
}

static void compare_sides(compared *x, const double *b, size_t nb, const double *c, size_t nc)
{
    compare_sides_at(x, b, nb, c, nc, (long)nb);
}

/* The report as `bench compare` prints it (text). */
static char *printed(const compared *x)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    pb_compare_opts o;
    pb_compare_defaults(&o);
    pb_compare_print(f, &x->r, &o);
    fclose(f);
    return out;
}

/* The machine slowed by 4% during BASELINE's six runs (minutes 0-5) and
 * stayed slow for CURRENT's (6-11): nothing changed, yet a t-test over the
 * runs calls the 5.6% drop significant (p = 0.0008). BASELINE drifted by
 * -40 between its halves' mean times, 3 minutes apart; the sides' mean
 * times are 6 minutes apart, so the drift carried over is 80 (twice, the
 * cap), 8.2%: within drift, not a regression. The old code called it a
 * regression. */
static void test_drift_inside_a_side_is_noise(void **state)
{
    (void)state;
    compared x;
    const double b[] = {1000, 1001, 999, 961, 960, 959}, c[] = {926, 925, 924, 925, 926, 924};
    compare_sides(&x, b, 6, c, 6);
    const pb_compare_pair *p = &x.r.pairs[0];
    assert_near(p->change_pct, -5.612245, 1e-5);
    assert_near(p->p, 0.000823196, 1e-8); /* significant by the t-test alone */
    assert_near(p->base.drift, -40, 1e-9);
    assert_near(p->cur.drift, 0, 1e-9);
    assert_near(p->base.span_s, 300, 0);
    assert_near(p->base.half_gap_s, 180, 0);
    assert_near(p->cur.mid_s - p->base.mid_s, 360, 1e-6);
    assert_near(p->drift_pct, 8.16326531, 1e-7);
    assert_near(p->p_drift, 0.980857475, 1e-8);
    assert_int_equal(p->verdict, PB_VERDICT_DRIFT);
    assert_string_equal(pb_verdict_name(p->verdict), "within-drift");
    assert_int_equal(x.r.count[PB_VERDICT_REGRESSION], 0);
    char *out = printed(&x);
    assert_non_null(strstr(out, "within-drift"));
    assert_non_null(strstr(out, "1 within drift"));
    free(out);
    compared_free(&x);

    /* the drift is read in time order, not file order: the same runs
     * written to the file newest first drift the same way */
    rowspec rb[6], rc[6];
    for (size_t i = 0; i < 6; i++) {
        rb[i] = (rowspec){.sps = b[5 - i], .cv = 0.01, .time_utc = minute(5 - (long)i)};
        rc[i] = (rowspec){.sps = c[i], .cv = 0.01, .time_utc = minute(6 + (long)i)};
    }
    compare_rows(&x, rb, 6, rc, 6, NULL, -1);
    assert_near(x.r.pairs[0].base.drift, -40, 1e-9);
    assert_int_equal(x.r.pairs[0].verdict, PB_VERDICT_DRIFT);
    compared_free(&x);

    /* the drift is carried over the time between the sides: CURRENT's runs
     * interleaved with BASELINE's (the same mean time) carry none of it, so
     * the plain t-test decides; CURRENT a week later carries it twice, no
     * more (a week is not 3360 half-gaps of drift) */
    const double d3[] = {1000, 1020, 980};
    compare_sides_at(&x, d3, 3, d3, 3, 0);
    assert_near(x.r.pairs[0].drift_pct, 0, 0);
    assert_near(x.r.pairs[0].mde_pct, 7.65532818257543, 1e-9);
    compared_free(&x);
    compare_sides_at(&x, d3, 3, d3, 3, 7 * 24 * 60);
    assert_near(x.r.pairs[0].drift_pct, 4, 1e-12);
    compared_free(&x);
    /* without times (every row written in the same second): carried once */
    rowspec same[3] = {{.sps = 1000, .cv = 0.01}, {.sps = 1020, .cv = 0.01}, {.sps = 980, .cv = 0.01}};
    compare_rows(&x, same, 3, same, 3, NULL, -1);
    assert_true(isnan(x.r.pairs[0].base.mid_s) == false && x.r.pairs[0].base.half_gap_s == 0);
    assert_near(x.r.pairs[0].drift_pct, 2, 1e-12);
    compared_free(&x);
}

/* A real 10% slowdown (samples_per_s -9.05%) with tight runs and no drift
 * is a regression, at six runs a side and at three. */
static void test_real_slowdown_is_a_regression(void **state)
{
    (void)state;
    compared x;
    const double b[] = {1000, 1002, 998, 1001, 999, 1000}, c[] = {909, 911, 908, 910, 909, 910};
    compare_sides(&x, b, 6, c, 6);
    const pb_compare_pair *p = &x.r.pairs[0];
    assert_int_equal(p->verdict, PB_VERDICT_REGRESSION);
    assert_near(p->drift_pct, 0.0666666667, 1e-9);
    assert_true(p->p_drift < 1e-15);
    assert_near(p->mde_pct, 0.331879094538413, 1e-9);
    assert_false(p->few_repeats);
    compared_free(&x);
    const double b3[] = {1000, 1005, 995}, c3[] = {909, 913, 905};
    compare_sides(&x, b3, 3, c3, 3);
    p = &x.r.pairs[0];
    assert_int_equal(p->verdict, PB_VERDICT_REGRESSION);
    assert_near(p->p_drift, 1.66009851e-5, 1e-12);
    assert_near(p->mde_pct, 2.52261713604716, 1e-9);
    assert_false(p->few_repeats);
    char *out = printed(&x);
    assert_null(strstr(out, "warning"));
    free(out);
    compared_free(&x);
}

/* The minimum detectable effect, by hand: three runs a side of 1000, 1020,
 * 980, one a minute, CURRENT's right after BASELINE's (mean 1000,
 * s^2 = 400, so se^2 = 400/3 a side, df 4) and a drift of 20 (980 - 1000)
 * inside each over 2 minutes, the sides' mean times 3 minutes apart, so an
 * allowance of 20 * 3/2 = 30:
 *   MDE = 30 + (t(0.99, 4) + t(0.8, 4)) * sqrt(800/3)
 *       = 30 + (3.746947 + 0.940965) * 16.329932 = 106.5533 = 10.6553%.
 * Above the 5% threshold: too few repeats, and 22 runs a side would do
 * (the smallest n with 30 + (t(0.99, 2n-2) + t(0.8, 2n-2)) sqrt(800/n)
 * <= 50). Without drift (990, 1020, 990): 6.6297%, 4 runs would do. */
static void test_mde_and_too_few_repeats(void **state)
{
    (void)state;
    compared x;
    const double d[] = {1000, 1020, 980};
    compare_sides(&x, d, 3, d, 3);
    const pb_compare_pair *p = &x.r.pairs[0];
    assert_int_equal(p->verdict, PB_VERDICT_SAME);
    assert_near(p->df, 4, 1e-12);
    assert_near(p->drift_pct, 3, 1e-12);
    assert_near(p->mde_pct, 10.6553281825754, 1e-9);
    assert_true(p->few_repeats);
    assert_int_equal(p->runs_needed, 22);
    char *out = printed(&x);
    assert_non_null(strstr(out, "warning: single cuda mlp-xs fp32: too few repeats for the threshold: the smallest "
                                "change these runs tell from noise is 10.7% (3.0% of it drift inside a side) at alpha "
                                "0.01 and power 0.8, above 5%; about 22 runs per side would bring it to the "
                                "threshold\n"));
    assert_non_null(strstr(out, "10.7%  same\n")); /* the table's mde column */
    free(out);
    compared_free(&x);

    const double n[] = {990, 1020, 990};
    compare_sides(&x, n, 3, n, 3);
    p = &x.r.pairs[0];
    assert_near(p->drift_pct, 0, 0);
    assert_near(p->mde_pct, 6.62970868041728, 1e-9);
    assert_int_equal(p->runs_needed, 4);
    compared_free(&x);

    /* drift alone beyond the threshold: no count of runs helps */
    const double big[] = {1000, 1000, 940};
    compare_sides(&x, big, 3, big, 3);
    assert_true(x.r.pairs[0].few_repeats);
    assert_int_equal(x.r.pairs[0].runs_needed, SIZE_MAX);
    compared_free(&x);

    /* one run a side: the per-step spread, no drift to see: cv 0.01 over
     * 20 steps, se^2 = 10^2/20 a side, df = 38:
     * MDE = (t(0.99, 38) + t(0.8, 38)) * sqrt(10) / 1000 = 1.0371% */
    compare_rows(&x, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1, NULL, -1);
    p = &x.r.pairs[0];
    assert_true(isnan(p->drift_pct));
    assert_near(p->mde_pct,
                       100 * (pb_stats_t_quantile(0.99, 38) + pb_stats_t_quantile(0.8, 38)) * sqrt(10.0) / 1000, 1e-12);
    assert_near(p->mde_pct, 1.03714813807729, 1e-9);
    assert_false(p->few_repeats);
    compared_free(&x);
}

static void test_env_differences(void **state)
{
    (void)state;
    compared x;
    compare_rows(&x, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1,
                 (rowspec[]){{.sps = 1000, .cv = 0.01, .driver = "560.35.03"}}, 1, NULL, -1);
    assert_int_equal(x.r.nenv, 1);
    assert_string_equal(x.r.env[0], "driver: 550.54.15 -> 560.35.03");
    compared_free(&x);
    compare_rows(&x, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1, (rowspec[]){{.sps = 1000, .cv = 0.01}}, 1, NULL, -1);
    assert_int_equal(x.r.nenv, 0);
    compared_free(&x);
}

static void test_tables_bad_values(void **state)
{
    (void)state;
    char *t = csv_text((rowspec[]){{.sps = 1000, .cv = 0.01}}, 1);
    pb_csv good, bad;
    parse_ok(t, &good);
    /* samples_per_s "1000" -> "fast" */
    char *e = strdup(t), *p = strstr(strchr(e, '\n'), ",1000,");
    assert_non_null(p);
    memcpy(p + 1, "fast", 4);
    parse_ok(e, &bad);
    pb_compare_opts o;
    pb_compare_defaults(&o);
    pb_compare_result r;
    pb_error_clear();
    assert_int_equal(pb_compare_tables(&good, "good.csv", &bad, "bad.csv", &o, &r), PB_ERR_USAGE);
    assert_non_null(strstr(pb_error_message(), "bad.csv:2: samples_per_s 'fast' is not a positive number"));
    assert_null(r.pairs);
    pb_csv_free(&bad);
    free(e);
    /* a header only */
    char *hdr = strndup(t, (size_t)(strchr(t, '\n') - t + 1));
    parse_ok(hdr, &bad);
    free(hdr);
    pb_error_clear();
    assert_int_equal(pb_compare_tables(&good, "good.csv", &bad, "bad.csv", &o, &r), PB_ERR_USAGE);
    assert_string_equal(pb_error_message(), "bad.csv: no rows after the header");
    pb_csv_free(&bad);
    pb_csv_free(&good);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_csv_quoting, setup_clear),
        cmocka_unit_test_setup(test_csv_crlf_and_blank_lines, setup_clear),
        cmocka_unit_test_setup(test_csv_our_rows_round_trip, setup_clear),
        cmocka_unit_test_setup(test_csv_trailing_partial_line_skipped, setup_clear),
        cmocka_unit_test_setup(test_csv_torn_row_mid_file_skipped, setup_clear),
        cmocka_unit_test_setup(test_csv_garbage_refused, setup_clear),
        cmocka_unit_test_setup(test_csv_header_only_and_limits, setup_clear),
        cmocka_unit_test_setup(test_csv_load_errors, setup_clear),
        cmocka_unit_test_setup(test_csv_fuzz_no_crash, setup_clear),
        cmocka_unit_test_setup(test_incbeta_closed_forms, setup_clear),
        cmocka_unit_test_setup(test_t_cdf_known_values, setup_clear),
        cmocka_unit_test_setup(test_welch_by_hand, setup_clear),
        cmocka_unit_test_setup(test_t_quantile, setup_clear),
        cmocka_unit_test_setup(test_pairing_repeats_and_one_sided, setup_clear),
        cmocka_unit_test_setup(test_pairing_canonical_numbers, setup_clear),
        cmocka_unit_test_setup(test_verdicts, setup_clear),
        cmocka_unit_test_setup(test_repeats_use_run_to_run_spread, setup_clear),
        cmocka_unit_test_setup(test_drift_inside_a_side_is_noise, setup_clear),
        cmocka_unit_test_setup(test_real_slowdown_is_a_regression, setup_clear),
        cmocka_unit_test_setup(test_mde_and_too_few_repeats, setup_clear),
        cmocka_unit_test_setup(test_env_differences, setup_clear),
        cmocka_unit_test_setup(test_tables_bad_values, setup_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
