/* bench plot: PNG and SVG from a crafted results CSV (rows written through
 * harness/results.h, fake dp/ddp/mp rows at 1, 2 and 4 devices so every plot
 * has data), plots skipped with a notice when their rows are missing, the
 * baseline-vs-current comparison, and the errors: gnuplot not on PATH, a
 * missing CSV, a file that is not a results CSV, bad flags; the reader's
 * rules (those of bench compare), no image left empty or partial when
 * gnuplot fails, and SIGTERM removing the temporary folder.
 *
 * The tests that draw need gnuplot on PATH (scripts/run-tests.sh installs
 * gnuplot-nox); without it they are skipped, and the not-found test runs. */
#include "tests/common/test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>

#include "harness/results.h"

static const char *const all_plots[] = {"throughput", "efficiency", "breakdown", "ddp-comm",
                                        "mp-bubble",  "memory",     "comm-volume"};
#define N_PLOTS (sizeof all_plots / sizeof all_plots[0])

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */

static bool have_gnuplot(void)
{
    const char *path = getenv("PATH");
    if (!path) return false;
    char *copy = strdup(path);
    bool found = false;
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        char exe[4096];
        snprintf(exe, sizeof exe, "%s/gnuplot", dir);
        found = access(exe, X_OK) == 0;
    }
    free(copy);
    return found;
}

typedef struct fake {
    const char *strategy;
    int devices;
    double samples_per_s;
    const char *status;
} fake;

/* One row of the fake mlp-s study on an H100 whose name needs CSV quoting
 * (a comma, double quotes) and gnuplot quoting (an apostrophe). */
static void fake_record(pb_record *r, const fake *f, const char *day)
{
    pb_record_clear(r);
    pb_record_set(r, PB_COL_TIME_UTC, "%sT10:00:00Z", day);
    pb_record_set(r, PB_COL_STATUS, "%s", f->status);
    pb_record_set(r, PB_COL_STRATEGY, "%s", f->strategy);
    pb_record_set(r, PB_COL_BACKEND, "cuda");
    pb_record_set(r, PB_COL_COMM, "%s", strcmp(f->strategy, "single") == 0 ? "none" : "nccl");
    pb_record_set(r, PB_COL_WORKLOAD, "mlp-s");
    pb_record_set(r, PB_COL_IN, "1024");
    pb_record_set(r, PB_COL_HIDDEN, "1024");
    pb_record_set(r, PB_COL_LAYERS, "4");
    pb_record_set(r, PB_COL_CLASSES, "1000");
    pb_record_set(r, PB_COL_BATCH_GLOBAL, "%d", 256 * f->devices);
    /* mp does not split the batch: each stage sees all of it (as the harness records) */
    pb_record_set(r, PB_COL_BATCH_PER_DEVICE, "%d", strcmp(f->strategy, "mp") == 0 ? 256 * f->devices : 256);
    pb_record_set(r, PB_COL_DEVICES, "%d", f->devices);
    pb_record_set(r, PB_COL_RANKS, "%d", strcmp(f->strategy, "ddp") == 0 ? f->devices : 1);
    pb_record_set(r, PB_COL_OVERSUBSCRIBED, "0");
    pb_record_set(r, PB_COL_PRECISION, "bf16");
    pb_record_set(r, PB_COL_OPTIMIZER, "sgd");
    pb_record_set(r, PB_COL_THREADS, "2");
    pb_record_set(r, PB_COL_CUDA_GRAPH, "0");
    pb_record_set(r, PB_COL_GPU_NAME, "NVIDIA \"H100\" 80GB, it's SXM");
    pb_record_set(r, PB_COL_CPU_MODEL, "Intel Xeon");
    if (strcmp(f->status, "ok") != 0) {
        pb_record_set(r, PB_COL_ERROR, "out of memory");
        return;
    }
    double step = 256.0 * f->devices / f->samples_per_s * 1e3;
    pb_record_num(r, PB_COL_STEP_MS_MEAN, step);
    pb_record_num(r, PB_COL_STEP_MS_P50, step);
    pb_record_num(r, PB_COL_SAMPLES_PER_S, f->samples_per_s);
    pb_record_num(r, PB_COL_LOAD_MS, 0.01 * step);
    pb_record_num(r, PB_COL_H2D_MS, 0.02 * step);
    pb_record_num(r, PB_COL_FWD_MS, 0.3 * step);
    pb_record_num(r, PB_COL_BWD_MS, 0.5 * step);
    pb_record_num(r, PB_COL_OPT_MS, 0.1 * step);
    pb_record_num(r, PB_COL_COMM_MS, 0);
    pb_record_num(r, PB_COL_SYNC_MS, 0);
    /* the largest device's plan: 4 MB each of parameters, gradients and
     * momentum (a stage's share under mp), 1.5 MB of activations; the
     * measured peak 0.25 MB above it */
    double share = strcmp(f->strategy, "mp") == 0 ? 4.0 / f->devices : 4.0;
    pb_record_num(r, PB_COL_MEM_PLAN_PARAMS_MB, share);
    pb_record_num(r, PB_COL_MEM_PLAN_GRADS_MB, share);
    pb_record_num(r, PB_COL_MEM_PLAN_OPTIM_MB, share);
    pb_record_num(r, PB_COL_MEM_PLAN_ACTS_MB, 1.5);
    pb_record_num(r, PB_COL_MEM_PLAN_MB, 3 * share + 1.5);
    pb_record_num(r, PB_COL_PEAK_MEM_MB, 3 * share + 1.75);
    if (strcmp(f->strategy, "dp") == 0) {
        pb_record_num(r, PB_COL_SCATTER_MS, 0.01 * step);
        pb_record_num(r, PB_COL_REPLICATE_MS, 0.02 * step);
        pb_record_num(r, PB_COL_GATHER_MS, 0.01 * step);
        pb_record_num(r, PB_COL_REDUCE_MS, 0.02 * step);
    } else if (strcmp(f->strategy, "ddp") == 0) {
        pb_record_num(r, PB_COL_COMM_MS, 0.2 * step);
        pb_record_num(r, PB_COL_SYNC_MS, 0.04 * step);
        pb_record_num(r, PB_COL_OVERLAP_PCT, 80);
        pb_record_set(r, PB_COL_BUCKET_MB, "25");
        /* a ring all-reduce of 4 MB: 2(N-1)/N x 4 MB */
        pb_record_num(r, PB_COL_COMM_BYTES_PER_STEP, 2.0 * (f->devices - 1) / f->devices * 4 * 1048576.0);
    } else if (strcmp(f->strategy, "mp") == 0) {
        int m = 4, p = f->devices;
        pb_record_set(r, PB_COL_MICROBATCHES, "%d", m);
        pb_record_num(r, PB_COL_P2P_MS, 0.02 * step);
        pb_record_num(r, PB_COL_BUBBLE_FRAC_THEORY, (p - 1.0) / (m + p - 1.0));
        pb_record_num(r, PB_COL_BUBBLE_FRAC, 1.1 * (p - 1.0) / (m + p - 1.0));
        pb_record_num(r, PB_COL_BUBBLE_MS, 1.1 * (p - 1.0) / (m + p - 1.0) * step);
    }
}

