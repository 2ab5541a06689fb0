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
 * from the progress slots the world shares over the node: progress_open). */
#define _POSIX_C_SOURCE 200809L
#include "comm_mpi.h"

#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../harness/progress.h"
#include "../harness/timer.h"

#define MAX_REQS 4096
#define CHUNK (1 << 30) /* elements per MPI call: counts are ints */

/* An MPI call's error as a status with file:line and MPI's own words. */
#define MPI_TRY(call)                                                            \
    do {                                                                         \
        int rc_ = (call);                                                        \
        if (rc_ != MPI_SUCCESS) {                                                \
            char msg_[MPI_MAX_ERROR_STRING];                                     \
            int len_ = 0;                                                        \
            MPI_Error_string(rc_, msg_, &len_);                                  \
            st = pb_error(PB_ERR_COMM, "%s failed: %.*s", #call, len_, msg_);    \
            goto cleanup;                                                        \
        }                                                                        \
    } while (0)

bool pb_mpi_available(void) { return true; }

static bool world_up;

/* The progress slots of this node's ranks (harness/progress.h): one
 * MPI-3 shared-memory window over the node's communicator, locked for the
 * whole run (MPI_Win_lock_all), so that reading a rank's slot never needs
 * that rank, nor any MPI call: the deadline that fires may be on a thread
 * other than the one inside MPI. */
static MPI_Comm node_comm = MPI_COMM_NULL;
static MPI_Win progress_win = MPI_WIN_NULL;

/* Best effort: without the window, deadline messages stay generic. Every
 * rank of the node calls it (the window's calls are collective on it). */
static void progress_open(const pb_world *w)
{
    void *mine = NULL;
    void **where = NULL;
    MPI_Aint bytes = (MPI_Aint)pb_progress_slot_bytes();
    if (MPI_Win_allocate_shared(bytes, 1, MPI_INFO_NULL, node_comm, &mine, &progress_win) != MPI_SUCCESS) {
        progress_win = MPI_WIN_NULL;
        MPI_Barrier(node_comm); /* the one the others reach below */
        return;
    }
    MPI_Win_set_errhandler(progress_win, MPI_ERRORS_RETURN);
    MPI_Win_lock_all(MPI_MODE_NOCHECK, progress_win);
    where = calloc((size_t)w->local_ranks, sizeof *where);
    bool ok = where != NULL;
    for (int i = 0; ok && i < w->local_ranks; i++) {
        MPI_Aint size = 0;
        int disp = 0;
        ok = MPI_Win_shared_query(progress_win, i, &size, &disp, &where[i]) == MPI_SUCCESS && where[i] &&
             size >= bytes;
    }
    if (ok && pb_progress_attach(where, w->local_ranks, w->local_rank, w->rank, w->ranks, w->host) != PB_OK) {
        pb_error_clear(); /* the run goes on, with generic messages */
        pb_progress_detach();
    }
    free(where);
    /* every rank's slot initialised before any rank reads one */
    MPI_Win_sync(progress_win);
    MPI_Barrier(node_comm);
    MPI_Win_sync(progress_win);
}

static void progress_close(void)
{
    pb_progress_detach();
    if (progress_win != MPI_WIN_NULL) {
        MPI_Win_unlock_all(progress_win);
        MPI_Win_free(&progress_win);
    }
    progress_win = MPI_WIN_NULL;
}

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Appends to a bounded string; one that no longer fits ends in "...". */
__attribute__((format(printf, 4, 5))) static void append(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
    if (*used + 1 >= len) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, len - *used, fmt, ap);
    va_end(ap);
    if (n >= 0 && *used + (size_t)n < len) {
        *used += (size_t)n;
        return;
    }
    *used = len - 1;
    if (len > 4) memcpy(buf + len - 4, "...", 4);
}

/* How the ranks spread over the nodes. Any node with more ranks than cores
 * makes the run oversubscribed, not only rank 0's: the slowest rank paces
 * every step. Rank 0 also gets which host ran which ranks, for its log
 * ("vm1 (ranks 0-7), vm2 (ranks 8-15)"); nodes are told apart by the
 * shared-memory split, so two with one hostname still count twice. */
