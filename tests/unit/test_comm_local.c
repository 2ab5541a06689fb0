/* The `local` comm (kernels/comm_local.c) on the cpu backend, against
 * hand-computed results (integer-valued floats, so every sum is exact):
 *
 * 1. with 2, 3 and 4 participants, each on a thread of its own that also
 *    joins the group itself, on a "staged" copy of the cpu backend that
 *    claims its device memory is not host memory, so the path cuda takes
 *    (peers' values copied into the root's scratch, then added) runs here:
 *    allreduce (scaled), broadcast, reduce, messages around a ring (three
 *    per pair, matched in order), allgather and reduce_scatter, twice;
 *    (threads on the cpu backend, 1 to 4 participants, sizes up to 64 MiB,
 *    in place: the conformance suite, test_comm_conformance.c, run on
 *    every comm);
 * 2. the same with one thread posting every participant's part, as NCCL's
 *    single-process groups allow, on the cpu and the staged backend;
 * 3. (folded into 1 and 2);
 * 4. a wait whose deadline passes because a participant never posted: it
 *    fails in about the deadline, naming the operation and who is missing,
 *    and the request can be waited for again once the last part arrives;
 * 5. an abort wakes a waiting participant at once; mismatched collectives
 *    and too many outstanding operations are errors, not hangs;
 * 6. requests waited for out of order, as mp waits its sends: far more
 *    operations than one ring holds, only DEPTH outstanding per ring;
 * 7. overlaps other than in place (out = in + rank * n, in = out + rank *
 *    bytes) rejected;
 * 8. on a "slow" cpu backend whose peer copies take a while: a wait whose
 *    deadline passes while the operation runs sees it through, and destroy
 *    waits for an operation running on another thread;
 * 9. the staged backend's scratch is allocated on the participant's own
 *    thread, and not at all once the sizes have been seen (warm-up). */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "harness/config.h"
#include "harness/timer.h"
#include "kernels/comm_local.h"

#define MAXP 4
#define N 5        /* floats per participant (per chunk) */
#define MSGS 3     /* messages per (sender, receiver) pair */
#define WAIT_S 20.0

static pb_backend staged_backend; /* pb_backend_cpu with host_is_device false */
static pb_backend slow_backend;   /* pb_backend_cpu whose peer copies take SLOW_MS */

/* staged allocations: the participant whose thread runs (-1: not one of
 * run_threaded's), its allocations, and whether one was for another's device */
static _Thread_local int tl_rank = -1;
static _Thread_local int tl_allocs;
static pb_device *owner_dev[4];
static atomic_int foreign_allocs;

static pb_status staged_alloc(pb_device *dev, size_t bytes, void **ptr)
{
    tl_allocs++;
    if (tl_rank >= 0 && owner_dev[tl_rank] != dev) atomic_fetch_add(&foreign_allocs, 1);
    return pb_backend_cpu.alloc(dev, bytes, ptr);
}

#define SLOW_MS 300
static atomic_int slow_started, slow_finished;

static pb_status slow_copy_peer(pb_device *dst_dev, void *dst, pb_device *src_dev, const void *src, size_t bytes)
{
    atomic_store(&slow_started, 1);
    struct timespec ts = {0, SLOW_MS * 1000 * 1000};
    nanosleep(&ts, NULL);
    pb_status st = pb_backend_cpu.copy_peer(dst_dev, dst, src_dev, src, bytes);
    atomic_store(&slow_finished, 1);
    return st;
}

typedef struct bufs {
    float a[MAXP * N];
    float in[MAXP * N];
    float out[MAXP * N];
    float msg_out[MSGS][(MSGS + 1) * 2];
    float msg_in[MSGS][(MSGS + 1) * 2];
} bufs;

