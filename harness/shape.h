/* What the layers below the run need of a configuration by value: the
 * model's shape, the numeric precision and the optimizer. A leaf (includes
 * nothing of the project), so workloads/ and kernels/ can use these types
 * without including the run's configuration (harness/config.h, which
 * includes this). */
#ifndef PB_SHAPE_H
#define PB_SHAPE_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pb_precision { PB_FP32 = 0, PB_TF32, PB_BF16, PB_PRECISION_COUNT } pb_precision;
typedef enum pb_optimizer { PB_OPT_SGD = 0, PB_OPT_ADAMW, PB_OPTIMIZER_COUNT } pb_optimizer;

/* Shape of an MLP workload. batch is always the global batch. */
typedef struct pb_shape {
    int in;      /* input features */
    int hidden;  /* width of hidden layers */
    int layers;  /* number of Linear layers (>= 1) */
    int classes; /* output classes */
    int batch;   /* global batch, split across devices */
} pb_shape;

#ifdef __cplusplus
}
#endif
#endif /* PB_SHAPE_H */
