/* `mpi`: collectives between the ranks of a run over MPI, on host memory
 * (a GPU backend stages device buffers through the host; NCCL comes later).
 *
 * Asynchrony: operations are queued to a comm thread that runs them one at a
 * time, in the order issued, with blocking MPI calls on a communicator of its
 * own. Every rank issues the same operations in the same order, so they
 * match. Sends and receives are the exception: the thread starts them
 * (MPI_Isend/MPI_Irecv) and goes on, testing them between operations, so
 * two ranks that each send to the other before receiving do not deadlock
 * once a message is past MPI's eager limit (as `local` and `nccl` allow). The comm thread is what makes a bucket's all-reduce progress while
 * the calling thread computes the rest of backward: on the CPU backend that
 * thread is busy in BLAS and would not call MPI_Test between layers. wait()
 * sleeps on a condition variable until the operation is done or its deadline
 * has passed; a blocking MPI call cannot be cancelled, so a missed deadline
 * is an error the caller ends the run on (pb_world_abort). Its message
 * names the ranks of this node that are behind (their phase and step, read
 * from the progress slots the world shares over the node: world_mpi.c).
 *
 * Split (comm.h): MPI_Comm_split runs on the comm thread as a collective of
 * the parent, and the new ctx's operations go to that same thread (the
 * engine below), since MPI_THREAD_SERIALIZED allows one thread inside MPI;
 * so a rank's operations on all its groups run one at a time in the order
 * posted, which the ranks must agree on across groups. */
#define _POSIX_C_SOURCE 200809L
#include "comm_mpi.h"

#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../harness/log.h"
#include "../harness/nvtx.h"
#include "../harness/timer.h"
#include "mpi_try.h"
#include "progress.h"

#define MAX_REQS 4096
#define CHUNK (1 << 30) /* elements per MPI call: counts are ints */

/* --- the comm ----------------------------------------------------------------- */

typedef enum op_kind {
    OP_ALLREDUCE,
    OP_BCAST,
    OP_REDUCE,
    OP_SEND,
    OP_RECV,
    OP_ALLGATHER,
    OP_REDUCE_SCATTER,
    OP_SPLIT, /* MPI_Comm_split of the request's ctx */
    OP_FREE   /* MPI_Comm_free of a split ctx's communicator, on the thread */
} op_kind;

static const char *const op_names[] = {"allreduce",      "broadcast", "reduce", "send", "recv", "allgather",
                                       "reduce_scatter", "split",     "free"};

struct pb_comm_req {
    pb_comm_ctx *ctx; /* whose communicator it runs on */
    op_kind kind;
    void *buf;
    const void *in;
    size_t n; /* elements (floats) or bytes, per kind */
    float scale;
    int peer; /* root or peer */
    bool in_use, done;
    bool orphan; /* its ctx was destroyed before it completed: free its slot then */
    pb_status st;
    double ms;
    char err[512];
    /* send/recv, on the comm thread: started and not yet complete */
    MPI_Request mreq[2]; /* whole CHUNKs, then the rest */
    double t0;
    /* split: the color and key, and what the comm thread made of them */
    int color, key;
    MPI_Comm newcomm;
    int new_rank, new_ranks;
};

/* The comm thread and its queue: one per rank, shared by the world's ctx
 * and every ctx split from it, since MPI_THREAD_SERIALIZED allows one
 * thread inside MPI at a time (world.h). The last ctx destroyed ends it. */
typedef struct engine {
    int refs; /* ctxs on it (under mu) */
    double deadline_s; /* --timeout: a split ctx's destroy waits this long for its free */
    pthread_t thread;
    bool thread_started, quit;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    unsigned long issued, taken; /* operations queued / started by the thread */
    pb_comm_req *queue[MAX_REQS];
    pb_comm_req slots[MAX_REQS];
    unsigned long next_slot;
    MPI_Datatype chunk_type; /* CHUNK bytes: a message's whole chunks in one int count */
    pb_comm_req *inflight[MAX_REQS]; /* sends/recvs started (comm thread only) */
    int n_inflight;
} engine;

