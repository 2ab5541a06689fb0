/* Comm: collectives between the devices of a run, as an ops table.
 *
 * `nccl` (GPUs), `mpi` (CPU ranks, host-staged GPU fallback) and `local`
 * (devices driven by threads of one process) fill it. Operations are
 * asynchronous: each returns a request that wait() completes before a
 * deadline. The `single` strategy uses no comm (column value "none"). */
#ifndef PB_COMM_H
#define PB_COMM_H

#include <stddef.h>

#include "../harness/status.h"
#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pb_comm_ctx pb_comm_ctx; /* one per participant */
typedef struct pb_comm_req pb_comm_req;

/* The color of a participant that joins no group of a split (its *out is
 * NULL), as MPI_UNDEFINED and NCCL_SPLIT_NOCOLOR. */
#define PB_COMM_SPLIT_NONE (-1)

typedef struct pb_comm {
    const char *name;
    const char *description;
    /* Joins the MPI ranks of a rank-per-device strategy (mpi, nccl); false:
     * the threads of one process that drives several devices (local). */
    bool between_ranks;
    /* Reduces the devices' own GPU buffers, so it needs a GPU backend and
     * ddp stages no gradients through the host (nccl). */
    bool device_buffers;
    pb_status (*init)(const pb_comm_opts *opts, const pb_backend *be, pb_device *dev, int rank,
                      int ranks, pb_comm_ctx **ctx);
    void (*destroy)(pb_comm_ctx *ctx);
    /* In-place sum over participants of n fp32 values, then scaled by scale. */
    pb_status (*allreduce)(pb_comm_ctx *ctx, float *buf, size_t n, float scale, pb_comm_req **req);
    pb_status (*broadcast)(pb_comm_ctx *ctx, void *buf, size_t bytes, int root, pb_comm_req **req);
    pb_status (*reduce)(pb_comm_ctx *ctx, float *buf, size_t n, int root, pb_comm_req **req);
    /* A send matches the peer's recv from this participant in the order
     * each side posted them; posting never waits for the peer, so both
     * sides may post their sends before their recvs. */
    pb_status (*send)(pb_comm_ctx *ctx, const void *buf, size_t bytes, int peer, pb_comm_req **req);
    pb_status (*recv)(pb_comm_ctx *ctx, void *buf, size_t bytes, int peer, pb_comm_req **req);
    /* out: ranks * bytes, participant r's in at out + r * bytes. in and
     * out disjoint, or in place as NCCL has it (in == out + rank * bytes);
     * any other overlap is undefined (`local` fails it with PB_ERR_COMM). */
    pb_status (*allgather)(pb_comm_ctx *ctx, const void *in, void *out, size_t bytes, pb_comm_req **req);
    /* in: ranks * n floats; out: n, the sum of everyone's chunk `rank`.
     * Same rule: disjoint, or in place as NCCL (out == in + rank * n). */
    pb_status (*reduce_scatter)(pb_comm_ctx *ctx, const float *in, float *out, size_t n, pb_comm_req **req);
    /* Completes a request, failing with PB_ERR_COMM after deadline_s without progress. */
    pb_status (*wait)(pb_comm_ctx *ctx, pb_comm_req *req, double deadline_s);
    const char *(*version)(void); /* library version loaded at run time */
    /* optional: ms the operation itself ran (not its time queued), once
     * waited; the request stays readable until the next operation is issued
     * on its slot */
    double (*req_ms)(const pb_comm_req *req);
    /* optional: fails the operations outstanding and to come on every
     * participant of ctx's group at once, so the others stop waiting for a
     * participant that failed instead of running into their deadlines */
    void (*abort)(pb_comm_ctx *ctx);
    /* optional: the caller's device waits for the data of its next message
     * from peer, whose send is already posted, so that the recv's copy
     * starts at once (mp times the wait apart from the copy: the wait is
     * pipeline bubble); nothing where copies need no ordering (the cpu) */
    pb_status (*recv_ready)(pb_comm_ctx *ctx, int peer);
    /* optional: starts the sends and recvs posted so far, now. `nccl`
     * holds them back and issues them as one group at the next wait or
     * operation, so that a send and the recv posted after it progress
     * together (two ranks that each send before they receive would
     * otherwise wait on each other on their serialized streams); a caller
     * with no recv coming soon flushes, so its sends do not sit until one
     * does. NULL where posting starts the message (mpi, local). */
    pb_status (*flush)(pb_comm_ctx *ctx);
    /* optional: MPI_Comm_split. A collective of ctx's group (every
     * participant calls it, in its place among the group's collectives):
     * the participants passing the same color >= 0 form a new group, their
     * ranks in it ordered by key, ties by rank in ctx; *out is this
     * participant's ctx there (NULL for PB_COMM_SPLIT_NONE), a ctx like
     * init's: every operation above, its own requests, deadlines and
     * abort (aborting one group leaves its parent and siblings running),
     * destroyed on its own, before or after ctx. Fails with PB_ERR_COMM
     * when a participant does not call it within deadline_s. The groups
     * of one rank share that rank's progress: `mpi` runs every group's
     * operations on the one comm thread in the order posted, so the ranks
     * post them across groups in an order they all agree on (as blocking
     * MPI collectives on several communicators need). */
    pb_status (*split)(pb_comm_ctx *ctx, int color, int key, double deadline_s, pb_comm_ctx **out);
} pb_comm;

#ifdef __cplusplus
}
#endif
#endif /* PB_COMM_H */
