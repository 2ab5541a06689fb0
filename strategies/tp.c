/* `tp`: tensor parallelism as Megatron-LM splits a model, one MPI rank per
 * device. Every rank holds its part of every block (the workload says how a
 * block splits: workloads/workload.h, pb_tp_split; the MLP's layer pairs
 * column- then row-parallel, GPT's attention heads and MLP), the whole of
 * what is replicated, and trains on the whole global batch. Each step,
 *   h2d      the batch (every rank all of it),
 *   fwd      forward and the loss (the same on every rank: the model's
 *            output is whole after each row-parallel layer's sum),
 *   tp_comm  the all-reduces the stage asks for: after each row-parallel
 *            layer in forward (Megatron's g) and on each column-parallel
 *            layer's input gradient in backward (f); they block the stage,
 *            so all of their time is exposed, cut out of fwd and bwd,
 *   bwd      backward: each rank's gradients of its part, and identical
 *            gradients of the replicated tensors (their inputs and output
 *            gradients are the same on every rank),
 *   opt      the optimizer over the rank's part; no gradient reduction.
 *
 * The hybrid mesh (--strategy mesh, strategies/mesh.c) runs this step in
 * each of its tp groups: the group trains on its data-parallel shard of the
 * batch, and after backward its gradients are all-reduced across the dp
 * group (a `sync` phase: ddp's --no-overlap), with the loss. With pipeline
 * stages (--pp > 1) the replica holds the rank's stage only, and
 * strategies/pipe.c runs h2d, fwd and bwd over the microbatches in place
 * of the whole-batch pass (whole_pass), then the stages' tied gradient and
 * loss in the sync span; bubble is the step's time outside the spans.
 * A pipelined mesh with --zero-stage 1|2 (s->zero): the sync span
 * all-reduces the loss only and, after the tied gradient's exchange,
 * reduce-scatters the stage's blocks over the dp group; opt is zero's
 * update of the rank's chunks and the all-gathers (zero.h,
 * pb_zero_piped_*); the replica keeps no optimizer state.
 *
 * --sequence-parallel (the GPT: workloads/gpt_stage.c): the stage keeps its
 * part of the tokens between a row- and the next column-parallel layer and
 * calls tp_reduce_scatter / tp_allgather there instead (timed as tp_comm
 * too), tp_allreduce only for the LayerNorms' gradients.
 *
 * get_params gathers every rank's part to rank 0 (a collective), for
 * --verify and --dump. GPUs: the all-reduces run in place on the device
 * with --comm nccl, host-staged with --comm mpi (compiled, not run on a GPU
 * yet). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/memplan.h"
#include "../harness/phase.h"
#include "../kernels/comm.h"
#include "../kernels/progress.h"
#include "../kernels/world.h"
#include "../harness/timer.h"
#include "input.h"
#include "pipe.h"
#include "replica.h"
#include "dp_common.h"
#include "strategy.h"
#include "tp.h"
#include "volume.h"
#include "zero.h"

typedef struct tp_state {
    const pb_strategy_ctx *ctx;
    int rank, ranks;
    pb_device *dev;
    pb_model *local;     /* this rank's part of the model */
    float *local_init;   /* its initial parameters (host) */
    pb_replica rep;
    pb_phase_timer timer;
    pb_comm_ctx *comm;   /* the tp group: the world, or the mesh's tp group */
    pb_mesh mesh;
    pb_comm_ctx *world;  /* the mesh's world, split into groups (NULL for tp) */
    pb_comm_ctx *groups[PB_MESH_AXES];
    int row0, rows;      /* the rows of the batch this rank trains on (its dp shard) */
    float *host_grads;   /* dp's all-reduce staged through the host (GPU with a host comm) */
    float loss_host;
    bool staged;         /* a GPU with a host comm: all-reduces staged through host_buf */
    float *host_buf;     /* the largest all-reduce (staged only) */
    size_t host_len;
    pb_phase cur;        /* the phase an all-reduce interrupts (fwd or bwd) */
    int64_t step;
    double comm_ms;      /* this step's collectives, as the comm timed them */
    size_t floats;       /* floats all-reduced in the last step */
    size_t rs_floats, ag_floats; /* the whole buffers reduce-scattered, all-gathered (sequence parallel) */
    int count;           /* all-reduces in the last step */
    float *gather;       /* get_params: every rank's part, n_params of local each */
    pb_input input;
    bool piped;          /* the mesh's pp > 1: this rank is a stage of pipe */
    pb_pipe pipe;
    void *zero;          /* piped with --zero-stage: ZeRO over the dp group in place of its all-reduce (zero.h) */
} tp_state;

