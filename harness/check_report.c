/* bench check's verdicts, table and rows (check_report.h; docs/check.md). */
#define _POSIX_C_SOURCE 200809L
#include "check_report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "env.h"
#include "launch.h"
#include "log.h"
#include "results.h"

/* Past this many pairs the table lists the outlying ones only (the CSV has
 * every pair). */
#define TABLE_PAIRS_MAX 64

#define CHECK_COLUMNS(X)                \
    X(TIME_UTC, "time_utc")             \
    X(RECORD, "record")                 \
    X(RANK, "rank")                     \
    X(PEER, "peer")                     \
    X(HOST, "host")                     \
    X(PEER_HOST, "peer_host")           \
    X(DEVICE, "device")                 \
    X(SCOPE, "scope")                   \
    X(BYTES, "bytes")                   \
    X(VALUE, "value")                   \
    X(UNIT, "unit")                     \
    X(PEERS_MEDIAN, "peers_median")     \
    X(FRACTION, "fraction")             \
    X(MIN_FRACTION, "min_fraction")     \
    X(OUTLIER, "outlier")               \
    X(COMM, "comm")                     \
    X(BACKEND, "backend")               \
    X(RANKS, "ranks")                   \
    X(NODES, "nodes")                   \
    X(SECONDS, "seconds")               \
    X(CPU_MODEL, "cpu_model")           \
    X(GPU_NAME, "gpu_name")             \
    X(MPI, "mpi")                       \
    X(NCCL, "nccl")                     \
    X(GIT_REV, "git_rev")

#define CHECK_ENUM(id, name) CK_##id,
typedef enum { CHECK_COLUMNS(CHECK_ENUM) CK_N } check_column;
#undef CHECK_ENUM
#define CHECK_NAME(id, name) name,
static const char *const names[CK_N] = {CHECK_COLUMNS(CHECK_NAME)};
#undef CHECK_NAME

typedef struct row {
    char v[CK_N][PB_FIELD_MAX];
} row;

const char *pb_check_csv_header(void)
{
    static char header[1024];
    if (!header[0]) {
        size_t n = 0;
        for (int c = 0; c < CK_N; c++) n += (size_t)snprintf(header + n, sizeof header - n, "%s%s", c ? "," : "", names[c]);
        snprintf(header + n, sizeof header - n, "\n");
    }
    return header;
}

