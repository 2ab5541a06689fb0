/* `dp`: one process, N devices, a host thread per device, like
 * torch.nn.DataParallel. Every step device 0
 *   h2d        takes the whole global batch (as `single` does),
 *   scatter    copies each device its rows of the inputs,
 *   replicate  copies its parameters (and the compute copy) to every device,
 *   fwd        all devices run forward on their shard in parallel,
 *   gather     copies every device's logits into a full-batch buffer,
 *   fwd        the loss over the full batch (scale 1/B) on device 0, a second
 *              span of fwd, which writes dL/dlogits,
 *   scatter    copies each device its rows of dL/dlogits,
 *   bwd        all devices run backward in parallel,
 *   reduce     sums every device's gradients into device 0's (a plain sum:
 *              the loss already carries 1/B of the global batch),
 *   opt        runs the optimizer on device 0 only.
 * Labels stay on device 0, where the loss is computed (DataParallel scatters
 * only the module's inputs). Devices 1..N-1 hold parameters, gradients and
 * activations but no optimizer state, so the row's per-device peak memory
 * shows device 0's extra share: the optimizer state, the full-batch inputs,
 * logits and their gradient (and on cuda the comm's reduction scratch).
 *
 * Data between devices moves through the run's comm (`local`, one
 * participant per device, all posted by the calling thread as NCCL's
 * single-process groups allow): replicate is a broadcast from device 0,
 * reduce a reduce to device 0, and scatter and gather are send/recv pairs
 * between device 0 and each other device. The comm table has no scatter or
 * gather, and rows to or from device 0 are exactly n-1 messages: on the cpu
 * each is one memcpy, as the copies they replaced, and a faster comm (NCCL
 * groups) would move them too.
 *
 * On cuda with every device a distinct GPU and the build's NCCL, replicate
 * and reduce go through NCCL within the process instead (nccl_local.h:
 * ncclCommInitAll, one group call per collective), as DataParallel's
 * broadcast_coalesced and reduce_add do; scatter and gather stay messages.
 * Peer access is enabled between device 0 and each other device (p2p.h),
 * and the row's `p2p` says over what the copies go.
 *
 * Threads: the calling thread drives device 0 (and every copy and the loss);
 * a persistent worker thread per other device runs its forward and backward,
 * woken per phase through a condition variable. A parallel phase's span, on
 * device 0's timer, ends once every device has finished (workers synchronise
 * their device before reporting done). On the cpu backend each device's
 * thread runs on CPUs of its own (harness/cpu_bind.h): the workers from
 * their start, the calling thread from the first step (the loader's
 * threads, started after init, keep every CPU) to the last (pb_run gives
 * it every CPU back after the steps). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/cpu_bind.h"
#include "../harness/fault.h"
#include "../harness/phase.h"
#include "../harness/timer.h"
#include "../harness/log.h"
#include "../harness/memplan.h"
#include "../kernels/comm.h"
#include "../kernels/nccl_local.h"
#include "input.h"
#include "replica.h"
#include "strategy.h"

typedef enum dp_job { DP_JOB_FWD, DP_JOB_BWD, DP_JOB_QUIT } dp_job;

struct dp_state;

typedef struct dp_worker {
    struct dp_state *s;
    int index;
    pthread_t thread;
    bool started;
    bool busy; /* on the current job (under the state's mutex) */
    pb_status st;
    char err[512];
} dp_worker;

