/* The mesh's pipeline (--strategy mesh --pp P > 1): one MPI rank per
 * stage, where mp (strategies/mp.c) drives its stages from threads of one
 * process. A rank's stage is the blocks [first[k], first[k+1]) of the
 * FLOP-balanced split (schedule.h, as mp's) of its tp part of the model;
 * its replica holds the schedule's activation slots. pipe runs the
 * microbatches of one step in the schedule's order, moving the stage
 * boundaries over the rank's pp group, then (pb_pipe_finish) the tied
 * tensor's gradient between the first and the last stage and the loss to
 * every stage. tp.c owns the rest of the step (its tp all-reduces, the dp
 * group's sync, the optimizer). */
#ifndef PB_PIPE_H
#define PB_PIPE_H

#include "../harness/memplan.h"
#include "../harness/mesh.h"
#include "../harness/phase.h"
#include "../kernels/comm.h"
#include "replica.h"
#include "strategy.h"

typedef struct pb_pipe {
    const pb_backend *be;
    pb_device *dev;
    const pb_config *cfg;
    const pb_model *local;  /* the rank's tp part of the model */
    const pb_comm *comm;
    pb_comm_ctx *cc;        /* the pp group: stage k is its participant k */
    pb_replica *rep;        /* the stage's, from pb_pipe_stage_rows' rows and slots */
    pb_phase_timer *timer;  /* the step's spans (tp.c's) */
    pb_phase *cur;          /* the phase a tp all-reduce interrupts (tp.c's) */
    const char *name;       /* the strategy, for a failed wait's message */
    int p, k, m, mb;        /* stages, this stage, microbatches, rows of one */
    int row0;               /* the rank's dp shard's first row of the global batch */
    pb_schedule sched;
    int first[PB_MAX_STAGES + 1];
    int *ops;               /* [2m]: the stage's operations in order (pb_sched_ops) */
    pb_comm_req **sreq;     /* [2m]: forward sends, then backward sends; NULL once waited for */
    int send_slots;         /* gsend's slots of mb rows */
    float *gscratch;        /* p_len: gradients of the microbatches after the first back */
    float *tscratch;        /* the other end's tied gradient (first and last stage) */
    void *gsend;            /* input gradients sent to the previous stage */
    bool staged;            /* a GPU with a host comm: boundaries staged through host memory */
    char *host_send;        /* staged: [2m] messages of msg_bytes */
    char *host_recv;        /* staged: one message */
    size_t msg_bytes;
    int64_t step;
    double comm_ms;         /* this step's messages, as the comm timed them */
} pb_pipe;

/* Usage errors of a mesh with pp > 1 (stages, microbatches, the batch). */
pb_status pb_pipe_validate(const pb_config *cfg, const pb_model *model, pb_mesh mesh);

/* The pipe of the stage of mesh rank `rank`, its replica not yet made:
 * fills first, p, k, m, mb, sched; *b0, *b1, *rows and *slots are what
 * its replica holds (pb_replica_init). */
void pb_pipe_stage_rows(pb_pipe *pp, const pb_config *cfg, const pb_model *model, pb_mesh mesh, int rank,
                        int *b0, int *b1, int *rows, int *slots);
/* The rest, once the replica and the pp group exist */
pb_status pb_pipe_init(pb_pipe *pp, const pb_backend *be, pb_device *dev, const pb_model *local,
                       const pb_comm *comm, pb_comm_ctx *cc, pb_replica *rep, pb_phase_timer *timer, pb_phase *cur,
                       bool staged, int row0);
void pb_pipe_destroy(pb_pipe *pp);
/* Spans a step may record (the timer's cap) with tp's per-block splits */
int pb_pipe_spans(const pb_pipe *pp, int n_blocks);

/* One step's microbatches: h2d, fwd, p2p, bwd (the loss on the last
 * stage, into rep->loss_sum), every send waited for. */
pb_status pb_pipe_run(pb_pipe *pp, const pb_batch *batch);
/* After the dp sync: the tied gradient's two ends summed (first and last
 * stage), and the loss (*loss: the stage's, 0 but on the last; device:
 * rep->loss_sum for a comm of device buffers) made the last stage's on
 * every stage. */
pb_status pb_pipe_finish(pb_pipe *pp, float *loss);

/* Every stage's parameters of the rank's tp part into local_params (the
 * part's whole flat buffer), on every rank of the pp group (a collective
 * of the group) */
pb_status pb_pipe_gather_params(pb_pipe *pp, float *local_params);

/* p2p_bytes_per_step: what one rank moves across a boundary per step, the
 * mean over boundaries */
double pb_pipe_p2p_bytes(const pb_pipe *pp);
/* The row's pipeline columns: bubble_frac (mean: the row's phases per
 * step), bubble_frac_theory, stage_layers */
void pb_pipe_report(const pb_pipe *pp, const pb_step_times *mean, pb_record *row);/* The memory plan of each stage k into dev[k] (harness/memplan.h): its
 * replica over its blocks of the tp part `local`, the schedule's slots of
 * a microbatch's B/(D M) rows, the targets on the last stage, and the
 * buffers beside it (pb_sched_plan_extras); no input staging (each
 * microbatch's rows are copied into their slot). */
void pb_pipe_plan_memory(const pb_config *cfg, const pb_model *model, const pb_model *local,
                         const pb_memplan_env *env, pb_mesh mesh, pb_mem_parts *dev);

#endif /* PB_PIPE_H */
