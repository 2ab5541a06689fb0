/* bench check: the command line, the measurements of each rank and pair,
 * and the ranks' figures brought to rank 0 (check.h; docs/check.md).
 * harness/check_report.c judges them and writes the table and the rows. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "check_report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commbench.h"
#include "config.h"
#include "cpu_stall.h"
#include "devmap.h"
#include "launch.h"
#include "log.h"
#include "parse.h"
#include "registry.h"
#include "results.h"
#include "timer.h"

/* Repeats: the best of PAIR_ITERS exchanges per size and of MEM_ITERS
 * copies after untimed ones, as STREAM reports its best rate: a slow device
 * or link is slow in every repeat, where a busy neighbour slows only some.
 * Where the ranks share the host's cores (cpu) the whole measurement runs
 * SHARED_PASSES times, the ranks taking turns, and each figure is its best
 * pass, so that other load on the host (a CI machine's other jobs) is
 * spread over every rank rather than falling on one. */
#define PAIR_WARMUP 1
#define PAIR_ITERS 5
#define MEM_WARMUP 1
#define MEM_ITERS 5
#define SHARED_PASSES 2
#define MIB ((size_t)1 << 20)

/* Sizes per backend: host memory moves at GB/s and a CPU's link is its
 * memory, so 8 MiB is past the latency-bound sizes there; a GPU's links
 * need hundreds of MiB to reach their bandwidth. */
static const size_t cpu_sizes[PB_CHECK_SIZES] = {64 << 10, 1 << 20, 8 << 20};
static const size_t gpu_sizes[PB_CHECK_SIZES] = {1 << 20, 16 << 20, 256 << 20};
#define CPU_MEM_BYTES (32 * MIB)
#define GPU_MEM_BYTES (512 * MIB)

/* --- the command line ---------------------------------------------------------- */

static void print_help(void)
{
    printf("usage: bench check [flags]\n\n"
           "A short all-ranks health check (docs/check.md): each rank's device GEMM peak and\n"
           "memory bandwidth, every rank pair's send/recv bandwidth (within and across nodes),\n"
           "one all-reduce sweep; a table with the outliers marked, rows in a CSV. Exit 1 when\n"
           "a device or link is below --min-fraction of its peers' median, else 0.\n\n"
           "flags (default in brackets):\n");
    printf("  %-22s %s\n", "--comm NAME", "mpi (CPU ranks) or nccl (GPU ranks), a rank per device under mpirun "
                                         "[auto: nccl on a usable GPU when built, else mpi]");
    printf("  %-22s %s\n", "--backend NAME", "cpu or cuda [auto: cuda for nccl, else cpu]");
    printf("  %-22s %s\n", "--gpus N, --ranks N", "ranks, 2 to 4096 [2]");
    printf("  %-22s %s\n", "--min-fraction F", "an outlier is below F x its peers' median, 0 < F < 1 [0.8]");
    printf("  %-22s %s\n", "--timeout S", "seconds a rank may wait for another before the run fails, 1 to 86400 [60]");
    printf("  %-22s %s\n", "--stall-seconds S", "cpu: spin every core this long to find a CPU quota's stalls, 0 (off) "
                                               "to 600 [3]");
    printf("  %-22s %s\n", "--out PATH", "CSV the rows are appended to [results/check.csv]");
    printf("  %-22s %s\n", "--quiet", "no progress lines on stderr [off]");
    printf("  %-22s %s\n", "--help", "this text");
    printf("\nexample:\n  bench check --comm mpi --ranks 2 --out results/check.csv\n");
}

/* TEST-ONLY: PB_CHECK_FAULT="gemm:R", "mem:R" or "link:A-B" makes rank R's
 * GEMM peak or memory bandwidth a tenth of what it measured (as a device
 * at a tenth of its clocks), or stretches every timed exchange of pair A-B
 * to ten times its length (rank A sleeps nine times it): the slow
 * device or link the check must flag (tests/e2e/test_check.c). */
