/* bench compare's printing (text, Markdown, CSV, JSON) and command line, over the
 * pairing and verdicts of study/compare.c. */
#define _POSIX_C_SOURCE 200809L
#include "compare_cli.h"
#include "predict.h"
#include "compare_comm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "../harness/log.h"
#include "../harness/parse.h"

/* ------------------------------------------------------------------------ */
/* output                                                                    */

enum { C_CONFIG, C_RUNS, C_BASE, C_CUR, C_CHANGE, C_P, C_MDE, C_VERDICT, N_CELLS };
#define CELL 512
static const char *const cell_head[N_CELLS] = {"config", "runs", "baseline", "current", "change", "p", "mde", "verdict"};

/* "single cpu mlp-s fp32 devices=2": the label columns, then the other
 * configuration columns that differ between configurations. */
static void label(const pb_compare_result *r, const pb_compare_pair *p, char *buf, size_t len)
{
    size_t n = 0;
    char ex[64];
    buf[0] = '\0';
    for (size_t k = 0; k < r->nkey && n < len; k++) {
        bool always = pb_compare_labelled(r->key_name[k]);
        if (!always && !r->key_varies[k]) continue;
        const char *v = pb_csv_excerpt(pb_compare_key_value(r, p, k), ex, sizeof ex);
        if (always) n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? " " : "", *v ? v : "-");
        else n += (size_t)snprintf(buf + n, len - n, "%s%s=%s", n ? " " : "", r->key_name[k], v);
    }
}

static void fmt_num(char *buf, size_t len, double v, const char *fmt)
{
    if (isnan(v)) snprintf(buf, len, "-");
    else snprintf(buf, len, fmt, v);
}

static void fmt_p(char *buf, size_t len, double p)
{
    if (isnan(p)) snprintf(buf, len, "-");
    else if (p < 1e-4) snprintf(buf, len, "<0.0001");
    else snprintf(buf, len, "%.4f", p);
}

static void make_cells(const pb_compare_result *r, const pb_compare_pair *p, char cell[N_CELLS][CELL])
{
    label(r, p, cell[C_CONFIG], CELL);
    snprintf(cell[C_RUNS], CELL, "%zu/%zu", p->base.runs, p->cur.runs);
    fmt_num(cell[C_BASE], CELL, p->base.mean, "%.6g");
    fmt_num(cell[C_CUR], CELL, p->cur.mean, "%.6g");
    fmt_num(cell[C_CHANGE], CELL, p->change_pct, "%+.1f%%");
    fmt_p(cell[C_P], CELL, p->p);
    fmt_num(cell[C_MDE], CELL, p->mde_pct, "%.1f%%");
    snprintf(cell[C_VERDICT], CELL, "%s", pb_verdict_name(p->verdict));
}

static bool paired(const pb_compare_pair *p) { return p->base.runs && p->cur.runs; }

/* Regressions: slower, or ok before and failed now. */
static size_t regressions(const pb_compare_result *r)
{
    return r->count[PB_VERDICT_REGRESSION] + r->count[PB_VERDICT_FAILED_CURRENT];
}

static void summary(FILE *f, const pb_compare_result *r, const pb_compare_opts *o)
{
    const size_t *n = r->count;
    char failed[64] = "";
    if (n[PB_VERDICT_FAILED_CURRENT])
        snprintf(failed, sizeof failed, " (%zu failed in current)", n[PB_VERDICT_FAILED_CURRENT]);
    fprintf(f,
            "%s (%s is better), threshold %g%%, one-sided Welch t-test at alpha %g: %zu regression%s%s, "
            "%zu improvement%s, %zu same, %zu noise, %zu within drift, %zu no-spread; %zu only in baseline, %zu only "
            "in current\n",
            o->metric, r->higher_better ? "higher" : "lower", o->threshold_pct, o->alpha, regressions(r),
            regressions(r) == 1 ? "" : "s", failed, n[PB_VERDICT_IMPROVEMENT],
            n[PB_VERDICT_IMPROVEMENT] == 1 ? "" : "s", n[PB_VERDICT_SAME], n[PB_VERDICT_NOISE],
            n[PB_VERDICT_DRIFT], n[PB_VERDICT_NO_SPREAD], n[PB_VERDICT_ONLY_BASELINE], n[PB_VERDICT_ONLY_CURRENT]);
}

