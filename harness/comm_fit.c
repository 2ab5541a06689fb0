#include "comm_fit.h"

#include <math.h>
#include <string.h>

static const char *const names[PB_COLL_COUNT] = {
    [PB_COLL_ALL_REDUCE] = "all_reduce", [PB_COLL_REDUCE_SCATTER] = "reduce_scatter",
    [PB_COLL_ALL_GATHER] = "all_gather", [PB_COLL_BROADCAST] = "broadcast", [PB_COLL_SENDRECV] = "sendrecv",
};

const char *pb_coll_name(pb_coll c) { return c < PB_COLL_COUNT ? names[c] : "?"; }

pb_coll pb_coll_find(const char *name)
{
    for (int c = 0; c < PB_COLL_COUNT; c++)
        if (strcmp(names[c], name) == 0) return (pb_coll)c;
    return PB_COLL_COUNT;
}

double pb_busbw_factor(pb_coll c, int ranks)
{
    double n = ranks > 0 ? ranks : 1;
    switch (c) {
    case PB_COLL_ALL_REDUCE: return 2.0 * (n - 1) / n;
    case PB_COLL_REDUCE_SCATTER:
    case PB_COLL_ALL_GATHER: return (n - 1) / n;
    case PB_COLL_BROADCAST:
    case PB_COLL_SENDRECV:
    case PB_COLL_COUNT: break;
    }
    return 1.0;
}

/* One line over points [lo, hi): weighted least squares with w = 1/t^2 (the
 * relative residual), alpha and slope held >= 0. Returns the weighted
 * squared residual. Sizes in MB keep the sums well scaled. */
static double fit_line(const double *bytes, const double *t, int lo, int hi, pb_fit_segment *s)
{
    double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = lo; i < hi; i++) {
        double w = 1.0 / (t[i] * t[i]), x = bytes[i] * 1e-6;
        sw += w;
        sx += w * x;
        sy += w * t[i];
        sxx += w * x * x;
        sxy += w * x * t[i];
    }
    double det = sw * sxx - sx * sx, a, b;
    if (hi - lo >= 2 && det > 1e-12 * sw * sxx) {
        b = (sw * sxy - sx * sy) / det;
        a = (sy - b * sx) / sw;
    } else {
        a = sy / sw; /* all sizes alike: a level */
        b = 0;
    }
    if (a < 0) { /* the line through the origin */
        a = 0;
        b = sxx > 0 ? sxy / sxx : 0;
    }
    /* a slope lost in rounding (time that does not grow) is none */
    if (b < 0 || b * bytes[hi - 1] * 1e-6 <= 1e-9 * a) {
        b = 0;
        a = sy / sw;
    }
    double rss = 0;
    for (int i = lo; i < hi; i++) {
        double r = (t[i] - a - b * bytes[i] * 1e-6) / t[i];
        rss += r * r;
    }
    s->bytes_lo = bytes[lo];
    s->bytes_hi = bytes[hi - 1];
    s->alpha_us = a;
    /* b is us per MB: 1e6 B / (b 1e-6 s) = 1e12 / b B/s = 1e3 / b GB/s */
    s->beta_gbps = b > 0 ? 1e3 / b : INFINITY;
    s->points = hi - lo;
    s->rel_rms = sqrt(rss / (hi - lo));
    return rss;
}

/* The best split of [lo, n) into k segments of at least PB_FIT_MIN_POINTS
 * points: fills seg[0..k), returns its squared residual (INFINITY: none). */
static double best_split(const double *bytes, const double *t, int lo, int n, int k, pb_fit_segment *seg)
{
    if (k == 1) return fit_line(bytes, t, lo, n, seg);
    double best = INFINITY;
    pb_fit_segment trial[PB_FIT_MAX_SEGMENTS];
    for (int cut = lo + PB_FIT_MIN_POINTS; cut + (k - 1) * PB_FIT_MIN_POINTS <= n; cut++) {
        double r = fit_line(bytes, t, lo, cut, &trial[0]);
        if (r >= best) continue;
        r += best_split(bytes, t, cut, n, k - 1, trial + 1);
        if (r < best) {
            best = r;
            memcpy(seg, trial, (size_t)k * sizeof *seg);
        }
    }
    return best;
}

int pb_fit_alpha_beta(const double *bytes, const double *time_us, int n, pb_fit_segment *seg)
{
    if (n < 2) return 0;
    double rss = fit_line(bytes, time_us, 0, n, seg);
    int k = 1;
    /* a segment more only where the line misses by more than the noise of
     * a timing and the split removes at least half of what it misses */
    while (k < PB_FIT_MAX_SEGMENTS && n >= (k + 1) * PB_FIT_MIN_POINTS && sqrt(rss / n) > PB_FIT_SPLIT_RMS) {
        pb_fit_segment trial[PB_FIT_MAX_SEGMENTS];
        double r = best_split(bytes, time_us, 0, n, k + 1, trial);
        if (!(r <= PB_FIT_SPLIT_GAIN * rss)) break;
        memcpy(seg, trial, (size_t)(k + 1) * sizeof *seg);
        rss = r;
        k++;
    }
    return k;
}
