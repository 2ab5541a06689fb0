/* The mesh pipeline's messages (strategies/pipe.c) under NCCL's ordering
 * rules, on the cpu: stage ranks as threads, over `held`, a comm that
 * behaves as kernels/cuda/comm_nccl.c does on a GPU, built on `local`:
 *   - sends and recvs are held back and issued as one group at the next
 *     wait, flush or collective (comm_nccl.c's grouping);
 *   - a participant's groups and collectives run one after another, each
 *     to its end (one comm stream: a NCCL kernel runs until its peers
 *     match it);
 *   - a send completes only once its recv is posted (local's messages run
 *     when both sides have posted: ncclSend without eager buffering).
 * A pipe.c order that hangs on real GPUs (two neighbours each issuing a
 * send alone before their recvs: 1F1B's steady state) hangs here and fails
 * at the deadline. And a send held back while its stage posts another
 * means the neighbour cannot start on it (GPipe's forwards on the first
 * stage would run one stage after another): each stage holds at most one.
 * MLP stages 2..4, 1, 3 and 8 microbatches, both schedules; a 2-stage GPT
 * for the tied embedding/LM-head gradient exchanged between its ends. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "harness/config.h"
#include "kernels/comm_local.h"
#include "strategies/pipe.h"
#include "workloads/gpt.h"
#include "workloads/mlp.h"

#define MAX_STAGES 4
#define MAX_GROUP 64
#define MAX_QUEUE 256
#define DEADLINE_S 5.0

/* --- `held`: NCCL's order over `local` ------------------------------------------ */

typedef enum held_kind { HELD_SEND, HELD_RECV, HELD_ALLREDUCE } held_kind;

typedef struct held_req {
    held_kind kind;
    void *buf;
    size_t n;
    int peer;
    float scale;
    bool issued, done;
    pb_status st;
    char err[256];
} held_req;

typedef struct held_group {
    held_req *op[MAX_GROUP];
    int n;
} held_group;

typedef struct held_ctx {
    pb_comm_ctx *inner; /* local's */
    int rank;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool quit;
    held_group queue[MAX_QUEUE]; /* the stream */
    unsigned head, tail;
    held_group pending;          /* held back */
    held_req reqs[1024];
    unsigned next_req;
    int max_held_sends;          /* sends held back at once, at most */
} held_ctx;

/* The stream: each group's operations posted together, then waited for,
 * before the next group starts. */
static void *held_stream(void *arg)
{
    held_ctx *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (c->head == c->tail && !c->quit) pthread_cond_wait(&c->cv, &c->mu);
        if (c->head == c->tail) {
            pthread_mutex_unlock(&c->mu);
            return NULL;
        }
        held_group g = c->queue[c->head % MAX_QUEUE];
        pthread_mutex_unlock(&c->mu);
        pb_comm_req *in[MAX_GROUP] = {0};
        pb_status st[MAX_GROUP];
        for (int i = 0; i < g.n; i++) {
            held_req *r = g.op[i];
            st[i] = r->kind == HELD_SEND   ? pb_comm_local.send(c->inner, r->buf, r->n, r->peer, &in[i])
                    : r->kind == HELD_RECV ? pb_comm_local.recv(c->inner, r->buf, r->n, r->peer, &in[i])
                                           : pb_comm_local.allreduce(c->inner, r->buf, r->n, r->scale, &in[i]);
        }
        for (int i = 0; i < g.n; i++)
            if (st[i] == PB_OK) st[i] = pb_comm_local.wait(c->inner, in[i], DEADLINE_S);
        pthread_mutex_lock(&c->mu);
        for (int i = 0; i < g.n; i++) {
            g.op[i]->st = st[i];
            if (st[i] != PB_OK) snprintf(g.op[i]->err, sizeof g.op[i]->err, "%s", pb_error_message());
            g.op[i]->done = true;
        }
        pb_error_clear();
        c->head++;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
}

/* under mu: the held-back operations onto the stream as one group */
static void flush_locked(held_ctx *c)
{
    if (c->pending.n == 0) return;
    for (int i = 0; i < c->pending.n; i++) c->pending.op[i]->issued = true;
    c->queue[c->tail++ % MAX_QUEUE] = c->pending;
    c->pending.n = 0;
    pthread_cond_broadcast(&c->cv);
}

