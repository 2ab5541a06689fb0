/* The launcher's parent: `bench --strategy ddp` started outside an MPI
 * launch stays as mpirun's parent for the whole job.
 *
 * - mpirun dies with it (SIGTERM when the launcher dies: mpirun's own abort
 *   ends the ranks), and runs in a process group of its own, so that a
 *   signal to the launcher's group (a terminal's Ctrl-C, `timeout`, `kill --
 *   -PGID`) reaches the launcher alone; it passes exactly one SIGINT/SIGTERM
 *   on to mpirun (a second would make mpirun exit at once, ranks unended).
 * - It waits at most the job's backstop (pb_launch_backstop_s, plus a tenth,
 *   at most 30 s, for mpirun's own --timeout to act first); then SIGTERM to
 *   mpirun's group, SIGKILL after a grace period, a message, exit 1. Time
 *   this process spends stopped (Ctrl-Z) does not count.
 * - mpirun's exit 0 counts only when rank 0 reported its row in the report
 *   file (PB_LAUNCH_REPORT, beside --out, where rank 0 can always write).
 * docs/reliability.md. */
#ifndef PB_SUPERVISE_H
#define PB_SUPERVISE_H

#include <stdbool.h>

#include "config.h"

/* Forks: the child returns (*is_parent false) and goes on to replace itself
 * with mpirun (pb_launch); the parent returns the exit code to end with
 * when the job is over (128 + the signal when it was interrupted, 1 on the
 * backstop or a success without a row, else mpirun's code), or when it
 * could not start it (a message logged). */
int pb_supervise_launch(const pb_config *cfg, bool *is_parent);

#endif /* PB_SUPERVISE_H */
