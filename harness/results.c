#define _GNU_SOURCE
#include "results.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "registry.h"

#define PB_COLUMN_NAME(id, name, kind, key) name,
static const char *const column_names[PB_COL_COUNT] = {PB_COLUMNS(PB_COLUMN_NAME)};
#undef PB_COLUMN_NAME
#define PB_COLUMN_KIND(id, name, kind, key) PB_KIND_##kind,
static const pb_column_kind column_kinds[PB_COL_COUNT] = {PB_COLUMNS(PB_COLUMN_KIND)};
#undef PB_COLUMN_KIND
#define PB_COLUMN_KEY(id, name, kind, key) PB_KEY_##key,
static const pb_key_role column_keys[PB_COL_COUNT] = {PB_COLUMNS(PB_COLUMN_KEY)};
#undef PB_COLUMN_KEY

/* A row is at most this long: every field full and quoted. */
#define ROW_MAX (PB_COL_COUNT * (2 * PB_FIELD_MAX + 3) + 2)

const char *pb_column_name(pb_column c) { return c < PB_COL_COUNT ? column_names[c] : "?"; }

pb_column_kind pb_column_kind_of(pb_column c) { return c < PB_COL_COUNT ? column_kinds[c] : PB_KIND_METRIC; }

pb_key_role pb_column_key(pb_column c)
{
    /* a key column that is not configuration would be a schema bug */
    return c < PB_COL_COUNT && column_kinds[c] == PB_KIND_CONFIG ? column_keys[c] : PB_KEY_NONE;
}

int pb_column_find(const char *name)
{
    for (int c = 0; c < PB_COL_COUNT; c++)
        if (strcmp(column_names[c], name) == 0) return c;
    return -1;
}

void pb_record_clear(pb_record *r) { memset(r, 0, sizeof *r); }

