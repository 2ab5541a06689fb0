/* bench sweep: runs every strategy x device-count combination as a child
 * `bench run`, resumes from the ok rows already in --out, and prints a
 * scaling table from --out (docs/sweep.md). */
#define _GNU_SOURCE /* memmem, F_OFD_SETLK */
#include "sweep.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../harness/child.h"
#include "../harness/config.h"
#include "../harness/env.h"
#include "csv_read.h"
#include "key.h"
#include "../harness/log.h"
#include "../harness/parse.h"
#include "../harness/registry.h"
#include "../harness/results.h"
#include "../harness/status.h"

#define MAX_STRATEGIES 16
#define MAX_COUNTS 32
#define MAX_FWD 64
#define MAX_COMBOS (MAX_STRATEGIES * MAX_COUNTS)

typedef struct sweep_opts {
    char strategies[MAX_STRATEGIES][32];
    int n_strategies;
    int counts[MAX_COUNTS];
    int n_counts;
    char workload[32];
    bool strong;
    int repeats;
    char out[4096];
    bool force, oversubscribe, quiet;
    bool resume_any; /* reuse ok rows from any environment */
    int batch; /* 0: the workload's */
    char *fwd[MAX_FWD]; /* run flags given to every child */
    int n_fwd;
} sweep_opts;

typedef struct combo {
    char strategy[32];
    int devices;
    int batch; /* global batch */
    bool oversubscribed;
    char map[4 * PB_MAX_STAGES]; /* --device-map for one-process strategies beyond the GPUs */
    int threads;                 /* --threads the sweep gives it (the cpu rule); 0: none */
    char mesh[3][12];            /* a mesh spec's --dp, --tp, --pp values */
    char microbatches[12];       /* a pipeline's --microbatches (pp > 1) */
    bool reference;              /* single x1 run only as the reference of other device counts */
    pb_config cfg;               /* validated: what the rows must match */
    int have, todo;              /* ok rows already in --out; runs left */
} combo;

/* Run flags the sweep takes itself and hands to each child. */
static const char *const passed_flags[] = {"--backend", "--iters",   "--warmup", "--threads",
                                           "--precision", "--optimizer", "--seed", "--lr"};
/* Flags the sweep sets per combination: refused after "--". */
static const char *const owned_flags[] = {"--strategy", "--gpus", "--workload", "--batch", "--out", "--quiet", "--help"};

static void usage(void)
{
    printf("usage: bench sweep [--strategies LIST] [--gpus LIST] [--workload NAME] [--scaling weak|strong]\n"
           "                   [--repeats R] [--batch N] [--out PATH] [--force] [--resume-any] [--oversubscribe]\n"
           "                   [--quiet]\n"
           "                   [--backend B] [--iters N] [--warmup N] [--threads N] [--precision P]\n"
           "                   [--optimizer O] [--seed N] [--lr X] [-- RUN FLAGS...]\n\n"
           "  --strategies LIST  strategies to run; zero1, zero2, zero3: zero at that --zero-stage;\n"
           "                     dp2xtp2 (dpD, tpT, ppP joined by x): mesh --dp 2 --tp 2 on its 4 devices,\n"
           "                     whatever --gpus lists; pp: mesh --pp N on each count N; a pipeline\n"
           "                     runs 1f1b over 2P microbatches unless the run flags say [single,dp,mp,ddp]\n"
           "  --gpus LIST        device counts [1,2]\n"
           "  --workload NAME    model preset [mlp-xs]\n"
           "  --scaling MODE     weak: the per-device batch is kept (global = per-device x devices);\n"
           "                     strong: the global batch is kept [weak]\n"
           "  --repeats R        ok rows wanted per combination [1]\n"
           "  --batch N          weak: per-device batch; strong: global batch [the workload's batch]\n"
           "  --out PATH         CSV every run appends to [results/study.csv]\n"
           "  --force            run every combination again, whatever --out holds\n"
           "  --resume-any       reuse ok rows of another host, build or environment too\n"
           "  --oversubscribe    run device counts above the devices present (labelled)\n"
           "  --quiet            nothing on stderr but errors\n"
           "  the run flags above and everything after -- go to every run (bench --help)\n\n"
           "example:\n  bench sweep --strategies single,ddp --gpus 1,2 --workload mlp-s --out results/study.csv\n");
}

static bool is_in(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0) return true;
    return false;
}

static pb_status parse_counts(sweep_opts *o, const char *text)
{
    const char *p = text;
    o->n_counts = 0;
    while (*p) {
        long long v;
        if (!pb_parse_list_int(&p, &v) || v < 1 || v > 4096)
            return pb_usage_error("sweep --gpus: '%s' is not a list of device counts; allowed: 1 to 4096 each, "
                                  "comma-separated",
                                  text);
        if (o->n_counts >= MAX_COUNTS) return pb_usage_error("sweep --gpus: more than %d counts", MAX_COUNTS);
        for (int i = 0; i < o->n_counts; i++)
            if (o->counts[i] == v) return pb_usage_error("sweep --gpus: %lld is listed twice", v);
        o->counts[o->n_counts++] = (int)v;
    }
    if (!o->n_counts) return pb_usage_error("sweep --gpus: empty list; allowed: device counts, e.g. 1,2,4");
    return PB_OK;
}

/* "dp2xtp2", "tp2xpp2", "dp2xtp2xpp2": strategy mesh of those sizes (an
 * axis left out is 1; each at most once), so one sweep lists meshes beside
 * the plain strategies; false for any other name */
static bool mesh_spec(const char *name, int size[3])
{
    static const char *const axes[3] = {"dp", "tp", "pp"};
    size[0] = size[1] = size[2] = 1;
    int seen = 0;
    for (const char *p = name; *p;) {
        int a = 0;
        while (a < 3 && strncmp(p, axes[a], 2) != 0) a++;
        if (a == 3 || (seen & (1 << a)) || p[2] < '1' || p[2] > '9') return false;
        char *end;
        long v = strtol(p + 2, &end, 10);
        if (v > 4096) return false;
        size[a] = (int)v;
        seen |= 1 << a;
        p = end;
        if (*p == 'x' && p[1]) p++;
        else if (*p) return false;
    }
    return seen != 0;
}

