/* The pipeline's schedule replayed on its stages' measured op times, with
 * no time between a message's post and its use: the step a pipeline of
 * these stages would take were handing off free and every stage on a core
 * of its own. Beside the measured bubble it splits what the schedule and
 * the stages' balance cost from what the host added (wake-ups, waits for a
 * core, the step's start and end); docs/strategies.md. */
#ifndef PB_MP_REPLAY_H
#define PB_MP_REPLAY_H

#include <stdbool.h>

/* One stage's step as it ran. */
typedef struct pb_mp_replay_stage {
    const int *ops;      /* 2m: its operations in order, j >= 0 the forward of microbatch j, -(j + 1) its backward */
    const double *op_ms; /* 2m: each one's busy time once its input is posted (receive, compute) */
    const double *op_pre_ms; /* 2m or NULL: its busy time before it waits for its input (its rows' upload) */
    double pre_ms;       /* busy before the first operation (the whole batch's upload) */
    double post_ms;      /* busy after the last (the tied gradient's exchange, the optimizer) */
} pb_mp_replay_stage;

/* Replays p stages of m microbatches: each operation runs its op_pre_ms
 * once the stage is free, the rest once its input is also posted (the forward of j on stage k after stage
 * k-1's, the backward of j after stage k+1's); with `tied` the first and
 * last stage's post_ms starts once both have run their operations (they
 * exchange the tied gradient). Returns the step time, or a negative value
 * when the operations cannot all run (not a schedule of p stages and m
 * microbatches); *bubble_ms gets the mean over stages of the step time
 * minus the stage's busy time. scratch: 2 p m doubles. */
double pb_mp_replay(const pb_mp_replay_stage *st, int p, int m, bool tied, double *scratch, double *bubble_ms);

#endif
