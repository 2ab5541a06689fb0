/* `zero`: sharded data parallelism, one MPI rank per device, like DeepSpeed
 * ZeRO stages 1-3 and PyTorch FSDP (docs/strategies.md, "zero").
 *
 * Over a group: the mesh's dp group (strategies/mesh.c with --zero-stage,
 * pb_zero_init_mesh) shards each rank's tp part of the model across the D
 * ranks holding the same part, tp's all-reduces on the tp group from the
 * stage's hook (tp_comm, exposed); --strategy zero is that mesh with tp 1,
 * the world its dp group. Below, N, "rank" and "the model" are the dp
 * group's size, the rank in it and the rank's part. A pipelined mesh
 * (--pp > 1, stages 1 and 2) uses this file's layout, shards and update
 * over its stage's blocks from tp.c's step instead (pb_zero_piped_*, at
 * the end): synchronous, block by block, after the last microbatch.
 *
 * Sharding is per block, FSDP's unit: block b's flat span of len floats is
 * padded to N equal chunks of c = ceil(len / N), and rank r owns chunk r of
 * every block: its part of the fp32 master weights, of the reduced
 * gradient and of the optimizer state. A step:
 *   h2d   the rank's rows of the global batch (as ddp),
 *   fwd   forward and the loss scaled by 1/B; stage 3 all-gathers each
 *         block's parameters before it runs (before_block), the next
 *         block's gather already in flight, into one of two block buffers
 *         (a block's buffer is reused two gathers later: freed after use);
 *         blocks 0 and 1's gathers were launched by the last step's
 *         optimizer,
 *   bwd   backward; stage 3 gathers every block again before its backward
 *         but the last, whose forward gather is still in its buffer (as
 *         FSDP keeps the root's parameters: one gather fewer a step);
 *         as blocks complete (grads_ready), whole blocks at least
 *         --bucket-mb together are reduce-scattered: a rank receives the
 *         sum over ranks of its chunk of each block,
 *   sync  waits for the reduce-scatters still in flight (exposed),
 *   opt   the optimizer over the rank's chunks only, split where tensors'
 *         weight decay changes; stages 1 and 2 all-gather each block's
 *         updated chunks into the full parameters as soon as the block's
 *         chunk is updated and leave them in flight: the next step's
 *         forward waits for block b's gather in before_block (exposed,
 *         counted as sync), so they overlap the step's end, the next
 *         step's input and earlier blocks' forward; whatever reads the
 *         full parameters before then (get_params, destroy) waits first.
 *         Stage 3 likewise launches the next step's gathers of blocks 1
 *         and 0 as soon as their chunks are updated.
 * Gradients: stage 1 keeps a full gradient buffer (backward writes it, the
 * reduce-scatters read it); stages 2 and 3 keep a block's gradients only
 * from its backward until its reduce-scatter is done, in a pool of block
 * buffers, plus the reduced chunks.
 *
 * The tied tensor (GPT's LM head): the last block's gradients stay until
 * block 0's are complete, then both tied gradients are made their local sum
 * (pb_replica_tie_grads' rule) before either block is reduce-scattered, so
 * both copies get the same reduced gradient and stay equal.
 *
 * Timing (as ddp): reduce_scatter and allgather are the collectives' own
 * time (the comm's clock), comm their sum; sync the exposed waits: after
 * backward, and the waits for a gather in before_block (stages 1/2:
 * the previous step's, whose collective time is counted in the step that
 * waits; stage 3: this step's) (host clock, moved from fwd/bwd to sync; on a GPU those waits
 * are stream dependencies the host does not see).
 *
 * GPUs: the comm must reduce device buffers (--comm nccl): there is no
 * host staging here; bf16 compute copies are not kept (fp32/tf32 only). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/memplan.h"
#include "../harness/mesh.h"
#include "../harness/phase.h"
#include "../harness/timer.h"
#include "../kernels/comm.h"
#include "../kernels/progress.h"
#include "../kernels/world.h"
#include "dp_common.h"
#include "input.h"
#include "replica.h"
#include "strategy.h"
#include "tp.h"
#include "volume.h"
#include "zero.h"

typedef struct zero_block {
    size_t len, chunk; /* floats of the block, of one rank's chunk (len padded to N chunks) */
    size_t pad_off;    /* offset in the padded full buffers (stages 1 and 2) */
    size_t shard_off;  /* offset of the rank's chunk in its shard buffers */
    int bucket_low;    /* the lowest block of its bucket: its grads_ready launches the bucket */
    int slot;          /* stage 2/3: the gradient pool slot holding its gradients, -1 none */
    pb_comm_req *rs, *ag; /* this step's reduce-scatter, stage 1/2 all-gather */
} zero_block;

typedef struct grad_slot {
    float *buf;
    int block; /* -1: free */
    bool inflight;
    int64_t order; /* launch order, the oldest is waited first */
} grad_slot;

typedef struct zero_state {
    const pb_strategy_ctx *ctx;
    int rank, ranks, stage; /* rank and ranks in the dp group (the world for --strategy zero) */
    int row0, shard;
    pb_device *dev;
    pb_replica rep; /* stage, targets and loss; blocks through rep.blocks */
    pb_phase_timer timer;
    pb_comm_ctx *comm;   /* the dp group: what is sharded over */
    /* the mesh (--strategy mesh --zero-stage): this rank's tp part of the
     * model (the whole model at tp 1), its tp group and the split world */
    pb_mesh mesh;
    int tp_rank;
    const pb_model *model;
    pb_model *local;     /* owned, tp > 1 */
    float *local_init;   /* its initial parameters (host), tp > 1 */
    pb_comm_ctx *world, *groups[PB_MESH_AXES];
    double tp_ms, tp_comm_ms; /* this step: tp all-reduces' host time, collectives' time */
    size_t tp_floats;    /* floats tp all-reduced in the last step */
    float *gather;       /* get_params: every tp rank's part */
    pb_input input;

    int n;               /* blocks */
    zero_block *blk;
    pb_block_bufs *tab;  /* what the workload reads: blocks' current buffers */
    pb_zero_layout layout;

    float *full_params;  /* stages 1/2: every block padded; the rank's chunks are its master */
    float *full_grads;   /* stage 1 */
    float *shard_params; /* stage 3: the rank's master chunks */
    float *shard_grads, *m, *v;
    float *pslot[2];     /* stage 3: gathered blocks */
    pb_comm_req *preq[2]; /* stage 3: the slot's gather, while in flight */
    int pseq[2];         /* stage 3: the gather (gather_seq) the slot holds or awaits, -1 none */
    grad_slot *gslot;    /* stages 2/3 */
    int n_gslots;
    int64_t launches;
    int opt_steps;

    /* a pipelined mesh's stage (pb_zero_piped_*): blocks [b0, n) of tp's
     * replica `stage`, whose parameters and gradients are whole; a
     * block's gradients and gathered parameters go through pad_buf */
    const pb_replica *stage_rep;
    int b0;
    float *pad_buf;

    double rs_ms, ag_ms, wait_ms; /* this step: collectives' time, waits inside fwd/bwd */
    float loss_host;
    pb_comm_req *loss_req;
} zero_state;

