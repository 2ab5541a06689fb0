/* `mp`: block-split model parallelism, one process driving N devices.
 *
 * The workload's blocks are split into N contiguous stages (balanced by
 * each block's FLOPs, or at the --split boundaries), one stage per device. With --microbatches M the global
 * batch is cut into M microbatches of batch/M rows and pipelined by
 * --schedule (pb_sched_ops, schedule.c): GPipe, every stage runs all its forwards
 * (microbatch 0..M-1), then all its backwards in reverse order (M-1..0);
 * 1F1B (PipeDream-flush), stage k runs p-k-1 warm-up forwards, then one
 * forward and one backward in turn, then the remaining backwards, in
 * microbatch order. Then its optimizer. M = 1 is the naive layer split of
 * the classic two-GPU example. The batch itself is not split across
 * devices: every stage sees every row.
 *
 * Each stage has a host thread (a persistent worker), so the stages really
 * overlap on the CPU backend (whose calls are synchronous) and enqueue their
 * own streams on CUDA. A stage's replica keeps a slot of activations (the
 * workload's stage, workloads/workload.h) per microbatch it holds between
 * its forward and backward: GPipe M, 1F1B min(M, p - k) (pb_sched_slots);
 * microbatch j is slot j mod slots, rows [slot*mb, (slot+1)*mb) of the
 * stage's buffers. Where a stage holds every microbatch it takes the batch
 * (inputs, targets) at once; otherwise each microbatch's rows go to its
 * slot before its forward. The activation a stage hands the
 * next and its gradient are the workload's block boundary (its output
 * elements per sample). Backward overwrites gradients, so the first
 * microbatch back writes the stage's gradients and the others write a
 * scratch buffer that is added in with axpy. The loss uses scale 1/global batch on every microbatch, so the sums
 * are the global mean, as in `single`.
 *
 * Stage to stage (phase p2p), send/recv of the run's comm (`local`: stage k
 * is participant k) per microbatch: activations from the sender's output
 * rows (a slot is rewritten only after its send was waited for), and input
 * gradients from the sender's send buffer (backward's own gradient buffers
 * are reused by the next microbatch, so a stage copies its input gradient
 * there first; pb_sched_send_slots of them, reused the same way). The
 * local comm runs a message when its second half is posted, on that
 * poster's thread; the sender posts its send and then bumps a counter the
 * receiver waits on (outside its spans: bubble), so the receiver always
 * posts second and the copy runs inside its own p2p span, as a pulled copy
 * would. Were the receiver to post first and wait in the comm, the sender
 * would run the copy and wake the receiver inside the sender's span, and on
 * a busy host p2p would hold the sender's wait for a core. Sends are waited
 * for lazily (their rows stay put until the next step), at most SEND_WINDOW
 * outstanding per direction. A stage that fails stops the others' waits:
 * the counters' and, by an abort, the comm's.
 *
 * Phase accounting: each stage times its spans (h2d, fwd, p2p, bwd, opt) with
 * marks on its own device, so their sum is the stage's busy time. The step
 * time T is the host's wall time of the strategy's step (all stages
 * synchronised). A stage's bubble is T minus its busy time: the time it
 * waited on the other stages. The row's phases are the mean over stages, and
 * bubble_ms the mean bubble, so h2d + fwd + p2p + bwd + opt + bubble = T: the
 * phases tile the step exactly, and with load the harness's step. The last
 * stage's loss is timed in bwd (each microbatch's loss gradient is computed
 * when that microbatch's backward starts). bubble_frac is the mean bubble
 * over the mean T of the measured steps; bubble_frac_theory is
 * (p-1)/(m+p-1), GPipe's and 1F1B's alike, which assumes equal stages;
 * bubble_frac_replay is the run's schedule replayed on its stages'
 * measured op times with free handoffs (mp_replay.h), so the measured
 * bubble splits into the schedule's with these stages (their imbalance
 * included) and the host's (wake-ups, waits for a core). A stage waits on
 * its own cond var, which a post for it signals; the host thread's wakes
 * only when a stage is back; on the cpu backend each stage's thread runs
 * on CPUs of its own (harness/cpu_bind.h). A receiver's waiting is outside its spans on both
 * backends, so it counts as bubble and p2p is the copy alone: on the CPU the
 * stage waits on the host (wait_for) before its span begins; on CUDA the
 * host wait only sees the send posted, and the stream's wait for the
 * sender's data (the per-message mark the send recorded, comm_local.c) is
 * enqueued by the comm's recv_ready before the p2p span's first mark, so
 * the span's marks time the copy alone.
 *
 * Peer access for each stage and the next is enabled at init (p2p.h) and
 * the row's `p2p` says what the links are. pb_mp_trace (a test hook) reads
 * each span of the last step with its microbatch, on one clock. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/cpu_bind.h"
#include "../harness/fault.h"
#include "../harness/memplan.h"
#include "../harness/nvtx.h"
#include "../harness/phase.h"
#include "../harness/timer.h"
#include "../kernels/comm_local.h"
#include "input.h"
#include "mp_replay.h"
#include "replica.h"
#include "schedule.h"
#include "strategy.h"

/* Spans of one stage's step, with marks created once for the most a step can
 * record (per microbatch: receive + fwd, receive + bwd). */
typedef struct span_log {
    const pb_backend *be;
    pb_device *dev;
    pb_mark **marks; /* 2 * cap */
    pb_phase *phase; /* cap */
    int *mb;         /* cap: the microbatch of each span, -1 none */
    int cap, n;
    int cur_mb;      /* the microbatch the next span belongs to */
} span_log;

typedef struct mp_state mp_state;

/* Sends a stage may have posted and not yet waited for, per direction:
 * what the `local` comm holds per (sender, receiver) pair. */
#define SEND_WINDOW PB_COMM_LOCAL_DEPTH

