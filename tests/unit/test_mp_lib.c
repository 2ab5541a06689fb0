/* Strategy mp in process, through pb_mp_trace: a stage's waiting for its
 * neighbour is outside its p2p spans (it is bubble; p2p is the copy
 * alone). Strategy mp through ./bench is tests/e2e/test_mp.c. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>

#include "harness/config.h"
#include "kernels/comm_local.h"
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

/* mp in process on the cpu, 2 stages and 4 microbatches: every p2p span
 * starts after the neighbour's span that produced its data has ended, so a
 * stage's waiting shows as bubble, not p2p (the cuda path keeps the same
 * rule with recv_ready; tests/gpu checks it there). Fails when the wait is
 * moved inside the span (tried). */
static void test_wait_outside_p2p(void **state)
{
    (void)state;
    pb_config cfg;
    pb_config_defaults(&cfg);
    cfg.threads = 1;
    cfg.lr = 0.01;
    snprintf(cfg.backend, sizeof cfg.backend, "cpu");
    cfg.shape = (pb_shape){.in = 64, .hidden = 256, .layers = 3, .classes = 10, .batch = 64};
    cfg.devices = 2;
    cfg.microbatches = 4;
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
    pb_mp_span sp[64];
    int n = 0;
    for (int step = 0; step < 3; step++) {
        pb_data_fill(&layout, cfg.seed, step, 0, cfg.shape.batch, proto, x, labels);
        pb_batch batch = {.step = step, .count = cfg.shape.batch, .inputs = x, .targets = labels};
        pb_step_result r;
        assert_int_equal(pb_strategy_mp.step(mp, &batch, &r), PB_OK);
        assert_int_equal(pb_mp_trace(mp, sp, 64, &n), PB_OK);
        const double eps = 1e-3; /* ms: the marks' own clock reads */
        for (int j = 0; j < cfg.microbatches; j++) {
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
    pb_strategy_mp.destroy(mp);
    free(params), free(proto), free(x), free(labels);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_outside_p2p),
    };
    return cmocka_run_group_tests_name("mp", tests, NULL, NULL);
}
