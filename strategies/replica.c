#include "replica.h"

#include <string.h>

#include "../harness/fault.h"

pb_status pb_replica_init(pb_replica *r, const pb_backend *be, pb_device *dev, const pb_config *cfg,
                          const pb_model *model, int b0, int b1, int rows, int slots, const float *init_params_host,
                          bool optimizer_state, bool targets)
{
    return pb_replica_init_bound(r, be, dev, cfg, model, b0, b1, rows, slots, init_params_host, optimizer_state,
                                 targets, false);
}

static pb_status replica_init(pb_replica *r, const pb_backend *be, pb_device *dev, const pb_config *cfg,
                              const pb_model *model, int b0, int b1, int rows, int slots, const float *init_params_host,
                              bool optimizer_state, bool targets, bool bind_io, bool buffers);

pb_status pb_replica_init_bound(pb_replica *r, const pb_backend *be, pb_device *dev, const pb_config *cfg,
                                const pb_model *model, int b0, int b1, int rows, int slots,
                                const float *init_params_host, bool optimizer_state, bool targets, bool bind_io)
{
    return replica_init(r, be, dev, cfg, model, b0, b1, rows, slots, init_params_host, optimizer_state, targets,
                        bind_io, true);
}

pb_status pb_replica_init_stage(pb_replica *r, const pb_backend *be, pb_device *dev, const pb_config *cfg,
                                const pb_model *model, int rows)
{
    return replica_init(r, be, dev, cfg, model, 0, model->n_blocks, rows, 1, NULL, false, true, false, false);
}

static pb_status replica_init(pb_replica *r, const pb_backend *be, pb_device *dev, const pb_config *cfg,
                              const pb_model *model, int b0, int b1, int rows, int slots, const float *init_params_host,
                              bool optimizer_state, bool targets, bool bind_io, bool buffers)
{
    pb_status st = PB_OK;
    memset(r, 0, sizeof *r);
    r->be = be;
    r->dev = dev;
    r->cfg = cfg;
    r->model = model;
    r->b0 = b0;
    r->b1 = b1;
    r->rows = rows;
    r->slots = slots;
    r->p_off = model->block[b0].p_off;
    r->p_len = pb_model_span(model, b0, b1);
    size_t pbytes = r->p_len * sizeof(float);

    if (!buffers) goto stage;
    PB_TRY(be->alloc(dev, pbytes, (void **)&r->params));
    PB_TRY(be->alloc(dev, pbytes, (void **)&r->grads));
    if (optimizer_state) PB_TRY(be->alloc(dev, pbytes, (void **)&r->m));
    if (optimizer_state && cfg->optimizer == PB_OPT_ADAMW) PB_TRY(be->alloc(dev, pbytes, (void **)&r->v));
    PB_TRY(be->upload(dev, r->params, init_params_host + r->p_off, pbytes));
    /* A narrower activation type needs its own copy of the weights. */
    if (be->act_bytes(dev, 1) != sizeof(float)) {
        PB_TRY(be->alloc(dev, be->act_bytes(dev, r->p_len), &r->params_c));
        PB_TRY(be->cast_params(dev, r->params_c, r->params, r->p_len));
    }
stage:;
    pb_stage_opts so = {.be = be, .dev = dev, .b0 = b0, .b1 = b1, .rows = rows, .slots = slots,
                        .bind_in = bind_io, .bind_out = bind_io};
    PB_TRY(model->ops->stage_create(model, &so, &r->stage));
    if (targets)
        PB_TRY(be->alloc(dev, (size_t)rows * (size_t)slots * pb_model_target_bytes(model), &r->own_targets));
    r->targets = r->own_targets;
    PB_TRY(be->alloc(dev, sizeof(float), (void **)&r->loss_sum));
    return PB_OK;
cleanup:
    pb_replica_destroy(r);
    return st;
}

void pb_replica_destroy(pb_replica *r)
{
    if (!r->be) return;
    const pb_backend *be = r->be;
    be->free(r->dev, r->params);
    be->free(r->dev, r->grads);
    be->free(r->dev, r->m);
    be->free(r->dev, r->v);
    be->free(r->dev, r->params_c);
    if (r->stage) r->model->ops->stage_destroy(r->stage);
    be->free(r->dev, r->own_targets);
    be->free(r->dev, r->loss_sum);
    memset(r, 0, sizeof *r);
}

