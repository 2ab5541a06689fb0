/* bench predict's memory per device: the run's own memory plan
 * (harness/memplan.h: the strategies' plan_memory over the workload's
 * model), computed for the target's configuration, so a predicted row's
 * mem_mb_per_device is what that run's mem_plan_mb will say; the
 * backends allocate exactly what the plan counts (docs/reliability.md).
 * The configuration is built the way the command line builds it, from the
 * single rows' workload, shape and settings; where it cannot be (a
 * workload this binary does not have), the model's own estimate stands. */
#include <stdio.h>
#include <string.h>

#include "../harness/config.h"
#include "../harness/memplan.h"
#include "../harness/registry.h"
#include "predict.h"

#define ARGS 40
#define ARG_LEN 72 /* a workload name (PB_PRED_NAME) and its NUL */

typedef struct argv_buf {
    int n;
    char text[ARGS][ARG_LEN];
    char *v[ARGS + 1];
} argv_buf;

static void arg(argv_buf *a, const char *flag, const char *fmt, double x)
{
    if (a->n + 2 > ARGS) return;
    snprintf(a->text[a->n], ARG_LEN, "%s", flag);
    a->v[a->n] = a->text[a->n];
    a->n++;
    if (!fmt) return;
    snprintf(a->text[a->n], ARG_LEN, fmt, x);
    a->v[a->n] = a->text[a->n];
    a->n++;
}

static void arg_s(argv_buf *a, const char *flag, const char *value)
{
    if (a->n + 2 > ARGS || !*value) return;
    arg(a, flag, NULL, 0);
    snprintf(a->text[a->n], ARG_LEN, "%s", value);
    a->v[a->n] = a->text[a->n];
    a->n++;
}

/* The target's configuration, as the command line would build it from the
 * single rows' workload, shape and settings; false where it cannot be
 * built (the error cleared). */
static bool config_of(const pb_pred_work *w, const pb_pred_target *t, pb_config *cfg, pb_model *model)
{
    pb_config_defaults(cfg);
    argv_buf a = {0};
    arg_s(&a, "--workload", w->workload);
    arg_s(&a, "--backend", w->backend);
    arg_s(&a, "--precision", w->precision);
    arg_s(&a, "--optimizer", w->optimizer);
    arg_s(&a, "--strategy", pb_pred_strategy_name(t->strategy));
    arg(&a, "--gpus", "%.0f", t->devices);
    arg(&a, "--batch", "%.0f", t->batch_global);
    /* the MLP's shape as the single rows give it */
    if (w->layers >= 1 && strncmp(w->workload, "mlp", 3) == 0) {
        arg(&a, "--in", "%.0f", w->in[0]);
        arg(&a, "--layers", "%.0f", w->layers);
        arg(&a, "--classes", "%.0f", w->out[w->layers - 1]);
        if (w->layers > 1) arg(&a, "--hidden", "%.0f", w->out[0]);
    }
    if (w->gpt.on) {
        arg(&a, "--layers", "%.0f", w->gpt.layers);
        arg(&a, "--d-model", "%.0f", w->gpt.d_model);
        arg(&a, "--heads", "%.0f", w->gpt.heads);
        arg(&a, "--seq", "%.0f", w->gpt.seq);
        arg(&a, "--vocab", "%.0f", w->gpt.vocab);
    }
    if (t->strategy == PB_PRED_MP || (t->strategy == PB_PRED_MESH && t->mesh_pp > 1)) {
        arg(&a, "--microbatches", "%.0f", t->microbatches > 0 ? t->microbatches : 1);
        arg_s(&a, "--schedule", t->one_f_one_b ? "1f1b" : "gpipe");
    }
    /* the mesh's ZeRO within the dp group, with its buckets, only when given */
    bool zero = t->strategy == PB_PRED_ZERO || (t->strategy == PB_PRED_MESH && t->zero_stage > 0);
    if (zero) arg(&a, "--zero-stage", "%.0f", t->zero_stage);
    if (t->strategy == PB_PRED_DDP || zero) {
        if (t->no_overlap) arg(&a, "--no-overlap", NULL, 0);
        else arg(&a, "--bucket-mb", "%.17g", t->bucket_mb);
    }
    if (t->strategy == PB_PRED_MESH) {
        arg(&a, "--dp", "%.0f", t->mesh_dp);
        arg(&a, "--tp", "%.0f", t->mesh_tp);
        arg(&a, "--pp", "%.0f", t->mesh_pp > 0 ? t->mesh_pp : 1);
    }
    a.v[a.n] = NULL;
    bool help = false;
    if (pb_config_parse(cfg, a.n, a.v, &help) != PB_OK || pb_model_of(cfg, model) != PB_OK) {
        pb_error_clear();
        return false;
    }
    return true;
}

bool pb_pred_plan_mb(const pb_pred_work *w, const pb_pred_target *t, double *mb)
{
    static pb_model model; /* large for a stack */
    pb_config cfg;
    if (!config_of(w, t, &cfg, &model)) return false;
    pb_memplan_env env = {.host_is_device = strcmp(w->backend, "cpu") == 0, .local_ranks = 1};
    pb_memplan plan;
    pb_memplan_compute(&cfg, &model, &env, &plan);
    *mb = pb_mem_parts_sum(&plan.device_parts[pb_memplan_largest(&plan)]) / 1048576.0;
    return true;
}

/* A tensor's FLOPs per row are the workload's 6 per parameter per token
 * (gpt.c's block FLOPs); what a block counts beyond its parameters' is
 * attention's T x T GEMMs, which split with the heads wherever the block
 * splits. The embeddings' lookup table counts no FLOPs (its GEMM is the
 * head's): a block whose FLOPs fall short of 6 T x its parameters keeps
 * its own figure, whole. */
bool pb_pred_describe_gpt(pb_pred_work *w)
{
    static pb_model model; /* large for a stack */
    pb_config cfg;
    pb_pred_target t = {.strategy = PB_PRED_SINGLE, .devices = 1, .batch_global = 1};
    if (!w->gpt.on || !config_of(w, &t, &cfg, &model)) return false;
    pb_pred_gpt *g = &w->gpt;
    double T = model.seq > 0 ? model.seq : 1;
    g->flops_split = g->flops_whole = g->params_split = g->params_whole = 0;
    for (int b = 0; b < model.n_blocks; b++) {
        const pb_block_desc *d = &model.block[b];
        double split = 0, all = 0;
        for (int i = d->t0; i < d->t1; i++) {
            double n = (double)model.tensor[i].size;
            all += n;
            if (model.tensor[i].tp != PB_TP_REPLICATED) split += n;
        }
        g->params_split += split;
        g->params_whole += all - split;
        double attention = d->flops - 6.0 * T * all;
        double fs = split > 0 ? 6.0 * T * split + (attention > 0 ? attention : 0) : 0;
        g->flops_split += fs;
        g->flops_whole += d->flops - fs;
    }
    /* the blocks, for the strategies that place, bucket or shard by block
     * (ddp, zero, dp, mp); more blocks than the model keeps: none, and
     * predict_one refuses those strategies */
    w->layers = model.n_blocks <= PB_PRED_MAX_LAYERS ? model.n_blocks : 0;
    for (int b = 0; b < w->layers; b++) {
        const pb_block_desc *d = &model.block[b];
        w->in[b] = (double)d->in_elems;
        w->out[b] = (double)d->out_elems;
        w->block_flops[b] = d->flops;
        w->block_params[b] = (double)d->p_len;
    }
    return true;
}
