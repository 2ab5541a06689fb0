/* The ops a transformer workload needs (transformer_check.h). */
#include "transformer_check.h"

const char *pb_transformer_missing(const pb_backend *be, pb_precision precision)
{
    const pb_transformer_ops *tr = be->transformer;
    if (!tr) return "them";
    /* every op the GPT stage and its loss call: the table's slots, and the
     * backend's GEMM with epilogues (its linear maps, GELU included);
     * residual_layernorm_fwd is optional (the stage falls back to the two
     * ops) */
    const struct {
        const char *name;
        bool present;
    } need[] = {
        {"encoder_fwd", tr->encoder_fwd != NULL},
        {"encoder_bwd", tr->encoder_bwd != NULL},
        {"layernorm_fwd", tr->layernorm_fwd != NULL},
        {"layernorm_bwd", tr->layernorm_bwd != NULL},
        {"gemm_fwd", be->gemm_fwd != NULL},
        {"gemm_bwd", be->gemm_bwd != NULL},
        {"residual_fwd", tr->residual_fwd != NULL},
        {"attention_fwd", tr->attention_fwd != NULL},
        {"attention_bwd", tr->attention_bwd != NULL},
        {"attention_scratch", tr->attention_scratch != NULL},
        {"classifier", tr->classifier != NULL},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!need[i].present) return need[i].name;
    if (precision == PB_BF16 && !tr->bf16_act) return "bf16 activations";
    return NULL;
}
