/* The cuda backend's transformer ops table (pb_backend.transformer): the
 * kernels of encoder.cuh, layernorm.cuh, attention.cuh and classifier.cuh
 * behind kernels/backend.h's signatures. The float * of an activation
 * points at the device's activation type: fp32, or bf16 with --precision
 * bf16 (act_bytes), as the stage's boundary buffers are sized.
 *
 * The matmul slots are NULL on purpose: the GEMMs with their epilogues
 * (bias, GELU_AUX_BIAS, DGELU_BGRAD, BGRADB) come as one backend-level
 * GEMM op that replaces these slots on both backends, wired in separately.
 * Until then workloads/transformer_check.c names the first NULL slot and a
 * GPT run on cuda is refused with exit 2 before any device is opened. */
#ifndef PB_CUDA_GPT_OPS_CUH
#define PB_CUDA_GPT_OPS_CUH

#include "attention.cuh"
#include "classifier.cuh"
#include "encoder.cuh"
#include "layernorm.cuh"

static const pb_transformer_ops cuda_transformer_ops = {
    .encoder_fwd = cuda_encoder_fwd,
    .encoder_bwd = cuda_encoder_bwd,
    .layernorm_fwd = cuda_layernorm_fwd,
    .layernorm_bwd = cuda_layernorm_bwd,
    /* the backend-level GEMM op replaces these (see above) */
    .matmul_fwd = NULL,
    .matmul_bwd = NULL,
    .matmul_gelu_fwd = NULL,
    .matmul_gelu_bwd = NULL,
    .residual_fwd = cuda_residual_fwd,
    .attention_fwd = cuda_attention_fwd,
    .attention_bwd = cuda_attention_bwd,
    .attention_scratch = cuda_attention_scratch,
    .classifier = cuda_classifier,
    .residual_layernorm_fwd = cuda_residual_layernorm_fwd,
    /* These ops take bf16 activations already (the launchers dispatch on
     * the device's precision; parameters and their gradients stay fp32),
     * but the table as a whole does only once its GEMM op does too: set
     * this when the GEMM op is wired with bf16 activations. */
    .bf16_act = false,
    /* not yet: a GPT's gemm_ms on cuda is its weight GEMMs alone (the
     * strided-batched attention GEMMs are not timed apart) */
    .attention_gemms_ms = NULL,
};

#endif /* PB_CUDA_GPT_OPS_CUH */
