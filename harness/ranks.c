/* Every rank's record: see ranks.h. */
#define _GNU_SOURCE /* CPU_ISSET_S */
#include "ranks.h"

#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/world.h"
#include "cpu_bind.h"
#include "log.h"
#include "steps_out.h"

void pb_ranks_free(pb_ranks *rk)
{
    free(rk->stats);
    free(rk->hosts);
    free(rk->cpus);
    free(rk->verdict);
    memset(rk, 0, sizeof *rk);
}

void pb_ranks_cpulist(char *buf, size_t len)
{
    if (len == 0) return;
    buf[0] = '\0';
    cpu_set_t *set = CPU_ALLOC(PB_CPU_MAX);
    size_t bytes = CPU_ALLOC_SIZE(PB_CPU_MAX);
    if (!set) return;
    /* the process's, not this thread's: a one-process strategy binds its
     * device threads, the main thread among them (cpu_bind.h) */
    if (!pb_cpu_process_set(set, bytes)) {
        CPU_FREE(set);
        return;
    }
    size_t used = 0;
    for (int c = 0; c < PB_CPU_MAX; c++) {
        if (!CPU_ISSET_S(c, bytes, set)) continue;
        int last = c;
        while (last + 1 < PB_CPU_MAX && CPU_ISSET_S(last + 1, bytes, set)) last++;
        char one[32];
        int m = last > c ? snprintf(one, sizeof one, "%s%d-%d", used ? "," : "", c, last)
                         : snprintf(one, sizeof one, "%s%d", used ? "," : "", c);
        if (m < 0 || used + (size_t)m >= len) {
            /* cut where "..." still fits; no room even for that: "" */
            while (used > 0 && used + 3 >= len) used--;
            if (used + 3 < len) memcpy(buf + used, "...", 4);
            else buf[0] = '\0';
            break;
        }
        memcpy(buf + used, one, (size_t)m + 1);
        used += (size_t)m;
        c = last;
    }
    CPU_FREE(set);
}

pb_status pb_ranks_collect(pb_ranks *rk, const pb_rank_stats *mine, const char *host, int rank, int n, bool multi)
{
    pb_status st = PB_OK;
    const size_t w = PB_RANK_STATS_WIDTH;
    double *v = NULL;
    memset(rk, 0, sizeof *rk);
    rk->n = n;
    PB_ALLOC(rk->stats, (size_t)n);
    PB_ALLOC(rk->hosts, (size_t)n * PB_RANK_HOST_CHARS);
    PB_ALLOC(rk->cpus, (size_t)n * PB_RANK_CPUS_CHARS);
    PB_ALLOC(rk->verdict, (size_t)n);
    snprintf(rk->hosts + (size_t)rank * PB_RANK_HOST_CHARS, PB_RANK_HOST_CHARS, "%s", host);
    char cpus[PB_RANK_CPUS_CHARS];
    pb_ranks_cpulist(cpus, sizeof cpus);
    memcpy(rk->cpus + (size_t)rank * PB_RANK_CPUS_CHARS, cpus, sizeof cpus);
    if (!multi) {
        rk->stats[rank] = *mine;
        return PB_OK;
    }
    /* each rank's slot holds its own figures, -HUGE_VAL elsewhere, so an
     * elementwise MAX is a gather; a NaN (no calibration) travels as
     * -HUGE_VAL too, as MPI's MAX has no rule for NaN */
    PB_ALLOC(v, (size_t)n * w);
    for (size_t i = 0; i < (size_t)n * w; i++) v[i] = -HUGE_VAL;
    memcpy(v + (size_t)rank * w, mine, sizeof *mine);
    for (size_t i = 0; i < w; i++)
        if (isnan(v[(size_t)rank * w + i])) v[(size_t)rank * w + i] = -HUGE_VAL;
    PB_TRY(pb_world_max_to_root(v, (int)((size_t)n * w)));
    PB_TRY(pb_world_gather_text(host, rk->hosts, PB_RANK_HOST_CHARS));
    PB_TRY(pb_world_gather_text(cpus, rk->cpus, PB_RANK_CPUS_CHARS));
    for (size_t i = 0; i < (size_t)n * w; i++)
        if (v[i] == -HUGE_VAL) v[i] = NAN;
    memcpy(rk->stats, v, (size_t)n * sizeof *rk->stats);
cleanup:
    free(v);
    return st;
}

