/* Every rank's record of a run (docs/csv-schema.md, "Per-rank file"): its
 * step-time distribution, phase means, busy time and calibrated GEMM peak,
 * brought to rank 0 after the steps (one gather of doubles, one of host
 * names: no collective between steps), judged there for stragglers
 * (straggler.h), and written to the row's summary columns (slowest_rank,
 * rank_spread_pct, stragglers), to stderr when a rank is flagged, and with
 * --ranks-out FILE to a CSV of one line per rank, whole or absent as
 * --steps-out. */
#ifndef PB_RANKS_H
#define PB_RANKS_H

#include <stdbool.h>
#include <stddef.h>

#include "results.h"
#include "status.h"
#include "straggler.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PB_RANK_HOST_CHARS 65 /* Linux's HOST_NAME_MAX + 1 */
#define PB_RANK_CPUS_CHARS 96 /* a cpulist; a longer one is cut with "..." */

typedef struct pb_ranks {
    int n;                          /* ranks (1 for a one-process run) */
    pb_rank_stats *stats;           /* [n], rank 0's complete after collect */
    char *hosts;                    /* [n][PB_RANK_HOST_CHARS] */
    char *cpus;                     /* [n][PB_RANK_CPUS_CHARS]: each rank's CPU affinity, "0-3,8" */
    pb_straggler_verdict *verdict;  /* [n], after judge; n >= 2 only */
    int found, slowest;
    double spread_pct;
} pb_ranks;

/* This rank's figures `mine` (index `rank` of n) and the CPUs it may run
 * on to rank 0; multi: over the MPI world (every rank calls it), else n is
 * 1 and nothing moves. */
pb_status pb_ranks_collect(pb_ranks *rk, const pb_rank_stats *mine, const char *host, int rank, int n, bool multi);
/* The CPUs this process may run on (cpu_bind.h) as a Linux cpulist,
 * "0-3,8"; cut with "..." past len - 1 bytes; "" where unknown. */
void pb_ranks_cpulist(char *buf, size_t len);
/* Whether two cpulists name a CPU in common (false when either names none
 * it can read). */
bool pb_ranks_cpulists_overlap(const char *a, const char *b);
/* Rank 0: the verdicts, the slowest rank and the spread (n >= 2); shared:
 * some node has more ranks than cores (straggler.h,
 * PB_STRAGGLER_SHARED_FRAC). */
pb_status pb_ranks_judge(pb_ranks *rk, bool shared);
/* Rank 0: the row's columns (empty for n < 2: no peers to compare) and one
 * stderr warning per straggler, naming another rank of its host whose CPUs
 * overlap its own ("shares CPUs 0 with rank 2"). */
void pb_ranks_report(const pb_ranks *rk, pb_record *rec, bool warn);
/* Rank 0, --ranks-out: the file beside path as --steps-out's (steps_out.h:
 * pb_out_file_finish(\"--ranks-out\", tmp, ..) renames it). */
pb_status pb_ranks_out_write(const pb_ranks *rk, const char *path, const char *run_id, char *tmp, size_t tmp_len);
void pb_ranks_free(pb_ranks *rk);

#ifdef __cplusplus
}
#endif
#endif /* PB_RANKS_H */
