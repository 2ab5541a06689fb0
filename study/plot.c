/* bench plot, the command: its flags, the output folders, the workload and
 * backend of one CSV, the pairing of --compare's two files. The rows are
 * grouped into configurations by study/plot_table.c, each plot's .dat file
 * is written and drawn by the driver in study/plot_specs.c with a plots/
 * *.gp script (docs/plots.md); study/gnuplot.c runs gnuplot (fork and exec,
 * never a shell; strings reach it as single-quoted gnuplot literals). */
#define _POSIX_C_SOURCE 200809L
#include "plot.h"
#include "predict_out.h"
#include "plot_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "compare_cli.h"
#include "compare_comm.h"
#include "gnuplot.h"
#include "../harness/log.h"
#include "../harness/registry.h"

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
    if (pb_gnuplot_find_scripts("common.gp", x->plotdir, sizeof x->plotdir)) return PB_OK;
    return pb_usage_error("plot: the gnuplot scripts (plots/*.gp) were not found beside the bench binary or in "
                          "./plots; pass --plots-dir DIR");
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
        if (workload && strcmp(pb_plot_tv(t, r, PB_COL_WORKLOAD), workload) != 0) continue;
        int k = 0;
        while (k < seen.n && strcmp(seen.v[k], pb_plot_tv(t, r, col)) != 0) k++;
        if (k == seen.n && !pb_plot_strv_push(&seen, strdup(pb_plot_tv(t, r, col)))) break;
        if (++count[k] > (best < 0 ? 0 : count[best])) best = k;
    }
    if (best >= 0) snprintf(out, len, "%s", seen.v[best]);
    free(count);
    pb_plot_strv_free(&seen);
}

static void others_notice(const table *t, const char *col, const char *chosen, const char *workload,
                          const char *flag)
{
    strv others = {0};
    for (int r = 0; r < t->nrows; r++) {
        if (workload && strcmp(pb_plot_fv(t, r, "workload"), workload) != 0) continue;
        if (strcmp(pb_plot_fv(t, r, col), chosen) != 0) pb_plot_add_distinct(&others, pb_plot_fv(t, r, col));
    }
    if (others.n) {
        pb_strbuf b = {0};
        for (int i = 0; i < others.n; i++) pb_strbuf_printf(&b, "%s%s", i ? ", " : "", others.v[i]);
        char *list = pb_strbuf_take(&b);
        pb_log_info("plot: plotting %s %s; the CSV also has %s (pick with %s)", col, chosen, list ? list : "?", flag);
        free(list);
    }
    pb_plot_strv_free(&others);
}

static int plot_csv(ctx *x)
{
    pb_csv comm_rows; /* bench comm's CSV: its own plot */
    if (pb_csv_load(x->o.csv, &comm_rows) == PB_OK) {
        bool comm = pb_comm_csv_is(&comm_rows);
        int rc = comm ? pb_plot_comm(x, &comm_rows) : 0;
        /* bench predict's rows: predicted curves, measured points */
        bool pred = !comm && pb_pred_csv_is(&comm_rows);
        if (pred) {
            pb_status ps = pb_pred_plot_csv(&comm_rows, x->o.csv, x->outdir, x->o.plots_dir);
            if (ps != PB_OK) pb_log_error("%s", pb_error_message());
            else x->written += 2; /* throughput and efficiency */
            rc = pb_status_exit_code(ps);
        }
        pb_csv_free(&comm_rows);
        if (comm || pred) return rc;
    }
    pb_error_clear();
    table t;
    pb_status st = pb_plot_table_read(&t, x->o.csv, NULL);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        return pb_status_exit_code(st);
    }
    pb_plot_table_notices(&t);
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
        /* a weak study's rows keep their preset's name (only a changed
         * shape is `custom`): name the workloads there are */
        char have[DIM_MAX];
        most_frequent(&t, PB_COL_WORKLOAD, sel.workload, have, sizeof have);
        if (!have[0]) {
            others_notice(&t, "workload", sel.workload, NULL, "--workload");
            pb_log_error("plot: %s has no ok rows of workload '%s'", t.path, sel.workload);
            rc = 2;
            goto cleanup;
        }
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
    st = pb_plot_group_rows(&t, sel.workload, sel.backend, &sel.set);
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
    qsort(sel.set.c, (size_t)sel.set.n, sizeof *sel.set.c, pb_plot_config_cmp);
    sel.n = sel.set.n;
    sel.all = malloc((size_t)sel.n * sizeof *sel.all);
    idx = malloc((size_t)sel.n * sizeof *idx);
    if (!sel.all || !idx) {
        pb_log_error("plot: out of memory");
        rc = 1;
        goto cleanup;
    }
    for (int i = 0; i < sel.n; i++) sel.all[i] = i;
    pb_plot_make_labels(&sel.set, sel.all, sel.n, sel.per_device_batch);
    st = pb_plot_find_series(&sel);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        rc = 1;
        goto cleanup;
    }
    snprintf(sel.prefix, sizeof sel.prefix, "%s-%s-", sel.workload, sel.backend);
    pb_plot_safe_name(sel.prefix);

    pb_plot_draw_selection(x, &sel, idx);
    rc = x->failed ? 1 : 0;
