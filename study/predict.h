/* bench predict: a step-time model of each strategy from measured inputs
 * (docs/predict.md). The model (predict_model.c) is pure arithmetic over
 * the structs below, so the unit tests check its formulas; the inputs are
 * read from a single-device run CSV, bench comm's fit rows and a topology
 * file (predict_inputs.c); the command (predict.c) writes a CSV of its own
 * schema (PB_PREDICT_COLUMNS) and can draw it (predict_plot.c).
 *
 * Times are ms unless a name says us; bandwidths GB/s (1e9 B/s). */
#ifndef PB_PREDICT_H
#define PB_PREDICT_H

#include <stdbool.h>
#include <stddef.h>

#include "../harness/comm_fit.h"
#include "../harness/status.h"
#include "csv_read.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PB_PRED_MAX_LAYERS 256 /* blocks: the workload's PB_MAX_BLOCKS */
#define PB_PRED_MAX_SINGLE 16 /* single rows kept (thread counts x batches) */
#define PB_PRED_MAX_FITS 64   /* (comm, collective, ranks) fits kept */
#define PB_PRED_NAME 64

/* One measured single-device row: its phases at a batch and thread count. */
typedef struct pb_pred_single {
    int threads;
    double batch;
    double load_ms, h2d_ms, fwd_ms, bwd_ms, opt_ms, step_ms;
} pb_pred_single;

/* A transformer (the gpt workload) as tensor parallelism splits it, from
 * the workload's own model description (pb_pred_describe_gpt: its blocks'
 * FLOPs and its tensors' tp splits): per row (one sequence) the FLOPs of
 * forward and backward that split across a tp group (the split tensors'
 * 6 per parameter per token and attention's T x T GEMMs, split by heads)
 * and those every rank runs whole (embeddings, LayerNorms, the replicated
 * biases, the head); and the flat parameter buffer's floats that split
 * and those replicated (the tied head counted twice, as the run's buffer). */
typedef struct pb_pred_gpt {
    bool on;
    int layers, d_model, heads, seq, vocab;
    double flops_split, flops_whole;
    double params_split, params_whole;
} pb_pred_gpt;

/* The workload as the model needs it: its blocks (the MLP's layers, the
 * GPT's embeddings, transformer blocks and head), the GPT's tp parts, and
 * the run's training settings, read from the single rows. */
typedef struct pb_pred_work {
    char workload[PB_PRED_NAME], backend[16], precision[16], optimizer[16];
    int layers; /* blocks */
    /* activation elements per row entering and leaving block l (an MLP
     * layer's in and out features; a GPT's T tokens, T x d_model between
     * blocks, the head's T x padded vocabulary logits) */
    double in[PB_PRED_MAX_LAYERS], out[PB_PRED_MAX_LAYERS];
    /* a GPT's blocks from the workload's description: each one's model
     * FLOPs a row and its span of the flat parameter buffer (floats); an
     * MLP's follow from in and out (layer_weights, layer_bytes) */
    double block_flops[PB_PRED_MAX_LAYERS], block_params[PB_PRED_MAX_LAYERS];
    double params;
    pb_pred_gpt gpt;
    int nsingle;
    pb_pred_single single[PB_PRED_MAX_SINGLE];
    /* single rows at 1 thread measured two to a core, every core so
     * (--single-shared): what a device pays beyond half a core when it
     * takes turns on one (pb_pred_shared_pace); none: exactly half */
    int nshared;
    pb_pred_single shared[PB_PRED_MAX_SINGLE];
    /* single's SGD momentum accumulated by its weight-gradient GEMMs (the
     * cpu backend: strategies/single.c), so its opt_ms is a lighter
     * optimizer than the other strategies run */
    bool opt_fused;
} pb_pred_work;

/* A measured alpha-beta fit of one collective on one comm and rank count
 * (bench comm's fit rows: up to PB_FIT_MAX_SEGMENTS segments). */
typedef struct pb_pred_fit {
    char comm[16];
    pb_coll coll;
    int ranks, nseg;
    pb_fit_segment seg[PB_FIT_MAX_SEGMENTS];
} pb_pred_fit;

/* The machines: a topology file's figures (docs/predict.md, "Topology
 * files"), each overridable on the command line, and the measured fits. */
