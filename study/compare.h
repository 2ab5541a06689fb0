/* bench compare's library: pairs the ok rows of BASELINE and CURRENT by
 * configuration and says, per configuration, whether CURRENT regressed
 * against BASELINE (the printing and the command: compare_cli.h).
 *
 * A configuration regresses when its metric changed by more than the
 * threshold in the bad direction AND a one-sided Welch t-test on the runs'
 * measured spread says the change is significant AND it is significant
 * still after the drift seen inside either side (its first half of runs
 * against its second, in time order) is taken off it (docs/compare.md has
 * the test exactly, docs/statistics.md the reasoning). Each pair also
 * carries the smallest change its runs can tell from noise (mde_pct).
 * Exit 0: no regression; 1: at least one; 2: bad input. */
#ifndef PB_COMPARE_H
#define PB_COMPARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "csv_read.h"
#include "../harness/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pb_compare_format { PB_COMPARE_TEXT, PB_COMPARE_MD, PB_COMPARE_CSV, PB_COMPARE_JSON } pb_compare_format;

typedef struct pb_compare_opts {
    const char *metric;   /* a column of pb_compare_metrics() */
    double threshold_pct; /* smallest change that counts, in percent */
    double alpha;         /* significance level of the one-sided test */
    double power;         /* power the minimum detectable effect is stated at (no flag: 0.8) */
    pb_compare_format format;
} pb_compare_opts;

void pb_compare_defaults(pb_compare_opts *o);

/* Metrics --metric accepts, and whether larger is better for each. */
size_t pb_compare_metric_count(void);
const char *pb_compare_metric_name(size_t i);
/* -1: unknown metric; 1: higher is better; 0: lower is better. */
int pb_compare_metric_higher_better(const char *name);

typedef enum pb_verdict {
    PB_VERDICT_SAME,          /* |change| within the threshold */
    PB_VERDICT_REGRESSION,    /* worse by more than the threshold, significant */
    PB_VERDICT_IMPROVEMENT,   /* better by more than the threshold, significant */
    PB_VERDICT_NOISE,         /* beyond the threshold, not significant */
    PB_VERDICT_DRIFT,         /* beyond the threshold, significant, but not beyond the drift inside a side */
    PB_VERDICT_NO_SPREAD,     /* beyond the threshold, no spread to test it with */
    PB_VERDICT_ONLY_BASELINE, /* the configuration is in BASELINE only */
    PB_VERDICT_ONLY_CURRENT,  /* the configuration is in CURRENT only */
    PB_VERDICT_FAILED_CURRENT, /* ok in BASELINE, only failed or invalid rows in CURRENT: a regression */
    PB_VERDICT_COUNT
} pb_verdict;

const char *pb_verdict_name(pb_verdict v);

/* One side of a comparison: the runs of one configuration in one file,
 * summarised as the mean of the metric, the squared standard error of that
 * mean and its degrees of freedom (0: spread unknown). */
typedef struct pb_compare_side {
    size_t runs;  /* rows of this configuration; 0: none on this side */
    size_t row;   /* the first of them (row index in its file) */
    double mean;  /* mean of the runs' metric values */
    double se2;   /* squared standard error of mean */
    double df;    /* degrees of freedom of se2 */
    /* Within-side drift: the mean of the later half of the runs (by
     * time_utc; file order without it) less the mean of the earlier half,
     * the middle run of an odd count left out; NaN with fewer than 2 runs. */
    double drift;
    /* From time_utc, in seconds (NaN when a run's time is unknown): the
     * first run to the last; the mean of the runs' times; the later half's
     * mean time less the earlier half's (what drift was measured over). */
    double span_s, mid_s, half_gap_s;
} pb_compare_side;

/* One run read for comparing: its row, the metric, the step spread a
 * single run is judged by (cv NaN, iters 0 when unknown) and when it ran. */
typedef struct pb_compare_run {
    size_t row;
    double value;
    double cv;
    double iters;
    double time; /* time_utc in seconds since 1970; NaN when unknown */
} pb_compare_run;

