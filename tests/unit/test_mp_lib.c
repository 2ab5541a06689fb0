/* Strategy mp in process, through pb_mp_trace: a stage's waiting for its
 * neighbour is outside its p2p spans (it is bubble; p2p is the copy
 * alone), under both schedules; 1F1B runs each stage's forwards and
 * backwards in its order and holds at most p - stage microbatches in
 * flight. Strategy mp through ./bench is tests/e2e/test_mp.c. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "harness/config.h"
#include "kernels/comm_local.h"
#include "strategies/mp_replay.h"
#include "strategies/strategy.h"
#include "workloads/mlp.h"

/* The span of stage k's phase ph for microbatch mb (the first, in order). */
static const pb_mp_span *find_span(const pb_mp_span *sp, int n, int k, pb_phase ph, int mb)
{
    for (int i = 0; i < n; i++)
        if (sp[i].stage == k && sp[i].phase == ph && sp[i].mb == mb) return &sp[i];
    fail_msg("no %s span of stage %d for microbatch %d", pb_phase_name(ph), k, mb);
    return NULL;
}

/* An mp run in process on the cpu: p stages of a 4-layer MLP, m
 * microbatches, a schedule; its trace after `steps` steps into sp (at most
 * cap spans), their count returned. check runs after each step. */
typedef void (*trace_check)(const pb_mp_span *sp, int n, int p, int m, int step);

/* the run run_traced is checking, for checks that ask it more than its trace */
static void *traced_mp;

static void run_traced(int p, int m, pb_schedule sched, int steps, trace_check check)
{
    pb_config cfg;
    pb_config_defaults(&cfg);
    cfg.threads = 1;
    cfg.lr = 0.01;
    snprintf(cfg.backend, sizeof cfg.backend, "cpu");
    cfg.shape = (pb_shape){.in = 64, .hidden = 256, .layers = 4, .classes = 10, .batch = 8 * m};
    cfg.devices = p;
    cfg.microbatches = m;
    cfg.schedule = sched;
    cfg.warmup = 0;
    pb_layout layout;
    assert_int_equal(pb_mlp_layout(&cfg.shape, &layout), PB_OK);
    static pb_model model;
    assert_int_equal(pb_model_describe(&pb_workload_mlp, &cfg.shape, &model), PB_OK);
    float *params = malloc(layout.n_params * sizeof(float)), *proto = malloc((size_t)layout.classes * layout.in * 4),
          *x = malloc((size_t)cfg.shape.batch * layout.in * 4);
    int32_t *labels = malloc((size_t)cfg.shape.batch * 4);
    pb_mlp_init_params(&layout, cfg.seed, params);
    pb_data_prototypes(&layout, cfg.seed, proto);
    pb_strategy_ctx ctx = {.cfg = &cfg, .be = &pb_backend_cpu, .model = &model, .init_params = params,
                           .ranks = 1, .comm = &pb_comm_local};
    void *mp = NULL;
    assert_int_equal(pb_strategy_mp.init(&ctx, &mp), PB_OK);
    traced_mp = mp;
    enum { CAP = 512 };
    pb_mp_span *sp = malloc(CAP * sizeof *sp);
    int n = 0;
    for (int step = 0; step < steps; step++) {
        pb_data_fill(&layout, cfg.seed, step, 0, cfg.shape.batch, proto, x, labels);
        pb_batch batch = {.step = step, .count = cfg.shape.batch, .inputs = x, .targets = labels};
        pb_step_result r;
        assert_int_equal(pb_strategy_mp.step(mp, &batch, &r), PB_OK);
        assert_int_equal(pb_mp_trace(mp, sp, CAP, &n), PB_OK);
        assert_true(n < CAP);
        check(sp, n, p, m, step);
    }
    pb_strategy_mp.destroy(mp);
    free(sp), free(params), free(proto), free(x), free(labels);
}