typedef struct mp_stage {
    mp_state *s;
    int idx;
    pb_device *dev;
    pb_replica rep;  /* pb_sched_slots() slots of mb rows (GPipe: M, the whole batch) */
    span_log log;
    float *gscratch; /* p_len: gradients of microbatches after the first back (M > 1) */
    float *tscratch; /* the other end's gradient of a tied tensor (first and last stage) */
    void *gsend;     /* pb_sched_send_slots() slots of [mb, in of the stage]: input gradients for the previous stage */
    pb_comm_ctx *cc; /* participant idx of the comm */
    /* [2 * M]: forward sends, then backward sends, in posting order; NULL
     * once waited for */
    pb_comm_req **sreq;
    int *ops;           /* [2 * M]: the stage's forwards and backwards in the schedule's order */
    int *op_first;      /* [2 * M + 1]: op n's spans in the log start at op_first[n]; then the post-op spans */
    double *op_ms;      /* [2 * M]: op n's busy time in the last step once its input was posted, for the replay */
    double *op_pre_ms;  /* [2 * M]: op n's busy time before it waited for its input (its rows' upload) */
    double pre_ms, post_ms; /* busy before the first op, after the last */
    int send_slots;     /* gsend's slots of mb rows */
    pthread_t thread;
    bool thread_started;
    /* one step's outcome, written by the worker */
    pb_status st;
    char err[1024];  /* the error text (thread-local in the worker) */
    pb_step_times t;
    double busy_ms;
    float loss;
    bool back;      /* finished the current step */
    int waiting_on; /* the stage its wait_for waits for, -1 none */
    /* under s->mu, this stage's own: its peers' posts, a step to run, a
     * failure. One per stage, so a post wakes the one stage it is for */
    pthread_cond_t cv;
    bool cv_ready;
    int wakeups; /* this step: wait_for's returns from the cond var (pb_mp_wakeups) */
} mp_stage;

struct mp_state {
    const pb_strategy_ctx *ctx;
    const pb_comm *comm;
    int p, m, mb;
    pb_schedule sched;
    int first[PB_MAX_STAGES + 1]; /* stage i has blocks [first[i], first[i+1]) */
    mp_stage stage[PB_MAX_STAGES];

    pthread_mutex_t mu;
    pthread_cond_t cv; /* the host thread's (mp_step): a stage back or failed */
    bool sync_ready;
    int64_t gen;   /* bumped to start a step */
    int host_wakeups; /* mp_step's returns from its cond var this step */
    int done;      /* stages finished the current step */
    bool quit;
    bool failed;   /* a stage failed this step: the others stop waiting */
    bool stuck;    /* a stage never came back from a failed step: its thread
                    * and what it uses are left to the process's exit */
    int cause;     /* the stage that failed first this step, -1 none */
    int hung;      /* a stage another waited --timeout for this step, -1 none:
                    * its deadline has passed, so the step waits no longer */
    pb_p2p_plan p2p;              /* peer access between neighbouring stages */
    pb_device_opts dev_opts;
    pb_comm_opts comm_opts;       /* one for all stages: the local comm groups by its address */
    int fwd_ready[PB_MAX_STAGES]; /* microbatches whose forward output is posted */
    int bwd_ready[PB_MAX_STAGES]; /* microbatches whose input gradient is posted */
    int tie_ready[PB_MAX_STAGES]; /* 1: the stage posted its tied gradient */
    const pb_batch *batch;

    /* measured steps, for the report */
    int measured;
    double sum_step_ms, sum_bubble_ms;
    double sum_replay_ms, sum_replay_bubble_ms; /* the steps replayed (mp_replay.h) */
    double *replay_scratch;                     /* 2 p m */
    bool replay_failed;                         /* an op log that did not replay: no figure */
};

/* --- stage boundaries ---------------------------------------------------- */

static void stage_bounds(const pb_config *cfg, const pb_model *model, int *first)
{
    int p = cfg->devices;
    if (cfg->n_split) {
        first[0] = 0;
        for (int i = 0; i < cfg->n_split; i++) first[i + 1] = cfg->split[i];
        first[p] = model->n_blocks;
    } else {
        pb_sched_balanced_split(model, p, first);
    }
}

static pb_status mp_validate(const pb_config *cfg, const pb_model *model)
{
    int p = cfg->devices, n = model->n_blocks;
    if (p < 2)
        return pb_usage_error("--gpus %d: strategy mp splits the model's blocks over at least 2 devices; use "
                              "single for 1",
                              p);
    if (p > PB_MAX_STAGES)
        return pb_usage_error("--gpus %d: strategy mp drives at most %d devices", p, PB_MAX_STAGES);
    if (p > n)
        return pb_usage_error("--gpus %d: more stages than blocks (%d %ss); mp puts at least one block on each "
                              "device",
                              p, n, model->block_noun);
    if (cfg->shape.batch % cfg->microbatches != 0)
        return pb_usage_error("--batch %d is not divisible by --microbatches %d; mp does not split the batch "
                              "across devices, each microbatch is batch/microbatches rows",
                              cfg->shape.batch, cfg->microbatches);
    if (cfg->cuda_graph) return pb_usage_error("--cuda-graph: allowed with --strategy single only");
    if (cfg->n_split) {
        if (cfg->n_split != p - 1)
            return pb_usage_error("--split has %d entr%s; allowed: %d (the first block of each stage after "
                                  "the first, --gpus %d minus 1)",
                                  cfg->n_split, cfg->n_split == 1 ? "y" : "ies", p - 1, p);
        for (int i = 0; i < cfg->n_split; i++) {
            int v = cfg->split[i];
            if (v < 1 || v > n - 1)
                return pb_usage_error("--split %d: allowed: block indices in [1, %d] (the workload's %d %ss)", v,
                                      n - 1, n, model->block_noun);
            if (i > 0 && v <= cfg->split[i - 1])
                return pb_usage_error("--split %d after %d: allowed: strictly increasing block indices", v,
                                      cfg->split[i - 1]);
        }
    }
    return PB_OK;
}

