/* The results CSV through the library API: the header and a row against
 * golden files, appending (new file, other schema, after a torn last line),
 * two processes appending at once, and the pre-run target checks.
 *
 * tests/golden/header.csv is the schema of this build, one line; a change to
 * the columns must change it on purpose (and docs/csv-schema.md with it).
 * tests/golden/row.csv is the row of fixed_record() below. Run the program
 * with PB_UPDATE_GOLDEN=1 to rewrite both, then review the diff. */
#include "tests/common/test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>

#include "harness/config.h"
#include "study/key.h"
#include "harness/results.h"
#include "harness/stats.h"

#ifndef GOLDEN_DIR
#define GOLDEN_DIR "tests/golden"
#endif

#define LINE_MAX_BYTES (1 << 17)

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */

/* Fields of one CSV line under RFC 4180; -1 when malformed: an unbalanced
 * quote, or a quote inside an unquoted field or after a closing quote. */
static int csv_field_count(const char *line, size_t len)
{
    int fields = 1;
    bool quoted = false, field_start = true, after_close = false;
    for (size_t i = 0; i < len; i++) {
        char c = line[i];
        if (quoted) {
            if (c == '"') {
                if (i + 1 < len && line[i + 1] == '"') {
                    i++;
                } else {
                    quoted = false;
                    after_close = true;
                }
            }
            continue;
        }
        if (c == ',') {
            fields++;
            field_start = true;
            after_close = false;
            continue;
        }
        if (after_close) return -1;
        if (c == '"') {
            if (!field_start) return -1;
            quoted = true;
        }
        field_start = false;
    }
    return quoted ? -1 : fields;
}

