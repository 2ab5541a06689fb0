/* The cpu backend's transformer ops (its GEMMs are the backend's gemm_fwd /
 * gemm_bwd, backend_cpu.c): gpt_ops.h's host-array ops behind the backend
 * table's signatures (device memory is host memory here, and none
 * of them can fail on valid shapes). */
#include <string.h>

#include "backend_cpu_gpt.h"
#include "gpt_ops.h"

static pb_status encoder_fwd(pb_device *dev, float *out, const int32_t *tokens, const float *wte, const float *wpe,
                             int B, int T, int C)
{
    (void)dev;
    pb_cpu_encoder_fwd(out, tokens, wte, wpe, B, T, C);
    return PB_OK;
}

static pb_status encoder_bwd(pb_device *dev, float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                             int B, int T, int C)
{
    (void)dev;
    pb_cpu_encoder_bwd(dwte, dwpe, dout, tokens, B, T, C);
    return PB_OK;
}

static pb_status layernorm_fwd(pb_device *dev, float *out, float *mean, float *rstd, const float *x, const float *w,
                               const float *b, int N, int C)
{
    (void)dev;
    pb_cpu_layernorm_fwd(out, mean, rstd, x, w, b, N, C);
    return PB_OK;
}

static pb_status layernorm_bwd(pb_device *dev, float *dx, float *dw, float *db, const float *dout, const float *x,
                               const float *w, const float *mean, const float *rstd, int N, int C)
{
    (void)dev;
    pb_cpu_layernorm_bwd(dx, dw, db, dout, x, w, mean, rstd, N, C);
    return PB_OK;
}

static pb_status residual_fwd(pb_device *dev, float *out, const float *a, const float *b, size_t n)
{
    (void)dev;
    pb_cpu_residual_fwd(out, a, b, n);
    return PB_OK;
}

static pb_status attention_fwd(pb_device *dev, float *out, float *att, const float *qkv, int B, int T, int C, int NH)
{
    (void)dev;
    pb_cpu_attention_fwd(out, att, qkv, B, T, C, NH);
    return PB_OK;
}

static pb_status attention_bwd(pb_device *dev, float *dqkv, float *scratch, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int NH)
{
    (void)dev;
    pb_cpu_attention_bwd(dqkv, scratch, dout, qkv, att, B, T, C, NH);
    return PB_OK;
}

/* the fused form the stage prefers where a backend has it: on the CPU the
 * two ops, so the CPU tests run the stage's fused path too */
static pb_status residual_layernorm_fwd(pb_device *dev, float *res, float *out, float *mean, float *rstd,
                                        const float *a, const float *b, const float *w, const float *bias, int N,
                                        int C)
{
    (void)dev;
    pb_cpu_residual_fwd(res, a, b, (size_t)N * (size_t)C);
    pb_cpu_layernorm_fwd(out, mean, rstd, res, w, bias, N, C);
    return PB_OK;
}

/* Row by row, so the losses need no buffer: each row's loss (the fused op
 * scaled by 1 gives it unscaled) is summed in double, then scaled once. */
static pb_status classifier(pb_device *dev, float *dlogits, const float *logits, const int32_t *targets, int N, int V,
                            int Vp, float scale, float *loss_sum)
{
    (void)dev;
    double sum = 0.0;
    for (int i = 0; i < N; i++) {
        float *row = dlogits + (size_t)i * (size_t)Vp;
        if (row != logits + (size_t)i * (size_t)Vp) memcpy(row, logits + (size_t)i * (size_t)Vp, (size_t)Vp * sizeof *row);
        float loss = 0.0f;
        pb_cpu_classifier_fused(&loss, row, targets + i, 1, V, Vp, scale);
        sum += (double)loss;
    }
    *loss_sum += (float)(sum * (double)scale);
    return PB_OK;
}

const pb_transformer_ops pb_cpu_transformer_ops = {
    .encoder_fwd = encoder_fwd,
    .encoder_bwd = encoder_bwd,
    .layernorm_fwd = layernorm_fwd,
    .layernorm_bwd = layernorm_bwd,
    .residual_fwd = residual_fwd,
    .attention_fwd = attention_fwd,
    .attention_bwd = attention_bwd,
    .attention_scratch = pb_cpu_attention_scratch,
    .classifier = classifier,
    .residual_layernorm_fwd = residual_layernorm_fwd,
    .bf16_act = false,
};