static void one_sided(FILE *f, const pb_compare_result *r, const pb_compare_opts *o, const char *prefix)
{
    char lab[CELL], ex[64];
    bool any = false;
    int err = pb_csv_find(r->cur, "error");
    /* the configurations that broke first: they are the regressions */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < r->npairs; i++) {
            const pb_compare_pair *p = &r->pairs[i];
            bool broke = p->verdict == PB_VERDICT_FAILED_CURRENT;
            if (paired(p) || broke != (pass == 0)) continue;
            if (!any) fputc('\n', f);
            any = true;
            const pb_compare_side *s = p->base.runs ? &p->base : &p->cur;
            label(r, p, lab, sizeof lab);
            if (broke)
                fprintf(f, "%sfailed in current: %s (baseline %zu ok run%s, %s %.6g; current %zu failed, none ok%s%s%s)\n",
                        prefix, lab, s->runs, s->runs == 1 ? "" : "s", o->metric, s->mean, p->cur_failed,
                        err >= 0 ? ": '" : "",
                        err >= 0 ? pb_csv_excerpt(pb_csv_get(r->cur, p->cur_failed_row, (size_t)err), ex, sizeof ex) : "",
                        err >= 0 ? "'" : "");
            else
                fprintf(f, "%sonly in %s: %s (%zu run%s, %s %.6g)\n", prefix, p->base.runs ? "baseline" : "current",
                        lab, s->runs, s->runs == 1 ? "" : "s", o->metric, s->mean);
        }
}

/* The pair's runs cannot tell a change of the threshold's size from noise:
 * "warning: CONFIG: ...", NULL-free; false when there is nothing to say. */
static bool few_repeats(const pb_compare_result *r, const pb_compare_pair *p, const pb_compare_opts *o, char *buf,
                        size_t len)
{
    if (!paired(p) || !p->few_repeats) return false;
    char lab[CELL], drift[64] = "", advice[160] = "; more runs per side, or more --iters, lower it";
    label(r, p, lab, sizeof lab);
    if (!isnan(p->drift_pct)) snprintf(drift, sizeof drift, " (%.1f%% of it drift inside a side)", p->drift_pct);
    if (p->runs_needed == SIZE_MAX)
        snprintf(advice, sizeof advice, "; the drift alone exceeds the threshold: rerun both sides on a quieter "
                                        "machine, or interleave them");
    else if (p->runs_needed)
        snprintf(advice, sizeof advice, "; about %zu runs per side would bring it to the threshold", p->runs_needed);
    snprintf(buf, len,
             "warning: %s: too few repeats for the threshold: the smallest change these runs tell from noise is "
             "%.1f%%%s at alpha %g and power %g, above %g%%%s",
             lab, p->mde_pct, drift, o->alpha, o->power, o->threshold_pct, advice);
    return true;
}

static void print_text(FILE *f, const pb_compare_result *r, const pb_compare_opts *o, bool md)
{
    for (size_t i = 0; i < r->nenv; i++) fprintf(f, "%senv: %s\n", md ? "- " : "", r->env[i]);
    if (r->nenv) fputc('\n', f);
    static char cell[N_CELLS][CELL];
    size_t width[N_CELLS];
    size_t npaired = 0;
    for (int c = 0; c < N_CELLS; c++) width[c] = strlen(cell_head[c]);
    for (size_t i = 0; i < r->npairs; i++) {
        if (!paired(&r->pairs[i])) continue;
        npaired++;
        make_cells(r, &r->pairs[i], cell);
        for (int c = 0; c < N_CELLS; c++)
            if (strlen(cell[c]) > width[c]) width[c] = strlen(cell[c]);
    }
    if (!npaired) {
        fprintf(f, "%sno configuration is in both files\n", md ? "- " : "");
    } else if (md) {
        fprintf(f, "|");
        for (int c = 0; c < N_CELLS; c++) fprintf(f, " %s |", cell_head[c]);
        fprintf(f, "\n|:---|---:|---:|---:|---:|---:|---:|:---|\n");
        for (size_t i = 0; i < r->npairs; i++) {
            if (!paired(&r->pairs[i])) continue;
            make_cells(r, &r->pairs[i], cell);
            fprintf(f, "|");
            for (int c = 0; c < N_CELLS; c++) {
                fputc(' ', f);
                for (const char *q = cell[c]; *q; q++) {
                    if (*q == '|') fputc('\\', f);
                    fputc(*q, f);
                }
                fprintf(f, " |");
            }
            fputc('\n', f);
        }
    } else {
        for (int c = 0; c < N_CELLS; c++) {
            if (c + 1 == N_CELLS) fprintf(f, "%s\n", cell_head[c]);
            else fprintf(f, c == C_CONFIG ? "%-*s  " : "%*s  ", (int)width[c], cell_head[c]);
        }
        for (size_t i = 0; i < r->npairs; i++) {
            if (!paired(&r->pairs[i])) continue;
            make_cells(r, &r->pairs[i], cell);
            for (int c = 0; c < N_CELLS; c++) {
                if (c + 1 == N_CELLS) fprintf(f, "%s\n", cell[c]); /* no trailing blanks */
                else fprintf(f, c == C_CONFIG ? "%-*s  " : "%*s  ", (int)width[c], cell[c]);
            }
        }
    }
    one_sided(f, r, o, md ? "- " : "");
    char warn[2 * CELL];
    for (size_t i = 0, any = 0; i < r->npairs; i++)
        if (few_repeats(r, &r->pairs[i], o, warn, sizeof warn)) fprintf(f, "%s%s%s\n", any++ ? "" : "\n", md ? "- " : "", warn);
    fputc('\n', f);
    summary(f, r, o);
}