/* A results CSV of the rows in f (n of them), each throughput scaled by
 * `scale`; optionally ending in a partial line as a killed writer leaves. */
static void write_csv(const char *path, const fake *f, int n, double scale, const char *day, bool partial_tail)
{
    FILE *out = fopen(path, "wb");
    assert_non_null(out);
    char *buf = malloc(1 << 17);
    pb_record *r = malloc(sizeof *r);
    assert_non_null(buf);
    assert_non_null(r);
    size_t len = pb_results_header(buf, 1 << 17);
    assert_true(len > 0);
    fwrite(buf, 1, len, out);
    for (int i = 0; i < n; i++) {
        fake g = f[i];
        g.samples_per_s *= scale;
        fake_record(r, &g, day);
        len = pb_results_format(r, buf, 1 << 17);
        assert_true(len > 0);
        fwrite(buf, 1, len, out);
    }
    if (partial_tail) fputs("2026-01-02T10:00:00Z,ok,ddp,cuda,nccl,mlp-s,1024,10", out);
    free(r);
    free(buf);
    assert_int_equal(fclose(out), 0);
}

static const fake study[] = {
    {"single", 1, 10000, "ok"}, {"single", 1, 10200, "ok"}, /* a repeat: averaged */
    {"single", 1, 0, "failed"},                             /* skipped */
    {"dp", 1, 9500, "ok"},      {"dp", 2, 14000, "ok"},      {"dp", 4, 24000, "ok"},
    {"ddp", 1, 9800, "ok"},     {"ddp", 2, 19000, "ok"},     {"ddp", 4, 37000, "ok"},
    {"mp", 1, 9600, "ok"},      {"mp", 2, 12000, "ok"},      {"mp", 4, 17000, "ok"},
};
#define N_STUDY (int)(sizeof study / sizeof study[0])

static void path_of(char *buf, size_t len, const char *dir, const char *name, const char *ext)
{
    snprintf(buf, len, "%s/%s.%s", dir, name, ext);
}

static void assert_png(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s was not written", path);
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, sizeof magic, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    assert_int_equal(got, 8);
    assert_memory_equal(magic, png_magic, 8);
    assert_true(size > 1000);
}

static void assert_svg(const char *path)
{
    char *text = read_file(path);
    if (!text) fail_msg("%s was not written", path);
    assert_true(strlen(text) > 1000);
    assert_non_null(strstr(text, "<svg"));
    assert_non_null(strstr(text, "</svg>"));
    free(text);
}

/* Appends one row of f to path with the n columns cols set to vals as text. */
static void append_with_cols(const char *path, const fake *f, const pb_column *cols, const char *const *vals, int n)
{
    pb_record *r = malloc(sizeof *r);
    char *buf = malloc(1 << 17);
    assert_non_null(r);
    assert_non_null(buf);
    fake_record(r, f, "2026-01-02");
    for (int i = 0; i < n; i++) pb_record_set(r, cols[i], "%s", vals[i]);
    size_t len = pb_results_format(r, buf, 1 << 17);
    assert_true(len > 0);
    FILE *out = fopen(path, "ab");
    assert_non_null(out);
    fwrite(buf, 1, len, out);
    assert_int_equal(fclose(out), 0);
    free(buf);
    free(r);
}

