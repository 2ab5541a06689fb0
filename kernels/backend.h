/* Backend: one compute device as an ops table (memory, copies, the GEMM
 * with epilogues, the loss, the optimizers, timing marks, and optionally
 * the other transformer ops).
 *
 * `cpu` (CBLAS + C loops) always builds; `cuda` (cuBLASLt + CUDA kernels)
 * builds when nvcc is found, otherwise its stub reports "built without CUDA".
 * All compute calls are enqueued on the device's stream; on the CPU they run
 * synchronously. Parameters, gradients and optimizer state are fp32; the
 * activation storage type follows the precision (bf16 on cuda --precision
 * bf16, fp32 otherwise), so activation buffers are sized with act_bytes(). */
#ifndef PB_BACKEND_H
#define PB_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../harness/shape.h"
#include "../harness/status.h"
#include "p2p.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pb_device pb_device; /* opaque, one per backend */
typedef struct pb_mark pb_mark;     /* a timestamp on the device's stream */

/* The GEMM with epilogues that every workload's linear maps run (the MLP's
 * layers, the GPT's projections and LM head): one op pair, so that a
 * workload never needs a backend op of its own for a Linear layer, and the
 * fusions cuBLASLt offers (bias, activation, bias gradient, the derivative
 * of the layer below's activation) are named once, here.
 *
 * Layout: x [m, k] row-major, w [n, k] row-major (PyTorch's nn.Linear),
 * bias [n], y [m, n]: y = act(x w^T + bias). Activations (x, y, pre, dy, dx)
 * are in the activation type (act_bytes), w is the compute copy of the
 * weights (the activation type; fp32 on the cpu), bias and every parameter
 * gradient fp32. */
typedef enum pb_epilogue {
    PB_EPI_NONE = 0,  /* y = x w^T (the GPT's tied LM head); bias unused */
    PB_EPI_BIAS,      /* y = x w^T + bias */
    PB_EPI_RELU_BIAS, /* y = relu(x w^T + bias): the MLP's hidden layers */
    PB_EPI_GELU_BIAS, /* pre = x w^T + bias, y = gelu(pre) (tanh form, gelu.h):
                       * the GPT's fc; pre is saved for the backward's
                       * derivative (cuBLASLt's GELU_AUX_BIAS writes it as
                       * its aux output) */
} pb_epilogue;

typedef struct pb_gemm {
    int m, n, k;
    const void *x;     /* [m, k] */
    const void *w;     /* [n, k] */
    const float *bias; /* [n], required by the _BIAS epilogues */
    void *y;           /* [m, n], overwritten */
    /* [m, n] GELU_BIAS's pre-activation, overwritten (NULL otherwise). A
     * ReLU needs no such buffer: its backward reads the stored output
     * (y > 0 <=> pre > 0), which is exact in every precision and measured
     * faster on an H200 than cuBLASLt's 1-bit mask (docs/gpu.md). */
    void *pre;
    pb_epilogue epilogue;
} pb_gemm;

/* The derivative of the activation of the layer BELOW (the one that made
 * x), applied to dx in the same call: dx becomes that layer's
 * dL/d(pre-activation), and dx_db its bias gradient, while dx is still hot
 * (cuBLASLt's DGELU_BGRAD epilogue; for ReLU one kernel over dx reading
 * x > 0, since cuBLASLt's DRELU_BGRAD needs a RELU_AUX bit mask; on the CPU
 * a pass over dx in cache). The layer below's own gemm_bwd then runs with
 * db NULL. */
typedef enum pb_dact {
    PB_DACT_NONE = 0, /* x is not an activation's output (an input, a LayerNorm's) */
    PB_DACT_RELU,     /* x = relu(z) of the layer below: dx masked by x > 0 */
    PB_DACT_GELU,     /* x = gelu(x_pre): dx *= gelu'(x_pre) */
} pb_dact;

/* Backward of pb_gemm given dy = dL/d(y's pre-activation) [m, n] (the
 * caller's own activation derivative already applied: the layer above's
 * dx_act, or the loss's gradient at the top). */
