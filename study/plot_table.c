/* bench plot's data: the results CSV read into a table of usable rows,
 * grouped into configurations by the configuration key (study/key.h), their
 * labels, the settings they share, and the scaling plots' series with their
 * 1-device references. */
#define _POSIX_C_SOURCE 200809L
#include "plot_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/log.h"
#include "../harness/registry.h"

bool pb_plot_strv_push(strv *s, char *str)
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

void pb_plot_strv_free(strv *s)
{
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* Field `c` of usable row r, "" when the file has no such column. */
const char *pb_plot_tv(const table *t, int r, pb_column c)
{
    return t->col[c] < 0 ? "" : pb_csv_get(&t->csv, (size_t)t->rows[r], (size_t)t->col[c]);
}

/* Field `name` of usable row r, "" when absent (columns outside the schema
 * too, e.g. a --compare metric of an older file). */
const char *pb_plot_fv(const table *t, int r, const char *name)
{
    int c = pb_column_find(name);
    if (c >= 0) return pb_plot_tv(t, r, (pb_column)c);
    c = pb_csv_find(&t->csv, name);
    return c < 0 ? "" : pb_csv_get(&t->csv, (size_t)t->rows[r], (size_t)c);
}

static double num(const char *s)
{
    double v;
    return s && pb_csv_number(s, &v) ? v : NAN;
}

void pb_plot_table_free(table *t)
{
    pb_csv_free(&t->csv);
    free(t->rows);
    memset(t, 0, sizeof *t);
}

/* The figures the plots draw: a row with one that is not a finite number
 * (inf, nan, text) is dropped, and the notice names it. */
static const char *const drawn[] = {"samples_per_s", "step_ms_mean", "load_ms", "h2d_ms", "fwd_ms", "bwd_ms",
                                    "comm_ms", "sync_ms", "opt_ms", "scatter_ms", "replicate_ms", "gather_ms",
                                    "reduce_ms", "p2p_ms", "bubble_ms", "tp_comm_ms", "overlap_pct", "bubble_frac",
                                    "bubble_frac_theory", "peak_mem_mb", "mem_plan_params_mb",
                                    "mem_plan_grads_mb", "mem_plan_optim_mb", "mem_plan_acts_mb"};

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
    const size_t nd = sizeof drawn / sizeof drawn[0], nc = (size_t)pb_plot_comm_volume_n;
    for (size_t i = 0; i <= nd + nc; i++) {
        const char *name = i < nd ? drawn[i] : i < nd + nc ? pb_plot_comm_volume[i - nd].col : metric;
        int c = name ? pb_csv_find(&t->csv, name) : -1;
        if (c < 0) continue;
        const char *v = pb_csv_get(&t->csv, row, (size_t)c);
        if (finite_field(v)) continue;
        snprintf(why, len, "%s '%s' is not a finite number", name, pb_csv_excerpt(v, ex, sizeof ex));
        return;
    }
}

pb_status pb_plot_table_read(table *t, const char *path, const char *metric)
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
    if (st != PB_OK) pb_plot_table_free(t);
    return st;
}

void pb_plot_table_notices(const table *t)
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
void pb_plot_cfgset_free(cfgset *s)
{
    for (int i = 0; i < s->n; i++) free(s->c[i].rows);
    free(s->c);
    memset(s, 0, sizeof *s);
}

/* A configuration's value of column c. */
const char *pb_plot_cv(const config *c, pb_column col) { return pb_plot_tv(c->t, c->row, col); }

/* Does c's strategy split the global batch among its devices (single, dp,
 * ddp)? mp and tp do not: each stage, or tp rank, sees every sample. True
 * for a strategy this binary does not know (its batch_per_device column
 * says what it did). */
static bool splits_batch(const config *c)
{
    const pb_strategy *s = pb_find_strategy(pb_plot_cv(c, PB_COL_STRATEGY));
    return !s || (!s->stages && !s->rank_full_batch);
}