/* --- layout (shared with the memory plan) ------------------------------------ */

/* The layout of blocks [b0, b1) (a pipeline stage's; the whole model's) */
static void layout_range(const pb_config *cfg, const pb_model *model, int b0, int b1, int ranks, pb_zero_layout *g)
{
    memset(g, 0, sizeof *g);
    size_t per = cfg->no_overlap ? SIZE_MAX : pb_bucket_floats(cfg), acc = 0;
    int in_bucket = 0;
    for (int b = b1 - 1; b >= b0; b--) {
        size_t len = model->block[b].p_len, c = (len + (size_t)ranks - 1) / (size_t)ranks;
        g->padded += c * (size_t)ranks;
        g->shard += c;
        if (b == b1 - 1) g->last_chunk = c;
        if (c * (size_t)ranks > g->max_block) g->max_block = c * (size_t)ranks;
        acc += c * (size_t)ranks;
        in_bucket++;
        if (in_bucket > g->max_bucket_blocks) g->max_bucket_blocks = in_bucket;
        if (acc >= per || b == b0) acc = 0, in_bucket = 0;
    }
    /* the blocks of a bucket not yet launched, the block below bound early
     * (before_block), one in flight, and the tied last block held */
    g->grad_slots = g->max_bucket_blocks + 2 + (model->n_tied ? 1 : 0);
    if (g->grad_slots > b1 - b0) g->grad_slots = b1 - b0;
}

void pb_zero_layout_of(const pb_config *cfg, const pb_model *model, int ranks, pb_zero_layout *g)
{
    layout_range(cfg, model, 0, model->n_blocks, ranks, g);
}

size_t pb_zero_gathered(const pb_config *cfg, const pb_zero_layout *g)
{
    return cfg->zero_stage == 3 ? 2 * g->shard - g->last_chunk : g->shard;
}

/* --- lifetime ------------------------------------------------------------------ */

static pb_status zero_validate(const pb_config *cfg, const pb_model *model)
{
    (void)model;
    if (!pb_mpi_available())
        return pb_user_error(PB_ERR_UNAVAILABLE,
                             "strategy zero: built without MPI (install Open MPI so `make` finds mpicc, and rebuild)");
    if (cfg->cuda_graph) return pb_usage_error("--cuda-graph applies to --strategy single, not zero");
    if (cfg->precision == PB_BF16)
        return pb_usage_error("--precision bf16 with --strategy zero: allowed fp32 or tf32 (zero keeps no bf16 "
                              "compute copy yet)");
    if (cfg->shape.batch < cfg->devices)
        return pb_usage_error("--batch %d is smaller than --gpus %d; zero gives every rank at least one row",
                              cfg->shape.batch, cfg->devices);
    return PB_OK;
}

/* defined with the collectives below */
static pb_status wait_gathers(zero_state *s);

static void zero_destroy(void *state)
{
    zero_state *s = state;
    if (!s) return;
    const pb_backend *be = s->ctx->be;
    /* no gather may still write the parameters as they are freed */
    if (s->comm && s->blk) (void)wait_gathers(s);
    /* split groups before the world they came from */
    for (int a = 0; a < PB_MESH_AXES; a++)
        if (s->groups[a]) s->ctx->comm->destroy(s->groups[a]);
    if (s->world) s->ctx->comm->destroy(s->world);
    else if (s->comm) s->ctx->comm->destroy(s->comm);
    if (s->timer.be) pb_phase_timer_destroy(&s->timer);
    pb_input_destroy(&s->input);
    pb_replica_destroy(&s->rep);
    if (s->dev) {
        float *bufs[] = {s->full_params, s->full_grads, s->shard_params, s->shard_grads, s->m, s->v,
                         s->pslot[0], s->pslot[1]};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(s->dev, bufs[i]);
        for (int i = 0; s->gslot && i < s->n_gslots; i++) be->free(s->dev, s->gslot[i].buf);
        be->close(s->dev);
    }
    free(s->gslot);
    free(s->gather);
    free(s->local_init);
    free(s->local);
    free(s->tab);
    free(s->blk);
    free(s);
}

static pb_status dev_buf(zero_state *s, size_t floats, float **out)
{
    pb_status st = s->ctx->be->alloc(s->dev, floats * sizeof(float), (void **)out);
    if (st != PB_OK) return st;
    return s->ctx->be->zero(s->dev, *out, floats * sizeof(float));
}

/* The rank's master chunk of block b */
static float *master(zero_state *s, int b)
{
    const zero_block *z = &s->blk[b];
    if (s->stage == 3) return s->shard_params + z->shard_off;
    return s->full_params + z->pad_off + (size_t)s->rank * z->chunk;
}

