/* bench_comm: the `mpi` comm's all-reduce against a bare MPI_Allreduce.
 *
 * Run under mpirun (2 ranks for the requirement). For each buffer size it
 * times
 *   (A) the comm layer as ddp issues a gradient bucket: pb_comm_mpi.allreduce
 *       (in place, n floats, scale 1.0f) then pb_comm_mpi.wait (the comm
 *       thread runs the MPI call; this thread sleeps until it is done);
 *   (B) a bare MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM) from
 *       this thread, on a communicator of its own duplicated from
 *       MPI_COMM_WORLD, as the comm's is;
 * alternating A and B round by round, in ABBA order (after warm-up rounds
 * of both), on the same buffer. Each timed operation starts after an MPI_Barrier so that the
 * ranks start together; every rank times it (CLOCK_MONOTONIC) and the
 * per-operation maximum over ranks is taken after the rounds. It prints, per
 * size, the medians of A and B, algbw = bytes / time and busbw = algbw x
 * 2(N-1)/N (nccl-tests' all-reduce), the comm thread's own clock for A
 * (req_ms, as ddp's comm_ms column), and the verdict: the median over
 * rounds of busbw_A / busbw_B (= B_ms / A_ms) of the round, against the
 * limit (default 0.9).
 *
 * Sizes: NUMBER in MiB of floats (1, 4, 16, 64), or a workload preset name
 * (mlp-s, mlp-m), meaning its exact gradient: the layout's n_params floats.
 *
 * Usage: mpirun -np 2 bench_comm [--rounds N] [--warmup N] [--limit X] [--strict] SIZE...
 *        bench_comm --summarise CSV   (table of ddp rows: overlap on vs off)
 * Exit: 0 measured (whatever the verdict, unless --strict), 1 a failure or
 * (--strict) a ratio under the limit, 2 usage. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/config.h"
#include "../study/csv_read.h"
#include "../harness/stats.h"
#include "../harness/timer.h"
#include "../kernels/comm_mpi.h"
#include "../harness/registry.h"

#define MAX_SIZES 16

typedef struct size_job {
    char label[32];
    size_t n; /* floats */
} size_job;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double *t = malloc((size_t)n * sizeof *t);
    if (!t) return NAN;
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    double m = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    free(t);
    return m;
}

/* A preset's exact gradient size, from the same flag parser bench uses. */
static pb_status preset_floats(const char *name, size_t *n)
{
    pb_config cfg;
    static pb_model model;
    bool help = false;
    char w[32];
    snprintf(w, sizeof w, "%s", name);
    char *argv[] = {"--workload", w};
    pb_config_defaults(&cfg);
    pb_status st = pb_config_parse(&cfg, 2, argv, &help);
    if (st != PB_OK) return st;
    st = pb_model_of(&cfg, &model);
    if (st != PB_OK) return st;
    *n = model.n_params;
    return PB_OK;
}

/* --- --summarise: ddp rows of a results CSV, overlap on vs off ------------------ */