static pb_status parse_fault(pb_check_opts *o)
{
    const char *f = getenv("PB_CHECK_FAULT");
    o->fault_rank = o->fault_peer = -1;
    o->fault_kind = 0;
    if (!f || !*f) return PB_OK;
    int a = -1, b = -1, used = 0;
    if (sscanf(f, "gemm:%d%n", &a, &used) == 1 && !f[used]) o->fault_kind = PB_CHECK_GEMM;
    else if (sscanf(f, "mem:%d%n", &a, &used) == 1 && !f[used]) o->fault_kind = PB_CHECK_MEM;
    else if (sscanf(f, "link:%d-%d%n", &a, &b, &used) == 2 && !f[used] && b >= 0 && a != b) o->fault_kind = PB_CHECK_LINK;
    if (o->fault_kind == 0 || a < 0 || a >= o->comm.ranks || b >= o->comm.ranks)
        return pb_usage_error("PB_CHECK_FAULT: '%s'; allowed: gemm:R, mem:R or link:A-B with ranks below %d "
                              "(test-only; docs/check.md)",
                              f, o->comm.ranks);
    o->fault_rank = a;
    o->fault_peer = b;
    return PB_OK;
}

static pb_status check_flag(void *ctx, int k, const char *name, const char *value)
{
    pb_check_opts *o = ctx;
    double d = 0;
    if (k <= 1) {
        if (strlen(value) >= sizeof o->comm.comm) return pb_usage_error("%s: unknown '%s'", name, value);
        snprintf(k == 0 ? o->comm.comm : o->comm.backend, sizeof o->comm.comm, "%s", value);
        return PB_OK;
    }
    if (k <= 3) return pb_commbench_parse_ranks(name, value, &o->comm.ranks);
    if (k == 4) {
        if (!pb_parse_double(value, &d) || !(d > 0 && d < 1))
            return pb_usage_error("--min-fraction: '%s' is out of range; allowed: a number above 0 and below 1", value);
        o->min_fraction = d;
        return PB_OK;
    }
    if (k == 5) return pb_commbench_parse_timeout(value, &o->comm.timeout_s);
    if (k == 7) {
        if (!pb_parse_double(value, &d) || !(d >= 0 && d <= 600))
            return pb_usage_error("--stall-seconds: '%s' is out of range; allowed: 0 (off) to 600", value);
        o->stall_seconds = d;
        return PB_OK;
    }
    return pb_commbench_parse_out(value, o->comm.out, sizeof o->comm.out);
}

static pb_status parse_flags(int argc, char **argv, pb_check_opts *o, bool *help)
{
    static const char *const with_value[] = {"--comm",    "--backend", "--gpus",          "--ranks", "--min-fraction",
                                             "--timeout", "--out",     "--stall-seconds", NULL};
    return pb_commbench_walk_flags(argc, argv, "check", with_value, &o->comm.quiet, help, check_flag, o);
}

static pb_status parse(int argc, char **argv, pb_check_opts *o, bool *help)
{
    memset(o, 0, sizeof *o);
    pb_commbench_opts *c = &o->comm;
    snprintf(c->comm, sizeof c->comm, "auto");
    snprintf(c->backend, sizeof c->backend, "auto");
    c->ranks = 2;
    c->iters = PAIR_ITERS;
    c->warmup = PAIR_WARMUP;
    c->timeout_s = 60.0;
    c->coll[PB_COLL_ALL_REDUCE] = true;
    snprintf(c->out, sizeof c->out, "results/check.csv");
    o->min_fraction = 0.8;
    o->stall_seconds = 3;
    *help = false;
    pb_status st = parse_flags(argc, argv, o, help);
    if (st != PB_OK || *help) return st;
    pb_log_set_quiet(c->quiet);
    pb_launch_set_log_rank();
    bool local_given = strcmp(c->comm, "local") == 0;
    if ((st = pb_commbench_resolve(c)) != PB_OK) return st;
    if (local_given) return pb_usage_error("--comm local: bench check runs a rank per device; allowed: mpi, nccl");
    if (strcmp(c->comm, "local") == 0) /* auto found neither */
        return pb_user_error(PB_ERR_UNAVAILABLE, "bench check runs a rank per device over MPI: %s", PB_NO_MPI);
    if ((st = parse_fault(o)) != PB_OK) return st;
    bool gpu = strcmp(c->backend, "cpu") != 0;
    c->n_sizes = PB_CHECK_SIZES;
    for (int i = 0; i < PB_CHECK_SIZES; i++) c->sizes[i] = gpu ? gpu_sizes[i] : cpu_sizes[i];
    c->sizes_given = true;
    o->mem_bytes = gpu ? GPU_MEM_BYTES : CPU_MEM_BYTES;
    return pb_results_check_target_of(c->out, pb_check_csv_header());
}

