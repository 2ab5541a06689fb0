/* Strategy mesh through ./bench on the cpu backend, its ranks launched
 * under mpirun (oversubscribed as ddp's tests are): dp2 x tp2 trains as
 * single does (--verify) on the MLP and the GPT; each tp group's ranks load
 * their replica's half of the batch; the row carries dp, tp, pp and an
 * allreduce_bytes_per_step equal to docs/strategies.md's mesh formula (tp's
 * all-reduces over a replica's rows plus the ring all-reduce of a rank's
 * part of the gradients over D); with --sequence-parallel (SGD and AdamW)
 * too, its reduce-scatters and all-gathers within the tp group by
 * docs/strategies.md's formula. Pipelines (--pp > 1): pp2 and pp4 alone,
 * dp2 x pp2, tp2 x pp2 and dp2 x tp2 x pp2 (8 ranks) train as single does
 * on both workloads, with gpipe and 1f1b, their p2p_bytes_per_step equal
 * to the pipeline formula; two stages whose messages are past MPI's eager
 * limit finish 1F1B; a hung stage is named within --timeout. What
 * the mesh refuses is a usage error (exit 2, one line, no row). The groups
 * themselves: tests/unit/test_mesh.c. With --zero-stage 1, 2
 * or 3, ZeRO within the dp group (zero's step over each rank's tp part)
 * trains as single does on both workloads, its row carrying zero_stage and
 * reduce-scatter and all-gather volumes of zero's formulas over the part on
 * D ranks plus tp's all-reduces, and it honours --bucket-mb. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "strategies/schedule.h"
#include "tests/common/preset_model.h"

/* mesh on gpus ranks of the cpu backend (run_strategy_on) */
static bench_run *run_mesh(int gpus, char *const extra[], char *const env[])
{
    return run_strategy_on("mesh", gpus, extra, env);
}

/* a ring all-reduce of S bytes over n ranks sends 2 S (n-1)/n per rank */
static double ring(double bytes, double n) { return 2.0 * bytes * (n - 1) / n; }

/* docs/strategies.md, "mesh": tp's all-reduces (as test_tp.c's formula)
 * over a replica's b = B/D rows, on T ranks, plus the dp group's all-reduce
 * of a rank's part of the parameters (P less the split tensors' (T-1)/T)
 * on D ranks. */
static double formula_bytes(const csv *c)
{
    double D = csv_num(c, "dp"), T = csv_num(c, "tp"), b = csv_num(c, "batch_global") / D, L = csv_num(c, "layers");
    double P = csv_num(c, "params"), tp_bytes = 0.0, split = 0.0;
    if (strcmp(csv_get(c, "workload"), "gpt-xs") == 0) {
        double C = csv_num(c, "d_model");
        tp_bytes = 4.0 * L * b * csv_num(c, "seq") * C * 4.0;
        split = L * (12.0 * C * C + 7.0 * C); /* QKV and c_fc weights and biases, both c_proj weights */
        /* the flat buffer holds the tied head twice (as ddp's P does), the
         * vocabulary padded to a multiple of 128 */
        P += ceil(csv_num(c, "vocab") / 128.0) * 128.0 * C;
    } else {
        double in = csv_num(c, "in"), hidden = csv_num(c, "hidden"), classes = csv_num(c, "classes");
        for (int l = 0; l + 1 < (int)L; l += 2) {
            double out = l + 2 == (int)L ? classes : hidden;
            tp_bytes += b * out * 4.0;
            if (l > 0) tp_bytes += b * hidden * 4.0;
            split += (l == 0 ? in : hidden) * hidden + hidden + hidden * out;
        }
    }
    return ring(tp_bytes, T) + ring((P - split * (T - 1) / T) * 4.0, D);
}

/* tp's all-reduces alone: the formula above without the dp group's */
static double formula_tp_bytes(const csv *c)
{
    double D = csv_num(c, "dp"), T = csv_num(c, "tp"), b = csv_num(c, "batch_global") / D, L = csv_num(c, "layers");
    double tp_bytes = 0.0;
    if (strcmp(csv_get(c, "workload"), "gpt-xs") == 0) {
        tp_bytes = 4.0 * L * b * csv_num(c, "seq") * csv_num(c, "d_model") * 4.0;
    } else {
        for (int l = 0; l + 1 < (int)L; l += 2) {
            tp_bytes += b * (l + 2 == (int)L ? csv_num(c, "classes") : csv_num(c, "hidden")) * 4.0;
            if (l > 0) tp_bytes += b * csv_num(c, "hidden") * 4.0;
        }
    }
    return ring(tp_bytes, T);
}

