/* bench predict's targets, CSV and plot (predict_out.h). */
#define _GNU_SOURCE
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness/parse.h"
#include "gnuplot.h"
#include "predict_out.h"

static pb_pred_row *push(pb_pred_rows *rows)
{
    if (rows->n == rows->cap) {
        size_t cap = rows->cap ? rows->cap * 2 : 64;
        pb_pred_row *v = realloc(rows->v, cap * sizeof *v);
        if (!v) return NULL;
        rows->v = v;
        rows->cap = cap;
    }
    pb_pred_row *r = &rows->v[rows->n++];
    memset(r, 0, sizeof *r);
    return r;
}

pb_status pb_pred_targets_grid(const pb_pred_grid *g, const pb_pred_work *w, pb_pred_rows *rows)
{
    long long dev[64];
    int ndev = 0;
    if (g->devices && *g->devices) {
        const char *p = g->devices;
        while (*p) {
            long long d;
            if (!pb_parse_list_int(&p, &d) || d < 1 || d > 4096)
                return pb_usage_error("predict: --devices '%s': give a comma list of counts from 1 to 4096", g->devices);
            if (ndev == 64) return pb_usage_error("predict: --devices: at most 64 counts");
            dev[ndev++] = d;
        }
    } else {
        for (long long d = 1; d <= g->default_max; d *= 2) dev[ndev++] = d;
    }
    double b1 = w->single[0].batch;
    char list[128];
    snprintf(list, sizeof list, "%s", g->strategies);
    for (char *save = NULL, *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        pb_pred_strategy st = pb_pred_strategy_find(s);
        if (st == PB_PRED_NSTRAT)
            return pb_usage_error("predict: --strategies: unknown '%s'; allowed: single, dp, ddp, mp, zero, tp, mesh",
                                  s);
        if (st == PB_PRED_MESH && g->mesh_tp < 1)
            return pb_usage_error("predict: --strategies mesh needs --tp T (each device count's --dp is devices / T)");
        int pp = g->mesh_pp > 0 ? g->mesh_pp : 1, tp_pp = g->mesh_tp * pp;
        for (int i = 0; i < ndev; i++) {
            if ((st == PB_PRED_SINGLE) != (dev[i] == 1)) continue; /* single is the 1-device point */
            if (st == PB_PRED_MESH && (dev[i] % tp_pp != 0 || dev[i] == g->mesh_tp)) continue; /* tp's */
            pb_pred_row *r = push(rows);
            if (!r) return pb_usage_error("predict: out of memory");
            r->t.strategy = st;
            r->t.devices = (int)dev[i];
            /* weak scaling by default: each device the single row's rows;
             * mp and tp split layers or tensors, not rows: their global
             * batch stays */
            double per = g->batch_per_device > 0 ? g->batch_per_device : b1;
            bool whole = st == PB_PRED_MP || st == PB_PRED_TP;
            if (st == PB_PRED_MESH) {
                /* each replica (a tp group) the rows a tp run takes */
                r->t.mesh_tp = g->mesh_tp;
                r->t.mesh_dp = (int)dev[i] / tp_pp;
                r->t.mesh_pp = pp;
            }
            double replicas = st == PB_PRED_MESH ? r->t.mesh_dp : whole ? 1 : (double)dev[i];
            r->t.batch_global = g->batch > 0 ? g->batch : per * replicas;
            r->t.microbatches = g->microbatches > 0 ? g->microbatches : 1;
            r->t.one_f_one_b = (st == PB_PRED_MP || (st == PB_PRED_MESH && pp > 1)) && g->one_f_one_b;
            r->t.zero_stage = st == PB_PRED_ZERO ? (g->zero_stage > 0 ? g->zero_stage : 1) : 0;
            if (st == PB_PRED_MESH) r->t.zero_stage = g->zero_stage; /* ZeRO within dp when given */
            r->t.bucket_mb = g->bucket_mb > 0 ? g->bucket_mb : 25;
            r->t.no_overlap = g->no_overlap;
            r->t.threads = g->threads;
        }
    }
    if (!rows->n) return pb_usage_error("predict: no configuration in --strategies x --devices");
    return PB_OK;
}

