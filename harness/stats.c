#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)floor(pos);
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    double frac = pos - (double)lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

double pb_mean(const double *v, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return n ? s / (double)n : 0.0;
}

void pb_stats_compute(const double *v, size_t n, double *scratch, pb_stats *out)
{
    memset(out, 0, sizeof *out);
    if (n == 0) return;
    memcpy(scratch, v, n * sizeof *v);
    qsort(scratch, n, sizeof *scratch, cmp_double);
    out->min = scratch[0];
    out->max = scratch[n - 1];
    out->p50 = percentile(scratch, n, 0.50);
    out->p95 = percentile(scratch, n, 0.95);
    out->mean = pb_mean(v, n);
    if (n > 1 && out->mean > 0) {
        double ss = 0.0;
        for (size_t i = 0; i < n; i++) ss += (v[i] - out->mean) * (v[i] - out->mean);
        out->cv = sqrt(ss / (double)(n - 1)) / out->mean;
    }
}
