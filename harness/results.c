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
#include "paths.h"
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
#define ROW_MAX (PB_COL_COUNT * (2 * PB_FIELD_WIDE + 3) + 2)

const char *pb_column_name(pb_column c) { return c < PB_COL_COUNT ? column_names[c] : "?"; }

pb_column_kind pb_column_kind_of(pb_column c) { return c < PB_COL_COUNT ? column_kinds[c] : PB_KIND_METRIC; }

pb_key_role pb_column_key(pb_column c)
{
    /* a key column that is not configuration would be a schema bug */
    return c < PB_COL_COUNT && column_kinds[c] == PB_KIND_CONFIG ? column_keys[c] : PB_KEY_NONE;
}

size_t pb_column_width(pb_column c) { return c == PB_COL_ENV_VARS ? PB_FIELD_WIDE : PB_FIELD_MAX; }

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
    pb_results_field_vset(r->v[c], pb_column_width(c), fmt, ap);
    va_end(ap);
}

void pb_results_field_vset(char *field, size_t width, const char *fmt, va_list ap)
{
    int n = vsnprintf(field, width, fmt, ap);
    /* a field cut to fit says so, so a long error message reads as cut
     * rather than as a sentence that ends mid-word */
    if (n >= (int)width) memcpy(field + width - 4, "...", 4);
    /* a row is one line: fold any newline a library message carried */
    for (char *p = field; *p; p++)
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
    bool microbatches = strategy && strategy->microbatches, buckets = strategy && strategy->buckets;
    /* (a mesh has buckets, and shards across its dp group, only when
     * --zero-stage is given) */
    bool mesh_zero = strategy && strategy->mesh && pb_config_given(cfg, "--zero-stage");
    if (strategy && strategy->mesh && !mesh_zero) buckets = false;
    const pb_backend *be = pb_find_backend(cfg->backend);
    bool sgd = cfg->optimizer == PB_OPT_SGD;
    pb_record_set(r, PB_COL_TAG, "%s", cfg->tag);
    pb_record_set(r, PB_COL_STRATEGY, "%s", cfg->strategy);
    pb_record_set(r, PB_COL_BACKEND, "%s", cfg->backend);
    pb_record_set(r, PB_COL_COMM, "%s", cfg->comm);
    pb_record_set(r, PB_COL_WORKLOAD, "%s", cfg->workload);
    /* each kind's own dimensions (the other kind's stay empty), and what
     * every workload has: layers, the shape as one string, parameters */
    const pb_workload *w = pb_find_workload(cfg->workload);
    bool gpt = w && w->ops == &pb_workload_gpt;
    const pb_shape *s = &cfg->shape;
    if (!gpt) {
        pb_record_set(r, PB_COL_IN, "%d", s->in);
        pb_record_set(r, PB_COL_HIDDEN, "%d", s->hidden);
        pb_record_set(r, PB_COL_CLASSES, "%d", s->classes);
    } else {
        pb_record_set(r, PB_COL_D_MODEL, "%d", s->d_model);
        pb_record_set(r, PB_COL_HEADS, "%d", s->heads);
        pb_record_set(r, PB_COL_SEQ, "%d", s->seq);
        pb_record_set(r, PB_COL_VOCAB, "%d", s->vocab);
        pb_record_set(r, PB_COL_TOKENS_PER_STEP, "%lld", (long long)s->batch * s->seq);
    }
    pb_record_set(r, PB_COL_LAYERS, "%d", s->layers);
    if (w) {
        char shape[PB_SHAPE_STR];
        w->ops->shape_str(s, shape, sizeof shape);
        pb_record_set(r, PB_COL_SHAPE, "%s", shape);
    }
    static pb_model model; /* large for a stack */
    if (pb_model_of(cfg, &model) == PB_OK) pb_record_set(r, PB_COL_PARAMS, "%zu", pb_model_params(&model));
    else pb_error_clear(); /* validation refused such a shape already */
    pb_record_set(r, PB_COL_BATCH_GLOBAL, "%d", s->batch);
    /* ranks need not divide the batch: the largest shard */
    int b = cfg->shape.batch, d = cfg->devices > 0 ? cfg->devices : 1;
    if (strategy && strategy->batch_shard) strategy->batch_shard(cfg, 0, &d);
    pb_record_set(r, PB_COL_BATCH_PER_DEVICE, "%d",
                  per_rank && !strategy->rank_full_batch ? (b + d - 1) / d
                  : strategy && strategy->needs_even_split ? b / d
                                                           : b);
    pb_record_set(r, PB_COL_DEVICES, "%d", cfg->devices);
    pb_record_set(r, PB_COL_RANKS, "%d", per_rank ? cfg->devices : 1);
    if (microbatches) pb_record_set(r, PB_COL_MICROBATCHES, "%d", cfg->microbatches);
    if (microbatches) pb_record_set(r, PB_COL_SCHEDULE, "%s", pb_schedule_name(cfg->schedule));
    /* without overlap there are no buckets: one all-reduce of everything */
    if (buckets && !cfg->no_overlap) pb_record_num(r, PB_COL_BUCKET_MB, cfg->bucket_mb);
    if (buckets) pb_record_set(r, PB_COL_NO_OVERLAP, "%d", cfg->no_overlap ? 1 : 0);
    if (strategy && strategy->zero_stage && (!strategy->mesh || mesh_zero))
        pb_record_set(r, PB_COL_ZERO_STAGE, "%d", cfg->zero_stage);
    if (strategy && strategy->mesh) {
        pb_record_set(r, PB_COL_DP, "%d", cfg->mesh_dp);
        pb_record_set(r, PB_COL_TP, "%d", cfg->mesh_tp);
        pb_record_set(r, PB_COL_PP, "%d", cfg->mesh_pp);
    }
    /* tp's and the mesh's own: 0 or 1, so on and off rows never pair */
    if (strategy && (strcmp(strategy->name, "tp") == 0 || strategy->mesh))
        pb_record_set(r, PB_COL_SEQUENCE_PARALLEL, "%d", cfg->sequence_parallel ? 1 : 0);
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
    /* a GPU always calibrates (harness/run.c) */
    pb_record_set(r, PB_COL_CALIBRATE, "%d", cfg->calibrate || (be && be->is_gpu) ? 1 : 0);
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
    return pb_results_format_fields(r->v[0], sizeof r->v[0], PB_COL_COUNT, buf, len);
}