struct pb_comm_ctx {
    engine *e;
    MPI_Comm comm;
    int rank, ranks, world_rank;
    char host[256];
    char who[320]; /* "rank 1 of 2 (world rank 3) on host", for messages */
    float *ring;       /* the ring reduce-scatter's two chunks (comm thread only) */
    size_t ring_cap;   /* floats it holds */
};

/* The tag of the ring's messages: p2p's sends and receives use 0, so a
 * receive posted for a send is never matched by the ring's */
#define RING_TAG 1

/* A ring reduce-scatter, as NCCL's: N-1 steps, in each a rank sends a
 * chunk's partial sum to the next rank and adds its own values to the one
 * the previous rank sent, so a rank sends (N-1)/N of the buffer (the volume
 * the zero strategy reports). Open MPI 4.1's MPI_Reduce_scatter_block took
 * 1.5x an MPI_Allreduce of the same buffer here (2 ranks, 16 MiB, bench
 * comm). In place (out = in + rank * n) needs no copy: in's own chunk is
 * read only in the last step, element by element as out is written. */
static pb_status ring_reduce_scatter(pb_comm_ctx *c, const float *in, float *out, size_t n)
{
    pb_status st = PB_OK;
    int N = c->ranks, r = c->rank;
    if (N == 1 || n == 0) {
        if (out != in) memmove(out, in, n * sizeof *out);
        return PB_OK;
    }
    if (c->ring_cap < 2 * n) {
        float *grown = realloc(c->ring, 2 * n * sizeof *grown);
        PB_REQUIRE(grown, PB_ERR_NOMEM, "mpi comm: out of host memory for a reduce_scatter of %zu floats", n);
        c->ring = grown;
        c->ring_cap = 2 * n;
    }
    float *send = c->ring, *recv = c->ring + n;
    const float *src = in + (size_t)((r - 1 + N) % N) * n;
    for (int k = 0; k < N - 1; k++) {
        MPI_TRY(MPI_Sendrecv(src, (int)n, MPI_FLOAT, (r + 1) % N, RING_TAG, recv, (int)n, MPI_FLOAT, (r - 1 + N) % N,
                             RING_TAG, c->comm, MPI_STATUS_IGNORE));
        const float *own = in + (size_t)((r - k - 2 + 2 * N) % N) * n;
        float *dst = k == N - 2 ? out : send;
        for (size_t i = 0; i < n; i++) dst[i] = recv[i] + own[i];
        src = send;
    }
cleanup:
    return st;
}