/* --- a rank's measurements ---------------------------------------------------------- */

typedef struct rank_ctx {
    const pb_check_opts *o;
    const pb_backend *be;
    const pb_comm *comm;
    pb_world w;
    pb_device *dev;
    pb_comm_ctx *ctx;
    void *a, *c, *tiny;
    double *ms; /* per repeat */
} rank_ctx;

static pb_status wait2(rank_ctx *r, pb_comm_req *x, pb_comm_req *y)
{
    pb_status st = x ? r->comm->wait(r->ctx, x, r->o->comm.timeout_s) : PB_OK;
    if (st == PB_OK && y) st = r->comm->wait(r->ctx, y, r->o->comm.timeout_s);
    return st;
}

/* Both directions at once: a recv from peer, a send to it. */
static pb_status exchange(rank_ctx *r, int peer, const void *src, void *dst, size_t bytes)
{
    pb_comm_req *rr = NULL, *sr = NULL;
    pb_status st = r->comm->recv(r->ctx, dst, bytes, peer, &rr);
    if (st == PB_OK) st = r->comm->send(r->ctx, src, bytes, peer, &sr);
    if (st == PB_OK) st = wait2(r, rr, sr);
    return st;
}

/* Every rank arrives, by sends and recvs to and from rank 0 rather than a
 * collective: a rank waiting here sleeps on its request (the mpi comm's
 * thread polls it), where a blocking MPI collective would spin on the cores
 * the measuring rank needs (the cpu backend's ranks share them). */
static pb_status lazy_barrier(rank_ctx *r)
{
    pb_status st = PB_OK;
    char *in = (char *)r->tiny + 32;
    if (r->w.rank == 0) {
        for (int q = 1; q < r->w.ranks; q++) {
            pb_comm_req *req = NULL;
            PB_TRY(r->comm->recv(r->ctx, in, 4, q, &req));
            PB_TRY(wait2(r, req, NULL));
        }
        for (int q = 1; q < r->w.ranks; q++) {
            pb_comm_req *req = NULL;
            PB_TRY(r->comm->send(r->ctx, r->tiny, 4, q, &req));
            PB_TRY(wait2(r, req, NULL));
        }
    } else {
        pb_comm_req *req = NULL;
        PB_TRY(r->comm->send(r->ctx, r->tiny, 4, 0, &req));
        PB_TRY(wait2(r, req, NULL));
        PB_TRY(r->comm->recv(r->ctx, in, 4, 0, &req));
        PB_TRY(wait2(r, req, NULL));
    }
cleanup:
    return st;
}

static double best(const double *v, int n)
{
    double b = v[0];
    for (int i = 1; i < n; i++) b = v[i] < b ? v[i] : b;
    return b;
}

static void sleep_ms(double ms)
{
    struct timespec ts = {(time_t)(ms / 1e3), (long)(fmod(ms, 1e3) * 1e6)};
    nanosleep(&ts, NULL);
}

static bool faulted(const rank_ctx *r, pb_check_metric m) { return r->o->fault_kind == (int)m && r->w.rank == r->o->fault_rank; }

