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
 *
 * With --zero-stage S (pp 1), ZeRO runs within the dp group instead
 * (DeepSpeed ZeRO over Megatron TP's data-parallel group): strategies/
 * zero.c's step over the rank's tp part of the model, sharded across the D
 * ranks that hold the same part (gradients reduce-scattered as blocks
 * finish backward, the optimizer over the rank's chunks, parameters
 * all-gathered; stage 3 per block; --bucket-mb and --no-overlap as zero's),
 * tp's all-reduces on the tp group from the same stage hook. --strategy
 * zero is this mesh with tp 1. With pp > 1, stages 1 and 2 run tp's
 * pipelined step with zero's update over the stage's blocks in place of the
 * dp all-reduce (tp.c, zero.h's pb_zero_piped_*); stage 3 is refused (as
 * DeepSpeed refuses ZeRO-3 with pipeline parallelism). Not built: ZeRO with
 * --sequence-parallel (a usage error saying so). */
#include <stdio.h>
#include <string.h>

#include <stdlib.h>

#include "../harness/mesh.h"
#include "pipe.h"
#include "strategy.h"
#include "tp.h"
#include "zero.h"

static pb_mesh mesh_of(const pb_config *cfg)
{
    return (pb_mesh){.dp = cfg->mesh_dp, .tp = cfg->mesh_tp, .pp = cfg->mesh_pp};
}

static pb_status mesh_validate(const pb_config *cfg, const pb_model *model)
{
    pb_mesh m = mesh_of(cfg);
    pb_status st = pb_mesh_check(m, cfg->devices);
    if (st != PB_OK) return st;
    bool zero = pb_config_given(cfg, "--zero-stage");
    if (m.pp > 1 && zero && cfg->zero_stage == 3)
        return pb_usage_error("--zero-stage 3 with --pp %d: sharded parameters would be gathered for every "
                              "microbatch (DeepSpeed refuses ZeRO-3 with pipeline parallelism too); allowed: "
                              "--zero-stage 1 or 2 with --pp > 1, 3 with --pp 1",
                              m.pp);
    /* the pipelined mesh reduce-scatters block by block after its last backward */
    if (m.pp > 1 && zero && (pb_config_given(cfg, "--bucket-mb") || pb_config_given(cfg, "--no-overlap")))
        return pb_usage_error("%s with --pp %d: a pipelined mesh's ZeRO reduces each block after the last "
                              "backward, unbucketed; allowed: --bucket-mb and --no-overlap with --pp 1",
                              pb_config_given(cfg, "--bucket-mb") ? "--bucket-mb" : "--no-overlap", m.pp);
    /* gpt_stage.c splits the tokens only on a stage that is the whole
     * model: the shard would cross pipe.c's boundaries, the head's gather
     * sit on another stage */
    if (m.pp > 1 && cfg->sequence_parallel)
        return pb_usage_error("--sequence-parallel with --pp %d: pipeline stages do not split the tokens; allowed: "
                              "--sequence-parallel with --pp 1",
                              m.pp);
    /* zero's step passes tp's all-reduce hook only: the stage would keep
     * the whole tokens and the column say otherwise */
    if (zero && cfg->sequence_parallel)
        return pb_usage_error("--sequence-parallel with --zero-stage: ZeRO within the dp group runs tp's all-reduces; "
                              "allowed: --sequence-parallel without --zero-stage, or --zero-stage without it");
    /* the all-reduce mesh syncs once after backward: it has no buckets */
    if (!zero && (pb_config_given(cfg, "--bucket-mb") || pb_config_given(cfg, "--no-overlap")))
        return pb_usage_error("%s: the mesh's dp all-reduce has no buckets; allowed: --bucket-mb and --no-overlap "
                              "with --zero-stage",
                              pb_config_given(cfg, "--bucket-mb") ? "--bucket-mb" : "--no-overlap");
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

/* The step a mesh runs: tp's with the dp all-reduce, or zero's within the
 * dp group (--zero-stage given); the state says which, for every slot. */
typedef struct mesh_state {
    bool zero;
    void *inner;
} mesh_state;

static void mesh_destroy(void *state)
{
    mesh_state *s = state;
    if (!s) return;
    if (s->zero) pb_strategy_zero.destroy(s->inner);
    else pb_tp_destroy(s->inner);
    free(s);
}

static pb_status mesh_init(const pb_strategy_ctx *ctx, void **state)
{
    mesh_state *s = calloc(1, sizeof *s);
    if (!s) return pb_error(PB_ERR_NOMEM, "out of host memory: the mesh's state");
    /* with --pp, tp's pipeline runs zero's update (tp.c) */
    s->zero = pb_config_given(ctx->cfg, "--zero-stage") && mesh_of(ctx->cfg).pp == 1;
    pb_status st = s->zero ? pb_zero_init_mesh(ctx, mesh_of(ctx->cfg), &s->inner)
                           : pb_tp_init_mesh(ctx, mesh_of(ctx->cfg), &s->inner);
    if (st != PB_OK) {
        free(s);
        return st;
    }
    *state = s;
    return PB_OK;
}

static pb_status mesh_step(void *state, const pb_batch *batch, pb_step_result *out)
{
    mesh_state *s = state;
    return s->zero ? pb_strategy_zero.step(s->inner, batch, out) : pb_tp_step(s->inner, batch, out);
}

static pb_status mesh_get_params(void *state, float *host_params)
{
    mesh_state *s = state;
    return s->zero ? pb_strategy_zero.get_params(s->inner, host_params) : pb_tp_get_params(s->inner, host_params);
}

static pb_status mesh_memory(void *state, pb_memory_report *out)
{
    mesh_state *s = state;
    return s->zero ? pb_strategy_zero.memory(s->inner, out) : pb_tp_memory(s->inner, out);
}

static pb_status mesh_device_info(void *state, pb_device_info *out)
{
    mesh_state *s = state;
    return s->zero ? pb_strategy_zero.device_info(s->inner, out) : pb_tp_device_info(s->inner, out);
}

static void mesh_report(void *state, const pb_step_times *mean, pb_record *row)
{
    mesh_state *s = state;
    if (s->zero) pb_strategy_zero.report(s->inner, mean, row);
    else pb_tp_report(s->inner, mean, row);
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
    if (pb_config_given(cfg, "--zero-stage") && mesh_of(cfg).pp == 1) pb_zero_plan_memory_mesh(cfg, model, env, mesh_of(cfg), dev);
    else pb_tp_plan_memory_mesh(cfg, model, env, mesh_of(cfg), dev);
}

const pb_strategy pb_strategy_mesh = {
    .name = "mesh",
    .description = "hybrid mesh --dp D --tp T --pp P: tp groups of consecutive ranks, each a data-parallel replica "
                   "on its batch shard, gradients all-reduced across replicas, or ZeRO within them with "
                   "--zero-stage (1, 2 with --pp); --pp stages pipeline microbatches (--schedule)",
    .procs = PB_PROC_PER_DEVICE,
    .needs_even_split = false,
    .microbatches = true,
    .params_collective = true,
    .mesh = true,
    .zero_stage = true,
    .buckets = true, /* with --zero-stage only (mesh_validate): zero's buckets */
    .batch_shard = mesh_batch_shard,
    .validate = mesh_validate,
    .init = mesh_init,
    .step = mesh_step,
    .get_params = mesh_get_params,
    .memory = mesh_memory,
    .device_info = mesh_device_info,
    .plan_memory = mesh_plan_memory,
    .report = mesh_report,
    .destroy = mesh_destroy,
};
