/* The MLP's stage: layers [b0, b1) on one device, their activations for
 * `slots` microbatches of `rows` rows (slot j at rows [j*rows, (j+1)*rows)
 * of each buffer), each Linear layer one call of the backend's GEMM with
 * epilogues (gemm_fwd: bias + ReLU; gemm_bwd: bias gradient and the ReLU
 * derivative of the layer below, fused).
 *
 * Tensor parallel (m->tp > 1, one rank's part of the model): a pair's
 * column layer runs as any layer on its rows of the weights (its output
 * and ReLU are this rank's slice of the hidden width); the row layer's GEMM
 * (no epilogue) gives a partial sum, summed across ranks (the hooks'
 * tp_allreduce) before its bias and ReLU (bias_act); in backward the column
 * layer's input gradient is summed the same way before the ReLU below masks
 * it (relu_bwd), so its gemm_bwd runs without the fused derivative. */
#include <stdlib.h>
#include <string.h>

#include "mlp.h"

typedef struct mlp_stage {
    const pb_model *m;
    const pb_backend *be;
    pb_device *dev;
    int b0, b1, rows, slots;
    void *act[PB_MAX_BLOCKS + 1]; /* act[0]: input; act[i+1]: output of layer b0+i */
    void *own_in, *own_out;       /* act[0] and act[nl] as allocated (stage_bind swaps them) */
    void *dz[2];                  /* ping-pong gradient buffers, widest layer */
    float *db_spare;              /* bias grad of the layer below a stage boundary, discarded */
} mlp_stage;

static size_t in_of(const mlp_stage *g, int l) { return g->m->block[l].in_elems; }
static size_t out_of(const mlp_stage *g, int l) { return g->m->block[l].out_elems; }
static bool relu_of(const mlp_stage *g, int l) { return l < g->m->n_blocks - 1; }
/* layer l's tensor-parallel part: its weight's split (replicated: none) */
static pb_tp_split split_of(const mlp_stage *g, int l)
{
    return g->m->tp > 1 ? g->m->tensor[g->m->block[l].t0].tp : PB_TP_REPLICATED;
}

static size_t widest(const pb_model *m, int b0, int b1)
{
    size_t w = m->block[b0].in_elems;
    for (int l = b0; l < b1; l++)
        if (m->block[l].out_elems > w) w = m->block[l].out_elems;
    return w;
}

void pb_mlp_stage_destroy(pb_stage *stage)
{
    mlp_stage *g = (mlp_stage *)stage;
    if (!g) return;
    const pb_backend *be = g->be;
    int nl = g->b1 - g->b0;
    g->act[0] = g->own_in;
    g->act[nl] = g->own_out;
    for (int i = 0; i <= nl; i++) be->free(g->dev, g->act[i]);
    be->free(g->dev, g->dz[0]);
    be->free(g->dev, g->dz[1]);
    be->free(g->dev, g->db_spare);
    free(g);
}

pb_status pb_mlp_stage_create(const pb_model *m, const pb_stage_opts *o, pb_stage **out)
{
    pb_status st = PB_OK;
    mlp_stage *g = NULL;
    const pb_backend *be = o->be;
    pb_device *dev = o->dev;
    PB_ALLOC(g, 1);
    g->m = m;
    g->be = be;
    g->dev = dev;
    g->b0 = o->b0;
    g->b1 = o->b1;
    g->rows = o->rows;
    g->slots = o->slots;
    int nl = g->b1 - g->b0;
    size_t all = (size_t)o->rows * (size_t)o->slots;
    if (!o->bind_in) PB_TRY(be->alloc(dev, be->act_bytes(dev, all * in_of(g, g->b0)), &g->act[0]));
    for (int l = g->b0; l < g->b1; l++)
        if (l < g->b1 - 1 || !o->bind_out)
            PB_TRY(be->alloc(dev, be->act_bytes(dev, all * out_of(g, l)), &g->act[l - g->b0 + 1]));
    g->own_in = g->act[0];
    g->own_out = g->act[nl];
    /* one slot's rows: backward runs one microbatch at a time, and what it
     * leaves (an input gradient) is taken before the next one's */
    size_t w = widest(m, g->b0, g->b1);
    PB_TRY(be->alloc(dev, be->act_bytes(dev, (size_t)o->rows * w), &g->dz[0]));
    PB_TRY(be->alloc(dev, be->act_bytes(dev, (size_t)o->rows * w), &g->dz[1]));
    PB_TRY(be->alloc(dev, in_of(g, g->b0) * sizeof(float), (void **)&g->db_spare));
    *out = (pb_stage *)g;
    return PB_OK;
cleanup:
    pb_mlp_stage_destroy((pb_stage *)g);
    return st;
}

