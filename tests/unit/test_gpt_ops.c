/* The GPT-2 ops of the CPU (kernels/cpu/gpt_ops.h, and the cpu backend's
 * GEMM with epilogues, kernels/backend.h's gemm_fwd / gemm_bwd, that the
 * GPT's linear maps run), each on small shapes:
 *
 *  - forward against a straightforward reference written here in double
 *    precision with naive loops (no BLAS): max |op - ref| <= FWD_RTOL x
 *    max |ref| over the tensor;
 *  - backward against central finite differences of that double reference,
 *    of the loss sum(out * R) for a fixed random R (so dout = R): max
 *    |analytic - fd| <= GRAD_RTOL x max |fd| over each gradient tensor. The
 *    analytic gradient is fp32 and the difference quotient double (step
 *    1e-5, error ~1e-10), so the tolerance measures fp32 rounding alone.
 *    Gradient buffers start from random values, not zero: the check is of
 *    the increment, so it also holds the ops to accumulating (+=);
 *  - a whole GPT-2 (L = 2) assembled from the ops as a workload would: its
 *    loss at GPT-2's initialisation near log(V) (padded logits fed with
 *    large values never count), equal to a double reference model's, and
 *    its gradients against finite differences of the reference model for a
 *    few parameters of every kind.
 * The reference is the test's own; nothing of it comes from the library. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>

#include "harness/config.h"
#include "kernels/backend.h"
#include "kernels/cpu/blas_info.h"
#include "kernels/cpu/gpt_ops.h"
#include "tests/common/test_rng.h"

#define FWD_RTOL 1e-5
#define GRAD_RTOL 2e-5
#define FD_STEP 1e-5

/* --- inputs ---------------------------------------------------------------- */

static double normal(double std)
{
    double u1 = uniform(1e-12, 1.0), u2 = uniform(0.0, 1.0);
    return std * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static float *fvec(size_t n, double lo, double hi)
{
    float *a = malloc(n * sizeof *a);
    assert_non_null(a);
    for (size_t i = 0; i < n; i++) a[i] = (float)uniform(lo, hi);
    return a;
}

static double *dvec(size_t n)
{
    double *a = calloc(n, sizeof *a);
    assert_non_null(a);
    return a;
}

static double *to_double(const float *a, size_t n)
{
    double *d = dvec(n);
    for (size_t i = 0; i < n; i++) d[i] = a[i];
    return d;
}

static float *fcopy(const float *a, size_t n)
{
    float *c = malloc(n * sizeof *c);
    assert_non_null(c);
    memcpy(c, a, n * sizeof *c);
    return c;
}

/* after - before: what a backward added to a gradient that held `before` */
static float *increment(const float *after, const float *before, size_t n)
{
    float *d = malloc(n * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++) d[i] = after[i] - before[i];
    return d;
}

static void expect_close(const char *what, const float *got, const double *ref, size_t n, double rtol)
{
    double err = 0.0, scale = 0.0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (e > err) err = e, worst = i;
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    if (err > rtol * scale)
        fail_msg("%s: max error %.3g at [%zu] (got %.9g, want %.9g) > %.0e x max |ref| %.3g", what, err, worst,
                 (double)got[worst], ref[worst], rtol, scale);
}

/* --- the double reference ops (naive loops) ------------------------------ */

static void ref_layernorm(double *out, const double *x, const double *w, const double *b, int N, int C, double *mean,
                          double *rstd)
{
    for (int r = 0; r < N; r++) {
        const double *xr = x + (size_t)r * C;
        double m = 0.0, v = 0.0;
        for (int i = 0; i < C; i++) m += xr[i];
        m /= C;
        for (int i = 0; i < C; i++) v += (xr[i] - m) * (xr[i] - m);
        v /= C;
        double s = 1.0 / sqrt(v + (double)PB_LAYERNORM_EPS);
        for (int i = 0; i < C; i++) out[(size_t)r * C + i] = (xr[i] - m) * s * w[i] + b[i];
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = s;
    }
}

/* out[r,o] = sum_i inp[r,i] w[o,i] + bias[o] */
static void ref_matmul(double *out, const double *inp, const double *w, const double *bias, int N, int C, int OC)
{
    for (int r = 0; r < N; r++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int i = 0; i < C; i++) s += inp[(size_t)r * C + i] * w[(size_t)o * C + i];
            out[(size_t)r * OC + o] = s;
        }
}