typedef struct pb_pred_net {
    char name[PB_PRED_NAME];
    int gpus_per_node;
    int cores_per_node;              /* cpu backend: the cores the devices share; 0 for GPUs */
    double intra_alpha_us, intra_gbps; /* per device, busbw-class: a ring's per-link bandwidth */
    double inter_alpha_us, inter_gbps; /* per device's NIC across nodes */
    double p2p_gbps;                   /* one device to another in a node (dp's scatter, mp's p2p) */
    int nfits;
    pb_pred_fit fits[PB_PRED_MAX_FITS];
} pb_pred_net;

typedef enum pb_pred_strategy {
    PB_PRED_SINGLE,
    PB_PRED_DP,
    PB_PRED_DDP,
    PB_PRED_MP,
    PB_PRED_ZERO,
    PB_PRED_TP,
    PB_PRED_MESH,
    PB_PRED_NSTRAT
} pb_pred_strategy;

const char *pb_pred_strategy_name(pb_pred_strategy s);
/* PB_PRED_NSTRAT when unknown */
pb_pred_strategy pb_pred_strategy_find(const char *name);

/* One configuration to predict. */
typedef struct pb_pred_target {
    pb_pred_strategy strategy;
    int devices;
    double batch_global;
    int microbatches;  /* mp; 1 otherwise */
    bool one_f_one_b;  /* mp: --schedule 1f1b (else gpipe) */
    int zero_stage;    /* zero: 1, 2 or 3; 0 otherwise */
    double bucket_mb;  /* ddp, zero; 25 by default */
    bool no_overlap;   /* ddp, zero */
    int threads;       /* cpu: BLAS threads per device (0: cores / devices, at least 1) */
    int mesh_dp, mesh_tp, mesh_pp; /* mesh: D x T x P = devices (pp 1 is what the model has); 0 otherwise */
} pb_pred_target;

/* What the model says of it. */
typedef struct pb_pred_result {
    int nodes, threads;
    double step_ms, samples_per_s, efficiency, ideal_ms;
    double compute_ms;        /* load, h2d, fwd, bwd, opt: the devices' own work on the critical path */
    double comm_ms;           /* all the communication's time, hidden or not */
    double comm_exposed_ms;   /* what the step waits for */
    double comm_hidden_ms;    /* comm_ms - comm_exposed_ms: behind compute */
    double bubble_ms, bubble_frac;
    double mem_mb;            /* the largest device's memory */
    /* a rank's wire bytes per step by kind (the run rows' *_bytes_per_step
     * columns; NaN where the kind is not used) and the count of tp's
     * all-reduces */
    double allreduce_bytes, reduce_scatter_bytes, allgather_bytes, p2p_bytes;
    int tp_allreduces;
    double tp_comm_ms, reduce_scatter_ms, allgather_ms; /* the run rows' phases of those names */
    const char *collectives;  /* "measured" (a fit for these ranks), "extrapolated" (a fit's alpha and bandwidth in the ring formulas), "topology", "none" */
} pb_pred_result;

/* Collective times (us) on n devices of the net, S bytes. */
double pb_pred_allreduce_us(const pb_pred_net *net, const char *comm, int n, double bytes, const char **source);
double pb_pred_broadcast_us(const pb_pred_net *net, const char *comm, int n, double bytes, const char **source);
double pb_pred_p2p_us(const pb_pred_net *net, const char *comm, int n, double bytes, const char **source);
/* reduce-scatter and all-gather of a buffer of `bytes` in all (nccl-tests'
 * size: the N chunks together) */
double pb_pred_reduce_scatter_us(const pb_pred_net *net, const char *comm, int n, double bytes, const char **source);
double pb_pred_allgather_us(const pb_pred_net *net, const char *comm, int n, double bytes, const char **source);

/* The single-device time (ms) of each phase at batch b and t threads
 * sharing the cores `share` ways (>= 1: oversubscription). */
typedef struct pb_pred_phases {
    double load, h2d, fwd, bwd, opt;
} pb_pred_phases;
void pb_pred_single_phases(const pb_pred_work *w, double batch, int threads, pb_pred_phases *out);

/* Predicts one target; a usage error when the inputs cannot (no single row,
 * a strategy that cannot run the target). */
pb_status pb_predict_one(const pb_pred_work *w, const pb_pred_net *net, const pb_pred_target *t,
                         pb_pred_result *r);