/* Block b's part of the initial parameters that this rank keeps */
static pb_status upload_params(zero_state *s, const float *init)
{
    const pb_backend *be = s->ctx->be;
    const pb_model *m = s->model;
    for (int b = 0; b < s->n; b++) {
        const zero_block *z = &s->blk[b];
        const float *src = init + m->block[b].p_off;
        if (s->stage < 3) {
            pb_status st = be->upload(s->dev, s->full_params + z->pad_off, src, z->len * sizeof(float));
            if (st != PB_OK) return st;
            continue;
        }
        size_t lo = (size_t)s->rank * z->chunk;
        size_t hi = lo + z->chunk < z->len ? lo + z->chunk : z->len;
        if (lo >= hi) continue;
        pb_status st = be->upload(s->dev, master(s, b), src + lo, (hi - lo) * sizeof(float));
        if (st != PB_OK) return st;
    }
    return PB_OK;
}

/* Blocks [b0, b1)'s chunks: offsets in the padded full buffers (*pad
 * floats in all) and in the rank's shard buffers (*shard) */
static void set_blocks(zero_state *s, int b0, int b1, size_t *pad, size_t *shard)
{
    for (int b = b0; b < b1; b++) {
        zero_block *z = &s->blk[b];
        z->len = s->model->block[b].p_len;
        z->chunk = (z->len + (size_t)s->ranks - 1) / (size_t)s->ranks;
        z->pad_off = *pad;
        z->shard_off = *shard;
        z->slot = -1;
        *pad += z->chunk * (size_t)s->ranks;
        *shard += z->chunk;
    }
}

/* defined with the collectives below */
static pb_status tp_allreduce(void *arg, void *buf, size_t n);

pb_status pb_zero_init_mesh(const pb_strategy_ctx *ctx, pb_mesh mesh, void **state)
{
    pb_status st = PB_OK;
    zero_state *s = NULL;
    const pb_backend *be = ctx->be;
    const pb_config *cfg = ctx->cfg;
    const pb_model *model = ctx->model;
    PB_ALLOC(s, 1);
    s->ctx = ctx;
    s->mesh = mesh;
    s->rank = pb_mesh_index(mesh, ctx->rank, PB_MESH_DP);
    s->ranks = mesh.dp;
    s->tp_rank = pb_mesh_index(mesh, ctx->rank, PB_MESH_TP);
    s->stage = cfg->zero_stage;
    PB_REQUIRE(ctx->comm && mesh.pp == 1 && pb_mesh_ranks(mesh) == ctx->ranks && ctx->ranks == cfg->devices &&
                   cfg->shape.batch >= s->ranks,
               PB_ERR_INTERNAL, "zero: %d ranks for --gpus %d, dp %d tp %d pp %d and a batch of %d", ctx->ranks,
               cfg->devices, mesh.dp, mesh.tp, mesh.pp, cfg->shape.batch);
    PB_REQUIRE(s->stage >= 1 && s->stage <= 3, PB_ERR_INTERNAL, "zero: stage %d", s->stage);
    pb_input_shard(cfg->shape.batch, s->ranks, s->rank, &s->row0, &s->shard);
    /* the rank's tp part is the model zero shards over the dp group */
    const float *init = ctx->init_params;
    if (mesh.tp > 1) {
        PB_ALLOC(s->local, 1);
        PB_TRY(pb_model_describe_tp(model->ops, &model->shape, mesh.tp, s->local));
        PB_ALLOC(s->local_init, s->local->n_params);
        pb_model_tp_shard(model, s->local, s->tp_rank, ctx->init_params, s->local_init);
        model = s->local;
        init = s->local_init;
    }
    s->model = model;
    s->n = model->n_blocks;

    pb_device_opts dev_opts = pb_config_model_device_opts(cfg, model);
    PB_TRY(be->open(&dev_opts, ctx->device, &s->dev));
    if (!be->host_is_device && !ctx->comm->device_buffers) {
        st = pb_user_error(PB_ERR_UNAVAILABLE, "strategy zero on %s: --comm %s stages nothing through the host; "
                           "use --comm nccl", be->name, ctx->comm->name);
        goto cleanup;
    }
    if (be->act_bytes(s->dev, 1) != sizeof(float)) {
        st = pb_user_error(PB_ERR_UNAVAILABLE, "strategy zero: %s activations are not fp32 (fp32 or tf32 only)",
                           be->name);
        goto cleanup;
    }
    PB_TRY(pb_replica_init_stage(&s->rep, be, s->dev, cfg, model, s->shard));
    PB_TRY(pb_phase_timer_init(&s->timer, be, s->dev));
    pb_comm_opts comm_opts = pb_config_comm_opts(cfg);
    if (mesh.tp == 1) {
        PB_TRY(ctx->comm->init(&comm_opts, be, s->dev, s->rank, s->ranks, &s->comm));
    } else {
        PB_TRY(ctx->comm->init(&comm_opts, be, s->dev, ctx->rank, ctx->ranks, &s->world));
        PB_TRY(pb_mesh_split(ctx->comm, s->world, mesh, ctx->rank, cfg->timeout_s, s->groups));
        s->comm = s->groups[PB_MESH_DP];
        s->rep.tp_allreduce = tp_allreduce;
        s->rep.tp_arg = s;
    }

    pb_zero_layout_of(cfg, model, s->ranks, &s->layout);
    PB_ALLOC(s->blk, s->n);
    PB_ALLOC(s->tab, s->n);
    size_t pad = 0, shard = 0, per = cfg->no_overlap ? SIZE_MAX : pb_bucket_floats(cfg), acc = 0;
    int low_of_top = s->n - 1;
    set_blocks(s, 0, s->n, &pad, &shard);
    /* buckets from the top, as backward completes blocks (pb_zero_layout_of's) */
    for (int b = s->n - 1; b >= 0; b--) {
        acc += s->blk[b].chunk * (size_t)s->ranks;
        if (acc >= per || b == 0) {
            for (int k = b; k <= low_of_top; k++) s->blk[k].bucket_low = b;
            acc = 0;
            low_of_top = b - 1;
        }
    }

    if (s->stage < 3) PB_TRY(dev_buf(s, pad, &s->full_params));
    else {
        PB_TRY(dev_buf(s, shard, &s->shard_params));
        for (int i = 0; i < 2; i++) {
            s->pseq[i] = -1;
            PB_TRY(dev_buf(s, s->layout.max_block, &s->pslot[i]));
        }
    }
    if (s->stage == 1) PB_TRY(dev_buf(s, pad, &s->full_grads));
    else {
        s->n_gslots = s->layout.grad_slots;
        PB_ALLOC(s->gslot, s->n_gslots);
        for (int i = 0; i < s->n_gslots; i++) {
            s->gslot[i].block = -1;
            PB_TRY(dev_buf(s, s->layout.max_block, &s->gslot[i].buf));
        }
    }
    PB_TRY(dev_buf(s, shard, &s->shard_grads));
    PB_TRY(dev_buf(s, shard, &s->m));
    if (cfg->optimizer == PB_OPT_ADAMW) PB_TRY(dev_buf(s, shard, &s->v));
    PB_TRY(upload_params(s, init));
    for (int b = 0; b < s->n; b++) {
        if (s->stage < 3) s->tab[b].params = s->full_params + s->blk[b].pad_off;
        if (s->stage == 1) s->tab[b].grads = s->full_grads + s->blk[b].pad_off;
    }
    s->rep.blocks = s->tab;

    PB_TRY(pb_input_init(&s->input, be, s->dev, (size_t)s->row0, (size_t)s->shard, ctx->model, be->host_is_device));
    *state = s;
    return PB_OK;
cleanup:
    zero_destroy(s);
    return st;
}

