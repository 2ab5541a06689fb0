/* bench plot: read the results CSV, group its rows per configuration, write
 * each plot's figures as a .dat file and draw it with a plots/ *.gp script
 * (docs/plots.md). study/gnuplot.c runs gnuplot (fork and exec, never a
 * shell; strings reach it as single-quoted gnuplot literals). */
#define _POSIX_C_SOURCE 200809L
#include "plot.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "csv_read.h"
#include "gnuplot.h"
#include "key.h"
#include "../harness/log.h"
#include "../harness/registry.h"
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

static bool strv_push(strv *s, char *str)
{
    if (!str) return false;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        char **v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = str;
    return true;
}

static void strv_free(strv *s)
{
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

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

/* Field `c` of usable row r, "" when the file has no such column. */
static const char *tv(const table *t, int r, pb_column c)
{
    return t->col[c] < 0 ? "" : pb_csv_get(&t->csv, (size_t)t->rows[r], (size_t)t->col[c]);
}

/* Field `name` of usable row r, "" when absent (columns outside the schema
 * too, e.g. a --compare metric of an older file). */
static const char *fv(const table *t, int r, const char *name)
{
    int c = pb_column_find(name);
    if (c >= 0) return tv(t, r, (pb_column)c);
    c = pb_csv_find(&t->csv, name);
    return c < 0 ? "" : pb_csv_get(&t->csv, (size_t)t->rows[r], (size_t)c);
}

static double num(const char *s)
{
    double v;
    return s && pb_csv_number(s, &v) ? v : NAN;
}

static void table_free(table *t)
{
    pb_csv_free(&t->csv);
    free(t->rows);
    memset(t, 0, sizeof *t);
}

/* The figures the plots draw: a row with one that is not a finite number
 * (inf, nan, text) is dropped, and the notice names it. */
static const char *const drawn[] = {"samples_per_s", "step_ms_mean", "load_ms", "h2d_ms", "fwd_ms", "bwd_ms",
                                    "comm_ms", "sync_ms", "opt_ms", "scatter_ms", "replicate_ms", "gather_ms",
                                    "reduce_ms", "p2p_ms", "bubble_ms", "overlap_pct", "bubble_frac",
                                    "bubble_frac_theory"};

static bool finite_field(const char *v) { return !*v || !isnan(num(v)); }

/* Why row `row` of t cannot be plotted, "" when it can. */
static void row_problem(const table *t, size_t row, const char *metric, char *why, size_t len)
{
    char ex[64];
    why[0] = '\0';
    const char *d = pb_csv_get(&t->csv, row, (size_t)t->col[PB_COL_DEVICES]);
    if (!(num(d) >= 1)) {
        snprintf(why, len, "devices '%s' is not a device count", pb_csv_excerpt(d, ex, sizeof ex));
        return;
    }
    for (size_t i = 0; i <= sizeof drawn / sizeof drawn[0]; i++) {
        const char *name = i < sizeof drawn / sizeof drawn[0] ? drawn[i] : metric;
        int c = name ? pb_csv_find(&t->csv, name) : -1;
        if (c < 0) continue;
        const char *v = pb_csv_get(&t->csv, row, (size_t)c);
        if (finite_field(v)) continue;
        snprintf(why, len, "%s '%s' is not a finite number", name, pb_csv_excerpt(v, ex, sizeof ex));
        return;
    }
}

static pb_status table_read(table *t, const char *path, const char *metric)
{
    memset(t, 0, sizeof *t);
    t->path = path;
    pb_status st = pb_csv_load(path, &t->csv);
    if (st != PB_OK) return st;
    for (int c = 0; c < PB_COL_COUNT; c++) t->col[c] = pb_csv_find(&t->csv, pb_column_name((pb_column)c));
    static const pb_column needed[] = {PB_COL_STATUS, PB_COL_STRATEGY, PB_COL_BACKEND, PB_COL_WORKLOAD,
                                       PB_COL_DEVICES};
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++)
        if (t->col[needed[i]] < 0) {
            st = pb_usage_error("plot: %s is not a parbench results CSV (its header has no '%s' column)", path,
                                pb_column_name(needed[i]));
            goto cleanup;
        }
    t->rows = malloc((t->csv.nrows + 1) * sizeof *t->rows);
    if (!t->rows) {
        st = pb_error(PB_ERR_NOMEM, "plot: out of memory reading %s", path);
        goto cleanup;
    }
    char why[160];
    for (size_t r = 0; r < t->csv.nrows; r++) {
        const char *status = pb_csv_get(&t->csv, r, (size_t)t->col[PB_COL_STATUS]);
        if (strcmp(status, "status") == 0) continue; /* a repeated header (files joined) */
        if (strcmp(status, "ok") != 0) {
            t->not_ok++;
            continue;
        }
        row_problem(t, r, metric, why, sizeof why);
        if (why[0]) {
            if (t->dropped++ < PB_CSV_SKIP_KEPT)
                pb_log_info("plot: %s:%zu: skipped: %s", path, t->csv.line[r], why);
            continue;
        }
        t->rows[t->nrows++] = (int)r;
    }
    pb_key_init(&t->key, PB_KEY_PAIR, &t->csv, NULL);
    /* a line over device counts: these change with the count itself (and
     * the global batch in weak scaling, compared per device instead) */
    t->series = t->key;
    static const pb_column per_count[] = {PB_COL_DEVICES, PB_COL_DEVICE_MAP, PB_COL_SPLIT, PB_COL_BATCH_GLOBAL};
    for (size_t i = 0; i < sizeof per_count / sizeof per_count[0]; i++) pb_key_drop(&t->series, per_count[i]);
cleanup:
    if (st != PB_OK) table_free(t);
    return st;
}

static void table_notices(const table *t)
{
    char why[128];
    if (t->not_ok) pb_log_info("plot: %s: skipped %d row(s) whose status is not ok", t->path, t->not_ok);
    if (t->dropped > PB_CSV_SKIP_KEPT)
        pb_log_info("plot: %s: and %d more row(s) skipped for figures that are not finite numbers", t->path,
                    t->dropped - PB_CSV_SKIP_KEPT);
    for (size_t i = 0; i < t->csv.nskipped && i < PB_CSV_SKIP_KEPT; i++) {
        const pb_csv_skip *s = &t->csv.skip[i];
        if (s->reason == PB_CSV_SKIP_NO_NEWLINE)
            pb_log_info("plot: %s: skipped a partial last line (line %zu has no final newline, a row cut short)",
                        t->path, s->line);
        else
            pb_log_info("plot: %s:%zu: skipped (%s)", t->path, s->line,
                        pb_csv_skip_text(s, t->csv.ncols, why, sizeof why));
    }
    if (t->csv.nskipped > PB_CSV_SKIP_KEPT)
        pb_log_info("plot: %s: and %zu more malformed lines skipped", t->path, t->csv.nskipped - PB_CSV_SKIP_KEPT);
}

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

static void cfgset_free(cfgset *s)
{
    for (int i = 0; i < s->n; i++) free(s->c[i].rows);
    free(s->c);
    memset(s, 0, sizeof *s);
}

/* A configuration's value of column c. */
static const char *cv(const config *c, pb_column col) { return tv(c->t, c->row, col); }

/* Its batch as the plot names it: per device with weak scaling, global
 * with strong scaling and in --compare (the devices tell the other). */
static const char *batch_of(const config *c, bool per_device_batch)
{
    return cv(c, per_device_batch ? PB_COL_BATCH_PER_DEVICE : PB_COL_BATCH_GLOBAL);
}

/* The value column col shows in labels; the batch as above. */
static const char *label_value(const config *c, pb_column col, bool per_device_batch)
{
    return col == PB_COL_BATCH_GLOBAL ? batch_of(c, per_device_batch) : cv(c, col);
}