/* The run's one row, ok, of a mesh of those sizes, into c */
static void load_mesh_row(const bench_run *r, csv *c, const char *dp, const char *tp, const char *pp)
{
    expect_exit(r, 0);
    csv_load(c, r->csv_path);
    assert_int_equal(c->rows, 1);
    assert_string_equal(csv_get(c, "status"), "ok");
    assert_string_equal(csv_get(c, "strategy"), "mesh");
    assert_string_equal(csv_get(c, "dp"), dp);
    assert_string_equal(csv_get(c, "tp"), tp);
    assert_string_equal(csv_get(c, "pp"), pp);
}

static void check_row(const bench_run *r, double tol)
{
    csv c;
    load_mesh_row(r, &c, "2", "2", "1");
    assert_string_equal(csv_get(&c, "zero_stage"), ""); /* gradients all-reduced: no ZeRO */
    assert_int_equal((int)csv_num(&c, "ranks"), 4);
    /* a replica's (a dp group index's) half of the batch */
    assert_int_equal((int)csv_num(&c, "batch_per_device"), (int)csv_num(&c, "batch_global") / 2);
    double err = csv_num(&c, "verify_max_rel_err");
    if (!(err <= tol))
        fail_msg("mesh dp2 x tp2 (%s): max relative error %g vs single, allowed %g", csv_get(&c, "workload"), err, tol);
    double want = formula_bytes(&c), got = csv_num(&c, "allreduce_bytes_per_step");
    if (!(fabs(got - want) <= 1e-6 * want))
        fail_msg("allreduce_bytes_per_step %s, the formula %.0f", csv_get(&c, "allreduce_bytes_per_step"), want);
    if (!(csv_num(&c, "tp_comm_ms") > 0)) fail_msg("tp_comm_ms is '%s'", csv_get(&c, "tp_comm_ms"));
    if (!(csv_num(&c, "sync_ms") > 0)) fail_msg("sync_ms is '%s'", csv_get(&c, "sync_ms"));
    /* (comm_ms is the comm thread's clock, tp_comm_ms the phase spans:
     * under load either can be the larger, so no order between them) */
    if (!(csv_num(&c, "comm_ms") > 0)) fail_msg("comm_ms is '%s'", csv_get(&c, "comm_ms"));
    expect_phases_add_up(&c);
    csv_free(&c);
}

static void test_mlp_dp2_tp2_matches_single(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *extra[] = {"--workload", "mlp-xs", "--dp", "2", "--tp", "2", "--iters", "10", "--verify", NULL};
    char *env[] = {"PB_TEST_LOADER_STATS=1", NULL};
    bench_run *r = keep(state, run_mesh(4, extra, env));
    check_row(r, 1e-5);
    /* ranks 0,1 (replica 0) and 2,3 (replica 1): 32 rows each of 10 steps */
    expect_mlp_xs_loader_filled(r, 4, 10 * 32);
}

/* AdamW, 5 steps: test_tp.c says why the GPT's bound is 5e-3 */
static void test_gpt_dp2_tp2_matches_single(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *extra[] = {"--workload", "gpt-xs", "--dp", "2", "--tp", "2", "--iters", "5", "--optimizer", "adamw",
                     "--verify", NULL};
    bench_run *r = keep(state, run_mesh(4, extra, NULL));
    check_row(r, 5e-3);
}

/* --sequence-parallel, dp2 x tp2 on gpt-xs: single's training (SGD 10
 * steps, AdamW 5 as above), and docs/strategies.md's volume with b = B/D
 * rows on T ranks: 4L reduce-scatters and 4L + 1 all-gathers of b*s*h fp32
 * (S (T-1)/T each), the all-reduces the LayerNorms' 2L of 2h in the tp
 * group in place of tp's 4L of b*s*h, plus the dp group's */