typedef struct world {
    const pb_backend *be;
    pb_config cfg;
    pb_device_opts dev_opts;
    pb_comm_opts comm_opts; /* one for the group: local groups by its address */
    int n;
    pb_device *dev[MAXP];
    pb_comm_ctx *cc[MAXP];
    bufs b[MAXP];
    /* threaded runs */
    pthread_barrier_t barrier;
    char err[MAXP][1024];
} world;

static const pb_comm *const C = &pb_comm_local;

static void world_open(world *w, const pb_backend *be, int n)
{
    memset(w, 0, sizeof *w);
    w->be = be;
    w->n = n;
    pb_config_defaults(&w->cfg);
    w->cfg.threads = 1;
    w->dev_opts = pb_config_device_opts(&w->cfg);
    w->comm_opts = pb_config_comm_opts(&w->cfg);
    for (int r = 0; r < n; r++) assert_int_equal(be->open(&w->dev_opts, r, &w->dev[r]), PB_OK);
}

static void world_join(world *w)
{
    for (int r = 0; r < w->n; r++) assert_int_equal(C->init(&w->comm_opts, w->be, w->dev[r], r, w->n, &w->cc[r]), PB_OK);
}

static void world_close(world *w)
{
    for (int r = 0; r < w->n; r++) {
        C->destroy(w->cc[r]);
        w->cc[r] = NULL;
    }
    for (int r = 0; r < w->n; r++) w->be->close(w->dev[r]);
    pb_error_clear();
}

/* n participants on be, joined in one group by this thread;
 * cpu_world_free ends any world */
static world *joined_world(const pb_backend *be, int n)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    world_open(w, be, n);
    world_join(w);
    return w;
}

/* on the cpu backend (the tests of failures: deadlines, aborts, misuse) */
static world *cpu_world(int n) { return joined_world(&pb_backend_cpu, n); }

static void cpu_world_free(world *w)
{
    world_close(w);
    free(w);
}

/* --- the operations, as steps every participant runs ---------------------- */

enum { ST_ALLREDUCE, ST_BCAST, ST_REDUCE, ST_P2P, ST_ALLGATHER, ST_REDUCE_SCATTER, ST_COUNT };
static const char *const step_names[] = {"allreduce", "broadcast", "reduce", "send/recv", "allgather", "reduce_scatter"};

static size_t msg_floats(int m) { return (size_t)(m + 1) * 2; }

/* not participant 0, where one exists: a root other than the first */
static int reduce_root(int n) { return n > 1 ? 1 : 0; }

/* Fills participant r's buffers for the step and posts its part(s). */
static pb_status post_step(world *w, int step, int r, pb_comm_req **req, int *nreq)
{
    int n = w->n;
    bufs *b = &w->b[r];
    pb_status st = PB_OK;
    *nreq = 0;
    switch (step) {
    case ST_ALLREDUCE:
        for (int i = 0; i < N; i++) b->a[i] = (float)((r + 1) * (i + 1));
        return C->allreduce(w->cc[r], b->a, N, 0.5f, &req[(*nreq)++]);
    case ST_BCAST:
        for (int i = 0; i < N; i++) b->a[i] = r == n - 1 ? (float)(7 * (i + 1)) : -1.0f;
        return C->broadcast(w->cc[r], b->a, N * sizeof(float), n - 1, &req[(*nreq)++]);
    case ST_REDUCE:
        for (int i = 0; i < N; i++) b->a[i] = (float)((r + 1) * (i + 1));
        return C->reduce(w->cc[r], b->a, N, reduce_root(n), &req[(*nreq)++]);
    case ST_P2P: {
        /* a ring: three messages of growing size to the next, three from the previous */
        int next = (r + 1) % n, prev = (r + n - 1) % n;
        for (int m = 0; m < MSGS; m++) {
            for (size_t i = 0; i < msg_floats(m); i++) {
                b->msg_out[m][i] = (float)(100 * r + 10 * m + (int)i);
                b->msg_in[m][i] = -1.0f;
            }
            st = C->send(w->cc[r], b->msg_out[m], msg_floats(m) * sizeof(float), next, &req[(*nreq)++]);
            if (st != PB_OK) return st;
            st = C->recv(w->cc[r], b->msg_in[m], msg_floats(m) * sizeof(float), prev, &req[(*nreq)++]);
            if (st != PB_OK) return st;
        }
        return PB_OK;
    }
    case ST_ALLGATHER:
        for (int i = 0; i < N; i++) b->in[i] = (float)(10 * r + i);
        for (int i = 0; i < n * N; i++) b->out[i] = -1.0f;
        return C->allgather(w->cc[r], b->in, b->out, N * sizeof(float), &req[(*nreq)++]);
    case ST_REDUCE_SCATTER:
        for (int i = 0; i < n * N; i++) b->in[i] = (float)((r + 1) * (i + 1));
        for (int i = 0; i < N; i++) b->out[i] = -1.0f;
        return C->reduce_scatter(w->cc[r], b->in, b->out, N, &req[(*nreq)++]);
    }
    return PB_ERR_INTERNAL;
}

