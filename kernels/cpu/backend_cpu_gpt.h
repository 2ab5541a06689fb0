/* The cpu backend's transformer ops table (pb_backend.transformer): the
 * host-array GPT ops of gpt_ops.h behind the backend's signatures. */
#ifndef PB_BACKEND_CPU_GPT_H
#define PB_BACKEND_CPU_GPT_H

#include "../backend.h"

extern const pb_transformer_ops pb_cpu_transformer_ops;

/* pb_transformer_ops.gemm_residual_fwd (backend_cpu.c, beside gemm_fwd) */
pb_status pb_cpu_gemm_residual_fwd(pb_device *dev, const pb_gemm *g, const float *res);

#endif /* PB_BACKEND_CPU_GPT_H */