/* Same line of a scaling plot: the key but the device count. */
static bool same_series(const config *a, const config *b, bool per_device_batch)
{
    return pb_key_cmp(&a->t->series, &a->t->csv, (size_t)a->t->rows[a->row], &b->t->csv,
                      (size_t)b->t->rows[b->row]) == 0 &&
           pb_key_value_cmp(batch_of(a, per_device_batch), batch_of(b, per_device_batch)) == 0;
}

/* Rows of t (of one workload and backend unless NULL) grouped per config. */
static pb_status group_rows(const table *t, const char *workload, const char *backend, cfgset *out)
{
    for (int r = 0; r < t->nrows; r++) {
        if (workload && strcmp(tv(t, r, PB_COL_WORKLOAD), workload) != 0) continue;
        if (backend && strcmp(tv(t, r, PB_COL_BACKEND), backend) != 0) continue;
        int i = 0;
        while (i < out->n && pb_key_cmp(&t->key, &t->csv, (size_t)t->rows[out->c[i].row], &t->csv, (size_t)t->rows[r]))
            i++;
        if (i == out->n) {
            if (out->n == out->cap) {
                int cap = out->cap ? 2 * out->cap : 16;
                config *c = realloc(out->c, (size_t)cap * sizeof *c);
                if (!c) return pb_error(PB_ERR_NOMEM, "plot: out of memory");
                out->c = c;
                out->cap = cap;
            }
            config *c = &out->c[out->n++];
            memset(c, 0, sizeof *c);
            c->t = t;
            c->row = r;
            c->devices = (int)num(tv(t, r, PB_COL_DEVICES));
        }
        config *c = &out->c[i];
        if (c->nrows == c->cap) {
            int cap = c->cap ? 2 * c->cap : 4;
            int *rows = realloc(c->rows, (size_t)cap * sizeof *rows);
            if (!rows) return pb_error(PB_ERR_NOMEM, "plot: out of memory");
            c->rows = rows;
            c->cap = cap;
        }
        c->rows[c->nrows++] = r;
    }
    return PB_OK;
}

/* Mean of a column over a config's rows, NaN when none has a number. */
static double cmean(const config *c, const char *col)
{
    double sum = 0;
    int n = 0;
    for (int i = 0; i < c->nrows; i++) {
        double v = num(fv(c->t, c->rows[i], col));
        if (!isnan(v)) {
            sum += v;
            n++;
        }
    }
    return n ? sum / n : NAN;
}

/* Plot order: workload, backend, strategy (the registry's order), the rest
 * of the key, devices. */
static int config_cmp(const void *pa, const void *pb)
{
    const config *a = pa, *b = pb;
    int d = strcmp(cv(a, PB_COL_WORKLOAD), cv(b, PB_COL_WORKLOAD));
    if (!d) d = strcmp(cv(a, PB_COL_BACKEND), cv(b, PB_COL_BACKEND));
    if (!d) d = pb_strategy_order(cv(a, PB_COL_STRATEGY)) - pb_strategy_order(cv(b, PB_COL_STRATEGY));
    if (!d)
        d = pb_key_cmp(&a->t->series, &a->t->csv, (size_t)a->t->rows[a->row], &b->t->csv,
                       (size_t)b->t->rows[b->row]);
    if (!d) d = pb_key_value_cmp(cv(a, PB_COL_BATCH_GLOBAL), cv(b, PB_COL_BATCH_GLOBAL));
    if (!d) d = a->devices - b->devices;
    return d;
}

/* The key columns a label may show, beyond the strategy and devices. */
static bool labelled(pb_column col)
{
    return pb_column_key(col) == PB_KEY_ALL && col != PB_COL_STRATEGY && col != PB_COL_WORKLOAD &&
           col != PB_COL_BACKEND && col != PB_COL_DEVICES;
}

static void dim_text(pb_column col, const char *v, bool per_device_batch, char *buf, size_t len)
{
    switch (col) {
    case PB_COL_THREADS: snprintf(buf, len, "%s thread%s", v, strcmp(v, "1") == 0 ? "" : "s"); break;
    case PB_COL_BATCH_GLOBAL: snprintf(buf, len, "%s %s", per_device_batch ? "batch/dev" : "batch", v); break;
    case PB_COL_MICROBATCHES: snprintf(buf, len, "m=%s", v); break;
    case PB_COL_BUCKET_MB: snprintf(buf, len, "bucket %s MB", v); break;
    case PB_COL_CUDA_GRAPH: snprintf(buf, len, "%s", strcmp(v, "1") == 0 ? "graph" : "no graph"); break;
    case PB_COL_COMM:
    case PB_COL_PRECISION:
    case PB_COL_OPTIMIZER: snprintf(buf, len, "%s", v); break;
    default: snprintf(buf, len, "%s=%s", pb_column_name(col), v);
    }
}

/* Does column col take more than one value among the configs in idx that
 * share c's strategy (and workload and backend)? */
static bool dim_varies(const cfgset *s, const int *idx, int n, const config *c, pb_column col, bool per_device_batch)
{
    for (int i = 0; i < n; i++) {
        const config *o = &s->c[idx[i]];
        if (strcmp(cv(o, PB_COL_STRATEGY), cv(c, PB_COL_STRATEGY)) != 0) continue;
        if (col != PB_COL_WORKLOAD && col != PB_COL_BACKEND &&
            (strcmp(cv(o, PB_COL_WORKLOAD), cv(c, PB_COL_WORKLOAD)) != 0 ||
             strcmp(cv(o, PB_COL_BACKEND), cv(c, PB_COL_BACKEND)) != 0))
            continue;
        if (pb_key_value_cmp(label_value(o, col, per_device_batch), label_value(c, col, per_device_batch)) != 0)
            return true;
    }
    return false;
}

static bool dim_varies_all(const cfgset *s, const int *idx, int n, pb_column col, bool per_device_batch)
{
    for (int i = 1; i < n; i++)
        if (pb_key_value_cmp(label_value(&s->c[idx[i]], col, per_device_batch),
                             label_value(&s->c[idx[0]], col, per_device_batch)) != 0)
            return true;
    return false;
}

/* Labels name the strategy (and the devices) and whatever else of the key
 * tells the configs of a strategy apart; workload and backend when they
 * differ. */
static void make_labels(cfgset *s, const int *idx, int n, bool per_device_batch)
{
    bool wl = dim_varies_all(s, idx, n, PB_COL_WORKLOAD, false), be = dim_varies_all(s, idx, n, PB_COL_BACKEND, false);
    for (int i = 0; i < n; i++) {
        config *c = &s->c[idx[i]];
        char head[3 * DIM_MAX + 4], rest[TEXT_MAX], part[DIM_MAX + 64];
        snprintf(head, sizeof head, "%.90s%s%.90s%s%.90s", wl ? cv(c, PB_COL_WORKLOAD) : "", wl ? " " : "",
                 be ? cv(c, PB_COL_BACKEND) : "", be ? " " : "", cv(c, PB_COL_STRATEGY));
        size_t len = 0;
        rest[0] = '\0';
        for (int col = 0; col < PB_COL_COUNT; col++) {
            if (!labelled((pb_column)col) || c->t->col[col] < 0) continue;
            char v[DIM_MAX];
            snprintf(v, sizeof v, "%s", label_value(c, (pb_column)col, per_device_batch));
            if (!v[0] || strcmp(v, "none") == 0) continue;
            if (!dim_varies(s, idx, n, c, (pb_column)col, per_device_batch)) continue;
            dim_text((pb_column)col, v, per_device_batch, part, sizeof part);
            len += (size_t)snprintf(rest + len, len < sizeof rest ? sizeof rest - len : 0, ", %s", part);
        }
        snprintf(c->series_label, TEXT_MAX, "%.200s%.280s", head, rest);
        snprintf(c->label, TEXT_MAX, "%.200s x%d%.280s", head, c->devices, rest);
        snprintf(c->tic1, sizeof c->tic1, "%.200s x%d", head, c->devices);
        snprintf(c->tic2, sizeof c->tic2, "%.240s", rest[0] ? rest + 2 : "");
    }
}

