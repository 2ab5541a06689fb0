/* bench plot over a bench comm CSV (docs/comm.md): busbw against size, a
 * line per collective, an image per comm, backend and rank count in it.
 * The `size` rows with status ok are drawn; several runs of one size are
 * averaged. */
#define _POSIX_C_SOURCE 200809L
#include "plot_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gnuplot.h"
#include "../harness/log.h"

static const char *const colls[] = {"all_reduce", "reduce_scatter", "all_gather", "broadcast", "sendrecv"};
#define NCOLL (sizeof colls / sizeof colls[0])

typedef struct crow {
    const char *setup; /* "comm backend ranks" */
    int coll;
    double bytes, busbw;
} crow;

static int cmp_crow(const void *a, const void *b)
{
    const crow *x = a, *y = b;
    int c = strcmp(x->setup, y->setup);
    if (c) return c;
    if (x->coll != y->coll) return x->coll < y->coll ? -1 : 1;
    return x->bytes < y->bytes ? -1 : x->bytes > y->bytes;
}

/* One image: rows [i, j) of one setup. */
static void draw_setup(ctx *x, const pb_csv *c, const crow *r, size_t i, size_t j, size_t row0)
{
    char comm[64], backend[64], ranks[32], name[256], dat[PATH_MAX + 300];
    snprintf(comm, sizeof comm, "%s", pb_csv_get(c, row0, (size_t)pb_csv_find(c, "comm")));
    snprintf(backend, sizeof backend, "%s", pb_csv_get(c, row0, (size_t)pb_csv_find(c, "backend")));
    snprintf(ranks, sizeof ranks, "%s", pb_csv_get(c, row0, (size_t)pb_csv_find(c, "ranks")));
    snprintf(name, sizeof name, "comm-%s-%s-x%s-busbw", comm, backend, ranks);
    pb_plot_safe_name(name);
    snprintf(dat, sizeof dat, "%s/%s.dat", x->datadir, name);
    FILE *f = fopen(dat, "w");
    if (!f) {
        pb_log_error("plot: cannot write %s", dat);
        x->failed++;
        return;
    }
    if (!x->o.keep_data) pb_plot_strv_push(&x->tmpfiles, strdup(dat));
    int blocks = 0;
    for (size_t k = i; k < j;) {
        size_t e = k;
        while (e < j && r[e].coll == r[k].coll) e++;
        fprintf(f, "%s\"%s\" \"busbw_gbps\"\n", blocks++ ? "\n\n" : "", colls[r[k].coll]);
        for (size_t a = k; a < e;) { /* runs of one size: their mean */
            size_t b = a;
            double sum = 0;
            while (b < e && r[b].bytes == r[a].bytes) sum += r[b++].busbw;
            fprintf(f, "%.0f %.6g\n", r[a].bytes, sum / (double)(b - a));
            a = b;
        }
        k = e;
    }
    bool ok = !ferror(f);
    ok = (fclose(f) == 0) && ok;
    if (!ok) {
        pb_log_error("plot: cannot write %s", dat);
        x->failed++;
        return;
    }
    char title[256];
    snprintf(title, sizeof title, "bus bandwidth (nccl-tests' busbw), comm %s, backend %s, %s ranks", comm, backend,
             ranks);
    pb_strbuf vars = {0};
    pb_gnuplot_num(&vars, "ncoll", blocks);
    pb_plot_draw(x, "comm_busbw", dat, name, title, pb_csv_get(c, row0, (size_t)pb_csv_find(c, "host")), &vars);
    free(pb_strbuf_take(&vars));
}

int pb_plot_comm(ctx *x, const pb_csv *c)
{
    static const char *const need[] = {"status", "record", "collective", "comm", "backend", "ranks", "bytes",
                                       "busbw_gbps", "host"};
    int col[sizeof need / sizeof need[0]];
    for (size_t k = 0; k < sizeof need / sizeof need[0]; k++)
        if ((col[k] = pb_csv_find(c, need[k])) < 0) {
            pb_log_error("plot: %s:1: the header lacks column %s", x->o.csv, need[k]);
            return 2;
        }
    crow *r = calloc(c->nrows + 1, sizeof *r);
    char *setups = calloc(c->nrows + 1, 96);
    size_t *row0 = calloc(c->nrows + 1, sizeof *row0);
    size_t n = 0, skipped = 0;
    int rc = 1;
    if (!r || !setups || !row0) {
        pb_log_error("plot: out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < c->nrows; i++) {
        if (strcmp(pb_csv_get(c, i, (size_t)col[1]), "size") != 0) continue;
        double bytes, busbw;
        int k = 0;
        while (k < (int)NCOLL && strcmp(colls[k], pb_csv_get(c, i, (size_t)col[2])) != 0) k++;
        if (strcmp(pb_csv_get(c, i, (size_t)col[0]), "ok") != 0 || k == (int)NCOLL ||
            !pb_csv_number(pb_csv_get(c, i, (size_t)col[6]), &bytes) ||
            !pb_csv_number(pb_csv_get(c, i, (size_t)col[7]), &busbw) || !(bytes > 0)) {
            skipped++;
            continue;
        }
        char *s = setups + 96 * n;
        snprintf(s, 96, "%s %s %s", pb_csv_get(c, i, (size_t)col[3]), pb_csv_get(c, i, (size_t)col[4]),
                 pb_csv_get(c, i, (size_t)col[5]));
        r[n] = (crow){s, k, bytes, busbw};
        row0[n++] = i;
    }
    if (skipped) pb_log_info("plot: %s: %zu size rows not drawn (status not ok, or no figure)", x->o.csv, skipped);
    if (!n) {
        pb_log_error("plot: %s has no bench comm size rows with status ok; nothing to plot", x->o.csv);
        goto cleanup;
    }
    /* sorted by setup, collective and size; r keeps the file's order, so
     * a setup's first row (its host for the subtitle) is found there */
    crow *sorted = malloc(n * sizeof *sorted);
    if (!sorted) {
        pb_log_error("plot: out of memory");
        goto cleanup;
    }
    memcpy(sorted, r, n * sizeof *r);
    qsort(sorted, n, sizeof *sorted, cmp_crow);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && strcmp(sorted[j].setup, sorted[i].setup) == 0) j++;
        size_t src = 0;
        while (src < n && strcmp(r[src].setup, sorted[i].setup) != 0) src++;
        draw_setup(x, c, sorted, i, j, row0[src]);
        i = j;
    }
    free(sorted);
    rc = x->failed ? 1 : 0;
cleanup:
    free(r);
    free(setups);
    free(row0);
    return rc;
}