cleanup:
    free(idx);
    free(sel.all);
    free(sel.first);
    free(sel.maxdev);
    free(sel.ref);
    pb_plot_cfgset_free(&sel.set);
    pb_plot_table_free(&t);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* baseline vs current                                                       */


/* A configuration of BASELINE and one of CURRENT: the same one? */
static bool same_config(const pb_key *pair, const config *b, const config *c)
{
    return pb_key_cmp(pair, &b->t->csv, (size_t)b->t->rows[b->row], &c->t->csv, (size_t)c->t->rows[c->row]) == 0;
}

/* Does config c hold row `row` of its file? */
static bool holds_row(const config *c, size_t row)
{
    for (int k = 0; k < c->nrows; k++)
        if ((size_t)c->t->rows[c->rows[k]] == row) return true;
    return false;
}

/* The verdicts' settings: bench compare's defaults, or --threshold and
 * --alpha as bench compare reads them (checked when parsed). */
static void verdict_opts(const plot_opts *po, pb_compare_opts *o)
{
    pb_compare_defaults(o);
    if (po->threshold) (void)pb_compare_parse_threshold(po->threshold, &o->threshold_pct);
    if (po->alpha) (void)pb_compare_parse_alpha(po->alpha, &o->alpha);
}

/* bench compare's test of each plotted pair, with its threshold and alpha
 * (the picture of its verdict): per pair, NULL where it has none (a
 * metric it does not judge, or input it refuses: the plot still draws the
 * values). Its notices repeat the plot's: not shown. */
static const pb_compare_pair **judge(ctx *x, const pairing *p, pb_compare_result *r)
{
    const pb_compare_pair **test = calloc((size_t)p->m + 1, sizeof *test);
    if (!test || pb_compare_metric_higher_better(p->metric) < 0) return test;
    pb_compare_opts o;
    verdict_opts(&x->o, &o);
    o.metric = p->metric;
    pb_log_set_quiet(1);
    pb_status st = pb_compare_tables(&p->base->csv, p->base->path, &p->cur->csv, p->cur->path, &o, r);
    pb_log_set_quiet(x->o.quiet);
    if (st != PB_OK) {
        pb_log_info("plot: no verdicts drawn: %s", pb_error_message());
        pb_error_clear();
        return test;
    }
    for (int i = 0; i < p->m; i++)
        for (size_t k = 0; k < r->npairs && !test[i]; k++) {
            const pb_compare_pair *q = &r->pairs[k];
            if (q->base.runs && q->cur.runs && holds_row(&p->bs->c[p->bi[i]], q->base.row) &&
                holds_row(&p->cs->c[p->ci[i]], q->cur.row))
                test[i] = q;
        }
    return test;
}