/* --- span log -------------------------------------------------------------- */

static void span_log_destroy(span_log *g)
{
    if (g->marks)
        for (int i = 0; i < 2 * g->cap; i++)
            if (g->marks[i]) g->be->mark_destroy(g->dev, g->marks[i]);
    free(g->marks);
    free(g->phase);
    free(g->mb);
    memset(g, 0, sizeof *g);
}

static pb_status span_log_init(span_log *g, const pb_backend *be, pb_device *dev, int cap)
{
    pb_status st = PB_OK;
    memset(g, 0, sizeof *g);
    g->be = be;
    g->dev = dev;
    g->cap = cap;
    g->marks = calloc((size_t)2 * cap, sizeof *g->marks);
    PB_CHECK_ALLOC(g->marks, (size_t)2 * cap * sizeof *g->marks);
    g->phase = calloc((size_t)cap, sizeof *g->phase);
    PB_CHECK_ALLOC(g->phase, (size_t)cap * sizeof *g->phase);
    g->mb = calloc((size_t)cap, sizeof *g->mb);
    PB_CHECK_ALLOC(g->mb, (size_t)cap * sizeof *g->mb);
    for (int i = 0; i < 2 * cap; i++) PB_TRY(be->mark_create(dev, &g->marks[i]));
    return PB_OK;
cleanup:
    span_log_destroy(g);
    return st;
}

static pb_status span_begin(span_log *g, pb_phase p)
{
    if (g->n >= g->cap) return pb_error(PB_ERR_INTERNAL, "more than %d phase spans in one mp step", g->cap);
    pb_fault_at(p); /* tests' PB_FAULT (device=k: stage k); a nan one shows in the step's loss */
    g->phase[g->n] = p;
    g->mb[g->n] = g->cur_mb;
    pb_status st = g->be->mark_record(g->dev, g->marks[2 * g->n]);
    if (st == PB_OK) pb_nvtx_push(pb_phase_name(p));
    return st;
}

static pb_status span_end(span_log *g)
{
    pb_status st = g->be->mark_record(g->dev, g->marks[2 * g->n + 1]);
    pb_nvtx_pop();
    g->n++;
    return st;
}

/* --- a stage's step ------------------------------------------------------------ */

/* Stage g waits until stage `from` has posted its `what` of microbatch
 * `mb` (*counter >= want), at most --timeout: a stage that stops making
 * progress (a hung device) fails the step instead of stalling it, with that
 * message, which names the stage at the end of the chain of waits (stage 2
 * waits for 1, which waits for the hung 0). PB_ERR_COMM without a message:
 * another stage failed first, and its error is the step's. */
static pb_status wait_for(mp_stage *g, const int *counter, int want, int from, const char *what, int mb)
{
    mp_state *s = g->s;
    double limit = s->ctx->cfg->timeout_s;
    struct timespec until = pb_time_after(CLOCK_MONOTONIC, limit);
    int rc = 0, hung = from;
    pthread_mutex_lock(&s->mu);
    g->waiting_on = from;
    while (*counter < want && !s->failed && rc == 0) {
        rc = pthread_cond_timedwait(&g->cv, &s->mu, &until);
        g->wakeups++;
    }
    bool arrived = *counter >= want, aborted = s->failed;
    /* one that gave up still counts as waiting, for the chain of another
     * that gives up at the same moment */
    if (arrived || aborted) g->waiting_on = -1;
    for (int hops = 0; hops < s->p && s->stage[hung].waiting_on >= 0; hops++) hung = s->stage[hung].waiting_on;
    if (!arrived && !aborted && s->hung < 0) s->hung = hung;
    pthread_mutex_unlock(&s->mu);
    if (aborted) return PB_ERR_COMM;
    if (arrived) return PB_OK;
    char chain[64] = "";
    if (hung != from) snprintf(chain, sizeof chain, "stage %d is itself waiting; ", from);
    return pb_user_error(PB_ERR_COMM, "waited %g s (--timeout) for stage %d's %s of microbatch %d of %d: %sstage %d "
                                      "made no progress (stuck or hung device)",
                         limit, from, what, mb + 1, s->m, chain, hung);
}

/* Sets a counter stage `to` waits on and wakes that stage alone: a
 * broadcast to all would wake every stage and the host thread per message,
 * each wake-up taking a core from a stage that computes (2m(p-1) a step). */
static void publish(mp_state *s, int *counter, int value, int to)
{
    pthread_mutex_lock(&s->mu);
    *counter = value;
    pthread_cond_signal(&s->stage[to].cv);
    pthread_mutex_unlock(&s->mu);
}

/* Wakes every stage and the host thread (under mu): a step begins, a stage
 * failed (the others stop waiting), or the workers quit. */
static void wake_all(mp_state *s)
{
    for (int k = 0; k < s->p; k++)
        if (s->stage[k].cv_ready) pthread_cond_broadcast(&s->stage[k].cv);
    pthread_cond_broadcast(&s->cv);
}

/* The next message from stage `from` into buf, its send already posted:
 * the recv runs the copy, in this stage's p2p span. */
static pb_status receive(mp_stage *g, void *buf, size_t bytes, int from)
{
    pb_status st = PB_OK;
    const pb_comm *cm = g->s->comm;
    pb_comm_req *req = NULL;
    /* the stream's wait for the sender's data goes before the span: it is
     * bubble, not transfer */
    if (cm->recv_ready) PB_TRY(cm->recv_ready(g->cc, from));
    PB_TRY(span_begin(&g->log, PB_PHASE_P2P));
    PB_TRY(cm->recv(g->cc, buf, bytes, from, &req));
    PB_TRY(cm->wait(g->cc, req, g->s->ctx->cfg->timeout_s));
    PB_TRY(span_end(&g->log));
cleanup:
    return st;
}