/* On the comm thread: r's operation, on its ctx's communicator. */
static pb_status run_op(pb_comm_req *r)
{
    pb_status st = PB_OK;
    pb_comm_ctx *c = r->ctx;
    char *p = r->buf;
    switch (r->kind) {
    case OP_ALLREDUCE:
        for (size_t off = 0; off < r->n; off += CHUNK) {
            int cnt = (int)(r->n - off < CHUNK ? r->n - off : CHUNK);
            MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, (float *)r->buf + off, cnt, MPI_FLOAT, MPI_SUM, c->comm));
        }
        if (r->scale != 1.0f)
            for (size_t i = 0; i < r->n; i++) ((float *)r->buf)[i] *= r->scale;
        break;
    case OP_BCAST:
        for (size_t off = 0; off < r->n; off += CHUNK) {
            int cnt = (int)(r->n - off < CHUNK ? r->n - off : CHUNK);
            MPI_TRY(MPI_Bcast(p + off, cnt, MPI_BYTE, r->peer, c->comm));
        }
        break;
    case OP_REDUCE:
        for (size_t off = 0; off < r->n; off += CHUNK) {
            int cnt = (int)(r->n - off < CHUNK ? r->n - off : CHUNK);
            float *b = (float *)r->buf + off;
            MPI_TRY(MPI_Reduce(c->rank == r->peer ? MPI_IN_PLACE : b, b, cnt, MPI_FLOAT, MPI_SUM, r->peer, c->comm));
        }
        break;
    case OP_SEND:
    case OP_RECV: /* started by start_p2p, not run here */
        PB_FAIL(PB_ERR_INTERNAL, "mpi comm: %s run as a collective", op_names[r->kind]);
        break;
    case OP_ALLGATHER:
        PB_REQUIRE(r->n <= INT_MAX, PB_ERR_COMM, "allgather of %zu bytes per rank: at most %d", r->n, INT_MAX);
        /* in place as NCCL has it (in = out + rank * bytes): MPI_IN_PLACE,
         * since MPI forbids aliased buffers */
        MPI_TRY(MPI_Allgather(r->in == p + (size_t)c->rank * r->n ? MPI_IN_PLACE : r->in, (int)r->n, MPI_BYTE,
                              r->buf, (int)r->n, MPI_BYTE, c->comm));
        break;
    case OP_REDUCE_SCATTER:
        PB_REQUIRE(r->n <= INT_MAX, PB_ERR_COMM, "reduce_scatter of %zu floats per rank: at most %d", r->n, INT_MAX);
        PB_TRY(ring_reduce_scatter(c, r->in, r->buf, r->n));
        break;
    case OP_SPLIT:
        /* the new communicator's set-up is MPI calls too: here, not on the
         * caller's thread */
        r->newcomm = MPI_COMM_NULL;
        MPI_TRY(MPI_Comm_split(c->comm, r->color < 0 ? MPI_UNDEFINED : r->color, r->key, &r->newcomm));
        if (r->newcomm != MPI_COMM_NULL) {
            MPI_Comm_set_errhandler(r->newcomm, MPI_ERRORS_RETURN);
            MPI_TRY(MPI_Comm_rank(r->newcomm, &r->new_rank));
            MPI_TRY(MPI_Comm_size(r->newcomm, &r->new_ranks));
        }
        break;
    case OP_FREE:
        MPI_TRY(MPI_Comm_free(&c->comm));
        break;
    }
cleanup:
    return st;
}

/* Starts a send or recv: its whole chunks as one message of chunk_type,
 * then the rest as bytes (MPI matches the two in order). */
static pb_status start_p2p(engine *e, pb_comm_req *r)
{
    pb_status st = PB_OK;
    MPI_Comm comm = r->ctx->comm;
    size_t whole = r->n / CHUNK, rest = r->n % CHUNK;
    const char *tail = (const char *)(r->kind == OP_SEND ? r->in : r->buf) + whole * CHUNK;
    PB_REQUIRE(whole <= INT_MAX, PB_ERR_COMM, "%s of %zu bytes: too large", op_names[r->kind], r->n);
    r->mreq[0] = r->mreq[1] = MPI_REQUEST_NULL;
    if (r->kind == OP_SEND) {
        MPI_TRY(MPI_Isend(r->in, (int)whole, e->chunk_type, r->peer, 0, comm, &r->mreq[0]));
        MPI_TRY(MPI_Isend(tail, (int)rest, MPI_BYTE, r->peer, 0, comm, &r->mreq[1]));
    } else {
        MPI_TRY(MPI_Irecv(r->buf, (int)whole, e->chunk_type, r->peer, 0, comm, &r->mreq[0]));
        MPI_TRY(MPI_Irecv((char *)tail, (int)rest, MPI_BYTE, r->peer, 0, comm, &r->mreq[1]));
    }
cleanup:
    return st;
}

/* Hands r's outcome to its waiters. */
static void finish(engine *e, pb_comm_req *r, pb_status st, double ms)
{
    pthread_mutex_lock(&e->mu);
    r->st = st;
    r->ms = ms;
    if (st != PB_OK) { /* the message is thread-local: hand it over */
        snprintf(r->err, sizeof r->err, "%s", pb_error_message());
        pb_error_clear();
    }
    r->done = true;
    if (r->orphan) r->in_use = false;
    pthread_mutex_unlock(&e->mu);
    /* after the unlock: the woken waiter then finds the mutex free
     * instead of running only to block on it (on a VM each of those
     * switches costs microseconds; bench-comm's 1 MiB figure shows it).
     * the engine outlives this: its last ctx's destroy joins the thread */
    pthread_cond_broadcast(&e->done);
}

