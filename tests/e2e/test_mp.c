/* Strategy mp through ./bench (CPU backend): the layer split with and without
 * GPipe microbatches trains exactly what `single` trains (--verify) on 2, 3
 * and 4 devices with SGD and AdamW, an uneven --split too, and with many
 * microbatches (far more messages than the comm holds outstanding per pair);
 * usage errors are one line with exit 2; the row reports microbatches, the
 * theoretical and measured bubble, p2p time, and phases that add up to the
 * step, and `p2p` none (the cpu has no device links). --schedule 1f1b
 * trains what `single` trains on 2 and 4 stages with 4 and 8 microbatches
 * on the MLP and gpt-xs, holds less memory than GPipe at the same m, and
 * the row's p2p_bytes_per_step is docs/strategies.md's 2 B w e. The stages'
 * spans in process (pb_mp_trace, 1F1B's order): tests/unit/test_mp_lib.c. */
#include "tests/common/test_csv.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>

#include "harness/config.h"
#include "kernels/comm_local.h"
#include "strategies/strategy.h"
#include "workloads/mlp.h"

/* One mp run on a custom MLP; extra args NULL-terminated. Leaves the row in
 * c (the caller frees c->text) and returns the exit code. */
static int run_mp(csv *c, bench_result *r, int layers, int batch, int gpus, int micro, const char *opt,
                  char *const extra[])
{
    char *dir = make_temp_dir();
    char out[512], s_layers[16], s_batch[16], s_gpus[16], s_micro[16], s_opt[16];
    snprintf(out, sizeof out, "%s/r.csv", dir);
    snprintf(s_layers, sizeof s_layers, "%d", layers);
    snprintf(s_batch, sizeof s_batch, "%d", batch);
    snprintf(s_gpus, sizeof s_gpus, "%d", gpus);
    snprintf(s_micro, sizeof s_micro, "%d", micro);
    snprintf(s_opt, sizeof s_opt, "%s", opt);
    char *args[64] = {"--strategy", "mp", "--backend", "cpu", "--workload", "custom", "--in", "256",
                      "--hidden", "256", "--classes", "10", "--layers", s_layers, "--batch", s_batch,
                      "--gpus", s_gpus, "--microbatches", s_micro, "--optimizer", s_opt,
                      "--threads", "1", "--iters", "10", "--warmup", "1", "--verify", "--quiet",
                      "--out", out};
    int n = 32;
    for (int i = 0; extra && extra[i] && n < 63; i++) args[n++] = extra[i];
    args[n] = NULL;
    run_bench(r, args);
    memset(c, 0, sizeof *c);
    if (file_exists(out)) csv_load(c, out);
    remove_temp_dir(dir);
    return r->exit_code;
}

static bench_result res;

/* every device count, M = 1 and 4, both optimizers: --verify passes */
static void check_matches_single(const char *opt)
{
    for (int gpus = 2; gpus <= 4; gpus++) {
        for (int micro = 1; micro <= 4; micro += 3) {
            /* 4 layers so 4 stages fit; the batch divisible by the devices
             * (the harness's rule) and by the microbatches */
            int batch = gpus == 3 ? 96 : 64;
            csv c;
            int rc = run_mp(&c, &res, 4, batch, gpus, micro, opt, NULL);
            if (rc != 0) fail_msg("mp --gpus %d --microbatches %d --optimizer %s: exit %d: %s", gpus, micro, opt, rc, res.err);
            assert_int_equal(c.rows, 1);
            assert_string_equal(csv_get(&c, "status"), "ok");
            assert_string_equal(csv_get(&c, "strategy"), "mp");
            double err = csv_num(&c, "verify_max_rel_err");
            if (!(err < 1e-4)) fail_msg("--gpus %d --microbatches %d %s: verify error %g", gpus, micro, opt, err);
            csv_free(&c);
        }
    }
}

static void test_matches_single_sgd(void **state)
{
    (void)state;
    check_matches_single("sgd");
}

static void test_matches_single_adamw(void **state)
{
    (void)state;
    check_matches_single("adamw");
}

/* stages of 1, 3 and 1 layers */
static void test_uneven_split(void **state)
{
    (void)state;
    char *extra[] = {"--split", "1,4", NULL};
    for (int micro = 1; micro <= 2; micro++) {
        csv c;
        int rc = run_mp(&c, &res, 5, 48, 3, micro, "sgd", extra);
        if (rc != 0) fail_msg("--split 1,4: exit %d: %s", rc, res.err);
        assert_string_equal(csv_get(&c, "status"), "ok");
        assert_true(csv_num(&c, "verify_max_rel_err") < 1e-4);
        csv_free(&c);
    }
}

/* docs/strategies.md: what crosses one boundary per step, 2 B w e bytes
 * (w: the boundary's activation per sample, e: 4 on the cpu) */