static int summarise(const char *path)
{
    pb_csv csv;
    if (pb_csv_load(path, &csv) != PB_OK) {
        fprintf(stderr, "bench_comm: %s\n", pb_error_message());
        return 1;
    }
    static const char *const want[] = {"status", "workload", "strategy", "bucket_mb", "step_ms_p50",
                                       "comm_ms", "sync_ms", "overlap_pct", "busbw_gbps"};
    enum { C_STATUS, C_WORKLOAD, C_STRATEGY, C_BUCKET, C_STEP, C_COMM, C_SYNC, C_OVERLAP, C_BUSBW, C_N };
    int col[C_N];
    for (int i = 0; i < C_N; i++) {
        col[i] = pb_csv_find(&csv, want[i]);
        if (col[i] < 0) {
            fprintf(stderr, "bench_comm: %s: no column %s\n", path, want[i]);
            pb_csv_free(&csv);
            return 1;
        }
    }
    /* groups: workload (in order of first appearance) x bucket_mb (empty:
     * --no-overlap); per group the median of each figure over the repeats */
    enum { MAXG = 16, MAXR = 64, NFIG = 5 };
    typedef struct group {
        char workload[32], bucket[32];
        int n;
        double fig[NFIG][MAXR];
    } group;
    static group g[MAXG];
    int ng = 0;
    for (size_t r = 0; r < csv.nrows; r++) {
        if (strcmp(pb_csv_get(&csv, r, (size_t)col[C_STATUS]), "ok") != 0) continue;
        if (strcmp(pb_csv_get(&csv, r, (size_t)col[C_STRATEGY]), "ddp") != 0) continue;
        const char *w = pb_csv_get(&csv, r, (size_t)col[C_WORKLOAD]);
        const char *bk = pb_csv_get(&csv, r, (size_t)col[C_BUCKET]);
        int gi = 0;
        while (gi < ng && (strcmp(g[gi].workload, w) != 0 || strcmp(g[gi].bucket, bk) != 0)) gi++;
        if (gi == ng) {
            if (ng == MAXG) continue;
            snprintf(g[ng].workload, sizeof g[ng].workload, "%s", w);
            snprintf(g[ng].bucket, sizeof g[ng].bucket, "%s", bk);
            g[ng++].n = 0;
        }
        if (g[gi].n == MAXR) continue;
        for (int f = 0; f < NFIG; f++) g[gi].fig[f][g[gi].n] = strtod(pb_csv_get(&csv, r, (size_t)col[C_STEP + f]), NULL);
        g[gi].n++;
    }
    printf("%-8s %-16s %5s %12s %10s %10s %12s %11s %8s\n", "workload", "overlap", "runs", "step_ms_p50", "comm_ms",
           "sync_ms", "overlap_pct", "busbw_gbps", "step/off");
    bool shown[MAXG] = {false};
    for (int first = 0; first < ng; first++) {
        if (shown[first]) continue;
        /* this workload's groups: the overlapped ones as they came, then off */
        double off_step = NAN;
        for (int gi = first; gi < ng; gi++)
            if (strcmp(g[gi].workload, g[first].workload) == 0 && !g[gi].bucket[0])
                off_step = median(g[gi].fig[0], g[gi].n);
        for (int pass = 0; pass < 2; pass++)
            for (int gi = first; gi < ng; gi++) {
                if (strcmp(g[gi].workload, g[first].workload) != 0 || (pass == 0) != (g[gi].bucket[0] != '\0'))
                    continue;
                shown[gi] = true;
                double m[NFIG];
                for (int f = 0; f < NFIG; f++) m[f] = median(g[gi].fig[f], g[gi].n);
                char label[48];
                if (g[gi].bucket[0]) snprintf(label, sizeof label, "on (%s MiB)", g[gi].bucket);
                else snprintf(label, sizeof label, "off");
                printf("%-8s %-16s %5d %12.2f %10.2f %10.2f %12.1f %11.3f %8.3f\n", g[gi].workload, label, g[gi].n,
                       m[0], m[1], m[2], m[3], m[4], m[0] / off_step);
            }
    }
    printf("  medians over runs of each row's figures (rank 0's phases; step_ms_p50 the slowest rank's); "
           "step/off = step_ms_p50 / that of --no-overlap\n");
    pb_csv_free(&csv);
    return 0;
}

/* --- the measurement ------------------------------------------------------------- */

static double now_ms(void) { return pb_now_ms(); }

