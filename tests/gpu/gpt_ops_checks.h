/* test-gpu's checks of the cuda backend's transformer ops (kernels/cuda/
 * gpt_ops.cuh) against the cpu backend's (pb_cpu_transformer_ops) on the
 * same inputs: every slot the cuda table fills, on small shapes with odd
 * sizes (T 37: a causal row ends mid-warp; C 48: a LayerNorm row is not a
 * multiple of the warp). Included by test_gpu.c after its helpers (pair,
 * gpu_put, gpu_get, expect_close, tolerance).
 *
 * Inputs come from the project's counter-based generator (workloads/rng.h)
 * on a stream no workload uses. Activations are stored in the device's
 * activation type (bf16 in the bf16 group): the host values are rounded to
 * it first, so the CPU sees the GPU's inputs; parameters and their
 * gradients are fp32 in every group. Tolerances (norm-wise): fp32 1e-5,
 * only the summation order differs (warp shuffles, cuBLASLt's GEMM blocking
 * against BLAS's); tf32 3e-3 (attention's GEMMs round their operands to 10
 * bits; the other ops run in fp32 whatever the precision); bf16 2e-2 (every
 * stored activation rounded to 8 bits), 5e-2 for attention's dqkv, whose
 * dS = P (dP - rowsum(P dP)) subtracts bf16-rounded terms (a bound set
 * before any bf16 run: to be confirmed on a GPU). Gradients start random,
 * not zero, so the ops are held to accumulating. */
#ifndef PB_TEST_GPU_GPT_OPS_CHECKS_H
#define PB_TEST_GPU_GPT_OPS_CHECKS_H

#include "kernels/cpu/backend_cpu_gpt.h"
#include "workloads/rng.h"

#define GPT_TEST_STREAM 0x6770u /* not one of rng.h's streams */

static uint64_t gen_row; /* a new row of the generator per filled tensor */

static void gen_fill(float *v, size_t n, float bound)
{
    uint64_t key = pb_rng_key(16, GPT_TEST_STREAM, gen_row++, 0);
    for (size_t i = 0; i < n; i++) v[i] = pb_rng_symmetric(pb_rng_u64(key, i), bound);
}

static float *gen_vec(size_t n, float bound)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    gen_fill(v, n, bound);
    return v;
}

static const pb_transformer_ops *cpu_tr(void) { return pb_backend_cpu.transformer; }
static const pb_transformer_ops *gpu_tr(void) { return pb_backend_cuda.transformer; }

/* fp32 device copy of host values (parameters, their gradients) */
static float *dput(pair *p, const float *host, size_t n) { return gpu_put(p, host, n, false); }

/* an activation: the host values rounded to the activation type in place
 * (the CPU reference then reads what the GPU stores), then uploaded as it */
static float *dput_act(pair *p, float *host, size_t n)
{
    round_trip(p, host, host, n);
    return gpu_put(p, host, n, true);
}

static int32_t *dput_ids(pair *p, const int32_t *ids, size_t n)
{
    int32_t *d = NULL;
    CHECK(pb_backend_cuda.alloc(p->gpu, n * sizeof *ids, (void **)&d));
    CHECK(pb_backend_cuda.upload(p->gpu, d, ids, n * sizeof *ids));
    return d;
}

static void expect_within(const char *what, const float *got, const float *want, size_t n, double tol)
{
    double e = rel_err(got, want, n);
    print_message("  %-5s %-28s rel err %.2e (tol %.0e)\n", pb_precision_name(precision), what, e, tol);
    assert_true(e <= tol);
}

/* the device tensor (act: in the activation type) against the CPU's values,
 * within the precision's tolerance or `bf16_tol` in bf16 when set */
static void expect_dev_tol(pair *p, const char *what, const float *dev, const float *want, size_t n, bool act,
                           double bf16_tol)
{
    float *got = malloc(n * sizeof *got);
    assert_non_null(got);
    gpu_get(p, got, dev, n, act);
    expect_within(what, got, want, n, precision == PB_BF16 && bf16_tol > 0 ? bf16_tol : tolerance(precision));
    free(got);
}

static void expect_dev(pair *p, const char *what, const float *dev, const float *want, size_t n)
{
    expect_dev_tol(p, what, dev, want, n, false, 0);
}

