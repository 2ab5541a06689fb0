/* Whether a backend's transformer ops can run a transformer workload: the
 * slots the GPT stage calls (workloads/gpt_stage.c, gpt.c) must all be
 * there, and bf16 activations need ops that take them. The run refuses a
 * workload on a backend that fails this (harness/config.c), before any
 * device is opened, instead of calling a NULL slot mid-step. */
#ifndef PB_TRANSFORMER_CHECK_H
#define PB_TRANSFORMER_CHECK_H

#include "../kernels/backend.h"

/* NULL when `tr` runs the transformer workloads at `precision`; otherwise
 * what is missing, for "the X backend does not have <it> yet": "them" (no
 * table), a slot's name ("matmul_fwd"), or "bf16 activations". */
const char *pb_transformer_missing(const pb_transformer_ops *tr, pb_precision precision);

#endif /* PB_TRANSFORMER_CHECK_H */
