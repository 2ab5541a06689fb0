/* MPI_TRY for the files built with MPI (comm_mpi.c, world_mpi.c, cuda/comm_nccl.c):
 * an MPI call's error as a status with file:line and MPI's own words, then
 * the caller's `cleanup:` (with `pb_status st` in scope). */
#ifndef PB_MPI_TRY_H
#define PB_MPI_TRY_H

#include <mpi.h>

#include "../harness/status.h"

#define MPI_TRY(call)                                                            \
    do {                                                                         \
        int rc_ = (call);                                                        \
        if (rc_ != MPI_SUCCESS) {                                                \
            char msg_[MPI_MAX_ERROR_STRING];                                     \
            int len_ = 0;                                                        \
            MPI_Error_string(rc_, msg_, &len_);                                  \
            st = pb_error(PB_ERR_COMM, "%s failed: %.*s", #call, len_, msg_);    \
            goto cleanup;                                                        \
        }                                                                        \
    } while (0)

#endif /* PB_MPI_TRY_H */
