/* Built without MPI: the `mpi` comm is listed but cannot start, and the
 * rank-per-device strategies say so in their validation (exit 2). */
#include "comm_mpi.h"

static pb_status stub_init(const pb_comm_opts *opts, const pb_backend *be, pb_device *dev, int rank, int ranks,
                           pb_comm_ctx **ctx)
{
    (void)opts;
    (void)be;
    (void)dev;
    (void)rank;
    (void)ranks;
    *ctx = NULL;
    return pb_user_error(PB_ERR_UNAVAILABLE, "comm mpi: " PB_NO_MPI);
}

static void stub_destroy(pb_comm_ctx *ctx) { (void)ctx; }

static const char *stub_version(void) { return ""; }

const pb_comm pb_comm_mpi = {
    .name = "mpi",
    .description = "MPI collectives (this build: " PB_NO_MPI ")",
    .between_ranks = true,
    .device_buffers = false,
    .init = stub_init,
    .destroy = stub_destroy,
    .version = stub_version,
};