static double field_num(const pb_csv *c, size_t row, const char *name, double dflt)
{
    int col = pb_csv_find(c, name);
    double v;
    if (col < 0 || !pb_csv_number(pb_csv_get(c, row, (size_t)col), &v)) return dflt;
    return v;
}

static const char *field(const pb_csv *c, size_t row, const char *name)
{
    int col = pb_csv_find(c, name);
    return col < 0 ? "" : pb_csv_get(c, row, (size_t)col);
}

pb_status pb_pred_targets_against(const pb_csv *c, const char *path, const pb_pred_work *w, pb_pred_step which,
                                  pb_pred_rows *rows)
{
    if (pb_csv_find(c, "strategy") < 0 || pb_csv_find(c, "step_ms_mean") < 0)
        return pb_usage_error("%s: not a results CSV of runs (no strategy or step_ms_mean column)", path);
    for (size_t i = 0; i < c->nrows; i++) {
        pb_pred_strategy st = pb_pred_strategy_find(field(c, i, "strategy"));
        if (st == PB_PRED_NSTRAT || strcmp(field(c, i, "status"), "ok") != 0) continue;
        if (strcmp(field(c, i, "workload"), w->workload) || strcmp(field(c, i, "backend"), w->backend) ||
            strcmp(field(c, i, "precision"), w->precision))
            continue;
        double step = field_num(c, i, which == PB_PRED_STEP_MEDIAN ? "step_ms_p50" : "step_ms_mean", NAN);
        if (!(step > 0)) continue;
        pb_pred_target t;
        memset(&t, 0, sizeof t); /* padding too: targets are compared with memcmp */
        t.strategy = st;
        t.devices = (int)field_num(c, i, "devices", 1);
        t.batch_global = field_num(c, i, "batch_global", w->single[0].batch);
        t.microbatches = (int)field_num(c, i, "microbatches", 1);
        t.no_overlap = field_num(c, i, "no_overlap", 0) == 1;
        t.bucket_mb = field_num(c, i, "bucket_mb", 25);
        t.threads = (int)field_num(c, i, "threads", 0);
        t.one_f_one_b = (st == PB_PRED_MP || st == PB_PRED_MESH) && strcmp(field(c, i, "schedule"), "1f1b") == 0;
        t.zero_stage = st == PB_PRED_ZERO ? (int)field_num(c, i, "zero_stage", 1) : 0;
        if (st == PB_PRED_MESH) t.zero_stage = (int)field_num(c, i, "zero_stage", 0); /* empty: the all-reduce */
        if (st == PB_PRED_MESH) {
            t.mesh_dp = (int)field_num(c, i, "dp", 1);
            t.mesh_tp = (int)field_num(c, i, "tp", 1);
            t.mesh_pp = (int)field_num(c, i, "pp", 1);
            /* ZeRO within the dp group on a gpt, pipeline stages on a gpt
             * or with ZeRO, are not modelled: such runs are left out */
            if ((t.zero_stage > 0 && w->gpt.on) || (t.mesh_pp > 1 && (w->gpt.on || t.zero_stage > 0))) continue;
        }
        /* repeats of one configuration pool: their medians */
        pb_pred_row *r = NULL;
        for (size_t k = 0; k < rows->n && !r; k++)
            if (memcmp(&rows->v[k].t, &t, sizeof t) == 0) r = &rows->v[k];
        if (!r) {
            r = push(rows);
            if (!r) return pb_usage_error("predict: out of memory");
            r->t = t;
            r->has_measured = true;
        }
        if (r->nrep < PB_PRED_MAX_REPS) {
            r->rep_ms[r->nrep] = step;
            r->rep_sps[r->nrep] = field_num(c, i, "samples_per_s", NAN);
            r->rep_mem[r->nrep++] = field_num(c, i, "peak_mem_mb", NAN);
        }
    }
    for (size_t k = 0; k < rows->n; k++) {
        pb_pred_row *r = &rows->v[k];
        r->measured_step_ms = pb_pred_median(r->rep_ms, (size_t)r->nrep);
        r->measured_samples_per_s = pb_pred_median(r->rep_sps, (size_t)r->nrep);
        r->measured_mem_mb = pb_pred_median(r->rep_mem, (size_t)r->nrep);
    }
    if (!rows->n)
        return pb_usage_error("%s: no ok run of %s on %s in %s to predict", path, w->workload, w->backend, w->precision);
    return PB_OK;
}