typedef struct dp_state {
    const pb_strategy_ctx *ctx;
    int n;     /* devices */
    int shard; /* rows per device */
    pb_device *dev[PB_MAX_STAGES];
    pb_replica rep[PB_MAX_STAGES];
    pb_phase_timer timer; /* device 0's */

    /* device 0's full-batch buffers */
    void *x_full;      /* the inputs on the device [B]; NULL when reading in place */
    void *targets;     /* [B]; NULL when reading in place */
    void *logits;      /* act type [B, the model's output]: replica 0 writes its rows here */
    void *dlogits;     /* act type [B, the model's output] */
    size_t out_elems;  /* a sample's output */
    float *loss_sum;
    pb_input input;      /* the global batch onto device 0 */

    /* the comm: participant i is device i */
    const pb_comm *comm;
    pb_comm_ctx *cc[PB_MAX_STAGES];
    pb_comm_opts comm_opts; /* one for all: the local comm groups by its address */
    pb_comm_req *req[2 * PB_MAX_STAGES];
    pb_p2p_plan p2p; /* peer access between device 0 and each other */
    pb_nccl_local *nccl; /* replicate and reduce through NCCL, NULL: the comm */

    /* workers: devices 1..n-1 */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    bool sync_ready;
    bool stuck; /* a worker never came back from a job: left to the process's exit */
    bool bind_tried; /* the calling thread put on device 0's CPUs (cpu backend), once */
    dp_job job;
    unsigned gen;
    int pending;
    dp_worker w[PB_MAX_STAGES];
} dp_state;

static int dp_ordinal(const pb_config *cfg, int i) { return cfg->n_device_map ? cfg->device_map[i] : i; }

/* NCCL within the process where it can run: cuda, the build has it, and no
 * two devices share a GPU (NCCL takes one rank per GPU). Where its init
 * fails, the comm's peer copies do the work, and the log says why. */
static pb_status use_nccl(dp_state *s)
{
    const pb_config *cfg = s->ctx->cfg;
    if (s->ctx->be != &pb_backend_cuda || !pb_nccl_local_built()) return PB_OK;
    for (int i = 0; i < s->n; i++)
        for (int k = 0; k < i; k++)
            if (dp_ordinal(cfg, i) == dp_ordinal(cfg, k)) return PB_OK;
    pb_status st = pb_nccl_local_init(s->dev, s->n, &s->nccl);
    if (st != PB_OK) {
        pb_log_info("dp: NCCL within the process could not start (%s); replicate and reduce use peer copies",
                    pb_error_message());
        pb_error_clear();
        s->nccl = NULL;
    }
    return PB_OK;
}

static pb_status dp_validate(const pb_config *cfg, const pb_model *model)
{
    (void)model;
    if (cfg->devices < 2 || cfg->devices > PB_MAX_STAGES)
        return pb_usage_error("--gpus %d: strategy dp uses 2 to %d devices; use single for 1", cfg->devices,
                              PB_MAX_STAGES);
    if (cfg->shape.batch % cfg->devices != 0)
        return pb_usage_error("--batch %d is not divisible by --gpus %d; dp splits the global batch evenly "
                              "across devices",
                              cfg->shape.batch, cfg->devices);
    if (cfg->cuda_graph) return pb_usage_error("--cuda-graph applies to --strategy single, not dp");
    return PB_OK;
}

/* --- workers ---------------------------------------------------------------- */

static pb_status run_job(dp_state *s, int i, dp_job job)
{
    pb_replica *r = &s->rep[i];
    return job == DP_JOB_FWD ? pb_replica_forward(r, 0, s->shard)
                             : pb_replica_backward(r, 0, s->shard, NULL, NULL, NULL, NULL);
}

static void *worker_main(void *arg)
{
    dp_worker *w = arg;
    dp_state *s = w->s;
    unsigned seen = 0;
    pb_fault_set_device(w->index);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->gen == seen) pthread_cond_wait(&s->go, &s->mu);
        seen = s->gen;
        dp_job job = s->job;
        w->busy = job != DP_JOB_QUIT;
        pthread_mutex_unlock(&s->mu);
        if (job == DP_JOB_QUIT) break;

        pb_fault_at(job == DP_JOB_FWD ? PB_PHASE_FWD : PB_PHASE_BWD); /* tests' PB_FAULT device=i */
        pb_status st = run_job(s, w->index, job);
        if (st == PB_OK) st = s->ctx->be->synchronize(s->dev[w->index]);
        if (st != PB_OK) {
            /* the message is thread-local: hand it to the driving thread */
            snprintf(w->err, sizeof w->err, "%s", pb_error_message());
            pb_error_clear();
        }
        pthread_mutex_lock(&s->mu);
        w->st = st;
        w->busy = false;
        if (--s->pending == 0) pthread_cond_signal(&s->done);
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

