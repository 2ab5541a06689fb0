/* bench sweep: runs every strategy x device-count combination as a child
 * `bench run`, resumes from the ok rows already in --out, and prints a
 * scaling table from --out (docs/sweep.md). */
#define _POSIX_C_SOURCE 200809L
#include "sweep.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "csv_read.h"
#include "log.h"
#include "parse.h"
#include "registry.h"
#include "results.h"
#include "status.h"

extern char **environ;

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
           "                   [--repeats R] [--batch N] [--out PATH] [--force] [--oversubscribe] [--quiet]\n"
           "                   [--backend B] [--iters N] [--warmup N] [--threads N] [--precision P]\n"
           "                   [--optimizer O] [--seed N] [--lr X] [-- RUN FLAGS...]\n\n"
           "  --strategies LIST  strategies to run [single,dp,mp,ddp]\n"
           "  --gpus LIST        device counts [1,2]\n"
           "  --workload NAME    model preset [mlp-xs]\n"
           "  --scaling MODE     weak: the per-device batch is kept (global = per-device x devices);\n"
           "                     strong: the global batch is kept [weak]\n"
           "  --repeats R        ok rows wanted per combination [1]\n"
           "  --batch N          weak: per-device batch; strong: global batch [the workload's batch]\n"
           "  --out PATH         CSV every run appends to [results/study.csv]\n"
           "  --force            run every combination again, whatever --out holds\n"
           "  --oversubscribe    run device counts above the devices present (labelled)\n"
           "  --quiet            no progress on stderr (failures and notices still shown)\n"
           "  the run flags above and everything after -- go to every run (bench --help)\n");
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
        if (!pb_find_strategy(name))
            return pb_usage_error("sweep --strategies: unknown '%s'; allowed: %s", name, pb_strategy_names());
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
                       strcmp(name, "--quiet") == 0;
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
        if (is_bool) {
            if (value) return pb_usage_error("sweep %s takes no value", name);
            if (strcmp(name, "--force") == 0) o->force = true;
            else if (strcmp(name, "--oversubscribe") == 0) o->oversubscribe = true;
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

/* The child's arguments after argv[0]: run, the combination, the sweep's
 * run flags. Strings point into c, o and the static buffers of c. */
static int child_args(const sweep_opts *o, combo *c, char *args[], char bufs[2][16])
{
    int n = 0;
    snprintf(bufs[0], 16, "%d", c->devices);
    snprintf(bufs[1], 16, "%d", c->batch);
    args[n++] = "run";
    args[n++] = "--strategy";
    args[n++] = c->strategy;
    args[n++] = "--gpus";
    args[n++] = bufs[0];
    args[n++] = "--workload";
    args[n++] = (char *)o->workload;
    args[n++] = "--batch";
    args[n++] = bufs[1];
    args[n++] = "--out";
    args[n++] = (char *)o->out;
    args[n++] = "--quiet";
    if (c->map[0]) {
        args[n++] = "--device-map";
        args[n++] = c->map;
    }
    for (int i = 0; i < o->n_fwd; i++) args[n++] = o->fwd[i];
    args[n] = NULL;
    return n;
}

/* ---- rows already in --out ---------------------------------------------- */

static bool same_num(const char *field, double want)
{
    char *end = NULL;
    double v = strtod(field, &end);
    return *field && !*end && fabs(v - want) <= 1e-9 * fmax(1.0, fabs(want));
}

typedef struct cols {
    int status, strategy, backend, workload, in, hidden, layers, classes, batch, devices, precision, optimizer,
        iters, warmup, seed, threads, microbatches, bucket_mb, sps;
} cols;

static bool find_cols(const pb_csv *t, cols *k)
{
    int *f = &k->status;
    static const char *const names[] = {"status",    "strategy",  "backend",      "workload",  "in",
                                        "hidden",    "layers",    "classes",      "batch_global", "devices",
                                        "precision", "optimizer", "iters",        "warmup",    "seed",
                                        "threads",   "microbatches", "bucket_mb", "samples_per_s"};
    _Static_assert(sizeof names / sizeof *names == sizeof(cols) / sizeof(int), "a name per column");
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if ((f[i] = pb_csv_find(t, names[i])) < 0) return false;
    return true;
}

/* Is row r an ok run of cfg? The configuration columns that a run's flags
 * set must agree (numbers as numbers). */
static bool row_matches(const pb_csv *t, const cols *k, size_t r, const pb_config *cfg)
{
#define GET(col) pb_csv_get(t, r, (size_t)k->col)
    if (strcmp(GET(status), "ok") != 0) return false;
    if (strcmp(GET(strategy), cfg->strategy) || strcmp(GET(backend), cfg->backend) ||
        strcmp(GET(workload), cfg->workload) || strcmp(GET(precision), pb_precision_name(cfg->precision)) ||
        strcmp(GET(optimizer), pb_optimizer_name(cfg->optimizer)))
        return false;
    if (!same_num(GET(in), cfg->shape.in) || !same_num(GET(hidden), cfg->shape.hidden) ||
        !same_num(GET(layers), cfg->shape.layers) || !same_num(GET(classes), cfg->shape.classes) ||
        !same_num(GET(batch), cfg->shape.batch) || !same_num(GET(devices), cfg->devices) ||
        !same_num(GET(iters), cfg->iters) || !same_num(GET(warmup), cfg->warmup) ||
        !same_num(GET(seed), (double)cfg->seed) || !same_num(GET(threads), cfg->threads))
        return false;
    if (strcmp(cfg->strategy, "mp") == 0 && !same_num(GET(microbatches), cfg->microbatches)) return false;
    if (strcmp(cfg->strategy, "ddp") == 0 && !same_num(GET(bucket_mb), cfg->bucket_mb)) return false;
    return true;
#undef GET
}

/* Loads --out when it exists and has rows; false (and t empty) otherwise. */
static bool load_out(const char *path, pb_csv *t, cols *k, bool *bad)
{
    struct stat sb;
    memset(t, 0, sizeof *t);
    *bad = false;
    if (stat(path, &sb) != 0 || sb.st_size == 0) return false;
    if (pb_csv_load(path, t) != PB_OK) {
        *bad = true;
        return false;
    }
    if (!find_cols(t, k)) {
        pb_csv_free(t);
        *bad = true;
        pb_usage_error("sweep: %s is not a results CSV of this build (bench sweep appends to it)", path);
        return false;
    }
    return true;
}

/* Mean samples/s and count of the ok rows of cfg in t. */
static double mean_sps(const pb_csv *t, const cols *k, const pb_config *cfg, int *runs)
{
    double sum = 0;
    *runs = 0;
    for (size_t r = 0; r < t->nrows; r++) {
        if (!row_matches(t, k, r, cfg)) continue;
        char *end = NULL;
        const char *v = pb_csv_get(t, r, (size_t)k->sps);
        double x = strtod(v, &end);
        if (!*v || *end || !(x > 0)) continue;
        sum += x;
        (*runs)++;
    }
    return *runs ? sum / *runs : NAN;
}

/* ---- running a child ------------------------------------------------------ */

/* A notice: shown even with --quiet (a skipped combination, a resume). */
static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
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
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) text[--n] = '\0';
    char *start = strrchr(text, '\n');
    const char *src = start ? start + 1 : text;
    size_t m = strlen(src);
    if (m >= len) m = len - 1;
    memcpy(buf, src, m);
    buf[m] = '\0';
}