/* "pp": a pipeline of the combination's devices, mesh --pp N (docs/
 * sweep.md), as dp2xtp2 is a mesh of its own */
static bool pp_spec(const char *name) { return strcmp(name, "pp") == 0; }

/* "zero1", "zero2", "zero3": zero at that --zero-stage, so one sweep lists
 * the stages side by side; *stage "" for any other name; a mesh spec or
 * "pp": "mesh" */
static const char *base_strategy(const char *name, char stage[2])
{
    int size[3];
    stage[0] = '\0';
    if (mesh_spec(name, size) || pp_spec(name)) return "mesh";
    if (strncmp(name, "zero", 4) != 0 || name[4] < '1' || name[4] > '3' || name[5]) return name;
    stage[0] = name[4];
    stage[1] = '\0';
    return "zero";
}

static pb_status parse_strategies(sweep_opts *o, const char *text)
{
    o->n_strategies = 0;
    const char *p = text;
    while (*p) {
        size_t n = strcspn(p, ",");
        char name[32];
        if (n == 0 || n >= sizeof name)
            return pb_usage_error("sweep --strategies: '%s' is not a list of strategies; allowed: %s", text,
                                  pb_strategy_names());
        memcpy(name, p, n);
        name[n] = '\0';
        char stage[2];
        if (!pb_find_strategy(base_strategy(name, stage)))
            return pb_usage_error("sweep --strategies: unknown '%s'; allowed: %s, zero1, zero2, zero3, pp, "
                                  "meshes as dp2xtp2 (dpD, tpT, ppP joined by x)", name,
                                  pb_strategy_names());
        for (int i = 0; i < o->n_strategies; i++)
            if (strcmp(o->strategies[i], name) == 0)
                return pb_usage_error("sweep --strategies: '%s' is listed twice", name);
        if (o->n_strategies >= MAX_STRATEGIES)
            return pb_usage_error("sweep --strategies: more than %d", MAX_STRATEGIES);
        snprintf(o->strategies[o->n_strategies++], 32, "%s", name);
        p += n;
        if (*p == ',') {
            p++;
            if (!*p) return pb_usage_error("sweep --strategies: '%s' ends with a comma", text);
        }
    }
    if (!o->n_strategies) return pb_usage_error("sweep --strategies: empty list; allowed: %s", pb_strategy_names());
    return PB_OK;
}

static pb_status parse_int(const char *flag, const char *text, long lo, long hi, int *out)
{
    long long v;
    if (!pb_parse_int(text, &v) || v < lo || v > hi)
        return pb_usage_error("sweep %s: '%s' is not an integer from %ld to %ld", flag, text, lo, hi);
    *out = (int)v;
    return PB_OK;
}

/* Whether name is in seen[0..*n); adds it when not (a full list adds
 * nothing more: the flags are far fewer than its room). */
static bool seen_before(char seen[64][64], size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(seen[i], name) == 0) return true;
    if (*n < 64) snprintf(seen[(*n)++], 64, "%s", name);
    return false;
}

static pb_status parse_opts(sweep_opts *o, int argc, char **argv, bool *help)
{
    memset(o, 0, sizeof *o);
    pb_status st = parse_strategies(o, "single,dp,mp,ddp");
    if (st == PB_OK) st = parse_counts(o, "1,2");
    if (st != PB_OK) return st;
    snprintf(o->workload, sizeof o->workload, "mlp-xs");
    o->repeats = 1;
    snprintf(o->out, sizeof o->out, "results/study.csv");
    *help = false;
    /* a flag given twice is refused, as bench run refuses it: which value was
     * meant is not ours to guess (one given before and after -- alike) */
    char seen[64][64];
    size_t n_seen = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            for (i++; i < argc; i++) {
                char name[64];
                snprintf(name, sizeof name, "%.*s", (int)strcspn(argv[i], "="), argv[i]);
                if (is_in(name, owned_flags, sizeof owned_flags / sizeof *owned_flags))
                    return pb_usage_error("sweep: %s after -- is set by the sweep itself; use the sweep's own flags "
                                          "(bench sweep --help)",
                                          name);
                if (strncmp(name, "--", 2) == 0 && seen_before(seen, &n_seen, name))
                    return pb_usage_error("sweep: %s is given twice; allowed: once", name);
                if (o->n_fwd >= MAX_FWD) return pb_usage_error("sweep: more than %d run arguments", MAX_FWD);
                o->fwd[o->n_fwd++] = argv[i];
            }
            break;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = true;
            return PB_OK;
        }
        char name[64];
        const char *value = NULL;
        pb_flag_split(arg, name, sizeof name, &value);
        bool inline_value = value != NULL; /* "--flag=value", one argument */
        bool is_bool = strcmp(name, "--force") == 0 || strcmp(name, "--oversubscribe") == 0 ||
                       strcmp(name, "--quiet") == 0 || strcmp(name, "--resume-any") == 0;
        bool known = is_bool || strcmp(name, "--strategies") == 0 || strcmp(name, "--gpus") == 0 ||
                     strcmp(name, "--workload") == 0 || strcmp(name, "--scaling") == 0 ||
                     strcmp(name, "--repeats") == 0 || strcmp(name, "--batch") == 0 || strcmp(name, "--out") == 0 ||
                     is_in(name, passed_flags, sizeof passed_flags / sizeof *passed_flags);
        if (!known) {
            if (strncmp(arg, "--", 2) == 0)
                return pb_usage_error("sweep: unknown flag '%s'; see bench sweep --help (run flags go after --)",
                                      arg);
            return pb_usage_error("sweep: unexpected argument '%s'; see bench sweep --help", arg);
        }
        if (seen_before(seen, &n_seen, name)) return pb_usage_error("sweep: %s is given twice; allowed: once", name);
        if (is_bool) {
            if (value) return pb_usage_error("sweep %s takes no value", name);
            if (strcmp(name, "--force") == 0) o->force = true;
            else if (strcmp(name, "--oversubscribe") == 0) o->oversubscribe = true;
            else if (strcmp(name, "--resume-any") == 0) o->resume_any = true;
            else o->quiet = true;
            continue;
        }
        if (!value) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return pb_usage_error("sweep %s needs a value; see bench sweep --help", name);
            value = argv[++i];
        }
        if (strcmp(name, "--strategies") == 0) st = parse_strategies(o, value);
        else if (strcmp(name, "--gpus") == 0) st = parse_counts(o, value);
        else if (strcmp(name, "--workload") == 0) {
            if (!pb_find_workload(value) || strcmp(value, "custom") == 0 || strlen(value) >= sizeof o->workload)
                return pb_usage_error("sweep --workload: unknown '%s'; allowed: %s", value, pb_workload_names());
            snprintf(o->workload, sizeof o->workload, "%s", value);
        } else if (strcmp(name, "--scaling") == 0) {
            if (strcmp(value, "weak") != 0 && strcmp(value, "strong") != 0)
                return pb_usage_error("sweep --scaling: unknown '%s'; allowed: weak, strong", value);
            o->strong = strcmp(value, "strong") == 0;
        } else if (strcmp(name, "--repeats") == 0) st = parse_int("--repeats", value, 1, 1000, &o->repeats);
        else if (strcmp(name, "--batch") == 0) st = parse_int("--batch", value, 1, 1 << 24, &o->batch);
        else if (strcmp(name, "--out") == 0) {
            if (!*value || strlen(value) >= sizeof o->out)
                return pb_usage_error("sweep --out: empty or too long a path");
            snprintf(o->out, sizeof o->out, "%s", value);
        } else {
            /* a run flag: handed on as "--flag value", checked by the run's parser */
            if (o->n_fwd + 2 > MAX_FWD) return pb_usage_error("sweep: more than %d run arguments", MAX_FWD);
            o->fwd[o->n_fwd++] = argv[i - (inline_value ? 0 : 1)];
            if (!inline_value) o->fwd[o->n_fwd++] = argv[i];
        }
        if (st != PB_OK) return st;
    }
    return PB_OK;
}