typedef struct pb_gemm_grad {
    int m, n, k;
    const void *dy; /* [m, n] */
    const void *x;  /* [m, k] the forward's input */
    const void *w;  /* [n, k] */
    /* [n, k] fp32: dw = dy^T x + dw_beta * dw. 0: overwritten (the MLP); 1:
     * accumulated (the GPT, whose backward zeroes its gradients once and
     * adds, as llm.c's); SGD's momentum mu (the MLP's layers and the GPT's
     * four weights per block, under single): dw pointing at the momentum
     * buffer leaves mu*m + g there, so the gradient is never stored or read
     * back (see pb_opt_args.momentum_ready) */
    float *dw;
    float dw_beta;
    /* [n] fp32 or NULL (no bias, or already produced by the layer above's
     * dx_db): the column sums of dy, OVERWRITTEN. Always overwritten
     * because cuBLASLt's BGRAD epilogues write, never add, and no caller
     * needs more: each bias gradient is produced once per backward. */
    float *db;
    /* [m, k] or NULL to skip (the first layer, nothing upstream wants it):
     * dx = dact(dy w + dx_beta * dx); dx_beta 0 overwrites, 1 accumulates
     * (a tensor with two consumers); the derivative applies to the sum
     * (cuda fuses DGELU_BGRAD at dx_beta 0 only: cuBLASLt does not document
     * what its derivative does to a beta term) */
    void *dx;
    float dx_beta;
    pb_dact dx_act;
    /* [m, k] PB_DACT_GELU: the layer below's saved pre (its pb_gemm.pre) */
    const void *x_pre;
    /* [k] fp32 or NULL (with an activation only): the layer below's bias
     * gradient, the column sums of the final dx, OVERWRITTEN like db */
    float *dx_db;
} pb_gemm_grad;

typedef struct pb_opt_args {
    pb_optimizer kind;
    size_t n;
    float *params;        /* fp32 master */
    const float *grads;
    float *m;             /* SGD momentum buffer / AdamW first moment */
    float *v;             /* AdamW second moment (NULL for SGD) */
    void *params_compute; /* refreshed compute copy, NULL when same as params */
    float lr, momentum, weight_decay, beta1, beta2, eps;
    int step;             /* 1-based optimizer step (AdamW bias correction) */
    /* SGD only: m already holds mu*m + g (the weight-gradient GEMM put it
     * there with dw_beta = momentum); grads is not read */
    bool momentum_ready;
} pb_opt_args;

/* The transformer ops a GPT workload runs (workloads/gpt_stage.c) besides
 * the GEMMs (gemm_fwd / gemm_bwd below), fp32 activations, row-major: N =
 * B*T token rows of C channels. Every backward ACCUMULATES (+=) into the
 * gradients it writes, parameters' and inputs' alike (the caller zeroes
 * them), as llm.c's do. An optional table: NULL in a backend that does not
 * have them yet (the run refuses a GPT workload there). */
