/* Strategy zero through ./bench on the cpu backend (re-executed under
 * mpirun, oversubscribed as ddp's tests are): stages 1, 2 and 3 train as
 * single does (--verify) on 2, 3 and 4 ranks, on mlp-xs and gpt-xs (its
 * tied LM head), with SGD and AdamW and weight decay (applied per tensor
 * over the shards); one bucket per block and --no-overlap too; the row
 * carries zero_stage, the reduce_scatter and allgather phases inside comm,
 * and per-kind communication volumes equal to docs/strategies.md's
 * formulas, as does ddp's all-reduce; bench sweep's zero2 is zero at stage
 * 2; --zero-stage outside 1..3 or with
 * another strategy is a usage error (exit 2, no row). */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>

#include "tests/common/preset_model.h"

/* bench --strategy S --backend cpu --workload W --gpus N --iters 4
 * --warmup 0 --threads 1 --quiet --out DIR/r.csv [extra...] */
static bench_run *run_strategy(void **state, const char *strategy, const char *workload, int gpus,
                               char *const extra[])
{
    bench_run *r = keep(state, bench_run_new());
    char g[16];
    snprintf(g, sizeof g, "%d", gpus);
    char *args[48] = {"--strategy", (char *)strategy, "--backend", "cpu", "--workload", (char *)workload,
                      "--gpus", g, "--iters", "4", "--warmup", "0", "--threads", "1", "--quiet",
                      "--out", r->csv_path};
    int n = 17;
    for (int i = 0; extra && extra[i] && n < 47; i++) args[n++] = extra[i];
    args[n] = NULL;
    run_bench(&r->res, args);
    return r;
}

#if PB_EXPECT_MPI
/* docs/strategies.md, "Communication volume": a rank's chunk of a block
 * is ceil(len / N); reduce-scatter and all-gather each send (N - 1)
 * chunks per block, padding included */
static double zero_one_pass_bytes(const pb_model *m, int n)
{
    double chunks = 0;
    for (int b = 0; b < m->n_blocks; b++) chunks += (double)((m->block[b].p_len + (size_t)n - 1) / (size_t)n);
    return (double)(n - 1) * chunks * 4.0;
}

static void expect_num(const csv *c, const char *col, double want)
{
    double got = csv_num(c, col);
    if (!(fabs(got - want) <= 1e-9 * (fabs(want) + 1)))
        fail_msg("%s is '%s', the formula gives %.17g", col, csv_get(c, col), want);
}

/* One run of zero with --verify: exit 0, one ok row within tolerance,
 * and its columns */