/* flag among the run flags (the sweep's own, or after --), as --flag or
 * --flag=value */
static bool flag_given(const sweep_opts *o, const char *flag)
{
    size_t n = strlen(flag);
    for (int i = 0; i < o->n_fwd; i++)
        if (strncmp(o->fwd[i], flag, n) == 0 && (o->fwd[i][n] == '\0' || o->fwd[i][n] == '=')) return true;
    return false;
}

/* The child's arguments after argv[0]: run, the combination, the sweep's
 * run flags. Strings point into c, o and the static buffers of c. */
static int child_args(const sweep_opts *o, combo *c, char *args[], char bufs[3][16])
{
    int n = 0;
    char stage[2];
    const char *strategy = base_strategy(c->strategy, stage);
    snprintf(bufs[0], 16, "%d", c->devices);
    snprintf(bufs[1], 16, "%d", c->batch);
    args[n++] = "run";
    args[n++] = "--strategy";
    args[n++] = (char *)strategy;
    if (stage[0]) { /* "zero2": the digit, in c's own name */
        args[n++] = "--zero-stage";
        args[n++] = c->strategy + 4;
    }
    int size[3] = {1, 1, c->devices};
    if (pp_spec(c->strategy) || mesh_spec(c->strategy, size)) {
        static const char *const flags[3] = {"--dp", "--tp", "--pp"};
        for (int a = 0; a < 3; a++) {
            snprintf(c->mesh[a], sizeof c->mesh[a], "%d", size[a]);
            args[n++] = (char *)flags[a];
            args[n++] = c->mesh[a];
        }
        /* a pipeline as it is meant to run: 1F1B, 2P microbatches (its
         * bubble (P-1)/(3P-1)), unless the run flags choose */
        if (size[2] > 1 && !flag_given(o, "--schedule")) {
            args[n++] = "--schedule";
            args[n++] = "1f1b";
        }
        if (size[2] > 1 && !flag_given(o, "--microbatches")) {
            snprintf(c->microbatches, sizeof c->microbatches, "%d", 2 * size[2]);
            args[n++] = "--microbatches";
            args[n++] = c->microbatches;
        }
    }
    args[n++] = "--gpus";
    args[n++] = bufs[0];
    args[n++] = "--workload";
    args[n++] = (char *)o->workload;
    args[n++] = "--batch";
    args[n++] = bufs[1];
    args[n++] = "--out";
    args[n++] = (char *)o->out;
    args[n++] = "--quiet";
    if (c->threads > 0) {
        snprintf(bufs[2], 16, "%d", c->threads);
        args[n++] = "--threads";
        args[n++] = bufs[2];
    }
    if (c->map[0]) {
        args[n++] = "--device-map";
        args[n++] = c->map;
    }
    for (int i = 0; i < o->n_fwd; i++) args[n++] = o->fwd[i];
    args[n] = NULL;
    return n;
}

/* ---- rows already in --out ---------------------------------------------- */

/* --out as read back: its rows, and where status and samples/s are. */
typedef struct out_rows {
    pb_csv t;
    int status, sps;
} out_rows;

/* The environment a run of this sweep records, as far as it is known before
 * one runs: pb_env_fill, the run's own function, over the backend's facts
 * of its first device read without opening it. What is not known yet (the
 * MPI version; a GPU's facts when they cannot be read) stays empty, and the
 * environment rule compares no empty value (study/key.h). */
static void current_env(const char *backend, pb_record *env)
{
    const pb_backend *be = pb_find_backend(backend);
    pb_device_info info;
    memset(&info, 0, sizeof info);
    if (be && be->info && be->info(NULL, &info) != PB_OK) memset(&info, 0, sizeof info);
    pb_error_clear();
    pb_record_clear(env);
    pb_env_fill(env, be, &info, 0);
}

/* The row a run of cfg in env would write, as a one-row table: the key
 * sweep looks for, through the same code (pb_record_fill_config, the row
 * formatter and the reader) as the rows it is compared with. */
