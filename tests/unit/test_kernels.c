/* The CPU backend's kernels through its ops table: the GEMM with epilogues
 * forward/backward (finite-difference gradient checks, including the fused
 * derivative of the layer below's ReLU or GELU + its bias gradient), softmax cross-entropy, the optimizers against
 * hand-computed numbers, axpy, zero and the peak-memory accounting.
 *
 * The elementwise math is shared with the CUDA kernels (kernels/elementwise.h),
 * so these numbers are also what the GPU must compute. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>

#include "harness/config.h"
#include "kernels/backend.h"
#include "tests/common/test_rng.h"

static const pb_backend *be = &pb_backend_cpu;

static int setup_device(void **state)
{
    pb_config cfg;
    pb_config_defaults(&cfg);
    cfg.threads = 1; /* one BLAS thread: reproducible sums */
    pb_device_opts opts = pb_config_device_opts(&cfg);
    pb_device *dev = NULL;
    if (be->open(&opts, 0, &dev) != PB_OK) return -1;
    *state = dev;
    return 0;
}

static int teardown_device(void **state)
{
    be->close(*state);
    return 0;
}

static void fill_uniform(float *a, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) a[i] = (float)uniform(lo, hi);
}

static float *dev_alloc(pb_device *dev, size_t elems)
{
    void *p = NULL;
    assert_int_equal(be->alloc(dev, elems * sizeof(float), &p), PB_OK);
    return p;
}

/* --- GEMM with epilogues: finite-difference gradient checks ------------- */

/* A two-layer composition, all host-visible (the CPU backend's memory is host
 * memory): h = act1(x W1^T + b1) [m, hid] (ReLU, or GELU when gelu),
 * y = act(h W2^T + b2) [m, n], L = sum(c * y) with fixed random c. Layer 1
 * is used only when two_layer. */
enum { M = 5, K = 7, HID = 6, N = 4 };
_Static_assert(K >= HID, "w2 is sized for the one-layer case, whose input is x [M, K]");

typedef struct net {
    bool two_layer, relu_top, gelu;
    float x[M * K];
    float w1[HID * K], b1[HID];
    float w2[N * K], b2[N]; /* the top layer: [N, HID], or [N, K] on x when !two_layer */
    float c[M * N];
    float h[M * HID], pre[M * HID], y[M * N];
} net;

static int top_in(const net *t) { return t->two_layer ? HID : K; }

/* Forward through the backend; the loss is summed in double on the host. */
static double net_loss(pb_device *dev, net *t)
{
    if (t->two_layer) {
        pb_gemm l1 = {.m = M, .n = HID, .k = K, .x = t->x, .w = t->w1, .bias = t->b1, .y = t->h,
                      .pre = t->gelu ? t->pre : NULL, .epilogue = t->gelu ? PB_EPI_GELU_BIAS : PB_EPI_RELU_BIAS};
        assert_int_equal(be->gemm_fwd(dev, &l1), PB_OK);
    }
    pb_gemm l2 = {.m = M, .n = N, .k = top_in(t), .x = t->two_layer ? t->h : t->x, .w = t->w2,
                  .bias = t->b2, .y = t->y, .epilogue = t->relu_top ? PB_EPI_RELU_BIAS : PB_EPI_BIAS};
    assert_int_equal(be->gemm_fwd(dev, &l2), PB_OK);
    double loss = 0.0;
    for (int i = 0; i < M * N; i++) loss += (double)t->c[i] * t->y[i];
    return loss;
}

/* GELU's tanh form (GPT-2's gelu_new) in double */
static double ref_gelu(double z) { return 0.5 * z * (1 + tanh(0.7978845608028654 * (z + 0.044715 * z * z * z))); }

/* Smallest |pre-activation| of the ReLU layers, from a double host reference
 * (the kink of ReLU must stay out of reach of the finite-difference step). */
static double relu_margin(const net *t)
{
    double margin = INFINITY, h[M * HID];
    const int k2 = top_in(t);
    for (int i = 0; i < M && t->two_layer; i++)
        for (int o = 0; o < HID; o++) {
            double z = t->b1[o];
            for (int k = 0; k < K; k++) z += (double)t->x[i * K + k] * t->w1[o * K + k];
            if (!t->gelu) margin = fmin(margin, fabs(z));
            h[i * HID + o] = t->gelu ? ref_gelu(z) : z > 0 ? z : 0;
        }
    for (int i = 0; i < M && t->relu_top; i++)
        for (int o = 0; o < N; o++) {
            double z = t->b2[o];
            for (int k = 0; k < k2; k++)
                z += (t->two_layer ? h[i * HID + k] : (double)t->x[i * K + k]) * t->w2[o * k2 + k];
            margin = fmin(margin, fabs(z));
        }
    return margin;
}

