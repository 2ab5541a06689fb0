/* `ddp`: one MPI rank per device, like torch DistributedDataParallel. Every
 * rank holds a full replica and, each step,
 *   h2d   takes its shard of the global batch, rows [r*B/N, (r+1)*B/N),
 *   fwd   runs forward and the loss scaled by 1/B (the global batch), so
 *         the sum over ranks of their gradients is the global batch's
 *         gradient: the all-reduce is a plain SUM (the same as averaging
 *         per-rank means over equal shards),
 *   bwd   runs backward; as each block's gradients are complete (the
 *         replica's ready callback) every bucket now wholly complete is
 *         handed to the comm to all-reduce, while backward goes on,
 *   sync  waits for the buckets still in flight (the exposed communication),
 *   opt   runs the optimizer on the summed gradients (identical on every
 *         rank, so the replicas stay equal without a broadcast).
 *
 * Buckets are contiguous ranges of at most --bucket-mb laid over the flat
 * gradient buffer from its end: the workload's blocks tile the buffer in
 * order (workloads/workload.h), so backward completes it from the top down,
 * block range by block range, and a bucket is ready once backward has
 * passed its lowest offset (the completed block's first). A bucket may span
 * several blocks or be a piece of one (--bucket-mb 0.01). --no-overlap: one
 * all-reduce of the whole buffer after backward.
 *
 * Progress: the `mpi` comm runs the all-reduces on a comm thread of its own
 * (MPI_THREAD_SERIALIZED: only that thread is inside MPI during the step),
 * so a bucket progresses while this thread is busy in BLAS with the blocks
 * below it; polling MPI_Test between blocks would leave each bucket waiting
 * for a whole block's GEMMs.
 *
 * Timing: comm is the time the collectives themselves ran (the comm thread's
 * clock), sync the time this thread waited for them after backward;
 * overlap_pct = 100 (1 - sync/comm).
 *
 * GPUs: with --comm nccl the buckets (and the loss) are all-reduced in place
 * on the device, on the comm's own stream; with --comm mpi they are
 * host-staged (each bucket is downloaded before its all-reduce and uploaded
 * after). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/fault.h"
#include "../harness/phase.h"
#include "../kernels/progress.h"
#include "../kernels/comm.h"
#include "../kernels/world.h"
#include "dp_common.h"
#include "input.h"
#include "replica.h"
#include "strategy.h"
#include "volume.h"

#define DDP_MAX_BUCKETS 4000

typedef struct ddp_bucket {
    size_t lo, hi; /* [lo, hi) of the flat gradient buffer */
    pb_comm_req *req;
} ddp_bucket;

typedef struct ddp_state {
    const pb_strategy_ctx *ctx;
    int rank, ranks;
    int row0, shard; /* this rank's rows of the global batch: [row0, row0 + shard) */
    pb_device *dev;
    pb_replica rep;
    pb_phase_timer timer;
    pb_comm_ctx *comm;

    ddp_bucket *bucket; /* bucket 0 at the top of the buffer */
    int n_buckets;
    int launched;       /* buckets handed to the comm this step */
    bool dev_comm;      /* the comm works on device buffers (nccl) */
    bool staged;        /* device memory is not host memory: stage grads */
    float *host_grads;  /* staging, n_params (staged only) */

    float loss_host;
    pb_comm_req *loss_req;

    pb_input input; /* the rank's rows of each batch */

    bool poison; /* PB_FAULT kind=nan fired this step (test-only) */

} ddp_state;


static pb_status ddp_validate(const pb_config *cfg, const pb_model *model)
{
    if (!pb_mpi_available())
        return pb_user_error(PB_ERR_UNAVAILABLE,
                             "strategy ddp: built without MPI (install Open MPI so `make` finds mpicc, and rebuild)");
    if (cfg->cuda_graph) return pb_usage_error("--cuda-graph applies to --strategy single, not ddp");
    if (cfg->shape.batch < cfg->devices)
        return pb_usage_error("--batch %d is smaller than --gpus %d; ddp gives every rank at least one row",
                              cfg->shape.batch, cfg->devices);
    if (!cfg->no_overlap) {
        size_t per = pb_bucket_floats(cfg), n = (model->n_params + per - 1) / per;
        if (n > DDP_MAX_BUCKETS)
            return pb_usage_error("--bucket-mb %g makes %zu buckets of the %zu-parameter model; allowed: at most %d "
                                  "(a larger --bucket-mb)",
                                  cfg->bucket_mb, n, model->n_params, DDP_MAX_BUCKETS);
    }
    return PB_OK;
}

