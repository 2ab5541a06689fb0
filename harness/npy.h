/* Writes arrays in numpy's .npy format (version 1.0), so a run's parameters
 * and data can be checked against numpy or PyTorch. */
#ifndef PB_NPY_H
#define PB_NPY_H

#include <stddef.h>

#include "status.h"

/* dtype: "<f4" (float32) or "<i4" (int32); C order; shape of ndim dims. */
pb_status pb_npy_write(const char *path, const char *dtype, const void *data, size_t elem_size,
                       int ndim, const size_t *shape);

#endif /* PB_NPY_H */
