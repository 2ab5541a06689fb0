/* Workload: a model kind as a plugin (an ops table, like backends and
 * strategies), and named presets of its shape.
 *
 * A workload describes its model (pb_model): the parameter tensors in one
 * flat fp32 buffer, the blocks they belong to (the unit a strategy splits,
 * buckets, shards and times), the FLOPs of each block, the batch's byte
 * sizes, and the activations between blocks. It initialises parameters and
 * fills batches (pure functions of the seed and indices, docs/data.md, so
 * every strategy and device count sees the same global batch and the same
 * initial parameters), and it runs forward and backward of a range of blocks
 * on one device: a stage, whose activations it owns. Strategies see blocks,
 * tensor spans and stages only, never what is inside a block.
 *
 * docs/workloads.md: how to add one. */
#ifndef PB_WORKLOAD_H
#define PB_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../harness/shape.h"
#include "../harness/status.h"
#include "../kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PB_MAX_BLOCKS 256
#define PB_MAX_TENSORS 1024
#define PB_TENSOR_NAME 40
#define PB_SHAPE_STR 64

/* Tensor parallelism (Megatron-LM's): how a tensor is split over the ranks
 * of a tensor-parallel group (docs/workloads.md, "Tensor parallel"). */
typedef enum pb_tp_split {
    PB_TP_REPLICATED = 0, /* every rank holds all of it */
    /* a column-parallel Linear's weight [out, in] and bias [out]: its rows
     * (output features) split, rank r holding the r-th of tp equal parts
     * (of each of tp_parts stacked tensors: QKV's q, k and v) */
    PB_TP_COLUMN,
    /* a row-parallel Linear's weight [out, in]: its columns (input
     * features) split the same way; its bias is replicated */
    PB_TP_ROW,
} pb_tp_split;

/* One parameter tensor: floats [off, off + size) of the flat buffer. */
typedef struct pb_tensor_desc {
    char name[PB_TENSOR_NAME]; /* e.g. "layer0.weight" */
    size_t off, size;
    int block;
    bool decay;     /* weight decay applies to it */
    /* its gradient is a GEMM's output, which can accumulate SGD's momentum
     * in place of storing the gradient (pb_stage_params.acc) */
    bool gemm_grad;
    /* its shape: [rows, size / rows] (PyTorch's: a Linear weight [out, in]),
     * 0 for a vector */
    size_t rows;
    /* its split under tensor parallelism, and for PB_TP_COLUMN how many
     * stacked tensors it is (0 or 1: one; GPT's QKV: 3) */
    pb_tp_split tp;
    int tp_parts;
} pb_tensor_desc;

/* One block: tensors [t0, t1), their floats [p_off, p_off + p_len). Blocks
 * are in order and their ranges tile the buffer: block b + 1 starts where b
 * ends, so any range of blocks is one contiguous span (a stage's slice, a
 * gradient bucket's frontier). */
typedef struct pb_block_desc {
    int t0, t1;
    size_t p_off, p_len;
    /* model FLOPs of one sample through it, forward and backward */
    double flops;
    /* activation elements per sample entering and leaving it: block b's
     * out_elems is block b + 1's in_elems, what one pipeline stage hands the
     * next (and receives back as its gradient). Block 0's in_elems: the
     * batch's inputs on the device (when input_is_act), the last block's
     * out_elems: the model's output, which the loss reads. */
    size_t in_elems, out_elems;
} pb_block_desc;

struct pb_workload_ops;

