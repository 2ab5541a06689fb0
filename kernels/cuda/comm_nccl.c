/* `nccl`: collectives between the ranks of a run with NCCL, on device
 * buffers of the cuda backend (one MPI rank per GPU).
 *
 * Bootstrap: rank 0 calls ncclGetUniqueId and broadcasts it over
 * MPI_COMM_WORLD (from the main thread, while no other comm is active);
 * every rank then calls ncclCommInitRankConfig on its own device.
 *
 * Deadlines everywhere: the communicator is non-blocking (config.blocking =
 * 0), so no NCCL call blocks. Its set-up, every enqueue (which may return
 * ncclInProgress: NCCL sets up a peer's connections lazily, inside the first
 * collective that needs them) and ncclCommFinalize are each followed by
 * polling ncclCommGetAsyncError under --timeout (harness/poll.h), as wait()
 * polls the end event. A rank whose peer never arrives (a missing rank, a
 * hung one) therefore fails within --timeout naming the rank that holds it
 * up (the node's progress slots, kernels/progress.h), instead of blocking
 * until the launcher's backstop.
 *
 * Asynchrony: every operation is issued on a comm stream of this comm's own,
 * ordered after the work already queued on the device's compute stream (an
 * event recorded there, waited on by the comm stream), so a bucket's
 * all-reduce runs while the compute stream goes on with the rest of
 * backward. The comm stream's priority: stream_priority(). Each request records a start and an end event around its
 * operation; wait() polls the end event and ncclCommGetAsyncError with
 * short sleeps. On an asynchronous NCCL error, a CUDA fault or the deadline,
 * the communicator is aborted (ncclCommAbort) and wait() fails with
 * PB_ERR_COMM naming the rank, host, device and operation; the strategy
 * then ends every rank (pb_world_abort: MPI_Abort).
 *
 * send/recv are grouped: they are held back and issued together inside
 * ncclGroupStart/End when one of them is waited on, another operation is
 * issued or the caller flushes (comm.h), so a pair of ranks that both send
 * and then receive does not deadlock (a send alone on the stream would wait
 * for the peer's recv, queued on the peer's stream behind the peer's own
 * send: 1F1B's steady state). Every rank must issue the same operations in
 * the same order.
 *
 * Several ranks on one GPU (test-only, --device-map 0,0,.. for ddp): NCCL
 * refuses two ranks on one device ("Duplicate GPU") unless each looks like
 * a node of its own: share_one_gpu().
 *
 * Compiled only when the build has both the CUDA backend and MPI (see the
 * Makefile); kernels/comm_nccl_stub.c otherwise. */
#define _POSIX_C_SOURCE 200809L
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include "../comm_nccl.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../harness/log.h"
#include "../../harness/poll.h"
#include "../progress.h"
#include "../comm_mpi.h"
#include "../mpi_try.h"
#include "cuda_check.h"
#include "cuda_device.h"

#define MAX_REQS 4096    /* requests outstanding at once (ddp: buckets + loss) */
#define MAX_PENDING 256  /* send/recv held back for one group */

typedef enum op_kind { OP_ALLREDUCE, OP_BCAST, OP_REDUCE, OP_SEND, OP_RECV, OP_ALLGATHER, OP_REDUCE_SCATTER } op_kind;

static const char *const op_names[] = {"allreduce", "broadcast", "reduce", "send", "recv", "allgather",
                                       "reduce_scatter"};

struct pb_comm_req {
    op_kind kind;
    void *buf;       /* send/recv held back: their buffer */
    size_t n;        /* floats or bytes, per kind */
    int peer;        /* root or peer */
    cudaEvent_t start, end;
    bool have_events;
    bool in_use;     /* issued (or held back) and not yet waited */
    bool issued;     /* on the comm stream (false: a held-back send/recv) */
    double ms;
};

