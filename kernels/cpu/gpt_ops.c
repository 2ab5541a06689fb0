/* The GPT-2 transformer ops on the CPU (gpt_ops.h): CBLAS sgemm for every
 * GEMM, single-threaded loops for the rest (the BLAS has its own threads,
 * set by the backend). docs/transformer-ops.md has the math. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "../gelu.h"
#include "gpt_ops.h"

/* --- encoder -------------------------------------------------------------- */

void pb_cpu_encoder_fwd(float *out, const int *tokens, const float *wte, const float *wpe, int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t bt = (size_t)b * (size_t)T + (size_t)t;
            float *o = out + bt * (size_t)C;
            const float *e = wte + (size_t)tokens[bt] * (size_t)C, *p = wpe + (size_t)t * (size_t)C;
            for (int i = 0; i < C; i++) o[i] = e[i] + p[i];
        }
}

void pb_cpu_encoder_bwd(float *dwte, float *dwpe, const float *dout, const int *tokens, int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t bt = (size_t)b * (size_t)T + (size_t)t;
            const float *d = dout + bt * (size_t)C;
            float *de = dwte + (size_t)tokens[bt] * (size_t)C, *dp = dwpe + (size_t)t * (size_t)C;
            for (int i = 0; i < C; i++) {
                de[i] += d[i];
                dp[i] += d[i];
            }
        }
}

/* --- layernorm ------------------------------------------------------------ */

void pb_cpu_layernorm_fwd(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                          int C)
{
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * (size_t)C;
        float *o = out + (size_t)r * (size_t)C;
        float m = 0.0f;
        for (int i = 0; i < C; i++) m += xr[i];
        m /= (float)C;
        /* two passes: the variance from centred values does not cancel
         * catastrophically as E[x^2] - m^2 does on a large residual stream */
        float v = 0.0f;
        for (int i = 0; i < C; i++) {
            float d = xr[i] - m;
            v += d * d;
        }
        v /= (float)C;
        float s = 1.0f / sqrtf(v + PB_LAYERNORM_EPS);
        for (int i = 0; i < C; i++) o[i] = (xr[i] - m) * s * w[i] + b[i];
        mean[r] = m;
        rstd[r] = s;
    }
}

void pb_cpu_layernorm_bwd(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                          const float *mean, const float *rstd, int N, int C)
{
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * (size_t)C, *d = dout + (size_t)r * (size_t)C;
        float *dxr = dx + (size_t)r * (size_t)C;
        float m = mean[r], s = rstd[r];
        /* dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dout * w */
        float g_mean = 0.0f, gx_mean = 0.0f;
        for (int i = 0; i < C; i++) {
            float xhat = (xr[i] - m) * s, g = d[i] * w[i];
            g_mean += g;
            gx_mean += g * xhat;
        }
        g_mean /= (float)C;
        gx_mean /= (float)C;
        for (int i = 0; i < C; i++) {
            float xhat = (xr[i] - m) * s, g = d[i] * w[i];
            db[i] += d[i];
            dw[i] += d[i] * xhat;
            dxr[i] += s * (g - g_mean - xhat * gx_mean);
        }
    }
}

/* --- matmul with epilogues ------------------------------------------------ */

void pb_cpu_matmul_fwd(float *out, const float *inp, const float *w, const float *bias, int N, int C, int OC)
{
    /* The bias goes in before the GEMM, which then adds to it (beta 1):
     * OpenBLAS scales C by beta in a pass of its own when beta != 1, so
     * beta 0 would cost the same pass over out that the bias fill does. */
    float beta = 0.0f;
    if (bias) {
        for (int r = 0; r < N; r++) memcpy(out + (size_t)r * (size_t)OC, bias, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, beta, out, OC);
}

void pb_cpu_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                       int N, int C, int OC)
{
    if (dinp) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (dbias)
        for (int r = 0; r < N; r++) {
            const float *d = dout + (size_t)r * (size_t)OC;
            for (int o = 0; o < OC; o++) dbias[o] += d[o];
        }
}

void pb_cpu_matmul_gelu_fwd(float *out, float *pre, const float *inp, const float *w, const float *bias, int N, int C,
                            int OC)
{
    pb_cpu_matmul_fwd(pre, inp, w, bias, N, C, OC);
    pb_cpu_gelu_fwd(out, pre, (size_t)N * (size_t)OC);
}