static void expect_act(pair *p, const char *what, const float *dev, const float *want, size_t n)
{
    expect_dev_tol(p, what, dev, want, n, true, 0);
}

static void dfree(pair *p, void *d) { pb_backend_cuda.free(p->gpu, d); }

enum { GB = 2, GT = 37, GC = 48, GNH = 4, GV = 100, GVP = 128 };

/* forward, then backward twice from the same gradients: the encoder's
 * backward sums repeated tokens in a fixed order, so the bits repeat */
static void test_gpt_encoder(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    const size_t N = (size_t)GB * GT, NC = N * GC;
    int32_t ids[GB * GT];
    /* 8 distinct ids over 74 rows: every id repeats, some rows in a row */
    for (size_t i = 0; i < N; i++) ids[i] = (int32_t)(pb_rng_u64(pb_rng_key(16, GPT_TEST_STREAM, 999, 0), i) % 8u) * 3;
    float *wte = gen_vec((size_t)GVP * GC, 1.0f), *wpe = gen_vec((size_t)GT * GC, 1.0f), *dout = gen_vec(NC, 1.0f);
    float *dwte = gen_vec((size_t)GVP * GC, 0.1f), *dwpe = gen_vec((size_t)GT * GC, 0.1f), *out = calloc(NC, 4);
    float *gwte = dput(&p, wte, (size_t)GVP * GC), *gwpe = dput(&p, wpe, (size_t)GT * GC);
    float *gout = dput_act(&p, out, NC);
    float *gdout = dput_act(&p, dout, NC), *gdwte = dput(&p, dwte, (size_t)GVP * GC);
    float *gdwpe = dput(&p, dwpe, (size_t)GT * GC);
    int32_t *gids = dput_ids(&p, ids, N);
    CHECK(cpu_tr()->encoder_fwd(p.cpu, out, ids, wte, wpe, GB, GT, GC));
    CHECK(gpu_tr()->encoder_fwd(p.gpu, gout, gids, gwte, gwpe, GB, GT, GC));
    expect_act(&p, "encoder out", gout, out, NC);
    CHECK(cpu_tr()->encoder_bwd(p.cpu, dwte, dwpe, dout, ids, GB, GT, GC));
    CHECK(gpu_tr()->encoder_bwd(p.gpu, gdwte, gdwpe, gdout, gids, GB, GT, GC));
    expect_dev(&p, "encoder dwte", gdwte, dwte, (size_t)GVP * GC);
    expect_dev(&p, "encoder dwpe", gdwpe, dwpe, (size_t)GT * GC);
    /* determinism: the same backward again from the same start */
    float *first = malloc((size_t)GVP * GC * 4), *again = malloc((size_t)GVP * GC * 4);
    gpu_get(&p, first, gdwte, (size_t)GVP * GC, false);
    float *start = gen_vec((size_t)GVP * GC, 0.1f);
    for (int k = 0; k < 2; k++) {
        CHECK(pb_backend_cuda.upload(p.gpu, gdwte, start, (size_t)GVP * GC * 4));
        CHECK(gpu_tr()->encoder_bwd(p.gpu, gdwte, gdwpe, gdout, gids, GB, GT, GC));
        gpu_get(&p, k ? again : first, gdwte, (size_t)GVP * GC, false);
    }
    assert_memory_equal(first, again, (size_t)GVP * GC * 4);
    free(first), free(again), free(start);
    dfree(&p, gwte), dfree(&p, gwpe), dfree(&p, gout), dfree(&p, gdout), dfree(&p, gdwte), dfree(&p, gdwpe);
    dfree(&p, gids);
    free(wte), free(wpe), free(dout), free(dwte), free(dwpe), free(out);
    pair_close(&p);
}

/* LayerNorm forward (alone and fused with the residual, in place as the
 * stage calls it) and backward; x offset from 0 by 5 so that a one-pass
 * variance would show its cancellation */
