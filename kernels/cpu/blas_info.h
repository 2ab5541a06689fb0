/* What the CPU backend needs to know about its BLAS and processor: thread
 * control and the names/versions recorded in each CSV row. */
#ifndef PB_BLAS_INFO_H
#define PB_BLAS_INFO_H

#include <stdbool.h>
#include <stddef.h>

void pb_blas_set_threads(int threads);
const char *pb_blas_name(void);    /* "OpenBLAS (Haswell)" */
const char *pb_blas_version(void); /* "0.3.21" */
const char *pb_blas_core(void);    /* "SkylakeX": the kernels it runs */
/* The build picks its kernels at run time (DYNAMIC_ARCH), so
 * OPENBLAS_CORETYPE can choose others. */
bool pb_blas_dynamic(void);
void pb_cpu_model(char *out, size_t len);
/* The "flags" line of /proc/cpuinfo ("" when there is none). */
void pb_cpu_flags(char *out, size_t len);

#endif /* PB_BLAS_INFO_H */