/* "%.6g", or empty when not finite */
static void put_num(FILE *f, double v, bool comma)
{
    if (isfinite(v)) fprintf(f, "%.6g", v);
    if (comma) fputc(',', f);
}

pb_status pb_pred_write_csv(const char *path, const pb_pred_work *w, const pb_pred_net *net, const pb_pred_rows *rows)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return pb_usage_error("predict: --out %s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return pb_usage_error("predict: --out %s: cannot write there", path);
    const char *sep = "";
#define HEAD(name)                                                                                                     \
    fprintf(f, "%s%s", sep, #name);                                                                                    \
    sep = ",";
    PB_PREDICT_COLUMNS(HEAD)
#undef HEAD
    fputc('\n', f);
    for (size_t i = 0; i < rows->n; i++) {
        const pb_pred_row *row = &rows->v[i];
        if (!row->ok) continue;
        const pb_pred_target *t = &row->t;
        const pb_pred_result *r = &row->r;
        bool ddp = t->strategy == PB_PRED_DDP || t->strategy == PB_PRED_ZERO; /* bucketed, as the runs' rows */
        bool whole = t->strategy == PB_PRED_MP || t->strategy == PB_PRED_TP;
        bool mesh = t->strategy == PB_PRED_MESH;
        fprintf(f, "%s,%s,%s,%s,%d,%d,%d,%d,", pb_pred_strategy_name(t->strategy), w->workload, w->backend,
                w->precision, t->devices, r->nodes, net->gpus_per_node ? net->gpus_per_node : t->devices, r->threads);
        put_num(f, t->batch_global, true);
        put_num(f, whole ? t->batch_global : ceil(t->batch_global / (mesh ? t->mesh_dp : t->devices)), true);
        bool piped = t->strategy == PB_PRED_MP || (mesh && t->mesh_pp > 1);
        if (piped) fprintf(f, "%d", t->microbatches);
        fputc(',', f);
        put_num(f, ddp && !t->no_overlap ? t->bucket_mb : NAN, true);
        if (ddp) fprintf(f, "%d", t->no_overlap ? 1 : 0);
        fputc(',', f);
        double v[] = {r->step_ms,         r->samples_per_s,  r->efficiency, r->compute_ms, r->comm_ms,
                      r->comm_exposed_ms, r->comm_hidden_ms, r->bubble_ms,  r->bubble_frac, r->mem_mb};
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) put_num(f, v[k], true);
        fprintf(f, "%s,%s,", r->collectives, net->name);
        put_num(f, row->has_measured ? row->measured_step_ms : NAN, true);
        put_num(f, row->has_measured ? row->measured_samples_per_s : NAN, true);
        put_num(f, row->has_measured ? row->measured_efficiency : NAN, true);
        put_num(f, row->has_measured ? row->error_pct : NAN, true);
        put_num(f, row->has_measured ? row->measured_mem_mb : NAN, true);
        double k[] = {r->allreduce_bytes, r->reduce_scatter_bytes, r->allgather_bytes, r->p2p_bytes,
                      r->tp_comm_ms,      r->reduce_scatter_ms,    r->allgather_ms};
        for (size_t j = 0; j < sizeof k / sizeof k[0]; j++) put_num(f, k[j], true);
        /* as the runs' rows: mp's and the mesh's pipeline's schedule, zero's stage, else empty */
        if (piped) fprintf(f, "%s", t->one_f_one_b ? "1f1b" : "gpipe");
        fputc(',', f);
        if (t->strategy == PB_PRED_ZERO || (t->strategy == PB_PRED_MESH && t->zero_stage > 0))
            fprintf(f, "%d", t->zero_stage);
        /* as the runs' rows: the mesh's shape, empty otherwise */
        if (mesh) fprintf(f, ",%d,%d,%d", t->mesh_dp, t->mesh_tp, t->mesh_pp > 0 ? t->mesh_pp : 1);
        else fputs(",,,", f);
        fputc('\n', f);
    }
    bool ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return pb_usage_error("predict: --out %s: the write failed", path);
    }
    return PB_OK;
}

