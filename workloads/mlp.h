/* The MLP workload's own view of its model (tests and the workload's code:
 * the rest of parbench sees it through pb_workload_mlp's ops, workload.h).
 * Linear layers with ReLU between them, softmax cross-entropy over
 * `classes`; layer l is block l. */
#ifndef PB_MLP_H
#define PB_MLP_H

#include "workload.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Layer l of the flat parameter buffer: W [out, in] at w_off, b [out] at
 * b_off (offsets in floats). Layer l's W and b are contiguous, layers in
 * order. */
typedef struct pb_layer_desc {
    int in, out;
    int relu; /* ReLU after this layer (all but the last) */
    size_t w_off, b_off;
} pb_layer_desc;

#define PB_MAX_LAYERS PB_MAX_BLOCKS

typedef struct pb_layout {
    int n_layers;
    pb_layer_desc layer[PB_MAX_LAYERS];
    size_t n_params;
    int in, classes;
} pb_layout;

/* Layout of an MLP of this shape. PB_ERR_USAGE when too many layers. */
pb_status pb_mlp_layout(const pb_shape *shape, pb_layout *out);

/* Model FLOPs of one training step over a batch: 6 * batch * sum(in*out). */
double pb_mlp_step_flops(const pb_layout *layout, int batch);

/* nn.Linear's default init, from the counter-based generator (docs/data.md). */
void pb_mlp_init_params(const pb_layout *layout, uint64_t seed, float *params);

/* Samples [first, first+count) of step `step`: x [count, in], labels [count]. */
void pb_data_fill(const pb_layout *layout, uint64_t seed, int64_t step, int64_t first,
                  int count, const float *prototypes, float *x, int32_t *labels);

/* The class prototypes [classes, in] that make labels learnable. */
void pb_data_prototypes(const pb_layout *layout, uint64_t seed, float *out);

/* The same, by the two numbers they read (the workload's ops). */
void pb_mlp_fill(int in, int classes, uint64_t seed, int64_t step, int64_t first, int count,
                 const float *prototypes, float *x, int32_t *labels);
void pb_mlp_prototypes(int in, int classes, uint64_t seed, float *out);

/* The stage ops (mlp_stage.c) */
pb_status pb_mlp_stage_create(const pb_model *m, const pb_stage_opts *o, pb_stage **out);
void pb_mlp_stage_destroy(pb_stage *s);
void *pb_mlp_stage_buf(pb_stage *s, pb_stage_buf which, int slot);
void pb_mlp_stage_bind(pb_stage *s, pb_stage_buf which, void *base);
pb_status pb_mlp_forward(pb_stage *s, const pb_stage_params *p, int slot, int rows, const pb_stage_hooks *h);
pb_status pb_mlp_backward(pb_stage *s, const pb_stage_params *p, int slot, int rows, void **d_in,
                          const pb_stage_hooks *h);
double pb_mlp_stage_bytes(const pb_model *m, int b0, int b1, double rows, int slots, double e, bool bound_io);

#ifdef __cplusplus
}
#endif
#endif /* PB_MLP_H */
