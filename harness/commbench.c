/* bench comm: the measurement, nccl-tests' table on stdout, the alpha-beta
 * fit, and the rows (commbench.h; docs/comm.md).
 *
 * Each participant (a thread of this process for `local`, this process for
 * a rank of `mpi` or `nccl`) runs, per collective and size: warm-up repeats,
 * then --iters timed repeats, each started together (a one-float all-reduce
 * first) and timed from post to the end of its wait; then the check: its
 * input filled with small integers (exact in fp32 whatever the order of a
 * sum), one more operation, every output element compared. Per repeat the
 * slowest participant's time counts (the operation ends for the job when
 * its last rank is done), and the row has their median, min, max, mean and
 * spread. */
#define _POSIX_C_SOURCE 200809L
#include "commbench.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_csv.h"
#include "config.h"
#include "devmap.h"
#include "env.h"
#include "launch.h"
#include "log.h"
#include "registry.h"
#include "results.h"
#include "stats.h"
#include "supervise.h"
#include "timer.h"
#include "../kernels/world.h"

/* --- the group: what participants share ------------------------------------ */

typedef struct part part;

typedef struct bench {
    const pb_commbench_opts *o;
    const pb_backend *be;
    const pb_comm *comm;
    pb_comm_opts copts;
    bool ranks_comm; /* one participant per process (mpi, nccl) */
    int nlocal;      /* participants in this process */
    part *parts;
    /* a barrier that a failed participant breaks (local) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived, generation;
    bool broken;
    /* the writer's (global rank 0's) results */
    double *slowest; /* per repeat, the slowest participant's ms */
    double *scratch;
    char *rows;
    size_t rows_len, rows_cap;
    long long wrong_total;
    int failed_rows;
    pb_world world;
    pb_device_info info;
    pb_status st;       /* the writer's first failure */
    double *busbw_out;  /* bench check's: busbw per size of o->sizes, or NULL */
} bench;

struct part {
    bench *b;
    int rank;
    pb_device *dev;
    pb_comm_ctx *ctx;
    void *a, *c, *tiny;
    float *host; /* host copy where device memory is not host memory */
    double *ms;  /* per repeat */
    long long wrong;
    pb_status st;
    char err[1024];
};

static int ranks_of(const bench *b) { return b->o->ranks; }

/* Every local participant arrives; false when one failed (the barrier is
 * broken and stays so). */