/* Waits for send i unless already waited for: its rows may be reused. */
static pb_status wait_send(mp_stage *g, int i)
{
    pb_status st = PB_OK;
    if (g->sreq[i]) PB_TRY(g->s->comm->wait(g->cc, g->sreq[i], g->s->ctx->cfg->timeout_s));
    g->sreq[i] = NULL;
cleanup:
    return st;
}

/* Posts send i (sreq[i]) of buf to stage `to`, then lets it know (counter
 * = value); first waits for the send SEND_WINDOW before it in the same
 * direction (base: the direction's first index). Outside the spans: it
 * only registers the message. */
static pb_status post_send(mp_stage *g, const void *buf, size_t bytes, int to, int base, int i, int *counter,
                           int value)
{
    pb_status st = PB_OK;
    const pb_comm *cm = g->s->comm;
    if (i - base >= SEND_WINDOW) PB_TRY(wait_send(g, i - SEND_WINDOW));
    PB_TRY(cm->send(g->cc, buf, bytes, to, &g->sreq[i]));
    publish(g->s, counter, value, to);
cleanup:
    return st;
}

/* Waits for the sends [base, end) that post_send has not waited for: the
 * last SEND_WINDOW of them. */
static pb_status drain_sends(mp_stage *g, int base, int end)
{
    pb_status st = PB_OK;
    for (int i = end - SEND_WINDOW > base ? end - SEND_WINDOW : base; i < end; i++) PB_TRY(wait_send(g, i));
cleanup:
    return st;
}

/* The first and the last stage hold the two ends of a tied tensor
 * (workload.h): each sends its gradient to the other and adds the one it
 * receives (a + b on one, b + a on the other: the same floats), as
 * Megatron all-reduces the embedding's gradient between its first and last
 * stage. Its own gradient stays unchanged until the other has taken it. */
static pb_status tie_grads(mp_stage *g)
{
    pb_status st = PB_OK;
    mp_state *s = g->s;
    const pb_comm *cm = s->comm;
    const pb_model *model = s->ctx->model;
    int k = g->idx, other = k == 0 ? s->p - 1 : 0;
    size_t bytes = model->n_tied * sizeof(float);
    float *mine = pb_replica_tied_grad(&g->rep, k == 0);
    pb_comm_req *req = NULL;
    PB_TRY(cm->send(g->cc, mine, bytes, other, &req));
    publish(s, &s->tie_ready[k], 1, other);
    PB_TRY(wait_for(g, &s->tie_ready[other], 1, other, "tied gradient", s->m - 1));
    PB_TRY(receive(g, g->tscratch, bytes, other));
    PB_TRY(cm->wait(g->cc, req, s->ctx->cfg->timeout_s));
    PB_TRY(s->ctx->be->axpy(g->dev, model->n_tied, 1.0f, g->tscratch, mine));
cleanup:
    return st;
}

/* n microbatches' rows of the batch from microbatch j on into the slots
 * from `slot` on: their inputs on the first stage, their targets on the
 * last (and the loss zeroed before the step's first), timed as h2d. */
static pb_status upload_rows(mp_stage *g, int j, int n, int slot)
{
    mp_state *s = g->s;
    const pb_backend *be = s->ctx->be;
    const pb_model *model = s->ctx->model;
    const pb_batch *batch = s->batch;
    pb_replica *r = &g->rep;
    pb_status st = PB_OK;
    size_t row0 = (size_t)j * s->mb, rows = (size_t)n * s->mb;
    PB_TRY(span_begin(&g->log, PB_PHASE_H2D));
    if (g->idx == 0)
        PB_TRY(pb_input_upload(be, g->dev, model, pb_replica_buf(r, PB_STAGE_IN, slot),
                               (const char *)batch->inputs + row0 * pb_model_input_bytes(model), rows));
    if (g->idx == s->p - 1) {
        size_t tb = pb_model_target_bytes(model);
        PB_TRY(be->upload(g->dev, pb_replica_targets(r, slot), (const char *)batch->targets + row0 * tb, rows * tb));
        if (j == 0) PB_TRY(be->zero(g->dev, r->loss_sum, sizeof(float)));
    }
    PB_TRY(span_end(&g->log));
cleanup:
    return st;
}

