/* bench plot: the results CSV as PNG and SVG plots through gnuplot.
 *
 * The CSV is read by study/csv_read.c with compare's rules (rows whose
 * status is not `ok`, torn rows and rows with a non-finite figure are
 * skipped with a notice), rows are grouped by the configuration key
 * (study/key.h) for one workload and backend, and each plot's figures are
 * written as a small whitespace-separated .dat file that a script in plots/
 * draws. docs/plots.md lists the plots, the flags and the .dat formats. */
#ifndef PB_PLOT_H
#define PB_PLOT_H

#ifdef __cplusplus
extern "C" {
#endif

/* `bench plot CSV [flags]` and `bench plot --compare BASELINE CURRENT
 * [flags]`; argv holds what follows the subcommand. Prints the written image
 * paths on stdout, notices and errors on stderr. Returns the exit code: 0
 * written, 1 gnuplot or an output failed, 2 usage error, unreadable CSV, or
 * gnuplot not on PATH, 128 + the signal after SIGINT/SIGTERM. */
int pb_cmd_plot(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif /* PB_PLOT_H */
