/* The configuration key over rows read back (DESIGN.md "Results"): which
 * columns tell two runs' configurations apart (the `key` of each column in
 * PB_COLUMNS, harness/results.h) and how two values compare. sweep's resume,
 * compare's pairing and plot's grouping all use it, so a flag that changes
 * the numbers separates rows in every tool at once.
 *
 * Values compare as numbers when both are numbers ("0.01" equals "0.010",
 * "1" equals "1.0"), otherwise as text; "" equals only "". */
#ifndef PB_KEY_H
#define PB_KEY_H

#include <stdbool.h>
#include <stddef.h>

#include "csv_read.h"
#include "../harness/results.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pb_key_use {
    PB_KEY_PAIR,   /* compare and plot: the PB_KEY_ALL columns */
    PB_KEY_SWEEP,  /* sweep's resume: PB_KEY_ALL and PB_KEY_RESUME columns */
    PB_KEY_ENV,    /* the environment: the ENV columns that describe the
                    * machine, its libraries and the build (pb_key_env_diff) */
} pb_key_use;

/* The key columns two files share: col[i] is at index ia[i] in a and ib[i]
 * in b (b may be NULL: one file, ib = ia). */
typedef struct pb_key {
    size_t n;
    pb_column col[PB_COL_COUNT];
    int ia[PB_COL_COUNT], ib[PB_COL_COUNT];
} pb_key;

/* The columns of `use` that a (and b) have, in schema order. */
void pb_key_init(pb_key *k, pb_key_use use, const pb_csv *a, const pb_csv *b);
/* Leaves column c out of k (plot's series leave out the device count). */
void pb_key_drop(pb_key *k, pb_column c);
/* Is column c in the key of `use`? */
bool pb_key_uses(pb_key_use use, pb_column c);

/* A value in the key's canonical form: a number as "%.15g", other text as
 * it is; buf takes the number. */
const char *pb_key_canonical(const char *v, char *buf, size_t len);
/* <0, 0, >0: numbers as numbers, before any text; text by strcmp. */
int pb_key_value_cmp(const char *x, const char *y);
/* Row ra of a against row rb of b over the key's columns (first difference). */
int pb_key_cmp(const pb_key *k, const pb_csv *a, size_t ra, const pb_csv *b, size_t rb);

/* The environment rule (docs/sweep.md "Resuming"): two rows were measured
 * in the same environment unless a column of the PB_KEY_ENV key (host,
 * cpu_model, gpu_name, driver, cuda_runtime, cublas, nccl, mpi, blas,
 * blas_version, compiler, git_rev) holds a different value in each. Not
 * time_utc (when, not where), nor what follows from the configuration
 * (gpu_count, p2p, oversubscribed). A column empty on one side says nothing:
 * a one-process run records no mpi, a cpu run no driver, and a sweep knows
 * no MPI version before it runs. Puts the indices into k of the differing
 * columns in diff (room for k->n) and returns how many there are. */
size_t pb_key_env_diff(const pb_key *k, const pb_csv *a, size_t ra, const pb_csv *b, size_t rb, size_t *diff);

#ifdef __cplusplus
}
#endif
#endif /* PB_KEY_H */
