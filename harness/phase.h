/* The per-step phase timer strategies use: begin/end push and pop the NVTX
 * range of the phase's name (phase_names.h) and record marks on the
 * device's stream (CUDA events or the clock), and call the hooks the run
 * registers (progress for the other ranks' deadline messages, the test-only
 * fault injection), so this file calls nothing above it. */
#ifndef PB_PHASE_H
#define PB_PHASE_H

#include "../kernels/backend.h"
#include "phase_names.h"

#ifdef __cplusplus
extern "C" {
#endif

/* spans pb_phase_timer_init makes room for (pb_phase_timer_init_spans:
 * more, for a strategy that splits its phases finely: tp) */
#define PB_MAX_PHASE_SPANS 64

/* Records spans (phase, begin mark, end mark) during a step on one device and
 * turns them into milliseconds after the device is synchronised. Marks are
 * created once (no allocation in the step). */
typedef struct pb_phase_timer {
    const pb_backend *be;
    pb_device *dev;
    pb_mark **marks; /* 2 * cap */
    pb_phase *phase; /* cap */
    int cap;
    int spans;
    int open;  /* index of the open span, -1 when none */
} pb_phase_timer;

/* Called at every phase's begin (before its mark is recorded) and end, from
 * every strategy thread; NULL members are skipped. Set once by the run
 * before any strategy starts (harness/run.c), never while a step runs. */
typedef struct pb_phase_hooks {
    void (*begin)(pb_phase p);
    void (*end)(pb_phase p);
} pb_phase_hooks;
void pb_phase_set_hooks(const pb_phase_hooks *hooks);

pb_status pb_phase_timer_init(pb_phase_timer *t, const pb_backend *be, pb_device *dev);
/* The same with room for `cap` spans a step */
pb_status pb_phase_timer_init_spans(pb_phase_timer *t, const pb_backend *be, pb_device *dev, int cap);
void pb_phase_timer_destroy(pb_phase_timer *t);
void pb_phase_timer_reset(pb_phase_timer *t);
pb_status pb_phase_begin(pb_phase_timer *t, pb_phase p);
pb_status pb_phase_end(pb_phase_timer *t);
/* CUDA-graph replay: a graph captured while spans [first, first+count) were
 * recorded re-records the same marks when replayed, so after a replay the
 * timer only needs those spans back in its list. */
pb_status pb_phase_timer_replayed(pb_phase_timer *t, const pb_phase *phases, int first, int count);

/* Adds each span's duration to out->ms[phase]. Call after synchronize. */
pb_status pb_phase_timer_collect(pb_phase_timer *t, pb_step_times *out);

#ifdef __cplusplus
}
#endif
#endif /* PB_PHASE_H */
