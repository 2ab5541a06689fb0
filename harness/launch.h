/* The launcher of rank-per-device strategies (ddp).
 *
 * Started outside an MPI launch, `bench --strategy ddp --gpus N ...`
 * re-executes itself as `mpirun -np N [--allow-run-as-root]
 * [--oversubscribe] --timeout T /proc/self/exe ARGS...`. Started inside one
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

/* mpirun's own wall-clock backstop for a run of cfg, for a rank that hangs
 * where no deadline reaches (MPI's set-up, rank 0's --verify):
 * (--timeout + 60 s) x (steps x (1 + N with --verify) + 4) + 60 s, so a
 * healthy run whose steps take up to a minute longer than --timeout is
 * never cut short. */
int pb_launch_backstop_s(const pb_config *cfg);

/* For a rank-per-device strategy: inside a launch, checks --gpus against its
 * size and returns PB_OK (the caller runs as one rank); outside one, replaces
 * this process with mpirun running argv (argv[0] is replaced by our own
 * binary) and returns only on failure. */
pb_status pb_launch(const pb_config *cfg, int argc, char **argv);

#endif /* PB_LAUNCH_H */