double pb_mlp_stage_bytes(const pb_model *m, int b0, int b1, double rows, int slots, double e, bool bound_io)
{
    double act_elems = bound_io ? 0.0 : (double)m->block[b0].in_elems;
    for (int l = b0; l < b1; l++)
        if (l < b1 - 1 || !bound_io) act_elems += (double)m->block[l].out_elems;
    return e * rows * slots * act_elems + 2.0 * e * rows * (double)widest(m, b0, b1) +
           4.0 * (double)m->block[b0].in_elems;
}

/* act[i]'s rows of a slot */
static void *rows_of(const mlp_stage *g, int i, int slot)
{
    size_t w = i == 0 ? in_of(g, g->b0) : out_of(g, g->b0 + i - 1);
    return (char *)g->act[i] + g->be->act_bytes(g->dev, (size_t)slot * (size_t)g->rows * w);
}

void *pb_mlp_stage_buf(pb_stage *stage, pb_stage_buf which, int slot)
{
    mlp_stage *g = (mlp_stage *)stage;
    switch (which) {
    case PB_STAGE_IN: return rows_of(g, 0, slot);
    case PB_STAGE_OUT: return rows_of(g, g->b1 - g->b0, slot);
    case PB_STAGE_DOUT: return g->dz[0];
    }
    return NULL;
}

void pb_mlp_stage_bind(pb_stage *stage, pb_stage_buf which, void *base)
{
    mlp_stage *g = (mlp_stage *)stage;
    if (which == PB_STAGE_IN) g->act[0] = base ? base : g->own_in;
    if (which == PB_STAGE_OUT) g->act[g->b1 - g->b0] = base ? base : g->own_out;
}

/* Layer l's weights, bias, in the stage's parameters */
static size_t w_off(const mlp_stage *g, int l)
{
    return g->m->tensor[g->m->block[l].t0].off - g->m->block[g->b0].p_off;
}

static size_t b_off(const mlp_stage *g, int l)
{
    return g->m->tensor[g->m->block[l].t0 + 1].off - g->m->block[g->b0].p_off;
}

/* Layer l's bias and its gradients (weights' and bias's): in the stage's
 * contiguous buffers, or the block's own (pb_stage_params.blocks) */
static const float *bias(const mlp_stage *g, const pb_stage_params *p, int l)
{
    if (!p->blocks) return p->params + b_off(g, l);
    return p->blocks[l].params + (b_off(g, l) - w_off(g, l));
}

static float *w_grad(const mlp_stage *g, const pb_stage_params *p, int l)
{
    if (!p->blocks) return p->beta != 0.0f ? p->acc + w_off(g, l) : p->grads + w_off(g, l);
    return p->blocks[l].grads;
}

static float *b_grad(const mlp_stage *g, const pb_stage_params *p, int l)
{
    if (!p->blocks) return p->grads + b_off(g, l);
    return p->blocks[l].grads + (b_off(g, l) - w_off(g, l));
}

/* The weights in the activation type: the compute copy when there is one. */
static const void *compute_weight(const mlp_stage *g, const pb_stage_params *p, int l)
{
    if (p->blocks) return p->blocks[l].params;
    if (!p->params_c) return p->params + w_off(g, l);
    return (const char *)p->params_c + g->be->act_bytes(g->dev, w_off(g, l));
}