static void csv_field(FILE *f, const char *v, bool last)
{
    if (strpbrk(v, ",\"\r\n")) {
        fputc('"', f);
        for (const char *q = v; *q; q++) {
            if (*q == '"') fputc('"', f);
            fputc(*q, f);
        }
        fputc('"', f);
    } else {
        fputs(v, f);
    }
    fputc(last ? '\n' : ',', f);
}

static void csv_num(FILE *f, double v, bool last)
{
    char buf[64] = "";
    if (!isnan(v)) snprintf(buf, sizeof buf, "%.9g", v);
    csv_field(f, buf, last);
}

static void print_csv(FILE *f, const pb_compare_result *r, const pb_compare_opts *o)
{
    for (size_t i = 0; i < r->nenv; i++) pb_log_info("compare: env: %s", r->env[i]);
    char warn[2 * CELL];
    for (size_t i = 0; i < r->npairs; i++)
        if (few_repeats(r, &r->pairs[i], o, warn, sizeof warn)) pb_log_info("compare: %s", warn);
    static const char *const tail[] = {"metric",    "runs_baseline", "runs_current", "baseline", "current",
                                       "change_pct", "t",            "df",           "p",        "mde_pct",
                                       "drift_pct",  "p_drift",      "verdict"};
    for (size_t k = 0; k < r->nkey; k++) csv_field(f, r->key_name[k], false);
    const size_t ntail = sizeof tail / sizeof tail[0];
    for (size_t i = 0; i < ntail; i++) csv_field(f, tail[i], i + 1 == ntail);
    for (size_t i = 0; i < r->npairs; i++) {
        const pb_compare_pair *p = &r->pairs[i];
        for (size_t k = 0; k < r->nkey; k++) csv_field(f, pb_compare_key_value(r, p, k), false);
        char runs[32];
        csv_field(f, o->metric, false);
        snprintf(runs, sizeof runs, "%zu", p->base.runs);
        csv_field(f, runs, false);
        snprintf(runs, sizeof runs, "%zu", p->cur.runs);
        csv_field(f, runs, false);
        csv_num(f, p->base.runs ? p->base.mean : NAN, false);
        csv_num(f, p->cur.runs ? p->cur.mean : NAN, false);
        csv_num(f, p->change_pct, false);
        csv_num(f, p->t, false);
        csv_num(f, p->df, false);
        csv_num(f, p->p, false);
        csv_num(f, p->mde_pct, false);
        csv_num(f, p->drift_pct, false);
        csv_num(f, p->p_drift, false);
        csv_field(f, pb_verdict_name(p->verdict), true);
    }
}

/* The exit code of a comparison: 1 on a regression (failed in current
 * included) or when no current run was ok, else 0. */
static int verdict_code(const pb_compare_result *r) { return regressions(r) || !r->ok_cur ? 1 : 0; }

/* A JSON string: quotes, backslashes and control bytes escaped; other bytes
 * as they are (the CSV's text is UTF-8). */
static void json_str(FILE *f, const char *v)
{
    fputc('"', f);
    for (const unsigned char *q = (const unsigned char *)v; *q; q++) {
        if (*q == '"' || *q == '\\') fprintf(f, "\\%c", *q);
        else if (*q < 0x20) fprintf(f, "\\u%04x", *q);
        else fputc(*q, f);
    }
    fputc('"', f);
}

