/* What the layers below the run need of a configuration by value: the
 * model's shape, the numeric precision and the optimizer, and the few
 * settings a backend's open and a comm's init read. A leaf (includes
 * nothing of the project), so workloads/ and kernels/ can use these types
 * without including the run's configuration (harness/config.h, which
 * includes this and fills the options from a run's flags). */
#ifndef PB_SHAPE_H
#define PB_SHAPE_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>
#include <stddef.h>

#define PB_MAX_STAGES 64 /* devices a single-process strategy drives */

typedef enum pb_precision { PB_FP32 = 0, PB_TF32, PB_BF16, PB_PRECISION_COUNT } pb_precision;
typedef enum pb_optimizer { PB_OPT_SGD = 0, PB_OPT_ADAMW, PB_OPTIMIZER_COUNT } pb_optimizer;
/* mp's pipeline schedule: GPipe (all forwards, then all backwards) or 1F1B
 * (PipeDream-flush: at most p - stage microbatches in flight per stage) */
typedef enum pb_schedule { PB_SCHED_GPIPE = 0, PB_SCHED_1F1B, PB_SCHEDULE_COUNT } pb_schedule;

/* Shape of a workload. batch is always the global batch (samples: an MLP's
 * rows, a GPT's sequences). layers and batch are every workload's; the
 * others are one kind's (0 where another kind's). */
typedef struct pb_shape {
    int in;      /* mlp: input features */
    int hidden;  /* mlp: width of hidden layers */
    int layers;  /* mlp: Linear layers; gpt: transformer blocks (>= 1) */
    int classes; /* mlp: output classes */
    int batch;   /* global batch, split across devices */
    int seq;     /* gpt: tokens per sequence */
    int heads;   /* gpt: attention heads (divides d_model) */
    int d_model; /* gpt: channels */
    int vocab;   /* gpt: vocabulary (padded to a multiple of 128 inside) */
} pb_shape;

const char *pb_precision_name(pb_precision p);
const char *pb_optimizer_name(pb_optimizer o);
const char *pb_schedule_name(pb_schedule s);

/* What a backend's open reads of the run (kernels/backend.h). NULL for
 * open: fp32, no workspace sized for a model. */
typedef struct pb_device_opts {
    pb_precision precision; /* activation storage type (cuda) */
    int threads;            /* BLAS / host threads of the device (cpu) */
    /* the model's widest activation row (pb_model.max_width), 0 unknown:
     * sizes the cuda bf16 bias workspace up front */
    size_t max_width;
    /* --device-mem-mb in bytes, 0 none: an allocation that would hold more
     * on the device fails (PB_ERR_NOMEM) */
    double mem_limit;
} pb_device_opts;

/* What a comm's init reads of the run (kernels/comm.h). The `local` comm
 * joins the participants that pass the same pointer into one group, so
 * every participant of a group passes one struct. NULL for init: the
 * default deadline, no device map. */
typedef struct pb_comm_opts {
    double timeout_s;      /* a wait fails after this long without progress */
    const int *device_map; /* logical device -> physical ordinal (nccl: ranks sharing a GPU) */
    int n_device_map;      /* 0: identity */
} pb_comm_opts;

#ifdef __cplusplus
}
#endif
#endif /* PB_SHAPE_H */
