#define _POSIX_C_SOURCE 200809L
#include "compare.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"
#include "../harness/envvars.h"
#include "../harness/log.h"
#include "../harness/results.h"
#include "../harness/stats.h"

/* ------------------------------------------------------------------------ */
/* names                                                                     */

static const struct {
    const char *name;
    bool higher_better;
} metrics[] = {
    {"samples_per_s", true}, {"model_tflops", true}, {"mfu", true},
    {"step_ms_mean", false}, {"step_ms_p50", false}, {"step_ms_p95", false},
};
#define N_METRICS (sizeof metrics / sizeof metrics[0])

size_t pb_compare_metric_count(void) { return N_METRICS; }
const char *pb_compare_metric_name(size_t i) { return i < N_METRICS ? metrics[i].name : NULL; }

int pb_compare_metric_higher_better(const char *name)
{
    for (size_t i = 0; i < N_METRICS; i++)
        if (strcmp(metrics[i].name, name) == 0) return metrics[i].higher_better ? 1 : 0;
    return -1;
}

static const char *const verdict_names[PB_VERDICT_COUNT] = {
    [PB_VERDICT_SAME] = "same",
    [PB_VERDICT_REGRESSION] = "regression",
    [PB_VERDICT_IMPROVEMENT] = "improvement",
    [PB_VERDICT_NOISE] = "noise",
    [PB_VERDICT_DRIFT] = "within-drift",
    [PB_VERDICT_NO_SPREAD] = "no-spread",
    [PB_VERDICT_ONLY_BASELINE] = "only-baseline",
    [PB_VERDICT_ONLY_CURRENT] = "only-current",
    [PB_VERDICT_FAILED_CURRENT] = "failed-in-current",
};

const char *pb_verdict_name(pb_verdict v) { return (v >= 0 && v < PB_VERDICT_COUNT) ? verdict_names[v] : "?"; }

void pb_compare_defaults(pb_compare_opts *o)
{
    o->metric = "samples_per_s";
    o->threshold_pct = 5.0;
    o->alpha = 0.01;
    o->power = 0.8;
    o->format = PB_COMPARE_TEXT;
}

/* The configuration: rows are runs of one configuration when they agree
 * on every configuration column of the pairing key (study/key.h: the
 * PB_KEY_ALL columns of harness/results.h) that both files have; older
 * schemas lack some. Not in it: iters, warmup, seed (how long and on which
 * data a run was measured, not what was measured); params,
 * batch_per_device, ranks (follow from the key); oversubscribed (a
 * property of the machine: shown with the environment). Of the key,
 * compare refuses a file without a `required` column, and always shows the
 * `labelled` ones; the others appear in a label when they tell two
 * configurations apart. */
static const char *const required_cols[] = {"strategy", "backend",      "workload", "in",        "hidden",
                                            "layers",   "classes",      "batch_global", "devices", "precision"};
#define N_REQUIRED (sizeof required_cols / sizeof required_cols[0])
static const char *const labelled_cols[] = {"strategy", "backend", "workload", "precision"};
_Static_assert(PB_COL_COUNT <= PB_COMPARE_KEY_MAX, "PB_COMPARE_KEY_MAX too small");

/* Environment columns whose differences are printed above the table. */
static const char *const env_cols[] = {
    "gpu_name", "driver", "cuda_runtime", "cublas", "nccl",     "mpi",     "blas",
    "blas_version", "blas_core", "gpu_check", "host", "cpu_model", "compiler", "git_rev", "oversubscribed",
};
#define N_ENV_COLS (sizeof env_cols / sizeof env_cols[0])
_Static_assert(N_ENV_COLS <= PB_COMPARE_ENV_MAX, "PB_COMPARE_ENV_MAX too small");

/* Other columns compare needs besides the metric and the required keys. */
static const char *const other_required[] = {"status", "iters", "step_ms_cv"};

/* ------------------------------------------------------------------------ */
/* reading values                                                            */

/* A comparable row: status ok and the metric present. */
typedef pb_compare_run item;

typedef struct group {
    size_t first, count; /* items[first .. first+count) */
    size_t row;          /* first row of the group in its file */
    size_t match;        /* group on the other side, SIZE_MAX if none */
} group;

typedef struct side {
    const pb_csv *csv;
    const char *name;
    item *items;
    size_t nitems;
    size_t *failed; /* rows whose status is failed or invalid */
    size_t nfailed;
    pb_key key; /* the pairing key, both indices into this file */
    group *groups;
    size_t ngroups;
    int metric, status, iters, cv, time; /* time: -1 in an older schema */
} side;