/* What participant r's buffers must hold after the step; "" when they do. */
static void check_step(const world *w, int step, int r, char *err, size_t len)
{
    int n = w->n;
    const bufs *b = &w->b[r];
    float tri = (float)(n * (n + 1) / 2); /* sum of r + 1 over participants */
    err[0] = '\0';
#define EXPECT(got, want, ...)                                                                                   \
    do {                                                                                                         \
        if ((got) != (want)) {                                                                                   \
            char where_[128];                                                                                    \
            snprintf(where_, sizeof where_, __VA_ARGS__);                                                        \
            snprintf(err, len, "%d participants, %s, participant %d, %s: got %g, want %g", n, step_names[step], r, \
                     where_, (double)(got), (double)(want));                                                     \
            return;                                                                                              \
        }                                                                                                        \
    } while (0)
    switch (step) {
    case ST_ALLREDUCE:
        for (int i = 0; i < N; i++) EXPECT(b->a[i], 0.5f * tri * (float)(i + 1), "a[%d]", i);
        break;
    case ST_BCAST:
        for (int i = 0; i < N; i++) EXPECT(b->a[i], (float)(7 * (i + 1)), "a[%d]", i);
        break;
    case ST_REDUCE:
        for (int i = 0; i < N; i++)
            EXPECT(b->a[i], r == reduce_root(n) ? tri * (float)(i + 1) : (float)((r + 1) * (i + 1)), "a[%d]", i);
        break;
    case ST_P2P: {
        int prev = (r + n - 1) % n;
        for (int m = 0; m < MSGS; m++)
            for (size_t i = 0; i < msg_floats(m); i++)
                EXPECT(b->msg_in[m][i], (float)(100 * prev + 10 * m + (int)i), "message %d [%zu]", m, i);
        break;
    }
    case ST_ALLGATHER:
        for (int q = 0; q < n; q++)
            for (int i = 0; i < N; i++) EXPECT(b->out[q * N + i], (float)(10 * q + i), "out[%d]", q * N + i);
        break;
    case ST_REDUCE_SCATTER:
        for (int i = 0; i < N; i++) EXPECT(b->out[i], tri * (float)(r * N + i + 1), "out[%d]", i);
        break;
    }
#undef EXPECT
}

/* --- 1: a thread per participant ------------------------------------------------ */

typedef struct participant {
    world *w;
    int r;
} participant;