static char *golden_path(const char *name)
{
    static char buf[512];
    const char *dir = getenv("PB_GOLDEN_DIR");
    snprintf(buf, sizeof buf, "%s/%s", dir && *dir ? dir : GOLDEN_DIR, name);
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static bool update_golden(void)
{
    const char *u = getenv("PB_UPDATE_GOLDEN");
    return u && strcmp(u, "1") == 0;
}

static char *header_line(void)
{
    static char buf[8192];
    size_t n = pb_results_header(buf, sizeof buf);
    assert_true(n > 0 && n < sizeof buf);
    return buf;
}

/* A row with fixed values: every kind of field, including one that needs
 * RFC 4180 quoting (a comma and a quote) and ones that need none. */
static void fixed_record(pb_record *r)
{
    pb_record_clear(r);
    pb_record_set(r, PB_COL_TIME_UTC, "2026-01-02T03:04:05Z");
    pb_record_set(r, PB_COL_STATUS, "ok");
    pb_record_set(r, PB_COL_STRATEGY, "single");
    pb_record_set(r, PB_COL_BACKEND, "cpu");
    pb_record_set(r, PB_COL_COMM, "none");
    pb_record_set(r, PB_COL_WORKLOAD, "mlp-xs");
    pb_record_set(r, PB_COL_IN, "%d", 256);
    pb_record_set(r, PB_COL_HIDDEN, "%d", 256);
    pb_record_set(r, PB_COL_LAYERS, "%d", 3);
    pb_record_set(r, PB_COL_CLASSES, "%d", 10);
    pb_record_set(r, PB_COL_PARAMS, "%zu", (size_t)134154);
    pb_record_set(r, PB_COL_BATCH_GLOBAL, "%d", 64);
    pb_record_set(r, PB_COL_BATCH_PER_DEVICE, "%d", 64);
    pb_record_set(r, PB_COL_DEVICES, "1");
    pb_record_set(r, PB_COL_PRECISION, "fp32");
    pb_record_num(r, PB_COL_LR, 0.01);
    pb_record_set(r, PB_COL_SEED, "%llu", 18446744073709551615ULL);
    pb_record_num(r, PB_COL_STEP_MS_P50, 1.23456789);   /* 6 significant digits */
    pb_record_num(r, PB_COL_SAMPLES_PER_S, 51840.0);
    pb_record_num(r, PB_COL_MODEL_TFLOPS, 1.5e-5);
    pb_record_num(r, PB_COL_LOSS_LAST, NAN);            /* not finite: empty */
    pb_record_num(r, PB_COL_MFU, INFINITY);              /* not finite: empty */
    pb_record_set(r, PB_COL_CPU_MODEL, "Intel(R) Xeon(R) \"Gold\" 6338"); /* quote only */
    pb_record_set(r, PB_COL_GPU_NAME, "NVIDIA H100 80GB HBM3, rev 1");     /* comma only */
    pb_record_set(r, PB_COL_HOST, "node\n01");                             /* newline folded */
    pb_record_set(r, PB_COL_BLAS_CORE, "Prescott (below: sse3 kernels on an avx512 cpu)");
    /* env_vars: ';' escaped by its writer, the comma quoted by the row's */
    pb_record_set(r, PB_COL_ENV_VARS, "NCCL_ALGO=Tree;OMPI_MCA_btl=tcp,self;UCX_X=a\\;b");
    pb_record_set(r, PB_COL_ERROR, "cuda: \"out of memory\", try --batch 32");
}

static char *format_fixed(void)
{
    static char buf[LINE_MAX_BYTES];
    pb_record *r = calloc(1, sizeof *r);
    assert_non_null(r);
    fixed_record(r);
    size_t n = pb_results_format(r, buf, sizeof buf);
    free(r);
    assert_true(n > 0);
    assert_int_equal(n, strlen(buf));
    return buf;
}

/* A row whose fields say who wrote it, padded to make torn writes likely if
 * the append were not one write() under a lock. */
static void marked_record(pb_record *r, int writer, int i)
{
    for (int c = 0; c < PB_COL_COUNT; c++) pb_record_set(r, (pb_column)c, "w%d-%d-c%d", writer, i, c);
    char pad[PB_FIELD_MAX];
    memset(pad, 'a' + writer, sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    pb_record_set(r, PB_COL_ERROR, "%s, \"%d\"", pad + 16, i);
}

static size_t marked_row(char *buf, size_t len, int writer, int i)
{
    pb_record *r = calloc(1, sizeof *r);
    assert_non_null(r);
    marked_record(r, writer, i);
    size_t n = pb_results_format(r, buf, len);
    free(r);
    return n;
}

typedef struct tmp_csv {
    char *dir;
    char path[4200];
} tmp_csv;

static void tmp_csv_open(tmp_csv *t, const char *name)
{
    t->dir = make_temp_dir();
    snprintf(t->path, sizeof t->path, "%s/%s", t->dir, name);
}

static void tmp_csv_close(tmp_csv *t)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    assert_int_equal(system(cmd), 0);
    free(t->dir);
}

static int setup_clear(void **state)
{
    (void)state;
    pb_error_clear();
    return 0;
}

/* ------------------------------------------------------------------------ */
/* schema and formatting                                                     */

/* A field longer than PB_FIELD_MAX is cut and ends in "..." (a long error
 * message reads as cut, not as a sentence that ends mid-word); one that fits
 * is kept whole. */
static void test_long_field_marked_cut(void **state)
{
    (void)state;
    static pb_record r;
    char text[2 * PB_FIELD_MAX];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    pb_record_set(&r, PB_COL_ERROR, "%s", text);
    assert_int_equal(strlen(r.v[PB_COL_ERROR]), PB_FIELD_MAX - 1);
    assert_string_equal(r.v[PB_COL_ERROR] + PB_FIELD_MAX - 4, "...");
    text[PB_FIELD_MAX - 1] = '\0';
    pb_record_set(&r, PB_COL_ERROR, "%s", text);
    assert_string_equal(r.v[PB_COL_ERROR], text);
}

static void test_header_matches_golden(void **state)
{
    (void)state;
    const char *hdr = header_line();
    if (update_golden()) write_text(golden_path("header.csv"), hdr);
    char *golden = read_file(golden_path("header.csv"));
    if (!golden) print_message("cannot read %s (run from the repository root)\n", golden_path("header.csv"));
    assert_non_null(golden);
    assert_int_equal(count_lines(golden), 1);
    assert_string_equal(hdr, golden);
    free(golden);
}

static void test_columns_are_well_named(void **state)
{
    (void)state;
    for (int c = 0; c < PB_COL_COUNT; c++) {
        const char *name = pb_column_name((pb_column)c);
        assert_true(name[0] >= 'a' && name[0] <= 'z');
        for (const char *p = name; *p; p++) assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
        assert_int_equal(pb_column_find(name), c); /* unique, and found by name */
    }
    assert_int_equal(pb_column_find("no_such_column"), -1);
    /* units in the names of the figures */
    static const char *const with_units[] = {"step_ms_p50", "samples_per_s", "busbw_gbps", "algbw_gbps", "fwd_ms",
                                             "comm_ms", "peak_mem_mb", "host_rss_mb", "comm_bytes_per_step",
                                             "overlap_pct", "model_tflops"};
    for (size_t i = 0; i < sizeof with_units / sizeof with_units[0]; i++) assert_true(pb_column_find(with_units[i]) >= 0);
    assert_int_equal(csv_field_count(header_line(), strlen(header_line()) - 1), PB_COL_COUNT);
}

static void test_row_matches_golden(void **state)
{
    (void)state;
    const char *row = format_fixed();
    if (update_golden()) write_text(golden_path("row.csv"), row);
    char *golden = read_file(golden_path("row.csv"));
    assert_non_null(golden);
    assert_int_equal(count_lines(golden), 1);
    assert_string_equal(row, golden);
    free(golden);
    /* the parts RFC 4180 decides, spelled out */
    assert_non_null(strstr(row, ",\"cuda: \"\"out of memory\"\", try --batch 32\"\n"));
    assert_non_null(strstr(row, ",\"Intel(R) Xeon(R) \"\"Gold\"\" 6338\","));
    assert_non_null(strstr(row, ",\"NVIDIA H100 80GB HBM3, rev 1\","));
    assert_non_null(strstr(row, ",node 01,"));
    assert_non_null(strstr(row, ",1.23457,"));
    assert_non_null(strstr(row, ",18446744073709551615,"));
    assert_int_equal(csv_field_count(row, strlen(row) - 1), PB_COL_COUNT);
}

static void test_format_too_small_buffer(void **state)
{
    (void)state;
    pb_record *r = calloc(1, sizeof *r);
    assert_non_null(r);
    fixed_record(r);
    char small[64];
    memset(small, 'x', sizeof small);
    assert_int_equal(pb_results_format(r, small, sizeof small), 0);
    /* exactly big enough: the row and its '\0' */
    const char *full = format_fixed();
    size_t need = strlen(full) + 1;
    char *exact = malloc(need);
    assert_non_null(exact);
    assert_int_equal(pb_results_format(r, exact, need), need - 1);
    assert_string_equal(exact, full);
    free(exact);
    free(r);
}

/* Each column's kind and key role (harness/results.h) are the ones
 * docs/csv-schema.md states: it is listed in the section of its kind, the
 * measurement-length columns key sweep's resume only, and the key columns
 * are configuration columns. */
static void test_columns_kinds_documented(void **state)
{
    (void)state;
    char *doc = read_file("docs/csv-schema.md");
    if (!doc) print_message("cannot read docs/csv-schema.md (run from the repository root)\n");
    assert_non_null(doc);
    char *cfg = strstr(doc, "### Configuration"), *res = strstr(doc, "### Results"), *env = strstr(doc, "### Environment");
    assert_true(cfg && res && env && cfg < res && res < env);
    for (int c = 0; c < PB_COL_COUNT; c++) {
        const char *name = pb_column_name((pb_column)c);
        pb_column_kind kind = pb_column_kind_of((pb_column)c);
        const char *from = kind == PB_KIND_CONFIG ? cfg : kind == PB_KIND_METRIC ? res : env;
        const char *to = kind == PB_KIND_CONFIG ? res : kind == PB_KIND_METRIC ? env : doc + strlen(doc);
        char quoted[96], stem[96];
        snprintf(quoted, sizeof quoted, "`%s`", name);
        /* the phases share one row: `<phase>_ms` ... `fwd`, `bwd` */
        snprintf(stem, sizeof stem, "`%.*s`", (int)(strlen(name) > 3 ? strlen(name) - 3 : 0), name);
        const char *at = strstr(from, quoted);
        if (!at || at >= to) at = strstr(from, stem);
        if (!at || at >= to) fail_msg("column %s is not in the %s section of docs/csv-schema.md", name,
                                      kind == PB_KIND_CONFIG ? "Configuration" : kind == PB_KIND_METRIC ? "Results"
                                                                                                      : "Environment");
        if (pb_column_key((pb_column)c) != PB_KEY_NONE) assert_int_equal(kind, PB_KIND_CONFIG);
    }
    assert_int_equal(pb_column_key(PB_COL_ITERS), PB_KEY_RESUME);
    assert_int_equal(pb_column_key(PB_COL_SEED), PB_KEY_RESUME);
    assert_int_equal(pb_column_key(PB_COL_LR), PB_KEY_ALL);
    assert_int_equal(pb_column_key(PB_COL_PARAMS), PB_KEY_NONE);
    assert_int_equal(pb_column_kind_of(PB_COL_SAMPLES_PER_S), PB_KIND_METRIC);
    assert_int_equal(pb_column_kind_of(PB_COL_DRIVER), PB_KIND_ENV);
    free(doc);
}

/* The configuration columns as a run records them, and the key's value
 * comparison: numbers as numbers, other text as text. */
static void test_fill_config_and_key_values(void **state)
{
    (void)state;
    pb_config cfg;
    pb_config_defaults(&cfg);
    bool help = false;
    char *args[] = {"--strategy", "mp", "--gpus", "2", "--split", "2", "--workload", "mlp-xs", "--backend", "cpu",
                    "--lr", "0.02", "--momentum", "0.5"};
    assert_int_equal(pb_config_parse(&cfg, 14, args, &help), PB_OK);
    pb_record *r = calloc(1, sizeof *r);
    assert_non_null(r);
    pb_record_fill_config(r, &cfg);
    assert_string_equal(r->v[PB_COL_STRATEGY], "mp");
    assert_string_equal(r->v[PB_COL_LR], "0.02");
    assert_string_equal(r->v[PB_COL_MOMENTUM], "0.5");
    assert_string_equal(r->v[PB_COL_BETA1], ""); /* sgd has none */
    assert_string_equal(r->v[PB_COL_SPLIT], "2");
    assert_string_equal(r->v[PB_COL_DEVICE_MAP], "");
    assert_string_equal(r->v[PB_COL_MICROBATCHES], "1");
    assert_string_equal(r->v[PB_COL_BUCKET_MB], ""); /* ddp's */
    assert_string_equal(r->v[PB_COL_CALIBRATE], "0");
    assert_string_equal(r->v[PB_COL_OVERSUBSCRIBED], ""); /* the machine's, set by the run */
    free(r);

    /* AdamW's own hyperparameters, each in its column; cuda always
     * calibrates (harness/run.c), so its rows say so */
    pb_config adamw;
    pb_config_defaults(&adamw);
    char *adamw_args[] = {"--optimizer", "adamw", "--beta1", "0.8", "--beta2", "0.95", "--eps", "1e-07",
                          "--backend", "cuda", "--strategy", "dp", "--gpus", "2", "--device-map", "1,0"};
    assert_int_equal(pb_config_parse(&adamw, 16, adamw_args, &help), PB_OK);
    r = calloc(1, sizeof *r);
    assert_non_null(r);
    pb_record_fill_config(r, &adamw);
    assert_string_equal(r->v[PB_COL_BETA1], "0.8");
    assert_string_equal(r->v[PB_COL_BETA2], "0.95");
    assert_string_equal(r->v[PB_COL_EPS], "1e-07");
    assert_string_equal(r->v[PB_COL_MOMENTUM], ""); /* adamw has none */
    assert_string_equal(r->v[PB_COL_CALIBRATE], "1");
    assert_string_equal(r->v[PB_COL_DEVICE_MAP], "1,0");
    assert_string_equal(r->v[PB_COL_SPLIT], "");
    free(r);

    assert_int_equal(pb_key_value_cmp("0.01", "0.010"), 0);
    assert_int_equal(pb_key_value_cmp("1", "1.0"), 0);
    assert_int_equal(pb_key_value_cmp("-0", "0"), 0);
    assert_true(pb_key_value_cmp("2", "10") < 0); /* not as text */
    assert_true(pb_key_value_cmp("", "0") != 0);
    assert_true(pb_key_value_cmp("0.9", "0.5") > 0);
    assert_true(pb_key_value_cmp("5", "abc") < 0 && pb_key_value_cmp("abc", "5") > 0);
    assert_int_equal(pb_key_value_cmp("sgd", "sgd"), 0);
    /* lists (--device-map, --split) are text: a leading number is not the value */
    assert_true(pb_key_value_cmp("0,1", "0,0") != 0 && pb_key_value_cmp("2,2", "2") != 0);
    assert_true(pb_key_uses(PB_KEY_SWEEP, PB_COL_ITERS) && !pb_key_uses(PB_KEY_PAIR, PB_COL_ITERS));
    assert_true(pb_key_uses(PB_KEY_PAIR, PB_COL_MOMENTUM) && !pb_key_uses(PB_KEY_SWEEP, PB_COL_PARAMS));

    /* rows differing in one key column only, the first or the last of the
     * key, or --sequence-parallel, are other configurations; in iters only,
     * the same pair */
    static const pb_column vary[] = {PB_COL_STRATEGY, PB_COL_DEVICE_MAP, PB_COL_ITERS, PB_COL_SEQUENCE_PARALLEL};
    for (size_t i = 0; i < sizeof vary / sizeof vary[0]; i++) {
        static char text[1 << 16];
        size_t n = pb_results_header(text, sizeof text);
        r = calloc(1, sizeof *r);
        assert_non_null(r);
        pb_record_fill_config(r, &cfg);
        n += pb_results_format(r, text + n, sizeof text - n);
        pb_record_set(r, vary[i], "9");
        n += pb_results_format(r, text + n, sizeof text - n);
        free(r);
        pb_csv t;
        assert_int_equal(pb_csv_parse("k.csv", text, n, &t), PB_OK);
        pb_key pair, sweep;
        pb_key_init(&pair, PB_KEY_PAIR, &t, NULL);
        pb_key_init(&sweep, PB_KEY_SWEEP, &t, NULL);
        assert_int_equal(pb_key_cmp(&pair, &t, 0, &t, 0), 0);
        assert_int_equal(pb_key_cmp(&pair, &t, 0, &t, 1) != 0, vary[i] != PB_COL_ITERS);
        assert_true(pb_key_cmp(&sweep, &t, 0, &t, 1) != 0);
        pb_csv_free(&t);
    }
}

/* The environment rule (study/key.h): rows differ in environment where a
 * machine, library or build column holds a different value on each side;
 * an empty value (mpi on a one-process run) is not compared, nor are when
 * a row was made and what follows from its configuration. */
static void test_env_rule(void **state)
{
    (void)state;
    static const struct {
        pb_column col;
        const char *a, *b;
        bool differs;
    } cases[] = {
        {PB_COL_HOST, "a", "b", true},
        {PB_COL_GIT_REV, "1a2b", "1a2b-dirty", true},
        {PB_COL_BLAS_VERSION, "0.3.21", "0.3.26", true},
        {PB_COL_NCCL, "2.18.1", "2.21.5", true},
        {PB_COL_MPI, "", "Open MPI v4.1.4", false},
        {PB_COL_TIME_UTC, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", false},
        {PB_COL_GPU_COUNT, "1", "2", false},
        {PB_COL_P2P, "", "nvlink", false},
        {PB_COL_OVERSUBSCRIBED, "0", "1", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        static char text[1 << 16];
        size_t n = pb_results_header(text, sizeof text);
        pb_record *r = calloc(1, sizeof *r);
        assert_non_null(r);
        pb_record_clear(r);
        pb_record_set(r, PB_COL_HOST, "h");
        pb_record_set(r, PB_COL_GIT_REV, "g");
        pb_record_set(r, cases[i].col, "%s", cases[i].a);
        n += pb_results_format(r, text + n, sizeof text - n);
        pb_record_set(r, cases[i].col, "%s", cases[i].b);
        n += pb_results_format(r, text + n, sizeof text - n);
        free(r);
        pb_csv t;
        assert_int_equal(pb_csv_parse("e.csv", text, n, &t), PB_OK);
        pb_key env;
        pb_key_init(&env, PB_KEY_ENV, &t, NULL);
        size_t diff[PB_COL_COUNT];
        size_t nd = pb_key_env_diff(&env, &t, 0, &t, 1, diff);
        if (nd != (cases[i].differs ? 1u : 0u)) fail_msg("%s: %zu differences", pb_column_name(cases[i].col), nd);
        if (nd) assert_int_equal(env.col[diff[0]], cases[i].col);
        assert_int_equal(pb_key_env_diff(&env, &t, 0, &t, 0, diff), 0);
        pb_csv_free(&t);
    }
    assert_true(!pb_key_uses(PB_KEY_PAIR, PB_COL_HOST) && pb_key_uses(PB_KEY_ENV, PB_COL_HOST));
}

/* The step statistics by hand: 1..10 shuffled (n even, so p50 falls
 * between two steps), percentiles interpolated over n - 1 gaps, cv with
 * the sample (n - 1) standard deviation. */
static void test_step_stats(void **state)
{
    (void)state;
    const double v[] = {5, 1, 4, 2, 3, 10, 6, 7, 9, 8};
    double scratch[10];
    pb_stats s;
    pb_stats_compute(v, 10, scratch, &s);
    assert_true(s.min == 1.0 && s.max == 10.0 && s.mean == 5.5);
    assert_true(fabs(s.p50 - 5.5) < 1e-12);  /* position 0.5 * 9 = 4.5 */
    assert_true(fabs(s.p95 - 9.55) < 1e-12); /* position 0.95 * 9 = 8.55 */
    assert_true(fabs(s.cv - sqrt(82.5 / 9.0) / 5.5) < 1e-12);
    pb_stats_compute(v, 1, scratch, &s); /* one step: no spread */
    assert_true(s.min == 5.0 && s.p50 == 5.0 && s.p95 == 5.0 && s.max == 5.0 && s.cv == 0.0);
}

/* ------------------------------------------------------------------------ */
/* appending                                                                 */

static void test_append_new_file_writes_header_and_row(void **state)
{
    (void)state;
    tmp_csv t;
    tmp_csv_open(&t, "runs.csv");
    pb_record *r = calloc(1, sizeof *r);
    assert_non_null(r);
    fixed_record(r);
    assert_int_equal(pb_results_append(t.path, r), PB_OK);
    char *text = read_file(t.path);
    char want[2 * LINE_MAX_BYTES];
    snprintf(want, sizeof want, "%s%s", header_line(), format_fixed());
    assert_string_equal(text, want);
    free(text);
    /* a second append: one more row, no second header */
    assert_int_equal(pb_results_append(t.path, r), PB_OK);
    text = read_file(t.path);
    snprintf(want, sizeof want, "%s%s%s", header_line(), format_fixed(), format_fixed());
    assert_string_equal(text, want);
    free(text);
    /* an existing empty file gets the header too */
    write_text(t.path, "");
    assert_int_equal(pb_results_check_target(t.path), PB_OK);
    assert_int_equal(pb_results_append(t.path, r), PB_OK);
    text = read_file(t.path);
    snprintf(want, sizeof want, "%s%s", header_line(), format_fixed());
    assert_string_equal(text, want);
    free(text);
    free(r);
    tmp_csv_close(&t);
}

static void check_schema_refused(const char *content, const char *col_text, const char *found, const char *expected)
{
    tmp_csv t;
    tmp_csv_open(&t, "old.csv");
    write_text(t.path, content);
    pb_record *r = calloc(1, sizeof *r);
    assert_non_null(r);
    fixed_record(r);

    pb_error_clear();
    assert_int_equal(pb_results_append(t.path, r), PB_ERR_SCHEMA);
    const char *msg = pb_error_message();
    if (!strstr(msg, col_text) || !strstr(msg, found) || !strstr(msg, expected)) print_message("message: %s\n", msg);
    assert_non_null(strstr(msg, t.path));
    assert_non_null(strstr(msg, col_text));
    assert_non_null(strstr(msg, found));
    assert_non_null(strstr(msg, expected));
    assert_null(strchr(msg, '\n'));
    char *after = read_file(t.path);
    assert_string_equal(after, content); /* unchanged */
    free(after);

    /* the pre-run check says the same, so a run is refused before it starts */
    pb_error_clear();
    assert_int_equal(pb_results_check_target(t.path), PB_ERR_SCHEMA);
    assert_non_null(strstr(pb_error_message(), col_text));
    assert_int_equal(pb_status_exit_code(PB_ERR_SCHEMA), 2);
    pb_error_clear();
    free(r);
    tmp_csv_close(&t);
}

static void test_append_other_schema_refused(void **state)
{
    (void)state;
    /* a renamed strategy column */
    char content[16384];
    char hdr[8192];
    snprintf(hdr, sizeof hdr, "%s", header_line());
    char *third = strstr(hdr, ",strategy,");
    assert_non_null(third);
    snprintf(content, sizeof content, "%.*s,strategy_name,%s1,2,3\n", (int)(third - hdr), hdr, third + strlen(",strategy,"));
    char at[32];
    snprintf(at, sizeof at, "column %d", PB_COL_STRATEGY + 1);
    check_schema_refused(content, at, "'strategy_name'", "expected 'strategy'");

    /* an older schema: the same columns minus the last one */
    snprintf(hdr, sizeof hdr, "%s", header_line());
    char *last = strrchr(hdr, ',');
    assert_non_null(last);
    snprintf(content, sizeof content, "%.*s\n", (int)(last - hdr), hdr);
    char col[32];
    snprintf(col, sizeof col, "column %d", PB_COL_COUNT);
    check_schema_refused(content, col, "''", "expected 'error'");

    /* not a CSV of ours at all */
    check_schema_refused("a,b\n1,2\n", "column 1", "'a'", "expected 'time_utc'");
}

static void test_append_after_torn_line(void **state)
{
    (void)state;
    tmp_csv t;
    tmp_csv_open(&t, "runs.csv");
    const char *row = format_fixed();
    char content[3 * LINE_MAX_BYTES];
    /* a writer killed mid-row left 40 bytes of it */
    snprintf(content, sizeof content, "%s%s%.40s", header_line(), row, row);
    write_text(t.path, content);
    pb_record *r = calloc(1, sizeof *r);
    assert_non_null(r);
    fixed_record(r);
    assert_int_equal(pb_results_append(t.path, r), PB_OK);
    char *text = read_file(t.path);
    size_t lc = strlen(content), lr = strlen(row);
    char *want = malloc(lc + 1 + lr + 1);
    assert_non_null(want);
    memcpy(want, content, lc);
    want[lc] = '\n';
    memcpy(want + lc + 1, row, lr + 1);
    assert_string_equal(text, want);
    free(want);
    assert_int_equal(count_lines(text), 4);
    /* the new row is whole, on its own line */
    const char *last = text + strlen(text) - strlen(row);
    assert_true(last[-1] == '\n');
    assert_string_equal(last, row);
    free(text);
    free(r);
    tmp_csv_close(&t);
}

#define ROWS_PER_WRITER 200

static void test_concurrent_appends_whole_lines(void **state)
{
    (void)state;
    tmp_csv t;
    tmp_csv_open(&t, "runs.csv");
    pid_t pids[2];
    for (int w = 0; w < 2; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            pb_record *r = calloc(1, sizeof *r);
            if (!r) _exit(3);
            for (int i = 0; i < ROWS_PER_WRITER; i++) {
                marked_record(r, w, i);
                if (pb_results_append(t.path, r) != PB_OK) _exit(1);
            }
            free(r);
            _exit(0);
        }
    }
    for (int w = 0; w < 2; w++) {
        int status = 0;
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }

    char *text = read_file(t.path);
    assert_non_null(text);
    assert_int_equal(count_lines(text), 2 * ROWS_PER_WRITER + 1);
    assert_int_equal(text[strlen(text) - 1], '\n');
    const char *hdr = header_line();
    assert_memory_equal(text, hdr, strlen(hdr));
    bool seen[2][ROWS_PER_WRITER];
    memset(seen, 0, sizeof seen);
    const char *p = text + strlen(hdr);
    static char want[LINE_MAX_BYTES];
    for (int n = 0; n < 2 * ROWS_PER_WRITER; n++) {
        size_t len = strcspn(p, "\n");
        assert_int_equal(csv_field_count(p, len), PB_COL_COUNT);
        int w = -1, i = -1;
        assert_int_equal(sscanf(p, "w%d-%d-c0,", &w, &i), 2);
        assert_true(w >= 0 && w < 2 && i >= 0 && i < ROWS_PER_WRITER);
        assert_false(seen[w][i]);
        seen[w][i] = true;
        /* byte for byte the row that writer formatted */
        size_t wl = marked_row(want, sizeof want, w, i);
        assert_int_equal(len + 1, wl);
        assert_memory_equal(p, want, wl);
        p += len + 1;
    }
    assert_int_equal(*p, '\0');
    free(text);
    tmp_csv_close(&t);
}

/* ------------------------------------------------------------------------ */
/* pre-run target checks                                                     */

static void test_check_target(void **state)
{
    (void)state;
    tmp_csv t;
    tmp_csv_open(&t, "runs.csv");

    /* good path: accepted, and nothing is left behind */
    assert_int_equal(pb_results_check_target(t.path), PB_OK);
    assert_false(file_exists(t.path));
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", t.dir);
    assert_int_equal(system(cmd), 0);

    /* an existing file with this build's header */
    write_text(t.path, header_line());
    assert_int_equal(pb_results_check_target(t.path), PB_OK);

    /* missing folder */
    char path[4400];
    snprintf(path, sizeof path, "%s/missing/runs.csv", t.dir);
    pb_error_clear();
    assert_int_equal(pb_results_check_target(path), PB_ERR_USAGE);
    assert_non_null(strstr(pb_error_message(), "--out"));
    assert_non_null(strstr(pb_error_message(), "does not exist"));
    assert_false(file_exists(path));

    /* a directory path */
    pb_error_clear();
    assert_int_equal(pb_results_check_target(t.dir), PB_ERR_USAGE);
    assert_non_null(strstr(pb_error_message(), "is a directory"));

    /* a file "inside" a regular file */
    snprintf(path, sizeof path, "%s/sub.csv", t.path);
    pb_error_clear();
    assert_int_equal(pb_results_check_target(path), PB_ERR_USAGE);
    assert_non_null(strstr(pb_error_message(), "is not a folder"));

    /* a folder nobody can create files in, root included (procfs) */
    pb_error_clear();
    assert_int_equal(pb_results_check_target("/proc/parbench-runs.csv"), PB_ERR_USAGE);
    assert_non_null(strstr(pb_error_message(), "cannot create"));

    pb_error_clear();
    tmp_csv_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_field_marked_cut),
        cmocka_unit_test_setup(test_header_matches_golden, setup_clear),
        cmocka_unit_test_setup(test_columns_are_well_named, setup_clear),
        cmocka_unit_test_setup(test_row_matches_golden, setup_clear),
        cmocka_unit_test_setup(test_columns_kinds_documented, setup_clear),
        cmocka_unit_test_setup(test_fill_config_and_key_values, setup_clear),
        cmocka_unit_test_setup(test_step_stats, setup_clear),
        cmocka_unit_test_setup(test_format_too_small_buffer, setup_clear),
        cmocka_unit_test_setup(test_append_new_file_writes_header_and_row, setup_clear),
        cmocka_unit_test_setup(test_append_other_schema_refused, setup_clear),
        cmocka_unit_test_setup(test_append_after_torn_line, setup_clear),
        cmocka_unit_test_setup(test_concurrent_appends_whole_lines, setup_clear),
        cmocka_unit_test_setup(test_check_target, setup_clear),
        cmocka_unit_test(test_env_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