/* every p2p span starts after the neighbour's span that produced its data
 * has ended (stages 0 and 1), so a stage's waiting shows as bubble, not
 * p2p (the cuda path keeps the same rule with recv_ready; tests/gpu checks
 * it there) */
static void check_wait_outside_p2p(const pb_mp_span *sp, int n, int p, int m, int step)
{
    (void)p;
    const double eps = 1e-3; /* ms: the marks' own clock reads */
    for (int j = 0; j < m; j++) {
        /* stage 1's activations of j: after stage 0's forward of j */
        const pb_mp_span *recv = find_span(sp, n, 1, PB_PHASE_P2P, j), *fwd = find_span(sp, n, 0, PB_PHASE_FWD, j);
        if (recv->start_ms < fwd->end_ms - eps)
            fail_msg("step %d: stage 1's p2p of microbatch %d starts at %.3f ms, before stage 0's forward of it "
                     "ends (%.3f ms): the wait is inside the p2p span",
                     step, j, recv->start_ms, fwd->end_ms);
        /* stage 0's gradients of j: after stage 1's backward of j */
        const pb_mp_span *back = find_span(sp, n, 1, PB_PHASE_BWD, j);
        const pb_mp_span *grecv = NULL;
        for (int i = 0; i < n; i++)
            if (sp[i].stage == 0 && sp[i].phase == PB_PHASE_P2P && sp[i].mb == j) grecv = &sp[i];
        assert_non_null(grecv);
        if (grecv->start_ms < back->end_ms - eps)
            fail_msg("step %d: stage 0's p2p of microbatch %d's gradients starts at %.3f ms, before stage 1's "
                     "backward of it ends (%.3f ms)",
                     step, j, grecv->start_ms, back->end_ms);
    }
}

/* 2 stages and 4 microbatches, both schedules. Fails when the wait is
 * moved inside the span (tried). */
static void test_wait_outside_p2p(void **state)
{
    (void)state;
    run_traced(2, 4, PB_SCHED_GPIPE, 3, check_wait_outside_p2p);
    run_traced(2, 4, PB_SCHED_1F1B, 3, check_wait_outside_p2p);
}

/* 1F1B's order on each stage s, from the stage's forward and backward
 * spans in the order it ran them: min(p - s - 1, m) warm-up forwards, then
 * forward and backward in turn, then the remaining backwards; forwards
 * and backwards each in microbatch order, and never more than p - s
 * microbatches forward but not yet back (reached when m allows). */
static void check_1f1b_order(const pb_mp_span *sp, int n, int p, int m, int step)
{
    for (int s = 0; s < p; s++) {
        int warm = p - s - 1 < m ? p - s - 1 : m;
        char want[256] = "", got[256] = "";
        size_t wl = 0, gl = 0;
        int f = 0, b = 0;
        for (int i = 0; i < warm; i++) wl += (size_t)snprintf(want + wl, sizeof want - wl, "F%d ", f++);
        while (b < m) {
            if (f < m) wl += (size_t)snprintf(want + wl, sizeof want - wl, "F%d ", f++);
            wl += (size_t)snprintf(want + wl, sizeof want - wl, "B%d ", b++);
        }
        int in_flight = 0, most = 0;
        double prev = -1.0;
        for (int i = 0; i < n; i++) {
            if (sp[i].stage != s || (sp[i].phase != PB_PHASE_FWD && sp[i].phase != PB_PHASE_BWD)) continue;
            bool fwd = sp[i].phase == PB_PHASE_FWD;
            gl += (size_t)snprintf(got + gl, sizeof got - gl, "%c%d ", fwd ? 'F' : 'B', sp[i].mb);
            in_flight += fwd ? 1 : -1;
            if (in_flight > most) most = in_flight;
            /* the log's order is the stage's order in time */
            assert_true(sp[i].start_ms >= prev - 1e-3);
            prev = sp[i].end_ms;
        }
        if (strcmp(want, got) != 0)
            fail_msg("step %d, p %d, m %d, stage %d ran\n  %s\nexpected 1F1B's\n  %s", step, p, m, s, got, want);
        int cap = p - s < m ? p - s : m;
        if (most != cap)
            fail_msg("step %d, p %d, m %d, stage %d: %d microbatches in flight at most, expected %d", step, p, m, s,
                     most, cap);
    }
}

