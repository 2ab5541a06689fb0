/* bench plot's plots as specifications: the table of the plots of one CSV
 * and --compare's plot, each plot's select and rows functions, and the one
 * driver that writes a plot's .dat file, its titles, and draws it with a
 * plots/ *.gp script through study/gnuplot.c. */
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

#include "gnuplot.h"
#include "../harness/log.h"
#include "../harness/registry.h"

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

/* The title's lines: at most TITLE_COLS characters, which the 1100-pixel
 * canvas holds with room to spare at the title's font (about 7 pixels a
 * character), and at most TITLE_LINES of them. */
#define TITLE_COLS 100
#define TITLE_LINES 4

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
    if (!x->o.keep_data) pb_plot_strv_push(&x->tmpfiles, strdup(path));
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

/* Where the next title line of `s` ends (at most TITLE_COLS characters):
 * after the last "; " (between settings) or ", " (between values) of the
 * line, or at its last space, when that leaves at least a third of the line;
 * else at TITLE_COLS. *next gets where the line after it starts. */
static size_t title_break(const char *s, size_t *next)
{
    size_t n = strlen(s);
    if (n <= TITLE_COLS) return *next = n;
    static const char *const seps[] = {"; ", ", ", " "};
    for (size_t k = 0; k < sizeof seps / sizeof seps[0]; k++) {
        size_t sl = strlen(seps[k]), best = 0;
        for (size_t i = TITLE_COLS / 3; i + sl - 1 <= TITLE_COLS; i++)
            if (strncmp(s + i, seps[k], sl) == 0) best = i;
        if (best) {
            *next = best + sl;
            return best + sl - 1; /* the ';' or ',' ends the line; the space goes */
        }
    }
    return *next = TITLE_COLS;
}

/* The title and the subtitle as the lines gnuplot prints centred over the
 * canvas, each short enough to fit it (a longer line is cut at both edges):
 * ntitle=K; title1='...'; ... titleK='...'. At most TITLE_LINES lines; a
 * subtitle longer than that ends in "...". */
static void add_title_lines(pb_strbuf *vars, const char *title, const char *sub)
{
    int k = 0;
    const char *parts[2] = {title, sub};
    for (int p = 0; p < 2; p++) {
        for (const char *s = parts[p]; *s && k < TITLE_LINES;) {
            size_t next, end = title_break(s, &next);
            char line[TITLE_COLS + 8], name[16];
            bool last = k == TITLE_LINES - 1 && s[next];
            snprintf(line, sizeof line, "%.*s%s", (int)end, s, last ? " ..." : "");
            snprintf(name, sizeof name, "title%d", ++k);
            pb_gnuplot_str(vars, name, line);
            s += next;
        }
    }
    pb_gnuplot_num(vars, "ntitle", k);
}

/* Draws plots/SCRIPT.gp (study/gnuplot.h), which reads datafile and writes
 * OUTNAME.png and OUTNAME.svg in --out; prints their paths. vars gets
 * plotdir, datafile and the title lines added. */
