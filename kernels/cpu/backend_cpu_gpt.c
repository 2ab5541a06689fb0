/* The cpu backend's transformer ops (its GEMMs are the backend's gemm_fwd /
 * gemm_bwd, backend_cpu.c): gpt_ops.h's host-array ops behind the backend
 * table's signatures (device memory is host memory here, and none
 * of them can fail on valid shapes). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "../../harness/timer.h"
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

/* Row by row, so the losses need no buffer: each row's loss is summed in
 * double, then scaled once. The op reads the logits and writes dlogits in
 * one pass (no copy of the logits first, in place or not). */
static pb_status classifier(pb_device *dev, float *dlogits, const float *logits, const int32_t *targets, int N, int V,
                            int Vp, float scale, float *loss_sum)
{
    (void)dev;
    double sum = 0.0;
    for (int i = 0; i < N; i++) {
        size_t off = (size_t)i * (size_t)Vp;
        float loss = 0.0f;
        pb_cpu_classifier_fused(&loss, dlogits + off, logits + off, targets + i, 1, V, Vp, scale);
        sum += (double)loss;
    }
    *loss_sum += (float)(sum * (double)scale);
    return PB_OK;
}

static int cmp_ms(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The GEMM-alone reference's attention part. One layer's buffers serve
 * every layer (a step keeps qkv and att per layer: at gpt2-124m's shape a
 * second set would be 0.8 GB a layer; at gpt-xs's all of it is in cache
 * either way). They are allocated per call, outside the timing, and run
 * once untimed first so that pages and the BLAS's buffers are warm; zeros,
 * on which sgemm runs as fast as on any normal numbers. */
static pb_status attention_gemms_ms(pb_device *dev, int layers, int B, int T, int C, int NH, int reps, double *ms)
{
    pb_status st = PB_OK;
    const pb_backend *be = &pb_backend_cpu;
    const size_t n_qkv = (size_t)B * (size_t)T * 3u * (size_t)C, n_out = (size_t)B * (size_t)T * (size_t)C;
    const size_t n_att = (size_t)B * (size_t)NH * (size_t)T * (size_t)T;
    float *qkv = NULL, *dqkv = NULL, *out = NULL, *dout = NULL, *att = NULL, *scratch = NULL;
    double t[64];
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    PB_TRY(be->alloc(dev, n_qkv * sizeof(float), (void **)&qkv));
    PB_TRY(be->alloc(dev, n_qkv * sizeof(float), (void **)&dqkv));
    PB_TRY(be->alloc(dev, n_out * sizeof(float), (void **)&out));
    PB_TRY(be->alloc(dev, n_out * sizeof(float), (void **)&dout));
    PB_TRY(be->alloc(dev, n_att * sizeof(float), (void **)&att));
    PB_TRY(be->alloc(dev, pb_cpu_attention_scratch(T) * sizeof(float), (void **)&scratch));
    for (int i = -1; i < reps; i++) {
        double t0 = pb_now_ms();
        for (int l = 0; l < layers; l++) pb_cpu_attention_gemms_fwd(out, att, qkv, B, T, C, NH);
        for (int l = 0; l < layers; l++) pb_cpu_attention_gemms_bwd(dqkv, scratch, dout, qkv, att, B, T, C, NH);
        if (i >= 0) t[i] = pb_now_ms() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_ms);
    *ms = t[reps / 2];
cleanup:;
    float *bufs[] = {qkv, dqkv, out, dout, att, scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(dev, bufs[i]);
    return st;
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
    .gemm_residual_fwd = pb_cpu_gemm_residual_fwd,
    .bf16_act = false,
    .attention_gemms_ms = attention_gemms_ms,
};
