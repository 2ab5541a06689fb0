/* Deterministic synthetic data (docs/data.md): sample i of step s depends on
 * (seed, s, i) alone. Its label is value 0 of the sample's row, modulo the
 * class count; feature j is half the label's prototype plus half uniform
 * noise, so a classifier can learn the prototypes and the loss falls. */
#include "mlp.h"
#include "rng.h"

void pb_mlp_prototypes(int in, int classes, uint64_t seed, float *out)
{
    for (int c = 0; c < classes; c++) {
        uint64_t key = pb_rng_key(seed, PB_STREAM_PROTOTYPE, (uint64_t)c, 0);
        float *row = out + (size_t)c * in;
        for (int j = 0; j < in; j++) row[j] = pb_rng_symmetric(pb_rng_u64(key, (uint64_t)j + 1), 1.0f);
    }
}

void pb_mlp_fill(int in, int classes, uint64_t seed, int64_t step, int64_t first, int count,
                 const float *prototypes, float *x, int32_t *labels)
{
    for (int r = 0; r < count; r++) {
        uint64_t key = pb_rng_key(seed, PB_STREAM_SAMPLE, (uint64_t)step, (uint64_t)(first + r));
        int32_t label = (int32_t)(pb_rng_u64(key, 0) % (uint64_t)classes);
        labels[r] = label;
        const float *proto = prototypes + (size_t)label * in;
        float *row = x + (size_t)r * in;
        for (int j = 0; j < in; j++)
            row[j] = 0.5f * proto[j] + 0.5f * pb_rng_symmetric(pb_rng_u64(key, (uint64_t)j + 1), 1.0f);
    }
}

void pb_data_prototypes(const pb_layout *layout, uint64_t seed, float *out)
{
    pb_mlp_prototypes(layout->in, layout->classes, seed, out);
}

void pb_data_fill(const pb_layout *layout, uint64_t seed, int64_t step, int64_t first, int count,
                  const float *prototypes, float *x, int32_t *labels)
{
    pb_mlp_fill(layout->in, layout->classes, seed, step, first, count, prototypes, x, labels);
}