static pb_status check_columns(const pb_csv *c, const char *name, const char *metric)
{
    char missing[600] = "";
    size_t n = 0, m = 0;
    for (size_t i = 0; i < N_REQUIRED + 4; i++) {
        const char *col = i < N_REQUIRED ? required_cols[i]
                          : i < N_REQUIRED + 3 ? other_required[i - N_REQUIRED]
                                               : metric;
        if (!col || pb_csv_find(c, col) >= 0) continue;
        if (n < sizeof missing)
            n += (size_t)snprintf(missing + n, sizeof missing - n, "%s%s", m ? ", " : "", col);
        m++;
    }
    if (!m) return PB_OK;
    size_t known = 0;
    for (size_t i = 0; i < c->ncols; i++) known += pb_column_find(pb_csv_name(c, i)) >= 0;
    char ex[64];
    if (!known)
        return pb_user_error(PB_ERR_SCHEMA,
                             "%s:1: not a parbench results CSV: no known column in its header (it starts with '%s')",
                             name, pb_csv_excerpt(pb_csv_name(c, 0), ex, sizeof ex));
    return pb_user_error(PB_ERR_SCHEMA, "%s:1: the header lacks column%s that compare needs: %s", name,
                         m > 1 ? "s" : "", missing);
}

/* "YYYY-MM-DDTHH:MM:SSZ" (harness/env.c) in seconds since 1970, NaN for
 * anything else: days from the civil date (Howard Hinnant's algorithm),
 * no timegm (not C11) and no time zone. */
static double parse_utc(const char *v)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(v, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n == 0 || v[n] ||
        mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || h < 0 || mi < 0 || sec < 0)
        return NAN;
    y -= mo <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153L * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    double days = (double)(era * 146097 + doe - 719468);
    return days * 86400.0 + h * 3600.0 + mi * 60.0 + sec;
}

/* Runs by time_utc, ties (bench writes whole seconds) in file order. */
static int cmp_time(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->time != y->time) return x->time < y->time ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* qsort has no context: the side being sorted */
static const struct side *sorting;

static int cmp_item(const void *a, const void *b)
{
    const item *x = a, *y = b;
    int c = pb_key_cmp(&sorting->key, sorting->csv, x->row, sorting->csv, y->row);
    if (c) return c;
    return x->row < y->row ? -1 : x->row > y->row;
}

typedef struct ordered {
    size_t row, group;
} ordered;