static void test_gpt_layernorm(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    const int N = GB * GT;
    const size_t NC = (size_t)N * GC;
    float *x = gen_vec(NC, 2.0f), *a = gen_vec(NC, 1.0f), *w = gen_vec(GC, 1.0f), *b = gen_vec(GC, 0.5f);
    for (size_t i = 0; i < NC; i++) x[i] += 5.0f;
    float *dout = gen_vec(NC, 1.0f), *dx = gen_vec(NC, 0.1f), *dw = gen_vec(GC, 0.1f), *db = gen_vec(GC, 0.1f);
    float *out = calloc(NC, 4), *mean = calloc(N, 4), *rstd = calloc(N, 4);
    float *gx = dput_act(&p, x, NC), *ga = dput_act(&p, a, NC), *gw = dput(&p, w, GC), *gb = dput(&p, b, GC);
    float *gdout = dput_act(&p, dout, NC), *gdx = dput_act(&p, dx, NC), *gdw = dput(&p, dw, GC);
    float *gdb = dput(&p, db, GC), *gout = dput_act(&p, out, NC), *gmean = dput(&p, mean, N);
    float *grstd = dput(&p, rstd, N);

    CHECK(cpu_tr()->layernorm_fwd(p.cpu, out, mean, rstd, x, w, b, N, GC));
    CHECK(gpu_tr()->layernorm_fwd(p.gpu, gout, gmean, grstd, gx, gw, gb, N, GC));
    expect_act(&p, "layernorm out", gout, out, NC);
    expect_dev(&p, "layernorm mean", gmean, mean, N);
    expect_dev(&p, "layernorm rstd", grstd, rstd, N);
    CHECK(cpu_tr()->layernorm_bwd(p.cpu, dx, dw, db, dout, x, w, mean, rstd, N, GC));
    CHECK(gpu_tr()->layernorm_bwd(p.gpu, gdx, gdw, gdb, gdout, gx, gw, gmean, grstd, N, GC));
    expect_act(&p, "layernorm dx", gdx, dx, NC);
    expect_dev(&p, "layernorm dw", gdw, dw, GC);
    expect_dev(&p, "layernorm db", gdb, db, GC);

    /* res = res + a in place, then its LayerNorm (the stage's call) */
    assert_non_null(gpu_tr()->residual_layernorm_fwd);
    float *res = malloc(NC * 4);
    memcpy(res, x, NC * 4);
    CHECK(cpu_tr()->residual_fwd(p.cpu, res, res, a, NC));
    CHECK(cpu_tr()->layernorm_fwd(p.cpu, out, mean, rstd, res, w, b, N, GC));
    CHECK(gpu_tr()->residual_layernorm_fwd(p.gpu, gx, gout, gmean, grstd, gx, ga, gw, gb, N, GC));
    expect_act(&p, "residual+layernorm res", gx, res, NC);
    expect_act(&p, "residual+layernorm out", gout, out, NC);
    expect_dev(&p, "residual+layernorm rstd", grstd, rstd, N);
    /* and the residual add alone, out of place */
    float *sum = malloc(NC * 4);
    CHECK(cpu_tr()->residual_fwd(p.cpu, sum, res, a, NC));
    CHECK(gpu_tr()->residual_fwd(p.gpu, gout, gx, ga, NC));
    expect_act(&p, "residual out", gout, sum, NC);
    free(res), free(sum);
    dfree(&p, gx), dfree(&p, ga), dfree(&p, gw), dfree(&p, gb), dfree(&p, gdout), dfree(&p, gdx), dfree(&p, gdw);
    dfree(&p, gdb), dfree(&p, gout), dfree(&p, gmean), dfree(&p, grstd);
    free(x), free(a), free(w), free(b), free(dout), free(dx), free(dw), free(db), free(out), free(mean), free(rstd);
    pair_close(&p);
}