static void *participant_main(void *arg)
{
    participant *p = arg;
    world *w = p->w;
    int r = p->r;
    char *err = w->err[r];
    pb_comm_req *req[2 * MSGS];
    int nreq = 0;
    tl_rank = w->be == &staged_backend ? r : -1;
    tl_allocs = 0;
    /* joining from threads at once: the group forms whatever the order */
    if (C->init(&w->comm_opts, w->be, w->dev[r], r, w->n, &w->cc[r]) != PB_OK)
        snprintf(err, 1024, "init: %s", pb_error_message());
    pthread_barrier_wait(&w->barrier);
    /* every thread reaches every barrier; one that failed aborts the group,
     * so the others fail at once instead of at their deadlines */
    /* twice: the second round, like a step after warm-up, allocates nothing */
    int warm_allocs = 0;
    for (int step = 0; step < 2 * ST_COUNT; step++) {
        if (step == ST_COUNT) warm_allocs = tl_allocs;
        if (!err[0]) {
            pb_status st = post_step(w, step % ST_COUNT, r, req, &nreq);
            for (int i = 0; st == PB_OK && i < nreq; i++) st = C->wait(w->cc[r], req[i], WAIT_S);
            if (st != PB_OK)
                snprintf(err, 1024, "%s: %s", step_names[step % ST_COUNT], pb_error_message());
            else
                check_step(w, step % ST_COUNT, r, err, 1024);
            if (err[0] && w->cc[r]) C->abort(w->cc[r]);
        }
        /* the next step refills buffers the others may still read */
        pthread_barrier_wait(&w->barrier);
    }
    if (!err[0] && tl_allocs != warm_allocs)
        snprintf(err, 1024, "%d allocations after the first round", tl_allocs - warm_allocs);
    tl_rank = -1;
    return NULL;
}

static void run_threaded(const pb_backend *be, int n)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    world_open(w, be, n);
    for (int r = 0; r < n; r++) owner_dev[r] = w->dev[r];
    atomic_store(&foreign_allocs, 0);
    assert_int_equal(pthread_barrier_init(&w->barrier, NULL, (unsigned)n), 0);
    pthread_t t[MAXP];
    participant p[MAXP];
    for (int r = 0; r < n; r++) {
        p[r] = (participant){w, r};
        assert_int_equal(pthread_create(&t[r], NULL, participant_main, &p[r]), 0);
    }
    for (int r = 0; r < n; r++) pthread_join(t[r], NULL);
    pthread_barrier_destroy(&w->barrier);
    for (int r = 0; r < n; r++)
        if (w->err[r][0]) fail_msg("%s backend, %d threads: %s", be == &pb_backend_cpu ? "cpu" : "staged", n, w->err[r]);
    /* each device's scratch is allocated by its own thread, never by the last poster's */
    if (atomic_load(&foreign_allocs) != 0)
        fail_msg("%d threads: %d allocations on another participant's device", n, atomic_load(&foreign_allocs));
    cpu_world_free(w);
}

/* --- 2: one thread posts for everyone ----------------------------------------------- */

static void run_single_thread(const pb_backend *be, int n)
{
    world *w = joined_world(be, n);
    for (int step = 0; step < ST_COUNT; step++) {
        pb_comm_req *req[MAXP][2 * MSGS];
        int nreq[MAXP];
        for (int r = 0; r < n; r++)
            if (post_step(w, step, r, req[r], &nreq[r]) != PB_OK)
                fail_msg("%s, participant %d: %s", step_names[step], r, pb_error_message());
        for (int r = 0; r < n; r++)
            for (int i = 0; i < nreq[r]; i++)
                if (C->wait(w->cc[r], req[r][i], WAIT_S) != PB_OK)
                    fail_msg("%s, participant %d: %s", step_names[step], r, pb_error_message());
        for (int r = 0; r < n; r++) {
            char err[1024];
            check_step(w, step, r, err, sizeof err);
            if (err[0]) fail_msg("one thread, %s backend: %s", be == &pb_backend_cpu ? "cpu" : "staged", err);
        }
    }
    cpu_world_free(w);
}

static void test_one_thread_cpu(void **state)
{
    (void)state;
    for (int n = 2; n <= 4; n++) run_single_thread(&pb_backend_cpu, n);
}

static void test_threads_staged(void **state)
{
    (void)state;
    for (int n = 2; n <= 4; n++) run_threaded(&staged_backend, n);
}

