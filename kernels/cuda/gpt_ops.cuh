/* The cuda backend's transformer ops table (pb_backend.transformer): the
 * kernels of encoder.cuh, layernorm.cuh, attention.cuh and classifier.cuh
 * behind kernels/backend.h's signatures. The float * of an activation
 * points at the device's activation type: fp32, or bf16 with --precision
 * bf16 (act_bytes), as the stage's boundary buffers are sized.
 *
 * The GPT's linear maps are not here: they run the backend's own GEMM with
 * epilogues (gemm_fwd / gemm_bwd in matmul.cuh: bias, GELU_AUX_BIAS,
 * DGELU_BGRAD, BGRADB), as the MLP's do. */
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
    .residual_fwd = cuda_residual_fwd,
    .attention_fwd = cuda_attention_fwd,
    .attention_bwd = cuda_attention_bwd,
    .attention_scratch = cuda_attention_scratch,
    .classifier = cuda_classifier,
    .residual_layernorm_fwd = cuda_residual_layernorm_fwd,
    /* not yet (cuBLASLt's C = the residual with beta 1 would give it): the
     * stage runs gemm_fwd, then residual_layernorm_fwd or residual_fwd */
    .gemm_residual_fwd = NULL,
    /* These ops take bf16 activations (the launchers dispatch on the
     * device's precision; parameters and their gradients stay fp32), and
     * so do gemm_fwd / gemm_bwd, the GPT's other ops */
    .bf16_act = true,
    /* not yet: a GPT's gemm_ms on cuda is its weight GEMMs alone (the
     * strided-batched attention GEMMs are not timed apart) */
    .attention_gemms_ms = NULL,
};

#endif /* PB_CUDA_GPT_OPS_CUH */