struct pb_comm_ctx {
    ncclComm_t comm;
    bool comm_up, aborted;
    int rank, ranks, ordinal;
    double deadline_s; /* --timeout: set-up, each enqueue, finalize */
    char host[256];
    cudaStream_t compute; /* the device's: not ours to destroy */
    cudaStream_t stream;
    cudaEvent_t ready;
    bool have_stream, have_ready;
    pb_comm_req slots[MAX_REQS];
    unsigned long next_slot;
    pb_comm_req *pending[MAX_PENDING];
    int n_pending;
    /* the pre-multiplied sum for allreduce's scale: created once for a
     * scale and kept (ddp scales every bucket of every step by 1/ranks;
     * creating and destroying an operator per call costs host time on the
     * backward's critical path) */
    ncclRedOp_t scaled_sum;
    float scaled_sum_scale;
    bool have_scaled_sum;
};

static const char *unit(op_kind k)
{
    return k == OP_ALLREDUCE || k == OP_REDUCE || k == OP_REDUCE_SCATTER ? "floats" : "bytes";
}

/* Ends the communicator's outstanding work after a failure: no later
 * operation or ncclCommDestroy may touch it. */
static void abort_comm(pb_comm_ctx *c)
{
    if (c->comm_up) ncclCommAbort(c->comm);
    c->comm_up = false;
    c->aborted = true;
}

/* No call may touch an aborted communicator. */
static pb_status check_alive(const pb_comm_ctx *c)
{
    if (!c->aborted) return PB_OK;
    return pb_user_error(PB_ERR_COMM, "rank %d of %d on %s: nccl communicator was aborted by an earlier failure",
                         c->rank, c->ranks, c->host);
}

static pb_status use_device(const pb_comm_ctx *c)
{
    pb_status st = PB_OK;
    int cur = -1;
    PB_CUDA_CHECK(cudaGetDevice(&cur));
    if (cur != c->ordinal) PB_CUDA_CHECK(cudaSetDevice(c->ordinal));
cleanup:
    return st;
}

/* --- polling under a deadline ---------------------------------------------------- */

/* What a poll asks: the communicator's asynchronous state and, for a wait,
 * the request's end event; keeps the failure it saw for the message. */
typedef struct comm_query {
    pb_comm_ctx *c;
    cudaEvent_t end;
    bool have_end;
    cudaError_t cuda; /* cudaSuccess, or the event's failure */
    ncclResult_t nccl; /* ncclSuccess, or the communicator's failure */
} comm_query;

static pb_poll query_comm(void *arg)
{
    comm_query *q = arg;
    if (q->have_end) {
        cudaError_t e = cudaEventQuery(q->end);
        if (e == cudaSuccess) return PB_POLL_DONE;
        if (e != cudaErrorNotReady) {
            q->cuda = e;
            return PB_POLL_FAILED;
        }
    }
    ncclResult_t async = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(q->c->comm, &async);
    if (r != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
        q->nccl = r != ncclSuccess ? r : async;
        return PB_POLL_FAILED;
    }
    /* ncclSuccess: the host side is done (set-up, an enqueue); a wait goes
     * on until the end event has passed */
    return async == ncclInProgress || q->have_end ? PB_POLL_PENDING : PB_POLL_DONE;
}

/* What settle() waits for, named only when it fails: the step's hot path
 * (every bucket's enqueue and wait) formats nothing. `fixed` ("communicator
 * set-up") or the operation kind and size, with `suffix`. */
typedef struct op_desc {
    const char *fixed;
    op_kind kind;
    size_t n;
    const char *suffix;
} op_desc;

/* Polls until the operation `d` describes is done; on an error or past the
 * deadline aborts the communicator and fails naming this rank and, for a
 * deadline, the rank that holds it up. */
