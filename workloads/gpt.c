/* The GPT workload: its model (tensors, blocks, FLOPs), initialisation,
 * data and loss. The stage (forward and backward over blocks) is in
 * gpt_stage.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gpt.h"
#include "rng.h"

/* Adds tensor `name` of `size` floats to block b at *off. */
static pb_tensor_desc *add_tensor(pb_model *m, int b, const char *name, size_t rows, size_t size, bool decay,
                                  size_t *off)
{
    pb_tensor_desc *t = &m->tensor[m->n_tensors++];
    *t = (pb_tensor_desc){.off = *off, .size = size, .block = b, .decay = decay, .rows = rows};
    snprintf(t->name, sizeof t->name, "%s", name);
    *off += size;
    return t;
}

static void close_block(pb_model *m, int b, int t0, size_t p_off, size_t off, double flops, size_t in, size_t out)
{
    m->block[b] = (pb_block_desc){.t0 = t0, .t1 = m->n_tensors, .p_off = p_off, .p_len = off - p_off,
                                  .flops = flops, .in_elems = in, .out_elems = out};
}

static pb_status gpt_describe(const pb_shape *s, pb_model *out)
{
    if (s->layers < 1 || s->layers > PB_MAX_BLOCKS - 2)
        return pb_usage_error("--layers %d is out of range for a gpt workload; allowed: 1 to %d", s->layers,
                              PB_MAX_BLOCKS - 2);
    if (s->d_model < 1 || s->heads < 1 || s->d_model % s->heads != 0)
        return pb_usage_error("--heads %d does not divide --d-model %d; allowed: a divisor of --d-model", s->heads,
                              s->d_model);
    if (s->seq < 1 || s->vocab < 2)
        return pb_usage_error("--seq %d --vocab %d: allowed: --seq >= 1, --vocab >= 2", s->seq, s->vocab);
    memset(out, 0, sizeof *out);
    out->shape = *s;
    out->block_noun = "block";
    const int L = s->layers;
    const size_t C = (size_t)s->d_model, T = (size_t)s->seq, Vp = (size_t)pb_gpt_padded_vocab(s->vocab);
    size_t off = 0, p0;
    char name[PB_TENSOR_NAME];

    /* block 0: the embeddings. FLOPs (6N per token, docs/workloads.md):
     * wpe's parameters here; wte's in the head, where its GEMM runs */
    p0 = off;
    add_tensor(out, 0, "wte.weight", Vp, Vp * C, true, &off);
    add_tensor(out, 0, "wpe.weight", T, T * C, true, &off);
    close_block(out, 0, 0, p0, off, 6.0 * (double)T * (double)(T * C), T, T * C);

    /* tensor parallel (Megatron): QKV column-parallel by heads (each of
     * q, k, v split), the attention and MLP output projections
     * row-parallel, the MLP's up projection column-parallel */
    enum { R = PB_TP_REPLICATED, COL = PB_TP_COLUMN, ROW = PB_TP_ROW };
    static const struct { const char *name; int rows, cols; bool decay; int tp, parts; } layer[PB_GPT_LAYER_TENSORS] = {
        {"ln_1.weight", 0, 1, false, R, 0},        {"ln_1.bias", 0, 1, false, R, 0},
        {"attn.c_attn.weight", 3, 1, true, COL, 3}, {"attn.c_attn.bias", 0, 3, false, COL, 3},
        {"attn.c_proj.weight", 1, 1, true, ROW, 0}, {"attn.c_proj.bias", 0, 1, false, R, 0},
        {"ln_2.weight", 0, 1, false, R, 0},        {"ln_2.bias", 0, 1, false, R, 0},
        {"mlp.c_fc.weight", 4, 1, true, COL, 0},    {"mlp.c_fc.bias", 0, 4, false, COL, 0},
        {"mlp.c_proj.weight", 1, 4, true, ROW, 0},  {"mlp.c_proj.bias", 0, 1, false, R, 0},
    };
    for (int l = 0; l < L; l++) {
        p0 = off;
        int t0 = out->n_tensors;
        for (int k = 0; k < PB_GPT_LAYER_TENSORS; k++) {
            /* weights [rows C, cols C]; vectors of cols C */
            size_t size = layer[k].rows ? (size_t)layer[k].rows * C * (size_t)layer[k].cols * C
                                        : (size_t)layer[k].cols * C;
            snprintf(name, sizeof name, "h.%d.%s", l, layer[k].name);
            pb_tensor_desc *t =
                add_tensor(out, 1 + l, name, layer[k].rows ? (size_t)layer[k].rows * C : 0, size, layer[k].decay, &off);
            t->tp = (pb_tp_split)layer[k].tp;
            t->tp_parts = layer[k].parts;
            /* a block's four weights: each gradient is one GEMM's output
             * (the tied lm_head's is summed into wte's, so it is not) */
            t->gemm_grad = layer[k].rows != 0;
        }
        double n = (double)(off - p0);
        /* 6 per parameter per token, and attention's two T x T GEMMs per
         * head: 12 T C per token (PaLM's appendix B, llm.c) */
        close_block(out, 1 + l, t0, p0, off, (double)T * (6.0 * n + 12.0 * (double)T * (double)C), T * C, T * C);
    }
    p0 = off;
    int t0 = out->n_tensors;
    add_tensor(out, L + 1, "ln_f.weight", 0, C, false, &off);
    add_tensor(out, L + 1, "ln_f.bias", 0, C, false, &off);
    add_tensor(out, L + 1, "lm_head.weight", Vp, Vp * C, true, &off);
    close_block(out, L + 1, t0, p0, off, 6.0 * (double)T * (double)(Vp * C + 2 * C), T * C, T * Vp);
    out->n_blocks = L + 2;
    out->n_params = off;
    out->tie_src = PB_GPT_WTE;
    out->tie_dst = out->n_tensors - 1;
    out->n_tied = Vp * C;
    out->seq = s->seq;
    out->input_elems = T;
    out->target_elems = T;
    memcpy(out->input_dtype, "<i4", 4);
    memcpy(out->target_dtype, "<i4", 4);
    out->input_is_act = false;
    out->data_table = (size_t)s->vocab * PB_GPT_FANOUT;
    out->max_width = Vp > 4 * C ? Vp : 4 * C;
    return PB_OK;
}

