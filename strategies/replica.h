/* A replica of the model, or a stage of one, on one device: blocks [b0, b1)
 * with their parameters, gradients and optimizer state (a contiguous span
 * of the flat buffer), the workload's stage for the activations of `slots`
 * microbatches of `rows` rows, a targets buffer and the loss. Strategies
 * compose replicas: `single` has one over all blocks, `dp`/`ddp` one per
 * device, `mp` one stage per device. It knows blocks and tensor spans, not
 * what a block computes (workloads/workload.h). */
#ifndef PB_REPLICA_H
#define PB_REPLICA_H

#include "../harness/config.h"
#include "../kernels/backend.h"
#include "../workloads/workload.h"

typedef struct pb_replica {
    const pb_backend *be;
    pb_device *dev;
    const pb_config *cfg;
    const pb_model *model;
    int b0, b1;
    int rows, slots;
    size_t p_off, p_len; /* this replica's span of the flat parameter buffer */

    float *params, *grads, *m, *v; /* p_len fp32 values each, on the device */
    void *params_c;                /* compute copy (bf16), or NULL: use params */
    pb_stage *stage;               /* the workload's: activations */
    void *targets;                 /* rows * slots targets; NULL where no loss is taken here */
    void *own_targets;             /* as allocated (targets may point at the loader's) */
    float *loss_sum;               /* device scalar */
    int opt_steps;
    /* the weight-gradient GEMMs' beta: SGD's momentum when they accumulate
     * it into m (pb_replica_fuse_momentum), 0 when they store gradients */
    float wgrad_beta;
    /* optional, set by a strategy after init: called before each block runs,
     * in forward and in backward (where sharded parameters are gathered) */
    pb_status (*before_block)(void *arg, int block, bool backward);
    void *before_arg;
    /* tensor parallel, set by the strategy after init (model->tp > 1): the
     * stage's sum across ranks (pb_stage_hooks.tp_allreduce) */
    pb_status (*tp_allreduce)(void *arg, void *buf, size_t n);
    /* and with model->seq_parallel its reduce-scatter, all-gather and rank
     * (pb_stage_hooks' of the same names) */
    pb_status (*tp_reduce_scatter)(void *arg, const void *in, void *out, size_t n);
    pb_status (*tp_allgather)(void *arg, void *buf, size_t n);
    int tp_rank;
    void *tp_arg;
    /* optional, set by a strategy after init: the blocks' own buffers
     * (pb_stage_params.blocks), for a replica without params and grads
     * (pb_replica_init_stage) */
    const pb_block_bufs *blocks;
} pb_replica;

/* Called after block b's gradients are complete during backward (ddp starts
 * all-reducing a bucket here). */
typedef pb_status (*pb_grad_ready_fn)(void *arg, int block);

/* optimizer_state false: m and v are not allocated (a replica that only
 * runs forward/backward, e.g. dp's devices 1..N-1, whose parameters are
 * overwritten from device 0 every step): never optimize it. targets false:
 * no targets buffer (the loss is taken elsewhere). */
pb_status pb_replica_init(pb_replica *r, const pb_backend *be, pb_device *dev, const pb_config *cfg,
                          const pb_model *model, int b0, int b1, int rows, int slots, const float *init_params_host,
                          bool optimizer_state, bool targets);
/* As pb_replica_init, its stage's input and output bound by the caller
 * (pb_stage_opts.bind_in, bind_out). */
pb_status pb_replica_init_bound(pb_replica *r, const pb_backend *be, pb_device *dev, const pb_config *cfg,
                                const pb_model *model, int b0, int b1, int rows, int slots,
                                const float *init_params_host, bool optimizer_state, bool targets, bool bind_io);
/* A replica of the stage, targets and loss only: no parameters,
 * gradients or optimizer state, which the strategy keeps block by block
 * and hands in through r->blocks (zero). Never optimize it. */
pb_status pb_replica_init_stage(pb_replica *r, const pb_backend *be, pb_device *dev, const pb_config *cfg,
                                const pb_model *model, int rows);
void pb_replica_destroy(pb_replica *r);

/* A boundary's rows of a slot (workload.h, pb_stage_buf), and binding one
 * to a caller's buffer (NULL: the stage's own again). */
void *pb_replica_buf(const pb_replica *r, pb_stage_buf which, int slot);
void pb_replica_bind(pb_replica *r, pb_stage_buf which, void *base);
/* A slot's rows of the targets */
void *pb_replica_targets(const pb_replica *r, int slot);

/* Forward of `rows` rows of a slot from the stage's input. */
pb_status pb_replica_forward(pb_replica *r, int slot, int rows);
/* The loss of a slot's output against its targets (already on the device):
 * writes dL/d(output) into the DOUT buffer and adds scale * sum of losses to
 * loss_sum. */
pb_status pb_replica_loss(pb_replica *r, int slot, int rows, float scale);
/* Backward from DOUT into grads (NULL: the replica's own), ready after each
 * block; *d_in (when d_in) the gradient of the stage's input when it does
 * not start at block 0. */
pb_status pb_replica_backward(pb_replica *r, int slot, int rows, float *grads, void **d_in, pb_grad_ready_fn ready,
                              void *ready_arg);
pb_status pb_replica_optimize(pb_replica *r);
/* A tied tensor's two gradients (pb_model.tie_src, tie_dst) made their sum,
 * in a replica that holds both (the first and the last block); nothing
 * otherwise. Before the optimizer, after any reduction of gradients (the
 * sum commutes with it). */
pb_status pb_replica_tie_grads(pb_replica *r);
/* The tied tensor's gradient in this replica: the source's (first == true)
 * or the copy's, NULL when the replica does not hold it. */
float *pb_replica_tied_grad(const pb_replica *r, bool first);
/* For a replica whose gradients nobody else reads (single: no reduction
 * between backward and the optimizer), with SGD: backward's GEMM gradients
 * (the workload's gemm_grad tensors) accumulate into the momentum buffer
 * (m = momentum * m + dW, its beta doing the scaling), and the optimizer
 * only applies m. A step then moves 8 bytes a weight less (the gradient is
 * neither written nor read back, and OpenBLAS's clearing pass over it
 * goes). Other gradients stay as they are. Does nothing for AdamW or a
 * replica without optimizer state. */
void pb_replica_fuse_momentum(pb_replica *r);
/* The weight-gradient GEMMs' beta in a replica that pb_replica_fuse_momentum
 * would set up for cfg on be (the momentum, or 0); the GEMM-alone reference
 * of a `single` run calls them the same way. */
float pb_momentum_wgrad_beta(const pb_config *cfg, const pb_backend *be);
/* Optimizer in backward: count the step once, then update each block on the
 * backend's side stream as soon as its gradients are complete (backward has
 * already used its weights), overlapping the blocks still to go back through. */
void pb_replica_next_opt_step(pb_replica *r);
pb_status pb_replica_optimize_block_side(pb_replica *r, int b);
/* Copies the replica's parameter span to host_params (full-size buffer). */
pb_status pb_replica_download_params(pb_replica *r, float *host_params);

#endif /* PB_REPLICA_H */