typedef struct pb_model {
    const struct pb_workload_ops *ops;
    pb_shape shape; /* the shape it was described from */
    int n_blocks;
    pb_block_desc block[PB_MAX_BLOCKS];
    /* what a block is, for messages a person reads ("layer") */
    const char *block_noun;
    int n_tensors;
    pb_tensor_desc tensor[PB_MAX_TENSORS];
    size_t n_params;
    /* The batch, per sample: inputs (input_elems values of input_dtype)
     * and targets (target_elems of target_dtype); dtypes in numpy's
     * notation ("<f4", "<i4"), which --dump writes. */
    size_t input_elems, target_elems;
    char input_dtype[4], target_dtype[4];
    /* inputs are fp32 values the device converts to its activation type
     * (features); false: copied as they are (token ids) */
    bool input_is_act;
    /* floats of the table fill() reads (generated once per seed, e.g. class
     * prototypes), 0 for none */
    size_t data_table;
    /* the widest activation row (sizes device workspaces) */
    size_t max_width;
    /* A tied tensor (GPT's LM head, tied to the token embedding): tensor
     * tie_dst of the last block is a copy of tensor tie_src of block 0 (as
     * Megatron keeps one on the last pipeline stage). Both start equal, and
     * before the optimizer a strategy makes both gradients their sum
     * (pb_replica_tie_grads; mp across its first and last stage), so they
     * stay equal. n_tied: the copy's floats (0: no tie), counted once in
     * the `params` a run reports (pb_model_params). */
    int tie_src, tie_dst;
    size_t n_tied;
    /* samples are sequences of `seq` tokens (0: not a token workload) */
    int seq;
    /* > 1: this is one rank's part of the model under tensor parallelism
     * of degree tp (pb_model_describe_tp): its tensors are the shards their
     * tp split says, laid out in the same order, and its stage sums partial
     * activations through pb_stage_hooks.tp_allreduce. 0 or 1: the whole
     * model. Block FLOPs stay the whole model's. */
    int tp;
    /* with tp > 1, set by the strategy (--sequence-parallel, workloads with
     * a seq only): Megatron's sequence parallelism. Between a row-parallel
     * and the next column-parallel layer the stage keeps 1/tp of the token
     * rows (rank r the r-th contiguous part) and uses the hooks'
     * tp_reduce_scatter / tp_allgather there instead of tp_allreduce.
     * in_elems / out_elems stay the whole widths. */
    bool seq_parallel;
} pb_model;

/* A stage: blocks [b0, b1) of the model on one device, with activation
 * storage for `slots` microbatches of `rows` samples each (slot j: rows
 * [j * rows, (j + 1) * rows) of each buffer; GPipe keeps every microbatch
 * until its backward). Owned by the workload. */
typedef struct pb_stage pb_stage;

typedef struct pb_stage_opts {
    const pb_backend *be;
    pb_device *dev;
    int b0, b1;
    int rows, slots;
    /* the caller binds IN / OUT to buffers of its own (stage_bind) before
     * the stage runs: the stage allocates none for them (dp's device 0,
     * which reads and writes full-batch buffers) */
    bool bind_in, bind_out;
} pb_stage_opts;

/* The stage's activation boundaries, for pb_workload_ops.stage_buf. */
typedef enum pb_stage_buf {
    PB_STAGE_IN = 0, /* block b0's input (the batch's inputs when b0 = 0) */
    PB_STAGE_OUT,    /* block b1-1's output (the model's output when last) */
    PB_STAGE_DOUT,   /* the gradient of one slot's output, backward's start */
} pb_stage_buf;

/* One block's parameters and gradients where a strategy keeps blocks
 * apart (zero: gathered or reduced block by block), each from the block's
 * own p_off. */
typedef struct pb_block_bufs {
    const float *params;
    float *grads;
} pb_block_bufs;

/* The stage's parameters on its device, offsets relative to block b0's
 * p_off (a strategy's buffers: full, a slice, or gathered shards). */
typedef struct pb_stage_params {
    const float *params;  /* fp32 master */
    const void *params_c; /* compute copy in the activation type, NULL: params */
    float *grads;         /* backward overwrites */
    /* beta != 0: the gemm_grad tensors' gradients are accumulated as
     * acc = beta * acc + g (SGD's momentum buffer) instead of stored */
    float *acc;
    float beta;
    /* NULL: the stage's blocks lie contiguously in the buffers above. Else
     * block b (the model's index) is at blocks[b], and params, grads and
     * acc are unused (beta 0, fp32 weights): a strategy that frees blocks
     * between uses (zero stage 3's gathered parameters, stage 2/3's
     * gradients) fills the entry in its before_block hook. Block b's
     * gradients must be there from before_block of block b + 1 in backward
     * on, since a block's backward may write the one below's (the MLP's
     * fused bias gradient). */
    const pb_block_bufs *blocks;
} pb_stage_params;

