/* cpu_exact: the optimised CPU kernels give bitwise the results of the plain
 * loops they replaced.
 *
 * The reference loops below are the CPU backend's kernels as first written
 * (one element at a time through kernels/elementwise.h, expf from libm). The
 * backend's current kernels are compiled into this program (the .c file is
 * included, so its static functions are reachable) and compared bit for bit
 * on the shapes of mlp-s and mlp-m and on awkward ones, and each row
 * exponential this CPU can run against expf over every float (2^32).
 *
 * Only the SIMD clones this CPU selects run; they share one C body, and
 * fp-contract is off in backend_cpu.c, so the others compute the same.
 *
 * Usage: cpu_exact [--quick]   (--quick: the exponential on every 97th float)
 * Exit: 0 identical, 1 a difference (the first few are printed). */
#include "../kernels/cpu/backend_cpu.c"

#include <math.h>

static int failures;

static void fail(const char *what, size_t i, float got, float want)
{
    if (failures++ < 10) {
        uint32_t g, w;
        memcpy(&g, &got, 4);
        memcpy(&w, &want, 4);
        printf("  %s[%zu]: %a (0x%08x), reference %a (0x%08x)\n", what, i, got, g, want, w);
    }
}

static void compare(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0) fail(what, i, got[i], want[i]);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float uniform(float lo, float hi)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (hi - lo) * (float)(rng >> 40) / (float)(1 << 24);
}
static void fill(float *p, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) p[i] = uniform(lo, hi);
}

/* --- the reference loops ------------------------------------------------- */

static void ref_linear_fwd(const pb_gemm *l)
{
    float *y = l->y;
    for (int i = 0; i < l->m; i++) memcpy(y + (size_t)i * l->n, l->bias, (size_t)l->n * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, l->m, l->n, l->k, 1.0f, l->x, l->k, l->w, l->k, 1.0f, y,
                l->n);
    if (l->epilogue == PB_EPI_RELU_BIAS)
        for (size_t i = 0; i < (size_t)l->m * (size_t)l->n; i++) y[i] = pb_relu(y[i]);
}

static void ref_linear_bwd(const pb_gemm_grad *g)
{
    const float *dy = g->dy;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->n, g->k, g->m, 1.0f, dy, g->n, g->x, g->k, 0.0f, g->dw,
                g->k);
    if (g->db) {
        memset(g->db, 0, (size_t)g->n * sizeof(float));
        for (int i = 0; i < g->m; i++)
            for (int j = 0; j < g->n; j++) g->db[j] += dy[(size_t)i * g->n + j];
    }
    if (!g->dx) return;
    float *dx = g->dx;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->m, g->k, g->n, 1.0f, dy, g->n, g->w, g->k, 0.0f, dx,
                g->k);
    if (g->dx_act != PB_DACT_RELU) return;
    const float *x = g->x;
    float *dbp = g->dx_db;
    if (dbp) memset(dbp, 0, (size_t)g->k * sizeof(float));
    for (int i = 0; i < g->m; i++) {
        float *row = dx + (size_t)i * g->k;
        const float *xr = x + (size_t)i * g->k;
        for (int j = 0; j < g->k; j++) row[j] = pb_relu_backward(row[j], xr[j]);
        if (dbp)
            for (int j = 0; j < g->k; j++) dbp[j] += row[j];
    }
}

static void ref_softmax_xent(int m, int c, const float *logits, const int32_t *labels, float scale, float *loss_sum,
                             float *dlogits)
{
    double loss = 0.0;
    for (int i = 0; i < m; i++) {
        const float *z = logits + (size_t)i * c;
        float *d = dlogits + (size_t)i * c;
        int label = labels[i];
        float mx = z[0];
        for (int j = 1; j < c; j++) mx = z[j] > mx ? z[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < c; j++) sum += expf(z[j] - mx);
        float inv = 1.0f / sum;
        loss += (double)(logf(sum) - (z[label] - mx));
        for (int j = 0; j < c; j++) d[j] = pb_xent_grad(z[j], mx, inv, j == label, scale);
    }
    *loss_sum += (float)(loss * scale);
}

static void ref_optimizer(const pb_opt_args *a)
{
    float *p = a->params, *m = a->m, *v = a->v;
    const float *g = a->grads;
    if (a->kind == PB_OPT_SGD) {
        for (size_t i = 0; i < a->n; i++) pb_sgd_momentum(&p[i], &m[i], g[i], a->lr, a->momentum, a->weight_decay);
    } else {
        float bc1 = (float)(1.0 - pow(a->beta1, a->step));
        float bc2 = (float)(1.0 - pow(a->beta2, a->step));
        for (size_t i = 0; i < a->n; i++)
            pb_adamw(&p[i], &m[i], &v[i], g[i], a->lr, a->weight_decay, a->beta1, a->beta2, a->eps, bc1, bc2);
    }
    if (a->params_compute && a->params_compute != (void *)p) memcpy(a->params_compute, p, a->n * sizeof(float));
}