static void expect_p2p_bytes(const csv *c, double w)
{
    double want = 2.0 * csv_num(c, "batch_global") * w * 4.0, got = csv_num(c, "p2p_bytes_per_step");
    if (got != want) fail_msg("p2p_bytes_per_step %.0f, expected 2 B w e = %.0f", got, want);
}

/* The row: microbatches, GPipe's theoretical bubble, a measured bubble, p2p
 * time, and phases that tile the step. */
static void test_row(void **state)
{
    (void)state;
    static const int cases[][2] = {{2, 1}, {2, 4}, {4, 4}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int p = cases[k][0], m = cases[k][1];
        csv c;
        assert_int_equal(run_mp(&c, &res, 4, 64, p, m, "sgd", NULL), 0);
        assert_int_equal((int)csv_num(&c, "microbatches"), m);
        assert_string_equal(csv_get(&c, "comm"), "local");
        assert_string_equal(csv_get(&c, "p2p"), "none");
        assert_int_equal((int)csv_num(&c, "devices"), p);
        double theory = (p - 1.0) / (m + p - 1.0);
        assert_true(fabs(csv_num(&c, "bubble_frac_theory") - theory) < 1e-6 * theory);
        assert_true(csv_num(&c, "p2p_ms") > 0.0);
        double frac = csv_num(&c, "bubble_frac");
        assert_true(frac >= 0.0 && frac <= 1.0);
        assert_true(csv_num(&c, "bubble_ms") >= 0.0);
        /* the replay has the run's busy times and waits no more than the
         * run did: its bubble is at most the measured one */
        double replay = csv_num(&c, "bubble_frac_replay");
        if (!(replay >= 0.0 && replay <= frac + 1e-9))
            fail_msg("p %d m %d: bubble_frac_replay %g, expected in [0, bubble_frac %g]", p, m, replay, frac);
        assert_string_equal(csv_get(&c, "schedule"), "gpipe"); /* the default */
        expect_p2p_bytes(&c, 256);
        expect_phases_add_up(&c);
        csv_free(&c);
    }
}

/* One mp run of a custom shape (args: flags after --strategy mp --backend
 * cpu --threads 1 --warmup 0 --quiet --out), which must succeed; its row
 * in c (the caller frees it). */
static void run_mp_ok(csv *c, char *const args[])
{
    char *dir = make_temp_dir();
    char out[512];
    snprintf(out, sizeof out, "%s/r.csv", dir);
    char *argv[64] = {"--strategy", "mp", "--backend", "cpu", "--threads", "1", "--warmup", "0", "--quiet",
                      "--out", out};
    int n = 11;
    for (int i = 0; args[i] && n < 63; i++) argv[n++] = args[i];
    argv[n] = NULL;
    run_bench(&res, argv);
    if (res.exit_code != 0) fail_msg("exit %d: %s", res.exit_code, res.err);
    csv_load(c, out);
    remove_temp_dir(dir);
}

/* The balanced split's boundaries themselves (the row's stage_layers:
 * layers per stage), where --verify cannot see them: equal FLOPs per stage
 * with uniform layers (8 on 4 devices: 2 each; on 3: the boundaries closest
 * to 1/3 and 2/3 of the FLOPs), a heavy first or last layer on a stage of
 * its own, and --split as given. The heavy layer's stage also holds the
 * most memory: peak_mem_mb is the largest over the stages, and
 * peak_mem_mb_dev0 stage 0's. */
static void test_stage_boundaries(void **state)
{
    (void)state;
    /* dev0_most: 1 stage 0 holds the most memory, -1 another stage, 0 not checked */
    static const struct {
        const char *in, *classes, *layers, *gpus, *split, *want;
        int dev0_most;
    } cases[] = {
        {"64", "64", "8", "4", NULL, "2+2+2+2", 0},
        {"64", "64", "8", "3", NULL, "3+2+3", 0},
        {"4096", "64", "4", "2", NULL, "1+3", 1},  /* layer 0: 64x the FLOPs of the others */
        {"64", "4096", "4", "2", NULL, "3+1", -1}, /* the last layer likewise */
        {"4096", "64", "4", "2", "3", "3+1", 0},   /* --split wins over balance */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *args[] = {"--in", (char *)cases[k].in, "--hidden", "64", "--classes", (char *)cases[k].classes,
                        "--layers", (char *)cases[k].layers, "--gpus", (char *)cases[k].gpus, "--batch", "12",
                        "--iters", "1", cases[k].split ? "--split" : NULL, (char *)cases[k].split, NULL};
        csv c;
        run_mp_ok(&c, args);
        if (strcmp(csv_get(&c, "stage_layers"), cases[k].want) != 0)
            fail_msg("--in %s --classes %s --layers %s --gpus %s%s%s: stage_layers '%s', expected '%s'", cases[k].in,
                     cases[k].classes, cases[k].layers, cases[k].gpus, cases[k].split ? " --split " : "",
                     cases[k].split ? cases[k].split : "", csv_get(&c, "stage_layers"), cases[k].want);
        double peak = csv_num(&c, "peak_mem_mb"), dev0 = csv_num(&c, "peak_mem_mb_dev0");
        if (cases[k].dev0_most && !(dev0 > 0 && (cases[k].dev0_most > 0 ? peak == dev0 : peak > dev0)))
            fail_msg("stage_layers %s: peak_mem_mb %g, peak_mem_mb_dev0 %g: expected stage %s to hold the most",
                     cases[k].want, peak, dev0, cases[k].dev0_most > 0 ? "0" : "1");
        csv_free(&c);
    }
}