static double ref_gelu(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* out [B,T,C] from qkv [B,T,3C]; att [B,NH,T,T] (may be NULL) */
static void ref_attention(double *out, double *att, const double *qkv, int B, int T, int C, int NH)
{
    int hs = C / NH;
    double *p = dvec((size_t)T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const double *q = qkv + ((size_t)b * T + t) * 3 * C + (size_t)h * hs;
                double m = -INFINITY, sum = 0.0;
                for (int u = 0; u <= t; u++) {
                    const double *k = qkv + ((size_t)b * T + u) * 3 * C + C + (size_t)h * hs;
                    double s = 0.0;
                    for (int i = 0; i < hs; i++) s += q[i] * k[i];
                    p[u] = s / sqrt((double)hs);
                    if (p[u] > m) m = p[u];
                }
                for (int u = 0; u <= t; u++) sum += (p[u] = exp(p[u] - m));
                for (int u = 0; u < T; u++) {
                    double a = u <= t ? p[u] / sum : 0.0;
                    if (att) att[(((size_t)b * NH + h) * T + t) * T + u] = a;
                }
                double *o = out + ((size_t)b * T + t) * C + (size_t)h * hs;
                for (int i = 0; i < hs; i++) {
                    double s = 0.0;
                    for (int u = 0; u <= t; u++) s += p[u] / sum * qkv[((size_t)b * T + u) * 3 * C + 2 * C + h * hs + i];
                    o[i] = s;
                }
            }
    free(p);
}

/* per-row loss over the first V logits of rows Vp wide */
static void ref_xent(double *losses, const double *logits, const int *targets, int N, int V, int Vp)
{
    for (int r = 0; r < N; r++) {
        const double *z = logits + (size_t)r * Vp;
        double m = -INFINITY, sum = 0.0;
        for (int j = 0; j < V; j++) m = z[j] > m ? z[j] : m;
        for (int j = 0; j < V; j++) sum += exp(z[j] - m);
        losses[r] = m + log(sum) - z[targets[r]];
    }
}

/* --- finite differences --------------------------------------------------- */

typedef double (*loss_fn)(void *ctx);

/* Central differences of f w.r.t. every element of x (the double inputs f
 * reads through ctx), against the fp32 analytic gradient. */
static void expect_grad(const char *what, const float *analytic, double *x, size_t n, loss_fn f, void *ctx)
{
    double *fd = dvec(n);
    for (size_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + FD_STEP;
        double lp = f(ctx);
        x[i] = keep - FD_STEP;
        double lm = f(ctx);
        x[i] = keep;
        fd[i] = (lp - lm) / (2.0 * FD_STEP);
    }
    expect_close(what, analytic, fd, n, GRAD_RTOL);
    free(fd);
}

/* expect_grad of what a backward added to a gradient that held `before` */
static void expect_grad_added(const char *what, const float *after, const float *before, double *x, size_t n,
                              loss_fn f, void *ctx)
{
    float *g = increment(after, before, n);
    expect_grad(what, g, x, n, f, ctx);
    free(g);
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* --- encoder -------------------------------------------------------------- */

typedef struct enc_ctx {
    int B, T, C;
    const int *tok;
    double *wte, *wpe, *r, *out;
} enc_ctx;

static void ref_encoder(double *out, const int *tok, const double *wte, const double *wpe, int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < C; i++)
                out[((size_t)b * T + t) * C + i] = wte[(size_t)tok[b * T + t] * C + i] + wpe[(size_t)t * C + i];
}

static double enc_loss(void *p)
{
    enc_ctx *c = p;
    ref_encoder(c->out, c->tok, c->wte, c->wpe, c->B, c->T, c->C);
    return dot(c->out, c->r, (size_t)c->B * c->T * c->C);
}

static void test_encoder(void **state)
{
    (void)state;
    enum { B = 2, T = 8, C = 16, V = 50, MAXT = 12 };
    int tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int)uniform(0, V);
    tok[5] = tok[0]; /* a token seen twice: its row must sum both */
    tok[T + 2] = tok[0];
    size_t n = (size_t)B * T * C;
    float *wte = fvec((size_t)V * C, -1, 1), *wpe = fvec((size_t)MAXT * C, -1, 1), *out = fvec(n, 0, 0);
    pb_cpu_encoder_fwd(out, tok, wte, wpe, B, T, C);
    enc_ctx c = {B, T, C, tok, to_double(wte, (size_t)V * C), to_double(wpe, (size_t)MAXT * C), NULL, dvec(n)};
    ref_encoder(c.out, tok, c.wte, c.wpe, B, T, C);
    expect_close("encoder forward", out, c.out, n, FWD_RTOL);

    float *dout = fvec(n, -1, 1), *dwte0 = fvec((size_t)V * C, -1, 1), *dwpe0 = fvec((size_t)MAXT * C, -1, 1);
    float *dwte = fcopy(dwte0, (size_t)V * C), *dwpe = fcopy(dwpe0, (size_t)MAXT * C);
    pb_cpu_encoder_bwd(dwte, dwpe, dout, tok, B, T, C);
    c.r = to_double(dout, n);
    expect_grad_added("encoder dwte", dwte, dwte0, c.wte, (size_t)V * C, enc_loss, &c);
    expect_grad_added("encoder dwpe (rows past T untouched)", dwpe, dwpe0, c.wpe, (size_t)MAXT * C, enc_loss, &c);
    free(wte), free(wpe), free(out), free(dout), free(dwte0), free(dwpe0), free(dwte), free(dwpe);
    free(c.wte), free(c.wpe), free(c.r), free(c.out);
}

/* --- layernorm ------------------------------------------------------------ */

typedef struct ln_ctx {
    int N, C;
    double *x, *w, *b, *r, *out;
} ln_ctx;

static double ln_loss(void *p)
{
    ln_ctx *c = p;
    ref_layernorm(c->out, c->x, c->w, c->b, c->N, c->C, NULL, NULL);
    return dot(c->out, c->r, (size_t)c->N * c->C);
}

