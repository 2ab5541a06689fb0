/* The environment columns of a row: where and with what the run ran. */
#ifndef PB_ENV_H
#define PB_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "../kernels/backend.h"
#include "results.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Host, CPU model, compiler, git revision, UTC time; and from the device
 * info, the GPU/driver/CUDA/cuBLAS or BLAS columns that apply (be may be
 * NULL: the BLAS columns). */
void pb_env_fill(pb_record *r, const pb_backend *be, const pb_device_info *dev, int gpu_count);

/* The project's version; a row's git_rev says which commit of it. */
#define PB_VERSION "0.15.0"

/* bench --version: "bench VERSION", then "git_rev REV", the optional parts
 * built ("cuda on|off", "mpi", "nccl", "nvtx") and "compiler NAME VERSION",
 * one "key value" per line so a script can grep one. */
void pb_env_print_version(FILE *f);

/* Resident set high-water mark of this process in MB. */
double pb_host_rss_mb(void);

#ifdef __cplusplus
}
#endif

#endif /* PB_ENV_H */