static pb_status stage_step(mp_stage *g)
{
    mp_state *s = g->s;
    const pb_backend *be = s->ctx->be;
    const pb_model *model = s->ctx->model;
    pb_replica *r = &g->rep;
    pb_status st = PB_OK;
    int k = g->idx, last = s->p - 1, M = s->m, mb = s->mb;
    size_t B = (size_t)s->ctx->cfg->shape.batch;
    /* the boundaries' activations per sample: what this stage receives
     * (and sends back as its gradient) and what it hands the next */
    size_t w_in = model->block[r->b0].in_elems, w_out = model->block[r->b1 - 1].out_elems;
    size_t in_mb = be->act_bytes(g->dev, (size_t)mb * w_in), out_mb = be->act_bytes(g->dev, (size_t)mb * w_out);
    /* a stage that keeps every microbatch's rows takes the batch at once;
     * 1F1B's first and last stage take each microbatch's into its slot */
    int S = r->slots;
    bool whole = S == M;
    g->log.n = 0;
    g->log.cur_mb = -1;
    g->loss = 0.0f;

    memset(g->sreq, 0, 2 * (size_t)M * sizeof *g->sreq);
    if ((k == 0 || k == last) && whole) PB_TRY(upload_rows(g, 0, M, 0));

    for (int n = 0; n < 2 * M; n++) {
        g->op_first[n] = g->log.n;
        int j = g->ops[n] >= 0 ? g->ops[n] : -g->ops[n] - 1, slot = j % S;
        g->log.cur_mb = j;
        if (g->ops[n] >= 0) {
            /* forward of j */
            if (!whole && (k == 0 || k == last)) PB_TRY(upload_rows(g, j, 1, slot));
            if (k > 0) {
                PB_TRY(wait_for(g, &s->fwd_ready[k - 1], j + 1, k - 1, "forward activations", j));
                PB_TRY(receive(g, pb_replica_buf(r, PB_STAGE_IN, slot), in_mb, k - 1));
            }
            /* the slot's output rows were sent for microbatch j - S: taken
             * long since (that one is back), but the send is waited for */
            if (k < last && j >= S) PB_TRY(wait_send(g, j - S));
            PB_TRY(span_begin(&g->log, PB_PHASE_FWD));
            PB_TRY(pb_replica_forward(r, slot, mb));
            PB_TRY(span_end(&g->log));
            if (k < last)
                PB_TRY(post_send(g, pb_replica_buf(r, PB_STAGE_OUT, slot), out_mb, k + 1, 0, j, &s->fwd_ready[k],
                                 j + 1));
            continue;
        }
        /* backward of j, the stage's nb-th */
        int nb = pb_sched_bwd_rank(s->sched, M, j), gs = nb % g->send_slots;
        if (k < last) {
            PB_TRY(wait_for(g, &s->bwd_ready[k + 1], nb + 1, k + 1, "input gradients", j));
            PB_TRY(receive(g, pb_replica_buf(r, PB_STAGE_DOUT, slot), out_mb, k + 1));
        }
        if (k > 0 && nb >= g->send_slots) PB_TRY(wait_send(g, M + nb - g->send_slots));
        PB_TRY(span_begin(&g->log, PB_PHASE_BWD));
        if (k == last) PB_TRY(pb_replica_loss(r, slot, mb, 1.0f / (float)B));
        bool first_back = nb == 0;
        void *dx = NULL;
        PB_TRY(pb_replica_backward(r, slot, mb, first_back ? NULL : g->gscratch, k > 0 ? &dx : NULL, NULL, NULL));
        if (!first_back) PB_TRY(be->axpy(g->dev, r->p_len, 1.0f, g->gscratch, r->grads));
        void *send_rows = k > 0 ? (char *)g->gsend + be->act_bytes(g->dev, (size_t)gs * mb * w_in) : NULL;
        if (k > 0) PB_TRY(be->copy(g->dev, send_rows, dx, in_mb));
        PB_TRY(span_end(&g->log));
        if (k > 0) PB_TRY(post_send(g, send_rows, in_mb, k - 1, M, M + nb, &s->bwd_ready[k], nb + 1));
    }

    g->log.cur_mb = -1;
    g->op_first[2 * M] = g->log.n;
    if (g->tscratch) {
        /* the tied tensor's ends exchange their pipeline's last messages
         * first, so a pair's queue holds one more at most */
        if (k < last) PB_TRY(drain_sends(g, 0, M));
        if (k > 0) PB_TRY(drain_sends(g, M, 2 * M));
        PB_TRY(tie_grads(g));
    }
    PB_TRY(span_begin(&g->log, PB_PHASE_OPT));
    PB_TRY(pb_replica_tie_grads(r));
    PB_TRY(pb_replica_optimize(r));
    PB_TRY(span_end(&g->log));
    /* the sends' rows stay put until the next step, and the other stages
     * have long taken them: waiting here, not between the phases, spares a
     * wake-up in the middle of their compute */
    if (!g->tscratch && k < last) PB_TRY(drain_sends(g, 0, M));
    if (!g->tscratch && k > 0) PB_TRY(drain_sends(g, M, 2 * M));

    if (k == last) PB_TRY(be->download(g->dev, &g->loss, r->loss_sum, sizeof g->loss));
    PB_TRY(be->synchronize(g->dev));
    memset(&g->t, 0, sizeof g->t);
    g->busy_ms = g->pre_ms = g->post_ms = 0.0;
    memset(g->op_ms, 0, 2 * (size_t)M * sizeof *g->op_ms);
    memset(g->op_pre_ms, 0, 2 * (size_t)M * sizeof *g->op_pre_ms);
    for (int i = 0, n = -1; i < g->log.n; i++) {
        double ms = 0.0;
        PB_TRY(be->mark_elapsed_ms(g->dev, g->log.marks[2 * i], g->log.marks[2 * i + 1], &ms));
        g->t.ms[g->log.phase[i]] += ms;
        g->busy_ms += ms;
        while (n < 2 * M && i >= g->op_first[n + 1]) n++; /* the op span i belongs to */
        if (n < 0) g->pre_ms += ms;
        else if (n < 2 * M) (g->log.phase[i] == PB_PHASE_H2D ? g->op_pre_ms : g->op_ms)[n] += ms;
        else g->post_ms += ms;
    }
cleanup:
    return st;
}

static void *stage_worker(void *arg)
{
    mp_stage *g = arg;
    mp_state *s = g->s;
    int64_t seen = 0;
    pb_fault_set_device(g->idx);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->gen == seen && !s->quit) pthread_cond_wait(&g->cv, &s->mu);
        if (s->quit) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        seen = s->gen;
        pthread_mutex_unlock(&s->mu);

        pb_status st = stage_step(g);
        bool first = false;
        if (st != PB_OK) {
            snprintf(g->err, sizeof g->err, "%s", pb_error_message());
            pb_error_clear();
            /* the cause is recorded before the others are stopped */
            pthread_mutex_lock(&s->mu);
            first = s->cause < 0;
            if (first) s->cause = g->idx;
            s->failed = true;
            wake_all(s);
            pthread_mutex_unlock(&s->mu);
            if (first && s->comm->abort) s->comm->abort(g->cc);
        }

        pthread_mutex_lock(&s->mu);
        g->st = st;
        g->back = true;
        s->done++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