pb_status pb_ranks_judge(pb_ranks *rk, bool shared)
{
    if (rk->n < 2) return PB_OK;
    pb_status st = PB_OK;
    double *scratch = NULL;
    PB_ALLOC(scratch, 2 * (size_t)rk->n);
    rk->found = pb_straggler_find(rk->stats, rk->n, shared ? PB_STRAGGLER_SHARED_FRAC : PB_STRAGGLER_MIN_FRAC,
                                  scratch, rk->verdict);
    rk->slowest = pb_straggler_slowest(rk->stats, rk->n, scratch, &rk->spread_pct);
cleanup:
    free(scratch);
    return st;
}

static const char *host_of(const pb_ranks *rk, int r) { return rk->hosts + (size_t)r * PB_RANK_HOST_CHARS; }
static const char *cpus_of(const pb_ranks *rk, int r) { return rk->cpus + (size_t)r * PB_RANK_CPUS_CHARS; }

/* A cpulist ("0-3,8", possibly cut with "...") into bits; false when it
 * names no CPU it can read. */
static bool cpulist_bits(const char *s, unsigned char *bits)
{
    memset(bits, 0, PB_CPU_MAX / 8);
    bool any = false;
    while (*s) {
        char *end;
        long a = strtol(s, &end, 10), b = a;
        if (end == s) break; /* "..." or anything else: what was read stands */
        if (*end == '-') {
            const char *t = end + 1;
            b = strtol(t, &end, 10);
            if (end == t) break;
        }
        for (long c = a < 0 ? 0 : a; c <= b && c < PB_CPU_MAX; c++) {
            bits[c / 8] |= (unsigned char)(1u << (c % 8));
            any = true;
        }
        s = *end == ',' ? end + 1 : end;
        if (*end != ',') break;
    }
    return any;
}

bool pb_ranks_cpulists_overlap(const char *a, const char *b)
{
    unsigned char x[PB_CPU_MAX / 8], y[PB_CPU_MAX / 8];
    if (!cpulist_bits(a, x) || !cpulist_bits(b, y)) return false;
    for (size_t i = 0; i < sizeof x; i++)
        if (x[i] & y[i]) return true;
    return false;
}

/* The lowest other rank on r's host whose CPUs overlap r's, or -1: a rank
 * that takes turns on its cores with another is slow for that reason. */
static int sharing_rank(const pb_ranks *rk, int r)
{
    if (!rk->cpus || !cpus_of(rk, r)[0]) return -1;
    for (int s = 0; s < rk->n; s++)
        if (s != r && strcmp(host_of(rk, s), host_of(rk, r)) == 0 &&
            pb_ranks_cpulists_overlap(cpus_of(rk, r), cpus_of(rk, s)))
            return s;
    return -1;
}