/* A number, or null where there is none (NaN: no spread, one side only) */
static void json_num(FILE *f, double v)
{
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f);
}

/* "column: a, b -> c": the column, then each side's values as one string */
static void json_env(FILE *f, const char *line)
{
    const char *colon = strstr(line, ": "), *arrow = colon ? strstr(colon, " -> ") : NULL;
    char buf[PB_COMPARE_ENV_LINE];
    fputs("{\"column\": ", f);
    snprintf(buf, sizeof buf, "%.*s", colon ? (int)(colon - line) : (int)strlen(line), line);
    json_str(f, buf);
    fputs(", \"baseline\": ", f);
    snprintf(buf, sizeof buf, "%.*s", arrow ? (int)(arrow - colon - 2) : 0, colon ? colon + 2 : "");
    json_str(f, buf);
    fputs(", \"current\": ", f);
    json_str(f, arrow ? arrow + 4 : "");
    fputc('}', f);
}

/* One JSON object: the verdict and exit code, the test's settings, the
 * environment differences and one object per configuration
 * (docs/compare.md, "JSON"). */
static void print_json(FILE *f, const pb_compare_result *r, const pb_compare_opts *o)
{
    int code = verdict_code(r);
    /* "failed": no current run was ok, so nothing could pass */
    const char *verdict = regressions(r) ? "regression" : code ? "failed" : "pass";
    fprintf(f, "{\n  \"verdict\": \"%s\",\n  \"exit_code\": %d,\n  \"metric\": ", verdict, code);
    json_str(f, o->metric);
    fprintf(f, ",\n  \"higher_is_better\": %s,\n  \"threshold_pct\": ", r->higher_better ? "true" : "false");
    json_num(f, o->threshold_pct);
    fputs(",\n  \"alpha\": ", f);
    json_num(f, o->alpha);
    fputs(",\n  \"power\": ", f);
    json_num(f, o->power);
    fprintf(f, ",\n  \"current_ok_rows\": %zu,\n  \"counts\": {", r->ok_cur);
    for (int v = 0; v < PB_VERDICT_COUNT; v++)
        fprintf(f, "%s\"%s\": %zu", v ? ", " : "", pb_verdict_name((pb_verdict)v), r->count[v]);
    fputs("},\n  \"environment\": [", f);
    for (size_t i = 0; i < r->nenv; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        json_env(f, r->env[i]);
    }
    fputs(r->nenv ? "\n  ],\n  \"configurations\": [" : "],\n  \"configurations\": [", f);
    char lab[CELL];
    for (size_t i = 0; i < r->npairs; i++) {
        const pb_compare_pair *p = &r->pairs[i];
        fputs(i ? ",\n    {\"config\": {" : "\n    {\"config\": {", f);
        for (size_t k = 0; k < r->nkey; k++) {
            if (k) fputs(", ", f);
            json_str(f, r->key_name[k]);
            fputs(": ", f);
            json_str(f, pb_compare_key_value(r, p, k));
        }
        label(r, p, lab, sizeof lab);
        fputs("},\n     \"label\": ", f);
        json_str(f, lab);
        fprintf(f, ", \"verdict\": \"%s\", \"runs_baseline\": %zu, \"runs_current\": %zu, \"baseline\": ",
                pb_verdict_name(p->verdict), p->base.runs, p->cur.runs);
        json_num(f, p->base.runs ? p->base.mean : NAN);
        const struct {
            const char *name;
            double v;
        } figs[] = {{"current", p->cur.runs ? p->cur.mean : NAN},
                    {"change_pct", p->change_pct},
                    {"t", p->t},
                    {"df", p->df},
                    {"p", p->p},
                    {"mde_pct", p->mde_pct},
                    {"drift_pct", p->drift_pct},
                    {"p_drift", p->p_drift}};
        for (size_t j = 0; j < sizeof figs / sizeof figs[0]; j++) {
            fprintf(f, ", \"%s\": ", figs[j].name);
            json_num(f, figs[j].v);
        }
        fputs(", \"warning\": ", f);
        char warn[2 * CELL];
        if (few_repeats(r, p, o, warn, sizeof warn)) json_str(f, warn);
        else fputs("null", f);
        fprintf(f, ", \"current_failed_runs\": %zu}", p->cur_failed);
    }
    fputs(r->npairs ? "\n  ]\n}\n" : "]\n}\n", f);
}