pb_status pb_tp_validate_parts(const pb_config *cfg, const pb_model *model, int tp, const char *name)
{
    if (!pb_mpi_available())
        return pb_user_error(PB_ERR_UNAVAILABLE,
                             "strategy %s: built without MPI (install Open MPI so `make` finds mpicc, and rebuild)", name);
    if (cfg->cuda_graph) return pb_usage_error("--cuda-graph applies to --strategy single, not %s", name);
    if (cfg->precision == PB_BF16)
        return pb_usage_error("--precision bf16: strategy %s all-reduces fp32 activations; allowed: fp32, tf32", name);
    pb_model *local = malloc(sizeof *local);
    if (!local) return pb_error(PB_ERR_NOMEM, "out of host memory: a model description");
    /* the workload's own refusal (heads or hidden width not divisible) */
    pb_status st = pb_model_describe_tp(model->ops, &model->shape, tp, local);
    free(local);
    if (st != PB_OK || !cfg->sequence_parallel) return st;
    /* Megatron's sequence parallelism splits a GPT's tokens (mesh.c says
     * --tp where these say --gpus) */
    if (model->seq == 0)
        return pb_usage_error("--sequence-parallel: the %s workload has no sequence to split; allowed: a gpt workload",
                              model->ops->kind);
    if (tp < 2)
        return pb_usage_error("--sequence-parallel needs tensor-parallel ranks to split the tokens over; allowed: "
                              "--gpus 2 or more");
    if (model->seq % tp != 0)
        return pb_usage_error("--sequence-parallel: --seq %d is not divisible by --gpus %d; allowed: a multiple of %d",
                              model->seq, tp, tp);
    return PB_OK;
}

static pb_status tp_validate(const pb_config *cfg, const pb_model *model)
{
    return pb_tp_validate_parts(cfg, model, cfg->devices, "tp");
}

void pb_tp_destroy(void *state)
{
    tp_state *s = state;
    if (!s) return;
    const pb_backend *be = s->ctx->be;
    /* split groups before the world they came from */
    for (int a = 0; a < PB_MESH_AXES; a++)
        if (s->groups[a]) s->ctx->comm->destroy(s->groups[a]);
    if (s->world) s->ctx->comm->destroy(s->world);
    else if (s->comm) s->ctx->comm->destroy(s->comm);
    if (s->timer.be) pb_phase_timer_destroy(&s->timer);
    pb_zero_piped_destroy(s->zero);
    pb_pipe_destroy(&s->pipe);
    pb_input_destroy(&s->input);
    pb_replica_destroy(&s->rep);
    if (s->dev) be->close(s->dev);
    free(s->host_buf);
    free(s->host_grads);
    free(s->gather);
    free(s->local_init);
    free(s->local);
    free(s);
}

/* "tp", or "mesh" for a mesh of several replicas: what a failed wait's
 * message (pb_with_step) names */
static const char *strategy_name(const tp_state *s) { return s->mesh.dp > 1 || s->piped ? "mesh" : "tp"; }

/* A stage's collective as a tp_comm span cut out of the phase it
 * interrupts: begin (staged: checks n fits the host buffer) */
static pb_status tp_span_begin(tp_state *s, size_t n, const char *what)
{
    pb_status st = PB_OK;
    PB_REQUIRE(!s->staged || n <= s->host_len, PB_ERR_INTERNAL, "tp: an %s of %zu floats, staging for %zu", what, n,
               s->host_len);
    PB_TRY(pb_phase_end(&s->timer));
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_TP_COMM));
cleanup:
    return st;
}

