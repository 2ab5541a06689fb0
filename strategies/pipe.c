/* The mesh's rank pipeline (pipe.h). Per step, in the schedule's order
 * (pb_sched_ops: GPipe or 1F1B, as mp's):
 *   forward of microbatch j: the first stage uploads its rows (h2d), the
 *     others receive PB_STAGE_IN from the previous stage; forward (fwd, cut
 *     by tp's all-reduces); the stage's output goes to the next (p2p);
 *   backward of j: the last stage takes the loss of its rows (scale 1/B,
 *     the global batch, so the sums are single's mean), the others receive
 *     DOUT from the next stage; backward (bwd); the stage's input gradient
 *     goes to the previous (p2p).
 * Slots and send buffers are mp's (schedule.h): microbatch j's activations
 * in slot j % slots, a slot's output rows reused once their send was
 * waited for, input gradients copied to a send slot first. Backward writes
 * the first microbatch's gradients in place and the others' into a scratch
 * added in (axpy), so the stage's gradients accumulate over microbatches.
 *
 * Messages are the comm's send/recv on the pp group; every send is posted
 * (never blocking: comm.h) and waited for lazily, so two stages that send
 * to each other before receiving do not deadlock, and each rank's sends
 * precede its blocking collectives (tp's all-reduces, the dp sync) on the
 * mpi comm's one thread. On nccl, whose sends and receives are held back
 * and issued as one group at the next wait (comm_nccl.c), a send goes out
 * with the stage's next receive, as Megatron pairs them
 * (send_forward_recv_backward, send_backward_recv_forward): one alone on
 * each of two neighbours' serialized streams, both sending first, would
 * wait for each other. A send with no receive next (the first stage's
 * warm-up forwards, the last stage's GPipe backwards) is flushed at once,
 * else it would sit until the stage's next receive and the neighbour could
 * not start (GPipe's forwards one stage after another). A model of these
 * orders under NCCL's rules found neither a hang nor that wait for 2..8
 * stages, 1..16 microbatches (notes: pipereview).
 * A receive's wait is outside every span: it is the
 * stage waiting for its neighbour, the bubble (tp.c: the step's wall time
 * less its spans); p2p is posting, host staging, and the sends' waits. A
 * neighbour that stops (a hung rank) fails the wait after --timeout, the
 * comm's message naming it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dp_common.h"
#include "input.h"
#include "pipe.h"
#include "schedule.h"
#include "zero.h"

pb_status pb_pipe_validate(const pb_config *cfg, const pb_model *model, pb_mesh mesh)
{
    int p = mesh.pp, n = model->n_blocks, b = cfg->shape.batch, m = cfg->microbatches;
    if (p > PB_MAX_STAGES) return pb_usage_error("--pp %d: allowed: at most %d stages", p, PB_MAX_STAGES);
    if (p > n)
        return pb_usage_error("--pp %d: more stages than blocks (%d %ss); allowed: --pp <= %d", p, n,
                              model->block_noun, n);
    if (b % (mesh.dp * m) != 0)
        return pb_usage_error("--batch %d is not divisible by --dp %d x --microbatches %d; each replica's "
                              "microbatch is batch/(dp x microbatches) rows",
                              b, mesh.dp, m);
    return PB_OK;
}

void pb_pipe_stage_rows(pb_pipe *pp, const pb_config *cfg, const pb_model *model, pb_mesh mesh, int rank,
                        int *b0, int *b1, int *rows, int *slots)
{
    memset(pp, 0, sizeof *pp);
    pp->cfg = cfg;
    pp->p = mesh.pp;
    pp->k = pb_mesh_index(mesh, rank, PB_MESH_PP);
    pp->m = cfg->microbatches;
    pp->mb = cfg->shape.batch / mesh.dp / pp->m;
    pp->sched = cfg->schedule;
    pb_sched_balanced_split(model, pp->p, pp->first);
    *b0 = pp->first[pp->k];
    *b1 = pp->first[pp->k + 1];
    *rows = pp->mb;
    *slots = pb_sched_slots(pp->sched, pp->p, pp->m, pp->k);
}

/* the boundary's bytes of one microbatch: block b's input */
static size_t boundary_bytes(const pb_pipe *pp, int b)
{
    return pp->be->act_bytes(pp->dev, (size_t)pp->mb * pp->local->block[b].in_elems);
}

