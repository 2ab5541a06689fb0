/* make test-gpu: every CUDA kernel against the CPU backend on the same
 * inputs, in fp32, tf32 and bf16, then a full mlp-s step and a 20-step loss
 * trajectory of `single` on both backends; then mp's pipeline on two logical
 * devices of one GPU (separate streams): stage 1's first forward starts
 * before stage 0's last one ends, and bubble_frac is within 0.1 of GPipe's
 * (p-1)/(m+p-1) for M = 8 on mlp-m; and the transformer ops against the
 * CPU's (gpt_ops_checks.h). Exits 77 (automake's "skipped") with
 * "skipped: no usable GPU (why)" when no CUDA device is usable; `make
 * test-gpu` turns that 77 into a success (tests/gpu/module.mk).
 *
 * Errors are norm-wise, ||gpu - cpu|| / ||cpu||. Tolerances per precision:
 * fp32 1e-5 (only summation order differs), tf32 3e-3 (10-bit mantissa
 * operands), bf16 2e-2 (8-bit mantissa operands and activations). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness/config.h"
#include "harness/registry.h"
#include "kernels/backend.h"
#include "kernels/comm_local.h"
#include "strategies/strategy.h"
#include "workloads/mlp.h"

static pb_precision precision; /* set per group of tests */

static double tolerance(pb_precision p)
{
    return p == PB_FP32 ? 1e-5 : p == PB_TF32 ? 3e-3 : 2e-2;
}

static uint64_t rng_state = 0x1234567;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(rng_state >> 40) * 0x1p-23f - 1.0f;
}

static void fill(float *v, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) v[i] = scale * frand();
}

