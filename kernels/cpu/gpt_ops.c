/* The GPT-2 transformer ops on the CPU (gpt_ops.h): CBLAS sgemm for every
 * GEMM, single-threaded loops for the rest (the BLAS has its own threads,
 * set by the backend). docs/transformer-ops.md has the math. */
/* a*b + c stays two roundings (GNU C would fuse it in the AVX2 and AVX-512
 * clones below and not in the baseline one), and the reductions keep 8
 * lanes in every clone, so that the clones compute the same operations in
 * the same order and a run does not depend on the CPU's vector width.
 * Before the includes, so the inline functions of gelu.h get it too. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../gelu.h"
#include "gpt_ops.h"

/* The loops with an exp (softmax, classifier, GELU) are what the GEMMs are
 * measured against; compiled again for AVX-512 and AVX2 and picked when the
 * library loads (the build targets baseline x86-64). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VEC_CLONES
#endif

/* exp(x), within 1 ulp of the exact value on [-87, 88] (0.97 at worst over
 * every 16th float there, checked once by hand) (Cephes' expf: x = k ln2 + r,
 * |r| <= ln2/2, a degree-7 polynomial in r, 2^k from the exponent bits), in
 * float operations alone so that a loop of it vectorises; libm's expf is a
 * call per element (GELU over [N,4C] with tanhf took ten times the GEMM it
 * follows). Arguments below -87 give exp(-87) ~ 1.6e-38 instead of a
 * smaller number or 0 (every use adds it to 1 or to a sum >= 1); above 88,
 * exp(88); NaN stays NaN. */
static inline float vexpf(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float kf = x * 1.44269504088896341f + shift;
    union {
        float f;
        uint32_t u;
    } k = {.f = kf}, scale;
    kf -= shift;
    float r = x - kf * 0.693359375f; /* ln2 in two parts: the first exact in kf * it */
    r = r - kf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    /* k + 127 in [1, 254]: a normal 2^k (unsigned: a NaN's bits shift out
     * without overflow, and NaN * anything is NaN) */
    scale.u = (k.u - 0x4B400000u + 127u) << 23;
    return y * scale.f;
}

/* Reductions in 8 independent lanes, which the compiler vectorises (a
 * single accumulator is a chain it may not reorder). */
#define LANES 8

static inline float lanes_max(const float *a, int n)
{
    float m = a[0], acc[LANES];
    for (int l = 0; l < LANES; l++) acc[l] = a[0];
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) acc[l] = a[j + l] > acc[l] ? a[j + l] : acc[l];
    for (; j < n; j++) m = a[j] > m ? a[j] : m;
    for (int l = 0; l < LANES; l++) m = acc[l] > m ? acc[l] : m;
    return m;
}