pb_status pb_pipe_init(pb_pipe *pp, const pb_backend *be, pb_device *dev, const pb_model *local,
                       const pb_comm *comm, pb_comm_ctx *cc, pb_replica *rep, pb_phase_timer *timer, pb_phase *cur,
                       bool staged, int row0)
{
    pb_status st = PB_OK;
    pp->be = be;
    pp->dev = dev;
    pp->local = local;
    pp->comm = comm;
    pp->cc = cc;
    pp->rep = rep;
    pp->timer = timer;
    pp->cur = cur;
    pp->name = "mesh";
    pp->staged = staged;
    pp->row0 = row0;
    int k = pp->k, last = pp->p - 1, M = pp->m;
    PB_REQUIRE(cc, PB_ERR_INTERNAL, "mesh: no pp group for stage %d", k);
    PB_ALLOC(pp->ops, 2 * (size_t)M);
    PB_ALLOC(pp->sreq, 2 * (size_t)M);
    pb_sched_ops(pp->sched, pp->p, M, k, pp->ops);
    pp->send_slots = pb_sched_send_slots(pp->sched, M);
    if (M > 1) PB_TRY(be->alloc(dev, rep->p_len * sizeof(float), (void **)&pp->gscratch));
    if (local->n_tied && (k == 0 || k == last))
        PB_TRY(be->alloc(dev, local->n_tied * sizeof(float), (void **)&pp->tscratch));
    if (k > 0) PB_TRY(be->alloc(dev, (size_t)pp->send_slots * boundary_bytes(pp, pp->first[k]), &pp->gsend));
    if (staged) {
        size_t in = k > 0 ? boundary_bytes(pp, pp->first[k]) : 0;
        size_t out = k < last ? boundary_bytes(pp, pp->first[k + 1]) : 0;
        size_t tied = (k == 0 || k == last) ? local->n_tied * sizeof(float) : 0;
        pp->msg_bytes = in > out ? in : out;
        if (tied > pp->msg_bytes) pp->msg_bytes = tied;
        PB_ALLOC(pp->host_send, 2 * (size_t)M * pp->msg_bytes);
        PB_ALLOC(pp->host_recv, pp->msg_bytes);
    }
cleanup:
    return st;
}

void pb_pipe_destroy(pb_pipe *pp)
{
    if (!pp || !pp->be) return;
    if (pp->gscratch) pp->be->free(pp->dev, pp->gscratch);
    if (pp->tscratch) pp->be->free(pp->dev, pp->tscratch);
    if (pp->gsend) pp->be->free(pp->dev, pp->gsend);
    free(pp->host_send);
    free(pp->host_recv);
    free(pp->sreq);
    free(pp->ops);
    pp->be = NULL;
}

int pb_pipe_spans(const pb_pipe *pp, int n_blocks)
{
    /* per microbatch: h2d, two p2p, fwd and bwd each cut by up to two
     * all-reduces a block; then the drain, sync, opt */
    return 16 + pp->m * (8 + 8 * n_blocks);
}

/* --- messages ------------------------------------------------------------- */

/* Waits for send i unless already waited for: its rows may be reused. */
static pb_status wait_send(pb_pipe *pp, int i)
{
    pb_status st = PB_OK;
    if (!pp->sreq[i]) return PB_OK;
    PB_TRY(pb_with_step(pp->comm->wait(pp->cc, pp->sreq[i], pp->cfg->timeout_s), pp->name, pp->step));
    if (pp->comm->req_ms) pp->comm_ms += pp->comm->req_ms(pp->sreq[i]);
    pp->sreq[i] = NULL;
cleanup:
    return st;
}

/* Posts send i of bytes at buf (device) to stage `to`, in a p2p span;
 * lone: the stage posts no receive next, so the comm starts it now */
static pb_status post_send(pb_pipe *pp, const void *buf, size_t bytes, int to, int i, bool lone)
{
    pb_status st = PB_OK;
    PB_TRY(pb_phase_begin(pp->timer, PB_PHASE_P2P));
    if (pp->staged) {
        char *h = pp->host_send + (size_t)i * pp->msg_bytes;
        PB_TRY(pp->be->download(pp->dev, h, buf, bytes));
        buf = h;
    }
    PB_TRY(pp->comm->send(pp->cc, buf, bytes, to, &pp->sreq[i]));
    if (lone && pp->comm->flush) PB_TRY(pb_with_step(pp->comm->flush(pp->cc), pp->name, pp->step));
    PB_TRY(pb_phase_end(pp->timer));
cleanup:
    return st;
}

/* The next message from stage `from` into buf (device): the wait outside
 * the spans (bubble), the staging's upload in a p2p span */