void pb_record_set(pb_record *r, pb_column c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->v[c], PB_FIELD_MAX, fmt, ap);
    va_end(ap);
    /* a row is one line: fold any newline a library message carried */
    for (char *p = r->v[c]; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

void pb_record_num(pb_record *r, pb_column c, double v)
{
    if (isfinite(v)) pb_record_set(r, c, "%.6g", v);
    else r->v[c][0] = '\0';
}

/* "2,5,7": a list flag as given. */
static void set_list(pb_record *r, pb_column c, const int *v, int n)
{
    size_t used = 0;
    r->v[c][0] = '\0';
    for (int i = 0; i < n && used < PB_FIELD_MAX; i++)
        used += (size_t)snprintf(r->v[c] + used, PB_FIELD_MAX - used, "%s%d", i ? "," : "", v[i]);
}

void pb_record_fill_config(pb_record *r, const pb_config *cfg)
{
    const pb_strategy *strategy = pb_find_strategy(cfg->strategy);
    bool per_rank = strategy && strategy->procs == PB_PROC_PER_DEVICE;
    bool is_mp = strcmp(cfg->strategy, "mp") == 0, is_ddp = strcmp(cfg->strategy, "ddp") == 0;
    bool sgd = cfg->optimizer == PB_OPT_SGD;
    pb_record_set(r, PB_COL_STRATEGY, "%s", cfg->strategy);
    pb_record_set(r, PB_COL_BACKEND, "%s", cfg->backend);
    pb_record_set(r, PB_COL_COMM, "%s", cfg->comm);
    pb_record_set(r, PB_COL_WORKLOAD, "%s", cfg->workload);
    pb_record_set(r, PB_COL_IN, "%d", cfg->shape.in);
    pb_record_set(r, PB_COL_HIDDEN, "%d", cfg->shape.hidden);
    pb_record_set(r, PB_COL_LAYERS, "%d", cfg->shape.layers);
    pb_record_set(r, PB_COL_CLASSES, "%d", cfg->shape.classes);
    pb_layout layout;
    if (pb_mlp_layout(&cfg->shape, &layout) == PB_OK) pb_record_set(r, PB_COL_PARAMS, "%zu", layout.n_params);
    else pb_error_clear(); /* validation refused such a shape already */
    pb_record_set(r, PB_COL_BATCH_GLOBAL, "%d", cfg->shape.batch);
    /* ranks need not divide the batch: the largest shard */
    int b = cfg->shape.batch, d = cfg->devices > 0 ? cfg->devices : 1;
    pb_record_set(r, PB_COL_BATCH_PER_DEVICE, "%d",
                  per_rank ? (b + d - 1) / d : strategy && strategy->splits_batch ? b / d : b);
    pb_record_set(r, PB_COL_DEVICES, "%d", cfg->devices);
    pb_record_set(r, PB_COL_RANKS, "%d", per_rank ? cfg->devices : 1);
    if (is_mp) pb_record_set(r, PB_COL_MICROBATCHES, "%d", cfg->microbatches);
    /* without overlap there are no buckets: one all-reduce of everything */
    if (is_ddp && !cfg->no_overlap) pb_record_num(r, PB_COL_BUCKET_MB, cfg->bucket_mb);
    if (is_ddp) pb_record_set(r, PB_COL_NO_OVERLAP, "%d", cfg->no_overlap ? 1 : 0);
    pb_record_set(r, PB_COL_PRECISION, "%s", pb_precision_name(cfg->precision));
    pb_record_set(r, PB_COL_OPTIMIZER, "%s", pb_optimizer_name(cfg->optimizer));
    pb_record_num(r, PB_COL_LR, cfg->lr);
    pb_record_set(r, PB_COL_ITERS, "%d", cfg->iters);
    pb_record_set(r, PB_COL_WARMUP, "%d", cfg->warmup);
    pb_record_set(r, PB_COL_SEED, "%llu", (unsigned long long)cfg->seed);
    pb_record_set(r, PB_COL_THREADS, "%d", cfg->threads);
    pb_record_set(r, PB_COL_CUDA_GRAPH, "%d", cfg->cuda_graph ? 1 : 0);
    /* each optimizer's own hyperparameters; weight decay is both's */
    if (sgd) pb_record_num(r, PB_COL_MOMENTUM, cfg->momentum);
    pb_record_num(r, PB_COL_WEIGHT_DECAY, cfg->weight_decay);
    if (!sgd) {
        pb_record_num(r, PB_COL_BETA1, cfg->beta1);
        pb_record_num(r, PB_COL_BETA2, cfg->beta2);
        pb_record_num(r, PB_COL_EPS, cfg->eps);
    }
    /* as given (0: auto), so auto runs on hosts of different core counts pair */
    pb_record_set(r, PB_COL_LOADER_THREADS, "%d", cfg->loader_threads);
    /* cuda always calibrates (harness/run.c) */
    pb_record_set(r, PB_COL_CALIBRATE, "%d", cfg->calibrate || strcmp(cfg->backend, "cuda") == 0 ? 1 : 0);
    set_list(r, PB_COL_SPLIT, cfg->split, cfg->n_split);
    set_list(r, PB_COL_DEVICE_MAP, cfg->device_map, cfg->n_device_map);
}

size_t pb_results_header(char *buf, size_t len)
{
    size_t n = 0;
    for (int c = 0; c < PB_COL_COUNT; c++)
        n += (size_t)snprintf(buf + (n < len ? n : len), n < len ? len - n : 0, "%s%s",
                              c ? "," : "", column_names[c]);
    n += (size_t)snprintf(buf + (n < len ? n : len), n < len ? len - n : 0, "\n");
    return n;
}

static size_t put_field(char *buf, size_t len, size_t n, const char *v)
{
    bool quote = strpbrk(v, ",\"") != NULL;
    if (quote && n < len) buf[n++] = '"';
    for (const char *p = v; *p && n < len; p++) {
        if (*p == '"' && n + 1 < len) buf[n++] = '"';
        buf[n++] = *p;
    }
    if (quote && n < len) buf[n++] = '"';
    return n;
}

size_t pb_results_format(const pb_record *r, char *buf, size_t len)
{
    size_t n = 0;
    for (int c = 0; c < PB_COL_COUNT; c++) {
        if (c && n < len) buf[n++] = ',';
        n = put_field(buf, len, n, r->v[c]);
    }
    if (n + 1 >= len) return 0;
    buf[n++] = '\n';
    buf[n] = '\0';
    return n;
}

/* Reads the first line of fd into buf; false when the file is empty. */
static bool first_line(int fd, char *buf, size_t len)
{
    ssize_t got = pread(fd, buf, len - 1, 0);
    if (got <= 0) return false;
    buf[got] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return true;
}

static pb_status header_matches(const char *path, int fd)
{
    char expect[8192], found[8192];
    pb_results_header(expect, sizeof expect);
    expect[strcspn(expect, "\n")] = '\0';
    if (!first_line(fd, found, sizeof found)) return PB_OK; /* empty: gets the header */
    if (strcmp(found, expect) == 0) return PB_OK;
    /* name the first column that differs so the user sees why */
    char *a = found, *b = expect;
    int col = 1;
    while (*a && *b) {
        size_t la = strcspn(a, ","), lb = strcspn(b, ",");
        if (la != lb || strncmp(a, b, la) != 0) break;
        a += la + (a[la] == ',');
        b += lb + (b[lb] == ',');
        col++;
    }
    return pb_user_error(PB_ERR_SCHEMA,
                         "--out %s: its header differs from this build's CSV schema at column %d "
                         "('%.*s', expected '%.*s'); write to a new file",
                         path, col, (int)strcspn(a, ","), a, (int)strcspn(b, ","), b);
}

pb_status pb_results_check_target(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return pb_usage_error("--out %s: is a directory; give a CSV file path", path);
        int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
        if (fd < 0) return pb_usage_error("--out %s: not writable (%s)", path, strerror(errno));
        pb_status st = header_matches(path, fd);
        close(fd);
        return st;
    }
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    const char *dir = dirname(copy);
    if (stat(dir, &sb) != 0)
        return pb_usage_error("--out %s: folder '%s' does not exist", path, dir);
    if (!S_ISDIR(sb.st_mode)) return pb_usage_error("--out %s: '%s' is not a folder", path, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return pb_usage_error("--out %s: folder '%s' is not writable", path, dir);
    /* access() says yes to root almost everywhere (even /proc): create a
     * probe file beside the target and remove it, so a run never ends unable
     * to write its row. Not the target itself: a concurrent run may be
     * creating that one. */
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.parbench-probe-XXXXXX", dir);
    int fd = mkstemp(probe);
    if (fd < 0)
        return pb_usage_error("--out %s: cannot create a file in folder '%s' (%s)", path, dir, strerror(errno));
    close(fd);
    unlink(probe);
    return PB_OK;
}

pb_status pb_results_append(const char *path, const pb_record *r)
{
    pb_status st = PB_OK;
    char *line = malloc(ROW_MAX + 8192 + 1);
    int fd = -1;
    PB_CHECK_ALLOC(line, (size_t)ROW_MAX + 8192 + 1);
    fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    PB_REQUIRE(fd >= 0, PB_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    PB_REQUIRE(flock(fd, LOCK_EX) == 0, PB_ERR_IO, "cannot lock %s: %s", path, strerror(errno));

    struct stat sb;
    PB_REQUIRE(fstat(fd, &sb) == 0, PB_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    size_t n = 0;
    if (sb.st_size == 0) {
        n = pb_results_header(line, ROW_MAX + 8192);
    } else {
        PB_TRY(header_matches(path, fd));
        /* A writer killed mid-line left a partial row: end it so ours starts
         * on its own line (readers skip the malformed one). */
        char last = '\n';
        PB_REQUIRE(pread(fd, &last, 1, sb.st_size - 1) == 1, PB_ERR_IO, "cannot read %s: %s", path,
                   strerror(errno));
        if (last != '\n') line[n++] = '\n';
    }
    size_t row = pb_results_format(r, line + n, ROW_MAX + 8192 + 1 - n);
    PB_REQUIRE(row > 0, PB_ERR_INTERNAL, "row longer than %d bytes", ROW_MAX);
    n += row;
    ssize_t wrote = write(fd, line, n);
    PB_REQUIRE(wrote == (ssize_t)n, PB_ERR_IO, "short write to %s (%zd of %zu bytes): %s", path, wrote,
               n, wrote < 0 ? strerror(errno) : "disk full?");
cleanup:
    if (fd >= 0) close(fd); /* releases the lock */
    free(line);
    return st;
}