static void ddp_destroy(void *state)
{
    ddp_state *s = state;
    if (!s) return;
    const pb_backend *be = s->ctx->be;
    if (s->comm) s->ctx->comm->destroy(s->comm);
    if (s->timer.be) pb_phase_timer_destroy(&s->timer);
    pb_input_destroy(&s->input);
    pb_replica_destroy(&s->rep);
    if (s->dev) be->close(s->dev);
    free(s->host_grads);
    free(s->bucket);
    free(s);
}

static pb_status ddp_init(const pb_strategy_ctx *ctx, void **state)
{
    pb_status st = PB_OK;
    ddp_state *s = NULL;
    const pb_backend *be = ctx->be;
    const pb_config *cfg = ctx->cfg;
    const pb_model *model = ctx->model;
    PB_ALLOC(s, 1);
    s->ctx = ctx;
    s->rank = ctx->rank;
    s->ranks = ctx->ranks;
    PB_REQUIRE(ctx->comm && s->ranks >= 1 && s->ranks == cfg->devices && cfg->shape.batch >= s->ranks,
               PB_ERR_INTERNAL, "ddp: %d ranks for --gpus %d and a batch of %d", s->ranks, cfg->devices,
               cfg->shape.batch);
    pb_input_shard(cfg->shape.batch, s->ranks, s->rank, &s->row0, &s->shard);

    /* the device the rank-to-GPU rule chose (harness/devmap.c): a
     * --device-map entry (test-only: several ranks on one GPU), else the
     * node-local rank or the one device the launcher shows the rank */
    pb_device_opts dev_opts = pb_config_model_device_opts(cfg, model);
    PB_TRY(be->open(&dev_opts, ctx->device, &s->dev));
    PB_TRY(pb_replica_init(&s->rep, be, s->dev, cfg, model, 0, model->n_blocks, s->shard, 1, ctx->init_params, true,
                           true));
    PB_TRY(pb_phase_timer_init(&s->timer, be, s->dev));
    pb_comm_opts comm_opts = pb_config_comm_opts(cfg); /* ranks: no group of pointers to keep */
    PB_TRY(ctx->comm->init(&comm_opts, be, s->dev, s->rank, s->ranks, &s->comm));

    size_t n = s->rep.p_len, per = cfg->no_overlap ? n : pb_bucket_floats(cfg);
    s->n_buckets = (int)((n + per - 1) / per);
    PB_ALLOC(s->bucket, s->n_buckets);
    for (int i = 0; i < s->n_buckets; i++) {
        s->bucket[i].hi = n - (size_t)i * per;
        s->bucket[i].lo = s->bucket[i].hi > per ? s->bucket[i].hi - per : 0;
    }
    s->dev_comm = !be->host_is_device && ctx->comm->device_buffers;
    s->staged = !be->host_is_device && !s->dev_comm;
    if (s->staged) PB_ALLOC(s->host_grads, n);

    PB_TRY(pb_input_init(&s->input, be, s->dev, (size_t)s->row0, (size_t)s->shard, model,
                         be->host_is_device && !s->rep.params_c));
    *state = s;
    return PB_OK;
cleanup:
    ddp_destroy(s);
    return st;
}

/* --- buckets ------------------------------------------------------------------ */

static float *grad_buf(ddp_state *s) { return s->staged ? s->host_grads : s->rep.grads; }

/* A phase begins. The test-only fault hook (PB_FAULT) in pb_phase_begin may
 * end or stall this rank there, or ask for NaN: then the loss and gradients
 * this rank contributes from here on in the step are poisoned, so the
 * all-reduces spread it to every rank as a real overflow would. */
static pb_status phase_begin(ddp_state *s, pb_phase p)
{
    pb_status st = pb_phase_begin(&s->timer, p);
    if (pb_fault_nan_step()) s->poison = true;
    return st;
}

