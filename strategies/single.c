/* `single`: one process, one device, the whole model. The reference every
 * other strategy must reproduce. */
#include <stdlib.h>
#include <string.h>

#include "../harness/nvtx.h"
#include "../harness/phase.h"
#include "input.h"
#include "replica.h"
#include "strategy.h"

/* --cuda-graph: the device work after h2d (fwd, bwd, opt) is captured once
 * and replayed; h2d stays eager because the loader alternates between two
 * pinned buffers, and a graph would bake in one address. */
#define GRAPH_SPANS 3
static const pb_phase graph_phases[GRAPH_SPANS] = {PB_PHASE_FWD, PB_PHASE_BWD, PB_PHASE_OPT};

typedef struct single_state {
    const pb_strategy_ctx *ctx;
    pb_device *dev;
    pb_replica rep;
    pb_phase_timer timer;
    int steps_done;
    bool graph_ready;
    pb_input input;
} single_state;

static pb_status single_validate(const pb_config *cfg, const pb_model *model)
{
    (void)model;
    /* a graph bakes kernel arguments in, and AdamW's bias correction
     * changes every step */
    if (cfg->cuda_graph && cfg->optimizer != PB_OPT_SGD)
        return pb_usage_error("--cuda-graph with --optimizer %s: allowed: sgd", pb_optimizer_name(cfg->optimizer));
    if (cfg->devices != 1)
        return pb_usage_error("--gpus %d: strategy single uses exactly 1 device; use dp, ddp or mp "
                              "for more",
                              cfg->devices);
    return PB_OK;
}

static void single_destroy(void *state)
{
    single_state *s = state;
    if (!s) return;
    if (s->timer.be) pb_phase_timer_destroy(&s->timer);
    pb_input_destroy(&s->input);
    pb_replica_destroy(&s->rep);
    if (s->dev) s->ctx->be->close(s->dev);
    free(s);
}

static pb_status single_init(const pb_strategy_ctx *ctx, void **state)
{
    pb_status st = PB_OK;
    single_state *s = NULL;
    PB_ALLOC(s, 1);
    s->ctx = ctx;
    pb_device_opts dev_opts = pb_config_model_device_opts(ctx->cfg, ctx->model);
    /* ctx->device: 0 for a run of single; the run's own first device when
     * single is --verify's reference (so it trains where the run did) */
    PB_TRY(ctx->be->open(&dev_opts, ctx->device, &s->dev));
    PB_TRY(pb_replica_init(&s->rep, ctx->be, s->dev, ctx->cfg, ctx->model, 0, ctx->model->n_blocks,
                           ctx->cfg->shape.batch, 1, ctx->init_params, true, true));
    /* nothing reads the gradients between backward and the optimizer */
    pb_replica_fuse_momentum(&s->rep);
    PB_TRY(pb_phase_timer_init(&s->timer, ctx->be, s->dev));
    PB_TRY(pb_input_init(&s->input, ctx->be, s->dev, 0, (size_t)ctx->cfg->shape.batch, ctx->model,
                         ctx->be->host_is_device && !s->rep.params_c && !ctx->cfg->cuda_graph));
    *state = s;
    return PB_OK;
cleanup:
    single_destroy(s);
    return st;
}

static pb_status optimize_block(void *replica, int block)
{
    return pb_replica_optimize_block_side(replica, block);
}

/* fwd (with the loss), bwd and opt: everything after h2d */
static pb_status compute(single_state *s, int m)
{
    const pb_backend *be = s->ctx->be;
    pb_replica *r = &s->rep;
    pb_status st = PB_OK;
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_FWD));
    PB_TRY(be->zero(s->dev, r->loss_sum, sizeof(float)));
    PB_TRY(pb_replica_forward(r, 0, m));
    PB_TRY(pb_replica_loss(r, 0, m, 1.0f / (float)m));
    PB_TRY(pb_phase_end(&s->timer));

    /* With a side stream the optimizer runs in backward, block by block, and
     * the opt phase is the part of it left exposed after backward (as sync
     * is for communication); otherwise it is a pass of its own. */
    bool overlap = be->optimizer_side && be->join_side;
    if (overlap) pb_replica_next_opt_step(r);
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_BWD));
    PB_TRY(pb_replica_backward(r, 0, m, NULL, NULL, overlap ? optimize_block : NULL, r));
    PB_TRY(pb_phase_end(&s->timer));

    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_OPT));
    PB_TRY(overlap ? be->join_side(s->dev) : pb_replica_optimize(r));
    PB_TRY(pb_phase_end(&s->timer));
cleanup:
    return st;
}

static pb_status single_step(void *state, const pb_batch *batch, pb_step_result *out)
{
    single_state *s = state;
    const pb_backend *be = s->ctx->be;
    pb_replica *r = &s->rep;
    pb_status st = PB_OK;
    int m = batch->count;
    float loss = 0.0f;

    /* h2d: the batch is usually already on the device (copied during the
     * previous step): wait for it and convert it to the activation type */
    pb_phase_timer_reset(&s->timer);
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_H2D));
    PB_TRY(pb_input_load_replica(&s->input, batch, r));
    PB_TRY(pb_phase_end(&s->timer));

    if (s->graph_ready) {
        /* one range for the replay: the per-phase ranges exist only in the
         * captured step, while the per-phase timing marks replay with it */
        pb_nvtx_push("graph");
        st = be->replay(s->dev);
        pb_nvtx_pop();
        PB_TRY(st);
        PB_TRY(pb_phase_timer_replayed(&s->timer, graph_phases, 1, GRAPH_SPANS));
    } else {
        /* capture after one eager step, so library set-up (cuBLASLt
         * heuristics, workspaces) stays out of the graph */
        bool capture = s->ctx->cfg->cuda_graph && s->steps_done >= 1;
        if (capture) PB_TRY(be->capture_begin(s->dev));
        PB_TRY(compute(s, m));
        if (capture) {
            PB_TRY(be->capture_end(s->dev));
            s->graph_ready = true;
            PB_TRY(be->replay(s->dev)); /* capturing ran nothing: run it now */
        }
    }
    s->steps_done++;

    /* start copying the next batch, overlapping this step's work */
    PB_TRY(pb_input_prefetch_next(&s->input, batch));

    PB_TRY(be->download(s->dev, &loss, r->loss_sum, sizeof loss));
    PB_TRY(be->synchronize(s->dev));
    memset(out, 0, sizeof *out);
    PB_TRY(pb_phase_timer_collect(&s->timer, &out->t));
    out->loss = loss;
cleanup:
    return st;
}

static pb_status single_get_params(void *state, float *host_params)
{
    single_state *s = state;
    return pb_replica_download_params(&s->rep, host_params);
}

static pb_status single_memory(void *state, pb_memory_report *out)
{
    single_state *s = state;
    out->peak_mb_max = out->peak_mb_dev0 = s->ctx->be->peak_mem_mb(s->dev);
    return PB_OK;
}

static pb_status single_device_info(void *state, pb_device_info *out)
{
    single_state *s = state;
    return s->ctx->be->info(s->dev, out);
}

const pb_strategy pb_strategy_single = {
    .name = "single",
    .description = "one device, the whole model: the reference",
    .procs = PB_PROC_ONE,
    .needs_even_split = true,
    .momentum_in_wgrad = true,
    .validate = single_validate,
    .init = single_init,
    .step = single_step,
    .get_params = single_get_params,
    .memory = single_memory,
    .device_info = single_device_info,
    .destroy = single_destroy,
};
