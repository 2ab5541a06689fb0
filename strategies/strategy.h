/* Strategy: how one training step is split across devices.
 *
 * A strategy declares its process model, validates the configuration (usage
 * errors only, before any device or MPI initialisation), and runs a step on a
 * global batch handed to it in host memory, reporting its phase times. Every
 * strategy computes the same training as `single` on the same global batch. */
#ifndef PB_STRATEGY_H
#define PB_STRATEGY_H

#include <stdint.h>

#include "../harness/config.h"
#include "../harness/phase.h"
#include "../harness/results.h"
#include "../kernels/backend.h"
#include "../workloads/workload.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pb_process_model {
    PB_PROC_ONE = 0,       /* one process drives all its devices */
    PB_PROC_PER_DEVICE,    /* one MPI rank per device */
} pb_process_model;

/* The global batch of one step, in (pinned) host memory. */
typedef struct pb_batch {
    int64_t step;
    int row0;              /* the global batch's row that the first row held is */
    int count;             /* rows held: the global batch, or a rank's shard */
    /* count samples of the workload's inputs and targets, of the sizes its
     * model declares (pb_model_input_bytes, pb_model_target_bytes): what
     * they are is the workload's (features and labels, token ids) */
    const void *inputs;
    const void *targets;
    /* The next step's batch when the loader already has it (else NULL), so
     * a strategy can start copying it while this step computes. */
    const void *next_inputs;
    const void *next_targets;
} pb_batch;

typedef struct pb_strategy_ctx {
    const pb_config *cfg;
    const pb_backend *be;
    const pb_model *model;
    const float *init_params; /* host, model->n_params */
    /* rank-per-device strategies: this rank, the run's ranks and the rank's
     * index on its node (its device), initialised by pb_run; 0, 1 and 0 for
     * one-process strategies */
    int rank, ranks, local_rank;
    /* rank-per-device: the device ordinal this rank opens (pb_rank_device:
     * its local rank, or the one device its launcher shows it); single:
     * the one it opens (0; as --verify's reference, the run's own first
     * device) */
    int device;
    /* the run's comm (--comm), NULL for "none": a rank-per-device strategy
     * inits it for its rank, a one-process strategy on several devices for
     * each device (participant i of the devices) */
    const struct pb_comm *comm;
} pb_strategy_ctx;

typedef struct pb_step_result {
    pb_step_times t; /* phases other than load, which the harness times */
    double loss;     /* mean loss over the global batch */
} pb_step_result;

typedef struct pb_memory_report {
    double peak_mb_max;  /* the largest peak over devices */
    double peak_mb_dev0; /* device 0's peak */
} pb_memory_report;

/* harness/memplan.h: what a strategy's memory model reads and fills */
struct pb_memplan_env;
struct pb_mem_parts;

typedef struct pb_strategy {
    const char *name;
    const char *description;
    pb_process_model procs;
    /* The global batch is split into equal shards, one per device (single,
     * dp), so it must divide by the devices. Not ddp, whose shards may
     * differ by a row, nor mp, whose stages all see every sample. */
    bool needs_even_split;
    /* Its own flags, and the config columns its rows carry for them:
     * --microbatches and --schedule (mp's pipeline: the microbatches and
     * schedule columns) */
    bool microbatches;
    /* --split (its blocks split into stages, one per device: mp) */
    bool stages;
    /* --bucket-mb and --no-overlap (ddp's gradient buckets: the bucket_mb
     * and no_overlap columns; a mesh's with --zero-stage only) */
    bool buckets;
    /* --zero-stage (zero: what is sharded; the zero_stage column) */
    bool zero_stage;
    /* Its step accumulates SGD's momentum in the weight-gradient GEMM where
     * the backend prefers that (pb_replica_fuse_momentum: single), so the
     * GEMM-alone reference times its GEMMs with that beta */
    bool momentum_in_wgrad;
    /* rank-per-device: every rank trains on the whole global batch (tp: the
     * model is split across ranks, not the batch), so its loader fills all
     * of it and batch_per_device is the batch */
    bool rank_full_batch;
    /* get_params is a collective: the parameters are split across ranks,
     * so every rank calls it at the same point, the ranks other than 0 with
     * host_params NULL (their part only goes to rank 0) */
    bool params_collective;
    /* --dp, --tp and --pp (a hybrid mesh: the dp, tp and pp columns) */
    bool mesh;

    /* optional, rank-per-device: the batch shard rank's loader fills, of
     * *shards equal-as-can-be shards of the global batch (mesh: its data-
     * parallel index of --dp); NULL: shard rank of the ranks, or the whole
     * batch with rank_full_batch */
    int (*batch_shard)(const pb_config *cfg, int rank, int *shards);

    pb_status (*validate)(const pb_config *cfg, const pb_model *model);
    pb_status (*init)(const pb_strategy_ctx *ctx, void **state);
    /* Runs one step; returns after the devices are synchronised. */
    pb_status (*step)(void *state, const pb_batch *batch, pb_step_result *out);
    pb_status (*get_params)(void *state, float *host_params);
    pb_status (*memory)(void *state, pb_memory_report *out);
    pb_status (*device_info)(void *state, pb_device_info *out);
    /* optional: the strategy's own memory model (harness/memplan.h, which
     * has the building blocks): what each of its cfg->devices devices holds
     * at its peak, added into dev (zeroed). NULL: one replica over the rows
     * the process holds (the batch, or a rank's shard) and their staging. */
    void (*plan_memory)(const pb_config *cfg, const pb_model *model, const struct pb_memplan_env *env,
                        struct pb_mem_parts *dev);
    /* optional: the strategy's own columns (bucket_mb, overlap_pct,
     * comm_bytes_per_step, algbw/busbw, bubble_frac, ...), after the
     * measured steps; mean holds the row's phase times per measured step
     * (for ranks, the slowest rank's), so derived columns agree with them */
    void (*report)(void *state, const pb_step_times *mean, pb_record *row);
    void (*destroy)(void *state);
} pb_strategy;

extern const pb_strategy pb_strategy_single;
extern const pb_strategy pb_strategy_dp;
extern const pb_strategy pb_strategy_ddp;
extern const pb_strategy pb_strategy_mp;
extern const pb_strategy pb_strategy_tp;
extern const pb_strategy pb_strategy_zero;
extern const pb_strategy pb_strategy_mesh;

/* Test hook: one phase span of an mp stage's last step. */
typedef struct pb_mp_span {
    int stage, mb; /* mb: the microbatch, -1 for spans of none (h2d, opt) */
    pb_phase phase;
    double start_ms, end_ms; /* from stage 0's first mark of the step */
} pb_mp_span;

/* Every span of mp's last step (state from pb_strategy_mp.init), at most
 * cap, stage by stage in order; *n is how many. The times are differences
 * of device marks across stages, so they need one clock: the cpu, or the
 * stages on one GPU (--device-map 0,0); on distinct GPUs the backend's
 * elapsed-time call fails and so does this. */
pb_status pb_mp_trace(void *state, pb_mp_span *out, int cap, int *n);

/* Test hook: how often mp's last step woke its host thread (waiting for
 * the stages to come back) and each stage's wait for a peer (stage[k], the
 * first cap stages) from their condition variables. */
pb_status pb_mp_wakeups(void *state, int *host, int *stage, int cap);

#ifdef __cplusplus
}
#endif
#endif /* PB_STRATEGY_H */