static pb_status launch_bucket(ddp_state *s, ddp_bucket *b)
{
    pb_status st = PB_OK;
    size_t len = b->hi - b->lo;
    if (s->staged)
        PB_TRY(s->ctx->be->download(s->dev, s->host_grads + b->lo, s->rep.grads + b->lo, len * sizeof(float)));
    if (s->poison && (s->staged || s->ctx->be->host_is_device)) grad_buf(s)[b->lo] = NAN;
    PB_TRY(s->ctx->comm->allreduce(s->comm, grad_buf(s) + b->lo, len, 1.0f, &b->req));
cleanup:
    return st;
}

/* Backward has completed block b (and every block above it): launch each
 * bucket that lies wholly at or above the block's first offset. */
static pb_status grads_ready(void *arg, int b)
{
    ddp_state *s = arg;
    size_t frontier = s->ctx->model->block[b].p_off;
    while (s->launched < s->n_buckets && s->bucket[s->launched].lo >= frontier) {
        pb_status st = launch_bucket(s, &s->bucket[s->launched]);
        if (st != PB_OK) return st;
        s->launched++;
    }
    return PB_OK;
}

/* --- the step ------------------------------------------------------------------ */

static pb_status ddp_step(void *state, const pb_batch *batch, pb_step_result *out)
{
    ddp_state *s = state;
    const pb_backend *be = s->ctx->be;
    const pb_comm *comm = s->ctx->comm;
    const pb_config *cfg = s->ctx->cfg;
    pb_replica *r = &s->rep;
    pb_status st = PB_OK;
    /* the loader holds this rank's shard (or more); the loss averages over
     * the global batch */
    int m = s->shard, bsz = cfg->shape.batch;
    double comm_ms = 0.0;

    /* where this rank is, for the others' deadline messages (the phase
     * timer publishes the phases) */
    pb_progress_set_step(batch->step);
    pb_phase_timer_reset(&s->timer);
    s->poison = false;
    PB_TRY(phase_begin(s, PB_PHASE_H2D));
    PB_TRY(pb_input_load_replica(&s->input, batch, r));
    PB_TRY(pb_phase_end(&s->timer));

    PB_TRY(phase_begin(s, PB_PHASE_FWD));
    PB_TRY(be->zero(s->dev, r->loss_sum, sizeof(float)));
    PB_TRY(pb_replica_forward(r, 0, m));
    PB_TRY(pb_replica_loss(r, 0, m, 1.0f / (float)bsz));
    PB_TRY(pb_phase_end(&s->timer));

    /* backward's span starts with handing the loss to the comm (a wake-up
     * of its thread on the CPU), so that time is not left between phases */
    s->launched = 0;
    PB_TRY(phase_begin(s, PB_PHASE_BWD));
    /* the global loss: this rank's share, summed over ranks during backward */
    if (s->dev_comm) {
        PB_TRY(comm->allreduce(s->comm, r->loss_sum, 1, 1.0f, &s->loss_req));
    } else {
        PB_TRY(be->download(s->dev, &s->loss_host, r->loss_sum, sizeof(float)));
        if (s->poison) s->loss_host = NAN;
        PB_TRY(comm->allreduce(s->comm, &s->loss_host, 1, 1.0f, &s->loss_req));
    }

    PB_TRY(pb_replica_backward(r, 0, m, NULL, NULL, cfg->no_overlap ? NULL : grads_ready, s));
    PB_TRY(pb_phase_end(&s->timer));

    /* what backward did not hide: the buckets still to launch (all of them
     * with --no-overlap) and those still in flight */
    PB_TRY(phase_begin(s, PB_PHASE_SYNC));
    for (; s->launched < s->n_buckets; s->launched++) PB_TRY(launch_bucket(s, &s->bucket[s->launched]));
    for (int i = 0; i < s->n_buckets; i++) {
        ddp_bucket *b = &s->bucket[i];
        PB_TRY(pb_with_step(comm->wait(s->comm, b->req, cfg->timeout_s), "ddp", batch->step));
        if (comm->req_ms) comm_ms += comm->req_ms(b->req);
        if (s->staged)
            PB_TRY(be->upload(s->dev, r->grads + b->lo, s->host_grads + b->lo, (b->hi - b->lo) * sizeof(float)));
    }
    PB_TRY(pb_with_step(comm->wait(s->comm, s->loss_req, cfg->timeout_s), "ddp", batch->step));
    if (comm->req_ms) comm_ms += comm->req_ms(s->loss_req);
    if (s->dev_comm) PB_TRY(be->download(s->dev, &s->loss_host, r->loss_sum, sizeof(float)));
    PB_TRY(pb_phase_end(&s->timer));

    PB_TRY(phase_begin(s, PB_PHASE_OPT));
    PB_TRY(pb_replica_tie_grads(r));
    PB_TRY(pb_replica_optimize(r));
    PB_TRY(pb_phase_end(&s->timer));

    PB_TRY(pb_input_prefetch_next(&s->input, batch));

    PB_TRY(be->synchronize(s->dev));
    memset(out, 0, sizeof *out);
    PB_TRY(pb_phase_timer_collect(&s->timer, &out->t));
    out->t.ms[PB_PHASE_COMM] = comm_ms;
    out->loss = s->loss_host;
cleanup:
    return st;
}