void pb_ranks_report(const pb_ranks *rk, pb_record *rec, bool warn)
{
    if (rk->n < 2) return;
    pb_record_set(rec, PB_COL_SLOWEST_RANK, "%d", rk->slowest);
    pb_record_num(rec, PB_COL_RANK_SPREAD_PCT, rk->spread_pct);
    if (!rk->found) {
        pb_record_set(rec, PB_COL_STRAGGLERS, "none");
        return;
    }
    /* the worst first, so a cut field keeps it */
    char text[PB_FIELD_MAX * 2] = "";
    size_t used = 0;
    bool *done = calloc((size_t)rk->n, sizeof *done);
    for (int k = 0; k < rk->found; k++) {
        int worst = -1;
        for (int r = 0; r < rk->n; r++)
            if (rk->verdict[r].straggler && !(done && done[r]) &&
                (worst < 0 || rk->verdict[r].excess_pct > rk->verdict[worst].excess_pct))
                worst = r;
        if (worst < 0) break;
        if (done) done[worst] = true;
        char one[256];
        pb_straggler_describe(worst, host_of(rk, worst), &rk->stats[worst], &rk->verdict[worst], one, sizeof one);
        int with = sharing_rank(rk, worst);
        if (with >= 0) {
            size_t at = strlen(one);
            snprintf(one + at, sizeof one - at, ", shares CPUs %s with rank %d", cpus_of(rk, worst), with);
        }
        if (warn)
            pb_log_warn("straggler: %s: busy %.3g ms per step (step less sync) against its peers' median %.3g ms, "
                        "beyond the %.0f%% it had to pass",
                        one, rk->stats[worst].busy_p50, rk->verdict[worst].peers_busy_ms,
                        rk->verdict[worst].threshold_pct);
        int m = snprintf(text + used, sizeof text - used, "%s%s", k ? "; " : "", one);
        if (m > 0) used += (size_t)m < sizeof text - used ? (size_t)m : sizeof text - used - 1;
        if (!done) break; /* no room to tell them apart: the worst alone */
    }
    free(done);
    pb_record_set(rec, PB_COL_STRAGGLERS, "%s", text);
}

pb_status pb_ranks_out_write(const pb_ranks *rk, const char *path, const char *run_id, char *tmp, size_t tmp_len)
{
    FILE *f = NULL;
    pb_status st = pb_out_file_open("--ranks-out", path, tmp, tmp_len, &f);
    if (st != PB_OK) return st;
    fprintf(f, "run_id,rank,host,device,cpus,step_ms_p50,step_ms_mean,step_ms_p95,busy_ms_p50,busy_ms_se");
    for (int p = 0; p < PB_PHASE_COUNT; p++) fprintf(f, ",%s_ms", pb_phase_name((pb_phase)p));
    fprintf(f, ",other_ms,peak_tflops,vs_peers_pct,threshold_pct,straggler,straggler_phase\n");
    for (int r = 0; r < rk->n; r++) {
        const pb_rank_stats *s = &rk->stats[r];
        const pb_straggler_verdict *v = &rk->verdict[r];
        /* a host name is letters, digits, '-' and '.': no quoting needed */
        fprintf(f, "%s,%d,%s,", run_id, r, host_of(rk, r));
        pb_out_num(f, s->device, ',');
        /* a cpulist with a comma is quoted (no quotes inside one) */
        const char *cpus = cpus_of(rk, r);
        fprintf(f, strchr(cpus, ',') ? "\"%s\"," : "%s,", cpus);
        const double head[] = {s->step_p50, s->step_mean, s->step_p95, s->busy_p50, s->busy_se};
        for (size_t i = 0; i < sizeof head / sizeof head[0]; i++) pb_out_num(f, head[i], ',');
        for (int p = 0; p < PB_PHASE_COUNT; p++) pb_out_num(f, s->phase_ms[p], ',');
        pb_out_num(f, s->other_ms, ',');
        pb_out_num(f, s->peak_tflops, ',');
        if (rk->n < 2) {
            fprintf(f, ",,,\n"); /* no peers: not judged */
            continue;
        }
        pb_out_num(f, v->excess_pct, ',');
        pb_out_num(f, v->threshold_pct, ',');
        fprintf(f, "%d,%s\n", v->straggler ? 1 : 0,
                !v->straggler ? "" : v->phase < 0 ? "between" : pb_phase_name((pb_phase)v->phase));
    }
    return pb_out_file_close("--ranks-out", path, f, tmp);
}
