/* The GPT's stage: blocks [b0, b1) on one device, their activations for
 * `slots` microbatches of `rows` sequences (slot j at rows [j*rows,
 * (j+1)*rows) of each buffer), through the backend's transformer ops
 * (kernels/backend.h, pb_transformer_ops: fp32 activations) and the
 * backend's GEMM with epilogues (gemm_fwd / gemm_bwd).
 *
 * Per slot and block it keeps what backward reads (llm.c's activations):
 * a transformer block its two LayerNorms' outputs and statistics, the
 * fused QKV, the attention probabilities and output, the residual after
 * attention, the MLP's pre-activation and GELU output; the head its
 * LayerNorm. Backward runs one slot at a time through shared gradient
 * buffers: D carries the residual stream's gradient down (the stage's
 * DOUT when it ends below the head, its input gradient at the end), each
 * LayerNorm's backward adding its branch into it in place (the ops
 * accumulate), so the stream is never copied.
 *
 * Tensor parallel (m->tp > 1, one rank's part of the model, Megatron's
 * split): the rank holds its heads' q, k and v rows of the QKV projection
 * and attends over its heads only, the attention output projection's and
 * the MLP's down projection's columns (row-parallel: their GEMMs give
 * partial sums, summed across ranks by the hooks' tp_allreduce before their
 * bias), and the MLP's up projection's rows (column-parallel); in backward
 * the input gradients of the QKV and up projections are summed before their
 * LayerNorm's backward. Four sums of N x C per block; embeddings,
 * LayerNorms and the head are whole on every rank.
 *
 * Sequence parallel (m->seq_parallel, Megatron's, Korthikanti et al. 2022):
 * between a row-parallel projection and the next column-parallel one (the
 * residual adds and LayerNorms) a rank keeps only its part of the slot's N
 * tokens, the r-th N/tp rows of [N, C] (contiguous: with Megatron's [s, b,
 * h] layout that is a split of the sequence, with this [b, s, h] one of the
 * flattened tokens; the per-token work is the same). Each row-parallel sum
 * becomes a reduce-scatter of N x C (forward) and its backward an
 * all-gather of dL/dy; each LayerNorm's output is all-gathered for the
 * column-parallel projection (forward; its whole output saved, so backward
 * gathers it no second time) and that projection's input gradient
 * reduce-scattered (backward). The LayerNorms' weight and bias gradients
 * then cover the rank's tokens only and are all-reduced over the tp ranks
 * (2C per LayerNorm); the row-parallel biases' come from the gathered
 * whole dL/dy, so they are whole already. The embedding's output is split
 * (its backward gathers dL/dx, so wte and wpe stay replicated), and the
 * head's input is all-gathered before the final LayerNorm (its backward
 * keeps the rank's part of the whole dL/dx, no sum: every rank computed it
 * whole), so the final LayerNorm, the LM head and the loss stay whole. */
#include <stdlib.h>
#include <string.h>

#include "gpt.h"

typedef struct gpt_stage {
    const pb_model *m;
    const pb_backend *be;
    const pb_transformer_ops *tr;
    pb_device *dev;
    int b0, b1, rows, slots;
    void *act[PB_MAX_BLOCKS + 1]; /* act[0]: input; act[i+1]: output of block b0+i */
    void *own_in, *own_out;
    float **save;                 /* [slots * nb]: a block's saved activations (NULL: none) */
    float *att;                   /* [slots * layers in the stage]: attention probabilities */
    float **att_of;               /* [slots * nb] into att */
    float *dlogits;               /* the head's DOUT, one slot (when the stage holds the head) */
    float *D, *dsmall, *dqkv, *dbig, *scratch; /* one slot's backward buffers */
    /* sequence parallel: D holds dL/d(every token) (the head's backward
     * wrote it whole), not only the rank's part: no gather needed */
    bool d_whole;
} gpt_stage;

/* Floats per token of a transformer block's saved activations, in order */
enum { S_LN1 = 0, S_QKV, S_ATTY, S_R2, S_LN2, S_FCH, S_FCHG, S_STATS, S_COUNT };

/* the tensor-parallel degree (1: the whole model) */
static int tp_of(const pb_model *m) { return m->tp > 1 ? m->tp : 1; }
/* sequence parallel, and what it divides the token rows by (1: off) */
static bool sp_of(const pb_model *m) { return m->seq_parallel && tp_of(m) > 1; }
static int sp_div(const pb_model *m) { return sp_of(m) ? tp_of(m) : 1; }

/* widths in C (whole) or C / tp (a rank's heads, its part of 4C; under
 * sequence parallel r2, the rank's N / tp tokens of C, takes as much) */
