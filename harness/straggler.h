/* Stragglers: which rank of a multi-rank run is slow, and where its time
 * goes (docs/statistics.md, "Stragglers"). A leaf over the per-rank figures
 * (stats and phase names only), so the rule is tested on made-up ranks.
 *
 * In a synchronous ddp step every rank's step time is the same (they all
 * wait for the slowest in the all-reduce), so step time cannot tell the
 * slow rank: the rule compares each rank's *busy* time, its step less
 * `sync` (the wait for the others' gradients) and `tp_comm` (tp's blocking
 * all-reduces, where the others wait too), and names the compute phase
 * where its extra time goes (any phase but `comm`, which overlaps backward,
 * `sync` and `tp_comm`; or time in no phase). */
#ifndef PB_STRAGGLER_H
#define PB_STRAGGLER_H

#include <stdbool.h>
#include <stddef.h>

#include "phase_names.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A straggler's busy time must exceed its peers' median by more than this
 * fraction of it (min_frac of pb_straggler_find) ... */
#define PB_STRAGGLER_MIN_FRAC 0.10
/* ... or this one where ranks share cores (oversubscribed): two ranks on
 * one core each take up to twice as long with nothing wrong */
#define PB_STRAGGLER_SHARED_FRAC 1.0
/* ... and by more than this many times the noise (pb_straggler_find). */
#define PB_STRAGGLER_NOISE_K 4.0

/* One rank's figures over its measured steps. Doubles only: ranks send
 * them to rank 0 as PB_RANK_STATS_WIDTH doubles. */
typedef struct pb_rank_stats {
    double step_p50, step_mean, step_p95; /* its own step times, ms */
    double busy_p50;                      /* median of step - sync - tp_comm, ms */
    double busy_se;                       /* robust standard error of busy_p50 */
    double phase_ms[PB_PHASE_COUNT];      /* mean per step of each phase */
    double other_ms;                      /* mean busy time in no phase */
    double peak_tflops;                   /* its calibrated GEMM peak; NaN when not calibrated */
    double device;                        /* the device ordinal it drove */
} pb_rank_stats;

#define PB_RANK_STATS_WIDTH (sizeof(pb_rank_stats) / sizeof(double))

/* A rank's figures from its iters steps: step_ms[i] and phases[i *
 * PB_PHASE_COUNT + p]. scratch holds iters doubles. peak_tflops and
 * device are the caller's to set. */
void pb_rank_stats_compute(const double *step_ms, const double *phases, int iters, double *scratch,
                           pb_rank_stats *out);

/* Where the "phase" of a verdict is no phase: busy time between phases. */
#define PB_STRAGGLER_NO_PHASE (-1)

/* One rank against its peers (the other ranks). */
typedef struct pb_straggler_verdict {
    double peers_busy_ms;  /* the peers' median busy_p50 */
    double excess_pct;     /* (busy_p50 - peers_busy_ms) / peers_busy_ms, in % */
    double threshold_pct;  /* what excess_pct must pass: max(min_frac, K x noise), in % */
    bool straggler;
    int phase;             /* the compute phase furthest above the peers' median, or PB_STRAGGLER_NO_PHASE */
    double phase_excess_ms;
    double peak_pct;       /* peak_tflops against the peers' median, in % (NaN unless all calibrated) */
} pb_straggler_verdict;

/* Judges each of n >= 2 ranks against its peers into out[n]; scratch holds
 * 2n doubles. Returns the number of stragglers. For rank r, with m the
 * peers' median busy_p50:
 *   noise = max(sqrt(se_r^2 + median(peers' se)^2), 1.4826 MAD(peers' busy_p50))
 *   straggler when busy_p50 - m > max(min_frac m, PB_STRAGGLER_NOISE_K noise)
 * (min_frac: PB_STRAGGLER_MIN_FRAC, or PB_STRAGGLER_SHARED_FRAC). */
int pb_straggler_find(const pb_rank_stats *r, int n, double min_frac, double *scratch, pb_straggler_verdict *out);

/* The rank with the largest busy_p50, and (max - min) / median of the
 * ranks' busy_p50 in %. */
int pb_straggler_slowest(const pb_rank_stats *r, int n, double *scratch, double *spread_pct);

/* "rank 2 (host vm, device 2): +35% busy, in bwd (+1.2 ms)" for rank;
 * "between phases" for PB_STRAGGLER_NO_PHASE; ", GEMM peak -20%"
 * added when its calibrated peak is over 10% below its peers'. */
void pb_straggler_describe(int rank, const char *host, const pb_rank_stats *r, const pb_straggler_verdict *v,
                           char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* PB_STRAGGLER_H */
