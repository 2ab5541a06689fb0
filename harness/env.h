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
 * NULL: the BLAS columns), with blas_core or gpu_check; a BLAS whose kernels
 * are below the CPU's instruction set, or a GPU below its clocks or PCIe
 * width, is said on stderr too. */
void pb_env_fill(pb_record *r, const pb_backend *be, const pb_device_info *dev, int gpu_count);

/* The project's version; a row's git_rev says which commit of it. */
#define PB_VERSION "0.15.0"

/* bench --version: "bench VERSION", then "git_rev REV", the optional parts
 * built ("cuda on|off", "mpi", "nccl", "nvtx") and "compiler NAME VERSION",
 * one "key value" per line so a script can grep one. */
void pb_env_print_version(FILE *f);

/* The env_vars column from this process's environment (harness/envvars.h).
 * Called when the run starts, before any library it runs sets a variable
 * of its own (nccl's same-GPU test mode sets NCCL_HOSTID): the row records
 * the environment the run was given. */
void pb_env_fill_vars(pb_record *r);

/* One line on the BLAS the cpu backend runs, for `bench list`: "OpenBLAS
 * 0.3.21, SkylakeX kernels (avx512; this CPU avx512)", with the fix when
 * they are below the CPU's instruction set. */
void pb_env_blas_summary(char *out, size_t len);

/* Resident set high-water mark of this process in MB. */
double pb_host_rss_mb(void);

#ifdef __cplusplus
}
#endif

#endif /* PB_ENV_H */