/* Random inputs whose pre-activations are all at least 0.05 from the kink.
 * The search is over a fixed sequence, so the chosen inputs never change. */
static void net_init(net *t, bool two_layer, bool relu_top, bool gelu)
{
    memset(t, 0, sizeof *t);
    t->two_layer = two_layer;
    t->relu_top = relu_top;
    t->gelu = gelu;
    rng_state = 0x9E3779B97F4A7C15ULL;
    for (int tries = 0; tries < 10000; tries++) {
        fill_uniform(t->x, M * K, -1, 1);
        fill_uniform(t->w1, HID * K, -0.8, 0.8);
        fill_uniform(t->b1, HID, -0.5, 0.5);
        fill_uniform(t->w2, (size_t)N * top_in(t), -0.8, 0.8);
        fill_uniform(t->b2, N, -0.5, 0.5);
        fill_uniform(t->c, M * N, -1, 1);
        if (relu_margin(t) > 0.05) return;
    }
    fail_msg("no inputs away from the ReLU kinks");
}

/* Central difference of the loss in one float parameter.
 *
 * The loss is piecewise linear in every single parameter (Linear layers and
 * ReLU; L is linear in the top layer's output), so away from the ReLU kinks
 * the central difference has no truncation error and a large step is safe:
 * eps = 1e-2 changes any pre-activation by at most ~1e-2 (|x|, |w|, |h| are
 * O(1)), less than the 0.05 margin net_init guarantees. What remains is
 * float rounding of the forward: each y carries ~1e-7 relative error, L sums
 * 20 such terms, so the difference quotient is off by ~1e-6 / 2e-2 = 5e-5. */
#define FD_EPS 1e-2f

static double central_diff(pb_device *dev, net *t, float *param)
{
    float saved = *param;
    *param = saved + FD_EPS;
    double up = net_loss(dev, t);
    *param = saved - FD_EPS;
    double down = net_loss(dev, t);
    *param = saved;
    /* divide by the step actually taken in float */
    return (up - down) / ((double)(saved + FD_EPS) - (double)(saved - FD_EPS));
}

/* Analytic vs numerical: |a - n| <= 1e-2 * max(|a|, |n|) + 1e-3. The relative
 * 1e-2 and absolute 1e-3 are 20x above the ~5e-5 rounding noise estimated
 * above, yet a wrong transpose, a missing mask or a missing row is an O(0.1..1)
 * error and fails. */
static void check_grad(const char *what, int idx, double analytic, double numeric)
{
    double tol = 1e-2 * fmax(fabs(analytic), fabs(numeric)) + 1e-3;
    if (fabs(analytic - numeric) > tol)
        fail_msg("%s[%d]: analytic %.7g vs finite difference %.7g (tol %.2g)", what, idx, analytic,
                 numeric, tol);
}

#define SENTINEL 7.0f /* outputs that must be overwritten start as this */

static void fill_sentinel(float *a, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = SENTINEL;
}

/* One Linear layer, L = sum(c * act(x W^T + b)): dz = c masked by the ReLU
 * (from the stored output y > 0), then gemm_bwd gives dW, db and dx. */
