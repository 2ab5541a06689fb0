/* The results CSV: a fixed header (docs/csv-schema.md), one row per run,
 * appended by one write() under flock so concurrent writers interleave whole
 * lines only. Columns not applicable to a run stay empty. */
#ifndef PB_RESULTS_H
#define PB_RESULTS_H

#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(enum suffix, column name). Order is the file's column order. */
#define PB_COLUMNS(X)                                                         \
    X(TIME_UTC, "time_utc")                                                   \
    X(STATUS, "status")                                                       \
    X(STRATEGY, "strategy")                                                   \
    X(BACKEND, "backend")                                                     \
    X(COMM, "comm")                                                           \
    X(WORKLOAD, "workload")                                                   \
    X(IN, "in")                                                               \
    X(HIDDEN, "hidden")                                                       \
    X(LAYERS, "layers")                                                       \
    X(CLASSES, "classes")                                                     \
    X(PARAMS, "params")                                                       \
    X(BATCH_GLOBAL, "batch_global")                                           \
    X(BATCH_PER_DEVICE, "batch_per_device")                                   \
    X(DEVICES, "devices")                                                     \
    X(RANKS, "ranks")                                                         \
    X(MICROBATCHES, "microbatches")                                           \
    X(BUCKET_MB, "bucket_mb")                                                 \
    X(OVERSUBSCRIBED, "oversubscribed")                                       \
    X(PRECISION, "precision")                                                 \
    X(OPTIMIZER, "optimizer")                                                 \
    X(LR, "lr")                                                               \
    X(ITERS, "iters")                                                         \
    X(WARMUP, "warmup")                                                       \
    X(SEED, "seed")                                                           \
    X(THREADS, "threads")                                                     \
    X(CUDA_GRAPH, "cuda_graph")                                               \
    X(STEP_MS_MIN, "step_ms_min")                                             \
    X(STEP_MS_P50, "step_ms_p50")                                             \
    X(STEP_MS_MEAN, "step_ms_mean")                                           \
    X(STEP_MS_P95, "step_ms_p95")                                             \
    X(STEP_MS_MAX, "step_ms_max")                                             \
    X(STEP_MS_CV, "step_ms_cv")                                               \
    X(SAMPLES_PER_S, "samples_per_s")                                         \
    X(MODEL_TFLOPS, "model_tflops")                                           \
    X(PEAK_TFLOPS, "peak_tflops")                                             \
    X(MFU, "mfu")                                                             \
    X(GEMM_MS, "gemm_ms")                                                     \
    X(LOAD_MS, "load_ms")                                                     \
    X(H2D_MS, "h2d_ms")                                                       \
    X(FWD_MS, "fwd_ms")                                                       \
    X(BWD_MS, "bwd_ms")                                                       \
    X(COMM_MS, "comm_ms")                                                     \
    X(SYNC_MS, "sync_ms")                                                     \
    X(OPT_MS, "opt_ms")                                                       \
    X(SCATTER_MS, "scatter_ms")                                               \
    X(REPLICATE_MS, "replicate_ms")                                           \
    X(GATHER_MS, "gather_ms")                                                 \
    X(REDUCE_MS, "reduce_ms")                                                 \
    X(P2P_MS, "p2p_ms")                                                       \
    X(BUBBLE_MS, "bubble_ms")                                                 \
    X(OVERLAP_PCT, "overlap_pct")                                             \
    X(COMM_BYTES_PER_STEP, "comm_bytes_per_step")                             \
    X(ALGBW_GBPS, "algbw_gbps")                                               \
    X(BUSBW_GBPS, "busbw_gbps")                                               \
    X(BUBBLE_FRAC, "bubble_frac")                                             \
    X(BUBBLE_FRAC_THEORY, "bubble_frac_theory")                               \
    X(STAGE_LAYERS, "stage_layers")                                           \
    X(VERIFY_MAX_REL_ERR, "verify_max_rel_err")                               \
    X(LOSS_FIRST, "loss_first")                                               \
    X(LOSS_LAST, "loss_last")                                                 \
    X(PEAK_MEM_MB, "peak_mem_mb")                                             \
    X(PEAK_MEM_MB_DEV0, "peak_mem_mb_dev0")                                   \
    X(HOST_RSS_MB, "host_rss_mb")                                             \
    X(HOST, "host")                                                           \
    X(CPU_MODEL, "cpu_model")                                                 \
    X(GPU_NAME, "gpu_name")                                                   \
    X(GPU_COUNT, "gpu_count")                                                 \
    X(DRIVER, "driver")                                                       \
    X(CUDA_RUNTIME, "cuda_runtime")                                           \
    X(CUBLAS, "cublas")                                                       \
    X(NCCL, "nccl")                                                           \
    X(MPI, "mpi")                                                             \
    X(BLAS, "blas")                                                           \
    X(BLAS_VERSION, "blas_version")                                           \
    X(COMPILER, "compiler")                                                   \
    X(GIT_REV, "git_rev")                                                     \
    X(ERROR, "error")

#define PB_COLUMN_ENUM(id, name) PB_COL_##id,
typedef enum pb_column { PB_COLUMNS(PB_COLUMN_ENUM) PB_COL_COUNT } pb_column;
#undef PB_COLUMN_ENUM

#define PB_FIELD_MAX 256

/* One row as text, column by column ("" = empty). */
typedef struct pb_record {
    char v[PB_COL_COUNT][PB_FIELD_MAX];
} pb_record;

const char *pb_column_name(pb_column c);
int pb_column_find(const char *name); /* -1 when unknown */

void pb_record_clear(pb_record *r);
void pb_record_set(pb_record *r, pb_column c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A number with enough digits to compare runs, "" when not finite. */
void pb_record_num(pb_record *r, pb_column c, double v);

/* The header line (with '\n'); returns its length. */
size_t pb_results_header(char *buf, size_t len);
/* One row (RFC 4180 quoting, '\n' ended); returns its length, 0 if too long. */
size_t pb_results_format(const pb_record *r, char *buf, size_t len);

/* Checks before a run that `path` can take a row: its folder exists and is
 * writable, and an existing file has exactly this build's header. */
pb_status pb_results_check_target(const char *path);
/* Appends the row (and the header when the file is new) with one write()
 * under an exclusive flock. */
pb_status pb_results_append(const char *path, const pb_record *r);

#ifdef __cplusplus
}
#endif
#endif /* PB_RESULTS_H */
