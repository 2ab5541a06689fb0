/* Fault injection for the reliability tests: TEST-ONLY.
 *
 * PB_FAULT="rank=R,device=D,step=S,phase=P,kind=K[,ms=M]" makes rank R (0 for a
 * one-process run; default 0), on the thread that drives device D (dp's and
 * mp's device threads; default: the main thread, device 0 in dp), at step S
 * (counted from 0 over warmup and measured steps; default 0), on entering
 * phase P (a phase name: h2d, fwd, bwd, sync, opt, ...; default bwd)
 *   kind=die   end at once, as if killed (SIGKILL);
 *   kind=hang  stop making progress (sleeps until killed);
 *   kind=nan   make this rank's step go NaN: the strategy poisons a gradient
 *              (so an all-reduce spreads it) where it has a hook, and the
 *              harness replaces the step's loss with NaN;
 *   kind=skew  a wrong gradient, for --verify to catch: from step S on, every
 *              backward on device D of rank R scales one gradient element
 *              (the replica's first bias element of its top layer) by
 *              PB_FAULT_SKEW_FACTOR, where the gradient is in host memory (cpu
 *              backend); phase= does not apply. Never in --verify's reference;
 *   kind=slow  from step S on, in every step, sleep M ms (default
 *              PB_FAULT_SLOW_MS; ms= may be fractional) on
 *              entering phase P (before its span: the time is in the step,
 *              in no phase): one rank reliably the slowest (e.g. after its
 *              all-reduce, phase=opt), for the slowest-rank step times; and
 *              a known slowdown for scripts/aa-test.sh (ms= a tenth of
 *              the step: a 10% regression that compare must detect);
 *   kind=stretch  from step S on, in every step, sleep M ms (default
 *              PB_FAULT_STRETCH_MS) inside phase P (at its end, before its end mark: the time is
 *              counted in P), as a slower device would take longer over its
 *              compute: one rank a straggler in that phase (harness/straggler.h).
 * Checked in pb_phase_begin (stretch: pb_phase_end), so it fires in every strategy, and where dp's
 * and mp's device threads begin their work. Parsed once
 * (pb_fault_init); a malformed value is a usage error. Not a user feature:
 * docs/reliability.md. */
#ifndef PB_FAULT_H
#define PB_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#include "phase_names.h"
#include "status.h"

typedef enum pb_fault_kind {
    PB_FAULT_NONE = 0,
    PB_FAULT_DIE,
    PB_FAULT_HANG,
    PB_FAULT_NAN,
    PB_FAULT_SKEW,
    PB_FAULT_SLOW,
    PB_FAULT_STRETCH
} pb_fault_kind;

/* kind=skew's factor: a few percent, a bug no fp32 reordering mimics */
#define PB_FAULT_SKEW_FACTOR 1.05f
/* kind=slow's sleep: far longer than a test's step (a few ms) */
#define PB_FAULT_SLOW_MS 100
/* kind=stretch's sleep: over ten times a test's busy time per step (about
 * 2 ms), so that noise of oversubscribed ranks on shared cores cannot hide
 * it, yet ten steps cost half a second */
#define PB_FAULT_STRETCH_MS 50

/* Reads PB_FAULT (absent or empty: no fault). */
pb_status pb_fault_init(void);
/* This process's rank, and the step about to run (set by the harness). */
void pb_fault_set_rank(int rank);
/* The device the calling thread drives (thread-local; unset: -1). */
void pb_fault_set_device(int device);
void pb_fault_set_step(int64_t step);
/* At a phase boundary: dies, hangs or sleeps here when the fault says so; returns
 * true when this rank should poison this phase's result with NaN. */
bool pb_fault_at(pb_phase phase);
/* At a phase's end, inside its span: sleeps when kind=stretch says so. */
void pb_fault_ending(pb_phase phase);
/* True when a nan fault fired during the current step (the harness then
 * reports the step's loss as NaN). */
bool pb_fault_nan_step(void);
/* kind=skew: true when the calling thread's backward is to skew its gradient
 * now (its rank and device, at or after the fault's step). */
bool pb_fault_skew_now(void);

#endif /* PB_FAULT_H */
