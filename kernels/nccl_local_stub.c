/* Built without NCCL (no CUDA backend): dp keeps its comm's peer copies. */
#include "nccl_local.h"

bool pb_nccl_local_built(void) { return false; }

pb_status pb_nccl_local_init(pb_device *const *dev, int n, pb_nccl_local **out)
{
    (void)dev;
    (void)n;
    *out = NULL;
    return pb_user_error(PB_ERR_UNAVAILABLE, "NCCL within one process: built without NCCL");
}

void pb_nccl_local_destroy(pb_nccl_local *g) { (void)g; }

pb_status pb_nccl_local_broadcast(pb_nccl_local *g, void *const *buf, size_t bytes, int root)
{
    (void)g, (void)buf, (void)bytes, (void)root;
    return pb_error(PB_ERR_INTERNAL, "NCCL within one process: built without NCCL");
}

pb_status pb_nccl_local_reduce(pb_nccl_local *g, float *const *buf, size_t n, int root)
{
    (void)g, (void)buf, (void)n, (void)root;
    return pb_error(PB_ERR_INTERNAL, "NCCL within one process: built without NCCL");
}