bool pb_pred_csv_is(const pb_csv *c)
{
    return pb_csv_find(c, "collectives") >= 0 && pb_csv_find(c, "comm_exposed_ms") >= 0 &&
           pb_csv_find(c, "efficiency") >= 0 && pb_csv_find(c, "error_pct") >= 0;
}

/* plots/ beside the bench binary, else ./plots */
static pb_status find_plots(const char *given, char *dir, size_t len)
{
    char probe[PATH_MAX + 32];
    if (given) {
        snprintf(probe, sizeof probe, "%s/predict.gp", given);
        if (access(probe, R_OK) != 0) return pb_usage_error("predict: --plots-dir %s: no predict.gp there", given);
        snprintf(dir, len, "%s", given);
        return PB_OK;
    }
    if (pb_gnuplot_find_scripts("predict.gp", dir, len)) return PB_OK;
    return pb_usage_error("predict: plots/predict.gp was not found beside the bench binary or in ./plots");
}

typedef struct pt {
    char series[64];
    double dev, sps, msps, eff, meff;
} pt;

static int cmp_pt(const void *a, const void *b)
{
    const pt *x = a, *y = b;
    int c = strcmp(x->series, y->series);
    return c ? c : (x->dev > y->dev) - (x->dev < y->dev);
}

static void gp_num(FILE *f, double v) { fprintf(f, isfinite(v) ? " %.6g" : " NaN", v); }

