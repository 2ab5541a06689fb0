/* The MLP workload: Linear layers with ReLU between them, softmax
 * cross-entropy over `classes`. Layer 0 is in -> hidden, the last is
 * hidden -> classes (in -> classes when there is one layer). Each layer is a
 * block of two tensors, its weight [out, in] and its bias [out]. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mlp.h"
#include "rng.h"

pb_status pb_mlp_layout(const pb_shape *shape, pb_layout *out)
{
    if (shape->layers < 1 || shape->layers > PB_MAX_LAYERS)
        return pb_usage_error("--layers %d is out of range; allowed: 1 to %d", shape->layers,
                              PB_MAX_LAYERS);
    memset(out, 0, sizeof *out);
    out->n_layers = shape->layers;
    out->in = shape->in;
    out->classes = shape->classes;
    size_t off = 0;
    for (int l = 0; l < shape->layers; l++) {
        pb_layer_desc *d = &out->layer[l];
        d->in = l == 0 ? shape->in : shape->hidden;
        d->out = l == shape->layers - 1 ? shape->classes : shape->hidden;
        d->relu = l < shape->layers - 1;
        d->w_off = off;
        off += (size_t)d->in * (size_t)d->out;
        d->b_off = off;
        off += (size_t)d->out;
    }
    out->n_params = off;
    return PB_OK;
}

double pb_mlp_step_flops(const pb_layout *layout, int batch)
{
    double macs = 0.0;
    for (int l = 0; l < layout->n_layers; l++)
        macs += (double)layout->layer[l].in * (double)layout->layer[l].out;
    return 6.0 * (double)batch * macs;
}

/* nn.Linear: kaiming_uniform(a=sqrt(5)) on W and the bias rule both reduce
 * to U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static void init_layer(uint64_t seed, int l, int in, int out, float *w, float *b)
{
    float bound = 1.0f / sqrtf((float)in);
    for (int o = 0; o < out; o++) {
        uint64_t key = pb_rng_key(seed, PB_STREAM_WEIGHT, (uint64_t)l, (uint64_t)o);
        float *row = w + (size_t)o * in;
        for (int k = 0; k < in; k++) row[k] = pb_rng_symmetric(pb_rng_u64(key, (uint64_t)k), bound);
    }
    uint64_t bkey = pb_rng_key(seed, PB_STREAM_BIAS, (uint64_t)l, 0);
    for (int o = 0; o < out; o++) b[o] = pb_rng_symmetric(pb_rng_u64(bkey, (uint64_t)o), bound);
}

void pb_mlp_init_params(const pb_layout *layout, uint64_t seed, float *params)
{
    for (int l = 0; l < layout->n_layers; l++) {
        const pb_layer_desc *d = &layout->layer[l];
        init_layer(seed, l, d->in, d->out, params + d->w_off, params + d->b_off);
    }
}

/* --- the ops ------------------------------------------------------------------ */

static pb_status mlp_describe(const pb_shape *shape, pb_model *out)
{
    pb_layout layout;
    pb_status st = pb_mlp_layout(shape, &layout);
    if (st != PB_OK) return st;
    memset(out, 0, sizeof *out);
    out->shape = *shape;
    out->n_blocks = layout.n_layers;
    out->block_noun = "layer";
    out->n_tensors = 2 * layout.n_layers;
    out->n_params = layout.n_params;
    size_t widest = (size_t)shape->in;
    for (int l = 0; l < layout.n_layers; l++) {
        const pb_layer_desc *d = &layout.layer[l];
        pb_block_desc *b = &out->block[l];
        pb_tensor_desc *w = &out->tensor[2 * l], *bias = &out->tensor[2 * l + 1];
        *w = (pb_tensor_desc){.off = d->w_off, .size = (size_t)d->in * (size_t)d->out, .block = l,
                              .decay = true, .gemm_grad = true, .rows = (size_t)d->out};
        snprintf(w->name, sizeof w->name, "layer%d.weight", l);
        *bias = (pb_tensor_desc){.off = d->b_off, .size = (size_t)d->out, .block = l, .decay = true};
        snprintf(bias->name, sizeof bias->name, "layer%d.bias", l);
        /* tensor parallel: layers (0, 1), (2, 3), ... pair up column- then
         * row-parallel (the ReLU between them is elementwise on the column
         * layer's split output); an odd last layer stays whole */
        if (l % 2 == 0 && l + 1 < layout.n_layers) w->tp = bias->tp = PB_TP_COLUMN;
        if (l % 2 == 1) w->tp = PB_TP_ROW;
        b->t0 = 2 * l;
        b->t1 = 2 * l + 2;
        b->p_off = d->w_off;
        b->p_len = w->size + bias->size;
        b->flops = 6.0 * (double)d->in * (double)d->out;
        b->in_elems = (size_t)d->in;
        b->out_elems = (size_t)d->out;
        if ((size_t)d->out > widest) widest = (size_t)d->out;
    }
    out->input_elems = (size_t)shape->in;
    out->target_elems = 1;
    memcpy(out->input_dtype, "<f4", 4);
    memcpy(out->target_dtype, "<i4", 4);
    out->input_is_act = true;
    out->data_table = (size_t)shape->classes * (size_t)shape->in;
    out->max_width = widest;
    return PB_OK;
}

