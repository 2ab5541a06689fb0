/* Device threads on CPUs of their own: see cpu_bind.h. */
#define _GNU_SOURCE /* pthread_setaffinity_np, CPU_*_S */
#include "cpu_bind.h"

#include <sched.h>
#include <string.h>

/* The process's CPUs, read by the first bind before it changes a thread's:
 * a thread bound later (dp's device 0 is the main thread) must not shrink
 * what the next binding divides, nor what --ranks-out reports. Until a
 * bind, the calling thread's set as it stands. */
static pthread_mutex_t process_mu = PTHREAD_MUTEX_INITIALIZER;
static cpu_set_t *process_set; /* NULL: no bind yet, or unreadable */

/* The saved set, read now if no bind read it yet; under process_mu. */
static const cpu_set_t *saved_set(void)
{
    if (process_set) return process_set;
    cpu_set_t *set = CPU_ALLOC(PB_CPU_MAX);
    if (set && sched_getaffinity(0, CPU_ALLOC_SIZE(PB_CPU_MAX), set) == 0) process_set = set;
    else CPU_FREE(set);
    return process_set;
}

bool pb_cpu_process_set(void *set, size_t bytes)
{
    size_t have = CPU_ALLOC_SIZE(PB_CPU_MAX);
    if (bytes < have) return false;
    pthread_mutex_lock(&process_mu);
    bool saved = process_set != NULL;
    if (saved) {
        memset(set, 0, bytes);
        memcpy(set, process_set, have);
    }
    pthread_mutex_unlock(&process_mu);
    return saved || sched_getaffinity(0, bytes, set) == 0;
}

bool pb_cpu_bind_thread(pthread_t thread, int index, int count)
{
    if (count < 1 || index < 0 || index >= count) return false;
    size_t bytes = CPU_ALLOC_SIZE(PB_CPU_MAX);
    cpu_set_t *mine = CPU_ALLOC(PB_CPU_MAX);
    if (!mine) return false;
    CPU_ZERO_S(bytes, mine);
    pthread_mutex_lock(&process_mu);
    const cpu_set_t *all = saved_set();
    int cpus = all ? CPU_COUNT_S(bytes, all) : 0;
    /* the device's run of the process's CPUs, in order */
    int per = count <= cpus ? cpus / count : 1;
    int first = count <= cpus ? index * per : cpus > 0 ? index % cpus : 0;
    for (int c = 0, k = 0; cpus > 0 && c < PB_CPU_MAX && k < first + per; c++) {
        if (!CPU_ISSET_S(c, bytes, all)) continue;
        if (k >= first) CPU_SET_S(c, bytes, mine);
        k++;
    }
    pthread_mutex_unlock(&process_mu);
    bool ok = cpus > 0 && pthread_setaffinity_np(thread, bytes, mine) == 0;
    CPU_FREE(mine);
    return ok;
}

void pb_cpu_unbind_self(void)
{
    pthread_mutex_lock(&process_mu);
    if (process_set) pthread_setaffinity_np(pthread_self(), CPU_ALLOC_SIZE(PB_CPU_MAX), process_set);
    pthread_mutex_unlock(&process_mu);
}