static pb_status settle(pb_comm_ctx *c, op_desc d, const pb_comm_req *r, double deadline_s)
{
    comm_query q = {c, r ? r->end : NULL, r != NULL, cudaSuccess, ncclSuccess};
    pb_poll_ops ops = {query_comm, NULL, NULL, &q};
    pb_poll p = pb_poll_until(&ops, deadline_s, NULL);
    if (p == PB_POLL_DONE) return PB_OK;
    char what[128], why[640];
    if (d.fixed) snprintf(what, sizeof what, "%s", d.fixed);
    else snprintf(what, sizeof what, "%s of %zu %s%s", op_names[d.kind], d.n, unit(d.kind), d.suffix ? d.suffix : "");
    if (p == PB_POLL_EXPIRED) {
        /* who holds it up, from the node's progress slots (read before the
         * abort, which may take a while) */
        pb_progress_describe(why, sizeof why);
        abort_comm(c);
        return pb_user_error(PB_ERR_COMM,
                             "rank %d of %d on %s (cuda:%d): nccl %s did not complete within %g s (--timeout): %s; "
                             "communicator aborted",
                             c->rank, c->ranks, c->host, c->ordinal, what, deadline_s, why);
    }
    if (q.cuda != cudaSuccess) {
        snprintf(why, sizeof why, "%s (%s)", cudaGetErrorString(q.cuda), cudaGetErrorName(q.cuda));
    } else {
        const char *last = ncclGetLastError(c->comm);
        snprintf(why, sizeof why, "NCCL error %s%s%s", ncclGetErrorString(q.nccl), last && *last ? ": " : "",
                 last ? last : "");
    }
    abort_comm(c);
    return pb_user_error(PB_ERR_COMM, "rank %d of %d on %s (cuda:%d): nccl %s: %s; communicator aborted", c->rank,
                         c->ranks, c->host, c->ordinal, what, why);
}

/* After a call that a non-blocking communicator may answer with
 * ncclInProgress: its host side is done before the next call. */
static pb_status settle_call(pb_comm_ctx *c, op_kind kind, size_t n)
{
    return settle(c, (op_desc){NULL, kind, n, " (while issuing it)"}, NULL, c->deadline_s);
}

/* ncclCommFinalize flushes what peers still expect from this rank; a peer
 * that is gone would hold it up for ever. */
static pb_poll finalize(pb_comm_ctx *c)
{
    ncclResult_t r = ncclCommFinalize(c->comm);
    if (r != ncclSuccess && r != ncclInProgress) return PB_POLL_FAILED;
    comm_query q = {c, NULL, false, cudaSuccess, ncclSuccess};
    pb_poll_ops ops = {query_comm, NULL, NULL, &q};
    return pb_poll_until(&ops, c->deadline_s, NULL);
}

static void nccl_destroy(pb_comm_ctx *c)
{
    if (!c) return;
    (void)use_device(c);
    bool outstanding = c->n_pending > 0;
    for (int i = 0; i < MAX_REQS && !outstanding; i++) outstanding = c->slots[i].in_use;
    /* an operator belongs to its communicator: released before it ends */
    if (c->have_scaled_sum && c->comm_up && !outstanding) ncclRedOpDestroy(c->scaled_sum, c->comm);
    c->have_scaled_sum = false;
    if (c->comm_up) {
        if (outstanding) { /* a failed step: do not wait on peers that may be gone */
            abort_comm(c);
        } else if (finalize(c) == PB_POLL_DONE) {
            ncclCommDestroy(c->comm);
            c->comm_up = false;
        } else { /* a peer that never finalizes, or an error on the way */
            abort_comm(c);
        }
    }
    for (int i = 0; i < MAX_REQS; i++)
        if (c->slots[i].have_events) {
            cudaEventDestroy(c->slots[i].start);
            cudaEventDestroy(c->slots[i].end);
        }
    if (c->have_ready) cudaEventDestroy(c->ready);
    if (c->have_stream) cudaStreamDestroy(c->stream);
    free(c);
}

/* The comm stream's priority. The compute stream has the device's greatest
 * priority (backend_cuda.cu): a comm stream at the least one would start a
 * bucket's all-reduce kernels only once the backward GEMMs queued before them
 * have left SMs free, so the all-reduce trails backward and overlap reads
 * low. PyTorch's DDP puts its NCCL stream at the same priority as compute by
 * default (both at the default priority) and above it with
 * TORCH_NCCL_HIGH_PRIORITY=1; with compute already at the greatest, the
 * nearest is equal: the default here. Not yet chosen by measurement (no
 * multi-GPU node so far): PB_NCCL_STREAM_PRIORITY=low|high (test-only) lets
 * tests/gpu/device-check.sh measure both (docs/gpu.md). */
