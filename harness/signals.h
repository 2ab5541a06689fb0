/* SIGINT and SIGTERM: stop a run at a step boundary.
 *
 * The handler only records the signal (a sig_atomic_t); the train loop asks
 * pb_signals_caught() between steps. A multi-rank run agrees on it first
 * (pb_signals_agree: a MAX over the ranks, so every rank stops before the
 * same step). An interrupted run writes no row and exits 128 + the signal
 * (130 for SIGINT, 143 for SIGTERM): docs/reliability.md.
 *
 * Also here, the ranks' other agreements between steps (they share the MPI
 * world's Iallreduce with a deadline): the configuration hash before the
 * first step. */
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

/* Multi-rank: every rank passes the signal it caught (0: none) and gets back
 * the largest any rank caught, within deadline_s; a rank that does not join
 * in time is an error naming this rank, its host and the step. */
pb_status pb_signals_agree(int *sig, double deadline_s, int64_t step);

/* Multi-rank: fails with a usage error on every rank when the ranks' hashes
 * differ (their MIN and MAX over the ranks), or when any rank says it cannot
 * run (usable false: it has recorded why), so that every rank stops
 * together instead of waiting for it; PB_ERR_COMM when a rank does not join
 * within deadline_s (the caller must then abort the ranks). */
pb_status pb_signals_agree_hash(uint64_t hash, bool usable, double deadline_s);

/* FNV-1a, for configuration hashes. */
uint64_t pb_hash_bytes(uint64_t h, const void *data, size_t n);
#define PB_HASH_INIT 1469598103934665603ULL

#endif /* PB_SIGNALS_H */