static void test_gpt_dp2_tp2_sequence_parallel_matches_single(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    static const char *const opts[] = {"sgd", "adamw"}, *const iters[] = {"10", "5"};
    for (int o = 0; o < 2; o++) {
        char *extra[] = {"--workload", "gpt-xs", "--dp", "2", "--tp", "2", "--sequence-parallel", "--iters",
                         (char *)iters[o], "--optimizer", (char *)opts[o], "--verify", NULL};
        bench_run *r = keep(state, run_mesh(4, extra, NULL));
        expect_exit(r, 0);
        csv c;
        csv_load(&c, r->csv_path);
        assert_string_equal(csv_get(&c, "status"), "ok");
        assert_string_equal(csv_get(&c, "sequence_parallel"), "1");
        double err = csv_num(&c, "verify_max_rel_err"), tol = o == 0 ? 1e-5 : 5e-3;
        if (!(err <= tol)) fail_msg("mesh --sequence-parallel %s: error %g vs single, allowed %g", opts[o], err, tol);
        double T = 2.0, L = csv_num(&c, "layers"), h = csv_num(&c, "d_model");
        double S = csv_num(&c, "batch_global") / 2.0 * csv_num(&c, "seq") * h * 4.0;
        double want[] = {4.0 * L * S * (T - 1) / T, (4.0 * L + 1.0) * S * (T - 1) / T,
                         formula_bytes(&c) - ring(4.0 * L * S, T) + ring(2.0 * L * 2.0 * h * 4.0, T)};
        static const char *const cols[] = {"reduce_scatter_bytes_per_step", "allgather_bytes_per_step",
                                           "allreduce_bytes_per_step"};
        for (int k = 0; k < 3; k++)
            if (!(fabs(csv_num(&c, cols[k]) - want[k]) <= 1e-9 * want[k]))
                fail_msg("%s is '%s', the formula %.0f", cols[k], csv_get(&c, cols[k]), want[k]);
        expect_phases_add_up(&c);
        csv_free(&c);
    }
}

/* --- pipelines ---------------------------------------------------------- */

/* docs/strategies.md, "mesh": across each stage boundary a replica's b =
 * B/D rows of the boundary's activation forward and their gradient back,
 * 2 b w 4 bytes (w: a GPT's seq x d_model; the MLP's hidden width, a rank's
 * 1/T of it where the boundary falls inside a tp column/row pair, after an
 * even layer), the mean over the boundaries that stage_layers gives */
static double p2p_formula(const csv *c)
{
    double D = csv_num(c, "dp"), T = csv_num(c, "tp"), b = csv_num(c, "batch_global") / D;
    bool gpt = strcmp(csv_get(c, "workload"), "gpt-xs") == 0;
    const char *split = csv_get(c, "stage_layers");
    double sum = 0.0;
    int first = 0, n = 0;
    for (const char *p = split; *p;) {
        char *end;
        first += (int)strtol(p, &end, 10);
        p = *end == '+' ? end + 1 : end;
        if (!*p) break; /* the last stage's end is no boundary */
        double w = gpt ? csv_num(c, "seq") * csv_num(c, "d_model")
                       : csv_num(c, "hidden") / (first % 2 == 1 ? T : 1.0);
        sum += 2.0 * b * w * 4.0;
        n++;
    }
    if (n == 0) fail_msg("stage_layers '%s' has no boundary", split);
    return sum / n;
}

/* A pipelined mesh's row: its sizes, schedule and microbatches, --verify
 * within tol, p2p_bytes_per_step equal to the formula, the phases that a
 * pipeline has adding up to the step */
static void check_pipe_row(const bench_run *r, const char *dp, const char *tp, const char *pp, const char *sched,
                           const char *m, double tol)
{
    csv c;
    load_mesh_row(r, &c, dp, tp, pp);
    assert_string_equal(csv_get(&c, "schedule"), sched);
    assert_string_equal(csv_get(&c, "microbatches"), m);
    double err = csv_num(&c, "verify_max_rel_err");
    if (!(err <= tol))
        fail_msg("mesh dp%s x tp%s x pp%s %s (%s): max relative error %g vs single, allowed %g", dp, tp, pp, sched,
                 csv_get(&c, "workload"), err, tol);
    double want = p2p_formula(&c), got = csv_num(&c, "p2p_bytes_per_step");
    if (!(fabs(got - want) <= 1e-9 * want))
        fail_msg("p2p_bytes_per_step %s, the formula %.0f", csv_get(&c, "p2p_bytes_per_step"), want);
    double P = csv_num(&c, "pp"), M = csv_num(&c, "microbatches");
    if (!(fabs(csv_num(&c, "bubble_frac_theory") - (P - 1) / (M + P - 1)) <= 1e-6))
        fail_msg("bubble_frac_theory %s", csv_get(&c, "bubble_frac_theory"));
    static const char *const timed[] = {"fwd_ms", "bwd_ms", "p2p_ms", "sync_ms", "opt_ms"};
    for (size_t i = 0; i < sizeof timed / sizeof *timed; i++)
        if (!(csv_num(&c, timed[i]) > 0)) fail_msg("%s is '%s'", timed[i], csv_get(&c, timed[i]));
    if (!(csv_num(&c, "bubble_ms") >= 0)) fail_msg("bubble_ms is '%s'", csv_get(&c, "bubble_ms"));
    expect_phases_add_up(&c);
    csv_free(&c);
}