/* its wait, its time counted */
static pb_status tp_wait(tp_state *s, pb_comm_req *req)
{
    const pb_comm *comm = s->ctx->comm;
    pb_status st = pb_with_step(comm->wait(s->comm, req, s->ctx->cfg->timeout_s), strategy_name(s), s->step);
    if (st == PB_OK && comm->req_ms) s->comm_ms += comm->req_ms(req);
    return st;
}

/* and its end, back in the phase it interrupted */
static pb_status tp_span_end(tp_state *s)
{
    pb_status st = pb_phase_end(&s->timer);
    return st == PB_OK ? pb_phase_begin(&s->timer, s->cur) : st;
}

/* The stage's sum across ranks (pb_stage_hooks.tp_allreduce) */
static pb_status tp_allreduce(void *arg, void *buf, size_t n)
{
    tp_state *s = arg;
    const pb_backend *be = s->ctx->be;
    const pb_comm *comm = s->ctx->comm;
    pb_status st = PB_OK;
    pb_comm_req *req = NULL;
    float *b = s->staged ? s->host_buf : buf;
    PB_TRY(tp_span_begin(s, n, "all-reduce"));
    if (s->staged) PB_TRY(be->download(s->dev, s->host_buf, buf, n * sizeof(float)));
    PB_TRY(comm->allreduce(s->comm, b, n, 1.0f, &req));
    PB_TRY(tp_wait(s, req));
    if (s->staged) PB_TRY(be->upload(s->dev, buf, s->host_buf, n * sizeof(float)));
    s->floats += n;
    s->count++;
    PB_TRY(tp_span_end(s));
cleanup:
    return st;
}

/* Sequence parallel (pb_stage_hooks.tp_reduce_scatter): n floats summed,
 * this rank's n / T of the sum into out (staged: in place in the host
 * buffer, as NCCL's in-place rule has it) */
static pb_status tp_reduce_scatter(void *arg, const void *in, void *out, size_t n)
{
    tp_state *s = arg;
    const pb_backend *be = s->ctx->be;
    const pb_comm *comm = s->ctx->comm;
    pb_status st = PB_OK;
    pb_comm_req *req = NULL;
    size_t chunk = n / (size_t)s->ranks;
    float *mine = s->host_buf ? s->host_buf + (size_t)s->rank * chunk : NULL;
    PB_TRY(tp_span_begin(s, n, "reduce-scatter"));
    if (s->staged) {
        PB_TRY(be->download(s->dev, s->host_buf, in, n * sizeof(float)));
        PB_TRY(comm->reduce_scatter(s->comm, s->host_buf, mine, chunk, &req));
    } else {
        PB_TRY(comm->reduce_scatter(s->comm, in, out, chunk, &req));
    }
    PB_TRY(tp_wait(s, req));
    if (s->staged) PB_TRY(be->upload(s->dev, out, mine, chunk * sizeof(float)));
    s->rs_floats += n;
    PB_TRY(tp_span_end(s));
cleanup:
    return st;
}

/* Sequence parallel (pb_stage_hooks.tp_allgather): every rank's n / T
 * floats into buf, in place */
static pb_status tp_allgather(void *arg, void *buf, size_t n)
{
    tp_state *s = arg;
    const pb_backend *be = s->ctx->be;
    const pb_comm *comm = s->ctx->comm;
    pb_status st = PB_OK;
    pb_comm_req *req = NULL;
    size_t chunk = n / (size_t)s->ranks, off = (size_t)s->rank * chunk;
    float *b = s->staged ? s->host_buf : buf;
    PB_TRY(tp_span_begin(s, n, "all-gather"));
    if (s->staged) PB_TRY(be->download(s->dev, b + off, (float *)buf + off, chunk * sizeof(float)));
    PB_TRY(comm->allgather(s->comm, b + off, b, chunk * sizeof(float), &req));
    PB_TRY(tp_wait(s, req));
    if (s->staged) PB_TRY(be->upload(s->dev, buf, b, n * sizeof(float)));
    s->ag_floats += n;
    PB_TRY(tp_span_end(s));
cleanup:
    return st;
}

