/* The environment columns of a row: where and with what the run ran. */
#ifndef PB_ENV_H
#define PB_ENV_H

#include "../kernels/backend.h"
#include "results.h"

/* Host, CPU model, compiler, git revision, UTC time; and from the device
 * info, the GPU/driver/CUDA/cuBLAS or BLAS columns that apply. */
void pb_env_fill(pb_record *r, const char *backend, const pb_device_info *dev, int gpu_count);

/* Resident set high-water mark of this process in MB. */
double pb_host_rss_mb(void);

#endif /* PB_ENV_H */