/* Runs job on every device at once: devices 1..n-1 on their workers, device 0
 * here; returns when all of them have finished, or fails when one has not
 * within --timeout of device 0 (a hung device: it is left stuck). */
static pb_status run_parallel(dp_state *s, dp_job job, int64_t step)
{
    pthread_mutex_lock(&s->mu);
    s->job = job;
    s->pending = s->n - 1;
    s->gen++;
    pthread_cond_broadcast(&s->go);
    pthread_mutex_unlock(&s->mu);

    pb_status st = run_job(s, 0, job);

    double limit = s->ctx->cfg->timeout_s;
    struct timespec until = pb_time_after(CLOCK_MONOTONIC, limit);
    int rc = 0, late = -1;
    pthread_mutex_lock(&s->mu);
    while (s->pending > 0 && rc == 0) rc = pthread_cond_timedwait(&s->done, &s->mu, &until);
    for (int i = 1; i < s->n && s->pending > 0 && late < 0; i++)
        if (s->w[i].busy) late = i;
    s->stuck = s->pending > 0;
    pthread_mutex_unlock(&s->mu);
    if (s->stuck)
        return pb_user_error(PB_ERR_COMM, "dp step %lld: device %d did not finish its %s within %g s of device 0 "
                                          "(--timeout): it made no progress (stuck or hung device)",
                             (long long)step, late, job == DP_JOB_FWD ? "forward" : "backward", limit);
    if (st != PB_OK) return st;
    for (int i = 1; i < s->n; i++)
        if (s->w[i].st != PB_OK) return pb_user_error(s->w[i].st, "dp device %d: %s", i, s->w[i].err);
    return PB_OK;
}

/* --- set-up and tear-down ---------------------------------------------------- */

static void dp_destroy(void *state)
{
    dp_state *s = state;
    if (!s) return;
    const pb_backend *be = s->ctx->be;
    /* a stuck worker would never join, and may still use its device: all
     * is left as it is for the process's exit, which the failed run goes to */
    if (s->stuck) return;
    if (s->sync_ready) {
        pthread_mutex_lock(&s->mu);
        s->job = DP_JOB_QUIT;
        s->gen++;
        pthread_cond_broadcast(&s->go);
        pthread_mutex_unlock(&s->mu);
        for (int i = 1; i < s->n; i++)
            if (s->w[i].started) pthread_join(s->w[i].thread, NULL);
        pthread_cond_destroy(&s->go);
        pthread_cond_destroy(&s->done);
        pthread_mutex_destroy(&s->mu);
    }
    pb_nccl_local_destroy(s->nccl);
    /* before the devices close: a participant may hold scratch on its device */
    for (int i = 0; i < s->n; i++)
        if (s->cc[i]) s->comm->destroy(s->cc[i]);
    if (s->timer.be) pb_phase_timer_destroy(&s->timer);
    if (s->dev[0]) {
        pb_input_destroy(&s->input);
        be->free(s->dev[0], s->x_full);
        be->free(s->dev[0], s->targets);
        be->free(s->dev[0], s->logits);
        be->free(s->dev[0], s->dlogits);
        be->free(s->dev[0], s->loss_sum);
    }
    for (int i = 0; i < s->n; i++) {
        pb_replica_destroy(&s->rep[i]);
        if (s->dev[i]) be->close(s->dev[i]);
    }
    free(s);
}