/* The side of `count` runs of one configuration (count >= 1): one run by its
 * own steps (relative standard error cv / sqrt(iters)), several by their
 * values (docs/compare.md), and the drift inside them, the runs taken in
 * the order given (time order, as pb_compare_tables sorts them). */
pb_compare_side pb_compare_summarise(const pb_compare_run *runs, size_t count);

typedef struct pb_compare_pair {
    pb_compare_side base, cur;
    double change_pct; /* 100 * (cur - base) / base */
    double t, df;      /* Welch's t of cur - base, Welch-Satterthwaite df */
    double p;          /* one-sided p-value in the direction of the change */
    /* The drift allowance: the larger of the two sides' |drift| carried
     * over the time between the sides (|drift| * min(2, |mid_c - mid_b| /
     * half_gap), or |drift| without times), in percent of the baseline
     * mean (NaN when neither side has 2 runs), and the one-sided p-value
     * of the change with that allowance taken off it. */
    double drift_pct, p_drift;
    /* Minimum detectable effect, percent of the baseline mean: the drift
     * allowance plus (t(1-alpha, df) + t(power, df)) standard errors, the
     * smallest change the test flags with probability `power` (NaN when
     * untestable). mde_pct > threshold: too few repeats for the threshold. */
    double mde_pct;
    bool few_repeats;
    /* Runs per side that would bring the MDE to the threshold with the
     * spreads seen (0: not estimated; SIZE_MAX: the drift alone exceeds it). */
    size_t runs_needed;
    pb_verdict verdict;
    size_t cur_failed;     /* PB_VERDICT_FAILED_CURRENT: CURRENT's failed or invalid rows of it */
    size_t cur_failed_row; /* the first of them */
} pb_compare_pair;

#define PB_COMPARE_KEY_MAX 128
#define PB_COMPARE_ENV_MAX 48
#define PB_COMPARE_ENV_LINE 1024

typedef struct pb_compare_result {
    const pb_csv *base, *cur;
    pb_compare_pair *pairs; /* pairs in BASELINE order, then CURRENT-only ones */
    size_t npairs;
    size_t count[PB_VERDICT_COUNT];
    /* configuration columns used to pair rows (present in both files) */
    size_t nkey;
    const char *key_name[PB_COMPARE_KEY_MAX];
    int key_base[PB_COMPARE_KEY_MAX], key_cur[PB_COMPARE_KEY_MAX];
    bool key_varies[PB_COMPARE_KEY_MAX]; /* differs between configurations */
    bool higher_better;
    /* environment differences, "column: baseline values -> current values",
     * then a line per environment variable of env_vars that differs
     * ("NCCL_ALGO: Ring -> Tree"; the last line counts those left out) */
    char *env[PB_COMPARE_ENV_MAX];
    size_t nenv;
    size_t ignored_base, ignored_cur; /* rows not ok, or without a value */
    size_t ok_cur;                    /* CURRENT's rows compared (0: every run failed) */
} pb_compare_result;

/* The verdict of a pair whose sides are summarised: change_pct, Welch's t,
 * df, the one-sided p and the verdict (docs/compare.md); bench comm's
 * compare (study/compare_comm.h) judges each size with it too. */
void pb_compare_decide(pb_compare_pair *p, const pb_compare_opts *o, bool higher_better);

/* Pairs the ok rows of two parsed results files and tests each pair. Bad
 * input (a needed column missing, a value that is not a number, no rows,
 * no ok row in BASELINE) is PB_ERR_USAGE/PB_ERR_SCHEMA with a message
 * naming the file. */
pb_status pb_compare_tables(const pb_csv *base, const char *base_name, const pb_csv *cur, const char *cur_name,
                            const pb_compare_opts *o, pb_compare_result *r);
/* The value of key column k (r->key_name[k]) for a pair: BASELINE's row
 * when it has one, else CURRENT's. */
const char *pb_compare_key_value(const pb_compare_result *r, const pb_compare_pair *p, size_t k);
/* Key columns every label shows (strategy, backend, workload, precision);
 * the others appear when they tell configurations apart (key_varies). */
bool pb_compare_labelled(const char *column);
void pb_compare_free(pb_compare_result *r);

#ifdef __cplusplus
}
#endif
#endif /* PB_COMPARE_H */