static double rel_err(const float *got, const float *want, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#define CHECK(expr) assert_int_equal((expr), PB_OK)

/* One device of each backend with the same config but precision. */
typedef struct pair {
    pb_config cpu_cfg, gpu_cfg;
    pb_device *cpu, *gpu;
} pair;

static void pair_open(pair *p)
{
    pb_config_defaults(&p->cpu_cfg);
    p->cpu_cfg.threads = 1;
    snprintf(p->cpu_cfg.backend, sizeof p->cpu_cfg.backend, "cpu");
    p->gpu_cfg = p->cpu_cfg;
    snprintf(p->gpu_cfg.backend, sizeof p->gpu_cfg.backend, "cuda");
    p->gpu_cfg.precision = precision;
    pb_device_opts cpu_opts = pb_config_device_opts(&p->cpu_cfg), gpu_opts = pb_config_device_opts(&p->gpu_cfg);
    CHECK(pb_backend_cpu.open(&cpu_opts, 0, &p->cpu));
    CHECK(pb_backend_cuda.open(&gpu_opts, 0, &p->gpu));
}

static void pair_close(pair *p)
{
    pb_backend_cpu.close(p->cpu);
    pb_backend_cuda.close(p->gpu);
}

/* Device buffers holding host fp32 values: fp32 storage, or the activation
 * type when act is set. */
static void *gpu_put(pair *p, const float *host, size_t n, bool act)
{
    const pb_backend *be = &pb_backend_cuda;
    void *d = NULL;
    CHECK(be->alloc(p->gpu, act ? be->act_bytes(p->gpu, n) : n * sizeof(float), &d));
    if (act) CHECK(be->upload_act(p->gpu, d, host, n));
    else CHECK(be->upload(p->gpu, d, host, n * sizeof(float)));
    return d;
}

static void gpu_get(pair *p, float *host, const void *d, size_t n, bool act)
{
    const pb_backend *be = &pb_backend_cuda;
    if (act) CHECK(be->download_act(p->gpu, host, d, n));
    else CHECK(be->download(p->gpu, host, d, n * sizeof(float)));
    CHECK(be->synchronize(p->gpu));
}

/* host values as the GPU stores them in the activation type (rounded to
 * bf16 in bf16, unchanged otherwise) */
static void round_trip(pair *p, const float *in, float *out, size_t n)
{
    void *d = gpu_put(p, in, n, true);
    gpu_get(p, out, d, n, true);
    pb_backend_cuda.free(p->gpu, d);
}

static void expect_close(const char *what, const float *got, const float *want, size_t n)
{
    double e = rel_err(got, want, n);
    print_message("  %-5s %-22s rel err %.2e (tol %.0e)\n", pb_precision_name(precision), what, e,
                  tolerance(precision));
    assert_true(e <= tolerance(precision));
}

/* the transformer ops' checks (fp32, tf32 and bf16 groups in main) */
#include "gpt_ops_checks.h"

/* expect_close of a device buffer (fp32, or the activation type when act) */
static void expect_gpu(pair *p, const char *what, const void *d, const float *want, size_t n, bool act)
{
    float *h = malloc(n * sizeof *h);
    assert_non_null(h);
    gpu_get(p, h, d, n, act);
    expect_close(what, h, want, n);
    free(h);
}

/* The GEMM with epilogues: forward of one layer (BIAS and RELU_BIAS) and
 * the backward of a second layer on top of it, applying the first layer's
 * ReLU derivative (from its output > 0) to dx. */
static void test_gemm(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    const pb_backend *cb = &pb_backend_cpu, *gb = &pb_backend_cuda;
    const int m = 64, k = 96, n = 128, n2 = 80;
    size_t nx = (size_t)m * k, nw = (size_t)n * k, ny = (size_t)m * n, nw2 = (size_t)n2 * n, ny2 = (size_t)m * n2;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(n * 4), *w2 = malloc(nw2 * 4),
          *dy2 = malloc(ny2 * 4);
    float *y_c = calloc(ny, 4), *y_g = calloc(ny, 4);
    fill(x, nx, 1.0f), fill(w, nw, 0.1f), fill(b, n, 0.1f), fill(w2, nw2, 0.1f), fill(dy2, ny2, 0.01f);

    for (int relu = 0; relu <= 1; relu++) {
        pb_epilogue epi = relu ? PB_EPI_RELU_BIAS : PB_EPI_BIAS;
        pb_gemm lc = {.m = m, .n = n, .k = k, .x = x, .w = w, .bias = b, .y = y_c, .epilogue = epi};
        CHECK(cb->gemm_fwd(p.cpu, &lc));
        void *dx = gpu_put(&p, x, nx, true), *dw = NULL, *db = gpu_put(&p, b, n, false);
        CHECK(gb->alloc(p.gpu, gb->act_bytes(p.gpu, nw), &dw));
        float *w32 = gpu_put(&p, w, nw, false);
        CHECK(gb->cast_params(p.gpu, dw, w32, nw));
        void *dyv = NULL;
        CHECK(gb->alloc(p.gpu, gb->act_bytes(p.gpu, ny), &dyv));
        pb_gemm lg = {.m = m, .n = n, .k = k, .x = dx, .w = dw, .bias = db, .y = dyv, .epilogue = epi};
        CHECK(gb->gemm_fwd(p.gpu, &lg));
        gpu_get(&p, y_g, dyv, ny, true);
        expect_close(relu ? "gemm_fwd relu_bias" : "gemm_fwd bias", y_g, y_c, ny);

        if (relu) {
            /* backward of layer 2 (n -> n2) whose input came through the ReLU.
             * The CPU reference takes the GPU's own forward output as its
             * input: in bf16 a rounded input flips a few ReLU signs, which
             * would be a difference of inputs, not of the backward kernels. */
            float *dw2_c = calloc(nw2, 4), *db2_c = calloc(n2, 4), *dx_c = calloc(ny, 4), *dbp_c = calloc(n, 4);
            float *w2_r = malloc(nw2 * 4), *dy2_r = malloc(ny2 * 4);
            round_trip(&p, w2, w2_r, nw2);
            round_trip(&p, dy2, dy2_r, ny2);
            pb_gemm_grad gc = {.m = m, .n = n2, .k = n, .dy = dy2_r, .x = y_g, .w = w2_r, .dw = dw2_c,
                               .db = db2_c, .dx = dx_c, .dx_act = PB_DACT_RELU, .dx_db = dbp_c};
            CHECK(cb->gemm_bwd(p.cpu, &gc));
            void *g_dy = gpu_put(&p, dy2, ny2, true), *g_w2c = NULL, *g_dx = NULL;
            float *g_w2 = gpu_put(&p, w2, nw2, false), *g_dw2 = NULL, *g_db2 = NULL, *g_dbp = NULL;
            CHECK(gb->alloc(p.gpu, gb->act_bytes(p.gpu, nw2), &g_w2c));
            CHECK(gb->cast_params(p.gpu, g_w2c, g_w2, nw2));
            CHECK(gb->alloc(p.gpu, nw2 * 4, (void **)&g_dw2));
            CHECK(gb->alloc(p.gpu, n2 * 4, (void **)&g_db2));
            CHECK(gb->alloc(p.gpu, n * 4, (void **)&g_dbp));
            CHECK(gb->alloc(p.gpu, gb->act_bytes(p.gpu, ny), &g_dx));
            pb_gemm_grad gg = {.m = m, .n = n2, .k = n, .dy = g_dy, .x = dyv, .w = g_w2c, .dw = g_dw2,
                               .db = g_db2, .dx = g_dx, .dx_act = PB_DACT_RELU, .dx_db = g_dbp};
            CHECK(gb->gemm_bwd(p.gpu, &gg));
            expect_gpu(&p, "gemm_bwd dW", g_dw2, dw2_c, nw2, false);
            expect_gpu(&p, "gemm_bwd db", g_db2, db2_c, n2, false);
            expect_gpu(&p, "gemm_bwd dx (drelu)", g_dx, dx_c, ny, true);
            expect_gpu(&p, "gemm_bwd dx_db", g_dbp, dbp_c, n, false);
            /* dW accumulated onto what dw holds (SGD's momentum in the GEMM):
             * both now hold dW, so the result is 1.9 dW */
            gc.dw_beta = gg.dw_beta = 0.9f;
            CHECK(cb->gemm_bwd(p.cpu, &gc));
            CHECK(gb->gemm_bwd(p.gpu, &gg));
            expect_gpu(&p, "gemm_bwd dW + 0.9 dw", g_dw2, dw2_c, nw2, false);
            free(dw2_c), free(db2_c), free(dx_c), free(dbp_c), free(w2_r), free(dy2_r);
            gb->free(p.gpu, g_dy), gb->free(p.gpu, g_w2c), gb->free(p.gpu, g_dx), gb->free(p.gpu, g_w2);
            gb->free(p.gpu, g_dw2), gb->free(p.gpu, g_db2), gb->free(p.gpu, g_dbp);
        }
        gb->free(p.gpu, dx), gb->free(p.gpu, dw), gb->free(p.gpu, db), gb->free(p.gpu, w32);
        gb->free(p.gpu, dyv);
    }
    free(x), free(w), free(b), free(w2), free(dy2), free(y_c), free(y_g);
    pair_close(&p);
}

/* GELU_BIAS forward (y and the saved pre) and a second layer's backward
 * through its derivative (dx and the first layer's bias gradient dx_db),
 * against the CPU backend. n: the GELU layer's width; a multiple of 8 lets
 * cuBLASLt fuse GELU_AUX_BIAS / DGELU_BGRAD, another width takes the
 * unfused kernels. dx_beta 1 (accumulating onto a dx that holds values)
 * always takes the unfused derivative. */
static void check_gemm_gelu(int n)
{
    pair p;
    pair_open(&p);
    const pb_backend *cb = &pb_backend_cpu, *gb = &pb_backend_cuda;
    const int m = 64, k = 96, n2 = 80;
    size_t nx = (size_t)m * k, nw = (size_t)n * k, ny = (size_t)m * n, nw2 = (size_t)n2 * n, ny2 = (size_t)m * n2;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(n * 4), *w2 = malloc(nw2 * 4), *dy2 = malloc(ny2 * 4);
    float *y_c = calloc(ny, 4), *pre_c = calloc(ny, 4), *y_g = calloc(ny, 4), *pre_g = calloc(ny, 4);
    fill(x, nx, 1.0f), fill(w, nw, 0.2f), fill(b, n, 0.5f), fill(w2, nw2, 0.1f), fill(dy2, ny2, 0.01f);

    pb_gemm lc = {.m = m, .n = n, .k = k, .x = x, .w = w, .bias = b, .y = y_c, .pre = pre_c, .epilogue = PB_EPI_GELU_BIAS};
    CHECK(cb->gemm_fwd(p.cpu, &lc));
    void *g_x = gpu_put(&p, x, nx, true), *g_wc = NULL, *g_y = NULL, *g_pre = NULL;
    float *g_w = gpu_put(&p, w, nw, false), *g_b = gpu_put(&p, b, n, false);
    CHECK(gb->alloc(p.gpu, gb->act_bytes(p.gpu, nw), &g_wc));
    CHECK(gb->cast_params(p.gpu, g_wc, g_w, nw));
    CHECK(gb->alloc(p.gpu, gb->act_bytes(p.gpu, ny), &g_y));
    CHECK(gb->alloc(p.gpu, gb->act_bytes(p.gpu, ny), &g_pre));
    pb_gemm lg = {.m = m, .n = n, .k = k, .x = g_x, .w = g_wc, .bias = g_b, .y = g_y, .pre = g_pre,
                  .epilogue = PB_EPI_GELU_BIAS};
    CHECK(gb->gemm_fwd(p.gpu, &lg));
    gpu_get(&p, y_g, g_y, ny, true);
    gpu_get(&p, pre_g, g_pre, ny, true);
    expect_close("gemm_fwd gelu pre", pre_g, pre_c, ny);
    expect_close("gemm_fwd gelu y", y_g, y_c, ny);

    /* layer 2 (n -> n2) on the GPU's own forward outputs, as test_gemm */
    float *dw2_c = calloc(nw2, 4), *dx_c = calloc(ny, 4), *dbp_c = calloc(n, 4), *w2_r = malloc(nw2 * 4),
          *dy2_r = malloc(ny2 * 4);
    round_trip(&p, w2, w2_r, nw2);
    round_trip(&p, dy2, dy2_r, ny2);
    pb_gemm_grad gc = {.m = m, .n = n2, .k = n, .dy = dy2_r, .x = y_g, .w = w2_r, .dw = dw2_c, .dx = dx_c,
                       .dx_act = PB_DACT_GELU, .x_pre = pre_g, .dx_db = dbp_c};
    CHECK(cb->gemm_bwd(p.cpu, &gc));
    void *g_dy = gpu_put(&p, dy2, ny2, true), *g_w2c = NULL, *g_dx = NULL;
    float *g_w2 = gpu_put(&p, w2, nw2, false), *g_dw2 = NULL, *g_dbp = NULL;
    CHECK(gb->alloc(p.gpu, gb->act_bytes(p.gpu, nw2), &g_w2c));
    CHECK(gb->cast_params(p.gpu, g_w2c, g_w2, nw2));
    CHECK(gb->alloc(p.gpu, nw2 * 4, (void **)&g_dw2));
    CHECK(gb->alloc(p.gpu, n * 4, (void **)&g_dbp));
    CHECK(gb->alloc(p.gpu, gb->act_bytes(p.gpu, ny), &g_dx));
    pb_gemm_grad gg = {.m = m, .n = n2, .k = n, .dy = g_dy, .x = g_y, .w = g_w2c, .dw = g_dw2, .dx = g_dx,
                       .dx_act = PB_DACT_GELU, .x_pre = g_pre, .dx_db = g_dbp};
    CHECK(gb->gemm_bwd(p.gpu, &gg));
    expect_gpu(&p, "gemm_bwd dW (gelu x)", g_dw2, dw2_c, nw2, false);
    expect_gpu(&p, "gemm_bwd dx (dgelu)", g_dx, dx_c, ny, true);
    expect_gpu(&p, "gemm_bwd dx_db (dgelu)", g_dbp, dbp_c, n, false);
    /* dx_beta 1 onto zeros: the unfused derivative, the same numbers */
    CHECK(gb->zero(p.gpu, g_dx, gb->act_bytes(p.gpu, ny)));
    gg.dx_beta = 1.0f;
    CHECK(gb->gemm_bwd(p.gpu, &gg));
    expect_gpu(&p, "gemm_bwd dx (dgelu, +=)", g_dx, dx_c, ny, true);
    expect_gpu(&p, "gemm_bwd dx_db (+=)", g_dbp, dbp_c, n, false);

    void *gbufs[] = {g_x, g_wc, g_y, g_pre, g_w, g_b, g_dy, g_w2c, g_dx, g_w2, g_dw2, g_dbp};
    for (size_t i = 0; i < sizeof gbufs / sizeof gbufs[0]; i++) gb->free(p.gpu, gbufs[i]);
    float *hbufs[] = {x, w, b, w2, dy2, y_c, pre_c, y_g, pre_g, dw2_c, dx_c, dbp_c, w2_r, dy2_r};
    for (size_t i = 0; i < sizeof hbufs / sizeof hbufs[0]; i++) free(hbufs[i]);
    pair_close(&p);
}

static void test_gemm_gelu(void **state)
{
    (void)state;
    check_gemm_gelu(128); /* fused: GELU_AUX_BIAS, DGELU_BGRAD */
    check_gemm_gelu(100); /* aux ld not a multiple of 8: unfused kernels */
}

static void test_softmax_xent(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    const int m = 96, c = 1000;
    size_t n = (size_t)m * c;
    float *z = malloc(n * 4), *d_c = calloc(n, 4), *d_g = calloc(n, 4);
    int32_t *labels = malloc(m * 4);
    fill(z, n, 4.0f);
    for (int i = 0; i < m; i++) labels[i] = (int32_t)((unsigned)(i * 7919) % c);
    float loss_c = 0.0f, loss_g = 0.0f;
    CHECK(pb_backend_cpu.softmax_xent(p.cpu, m, c, z, labels, 1.0f / m, &loss_c, d_c));
    const pb_backend *gb = &pb_backend_cuda;
    void *gz = gpu_put(&p, z, n, true), *gd = NULL;
    int32_t *gl = NULL;
    float *gloss = NULL;
    CHECK(gb->alloc(p.gpu, gb->act_bytes(p.gpu, n), &gd));
    CHECK(gb->alloc(p.gpu, m * 4, (void **)&gl));
    CHECK(gb->alloc(p.gpu, 4, (void **)&gloss));
    CHECK(gb->upload(p.gpu, gl, labels, m * 4));
    CHECK(gb->softmax_xent(p.gpu, m, c, gz, gl, 1.0f / m, gloss, gd));
    gpu_get(&p, &loss_g, gloss, 1, false);
    gpu_get(&p, d_g, gd, n, true);
    /* with bf16 logits the CPU reference sees the same rounded inputs only
     * approximately, so the loss is held to the precision's tolerance */
    expect_close("softmax_xent loss", &loss_g, &loss_c, 1);
    expect_close("softmax_xent dlogits", d_g, d_c, n);
    gb->free(p.gpu, gz), gb->free(p.gpu, gd), gb->free(p.gpu, gl), gb->free(p.gpu, gloss);
    free(z), free(d_c), free(d_g), free(labels);
    pair_close(&p);
}

/* ready: SGD with momentum_ready (m already holds mu*m + g); g unused */
static void run_optimizer(pb_optimizer kind, bool ready)
{
    pair p;
    pair_open(&p);
    const pb_backend *gb = &pb_backend_cuda;
    const size_t n = 100003; /* odd: exercises vector tails */
    float *pc = malloc(n * 4), *g = malloc(n * 4), *mc = calloc(n, 4), *vc = calloc(n, 4), *out = malloc(n * 4);
    fill(pc, n, 1.0f);
    float *gp = gpu_put(&p, pc, n, false), *gm = NULL, *gv = NULL, *gg = NULL;
    void *gcomp = NULL;
    CHECK(gb->alloc(p.gpu, n * 4, (void **)&gm));
    CHECK(gb->alloc(p.gpu, n * 4, (void **)&gv));
    CHECK(gb->alloc(p.gpu, n * 4, (void **)&gg));
    CHECK(gb->alloc(p.gpu, gb->act_bytes(p.gpu, n), &gcomp));
    for (int step = 1; step <= 3; step++) {
        fill(g, n, 0.1f);
        CHECK(gb->upload(p.gpu, gg, g, n * 4));
        if (ready) { /* as the weight-gradient GEMM would leave it */
            for (size_t i = 0; i < n; i++) mc[i] = 0.9f * mc[i] + g[i];
            CHECK(gb->upload(p.gpu, gm, mc, n * 4));
        }
        pb_opt_args a = {.kind = kind, .n = n, .params = pc, .grads = g, .m = mc, .v = vc, .lr = 0.01f,
                         .momentum = 0.9f, .weight_decay = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f,
                         .eps = 1e-8f, .step = step, .momentum_ready = ready};
        CHECK(pb_backend_cpu.optimizer(p.cpu, &a));
        pb_opt_args b = a;
        b.params = gp, b.grads = ready ? NULL : gg, b.m = gm, b.v = gv, b.params_compute = gcomp;
        CHECK(gb->optimizer(p.gpu, &b));
    }
    /* master weights are fp32 in every precision: only rounding of the same
     * formula differs (expf/sqrtf, FMA contraction) */
    gpu_get(&p, out, gp, n, false);
    double e = rel_err(out, pc, n);
    print_message("  %-5s %-22s rel err %.2e (tol 1e-6)\n", pb_precision_name(precision),
                  kind == PB_OPT_SGD ? (ready ? "sgd (ready) params" : "sgd params") : "adamw params", e);
    assert_true(e <= 1e-6);
    gpu_get(&p, out, gcomp, n, true);
    expect_close("optimizer compute copy", out, pc, n);
    gb->free(p.gpu, gp), gb->free(p.gpu, gm), gb->free(p.gpu, gv), gb->free(p.gpu, gg), gb->free(p.gpu, gcomp);
    free(pc), free(g), free(mc), free(vc), free(out);
    pair_close(&p);
}

static void test_sgd(void **state) { (void)state; run_optimizer(PB_OPT_SGD, false); }
static void test_sgd_ready(void **state) { (void)state; run_optimizer(PB_OPT_SGD, true); }
static void test_adamw(void **state) { (void)state; run_optimizer(PB_OPT_ADAMW, false); }

/* `single` on a preset on both backends from the same parameters and data
 * (the workload's own init and data): the parameters after one step, and
 * the loss over `steps` steps. */
static void single_against_cpu(const char *workload, int steps)
{
    const pb_workload *w = pb_find_workload(workload);
    assert_non_null(w);
    pb_config cc, gc;
    pb_config_defaults(&cc);
    snprintf(cc.workload, sizeof cc.workload, "%s", w->name);
    cc.shape = w->shape;
    cc.threads = 2;
    cc.lr = 0.01; /* pb_config_parse resolves the default; set it here */
    snprintf(cc.backend, sizeof cc.backend, "cpu");
    gc = cc;
    snprintf(gc.backend, sizeof gc.backend, "cuda");
    gc.precision = precision;
    static pb_model model;
    CHECK(pb_model_describe(w->ops, &cc.shape, &model));
    const pb_model *m = &model;
    int B = cc.shape.batch;
    float *params = malloc(m->n_params * 4), *pc = malloc(m->n_params * 4), *pg = malloc(m->n_params * 4),
          *table = malloc((m->data_table + 1) * 4);
    void *in = malloc((size_t)B * pb_model_input_bytes(m)), *tg = malloc((size_t)B * pb_model_target_bytes(m));
    assert_true(params && pc && pg && table && in && tg);
    m->ops->init_params(m, cc.seed, params);
    if (m->data_table) m->ops->data_table(m, cc.seed, table);
    pb_strategy_ctx ctx_c = {.cfg = &cc, .be = &pb_backend_cpu, .model = m, .init_params = params, .ranks = 1};
    pb_strategy_ctx ctx_g = {.cfg = &gc, .be = &pb_backend_cuda, .model = m, .init_params = params, .ranks = 1};
    void *sc = NULL, *sg = NULL;
    CHECK(pb_strategy_single.init(&ctx_c, &sc));
    CHECK(pb_strategy_single.init(&ctx_g, &sg));
    char what[64];
    double worst_loss = 0.0;
    for (int s = 0; s < steps; s++) {
        m->ops->fill(m, cc.seed, table, s, 0, B, in, tg);
        pb_batch batch = {.step = s, .count = B, .inputs = in, .targets = tg};
        pb_step_result rc, rg;
        CHECK(pb_strategy_single.step(sc, &batch, &rc));
        CHECK(pb_strategy_single.step(sg, &batch, &rg));
        double e = fabs(rg.loss - rc.loss) / rc.loss;
        if (e > worst_loss) worst_loss = e;
        if (s == 0) {
            CHECK(pb_strategy_single.get_params(sc, pc));
            CHECK(pb_strategy_single.get_params(sg, pg));
            snprintf(what, sizeof what, "%s params, 1 step", workload);
            expect_close(what, pg, pc, m->n_params);
        }
        if (s == steps - 1)
            print_message("  %-5s loss step %d: cpu %.5f gpu %.5f\n", pb_precision_name(precision), steps, rc.loss,
                          rg.loss);
    }
    snprintf(what, sizeof what, "%s loss, %d steps", workload, steps);
    print_message("  %-5s %-22s rel err %.2e (tol %.0e)\n", pb_precision_name(precision), what, worst_loss,
                  tolerance(precision));
    assert_true(worst_loss <= tolerance(precision));
    pb_strategy_single.destroy(sc);
    pb_strategy_single.destroy(sg);
    free(params), free(pc), free(pg), free(table), free(in), free(tg);
}

static void test_single_mlp_s(void **state)
{
    (void)state;
    single_against_cpu("mlp-s", 20);
}

/* gpt-xs: the transformer table and the backend's GEMM with epilogues
 * together, as a GPT run calls them */
static void test_single_gpt_xs(void **state)
{
    (void)state;
    single_against_cpu("gpt-xs", 5);
}

/* The span of stage k's phase ph for microbatch mb. */
static const pb_mp_span *mp_span(const pb_mp_span *sp, int n, int k, pb_phase ph, int mb)
{
    for (int i = 0; i < n; i++)
        if (sp[i].stage == k && sp[i].phase == ph && sp[i].mb == mb) return &sp[i];
    fail_msg("no %s span of stage %d for microbatch %d", pb_phase_name(ph), k, mb);
    return NULL;
}

/* mp, 2 stages on GPU 0 (--device-map 0,0: a stream each), mlp-m, M = 8:
 * the per-microbatch marks of the last step show the pipeline overlapping
 * (stage 1's forward of microbatch 0 starts before stage 0's forward of
 * microbatch 7 ends: it waits for microbatch 0's data only), and the
 * measured bubble share over 7 steps after 3 of warm-up is within 0.1 of
 * (p-1)/(m+p-1) = 1/9, under GPipe and 1F1B alike. Before the
 * per-message marks, stage 1 waited for all of stage 0's forwards and the
 * bubble sat inside p2p. */
static void mp_overlap_one_gpu(pb_schedule sched)
{
    const int M = 8, warm = 3, steps = 10;
    pb_config cfg;
    pb_config_defaults(&cfg);
    cfg.lr = 0.01;
    snprintf(cfg.backend, sizeof cfg.backend, "cuda");
    cfg.precision = precision;
    cfg.shape = pb_find_workload("mlp-m")->shape;
    cfg.devices = 2;
    cfg.microbatches = M;
    cfg.schedule = sched;
    cfg.n_device_map = 2;
    cfg.device_map[0] = cfg.device_map[1] = 0;
    cfg.warmup = warm;
    pb_layout layout;
    CHECK(pb_mlp_layout(&cfg.shape, &layout));
    static pb_model model;
    CHECK(pb_model_describe(&pb_workload_mlp, &cfg.shape, &model));
    float *params = malloc(layout.n_params * 4), *proto = malloc((size_t)layout.classes * layout.in * 4),
          *x = malloc((size_t)cfg.shape.batch * layout.in * 4);
    int32_t *labels = malloc((size_t)cfg.shape.batch * 4);
    pb_mlp_init_params(&layout, cfg.seed, params);
    pb_data_prototypes(&layout, cfg.seed, proto);
    pb_strategy_ctx ctx = {.cfg = &cfg, .be = &pb_backend_cuda, .model = &model, .init_params = params,
                           .ranks = 1, .comm = &pb_comm_local};
    void *mp = NULL;
    CHECK(pb_strategy_mp.init(&ctx, &mp));
    double bubble = 0.0, total = 0.0;
    for (int step = 0; step < steps; step++) {
        pb_data_fill(&layout, cfg.seed, step, 0, cfg.shape.batch, proto, x, labels);
        pb_batch batch = {.step = step, .count = cfg.shape.batch, .inputs = x, .targets = labels};
        pb_step_result r;
        CHECK(pb_strategy_mp.step(mp, &batch, &r));
        if (step < warm) continue;
        for (int ph = 0; ph < PB_PHASE_COUNT; ph++) total += r.t.ms[ph]; /* the phases tile the step */
        bubble += r.t.ms[PB_PHASE_BUBBLE];
    }
    pb_mp_span sp[128];
    int n = 0;
    CHECK(pb_mp_trace(mp, sp, 128, &n));
    const pb_mp_span *first1 = mp_span(sp, n, 1, PB_PHASE_FWD, 0), *last0 = mp_span(sp, n, 0, PB_PHASE_FWD, M - 1);
    double frac = total > 0.0 ? bubble / total : 1.0, theory = 1.0 / (M + 1.0);
    print_message("  %-5s mp %s mlp-m M=%d on one GPU: stage 1 fwd 0 starts %.3f ms, stage 0 fwd %d ends %.3f ms; "
                  "bubble_frac %.3f (theory %.3f)\n",
                  pb_precision_name(precision), pb_schedule_name(sched), M, first1->start_ms, M - 1, last0->end_ms,
                  frac, theory);
    assert_true(first1->start_ms < last0->end_ms);
    assert_true(fabs(frac - theory) <= 0.1);
    pb_strategy_mp.destroy(mp);
    free(params), free(proto), free(x), free(labels);
}

static void test_mp_overlap_one_gpu(void **state)
{
    (void)state;
    mp_overlap_one_gpu(PB_SCHED_GPIPE);
    mp_overlap_one_gpu(PB_SCHED_1F1B);
}

/* The device info names the GPU's PCIe width and SM clock against their
 * maxima (gpu_check; the verdict's rules are tested on the CPU in
 * tests/unit/test_envcheck.c): here that the facts are read at all. */
static void test_info_gpu_check(void **state)
{
    (void)state;
    pb_config cfg;
    pb_config_defaults(&cfg);
    snprintf(cfg.backend, sizeof cfg.backend, "cuda");
    pb_device_opts opts = pb_config_device_opts(&cfg);
    pb_device *dev = NULL;
    pb_device_info info;
    CHECK(pb_backend_cuda.open(&opts, 0, &dev));
    CHECK(pb_backend_cuda.info(dev, &info));
    pb_backend_cuda.close(dev);
    print_message("  gpu_check: %s\n", info.gpu_check);
    assert_int_equal(strncmp(info.gpu_check, "pcie ", 5), 0);
    assert_non_null(strstr(info.gpu_check, "; sm clock "));
}

static int set_fp32(void **s) { (void)s; precision = PB_FP32; return 0; }
static int set_tf32(void **s) { (void)s; precision = PB_TF32; return 0; }
static int set_bf16(void **s) { (void)s; precision = PB_BF16; return 0; }

#define GROUP(name, setup)                                                    \
    const struct CMUnitTest name[] = {                                        \
        cmocka_unit_test(test_gemm), cmocka_unit_test(test_gemm_gelu),        \
        cmocka_unit_test(test_softmax_xent),                                  \
        cmocka_unit_test(test_sgd), cmocka_unit_test(test_sgd_ready),         \
        cmocka_unit_test(test_adamw),                                         \
        cmocka_unit_test(test_single_mlp_s),                                  \
        cmocka_unit_test(test_single_gpt_xs),                                 \
    }

int main(void)
{
    char why[256] = "";
    if (pb_backend_cuda.device_count(why, sizeof why) <= 0) {
        printf("test-gpu skipped: no usable GPU (%s)\n", why);
        return 77;
    }
    GROUP(fp32, set_fp32);
    GROUP(tf32, set_tf32);
    GROUP(bf16, set_bf16);
    int failed = 0;
    failed += cmocka_run_group_tests_name("cuda fp32", fp32, set_fp32, NULL);
    failed += cmocka_run_group_tests_name("cuda tf32", tf32, set_tf32, NULL);
    failed += cmocka_run_group_tests_name("cuda bf16", bf16, set_bf16, NULL);
    const struct CMUnitTest gpt_ops[] = {GPT_OPS_TESTS};
    failed += cmocka_run_group_tests_name("cuda transformer ops fp32", gpt_ops, set_fp32, NULL);
    failed += cmocka_run_group_tests_name("cuda transformer ops tf32", gpt_ops, set_tf32, NULL);
    failed += cmocka_run_group_tests_name("cuda transformer ops bf16", gpt_ops, set_bf16, NULL);
    /* once, in bf16 (the tensor-core path a pipeline run would use) */
    const struct CMUnitTest mp_group[] = {cmocka_unit_test(test_mp_overlap_one_gpu)};
    const struct CMUnitTest info_group[] = {cmocka_unit_test(test_info_gpu_check)};
    failed += cmocka_run_group_tests_name("cuda device info", info_group, NULL, NULL);
    failed += cmocka_run_group_tests_name("cuda mp on one GPU", mp_group, set_bf16, NULL);
    return failed ? 1 : 0;
}