static void test_one_thread_staged(void **state)
{
    (void)state;
    for (int n = 2; n <= 4; n++) run_single_thread(&staged_backend, n);
}

/* --- 4: deadlines ------------------------------------------------------------------ */

static void expect_in(const char *msg, const char *want)
{
    if (!msg || !strstr(msg, want)) fail_msg("message lacks '%s': %s", want, msg ? msg : "(no message)");
}

static void test_deadline_names_missing_participant(void **state)
{
    (void)state;
    world *w = cpu_world(3);
    pb_comm_req *req[3];
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < N; i++) w->b[r].a[i] = (float)(r + 1);
        assert_int_equal(C->allreduce(w->cc[r], w->b[r].a, N, 1.0f, &req[r]), PB_OK);
    }
    pb_error_clear();
    double t0 = pb_now_ms();
    pb_status st = C->wait(w->cc[0], req[0], 0.2);
    double waited = pb_now_ms() - t0;
    assert_int_equal(st, PB_ERR_COMM);
    if (waited < 195.0 || waited > 2000.0) fail_msg("a 0.2 s deadline returned after %.1f ms", waited);
    const char *msg = pb_error_message();
    expect_in(msg, "allreduce #0 of 5 floats");
    expect_in(msg, "within 0.2 s");
    expect_in(msg, "participant 2 never posted it");
    expect_in(msg, "participant 0's");
    pb_error_clear();

    /* the late participant arrives: the same request completes */
    for (int i = 0; i < N; i++) w->b[2].a[i] = 3.0f;
    assert_int_equal(C->allreduce(w->cc[2], w->b[2].a, N, 1.0f, &req[2]), PB_OK);
    for (int r = 0; r < 3; r++) assert_int_equal(C->wait(w->cc[r], req[r], WAIT_S), PB_OK);
    for (int r = 0; r < 3; r++) assert_true(w->b[r].a[0] == 6.0f && w->b[r].a[N - 1] == 6.0f);
    assert_true(C->req_ms(req[0]) >= 0.0);
    cpu_world_free(w);
}

static void test_deadline_lists_every_missing_participant(void **state)
{
    (void)state;
    world *w = cpu_world(4);
    pb_comm_req *req = NULL;
    assert_int_equal(C->broadcast(w->cc[0], w->b[0].a, 8, 0, &req), PB_OK);
    pb_error_clear();
    assert_int_equal(C->wait(w->cc[0], req, 0.05), PB_ERR_COMM);
    expect_in(pb_error_message(), "broadcast #0 of 8 bytes");
    expect_in(pb_error_message(), "participants 1, 2, 3 never posted it");
    cpu_world_free(w);
}

static void test_deadline_of_a_message(void **state)
{
    (void)state;
    world *w = cpu_world(2);
    pb_comm_req *req = NULL;
    assert_int_equal(C->send(w->cc[0], w->b[0].a, 12, 1, &req), PB_OK);
    pb_error_clear();
    assert_int_equal(C->wait(w->cc[0], req, 0.05), PB_ERR_COMM);
    expect_in(pb_error_message(), "message #0 of 12 bytes from participant 0 to 1");
    expect_in(pb_error_message(), "participant 1 never posted its recv from 0");
    pb_error_clear();
    assert_int_equal(C->recv(w->cc[0], w->b[0].in, 8, 1, &req), PB_OK);
    pb_error_clear();
    assert_int_equal(C->wait(w->cc[0], req, 0.05), PB_ERR_COMM);
    expect_in(pb_error_message(), "message #0 of 8 bytes from participant 1 to 0");
    expect_in(pb_error_message(), "participant 1 never posted its send to 0");
    cpu_world_free(w);
}

/* --- 5: abort, mismatch, too many outstanding ------------------------------------------ */

typedef struct waiter {
    world *w;
    pb_comm_req *req;
    pb_status st;
    double ms;
    char msg[1024];
} waiter;

