/* Statistics, a leaf (libc only): the distribution of per-step times (min,
 * p50, mean, p95, max, CV) that a run reports, and Welch's t-test that
 * bench compare decides with (docs/compare.md has the test exactly). */
#ifndef PB_STATS_H
#define PB_STATS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct pb_stats {
    double min, p50, mean, p95, max;
    double cv; /* sample standard deviation / mean */
} pb_stats;

/* Percentiles by linear interpolation between order statistics (numpy's
 * default). Sorts `scratch` (n values copied from v). */
void pb_stats_compute(const double *v, size_t n, double *scratch, pb_stats *out);
double pb_mean(const double *v, size_t n);
/* The median of v's n values (NaN when n is 0), sorting v in place. */
double pb_stats_median(double *v, size_t n);
/* The median absolute deviation from the median, sorting v in place and
 * leaving the absolute deviations in it. */
double pb_stats_mad(double *v, size_t n);

/* Regularized incomplete beta I_x(a, b), a, b > 0, 0 <= x <= 1. */
double pb_stats_incbeta(double a, double b, double x);
/* CDF of Student's t with df > 0 degrees of freedom (df may be fractional). */
double pb_stats_t_cdf(double t, double df);

/* Its inverse: the t with P(T <= t) = p (0 < p < 1; +-inf at 1 and 0). */
double pb_stats_t_quantile(double p, double df);

/* A mean, the squared standard error of it and the degrees of freedom of
 * that error (0: spread unknown). */
typedef struct pb_stats_mean {
    double mean, se2, df;
} pb_stats_mean;

/* Welch's t of cur.mean - base.mean and its Welch-Satterthwaite degrees of
 * freedom; false (t and df NaN) when either side has no spread (df 0). */
bool pb_stats_welch(pb_stats_mean base, pb_stats_mean cur, double *t, double *df);

#endif /* PB_STATS_H */
