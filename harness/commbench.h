/* bench comm: collective bandwidth in the manner of nccl-tests, for the
 * run's comms (local, mpi, nccl) over a ladder of sizes (docs/comm.md).
 *
 * harness/commbench_args.c parses and checks the command line (every usage
 * error before anything starts, exit 2, nothing written);
 * harness/commbench.c measures, prints nccl-tests' table on stdout, fits
 * alpha-beta per collective (harness/comm_fit.h) and appends the rows
 * (harness/comm_csv.h). mpi and nccl run a rank per device: bench
 * re-executes itself under mpirun as a ddp run does (harness/launch.h). */
#ifndef PB_COMMBENCH_H
#define PB_COMMBENCH_H

#include <stdbool.h>
#include <stddef.h>

#include "comm_fit.h"
#include "config.h"
#include "status.h"
#include "../kernels/world.h"

#define PB_COMMBENCH_MAX_SIZES 64
#define PB_COMMBENCH_DEFAULT_MIN ((size_t)8)
#define PB_COMMBENCH_DEFAULT_MAX ((size_t)1 << 30)

typedef struct pb_commbench_opts {
    char comm[32];    /* resolved: local, mpi or nccl */
    char backend[32]; /* resolved: cpu or cuda */
    int ranks;
    size_t sizes[PB_COMMBENCH_MAX_SIZES]; /* bytes, ascending */
    int n_sizes;
    bool sizes_given;
    bool coll[PB_COLL_COUNT]; /* the collectives to run */
    int iters, warmup;
    double timeout_s;
    char out[4096];
    bool quiet;
} pb_commbench_opts;

/* Parses argv (what follows "comm") into o and checks it against this host:
 * the names, the comm against the backend, the ranks, --out's target, and
 * that every rank's two buffers of the largest size fit the host's memory
 * (and each GPU's) when this process is the one that launches the ranks.
 * Default sizes whose top would not fit stop at the largest size that
 * does (a notice says so); given ones are a usage error. *help: --help was
 * printed. */
pb_status pb_commbench_parse(int argc, char **argv, pb_commbench_opts *o, bool *help);
void pb_commbench_print_help(void);

/* The flag loop bench comm and bench check share: --help (or -h) sets
 * *help and stops, --quiet sets *quiet; each flag of with_value (NULL
 * ended; --ranks counts as --gpus) may be given once, as "--flag value" or
 * "--flag=value", and fn gets its index in with_value and its value;
 * anything else is a usage error naming bench `cmd`. */
typedef pb_status (*pb_commbench_flag_fn)(void *ctx, int k, const char *name, const char *value);
pb_status pb_commbench_walk_flags(int argc, char **argv, const char *cmd, const char *const *with_value, bool *quiet,
                                  bool *help, pb_commbench_flag_fn fn, void *ctx);
/* The values both take, checked as bench comm checks them (usage errors). */
pb_status pb_commbench_parse_ranks(const char *flag, const char *text, int *out);
pb_status pb_commbench_parse_timeout(const char *text, double *out);
pb_status pb_commbench_parse_out(const char *text, char *out, size_t len);

/* --comm and --backend: auto resolved and the pair checked (a usage
 * error, or unavailable when the build lacks the comm). */
pb_status pb_commbench_resolve(pb_commbench_opts *o);

/* For bench check (harness/check.h): o's collectives swept over the MPI
 * world w already started, this process one of its ranks; rank 0 prints
 * the table and has each size's busbw in busbw_gbps[] (o->n_sizes; left
 * as it was for a size skipped); no rows are written. */
pb_status pb_commbench_sweep_world(const pb_commbench_opts *o, const pb_world *w, double *busbw_gbps);

/* Outside an MPI launch, a rank-per-device command re-executes itself
 * under mpirun (harness/launch.h) with cfg's ranks, backstop and report
 * file, main_argv and then extra[n_extra] as its command line; returns the
 * exit code this process ends with (the job's, or a failure's). */
int pb_commbench_relaunch(const pb_config *cfg, int main_argc, char **main_argv, char *const *extra, int n_extra);

/* The bytes one rank holds for a size: two buffers of it. */
size_t pb_commbench_rank_bytes(size_t max_size);

/* The command, with the whole command line for the re-execution under
 * mpirun; the process's exit code: 0 every result right, 1 a result wrong
 * (its rows say failed) or a run failure, 2 usage. */
int pb_commbench_main(int argc, char **argv, int main_argc, char **main_argv);

#endif /* PB_COMMBENCH_H */
