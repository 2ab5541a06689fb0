/* Whether a node's cores keep running when all of them are busy: a host
 * that caps a VM's vCPUs or a container's cgroup with a CPU quota stops
 * them for the rest of its period (100 ms by default) once the quota is
 * spent, which a run on one core never meets and a run on every core meets
 * every few seconds (docs/check.md, "CPU stalls"). */
#ifndef PB_CPU_STALL_H
#define PB_CPU_STALL_H

#include "status.h"

/* A gap this long in a spinning thread's clock readings is a stall: the
 * scheduler's own turns between threads on an oversubscribed node are a few
 * ms, a CPU quota's period 100 ms. */
#define PB_CPU_STALL_MIN_GAP_MS 50.0

typedef struct pb_cpu_stall {
    int threads;       /* threads that spun, one a core */
    double seconds;    /* how long each spun */
    double stalled_ms; /* gaps of at least PB_CPU_STALL_MIN_GAP_MS, all threads */
    int stalls;        /* how many */
    double longest_ms; /* the longest gap of any length */
} pb_cpu_stall;

/* One gap between two clock readings of a spinning thread. */
void pb_cpu_stall_add(pb_cpu_stall *s, double gap_ms);
/* Stalled time over the threads' spinning time, 0 to 1. */
double pb_cpu_stall_fraction(const pb_cpu_stall *s);
/* Spins `threads` threads for `seconds` at once and adds up their gaps. */
pb_status pb_cpu_stall_probe(int threads, double seconds, pb_cpu_stall *out);
/* The CPU quota of this process's cgroup (v2 cpu.max) in cores, 0 when
 * none is set or it cannot be read. A VM's vCPU quota is the host's and
 * invisible here: only the probe sees it. */
double pb_cpu_quota_cores(void);

#endif /* PB_CPU_STALL_H */
