/* Strategy mesh through ./bench on the cpu backend, its 4 ranks launched
 * under mpirun (oversubscribed as ddp's tests are): dp2 x tp2 trains as
 * single does (--verify) on the MLP and the GPT; each tp group's ranks load
 * their replica's half of the batch; the row carries dp, tp, pp and an
 * allreduce_bytes_per_step equal to docs/strategies.md's mesh formula (tp's
 * all-reduces over a replica's rows plus the ring all-reduce of a rank's
 * part of the gradients over D); what the mesh refuses is a usage error
 * (exit 2, one line, no row). With --zero-stage 1, 2 or 3, ZeRO within the
 * dp group (zero's step over each rank's tp part) trains as single does on
 * both workloads, its row carrying zero_stage and reduce-scatter and
 * all-gather volumes of zero's formulas over the part on D ranks plus tp's
 * all-reduces. The groups themselves: tests/unit/test_mesh.c. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

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

static void check_row(const bench_run *r, double tol)
{
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "ok");
    assert_string_equal(csv_get(&c, "strategy"), "mesh");
    assert_string_equal(csv_get(&c, "dp"), "2");
    assert_string_equal(csv_get(&c, "tp"), "2");
    assert_string_equal(csv_get(&c, "pp"), "1");
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
static void zero_part_bytes(const char *workload, int D, int T, int stage, double *rs, double *ag)
{
    pb_model *m = malloc(sizeof *m), *part = malloc(sizeof *part);
    assert_non_null(m);
    assert_non_null(part);
    preset_model_of(workload, m);
    assert_int_equal(pb_model_describe_tp(m->ops, &m->shape, T, part), PB_OK);
    double S = 0, last = 0;
    for (int b = 0; b < part->n_blocks; b++) {
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
    char z[4];
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
    zero_part_bytes(workload, 2, 2, stage, &rs, &ag);
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
#endif

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
    char *pp[] = {"--dp", "2", "--tp", "2", "--pp", "2", NULL};
    expect_refused(state, "mesh", 8, pp, "--pp 2: pipeline stages in a mesh are not built yet");
    char *zero_pp[] = {"--dp", "2", "--tp", "2", "--pp", "2", "--zero-stage", "2", NULL};
    expect_refused(state, "mesh", 8, zero_pp, "--zero-stage with --pp 2: ZeRO within a pipelined mesh is not built");
    char *other[] = {"--tp", "2", NULL};
    expect_refused(state, "ddp", 2, other, "--tp applies to --strategy mesh, not ddp");
    if (!PB_EXPECT_MPI) return; /* the workload's split is asked after MPI's presence */
    char *heads[] = {"--workload", "gpt-xs", "--dp", "1", "--tp", "3", NULL};
    expect_refused(state, "mesh", 3, heads, "--heads 4 is not divisible by --tp 3");
}

/* bench sweep --strategies dp2xtp2 runs mesh --dp 2 --tp 2 once, on its 4
 * devices, whatever --gpus lists; dp2xpp2 (pp not built) is skipped with a
 * notice saying why, and a malformed spec is a usage error */
static void test_sweep_mesh_specs(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    bench_run *r = keep(state, bench_run_new());
    char *args[] = {"sweep", "--strategies", "dp2xtp2,dp2xpp2", "--gpus", "2,3", "--workload", "mlp-xs", "--iters",
                    "1", "--warmup", "0", "--threads", "1", "--oversubscribe", "--out", r->csv_path, NULL};
    run_bench(&r->res, args);
    expect_exit(r, 0);
    if (!strstr(r->res.err, "skipping dp2xpp2 x4: --pp 2: pipeline stages in a mesh are not built yet"))
        fail_msg("stderr:\n%s", r->res.err);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "strategy"), "mesh");
    assert_string_equal(csv_get(&c, "devices"), "4");
    assert_string_equal(csv_get(&c, "dp"), "2");
    assert_string_equal(csv_get(&c, "tp"), "2");
    assert_string_equal(csv_get(&c, "pp"), "1");
    assert_string_equal(csv_get(&c, "status"), "ok");
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
        cmocka_unit_test_setup_teardown(test_hung_rank_named, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_refused, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_mesh_specs, run_setup, run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