static void *wait_main(void *arg)
{
    waiter *x = arg;
    double t0 = pb_now_ms();
    x->st = C->wait(x->w->cc[1], x->req, 30.0);
    x->ms = pb_now_ms() - t0;
    snprintf(x->msg, sizeof x->msg, "%s", pb_error_message());
    pb_error_clear();
    return NULL;
}

static void test_abort_wakes_waiters(void **state)
{
    (void)state;
    world *w = cpu_world(3);
    waiter x = {.w = w};
    assert_int_equal(C->allreduce(w->cc[1], w->b[1].a, N, 1.0f, &x.req), PB_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_main, &x), 0);
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    C->abort(w->cc[0]);
    pthread_join(t, NULL);
    assert_int_equal(x.st, PB_ERR_COMM);
    if (x.ms > 5000.0) fail_msg("the abort took %.0f ms to reach the waiter", x.ms);
    expect_in(x.msg, "aborted");
    expect_in(x.msg, "participant 0 failed");
    /* later posts fail at once */
    pb_comm_req *req = NULL;
    assert_int_equal(C->send(w->cc[2], w->b[2].a, 4, 0, &req), PB_ERR_COMM);
    expect_in(pb_error_message(), "aborted");
    cpu_world_free(w);
}

static void test_mismatched_collectives_fail(void **state)
{
    (void)state;
    world *w = cpu_world(2);
    pb_comm_req *req = NULL, *other = NULL;
    assert_int_equal(C->allreduce(w->cc[0], w->b[0].a, N, 1.0f, &req), PB_OK);
    assert_int_equal(C->reduce(w->cc[1], w->b[1].a, N, 0, &other), PB_ERR_COMM);
    expect_in(pb_error_message(), "participant 1 posted reduce of 5 floats");
    expect_in(pb_error_message(), "allreduce #0 of 5 floats");
    pb_error_clear();
    assert_int_equal(C->wait(w->cc[0], req, 5.0), PB_ERR_COMM);
    expect_in(pb_error_message(), "aborted");
    cpu_world_free(w);
}

static void test_too_many_outstanding(void **state)
{
    (void)state;
    world *w = cpu_world(2);
    pb_comm_req *req = NULL;
    for (int k = 0; k < PB_COMM_LOCAL_DEPTH; k++)
        assert_int_equal(C->broadcast(w->cc[0], w->b[0].a, 4, 0, &req), PB_OK);
    assert_int_equal(C->broadcast(w->cc[0], w->b[0].a, 4, 0, &req), PB_ERR_COMM);
    expect_in(pb_error_message(), "more than 16 collectives outstanding");
    pb_error_clear();
    for (int k = 0; k < PB_COMM_LOCAL_DEPTH; k++)
        assert_int_equal(C->send(w->cc[1], w->b[1].a, 4, 0, &req), PB_OK);
    assert_int_equal(C->send(w->cc[1], w->b[1].a, 4, 0, &req), PB_ERR_COMM);
    expect_in(pb_error_message(), "more than 16 messages from participant 1 to 0");
    cpu_world_free(w);
}

/* --- 6: requests in any order ------------------------------------------------------------ */

/* mp's pattern: sends waited DEPTH behind, while recvs and collectives come
 * and go; many times what the rings hold in all */