static pb_status wanted_row(const pb_config *cfg, const pb_record *env, pb_csv *want)
{
    static pb_record rec;
    static char text[2 * 65536];
    pb_record_clear(&rec);
    pb_record_fill_config(&rec, cfg);
    for (int c = 0; c < PB_COL_COUNT; c++)
        if (pb_key_uses(PB_KEY_ENV, (pb_column)c)) memcpy(rec.v[c], env->v[c], sizeof rec.v[c]);
    pb_record_set(&rec, PB_COL_STATUS, "ok");
    size_t n = pb_results_header(text, sizeof text);
    size_t m = n < sizeof text ? pb_results_format(&rec, text + n, sizeof text - n) : 0;
    if (!m) return pb_error(PB_ERR_INTERNAL, "sweep: a row of this build does not fit %zu bytes", sizeof text);
    return pb_csv_parse("sweep's key", text, n + m, want);
}

/* The ok rows of a configuration measured in another environment, grouped
 * by their environment (each group: its first row and its count). */
#define MAX_ENVS 8
typedef struct other_envs {
    size_t row[MAX_ENVS];
    int n[MAX_ENVS];
    int groups, rows;
} other_envs;

static void add_other(other_envs *g, const out_rows *o, size_t r)
{
    pb_key k;
    pb_key_init(&k, PB_KEY_ENV, &o->t, NULL);
    g->rows++;
    for (int i = 0; i < g->groups; i++)
        if (pb_key_cmp(&k, &o->t, g->row[i], &o->t, r) == 0) {
            g->n[i]++;
            return;
        }
    if (g->groups == MAX_ENVS) return; /* counted, not itemised */
    g->row[g->groups] = r;
    g->n[g->groups++] = 1;
}

/* Mean samples/s and count of the ok rows of cfg in o: rows whose every
 * configuration column (study/key.h, the sweep's key: with iters, warmup
 * and seed) equals the run's, numbers as numbers, and that were measured in
 * env (the environment rule, study/key.h) unless any_env. The rows of cfg
 * from another environment are added to other (when not NULL). */
static double mean_sps(const out_rows *o, const pb_config *cfg, const pb_record *env, bool any_env, int *runs,
                       other_envs *other)
{
    double sum = 0;
    *runs = 0;
    pb_csv want;
    if (wanted_row(cfg, env, &want) != PB_OK) {
        pb_error_clear();
        return NAN;
    }
    pb_key k, ek;
    pb_key_init(&k, PB_KEY_SWEEP, &o->t, &want);
    pb_key_init(&ek, PB_KEY_ENV, &o->t, &want);
    size_t diff[PB_COL_COUNT];
    for (size_t r = 0; r < o->t.nrows; r++) {
        if (strcmp(pb_csv_get(&o->t, r, (size_t)o->status), "ok") != 0) continue;
        if (pb_key_cmp(&k, &o->t, r, &want, 0) != 0) continue;
        double x;
        if (!pb_csv_number(pb_csv_get(&o->t, r, (size_t)o->sps), &x) || !(x > 0)) continue;
        if (pb_key_env_diff(&ek, &o->t, r, &want, 0, diff)) {
            if (other) add_other(other, o, r);
            if (!any_env) continue;
        }
        sum += x;
        (*runs)++;
    }
    pb_csv_free(&want);
    return *runs ? sum / *runs : NAN;
}

/* Loads --out when it exists and has rows; false (and o empty) otherwise.
 * *bad: it cannot be read, or lacks a column of this build's key. */
static bool load_out(const char *path, out_rows *o, bool *bad)
{
    struct stat sb;
    memset(o, 0, sizeof *o);
    *bad = false;
    if (stat(path, &sb) != 0 || sb.st_size == 0) return false;
    if (pb_csv_load(path, &o->t) != PB_OK) {
        *bad = true;
        return false;
    }
    bool all = (o->status = pb_csv_find(&o->t, "status")) >= 0 && (o->sps = pb_csv_find(&o->t, "samples_per_s")) >= 0;
    for (int c = 0; c < PB_COL_COUNT && all; c++)
        if (pb_key_uses(PB_KEY_SWEEP, (pb_column)c)) all = pb_csv_find(&o->t, pb_column_name((pb_column)c)) >= 0;
    if (!all) {
        pb_csv_free(&o->t);
        *bad = true;
        pb_usage_error("sweep: %s is not a results CSV of this build (bench sweep appends to it)", path);
        return false;
    }
    return true;
}

/* ---- running a child ------------------------------------------------------ */

/* --quiet: stderr gets errors only, no notices. */
static bool quiet_notes;

/* A notice (a skipped combination, a resume, a wait); none with --quiet. */
static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    if (quiet_notes) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "bench: sweep: %s\n", line);
    fflush(stderr);
}

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { got_signal = sig; }

/* The line of a failed child's stderr (its last 8 KiB) that says why: its
 * own first error line ("bench: error: ..." or a rank's "bench[rank 1 on
 * host]: error: ..."), not what follows it (a rank's "ending all 2 ranks",
 * Open MPI's boxed notices); without one, the last line that is not a rule
 * of dashes. */
static void last_line(int fd, char *buf, size_t len)
{
    char text[8192];
    buf[0] = '\0';
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > (off_t)sizeof text - 1 ? size - (off_t)sizeof text + 1 : 0;
    if (size <= 0 || lseek(fd, from, SEEK_SET) < 0) return;
    ssize_t n = read(fd, text, sizeof text - 1);
    if (n <= 0) return;
    text[n] = '\0';
    const char *pick = NULL, *last = NULL;
    size_t pick_len = 0, last_len = 0;
    /* the first line may be cut by the 8 KiB window: start after it then */
    for (char *line = from > 0 ? strchr(text, '\n') : text; line && *line;) {
        if (*line == '\n') line++;
        size_t m = strcspn(line, "\n");
        while (m > 0 && line[m - 1] == '\r') m--;
        if (!pick && strncmp(line, "bench", 5) == 0 && memmem(line, m, "error:", 6)) {
            pick = line;
            pick_len = m;
        }
        if (m && strspn(line, "-") < m) {
            last = line;
            last_len = m;
        }
        line = strchr(line, '\n');
    }
    if (!pick) {
        pick = last;
        pick_len = last_len;
    }
    if (!pick) return;
    if (pick_len >= len) pick_len = len - 1;
    memcpy(buf, pick, pick_len);
    buf[pick_len] = '\0';
}

