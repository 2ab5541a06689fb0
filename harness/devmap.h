/* Which device a rank of a rank-per-device strategy (ddp) opens: the one
 * decision, pure, so the launch layouts can be tested without GPUs.
 * Launchers show a rank either the whole node (mpirun: every GPU visible to
 * every rank) or its own device (srun --gpus-per-task=1, --gpu-bind, a
 * per-rank CUDA_VISIBLE_DEVICES wrapper). */
#ifndef PB_DEVMAP_H
#define PB_DEVMAP_H

#include "status.h"

typedef struct pb_rank_view {
    int visible;     /* devices this rank sees (after CUDA_VISIBLE_DEVICES) */
    int local_rank;  /* this rank's index among its node's ranks */
    int local_ranks; /* the run's ranks on this node */
    int rank;        /* the global rank: its entry of map */
    /* optional (a --device-map for ddp): global rank -> ordinal among the
     * visible devices; entries may repeat (ranks sharing a device, a
     * test-only oversubscribed mode); NULL or n_map 0: the rule below */
    const int *map;
    int n_map;
    /* CUDA_VISIBLE_DEVICES as this rank sees it, NULL when unset: a rank that
     * sees one device because its launcher chose it for it has it set; a
     * one-GPU node shows one device with it unset */
    const char *cuda_visible;
} pb_rank_view;

/* The ordinal (among the visible devices) the rank opens:
 *   - a map: its entry, which must be a visible device;
 *   - as many visible devices as the node's ranks, or more: its local rank;
 *   - exactly one visible device, chosen for it (CUDA_VISIBLE_DEVICES set):
 *     that one;
 *   - anything else: a usage error naming the counts and CUDA_VISIBLE_DEVICES.
 * Nothing is written to *ordinal on error. */
pb_status pb_rank_device(const pb_rank_view *v, int *ordinal);

#endif /* PB_DEVMAP_H */