static void append_with(const char *path, const fake *f, pb_column col, const char *value)
{
    append_with_cols(path, f, &col, &value, 1);
}

/* What a person reads in an SVG gnuplot drew: every <text> (titles, tic
 * labels, legend) at most `cols` characters, so none runs past the 1100-pixel
 * canvas (about 7 pixels a character; 100 by design, 104 with " ..."); returns the
 * largest text that is a number alone (the top tic of the y axes). */
static double svg_texts(const char *path, size_t cols)
{
    char *text = read_file(path);
    if (!text) fail_msg("%s was not written", path);
    double top = -INFINITY;
    for (const char *p = text; (p = strstr(p, "<text"));) {
        const char *start = strchr(p, '>'), *end = strstr(p, "</text>");
        assert_non_null(start);
        assert_non_null(end);
        size_t n = (size_t)(end - start - 1);
        if (n > cols) fail_msg("%s: a text of %zu characters runs off the canvas: %.*s", path, n, (int)n, start + 1);
        char *num_end;
        double v = strtod(start + 1, &num_end);
        if (num_end == end && num_end != start + 1 && v > top) top = v;
        p = end;
    }
    free(text);
    return top;
}

/* The heights of the left (text-anchor end) and right (start) axes' numeric
 * tic labels in an SVG gnuplot drew, top to bottom; returns how many of each. */
static void svg_tic_heights(const char *path, double *left, int *nl, double *right, int *nr, int cap)
{
    char *text = read_file(path);
    if (!text) fail_msg("%s was not written", path);
    *nl = *nr = 0;
    for (const char *p = text; (p = strstr(p, "<g transform=\"translate("));) {
        double x, y;
        const char *t = strstr(p, "<text>"), *anchor = strstr(p, "text-anchor=\"");
        p += 10;
        if (!t || !anchor || anchor > t || sscanf(p + 15, "%lf,%lf", &x, &y) != 2) continue;
        char *end;
        strtod(t + 6, &end);
        if (end == t + 6 || strncmp(end, "</text>", 7) != 0) continue; /* not a number */
        bool is_left = strncmp(anchor + 13, "end", 3) == 0, is_right = strncmp(anchor + 13, "start", 5) == 0;
        if (is_left && *nl < cap) left[(*nl)++] = y;
        if (is_right && *nr < cap) right[(*nr)++] = y;
    }
    free(text);
}

/* Did gnuplot say anything? It warns on stderr (which bench passes on) when
 * a plot reads wrong: an empty range, an undefined value, a missing file. */
static void assert_no_gnuplot_warning(const char *err)
{
    for (const char *p = err; *p; p++)
        if (strncasecmp(p, "warning", 7) == 0) fail_msg("gnuplot warned:\n%s", err);
}

/* ------------------------------------------------------------------------ */
/* tests                                                                     */

static void test_plot_writes_every_plot(void **state)
{
    (void)state;
    if (!have_gnuplot()) skip();
    char *dir = make_temp_dir();
    char csv[512], out[512];
    snprintf(csv, sizeof csv, "%s/runs.csv", dir);
    snprintf(out, sizeof out, "%s/img/sub", dir); /* created, parents too */
    write_csv(csv, study, N_STUDY, 1.0, "2026-01-02", true);
    bench_result *r = calloc(1, sizeof *r);
    run_bench(r, (char *[]){"plot", csv, "--out", out, NULL});
    if (r->exit_code != 0) fail_msg("exit %d\nstdout:\n%s\nstderr:\n%s", r->exit_code, r->out, r->err);
    /* one PNG and one SVG per plot, their paths on stdout, nothing else */
    assert_int_equal(count_lines(r->out), 2 * (int)N_PLOTS);
    for (size_t i = 0; i < N_PLOTS; i++) {
        char name[128], png[1024], svg[1024];
        snprintf(name, sizeof name, "mlp-s-cuda-%s", all_plots[i]);
        path_of(png, sizeof png, out, name, "png");
        path_of(svg, sizeof svg, out, name, "svg");
        assert_png(png);
        assert_svg(svg);
        assert_non_null(strstr(r->out, png));
        assert_non_null(strstr(r->out, svg));
    }
    /* the rows it could not use are named, not silently dropped */
    assert_non_null(strstr(r->err, "skipped 1 row(s) whose status is not ok"));
    assert_non_null(strstr(r->err, "partial last line"));
    assert_null(strstr(r->err, "error"));
    assert_no_gnuplot_warning(r->err);
    /* every text fits the canvas (the titles wrapped); the bubble's axis
     * ends at least 10 % above its tallest bar (mp x4, m=4: 1.1 x 3/7) */
    for (size_t i = 0; i < N_PLOTS; i++) {
        char name[128], svg[1024];
        snprintf(name, sizeof name, "mlp-s-cuda-%s", all_plots[i]);
        path_of(svg, sizeof svg, out, name, "svg");
        double top = svg_texts(svg, 104);
        if (strcmp(all_plots[i], "mp-bubble") == 0 && !(top >= 1.1 * 110.0 * 3 / 7))
            fail_msg("the bubble plot's axis stops at %g, its tallest bar is %.1f", top, 110.0 * 3 / 7);
    }
    /* titles name workload, backend, device and date; axes carry units */
    char svg[1024];
    path_of(svg, sizeof svg, out, "mlp-s-cuda-throughput", "svg");
    char *text = read_file(svg);
    assert_non_null(text);
    /* quotes and an apostrophe reach the title as they are in the CSV */
    assert_non_null(strstr(text, "Throughput: mlp-s, cuda, NVIDIA \"H100\" 80GB, it's SXM, 2026-01-02"));
    assert_non_null(strstr(text, "samples/s"));
    assert_non_null(strstr(text, "ideal: N x single x1"));
    /* weak scaling: the batch each series was given, true for each
     * strategy (mp does not split its batch: its global batch grows) */
    assert_non_null(strstr(text, "dp, batch/dev 256"));
    assert_non_null(strstr(text, "mp, global batch 256 x N"));
    assert_null(strstr(text, "batch/dev 512"));
    free(text);
    free(r);
    remove_temp_dir(dir);
}