/* Completes the sends/recvs in flight that have finished. */
static void test_inflight(engine *e)
{
    for (int i = 0; i < e->n_inflight;) {
        pb_comm_req *r = e->inflight[i];
        int flag = 0;
        int rc = MPI_Testall(2, r->mreq, &flag, MPI_STATUSES_IGNORE);
        if (rc == MPI_SUCCESS && !flag) {
            i++;
            continue;
        }
        pb_status st = PB_OK;
        if (rc != MPI_SUCCESS) {
            char msg[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, msg, &len);
            st = pb_error(PB_ERR_COMM, "%s: MPI_Testall failed: %.*s", op_names[r->kind], len, msg);
        }
        finish(e, r, st, pb_now_ms() - r->t0);
        e->inflight[i] = e->inflight[--e->n_inflight];
    }
}

static void *comm_thread(void *arg)
{
    engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        /* sends/recvs in flight: poll them, waking early for new work */
        if (e->taken == e->issued && e->n_inflight > 0) {
            struct timespec until = pb_time_after(CLOCK_REALTIME, 50e-6); /* work's clock */
            pthread_cond_timedwait(&e->work, &e->mu, &until);
        }
        while (e->taken == e->issued && !e->quit && e->n_inflight == 0) pthread_cond_wait(&e->work, &e->mu);
        if (e->taken == e->issued && e->n_inflight == 0) { /* quit, nothing left */
            pthread_mutex_unlock(&e->mu);
            break;
        }
        pb_comm_req *r = NULL;
        if (e->taken != e->issued) {
            r = e->queue[e->taken % MAX_REQS];
            e->taken++;
        }
        pthread_mutex_unlock(&e->mu);

        if (r && (r->kind == OP_SEND || r->kind == OP_RECV)) {
            r->t0 = pb_now_ms();
            pb_status st = start_p2p(e, r);
            if (st == PB_OK)
                e->inflight[e->n_inflight++] = r;
            else
                finish(e, r, st, 0.0);
        } else if (r) {
            /* zero's phases by kind, as NVTX ranges of this thread under
             * the names of the row's columns (reduce_scatter_ms, allgather_ms) */
            bool ranged = r->kind == OP_REDUCE_SCATTER || r->kind == OP_ALLGATHER;
            if (ranged) pb_nvtx_push(op_names[r->kind]);
            double t0 = pb_now_ms();
            pb_status st = run_op(r);
            finish(e, r, st, pb_now_ms() - t0);
            if (ranged) pb_nvtx_pop();
        }
        if (e->n_inflight > 0) test_inflight(e);
    }
    return NULL;
}

/* Ends the comm thread (after the work queued) and frees the engine. */
static void engine_free(engine *e)
{
    if (!e) return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->quit = true;
        pthread_cond_broadcast(&e->work);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
        pthread_cond_destroy(&e->work);
        pthread_cond_destroy(&e->done);
        pthread_mutex_destroy(&e->mu);
    }
    if (e->chunk_type != MPI_DATATYPE_NULL) MPI_Type_free(&e->chunk_type);
    free(e);
}

static pb_status engine_start(engine **out)
{
    pb_status st = PB_OK;
    engine *e = NULL;
    *out = NULL;
    PB_ALLOC(e, 1);
    e->chunk_type = MPI_DATATYPE_NULL;
    e->refs = 1;
    MPI_TRY(MPI_Type_contiguous(CHUNK, MPI_BYTE, &e->chunk_type));
    MPI_TRY(MPI_Type_commit(&e->chunk_type));
    PB_REQUIRE(pthread_mutex_init(&e->mu, NULL) == 0, PB_ERR_INTERNAL, "mpi comm: pthread_mutex_init failed");
    pthread_cond_init(&e->work, NULL);
    pb_cond_init_monotonic(&e->done); /* waits on done have deadlines */
    int rc = pthread_create(&e->thread, NULL, comm_thread, e);
    if (rc != 0) {
        pthread_cond_destroy(&e->work);
        pthread_cond_destroy(&e->done);
        pthread_mutex_destroy(&e->mu);
        PB_FAIL(PB_ERR_INTERNAL, "mpi comm: could not start the comm thread (error %d)", rc);
    }
    e->thread_started = true;
    *out = e;
    return PB_OK;
cleanup:
    engine_free(e);
    return st;
}