pb_status pb_tp_init_mesh(const pb_strategy_ctx *ctx, pb_mesh mesh, void **state)
{
    pb_status st = PB_OK;
    tp_state *s = NULL;
    const pb_backend *be = ctx->be;
    const pb_config *cfg = ctx->cfg;
    const pb_model *model = ctx->model;
    PB_ALLOC(s, 1);
    s->ctx = ctx;
    s->mesh = mesh;
    PB_REQUIRE(ctx->comm && ctx->ranks >= 1 && ctx->ranks == cfg->devices && pb_mesh_ranks(mesh) == ctx->ranks,
               PB_ERR_INTERNAL, "tp: %d ranks for --gpus %d", ctx->ranks, cfg->devices);
    /* this rank's place in its tp group, and its dp shard of the batch */
    s->rank = pb_mesh_index(mesh, ctx->rank, PB_MESH_TP);
    s->ranks = mesh.tp;
    pb_input_shard(cfg->shape.batch, mesh.dp, pb_mesh_index(mesh, ctx->rank, PB_MESH_DP), &s->row0, &s->rows);
    PB_ALLOC(s->local, 1);
    PB_TRY(pb_model_describe_tp(model->ops, &model->shape, s->ranks, s->local));
    s->local->seq_parallel = cfg->sequence_parallel;
    PB_ALLOC(s->local_init, s->local->n_params);
    pb_model_tp_shard(model, s->local, s->rank, ctx->init_params, s->local_init);

    pb_device_opts dev_opts = pb_config_model_device_opts(cfg, model);
    PB_TRY(be->open(&dev_opts, ctx->device, &s->dev));
    /* a pipeline stage (pipe.h): its blocks, over microbatches */
    int rows = s->rows, b0 = 0, b1 = s->local->n_blocks, slots = 1;
    s->piped = mesh.pp > 1;
    if (s->piped) pb_pipe_stage_rows(&s->pipe, cfg, model, mesh, ctx->rank, &b0, &b1, &rows, &slots);
    bool targets = !s->piped || s->pipe.k == mesh.pp - 1;
    /* ZeRO keeps the optimizer state of the rank's chunks only */
    bool zero = s->piped && pb_config_given(cfg, "--zero-stage");
    PB_TRY(pb_replica_init(&s->rep, be, s->dev, cfg, s->local, b0, b1, rows, slots, s->local_init, !zero, targets));
    s->rep.tp_allreduce = tp_allreduce;
    if (cfg->sequence_parallel) {
        s->rep.tp_reduce_scatter = tp_reduce_scatter;
        s->rep.tp_allgather = tp_allgather;
    }
    s->rep.tp_rank = s->rank;
    s->rep.tp_arg = s;
    /* each collective cuts its phase in two: at most two a block each way
     * (GPT's; sequence parallel four forward and six backward, with the
     * LayerNorms' sums), and h2d, fwd, bwd, opt */
    int per_block = cfg->sequence_parallel ? 20 : 8;
    int spans = s->piped ? pb_pipe_spans(&s->pipe, s->local->n_blocks) : 8 + per_block * s->local->n_blocks;
    PB_TRY(pb_phase_timer_init_spans(&s->timer, be, s->dev, spans));
    pb_comm_opts comm_opts = pb_config_comm_opts(cfg);
    if (mesh.dp == 1 && mesh.pp == 1) {
        PB_TRY(ctx->comm->init(&comm_opts, be, s->dev, s->rank, s->ranks, &s->comm));
    } else {
        PB_TRY(ctx->comm->init(&comm_opts, be, s->dev, ctx->rank, ctx->ranks, &s->world));
        PB_TRY(pb_mesh_split(ctx->comm, s->world, mesh, ctx->rank, cfg->timeout_s, s->groups));
        s->comm = s->groups[PB_MESH_TP];
    }
    s->staged = !be->host_is_device && !ctx->comm->device_buffers;
    if (zero && s->staged) {
        st = pb_user_error(PB_ERR_UNAVAILABLE, "mesh --zero-stage on %s: --comm %s stages nothing through the host; "
                           "use --comm nccl", be->name, ctx->comm->name);
        goto cleanup;
    }
    if (zero)
        PB_TRY(pb_zero_piped_init(ctx, s->dev, &s->rep, s->groups[PB_MESH_DP], pb_mesh_index(mesh, ctx->rank, PB_MESH_DP),
                                  mesh.dp, &s->zero));
    if (s->staged && mesh.dp > 1) PB_ALLOC(s->host_grads, s->rep.p_len);
    if (s->staged) {
        /* a sum carries a block's whole input or output activations */
        for (int b = b0; b < b1; b++) {
            const pb_block_desc *d = &s->local->block[b];
            size_t w = d->in_elems > d->out_elems ? d->in_elems : d->out_elems;
            if ((size_t)rows * w > s->host_len) s->host_len = (size_t)rows * w;
        }
        PB_ALLOC(s->host_buf, s->host_len);
    }
    if (s->piped)
        PB_TRY(pb_pipe_init(&s->pipe, be, s->dev, s->local, ctx->comm, s->groups[PB_MESH_PP], &s->rep, &s->timer,
                            &s->cur, s->staged, s->row0));
    else
        PB_TRY(pb_input_init(&s->input, be, s->dev, s->row0, (size_t)rows, model,
                             be->host_is_device && !s->rep.params_c));
    *state = s;
    return PB_OK;
cleanup:
    pb_tp_destroy(s);
    return st;
}