/* A bar column drawn nowhere has no legend entry: ddp runs whose
 * all-reduce is all exposed (sync = comm, nothing hidden), and a phase too
 * small to see in any bar (p2p at 0.2 % of the step). */
static void test_plot_no_legend_for_empty_bars(void **state)
{
    (void)state;
    if (!have_gnuplot()) skip();
    char *dir = make_temp_dir();
    char csv[512];
    snprintf(csv, sizeof csv, "%s/runs.csv", dir);
    static const fake rows[] = {{"ddp", 2, 19000, "ok"}, {"ddp", 4, 37000, "ok"}};
    write_csv(csv, rows, 0, 1.0, "2026-01-02", false);
    for (int i = 0; i < 2; i++) {
        double step = 256.0 * rows[i].devices / rows[i].samples_per_s * 1e3;
        char sync[32], p2p[32];
        snprintf(sync, sizeof sync, "%.6g", 0.2 * step); /* = comm_ms: nothing hidden */
        snprintf(p2p, sizeof p2p, "%.6g", 0.002 * step); /* a sliver no one can see */
        append_with_cols(csv, &rows[i], (pb_column[]){PB_COL_SYNC_MS, PB_COL_P2P_MS}, (const char *[]){sync, p2p}, 2);
    }
    bench_result *r = calloc(1, sizeof *r);
    run_bench(r, (char *[]){"plot", csv, "--out", dir, NULL});
    if (r->exit_code != 0) fail_msg("exit %d\nstderr:\n%s", r->exit_code, r->err);
    assert_no_gnuplot_warning(r->err);
    char svg[1024];
    path_of(svg, sizeof svg, dir, "mlp-s-cuda-ddp-comm", "svg");
    char *text = read_file(svg);
    assert_non_null(text);
    assert_non_null(strstr(text, "exposed (sync)"));
    assert_null(strstr(text, "hidden behind backward"));
    free(text);
    /* the overlap's right axis has its tics on the left axis's grid lines */
    double left[32], right[32];
    int nl, nr;
    svg_tic_heights(svg, left, &nl, right, &nr, 32);
    if (nl != nr || nl < 2) fail_msg("%d tics on the left axis, %d on the right: they do not share the grid", nl, nr);
    for (int i = 0; i < nl; i++) assert_true(fabs(left[i] - right[i]) < 0.5);
    path_of(svg, sizeof svg, dir, "mlp-s-cuda-breakdown", "svg");
    text = read_file(svg);
    assert_non_null(text);
    assert_non_null(strstr(text, ">bwd<"));
    assert_null(strstr(text, ">p2p<"));
    free(text);
    free(r);
    remove_temp_dir(dir);
}

static void test_plot_skips_plots_without_data(void **state)
{
    (void)state;
    if (!have_gnuplot()) skip();
    char *dir = make_temp_dir();
    char csv[512];
    snprintf(csv, sizeof csv, "%s/single.csv", dir);
    static const fake only_single[] = {{"single", 1, 10000, "ok"}};
    write_csv(csv, only_single, 1, 1.0, "2026-01-02", false);
    bench_result *r = calloc(1, sizeof *r);
    run_bench(r, (char *[]){"plot", csv, "--out", dir, NULL});
    if (r->exit_code != 0) fail_msg("exit %d\nstderr:\n%s", r->exit_code, r->err);
    assert_no_gnuplot_warning(r->err);
    assert_int_equal(count_lines(r->out), 4); /* the breakdown and the memory */
    char png[1024], svg[1024];
    path_of(png, sizeof png, dir, "mlp-s-cuda-memory", "png");
    assert_png(png);
    path_of(png, sizeof png, dir, "mlp-s-cuda-breakdown", "png");
    path_of(svg, sizeof svg, dir, "mlp-s-cuda-breakdown", "svg");
    assert_png(png);
    assert_svg(svg);
    assert_non_null(strstr(r->err, "skipped throughput and scaling efficiency: no ok rows on more than one device"));
    assert_non_null(strstr(r->err, "skipped ddp exposed vs hidden communication: no ddp rows"));
    assert_non_null(strstr(r->err, "skipped mp pipeline bubble: no mp rows"));
    assert_non_null(
        strstr(r->err, "skipped communication volume: no communication volume (comm_bytes_per_step) in the rows"));
    path_of(png, sizeof png, dir, "mlp-s-cuda-ddp-comm", "png");
    assert_false(file_exists(png));
    /* --quiet keeps the notices off stderr, the paths on stdout */
    run_bench(r, (char *[]){"plot", csv, "--out", dir, "--quiet", NULL});
    assert_int_equal(r->exit_code, 0);
    assert_string_equal(r->err, "");
    assert_int_equal(count_lines(r->out), 4);
    free(r);
    remove_temp_dir(dir);
}

