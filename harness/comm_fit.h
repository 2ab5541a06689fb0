/* bench comm's arithmetic, pure (libc only) so the unit tests check it on
 * synthetic data: the collectives it measures, nccl-tests' bus bandwidth
 * factors, and the alpha-beta fit of time against size.
 *
 * busbw (nccl-tests, doc/PERFORMANCE.md): algbw = S / t, and busbw = algbw x
 * a factor of the collective and the rank count n that makes the figure
 * comparable with the hardware's link bandwidth whatever n is: all-reduce
 * 2(n-1)/n, reduce-scatter and all-gather (n-1)/n (S the whole array, n x
 * the per-rank count), broadcast 1, send/recv 1.
 *
 * The fit: time = alpha + bytes / beta by least squares on the relative
 * residual (each point weighted 1/t^2, so 8-byte and 1-GiB points count
 * alike), alpha and 1/beta held non-negative; in up to PB_FIT_MAX_SEGMENTS
 * contiguous segments of the sizes, where one line does not fit (a protocol
 * or algorithm switch: eager to rendezvous, NCCL's LL to Simple). docs/comm.md
 * states the rule for when a segment is added. */
#ifndef PB_COMM_FIT_H
#define PB_COMM_FIT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pb_coll {
    PB_COLL_ALL_REDUCE,
    PB_COLL_REDUCE_SCATTER,
    PB_COLL_ALL_GATHER,
    PB_COLL_BROADCAST,
    PB_COLL_SENDRECV,
    PB_COLL_COUNT
} pb_coll;

/* nccl-tests' names without "_perf": all_reduce, reduce_scatter, all_gather,
 * broadcast, sendrecv */
const char *pb_coll_name(pb_coll c);
/* PB_COLL_COUNT when unknown */
pb_coll pb_coll_find(const char *name);
/* The busbw factor of c over n ranks (n >= 1). */
double pb_busbw_factor(pb_coll c, int ranks);

#define PB_FIT_MAX_SEGMENTS 3
#define PB_FIT_MIN_POINTS 3    /* a segment of a split fit has at least this many sizes */
#define PB_FIT_SPLIT_RMS 0.03  /* one line within 3% rms (relative) is not split */
#define PB_FIT_SPLIT_GAIN 0.5  /* a split must at least halve the squared residual */

typedef struct pb_fit_segment {
    double bytes_lo, bytes_hi; /* the first and last size of the segment */
    double alpha_us;           /* latency: the time of an empty message */
    double beta_gbps;          /* bandwidth in GB/s (1e9 B/s) of bytes; infinite when time does not grow */
    double rel_rms;            /* root mean square of (t - fit) / t over its points */
    int points;
} pb_fit_segment;

/* Fits n points (bytes ascending, time_us > 0) in 1 to PB_FIT_MAX_SEGMENTS
 * segments; returns how many (0: fewer than 2 points). */
int pb_fit_alpha_beta(const double *bytes, const double *time_us, int n, pb_fit_segment *seg);

#ifdef __cplusplus
}
#endif
#endif /* PB_COMM_FIT_H */
