/* The ranks of a hybrid mesh, --dp D --tp T --pp P (D x T x P ranks): each
 * rank's coordinates and the colors and keys that split the world into its
 * tensor-, data- and pipeline-parallel groups (kernels/comm.h's split).
 * Pure arithmetic, so every layout can be tested without ranks.
 *
 * Rank order: tp innermost, then dp, then pp outermost,
 *
 *     rank = tp_rank + T * (dp_rank + D * pp_rank),
 *
 * Megatron-LM's default order "tp-cp-ep-dp-pp" (initialize_model_parallel in
 * megatron/core/parallel_state.py) without context and expert parallelism.
 * Why: a tp group is T consecutive ranks, and launchers fill a node with
 * consecutive ranks, so (T dividing the ranks per node) every tp group sits
 * on one node, where its all-reduces, two per layer in forward and two in
 * backward on the critical path, use NVLink; dp next, because the
 * data-parallel gradient reduction is the next heaviest and overlaps
 * backward; pp outermost, since a pipeline moves one activation per
 * microbatch per boundary, the least traffic, and tolerates the slower
 * links between nodes. */
#ifndef PB_MESH_H
#define PB_MESH_H

#include "../kernels/comm.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pb_mesh {
    int dp, tp, pp; /* sizes, each >= 1 */
} pb_mesh;

typedef enum pb_mesh_axis { PB_MESH_TP, PB_MESH_DP, PB_MESH_PP, PB_MESH_AXES } pb_mesh_axis;

/* A rank's place: its index along each axis (0 .. size - 1). */
typedef struct pb_mesh_coord {
    int dp, tp, pp;
} pb_mesh_coord;

/* "tp", "dp", "pp" */
const char *pb_mesh_axis_name(pb_mesh_axis axis);
/* D x T x P (0 when a size is below 1 or the product overflows an int). */
int pb_mesh_ranks(pb_mesh m);
/* A usage error unless every size is at least 1 and D x T x P = ranks
 * (the run's devices), naming the flags and what is allowed. */
pb_status pb_mesh_check(pb_mesh m, int ranks);
/* rank's coordinates (rank in 0 .. pb_mesh_ranks(m) - 1), and back. */
pb_mesh_coord pb_mesh_coord_of(pb_mesh m, int rank);
int pb_mesh_rank_of(pb_mesh m, pb_mesh_coord c);
/* The size of the group along axis, and rank's index in it. */
int pb_mesh_size(pb_mesh m, pb_mesh_axis axis);
int pb_mesh_index(pb_mesh m, int rank, pb_mesh_axis axis);
/* The color and key that put rank, by comm split, in the group of the
 * ranks that share its coordinates on the other two axes, at its index
 * along axis (the key is that index: MPI_Comm_split orders by it). */
void pb_mesh_split_args(pb_mesh m, int rank, pb_mesh_axis axis, int *color, int *key);

/* rank's tp, dp and pp groups split from world (every rank of world calls
 * it: three collectives on world, tp then dp then pp), into
 * groups[PB_MESH_TP..PB_MESH_PP]; on failure none is left. */
pb_status pb_mesh_split(const pb_comm *comm, pb_comm_ctx *world, pb_mesh m, int rank, double deadline_s,
                        pb_comm_ctx *groups[PB_MESH_AXES]);

#ifdef __cplusplus
}
#endif
#endif /* PB_MESH_H */
