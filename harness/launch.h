/* The launcher of rank-per-device strategies (ddp).
 *
 * Started outside an MPI launch, `bench --strategy ddp --gpus N ...`
 * re-executes itself as `mpirun [--allow-run-as-root] [--oversubscribe]
 * --stdin none [-x PB_LAUNCH_REPORT] --timeout T -np N /proc/self/exe
 * ARGS...`, under a parent that stays (harness/supervise.c). Started inside one
 * (mpirun, srun), it uses the launcher's ranks, and --gpus must equal their
 * number. Called after the configuration is validated, so a usage error
 * costs no launch. */
#ifndef PB_LAUNCH_H
#define PB_LAUNCH_H

#include <stdbool.h>

#include "config.h"
#include "status.h"

/* True inside an MPI launch: OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK is
 * set, or this is a task of an srun step (a numeric SLURM_STEP_ID and
 * SLURM_PROCID; an sbatch script has no step id and is not a launch). */
bool pb_launch_inside(void);
/* The launch's size and this process's rank from the environment; -1 when
 * the launcher does not say (PMIx only: known after MPI_Init). Under srun:
 * SLURM_STEP_NUM_TASKS (else SLURM_NTASKS) and SLURM_PROCID. */
int pb_launch_size(void);
int pb_launch_rank(void);
/* Inside a launch whose size the environment gives: the log's rank and
 * size from it, so that only rank 0 logs from the first line on (MPI, which
 * knows them too, starts only once the configuration is valid). */
void pb_launch_set_log_rank(void);
/* True in a rank that `bench` itself re-executed under mpirun: the parent
 * has already said what it resolved (the auto backend). */
bool pb_launch_reexecuted(void);

/* The job's wall-clock backstop for a run of cfg (mpirun's --timeout, and
 * the launcher's own deadline for mpirun), for a rank that hangs where no
 * deadline reaches (MPI's set-up, rank 0's --verify) or a hung mpirun:
 * (--timeout + 60 s) x (steps x (1 + N with --verify) + 4) + 60 s, so a
 * healthy run whose steps take up to a minute longer than --timeout is
 * never cut short. */
int pb_launch_backstop_s(const pb_config *cfg);

/* For a rank-per-device strategy: inside a launch, checks --gpus against its
 * size, makes this rank die with its parent (mpirun, orted, slurmstepd:
 * SIGKILL) and returns PB_OK (the caller runs as one rank); outside one,
 * replaces this process with mpirun running argv (argv[0] is replaced by our
 * own binary) and returns only on failure. */
pb_status pb_launch(const pb_config *cfg, int argc, char **argv);

/* The file bench's launcher waits on (harness/supervise.c): rank 0 appends
 * its outcome to it; the launcher holds a shared flock on it while alive. */
#define PB_LAUNCH_REPORT_ENV "PB_LAUNCH_REPORT"

/* Right before rank 0 appends its row: PB_OK while the job's launcher is
 * there; a user error (no row may be written) once the rank's parent has
 * changed, or bench's launcher is gone. PB_OK outside a launch. */
pb_status pb_launch_may_write(void);
/* Rank 0 of a job bench launched tells the launcher what it did ("row"
 * once its row is appended, "interrupted" when it stopped for a signal);
 * nothing elsewhere. */
void pb_launch_report(const char *what);
/* Rank 0 of a job bench's launcher started, every rank having ended
 * cleanly with code as the run's outcome: hands code to the launcher
 * ("exit N" in its report), which exits with it, so that this rank can exit
 * 0 and mpirun prints no "Primary job terminated normally, but 1 process
 * returned a non-zero exit code" banner after a failure already explained.
 * Does nothing elsewhere (a user's own mpirun or srun gets the code). */
void pb_launch_hand_exit(int code);
/* Whether pb_launch_hand_exit handed the code: main then exits 0. */
bool pb_launch_exit_handed(void);

#endif /* PB_LAUNCH_H */
