/* What every workload's model shares: its checks and the sums strategies
 * and the harness take over blocks. */
#include <string.h>

#include "workload.h"

static size_t dtype_bytes(const char *dtype) { return (size_t)(dtype[2] - '0'); }

static pb_status check_model(const pb_workload_ops *ops, pb_model *out);

pb_status pb_model_describe(const pb_workload_ops *ops, const pb_shape *shape, pb_model *out)
{
    pb_status st = ops->describe(shape, out);
    if (st != PB_OK) return st;
    return check_model(ops, out);
}

pb_status pb_model_describe_tp(const pb_workload_ops *ops, const pb_shape *shape, int tp, pb_model *out)
{
    if (!ops->describe_tp)
        return pb_usage_error("the %s workload does not split under tensor parallelism; allowed: a workload whose "
                              "blocks declare a tensor-parallel split (mlp, gpt)",
                              ops->kind);
    pb_status st = ops->describe_tp(shape, tp, out);
    if (st != PB_OK) return st;
    return check_model(ops, out);
}

static pb_status check_model(const pb_workload_ops *ops, pb_model *out)
{
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
    if (out->n_tied &&
        (out->tie_src < 0 || out->tie_dst >= out->n_tensors || out->tensor[out->tie_src].block != 0 ||
         out->tensor[out->tie_dst].block != out->n_blocks - 1 || out->tensor[out->tie_src].size != out->n_tied ||
         out->tensor[out->tie_dst].size != out->n_tied))
        return pb_error(PB_ERR_INTERNAL, "workload %s: the tied tensors are not block 0's and the last block's",
                        ops->kind);
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

size_t pb_model_params(const pb_model *m) { return m->n_params - m->n_tied; }

size_t pb_model_span(const pb_model *m, int b0, int b1)
{
    return m->block[b1 - 1].p_off + m->block[b1 - 1].p_len - m->block[b0].p_off;
}

/* --- tensor parallelism ------------------------------------------------------ */

/* A tensor as a matrix: [rows, cols]; a vector is a column [size, 1] */
static size_t rows_of(const pb_tensor_desc *t) { return t->rows ? t->rows : t->size; }

static int parts_of(const pb_tensor_desc *t) { return t->tp_parts > 1 ? t->tp_parts : 1; }

pb_status pb_model_tp_local(const pb_model *full, int tp, pb_model *local)
{
    if (local != full) memcpy(local, full, sizeof *local);
    size_t off = 0;
    for (int b = 0; b < local->n_blocks; b++) {
        pb_block_desc *d = &local->block[b];
        d->p_off = off;
        for (int i = d->t0; i < d->t1; i++) {
            pb_tensor_desc *t = &local->tensor[i];
            size_t r = rows_of(t), split = t->tp == PB_TP_COLUMN ? r / (size_t)parts_of(t) : r ? t->size / r : 0;
            if (t->tp != PB_TP_REPLICATED && (split % (size_t)tp != 0 || (t->tp == PB_TP_ROW && !t->rows)))
                return pb_error(PB_ERR_INTERNAL, "tensor %s (%zu floats) does not split %d ways", t->name, t->size,
                                tp);
            if (t->tp != PB_TP_REPLICATED) t->size /= (size_t)tp;
            if (t->tp == PB_TP_COLUMN && t->rows) t->rows /= (size_t)tp;
            t->off = off;
            off += t->size;
        }
        d->p_len = off - d->p_off;
    }
    local->n_params = off;
    local->tp = tp;
    return PB_OK;
}

/* Copies rank's shard of every tensor between the two layouts */
static void tp_copy(const pb_model *full, const pb_model *local, int rank, float *full_buf, float *local_buf,
                    bool to_local)
{
    for (int i = 0; i < full->n_tensors; i++) {
        const pb_tensor_desc *t = &full->tensor[i], *l = &local->tensor[i];
        size_t r = rows_of(t), cols = t->size / r;
        /* runs of `len` floats: run j at full + f0 + j * fstep, local + j * len */
        size_t runs = 1, len = t->size, f0 = 0, fstep = 0;
        if (t->tp == PB_TP_COLUMN) {
            size_t part_rows = r / (size_t)parts_of(t), mine = part_rows * l->size / t->size;
            runs = (size_t)parts_of(t);
            len = mine * cols;
            f0 = (size_t)rank * len;
            fstep = part_rows * cols;
        } else if (t->tp == PB_TP_ROW) {
            runs = r;
            len = l->size / r;
            f0 = (size_t)rank * len;
            fstep = cols;
        }
        for (size_t j = 0; j < runs; j++) {
            float *fp = full_buf + t->off + f0 + j * fstep, *lp = local_buf + l->off + j * len;
            if (to_local) memcpy(lp, fp, len * sizeof *fp);
            else memcpy(fp, lp, len * sizeof *fp);
        }
    }
}

void pb_model_tp_shard(const pb_model *full, const pb_model *local, int rank, const float *full_buf,
                       float *local_buf)
{
    tp_copy(full, local, rank, (float *)full_buf, local_buf, true);
}

void pb_model_tp_unshard(const pb_model *full, const pb_model *local, int rank, const float *local_buf,
                         float *full_buf)
{
    tp_copy(full, local, rank, full_buf, (float *)local_buf, false);
}