/* Its batch as a scaling line compares it: with weak scaling the batch per
 * device the run was given (batch_global / devices: for a strategy that does
 * not split the batch, what each device adds to it), with strong scaling
 * and in --compare the global batch. buf holds a computed value. */
static const char *batch_of(const config *c, bool per_device_batch, char *buf, size_t len)
{
    if (!per_device_batch) return pb_plot_cv(c, PB_COL_BATCH_GLOBAL);
    if (splits_batch(c)) return pb_plot_cv(c, PB_COL_BATCH_PER_DEVICE);
    double g;
    if (!pb_csv_number(pb_plot_cv(c, PB_COL_BATCH_GLOBAL), &g) || c->devices < 1) return "";
    snprintf(buf, len, "%.6g", g / c->devices);
    return buf;
}

/* The batch as a label says it, true for the strategy: "batch 256" (global,
 * strong scaling), "batch/dev 64" (split among the devices); for a strategy
 * that does not split it, its global batch ("global batch 128"), or, for a
 * line over device counts (series), "global batch 64 x N". "" without one. */
static void batch_text(const config *c, bool per_device_batch, bool series, char *buf, size_t len)
{
    char tmp[32];
    const char *v = batch_of(c, per_device_batch, tmp, sizeof tmp);
    if (!*v)
        buf[0] = '\0';
    else if (!per_device_batch)
        snprintf(buf, len, "batch %s", v);
    else if (splits_batch(c))
        snprintf(buf, len, "batch/dev %s", v);
    else if (series)
        snprintf(buf, len, "global batch %s x N", v);
    else
        snprintf(buf, len, "global batch %s", pb_plot_cv(c, PB_COL_BATCH_GLOBAL));
}

/* Do the configs in idx name their batch differently (as series, without
 * the device count: a weak-scaling line keeps its batch per device)? */
static bool batch_varies(const cfgset *s, const int *idx, int n, bool per_device_batch, bool series)
{
    char a[64], b[64];
    for (int i = 1; i < n; i++) {
        batch_text(&s->c[idx[0]], per_device_batch, series, a, sizeof a);
        batch_text(&s->c[idx[i]], per_device_batch, series, b, sizeof b);
        if (strcmp(a, b) != 0) return true;
    }
    return false;
}

/* The batch a scaling line keeps, from the configuration key's columns:
 * the global batch (strong), or the global batch per device (weak: the one
 * bench sweep keeps, also for mp, whose stages each see the whole batch and
 * whose batch_per_device column says so). */
static bool same_batch(const config *a, const config *b, bool per_device_batch)
{
    if (!per_device_batch)
        return pb_key_value_cmp(pb_plot_cv(a, PB_COL_BATCH_GLOBAL), pb_plot_cv(b, PB_COL_BATCH_GLOBAL)) == 0;
    double ga = num(pb_plot_cv(a, PB_COL_BATCH_GLOBAL)), gb = num(pb_plot_cv(b, PB_COL_BATCH_GLOBAL));
    return a->devices > 0 && b->devices > 0 && ga * b->devices == gb * a->devices;
}

/* Same line of a scaling plot: the key but the device count. */
static bool same_series(const config *a, const config *b, bool per_device_batch)
{
    return pb_key_cmp(&a->t->series, &a->t->csv, (size_t)a->t->rows[a->row], &b->t->csv,
                      (size_t)b->t->rows[b->row]) == 0 &&
           same_batch(a, b, per_device_batch);
}