static pb_status submit(pb_comm_ctx *c, pb_comm_req op, pb_comm_req **out)
{
    engine *e = c->e;
    pthread_mutex_lock(&e->mu);
    pb_comm_req *r = &e->slots[e->next_slot % MAX_REQS];
    if (r->in_use || e->issued - e->taken >= MAX_REQS) {
        pthread_mutex_unlock(&e->mu);
        return pb_error(PB_ERR_COMM, "mpi comm: more than %d operations outstanding", MAX_REQS);
    }
    e->next_slot++;
    *r = op;
    r->ctx = c;
    r->in_use = true;
    e->queue[e->issued % MAX_REQS] = r;
    e->issued++;
    pthread_mutex_unlock(&e->mu);
    pthread_cond_signal(&e->work); /* after the unlock, as the comm thread's broadcast */
    *out = r;
    return PB_OK;
}

/* Completes r within deadline_s; *result (optional) is r as it completed,
 * read before its slot is free for another operation. */
static pb_status wait_req(pb_comm_ctx *c, pb_comm_req *r, double deadline_s, pb_comm_req *result)
{
    engine *e = c->e;
    struct timespec until = pb_time_after(CLOCK_MONOTONIC, deadline_s); /* done's clock */
    pthread_mutex_lock(&e->mu);
    int rc = 0;
    while (!r->done && rc == 0) rc = pthread_cond_timedwait(&e->done, &e->mu, &until); /* ETIMEDOUT, or an error: stop */
    bool done = r->done;
    pb_status st = r->st;
    char err[512];
    snprintf(err, sizeof err, "%s", r->err);
    if (done && result) *result = *r;
    if (done) r->in_use = false;
    pthread_mutex_unlock(&e->mu);
    if (!done) {
        /* who holds it up, read from the node's progress slots (no MPI
         * call: the comm thread may be inside MPI_Allreduce right now) */
        char why[640];
        pb_progress_describe(why, sizeof why);
        char what[96];
        if (r->kind == OP_SPLIT || r->kind == OP_FREE)
            snprintf(what, sizeof what, "%s of the group", op_names[r->kind]);
        else
            snprintf(what, sizeof what, "%s of %zu %s", op_names[r->kind], r->n,
                     r->kind == OP_ALLREDUCE || r->kind == OP_REDUCE || r->kind == OP_REDUCE_SCATTER ? "floats"
                                                                                                     : "bytes");
        return pb_user_error(PB_ERR_COMM, "%s: %s did not complete within %g s (--timeout): %s", c->who, what,
                             deadline_s, why);
    }
    /* err keeps its own location, if it has one */
    if (st != PB_OK) return pb_user_error(st, "%s: %s", c->who, err);
    return PB_OK;
}

/* c's place in its group, and how messages name it. */
static void ctx_place(pb_comm_ctx *c, int rank, int ranks, bool split)
{
    c->rank = rank;
    c->ranks = ranks;
    if (split)
        snprintf(c->who, sizeof c->who, "rank %d of %d of a split group (world rank %d) on %s", rank, ranks,
                 c->world_rank, c->host);
    else
        snprintf(c->who, sizeof c->who, "rank %d of %d on %s", rank, ranks, c->host);
}

