/* The GPT workload's own view of its model (tests and the workload's code;
 * the rest of parbench sees it through pb_workload_gpt's ops, workload.h).
 *
 * GPT-2: token + learned position embeddings (block 0), `layers`
 * pre-LayerNorm transformer blocks (blocks 1..L: causal multi-head
 * self-attention from a fused QKV projection, residual; MLP 4d with GELU
 * (tanh), residual), final LayerNorm and the LM head tied to the token
 * embedding (block L+1), cross-entropy over the vocabulary padded to a
 * multiple of 128 (the padded logits never count). docs/workloads.md. */
#ifndef PB_GPT_H
#define PB_GPT_H

#include "workload.h"

#ifdef __cplusplus
extern "C" {
#endif

/* successors of each token in the synthetic data's transition table */
#define PB_GPT_FANOUT 4
/* tensors of one transformer block */
#define PB_GPT_LAYER_TENSORS 12

/* The tensors of transformer layer l start at tensor pb_gpt_layer_t0(l);
 * their order within it: */
enum {
    PB_GPT_LN1_W = 0, PB_GPT_LN1_B, PB_GPT_QKV_W, PB_GPT_QKV_B, PB_GPT_PROJ_W, PB_GPT_PROJ_B,
    PB_GPT_LN2_W, PB_GPT_LN2_B, PB_GPT_FC_W, PB_GPT_FC_B, PB_GPT_FCPROJ_W, PB_GPT_FCPROJ_B,
};
/* block 0: wte [Vp, C], wpe [T, C]; the last block: ln_f.weight, ln_f.bias,
 * lm_head.weight [Vp, C] (the copy of wte) */
enum { PB_GPT_WTE = 0, PB_GPT_WPE = 1 };
static inline int pb_gpt_layer_t0(int l) { return 2 + PB_GPT_LAYER_TENSORS * l; }

/* The vocabulary padded to a multiple of 128 */
static inline int pb_gpt_padded_vocab(int v) { return (v + 127) / 128 * 128; }

/* The data's transition table: PB_GPT_FANOUT successors of each of the
 * `vocab` tokens, as floats (exact integers) */
void pb_gpt_table(int vocab, uint64_t seed, float *table);
/* Sequences [first, first + count) of step `step`: seq + 1 tokens walked
 * through the table; inputs the first seq, targets the last seq. */
void pb_gpt_fill(int vocab, int seq, uint64_t seed, const float *table, int64_t step, int64_t first, int count,
                 int32_t *inputs, int32_t *targets);
/* N(0, 1) of (key, j): Box-Muller from two uniforms (docs/data.md) */
float pb_gpt_normal(uint64_t key, uint64_t j);

/* The stage ops (gpt_stage.c) */
pb_status pb_gpt_stage_create(const pb_model *m, const pb_stage_opts *o, pb_stage **out);
void pb_gpt_stage_destroy(pb_stage *s);
void *pb_gpt_stage_buf(pb_stage *s, pb_stage_buf which, int slot);
void pb_gpt_stage_bind(pb_stage *s, pb_stage_buf which, void *base);
pb_status pb_gpt_forward(pb_stage *s, const pb_stage_params *p, int slot, int rows, const pb_stage_hooks *h);
pb_status pb_gpt_backward(pb_stage *s, const pb_stage_params *p, int slot, int rows, void **d_in,
                          const pb_stage_hooks *h);
double pb_gpt_stage_bytes(const pb_model *m, int b0, int b1, double rows, int slots, double e, bool bound_io);

#ifdef __cplusplus
}
#endif
#endif /* PB_GPT_H */
