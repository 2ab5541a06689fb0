/* The results CSV: a fixed header (docs/csv-schema.md), one row per run,
 * appended by one write() under flock so concurrent writers interleave whole
 * lines only, and undone when it fails. Columns not applicable to a run stay
 * empty. */
#ifndef PB_RESULTS_H
#define PB_RESULTS_H

#include <stdarg.h>
#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(enum suffix, column name, kind, key). Order is the file's column order.
 *
 * kind (DESIGN.md "Results"): CONFIG, what was run (a run's flags, resolved);
 * METRIC, what the run measured and how it ended (status, error); ENV, where
 * and when it ran.
 * key: where a configuration column tells configurations apart, one
 * definition for every tool that reads rows back (study/key.h):
 *   ALL    sweep's resume, compare's pairing and plot's grouping;
 *   RESUME sweep's resume only: how long and on which data a configuration
 *          was measured (iters, warmup, seed); compare and plot pool runs
 *          that differ only there;
 *   NONE   not a key: follows from key columns (params, batch_per_device,
 *          ranks), a label (tag), or not configuration.
 * docs/csv-schema.md explains each column, and why a flag has none. */
#define PB_COLUMNS(X)                                                         \
    X(TIME_UTC, "time_utc", ENV, NONE)                                        \
    X(RUN_ID, "run_id", ENV, NONE)                                            \
    X(TAG, "tag", CONFIG, NONE)                                               \
    X(STATUS, "status", METRIC, NONE)                                         \
    X(STRATEGY, "strategy", CONFIG, ALL)                                      \
    X(BACKEND, "backend", CONFIG, ALL)                                        \
    X(COMM, "comm", CONFIG, ALL)                                              \
    X(WORKLOAD, "workload", CONFIG, ALL)                                      \
    X(IN, "in", CONFIG, ALL)                                                  \
    X(HIDDEN, "hidden", CONFIG, ALL)                                          \
    X(LAYERS, "layers", CONFIG, ALL)                                          \
    X(CLASSES, "classes", CONFIG, ALL)                                        \
    X(D_MODEL, "d_model", CONFIG, ALL)                                        \
    X(HEADS, "heads", CONFIG, ALL)                                            \
    X(SEQ, "seq", CONFIG, ALL)                                                \
    X(VOCAB, "vocab", CONFIG, ALL)                                            \
    X(SHAPE, "shape", CONFIG, NONE)                                           \
    X(PARAMS, "params", CONFIG, NONE)                                         \
    X(BATCH_GLOBAL, "batch_global", CONFIG, ALL)                              \
    X(BATCH_PER_DEVICE, "batch_per_device", CONFIG, NONE)                     \
    X(TOKENS_PER_STEP, "tokens_per_step", CONFIG, NONE)                       \
    X(DEVICES, "devices", CONFIG, ALL)                                        \
    X(RANKS, "ranks", CONFIG, NONE)                                           \
    X(MICROBATCHES, "microbatches", CONFIG, ALL)                              \
    X(SCHEDULE, "schedule", CONFIG, ALL)                                      \
    X(BUCKET_MB, "bucket_mb", CONFIG, ALL)                                    \
    X(OVERSUBSCRIBED, "oversubscribed", ENV, NONE)                            \
    X(PRECISION, "precision", CONFIG, ALL)                                    \
    X(OPTIMIZER, "optimizer", CONFIG, ALL)                                    \
    X(LR, "lr", CONFIG, ALL)                                                  \
    X(ITERS, "iters", CONFIG, RESUME)                                         \
    X(WARMUP, "warmup", CONFIG, RESUME)                                       \
    X(SEED, "seed", CONFIG, RESUME)                                           \
    X(THREADS, "threads", CONFIG, ALL)                                        \
    X(CUDA_GRAPH, "cuda_graph", CONFIG, ALL)                                  \
    X(MOMENTUM, "momentum", CONFIG, ALL)                                      \
    X(WEIGHT_DECAY, "weight_decay", CONFIG, ALL)                              \
    X(BETA1, "beta1", CONFIG, ALL)                                            \
    X(BETA2, "beta2", CONFIG, ALL)                                            \
    X(EPS, "eps", CONFIG, ALL)                                                \
    X(LOADER_THREADS, "loader_threads", CONFIG, ALL)                          \
    X(CALIBRATE, "calibrate", CONFIG, ALL)                                    \
    X(NO_OVERLAP, "no_overlap", CONFIG, ALL)                                  \
    X(ZERO_STAGE, "zero_stage", CONFIG, ALL)                                  \
    X(DP, "dp", CONFIG, ALL)                                                  \
    X(TP, "tp", CONFIG, ALL)                                                  \
    X(PP, "pp", CONFIG, ALL)                                                  \
    X(SEQUENCE_PARALLEL, "sequence_parallel", CONFIG, ALL)                    \
    X(SPLIT, "split", CONFIG, ALL)                                            \
    X(DEVICE_MAP, "device_map", CONFIG, ALL)                                  \
    X(STEP_MS_MIN, "step_ms_min", METRIC, NONE)                               \
    X(STEP_MS_P50, "step_ms_p50", METRIC, NONE)                               \
    X(STEP_MS_MEAN, "step_ms_mean", METRIC, NONE)                             \
    X(STEP_MS_P95, "step_ms_p95", METRIC, NONE)                               \
    X(STEP_MS_MAX, "step_ms_max", METRIC, NONE)                               \
    X(STEP_MS_CV, "step_ms_cv", METRIC, NONE)                                 \
    X(SAMPLES_PER_S, "samples_per_s", METRIC, NONE)                           \
    X(TOKENS_PER_S, "tokens_per_s", METRIC, NONE)                             \
    X(MODEL_TFLOPS, "model_tflops", METRIC, NONE)                             \
    X(PEAK_TFLOPS, "peak_tflops", METRIC, NONE)                               \
    X(PEAK_TFLOPS_MIN, "peak_tflops_min", METRIC, NONE)                       \
    X(PEAK_TFLOPS_MAX, "peak_tflops_max", METRIC, NONE)                       \
    X(MFU, "mfu", METRIC, NONE)                                               \
    X(GEMM_MS, "gemm_ms", METRIC, NONE)                                       \
    X(LOAD_MS, "load_ms", METRIC, NONE)                                       \
    X(H2D_MS, "h2d_ms", METRIC, NONE)                                         \
    X(FWD_MS, "fwd_ms", METRIC, NONE)                                         \
    X(BWD_MS, "bwd_ms", METRIC, NONE)                                         \
    X(COMM_MS, "comm_ms", METRIC, NONE)                                       \
    X(SYNC_MS, "sync_ms", METRIC, NONE)                                       \
    X(OPT_MS, "opt_ms", METRIC, NONE)                                         \
    X(SCATTER_MS, "scatter_ms", METRIC, NONE)                                 \
    X(REPLICATE_MS, "replicate_ms", METRIC, NONE)                             \
    X(GATHER_MS, "gather_ms", METRIC, NONE)                                   \
    X(REDUCE_MS, "reduce_ms", METRIC, NONE)                                   \
    X(P2P_MS, "p2p_ms", METRIC, NONE)                                         \
    X(BUBBLE_MS, "bubble_ms", METRIC, NONE)                                   \
    X(TP_COMM_MS, "tp_comm_ms", METRIC, NONE)                                 \
    X(REDUCE_SCATTER_MS, "reduce_scatter_ms", METRIC, NONE)                   \
    X(ALLGATHER_MS, "allgather_ms", METRIC, NONE)                             \
    X(OVERLAP_PCT, "overlap_pct", METRIC, NONE)                               \
    X(COMM_BYTES_PER_STEP, "comm_bytes_per_step", METRIC, NONE)               \
    X(ALLREDUCE_BYTES_PER_STEP, "allreduce_bytes_per_step", METRIC, NONE)     \
    X(REDUCE_SCATTER_BYTES_PER_STEP, "reduce_scatter_bytes_per_step", METRIC, NONE) \
    X(ALLGATHER_BYTES_PER_STEP, "allgather_bytes_per_step", METRIC, NONE)     \
    X(P2P_BYTES_PER_STEP, "p2p_bytes_per_step", METRIC, NONE)                 \
    X(ALGBW_GBPS, "algbw_gbps", METRIC, NONE)                                 \
    X(BUSBW_GBPS, "busbw_gbps", METRIC, NONE)                                 \
    X(BUBBLE_FRAC, "bubble_frac", METRIC, NONE)                               \
    X(BUBBLE_FRAC_THEORY, "bubble_frac_theory", METRIC, NONE)                 \
    X(BUBBLE_FRAC_REPLAY, "bubble_frac_replay", METRIC, NONE)                 \
    X(STAGE_LAYERS, "stage_layers", METRIC, NONE)                             \
    X(VERIFY_MAX_REL_ERR, "verify_max_rel_err", METRIC, NONE)                 \
    X(LOSS_FIRST, "loss_first", METRIC, NONE)                                 \
    X(LOSS_LAST, "loss_last", METRIC, NONE)                                   \
    X(PEAK_MEM_MB, "peak_mem_mb", METRIC, NONE)                               \
    X(PEAK_MEM_MB_DEV0, "peak_mem_mb_dev0", METRIC, NONE)                     \
    X(MEM_PLAN_MB, "mem_plan_mb", METRIC, NONE)                               \
    X(MEM_PLAN_PARAMS_MB, "mem_plan_params_mb", METRIC, NONE)                 \
    X(MEM_PLAN_GRADS_MB, "mem_plan_grads_mb", METRIC, NONE)                   \
    X(MEM_PLAN_OPTIM_MB, "mem_plan_optim_mb", METRIC, NONE)                   \
    X(MEM_PLAN_ACTS_MB, "mem_plan_acts_mb", METRIC, NONE)                     \
    X(HOST_RSS_MB, "host_rss_mb", METRIC, NONE)                               \
    X(SLOWEST_RANK, "slowest_rank", METRIC, NONE)                             \
    X(RANK_SPREAD_PCT, "rank_spread_pct", METRIC, NONE)                       \
    X(STRAGGLERS, "stragglers", METRIC, NONE)                                 \
    X(HOST, "host", ENV, NONE)                                                \
    X(CPU_MODEL, "cpu_model", ENV, NONE)                                      \
    X(GPU_NAME, "gpu_name", ENV, NONE)                                        \
    X(GPU_COUNT, "gpu_count", ENV, NONE)                                      \
    X(P2P, "p2p", ENV, NONE)                                                  \
    X(GPU_CHECK, "gpu_check", ENV, NONE)                                      \
    X(DRIVER, "driver", ENV, NONE)                                            \
    X(CUDA_RUNTIME, "cuda_runtime", ENV, NONE)                                \
    X(CUBLAS, "cublas", ENV, NONE)                                            \
    X(NCCL, "nccl", ENV, NONE)                                                \
    X(MPI, "mpi", ENV, NONE)                                                  \
    X(BLAS, "blas", ENV, NONE)                                                \
    X(BLAS_VERSION, "blas_version", ENV, NONE)                                \
    X(BLAS_CORE, "blas_core", ENV, NONE)                                      \
    X(COMPILER, "compiler", ENV, NONE)                                        \
    X(GIT_REV, "git_rev", ENV, NONE)                                          \
    X(ENV_VARS, "env_vars", ENV, NONE)                                        \
    X(ERROR, "error", METRIC, NONE)

#define PB_COLUMN_ENUM(id, name, kind, key) PB_COL_##id,
typedef enum pb_column { PB_COLUMNS(PB_COLUMN_ENUM) PB_COL_COUNT } pb_column;
#undef PB_COLUMN_ENUM

/* A field's room, '\0' included: PB_FIELD_MAX for every column but
 * env_vars, which lists variables and gets PB_FIELD_WIDE (harness/envvars.h:
 * whole entries, "..." when they do not all fit). */
#define PB_FIELD_MAX 256
#define PB_FIELD_WIDE 1024

/* One row as text, column by column ("" = empty). */
typedef struct pb_record {
    char v[PB_COL_COUNT][PB_FIELD_WIDE];
} pb_record;

typedef enum pb_column_kind { PB_KIND_CONFIG, PB_KIND_METRIC, PB_KIND_ENV } pb_column_kind;
typedef enum pb_key_role { PB_KEY_NONE, PB_KEY_RESUME, PB_KEY_ALL } pb_key_role;

const char *pb_column_name(pb_column c);
pb_column_kind pb_column_kind_of(pb_column c);
pb_key_role pb_column_key(pb_column c);
int pb_column_find(const char *name); /* -1 when unknown */
size_t pb_column_width(pb_column c);  /* its field's room: PB_FIELD_MAX or PB_FIELD_WIDE */

void pb_record_clear(pb_record *r);
void pb_record_set(pb_record *r, pb_column c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* What pb_record_set does to a field, for another schema's too (bench
 * comm's): cut to width bytes ('\0' included) with "...", newlines folded. */
void pb_results_field_vset(char *field, size_t width, const char *fmt, va_list ap);
/* A number with enough digits to compare runs, "" when not finite. */
void pb_record_num(pb_record *r, pb_column c, double v);

struct pb_config;
/* Fills every configuration column from a validated configuration, as the
 * run records it (run.c) and as sweep looks for it in --out: the one place
 * that says how a flag appears in the row. Columns a strategy does not use
 * stay empty (microbatches but for mp, momentum but for sgd, ...). Not
 * oversubscribed: a property of the machine (run.c sets it). */
void pb_record_fill_config(pb_record *r, const struct pb_config *cfg);

/* The header line (with '\n'); returns its length. */
size_t pb_results_header(char *buf, size_t len);
/* One row (RFC 4180 quoting, '\n' ended); returns its length, 0 if too long. */
size_t pb_results_format(const pb_record *r, char *buf, size_t len);
/* The same for `count` fields of another schema (bench comm's, harness/comm_csv.h),
 * field c at v + c * stride. */
size_t pb_results_format_fields(const char *v, size_t stride, int count, char *buf, size_t len);

/* Checks before a run that `path` can take a row: its folder exists and is
 * writable, and an existing file is a regular file (not a FIFO or device)
 * with exactly this build's header (a "\r\n" line end is accepted). */
pb_status pb_results_check_target(const char *path);
/* Appends the row (and the header when the file is new) with one write()
 * under an exclusive flock, ending it as the file's header line ends ("\n",
 * or "\r\n" in a file saved with CRLF). A write that fails (a full disk, a
 * file size limit) is undone under the lock: the file is cut back to its
 * old size, and one this call created is removed. */
pb_status pb_results_append(const char *path, const pb_record *r);
/* The same append for any schema: `header` (its line, '\n' ended) and
 * `rows` (whole '\n'-ended lines, written together in the one write()).
 * bench comm appends its rows of a run this way (harness/comm_csv.h). */
pb_status pb_results_append_rows(const char *path, const char *header, const char *rows);
/* pb_results_check_target against another schema's header line. */
pb_status pb_results_check_target_of(const char *path, const char *header);

#ifdef __cplusplus
}
#endif
#endif /* PB_RESULTS_H */