/* --strategy zero: the mesh of one tp rank per replica */
static pb_status zero_init(const pb_strategy_ctx *ctx, void **state)
{
    return pb_zero_init_mesh(ctx, (pb_mesh){.dp = ctx->ranks, .tp = 1, .pp = 1}, state);
}

/* --- collectives ------------------------------------------------------------------ */

static pb_status wait_req(zero_state *s, pb_comm_req *req, double *ms)
{
    const pb_comm *comm = s->ctx->comm;
    pb_status st = comm->wait(s->comm, req, s->ctx->cfg->timeout_s);
    if (st == PB_OK && comm->req_ms) *ms += comm->req_ms(req);
    return st;
}

/* Waits inside forward or backward: exposed, counted as sync */
static pb_status wait_exposed(zero_state *s, pb_comm_req *req, double *ms)
{
    double t0 = pb_now_ms();
    pb_status st = wait_req(s, req, ms);
    s->wait_ms += pb_now_ms() - t0;
    return st;
}

/* The stage's sum across the tp group (pb_stage_hooks.tp_allreduce),
 * blocking; its host time is moved from fwd/bwd to tp_comm after the step.
 * On the one comm thread (or stream) it runs after the dp group's
 * collectives already issued: every rank issues the same sequence. */
static pb_status tp_allreduce(void *arg, void *buf, size_t n)
{
    zero_state *s = arg;
    const pb_comm *comm = s->ctx->comm;
    pb_comm_ctx *tp = s->groups[PB_MESH_TP];
    pb_comm_req *req = NULL;
    double t0 = pb_now_ms();
    pb_status st = comm->allreduce(tp, buf, n, 1.0f, &req);
    if (st == PB_OK) st = comm->wait(tp, req, s->ctx->cfg->timeout_s);
    if (st == PB_OK && comm->req_ms) s->tp_comm_ms += comm->req_ms(req);
    s->tp_ms += pb_now_ms() - t0;
    s->tp_floats += n;
    return st;
}

/* The gathers left in flight by the last step (stages 1/2: every block's;
 * stage 3: the next forward's first two), done, before anything but the
 * next forward reads the gathered parameters */
static pb_status wait_gathers(zero_state *s)
{
    pb_status st = PB_OK;
    for (int b = s->n - 1; b >= 0; b--) {
        double ms = 0;
        if (s->blk[b].ag && st == PB_OK) st = wait_req(s, s->blk[b].ag, &ms);
        s->blk[b].ag = NULL;
    }
    for (int i = 0; i < 2; i++) {
        double ms = 0;
        if (s->preq[i] && st == PB_OK) st = wait_req(s, s->preq[i], &ms);
        s->preq[i] = NULL;
    }
    return st;
}

/* Stage 3: block b's chunks from every rank into `out` (len padded) */
static pb_status gather_block(zero_state *s, int b, float *out, pb_comm_req **req)
{
    return s->ctx->comm->allgather(s->comm, master(s, b), out, s->blk[b].chunk * sizeof(float), req);
}

static pb_status launch_reduce_scatter(zero_state *s, int b)
{
    zero_block *z = &s->blk[b];
    const float *in = s->stage == 1 ? s->full_grads + z->pad_off : s->gslot[z->slot].buf;
    pb_status st = s->ctx->comm->reduce_scatter(s->comm, in, s->shard_grads + z->shard_off, z->chunk, &z->rs);
    if (st == PB_OK && s->stage > 1) {
        s->gslot[z->slot].inflight = true;
        s->gslot[z->slot].order = s->launches++;
    }
    return st;
}

/* Stage 2/3: the slot's reduce-scatter done, its buffer free */
static pb_status retire_slot(zero_state *s, int i, bool exposed)
{
    grad_slot *g = &s->gslot[i];
    zero_block *z = &s->blk[g->block];
    pb_status st = exposed ? wait_exposed(s, z->rs, &s->rs_ms) : wait_req(s, z->rs, &s->rs_ms);
    z->rs = NULL;
    z->slot = -1;
    s->tab[g->block].grads = NULL;
    g->block = -1;
    g->inflight = false;
    return st;
}

/* Stage 2/3: a gradient buffer for block b: a free slot, else the oldest
 * one whose reduce-scatter is in flight, once done */
static pb_status bind_grads(zero_state *s, int b)
{
    if (s->stage == 1 || s->blk[b].slot >= 0) return PB_OK;
    int pick = -1;
    for (int i = 0; i < s->n_gslots && pick < 0; i++)
        if (s->gslot[i].block < 0) pick = i;
    if (pick < 0) {
        for (int i = 0; i < s->n_gslots; i++)
            if (s->gslot[i].inflight && (pick < 0 || s->gslot[i].order < s->gslot[pick].order)) pick = i;
        if (pick < 0) return pb_error(PB_ERR_INTERNAL, "zero: no gradient buffer free for block %d", b);
        pb_status st = retire_slot(s, pick, true);
        if (st != PB_OK) return st;
    }
    s->gslot[pick].block = b;
    s->blk[b].slot = pick;
    s->tab[b].grads = s->gslot[pick].buf;
    return PB_OK;
}

