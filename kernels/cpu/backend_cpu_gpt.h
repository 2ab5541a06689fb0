/* The cpu backend's transformer ops table (pb_backend.transformer): the
 * host-array GPT ops of gpt_ops.h behind the backend's signatures. */
#ifndef PB_BACKEND_CPU_GPT_H
#define PB_BACKEND_CPU_GPT_H

#include "../backend.h"

extern const pb_transformer_ops pb_cpu_transformer_ops;

#endif /* PB_BACKEND_CPU_GPT_H */
