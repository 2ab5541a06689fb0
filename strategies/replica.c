#include "replica.h"

#include <string.h>

#include "../harness/fault.h"

static size_t widest(const pb_layout *layout, int l0, int l1)
{
    size_t w = (size_t)layout->layer[l0].in;
    for (int l = l0; l < l1; l++)
        if ((size_t)layout->layer[l].out > w) w = (size_t)layout->layer[l].out;
    return w;
}

pb_status pb_replica_init(pb_replica *r, const pb_backend *be, pb_device *dev,
                          const pb_config *cfg, const pb_layout *layout, int l0, int l1, int max_m,
                          const float *init_params_host)
{
    return pb_replica_init_opt(r, be, dev, cfg, layout, l0, l1, max_m, init_params_host, true);
}

pb_status pb_replica_init_opt(pb_replica *r, const pb_backend *be, pb_device *dev,
                              const pb_config *cfg, const pb_layout *layout, int l0, int l1,
                              int max_m, const float *init_params_host, bool optimizer_state)
{
    pb_status st = PB_OK;
    memset(r, 0, sizeof *r);
    r->be = be;
    r->dev = dev;
    r->cfg = cfg;
    r->layout = layout;
    r->l0 = l0;
    r->l1 = l1;
    r->max_m = max_m;
    r->p_off = layout->layer[l0].w_off;
    r->p_len = layout->layer[l1 - 1].b_off + (size_t)layout->layer[l1 - 1].out - r->p_off;
    size_t pbytes = r->p_len * sizeof(float);
    size_t rows = (size_t)max_m;

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
    PB_TRY(be->alloc(dev, be->act_bytes(dev, rows * (size_t)layout->layer[l0].in), &r->act[0]));
    for (int l = l0; l < l1; l++) {
        const pb_layer_desc *d = &layout->layer[l];
        PB_TRY(be->alloc(dev, be->act_bytes(dev, rows * (size_t)d->out), &r->act[l - l0 + 1]));
        size_t aux = d->relu ? be->aux_bytes(dev, max_m, d->out) : 0;
        if (aux) PB_TRY(be->alloc(dev, aux, &r->aux[l - l0]));
    }
    size_t w = widest(layout, l0, l1);
    PB_TRY(be->alloc(dev, be->act_bytes(dev, rows * w), &r->dz[0]));
    PB_TRY(be->alloc(dev, be->act_bytes(dev, rows * w), &r->dz[1]));
    PB_TRY(be->alloc(dev, (size_t)layout->layer[l0].in * sizeof(float), (void **)&r->db_spare));
    PB_TRY(be->alloc(dev, rows * sizeof(int32_t), (void **)&r->labels));
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
    for (int i = 0; i <= r->l1 - r->l0; i++) be->free(r->dev, r->act[i]);
    for (int i = 0; i < r->l1 - r->l0; i++) be->free(r->dev, r->aux[i]);
    be->free(r->dev, r->dz[0]);
    be->free(r->dev, r->dz[1]);
    be->free(r->dev, r->db_spare);
    be->free(r->dev, r->labels);
    be->free(r->dev, r->loss_sum);
    memset(r, 0, sizeof *r);
}

float *pb_replica_weight(const pb_replica *r, int l) { return r->params + (r->layout->layer[l].w_off - r->p_off); }
float *pb_replica_bias(const pb_replica *r, int l) { return r->params + (r->layout->layer[l].b_off - r->p_off); }
float *pb_replica_weight_grad(const pb_replica *r, int l) { return r->grads + (r->layout->layer[l].w_off - r->p_off); }
float *pb_replica_bias_grad(const pb_replica *r, int l) { return r->grads + (r->layout->layer[l].b_off - r->p_off); }

/* The weights in the activation type: the compute copy when there is one. */
static const void *compute_weight(const pb_replica *r, int l)
{
    if (!r->params_c) return pb_replica_weight(r, l);
    return (const char *)r->params_c + r->be->act_bytes(r->dev, r->layout->layer[l].w_off - r->p_off);
}

pb_status pb_replica_forward(pb_replica *r, int m)
{
    for (int l = r->l0; l < r->l1; l++) {
        const pb_layer_desc *d = &r->layout->layer[l];
        int i = l - r->l0;
        pb_linear lin = {
            .m = m, .n = d->out, .k = d->in,
            .x = r->act[i], .w = compute_weight(r, l), .b = pb_replica_bias(r, l),
            .y = r->act[i + 1], .aux = r->aux[i], .relu = d->relu != 0,
        };
        pb_status st = r->be->linear_fwd(r->dev, &lin);
        if (st != PB_OK) return st;
    }
    return PB_OK;
}

