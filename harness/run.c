#define _POSIX_C_SOURCE 200809L
#include "run.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../kernels/world.h"
#include "calibrate.h"
#include "cpu_bind.h"
#include "devmap.h"
#include "env.h"
#include "fault.h"
#include "launch.h"
#include "loader.h"
#include "log.h"
#include "memplan.h"
#include "npy.h"
#include "nvtx.h"
#include "phase.h"
#include "../kernels/progress.h"
#include "ranks.h"
#include "registry.h"
#include "results.h"
#include "signals.h"
#include "stats.h"
#include "steps_out.h"
#include "timer.h"
#include "verify_err.h"
#include "../strategies/input.h"

/* Defined by the allocation-counting library the benchmarks preload
 * (tests/alloc_count.c); absent otherwise. */
extern unsigned long pb_alloc_count(void) __attribute__((weak));

typedef struct run_state {
    const pb_config *cfg;
    const pb_backend *be;
    const pb_strategy *strategy;
    pb_model model;
    float *params; /* host: initial, later final parameters */
    /* --verify (the writer): the parameters after the judged step, when it
     * comes before the last (pb_verify_steps) */
    float *verify_params;
    pb_loader *loader;
    void *strategy_state;
    double *step_ms, *scratch;
    pb_step_times phase_sum;
    /* each measured step's phases ([iters][PB_PHASE_COUNT]): this rank's
     * record (ranks.h), and for rank-per-device runs the row's slowest
     * rank's, step by step (gather_slowest) */
    double *phase_steps;
    pb_ranks ranks; /* every rank's record, complete on rank 0 */
    double loss_first, loss_last;
    /* --steps-out: [ranks][iters][PB_STEPS_WIDTH], this rank's slot filled
     * by its steps, the others' -HUGE_VAL until the gather (a MAX) brings
     * them to rank 0 */
    double *steps;
    pb_device_info info;
    bool have_info;
    pb_calibration cal;
    pb_memplan plan; /* the memory plan, once check_memory made it */
    bool have_plan;
    pb_strategy_ctx ctx; /* the strategy keeps a pointer to it */
    /* rank-per-device strategies: the MPI world; rank 0 alone dumps,
     * verifies and writes the row */
    bool multi;
    pb_world world;
    int device; /* rank-per-device: the ordinal this rank opens */
    int interrupted; /* SIGINT/SIGTERM agreed on: stop, write nothing */
    /* multi-rank: this rank's step failed (a non-finite loss) and waits for
     * the boundary to tell the others; then every rank knows of a failure
     * (agreed), stops at the same boundary and MPI ends cleanly: rank 0
     * tells it, with no MPI_Abort */
    bool failed;
    char failed_why[1024];
    bool agreed_failure;
} run_state;

/* What every phase begin and end does in a run, registered with the phase
 * timer (which calls nothing above it): the rank's progress for the other
 * ranks' deadline messages (a null check outside a multi-rank run),
 * published before the test-only fault hook (PB_FAULT), so a rank stalled
 * there reads as stuck in this phase; the fault hook may end or stall the
 * process, or mark the step NaN. */
static void phase_begun(pb_phase p)
{
    pb_progress_phase_begin(p);
    pb_fault_at(p);
}
static void phase_ended(pb_phase p)
{
    pb_fault_ending(p); /* inside the phase's span: kind=stretch */
    pb_progress_phase_end();
}

static bool is_writer(const run_state *rs) { return !rs->multi || rs->world.rank == 0; }

static pb_status dump_array(const pb_config *cfg, const char *name, const char *dtype, const void *data,
                            size_t elem, int ndim, const size_t *shape)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", cfg->dump, name);
    return pb_npy_write(path, dtype, data, elem, ndim, shape);
}

static pb_status make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return pb_error(PB_ERR_IO, "--dump %s: cannot create: %s", path, strerror(errno));
    return PB_OK;
}

static pb_status prepare_dump(const pb_config *cfg)
{
    return cfg->dump[0] ? make_dir(cfg->dump) : PB_OK;
}

/* The flat buffer, and each tensor by name under DIR/init or DIR/final
 * (its PyTorch shape), for replaying a step without the flat layout. */
static pb_status dump_params(const pb_config *cfg, const pb_model *model, const float *params, bool final)
{
    size_t n = model->n_params;
    pb_status st = dump_array(cfg, final ? "params_final.npy" : "params_init.npy", "<f4", params, sizeof(float), 1, &n);
    char dir[4200], name[PB_TENSOR_NAME + 16];
    snprintf(dir, sizeof dir, "%s/%s", cfg->dump, final ? "final" : "init");
    if (st == PB_OK) st = make_dir(dir);
    for (int t = 0; t < model->n_tensors && st == PB_OK; t++) {
        const pb_tensor_desc *d = &model->tensor[t];
        size_t shape[2] = {d->rows ? d->rows : d->size, d->rows ? d->size / d->rows : 0};
        snprintf(name, sizeof name, "%s/%s.npy", final ? "final" : "init", d->name);
        st = dump_array(cfg, name, "<f4", params + d->off, sizeof(float), d->rows ? 2 : 1, shape);
    }
    return st;
}

/* One thread on the CPU backend leaves the cores to the BLAS; a GPU step is
 * fast enough that the host must fill batches in parallel to keep up, with
 * the node's cores shared by its ranks (local_ranks). */
static int loader_workers(const pb_config *cfg, int local_ranks)
{
    if (cfg->loader_threads > 0) return cfg->loader_threads;
    const pb_backend *be = pb_find_backend(cfg->backend);
    if (be && !be->is_gpu) return 1;
    return pb_loader_workers_for(sysconf(_SC_NPROCESSORS_ONLN), local_ranks);
}

/* Refuses, before anything is allocated, a run whose memory plan does not
 * fit this host, its cgroup or a GPU: Linux would grant every allocation and
 * the OOM killer end the run mid-way, with no row and no message. */
static pb_status check_memory(run_state *rs)
{
    pb_memplan_env env = {.host_is_device = rs->be->host_is_device,
                          .local_ranks = rs->multi ? rs->world.local_ranks : 1,
                          .device = rs->multi ? rs->device : 0,
                          .writer = is_writer(rs)};
    pb_memplan_compute(rs->cfg, &rs->model, &env, &rs->plan);
    rs->have_plan = true;
    const pb_memplan *plan = &rs->plan;
    /* --device-mem-mb first: the limit the user set is the one to tell */
    if (rs->cfg->device_mem_mb > 0) {
        pb_status st = pb_memplan_check_cap(plan, rs->cfg->device_mem_mb * 1048576.0);
        if (st != PB_OK) return st;
    }
    pb_host_room room;
    pb_host_room_read("", &room);
    double dev_free[PB_MAX_STAGES], dev_total[PB_MAX_STAGES];
    for (int i = 0; i < plan->n_devices; i++) {
        size_t f = 0, t = 0;
        dev_free[i] = dev_total[i] = -1.0;
        if (!rs->be->mem_info) continue;
        if (rs->be->mem_info(plan->ordinal[i], &f, &t) != PB_OK) return pb_error_status();
        dev_free[i] = (double)f;
        dev_total[i] = (double)t;
    }
    return pb_memplan_check(plan, env.local_ranks, &room, dev_free, dev_total);
}