/* Stage 3's gathers in a step, 2n - 1 of them: forward's blocks 0..n-1
 * (j = b), then backward's n-2..0 (j = 2n-2-b). The last block's backward
 * runs right after its forward and reuses that gather (FSDP keeps the
 * root's parameters between forward and backward likewise), so gather j
 * goes to pslot[j % 2], and a slot's buffer is reused two gathers later. */
static int gather_seq(const zero_state *s, int b, bool backward) { return backward ? 2 * s->n - 2 - b : b; }
static int block_of_gather(const zero_state *s, int j) { return j < s->n ? j : 2 * s->n - 2 - j; }

/* Stage 3: gather j into its slot, unless the slot holds it or awaits it
 * already (a prefetch, or the last block kept from forward) */
static pb_status launch_gather(zero_state *s, int j)
{
    int slot = j % 2;
    if (s->pseq[slot] == j) return PB_OK;
    if (s->preq[slot]) { /* not in the step's order: never, but never overwrite a buffer in flight */
        pb_status st = wait_exposed(s, s->preq[slot], &s->ag_ms);
        s->preq[slot] = NULL;
        if (st != PB_OK) return st;
    }
    s->pseq[slot] = j;
    return gather_block(s, block_of_gather(s, j), s->pslot[slot], &s->preq[slot]);
}

static pb_status before_block(void *arg, int b, bool backward)
{
    zero_state *s = arg;
    pb_status st = PB_OK;
    if (s->stage < 3 && !backward && s->blk[b].ag) {
        /* the previous step's gather of this block, left in flight */
        st = wait_exposed(s, s->blk[b].ag, &s->ag_ms);
        s->blk[b].ag = NULL;
        if (st != PB_OK) return st;
    }
    if (s->stage == 3) {
        int j = gather_seq(s, b, backward), slot = j % 2;
        PB_TRY(launch_gather(s, j));
        if (s->preq[slot]) PB_TRY(wait_exposed(s, s->preq[slot], &s->ag_ms));
        s->preq[slot] = NULL;
        s->tab[b].params = s->pslot[slot];
        /* prefetch: the other buffer held the gather before this one, done */
        if (j + 1 < 2 * s->n - 1) PB_TRY(launch_gather(s, j + 1));
    }
    if (backward && s->stage > 1) {
        PB_TRY(bind_grads(s, b));
        if (b > 0) PB_TRY(bind_grads(s, b - 1));
    }
cleanup:
    return st;
}

/* Both tied gradients made their local sum, before either is reduced */
static pb_status tie_grads(zero_state *s)
{
    const pb_model *m = s->model;
    int last = s->n - 1;
    float *src = s->tab[0].grads + (m->tensor[m->tie_src].off - m->block[0].p_off);
    float *dst = s->tab[last].grads + (m->tensor[m->tie_dst].off - m->block[last].p_off);
    pb_status st = s->ctx->be->axpy(s->dev, m->n_tied, 1.0f, dst, src);
    if (st != PB_OK) return st;
    return s->ctx->be->copy(s->dev, dst, src, m->n_tied * sizeof(float));
}

/* Block b's gradients are complete: when it closes its bucket, the bucket's
 * blocks are reduce-scattered (the tied last block waits for block 0) */
static pb_status grads_ready(void *arg, int b)
{
    zero_state *s = arg;
    const pb_model *m = s->model;
    bool tied = m->n_tied > 0 && s->n > 1;
    if (s->blk[b].bucket_low != b) return PB_OK;
    pb_status st = PB_OK;
    if (b == 0 && tied) {
        PB_TRY(tie_grads(s));
        PB_TRY(launch_reduce_scatter(s, s->n - 1));
    }
    for (int k = b; k < s->n && s->blk[k].bucket_low == b; k++) {
        if (tied && k == s->n - 1 && b != 0) continue;
        if (tied && k == s->n - 1 && b == 0) continue; /* launched above */
        PB_TRY(launch_reduce_scatter(s, k));
    }
cleanup:
    return st;
}

/* --- optimizer over the rank's chunks ------------------------------------------- */

/* The update of the rank's chunk of block b: tensors cut at the chunk's
 * ends, runs of equal weight decay in one call. */
static pb_status optimize_block(zero_state *s, int b)
{
    const pb_config *cfg = s->ctx->cfg;
    const pb_model *m = s->model;
    const zero_block *z = &s->blk[b];
    size_t lo = (size_t)s->rank * z->chunk, hi = lo + z->chunk < z->len ? lo + z->chunk : z->len;
    size_t base = m->block[b].p_off;
    float *p = master(s, b), *g = s->shard_grads + z->shard_off, *mm = s->m + z->shard_off;
    float *v = s->v ? s->v + z->shard_off : NULL;
    size_t at = lo;
    for (int t = m->block[b].t0; t < m->block[b].t1 && at < hi; t++) {
        size_t t_end = m->tensor[t].off - base + m->tensor[t].size;
        if (t_end <= at) continue;
        bool decay = m->tensor[t].decay;
        size_t end = t_end < hi ? t_end : hi;
        /* the tensors after it alike in decay join the run */
        while (end < hi && t + 1 < m->block[b].t1 && m->tensor[t + 1].decay == decay) {
            t++;
            t_end = m->tensor[t].off - base + m->tensor[t].size;
            end = t_end < hi ? t_end : hi;
        }
        size_t o = at - lo;
        pb_opt_args a = {
            .kind = cfg->optimizer, .n = end - at, .params = p + o, .grads = g + o, .m = mm + o,
            .v = v ? v + o : NULL, .lr = (float)cfg->lr, .momentum = (float)cfg->momentum,
            .weight_decay = decay ? (float)cfg->weight_decay : 0.0f, .beta1 = (float)cfg->beta1,
            .beta2 = (float)cfg->beta2, .eps = (float)cfg->eps, .step = s->opt_steps,
        };
        pb_status st = s->ctx->be->optimizer(s->dev, &a);
        if (st != PB_OK) return st;
        at = end;
    }
    return PB_OK;
}

