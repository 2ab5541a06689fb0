/* bench comm's CSV: a schema of its own (docs/comm.md says why not the run
 * schema with a `kind` column), appended through the run CSV's writer
 * (harness/results.h: one write() under flock, undone when it fails).
 *
 * Two kinds of row, told apart by `record`:
 *   size  one collective at one size: nccl-tests' columns (bytes, count,
 *         type, redop, root, time, algbw, busbw, wrong) and the time's
 *         spread over the repeats;
 *   fit   one segment of that collective's alpha-beta fit (segment,
 *         bytes_lo..bytes_hi, alpha_us, beta_gbps, fit_busbw_gbps,
 *         fit_rel_rms); the size columns stay empty.
 * Every row carries the configuration (comm, backend, ranks, nodes, iters,
 * warmup) and the environment. Study tools read it back by column name. */
#ifndef PB_COMM_CSV_H
#define PB_COMM_CSV_H

#include "results.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(enum suffix, column name); the file's column order */
#define PB_COMM_COLUMNS(X)                    \
    X(TIME_UTC, "time_utc")                   \
    X(STATUS, "status")                       \
    X(RECORD, "record")                       \
    X(COLLECTIVE, "collective")               \
    X(COMM, "comm")                           \
    X(BACKEND, "backend")                     \
    X(RANKS, "ranks")                         \
    X(NODES, "nodes")                         \
    X(ITERS, "iters")                         \
    X(WARMUP, "warmup")                       \
    X(BYTES, "bytes")                         \
    X(ELEMENTS, "count")                      \
    X(TYPE, "type")                           \
    X(REDOP, "redop")                         \
    X(ROOT, "root")                           \
    X(TIME_US_P50, "time_us_p50")             \
    X(TIME_US_MIN, "time_us_min")             \
    X(TIME_US_MAX, "time_us_max")             \
    X(TIME_US_MEAN, "time_us_mean")           \
    X(TIME_US_CV, "time_us_cv")               \
    X(ALGBW_GBPS, "algbw_gbps")               \
    X(BUSBW_GBPS, "busbw_gbps")               \
    X(BUSBW_FACTOR, "busbw_factor")           \
    X(WRONG, "wrong")                         \
    X(SEGMENT, "segment")                     \
    X(BYTES_LO, "bytes_lo")                   \
    X(BYTES_HI, "bytes_hi")                   \
    X(ALPHA_US, "alpha_us")                   \
    X(BETA_GBPS, "beta_gbps")                 \
    X(FIT_BUSBW_GBPS, "fit_busbw_gbps")       \
    X(FIT_REL_RMS, "fit_rel_rms")             \
    X(HOST, "host")                           \
    X(CPU_MODEL, "cpu_model")                 \
    X(GPU_NAME, "gpu_name")                   \
    X(DRIVER, "driver")                       \
    X(CUDA_RUNTIME, "cuda_runtime")           \
    X(NCCL, "nccl")                           \
    X(MPI, "mpi")                             \
    X(COMPILER, "compiler")                   \
    X(GIT_REV, "git_rev")                     \
    X(ERROR, "error")

#define PB_COMM_COLUMN_ENUM(id, name) PB_CC_##id,
typedef enum pb_comm_column { PB_COMM_COLUMNS(PB_COMM_COLUMN_ENUM) PB_CC_N } pb_comm_column;
#undef PB_COMM_COLUMN_ENUM

typedef struct pb_comm_record {
    char v[PB_CC_N][PB_FIELD_MAX];
} pb_comm_record;

const char *pb_comm_column_name(pb_comm_column c);
/* The header line, '\n' ended (static storage). */
const char *pb_comm_csv_header(void);
void pb_comm_record_set(pb_comm_record *r, pb_comm_column c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A number as "%.6g", "" when not finite */
void pb_comm_record_num(pb_comm_record *r, pb_comm_column c, double v);
/* Appends the row to buf (grown with realloc); false when out of memory. */
bool pb_comm_record_add(char **buf, size_t *len, size_t *cap, const pb_comm_record *r);

#ifdef __cplusplus
}
#endif
#endif /* PB_COMM_CSV_H */