static pb_status agreed_failure(run_state *rs, int failed_rank, pb_status code);

/* Multi-rank: every rank learns whether one's memory check refused the
 * run (a smaller device, or --device-mem-mb), so all stop together with
 * the lowest refused rank's message and rank 0's failed row, instead of
 * an MPI_Abort while the others go on into the comm's set-up. */
static pb_status agree_memory(run_state *rs, pb_status mine)
{
    if (!rs->multi || rs->world.ranks <= 1) return mine;
    int sig = 0, failed_rank = -1;
    if (mine != PB_OK) {
        failed_rank = rs->world.rank;
        snprintf(rs->failed_why, sizeof rs->failed_why, "%s", pb_error_message());
        pb_error_clear();
    }
    pb_status st = pb_world_agree_signal(&sig, &failed_rank, rs->cfg->timeout_s, 0);
    if (st != PB_OK) return st;
    /* a signal is agreed on again at the first step boundary */
    return failed_rank >= 0 ? agreed_failure(rs, failed_rank, PB_ERR_NOMEM) : PB_OK;
}

static pb_status setup(run_state *rs)
{
    pb_status st = PB_OK;
    const pb_config *cfg = rs->cfg;
    PB_TRY(pb_model_of(cfg, &rs->model));
    PB_TRY(agree_memory(rs, check_memory(rs)));
    PB_ALLOC(rs->params, rs->model.n_params);
    PB_ALLOC(rs->step_ms, cfg->iters);
    PB_ALLOC(rs->scratch, cfg->iters);
    PB_ALLOC(rs->phase_steps, (size_t)cfg->iters * PB_PHASE_COUNT);
    if (cfg->steps_out[0]) {
        size_t n = (size_t)(rs->multi ? rs->world.ranks : 1) * (size_t)cfg->iters * PB_STEPS_WIDTH;
        /* pb_config_validate bounds devices x iters for the gather's count */
        PB_ALLOC(rs->steps, n);
        for (size_t i = 0; i < n; i++) rs->steps[i] = -HUGE_VAL;
    }
    if (cfg->verify && is_writer(rs) && pb_verify_steps(cfg) < (int64_t)cfg->warmup + cfg->iters)
        PB_ALLOC(rs->verify_params, rs->model.n_params);
    rs->model.ops->init_params(&rs->model, cfg->seed, rs->params);
    if (is_writer(rs)) PB_TRY(prepare_dump(cfg));
    if (cfg->dump[0] && is_writer(rs)) PB_TRY(dump_params(cfg, &rs->model, rs->params, false));
    rs->cal.peak_tflops = rs->cal.peak_min = rs->cal.peak_max = rs->cal.gemm_ms = NAN;
    /* before the strategy's devices exist, so it measures an idle device */
    /* each rank its own device; the ranks' peaks meet after the steps
     * (gather_slowest), where no rank can be missing */
    if (cfg->calibrate || rs->be->is_gpu)
        PB_TRY(pb_calibrate(cfg, &rs->model, rs->multi ? rs->device : 0, &rs->cal));
    /* interrupted during calibration: train stops at its first boundary
     * and says so, with nothing more set up. Not a rank: the others, which
     * may not have the signal yet, go on into the strategy's collective
     * set-up (the comm's), which this rank must join; all then stop
     * together at the first boundary. */
    if (pb_signals_caught() && !rs->multi) return PB_OK;
    rs->ctx = (pb_strategy_ctx){.cfg = cfg, .be = rs->be, .model = &rs->model, .init_params = rs->params,
                                .rank = 0, .ranks = 1, .local_rank = 0};
    if (rs->multi) {
        rs->ctx.rank = rs->world.rank;
        rs->ctx.ranks = rs->world.ranks;
        rs->ctx.local_rank = rs->world.local_rank;
        rs->ctx.device = rs->device;
    }
    /* rank-per-device strategies init it for their rank; one-process ones
     * for each of their devices */
    if (strcmp(cfg->comm, "none") != 0) {
        rs->ctx.comm = pb_find_comm(cfg->comm);
        PB_REQUIRE(rs->ctx.comm, PB_ERR_INTERNAL, "comm %s is not registered", cfg->comm);
    }
    PB_TRY(rs->strategy->init(&rs->ctx, &rs->strategy_state));
    if (rs->strategy->device_info(rs->strategy_state, &rs->info) == PB_OK) rs->have_info = true;
    /* started last, so its thread does not compete with setup; a rank
     * fills its shard alone (its strategy reads no other row) */
    int row0 = 0, rows = cfg->shape.batch;
    int shard = rs->world.rank, shards = rs->world.ranks;
    if (rs->strategy->batch_shard) shard = rs->strategy->batch_shard(cfg, rs->world.rank, &shards);
    if (rs->multi && !rs->strategy->rank_full_batch) pb_input_shard(cfg->shape.batch, shards, shard, &row0, &rows);
    PB_TRY(pb_loader_create(rs->be, &rs->model, cfg->seed, row0, rows, (int64_t)cfg->warmup + cfg->iters,
                            loader_workers(cfg, rs->multi ? rs->world.local_ranks : 1), &rs->loader));
cleanup:
    return st;
}

pb_status pb_timed_step(pb_loader *loader, const pb_strategy *strategy, void *state, int64_t step,
                        pb_batch *batch, pb_step_result *res, double *step_ms)
{
    char label[32];
    snprintf(label, sizeof label, "step %lld", (long long)step);
    memset(batch, 0, sizeof *batch);
    pb_nvtx_push(label);
    double t0 = pb_now_ms();
    pb_nvtx_push("load");
    pb_status st = pb_loader_next(loader, step, batch);
    pb_nvtx_pop();
    double load_ms = pb_now_ms() - t0;
    if (st == PB_OK) {
        pb_loader_peek(loader, step + 1, &batch->next_inputs, &batch->next_targets);
        st = strategy->step(state, batch, res);
    }
    *step_ms = pb_now_ms() - t0;
    pb_nvtx_pop();
    res->t.ms[PB_PHASE_LOAD] = load_ms;
    return st;
}

