/* The phases of a step, named once for NVTX ranges, the CSV's phase
 * columns, progress and fault injection. A leaf: includes nothing of the
 * project, so the utilities below the run (fault, progress) and the timer
 * above them share it without including each other. */
#ifndef PB_PHASE_NAMES_H
#define PB_PHASE_NAMES_H

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
    PB_PHASE_TP_COMM, /* tensor parallel's all-reduces inside forward and backward (exposed) */
    PB_PHASE_REDUCE_SCATTER, /* zero: reduce-scatter collective time (part of comm) */
    PB_PHASE_ALLGATHER,      /* zero: all-gather collective time (part of comm) */
    PB_PHASE_COUNT
} pb_phase;

const char *pb_phase_name(pb_phase p);

/* One step's phase times in ms (0 when a phase did not occur). */
typedef struct pb_step_times {
    double ms[PB_PHASE_COUNT];
} pb_step_times;

#ifdef __cplusplus
}
#endif
#endif /* PB_PHASE_NAMES_H */