/* mesh with the sizes and schedule given, M microbatches, on a workload
 * (the GPT with AdamW: its bound is tp's 5e-3), --verify */
static bench_run *pipe_case(void **state, const char *workload, const char *dp, const char *tp, const char *pp,
                            const char *sched, const char *m, const char *iters, char *const more[])
{
    if (!PB_EXPECT_MPI) skip();
    bool gpt = strcmp(workload, "gpt-xs") == 0;
    char *extra[32] = {"--workload", (char *)workload, "--dp", (char *)dp, "--tp", (char *)tp, "--pp", (char *)pp,
                       "--schedule", (char *)sched, "--microbatches", (char *)m, "--iters", (char *)iters,
                       "--verify"};
    int n = 15;
    if (gpt) {
        extra[n++] = "--optimizer";
        extra[n++] = "adamw";
    }
    for (int i = 0; more && more[i]; i++) extra[n++] = more[i];
    extra[n] = NULL;
    bench_run *r = keep(state, run_mesh(atoi(dp) * atoi(tp) * atoi(pp), extra, NULL));
    check_pipe_row(r, dp, tp, pp, sched, m, gpt ? 5e-3 : 1e-5);
    return r;
}

/* pp alone: 2 stages of the MLP (GPipe), 4 of the GPT (1F1B), and 4 of a
 * 4-layer MLP (1F1B, 8 microbatches) */
static void test_pp_alone_matches_single(void **state)
{
    pipe_case(state, "mlp-xs", "1", "1", "2", "gpipe", "4", "4", NULL);
    pipe_case(state, "gpt-xs", "1", "1", "4", "1f1b", "4", "3", NULL);
    char *layers[] = {"--layers", "4", NULL};
    pipe_case(state, "mlp-xs", "1", "1", "4", "1f1b", "8", "3", layers);
}

/* dp2 x pp2 and tp2 x pp2 on both workloads, each schedule on one */
static void test_dp2_pp2_matches_single(void **state)
{
    pipe_case(state, "mlp-xs", "2", "1", "2", "gpipe", "2", "3", NULL);
    pipe_case(state, "gpt-xs", "2", "1", "2", "1f1b", "4", "3", NULL);
}

static void test_tp2_pp2_matches_single(void **state)
{
    pipe_case(state, "mlp-xs", "1", "2", "2", "1f1b", "4", "3", NULL);
    pipe_case(state, "gpt-xs", "1", "2", "2", "gpipe", "2", "3", NULL);
}

/* 8 ranks on the shared cores: 2 steps each */
static void test_dp2_tp2_pp2_matches_single(void **state)
{
    pipe_case(state, "mlp-xs", "2", "2", "2", "gpipe", "2", "2", NULL);
    pipe_case(state, "gpt-xs", "2", "2", "2", "1f1b", "2", "2", NULL);
}

/* Messages past every MPI eager limit (vader's 4 KiB, tcp's 64 KiB): two
 * stages' 1F1B steady state, where each sends before it receives, must
 * not wait on each other (the mpi comm's sends are MPI_Isend on its comm
 * thread); a blocking send there hangs until --timeout. */
static void test_pp_large_messages_finish(void **state)
{
    char *wide[] = {"--hidden", "2048", "--timeout", "5", NULL};
    pipe_case(state, "mlp-xs", "1", "1", "2", "1f1b", "4", "3", wide);
    csv c;
    csv_load(&c, ((bench_run *)*state)->csv_path);
    double per_message = csv_num(&c, "p2p_bytes_per_step") / (2.0 * csv_num(&c, "microbatches"));
    if (!(per_message > 65536.0)) fail_msg("a boundary message of %g bytes: not past the eager limit", per_message);
    csv_free(&c);
}

/* dp2 x pp2: rank 1 (replica 1's first stage) stuck in forward: its next
 * stage's receive and replica 0's dp all-reduce fail within --timeout
 * naming it, its phase and step; the row is failed */
