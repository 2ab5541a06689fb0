/* The run's configuration: every flag, its parsed value, and validation.
 *
 * Parsed and validated completely before any MPI or CUDA initialisation, so a
 * usage error costs nothing and writes nothing. */
#ifndef PB_CONFIG_H
#define PB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shape.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PB_CONFIG_TAG_LEN 65 /* PB_LABEL_MAX (harness/runid.h) + 1 */

typedef struct pb_config {
    /* plugin names, resolved against the registry by the parser */
    char strategy[32];
    char backend[32];  /* after resolution: "cpu" or "cuda" (never "auto") */
    char comm[32];
    char workload[32];
    bool backend_auto; /* --backend auto was given or defaulted */

    pb_shape shape;
    int devices; /* --gpus: devices the strategy uses */

    pb_precision precision;
    pb_optimizer optimizer;
    double lr;
    double momentum;     /* SGD momentum */
    double weight_decay; /* AdamW decoupled weight decay, SGD L2 */
    double beta1, beta2, eps;

    int iters;
    int warmup;
    uint64_t seed;
    int threads;        /* BLAS / host threads per device (cpu backend) */
    int loader_threads; /* 0: auto (1 on cpu, more on cuda) */

    /* strategy options (each applies to the strategies its flag names) */
    int microbatches;      /* mp: pipeline microbatches; 1 is the naive layer split */
    pb_schedule schedule;  /* mp: the microbatches' order (--schedule) */
    int split[PB_MAX_STAGES]; /* mp --split: first layer of stages 1.., n_split of them */
    int n_split;           /* 0: stages balanced by FLOPs */
    double bucket_mb;      /* ddp: gradient bucket size */
    bool no_overlap;       /* ddp: one all-reduce after backward instead of buckets during it */
    int zero_stage;        /* zero: 1 optimizer state, 2 + gradients, 3 + parameters sharded */
    int mesh_dp, mesh_tp, mesh_pp; /* mesh: --dp, --tp, --pp (D x T x P = --gpus) */
    bool sequence_parallel; /* tp, mesh: --sequence-parallel (Megatron's, the GPT only) */
    int device_map[PB_MAX_STAGES]; /* logical device -> physical ordinal */
    int n_device_map;      /* 0: identity */
    bool verify;           /* compare the parameters with `single` (after pb_verify_steps) */
    double timeout_s;      /* a collective wait fails after this long without progress */
    double device_mem_mb;  /* --device-mem-mb: each device's memory cap in MB (2^20 bytes), 0 none */

    bool cuda_graph;
    bool calibrate; /* measure GEMM peak and GEMMs-alone time (always on cuda) */

    char out[4096];  /* CSV appended to; "" when the command writes no row (bench calibrate) */
    char dump[4096]; /* --dump DIR, "" when off; {run_id} expanded (main.c) */
    char steps_out[4096]; /* --steps-out FILE, "" when off; {run_id} expanded */
    char ranks_out[4096]; /* --ranks-out FILE, "" when off; {run_id} expanded */
    char tag[PB_CONFIG_TAG_LEN]; /* --tag: a label, not part of the configuration key */
    char run_id[PB_CONFIG_TAG_LEN]; /* set by the run command (harness/runid.h), "" otherwise */
    bool quiet;
    uint64_t given; /* bit i: flag i of the flag table was on the command line */
} pb_config;

/* Defaults for every field (the values --help prints). */
void pb_config_defaults(pb_config *cfg);
/* Whether the flag `name` (e.g. "--zero-stage") was on the command line. */
bool pb_config_given(const pb_config *cfg, const char *name);

/* The settings a backend's open and a comm's init read (harness/shape.h);
 * the comm's device_map points into cfg, which outlives the comm. */
pb_device_opts pb_config_device_opts(const pb_config *cfg);
pb_comm_opts pb_config_comm_opts(const pb_config *cfg);
/* pb_config_device_opts with the model's widest activation row, so a
 * backend sizes its workspaces for it at open (workloads/workload.h) */
struct pb_model;
pb_device_opts pb_config_model_device_opts(const pb_config *cfg, const struct pb_model *model);

/* Parses argv (after the subcommand, if any). On a usage error returns
 * PB_ERR_USAGE with a one-line message naming the flag and what is allowed.
 * *help is set when --help was asked for. */
pb_status pb_config_parse(pb_config *cfg, int argc, char **argv, bool *help);
/* "--name=value" into name and *value; any other argument into name whole,
 * with *value NULL. Shared by every parser of flags. */
void pb_flag_split(const char *arg, char *name, size_t len, const char **value);

/* Cross-field checks that need the registry (strategy constraints, batch
 * divisibility, backend availability), and the files the command writes:
 * --out (unless "") and --dump can be written, else a usage error. */
pb_status pb_config_validate(pb_config *cfg);
/* --gpus and --device-map against the `present` CUDA devices of this node
 * (present > 0), of which `per_node` logical devices are to be driven here:
 * all of a one-process run's, or a rank-per-device run's ranks on this node
 * (0: not known yet; checked again once MPI says). A usage error names the
 * counts. pb_config_validate calls it with the devices it finds; tests call
 * it with any count. */
pb_status pb_config_check_cuda_devices(const pb_config *cfg, int present, int per_node);

/* Prints the flag table with defaults to stdout. */
void pb_config_print_help(const char *prog);
/* Prints the lines of the named flags alone (in the table's order), and
 * --help's: a command that reads some of the run's flags (calibrate). */
void pb_config_print_flags(const char *const *names, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* PB_CONFIG_H */