static pb_status tp_init(const pb_strategy_ctx *ctx, void **state)
{
    return pb_tp_init_mesh(ctx, (pb_mesh){.dp = 1, .tp = ctx->ranks, .pp = 1}, state);
}

/* The mesh's data-parallel sum after backward: the gradients of this
 * rank's part and the loss, across the replicas of its part (the dp
 * group), blocking: ddp's --no-overlap. Both are scaled by 1/B already.
 * With ZeRO (s->zero) the loss only: zero reduce-scatters the gradients. */
static pb_status dp_sync(tp_state *s, int64_t step)
{
    const pb_backend *be = s->ctx->be;
    const pb_comm *comm = s->ctx->comm;
    pb_comm_ctx *dp = s->groups[PB_MESH_DP];
    pb_replica *r = &s->rep;
    pb_status st = PB_OK;
    pb_comm_req *req = NULL, *loss_req = NULL;
    float *g = r->grads;
    if (s->staged && !s->zero) {
        PB_TRY(be->download(s->dev, s->host_grads, r->grads, r->p_len * sizeof(float)));
        g = s->host_grads;
    }
    if (comm->device_buffers) {
        PB_TRY(comm->allreduce(dp, r->loss_sum, 1, 1.0f, &loss_req));
    } else {
        PB_TRY(be->download(s->dev, &s->loss_host, r->loss_sum, sizeof(float)));
        PB_TRY(comm->allreduce(dp, &s->loss_host, 1, 1.0f, &loss_req));
    }
    if (!s->zero) PB_TRY(comm->allreduce(dp, g, r->p_len, 1.0f, &req));
    PB_TRY(pb_with_step(comm->wait(dp, loss_req, s->ctx->cfg->timeout_s), strategy_name(s), step));
    if (comm->req_ms) s->comm_ms += comm->req_ms(loss_req);
    if (s->zero) goto loss;
    PB_TRY(pb_with_step(comm->wait(dp, req, s->ctx->cfg->timeout_s), strategy_name(s), step));
    if (comm->req_ms) s->comm_ms += comm->req_ms(req);
    if (s->staged) PB_TRY(be->upload(s->dev, r->grads, s->host_grads, r->p_len * sizeof(float)));
loss:
    if (comm->device_buffers) PB_TRY(be->download(s->dev, &s->loss_host, r->loss_sum, sizeof(float)));
cleanup:
    return st;
}