static void set(row *r, check_column c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set(row *r, check_column c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pb_results_field_vset(r->v[c], sizeof r->v[c], fmt, ap);
    va_end(ap);
}

static void num(row *r, check_column c, double v)
{
    if (isfinite(v)) set(r, c, "%.6g", v);
    else r->v[c][0] = '\0';
}

/* --- the verdicts ---------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void pb_check_judge(const double *v, const int *group, int n, double frac, double *peer_median, int *verdict)
{
    double *peers = malloc((size_t)(n > 0 ? n : 1) * sizeof *peers);
    for (int i = 0; i < n; i++) {
        int k = 0;
        for (int j = 0; peers && j < n; j++)
            if (j != i && isfinite(v[j]) && (!group || group[j] == group[i])) peers[k++] = v[j];
        peer_median[i] = NAN;
        verdict[i] = -1;
        if (k == 0 || !isfinite(v[i])) continue;
        qsort(peers, (size_t)k, sizeof *peers, cmp_double);
        peer_median[i] = k % 2 ? peers[k / 2] : 0.5 * (peers[k / 2 - 1] + peers[k / 2]);
        verdict[i] = v[i] < frac * peer_median[i];
    }
    free(peers);
}

/* --- the figures ------------------------------------------------------------------------ */

static const char *host_of(const pb_check_figures *f, int i) { return f->hosts + (size_t)i * PB_CHECK_NAME_CHARS; }
static const char *device_of(const pb_check_figures *f, int i) { return f->devices + (size_t)i * PB_CHECK_NAME_CHARS; }

/* A pair's GB/s each way at size s: its slower side's median exchange. */
static double pair_gbps(const pb_check_figures *f, int i, int j, int s)
{
    double a = f->pair_ms[((size_t)i * f->n + j) * f->n_sizes + s], b = f->pair_ms[((size_t)j * f->n + i) * f->n_sizes + s];
    double ms = a > b ? a : b;
    return ms > 0 ? (double)f->sizes[s] / (ms * 1e-3) / 1e9 : NAN;
}

static const char *scope_of(const pb_check_figures *f, int i, int j)
{
    return strcmp(host_of(f, i), host_of(f, j)) == 0 ? "within-node" : "across-node";
}

static void size_text(size_t b, char *out, size_t len)
{
    if (b >= ((size_t)1 << 20) && b % ((size_t)1 << 20) == 0) snprintf(out, len, "%zu MiB", b >> 20);
    else if (b >= 1024 && b % 1024 == 0) snprintf(out, len, "%zu KiB", b >> 10);
    else snprintf(out, len, "%zu B", b);
}

typedef struct verdicts {
    int pairs, *pi, *pj;               /* pair k: ranks pi[k] < pj[k] */
    double *link, *link_med, *gemm_med, *mem_med;
    int *link_scope, *link_v, *gemm_v, *mem_v;
} verdicts;

static void verdicts_free(verdicts *v)
{
    free(v->pi);
    free(v->pj);
    free(v->link);
    free(v->link_med);
    free(v->gemm_med);
    free(v->mem_med);
    free(v->link_scope);
    free(v->link_v);
    free(v->gemm_v);
    free(v->mem_v);
}

static pb_status judge_all(const pb_check_opts *o, const pb_check_figures *f, verdicts *v)
{
    pb_status st = PB_OK;
    int n = f->n, top = f->n_sizes - 1, k = 0;
    size_t np = (size_t)n * (size_t)(n - 1) / 2 + 1;
    v->pairs = (int)(np - 1);
    PB_ALLOC(v->pi, np);
    PB_ALLOC(v->pj, np);
    PB_ALLOC(v->link, np);
    PB_ALLOC(v->link_med, np);
    PB_ALLOC(v->link_scope, np);
    PB_ALLOC(v->link_v, np);
    PB_ALLOC(v->gemm_med, n);
    PB_ALLOC(v->mem_med, n);
    PB_ALLOC(v->gemm_v, n);
    PB_ALLOC(v->mem_v, n);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++, k++) {
            v->pi[k] = i;
            v->pj[k] = j;
            v->link[k] = pair_gbps(f, i, j, top);
            /* a link is judged against links of its kind: across nodes is
             * the network, within a node NVLink or shared memory */
            v->link_scope[k] = strcmp(scope_of(f, i, j), "within-node") != 0;
        }
    pb_check_judge(f->gemm, NULL, n, o->min_fraction, v->gemm_med, v->gemm_v);
    pb_check_judge(f->mem, NULL, n, o->min_fraction, v->mem_med, v->mem_v);
    pb_check_judge(v->link, v->link_scope, v->pairs, o->min_fraction, v->link_med, v->link_v);
cleanup:
    return st;
}

/* --- stdout, stderr --------------------------------------------------------------------- */

static const char *mark(int verdict) { return verdict == 1 ? " !" : "  "; }

static void print_table(const pb_check_opts *o, const pb_world *w, const pb_check_figures *f, const verdicts *v)
{
    int n = f->n, top = f->n_sizes - 1;
    char topt[32];
    size_text(f->sizes[top], topt, sizeof topt);
    printf("#\n# bench check: %d ranks on %d node%s, comm %s, backend %s, %.1f s\n", n, w->nodes,
           w->nodes == 1 ? "" : "s", o->comm.comm, o->comm.backend, f->seconds);
    printf("# outlier (!): below %.2f x the median of its peers (the other ranks; links: the other links of their "
           "scope)\n#\n", o->min_fraction);
    printf("# %4s  %-16s  %-24s  %12s  %12s  %-24s\n", "rank", "host", "device", "GEMM TFLOP/s", "mem GB/s",
           "slowest link GB/s (peer)");
    for (int i = 0; i < n; i++) {
        double worst = NAN;
        int peer = -1, wv = 0;
        for (int k = 0; k < v->pairs; k++) {
            if (v->pi[k] != i && v->pj[k] != i) continue;
            if (isnan(worst) || v->link[k] < worst) {
                worst = v->link[k];
                peer = v->pi[k] == i ? v->pj[k] : v->pi[k];
            }
            wv |= v->link_v[k] == 1;
        }
        char link[40] = "-";
        if (peer >= 0) snprintf(link, sizeof link, "%.3g (%d)%s", worst, peer, wv ? " !" : "");
        printf("  %4d  %-16.16s  %-24.24s  %10.3g%s  %10.3g%s  %-24s\n", i, host_of(f, i), device_of(f, i), f->gemm[i],
               mark(v->gemm_v[i]), f->mem[i], mark(v->mem_v[i]), link);
    }
    printf("#\n# pairs: send/recv both ways at once, GB/s each way at");
    for (int s = 0; s < f->n_sizes; s++) {
        char t[32];
        size_text(f->sizes[s], t, sizeof t);
        printf("%s %s", s ? "," : "", t);
    }
    printf("; judged at %s\n", topt);
    bool all = v->pairs <= TABLE_PAIRS_MAX;
    if (!all) printf("# (%d pairs: the outlying ones only; the CSV has all)\n", v->pairs);
    for (int k = 0; k < v->pairs; k++) {
        if (!all && v->link_v[k] != 1) continue;
        char name[32];
        snprintf(name, sizeof name, "%d-%d", v->pi[k], v->pj[k]);
        printf("  %9s  %-11s", name, scope_of(f, v->pi[k], v->pj[k]));
        for (int s = 0; s < f->n_sizes; s++) printf("  %9.3g", pair_gbps(f, v->pi[k], v->pj[k], s));
        printf("%s%s\n", mark(v->link_v[k]), v->link_v[k] < 0 ? "  (no peer link of its scope to judge by)" : "");
    }
    printf("#\n# all_reduce busbw GB/s:");
    for (int s = 0; s < f->n_sizes; s++) {
        char t[32];
        size_text(f->sizes[s], t, sizeof t);
        printf("%s %.3g at %s", s ? "," : "", f->allreduce_gbps[s], t);
    }
    printf("\n");
    fflush(stdout);
}

