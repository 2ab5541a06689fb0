/* bench predict: the command line, the targets (a grid of strategies and
 * device counts, or every run of a measured CSV: --against), the CSV it
 * writes and the table it prints (docs/predict.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/log.h"
#include "../harness/parse.h"
#include "predict.h"
#include "predict_out.h"

typedef struct opts {
    const char *single, *single_shared, *comm_csv, *topology, *against, *out, *plot, *plots_dir;
    char strategies[128], devices[1024];
    double batch, batch_per_device, bucket_mb, max_median, max_err;
    double intra_gbps, intra_us, inter_gbps, inter_us;
    long long gpus_per_node, microbatches, threads, zero_stage, mesh_tp, mesh_pp;
    const char *schedule;
    pb_pred_step step;
    bool no_overlap, quiet;
} opts;

static void print_help(void)
{
    printf("usage: bench predict --single SINGLE.csv [--comm-csv COMM.csv | --topology FILE] [flags]\n"
           "\n"
           "Predicts each strategy's step time, throughput, scaling efficiency, communication\n"
           "exposed and hidden, and memory per device, from a single-device run's phases\n"
           "and the collectives' alpha-beta fits (bench comm) or a topology file's links\n"
           "(docs/predict.md). Rows go to --out as CSV, a table to stdout.\n"
           "\n"
           "flags (default in brackets):\n"
           "  --single PATH          run CSV with ok rows of strategy single (their phases) [required]\n"
           "  --single-shared PATH   cpu: single rows at --threads 1 run two to a core: the pace of devices\n"
           "                         that take turns on a core [off: each takes exactly its share]\n"
           "  --comm-csv PATH        bench comm CSV: its fit rows give the collectives\n"
           "  --topology PATH        key = value file of the links (results/topologies/*.topo)\n"
           "  --strategies LIST      single, dp, ddp, mp, zero, tp, mesh [single,dp,ddp,mp]\n"
           "  --devices LIST         device counts, 1 to 4096 [1,2,4,8,16,...,4096 with --topology, else 1,2,4]\n"
           "  --gpus-per-node N      devices per node, 1 to 4096 [the topology's, else all on one node]\n"
           "  --intra-gbps X, --intra-us X   in a node: busbw per device (GB/s), latency (us) [the topology's]\n"
           "  --inter-gbps X, --inter-us X   across nodes, per device's NIC [the topology's]\n"
           "  --batch N              global batch (strong scaling) [off]\n"
           "  --batch-per-device N   rows per device (weak scaling) [the single row's batch]\n"
           "  --microbatches M       mp's and the mesh's pipeline's microbatches, 1 to 4096 [1]\n"
           "  --schedule NAME        mp's and the mesh's pipeline's schedule: gpipe or 1f1b [gpipe]\n"
           "  --zero-stage S         zero's stage, 1 to 3 [1]; mesh: ZeRO within the dp group (MLP)\n"
           "  --tp T                 mesh: tensor-parallel ranks per replica (--dp is devices / T)\n"
           "  --pp P                 mesh: pipeline stages, the MLP without --zero-stage (--dp is devices / (T x P)) [1]\n"
           "  --bucket-mb X          ddp's and zero's bucket size in MiB [25]\n"
           "  --no-overlap           ddp, zero: the gradients' collectives after backward [off]\n"
           "  --threads N            cpu: BLAS threads per device [cores / devices, at least 1]\n"
           "  --against PATH         predict every ok run of this run CSV instead, with its error\n"
           "  --max-median-error P   --against: exit 1 when the median |error| is over P%% [10]\n"
           "  --max-error P          --against: exit 1 when any |error| is over P%% [25]\n"
           "  --step WHICH           the step taken from the rows and judged against: mean (throughput's) or\n"
           "                         median (the typical step: rare stalls left out) [mean]\n"
           "  --out PATH             the predicted rows' CSV (replaced) [results/predict.csv]\n"
           "  --plot DIR             draw predicted curves and measured points into DIR (gnuplot)\n"
           "  --plots-dir DIR        where plots/predict.gp is [beside bench, else ./plots]\n"
           "  --quiet                no table on stdout [off]\n"
           "  --help                 this text\n"
           "\n"
           "example:\n"
           "  bench predict --single results/topologies/h100-mlp-l-bf16.csv --topology "
           "results/topologies/h100-nvlink-ib400.topo --strategies ddp --devices 8,64,512\n");
}

static pb_status parse_num(const char *flag, const char *v, double lo, double hi, double *out)
{
    double x;
    if (!v || !pb_parse_double(v, &x) || !(x >= lo && x <= hi))
        return pb_usage_error("predict: %s '%s': give a number from %g to %g", flag, v ? v : "", lo, hi);
    *out = x;
    return PB_OK;
}

static pb_status parse_int(const char *flag, const char *v, long long lo, long long hi, long long *out)
{
    long long x;
    if (!v || !pb_parse_int(v, &x) || x < lo || x > hi)
        return pb_usage_error("predict: %s '%s': give an integer from %lld to %lld", flag, v ? v : "", lo, hi);
    *out = x;
    return PB_OK;
}

static pb_status parse_args(int argc, char **argv, opts *o, bool *help)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        pb_status st = PB_OK;
#define PATHFLAG(name, field)                                                                                          \
    if (strcmp(a, name) == 0) {                                                                                        \
        if (!v || !*v) return pb_usage_error("predict: %s needs a path", name);                                        \
        o->field = v;                                                                                                  \
        i++;                                                                                                           \
        continue;                                                                                                      \
    }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = true;
            return PB_OK;
        }
        PATHFLAG("--single", single)
        PATHFLAG("--single-shared", single_shared)
        PATHFLAG("--comm-csv", comm_csv)
        PATHFLAG("--topology", topology)
        PATHFLAG("--against", against)
        PATHFLAG("--out", out)
        PATHFLAG("--plot", plot)
        PATHFLAG("--plots-dir", plots_dir)
#undef PATHFLAG
        if (strcmp(a, "--no-overlap") == 0) {
            o->no_overlap = true;
            continue;
        }
        if (strcmp(a, "--quiet") == 0) {
            o->quiet = true;
            continue;
        }
        if (strcmp(a, "--strategies") == 0 || strcmp(a, "--devices") == 0) {
            char *dst = a[2] == 's' ? o->strategies : o->devices;
            size_t len = a[2] == 's' ? sizeof o->strategies : sizeof o->devices;
            if (!v || !*v || strlen(v) >= len) return pb_usage_error("predict: %s needs a comma list", a);
            snprintf(dst, len, "%s", v);
            i++;
            continue;
        }
        if (strcmp(a, "--step") == 0) {
            if (v && strcmp(v, "mean") == 0) o->step = PB_PRED_STEP_MEAN;
            else if (v && strcmp(v, "median") == 0) o->step = PB_PRED_STEP_MEDIAN;
            else return pb_usage_error("predict: --step '%s': give mean or median", v ? v : "");
            i++;
            continue;
        }
        if (strcmp(a, "--batch") == 0) st = parse_num(a, v, 1, 1e9, &o->batch);
        else if (strcmp(a, "--batch-per-device") == 0) st = parse_num(a, v, 1, 1e9, &o->batch_per_device);
        else if (strcmp(a, "--bucket-mb") == 0) st = parse_num(a, v, 0.001, 1e6, &o->bucket_mb);
        else if (strcmp(a, "--max-median-error") == 0) st = parse_num(a, v, 0, 1e6, &o->max_median);
        else if (strcmp(a, "--max-error") == 0) st = parse_num(a, v, 0, 1e6, &o->max_err);
        else if (strcmp(a, "--intra-gbps") == 0) st = parse_num(a, v, 1e-6, 1e6, &o->intra_gbps);
        else if (strcmp(a, "--intra-us") == 0) st = parse_num(a, v, 0, 1e6, &o->intra_us);
        else if (strcmp(a, "--inter-gbps") == 0) st = parse_num(a, v, 1e-6, 1e6, &o->inter_gbps);
        else if (strcmp(a, "--inter-us") == 0) st = parse_num(a, v, 0, 1e6, &o->inter_us);
        else if (strcmp(a, "--gpus-per-node") == 0) st = parse_int(a, v, 1, 4096, &o->gpus_per_node);
        else if (strcmp(a, "--microbatches") == 0) st = parse_int(a, v, 1, 4096, &o->microbatches);
        else if (strcmp(a, "--threads") == 0) st = parse_int(a, v, 1, 1024, &o->threads);
        else if (strcmp(a, "--zero-stage") == 0) st = parse_int(a, v, 1, 3, &o->zero_stage);
        else if (strcmp(a, "--tp") == 0) st = parse_int(a, v, 1, 4096, &o->mesh_tp);
        else if (strcmp(a, "--pp") == 0) st = parse_int(a, v, 1, 4096, &o->mesh_pp);
        else if (strcmp(a, "--schedule") == 0) {
            if (!v || (strcmp(v, "gpipe") != 0 && strcmp(v, "1f1b") != 0))
                return pb_usage_error("predict: --schedule '%s': give gpipe or 1f1b", v ? v : "");
            o->schedule = v;
        }
        else
            return pb_usage_error("predict: unknown flag '%s'; bench predict --help lists them", a);
        if (st != PB_OK) return st;
        i++;
    }
    if (!o->single) return pb_usage_error("predict: --single SINGLE.csv is required (a single-device run's rows)");
    if (o->batch > 0 && o->batch_per_device > 0)
        return pb_usage_error("predict: --batch and --batch-per-device: give one (strong or weak scaling)");
    if (o->against && (o->devices[0] || o->strategies[0]))
        return pb_usage_error("predict: --against takes its configurations from its runs; drop --devices and "
                              "--strategies");
    return PB_OK;
}

/* The table line of one prediction on stdout. */
static void print_line(const pb_pred_row *row)
{
    const pb_pred_result *r = &row->r;
    printf("%-6s %6d %5d %9.0f %10.3f %12.1f %6.3f %9.3f %9.3f %8.3f %9.1f", pb_pred_strategy_name(row->t.strategy),
           row->t.devices, r->nodes, row->t.batch_global, r->step_ms, r->samples_per_s, r->efficiency, r->comm_ms,
           r->comm_exposed_ms, r->bubble_frac, r->mem_mb);
    if (row->has_measured) printf(" %10.3f %+7.1f", row->measured_step_ms, row->error_pct);
    printf("\n");
}