/* The memory plot's data: a bar per configuration with the planned parts
 * and the measured peak; the communication plot's: a line per strategy
 * that has a volume, in MB per step against devices. */
static void test_plot_memory_and_comm_volume(void **state)
{
    (void)state;
    if (!have_gnuplot()) skip();
    char *dir = make_temp_dir();
    char csv[512], dat[1024];
    snprintf(csv, sizeof csv, "%s/runs.csv", dir);
    write_csv(csv, study, N_STUDY, 1.0, "2026-01-02", false);
    bench_result *r = calloc(1, sizeof *r);
    run_bench(r, (char *[]){"plot", csv, "--out", dir, "--keep-data", NULL});
    if (r->exit_code != 0) fail_msg("exit %d\nstderr:\n%s", r->exit_code, r->err);
    assert_no_gnuplot_warning(r->err);
    path_of(dat, sizeof dat, dir, "mlp-s-cuda-memory", "dat");
    char *text = read_file(dat);
    assert_non_null(text);
    if (strncmp(text,
                "\"config\" \"settings\" \"parameters (plan)\" \"gradients (plan)\" \"optimizer state (plan)\" "
                "\"activations (plan)\" \"measured peak (peak_mem_mb)\"\n",
                strlen("\"config\" \"settings\" \"parameters (plan)\" \"gradients (plan)\" \"optimizer state "
                       "(plan)\" \"activations (plan)\" \"measured peak (peak_mem_mb)\"\n")) != 0)
        fail_msg("memory.dat:\n%s", text);
    if (!strstr(text, "\"ddp x4\" \"batch/dev 256\" 4 4 4 1.5 13.75\n") ||
        !strstr(text, "\"mp x4\" \"global batch 1024\" 1 1 1 1.5 4.75\n")) /* a stage's share */
        fail_msg("memory.dat:\n%s", text);
    free(text);
    path_of(dat, sizeof dat, dir, "mlp-s-cuda-comm-volume", "dat");
    text = read_file(dat);
    assert_non_null(text);
    /* ddp alone has a volume: 2(N-1)/N x 4 MB */
    if (strcmp(text, "\"ddp, batch/dev 256\" \"MB\"\n1 0\n2 4\n4 6\n") != 0) fail_msg("comm-volume.dat:\n%s", text);
    free(text);
    char svg[1024];
    path_of(svg, sizeof svg, dir, "mlp-s-cuda-memory", "svg");
    text = read_file(svg);
    assert_non_null(text);
    assert_non_null(strstr(text, "memory of the largest device (MB)"));
    free(text);
    free(r);
    remove_temp_dir(dir);
}