static pb_status stream_priority(int *prio)
{
    int least = 0, greatest = 0;
    pb_status st = PB_OK;
    PB_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    const char *want = getenv("PB_NCCL_STREAM_PRIORITY");
    if (!want || !*want || strcmp(want, "high") == 0)
        *prio = greatest;
    else if (strcmp(want, "low") == 0)
        *prio = least;
    else
        return pb_usage_error("PB_NCCL_STREAM_PRIORITY=%s (test-only); allowed: high, low", want);
cleanup:
    return st;
}

/* Test-only: other ranks on this rank's GPU (ddp with --device-map 0,0,..).
 * NCCL up to 2.29 refuses them ("Duplicate GPU detected") unless each rank
 * has its own NCCL_HOSTID: each then looks like a node of its own and talks
 * to the others over sockets (loopback unless the user chose an interface,
 * InfiniBand off); NCCL 2.30 and later allow them with
 * NCCL_MULTI_RANK_GPU_ENABLE=1. Set before the first NCCL call reads its
 * environment (ncclGetUniqueId on rank 0). Timings of such runs mean
 * nothing (the row says oversubscribed). */
static void share_one_gpu(const pb_comm_opts *opts, int rank, int ranks, const char *host)
{
    if (!opts || opts->n_device_map != ranks) return;
    int sharing = 0;
    for (int i = 0; i < opts->n_device_map; i++) sharing += opts->device_map[i] == opts->device_map[rank];
    if (sharing < 2) return;
    int code = 0;
    if (ncclGetVersion(&code) == ncclSuccess && code >= 23000) {
        setenv("NCCL_MULTI_RANK_GPU_ENABLE", "1", 1);
    } else {
        char id[320];
        snprintf(id, sizeof id, "%s-parbench-rank%d", host, rank);
        setenv("NCCL_HOSTID", id, 1);
        setenv("NCCL_SOCKET_IFNAME", "lo", 0);
        setenv("NCCL_IB_DISABLE", "1", 0);
    }
    if (rank == 0)
        pb_log_info("nccl: %d ranks share cuda:%d (test-only --device-map): %s; timings mean nothing", sharing,
                    opts->device_map[rank],
                    code >= 23000 ? "NCCL_MULTI_RANK_GPU_ENABLE=1"
                                  : "each rank has its own NCCL_HOSTID and talks over sockets");
}

/* c's comm stream and its ready event, on c's device. */
static pb_status open_streams(pb_comm_ctx *c)
{
    pb_status st = PB_OK;
    int prio = 0;
    PB_TRY(use_device(c));
    PB_TRY(stream_priority(&prio));
    PB_CUDA_CHECK(cudaStreamCreateWithPriority(&c->stream, cudaStreamNonBlocking, prio));
    c->have_stream = true;
    PB_CUDA_CHECK(cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming));
    c->have_ready = true;
cleanup:
    return st;
}

