/* Calibration: the device's measured GEMM peak (for MFU) and the time of one
 * step's GEMMs called alone (the floor a step's overhead is judged against).
 * Used before a run's steps and by `bench calibrate`. */
#ifndef PB_CALIBRATE_H
#define PB_CALIBRATE_H

#include "../workloads/workload.h"
#include "config.h"

typedef struct pb_calibration {
    double peak_tflops; /* NAN when the backend cannot measure it */
    double gemm_ms;     /* NAN likewise */
    char device[128];
} pb_calibration;

/* Opens device 0 of cfg->backend, measures, closes it. */
pb_status pb_calibrate(const pb_config *cfg, const pb_layout *layout, pb_calibration *out);

#endif /* PB_CALIBRATE_H */
