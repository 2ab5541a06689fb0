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
 * from the progress slots the world shares over the node: world_mpi.c). */
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

#include "../harness/nvtx.h"
#include "../harness/timer.h"
#include "mpi_try.h"
#include "progress.h"

#define MAX_REQS 4096
#define CHUNK (1 << 30) /* elements per MPI call: counts are ints */

/* --- the comm ----------------------------------------------------------------- */

typedef enum op_kind { OP_ALLREDUCE, OP_BCAST, OP_REDUCE, OP_SEND, OP_RECV, OP_ALLGATHER, OP_REDUCE_SCATTER } op_kind;

static const char *const op_names[] = {"allreduce", "broadcast", "reduce", "send", "recv", "allgather",
                                       "reduce_scatter"};

struct pb_comm_req {
    op_kind kind;
    void *buf;
    const void *in;
    size_t n; /* elements (floats) or bytes, per kind */
    float scale;
    int peer; /* root or peer */
    bool in_use, done;
    pb_status st;
    double ms;
    char err[512];
    /* send/recv, on the comm thread: started and not yet complete */
    MPI_Request mreq[2]; /* whole CHUNKs, then the rest */
    double t0;
};

struct pb_comm_ctx {
    MPI_Comm comm;
    int rank, ranks;
    char host[256];
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

static pb_status run_op(pb_comm_ctx *c, pb_comm_req *r)
{
    pb_status st = PB_OK;
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
    }
cleanup:
    return st;
}

/* Starts a send or recv: its whole chunks as one message of chunk_type,
 * then the rest as bytes (MPI matches the two in order). */
static pb_status start_p2p(pb_comm_ctx *c, pb_comm_req *r)
{
    pb_status st = PB_OK;
    size_t whole = r->n / CHUNK, rest = r->n % CHUNK;
    const char *tail = (const char *)(r->kind == OP_SEND ? r->in : r->buf) + whole * CHUNK;
    PB_REQUIRE(whole <= INT_MAX, PB_ERR_COMM, "%s of %zu bytes: too large", op_names[r->kind], r->n);
    r->mreq[0] = r->mreq[1] = MPI_REQUEST_NULL;
    if (r->kind == OP_SEND) {
        MPI_TRY(MPI_Isend(r->in, (int)whole, c->chunk_type, r->peer, 0, c->comm, &r->mreq[0]));
        MPI_TRY(MPI_Isend(tail, (int)rest, MPI_BYTE, r->peer, 0, c->comm, &r->mreq[1]));
    } else {
        MPI_TRY(MPI_Irecv(r->buf, (int)whole, c->chunk_type, r->peer, 0, c->comm, &r->mreq[0]));
        MPI_TRY(MPI_Irecv((char *)tail, (int)rest, MPI_BYTE, r->peer, 0, c->comm, &r->mreq[1]));
    }
cleanup:
    return st;
}

/* Hands r's outcome to its waiters. */
static void finish(pb_comm_ctx *c, pb_comm_req *r, pb_status st, double ms)
{
    pthread_mutex_lock(&c->mu);
    r->st = st;
    r->ms = ms;
    if (st != PB_OK) { /* the message is thread-local: hand it over */
        snprintf(r->err, sizeof r->err, "%s", pb_error_message());
        pb_error_clear();
    }
    r->done = true;
    pthread_mutex_unlock(&c->mu);
    /* after the unlock: the woken waiter then finds the mutex free
     * instead of running only to block on it (on a VM each of those
     * switches costs microseconds; bench-comm's 1 MiB figure shows it).
     * ctx outlives this: destroy joins the thread first */
    pthread_cond_broadcast(&c->done);
}

/* Completes the sends/recvs in flight that have finished. */
static void test_inflight(pb_comm_ctx *c)
{
    for (int i = 0; i < c->n_inflight;) {
        pb_comm_req *r = c->inflight[i];
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
        finish(c, r, st, pb_now_ms() - r->t0);
        c->inflight[i] = c->inflight[--c->n_inflight];
    }
}

