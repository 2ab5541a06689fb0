/* bench compare over two bench comm CSVs (harness/comm_csv.h, docs/comm.md):
 * the `size` rows paired by comm, backend, ranks, collective and bytes, and
 * each pair judged on busbw_gbps by compare's own test (pb_compare_decide:
 * beyond --threshold in the bad direction and significant at --alpha). A
 * size whose busbw fell is a regression, as a run's throughput is; a size
 * ok in BASELINE whose CURRENT rows all failed (#wrong) too. */
#ifndef PB_COMPARE_COMM_H
#define PB_COMPARE_COMM_H

#include <stdbool.h>

#include "compare.h"
#include "csv_read.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The file is a bench comm CSV (its header has record, collective, bytes
 * and busbw_gbps). */
bool pb_comm_csv_is(const pb_csv *c);

/* Prints the comparison on stdout; returns the exit code: 0 no regression,
 * 1 a regression (or every CURRENT row failed), 2 bad input (message
 * logged). */
int pb_compare_comm(const pb_csv *base, const char *base_name, const pb_csv *cur, const char *cur_name,
                    const pb_compare_opts *o);

#ifdef __cplusplus
}
#endif
#endif /* PB_COMPARE_COMM_H */