void pb_compare_print(FILE *f, const pb_compare_result *r, const pb_compare_opts *o)
{
    if (o->format == PB_COMPARE_JSON) print_json(f, r, o);
    else if (o->format == PB_COMPARE_CSV) print_csv(f, r, o);
    else print_text(f, r, o, o->format == PB_COMPARE_MD);
}

/* ------------------------------------------------------------------------ */
/* the command                                                               */

static void print_help(void)
{
    printf("usage: bench compare BASELINE.csv CURRENT.csv [flags]\n"
           "Pairs the ok rows of two results CSVs by configuration and prints, per configuration,\n"
           "baseline, current, change and verdict. A configuration regresses when its metric is worse\n"
           "by more than the threshold and a one-sided Welch t-test on the runs' spread (repeats, or\n"
           "the per-step distribution of a single run) finds the change significant, also once the drift\n"
           "inside a side is taken off it (else: within-drift); mde is the smallest change the runs can\n"
           "tell from noise, with a warning when it exceeds the threshold (docs/compare.md).\n"
           "Exit code: 0 no regression, 1 regression, 2 bad input.\n\n");
    printf("  %-22s %s\n", "--threshold PCT", "smallest change that counts, percent [5]; 0 to 1000");
    printf("  %-22s %s", "--metric NAME", "column compared [samples_per_s]; one of:");
    for (size_t i = 0; i < pb_compare_metric_count(); i++) printf("%s %s", i ? "," : "", pb_compare_metric_name(i));
    printf("\n  %-22s %s\n", "--alpha A", "significance level of the one-sided test [0.01]; 1e-06 to 0.5");
    printf("  %-22s %s\n", "--format FMT", "output [text]; one of: text, md, csv, json");
    printf("  %-22s %s\n", "--help", "this text");
    printf("\nexample:\n  bench compare results/baseline.csv results/runs.csv --threshold 3 --format md\n");
}

static const char *metric_list(void)
{
    static char buf[256];
    size_t n = 0;
    for (size_t i = 0; i < pb_compare_metric_count() && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? ", " : "", pb_compare_metric_name(i));
    return buf;
}

static pb_status parse_double(const char *flag, const char *text, double lo, double hi, const char *unit, double *out)
{
    char tmp[64];
    char ex[64];
    size_t n = strlen(text);
    /* "--threshold 5%" reads as 5 */
    if (unit && n > 0 && n < sizeof tmp && text[n - 1] == '%') {
        memcpy(tmp, text, n - 1);
        tmp[n - 1] = '\0';
    } else {
        snprintf(tmp, sizeof tmp, "%s", n < sizeof tmp ? text : "x");
    }
    double v;
    if (!pb_parse_double(tmp, &v))
        return pb_usage_error("%s: '%s' is not a number; allowed: %g to %g%s", flag,
                              pb_csv_excerpt(text, ex, sizeof ex), lo, hi, unit ? unit : "");
    if (v < lo || v > hi)
        return pb_usage_error("%s: %s is out of range; allowed: %g to %g%s", flag, pb_csv_excerpt(text, ex, sizeof ex),
                              lo, hi, unit ? unit : "");
    *out = v;
    return PB_OK;
}

pb_status pb_compare_parse_threshold(const char *value, double *pct)
{
    return parse_double("--threshold", value, 0, 1000, " (percent)", pct);
}

pb_status pb_compare_parse_alpha(const char *value, double *alpha)
{
    return parse_double("--alpha", value, 1e-6, 0.5, NULL, alpha);
}