void pb_cpu_matmul_gelu_bwd(float *dinp, float *dw, float *dbias, float *dpre, const float *dout, const float *pre,
                            const float *inp, const float *w, int N, int C, int OC)
{
    size_t n = (size_t)N * (size_t)OC;
    for (size_t i = 0; i < n; i++) dpre[i] = dout[i] * pb_gelu_grad(pre[i]);
    pb_cpu_matmul_bwd(dinp, dw, dbias, dpre, inp, w, N, C, OC);
}

/* --- GELU, residual ------------------------------------------------------- */

void pb_cpu_gelu_fwd(float *out, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = pb_gelu(x[i]);
}

void pb_cpu_gelu_bwd(float *dx, const float *dout, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) dx[i] += dout[i] * pb_gelu_grad(x[i]);
}

void pb_cpu_residual_fwd(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void pb_cpu_residual_bwd(float *da, float *db, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

/* --- attention -------------------------------------------------------------
 *
 * One head of one sequence is a strided view of qkv: Q's rows start at
 * qkv + b*T*3C + h*hs with a row stride (lda) of 3C, K's at +C, V's at +2C;
 * the head's output rows at out + b*T*C + h*hs with stride C. sgemm takes
 * those views as they are, so nothing is copied or transposed. The GEMMs are
 * the full T x T products (the causal upper triangle is computed and then
 * masked): half of QK^T's and PV's work is wasted, the price of handing
 * BLAS whole blocks; docs/transformer-ops.md counts the full products. */

typedef struct head {
    const float *q, *k, *v; /* rows of stride ld3 = 3C */
    float *dq, *dk, *dv;    /* the same views of dqkv */
    float *o;               /* out (forward) rows of stride C */
    const float *dout;      /* dout (backward) rows of stride C */
    float *p;               /* att, T x T */
    int T, C, hs;
    float scale;
} head;

static head head_view(const float *qkv, float *dqkv, float *out, const float *dout, const float *att, int b, int h,
                      int T, int C, int NH)
{
    int hs = C / NH;
    size_t tok = (size_t)b * (size_t)T;
    size_t qoff = tok * 3u * (size_t)C + (size_t)h * (size_t)hs;
    size_t ooff = tok * (size_t)C + (size_t)h * (size_t)hs;
    head hd = {
        .q = qkv + qoff,
        .k = qkv + qoff + C,
        .v = qkv + qoff + 2 * (size_t)C,
        .dq = dqkv ? dqkv + qoff : NULL,
        .dk = dqkv ? dqkv + qoff + C : NULL,
        .dv = dqkv ? dqkv + qoff + 2 * (size_t)C : NULL,
        .o = out ? out + ooff : NULL,
        .dout = dout ? dout + ooff : NULL,
        .p = (float *)att + ((size_t)b * (size_t)NH + (size_t)h) * (size_t)T * (size_t)T,
        .T = T,
        .C = C,
        .hs = hs,
        .scale = 1.0f / sqrtf((float)hs),
    };
    return hd;
}

/* S = scale Q K^T into p */
static void gemm_scores(const head *hd)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hd->T, hd->T, hd->hs, hd->scale, hd->q, 3 * hd->C, hd->k,
                3 * hd->C, 0.0f, hd->p, hd->T);
}

/* O = P V */
static void gemm_mix(const head *hd)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hd->T, hd->hs, hd->T, 1.0f, hd->p, hd->T, hd->v, 3 * hd->C,
                0.0f, hd->o, hd->C);
}

/* dP = dO V^T into dp; dV += P^T dO */
static void gemm_dp_dv(const head *hd, float *dp)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hd->T, hd->T, hd->hs, 1.0f, hd->dout, hd->C, hd->v,
                3 * hd->C, 0.0f, dp, hd->T);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hd->T, hd->hs, hd->T, 1.0f, hd->p, hd->T, hd->dout, hd->C,
                1.0f, hd->dv, 3 * hd->C);
}

/* dQ += scale dS K; dK += scale dS^T Q (the 1/sqrt(hs) of the scores lands
 * here as alpha, not as a pass over dS) */
static void gemm_dq_dk(const head *hd, const float *ds)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hd->T, hd->hs, hd->T, hd->scale, ds, hd->T, hd->k,
                3 * hd->C, 1.0f, hd->dq, 3 * hd->C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hd->T, hd->hs, hd->T, hd->scale, ds, hd->T, hd->q, 3 * hd->C,
                1.0f, hd->dk, 3 * hd->C);
}