static int cmp_ordered(const void *a, const void *b)
{
    const ordered *x = a, *y = b;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* Collects the comparable rows of one file, with their keys, sorted and
 * grouped by configuration. */
static pb_status load_side(side *s, size_t *ignored)
{
    pb_status st = PB_OK;
    const pb_csv *c = s->csv;
    char ex[64];
    PB_ALLOC(s->items, c->nrows + 1);
    PB_ALLOC(s->groups, c->nrows + 1);
    PB_ALLOC(s->failed, c->nrows + 1);
    for (size_t row = 0; row < c->nrows; row++) {
        const char *status = pb_csv_get(c, row, (size_t)s->status);
        if (strcmp(status, "ok") != 0) {
            if (strcmp(status, "status") != 0) (*ignored)++; /* a repeated header is no row */
            if (strcmp(status, "failed") == 0 || strcmp(status, "invalid") == 0) s->failed[s->nfailed++] = row;
            continue;
        }
        const char *mv = pb_csv_get(c, row, (size_t)s->metric);
        if (!*mv) {
            (*ignored)++;
            continue;
        }
        item *it = &s->items[s->nitems];
        memset(it, 0, sizeof *it);
        it->row = row;
        if (!pb_csv_number(mv, &it->value) || !(it->value > 0)) {
            st = pb_user_error(PB_ERR_USAGE, "%s:%zu: %s '%s' is not a positive number", s->name, c->line[row],
                               pb_csv_name(c, (size_t)s->metric), pb_csv_excerpt(mv, ex, sizeof ex));
            goto cleanup;
        }
        const char *cv = pb_csv_get(c, row, (size_t)s->cv), *iters = pb_csv_get(c, row, (size_t)s->iters);
        it->cv = NAN;
        if (*cv && (!pb_csv_number(cv, &it->cv) || it->cv < 0)) {
            st = pb_user_error(PB_ERR_USAGE, "%s:%zu: step_ms_cv '%s' is not a non-negative number", s->name,
                               c->line[row], pb_csv_excerpt(cv, ex, sizeof ex));
            goto cleanup;
        }
        if (*iters && (!pb_csv_number(iters, &it->iters) || it->iters < 0 || it->iters != floor(it->iters))) {
            st = pb_user_error(PB_ERR_USAGE, "%s:%zu: iters '%s' is not a whole number", s->name, c->line[row],
                               pb_csv_excerpt(iters, ex, sizeof ex));
            goto cleanup;
        }
        it->time = s->time >= 0 ? parse_utc(pb_csv_get(c, row, (size_t)s->time)) : NAN;
        s->nitems++;
    }
    sorting = s;
    if (s->nitems) qsort(s->items, s->nitems, sizeof *s->items, cmp_item);
    for (size_t i = 0; i < s->nitems; i++) {
        if (i == 0 || pb_key_cmp(&s->key, c, s->items[i].row, c, s->items[i - 1].row) != 0)
            s->groups[s->ngroups++] = (group){i, 0, s->items[i].row, SIZE_MAX};
        s->groups[s->ngroups - 1].count++;
    }
    /* each group's runs in time order, for the drift inside it; a group
     * with a row whose time_utc is missing or unreadable (an older schema)
     * keeps file order, the order bench appended its rows in */
    for (size_t g = 0; g < s->ngroups; g++) {
        item *it = s->items + s->groups[g].first;
        bool timed = true;
        for (size_t i = 0; i < s->groups[g].count; i++) timed = timed && isfinite(it[i].time);
        if (timed) qsort(it, s->groups[g].count, sizeof *it, cmp_time);
    }
cleanup:
    return st;
}

static void free_side(side *s)
{
    free(s->items);
    free(s->failed);
    free(s->groups);
}

/* The later half of a group's runs (in time order: load_side) against
 * the earlier half, and when they ran. */
static void drift(const item *it, size_t n, pb_compare_side *out)
{
    out->drift = out->span_s = out->mid_s = out->half_gap_s = NAN;
    bool timed = true;
    double mid = 0;
    for (size_t i = 0; i < n; i++) {
        timed = timed && isfinite(it[i].time);
        mid += (it[i].time - it[0].time) / (double)n; /* from the first: no precision lost to 1.8e9 s */
    }
    if (timed) {
        out->mid_s = it[0].time + mid;
        out->span_s = it[n - 1].time - it[0].time;
    }
    if (n < 2) return;
    size_t h = n / 2;
    double early = 0, late = 0, t_early = 0, t_late = 0;
    for (size_t i = 0; i < h; i++) {
        early += it[i].value;
        late += it[n - h + i].value;
        t_early += it[i].time;
        t_late += it[n - h + i].time;
    }
    out->drift = (late - early) / (double)h;
    if (timed) out->half_gap_s = (t_late - t_early) / (double)h;
}

pb_compare_side pb_compare_summarise(const pb_compare_run *it, size_t count)
{
    pb_compare_side out = {count, it[0].row, 0, 0, 0, NAN, NAN, NAN, NAN};
    drift(it, count, &out);
    if (count == 1) {
        /* one run: the per-step distribution it recorded; the metric's
         * relative standard error is that of the mean step time */
        out.mean = it->value;
        if (it->iters >= 2 && isfinite(it->cv)) {
            double sd = it->value * it->cv;
            out.se2 = sd * sd / it->iters;
            out.df = it->iters - 1;
        }
        return out;
    }
    /* repeats: the runs' values are the sample (Welford) */
    double mean = 0, m2 = 0;
    for (size_t i = 0; i < count; i++) {
        double x = it[i].value, d = x - mean;
        mean += d / (double)(i + 1);
        m2 += d * (x - mean);
    }
    out.mean = mean;
    out.se2 = m2 / (double)(count - 1) / (double)count;
    out.df = (double)count - 1;
    return out;
}

/* The smallest change, in the metric's units, that a one-sided test at
 * alpha flags with probability `power` when the standard error of the
 * difference is se with df degrees of freedom, beyond an allowance a:
 * a + (t(1 - alpha, df) + t(power, df)) * se (the normal-theory sample-size
 * formula with Student's quantiles; docs/statistics.md). */
static double mde(double a, double se, double df, const pb_compare_opts *o)
{
    if (se == 0) return a;
    return a + (pb_stats_t_quantile(1.0 - o->alpha, df) + pb_stats_t_quantile(o->power, df)) * se;
}

/* Runs per side that would bring the MDE down to the threshold, the
 * per-run spreads and the drift allowance staying what they are: 0 when a
 * side is one run (its spread is per step, not per run) or no count up to
 * 10000 does; SIZE_MAX when the allowance alone is above the threshold. */
static size_t runs_needed(const pb_compare_pair *p, double allowance, const pb_compare_opts *o)
{
    if (p->base.runs < 2 || p->cur.runs < 2) return 0;
    double thr = o->threshold_pct / 100.0 * p->base.mean;
    if (allowance >= thr) return SIZE_MAX;
    double sb = p->base.se2 * (double)p->base.runs, sc = p->cur.se2 * (double)p->cur.runs; /* per-run variances */
    for (size_t n = 2; n <= 10000; n++) {
        double vb = sb / (double)n, vc = sc / (double)n, v = vb + vc;
        double df = v > 0 ? v * v / ((vb * vb + vc * vc) / (double)(n - 1)) : 2.0 * (double)(n - 1);
        if (mde(allowance, sqrt(v), df, o) <= thr) return n;
    }
    return 0;
}

/* Mean, squared standard error and degrees of freedom of one group. */
static pb_compare_side summarise(const side *s, const group *g)
{
    return pb_compare_summarise(s->items + g->first, g->count);
}

void pb_compare_decide(pb_compare_pair *p, const pb_compare_opts *o, bool higher_better)
{
    p->change_pct = 100.0 * (p->cur.mean - p->base.mean) / p->base.mean;
    bool tested = pb_stats_welch((pb_stats_mean){p->base.mean, p->base.se2, p->base.df},
                                 (pb_stats_mean){p->cur.mean, p->cur.se2, p->cur.df}, &p->t, &p->df);
    /* positive when the change is for the worse */
    double worse = higher_better ? -p->change_pct : p->change_pct;
    double cdf = tested ? pb_stats_t_cdf(p->t, p->df) : NAN;
    double p_worse = higher_better ? cdf : (tested ? pb_stats_t_cdf(-p->t, p->df) : NAN);
    double p_better = higher_better ? (tested ? pb_stats_t_cdf(-p->t, p->df) : NAN) : cdf;
    p->p = worse > 0 ? p_worse : p_better;
    /* Drift inside a side is noise the t-test over the runs cannot see: the
     * machine's speed moved by `drift` between a side's early and late
     * runs, half_gap_s apart, so it can have moved between the sides,
     * |mid_c - mid_b| apart, at that rate. Carried no further than twice
     * (the most two adjacent blocks' midpoints are apart, in half-gaps: a
     * baseline from last week does not drift a week's worth, the speed
     * wanders in a range), and in full where the times are unknown. The
     * larger of the two sides' allowances is taken off the change before
     * it is tested again. */
    double allowance = 0, gap = fabs(p->cur.mid_s - p->base.mid_s);
    bool drifted = false;
    for (int s = 0; s < 2; s++) {
        const pb_compare_side *sd = s ? &p->cur : &p->base;
        if (isnan(sd->drift)) continue;
        drifted = true;
        double carry = isfinite(gap) && sd->half_gap_s > 0 ? fmin(2.0, gap / sd->half_gap_s) : 1.0;
        if (fabs(sd->drift) * carry > allowance) allowance = fabs(sd->drift) * carry;
    }
    p->drift_pct = drifted ? 100.0 * allowance / p->base.mean : NAN;
    p->p_drift = p->mde_pct = NAN;
    if (tested) {
        double se = sqrt(p->base.se2 + p->cur.se2), net = fabs(p->cur.mean - p->base.mean) - allowance;
        /* se 0: every run identical, so any change beyond the allowance is certain */
        p->p_drift = se > 0 ? 1.0 - pb_stats_t_cdf(net / se, p->df) : (net > 0 ? 0.0 : 1.0);
        p->mde_pct = 100.0 * mde(allowance, se, p->df, o) / p->base.mean;
        p->few_repeats = p->mde_pct > o->threshold_pct;
        if (p->few_repeats) p->runs_needed = runs_needed(p, allowance, o);
    }
    if (!(fabs(p->change_pct) > o->threshold_pct)) p->verdict = PB_VERDICT_SAME;
    else if (!tested) p->verdict = PB_VERDICT_NO_SPREAD;
    else if (!(p->p < o->alpha)) p->verdict = PB_VERDICT_NOISE;
    else if (!(p->p_drift < o->alpha)) p->verdict = PB_VERDICT_DRIFT;
    else p->verdict = worse > 0 ? PB_VERDICT_REGRESSION : PB_VERDICT_IMPROVEMENT;
}

static void notices(const pb_csv *c, const char *name, size_t ignored, const char *metric)
{
    char why[128];
    for (size_t i = 0; i < c->nskipped && i < PB_CSV_SKIP_KEPT; i++)
        pb_log_info("compare: %s:%zu: skipped (%s)", name, c->skip[i].line,
                    pb_csv_skip_text(&c->skip[i], c->ncols, why, sizeof why));
    if (c->nskipped > PB_CSV_SKIP_KEPT)
        pb_log_info("compare: %s: and %zu more malformed lines skipped", name, c->nskipped - PB_CSV_SKIP_KEPT);
    if (ignored)
        pb_log_info("compare: %s: %zu row%s not compared (status not ok, or no %s)", name, ignored,
                    ignored == 1 ? "" : "s", metric);
}

const char *pb_compare_key_value(const pb_compare_result *r, const pb_compare_pair *p, size_t k)
{
    if (p->base.runs) return pb_csv_get(r->base, p->base.row, (size_t)r->key_base[k]);
    return pb_csv_get(r->cur, p->cur.row, (size_t)r->key_cur[k]);
}

bool pb_compare_labelled(const char *column)
{
    for (size_t i = 0; i < sizeof labelled_cols / sizeof labelled_cols[0]; i++)
        if (strcmp(labelled_cols[i], column) == 0) return true;
    return false;
}

/* Appends "len:value;" to a growing string; on failure frees it and
 * leaves *buf NULL. */
static void append_canonical(char **buf, size_t *len, size_t *cap, const char *v)
{
    char num[64];
    if (*len && !*buf) return; /* an earlier append failed */
    v = pb_key_canonical(v, num, sizeof num);
    size_t need = *len + strlen(v) + 32;
    if (need > *cap) {
        size_t want = need * 2;
        char *p = realloc(*buf, want);
        if (!p) {
            free(*buf);
            *buf = NULL;
            *len = 1;
            return;
        }
        *buf = p;
        *cap = want;
    }
    *len += (size_t)snprintf(*buf + *len, *cap - *len, "%zu:%s;", strlen(v), v);
}


static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Distinct strings in v[0..n), sorted in place. */
static size_t count_distinct(char **v, size_t n)
{
    if (n) qsort(v, n, sizeof *v, cmp_str);
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += i == 0 || strcmp(v[i], v[i - 1]) != 0;
    return d;
}

/* Distinct keys made of the label columns and, when extra < nkey, column
 * `extra`. SIZE_MAX when out of memory. */
static size_t distinct_keys(const pb_compare_result *r, char **v, size_t extra)
{
    size_t n = r->npairs, d = SIZE_MAX;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0, cap = 0;
        v[i] = NULL;
        for (size_t j = 0; j < r->nkey; j++)
            if (pb_compare_labelled(r->key_name[j]) || j == extra)
                append_canonical(&v[i], &len, &cap, pb_compare_key_value(r, &r->pairs[i], j));
        ok = ok && v[i];
    }
    if (ok) d = count_distinct(v, n);
    for (size_t i = 0; i < n; i++) free(v[i]);
    return d;
}