static pb_status nccl_init(const pb_comm_opts *opts, const pb_backend *be, pb_device *dev, int rank, int ranks,
                           pb_comm_ctx **out)
{
    pb_status st = PB_OK;
    pb_comm_ctx *c = NULL;
    int mpi_up = 0, world_rank = -1, world_size = 0;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    struct {
        int ok;
        ncclUniqueId id;
    } boot;
    *out = NULL;
    if (be != &pb_backend_cuda) /* its devices' streams: pb_cuda_stream */
        return pb_user_error(PB_ERR_USAGE, "comm nccl works on GPU buffers: it needs --backend cuda (not %s)",
                             be->name);
    MPI_TRY(MPI_Initialized(&mpi_up));
    PB_REQUIRE(mpi_up, PB_ERR_INTERNAL, "nccl comm: pb_world_init was not called");
    PB_ALLOC(c, 1);
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
    MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
    PB_REQUIRE(world_rank == rank && world_size == ranks, PB_ERR_INTERNAL,
               "nccl comm: rank %d of %d asked for, but this is rank %d of %d", rank, ranks, world_rank, world_size);
    c->rank = rank;
    c->ranks = ranks;
    c->ordinal = pb_cuda_ordinal(dev);
    c->compute = pb_cuda_stream(dev);
    c->deadline_s = opts ? opts->timeout_s : 300.0;
    if (gethostname(c->host, sizeof c->host) != 0) snprintf(c->host, sizeof c->host, "unknown");
    c->host[sizeof c->host - 1] = '\0';
    share_one_gpu(opts, rank, ranks, c->host);

    /* rank 0 always broadcasts, with a flag, so that a failed
     * ncclGetUniqueId does not leave the other ranks in MPI_Bcast */
    memset(&boot, 0, sizeof boot);
    if (rank == 0) boot.ok = ncclGetUniqueId(&boot.id) == ncclSuccess;
    MPI_TRY(MPI_Bcast(&boot, (int)sizeof boot, MPI_BYTE, 0, MPI_COMM_WORLD));
    if (!boot.ok) {
        const char *why = rank == 0 ? ncclGetLastError(NULL) : "";
        PB_FAIL(PB_ERR_COMM, "nccl comm: ncclGetUniqueId failed on rank 0%s%s", why && *why ? ": " : "",
                why ? why : "");
    }
    PB_TRY(open_streams(c));
    /* non-blocking: the set-up goes on in NCCL's threads while settle()
     * bounds it by --timeout (a rank that never arrives) */
    config.blocking = 0;
    c->comm = NULL;
    ncclResult_t init = ncclCommInitRankConfig(&c->comm, ranks, boot.id, rank, &config);
    /* a non-blocking communicator comes back even from a failed call, to be
     * aborted */
    c->comm_up = c->comm != NULL;
    PB_NCCL_CHECK(init);
    PB_TRY(settle(c, (op_desc){"communicator set-up", 0, 0, NULL}, NULL, c->deadline_s));
    *out = c;
    return PB_OK;
cleanup:
    if (c) abort_comm(c);
    nccl_destroy(c);
    return st;
}

/* --- issuing -------------------------------------------------------------------- */

static pb_status take_slot(pb_comm_ctx *c, op_kind kind, void *buf, size_t n, int peer, pb_comm_req **out)
{
    pb_status st = PB_OK;
    PB_TRY(check_alive(c));
    pb_comm_req *r = &c->slots[c->next_slot % MAX_REQS];
    PB_REQUIRE(!r->in_use, PB_ERR_COMM, "nccl comm: more than %d operations outstanding", MAX_REQS);
    if (!r->have_events) {
        PB_TRY(use_device(c));
        PB_CUDA_CHECK(cudaEventCreate(&r->start));
        if (cudaEventCreate(&r->end) != cudaSuccess) {
            cudaEventDestroy(r->start);
            PB_FAIL(PB_ERR_BACKEND, "nccl comm: cudaEventCreate failed");
        }
        r->have_events = true;
    }
    c->next_slot++;
    r->kind = kind;
    r->buf = buf;
    r->n = n;
    r->peer = peer;
    r->in_use = true;
    r->issued = false;
    r->ms = 0.0;
    *out = r;
cleanup:
    return st;
}

/* NCCL reads and writes device memory only: a host pointer would fault on
 * the comm stream, far from its cause. */
static pb_status check_device_ptr(const pb_comm_ctx *c, const void *p, op_kind kind)
{
    pb_status st = PB_OK;
    struct cudaPointerAttributes a;
    PB_CUDA_CHECK(cudaPointerGetAttributes(&a, p));
    PB_REQUIRE(a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged, PB_ERR_INTERNAL,
               "nccl comm: %s on %p, which is not device memory (the nccl comm needs GPU buffers)", op_names[kind],
               p);
    PB_REQUIRE(a.type == cudaMemoryTypeManaged || a.device == c->ordinal, PB_ERR_INTERNAL,
               "nccl comm: %s on memory of cuda:%d, but the communicator is on cuda:%d", op_names[kind], a.device,
               c->ordinal);
cleanup:
    return st;
}

/* The comm stream waits for what the compute stream has queued so far
 * (the gradients a bucket holds). */
static pb_status after_compute(pb_comm_ctx *c)
{
    pb_status st = PB_OK;
    PB_TRY(use_device(c));
    PB_CUDA_CHECK(cudaEventRecord(c->ready, c->compute));
    PB_CUDA_CHECK(cudaStreamWaitEvent(c->stream, c->ready, 0));
cleanup:
    return st;
}