/* Hooks a strategy passes to forward and backward (any may be NULL). */
typedef struct pb_stage_hooks {
    /* before block b runs, in forward and again in backward: where sharded
     * parameters are gathered */
    pb_status (*before_block)(void *arg, int block, bool backward);
    /* after backward has completed block b's gradients (and every block
     * above it in the stage): where buckets are all-reduced or shards
     * reduce-scattered */
    pb_status (*grads_ready)(void *arg, int block);
    /* tensor parallel (pb_model.tp > 1, required there): sums n activation
     * values at buf over the tensor-parallel ranks, in place. The stage calls
     * it at Megatron's points: after a row-parallel layer's GEMM in forward
     * (g; its bias is added after the sum), and on a column-parallel
     * layer's input gradient in backward (f), each rank's part summed;
     * under sequence parallel only the LayerNorms' weight and bias
     * gradients instead (of the rank's tokens, summed) */
    pb_status (*tp_allreduce)(void *arg, void *buf, size_t n);
    /* sequence parallel (pb_model.seq_parallel): n is the whole buffer's
     * floats, rank r's part its r-th of tp equal parts. tp_reduce_scatter
     * sums `in` (n) over the ranks and writes this rank's part of the sum
     * to `out` (n / tp; disjoint from in, or in place at in + its part);
     * Megatron's row-parallel output in forward, its
     * all-gather's backward. tp_allgather fills buf (n) in place from every
     * rank's part (this rank's already at its place); a column-parallel
     * layer's input in forward, the reduce-scatter's backward. tp_rank: this
     * rank's index in the tensor-parallel group */
    pb_status (*tp_reduce_scatter)(void *arg, const void *in, void *out, size_t n);
    pb_status (*tp_allgather)(void *arg, void *buf, size_t n);
    int tp_rank;
    void *arg;
} pb_stage_hooks;

typedef struct pb_workload_ops {
    const char *kind; /* "mlp" */
    /* it runs on the backend's transformer ops (pb_backend.transformer) */
    bool transformer;
    /* The shape as one string of this kind's dimensions (the CSV's `shape`
     * column, `bench list`): "in=256 hidden=256 layers=3 classes=10" */
    void (*shape_str)(const pb_shape *shape, char *buf, size_t len);
    /* The model of this shape; a usage error for a shape it cannot build. */
    pb_status (*describe)(const pb_shape *shape, pb_model *out);
    void (*init_params)(const pb_model *m, uint64_t seed, float *params);
    /* the seed's table of data_table floats (NULL when data_table is 0) */
    void (*data_table)(const pb_model *m, uint64_t seed, float *table);
    /* Samples [first, first + count) of step `step`, into inputs and
     * targets (count * the per-sample sizes). */
    void (*fill)(const pb_model *m, uint64_t seed, const float *table, int64_t step, int64_t first, int count,
                 void *inputs, void *targets);
    /* The loss of `rows` outputs (the last block's) against targets on the
     * device: adds scale * the sum of per-sample losses to *loss_sum and
     * writes d_out = dL/d(output) * scale. scale = 1 / the global batch, so
     * a split batch's parts sum to its mean. */
    pb_status (*loss)(const pb_model *m, const pb_backend *be, pb_device *dev, int rows, const void *out,
                      const void *targets, float scale, float *loss_sum, void *d_out);

    pb_status (*stage_create)(const pb_model *m, const pb_stage_opts *o, pb_stage **out);
    void (*stage_destroy)(pb_stage *s);
    /* Slot `slot`'s rows of a boundary (DOUT: its one slot) */
    void *(*stage_buf)(pb_stage *s, pb_stage_buf which, int slot);
    /* Reads IN, or writes OUT, at the caller's buffer from now on (slot 0's
     * rows at base, the others after it): the batch read in place, a
     * full-batch buffer; base NULL: the stage's own again. */
    void (*stage_bind)(pb_stage *s, pb_stage_buf which, void *base);
    /* Forward of `rows` samples of a slot through the stage's blocks. */
    pb_status (*forward)(pb_stage *s, const pb_stage_params *p, int slot, int rows, const pb_stage_hooks *h);
    /* Backward from DOUT. d_in: where the gradient of IN is (the stage's
     * own buffer, valid until its next backward) when b0 > 0, else not
     * computed (NULL). */
    pb_status (*backward)(pb_stage *s, const pb_stage_params *p, int slot, int rows, void **d_in,
                          const pb_stage_hooks *h);

    /* The memory plan (harness/memplan.h): bytes a stage's activations take
     * (what stage_create allocates) for `slots` slots of `rows` samples, e
     * bytes an activation element; bound_io: with bind_in and bind_out. */
    double (*stage_bytes)(const pb_model *m, int b0, int b1, double rows, int slots, double e, bool bound_io);
    /* Median ms of one step's GEMMs called alone over `rows` samples (the
     * calibration's reference, pb_backend.gemm_reference), weight gradients
     * with beta dw_beta; reps timed sets. */
    pb_status (*gemm_reference)(const pb_model *m, const pb_backend *be, pb_device *dev, int rows, float dw_beta,
                                int reps, double *ms);
    /* optional (NULL: the workload does not split under tensor
     * parallelism): one rank's part of the model of this shape over tp
     * ranks (the same for every rank; pb_model_tp_local does the tensors
     * from their declared splits, the workload its activations' widths), a
     * usage error for a shape that does not split so. Its describe declares
     * each tensor's tp split either way. */
    pb_status (*describe_tp)(const pb_shape *shape, int tp, pb_model *out);
} pb_workload_ops;