static pb_status map_nodes(pb_world *w)
{
    enum { HOST_CHARS = 65 }; /* Linux's HOST_NAME_MAX + 1 */
    pb_status st = PB_OK;
    char *hosts = NULL, mine_host[HOST_CHARS];
    int *leaders = NULL;
    if (w->rank == 0) {
        hosts = malloc((size_t)w->ranks * HOST_CHARS);
        leaders = malloc((size_t)w->ranks * sizeof *leaders);
    }
    /* rank 0 without room for the map skips it on every rank (it is only
     * for the log), rather than leave the others in a gather */
    int mine[3] = {w->local_rank == 0, w->oversubscribed, w->rank == 0 && (!hosts || !leaders)};
    int all[3] = {0, 0, 0};
    MPI_TRY(MPI_Allreduce(mine, all, 3, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    w->nodes = all[0];
    w->oversubscribed = all[1] > 0;
    if (all[2]) goto cleanup;
    /* a node's name is the world rank of its first rank */
    int leader = w->rank;
    MPI_TRY(MPI_Bcast(&leader, 1, MPI_INT, 0, node_comm));
    snprintf(mine_host, sizeof mine_host, "%.*s", HOST_CHARS - 1, w->host);
    MPI_TRY(MPI_Gather(&leader, 1, MPI_INT, leaders, 1, MPI_INT, 0, MPI_COMM_WORLD));
    MPI_TRY(MPI_Gather(mine_host, HOST_CHARS, MPI_CHAR, hosts, HOST_CHARS, MPI_CHAR, 0, MPI_COMM_WORLD));
    if (w->rank != 0) goto cleanup;
    size_t used = 0, len = sizeof w->node_map;
    for (int node = 0; node < w->ranks; node++) {
        if (leaders[node] != node) continue;
        int count = 0;
        for (int r = node; r < w->ranks; r++) count += leaders[r] == node;
        append(w->node_map, len, &used, "%s%s (rank%s ", node ? ", " : "", hosts + (size_t)node * HOST_CHARS,
               count > 1 ? "s" : "");
        /* runs of consecutive ranks as first-last */
        for (int r = node; r < w->ranks; r++) {
            if (leaders[r] != node) continue;
            int last = r;
            while (last + 1 < w->ranks && leaders[last + 1] == node) last++;
            append(w->node_map, len, &used, "%s%d", r > node ? "," : "", r);
            if (last > r) append(w->node_map, len, &used, "-%d", last);
            r = last;
        }
        append(w->node_map, len, &used, ")");
    }
cleanup:
    free(hosts);
    free(leaders);
    return st;
}

pb_status pb_world_init(pb_world *w)
{
    pb_status st = PB_OK;
    memset(w, 0, sizeof *w);
    int provided = 0;
    MPI_TRY(MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided));
    world_up = true;
    /* errors come back as codes, turned into statuses here */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    PB_REQUIRE(provided >= MPI_THREAD_SERIALIZED, PB_ERR_COMM,
               "MPI provides thread level %d; the mpi comm needs MPI_THREAD_SERIALIZED (%d)", provided,
               MPI_THREAD_SERIALIZED);
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &w->rank));
    MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &w->ranks));
    MPI_TRY(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node_comm));
    MPI_TRY(MPI_Comm_rank(node_comm, &w->local_rank));
    MPI_TRY(MPI_Comm_size(node_comm, &w->local_ranks));
    w->oversubscribed = w->local_ranks > online_cores();
    if (gethostname(w->host, sizeof w->host) != 0) snprintf(w->host, sizeof w->host, "unknown");
    w->host[sizeof w->host - 1] = '\0';
    snprintf(w->version, sizeof w->version, "%s", pb_comm_mpi.version());
    PB_TRY(map_nodes(w));
    progress_open(w);
cleanup:
    return st;
}

void pb_world_finalize(void)
{
    if (world_up) {
        progress_close();
        if (node_comm != MPI_COMM_NULL) MPI_Comm_free(&node_comm);
        MPI_Finalize();
    }
    world_up = false;
}

