#include "input.h"

#include <stdlib.h>
#include <string.h>

pb_status pb_input_init(pb_input *in, const pb_backend *be, pb_device *dev, size_t row0, size_t rows,
                        size_t features, bool in_place)
{
    pb_status st = PB_OK;
    memset(in, 0, sizeof *in);
    in->be = be;
    in->dev = dev;
    in->row0 = row0;
    in->rows = rows;
    in->features = features;
    /* test-only: exercise the staged path on the CPU backend too, where the
     * in-place path would otherwise always be taken (docs/strategies.md) */
    const char *force = getenv("PB_TEST_STAGE_INPUTS");
    in->in_place = in_place && !(force && *force && strcmp(force, "0") != 0);
    in->prefetched = -1;
    for (int i = 0; i < 2 && !in->in_place; i++) {
        PB_TRY(be->alloc(dev, rows * features * sizeof(float), (void **)&in->x_stage[i]));
        PB_TRY(be->alloc(dev, rows * sizeof(int32_t), (void **)&in->label_stage[i]));
    }
    return PB_OK;
cleanup:
    pb_input_destroy(in);
    return st;
}

void pb_input_destroy(pb_input *in)
{
    for (int i = 0; i < 2 && in->be; i++) {
        if (in->x_stage[i]) in->be->free(in->dev, in->x_stage[i]);
        if (in->label_stage[i]) in->be->free(in->dev, in->label_stage[i]);
    }
    memset(in, 0, sizeof *in);
}

void pb_input_shard(int b, int n, int r, int *row0, int *rows)
{
    int64_t lo = (int64_t)r * b / n, hi = (int64_t)(r + 1) * b / n;
    *row0 = (int)lo;
    *rows = (int)(hi - lo);
}

/* Where the device's rows start in what the loader holds: the loader may
 * hold only a shard of the global batch (a rank's), starting at its row0. */
static size_t first_row(const pb_input *in, const pb_batch *batch) { return in->row0 - (size_t)batch->row0; }

/* Enqueues the copy of a step's rows into a slot on the copy stream. */
static pb_status prefetch_rows(pb_input *in, int slot, size_t r0, const float *x, const int32_t *labels)
{
    pb_status st = in->be->prefetch(in->dev, in->x_stage[slot], x + r0 * in->features,
                                    in->rows * in->features * sizeof(float));
    if (st != PB_OK) return st;
    return in->be->prefetch(in->dev, in->label_stage[slot], labels + r0, in->rows * sizeof(int32_t));
}

pb_status pb_input_load(pb_input *in, const pb_batch *batch, void **x, int32_t **labels)
{
    pb_status st = PB_OK;
    size_t r0 = first_row(in, batch);
    PB_REQUIRE(batch->row0 >= 0 && (size_t)batch->row0 <= in->row0 && r0 + in->rows <= (size_t)batch->count,
               PB_ERR_INTERNAL, "rows %zu to %zu are not among the loader's %d to %d", in->row0,
               in->row0 + in->rows, batch->row0, batch->row0 + batch->count);
    if (in->in_place) {
        *x = (void *)(batch->x + r0 * in->features);
        *labels = (int32_t *)(batch->labels + r0);
        return PB_OK;
    }
    int slot = (int)(batch->step & 1);
    if (in->prefetched != batch->step) PB_TRY(prefetch_rows(in, slot, r0, batch->x, batch->labels));
    PB_TRY(in->be->prefetch_wait(in->dev));
    PB_TRY(in->be->cast_params(in->dev, *x, in->x_stage[slot], in->rows * in->features));
    PB_TRY(in->be->copy(in->dev, *labels, in->label_stage[slot], in->rows * sizeof(int32_t)));
cleanup:
    return st;
}

pb_status pb_input_prefetch_next(pb_input *in, const pb_batch *batch)
{
    in->prefetched = -1;
    if (in->in_place || !batch->next_x) return PB_OK;
    pb_status st =
        prefetch_rows(in, (int)((batch->step + 1) & 1), first_row(in, batch), batch->next_x, batch->next_labels);
    if (st == PB_OK) in->prefetched = batch->step + 1;
    return st;
}
