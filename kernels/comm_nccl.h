/* The `nccl` comm: collectives on device buffers of the cuda backend, one
 * MPI rank per GPU, NCCL bootstrapped by broadcasting ncclGetUniqueId over
 * MPI_COMM_WORLD.
 *
 * kernels/cuda/comm_nccl.c implements it when the build has both the CUDA
 * backend and MPI; kernels/comm_nccl_stub.c otherwise, whose init fails with
 * "built without CUDA" or "built without MPI". */
#ifndef PB_COMM_NCCL_H
#define PB_COMM_NCCL_H

#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const pb_comm pb_comm_nccl;

#ifdef __cplusplus
}
#endif
#endif /* PB_COMM_NCCL_H */