/* A ctx on engine e for communicator comm. */
static pb_status ctx_new(engine *e, MPI_Comm comm, int rank, int ranks, int world_rank, pb_comm_ctx **out)
{
    pb_status st = PB_OK;
    pb_comm_ctx *c = NULL;
    *out = NULL;
    PB_ALLOC(c, 1);
    c->e = e;
    c->comm = comm;
    c->world_rank = world_rank;
    if (gethostname(c->host, sizeof c->host) != 0) snprintf(c->host, sizeof c->host, "unknown");
    c->host[sizeof c->host - 1] = '\0';
    ctx_place(c, rank, ranks, false);
    *out = c;
cleanup:
    return st;
}

/* A split ctx's communicator is freed on the comm thread while other ctxs
 * may still use it; the last ctx stops the thread first and frees its own. */
static void mpi_destroy(pb_comm_ctx *c)
{
    if (!c) return;
    engine *e = c->e;
    if (!e) {
        if (c->comm != MPI_COMM_NULL) MPI_Comm_free(&c->comm);
        free(c->ring);
        free(c);
        return;
    }
    pthread_mutex_lock(&e->mu);
    bool others = e->refs > 1;
    pthread_mutex_unlock(&e->mu);
    if (others && c->comm != MPI_COMM_NULL) {
        pb_comm_req *r = NULL;
        pb_status st = submit(c, (pb_comm_req){.kind = OP_FREE}, &r);
        if (st == PB_OK) st = wait_req(c, r, e->deadline_s, NULL);
        if (st != PB_OK) {
            /* the thread is stuck in an earlier operation (the run is
             * failing): leave the ctx to it rather than free what it reads */
            pb_log_warn("%s", pb_error_message());
            pb_error_clear();
            return;
        }
    }
    pthread_mutex_lock(&e->mu);
    bool last = --e->refs == 0;
    /* the slots of its requests nobody will wait for are free again (the
     * thread has run its collectives; a send or recv still in flight frees
     * its slot when it completes) */
    for (int i = 0; i < MAX_REQS && !last; i++) {
        pb_comm_req *r = &e->slots[i];
        if (!r->in_use || r->ctx != c) continue;
        if (r->done) r->in_use = false;
        else r->orphan = true;
    }
    pthread_mutex_unlock(&e->mu);
    if (last) {
        engine_free(e);
        if (c->comm != MPI_COMM_NULL) MPI_Comm_free(&c->comm);
    }
    free(c->ring);
    free(c);
}

static pb_status mpi_init(const pb_comm_opts *opts, const pb_backend *be, pb_device *dev, int rank, int ranks,
                          pb_comm_ctx **out)
{
    (void)be;
    (void)dev;
    pb_status st = PB_OK;
    pb_comm_ctx *c = NULL;
    engine *e = NULL;
    MPI_Comm comm = MPI_COMM_NULL;
    int world_rank = -1, world_size = 0;
    *out = NULL;
    PB_REQUIRE(pb_world_up(), PB_ERR_INTERNAL, "mpi comm: pb_world_init was not called");
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
    MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
    PB_REQUIRE(world_rank == rank && world_size == ranks, PB_ERR_INTERNAL,
               "mpi comm: rank %d of %d asked for, but this is rank %d of %d", rank, ranks, world_rank, world_size);
    MPI_TRY(MPI_Comm_dup(MPI_COMM_WORLD, &comm));
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    PB_TRY(ctx_new(NULL, comm, rank, ranks, rank, &c));
    comm = MPI_COMM_NULL; /* c's */
    PB_TRY(engine_start(&e));
    e->deadline_s = opts ? opts->timeout_s : 300.0;
    c->e = e;
    *out = c;
    return PB_OK;
cleanup:
    if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
    mpi_destroy(c);
    return st;
}

