/* A run's identity: its run_id (one per run, the same on every rank of a
 * ddp job), and the labels a person gives it (--tag). The id is in the
 * row, in every line of --steps-out, in the --dump and --steps-out paths
 * that ask for it ({run_id}), and printed at start on stderr, so a row
 * leads back to its files and logs (docs/csv-schema.md, "run_id"). */
#ifndef PB_RUNID_H
#define PB_RUNID_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The variable that carries the id: bench's ddp launcher sets it for its
 * ranks (mpirun -x), and a user may set it to name a run beforehand (an
 * nsys report, a job script's log). */
#define PB_RUN_ID_ENV "PB_RUN_ID"
#define PB_LABEL_MAX 64 /* longest run_id or tag, in bytes */
/* What a label may hold, for messages */
#define PB_LABEL_ALLOWED "1 to 64 letters, digits, '.', '_', '-'"

/* s is 1 to PB_LABEL_MAX of [A-Za-z0-9._-]: safe in a file name, a CSV
 * field and a shell word unquoted. */
bool pb_label_valid(const char *s);

/* The run's id into out (at least PB_LABEL_MAX + 1 bytes): $PB_RUN_ID when
 * set (a usage error when it is not a valid label), else a new one,
 * "YYYYMMDDTHHMMSSZ-HOST-PID-RAND" (UTC time, the host name cut to fit,
 * 4 random hex digits), which is then exported as $PB_RUN_ID so that a
 * launched job's ranks take the same. */
pb_status pb_run_id_init(char *out, size_t len);

/* Replaces every "{run_id}" in path (a buffer of len bytes) with id; a
 * usage error naming flag when the result does not fit. */
pb_status pb_run_id_expand(const char *flag, char *path, size_t len, const char *id);

#ifdef __cplusplus
}
#endif
#endif /* PB_RUNID_H */
