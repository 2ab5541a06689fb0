/* The MLP workload: Linear layers with ReLU between them, softmax
 * cross-entropy over `classes`. Layer 0 is in -> hidden, the last is
 * hidden -> classes (in -> classes when there is one layer). */
#include <math.h>
#include <string.h>

#include "rng.h"
#include "workload.h"

pb_status pb_mlp_layout(const pb_shape *shape, pb_layout *out)
{
    if (shape->layers < 1 || shape->layers > PB_MAX_LAYERS)
        return pb_usage_error("--layers %d is out of range; allowed: 1 to %d", shape->layers,
                              PB_MAX_LAYERS);
    memset(out, 0, sizeof *out);
    out->n_layers = shape->layers;
    out->in = shape->in;
    out->classes = shape->classes;
    size_t off = 0;
    for (int l = 0; l < shape->layers; l++) {
        pb_layer_desc *d = &out->layer[l];
        d->in = l == 0 ? shape->in : shape->hidden;
        d->out = l == shape->layers - 1 ? shape->classes : shape->hidden;
        d->relu = l < shape->layers - 1;
        d->w_off = off;
        off += (size_t)d->in * (size_t)d->out;
        d->b_off = off;
        off += (size_t)d->out;
    }
    out->n_params = off;
    return PB_OK;
}

double pb_mlp_step_flops(const pb_layout *layout, int batch)
{
    double macs = 0.0;
    for (int l = 0; l < layout->n_layers; l++)
        macs += (double)layout->layer[l].in * (double)layout->layer[l].out;
    return 6.0 * (double)batch * macs;
}

void pb_mlp_init_params(const pb_layout *layout, uint64_t seed, float *params)
{
    for (int l = 0; l < layout->n_layers; l++) {
        const pb_layer_desc *d = &layout->layer[l];
        /* nn.Linear: kaiming_uniform(a=sqrt(5)) on W and the bias rule both
         * reduce to U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
        float bound = 1.0f / sqrtf((float)d->in);
        float *w = params + d->w_off;
        for (int o = 0; o < d->out; o++) {
            uint64_t key = pb_rng_key(seed, PB_STREAM_WEIGHT, (uint64_t)l, (uint64_t)o);
            float *row = w + (size_t)o * d->in;
            for (int k = 0; k < d->in; k++) row[k] = pb_rng_symmetric(pb_rng_u64(key, (uint64_t)k), bound);
        }
        uint64_t bkey = pb_rng_key(seed, PB_STREAM_BIAS, (uint64_t)l, 0);
        float *b = params + d->b_off;
        for (int o = 0; o < d->out; o++) b[o] = pb_rng_symmetric(pb_rng_u64(bkey, (uint64_t)o), bound);
    }
}