static pb_status mpi_allreduce(pb_comm_ctx *c, float *buf, size_t n, float scale, pb_comm_req **req)
{
    return submit(c, (pb_comm_req){.kind = OP_ALLREDUCE, .buf = buf, .n = n, .scale = scale}, req);
}
static pb_status mpi_broadcast(pb_comm_ctx *c, void *buf, size_t bytes, int root, pb_comm_req **req)
{
    return submit(c, (pb_comm_req){.kind = OP_BCAST, .buf = buf, .n = bytes, .scale = 1.0f, .peer = root}, req);
}
static pb_status mpi_reduce(pb_comm_ctx *c, float *buf, size_t n, int root, pb_comm_req **req)
{
    return submit(c, (pb_comm_req){.kind = OP_REDUCE, .buf = buf, .n = n, .scale = 1.0f, .peer = root}, req);
}
static pb_status mpi_send(pb_comm_ctx *c, const void *buf, size_t bytes, int peer, pb_comm_req **req)
{
    return submit(c, (pb_comm_req){.kind = OP_SEND, .in = buf, .n = bytes, .scale = 1.0f, .peer = peer}, req);
}
static pb_status mpi_recv(pb_comm_ctx *c, void *buf, size_t bytes, int peer, pb_comm_req **req)
{
    return submit(c, (pb_comm_req){.kind = OP_RECV, .buf = buf, .n = bytes, .scale = 1.0f, .peer = peer}, req);
}
static pb_status mpi_allgather(pb_comm_ctx *c, const void *in, void *out, size_t bytes, pb_comm_req **req)
{
    return submit(c, (pb_comm_req){.kind = OP_ALLGATHER, .buf = out, .in = in, .n = bytes, .scale = 1.0f}, req);
}
static pb_status mpi_reduce_scatter(pb_comm_ctx *c, const float *in, float *out, size_t n, pb_comm_req **req)
{
    return submit(c, (pb_comm_req){.kind = OP_REDUCE_SCATTER, .buf = out, .in = in, .n = n, .scale = 1.0f}, req);
}

static pb_status mpi_wait(pb_comm_ctx *c, pb_comm_req *r, double deadline_s)
{
    return wait_req(c, r, deadline_s, NULL);
}

/* MPI_Comm_split on the comm thread, queued as any collective of c; the
 * new ctx shares the thread. A missed deadline leaves the split to finish
 * (or not) on the thread, as any operation: the run is ending. */
static pb_status mpi_split(pb_comm_ctx *c, int color, int key, double deadline_s, pb_comm_ctx **out)
{
    pb_status st = PB_OK;
    pb_comm_ctx *s = NULL;
    pb_comm_req *r = NULL, done;
    *out = NULL;
    /* allocated first: once the thread has made the communicator, nothing
     * can fail (its free would be an MPI call of the thread's) */
    PB_TRY(ctx_new(c->e, MPI_COMM_NULL, 0, 0, c->world_rank, &s));
    PB_TRY(submit(c, (pb_comm_req){.kind = OP_SPLIT, .color = color, .key = key, .scale = 1.0f}, &r));
    PB_TRY(wait_req(c, r, deadline_s, &done));
    if (done.newcomm == MPI_COMM_NULL) goto cleanup; /* PB_COMM_SPLIT_NONE */
    s->comm = done.newcomm;
    ctx_place(s, done.new_rank, done.new_ranks, true);
    pthread_mutex_lock(&c->e->mu);
    c->e->refs++;
    pthread_mutex_unlock(&c->e->mu);
    *out = s;
    s = NULL;
cleanup:
    free(s);
    return st;
}

static double mpi_req_ms(const pb_comm_req *r) { return r->ms; }

const pb_comm pb_comm_mpi = {
    .name = "mpi",
    .description = "MPI collectives on host memory, run by a comm thread (GPU buffers staged through the host)",
    .between_ranks = true,
    .device_buffers = false,
    .init = mpi_init,
    .destroy = mpi_destroy,
    .allreduce = mpi_allreduce,
    .broadcast = mpi_broadcast,
    .reduce = mpi_reduce,
    .send = mpi_send,
    .recv = mpi_recv,
    .allgather = mpi_allgather,
    .reduce_scatter = mpi_reduce_scatter,
    .wait = mpi_wait,
    .version = pb_world_version,
    .req_ms = mpi_req_ms,
    .split = mpi_split,
};
