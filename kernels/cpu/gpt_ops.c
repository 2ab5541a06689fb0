/* The GPT-2 transformer ops on the CPU (gpt_ops.h): CBLAS sgemm for every
 * GEMM, single-threaded loops for the rest (the BLAS has its own threads,
 * set by the backend). docs/transformer-ops.md has the math. */
/* a*b + c stays two roundings (GNU C would fuse it in the AVX2 and AVX-512
 * clones below and not in the baseline one), fused multiply-adds are
 * written out as fmaf (one rounding in every clone: an FMA instruction in
 * the x86-64-v3 and v4 clones, libm's correctly rounded fmaf in the
 * baseline one, slow there and the same bits), and the reductions keep 8
 * lanes in every clone, so that the clones compute the same operations in
 * the same order and a run does not depend on the CPU's vector width.
 * Before the includes, so the inline functions of gelu.h get it too. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
/* Jump threading splits a loop of vexpf at its clamps into one path per
 * clamped constant, which the vectoriser then runs all of under masks: the
 * GELU loops divided three times per vector instead of once (2.5x slower). */
#pragma GCC optimize("no-thread-jumps")
/* A zeroing or copying loop stays a loop: turned into a memset call per
 * softmax row, the call cost more than the row's exps at T = 32 */
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../gelu.h"
#include "gpt_ops.h"

/* The loops with an exp (softmax, classifier, GELU) are what the GEMMs are
 * measured against; compiled again for x86-64-v4 (AVX-512) and v3 (AVX2
 * and FMA) and picked when the library loads (the build targets baseline
 * x86-64). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VEC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VEC_CLONES
#endif

/* exp(x), within 1 ulp of the exact value on [-87, 88] (0.995 at worst
 * over every 16th float there, checked once by hand against double exp) (Cephes' expf: x = k ln2 + r, |r| <= ln2/2, a degree-7 polynomial in
 * r, 2^k from the exponent bits), in float operations alone so that a loop
 * of it vectorises; libm's expf is a call per element (GELU over [N,4C]
 * with tanhf took ten times the GEMM it follows). Its multiply-adds fused:
 * 40% fewer operations, and the exp loops are compute-bound. Arguments
 * below -87 give exp(-87) ~ 1.6e-38 instead of a smaller number or 0
 * (every use adds it to 1 or to a sum >= 1); above 88, exp(88); NaN stays
 * NaN. */