static size_t save_off(const pb_model *m, int which)
{
    static const int widths[S_COUNT] = {1, 3, 1, 1, 1, 4, 4, 0};
    static const bool split[S_COUNT] = {false, true, true, false, false, true, true, false};
    size_t C = (size_t)m->shape.d_model, Cl = C / (size_t)tp_of(m), off = 0;
    for (int i = 0; i < which; i++) off += (size_t)widths[i] * (split[i] || (i == S_R2 && sp_of(m)) ? Cl : C);
    return off;
}

static int n_layers_of(const pb_model *m, int b0, int b1)
{
    int n = 0;
    for (int b = b0; b < b1; b++) n += b > 0 && b < m->n_blocks - 1;
    return n;
}

static bool is_head(const pb_model *m, int b) { return b == m->n_blocks - 1; }
static bool is_layer(const pb_model *m, int b) { return b > 0 && b < m->n_blocks - 1; }

/* floats a block keeps for N tokens (4 statistics: two LayerNorms' mean
 * and rstd, of the rank's tokens under sequence parallel; the head's
 * LayerNorm output and statistics, and under sequence parallel its
 * gathered input) */
static size_t save_floats(const pb_model *m, int b, size_t N)
{
    size_t C = (size_t)m->shape.d_model;
    if (is_layer(m, b)) return N * save_off(m, S_STATS) + 4 * N / (size_t)sp_div(m);
    if (is_head(m, b)) return N * (C + 2 + (sp_of(m) ? C : 0));
    return 0;
}

static size_t att_per_seq(const pb_model *m)
{
    return (size_t)(m->shape.heads / tp_of(m)) * (size_t)m->shape.seq * (size_t)m->shape.seq;
}

/* the elements per sequence block b's output keeps: the residual stream's
 * rank's part under sequence parallel (the head's logits stay whole) */
static size_t out_elems_of(const pb_model *m, int b)
{
    return m->block[b].out_elems / (is_head(m, b) ? 1 : (size_t)sp_div(m));
}

/* bytes of boundary i's rows (i = 0: the stage's input) for n sequences */
static size_t boundary_bytes(const gpt_stage *g, int i, size_t n)
{
    const pb_model *m = g->m;
    int b = g->b0 + i;
    if (i == 0 && g->b0 == 0) return n * pb_model_input_bytes(m);
    return g->be->act_bytes(g->dev, n * out_elems_of(m, b - 1));
}