static const char *signal_name(int sig) { return sig == 2 ? "SIGINT" : sig == 15 ? "SIGTERM" : "a signal"; }

/* A rank's failure at a step, learnt by every rank at the boundary after
 * it: the lowest failed rank's message, to every rank (rank 0 tells it). */
static pb_status agreed_failure(run_state *rs, int failed_rank, pb_status code)
{
    char why[sizeof rs->failed_why];
    snprintf(why, sizeof why, "%s", rs->failed_why);
    pb_status st = pb_world_share_text(why, sizeof why, failed_rank, rs->cfg->timeout_s);
    if (st != PB_OK) return st; /* a rank missing: aborted as any other error */
    rs->agreed_failure = true;
    if (failed_rank == rs->world.rank) return pb_user_error(code, "%s", why);
    return pb_user_error(code, "rank %d: %s", failed_rank, why);
}

/* Multi-rank: every rank passes the signal it caught and adopts the
 * largest, so all stop before the same step; and whether its last step
 * failed, so all stop at the same boundary when one did (one Iallreduce of
 * two longs per step, outside the timed step). */
static pb_status stop_requested(run_state *rs, int64_t step)
{
    int sig = pb_signals_caught();
    if (rs->multi && rs->world.ranks > 1) {
        int failed_rank = rs->failed ? rs->world.rank : -1;
        pb_status st = pb_world_agree_signal(&sig, &failed_rank, rs->cfg->timeout_s, step);
        if (st != PB_OK) return st;
        if (failed_rank >= 0) return agreed_failure(rs, failed_rank, PB_ERR_NUMERIC);
        if (sig && !pb_signals_caught()) pb_signals_set(sig);
    }
    if (sig && !rs->interrupted) {
        rs->interrupted = sig;
        if (is_writer(rs))
            pb_log_error("interrupted by %s before step %lld of %d: stopping; no row written (an interrupted run "
                         "writes nothing)",
                         signal_name(sig), (long long)step, rs->cfg->warmup + rs->cfg->iters);
        pb_launch_report("interrupted"); /* bench's launcher need not say it again */
    }
    return PB_OK;
}

/* The configuration values the ranks must agree on: what shapes the
 * training and its collectives, as (flag, value) in the flag's own words. */
typedef struct agreed_value {
    const char *flag;
    char text[48];
} agreed_value;

/* As short as reads back exactly, so two ranks' values differ exactly when
 * their texts do, and read as the user wrote them (0.01, not 0.0100000002). */
