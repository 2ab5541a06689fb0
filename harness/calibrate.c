#include "calibrate.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry.h"
#include "signals.h"
#include "../strategies/strategy.h"
#include "../strategies/replica.h"

/* Timed sets of the step's GEMMs: enough for a stable median, few enough
 * that a slow CPU run of mlp-m stays in seconds. */
#define GEMM_SETS 5

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int pb_calibrate_ordinals(const pb_config *cfg, const pb_backend *be, int rank_device, int *out)
{
    const pb_strategy *strategy = pb_find_strategy(cfg->strategy);
    if (strategy && strategy->procs == PB_PROC_PER_DEVICE) {
        out[0] = rank_device;
        return 1;
    }
    if (be->host_is_device) {
        out[0] = 0;
        return 1;
    }
    int n = 0;
    for (int i = 0; i < cfg->devices && i < PB_MAX_STAGES; i++) {
        int d = cfg->n_device_map ? cfg->device_map[i] : i;
        bool seen = false;
        for (int j = 0; j < n; j++) seen |= out[j] == d;
        if (!seen) out[n++] = d;
    }
    if (n == 0) out[n++] = 0;
    return n;
}

void pb_calibration_summarize(const double *peaks, const double *gemm_ms, int n, pb_calibration *out)
{
    double sum = 0.0, lo = NAN, hi = NAN, slow = NAN;
    int measured = 0;
    for (int i = 0; i < n; i++) {
        if (!isnan(peaks[i])) {
            sum += peaks[i];
            measured++;
            if (isnan(lo) || peaks[i] < lo) lo = peaks[i];
            if (isnan(hi) || peaks[i] > hi) hi = peaks[i];
        }
        if (!isnan(gemm_ms[i]) && (isnan(slow) || gemm_ms[i] > slow)) slow = gemm_ms[i];
    }
    /* a device that could not be measured leaves the mean undefined: a
     * partial mean would pass for the whole run's */
    out->peak_tflops = measured == n && n > 0 ? sum / n : NAN;
    out->peak_min = lo;
    out->peak_max = hi;
    out->gemm_ms = slow;
    out->n = n;
}

/* One device: its peak and the step's GEMMs alone. */
static pb_status calibrate_one(const pb_config *cfg, const pb_model *model, const pb_backend *be, int ordinal,
                               char *name, size_t name_len, double *peak, double *gemm_ms)
{
    pb_status st = PB_OK;
    pb_device *dev = NULL;
    pb_device_info info;
    pb_device_opts dev_opts = pb_config_model_device_opts(cfg, model);
    dev_opts.mem_limit = 0; /* --device-mem-mb caps the run's memory; these buffers are freed before it allocates */
    PB_TRY(be->open(&dev_opts, ordinal, &dev));
    if (be->info(dev, &info) == PB_OK && !name[0]) snprintf(name, name_len, "%s", info.name);
    if (be->calibrate) PB_TRY(be->calibrate(dev, peak));
    if (be->gemm_reference) {
        /* as the step calls them: a strategy that accumulates SGD's
         * momentum in the weight-gradient GEMM (single) does so where the
         * backend prefers that */
        const pb_strategy *strategy = pb_find_strategy(cfg->strategy);
        float dw_beta = strategy && strategy->momentum_in_wgrad ? pb_momentum_wgrad_beta(cfg, be) : 0.0f;
        int m = cfg->shape.batch / cfg->devices;
        /* one set per call, so SIGINT/SIGTERM stops calibration after the
         * set under way (a set of mlp-m takes seconds on a CPU); the caller
         * sees pb_signals_caught() and gemm_ms stays NAN */
        double t[GEMM_SETS];
        for (int i = 0; i < GEMM_SETS; i++) {
            if (pb_signals_caught()) goto cleanup;
            PB_TRY(model->ops->gemm_reference(model, be, dev, m, dw_beta, 1, &t[i]));
        }
        qsort(t, GEMM_SETS, sizeof t[0], cmp_double);
        *gemm_ms = t[GEMM_SETS / 2];
        /* The peak is the best of a set of shapes that includes the step's
         * own GEMMs: on a CPU the step's shapes can beat the square one, and
         * a peak below what the step reached would report an mfu above 1.
         * Their rate is counted in model FLOPs (the first block's input
         * gradient, which the step skips, included) over the fastest set,
         * so mfu <= that set's time / step_ms_mean < 1 (docs/statistics.md). */
        double step_rate = pb_model_flops(model, 0, model->n_blocks, m) / (t[0] * 1e-3) / 1e12;
        if (!isnan(*peak) && t[0] > 0 && step_rate > *peak) {
            if (!cfg->quiet)
                pb_log_info("calibration: the step's own GEMMs ran at %.3f TFLOP/s, above the square GEMM's %.3f: "
                            "the peak is theirs",
                            step_rate, *peak);
            *peak = step_rate;
        }
    }
cleanup:
    if (dev) be->close(dev);
    return st;
}

pb_status pb_calibrate_on(const pb_config *cfg, const pb_model *model, const pb_backend *be, const int *ordinals,
                          int n, pb_calibration *out)
{
    pb_status st = PB_OK;
    double peaks[PB_MAX_STAGES], gemm[PB_MAX_STAGES];
    out->peak_tflops = out->peak_min = out->peak_max = out->gemm_ms = NAN;
    out->n = 0;
    out->device[0] = '\0';
    PB_REQUIRE(n >= 1 && n <= PB_MAX_STAGES, PB_ERR_INTERNAL, "calibrating %d devices", n);
    if (!cfg->quiet)
        pb_log_info("calibrating: the GEMM peak, then %d sets of the step's GEMMs alone, on %d device%s",
                    GEMM_SETS, n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        peaks[i] = gemm[i] = NAN;
        PB_TRY(calibrate_one(cfg, model, be, ordinals[i], out->device, sizeof out->device, &peaks[i], &gemm[i]));
        if (pb_signals_caught()) goto cleanup;
    }
    pb_calibration_summarize(peaks, gemm, n, out);
cleanup:
    return st;
}

pb_status pb_calibrate(const pb_config *cfg, const pb_model *model, int rank_device, pb_calibration *out)
{
    const pb_backend *be = pb_find_backend(cfg->backend);
    if (!be) return pb_error(PB_ERR_INTERNAL, "backend %s not found", cfg->backend);
    int ordinals[PB_MAX_STAGES];
    int n = pb_calibrate_ordinals(cfg, be, rank_device, ordinals);
    return pb_calibrate_on(cfg, model, be, ordinals, n, out);
}
