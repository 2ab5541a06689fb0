/* Whether a backend can run a transformer workload: the transformer
 * table's slots the GPT stage calls (workloads/gpt_stage.c, gpt.c) and the
 * backend's gemm_fwd / gemm_bwd must all be there, and bf16 activations
 * need a table that takes them (bf16_act: its ops and the GEMM's). The run refuses a
 * workload on a backend that fails this (harness/config.c), before any
 * device is opened, instead of calling a NULL slot mid-step. */
#ifndef PB_TRANSFORMER_CHECK_H
#define PB_TRANSFORMER_CHECK_H

#include "../kernels/backend.h"

/* NULL when `be` runs the transformer workloads at `precision`; otherwise
 * what is missing, for "the X backend does not have <it> yet": "them" (no
 * table), an op's name ("attention_fwd", "gemm_fwd"), or "bf16
 * activations". */
const char *pb_transformer_missing(const pb_backend *be, pb_precision precision);

#endif /* PB_TRANSFORMER_CHECK_H */