static void test_plot_compare(void **state)
{
    (void)state;
    if (!have_gnuplot()) skip();
    char *dir = make_temp_dir();
    char base[512], cur[512];
    snprintf(base, sizeof base, "%s/base.csv", dir);
    snprintf(cur, sizeof cur, "%s/cur.csv", dir);
    write_csv(base, study, N_STUDY, 1.0, "2026-01-02", false);
    write_csv(cur, study, N_STUDY - 3, 0.95, "2026-01-09", false); /* no mp rows: 3 configs only in base */
    bench_result *r = calloc(1, sizeof *r);
    run_bench(r, (char *[]){"plot", "--compare", base, cur, "--out", dir, NULL});
    if (r->exit_code != 0) fail_msg("exit %d\nstderr:\n%s", r->exit_code, r->err);
    assert_no_gnuplot_warning(r->err);
    char png[1024], svg[1024];
    path_of(png, sizeof png, dir, "compare-samples_per_s", "png");
    path_of(svg, sizeof svg, dir, "compare-samples_per_s", "svg");
    assert_png(png);
    assert_svg(svg);
    assert_int_equal(count_lines(r->out), 2);
    assert_non_null(strstr(r->err, "3 configuration(s) only in"));
    char *text = read_file(svg);
    assert_non_null(text);
    assert_non_null(strstr(text, "-5.0 %"));
    assert_non_null(strstr(text, "samples_per_s (samples/s)"));
    free(text);

    /* another metric; one that is not a column is a usage error */
    run_bench(r, (char *[]){"plot", "--compare", base, cur, "--out", dir, "--metric", "step_ms_p50", NULL});
    assert_int_equal(r->exit_code, 0);
    assert_no_gnuplot_warning(r->err);
    path_of(png, sizeof png, dir, "compare-step_ms_p50", "png");
    assert_png(png);
    /* a metric bench compare does not judge: the values, no verdict */
    run_bench(r, (char *[]){"plot", "--compare", base, cur, "--out", dir, "--metric", "comm_ms", NULL});
    assert_int_equal(r->exit_code, 0);
    assert_no_gnuplot_warning(r->err);
    path_of(png, sizeof png, dir, "compare-comm_ms", "png");
    assert_png(png);
    run_bench(r, (char *[]){"plot", "--compare", base, cur, "--out", dir, "--metric", "nope", NULL});
    assert_int_equal(r->exit_code, 2);
    assert_non_null(strstr(r->err, "--metric nope"));
    /* --compare takes two files */
    run_bench(r, (char *[]){"plot", "--compare", base, "--out", dir, NULL});
    assert_int_equal(r->exit_code, 2);

    /* bench compare's verdict drawn: ddp x2 30 % slower over three repeats
     * with a small spread is a regression (its colour, its word), single
     * x1 unchanged is not; each side's spread is an error bar */
    static const fake reg[] = {{"single", 1, 10000, "ok"}, {"single", 1, 10100, "ok"}, {"single", 1, 9900, "ok"},
                               {"ddp", 2, 19000, "ok"},    {"ddp", 2, 19200, "ok"},    {"ddp", 2, 18800, "ok"}};
    fake slow[6];
    memcpy(slow, reg, sizeof reg);
    for (int i = 3; i < 6; i++) slow[i].samples_per_s *= 0.7;
    write_csv(base, reg, 6, 1.0, "2026-01-02", false);
    write_csv(cur, slow, 6, 1.0, "2026-01-09", false);
    run_bench(r, (char *[]){"plot", "--compare", base, cur, "--out", dir, "--keep-data", NULL});
    if (r->exit_code != 0) fail_msg("exit %d\nstderr:\n%s", r->exit_code, r->err);
    assert_no_gnuplot_warning(r->err);
    path_of(svg, sizeof svg, dir, "compare-samples_per_s", "svg");
    svg_texts(svg, 104);
    text = read_file(svg);
    assert_non_null(text);
    assert_non_null(strstr(text, "-30.0 %"));
    assert_non_null(strstr(text, "regression"));
    assert_non_null(strstr(text, "rgb(213,  94,   0)")); /* the regression's colour */
    assert_non_null(strstr(text, "no-change band (baseline +- 5 %)"));
    free(text);
    char dat[1024];
    path_of(dat, sizeof dat, dir, "compare-samples_per_s", "dat");
    text = read_file(dat);
    assert_non_null(text);
    const char *ddp = strstr(text, "\"ddp x2\"");
    assert_non_null(ddp);
    for (int quotes = 0; quotes < 4; ddp++) quotes += *ddp == '"'; /* past the two labels */
    char verdict[32];
    double b, c, change, eb, ec;
    assert_int_equal(sscanf(ddp, "%lf %lf %lf %lf %lf \"%31[^\"]\"", &b, &c, &change, &eb, &ec, verdict), 6);
    assert_string_equal(verdict, "regression");
    assert_true(eb > 0 && ec > 0); /* error bars from the repeats */
    assert_non_null(strstr(text, "\"same\""));
    free(text);
    /* bench compare's --threshold and --alpha: at 40 % the 30 % slowdown is
     * no regression, and the band says the threshold drawn */
    run_bench(r, (char *[]){"plot", "--compare", base, cur, "--out", dir, "--keep-data", "--threshold", "40", "--alpha",
                            "0.05", NULL});
    if (r->exit_code != 0) fail_msg("exit %d\nstderr:\n%s", r->exit_code, r->err);
    text = read_file(svg);
    assert_non_null(text);
    assert_non_null(strstr(text, "no-change band (baseline +- 40 %)"));
    assert_null(strstr(text, "rgb(213,  94,   0)"));
    free(text);
    text = read_file(dat);
    assert_non_null(text);
    assert_null(strstr(text, "\"regression\""));
    free(text);
    run_bench(r, (char *[]){"plot", "--compare", base, cur, "--out", dir, "--threshold", "2000", NULL});
    assert_int_equal(r->exit_code, 2);
    assert_non_null(strstr(r->err, "--threshold"));
    run_bench(r, (char *[]){"plot", base, "--out", dir, "--alpha", "0.05", NULL});
    assert_int_equal(r->exit_code, 2);
    free(r);
    remove_temp_dir(dir);
}