static void test_out_of_order_waits(void **state)
{
    (void)state;
    world *w = cpu_world(2);
    enum { K = 5 * PB_COMM_LOCAL_DEPTH };
    static float src[K], dst[K];
    pb_comm_req *send[K], *req = NULL, *req1 = NULL;
    for (int i = 0; i < K; i++) {
        if (i >= PB_COMM_LOCAL_DEPTH) assert_int_equal(C->wait(w->cc[0], send[i - PB_COMM_LOCAL_DEPTH], WAIT_S), PB_OK);
        src[i] = (float)i;
        dst[i] = -1.0f;
        if (C->send(w->cc[0], &src[i], sizeof(float), 1, &send[i]) != PB_OK) fail_msg("send %d: %s", i, pb_error_message());
        assert_int_equal(C->recv(w->cc[1], &dst[i], sizeof(float), 0, &req), PB_OK);
        assert_int_equal(C->wait(w->cc[1], req, WAIT_S), PB_OK);
        /* a message back and a collective each time, on other rings */
        if (C->send(w->cc[1], &dst[i], sizeof(float), 0, &req1) != PB_OK) fail_msg("send back %d: %s", i, pb_error_message());
        assert_int_equal(C->recv(w->cc[0], &w->b[0].in[0], sizeof(float), 1, &req), PB_OK);
        assert_int_equal(C->wait(w->cc[0], req, WAIT_S), PB_OK);
        assert_int_equal(C->wait(w->cc[1], req1, WAIT_S), PB_OK);
        assert_true(w->b[0].in[0] == (float)i);
        /* enough that the pending sends span more posts than all the rings hold */
        pb_comm_req *bc[4][2];
        for (int k = 0; k < 4; k++)
            for (int r = 0; r < 2; r++) assert_int_equal(C->broadcast(w->cc[r], w->b[r].a, 4, 0, &bc[k][r]), PB_OK);
        for (int r = 0; r < 2; r++) /* the last first */
            for (int k = 3; k >= 0; k--) assert_int_equal(C->wait(w->cc[r], bc[k][r], WAIT_S), PB_OK);
    }
    for (int i = K - PB_COMM_LOCAL_DEPTH; i < K; i++) assert_int_equal(C->wait(w->cc[0], send[i], WAIT_S), PB_OK);
    for (int i = 0; i < K; i++) assert_true(dst[i] == (float)i);
    cpu_world_free(w);
}

/* --- 7: overlaps (in place itself: test_comm_conformance.c) ----------------------------- */

static void test_overlap_rejected(void **state)
{
    (void)state;
    world *w = cpu_world(2);
    pb_comm_req *req = NULL;
    float *in = w->b[0].in;
    assert_int_equal(C->reduce_scatter(w->cc[0], in, in + 1, 2, &req), PB_ERR_COMM);
    expect_in(pb_error_message(), "reduce_scatter's out overlaps its in");
    pb_error_clear();
    assert_int_equal(C->reduce_scatter(w->cc[0], in, in + 2, 2, &req), PB_ERR_COMM); /* participant 1's chunk */
    pb_error_clear();
    assert_int_equal(C->allgather(w->cc[1], in + 1, in, 2 * sizeof(float), &req), PB_ERR_COMM);
    expect_in(pb_error_message(), "allgather's in overlaps its out");
    pb_error_clear();
    /* nothing was posted: the group still works */
    pb_comm_req *r0 = NULL, *r1 = NULL;
    assert_int_equal(C->allgather(w->cc[0], w->b[0].in, w->b[0].out, 4, &r0), PB_OK);
    assert_int_equal(C->allgather(w->cc[1], w->b[1].in, w->b[1].out, 4, &r1), PB_OK);
    assert_int_equal(C->wait(w->cc[0], r0, WAIT_S), PB_OK);
    assert_int_equal(C->wait(w->cc[1], r1, WAIT_S), PB_OK);
    cpu_world_free(w);
}

/* --- 8: running operations ------------------------------------------------------------------- */

typedef struct poster {
    world *w;
    pb_status post_st, wait_st;
    char msg[1024];
} poster;

/* participant 1's recv from 0: the last part, so this thread runs the slow copy */
static void *recv_main(void *arg)
{
    poster *x = arg;
    pb_comm_req *req = NULL;
    x->post_st = C->recv(x->w->cc[1], x->w->b[1].in, N * sizeof(float), 0, &req);
    x->wait_st = x->post_st == PB_OK ? C->wait(x->w->cc[1], req, WAIT_S) : x->post_st;
    snprintf(x->msg, sizeof x->msg, "%s", pb_error_message());
    pb_error_clear();
    return NULL;
}