/* ------------------------------------------------------------------------ */
/* titles                                                                    */

static void add_distinct(strv *v, const char *s)
{
    if (!*s) return;
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->v[i], s) == 0) return;
    strv_push(v, strdup(s));
}

/* "<device>, <date>" of the rows of the configs in idx. */
static void device_and_date(const cfgset *s, const int *idx, int n, char *buf, size_t len)
{
    strv devs = {0};
    char first[16] = "", last[16] = "";
    for (int i = 0; i < n; i++) {
        const config *c = &s->c[idx[i]];
        for (int k = 0; k < c->nrows; k++) {
            const char *gpu = fv(c->t, c->rows[k], "gpu_name");
            add_distinct(&devs, *gpu ? gpu : fv(c->t, c->rows[k], "cpu_model"));
            char day[16];
            snprintf(day, sizeof day, "%.10s", fv(c->t, c->rows[k], "time_utc"));
            if (!day[0]) continue;
            if (!first[0] || strcmp(day, first) < 0) snprintf(first, sizeof first, "%s", day);
            if (!last[0] || strcmp(day, last) > 0) snprintf(last, sizeof last, "%s", day);
        }
    }
    char dev[TEXT_MAX];
    if (devs.n == 0)
        snprintf(dev, sizeof dev, "unknown device");
    else if (devs.n == 1)
        snprintf(dev, sizeof dev, "%.400s", devs.v[0]);
    else
        snprintf(dev, sizeof dev, "%.400s and %d other device%s", devs.v[0], devs.n - 1, devs.n > 2 ? "s" : "");
    strv_free(&devs);
    if (!first[0])
        snprintf(buf, len, "%.440s", dev);
    else if (strcmp(first, last) == 0)
        snprintf(buf, len, "%.440s, %s", dev, first);
    else
        snprintf(buf, len, "%.440s, %s to %s", dev, first, last);
}

/* A backend whose devices are the host's cores (the cpu): its thread count
 * is a setting worth naming. False for a backend this binary does not know. */
static bool host_cores(const char *backend)
{
    const pb_backend *be = pb_find_backend(backend);
    return be && !be->is_gpu;
}

/* The settings every plotted config shares, for the second title line. */
static void shared_settings(const cfgset *s, const int *idx, int n, bool per_device_batch, char *buf, size_t len)
{
    static const pb_column dims[] = {PB_COL_PRECISION, PB_COL_OPTIMIZER, PB_COL_THREADS, PB_COL_BATCH_GLOBAL,
                                     PB_COL_CUDA_GRAPH};
    size_t used = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        pb_column d = dims[k];
        const char *v = label_value(&s->c[idx[0]], d, per_device_batch);
        if (!*v || dim_varies_all(s, idx, n, d, per_device_batch)) continue;
        if (d == PB_COL_CUDA_GRAPH && strcmp(v, "1") != 0) continue;
        if (d == PB_COL_THREADS && !host_cores(cv(&s->c[idx[0]], PB_COL_BACKEND))) continue;
        char part[DIM_MAX + 32];
        dim_text(d, v, per_device_batch, part, sizeof part);
        used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%s", used ? ", " : "", part);
    }
    bool over = false;
    for (int i = 0; i < n; i++) {
        const config *c = &s->c[idx[i]];
        for (int k = 0; k < c->nrows; k++) over |= strcmp(fv(c->t, c->rows[k], "oversubscribed"), "1") == 0;
    }
    if (over)
        snprintf(buf + used, used < len ? len - used : 0, "%soversubscribed runs (devices share hardware)",
                 used ? "; " : "");
}

/* ------------------------------------------------------------------------ */
/* files, paths, gnuplot                                                     */

typedef struct plot_opts {
    const char *csv, *base, *cur;
    const char *out, *workload, *backend, *metric, *plots_dir;
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

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static pb_status mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return pb_usage_error("plot: --out: path longer than %d bytes", PATH_MAX - 1);
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char keep = *p;
            *p = '\0';
            if (mkdir(path, 0777) != 0 && errno != EEXIST)
                return pb_usage_error("plot: --out %s: cannot create %s: %s", dir, path, strerror(errno));
            *p = keep;
            if (!keep) break;
        }
    }
    if (!is_dir(dir)) return pb_usage_error("plot: --out %s: not a folder", dir);
    if (access(dir, W_OK) != 0) return pb_usage_error("plot: --out %s: not writable", dir);
    return PB_OK;
}

/* The folder of the gnuplot scripts: --plots-dir, else plots/ beside the
 * bench binary, else ./plots. */
static pb_status find_plot_dir(ctx *x)
{
    char probe[PATH_MAX + 32];
    if (x->o.plots_dir) {
        snprintf(probe, sizeof probe, "%s/common.gp", x->o.plots_dir);
        if (access(probe, R_OK) != 0)
            return pb_usage_error("plot: --plots-dir %s: no gnuplot scripts there (common.gp missing)", x->o.plots_dir);
        snprintf(x->plotdir, sizeof x->plotdir, "%s", x->o.plots_dir);
        return PB_OK;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(probe, sizeof probe, "%s/plots/common.gp", exe);
            if (access(probe, R_OK) == 0) {
                snprintf(x->plotdir, sizeof x->plotdir, "%.*s/plots", PATH_MAX - 8, exe);
                return PB_OK;
            }
        }
    }
    if (access("plots/common.gp", R_OK) == 0) {
        snprintf(x->plotdir, sizeof x->plotdir, "plots");
        return PB_OK;
    }
    return pb_usage_error("plot: the gnuplot scripts (plots/*.gp) were not found beside the bench binary or in "
                          "./plots; pass --plots-dir DIR");
}

/* A label inside a .dat file: double-quoted, so no double quotes inside. */
static void dat_label(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        fputc(*p == '"' ? '\'' : (*p < 0x20 || *p == 0x7f) ? ' ' : *p, f);
    fputc('"', f);
}

/* The two lines of a bar's label as the .dat files' first two columns. */
static void dat_tics(FILE *f, const config *c)
{
    dat_label(f, c->tic1);
    fputc(' ', f);
    dat_label(f, c->tic2);
}

static void dat_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, " %.6g", v);
    else
        fputs(" NaN", f);
}

/* Opens <datadir>/<name>.dat for writing; *path gets its path. */
static FILE *dat_open(ctx *x, const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.dat", x->datadir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        pb_log_error("plot: cannot write %s: %s", path, strerror(errno));
        x->failed++;
        return NULL;
    }
    if (!x->o.keep_data) strv_push(&x->tmpfiles, strdup(path));
    return f;
}

static bool dat_close(ctx *x, FILE *f, const char *path)
{
    if (ferror(f) | (fclose(f) != 0)) {
        pb_log_error("plot: cannot write %s", path);
        x->failed++;
        return false;
    }
    return true;
}

/* Draws plots/SCRIPT.gp (study/gnuplot.h), which reads datafile and writes
 * OUTNAME.png and OUTNAME.svg in --out; prints their paths. vars gets
 * plotdir, datafile, ptitle and psub added. */
static void draw(ctx *x, const char *script, const char *datafile, const char *outname, const char *title,
                 const char *sub, pb_strbuf *vars)
{
    char script_path[PATH_MAX + 32], png[PATH_MAX + 8], svg[PATH_MAX + 8];
    snprintf(script_path, sizeof script_path, "%s/%s.gp", x->plotdir, script);
    pb_gnuplot_str(vars, "plotdir", x->plotdir);
    pb_gnuplot_str(vars, "datafile", datafile);
    pb_gnuplot_str(vars, "ptitle", title);
    pb_gnuplot_str(vars, "psub", sub);
    switch (pb_gnuplot_draw("plot", x->gnuplot, script_path, x->outdir, outname, vars, png, svg)) {
    case PB_GNUPLOT_DRAWN:
        printf("%s\n%s\n", png, svg);
        fflush(stdout);
        x->written++;
        break;
    case PB_GNUPLOT_FAILED: x->failed++; break;
    case PB_GNUPLOT_STOPPED: break;
    }
}

