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

double pb_stats_median(double *v, size_t n)
{
    if (n == 0) return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    return percentile(v, n, 0.50);
}

double pb_stats_mad(double *v, size_t n)
{
    double m = pb_stats_median(v, n);
    for (size_t i = 0; i < n; i++) v[i] = fabs(v[i] - m);
    return pb_stats_median(v, n);
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

/* Continued fraction of the incomplete beta function (modified Lentz). */
static double betacf(double a, double b, double x)
{
    const double tiny = 1e-300, eps = 1e-15;
    double qab = a + b, qap = a + 1.0, qam = a - 1.0;
    double c = 1.0, d = 1.0 - qab * x / qap;
    if (fabs(d) < tiny) d = tiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 10000; m++) {
        double m2 = 2.0 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1.0 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1.0 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < eps) break;
    }
    return h;
}

double pb_stats_incbeta(double a, double b, double x)
{
    if (!(a > 0) || !(b > 0) || isnan(x)) return NAN;
    if (x <= 0) return 0.0;
    if (x >= 1) return 1.0;
    double bt = exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x));
    /* the fraction converges fast on the side of the distribution's mean */
    if (x < (a + 1.0) / (a + b + 2.0)) return bt * betacf(a, b, x) / a;
    return 1.0 - bt * betacf(b, a, 1.0 - x) / b;
}

double pb_stats_t_cdf(double t, double df)
{
    if (isnan(t) || isnan(df) || !(df > 0)) return NAN;
    if (isinf(t)) return t > 0 ? 1.0 : 0.0;
    /* beyond a million degrees of freedom t is normal to about 1e-6 */
    if (df > 1e6) return 0.5 * erfc(-t / sqrt(2.0));
    double tail = 0.5 * pb_stats_incbeta(df / 2.0, 0.5, df / (df + t * t)); /* P(T > |t|) */
    return t > 0 ? 1.0 - tail : tail;
}

double pb_stats_t_quantile(double p, double df)
{
    if (isnan(p) || isnan(df) || !(df > 0) || p < 0 || p > 1) return NAN;
    if (p == 0 || p == 1) return p == 1 ? INFINITY : -INFINITY;
    if (p < 0.5) return -pb_stats_t_quantile(1.0 - p, df);
    /* the CDF is monotone: bracket the quantile, then bisect to the last bit
     * (a few hundred CDF calls at most; compare asks for two per pair) */
    double lo = 0, hi = 1;
    while (pb_stats_t_cdf(hi, df) < p && hi < 1e300) {
        lo = hi;
        hi *= 2;
    }
    for (int i = 0; i < 200 && hi - lo > 1e-15 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (pb_stats_t_cdf(mid, df) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

bool pb_stats_welch(pb_stats_mean base, pb_stats_mean cur, double *t, double *df)
{
    *t = NAN;
    *df = NAN;
    if (!(base.df > 0) || !(cur.df > 0)) return false;
    double s = base.se2 + cur.se2, d = cur.mean - base.mean;
    if (s == 0) {
        *t = d == 0 ? 0.0 : copysign(INFINITY, d);
        *df = base.df + cur.df;
        return true;
    }
    *t = d / sqrt(s);
    /* Welch-Satterthwaite, scaled so that large variances do not overflow */
    double fb = base.se2 / s, fc = cur.se2 / s;
    double den = fb * fb / base.df + fc * fc / cur.df;
    *df = den > 0 ? 1.0 / den : base.df + cur.df;
    return true;
}