pb_status pb_world_max_to_root(double *v, int n)
{
    pb_status st = PB_OK;
    int rank = 0;
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    MPI_TRY(MPI_Reduce(rank == 0 ? MPI_IN_PLACE : v, v, n, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD));
cleanup:
    return st;
}

pb_status pb_world_slowest_to_root(double *v, double *rows, int n, int width)
{
    pb_status st = PB_OK;
    int rank = 0;
    struct {
        double ms;
        int rank;
    } *who = NULL;
    PB_ALLOC(who, n > 0 ? n : 1);
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    for (int i = 0; i < n; i++) {
        who[i].ms = v[i];
        who[i].rank = rank;
    }
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, who, n, MPI_DOUBLE_INT, MPI_MAXLOC, MPI_COMM_WORLD));
    /* every rank keeps only the rows it was slowest for; summing the rows
     * over ranks then moves each slowest row to rank 0 exactly (x + 0) */
    for (int i = 0; i < n; i++) {
        v[i] = who[i].ms;
        if (who[i].rank != rank) memset(rows + (size_t)i * (size_t)width, 0, (size_t)width * sizeof *rows);
    }
    MPI_TRY(MPI_Reduce(rank == 0 ? MPI_IN_PLACE : rows, rows, n * width, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD));
cleanup:
    free(who);
    return st;
}

pb_status pb_world_bcast_int_lazy(int *value)
{
    pb_status st = PB_OK;
    MPI_Request req = MPI_REQUEST_NULL;
    int done = 0;
    MPI_TRY(MPI_Ibcast(value, 1, MPI_INT, 0, MPI_COMM_WORLD, &req));
    for (;;) {
        MPI_TRY(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
        if (done) break;
        struct timespec ts = {0, 1000000}; /* 1 ms */
        nanosleep(&ts, NULL);
    }
cleanup:
    return st;
}

void pb_world_abort(int code)
{
    if (world_up) MPI_Abort(MPI_COMM_WORLD, code);
}

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
};

static pb_status run_op(pb_comm_ctx *c, pb_comm_req *r)
{
    pb_status st = PB_OK;
    char *p = r->buf;
    float *tmp = NULL; /* an in-place reduce_scatter's sum */
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
        if (r->buf == (const float *)r->in + (size_t)c->rank * r->n) {
            /* in place as NCCL has it (out = in + rank * n): MPI's
             * MPI_IN_PLACE would put the sum at the start of in, over
             * chunk 0, so it goes through a copy of its own */
            PB_ALLOC(tmp, r->n > 0 ? r->n : 1);
            MPI_TRY(MPI_Reduce_scatter_block(r->in, tmp, (int)r->n, MPI_FLOAT, MPI_SUM, c->comm));
            memcpy(r->buf, tmp, r->n * sizeof *tmp);
        } else {
            MPI_TRY(MPI_Reduce_scatter_block(r->in, r->buf, (int)r->n, MPI_FLOAT, MPI_SUM, c->comm));
        }
        break;
    }
cleanup:
    free(tmp);
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
            double t0 = pb_now_ms();
            pb_status st = run_op(c, r);
            finish(c, r, st, pb_now_ms() - t0);
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
    PB_REQUIRE(world_up, PB_ERR_INTERNAL, "mpi comm: pb_world_init was not called");
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

static const char *mpi_version(void)
{
    static char v[256];
    if (!v[0]) {
        char lib[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        if (MPI_Get_library_version(lib, &len) != MPI_SUCCESS) len = 0;
        lib[len < MPI_MAX_LIBRARY_VERSION_STRING ? len : MPI_MAX_LIBRARY_VERSION_STRING - 1] = '\0';
        size_t first = strcspn(lib, "\n");
        while (first > 0 && (lib[first - 1] == ' ' || lib[first - 1] == ',')) first--;
        snprintf(v, sizeof v, "%.*s", (int)(first < sizeof v - 1 ? first : sizeof v - 1), lib);
    }
    return v;
}

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
    .version = mpi_version,
    .req_ms = mpi_req_ms,
};
