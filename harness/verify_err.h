/* --verify's measure of how far a strategy's parameters are from single's
 * (docs/strategies.md, "--verify"). */
#ifndef PB_VERIFY_ERR_H
#define PB_VERIFY_ERR_H

#include <stddef.h>

#include "../workloads/workload.h"
#include "shape.h"

/* SGD's floor under |want| in the elementwise measure: a parameter near 0
 * is judged on an absolute scale of 1e-3 (a tenth of a step of lr 1e-2). */
#define PB_VERIFY_FLOOR 1e-3

/* The largest elementwise difference, |got - want| / (|want| +
 * PB_VERIFY_FLOOR) (NaN when any is NaN). */
double pb_max_rel_diff(const float *got, const float *want, size_t n);

/* The largest normwise difference of a tensor, ||got - want||_2 /
 * ||want||_2 over each of the model's tensors (0 when both are 0, infinite
 * when only want is, NaN when any is NaN); *worst (may be NULL) is that
 * tensor's index. */
double pb_max_tensor_rel_diff(const pb_model *m, const float *got, const float *want, int *worst);

/* What --verify judges for an optimizer: SGD elementwise, AdamW normwise
 * per tensor (AdamW scales each element's step by its own gradient's size,
 * so the rounding of a gradient near zero moves that one element by a
 * fraction of lr: an elementwise measure judges noise there). *worst: the
 * tensor of the largest difference (-1 elementwise, where it is not
 * tracked). */
double pb_verify_error(const pb_model *m, pb_optimizer o, const float *got, const float *want, int *worst);

#endif /* PB_VERIFY_ERR_H */
