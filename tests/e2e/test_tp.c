/* Strategy tp through ./bench on the cpu backend, its ranks launched
 * under mpirun (oversubscribed as ddp's tests are): on 2 and 4 ranks, with
 * SGD and AdamW, the MLP with an even layer count (every layer in a
 * column/row pair) and an odd one (the last layer replicated) and the GPT
 * (heads split) train as single does (--verify, the parameters gathered
 * from every rank); every rank loads the whole batch; the row's
 * allreduce_bytes_per_step is docs/strategies.md's formula (Megatron's 4
 * all-reduces of b*s*h per GPT block; the MLP's per layer pair), the
 * tp_comm phase is timed and the phases add up to the step; shapes that do
 * not split are usage errors (exit 2, one line, no row); a hung rank is
 * named by the others' all-reduce deadline. --sequence-parallel on the GPT
 * trains as single does on 2 and 4 ranks, its reduce-scatter, all-gather
 * and all-reduce columns docs/strategies.md's formula, and what it does
 * not apply to is a usage error. The pieces
 * (splits, shard mapping, gradients) are tests/unit/test_tp_lib.c. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>

/* tp on gpus ranks of the cpu backend (run_strategy_on) */
static bench_run *run_tp(int gpus, char *const extra[], char *const env[])
{
    return run_strategy_on("tp", gpus, extra, env);
}

/* docs/strategies.md, "tp": a ring all-reduce of S bytes moves 2 S (N-1)/N
 * per rank. GPT: 4 of b*s*h fp32 per block a step (2 forward, 2 backward).
 * MLP: per column/row pair, one of b*out (the row layer's output) forward
 * and one of b*in (the column layer's input gradient) backward, but for the
 * first pair, whose input (the batch) has no gradient. */
static double formula_bytes(const csv *c, int n)
{
    double b = csv_num(c, "batch_global"), L = csv_num(c, "layers"), ring = 2.0 * (n - 1) / n, s = 0.0;
    if (strcmp(csv_get(c, "workload"), "gpt-xs") == 0) return ring * 4.0 * L * (b * csv_num(c, "seq") * csv_num(c, "d_model") * 4.0);
    double hidden = csv_num(c, "hidden"), classes = csv_num(c, "classes");
    for (int l = 0; l + 1 < (int)L; l += 2) {
        double out = l + 2 == (int)L ? classes : hidden;
        s += b * out * 4.0;                 /* forward: after the row layer */
        if (l > 0) s += b * hidden * 4.0; /* backward: the column layer's input gradient */
    }
    return ring * s;
}

/* exit 0, one ok row within tol of single, the columns tp fills */
static void check_row(const bench_run *r, int n, double tol)
{
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "ok");
    assert_string_equal(csv_get(&c, "strategy"), "tp");
    assert_string_equal(csv_get(&c, "comm"), "mpi");
    assert_int_equal((int)csv_num(&c, "ranks"), n);
    /* each rank trains on the whole batch */
    assert_int_equal((int)csv_num(&c, "batch_per_device"), (int)csv_num(&c, "batch_global"));
    double err = csv_num(&c, "verify_max_rel_err");
    if (!(err <= tol))
        fail_msg("tp on %d ranks (%s, %s layers, %s): max relative error %g vs single, allowed %g", n,
                 csv_get(&c, "workload"), csv_get(&c, "layers"), csv_get(&c, "optimizer"), err, tol);
    double want = formula_bytes(&c, n), got = csv_num(&c, "allreduce_bytes_per_step");
    if (!(fabs(got - want) <= 1e-6 * want))
        fail_msg("allreduce_bytes_per_step %s, the formula %.0f", csv_get(&c, "allreduce_bytes_per_step"), want);
    /* the payload: the wire volume without the ring's factor */
    if (!(fabs(csv_num(&c, "comm_bytes_per_step") * 2.0 * (n - 1) / n - want) <= 1e-6 * want))
        fail_msg("comm_bytes_per_step %s for a ring volume of %.0f", csv_get(&c, "comm_bytes_per_step"), want);
    if (!(csv_num(&c, "tp_comm_ms") > 0)) fail_msg("tp_comm_ms is '%s'", csv_get(&c, "tp_comm_ms"));
    if (!(csv_num(&c, "comm_ms") > 0)) fail_msg("comm_ms is '%s'", csv_get(&c, "comm_ms"));
    expect_phases_add_up(&c);
    csv_free(&c);
}

/* A run of each rank count and optimizer; AdamW's bound (judged normwise
 * per tensor after step 3, harness/verify_err.h): the sums split over the
 * ranks' hidden units round otherwise than single's one GEMM, and AdamW
 * scales a small gradient's rounding up to part of a step of lr (SGD after
 * 10 steps: 2e-7); on gpt-xs 3.2e-4 (its QKV bias, below) */