/* h2d, forward, the loss and backward of the rank's rows at once (no
 * pipeline) */
static pb_status whole_pass(tp_state *s, const pb_batch *batch)
{
    const pb_backend *be = s->ctx->be;
    pb_replica *r = &s->rep;
    pb_status st = PB_OK;
    /* its dp shard's rows (the whole batch for tp); the loss averages over
     * the global batch */
    int m = s->rows, bsz = s->ctx->cfg->shape.batch;
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_H2D));
    PB_TRY(pb_input_load_replica(&s->input, batch, r));
    PB_TRY(pb_phase_end(&s->timer));

    s->cur = PB_PHASE_FWD;
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_FWD));
    PB_TRY(be->zero(s->dev, r->loss_sum, sizeof(float)));
    PB_TRY(pb_replica_forward(r, 0, m));
    PB_TRY(pb_replica_loss(r, 0, m, 1.0f / (float)bsz));
    PB_TRY(pb_phase_end(&s->timer));

    s->cur = PB_PHASE_BWD;
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_BWD));
    PB_TRY(pb_replica_backward(r, 0, m, NULL, NULL, NULL, NULL));
    PB_TRY(pb_phase_end(&s->timer));
cleanup:
    return st;
}

pb_status pb_tp_step(void *state, const pb_batch *batch, pb_step_result *out)
{
    tp_state *s = state;
    const pb_backend *be = s->ctx->be;
    pb_replica *r = &s->rep;
    pb_status st = PB_OK;
    double t0 = pb_now_ms();
    pb_progress_set_step(batch->step);
    s->step = batch->step;
    s->comm_ms = 0.0;
    s->floats = s->rs_floats = s->ag_floats = 0;
    s->count = 0;
    pb_phase_timer_reset(&s->timer);
    if (s->piped) PB_TRY(pb_pipe_run(&s->pipe, batch));
    else PB_TRY(whole_pass(s, batch));

    if (s->mesh.dp > 1 || s->piped) {
        PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_SYNC));
        if (s->mesh.dp > 1) PB_TRY(dp_sync(s, batch->step));
        else PB_TRY(be->download(s->dev, &s->loss_host, r->loss_sum, sizeof(float)));
        /* the tied gradient's ends, the loss to every stage */
        if (s->piped) PB_TRY(pb_pipe_finish(&s->pipe, &s->loss_host));
        /* ZeRO: after the tied gradient's exchange, both ends reduced alike */
        if (s->zero) PB_TRY(pb_with_step(pb_zero_piped_reduce(s->zero, &s->comm_ms), strategy_name(s), batch->step));
        PB_TRY(pb_phase_end(&s->timer));
    } else {
        PB_TRY(be->download(s->dev, &s->loss_host, r->loss_sum, sizeof(float)));
    }

    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_OPT));
    if (s->zero) {
        PB_TRY(pb_with_step(pb_zero_piped_update(s->zero, &s->comm_ms), strategy_name(s), batch->step));
    } else {
        PB_TRY(pb_replica_tie_grads(r));
        PB_TRY(pb_replica_optimize(r));
    }
    PB_TRY(pb_phase_end(&s->timer));

    if (!s->piped) PB_TRY(pb_input_prefetch_next(&s->input, batch));
    PB_TRY(be->synchronize(s->dev));
    memset(out, 0, sizeof *out);
    PB_TRY(pb_phase_timer_collect(&s->timer, &out->t));
    if (s->piped) {
        /* the stage's bubble: the step's time outside its spans, waiting
         * on its neighbours (mp's definition) */
        double busy = 0.0;
        for (int p = 0; p < PB_PHASE_COUNT; p++) busy += out->t.ms[p];
        double idle = pb_now_ms() - t0 - busy;
        out->t.ms[PB_PHASE_BUBBLE] = idle > 0.0 ? idle : 0.0;
        s->comm_ms += s->pipe.comm_ms;
    }
    /* all of it blocked the stage: comm is tp_comm's collectives (and the
     * mesh's dp sync, all exposed too) */
    out->t.ms[PB_PHASE_COMM] = s->comm_ms;
    if (s->zero) pb_zero_piped_times(s->zero, &out->t.ms[PB_PHASE_REDUCE_SCATTER], &out->t.ms[PB_PHASE_ALLGATHER]);
    out->loss = s->loss_host;
