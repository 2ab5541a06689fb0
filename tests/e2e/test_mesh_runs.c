/* Strategy mesh through ./bench on the cpu backend, its 4 ranks launched
 * under mpirun (oversubscribed as ddp's tests are): dp2 x tp2 trains as
 * single does (--verify) on the MLP and the GPT; each tp group's ranks load
 * their replica's half of the batch; the row carries dp, tp, pp and an
 * allreduce_bytes_per_step equal to docs/strategies.md's mesh formula (tp's
 * all-reduces over a replica's rows plus the ring all-reduce of a rank's
 * part of the gradients over D); with --sequence-parallel (SGD and AdamW)
 * too, its reduce-scatters and all-gathers within the tp group by
 * docs/strategies.md's formula; what the mesh refuses is a usage error
 * (exit 2, one line, no row). The groups themselves: tests/unit/test_mesh.c. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>

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
        cmocka_unit_test_setup_teardown(test_gpt_dp2_tp2_sequence_parallel_matches_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_hung_rank_named, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_refused, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_mesh_specs, run_setup, run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
