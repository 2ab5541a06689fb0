/* The parts of bench plot its files share (internal: the command's
 * interface is plot.h):
 *   study/plot_table.c  reading rows into configurations: the table, the
 *                       grouping by the configuration key, labels and dims,
 *                       the scaling series and their references;
 *   study/plot_specs.c  the plot specification table, each plot's select and
 *                       rows functions, the compare plot, the one driver
 *                       (.dat file, titles, gnuplot);
 *   study/plot.c        the command: flags, folders, the workload and
 *                       backend of one CSV, the pairing of --compare. */
#ifndef PB_PLOT_INTERNAL_H
#define PB_PLOT_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "compare.h"
#include "csv_read.h"
#include "key.h"
#include "strbuf.h"
#include "../harness/results.h"
#include "../harness/status.h"

#define TEXT_MAX 512
#define DIM_MAX 96

/* ------------------------------------------------------------------------ */
/* growable arrays                                                           */

typedef struct strv {
    char **v;
    int n, cap;
} strv;

/* ------------------------------------------------------------------------ */
/* the CSV                                                                   */

/* A results CSV read by study/csv_read.c (the reader and rules compare
 * uses: NUL bytes, duplicate or empty column names, stray quotes refused,
 * torn rows skipped with a notice), and the rows plot uses: status ok and
 * every figure it draws a finite number. */
typedef struct table {
    const char *path;
    pb_csv csv;
    int col[PB_COL_COUNT]; /* each schema column's index, -1 when absent */
    int *rows;             /* the usable rows (indices into csv) */
    int nrows;
    int not_ok, dropped;
    pb_key key;    /* the configuration key (study/key.h) */
    pb_key series; /* the key but what changes with the device count */
} table;

/* ------------------------------------------------------------------------ */
/* configurations: rows that agree on the configuration key (study/key.h),*/
/* the runs of one configuration                                             */

typedef struct config {
    const table *t;
    int row; /* its first row (index into t's usable rows) */
    int devices;
    int *rows;
    int nrows, cap;
    int series; /* index among the distinct keys but the device count */
    char label[TEXT_MAX];        /* "ddp x4, bf16": one line */
    char series_label[TEXT_MAX]; /* "ddp, bf16": without the devices */
    char tic1[TEXT_MAX / 2];     /* "ddp x4": first line of a bar's label */
    char tic2[TEXT_MAX / 2];     /* "bf16": its second line, maybe empty */
} config;

typedef struct cfgset {
    config *c;
    int n, cap;
} cfgset;

/* ------------------------------------------------------------------------ */
/* files, paths, gnuplot                                                     */

typedef struct plot_opts {
    const char *csv, *base, *cur;
    const char *out, *workload, *backend, *metric, *plots_dir;
    const char *threshold, *alpha; /* --compare: bench compare's flags (NULL: its defaults) */
    bool compare, strong, keep_data, quiet;
} plot_opts;

typedef struct ctx {
    plot_opts o;
    char gnuplot[PATH_MAX];
    char outdir[PATH_MAX]; /* --out without trailing slashes */
    char plotdir[PATH_MAX];
    char datadir[PATH_MAX];
    bool made_tmp;
    strv tmpfiles;
    int written, failed;
} ctx;

/* ------------------------------------------------------------------------ */
/* plots as specifications                                                   */

/* The configurations of one workload and backend, grouped (bench plot CSV),
 * with the scaling plots' series: configurations that differ only in what
 * changes with the device count. */
typedef struct selection {
    cfgset set;
    int *all; /* 0..n-1 in plot order */
    int n;
    char workload[DIM_MAX], backend[DIM_MAX];
    char prefix[2 * DIM_MAX + 4]; /* "<workload>-<backend>-", file-name safe */
    bool per_device_batch;
    int nseries;
    int *first;  /* per series, its first config in plot order */
    int *maxdev; /* its largest device count */
    int *ref;    /* its 1-device reference config (reference_of), -1 none */
} selection;

/* --compare: the configurations BASELINE and CURRENT share. */
typedef struct pairing {
    const table *base, *cur;
    const cfgset *bs, *cs;
    const int *bi, *ci; /* pair i: bs->c[bi[i]] and cs->c[ci[i]] */
    int m;
    const char *metric;
    /* pair i's test by bench compare (its verdict, each side's spread);
     * NULL when compare has none for it (a metric compare does not judge) */
    const pb_compare_pair *const *test;
    pb_compare_opts opts; /* the threshold and alpha it was judged with */
} pairing;