static world *slow_world(void)
{
    world *w = joined_world(&slow_backend, 2);
    atomic_store(&slow_started, 0);
    atomic_store(&slow_finished, 0);
    return w;
}

static void wait_started(void)
{
    struct timespec ts = {0, 1000 * 1000};
    for (int i = 0; i < 10000 && !atomic_load(&slow_started); i++) nanosleep(&ts, NULL);
    assert_true(atomic_load(&slow_started));
}

static void test_deadline_while_running(void **state)
{
    (void)state;
    world *w = slow_world();
    pb_comm_req *req = NULL;
    for (int i = 0; i < N; i++) w->b[0].a[i] = (float)i;
    assert_int_equal(C->send(w->cc[0], w->b[0].a, N * sizeof(float), 1, &req), PB_OK);
    poster x = {.w = w};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, recv_main, &x), 0);
    wait_started();
    /* every part is posted: the deadline is not the operation's to miss */
    double t0 = pb_now_ms();
    if (C->wait(w->cc[0], req, 0.02) != PB_OK) fail_msg("a running operation timed out: %s", pb_error_message());
    double waited = pb_now_ms() - t0;
    assert_true(atomic_load(&slow_finished));
    if (waited > 5000.0) fail_msg("waited %.0f ms", waited);
    pthread_join(t, NULL);
    if (x.wait_st != PB_OK) fail_msg("receiver: %s", x.msg);
    for (int i = 0; i < N; i++) assert_true(w->b[1].in[i] == (float)i);
    cpu_world_free(w);
}

static void test_destroy_waits_for_running(void **state)
{
    (void)state;
    world *w = slow_world();
    pb_comm_req *req = NULL;
    assert_int_equal(C->send(w->cc[0], w->b[0].a, N * sizeof(float), 1, &req), PB_OK);
    poster x = {.w = w};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, recv_main, &x), 0);
    wait_started();
    /* the copy reads participant 0's device and writes its request */
    C->destroy(w->cc[0]);
    w->cc[0] = NULL;
    assert_true(atomic_load(&slow_finished));
    pthread_join(t, NULL);
    if (x.wait_st != PB_OK) fail_msg("receiver: %s", x.msg);
    cpu_world_free(w);
}

/* The table is complete: every slot a strategy may call is filled. */
static void test_ops_table(void **state)
{
    (void)state;
    assert_string_equal(C->name, "local");
    assert_non_null(C->allreduce);
    assert_non_null(C->broadcast);
    assert_non_null(C->reduce);
    assert_non_null(C->send);
    assert_non_null(C->recv);
    assert_non_null(C->allgather);
    assert_non_null(C->reduce_scatter);
    assert_non_null(C->wait);
    assert_non_null(C->version);
    assert_non_null(C->req_ms);
    assert_non_null(C->abort);
}

int main(void)
{
    staged_backend = pb_backend_cpu;
    staged_backend.name = "staged";
    staged_backend.host_is_device = false;
    staged_backend.alloc = staged_alloc;
    slow_backend = pb_backend_cpu;
    slow_backend.name = "slow";
    slow_backend.copy_peer = slow_copy_peer;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_table),
        cmocka_unit_test(test_one_thread_cpu),
        cmocka_unit_test(test_threads_staged),
        cmocka_unit_test(test_one_thread_staged),
        cmocka_unit_test(test_deadline_names_missing_participant),
        cmocka_unit_test(test_deadline_lists_every_missing_participant),
        cmocka_unit_test(test_deadline_of_a_message),
        cmocka_unit_test(test_abort_wakes_waiters),
        cmocka_unit_test(test_mismatched_collectives_fail),
        cmocka_unit_test(test_too_many_outstanding),
        cmocka_unit_test(test_out_of_order_waits),
        cmocka_unit_test(test_overlap_rejected),
        cmocka_unit_test(test_deadline_while_running),
        cmocka_unit_test(test_destroy_waits_for_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
