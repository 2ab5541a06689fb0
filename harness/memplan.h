/* The run's memory, planned before anything is allocated.
 *
 * Linux overcommits: a run far too large for the host gets every malloc and
 * is then killed by the OOM killer mid-run (exit 137, no row, no message).
 * So the run core adds up what the run will hold at its peak, per device
 * and per host, from the configuration and the workload's model alone (a
 * pure function, unit-tested against the allocations and against measured
 * peak RSS), and
 * refuses a run whose plan does not fit what the host, its cgroup and each
 * GPU can give, with the same "out of host memory: ..." failure as a failed
 * allocation (docs/reliability.md, "Out of memory").
 *
 * What the plan counts, by the code that allocates it:
 *  - per replica (strategies/replica.c): fp32 parameters and gradients, the
 *    optimizer state (SGD momentum; AdamW m and v) where the replica keeps
 *    it, a compute copy of the weights for a narrower activation type, and
 *    its stage's activations for its rows, as the workload declares them
 *    (pb_workload_ops.stage_bytes; the MLP: every layer's, two gradient
 *    buffers of the widest layer);
 *  - per strategy (its pb_strategy.plan_memory, else one replica over the
 *    rows the process holds): single one replica over the batch; dp a replica per
 *    device over its shard (optimizer state on device 0 only) and device 0's
 *    full-batch logits and their gradient; ddp one such replica per rank,
 *    every rank of this host counted; mp a replica per stage with its
 *    schedule's slots (GPipe a slot per microbatch, every microbatch's
 *    activations; 1F1B min(m, p - stage)), a gradient scratch with
 *    microbatches and an input-gradient send buffer per stage after the
 *    first; input staging buffers where the batch is not read in place;
 *  - per process: the initial/final parameters on the host, the loader's
 *    three batch slots and the workload's data table (harness/loader.c);
 *  - --verify (on the writer: rank 0, or the process): `single`'s replica,
 *    loader and two parameter copies, held while the run's still exist, and
 *    the parameters kept at the judged step.
 * Not counted (the margin's job): code, thread stacks, the BLAS's and MPI's
 * own buffers, --calibrate's GEMM buffers (freed before the run allocates,
 * and smaller than it). */
#ifndef PB_MEMPLAN_H
#define PB_MEMPLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "../workloads/workload.h"
#include "config.h"
#include "status.h"

/* What the plan needs to know beyond the configuration. */
typedef struct pb_memplan_env {
    bool host_is_device; /* cpu: device memory is host memory */
    int local_ranks;     /* rank-per-device: the run's ranks on this host (else 1) */
    int device;          /* rank-per-device: the ordinal this rank opens (harness/devmap.c) */
    bool writer;         /* this process runs --verify's reference */
} pb_memplan_env;

/* Bytes by what they hold. */
typedef struct pb_mem_parts {
    double params, grads, optim, acts, loader, verify;
} pb_mem_parts;

typedef struct pb_memplan {
    /* device memory of each device this process drives (a rank: its one
     * device), by logical device; on the cpu they are host memory and
     * also counted in host */
    int n_devices;
    double device[PB_MAX_STAGES];
    int ordinal[PB_MAX_STAGES]; /* the physical device each logical one is */
    /* each device's own figure by part (params, grads, optim, acts; the
     * strategy's allocations alone, what the backend's peak_mem_mb counts),
     * and --verify's reference on the writer, a device of its own (on
     * cuda also in device[0], the physical device it shares) */
    pb_mem_parts device_parts[PB_MAX_STAGES];
    pb_mem_parts verify_parts;
    /* host memory of every process of the run on this host */
    double host;
    pb_mem_parts host_parts;
} pb_memplan;

/* Bytes of one activation element on a backend and precision: the cuda
 * backend keeps bf16 activations in bf16, everything else in fp32. */
size_t pb_memplan_act_elem(const pb_config *cfg, bool host_is_device);

/* The building blocks of a strategy's own device model
 * (pb_strategy.plan_memory), added into p. */
/* pb_replica_init over blocks [b0, b1) for `slots` slots of `rows` rows,
 * activations of e bytes an element, optimizer state where opt_state, a
 * targets buffer where targets, its stage's input and output bound by the
 * caller where bound_io; returns its parameter count */
double pb_memplan_add_replica(const pb_model *model, int b0, int b1, double rows, int slots, bool opt_state,
                              bool targets, bool bound_io, pb_optimizer o, double e, pb_mem_parts *p);
/* Bytes of `rows` samples' inputs on a device (values in the activation
 * type, e bytes each; others as they are) */
double pb_memplan_input_bytes(const pb_model *model, double rows, double e);
/* pb_input_init: two staging slots of rows of inputs and targets, unless
 * read in place */
void pb_memplan_add_staging(const pb_model *model, double rows, bool in_place, pb_mem_parts *p);
/* The batch can be read in place, unstaged: device memory is host memory
 * and the activations are fp32 like the batch. */
bool pb_memplan_in_place(const pb_config *cfg, const pb_memplan_env *env);

/* The plan of cfg (validated) over its model. Pure: no allocation, no I/O. */
void pb_memplan_compute(const pb_config *cfg, const pb_model *model, const pb_memplan_env *env,
                        pb_memplan *out);

/* The sum of the parts */
double pb_mem_parts_sum(const pb_mem_parts *p);
/* The logical device whose own figure (device_parts) is the largest: the
 * one the row's mem_plan_* columns describe */
int pb_memplan_largest(const pb_memplan *plan);

/* --device-mem-mb: PB_OK when every device's own figure and --verify's
 * reference fit cap bytes each (no margin: the backends count exactly
 * what the plan counts, and refuse an allocation beyond the cap); else
 * PB_ERR_NOMEM with "out of device memory: device D needs X MB, has Y MB
 * (params A, grads B, optimizer C, activations D)". */
pb_status pb_memplan_check_cap(const pb_memplan *plan, double cap);

/* What this host can give: MemAvailable from <root>/proc/meminfo, and the
 * room left in the process's memory cgroup and the ones above it, the least
 * (v2: memory.max - memory.current; v1: memory.limit_in_bytes -
 * memory.usage_in_bytes, under <root>/sys/fs/cgroup), the smaller. root is "" on a real host (tests pass
 * a folder laid out alike). Bytes; a negative figure is unknown. */
typedef struct pb_host_room {
    double meminfo;   /* MemAvailable, -1 unknown */
    double cgroup;    /* limit - usage of the cgroup, -1 none or unlimited */
    double available; /* the smaller known one, -1 when neither is known */
} pb_host_room;
void pb_host_room_read(const char *root, pb_host_room *out);

/* Headroom the plan must leave: what it does not count (see above): on the
 * host 2% and PB_MEMPLAN_PROCESS_MIB per process of the run on it, on a
 * device 5% and 512 MiB. */
#define PB_MEMPLAN_PROCESS_MIB 256.0
double pb_memplan_host_margin(const pb_memplan *plan, int processes);
double pb_memplan_device_margin(double device_bytes);

/* PB_OK when the plan fits room (and each device's free memory, where
 * dev_free[i] >= 0 is known for logical device i); else PB_ERR_NOMEM with
 * "out of host memory: ..." or "out of device memory: ..." saying what the
 * plan needed and what was available. */
pb_status pb_memplan_check(const pb_memplan *plan, int processes, const pb_host_room *room,
                           const double *dev_free, const double *dev_total);

#endif /* PB_MEMPLAN_H */