/* One rank's part over tp ranks: each pair's hidden activation (the
 * column layer's output, the row layer's input) is split. */
static pb_status mlp_describe_tp(const pb_shape *shape, int tp, pb_model *out)
{
    pb_status st = mlp_describe(shape, out);
    if (st != PB_OK) return st;
    if (out->n_blocks >= 2 && shape->hidden % tp != 0)
        return pb_usage_error("--hidden %d is not divisible by --gpus %d; strategy tp splits each column/row layer "
                              "pair's hidden width across ranks; allowed: a --gpus that divides --hidden",
                              shape->hidden, tp);
    if ((st = pb_model_tp_local(out, tp, out)) != PB_OK) return st;
    for (int l = 0; l + 1 < out->n_blocks; l += 2) {
        out->block[l].out_elems /= (size_t)tp;
        out->block[l + 1].in_elems /= (size_t)tp;
    }
    return PB_OK;
}

static void mlp_init_params(const pb_model *m, uint64_t seed, float *params)
{
    for (int l = 0; l < m->n_blocks; l++) {
        const pb_block_desc *b = &m->block[l];
        init_layer(seed, l, (int)b->in_elems, (int)b->out_elems, params + m->tensor[b->t0].off,
                   params + m->tensor[b->t0 + 1].off);
    }
}

static void mlp_data_table(const pb_model *m, uint64_t seed, float *table)
{
    pb_mlp_prototypes(m->shape.in, m->shape.classes, seed, table);
}

static void mlp_fill(const pb_model *m, uint64_t seed, const float *table, int64_t step, int64_t first, int count,
                     void *inputs, void *targets)
{
    pb_mlp_fill(m->shape.in, m->shape.classes, seed, step, first, count, table, inputs, targets);
}

static pb_status mlp_loss(const pb_model *m, const pb_backend *be, pb_device *dev, int rows, const void *out,
                          const void *targets, float scale, float *loss_sum, void *d_out)
{
    return be->softmax_xent(dev, rows, m->shape.classes, out, targets, scale, loss_sum, d_out);
}

static pb_status mlp_gemm_reference(const pb_model *m, const pb_backend *be, pb_device *dev, int rows, float dw_beta,
                                    int reps, double *ms)
{
    int in[PB_MAX_BLOCKS], outs[PB_MAX_BLOCKS];
    for (int l = 0; l < m->n_blocks; l++) {
        in[l] = (int)m->block[l].in_elems;
        outs[l] = (int)m->block[l].out_elems;
    }
    return be->gemm_reference(dev, m->n_blocks, in, outs, rows, dw_beta, false, reps, ms);
}

static void mlp_shape_str(const pb_shape *s, char *buf, size_t len)
{
    snprintf(buf, len, "in=%d hidden=%d layers=%d classes=%d", s->in, s->hidden, s->layers, s->classes);
}

const pb_workload_ops pb_workload_mlp = {
    .kind = "mlp",
    .shape_str = mlp_shape_str,
    .describe = mlp_describe,
    .init_params = mlp_init_params,
    .data_table = mlp_data_table,
    .fill = mlp_fill,
    .loss = mlp_loss,
    .stage_create = pb_mlp_stage_create,
    .stage_destroy = pb_mlp_stage_destroy,
    .stage_buf = pb_mlp_stage_buf,
    .stage_bind = pb_mlp_stage_bind,
    .forward = pb_mlp_forward,
    .backward = pb_mlp_backward,
    .stage_bytes = pb_mlp_stage_bytes,
    .gemm_reference = mlp_gemm_reference,
    .describe_tp = mlp_describe_tp,
};
