/* What tp (strategies/tp.c) shares with the hybrid mesh (strategies/
 * mesh.c): the tensor-parallel step run in a tp group of the mesh, its
 * batch the group's data-parallel shard, its gradients all-reduced across
 * the dp group. tp itself is the mesh of one replica (dp 1, tp N, pp 1). */
#ifndef PB_TP_H
#define PB_TP_H

#include "../harness/memplan.h"
#include "../harness/mesh.h"
#include "strategy.h"

/* Usage errors of a tp split T ways under strategy `name` (the workload's
 * own refusal of a shape that does not split, bf16, CUDA graphs). */
pb_status pb_tp_validate_parts(const pb_config *cfg, const pb_model *model, int tp, const char *name);
/* This rank's part of the mesh (pp 1): dp > 1 splits the world into the
 * mesh's groups (harness/mesh.h's order). */
pb_status pb_tp_init_mesh(const pb_strategy_ctx *ctx, pb_mesh mesh, void **state);
/* What a rank's device holds at its peak under the mesh (memplan). */
void pb_tp_plan_memory_mesh(const pb_config *cfg, const pb_model *model, const pb_memplan_env *env, pb_mesh mesh,
                            pb_mem_parts *dev);

/* Every tp rank's part of the model (gather: ranks x local->n_params host
 * floats, this rank's at rank x n_params filled by the caller) to every
 * rank of the tp group, put back into the whole model's layout in
 * host_params (NULL: only take part). A collective of the group. */
pb_status pb_tp_gather_parts(const pb_strategy_ctx *ctx, pb_comm_ctx *tp, pb_device *dev, const pb_model *local,
                            int rank, int ranks, float *gather, float *host_params);

/* The strategy table's slots, for either strategy's state */
pb_status pb_tp_step(void *state, const pb_batch *batch, pb_step_result *out);
pb_status pb_tp_get_params(void *state, float *host_params);
pb_status pb_tp_memory(void *state, pb_memory_report *out);
pb_status pb_tp_device_info(void *state, pb_device_info *out);
void pb_tp_report(void *state, const pb_step_times *mean, pb_record *row);
void pb_tp_destroy(void *state);

#endif /* PB_TP_H */
