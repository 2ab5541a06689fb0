/* Progress of the ranks of a run, readable without the ranks' cooperation,
 * so a rank whose collective passed its deadline can name the rank that
 * holds it up ("rank 1 on node7 (pid 4242) is stuck in phase bwd of step 3
 * (no progress for 3.0 s)") instead of "another rank stopped or is stuck".
 *
 * Every rank owns one slot: its step, the phase it last began or ended, a
 * count of those events within the step, and a CLOCK_MONOTONIC heartbeat,
 * plus its rank, pid and host. The slots of the ranks of one node lie in
 * memory they all map (the `mpi` world puts them in an MPI-3 shared-memory
 * window, kernels/world_mpi.c); the owner writes its slot with plain atomic
 * stores (a seqlock, no MPI call, no allocation), and the others read it
 * with atomic loads. A stuck or dead rank's slot still says where it was.
 * Ranks on other nodes cannot be read this way: the description says how
 * many could not be inspected.
 *
 * Publishing: the phase timer (pb_phase_begin/pb_phase_end) and the
 * strategy's step (pb_progress_set_step). Until pb_progress_attach is
 * called (one-process strategies) each of those is one null check.
 * All of these are called by one thread of the process (ddp's main thread). */
#ifndef PB_PROGRESS_H
#define PB_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "../harness/phase_names.h"
#include "../harness/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of one rank's slot (the caller allocates slots in shared memory). */
size_t pb_progress_slot_bytes(void);

/* Makes slots[mine] this process's slot and slots[0..n) the ones it reads
 * (the ranks of this node; rank and ranks are the world's). Initialises this
 * process's slot; the caller then makes every rank's initialisation visible
 * (a barrier) before any rank describes. A slot not initialised by its
 * owner reads as "could not be inspected". Replaces an earlier attach. */
pb_status pb_progress_attach(void *const *slots, int n, int mine, int rank, int ranks, const char *host);
/* Stops publishing and reading (before the slots' memory goes). */
void pb_progress_detach(void);

/* A step begins (counted from 0 over warmup and measured steps). */
void pb_progress_set_step(int64_t step);
/* A phase begins or ends (called by the phase timer). */
void pb_progress_phase_begin(pb_phase p);
void pb_progress_phase_end(void);

/* What holds this rank up, for a deadline's message: each rank of this node
 * behind this one (an earlier step, or an earlier phase of the same step),
 * where it is and for how long it has not moved, or whether it exited;
 * then how many ranks on other nodes could not be inspected. Without slots,
 * or when no rank is behind, it says so after "another rank stopped or is
 * stuck". Returns the number of ranks named as behind. */
int pb_progress_describe(char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* PB_PROGRESS_H */