/* Runs one child to its end; returns its exit code (128 + signal when
 * killed, -1 when it could not start) and, in why, the line of its stderr
 * that says why (last_line). */
static int run_child(const char *self, char *const args[], char *why, size_t why_len)
{
    char tmpl[] = "/tmp/pb_sweep_XXXXXX";
    int fd = mkstemp(tmpl);
    why[0] = '\0';
    if (fd < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        if (fd >= 0) close(fd);
        snprintf(why, why_len, "cannot create a temporary file: %s", strerror(errno));
        return -1;
    }
    unlink(tmpl);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    pid_t pid;
    /* the run dies with the sweep (SIGKILL): killed, the sweep must not
     * leave a run behind that appends a row later */
    pb_error_clear(); /* why gets this child's reason, not an older one */
    pb_status st = null < 0 ? pb_user_error(PB_ERR_IO, "cannot open /dev/null: %s", strerror(errno))
                            : pb_child_spawn(self, args, null, fd, &pid);
    if (null >= 0) close(null);
    if (st != PB_OK) {
        snprintf(why, why_len, "%s", pb_error_message());
        pb_error_clear();
        close(fd);
        return -1;
    }
    int status = 0;
    bool forwarded = false;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            snprintf(why, why_len, "waitpid: %s", strerror(errno));
            close(fd);
            return -1;
        }
        if (got_signal && !forwarded) {
            kill(pid, (int)got_signal);
            forwarded = true;
        }
    }
    last_line(fd, why, why_len);
    close(fd);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fmt_time(double s, char *buf, size_t len)
{
    if (!isfinite(s) || s < 0) {
        snprintf(buf, len, "?");
        return;
    }
    long t = lround(s);
    if (t >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

/* The progress bar (a terminal) or nothing (plain lines are printed as runs
 * end). */
static void draw_bar(bool tty, int done, int total, const char *current, double eta)
{
    if (!tty) return;
    char bar[21], t[32];
    int fill = total ? done * 20 / total : 20;
    for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
    bar[20] = '\0';
    fmt_time(eta, t, sizeof t);
    fprintf(stderr, "\r\033[K[%s] %d/%d  %s  eta %s", bar, done, total, current, done ? t : "?");
    fflush(stderr);
}

static void clear_bar(bool tty)
{
    if (tty) fprintf(stderr, "\r\033[K");
}

/* ---- the command ------------------------------------------------------- */

/* Says which rows of another environment a resume leaves out (or keeps,
 * --resume-any): per group, one line per column that differs. */
static void say_other_envs(const out_rows *o, const other_envs *g, const pb_config *cfg, const pb_record *env,
                           bool kept)
{
    pb_csv want;
    if (!g->rows || wanted_row(cfg, env, &want) != PB_OK) {
        pb_error_clear();
        return;
    }
    pb_key ek;
    pb_key_init(&ek, PB_KEY_ENV, &o->t, &want);
    int host = pb_csv_find(&o->t, "host"), rev = pb_csv_find(&o->t, "git_rev");
    size_t diff[PB_COL_COUNT];
    int itemised = 0;
    for (int i = 0; i < g->groups; i++) {
        size_t r = g->row[i], nd = pb_key_env_diff(&ek, &o->t, r, &want, 0, diff);
        itemised += g->n[i];
        for (size_t d = 0; d < nd; d++)
            note("resume: %d row%s from host %s (git_rev %s) %s: %s %s -> %s", g->n[i], g->n[i] == 1 ? "" : "s",
                 host >= 0 ? pb_csv_get(&o->t, r, (size_t)host) : "?",
                 rev >= 0 ? pb_csv_get(&o->t, r, (size_t)rev) : "?", kept ? "kept (--resume-any)" : "not reused",
                 pb_column_name(ek.col[diff[d]]), pb_csv_get(&o->t, r, (size_t)ek.ia[diff[d]]),
                 pb_csv_get(&want, 0, (size_t)ek.ib[diff[d]]));
    }
    if (g->rows > itemised)
        note("resume: and %d row%s from more environments %s", g->rows - itemised, g->rows - itemised == 1 ? "" : "s",
             kept ? "kept (--resume-any)" : "not reused");
    if (!kept) note("resume: rows of another environment run again here; --resume-any keeps them");
    pb_csv_free(&want);
}

static pb_status validate(const sweep_opts *o, combo *c);

static int host_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* The mean samples/s (NaN when none) of single x1 at the batch scaling
 * keeps and the threads per device of c (the cpu rule's, else the run
 * flags'): c's reference. */
static double reference_sps(const sweep_opts *o, const out_rows *t, const combo *c, int per_device,
                            const pb_record *env, int *runs)
{
    combo ref;
    memset(&ref, 0, sizeof ref);
    snprintf(ref.strategy, sizeof ref.strategy, "single");
    ref.devices = 1;
    ref.batch = per_device;
    ref.threads = c->threads;
    *runs = 0;
    /* from the environment of the rows it divides (this sweep's; with
     * --resume-any from any, as the resume took them) */
    double sps = validate(o, &ref) == PB_OK ? mean_sps(t, &ref.cfg, env, o->resume_any, runs, NULL) : NAN;
    pb_error_clear();
    return *runs ? sps : NAN;
}

static void print_table(const sweep_opts *o, const combo *cs, int n, int per_device, const pb_record *env)
{
    static out_rows t;
    bool bad;
    if (!load_out(o->out, &t, &bad)) {
        pb_error_clear();
        return;
    }
    /* each row's reference and the rows it divides from one environment,
     * this sweep's (--resume-any: from any, as the resume took them) */
    other_envs mixed = {0};
    static double ref_sps[MAX_COMBOS];
    bool any_ref = false, rule = false, cpu = n && strcmp(cs[0].cfg.backend, "cpu") == 0;
    for (int i = 0; i < n; i++) {
        int runs = 0;
        ref_sps[i] = reference_sps(o, &t, &cs[i], per_device, env, &runs);
        any_ref |= runs > 0;
        rule |= cs[i].threads > 0;
    }
    if (any_ref)
        printf("%s scaling of %s on %s: efficiency = samples/s(N) / (N x samples/s of single x1%s, batch %d)\n",
               o->strong ? "strong" : "weak", o->workload, cs[0].cfg.backend,
               rule ? " at the same threads per device" : "", per_device);
    else
        printf("%s scaling of %s on %s: no ok single x1 run of this environment in %s (add single to "
               "--strategies and 1 to --gpus for efficiencies)\n",
               o->strong ? "strong" : "weak", o->workload, n ? cs[0].cfg.backend : "?", o->out);
    /* which threads rule made the rows: the efficiencies mean nothing without it */
    if (rule)
        printf("threads per device: cores/devices, at least 1 (the cpu rule; %d cores): N devices use the cores "
               "single x1 uses, each against single x1 at its own threads (--threads T: T for every run)\n",
               host_cores());
    else if (cpu && n)
        printf("threads per device: %d for every run (--threads): N devices run N x %d threads on %d cores, "
               "against single x1 at %d\n",
               cs[0].cfg.threads, cs[0].cfg.threads, host_cores(), cs[0].cfg.threads);
    printf("%-8s %7s %7s %7s %4s %12s %8s %10s\n", "strategy", "devices", "threads", "batch", "runs", "samples/s",
           "speedup", "efficiency");
    bool any_over = false;
    for (int i = 0; i < n; i++) {
        int runs = 0;
        double sps = mean_sps(&t, &cs[i].cfg, env, o->resume_any, &runs, &mixed);
        char dev[16], s[32] = "-", sp[32] = "-", eff[32] = "-";
        snprintf(dev, sizeof dev, "%d%s", cs[i].devices, cs[i].oversubscribed ? "*" : "");
        any_over |= cs[i].oversubscribed;
        if (runs) snprintf(s, sizeof s, "%.6g", sps);
        if (runs && isfinite(ref_sps[i])) {
            snprintf(sp, sizeof sp, "%.2fx", sps / ref_sps[i]);
            snprintf(eff, sizeof eff, "%.1f%%", 100.0 * sps / (cs[i].devices * ref_sps[i]));
        }
        printf("%-8s %7s %7d %7d %4d %12s %8s %10s\n", cs[i].strategy, dev, cs[i].cfg.threads, cs[i].batch, runs, s,
               sp, eff);
    }
    if (any_over) printf("* oversubscribed: more devices than present (cpu: than cores), they share hardware\n");
    if (o->resume_any && mixed.rows)
        printf("%d row%s from another host, build or environment included (--resume-any)\n", mixed.rows,
               mixed.rows == 1 ? "" : "s");
    /* the runs are quiet: what their warning said, the rows say */
    int core = pb_csv_find(&t.t, "blas_core"), below = 0;
    for (size_t r = 0; core >= 0 && r < t.t.nrows; r++)
        below += strstr(pb_csv_get(&t.t, r, (size_t)core), "(below") != NULL;
    if (below)
        printf("note: %d row%s of %s ran BLAS kernels below this CPU's instruction set (blas_core): their figures are "
               "the BLAS's, not the strategies' (docs/csv-schema.md, \"BLAS kernels\")\n",
               below, below == 1 ? "" : "s", o->out);
    pb_csv_free(&t.t);
}

/* Validates a combination's run in-process, as the child will. */
static pb_status validate(const sweep_opts *o, combo *c)
{
    char *args[MAX_FWD + 32], bufs[3][16];
    int n = child_args(o, c, args, bufs);
    bool help = false;
    pb_config_defaults(&c->cfg);
    pb_error_clear();
    pb_status st = pb_config_parse(&c->cfg, n - 1, args + 1, &help);
    if (st != PB_OK) return st;
    return pb_config_validate(&c->cfg);
}

/* ---- BLAS threads on the cpu backend ---------------------------------------- */

/* --threads among the run flags (the sweep's own, or after --) */
static bool threads_given(const sweep_opts *o) { return flag_given(o, "--threads"); }

/* The cpu rule (docs/sweep.md, "Threads"): without --threads, each device
 * of an N-device run on the cpu backend gets cores/N BLAS threads (at
 * least 1). A run's default is all the cores per device, so 2 devices
 * shared 2 cores with 4 threads while single x1 had both to itself: the
 * table showed 37-49% efficiency for strategies that lose almost nothing.
 * With the rule N devices use the cores single x1 uses, and each row is
 * measured against single x1 at its own threads per device (the same
 * cores per device). Validates c again with its threads. */
static pb_status apply_threads_rule(const sweep_opts *o, combo *c)
{
    if (threads_given(o) || strcmp(c->cfg.backend, "cpu") != 0) return PB_OK;
    int t = host_cores() / c->devices;
    c->threads = t > 0 ? t : 1;
    return validate(o, c);
}

/* ---- one sweep at a time per --out ---------------------------------------- */

/* Two sweeps into one file must not both run the rows it lacks: each holds
 * an open-file-description lock (fcntl F_OFD_SETLK) on one byte of --out far
 * beyond any row, from before it reads the file until it has printed its
 * table. The rows' writers lock the file with flock, which this lock does
 * not touch, so the sweep's own children still append. A second sweep says
 * so and waits, then resumes from the rows the first one wrote. The lock
 * goes with the open file, so a killed sweep leaves none behind. */
#define SWEEP_LOCK_AT ((off_t)1 << 62)

/* Opens --out (creating it empty when missing: the lock needs a file) and
 * takes the lock, waiting for another sweep's. Returns the descriptor; -1 on
 * an error (recorded), -2 when a signal came while waiting. */
static int lock_out(const char *path, bool *created)
{
    for (;;) {
        *created = false;
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
            fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (fd < 0 && errno == EEXIST) continue; /* another sweep made it first */
            *created = fd >= 0;
        }
        if (fd < 0) {
            pb_user_error(PB_ERR_IO, "sweep: cannot open %s: %s", path, strerror(errno));
            return -1;
        }
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = SWEEP_LOCK_AT, .l_len = 1};
        if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
            if (errno == EINVAL) { /* no OFD locks here (an old kernel, some network file systems) */
                note("%s: cannot lock it (%s); do not run a second sweep into it at the same time", path,
                     strerror(errno));
                return fd;
            }
            if (errno != EAGAIN && errno != EACCES) {
                pb_user_error(PB_ERR_IO, "sweep: cannot lock %s: %s", path, strerror(errno));
                close(fd);
                return -1;
            }
            note("another sweep is running into %s: waiting for it to end, then resuming from its rows", path);
            while (fcntl(fd, F_OFD_SETLKW, &fl) != 0) {
                if (errno == EINTR && !got_signal) continue;
                int e = errno;
                close(fd);
                if (got_signal) return -2;
                pb_user_error(PB_ERR_IO, "sweep: cannot lock %s: %s", path, strerror(e));
                return -1;
            }
        }
        /* the sweep waited for may have removed the file it made and wrote
         * no row to (unlock_out): lock the file the path names now */
        struct stat held, now;
        if (fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_dev == now.st_dev && held.st_ino == now.st_ino)
            return fd;
        close(fd);
    }
}