static pb_status receive(pb_pipe *pp, void *buf, size_t bytes, int from)
{
    pb_status st = PB_OK;
    pb_comm_req *req = NULL;
    PB_TRY(pp->comm->recv(pp->cc, pp->staged ? pp->host_recv : buf, bytes, from, &req));
    PB_TRY(pb_with_step(pp->comm->wait(pp->cc, req, pp->cfg->timeout_s), pp->name, pp->step));
    if (pp->comm->req_ms) pp->comm_ms += pp->comm->req_ms(req);
    if (pp->staged) {
        PB_TRY(pb_phase_begin(pp->timer, PB_PHASE_P2P));
        PB_TRY(pp->be->upload(pp->dev, buf, pp->host_recv, bytes));
        PB_TRY(pb_phase_end(pp->timer));
    }
cleanup:
    return st;
}

/* Microbatch j's rows of the rank's shard into slot: its inputs on the
 * first stage, its targets on the last (h2d) */
static pb_status upload_rows(pb_pipe *pp, const pb_batch *batch, int j, int slot)
{
    const pb_backend *be = pp->be;
    const pb_model *model = pp->local;
    pb_replica *r = pp->rep;
    pb_status st = PB_OK;
    size_t row0 = (size_t)(pp->row0 - batch->row0) + (size_t)j * pp->mb, rows = (size_t)pp->mb;
    PB_TRY(pb_phase_begin(pp->timer, PB_PHASE_H2D));
    if (pp->k == 0)
        PB_TRY(pb_input_upload(be, pp->dev, model, pb_replica_buf(r, PB_STAGE_IN, slot),
                               (const char *)batch->inputs + row0 * pb_model_input_bytes(model), rows));
    if (pp->k == pp->p - 1) {
        size_t tb = pb_model_target_bytes(model);
        PB_TRY(be->upload(pp->dev, pb_replica_targets(r, slot), (const char *)batch->targets + row0 * tb, rows * tb));
    }
    PB_TRY(pb_phase_end(pp->timer));
cleanup:
    return st;
}

/* --- the step ------------------------------------------------------------- */

static pb_status forward(pb_pipe *pp, const pb_batch *batch, int j, bool lone)
{
    pb_status st = PB_OK;
    pb_replica *r = pp->rep;
    int k = pp->k, last = pp->p - 1, S = r->slots, slot = j % S;
    if (k == 0 || k == last) PB_TRY(upload_rows(pp, batch, j, slot));
    if (k > 0) PB_TRY(receive(pp, pb_replica_buf(r, PB_STAGE_IN, slot), boundary_bytes(pp, r->b0), k - 1));
    /* the slot's output rows went out for microbatch j - S */
    if (k < last && j >= S) PB_TRY(wait_send(pp, j - S));
    *pp->cur = PB_PHASE_FWD;
    PB_TRY(pb_phase_begin(pp->timer, PB_PHASE_FWD));
    PB_TRY(pb_replica_forward(r, slot, pp->mb));
    PB_TRY(pb_phase_end(pp->timer));
    if (k < last)
        PB_TRY(post_send(pp, pb_replica_buf(r, PB_STAGE_OUT, slot), boundary_bytes(pp, r->b1), k + 1, j, lone));
cleanup:
    return st;
}

static pb_status backward(pb_pipe *pp, int j, bool lone)
{
    pb_status st = PB_OK;
    const pb_backend *be = pp->be;
    pb_replica *r = pp->rep;
    int k = pp->k, last = pp->p - 1, M = pp->m, slot = j % r->slots;
    int nb = pb_sched_bwd_rank(pp->sched, M, j), gs = nb % pp->send_slots;
    size_t in_mb = boundary_bytes(pp, r->b0);
    if (k < last) PB_TRY(receive(pp, pb_replica_buf(r, PB_STAGE_DOUT, slot), boundary_bytes(pp, r->b1), k + 1));
    /* the send slot's previous input gradient must be taken */
    if (k > 0 && nb >= pp->send_slots) PB_TRY(wait_send(pp, M + nb - pp->send_slots));
    *pp->cur = PB_PHASE_BWD;
    PB_TRY(pb_phase_begin(pp->timer, PB_PHASE_BWD));
    if (k == last) PB_TRY(pb_replica_loss(r, slot, pp->mb, 1.0f / (float)pp->cfg->shape.batch));
    bool first_back = nb == 0;
    void *dx = NULL;
    PB_TRY(pb_replica_backward(r, slot, pp->mb, first_back ? NULL : pp->gscratch, k > 0 ? &dx : NULL, NULL, NULL));
    if (!first_back) PB_TRY(be->axpy(pp->dev, r->p_len, 1.0f, pp->gscratch, r->grads));
    void *send_rows = k > 0 ? (char *)pp->gsend + (size_t)gs * in_mb : NULL;
    if (k > 0) PB_TRY(be->copy(pp->dev, send_rows, dx, in_mb));
    PB_TRY(pb_phase_end(pp->timer));
    if (k > 0) PB_TRY(post_send(pp, send_rows, in_mb, k - 1, M + nb, lone));
cleanup:
    return st;
}