/* A configuration column is shown in labels when the label columns
 * (strategy, backend, workload, precision) do not tell configurations
 * apart but it does: threads=1 against threads=2, devices=1 against
 * devices=4, the shapes of two "custom" workloads. */
static pb_status mark_varying(pb_compare_result *r)
{
    pb_status st = PB_OK;
    char **v = NULL;
    PB_ALLOC(v, r->npairs + 1);
    size_t labels = distinct_keys(r, v, SIZE_MAX);
    PB_REQUIRE(labels != SIZE_MAX, PB_ERR_NOMEM, "host allocation for labels failed");
    for (size_t k = 0; k < r->nkey; k++) {
        r->key_varies[k] = false;
        if (pb_compare_labelled(r->key_name[k])) continue;
        size_t d = distinct_keys(r, v, k);
        PB_REQUIRE(d != SIZE_MAX, PB_ERR_NOMEM, "host allocation for labels failed");
        r->key_varies[k] = d > labels;
    }
cleanup:
    free(v);
    return st;
}


/* The distinct values of column col over a side's compared rows, sorted. */
static size_t distinct(const side *s, int col, const char **v)
{
    for (size_t i = 0; i < s->nitems; i++) v[i] = pb_csv_get(s->csv, s->items[i].row, (size_t)col);
    qsort(v, s->nitems, sizeof *v, cmp_str);
    size_t n = 0;
    for (size_t i = 0; i < s->nitems; i++)
        if (n == 0 || strcmp(v[n - 1], v[i]) != 0) v[n++] = v[i];
    return n;
}