static void test_1f1b_order(void **state)
{
    (void)state;
    static const int cases[][2] = {{2, 8}, {4, 8}, {4, 4}, {4, 2}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        run_traced(cases[k][0], cases[k][1], PB_SCHED_1F1B, 2, check_1f1b_order);
}

/* A stage's post wakes the stage it is for, and the host thread wakes only
 * when a stage comes back: at most p host wake-ups a step, and a stage's
 * waits return from their cond var at most once per message sent to it.
 * One cond var for all, broadcast per message, woke the host and every
 * waiting stage 2m(p-1) times a step, each wake-up taking a core from a
 * stage that computes. */
static void check_wakeups(const pb_mp_span *sp, int n, int p, int m, int step)
{
    (void)sp, (void)n;
    int host = 0, stage[PB_MAX_STAGES] = {0};
    assert_int_equal(pb_mp_wakeups(traced_mp, &host, stage, PB_MAX_STAGES), PB_OK);
    if (host > p)
        fail_msg("step %d, p %d, m %d: the host thread woke %d times, expected at most %d (once per stage back)", step,
                 p, m, host, p);
    for (int k = 0; k < p; k++) {
        int msgs = (k > 0 ? m : 0) + (k < p - 1 ? m : 0);
        if (stage[k] > msgs)
            fail_msg("step %d, p %d, m %d: stage %d's waits woke %d times, more than the %d messages sent to it", step,
                     p, m, k, stage[k], msgs);
    }
}

static void test_wakeups(void **state)
{
    (void)state;
    run_traced(4, 8, PB_SCHED_1F1B, 2, check_wakeups);
    run_traced(4, 8, PB_SCHED_GPIPE, 2, check_wakeups);
}

/* --- the replay (strategies/mp_replay.h) --------------------------------- */

/* Stage k's ops under a schedule, as mp runs them (docs/strategies.md):
 * GPipe every forward then every backward last first; 1F1B p-k-1 warm-up
 * forwards, then one forward and one backward in turn, backwards in order. */
static void sched_ops(pb_schedule sched, int p, int m, int k, int *ops)
{
    int n = 0, f = 0, b = 0;
    if (sched == PB_SCHED_GPIPE) {
        for (int j = 0; j < m; j++) ops[n++] = j;
        for (int j = m - 1; j >= 0; j--) ops[n++] = -(j + 1);
        return;
    }
    for (int i = 0; i < p - k - 1 && f < m; i++) ops[n++] = f++;
    while (b < m) {
        if (f < m) ops[n++] = f++;
        ops[n++] = -(++b);
    }
}

enum { RP = 4, RM = 8 };
static int r_ops[RP][2 * RM];
static double r_ms[RP][2 * RM], r_scratch[2 * RP * RM];
static pb_mp_replay_stage r_st[RP];

/* p stages of m microbatches; stage k's forwards take f[k], backwards b[k] */
static void replay_setup(pb_schedule sched, int p, int m, const double *f, const double *b)
{
    for (int k = 0; k < p; k++) {
        sched_ops(sched, p, m, k, r_ops[k]);
        for (int n = 0; n < 2 * m; n++) r_ms[k][n] = r_ops[k][n] >= 0 ? f[k] : b[k];
        r_st[k] = (pb_mp_replay_stage){.ops = r_ops[k], .op_ms = r_ms[k]};
    }
}

/* Equal stages and free handoffs: the textbook's step (m+p-1)(t_f+t_b) and
 * bubble (p-1)/(m+p-1), under both schedules. */
static void test_replay_equal_stages(void **state)
{
    (void)state;
    const double f[RP] = {1, 1, 1, 1}, b[RP] = {2, 2, 2, 2};
    for (int sched = 0; sched < 2; sched++)
        for (int p = 2; p <= RP; p++) {
            replay_setup(sched ? PB_SCHED_1F1B : PB_SCHED_GPIPE, p, RM, f, b);
            double bubble = -1.0, step = pb_mp_replay(r_st, p, RM, false, r_scratch, &bubble);
            if (fabs(step - (RM + p - 1) * 3.0) > 1e-9 || fabs(bubble / step - (p - 1.0) / (RM + p - 1.0)) > 1e-12)
                fail_msg("%s p %d m %d: step %g bubble %g, expected %g and fraction %g", sched ? "1f1b" : "gpipe", p,
                         RM, step, bubble, (RM + p - 1) * 3.0, (p - 1.0) / (RM + p - 1.0));
        }
}

/* Unequal stages, by hand: 1F1B, 2 stages, 4 microbatches, stage 0's ops 1
 * each, stage 1's 2 each: stage 1 never waits after its first forward, the
 * step is a + m b = 2 + 4 x 4 = 18, stage 0 busy 8 and stage 1 16, so the
 * bubble is ((18-8) + (18-16)) / 2 = 6 (a third; the equal stages' 0.2).
 * Work before a wait (op_pre_ms, an upload) overlaps the wait. */
static void test_replay_unequal_stages(void **state)
{
    (void)state;
    const double f[2] = {1, 2}, b[2] = {1, 2};
    replay_setup(PB_SCHED_1F1B, 2, 4, f, b);
    double bubble = -1.0, step = pb_mp_replay(r_st, 2, 4, false, r_scratch, &bubble);
    assert_true(fabs(step - 18.0) < 1e-9);
    assert_true(fabs(bubble - 6.0) < 1e-9);
    /* stage 1 uploads 1 ms before each forward: the first while it waits
     * for stage 0's forward 0 (both end at 1), the other three on its
     * critical path: step 18 + 3, stage 1 busy 20, bubble (13 + 1) / 2 */
    double pre[2 * 4] = {0};
    for (int n = 0; n < 8; n++) pre[n] = r_ops[1][n] >= 0 ? 1.0 : 0.0;
    r_st[1].op_pre_ms = pre;
    step = pb_mp_replay(r_st, 2, 4, false, r_scratch, &bubble);
    if (fabs(step - 21.0) > 1e-9 || fabs(bubble - ((21.0 - 8) + (21.0 - 20)) / 2) > 1e-9)
        fail_msg("with stage 1's uploads: step %g bubble %g, expected 21 and 7", step, bubble);
}

/* The first and last stage's post (tied gradient, optimizer) waits for both
 * to finish their ops; an op log that is not a schedule does not replay. */
static void test_replay_tied_and_invalid(void **state)
{
    (void)state;
    const double f[2] = {1, 1}, b[2] = {1, 1};
    replay_setup(PB_SCHED_GPIPE, 2, 1, f, b); /* F0 | F0 B0 | B0: stage 1 done at 3, stage 0 at 4 */
    r_st[0].post_ms = 1.0;
    r_st[1].post_ms = 3.0;
    double bubble = -1.0;
    assert_true(fabs(pb_mp_replay(r_st, 2, 1, false, r_scratch, &bubble) - 6.0) < 1e-9);
    assert_true(fabs(pb_mp_replay(r_st, 2, 1, true, r_scratch, &bubble) - 7.0) < 1e-9);
    /* stage 0's backward before its forward: waits on itself */
    r_ops[0][0] = -1, r_ops[0][1] = 0;
    assert_true(pb_mp_replay(r_st, 2, 1, false, r_scratch, &bubble) < 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_outside_p2p),
        cmocka_unit_test(test_1f1b_order),
        cmocka_unit_test(test_wakeups),
        cmocka_unit_test(test_replay_equal_stages),
        cmocka_unit_test(test_replay_unequal_stages),
        cmocka_unit_test(test_replay_tied_and_invalid),
    };
    return cmocka_run_group_tests_name("mp", tests, NULL, NULL);
}