static void check_one_layer(pb_device *dev, bool relu)
{
    net *t = calloc(1, sizeof *t);
    assert_non_null(t);
    net_init(t, false, relu, false);
    net_loss(dev, t);
    float dz[M * N], dw[N * K], db[N], dx[M * K];
    int masked = 0;
    for (int i = 0; i < M * N; i++) {
        dz[i] = relu && t->y[i] <= 0.0f ? 0.0f : t->c[i];
        masked += relu && t->y[i] <= 0.0f;
    }
    if (relu) assert_true(masked > 0 && masked < M * N); /* both sides of the kink */
    else
        for (int i = 0; i < M * N; i++) assert_true(t->y[i] != 0.0f); /* no clamp happened */
    fill_sentinel(dw, N * K);
    fill_sentinel(db, N);
    fill_sentinel(dx, M * K);
    pb_gemm_grad g = {.m = M, .n = N, .k = K, .dy = dz, .x = t->x, .w = t->w2,
                      .dw = dw, .db = db, .dx = dx, .dx_act = PB_DACT_NONE};
    assert_int_equal(be->gemm_bwd(dev, &g), PB_OK);
    for (int i = 0; i < N * K; i++) check_grad("dW", i, dw[i], central_diff(dev, t, &t->w2[i]));
    for (int i = 0; i < N; i++) check_grad("db", i, db[i], central_diff(dev, t, &t->b2[i]));
    for (int i = 0; i < M * K; i++) check_grad("dx", i, dx[i], central_diff(dev, t, &t->x[i]));

    /* dw_beta accumulates onto what dw holds (SGD's momentum): from
     * m = i / 7 it leaves 0.9 m + dW (to a rounding: the GEMM may fuse the
     * multiply-add) */
    float m[N * K], want[N * K];
    for (int i = 0; i < N * K; i++) {
        m[i] = (float)i / 7.0f;
        want[i] = 0.9f * m[i] + dw[i];
    }
    g.dw = m;
    g.dw_beta = 0.9f;
    g.db = NULL;
    g.dx = NULL;
    assert_int_equal(be->gemm_bwd(dev, &g), PB_OK);
    for (int i = 0; i < N * K; i++)
        if (fabsf(m[i] - want[i]) > 2e-7f * (1.0f + fabsf(want[i])))
            fail_msg("dW + 0.9 m, element %d: %.9g, expected %.9g", i, m[i], want[i]);

    /* dx_beta 1 adds dy W onto what dx holds (the GPT's tensors with two
     * consumers), and db is overwritten whatever it held */
    float dx0[M * K], dxw[M * K];
    for (int i = 0; i < M * K; i++) dx0[i] = dxw[i] = (float)i / 3.0f;
    fill_sentinel(db, N);
    g = (pb_gemm_grad){.m = M, .n = N, .k = K, .dy = dz, .x = t->x, .w = t->w2, .dw = m, .db = db,
                       .dx = dxw, .dx_beta = 1.0f};
    assert_int_equal(be->gemm_bwd(dev, &g), PB_OK);
    for (int i = 0; i < M * K; i++)
        if (fabsf(dxw[i] - (dx0[i] + dx[i])) > 1e-6f * (1.0f + fabsf(dx0[i])))
            fail_msg("dx + dy W, element %d: %.9g, expected %.9g", i, dxw[i], dx0[i] + dx[i]);
    for (int i = 0; i < N; i++) check_grad("db (overwritten)", i, db[i], central_diff(dev, t, &t->b2[i]));
    free(t);
}

static void test_gemm_grad_no_relu(void **state) { check_one_layer(*state, false); }
static void test_gemm_grad_relu(void **state) { check_one_layer(*state, true); }

/* One layer's forward against a double host reference: z = x W^T + b
 * ([M, n] from x [M, K]), y = relu(z) or gelu(z), and z saved in pre when
 * given (the finite differences cannot see an error that is constant in
 * the parameters) */
static void expect_forward(const float *x, const float *w, const float *b, int n, const float *pre, const float *y,
                           bool gelu)
{
    for (int i = 0; i < M; i++)
        for (int o = 0; o < n; o++) {
            double z = b[o];
            for (int k = 0; k < K; k++) z += (double)x[i * K + k] * w[o * K + k];
            double want = gelu ? ref_gelu(z) : z > 0 ? z : 0;
            if (pre) assert_true(fabs(pre[i * n + o] - z) < 1e-6 * (1 + fabs(z)));
            assert_true(fabs(y[i * n + o] - want) < 1e-6 * (1 + fabs(want)));
        }
}

static void test_gemm_forward_values(void **state)
{
    net *t = calloc(1, sizeof *t);
    assert_non_null(t);
    net_init(t, false, true, false);
    fill_sentinel(t->y, M * N);
    net_loss(*state, t);
    expect_forward(t->x, t->w2, t->b2, N, NULL, t->y, false);
    free(t);
}