void *pb_replica_buf(const pb_replica *r, pb_stage_buf which, int slot)
{
    return r->model->ops->stage_buf(r->stage, which, slot);
}

void pb_replica_bind(pb_replica *r, pb_stage_buf which, void *base) { r->model->ops->stage_bind(r->stage, which, base); }

void *pb_replica_targets(const pb_replica *r, int slot)
{
    return (char *)r->targets + (size_t)slot * (size_t)r->rows * pb_model_target_bytes(r->model);
}

static pb_stage_params stage_params(const pb_replica *r, float *grads)
{
    return (pb_stage_params){.params = r->params, .params_c = r->params_c, .grads = grads ? grads : r->grads,
                             .acc = r->m, .beta = r->wgrad_beta, .blocks = r->blocks};
}


pb_status pb_replica_loss(pb_replica *r, int slot, int rows, float scale)
{
    void *out = pb_replica_buf(r, PB_STAGE_OUT, slot), *d_out = pb_replica_buf(r, PB_STAGE_DOUT, slot);
    return r->model->ops->loss(r->model, r->be, r->dev, rows, out, pb_replica_targets(r, slot), scale, r->loss_sum,
                               d_out);
}

/* The strategy's hooks in backward: its ready callback, after the
 * test-only fault hook, and the replica's before_block */
typedef struct ready_ctx {
    pb_replica *r;
    float *grads;
    pb_grad_ready_fn ready;
    void *arg;
} ready_ctx;

static pb_status block_ready(void *arg, int b)
{
    ready_ctx *c = arg;
    pb_replica *r = c->r;
    /* PB_FAULT kind=skew (test-only): a wrong gradient, before any bucket
     * or reduction takes it: the first element of the top block's last
     * tensor (never accumulated into the momentum) */
    if (b == r->b1 - 1 && c->grads && r->be->host_is_device && pb_fault_skew_now()) {
        const pb_tensor_desc *t = &r->model->tensor[r->model->block[b].t1 - 1];
        c->grads[t->off - r->p_off] *= PB_FAULT_SKEW_FACTOR;
    }
    return c->ready ? c->ready(c->arg, b) : PB_OK;
}

static pb_status block_before(void *arg, int b, bool backward)
{
    const pb_replica *r = ((ready_ctx *)arg)->r;
    return r->before_block(r->before_arg, b, backward);
}

static pb_status block_tp_allreduce(void *arg, void *buf, size_t n)
{
    const pb_replica *r = ((ready_ctx *)arg)->r;
    return r->tp_allreduce(r->tp_arg, buf, n);
}

static pb_status block_tp_reduce_scatter(void *arg, const void *in, void *out, size_t n)
{
    const pb_replica *r = ((ready_ctx *)arg)->r;
    return r->tp_reduce_scatter(r->tp_arg, in, out, n);
}

static pb_status block_tp_allgather(void *arg, void *buf, size_t n)
{
    const pb_replica *r = ((ready_ctx *)arg)->r;
    return r->tp_allgather(r->tp_arg, buf, n);
}

/* the hooks forward and backward share, over c */
static pb_stage_hooks stage_hooks(const pb_replica *r, ready_ctx *c)
{
    return (pb_stage_hooks){.before_block = r->before_block ? block_before : NULL,
                            .tp_allreduce = r->tp_allreduce ? block_tp_allreduce : NULL,
                            .tp_reduce_scatter = r->tp_reduce_scatter ? block_tp_reduce_scatter : NULL,
                            .tp_allgather = r->tp_allgather ? block_tp_allgather : NULL,
                            .tp_rank = r->tp_rank, .arg = c};
}

pb_status pb_replica_forward(pb_replica *r, int slot, int rows)
{
    pb_stage_params p = stage_params(r, NULL);
    ready_ctx c = {.r = r};
    pb_stage_hooks h = stage_hooks(r, &c);
    return r->model->ops->forward(r->stage, &p, slot, rows, &h);
}