/* Work timed in no span shows as bubble: with 2 stages and 1 microbatch
 * the stages run one after the other, so the bubble is half the step
 * (GPipe's (p-1)/(m+p-1)), measured 0.506. The shape's loss (100000
 * classes of 16 features) is about a third of the step: left out of the
 * last stage's span it raised the bubble to 0.67. */
static void test_spans_cover_large_loss(void **state)
{
    (void)state;
    char *args[] = {PB_TEST_LARGE_LOSS_SHAPE, "--gpus", "2", "--iters", "10", NULL};
    /* A loaded machine only adds idle time (a stage thread waits for a
     * core), never removes it, so the closest of up to three runs is judged:
     * work timed outside a span raises every run's fraction (0.67 here). */
    double frac = NAN, theory = NAN;
    for (int tries = 0; tries < 3 && !(fabs(frac - theory) <= 0.08); tries++) {
        csv c;
        run_mp_ok(&c, args);
        double f = csv_num(&c, "bubble_frac");
        theory = csv_num(&c, "bubble_frac_theory");
        if (isnan(frac) || fabs(f - theory) < fabs(frac - theory)) frac = f;
        csv_free(&c);
    }
    if (!(fabs(frac - theory) <= 0.08))
        fail_msg("bubble_frac %g on 2 stages, 1 microbatch (closest of 3 runs); expected %g (within 0.08)", frac,
                 theory);
}

/* More microbatches than the local comm holds outstanding per ring (16 per
 * (sender, receiver) pair) several times over: forward sends stay pending
 * through the backward, and requests are waited for out of posting order. */
