/* The GPT workload (workloads/gpt*.c): its model as the interface declares
 * it (GPT-2's tensors and parameter count, the tie, FLOPs 6N + 12 L T C per
 * token), its initialisation and data as docs/data.md specifies them (and
 * as tests/data_reference.py, written from that text alone, computes them),
 * and a whole step (forward, loss, backward through the cpu backend's
 * transformer ops) against an independent reference: a naive
 * double-precision GPT-2 written here, its loss and, by central
 * differences, its gradients. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <string.h>

#include "harness/registry.h"
#include "kernels/backend.h"
#include "workloads/gpt.h"

static const pb_shape *preset(const char *name)
{
    const pb_workload *w = pb_find_workload(name);
    assert_non_null(w);
    assert_ptr_equal(w->ops, &pb_workload_gpt);
    return &w->shape;
}

/* GPT-2's tensors under nanoGPT's names, blocks = embedding, L layers,
 * head; gpt2-124m has llm.c's 124,475,904 parameters (vocabulary padded to
 * 50304, the tied head counted once); FLOPs per token 6N + 12 L T C. */
static void test_presets(void **state)
{
    (void)state;
    static pb_model m;
    static const char *const names[] = {"gpt-xs", "gpt2-124m", "gpt2-350m", "gpt-1.3b", "gpt-custom"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const pb_shape *s = preset(names[i]);
        assert_int_equal(pb_model_describe(&pb_workload_gpt, s, &m), PB_OK);
        assert_int_equal(m.n_blocks, s->layers + 2);
        assert_int_equal(m.n_tensors, 2 + 12 * s->layers + 3);
        assert_string_equal(m.tensor[m.tie_src].name, "wte.weight");
        assert_string_equal(m.tensor[m.tie_dst].name, "lm_head.weight");
        assert_int_equal(m.n_tied, (size_t)pb_gpt_padded_vocab(s->vocab) * (size_t)s->d_model);
        double N = (double)pb_model_params(&m), T = s->seq, C = s->d_model, L = s->layers;
        double per_token = pb_model_flops(&m, 0, m.n_blocks, 1.0) / T;
        assert_true(fabs(per_token / (6.0 * N + 12.0 * L * T * C) - 1.0) < 1e-12);
        assert_string_equal(m.input_dtype, "<i4");
        assert_int_equal(m.input_elems, (size_t)s->seq);
        assert_int_equal(m.block[m.n_blocks - 1].out_elems, (size_t)s->seq * (size_t)pb_gpt_padded_vocab(s->vocab));
    }
    assert_int_equal(pb_model_describe(&pb_workload_gpt, preset("gpt2-124m"), &m), PB_OK);
    assert_int_equal(pb_model_params(&m), 124475904);
    assert_string_equal(m.tensor[pb_gpt_layer_t0(11) + PB_GPT_FCPROJ_W].name, "h.11.mlp.c_proj.weight");
    assert_int_equal(m.tensor[pb_gpt_layer_t0(0) + PB_GPT_QKV_W].rows, 3 * 768);
    assert_int_equal(pb_model_describe(&pb_workload_gpt, preset("gpt2-350m"), &m), PB_OK);
    assert_int_equal(pb_model_params(&m), 354871296); /* nanoGPT's 353.77M + padding 47 x 1024 */

    pb_shape bad = *preset("gpt-xs");
    bad.heads = 5;
    assert_int_equal(pb_model_describe(&pb_workload_gpt, &bad, &m), PB_ERR_USAGE);
    assert_non_null(strstr(pb_error_message(), "--heads 5 does not divide --d-model 64"));
    pb_error_clear();
}

static double mean_of(const float *p, size_t n, double *sd)
{
    double s = 0.0, s2 = 0.0;
    for (size_t i = 0; i < n; i++) s += p[i], s2 += (double)p[i] * p[i];
    double mu = s / (double)n;
    *sd = sqrt(s2 / (double)n - mu * mu);
    return mu;
}

/* nanoGPT's GPT-2 init: N(0, 0.02), c_proj N(0, 0.02 / sqrt(2 L)), biases
 * 0, LayerNorm 1 and 0; the padded rows of wte 0; the head wte's copy. */
