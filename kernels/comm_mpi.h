/* The `mpi` comm: collectives between the ranks of the MPI world
 * (kernels/world.h, which pb_world_init starts first).
 *
 * kernels/comm_mpi.c implements it when the build found MPI (PB_HAVE_MPI);
 * kernels/comm_mpi_stub.c otherwise, whose init fails with "built without
 * MPI". It runs its collectives on a comm thread of its own (so they
 * progress while the calling thread computes backward); see world.h for
 * why no two threads are ever inside MPI at once. */
#ifndef PB_COMM_MPI_H
#define PB_COMM_MPI_H

#include "../harness/status.h"
#include "comm.h"
#include "world.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const pb_comm pb_comm_mpi;

#ifdef __cplusplus
}
#endif
#endif /* PB_COMM_MPI_H */