/* "a, b (+3 more)" into buf at *n, control characters as '?'. */
static void join_values(char *buf, size_t len, size_t *n, const char **v, size_t count)
{
    char ex[64];
    for (size_t i = 0; i < count && i < 4; i++)
        if (*n < len)
            *n += (size_t)snprintf(buf + *n, len - *n, "%s%s", i ? ", " : "",
                                   *v[i] ? pb_csv_excerpt(v[i], ex, sizeof ex) : "(empty)");
    if (count > 4 && *n < len) *n += (size_t)snprintf(buf + *n, len - *n, " (+%zu more)", count - 4);
}

/* The values of variable name over a side's distinct env_vars lists
 * (lists[0..n)), sorted and distinct, into v (each PB_FIELD_WIDE): its
 * value, "(unset)" where a list lacks it, "(not recorded)" where a list
 * lacks it but was cut. Returns the count. */
static size_t var_values(const char *name, const char **lists, size_t n, char **v)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        char *val = v[m];
        int got = pb_envvars_get(lists[i], name, val, PB_FIELD_WIDE);
        if (got <= 0) snprintf(val, PB_FIELD_WIDE, "%s", got < 0 ? "(not recorded)" : "(unset)");
        bool seen = false;
        for (size_t j = 0; j < m && !seen; j++) seen = strcmp(v[j], val) == 0;
        if (!seen) m++;
    }
    qsort(v, m, sizeof *v, cmp_str);
    return m;
}

