/* Workload: a model kind (layer layout, parameter init, data) and named
 * presets of its shape. Data and init are pure functions of the seed and
 * indices (docs/data.md), so every strategy and device count sees the same
 * global batch and the same initial parameters. */
#ifndef PB_WORKLOAD_H
#define PB_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "../harness/shape.h"
#include "../harness/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Layer l of the flat parameter buffer: W [out, in] at w_off, b [out] at
 * b_off (offsets in floats). Layer l's W and b are contiguous, layers in
 * order, so gradient buckets in reverse layer order are contiguous ranges. */
typedef struct pb_layer_desc {
    int in, out;
    int relu; /* ReLU after this layer (all but the last) */
    size_t w_off, b_off;
} pb_layer_desc;

#define PB_MAX_LAYERS 256

typedef struct pb_layout {
    int n_layers;
    pb_layer_desc layer[PB_MAX_LAYERS];
    size_t n_params;
    int in, classes;
} pb_layout;

typedef struct pb_workload {
    const char *name;
    const char *description;
    pb_shape shape; /* the preset */
} pb_workload;

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

#ifdef __cplusplus
}
#endif
#endif /* PB_WORKLOAD_H */