/* Whether the stage's op n + 1 starts with a receive (a forward but on
 * the first stage, a backward but on the last); none after the last op,
 * whose sends the drain waits for at once. */
static bool next_receives(const pb_pipe *pp, int n)
{
    if (n + 1 >= 2 * pp->m) return true;
    return pp->ops[n + 1] >= 0 ? pp->k > 0 : pp->k < pp->p - 1;
}

pb_status pb_pipe_run(pb_pipe *pp, const pb_batch *batch)
{
    pb_status st = PB_OK;
    int M = pp->m;
    pp->step = batch->step;
    pp->comm_ms = 0.0;
    memset(pp->sreq, 0, 2 * (size_t)M * sizeof *pp->sreq);
    PB_TRY(pp->be->zero(pp->dev, pp->rep->loss_sum, sizeof(float)));
    for (int n = 0; n < 2 * M; n++) {
        int op = pp->ops[n];
        bool lone = !next_receives(pp, n);
        PB_TRY(op >= 0 ? forward(pp, batch, op, lone) : backward(pp, -op - 1, lone));
    }
    /* the last sends' rows are the gradients' and activations' own: taken
     * before the sync and the optimizer touch them */
    PB_TRY(pb_phase_begin(pp->timer, PB_PHASE_P2P));
    for (int i = 0; i < 2 * M; i++) PB_TRY(wait_send(pp, i));
    PB_TRY(pb_phase_end(pp->timer));
cleanup:
    return st;
}

/* The first and last stage each send their tied gradient to the other and
 * add the one received (a + b and b + a: the same floats), Megatron's
 * embedding-group all-reduce between its first and last stage. */
static pb_status tie_grads(pb_pipe *pp)
{
    pb_status st = PB_OK;
    int other = pp->k == 0 ? pp->p - 1 : 0;
    size_t bytes = pp->local->n_tied * sizeof(float);
    float *mine = pb_replica_tied_grad(pp->rep, pp->k == 0);
    PB_REQUIRE(mine, PB_ERR_INTERNAL, "mesh: stage %d holds no end of the tied tensor", pp->k);
    const void *out = mine;
    void *in = pp->tscratch;
    pb_comm_req *sreq = NULL, *rreq = NULL;
    /* inside the sync span: staged through the host without spans of its own */
    if (pp->staged) {
        PB_TRY(pp->be->download(pp->dev, pp->host_send, mine, bytes));
        out = pp->host_send;
        in = pp->host_recv;
    }
    PB_TRY(pp->comm->send(pp->cc, out, bytes, other, &sreq));
    PB_TRY(pp->comm->recv(pp->cc, in, bytes, other, &rreq));
    PB_TRY(pb_with_step(pp->comm->wait(pp->cc, rreq, pp->cfg->timeout_s), pp->name, pp->step));
    PB_TRY(pb_with_step(pp->comm->wait(pp->cc, sreq, pp->cfg->timeout_s), pp->name, pp->step));
    if (pp->comm->req_ms) pp->comm_ms += pp->comm->req_ms(rreq);
    if (pp->staged) PB_TRY(pp->be->upload(pp->dev, pp->tscratch, pp->host_recv, bytes));
    PB_TRY(pp->be->axpy(pp->dev, pp->local->n_tied, 1.0f, pp->tscratch, mine));
cleanup:
    return st;
}

/* n host floats summed over the pp group, in place; through dev (n floats
 * on the device) for a comm of device buffers */
static pb_status group_sum(pb_pipe *pp, float *host, size_t n, float *dev)
{
    pb_status st = PB_OK;
    const pb_comm *comm = pp->comm;
    pb_comm_req *req = NULL;
    if (comm->device_buffers) PB_TRY(pp->be->upload(pp->dev, dev, host, n * sizeof(float)));
    PB_TRY(comm->allreduce(pp->cc, comm->device_buffers ? dev : host, n, 1.0f, &req));
    PB_TRY(pb_with_step(comm->wait(pp->cc, req, pp->cfg->timeout_s), pp->name, pp->step));
    if (comm->req_ms) pp->comm_ms += comm->req_ms(req);
    if (comm->device_buffers) PB_TRY(pp->be->download(pp->dev, host, dev, n * sizeof(float)));
cleanup:
    return st;
}