static void check_matches(void **state, char *const shape[], double adamw_tol)
{
    static const char *const opts[] = {"sgd", "adamw"};
    for (int n = 2; n <= 4; n += 2)
        for (int o = 0; o < 2; o++) {
            char *extra[24];
            int k = 0;
            for (int i = 0; shape[i]; i++) extra[k++] = shape[i];
            extra[k++] = "--verify";
            extra[k++] = "--optimizer";
            extra[k++] = (char *)opts[o];
            extra[k] = NULL;
            bench_run *r = keep(state, run_tp(n, extra, NULL));
            check_row(r, n, o == 0 ? 1e-5 : adamw_tol);
        }
}

static void test_mlp_odd_layers_match_single(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *shape[] = {"--workload", "mlp-xs", "--iters", "10", NULL};
    check_matches(state, shape, 1e-5);
}

static void test_mlp_even_layers_match_single(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *shape[] = {"--workload", "mlp-xs", "--layers", "4", "--iters", "10", NULL};
    check_matches(state, shape, 1e-5);
}

/* The key projection's bias has a zero gradient in exact arithmetic
 * (softmax ignores a shift shared by a query's scores), so AdamW moves it
 * by its rounding noise, whose sign any other order of sums flips: it
 * drifts from single's with every step, whatever the strategy. Elementwise
 * after step 10 that was 6.1e-3 on 4 ranks, beyond the old 5e-3 (the test
 * ran 5 steps); normwise, the QKV bias as a whole, it is 3.2e-4 after step
 * 3 and 3.7e-4 after 10. */
static void test_gpt_matches_single(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *shape[] = {"--workload", "gpt-xs", "--iters", "10", NULL};
    check_matches(state, shape, 1e-3);
}

/* --verify judged before the last step: the parameters are gathered from
 * every rank in the middle of the run, then again for --dump's final ones;
 * every rank's loader filled the whole batch of every step */
static void test_gather_mid_run_and_whole_batches(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *extra[] = {"--workload", "mlp-xs", "--iters", "12", "--verify", NULL};
    char *env[] = {"PB_TEST_LOADER_STATS=1", NULL};
    bench_run *r = keep(state, run_tp(2, extra, env));
    check_row(r, 2, 1e-5);
    expect_mlp_xs_loader_filled(r, 2, 12 * 64); /* 12 steps of 64 rows */
}

/* A rank stuck in forward (PB_FAULT, test-only) holds the others in
 * their first all-reduce: within --timeout they fail, naming it, its phase
 * and step; the row is failed */
static void test_hung_rank_named(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *extra[] = {"--workload", "mlp-xs", "--iters", "10", "--timeout", "3", NULL};
    char *env[] = {"PB_FAULT=rank=1,step=3,phase=fwd,kind=hang", NULL};
    bench_run *r = keep(state, run_tp(2, extra, env));
    static const char *const says[] = {"tp step 3: rank 0 of 2 on ", "did not complete within 3 s (--timeout): ",
                                       ") is stuck in phase fwd of step 3"};
    expect_hung_rank_named(r, 1, says, sizeof says / sizeof *says);
}

/* What does not split: exit 2, one line naming it, nothing written */
static void expect_refused(void **state, char *const extra[], const char *says)
{
    bench_run *r = keep(state, run_tp(3, extra, NULL));
    expect_exit(r, 2);
    if (!strstr(r->res.err, says) || count_lines(r->res.err) != 1) fail_msg("stderr:\n%s", r->res.err);
    assert_false(file_exists(r->csv_path));
}

static void test_shapes_that_do_not_split(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    char *heads[] = {"--workload", "gpt-xs", NULL};
    expect_refused(state, heads, "--heads 4 is not divisible by --gpus 3");
    char *hidden[] = {"--workload", "mlp-xs", NULL};
    expect_refused(state, hidden, "--hidden 256 is not divisible by --gpus 3");
}

/* docs/strategies.md, "Sequence parallel": per step, over T ranks, a ring
 * reduce-scatter or all-gather of a whole b*s*h fp32 buffer S moving S
 * (T-1)/T: 4L reduce-scatters (2 a block forward, 2 backward), 4L + 1
 * all-gathers (the same and the head's input, the top block's backward one
 * not needed, the embedding's backward one added), and 2L all-reduces of
 * a LayerNorm's 2h weight and bias gradients */
