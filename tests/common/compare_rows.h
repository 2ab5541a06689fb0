/* Rows for the compare tests (tests/unit/test_compare.c calls the reader and
 * pairing directly, tests/e2e/test_compare_runs.c runs ./bench compare):
 * a configuration and its numbers in a few fields, made into a record and
 * into CSV text with this build's header exactly. */
#ifndef PB_TEST_COMPARE_ROWS_H
#define PB_TEST_COMPARE_ROWS_H

#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <stdbool.h>

#include "harness/results.h"
#include "study/csv_read.h"

typedef struct rowspec {
    const char *workload; /* NULL: mlp-xs */
    int threads;          /* 0: 1 */
    double sps;           /* samples_per_s */
    double cv;            /* step_ms_cv; NaN: empty */
    int iters;            /* 0: 20 */
    const char *status;   /* NULL: ok */
    const char *driver;   /* NULL: 550.54.15 */
    const char *time_utc; /* NULL: 2026-01-02T03:04:05Z (every row at once: file order) */
} rowspec;

static inline void fill_record(pb_record *r, const rowspec *s)
{
    pb_record_clear(r);
    bool xs = !s->workload || strcmp(s->workload, "mlp-xs") == 0;
    int batch = xs ? 64 : 256;
    pb_record_set(r, PB_COL_TIME_UTC, "%s", s->time_utc ? s->time_utc : "2026-01-02T03:04:05Z");
    pb_record_set(r, PB_COL_STATUS, "%s", s->status ? s->status : "ok");
    pb_record_set(r, PB_COL_STRATEGY, "single");
    pb_record_set(r, PB_COL_BACKEND, "cuda");
    pb_record_set(r, PB_COL_COMM, "none");
    pb_record_set(r, PB_COL_WORKLOAD, "%s", xs ? "mlp-xs" : s->workload);
    pb_record_set(r, PB_COL_IN, "%d", xs ? 256 : 1024);
    pb_record_set(r, PB_COL_HIDDEN, "%d", xs ? 256 : 1024);
    pb_record_set(r, PB_COL_LAYERS, "%d", xs ? 3 : 4);
    pb_record_set(r, PB_COL_CLASSES, "%d", xs ? 10 : 1000);
    pb_record_set(r, PB_COL_BATCH_GLOBAL, "%d", batch);
    pb_record_set(r, PB_COL_BATCH_PER_DEVICE, "%d", batch);
    pb_record_set(r, PB_COL_DEVICES, "1");
    pb_record_set(r, PB_COL_RANKS, "1");
    pb_record_set(r, PB_COL_OVERSUBSCRIBED, "0");
    pb_record_set(r, PB_COL_PRECISION, "fp32");
    pb_record_set(r, PB_COL_OPTIMIZER, "sgd");
    pb_record_num(r, PB_COL_LR, 0.01);
    pb_record_set(r, PB_COL_ITERS, "%d", s->iters ? s->iters : 20);
    pb_record_set(r, PB_COL_WARMUP, "5");
    pb_record_set(r, PB_COL_SEED, "1234");
    pb_record_set(r, PB_COL_THREADS, "%d", s->threads ? s->threads : 1);
    pb_record_set(r, PB_COL_CUDA_GRAPH, "0");
    if (!s->status || strcmp(s->status, "ok") == 0) {
        double ms = batch * 1e3 / s->sps;
        pb_record_num(r, PB_COL_STEP_MS_MEAN, ms);
        pb_record_num(r, PB_COL_STEP_MS_P50, ms);
        pb_record_num(r, PB_COL_STEP_MS_P95, ms * 1.1);
        pb_record_num(r, PB_COL_STEP_MS_CV, s->cv);
        pb_record_num(r, PB_COL_SAMPLES_PER_S, s->sps);
        pb_record_num(r, PB_COL_MODEL_TFLOPS, s->sps * 1e-6);
    }
    pb_record_set(r, PB_COL_HOST, "node-a");
    pb_record_set(r, PB_COL_GPU_NAME, "NVIDIA H100 80GB HBM3");
    pb_record_set(r, PB_COL_DRIVER, "%s", s->driver ? s->driver : "550.54.15");
    pb_record_set(r, PB_COL_CUDA_RUNTIME, "12.4");
    pb_record_set(r, PB_COL_COMPILER, "gcc 12.2.0");
    pb_record_set(r, PB_COL_GIT_REV, "abc1234");
    if (s->status && strcmp(s->status, "failed") == 0) pb_record_set(r, PB_COL_ERROR, "out of memory");
}

/* This build's header and the rows, as text (malloc'd). */
static inline char *csv_text(const rowspec *rows, size_t n)
{
    size_t cap = 8192 + n * 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    len = pb_results_header(buf, cap);
    pb_record *r = malloc(sizeof *r);
    assert_non_null(r);
    for (size_t i = 0; i < n; i++) {
        fill_record(r, &rows[i]);
        size_t got = pb_results_format(r, buf + len, cap - len);
        assert_true(got > 0);
        len += got;
    }
    free(r);
    return buf;
}

static inline void parse_ok(const char *text, pb_csv *c)
{
    pb_error_clear();
    pb_status st = pb_csv_parse("t.csv", text, strlen(text), c);
    if (st != PB_OK) print_message("%s\n", pb_error_message());
    assert_int_equal(st, PB_OK);
}

#endif /* PB_TEST_COMPARE_ROWS_H */