static pb_status held_post(pb_comm_ctx *ctx, held_kind kind, void *buf, size_t n, int peer, float scale,
                           pb_comm_req **out)
{
    held_ctx *c = (held_ctx *)ctx;
    pthread_mutex_lock(&c->mu);
    held_req *r = &c->reqs[c->next_req++ % 1024];
    *r = (held_req){.kind = kind, .buf = buf, .n = n, .peer = peer, .scale = scale};
    if (kind == HELD_ALLREDUCE) flush_locked(c); /* a collective issues what is held first */
    c->pending.op[c->pending.n++] = r;
    int sends = 0;
    for (int i = 0; i < c->pending.n; i++) sends += c->pending.op[i]->kind == HELD_SEND;
    if (sends > c->max_held_sends) c->max_held_sends = sends;
    if (kind == HELD_ALLREDUCE || c->pending.n == MAX_GROUP) flush_locked(c);
    pthread_mutex_unlock(&c->mu);
    *out = (pb_comm_req *)r;
    return PB_OK;
}

static pb_status held_send(pb_comm_ctx *c, const void *buf, size_t bytes, int peer, pb_comm_req **req)
{
    return held_post(c, HELD_SEND, (void *)buf, bytes, peer, 1.0f, req);
}
static pb_status held_recv(pb_comm_ctx *c, void *buf, size_t bytes, int peer, pb_comm_req **req)
{
    return held_post(c, HELD_RECV, buf, bytes, peer, 1.0f, req);
}
static pb_status held_allreduce(pb_comm_ctx *c, float *buf, size_t n, float scale, pb_comm_req **req)
{
    return held_post(c, HELD_ALLREDUCE, buf, n, 0, scale, req);
}

static pb_status held_flush(pb_comm_ctx *ctx)
{
    held_ctx *c = (held_ctx *)ctx;
    pthread_mutex_lock(&c->mu);
    flush_locked(c);
    pthread_mutex_unlock(&c->mu);
    return PB_OK;
}

static pb_status held_wait(pb_comm_ctx *ctx, pb_comm_req *req, double deadline_s)
{
    held_ctx *c = (held_ctx *)ctx;
    held_req *r = (held_req *)req;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)deadline_s + 1; /* the stream's own waits fail first */
    pthread_mutex_lock(&c->mu);
    if (!r->issued) flush_locked(c);
    int rc = 0;
    while (!r->done && rc == 0) rc = pthread_cond_timedwait(&c->cv, &c->mu, &until);
    bool done = r->done;
    pb_status st = r->st;
    char err[256];
    snprintf(err, sizeof err, "%s", r->err);
    pthread_mutex_unlock(&c->mu);
    if (!done) return pb_error(PB_ERR_COMM, "held: stage %d's %s never completed", c->rank, r->kind ? "recv" : "send");
    if (st != PB_OK) return pb_error(st, "held: stage %d: %s", c->rank, err);
    return PB_OK;
}

static const pb_comm held = {
    .name = "held",
    .send = held_send,
    .recv = held_recv,
    .allreduce = held_allreduce,
    .wait = held_wait,
    .flush = held_flush,
};

/* --- stages as threads -------------------------------------------------------- */

typedef struct stage_job {
    const pb_config *cfg;
    const pb_model *model;
    const float *params;
    const pb_batch *batch;
    const pb_comm_opts *copts; /* one for all: local's group is the opts' */
    int k, p;
    held_ctx comm;
    float loss;
    pb_status st;
    char err[512];
} stage_job;

