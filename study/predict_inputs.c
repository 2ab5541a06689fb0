/* bench predict's inputs: the single-device rows of a run CSV, the fit rows
 * of a bench comm CSV, and a topology file (docs/predict.md). */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "predict.h"

static double num(const pb_csv *c, size_t row, int col)
{
    double v;
    if (col < 0 || !pb_csv_number(pb_csv_get(c, row, (size_t)col), &v)) return NAN;
    return v;
}

static double num0(const pb_csv *c, size_t row, int col)
{
    double v = num(c, row, col);
    return isfinite(v) ? v : 0;
}

static void copy_field(char *dst, size_t len, const pb_csv *c, size_t row, int col)
{
    snprintf(dst, len, "%s", col >= 0 ? pb_csv_get(c, row, (size_t)col) : "");
}

double pb_pred_median(double *v, size_t n)
{
    if (!n) return NAN;
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful of repeats */
        for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAX_SINGLE_ROWS 256

/* The median of field k (a double at offset off of pb_pred_single) over the
 * rows of one (threads, batch). */
static double pooled(const pb_pred_single *all, size_t n, const pb_pred_single *key, size_t off)
{
    double v[MAX_SINGLE_ROWS];
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (all[i].threads == key->threads && all[i].batch == key->batch)
            v[m++] = *(const double *)((const char *)&all[i] + off);
    return pb_pred_median(v, m);
}

pb_status pb_pred_read_single(const pb_csv *c, const char *path, pb_pred_step which, pb_pred_work *w)
{
    memset(w, 0, sizeof *w);
    int c_strat = pb_csv_find(c, "strategy"), c_status = pb_csv_find(c, "status");
    int c_in = pb_csv_find(c, "in"), c_hid = pb_csv_find(c, "hidden"), c_lay = pb_csv_find(c, "layers"),
        c_cls = pb_csv_find(c, "classes");
    if (c_strat < 0 || c_in < 0 || c_hid < 0 || c_lay < 0 || c_cls < 0 || pb_csv_find(c, "fwd_ms") < 0)
        return pb_usage_error("%s: not a results CSV of runs (no strategy, shape or fwd_ms column)", path);
    int c_wl = pb_csv_find(c, "workload"), c_be = pb_csv_find(c, "backend"), c_pr = pb_csv_find(c, "precision"),
        c_opt = pb_csv_find(c, "optimizer");
    int c_thr = pb_csv_find(c, "threads"), c_b = pb_csv_find(c, "batch_global"), c_step = pb_csv_find(c, "step_ms_mean"),
        c_p50 = pb_csv_find(c, "step_ms_p50");
    int c_load = pb_csv_find(c, "load_ms"), c_h2d = pb_csv_find(c, "h2d_ms"), c_fwd = pb_csv_find(c, "fwd_ms"),
        c_bwd = pb_csv_find(c, "bwd_ms"), c_o = pb_csv_find(c, "opt_ms"), c_par = pb_csv_find(c, "params");
    pb_pred_single *all = calloc(MAX_SINGLE_ROWS, sizeof *all);
    if (!all) return pb_usage_error("predict: out of memory");
    size_t n = 0;
    pb_status st = PB_OK;
    for (size_t i = 0; i < c->nrows && n < MAX_SINGLE_ROWS; i++) {
        if (strcmp(pb_csv_get(c, i, (size_t)c_strat), "single") != 0) continue;
        if (c_status >= 0 && strcmp(pb_csv_get(c, i, (size_t)c_status), "ok") != 0) continue;
        double fwd = num(c, i, c_fwd), bwd = num(c, i, c_bwd), batch = num(c, i, c_b);
        if (!isfinite(fwd) || !isfinite(bwd) || !(batch > 0)) continue;
        if (n == 0) {
            copy_field(w->workload, sizeof w->workload, c, i, c_wl);
            copy_field(w->backend, sizeof w->backend, c, i, c_be);
            copy_field(w->precision, sizeof w->precision, c, i, c_pr);
            copy_field(w->optimizer, sizeof w->optimizer, c, i, c_opt);
            w->opt_fused = strcmp(w->backend, "cpu") == 0 && strcmp(w->optimizer, "sgd") == 0 &&
                           num0(c, i, pb_csv_find(c, "momentum")) > 0;
            double in = num(c, i, c_in), hid = num(c, i, c_hid), lay = num(c, i, c_lay), cls = num(c, i, c_cls);
            double dm = num(c, i, pb_csv_find(c, "d_model"));
            if (dm >= 1) {
                /* a GPT: its parts from the workload's own description */
                pb_pred_gpt *g = &w->gpt;
                *g = (pb_pred_gpt){.on = true, .layers = (int)lay, .d_model = (int)dm,
                                   .heads = (int)num0(c, i, pb_csv_find(c, "heads")),
                                   .seq = (int)num0(c, i, pb_csv_find(c, "seq")),
                                   .vocab = (int)num0(c, i, pb_csv_find(c, "vocab"))};
                if (!pb_pred_describe_gpt(w)) {
                    st = pb_usage_error("%s:%zu: the single row's gpt shape (layers, d_model, heads, seq, vocab) "
                                        "is not one this binary can describe",
                                        path, c->line[i]);
                    break;
                }
                w->params = num0(c, i, c_par) > 0 ? num(c, i, c_par) : g->params_split + g->params_whole;
            } else if (!(in >= 1 && hid >= 1 && cls >= 1 && lay >= 1 && lay <= PB_PRED_MAX_LAYERS)) {
                st = pb_usage_error("%s:%zu: the single row's shape (in, hidden, layers, classes) is not usable",
                                    path, c->line[i]);
                break;
            }
            if (!w->gpt.on) { /* a GPT's blocks: pb_pred_describe_gpt */
                w->layers = (int)lay;
                for (int l = 0; l < w->layers; l++) {
                    w->in[l] = l == 0 ? in : hid;
                    w->out[l] = l == w->layers - 1 ? cls : hid;
                    w->params += w->in[l] * w->out[l] + w->out[l];
                }
            }
            double p = num(c, i, c_par);
            if (isfinite(p) && p > 0 && !w->gpt.on) w->params = p;
        } else {
            /* one workload: rows of another shape or backend are not inputs of this one */
            char wl[PB_PRED_NAME], be[16], pr[16];
            copy_field(wl, sizeof wl, c, i, c_wl);
            copy_field(be, sizeof be, c, i, c_be);
            copy_field(pr, sizeof pr, c, i, c_pr);
            if (strcmp(wl, w->workload) || strcmp(be, w->backend) || strcmp(pr, w->precision)) continue;
        }
        pb_pred_single *s = &all[n++];
        double thr = num(c, i, c_thr);
        /* the typical step's phases: the row has each phase's mean only,
         * so all of them are scaled as its step is */
        double mean = num(c, i, c_step), p50 = num(c, i, c_p50);
        double k = which == PB_PRED_STEP_MEDIAN && mean > 0 && p50 > 0 ? p50 / mean : 1.0;
        s->threads = isfinite(thr) && thr >= 1 ? (int)thr : 1;
        s->batch = batch;
        s->load_ms = k * num0(c, i, c_load);
        s->h2d_ms = k * num0(c, i, c_h2d);
        s->fwd_ms = k * fwd;
        s->bwd_ms = k * bwd;
        s->opt_ms = k * num0(c, i, c_o);
        s->step_ms = k * num0(c, i, c_step);
    }
    /* repeats of one (threads, batch): each phase their median, so one run
     * slowed by a neighbour does not move the inputs */
    for (size_t i = 0; st == PB_OK && i < n; i++) {
        if (pb_pred_single_row(w, all[i].threads, all[i].batch) || w->nsingle == PB_PRED_MAX_SINGLE) continue;
        pb_pred_single *s = &w->single[w->nsingle++];
        *s = all[i];
        s->load_ms = pooled(all, n, s, offsetof(pb_pred_single, load_ms));
        s->h2d_ms = pooled(all, n, s, offsetof(pb_pred_single, h2d_ms));
        s->fwd_ms = pooled(all, n, s, offsetof(pb_pred_single, fwd_ms));
        s->bwd_ms = pooled(all, n, s, offsetof(pb_pred_single, bwd_ms));
        s->opt_ms = pooled(all, n, s, offsetof(pb_pred_single, opt_ms));
        s->step_ms = pooled(all, n, s, offsetof(pb_pred_single, step_ms));
    }
    free(all);
    if (st == PB_OK && w->nsingle == 0)
        st = pb_usage_error("%s: no ok row of strategy single with its phases: predict takes its compute from a "
                            "single-device run (bench --strategy single --out FILE)",
                            path);
    return st;
}

pb_status pb_pred_read_shared(const pb_csv *c, const char *path, pb_pred_step which, pb_pred_work *w)
{
    if (strcmp(w->backend, "cpu") != 0)
        return pb_usage_error("%s: --single-shared is the pace of cpu devices taking turns on a core; --single's "
                              "rows are %s runs, whose devices share nothing",
                              path, w->backend);
    pb_pred_work *tmp = calloc(1, sizeof *tmp);
    if (!tmp) return pb_usage_error("predict: out of memory");
    pb_status st = pb_pred_read_single(c, path, which, tmp);
    if (st == PB_OK && (strcmp(tmp->workload, w->workload) || strcmp(tmp->backend, w->backend) ||
                        strcmp(tmp->precision, w->precision)))
        st = pb_usage_error("%s: --single-shared rows are %s on %s in %s; --single's are %s on %s in %s: give "
                            "rows of one workload",
                            path, tmp->workload, tmp->backend, tmp->precision, w->workload, w->backend,
                            w->precision);
    w->nshared = 0;
    for (int i = 0; st == PB_OK && i < tmp->nsingle; i++)
        if (tmp->single[i].threads == 1) w->shared[w->nshared++] = tmp->single[i];
    if (st == PB_OK && w->nshared == 0)
        st = pb_usage_error("%s: no ok row of strategy single at 1 thread: --single-shared takes single runs at "
                            "--threads 1, two to a core",
                            path);
    /* each pace is a ratio to --single's 1-thread row at the same rows */
    for (int i = 0; st == PB_OK && i < w->nshared; i++)
        if (!pb_pred_single_row(w, 1, w->shared[i].batch))
            st = pb_usage_error("%s: its row at %g rows has no --single row at 1 thread and %g rows to compare "
                                "with: measure single at those rows too",
                                path, w->shared[i].batch, w->shared[i].batch);
    free(tmp);
    return st;
}

static pb_pred_fit *fit_slot(pb_pred_net *net, const char *comm, pb_coll coll, int ranks, bool *fresh)
{
    *fresh = false;
    for (int k = 0; k < net->nfits; k++)
        if (net->fits[k].coll == coll && net->fits[k].ranks == ranks && strcmp(net->fits[k].comm, comm) == 0)
            return &net->fits[k];
    if (net->nfits == PB_PRED_MAX_FITS) return NULL;
    pb_pred_fit *f = &net->fits[net->nfits++];
    memset(f, 0, sizeof *f);
    snprintf(f->comm, sizeof f->comm, "%s", comm);
    f->coll = coll;
    f->ranks = ranks;
    *fresh = true;
    return f;
}

#define MAX_SIZES 64

/* Refits a (comm, collective, ranks) from its size rows: each size's median
 * time over the runs in the file, then bench comm's own fit
 * (pb_fit_alpha_beta), so several runs pool instead of the last one's fit
 * standing for all. */
static int refit_from_sizes(const pb_csv *c, pb_pred_net *net, const int *col)
{
    enum { REC, COLL, COMM, RANKS, BYTES, TIME, STATUS };
    int made = 0;
    for (size_t i = 0; i < c->nrows; i++) {
        if (strcmp(pb_csv_get(c, i, (size_t)col[REC]), "size") || strcmp(pb_csv_get(c, i, (size_t)col[STATUS]), "ok"))
            continue;
        pb_coll coll = pb_coll_find(pb_csv_get(c, i, (size_t)col[COLL]));
        double ranks = num(c, i, col[RANKS]);
        const char *comm = pb_csv_get(c, i, (size_t)col[COMM]);
        if (coll == PB_COLL_COUNT || !(ranks >= 1)) continue;
        bool fresh;
        pb_pred_fit *f = fit_slot(net, comm, coll, (int)ranks, &fresh);
        if (!f || !fresh) continue; /* done when its first row was met */
        double bytes[MAX_SIZES], t[MAX_SIZES], v[1024];
        int nb = 0;
        for (size_t j = i; j < c->nrows; j++) {
            if (strcmp(pb_csv_get(c, j, (size_t)col[REC]), "size") ||
                strcmp(pb_csv_get(c, j, (size_t)col[STATUS]), "ok") ||
                pb_coll_find(pb_csv_get(c, j, (size_t)col[COLL])) != coll || num(c, j, col[RANKS]) != ranks ||
                strcmp(pb_csv_get(c, j, (size_t)col[COMM]), comm))
                continue;
            double b = num(c, j, col[BYTES]);
            int k = 0;
            while (k < nb && bytes[k] != b) k++;
            if (k == nb && nb < MAX_SIZES && b > 0) bytes[nb++] = b;
        }
        /* ascending sizes */
        for (int x = 1; x < nb; x++)
            for (int y = x; y > 0 && bytes[y - 1] > bytes[y]; y--) {
                double tmp = bytes[y];
                bytes[y] = bytes[y - 1];
                bytes[y - 1] = tmp;
            }
        for (int k = 0; k < nb; k++) {
            size_t m = 0;
            for (size_t j = i; j < c->nrows && m < 1024; j++)
                if (!strcmp(pb_csv_get(c, j, (size_t)col[REC]), "size") &&
                    !strcmp(pb_csv_get(c, j, (size_t)col[STATUS]), "ok") &&
                    pb_coll_find(pb_csv_get(c, j, (size_t)col[COLL])) == coll && num(c, j, col[RANKS]) == ranks &&
                    !strcmp(pb_csv_get(c, j, (size_t)col[COMM]), comm) && num(c, j, col[BYTES]) == bytes[k] &&
                    num(c, j, col[TIME]) > 0)
                    v[m++] = num(c, j, col[TIME]);
            t[k] = pb_pred_median(v, m);
        }
        f->nseg = pb_fit_alpha_beta(bytes, t, nb, f->seg);
        for (int k = 0; k < f->nseg; k++)
            if (!(f->seg[k].beta_gbps > 0)) f->seg[k].beta_gbps = INFINITY;
        made += f->nseg > 0;
    }
    return made;
}

pb_status pb_pred_read_fits(const pb_csv *c, const char *path, pb_pred_net *net)
{
    int c_rec = pb_csv_find(c, "record"), c_coll = pb_csv_find(c, "collective"), c_comm = pb_csv_find(c, "comm"),
        c_ranks = pb_csv_find(c, "ranks"), c_seg = pb_csv_find(c, "segment"), c_lo = pb_csv_find(c, "bytes_lo"),
        c_hi = pb_csv_find(c, "bytes_hi"), c_a = pb_csv_find(c, "alpha_us"), c_beta = pb_csv_find(c, "beta_gbps"),
        c_rms = pb_csv_find(c, "fit_rel_rms");
    if (c_rec < 0 || c_coll < 0 || c_ranks < 0 || c_seg < 0 || c_a < 0 || c_comm < 0)
        return pb_usage_error("%s: not a bench comm CSV (no record, collective, segment or alpha_us column)", path);
    int size_cols[] = {c_rec, c_coll, c_comm, c_ranks, pb_csv_find(c, "bytes"), pb_csv_find(c, "time_us_p50"),
                       pb_csv_find(c, "status")};
    int added = size_cols[4] >= 0 && size_cols[5] >= 0 && size_cols[6] >= 0 ? refit_from_sizes(c, net, size_cols) : 0;
    int refitted = net->nfits;
    for (size_t i = 0; i < c->nrows; i++) {
        if (strcmp(pb_csv_get(c, i, (size_t)c_rec), "fit") != 0) continue;
        pb_coll coll = pb_coll_find(pb_csv_get(c, i, (size_t)c_coll));
        double ranks = num(c, i, c_ranks), seg = num(c, i, c_seg);
        if (coll == PB_COLL_COUNT || !(ranks >= 1) || !(seg >= 0) || seg >= PB_FIT_MAX_SEGMENTS) continue;
        bool fresh;
        pb_pred_fit *f = fit_slot(net, pb_csv_get(c, i, (size_t)c_comm), coll, (int)ranks, &fresh);
        /* a fit made from the size rows stands; of fit rows alone, a later
         * run's fit replaces an earlier (segment 0 starts one) */
        if (!f || f - net->fits < refitted) continue;
        if ((int)seg == 0) f->nseg = 0;
        if (f->nseg >= PB_FIT_MAX_SEGMENTS) continue;
        pb_fit_segment *s = &f->seg[f->nseg++];
        s->bytes_lo = num0(c, i, c_lo);
        s->bytes_hi = num0(c, i, c_hi);
        s->alpha_us = num0(c, i, c_a);
        double beta = num(c, i, c_beta);
        s->beta_gbps = isfinite(beta) && beta > 0 ? beta : INFINITY; /* empty: time does not grow */
        s->rel_rms = num0(c, i, c_rms);
        added++;
    }
    if (!added)
        return pb_usage_error("%s: no fit or size rows: run bench comm to measure the collectives", path);
    return PB_OK;
}

void pb_pred_net_defaults(pb_pred_net *net)
{
    memset(net, 0, sizeof *net);
    snprintf(net->name, sizeof net->name, "this-host");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    net->cores_per_node = cores > 0 ? (int)cores : 1;
}

/* One `key = value` line's value as a number in [lo, hi]. */
static pb_status topo_num(const char *path, int line, const char *key, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == v || *end || errno || !(x >= lo && x <= hi))
        return pb_usage_error("%s:%d: %s = '%s': give a number from %g to %g", path, line, key, v, lo, hi);
    *out = x;
    return PB_OK;
}