static void skip(const ctx *x, const char *what, const char *why)
{
    (void)x;
    pb_log_info("plot: skipped %s: %s", what, why);
}

/* Comma-separated distinct device counts of the configs in idx ("1,2,4"). */
static void device_tics(const cfgset *s, const int *idx, int n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    int last = 0;
    for (;;) {
        int next = INT_MAX;
        for (int i = 0; i < n; i++)
            if (s->c[idx[i]].devices > last && s->c[idx[i]].devices < next) next = s->c[idx[i]].devices;
        if (next == INT_MAX) break;
        used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%d", used ? "," : "", next);
        last = next;
    }
}

static int xtic_angle(const cfgset *s, const int *idx, int n)
{
    size_t longest = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(s->c[idx[i]].tic1), l2 = strlen(s->c[idx[i]].tic2);
        if (l2 > l) l = l2;
        if (l > longest) longest = l;
    }
    if (n <= 12 && longest * (size_t)n <= 110) return 0;
    return n <= 12 ? 30 : n <= 30 ? 60 : 90; /* steeper as the bars get narrower */
}

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

static void safe_name(char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.') *s = '_';
}

static void title_of(const selection *sel, const int *idx, int n, const char *what, char *buf, size_t len)
{
    char dd[TEXT_MAX];
    device_and_date(&sel->set, idx, n, dd, sizeof dd);
    snprintf(buf, len, "%s: %s, %s, %s", what, sel->workload, sel->backend, dd);
}

static void sub_of(const selection *sel, const int *idx, int n, const char *extra, char *buf, size_t len)
{
    char shared[TEXT_MAX];
    shared_settings(&sel->set, idx, n, sel->per_device_batch, shared, sizeof shared);
    /* the shared settings are cut to fit beside extra (both TEXT_MAX) in a
     * subtitle: a label, not data */
    if (extra && *extra)
        snprintf(buf, len, "%s%s%.*s", extra, shared[0] ? "; " : "", TEXT_MAX - 16, shared);
    else
        snprintf(buf, len, "%s", shared);
}

/* Builds one plot: its configurations, its .dat file, its titles, the
 * drawing. Returns whether its data file was written. */
static bool build_plot(const plot_spec *spec, plot_job *job)
{
    ctx *x = job->x;
    job->vars = (pb_strbuf){0};
    job->sub[0] = '\0';
    const char *why = spec->select ? spec->select(job) : NULL;
    if (why) {
        skip(x, spec->what, why);
        return false;
    }
    char name[2 * DIM_MAX + 36], path[PATH_MAX + sizeof name + 8];
    snprintf(name, sizeof name, "%s%s", job->prefix, spec->name);
    safe_name(name);
    FILE *f = dat_open(x, name, path, sizeof path);
    if (!f) return false;
    why = spec->rows(job, f);
    bool closed = dat_close(x, f, path);
    if (!closed || why) {
        if (closed) skip(x, spec->what, why);
        free(pb_strbuf_take(&job->vars));
        return closed;
    }
    char title[TEXT_MAX * 2], sub[TEXT_MAX * 3];
    if (spec->titles) {
        spec->titles(job, title, sizeof title, sub, sizeof sub);
    } else {
        title_of(job->sel, job->idx, job->n, spec->title, title, sizeof title);
        sub_of(job->sel, job->idx, job->n, spec->sub ? spec->sub : job->sub, sub, sizeof sub);
    }
    draw(x, spec->script, path, name, title, sub, &job->vars);
    return true;
}

/* The strategies with gradient buckets (ddp) and with a pipeline of
 * microbatches (mp), as the strategy table says; false for a strategy this
 * binary does not know. */
static bool has_buckets(const char *strategy)
{
    const pb_strategy *s = pb_find_strategy(strategy);
    return s && s->buckets;
}

static bool has_microbatches(const char *strategy)
{
    const pb_strategy *s = pb_find_strategy(strategy);
    return s && s->microbatches;
}

static const char *const stack_phases[] = {"load", "h2d", "scatter", "replicate", "fwd", "gather",
                                           "bwd",  "reduce", "p2p", "bubble",    "sync", "opt"};
#define N_STACK (int)(sizeof stack_phases / sizeof stack_phases[0])

/* c's mean step and phase times (a missing or negative one is 0), and in
 * ph[N_STACK] the rest of the step the phases marked in used leave (0 when
 * negative); returns that rest before the clamp. */
static double phase_means(const config *c, const bool *used, double *ph, double *step)
{
    *step = cmean(c, "step_ms_mean");
    double sum = 0;
    for (int p = 0; p < N_STACK; p++) {
        char col[32];
        snprintf(col, sizeof col, "%s_ms", stack_phases[p]);
        double v = cmean(c, col);
        ph[p] = isnan(v) || v < 0 ? 0 : v;
        if (used && used[p]) sum += ph[p];
    }
    double other = isnan(*step) ? 0 : *step - sum;
    ph[N_STACK] = other > 0 ? other : 0;
    return other;
}

/* The breakdown's columns: a phase is drawn when it is at least 0.1 % of
 * some config's step (or there is no step time to compare with); "other" is
 * the rest of the step the drawn phases do not cover, when that is at least
 * 0.5 %. Returns how many. */
static int stack_columns(const plot_job *job, bool *used)
{
    double ph[N_STACK + 1], step;
    memset(used, 0, (N_STACK + 1) * sizeof *used);
    for (int i = 0; i < job->n; i++) {
        phase_means(&job->set->c[job->idx[i]], NULL, ph, &step);
        for (int p = 0; p < N_STACK; p++)
            if (ph[p] > 0 && (isnan(step) || ph[p] >= 0.001 * step)) used[p] = true;
    }
    for (int i = 0; i < job->n; i++) {
        double other = phase_means(&job->set->c[job->idx[i]], used, ph, &step);
        if (other > 0.001 && other >= 0.005 * step) used[N_STACK] = true;
    }
    int ncols = 0;
    for (int p = 0; p <= N_STACK; p++) ncols += used[p];
    return ncols;
}

static const char *breakdown_select(plot_job *job)
{
    bool used[N_STACK + 1];
    return stack_columns(job, used) ? NULL : "no phase times in the rows";
}

static const char *breakdown_rows(plot_job *job, FILE *f)
{
    bool used[N_STACK + 1];
    int ncols = stack_columns(job, used);
    fputs("\"config\" \"settings\"", f);
    for (int p = 0; p < N_STACK; p++)
        if (used[p]) fprintf(f, " \"%s\"", strcmp(stack_phases[p], "sync") == 0 ? "sync (exposed comm)" : stack_phases[p]);
    if (used[N_STACK]) fputs(" \"other (rest of the step)\"", f);
    fputs(" \"step (mean)\"\n", f);
    for (int i = 0; i < job->n; i++) {
        const config *c = &job->set->c[job->idx[i]];
        double ph[N_STACK + 1], step;
        phase_means(c, used, ph, &step);
        dat_tics(f, c);
        for (int p = 0; p <= N_STACK; p++)
            if (used[p]) dat_num(f, ph[p]);
        dat_num(f, step);
        fputc('\n', f);
    }
    pb_strbuf lts = {0};
    for (int p = 0; p <= N_STACK; p++)
        if (used[p]) pb_strbuf_printf(&lts, "%s%d", lts.n ? " " : "", 11 + p); /* plots/common.gp's phase colours */
    char *lt = pb_strbuf_take(&lts);
    pb_gnuplot_str(&job->vars, "phaselt", lt ? lt : "");
    free(lt);
    pb_gnuplot_num(&job->vars, "nphases", ncols);
    pb_gnuplot_num(&job->vars, "xrot", xtic_angle(job->set, job->idx, job->n));
    return NULL;
}