/* --- ops ------------------------------------------------------------------------ */

static void mp_destroy(void *state)
{
    mp_state *s = state;
    if (!s) return;
    if (s->sync_ready) {
        pthread_mutex_lock(&s->mu);
        s->quit = true;
        wake_all(s);
        pthread_mutex_unlock(&s->mu);
    }
    /* a stuck stage would never join, and may still use its buffers: all is
     * left as it is for the process's exit, which the failed run goes to */
    if (s->stuck) return;
    for (int k = 0; k < s->p; k++)
        if (s->stage[k].thread_started) pthread_join(s->stage[k].thread, NULL);
    const pb_backend *be = s->ctx->be;
    for (int k = 0; k < s->p; k++) {
        mp_stage *g = &s->stage[k];
        if (!g->dev) continue;
        if (g->log.be) span_log_destroy(&g->log);
        if (g->gscratch) be->free(g->dev, g->gscratch);
        if (g->tscratch) be->free(g->dev, g->tscratch);
        if (g->gsend) be->free(g->dev, g->gsend);
        if (g->cc) s->comm->destroy(g->cc);
        free(g->sreq);
        free(g->ops);
        free(g->op_first);
        free(g->op_ms);
        free(g->op_pre_ms);
        pb_replica_destroy(&g->rep);
        be->close(g->dev);
    }
    for (int k = 0; k < s->p; k++)
        if (s->stage[k].cv_ready) pthread_cond_destroy(&s->stage[k].cv);
    if (s->sync_ready) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
    }
    free(s->replay_scratch);
    free(s);
}

static pb_status stage_init(mp_state *s, int k)
{
    const pb_strategy_ctx *ctx = s->ctx;
    const pb_config *cfg = ctx->cfg;
    const pb_backend *be = ctx->be;
    const pb_model *model = ctx->model;
    mp_stage *g = &s->stage[k];
    pb_status st = PB_OK;
    g->s = s;
    g->idx = k;
    int ordinal = cfg->n_device_map ? cfg->device_map[k] : k;
    PB_TRY(be->open(&s->dev_opts, ordinal, &g->dev));
    /* the targets only where the loss is taken */
    PB_TRY(pb_replica_init(&g->rep, be, g->dev, cfg, model, s->first[k], s->first[k + 1], s->mb,
                           pb_sched_slots(s->sched, s->p, s->m, k), ctx->init_params, true, k == s->p - 1));
    PB_TRY(span_log_init(&g->log, be, g->dev, 4 * s->m + 4));
    if (s->m > 1) PB_TRY(be->alloc(g->dev, g->rep.p_len * sizeof(float), (void **)&g->gscratch));
    if (model->n_tied && s->p > 1 && (k == 0 || k == s->p - 1))
        PB_TRY(be->alloc(g->dev, model->n_tied * sizeof(float), (void **)&g->tscratch));
    g->send_slots = pb_sched_send_slots(s->sched, s->m);
    if (k > 0)
        PB_TRY(be->alloc(g->dev,
                         be->act_bytes(g->dev, (size_t)g->send_slots * s->mb * model->block[s->first[k]].in_elems),
                         &g->gsend));
    PB_ALLOC(g->sreq, 2 * (size_t)s->m);
    PB_ALLOC(g->ops, 2 * (size_t)s->m);
    PB_ALLOC(g->op_first, 2 * (size_t)s->m + 1);
    PB_ALLOC(g->op_ms, 2 * (size_t)s->m);
    PB_ALLOC(g->op_pre_ms, 2 * (size_t)s->m);
    pb_sched_ops(s->sched, s->p, s->m, k, g->ops);
    PB_TRY(s->comm->init(&s->comm_opts, be, g->dev, k, s->p, &g->cc));
cleanup:
    return st;
}

static pb_status mp_init(const pb_strategy_ctx *ctx, void **state)
{
    pb_status st = PB_OK;
    mp_state *s = NULL;
    PB_ALLOC(s, 1);
    s->ctx = ctx;
    s->comm = ctx->comm;
    PB_REQUIRE(s->comm, PB_ERR_INTERNAL, "mp: no comm to move data between its stages (--comm local)");
    s->p = ctx->cfg->devices;
    s->m = ctx->cfg->microbatches;
    s->mb = ctx->cfg->shape.batch / s->m;
    s->sched = ctx->cfg->schedule;
    stage_bounds(ctx->cfg, ctx->model, s->first);
    PB_REQUIRE(pthread_mutex_init(&s->mu, NULL) == 0, PB_ERR_INTERNAL, "pthread_mutex_init failed");
    if (pb_cond_init_monotonic(&s->cv) != 0) { /* waits with deadlines */
        pthread_mutex_destroy(&s->mu);
        PB_FAIL(PB_ERR_INTERNAL, "pthread_cond_init failed");
    }
    s->sync_ready = true;
    for (int k = 0; k < s->p; k++) {
        PB_REQUIRE(pb_cond_init_monotonic(&s->stage[k].cv) == 0, PB_ERR_INTERNAL, "pthread_cond_init failed");
        s->stage[k].cv_ready = true;
    }
    s->dev_opts = pb_config_model_device_opts(ctx->cfg, ctx->model);
    s->comm_opts = pb_config_comm_opts(ctx->cfg);
    for (int k = 0; k < s->p; k++) PB_TRY(stage_init(s, k));
    PB_ALLOC(s->replay_scratch, 2 * (size_t)s->p * s->m);
    {
        int ordinal[PB_MAX_STAGES];
        for (int k = 0; k < s->p; k++) ordinal[k] = ctx->cfg->n_device_map ? ctx->cfg->device_map[k] : k;
        PB_TRY(pb_p2p_setup(ctx->be->peer, PB_P2P_CHAIN, ordinal, s->p, &s->p2p));
    }
    for (int k = 0; k < s->p; k++) {
        PB_REQUIRE(pthread_create(&s->stage[k].thread, NULL, stage_worker, &s->stage[k]) == 0, PB_ERR_INTERNAL,
                   "cannot start the worker thread of stage %d", k);
        s->stage[k].thread_started = true;
        if (!ctx->be->is_gpu) pb_cpu_bind_thread(s->stage[k].thread, k, s->p);
    }
    *state = s;
    return PB_OK;
cleanup:
    mp_destroy(s);
    return st;
}