static void test_init_rules(void **state)
{
    (void)state;
    static pb_model m;
    pb_shape s = *preset("gpt-xs");
    s.vocab = 200; /* padded to 256: 56 rows that no token reads */
    s.layers = 3;
    assert_int_equal(pb_model_describe(&pb_workload_gpt, &s, &m), PB_OK);
    float *p = malloc(m.n_params * sizeof *p);
    assert_non_null(p);
    m.ops->init_params(&m, 99, p);
    for (int t = 0; t < m.n_tensors; t++) {
        const pb_tensor_desc *d = &m.tensor[t];
        const float *x = p + d->off;
        bool ln = strstr(d->name, "ln_") != NULL, weight = strstr(d->name, ".weight") != NULL;
        if (t == m.tie_dst) {
            assert_memory_equal(x, p + m.tensor[m.tie_src].off, d->size * sizeof *x);
        } else if (ln || !weight) {
            for (size_t i = 0; i < d->size; i++) assert_true(x[i] == (ln && weight ? 1.0f : 0.0f));
        } else {
            size_t n = t == PB_GPT_WTE ? (size_t)s.vocab * (size_t)s.d_model : d->size;
            double sd, mu = mean_of(x, n, &sd);
            double want = strstr(d->name, "c_proj") ? 0.02 / sqrt(6.0) : 0.02;
            if (fabs(sd / want - 1.0) > 0.05) print_message("%s: sd %g, want %g\n", d->name, sd, want);
            assert_true(fabs(sd / want - 1.0) < 0.05);
            assert_true(fabs(mu) < 5.0 * want / sqrt((double)n));
            for (size_t i = n; i < d->size; i++) assert_true(x[i] == 0.0f);
        }
    }
    free(p);
}

/* Each sequence walks the table: target t is input t + 1, every step a
 * successor of the token before; any rows filled alone equal the batch's */
static void test_data(void **state)
{
    (void)state;
    const int V = 256, T = 32, B = 8;
    float table[256 * PB_GPT_FANOUT];
    int32_t in[8 * 32], tg[8 * 32], in2[2 * 32], tg2[2 * 32];
    pb_gpt_table(V, 5, table);
    pb_gpt_fill(V, T, 5, table, 3, 0, B, in, tg);
    pb_gpt_fill(V, T, 5, table, 3, 4, 2, in2, tg2);
    assert_memory_equal(in2, in + 4 * T, sizeof in2);
    assert_memory_equal(tg2, tg + 4 * T, sizeof tg2);
    int distinct_first = 0;
    for (int r = 0; r < B; r++) {
        distinct_first += r == 0 || in[r * T] != in[(r - 1) * T];
        for (int t = 0; t < T; t++) {
            int32_t a = in[r * T + t], b = tg[r * T + t];
            assert_true(a >= 0 && a < V && b >= 0 && b < V);
            if (t + 1 < T) assert_int_equal(in[r * T + t + 1], b);
            bool successor = false;
            for (int k = 0; k < PB_GPT_FANOUT; k++) successor |= (int32_t)table[a * PB_GPT_FANOUT + k] == b;
            assert_true(successor);
        }
    }
    assert_true(distinct_first > 1);
    /* another step, another batch */
    pb_gpt_fill(V, T, 5, table, 4, 0, 2, in2, tg2);
    assert_memory_not_equal(in2, in, sizeof in2);
}

static uint64_t fnv1a(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0xCBF29CE484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ULL;
    return h;
}