/* The 1-device reference of a series: `single` with the same settings
 * (the key but the strategy's own columns and what changes with the device
 * count), else the series' own 1-device config; -1 when neither ran. */
static int reference_of(const selection *sel, const config *c)
{
    pb_key same = c->t->series;
    static const pb_column own[] = {PB_COL_STRATEGY, PB_COL_COMM,       PB_COL_MICROBATCHES,
                                    PB_COL_BUCKET_MB, PB_COL_NO_OVERLAP};
    for (size_t k = 0; k < sizeof own / sizeof own[0]; k++) pb_key_drop(&same, own[k]);
    int mine = -1;
    for (int i = 0; i < sel->n; i++) {
        const config *r = &sel->set.c[sel->all[i]];
        if (r->devices != 1) continue;
        if (r->series == c->series) mine = sel->all[i];
        if (strcmp(cv(r, PB_COL_STRATEGY), "single") != 0) continue;
        bool match = pb_key_cmp(&same, &r->t->csv, (size_t)r->t->rows[r->row], &c->t->csv,
                                (size_t)c->t->rows[c->row]) == 0 &&
                     pb_key_value_cmp(batch_of(r, sel->per_device_batch), batch_of(c, sel->per_device_batch)) == 0;
        if (match && !isnan(cmean(r, "samples_per_s"))) return sel->all[i];
    }
    return mine >= 0 && !isnan(cmean(&sel->set.c[mine], "samples_per_s")) ? mine : -1;
}

/* The series of sel: each config's series index, and per series its first
 * config, its largest device count and its reference. */
static pb_status find_series(selection *sel)
{
    sel->nseries = 0;
    for (int i = 0; i < sel->n; i++) {
        config *c = &sel->set.c[i];
        c->series = -1;
        for (int k = 0; k < i && c->series < 0; k++)
            if (same_series(&sel->set.c[k], c, sel->per_device_batch)) c->series = sel->set.c[k].series;
        if (c->series < 0) c->series = sel->nseries++;
    }
    sel->first = malloc((size_t)sel->nseries * sizeof *sel->first);
    sel->maxdev = calloc((size_t)sel->nseries, sizeof *sel->maxdev);
    sel->ref = malloc((size_t)sel->nseries * sizeof *sel->ref);
    if (!sel->first || !sel->maxdev || !sel->ref) return pb_error(PB_ERR_NOMEM, "plot: out of memory");
    for (int s = 0; s < sel->nseries; s++) sel->first[s] = -1;
    for (int i = 0; i < sel->n; i++) {
        const config *c = &sel->set.c[sel->all[i]];
        if (sel->first[c->series] < 0) sel->first[c->series] = sel->all[i];
        if (c->devices > sel->maxdev[c->series]) sel->maxdev[c->series] = c->devices;
    }
    for (int s = 0; s < sel->nseries; s++) sel->ref[s] = reference_of(sel, &sel->set.c[sel->first[s]]);
    return PB_OK;
}

static const char *scaling_mode(const selection *sel)
{
    return sel->per_device_batch ? "weak scaling (same batch per device)" : "strong scaling (same global batch)";
}

static void add_devtics(plot_job *job)
{
    char tics[256];
    device_tics(job->set, job->idx, job->n, tics, sizeof tics);
    pb_gnuplot_str(&job->vars, "devtics", tics);
}

static const char *throughput_select(plot_job *job)
{
    for (int i = 0; i < job->n; i++) {
        const config *c = &job->set->c[job->idx[i]];
        if (c->devices > 1 && !isnan(cmean(c, "samples_per_s"))) return NULL;
    }
    return "no ok rows on more than one device";
}

/* A block per series, then a block per distinct reference: the ideal line
 * N x its throughput. */
static const char *throughput_rows(plot_job *job, FILE *f)
{
    const selection *sel = job->sel;
    int nseries = sel->nseries;
    const int *ref = sel->ref;
    for (int s = 0; s < nseries; s++) {
        if (s) fputs("\n\n", f);
        dat_label(f, sel->set.c[sel->first[s]].series_label);
        fputs(" \"samples/s\"\n", f);
        for (int i = 0; i < job->n; i++) {
            const config *c = &sel->set.c[job->idx[i]];
            if (c->series != s) continue;
            fprintf(f, "%d", c->devices);
            dat_num(f, cmean(c, "samples_per_s"));
            fputc('\n', f);
        }
    }
    int nideal = 0, distinct_refs = 0;
    for (int s = 0; s < nseries; s++) {
        bool seen = false;
        for (int k = 0; k < s; k++) seen |= ref[k] == ref[s];
        if (ref[s] >= 0 && !seen) distinct_refs++;
    }
    for (int s = 0; s < nseries; s++) {
        if (ref[s] < 0) continue;
        bool seen = false;
        for (int k = 0; k < s; k++) seen |= ref[k] == ref[s];
        if (seen) continue;
        int top = 1;
        for (int k = 0; k < nseries; k++)
            if (ref[k] == ref[s] && sel->maxdev[k] > top) top = sel->maxdev[k];
        if (top < 2) continue;
        const config *r = &sel->set.c[ref[s]];
        double t1 = cmean(r, "samples_per_s");
        char label[TEXT_MAX + 32];
        snprintf(label, sizeof label, "ideal: N x %s", r->label);
        fputs("\n\n", f);
        dat_label(f, label);
        fputs(" \"samples/s\" \"lt\"\n", f);
        int lt = distinct_refs == 1 ? 9 : s % 8 + 1;
        fprintf(f, "1 %.6g %d\n%d %.6g %d\n", t1, lt, top, t1 * top, lt);
        nideal++;
    }
    snprintf(job->sub, sizeof job->sub, "%s", scaling_mode(sel));
    pb_gnuplot_num(&job->vars, "nseries", nseries);
    pb_gnuplot_num(&job->vars, "nideal", nideal);
    add_devtics(job);
    return NULL;
}

/* The series with a reference, as a share of N x the reference. */
static const char *efficiency_rows(plot_job *job, FILE *f)
{
    const selection *sel = job->sel;
    int blocks = 0, beyond_one = 0;
    double ymax = 110;
    for (int s = 0; s < sel->nseries; s++) {
        if (sel->ref[s] < 0) {
            pb_log_info("plot: efficiency: no 1-device run to compare %s with; left out",
                        sel->set.c[sel->first[s]].series_label);
            continue;
        }
        double t1 = cmean(&sel->set.c[sel->ref[s]], "samples_per_s");
        if (blocks++) fputs("\n\n", f);
        dat_label(f, sel->set.c[sel->first[s]].series_label);
        fputs(" \"%\"\n", f);
        for (int i = 0; i < job->n; i++) {
            const config *c = &sel->set.c[job->idx[i]];
            if (c->series != s) continue;
            double e = 100.0 * cmean(c, "samples_per_s") / (c->devices * t1);
            if (isfinite(e) && e * 1.1 > ymax) ymax = e * 1.1;
            if (isfinite(e) && c->devices > 1) beyond_one++;
            fprintf(f, "%d", c->devices);
            dat_num(f, e);
            fputc('\n', f);
        }
    }
    if (!beyond_one) return "no run on more than one device has a 1-device run with the same settings";
    snprintf(job->sub, sizeof job->sub, "%s; throughput(N) / (N x throughput of the 1-device run)",
             scaling_mode(sel));
    pb_gnuplot_num(&job->vars, "nseries", blocks);
    pb_gnuplot_num(&job->vars, "ymax", ymax);
    add_devtics(job);
    return NULL;
}

/* Keeps the configurations of job->idx that `has` (in order); returns how
 * many there were. */
static int keep_configs(plot_job *job, bool (*has)(const config *c))
{
    int n = job->n, m = 0;
    for (int i = 0; i < n; i++)
        if (has(&job->set->c[job->idx[i]])) job->idx[m++] = job->idx[i];
    job->n = m;
    return n;
}