static void test_layernorm(void **state)
{
    (void)state;
    enum { N = 16, C = 16 };
    size_t n = (size_t)N * C;
    /* an offset and a spread per row, as a residual stream has */
    float *x = fvec(n, -1, 1);
    for (int r = 0; r < N; r++)
        for (int i = 0; i < C; i++) x[r * C + i] = x[r * C + i] * (float)(0.5 + r * 0.2) + (float)(r - 5);
    float *w = fvec(C, 0.5, 1.5), *b = fvec(C, -0.5, 0.5), *out = fvec(n, 0, 0), *mean = fvec(N, 0, 0),
          *rstd = fvec(N, 0, 0);
    pb_cpu_layernorm_fwd(out, mean, rstd, x, w, b, N, C);
    ln_ctx c = {N, C, to_double(x, n), to_double(w, C), to_double(b, C), NULL, dvec(n)};
    double *rmean = dvec(N), *rrstd = dvec(N);
    ref_layernorm(c.out, c.x, c.w, c.b, N, C, rmean, rrstd);
    expect_close("layernorm forward", out, c.out, n, FWD_RTOL);
    expect_close("layernorm saved mean", mean, rmean, N, FWD_RTOL);
    expect_close("layernorm saved rstd", rstd, rrstd, N, FWD_RTOL);

    float *dout = fvec(n, -1, 1), *dx0 = fvec(n, -1, 1), *dw0 = fvec(C, -1, 1), *db0 = fvec(C, -1, 1);
    float *dx = fcopy(dx0, n), *dw = fcopy(dw0, C), *db = fcopy(db0, C);
    pb_cpu_layernorm_bwd(dx, dw, db, dout, x, w, mean, rstd, N, C);
    c.r = to_double(dout, n);
    expect_grad_added("layernorm dx", dx, dx0, c.x, n, ln_loss, &c);
    expect_grad_added("layernorm dw", dw, dw0, c.w, C, ln_loss, &c);
    expect_grad_added("layernorm db", db, db0, c.b, C, ln_loss, &c);
    free(x), free(w), free(b), free(out), free(mean), free(rstd), free(dout), free(dx0), free(dw0), free(db0);
    free(dx), free(dw), free(db), free(c.x), free(c.w), free(c.b), free(c.r), free(c.out), free(rmean), free(rrstd);
}

/* --- matmul, with the bias and the bias+GELU epilogues -------------------- */

static pb_device *cpu_dev; /* the cpu backend's device (one BLAS thread) */

/* out [N,OC] = epi(inp [N,C] W^T + bias) through the backend's gemm_fwd */
static void mm_fwd(float *out, float *pre, const float *inp, const float *w, const float *bias, int N, int C, int OC,
                   pb_epilogue epi)
{
    pb_gemm g = {.m = N, .n = OC, .k = C, .x = inp, .w = w, .bias = bias, .y = out, .pre = pre, .epilogue = epi};
    assert_int_equal(pb_backend_cpu.gemm_fwd(cpu_dev, &g), PB_OK);
}

/* its backward: dw += dout^T inp, dinp (NULL: none) = dinp_beta dinp +
 * dout W through GELU's derivative when gelu_pre (then gelu_db, NULL or
 * not, is written with that layer's bias gradient); dbias (NULL: none)
 * written */
static void mm_bwd(float *dinp, float dinp_beta, float *dw, float *dbias, const float *dout, const float *inp,
                   const float *w, int N, int C, int OC, const float *gelu_pre, float *gelu_db)
{
    pb_gemm_grad g = {.m = N, .n = OC, .k = C, .dy = dout, .x = inp, .w = w, .dw = dw, .dw_beta = 1.0f,
                      .db = dbias, .dx = dinp, .dx_beta = dinp_beta,
                      .dx_act = gelu_pre ? PB_DACT_GELU : PB_DACT_NONE, .x_pre = gelu_pre, .dx_db = gelu_db};
    assert_int_equal(pb_backend_cpu.gemm_bwd(cpu_dev, &g), PB_OK);
}

typedef struct mm_ctx {
    int N, C, OC, gelu;
    double *inp, *w, *bias, *r, *out;
} mm_ctx;

static double mm_loss(void *p)
{
    mm_ctx *c = p;
    size_t n = (size_t)c->N * c->OC;
    ref_matmul(c->out, c->inp, c->w, c->bias, c->N, c->C, c->OC);
    if (c->gelu)
        for (size_t i = 0; i < n; i++) c->out[i] = ref_gelu(c->out[i]);
    return dot(c->out, c->r, n);
}

/* Shapes that are not multiples of anything, so a wrong leading dimension
 * or a transposed operand cannot pass by symmetry. gelu: the GELU epilogue,
 * whose derivative (pb_cpu_dgelu_bgrad, what gemm_bwd applies to the input
 * gradient of the layer above it) makes dpre and the bias gradient before
 * the GEMMs run from dpre; in_place: dpre is dout's own buffer. */