/* Releases the lock; a file this sweep created and no run wrote to is
 * removed, so a sweep that ran nothing leaves nothing behind. */
static void unlock_out(int fd, const char *path, bool created)
{
    struct stat sb;
    if (created && fstat(fd, &sb) == 0 && sb.st_size == 0) unlink(path);
    close(fd);
}

/* The runs --out lacks, then the table; under the sweep's lock on --out. */
static int sweep_runs(const sweep_opts *o, combo *cs, int n, int per_device, char *self)
{
    /* what --out already holds, from this environment */
    static pb_record env;
    current_env(cs[0].cfg.backend, &env);
    int total = 0, have_total = 0;
    {
        static out_rows t;
        bool bad;
        bool loaded = load_out(o->out, &t, &bad);
        if (bad) {
            pb_log_error("%s", pb_error_message());
            return 2;
        }
        if (loaded && t.t.nskipped)
            note("%s: %zu torn line%s skipped (a writer was killed mid-row)", o->out, t.t.nskipped,
                         t.t.nskipped == 1 ? "" : "s");
        other_envs other = {0};
        for (int i = 0; i < n; i++) {
            int runs = 0;
            if (loaded) (void)mean_sps(&t, &cs[i].cfg, &env, o->resume_any, &runs, o->force ? NULL : &other);
            cs[i].have = o->force ? 0 : (runs < o->repeats ? runs : o->repeats);
            cs[i].todo = o->repeats - cs[i].have;
            total += cs[i].todo;
            have_total += cs[i].have;
        }
        if (loaded) say_other_envs(&t, &other, &cs[0].cfg, &env, o->resume_any);
        if (loaded) pb_csv_free(&t.t);
    }
    if (have_total)
        note("%d of %d runs already in %s with status ok: skipped (--force runs them again)",
                     have_total, have_total + total, o->out);
    else if (o->force && !o->quiet)
        pb_log_info("sweep: --force: running every combination again");

    bool tty = isatty(2) && !o->quiet;
    int done = 0, failed = 0;
    double t0 = now_s();
    for (int i = 0; i < n && !got_signal; i++) {
        combo *c = &cs[i];
        for (int r = c->have; r < o->repeats && !got_signal; r++) {
            char label[160], eta_s[32], why[512];
            char ref_text[48] = "";
            if (c->reference)
                snprintf(ref_text, sizeof ref_text, " (reference at %d thread%s)", c->threads,
                         c->threads == 1 ? "" : "s");
            snprintf(label, sizeof label, "%.31s x%d%s%s batch %d, repeat %d/%d", c->strategy, c->devices,
                     c->oversubscribed ? " (oversubscribed)" : "", ref_text, c->batch, r + 1, o->repeats);
            double elapsed = now_s() - t0;
            draw_bar(tty, done, total, label, done ? elapsed / done * (total - done) : NAN);
            char *args[MAX_FWD + 32], bufs[3][16];
            child_args(o, c, args + 1, bufs);
            args[0] = self;
            double start = now_s();
            int rc = run_child(self, args, why, sizeof why);
            double took = now_s() - start;
            done++;
            elapsed = now_s() - t0;
            fmt_time(elapsed / done * (total - done), eta_s, sizeof eta_s);
            clear_bar(tty);
            if (rc != 0) {
                failed++;
                pb_log_error("sweep: [%d/%d] %s failed (exit %d)%s%s", done, total, label, rc, why[0] ? ": " : "",
                             why);
            } else if (!tty && !o->quiet) {
                fprintf(stderr, "bench: sweep: [%d/%d] %s: ok in %.1f s; eta %s\n", done, total, label, took, eta_s);
            }
        }
    }
    if (tty) {
        draw_bar(tty, done, total, "done", 0);
        fprintf(stderr, "\n");
    }
    if (got_signal) {
        pb_log_error("sweep: interrupted after %d of %d runs; the same command resumes it", done, total);
        return 128 + (int)got_signal;
    }
    if (!o->quiet)
        pb_log_info("sweep: %d run%s, %d failed, %.1f s; rows in %s", done, done == 1 ? "" : "s", failed,
                    now_s() - t0, o->out);

    /* each row against single on 1 device at the batch that scaling keeps */
    print_table(o, cs, n, per_device, &env);
    return failed ? 1 : 0;
}

