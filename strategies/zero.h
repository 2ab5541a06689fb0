/* `zero`'s layout and communication volume, for its memory plan, its row
 * and the tests (strategies/zero.c; docs/strategies.md, "zero"). */
#ifndef PB_ZERO_H
#define PB_ZERO_H

#include <stddef.h>

#include "../harness/config.h"
#include "../harness/memplan.h"
#include "../harness/mesh.h"
#include "replica.h"
#include "strategy.h"
#include "../workloads/workload.h"
#include "volume.h"

/* Every block padded to N equal chunks, rank r owning chunk r of each. */
typedef struct pb_zero_layout {
    size_t padded;    /* floats of all blocks padded: sum over blocks of N * chunk */
    size_t shard;     /* a rank's floats: sum of chunks (padded / N) */
    size_t max_block; /* the largest padded block: a gather or gradient buffer */
    int max_bucket_blocks; /* the most blocks a --bucket-mb bucket holds */
    int grad_slots;   /* stages 2 and 3: gradient buffers of max_block floats */
    size_t last_chunk; /* the last block's chunk: stage 3 gathers it once, for forward and backward */
} pb_zero_layout;

void pb_zero_layout_of(const pb_config *cfg, const pb_model *model, int ranks, pb_zero_layout *out);

/* The floats a rank hands the all-gathers per step: its shard, at stage 3
 * twice less the last block's chunk (its backward reuses forward's gather). */
size_t pb_zero_gathered(const pb_config *cfg, const pb_zero_layout *g);

/* Per rank per step, a ring's wire volume: reduce-scatter (N-1) x shard x 4
 * bytes (padding counted as sent); all-gather (N-1) x pb_zero_gathered x 4. */
void pb_zero_bytes(const pb_config *cfg, const pb_model *model, int ranks, pb_comm_bytes *out);

/* ZeRO over a mesh's dp group (pp 1): each rank's tp part of the model
 * (pb_model_describe_tp; the whole model at tp 1) sharded across the D
 * ranks holding the same part, tp's all-reduces on the tp group.
 * --strategy zero is the mesh dp N, tp 1; --strategy mesh --zero-stage S
 * runs it with the strategy table pb_strategy_zero's other slots. */
pb_status pb_zero_init_mesh(const pb_strategy_ctx *ctx, pb_mesh mesh, void **state);
/* What a rank's device holds at its peak under the mesh (memplan). */
void pb_zero_plan_memory_mesh(const pb_config *cfg, const pb_model *model, const pb_memplan_env *env, pb_mesh mesh,
                              pb_mem_parts *dev);

/* ZeRO 1/2 within the dp group of a pipelined mesh (strategies/tp.c with
 * --pp > 1): zero's layout, shards and update over the stage's blocks
 * [b0, b1) of the rank's tp part, whose parameters and accumulated
 * gradients tp's replica `rep` keeps whole (it keeps no optimizer state).
 * After the pipeline's last backward and the tied gradient's exchange,
 * reduce (each block's gradients reduce-scattered over the dp group), then
 * update (the rank's chunks updated, each block all-gathered back into
 * rep's parameters); both blocking, their collectives' time added to *ms. */
pb_status pb_zero_piped_init(const pb_strategy_ctx *ctx, pb_device *dev, const pb_replica *rep, pb_comm_ctx *dp,
                             int rank, int ranks, void **state);
pb_status pb_zero_piped_reduce(void *state, double *ms);
pb_status pb_zero_piped_update(void *state, double *ms);
/* the last step's reduce-scatter and all-gather time */
void pb_zero_piped_times(const void *state, double *rs_ms, double *ag_ms);
/* vol's reduce_scatter and allgather (zero's formulas over the stage's
 * blocks); what comm_bytes_per_step adds for them into *bytes */
void pb_zero_piped_bytes(const void *state, pb_comm_bytes *vol, double *bytes);
void pb_zero_piped_destroy(void *state);
/* A stage's terms beside its replica without optimizer state: the reduced
 * chunks and the padding buffer (grads), the chunks' optimizer state */
void pb_zero_plan_piped(const pb_config *cfg, const pb_model *local, int b0, int b1, int ranks, pb_mem_parts *dev);

#endif /* PB_ZERO_H */
