/* The CPU stall probe (cpu_stall.h): every thread reads the clock as fast as
 * it can; a gap between two readings is time the thread did not run. */
#define _POSIX_C_SOURCE 200809L
#include "cpu_stall.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timer.h"

void pb_cpu_stall_add(pb_cpu_stall *s, double gap_ms)
{
    if (gap_ms > s->longest_ms) s->longest_ms = gap_ms;
    if (gap_ms < PB_CPU_STALL_MIN_GAP_MS) return;
    s->stalled_ms += gap_ms;
    s->stalls++;
}

double pb_cpu_stall_fraction(const pb_cpu_stall *s)
{
    double spun = s->threads * s->seconds * 1e3;
    return spun > 0 ? s->stalled_ms / spun : 0;
}

typedef struct spinner {
    pthread_t thread;
    double seconds;
    pb_cpu_stall own;
} spinner;

static void *spin(void *arg)
{
    spinner *sp = arg;
    double t0 = pb_now_ms(), last = t0, end = t0 + sp->seconds * 1e3;
    for (;;) {
        double now = pb_now_ms();
        pb_cpu_stall_add(&sp->own, now - last);
        last = now;
        if (now >= end) break;
    }
    return NULL;
}

pb_status pb_cpu_stall_probe(int threads, double seconds, pb_cpu_stall *out)
{
    memset(out, 0, sizeof *out);
    if (threads < 1) threads = 1;
    spinner *sp = calloc((size_t)threads, sizeof *sp);
    if (!sp) return pb_error(PB_ERR_NOMEM, "cpu stall probe: out of host memory");
    int started = 0;
    for (; started < threads; started++) {
        sp[started].seconds = seconds;
        if (pthread_create(&sp[started].thread, NULL, spin, &sp[started]) != 0) break;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(sp[i].thread, NULL);
        out->stalled_ms += sp[i].own.stalled_ms;
        out->stalls += sp[i].own.stalls;
        if (sp[i].own.longest_ms > out->longest_ms) out->longest_ms = sp[i].own.longest_ms;
    }
    out->threads = started;
    out->seconds = seconds;
    free(sp);
    if (started < threads)
        return pb_error(PB_ERR_INTERNAL, "cpu stall probe: started %d of %d threads", started, threads);
    return PB_OK;
}

double pb_cpu_quota_cores(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return 0;
    char line[512], path[600] = "";
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "0::", 3) == 0) { /* cgroup v2 */
            line[strcspn(line, "\n")] = '\0';
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", line + 3);
        }
    fclose(f);
    if (!path[0]) return 0;
    f = fopen(path, "r");
    if (!f) return 0;
    char quota[32] = "";
    double period = 0;
    int got = fscanf(f, "%31s %lf", quota, &period);
    fclose(f);
    if (got != 2 || strcmp(quota, "max") == 0 || !(period > 0)) return 0;
    double q = atof(quota);
    return q > 0 ? q / period : 0;
}