/* The run's memory plan of the target (predict_mem.c): the largest
 * device's MiB, as the run's mem_plan_mb; false where the configuration
 * cannot be built here (the model's own estimate then stands). */
bool pb_pred_plan_mb(const pb_pred_work *w, const pb_pred_target *t, double *mb);
/* Fills w->gpt's FLOPs and parameters from the workload's model
 * description of w->gpt's shape (predict_mem.c); false where this binary
 * cannot describe it. */
bool pb_pred_describe_gpt(pb_pred_work *w);

/* Inputs (predict_inputs.c). */
/* Which step the model takes from its input rows and is judged against
 * (--step): their mean (step_ms_mean and the phases' means: what a run's
 * throughput is) or their typical step (step_ms_p50, an input row's phases
 * scaled by its step_ms_p50 / step_ms_mean: rare stalls, such as a host's
 * CPU quota stopping a busy VM for 100 ms, left out). */
typedef enum pb_pred_step { PB_PRED_STEP_MEAN, PB_PRED_STEP_MEDIAN } pb_pred_step;
/* The single-strategy ok rows of a run CSV (one workload, backend and
 * precision; the first row's when several). */
pb_status pb_pred_read_single(const pb_csv *c, const char *path, pb_pred_step which, pb_pred_work *w);
/* --single-shared's rows (single at 1 thread, two runs to a core) into
 * w->shared, pooled as pb_pred_read_single's; after it: a usage error
 * when w is not the cpu backend's, when they are another workload,
 * backend or precision than w's, when none is at 1 thread, or when one
 * has no 1-thread --single row at its rows. */
pb_status pb_pred_read_shared(const pb_csv *c, const char *path, pb_pred_step which, pb_pred_work *w);
/* w's single row at exactly (threads, batch), or NULL. */
const pb_pred_single *pb_pred_single_row(const pb_pred_work *w, int threads, double batch);
/* A device's pace at `rows` rows on a core it takes turns on, as a factor
 * over its exact share (a core's k devices take k x pace its time alone):
 * the nearest --single-shared row's step over twice the 1-thread single
 * row's at the same rows, at least 1; 1 without such a pair. */
double pb_pred_shared_pace(const pb_pred_work *w, double rows);
/* The fit rows of a bench comm CSV, appended to net->fits. */
pb_status pb_pred_read_fits(const pb_csv *c, const char *path, pb_pred_net *net);
/* A topology file: `key = value` lines, '#' comments (docs/predict.md). */
pb_status pb_pred_read_topology(const char *path, pb_pred_net *net);
/* The median of v[0..n) (sorts v); NaN when n is 0. */
double pb_pred_median(double *v, size_t n);
/* The cpu backend's default: this host's cores, no fits. */
void pb_pred_net_defaults(pb_pred_net *net);

/* The command: argv holds what follows "predict". */
int pb_cmd_predict(int argc, char **argv);

/* bench compare --predicted P.csv M.csv (predict_compare.c): argv holds
 * what follows "compare"; the process exit code. */
int pb_predict_compare(int argc, char **argv);
/* true when argv (after "compare") names --predicted */
bool pb_predict_compare_wanted(int argc, char **argv);

/* The predict CSV's columns, in order. */
#define PB_PREDICT_COLUMNS(X)                                                                                \
    X(strategy) X(workload) X(backend) X(precision) X(devices) X(nodes) X(gpus_per_node) X(threads)          \
        X(batch_global) X(batch_per_device) X(microbatches) X(bucket_mb) X(no_overlap) X(step_ms)            \
            X(samples_per_s) X(efficiency) X(compute_ms) X(comm_ms) X(comm_exposed_ms) X(comm_hidden_ms)     \
                X(bubble_ms) X(bubble_frac) X(mem_mb_per_device) X(collectives) X(topology)                  \
                    X(measured_step_ms) X(measured_samples_per_s) X(measured_efficiency) X(error_pct)    \
                        X(measured_mem_mb_per_device) X(allreduce_bytes_per_step)                         \
                            X(reduce_scatter_bytes_per_step) X(allgather_bytes_per_step) X(p2p_bytes_per_step) \
                                X(tp_comm_ms) X(reduce_scatter_ms) X(allgather_ms) X(schedule) X(zero_stage) \
                                    X(dp) X(tp) X(pp)

#ifdef __cplusplus
}
#endif
#endif /* PB_PREDICT_H */