static pb_status dp_init(const pb_strategy_ctx *ctx, void **state)
{
    pb_status st = PB_OK;
    dp_state *s = NULL;
    const pb_backend *be = ctx->be;
    const pb_config *cfg = ctx->cfg;
    const pb_model *model = ctx->model;
    PB_ALLOC(s, 1);
    s->ctx = ctx;
    s->n = cfg->devices;
    s->shard = cfg->shape.batch / cfg->devices;
    s->out_elems = model->block[model->n_blocks - 1].out_elems;
    PB_REQUIRE(s->n >= 2 && s->n <= PB_MAX_STAGES && s->shard * s->n == cfg->shape.batch, PB_ERR_INTERNAL,
               "dp: %d devices for a batch of %d", s->n, cfg->shape.batch);

    pb_device_opts dev_opts = pb_config_model_device_opts(cfg, model);
    for (int i = 0; i < s->n; i++) {
        PB_TRY(be->open(&dev_opts, dp_ordinal(cfg, i), &s->dev[i]));
        /* only device 0 keeps optimizer state: the others' parameters are
         * overwritten by replicate every step; the targets are needed only
         * by the loss, on device 0's full batch. Device 0's replica reads
         * its rows of the full-batch input where they are and writes its
         * output into the full-batch output: it has none of its own. */
        PB_TRY(pb_replica_init_bound(&s->rep[i], be, s->dev[i], cfg, model, 0, model->n_blocks, s->shard, 1,
                                     ctx->init_params, i == 0, false, i == 0));
    }

    pb_device *d0 = s->dev[0];
    pb_replica *r0 = &s->rep[0];
    size_t b = (size_t)cfg->shape.batch, c = s->out_elems;
    bool in_place = be->host_is_device && !r0->params_c;
    PB_TRY(pb_input_init(&s->input, be, d0, 0, b, model, in_place));
    if (!s->input.in_place) {
        PB_TRY(be->alloc(d0, pb_input_device_bytes(&s->input, b), &s->x_full));
        PB_TRY(be->alloc(d0, b * s->input.target_bytes, &s->targets));
    }
    PB_TRY(be->alloc(d0, be->act_bytes(d0, b * c), &s->logits));
    pb_replica_bind(r0, PB_STAGE_OUT, s->logits);
    PB_TRY(be->alloc(d0, be->act_bytes(d0, b * c), &s->dlogits));
    PB_TRY(be->alloc(d0, sizeof(float), (void **)&s->loss_sum));
    PB_TRY(pb_phase_timer_init(&s->timer, be, d0));

    {
        int ordinal[PB_MAX_STAGES];
        for (int i = 0; i < s->n; i++) ordinal[i] = dp_ordinal(cfg, i);
        PB_TRY(pb_p2p_setup(be->peer, PB_P2P_STAR, ordinal, s->n, &s->p2p));
    }
    PB_TRY(use_nccl(s));
    PB_REQUIRE(ctx->comm, PB_ERR_INTERNAL, "dp: no comm to move data between its devices (--comm local)");
    s->comm = ctx->comm;
    s->comm_opts = pb_config_comm_opts(cfg);
    for (int i = 0; i < s->n; i++) PB_TRY(s->comm->init(&s->comm_opts, be, s->dev[i], i, s->n, &s->cc[i]));

    PB_REQUIRE(pthread_mutex_init(&s->mu, NULL) == 0, PB_ERR_INTERNAL, "dp: pthread_mutex_init failed");
    if (pthread_cond_init(&s->go, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        PB_FAIL(PB_ERR_INTERNAL, "dp: pthread_cond_init failed");
    }
    if (pb_cond_init_monotonic(&s->done) != 0) { /* its wait has a deadline */
        pthread_cond_destroy(&s->go);
        pthread_mutex_destroy(&s->mu);
        PB_FAIL(PB_ERR_INTERNAL, "dp: pthread_cond_init failed");
    }
    s->sync_ready = true;
    for (int i = 1; i < s->n; i++) {
        s->w[i].s = s;
        s->w[i].index = i;
        int rc = pthread_create(&s->w[i].thread, NULL, worker_main, &s->w[i]);
        PB_REQUIRE(rc == 0, PB_ERR_INTERNAL, "dp: could not start the thread of device %d (error %d)", i, rc);
        s->w[i].started = true;
        if (!be->is_gpu) pb_cpu_bind_thread(s->w[i].thread, i, s->n);
    }
    *state = s;
    return PB_OK;
cleanup:
    dp_destroy(s);
    return st;
}

/* --- moving data: the comm ------------------------------------------------- */

/* Waits for every device's request of a collective (req[i]: device i's). */
static pb_status wait_all(dp_state *s)
{
    for (int i = 0; i < s->n; i++) {
        pb_status st = s->comm->wait(s->cc[i], s->req[i], s->ctx->cfg->timeout_s);
        if (st != PB_OK) return st;
    }
    return PB_OK;
}

/* Rows between device 0's full-batch buffer and the other devices: device
 * i's rows are bytes at full + i * bytes; peer[i] is device i's buffer.
 * Each pair of a send and a recv runs when its second half is posted. */
static pb_status move_rows(dp_state *s, bool to_root, char *full, void *const *peer, size_t bytes)
{
    pb_status st = PB_OK;
    const pb_comm *cm = s->comm;
    /* req[i]: device i's half; req[n + i]: device 0's half of pair i */
    for (int i = 1; i < s->n; i++) {
        char *rows = full + (size_t)i * bytes;
        if (to_root) {
            PB_TRY(cm->send(s->cc[i], peer[i], bytes, 0, &s->req[i]));
            PB_TRY(cm->recv(s->cc[0], rows, bytes, i, &s->req[s->n + i]));
        } else {
            PB_TRY(cm->send(s->cc[0], rows, bytes, i, &s->req[s->n + i]));
            PB_TRY(cm->recv(s->cc[i], peer[i], bytes, 0, &s->req[i]));
        }
    }
    for (int i = 1; i < s->n; i++) {
        PB_TRY(cm->wait(s->cc[i], s->req[i], s->ctx->cfg->timeout_s));
        PB_TRY(cm->wait(s->cc[0], s->req[s->n + i], s->ctx->cfg->timeout_s));
    }
cleanup:
    return st;
}

/* Device 0's parameters (and their compute copy) to every device. */
static pb_status replicate(dp_state *s)
{
    pb_status st = PB_OK;
    const pb_backend *be = s->ctx->be;
    pb_replica *r0 = &s->rep[0];
    if (s->nccl) {
        void *p[PB_MAX_STAGES], *pc[PB_MAX_STAGES];
        for (int i = 0; i < s->n; i++) p[i] = s->rep[i].params, pc[i] = s->rep[i].params_c;
        PB_TRY(pb_nccl_local_broadcast(s->nccl, p, r0->p_len * sizeof(float), 0));
        if (r0->params_c) PB_TRY(pb_nccl_local_broadcast(s->nccl, pc, be->act_bytes(s->dev[0], r0->p_len), 0));
        return PB_OK;
    }
    for (int i = 0; i < s->n; i++)
        PB_TRY(s->comm->broadcast(s->cc[i], s->rep[i].params, r0->p_len * sizeof(float), 0, &s->req[i]));
    PB_TRY(wait_all(s));
    if (r0->params_c) {
        for (int i = 0; i < s->n; i++)
            PB_TRY(s->comm->broadcast(s->cc[i], s->rep[i].params_c, be->act_bytes(s->dev[0], r0->p_len), 0,
                                      &s->req[i]));
        PB_TRY(wait_all(s));
    }
cleanup:
    return st;
}

/* Every device's gradients summed into device 0's. */
static pb_status reduce_grads(dp_state *s)
{
    pb_status st = PB_OK;
    if (s->nccl) {
        float *g[PB_MAX_STAGES];
        for (int i = 0; i < s->n; i++) g[i] = s->rep[i].grads;
        return pb_nccl_local_reduce(s->nccl, g, s->rep[0].p_len, 0);
    }
    for (int i = 0; i < s->n; i++) PB_TRY(s->comm->reduce(s->cc[i], s->rep[i].grads, s->rep[0].p_len, 0, &s->req[i]));
    PB_TRY(wait_all(s));
cleanup:
    return st;
}

/* --- the step ---------------------------------------------------------------- */

static pb_status dp_step(void *state, const pb_batch *batch, pb_step_result *out)
{
    dp_state *s = state;
    const pb_backend *be = s->ctx->be;
    const pb_model *model = s->ctx->model;
    pb_device *d0 = s->dev[0];
    pb_replica *r0 = &s->rep[0];
    pb_status st = PB_OK;
    int bsz = batch->count, m = s->shard;
    size_t x_rows = pb_input_device_bytes(&s->input, (size_t)m), y_rows = be->act_bytes(d0, (size_t)m * s->out_elems);
    void *peer[PB_MAX_STAGES];
    float loss = 0.0f;
    PB_REQUIRE(bsz == m * s->n, PB_ERR_INTERNAL, "dp: batch of %d rows, expected %d", bsz, m * s->n);
    if (!be->is_gpu && !s->bind_tried) {
        s->bind_tried = true;
        pb_cpu_bind_thread(pthread_self(), 0, s->n);
    }

    pb_phase_timer_reset(&s->timer);
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_H2D));
    void *x_in = s->x_full, *targets = s->targets;
    PB_TRY(pb_input_load(&s->input, batch, &x_in, &targets));
    pb_replica_bind(r0, PB_STAGE_IN, x_in);
    PB_TRY(pb_phase_end(&s->timer));

    /* device 0's rows are read where they are; the others get theirs */
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_SCATTER));
    for (int i = 1; i < s->n; i++) peer[i] = pb_replica_buf(&s->rep[i], PB_STAGE_IN, 0);
    PB_TRY(move_rows(s, false, (char *)x_in, peer, x_rows));
    PB_TRY(pb_phase_end(&s->timer));

    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_REPLICATE));
    PB_TRY(replicate(s));
    PB_TRY(pb_phase_end(&s->timer));

    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_FWD));
    PB_TRY(run_parallel(s, DP_JOB_FWD, batch->step));
    PB_TRY(pb_phase_end(&s->timer));

    /* replica 0 wrote its output into the full-batch buffer already */
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_GATHER));
    for (int i = 1; i < s->n; i++) peer[i] = pb_replica_buf(&s->rep[i], PB_STAGE_OUT, 0);
    PB_TRY(move_rows(s, true, s->logits, peer, y_rows));
    PB_TRY(pb_phase_end(&s->timer));

    /* the loss over the global batch: the second span of fwd */
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_FWD));
    PB_TRY(be->zero(d0, s->loss_sum, sizeof(float)));
    PB_TRY(model->ops->loss(model, be, d0, bsz, s->logits, targets, 1.0f / (float)bsz, s->loss_sum, s->dlogits));
    PB_TRY(pb_phase_end(&s->timer));

    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_SCATTER));
    PB_TRY(be->copy(d0, pb_replica_buf(r0, PB_STAGE_DOUT, 0), s->dlogits, y_rows));
    for (int i = 1; i < s->n; i++) peer[i] = pb_replica_buf(&s->rep[i], PB_STAGE_DOUT, 0);
    PB_TRY(move_rows(s, false, s->dlogits, peer, y_rows));
    PB_TRY(pb_phase_end(&s->timer));

    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_BWD));
    PB_TRY(run_parallel(s, DP_JOB_BWD, batch->step));
    PB_TRY(pb_phase_end(&s->timer));

    /* sum, not mean: each shard's gradient already carries 1/B */
    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_REDUCE));
    PB_TRY(reduce_grads(s));
    PB_TRY(pb_phase_end(&s->timer));

    PB_TRY(pb_phase_begin(&s->timer, PB_PHASE_OPT));
    PB_TRY(pb_replica_tie_grads(r0));
    PB_TRY(pb_replica_optimize(r0));
    PB_TRY(pb_phase_end(&s->timer));

    /* start copying the next batch to device 0, overlapping this step */
    PB_TRY(pb_input_prefetch_next(&s->input, batch));

    PB_TRY(be->download(d0, &loss, s->loss_sum, sizeof loss));
    PB_TRY(be->synchronize(d0));
    memset(out, 0, sizeof *out);
    PB_TRY(pb_phase_timer_collect(&s->timer, &out->t));
    out->loss = loss;
