/* `zero`'s layout and communication volume, for its memory plan, its row
 * and the tests (strategies/zero.c; docs/strategies.md, "zero"). */
#ifndef PB_ZERO_H
#define PB_ZERO_H

#include <stddef.h>

#include "../harness/config.h"
#include "../workloads/workload.h"
#include "volume.h"

/* Every block padded to N equal chunks, rank r owning chunk r of each. */
typedef struct pb_zero_layout {
    size_t padded;    /* floats of all blocks padded: sum over blocks of N * chunk */
    size_t shard;     /* a rank's floats: sum of chunks (padded / N) */
    size_t max_block; /* the largest padded block: a gather or gradient buffer */
    int max_bucket_blocks; /* the most blocks a --bucket-mb bucket holds */
    int grad_slots;   /* stages 2 and 3: gradient buffers of max_block floats */
    size_t last_chunk; /* the last block's chunk: stage 3 gathers it once, for forward and backward */
} pb_zero_layout;

void pb_zero_layout_of(const pb_config *cfg, const pb_model *model, int ranks, pb_zero_layout *out);

/* The floats a rank hands the all-gathers per step: its shard, at stage 3
 * twice less the last block's chunk (its backward reuses forward's gather). */
size_t pb_zero_gathered(const pb_config *cfg, const pb_zero_layout *g);

/* Per rank per step, a ring's wire volume: reduce-scatter (N-1) x shard x 4
 * bytes (padding counted as sent); all-gather (N-1) x pb_zero_gathered x 4. */
void pb_zero_bytes(const pb_config *cfg, const pb_model *model, int ranks, pb_comm_bytes *out);

#endif /* PB_ZERO_H */