static void test_hung_stage_named(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *extra[] = {"--workload", "mlp-xs", "--dp", "2", "--pp", "2", "--microbatches", "2", "--iters", "6",
                     "--timeout", "3", NULL};
    char *env[] = {"PB_FAULT=rank=1,step=2,phase=fwd,kind=hang", NULL};
    bench_run *r = keep(state, run_mesh(4, extra, env));
    static const char *const says[] = {"mesh step 2: rank ", "of a split group (world rank ",
                                       "did not complete within 3 s (--timeout): ", ") is stuck in phase fwd of step 2"};
    expect_hung_rank_named(r, 1, says, sizeof says / sizeof *says);
}

/* A rank of replica 1 stuck in forward: its tp partner's all-reduce and
 * replica 0's dp all-reduce fail within --timeout naming it, its phase and
 * step; the row is failed */
static void test_hung_rank_named(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *extra[] = {"--workload", "mlp-xs", "--dp", "2", "--tp", "2", "--iters", "10", "--timeout", "3", NULL};
    char *env[] = {"PB_FAULT=rank=2,step=3,phase=fwd,kind=hang", NULL};
    bench_run *r = keep(state, run_mesh(4, extra, env));
    static const char *const says[] = {"mesh step 3: rank ", "of a split group (world rank ",
                                       "did not complete within 3 s (--timeout): ", ") is stuck in phase fwd of step 3"};
    expect_hung_rank_named(r, 2, says, sizeof says / sizeof *says);
}

#if PB_EXPECT_MPI
/* docs/strategies.md, "zero" over a mesh: a rank's tp part (T ways) in
 * blocks padded to D chunks; reduce-scatter (D-1) S x 4 with S the sum of
 * the part's chunks, all-gather as much (stage 3: twice, less the last
 * block's chunk) */
static void zero_part_bytes(const char *workload, int D, int T, int P, int stage, double *rs, double *ag)
{
    pb_model *m = malloc(sizeof *m), *part = malloc(sizeof *part);
    assert_non_null(m);
    assert_non_null(part);
    preset_model_of(workload, m);
    assert_int_equal(pb_model_describe_tp(m->ops, &m->shape, T, part), PB_OK);
    /* P > 1: rank 0's pipeline stage, the first of the FLOP-balanced split */
    int first[PB_MAX_STAGES + 1] = {0, part->n_blocks};
    if (P > 1) pb_sched_balanced_split(m, P, first);
    double S = 0, last = 0;
    for (int b = 0; b < first[1]; b++) {
        last = (double)((part->block[b].p_len + (size_t)D - 1) / (size_t)D);
        S += last;
    }
    *rs = (D - 1) * S * 4.0;
    *ag = (D - 1) * (stage == 3 ? 2 * S - last : S) * 4.0;
    free(m);
    free(part);
}

/* mesh dp2 x tp2 --zero-stage S --verify on a workload: the training of
 * single, zero_stage and the volumes of the formulas */
static void check_mesh_zero(void **state, const char *workload, int stage, const char *optimizer, double tol)
{
    char z[12]; /* any int: the SAN build's -Wformat-truncation sees stage unbounded */
    snprintf(z, sizeof z, "%d", stage);
    char *extra[] = {"--workload", (char *)workload, "--dp", "2", "--tp", "2", "--zero-stage", z, "--iters", "4",
                     "--optimizer", (char *)optimizer, "--verify", NULL};
    bench_run *r = keep(state, run_mesh(4, extra, NULL));
    if (r->res.exit_code != 0) fail_msg("mesh zero %d, %s: exit %d\n%s", stage, workload, r->res.exit_code, r->res.err);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "ok");
    assert_int_equal((int)csv_num(&c, "zero_stage"), stage);
    assert_int_equal((int)csv_num(&c, "batch_per_device"), (int)csv_num(&c, "batch_global") / 2);
    double err = csv_num(&c, "verify_max_rel_err");
    if (!(err <= tol)) fail_msg("mesh zero %d (%s): max relative error %g vs single, allowed %g", stage, workload, err, tol);
    double rs = 0, ag = 0;
    zero_part_bytes(workload, 2, 2, 1, stage, &rs, &ag);
    double got_rs = csv_num(&c, "reduce_scatter_bytes_per_step"), got_ag = csv_num(&c, "allgather_bytes_per_step");
    double got_ar = csv_num(&c, "allreduce_bytes_per_step"), want_ar = formula_tp_bytes(&c);
    if (got_rs != rs || got_ag != ag || !(fabs(got_ar - want_ar) <= 1e-6 * want_ar))
        fail_msg("mesh zero %d (%s): reduce_scatter/allgather/allreduce bytes %g/%g/%g, the formulas %g/%g/%g", stage,
                 workload, got_rs, got_ag, got_ar, rs, ag, want_ar);
    if (!(csv_num(&c, "tp_comm_ms") > 0 && csv_num(&c, "reduce_scatter_ms") > 0 && csv_num(&c, "allgather_ms") > 0))
        fail_msg("tp_comm_ms '%s', reduce_scatter_ms '%s', allgather_ms '%s'", csv_get(&c, "tp_comm_ms"),
                 csv_get(&c, "reduce_scatter_ms"), csv_get(&c, "allgather_ms"));
    expect_phases_add_up(&c);
    csv_free(&c);
}

