/* The data loader: fills the global batch of each step into (pinned) host
 * buffers on background threads, up to two steps ahead, like DataLoader
 * workers. The `load` phase is the time a step waits for its batch. Three
 * slots: the step in flight reads one, the next step's batch is ready to be
 * copied to the device meanwhile, the thread fills the third; no allocation
 * after creation. */
#ifndef PB_LOADER_H
#define PB_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "../kernels/backend.h"
#include "../strategies/strategy.h"
#include "../workloads/workload.h"

typedef struct pb_loader pb_loader;

/* Prepares rows [row0, row0 + rows) of each step's global batch, for steps
 * [0, steps), with `workers` threads splitting them: a rank of ddp fills its
 * shard alone, exactly the samples single's loader puts in those rows
 * (samples are pure functions of seed, step and index). */
pb_status pb_loader_create(const pb_backend *be, const pb_model *model, uint64_t seed, int row0, int rows,
                           int64_t steps, int workers, pb_loader **out);
/* Samples filled so far (all steps), so a test can tell that a rank
 * generated its shard and nothing more. */
int64_t pb_loader_filled(pb_loader *l);
/* Loader threads of one process when --loader-threads is not given: the
 * cores left to each of the node's `local_ranks` processes, less one for the
 * thread driving the device, at least 1 and at most 8 (beyond that a GPU
 * step no longer waits). */
int pb_loader_workers_for(long cores, int local_ranks);
/* Waits for step's batch (steps are taken in order) and releases the slot of
 * the previous step for refilling. */
pb_status pb_loader_next(pb_loader *l, int64_t step, pb_batch *out);
/* The batch of a later step if it is already filled, without waiting; its
 * slot stays valid until pb_loader_next(step + 1) returns. */
bool pb_loader_peek(pb_loader *l, int64_t step, const void **inputs, const void **targets);
void pb_loader_destroy(pb_loader *l);

#endif /* PB_LOADER_H */