static bool has_comm(const config *c) { return !isnan(cmean(c, "comm_ms")); }

static const char *ddp_select(plot_job *job)
{
    int n = keep_configs(job, has_comm);
    return job->n ? NULL : n ? "no comm_ms in the ddp rows" : "no ddp rows";
}

static const char *ddp_rows(plot_job *job, FILE *f)
{
    fputs("\"config\" \"settings\" \"exposed (sync)\" \"hidden behind backward\" \"overlap (%, right axis)\"\n", f);
    for (int i = 0; i < job->n; i++) {
        const config *c = &job->set->c[job->idx[i]];
        double comm = cmean(c, "comm_ms"), sync = cmean(c, "sync_ms"), overlap = cmean(c, "overlap_pct");
        if (isnan(sync)) sync = isnan(overlap) ? comm : comm * (1 - overlap / 100);
        double hidden = comm - sync;
        if (hidden < 0) hidden = 0;
        if (isnan(overlap)) overlap = comm > 0 ? 100 * hidden / comm : NAN;
        dat_tics(f, c);
        dat_num(f, sync);
        dat_num(f, hidden);
        dat_num(f, overlap);
        fputc('\n', f);
    }
    pb_gnuplot_num(&job->vars, "xrot", xtic_angle(job->set, job->idx, job->n));
    return NULL;
}

static bool has_bubble(const config *c)
{
    return !isnan(cmean(c, "bubble_frac")) || !isnan(cmean(c, "bubble_frac_theory"));
}

static const char *bubble_select(plot_job *job)
{
    int n = keep_configs(job, has_bubble);
    return job->n ? NULL : n ? "no bubble_frac in the mp rows" : "no mp rows";
}

static const char *bubble_rows(plot_job *job, FILE *f)
{
    fputs("\"config\" \"settings\" \"measured\" \"theory (p-1)/(m+p-1)\"\n", f);
    for (int i = 0; i < job->n; i++) {
        const config *c = &job->set->c[job->idx[i]];
        config shown = *c;
        /* the microbatch count always shows here: it is the point */
        if (cv(c, PB_COL_MICROBATCHES)[0] && !strstr(c->tic2, "m="))
            snprintf(shown.tic2, sizeof shown.tic2, "m=%.60s%s%.160s", cv(c, PB_COL_MICROBATCHES), c->tic2[0] ? ", " : "",
                     c->tic2);
        dat_tics(f, &shown);
        dat_num(f, 100 * cmean(c, "bubble_frac"));
        dat_num(f, 100 * cmean(c, "bubble_frac_theory"));
        fputc('\n', f);
    }
    pb_gnuplot_num(&job->vars, "xrot", xtic_angle(job->set, job->idx, job->n));
    return NULL;
}

/* The plots of one CSV, in the order they are drawn. */
static const plot_spec csv_plots[] = {
    {.name = "throughput",
     .script = "throughput",
     .what = "throughput and scaling efficiency",
     .select = throughput_select,
     .rows = throughput_rows,
     .title = "Throughput"},
    {.name = "efficiency",
     .script = "efficiency",
     .what = "scaling efficiency",
     .with_previous = true,
     .rows = efficiency_rows,
     .title = "Scaling efficiency"},
    {.name = "breakdown",
     .script = "breakdown",
     .what = "the step breakdown",
     .select = breakdown_select,
     .rows = breakdown_rows,
     .title = "Step time by phase",
     .sub = "mean per measured step"},
    {.name = "ddp-comm",
     .script = "ddp_comm",
     .what = "ddp exposed vs hidden communication",
     .needs = has_buckets,
     .select = ddp_select,
     .rows = ddp_rows,
     .title = "DDP gradient all-reduce, exposed vs hidden",
     .sub = "mean per step; hidden = comm_ms - sync_ms"},
    {.name = "mp-bubble",
     .script = "bubble",
     .what = "mp pipeline bubble",
     .needs = has_microbatches,
     .select = bubble_select,
     .rows = bubble_rows,
     .title = "Pipeline bubble (mp)",
     .sub = "share of the step a stage waits; GPipe theory with p stages, m microbatches"},
};

/* Every plot of the selection; idx has room for its configurations. */
static void draw_selection(ctx *x, const selection *sel, int *idx)
{
    bool previous = false;
    for (size_t k = 0; k < sizeof csv_plots / sizeof csv_plots[0]; k++) {
        const plot_spec *spec = &csv_plots[k];
        if (spec->with_previous && !previous) continue;
        plot_job job = {.x = x, .sel = sel, .set = &sel->set, .idx = idx, .prefix = sel->prefix};
        for (int i = 0; i < sel->n; i++)
            if (!spec->needs || spec->needs(cv(&sel->set.c[sel->all[i]], PB_COL_STRATEGY))) idx[job.n++] = sel->all[i];
        previous = build_plot(spec, &job);
    }
}

/* ------------------------------------------------------------------------ */
/* the plots of one CSV                                                      */

/* The most frequent value of a column among rows (optionally of one
 * workload); ties go to the first seen. */
static void most_frequent(const table *t, pb_column col, const char *workload, char *out, size_t len)
{
    strv seen = {0};
    int *count = calloc((size_t)t->nrows + 1, sizeof *count);
    int best = -1;
    out[0] = '\0';
    for (int r = 0; count && r < t->nrows; r++) {
        if (workload && strcmp(tv(t, r, PB_COL_WORKLOAD), workload) != 0) continue;
        int k = 0;
        while (k < seen.n && strcmp(seen.v[k], tv(t, r, col)) != 0) k++;
        if (k == seen.n && !strv_push(&seen, strdup(tv(t, r, col)))) break;
        if (++count[k] > (best < 0 ? 0 : count[best])) best = k;
    }
    if (best >= 0) snprintf(out, len, "%s", seen.v[best]);
    free(count);
    strv_free(&seen);
}

static void others_notice(const table *t, const char *col, const char *chosen, const char *workload,
                          const char *flag)
{
    strv others = {0};
    for (int r = 0; r < t->nrows; r++) {
        if (workload && strcmp(fv(t, r, "workload"), workload) != 0) continue;
        if (strcmp(fv(t, r, col), chosen) != 0) add_distinct(&others, fv(t, r, col));
    }
    if (others.n) {
        pb_strbuf b = {0};
        for (int i = 0; i < others.n; i++) pb_strbuf_printf(&b, "%s%s", i ? ", " : "", others.v[i]);
        char *list = pb_strbuf_take(&b);
        pb_log_info("plot: plotting %s %s; the CSV also has %s (pick with %s)", col, chosen, list ? list : "?", flag);
        free(list);
    }
    strv_free(&others);
}