pb_status pb_replica_loss(pb_replica *r, int m, float scale)
{
    int c = r->layout->layer[r->l1 - 1].out;
    return r->be->softmax_xent(r->dev, m, c, r->act[r->l1 - r->l0], r->labels, scale, r->loss_sum,
                               r->dz[0]);
}

void *pb_replica_top_grad(pb_replica *r) { return r->dz[0]; }

pb_status pb_replica_backward(pb_replica *r, int m, void **dx_out, pb_grad_ready_fn ready,
                              void *ready_arg)
{
    int cur = 0;
    for (int l = r->l1 - 1; l >= r->l0; l--) {
        const pb_layer_desc *d = &r->layout->layer[l];
        int i = l - r->l0;
        bool has_below = l > 0; /* the input came through the previous layer's ReLU */
        bool need_dx = l > r->l0 || (has_below && dx_out);
        pb_linear_grad g = {
            .m = m, .n = d->out, .k = d->in,
            .dy = r->dz[cur], .x = r->act[i], .w = compute_weight(r, l),
            .dw = r->wgrad_beta != 0.0f ? r->m + (d->w_off - r->p_off) : pb_replica_weight_grad(r, l),
            .dw_beta = r->wgrad_beta,
            /* The top layer of the replica receives dL/dz and sums its own
             * bias gradient; lower layers get it fused from the layer above. */
            .db = l == r->l1 - 1 ? pb_replica_bias_grad(r, l) : NULL,
            .dx = need_dx ? r->dz[cur ^ 1] : NULL,
            .x_relu = need_dx && has_below,
            .x_aux = i > 0 ? r->aux[i - 1] : NULL,
            .db_prev = l > r->l0 ? pb_replica_bias_grad(r, l - 1) : r->db_spare,
        };
        pb_status st = r->be->linear_bwd(r->dev, &g);
        if (st != PB_OK) return st;
        /* PB_FAULT kind=skew (test-only): a wrong gradient, before any
         * bucket or reduction takes it */
        if (l == r->l1 - 1 && r->be->host_is_device && pb_fault_skew_now()) {
            pb_replica_bias_grad(r, l)[0] *= PB_FAULT_SKEW_FACTOR;
        }
        if (ready && (st = ready(ready_arg, l)) != PB_OK) return st;
        if (need_dx) cur ^= 1;
    }
    if (dx_out) *dx_out = r->l0 > 0 ? r->dz[cur] : NULL;
    return PB_OK;
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
 * is weights whose momentum backward has already accumulated. */
static pb_status optimize_span(pb_replica *r, size_t off, size_t len, bool side, bool ready)
{
    const pb_config *cfg = r->cfg;
    pb_opt_args a = {
        .kind = cfg->optimizer, .n = len,
        .params = r->params + off, .grads = r->grads + off, .m = r->m + off,
        .v = r->v ? r->v + off : NULL,
        .params_compute = r->params_c ? (char *)r->params_c + r->be->act_bytes(r->dev, off) : NULL,
        .lr = (float)cfg->lr, .momentum = (float)cfg->momentum,
        .weight_decay = (float)cfg->weight_decay, .beta1 = (float)cfg->beta1,
        .beta2 = (float)cfg->beta2, .eps = (float)cfg->eps,
        .step = r->opt_steps, .momentum_ready = ready,
    };
    return side ? r->be->optimizer_side(r->dev, &a) : r->be->optimizer(r->dev, &a);
}

/* Layer l's update: weights then bias (contiguous), one span unless the
 * weights' momentum is already accumulated. */
static pb_status optimize_layer(pb_replica *r, int l, bool side)
{
    const pb_layer_desc *d = &r->layout->layer[l];
    size_t w = d->w_off - r->p_off, b = d->b_off - r->p_off;
    if (r->wgrad_beta == 0.0f) return optimize_span(r, w, b + (size_t)d->out - w, side, false);
    pb_status st = optimize_span(r, w, b - w, side, true);
    return st != PB_OK ? st : optimize_span(r, b, (size_t)d->out, side, false);
}

pb_status pb_replica_optimize(pb_replica *r)
{
    r->opt_steps++;
    if (r->wgrad_beta == 0.0f) return optimize_span(r, 0, r->p_len, false, false);
    for (int l = r->l0; l < r->l1; l++) {
        pb_status st = optimize_layer(r, l, false);
        if (st != PB_OK) return st;
    }
    return PB_OK;
}

void pb_replica_next_opt_step(pb_replica *r) { r->opt_steps++; }

pb_status pb_replica_optimize_layer_side(pb_replica *r, int l) { return optimize_layer(r, l, true); }

pb_status pb_replica_download_params(pb_replica *r, float *host_params)
{
    return r->be->download(r->dev, host_params + r->p_off, r->params, r->p_len * sizeof(float));
}