/* One rank's part over tp ranks: its heads (the residual stream between
 * blocks stays whole) */
static pb_status gpt_describe_tp(const pb_shape *s, int tp, pb_model *out)
{
    pb_status st = gpt_describe(s, out);
    if (st != PB_OK) return st;
    if (s->heads % tp != 0)
        return pb_usage_error("--heads %d is not divisible by --gpus %d; strategy tp splits attention heads across "
                              "ranks; allowed: a --gpus that divides --heads",
                              s->heads, tp);
    return pb_model_tp_local(out, tp, out);
}

float pb_gpt_normal(uint64_t key, uint64_t j)
{
    /* u1 in (0, 1] so the log is finite; the math in double, rounded once */
    double u1 = ((double)(pb_rng_u64(key, 2 * j) >> 40) + 1.0) * 0x1p-24;
    double u2 = (double)(pb_rng_u64(key, 2 * j + 1) >> 40) * 0x1p-24;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* PyTorch's GPT-2 rules (nanoGPT's _init_weights): weights N(0, 0.02), the
 * residual projections (c_proj) N(0, 0.02 / sqrt(2 L)), biases 0,
 * LayerNorm weight 1 and bias 0. The padded rows of wte stay 0 (no token
 * reads them; their logits never count); the head starts as wte's copy. */
static void gpt_init_params(const pb_model *m, uint64_t seed, float *params)
{
    const pb_shape *s = &m->shape;
    const double proj_std = 0.02 / sqrt(2.0 * (double)s->layers);
    memset(params, 0, m->n_params * sizeof *params);
    for (int t = 0; t < m->n_tensors; t++) {
        const pb_tensor_desc *d = &m->tensor[t];
        float *p = params + d->off;
        if (t == m->tie_dst) continue;
        size_t n = d->size;
        if (t == PB_GPT_WTE) n = (size_t)s->vocab * (size_t)s->d_model;
        const char *dot = strrchr(d->name, '.');
        bool ln = strstr(d->name, "ln_") != NULL;
        if (ln && strcmp(dot, ".weight") == 0) {
            for (size_t j = 0; j < n; j++) p[j] = 1.0f;
        } else if (!ln && strcmp(dot, ".weight") == 0) {
            double sd = strstr(d->name, "c_proj") ? proj_std : 0.02;
            uint64_t key = pb_rng_key(seed, PB_STREAM_GPT_INIT, (uint64_t)t, 0);
            for (size_t j = 0; j < n; j++) p[j] = (float)(sd * (double)pb_gpt_normal(key, j));
        }
    }
    memcpy(params + m->tensor[m->tie_dst].off, params + m->tensor[m->tie_src].off, m->n_tied * sizeof *params);
}

void pb_gpt_table(int vocab, uint64_t seed, float *table)
{
    for (int v = 0; v < vocab; v++) {
        uint64_t key = pb_rng_key(seed, PB_STREAM_TOKEN_TABLE, (uint64_t)v, 0);
        for (int k = 0; k < PB_GPT_FANOUT; k++)
            table[(size_t)v * PB_GPT_FANOUT + (size_t)k] = (float)(pb_rng_u64(key, (uint64_t)k) % (uint64_t)vocab);
    }
}

/* Token 0 of a sequence: value 0 of its row modulo the vocabulary; token
 * t + 1: successor (value t + 1 modulo the fan-out) of token t. */