/* GEMM TFLOP/s (the calibration's square GEMM) and copy GB/s. */
static pb_status measure_device(rank_ctx *r, double *tflops, double *gbps)
{
    pb_status st = PB_OK;
    size_t bytes = r->o->mem_bytes;
    *tflops = *gbps = NAN;
    if (r->be->calibrate) PB_TRY(r->be->calibrate(r->dev, tflops));
    for (int k = 0; k < MEM_WARMUP + MEM_ITERS; k++) {
        PB_TRY(r->be->synchronize(r->dev));
        double t0 = pb_now_ms();
        PB_TRY(r->be->copy(r->dev, r->c, r->a, bytes));
        PB_TRY(r->be->synchronize(r->dev));
        if (k >= MEM_WARMUP) r->ms[k - MEM_WARMUP] = pb_now_ms() - t0;
    }
    /* STREAM's copy counts the bytes read and the bytes written */
    *gbps = 2.0 * (double)bytes / (best(r->ms, MEM_ITERS) * 1e-3) / 1e9;
    if (faulted(r, PB_CHECK_GEMM)) *tflops /= PB_CHECK_FAULT_FACTOR;
    if (faulted(r, PB_CHECK_MEM)) *gbps /= PB_CHECK_FAULT_FACTOR;
cleanup:
    return st;
}

/* One pair, from this rank's side: per size, the best exchange in ms
 * (ms_per_size keeps the best of the passes; 0: none yet). */
static pb_status measure_pair(rank_ctx *r, int peer, double *ms_per_size)
{
    pb_status st = PB_OK;
    const pb_check_opts *o = r->o;
    bool stretch = o->fault_kind == (int)PB_CHECK_LINK && r->w.rank == o->fault_rank && peer == o->fault_peer;
    for (int s = 0; s < o->comm.n_sizes; s++) {
        for (int k = 0; k < PAIR_WARMUP + PAIR_ITERS; k++) {
            /* the two start together */
            PB_TRY(exchange(r, peer, r->tiny, (char *)r->tiny + 32, 4));
            double t0 = pb_now_ms();
            PB_TRY(exchange(r, peer, r->a, r->c, o->comm.sizes[s]));
            double dt = pb_now_ms() - t0;
            if (stretch) {
                sleep_ms((PB_CHECK_FAULT_FACTOR - 1) * dt);
                dt *= PB_CHECK_FAULT_FACTOR;
            }
            if (k >= PAIR_WARMUP) r->ms[k - PAIR_WARMUP] = dt;
        }
        double ms = best(r->ms, PAIR_ITERS);
        if (ms_per_size[s] == 0 || ms < ms_per_size[s]) ms_per_size[s] = ms;
    }
cleanup:
    return st;
}

/* Rank x's partner in round k: the circle method (every pair once in
 * n-1 rounds, n rounded up to even; -1: a bye), or, where the ranks share
 * the host's cores (cpu), one pair per round so that no two pairs contend. */
static int partner(int x, int k, int n, bool one_pair, int *rounds)
{
    if (one_pair) {
        *rounds = n * (n - 1) / 2;
        int i = 0, j = 1;
        for (int q = 0; q < k; q++)
            if (++j == n) j = ++i + 1;
        return x == i ? j : x == j ? i : -1;
    }
    int m = n + n % 2;
    *rounds = m - 1;
    int p;
    if (x == m - 1) p = k;
    else if (x == k) p = m - 1;
    else p = ((2 * k - x) % (m - 1) + (m - 1)) % (m - 1);
    return p < n ? p : -1;
}

/* Everything of this rank, then the maxima to rank 0: f's arrays hold this
 * rank's entries and zeros elsewhere before. */
static pb_status measure_rank(rank_ctx *r, pb_check_figures *f)
{
    pb_status st = PB_OK;
    int n = r->w.ranks, me = r->w.rank, rounds = 0;
    bool shared = r->be->host_is_device; /* the ranks' devices are the same cores */
    if (!r->o->comm.quiet)
        pb_log_info("check: %d ranks: GEMM and memory%s, then the pairs, then an all-reduce sweep", n,
                    shared ? " one rank at a time (they share the host's cores)" : "");
    int passes = shared ? SHARED_PASSES : 1;
    for (int pass = 0; pass < passes; pass++)
        for (int q = 0; q < (shared ? n : 1); q++) {
            double tflops = NAN, gbps = NAN;
            if (!shared || q == me) {
                PB_TRY(measure_device(r, &tflops, &gbps));
                if (!(f->gemm[me] >= tflops)) f->gemm[me] = tflops;
                if (!(f->mem[me] >= gbps)) f->mem[me] = gbps;
            }
            if (shared) PB_TRY(lazy_barrier(r));
        }
    partner(0, 0, n, shared, &rounds);
    for (int pass = 0; pass < passes; pass++)
        for (int k = 0; k < rounds; k++) {
            int p = partner(me, k, n, shared, &rounds);
            if (p >= 0) PB_TRY(measure_pair(r, p, &f->pair_ms[((size_t)me * n + p) * PB_CHECK_SIZES]));
            PB_TRY(lazy_barrier(r));
        }
    PB_TRY(pb_world_max_to_root(f->gemm, n));
    PB_TRY(pb_world_max_to_root(f->mem, n));
    PB_TRY(pb_world_max_to_root(f->pair_ms, n * n * PB_CHECK_SIZES));
cleanup:
    return st;
}