/* Runs one child to its end; returns its exit code (128 + signal when
 * killed, -1 when it could not start) and its last stderr line in why. */
static int run_child(const char *self, char *const args[], char *why, size_t why_len)
{
    char tmpl[] = "/tmp/pb_sweep_XXXXXX";
    int fd = mkstemp(tmpl);
    why[0] = '\0';
    if (fd < 0) {
        snprintf(why, why_len, "cannot create a temporary file: %s", strerror(errno));
        return -1;
    }
    unlink(tmpl);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fd, 2);
    posix_spawn_file_actions_addclose(&fa, fd);
    pid_t pid;
    int e = posix_spawn(&pid, self, &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        snprintf(why, why_len, "cannot start %.200s: %s", self, strerror(e));
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

static void print_table(const sweep_opts *o, const combo *cs, int n, const pb_config *ref, bool have_ref)
{
    pb_csv t;
    cols k;
    bool bad;
    if (!load_out(o->out, &t, &k, &bad)) {
        pb_error_clear();
        return;
    }
    int ref_runs = 0;
    double ref_sps = have_ref ? mean_sps(&t, &k, ref, &ref_runs) : NAN;
    if (have_ref && ref_runs)
        printf("%s scaling of %s on %s: efficiency = samples/s(N) / (N x samples/s of single x1, batch %d)\n",
               o->strong ? "strong" : "weak", o->workload, cs[0].cfg.backend, ref->shape.batch);
    else
        printf("%s scaling of %s on %s: no ok single x1 run in %s (add single to --strategies and 1 to --gpus "
               "for efficiencies)\n",
               o->strong ? "strong" : "weak", o->workload, n ? cs[0].cfg.backend : "?", o->out);
    printf("%-8s %7s %7s %4s %12s %8s %10s\n", "strategy", "devices", "batch", "runs", "samples/s", "speedup",
           "efficiency");
    bool any_over = false;
    for (int i = 0; i < n; i++) {
        int runs = 0;
        double sps = mean_sps(&t, &k, &cs[i].cfg, &runs);
        char dev[16], s[32] = "-", sp[32] = "-", eff[32] = "-";
        snprintf(dev, sizeof dev, "%d%s", cs[i].devices, cs[i].oversubscribed ? "*" : "");
        any_over |= cs[i].oversubscribed;
        if (runs) snprintf(s, sizeof s, "%.6g", sps);
        if (runs && ref_runs) {
            snprintf(sp, sizeof sp, "%.2fx", sps / ref_sps);
            snprintf(eff, sizeof eff, "%.1f%%", 100.0 * sps / (cs[i].devices * ref_sps));
        }
        printf("%-8s %7s %7d %4d %12s %8s %10s\n", cs[i].strategy, dev, cs[i].batch, runs, s, sp, eff);
    }
    if (any_over) printf("* oversubscribed: more devices than present (cpu: than cores), they share hardware\n");
    pb_csv_free(&t);
}

/* Validates a combination's run in-process, as the child will. */
static pb_status validate(const sweep_opts *o, combo *c)
{
    char *args[MAX_FWD + 24], bufs[2][16];
    int n = child_args(o, c, args, bufs);
    bool help = false;
    pb_config_defaults(&c->cfg);
    pb_error_clear();
    pb_status st = pb_config_parse(&c->cfg, n - 1, args + 1, &help);
    if (st != PB_OK) return st;
    return pb_config_validate(&c->cfg);
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
        char *args[MAX_FWD + 24], bufs[2][16];
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
            memset(c, 0, sizeof *c);
            snprintf(c->strategy, sizeof c->strategy, "%s", o.strategies[s]);
            c->devices = o.counts[d];
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
                                     strcmp(c->cfg.backend, "cpu") == 0 ? " (cores)" : "");
                        skipped_invalid++;
                        continue;
                    }
                    c->oversubscribed = true;
                    if (strcmp(c->cfg.backend, "cuda") == 0 &&
                        pb_find_strategy(c->strategy)->procs == PB_PROC_ONE && c->devices <= PB_MAX_STAGES) {
                        size_t used = 0;
                        for (int i = 0; i < c->devices; i++)
                            used += (size_t)snprintf(c->map + used, sizeof c->map - used, "%s%d", i ? "," : "",
                                                     i % present);
                        st = validate(&o, c);
                    }
                }
            }
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

    /* what --out already holds */
    int total = 0, have_total = 0;
    {
        pb_csv t;
        cols k;
        bool bad;
        bool loaded = load_out(o.out, &t, &k, &bad);
        if (bad) {
            pb_log_error("%s", pb_error_message());
            return 2;
        }
        if (loaded && t.nskipped)
            note("%s: %zu torn line%s skipped (a writer was killed mid-row)", o.out, t.nskipped,
                         t.nskipped == 1 ? "" : "s");
        for (int i = 0; i < n; i++) {
            int runs = 0;
            if (loaded) (void)mean_sps(&t, &k, &cs[i].cfg, &runs);
            cs[i].have = o.force ? 0 : (runs < o.repeats ? runs : o.repeats);
            cs[i].todo = o.repeats - cs[i].have;
            total += cs[i].todo;
            have_total += cs[i].have;
        }
        if (loaded) pb_csv_free(&t);
    }
    if (have_total)
        note("%d of %d runs already in %s with status ok: skipped (--force runs them again)",
                     have_total, have_total + total, o.out);
    else if (o.force && !o.quiet)
        pb_log_info("sweep: --force: running every combination again");

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: waitpid returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    bool tty = isatty(2) && !o.quiet;
    int done = 0, failed = 0;
    double t0 = now_s();
    for (int i = 0; i < n && !got_signal; i++) {
        combo *c = &cs[i];
        for (int r = c->have; r < o.repeats && !got_signal; r++) {
            char label[96], eta_s[32], why[512];
            snprintf(label, sizeof label, "%s x%d%s batch %d, repeat %d/%d", c->strategy, c->devices,
                     c->oversubscribed ? " (oversubscribed)" : "", c->batch, r + 1, o.repeats);
            double elapsed = now_s() - t0;
            draw_bar(tty, done, total, label, done ? elapsed / done * (total - done) : NAN);
            char *args[MAX_FWD + 24], bufs[2][16];
            child_args(&o, c, args + 1, bufs);
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
            } else if (!tty && !o.quiet) {
                fprintf(stderr, "bench: sweep: [%d/%d] %s: ok in %.1f s; eta %s\n", done, total, label, took, eta_s);
            }
        }
    }
    if (tty) {
        draw_bar(tty, done, total, "done", 0);
        fprintf(stderr, "\n");
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (got_signal) {
        pb_log_error("sweep: interrupted after %d of %d runs; the same command resumes it", done, total);
        return 128 + (int)got_signal;
    }
    if (!o.quiet)
        pb_log_info("sweep: %d run%s, %d failed, %.1f s; rows in %s", done, done == 1 ? "" : "s", failed,
                    now_s() - t0, o.out);

    /* the reference: single on 1 device at the batch that scaling keeps */
    combo ref;
    memset(&ref, 0, sizeof ref);
    snprintf(ref.strategy, sizeof ref.strategy, "single");
    ref.devices = 1;
    ref.batch = per_device;
    bool have_ref = validate(&o, &ref) == PB_OK;
    pb_error_clear();
    print_table(&o, cs, n, &ref.cfg, have_ref);
    return failed ? 1 : 0;
}
