/* bench compare BASELINE.csv CURRENT.csv: the command line and the
 * printing (text, Markdown, CSV) over study/compare.h's pairing. */
#ifndef PB_COMPARE_CLI_H
#define PB_COMPARE_CLI_H

#include <stdio.h>

#include "compare.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The command: argv holds what follows "compare". Prints its own errors
 * (pb_log_error) and returns the process exit code. */
int pb_cmd_compare(int argc, char **argv);

/* --threshold's and --alpha's values as compare reads them (plot
 * --compare takes the same flags): a usage error naming the range. */
pb_status pb_compare_parse_threshold(const char *value, double *pct);
pb_status pb_compare_parse_alpha(const char *value, double *alpha);

/* Environment differences and the table (text, md or csv) on f. */
void pb_compare_print(FILE *f, const pb_compare_result *r, const pb_compare_opts *o);

#ifdef __cplusplus
}
#endif
#endif /* PB_COMPARE_CLI_H */