/* A line per environment variable (the env_vars column) whose values
 * differ between the sides: "OMPI_MCA_btl: (unset) -> tcp,self". lb and
 * lc: each side's distinct env_vars lists. */
static pb_status var_diffs(pb_compare_result *r, size_t nb, const char **lb, size_t nc, const char **lc)
{
    pb_status st = PB_OK;
    size_t nnames = 0, cap = 0, left_out = 0;
    char **names = NULL, **vb = NULL, **vc = NULL;
    for (int side = 0; side < 2; side++)
        for (size_t i = 0; i < (side ? nc : nb); i++) {
            const char *p = side ? lc[i] : lb[i];
            char name[256], value[8];
            bool cut;
            while (pb_envvars_next(&p, name, sizeof name, value, sizeof value, &cut)) {
                if (cut) continue;
                bool seen = false;
                for (size_t j = 0; j < nnames && !seen; j++) seen = strcmp(names[j], name) == 0;
                if (seen) continue;
                if (nnames == cap) {
                    size_t grow = cap ? 2 * cap : 16;
                    char **more = realloc(names, grow * sizeof *names);
                    PB_CHECK_ALLOC(more, grow * sizeof *names);
                    names = more;
                    cap = grow;
                }
                names[nnames] = strdup(name);
                PB_CHECK_ALLOC(names[nnames], strlen(name) + 1);
                nnames++;
            }
        }
    if (nnames) qsort(names, nnames, sizeof *names, cmp_str);
    PB_ALLOC(vb, nb + 1);
    PB_ALLOC(vc, nc + 1);
    for (size_t i = 0; i < nb; i++) PB_ALLOC(vb[i], PB_FIELD_WIDE);
    for (size_t i = 0; i < nc; i++) PB_ALLOC(vc[i], PB_FIELD_WIDE);
    for (size_t k = 0; k < nnames; k++) {
        size_t mb = var_values(names[k], lb, nb, vb), mc = var_values(names[k], lc, nc, vc);
        bool same = mb == mc;
        for (size_t i = 0; same && i < mb; i++) same = strcmp(vb[i], vc[i]) == 0;
        if (same) continue;
        /* the last line left says how many more there are */
        if (r->nenv + 1 >= PB_COMPARE_ENV_MAX) {
            left_out++;
            continue;
        }
        char *line = NULL;
        PB_ALLOC(line, PB_COMPARE_ENV_LINE);
        r->env[r->nenv++] = line;
        size_t n = (size_t)snprintf(line, PB_COMPARE_ENV_LINE, "%s: ", names[k]);
        join_values(line, PB_COMPARE_ENV_LINE, &n, (const char **)vb, mb);
        if (n < PB_COMPARE_ENV_LINE) n += (size_t)snprintf(line + n, PB_COMPARE_ENV_LINE - n, " -> ");
        join_values(line, PB_COMPARE_ENV_LINE, &n, (const char **)vc, mc);
    }
    if (left_out) {
        char *line = NULL;
        PB_ALLOC(line, PB_COMPARE_ENV_LINE);
        r->env[r->nenv++] = line;
        snprintf(line, PB_COMPARE_ENV_LINE, "and %zu more environment variable%s (env_vars in the files)", left_out,
                 left_out == 1 ? " differs" : "s differ");
    }
cleanup:
    for (size_t i = 0; vb && i < nb; i++) free(vb[i]);
    for (size_t i = 0; vc && i < nc; i++) free(vc[i]);
    for (size_t i = 0; i < nnames; i++) free(names[i]);
    free(names);
    free(vb);
    free(vc);
    return st;
}

