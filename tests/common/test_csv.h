/* The row a test run wrote, read through the library's own CSV reader
 * (study/csv_read.c), with the last data row's fields by column name. */
#ifndef PB_TEST_CSV_H
#define PB_TEST_CSV_H

#include "test_util.h"

#include <math.h>

#include "study/csv_read.h"
#include "workloads/mlp.h"

typedef struct csv {
    pb_csv data;
    int rows; /* complete data rows */
} csv;

/* Loads path; every line must be complete (no torn rows). */
static inline void csv_load(csv *c, const char *path)
{
    memset(c, 0, sizeof *c);
    if (!file_exists(path)) fail_msg("%s was not written", path);
    if (pb_csv_load(path, &c->data) != PB_OK) fail_msg("%s: %s", path, pb_error_message());
    assert_int_equal(c->data.nskipped, 0);
    c->rows = (int)c->data.nrows;
}

static inline void csv_free(csv *c) { pb_csv_free(&c->data); }

static inline const char *csv_get(const csv *c, const char *name)
{
    int col = pb_csv_find(&c->data, name);
    if (col < 0) fail_msg("no column '%s' in the CSV header", name);
    if (c->rows < 1) fail_msg("no data row to read '%s' from", name);
    return pb_csv_get(&c->data, (size_t)c->rows - 1, (size_t)col);
}

/* Row `row`'s field of column `name` (any row, where csv_get reads the
 * last). */
static inline const char *csv_field(const csv *c, size_t row, const char *name)
{
    int col = pb_csv_find(&c->data, name);
    if (col < 0) fail_msg("no column '%s'", name);
    return pb_csv_get(&c->data, row, (size_t)col);
}

static inline double csv_num(const csv *c, const char *name)
{
    const char *v = csv_get(c, name);
    char *end = NULL;
    double d = strtod(v, &end);
    if (!*v || *end) fail_msg("column %s: '%s' is not a number", name, v);
    return d;
}

/* Throughput over the whole measured time: samples/s is the global batch
 * over the mean step, model TFLOP/s the global batch's FLOPs (the row's
 * shape) over it (6 significant digits in each column). */
static inline void expect_throughput(const csv *c)
{
    pb_shape shape = {.in = (int)csv_num(c, "in"), .hidden = (int)csv_num(c, "hidden"),
                      .layers = (int)csv_num(c, "layers"), .classes = (int)csv_num(c, "classes"),
                      .batch = (int)csv_num(c, "batch_global")};
    pb_layout layout;
    if (pb_mlp_layout(&shape, &layout) != PB_OK) fail_msg("the row's shape: %s", pb_error_message());
    double mean_s = csv_num(c, "step_ms_mean") * 1e-3, sps = csv_num(c, "samples_per_s");
    double tflops = csv_num(c, "model_tflops"), want_tflops = pb_mlp_step_flops(&layout, shape.batch) / mean_s / 1e12;
    if (!(fabs(sps - shape.batch / mean_s) <= 1e-4 * sps))
        fail_msg("samples_per_s %g, batch / step_ms_mean = %g", sps, shape.batch / mean_s);
    if (!(fabs(tflops - want_tflops) <= 1e-4 * want_tflops))
        fail_msg("model_tflops %g, the global batch's FLOPs / step_ms_mean = %g", tflops, want_tflops);
}

/* A --calibrate row's MFU is per device: model TFLOP/s / devices / the
 * peak one device measured (each column to 6 significant digits), and no
 * more than 1. */
static inline void expect_mfu_per_device(const csv *c)
{
    double model = csv_num(c, "model_tflops"), peak = csv_num(c, "peak_tflops"), mfu = csv_num(c, "mfu");
    double want = model / csv_num(c, "devices") / peak;
    if (!(peak > 0 && model > 0)) fail_msg("model_tflops %g, peak_tflops %g", model, peak);
    if (!(fabs(mfu - want) <= 1e-4 * want))
        fail_msg("%s on %s devices: mfu %g, model TFLOP/s per device / peak = %g", csv_get(c, "strategy"),
                 csv_get(c, "devices"), mfu, want);
    if (!(mfu > 0 && mfu <= 1)) fail_msg("%s: mfu %g is not in (0, 1]", csv_get(c, "strategy"), mfu);
    /* the peak is the mean of the devices' (ranks') own, within their spread */
    double lo = csv_num(c, "peak_tflops_min"), hi = csv_num(c, "peak_tflops_max");
    if (!(lo > 0 && lo <= peak * (1 + 1e-5) && peak <= hi * (1 + 1e-5)))
        fail_msg("%s: peak_tflops %g outside peak_tflops_min %g .. peak_tflops_max %g", csv_get(c, "strategy"), peak,
                 lo, hi);
    expect_throughput(c);
}