void pb_gpt_stage_destroy(pb_stage *stage)
{
    gpt_stage *g = (gpt_stage *)stage;
    if (!g) return;
    const pb_backend *be = g->be;
    int nb = g->b1 - g->b0;
    g->act[0] = g->own_in;
    g->act[nb] = g->own_out;
    for (int i = 0; i <= nb; i++) be->free(g->dev, g->act[i]);
    if (g->save)
        for (int i = 0; i < g->slots * nb; i++) be->free(g->dev, g->save[i]);
    free(g->save);
    free(g->att_of);
    be->free(g->dev, g->att);
    float *bufs[] = {g->dlogits, g->D, g->dsmall, g->dqkv, g->dbig, g->scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(g->dev, bufs[i]);
    free(g);
}

static pb_status alloc_f(gpt_stage *g, size_t floats, float **out)
{
    return g->be->alloc(g->dev, floats * sizeof(float), (void **)out);
}

pb_status pb_gpt_stage_create(const pb_model *m, const pb_stage_opts *o, pb_stage **out)
{
    pb_status st = PB_OK;
    gpt_stage *g = NULL;
    const pb_backend *be = o->be;
    PB_REQUIRE(be->transformer, PB_ERR_INTERNAL, "the %s backend has no transformer ops", be->name);
    /* the embedding splits the tokens and the head gathers them */
    PB_REQUIRE(!sp_of(m) || (o->b0 == 0 && o->b1 == m->n_blocks && m->shape.seq % tp_of(m) == 0), PB_ERR_INTERNAL,
               "gpt: sequence parallel over blocks [%d, %d) of %d, seq %d, tp %d", o->b0, o->b1, m->n_blocks,
               m->shape.seq, tp_of(m));
    PB_ALLOC(g, 1);
    g->m = m;
    g->be = be;
    g->tr = be->transformer;
    g->dev = o->dev;
    g->b0 = o->b0;
    g->b1 = o->b1;
    g->rows = o->rows;
    g->slots = o->slots;
    int nb = g->b1 - g->b0;
    size_t all = (size_t)o->rows * (size_t)o->slots, T = (size_t)m->shape.seq, C = (size_t)m->shape.d_model;
    size_t N = (size_t)o->rows * T; /* one slot's tokens */
    if (!o->bind_in) PB_TRY(be->alloc(g->dev, boundary_bytes(g, 0, all), &g->act[0]));
    for (int i = 1; i <= nb; i++)
        if (i < nb || !o->bind_out) PB_TRY(be->alloc(g->dev, boundary_bytes(g, i, all), &g->act[i]));
    g->own_in = g->act[0];
    g->own_out = g->act[nb];
    PB_ALLOC(g->save, (size_t)o->slots * (size_t)nb);
    PB_ALLOC(g->att_of, (size_t)o->slots * (size_t)nb);
    int nl = n_layers_of(m, g->b0, g->b1);
    if (nl) PB_TRY(alloc_f(g, all * (size_t)nl * att_per_seq(m), &g->att));
    for (int j = 0, a = 0; j < o->slots; j++)
        for (int b = g->b0; b < g->b1; b++) {
            size_t k = (size_t)j * (size_t)nb + (size_t)(b - g->b0);
            if (save_floats(m, b, N)) PB_TRY(alloc_f(g, save_floats(m, b, N), &g->save[k]));
            if (is_layer(m, b)) g->att_of[k] = g->att + (size_t)(a++) * (size_t)o->rows * att_per_seq(m);
        }
    if (is_head(m, g->b1 - 1)) PB_TRY(alloc_f(g, N * m->block[g->b1 - 1].out_elems / T, &g->dlogits));
    PB_TRY(alloc_f(g, N * C, &g->D));
    PB_TRY(alloc_f(g, N * C, &g->dsmall));
    if (nl) {
        PB_TRY(alloc_f(g, N * 3 * C / (size_t)tp_of(m), &g->dqkv));
        PB_TRY(alloc_f(g, N * 4 * C / (size_t)tp_of(m), &g->dbig));
        PB_TRY(alloc_f(g, g->tr->attention_scratch(m->shape.seq), &g->scratch));
    }
    *out = (pb_stage *)g;
    return PB_OK;
cleanup:
    pb_gpt_stage_destroy((pb_stage *)g);
    return st;
}

double pb_gpt_stage_bytes(const pb_model *m, int b0, int b1, double rows, int slots, double e, bool bound_io)
{
    const double T = m->shape.seq, C = m->shape.d_model;
    double per_seq = bound_io ? 0.0 : (b0 == 0 ? (double)pb_model_input_bytes(m) : e * (double)out_elems_of(m, b0 - 1));
    for (int b = b0; b < b1; b++) {
        if (b < b1 - 1 || !bound_io) per_seq += e * (double)out_elems_of(m, b);
        per_seq += 4.0 * (double)save_floats(m, b, (size_t)T) + (is_layer(m, b) ? 4.0 * (double)att_per_seq(m) : 0.0);
    }
    int nl = n_layers_of(m, b0, b1);
    double slot = 4.0 * rows * T * (2.0 * C + (nl ? 7.0 * C / tp_of(m) : 0.0)) +
                  (is_head(m, b1 - 1) ? 4.0 * rows * (double)m->block[b1 - 1].out_elems : 0.0) +
                  (nl ? 4.0 * T * T : 0.0);
    return rows * slots * per_seq + slot;
}

static void *rows_of(const gpt_stage *g, int i, int slot)
{
    return (char *)g->act[i] + boundary_bytes(g, i, (size_t)slot * (size_t)g->rows);
}

void *pb_gpt_stage_buf(pb_stage *stage, pb_stage_buf which, int slot)
{
    gpt_stage *g = (gpt_stage *)stage;
    switch (which) {
    case PB_STAGE_IN: return rows_of(g, 0, slot);
    case PB_STAGE_OUT: return rows_of(g, g->b1 - g->b0, slot);
    case PB_STAGE_DOUT: return is_head(g->m, g->b1 - 1) ? g->dlogits : g->D;
    }
    return NULL;
}

void pb_gpt_stage_bind(pb_stage *stage, pb_stage_buf which, void *base)
{
    gpt_stage *g = (gpt_stage *)stage;
    if (which == PB_STAGE_IN) g->act[0] = base ? base : g->own_in;
    if (which == PB_STAGE_OUT) g->act[g->b1 - g->b0] = base ? base : g->own_out;
}

/* Tensor t (of the model) in the stage's parameters / gradients */
static const float *P(const gpt_stage *g, const pb_stage_params *p, int t)
{
    const pb_tensor_desc *d = &g->m->tensor[t];
    if (p->blocks) return p->blocks[d->block].params + (d->off - g->m->block[d->block].p_off);
    return p->params + (d->off - g->m->block[g->b0].p_off);
}

static float *G(const gpt_stage *g, const pb_stage_params *p, int t)
{
    const pb_tensor_desc *d = &g->m->tensor[t];
    if (p->blocks) return p->blocks[d->block].grads + (d->off - g->m->block[d->block].p_off);
    return p->grads + (d->off - g->m->block[g->b0].p_off);
}

/* Tensor t's gradient goes into SGD's momentum (acc = beta acc + dW, the
 * weight GEMM's beta doing the scaling; pb_stage_params.acc): a gemm_grad
 * tensor in contiguous buffers when the strategy asks for it */
static bool into_acc(const gpt_stage *g, const pb_stage_params *p, int t)
{
    return !p->blocks && p->beta != 0.0f && g->m->tensor[t].gemm_grad;
}

/* where the weight-gradient GEMM of tensor t writes, and with what beta */
static float *W_G(const gpt_stage *g, const pb_stage_params *p, int t)
{
    if (!into_acc(g, p, t)) return G(g, p, t);
    return p->acc + (g->m->tensor[t].off - g->m->block[g->b0].p_off);
}

/* A transformer block's saved activations for one slot */
typedef struct layer_saves {
    float *ln1, *qkv, *atty, *r2, *ln2, *fch, *fchg, *mean1, *rstd1, *mean2, *rstd2, *att;
} layer_saves;

static layer_saves saves_of(const gpt_stage *g, int b, int slot)
{
    size_t k = (size_t)slot * (size_t)(g->b1 - g->b0) + (size_t)(b - g->b0);
    const pb_model *m = g->m;
    size_t N = (size_t)g->rows * (size_t)m->shape.seq;
    float *s = g->save[k];
    float *stats = s + N * save_off(m, S_STATS);
    size_t Nl = N / (size_t)sp_div(m); /* the tokens the LayerNorms see */
    return (layer_saves){
        .ln1 = s + N * save_off(m, S_LN1), .qkv = s + N * save_off(m, S_QKV), .atty = s + N * save_off(m, S_ATTY),
        .r2 = s + N * save_off(m, S_R2), .ln2 = s + N * save_off(m, S_LN2), .fch = s + N * save_off(m, S_FCH),
        .fchg = s + N * save_off(m, S_FCHG), .mean1 = stats, .rstd1 = stats + Nl, .mean2 = stats + 2 * Nl,
        .rstd2 = stats + 3 * Nl, .att = g->att_of[k],
    };
}

#define TRY(call)                                                                                                      \
    do {                                                                                                               \
        pb_status st_ = (call);                                                                                        \
        if (st_ != PB_OK) return st_;                                                                                  \
    } while (0)

/* y [N, out] = epi(x [N, in] W^T + b) with W, b tensors tw, tb of the model
 * (tb < 0: no bias, no epilogue); pre: GELU's saved pre-activation */
static pb_status linear_fwd(gpt_stage *g, const pb_stage_params *p, const float *x, int tw, int tb, float *y,
                            float *pre, pb_epilogue epi, int N, int in, int out)
{
    pb_gemm gm = {.m = N, .n = out, .k = in, .x = x, .w = P(g, p, tw), .bias = tb < 0 ? NULL : P(g, p, tb),
                  .y = y, .pre = pre, .epilogue = tb < 0 ? PB_EPI_NONE : epi};
    return g->be->gemm_fwd(g->dev, &gm);
}

/* Its backward, accumulating (beta 1) into dW like the other ops (or into
 * SGD's momentum, into_acc), writing dx (NULL: skipped; beta 0: every dx
 * here is a buffer of its own that nothing else adds to, so no clearing
 * pass first); db (tb >= 0) is written (once per backward: the gradients
 * were zeroed). gelu_pre: x came through a GELU of that pre-activation,
 * whose derivative is applied to dx, the layer below's bias gradient
 * (tensor gelu_tb) written beside it; that dx (the fc's dL/dpre) feeds
 * nothing else, so it is overwritten, which lets cuBLASLt fuse DGELU_BGRAD.
 * (Under tensor parallel that derivative stays fused: the GELU sits between
 * a column and a row projection, so the row projection's dx is this rank's
 * whole slice, not a partial sum.) */
static pb_status linear_bwd(gpt_stage *g, const pb_stage_params *p, const float *dy, const float *x, int tw, int tb,
                            float *dx, const float *gelu_pre, int gelu_tb, int N, int in, int out)
{
    pb_gemm_grad gg = {.m = N, .n = out, .k = in, .dy = dy, .x = x, .w = P(g, p, tw), .dw = W_G(g, p, tw),
                       .dw_beta = into_acc(g, p, tw) ? p->beta : 1.0f, .db = tb < 0 ? NULL : G(g, p, tb), .dx = dx, .dx_beta = 0.0f,
                       .dx_act = gelu_pre ? PB_DACT_GELU : PB_DACT_NONE, .x_pre = gelu_pre,
                       .dx_db = gelu_pre ? G(g, p, gelu_tb) : NULL};
    return g->be->gemm_bwd(g->dev, &gg);
}

/* y = x W^T + b + res, the residual added as the GEMM writes y (the
 * backend's gemm_residual_fwd) */
static pb_status linear_residual_fwd(gpt_stage *g, const pb_stage_params *p, const float *x, int tw, int tb,
                                     const float *res, float *y, int N, int in, int out)
{
    pb_gemm gm = {.m = N, .n = out, .k = in, .x = x, .w = P(g, p, tw), .bias = P(g, p, tb), .y = y,
                  .epilogue = PB_EPI_BIAS};
    return g->tr->gemm_residual_fwd(g->dev, &gm, res);
}

/* Where this rank's tokens start in a slot's whole [N, C] (0 but under
 * sequence parallel) */
static size_t part_of(const gpt_stage *g, const pb_stage_hooks *h, int N, int C)
{
    return sp_of(g->m) ? (size_t)h->tp_rank * (size_t)(N / tp_of(g->m)) * (size_t)C : 0;
}

/* A row-parallel projection's output: the ranks' partial sums summed, then
 * its bias (tensor parallel; nothing otherwise, the GEMM added the bias).
 * y == part, or under sequence parallel the rank's tokens of the sum, the
 * partial sums `part` reduce-scattered into it. */
static pb_status row_parallel_sum(gpt_stage *g, const pb_stage_hooks *h, const float *part, float *y,
                                  const float *bias, int N, int C)
{
    if (tp_of(g->m) == 1) return PB_OK;
    if (sp_of(g->m)) {
        TRY(h->tp_reduce_scatter(h->arg, part, y, (size_t)N * (size_t)C));
        N /= tp_of(g->m);
    } else {
        TRY(h->tp_allreduce(h->arg, y, (size_t)N * (size_t)C));
    }
    return g->be->bias_act(g->dev, N, C, y, bias, false);
}

/* A column-parallel projection's input gradient: the ranks' parts summed
 * (under sequence parallel reduce-scattered, the rank's tokens of the sum
 * left in place at dx + part_of) */
static pb_status column_parallel_sum(gpt_stage *g, const pb_stage_hooks *h, float *dx, int N, int C)
{
    if (tp_of(g->m) == 1) return PB_OK;
    size_t n = (size_t)N * (size_t)C;
    return sp_of(g->m) ? h->tp_reduce_scatter(h->arg, dx, dx + part_of(g, h, N, C), n)
                       : h->tp_allreduce(h->arg, dx, n);
}

/* Sequence parallel: every rank's tokens of buf [N, C] gathered (this
 * rank's at part_of already); nothing otherwise */
static pb_status gather_tokens(gpt_stage *g, const pb_stage_hooks *h, float *buf, int N, int C)
{
    return sp_of(g->m) ? h->tp_allgather(h->arg, buf, (size_t)N * (size_t)C) : PB_OK;
}

/* Sequence parallel: a LayerNorm's weight and bias gradients (adjacent, 2C
 * floats from tensor t) cover the rank's tokens only: summed over the ranks */
static pb_status layernorm_grads_sum(gpt_stage *g, const pb_stage_params *p, const pb_stage_hooks *h, int t)
{
    return sp_of(g->m) ? h->tp_allreduce(h->arg, G(g, p, t), 2 * (size_t)g->m->shape.d_model) : PB_OK;
}

static pb_status layer_fwd(gpt_stage *g, const pb_stage_params *p, const pb_stage_hooks *h, int b, int slot, int rows,
                           const float *x, float *y)
{
    const pb_transformer_ops *tr = g->tr;
    pb_device *d = g->dev;
    const int T = g->m->shape.seq, C = g->m->shape.d_model, N = rows * T;
    /* this rank's heads and their width (all of them without tensor parallel) */
    const int tp = tp_of(g->m), NH = g->m->shape.heads / tp, Cl = C / tp;
    const bool split = tp > 1;
    /* the tokens the residual stream and LayerNorms hold here: the rank's
     * part under sequence parallel (x, s.r2 and y are that part; the
     * LayerNorms' outputs land at its place in the whole, then gathered),
     * the row-parallel partial sums then in dsmall before their scatter */
    const int Nl = N / sp_div(g->m);
    const size_t part = part_of(g, h, N, C);
    const int t0 = pb_gpt_layer_t0(b - 1);
    layer_saves s = saves_of(g, b, slot);
    TRY(tr->layernorm_fwd(d, s.ln1 + part, s.mean1, s.rstd1, x, P(g, p, t0 + PB_GPT_LN1_W),
                          P(g, p, t0 + PB_GPT_LN1_B), Nl, C));
    TRY(gather_tokens(g, h, s.ln1, N, C));
    TRY(linear_fwd(g, p, s.ln1, t0 + PB_GPT_QKV_W, t0 + PB_GPT_QKV_B, s.qkv, NULL, PB_EPI_BIAS, N, C, 3 * Cl));
    TRY(tr->attention_fwd(d, s.atty, s.att, s.qkv, rows, T, Cl, NH));
    /* the residual stream written once by each projection's GEMM where the
     * backend can (not under tensor parallel, sequence parallel or not:
     * there the projections give partial sums, to which the bias and the
     * residual are added once summed, or scattered to the rank's tokens) */
    const bool fuse_res = !split && tr->gemm_residual_fwd;
    float *sum_in = sp_of(g->m) ? g->dsmall : s.r2;
    if (fuse_res) {
        TRY(linear_residual_fwd(g, p, s.atty, t0 + PB_GPT_PROJ_W, t0 + PB_GPT_PROJ_B, x, s.r2, N, Cl, C));
        TRY(tr->layernorm_fwd(d, s.ln2, s.mean2, s.rstd2, s.r2, P(g, p, t0 + PB_GPT_LN2_W),
                              P(g, p, t0 + PB_GPT_LN2_B), N, C));
    } else {
        /* a row-parallel projection's bias follows the sum across ranks */
        TRY(linear_fwd(g, p, s.atty, t0 + PB_GPT_PROJ_W, split ? -1 : t0 + PB_GPT_PROJ_B, sum_in, NULL, PB_EPI_BIAS,
                       N, Cl, C));
        TRY(row_parallel_sum(g, h, sum_in, s.r2, P(g, p, t0 + PB_GPT_PROJ_B), N, C));
        if (tr->residual_layernorm_fwd) {
            TRY(tr->residual_layernorm_fwd(d, s.r2, s.ln2 + part, s.mean2, s.rstd2, s.r2, x,
                                           P(g, p, t0 + PB_GPT_LN2_W), P(g, p, t0 + PB_GPT_LN2_B), Nl, C));
        } else {
            TRY(tr->residual_fwd(d, s.r2, s.r2, x, (size_t)Nl * (size_t)C));
            TRY(tr->layernorm_fwd(d, s.ln2 + part, s.mean2, s.rstd2, s.r2, P(g, p, t0 + PB_GPT_LN2_W),
                                  P(g, p, t0 + PB_GPT_LN2_B), Nl, C));
        }
    }
    TRY(gather_tokens(g, h, s.ln2, N, C));
    TRY(linear_fwd(g, p, s.ln2, t0 + PB_GPT_FC_W, t0 + PB_GPT_FC_B, s.fchg, s.fch, PB_EPI_GELU_BIAS, N, C, 4 * Cl));
    if (fuse_res)
        return linear_residual_fwd(g, p, s.fchg, t0 + PB_GPT_FCPROJ_W, t0 + PB_GPT_FCPROJ_B, s.r2, y, N, 4 * Cl, C);
    sum_in = sp_of(g->m) ? g->dsmall : y;
    TRY(linear_fwd(g, p, s.fchg, t0 + PB_GPT_FCPROJ_W, split ? -1 : t0 + PB_GPT_FCPROJ_B, sum_in, NULL, PB_EPI_BIAS,
                   N, 4 * Cl, C));
    TRY(row_parallel_sum(g, h, sum_in, y, P(g, p, t0 + PB_GPT_FCPROJ_B), N, C));
    return tr->residual_fwd(d, y, y, s.r2, (size_t)Nl * (size_t)C);
}

/* From D = dL/dy to D = dL/dx (the gradients of the block's tensors added) */
static pb_status layer_bwd(gpt_stage *g, const pb_stage_params *p, const pb_stage_hooks *h, int b, int slot, int rows,
                           const float *x)
{
    const pb_transformer_ops *tr = g->tr;
    const pb_backend *be = g->be;
    pb_device *d = g->dev;
    const int T = g->m->shape.seq, C = g->m->shape.d_model, N = rows * T;
    const int tp = tp_of(g->m), NH = g->m->shape.heads / tp, Cl = C / tp;
    const size_t NCl = (size_t)N * (size_t)Cl, f = sizeof(float);
    const int t0 = pb_gpt_layer_t0(b - 1);
    layer_saves s = saves_of(g, b, slot);
    /* under sequence parallel the residual stream's gradient is the rank's
     * tokens' (at part in D): the row-parallel projections' backward reads
     * every token's, gathered (Megatron's reduce-scatter's backward) unless
     * the head above left D whole */
    const int Nl = N / sp_div(g->m);
    const size_t part = part_of(g, h, N, C);
    if (!g->d_whole) TRY(gather_tokens(g, h, g->D, N, C));
    g->d_whole = false;
    /* dbig: the fc's dL/dpre (GELU's derivative fused, and fc's bias gradient) */
    TRY(linear_bwd(g, p, g->D, s.fchg, t0 + PB_GPT_FCPROJ_W, t0 + PB_GPT_FCPROJ_B, g->dbig, s.fch, t0 + PB_GPT_FC_B, N,
                   4 * Cl, C));
    TRY(linear_bwd(g, p, g->dbig, s.ln2, t0 + PB_GPT_FC_W, -1, g->dsmall, NULL, -1, N, C, 4 * Cl));
    TRY(column_parallel_sum(g, h, g->dsmall, N, C));
    /* the residual: dr2 = dy + the LayerNorm branch's, in D */
    TRY(tr->layernorm_bwd(d, g->D + part, G(g, p, t0 + PB_GPT_LN2_W), G(g, p, t0 + PB_GPT_LN2_B), g->dsmall + part,
                          s.r2, P(g, p, t0 + PB_GPT_LN2_W), s.mean2, s.rstd2, Nl, C));
    TRY(layernorm_grads_sum(g, p, h, t0 + PB_GPT_LN2_W));
    TRY(gather_tokens(g, h, g->D, N, C));
    TRY(linear_bwd(g, p, g->D, s.atty, t0 + PB_GPT_PROJ_W, t0 + PB_GPT_PROJ_B, g->dsmall, NULL, -1, N, Cl, C));
    TRY(be->zero(d, g->dqkv, 3 * NCl * f));
    TRY(tr->attention_bwd(d, g->dqkv, g->scratch, g->dsmall, s.qkv, s.att, rows, T, Cl, NH));
    TRY(linear_bwd(g, p, g->dqkv, s.ln1, t0 + PB_GPT_QKV_W, t0 + PB_GPT_QKV_B, g->dsmall, NULL, -1, N, C, 3 * Cl));
    TRY(column_parallel_sum(g, h, g->dsmall, N, C));
    /* dx = dr2 + the first LayerNorm branch's, in D */
    TRY(tr->layernorm_bwd(d, g->D + part, G(g, p, t0 + PB_GPT_LN1_W), G(g, p, t0 + PB_GPT_LN1_B), g->dsmall + part, x,
                          P(g, p, t0 + PB_GPT_LN1_W), s.mean1, s.rstd1, Nl, C));
    return layernorm_grads_sum(g, p, h, t0 + PB_GPT_LN1_W);
}

/* the head's saves: ln_f's output [N, C], mean [N], rstd [N], and under
 * sequence parallel its gathered input [N, C] */
static float *head_save(const gpt_stage *g, int slot)
{
    return g->save[(size_t)slot * (size_t)(g->b1 - g->b0) + (size_t)(g->b1 - 1 - g->b0)];
}

pb_status pb_gpt_forward(pb_stage *stage, const pb_stage_params *p, int slot, int rows, const pb_stage_hooks *h)
{
    gpt_stage *g = (gpt_stage *)stage;
    const pb_model *m = g->m;
    const int T = m->shape.seq, C = m->shape.d_model, N = rows * T;
    const int Vp = pb_gpt_padded_vocab(m->shape.vocab);
    for (int b = g->b0; b < g->b1; b++) {
        int i = b - g->b0;
        if (h && h->before_block) TRY(h->before_block(h->arg, b, false));
        const void *x = rows_of(g, i, slot);
        float *y = rows_of(g, i + 1, slot);
        if (b == 0 && sp_of(m)) {
            /* every token's embedding, the rank's part kept */
            TRY(g->tr->encoder_fwd(g->dev, g->dsmall, x, P(g, p, PB_GPT_WTE), P(g, p, PB_GPT_WPE), rows, T, C));
            TRY(g->be->copy(g->dev, y, g->dsmall + part_of(g, h, N, C), (size_t)N / (size_t)tp_of(m) * C * sizeof(float)));
        } else if (b == 0) {
            TRY(g->tr->encoder_fwd(g->dev, y, x, P(g, p, PB_GPT_WTE), P(g, p, PB_GPT_WPE), rows, T, C));
        } else if (is_layer(m, b)) {
            TRY(layer_fwd(g, p, h, b, slot, rows, x, y));
        } else {
            int t0 = m->block[b].t0;
            float *ln = head_save(g, slot);
            const float *xin = x;
            if (sp_of(m)) {
                /* the final LayerNorm over every token: the input gathered (and kept for backward) */
                float *whole = ln + (size_t)N * C + 2 * (size_t)N;
                TRY(g->be->copy(g->dev, whole + part_of(g, h, N, C), x, (size_t)N / (size_t)tp_of(m) * C * sizeof(float)));
                TRY(gather_tokens(g, h, whole, N, C));
                xin = whole;
            }
            TRY(g->tr->layernorm_fwd(g->dev, ln, ln + (size_t)N * C, ln + (size_t)N * C + N, xin, P(g, p, t0),
                                     P(g, p, t0 + 1), N, C));
            TRY(linear_fwd(g, p, ln, t0 + 2, -1, y, NULL, PB_EPI_NONE, N, C, Vp));
        }
    }
    return PB_OK;
}

/* Zeroes the stage's gradients in runs of adjacent tensors, skipping those
 * whose weight GEMM accumulates into the momentum instead */
static pb_status zero_grads(gpt_stage *g, const pb_stage_params *p)
{
    const pb_model *m = g->m;
    const size_t base = m->block[g->b0].p_off;
    int t = m->block[g->b0].t0;
    const int t1 = m->block[g->b1 - 1].t1;
    while (t < t1) {
        if (into_acc(g, p, t)) {
            t++;
            continue;
        }
        size_t lo = m->tensor[t].off, hi = lo + m->tensor[t].size;
        for (t++; t < t1 && !into_acc(g, p, t) && m->tensor[t].off == hi; t++) hi += m->tensor[t].size;
        TRY(g->be->zero(g->dev, p->grads + (lo - base), (hi - lo) * sizeof(float)));
    }
    return PB_OK;
}

pb_status pb_gpt_backward(pb_stage *stage, const pb_stage_params *p, int slot, int rows, void **d_in,
                          const pb_stage_hooks *h)
{
    gpt_stage *g = (gpt_stage *)stage;
    const pb_model *m = g->m;
    const int T = m->shape.seq, C = m->shape.d_model, N = rows * T;
    const int Vp = pb_gpt_padded_vocab(m->shape.vocab);
    const size_t NC = (size_t)N * (size_t)C;
    /* the ops accumulate; backward overwrites the stage's gradients (block
     * by block where the blocks lie apart: each is there from its hook on),
     * all but those that go into the momentum (nothing reads them) */
    if (!p->blocks) TRY(zero_grads(g, p));
    g->d_whole = !sp_of(m);
    for (int b = g->b1 - 1; b >= g->b0; b--) {
        int i = b - g->b0;
        if (h && h->before_block) TRY(h->before_block(h->arg, b, true));
        if (p->blocks) TRY(g->be->zero(g->dev, p->blocks[b].grads, m->block[b].p_len * sizeof(float)));
        const void *x = rows_of(g, i, slot);
        if (b == 0) {
            /* under sequence parallel every token's gradient, gathered: wte
             * and wpe's gradients whole on every rank */
            if (!g->d_whole) TRY(gather_tokens(g, h, g->D, N, C));
            TRY(g->tr->encoder_bwd(g->dev, G(g, p, PB_GPT_WTE), G(g, p, PB_GPT_WPE), g->D, x, rows, T, C));
        } else if (is_layer(m, b)) {
            TRY(layer_bwd(g, p, h, b, slot, rows, x));
        } else {
            int t0 = m->block[b].t0;
            float *ln = head_save(g, slot);
            TRY(linear_bwd(g, p, g->dlogits, ln, t0 + 2, -1, g->dsmall, NULL, -1, N, C, Vp));
            TRY(g->be->zero(g->dev, g->D, NC * sizeof(float)));
            /* whole on every rank: under sequence parallel the rank's part
             * of it is its input's gradient (the gather's backward, no sum) */
            const float *xin = sp_of(m) ? ln + NC + 2 * (size_t)N : x;
            TRY(g->tr->layernorm_bwd(g->dev, g->D, G(g, p, t0), G(g, p, t0 + 1), g->dsmall, xin, P(g, p, t0),
                                     ln + NC, ln + NC + N, N, C));
            g->d_whole = true;
        }
        if (h && h->grads_ready) TRY(h->grads_ready(h->arg, b));
    }
    if (d_in) *d_in = g->b0 > 0 ? g->D : NULL;
    return PB_OK;
}