/* Appends "what" to the summary and warns of it. */
static void outlier(pb_check_figures *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outlier(pb_check_figures *f, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    pb_log_warn("check: outlier: %s", text);
    size_t len = strlen(f->summary);
    if (f->outliers < 3)
        snprintf(f->summary + len, sizeof f->summary - len, "%s%s", f->outliers ? "; " : "", text);
    else if (f->outliers == 3)
        snprintf(f->summary + len, sizeof f->summary - len, "; more on stderr and in the table");
    f->outliers++;
}

static void name_outliers(const pb_check_opts *o, pb_check_figures *f, const verdicts *v)
{
    (void)o;
    for (int i = 0; i < f->n; i++) {
        if (v->gemm_v[i] == 1)
            outlier(f, "rank %d on %s (%s): GEMM %.3g TFLOP/s, %.2f x its peers' median %.3g", i, host_of(f, i),
                    device_of(f, i), f->gemm[i], f->gemm[i] / v->gemm_med[i], v->gemm_med[i]);
        if (v->mem_v[i] == 1)
            outlier(f, "rank %d on %s (%s): memory %.3g GB/s, %.2f x its peers' median %.3g", i, host_of(f, i),
                    device_of(f, i), f->mem[i], f->mem[i] / v->mem_med[i], v->mem_med[i]);
    }
    for (int k = 0; k < v->pairs; k++)
        if (v->link_v[k] == 1)
            outlier(f, "link %d-%d (%s to %s, %s): %.3g GB/s, %.2f x its peers' median %.3g", v->pi[k], v->pj[k],
                    host_of(f, v->pi[k]), host_of(f, v->pj[k]), scope_of(f, v->pi[k], v->pj[k]), v->link[k],
                    v->link[k] / v->link_med[k], v->link_med[k]);
}

/* --- the rows ------------------------------------------------------------------------------ */

typedef struct rows {
    char *buf;
    size_t len, cap;
    bool ok;
} rows;

static void add(rows *rs, const row *r)
{
    size_t most = (size_t)CK_N * (2 * PB_FIELD_MAX + 3) + 2;
    if (rs->len + most + 1 > rs->cap) {
        size_t want = (rs->len + most + 1) * 2;
        char *p = realloc(rs->buf, want);
        if (!p) {
            rs->ok = false;
            return;
        }
        rs->buf = p;
        rs->cap = want;
    }
    size_t k = pb_results_format_fields(r->v[0], sizeof r->v[0], CK_N, rs->buf + rs->len, rs->cap - rs->len);
    rs->ok &= k > 0;
    rs->len += k;
}

static void judged(row *r, double value, double med, int verdict, double frac)
{
    num(r, CK_VALUE, value);
    if (verdict < 0) return;
    num(r, CK_PEERS_MEDIAN, med);
    num(r, CK_FRACTION, value / med);
    num(r, CK_MIN_FRACTION, frac);
    set(r, CK_OUTLIER, "%d", verdict);
}

static pb_status write_rows(const pb_check_opts *o, const pb_world *w, const pb_backend *be, const pb_check_figures *f,
                            const verdicts *v)
{
    pb_status st = PB_OK;
    rows rs = {.ok = true};
    pb_record *env = NULL;
    row base, r;
    PB_ALLOC(env, 1);
    pb_env_fill(env, be, &f->info, f->n);
    memset(&base, 0, sizeof base);
    set(&base, CK_TIME_UTC, "%s", env->v[PB_COL_TIME_UTC]);
    set(&base, CK_COMM, "%s", o->comm.comm);
    set(&base, CK_BACKEND, "%s", o->comm.backend);
    set(&base, CK_RANKS, "%d", f->n);
    set(&base, CK_NODES, "%d", w->nodes);
    num(&base, CK_SECONDS, f->seconds);
    set(&base, CK_CPU_MODEL, "%s", env->v[PB_COL_CPU_MODEL]);
    set(&base, CK_GPU_NAME, "%s", env->v[PB_COL_GPU_NAME]);
    set(&base, CK_MPI, "%s", w->version);
    set(&base, CK_NCCL, "%s", env->v[PB_COL_NCCL]);
    set(&base, CK_GIT_REV, "%s", env->v[PB_COL_GIT_REV]);
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < f->n; i++) {
            r = base;
            set(&r, CK_RECORD, m ? "mem" : "gemm");
            set(&r, CK_RANK, "%d", i);
            set(&r, CK_HOST, "%s", host_of(f, i));
            set(&r, CK_DEVICE, "%s", device_of(f, i));
            set(&r, CK_UNIT, m ? "GB/s" : "TFLOP/s");
            if (m) set(&r, CK_BYTES, "%zu", o->mem_bytes);
            judged(&r, m ? f->mem[i] : f->gemm[i], m ? v->mem_med[i] : v->gemm_med[i], m ? v->mem_v[i] : v->gemm_v[i],
                   o->min_fraction);
            add(&rs, &r);
        }
    for (int k = 0; k < v->pairs; k++)
        for (int s = 0; s < f->n_sizes; s++) {
            int i = v->pi[k], j = v->pj[k];
            r = base;
            set(&r, CK_RECORD, "link");
            set(&r, CK_RANK, "%d", i);
            set(&r, CK_PEER, "%d", j);
            set(&r, CK_HOST, "%s", host_of(f, i));
            set(&r, CK_PEER_HOST, "%s", host_of(f, j));
            set(&r, CK_DEVICE, "%s", device_of(f, i));
            set(&r, CK_SCOPE, "%s", scope_of(f, i, j));
            set(&r, CK_BYTES, "%zu", f->sizes[s]);
            set(&r, CK_UNIT, "GB/s");
            /* judged at the largest size only */
            if (s == f->n_sizes - 1) judged(&r, v->link[k], v->link_med[k], v->link_v[k], o->min_fraction);
            else num(&r, CK_VALUE, pair_gbps(f, i, j, s));
            add(&rs, &r);
        }
    for (int s = 0; s < f->n_sizes; s++) {
        r = base;
        set(&r, CK_RECORD, "all_reduce");
        set(&r, CK_BYTES, "%zu", f->sizes[s]);
        set(&r, CK_UNIT, "GB/s");
        num(&r, CK_VALUE, f->allreduce_gbps[s]);
        add(&rs, &r);
    }
    PB_REQUIRE(rs.ok, PB_ERR_NOMEM, "host allocation for the rows failed");
    PB_TRY(pb_launch_may_write());
    PB_TRY(pb_results_append_rows(o->comm.out, pb_check_csv_header(), rs.buf));
    pb_launch_report("row");
    if (!o->comm.quiet) pb_log_info("check: rows appended to %s", o->comm.out);
cleanup:
    free(env);
    free(rs.buf);
    return st;
}

pb_status pb_check_report(const pb_check_opts *o, const pb_world *w, const pb_backend *be, pb_check_figures *f)
{
    pb_status st = PB_OK;
    verdicts v = {0};
    f->outliers = 0;
    f->summary[0] = '\0';
    PB_TRY(judge_all(o, f, &v));
    print_table(o, w, f, &v);
    name_outliers(o, f, &v);
    PB_TRY(write_rows(o, w, be, f, &v));
cleanup:
    verdicts_free(&v);
    return st;
}