/* --- checks -------------------------------------------------------------- */

static float *buf(size_t n)
{
    void *p = NULL;
    if (cpu_alloc(NULL, n * sizeof(float) + 64, &p) != PB_OK) {
        fprintf(stderr, "cpu_exact: out of memory\n");
        exit(1);
    }
    return p;
}

static void check_softmax(int m, int c, float spread)
{
    float *z = buf((size_t)m * c), *d = buf((size_t)m * c), *dr = buf((size_t)m * c);
    int32_t *labels = calloc((size_t)m, sizeof *labels);
    fill(z, (size_t)m * c, -spread, spread);
    for (int i = 0; i < m; i++) labels[i] = (int32_t)(uniform(0, 1) * (float)c) % c;
    if (m > 2 && c > 3) { /* rows with exact ties, signed zeros and a huge gap (|z - max| >= 88) */
        for (int j = 0; j < c; j++) z[j] = j % 2 ? 0.0f : -0.0f;
        z[(size_t)c + 3] = 200.0f;
        z[(size_t)2 * c + 1] = -INFINITY;
    }
    float loss = 0.25f, loss_ref = 0.25f;
    pb_status st = cpu_softmax_xent(NULL, m, c, z, labels, 1.0f / (float)m, &loss, d);
    ref_softmax_xent(m, c, z, labels, 1.0f / (float)m, &loss_ref, dr);
    char what[64];
    snprintf(what, sizeof what, "softmax %dx%d dlogits", m, c);
    if (st != PB_OK) fail(what, 0, NAN, 0);
    compare(what, d, dr, (size_t)m * c);
    snprintf(what, sizeof what, "softmax %dx%d loss", m, c);
    compare(what, &loss, &loss_ref, 1);
    /* in place (dlogits == logits), as the reference loop allows */
    memcpy(d, z, (size_t)m * c * sizeof(float));
    loss = 0.25f;
    st = cpu_softmax_xent(NULL, m, c, d, labels, 1.0f / (float)m, &loss, d);
    snprintf(what, sizeof what, "softmax %dx%d in place dlogits", m, c);
    if (st != PB_OK) fail(what, 0, NAN, 0);
    compare(what, d, dr, (size_t)m * c);
    snprintf(what, sizeof what, "softmax %dx%d in place loss", m, c);
    compare(what, &loss, &loss_ref, 1);
    free(labels);
    cpu_free(NULL, z), cpu_free(NULL, d), cpu_free(NULL, dr);
}

static void check_linear(int m, int n, int k, bool relu, bool has_db, bool x_relu, bool has_dbp)
{
    float *x = buf((size_t)m * k), *w = buf((size_t)n * k), *b = buf(n);
    float *y = buf((size_t)m * n), *yr = buf((size_t)m * n);
    fill(x, (size_t)m * k, -1, 1);
    for (size_t i = 0; i < (size_t)m * k; i += 3) x[i] = 0.0f; /* the ReLU zeros of a stored activation */
    fill(w, (size_t)n * k, -0.1f, 0.1f);
    fill(b, n, -0.5f, 0.5f);
    pb_gemm l = {.m = m, .n = n, .k = k, .x = x, .w = w, .bias = b, .y = y,
                 .epilogue = relu ? PB_EPI_RELU_BIAS : PB_EPI_BIAS};
    cpu_gemm_fwd(NULL, &l);
    l.y = yr;
    ref_linear_fwd(&l);
    char what[96];
    snprintf(what, sizeof what, "gemm_fwd %dx%dx%d relu %d", m, n, k, relu);
    compare(what, y, yr, (size_t)m * n);

    float *dy = buf((size_t)m * n), *dw = buf((size_t)n * k), *dwr = buf((size_t)n * k);
    float *db = buf(n), *dbr = buf(n), *dx = buf((size_t)m * k), *dxr = buf((size_t)m * k);
    float *dbp = buf(k), *dbpr = buf(k);
    fill(dy, (size_t)m * n, -0.01f, 0.01f);
    pb_gemm_grad g = {.m = m, .n = n, .k = k, .dy = dy, .x = x, .w = w, .dw = dw, .db = has_db ? db : NULL,
                      .dx = dx, .dx_act = x_relu ? PB_DACT_RELU : PB_DACT_NONE, .dx_db = has_dbp ? dbp : NULL};
    cpu_gemm_bwd(NULL, &g);
    g.dw = dwr, g.db = has_db ? dbr : NULL, g.dx = dxr, g.dx_db = has_dbp ? dbpr : NULL;
    ref_linear_bwd(&g);
    snprintf(what, sizeof what, "gemm_bwd %dx%dx%d dw", m, n, k);
    compare(what, dw, dwr, (size_t)n * k);
    if (has_db) {
        snprintf(what, sizeof what, "gemm_bwd %dx%dx%d db", m, n, k);
        compare(what, db, dbr, n);
    }
    snprintf(what, sizeof what, "gemm_bwd %dx%dx%d dx (relu %d)", m, n, k, x_relu);
    compare(what, dx, dxr, (size_t)m * k);
    if (x_relu && has_dbp) {
        snprintf(what, sizeof what, "gemm_bwd %dx%dx%d dx_db", m, n, k);
        compare(what, dbp, dbpr, k);
    }
    float *all[] = {x, w, b, y, yr, dy, dw, dwr, db, dbr, dx, dxr, dbp, dbpr};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cpu_free(NULL, all[i]);
}