static void *comm_thread(void *arg)
{
    pb_comm_ctx *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        /* sends/recvs in flight: poll them, waking early for new work */
        if (c->taken == c->issued && c->n_inflight > 0) {
            struct timespec until = pb_time_after(CLOCK_REALTIME, 50e-6); /* work's clock */
            pthread_cond_timedwait(&c->work, &c->mu, &until);
        }
        while (c->taken == c->issued && !c->quit && c->n_inflight == 0) pthread_cond_wait(&c->work, &c->mu);
        if (c->taken == c->issued && c->n_inflight == 0) { /* quit, nothing left */
            pthread_mutex_unlock(&c->mu);
            break;
        }
        pb_comm_req *r = NULL;
        if (c->taken != c->issued) {
            r = c->queue[c->taken % MAX_REQS];
            c->taken++;
        }
        pthread_mutex_unlock(&c->mu);

        if (r && (r->kind == OP_SEND || r->kind == OP_RECV)) {
            r->t0 = pb_now_ms();
            pb_status st = start_p2p(c, r);
            if (st == PB_OK)
                c->inflight[c->n_inflight++] = r;
            else
                finish(c, r, st, 0.0);
        } else if (r) {
            /* zero's phases by kind, as NVTX ranges of this thread under
             * the names of the row's columns (reduce_scatter_ms, allgather_ms) */
            bool ranged = r->kind == OP_REDUCE_SCATTER || r->kind == OP_ALLGATHER;
            if (ranged) pb_nvtx_push(op_names[r->kind]);
            double t0 = pb_now_ms();
            pb_status st = run_op(c, r);
            finish(c, r, st, pb_now_ms() - t0);
            if (ranged) pb_nvtx_pop();
        }
        if (c->n_inflight > 0) test_inflight(c);
    }
    return NULL;
}

static void mpi_destroy(pb_comm_ctx *c)
{
    if (!c) return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->quit = true;
        pthread_cond_broadcast(&c->work);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
        pthread_cond_destroy(&c->work);
        pthread_cond_destroy(&c->done);
        pthread_mutex_destroy(&c->mu);
    }
    if (c->chunk_type != MPI_DATATYPE_NULL) MPI_Type_free(&c->chunk_type);
    free(c->ring);
    if (c->comm != MPI_COMM_NULL) MPI_Comm_free(&c->comm);
    free(c);
}

static pb_status mpi_init(const pb_comm_opts *opts, const pb_backend *be, pb_device *dev, int rank, int ranks,
                          pb_comm_ctx **out)
{
    (void)opts;
    (void)be;
    (void)dev;
    pb_status st = PB_OK;
    pb_comm_ctx *c = NULL;
    int world_rank = -1, world_size = 0;
    *out = NULL;
    PB_REQUIRE(pb_world_up(), PB_ERR_INTERNAL, "mpi comm: pb_world_init was not called");
    PB_ALLOC(c, 1);
    c->comm = MPI_COMM_NULL;
    c->chunk_type = MPI_DATATYPE_NULL;
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
    MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
    PB_REQUIRE(world_rank == rank && world_size == ranks, PB_ERR_INTERNAL,
               "mpi comm: rank %d of %d asked for, but this is rank %d of %d", rank, ranks, world_rank, world_size);
    c->rank = rank;
    c->ranks = ranks;
    if (gethostname(c->host, sizeof c->host) != 0) snprintf(c->host, sizeof c->host, "unknown");
    c->host[sizeof c->host - 1] = '\0';
    MPI_TRY(MPI_Comm_dup(MPI_COMM_WORLD, &c->comm));
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    MPI_TRY(MPI_Type_contiguous(CHUNK, MPI_BYTE, &c->chunk_type));
    MPI_TRY(MPI_Type_commit(&c->chunk_type));
    PB_REQUIRE(pthread_mutex_init(&c->mu, NULL) == 0, PB_ERR_INTERNAL, "mpi comm: pthread_mutex_init failed");
    pthread_cond_init(&c->work, NULL);
    pb_cond_init_monotonic(&c->done); /* waits on done have deadlines */
    int rc = pthread_create(&c->thread, NULL, comm_thread, c);
    if (rc != 0) {
        pthread_cond_destroy(&c->work);
        pthread_cond_destroy(&c->done);
        pthread_mutex_destroy(&c->mu);
        PB_FAIL(PB_ERR_INTERNAL, "mpi comm: could not start the comm thread (error %d)", rc);
    }
    c->thread_started = true;
    *out = c;
    return PB_OK;
cleanup:
    mpi_destroy(c);
    return st;
}