static int plot_compare(ctx *x)
{
    table base, cur;
    const char *metric = x->o.metric ? x->o.metric : "samples_per_s";
    pb_status st = pb_plot_table_read(&base, x->o.base, metric);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        return pb_status_exit_code(st);
    }
    st = pb_plot_table_read(&cur, x->o.cur, metric);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        pb_plot_table_free(&base);
        return pb_status_exit_code(st);
    }
    pb_plot_table_notices(&base);
    pb_plot_table_notices(&cur);
    cfgset bs = {0}, cs = {0};
    int *bi = NULL, *ci = NULL;
    const pb_compare_pair **test = NULL;
    pb_compare_result judged = {0};
    int rc = 0;
    bool in_base = pb_csv_find(&base.csv, metric) >= 0;
    if (!in_base || pb_csv_find(&cur.csv, metric) < 0) {
        pb_log_error("plot: --metric %s: no such column in %s", metric, !in_base ? base.path : cur.path);
        rc = 2;
        goto cleanup;
    }
    st = pb_plot_group_rows(&base, NULL, NULL, &bs);
    if (st == PB_OK) st = pb_plot_group_rows(&cur, NULL, NULL, &cs);
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
    qsort(bs.c, (size_t)bs.n, sizeof *bs.c, pb_plot_config_cmp);
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
        if (isnan(pb_plot_cmean(&bs.c[i], metric)) || isnan(pb_plot_cmean(&cs.c[match], metric))) {
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
    pb_plot_make_labels(&bs, bi, m, true);
    pairing paired = {.base = &base, .cur = &cur, .bs = &bs, .cs = &cs, .bi = bi, .ci = ci, .m = m, .metric = metric};
    test = judge(x, &paired, &judged);
    paired.test = test;
    verdict_opts(&x->o, &paired.opts);
    char prefix[64 + DIM_MAX];
    snprintf(prefix, sizeof prefix, "compare-%s", metric);
    plot_job job = {.x = x, .pair = &paired, .set = &bs, .idx = bi, .n = m, .prefix = prefix};
    pb_plot_build_plot(&pb_plot_compare_plot, &job);
    rc = x->failed ? 1 : 0;
cleanup:
    free(test);
    pb_compare_free(&judged);
    free(bi);
    free(ci);
    pb_plot_cfgset_free(&bs);
    pb_plot_cfgset_free(&cs);
    pb_plot_table_free(&base);
    pb_plot_table_free(&cur);
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
          "  --threshold PCT    --compare: bench compare's threshold for the verdicts' colours [5]\n"
          "  --alpha A          --compare: bench compare's significance level [0.01]\n"
          "  --plots-dir DIR    the gnuplot scripts [plots/ beside bench, else ./plots]\n"
          "  --keep-data        keep the .dat files gnuplot read, in --out [off]\n"
          "  --quiet            no notices on stderr [off]\n"
          "  --help             this text\n"
          "\n"
          "example:\n"
          "  bench plot results/study.csv --out plots/out\n",
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
        } else if (strcmp(a, "--threshold") == 0) {
            dst = &o->threshold;
        } else if (strcmp(a, "--alpha") == 0) {
            dst = &o->alpha;
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
                                  "--compare, --metric, --threshold, --alpha, --plots-dir, --keep-data, --quiet, "
                                  "--help",
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
        double v;
        if (o->threshold && pb_compare_parse_threshold(o->threshold, &v) != PB_OK) return PB_ERR_USAGE;
        if (o->alpha && pb_compare_parse_alpha(o->alpha, &v) != PB_OK) return PB_ERR_USAGE;
    } else {
        if (npos != 1)
            return pb_usage_error("plot: takes one CSV file (%d given); usage: bench plot CSV [--out DIR]", npos);
        if (o->metric || o->threshold || o->alpha)
            return pb_usage_error("plot: --metric, --threshold and --alpha apply to --compare only");
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
    pb_plot_strv_free(&x.tmpfiles);
    if (x.made_tmp) rmdir(x.datadir);
    int sig = pb_gnuplot_signal();
    if (sig) {
        pb_log_error("plot: interrupted by %s; stopped, no image left half-written", sig == SIGINT ? "SIGINT" : "SIGTERM");
        rc = 128 + sig;
    }
    pb_gnuplot_restore_signals(&saved);
    return rc;
}

