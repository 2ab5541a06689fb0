/* bench predict's model: per strategy, the measured single-device phases
 * scaled to the target's batch and cores, plus the collectives from
 * alpha-beta fits or a topology's ring/tree formulas, overlapped as the
 * strategy overlaps them. docs/predict.md states every formula and what the
 * model leaves out; this file is pure arithmetic so the unit tests can check
 * it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "predict.h"

static const char *const strategy_names[PB_PRED_NSTRAT] = {"single", "dp", "ddp", "mp", "zero", "tp", "mesh"};

const char *pb_pred_strategy_name(pb_pred_strategy s) { return s < PB_PRED_NSTRAT ? strategy_names[s] : "?"; }

pb_pred_strategy pb_pred_strategy_find(const char *name)
{
    for (int s = 0; s < PB_PRED_NSTRAT; s++)
        if (strcmp(name, strategy_names[s]) == 0) return (pb_pred_strategy)s;
    return PB_PRED_NSTRAT;
}

/* ---- collectives ------------------------------------------------------- */

/* us to move `bytes` at `gbps` GB/s */
static double xfer_us(double bytes, double gbps) { return gbps > 0 && isfinite(gbps) ? bytes / (gbps * 1e3) : 0; }

static const pb_pred_fit *find_fit(const pb_pred_net *net, const char *comm, pb_coll c, int n, bool exact)
{
    const pb_pred_fit *best = NULL;
    for (int i = 0; i < net->nfits; i++) {
        const pb_pred_fit *f = &net->fits[i];
        if (f->coll != c || f->nseg < 1 || (comm && strcmp(f->comm, comm) != 0)) continue;
        if (f->ranks == n) return f;
        /* else the largest rank count measured: its per-link figures are the
         * nearest to a larger target's */
        if (!exact && (!best || f->ranks > best->ranks)) best = f;
    }
    return exact ? NULL : best;
}

/* The segment whose sizes hold `bytes` (the first below them, the last above). */
static const pb_fit_segment *fit_segment(const pb_pred_fit *f, double bytes)
{
    const pb_fit_segment *s = &f->seg[0];
    for (int i = 1; i < f->nseg; i++)
        if (bytes >= f->seg[i].bytes_lo || bytes > f->seg[i - 1].bytes_hi) s = &f->seg[i];
    return s;
}

static double seg_us(const pb_fit_segment *s, double bytes) { return s->alpha_us + xfer_us(bytes, s->beta_gbps); }

/* Ring all-reduce: 2(n-1) latencies, 2(n-1)/n of S over each link;
 * a pipelined (double binary) tree: 2 log2(n) latencies, 2 S over a link;
 * the faster of the two, as NCCL's tuner picks. */
static double ring_allreduce_us(int n, double bytes, double alpha_us, double gbps)
{
    if (n <= 1) return 0;
    double ring = 2.0 * (n - 1) * alpha_us + xfer_us(2.0 * (n - 1) / n * bytes, gbps);
    double tree = 2.0 * ceil(log2((double)n)) * alpha_us + xfer_us(2.0 * bytes, gbps);
    return fmin(ring, tree);
}

/* reduce-scatter or all-gather in a ring: (n-1) latencies, (n-1)/n of S */
static double ring_half_us(int n, double bytes, double alpha_us, double gbps)
{
    return n <= 1 ? 0 : (n - 1) * alpha_us + xfer_us((double)(n - 1) / n * bytes, gbps);
}

static int devices_per_node(const pb_pred_net *net, int n)
{
    return net->gpus_per_node > 0 && net->gpus_per_node < n ? net->gpus_per_node : n;
}

/* An all-reduce over n devices of which g share a node (a group's: a mesh's
 * dp group has T apart of its ranks' in each node) */
static double allreduce_group_us(const pb_pred_net *net, const char *comm, int n, int g, double bytes,
                                 const char **source)
{
    if (n <= 1 || bytes <= 0) return 0;
    const pb_pred_fit *f = find_fit(net, comm, PB_COLL_ALL_REDUCE, n, true);
    if (f) {
        *source = "measured";
        return seg_us(fit_segment(f, bytes), bytes);
    }
    g = g < 1 ? 1 : g > n ? n : g;
    int nodes = (n + g - 1) / g;
    f = nodes == 1 ? find_fit(net, comm, PB_COLL_ALL_REDUCE, n, false) : NULL;
    if (f && f->ranks > 1) {
        /* a fit at n0 ranks read as a ring's per-step latency and busbw */
        const pb_fit_segment *s = fit_segment(f, bytes);
        *source = "extrapolated";
        return ring_allreduce_us(n, bytes, s->alpha_us / (2.0 * (f->ranks - 1)),
                                 s->beta_gbps * pb_busbw_factor(PB_COLL_ALL_REDUCE, f->ranks));
    }
    *source = "topology";
    if (nodes == 1) return ring_allreduce_us(n, bytes, net->intra_alpha_us, net->intra_gbps);
    /* in the node: the topology's figures, else a measured fit's (bench
     * comm on one node) read as a ring's step and busbw */
    double ia = net->intra_alpha_us, ib = net->intra_gbps;
    f = find_fit(net, comm, PB_COLL_ALL_REDUCE, g, false);
    if (ib <= 0 && f && f->ranks > 1) {
        const pb_fit_segment *s = fit_segment(f, bytes / g);
        ia = s->alpha_us / (2.0 * (f->ranks - 1));
        ib = s->beta_gbps * pb_busbw_factor(PB_COLL_ALL_REDUCE, f->ranks);
        *source = "extrapolated";
    }
    /* hierarchical: reduce-scatter in the node, all-reduce of each device's
     * 1/g across the nodes (every device over its own NIC), all-gather */
    return ring_half_us(g, bytes, ia, ib) + ring_allreduce_us(nodes, bytes / g, net->inter_alpha_us, net->inter_gbps) +
           ring_half_us(g, bytes, ia, ib);
}

double pb_pred_allreduce_us(const pb_pred_net *net, const char *comm, int n, double bytes, const char **source)
{
    return allreduce_group_us(net, comm, n, devices_per_node(net, n), bytes, source);
}

double pb_pred_broadcast_us(const pb_pred_net *net, const char *comm, int n, double bytes, const char **source)
{
    if (n <= 1 || bytes <= 0) return 0;
    const pb_pred_fit *f = find_fit(net, comm, PB_COLL_BROADCAST, n, true);
    if (f) {
        *source = "measured";
        return seg_us(fit_segment(f, bytes), bytes);
    }
    *source = "topology";
    /* pipelined chain: (n-1) latencies, S over a link once */
    return (n - 1) * net->intra_alpha_us + xfer_us(bytes, net->p2p_gbps > 0 ? net->p2p_gbps : net->intra_gbps);
}

double pb_pred_p2p_us(const pb_pred_net *net, const char *comm, int n, double bytes, const char **source)
{
    if (bytes <= 0) return 0;
    const pb_pred_fit *f = find_fit(net, comm, PB_COLL_SENDRECV, n, true);
    if (!f) f = find_fit(net, comm, PB_COLL_SENDRECV, n, false);
    if (f) {
        /* bench comm's sendrecv: every rank sends to the next at once; one
         * message of it is the figure of a single transfer */
        *source = f->ranks == n ? "measured" : "extrapolated";
        return seg_us(fit_segment(f, bytes), bytes);
    }
    *source = "topology";
    return net->intra_alpha_us + xfer_us(bytes, net->p2p_gbps > 0 ? net->p2p_gbps : net->intra_gbps);
}

/* Reduce-scatter or all-gather of `bytes` in all: a measured fit of that
 * collective; else a fit of it or of the all-reduce at other ranks, read as
 * a ring's per-step latency and busbw (a ring all-reduce is a
 * reduce-scatter then an all-gather, each half its steps and bytes); else
 * the topology's ring, hierarchical across nodes (in the node over the
 * whole buffer, then each device's 1/g across the nodes). */