/* CPU stalls (cpu_stall.h), where the ranks' devices are the host's cores:
 * every rank spins a thread a core of its share of the node at once, for
 * --stall-seconds; rank 0 gets each rank's figures, STALL_FIGS a rank. */
enum { STALL_MS, STALL_COUNT, STALL_LONGEST_MS, STALL_SPUN_MS, STALL_FIGS };

static pb_status measure_stalls(rank_ctx *r, double *fig)
{
    pb_status st = PB_OK;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int local = r->w.local_ranks > 0 ? r->w.local_ranks : 1;
    int threads = cores > local ? (int)(cores / local) : 1;
    PB_TRY(lazy_barrier(r));
    pb_cpu_stall mine;
    PB_TRY(pb_cpu_stall_probe(threads, r->o->stall_seconds, &mine));
    double *f = fig + (size_t)r->w.rank * STALL_FIGS;
    f[STALL_MS] = mine.stalled_ms;
    f[STALL_COUNT] = mine.stalls;
    f[STALL_LONGEST_MS] = mine.longest_ms;
    f[STALL_SPUN_MS] = mine.threads * mine.seconds * 1e3;
    PB_TRY(pb_world_max_to_root(fig, r->w.ranks * STALL_FIGS));
cleanup:
    return st;
}

/* Rank 0: the node's stall line, and a warning when the cores stall. */
static void report_stalls(const double *fig, int n, double seconds)
{
    double stalled = 0, spun = 0, longest = 0;
    int stalls = 0;
    for (const double *f = fig; f < fig + (size_t)n * STALL_FIGS; f += STALL_FIGS) {
        stalled += f[STALL_MS];
        stalls += (int)f[STALL_COUNT];
        spun += f[STALL_SPUN_MS];
        longest = fmax(longest, f[STALL_LONGEST_MS]);
    }
    double frac = spun > 0 ? stalled / spun : 0, quota = pb_cpu_quota_cores();
    char q[64] = "";
    if (quota > 0) snprintf(q, sizeof q, "; cgroup cpu.max: %.2f cores", quota);
    printf("# cpu stalls: every core busy for %.1f s: %.1f%% of the time stopped (%d stalls of %.0f ms or more, "
           "longest gap %.0f ms)%s\n",
           seconds, 100 * frac, stalls, PB_CPU_STALL_MIN_GAP_MS, longest, q);
    fflush(stdout);
    if (stalls > 0)
        pb_log_warn("check: this node's cores stopped %.1f%% of the time when all were busy (%d stall%s of %.0f ms or "
                    "more, longest %.0f ms): the host or the container caps its CPU (a quota: a VM's vCPU limit, "
                    "cgroup cpu.max), or other work holds the cores; steps that use every core carry the stalls in "
                    "their mean (bench predict --step median judges the typical step)",
                    100 * frac, stalls, stalls == 1 ? "" : "s", PB_CPU_STALL_MIN_GAP_MS, longest);
}

