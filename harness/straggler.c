/* Stragglers: see straggler.h. */
#include "straggler.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "stats.h"

/* 1.4826 MAD estimates a normal's sigma; the median of k samples has a
 * standard error of about 1.2533 sigma / sqrt(k). */
#define MAD_SIGMA 1.4826
#define MEDIAN_SE 1.2533

/* Phases where a rank's own work goes: not the waits (sync) nor comm, which
 * overlaps backward and grows with the wait too, nor comm's parts by kind
 * (zero's reduce-scatters and all-gathers), nor tp's all-reduces. */
static bool is_compute(int p)
{
    return p != PB_PHASE_COMM && p != PB_PHASE_SYNC && p != PB_PHASE_REDUCE_SCATTER && p != PB_PHASE_ALLGATHER &&
           p != PB_PHASE_TP_COMM;
}

void pb_rank_stats_compute(const double *step_ms, const double *phases, int iters, double *scratch,
                           pb_rank_stats *out)
{
    memset(out, 0, sizeof *out);
    out->peak_tflops = out->device = NAN;
    if (iters <= 0) return;
    pb_stats s;
    pb_stats_compute(step_ms, (size_t)iters, scratch, &s);
    out->step_p50 = s.p50;
    out->step_mean = s.mean;
    out->step_p95 = s.p95;
    double busy_sum = 0.0;
    for (int i = 0; i < iters; i++) {
        const double *ph = phases + (size_t)i * PB_PHASE_COUNT;
        /* exposed communication (tp's all-reduces too) waits for the others */
        scratch[i] = step_ms[i] - ph[PB_PHASE_SYNC] - ph[PB_PHASE_TP_COMM];
        busy_sum += scratch[i];
        for (int p = 0; p < PB_PHASE_COUNT; p++) out->phase_ms[p] += ph[p] / iters;
    }
    out->busy_p50 = pb_stats_median(scratch, (size_t)iters);
    /* scratch still holds the busy times, sorted */
    out->busy_se = MEDIAN_SE * MAD_SIGMA * pb_stats_mad(scratch, (size_t)iters) / sqrt((double)iters);
    double phased = 0.0;
    for (int p = 0; p < PB_PHASE_COUNT; p++)
        if (is_compute(p)) phased += out->phase_ms[p];
    out->other_ms = busy_sum / iters - phased;
}

/* The median over ranks other than `self` of field(r); scratch: n. */
static double peers_median(const pb_rank_stats *r, int n, int self, double (*field)(const pb_rank_stats *, int),
                           int arg, double *scratch)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (i != self) scratch[k++] = field(&r[i], arg);
    return pb_stats_median(scratch, (size_t)k);
}

static double f_busy(const pb_rank_stats *r, int arg) { return (void)arg, r->busy_p50; }
static double f_se(const pb_rank_stats *r, int arg) { return (void)arg, r->busy_se; }
static double f_peak(const pb_rank_stats *r, int arg) { return (void)arg, r->peak_tflops; }
/* a compute phase's mean, or (arg PB_STRAGGLER_NO_PHASE) the time in none */
static double f_phase(const pb_rank_stats *r, int arg) { return arg < 0 ? r->other_ms : r->phase_ms[arg]; }

int pb_straggler_find(const pb_rank_stats *r, int n, double min_frac, double *scratch, pb_straggler_verdict *out)
{
    int found = 0;
    bool calibrated = true;
    for (int i = 0; i < n; i++) calibrated = calibrated && isfinite(r[i].peak_tflops);
    for (int i = 0; i < n; i++) {
        pb_straggler_verdict *v = &out[i];
        memset(v, 0, sizeof *v);
        v->phase = PB_STRAGGLER_NO_PHASE;
        v->peak_pct = NAN;
        if (n < 2) continue;
        double m = peers_median(r, n, i, f_busy, 0, scratch);
        double se_peers = peers_median(r, n, i, f_se, 0, scratch);
        /* the peers' busy medians again, for their spread */
        int k = 0;
        for (int j = 0; j < n; j++)
            if (j != i) scratch[k++] = r[j].busy_p50;
        double spread = MAD_SIGMA * pb_stats_mad(scratch, (size_t)k);
        double noise = sqrt(r[i].busy_se * r[i].busy_se + se_peers * se_peers);
        if (spread > noise) noise = spread;
        double threshold = PB_STRAGGLER_NOISE_K * noise;
        if (threshold < min_frac * m) threshold = min_frac * m;
        double excess = r[i].busy_p50 - m;
        v->peers_busy_ms = m;
        v->excess_pct = m > 0 ? 100.0 * excess / m : NAN;
        v->threshold_pct = m > 0 ? 100.0 * threshold / m : NAN;
        v->straggler = m > 0 && excess > threshold;
        found += v->straggler;
        /* where its time goes: the compute phase (or none) furthest above
         * the peers' median of it */
        double best = -INFINITY;
        for (int p = PB_STRAGGLER_NO_PHASE; p < PB_PHASE_COUNT; p++) {
            if (p >= 0 && !is_compute(p)) continue;
            double d = f_phase(&r[i], p) - peers_median(r, n, i, f_phase, p, scratch);
            if (d > best) {
                best = d;
                v->phase = p;
            }
        }
        v->phase_excess_ms = best;
        if (calibrated) {
            double pm = peers_median(r, n, i, f_peak, 0, scratch);
            if (pm > 0) v->peak_pct = 100.0 * (r[i].peak_tflops - pm) / pm;
        }
    }
    return found;
}

int pb_straggler_slowest(const pb_rank_stats *r, int n, double *scratch, double *spread_pct)
{
    int slowest = 0;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        scratch[i] = r[i].busy_p50;
        if (r[i].busy_p50 > r[slowest].busy_p50) slowest = i;
        if (r[i].busy_p50 < lo) lo = r[i].busy_p50;
        if (r[i].busy_p50 > hi) hi = r[i].busy_p50;
    }
    double m = pb_stats_median(scratch, (size_t)n);
    *spread_pct = m > 0 ? 100.0 * (hi - lo) / m : NAN;
    return slowest;
}

void pb_straggler_describe(int rank, const char *host, const pb_rank_stats *r, const pb_straggler_verdict *v,
                           char *buf, size_t len)
{
    char dev[32] = "", peak[48] = "";
    if (isfinite(r->device)) snprintf(dev, sizeof dev, ", device %.0f", r->device);
    if (isfinite(v->peak_pct) && v->peak_pct < -100.0 * PB_STRAGGLER_MIN_FRAC)
        snprintf(peak, sizeof peak, ", GEMM peak %+.0f%%", v->peak_pct);
    snprintf(buf, len, "rank %d (host %s%s): %+.0f%% busy, %s%s (%+.3g ms)%s", rank, host, dev, v->excess_pct,
             v->phase < 0 ? "between phases" : "in ", v->phase < 0 ? "" : pb_phase_name((pb_phase)v->phase),
             v->phase_excess_ms, peak);
}