static void check_matmul(int N, int C, int OC, bool with_bias, bool gelu, bool in_place)
{
    size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    float *inp = fvec(ni, -1, 1), *w = fvec(nw, -1, 1), *bias = with_bias ? fvec(OC, -1, 1) : NULL;
    float *out = fvec(no, 7, 8), *pre = fvec(no, 7, 8); /* not zero: forward must overwrite */
    mm_fwd(out, gelu ? pre : NULL, inp, w, bias, N, C, OC,
           gelu ? PB_EPI_GELU_BIAS : bias ? PB_EPI_BIAS : PB_EPI_NONE);
    mm_ctx c = {N, C, OC, gelu, to_double(inp, ni), to_double(w, nw), bias ? to_double(bias, OC) : NULL, NULL, dvec(no)};
    ref_matmul(c.out, c.inp, c.w, c.bias, N, C, OC);
    if (gelu) {
        expect_close("matmul+gelu saved pre-activation", pre, c.out, no, FWD_RTOL);
        for (size_t i = 0; i < no; i++) c.out[i] = ref_gelu(c.out[i]);
    }
    expect_close(gelu ? "matmul+gelu forward" : "matmul forward", out, c.out, no, FWD_RTOL);

    /* dinp and dw accumulate (beta 1); gemm_bwd overwrites db, so without
     * GELU its increment is counted from 0 (db starts as garbage all the
     * same), while pb_cpu_dgelu_bgrad adds */
    float *dout = fvec(no, -1, 1), *dinp0 = fvec(ni, -1, 1), *dw0 = fvec(nw, -1, 1), *db0 = fvec(OC, -1, 1);
    float *dinp = fcopy(dinp0, ni), *dw = fcopy(dw0, nw), *db = fcopy(db0, OC);
    if (!gelu) memset(db0, 0, OC * sizeof *db0);
    c.r = to_double(dout, no);
    if (gelu) {
        float *dpre = in_place ? dout : fvec(no, 0, 0);
        pb_cpu_dgelu_bgrad(dpre, bias ? db : NULL, dout, pre, N, OC);
        mm_bwd(dinp, 1.0f, dw, NULL, dpre, inp, w, N, C, OC, NULL, NULL);
        if (!in_place) free(dpre);
    } else {
        mm_bwd(dinp, 1.0f, dw, bias ? db : NULL, dout, inp, w, N, C, OC, NULL, NULL);
    }
    expect_grad_added("matmul dinp", dinp, dinp0, c.inp, ni, mm_loss, &c);
    expect_grad_added("matmul dw", dw, dw0, c.w, nw, mm_loss, &c);
    if (bias) expect_grad_added("matmul dbias", db, db0, c.bias, OC, mm_loss, &c);
    free(inp), free(w), free(bias), free(out), free(pre), free(dout), free(dinp0), free(dw0), free(db0);
    free(dinp), free(dw), free(db), free(c.inp), free(c.w), free(c.bias), free(c.r), free(c.out);
}

static void test_matmul_bias(void **state)
{
    (void)state;
    check_matmul(15, 13, 7, true, false, false);
    check_matmul(16, 16, 48, true, false, false); /* the QKV projection of B=2 T=8 C=16 */
}

static void test_matmul_no_bias(void **state)
{
    (void)state;
    check_matmul(15, 13, 7, false, false, false);
}

static void test_matmul_gelu(void **state)
{
    (void)state;
    check_matmul(15, 13, 7, true, true, false);
    check_matmul(16, 16, 64, true, true, true); /* the MLP's fc, dpre in dout's buffer */
}

/* dinp NULL: only the weight GEMM and the bias sums run */
static void test_matmul_no_dinp(void **state)
{
    (void)state;
    enum { N = 5, C = 3, OC = 4 };
    float *inp = fvec(N * C, -1, 1), *w = fvec(OC * C, -1, 1), *dout = fvec(N * OC, -1, 1);
    float dw[OC * C] = {0}, db[OC] = {0};
    mm_bwd(NULL, 1.0f, dw, db, dout, inp, w, N, C, OC, NULL, NULL);
    for (int o = 0; o < OC; o++) {
        double s = 0.0;
        for (int r = 0; r < N; r++) s += dout[r * OC + o];
        assert_true(fabs(db[o] - s) <= 1e-6);
        for (int i = 0; i < C; i++) {
            double e = 0.0;
            for (int r = 0; r < N; r++) e += (double)dout[r * OC + o] * inp[r * C + i];
            assert_true(fabs(dw[o * C + i] - e) <= 1e-5);
        }
    }
    free(inp), free(w), free(dout);
}

/* --- GELU and residual ---------------------------------------------------- */

typedef struct ew_ctx {
    size_t n;
    double *x, *y, *r, *out;
} ew_ctx;

static double gelu_loss(void *p)
{
    ew_ctx *c = p;
    for (size_t i = 0; i < c->n; i++) c->out[i] = ref_gelu(c->x[i]);
    return dot(c->out, c->r, c->n);
}

static void test_gelu(void **state)
{
    (void)state;
    enum { N = 64 };
    float *x = fvec(N, -6, 6);
    /* far tails, where 1/cosh^2 would overflow and the derivative is 0 or 1 */
    x[0] = 0.0f, x[1] = 20.0f, x[2] = -20.0f, x[3] = 100.0f, x[4] = -100.0f;
    float *out = fvec(N, 0, 0), *dout = fvec(N, -1, 1), *dx0 = fvec(N, -1, 1), *dx = fcopy(dx0, N);
    pb_cpu_gelu_fwd(out, x, N);
    ew_ctx c = {N, to_double(x, N), NULL, to_double(dout, N), dvec(N)};
    for (int i = 0; i < N; i++) c.out[i] = ref_gelu(c.x[i]);
    expect_close("gelu forward", out, c.out, N, FWD_RTOL);
    pb_cpu_gelu_bwd(dx, dout, x, N);
    float *g = increment(dx, dx0, N);
    expect_grad("gelu dx", g, c.x, N, gelu_loss, &c);
    for (int i = 0; i < N; i++) assert_true(isfinite(g[i]));
    free(g), free(x), free(out), free(dout), free(dx0), free(dx), free(c.x), free(c.r), free(c.out);
}

static double residual_loss(void *p)
{
    ew_ctx *c = p;
    for (size_t i = 0; i < c->n; i++) c->out[i] = c->x[i] + c->y[i];
    return dot(c->out, c->r, c->n);
}