/* Rows of t (of one workload and backend unless NULL) grouped per config. */
pb_status pb_plot_group_rows(const table *t, const char *workload, const char *backend, cfgset *out)
{
    for (int r = 0; r < t->nrows; r++) {
        if (workload && strcmp(pb_plot_tv(t, r, PB_COL_WORKLOAD), workload) != 0) continue;
        if (backend && strcmp(pb_plot_tv(t, r, PB_COL_BACKEND), backend) != 0) continue;
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
            c->devices = (int)num(pb_plot_tv(t, r, PB_COL_DEVICES));
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
double pb_plot_cmean(const config *c, const char *col)
{
    double sum = 0;
    int n = 0;
    for (int i = 0; i < c->nrows; i++) {
        double v = num(pb_plot_fv(c->t, c->rows[i], col));
        if (!isnan(v)) {
            sum += v;
            n++;
        }
    }
    return n ? sum / n : NAN;
}

/* Plot order: workload, backend, strategy (the registry's order), the rest
 * of the key, devices. */
int pb_plot_config_cmp(const void *pa, const void *pb)
{
    const config *a = pa, *b = pb;
    int d = strcmp(pb_plot_cv(a, PB_COL_WORKLOAD), pb_plot_cv(b, PB_COL_WORKLOAD));
    if (!d) d = strcmp(pb_plot_cv(a, PB_COL_BACKEND), pb_plot_cv(b, PB_COL_BACKEND));
    if (!d) d = pb_strategy_order(pb_plot_cv(a, PB_COL_STRATEGY)) - pb_strategy_order(pb_plot_cv(b, PB_COL_STRATEGY));
    if (!d)
        d = pb_key_cmp(&a->t->series, &a->t->csv, (size_t)a->t->rows[a->row], &b->t->csv,
                       (size_t)b->t->rows[b->row]);
    if (!d) d = pb_key_value_cmp(pb_plot_cv(a, PB_COL_BATCH_GLOBAL), pb_plot_cv(b, PB_COL_BATCH_GLOBAL));
    if (!d) d = a->devices - b->devices;
    return d;
}

/* The key columns a label may show, beyond the strategy and devices. */
static bool labelled(pb_column col)
{
    return pb_column_key(col) == PB_KEY_ALL && col != PB_COL_STRATEGY && col != PB_COL_WORKLOAD &&
           col != PB_COL_BACKEND && col != PB_COL_DEVICES;
}

static void dim_text(pb_column col, const char *v, char *buf, size_t len)
{
    switch (col) {
    case PB_COL_THREADS: snprintf(buf, len, "%s thread%s", v, strcmp(v, "1") == 0 ? "" : "s"); break;
    case PB_COL_MICROBATCHES: snprintf(buf, len, "m=%s", v); break;
    case PB_COL_BUCKET_MB: snprintf(buf, len, "bucket %s MB", v); break;
    case PB_COL_CUDA_GRAPH: snprintf(buf, len, "%s", strcmp(v, "1") == 0 ? "graph" : "no graph"); break;
    case PB_COL_COMM:
    case PB_COL_SCHEDULE: /* gpipe, 1f1b */
    case PB_COL_PRECISION:
    case PB_COL_OPTIMIZER: snprintf(buf, len, "%s", v); break;
    default: snprintf(buf, len, "%s=%s", pb_column_name(col), v);
    }
}

/* Does column col take more than one value among the configs in idx that
 * share c's strategy (and workload and backend)? */
static bool dim_varies(const cfgset *s, const int *idx, int n, const config *c, pb_column col)
{
    for (int i = 0; i < n; i++) {
        const config *o = &s->c[idx[i]];
        if (strcmp(pb_plot_cv(o, PB_COL_STRATEGY), pb_plot_cv(c, PB_COL_STRATEGY)) != 0) continue;
        if (col != PB_COL_WORKLOAD && col != PB_COL_BACKEND &&
            (strcmp(pb_plot_cv(o, PB_COL_WORKLOAD), pb_plot_cv(c, PB_COL_WORKLOAD)) != 0 ||
             strcmp(pb_plot_cv(o, PB_COL_BACKEND), pb_plot_cv(c, PB_COL_BACKEND)) != 0))
            continue;
        if (pb_key_value_cmp(pb_plot_cv(o, col), pb_plot_cv(c, col)) != 0) return true;
    }
    return false;
}

bool pb_plot_dim_varies_all(const cfgset *s, const int *idx, int n, pb_column col)
{
    for (int i = 1; i < n; i++)
        if (pb_key_value_cmp(pb_plot_cv(&s->c[idx[i]], col), pb_plot_cv(&s->c[idx[0]], col)) != 0) return true;
    return false;
}

/* Labels name the strategy (and the devices) and whatever else of the key
 * tells the configs of a strategy apart; workload and backend when they
 * differ; the batch, as true for the strategy (batch_text), when the
 * configs do not all have the same. */
void pb_plot_make_labels(cfgset *s, const int *idx, int n, bool per_device_batch)
{
    bool wl = pb_plot_dim_varies_all(s, idx, n, PB_COL_WORKLOAD),
         be = pb_plot_dim_varies_all(s, idx, n, PB_COL_BACKEND),
         batch = batch_varies(s, idx, n, per_device_batch, true);
    for (int i = 0; i < n; i++) {
        config *c = &s->c[idx[i]];
        char head[3 * DIM_MAX + 4], rest[TEXT_MAX], part[DIM_MAX + 64], bs[64] = "", bc[64] = "";
        snprintf(head, sizeof head, "%.90s%s%.90s%s%.90s", wl ? pb_plot_cv(c, PB_COL_WORKLOAD) : "", wl ? " " : "",
                 be ? pb_plot_cv(c, PB_COL_BACKEND) : "", be ? " " : "", pb_plot_cv(c, PB_COL_STRATEGY));
        size_t len = 0;
        rest[0] = '\0';
        for (int col = 0; col < PB_COL_COUNT; col++) {
            if (!labelled((pb_column)col) || col == PB_COL_BATCH_GLOBAL || c->t->col[col] < 0) continue;
            char v[DIM_MAX];
            snprintf(v, sizeof v, "%s", pb_plot_cv(c, (pb_column)col));
            if (!v[0] || strcmp(v, "none") == 0) continue;
            if (!dim_varies(s, idx, n, c, (pb_column)col)) continue;
            dim_text((pb_column)col, v, part, sizeof part);
            len += (size_t)snprintf(rest + len, len < sizeof rest ? sizeof rest - len : 0, ", %s", part);
        }
        if (batch) {
            batch_text(c, per_device_batch, true, bs + 2, sizeof bs - 2);
            batch_text(c, per_device_batch, false, bc + 2, sizeof bc - 2);
            if (bs[2]) memcpy(bs, ", ", 2);
            if (bc[2]) memcpy(bc, ", ", 2);
        }
        snprintf(c->series_label, TEXT_MAX, "%.200s%.200s%.60s", head, rest, bs);
        snprintf(c->label, TEXT_MAX, "%.200s x%d%.200s%.60s", head, c->devices, rest, bc);
        snprintf(c->tic1, sizeof c->tic1, "%.200s x%d", head, c->devices);
        snprintf(c->tic2, sizeof c->tic2, "%.180s%.60s", rest, bc);
        if (c->tic2[0]) memmove(c->tic2, c->tic2 + 2, strlen(c->tic2 + 2) + 1);
    }
}

/* ------------------------------------------------------------------------ */
/* titles                                                                    */

void pb_plot_add_distinct(strv *v, const char *s)
{
    if (!*s) return;
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->v[i], s) == 0) return;
    pb_plot_strv_push(v, strdup(s));
}

