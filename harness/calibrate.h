/* Calibration: the device's measured GEMM peak (for MFU) and the time of one
 * step's GEMMs called alone (the floor a step's overhead is judged against).
 * Used before a run's steps and by `bench calibrate`. */
#ifndef PB_CALIBRATE_H
#define PB_CALIBRATE_H

#include "../workloads/workload.h"
#include "../kernels/backend.h"
#include "config.h"

typedef struct pb_calibration {
    /* the mean of the calibrated devices' GEMM peaks: the peak MFU is
     * computed against (mfu = model_tflops / devices / peak_tflops, that is
     * the work done over the sum of the devices' peaks); NAN when the
     * backend cannot measure it */
    double peak_tflops;
    double peak_min, peak_max; /* the spread across the calibrated devices */
    double gemm_ms;            /* the slowest device's; NAN likewise */
    int n;                     /* devices calibrated */
    char device[128];
} pb_calibration;

/* The device ordinals one process calibrates, each once: a rank of a
 * rank-per-device strategy its own device (rank_device, from
 * pb_rank_device); a one-process strategy every distinct physical device of
 * its --device-map (0..devices-1 without one), since a step waits for its
 * slowest device; where device memory is host memory (cpu) the devices all
 * stand for the same cores: ordinal 0 once. Returns the count (>= 1). */
int pb_calibrate_ordinals(const pb_config *cfg, const pb_backend *be, int rank_device, int *out);

/* Opens each of the ordinals of be in turn, measures, closes it; fills *out
 * with the mean, min and max peak and the slowest GEMM time. */
pb_status pb_calibrate_on(const pb_config *cfg, const pb_model *model, const pb_backend *be, const int *ordinals,
                          int n, pb_calibration *out);

/* pb_calibrate_on with cfg->backend's devices from pb_calibrate_ordinals. */
pb_status pb_calibrate(const pb_config *cfg, const pb_model *model, int rank_device, pb_calibration *out);

/* The row's numbers from n devices' peaks and GEMM times (NAN where not
 * measured): the mean, min and max peak, the slowest GEMM time. Used for a
 * process's devices and for the ranks' gathered ones. */
void pb_calibration_summarize(const double *peaks, const double *gemm_ms, int n, pb_calibration *out);

#endif /* PB_CALIBRATE_H */