static void attention_case(int B, int T, int C, int NH)
{
    pair p;
    pair_open(&p);
    const size_t NC = (size_t)B * T * C, att_n = (size_t)B * NH * T * T;
    float *qkv = gen_vec(3 * NC, 1.0f), *dout = gen_vec(NC, 1.0f), *dqkv = gen_vec(3 * NC, 0.1f);
    float *out = calloc(NC, 4), *att = calloc(att_n, 4);
    float *scratch = calloc(cpu_tr()->attention_scratch(T) + 1, 4);
    float *gqkv = dput_act(&p, qkv, 3 * NC), *gdout = dput_act(&p, dout, NC), *gdqkv = dput_act(&p, dqkv, 3 * NC);
    float *gout = dput_act(&p, out, NC), *gatt = dput_act(&p, att, att_n), *gscratch = NULL;
    size_t gs = gpu_tr()->attention_scratch(T);
    if (gs) CHECK(pb_backend_cuda.alloc(p.gpu, gs * 4, (void **)&gscratch));
    char what[64];
    CHECK(cpu_tr()->attention_fwd(p.cpu, out, att, qkv, B, T, C, NH));
    CHECK(gpu_tr()->attention_fwd(p.gpu, gout, gatt, gqkv, B, T, C, NH));
    snprintf(what, sizeof what, "attention T%d NH%d out", T, NH);
    expect_act(&p, what, gout, out, NC);
    snprintf(what, sizeof what, "attention T%d NH%d att", T, NH);
    expect_act(&p, what, gatt, att, att_n);
    CHECK(cpu_tr()->attention_bwd(p.cpu, dqkv, scratch, dout, qkv, att, B, T, C, NH));
    CHECK(gpu_tr()->attention_bwd(p.gpu, gdqkv, gscratch, gdout, gqkv, gatt, B, T, C, NH));
    snprintf(what, sizeof what, "attention T%d NH%d dqkv", T, NH);
    expect_dev_tol(&p, what, gdqkv, dqkv, 3 * NC, true, 5e-2);
    dfree(&p, gqkv), dfree(&p, gdout), dfree(&p, gdqkv), dfree(&p, gout), dfree(&p, gatt), dfree(&p, gscratch);
    free(qkv), free(dout), free(dqkv), free(out), free(att), free(scratch);
    pair_close(&p);
}

static void test_gpt_attention(void **state)
{
    (void)state;
    attention_case(GB, GT, GC, GNH); /* hs 12, rows ending mid-warp */
    attention_case(3, 128, 128, 2);  /* hs 64 (GPT-2's), rows of 4 warps' width */
}

/* The fused classifier, out of place and in place; the padded logits hold
 * 1000, which any softmax that read them would be dominated by */
static void test_gpt_classifier(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    const int N = GB * GT;
    const size_t n = (size_t)N * GVP;
    float *z = gen_vec(n, 4.0f), *dz = calloc(n, 4);
    for (int r = 0; r < N; r++)
        for (int j = GV; j < GVP; j++) z[(size_t)r * GVP + j] = 1000.0f;
    int32_t tg[GB * GT];
    for (int i = 0; i < N; i++) tg[i] = (int32_t)(pb_rng_u64(pb_rng_key(16, GPT_TEST_STREAM, 998, 0), i) % GV);
    const float scale = 1.0f / (float)N;
    float loss_c = 0.25f, loss_g = 0.0f; /* the slot adds to what is there */
    float *gz = dput_act(&p, z, n), *gdz = NULL, *gloss = dput(&p, &(float){0.25f}, 1);
    CHECK(cpu_tr()->classifier(p.cpu, dz, z, tg, N, GV, GVP, scale, &loss_c));
    int32_t *gtg = dput_ids(&p, tg, N);
    CHECK(pb_backend_cuda.alloc(p.gpu, pb_backend_cuda.act_bytes(p.gpu, n), (void **)&gdz));
    CHECK(gpu_tr()->classifier(p.gpu, gdz, gz, gtg, N, GV, GVP, scale, gloss));
    gpu_get(&p, &loss_g, gloss, 1, false);
    expect_close("classifier loss", &loss_g, &loss_c, 1);
    expect_act(&p, "classifier dlogits", gdz, dz, n);
    float *got = malloc(n * 4);
    gpu_get(&p, got, gdz, n, true);
    for (int r = 0; r < N; r++)
        for (int j = GV; j < GVP; j++) assert_true(got[(size_t)r * GVP + j] == 0.0f);
    /* in place: the logits become their gradient */
    CHECK(gpu_tr()->classifier(p.gpu, gz, gz, gtg, N, GV, GVP, scale, gloss));
    expect_act(&p, "classifier in place", gz, dz, n);
    free(got);
    dfree(&p, gz), dfree(&p, gdz), dfree(&p, gloss), dfree(&p, gtg);
    free(z), free(dz);
    pair_close(&p);
}

#define GPT_OPS_TESTS                                                                                                  \
    cmocka_unit_test(test_gpt_encoder), cmocka_unit_test(test_gpt_layernorm), cmocka_unit_test(test_gpt_attention),  \
        cmocka_unit_test(test_gpt_classifier)

#endif /* PB_TEST_GPU_GPT_OPS_CHECKS_H */
