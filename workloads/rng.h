/* The counter-based generator behind parameter init and data (docs/data.md).
 *
 * Every value is a pure function of (seed, stream, a, b, j): no state, so any
 * device, thread or rank can produce any sample or parameter by itself and all
 * strategies see identical numbers. mix64 is SplitMix64's finaliser. */
#ifndef PB_RNG_H
#define PB_RNG_H

#include <stdint.h>

#define PB_RNG_GOLDEN 0x9E3779B97F4A7C15ULL

enum {
    PB_STREAM_WEIGHT = 1,
    PB_STREAM_BIAS = 2,
    PB_STREAM_PROTOTYPE = 3,
    PB_STREAM_SAMPLE = 4,
    PB_STREAM_GPT_INIT = 5,   /* GPT parameters: (tensor, 0), value j */
    PB_STREAM_TOKEN_TABLE = 6, /* GPT data: (token, 0), successor k */
    PB_STREAM_SEQUENCE = 7,   /* GPT data: (step, sequence), value t */
};

static inline uint64_t pb_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Key of one row of values: (seed, stream, a, b). */
static inline uint64_t pb_rng_key(uint64_t seed, uint64_t stream, uint64_t a, uint64_t b)
{
    uint64_t k = pb_mix64(seed + stream * PB_RNG_GOLDEN);
    k = pb_mix64(k ^ a);
    return pb_mix64(k ^ b);
}

/* The j-th 64-bit value of a row (SplitMix64's sequence from the key). */
static inline uint64_t pb_rng_u64(uint64_t key, uint64_t j)
{
    return pb_mix64(key + (j + 1) * PB_RNG_GOLDEN);
}

/* Top 24 bits as a float in [0, 1): exact, no rounding. */
static inline float pb_rng_unit(uint64_t bits) { return (float)(bits >> 40) * 0x1p-24f; }

/* Uniform in [-bound, bound): bound * (2u - 1). */
static inline float pb_rng_symmetric(uint64_t bits, float bound)
{
    return bound * (2.0f * pb_rng_unit(bits) - 1.0f);
}

#endif /* PB_RNG_H */