/* A named preset of a workload's shape. */
typedef struct pb_workload {
    const char *name;
    const char *description;
    pb_shape shape;
    const pb_workload_ops *ops;
} pb_workload;

extern const pb_workload_ops pb_workload_mlp;
extern const pb_workload_ops pb_workload_gpt;

/* The model of `shape` by `ops`, checked against the rules above (blocks
 * tile the buffer, tensors lie in their block): PB_ERR_INTERNAL names the
 * broken one. */
pb_status pb_model_describe(const pb_workload_ops *ops, const pb_shape *shape, pb_model *out);

/* The same for one rank's part under tensor parallelism of degree tp
 * (ops->describe_tp): a usage error where the workload does not split. */
pb_status pb_model_describe_tp(const pb_workload_ops *ops, const pb_shape *shape, int tp, pb_model *out);
/* The tensors of one rank's part of `full` over tp ranks, by their splits:
 * each tensor's shard in the same order, the blocks tiling the smaller
 * buffer, local->tp = tp; activation widths (block in/out) are left to the
 * workload. PB_ERR_INTERNAL when a split does not divide. */
pb_status pb_model_tp_local(const pb_model *full, int tp, pb_model *local);
/* Rank `rank`'s shard of the whole model's parameters (full_buf, full's
 * layout) into local_buf (local's); and back, writing the rank's shard
 * (its replicated tensors too) into the whole buffer. */
void pb_model_tp_shard(const pb_model *full, const pb_model *local, int rank, const float *full_buf,
                       float *local_buf);
void pb_model_tp_unshard(const pb_model *full, const pb_model *local, int rank, const float *local_buf,
                         float *full_buf);

/* Model FLOPs of one training step over `rows` samples, blocks [b0, b1). */
double pb_model_flops(const pb_model *m, int b0, int b1, double rows);
/* Bytes of one sample's inputs and targets in the host batch. */
size_t pb_model_input_bytes(const pb_model *m);
size_t pb_model_target_bytes(const pb_model *m);
/* The model's parameters, a tied copy counted once */
size_t pb_model_params(const pb_model *m);
/* The floats of blocks [b0, b1). */
size_t pb_model_span(const pb_model *m, int b0, int b1);

#ifdef __cplusplus
}
#endif
#endif /* PB_WORKLOAD_H */