static pb_status submit(pb_comm_ctx *c, op_kind kind, void *buf, const void *in, size_t n, float scale, int peer,
                        pb_comm_req **out)
{
    pthread_mutex_lock(&c->mu);
    pb_comm_req *r = &c->slots[c->next_slot % MAX_REQS];
    if (r->in_use || c->issued - c->taken >= MAX_REQS) {
        pthread_mutex_unlock(&c->mu);
        return pb_error(PB_ERR_COMM, "mpi comm: more than %d operations outstanding", MAX_REQS);
    }
    c->next_slot++;
    *r = (pb_comm_req){.kind = kind, .buf = buf, .in = in, .n = n, .scale = scale, .peer = peer, .in_use = true};
    c->queue[c->issued % MAX_REQS] = r;
    c->issued++;
    pthread_mutex_unlock(&c->mu);
    pthread_cond_signal(&c->work); /* after the unlock, as the comm thread's broadcast */
    *out = r;
    return PB_OK;
}

static pb_status mpi_allreduce(pb_comm_ctx *c, float *buf, size_t n, float scale, pb_comm_req **req)
{
    return submit(c, OP_ALLREDUCE, buf, NULL, n, scale, 0, req);
}
static pb_status mpi_broadcast(pb_comm_ctx *c, void *buf, size_t bytes, int root, pb_comm_req **req)
{
    return submit(c, OP_BCAST, buf, NULL, bytes, 1.0f, root, req);
}
static pb_status mpi_reduce(pb_comm_ctx *c, float *buf, size_t n, int root, pb_comm_req **req)
{
    return submit(c, OP_REDUCE, buf, NULL, n, 1.0f, root, req);
}
static pb_status mpi_send(pb_comm_ctx *c, const void *buf, size_t bytes, int peer, pb_comm_req **req)
{
    return submit(c, OP_SEND, NULL, buf, bytes, 1.0f, peer, req);
}
static pb_status mpi_recv(pb_comm_ctx *c, void *buf, size_t bytes, int peer, pb_comm_req **req)
{
    return submit(c, OP_RECV, buf, NULL, bytes, 1.0f, peer, req);
}
static pb_status mpi_allgather(pb_comm_ctx *c, const void *in, void *out, size_t bytes, pb_comm_req **req)
{
    return submit(c, OP_ALLGATHER, out, in, bytes, 1.0f, 0, req);
}
static pb_status mpi_reduce_scatter(pb_comm_ctx *c, const float *in, float *out, size_t n, pb_comm_req **req)
{
    return submit(c, OP_REDUCE_SCATTER, out, in, n, 1.0f, 0, req);
}

static pb_status mpi_wait(pb_comm_ctx *c, pb_comm_req *r, double deadline_s)
{
    struct timespec until = pb_time_after(CLOCK_MONOTONIC, deadline_s); /* done's clock */
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (!r->done && rc == 0) rc = pthread_cond_timedwait(&c->done, &c->mu, &until); /* ETIMEDOUT, or an error: stop */
    bool done = r->done;
    pb_status st = r->st;
    char err[512];
    snprintf(err, sizeof err, "%s", r->err);
    if (done) r->in_use = false;
    pthread_mutex_unlock(&c->mu);
    if (!done) {
        /* who holds it up, read from the node's progress slots (no MPI
         * call: the comm thread may be inside MPI_Allreduce right now) */
        char why[640];
        pb_progress_describe(why, sizeof why);
        return pb_user_error(PB_ERR_COMM,
                             "rank %d of %d on %s: %s of %zu %s did not complete within %g s (--timeout): %s",
                             c->rank, c->ranks, c->host, op_names[r->kind], r->n,
                             r->kind == OP_ALLREDUCE || r->kind == OP_REDUCE || r->kind == OP_REDUCE_SCATTER
                                 ? "floats"
                                 : "bytes",
                             deadline_s, why);
    }
    /* err keeps its own location, if it has one */
    if (st != PB_OK) return pb_user_error(st, "rank %d of %d on %s: %s", c->rank, c->ranks, c->host, err);
    return PB_OK;
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
};