cleanup:
    return st;
}

pb_status pb_tp_gather_parts(const pb_strategy_ctx *ctx, pb_comm_ctx *tp, pb_device *dev, const pb_model *local,
                            int rank, int ranks, float *gather, float *host_params)
{
    const pb_backend *be = ctx->be;
    const pb_comm *comm = ctx->comm;
    pb_status st = PB_OK;
    pb_comm_req *req = NULL;
    size_t n = local->n_params;
    float *mine = gather + (size_t)rank * n;
    if (comm->device_buffers) {
        /* nccl gathers device buffers: through a device copy of the parts */
        void *d = NULL;
        PB_TRY(be->alloc(dev, n * (size_t)ranks * sizeof(float), &d));
        st = be->upload(dev, (float *)d + (size_t)rank * n, mine, n * sizeof(float));
        if (st == PB_OK) st = comm->allgather(tp, (float *)d + (size_t)rank * n, d, n * sizeof(float), &req);
        if (st == PB_OK) st = comm->wait(tp, req, ctx->cfg->timeout_s);
        if (st == PB_OK) st = be->download(dev, gather, d, n * (size_t)ranks * sizeof(float));
        be->free(dev, d);
        PB_TRY(st);
    } else {
        PB_TRY(comm->allgather(tp, mine, gather, n * sizeof(float), &req));
        PB_TRY(comm->wait(tp, req, ctx->cfg->timeout_s));
    }
    if (host_params)
        for (int r = 0; r < ranks; r++) pb_model_tp_unshard(ctx->model, local, r, gather + (size_t)r * n, host_params);
cleanup:
    return st;
}

/* Every rank's part to rank 0 (a collective: every rank calls it), put
 * back into the whole model's layout there. */
pb_status pb_tp_get_params(void *state, float *host_params)
{
    tp_state *s = state;
    pb_status st = PB_OK;
    size_t n = s->local->n_params;
    if (!s->gather) PB_ALLOC(s->gather, n * (size_t)s->ranks);
    float *mine = s->gather + (size_t)s->rank * n;
    /* a stage's blocks only: the pp group's stages make the part whole */
    if (s->piped) PB_TRY(pb_pipe_gather_params(&s->pipe, mine));
    else PB_TRY(s->ctx->be->download(s->dev, mine, s->rep.params, n * sizeof(float)));
    PB_TRY(pb_tp_gather_parts(s->ctx, s->comm, s->dev, s->local, s->rank, s->ranks, s->gather, host_params));
cleanup:
    return st;
}

pb_status pb_tp_memory(void *state, pb_memory_report *out)
{
    tp_state *s = state;
    out->peak_mb_max = out->peak_mb_dev0 = s->ctx->be->peak_mem_mb(s->dev);
    return PB_OK;
}

pb_status pb_tp_device_info(void *state, pb_device_info *out)
{
    tp_state *s = state;
    return s->ctx->be->info(s->dev, out);
}

/* A rank's device: its part of the model (parameters, gradients and
 * optimizer state divided as the tensors split, T ways) over the rows it
 * trains on (the batch, or the largest of the mesh's D shards), the
 * activations of its part (the split ones divided), and its input staging */