/* Row t of the scores becomes softmax over columns 0..t; later columns 0. */
static void causal_softmax(float *p, int T)
{
    for (int t = 0; t < T; t++) {
        float *row = p + (size_t)t * (size_t)T;
        float m = row[0];
        for (int j = 1; j <= t; j++) m = row[j] > m ? row[j] : m;
        float sum = 0.0f;
        for (int j = 0; j <= t; j++) {
            row[j] = expf(row[j] - m);
            sum += row[j];
        }
        float inv = 1.0f / sum; /* sum >= 1: the max's own term is exp(0) */
        for (int j = 0; j <= t; j++) row[j] *= inv;
        for (int j = t + 1; j < T; j++) row[j] = 0.0f;
    }
}

/* dS = P * (dP - rowsum(P * dP)) in place of dP, zero above the diagonal
 * (those scores were masked: no gradient flows to them) */
static void causal_softmax_bwd(float *dp, const float *p, int T)
{
    for (int t = 0; t < T; t++) {
        const float *pr = p + (size_t)t * (size_t)T;
        float *dr = dp + (size_t)t * (size_t)T;
        float dot = 0.0f;
        for (int j = 0; j <= t; j++) dot += pr[j] * dr[j];
        for (int j = 0; j <= t; j++) dr[j] = pr[j] * (dr[j] - dot);
        for (int j = t + 1; j < T; j++) dr[j] = 0.0f;
    }
}

void pb_cpu_attention_fwd(float *out, float *att, const float *qkv, int B, int T, int C, int NH)
{
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            head hd = head_view(qkv, NULL, out, NULL, att, b, h, T, C, NH);
            gemm_scores(&hd);
            causal_softmax(hd.p, T);
            gemm_mix(&hd);
        }
}

size_t pb_cpu_attention_scratch(int T) { return (size_t)T * (size_t)T; }

void pb_cpu_attention_bwd(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att, int B,
                          int T, int C, int NH)
{
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            head hd = head_view(qkv, dqkv, NULL, dout, att, b, h, T, C, NH);
            gemm_dp_dv(&hd, scratch);
            causal_softmax_bwd(scratch, hd.p, T);
            gemm_dq_dk(&hd, scratch);
        }
}

void pb_cpu_attention_gemms_fwd(float *out, float *att, const float *qkv, int B, int T, int C, int NH)
{
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            head hd = head_view(qkv, NULL, out, NULL, att, b, h, T, C, NH);
            gemm_scores(&hd);
            gemm_mix(&hd);
        }
}

void pb_cpu_attention_gemms_bwd(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att,
                                int B, int T, int C, int NH)
{
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            head hd = head_view(qkv, dqkv, NULL, dout, att, b, h, T, C, NH);
            gemm_dp_dv(&hd, scratch);
            gemm_dq_dk(&hd, scratch);
        }
}

/* --- fused classifier ----------------------------------------------------- */

static float row_max(const float *z, int V)
{
    float m = z[0];
    for (int j = 1; j < V; j++) m = z[j] > m ? z[j] : m;
    return m;
}

void pb_cpu_classifier_fwd(float *losses, const float *logits, const int *targets, int N, int V, int Vp)
{
    for (int r = 0; r < N; r++) {
        const float *z = logits + (size_t)r * (size_t)Vp;
        float m = row_max(z, V), sum = 0.0f;
        for (int j = 0; j < V; j++) sum += expf(z[j] - m);
        losses[r] = m + logf(sum) - z[targets[r]];
    }
}

void pb_cpu_classifier_fused(float *losses, float *logits, const int *targets, int N, int V, int Vp, float dloss)
{
    for (int r = 0; r < N; r++) {
        float *z = logits + (size_t)r * (size_t)Vp;
        int tgt = targets[r];
        float m = row_max(z, V), zt = z[tgt], sum = 0.0f;
        /* exp once per logit: kept in place of the logit, then scaled into
         * the gradient; only columns below V are read or counted */
        for (int j = 0; j < V; j++) {
            z[j] = expf(z[j] - m);
            sum += z[j];
        }
        losses[r] = m + logf(sum) - zt;
        float inv = 1.0f / sum;
        for (int j = 0; j < V; j++) z[j] = dloss * (z[j] * inv);
        z[tgt] -= dloss;
        for (int j = V; j < Vp; j++) z[j] = 0.0f;
    }
}