/* --- the step ------------------------------------------------------------------ */

static pb_status zero_step(void *state, const pb_batch *batch, pb_step_result *out)
{
    zero_state *s = state;
    const pb_backend *be = s->ctx->be;
    const pb_comm *comm = s->ctx->comm;
    const pb_config *cfg = s->ctx->cfg;
    pb_replica *r = &s->rep;
    pb_status st = PB_OK;
    int rows = s->shard, bsz = cfg->shape.batch;
    double fwd_wait = 0, fwd_tp = 0;

    pb_progress_set_step(batch->step);
    pb_phase_timer_reset(&s->timer);
    s->rs_ms = s->ag_ms = s->wait_ms = s->tp_ms = s->tp_comm_ms = 0;
    s->tp_floats = 0;
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_H2D));
    PB_TRY(pb_input_load_replica(&s->input, batch, r));
    PB_TRY(pb_phase_end(&s->timer));

    r->before_block = before_block;
    r->before_arg = s;
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_FWD));
    PB_TRY(be->zero(s->dev, r->loss_sum, sizeof(float)));
    PB_TRY(pb_with_step(pb_replica_forward(r, 0, rows), cfg->strategy, batch->step));
    PB_TRY(pb_replica_loss(r, 0, rows, 1.0f / (float)bsz));
    PB_TRY(pb_phase_end(&s->timer));
    fwd_wait = s->wait_ms;
    fwd_tp = s->tp_ms;

    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_BWD));
    if (be->host_is_device) PB_TRY(be->download(s->dev, &s->loss_host, r->loss_sum, sizeof(float)));
    PB_TRY(comm->allreduce(s->comm, be->host_is_device ? &s->loss_host : r->loss_sum, 1, 1.0f, &s->loss_req));
    PB_TRY(pb_with_step(pb_replica_backward(r, 0, rows, NULL, NULL, cfg->no_overlap ? NULL : grads_ready, s),
                        cfg->strategy, batch->step));
    PB_TRY(pb_phase_end(&s->timer));

    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_SYNC));
    if (cfg->no_overlap) PB_TRY(grads_ready(s, 0));
    for (int b = s->n - 1; b >= 0; b--) {
        zero_block *z = &s->blk[b];
        if (s->stage > 1 && z->slot >= 0) PB_TRY(pb_with_step(retire_slot(s, z->slot, false), cfg->strategy, batch->step));
        else if (z->rs) PB_TRY(pb_with_step(wait_req(s, z->rs, &s->rs_ms), cfg->strategy, batch->step));
        z->rs = NULL;
    }
    double loss_ms = 0;
    PB_TRY(pb_with_step(wait_req(s, s->loss_req, &loss_ms), cfg->strategy, batch->step));
    if (!be->host_is_device) PB_TRY(be->download(s->dev, &s->loss_host, r->loss_sum, sizeof(float)));
    PB_TRY(pb_phase_end(&s->timer));

    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_OPT));
    s->opt_steps++;
    s->pseq[0] = s->pseq[1] = -1; /* what the slots hold is about to be stale */
    for (int b = s->n - 1; b >= 0; b--) {
        PB_TRY(optimize_block(s, b));
        /* stage 3: the next forward's first two gathers as soon as their
         * chunks are updated (backward is done with both slots), left in
         * flight as stages 1/2's are */
        if (s->stage == 3 && b < 2) PB_TRY(launch_gather(s, b));
        if (s->stage < 3) {
            zero_block *z = &s->blk[b];
            float *full = s->full_params + z->pad_off;
            PB_TRY(comm->allgather(s->comm, full + (size_t)s->rank * z->chunk, full, z->chunk * sizeof(float),
                                   &z->ag));
        }
    }
    PB_TRY(pb_phase_end(&s->timer));
    /* the gathers stay in flight; the next forward waits */

    PB_TRY(pb_input_prefetch_next(&s->input, batch));
    PB_TRY(be->synchronize(s->dev));
    memset(out, 0, sizeof *out);
    PB_TRY(pb_phase_timer_collect(&s->timer, &out->t));
    /* the waits for a gather inside forward and backward are exposed */
    out->t.ms[PB_PHASE_FWD] -= fwd_wait + fwd_tp;
    out->t.ms[PB_PHASE_BWD] -= s->wait_ms - fwd_wait + s->tp_ms - fwd_tp;
    /* the tp all-reduces block the stage: all exposed (as tp's) */
    out->t.ms[PB_PHASE_TP_COMM] = s->tp_ms;
    out->t.ms[PB_PHASE_SYNC] += s->wait_ms;
    out->t.ms[PB_PHASE_REDUCE_SCATTER] = s->rs_ms;
    out->t.ms[PB_PHASE_ALLGATHER] = s->ag_ms;
    out->t.ms[PB_PHASE_COMM] = s->rs_ms + s->ag_ms + loss_ms + s->tp_comm_ms;
    out->loss = s->loss_host;
cleanup:
    return st;
}

/* Every rank calls it (the run asks each: stage 3 gathers the blocks). */
static pb_status zero_get_params(void *state, float *host_params)
{
    zero_state *s = state;
    const pb_backend *be = s->ctx->be;
    const pb_model *m = s->model;
    pb_status st = PB_OK;
    size_t n = m->n_params;
    PB_TRY(wait_gathers(s));
    /* a mesh's tp part to this rank's slot of the tp gather, then the parts together */
    float *dst = host_params;
    if (s->mesh.tp > 1) {
        if (!s->gather) PB_ALLOC(s->gather, n * (size_t)s->mesh.tp);
        dst = s->gather + (size_t)s->tp_rank * n;
    }
    for (int b = 0; b < s->n; b++) {
        const float *src = s->stage < 3 ? s->full_params + s->blk[b].pad_off : s->pslot[0];
        if (s->stage == 3) {
            pb_comm_req *req = NULL;
            double ms = 0;
            s->pseq[0] = -1; /* the next forward gathers its block again */
            PB_TRY(gather_block(s, b, s->pslot[0], &req));
            PB_TRY(wait_req(s, req, &ms));
        }
        /* (NULL on the ranks that only take part in the gathers: run.c) */
        if (dst) PB_TRY(be->download(s->dev, dst + m->block[b].p_off, src, s->blk[b].len * sizeof(float)));
    }
    if (s->mesh.tp > 1)
        PB_TRY(pb_tp_gather_parts(s->ctx, s->groups[PB_MESH_TP], s->dev, m, s->tp_rank, s->mesh.tp, s->gather,
                                  host_params));
cleanup:
    return st;
}

