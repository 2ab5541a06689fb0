#define _POSIX_C_SOURCE 200809L
#include "compare_comm.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"
#include "../harness/log.h"

/* what tells two sizes' measurements apart */
static const char *const key_cols[] = {"collective", "bytes", "ranks", "comm", "backend"};
#define NKEY (sizeof key_cols / sizeof key_cols[0])
static const char *const env_cols[] = {"host", "cpu_model", "gpu_name", "driver", "cuda_runtime",
                                       "nccl", "mpi",       "compiler", "git_rev"};
#define METRIC "busbw_gbps"

bool pb_comm_csv_is(const pb_csv *c)
{
    return pb_csv_find(c, "record") >= 0 && pb_csv_find(c, "collective") >= 0 && pb_csv_find(c, "bytes") >= 0 &&
           pb_csv_find(c, METRIC) >= 0;
}

typedef pb_compare_run item;

typedef struct side {
    const pb_csv *c;
    const char *name;
    int key[NKEY], status, record, metric, cv, iters;
    item *items;
    size_t n;
    size_t *failed;
    size_t nfailed, ignored;
} side;

static const side *sorting;

static int key_cmp(const side *a, size_t ra, const side *b, size_t rb)
{
    for (size_t k = 0; k < NKEY; k++) {
        int c = pb_key_value_cmp(pb_csv_get(a->c, ra, (size_t)a->key[k]), pb_csv_get(b->c, rb, (size_t)b->key[k]));
        if (c) return c;
    }
    return 0;
}

static int cmp_item(const void *x, const void *y)
{
    const item *a = x, *b = y;
    int c = key_cmp(sorting, a->row, sorting, b->row);
    return c ? c : (a->row < b->row ? -1 : a->row > b->row);
}

static pb_status load(side *s)
{
    pb_status st = PB_OK;
    const pb_csv *c = s->c;
    char ex[64];
    if (!pb_comm_csv_is(c))
        return pb_user_error(PB_ERR_SCHEMA, "%s:1: not a bench comm CSV (no record, collective, bytes and %s "
                                            "columns); compare two bench comm CSVs or two run CSVs",
                             s->name, METRIC);
    for (size_t k = 0; k < NKEY; k++)
        if ((s->key[k] = pb_csv_find(c, key_cols[k])) < 0)
            return pb_user_error(PB_ERR_SCHEMA, "%s:1: the header lacks column %s", s->name, key_cols[k]);
    s->status = pb_csv_find(c, "status");
    s->record = pb_csv_find(c, "record");
    s->metric = pb_csv_find(c, METRIC);
    s->cv = pb_csv_find(c, "time_us_cv");
    s->iters = pb_csv_find(c, "iters");
    if (s->status < 0) return pb_user_error(PB_ERR_SCHEMA, "%s:1: the header lacks column status", s->name);
    PB_ALLOC(s->items, c->nrows + 1);
    PB_ALLOC(s->failed, c->nrows + 1);
    for (size_t r = 0; r < c->nrows; r++) {
        if (strcmp(pb_csv_get(c, r, (size_t)s->record), "size") != 0) continue; /* fit rows */
        const char *status = pb_csv_get(c, r, (size_t)s->status);
        if (strcmp(status, "ok") != 0) {
            s->ignored++;
            if (strcmp(status, "failed") == 0) s->failed[s->nfailed++] = r;
            continue;
        }
        item *it = &s->items[s->n];
        it->row = r;
        const char *v = pb_csv_get(c, r, (size_t)s->metric);
        if (!pb_csv_number(v, &it->value) || !(it->value > 0)) {
            st = pb_user_error(PB_ERR_USAGE, "%s:%zu: %s '%s' is not a positive number", s->name, c->line[r], METRIC,
                               pb_csv_excerpt(v, ex, sizeof ex));
            goto cleanup;
        }
        it->cv = it->iters = it->time = NAN; /* no time: a drift in file order, carried once */
        if (s->cv >= 0 && !pb_csv_number(pb_csv_get(c, r, (size_t)s->cv), &it->cv)) it->cv = NAN;
        if (s->iters >= 0 && !pb_csv_number(pb_csv_get(c, r, (size_t)s->iters), &it->iters)) it->iters = NAN;
        s->n++;
    }
    sorting = s;
    if (s->n) qsort(s->items, s->n, sizeof *s->items, cmp_item);
cleanup:
    return st;
}

/* One size's runs [i, j), judged as compare judges a run's (one row: by
 * its repeats, busbw's relative error being the time's cv / sqrt(iters);
 * several: by the rows' values). */
static pb_compare_side summarise(const side *s, size_t i, size_t j)
{
    return pb_compare_summarise(s->items + i, j - i);
}

static size_t group_end(const side *s, size_t i)
{
    size_t j = i + 1;
    while (j < s->n && key_cmp(s, s->items[i].row, s, s->items[j].row) == 0) j++;
    return j;
}

static void print_env(const side *b, const side *c)
{
    for (size_t e = 0; e < sizeof env_cols / sizeof env_cols[0]; e++) {
        int ib = pb_csv_find(b->c, env_cols[e]), ic = pb_csv_find(c->c, env_cols[e]);
        if (ib < 0 || ic < 0 || !b->n || !c->n) continue;
        const char *vb = pb_csv_get(b->c, b->items[0].row, (size_t)ib), *vc = pb_csv_get(c->c, c->items[0].row, (size_t)ic);
        char xb[64], xc[64];
        if (strcmp(vb, vc) != 0)
            printf("%s: %s -> %s\n", env_cols[e], *vb ? pb_csv_excerpt(vb, xb, sizeof xb) : "(empty)",
                   *vc ? pb_csv_excerpt(vc, xc, sizeof xc) : "(empty)");
    }
}