/* Issues the held-back send/recv as one group. */
static pb_status flush_p2p(pb_comm_ctx *c)
{
    pb_status st = PB_OK;
    bool in_group = false;
    if (c->n_pending == 0) return PB_OK;
    PB_TRY(check_alive(c));
    PB_TRY(after_compute(c));
    for (int i = 0; i < c->n_pending; i++) PB_CUDA_CHECK(cudaEventRecord(c->pending[i]->start, c->stream));
    PB_NCCL_CHECK(ncclGroupStart());
    in_group = true;
    for (int i = 0; i < c->n_pending; i++) {
        pb_comm_req *r = c->pending[i];
        if (r->kind == OP_SEND)
            PB_NCCL_CHECK(ncclSend(r->buf, r->n, ncclUint8, r->peer, c->comm, c->stream));
        else
            PB_NCCL_CHECK(ncclRecv(r->buf, r->n, ncclUint8, r->peer, c->comm, c->stream));
    }
    in_group = false;
    PB_NCCL_CHECK(ncclGroupEnd());
    /* the group's calls are issued at ncclGroupEnd (a peer's connections
     * set up there on first use) */
    PB_TRY(settle_call(c, c->pending[0]->kind, c->pending[0]->n));
    for (int i = 0; i < c->n_pending; i++) {
        PB_CUDA_CHECK(cudaEventRecord(c->pending[i]->end, c->stream));
        c->pending[i]->issued = true;
    }
    c->n_pending = 0;
cleanup:
    if (in_group) ncclGroupEnd();
    if (st != PB_OK) abort_comm(c);
    return st;
}

/* The sum of scale * x_i as one NCCL operator (the scalar read from the
 * host when created), made again only when the scale changes. */
static pb_status scaled_sum(pb_comm_ctx *c, float scale, size_t n, ncclRedOp_t *op)
{
    pb_status st = PB_OK;
    if (c->have_scaled_sum && c->scaled_sum_scale != scale) {
        PB_NCCL_CHECK(ncclRedOpDestroy(c->scaled_sum, c->comm));
        c->have_scaled_sum = false;
    }
    if (!c->have_scaled_sum) {
        PB_NCCL_CHECK(ncclRedOpCreatePreMulSum(&c->scaled_sum, &scale, ncclFloat32, ncclScalarHostImmediate, c->comm));
        PB_TRY(settle_call(c, OP_ALLREDUCE, n));
        c->scaled_sum_scale = scale;
        c->have_scaled_sum = true;
    }
    *op = c->scaled_sum;
cleanup:
    return st;
}

/* A collective: after the held-back send/recv and the compute stream's work,
 * between the request's start and end events. */
static pb_status issue(pb_comm_ctx *c, op_kind kind, const void *in, void *buf, size_t n, float scale, int peer,
                       pb_comm_req **out)
{
    pb_status st = PB_OK;
    pb_comm_req *r = NULL;
    ncclRedOp_t op = ncclSum;
    *out = NULL;
    PB_TRY(flush_p2p(c));
    PB_TRY(take_slot(c, kind, buf, n, peer, &r));
    if (n > 0) {
        PB_TRY(check_device_ptr(c, buf, kind));
        if (in && in != buf) PB_TRY(check_device_ptr(c, in, kind));
    }
    PB_TRY(after_compute(c));
    PB_CUDA_CHECK(cudaEventRecord(r->start, c->stream));
    switch (kind) {
    case OP_ALLREDUCE:
        /* sum, then scale: folded into one pass as a pre-multiplied sum
         * (sum of scale * x_i), the scalar read now from the host */
        if (scale != 1.0f) PB_TRY(scaled_sum(c, scale, n, &op));
        PB_NCCL_CHECK(ncclAllReduce(buf, buf, n, ncclFloat32, op, c->comm, c->stream));
        break;
    case OP_BCAST:
        PB_NCCL_CHECK(ncclBroadcast(buf, buf, n, ncclUint8, peer, c->comm, c->stream));
        break;
    case OP_REDUCE:
        PB_NCCL_CHECK(ncclReduce(buf, buf, n, ncclFloat32, ncclSum, peer, c->comm, c->stream));
        break;
    case OP_ALLGATHER:
        PB_NCCL_CHECK(ncclAllGather(in, buf, n, ncclUint8, c->comm, c->stream));
        break;
    case OP_REDUCE_SCATTER:
        PB_NCCL_CHECK(ncclReduceScatter(in, buf, n, ncclFloat32, ncclSum, c->comm, c->stream));
        break;
    case OP_SEND:
    case OP_RECV:
        PB_FAIL(PB_ERR_INTERNAL, "nccl comm: %s is issued grouped", op_names[kind]);
    }
    /* a non-blocking communicator may answer ncclInProgress (the first
     * collective sets up its connections): bounded by --timeout */
    PB_TRY(settle_call(c, kind, n));
    PB_CUDA_CHECK(cudaEventRecord(r->end, c->stream));
    r->issued = true;
    *out = r;
cleanup:
    if (st != PB_OK) {
        if (r) r->in_use = false;
        abort_comm(c);
    }
    return st;
}