static double half_us(const pb_pred_net *net, const char *comm, pb_coll c, int n, double bytes, const char **source)
{
    if (n <= 1 || bytes <= 0) return 0;
    const pb_pred_fit *f = find_fit(net, comm, c, n, true);
    if (f) {
        *source = "measured";
        return seg_us(fit_segment(f, bytes), bytes);
    }
    int g = devices_per_node(net, n), nodes = (n + g - 1) / g;
    pb_coll fc = c;
    f = find_fit(net, comm, c, n, false);
    if (!f || f->ranks <= 1) {
        fc = PB_COLL_ALL_REDUCE;
        f = find_fit(net, comm, fc, n, true);
        if (!f) f = find_fit(net, comm, fc, n, false);
    }
    if (f && f->ranks > 1 && nodes == 1) {
        const pb_fit_segment *s = fit_segment(f, bytes);
        double steps = (fc == PB_COLL_ALL_REDUCE ? 2.0 : 1.0) * (f->ranks - 1);
        *source = "extrapolated";
        return ring_half_us(n, bytes, s->alpha_us / steps, s->beta_gbps * pb_busbw_factor(fc, f->ranks));
    }
    *source = "topology";
    if (nodes == 1) return ring_half_us(n, bytes, net->intra_alpha_us, net->intra_gbps);
    return ring_half_us(g, bytes, net->intra_alpha_us, net->intra_gbps) +
           ring_half_us(nodes, bytes / g, net->inter_alpha_us, net->inter_gbps);
}

double pb_pred_reduce_scatter_us(const pb_pred_net *net, const char *comm, int n, double bytes, const char **source)
{
    return half_us(net, comm, PB_COLL_REDUCE_SCATTER, n, bytes, source);
}

double pb_pred_allgather_us(const pb_pred_net *net, const char *comm, int n, double bytes, const char **source)
{
    return half_us(net, comm, PB_COLL_ALL_GATHER, n, bytes, source);
}

/* A reduce to one device: the local comm's all-reduce is that reduce then a
 * broadcast (docs/strategies.md), so a measured pair gives it; else a
 * pipelined chain like the broadcast. */
static double reduce_us(const pb_pred_net *net, const char *comm, int n, double bytes, const char **source)
{
    if (n <= 1) return 0;
    const pb_pred_fit *ar = find_fit(net, comm, PB_COLL_ALL_REDUCE, n, true);
    const pb_pred_fit *bc = find_fit(net, comm, PB_COLL_BROADCAST, n, true);
    if (ar && bc) {
        *source = "measured";
        return fmax(0, seg_us(fit_segment(ar, bytes), bytes) - seg_us(fit_segment(bc, bytes), bytes));
    }
    return pb_pred_broadcast_us(net, NULL, n, bytes, source);
}

/* ---- compute ----------------------------------------------------------- */

/* |log(a/b)|: the distance used to pick the nearest measured row */
static double log_dist(double a, double b) { return fabs(log(a / b)); }

/* A phase at `batch` rows from the nearest measured batch `a` (time ta)
 * and, where measured, a second batch `b` (tb): time = fixed + per-row x
 * rows through the two (a GEMM streams its weights once whatever the rows,
 * so few rows cost more per row than many), anchored at the nearest; with
 * one batch, or where the two give no fixed part (a negative intercept:
 * noise), proportional to the rows. */
static double rows_ms(double ta, double tb, const pb_pred_single *a, const pb_pred_single *b, double batch)
{
    double prop = ta * batch / a->batch;
    if (!b) return prop;
    double per_row = (tb - ta) / (b->batch - a->batch), fixed = ta - per_row * a->batch;
    if (!(fixed > 0) || !(per_row > 0)) return prop;
    return fixed + per_row * batch;
}

void pb_pred_single_phases(const pb_pred_work *w, double batch, int threads, pb_pred_phases *out)
{
    memset(out, 0, sizeof *out);
    if (w->nsingle < 1 || batch <= 0) return;
    if (threads < 1) threads = 1;
    /* the row at the nearest thread count, then at the nearest batch */
    const pb_pred_single *best = NULL;
    for (int i = 0; i < w->nsingle; i++) {
        const pb_pred_single *s = &w->single[i];
        if (!best) {
            best = s;
            continue;
        }
        double dt = log_dist(s->threads, threads) - log_dist(best->threads, threads);
        if (dt < -1e-9 || (fabs(dt) <= 1e-9 && log_dist(s->batch, batch) < log_dist(best->batch, batch))) best = s;
    }
    /* a second row at that thread count and another batch, the nearest:
     * with it, rows cost what the two measured batches say (below) */
    const pb_pred_single *other = NULL;
    for (int i = 0; i < w->nsingle; i++) {
        const pb_pred_single *s = &w->single[i];
        if (s->threads != best->threads || s->batch == best->batch) continue;
        if (!other || log_dist(s->batch, batch) < log_dist(other->batch, batch)) other = s;
    }
    /* compute per device scales with the cores it gets, and with its rows;
     * the optimizer's with the cores only */
    double tf = (double)best->threads / threads;
    out->load = rows_ms(best->load_ms, other ? other->load_ms : 0, best, other, batch); /* the loader fills rows: not BLAS threads */
    out->h2d = rows_ms(best->h2d_ms, other ? other->h2d_ms : 0, best, other, batch);
    out->fwd = rows_ms(best->fwd_ms, other ? other->fwd_ms : 0, best, other, batch) * tf;
    out->bwd = rows_ms(best->bwd_ms, other ? other->bwd_ms : 0, best, other, batch) * tf;
    out->opt = best->opt_ms * tf;
    if (other || batch == best->batch) return;
    /* one batch measured at this thread count: rows cost here as they do
     * at a thread count measured at several (single at every core is
     * measured at the whole batch, at 1 thread on each device's rows), the
     * measured row scaled by that count's ratio of the two batches; rows
     * in proportion only where no count has two */
    for (int i = 0; i < w->nsingle; i++) {
        const pb_pred_single *s = &w->single[i];
        if (s->threads == best->threads) continue;
        bool several = false;
        for (int j = 0; j < w->nsingle && !several; j++)
            several = w->single[j].threads == s->threads && w->single[j].batch != s->batch;
        if (!several) continue;
        pb_pred_phases at, there;
        pb_pred_single_phases(w, batch, s->threads, &at);
        pb_pred_single_phases(w, best->batch, s->threads, &there);
        if (there.fwd > 0 && at.fwd > 0) out->fwd = best->fwd_ms * tf * at.fwd / there.fwd;
        if (there.bwd > 0 && at.bwd > 0) out->bwd = best->bwd_ms * tf * at.bwd / there.bwd;
        return;
    }
}

static double phases_sum(const pb_pred_phases *p) { return p->load + p->h2d + p->fwd + p->bwd + p->opt; }

/* Devices that are threads of one process (dp) on shared cores (the cpu
 * backend): `active` devices computing at once, each at `threads` threads
 * on `rows` rows. When they want no more threads than the cores, each runs
 * on cores of its own at its own pace (1): single on every core is no
 * bound there, as its BLAS threads may gain little on small GEMMs that
 * separate devices run side by side (gpt-xs: single on 2 threads took 2.0
 * ms a step against 2.1 on 1, while dp's 2 devices of 4 rows each took
 * 1.5). Wanting more, they get at most the node's capacity, what single
 * measured on all its cores: a device takes max(T_threads(rows), active x
 * T_cores(rows)), the factor over its own time the second over the first
 * when larger (with 1-thread rows alone, T_cores is T_1 / cores). 1 on
 * GPUs (each device its own). `opt` picks the optimizer's phase, else
 * fwd + bwd. */
static double capacity(const pb_pred_work *w, const pb_pred_net *net, int active, int threads, double rows, bool opt)
{
    int cores = net->cores_per_node;
    if (cores <= 0 || active < 1 || active * threads <= cores) return 1;
    pb_pred_phases own, all;
    pb_pred_single_phases(w, rows, threads, &own);
    pb_pred_single_phases(w, rows, cores, &all);
    double t_own = opt ? own.opt : own.fwd + own.bwd, t_all = opt ? all.opt : all.fwd + all.bwd;
    if (!(t_own > 0)) return 1;
    double f = active * t_all / t_own;
    /* past one 1-thread device a core, they take turns at the shared pace
     * (on top of f, which is single's loss on all the cores, not the
     * turns: dp on 4 devices at 64 rows measured -3% to -18% without) */
    return (f > 1 ? f : 1) * (threads == 1 ? pb_pred_shared_pace(w, rows) : 1);
}