static void draw(ctx *x, const char *script, const char *datafile, const char *outname, const char *title,
                 const char *sub, pb_strbuf *vars)
{
    char script_path[PATH_MAX + 32], png[PATH_MAX + 8], svg[PATH_MAX + 8];
    snprintf(script_path, sizeof script_path, "%s/%s.gp", x->plotdir, script);
    pb_gnuplot_str(vars, "plotdir", x->plotdir);
    pb_gnuplot_str(vars, "datafile", datafile);
    add_title_lines(vars, title, sub);
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

static int xtic_angle(const cfgset *s, const int *idx, int n);

/* The turned tic labels: how far (in characters) the first reaches left of
 * its tic, which the left margin must hold or the label is cut at the
 * canvas's edge; 0 when the labels are not turned. */
static double xtic_lead(const cfgset *s, const int *idx, int n, int angle)
{
    if (!angle || n < 1) return 0;
    const config *c = &s->c[idx[0]];
    double len = (double)(strlen(c->tic1) + (c->tic2[0] ? 2 + strlen(c->tic2) : 0));
    return len * cos(angle * 3.14159265358979 / 180) + 2;
}

/* xrot (the tic labels' angle) and xlead (xtic_lead) for a script. */
static void add_xrot(plot_job *job, const cfgset *s, const int *idx, int n)
{
    int angle = xtic_angle(s, idx, n);
    pb_gnuplot_num(&job->vars, "xrot", angle);
    pb_gnuplot_num(&job->vars, "xlead", xtic_lead(s, idx, n, angle));
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
void pb_plot_safe_name(char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.') *s = '_';
}

static void title_of(const selection *sel, const int *idx, int n, const char *what, char *buf, size_t len)
{
    char dd[TEXT_MAX];
    pb_plot_device_and_date(&sel->set, idx, n, dd, sizeof dd);
    snprintf(buf, len, "%s: %s, %s, %s", what, sel->workload, sel->backend, dd);
}

static void sub_of(const selection *sel, const int *idx, int n, const char *extra, char *buf, size_t len)
{
    char shared[TEXT_MAX];
    pb_plot_shared_settings(&sel->set, idx, n, sel->per_device_batch, shared, sizeof shared);
    /* the shared settings are cut to fit beside extra (both TEXT_MAX) in a
     * subtitle: a label, not data */
    if (extra && *extra)
        snprintf(buf, len, "%s%s%.*s", extra, shared[0] ? "; " : "", TEXT_MAX - 16, shared);
    else
        snprintf(buf, len, "%s", shared);
}

/* Builds one plot: its configurations, its .dat file, its titles, the
 * drawing. Returns whether its data file was written. */
bool pb_plot_build_plot(const plot_spec *spec, plot_job *job)
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
    pb_plot_safe_name(name);
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

static const char *const stack_phases[] = {"load", "h2d", "scatter", "replicate", "fwd", "gather", "bwd",
                                           "reduce", "p2p", "bubble", "sync", "tp_comm", "opt"};
#define N_STACK (int)(sizeof stack_phases / sizeof stack_phases[0])
/* plots/common.gp's colour of each phase, and of "other" last (tp_comm's
 * came later: the others keep theirs) */
static const int stack_lt[N_STACK + 1] = {11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 24, 22, 23};

/* c's mean step and phase times (a missing or negative one is 0), and in
 * ph[N_STACK] the rest of the step the phases leave (host work between
 * them; 0 when negative); returns that rest before the clamp. */
static double phase_means(const config *c, double *ph, double *step)
{
    *step = pb_plot_cmean(c, "step_ms_mean");
    double sum = 0;
    for (int p = 0; p < N_STACK; p++) {
        char col[32];
        snprintf(col, sizeof col, "%s_ms", stack_phases[p]);
        double v = pb_plot_cmean(c, col);
        ph[p] = isnan(v) || v < 0 ? 0 : v;
        sum += ph[p];
    }
    double other = isnan(*step) ? 0 : *step - sum;
    ph[N_STACK] = other > 0 ? other : 0;
    return other;
}

/* The breakdown's columns: a phase is drawn when it is at least 0.5 % of the
 * tallest bar in some bar (about two pixels: a legend entry for a sliver
 * nobody can see, or a phase that is zero everywhere, misleads; such a
 * sliver leaves its bar that much below the cross); "other" is the rest of
 * the step no phase covers, when that is at least 0.5 % of a step. Returns
 * how many. */
static int stack_columns(const plot_job *job, bool *used)
{
    double ph[N_STACK + 1], step, tallest = 0;
    memset(used, 0, (N_STACK + 1) * sizeof *used);
    for (int i = 0; i < job->n; i++) {
        phase_means(&job->set->c[job->idx[i]], ph, &step);
        double sum = 0;
        for (int p = 0; p < N_STACK; p++) sum += ph[p];
        tallest = fmax(tallest, isnan(step) ? sum : fmax(step, sum));
    }
    for (int i = 0; i < job->n; i++) {
        phase_means(&job->set->c[job->idx[i]], ph, &step);
        for (int p = 0; p < N_STACK; p++)
            if (ph[p] > 0 && ph[p] >= 0.005 * tallest) used[p] = true;
    }
    for (int i = 0; i < job->n; i++) {
        double other = phase_means(&job->set->c[job->idx[i]], ph, &step);
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
        phase_means(c, ph, &step);
        dat_tics(f, c);
        for (int p = 0; p <= N_STACK; p++)
            if (used[p]) dat_num(f, ph[p]);
        dat_num(f, step);
        fputc('\n', f);
    }
    pb_strbuf lts = {0};
    for (int p = 0; p <= N_STACK; p++)
        if (used[p]) pb_strbuf_printf(&lts, "%s%d", lts.n ? " " : "", stack_lt[p]); /* plots/common.gp's phase colours */
    char *lt = pb_strbuf_take(&lts);
    pb_gnuplot_str(&job->vars, "phaselt", lt ? lt : "");
    free(lt);
    pb_gnuplot_num(&job->vars, "nphases", ncols);
    add_xrot(job, job->set, job->idx, job->n);
    return NULL;
}

static const char *scaling_mode(const selection *sel)
{
    return sel->per_device_batch ? "weak scaling (same batch per device)" : "strong scaling (same global batch)";
}

/* On the cpu backend, the BLAS threads per device at each device count, so
 * the plot says which rule made its rows (docs/sweep.md, "Threads"):
 * "; 1 thread/device" when fixed, "; threads/device: 2 at x1, 1
 * at x2" under the sweep's cores/devices rule (the most at a count: single
 * x1 also runs at 1 thread there, as the reference of x2). Empty
 * elsewhere. */
static void threads_rule(const plot_job *job, char *buf, size_t len)
{
    buf[0] = '\0';
    if (strcmp(job->sel->backend, "cpu") != 0) return;
    int devs[32], most[32], m = 0, lo = 0, hi = 0;
    for (int i = 0; i < job->n; i++) {
        const config *c = &job->set->c[job->idx[i]];
        int t = atoi(pb_plot_cv(c, PB_COL_THREADS));
        if (t <= 0) continue;
        lo = lo && lo < t ? lo : t;
        hi = hi > t ? hi : t;
        int k = 0;
        while (k < m && devs[k] != c->devices) k++;
        if (k == m) {
            if (m == 32) continue;
            /* in device order */
            while (k > 0 && devs[k - 1] > c->devices) {
                devs[k] = devs[k - 1];
                most[k] = most[k - 1];
                k--;
            }
            devs[k] = c->devices;
            most[k] = t;
            m++;
        } else if (t > most[k]) {
            most[k] = t;
        }
    }
    if (!m) return;
    if (lo == hi) {
        snprintf(buf, len, "; %d thread%s/device", lo, lo == 1 ? "" : "s");
        return;
    }
    size_t n = (size_t)snprintf(buf, len, "; threads/device:");
    for (int k = 0; k < m && n < len; k++)
        n += (size_t)snprintf(buf + n, len - n, "%s %d at x%d", k ? "," : "", most[k], devs[k]);
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
        if (c->devices > 1 && !isnan(pb_plot_cmean(c, "samples_per_s"))) return NULL;
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
            dat_num(f, pb_plot_cmean(c, "samples_per_s"));
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
        double t1 = pb_plot_cmean(r, "samples_per_s");
        char label[TEXT_MAX + 32];
        snprintf(label, sizeof label, "ideal: N x %s", r->label);
        fputs("\n\n", f);
        dat_label(f, label);
        fputs(" \"samples/s\" \"lt\"\n", f);
        int lt = distinct_refs == 1 ? 9 : s % 8 + 1;
        fprintf(f, "1 %.6g %d\n%d %.6g %d\n", t1, lt, top, t1 * top, lt);
        nideal++;
    }
    char rule[256];
    threads_rule(job, rule, sizeof rule);
    snprintf(job->sub, sizeof job->sub, "%s%s", scaling_mode(sel), rule);
    pb_gnuplot_num(&job->vars, "nseries", nseries);
    pb_gnuplot_num(&job->vars, "nideal", nideal);
    add_devtics(job);
    return NULL;
}

/* The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k) at
 * least v (v > 0): a tic step a person reads at a glance. */
static double nice_ceil(double v)
{
    double p = pow(10, floor(log10(v)));
    static const double steps[] = {1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if (steps[i] * p >= v * (1 - 1e-9)) return steps[i] * p;
    return 10 * p;
}

/* An axis top at least v, on a round tic step (about five tics). */
static double axis_top(double v)
{
    double step = nice_ceil(v / 5);
    return step * ceil(v / step * (1 - 1e-9));
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
        double t1 = pb_plot_cmean(&sel->set.c[sel->ref[s]], "samples_per_s");
        if (blocks++) fputs("\n\n", f);
        dat_label(f, sel->set.c[sel->first[s]].series_label);
        fputs(" \"%\"\n", f);
        for (int i = 0; i < job->n; i++) {
            const config *c = &sel->set.c[job->idx[i]];
            if (c->series != s) continue;
            double e = 100.0 * pb_plot_cmean(c, "samples_per_s") / (c->devices * t1);
            if (isfinite(e) && e * 1.1 > ymax) ymax = e * 1.1;
            if (isfinite(e) && c->devices > 1) beyond_one++;
            fprintf(f, "%d", c->devices);
            dat_num(f, e);
            fputc('\n', f);
        }
    }
    if (!beyond_one) return "no run on more than one device has a 1-device run with the same settings";
    char rule[256];
    threads_rule(job, rule, sizeof rule);
    snprintf(job->sub, sizeof job->sub, "%s; throughput(N) / (N x throughput of the 1-device run)%s",
             scaling_mode(sel), rule);
    pb_gnuplot_num(&job->vars, "nseries", blocks);
    pb_gnuplot_num(&job->vars, "ymax", axis_top(ymax));
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

static bool has_comm(const config *c) { return !isnan(pb_plot_cmean(c, "comm_ms")); }

static const char *ddp_select(plot_job *job)
{
    int n = keep_configs(job, has_comm);
    return job->n ? NULL : n ? "no comm_ms in the ddp rows" : "no ddp rows";
}

/* The bars of a plot whose value columns are fixed: a column is drawn when
 * some bar has it above 0 (a legend entry for a bar drawn nowhere misleads).
 * Writes their headers, sets nbars and barlt (their linetypes). */
typedef struct bar_col {
    const char *title;
    int lt;
} bar_col;

static int bar_header(plot_job *job, FILE *f, const bar_col *cols, int ncols, const bool *used)
{
    pb_strbuf lts = {0};
    int n = 0;
    fputs("\"config\" \"settings\"", f);
    for (int k = 0; k < ncols; k++) {
        if (!used[k]) continue;
        fprintf(f, " \"%s\"", cols[k].title);
        pb_strbuf_printf(&lts, "%s%d", n++ ? " " : "", cols[k].lt);
    }
    char *lt = pb_strbuf_take(&lts);
    pb_gnuplot_str(&job->vars, "barlt", lt ? lt : "");
    free(lt);
    pb_gnuplot_num(&job->vars, "nbars", n);
    return n;
}

/* c's all-reduce per step: exposed, hidden, overlap (%). */
static void ddp_figures(const config *c, double *v)
{
    double comm = pb_plot_cmean(c, "comm_ms"), sync = pb_plot_cmean(c, "sync_ms"),
           overlap = pb_plot_cmean(c, "overlap_pct");
    if (isnan(sync)) sync = isnan(overlap) ? comm : comm * (1 - overlap / 100);
    double hidden = comm - sync;
    if (hidden < 0) hidden = 0;
    if (isnan(overlap)) overlap = comm > 0 ? 100 * hidden / comm : NAN;
    v[0] = sync;
    v[1] = hidden;
    v[2] = overlap;
}

/* Bars of exposed and hidden time; the overlap a point per bar on the right
 * axis (configurations are not a continuum: no line between them). The left
 * axis has five intervals like the right one (0 to 100 % by 20), so both
 * meet the same grid lines. */
static const char *ddp_rows(plot_job *job, FILE *f)
{
    static const bar_col cols[] = {{"exposed (sync)", 21}, {"hidden behind backward", 13}};
    bool used[2] = {false, false};
    double top = 0;
    for (int i = 0; i < job->n; i++) {
        double v[3];
        ddp_figures(&job->set->c[job->idx[i]], v);
        for (int k = 0; k < 2; k++) used[k] |= v[k] > 0;
        double sum = (v[0] > 0 ? v[0] : 0) + (v[1] > 0 ? v[1] : 0);
        if (sum > top) top = sum;
    }
    if (!used[0] && !used[1]) used[0] = true; /* all zero: still one bar column to show it */
    bar_header(job, f, cols, 2, used);
    fputs(" \"overlap (% hidden, right axis)\"\n", f);
    for (int i = 0; i < job->n; i++) {
        const config *c = &job->set->c[job->idx[i]];
        double v[3];
        ddp_figures(c, v);
        dat_tics(f, c);
        for (int k = 0; k < 3; k++)
            if (k == 2 || used[k]) dat_num(f, v[k]);
        fputc('\n', f);
    }
    pb_gnuplot_num(&job->vars, "ymax", 5 * nice_ceil(top > 0 ? top * 1.05 / 5 : 0.2));
    add_xrot(job, job->set, job->idx, job->n);
    return NULL;
}

static bool has_bubble(const config *c)
{
    return !isnan(pb_plot_cmean(c, "bubble_frac")) || !isnan(pb_plot_cmean(c, "bubble_frac_theory"));
}

static const char *bubble_select(plot_job *job)
{
    int n = keep_configs(job, has_bubble);
    return job->n ? NULL : n ? "no bubble_frac in the mp rows" : "no mp rows";
}

/* Measured and theory side by side, the axis at least 10 % above the
 * tallest bar (a bar at the top of the frame reads as cut off). */
static const char *bubble_rows(plot_job *job, FILE *f)
{
    static const bar_col cols[] = {{"measured", 1}, {"theory (p-1)/(m+p-1)", 9}};
    static const char *const names[] = {"bubble_frac", "bubble_frac_theory"};
    bool used[2] = {false, false};
    double top = 0;
    for (int i = 0; i < job->n; i++)
        for (int k = 0; k < 2; k++) {
            double v = 100 * pb_plot_cmean(&job->set->c[job->idx[i]], names[k]);
            used[k] |= v > 0;
            if (v > top) top = v;
        }
    if (!used[0] && !used[1]) used[0] = true;
    bar_header(job, f, cols, 2, used);
    fputc('\n', f);
    for (int i = 0; i < job->n; i++) {
        const config *c = &job->set->c[job->idx[i]];
        config shown = *c;
        /* the microbatch count always shows here: it is the point */
        if (pb_plot_cv(c, PB_COL_MICROBATCHES)[0] && !strstr(c->tic2, "m="))
            snprintf(shown.tic2, sizeof shown.tic2, "m=%.60s%s%.160s", pb_plot_cv(c, PB_COL_MICROBATCHES),
                     c->tic2[0] ? ", " : "", c->tic2);
        dat_tics(f, &shown);
        for (int k = 0; k < 2; k++)
            if (used[k]) dat_num(f, 100 * pb_plot_cmean(c, names[k]));
        fputc('\n', f);
    }
    pb_gnuplot_num(&job->vars, "ymax", top > 0 ? axis_top(top * 1.1) : 10);
    add_xrot(job, job->set, job->idx, job->n);
    return NULL;
}

/* --- memory per device ------------------------------------------------------ */

/* The memory plot's stacked parts: the plan of each configuration's
 * largest device (docs/csv-schema.md, mem_plan_*), in MB (2^20 bytes) */
static const bar_col mem_cols[] = {{"parameters (plan)", 1}, {"gradients (plan)", 2},
                                   {"optimizer state (plan)", 3}, {"activations (plan)", 5}};
static const char *const mem_names[] = {"mem_plan_params_mb", "mem_plan_grads_mb", "mem_plan_optim_mb",
                                        "mem_plan_acts_mb"};
#define N_MEM (int)(sizeof mem_names / sizeof mem_names[0])

static bool has_memory(const config *c)
{
    return !isnan(pb_plot_cmean(c, "mem_plan_mb")) || !isnan(pb_plot_cmean(c, "peak_mem_mb"));
}

static const char *memory_select(plot_job *job)
{
    keep_configs(job, has_memory);
    return job->n ? NULL : "no memory figures (mem_plan_mb, peak_mem_mb) in the rows";
}

/* A bar per configuration: its planned parts stacked, the measured peak
 * (peak_mem_mb, the largest device's) a point on it; where the plan is
 * exact (the cpu backend) the point sits on the bar's top. */
static const char *memory_rows(plot_job *job, FILE *f)
{
    bool used[N_MEM] = {false};
    double top = 0;
    for (int i = 0; i < job->n; i++) {
        const config *c = &job->set->c[job->idx[i]];
        double sum = 0;
        for (int k = 0; k < N_MEM; k++) {
            double v = pb_plot_cmean(c, mem_names[k]);
            used[k] |= v > 0;
            sum += v > 0 ? v : 0;
        }
        top = fmax(top, fmax(sum, pb_plot_cmean(c, "peak_mem_mb")));
    }
    bool any = false;
    for (int k = 0; k < N_MEM; k++) any |= used[k];
    if (!any) used[N_MEM - 1] = true; /* rows from before the plan: still one bar column */
    bar_header(job, f, mem_cols, N_MEM, used);
    fputs(" \"measured peak (peak_mem_mb)\"\n", f);
    for (int i = 0; i < job->n; i++) {
        const config *c = &job->set->c[job->idx[i]];
        dat_tics(f, c);
        for (int k = 0; k < N_MEM; k++)
            if (used[k]) dat_num(f, pb_plot_cmean(c, mem_names[k]));
        dat_num(f, pb_plot_cmean(c, "peak_mem_mb"));
        fputc('\n', f);
    }
    pb_gnuplot_num(&job->vars, "ymax", top > 0 ? axis_top(top * 1.1) : 1);
    add_xrot(job, job->set, job->idx, job->n);
    return NULL;
}

/* --- communication volume ------------------------------------------------------- */

/* The communication plot's lines: each column here that some configuration
 * has, a line per strategy (and settings) against devices. The per-kind
 * columns (allreduce_bytes_per_step, reduce_scatter_bytes_per_step,
 * allgather_bytes_per_step, p2p_bytes_per_step) join as rows of this table;
 * bench plot's reader checks every one (study/plot_table.c). */
const pb_plot_col pb_plot_comm_volume[] = {
    {"comm_bytes_per_step", "all collectives"},
    {"allreduce_bytes_per_step", "all-reduce (ring, on the wire)"},
    {"p2p_bytes_per_step", "point-to-point (one stage boundary, both ways)"},
};
const int pb_plot_comm_volume_n = (int)(sizeof pb_plot_comm_volume / sizeof pb_plot_comm_volume[0]);

static bool has_comm_volume(const config *c)
{
    for (int k = 0; k < pb_plot_comm_volume_n; k++)
        if (!isnan(pb_plot_cmean(c, pb_plot_comm_volume[k].col))) return true;
    return false;
}

static const char *comm_volume_select(plot_job *job)
{
    keep_configs(job, has_comm_volume);
    return job->n ? NULL : "no communication volume (comm_bytes_per_step) in the rows";
}

/* Whether some configuration of series s (any, with s < 0) has column k. */
static bool series_has(const plot_job *job, int s, int k)
{
    for (int i = 0; i < job->n; i++) {
        const config *c = &job->set->c[job->idx[i]];
        if ((s < 0 || c->series == s) && !isnan(pb_plot_cmean(c, pb_plot_comm_volume[k].col))) return true;
    }
    return false;
}

/* A block per series and column it has: devices, MB per step and rank. A
 * series' lines share its colour, a column's its dash. */
static const char *comm_volume_rows(plot_job *job, FILE *f)
{
    const selection *sel = job->sel;
    int ncols = 0, nlines = 0;
    for (int k = 0; k < pb_plot_comm_volume_n; k++) ncols += series_has(job, -1, k);
    pb_strbuf lts = {0}, dts = {0};
    for (int s = 0; s < sel->nseries; s++)
        for (int k = 0; k < pb_plot_comm_volume_n; k++) {
            if (!series_has(job, s, k)) continue;
            char label[TEXT_MAX + 64];
            snprintf(label, sizeof label, "%s%s%s", sel->set.c[sel->first[s]].series_label, ncols > 1 ? ": " : "",
                     ncols > 1 ? pb_plot_comm_volume[k].title : "");
            if (nlines++) fputs("\n\n", f);
            dat_label(f, label);
            fputs(" \"MB\"\n", f);
            for (int i = 0; i < job->n; i++) {
                const config *c = &job->set->c[job->idx[i]];
                if (c->series != s) continue;
                fprintf(f, "%d", c->devices);
                dat_num(f, pb_plot_cmean(c, pb_plot_comm_volume[k].col) / 1048576.0);
                fputc('\n', f);
            }
            pb_strbuf_printf(&lts, "%s%d", lts.n ? " " : "", s % 8 + 1);
            pb_strbuf_printf(&dts, "%s%d", dts.n ? " " : "", k % 5 + 1);
        }
    char *lt = pb_strbuf_take(&lts), *dt = pb_strbuf_take(&dts);
    pb_gnuplot_str(&job->vars, "linelt", lt ? lt : "");
    pb_gnuplot_str(&job->vars, "linedt", dt ? dt : "");
    free(lt);
    free(dt);
    pb_gnuplot_num(&job->vars, "nlines", nlines);
    add_devtics(job);
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
     .sub = "share of the step a stage waits; theory (p-1)/(m+p-1) with p stages, m microbatches"},
    {.name = "memory",
     .script = "memory",
     .what = "memory per device",
     .select = memory_select,
     .rows = memory_rows,
     .title = "Memory per device",
     .sub = "the largest device: planned parts stacked (mem_plan_*), measured peak_mem_mb a point; MB = 2^20 bytes"},
    {.name = "comm-volume",
     .script = "comm_volume",
     .what = "communication volume",
     .select = comm_volume_select,
     .rows = comm_volume_rows,
     .title = "Communication per step",
     .sub = "bytes each rank sends into collectives per step; MB = 2^20 bytes"},
};

/* Every plot of the selection; idx has room for its configurations. */
void pb_plot_draw_selection(ctx *x, const selection *sel, int *idx)
{
    bool previous = false;
    for (size_t k = 0; k < sizeof csv_plots / sizeof csv_plots[0]; k++) {
        const plot_spec *spec = &csv_plots[k];
        if (spec->with_previous && !previous) continue;
        plot_job job = {.x = x, .sel = sel, .set = &sel->set, .idx = idx, .prefix = sel->prefix};
        for (int i = 0; i < sel->n; i++)
            if (!spec->needs || spec->needs(pb_plot_cv(&sel->set.c[sel->all[i]], PB_COL_STRATEGY)))
                idx[job.n++] = sel->all[i];
        previous = pb_plot_build_plot(spec, &job);
    }
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

/* The colour of CURRENT's bar: bench compare's verdict at a glance. */
typedef enum shade { SHADE_NONE, SHADE_SAME, SHADE_REGRESSION, SHADE_IMPROVEMENT, SHADE_COUNT } shade;

static shade shade_of(const pb_compare_pair *t)
{
    if (!t) return SHADE_NONE;
    switch (t->verdict) {
    case PB_VERDICT_REGRESSION: return SHADE_REGRESSION;
    case PB_VERDICT_IMPROVEMENT: return SHADE_IMPROVEMENT;
    default: return SHADE_SAME; /* same, noise, no-spread: not a change compare stands behind */
    }
}

/* A row per pair: the means, their standard errors (the spread compare's
 * test uses; 0 where a side has none), the change, the verdict's word and
 * shade (plots/compare.gp colours it), and the top of the pair's bars,
 * error bars and band, where the change is written. */
static const char *compare_rows(plot_job *job, FILE *f)
{
    const pairing *p = job->pair;
    bool shown[SHADE_COUNT] = {false}, bspread = false, cspread = false;
    double th = p->opts.threshold_pct / 100;
    fputs("\"config\" \"settings\" \"baseline\" \"current\" \"change\" \"baseline_se\" \"current_se\" "
          "\"verdict\" \"shade\" \"top\"\n",
          f);
    for (int i = 0; i < p->m; i++) {
        const pb_compare_pair *t = p->test ? p->test[i] : NULL;
        double b = pb_plot_cmean(&p->bs->c[p->bi[i]], p->metric), c = pb_plot_cmean(&p->cs->c[p->ci[i]], p->metric);
        double eb = t ? sqrt(t->base.se2) : 0, ec = t ? sqrt(t->cur.se2) : 0;
        shade sh = shade_of(t);
        shown[sh] = true;
        bspread |= eb > 0;
        cspread |= ec > 0;
        double top = fmax(fmax(b + eb, c + ec), t ? b * (1 + th) : 0);
        dat_tics(f, &p->bs->c[p->bi[i]]);
        dat_num(f, b);
        dat_num(f, c);
        dat_num(f, b != 0 ? 100 * (c - b) / fabs(b) : NAN);
        dat_num(f, isfinite(eb) ? eb : 0);
        dat_num(f, isfinite(ec) ? ec : 0);
        fputc(' ', f);
        dat_label(f, t ? pb_verdict_name(t->verdict) : "");
        fprintf(f, " %d", (int)sh);
        dat_num(f, top);
        fputc('\n', f);
    }
    char ylabel[TEXT_MAX];
    const char *unit = unit_of(p->metric);
    snprintf(ylabel, sizeof ylabel, "%s%s%s%s", p->metric, *unit ? " (" : "", unit, *unit ? ")" : "");
    pb_gnuplot_str(&job->vars, "ylab", ylabel);
    /* the legend lists the shades drawn, the band only with verdicts */
    pb_strbuf sh = {0};
    for (int k = 0; k < SHADE_COUNT; k++)
        if (shown[k]) pb_strbuf_printf(&sh, "%s%d", sh.n ? " " : "", k);
    char *list = pb_strbuf_take(&sh);
    pb_gnuplot_str(&job->vars, "shades", list ? list : "");
    free(list);
    pb_gnuplot_num(&job->vars, "band", shown[SHADE_SAME] || shown[SHADE_REGRESSION] || shown[SHADE_IMPROVEMENT]
                                           ? p->opts.threshold_pct : 0);
    pb_gnuplot_num(&job->vars, "npairs", p->m);
    /* an error-bar clause only for a side that has one (else gnuplot warns) */
    pb_gnuplot_num(&job->vars, "bspread", bspread);
    pb_gnuplot_num(&job->vars, "cspread", cspread);
    add_xrot(job, p->bs, p->bi, p->m);
    return NULL;
}

static void compare_titles(const plot_job *job, char *title, size_t tlen, char *sub, size_t slen)
{
    const pairing *p = job->pair;
    char bdd[TEXT_MAX], cdd[TEXT_MAX];
    pb_plot_device_and_date(p->bs, p->bi, p->m, bdd, sizeof bdd);
    pb_plot_device_and_date(p->cs, p->ci, p->m, cdd, sizeof cdd);
    /* workload and backend in the title when every config shares them */
    bool wl = pb_plot_dim_varies_all(p->bs, p->bi, p->m, PB_COL_WORKLOAD),
         be = pb_plot_dim_varies_all(p->bs, p->bi, p->m, PB_COL_BACKEND);
    snprintf(title, tlen, "Baseline vs current, %s: %.100s, %.100s, %s", p->metric,
             wl ? "several workloads" : pb_plot_cv(&p->bs->c[p->bi[0]], PB_COL_WORKLOAD),
             be ? "several backends" : pb_plot_cv(&p->bs->c[p->bi[0]], PB_COL_BACKEND), cdd);
    bool judged = false;
    for (int i = 0; i < p->m && p->test; i++) judged |= p->test[i] != NULL;
    char how[200] = "";
    if (judged)
        snprintf(how, sizeof how, "; colour: bench compare's verdict (threshold %g %%, Welch t-test at alpha %g); "
                 "error bars: 1 standard error of the mean",
                 p->opts.threshold_pct, p->opts.alpha);
    snprintf(sub, slen, "baseline %.200s (%.200s); current %.200s; %s is better%s", p->base->path, bdd,
             p->cur->path, higher_is_better(p->metric) ? "higher" : "lower", how);
}

/* --compare's plot: the metric per configuration in both files. */
const plot_spec pb_plot_compare_plot = {
    .name = "", .script = "compare", .rows = compare_rows, .titles = compare_titles};

void pb_plot_draw(ctx *x, const char *script, const char *datafile, const char *outname, const char *title,
                  const char *sub, pb_strbuf *vars)
{
    draw(x, script, datafile, outname, title, sub, vars);
}