pb_status pb_pred_plot_csv(const pb_csv *c, const char *csv_path, const char *outdir, const char *plots_dir)
{
    char plotdir[PATH_MAX], exe[PATH_MAX], dat[PATH_MAX + 64], mdat[PATH_MAX + 64], png[PATH_MAX + 8], svg[PATH_MAX + 8];
    pb_status st = find_plots(plots_dir, plotdir, sizeof plotdir);
    if (st != PB_OK) return st;
    if (!pb_gnuplot_find(exe, sizeof exe)) return pb_usage_error("predict: gnuplot is not on PATH; nothing drawn");
    pt *p = calloc(c->nrows + 1, sizeof *p);
    if (!p) return pb_usage_error("predict: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < c->nrows; i++) {
        pt *q = &p[n];
        const char *s = field(c, i, "strategy");
        const char *mb = field(c, i, "microbatches"), *bk = field(c, i, "bucket_mb");
        if (strcmp(field(c, i, "no_overlap"), "1") == 0) snprintf(q->series, sizeof q->series, "%s no-overlap", s);
        else if (*bk && strcmp(bk, "25") != 0) snprintf(q->series, sizeof q->series, "%s bucket %s MiB", s, bk);
        else if (*mb && strcmp(mb, "1") != 0) snprintf(q->series, sizeof q->series, "%s m=%s", s, mb);
        else if (*field(c, i, "tp")) snprintf(q->series, sizeof q->series, "%s tp=%s", s, field(c, i, "tp"));
        else snprintf(q->series, sizeof q->series, "%s", s);
        q->dev = field_num(c, i, "devices", NAN);
        q->sps = field_num(c, i, "samples_per_s", NAN);
        q->msps = field_num(c, i, "measured_samples_per_s", NAN);
        q->eff = field_num(c, i, "efficiency", NAN);
        q->meff = field_num(c, i, "measured_efficiency", NAN);
        if (isfinite(q->dev) && isfinite(q->sps)) n++;
    }
    if (!n) {
        free(p);
        return pb_usage_error("predict: %s has no predicted rows to draw", csv_path);
    }
    qsort(p, n, sizeof *p, cmp_pt);
    snprintf(dat, sizeof dat, "%s/predict.dat", outdir);
    snprintf(mdat, sizeof mdat, "%s/predict-measured.dat", outdir);
    FILE *f = fopen(dat, "w"), *m = fopen(mdat, "w");
    int blocks = 0, measured = 0;
    if (f && m) {
        /* predicted: one block per series, its name then "devices
         * samples_per_s efficiency"; measured: "devices samples_per_s
         * efficiency series" lines, coloured by their series */
        for (size_t i = 0; i < n; i++) {
            if (i == 0 || strcmp(p[i].series, p[i - 1].series) != 0) {
                fprintf(f, "%s\"%s\"\n", blocks ? "\n\n" : "", p[i].series);
                blocks++;
            }
            fprintf(f, "%g", p[i].dev);
            gp_num(f, p[i].sps);
            gp_num(f, p[i].eff);
            fputc('\n', f);
            if (isfinite(p[i].msps)) {
                fprintf(m, "%g", p[i].dev);
                gp_num(m, p[i].msps);
                gp_num(m, p[i].meff);
                fprintf(m, " %d\n", blocks - 1);
                measured++;
            }
        }
    }
    bool ok = f && m && !ferror(f) && !ferror(m);
    if (f) ok = fclose(f) == 0 && ok;
    if (m) ok = fclose(m) == 0 && ok;
    free(p);
    if (!ok) return pb_usage_error("predict: cannot write %s", dat);
    char script[PATH_MAX + 16];
    snprintf(script, sizeof script, "%s/predict.gp", plotdir);
    static const char *const what[2] = {"throughput", "efficiency"};
    for (int k = 0; k < 2; k++) {
        pb_strbuf vars = {0};
        pb_gnuplot_str(&vars, "plotdir", plotdir);
        pb_gnuplot_str(&vars, "datafile", dat);
        pb_gnuplot_str(&vars, "ptitle", k ? "predicted scaling efficiency (lines) and measured (points)"
                                          : "predicted throughput (lines) and measured (points)");
        pb_gnuplot_str(&vars, "psub", csv_path);
        pb_gnuplot_num(&vars, "nblocks", blocks);
        pb_gnuplot_str(&vars, "measfile", mdat);
        pb_gnuplot_num(&vars, "nmeasured", measured);
        pb_gnuplot_num(&vars, "eff", k);
        char name[64];
        snprintf(name, sizeof name, "predict-%s", what[k]);
        pb_gnuplot_result g = pb_gnuplot_draw("predict", exe, script, outdir, name, &vars, png, svg);
        free(pb_strbuf_take(&vars));
        if (g != PB_GNUPLOT_DRAWN) return pb_usage_error("predict: gnuplot could not draw %s", name);
        fprintf(stderr, "bench: predict: wrote %s and %s\n", png, svg);
    }
    return PB_OK;
}

pb_status pb_pred_plot(const char *outdir, const char *plots_dir, const char *csv_path, const pb_pred_work *w,
                       const pb_pred_net *net, const pb_pred_rows *rows)
{
    (void)w;
    (void)net;
    (void)rows;
    pb_csv c;
    memset(&c, 0, sizeof c);
    pb_status st = pb_csv_load(csv_path, &c);
    if (st == PB_OK) st = pb_pred_plot_csv(&c, csv_path, outdir, plots_dir);
    pb_csv_free(&c);
    return st;
}