/* Separate processes (ddp's ranks) each have their own BLAS and cores:
 * `active` of `threads` threads on `cores`, when they want more than there
 * are, run at the pace of the busiest core, which holds ceil(active x
 * threads / cores) of them. The scheduler keeps whole threads on a core
 * and does not move one where that would not even the load: 3 ranks on 2
 * cores ran as 2 on one and 1 on the other for a whole run (mlp-s: rank 1
 * fwd 7.5 ms a step, ranks 0 and 2 11.7), and a collective waits for the
 * doubled core's ranks every step, so the step is theirs (x2, not x1.5). */
static double share(int active, int threads, int cores)
{
    if (cores <= 0) return 1;
    double want = (double)active * threads;
    return want > cores ? ceil(want / cores) : 1;
}

const pb_pred_single *pb_pred_single_row(const pb_pred_work *w, int threads, double batch)
{
    for (int i = 0; i < w->nsingle; i++)
        if (w->single[i].threads == threads && w->single[i].batch == batch) return &w->single[i];
    return NULL;
}

/* Two devices taking turns on a core each take more than twice their time
 * alone: two mlp-s single runs at 64 rows on one core took 32.4 ms a step
 * against 14.3 for one alone (x2.27), as each evicts the other's working
 * set from the core's caches at every switch. Measured, not assumed: the
 * nearest --single-shared row over twice the 1-thread row at its rows. */
double pb_pred_shared_pace(const pb_pred_work *w, double rows)
{
    const pb_pred_single *sh = NULL;
    for (int i = 0; i < w->nshared; i++)
        if (!sh || log_dist(w->shared[i].batch, rows) < log_dist(sh->batch, rows)) sh = &w->shared[i];
    const pb_pred_single *alone = sh ? pb_pred_single_row(w, 1, sh->batch) : NULL;
    if (!alone || !(alone->step_ms > 0)) return 1;
    double pace = sh->step_ms / (2 * alone->step_ms);
    return pace > 1 ? pace : 1;
}

/* share() for compute at `rows` rows: 1-thread devices that take turns on
 * a core at the pace --single-shared measured (pb_pred_shared_pace). */
static double paced_share(const pb_pred_work *w, int active, int threads, int cores, double rows)
{
    double k = share(active, threads, cores);
    return k > 1 && threads == 1 ? k * pb_pred_shared_pace(w, rows) : k;
}

/* A CPU rank's threads: Open MPI binds each rank to one core when it starts
 * 2 ranks or fewer (bench's launcher keeps that for CPU ranks), and bench's
 * launcher binds rank r to core r mod cores when there are more ranks than
 * cores (docs/strategies.md, "Where CPU ranks run"): either way a rank runs
 * on one core, at 1 thread. */
static int rank_threads(const pb_pred_net *net, int per_node, int thr)
{
    return net->cores_per_node > 0 && (per_node <= 2 || per_node > net->cores_per_node) ? 1 : thr;
}

/* A rank's compute (ddp, zero, tp, the mesh: a process per device): its
 * phases at `rows` rows and its threads (*thr, as rank_threads leaves it),
 * and the factor the node's sharing of cores puts on them (share). */
static double rank_phases(const pb_pred_work *w, const pb_pred_net *net, double rows, int per_node, int *thr,
                          pb_pred_phases *p)
{
    *thr = rank_threads(net, per_node, *thr);
    pb_pred_single_phases(w, rows, *thr, p);
    return paced_share(w, per_node, *thr, net->cores_per_node, rows);
}

/* Whether the devices leave cores free for the communication's own work
 * (the cpu backend's comms copy and add on the host's cores): without, a
 * collective overlapped with compute takes its time from it. */
static bool spare_cores(const pb_pred_net *net, int active, int threads)
{
    return net->cores_per_node <= 0 || active * threads < net->cores_per_node;
}

/* Block l's share of the compute (only ratios are used: an MLP layer's
 * in x out is its FLOPs over 6 a row) and its span of the flat parameter
 * buffer in bytes (an MLP layer's weights and bias). */
static double layer_weights(const pb_pred_work *w, int l)
{
    return w->gpt.on ? w->block_flops[l] : w->in[l] * w->out[l];
}
static double layer_bytes(const pb_pred_work *w, int l)
{
    return (w->gpt.on ? w->block_params[l] : w->in[l] * w->out[l] + w->out[l]) * 4.0;
}

/* ---- memory (MB = 2^20 B) ---------------------------------------------- */

static double opt_states(const pb_pred_work *w) { return strcmp(w->optimizer, "adamw") == 0 ? 2 : 1; }

/* parameters, gradients and optimizer state (fp32), plus a bf16 copy of
 * the weights on the GPU in bf16 */
static double state_bytes(const pb_pred_work *w, double params, bool optimizer)
{
    double per = 4.0 * (2 + (optimizer ? opt_states(w) : 0));
    if (strcmp(w->precision, "bf16") == 0 && strcmp(w->backend, "cuda") == 0) per += 2;
    return params * per;
}

/* activations kept for backward over layers [l0, l1) for `rows` rows: the
 * stage's input and every layer's output, plus two gradient buffers of the
 * widest layer */
static double act_bytes(const pb_pred_work *w, int l0, int l1, double rows)
{
    double sum = w->in[l0], widest = 0;
    for (int l = l0; l < l1; l++) {
        sum += w->out[l];
        widest = fmax(widest, fmax(w->in[l], w->out[l]));
    }
    return rows * (sum + 2 * widest) * 4.0;
}

static double mb(double bytes) { return bytes / 1048576.0; }

/* ---- strategies -------------------------------------------------------- */

static void predict_single(const pb_pred_work *w, const pb_pred_target *t, int thr, pb_pred_result *r)
{
    pb_pred_phases p;
    pb_pred_single_phases(w, t->batch_global, thr, &p);
    r->compute_ms = phases_sum(&p);
    r->step_ms = r->compute_ms;
    r->mem_mb = mb(state_bytes(w, w->params, true) + act_bytes(w, 0, w->layers, t->batch_global));
}

/* DDP: buckets of at most bucket_mb from the end of the gradient buffer,
 * each all-reduced when backward has passed its lowest byte, one at a time
 * in order on the comm's thread or stream; what runs past backward's end is
 * exposed. */
static void predict_ddp(const pb_pred_work *w, const pb_pred_net *net, const pb_pred_target *t, int thr,
                        int per_node, pb_pred_result *r)
{
    int n = t->devices;
    double rows = ceil(t->batch_global / n);
    pb_pred_phases p;
    double f = rank_phases(w, net, rows, per_node, &thr, &p), fo = f;
    const char *comm = strcmp(w->backend, "cuda") == 0 ? "nccl" : "mpi";
    const char *src = "none";
    double total_bytes = 0, total_weights = 0;
    for (int l = 0; l < w->layers; l++) {
        total_bytes += layer_bytes(w, l);
        total_weights += layer_weights(w, l);
    }
    double bwd = p.bwd * f, comm_ms = 0, end_ms = 0;
    if (n > 1 && t->no_overlap) {
        comm_ms = pb_pred_allreduce_us(net, comm, n, total_bytes, &src) / 1e3;
        end_ms = bwd + comm_ms;
    } else if (n > 1) {
        /* no bucket size: one bucket, as a size larger than the model */
        double cap = t->bucket_mb > 0 ? t->bucket_mb * 1048576.0 : total_bytes;
        double done_bytes = 0, now = 0, next_cut = fmin(cap, total_bytes), launched = 0;
        /* backward from the top layer down; a layer's share of bwd by its weights */
        for (int l = w->layers - 1; l >= 0; l--) {
            now += bwd * layer_weights(w, l) / total_weights;
            done_bytes += layer_bytes(w, l);
            while (next_cut <= done_bytes + 0.5 && launched < total_bytes - 0.5) {
                double sz = next_cut - launched;
                double t_ar = pb_pred_allreduce_us(net, comm, n, sz, &src) / 1e3;
                end_ms = fmax(now, end_ms) + t_ar;
                comm_ms += t_ar;
                launched = next_cut;
                next_cut = fmin(next_cut + cap, total_bytes);
            }
        }
    }
    /* no core to spare: the all-reduces' work is done by the cores that
     * compute, so none of it is hidden */
    double exposed = spare_cores(net, per_node, thr) ? fmax(0, end_ms - bwd) : comm_ms;
    r->compute_ms = p.load + p.h2d + p.fwd * f + bwd + p.opt * fo;
    r->comm_ms = comm_ms;
    r->comm_exposed_ms = exposed;
    r->step_ms = r->compute_ms + exposed;
    r->collectives = src;
    r->mem_mb = mb(state_bytes(w, w->params, true) + act_bytes(w, 0, w->layers, rows));
}