static void check_zero(void **state, int stage, int ranks, const char *workload, const char *optimizer,
                       const char *bucket_mb)
{
    char st[12]; /* any int: gcc -fsanitize reads "%d" as unbounded (-Wformat-truncation) */
    snprintf(st, sizeof st, "%d", stage);
    char *extra[] = {"--zero-stage", st, "--verify", "--optimizer", (char *)optimizer, "--weight-decay", "0.05",
                     bucket_mb ? "--bucket-mb" : NULL, (char *)bucket_mb, NULL};
    bench_run *r = run_strategy(state, "zero", workload, ranks, extra);
    if (r->res.exit_code != 0) fail_msg("zero %d on %d ranks, %s %s: exit %d\n%s", stage, ranks, workload, optimizer,
                                   r->res.exit_code, r->res.err);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "ok");
    assert_string_equal(csv_get(&c, "comm"), "mpi");
    assert_int_equal((int)csv_num(&c, "zero_stage"), stage);
    assert_int_equal((int)csv_num(&c, "ranks"), ranks);
    /* SGD: fp32 summation order only; AdamW on a GPT: the run's own bound,
     * normwise per tensor after step 3 (a zero gradient's rounding flips
     * updates of the key bias; zero 2 on 3 ranks: 2.7e-4) */
    bool loose = strcmp(optimizer, "adamw") == 0 && strcmp(workload, "gpt-xs") == 0;
    double err = csv_num(&c, "verify_max_rel_err"), tol = loose ? 1e-3 : 1e-4;
    if (!(err < tol)) fail_msg("zero %d on %d ranks, %s %s: error %g vs single, tolerance %g", stage, ranks, workload,
                               optimizer, err, tol);
    /* the collectives' time by kind, inside comm (which adds the loss's) */
    double rs = csv_num(&c, "reduce_scatter_ms"), ag = csv_num(&c, "allgather_ms"), comm = csv_num(&c, "comm_ms");
    if (!(rs > 0 && ag > 0 && comm >= (rs + ag) * (1 - 1e-5)))
        fail_msg("reduce_scatter_ms %g, allgather_ms %g, comm_ms %g", rs, ag, comm);
    double overlap = csv_num(&c, "overlap_pct");
    assert_true(overlap >= 0 && overlap <= 100);
    pb_model m;
    preset_model_of(workload, &m);
    double one = zero_one_pass_bytes(&m, ranks);
    expect_num(&c, "reduce_scatter_bytes_per_step", one);
    /* stage 3 gathers every block before forward and before backward, but
     * the last block once: its backward reuses forward's gather */
    double last = (double)(ranks - 1) * (double)((m.block[m.n_blocks - 1].p_len + (size_t)ranks - 1) / (size_t)ranks) * 4.0;
    expect_num(&c, "allgather_bytes_per_step", stage == 3 ? 2 * one - last : one);
    assert_string_equal(csv_get(&c, "allreduce_bytes_per_step"), "");
    assert_string_equal(csv_get(&c, "p2p_bytes_per_step"), "");
    csv_free(&c);
}

/* Every stage on 2, 3 and 4 ranks; each stage on both workloads and both
 * optimizers */
static void test_stage1(void **state)
{
    check_zero(state, 1, 2, "mlp-xs", "sgd", NULL);
    check_zero(state, 1, 3, "gpt-xs", "adamw", NULL);
    check_zero(state, 1, 4, "mlp-xs", "adamw", NULL);
    check_zero(state, 1, 2, "gpt-xs", "sgd", NULL);
}

/* Stages 1/2 leave each step's all-gathers in flight: the next forward
 * waits for them, so the first step waits for none (its allgather_ms is
 * exactly 0: its own gathers are counted in step 1) */
static void test_gathers_overlap_next_step(void **state)
{
    char steps[300];
    bench_run *r = keep(state, bench_run_new());
    snprintf(steps, sizeof steps, "%s/steps.csv", r->dir);
    char *args[] = {"--strategy", "zero", "--zero-stage", "1", "--backend", "cpu", "--workload", "mlp-xs",
                    "--gpus", "2", "--iters", "4", "--warmup", "0", "--threads", "1", "--quiet",
                    "--out", r->csv_path, "--steps-out", steps, NULL};
    run_bench(&r->res, args);
    if (r->res.exit_code != 0) fail_msg("exit %d\n%s", r->res.exit_code, r->res.err);
    csv c;
    csv_load(&c, steps);
    assert_int_equal(c.rows, 8); /* 2 ranks x 4 steps */
    for (size_t i = 0; i < (size_t)c.rows; i++) {
        double ag = atof(csv_field(&c, i, "allgather_ms"));
        if (atoi(csv_field(&c, i, "step")) == 0 && ag != 0)
            fail_msg("rank %s waited %g ms for gathers in its first step", csv_field(&c, i, "rank"), ag);
    }
    csv_free(&c);
}

static void test_stage2(void **state)
{
    check_zero(state, 2, 2, "gpt-xs", "adamw", NULL);
    check_zero(state, 2, 3, "mlp-xs", "sgd", NULL);
    check_zero(state, 2, 4, "gpt-xs", "sgd", NULL);
    check_zero(state, 2, 2, "mlp-xs", "adamw", NULL);
}

