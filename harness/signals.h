/* SIGINT and SIGTERM: stop a run at a step boundary.
 *
 * The handler only records the signal (a sig_atomic_t); the train loop asks
 * pb_signals_caught() between steps. A multi-rank run agrees on it first
 * (pb_world_agree_signal, kernels/world.h: a MAX over the ranks, so every
 * rank stops before the same step). An interrupted run writes no row and
 * exits 128 + the signal (130 for SIGINT, 143 for SIGTERM):
 * docs/reliability.md.
 *
 * Also here, the hash the ranks compare before the first step
 * (a hash per configuration value, pb_world_agree_config). */
#ifndef PB_SIGNALS_H
#define PB_SIGNALS_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"

/* Installs the recording handler for SIGINT and SIGTERM. */
void pb_signals_install(void);
/* The signal caught (SIGINT or SIGTERM), 0 when none. */
int pb_signals_caught(void);
/* Records sig as if caught (the ranks' agreement adopts another rank's). */
void pb_signals_set(int sig);
/* 128 + the caught signal; 0 when none. */
int pb_signals_exit_code(void);

/* FNV-1a, for configuration hashes. */
uint64_t pb_hash_bytes(uint64_t h, const void *data, size_t n);
#define PB_HASH_INIT 1469598103934665603ULL

#endif /* PB_SIGNALS_H */