static void print_pair(const side *s, size_t row, const pb_compare_pair *p)
{
    char base[32] = "-", cur[32] = "-", change[32] = "-", pv[32] = "-";
    if (p->base.runs) snprintf(base, sizeof base, "%.4g", p->base.mean);
    if (p->cur.runs) snprintf(cur, sizeof cur, "%.4g", p->cur.mean);
    if (isfinite(p->change_pct)) snprintf(change, sizeof change, "%+.1f%%", p->change_pct);
    if (isfinite(p->p)) snprintf(pv, sizeof pv, p->p < 1e-4 ? "%.1e" : "%.4f", p->p);
    printf("%-15s %12s %5s %-6s %-7s %10s %10s %9s %8s  %s\n", pb_csv_get(s->c, row, (size_t)s->key[0]),
           pb_csv_get(s->c, row, (size_t)s->key[1]), pb_csv_get(s->c, row, (size_t)s->key[2]),
           pb_csv_get(s->c, row, (size_t)s->key[3]), pb_csv_get(s->c, row, (size_t)s->key[4]), base, cur, change, pv,
           pb_verdict_name(p->verdict));
}

int pb_compare_comm(const pb_csv *base, const char *base_name, const pb_csv *cur, const char *cur_name,
                    const pb_compare_opts *o)
{
    side sb = {.c = base, .name = base_name}, sc = {.c = cur, .name = cur_name};
    size_t count[PB_VERDICT_COUNT] = {0};
    pb_status st = load(&sb);
    if (st == PB_OK) st = load(&sc);
    if (st == PB_OK && !sb.n)
        st = pb_user_error(PB_ERR_USAGE, "%s: no size row with status ok; nothing to compare against", base_name);
    int code = 2;
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        goto cleanup;
    }
    print_env(&sb, &sc);
    printf("bench comm: %s, threshold %g%%, alpha %g (higher is better)\n", METRIC, o->threshold_pct, o->alpha);
    printf("%-15s %12s %5s %-6s %-7s %10s %10s %9s %8s  %s\n", "collective", "bytes", "ranks", "comm", "backend",
           "baseline", "current", "change", "p", "verdict");
    /* BASELINE's sizes in its order of key, then those only in CURRENT */
    bool *matched = calloc(sc.n + 1, sizeof *matched);
    if (!matched) {
        pb_log_error("compare: out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < sb.n;) {
        size_t j = group_end(&sb, i), k = 0;
        pb_compare_pair p = {.t = NAN, .df = NAN, .p = NAN, .change_pct = NAN};
        p.base = summarise(&sb, i, j);
        while (k < sc.n && key_cmp(&sb, sb.items[i].row, &sc, sc.items[k].row) != 0) k++;
        if (k < sc.n) {
            size_t l = group_end(&sc, k);
            for (size_t m = k; m < l; m++) matched[m] = true;
            p.cur = summarise(&sc, k, l);
            pb_compare_decide(&p, o, true);
        } else {
            p.verdict = PB_VERDICT_ONLY_BASELINE;
            for (size_t f = 0; f < sc.nfailed; f++)
                if (key_cmp(&sb, sb.items[i].row, &sc, sc.failed[f]) == 0) p.verdict = PB_VERDICT_FAILED_CURRENT;
        }
        count[p.verdict]++;
        print_pair(&sb, sb.items[i].row, &p);
        i = j;
    }
    for (size_t k = 0; k < sc.n;) {
        size_t l = group_end(&sc, k);
        if (!matched[k]) {
            pb_compare_pair p = {.t = NAN, .df = NAN, .p = NAN, .change_pct = NAN, .verdict = PB_VERDICT_ONLY_CURRENT};
            p.cur = summarise(&sc, k, l);
            count[p.verdict]++;
            print_pair(&sc, sc.items[k].row, &p);
        }
        k = l;
    }
    free(matched);
    size_t bad = count[PB_VERDICT_REGRESSION] + count[PB_VERDICT_FAILED_CURRENT];
    printf("%zu regression%s, %zu failed in current, %zu improvement%s, %zu same, %zu noise, %zu within drift, "
           "%zu no-spread, %zu only in baseline, %zu only in current\n",
           count[PB_VERDICT_REGRESSION], count[PB_VERDICT_REGRESSION] == 1 ? "" : "s", count[PB_VERDICT_FAILED_CURRENT],
           count[PB_VERDICT_IMPROVEMENT], count[PB_VERDICT_IMPROVEMENT] == 1 ? "" : "s", count[PB_VERDICT_SAME],
           count[PB_VERDICT_NOISE], count[PB_VERDICT_DRIFT], count[PB_VERDICT_NO_SPREAD],
           count[PB_VERDICT_ONLY_BASELINE], count[PB_VERDICT_ONLY_CURRENT]);
    fflush(stdout);
    code = bad ? 1 : 0;
    if (!sc.n) {
        pb_log_error("compare: %s: no size row with status ok (%zu not compared); every current result failed",
                     cur_name, sc.ignored);
        code = 1;
    }
cleanup:
    free(sb.items);
    free(sb.failed);
    free(sc.items);
    free(sc.failed);
    return code;
}