static pb_status hold_p2p(pb_comm_ctx *c, op_kind kind, void *buf, size_t bytes, int peer, pb_comm_req **out)
{
    pb_status st = PB_OK;
    pb_comm_req *r = NULL;
    *out = NULL;
    PB_REQUIRE(peer >= 0 && peer < c->ranks && peer != c->rank, PB_ERR_INTERNAL,
               "nccl comm: %s with peer %d on rank %d of %d", op_names[kind], peer, c->rank, c->ranks);
    if (c->n_pending == MAX_PENDING) PB_TRY(flush_p2p(c));
    PB_TRY(take_slot(c, kind, buf, bytes, peer, &r));
    if (bytes > 0) {
        pb_status ck = check_device_ptr(c, buf, kind);
        if (ck != PB_OK) {
            r->in_use = false;
            return ck;
        }
    }
    c->pending[c->n_pending++] = r;
    *out = r;
cleanup:
    return st;
}

static pb_status nccl_allreduce(pb_comm_ctx *c, float *buf, size_t n, float scale, pb_comm_req **req)
{
    return issue(c, OP_ALLREDUCE, NULL, buf, n, scale, 0, req);
}
static pb_status nccl_broadcast(pb_comm_ctx *c, void *buf, size_t bytes, int root, pb_comm_req **req)
{
    return issue(c, OP_BCAST, NULL, buf, bytes, 1.0f, root, req);
}
static pb_status nccl_reduce(pb_comm_ctx *c, float *buf, size_t n, int root, pb_comm_req **req)
{
    return issue(c, OP_REDUCE, NULL, buf, n, 1.0f, root, req);
}
static pb_status nccl_send(pb_comm_ctx *c, const void *buf, size_t bytes, int peer, pb_comm_req **req)
{
    return hold_p2p(c, OP_SEND, (void *)(uintptr_t)buf, bytes, peer, req);
}
static pb_status nccl_recv(pb_comm_ctx *c, void *buf, size_t bytes, int peer, pb_comm_req **req)
{
    return hold_p2p(c, OP_RECV, buf, bytes, peer, req);
}
static pb_status nccl_flush(pb_comm_ctx *c) { return flush_p2p(c); }
static pb_status nccl_allgather(pb_comm_ctx *c, const void *in, void *out, size_t bytes, pb_comm_req **req)
{
    return issue(c, OP_ALLGATHER, in, out, bytes, 1.0f, 0, req);
}
static pb_status nccl_reduce_scatter(pb_comm_ctx *c, const float *in, float *out, size_t n, pb_comm_req **req)
{
    return issue(c, OP_REDUCE_SCATTER, in, out, n, 1.0f, 0, req);
}

/* --- waiting ---------------------------------------------------------------------- */

static pb_status nccl_wait(pb_comm_ctx *c, pb_comm_req *r, double deadline_s)
{
    pb_status st = PB_OK;
    PB_REQUIRE(r && r->in_use, PB_ERR_INTERNAL, "nccl comm: wait on a request not outstanding");
    if (!r->issued) PB_TRY(flush_p2p(c));
    PB_TRY(check_alive(c));
    PB_TRY(use_device(c));
    PB_TRY(settle(c, (op_desc){NULL, r->kind, r->n, NULL}, r, deadline_s));
    float ms = 0.0f;
    PB_CUDA_CHECK(cudaEventElapsedTime(&ms, r->start, r->end));
    r->ms = ms;
    r->in_use = false;
cleanup:
    if (st != PB_OK && r) r->in_use = false;
    return st;
}