/* One plot being built: the configurations it draws and what its functions
 * leave for the title and the script. */
typedef struct plot_job {
    ctx *x;
    const selection *sel; /* bench plot CSV; NULL with --compare */
    const pairing *pair;  /* --compare; NULL otherwise */
    const cfgset *set;    /* the configurations idx indexes */
    int *idx, n;          /* the ones drawn, in plot order */
    const char *prefix;   /* the file names' start */
    pb_strbuf vars;       /* the script's own variables */
    char sub[TEXT_MAX];   /* the subtitle's first part, when the spec has none */
} plot_job;

/* A plot: NAME.dat of figures (docs/plots.md) drawn by plots/SCRIPT.gp into
 * NAME.png and NAME.svg, NAME prefixed with the workload and backend. */
typedef struct plot_spec {
    const char *name;
    const char *script;
    const char *what; /* the plot in a skip notice */
    /* the strategies whose configurations it draws (a fact of the strategy
     * table); NULL: every configuration */
    bool (*needs)(const char *strategy);
    /* drawn only when the spec before it wrote its data (they share it) */
    bool with_previous;
    /* optional: keeps the configurations among job->idx it has data for;
     * NULL to go on, else why the plot is skipped (a notice) */
    const char *(*select)(plot_job *job);
    /* writes the .dat header and rows, adds the script's variables; a skip
     * reason returned here leaves the data written but draws nothing */
    const char *(*rows)(plot_job *job, FILE *f);
    /* the title's start and the subtitle's first part (NULL: rows writes
     * job->sub); titles, when set, writes both instead */
    const char *title, *sub;
    void (*titles)(const plot_job *job, char *title, size_t tlen, char *sub, size_t slen);
} plot_spec;

/* study/plot_table.c: reading rows into configurations */
bool pb_plot_strv_push(strv *s, char *str);
void pb_plot_strv_free(strv *s);
const char *pb_plot_tv(const table *t, int r, pb_column c);
const char *pb_plot_fv(const table *t, int r, const char *name);
void pb_plot_table_free(table *t);
pb_status pb_plot_table_read(table *t, const char *path, const char *metric);
void pb_plot_table_notices(const table *t);
void pb_plot_cfgset_free(cfgset *s);
const char *pb_plot_cv(const config *c, pb_column col);
pb_status pb_plot_group_rows(const table *t, const char *workload, const char *backend, cfgset *out);
double pb_plot_cmean(const config *c, const char *col);
int pb_plot_config_cmp(const void *pa, const void *pb);
bool pb_plot_dim_varies_all(const cfgset *s, const int *idx, int n, pb_column col);
void pb_plot_make_labels(cfgset *s, const int *idx, int n, bool per_device_batch);
void pb_plot_add_distinct(strv *v, const char *s);
void pb_plot_device_and_date(const cfgset *s, const int *idx, int n, char *buf, size_t len);
void pb_plot_shared_settings(const cfgset *s, const int *idx, int n, bool per_device_batch, char *buf,
                             size_t len);
pb_status pb_plot_find_series(selection *sel);

/* study/plot_specs.c: the communication plot's columns (a line each per
 * strategy), which the reader also checks are finite numbers */
typedef struct pb_plot_col {
    const char *col, *title;
} pb_plot_col;
extern const pb_plot_col pb_plot_comm_volume[];
extern const int pb_plot_comm_volume_n;

/* study/plot_specs.c: the plots */
void pb_plot_safe_name(char *s);
bool pb_plot_build_plot(const plot_spec *spec, plot_job *job);
void pb_plot_draw_selection(ctx *x, const selection *sel, int *idx);
extern const plot_spec pb_plot_compare_plot;

/* Draws plots/SCRIPT.gp over datafile into OUTNAME.png and .svg in --out,
 * printing their paths (vars gets plotdir, datafile, ptitle, psub); counts
 * x->written or x->failed (study/plot_specs.c) */
void pb_plot_draw(ctx *x, const char *script, const char *datafile, const char *outname, const char *title,
                  const char *sub, pb_strbuf *vars);
/* bench plot over a bench comm CSV (study/plot_comm.c): busbw against size,
 * a line per collective; returns the exit code */
int pb_plot_comm(ctx *x, const pb_csv *c);

#endif /* PB_PLOT_INTERNAL_H */
