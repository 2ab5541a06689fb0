/* make bench-strategies' summary: reads the runs benchmarks/bench_strategies.sh
 * wrote (one CSV, tags "<config>.r<round>") and, for each pair
 * "config:baseline:limit", prints the median step time (step_ms_p50) of
 * each, the ratio of the medians and the median of the per-round ratios
 * (runs of one round ran back to back, so noise on the machine lands on
 * both), and the verdict against the limit. Exit 1 when a pair has no
 * paired rounds, or (--strict) when a ratio is over its limit. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/stats.h"
#include "study/csv_read.h"

#define MAX_ROUNDS 256

/* step_ms_p50 of config's run in each round (NaN where missing) */
static int collect(const pb_csv *c, const char *config, double *ms)
{
    int tag = pb_csv_find(c, "tag"), p50 = pb_csv_find(c, "step_ms_p50"), status = pb_csv_find(c, "status");
    int rounds = 0;
    for (int r = 0; r < MAX_ROUNDS; r++) ms[r] = -1;
    for (size_t i = 0; i < c->nrows; i++) {
        const char *t = pb_csv_get(c, i, (size_t)tag), *dot = strrchr(t, '.');
        double v;
        if (!dot || dot[1] != 'r' || (size_t)(dot - t) != strlen(config) || strncmp(t, config, strlen(config)) != 0)
            continue;
        int r = atoi(dot + 2);
        if (r < 0 || r >= MAX_ROUNDS || strcmp(pb_csv_get(c, i, (size_t)status), "ok") != 0) continue;
        if (!pb_csv_number(pb_csv_get(c, i, (size_t)p50), &v)) continue;
        ms[r] = v;
        if (r + 1 > rounds) rounds = r + 1;
    }
    return rounds;
}

int main(int argc, char **argv)
{
    bool strict = false;
    const char *path = NULL;
    int first_pair = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--strict") == 0) strict = true;
        else if (!path) path = argv[i];
        else {
            first_pair = i;
            break;
        }
    }
    if (!path || !first_pair) {
        fprintf(stderr, "usage: bench_strategies [--strict] RUNS.csv CONFIG:BASELINE:LIMIT...\n");
        return 2;
    }
    pb_csv c;
    if (pb_csv_load(path, &c) != PB_OK) {
        fprintf(stderr, "bench_strategies: %s\n", pb_error_message());
        return 1;
    }
    if (pb_csv_find(&c, "tag") < 0 || pb_csv_find(&c, "step_ms_p50") < 0) {
        fprintf(stderr, "bench_strategies: %s has no tag or step_ms_p50 column\n", path);
        return 1;
    }
    int rc = 0;
    printf("%-8s %-8s %7s %12s %12s %11s %15s %7s  %s\n", "config", "vs", "rounds", "median_ms", "base_ms",
           "ratio_med", "median_ratio", "limit", "verdict");
    for (int i = first_pair; i < argc; i++) {
        char cfg[64], base[64];
        double limit = 0;
        if (sscanf(argv[i], "%63[^:]:%63[^:]:%lf", cfg, base, &limit) != 3) {
            fprintf(stderr, "bench_strategies: '%s' is not CONFIG:BASELINE:LIMIT\n", argv[i]);
            rc = 2;
            continue;
        }
        double a[MAX_ROUNDS], b[MAX_ROUNDS], ra[MAX_ROUNDS], rb[MAX_ROUNDS], ratio[MAX_ROUNDS];
        int na = collect(&c, cfg, a), nb = collect(&c, base, b), n = 0;
        for (int r = 0; r < (na > nb ? na : nb); r++)
            if (a[r] > 0 && b[r] > 0) {
                ra[n] = a[r];
                rb[n] = b[r];
                ratio[n] = a[r] / b[r];
                n++;
            }
        if (n == 0) {
            printf("%-8s %-8s %7d  no paired rounds\n", cfg, base, 0);
            rc = 1;
            continue;
        }
        double ma = pb_stats_median(ra, (size_t)n), mb = pb_stats_median(rb, (size_t)n);
        double mr = pb_stats_median(ratio, (size_t)n);
        bool ok = mr <= limit;
        printf("%-8s %-8s %7d %12.3f %12.3f %11.3f %15.3f %7.2f  %s\n", cfg, base, n, ma, mb, ma / mb, mr, limit,
               ok ? "PASS" : "OVER");
        if (!ok && strict) rc = rc ? rc : 1;
    }
    pb_csv_free(&c);
    return rc;
}