cleanup:
    return st;
}

static pb_status dp_get_params(void *state, float *host_params)
{
    dp_state *s = state;
    return pb_replica_download_params(&s->rep[0], host_params);
}

static pb_status dp_memory(void *state, pb_memory_report *out)
{
    dp_state *s = state;
    const pb_backend *be = s->ctx->be;
    out->peak_mb_dev0 = be->peak_mem_mb(s->dev[0]);
    out->peak_mb_max = out->peak_mb_dev0;
    for (int i = 1; i < s->n; i++) {
        double mb = be->peak_mem_mb(s->dev[i]);
        if (mb > out->peak_mb_max) out->peak_mb_max = mb;
    }
    return PB_OK;
}

static pb_status dp_device_info(void *state, pb_device_info *out)
{
    dp_state *s = state;
    return s->ctx->be->info(s->dev[0], out);
}

static void dp_report(void *state, const pb_step_times *mean, pb_record *row)
{
    dp_state *s = state;
    (void)mean;
    pb_record_set(row, PB_COL_P2P, "%s", pb_p2p_link_name(s->p2p.worst));
}

/* The memory plan's model of dp (harness/memplan.h): a replica per device
 * over its shard, optimizer state on device 0 only, targets on none, and
 * device 0's full batch: its inputs and targets (unless read in place), the
 * outputs and their gradient, which replace its replica's own input and
 * output. */