/* The cpu rule's references: when the sweep runs single x1, it runs it too
 * at the threads per device of each other device count (single x1 at 1
 * thread beside 2 devices at 1 thread each), last, so every row has its
 * reference. Returns the new count. */
static int add_references(const sweep_opts *o, combo *cs, int n)
{
    const combo *single = NULL;
    for (int i = 0; i < n && !single; i++)
        if (cs[i].threads > 0 && cs[i].devices == 1 && strcmp(cs[i].strategy, "single") == 0) single = &cs[i];
    if (!single) return n;
    int total = n;
    for (int i = 0; i < n && total < MAX_COMBOS; i++) {
        bool have = cs[i].threads <= 0;
        for (int k = 0; k < total && !have; k++)
            have = cs[k].devices == 1 && strcmp(cs[k].strategy, "single") == 0 && cs[k].threads == cs[i].threads;
        if (have) continue;
        combo *r = &cs[total];
        memset(r, 0, sizeof *r);
        snprintf(r->strategy, sizeof r->strategy, "single");
        r->devices = 1;
        r->batch = single->batch;
        r->threads = cs[i].threads;
        r->reference = true;
        if (validate(o, r) == PB_OK) total++;
        pb_error_clear();
    }
    return total;
}

int pb_cmd_sweep(int argc, char **argv)
{
    static sweep_opts o;
    static combo cs[MAX_COMBOS];
    bool help = false;
    pb_status st = parse_opts(&o, argc, argv, &help);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        return 2;
    }
    if (help) {
        usage();
        return 0;
    }
    quiet_notes = o.quiet;
    if ((st = pb_results_check_target(o.out)) != PB_OK) {
        pb_log_error("%s", pb_error_message());
        return 2;
    }
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        pb_log_error("sweep: cannot find this program through /proc/self/exe: %s", strerror(errno));
        return 1;
    }
    self[len] = '\0';

    /* The run flags themselves are checked once, on a plain single run, so
     * a bad --iters is a sweep usage error and not a skipped combination. */
    {
        combo probe;
        memset(&probe, 0, sizeof probe);
        snprintf(probe.strategy, sizeof probe.strategy, "single");
        probe.devices = 1;
        probe.batch = o.batch ? o.batch : pb_find_workload(o.workload)->shape.batch;
        char *args[MAX_FWD + 32], bufs[3][16];
        int n = child_args(&o, &probe, args, bufs);
        bool h = false;
        pb_config_defaults(&probe.cfg);
        if (pb_config_parse(&probe.cfg, n - 1, args + 1, &h) != PB_OK || h) {
            pb_log_error("%s", h ? "sweep: --help after -- is not a run flag" : pb_error_message());
            return 2;
        }
    }

    /* the combinations, validated; invalid ones are skipped with a notice */
    int per_device = o.batch ? o.batch : pb_find_workload(o.workload)->shape.batch;
    int n = 0, skipped_invalid = 0;
    for (int s = 0; s < o.n_strategies; s++)
        for (int d = 0; d < o.n_counts; d++) {
            combo *c = &cs[n];
            int size[3];
            bool mesh = mesh_spec(o.strategies[s], size);
            if (mesh && d > 0) continue; /* a mesh runs once, on its D x T x P devices */
            memset(c, 0, sizeof *c);
            snprintf(c->strategy, sizeof c->strategy, "%s", o.strategies[s]);
            c->devices = mesh ? size[0] * size[1] * size[2] : o.counts[d];
            long b = o.strong ? per_device : (long)per_device * c->devices;
            char label[64];
            snprintf(label, sizeof label, "%s x%d", c->strategy, c->devices);
            if (b > (1 << 24)) {
                note("skipping %s: global batch %ld is above 16777216", label, b);
                skipped_invalid++;
                continue;
            }
            c->batch = (int)b;
            if (c->devices == 1 && strcmp(c->strategy, "single") != 0) {
                note("skipping %s: the sweep runs %s on 2 or more devices (single x1 is the reference)", label,
                     c->strategy);
                skipped_invalid++;
                continue;
            }
            st = validate(&o, c);
            if (st == PB_OK) {
                /* devices present: the backend's count (cpu: its cores) */
                const pb_backend *be = pb_find_backend(c->cfg.backend);
                char why[256] = "";
                int present = be ? be->device_count(why, sizeof why) : 0;
                if (present > 0 && c->devices > present) {
                    if (!o.oversubscribe) {
                        note("skipping %s: only %d %s device%s present%s; --oversubscribe runs it",
                                     label, present, c->cfg.backend, present == 1 ? "" : "s",
                                     be->is_gpu ? "" : " (cores)");
                        skipped_invalid++;
                        continue;
                    }
                    c->oversubscribed = true;
                    if (be->is_gpu &&
                        pb_find_strategy(c->cfg.strategy)->procs == PB_PROC_ONE && c->devices <= PB_MAX_STAGES) {
                        size_t used = 0;
                        for (int i = 0; i < c->devices; i++)
                            used += (size_t)snprintf(c->map + used, sizeof c->map - used, "%s%d", i ? "," : "",
                                                     i % present);
                        st = validate(&o, c);
                    }
                }
            }
            if (st == PB_OK) st = apply_threads_rule(&o, c);
            if (st != PB_OK) {
                if (st == PB_ERR_SCHEMA || st == PB_ERR_IO) {
                    pb_log_error("%s", pb_error_message());
                    return 2;
                }
                note("skipping %s: %s", label, pb_error_message());
                skipped_invalid++;
                continue;
            }
            n++;
        }
    pb_error_clear();
    if (n == 0) {
        pb_log_error("sweep: no valid combination of --strategies and --gpus to run (%d skipped)", skipped_invalid);
        return 2;
    }
    n = add_references(&o, cs, n);

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: waitpid and the lock's wait return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    bool created = false;
    int rc;
    int lock = lock_out(o.out, &created);
    if (lock == -2) {
        pb_log_error("sweep: interrupted while waiting for the other sweep into %s; nothing run", o.out);
        rc = 128 + (int)got_signal;
    } else if (lock < 0) {
        pb_log_error("%s", pb_error_message());
        rc = 1;
    } else {
        rc = sweep_runs(&o, cs, n, per_device, self);
        unlock_out(lock, o.out, created);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}
