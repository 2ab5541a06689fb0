/* The MPI world of a rank-per-device run and the `mpi` comm.
 *
 * kernels/comm_mpi.c implements both when the build found MPI (PB_HAVE_MPI);
 * kernels/comm_mpi_stub.c otherwise, whose pb_mpi_available() is false and
 * whose functions fail with "built without MPI".
 *
 * Threading: MPI is initialised with MPI_THREAD_SERIALIZED. The `mpi` comm
 * runs its collectives on a comm thread of its own (so they progress while
 * the calling thread computes backward); the world functions below are
 * called by the main thread only while no comm operation is outstanding,
 * so no two threads are ever inside MPI at once. */
#ifndef PB_COMM_MPI_H
#define PB_COMM_MPI_H

#include <stdbool.h>

#include "../harness/status.h"
#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pb_world {
    int rank, ranks;             /* MPI_COMM_WORLD */
    int local_rank, local_ranks; /* MPI_Comm_split_type(MPI_COMM_TYPE_SHARED): this node */
    int nodes;                   /* nodes (shared-memory domains) of the run */
    bool oversubscribed;         /* some node has more ranks than online cores */
    char host[256];
    char node_map[512];          /* rank 0: "vm1 (ranks 0-7), vm2 (ranks 8-15)"; else empty */
    char version[256];           /* MPI_Get_library_version, first line */
} pb_world;

bool pb_mpi_available(void);
/* MPI_Init_thread (SERIALIZED) and the rank's place in the world (its
 * node's ranks, and for rank 0 which host ran which ranks); also
 * the node's shared progress slots (harness/progress.h), which the `mpi`
 * comm's deadline messages read to name a stuck rank. Best effort: without
 * them the messages are generic. pb_world_finalize frees them. */
pb_status pb_world_init(pb_world *w);
void pb_world_finalize(void);
/* Elementwise MAX of n doubles over ranks into rank 0's v (in place). */
pb_status pb_world_max_to_root(double *v, int n);
/* Per step i of n, the slowest rank: rank 0's v[i] becomes the MAX over
 * ranks and rank 0's rows[i*width .. +width) that rank's row (ties: the
 * lowest rank), so a row's parts still add up to its step. In place. */
pb_status pb_world_slowest_to_root(double *v, double *rows, int n, int width);
/* Rank 0's *value to every rank; the others poll with short sleeps, so a
 * rank 0 busy with long work (--verify) is not slowed by spinning ranks. */
pb_status pb_world_bcast_int_lazy(int *value);
/* Ends every rank of the run (MPI_Abort); returns only without MPI. */
void pb_world_abort(int code);

extern const pb_comm pb_comm_mpi;

#ifdef __cplusplus
}
#endif
#endif /* PB_COMM_MPI_H */