static void dp_plan_memory(const pb_config *cfg, const pb_model *model, const pb_memplan_env *env,
                           pb_mem_parts *dev)
{
    const double e = (double)pb_memplan_act_elem(cfg, env->host_is_device);
    const double B = cfg->shape.batch, P = (double)model->n_params;
    const double c = (double)model->block[model->n_blocks - 1].out_elems;
    const int n = cfg->devices;
    const bool in_place = pb_memplan_in_place(cfg, env);
    double m = B / n;
    for (int i = 0; i < n; i++)
        pb_memplan_add_replica(model, 0, model->n_blocks, m, 1, i == 0, false, i == 0, cfg->optimizer, e, &dev[i]);
    dev[0].acts += 2.0 * e * B * c + 4.0;
    if (!in_place) dev[0].acts += pb_memplan_input_bytes(model, B, e) + B * (double)pb_model_target_bytes(model);
    pb_memplan_add_staging(model, B, in_place, &dev[0]);
    /* the local comm's reduce sums a peer's gradients through scratch
     * where device memory is not host memory */
    if (!env->host_is_device) dev[0].grads += 4.0 * P;
}

const pb_strategy pb_strategy_dp = {
    .name = "dp",
    .description = "DataParallel: scatter, replicate, parallel fwd/bwd, gather and reduce on device 0",
    .procs = PB_PROC_ONE,
    .needs_even_split = true,
    .validate = dp_validate,
    .init = dp_init,
    .step = dp_step,
    .get_params = dp_get_params,
    .memory = dp_memory,
    .device_info = dp_device_info,
    .plan_memory = dp_plan_memory,
    .report = dp_report,
    .destroy = dp_destroy,
};
