/* The device threads of a one-process strategy (dp's devices, mp's stages)
 * on the cpu backend, each on CPUs of its own. Unbound, the scheduler
 * decided the step: it often wakes a device's thread on the core of the
 * thread that woke it, and gpt-xs dp on 2 devices took 1.36-1.43 ms a step
 * in runs where the two devices ran on separate cores and 2.19-2.30 ms in
 * runs of the same command where they shared one (the latter reproduced
 * with `taskset -c 0`). Bound, every run is the first kind, as `bench
 * predict` assumes (docs/strategies.md, "Where CPU devices run"). */
#ifndef PB_CPU_BIND_H
#define PB_CPU_BIND_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Binds `thread`, device `index` of `count`, to its share of the CPUs the
 * process may run on: with count <= CPUs, the index-th of count runs of
 * CPUs / count consecutive CPUs (the remainder left to no device); with
 * more devices than CPUs, CPU index mod CPUs, as the launcher binds more
 * CPU ranks than cores. False where it cannot (the thread then runs where
 * the scheduler puts it, as before). */
bool pb_cpu_bind_thread(pthread_t thread, int index, int count);
/* The calling thread back on every CPU the process could run on before
 * the first pb_cpu_bind_thread. */
void pb_cpu_unbind_self(void);
/* The CPUs the process may run on: as the first pb_cpu_bind_thread found
 * them (a bound thread's own set is its device's share), or before any,
 * the calling thread's as they stand; into `set`, a cpu_set_t
 * of `bytes` bytes (at least CPU_ALLOC_SIZE(PB_CPU_MAX)). False where
 * unknown. */
bool pb_cpu_process_set(void *set, size_t bytes);

/* room for any CPU number Linux allows (CONFIG_NR_CPUS at most 8192) */
#define PB_CPU_MAX 8192

#ifdef __cplusplus
}
#endif
#endif
