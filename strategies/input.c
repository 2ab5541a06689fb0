#include "input.h"

#include <stdlib.h>
#include <string.h>

pb_status pb_input_init(pb_input *in, const pb_backend *be, pb_device *dev, size_t row0, size_t rows,
                        const pb_model *model, bool in_place)
{
    pb_status st = PB_OK;
    memset(in, 0, sizeof *in);
    in->be = be;
    in->dev = dev;
    in->row0 = row0;
    in->rows = rows;
    in->in_bytes = pb_model_input_bytes(model);
    in->target_bytes = pb_model_target_bytes(model);
    in->in_elems = model->input_elems;
    in->convert = model->input_is_act;
    /* test-only: exercise the staged path on the CPU backend too, where the
     * in-place path would otherwise always be taken (docs/strategies.md) */
    const char *force = getenv("PB_TEST_STAGE_INPUTS");
    in->in_place = in_place && !(force && *force && strcmp(force, "0") != 0);
    in->prefetched = -1;
    for (int i = 0; i < 2 && !in->in_place; i++) {
        PB_TRY(be->alloc(dev, rows * in->in_bytes, &in->x_stage[i]));
        PB_TRY(be->alloc(dev, rows * in->target_bytes, &in->target_stage[i]));
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
        if (in->target_stage[i]) in->be->free(in->dev, in->target_stage[i]);
    }
    memset(in, 0, sizeof *in);
}

size_t pb_input_device_bytes(const pb_input *in, size_t rows)
{
    return in->convert ? in->be->act_bytes(in->dev, rows * in->in_elems) : rows * in->in_bytes;
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
static pb_status prefetch_rows(pb_input *in, int slot, size_t r0, const void *x, const void *targets)
{
    pb_status st = in->be->prefetch(in->dev, in->x_stage[slot], (const char *)x + r0 * in->in_bytes,
                                    in->rows * in->in_bytes);
    if (st != PB_OK) return st;
    return in->be->prefetch(in->dev, in->target_stage[slot], (const char *)targets + r0 * in->target_bytes,
                            in->rows * in->target_bytes);
}

pb_status pb_input_load(pb_input *in, const pb_batch *batch, void **x, void **targets)
{
    pb_status st = PB_OK;
    size_t r0 = first_row(in, batch);
    PB_REQUIRE(batch->row0 >= 0 && (size_t)batch->row0 <= in->row0 && r0 + in->rows <= (size_t)batch->count,
               PB_ERR_INTERNAL, "rows %zu to %zu are not among the loader's %d to %d", in->row0,
               in->row0 + in->rows, batch->row0, batch->row0 + batch->count);
    if (in->in_place) {
        *x = (char *)batch->inputs + r0 * in->in_bytes;
        *targets = (char *)batch->targets + r0 * in->target_bytes;
        return PB_OK;
    }
    int slot = (int)(batch->step & 1);
    if (in->prefetched != batch->step) PB_TRY(prefetch_rows(in, slot, r0, batch->inputs, batch->targets));
    PB_TRY(in->be->prefetch_wait(in->dev));
    if (in->convert) PB_TRY(in->be->cast_params(in->dev, *x, in->x_stage[slot], in->rows * in->in_elems));
    else PB_TRY(in->be->copy(in->dev, *x, in->x_stage[slot], in->rows * in->in_bytes));
    PB_TRY(in->be->copy(in->dev, *targets, in->target_stage[slot], in->rows * in->target_bytes));
cleanup:
    return st;
}

pb_status pb_input_upload(const pb_backend *be, pb_device *dev, const pb_model *model, void *dst, const void *src,
                          size_t rows)
{
    if (model->input_is_act) return be->upload_act(dev, dst, src, rows * model->input_elems);
    return be->upload(dev, dst, src, rows * pb_model_input_bytes(model));
}

pb_status pb_input_load_replica(pb_input *in, const pb_batch *batch, pb_replica *r)
{
    pb_replica_bind(r, PB_STAGE_IN, NULL);
    void *x = pb_replica_buf(r, PB_STAGE_IN, 0), *targets = r->own_targets;
    pb_status st = pb_input_load(in, batch, &x, &targets);
    if (st != PB_OK) return st;
    pb_replica_bind(r, PB_STAGE_IN, x);
    r->targets = targets;
    return PB_OK;
}

pb_status pb_input_prefetch_next(pb_input *in, const pb_batch *batch)
{
    in->prefetched = -1;
    if (in->in_place || !batch->next_inputs) return PB_OK;
    pb_status st = prefetch_rows(in, (int)((batch->step + 1) & 1), first_row(in, batch), batch->next_inputs,
                                 batch->next_targets);
    if (st == PB_OK) in->prefetched = batch->step + 1;
    return st;
}
