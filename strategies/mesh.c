/* `mesh`: the hybrid mesh --dp D --tp T --pp P, one MPI rank per device
 * (D x T x P = --gpus), ranks placed as harness/mesh.h orders them (tp
 * innermost, then dp, pp outermost: Megatron-LM's), the world split into
 * each rank's tp, dp and pp groups by the comm's split.
 *
 * Each tp group is one data-parallel replica running tp's step
 * (strategies/tp.c: the blocks split T ways, tp_comm all-reduces in forward
 * and backward) on its shard of the global batch (every rank of the group
 * the same rows); after backward the gradients of each rank's part and the
 * loss are all-reduced across its dp group (the ranks holding the same part
 * in the other replicas), a blocking `sync` phase as ddp's --no-overlap.
 * With --pp P > 1 a replica is P stages, a rank each (strategies/pipe.c):
 * its blocks of mp's FLOP-balanced split, --microbatches run in --schedule
 * order (gpipe or 1f1b, mp's generator: schedule.c), stage boundaries sent
 * and received over the pp group; after the dp sync the tied gradient is
 * summed between the first and last stage and the loss shared. This file
 * validates and dispatches; tp.c's step calls the pipe where there is one.
 * Not built: ZeRO within the dp group (its gradients are all-reduced, its
 * optimizer state whole). */
#include <stdio.h>
#include <string.h>

#include "../harness/mesh.h"
#include "pipe.h"
#include "strategy.h"
#include "tp.h"

static pb_mesh mesh_of(const pb_config *cfg)
{
    return (pb_mesh){.dp = cfg->mesh_dp, .tp = cfg->mesh_tp, .pp = cfg->mesh_pp};
}

static pb_status mesh_validate(const pb_config *cfg, const pb_model *model)
{
    pb_mesh m = mesh_of(cfg);
    pb_status st = pb_mesh_check(m, cfg->devices);
    if (st != PB_OK) return st;
    /* gpt_stage.c splits the tokens only on a stage that is the whole
     * model: the shard would cross pipe.c's boundaries, the head's gather
     * sit on another stage */
    if (m.pp > 1 && cfg->sequence_parallel)
        return pb_usage_error("--sequence-parallel with --pp %d: pipeline stages do not split the tokens; allowed: "
                              "--sequence-parallel with --pp 1",
                              m.pp);
    if (m.pp > 1 && (st = pb_pipe_validate(cfg, model, m)) != PB_OK) return st;
    if (m.pp == 1 && cfg->microbatches > 1)
        return pb_usage_error("--microbatches %d: a mesh pipelines microbatches over its --pp stages; allowed: "
                              "--microbatches 1 with --pp 1",
                              cfg->microbatches);
    if (cfg->shape.batch < m.dp)
        return pb_usage_error("--batch %d: fewer rows than the --dp %d replicas; allowed: --batch >= --dp",
                              cfg->shape.batch, m.dp);
    st = pb_tp_validate_parts(cfg, model, m.tp, "mesh");
    if (st != PB_ERR_USAGE) return st;
    /* the workload's refusal speaks of tp's --gpus; a mesh splits --tp ways */
    char msg[1024], out[1024];
    snprintf(msg, sizeof msg, "%s", pb_error_message());
    pb_error_clear();
    size_t o = 0;
    for (const char *p = msg; *p && o + 5 < sizeof out;) {
        if (strncmp(p, "--gpus", 6) == 0) {
            memcpy(out + o, "--tp", 4);
            o += 4;
            p += 6;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    return pb_usage_error("%s", out);
}

static pb_status mesh_init(const pb_strategy_ctx *ctx, void **state)
{
    return pb_tp_init_mesh(ctx, mesh_of(ctx->cfg), state);
}

/* a rank's rows: its replica's (its dp index's) shard of D */
static int mesh_batch_shard(const pb_config *cfg, int rank, int *shards)
{
    pb_mesh m = mesh_of(cfg);
    *shards = m.dp;
    return pb_mesh_index(m, rank, PB_MESH_DP);
}

static void mesh_plan_memory(const pb_config *cfg, const pb_model *model, const pb_memplan_env *env,
                             pb_mem_parts *dev)
{
    pb_tp_plan_memory_mesh(cfg, model, env, mesh_of(cfg), dev);
}

const pb_strategy pb_strategy_mesh = {
    .name = "mesh",
    .description = "hybrid mesh --dp D --tp T --pp P: tp groups of consecutive ranks, each a data-parallel replica "
                   "on its batch shard, gradients all-reduced across replicas; --pp stages pipeline microbatches (--schedule)",
    .procs = PB_PROC_PER_DEVICE,
    .needs_even_split = false,
    .microbatches = true,
    .params_collective = true,
    .mesh = true,
    .batch_shard = mesh_batch_shard,
    .validate = mesh_validate,
    .init = mesh_init,
    .step = pb_tp_step,
    .get_params = pb_tp_get_params,
    .memory = pb_tp_memory,
    .device_info = pb_tp_device_info,
    .plan_memory = mesh_plan_memory,
    .report = pb_tp_report,
    .destroy = pb_tp_destroy,
};