int main(int argc, char **argv)
{
    int rounds = 20, warmup = 3;
    double limit = 0.9;
    bool strict = false;
    size_job jobs[MAX_SIZES];
    int njobs = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--summarise") == 0 && i + 1 < argc) return summarise(argv[i + 1]);
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) limit = atof(argv[++i]);
        else if (strcmp(argv[i], "--strict") == 0) strict = true;
        else if (argv[i][0] != '-' && njobs < MAX_SIZES) {
            size_job *j = &jobs[njobs];
            char *end = NULL;
            double mb = strtod(argv[i], &end);
            if (end != argv[i] && *end == '\0' && mb > 0) {
                j->n = (size_t)(mb * 1048576.0 / sizeof(float));
                snprintf(j->label, sizeof j->label, "%g MiB", mb);
            } else if (preset_floats(argv[i], &j->n) == PB_OK) {
                snprintf(j->label, sizeof j->label, "%s", argv[i]);
            } else {
                fprintf(stderr, "bench_comm: %s: not a size in MiB or a workload preset\n", argv[i]);
                return 2;
            }
            njobs++;
        } else {
            fprintf(stderr, "usage: mpirun -np 2 bench_comm [--rounds N] [--warmup N] [--limit X] [--strict] "
                            "SIZE...\n       bench_comm --summarise CSV\n");
            return 2;
        }
    }
    if (rounds < 1 || warmup < 0 || njobs == 0) {
        fprintf(stderr, "bench_comm: need --rounds >= 1, --warmup >= 0 and at least one size\n");
        return 2;
    }

    pb_world world;
    if (pb_world_init(&world) != PB_OK) {
        fprintf(stderr, "bench_comm: %s\n", pb_error_message());
        pb_world_finalize();
        return 1;
    }
    const pb_comm *comm = &pb_comm_mpi;
    pb_comm_ctx *ctx = NULL;
    pb_config cfg;
    pb_config_defaults(&cfg);
    pb_comm_opts comm_opts = pb_config_comm_opts(&cfg);
    if (comm->init(&comm_opts, NULL, NULL, world.rank, world.ranks, &ctx) != PB_OK) {
        fprintf(stderr, "bench_comm: rank %d: %s\n", world.rank, pb_error_message());
        pb_world_abort(1);
        return 1;
    }
    MPI_Comm bare;
    MPI_Comm_dup(MPI_COMM_WORLD, &bare);
    const int n_ranks = world.ranks;
    const double bus = 2.0 * (n_ranks - 1) / n_ranks;
    if (world.rank == 0) {
        printf("bench_comm: %d ranks on %s%s; %s\n", n_ranks, world.host,
               world.oversubscribed ? " (oversubscribed)" : "", world.version);
        printf("  A = pb_comm_mpi allreduce (in place, scale 1) + wait, as ddp; B = bare MPI_Allreduce(MPI_IN_PLACE, "
               "MPI_FLOAT, MPI_SUM)\n");
        printf("  %d warm-up + %d timed rounds each, ABBA, barrier before each op, max over ranks; GB = 1e9 B\n",
               warmup, rounds);
        printf("%-10s %11s %9s %9s %9s %9s %9s %9s %9s %9s %7s %s\n", "size", "bytes", "A_ms", "B_ms", "A_req_ms",
               "A_algbw", "A_busbw", "B_algbw", "B_busbw", "pairA/B", "busA/B", "verdict");
    }
    int failures = 0, exit_code = 0;
    double *a_ms = malloc((size_t)rounds * sizeof *a_ms), *b_ms = malloc((size_t)rounds * sizeof *b_ms),
           *a_req = malloc((size_t)rounds * sizeof *a_req), *pair = malloc((size_t)rounds * sizeof *pair);
    if (!a_ms || !b_ms || !a_req || !pair) pb_world_abort(1);
    for (int j = 0; j < njobs; j++) {
        size_t n = jobs[j].n, bytes = n * sizeof(float);
        float *buf = malloc(bytes);
        if (!buf) {
            fprintf(stderr, "bench_comm: rank %d: no memory for %zu bytes\n", world.rank, bytes);
            pb_world_abort(1);
        }
        /* small values: 2 x (warmup + rounds) doublings stay far from overflow */
        for (size_t i = 0; i < n; i++) buf[i] = (float)(i % 1024) * (1.0f / 1048576.0f);
        for (int k = -warmup; k < rounds; k++) {
            double ta = 0, tb = 0, tr = NAN;
            /* ABBA: A first on even rounds, B first on odd ones, so neither
             * always follows the other */
            for (int step = 0; step < 2; step++) {
                bool do_a = (step == 0) == ((k & 1) == 0);
                MPI_Barrier(bare);
                double t0 = now_ms();
                if (do_a) {
                    /* A: the comm layer, exactly as ddp issues a bucket */
                    pb_comm_req *req = NULL;
                    pb_status st = comm->allreduce(ctx, buf, n, 1.0f, &req);
                    if (st == PB_OK) st = comm->wait(ctx, req, 300.0);
                    ta = now_ms() - t0;
                    if (st != PB_OK) {
                        fprintf(stderr, "bench_comm: rank %d: %s\n", world.rank, pb_error_message());
                        pb_world_abort(1);
                    }
                    tr = comm->req_ms ? comm->req_ms(req) : NAN;
                } else {
                    /* B: bare MPI from this thread (the comm thread is idle) */
                    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, bare);
                    tb = now_ms() - t0;
                    if (rc != MPI_SUCCESS) pb_world_abort(1);
                }
            }
            if (k >= 0) {
                a_ms[k] = ta;
                b_ms[k] = tb;
                a_req[k] = tr;
            }
        }
        /* each op's time: the slowest rank's */
        if (pb_world_max_to_root(a_ms, rounds) != PB_OK || pb_world_max_to_root(b_ms, rounds) != PB_OK ||
            pb_world_max_to_root(a_req, rounds) != PB_OK)
            pb_world_abort(1);
        if (world.rank == 0) {
            for (int k = 0; k < rounds; k++) pair[k] = b_ms[k] / a_ms[k];
            double ma = median(a_ms, rounds), mb = median(b_ms, rounds), mr = median(a_req, rounds);
            double alg_a = (double)bytes / (ma * 1e-3) / 1e9, alg_b = (double)bytes / (mb * 1e-3) / 1e9;
            double ratio = (alg_a * bus) / (alg_b * bus), paired = median(pair, rounds);
            /* the verdict on the paired ratio: A and B of a round ran back to
             * back, so a drift of this machine's speed across the rounds
             * (which moves both medians, not always alike) cancels in it */
            bool pass = paired >= limit;
            if (!pass) failures++;
            printf("%-10s %11zu %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %7.3f %s\n", jobs[j].label, bytes,
                   ma, mb, mr, alg_a, alg_a * bus, alg_b, alg_b * bus, paired, ratio,
                   pass ? "PASS" : "FAIL");
            fflush(stdout);
        }
        free(buf);
    }
    if (world.rank == 0) {
        printf("  pairA/B = median of per-round B_ms/A_ms = busbw_A / busbw_B round by round (the verdict, limit "
               "%.2f); busA/B = the same of the medians; A_req_ms = the comm thread's own clock (ddp's comm_ms)\n",
               limit);
        printf("bench_comm: %d of %d sizes at or above %.2f x bare MPI%s\n", njobs - failures, njobs, limit,
               failures && !strict ? " (not --strict: exit 0)" : "");
        if (failures && strict) exit_code = 1;
    }
    free(a_ms);
    free(b_ms);
    free(a_req);
    free(pair);
    MPI_Comm_free(&bare);
    comm->destroy(ctx);
    pb_world_finalize();
    return exit_code;
}