typedef struct pb_transformer_ops {
    /* out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]; backward scatters dout */
    pb_status (*encoder_fwd)(pb_device *dev, float *out, const int32_t *tokens, const float *wte, const float *wpe,
                             int B, int T, int C);
    pb_status (*encoder_bwd)(pb_device *dev, float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                             int B, int T, int C);
    /* PyTorch's LayerNorm (eps 1e-5, biased variance); saves mean, rstd [N] */
    pb_status (*layernorm_fwd)(pb_device *dev, float *out, float *mean, float *rstd, const float *x, const float *w,
                               const float *b, int N, int C);
    pb_status (*layernorm_bwd)(pb_device *dev, float *dx, float *dw, float *db, const float *dout, const float *x,
                               const float *w, const float *mean, const float *rstd, int N, int C);
    /* out = a + b over n values (out may alias either) */
    pb_status (*residual_fwd)(pb_device *dev, float *out, const float *a, const float *b, size_t n);
    /* causal self-attention from fused qkv [B,T,3C] into out [B,T,C], NH
     * heads; att [B,NH,T,T] the saved probabilities; backward accumulates
     * into dqkv, with attention_scratch(T) floats of scratch */
    pb_status (*attention_fwd)(pb_device *dev, float *out, float *att, const float *qkv, int B, int T, int C,
                               int NH);
    pb_status (*attention_bwd)(pb_device *dev, float *dqkv, float *scratch, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int NH);
    size_t (*attention_scratch)(int T);
    /* the fused classifier over logits [N,Vp] of which the first V count:
     * adds scale * sum of the rows' cross-entropy to *loss_sum and writes
     * dlogits = scale * (softmax - onehot) (0 in the padding) without
     * storing the softmax; dlogits may be logits */
    pb_status (*classifier)(pb_device *dev, float *dlogits, const float *logits, const int32_t *targets, int N,
                            int V, int Vp, float scale, float *loss_sum);
    /* optional (NULL: residual_fwd then layernorm_fwd): res = a + b (res
     * may alias a or b), then layernorm_fwd(out, mean, rstd, res, w, bias)
     * in one pass over the residual stream */
    pb_status (*residual_layernorm_fwd)(pb_device *dev, float *res, float *out, float *mean, float *rstd,
                                        const float *a, const float *b, const float *w, const float *bias, int N,
                                        int C);
    /* optional (NULL: gemm_fwd, then residual_fwd): y = x W^T + bias + res
     * for a pb_gemm with the PB_EPI_BIAS epilogue (res [m, n], not y), the
     * residual added as the GEMM writes y, so the stream is not read and
     * written again (the CPU's: y prefilled with res + bias, the GEMM with
     * beta 1, which it needed for the bias anyway) */
    pb_status (*gemm_residual_fwd)(pb_device *dev, const pb_gemm *g, const float *res);
    /* the ops, and the backend's gemm_fwd / gemm_bwd that a transformer
     * workload runs beside them, take activations in bf16 storage where
     * the device's precision is bf16; false: fp32 activations only, and a
     * bf16 run of a transformer workload is refused
     * (workloads/transformer_check.h) */
    bool bf16_act;
    /* optional (NULL: a GPT's GEMM-alone reference has its weight GEMMs
     * only): the median ms over reps of attention's own GEMMs, called as
     * attention_fwd and attention_bwd call them with nothing between, for
     * `layers` layers of B sequences (all forwards, then all backwards) */
    pb_status (*attention_gemms_ms)(pb_device *dev, int layers, int B, int T, int C, int NH, int reps, double *ms);
} pb_transformer_ops;

typedef struct pb_device_info {
    char name[128];
    char driver[32];
    char runtime[32];
    char blas[64];
    char blas_version[64];
    char nccl[32]; /* NCCL loaded at run time (cuda), "" otherwise */
    /* cuda: the PCIe link's width and the SM clock against their maxima,
     * "below" where one is under it (the gpu_check column) */
    char gpu_check[192];
    double total_mem_mb;
} pb_device_info;

