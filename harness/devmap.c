#include "devmap.h"

#include <stddef.h>

static const char *shown(const char *cuda_visible) { return cuda_visible ? cuda_visible : "unset"; }

pb_status pb_rank_device(const pb_rank_view *v, int *ordinal)
{
    const char *env = shown(v->cuda_visible);
    if (v->map && v->n_map > 0) {
        if (v->rank < 0 || v->rank >= v->n_map)
            return pb_error(PB_ERR_INTERNAL, "rank %d has no --device-map entry (%d entries)", v->rank, v->n_map);
        int d = v->map[v->rank];
        if (d < 0 || d >= v->visible)
            return pb_usage_error("--device-map: rank %d's device %d does not exist; this rank sees %d CUDA "
                                  "device%s (CUDA_VISIBLE_DEVICES=%s); allowed: 0 to %d",
                                  v->rank, d, v->visible, v->visible == 1 ? "" : "s", env, v->visible - 1);
        *ordinal = d;
        return PB_OK;
    }
    if (v->local_rank < 0 || v->local_rank >= v->local_ranks)
        return pb_error(PB_ERR_INTERNAL, "local rank %d of %d", v->local_rank, v->local_ranks);
    if (v->visible >= v->local_ranks) {
        *ordinal = v->local_rank;
        return PB_OK;
    }
    if (v->visible == 1 && v->cuda_visible && *v->cuda_visible) {
        *ordinal = 0;
        return PB_OK;
    }
    return pb_usage_error("this node runs %d ranks and rank %d sees %d CUDA device%s (CUDA_VISIBLE_DEVICES=%s); "
                          "allowed: each rank sees its own one device (srun --gpus-per-task=1, a per-rank "
                          "CUDA_VISIBLE_DEVICES) or every rank sees at least %d",
                          v->local_ranks, v->rank, v->visible, v->visible == 1 ? "" : "s", env, v->local_ranks);
}