static void test_residual(void **state)
{
    (void)state;
    enum { N = 40 };
    float *a = fvec(N, -1, 1), *b = fvec(N, -1, 1), *out = fvec(N, 0, 0), *dout = fvec(N, -1, 1);
    float *da0 = fvec(N, -1, 1), *db0 = fvec(N, -1, 1), *da = fcopy(da0, N), *db = fcopy(db0, N);
    pb_cpu_residual_fwd(out, a, b, N);
    ew_ctx c = {N, to_double(a, N), to_double(b, N), to_double(dout, N), dvec(N)};
    residual_loss(&c);
    expect_close("residual forward", out, c.out, N, FWD_RTOL);
    pb_cpu_residual_bwd(da, db, dout, N);
    expect_grad_added("residual da", da, da0, c.x, N, residual_loss, &c);
    expect_grad_added("residual db", db, db0, c.y, N, residual_loss, &c);
    free(a), free(b), free(out), free(dout), free(da0), free(db0), free(da), free(db);
    free(c.x), free(c.y), free(c.r), free(c.out);
}

/* --- attention ------------------------------------------------------------ */

typedef struct attn_ctx {
    int B, T, C, NH;
    double *qkv, *r, *out;
} attn_ctx;

static double attn_loss(void *p)
{
    attn_ctx *c = p;
    ref_attention(c->out, NULL, c->qkv, c->B, c->T, c->C, c->NH);
    return dot(c->out, c->r, (size_t)c->B * c->T * c->C);
}

static void check_attention(int B, int T, int C, int NH)
{
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, na = (size_t)B * NH * T * T;
    /* spread 2: scores of a few units, so the softmax is far from uniform */
    float *qkv = fvec(nq, -2, 2), *out = fvec(no, 7, 8), *att = fvec(na, 7, 8);
    pb_cpu_attention_fwd(out, att, qkv, B, T, C, NH);
    attn_ctx c = {B, T, C, NH, to_double(qkv, nq), NULL, dvec(no)};
    double *ratt = dvec(na);
    ref_attention(c.out, ratt, c.qkv, B, T, C, NH);
    expect_close("attention forward", out, c.out, no, FWD_RTOL);
    expect_close("attention saved probabilities (zero above the diagonal)", att, ratt, na, FWD_RTOL);

    float *dout = fvec(no, -1, 1), *dqkv0 = fvec(nq, -1, 1), *dqkv = fcopy(dqkv0, nq);
    float *scratch = fvec(pb_cpu_attention_scratch(T), 7, 8);
    pb_cpu_attention_bwd(dqkv, scratch, dout, qkv, att, B, T, C, NH);
    c.r = to_double(dout, no);
    expect_grad_added("attention dqkv", dqkv, dqkv0, c.qkv, nq, attn_loss, &c);
    free(qkv), free(out), free(att), free(dout), free(dqkv0), free(dqkv), free(scratch);
    free(c.qkv), free(c.r), free(c.out), free(ratt);
}

static void test_attention(void **state)
{
    (void)state;
    check_attention(2, 8, 16, 4);
    check_attention(3, 7, 12, 3); /* odd T, 3 heads of 4 */
    check_attention(1, 5, 8, 1);  /* one head spanning C */
    check_attention(1, 37, 16, 2); /* rows past the softmax's last whole block of 8: a scalar tail */
}

/* --- fused classifier ----------------------------------------------------- */

typedef struct xent_ctx {
    int N, V, Vp;
    const int *tgt;
    double *logits, *losses, dloss;
} xent_ctx;

static double xent_loss(void *p)
{
    xent_ctx *c = p;
    ref_xent(c->losses, c->logits, c->tgt, c->N, c->V, c->Vp);
    double s = 0.0;
    for (int r = 0; r < c->N; r++) s += c->losses[r];
    return s * c->dloss;
}

static void test_classifier(void **state)
{
    (void)state;
    enum { N = 16, V = 50, Vp = 128 };
    size_t n = (size_t)N * Vp;
    float *logits = fvec(n, -4, 4);
    /* the padding holds values that would dominate any softmax that
     * counted them */
    for (int r = 0; r < N; r++)
        for (int j = V; j < Vp; j++) logits[r * Vp + j] = 1000.0f;
    int tgt[N];
    for (int r = 0; r < N; r++) tgt[r] = (int)uniform(0, V);
    tgt[1] = V - 1, tgt[2] = 0;
    float losses[N], fused_losses[N];
    xent_ctx c = {N, V, Vp, tgt, to_double(logits, n), dvec(N), 1.0 / N};
    pb_cpu_classifier_fwd(losses, logits, tgt, N, V, Vp);
    ref_xent(c.losses, c.logits, tgt, N, V, Vp);
    expect_close("classifier loss (forward only)", losses, c.losses, N, FWD_RTOL);

    float *dlogits = fcopy(logits, n), *apart = fcopy(logits, n), apart_losses[N];
    pb_cpu_classifier_fused(fused_losses, dlogits, dlogits, tgt, N, V, Vp, 1.0f / N);
    /* into a buffer of its own: the same bits, the logits left as they were */
    for (size_t i = 0; i < n; i++) apart[i] = -7.0f;
    pb_cpu_classifier_fused(apart_losses, apart, logits, tgt, N, V, Vp, 1.0f / N);
    assert_memory_equal(apart, dlogits, n * sizeof *apart);
    assert_memory_equal(apart_losses, fused_losses, sizeof apart_losses);
    for (size_t i = 0; i < n; i++)
        if (logits[i] != (float)c.logits[i]) fail_msg("logit %zu changed by the out-of-place classifier", i);
    free(apart);
    expect_close("classifier loss (fused)", fused_losses, c.losses, N, FWD_RTOL);
    for (int r = 0; r < N; r++)
        for (int j = V; j < Vp; j++)
            if (dlogits[r * Vp + j] != 0.0f) fail_msg("padded dlogit [%d,%d] = %g, not 0", r, j, (double)dlogits[r * Vp + j]);
    expect_grad("classifier dlogits (mean loss)", dlogits, c.logits, n, xent_loss, &c);
    free(logits), free(dlogits), free(c.logits), free(c.losses);
}

