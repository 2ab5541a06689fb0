/* What every workload's model shares: its checks and the sums strategies
 * and the harness take over blocks. */
#include <string.h>

#include "workload.h"

static size_t dtype_bytes(const char *dtype) { return (size_t)(dtype[2] - '0'); }

pb_status pb_model_describe(const pb_workload_ops *ops, const pb_shape *shape, pb_model *out)
{
    pb_status st = ops->describe(shape, out);
    if (st != PB_OK) return st;
    out->ops = ops;
    /* the rules strategies build on (workload.h): blocks tile the buffer in
     * order, each block's tensors lie in its range */
    if (!out->block_noun) out->block_noun = "block";
    if (out->n_blocks < 1 || out->n_blocks > PB_MAX_BLOCKS || out->n_tensors > PB_MAX_TENSORS)
        return pb_error(PB_ERR_INTERNAL, "workload %s: %d blocks, %d tensors", ops->kind, out->n_blocks,
                        out->n_tensors);
    size_t off = 0;
    for (int b = 0; b < out->n_blocks; b++) {
        const pb_block_desc *d = &out->block[b];
        if (d->p_off != off || d->t0 < 0 || d->t1 > out->n_tensors || d->t0 > d->t1 ||
            (b > 0 && d->t0 != out->block[b - 1].t1) || (b > 0 && d->in_elems != out->block[b - 1].out_elems))
            return pb_error(PB_ERR_INTERNAL, "workload %s: block %d does not follow block %d", ops->kind, b, b - 1);
        for (int t = d->t0; t < d->t1; t++) {
            const pb_tensor_desc *x = &out->tensor[t];
            if (x->block != b || x->off < d->p_off || x->off + x->size > d->p_off + d->p_len)
                return pb_error(PB_ERR_INTERNAL, "workload %s: tensor %s lies outside block %d", ops->kind, x->name, b);
        }
        off += d->p_len;
    }
    if (off != out->n_params)
        return pb_error(PB_ERR_INTERNAL, "workload %s: blocks hold %zu of %zu parameters", ops->kind, off,
                        out->n_params);
    return PB_OK;
}

double pb_model_flops(const pb_model *m, int b0, int b1, double rows)
{
    double f = 0.0;
    for (int b = b0; b < b1; b++) f += m->block[b].flops;
    return rows * f;
}

size_t pb_model_input_bytes(const pb_model *m) { return m->input_elems * dtype_bytes(m->input_dtype); }

size_t pb_model_target_bytes(const pb_model *m) { return m->target_elems * dtype_bytes(m->target_dtype); }

size_t pb_model_span(const pb_model *m, int b0, int b1)
{
    return m->block[b1 - 1].p_off + m->block[b1 - 1].p_len - m->block[b0].p_off;
}
