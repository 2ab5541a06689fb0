#include "calibrate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "registry.h"
#include "../strategies/replica.h"

/* Timed sets of the step's GEMMs: enough for a stable median, few enough
 * that a slow CPU run of mlp-m stays in seconds. */
#define GEMM_SETS 5

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
    if (be->calibrate) PB_TRY(be->calibrate(dev, &out->peak_tflops));
    if (be->gemm_reference) {
        for (int l = 0; l < layout->n_layers; l++) {
            in[l] = layout->layer[l].in;
            outs[l] = layout->layer[l].out;
        }
        /* as the step calls them: `single` accumulates SGD's momentum in
         * the weight-gradient GEMM where the backend prefers that */
        float dw_beta = strcmp(cfg->strategy, "single") == 0 ? pb_momentum_wgrad_beta(cfg, be) : 0.0f;
        PB_TRY(be->gemm_reference(dev, layout->n_layers, in, outs, cfg->shape.batch / cfg->devices, dw_beta,
                                  GEMM_SETS, &out->gemm_ms));
    }
cleanup:
    if (dev) be->close(dev);
    return st;
}