/* --- a whole GPT-2, assembled from the ops -------------------------------- */

enum { G_B = 2, G_T = 8, G_C = 16, G_NH = 4, G_L = 2, G_V = 50, G_VP = 128, G_N = G_B * G_T };

enum {
    P_WTE, P_WPE, P_LN1W, P_LN1B, P_QKVW, P_QKVB, P_ATTPROJW, P_ATTPROJB,
    P_LN2W, P_LN2B, P_FCW, P_FCB, P_FCPROJW, P_FCPROJB, P_LNFW, P_LNFB, P_KINDS
};
static const char *const kind_names[P_KINDS] = {"wte",  "wpe",  "ln1w", "ln1b", "qkvw",    "qkvb",    "attprojw", "attprojb",
                                                "ln2w", "ln2b", "fcw",  "fcb",  "fcprojw", "fcprojb", "lnfw",     "lnfb"};

typedef struct gpt {
    size_t size[P_KINDS], off[P_KINDS], total;
} gpt;

static gpt gpt_layout(void)
{
    const size_t C = G_C, L = G_L;
    gpt g = {.size = {G_VP * C, G_T * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C, L * C, L * C,
                      L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C}};
    for (int k = 0; k < P_KINDS; k++) g.off[k] = g.total, g.total += g.size[k];
    return g;
}

/* Activations of the fp32 model, per layer where a layer has its own. */
typedef struct acts {
    float enc[G_N * G_C];
    float ln1[G_L][G_N * G_C], ln1m[G_L][G_N], ln1r[G_L][G_N], qkv[G_L][G_N * 3 * G_C], atty[G_L][G_N * G_C];
    float att[G_L][G_B * G_NH * G_T * G_T], res2[G_L][G_N * G_C], ln2[G_L][G_N * G_C], ln2m[G_L][G_N],
        ln2r[G_L][G_N];
    float fch[G_L][G_N * 4 * G_C], fchg[G_L][G_N * 4 * G_C], res3[G_L][G_N * G_C];
    float lnf[G_N * G_C], lnfm[G_N], lnfr[G_N], logits[G_N * G_VP], losses[G_N], tmp[G_N * G_C];
} acts;

/* forward, loss and backward of the fp32 model: as the GPT workload will
 * call the ops. grads must be zero on entry. Returns the mean loss. */