static pb_status open_rank(rank_ctx *r, size_t top, char *device, size_t device_len, pb_device_info *info)
{
    pb_status st = PB_OK;
    int ordinal = 0, visible = INT32_MAX;
    if (r->be->is_gpu) {
        char why[256] = "";
        visible = r->be->device_count(why, sizeof why);
        PB_REQUIRE(visible > 0, PB_ERR_UNAVAILABLE, "--backend cuda: no usable CUDA device on this node: %s", why);
    }
    pb_rank_view v = {.visible = visible, .local_rank = r->w.local_rank, .local_ranks = r->w.local_ranks,
                      .rank = r->w.rank, .cuda_visible = getenv("CUDA_VISIBLE_DEVICES")};
    PB_TRY(pb_rank_device(&v, &ordinal));
    pb_config cfg;
    pb_config_defaults(&cfg);
    pb_device_opts dev_opts = pb_config_device_opts(&cfg);
    /* a CPU rank's GEMM on one core: a multi-threaded GEMM waits for its
     * slowest thread, so one thread that another process preempts (a
     * shared host) or two threads on the one core mpirun binds a rank to
     * would make the figure noise; one core per rank compares alike */
    if (r->be->host_is_device) dev_opts.threads = 1;
    PB_ALLOC(r->ms, MEM_ITERS > PAIR_ITERS ? MEM_ITERS : PAIR_ITERS);
    PB_TRY(r->be->open(&dev_opts, ordinal, &r->dev));
    PB_TRY(r->be->info(r->dev, info));
    snprintf(device, device_len, "%.*s", (int)device_len - 1, info->name);
    PB_TRY(r->be->alloc(r->dev, top, &r->a));
    PB_TRY(r->be->alloc(r->dev, top, &r->c));
    PB_TRY(r->be->alloc(r->dev, 64, &r->tiny));
    PB_TRY(r->be->zero(r->dev, r->a, top));
    PB_TRY(r->be->zero(r->dev, r->c, top));
    PB_TRY(r->be->zero(r->dev, r->tiny, 64));
    PB_TRY(r->comm->init(&(pb_comm_opts){.timeout_s = r->o->comm.timeout_s}, r->be, r->dev, r->w.rank, r->w.ranks,
                         &r->ctx));
cleanup:
    return st;
}

static void close_rank(rank_ctx *r)
{
    if (r->ctx) r->comm->destroy(r->ctx);
    if (r->dev) {
        if (r->a) r->be->free(r->dev, r->a);
        if (r->c) r->be->free(r->dev, r->c);
        if (r->tiny) r->be->free(r->dev, r->tiny);
        r->be->close(r->dev);
    }
    free(r->ms);
    memset(r, 0, sizeof *r);
}

/* This process as one rank: measure, gather, sweep; rank 0 reports. */
static pb_status run_rank(const pb_check_opts *o, pb_world *w, char *summary, size_t summary_len)
{
    pb_status st = PB_OK;
    int n = w->ranks;
    pb_check_figures f = {.n = n, .sizes = o->comm.sizes, .n_sizes = o->comm.n_sizes};
    rank_ctx r = {.o = o, .be = pb_find_backend(o->comm.backend), .comm = pb_find_comm(o->comm.comm), .w = *w};
    double *stalls = NULL; /* [n][STALL_FIGS] */
    bool probe = false;
    char device[PB_CHECK_NAME_CHARS] = "", host[PB_CHECK_NAME_CHARS] = "unknown";
    gethostname(host, sizeof host - 1);
    PB_REQUIRE(r.be && r.comm, PB_ERR_INTERNAL, "unresolved backend or comm");
    PB_ALLOC(f.gemm, n);
    PB_ALLOC(f.mem, n);
    PB_ALLOC(f.pair_ms, (size_t)n * n * PB_CHECK_SIZES);
    PB_ALLOC(f.allreduce_gbps, PB_CHECK_SIZES);
    PB_ALLOC(f.hosts, (size_t)n * PB_CHECK_NAME_CHARS);
    PB_ALLOC(f.devices, (size_t)n * PB_CHECK_NAME_CHARS);
    PB_ALLOC(stalls, (size_t)n * STALL_FIGS);
    for (int i = 0; i < PB_CHECK_SIZES; i++) f.allreduce_gbps[i] = NAN;
    size_t top = o->mem_bytes > o->comm.sizes[o->comm.n_sizes - 1] ? o->mem_bytes : o->comm.sizes[o->comm.n_sizes - 1];
    double t0 = pb_now_ms();
    PB_TRY(open_rank(&r, top, device, sizeof device, &f.info));
    PB_TRY(pb_world_gather_text(host, f.hosts, PB_CHECK_NAME_CHARS));
    PB_TRY(pb_world_gather_text(device, f.devices, PB_CHECK_NAME_CHARS));
    PB_TRY(measure_rank(&r, &f));
    probe = r.be->host_is_device && o->stall_seconds > 0;
    if (probe) PB_TRY(measure_stalls(&r, stalls));
    close_rank(&r); /* the sweep opens its own device and comm */
    PB_TRY(pb_commbench_sweep_world(&o->comm, w, f.allreduce_gbps));
    f.seconds = (pb_now_ms() - t0) / 1e3;
    if (w->rank == 0) st = pb_check_report(o, w, r.be, &f);
    if (w->rank == 0 && probe) report_stalls(stalls, n, o->stall_seconds);
    if (f.outliers) snprintf(summary, summary_len, "%s", f.summary);
cleanup:
    if (st != PB_OK && n > 1) {
        /* the others may be waiting for this rank */
        pb_log_error("%s", pb_error_message());
        pb_log_error("ending all %d ranks", n);
        pb_world_abort(pb_status_exit_code(st));
    }
    close_rank(&r);
    free(f.gemm);
    free(f.mem);
    free(f.pair_ms);
    free(f.allreduce_gbps);
    free(f.hosts);
    free(f.devices);
    free(stalls);
    return st;
}