/* Runs whose mean step is over STALLED_MEAN x their median met a few very
 * long steps (a host's CPU quota stopping the cores: bench check's stall
 * probe): their mean is not the step the model predicts. Said, not judged. */
#define STALLED_MEAN 1.15

static void stall_notice(const pb_csv *c)
{
    int c_mean = pb_csv_find(c, "step_ms_mean"), c_p50 = pb_csv_find(c, "step_ms_p50"),
        c_status = pb_csv_find(c, "status");
    if (c_mean < 0 || c_p50 < 0) return;
    size_t runs = 0, stalled = 0;
    for (size_t i = 0; i < c->nrows; i++) {
        double mean, p50;
        if (c_status >= 0 && strcmp(pb_csv_get(c, i, (size_t)c_status), "ok") != 0) continue;
        if (!pb_csv_number(pb_csv_get(c, i, (size_t)c_mean), &mean) ||
            !pb_csv_number(pb_csv_get(c, i, (size_t)c_p50), &p50) || !(p50 > 0))
            continue;
        runs++;
        stalled += mean > STALLED_MEAN * p50;
    }
    if (stalled)
        pb_log_info("predict: %zu of %zu measured runs have a mean step over %gx their median: a few very long "
                    "steps (a CPU quota's stalls? bench check --stall-seconds 8); --step median judges the typical "
                    "step",
                    stalled, runs, STALLED_MEAN);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int pb_cmd_predict(int argc, char **argv)
{
    opts o;
    memset(&o, 0, sizeof o);
    o.max_median = 10;
    o.max_err = 25;
    o.bucket_mb = 25;
    o.out = "results/predict.csv";
    bool help = false;
    pb_csv single, comm, meas;
    memset(&single, 0, sizeof single);
    memset(&comm, 0, sizeof comm);
    memset(&meas, 0, sizeof meas);
    pb_pred_work *w = calloc(1, sizeof *w);
    pb_pred_net *net = calloc(1, sizeof *net);
    pb_pred_rows rows = {0};
    int code = 1;
    pb_status st = w && net ? parse_args(argc, argv, &o, &help) : PB_ERR_NOMEM;
    if (st == PB_OK && help) {
        print_help();
        code = 0;
        goto cleanup;
    }
    if (st == PB_OK) st = pb_csv_load(o.single, &single);
    if (st == PB_OK) st = pb_pred_read_single(&single, o.single, o.step, w);
    if (st == PB_OK && o.single_shared) {
        pb_csv shared;
        memset(&shared, 0, sizeof shared);
        st = pb_csv_load(o.single_shared, &shared);
        if (st == PB_OK) st = pb_pred_read_shared(&shared, o.single_shared, o.step, w);
        pb_csv_free(&shared);
    }
    if (st == PB_OK) {
        pb_pred_net_defaults(net);
        if (strcmp(w->backend, "cuda") == 0) net->cores_per_node = 0;
    }
    if (st == PB_OK && o.topology) st = pb_pred_read_topology(o.topology, net);
    if (st == PB_OK && o.comm_csv) st = pb_csv_load(o.comm_csv, &comm);
    if (st == PB_OK && o.comm_csv) st = pb_pred_read_fits(&comm, o.comm_csv, net);
    if (st == PB_OK) {
        if (o.gpus_per_node) net->gpus_per_node = (int)o.gpus_per_node;
        if (o.intra_gbps > 0) net->intra_gbps = o.intra_gbps;
        if (o.inter_gbps > 0) net->inter_gbps = o.inter_gbps;
        if (o.intra_us > 0) net->intra_alpha_us = o.intra_us;
        if (o.inter_us > 0) net->inter_alpha_us = o.inter_us;
        if (net->inter_gbps <= 0) net->inter_gbps = net->intra_gbps;
    }
    if (st == PB_OK && o.against) {
        st = pb_csv_load(o.against, &meas);
        if (st == PB_OK) st = pb_pred_targets_against(&meas, o.against, w, o.step, &rows);
    } else if (st == PB_OK) {
        pb_pred_grid grid = {.strategies = o.strategies[0] ? o.strategies : "single,dp,ddp,mp",
                             .devices = o.devices,
                             .default_max = o.topology ? 4096 : 4,
                             .batch = o.batch,
                             .batch_per_device = o.batch_per_device,
                             .microbatches = (int)o.microbatches,
                             .one_f_one_b = o.schedule && strcmp(o.schedule, "1f1b") == 0,
                             .zero_stage = (int)o.zero_stage,
                             .mesh_tp = (int)o.mesh_tp,
                             .mesh_pp = (int)o.mesh_pp,
                             .bucket_mb = o.bucket_mb,
                             .no_overlap = o.no_overlap,
                             .threads = (int)o.threads};
        st = pb_pred_targets_grid(&grid, w, &rows);
    }
    size_t done = 0;
    bool said[PB_PRED_NSTRAT] = {false};
    for (size_t i = 0; st == PB_OK && i < rows.n; i++) {
        pb_pred_row *row = &rows.v[i];
        if (row->t.threads < 1 && o.threads) row->t.threads = (int)o.threads;
        pb_status s = pb_predict_one(w, net, &row->t, &row->r);
        double plan_mb;
        if (s == PB_OK && pb_pred_plan_mb(w, &row->t, &plan_mb)) row->r.mem_mb = plan_mb;
        if (s == PB_OK) {
            row->ok = true;
            done++;
            if (row->has_measured) {
                row->error_pct = (row->r.step_ms - row->measured_step_ms) / row->measured_step_ms * 100;
                row->measured_efficiency = row->r.ideal_ms / row->measured_step_ms;
            }
        } else if (o.against || rows.n == 1) {
            st = s;
        } else {
            /* a grid's point a strategy cannot run (dp across nodes, mp with
             * more stages than layers): said once per strategy, left out */
            if (!said[row->t.strategy]) pb_log_info("%s; left out", pb_error_message());
            said[row->t.strategy] = true;
            pb_error_clear();
        }
    }
    if (st == PB_OK && !done) st = pb_usage_error("predict: no configuration could be predicted");
    if (st == PB_OK) st = pb_pred_write_csv(o.out, w, net, &rows);
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        code = pb_status_exit_code(st);
        goto cleanup;
    }
    if (!o.quiet) {
        printf("# bench predict: %s, %s %s; collectives: %s; ", w->workload, w->backend, w->precision,
               o.comm_csv ? o.comm_csv : (o.topology ? net->name : "none"));
        if (net->gpus_per_node) printf("%d devices per node", net->gpus_per_node);
        else printf("every device on one node");
        if (net->cores_per_node) printf(", sharing %d cores\n", net->cores_per_node);
        else printf(", each its own GPU\n");
        printf("%-6s %6s %5s %9s %10s %12s %6s %9s %9s %8s %9s%s\n", "strat", "dev", "nodes", "batch", "step_ms",
               "samples/s", "eff", "comm_ms", "exposed", "bubble", "mem_MB",
               o.against ? "   measured  err_%" : "");
        for (size_t i = 0; i < rows.n; i++)
            if (rows.v[i].ok) print_line(&rows.v[i]);
    }
    code = 0;
    if (o.against) {
        double *err = calloc(rows.n + 1, sizeof *err);
        size_t n = 0;
        for (size_t i = 0; err && i < rows.n; i++)
            if (rows.v[i].ok && rows.v[i].has_measured) err[n++] = fabs(rows.v[i].error_pct);
        if (n) {
            qsort(err, n, sizeof *err, cmp_double);
            double med = n % 2 ? err[n / 2] : (err[n / 2 - 1] + err[n / 2]) / 2, mx = err[n - 1];
            printf("# %zu configurations, %s step: median |error| %.1f%% (limit %.0f%%), largest %.1f%% (limit %.0f%%)\n",
                   n, o.step == PB_PRED_STEP_MEDIAN ? "median" : "mean", med, o.max_median, mx, o.max_err);
            if (o.step == PB_PRED_STEP_MEAN) stall_notice(&meas);
            if (med > o.max_median || mx > o.max_err) {
                pb_log_error("predict: the model misses the measured runs: median |error| %.1f%%, largest %.1f%%",
                             med, mx);
                code = 1;
            }
        }
        free(err);
    }
    if (o.plot && pb_pred_plot(o.plot, o.plots_dir, o.out, w, net, &rows) != PB_OK) {
        pb_log_error("%s", pb_error_message());
        code = code ? code : 1;
    }
    fflush(stdout);
cleanup:
    if (st != PB_OK && code == 1 && help == false && rows.n == 0 && !w) pb_log_error("predict: out of memory");
    pb_csv_free(&single);
    pb_csv_free(&comm);
    pb_csv_free(&meas);
    free(rows.v);
    free(w);
    free(net);
    return code;
}
