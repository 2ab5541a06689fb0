/* bench check: a short all-ranks health check (docs/check.md).
 *
 * A rank per device (comm mpi on the cpu backend, nccl on GPUs; re-executed
 * under mpirun as bench comm is) measures its device's GEMM peak (the
 * calibration's square GEMM, kernels/backend.h `calibrate`) and its memory
 * bandwidth (a device-to-device copy, STREAM's copy: 2 x bytes / time);
 * every pair of ranks measures its send/recv bandwidth (both directions at
 * once, a few sizes, the largest one's reported); then one all-reduce sweep
 * as bench comm runs it (pb_commbench_sweep_world). Rank 0 prints a table
 * with the outliers marked, appends rows to a CSV (--out, the schema in
 * docs/check.md), and the command exits 1 when any device or link is below
 * --min-fraction of its peers' median, 0 when none is, 2 on a usage error
 * (nothing written). */
#ifndef PB_CHECK_H
#define PB_CHECK_H

#include "status.h"

/* Outlier: v[i] below frac x the median of its peers (the other entries of
 * the same group, finite ones only). peer_median[i] is that median (NAN:
 * no peer) and verdict[i] 1 an outlier, 0 not, -1 not judged (no peer or
 * v[i] not finite). group may be NULL (one group). */
void pb_check_judge(const double *v, const int *group, int n, double frac, double *peer_median, int *verdict);

/* The command, with the whole command line for the re-execution under
 * mpirun; the process's exit code. */
int pb_check_main(int argc, char **argv, int main_argc, char **main_argv);

#endif /* PB_CHECK_H */