static double nccl_req_ms(const pb_comm_req *r) { return r->ms; }

/* --- split ------------------------------------------------------------------------ */

#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
/* ncclCommSplit, non-blocking as the parent: the parent's side and then the
 * new communicator's set-up are each polled under deadline_s, like init's.
 * The new ctx has its own comm stream (ordered after the same compute
 * stream), requests and abort; aborting it leaves the parent running.
 * Compiled; not yet run on a GPU when written. */
static pb_status nccl_split(pb_comm_ctx *c, int color, int key, double deadline_s, pb_comm_ctx **out)
{
    pb_status st = PB_OK;
    pb_comm_ctx *s = NULL;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    ncclComm_t nc = NULL;
    *out = NULL;
    PB_TRY(check_alive(c));
    PB_TRY(flush_p2p(c)); /* held-back sends and recvs go first, in issue order */
    PB_ALLOC(s, 1);
    s->ordinal = c->ordinal;
    s->compute = c->compute;
    s->deadline_s = c->deadline_s;
    snprintf(s->host, sizeof s->host, "%s", c->host);
    PB_TRY(open_streams(s));
    config.blocking = 0;
    ncclResult_t r = ncclCommSplit(c->comm, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &nc, &config);
    s->comm = nc;
    s->comm_up = nc != NULL; /* a non-blocking communicator comes back even from a failed call, to be aborted */
    if (r != ncclSuccess && r != ncclInProgress) abort_comm(c);
    PB_NCCL_CHECK(r);
    PB_TRY(settle(c, (op_desc){"communicator split", 0, 0, NULL}, NULL, deadline_s));
    if (!nc) goto cleanup; /* PB_COMM_SPLIT_NONE */
    s->rank = c->rank; /* named in set-up messages until NCCL says */
    s->ranks = c->ranks;
    PB_TRY(settle(s, (op_desc){"split communicator set-up", 0, 0, NULL}, NULL, deadline_s));
    PB_NCCL_CHECK(ncclCommCount(nc, &s->ranks));
    PB_NCCL_CHECK(ncclCommUserRank(nc, &s->rank));
    *out = s;
    s = NULL;
cleanup:
    if (s) {
        if (st != PB_OK) abort_comm(s);
        nccl_destroy(s);
    }
    return st;
}
#define NCCL_SPLIT nccl_split
#else
/* NCCL before 2.18 has no ncclCommSplit: the slot stays empty (callers
 * check it) and the mesh strategies say so. */
#define NCCL_SPLIT NULL
#endif

static const char *nccl_version(void)
{
    static char v[64];
    if (!v[0]) {
        int code = 0;
        if (ncclGetVersion(&code) != ncclSuccess || code <= 0) {
            snprintf(v, sizeof v, "NCCL (version unknown)");
        } else if (code >= 10000) { /* 2.9 and later: MMmmpp */
            snprintf(v, sizeof v, "NCCL %d.%d.%d", code / 10000, code / 100 % 100, code % 100);
        } else { /* before 2.9: Mmpp */
            snprintf(v, sizeof v, "NCCL %d.%d.%d", code / 1000, code / 100 % 10, code % 100);
        }
    }
    return v;
}

const pb_comm pb_comm_nccl = {
    .name = "nccl",
    .description = "NCCL collectives on GPU buffers, on a comm stream of their own (bootstrapped over MPI)",
    .between_ranks = true,
    .device_buffers = true,
    .init = nccl_init,
    .destroy = nccl_destroy,
    .allreduce = nccl_allreduce,
    .broadcast = nccl_broadcast,
    .reduce = nccl_reduce,
    .send = nccl_send,
    .recv = nccl_recv,
    .allgather = nccl_allgather,
    .reduce_scatter = nccl_reduce_scatter,
    .wait = nccl_wait,
    .version = nccl_version,
    .req_ms = nccl_req_ms,
    .flush = nccl_flush,
    .split = NCCL_SPLIT,
};