/* A shape whose loss is about a third of a step on the CPU (100000 classes
 * over 16 features), so work timed in no phase cannot hide in the 5% the
 * phase sums are allowed: left out of single's fwd phase, the phases added
 * up to 66% of the step. */
#define PB_TEST_LARGE_LOSS_SHAPE \
    "--in", "64", "--hidden", "16", "--layers", "3", "--classes", "100000", "--batch", "64"

/* The phases of a row add up to its step mean within 5%: all of them but
 * comm_ms (sync_ms is its exposed part); a strategy's absent phases are 0. */
static inline void expect_phases_add_up(const csv *c)
{
    static const char *const phases[] = {"load_ms",      "h2d_ms",    "fwd_ms",    "bwd_ms", "sync_ms",
                                         "opt_ms",       "scatter_ms", "replicate_ms", "gather_ms",
                                         "reduce_ms",    "p2p_ms",    "bubble_ms", "tp_comm_ms"};
    double sum = 0.0;
    for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) {
        double ms = csv_num(c, phases[i]);
        if (!(ms >= 0.0)) fail_msg("%s is '%s'", phases[i], csv_get(c, phases[i]));
        sum += ms;
    }
    double step = csv_num(c, "step_ms_mean");
    if (!(fabs(sum - step) <= 0.05 * step))
        fail_msg("%s: the phases add up to %.4f ms, the step mean is %.4f ms", csv_get(c, "strategy"), sum, step);
}

/* Writes src to dst (which may be src) with every field quoted,
 * samples_per_s divided by `slow`, when cv >= 0 step_ms_cv set to cv, and
 * column `col` (unless NULL) set to `value`: the same runs, `slow` times
 * slower on paper, with a spread that does not depend on the machine's
 * load, or from another host or build. */
static inline void write_edited(const char *src, const char *dst, double slow, double cv, const char *col,
                                const char *value)
{
    pb_csv t;
    if (pb_csv_load(src, &t) != PB_OK) fail_msg("%s: %s", src, pb_error_message());
    int sps = pb_csv_find(&t, "samples_per_s"), cvc = pb_csv_find(&t, "step_ms_cv");
    int set = col ? pb_csv_find(&t, col) : -1;
    assert_true(sps >= 0 && cvc >= 0 && (!col || set >= 0));
    FILE *f = fopen(dst, "w");
    assert_non_null(f);
    for (size_t c = 0; c < t.ncols; c++) fprintf(f, "%s%s", c ? "," : "", pb_csv_name(&t, c));
    fputc('\n', f);
    for (size_t row = 0; row < t.nrows; row++) {
        for (size_t c = 0; c < t.ncols; c++) {
            const char *v = pb_csv_get(&t, row, c);
            fputs(c ? ",\"" : "\"", f);
            if ((int)c == set) v = value;
            if ((int)c == sps && *v) fprintf(f, "%.6g", strtod(v, NULL) / slow);
            else if ((int)c == cvc && cv >= 0) fprintf(f, "%.6g", cv);
            else
                for (const char *p = v; *p; p++) fputs(*p == '"' ? "\"\"" : (char[]){*p, 0}, f);
            fputc('"', f);
        }
        fputc('\n', f);
    }
    fclose(f);
    pb_csv_free(&t);
}

/* src's runs `slow` times slower on paper, with step_ms_cv set to cv. */
static inline void write_slowed_cv(const char *src, const char *dst, double slow, double cv)
{
    write_edited(src, dst, slow, cv, NULL, NULL);
}

/* src's runs `slow` times slower on paper, their spread as measured. */
static inline void write_slowed(const char *src, const char *dst, double slow)
{
    write_edited(src, dst, slow, -1, NULL, NULL);
}

#endif /* PB_TEST_CSV_H */