/* "<device>, <date>" of the rows of the configs in idx. */
void pb_plot_device_and_date(const cfgset *s, const int *idx, int n, char *buf, size_t len)
{
    strv devs = {0};
    char first[16] = "", last[16] = "";
    for (int i = 0; i < n; i++) {
        const config *c = &s->c[idx[i]];
        for (int k = 0; k < c->nrows; k++) {
            const char *gpu = pb_plot_fv(c->t, c->rows[k], "gpu_name");
            pb_plot_add_distinct(&devs, *gpu ? gpu : pb_plot_fv(c->t, c->rows[k], "cpu_model"));
            char day[16];
            snprintf(day, sizeof day, "%.10s", pb_plot_fv(c->t, c->rows[k], "time_utc"));
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
    pb_plot_strv_free(&devs);
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
void pb_plot_shared_settings(const cfgset *s, const int *idx, int n, bool per_device_batch, char *buf,
                             size_t len)
{
    static const pb_column dims[] = {PB_COL_PRECISION, PB_COL_OPTIMIZER, PB_COL_THREADS, PB_COL_BATCH_GLOBAL,
                                     PB_COL_CUDA_GRAPH};
    size_t used = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        pb_column d = dims[k];
        char part[DIM_MAX + 32];
        if (d == PB_COL_BATCH_GLOBAL) {
            /* one batch for all, said as true for every plotted strategy */
            bool series = batch_varies(s, idx, n, per_device_batch, false);
            if (series && batch_varies(s, idx, n, per_device_batch, true)) continue;
            batch_text(&s->c[idx[0]], per_device_batch, series, part, sizeof part);
        } else {
            const char *v = pb_plot_cv(&s->c[idx[0]], d);
            if (!*v || pb_plot_dim_varies_all(s, idx, n, d)) continue;
            if (d == PB_COL_CUDA_GRAPH && strcmp(v, "1") != 0) continue;
            if (d == PB_COL_THREADS && !host_cores(pb_plot_cv(&s->c[idx[0]], PB_COL_BACKEND))) continue;
            dim_text(d, v, part, sizeof part);
        }
        if (!part[0]) continue;
        used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%s", used ? ", " : "", part);
    }
    bool over = false;
    for (int i = 0; i < n; i++) {
        const config *c = &s->c[idx[i]];
        for (int k = 0; k < c->nrows; k++) over |= strcmp(pb_plot_fv(c->t, c->rows[k], "oversubscribed"), "1") == 0;
    }
    if (over)
        snprintf(buf + used, used < len ? len - used : 0, "%soversubscribed runs (devices share hardware)",
                 used ? "; " : "");
}

/* The 1-device reference of a series: `single` with the same settings
 * (the key but the strategy's own columns and what changes with the device
 * count), else the series' own 1-device config; -1 when neither ran. */
static int reference_of(const selection *sel, const config *c)
{
    pb_key same = c->t->series;
    static const pb_column own[] = {PB_COL_STRATEGY,  PB_COL_COMM,       PB_COL_MICROBATCHES, PB_COL_SCHEDULE,
                                    PB_COL_BUCKET_MB, PB_COL_NO_OVERLAP, PB_COL_ZERO_STAGE,
                                    PB_COL_DP,        PB_COL_TP,         PB_COL_PP};
    for (size_t k = 0; k < sizeof own / sizeof own[0]; k++) pb_key_drop(&same, own[k]);
    int mine = -1;
    for (int i = 0; i < sel->n; i++) {
        const config *r = &sel->set.c[sel->all[i]];
        if (r->devices != 1) continue;
        if (r->series == c->series) mine = sel->all[i];
        if (strcmp(pb_plot_cv(r, PB_COL_STRATEGY), "single") != 0) continue;
        bool match = pb_key_cmp(&same, &r->t->csv, (size_t)r->t->rows[r->row], &c->t->csv,
                                (size_t)c->t->rows[c->row]) == 0 &&
                     same_batch(r, c, sel->per_device_batch);
        if (match && !isnan(pb_plot_cmean(r, "samples_per_s"))) return sel->all[i];
    }
    return mine >= 0 && !isnan(pb_plot_cmean(&sel->set.c[mine], "samples_per_s")) ? mine : -1;
}

/* The series of sel: each config's series index, and per series its first
 * config, its largest device count and its reference. */
pb_status pb_plot_find_series(selection *sel)
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