static void test_plot_gnuplot_missing(void **state)
{
    (void)state;
    char *dir = make_temp_dir(); /* an empty folder: PATH without gnuplot */
    char csv[512], out[512], path_env[600];
    snprintf(csv, sizeof csv, "%s/runs.csv", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(path_env, sizeof path_env, "PATH=%s", dir);
    write_csv(csv, study, N_STUDY, 1.0, "2026-01-02", false);
    bench_result *r = calloc(1, sizeof *r);
    run_bench_env(r, (char *[]){path_env, NULL}, (char *[]){"plot", csv, "--out", out, NULL});
    assert_int_equal(r->exit_code, 2);
    assert_non_null(strstr(r->err, "gnuplot not found on PATH; install it (Debian: apt-get install gnuplot-nox)"));
    assert_int_equal(count_lines(r->err), 1);
    assert_string_equal(r->out, "");
    assert_false(file_exists(out));
    free(r);
    remove_temp_dir(dir);
}

static void test_plot_bad_input(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char missing[512], other[512], out[512];
    snprintf(missing, sizeof missing, "%s/nope.csv", dir);
    snprintf(other, sizeof other, "%s/other.csv", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    bench_result *r = calloc(1, sizeof *r);

    if (have_gnuplot()) {
        run_bench(r, (char *[]){"plot", missing, "--out", out, NULL});
        assert_int_equal(r->exit_code, 2);
        assert_non_null(strstr(r->err, "nope.csv"));
        assert_int_equal(count_lines(r->err), 1);
        assert_string_equal(r->out, "");

        FILE *f = fopen(other, "w");
        assert_non_null(f);
        fputs("a,b\n1,2\n", f);
        fclose(f);
        run_bench(r, (char *[]){"plot", other, "--out", out, NULL});
        assert_int_equal(r->exit_code, 2);
        assert_non_null(strstr(r->err, "not a parbench results CSV"));

        /* only failed rows: nothing to plot */
        static const fake failed[] = {{"single", 1, 0, "failed"}};
        write_csv(other, failed, 1, 1.0, "2026-01-02", false);
        run_bench(r, (char *[]){"plot", other, "--out", out, NULL});
        assert_int_equal(r->exit_code, 1);
        assert_non_null(strstr(r->err, "no rows with status ok"));

        /* a workload the CSV does not have */
        write_csv(other, study, N_STUDY, 1.0, "2026-01-02", false);
        run_bench(r, (char *[]){"plot", other, "--out", out, "--workload", "mlp-l", NULL});
        assert_int_equal(r->exit_code, 2);
        assert_non_null(strstr(r->err, "mlp-l"));
    }

    run_bench(r, (char *[]){"plot", NULL});
    assert_int_equal(r->exit_code, 2);
    assert_non_null(strstr(r->err, "takes one CSV file"));
    run_bench(r, (char *[]){"plot", missing, "--bogus", NULL});
    assert_int_equal(r->exit_code, 2);
    assert_non_null(strstr(r->err, "--bogus"));
    run_bench(r, (char *[]){"plot", missing, "--scaling", "linear", NULL});
    assert_int_equal(r->exit_code, 2);
    assert_non_null(strstr(r->err, "weak, strong"));
    run_bench(r, (char *[]){"plot", missing, "--out", NULL});
    assert_int_equal(r->exit_code, 2);
    run_bench(r, (char *[]){"plot", "--help", NULL});
    assert_int_equal(r->exit_code, 0);
    assert_non_null(strstr(r->out, "--compare"));
    assert_non_null(strstr(r->out, "[plots/out]"));
    free(r);
    remove_temp_dir(dir);
}

/* Nothing but the images: no file named like a partial one, none empty. */
static void assert_no_partial_or_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return; /* not even created */
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        if (strstr(e->d_name, "partial") || sb.st_size == 0) fail_msg("%s left behind (%lld bytes)", path,
                                                                        (long long)sb.st_size);
    }
    closedir(d);
}

/* The same reader and rules as bench compare: a NUL byte and a column
 * named twice are refused (exit 2, one line naming the file); rows with an
 * inf or NaN figure are dropped and the notice says which figure. */
