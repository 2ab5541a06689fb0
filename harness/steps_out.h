/* --steps-out FILE: every measured step of every rank as a CSV line
 * (docs/csv-schema.md, "Per-step file"): run_id, rank, step, each phase's
 * ms, the step's ms and its loss. The raw data behind the row's summary,
 * for a straggler hunt or a diff of two runs step by step.
 *
 * Whole or absent: the lines go to FILE.tmp-PID beside FILE, renamed onto
 * FILE only once the run's row is appended; a run that fails, is
 * interrupted or cannot append its row leaves no FILE (and an existing one
 * as it was). */
#ifndef PB_STEPS_OUT_H
#define PB_STEPS_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "phase_names.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The whole-or-absent file of --steps-out and --ranks-out (flag names it in
 * messages): open creates path.tmp-PID (its name into tmp); close flushes
 * and closes it, removing it on failure (tmp ""); finish renames it onto
 * path (keep) or removes it; tmp "" does nothing. */
pb_status pb_out_file_open(const char *flag, const char *path, char *tmp, size_t tmp_len, FILE **f);
pb_status pb_out_file_close(const char *flag, const char *path, FILE *f, char *tmp);
pb_status pb_out_file_finish(const char *flag, const char *tmp, const char *path, bool keep);
/* v with %.6g and then sep; only sep when v is not finite (an empty field) */
void pb_out_num(FILE *f, double v, char sep);

/* Values kept per rank and measured step: the phases, then step ms, loss. */
#define PB_STEPS_WIDTH (PB_PHASE_COUNT + 2)

/* Writes the header and ranks x iters lines (v[(rank * iters + i) *
 * PB_STEPS_WIDTH ..]; measured step i is step first_step + i of the run,
 * warm-up included, as in the NVTX ranges "step N") to a temporary file
 * beside path, whose name goes into tmp. On failure nothing is left. */
pb_status pb_steps_out_write(const char *path, const char *run_id, const double *v, int ranks, int iters,
                             int first_step, char *tmp, size_t tmp_len);
/* Renames tmp onto path (keep) or removes it (!keep); tmp "" does nothing. */
pb_status pb_steps_out_finish(const char *tmp, const char *path, bool keep);

#ifdef __cplusplus
}
#endif
#endif /* PB_STEPS_OUT_H */