pb_status pb_mlp_forward(pb_stage *stage, const pb_stage_params *p, int slot, int rows, const pb_stage_hooks *h)
{
    mlp_stage *g = (mlp_stage *)stage;
    for (int l = g->b0; l < g->b1; l++) {
        int i = l - g->b0;
        pb_status st = PB_OK;
        if (h && h->before_block && (st = h->before_block(h->arg, l, false)) != PB_OK) return st;
        /* a row-parallel layer's bias and ReLU follow the sum across ranks */
        bool row = split_of(g, l) == PB_TP_ROW;
        pb_gemm gm = {
            .m = rows, .n = (int)out_of(g, l), .k = (int)in_of(g, l),
            .x = rows_of(g, i, slot), .w = compute_weight(g, p, l), .bias = row ? NULL : bias(g, p, l),
            .y = rows_of(g, i + 1, slot),
            .epilogue = row ? PB_EPI_NONE : relu_of(g, l) ? PB_EPI_RELU_BIAS : PB_EPI_BIAS,
        };
        if ((st = g->be->gemm_fwd(g->dev, &gm)) != PB_OK) return st;
        if (row && ((st = h->tp_allreduce(h->arg, gm.y, (size_t)rows * out_of(g, l))) != PB_OK ||
                    (st = g->be->bias_act(g->dev, rows, gm.n, gm.y, bias(g, p, l), relu_of(g, l))) != PB_OK))
            return st;
    }
    return PB_OK;
}

pb_status pb_mlp_backward(pb_stage *stage, const pb_stage_params *p, int slot, int rows, void **d_in,
                          const pb_stage_hooks *h)
{
    mlp_stage *g = (mlp_stage *)stage;
    int cur = 0;
    for (int l = g->b1 - 1; l >= g->b0; l--) {
        int i = l - g->b0;
        pb_status st = PB_OK;
        if (h && h->before_block && (st = h->before_block(h->arg, l, true)) != PB_OK) return st;
        bool has_below = l > 0; /* the input came through the previous layer's ReLU */
        bool need_dx = l > g->b0 || (has_below && d_in);
        /* a column-parallel layer's input gradient is this rank's part of
         * a sum: summed across ranks before the ReLU below masks it */
        bool col = split_of(g, l) == PB_TP_COLUMN && need_dx;
        float *db_prev = l > g->b0 ? b_grad(g, p, l - 1) : g->db_spare;
        pb_gemm_grad gg = {
            .m = rows, .n = (int)out_of(g, l), .k = (int)in_of(g, l),
            .dy = g->dz[cur], .x = rows_of(g, i, slot), .w = compute_weight(g, p, l),
            .dw = w_grad(g, p, l),
            .dw_beta = p->beta,
            /* The top layer of the stage receives dL/dz and sums its own
             * bias gradient; lower layers get it fused from the layer above. */
            .db = l == g->b1 - 1 ? b_grad(g, p, l) : NULL,
            .dx = need_dx ? g->dz[cur ^ 1] : NULL,
            .dx_act = need_dx && has_below && !col ? PB_DACT_RELU : PB_DACT_NONE,
            .dx_db = col ? NULL : db_prev,
        };
        if ((st = g->be->gemm_bwd(g->dev, &gg)) != PB_OK) return st;
        if (col && (st = h->tp_allreduce(h->arg, gg.dx, (size_t)rows * in_of(g, l))) != PB_OK) return st;
        if (col && has_below && (st = g->be->relu_bwd(g->dev, rows, gg.k, gg.dx, gg.x, db_prev)) != PB_OK)
            return st;
        if (h && h->grads_ready && (st = h->grads_ready(h->arg, l)) != PB_OK) return st;
        if (need_dx) cur ^= 1;
    }
    if (d_in) *d_in = g->b0 > 0 ? g->dz[cur] : NULL;
    return PB_OK;
}