/* a ring all-reduce's wire bytes per rank of n floats: the run rows'
 * allreduce_bytes_per_step rule (strategies/volume.c) */
static double ring_allreduce_bytes(double floats, int n) { return n > 0 ? 2.0 * floats * (n - 1) / n * 4.0 : 0; }

/* The comm of a rank-per-device strategy: nccl on GPUs, mpi on the cpu. */
static const char *rank_comm(const pb_pred_work *w) { return strcmp(w->backend, "cuda") == 0 ? "nccl" : "mpi"; }

/* ZeRO (strategies/zero.c) over n ranks (a mesh's dp group: w is then the
 * rank's tp part, cfrac its share of single's forward and backward; 1
 * otherwise): ddp's shard of the batch; block l's span padded
 * to n chunks of c[l] floats; on the one comm queue (the comm thread or
 * stream, in issue order): stage 3's gather of each block before its
 * forward and again before its backward (but the last block's, kept), the
 * next block's issued when a block starts (the prefetch), block 0's of the
 * next step by the optimizer; each block's reduce-scatter once a bucket of
 * whole blocks of at least bucket_mb is complete (all after backward with
 * no_overlap); stages 1 and 2's all-gather of each block once the optimizer
 * has updated its chunk, waited by the next forward. Exposed: what the
 * compute waits for. */
static void predict_zero(const pb_pred_work *w, const pb_pred_net *net, const pb_pred_target *t, int n,
                         double cfrac, int thr, int per_node, pb_pred_result *r)
{
    int L = w->layers, z = t->zero_stage;
    double rows = ceil(t->batch_global / n);
    pb_pred_phases p;
    double f = rank_phases(w, net, rows, per_node, &thr, &p);
    const char *comm = rank_comm(w), *src = "none";
    double c[PB_PRED_MAX_LAYERS], rs[PB_PRED_MAX_LAYERS], ag[PB_PRED_MAX_LAYERS], ready[PB_PRED_MAX_LAYERS];
    double S = 0, K = 0, tw = 0, rs_sum = 0, ag_sum = 0;
    for (int l = 0; l < L; l++) {
        c[l] = ceil(layer_bytes(w, l) / 4.0 / n);
        S += c[l];
        K = fmax(K, n * c[l]);
        tw += layer_weights(w, l);
        rs[l] = pb_pred_reduce_scatter_us(net, comm, n, n * c[l] * 4.0, &src) / 1e3;
        ag[l] = pb_pred_allgather_us(net, comm, n, n * c[l] * 4.0, &src) / 1e3;
        rs_sum += rs[l];
        ag_sum += ag[l];
    }
    double fwd = p.fwd * f * cfrac, bwd = p.bwd * f * cfrac, opt = p.opt * f * S / (w->params > 0 ? w->params : S);
    double now = 0, q = 0, wait = 0;
    /* stage 3: block 0's gather left in flight by the last step's optimizer */
    if (z == 3) q = ready[0] = fmax(0, ag[0] - p.load - p.h2d);
    for (int l = 0; l < L; l++) {
        double start = z == 3 ? fmax(now, ready[l]) : now;
        wait += start - now;
        if (z == 3 && l + 1 < L) q = ready[l + 1] = fmax(q, start) + ag[l + 1];
        now = start + fwd * layer_weights(w, l) / tw;
    }
    if (z == 3) ready[L - 1] = now; /* the last block's backward reuses forward's gather */
    double cap = t->bucket_mb * 1048576.0, acc = 0;
    int top = L - 1, most = 0; /* the bucket's highest block; the most blocks a bucket holds */
    for (int l = L - 1; l >= 0; l--) {
        double start = z == 3 ? fmax(now, ready[l]) : now;
        wait += start - now;
        if (z == 3 && l > 0) q = ready[l - 1] = fmax(q, start) + ag[l - 1];
        now = start + bwd * layer_weights(w, l) / tw;
        acc += layer_bytes(w, l);
        if (!t->no_overlap && (acc >= cap || l == 0)) {
            for (int b = top; b >= l; b--) q = fmax(q, now) + rs[b];
            most = most > top - l + 1 ? most : top - l + 1;
            top = l - 1;
            acc = 0;
        }
    }
    if (t->no_overlap) {
        for (int b = L - 1; b >= 0; b--) q = fmax(q, now) + rs[b];
        most = L;
    }
    double rs_exposed = fmax(0, q - now);
    /* stages 1 and 2: each block's gather once its chunk is updated, last
     * block first (the optimizer's order), left in flight into the next
     * step: its forward waits before block 0, whose gather ends the queue,
     * after the next step's load and h2d */
    double o = 0, qa = 0;
    for (int l = L - 1; z < 3 && l >= 0; l--) {
        o += opt * c[l] / S;
        qa = fmax(qa, o) + ag[l];
    }
    double ag_exposed = fmax(0, qa - opt - p.load - p.h2d);
    double passes = z == 3 ? 2 : 1, last = z == 3 ? 1 : 0; /* stage 3 gathers the last block once */
    r->compute_ms = p.load + p.h2d + fwd + bwd + opt;
    r->reduce_scatter_ms = n > 1 ? rs_sum : 0;
    r->allgather_ms = n > 1 ? passes * ag_sum - last * ag[L - 1] : 0;
    r->comm_ms = r->reduce_scatter_ms + r->allgather_ms;
    r->comm_exposed_ms = spare_cores(net, per_node, thr) ? wait + rs_exposed + ag_exposed : r->comm_ms;
    if (n <= 1) r->comm_exposed_ms = 0;
    r->step_ms = r->compute_ms + r->comm_exposed_ms;
    r->collectives = n > 1 ? src : "none";
    r->reduce_scatter_bytes = (n - 1) * S * 4.0;
    r->allgather_bytes = (n - 1) * (passes * S - last * c[L - 1]) * 4.0;
    /* docs/strategies.md "zero", memory by stage (zero_plan_memory) */
    double G = fmin(L, most + 2), M = opt_states(w), Pp = n * S;
    double state = z == 1 ? Pp + Pp + S + M * S : z == 2 ? Pp + G * K + S + M * S : S + 2 * K + G * K + S + M * S;
    r->mem_mb = mb(state * 4.0 + act_bytes(w, 0, L, rows));
}

/* What a tp group (strategies/tp.c) of T ranks, g of them on a node, adds
 * to one rank's step on `rows` rows: the share of forward and backward and
 * of the optimizer a rank runs, its parameters, its activations, and the
 * all-reduces, all exposed (the stage waits for each). */
typedef struct tp_part {
    double compute_frac, opt_frac; /* of single's fwd + bwd, and of its opt */
    double params;                 /* the rank's flat parameter buffer (floats) */
    double act_bytes;              /* the fallback's activations (predict_mem.c has the plan) */
    double ar_ms, ar_bytes;        /* the all-reduces' time and ring wire bytes */
    int count;
    const char *src;
} tp_part;

/* The MLP: layers paired column- then row-parallel, (0, 1), (2, 3), ...,
 * an odd last layer replicated; the split GEMMs' share of forward and
 * backward over T, the replicated layer's whole; one all-reduce of rows x
 * out(2k+1) after each pair's forward and one of rows x in(2k) in each
 * pair's backward but the first's. */