static pb_status zero_memory(void *state, pb_memory_report *out)
{
    zero_state *s = state;
    out->peak_mb_max = out->peak_mb_dev0 = s->ctx->be->peak_mem_mb(s->dev);
    return PB_OK;
}

static pb_status zero_device_info(void *state, pb_device_info *out)
{
    zero_state *s = state;
    return s->ctx->be->info(s->dev, out);
}

void pb_zero_bytes(const pb_config *cfg, const pb_model *model, int ranks, pb_comm_bytes *out)
{
    pb_zero_layout g;
    pb_zero_layout_of(cfg, model, ranks, &g);
    /* a ring reduce-scatter or all-gather of the padded span sends (N-1)/N of it */
    double one = (double)(ranks - 1) * (double)g.shard * sizeof(float);
    *out = pb_comm_bytes_none();
    out->reduce_scatter = one;
    out->allgather = (double)(ranks - 1) * (double)pb_zero_gathered(cfg, &g) * sizeof(float);
}

static void zero_report(void *state, const pb_step_times *mean, pb_record *row)
{
    zero_state *s = state;
    const pb_config *cfg = s->ctx->cfg;
    int n = s->ranks;
    pb_comm_bytes bytes;
    pb_zero_bytes(cfg, s->model, n, &bytes);
    pb_record_set(row, PB_COL_BATCH_PER_DEVICE, "%d", (cfg->shape.batch + n - 1) / n);
    double comm = mean->ms[PB_PHASE_COMM], sync = mean->ms[PB_PHASE_SYNC];
    double overlap = comm > 0 ? 100.0 * (1.0 - sync / comm) : NAN;
    pb_record_num(row, PB_COL_OVERLAP_PCT, overlap < 0 ? 0 : overlap);
    /* what the rank hands the collectives: its padded gradients to the
     * reduce-scatters, its chunks to the all-gathers (twice at stage 3) */
    pb_zero_layout g;
    pb_zero_layout_of(cfg, s->model, n, &g);
    /* a mesh's tp all-reduces besides (tp's: over a replica's rows, on T ranks) */
    size_t tp = s->mesh.tp > 1 ? s->tp_floats : 0;
    if (tp) bytes.allreduce = pb_ring_allreduce_bytes((double)tp, s->mesh.tp);
    pb_record_set(row, PB_COL_COMM_BYTES_PER_STEP, "%zu", (g.padded + pb_zero_gathered(cfg, &g) + tp) * sizeof(float));
    pb_comm_bytes_record(&bytes, row);
}

/* The device memory of a rank (harness/memplan.h): the rank's chunks of the
 * master weights, reduced gradients and optimizer state; stage 1/2 the full
 * (padded) parameters, stage 1 the full gradients, stage 2/3 the gradient
 * pool, stage 3 two gathered blocks; the stage's activations, targets and
 * loss; input staging. Every rank of this host on the cpu. `local` is the
 * rank's tp part (the model at tp 1), sharded over the dp group. */
void pb_zero_plan_memory_mesh(const pb_config *cfg, const pb_model *model, const pb_memplan_env *env, pb_mesh mesh,
                              pb_mem_parts *dev)
{
    static pb_model part; /* large for a stack; the plan runs before any thread */
    const pb_model *local = model;
    if (mesh.tp > 1) {
        if (pb_model_describe_tp(model->ops, &model->shape, mesh.tp, &part) != PB_OK) {
            pb_error_clear(); /* validation refused it already */
            return;
        }
        local = &part;
    }
    int n = mesh.dp, row0 = 0, rows = 0;
    pb_input_shard(cfg->shape.batch, n, n - 1, &row0, &rows); /* the last rank's shard: the largest */
    double e = (double)pb_memplan_act_elem(cfg, env->host_is_device), f = sizeof(float);
    pb_zero_layout g;
    pb_zero_layout_of(cfg, local, n, &g);
    double shard = (double)g.shard * f, block = (double)g.max_block * f;
    dev->params += cfg->zero_stage < 3 ? (double)g.padded * f : shard + 2.0 * block;
    dev->grads += shard + (cfg->zero_stage == 1 ? (double)g.padded * f : g.grad_slots * block);
    dev->optim += shard * (cfg->optimizer == PB_OPT_ADAMW ? 2 : 1);
    dev->acts += local->ops->stage_bytes(local, 0, local->n_blocks, rows, 1, e, false) + f +
                 (double)rows * (double)pb_model_target_bytes(local);
    pb_memplan_add_staging(model, rows, pb_memplan_in_place(cfg, env), dev);
}

static void zero_plan_memory(const pb_config *cfg, const pb_model *model, const pb_memplan_env *env,
                             pb_mem_parts *dev)
{
    pb_zero_plan_memory_mesh(cfg, model, env, (pb_mesh){.dp = cfg->devices, .tp = 1, .pp = 1}, dev);
}

/* --- a pipelined mesh's stage (strategies/tp.c with --pp > 1) ----------------- */

void pb_zero_piped_destroy(void *state)
{
    zero_state *s = state;
    if (!s) return;
    float *bufs[] = {s->shard_grads, s->m, s->v, s->pad_buf};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) s->ctx->be->free(s->dev, bufs[i]);
    free(s->blk);
    free(s);
}