static void double_text(double v, char *buf, size_t len)
{
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, len, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static int agreed_values(const pb_config *c, agreed_value *v)
{
    int n = 0;
#define TEXT(name, ...) (v[n].flag = name, snprintf(v[n].text, sizeof v[n].text, __VA_ARGS__), n++)
#define REAL(name, x) (v[n].flag = name, double_text(x, v[n].text, sizeof v[n].text), n++)
    TEXT("--strategy", "%s", c->strategy);
    TEXT("--backend", "%s", c->backend);
    TEXT("--comm", "%s", c->comm);
    TEXT("--workload", "%s", c->workload);
    TEXT("--in", "%d", c->shape.in);
    TEXT("--hidden", "%d", c->shape.hidden);
    TEXT("--layers", "%d", c->shape.layers);
    TEXT("--classes", "%d", c->shape.classes);
    TEXT("--d-model", "%d", c->shape.d_model);
    TEXT("--heads", "%d", c->shape.heads);
    TEXT("--seq", "%d", c->shape.seq);
    TEXT("--vocab", "%d", c->shape.vocab);
    TEXT("--batch", "%d", c->shape.batch);
    TEXT("--gpus", "%d", c->devices);
    TEXT("--precision", "%s", pb_precision_name(c->precision));
    TEXT("--optimizer", "%s", pb_optimizer_name(c->optimizer));
    REAL("--lr", c->lr);
    REAL("--momentum", c->momentum);
    REAL("--weight-decay", c->weight_decay);
    REAL("--beta1", c->beta1);
    REAL("--beta2", c->beta2);
    REAL("--eps", c->eps);
    TEXT("--iters", "%d", c->iters);
    TEXT("--warmup", "%d", c->warmup);
    TEXT("--seed", "%llu", (unsigned long long)c->seed);
    REAL("--bucket-mb", c->bucket_mb);
    TEXT("--no-overlap", "%s", c->no_overlap ? "on" : "off");
    TEXT("--verify", "%s", c->verify ? "on" : "off");
    REAL("--timeout", c->timeout_s);
#undef TEXT
#undef REAL
    return n;
}

/* Multi-rank, before the first step: the ranks' configurations must agree
 * (a hash per value; when one differs, the ranks exchange it, so the error
 * names the flag and both values). *differs: they do not. */
static pb_status check_config_agreement(const run_state *rs, bool usable, bool *differs)
{
    *differs = false;
    if (!rs->multi || rs->world.ranks <= 1) return PB_OK;
    agreed_value v[40];
    uint64_t hashes[40];
    const char *names[40], *texts[40];
    int n = agreed_values(rs->cfg, v);
    for (int i = 0; i < n; i++) {
        names[i] = v[i].flag;
        texts[i] = v[i].text;
        hashes[i] = pb_hash_bytes(PB_HASH_INIT, v[i].text, strlen(v[i].text));
    }
    return pb_world_agree_config(hashes, names, texts, n, usable, rs->cfg->timeout_s, differs);
}

/* --dump: step 0's global batch. A rank's loader holds its shard alone, so
 * the writer generates the whole batch for the file (outside the timed
 * step; the same samples, as they are pure functions of seed, step, row). */
static pb_status dump_batch0(run_state *rs, const pb_batch *batch)
{
    pb_status st = PB_OK;
    const pb_config *cfg = rs->cfg;
    const pb_model *model = &rs->model;
    size_t b = (size_t)cfg->shape.batch, ib = pb_model_input_bytes(model), tb = pb_model_target_bytes(model);
    char *x = NULL, *targets = NULL;
    float *table = NULL;
    const void *dx = batch->inputs, *dt = batch->targets;
    if (batch->row0 != 0 || (size_t)batch->count != b) {
        PB_ALLOC(x, b * ib);
        PB_ALLOC(targets, b * tb);
        if (model->data_table) {
            PB_ALLOC(table, model->data_table);
            model->ops->data_table(model, cfg->seed, table);
        }
        model->ops->fill(model, cfg->seed, table, 0, 0, (int)b, x, targets);
        dx = x;
        dt = targets;
    }
    /* inputs [b, values per sample]; targets the same, or [b] for one */
    size_t xs[2] = {b, model->input_elems}, ts[2] = {b, model->target_elems};
    PB_TRY(dump_array(cfg, "batch0_x.npy", model->input_dtype, dx, ib / model->input_elems, 2, xs));
    PB_TRY(dump_array(cfg, "batch0_labels.npy", model->target_dtype, dt, tb / model->target_elems,
                      model->target_elems == 1 ? 1 : 2, ts));
cleanup:
    free(x);
    free(targets);
    free(table);
    return st;
}

/* Measured steps between two progress lines (and the last step's line) */
#define PB_PROGRESS_EVERY 10

/* A progress line as Megatron-LM prints one, over the steps since the last
 * line (mean_ms their mean): step time, throughput, model TFLOP/s per
 * device, MFU against this device's measured peak (when calibrated: ranks
 * meet only after the steps, so rank 0's own), the loss and peak memory. The
 * row's figures are over all measured steps and the slowest rank's. */
static void progress_line(run_state *rs, int done, double mean_ms, double loss)
{
    const pb_config *cfg = rs->cfg;
    double flops = pb_model_flops(&rs->model, 0, rs->model.n_blocks, cfg->shape.batch);
    double tflops = flops / (mean_ms * 1e-3) / 1e12 / cfg->devices;
    char mfu[32] = "", mem[48] = "";
    if (isfinite(rs->cal.peak_tflops) && rs->cal.peak_tflops > 0)
        snprintf(mfu, sizeof mfu, " | mfu %.3f", tflops / rs->cal.peak_tflops);
    pb_memory_report m = {0};
    if (rs->strategy->memory(rs->strategy_state, &m) == PB_OK && m.peak_mb_max > 0)
        snprintf(mem, sizeof mem, " | mem %.1f MB peak", m.peak_mb_max);
    /* a token workload's throughput in tokens, as llm.c and Megatron print it */
    int per = rs->model.seq ? rs->model.seq : 1;
    pb_log_info("step %d/%d | %.3f ms/step | %.0f %s/s | %.4g TFLOP/s/device%s | loss %.4f%s", done, cfg->iters,
                mean_ms, (double)cfg->shape.batch * per * 1e3 / mean_ms, rs->model.seq ? "tokens" : "samples", tflops,
                mfu, loss, mem);
}

static pb_status train(run_state *rs)
{
    pb_status st = PB_OK;
    const pb_config *cfg = rs->cfg;
    int total = cfg->warmup + cfg->iters;
    unsigned long allocs_before = 0;
    double interval_ms = 0.0; /* the measured steps since the last progress line */
    int interval_n = 0;

    for (int s = 0; s <= total; s++) {
        /* a step boundary: stop here on SIGINT/SIGTERM (every rank at the
         * same one), also after the last step */
        PB_TRY(stop_requested(rs, s));
        if (rs->interrupted || s == total) break;
        if (s == cfg->warmup && pb_alloc_count) allocs_before = pb_alloc_count();
        pb_step_result res;
        pb_batch batch;
        double step_ms = 0.0;
        pb_fault_set_step(s);
        st = pb_timed_step(rs->loader, rs->strategy, rs->strategy_state, s, &batch, &res, &step_ms);
        if (st != PB_OK) return st;
        if (pb_fault_nan_step()) res.loss = NAN; /* PB_FAULT kind=nan (test-only) */
        if (!isfinite(res.loss)) {
            st = pb_user_error(PB_ERR_NUMERIC, "loss is %s at step %d; the run failed (try a smaller --lr)",
                               isnan(res.loss) ? "NaN" : "infinite", s);
            if (!rs->multi || rs->world.ranks <= 1) return st;
            /* the step's collectives are done: the others learn it at the
             * boundary (stop_requested), where every rank is */
            rs->failed = true;
            snprintf(rs->failed_why, sizeof rs->failed_why, "%s", pb_error_message());
            pb_error_clear();
            st = PB_OK;
            continue;
        }
        if (s == 0) {
            rs->loss_first = res.loss;
            if (cfg->dump[0] && is_writer(rs)) PB_TRY(dump_batch0(rs, &batch));
        }
        rs->loss_last = res.loss;
        /* --verify judges the parameters after this step: keep them (between
         * two timed steps, so no step's time includes the copy) */
        if (s + 1 == pb_verify_steps(cfg) &&
            (rs->verify_params || (rs->strategy->params_collective && cfg->verify &&
                                   pb_verify_steps(cfg) < (int64_t)cfg->warmup + cfg->iters)))
            PB_TRY(rs->strategy->get_params(rs->strategy_state, rs->verify_params));
        if (s < cfg->warmup) continue;
        int i = s - cfg->warmup;
        rs->step_ms[i] = step_ms;
        for (int p = 0; p < PB_PHASE_COUNT; p++) rs->phase_sum.ms[p] += res.t.ms[p];
        if (rs->phase_steps)
            memcpy(rs->phase_steps + (size_t)i * PB_PHASE_COUNT, res.t.ms, sizeof res.t.ms);
        if (rs->steps) {
            double *row = rs->steps + ((size_t)(rs->multi ? rs->world.rank : 0) * (size_t)cfg->iters + (size_t)i) *
                                          PB_STEPS_WIDTH;
            memcpy(row, res.t.ms, sizeof res.t.ms);
            row[PB_PHASE_COUNT] = step_ms;
            row[PB_PHASE_COUNT + 1] = res.loss;
        }
        interval_ms += step_ms;
        interval_n++;
        if (!cfg->quiet && (i + 1 == cfg->iters || (i + 1) % PB_PROGRESS_EVERY == 0)) {
            progress_line(rs, i + 1, interval_ms / interval_n, res.loss);
            interval_ms = 0.0;
            interval_n = 0;
        }
    }
    if (pb_alloc_count)
        fprintf(stderr, "bench: allocations during measured steps: %lu\n", pb_alloc_count() - allocs_before);
    /* test-only: what this process's loader generated (tests/e2e/test_ddp.c) */
    const char *stats = getenv("PB_TEST_LOADER_STATS");
    if (stats && *stats && strcmp(stats, "0") != 0)
        fprintf(stderr, "bench: rank %d loader filled %lld samples, %lld bytes\n", rs->multi ? rs->world.rank : 0,
                (long long)pb_loader_filled(rs->loader),
                (long long)pb_loader_filled(rs->loader) *
                    (long long)(pb_model_input_bytes(&rs->model) + pb_model_target_bytes(&rs->model)));
cleanup:
    return st;
}

/* Devices that share hardware are labelled oversubscribed: logical devices
 * mapped onto one physical device (--device-map 0,0), and on the CPU
 * backend more threads (devices x BLAS threads) than cores. */
static bool shares_hardware(const pb_config *cfg)
{
    for (int i = 0; i < cfg->n_device_map; i++)
        for (int j = 0; j < i; j++)
            if (cfg->device_map[i] == cfg->device_map[j]) return true;
    const pb_strategy *strategy = pb_find_strategy(cfg->strategy);
    const pb_backend *be = pb_find_backend(cfg->backend);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return be && !be->is_gpu && strategy && strategy->procs == PB_PROC_ONE && cores > 0 &&
           (long)cfg->devices * cfg->threads > cores;
}

static void fill_config(pb_record *r, const pb_config *cfg, const run_state *rs)
{
    pb_record_fill_config(r, cfg);
    pb_record_set(r, PB_COL_RUN_ID, "%s", cfg->run_id);
    pb_record_set(r, PB_COL_OVERSUBSCRIBED, "%d",
                  (rs->multi && rs->world.oversubscribed) || shares_hardware(cfg) ? 1 : 0);
}

/* The plan of the device with the largest one, by part: beside the
 * measured peak_mem_mb in an ok row, and in a failed row the memory the
 * run would have needed (a prediction, never a measurement) */
static void fill_plan(pb_record *r, const run_state *rs)
{
    if (!rs->have_plan) return;
    const pb_mem_parts *p = &rs->plan.device_parts[pb_memplan_largest(&rs->plan)];
    const double mib = 1048576.0;
    pb_record_num(r, PB_COL_MEM_PLAN_MB, pb_mem_parts_sum(p) / mib);
    pb_record_num(r, PB_COL_MEM_PLAN_PARAMS_MB, p->params / mib);
    pb_record_num(r, PB_COL_MEM_PLAN_GRADS_MB, p->grads / mib);
    pb_record_num(r, PB_COL_MEM_PLAN_OPTIM_MB, p->optim / mib);
    pb_record_num(r, PB_COL_MEM_PLAN_ACTS_MB, p->acts / mib);
}

static void fill_results(pb_record *r, run_state *rs)
{
    const pb_config *cfg = rs->cfg;
    pb_stats s;
    pb_stats_compute(rs->step_ms, (size_t)cfg->iters, rs->scratch, &s);
    pb_record_num(r, PB_COL_STEP_MS_MIN, s.min);
    pb_record_num(r, PB_COL_STEP_MS_P50, s.p50);
    pb_record_num(r, PB_COL_STEP_MS_MEAN, s.mean);
    pb_record_num(r, PB_COL_STEP_MS_P95, s.p95);
    pb_record_num(r, PB_COL_STEP_MS_MAX, s.max);
    pb_record_num(r, PB_COL_STEP_MS_CV, s.cv);
    /* throughput over the whole measured time, so slow outliers count */
    pb_record_num(r, PB_COL_SAMPLES_PER_S, cfg->shape.batch * 1e3 / s.mean);
    if (rs->model.seq) pb_record_num(r, PB_COL_TOKENS_PER_S, (double)cfg->shape.batch * rs->model.seq * 1e3 / s.mean);
    double tflops = pb_model_flops(&rs->model, 0, rs->model.n_blocks, cfg->shape.batch) / (s.mean * 1e-3) / 1e12;
    pb_record_num(r, PB_COL_MODEL_TFLOPS, tflops);
    /* MFU against the mean of the devices' measured peaks, per device:
     * the work done over the sum of their peaks (docs/statistics.md) */
    pb_record_num(r, PB_COL_PEAK_TFLOPS, rs->cal.peak_tflops);
    pb_record_num(r, PB_COL_PEAK_TFLOPS_MIN, rs->cal.peak_min);
    pb_record_num(r, PB_COL_PEAK_TFLOPS_MAX, rs->cal.peak_max);
    pb_record_num(r, PB_COL_MFU, tflops / cfg->devices / rs->cal.peak_tflops);
    pb_record_num(r, PB_COL_GEMM_MS, rs->cal.gemm_ms);
    static const pb_column phase_col[PB_PHASE_COUNT] = {
        PB_COL_LOAD_MS, PB_COL_H2D_MS, PB_COL_FWD_MS, PB_COL_BWD_MS, PB_COL_COMM_MS,
        PB_COL_SYNC_MS, PB_COL_OPT_MS, PB_COL_SCATTER_MS, PB_COL_REPLICATE_MS,
        PB_COL_GATHER_MS, PB_COL_REDUCE_MS, PB_COL_P2P_MS, PB_COL_BUBBLE_MS,
        PB_COL_TP_COMM_MS, PB_COL_REDUCE_SCATTER_MS, PB_COL_ALLGATHER_MS,
    };
    for (int p = 0; p < PB_PHASE_COUNT; p++)
        pb_record_num(r, phase_col[p], rs->phase_sum.ms[p] / cfg->iters);
    pb_record_num(r, PB_COL_LOSS_FIRST, rs->loss_first);
    pb_record_num(r, PB_COL_LOSS_LAST, rs->loss_last);
    pb_memory_report mem = {0};
    if (rs->strategy->memory(rs->strategy_state, &mem) == PB_OK) {
        pb_record_num(r, PB_COL_PEAK_MEM_MB, mem.peak_mb_max);
        pb_record_num(r, PB_COL_PEAK_MEM_MB_DEV0, mem.peak_mb_dev0);
    }
    pb_record_num(r, PB_COL_HOST_RSS_MB, pb_host_rss_mb());
    if (rs->strategy->report) {
        pb_step_times mean;
        for (int p = 0; p < PB_PHASE_COUNT; p++) mean.ms[p] = rs->phase_sum.ms[p] / cfg->iters;
        rs->strategy->report(rs->strategy_state, &mean, r);
    }
}

static pb_status finish_dump(run_state *rs)
{
    /* ranks hold the same parameters after the all-reduce: rank 0's do */
    /* (split parameters: every rank sends rank 0 its part) */
    if ((!rs->cfg->dump[0] && !rs->cfg->verify) || (!is_writer(rs) && !rs->strategy->params_collective)) return PB_OK;
    pb_status st = rs->strategy->get_params(rs->strategy_state, is_writer(rs) ? rs->params : NULL);
    if (!is_writer(rs)) return st;
    if (st != PB_OK || !rs->cfg->dump[0]) return st;
    return dump_params(rs->cfg, &rs->model, rs->params, true);
}

double pb_verify_tolerance(pb_precision p, pb_optimizer o)
{
    /* fp32 differs from single only in summation order (split batches,
     * reductions), amplified over the steps; tf32/bf16 GEMMs round their
     * operands, and a different split rounds different partial sums. AdamW
     * is judged normwise per tensor (verify_err.h) after step 3, as it
     * moves an element whose gradient is near zero by its rounding noise:
     * correct fp32 runs measured up to 3.2e-4 there (gpt-xs, the QKV bias,
     * whose key part has a zero gradient), a bias correction one step ahead
     * 1.9e-3, a gradient bucket left out of the all-reduce 3.4e-3
     * (docs/strategies.md) */
    double t = p == PB_FP32 ? 1e-4 : p == PB_TF32 ? 5e-3 : 5e-2;
    return o == PB_OPT_ADAMW ? (t < 1e-3 ? 1e-3 : t) : t;
}

int64_t pb_verify_steps(const pb_config *cfg)
{
    int64_t total = (int64_t)cfg->warmup + cfg->iters;
    int64_t k = cfg->optimizer == PB_OPT_ADAMW ? PB_VERIFY_STEPS_ADAMW : PB_VERIFY_STEPS;
    return total < k ? total : k;
}

/* --verify: train `single` on the same backend, precision, seed, global
 * batch and BLAS threads for as many steps, in this process; *max_rel
 * compares the parameters after the judged step (pb_verify_steps, measured
 * by pb_verify_error, *worst its tensor or -1), *drift
 * the final ones when the run went on beyond it (else NaN). A signal stops
 * it at a step boundary (*max_rel stays NaN; the caller sees
 * pb_signals_caught()). */
static pb_status verify_against_single(run_state *rs, double *max_rel, int *worst, double *drift)
{
    pb_status st = PB_OK;
    pb_config ref = *rs->cfg;
    snprintf(ref.strategy, sizeof ref.strategy, "single");
    snprintf(ref.comm, sizeof ref.comm, "none");
    ref.devices = 1;
    ref.n_device_map = 0;
    ref.cuda_graph = false;
    ref.dump[0] = '\0';
    size_t n = rs->model.n_params;
    float *init = NULL, *final = NULL;
    void *state = NULL;
    pb_loader *loader = NULL;
    int64_t total = (int64_t)ref.warmup + ref.iters, judged = pb_verify_steps(&ref);
    /* the test-only PB_FAULT fires in the run's steps, never in its reference */
    pb_fault_set_step(-1);
    PB_ALLOC(init, n);
    PB_ALLOC(final, n);
    rs->model.ops->init_params(&rs->model, ref.seed, init);
    /* on the device the run itself used first (a ddp rank's own, the
     * first of --device-map): device 0 may be another job's, or absent
     * from what this run was given */
    int device = rs->multi ? rs->device : rs->cfg->n_device_map ? rs->cfg->device_map[0] : 0;
    pb_strategy_ctx ctx = {.cfg = &ref, .be = rs->be, .model = &rs->model, .init_params = init, .device = device};
    PB_TRY(pb_strategy_single.init(&ctx, &state));
    PB_TRY(pb_loader_create(rs->be, &rs->model, ref.seed, 0, ref.shape.batch, total, loader_workers(&ref, 1),
                            &loader));
    if (!ref.quiet) pb_log_info("--verify: training single on the same %lld batches", (long long)total);
    for (int64_t s = 0; s < total; s++) {
        pb_batch batch;
        pb_step_result res;
        double ms;
        if (pb_signals_caught()) goto cleanup;
        PB_TRY(pb_timed_step(loader, &pb_strategy_single, state, s, &batch, &res, &ms));
        if (s + 1 == judged) {
            PB_TRY(pb_strategy_single.get_params(state, final));
            const float *got = rs->verify_params ? rs->verify_params : rs->params;
            *max_rel = pb_verify_error(&rs->model, ref.optimizer, got, final, worst);
        }
    }
    if (judged < total) {
        PB_TRY(pb_strategy_single.get_params(state, final));
        *drift = pb_verify_error(&rs->model, ref.optimizer, rs->params, final, NULL);
    }
cleanup:
    pb_loader_destroy(loader);
    if (state) pb_strategy_single.destroy(state);
    free(init);
    free(final);
    return st;
}

/* Ranks: every rank calibrated its own device; rank 0 gets them all (each
 * rank's entry in its own slot, -1 elsewhere and where not measured, so a
 * max-reduce is a gather) and the row the mean, min and max. */
static pb_status gather_calibration(run_state *rs)
{
    pb_status st = PB_OK;
    int n = rs->world.ranks, r = rs->world.rank;
    double *v = NULL;
    PB_ALLOC(v, 2 * (size_t)n);
    for (int i = 0; i < 2 * n; i++) v[i] = -1.0;
    if (!isnan(rs->cal.peak_tflops)) v[r] = rs->cal.peak_tflops;
    if (!isnan(rs->cal.gemm_ms)) v[n + r] = rs->cal.gemm_ms;
    PB_TRY(pb_world_max_to_root(v, 2 * n));
    if (is_writer(rs)) {
        for (int i = 0; i < 2 * n; i++)
            if (v[i] < 0.0) v[i] = NAN;
        pb_calibration_summarize(v, v + n, n, &rs->cal);
    }
cleanup:
    free(v);
    return st;
}

/* Ranks: each step's time is the slowest rank's (the step ends for the job
 * when its last rank is done), and so are that step's phase times, taken
 * from the same rank, so the phase columns add up to the step columns
 * (rank 0's alone would not when another rank is slower). One gather after
 * the steps: no extra collective runs between them. */
/* --steps-out, ranks: every rank's steps to rank 0 (each rank's slot holds
 * its own values, -HUGE_VAL elsewhere, so an elementwise MAX is a gather).
 * Before gather_slowest, which rewrites the per-step arrays. */
static pb_status gather_steps(run_state *rs)
{
    if (!rs->steps || !rs->multi) return PB_OK;
    return pb_world_max_to_root(rs->steps, rs->world.ranks * rs->cfg->iters * PB_STEPS_WIDTH);
}

/* Every rank's record to rank 0 and, there, the straggler verdicts. Before
 * gather_slowest, which rewrites the per-step arrays and the calibration
 * with the ranks' slowest. */
static pb_status gather_ranks(run_state *rs)
{
    pb_rank_stats mine;
    pb_rank_stats_compute(rs->step_ms, rs->phase_steps, rs->cfg->iters, rs->scratch, &mine);
    mine.peak_tflops = rs->cal.peak_tflops;
    /* one device per rank; a one-process run's own device when it has one */
    mine.device = rs->multi ? rs->device : rs->cfg->devices > 1 ? NAN
                                          : rs->cfg->n_device_map ? rs->cfg->device_map[0] : 0;
    char host[PB_RANK_HOST_CHARS] = "unknown";
    if (rs->multi) snprintf(host, sizeof host, "%.*s", (int)sizeof host - 1, rs->world.host);
    else if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    pb_status st = pb_ranks_collect(&rs->ranks, &mine, host, rs->multi ? rs->world.rank : 0,
                                    rs->multi ? rs->world.ranks : 1, rs->multi);
    if (st == PB_OK && is_writer(rs)) st = pb_ranks_judge(&rs->ranks, rs->multi && rs->world.oversubscribed);
    return st;
}

static pb_status gather_slowest(run_state *rs)
{
    if (!rs->multi) return PB_OK;
    int iters = rs->cfg->iters;
    pb_status st = pb_world_slowest_to_root(rs->step_ms, rs->phase_steps, iters, PB_PHASE_COUNT);
    if (st == PB_OK && rs->cal.n > 0) st = gather_calibration(rs);
    if (st != PB_OK || !is_writer(rs)) return st;
    memset(&rs->phase_sum, 0, sizeof rs->phase_sum);
    for (int i = 0; i < iters; i++)
        for (int p = 0; p < PB_PHASE_COUNT; p++)
            rs->phase_sum.ms[p] += rs->phase_steps[(size_t)i * PB_PHASE_COUNT + p];
    return PB_OK;
}

/* Rank 0's row, unless the job's launcher is gone (a row appended after the
 * user killed the job would pass for a finished run); bench's launcher
 * learns that it was written. */
static pb_status append_row(const pb_config *cfg, const pb_record *rec)
{
    pb_status st = pb_launch_may_write();
    if (st == PB_OK) st = pb_results_append(cfg->out, rec);
    if (st == PB_OK) pb_launch_report("row");
    return st;
}

/* A rank that failed while the others may be inside a collective with it:
 * say why (prefixed with rank and host), let rank 0 keep the failed row, and
 * end every rank (MPI_Abort). Returns only without MPI. */
static void abort_ranks(run_state *rs, pb_record *rec, pb_status st)
{
    if (is_writer(rs)) {
        pb_record_set(rec, PB_COL_STATUS, "failed");
        pb_record_set(rec, PB_COL_ERROR, "%s", pb_error_message());
        (void)append_row(rs->cfg, rec); /* the error below is the one to tell */
    }
    pb_log_error("%s", pb_error_message());
    pb_log_error("ending all %d ranks", rs->world.ranks);
    /* when every rank fails at once, the first MPI_Abort ends the job: the
     * others give rank 0 a second to append its failed row first (a NaN
     * loss does not come here: the ranks agree on it at the step boundary) */
    if (!is_writer(rs)) {
        struct timespec grace = {1, 0};
        nanosleep(&grace, NULL);
    }
    pb_world_abort(pb_status_exit_code(st));
}

/* Rank-per-device: the device this rank opens (harness/devmap.c). */
static pb_status rank_device(run_state *rs, int visible)
{
    const pb_config *cfg = rs->cfg;
    pb_rank_view v = {.visible = visible, .local_rank = rs->world.local_rank,
                      .local_ranks = rs->world.local_ranks, .rank = rs->world.rank,
                      .map = cfg->device_map, .n_map = cfg->n_device_map,
                      .cuda_visible = getenv("CUDA_VISIBLE_DEVICES")};
    return pb_rank_device(&v, &rs->device);
}

pb_status pb_run(const pb_config *cfg)
{
    run_state rs = {.cfg = cfg};
    pb_status st = PB_OK;
    pb_record *rec = calloc(1, sizeof *rec);
    if (!rec) return pb_host_nomem(sizeof *rec);
    rs.be = pb_find_backend(cfg->backend);
    rs.strategy = pb_find_strategy(cfg->strategy);
    PB_REQUIRE(rs.be && rs.strategy, PB_ERR_INTERNAL, "unresolved backend or strategy");
    rs.multi = rs.strategy->procs == PB_PROC_PER_DEVICE;
    if (rs.multi) pb_world_prepare_env();
    pb_env_fill_vars(rec); /* as the run was given them and bench set them, before a library sets its own */
    PB_TRY(pb_fault_init());
    pb_phase_set_hooks(&(pb_phase_hooks){.begin = phase_begun, .end = phase_ended});
    if (rs.multi) {
        PB_TRY(pb_world_init(&rs.world));
        pb_log_set_rank(rs.world.rank, rs.world.ranks);
        pb_fault_set_rank(rs.world.rank);
        /* the launcher checked the environment's count; this is MPI's own */
        if (rs.world.ranks != cfg->devices) {
            st = pb_usage_error("--gpus %d, but this MPI launch has %d ranks; strategy %s runs one rank per device",
                                cfg->devices, rs.world.ranks, cfg->strategy);
            goto cleanup;
        }
        /* every rank drives a GPU of its node: a node given more ranks than
         * it has GPUs cannot run; it says so (exit 2), and the agreement
         * below stops every other rank with it, before any work */
        pb_status node_st = PB_OK;
        int present = INT_MAX; /* the cpu backend's devices all stand for the host */
        if (rs.be->is_gpu) {
            char why[256] = "";
            present = rs.be->device_count(why, sizeof why);
            node_st = present > 0 ? pb_config_check_cuda_devices(cfg, present, rs.world.local_ranks)
                                  : pb_user_error(PB_ERR_UNAVAILABLE, "--backend cuda: no usable CUDA device on "
                                                                      "this node: %s", why);
        }
        if (node_st == PB_OK) node_st = rank_device(&rs, present);
        /* a mismatch ends every rank cleanly (exit 2, no row); a rank that
         * never joins leaves the others nothing to finalize with: abort */
        bool differs = false;
        st = check_config_agreement(&rs, node_st == PB_OK, &differs);
        rs.agreed_failure = differs;
        if (st == PB_ERR_COMM) {
            pb_log_error("%s", pb_error_message());
            pb_world_abort(pb_status_exit_code(st));
        }
        if (node_st != PB_OK) st = node_st;
        if (st != PB_OK) goto cleanup;
        /* across nodes, which ran where: the row keeps rank 0's host only */
        if (rs.world.nodes > 1 && is_writer(&rs) && !cfg->quiet)
            pb_log_info("%d ranks on %d nodes: %s", rs.world.ranks, rs.world.nodes, rs.world.node_map);
    }

    double max_rel = NAN, drift = NAN;
    int worst = -1;
    bool invalid = false;
    st = setup(&rs);
    if (st == PB_OK) st = train(&rs);
    /* a one-process strategy's device 0 is this thread, bound to its CPUs
     * during the steps (cpu_bind.h): --verify's single and the rest get
     * every CPU back */
    pb_cpu_unbind_self();
    /* interrupted: every rank stopped at the same boundary; nothing is
     * gathered, dumped or written, and the caller exits 128 + the signal */
    if (st == PB_OK && rs.interrupted) goto cleanup;
    if (st == PB_OK) st = gather_steps(&rs);
    if (st == PB_OK) st = gather_ranks(&rs);
    if (st == PB_OK) st = gather_slowest(&rs);
    if (st == PB_OK) st = finish_dump(&rs);

    fill_config(rec, cfg, &rs);
    fill_plan(rec, &rs);
    if (!rs.have_info) pb_backend_cpu.info(NULL, &rs.info); /* host facts still apply */
    pb_env_fill(rec, pb_find_backend(cfg->backend), &rs.info, cfg->devices);
    if (rs.multi) pb_record_set(rec, PB_COL_MPI, "%s", rs.world.version);
    if (st != PB_OK && rs.multi && rs.world.ranks > 1 && !rs.agreed_failure) abort_ranks(&rs, rec, st);

    /* --verify: rank 0 trains single itself; the other ranks wait for its
     * verdict without spinning (pb_world_bcast_int_lazy) */
    if (st == PB_OK && cfg->verify && is_writer(&rs)) {
        st = verify_against_single(&rs, &max_rel, &worst, &drift);
        invalid = st == PB_OK && !(max_rel <= pb_verify_tolerance(cfg->precision, cfg->optimizer));
    }
    /* a signal after the last step boundary (during --verify, the gather or
     * the dump) stops the run here, as one between steps: no row; the other
     * ranks (which got the signal too) still learn rank 0's code below */
    int late_sig = pb_signals_caught();
    if (late_sig && is_writer(&rs))
        pb_log_error("interrupted by %s after the last step%s: stopping; no row written (an interrupted run writes "
                     "nothing)",
                     signal_name(late_sig), cfg->verify ? " (during --verify)" : "");
    if (late_sig) pb_launch_report("interrupted");

    char steps_tmp[4200] = "", ranks_tmp[4200] = "";
    if (is_writer(&rs) && !late_sig) {
        /* a step file that cannot be written fails the run, as --dump does */
        if (st == PB_OK && rs.steps)
            st = pb_steps_out_write(cfg->steps_out, cfg->run_id, rs.steps, rs.multi ? rs.world.ranks : 1, cfg->iters,
                                    cfg->warmup, steps_tmp, sizeof steps_tmp);
        if (st == PB_OK && cfg->ranks_out[0])
            st = pb_ranks_out_write(&rs.ranks, cfg->ranks_out, cfg->run_id, ranks_tmp, sizeof ranks_tmp);
        if (st == PB_OK) {
            pb_record_set(rec, PB_COL_STATUS, invalid ? "invalid" : "ok");
            fill_results(rec, &rs);
            pb_ranks_report(&rs.ranks, rec, true);
            pb_record_num(rec, PB_COL_VERIFY_MAX_REL_ERR, max_rel);
            if (invalid) {
                /* the timings were measured, but of a computation that is wrong */
                st = pb_user_error(PB_ERR_INVALID,
                                   "--verify: parameters after step %lld differ from single's by up to %.3g "
                                   "(%s%s), beyond the %s%s tolerance %.0e",
                                   (long long)pb_verify_steps(cfg), max_rel,
                                   worst >= 0 ? "||p - q|| / ||q|| of " : "relative",
                                   worst >= 0 ? rs.model.tensor[worst].name : "",
                                   pb_precision_name(cfg->precision), cfg->optimizer == PB_OPT_ADAMW ? " AdamW" : "",
                                   pb_verify_tolerance(cfg->precision, cfg->optimizer));
                pb_record_set(rec, PB_COL_ERROR, "%s", pb_error_message());
            }
        } else {
            /* keep the config and the reason, but no figures that could pass
             * for a measurement */
            pb_record_set(rec, PB_COL_STATUS, "failed");
            pb_record_set(rec, PB_COL_ERROR, "%s", pb_error_message());
        }
        pb_status wst = append_row(cfg, rec);
        /* the steps beside a row that carries figures (ok or invalid) */
        bool keep = wst == PB_OK && (st == PB_OK || invalid);
        pb_status sst = pb_steps_out_finish(steps_tmp, cfg->steps_out, keep);
        pb_status rst = pb_out_file_finish("--ranks-out", ranks_tmp, cfg->ranks_out, keep);
        if (st == PB_OK) st = wst;
        if (st == PB_OK) st = sst;
        if (st == PB_OK) st = rst;
        if (wst == PB_OK && st == PB_OK && cfg->verify && !cfg->quiet)
            pb_log_info("--verify: parameters after step %lld within %.3g of single's (tolerance %.0e)",
                        (long long)pb_verify_steps(cfg), max_rel,
                        pb_verify_tolerance(cfg->precision, cfg->optimizer));
        /* reported, not judged: fp32 sums in another order drift apart over
         * the steps (docs/strategies.md, --verify) */
        if (wst == PB_OK && st == PB_OK && !isnan(drift) && !cfg->quiet)
            pb_log_info("--verify: after all %d steps they differ by %.3g: fp32 reordering drift, not judged",
                        cfg->warmup + cfg->iters, drift);
        if (wst == PB_OK && st == PB_OK && !cfg->quiet)
            pb_log_info("%s on %s: %s %s/s, step p50 %s ms; row appended to %s", cfg->strategy, cfg->backend,
                        rec->v[rs.model.seq ? PB_COL_TOKENS_PER_S : PB_COL_SAMPLES_PER_S],
                        rs.model.seq ? "tokens" : "samples", rec->v[PB_COL_STEP_MS_P50], cfg->out);
    }
    if (rs.multi && rs.world.ranks > 1) {
        /* rank 0's outcome, so no rank finalizes while rank 0 still works;
         * the others exit 0 and mpirun reports rank 0's code */
        int code = pb_status_exit_code(st);
        pb_status bst = pb_world_bcast_int_lazy(&code);
        if (bst != PB_OK && st == PB_OK) st = bst;
    }
cleanup:
    /* a failure every rank knows of: rank 0 tells it, once */
    if (rs.agreed_failure && !is_writer(&rs)) {
        pb_error_clear();
        st = PB_OK;
    }
    pb_loader_destroy(rs.loader);
    if (rs.strategy_state) rs.strategy->destroy(rs.strategy_state);
    if (rs.multi && pb_world_up()) {
        pb_world_finalize();
        /* every rank ended cleanly: under bench's launcher rank 0 hands it
         * its code and exits 0, so that mpirun adds no banner about a
         * nonzero exit to a failure already explained (harness/launch.h) */
        if (st != PB_OK && is_writer(&rs)) pb_launch_hand_exit(pb_status_exit_code(st));
    }
    free(rs.params);
    free(rs.verify_params);
    free(rs.step_ms);
    free(rs.scratch);
    free(rs.phase_steps);
    free(rs.steps);
    pb_ranks_free(&rs.ranks);
    free(rec);
    return st;
}