/* What tests/data_reference.py --gpt prints, computed by the library */
static void library_reference(char *out, size_t len)
{
    static pb_model m;
    const pb_shape *s = preset("gpt-xs");
    assert_int_equal(pb_model_describe(&pb_workload_gpt, s, &m), PB_OK);
    float *table = malloc(m.data_table * sizeof *table), *p = malloc(m.n_params * sizeof *p);
    int32_t *in = malloc((size_t)s->batch * (size_t)s->seq * 4), *tg = malloc((size_t)s->batch * (size_t)s->seq * 4);
    assert_true(table && p && in && tg);
    m.ops->data_table(&m, 1234, table);
    m.ops->fill(&m, 1234, table, 0, 0, s->batch, in, tg);
    m.ops->init_params(&m, 1234, p);
    size_t nb = (size_t)s->batch * (size_t)s->seq * 4;
    snprintf(out, len,
             "table_0 %d %d %d %d\nseq0 %d %d %d %d %d %d %d %d\nfnv_batch0_inputs 0x%016llx\n"
             "fnv_batch0_targets 0x%016llx\nn_params %zu\nfnv_params_init 0x%016llx\n",
             (int)table[0], (int)table[1], (int)table[2], (int)table[3], in[0], in[1], in[2], in[3], in[4], in[5],
             in[6], in[7], (unsigned long long)fnv1a(in, nb), (unsigned long long)fnv1a(tg, nb), m.n_params,
             (unsigned long long)fnv1a(p, m.n_params * sizeof *p));
    free(table), free(p), free(in), free(tg);
}

/* The generator from its specification: pinned values (seed 1234, gpt-xs),
 * and, where python3 exists, the pure-Python reference's own output. */
static void test_reference_script(void **state)
{
    (void)state;
    char got[1024];
    library_reference(got, sizeof got);
    static const char want[] = "table_0 67 227 155 252\n"
                               "seq0 58 117 18 16 117 19 54 33\n"
                               "fnv_batch0_inputs 0x17db92f845f64b6f\n"
                               "fnv_batch0_targets 0x04269436d4294260\n"
                               "n_params 134912\n"
                               "fnv_params_init 0xc4c6b40d8eb585ca\n";
    assert_string_equal(got, want);
    if (system("command -v python3 >/dev/null 2>&1") != 0) {
        print_message("python3 not found: the pinned values only\n");
        return;
    }
    bench_result *r = malloc(sizeof *r);
    assert_non_null(r);
    run_argv_env(r, NULL, (char *const[]){"python3", "tests/data_reference.py", "--gpt", NULL});
    assert_int_equal(r->exit_code, 0);
    assert_string_equal(r->out, got);
    free(r);
}

/* --- a whole step against a naive GPT-2 --------------------------------- */

static const pb_shape SMALL = {.layers = 2, .batch = 2, .seq = 8, .heads = 2, .d_model = 16, .vocab = 50};

static void layernorm(const double *x, const double *w, const double *b, double *y, int C)
{
    double mu = 0.0, var = 0.0;
    for (int c = 0; c < C; c++) mu += x[c];
    mu /= C;
    for (int c = 0; c < C; c++) var += (x[c] - mu) * (x[c] - mu);
    var /= C;
    double rs = 1.0 / sqrt(var + 1e-5);
    for (int c = 0; c < C; c++) y[c] = (x[c] - mu) * rs * w[c] + b[c];
}