static void tp_mlp(const pb_pred_work *w, const pb_pred_net *net, double rows, int T, int g, tp_part *o)
{
    int L = w->layers, pairs = L / 2;
    double tw = 0, wrank = 0, prank = 0, acts = w->in[0], widest = 0;
    for (int l = 0; l < L; l++) {
        bool split = l < 2 * pairs, column = split && l % 2 == 0;
        tw += layer_weights(w, l);
        wrank += layer_weights(w, l) / (split ? T : 1);
        /* the column layer's bias is split, the row layer's replicated */
        prank += layer_weights(w, l) / (split ? T : 1) + w->out[l] / (column ? T : 1);
        acts += w->out[l] / (column ? T : 1);
        widest = fmax(widest, fmax(w->in[l], w->out[l]));
    }
    const char *comm = rank_comm(w);
    for (int k = 0; k < pairs && T > 1; k++) {
        double fb = rows * w->out[2 * k + 1] * 4.0, bb = k > 0 ? rows * w->in[2 * k] * 4.0 : 0;
        o->ar_ms += allreduce_group_us(net, comm, T, g, fb, &o->src) / 1e3;
        o->ar_bytes += ring_allreduce_bytes(fb / 4.0, T);
        o->count++;
        if (bb > 0) {
            o->ar_ms += allreduce_group_us(net, comm, T, g, bb, &o->src) / 1e3;
            o->ar_bytes += ring_allreduce_bytes(bb / 4.0, T);
            o->count++;
        }
    }
    o->compute_frac = wrank / tw;
    o->opt_frac = prank / w->params;
    o->params = prank;
    o->act_bytes = rows * (acts + 2 * widest) * 4.0;
}

/* The GPT (Megatron's split: heads and the MLP over T; embeddings,
 * LayerNorms and the head whole): forward and backward by their FLOPs
 * (w->gpt, from the workload's description), the optimizer by the rank's
 * share of the flat buffer; per block 4 all-reduces of rows x seq x
 * d_model floats (after the attention's and the MLP's row-parallel
 * projections in forward, on the QKV's and the up projection's input
 * gradients in backward). */
static void tp_gpt(const pb_pred_work *w, const pb_pred_net *net, double rows, int T, int g, tp_part *o)
{
    const pb_pred_gpt *G = &w->gpt;
    double flops = G->flops_split + G->flops_whole, flat = G->params_split + G->params_whole;
    o->compute_frac = flops > 0 ? (G->flops_whole + G->flops_split / T) / flops : 1;
    o->params = G->params_whole + G->params_split / T;
    o->opt_frac = flat > 0 ? o->params / flat : 1;
    double bytes = rows * G->seq * G->d_model * 4.0;
    const char *comm = rank_comm(w);
    for (int k = 0; k < 4 * G->layers && T > 1; k++) {
        o->ar_ms += allreduce_group_us(net, comm, T, g, bytes, &o->src) / 1e3;
        o->ar_bytes += ring_allreduce_bytes(bytes / 4.0, T);
        o->count++;
    }
    /* the fallback's activations: per token and block the residual and
     * LayerNorms' 3h whole, 12h split (docs/strategies.md "tp") */
    double h = G->d_model;
    o->act_bytes = rows * G->seq * (G->layers * (3 * h + 12 * h / T) + 3 * h + 7 * h / T) * 4.0;
}

static void tp_group(const pb_pred_work *w, const pb_pred_net *net, double rows, int T, int g, tp_part *o)
{
    memset(o, 0, sizeof *o);
    o->src = "none";
    if (w->gpt.on) tp_gpt(w, net, rows, T, g, o);
    else tp_mlp(w, net, rows, T, g, o);
}

/* tp (strategies/tp.c): every rank runs the whole batch through its part. */
static void predict_tp(const pb_pred_work *w, const pb_pred_net *net, const pb_pred_target *t, int thr,
                       int per_node, pb_pred_result *r)
{
    int n = t->devices;
    double B = t->batch_global;
    pb_pred_phases p;
    double f = rank_phases(w, net, B, per_node, &thr, &p);
    tp_part tp;
    tp_group(w, net, B, n, per_node, &tp);
    r->compute_ms = p.load + p.h2d + (p.fwd + p.bwd) * f * tp.compute_frac + p.opt * f * tp.opt_frac;
    r->tp_comm_ms = r->comm_ms = r->comm_exposed_ms = tp.ar_ms;
    r->step_ms = r->compute_ms + tp.ar_ms;
    r->collectives = n > 1 ? tp.src : "none";
    r->allreduce_bytes = tp.ar_bytes;
    r->tp_allreduces = tp.count;
    r->mem_mb = mb(state_bytes(w, tp.params, true) + tp.act_bytes);
}

/* A rank's tp part of the MLP as a model of its own (tp_mlp's split): a
 * pair's column layer keeps out/T outputs (its bias split), the row layer
 * in/T inputs (its bias whole), an odd last layer whole; params stays the
 * whole model's, which single's optimizer time is of. */
static void tp_part_work(const pb_pred_work *w, int T, pb_pred_work *o)
{
    *o = *w;
    for (int k = 0; k < w->layers / 2; k++) {
        o->out[2 * k] /= T;
        o->in[2 * k + 1] /= T;
    }
}

/* The mesh (strategies/mesh.c, pp 1): each tp group of T consecutive ranks
 * is a data-parallel replica running tp's step on its B/D rows; after
 * backward each rank's part (its flat buffer) and the loss are all-reduced
 * across its dp group of D ranks, T apart, blocking (the `sync` phase:
 * ddp's --no-overlap), all of it exposed. With --zero-stage (the MLP),
 * zero's model over the dp group on the rank's tp part replaces that
 * all-reduce, tp's all-reduces and the loss's added, exposed. */
static void predict_mesh(const pb_pred_work *w, const pb_pred_net *net, const pb_pred_target *t, int thr,
                         int per_node, pb_pred_result *r)
{
    int D = t->mesh_dp, T = t->mesh_tp;
    double rows = ceil(t->batch_global / D);
    pb_pred_phases p;
    double f = rank_phases(w, net, rows, per_node, &thr, &p);
    /* tp innermost: a tp group's ranks share a node up to g of them; a dp
     * group's members are T apart, g / T of them on a node */
    int tp_g = per_node < T ? per_node : T, dp_g = per_node > T ? per_node / T : 1;
    tp_part tp;
    tp_group(w, net, rows, T, tp_g, &tp);
    const char *comm = rank_comm(w), *src = tp.src;
    double sync = 0;
    if (D > 1) {
        sync = allreduce_group_us(net, comm, D, dp_g, tp.params * 4.0, &src) / 1e3 +
               allreduce_group_us(net, comm, D, dp_g, 4.0, &src) / 1e3; /* the loss: a blocking collective too */
    }
    /* on shared cores every group runs its collectives at once (the same
     * schedule), so a group's copies and sums share the node's cores with
     * the other groups' as compute does: a group of n ranks, measured or
     * modelled alone on the node, takes share(node's ranks) / share(n) */
    tp.ar_ms *= share(per_node, thr, net->cores_per_node) / share(tp_g, thr, net->cores_per_node);
    sync *= share(per_node, thr, net->cores_per_node) / share(dp_g < D ? dp_g : D, thr, net->cores_per_node);
    if (t->zero_stage > 0) {
        pb_pred_work part;
        tp_part_work(w, T, &part);
        predict_zero(&part, net, t, D, tp.compute_frac, thr, per_node, r);
        const char *zsrc = r->collectives;
        double loss = D > 1 ? allreduce_group_us(net, comm, D, dp_g, 4.0, &src) / 1e3 : 0;
        r->tp_comm_ms = tp.ar_ms;
        r->comm_ms += tp.ar_ms + loss;
        r->comm_exposed_ms += tp.ar_ms + loss;
        r->step_ms = r->compute_ms + r->comm_exposed_ms;
        r->collectives = t->devices <= 1 ? "none" : D > 1 ? zsrc : tp.src;
        r->allreduce_bytes = tp.ar_bytes;
        r->tp_allreduces = tp.count;
        return;
    }
    r->compute_ms = p.load + p.h2d + (p.fwd + p.bwd) * f * tp.compute_frac + p.opt * f * tp.opt_frac;
    r->tp_comm_ms = tp.ar_ms;
    r->comm_ms = r->comm_exposed_ms = tp.ar_ms + sync;
    r->step_ms = r->compute_ms + r->comm_ms;
    r->collectives = t->devices > 1 ? src : "none";
    r->allreduce_bytes = tp.ar_bytes + (D > 1 ? ring_allreduce_bytes(tp.params, D) : 0);
    r->tp_allreduces = tp.count;
    r->mem_mb = mb(state_bytes(w, tp.params, true) + tp.act_bytes);
}