size_t pb_results_format_fields(const char *v, size_t stride, int count, char *buf, size_t len)
{
    size_t n = 0;
    for (int c = 0; c < count; c++) {
        if (c && n < len) buf[n++] = ',';
        n = put_field(buf, len, n, v + (size_t)c * stride);
    }
    if (n + 1 >= len) return 0;
    buf[n++] = '\n';
    buf[n] = '\0';
    return n;
}

/* Reads the first line of fd into buf (without its line ending); false when
 * the file is empty. *crlf: the line ends in "\r\n" (a file saved on
 * Windows or by a spreadsheet). */
static bool first_line(int fd, char *buf, size_t len, bool *crlf)
{
    *crlf = false;
    ssize_t got = pread(fd, buf, len - 1, 0);
    if (got <= 0) return false;
    buf[got] = '\0';
    size_t n = strcspn(buf, "\n");
    if (n > 0 && buf[n - 1] == '\r') {
        *crlf = buf[n] == '\n';
        n--;
    }
    buf[n] = '\0';
    return true;
}

/* The file's header is this build's; *crlf: its lines end in "\r\n", so an
 * appended row does too (readers strip the '\r'). */
static pb_status header_matches(const char *path, int fd, const char *header, bool *crlf)
{
    char expect[8192], found[8192];
    snprintf(expect, sizeof expect, "%s", header);
    expect[strcspn(expect, "\n")] = '\0';
    if (!first_line(fd, found, sizeof found, crlf)) return PB_OK; /* empty: gets the header */
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

static pb_status not_regular(const char *path, mode_t mode)
{
    return pb_usage_error("--out %s: is %s; rows are appended to regular files only, give a CSV file path", path,
                          pb_path_kind(mode));
}

pb_status pb_results_check_target(const char *path)
{
    char header[8192];
    pb_results_header(header, sizeof header);
    return pb_results_check_target_of(path, header);
}

pb_status pb_results_check_target_of(const char *path, const char *header)
{
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return pb_usage_error("--out %s: is a directory; give a CSV file path", path);
        if (!S_ISREG(sb.st_mode)) return not_regular(path, sb.st_mode);
        int fd = open(path, O_RDWR | O_APPEND | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) return pb_usage_error("--out %s: not writable (%s)", path, strerror(errno));
        bool crlf;
        pb_status st = header_matches(path, fd, header, &crlf);
        close(fd);
        return st;
    }
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    return pb_path_check_folder("--out", path, dirname(copy));
}

/* Opens path for appending, creating it when missing (*created), and takes
 * its lock. A file unlinked while this call waited for the lock (by a
 * writer that created it and failed: undo_append) is opened again, so no
 * row goes to a file nobody can see. O_NONBLOCK: opening a FIFO must not
 * wait for a reader. */