/* Every stage is back from the step, or is the one found hung (under mu). */
static bool all_back(const mp_state *s)
{
    for (int k = 0; k < s->p; k++)
        if (!s->stage[k].back && k != s->hung) return false;
    return true;
}

/* Adds the step, replayed on its stages' op times, to the report's sums. */
static void replay_step(mp_state *s)
{
    pb_mp_replay_stage st[PB_MAX_STAGES];
    for (int k = 0; k < s->p; k++) {
        const mp_stage *g = &s->stage[k];
        st[k] = (pb_mp_replay_stage){
            .ops = g->ops, .op_ms = g->op_ms, .op_pre_ms = g->op_pre_ms, .pre_ms = g->pre_ms, .post_ms = g->post_ms};
    }
    double bubble = 0.0;
    double step = pb_mp_replay(st, s->p, s->m, s->stage[0].tscratch != NULL, s->replay_scratch, &bubble);
    if (step < 0.0) s->replay_failed = true;
    s->sum_replay_ms += step;
    s->sum_replay_bubble_ms += bubble;
}

static pb_status mp_step(void *state, const pb_batch *batch, pb_step_result *out)
{
    mp_state *s = state;
    double t0 = pb_now_ms();
    pthread_mutex_lock(&s->mu);
    s->batch = batch;
    memset(s->fwd_ready, 0, sizeof s->fwd_ready);
    memset(s->bwd_ready, 0, sizeof s->bwd_ready);
    memset(s->tie_ready, 0, sizeof s->tie_ready);
    s->done = 0;
    s->failed = false;
    s->cause = -1;
    s->hung = -1;
    for (int k = 0; k < s->p; k++) {
        s->stage[k].back = false;
        s->stage[k].waiting_on = -1;
        s->stage[k].wakeups = 0;
    }
    s->host_wakeups = 0;
    s->gen++;
    wake_all(s);
    /* once a stage is back (done, or failed), the others get --timeout to
     * follow (after a failure each stops at its next wait); one that does
     * not is stuck: a hung device, which may be past its last wait (in its
     * last backward or its optimizer). The deadline starts again each time
     * another stage comes back, so a deep pipeline whose stages finish one
     * after another (the backward reaches stage 0 last) is not called stuck
     * while it makes progress. A stage another has already waited
     * --timeout for is not waited for again: one deadline per wait, so the
     * run fails within --timeout of the hang, as its message says. */
    struct timespec until;
    bool timing = false;
    int rc = 0, late = -1, seen_done = 0;
    while (!all_back(s) && rc == 0) {
        if ((s->failed || s->done > 0) && (!timing || s->done != seen_done)) {
            timing = true;
            seen_done = s->done;
            until = pb_time_after(CLOCK_MONOTONIC, s->ctx->cfg->timeout_s);
        }
        if (timing) rc = pthread_cond_timedwait(&s->cv, &s->mu, &until);
        else pthread_cond_wait(&s->cv, &s->mu);
        s->host_wakeups++;
    }
    s->stuck = s->done < s->p;
    for (int k = 0; k < s->p && late < 0; k++)
        if (!s->stage[k].back) late = k;
    pthread_mutex_unlock(&s->mu);
    double step_ms = pb_now_ms() - t0;

    /* the stage that failed first is the cause; the others stopped waiting
     * for it. The error text was recorded on the worker's thread: record
     * it here. */
    if (s->cause >= 0) {
        const mp_stage *g = &s->stage[s->cause];
        return pb_user_error(g->st, "mp step %lld, stage %d: %s", (long long)batch->step, s->cause, g->err);
    }
    if (s->stuck)
        return pb_user_error(PB_ERR_COMM, "mp step %lld: stage %d did not finish its step within %g s of the other "
                                          "stages (--timeout): it made no progress (stuck or hung device)",
                             (long long)batch->step, late, s->ctx->cfg->timeout_s);

    memset(out, 0, sizeof *out);
    double bubble = 0.0;
    for (int k = 0; k < s->p; k++) {
        const mp_stage *g = &s->stage[k];
        for (int ph = 0; ph < PB_PHASE_COUNT; ph++) out->t.ms[ph] += g->t.ms[ph] / s->p;
        double idle = step_ms - g->busy_ms;
        bubble += (idle > 0.0 ? idle : 0.0) / s->p;
    }
    out->t.ms[PB_PHASE_BUBBLE] = bubble;
    out->loss = s->stage[s->p - 1].loss;
    if (batch->step >= s->ctx->cfg->warmup) {
        s->measured++;
        s->sum_step_ms += step_ms;
        s->sum_bubble_ms += bubble;
        replay_step(s);
    }
    return PB_OK;
}