/* ZeRO 1/2 within the dp group of a pipelined mesh (a pipe_case run): its
 * zero_stage, and rank 0's stage's blocks sharded over D: reduce-scatter
 * and all-gather (D-1) S x 4 each, S the sum of those blocks' chunks
 * (p2p volume as without ZeRO: check_pipe_row) */
static void check_pipe_zero(const bench_run *r, const char *workload, int D, int T, int P, int stage)
{
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal((int)csv_num(&c, "zero_stage"), stage);
    double rs = 0, ag = 0;
    zero_part_bytes(workload, D, T, P, stage, &rs, &ag);
    double got_rs = csv_num(&c, "reduce_scatter_bytes_per_step"), got_ag = csv_num(&c, "allgather_bytes_per_step");
    if (got_rs != rs || got_ag != ag)
        fail_msg("mesh dp%d x tp%d x pp%d zero %d (%s): reduce_scatter/allgather bytes %g/%g, the formula %g/%g", D, T,
                 P, stage, workload, got_rs, got_ag, rs, ag);
    if (T == 1 && csv_num(&c, "allreduce_bytes_per_step") != 0)
        fail_msg("allreduce_bytes_per_step '%s': the dp all-reduce is zero's reduce-scatter",
                 csv_get(&c, "allreduce_bytes_per_step"));
    if (!(csv_num(&c, "reduce_scatter_ms") > 0 && csv_num(&c, "allgather_ms") > 0))
        fail_msg("reduce_scatter_ms '%s', allgather_ms '%s'", csv_get(&c, "reduce_scatter_ms"),
                 csv_get(&c, "allgather_ms"));
    csv_free(&c);
}
#endif

/* ZeRO 1 and 2 in dp2 x pp2 on both workloads and schedules (the GPT with
 * AdamW and its tied head across the stages), and ZeRO 1 in dp2 x tp2 x
 * pp2 (8 ranks: 2 steps) */
static void test_mesh_pp_zero_matches_single(void **state)
{
#if PB_EXPECT_MPI
    char *z1[] = {"--zero-stage", "1", NULL}, *z2[] = {"--zero-stage", "2", NULL};
    check_pipe_zero(pipe_case(state, "mlp-xs", "2", "1", "2", "gpipe", "2", "3", z1), "mlp-xs", 2, 1, 2, 1);
    check_pipe_zero(pipe_case(state, "mlp-xs", "2", "1", "2", "1f1b", "2", "3", z2), "mlp-xs", 2, 1, 2, 2);
    check_pipe_zero(pipe_case(state, "gpt-xs", "2", "1", "2", "1f1b", "2", "3", z1), "gpt-xs", 2, 1, 2, 1);
    check_pipe_zero(pipe_case(state, "gpt-xs", "2", "1", "2", "gpipe", "2", "3", z2), "gpt-xs", 2, 1, 2, 2);
    check_pipe_zero(pipe_case(state, "gpt-xs", "2", "2", "2", "1f1b", "2", "2", z1), "gpt-xs", 2, 2, 2, 1);
#else
    (void)state;
    skip();
#endif
}

/* ZeRO within the dp group, stages 1 to 3, on both workloads (SGD on the
 * MLP; AdamW on the GPT: test_tp.c says why its bound is 5e-3) */
static void test_mesh_zero_matches_single(void **state)
{
#if PB_EXPECT_MPI
    for (int stage = 1; stage <= 3; stage++) {
        check_mesh_zero(state, "mlp-xs", stage, "sgd", 1e-5);
        check_mesh_zero(state, "gpt-xs", stage, "adamw", 5e-3);
    }
#else
    (void)state;
    skip();
#endif
}

