/* A device's rows of each step's batch, from the loader's (pinned) host
 * buffers to the device: staged through two fp32 device slots, the next
 * step's rows copied on the copy stream while this step computes, then
 * converted to the activation type; or, where device memory is host memory
 * (the CPU) and activations are fp32, read in place with no copy at all.
 * Shared by every strategy that feeds a device from the loader. */
#ifndef PB_INPUT_H
#define PB_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../kernels/backend.h"
#include "replica.h"
#include "strategy.h"

typedef struct pb_input {
    const pb_backend *be;
    pb_device *dev;
    size_t row0, rows; /* rows [row0, row0+rows) of the global batch */
    size_t in_bytes, target_bytes; /* a row's, in the loader's batch */
    size_t in_elems;   /* a row's input values */
    bool convert;      /* inputs are fp32 values for the activation type */
    bool in_place;
    void *x_stage[2];
    void *target_stage[2];
    int64_t prefetched; /* step whose rows are in flight to their slot, -1 none */
} pb_input;

/* in_place: the caller's choice (be->host_is_device, fp32 activations, no
 * graph that would bake in one address); inputs that are not values
 * (token ids) need no conversion, so only the device decides. The test-only environment variable
 * PB_TEST_STAGE_INPUTS=1 forces staging, so the CPU tests cover that path. */
/* Rank r's rows of a batch of b over n ranks: [r*b/n, (r+1)*b/n), so shards
 * differ by at most one row when n does not divide b. What a ddp rank
 * trains on, and all its loader fills. */
void pb_input_shard(int b, int n, int r, int *row0, int *rows);

pb_status pb_input_init(pb_input *in, const pb_backend *be, pb_device *dev, size_t row0, size_t rows,
                        const pb_model *model, bool in_place);
void pb_input_destroy(pb_input *in);
/* Bytes of `rows` rows of inputs on the device (converted to the activation
 * type where they are values). */
size_t pb_input_device_bytes(const pb_input *in, size_t rows);

/* This step's rows. In place, *x and *targets are pointed into the
 * loader's batch; otherwise the rows arrive (waiting for their prefetch, or
 * copied now) and are converted into *x (the activation type, where the
 * workload's inputs are values; copied as they are otherwise) and copied
 * into *targets, the caller's device buffers. */
pb_status pb_input_load(pb_input *in, const pb_batch *batch, void **x, void **targets);

/* `rows` samples of a batch's inputs (host) into a stage's input on the
 * device, converted to the activation type where they are values. */
pb_status pb_input_upload(const pb_backend *be, pb_device *dev, const pb_model *model, void *dst, const void *src,
                          size_t rows);

/* pb_input_load into a replica's input (block 0's) and targets: its stage
 * reads the loader's rows in place, or its own buffers get them. */
pb_status pb_input_load_replica(pb_input *in, const pb_batch *batch, pb_replica *r);

/* Starts copying the next step's rows when the loader already has them. */
pb_status pb_input_prefetch_next(pb_input *in, const pb_batch *batch);

#endif /* PB_INPUT_H */