void pb_tp_plan_memory_mesh(const pb_config *cfg, const pb_model *model, const pb_memplan_env *env, pb_mesh mesh,
                            pb_mem_parts *dev)
{
    pb_model *local = malloc(sizeof *local);
    if (!local) return;
    if (pb_model_describe_tp(model->ops, &model->shape, mesh.tp, local) != PB_OK) {
        pb_error_clear(); /* validation refused it already */
    } else if (mesh.pp > 1) {
        local->seq_parallel = cfg->sequence_parallel;
        pb_pipe_plan_memory(cfg, model, local, env, mesh, dev);
    } else {
        local->seq_parallel = cfg->sequence_parallel;
        double e = (double)pb_memplan_act_elem(cfg, env->host_is_device);
        double rows = ceil(cfg->shape.batch / (double)mesh.dp);
        pb_memplan_add_replica(local, 0, local->n_blocks, rows, 1, true, true, false, cfg->optimizer, e, dev);
        pb_memplan_add_staging(local, rows, pb_memplan_in_place(cfg, env), dev);
    }
    free(local);
}

static void tp_plan_memory(const pb_config *cfg, const pb_model *model, const pb_memplan_env *env,
                           pb_mem_parts *dev)
{
    pb_tp_plan_memory_mesh(cfg, model, env, (pb_mesh){.dp = 1, .tp = cfg->devices, .pp = 1}, dev);
}

/* The collectives' volume (the last step's, as the stage asked for them,
 * plus the mesh's gradient all-reduce over its D replicas: docs/
 * strategies.md has the formulas they must equal) and nccl-tests'
 * bandwidths over their time (tp alone: the ring's wire bytes over the
 * time; a mesh's two groups have different bus factors, so its busbw is
 * left empty). Sequence parallel: a ring reduce-scatter or all-gather of a
 * whole buffer of S bytes moves S (T-1)/T. */
void pb_tp_report(void *state, const pb_step_times *mean, pb_record *row)
{
    tp_state *s = state;
    double tp_floats = (double)(s->floats + s->rs_floats + s->ag_floats), comm = mean->ms[PB_PHASE_COMM];
    double dp_floats = s->mesh.dp > 1 && !s->zero ? (double)s->rep.p_len : 0.0;
    double bytes = (tp_floats + dp_floats) * sizeof(float);
    double algbw = comm > 0 ? bytes / (comm * 1e-3) / 1e9 : NAN;
    int n = s->ranks;
    pb_comm_bytes vol = pb_comm_bytes_none();
    vol.allreduce = pb_ring_allreduce_bytes((double)s->floats, n) + pb_ring_allreduce_bytes(dp_floats, s->mesh.dp);
    if (s->piped) {
        vol.p2p = pb_pipe_p2p_bytes(&s->pipe);
        bytes += vol.p2p;
        pb_pipe_report(&s->pipe, mean, row);
    }
    if (s->zero) pb_zero_piped_bytes(s->zero, &vol, &bytes);
    if (s->local->seq_parallel) {
        vol.reduce_scatter = (double)s->rs_floats * sizeof(float) * (n - 1) / n;
        vol.allgather = (double)s->ag_floats * sizeof(float) * (n - 1) / n;
    }
    pb_record_set(row, PB_COL_COMM_BYTES_PER_STEP, "%.0f", bytes);
    pb_comm_bytes_record(&vol, row);
    pb_record_num(row, PB_COL_ALGBW_GBPS, algbw);
    double wire = vol.allreduce + (s->local->seq_parallel ? vol.reduce_scatter + vol.allgather : 0.0);
    pb_record_num(row, PB_COL_BUSBW_GBPS, s->mesh.dp > 1 || s->piped || !(comm > 0) ? NAN : wire / (comm * 1e-3) / 1e9);
}

const pb_strategy pb_strategy_tp = {
    .name = "tp",
    .description = "tensor parallel (Megatron): a rank per device, each block split across ranks, all-reduces in "
                   "forward and backward",
    .procs = PB_PROC_PER_DEVICE,
    .needs_even_split = false,
    .rank_full_batch = true,
    .params_collective = true,
    .validate = tp_validate,
    .init = tp_init,
    .step = pb_tp_step,
    .get_params = pb_tp_get_params,
    .memory = pb_tp_memory,
    .device_info = pb_tp_device_info,
    .plan_memory = tp_plan_memory,
    .report = pb_tp_report,
    .destroy = pb_tp_destroy,
};
