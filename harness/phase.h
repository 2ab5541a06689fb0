/* Phase names shared by NVTX ranges and CSV columns, and the per-step phase
 * timer strategies use: begin/end push and pop the NVTX range of the same
 * name and record marks on the device's stream (CUDA events or the clock). */
#ifndef PB_PHASE_H
#define PB_PHASE_H

#include "../kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pb_phase {
    PB_PHASE_LOAD = 0,
    PB_PHASE_H2D,
    PB_PHASE_FWD,
    PB_PHASE_BWD,
    PB_PHASE_COMM,  /* all collective time */
    PB_PHASE_SYNC,  /* the exposed part of comm */
    PB_PHASE_OPT,
    PB_PHASE_SCATTER,
    PB_PHASE_REPLICATE,
    PB_PHASE_GATHER,
    PB_PHASE_REDUCE,
    PB_PHASE_P2P,
    PB_PHASE_BUBBLE,
    PB_PHASE_COUNT
} pb_phase;

const char *pb_phase_name(pb_phase p);

/* One step's phase times in ms (0 when a phase did not occur). */
typedef struct pb_step_times {
    double ms[PB_PHASE_COUNT];
} pb_step_times;

#define PB_MAX_PHASE_SPANS 64

/* Records spans (phase, begin mark, end mark) during a step on one device and
 * turns them into milliseconds after the device is synchronised. Marks are
 * created once (no allocation in the step). */
typedef struct pb_phase_timer {
    const pb_backend *be;
    pb_device *dev;
    pb_mark *marks[2 * PB_MAX_PHASE_SPANS];
    pb_phase phase[PB_MAX_PHASE_SPANS];
    int spans;
    int open;  /* index of the open span, -1 when none */
} pb_phase_timer;

pb_status pb_phase_timer_init(pb_phase_timer *t, const pb_backend *be, pb_device *dev);
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