static float gpt_step(const gpt *g, const float *p, float *grads, acts *a, const int *tok, const int *tgt)
{
    const int B = G_B, T = G_T, C = G_C, NH = G_NH, N = G_N;
#define PRM(k, l, per) (p + g->off[k] + (size_t)(l) * (per))
#define GRD(k, l, per) (grads + g->off[k] + (size_t)(l) * (per))
    pb_cpu_encoder_fwd(a->enc, tok, PRM(P_WTE, 0, 0), PRM(P_WPE, 0, 0), B, T, C);
    for (int l = 0; l < G_L; l++) {
        const float *res = l ? a->res3[l - 1] : a->enc;
        pb_cpu_layernorm_fwd(a->ln1[l], a->ln1m[l], a->ln1r[l], res, PRM(P_LN1W, l, C), PRM(P_LN1B, l, C), N, C);
        mm_fwd(a->qkv[l], NULL, a->ln1[l], PRM(P_QKVW, l, 3 * C * C), PRM(P_QKVB, l, 3 * C), N, C, 3 * C, PB_EPI_BIAS);
        pb_cpu_attention_fwd(a->atty[l], a->att[l], a->qkv[l], B, T, C, NH);
        mm_fwd(a->tmp, NULL, a->atty[l], PRM(P_ATTPROJW, l, C * C), PRM(P_ATTPROJB, l, C), N, C, C, PB_EPI_BIAS);
        pb_cpu_residual_fwd(a->res2[l], res, a->tmp, (size_t)N * C);
        pb_cpu_layernorm_fwd(a->ln2[l], a->ln2m[l], a->ln2r[l], a->res2[l], PRM(P_LN2W, l, C), PRM(P_LN2B, l, C), N,
                             C);
        mm_fwd(a->fchg[l], a->fch[l], a->ln2[l], PRM(P_FCW, l, 4 * C * C), PRM(P_FCB, l, 4 * C), N, C, 4 * C,
               PB_EPI_GELU_BIAS);
        mm_fwd(a->tmp, NULL, a->fchg[l], PRM(P_FCPROJW, l, 4 * C * C), PRM(P_FCPROJB, l, C), N, 4 * C, C, PB_EPI_BIAS);
        pb_cpu_residual_fwd(a->res3[l], a->res2[l], a->tmp, (size_t)N * C);
    }
    pb_cpu_layernorm_fwd(a->lnf, a->lnfm, a->lnfr, a->res3[G_L - 1], PRM(P_LNFW, 0, 0), PRM(P_LNFB, 0, 0), N, C);
    /* the LM head is the token embedding, all Vp rows of it */
    mm_fwd(a->logits, NULL, a->lnf, PRM(P_WTE, 0, 0), NULL, N, C, G_VP, PB_EPI_NONE);
    pb_cpu_classifier_fused(a->losses, a->logits, a->logits, tgt, N, G_V, G_VP, 1.0f / N);
    float loss = 0.0f;
    for (int r = 0; r < N; r++) loss += a->losses[r];
    loss /= N;

    /* backward: dres is the residual stream's gradient, accumulated in
     * place through every block */
    static float dres[G_N * G_C], dln[G_N * G_C], dqkv[G_N * 3 * G_C], datty[G_N * G_C], dfch[G_N * 4 * G_C],
        scratch[G_T * G_T];
    memset(dln, 0, sizeof dln);
    memset(dres, 0, sizeof dres);
    mm_bwd(dln, 1.0f, GRD(P_WTE, 0, 0), NULL, a->logits, a->lnf, PRM(P_WTE, 0, 0), N, C, G_VP, NULL, NULL);
    pb_cpu_layernorm_bwd(dres, GRD(P_LNFW, 0, 0), GRD(P_LNFB, 0, 0), dln, a->res3[G_L - 1], PRM(P_LNFW, 0, 0), a->lnfm,
                         a->lnfr, N, C);
    for (int l = G_L - 1; l >= 0; l--) {
        const float *res = l ? a->res3[l - 1] : a->enc;
        memset(dln, 0, sizeof dln);
        /* dfch: the fc's dL/dpre, GELU's derivative and the fc's bias
         * gradient fused into the projection's input gradient */
        mm_bwd(dfch, 0.0f, GRD(P_FCPROJW, l, 4 * C * C), GRD(P_FCPROJB, l, C), dres, a->fchg[l],
               PRM(P_FCPROJW, l, 4 * C * C), N, 4 * C, C, a->fch[l], GRD(P_FCB, l, 4 * C));
        mm_bwd(dln, 1.0f, GRD(P_FCW, l, 4 * C * C), NULL, dfch, a->ln2[l], PRM(P_FCW, l, 4 * C * C), N, C, 4 * C, NULL,
               NULL);
        pb_cpu_layernorm_bwd(dres, GRD(P_LN2W, l, C), GRD(P_LN2B, l, C), dln, a->res2[l], PRM(P_LN2W, l, C), a->ln2m[l],
                             a->ln2r[l], N, C);
        memset(datty, 0, sizeof datty);
        memset(dqkv, 0, sizeof dqkv);
        memset(dln, 0, sizeof dln);
        mm_bwd(datty, 1.0f, GRD(P_ATTPROJW, l, C * C), GRD(P_ATTPROJB, l, C), dres, a->atty[l],
               PRM(P_ATTPROJW, l, C * C), N, C, C, NULL, NULL);
        pb_cpu_attention_bwd(dqkv, scratch, datty, a->qkv[l], a->att[l], B, T, C, NH);
        mm_bwd(dln, 1.0f, GRD(P_QKVW, l, 3 * C * C), GRD(P_QKVB, l, 3 * C), dqkv, a->ln1[l],
               PRM(P_QKVW, l, 3 * C * C), N, C, 3 * C, NULL, NULL);
        pb_cpu_layernorm_bwd(dres, GRD(P_LN1W, l, C), GRD(P_LN1B, l, C), dln, res, PRM(P_LN1W, l, C), a->ln1m[l],
                             a->ln1r[l], N, C);
    }
    pb_cpu_encoder_bwd(GRD(P_WTE, 0, 0), GRD(P_WPE, 0, 0), dres, tok, B, T, C);
#undef PRM
#undef GRD
    return loss;
}

/* The same model in double from the reference ops; its logits cover the V
 * real tokens only (the padding is not even computed). */
typedef struct gpt_ref {
    const gpt *g;
    double *p;
    const int *tok, *tgt;
} gpt_ref;

static double gpt_ref_loss(void *ctx)
{
    gpt_ref *m = ctx;
    const gpt *g = m->g;
    const int C = G_C, N = G_N;
    static double x[G_N * G_C], h[G_N * G_C], qkv[G_N * 3 * G_C], y[G_N * G_C], f[G_N * 4 * G_C], logits[G_N * G_V],
        losses[G_N];
#define RP(k, l, per) (m->p + g->off[k] + (size_t)(l) * (per))
    for (int b = 0; b < G_B; b++)
        for (int t = 0; t < G_T; t++)
            for (int i = 0; i < C; i++)
                x[(b * G_T + t) * C + i] = RP(P_WTE, 0, 0)[m->tok[b * G_T + t] * C + i] + RP(P_WPE, 0, 0)[t * C + i];
    for (int l = 0; l < G_L; l++) {
        ref_layernorm(h, x, RP(P_LN1W, l, C), RP(P_LN1B, l, C), N, C, NULL, NULL);
        ref_matmul(qkv, h, RP(P_QKVW, l, 3 * C * C), RP(P_QKVB, l, 3 * C), N, C, 3 * C);
        ref_attention(y, NULL, qkv, G_B, G_T, C, G_NH);
        ref_matmul(h, y, RP(P_ATTPROJW, l, C * C), RP(P_ATTPROJB, l, C), N, C, C);
        for (int i = 0; i < N * C; i++) x[i] += h[i];
        ref_layernorm(h, x, RP(P_LN2W, l, C), RP(P_LN2B, l, C), N, C, NULL, NULL);
        ref_matmul(f, h, RP(P_FCW, l, 4 * C * C), RP(P_FCB, l, 4 * C), N, C, 4 * C);
        for (int i = 0; i < N * 4 * C; i++) f[i] = ref_gelu(f[i]);
        ref_matmul(h, f, RP(P_FCPROJW, l, 4 * C * C), RP(P_FCPROJB, l, C), N, 4 * C, C);
        for (int i = 0; i < N * C; i++) x[i] += h[i];
    }
    ref_layernorm(h, x, RP(P_LNFW, 0, 0), RP(P_LNFB, 0, 0), N, C, NULL, NULL);
    ref_matmul(logits, h, RP(P_WTE, 0, 0), NULL, N, C, G_V);
#undef RP
    ref_xent(losses, logits, m->tgt, N, G_V, G_V);
    double s = 0.0;
    for (int r = 0; r < N; r++) s += losses[r];
    return s / N;
}