/* GELU_BIAS: the saved pre-activation and y = gelu(pre), tanh form */
static void test_gemm_gelu_forward_values(void **state)
{
    net *t = calloc(1, sizeof *t);
    assert_non_null(t);
    net_init(t, true, false, true);
    fill_sentinel(t->h, M * HID);
    fill_sentinel(t->pre, M * HID);
    net_loss(*state, t);
    expect_forward(t->x, t->w1, t->b1, HID, t->pre, t->h, true);
    free(t);
}

/* Two layers: the top layer's backward with dx_act produces layer 1's
 * dL/d(pre-activation) in dx (masked by h > 0, or times gelu'(pre)) and its
 * bias gradient in dx_db (the DRELU_BGRAD / DGELU_BGRAD fusion); layer 1's
 * backward then runs with db = NULL (already produced) and gives dW1 and
 * dL/dx. */
static void check_two_layers(pb_device *dev, bool relu_top, bool gelu)
{
    net *t = calloc(1, sizeof *t);
    assert_non_null(t);
    net_init(t, true, relu_top, gelu);
    net_loss(dev, t);
    int dead = 0;
    for (int i = 0; i < M * HID; i++) dead += t->h[i] == 0.0f;
    if (!gelu) assert_true(dead > 0 && dead < M * HID); /* the mask matters */

    float dz2[M * N], dw2[N * HID], db2[N], dz1[M * HID], db1[HID], dw1[HID * K], dx[M * K];
    for (int i = 0; i < M * N; i++) dz2[i] = relu_top && t->y[i] <= 0.0f ? 0.0f : t->c[i];
    fill_sentinel(dw2, N * HID);
    fill_sentinel(db2, N);
    fill_sentinel(dz1, M * HID);
    fill_sentinel(db1, HID);
    fill_sentinel(dw1, HID * K);
    fill_sentinel(dx, M * K);
    pb_gemm_grad g2 = {.m = M, .n = N, .k = HID, .dy = dz2, .x = t->h, .w = t->w2, .dw = dw2, .db = db2,
                       .dx = dz1, .dx_act = gelu ? PB_DACT_GELU : PB_DACT_RELU, .x_pre = gelu ? t->pre : NULL,
                       .dx_db = db1};
    assert_int_equal(be->gemm_bwd(dev, &g2), PB_OK);
    float db1_spare = SENTINEL; /* db = NULL must leave bias gradients alone */
    pb_gemm_grad g1 = {.m = M, .n = HID, .k = K, .dy = dz1, .x = t->x, .w = t->w1, .dw = dw1,
                       .db = NULL, .dx = dx, .dx_act = PB_DACT_NONE, .dx_db = &db1_spare};
    assert_int_equal(be->gemm_bwd(dev, &g1), PB_OK);
    assert_true(db1_spare == SENTINEL);
    for (int i = 0; i < M * HID && !gelu; i++)
        if (t->h[i] == 0.0f) assert_true(dz1[i] == 0.0f);

    for (int i = 0; i < N * HID; i++) check_grad("dW2", i, dw2[i], central_diff(dev, t, &t->w2[i]));
    for (int i = 0; i < N; i++) check_grad("db2", i, db2[i], central_diff(dev, t, &t->b2[i]));
    for (int i = 0; i < HID; i++) check_grad("db1 (dx_db)", i, db1[i], central_diff(dev, t, &t->b1[i]));
    for (int i = 0; i < HID * K; i++) check_grad("dW1", i, dw1[i], central_diff(dev, t, &t->w1[i]));
    for (int i = 0; i < M * K; i++) check_grad("dx", i, dx[i], central_diff(dev, t, &t->x[i]));
    free(t);
}

static void test_gemm_grad_fused_relu(void **state) { check_two_layers(*state, false, false); }
static void test_gemm_grad_fused_relu_top_relu(void **state) { check_two_layers(*state, true, false); }
static void test_gemm_grad_fused_gelu(void **state) { check_two_layers(*state, false, true); }

/* --- softmax cross-entropy --------------------------------------------- */

enum { XM = 4, XC = 5 };

