/* Built without MPI: the `mpi` comm is listed but cannot start, and the
 * rank-per-device strategies say so in their validation (exit 2). */
#include <string.h>

#include "comm_mpi.h"

#define NO_MPI "built without MPI (install Open MPI and rebuild; `make` detects mpicc)"

bool pb_mpi_available(void) { return false; }

pb_status pb_world_init(pb_world *w)
{
    memset(w, 0, sizeof *w);
    return pb_user_error(PB_ERR_UNAVAILABLE, NO_MPI);
}

void pb_world_finalize(void) {}

pb_status pb_world_max_to_root(double *v, int n)
{
    (void)v;
    (void)n;
    return pb_user_error(PB_ERR_UNAVAILABLE, NO_MPI);
}

pb_status pb_world_slowest_to_root(double *v, double *rows, int n, int width)
{
    (void)v;
    (void)rows;
    (void)n;
    (void)width;
    return pb_user_error(PB_ERR_UNAVAILABLE, NO_MPI);
}

pb_status pb_world_bcast_int_lazy(int *value)
{
    (void)value;
    return pb_user_error(PB_ERR_UNAVAILABLE, NO_MPI);
}

void pb_world_abort(int code) { (void)code; }

static pb_status stub_init(const pb_comm_opts *opts, const pb_backend *be, pb_device *dev, int rank, int ranks,
                           pb_comm_ctx **ctx)
{
    (void)opts;
    (void)be;
    (void)dev;
    (void)rank;
    (void)ranks;
    *ctx = NULL;
    return pb_user_error(PB_ERR_UNAVAILABLE, "comm mpi: " NO_MPI);
}

static void stub_destroy(pb_comm_ctx *ctx) { (void)ctx; }

static const char *stub_version(void) { return ""; }

const pb_comm pb_comm_mpi = {
    .name = "mpi",
    .description = "MPI collectives (this build: " NO_MPI ")",
    .between_ranks = true,
    .device_buffers = false,
    .init = stub_init,
    .destroy = stub_destroy,
    .version = stub_version,
};