static pb_status open_locked(const char *path, int *out, bool *created)
{
    const int flags = O_RDWR | O_APPEND | O_NONBLOCK | O_CLOEXEC;
    for (int tries = 0; tries < 100; tries++) {
        *created = false;
        int fd = open(path, flags);
        if (fd < 0 && errno == ENOENT) {
            fd = open(path, flags | O_CREAT | O_EXCL, 0644);
            *created = fd >= 0;
            struct stat lsb;
            if (fd < 0 && errno == EEXIST) {
                /* a dangling symlink: create its target, never remove it */
                if (lstat(path, &lsb) != 0 || !S_ISLNK(lsb.st_mode)) continue; /* another writer won */
                fd = open(path, flags | O_CREAT, 0644);
            }
        }
        if (fd < 0) return pb_user_error(PB_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        struct stat sb;
        pb_status st = PB_OK;
        if (fstat(fd, &sb) != 0) st = pb_user_error(PB_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
        else if (!S_ISREG(sb.st_mode)) st = not_regular(path, sb.st_mode);
        else if (flock(fd, LOCK_EX) != 0) st = pb_user_error(PB_ERR_IO, "cannot lock %s: %s", path, strerror(errno));
        if (st != PB_OK) {
            close(fd);
            return st;
        }
        if (fstat(fd, &sb) == 0 && sb.st_nlink == 0) {
            close(fd);
            continue;
        }
        *out = fd;
        return PB_OK;
    }
    return pb_user_error(PB_ERR_IO, "cannot open %s: it was removed again and again while waiting for its lock", path);
}

/* write() until all n bytes are written or one fails; the bytes written. */
static size_t write_all(int fd, const char *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = ENOSPC;
            break;
        }
        done += (size_t)w;
    }
    return done;
}

/* A failed append leaves the file as it was, still under the lock: cut back
 * to its old size, and a file this call created is removed (writers that
 * wait for its lock see it unlinked and open the path again). */
static pb_status undo_append(const char *path, int fd, off_t old_size, bool created, size_t done, size_t n, int err)
{
    bool cut = ftruncate(fd, old_size) == 0;
    int cut_err = errno;
    if (cut && created && old_size == 0) unlink(path);
    if (cut)
        return pb_user_error(PB_ERR_IO, "cannot append the row to %s: %s (%zu of %zu bytes written); %s", path,
                             strerror(err), done, n,
                             created && old_size == 0 ? "no file is left (the run would have created it)"
                                                      : "the file is left as it was");
    return pb_user_error(PB_ERR_IO, "cannot append the row to %s: %s (%zu of %zu bytes written), and cutting it back "
                         "to %lld bytes failed (%s): its last line is torn (readers skip it)",
                         path, strerror(err), done, n, (long long)old_size, strerror(cut_err));
}

pb_status pb_results_append(const char *path, const pb_record *r)
{
    pb_status st = PB_OK;
    char header[8192];
    pb_results_header(header, sizeof header);
    char *row = malloc(ROW_MAX + 2);
    PB_CHECK_ALLOC(row, ROW_MAX + 2);
    size_t n = pb_results_format(r, row, ROW_MAX + 2);
    PB_REQUIRE(n > 0, PB_ERR_INTERNAL, "row longer than %d bytes", ROW_MAX);
    st = pb_results_append_rows(path, header, row);
cleanup:
    free(row);
    return st;
}

pb_status pb_results_append_rows(const char *path, const char *header, const char *rows)
{
    pb_status st = PB_OK;
    size_t rows_len = strlen(rows), lines = 0;
    for (const char *p = rows; *p; p++) lines += *p == '\n';
    /* the header, a '\n' that ends a torn last line, and a '\r' per line */
    const size_t cap = strlen(header) + rows_len + lines + 4;
    char *line = malloc(cap);
    int fd = -1;
    bool created = false, crlf = false;
    PB_CHECK_ALLOC(line, cap);
    PB_TRY(open_locked(path, &fd, &created));

    struct stat sb;
    PB_REQUIRE(fstat(fd, &sb) == 0, PB_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    size_t n = 0;
    if (sb.st_size == 0) {
        n = (size_t)snprintf(line, cap, "%s", header);
    } else {
        PB_TRY(header_matches(path, fd, header, &crlf));
        /* A writer killed mid-line left a partial row: end it so ours starts
         * on its own line (readers skip the malformed one). */
        char last = '\n';
        PB_REQUIRE(pread(fd, &last, 1, sb.st_size - 1) == 1, PB_ERR_IO, "cannot read %s: %s", path,
                   strerror(errno));
        if (last != '\n') n += (size_t)snprintf(line, cap, "%s", crlf ? "\r\n" : "\n");
    }
    for (const char *p = rows; *p; p++) { /* the file's own line ending */
        if (*p == '\n' && crlf) line[n++] = '\r';
        line[n++] = *p;
    }
    /* one write() in practice; a short one (a full disk, a file size limit)
     * is retried for the rest, and a failure undone */
    size_t done = write_all(fd, line, n);
    if (done < n) st = undo_append(path, fd, sb.st_size, created, done, n, errno);
cleanup:
    if (fd >= 0) close(fd); /* releases the lock */
    free(line);
    return st;
}