static void test_stage3(void **state)
{
    check_zero(state, 3, 2, "mlp-xs", "adamw", NULL);
    check_zero(state, 3, 3, "gpt-xs", "sgd", NULL);
    check_zero(state, 3, 4, "gpt-xs", "adamw", NULL);
    check_zero(state, 3, 4, "mlp-xs", "sgd", NULL);
}

/* Buckets of one block each: the gradient pool of stages 2 and 3 recycles
 * buffers while reduce-scatters are in flight, and GPT's tied head is held
 * back to block 0 */
static void test_small_buckets(void **state)
{
    check_zero(state, 2, 3, "gpt-xs", "sgd", "0.001");
    check_zero(state, 3, 2, "mlp-xs", "sgd", "0.001");
}

/* --no-overlap: every reduce-scatter after backward; the same training */
static void test_no_overlap(void **state)
{
    char *extra[] = {"--zero-stage", "2", "--verify", "--no-overlap", NULL};
    bench_run *r = run_strategy(state, "zero", "mlp-xs", 2, extra);
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_true(csv_num(&c, "verify_max_rel_err") < 1e-4);
    assert_string_equal(csv_get(&c, "no_overlap"), "1");
    assert_string_equal(csv_get(&c, "bucket_mb"), "");
    csv_free(&c);
}

/* ddp's all-reduce volume is 2 P (N-1)/N floats of 4 bytes a rank */
static void test_ddp_allreduce_bytes(void **state)
{
    bench_run *r = run_strategy(state, "ddp", "mlp-xs", 3, NULL);
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    double p = csv_num(&c, "params");
    expect_num(&c, "allreduce_bytes_per_step", 2.0 * p * 2.0 / 3.0 * 4.0);
    assert_string_equal(csv_get(&c, "reduce_scatter_bytes_per_step"), "");
    assert_string_equal(csv_get(&c, "allgather_bytes_per_step"), "");
    assert_string_equal(csv_get(&c, "zero_stage"), "");
    csv_free(&c);
}

/* bench sweep --strategies zero2 runs zero at --zero-stage 2 */
static void test_sweep_stage_names(void **state)
{
    bench_run *r = keep(state, bench_run_new());
    char *args[] = {"sweep", "--strategies", "zero2", "--gpus", "2", "--workload", "mlp-xs", "--iters", "1",
                    "--warmup", "0", "--threads", "1", "--quiet", "--out", r->csv_path, NULL};
    run_bench(&r->res, args);
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "strategy"), "zero");
    assert_string_equal(csv_get(&c, "zero_stage"), "2");
    assert_string_equal(csv_get(&c, "status"), "ok");
    csv_free(&c);
}
#endif

/* --zero-stage outside 1..3, or with another strategy: exit 2 before any
 * run, one line naming what is allowed, no row */
static void test_usage_errors(void **state)
{
    char *bad[] = {"--zero-stage", "4", NULL};
    bench_run *r = run_strategy(state, "zero", "mlp-xs", 2, bad);
    expect_exit(r, 2);
    assert_non_null(strstr(r->res.err, "allowed: 1 to 3"));
    assert_false(file_exists(r->csv_path));
    char *other[] = {"--zero-stage", "2", NULL};
    r = run_strategy(state, "ddp", "mlp-xs", 2, other);
    expect_exit(r, 2);
    assert_non_null(strstr(r->res.err, "--zero-stage applies to --strategy zero,mesh, not ddp"));
    assert_false(file_exists(r->csv_path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#if PB_EXPECT_MPI
        cmocka_unit_test_setup_teardown(test_stage1, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_gathers_overlap_next_step, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_stage2, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_stage3, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_small_buckets, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_no_overlap, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_ddp_allreduce_bytes, run_setup, run_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_stage_names, run_setup, run_teardown),
#endif
        cmocka_unit_test_setup_teardown(test_usage_errors, run_setup, run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