static pb_status measure(const pb_check_opts *o)
{
    pb_world w;
    char summary[512] = "";
    pb_status st = pb_world_init(&w);
    if (st != PB_OK) return st;
    pb_log_set_rank(w.rank, w.ranks);
    if (w.ranks != o->comm.ranks) {
        st = pb_usage_error("--ranks %d, but this MPI launch has %d ranks; bench check runs one rank per device",
                            o->comm.ranks, w.ranks);
    } else {
        st = run_rank(o, &w, summary, sizeof summary);
    }
    /* rank 0's outcome, so no rank finalizes while rank 0 still writes */
    if (st == PB_OK && summary[0]) st = pb_user_error(PB_ERR_INVALID, "check: %s", summary);
    int code = pb_status_exit_code(st);
    pb_status bst = pb_world_bcast_int_lazy(&code);
    if (bst != PB_OK && st == PB_OK) st = bst;
    pb_world_finalize();
    /* bench's launcher exits with it: mpirun adds no banner to a verdict
     * already told */
    if (w.rank == 0 && code != 0) pb_launch_hand_exit(code);
    return st;
}

static int report(pb_status st)
{
    if (st != PB_OK) pb_log_error("%s", pb_error_message());
    return pb_status_exit_code(st);
}

int pb_check_main(int argc, char **argv, int main_argc, char **main_argv)
{
    pb_check_opts o;
    bool help = false;
    pb_status st = parse(argc, argv, &o, &help);
    if (st == PB_OK && help) {
        print_help();
        return 0;
    }
    if (st != PB_OK) return report(st);
    pb_config cfg;
    pb_config_defaults(&cfg);
    snprintf(cfg.strategy, sizeof cfg.strategy, "check");
    snprintf(cfg.backend, sizeof cfg.backend, "%s", o.comm.backend);
    snprintf(cfg.out, sizeof cfg.out, "%s", o.comm.out);
    cfg.devices = o.comm.ranks;
    cfg.quiet = o.comm.quiet;
    cfg.timeout_s = o.comm.timeout_s;
    if (!pb_launch_inside()) {
        /* the backstop counts steps: here every pair's exchanges and the
         * sweep's operations */
        double ops = (double)o.comm.ranks * o.comm.ranks * PB_CHECK_SIZES * (PAIR_WARMUP + PAIR_ITERS) * 2 + 100;
        cfg.warmup = 0;
        cfg.iters = ops > 1e6 ? 1000000 : (int)ops;
        return pb_commbench_relaunch(&cfg, main_argc, main_argv, NULL, 0);
    }
    if ((st = pb_launch(&cfg, main_argc, main_argv)) != PB_OK) return report(st);
    int code = report(measure(&o));
    return pb_launch_exit_handed() ? 0 : code;
}
