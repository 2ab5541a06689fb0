/* A pipeline's schedule and block split, shared by the two pipelines:
 * mp's (one process, a thread per stage) and the mesh's (strategies/
 * pipe.c, an MPI rank per stage), so both run the same order of
 * microbatches over the same stages. */
#ifndef PB_SCHEDULE_H
#define PB_SCHEDULE_H

#include "../harness/config.h"
#include "../harness/memplan.h"
#include "../harness/shape.h"
#include "../workloads/workload.h"

/* Stage k's (of p) 2m operations in order into ops: j >= 0 the forward of
 * microbatch j, -(j + 1) its backward. GPipe: every forward (0..m-1), then
 * every backward, last first. 1F1B (PipeDream-flush, Megatron's
 * non-interleaved schedule): w = p-k-1 warm-up forwards, then one forward
 * and one backward in turn, then the cool-down backwards; backwards go in
 * microbatch order, so stage k holds at most w + 1 = p - k microbatches
 * between forward and backward. */
void pb_sched_ops(pb_schedule sched, int p, int m, int k, int *ops);
/* Microbatch j's place among a stage's backwards (0: the first back). */
int pb_sched_bwd_rank(pb_schedule sched, int m, int j);
/* Activation slots stage k keeps: GPipe every microbatch's, 1F1B its most
 * in flight, min(m, p - k); microbatch j uses slot j % slots (1F1B's
 * backwards go in order, so slot j's previous microbatch is back). */
int pb_sched_slots(pb_schedule sched, int p, int m, int k);
/* Slots of a stage's input-gradient send buffer: GPipe one per microbatch
 * (they stay put until the step ends); 1F1B two, a slot reused once the
 * send two before it has been taken, which the previous stage does without
 * anything more from this one (its backward of that microbatch needs only
 * its own forwards), so the wait cannot deadlock. */
int pb_sched_send_slots(pb_schedule sched, int m);
/* p contiguous, non-empty stages of the model's blocks with roughly equal
 * FLOPs: stage k has blocks [first[k], first[k+1]) (first: p + 1 ints). */
void pb_sched_balanced_split(const pb_model *model, int p, int *first);
 
/* The memory plan of stage k's buffers beside its replica (len: the
 * replica's parameter floats; mb: a microbatch's rows; e: an activation's
 * bytes): with microbatches a gradient scratch, after the first stage the
 * input-gradient send slots, and on the first and last stage the other
 * end's tied gradient. Both pipelines hold them. */
void pb_sched_plan_extras(const pb_config *cfg, const pb_model *model, const int *first, int p, int k, double mb,
                          double len, double e, pb_mem_parts *dev);

#endif /* PB_SCHEDULE_H */