/* DataParallel: everything through device 0, nothing overlapped. */
static void predict_dp(const pb_pred_work *w, const pb_pred_net *net, const pb_pred_target *t, int thr,
                       pb_pred_result *r)
{
    int n = t->devices;
    double rows = ceil(t->batch_global / n);
    pb_pred_phases p, all;
    pb_pred_single_phases(w, rows, thr, &p);
    pb_pred_single_phases(w, t->batch_global, thr, &all);
    double f = capacity(w, net, n, thr, rows, false);
    const char *src = "none", *s2 = "none";
    double in_b = rows * w->in[0] * 4.0, out_b = rows * w->out[w->layers - 1] * 4.0;
    double pbytes = 0;
    for (int l = 0; l < w->layers; l++) pbytes += layer_bytes(w, l);
    /* device 0 sends or receives each other device's part in turn */
    double scatter = (n - 1) * pb_pred_p2p_us(net, "local", n, in_b, &s2) / 1e3;
    double gather = (n - 1) * pb_pred_p2p_us(net, "local", n, out_b, &s2) / 1e3;
    double replicate = pb_pred_broadcast_us(net, "local", n, pbytes, &src) / 1e3;
    double reduce = reduce_us(net, "local", n, pbytes, &src) / 1e3;
    r->comm_ms = scatter + replicate + 2 * gather + reduce; /* gather logits, scatter their gradients */
    r->comm_exposed_ms = r->comm_ms;
    /* device 0 loads the whole batch and runs the optimizer alone */
    r->compute_ms = all.load + all.h2d + (p.fwd + p.bwd) * f + all.opt;
    r->step_ms = r->compute_ms + r->comm_ms;
    r->collectives = strcmp(src, "measured") == 0 && strcmp(s2, "measured") == 0 ? "measured" : src;
    double dev0 = state_bytes(w, w->params, true) + act_bytes(w, 0, w->layers, rows) +
                  2.0 * t->batch_global * w->out[w->layers - 1] * 4.0;
    r->mem_mb = mb(dev0);
}

/* Contiguous stages balanced by weights (the largest stage as small as it
 * can be), as mp balances by FLOPs; first[s] is stage s's first layer. */
static void balance(const pb_pred_work *w, int p, int *first)
{
    double total = 0;
    for (int l = 0; l < w->layers; l++) total += layer_weights(w, l);
    /* binary search on the largest stage's weights, greedy packing */
    double lo = 0, hi = total;
    for (int it = 0; it < 60; it++) {
        double mid = (lo + hi) / 2, acc = 0;
        int stages = 1;
        bool fits = true;
        for (int l = 0; l < w->layers; l++) {
            double x = layer_weights(w, l);
            if (x > mid) fits = false;
            if (acc + x > mid && acc > 0) {
                stages++;
                acc = 0;
            }
            acc += x;
        }
        /* each stage needs a layer: at most layers - (p - stages) packed */
        if (fits && stages <= p) hi = mid;
        else lo = mid;
    }
    int s = 0, l = 0;
    double acc = 0;
    first[0] = 0;
    for (l = 0; l < w->layers; l++) {
        double x = layer_weights(w, l);
        int left_layers = w->layers - l, left_stages = p - 1 - s;
        if (s < p - 1 && acc > 0 && (acc + x > hi * (1 + 1e-9) || left_layers <= left_stages)) {
            first[++s] = l;
            acc = 0;
        }
        acc += x;
    }
    for (s = s + 1; s < p; s++) first[s] = w->layers; /* fewer layers than stages: refused by the caller */
    first[p] = w->layers;
}

/* What a pipeline's stages add to mp's schedule (the mesh's --pp): the
 * stage's compute on its part of the model (part: the rank's tp part, w
 * itself for mp), at the shared cores' factor f; each microbatch's tp
 * all-reduces (tp_ms[s], exposed in the stage's slot); the dp group's
 * all-reduce of the stage's part after the pipeline (after_ms[s], before
 * the optimizer); p2p through comm (mp's stages: "local"). */
typedef struct pipe_parts {
    const pb_pred_work *part;
    double batch, f;
    const char *comm;
    const double *tp_ms, *after_ms; /* NULL: none */
    bool node_floor;                /* mp's stages as threads of one process share a node's capacity */
} pipe_parts;

/* Layer split with GPipe microbatches: a stage's slot is its compute for one
 * microbatch and its receives; the schedule's step is the sum of the
 * stages' slots plus (m-1) of the largest (the bubble (p-1)/(m+p-1) of a
 * balanced split). The split is balanced on the whole model w (the run's
 * FLOP split), the stages' work, parameters and messages are the part's. */