static void expect_sp_volume(const csv *c, int n)
{
    double L = csv_num(c, "layers"), h = csv_num(c, "d_model"), f = (n - 1.0) / n;
    double S = csv_num(c, "batch_global") * csv_num(c, "seq") * h * 4.0;
    const struct {
        const char *col;
        double want;
    } kinds[] = {{"reduce_scatter_bytes_per_step", 4.0 * L * S * f},
                 {"allgather_bytes_per_step", (4.0 * L + 1.0) * S * f},
                 {"allreduce_bytes_per_step", 2.0 * L * 2.0 * f * 2.0 * h * 4.0},
                 /* the payloads: each collective's whole buffer */
                 {"comm_bytes_per_step", (8.0 * L + 1.0) * S + 2.0 * L * 2.0 * h * 4.0}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        double got = csv_num(c, kinds[k].col);
        if (!(fabs(got - kinds[k].want) <= 1e-9 * kinds[k].want))
            fail_msg("tp %d ranks --sequence-parallel: %s is '%s', the formula %.0f", n, kinds[k].col,
                     csv_get(c, kinds[k].col), kinds[k].want);
    }
}

/* Megatron's sequence parallelism on gpt-xs (L 2, s 32, h 64, b 8), 2 and
 * 4 ranks, SGD and AdamW: single's training within the bounds plain tp
 * keeps (AdamW: the QKV bias, test_gpt_matches_single), the volume by kind,
 * the row saying it is on, tp_comm timed and the phases adding up */
static void test_gpt_sequence_parallel_matches_single(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    static const char *const opts[] = {"sgd", "adamw"};
    for (int n = 2; n <= 4; n += 2)
        for (int o = 0; o < 2; o++) {
            char *extra[] = {"--workload", "gpt-xs", "--sequence-parallel", "--iters", "10", "--verify",
                             "--optimizer", (char *)opts[o], NULL};
            bench_run *r = keep(state, run_tp(n, extra, NULL));
            expect_exit(r, 0);
            csv c;
            csv_load(&c, r->csv_path);
            assert_int_equal(c.rows, 1);
            assert_string_equal(csv_get(&c, "status"), "ok");
            assert_string_equal(csv_get(&c, "sequence_parallel"), "1");
            double err = csv_num(&c, "verify_max_rel_err"), tol = o == 0 ? 1e-5 : 1e-3;
            if (!(err <= tol))
                fail_msg("tp %d --sequence-parallel %s: max relative error %g vs single, allowed %g", n, opts[o], err,
                         tol);
            expect_sp_volume(&c, n);
            if (!(csv_num(&c, "tp_comm_ms") > 0)) fail_msg("tp_comm_ms is '%s'", csv_get(&c, "tp_comm_ms"));
            expect_phases_add_up(&c);
            csv_free(&c);
        }
}

/* --sequence-parallel where it has no meaning: exit 2, one line naming
 * the problem, nothing written */
static void test_sequence_parallel_refused(void **state)
{
    if (!PB_EXPECT_MPI) skip();
    static const struct {
        const char *strategy;
        int gpus;
        char *extra[8];
        const char *says;
    } cases[] = {
        {"tp", 2, {"--workload", "mlp-xs"}, "--sequence-parallel: the mlp workload has no sequence to split"},
        {"tp", 1, {"--workload", "gpt-xs"}, "--sequence-parallel needs tensor-parallel ranks to split the tokens over; "
                                             "allowed: --gpus 2 or more"},
        {"mesh", 2, {"--workload", "gpt-xs", "--dp", "2", "--tp", "1"}, "allowed: --tp 2 or more"},
        {"tp", 3, {"--workload", "gpt-xs", "--heads", "6", "--d-model", "96"},
         "--sequence-parallel: --seq 32 is not divisible by --gpus 3"},
        {"ddp", 2, {"--workload", "gpt-xs"}, "--sequence-parallel applies to --strategy tp,mesh, not ddp"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *extra[12];
        int k = 0;
        for (int j = 0; cases[i].extra[j]; j++) extra[k++] = cases[i].extra[j];
        extra[k++] = "--sequence-parallel";
        extra[k] = NULL;
        bench_run *r = keep(state, run_strategy_on(cases[i].strategy, cases[i].gpus, extra, NULL));
        expect_exit(r, 2);
        if (!strstr(r->res.err, cases[i].says) || count_lines(r->res.err) != 1)
            fail_msg("%s --gpus %d: stderr:\n%s", cases[i].strategy, cases[i].gpus, r->res.err);
        assert_false(file_exists(r->csv_path));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mlp_odd_layers_match_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_mlp_even_layers_match_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_gpt_matches_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_gather_mid_run_and_whole_batches, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_hung_rank_named, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_shapes_that_do_not_split, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_gpt_sequence_parallel_matches_single, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_sequence_parallel_refused, run_setup, run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