pb_status pb_replica_backward(pb_replica *r, int slot, int rows, float *grads, void **d_in, pb_grad_ready_fn ready,
                              void *ready_arg)
{
    pb_stage_params p = stage_params(r, grads);
    ready_ctx c = {.r = r, .grads = p.grads, .ready = ready, .arg = ready_arg};
    pb_stage_hooks h = stage_hooks(r, &c);
    h.grads_ready = block_ready;
    return r->model->ops->backward(r->stage, &p, slot, rows, d_in, &h);
}

float pb_momentum_wgrad_beta(const pb_config *cfg, const pb_backend *be)
{
    return cfg->optimizer == PB_OPT_SGD && be->momentum_in_wgrad ? (float)cfg->momentum : 0.0f;
}

void pb_replica_fuse_momentum(pb_replica *r)
{
    r->wgrad_beta = r->m ? pb_momentum_wgrad_beta(r->cfg, r->be) : 0.0f;
}

/* The optimizer over params[off, off+len) of the replica, at the step the
 * last pb_replica_optimize/pb_replica_next_opt_step counted; ready: the span
 * is gradients whose momentum backward has already accumulated. */
static pb_status optimize_span(pb_replica *r, size_t off, size_t len, bool decay, bool side, bool ready)
{
    const pb_config *cfg = r->cfg;
    pb_opt_args a = {
        .kind = cfg->optimizer, .n = len,
        .params = r->params + off, .grads = r->grads + off, .m = r->m + off,
        .v = r->v ? r->v + off : NULL,
        .params_compute = r->params_c ? (char *)r->params_c + r->be->act_bytes(r->dev, off) : NULL,
        .lr = (float)cfg->lr, .momentum = (float)cfg->momentum,
        .weight_decay = decay ? (float)cfg->weight_decay : 0.0f, .beta1 = (float)cfg->beta1,
        .beta2 = (float)cfg->beta2, .eps = (float)cfg->eps,
        .step = r->opt_steps, .momentum_ready = ready,
    };
    return side ? r->be->optimizer_side(r->dev, &a) : r->be->optimizer(r->dev, &a);
}

/* Tensors [t0, t1)'s update, as few spans as can be: adjacent tensors
 * alike in weight decay and in whether backward accumulated their momentum
 * go in one call (the whole replica at once when all are). */
static pb_status optimize_tensors(pb_replica *r, int t0, int t1, bool side)
{
    const pb_tensor_desc *t = r->model->tensor;
    int i = t0;
    while (i < t1) {
        bool ready = r->wgrad_beta != 0.0f && t[i].gemm_grad, decay = t[i].decay;
        size_t lo = t[i].off, hi = t[i].off + t[i].size;
        for (i++; i < t1 && t[i].off == hi && t[i].decay == decay && (r->wgrad_beta != 0.0f && t[i].gemm_grad) == ready;
             i++)
            hi += t[i].size;
        pb_status st = optimize_span(r, lo - r->p_off, hi - lo, decay, side, ready);
        if (st != PB_OK) return st;
    }
    return PB_OK;
}

pb_status pb_replica_optimize(pb_replica *r)
{
    r->opt_steps++;
    return optimize_tensors(r, r->model->block[r->b0].t0, r->model->block[r->b1 - 1].t1, false);
}

void pb_replica_next_opt_step(pb_replica *r) { r->opt_steps++; }

float *pb_replica_tied_grad(const pb_replica *r, bool first)
{
    const pb_model *m = r->model;
    if (!m->n_tied || (first ? r->b0 != 0 : r->b1 != m->n_blocks)) return NULL;
    return r->grads + (m->tensor[first ? m->tie_src : m->tie_dst].off - r->p_off);
}

pb_status pb_replica_tie_grads(pb_replica *r)
{
    float *src = pb_replica_tied_grad(r, true), *dst = pb_replica_tied_grad(r, false);
    if (!src || !dst) return PB_OK;
    pb_status st = r->be->axpy(r->dev, r->model->n_tied, 1.0f, dst, src);
    if (st != PB_OK) return st;
    return r->be->copy(r->dev, dst, src, r->model->n_tied * sizeof(float));
}

pb_status pb_replica_optimize_block_side(pb_replica *r, int b)
{
    return optimize_tensors(r, r->model->block[b].t0, r->model->block[b].t1, true);
}

pb_status pb_replica_download_params(pb_replica *r, float *host_params)
{
    return r->be->download(r->dev, host_params + r->p_off, r->params, r->p_len * sizeof(float));
}