static int plot_csv(ctx *x)
{
    table t;
    pb_status st = table_read(&t, x->o.csv, NULL);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        return pb_status_exit_code(st);
    }
    table_notices(&t);
    selection sel;
    memset(&sel, 0, sizeof sel);
    sel.per_device_batch = !x->o.strong;
    int rc = 0;
    int *idx = NULL;
    if (t.nrows == 0) {
        if (t.dropped)
            pb_log_error("plot: %s has no rows with status ok and finite figures (%d skipped for those); nothing to "
                         "plot",
                         t.path, t.dropped);
        else
            pb_log_error("plot: %s has no rows with status ok; nothing to plot", t.path);
        rc = 1;
        goto cleanup;
    }
    if (x->o.workload) {
        snprintf(sel.workload, sizeof sel.workload, "%s", x->o.workload);
    } else {
        most_frequent(&t, PB_COL_WORKLOAD, NULL, sel.workload, sizeof sel.workload);
        others_notice(&t, "workload", sel.workload, NULL, "--workload");
    }
    if (x->o.backend) {
        snprintf(sel.backend, sizeof sel.backend, "%s", x->o.backend);
    } else {
        most_frequent(&t, PB_COL_BACKEND, sel.workload, sel.backend, sizeof sel.backend);
        others_notice(&t, "backend", sel.backend, sel.workload, "--backend");
    }
    st = group_rows(&t, sel.workload, sel.backend, &sel.set);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        rc = 1;
        goto cleanup;
    }
    if (sel.set.n == 0) {
        pb_log_error("plot: %s has no ok rows of workload '%s' on backend '%s'", t.path, sel.workload, sel.backend);
        rc = 2;
        goto cleanup;
    }
    qsort(sel.set.c, (size_t)sel.set.n, sizeof *sel.set.c, config_cmp);
    sel.n = sel.set.n;
    sel.all = malloc((size_t)sel.n * sizeof *sel.all);
    idx = malloc((size_t)sel.n * sizeof *idx);
    if (!sel.all || !idx) {
        pb_log_error("plot: out of memory");
        rc = 1;
        goto cleanup;
    }
    for (int i = 0; i < sel.n; i++) sel.all[i] = i;
    make_labels(&sel.set, sel.all, sel.n, sel.per_device_batch);
    st = find_series(&sel);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        rc = 1;
        goto cleanup;
    }
    snprintf(sel.prefix, sizeof sel.prefix, "%s-%s-", sel.workload, sel.backend);
    safe_name(sel.prefix);

    draw_selection(x, &sel, idx);
    rc = x->failed ? 1 : 0;
cleanup:
    free(idx);
    free(sel.all);
    free(sel.first);
    free(sel.maxdev);
    free(sel.ref);
    cfgset_free(&sel.set);
    table_free(&t);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* baseline vs current                                                       */

static const char *unit_of(const char *col)
{
    size_t n = strlen(col);
#define ENDS(s) (n >= strlen(s) && strcmp(col + n - strlen(s), s) == 0)
    if (strcmp(col, "samples_per_s") == 0) return "samples/s";
    if (ENDS("_ms") || strstr(col, "_ms_")) return "ms";
    if (ENDS("_pct")) return "%";
    if (ENDS("tflops")) return "TFLOP/s";
    if (ENDS("_gbps")) return "GB/s";
    if (ENDS("_mb") || strstr(col, "_mb_")) return "MB";
    if (ENDS("_bytes_per_step")) return "bytes/step";
#undef ENDS
    return "";
}

static bool higher_is_better(const char *col)
{
    return strcmp(col, "samples_per_s") == 0 || strstr(col, "tflops") || strcmp(col, "mfu") == 0 ||
           strstr(col, "gbps") || strcmp(col, "overlap_pct") == 0;
}

static const char *compare_rows(plot_job *job, FILE *f)
{
    const pairing *p = job->pair;
    fputs("\"config\" \"settings\" \"baseline\" \"current\" \"change\"\n", f);
    for (int i = 0; i < p->m; i++) {
        double b = cmean(&p->bs->c[p->bi[i]], p->metric), c = cmean(&p->cs->c[p->ci[i]], p->metric);
        dat_tics(f, &p->bs->c[p->bi[i]]);
        dat_num(f, b);
        dat_num(f, c);
        dat_num(f, b != 0 ? 100 * (c - b) / fabs(b) : NAN);
        fputc('\n', f);
    }
    char ylabel[TEXT_MAX];
    const char *unit = unit_of(p->metric);
    snprintf(ylabel, sizeof ylabel, "%s%s%s%s", p->metric, *unit ? " (" : "", unit, *unit ? ")" : "");
    pb_gnuplot_str(&job->vars, "ylab", ylabel);
    pb_gnuplot_num(&job->vars, "xrot", xtic_angle(p->bs, p->bi, p->m));
    return NULL;
}

static void compare_titles(const plot_job *job, char *title, size_t tlen, char *sub, size_t slen)
{
    const pairing *p = job->pair;
    char bdd[TEXT_MAX], cdd[TEXT_MAX];
    device_and_date(p->bs, p->bi, p->m, bdd, sizeof bdd);
    device_and_date(p->cs, p->ci, p->m, cdd, sizeof cdd);
    /* workload and backend in the title when every config shares them */
    bool wl = dim_varies_all(p->bs, p->bi, p->m, PB_COL_WORKLOAD, false),
         be = dim_varies_all(p->bs, p->bi, p->m, PB_COL_BACKEND, false);
    snprintf(title, tlen, "Baseline vs current, %s: %.100s, %.100s, %s", p->metric,
             wl ? "several workloads" : cv(&p->bs->c[p->bi[0]], PB_COL_WORKLOAD),
             be ? "several backends" : cv(&p->bs->c[p->bi[0]], PB_COL_BACKEND), cdd);
    snprintf(sub, slen, "baseline %.200s (%.200s); current %.200s; %s is better", p->base->path, bdd,
             p->cur->path, higher_is_better(p->metric) ? "higher" : "lower");
}

/* --compare's plot: the metric per configuration in both files. */
static const plot_spec compare_plot = {
    .name = "", .script = "compare", .rows = compare_rows, .titles = compare_titles};

/* A configuration of BASELINE and one of CURRENT: the same one? */
static bool same_config(const pb_key *pair, const config *b, const config *c)
{
    return pb_key_cmp(pair, &b->t->csv, (size_t)b->t->rows[b->row], &c->t->csv, (size_t)c->t->rows[c->row]) == 0;
}

static int plot_compare(ctx *x)
{
    table base, cur;
    const char *metric = x->o.metric ? x->o.metric : "samples_per_s";
    pb_status st = table_read(&base, x->o.base, metric);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        return pb_status_exit_code(st);
    }
    st = table_read(&cur, x->o.cur, metric);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        table_free(&base);
        return pb_status_exit_code(st);
    }
    table_notices(&base);
    table_notices(&cur);
    cfgset bs = {0}, cs = {0};
    int *bi = NULL, *ci = NULL;
    int rc = 0;
    bool in_base = pb_csv_find(&base.csv, metric) >= 0;
    if (!in_base || pb_csv_find(&cur.csv, metric) < 0) {
        pb_log_error("plot: --metric %s: no such column in %s", metric, !in_base ? base.path : cur.path);
        rc = 2;
        goto cleanup;
    }
    st = group_rows(&base, NULL, NULL, &bs);
    if (st == PB_OK) st = group_rows(&cur, NULL, NULL, &cs);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        rc = 1;
        goto cleanup;
    }
    bi = malloc(((size_t)bs.n + 1) * sizeof *bi);
    ci = malloc(((size_t)bs.n + 1) * sizeof *ci);
    if (!bi || !ci) {
        pb_log_error("plot: out of memory");
        rc = 1;
        goto cleanup;
    }
    qsort(bs.c, (size_t)bs.n, sizeof *bs.c, config_cmp);
    /* the key columns both files have, as bench compare pairs them */
    pb_key pair;
    pb_key_init(&pair, PB_KEY_PAIR, &base.csv, &cur.csv);
    int m = 0, only_base = 0, only_cur = 0, no_metric = 0;
    for (int i = 0; i < bs.n; i++) {
        int match = -1;
        for (int k = 0; k < cs.n && match < 0; k++)
            if (same_config(&pair, &bs.c[i], &cs.c[k])) match = k;
        if (match < 0) {
            only_base++;
            continue;
        }
        if (isnan(cmean(&bs.c[i], metric)) || isnan(cmean(&cs.c[match], metric))) {
            no_metric++;
            continue;
        }
        bi[m] = i;
        ci[m] = match;
        m++;
    }
    for (int k = 0; k < cs.n; k++) {
        bool matched = false;
        for (int i = 0; i < bs.n && !matched; i++) matched = same_config(&pair, &bs.c[i], &cs.c[k]);
        only_cur += !matched;
    }
    if (only_base) pb_log_info("plot: %d configuration(s) only in %s, not plotted", only_base, base.path);
    if (only_cur) pb_log_info("plot: %d configuration(s) only in %s, not plotted", only_cur, cur.path);
    if (no_metric) pb_log_info("plot: %d configuration(s) without %s in one file, not plotted", no_metric, metric);
    if (!m) {
        pb_log_error("plot: %s and %s share no configuration with %s to compare", base.path, cur.path, metric);
        rc = 1;
        goto cleanup;
    }
    make_labels(&bs, bi, m, true);
    pairing paired = {.base = &base, .cur = &cur, .bs = &bs, .cs = &cs, .bi = bi, .ci = ci, .m = m, .metric = metric};
    char prefix[64 + DIM_MAX];
    snprintf(prefix, sizeof prefix, "compare-%s", metric);
    plot_job job = {.x = x, .pair = &paired, .set = &bs, .idx = bi, .n = m, .prefix = prefix};
    build_plot(&compare_plot, &job);
    rc = x->failed ? 1 : 0;