pb_status pb_pred_read_topology(const char *path, pb_pred_net *net)
{
    FILE *f = fopen(path, "r");
    if (!f) return pb_usage_error("--topology %s: %s", path, strerror(errno));
    char buf[512];
    int line = 0;
    pb_status st = PB_OK;
    net->cores_per_node = 0; /* GPUs unless the file says cores */
    while (st == PB_OK && fgets(buf, sizeof buf, f)) {
        line++;
        char *hash = strchr(buf, '#');
        if (hash) *hash = '\0';
        char *eq = strchr(buf, '=');
        char *k = buf;
        while (*k == ' ' || *k == '\t') k++;
        if (!eq) {
            for (char *p = k; *p; p++)
                if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                    st = pb_usage_error("%s:%d: expected key = value", path, line);
                    break;
                }
            continue;
        }
        *eq = '\0';
        char *v = eq + 1;
        for (char *e = eq - 1; e >= k && (*e == ' ' || *e == '\t'); e--) *e = '\0';
        while (*v == ' ' || *v == '\t') v++;
        v[strcspn(v, "\r\n")] = '\0';
        for (char *e = v + strlen(v) - 1; e >= v && (*e == ' ' || *e == '\t'); e--) *e = '\0';
        double x = 0;
        if (strcmp(k, "name") == 0) {
            snprintf(net->name, sizeof net->name, "%s", v);
        } else if (strcmp(k, "gpus_per_node") == 0 || strcmp(k, "devices_per_node") == 0) {
            st = topo_num(path, line, k, v, 1, 4096, &x);
            net->gpus_per_node = (int)x;
        } else if (strcmp(k, "cores_per_node") == 0) {
            st = topo_num(path, line, k, v, 0, 1 << 20, &x);
            net->cores_per_node = (int)x;
        } else if (strcmp(k, "intra_alpha_us") == 0) {
            st = topo_num(path, line, k, v, 0, 1e6, &net->intra_alpha_us);
        } else if (strcmp(k, "intra_busbw_gbps") == 0) {
            st = topo_num(path, line, k, v, 1e-6, 1e6, &net->intra_gbps);
        } else if (strcmp(k, "inter_alpha_us") == 0) {
            st = topo_num(path, line, k, v, 0, 1e6, &net->inter_alpha_us);
        } else if (strcmp(k, "inter_busbw_gbps") == 0) {
            st = topo_num(path, line, k, v, 1e-6, 1e6, &net->inter_gbps);
        } else if (strcmp(k, "p2p_gbps") == 0) {
            st = topo_num(path, line, k, v, 1e-6, 1e6, &net->p2p_gbps);
        } else {
            st = pb_usage_error("%s:%d: unknown key '%s'; allowed: name, gpus_per_node, cores_per_node, "
                                "intra_alpha_us, intra_busbw_gbps, inter_alpha_us, inter_busbw_gbps, p2p_gbps",
                                path, line, k);
        }
    }
    fclose(f);
    if (st == PB_OK && net->intra_gbps <= 0)
        st = pb_usage_error("%s: intra_busbw_gbps is required (the node's per-device all-reduce bus bandwidth)", path);
    if (st == PB_OK && net->inter_gbps <= 0) net->inter_gbps = net->intra_gbps;
    return st;
}