typedef struct pb_backend {
    const char *name;
    const char *description;
    /* Device memory is host memory (the CPU): a strategy may read the
     * loader's buffers in place instead of copying them. */
    bool host_is_device;
    /* The devices are GPUs, each with its own driver, runtime and libraries
     * (the row records them; calibration always runs, a node's GPUs are
     * counted, ranks are not bound to a core). False: the host's own cores
     * compute (the cpu backend), so the BLAS, the loader and the devices'
     * threads share them. */
    bool is_gpu;
    /* SGD's momentum is cheaper accumulated by the weight-gradient GEMM
     * (dw_beta) than read back from a stored gradient: true on the CPU, where
     * OpenBLAS clears a beta-0 output in a pass of its own; false on cuda,
     * where an H100 ran mlp-l bf16 slower that way (docs/gpu.md) */
    bool momentum_in_wgrad;

    /* optional (NULL: no peer links, the CPU): the driver's peer-access
     * facts and switch for dp and mp (p2p.h) */
    const pb_p2p_driver *peer;

    /* Usable devices; 0 with a reason in why when none. Never fails hard. */
    int (*device_count)(char *why, size_t why_len);
    pb_status (*open)(const pb_device_opts *opts, int ordinal, pb_device **dev);
    void (*close)(pb_device *dev);
    /* dev NULL: the first device's facts without opening it (optional:
     * NULL in a stub) */
    pb_status (*info)(pb_device *dev, pb_device_info *out);

    /* memory; sizes in bytes. alloc zero-fills. */
    size_t (*act_bytes)(const pb_device *dev, size_t elems);
    pb_status (*alloc)(pb_device *dev, size_t bytes, void **ptr);
    void (*free)(pb_device *dev, void *ptr);
    /* pinned host memory; dev may be NULL (the loader allocates before any
     * device is open) */
    pb_status (*host_alloc)(pb_device *dev, size_t bytes, void **ptr);
    void (*host_free)(pb_device *dev, void *ptr);
    pb_status (*zero)(pb_device *dev, void *ptr, size_t bytes);
    pb_status (*upload)(pb_device *dev, void *dst, const void *src, size_t bytes);
    pb_status (*download)(pb_device *dev, void *dst, const void *src, size_t bytes);
    /* device to device on the compute stream */
    pb_status (*copy)(pb_device *dev, void *dst, const void *src, size_t bytes);
    /* From another device of the same backend (stage to stage, replica to
     * replica), on dst_dev's stream: before the work enqueued later on
     * dst_dev, and with no ordering against src_dev's stream of its own.
     * The caller orders it where mark_wait exists: a mark recorded on
     * src_dev when the data is ready, waited for by dst_dev first, and a
     * mark recorded on dst_dev after it that src_dev waits for before it
     * overwrites the source (comm_local does both, per message). Both
     * devices may be the same physical device (--device-map 0,0). */
    pb_status (*copy_peer)(pb_device *dst_dev, void *dst, pb_device *src_dev, const void *src, size_t bytes);
    /* Host (pinned) to device on a separate copy stream, overlapping the
     * compute stream's work; prefetch_wait makes the compute stream wait for
     * every prefetch issued so far. The source must stay unchanged until then.
     * The CPU has no copy engine: its prefetch is a synchronous copy (and
     * strategies there read the loader's buffers in place). */
    pb_status (*prefetch)(pb_device *dev, void *dst, const void *src, size_t bytes);
    pb_status (*prefetch_wait)(pb_device *dev);
    /* fp32 host values into activation-type device storage and back */
    pb_status (*upload_act)(pb_device *dev, void *dst, const float *src, size_t elems);
    pb_status (*download_act)(pb_device *dev, float *dst, const void *src, size_t elems);
    double (*peak_mem_mb)(const pb_device *dev);
    /* optional (NULL: unknown): free and total memory of physical device
     * `ordinal`, in bytes, before any of the run's allocations (cuda:
     * cudaMemGetInfo), for the run's memory plan (harness/memplan.h) */
    pb_status (*mem_info)(int ordinal, size_t *free_b, size_t *total_b);

    /* compute */
    /* the GEMM with epilogues (pb_gemm above) and its backward */
    pb_status (*gemm_fwd)(pb_device *dev, const pb_gemm *g);
    pb_status (*gemm_bwd)(pb_device *dev, const pb_gemm_grad *g);
    /* The two halves of the fused epilogues, for a layer whose GEMM output
     * is summed across ranks first (tensor parallel's row-parallel layer,
     * workloads/mlp_stage.c): y [m, n] += b (NULL: none) per row, then ReLU
     * when relu, in place; and dy [m, n] masked in place by y > 0 (y: a
     * ReLU's output), db (NULL: none) its column sums, as gemm_bwd's
     * PB_DACT_RELU does */
    pb_status (*bias_act)(pb_device *dev, int m, int n, void *y, const float *b, bool relu);
    pb_status (*relu_bwd)(pb_device *dev, int m, int n, void *dy, const void *y, float *db);
    /* Softmax cross-entropy over m rows of c logits. Adds scale * sum of row
     * losses to *loss_sum (device fp32 scalar) and writes
     * dlogits = scale * (softmax - onehot). scale = 1 / global batch, so the
     * shards of a split batch sum to the global mean. */
    pb_status (*softmax_xent)(pb_device *dev, int m, int c, const void *logits,
                              const int32_t *labels, float scale, float *loss_sum,
                              void *dlogits);
    pb_status (*optimizer)(pb_device *dev, const pb_opt_args *a);
    /* optional: the optimizer on a side stream, ordered after the work
     * enqueued so far, overlapping what is enqueued later; join_side makes
     * the compute stream wait for every side update */
    pb_status (*optimizer_side)(pb_device *dev, const pb_opt_args *a);
    pb_status (*join_side)(pb_device *dev);
    /* y += alpha * x over n fp32 values (gradient reduction, averaging) */
    pb_status (*axpy)(pb_device *dev, size_t n, float alpha, const float *x, float *y);
    /* fp32 -> compute-copy conversion (replicating weights) */
    pb_status (*cast_params)(pb_device *dev, void *dst, const float *src, size_t n);

    /* timing: marks on the device's stream */
    pb_status (*mark_create)(pb_device *dev, pb_mark **mark);
    void (*mark_destroy)(pb_device *dev, pb_mark *mark);
    pb_status (*mark_record)(pb_device *dev, pb_mark *mark);
    /* optional (NULL where calls are synchronous, the CPU): the work
     * enqueued later on dev waits until `mark`, recorded on any device of
     * the backend, has been reached (what was recorded when this is called:
     * the mark may be recorded again afterwards) */
    pb_status (*mark_wait)(pb_device *dev, const pb_mark *mark);
    /* ms between two recorded marks; valid after synchronize */
    pb_status (*mark_elapsed_ms)(pb_device *dev, const pb_mark *a, const pb_mark *b, double *ms);
    pb_status (*synchronize)(pb_device *dev);

    /* Measured GEMM peak in TFLOP/s at the device's precision, from large
     * square GEMMs on random data (MFU is reported against this, not a
     * datasheet). */
    pb_status (*calibrate)(pb_device *dev, double *tflops);
    /* Median ms of one training step's GEMMs called alone: per layer the
     * forward, weight-gradient and (above layer 0, or at layer 0 too when
     * first_dx: a GPT's first QKV projection passes its gradient down to
     * the embeddings) input-gradient GEMM of the same shapes, types and
     * transposes the step uses, the weight gradient with the step's dw_beta
     * (0, or the momentum where the step accumulates it there), without
     * epilogues or any other kernel; `reps` timed sets. */
    pb_status (*gemm_reference)(pb_device *dev, int n_layers, const int *in, const int *out, int m,
                                float dw_beta, bool first_dx, int reps, double *ms);

    /* optional (NULL: not in this backend yet): the transformer ops */
    const pb_transformer_ops *transformer;

    /* optional (NULL where unsupported): capture the work enqueued between
     * begin and end once, then replay it (CUDA graphs, --cuda-graph) */
    pb_status (*capture_begin)(pb_device *dev);
    pb_status (*capture_end)(pb_device *dev);
    pb_status (*replay)(pb_device *dev);
} pb_backend;

extern const pb_backend pb_backend_cpu;
extern const pb_backend pb_backend_cuda; /* stub when built without CUDA */

/* --device-mem-mb in a backend's alloc: PB_ERR_NOMEM when `bytes` more on
 * the device (holding `now`) would go beyond limit (bytes; 0 none). The
 * run's plan refuses such a run before it allocates (harness/memplan.h);
 * this is the backstop for what the plan does not foresee. */
static inline pb_status pb_backend_check_limit(int ordinal, double limit, size_t now, size_t bytes)
{
    if (limit <= 0 || (double)now + (double)bytes <= limit) return PB_OK;
    return pb_user_error(PB_ERR_NOMEM,
                         "out of device memory: device %d: allocating %.1f MB more would hold %.1f MB, beyond "
                         "--device-mem-mb %.1f",
                         ordinal, (double)bytes / 1048576.0, ((double)now + (double)bytes) / 1048576.0,
                         limit / 1048576.0);
}

/* True when this binary was built with the CUDA backend compiled in. */
bool pb_cuda_built(void);

#ifdef __cplusplus
}
#endif
#endif /* PB_BACKEND_H */