static pb_status parse_args(int argc, char **argv, pb_compare_opts *o, const char **files, bool *help)
{
    size_t nfiles = 0;
    char ex[64];
    *help = false;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = true;
            return PB_OK;
        }
        if (arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (nfiles == 2)
                return pb_usage_error("compare: unexpected argument '%s'; it takes two files, BASELINE.csv and "
                                      "CURRENT.csv, then flags",
                                      pb_csv_excerpt(arg, ex, sizeof ex));
            files[nfiles++] = arg;
            continue;
        }
        char name[32];
        const char *value = NULL, *eq = strchr(arg, '=');
        if (eq && (size_t)(eq - arg) < sizeof name) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
            value = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", strlen(arg) < sizeof name ? arg : "?");
        }
        static const char *const known[] = {"--threshold", "--metric", "--alpha", "--format"};
        int which = -1;
        for (int k = 0; k < 4; k++)
            if (strcmp(name, known[k]) == 0) which = k;
        if (which < 0)
            return pb_usage_error(
                "compare: unknown flag '%s'; allowed: --threshold, --metric, --alpha, --format, --help",
                pb_csv_excerpt(arg, ex, sizeof ex));
        if (!value) {
            /* "--threshold --metric x" is a forgotten value; "-5" is a value */
            if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) value = argv[++i];
        }
        if (!value || (which != 0 && which != 2 && !*value)) {
            switch (which) {
            case 0: return pb_usage_error("--threshold needs a value; allowed: 0 to 1000 (percent)");
            case 1: return pb_usage_error("--metric needs a value; allowed: %s", metric_list());
            case 2: return pb_usage_error("--alpha needs a value; allowed: 1e-06 to 0.5");
            default: return pb_usage_error("--format needs a value; allowed: text, md, csv, json");
            }
        }
        pb_status st = PB_OK;
        switch (which) {
        case 0: st = pb_compare_parse_threshold(value, &o->threshold_pct); break;
        case 1: {
            bool found = false;
            for (size_t m = 0; m < pb_compare_metric_count() && !found; m++)
                if (strcmp(value, pb_compare_metric_name(m)) == 0) {
                    o->metric = pb_compare_metric_name(m);
                    found = true;
                }
            if (!found)
                return pb_usage_error("--metric: unknown '%s'; allowed: %s", pb_csv_excerpt(value, ex, sizeof ex),
                                      metric_list());
            break;
        }
        case 2: st = pb_compare_parse_alpha(value, &o->alpha); break;
        default:
            if (strcmp(value, "text") == 0) o->format = PB_COMPARE_TEXT;
            else if (strcmp(value, "md") == 0) o->format = PB_COMPARE_MD;
            else if (strcmp(value, "csv") == 0) o->format = PB_COMPARE_CSV;
            else if (strcmp(value, "json") == 0) o->format = PB_COMPARE_JSON;
            else
                return pb_usage_error("--format: unknown '%s'; allowed: text, md, csv, json",
                                      pb_csv_excerpt(value, ex, sizeof ex));
        }
        if (st != PB_OK) return st;
    }
    if (nfiles < 2)
        return pb_usage_error("compare needs two files: bench compare BASELINE.csv CURRENT.csv [--threshold PCT] "
                              "[--metric NAME] [--alpha A] [--format text|md|csv|json]; got %zu",
                              nfiles);
    return PB_OK;
}

int pb_cmd_compare(int argc, char **argv)
{
    pb_compare_opts o;
    pb_compare_defaults(&o);
    const char *files[2] = {NULL, NULL};
    bool help = false;
    pb_csv base, cur;
    pb_compare_result r;
    memset(&base, 0, sizeof base);
    memset(&cur, 0, sizeof cur);
    memset(&r, 0, sizeof r);
    /* measured runs against bench predict's rows: study/predict_compare.c */
    if (pb_predict_compare_wanted(argc, argv)) return pb_predict_compare(argc, argv);
    pb_status st = parse_args(argc, argv, &o, files, &help);
    if (st == PB_OK && help) {
        print_help();
        return 0;
    }
    if (st == PB_OK) st = pb_csv_load(files[0], &base);
    if (st == PB_OK) st = pb_csv_load(files[1], &cur);
    if (st == PB_OK && (pb_comm_csv_is(&base) || pb_comm_csv_is(&cur))) { /* bench comm's rows */
        int code = pb_compare_comm(&base, files[0], &cur, files[1], &o);
        pb_csv_free(&base);
        pb_csv_free(&cur);
        return code;
    }
    if (st == PB_OK) st = pb_compare_tables(&base, files[0], &cur, files[1], &o, &r);
    int code = pb_status_exit_code(st);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
    } else {
        size_t npaired = r.npairs - r.count[PB_VERDICT_ONLY_BASELINE] - r.count[PB_VERDICT_ONLY_CURRENT] -
                         r.count[PB_VERDICT_FAILED_CURRENT];
        if (!npaired) pb_log_info("compare: no configuration is in both files; nothing was compared");
        pb_compare_print(stdout, &r, &o);
        fflush(stdout);
        /* every current run failed: whatever the pairing, not a pass */
        code = verdict_code(&r);
        if (!r.ok_cur) {
            pb_log_error("compare: %s: no row with status ok and a %s value (%zu not compared); every current run "
                         "failed",
                         files[1], o.metric, r.ignored_cur);
        }
    }
    pb_compare_free(&r);
    pb_csv_free(&base);
    pb_csv_free(&cur);
    return code;
}