static pb_status ddp_get_params(void *state, float *host_params)
{
    ddp_state *s = state;
    return pb_replica_download_params(&s->rep, host_params);
}

static pb_status ddp_memory(void *state, pb_memory_report *out)
{
    ddp_state *s = state;
    out->peak_mb_max = out->peak_mb_dev0 = s->ctx->be->peak_mem_mb(s->dev);
    return PB_OK;
}

static pb_status ddp_device_info(void *state, pb_device_info *out)
{
    ddp_state *s = state;
    return s->ctx->be->info(s->dev, out);
}

/* nccl-tests' measures of the all-reduce: algbw = bytes / time, busbw =
 * algbw * 2(n-1)/n, over the gradient bytes of a step and its comm time */
static void ddp_report(void *state, const pb_step_times *mean, pb_record *row)
{
    ddp_state *s = state;
    const pb_config *cfg = s->ctx->cfg;
    double bytes = (double)s->rep.p_len * sizeof(float);
    /* the row's own comm and sync (the slowest rank's, step by step), so
     * overlap and bandwidth agree with the columns beside them */
    double comm = mean->ms[PB_PHASE_COMM];
    double sync = mean->ms[PB_PHASE_SYNC];
    double algbw = comm > 0 ? bytes / (comm * 1e-3) / 1e9 : NAN;
    int n = s->ranks;
    /* the largest shard: n need not divide the batch */
    pb_record_set(row, PB_COL_BATCH_PER_DEVICE, "%d", (cfg->shape.batch + n - 1) / n);
    pb_record_num(row, PB_COL_BUCKET_MB, cfg->no_overlap ? NAN : cfg->bucket_mb);
    /* sync also holds the hand-offs to the comm thread, which on a busy
     * (oversubscribed) host can exceed the collectives' own time: clamped */
    double overlap = comm > 0 ? 100.0 * (1.0 - sync / comm) : NAN;
    pb_record_num(row, PB_COL_OVERLAP_PCT, overlap < 0 ? 0 : overlap);
    pb_record_set(row, PB_COL_COMM_BYTES_PER_STEP, "%zu", s->rep.p_len * sizeof(float));
    /* the gradients' ring all-reduce (the loss's one float left out) */
    pb_comm_bytes vol = pb_comm_bytes_none();
    vol.allreduce = pb_ring_allreduce_bytes((double)s->rep.p_len, n);
    pb_comm_bytes_record(&vol, row);
    pb_record_num(row, PB_COL_ALGBW_GBPS, algbw);
    pb_record_num(row, PB_COL_BUSBW_GBPS, algbw * 2.0 * (n - 1) / n);
}

const pb_strategy pb_strategy_ddp = {
    .name = "ddp",
    .description = "DistributedDataParallel: a rank per device, gradient buckets all-reduced during backward",
    .procs = PB_PROC_PER_DEVICE,
    /* shards may differ by a row (batch not divisible by the ranks) */
    .needs_even_split = false,
    .buckets = true,
    .validate = ddp_validate,
    .init = ddp_init,
    .step = ddp_step,
    .get_params = ddp_get_params,
    .memory = ddp_memory,
    .device_info = ddp_device_info,
    .report = ddp_report,
    .destroy = ddp_destroy,
};