#if PB_EXPECT_MPI
/* mesh dp2 x tp2 --zero-stage 2 on mlp-xs with 8 layers (8 blocks: the
 * gradient pool is below n only with small buckets) and extra flags, its
 * row (verified) into c */
static void run_mesh_zero2(void **state, char *const flags[], csv *c)
{
    char *extra[16] = {"--workload", "mlp-xs", "--layers", "8", "--dp", "2", "--tp", "2", "--zero-stage", "2",
                       "--iters", "2", "--verify"};
    int n = 13;
    for (int i = 0; flags[i]; i++) extra[n++] = flags[i];
    extra[n] = NULL;
    bench_run *r = keep(state, run_mesh(4, extra, NULL));
    load_mesh_row(r, c, "2", "2", "1");
    double err = csv_num(c, "verify_max_rel_err");
    if (!(err <= 1e-4)) fail_msg("mesh zero 2 %s: max relative error %g vs single", flags[0], err);
}
#endif

/* --bucket-mb and --no-overlap are zero's in the mesh too: buckets of one
 * block hold fewer gradient buffers (plan and allocation alike) than one
 * bucket of everything, and the row says which */
static void test_mesh_zero_bucket_mb(void **state)
{
#if PB_EXPECT_MPI
    csv small, big, none;
    run_mesh_zero2(state, (char *[]){"--bucket-mb", "0.001", NULL}, &small);
    run_mesh_zero2(state, (char *[]){"--bucket-mb", "64", NULL}, &big);
    run_mesh_zero2(state, (char *[]){"--no-overlap", NULL}, &none);
    assert_string_equal(csv_get(&small, "bucket_mb"), "0.001");
    assert_string_equal(csv_get(&big, "bucket_mb"), "64");
    assert_string_equal(csv_get(&none, "bucket_mb"), "");
    assert_string_equal(csv_get(&small, "no_overlap"), "0");
    assert_string_equal(csv_get(&none, "no_overlap"), "1");
    double g_small = csv_num(&small, "mem_plan_grads_mb"), g_big = csv_num(&big, "mem_plan_grads_mb");
    double p_small = csv_num(&small, "peak_mem_mb"), p_big = csv_num(&big, "peak_mem_mb");
    if (!(g_small < g_big && p_small < p_big))
        fail_msg("one-block buckets: grads plan %g MB, peak %g MB; one bucket: %g, %g", g_small, p_small, g_big, p_big);
    assert_true(csv_num(&none, "mem_plan_grads_mb") == g_big);
    csv_free(&small);
    csv_free(&big);
    csv_free(&none);
#else
    (void)state;
    skip();
#endif
}

/* exit 2, one line naming it, nothing written */
static void expect_refused(void **state, const char *strategy, int gpus, char *const extra[], const char *says)
{
    bench_run *r = keep(state, run_strategy_on(strategy, gpus, extra, NULL));
    expect_exit(r, 2);
    if (!strstr(r->res.err, says) || count_lines(r->res.err) != 1) fail_msg("stderr:\n%s", r->res.err);
    assert_false(file_exists(r->csv_path));
}