pb_status pb_zero_piped_init(const pb_strategy_ctx *ctx, pb_device *dev, const pb_replica *rep, pb_comm_ctx *dp,
                             int rank, int ranks, void **state)
{
    pb_status st = PB_OK;
    zero_state *s = NULL;
    const pb_config *cfg = ctx->cfg;
    PB_ALLOC(s, 1);
    s->ctx = ctx;
    s->dev = dev;
    s->comm = dp;
    s->rank = rank;
    s->ranks = ranks;
    s->stage = cfg->zero_stage;
    s->model = rep->model;
    s->stage_rep = rep;
    s->b0 = rep->b0;
    s->n = rep->b1;
    PB_REQUIRE(s->stage == 1 || s->stage == 2, PB_ERR_INTERNAL, "zero: stage %d in a pipeline", s->stage);
    layout_range(cfg, s->model, s->b0, s->n, ranks, &s->layout);
    PB_ALLOC(s->blk, s->n);
    size_t pad = 0, shard = 0;
    set_blocks(s, s->b0, s->n, &pad, &shard);
    /* the replica's unpadded span: master() is the rank's chunk in place */
    for (int b = s->b0; b < s->n; b++) s->blk[b].pad_off = s->model->block[b].p_off - rep->p_off;
    s->full_params = rep->params;
    PB_TRY(dev_buf(s, shard, &s->shard_grads));
    PB_TRY(dev_buf(s, shard, &s->m));
    if (cfg->optimizer == PB_OPT_ADAMW) PB_TRY(dev_buf(s, shard, &s->v));
    PB_TRY(dev_buf(s, s->layout.max_block, &s->pad_buf));
    *state = s;
    return PB_OK;
cleanup:
    pb_zero_piped_destroy(s);
    return st;
}

/* A collective just launched (its launch's status), waited for at once */
static pb_status wait_now(zero_state *s, pb_status launched, pb_comm_req **req, double *ms)
{
    return launched == PB_OK ? wait_req(s, *req, ms) : launched;
}

/* After the pipeline's last backward and the tied gradient's exchange:
 * each block's gradients, padded, reduce-scattered over the dp group
 * (blocking) into the rank's reduced chunk */
pb_status pb_zero_piped_reduce(void *state, double *ms)
{
    zero_state *s = state;
    const pb_backend *be = s->ctx->be;
    pb_status st = PB_OK;
    s->rs_ms = 0;
    for (int b = s->n - 1; b >= s->b0; b--) {
        zero_block *z = &s->blk[b];
        PB_TRY(be->copy(s->dev, s->pad_buf, s->stage_rep->grads + z->pad_off, z->len * sizeof(float)));
        pb_comm_req *req = NULL;
        PB_TRY(wait_now(
            s, s->ctx->comm->reduce_scatter(s->comm, s->pad_buf, s->shard_grads + z->shard_off, z->chunk, &req), &req,
            &s->rs_ms));
    }
    *ms += s->rs_ms;
cleanup:
    return st;
}

/* The optimizer over the rank's chunks (zero's), each block's updated
 * chunks then all-gathered over the dp group into the replica's
 * parameters (blocking) */
pb_status pb_zero_piped_update(void *state, double *ms)
{
    zero_state *s = state;
    const pb_backend *be = s->ctx->be;
    pb_status st = PB_OK;
    s->ag_ms = 0;
    s->opt_steps++;
    for (int b = s->n - 1; b >= s->b0; b--) {
        zero_block *z = &s->blk[b];
        PB_TRY(optimize_block(s, b));
        size_t lo = (size_t)s->rank * z->chunk, hi = lo + z->chunk < z->len ? lo + z->chunk : z->len;
        if (lo < hi) PB_TRY(be->copy(s->dev, s->pad_buf + lo, master(s, b), (hi - lo) * sizeof(float)));
        pb_comm_req *req = NULL;
        PB_TRY(wait_now(s, s->ctx->comm->allgather(s->comm, s->pad_buf + lo, s->pad_buf, z->chunk * sizeof(float), &req),
                        &req, &s->ag_ms));
        PB_TRY(be->copy(s->dev, s->stage_rep->params + z->pad_off, s->pad_buf, z->len * sizeof(float)));
    }
    *ms += s->ag_ms;
cleanup:
    return st;
}

void pb_zero_piped_times(const void *state, double *rs_ms, double *ag_ms)
{
    const zero_state *s = state;
    *rs_ms = s->rs_ms;
    *ag_ms = s->ag_ms;
}

/* zero's volumes over the stage's blocks; comm_bytes_per_step's share as
 * zero's row counts it (padded gradients and the rank's chunks) */
void pb_zero_piped_bytes(const void *state, pb_comm_bytes *vol, double *bytes)
{
    const zero_state *s = state;
    const pb_zero_layout *g = &s->layout;
    vol->reduce_scatter = (double)(s->ranks - 1) * (double)g->shard * sizeof(float);
    vol->allgather = (double)(s->ranks - 1) * (double)g->shard * sizeof(float);
    *bytes += (double)(g->padded + g->shard) * sizeof(float);
}

void pb_zero_plan_piped(const pb_config *cfg, const pb_model *local, int b0, int b1, int ranks, pb_mem_parts *dev)
{
    pb_zero_layout g;
    layout_range(cfg, local, b0, b1, ranks, &g);
    double shard = (double)g.shard * sizeof(float);
    dev->grads += shard + (double)g.max_block * sizeof(float);
    dev->optim += shard * (cfg->optimizer == PB_OPT_ADAMW ? 2 : 1);
}

const pb_strategy pb_strategy_zero = {
    .name = "zero",
    .description = "ZeRO/FSDP: a rank per device, gradients reduce-scattered, optimizer sharded; "
                   "--zero-stage 2 gradients, 3 parameters too",
    .procs = PB_PROC_PER_DEVICE,
    /* stage 3 gathers every block for --verify and --dump on every rank */
    .params_collective = true,
    .needs_even_split = false,
    .buckets = true,
    .zero_stage = true,
    .validate = zero_validate,
    .init = zero_init,
    .step = zero_step,
    .get_params = zero_get_params,
    .memory = zero_memory,
    .device_info = zero_device_info,
    .plan_memory = zero_plan_memory,
    .report = zero_report,
    .destroy = zero_destroy,
};