/* y[o] = b[o] + sum_i W[o, i] x[i] (W [out, in]); b may be NULL */
static void linear(const double *x, const double *w, const double *b, double *y, int in, int out)
{
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0.0;
        for (int i = 0; i < in; i++) s += w[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

/* The mean cross-entropy of the batch: GPT-2 written out in loops, in
 * double, from the tensors by name (the head reads lm_head.weight). */
static double naive_loss(const pb_model *m, const double *p, const int32_t *in, const int32_t *tg)
{
    const int T = SMALL.seq, C = SMALL.d_model, NH = SMALL.heads, hs = C / NH, V = SMALL.vocab;
    enum { TM = 8, CM = 16 };
    double x[TM][CM], ln[TM][CM], qkv[TM][3 * CM], a[TM][CM], h[TM][4 * CM], o[CM], logits[64];
    double loss = 0.0;
#define W(t) (p + m->tensor[t].off)
    for (int b = 0; b < SMALL.batch; b++) {
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                x[t][c] = W(PB_GPT_WTE)[(size_t)in[b * T + t] * C + c] + W(PB_GPT_WPE)[t * C + c];
        for (int l = 0; l < SMALL.layers; l++) {
            int t0 = pb_gpt_layer_t0(l);
            for (int t = 0; t < T; t++) {
                layernorm(x[t], W(t0 + PB_GPT_LN1_W), W(t0 + PB_GPT_LN1_B), ln[t], C);
                linear(ln[t], W(t0 + PB_GPT_QKV_W), W(t0 + PB_GPT_QKV_B), qkv[t], C, 3 * C);
            }
            for (int t = 0; t < T; t++)
                for (int hd = 0; hd < NH; hd++) {
                    double s[TM], mx = -1e300, z = 0.0;
                    for (int u = 0; u <= t; u++) {
                        s[u] = 0.0;
                        for (int i = 0; i < hs; i++) s[u] += qkv[t][hd * hs + i] * qkv[u][C + hd * hs + i];
                        s[u] /= sqrt((double)hs);
                        if (s[u] > mx) mx = s[u];
                    }
                    for (int u = 0; u <= t; u++) z += exp(s[u] - mx);
                    for (int i = 0; i < hs; i++) {
                        double v = 0.0;
                        for (int u = 0; u <= t; u++) v += exp(s[u] - mx) / z * qkv[u][2 * C + hd * hs + i];
                        a[t][hd * hs + i] = v;
                    }
                }
            for (int t = 0; t < T; t++) {
                linear(a[t], W(t0 + PB_GPT_PROJ_W), W(t0 + PB_GPT_PROJ_B), o, C, C);
                for (int c = 0; c < C; c++) x[t][c] += o[c];
                layernorm(x[t], W(t0 + PB_GPT_LN2_W), W(t0 + PB_GPT_LN2_B), ln[t], C);
                linear(ln[t], W(t0 + PB_GPT_FC_W), W(t0 + PB_GPT_FC_B), h[t], C, 4 * C);
                for (int i = 0; i < 4 * C; i++) {
                    double u = h[t][i];
                    h[t][i] = 0.5 * u * (1.0 + tanh(sqrt(2.0 / M_PI) * (u + 0.044715 * u * u * u)));
                }
                linear(h[t], W(t0 + PB_GPT_FCPROJ_W), W(t0 + PB_GPT_FCPROJ_B), o, 4 * C, C);
                for (int c = 0; c < C; c++) x[t][c] += o[c];
            }
        }
        int tf = m->block[m->n_blocks - 1].t0;
        for (int t = 0; t < T; t++) {
            layernorm(x[t], W(tf), W(tf + 1), ln[t], C);
            linear(ln[t], W(tf + 2), NULL, logits, C, V); /* the first V rows: no padding */
            double mx = -1e300, z = 0.0;
            for (int v = 0; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
            for (int v = 0; v < V; v++) z += exp(logits[v] - mx);
            loss += log(z) + mx - logits[tg[b * T + t]];
        }
    }
#undef W
    return loss / (SMALL.batch * T);
}

/* Forward, loss and backward of one stage over every block: the loss is the
 * naive one's, and each sampled gradient (the tied tensor's: both ends
 * summed) its central difference. Then the same in two stages split at
 * block 2 (what mp does), bit for bit. */
static void test_step_against_reference(void **state)
{
    (void)state;
    static pb_model m;
    assert_int_equal(pb_model_describe(&pb_workload_gpt, &SMALL, &m), PB_OK);
    pb_device *dev = NULL;
    pb_device_opts opts = {.precision = PB_FP32, .threads = 1};
    assert_int_equal(pb_backend_cpu.open(&opts, 0, &dev), PB_OK);
    const int B = SMALL.batch, T = SMALL.seq;
    size_t n = m.n_params;
    float *p = malloc(n * 4), *g = calloc(n, 4), *g2 = calloc(n, 4), *table = malloc(m.data_table * 4);
    double *pd = malloc(n * sizeof *pd);
    int32_t in[2 * 8], tg[2 * 8];
    assert_true(p && g && g2 && table && pd);
    m.ops->init_params(&m, 11, p);
    /* nonzero biases and LayerNorm parameters, so their gradients are
     * exercised away from the initial point */
    for (size_t i = 0; i < n; i++) p[i] += 0.01f * (float)sin((double)i);
    memcpy(p + m.tensor[m.tie_dst].off, p + m.tensor[m.tie_src].off, m.n_tied * 4);
    m.ops->data_table(&m, 11, table);
    m.ops->fill(&m, 11, table, 0, 0, B, in, tg);

    pb_stage *s = NULL;
    pb_stage_opts o = {.be = &pb_backend_cpu, .dev = dev, .b0 = 0, .b1 = m.n_blocks, .rows = B, .slots = 1};
    assert_int_equal(m.ops->stage_create(&m, &o, &s), PB_OK);
    pb_stage_params sp = {.params = p, .grads = g};
    memcpy(m.ops->stage_buf(s, PB_STAGE_IN, 0), in, sizeof in);
    float loss = 0.0f;
    assert_int_equal(m.ops->forward(s, &sp, 0, B, NULL), PB_OK);
    assert_int_equal(m.ops->loss(&m, &pb_backend_cpu, dev, B, m.ops->stage_buf(s, PB_STAGE_OUT, 0), tg,
                                 1.0f / (float)B, &loss, m.ops->stage_buf(s, PB_STAGE_DOUT, 0)),
                     PB_OK);
    assert_int_equal(m.ops->backward(s, &sp, 0, B, NULL, NULL), PB_OK);

    for (size_t i = 0; i < n; i++) pd[i] = p[i];
    double ref = naive_loss(&m, pd, in, tg);
    assert_true(fabs((double)loss - ref) < 1e-5 * fabs(ref));
    assert_true(ref > 3.0 && ref < 5.0); /* near log(50): a fresh model */

    /* a few entries of every tensor */
    size_t tied = m.tensor[m.tie_dst].off - m.tensor[m.tie_src].off;
    double worst = 0.0;
    for (int t = 0; t < m.n_tensors; t++) {
        if (t == m.tie_dst) continue;
        const pb_tensor_desc *d = &m.tensor[t];
        for (size_t k = 0; k < 4; k++) {
            size_t i = d->off + (k * 7919 + (size_t)t * 31) % d->size;
            /* a wte row of a token in the batch, for the embedding's part */
            if (t == PB_GPT_WTE && k < 2) i = d->off + (size_t)in[k * 5] * (size_t)SMALL.d_model + k;
            const double h = 1e-4;
            double keep = pd[i];
            pd[i] = keep + h;
            if (t == m.tie_src) pd[i + tied] = pd[i];
            double up = naive_loss(&m, pd, in, tg);
            pd[i] = keep - h;
            if (t == m.tie_src) pd[i + tied] = pd[i];
            double down = naive_loss(&m, pd, in, tg);
            pd[i] = keep;
            if (t == m.tie_src) pd[i + tied] = keep;
            double fd = (up - down) / (2.0 * h), got = g[i] + (t == m.tie_src ? g[i + tied] : 0.0f);
            double err = fabs(got - fd) / (fabs(fd) + 1e-3);
            if (err > 1e-3) print_message("%s[%zu]: %g, differences %g\n", d->name, i - d->off, got, fd);
            assert_true(err <= 1e-3);
            worst = err > worst ? err : worst;
        }
    }
    print_message("worst relative gradient error %.2e over %d tensors\n", worst, m.n_tensors - 1);

    /* two stages, [0, 2) and [2, L + 2) */
    pb_stage *a = NULL, *b = NULL;
    pb_stage_opts oa = o, ob = o;
    oa.b1 = ob.b0 = 2;
    assert_int_equal(m.ops->stage_create(&m, &oa, &a), PB_OK);
    assert_int_equal(m.ops->stage_create(&m, &ob, &b), PB_OK);
    size_t off_b = m.block[2].p_off, mid = (size_t)B * m.block[1].out_elems * 4;
    pb_stage_params pa = {.params = p, .grads = g2}, pbp = {.params = p + off_b, .grads = g2 + off_b};
    memcpy(m.ops->stage_buf(a, PB_STAGE_IN, 0), in, sizeof in);
    assert_int_equal(m.ops->forward(a, &pa, 0, B, NULL), PB_OK);
    memcpy(m.ops->stage_buf(b, PB_STAGE_IN, 0), m.ops->stage_buf(a, PB_STAGE_OUT, 0), mid);
    assert_int_equal(m.ops->forward(b, &pbp, 0, B, NULL), PB_OK);
    float loss2 = 0.0f;
    assert_int_equal(m.ops->loss(&m, &pb_backend_cpu, dev, B, m.ops->stage_buf(b, PB_STAGE_OUT, 0), tg,
                                 1.0f / (float)B, &loss2, m.ops->stage_buf(b, PB_STAGE_DOUT, 0)),
                     PB_OK);
    assert_true(loss2 == loss);
    void *back = NULL;
    assert_int_equal(m.ops->backward(b, &pbp, 0, B, &back, NULL), PB_OK);
    assert_non_null(back);
    memcpy(m.ops->stage_buf(a, PB_STAGE_DOUT, 0), back, mid);
    assert_int_equal(m.ops->backward(a, &pa, 0, B, NULL, NULL), PB_OK);
    assert_memory_equal(g, g2, n * 4);
    (void)T;

    m.ops->stage_destroy(s);
    m.ops->stage_destroy(a);
    m.ops->stage_destroy(b);
    pb_backend_cpu.close(dev);
    free(p), free(g), free(g2), free(table), free(pd);
}

/* One forward, loss and backward of the whole model on backend be */
static float gpt_step(const pb_model *m, const pb_backend *be, pb_device *dev, const pb_stage_params *sp,
                      const int32_t *in, const int32_t *tg, int B)
{
    pb_stage *s = NULL;
    pb_stage_opts o = {.be = be, .dev = dev, .b0 = 0, .b1 = m->n_blocks, .rows = B, .slots = 1};
    assert_int_equal(m->ops->stage_create(m, &o, &s), PB_OK);
    memcpy(m->ops->stage_buf(s, PB_STAGE_IN, 0), in, (size_t)B * (size_t)m->seq * sizeof *in);
    float loss = 0.0f;
    assert_int_equal(m->ops->forward(s, sp, 0, B, NULL), PB_OK);
    assert_int_equal(m->ops->loss(m, be, dev, B, m->ops->stage_buf(s, PB_STAGE_OUT, 0), tg, 1.0f / (float)B, &loss,
                                  m->ops->stage_buf(s, PB_STAGE_DOUT, 0)),
                     PB_OK);
    assert_int_equal(m->ops->backward(s, sp, 0, B, NULL, NULL), PB_OK);
    m->ops->stage_destroy(s);
    return loss;
}

/* issue 16's CPU step: (a) with SGD's momentum in the weight GEMMs (beta
 * != 0, as single asks), a block's four weights get acc = beta acc + their
 * gradient and their gradients are neither zeroed nor written, every other
 * tensor's gradient is as without it, and acc is left alone there; (b) a
 * backend without gemm_residual_fwd (the residual added by residual_fwd
 * after the GEMM) computes the same step. */
static void test_momentum_and_residual_paths(void **state)
{
    (void)state;
    static pb_model m;
    const pb_shape *sh = preset("gpt-xs");
    assert_int_equal(pb_model_describe(&pb_workload_gpt, sh, &m), PB_OK);
    int n_gemm = 0;
    for (int t = 0; t < m.n_tensors; t++) {
        const char *name = m.tensor[t].name;
        bool weight = strstr(name, "attn.c_attn.weight") || strstr(name, "attn.c_proj.weight") ||
                      strstr(name, "mlp.c_fc.weight") || strstr(name, "mlp.c_proj.weight");
        assert_int_equal(m.tensor[t].gemm_grad, weight);
        n_gemm += weight;
    }
    assert_int_equal(n_gemm, 4 * sh->layers);
    pb_device *dev = NULL;
    pb_device_opts opts = {.precision = PB_FP32, .threads = 1};
    assert_int_equal(pb_backend_cpu.open(&opts, 0, &dev), PB_OK);
    const int B = 2;
    size_t n = m.n_params;
    float *p = malloc(n * 4), *g = calloc(n, 4), *g2 = malloc(n * 4), *g3 = calloc(n, 4), *m0 = malloc(n * 4),
          *acc = malloc(n * 4), *table = malloc(m.data_table * 4);
    int32_t *in = malloc((size_t)B * (size_t)m.seq * 4), *tg = malloc((size_t)B * (size_t)m.seq * 4);
    assert_true(p && g && g2 && g3 && m0 && acc && table && in && tg);
    m.ops->init_params(&m, 5, p);
    /* nonzero biases, so that where the residual's bias is added shows */
    for (size_t i = 0; i < n; i++) p[i] += 0.01f * (float)sin((double)i);
    memcpy(p + m.tensor[m.tie_dst].off, p + m.tensor[m.tie_src].off, m.n_tied * 4);
    m.ops->data_table(&m, 5, table);
    m.ops->fill(&m, 5, table, 0, 0, B, in, tg);
    for (size_t i = 0; i < n; i++) {
        m0[i] = 0.001f * (float)cos((double)i);
        g2[i] = NAN; /* never written where the momentum takes the gradient */
    }
    memcpy(acc, m0, n * 4);

    pb_stage_params plain = {.params = p, .grads = g};
    float loss = gpt_step(&m, &pb_backend_cpu, dev, &plain, in, tg, B);
    const float beta = 0.9f;
    pb_stage_params fused = {.params = p, .grads = g2, .acc = acc, .beta = beta};
    float loss2 = gpt_step(&m, &pb_backend_cpu, dev, &fused, in, tg, B);
    assert_true(loss2 == loss);
    for (int t = 0; t < m.n_tensors; t++) {
        const pb_tensor_desc *d = &m.tensor[t];
        for (size_t i = d->off; i < d->off + d->size; i++) {
            if (d->gemm_grad) {
                float want = beta * m0[i] + g[i];
                if (!(fabsf(acc[i] - want) <= 1e-6f * (fabsf(want) + 1e-3f)) || !isnan(g2[i]))
                    fail_msg("%s[%zu]: acc %g, want %g; grad %g (want untouched)", d->name, i - d->off, acc[i],
                             want, g2[i]);
            } else if (g2[i] != g[i] || acc[i] != m0[i]) {
                fail_msg("%s[%zu]: grad %g, want %g; acc %g, want it untouched", d->name, i - d->off, g2[i], g[i],
                         acc[i]);
            }
        }
    }

    /* (b) the stage's path for a backend without the fused residual */
    pb_backend be = pb_backend_cpu;
    pb_transformer_ops tr = *pb_backend_cpu.transformer;
    assert_non_null(tr.gemm_residual_fwd);
    tr.gemm_residual_fwd = NULL;
    be.transformer = &tr;
    pb_stage_params apart = {.params = p, .grads = g3};
    float loss3 = gpt_step(&m, &be, dev, &apart, in, tg, B);
    assert_true(fabsf(loss3 - loss) <= 1e-6f * loss);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)g3[i] - (double)g[i]) / (fabs((double)g[i]) + 1e-4);
        worst = e > worst ? e : worst;
    }
    print_message("residual added apart: loss %.7g vs %.7g, worst relative gradient difference %.2e\n", loss3, loss,
                  worst);
    assert_true(worst < 1e-3);
    pb_backend_cpu.close(dev);
    free(p), free(g), free(g2), free(g3), free(m0), free(acc), free(table), free(in), free(tg);
}