static void test_refused(void **state)
{
    char *product[] = {"--dp", "2", "--tp", "2", NULL};
    expect_refused(state, "mesh", 8, product,
                   "--dp 2 --tp 2 --pp 1 make 4 ranks, but the run has 8 devices; allowed: D x T x P");
    char *stages[] = {"--workload", "mlp-xs", "--pp", "4", NULL};
    expect_refused(state, "mesh", 4, stages, "--pp 4: more stages than blocks (3 layers); allowed: --pp <= 3");
    char *rows[] = {"--workload", "mlp-xs", "--batch", "24", "--dp", "2", "--pp", "2", "--microbatches", "8", NULL};
    expect_refused(state, "mesh", 4, rows, "--batch 24 is not divisible by --dp 2 x --microbatches 8");
    char *flat[] = {"--dp", "2", "--microbatches", "2", NULL};
    expect_refused(state, "mesh", 2, flat, "--microbatches 2: a mesh pipelines microbatches over its --pp stages");
    char *seqpar[] = {"--workload", "gpt-xs", "--tp", "2", "--pp", "2", "--sequence-parallel", NULL};
    expect_refused(state, "mesh", 4, seqpar, "--sequence-parallel with --pp 2: pipeline stages do not split the tokens");
    char *zero_pp[] = {"--dp", "2", "--tp", "2", "--pp", "2", "--zero-stage", "3", NULL};
    expect_refused(state, "mesh", 8, zero_pp, "--zero-stage 3 with --pp 2: sharded parameters would be gathered for "
                   "every microbatch (DeepSpeed refuses ZeRO-3 with pipeline parallelism too)");
    char *zero_pp_bucket[] = {"--dp", "2", "--pp", "2", "--zero-stage", "1", "--bucket-mb", "1", NULL};
    expect_refused(state, "mesh", 4, zero_pp_bucket, "--bucket-mb with --pp 2: a pipelined mesh's ZeRO reduces each "
                   "block after the last backward, unbucketed");
    char *zero_sp[] = {"--workload", "gpt-xs", "--dp", "2", "--tp", "2", "--zero-stage", "2", "--sequence-parallel", NULL};
    expect_refused(state, "mesh", 4, zero_sp, "--sequence-parallel with --zero-stage: ZeRO within the dp group");
    char *buckets[] = {"--dp", "2", "--tp", "2", "--bucket-mb", "4", NULL};
    expect_refused(state, "mesh", 4, buckets, "--bucket-mb: the mesh's dp all-reduce has no buckets");
    char *other[] = {"--tp", "2", NULL};
    expect_refused(state, "ddp", 2, other, "--tp applies to --strategy mesh, not ddp");
    if (!PB_EXPECT_MPI) return; /* the workload's split is asked after MPI's presence */
    char *heads[] = {"--workload", "gpt-xs", "--dp", "1", "--tp", "3", NULL};
    expect_refused(state, "mesh", 3, heads, "--heads 4 is not divisible by --tp 3");
}

/* A sweep row's strategy, devices, dp, tp, pp, schedule, microbatches */
static void expect_sweep_row(const csv *c, int row, const char *devices, const char *dp, const char *tp,
                             const char *pp, const char *sched, const char *m)
{
    assert_string_equal(csv_field(c, row, "strategy"), "mesh");
    assert_string_equal(csv_field(c, row, "status"), "ok");
    assert_string_equal(csv_field(c, row, "devices"), devices);
    assert_string_equal(csv_field(c, row, "dp"), dp);
    assert_string_equal(csv_field(c, row, "tp"), tp);
    assert_string_equal(csv_field(c, row, "pp"), pp);
    assert_string_equal(csv_field(c, row, "schedule"), sched);
    assert_string_equal(csv_field(c, row, "microbatches"), m);
}

/* bench sweep --strategies dp2xtp2 runs mesh --dp 2 --tp 2 once, on its 4
 * devices, whatever --gpus lists, as dp2xpp2 runs mesh --dp 2 --pp 2; pp
 * runs mesh --pp N on each count N; the pipelines 1f1b over 2P
 * microbatches; a malformed spec is a usage error */
static void test_sweep_mesh_specs(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    bench_run *r = keep(state, bench_run_new());
    char *args[] = {"sweep", "--strategies", "dp2xtp2,dp2xpp2,pp", "--gpus", "2,3", "--workload", "mlp-xs",
                    "--iters", "1", "--warmup", "0", "--threads", "1", "--oversubscribe", "--out", r->csv_path, NULL};
    run_bench(&r->res, args);
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 4);
    expect_sweep_row(&c, 0, "4", "2", "2", "1", "gpipe", "1");
    expect_sweep_row(&c, 1, "4", "2", "1", "2", "1f1b", "4");
    expect_sweep_row(&c, 2, "2", "1", "1", "2", "1f1b", "4");
    expect_sweep_row(&c, 3, "3", "1", "1", "3", "1f1b", "6");
    csv_free(&c);
    bench_run *bad = keep(state, bench_run_new());
    char *bad_args[] = {"sweep", "--strategies", "dp2xdp2", "--out", bad->csv_path, NULL};
    run_bench(&bad->res, bad_args);
    expect_exit(bad, 2);
    if (!strstr(bad->res.err, "unknown 'dp2xdp2'") || count_lines(bad->res.err) != 1)
        fail_msg("stderr:\n%s", bad->res.err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mlp_dp2_tp2_matches_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_gpt_dp2_tp2_matches_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mesh_zero_matches_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mesh_zero_bucket_mb, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_gpt_dp2_tp2_sequence_parallel_matches_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_hung_rank_named, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_pp_alone_matches_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_dp2_pp2_matches_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_tp2_pp2_matches_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_dp2_tp2_pp2_matches_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_pp_large_messages_finish, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mesh_pp_zero_matches_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_hung_stage_named, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_refused, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_mesh_specs, run_setup, run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