static void test_many_microbatches(void **state)
{
    (void)state;
    /* {p, m, 1f1b} */
    static const int cases[][3] = {{3, 41, 0}, {2, 65, 0}, {3, 41, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int p = cases[k][0], m = cases[k][1];
        char *sched[] = {"--schedule", "1f1b", NULL};
        csv c;
        int rc = run_mp(&c, &res, 3, 2 * m, p, m, "sgd", cases[k][2] ? sched : NULL);
        if (rc != 0) fail_msg("--gpus %d --microbatches %d: exit %d: %s", p, m, rc, res.err);
        assert_string_equal(csv_get(&c, "status"), "ok");
        double err = csv_num(&c, "verify_max_rel_err");
        if (!(err < 1e-4)) fail_msg("--gpus %d --microbatches %d: verify error %g", p, m, err);
        csv_free(&c);
    }
}

/* 1F1B on 2 and 4 stages with 4 and 8 microbatches trains what `single`
 * trains, on the MLP (4 layers of 256) and gpt-xs (4 blocks) */
static void test_1f1b_matches_single(void **state)
{
    (void)state;
    char *sched[] = {"--schedule", "1f1b", NULL};
    for (int gpus = 2; gpus <= 4; gpus += 2) {
        for (int micro = 4; micro <= 8; micro += 4) {
            csv c;
            int rc = run_mp(&c, &res, 4, 64, gpus, micro, "sgd", sched);
            if (rc != 0) fail_msg("mlp 1f1b --gpus %d --microbatches %d: exit %d: %s", gpus, micro, rc, res.err);
            assert_string_equal(csv_get(&c, "schedule"), "1f1b");
            double err = csv_num(&c, "verify_max_rel_err");
            if (!(err < 1e-4)) fail_msg("mlp 1f1b --gpus %d --microbatches %d: verify error %g", gpus, micro, err);
            double theory = (gpus - 1.0) / (micro + gpus - 1.0);
            assert_true(fabs(csv_num(&c, "bubble_frac_theory") - theory) < 1e-6 * theory);
            expect_p2p_bytes(&c, 256);
            expect_phases_add_up(&c);
            csv_free(&c);

            char g[8], m[8];
            snprintf(g, sizeof g, "%d", gpus);
            snprintf(m, sizeof m, "%d", micro);
            char *args[] = {"--workload", "gpt-xs", "--gpus", g, "--microbatches", m, "--schedule", "1f1b",
                            "--iters", "10", "--verify", NULL};
            run_mp_ok(&c, args);
            assert_string_equal(csv_get(&c, "status"), "ok");
            assert_true(csv_num(&c, "verify_max_rel_err") >= 0.0);
            expect_p2p_bytes(&c, csv_num(&c, "seq") * csv_num(&c, "d_model"));
            csv_free(&c);
        }
    }
}

/* At p = 2, m = 8, 1F1B keeps 2 and 1 microbatches' activations where
 * GPipe keeps 8 on each stage: the largest stage's peak (the backend's
 * count) is lower, on both workloads; the row says the schedule. */
static void test_1f1b_less_memory(void **state)
{
    (void)state;
    static const char *const workloads[] = {"mlp-xs", "gpt-xs"};
    for (size_t w = 0; w < 2; w++) {
        double peak[2], dev0[2];
        for (int k = 0; k < 2; k++) {
            const char *sched = k ? "1f1b" : "gpipe";
            char *args[] = {"--workload", (char *)workloads[w], "--gpus", "2", "--microbatches", "8", "--schedule",
                            (char *)sched, "--batch", "16", "--iters", "1", NULL};
            csv c;
            run_mp_ok(&c, args);
            assert_string_equal(csv_get(&c, "schedule"), sched);
            peak[k] = csv_num(&c, "peak_mem_mb");
            dev0[k] = csv_num(&c, "peak_mem_mb_dev0");
            csv_free(&c);
        }
        if (!(peak[1] < peak[0] && dev0[1] < dev0[0]))
            fail_msg("%s, 2 stages, 8 microbatches: 1f1b peak %g MB (stage 0 %g), gpipe %g (%g): expected 1f1b's "
                     "lower",
                     workloads[w], peak[1], dev0[1], peak[0], dev0[0]);
    }
}

/* a usage error: exit 2, one line on stderr naming what is wrong, no row */
static void expect_usage(int layers, int batch, int gpus, int micro, char *const extra[], const char *want1,
                         const char *want2)
{
    csv c;
    int rc = run_mp(&c, &res, layers, batch, gpus, micro, "sgd", extra);
    if (rc != 2) fail_msg("exit %d, expected 2: %s", rc, res.err);
    assert_int_equal(count_lines(res.err), 1);
    if (!strstr(res.err, want1) || !strstr(res.err, want2))
        fail_msg("stderr lacks '%s' / '%s': %s", want1, want2, res.err);
    assert_int_equal(c.rows, 0); /* no row written */
}

static void test_usage_errors(void **state)
{
    (void)state;
    expect_usage(4, 64, 2, 3, NULL, "--batch", "--microbatches");
    expect_usage(4, 64, 2, 3, NULL, "not divisible", "64");
    expect_usage(3, 64, 4, 1, NULL, "--gpus 4", "more stages than blocks (3");
    char *count[] = {"--split", "1,2", NULL};
    expect_usage(4, 64, 2, 1, count, "--split", "allowed");
    char *order[] = {"--split", "3,2", NULL};
    expect_usage(4, 48, 3, 1, order, "--split", "increasing");
    char *range[] = {"--split", "4", NULL};
    expect_usage(4, 64, 2, 1, range, "--split 4", "[1, 3]");
    expect_usage(4, 64, 1, 1, NULL, "--gpus 1", "at least 2");
    char *sched[] = {"--schedule", "zigzag", NULL};
    expect_usage(4, 64, 2, 4, sched, "--schedule: unknown 'zigzag'", "allowed: gpipe, 1f1b");
    /* a strategy without stages refuses it as it refuses --microbatches */
    char *dir = make_temp_dir(), out[512];
    snprintf(out, sizeof out, "%s/r.csv", dir);
    char *single[] = {"--strategy", "single", "--backend", "cpu", "--workload", "mlp-xs", "--schedule", "1f1b",
                      "--quiet", "--out", out, NULL};
    run_bench(&res, single);
    if (res.exit_code != 2 || count_lines(res.err) != 1 || !strstr(res.err, "--schedule applies to --strategy mp"))
        fail_msg("single --schedule 1f1b: exit %d, expected 2 and one line: %s", res.exit_code, res.err);
    assert_false(file_exists(out));
    remove_temp_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_single_sgd),
        cmocka_unit_test(test_matches_single_adamw),
        cmocka_unit_test(test_uneven_split),
        cmocka_unit_test(test_row),
        cmocka_unit_test(test_many_microbatches),
        cmocka_unit_test(test_stage_boundaries),
        cmocka_unit_test(test_spans_cover_large_loss),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_1f1b_matches_single),
        cmocka_unit_test(test_1f1b_less_memory),
    };
    return cmocka_run_group_tests_name("mp", tests, NULL, NULL);
}
