/* Built without the CUDA backend or without MPI: the `nccl` comm is listed
 * but cannot start (NCCL runs on cuda devices and is bootstrapped over MPI). */
#include "comm_mpi.h"
#include "comm_nccl.h"

#define NO_NCCL "built without CUDA or without MPI (NCCL needs both: nvcc and mpicc found by `make`)"

static pb_status stub_init(const pb_comm_opts *opts, const pb_backend *be, pb_device *dev, int rank, int ranks,
                           pb_comm_ctx **ctx)
{
    (void)opts;
    (void)be;
    (void)dev;
    (void)rank;
    (void)ranks;
    *ctx = NULL;
    if (!pb_cuda_built())
        return pb_user_error(PB_ERR_UNAVAILABLE, "comm nccl: built without CUDA (rebuild where `make` finds nvcc)");
    if (!pb_mpi_available())
        return pb_user_error(PB_ERR_UNAVAILABLE,
                             "comm nccl: built without MPI, which bootstraps NCCL (install Open MPI and rebuild)");
    return pb_user_error(PB_ERR_UNAVAILABLE, "comm nccl: " NO_NCCL);
}

static void stub_destroy(pb_comm_ctx *ctx) { (void)ctx; }

static const char *stub_version(void) { return ""; }

const pb_comm pb_comm_nccl = {
    .name = "nccl",
    .description = "NCCL collectives on GPU buffers (this build: " NO_NCCL ")",
    .between_ranks = true,
    .device_buffers = true,
    .init = stub_init,
    .destroy = stub_destroy,
    .version = stub_version,
};