static pb_status env_diffs(pb_compare_result *r, const side *sb, const side *sc)
{
    pb_status st = PB_OK;
    const char **vb = NULL, **vc = NULL;
    PB_ALLOC(vb, sb->nitems + 1);
    PB_ALLOC(vc, sc->nitems + 1);
    for (size_t e = 0; e < N_ENV_COLS; e++) {
        int cb = pb_csv_find(sb->csv, env_cols[e]), cc = pb_csv_find(sc->csv, env_cols[e]);
        if (cb < 0 || cc < 0) continue;
        size_t nb = distinct(sb, cb, vb), nc = distinct(sc, cc, vc);
        bool same = nb == nc;
        for (size_t i = 0; same && i < nb; i++) same = strcmp(vb[i], vc[i]) == 0;
        if (same) continue;
        char *line = NULL;
        PB_ALLOC(line, PB_COMPARE_ENV_LINE);
        r->env[r->nenv++] = line;
        size_t n = (size_t)snprintf(line, PB_COMPARE_ENV_LINE, "%s: ", env_cols[e]);
        join_values(line, PB_COMPARE_ENV_LINE, &n, vb, nb);
        if (n < PB_COMPARE_ENV_LINE) n += (size_t)snprintf(line + n, PB_COMPARE_ENV_LINE - n, " -> ");
        join_values(line, PB_COMPARE_ENV_LINE, &n, vc, nc);
    }
    int eb = pb_csv_find(sb->csv, "env_vars"), ec = pb_csv_find(sc->csv, "env_vars");
    if (eb >= 0 && ec >= 0) PB_TRY(var_diffs(r, distinct(sb, eb, vb), vb, distinct(sc, ec, vc), vc));
cleanup:
    free(vb);
    free(vc);
    return st;
}