/* Host reference in double: row loss = logsumexp(z) - z[label]. */
static double xent_reference(const float *z, const int32_t *labels, double scale, double *grad)
{
    double total = 0.0;
    for (int i = 0; i < XM; i++) {
        const float *r = z + i * XC;
        double mx = r[0], sum = 0.0;
        for (int j = 1; j < XC; j++) mx = fmax(mx, r[j]);
        for (int j = 0; j < XC; j++) sum += exp(r[j] - mx);
        total += log(sum) + mx - r[labels[i]];
        for (int j = 0; j < XC && grad; j++)
            grad[i * XC + j] = scale * (exp(r[j] - mx) / sum - (j == labels[i]));
    }
    return scale * total;
}

static void test_softmax_xent(void **state)
{
    pb_device *dev = *state;
    rng_state = 42;
    float z[XM * XC], dz[XM * XC];
    fill_uniform(z, XM * XC, -3, 3);
    /* a row of huge logits: a naive exp() overflows, max subtraction must not */
    for (int j = 0; j < XC; j++) z[3 * XC + j] += 1000.0f;
    const int32_t labels[XM] = {0, 4, 2, 1};
    const float scale = 0.3f; /* not 1/m: the scale must be applied as given */
    const float start = 0.75f;

    float loss = start;
    fill_sentinel(dz, XM * XC);
    assert_int_equal(be->softmax_xent(dev, XM, XC, z, labels, scale, &loss, dz), PB_OK);
    double grad_ref[XM * XC];
    double want = xent_reference(z, labels, scale, grad_ref);
    /* loss_sum accumulates: start + scale * sum of row losses */
    assert_true(isfinite(loss));
    assert_true(fabs((loss - start) - want) < 1e-5 * fabs(want) + 1e-6);
    for (int i = 0; i < XM * XC; i++) assert_true(fabs(dz[i] - grad_ref[i]) < 1e-6);
    /* each row's gradient sums to zero (softmax sums to 1, onehot to 1) */
    for (int i = 0; i < XM; i++) {
        double s = 0.0;
        for (int j = 0; j < XC; j++) s += dz[i * XC + j];
        assert_true(fabs(s) < 1e-6);
    }

    /* a second call adds on top of the first */
    float again = loss;
    float dz2[XM * XC];
    assert_int_equal(be->softmax_xent(dev, XM, XC, z, labels, scale, &again, dz2), PB_OK);
    assert_true(fabs((again - loss) - want) < 1e-5 * fabs(want) + 1e-6);

    /* the gradient against central differences of the backend's own loss.
     * The loss is smooth: with eps 1e-2 the truncation error is
     * ~eps^2/6 * |f'''| * scale < 1e-5 and the float rounding of the loss
     * (~1e-7 * 3) / 2e-2 ~ 2e-5; tolerance 1e-3 absolute + 1e-2 relative. */
    for (int i = 0; i < XM * XC; i++) {
        float saved = z[i];
        float up = 0.0f, down = 0.0f;
        z[i] = saved + 1e-2f;
        assert_int_equal(be->softmax_xent(dev, XM, XC, z, labels, scale, &up, dz2), PB_OK);
        z[i] = saved - 1e-2f;
        assert_int_equal(be->softmax_xent(dev, XM, XC, z, labels, scale, &down, dz2), PB_OK);
        double h = (double)(saved + 1e-2f) - (double)(saved - 1e-2f);
        z[i] = saved;
        check_grad("dlogits", i, dz[i], ((double)up - (double)down) / h);
    }

    /* a label outside [0, c) is an error, not an out-of-bounds read */
    const int32_t bad[XM] = {0, 5, 2, 1};
    float ignored = 0.0f;
    assert_int_not_equal(be->softmax_xent(dev, XM, XC, z, bad, scale, &ignored, dz2), PB_OK);
    pb_error_clear();
}

/* --- optimizers --------------------------------------------------------- */

enum { NP = 5 };
static const float p_start[NP] = {0.5f, -1.0f, 2.0f, 0.0f, -0.25f};
/* gradients of steps 1..3; the last parameter only ever decays */
static const float grads[3][NP] = {
    {0.1f, -0.2f, 0.3f, 0.5f, 0.0f},
    {0.05f, 0.1f, -0.3f, 0.5f, 0.0f},
    {-0.2f, 0.0f, 0.25f, 0.5f, 0.0f},
};

static void run_optimizer(pb_device *dev, pb_opt_args a, float *p, float *m, float *v, float *pc)
{
    memcpy(p, p_start, sizeof p_start);
    for (int s = 0; s < 3; s++) {
        a.params = p;
        a.grads = grads[s];
        a.m = m;
        a.v = v;
        a.params_compute = pc;
        a.n = NP;
        a.step = s + 1;
        assert_int_equal(be->optimizer(dev, &a), PB_OK);
    }
}

