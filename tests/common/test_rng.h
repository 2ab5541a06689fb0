/* xorshift64*: the tests' own random inputs, independent of the library's
 * generator (docs/data.md), so a test never checks the generator with
 * itself. Each program has its own state; a test that wants fixed inputs
 * sets rng_state first (it must not be 0). */
#ifndef PB_TEST_RNG_H
#define PB_TEST_RNG_H

#include <stdint.h>

static uint64_t rng_state = 0x243F6A8885A308D3ULL;

/* uniform in [lo, hi) */
static inline double uniform(double lo, double hi)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    double u = (double)((rng_state * 0x2545F4914F6CDD1DULL) >> 11) * 0x1p-53;
    return lo + (hi - lo) * u;
}

#endif /* PB_TEST_RNG_H */