static void pipe_schedule(const pb_pred_work *w, const pb_pred_net *net, const pb_pred_target *t, int p, int thr,
                          const pipe_parts *pp, pb_pred_result *r)
{
    const pb_pred_work *pw = pp->part;
    int m = t->microbatches > 0 ? t->microbatches : 1;
    int first[PB_PRED_MAX_LAYERS + 1];
    balance(w, p, first);
    double rows = pp->batch / m;
    pb_pred_phases mbp, all;
    pb_pred_single_phases(w, rows, thr, &mbp);
    pb_pred_single_phases(w, pp->batch, thr, &all);
    double total_w = 0;
    for (int l = 0; l < w->layers; l++) total_w += layer_weights(w, l);
    const char *src = "none";
    double slot_sum = 0, slot_max = 0, p2p_sum = 0, p2p_at_max = 0, opt_max = 0, busy_sum = 0, mem_max = 0;
    double tp_sum = 0, after_max = 0;
    double slot[PB_PRED_MAX_LAYERS], opt_s[PB_PRED_MAX_LAYERS], fslot[PB_PRED_MAX_LAYERS], bslot[PB_PRED_MAX_LAYERS];
    for (int s = 0; s < p; s++) {
        double ws = 0, params = 0;
        for (int l = first[s]; l < first[s + 1]; l++) {
            ws += layer_weights(pw, l);
            params += layer_bytes(pw, l) / 4.0;
        }
        double frac = ws / total_w;
        double c = (mbp.fwd + mbp.bwd) * frac * pp->f;
        double x = 0; /* the activation in, its gradient out (the receiver copies) */
        if (s > 0) x += pb_pred_p2p_us(net, pp->comm, t->devices, rows * pw->in[first[s]] * 4.0, &src) / 1e3;
        if (s < p - 1)
            x += pb_pred_p2p_us(net, pp->comm, t->devices, rows * pw->out[first[s + 1] - 1] * 4.0, &src) / 1e3;
        double tpc = pp->tp_ms ? pp->tp_ms[s] : 0;
        slot[s] = c + x + tpc;
        fslot[s] = mbp.fwd * frac * pp->f + (x + tpc) / 2;
        bslot[s] = mbp.bwd * frac * pp->f + (x + tpc) / 2;
        slot_sum += slot[s];
        p2p_sum += x;
        tp_sum += tpc;
        if (slot[s] > slot_max) {
            slot_max = slot[s];
            p2p_at_max = x + tpc;
        }
        double after = pp->after_ms ? pp->after_ms[s] : 0;
        after_max = fmax(after_max, after);
        opt_s[s] = all.opt * frac * pp->f + after;
        opt_max = fmax(opt_max, opt_s[s]);
        /* GPipe keeps every microbatch's activations, 1F1B min(m, p - s) slots */
        double held = t->one_f_one_b ? fmin(m, p - s) * rows : pp->batch;
        double mem = state_bytes(pw, params, true) + act_bytes(pw, first[s], first[s + 1], held);
        if (s > 0) r->p2p_bytes += 2.0 * pp->batch * pw->in[first[s]] * 4.0;
        mem_max = fmax(mem_max, mem);
    }
    double lead = all.load + all.h2d; /* stage 0 takes the batch */
    r->step_ms = lead + slot_sum + (m - 1) * slot_max + opt_max;
    for (int s = 0; s < p; s++) busy_sum += m * slot[s] + opt_s[s] + (s == 0 ? lead : 0);
    r->bubble_ms = fmax(0, r->step_ms - busy_sum / p);
    if (pp->node_floor && net->cores_per_node > 0) {
        /* every microbatch's fwd and bwd at the node's capacity (single on
         * all its cores, on a microbatch's rows), whatever the stages'
         * overlap */
        pb_pred_phases cap;
        pb_pred_single_phases(w, rows, net->cores_per_node, &cap);
        double floor_ms = lead + m * (cap.fwd + cap.bwd) + p2p_sum * m + opt_max;
        if (floor_ms > r->step_ms) r->step_ms = floor_ms;
        /* and slot by slot: the forwards' wave (stage s on microbatch t - s)
         * then the backwards' (stage s on t - (p-1-s)), each slot as long as
         * its slowest stage at the pace of the busiest core (share: more
         * stages than cores leave two on one core, as ranks) */
        double waves = lead + opt_max;
        for (int step = 0; step < m + p - 1; step++) {
            int af = 0, ab = 0;
            double fm = 0, bm = 0;
            for (int st = 0; st < p; st++) {
                if (step - st >= 0 && step - st < m) af++, fm = fmax(fm, fslot[st]);
                if (step - (p - 1 - st) >= 0 && step - (p - 1 - st) < m) ab++, bm = fmax(bm, bslot[st]);
            }
            waves += fm * paced_share(w, af, thr, net->cores_per_node, rows) +
                     bm * paced_share(w, ab, thr, net->cores_per_node, rows);
        }
        if (waves > r->step_ms) r->step_ms = waves;
    }
    r->bubble_frac = r->step_ms > 0 ? r->bubble_ms / r->step_ms : 0;
    r->comm_ms = m * (p2p_sum + tp_sum) + after_max;
    r->comm_exposed_ms = p2p_sum + tp_sum + (m - 1) * p2p_at_max + after_max;
    r->compute_ms = r->step_ms - r->comm_exposed_ms - r->bubble_ms;
    r->collectives = p > 1 ? src : "none";
    r->mem_mb = mb(mem_max);
}

/* mp (strategies/mp.c): the stages are threads of one process, p2p local. */
static void predict_mp(const pb_pred_work *w, const pb_pred_net *net, const pb_pred_target *t, int thr,
                       pb_pred_result *r)
{
    pipe_parts pp = {.part = w, .batch = t->batch_global, .f = 1, .comm = "local", .node_floor = true};
    pipe_schedule(w, net, t, t->devices, thr, &pp, r);
}

/* The mesh with --pp P > 1 (strategies/pipe.c, the MLP): each replica's
 * B/D rows in mp's schedule over P stages of the rank's tp part (the
 * split balanced on the whole model, as the run's), p2p between the ranks
 * through their comm; each microbatch's tp all-reduces in the slot of the
 * stage holding the layer (a pair's forward one after its row layer, its
 * backward one before its column layer, as tp_mlp counts them); after the
 * pipeline the dp group's all-reduce of the stage's part and the loss,
 * blocking, before the optimizer. The row's volumes are rank 0's (stage
 * 0's), its p2p the mean over the boundaries, as pb_tp_report's. */
static void predict_mesh_pp(const pb_pred_work *w, const pb_pred_net *net, const pb_pred_target *t, int thr,
                            int per_node, pb_pred_result *r)
{
    int D = t->mesh_dp, T = t->mesh_tp, P = t->mesh_pp, m = t->microbatches > 0 ? t->microbatches : 1;
    double rows = ceil(t->batch_global / D), mrows = rows / m;
    thr = rank_threads(net, per_node, thr); /* as ddp's ranks */
    /* placement and shared cores as predict_mesh's */
    int tp_g = per_node < T ? per_node : T, dp_g = per_node > T ? per_node / T : 1;
    double node = share(per_node, thr, net->cores_per_node);
    double tp_scale = node / share(tp_g, thr, net->cores_per_node);
    double dp_scale = node / share(dp_g < D ? dp_g : D, thr, net->cores_per_node);
    pb_pred_work part;
    tp_part_work(w, T, &part);
    int first[PB_PRED_MAX_LAYERS + 1], stage[PB_PRED_MAX_LAYERS];
    balance(w, P, first);
    for (int s = 0; s < P; s++)
        for (int l = first[s]; l < first[s + 1]; l++) stage[l] = s;
    const char *comm = rank_comm(w), *src = "none";
    double tp_ms[PB_PRED_MAX_LAYERS] = {0}, after[PB_PRED_MAX_LAYERS] = {0}, tp_floats0 = 0;
    int count = 0;
    for (int k = 0; k < w->layers / 2 && T > 1; k++) {
        double fb = mrows * w->out[2 * k + 1], bb = k > 0 ? mrows * w->in[2 * k] : 0;
        tp_ms[stage[2 * k + 1]] += allreduce_group_us(net, comm, T, tp_g, fb * 4.0, &src) / 1e3 * tp_scale;
        if (stage[2 * k + 1] == 0) tp_floats0 += m * fb;
        count += m;
        if (bb > 0) {
            tp_ms[stage[2 * k]] += allreduce_group_us(net, comm, T, tp_g, bb * 4.0, &src) / 1e3 * tp_scale;
            if (stage[2 * k] == 0) tp_floats0 += m * bb;
            count += m;
        }
    }
    double params0 = 0;
    for (int s = 0; s < P; s++) {
        double params = 0;
        for (int l = first[s]; l < first[s + 1]; l++) params += layer_bytes(&part, l) / 4.0;
        if (s == 0) params0 = params;
        if (D > 1)
            after[s] = (allreduce_group_us(net, comm, D, dp_g, params * 4.0, &src) / 1e3 +
                        allreduce_group_us(net, comm, D, dp_g, 4.0, &src) / 1e3) * dp_scale;
    }
    const char *tsrc = src;
    r->p2p_bytes = 0;
    /* the stages' compute at the node's pace; its collectives by share alone */
    double node_pace = paced_share(w, per_node, thr, net->cores_per_node, rows);
    pipe_parts pp = {.part = &part, .batch = rows, .f = node_pace, .comm = comm, .tp_ms = tp_ms, .after_ms = after};
    pipe_schedule(w, net, t, P, thr, &pp, r);
    r->p2p_bytes /= P - 1;
    double tp_sum = 0;
    for (int s = 0; s < P; s++) tp_sum += tp_ms[s];
    r->tp_comm_ms = m * tp_sum;
    r->tp_allreduces = count;
    r->allreduce_bytes = ring_allreduce_bytes(tp_floats0, T) + (D > 1 ? ring_allreduce_bytes(params0, D) : 0);
    if (strcmp(r->collectives, "none") == 0) r->collectives = tsrc;
}

/* Whether a tp group of T ranks can split the workload: the GPT's heads,
 * the MLP's hidden width (a usage error naming what is allowed). */
static pb_status tp_refused(const pb_pred_work *w, int T)
{
    if (w->gpt.on && w->gpt.heads % T != 0)
        return pb_usage_error("predict: tp of %d ranks does not divide the gpt's %d heads", T, w->gpt.heads);
    if (!w->gpt.on && T > 1 && (w->layers < 2 || fmod(w->out[0], T) != 0))
        return pb_usage_error("predict: tp needs 2 layers or more and ranks dividing the hidden width (%g), not %d",
                              w->out[0], T);
    return PB_OK;
}

