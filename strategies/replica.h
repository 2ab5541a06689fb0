/* A model replica (or a stage of one) on one device: contiguous layers
 * [l0, l1) with their parameters, gradients, optimizer state and activation
 * buffers for up to max_m rows. Strategies compose replicas: `single` has one
 * over all layers, `dp`/`ddp` one per device, `mp` one stage per device. */
#ifndef PB_REPLICA_H
#define PB_REPLICA_H

#include "../harness/config.h"
#include "../kernels/backend.h"
#include "../workloads/workload.h"

typedef struct pb_replica {
    const pb_backend *be;
    pb_device *dev;
    const pb_config *cfg;
    const pb_layout *layout;
    int l0, l1;
    int max_m;
    size_t p_off, p_len; /* this replica's slice of the flat parameter buffer */

    float *params, *grads, *m, *v; /* p_len fp32 values each, on the device */
    void *params_c;                /* compute copy (bf16), or NULL: use params */
    void *act[PB_MAX_LAYERS + 1];  /* act[0]: input; act[i+1]: output of layer l0+i */
    void *aux[PB_MAX_LAYERS];
    void *dz[2];      /* ping-pong gradient buffers, widest layer */
    float *db_spare;  /* bias grad of the layer below a stage boundary, discarded */
    int32_t *labels;  /* max_m, last stage only */
    float *loss_sum;  /* device scalar */
    int opt_steps;
    /* the weight-gradient GEMMs' beta: SGD's momentum when they accumulate
     * it into m (pb_replica_fuse_momentum), 0 when they store gradients */
    float wgrad_beta;
} pb_replica;

/* Called after layer l's gradients are complete during backward (ddp starts
 * all-reducing a bucket here). */
typedef pb_status (*pb_grad_ready_fn)(void *arg, int layer);

pb_status pb_replica_init(pb_replica *r, const pb_backend *be, pb_device *dev,
                          const pb_config *cfg, const pb_layout *layout, int l0, int l1, int max_m,
                          const float *init_params_host);
/* As pb_replica_init; without optimizer_state, m and v are not allocated (a
 * replica that only runs forward/backward, e.g. dp's devices 1..N-1, whose
 * parameters are overwritten from device 0 every step): never optimize it. */
pb_status pb_replica_init_opt(pb_replica *r, const pb_backend *be, pb_device *dev,
                              const pb_config *cfg, const pb_layout *layout, int l0, int l1,
                              int max_m, const float *init_params_host, bool optimizer_state);
void pb_replica_destroy(pb_replica *r);

/* Views of layer l's slices (l in [l0, l1)). */
float *pb_replica_weight(const pb_replica *r, int l);
float *pb_replica_bias(const pb_replica *r, int l);
float *pb_replica_weight_grad(const pb_replica *r, int l);
float *pb_replica_bias_grad(const pb_replica *r, int l);

/* Forward of m rows from act[0] through the replica's layers. */
pb_status pb_replica_forward(pb_replica *r, int m);
/* Loss of the last stage's output against labels (already on the device);
 * writes dL/dlogits into dz[0] and adds scale * sum of losses to loss_sum. */
pb_status pb_replica_loss(pb_replica *r, int m, float scale);
/* The top layer's dL/d(output pre-activation). Backward writes the input's
 * gradient (masked by the previous layer's ReLU) into *dx_out when the
 * replica does not start at layer 0. */
void *pb_replica_top_grad(pb_replica *r);
pb_status pb_replica_backward(pb_replica *r, int m, void **dx_out, pb_grad_ready_fn ready,
                              void *ready_arg);
pb_status pb_replica_optimize(pb_replica *r);
/* For a replica whose gradients nobody else reads (single: no reduction
 * between backward and the optimizer), with SGD: backward's weight-gradient
 * GEMM accumulates into the momentum buffer (m = momentum * m + dW, its beta
 * doing the scaling), and the optimizer only applies m. A step then moves
 * 8 bytes a weight less (the gradient is neither written nor read back, and
 * OpenBLAS's clearing pass over it goes). Bias gradients stay as they are.
 * Does nothing for AdamW or a replica without optimizer state. */
void pb_replica_fuse_momentum(pb_replica *r);
/* The weight-gradient GEMMs' beta in a replica that pb_replica_fuse_momentum
 * would set up for cfg on be (the momentum, or 0); the GEMM-alone reference
 * of a `single` run calls them the same way. */
float pb_momentum_wgrad_beta(const pb_config *cfg, const pb_backend *be);
/* Optimizer in backward: count the step once, then update each layer on the
 * backend's side stream as soon as its gradients are complete (backward has
 * already used its weights), overlapping the layers still to go back through. */
void pb_replica_next_opt_step(pb_replica *r);
pb_status pb_replica_optimize_layer_side(pb_replica *r, int l);
/* Copies the replica's parameter slice to host_params (full-size buffer). */
pb_status pb_replica_download_params(pb_replica *r, float *host_params);

#endif /* PB_REPLICA_H */