/* The memory plan's figure for a stage (stage_bytes) is what stage_create
 * allocates: whole model, a middle range, the head alone, bound or not */
static void test_stage_bytes(void **state)
{
    (void)state;
    static pb_model m;
    assert_int_equal(pb_model_describe(&pb_workload_gpt, &SMALL, &m), PB_OK);
    const int ranges[][2] = {{0, 4}, {1, 3}, {3, 4}, {0, 1}};
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++)
        for (int bound = 0; bound < 2; bound++) {
            pb_device *dev = NULL;
            pb_device_opts opts = {.precision = PB_FP32, .threads = 1};
            assert_int_equal(pb_backend_cpu.open(&opts, 0, &dev), PB_OK);
            pb_stage *s = NULL;
            pb_stage_opts o = {.be = &pb_backend_cpu, .dev = dev, .b0 = ranges[i][0], .b1 = ranges[i][1], .rows = 3,
                               .slots = 2, .bind_in = bound, .bind_out = bound};
            double before = pb_backend_cpu.peak_mem_mb(dev);
            assert_int_equal(m.ops->stage_create(&m, &o, &s), PB_OK);
            double got = (pb_backend_cpu.peak_mem_mb(dev) - before) * 1048576.0;
            double plan = m.ops->stage_bytes(&m, o.b0, o.b1, 3, 2, 4.0, bound);
            if (fabs(got - plan) > 0.01 * plan)
                print_message("blocks [%d, %d) bound %d: allocated %.0f, planned %.0f\n", o.b0, o.b1, bound, got, plan);
            assert_true(fabs(got - plan) <= 0.01 * plan);
            m.ops->stage_destroy(s);
            pb_backend_cpu.close(dev);
        }
}

