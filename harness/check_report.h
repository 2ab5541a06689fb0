/* bench check's figures and their report: the outlier verdicts, the table
 * on stdout, the warnings on stderr and the CSV rows (docs/check.md has the
 * schema). Rank 0 only; harness/check.c measures. */
#ifndef PB_CHECK_REPORT_H
#define PB_CHECK_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "commbench.h"
#include "status.h"
#include "../kernels/backend.h"
#include "../kernels/world.h"

#define PB_CHECK_SIZES 3           /* the pairs' and the sweep's sizes */
#define PB_CHECK_FAULT_FACTOR 10.0 /* PB_CHECK_FAULT's slowdown (test-only) */
#define PB_CHECK_NAME_CHARS 65     /* a host or device name, '\0' included */

typedef enum pb_check_metric { PB_CHECK_GEMM = 1, PB_CHECK_MEM, PB_CHECK_LINK } pb_check_metric;

typedef struct pb_check_opts {
    pb_commbench_opts comm; /* comm, backend, ranks, timeout, out, quiet; the sweep's sizes */
    double min_fraction;
    double stall_seconds;   /* the CPU stall probe's spin (cpu backend), 0: none */
    size_t mem_bytes;       /* the copy's buffer */
    int fault_kind;         /* a pb_check_metric, or 0: none (PB_CHECK_FAULT) */
    int fault_rank, fault_peer;
} pb_check_opts;

/* Rank 0's view of every rank after the gathers. */
typedef struct pb_check_figures {
    int n;
    const size_t *sizes;      /* [n_sizes] bytes */
    int n_sizes;
    double *gemm, *mem;       /* [n] TFLOP/s, GB/s */
    double *pair_ms;          /* [n][n][n_sizes]: rank i's median exchange with j */
    double *allreduce_gbps;   /* [n_sizes] busbw */
    char *hosts, *devices;    /* [n][PB_CHECK_NAME_CHARS] */
    pb_device_info info;      /* rank 0's device, for the rows' environment */
    double seconds;           /* the check's wall time so far */
    int outliers;             /* after the report */
    char summary[512];        /* after the report: the outliers named */
} pb_check_figures;

const char *pb_check_csv_header(void);

/* Judges f, prints the table, warns of each outlier, appends the rows to
 * o's --out; fills f->outliers and f->summary. Fails only to write. */
pb_status pb_check_report(const pb_check_opts *o, const pb_world *w, const pb_backend *be, pb_check_figures *f);

#endif /* PB_CHECK_REPORT_H */