cleanup:
    free(bi);
    free(ci);
    cfgset_free(&bs);
    cfgset_free(&cs);
    table_free(&base);
    table_free(&cur);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* the command                                                               */

static void usage(FILE *f)
{
    fputs("usage: bench plot CSV [flags]\n"
          "       bench plot --compare BASELINE.csv CURRENT.csv [flags]\n"
          "\n"
          "Draws PNG and SVG plots of a results CSV with gnuplot (docs/plots.md): throughput and\n"
          "scaling efficiency vs devices, the step's phases, ddp's exposed vs hidden communication,\n"
          "mp's pipeline bubble; or, with --compare, a metric per configuration in two CSVs.\n"
          "Prints the paths written on stdout.\n"
          "\n"
          "flags (default in brackets):\n"
          "  --out DIR          folder the images go to [plots/out]\n"
          "  --workload NAME    workload to plot [the CSV's most frequent]\n"
          "  --backend NAME     backend to plot [the workload's most frequent]\n"
          "  --scaling MODE     weak (same batch per device) or strong (same global batch) [weak]\n"
          "  --compare          plot BASELINE vs CURRENT per configuration [off]\n"
          "  --metric COLUMN    the --compare metric [samples_per_s]\n"
          "  --plots-dir DIR    the gnuplot scripts [plots/ beside bench, else ./plots]\n"
          "  --keep-data        keep the .dat files gnuplot read, in --out [off]\n"
          "  --quiet            no notices on stderr [off]\n"
          "  --help             this text\n",
          f);
}

static pb_status parse_args(plot_opts *o, int argc, char **argv, bool *help)
{
    const char *pos[3] = {NULL, NULL, NULL};
    int npos = 0;
    o->out = "plots/out";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = true;
            return PB_OK;
        } else if (strcmp(a, "--compare") == 0) {
            o->compare = true;
            continue;
        } else if (strcmp(a, "--keep-data") == 0) {
            o->keep_data = true;
            continue;
        } else if (strcmp(a, "--quiet") == 0) {
            o->quiet = true;
            continue;
        } else if (strcmp(a, "--out") == 0) {
            dst = &o->out;
        } else if (strcmp(a, "--workload") == 0) {
            dst = &o->workload;
        } else if (strcmp(a, "--backend") == 0) {
            dst = &o->backend;
        } else if (strcmp(a, "--metric") == 0) {
            dst = &o->metric;
        } else if (strcmp(a, "--plots-dir") == 0) {
            dst = &o->plots_dir;
        } else if (strcmp(a, "--scaling") == 0) {
            if (i + 1 >= argc) return pb_usage_error("plot: --scaling needs a value; allowed: weak, strong");
            const char *v = argv[++i];
            if (strcmp(v, "weak") != 0 && strcmp(v, "strong") != 0)
                return pb_usage_error("plot: --scaling: unknown '%s'; allowed: weak, strong", v);
            o->strong = strcmp(v, "strong") == 0;
            continue;
        } else if (a[0] == '-' && a[1]) {
            return pb_usage_error("plot: unknown flag '%s'; allowed: --out, --workload, --backend, --scaling, "
                                  "--compare, --metric, --plots-dir, --keep-data, --quiet, --help",
                                  a);
        } else {
            if (npos == 3) return pb_usage_error("plot: too many files ('%s')", a);
            pos[npos++] = a;
            continue;
        }
        if (i + 1 >= argc || !argv[i + 1][0]) return pb_usage_error("plot: %s needs a value", a);
        *dst = argv[++i];
    }
    if (o->compare) {
        if (npos != 2) return pb_usage_error("plot: --compare takes two CSV files, BASELINE and CURRENT (%d given)", npos);
        o->base = pos[0];
        o->cur = pos[1];
        if (o->workload || o->backend || o->strong)
            return pb_usage_error("plot: --workload, --backend and --scaling do not apply to --compare");
    } else {
        if (npos != 1)
            return pb_usage_error("plot: takes one CSV file (%d given); usage: bench plot CSV [--out DIR]", npos);
        if (o->metric) return pb_usage_error("plot: --metric applies to --compare only");
        o->csv = pos[0];
    }
    return PB_OK;
}

int pb_cmd_plot(int argc, char **argv)
{
    ctx x;
    memset(&x, 0, sizeof x);
    bool help = false;
    pb_status st = parse_args(&x.o, argc, argv, &help);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        return pb_status_exit_code(st);
    }
    if (help) {
        usage(stdout);
        return 0;
    }
    if (x.o.quiet) pb_log_set_quiet(1);
    if (!pb_gnuplot_find(x.gnuplot, sizeof x.gnuplot)) {
        pb_log_error("plot: gnuplot not found on PATH; install it (Debian: apt-get install gnuplot-nox)");
        return 2;
    }
    st = find_plot_dir(&x);
    if (st == PB_OK) {
        const char *in = x.o.compare ? x.o.base : x.o.csv;
        if (access(in, R_OK) != 0) st = pb_usage_error("plot: cannot read %s: %s", in, strerror(errno));
    }
    if (st == PB_OK && x.o.compare && access(x.o.cur, R_OK) != 0)
        st = pb_usage_error("plot: cannot read %s: %s", x.o.cur, strerror(errno));
    if (st == PB_OK) st = mkdir_p(x.o.out);
    if (st == PB_OK && snprintf(x.outdir, sizeof x.outdir, "%s", x.o.out) >= (int)sizeof x.outdir)
        st = pb_usage_error("plot: --out: path longer than %d bytes", PATH_MAX - 1);
    for (size_t n = strlen(x.outdir); n > 1 && x.outdir[n - 1] == '/'; n--) x.outdir[n - 1] = '\0';
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        return pb_status_exit_code(st);
    }
    /* SIGINT/SIGTERM: drawing stops, the temporary files and folder are
     * removed, and the exit code is 128 + the signal */
    pb_gnuplot_signals saved;
    pb_gnuplot_catch_signals(&saved);
    int rc = 1;
    if (x.o.keep_data) {
        snprintf(x.datadir, sizeof x.datadir, "%s", x.outdir);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(x.datadir, sizeof x.datadir, "%s/pb_plot_XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(x.datadir)) {
            pb_log_error("plot: cannot create a temporary folder %s: %s", x.datadir, strerror(errno));
            goto cleanup;
        }
        x.made_tmp = true;
    }

    rc = x.o.compare ? plot_compare(&x) : plot_csv(&x);
    if (rc == 0 && x.written == 0 && !pb_gnuplot_signal()) {
        pb_log_error("plot: no plot had data to draw");
        rc = 1;
    }
cleanup:
    for (int i = 0; i < x.tmpfiles.n; i++) remove(x.tmpfiles.v[i]);
    strv_free(&x.tmpfiles);
    if (x.made_tmp) rmdir(x.datadir);
    int sig = pb_gnuplot_signal();
    if (sig) {
        pb_log_error("plot: interrupted by %s; stopped, no image left half-written", sig == SIGINT ? "SIGINT" : "SIGTERM");
        rc = 128 + sig;
    }
    pb_gnuplot_restore_signals(&saved);
    return rc;
}