/* The GEMM-alone reference (gemm_ms, bench-cpu's ratio) is the weight
 * GEMMs plus attention's own: the backend's attention part is asked for
 * every layer at the step's shape and added; the cpu backend's times
 * something. */
static int ref_layers, ref_m, att_args[5];
static bool ref_first_dx;
static pb_status fake_weights(pb_device *dev, int n_layers, const int *in, const int *out, int m, float dw_beta,
                              bool first_dx, int reps, double *ms)
{
    (void)dev, (void)in, (void)out, (void)dw_beta, (void)reps;
    ref_first_dx = first_dx;
    ref_layers = n_layers;
    ref_m = m;
    *ms = 1.0;
    return PB_OK;
}
static pb_status fake_attention(pb_device *dev, int layers, int B, int T, int C, int NH, int reps, double *ms)
{
    (void)dev, (void)reps;
    int a[5] = {layers, B, T, C, NH};
    memcpy(att_args, a, sizeof a);
    *ms = 0.25;
    return PB_OK;
}

static void test_gemm_reference_has_attention(void **state)
{
    (void)state;
    static pb_model m;
    const pb_shape *s = preset("gpt-xs");
    assert_int_equal(pb_model_describe(&pb_workload_gpt, s, &m), PB_OK);
    pb_device *dev = NULL;
    pb_device_opts opts = {.precision = PB_FP32, .threads = 1};
    assert_int_equal(pb_backend_cpu.open(&opts, 0, &dev), PB_OK);
    pb_backend be = pb_backend_cpu;
    pb_transformer_ops tr = *pb_backend_cpu.transformer;
    be.gemm_reference = fake_weights;
    tr.attention_gemms_ms = fake_attention;
    be.transformer = &tr;
    double ms = 0.0;
    assert_int_equal(m.ops->gemm_reference(&m, &be, dev, 3, 0.0f, 1, &ms), PB_OK);
    assert_true(ms == 1.25);
    assert_int_equal(ref_layers, 4 * s->layers + 1);
    assert_true(ref_first_dx); /* the first QKV's input gradient is the step's too */
    assert_int_equal(ref_m, 3 * s->seq);
    int want[5] = {s->layers, 3, s->seq, s->d_model, s->heads};
    assert_memory_equal(att_args, want, sizeof want);
    /* the cpu backend's own attention part */
    ms = 0.0;
    assert_non_null(pb_backend_cpu.transformer->attention_gemms_ms);
    assert_int_equal(pb_backend_cpu.transformer->attention_gemms_ms(dev, s->layers, 3, s->seq, s->d_model, s->heads,
                                                                    3, &ms),
                     PB_OK);
    assert_true(ms > 0.0 && ms < 1000.0);
    pb_backend_cpu.close(dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_init_rules),
        cmocka_unit_test(test_data),
        cmocka_unit_test(test_reference_script),
        cmocka_unit_test(test_step_against_reference),
        cmocka_unit_test(test_stage_bytes),
        cmocka_unit_test(test_gemm_reference_has_attention),
        cmocka_unit_test(test_momentum_and_residual_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