/* Expected values were computed once in double precision with PyTorch's
 * formulas (python, the loop below written out) and pasted here; the kernel
 * runs in float, whose rounding over 3 steps stays below 1e-6 at these
 * magnitudes, while any formula error (decay placement, missing bias
 * correction, momentum dampening) moves the result by > 1e-5. */
static void assert_close(const float *got, const double *want, double tol)
{
    for (int i = 0; i < NP; i++)
        if (fabs(got[i] - want[i]) > tol)
            fail_msg("element %d: %.9g, expected %.9g (tol %.1g)", i, got[i], want[i], tol);
}

/* torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), dampening 0:
 *   g' = g + wd * p;  m = g' on step 1, else m = mu * m + g';  p -= lr * m */
static void test_sgd_momentum(void **state)
{
    pb_device *dev = *state;
    float p[NP], m[NP] = {0}, pc[NP] = {0};
    pb_opt_args a = {.kind = PB_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f};
    run_optimizer(dev, a, p, m, NULL, pc);
    static const double want_p[NP] = {0.480640389, -0.959260779, 1.93957357, -0.28026005, -0.2485987};
    static const double want_m[NP] = {-0.060798895, -0.09860221, 0.27658432, 1.3531005, -0.0067655025};
    assert_close(p, want_p, 1e-6);
    assert_close(m, want_m, 1e-6);
    /* the compute copy is refreshed from the master */
    assert_memory_equal(pc, p, sizeof p);
}

/* The same SGD when backward's GEMM has already accumulated the momentum
 * (momentum_ready: m = mu * m + g before each call, grads unused): the same
 * parameters and momentum, the decay being added after the gradient's sum
 * rather than before (a rounding apart); and with no decay, bit for bit the
 * values of the plain update. */
static void test_sgd_momentum_ready(void **state)
{
    pb_device *dev = *state;
    static const double want_p[NP] = {0.480640389, -0.959260779, 1.93957357, -0.28026005, -0.2485987};
    static const double want_m[NP] = {-0.060798895, -0.09860221, 0.27658432, 1.3531005, -0.0067655025};
    for (int decay = 1; decay >= 0; decay--) {
        float p[NP], m[NP] = {0}, pc[NP] = {0}, p_plain[NP], m_plain[NP] = {0};
        pb_opt_args a = {.kind = PB_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .weight_decay = decay ? 0.01f : 0.0f};
        memcpy(p, p_start, sizeof p_start);
        for (int s = 0; s < 3; s++) {
            for (int i = 0; i < NP; i++) m[i] = 0.9f * m[i] + grads[s][i];
            pb_opt_args r = a;
            r.n = NP, r.params = p, r.m = m, r.params_compute = pc, r.step = s + 1, r.momentum_ready = true;
            assert_int_equal(be->optimizer(dev, &r), PB_OK);
        }
        assert_memory_equal(pc, p, sizeof p);
        if (decay) {
            assert_close(p, want_p, 1e-6);
            assert_close(m, want_m, 1e-6);
        } else {
            run_optimizer(dev, a, p_plain, m_plain, NULL, NULL);
            assert_memory_equal(p, p_plain, sizeof p);
            assert_memory_equal(m, m_plain, sizeof m);
        }
    }
}

/* torch.optim.AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
 *   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) */
static void test_adamw(void **state)
{
    pb_device *dev = *state;
    float p[NP], m[NP] = {0}, v[NP] = {0};
    pb_opt_args a = {.kind = PB_OPT_ADAMW, .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                     .weight_decay = 0.01f};
    run_optimizer(dev, a, p, m, v, NULL);
    static const double want_p[NP] = {0.498259207, -0.998497807, 1.99870321, -0.00299996994, -0.2499925};
    static const double want_m[NP] = {-0.0074, -0.0072, 0.0223, 0.1355, 0.0};
    static const double want_v[NP] = {5.247751e-05, 4.991004e-05, 0.00024223009, 0.00074925025, 0.0};
    assert_close(p, want_p, 1e-6);
    assert_close(m, want_m, 1e-7);
    /* v to 5e-8 (relative ~1e-4): beta2 arrives as float 0.999f, so the
     * kernel's 1 - beta2 is 1.3e-5 off PyTorch's double 0.001; the bias
     * correction uses the same float beta2, so the error cancels in
     * v / (1 - beta2^t) and p above still matches to 1e-6. */
    assert_close(v, want_v, 5e-8);
}