static void check_optimizer(pb_optimizer kind, size_t n, float wd)
{
    float *p = buf(n), *m = buf(n), *v = buf(n), *g = buf(n);
    float *pr = buf(n), *mr = buf(n), *vr = buf(n);
    fill(p, n, -1, 1);
    fill(m, n, -0.1f, 0.1f);
    fill(v, n, 0, 0.01f);
    memcpy(pr, p, n * 4), memcpy(mr, m, n * 4), memcpy(vr, v, n * 4);
    for (int step = 1; step <= 3; step++) {
        fill(g, n, -0.05f, 0.05f);
        pb_opt_args a = {.kind = kind, .n = n, .params = p, .grads = g, .m = m, .v = v, .lr = 0.01f,
                         .momentum = 0.9f, .weight_decay = wd, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                         .step = step};
        cpu_optimizer(NULL, &a);
        a.params = pr, a.m = mr, a.v = vr;
        ref_optimizer(&a);
    }
    char what[64];
    snprintf(what, sizeof what, "%s n=%zu params", kind == PB_OPT_SGD ? "sgd" : "adamw", n);
    compare(what, p, pr, n);
    snprintf(what, sizeof what, "%s n=%zu m", kind == PB_OPT_SGD ? "sgd" : "adamw", n);
    compare(what, m, mr, n);
    if (kind == PB_OPT_ADAMW) compare("adamw v", v, vr, n);
    float *all[] = {p, m, v, g, pr, mr, vr};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cpu_free(NULL, all[i]);
}

/* A row exponential against expf for every float bit pattern (or every
 * 97th): each implementation this CPU can run, not only the one exp_row
 * picks. */
typedef void (*exp_fn)(const float *z, float mx, float *e, int c);

static void check_exp_impl(const char *name, exp_fn fn, bool quick)
{
    enum { CHUNK = 4096 };
    static float z[CHUNK], e[CHUNK];
    uint64_t step = quick ? 97 : 1, checked = 0;
    int before = failures;
    for (uint64_t u0 = 0; u0 < (1ull << 32); u0 += (uint64_t)CHUNK * step) {
        int n = 0;
        for (; n < CHUNK && u0 + (uint64_t)n * step < (1ull << 32); n++) {
            uint32_t u = (uint32_t)(u0 + (uint64_t)n * step);
            memcpy(&z[n], &u, 4);
        }
        fn(z, 0.0f, e, n);
        for (int i = 0; i < n; i++) {
            float want = expf(z[i] - 0.0f);
            if (memcmp(&e[i], &want, 4) != 0 && !(isnan(e[i]) && isnan(want))) fail(name, (size_t)(u0 + (uint64_t)i * step), e[i], want);
        }
        checked += (uint64_t)n;
    }
    printf("  %s vs expf: %llu arguments, %d differences\n", name, (unsigned long long)checked, failures - before);
}

static void check_exp(bool quick)
{
    check_exp_impl("exp_row", exp_row, true); /* the dispatcher: one of those below, sampled */
#if CPU_X86
    if (__builtin_cpu_supports("avx512f")) check_exp_impl("exp_row_avx512", exp_row_avx512, quick);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        check_exp_impl("exp_row_avx2", exp_row_avx2, quick);
#endif
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    openblas_set_num_threads(1);
    printf("cpu_exact: optimised CPU kernels against the reference loops, bit for bit\n");
    check_exp(quick);
    int shapes[][2] = {{256, 1000}, {512, 1000}, {7, 5}, {9, 17}, {3, 1}, {1, 40}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_softmax(shapes[i][0], shapes[i][1], 3.0f);
        check_softmax(shapes[i][0], shapes[i][1], 60.0f);
    }
    check_linear(256, 1024, 1024, true, false, true, true);
    check_linear(256, 1000, 1024, false, true, true, true);
    check_linear(64, 4096, 4096, true, false, true, true);
    check_linear(5, 7, 3, true, true, true, false);
    check_linear(9, 13, 11, false, true, false, false);
    check_linear(9, 13, 11, true, false, true, true);
    size_t sizes[] = {4198376, 1001, 7, 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_optimizer(PB_OPT_SGD, sizes[i], 0.0f);
        check_optimizer(PB_OPT_SGD, sizes[i], 1e-4f);
        check_optimizer(PB_OPT_ADAMW, sizes[i], 0.01f);
    }
    printf("cpu_exact: %s (%d differences)\n", failures ? "FAIL" : "identical", failures);
    return failures ? 1 : 0;
}