/* The other strategies' optimizer where single's is fused: SGD with
 * momentum streams the gradient, the momentum and the parameters (read g
 * and m, write m, read and write p: 5 passes over the parameters' bytes)
 * where single's GEMMs left m ready (read m and p, write p: 3); the
 * optimizer is bound by memory, so 5/3 of single's time (measured here on
 * mlp-s: ddp's and dp's opt_ms 1.6 to 1.9 x single's). */
#define PB_PRED_UNFUSED_OPT (5.0 / 3.0)

static pb_status predict_one(const pb_pred_work *w, const pb_pred_net *net, const pb_pred_target *t,
                             pb_pred_result *r);

pb_status pb_predict_one(const pb_pred_work *w, const pb_pred_net *net, const pb_pred_target *t, pb_pred_result *r)
{
    if (!w->opt_fused || t->strategy == PB_PRED_SINGLE) return predict_one(w, net, t, r);
    pb_pred_work *u = malloc(sizeof *u);
    if (!u) return pb_usage_error("predict: out of memory");
    *u = *w;
    u->opt_fused = false;
    for (int i = 0; i < u->nsingle; i++) u->single[i].opt_ms *= PB_PRED_UNFUSED_OPT;
    pb_status st = predict_one(u, net, t, r);
    free(u);
    return st;
}

static pb_status predict_one(const pb_pred_work *w, const pb_pred_net *net, const pb_pred_target *t,
                             pb_pred_result *r)
{
    memset(r, 0, sizeof *r);
    r->collectives = "none";
    r->allreduce_bytes = r->reduce_scatter_bytes = r->allgather_bytes = r->p2p_bytes = NAN;
    r->tp_comm_ms = r->reduce_scatter_ms = r->allgather_ms = NAN;
    if (w->nsingle < 1) return pb_usage_error("predict: no single-device row to take the compute from");
    if (t->devices < 1 || t->batch_global < 1) return pb_usage_error("predict: devices and batch must be positive");
    int per_node = devices_per_node(net, t->devices);
    r->nodes = (t->devices + per_node - 1) / per_node;
    if (w->layers < 1 && t->strategy != PB_PRED_SINGLE && t->strategy != PB_PRED_TP && t->strategy != PB_PRED_MESH)
        return pb_usage_error("predict: %s places the model by blocks, and this gpt has more than %d; allowed: "
                              "single, tp, mesh",
                              pb_pred_strategy_name(t->strategy), PB_PRED_MAX_LAYERS);
    pb_status st = PB_OK;
    int thr = t->threads;
    if (thr < 1) thr = net->cores_per_node > 0 && net->cores_per_node / per_node > 1 ? net->cores_per_node / per_node : 1;
    if (net->cores_per_node <= 0 && t->threads < 1) thr = w->single[0].threads > 0 ? w->single[0].threads : 1;
    r->threads = thr;
    switch (t->strategy) {
    case PB_PRED_SINGLE:
        if (t->devices != 1) return pb_usage_error("predict: single runs on 1 device, not %d", t->devices);
        predict_single(w, t, thr, r);
        break;
    case PB_PRED_DDP:
        predict_ddp(w, net, t, thr, per_node, r);
        r->allreduce_bytes = ring_allreduce_bytes(w->params, t->devices);
        break;
    case PB_PRED_ZERO:
        if (t->zero_stage < 1 || t->zero_stage > 3)
            return pb_usage_error("predict: zero needs a stage 1, 2 or 3, not %d", t->zero_stage);
        predict_zero(w, net, t, t->devices, 1, thr, per_node, r);
        break;
    case PB_PRED_TP:
        if (t->devices < 2) return pb_usage_error("predict: tp needs 2 devices or more, not %d", t->devices);
        st = tp_refused(w, t->devices);
        if (st != PB_OK) return st;
        predict_tp(w, net, t, thr, per_node, r);
        break;
    case PB_PRED_MESH: {
        int P = t->mesh_pp > 0 ? t->mesh_pp : 1;
        if (t->mesh_dp < 1 || t->mesh_tp < 1 || t->mesh_dp * t->mesh_tp * P != t->devices)
            return pb_usage_error("predict: mesh needs --dp D x --tp T x --pp P = the devices (%d), not %d x %d x %d",
                                  t->devices, t->mesh_dp, t->mesh_tp, P);
        if (P > 1 && (w->gpt.on || t->zero_stage > 0 || P > w->layers))
            return pb_usage_error("predict: mesh with --pp %d is modelled on the MLP, without --zero-stage, with at "
                                  "most one stage a layer (%d); allowed: --pp 1 otherwise",
                                  P, w->layers);
        if (t->zero_stage < 0 || t->zero_stage > 3)
            return pb_usage_error("predict: mesh's --zero-stage is 1, 2 or 3 (0: the all-reduce), not %d",
                                  t->zero_stage);
        if (t->zero_stage > 0 && w->gpt.on)
            return pb_usage_error("predict: mesh with --zero-stage on a gpt is not modelled (zero reads MLP layers); "
                                  "allowed: the MLP, or the gpt without --zero-stage");
        st = tp_refused(w, t->mesh_tp);
        if (st != PB_OK) return st;
        if (P > 1) predict_mesh_pp(w, net, t, thr, per_node, r);
        else predict_mesh(w, net, t, thr, per_node, r);
        break;
    }
    case PB_PRED_DP:
        if (t->devices < 2 || r->nodes > 1)
            return pb_usage_error("predict: dp (one process) runs on 2 to %d devices of one node, not %d",
                                  per_node > 2 ? per_node : 2, t->devices);
        predict_dp(w, net, t, thr, r);
        break;
    case PB_PRED_MP:
        if (t->devices < 2 || t->devices > w->layers)
            return pb_usage_error("predict: mp needs 2 to %d devices (one block a stage at least), not %d", w->layers,
                                  t->devices);
        r->p2p_bytes = 0;
        predict_mp(w, net, t, thr, r);
        break;
    default: return pb_usage_error("predict: unknown strategy");
    }
    if (t->strategy != PB_PRED_DP && t->strategy != PB_PRED_MP && r->nodes > 1 && net->inter_gbps <= 0)
        return pb_usage_error("predict: %s on %d nodes needs the links between nodes: give --topology or "
                              "--inter-gbps",
                              pb_pred_strategy_name(t->strategy), r->nodes);
    if (strcmp(r->collectives, "none") != 0 && net->nfits == 0 && net->intra_gbps <= 0)
        return pb_usage_error("predict: %s on %d devices needs collective figures: give --comm-csv or --topology",
                              pb_pred_strategy_name(t->strategy), t->devices);
    r->comm_hidden_ms = fmax(0, r->comm_ms - r->comm_exposed_ms);
    r->samples_per_s = r->step_ms > 0 ? t->batch_global / r->step_ms * 1e3 : 0;
    /* efficiency: on GPUs (each device its own), for dp and ddp one device's
     * time for its share of the batch (weak scaling's T1(b) / TN), for mp
     * (one batch, the layers split) the single device's time over N; on
     * shared cores, one device with all the cores the N devices use, for the
     * whole batch ("the same cores", docs/sweep.md) */
    pb_pred_phases ref;
    if (net->cores_per_node > 0) {
        /* each node's cores on its share of the batch */
        int per = (t->devices + r->nodes - 1) / r->nodes;
        int cores = per * thr < net->cores_per_node ? per * thr : net->cores_per_node;
        pb_pred_single_phases(w, t->batch_global / r->nodes, cores, &ref);
        r->ideal_ms = phases_sum(&ref);
    } else if (t->strategy == PB_PRED_MP || t->strategy == PB_PRED_TP || t->strategy == PB_PRED_MESH) {
        pb_pred_single_phases(w, t->batch_global, thr, &ref);
        r->ideal_ms = phases_sum(&ref) / t->devices;
    } else {
        pb_pred_single_phases(w, t->batch_global / t->devices, thr, &ref);
        r->ideal_ms = phases_sum(&ref);
    }
    r->efficiency = r->step_ms > 0 ? r->ideal_ms / r->step_ms : 0;
    return PB_OK;
}
