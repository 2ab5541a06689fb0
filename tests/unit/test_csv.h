/* The row a test run wrote, read through the library's own CSV reader
 * (harness/csv_read.c), with the last data row's fields by column name. */
#ifndef PB_TEST_CSV_H
#define PB_TEST_CSV_H

#include "test_util.h"

#include <math.h>

#include "harness/csv_read.h"

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

static inline double csv_num(const csv *c, const char *name)
{
    const char *v = csv_get(c, name);
    char *end = NULL;
    double d = strtod(v, &end);
    if (!*v || *end) fail_msg("column %s: '%s' is not a number", name, v);
    return d;
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
}

#endif /* PB_TEST_CSV_H */