static bool barrier(bench *b)
{
    if (b->nlocal == 1) return true;
    pthread_mutex_lock(&b->mu);
    int gen = b->generation;
    if (++b->arrived == b->nlocal) {
        b->arrived = 0;
        b->generation++;
        pthread_cond_broadcast(&b->cv);
    }
    while (gen == b->generation && !b->broken) pthread_cond_wait(&b->cv, &b->mu);
    bool ok = !b->broken;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

static void break_barrier(bench *b)
{
    pthread_mutex_lock(&b->mu);
    b->broken = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* --- one operation ------------------------------------------------------------ */

/* Elements per rank of c at `bytes` (nccl-tests' convention: the size of
 * reduce_scatter and all_gather is the whole array, n x the per-rank
 * count), and the bytes that size then stands for. */
static size_t coll_count(pb_coll c, size_t bytes, int ranks, size_t *eff)
{
    size_t per = c == PB_COLL_REDUCE_SCATTER || c == PB_COLL_ALL_GATHER ? bytes / (4 * (size_t)ranks) : bytes / 4;
    *eff = per * 4 * (c == PB_COLL_REDUCE_SCATTER || c == PB_COLL_ALL_GATHER ? (size_t)ranks : 1);
    return per;
}

static pb_status run_op(part *p, pb_coll c, size_t count)
{
    const pb_comm *cm = p->b->comm;
    int n = ranks_of(p->b), next = (p->rank + 1) % n, prev = (p->rank + n - 1) % n;
    pb_comm_req *r1 = NULL, *r2 = NULL;
    pb_status st = PB_OK;
    switch (c) {
    case PB_COLL_ALL_REDUCE: st = cm->allreduce(p->ctx, p->a, count, 1.0f, &r1); break;
    case PB_COLL_REDUCE_SCATTER: st = cm->reduce_scatter(p->ctx, p->a, p->c, count, &r1); break;
    case PB_COLL_ALL_GATHER: st = cm->allgather(p->ctx, p->a, p->c, count * 4, &r1); break;
    case PB_COLL_BROADCAST: st = cm->broadcast(p->ctx, p->a, count * 4, 0, &r1); break;
    /* nccl-tests' sendrecv_perf: a ring, each rank sends to the next and
     * receives from the previous */
    case PB_COLL_SENDRECV:
        st = cm->recv(p->ctx, p->c, count * 4, prev, &r2);
        if (st == PB_OK) st = cm->send(p->ctx, p->a, count * 4, next, &r1);
        break;
    case PB_COLL_COUNT: break;
    }
    if (st == PB_OK && r1) st = cm->wait(p->ctx, r1, p->b->o->timeout_s);
    if (st == PB_OK && r2) st = cm->wait(p->ctx, r2, p->b->o->timeout_s);
    return st;
}

/* The repeats start together: a one-float all-reduce. */
static pb_status line_up(part *p)
{
    pb_comm_req *r = NULL;
    pb_status st = p->b->comm->allreduce(p->ctx, p->tiny, 1, 1.0f, &r);
    return st == PB_OK ? p->b->comm->wait(p->ctx, r, p->b->o->timeout_s) : st;
}

/* --- the check ------------------------------------------------------------------ */

static float val(int r, size_t i) { return (float)((i * 7 + (size_t)r * 13) % 61 + 1); }

static pb_status put(part *p, void *d, const float *h, size_t n)
{
    if (p->b->be->host_is_device) return PB_OK; /* h is d */
    return p->b->be->upload(p->dev, d, h, n * sizeof(float));
}

/* The host view of device buffer d: itself on the cpu, else the stage. */
static float *view(part *p, void *d) { return p->b->be->host_is_device ? d : p->host; }

static pb_status fill(part *p, void *d, size_t n, int r, bool pattern)
{
    float *h = view(p, d);
    for (size_t i = 0; i < n; i++) h[i] = pattern ? val(r, i) : -1.0f;
    return put(p, d, h, n);
}

static pb_status get(part *p, const void *d, size_t n, const float **h)
{
    *h = view(p, (void *)d);
    if (p->b->be->host_is_device) return PB_OK;
    return p->b->be->download(p->dev, p->host, d, n * sizeof(float));
}

/* TEST-ONLY: PB_COMMBENCH_CORRUPT=COLLECTIVE makes rank 0's check see one
 * element of that collective's result off by one, as a comm that delivered
 * a wrong value would (tests/e2e/test_comm.c; docs/comm.md). */
static void corrupt(const part *p, pb_coll c, const float *h)
{
    const char *which = getenv("PB_COMMBENCH_CORRUPT");
    if (p->rank == 0 && which && strcmp(which, pb_coll_name(c)) == 0) ((float *)h)[0] += 1.0f;
}

static pb_status check(part *p, pb_coll c, size_t count, long long *wrong)
{
    int n = ranks_of(p->b), r = p->rank, prev = (r + n - 1) % n;
    const float *h = NULL;
    pb_status st = PB_OK;
    *wrong = 0;
    switch (c) {
    case PB_COLL_ALL_REDUCE: PB_TRY(fill(p, p->a, count, r, true)); break;
    case PB_COLL_REDUCE_SCATTER: PB_TRY(fill(p, p->a, count * (size_t)n, r, true)); break;
    case PB_COLL_BROADCAST: PB_TRY(fill(p, p->a, count, r, r == 0)); break;
    case PB_COLL_ALL_GATHER:
    case PB_COLL_SENDRECV:
        PB_TRY(fill(p, p->c, count * (c == PB_COLL_ALL_GATHER ? (size_t)n : 1), r, false));
        PB_TRY(fill(p, p->a, count, r, true));
        break;
    case PB_COLL_COUNT: break;
    }
    PB_TRY(run_op(p, c, count));
    switch (c) {
    case PB_COLL_ALL_REDUCE:
    case PB_COLL_BROADCAST:
        PB_TRY(get(p, p->a, count, &h));
        corrupt(p, c, h);
        for (size_t i = 0; i < count; i++) {
            float want = 0;
            for (int q = 0; q < n; q++) want += c == PB_COLL_BROADCAST ? (q == 0 ? val(0, i) : 0) : val(q, i);
            *wrong += h[i] != want;
        }
        break;
    case PB_COLL_REDUCE_SCATTER:
        PB_TRY(get(p, p->c, count, &h));
        corrupt(p, c, h);
        for (size_t i = 0; i < count; i++) {
            float want = 0;
            for (int q = 0; q < n; q++) want += val(q, (size_t)r * count + i);
            *wrong += h[i] != want;
        }
        break;
    case PB_COLL_ALL_GATHER:
        PB_TRY(get(p, p->c, count * (size_t)n, &h));
        corrupt(p, c, h);
        for (size_t i = 0; i < count * (size_t)n; i++) *wrong += h[i] != val((int)(i / count), i % count);
        break;
    case PB_COLL_SENDRECV:
        PB_TRY(get(p, p->c, count, &h));
        corrupt(p, c, h);
        for (size_t i = 0; i < count; i++) *wrong += h[i] != val(prev, i);
        break;
    case PB_COLL_COUNT: break;
    }
cleanup:
    return st;
}

/* --- the writer's side: a row per size, the table, the fit ------------------- */

static const char *redop(pb_coll c) { return c == PB_COLL_ALL_REDUCE || c == PB_COLL_REDUCE_SCATTER ? "sum" : "none"; }
static int root_of(pb_coll c) { return c == PB_COLL_BROADCAST ? 0 : -1; }

static void table_head(const bench *b, pb_coll c)
{
    printf("#\n# %s (%s), %d ranks, comm %s, backend %s\n", pb_coll_name(c),
           c == PB_COLL_ALL_REDUCE || c == PB_COLL_BROADCAST ? "in place" : "out of place", ranks_of(b), b->o->comm,
           b->o->backend);
    printf("#%11s  %12s  %8s  %6s  %6s  %9s  %7s  %7s  %6s\n", "size", "count", "type", "redop", "root", "time",
           "algbw", "busbw", "#wrong");
    printf("#%11s  %12s  %8s  %6s  %6s  %9s  %7s  %7s  %6s\n", "(B)", "(elements)", "", "", "", "(us)", "(GB/s)",
           "(GB/s)", "");
}

/* Fills the configuration and environment columns every row shares. */
static void row_common(const bench *b, const pb_record *env, pb_comm_record *r, pb_coll c, const char *record)
{
    memset(r, 0, sizeof *r);
    static const struct {
        pb_comm_column to;
        pb_column from;
    } envs[] = {{PB_CC_TIME_UTC, PB_COL_TIME_UTC}, {PB_CC_HOST, PB_COL_HOST},         {PB_CC_CPU_MODEL, PB_COL_CPU_MODEL},
                {PB_CC_GPU_NAME, PB_COL_GPU_NAME}, {PB_CC_DRIVER, PB_COL_DRIVER},     {PB_CC_CUDA_RUNTIME, PB_COL_CUDA_RUNTIME},
                {PB_CC_NCCL, PB_COL_NCCL},         {PB_CC_COMPILER, PB_COL_COMPILER}, {PB_CC_GIT_REV, PB_COL_GIT_REV}};
    for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++)
        pb_comm_record_set(r, envs[i].to, "%s", env->v[envs[i].from]);
    pb_comm_record_set(r, PB_CC_STATUS, "ok");
    pb_comm_record_set(r, PB_CC_RECORD, "%s", record);
    pb_comm_record_set(r, PB_CC_COLLECTIVE, "%s", pb_coll_name(c));
    pb_comm_record_set(r, PB_CC_COMM, "%s", b->o->comm);
    pb_comm_record_set(r, PB_CC_BACKEND, "%s", b->o->backend);
    pb_comm_record_set(r, PB_CC_RANKS, "%d", ranks_of(b));
    pb_comm_record_set(r, PB_CC_NODES, "%d", b->ranks_comm ? b->world.nodes : 1);
    pb_comm_record_set(r, PB_CC_ITERS, "%d", b->o->iters);
    pb_comm_record_set(r, PB_CC_WARMUP, "%d", b->o->warmup);
    if (b->ranks_comm) pb_comm_record_set(r, PB_CC_MPI, "%s", b->world.version);
}

/* A size measured: slowest[] per repeat (ms) and the wrong elements. */
static bool add_size(bench *b, const pb_record *env, pb_coll c, size_t bytes, size_t count, long long wrong,
                     double *t_us)
{
    const pb_commbench_opts *o = b->o;
    pb_stats s;
    pb_stats_compute(b->slowest, (size_t)o->iters, b->scratch, &s);
    double factor = pb_busbw_factor(c, ranks_of(b)), t = s.p50 * 1e3;
    double algbw = (double)bytes / (t * 1e-6) / 1e9;
    *t_us = t;
    char wrong_text[32];
    snprintf(wrong_text, sizeof wrong_text, "%lld", wrong);
    printf(" %11zu  %12zu  %8s  %6s  %6d  %9.2f  %7.2f  %7.2f  %6s%s\n", bytes, count, "float", redop(c), root_of(c),
           t, algbw, algbw * factor, wrong ? wrong_text : "0", wrong ? "  failed" : "");
    fflush(stdout);
    pb_comm_record r;
    row_common(b, env, &r, c, "size");
    pb_comm_record_set(&r, PB_CC_BYTES, "%zu", bytes);
    pb_comm_record_set(&r, PB_CC_ELEMENTS, "%zu", count);
    pb_comm_record_set(&r, PB_CC_TYPE, "float");
    pb_comm_record_set(&r, PB_CC_REDOP, "%s", redop(c));
    pb_comm_record_set(&r, PB_CC_ROOT, "%d", root_of(c));
    pb_comm_record_num(&r, PB_CC_TIME_US_P50, t);
    pb_comm_record_num(&r, PB_CC_TIME_US_MIN, s.min * 1e3);
    pb_comm_record_num(&r, PB_CC_TIME_US_MAX, s.max * 1e3);
    pb_comm_record_num(&r, PB_CC_TIME_US_MEAN, s.mean * 1e3);
    pb_comm_record_num(&r, PB_CC_TIME_US_CV, o->iters > 1 ? s.cv : NAN);
    pb_comm_record_num(&r, PB_CC_ALGBW_GBPS, algbw);
    pb_comm_record_num(&r, PB_CC_BUSBW_GBPS, algbw * factor);
    pb_comm_record_num(&r, PB_CC_BUSBW_FACTOR, factor);
    pb_comm_record_set(&r, PB_CC_WRONG, "%lld", wrong);
    if (wrong) {
        pb_comm_record_set(&r, PB_CC_STATUS, "failed");
        pb_comm_record_set(&r, PB_CC_ERROR, "%lld of the result's elements wrong", wrong);
        b->failed_rows++;
        b->wrong_total += wrong;
    }
    return pb_comm_record_add(&b->rows, &b->rows_len, &b->rows_cap, &r);
}

static bool add_fit(bench *b, const pb_record *env, pb_coll c, const double *bytes, const double *t_us, int n)
{
    pb_fit_segment seg[PB_FIT_MAX_SEGMENTS];
    int k = pb_fit_alpha_beta(bytes, t_us, n, seg);
    double factor = pb_busbw_factor(c, ranks_of(b));
    for (int i = 0; i < k; i++) {
        char beta[64] = "- (time does not grow with size)";
        if (isfinite(seg[i].beta_gbps))
            snprintf(beta, sizeof beta, "%.3g GB/s (busbw %.3g GB/s)", seg[i].beta_gbps, seg[i].beta_gbps * factor);
        printf("# fit %s: %.0f to %.0f B: alpha %.2f us, beta %s, rms %.1f%% over %d sizes\n", pb_coll_name(c),
               seg[i].bytes_lo, seg[i].bytes_hi, seg[i].alpha_us, beta, 100.0 * seg[i].rel_rms, seg[i].points);
        pb_comm_record r;
        row_common(b, env, &r, c, "fit");
        pb_comm_record_set(&r, PB_CC_SEGMENT, "%d", i);
        pb_comm_record_num(&r, PB_CC_BYTES_LO, seg[i].bytes_lo);
        pb_comm_record_num(&r, PB_CC_BYTES_HI, seg[i].bytes_hi);
        pb_comm_record_num(&r, PB_CC_ALPHA_US, seg[i].alpha_us);
        pb_comm_record_num(&r, PB_CC_BETA_GBPS, seg[i].beta_gbps);
        pb_comm_record_num(&r, PB_CC_FIT_BUSBW_GBPS, seg[i].beta_gbps * factor);
        pb_comm_record_num(&r, PB_CC_FIT_REL_RMS, seg[i].rel_rms);
        pb_comm_record_num(&r, PB_CC_BUSBW_FACTOR, factor);
        if (!pb_comm_record_add(&b->rows, &b->rows_len, &b->rows_cap, &r)) return false;
    }
    fflush(stdout);
    return true;
}

/* --- a participant's sweep ------------------------------------------------------ */

/* The slowest participant per repeat and the wrong elements of all, to the
 * writer. Every participant calls it. */
static pb_status gather(part *p, long long wrong, long long *wrong_all)
{
    bench *b = p->b;
    pb_status st = PB_OK;
    int iters = b->o->iters;
    p->wrong = wrong;
    if (b->ranks_comm) {
        int n = ranks_of(b);
        double *w = NULL;
        PB_TRY(pb_world_max_to_root(p->ms, iters));
        PB_ALLOC(w, n);
        w[p->rank] = (double)wrong;
        st = pb_world_max_to_root(w, n);
        *wrong_all = 0;
        for (int i = 0; i < n; i++) *wrong_all += (long long)w[i];
        free(w);
        if (st != PB_OK) goto cleanup;
        memcpy(b->slowest, p->ms, (size_t)iters * sizeof *p->ms);
        return PB_OK;
    }
    if (!barrier(b)) return pb_user_error(PB_ERR_COMM, "another participant failed");
    if (p->rank == 0) {
        *wrong_all = 0;
        for (int k = 0; k < iters; k++) b->slowest[k] = 0;
        for (int i = 0; i < b->nlocal; i++) {
            *wrong_all += b->parts[i].wrong;
            for (int k = 0; k < iters; k++)
                if (b->parts[i].ms[k] > b->slowest[k]) b->slowest[k] = b->parts[i].ms[k];
        }
    }
    /* nobody writes its ms again before the writer has read them */
    if (!barrier(b)) return pb_user_error(PB_ERR_COMM, "another participant failed");
cleanup:
    return st;
}

static pb_status sweep(part *p)
{
    bench *b = p->b;
    const pb_commbench_opts *o = b->o;
    pb_status st = PB_OK;
    bool writer = p->rank == 0;
    pb_record *env = NULL;
    double bytes[PB_COMMBENCH_MAX_SIZES], t_us[PB_COMMBENCH_MAX_SIZES];
    if (writer) {
        PB_ALLOC(env, 1);
        pb_env_fill(env, b->be, &b->info, ranks_of(b));
    }
    for (int ci = 0; ci < PB_COLL_COUNT; ci++) {
        pb_coll c = (pb_coll)ci;
        if (!o->coll[c]) continue;
        if (writer) table_head(b, c);
        int points = 0;
        for (int si = 0; si < o->n_sizes; si++) {
            size_t eff, count = coll_count(c, o->sizes[si], ranks_of(b), &eff);
            if (count == 0) continue; /* below one element per rank: nothing to move */
            /* the timed data: zeros, so repeated sums stay finite */
            PB_TRY(b->be->zero(p->dev, p->a, eff));
            for (int k = 0; k < o->warmup + o->iters; k++) {
                PB_TRY(line_up(p));
                double t0 = pb_now_ms();
                PB_TRY(run_op(p, c, count));
                if (k >= o->warmup) p->ms[k - o->warmup] = pb_now_ms() - t0;
            }
            long long wrong = 0, wrong_all = 0;
            PB_TRY(check(p, c, count, &wrong));
            PB_TRY(gather(p, wrong, &wrong_all));
            if (!writer) continue;
            bytes[points] = (double)eff;
            PB_REQUIRE(add_size(b, env, c, eff, count, wrong_all, &t_us[points]), PB_ERR_NOMEM,
                       "host allocation for the rows failed");
            if (b->busbw_out) b->busbw_out[si] = (double)eff / t_us[points] / 1e3 * pb_busbw_factor(c, ranks_of(b));
            points += wrong_all == 0; /* the fit is of right results only */
        }
        if (writer)
            PB_REQUIRE(add_fit(b, env, c, bytes, t_us, points), PB_ERR_NOMEM, "host allocation for the rows failed");
    }
cleanup:
    free(env);
    return st;
}

/* --- participants: set up, run, torn down ---------------------------------------- */

static pb_status part_open(part *p, int ordinal, size_t top)
{
    bench *b = p->b;
    pb_status st = PB_OK;
    pb_config cfg;
    pb_config_defaults(&cfg);
    pb_device_opts dev_opts = pb_config_device_opts(&cfg);
    dev_opts.threads = 1; /* a reduction's adds are memory-bound */
    PB_ALLOC(p->ms, b->o->iters);
    PB_TRY(b->be->open(&dev_opts, ordinal, &p->dev));
    PB_TRY(b->be->alloc(p->dev, top, &p->a));
    PB_TRY(b->be->alloc(p->dev, top, &p->c));
    PB_TRY(b->be->alloc(p->dev, 64, &p->tiny));
    PB_TRY(b->be->zero(p->dev, p->tiny, 64));
    PB_TRY(b->be->zero(p->dev, p->c, top));
    if (!b->be->host_is_device) PB_CHECK_ALLOC(p->host = malloc(top), top);
    if (p->rank == 0) PB_TRY(b->be->info(p->dev, &b->info));
cleanup:
    return st;
}

static void part_close(part *p)
{
    const pb_backend *be = p->b->be;
    if (p->ctx) p->b->comm->destroy(p->ctx);
    if (p->dev) {
        if (p->a) be->free(p->dev, p->a);
        if (p->c) be->free(p->dev, p->c);
        if (p->tiny) be->free(p->dev, p->tiny);
        be->close(p->dev);
    }
    free(p->host);
    free(p->ms);
}

/* The largest buffer any collective needs at the largest size. */
static size_t top_bytes(const pb_commbench_opts *o)
{
    size_t top = o->sizes[o->n_sizes - 1];
    return top < 64 ? 64 : top;
}

static void *local_thread(void *arg)
{
    part *p = arg;
    p->st = sweep(p);
    if (p->st != PB_OK) {
        snprintf(p->err, sizeof p->err, "%s", pb_error_message());
        pb_error_clear();
        if (p->b->comm->abort) p->b->comm->abort(p->ctx); /* the others stop waiting for it */
        break_barrier(p->b);
    }
    return NULL;
}

/* `local`: a thread per participant, set up from this one. */
static pb_status run_local(bench *b)
{
    pb_status st = PB_OK;
    int n = ranks_of(b), started = 0;
    pthread_t *th = NULL;
    b->nlocal = n;
    PB_ALLOC(b->parts, n);
    PB_ALLOC(th, n);
    for (int i = 0; i < n; i++) {
        b->parts[i] = (part){.b = b, .rank = i};
        PB_TRY(part_open(&b->parts[i], i, top_bytes(b->o)));
    }
    for (int i = 0; i < n; i++)
        PB_TRY(b->comm->init(&b->copts, b->be, b->parts[i].dev, i, n, &b->parts[i].ctx));
    for (; started < n; started++)
        PB_REQUIRE(pthread_create(&th[started], NULL, local_thread, &b->parts[started]) == 0, PB_ERR_INTERNAL,
                   "cannot start a participant's thread");
cleanup:
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    /* the first failure is the one to tell; a participant that was only
     * stopped by it says "another participant failed" */
    for (int i = 0; st == PB_OK && i < started; i++)
        if (b->parts[i].st != PB_OK && !strstr(b->parts[i].err, "another participant failed"))
            st = pb_user_error(b->parts[i].st, "participant %d: %s", i, b->parts[i].err);
    for (int i = 0; st == PB_OK && i < started; i++)
        if (b->parts[i].st != PB_OK) st = pb_user_error(b->parts[i].st, "participant %d: %s", i, b->parts[i].err);
    for (int i = 0; b->parts && i < n; i++) part_close(&b->parts[i]);
    free(th);
    return st;
}

/* mpi, nccl: this process is one rank of the MPI world. */
static pb_status run_rank(bench *b)
{
    pb_status st = PB_OK;
    int ordinal = 0, visible = INT32_MAX;
    b->nlocal = 1;
    PB_ALLOC(b->parts, 1);
    b->parts[0] = (part){.b = b, .rank = b->world.rank};
    if (b->be->is_gpu) {
        char why[256] = "";
        visible = b->be->device_count(why, sizeof why);
        PB_REQUIRE(visible > 0, PB_ERR_UNAVAILABLE, "--backend cuda: no usable CUDA device on this node: %s", why);
    }
    pb_rank_view v = {.visible = visible, .local_rank = b->world.local_rank, .local_ranks = b->world.local_ranks,
                      .rank = b->world.rank, .cuda_visible = getenv("CUDA_VISIBLE_DEVICES")};
    PB_TRY(pb_rank_device(&v, &ordinal));
    PB_TRY(part_open(&b->parts[0], ordinal, top_bytes(b->o)));
    PB_TRY(b->comm->init(&b->copts, b->be, b->parts[0].dev, b->world.rank, b->world.ranks, &b->parts[0].ctx));
    PB_TRY(sweep(&b->parts[0]));
cleanup:
    if (st != PB_OK && b->world.ranks > 1) {
        /* the others may be inside a collective with this rank */
        pb_log_error("%s", pb_error_message());
        pb_log_error("ending all %d ranks", b->world.ranks);
        pb_world_abort(pb_status_exit_code(st));
    }
    if (b->parts) part_close(&b->parts[0]);
    return st;
}

/* Rank 0 appends every row in one write, unless the job's launcher is gone. */
static pb_status write_rows(bench *b)
{
    pb_status st = pb_launch_may_write();
    if (st == PB_OK && b->rows_len) st = pb_results_append_rows(b->o->out, pb_comm_csv_header(), b->rows);
    if (st == PB_OK) pb_launch_report("row");
    if (st == PB_OK && !b->o->quiet)
        pb_log_info("comm: %d ranks, comm %s: rows appended to %s", ranks_of(b), b->o->comm, b->o->out);
    if (st == PB_OK && b->wrong_total)
        st = pb_user_error(PB_ERR_INVALID, "comm: %lld wrong result elements in %d size%s (their rows say "
                                           "failed)",
                           b->wrong_total, b->failed_rows, b->failed_rows == 1 ? "" : "s");
    return st;
}

/* The group's state for o: bench_open, then bench_close whatever happened. */
static pb_status bench_open(bench *b, const pb_commbench_opts *o)
{
    pb_status st = PB_OK;
    *b = (bench){.o = o, .be = pb_find_backend(o->backend), .comm = pb_find_comm(o->comm)};
    b->copts = (pb_comm_opts){.timeout_s = o->timeout_s};
    b->ranks_comm = b->comm && b->comm->between_ranks;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    PB_REQUIRE(b->be && b->comm, PB_ERR_INTERNAL, "unresolved backend or comm");
    PB_ALLOC(b->slowest, o->iters);
    PB_ALLOC(b->scratch, o->iters);
cleanup:
    return st;
}

static void bench_close(bench *b)
{
    free(b->slowest);
    free(b->scratch);
    free(b->rows);
    free(b->parts);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

static pb_status measure(const pb_commbench_opts *o)
{
    bench b;
    pb_status st = bench_open(&b, o);
    if (st != PB_OK) goto cleanup;
    if (b.ranks_comm) {
        PB_TRY(pb_world_init(&b.world));
        pb_log_set_rank(b.world.rank, b.world.ranks);
        if (b.world.ranks != o->ranks) {
            st = pb_usage_error("--gpus %d, but this MPI launch has %d ranks; bench comm runs one rank per device",
                                o->ranks, b.world.ranks);
            pb_world_finalize();
            goto cleanup;
        }
        st = run_rank(&b);
    } else {
        st = run_local(&b);
    }
    bool writer = !b.ranks_comm || b.world.rank == 0;
    if (st == PB_OK && writer) st = write_rows(&b);
    if (b.ranks_comm) {
        /* rank 0's outcome, so no rank finalizes while rank 0 still writes */
        int code = pb_status_exit_code(st);
        pb_status bst = pb_world_bcast_int_lazy(&code);
        if (bst != PB_OK && st == PB_OK) st = bst;
        pb_world_finalize();
    }
cleanup:
    bench_close(&b);
    return st;
}

pb_status pb_commbench_sweep_world(const pb_commbench_opts *o, const pb_world *w, double *busbw_gbps)
{
    bench b;
    pb_status st = bench_open(&b, o);
    if (st == PB_OK && !b.ranks_comm) st = pb_error(PB_ERR_INTERNAL, "comm %s does not run between ranks", o->comm);
    if (st == PB_OK) {
        b.world = *w;
        b.busbw_out = busbw_gbps;
        st = run_rank(&b);
    }
    bench_close(&b);
    return st;
}

/* --- the command ------------------------------------------------------------------- */

static int report(pb_status st)
{
    if (st != PB_OK) pb_log_error("%s", pb_error_message());
    return pb_status_exit_code(st);
}

int pb_commbench_relaunch(const pb_config *cfg, int main_argc, char **main_argv, char *const *extra, int n_extra)
{
    char **args = calloc((size_t)main_argc + (size_t)n_extra + 1, sizeof *args);
    if (!args) return report(pb_host_nomem(((size_t)main_argc + (size_t)n_extra + 1) * sizeof *args));
    int n = 0;
    for (int i = 0; i < main_argc; i++) args[n++] = main_argv[i];
    for (int i = 0; i < n_extra; i++) args[n++] = extra[i];
    bool parent = false;
    int code = pb_supervise_launch(cfg, &parent);
    if (parent) {
        free(args);
        return code;
    }
    pb_status st = pb_launch(cfg, n, args); /* returns only on failure */
    free(args);
    return report(st);
}

int pb_commbench_main(int argc, char **argv, int main_argc, char **main_argv)
{
    pb_commbench_opts o;
    bool help = false;
    pb_status st = pb_commbench_parse(argc, argv, &o, &help);
    if (st == PB_OK && help) {
        pb_commbench_print_help();
        return 0;
    }
    if (st != PB_OK) return report(st);
    const pb_comm *comm = pb_find_comm(o.comm);
    if (comm->between_ranks && !pb_launch_inside()) {
        /* the launcher's sizes go to the ranks as given, so that none of
         * them decides from its own view of the host's memory */
        char sizes[64];
        snprintf(sizes, sizeof sizes, "%zu:%zu", o.sizes[0], o.sizes[o.n_sizes - 1]);
        char *extra[] = {"--sizes", sizes};
        pb_config cfg;
        pb_config_defaults(&cfg);
        snprintf(cfg.strategy, sizeof cfg.strategy, "comm");
        snprintf(cfg.backend, sizeof cfg.backend, "%s", o.backend);
        snprintf(cfg.out, sizeof cfg.out, "%s", o.out);
        cfg.devices = o.ranks;
        cfg.quiet = o.quiet;
        cfg.timeout_s = o.timeout_s;
        /* the backstop counts steps: here every operation of the sweep */
        double ops = (double)PB_COLL_COUNT * o.n_sizes * (o.warmup + o.iters + 2) * 2;
        cfg.warmup = 0;
        cfg.iters = ops > 1e6 ? 1000000 : (int)ops;
        return pb_commbench_relaunch(&cfg, main_argc, main_argv, extra, o.sizes_given ? 0 : 2);
    }
    if (comm->between_ranks) {
        pb_config cfg;
        pb_config_defaults(&cfg);
        snprintf(cfg.strategy, sizeof cfg.strategy, "comm");
        cfg.devices = o.ranks;
        if ((st = pb_launch(&cfg, main_argc, main_argv)) != PB_OK) return report(st);
    }
    return report(measure(&o));
}