static void test_plot_reader_rules(void **state)
{
    (void)state;
    if (!have_gnuplot()) skip();
    char *dir = make_temp_dir();
    char csv[512], out[512];
    snprintf(csv, sizeof csv, "%s/runs.csv", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    bench_result *r = calloc(1, sizeof *r);

    write_csv(csv, study, N_STUDY, 1.0, "2026-01-02", false);
    FILE *f = fopen(csv, "r+b");
    assert_non_null(f);
    fseek(f, -20, SEEK_END);
    fputc('\0', f);
    fclose(f);
    run_bench(r, (char *[]){"plot", csv, "--out", out, NULL});
    assert_int_equal(r->exit_code, 2);
    assert_int_equal(count_lines(r->err), 1);
    assert_non_null(strstr(r->err, "runs.csv:13: binary data (a NUL byte)"));
    assert_string_equal(r->out, "");

    char *text = read_file(csv);
    f = fopen(csv, "wb");
    assert_non_null(f);
    fprintf(f, "status,%s", strchr(text, ',') + 1); /* time_utc renamed: status twice */
    fclose(f);
    free(text);
    run_bench(r, (char *[]){"plot", csv, "--out", out, NULL});
    assert_int_equal(r->exit_code, 2);
    assert_int_equal(count_lines(r->err), 1);
    assert_non_null(strstr(r->err, "header names column 'status' twice"));

    /* dp x8 at inf samples/s, ddp x8 at NaN ms: dropped, said why */
    write_csv(csv, study, N_STUDY, 1.0, "2026-01-02", false);
    append_with(csv, &(fake){"dp", 8, 1000, "ok"}, PB_COL_SAMPLES_PER_S, "inf");
    append_with(csv, &(fake){"ddp", 8, 1000, "ok"}, PB_COL_FWD_MS, "nan");
    run_bench(r, (char *[]){"plot", csv, "--out", out, "--keep-data", NULL});
    if (r->exit_code != 0) fail_msg("exit %d: %s", r->exit_code, r->err);
    assert_non_null(strstr(r->err, "runs.csv:14: skipped: samples_per_s 'inf' is not a finite number"));
    assert_non_null(strstr(r->err, "runs.csv:15: skipped: fwd_ms 'nan' is not a finite number"));
    char dat[1024];
    snprintf(dat, sizeof dat, "%s/mlp-s-cuda-throughput.dat", out);
    text = read_file(dat);
    assert_non_null(text);
    assert_null(strstr(text, "\n8 ")); /* no point at 8 devices */
    free(text);
    free(r);
    remove_temp_dir(dir);
}

/* gnuplot failing on values it cannot draw (negative throughput in an axis
 * from 0) leaves no image, empty or partial, under any name. */
static void test_plot_failed_gnuplot_leaves_no_file(void **state)
{
    (void)state;
    if (!have_gnuplot()) skip();
    char *dir = make_temp_dir();
    char csv[512], out[512], png[1024];
    snprintf(csv, sizeof csv, "%s/neg.csv", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    static const fake negative[] = {{"single", 1, -100, "ok"}, {"dp", 2, -50, "ok"}};
    write_csv(csv, negative, 2, 1.0, "2026-01-02", false);
    bench_result *r = calloc(1, sizeof *r);
    run_bench(r, (char *[]){"plot", "--compare", csv, csv, "--out", out, NULL});
    assert_int_equal(r->exit_code, 1);
    assert_non_null(strstr(r->err, "gnuplot failed on"));
    path_of(png, sizeof png, out, "compare-samples_per_s", "png");
    assert_false(file_exists(png));
    assert_no_partial_or_empty(out);
    run_bench(r, (char *[]){"plot", csv, "--out", out, NULL});
    assert_int_equal(r->exit_code, 1);
    path_of(png, sizeof png, out, "mlp-s-cuda-throughput", "png");
    assert_false(file_exists(png));
    assert_no_partial_or_empty(out);
    free(r);
    remove_temp_dir(dir);
}

/* SIGTERM while gnuplot runs: gnuplot is stopped, the /tmp/pb_plot_*
 * folder and the partial images are removed, exit 128 + 15. */
static void test_plot_sigterm_cleans_up(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char csv[512], out[512], bin[512], tmp[512], gp[600], marker[600];
    snprintf(csv, sizeof csv, "%s/runs.csv", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(bin, sizeof bin, "%s/bin", dir);
    snprintf(tmp, sizeof tmp, "%s/tmp", dir);
    snprintf(gp, sizeof gp, "%s/gnuplot", bin);
    snprintf(marker, sizeof marker, "%s/gnuplot.pid", dir);
    assert_int_equal(mkdir(bin, 0755), 0);
    assert_int_equal(mkdir(tmp, 0755), 0);
    write_csv(csv, study, N_STUDY, 1.0, "2026-01-02", false);
    /* a gnuplot that says its pid and hangs */
    FILE *f = fopen(gp, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\necho $$ > %s.tmp\nmv %s.tmp %s\nexec sleep 30\n", marker, marker, marker);
    fclose(f);
    assert_int_equal(chmod(gp, 0755), 0);
    char path_env[1200], tmp_env[600];
    snprintf(path_env, sizeof path_env, "PATH=%s:/usr/bin:/bin", bin);
    snprintf(tmp_env, sizeof tmp_env, "TMPDIR=%s", tmp);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        putenv(path_env);
        putenv(tmp_env);
        execl(bench_path(), bench_path(), "plot", csv, "--out", out, "--plots-dir", "plots", (char *)NULL);
        _exit(127);
    }
    char *text = NULL;
    for (int waited = 0; !(text = read_file(marker)) && waited < 10000; waited++) usleep(1000);
    assert_non_null(text);
    pid_t gnuplot = (pid_t)atoi(text);
    free(text);
    assert_int_equal(kill(pid, SIGTERM), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 128 + SIGTERM);
    assert_true(kill(gnuplot, 0) != 0); /* stopped and reaped */
    DIR *d = opendir(tmp);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strncmp(e->d_name, "pb_plot_", 8) == 0) fail_msg("%s/%s left behind", tmp, e->d_name);
    closedir(d);
    assert_no_partial_or_empty(out);
    remove_temp_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plot_writes_every_plot),
        cmocka_unit_test(test_plot_no_legend_for_empty_bars),
        cmocka_unit_test(test_plot_skips_plots_without_data),
        cmocka_unit_test(test_plot_memory_and_comm_volume),
        cmocka_unit_test(test_plot_compare),
        cmocka_unit_test(test_plot_gnuplot_missing),
        cmocka_unit_test(test_plot_bad_input),
        cmocka_unit_test(test_plot_reader_rules),
        cmocka_unit_test(test_plot_failed_gnuplot_leaves_no_file),
        cmocka_unit_test(test_plot_sigterm_cleans_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