static inline float vexpf(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float kf = fmaf(x, 1.44269504088896341f, shift);
    union {
        float f;
        uint32_t u;
    } k = {.f = kf}, scale;
    kf -= shift;
    float r = fmaf(kf, -0.693359375f, x); /* ln2 in two parts: the first exact in kf * it */
    r = fmaf(kf, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float y = fmaf(p, r * r, r) + 1.0f;
    /* k + 127 in [1, 254]: a normal 2^k (unsigned: a NaN's bits shift out
     * without overflow, and NaN * anything is NaN) */
    scale.u = (k.u - 0x4B400000u + 127u) << 23;
    return y * scale.f;
}

/* e = exp(pb_gelu_arg(x)) up to the rounding of the argument, written
 * -2k x (1 + c x^2) with one fused multiply-add; vexpf clamps at 88 itself,
 * so the argument goes in unclamped (one clamp less per element). */
static inline float gelu_exp(float x)
{
    return vexpf((-2.0f * PB_GELU_K * x) * fmaf(PB_GELU_C, x * x, 1.0f));
}

/* Row reductions in 8-float vectors (GNU C's vector extension: one ymm in
 * the AVX clones, two xmm in the baseline one, the same lanes and order in
 * each), so that they vectorise: GNU C does not reorder a float sum, and
 * arrays of 8 accumulators came out as shuffles at rows of 64. */
typedef float v8f __attribute__((vector_size(8 * sizeof(float))));
#if defined(__GNUC__) && !defined(__clang__)
/* static inline helpers, always inlined: no v8f crosses a call boundary */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

static inline v8f load8(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline v8f splat8(float x) { return (v8f){x, x, x, x, x, x, x, x}; }

/* s + the lanes of v, as a tree (three dependent adds, not eight: rows
 * of 32 to 64 floats are short enough that the chain showed) */
static inline float hsum8(float s, v8f v)
{
    return s + (((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7])));
}

#define LANES 8
typedef int32_t v8i __attribute__((vector_size(8 * sizeof(int32_t))));

/* the largest of a[0..n) (a NaN is skipped as a scalar `x > m ? x : m`
 * skips it) */
static inline float lanes_max(const float *a, int n)
{
    float m = a[0];
    v8f acc = splat8(a[0]);
    int j = 0;
    for (; j + LANES <= n; j += LANES) {
        v8f v = load8(a + j);
        v8i gt = v > acc;
        acc = (v8f)(((v8i)v & gt) | ((v8i)acc & ~gt));
    }
    for (; j < n; j++) m = a[j] > m ? a[j] : m;
    for (int l = 0; l < LANES; l++) m = acc[l] > m ? acc[l] : m;
    return m;
}

/* sum of a[j] * (b ? b[j] : 1): 8 lanes over the blocks of 8, the tail
 * apart, then hsum8 */
static inline float lanes_dot(const float *a, const float *b, int n)
{
    v8f acc = splat8(0.0f);
    int j = 0;
    float s = 0.0f;
    if (b)
        for (; j + LANES <= n; j += LANES) acc += load8(a + j) * load8(b + j);
    else
        for (; j + LANES <= n; j += LANES) acc += load8(a + j);
    for (; j < n; j++) s += b ? a[j] * b[j] : a[j];
    return hsum8(s, acc);
}

/* the largest lane, as a tree (a chain of eight compares was a latency
 * the softmax's short rows paid per row); exact, so in any order the
 * same float, but for a zero's sign, which no later use tells apart */
static inline float max8(v8f v)
{
#define PB_MAX2(a, b) ((a) > (b) ? (a) : (b))
    float a = PB_MAX2(v[0], v[4]), b = PB_MAX2(v[1], v[5]), c = PB_MAX2(v[2], v[6]), d = PB_MAX2(v[3], v[7]);
    a = PB_MAX2(a, c);
    b = PB_MAX2(b, d);
    return PB_MAX2(a, b);
#undef PB_MAX2
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

/* LN_ROWS rows at a time, each with its own accumulators and in the same
 * order as one row alone (the same bits): a row of 64 is a chain of eight
 * dependent vector adds per reduction, and rows side by side keep the
 * adders busy where one row waited on its own chain (25 ns a row of 64) */
#define LN_ROWS 4

VEC_CLONES void pb_cpu_layernorm_fwd(float *restrict out, float *restrict mean, float *restrict rstd,
                                     const float *restrict x, const float *restrict w, const float *restrict b, int N,
                                     int C)
{
    const int C8 = C & ~7;
    int r0 = 0;
    for (; r0 + LN_ROWS <= N; r0 += LN_ROWS) {
        const float *xr = x + (size_t)r0 * (size_t)C;
        float m[LN_ROWS], v[LN_ROWS], s[LN_ROWS];
        v8f acc[LN_ROWS];
        for (int k = 0; k < LN_ROWS; k++) acc[k] = splat8(0.0f);
        for (int i = 0; i < C8; i += 8)
            for (int k = 0; k < LN_ROWS; k++) acc[k] += load8(xr + (size_t)k * C + i);
        for (int k = 0; k < LN_ROWS; k++) {
            m[k] = 0.0f;
            for (int i = C8; i < C; i++) m[k] += xr[(size_t)k * C + i];
            m[k] = hsum8(m[k], acc[k]) / (float)C;
            acc[k] = splat8(0.0f);
        }
        /* two passes: the variance from centred values does not cancel
         * catastrophically as E[x^2] - m^2 does on a large residual stream */
        for (int i = 0; i < C8; i += 8)
            for (int k = 0; k < LN_ROWS; k++) {
                v8f d = load8(xr + (size_t)k * C + i) - splat8(m[k]);
                acc[k] += d * d;
            }
        for (int k = 0; k < LN_ROWS; k++) {
            v[k] = 0.0f;
            for (int i = C8; i < C; i++) v[k] += (xr[(size_t)k * C + i] - m[k]) * (xr[(size_t)k * C + i] - m[k]);
            v[k] = hsum8(v[k], acc[k]) / (float)C;
            s[k] = 1.0f / sqrtf(v[k] + PB_LAYERNORM_EPS);
        }
        for (int k = 0; k < LN_ROWS; k++) {
            const float *xk = xr + (size_t)k * C;
            float *o = out + (size_t)(r0 + k) * (size_t)C;
            for (int i = 0; i < C; i++) o[i] = (xk[i] - m[k]) * s[k] * w[i] + b[i];
            mean[r0 + k] = m[k];
            rstd[r0 + k] = s[k];
        }
    }
    for (int r = r0; r < N; r++) {
        const float *xr = x + (size_t)r * (size_t)C;
        float *o = out + (size_t)r * (size_t)C;
        float m = 0.0f, v = 0.0f;
        v8f acc = splat8(0.0f);
        for (int i = 0; i < C8; i += 8) acc += load8(xr + i);
        for (int i = C8; i < C; i++) m += xr[i];
        m = hsum8(m, acc) / (float)C;
        const v8f vm = splat8(m);
        acc = splat8(0.0f);
        for (int i = 0; i < C8; i += 8) {
            v8f d = load8(xr + i) - vm;
            acc += d * d;
        }
        for (int i = C8; i < C; i++) v += (xr[i] - m) * (xr[i] - m);
        v = hsum8(v, acc) / (float)C;
        float s = 1.0f / sqrtf(v + PB_LAYERNORM_EPS);
        for (int i = 0; i < C; i++) o[i] = (xr[i] - m) * s * w[i] + b[i];
        mean[r] = m;
        rstd[r] = s;
    }
}

VEC_CLONES void pb_cpu_layernorm_bwd(float *restrict dx, float *restrict dw, float *restrict db,
                                     const float *restrict dout, const float *restrict x, const float *restrict w,
                                     const float *restrict mean, const float *restrict rstd, int N, int C)
{
    const int C8 = C & ~7;
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * (size_t)C, *d = dout + (size_t)r * (size_t)C;
        float *dxr = dx + (size_t)r * (size_t)C;
        float m = mean[r], s = rstd[r];
        /* dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dout * w */
        float g_mean = 0.0f, gx_mean = 0.0f;
        v8f ga = splat8(0.0f), gxa = splat8(0.0f);
        const v8f vm = splat8(m), vs = splat8(s);
        for (int i = 0; i < C8; i += 8) {
            v8f xhat = (load8(xr + i) - vm) * vs, g = load8(d + i) * load8(w + i);
            ga += g;
            gxa += g * xhat;
        }
        for (int i = C8; i < C; i++) {
            float xhat = (xr[i] - m) * s, g = d[i] * w[i];
            g_mean += g;
            gx_mean += g * xhat;
        }
        g_mean = hsum8(g_mean, ga) / (float)C;
        gx_mean = hsum8(gx_mean, gxa) / (float)C;
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
        for (int o = 0; o < OC; o++) dpre[o0 + o] = dout[o0 + o] * pb_gelu_grad_e(pre[o0 + o], gelu_exp(pre[o0 + o]));
        if (dbias)
            for (int o = 0; o < OC; o++) dbias[o] += dpre[o0 + o];
    }
}

/* --- GELU, residual ------------------------------------------------------- */

VEC_CLONES void pb_cpu_gelu_fwd(float *out, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = pb_gelu_e(x[i], gelu_exp(x[i]));
}

VEC_CLONES void pb_cpu_gelu_bwd(float *dx, const float *dout, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) dx[i] += dout[i] * pb_gelu_grad_e(x[i], gelu_exp(x[i]));
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
 * Each pass runs over the blocks of 8 that hold columns 0..t (the causal
 * part rounded up to 8, its last block masked by a compare), not over the
 * whole row: the per-row overhead is what costs at T = 32, and half of a
 * row's blocks are above the diagonal on average. So every pass is whole
 * 8-float vectors: the exp of a block is computed for all 8 lanes (vexpf
 * of any float is finite or NaN, and a masked lane's is dropped by the
 * select), the scaling multiplies whole blocks, and the zeros above the
 * causal part are vector stores, not a memset call per row (that call and
 * the scalar ends of the old loops were two thirds of the op's time at
 * T = 32). Only a row longer than the last whole block of 8 (T not a
 * multiple of 8) ends in scalar columns. */
VEC_CLONES static void causal_softmax(float *p, int T)
{
    const int T8 = T & ~7;
    const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    /* the rows' 1/sum, for a chunk of rows at a time: the exps of a chunk
     * first, then its scaling, so that no row's chain of max, exp, sum,
     * division and scaling waits on the one before (the division's
     * latency was the op's largest single cost) */
    enum { CHUNK = 64 };
    float inv[CHUNK];
    for (int t0 = 0; t0 < T; t0 += CHUNK) {
        const int t1 = t0 + CHUNK < T ? t0 + CHUNK : T;
        for (int t = t0; t < t1; t++) {
            float *row = p + (size_t)t * (size_t)T;
            int n = t + 1, end = (n + 7) & ~7;
            if (end > T8) end = T8;
            /* the max (a masked lane keeps the running max) */
            const v8i tt = {t, t, t, t, t, t, t, t};
            v8f acc = splat8(row[0]);
            for (int j = 0; j < end; j += 8) {
                v8i in = lane + (v8i){j, j, j, j, j, j, j, j} <= tt;
                v8f v = (v8f)(((v8i)load8(row + j) & in) | ((v8i)acc & ~in));
                v8i gt = v > acc;
                acc = (v8f)(((v8i)v & gt) | ((v8i)acc & ~gt));
            }
            float m = max8(acc);
            for (int j = end; j < n; j++) m = row[j] > m ? row[j] : m;
            /* exp, 0 above the diagonal, and the sum */
            v8f sum = splat8(0.0f);
            for (int j = 0; j < end; j += 8) {
                v8i in = lane + (v8i){j, j, j, j, j, j, j, j} <= tt;
                float e[8];
                for (int l = 0; l < 8; l++) e[l] = vexpf(row[j + l] - m);
                v8f v = (v8f)((v8i)load8(e) & in);
                memcpy(row + j, &v, sizeof v);
                sum += v;
            }
            float tail = 0.0f;
            for (int j = end; j < n; j++) {
                row[j] = vexpf(row[j] - m);
                tail += row[j];
            }
            inv[t - t0] = 1.0f / hsum8(tail, sum); /* >= 1: the max's own term is exp(0) */
        }
        for (int t = t0; t < t1; t++) {
            float *row = p + (size_t)t * (size_t)T;
            int n = t + 1, end = (n + 7) & ~7;
            if (end > T8) end = T8;
            const float s = inv[t - t0];
            const v8f vs = splat8(s), zero = splat8(0.0f);
            for (int j = 0; j < end; j += 8) {
                v8f v = load8(row + j) * vs;
                memcpy(row + j, &v, sizeof v);
            }
            for (int j = end; j < n; j++) row[j] *= s;
            for (int j = end; j < T8; j += 8) memcpy(row + j, &zero, sizeof zero);
            for (int j = n > T8 ? n : T8; j < T; j++) row[j] = 0.0f;
        }
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

VEC_CLONES void pb_cpu_classifier_fused(float *losses, float *dlogits, const float *logits, const int *targets, int N,
                                        int V, int Vp, float dloss)
{
    for (int r = 0; r < N; r++) {
        const float *z = logits + (size_t)r * (size_t)Vp;
        float *dz = dlogits + (size_t)r * (size_t)Vp;
        int tgt = targets[r];
        float m = lanes_max(z, V), zt = z[tgt];
        /* exp once per logit: kept in dlogits (which may be the logits),
         * then scaled into the gradient; only columns below V are read or
         * counted */
        float sum = exp_shifted(dz, z, m, V);
        losses[r] = m + logf(sum) - zt;
        float scale = dloss / sum;
        for (int j = 0; j < V; j++) dz[j] *= scale;
        dz[tgt] -= dloss;
        for (int j = V; j < Vp; j++) dz[j] = 0.0f;
    }
}