void pb_gpt_fill(int vocab, int seq, uint64_t seed, const float *table, int64_t step, int64_t first, int count,
                 int32_t *inputs, int32_t *targets)
{
    for (int r = 0; r < count; r++) {
        uint64_t key = pb_rng_key(seed, PB_STREAM_SEQUENCE, (uint64_t)step, (uint64_t)(first + r));
        int32_t *in = inputs + (size_t)r * (size_t)seq, *tg = targets + (size_t)r * (size_t)seq;
        int32_t tok = (int32_t)(pb_rng_u64(key, 0) % (uint64_t)vocab);
        for (int t = 0; t < seq; t++) {
            in[t] = tok;
            uint64_t k = pb_rng_u64(key, (uint64_t)t + 1) % PB_GPT_FANOUT;
            tok = (int32_t)table[(size_t)tok * PB_GPT_FANOUT + k];
            tg[t] = tok;
        }
    }
}

static void gpt_data_table(const pb_model *m, uint64_t seed, float *table)
{
    pb_gpt_table(m->shape.vocab, seed, table);
}

static void gpt_fill(const pb_model *m, uint64_t seed, const float *table, int64_t step, int64_t first, int count,
                     void *inputs, void *targets)
{
    pb_gpt_fill(m->shape.vocab, m->shape.seq, seed, table, step, first, count, inputs, targets);
}

/* The mean over tokens: scale is 1 / the global batch of sequences. */
static pb_status gpt_loss(const pb_model *m, const pb_backend *be, pb_device *dev, int rows, const void *out,
                          const void *targets, float scale, float *loss_sum, void *d_out)
{
    const pb_shape *s = &m->shape;
    return be->transformer->classifier(dev, d_out, out, targets, rows * s->seq, s->vocab,
                                       pb_gpt_padded_vocab(s->vocab), scale / (float)s->seq, loss_sum);
}

/* The step's GEMMs alone, as the step calls them: the weight GEMMs as
 * Linear layers over rows * seq tokens (QKV, attention projection, MLP up
 * and down per block; the head), through the backend's reference, plus
 * attention's own T x T GEMMs (per head, 2 forward and 4 backward per
 * layer) where the backend can time them (attention_gemms_ms): what the
 * calibration's gemm_ms and `make bench-cpu`'s ratio divide by. */
static pb_status gpt_gemm_reference(const pb_model *m, const pb_backend *be, pb_device *dev, int rows, float dw_beta,
                                    int reps, double *ms)
{
    int in[PB_MAX_BLOCKS * 4], outs[PB_MAX_BLOCKS * 4], n = 0;
    const pb_shape *s = &m->shape;
    const int C = s->d_model;
    for (int l = 0; l < s->layers && n + 5 <= PB_MAX_BLOCKS * 4; l++) {
        const int sh[4][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}};
        for (int k = 0; k < 4; k++, n++) {
            in[n] = sh[k][0];
            outs[n] = sh[k][1];
        }
    }
    in[n] = C;
    outs[n++] = pb_gpt_padded_vocab(s->vocab);
    double weights_ms = 0.0, attention_ms = 0.0;
    /* first_dx: the step's first QKV projection passes its input gradient
     * down to the embeddings, so that GEMM is the step's too */
    pb_status st = be->gemm_reference(dev, n, in, outs, rows * s->seq, dw_beta, true, reps, &weights_ms);
    if (st != PB_OK) return st;
    if (be->transformer && be->transformer->attention_gemms_ms) {
        st = be->transformer->attention_gemms_ms(dev, s->layers, rows, s->seq, C, s->heads, reps, &attention_ms);
        if (st != PB_OK) return st;
    }
    *ms = weights_ms + attention_ms;
    return PB_OK;
}

static void gpt_shape_str(const pb_shape *s, char *buf, size_t len)
{
    snprintf(buf, len, "d=%d layers=%d heads=%d seq=%d vocab=%d", s->d_model, s->layers, s->heads, s->seq, s->vocab);
}

const pb_workload_ops pb_workload_gpt = {
    .kind = "gpt",
    .transformer = true,
    .shape_str = gpt_shape_str,
    .describe = gpt_describe,
    .init_params = gpt_init_params,
    .data_table = gpt_data_table,
    .fill = gpt_fill,
    .loss = gpt_loss,
    .stage_create = pb_gpt_stage_create,
    .stage_destroy = pb_gpt_stage_destroy,
    .stage_buf = pb_gpt_stage_buf,
    .stage_bind = pb_gpt_stage_bind,
    .forward = pb_gpt_forward,
    .backward = pb_gpt_backward,
    .stage_bytes = pb_gpt_stage_bytes,
    .gemm_reference = gpt_gemm_reference,
    .describe_tp = gpt_describe_tp,
};