static pb_status run_stage(stage_job *j)
{
    pb_status st = PB_OK;
    const pb_backend *be = &pb_backend_cpu;
    pb_device *dev = NULL;
    pb_replica rep;
    pb_phase_timer timer;
    pb_pipe pp;
    pb_phase cur = PB_PHASE_FWD;
    bool rep_up = false, timer_up = false, pipe_up = false, comm_up = false;
    held_ctx *c = &j->comm;
    pb_device_opts opts = {.precision = PB_FP32, .threads = 1};
    pb_mesh mesh = {.dp = 1, .tp = 1, .pp = j->p};
    int b0 = 0, b1 = 0, rows = 0, slots = 0;
    PB_TRY(be->open(&opts, 0, &dev));
    PB_TRY(pb_comm_local.init(j->copts, be, dev, j->k, j->p, &c->inner));
    c->rank = j->k;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    PB_REQUIRE(pthread_create(&c->thread, NULL, held_stream, c) == 0, PB_ERR_INTERNAL, "no stream thread");
    comm_up = true;
    pb_pipe_stage_rows(&pp, j->cfg, j->model, mesh, j->k, &b0, &b1, &rows, &slots);
    PB_TRY(pb_replica_init(&rep, be, dev, j->cfg, j->model, b0, b1, rows, slots, j->params, false, j->k == j->p - 1));
    rep_up = true;
    PB_TRY(pb_phase_timer_init_spans(&timer, be, dev, pb_pipe_spans(&pp, j->model->n_blocks)));
    timer_up = true;
    PB_TRY(pb_pipe_init(&pp, be, dev, j->model, &held, (pb_comm_ctx *)c, &rep, &timer, &cur, false, 0));
    pipe_up = true;
    pb_phase_timer_reset(&timer);
    PB_TRY(pb_pipe_run(&pp, j->batch));
    PB_TRY(be->download(dev, &j->loss, rep.loss_sum, sizeof(float)));
    PB_TRY(pb_pipe_finish(&pp, &j->loss));
cleanup:
    if (st != PB_OK) snprintf(j->err, sizeof j->err, "%s", pb_error_message());
    if (pipe_up) pb_pipe_destroy(&pp);
    if (timer_up) pb_phase_timer_destroy(&timer);
    if (rep_up) pb_replica_destroy(&rep);
    if (comm_up) {
        pthread_mutex_lock(&c->mu);
        c->quit = true;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    if (c->inner) pb_comm_local.destroy(c->inner);
    if (dev) be->close(dev);
    return st;
}

static void *stage_main(void *arg)
{
    stage_job *j = arg;
    j->st = run_stage(j);
    return NULL;
}

static const pb_shape MLP = {.in = 6, .hidden = 8, .layers = 4, .classes = 3, .batch = 8};
static const pb_shape GPT = {.layers = 2, .batch = 4, .seq = 4, .heads = 2, .d_model = 8, .vocab = 10};

/* One step of p stages, m microbatches: every stage finishes, agrees on
 * the loss, and never held two sends back at once. */
static void one_step(const pb_workload_ops *ops, const pb_shape *shape, pb_schedule sched, int p, int m)
{
    pb_config cfg;
    pb_config_defaults(&cfg);
    cfg.shape = *shape;
    cfg.microbatches = m;
    cfg.schedule = sched;
    cfg.timeout_s = DEADLINE_S;
    pb_model model;
    assert_int_equal(pb_model_describe(ops, shape, &model), PB_OK);
    int B = shape->batch;
    float *params = malloc(model.n_params * 4), *table = malloc((model.data_table + 1) * 4);
    void *in = malloc((size_t)B * pb_model_input_bytes(&model)), *tg = malloc((size_t)B * pb_model_target_bytes(&model));
    assert_true(params && table && in && tg);
    model.ops->init_params(&model, 5, params);
    if (model.n_tied) memcpy(params + model.tensor[model.tie_dst].off, params + model.tensor[model.tie_src].off,
                             model.n_tied * 4);
    model.ops->data_table(&model, 5, table);
    model.ops->fill(&model, 5, table, 0, 0, B, in, tg);
    pb_batch batch = {.step = 0, .row0 = 0, .count = B, .inputs = in, .targets = tg};
    pb_comm_opts copts = {.timeout_s = DEADLINE_S};
    stage_job *jobs = calloc(MAX_STAGES, sizeof *jobs);
    pthread_t th[MAX_STAGES];
    assert_non_null(jobs);
    for (int k = 0; k < p; k++) {
        jobs[k] = (stage_job){.cfg = &cfg, .model = &model, .params = params, .batch = &batch, .copts = &copts,
                              .k = k, .p = p};
        assert_int_equal(pthread_create(&th[k], NULL, stage_main, &jobs[k]), 0);
    }
    for (int k = 0; k < p; k++) pthread_join(th[k], NULL);
    const char *name = sched == PB_SCHED_GPIPE ? "gpipe" : "1f1b";
    for (int k = 0; k < p; k++) {
        if (jobs[k].st != PB_OK) fail_msg("%s p%d m%d: stage %d: %s", name, p, m, k, jobs[k].err);
        if (jobs[k].comm.max_held_sends > 1)
            fail_msg("%s p%d m%d: stage %d held %d sends back at once (its neighbour waits for the first)", name, p,
                     m, k, jobs[k].comm.max_held_sends);
        if (!(isfinite(jobs[k].loss) && jobs[k].loss == jobs[p - 1].loss))
            fail_msg("%s p%d m%d: stage %d's loss %g, the last stage's %g", name, p, m, k, jobs[k].loss,
                     jobs[p - 1].loss);
    }
    free(jobs);
    free(params);
    free(table);
    free(in);
    free(tg);
}

static void run_all(pb_schedule sched)
{
    static const int ms[] = {1, 3, 8};
    for (int p = 2; p <= MAX_STAGES; p++)
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) one_step(&pb_workload_mlp, &MLP, sched, p, ms[i]);
    /* the tied embedding/LM-head gradient between the first and last stage */
    one_step(&pb_workload_gpt, &GPT, sched, 2, 2);
}

static void test_gpipe_under_nccl_order(void **state)
{
    (void)state;
    run_all(PB_SCHED_GPIPE);
}

static void test_1f1b_under_nccl_order(void **state)
{
    (void)state;
    run_all(PB_SCHED_1F1B);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpipe_under_nccl_order),
        cmocka_unit_test(test_1f1b_under_nccl_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