/* --- axpy, zero, memory accounting ------------------------------------ */

static void test_axpy_and_zero(void **state)
{
    pb_device *dev = *state;
    enum { LEN = 37, BUF = 40 };
    float *x = dev_alloc(dev, BUF), *y = dev_alloc(dev, BUF);
    for (int i = 0; i < BUF; i++) {
        x[i] = (float)i - 10.0f;
        y[i] = 0.5f * (float)i;
    }
    assert_int_equal(be->axpy(dev, LEN, -0.25f, x, y), PB_OK);
    for (int i = 0; i < LEN; i++) assert_true(y[i] == 0.5f * (float)i - 0.25f * ((float)i - 10.0f));
    for (int i = LEN; i < BUF; i++) assert_true(y[i] == 0.5f * (float)i); /* n respected */

    /* zero clears exactly the bytes asked for */
    assert_int_equal(be->zero(dev, y, 10 * sizeof(float)), PB_OK);
    for (int i = 0; i < 10; i++) assert_true(y[i] == 0.0f);
    assert_true(y[10] != 0.0f);
    be->free(dev, x);
    be->free(dev, y);
}

/* peak_mem_mb is the high-water mark of bytes allocated through alloc: it
 * rises with alloc, is kept across free, and alloc zero-fills. */
static void test_peak_memory(void **state)
{
    (void)state;
    pb_config cfg;
    pb_config_defaults(&cfg);
    cfg.threads = 1;
    pb_device_opts opts = pb_config_device_opts(&cfg);
    pb_device *dev = NULL;
    assert_int_equal(be->open(&opts, 0, &dev), PB_OK); /* a fresh device: peak 0 */
    const size_t mib = 1 << 20;
    assert_true(be->peak_mem_mb(dev) == 0.0);
    void *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    assert_int_equal(be->alloc(dev, mib, &a), PB_OK);
    assert_true(fabs(be->peak_mem_mb(dev) - 1.0) < 1e-9);
    for (size_t i = 0; i < mib; i++) assert_int_equal(((unsigned char *)a)[i], 0);
    assert_int_equal(be->alloc(dev, 2 * mib, &b), PB_OK);
    assert_true(fabs(be->peak_mem_mb(dev) - 3.0) < 1e-9);
    be->free(dev, a);
    assert_true(fabs(be->peak_mem_mb(dev) - 3.0) < 1e-9); /* the peak stays */
    assert_int_equal(be->alloc(dev, mib / 2, &c), PB_OK);   /* 2.5 now: below */
    assert_true(fabs(be->peak_mem_mb(dev) - 3.0) < 1e-9);
    assert_int_equal(be->alloc(dev, mib, &d), PB_OK); /* 3.5 now: a new peak */
    assert_true(fabs(be->peak_mem_mb(dev) - 3.5) < 1e-9);
    be->free(dev, b);
    be->free(dev, c);
    be->free(dev, d);
    be->free(dev, NULL); /* like free(NULL) */
    assert_true(fabs(be->peak_mem_mb(dev) - 3.5) < 1e-9);
    /* everything was returned: a new 3.5 MiB allocation does not raise it */
    assert_int_equal(be->alloc(dev, 3 * mib + mib / 2, &a), PB_OK);
    assert_true(fabs(be->peak_mem_mb(dev) - 3.5) < 1e-9);
    be->free(dev, a);
    be->close(dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_forward_values),
        cmocka_unit_test(test_gemm_gelu_forward_values),
        cmocka_unit_test(test_gemm_grad_no_relu),
        cmocka_unit_test(test_gemm_grad_relu),
        cmocka_unit_test(test_gemm_grad_fused_relu),
        cmocka_unit_test(test_gemm_grad_fused_relu_top_relu),
        cmocka_unit_test(test_gemm_grad_fused_gelu),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_momentum_ready),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_axpy_and_zero),
        cmocka_unit_test(test_peak_memory),
    };
    return cmocka_run_group_tests_name("kernels", tests, setup_device, teardown_device);
}
