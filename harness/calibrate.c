#include "calibrate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry.h"
#include "signals.h"
#include "../strategies/replica.h"

/* Timed sets of the step's GEMMs: enough for a stable median, few enough
 * that a slow CPU run of mlp-m stays in seconds. */
#define GEMM_SETS 5

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

pb_status pb_calibrate(const pb_config *cfg, const pb_layout *layout, pb_calibration *out)
{
    pb_status st = PB_OK;
    const pb_backend *be = pb_find_backend(cfg->backend);
    pb_device *dev = NULL;
    pb_device_info info;
    int in[PB_MAX_LAYERS], outs[PB_MAX_LAYERS];
    out->peak_tflops = out->gemm_ms = NAN;
    out->device[0] = '\0';
    PB_REQUIRE(be, PB_ERR_INTERNAL, "backend %s not found", cfg->backend);
    PB_TRY(be->open(cfg, 0, &dev));
    if (be->info(dev, &info) == PB_OK) snprintf(out->device, sizeof out->device, "%s", info.name);
    if (!cfg->quiet)
        pb_log_info("calibrating: the GEMM peak, then %d sets of the step's GEMMs alone", GEMM_SETS);
    if (be->calibrate) PB_TRY(be->calibrate(dev, &out->peak_tflops));
    if (be->gemm_reference) {
        for (int l = 0; l < layout->n_layers; l++) {
            in[l] = layout->layer[l].in;
            outs[l] = layout->layer[l].out;
        }
        /* as the step calls them: `single` accumulates SGD's momentum in
         * the weight-gradient GEMM where the backend prefers that */
        float dw_beta = strcmp(cfg->strategy, "single") == 0 ? pb_momentum_wgrad_beta(cfg, be) : 0.0f;
        /* one set per call, so SIGINT/SIGTERM stops calibration after the
         * set under way (a set of mlp-m takes seconds on a CPU); the caller
         * sees pb_signals_caught() and gemm_ms stays NAN */
        double t[GEMM_SETS];
        for (int i = 0; i < GEMM_SETS; i++) {
            if (pb_signals_caught()) goto cleanup;
            PB_TRY(be->gemm_reference(dev, layout->n_layers, in, outs, cfg->shape.batch / cfg->devices, dw_beta, 1,
                                      &t[i]));
        }
        qsort(t, GEMM_SETS, sizeof t[0], cmp_double);
        out->gemm_ms = t[GEMM_SETS / 2];
    }
cleanup:
    if (dev) be->close(dev);
    return st;
}