/* PyTorch's GPT-2 init: weights normal(0, 0.02), the residual projections'
 * scaled by 1/sqrt(2L), biases 0, layernorm weights 1. The padded rows of
 * wte get values in [-3, 3) instead of zeros: their logits are then several
 * units (not 0, and not a constant row, whose dot with a zero-mean layernorm
 * output would vanish), so a classifier that counted them would move the
 * loss, and the tied rows would get gradient. */
static void gpt_init(const gpt *g, float *p)
{
    for (int k = 0; k < P_KINDS; k++) {
        float *t = p + g->off[k];
        for (size_t i = 0; i < g->size[k]; i++) {
            switch (k) {
            case P_LN1W: case P_LN2W: case P_LNFW: t[i] = 1.0f; break;
            case P_LN1B: case P_LN2B: case P_LNFB: case P_QKVB: case P_ATTPROJB: case P_FCB: case P_FCPROJB:
                t[i] = 0.0f; break;
            case P_ATTPROJW: case P_FCPROJW: t[i] = (float)normal(0.02 / sqrt(2.0 * G_L)); break;
            default: t[i] = (float)normal(0.02);
            }
        }
    }
    for (size_t i = (size_t)G_V * G_C; i < (size_t)G_VP * G_C; i++) p[g->off[P_WTE] + i] = (float)uniform(-3, 3);
}

static void test_gpt2_model(void **state)
{
    (void)state;
    gpt g = gpt_layout();
    float *p = calloc(g.total, sizeof *p), *grads = calloc(g.total, sizeof *grads);
    acts *a = calloc(1, sizeof *a);
    assert_non_null(p), assert_non_null(grads), assert_non_null(a);
    int tok[G_N], tgt[G_N];
    for (int i = 0; i < G_N; i++) tok[i] = (int)uniform(0, G_V), tgt[i] = (int)uniform(0, G_V);
    gpt_init(&g, p);

    float loss = gpt_step(&g, p, grads, a, tok, tgt);
    /* at init the logits are ~0.1: loss = log V + O(var), 3.912 + ~0.01 */
    if (fabs(loss - log((double)G_V)) > 0.05) fail_msg("loss at init %.4f, want log(%d) = %.4f +- 0.05", (double)loss, G_V, log((double)G_V));
    gpt_ref ref = {&g, to_double(p, g.total), tok, tgt};
    double rloss = gpt_ref_loss(&ref);
    if (fabs(loss - rloss) > FWD_RTOL * rloss) fail_msg("loss %.9g, double reference %.9g", (double)loss, rloss);
    for (size_t i = (size_t)G_V * G_C; i < (size_t)G_VP * G_C; i++)
        if (grads[g.off[P_WTE] + i] != 0.0f) fail_msg("padded wte row element %zu has gradient %g", i, (double)grads[g.off[P_WTE] + i]);

    /* a few parameters of each kind: 6 spread through the tensor (both
     * layers for the per-layer kinds), against the difference quotient of
     * the double model's mean loss */
    for (int k = 0; k < P_KINDS; k++) {
        size_t real = k == P_WTE ? (size_t)G_V * G_C : g.size[k];
        float an[6];
        double fd[6], *x = ref.p + g.off[k];
        for (int s = 0; s < 6; s++) {
            size_t i = s == 5 ? real - 1 : (size_t)(uniform(0, 1) * (double)real);
            if (k == P_WTE && s == 0) i = (size_t)tok[3] * G_C + 2; /* a row both ends use */
            an[s] = grads[g.off[k] + i];
            double keep = x[i];
            x[i] = keep + FD_STEP;
            double lp = gpt_ref_loss(&ref);
            x[i] = keep - FD_STEP;
            double lm = gpt_ref_loss(&ref);
            x[i] = keep;
            fd[s] = (lp - lm) / (2.0 * FD_STEP);
        }
        char what[64];
        snprintf(what, sizeof what, "gpt-2 d%s", kind_names[k]);
        /* a whole model's fp32 gradient gathers more rounding than one op */
        expect_close(what, an, fd, 6, 5 * GRAD_RTOL);
    }
    free(p), free(grads), free(a), free(ref.p);
}

static int open_cpu(void **state)
{
    (void)state;
    pb_config cfg;
    pb_config_defaults(&cfg);
    cfg.threads = 1; /* one BLAS thread: reproducible sums */
    pb_device_opts opts = pb_config_device_opts(&cfg);
    return pb_backend_cpu.open(&opts, 0, &cpu_dev) == PB_OK ? 0 : -1;
}

static int close_cpu(void **state)
{
    (void)state;
    pb_backend_cpu.close(cpu_dev);
    return 0;
}

int main(void)
{
    pb_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoder),     cmocka_unit_test(test_layernorm),      cmocka_unit_test(test_matmul_bias),
        cmocka_unit_test(test_matmul_no_bias), cmocka_unit_test(test_matmul_gelu), cmocka_unit_test(test_matmul_no_dinp),
        cmocka_unit_test(test_gelu),        cmocka_unit_test(test_residual),       cmocka_unit_test(test_attention),
        cmocka_unit_test(test_classifier),  cmocka_unit_test(test_gpt2_model),
    };
    return cmocka_run_group_tests_name("gpt_ops", tests, open_cpu, close_cpu);
}