pb_status pb_pipe_finish(pb_pipe *pp, float *loss)
{
    pb_status st = PB_OK;
    if (pp->tscratch) PB_TRY(tie_grads(pp));
    /* the loss, the last stage's (0 on the others), summed over the group */
    if (pp->k != pp->p - 1) *loss = 0.0f;
    PB_TRY(group_sum(pp, loss, 1, pp->rep->loss_sum));
cleanup:
    return st;
}

pb_status pb_pipe_gather_params(pb_pipe *pp, float *local_params)
{
    pb_status st = PB_OK;
    size_t n = pp->local->n_params;
    void *d = NULL;
    memset(local_params, 0, n * sizeof(float));
    PB_TRY(pb_replica_download_params(pp->rep, local_params));
    /* the stages' spans are disjoint: a sum over the group is their union */
    if (pp->comm->device_buffers) PB_TRY(pp->be->alloc(pp->dev, n * sizeof(float), &d));
    PB_TRY(group_sum(pp, local_params, n, d));
cleanup:
    if (d) pp->be->free(pp->dev, d);
    return st;
}

/* --- the row and the plan ------------------------------------------------- */

double pb_pipe_p2p_bytes(const pb_pipe *pp)
{
    /* a boundary per step: the replica's B/D rows forward and their
     * gradients back, 2 (B/D) w e (docs/strategies.md), the mean over
     * boundaries; w is the rank's part of the boundary (whole but inside a
     * tp column/row pair), so each rank of the tp group moves this much */
    double B = (double)pp->mb * pp->m, cross = 0.0;
    for (int k = 1; k < pp->p; k++)
        cross += 2.0 * (double)pp->be->act_bytes(pp->dev, (size_t)B * pp->local->block[pp->first[k]].in_elems);
    return cross / (pp->p - 1.0);
}

void pb_pipe_report(const pb_pipe *pp, const pb_step_times *mean, pb_record *row)
{
    double p = pp->p, m = pp->m, step = 0.0;
    for (int ph = 0; ph < PB_PHASE_COUNT; ph++)
        if (ph != PB_PHASE_LOAD && ph != PB_PHASE_COMM && ph != PB_PHASE_REDUCE_SCATTER && ph != PB_PHASE_ALLGATHER)
            step += mean->ms[ph]; /* the strategy's step: its phases less the collectives' own clocks */
    if (step > 0.0) pb_record_num(row, PB_COL_BUBBLE_FRAC, mean->ms[PB_PHASE_BUBBLE] / step);
    pb_record_num(row, PB_COL_BUBBLE_FRAC_THEORY, (p - 1.0) / (m + p - 1.0));
    char layers[PB_FIELD_MAX] = "";
    size_t n = 0;
    for (int k = 0; k < pp->p && n < sizeof layers; k++)
        n += (size_t)snprintf(layers + n, sizeof layers - n, "%s%d", k ? "+" : "", pp->first[k + 1] - pp->first[k]);
    pb_record_set(row, PB_COL_STAGE_LAYERS, "%s", layers);
}

void pb_pipe_plan_memory(const pb_config *cfg, const pb_model *model, const pb_model *local,
                         const pb_memplan_env *env, pb_mesh mesh, pb_mem_parts *dev)
{
    const double e = (double)pb_memplan_act_elem(cfg, env->host_is_device);
    const int p = mesh.pp, m = cfg->microbatches;
    const double mb = (double)(cfg->shape.batch / mesh.dp / m);
    int first[PB_MAX_STAGES + 1];
    pb_sched_balanced_split(model, p, first);
    /* with ZeRO (tp.c's zero) the replica keeps no optimizer state */
    bool zero = pb_config_given(cfg, "--zero-stage");
    for (int k = 0; k < p; k++) {
        double len = pb_memplan_add_replica(local, first[k], first[k + 1], mb, pb_sched_slots(cfg->schedule, p, m, k),
                                            !zero, k == p - 1, false, cfg->optimizer, e, &dev[k]);
        pb_sched_plan_extras(cfg, local, first, p, k, mb, len, e, &dev[k]);
        if (zero) pb_zero_plan_piped(cfg, local, first[k], first[k + 1], mesh.dp, &dev[k]);
    }
}