/* sum of a[j] * (b ? b[j] : 1) */
static inline float lanes_dot(const float *a, const float *b, int n)
{
    float s = 0.0f, acc[LANES] = {0};
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += b ? a[j + l] * b[j + l] : a[j + l];
    for (; j < n; j++) s += b ? a[j] * b[j] : a[j];
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

#define EXP_BLOCK 16

/* e[j] = exp(z[j] - m) for j < n (e may be z); returns their sum. In blocks
 * of a fixed width: a loop of unknown length over a row of unknown alignment
 * is peeled, exps one by one, to align it. */
static inline float exp_shifted(float *e, const float *z, float m, int n)
{
    int j = 0;
    for (; j + EXP_BLOCK <= n; j += EXP_BLOCK)
        for (int l = 0; l < EXP_BLOCK; l++) e[j + l] = vexpf(z[j + l] - m);
    for (; j < n; j++) e[j] = vexpf(z[j] - m);
    return lanes_dot(e, NULL, n);
}

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

/* --- the GELU epilogue's derivative (the GEMMs: the backend's gemm_bwd) -- */

/* dpre = dout * gelu'(pre) (dpre may be dout), and dbias += its column sums
 * in the same pass, while each row is in cache (cuBLASLt's DGELU_BGRAD) */
VEC_CLONES void pb_cpu_dgelu_bgrad(float *dpre, float *dbias, const float *dout, const float *pre, int N, int OC)
{
    for (int r = 0; r < N; r++) {
        size_t o0 = (size_t)r * (size_t)OC;
        for (int o = 0; o < OC; o++) dpre[o0 + o] = dout[o0 + o] * pb_gelu_grad_e(pre[o0 + o], vexpf(pb_gelu_arg(pre[o0 + o])));
        if (dbias)
            for (int o = 0; o < OC; o++) dbias[o] += dpre[o0 + o];
    }
}

/* --- GELU, residual ------------------------------------------------------- */

VEC_CLONES void pb_cpu_gelu_fwd(float *out, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = pb_gelu_e(x[i], vexpf(pb_gelu_arg(x[i])));
}

VEC_CLONES void pb_cpu_gelu_bwd(float *dx, const float *dout, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) dx[i] += dout[i] * pb_gelu_grad_e(x[i], vexpf(pb_gelu_arg(x[i])));
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

/* Row t of the scores becomes softmax over columns 0..t; later columns 0.
 * Every loop runs the whole row of T, the causal part selected by a
 * compare: rows of 1..T columns would each end in a scalar remainder,
 * which cost more than the masked lanes' exps (the max reads a[0] for
 * them, which is in the row). */
VEC_CLONES static void causal_softmax(float *p, int T)
{
    for (int t = 0; t < T; t++) {
        float *row = p + (size_t)t * (size_t)T;
        float acc[LANES], m = row[0];
        for (int l = 0; l < LANES; l++) acc[l] = row[0];
        int j = 0;
        for (; j + LANES <= T; j += LANES)
            for (int l = 0; l < LANES; l++) {
                float v = j + l <= t ? row[j + l] : row[0];
                acc[l] = v > acc[l] ? v : acc[l];
            }
        for (; j <= t; j++) m = row[j] > m ? row[j] : m;
        for (int l = 0; l < LANES; l++) m = acc[l] > m ? acc[l] : m;
        /* in blocks, as exp_shifted; the blocks wholly above the diagonal
         * need no exp */
        for (j = 0; j + EXP_BLOCK <= T && j <= t; j += EXP_BLOCK)
            for (int l = 0; l < EXP_BLOCK; l++) row[j + l] = j + l <= t ? vexpf(row[j + l] - m) : 0.0f;
        if (j <= t)
            for (; j < T; j++) row[j] = j <= t ? vexpf(row[j] - m) : 0.0f;
        else
            memset(row + j, 0, (size_t)(T - j) * sizeof(float));
        float inv = 1.0f / lanes_dot(row, NULL, T); /* >= 1: the max's own term is exp(0) */
        for (j = 0; j < T; j++) row[j] *= inv;
    }
}

/* dS = P * (dP - rowsum(P * dP)) in place of dP. P is exactly 0 above the
 * diagonal, so whole rows give the causal sums and zero dS there (those
 * scores were masked: no gradient flows to them). */
VEC_CLONES static void causal_softmax_bwd(float *dp, const float *p, int T)
{
    for (int t = 0; t < T; t++) {
        const float *pr = p + (size_t)t * (size_t)T;
        float *dr = dp + (size_t)t * (size_t)T;
        float dot = lanes_dot(pr, dr, T);
        for (int j = 0; j < T; j++) dr[j] = pr[j] * (dr[j] - dot);
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

VEC_CLONES void pb_cpu_classifier_fwd(float *losses, const float *logits, const int *targets, int N, int V, int Vp)
{
    for (int r = 0; r < N; r++) {
        const float *z = logits + (size_t)r * (size_t)Vp;
        float m = lanes_max(z, V), sum = 0.0f, acc[LANES] = {0};
        int j = 0;
        for (; j + LANES <= V; j += LANES)
            for (int l = 0; l < LANES; l++) acc[l] += vexpf(z[j + l] - m);
        for (; j < V; j++) sum += vexpf(z[j] - m);
        for (int l = 0; l < LANES; l++) sum += acc[l];
        losses[r] = m + logf(sum) - z[targets[r]];
    }
}

VEC_CLONES void pb_cpu_classifier_fused(float *losses, float *logits, const int *targets, int N, int V, int Vp,
                                        float dloss)
{
    for (int r = 0; r < N; r++) {
        float *z = logits + (size_t)r * (size_t)Vp;
        int tgt = targets[r];
        float m = lanes_max(z, V), zt = z[tgt];
        /* exp once per logit: kept in place of the logit, then scaled into
         * the gradient; only columns below V are read or counted */
        float sum = exp_shifted(z, z, m, V);
        losses[r] = m + logf(sum) - zt;
        float scale = dloss / sum;
        for (int j = 0; j < V; j++) z[j] *= scale;
        z[tgt] -= dloss;
        for (int j = V; j < Vp; j++) z[j] = 0.0f;
    }
}
