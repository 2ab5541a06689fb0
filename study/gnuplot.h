/* gnuplot for the study tools: found on PATH, run with fork and exec (never
 * through a shell) on one script with -e assignments, its images written
 * under a hidden temporary name and renamed once both are complete, and
 * stopped with the tool on SIGINT/SIGTERM. The C side shapes the data; the
 * plots/ *.gp scripts draw. */
#ifndef PB_GNUPLOT_H
#define PB_GNUPLOT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "strbuf.h"

/* gnuplot's path on PATH (a bare PATH entry is the current folder); false
 * when none is an executable file. */
bool pb_gnuplot_find(char *exe, size_t len);

/* The folder of the plots/ *.gp scripts: plots/ beside the running bench
 * binary, else ./plots, the first holding `script` (a file name such as
 * "common.gp"); false when neither does. */
bool pb_gnuplot_find_scripts(const char *script, char *dir, size_t len);

/* name=value as a gnuplot string literal appended to vars: single quotes,
 * '' for a quote, control characters dropped. */
void pb_gnuplot_str(pb_strbuf *vars, const char *name, const char *value);
/* name=value as a number; 0 for one that is not finite. */
void pb_gnuplot_num(pb_strbuf *vars, const char *name, double value);

/* The handlers of SIGINT and SIGTERM before pb_gnuplot_catch_signals. */
typedef struct pb_gnuplot_signals {
    struct sigaction old_int, old_term;
} pb_gnuplot_signals;

/* From here on SIGINT and SIGTERM are recorded, not fatal (no SA_RESTART:
 * the wait for gnuplot returns), and a drawing in progress stops gnuplot;
 * the tool asks pb_gnuplot_signal, cleans up and exits 128 + the signal. */
void pb_gnuplot_catch_signals(pb_gnuplot_signals *saved);
void pb_gnuplot_restore_signals(const pb_gnuplot_signals *saved);
/* The signal caught, 0 when none. */
int pb_gnuplot_signal(void);

typedef enum pb_gnuplot_result {
    PB_GNUPLOT_DRAWN,   /* png and svg are complete */
    PB_GNUPLOT_FAILED,  /* logged, with `who` as the prefix; no image left */
    PB_GNUPLOT_STOPPED, /* a signal was caught: nothing drawn, no image left */
} pb_gnuplot_result;

/* Runs `EXE -d -e VARS SCRIPT`; vars (taken, empty after) gets outbase, the
 * hidden temporary name in outdir the script writes outbase.png and
 * outbase.svg to; once both are non-empty they are renamed to
 * outdir/outname.png and .svg, whose paths png and svg (PATH_MAX + 8 bytes)
 * receive. A stale image of that name is removed first, so it cannot pass
 * for this one. gnuplot's stdout goes to stderr: the tool's stdout carries
 * only what the user asked for. */
pb_gnuplot_result pb_gnuplot_draw(const char *who, const char *exe, const char *script, const char *outdir,
                                  const char *outname, pb_strbuf *vars, char *png, char *svg);

#endif /* PB_GNUPLOT_H */