pb_status pb_compare_tables(const pb_csv *base, const char *base_name, const pb_csv *cur, const char *cur_name,
                            const pb_compare_opts *o, pb_compare_result *r)
{
    pb_status st = PB_OK;
    side sb, sc;
    ordered *order = NULL;
    memset(&sb, 0, sizeof sb);
    memset(&sc, 0, sizeof sc);
    memset(r, 0, sizeof *r);
    r->base = base;
    r->cur = cur;
    int hb = pb_compare_metric_higher_better(o->metric);
    if (hb < 0) return pb_usage_error("--metric: unknown '%s'", o->metric);
    r->higher_better = hb == 1;

    PB_TRY(check_columns(base, base_name, o->metric));
    PB_TRY(check_columns(cur, cur_name, o->metric));
    const struct {
        const pb_csv *c;
        const char *name;
    } files[2] = {{base, base_name}, {cur, cur_name}};
    for (int f = 0; f < 2; f++) {
        const pb_csv *c = files[f].c;
        if (c->nrows) continue;
        if (c->nskipped)
            st = pb_user_error(PB_ERR_USAGE,
                               "%s: no complete rows: %zu malformed line%s skipped, the first at line %zu",
                               files[f].name, c->nskipped, c->nskipped == 1 ? "" : "s", c->skip[0].line);
        else
            st = pb_user_error(PB_ERR_USAGE, "%s: no rows after the header", files[f].name);
        goto cleanup;
    }

    char only[2][400] = {"", ""};
    size_t nonly[2] = {0, 0}, lonly[2] = {0, 0};
    for (int k = 0; k < PB_COL_COUNT; k++) {
        const char *name = pb_column_name((pb_column)k);
        int ib = pb_csv_find(base, name), ic = pb_csv_find(cur, name);
        if (!pb_key_uses(PB_KEY_PAIR, (pb_column)k) || (ib < 0) == (ic < 0)) continue;
        int f = ib >= 0 ? 0 : 1;
        if (lonly[f] < sizeof only[f])
            lonly[f] += (size_t)snprintf(only[f] + lonly[f], sizeof only[f] - lonly[f], "%s%s", nonly[f]++ ? ", " : "",
                                         name);
    }
    pb_key key;
    pb_key_init(&key, PB_KEY_PAIR, base, cur);
    for (size_t k = 0; k < key.n; k++) {
        r->key_name[r->nkey] = pb_column_name(key.col[k]);
        r->key_base[r->nkey] = key.ia[k];
        r->key_cur[r->nkey] = key.ib[k];
        r->nkey++;
    }
    for (int f = 0; f < 2; f++)
        if (nonly[f])
            pb_log_info("compare: %s only in %s: %s; rows are paired without %s",
                        nonly[f] == 1 ? "a configuration column is" : "configuration columns are", files[f].name,
                        only[f], nonly[f] == 1 ? "it" : "them");

    sb.csv = base;
    sb.name = base_name;
    sc.csv = cur;
    sc.name = cur_name;
    side *sides[2] = {&sb, &sc};
    for (int f = 0; f < 2; f++) {
        side *s = sides[f];
        s->status = pb_csv_find(s->csv, "status");
        s->metric = pb_csv_find(s->csv, o->metric);
        s->iters = pb_csv_find(s->csv, "iters");
        s->cv = pb_csv_find(s->csv, "step_ms_cv");
        s->time = pb_csv_find(s->csv, "time_utc");
        /* rows of one file compare through its own indices */
        s->key = key;
        for (size_t k = 0; k < key.n; k++) {
            if (f == 0) s->key.ib[k] = key.ia[k];
            else s->key.ia[k] = key.ib[k];
        }
    }
    PB_TRY(load_side(&sb, &r->ignored_base));
    PB_TRY(load_side(&sc, &r->ignored_cur));
    /* nothing ok to compare against: no verdict can pass (one line, as any bad input) */
    if (!sb.nitems) {
        st = pb_user_error(PB_ERR_USAGE, "%s: no row with status ok and a %s value (%zu not compared); nothing to "
                                         "compare against",
                           base_name, o->metric, r->ignored_base);
        goto cleanup;
    }
    notices(base, base_name, r->ignored_base, o->metric);
    notices(cur, cur_name, r->ignored_cur, o->metric);
    r->ok_cur = sc.nitems;

    /* match groups: both lists are in key order */
    for (size_t i = 0, j = 0; i < sb.ngroups && j < sc.ngroups;) {
        int c = pb_key_cmp(&key, base, sb.items[sb.groups[i].first].row, cur, sc.items[sc.groups[j].first].row);
        if (c == 0) {
            sb.groups[i].match = j;
            sc.groups[j].match = i;
            i++;
            j++;
        } else if (c < 0) {
            i++;
        } else {
            j++;
        }
    }
    /* report in file order: BASELINE's configurations, then those only in
     * CURRENT; an order array, so the match indices stay valid */
    PB_ALLOC(order, sb.ngroups + sc.ngroups + 1);
    size_t norder = 0;
    for (size_t i = 0; i < sb.ngroups; i++) order[norder++] = (ordered){sb.groups[i].row, i};
    qsort(order, norder, sizeof *order, cmp_ordered);
    size_t nb = norder;
    for (size_t j = 0; j < sc.ngroups; j++)
        if (sc.groups[j].match == SIZE_MAX) order[norder++] = (ordered){sc.groups[j].row, j};
    qsort(order + nb, norder - nb, sizeof *order, cmp_ordered);

    PB_ALLOC(r->pairs, norder + 1);
    for (size_t k = 0; k < norder; k++) {
        pb_compare_pair *p = &r->pairs[r->npairs++];
        p->t = p->df = p->p = p->change_pct = p->drift_pct = p->p_drift = p->mde_pct = NAN;
        if (k >= nb) {
            p->cur = summarise(&sc, &sc.groups[order[k].group]);
            p->verdict = PB_VERDICT_ONLY_CURRENT;
            continue;
        }
        const group *g = &sb.groups[order[k].group];
        p->base = summarise(&sb, g);
        if (g->match == SIZE_MAX) {
            /* ok in BASELINE, and CURRENT ran it but has no ok row of it:
             * what broke is a regression, not a configuration left out */
            for (size_t f = 0; f < sc.nfailed; f++)
                if (pb_key_cmp(&key, base, g->row, cur, sc.failed[f]) == 0) {
                    if (!p->cur_failed) p->cur_failed_row = sc.failed[f];
                    p->cur_failed++;
                }
            p->verdict = p->cur_failed ? PB_VERDICT_FAILED_CURRENT : PB_VERDICT_ONLY_BASELINE;
            continue;
        }
        p->cur = summarise(&sc, &sc.groups[g->match]);
        pb_compare_decide(p, o, r->higher_better);
    }
    for (size_t i = 0; i < r->npairs; i++) r->count[r->pairs[i].verdict]++;
    PB_TRY(mark_varying(r));
    if (sb.nitems && sc.nitems) PB_TRY(env_diffs(r, &sb, &sc));
cleanup:
    free(order);
    free_side(&sb);
    free_side(&sc);
    if (st != PB_OK) pb_compare_free(r);
    return st;
}

void pb_compare_free(pb_compare_result *r)
{
    for (size_t i = 0; i < r->nenv; i++) free(r->env[i]);
    r->nenv = 0;
    free(r->pairs);
    r->pairs = NULL;
    r->npairs = 0;
}
