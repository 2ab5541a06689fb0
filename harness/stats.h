/* Distribution of per-step times: min, p50, mean, p95, max, CV. */
#ifndef PB_STATS_H
#define PB_STATS_H

#include <stddef.h>

typedef struct pb_stats {
    double min, p50, mean, p95, max;
    double cv; /* sample standard deviation / mean */
} pb_stats;

/* Percentiles by linear interpolation between order statistics (numpy's
 * default). Sorts `scratch` (n values copied from v). */
void pb_stats_compute(const double *v, size_t n, double *scratch, pb_stats *out);
double pb_mean(const double *v, size_t n);

#endif /* PB_STATS_H */