pb_status pb_mp_trace(void *state, pb_mp_span *out, int cap, int *n)
{
    mp_state *s = state;
    const pb_backend *be = s->ctx->be;
    const pb_mark *origin = s->stage[0].log.marks[0];
    *n = 0;
    for (int k = 0; k < s->p; k++) {
        const span_log *g = &s->stage[k].log;
        for (int i = 0; i < g->n && *n < cap; i++) {
            pb_mp_span *o = &out[(*n)++];
            o->stage = k;
            o->mb = g->mb[i];
            o->phase = g->phase[i];
            pb_status st = be->mark_elapsed_ms(g->dev, origin, g->marks[2 * i], &o->start_ms);
            if (st == PB_OK) st = be->mark_elapsed_ms(g->dev, origin, g->marks[2 * i + 1], &o->end_ms);
            if (st != PB_OK) return st;
        }
    }
    return PB_OK;
}

pb_status pb_mp_wakeups(void *state, int *host, int *stage, int cap)
{
    mp_state *s = state;
    pthread_mutex_lock(&s->mu);
    *host = s->host_wakeups;
    for (int k = 0; k < s->p && k < cap; k++) stage[k] = s->stage[k].wakeups;
    pthread_mutex_unlock(&s->mu);
    return PB_OK;
}

static pb_status mp_get_params(void *state, float *host_params)
{
    mp_state *s = state;
    for (int k = 0; k < s->p; k++) {
        pb_status st = pb_replica_download_params(&s->stage[k].rep, host_params);
        if (st != PB_OK) return st;
    }
    return PB_OK;
}

static pb_status mp_memory(void *state, pb_memory_report *out)
{
    mp_state *s = state;
    out->peak_mb_max = 0.0;
    for (int k = 0; k < s->p; k++) {
        double mb = s->ctx->be->peak_mem_mb(s->stage[k].dev);
        if (mb > out->peak_mb_max) out->peak_mb_max = mb;
    }
    out->peak_mb_dev0 = s->ctx->be->peak_mem_mb(s->stage[0].dev);
    return PB_OK;
}

static pb_status mp_device_info(void *state, pb_device_info *out)
{
    mp_state *s = state;
    return s->ctx->be->info(s->stage[0].dev, out);
}

static void mp_report(void *state, const pb_step_times *mean, pb_record *row)
{
    mp_state *s = state;
    (void)mean;
    double p = s->p, m = s->m;
    if (s->measured > 0 && s->sum_step_ms > 0.0)
        pb_record_num(row, PB_COL_BUBBLE_FRAC, s->sum_bubble_ms / s->sum_step_ms);
    if (s->measured > 0 && s->sum_replay_ms > 0.0 && !s->replay_failed)
        pb_record_num(row, PB_COL_BUBBLE_FRAC_REPLAY, s->sum_replay_bubble_ms / s->sum_replay_ms);
    pb_record_num(row, PB_COL_BUBBLE_FRAC_THEORY, (p - 1.0) / (m + p - 1.0));
    pb_record_set(row, PB_COL_MICROBATCHES, "%d", s->m);
    /* what crosses one stage boundary per step (the mean over boundaries):
     * the batch's activations forward and their gradients back, 2 B w e
     * bytes (docs/strategies.md); the tied gradient's exchange is not a
     * boundary's */
    double cross = 0.0;
    for (int k = 1; k < s->p; k++)
        cross += 2.0 * (double)s->ctx->be->act_bytes(s->stage[k].dev, (size_t)s->ctx->cfg->shape.batch *
                                                                          s->ctx->model->block[s->first[k]].in_elems);
    pb_record_num(row, PB_COL_P2P_BYTES_PER_STEP, cross / (p - 1.0));
    pb_record_set(row, PB_COL_P2P, "%s", pb_p2p_link_name(s->p2p.worst));
    /* the split the run used (balanced or --split), as blocks per stage */
    char layers[PB_FIELD_MAX] = "";
    size_t n = 0;
    for (int k = 0; k < s->p && n < sizeof layers; k++)
        n += (size_t)snprintf(layers + n, sizeof layers - n, "%s%d", k ? "+" : "", s->first[k + 1] - s->first[k]);
    pb_record_set(row, PB_COL_STAGE_LAYERS, "%s", layers);
}

/* The memory plan's model of mp (harness/memplan.h): a replica per stage
 * with its schedule's slots (GPipe: a slot per microbatch, every
 * microbatch's activations; 1F1B: min(m, p - k); backward's buffers hold
 * one), the targets of those slots on the last stage, a gradient scratch
 * with microbatches and an input-gradient send buffer per stage after the
 * first (pb_sched_send_slots of a microbatch's rows). */
static void mp_plan_memory(const pb_config *cfg, const pb_model *model, const pb_memplan_env *env,
                           pb_mem_parts *dev)
{
    const double e = (double)pb_memplan_act_elem(cfg, env->host_is_device);
    const int p = cfg->devices, m = cfg->microbatches;
    const double mb = (double)(cfg->shape.batch / m);
    int first[PB_MAX_STAGES + 1];
    stage_bounds(cfg, model, first);
    for (int k = 0; k < p; k++) {
        bool last = k == p - 1;
        double len = pb_memplan_add_replica(model, first[k], first[k + 1], mb, pb_sched_slots(cfg->schedule, p, m, k),
                                            true, last, false, cfg->optimizer, e, &dev[k]);
        pb_sched_plan_extras(cfg, model, first, p, k, mb, len, e, &dev[k]);
    }
}

const pb_strategy pb_strategy_mp = {
    .name = "mp",
    .description = "blocks split into contiguous stages, one per device; --microbatches pipelines them (--schedule "
                   "gpipe or 1f1b)",
    .procs = PB_PROC_ONE,
    .needs_even_split = false,
    .microbatches = true,
    .stages = true,
    .validate = mp_validate,
    .init = mp_init,
    .step = mp_step,
    .get_params = mp_get_params,
    .memory = mp_memory,
    .device_info = mp_device_info,
    .plan_memory = mp_plan_memory,
    .report = mp_report,
    .destroy = mp_destroy,
};
