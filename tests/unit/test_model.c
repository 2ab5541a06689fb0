/* The model interface (workloads/workload.h) through the MLP, its first
 * plugin: the model a strategy sees (blocks tiling the buffer, tensors with
 * names, FLOPs, boundaries), the rules pb_model_describe enforces on any
 * workload, and a stage's contract: its hooks run in block order, and a
 * model split into two stages at a block boundary computes what one stage
 * computes, bit for bit (what mp relies on). */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <string.h>

#include "harness/config.h"
#include "kernels/backend.h"
#include "strategies/replica.h"
#include "workloads/mlp.h"

static const pb_shape XS = {.in = 24, .hidden = 16, .layers = 3, .classes = 5, .batch = 8};

/* blocks = the Linear layers, tiling the flat buffer; tensors named and
 * inside their block; step FLOPs as the MLP's own formula */
static void test_mlp_model(void **state)
{
    (void)state;
    static pb_model m;
    pb_layout layout;
    assert_int_equal(pb_model_describe(&pb_workload_mlp, &XS, &m), PB_OK);
    assert_int_equal(pb_mlp_layout(&XS, &layout), PB_OK);
    assert_int_equal(m.n_blocks, 3);
    assert_int_equal(m.n_tensors, 6);
    assert_int_equal(m.n_params, layout.n_params);
    assert_string_equal(m.tensor[0].name, "layer0.weight");
    assert_string_equal(m.tensor[5].name, "layer2.bias");
    for (int b = 0; b < m.n_blocks; b++) {
        assert_int_equal(m.block[b].p_off, layout.layer[b].w_off);
        assert_int_equal(m.block[b].in_elems, (size_t)layout.layer[b].in);
        assert_int_equal(m.block[b].out_elems, (size_t)layout.layer[b].out);
        assert_int_equal(m.tensor[m.block[b].t0 + 1].off, layout.layer[b].b_off);
    }
    assert_true(pb_model_flops(&m, 0, m.n_blocks, XS.batch) == pb_mlp_step_flops(&layout, XS.batch));
    assert_int_equal(pb_model_span(&m, 1, 3), layout.n_params - layout.layer[1].w_off);
    assert_int_equal(pb_model_input_bytes(&m), XS.in * sizeof(float));
    assert_int_equal(pb_model_target_bytes(&m), sizeof(int32_t));
}

/* a workload whose blocks leave a gap in the buffer is refused, by name */
static pb_status gap_describe(const pb_shape *shape, pb_model *out)
{
    pb_status st = pb_workload_mlp.describe(shape, out);
    out->block[1].p_off += 1;
    return st;
}

static void test_describe_checks_the_tiling(void **state)
{
    (void)state;
    static pb_model m;
    pb_workload_ops bad = pb_workload_mlp;
    bad.kind = "gappy";
    bad.describe = gap_describe;
    assert_int_equal(pb_model_describe(&bad, &XS, &m), PB_ERR_INTERNAL);
    assert_non_null(strstr(pb_error_message(), "gappy: block 1"));
    pb_error_clear();
}

/* --- stages ---------------------------------------------------------------- */

typedef struct trace {
    char ev[64][8];
    int n;
} trace;

static pb_status on_before(void *arg, int b, bool backward)
{
    trace *t = arg;
    snprintf(t->ev[t->n++], 8, "%c%d", backward ? 'B' : 'F', b);
    return PB_OK;
}

static pb_status on_ready(void *arg, int b)
{
    trace *t = arg;
    snprintf(t->ev[t->n++], 8, "R%d", b);
    return PB_OK;
}

typedef struct run {
    pb_stage *s;
    pb_stage_params p;
} run;

static void stage_of(const pb_model *m, pb_device *dev, int b0, int b1, const float *params, float *grads, run *r)
{
    pb_stage_opts o = {.be = &pb_backend_cpu, .dev = dev, .b0 = b0, .b1 = b1, .rows = XS.batch, .slots = 1};
    assert_int_equal(m->ops->stage_create(m, &o, &r->s), PB_OK);
    size_t off = m->block[b0].p_off;
    r->p = (pb_stage_params){.params = params + off, .grads = grads + off};
}

/* one stage over every block: forward calls before_block 0, 1, 2; backward
 * before_block then grads_ready from the top down. The loss's gradient and
 * the parameter gradients are what a two-stage split gets, bit for bit. */
static void test_stage_hooks_and_split(void **state)
{
    (void)state;
    static pb_model m;
    assert_int_equal(pb_model_describe(&pb_workload_mlp, &XS, &m), PB_OK);
    pb_device *dev = NULL;
    pb_device_opts opts = {.precision = PB_FP32, .threads = 1};
    assert_int_equal(pb_backend_cpu.open(&opts, 0, &dev), PB_OK);
    size_t n = m.n_params, in = (size_t)XS.batch * (size_t)XS.in;
    float *params = calloc(n, 4), *g1 = calloc(n, 4), *g2 = calloc(n, 4), *x = calloc(in, 4),
          *table = calloc(m.data_table, 4), *loss = calloc(2, 4);
    int32_t *labels = calloc((size_t)XS.batch, 4);
    assert_true(params && g1 && g2 && x && table && loss && labels);
    m.ops->init_params(&m, 7, params);
    m.ops->data_table(&m, 7, table);
    m.ops->fill(&m, 7, table, 0, 0, XS.batch, x, labels);
    float scale = 1.0f / (float)XS.batch;

    /* one stage */
    run one;
    trace t = {0};
    pb_stage_hooks h = {.before_block = on_before, .grads_ready = on_ready, .arg = &t};
    stage_of(&m, dev, 0, 3, params, g1, &one);
    memcpy(m.ops->stage_buf(one.s, PB_STAGE_IN, 0), x, in * 4);
    assert_int_equal(m.ops->forward(one.s, &one.p, 0, XS.batch, &h), PB_OK);
    assert_int_equal(m.ops->loss(&m, &pb_backend_cpu, dev, XS.batch, m.ops->stage_buf(one.s, PB_STAGE_OUT, 0), labels,
                                 scale, &loss[0], m.ops->stage_buf(one.s, PB_STAGE_DOUT, 0)),
                     PB_OK);
    void *d_in = (void *)1;
    assert_int_equal(m.ops->backward(one.s, &one.p, 0, XS.batch, &d_in, &h), PB_OK);
    assert_null(d_in); /* a stage at block 0 has no input gradient */
    static const char *const want[] = {"F0", "F1", "F2", "B2", "R2", "B1", "R1", "B0", "R0"};
    assert_int_equal(t.n, 9);
    for (int i = 0; i < 9; i++) assert_string_equal(t.ev[i], want[i]);

    /* two stages, [0, 1) and [1, 3): the boundary is block 0's output,
     * handed on, and its gradient handed back */
    run a, b;
    stage_of(&m, dev, 0, 1, params, g2, &a);
    stage_of(&m, dev, 1, 3, params, g2, &b);
    size_t mid = (size_t)XS.batch * m.block[0].out_elems * 4;
    memcpy(m.ops->stage_buf(a.s, PB_STAGE_IN, 0), x, in * 4);
    assert_int_equal(m.ops->forward(a.s, &a.p, 0, XS.batch, NULL), PB_OK);
    memcpy(m.ops->stage_buf(b.s, PB_STAGE_IN, 0), m.ops->stage_buf(a.s, PB_STAGE_OUT, 0), mid);
    assert_int_equal(m.ops->forward(b.s, &b.p, 0, XS.batch, NULL), PB_OK);
    assert_int_equal(m.ops->loss(&m, &pb_backend_cpu, dev, XS.batch, m.ops->stage_buf(b.s, PB_STAGE_OUT, 0), labels,
                                 scale, &loss[1], m.ops->stage_buf(b.s, PB_STAGE_DOUT, 0)),
                     PB_OK);
    assert_true(loss[0] == loss[1]);
    void *back = NULL;
    assert_int_equal(m.ops->backward(b.s, &b.p, 0, XS.batch, &back, NULL), PB_OK);
    assert_non_null(back);
    memcpy(m.ops->stage_buf(a.s, PB_STAGE_DOUT, 0), back, mid);
    assert_int_equal(m.ops->backward(a.s, &a.p, 0, XS.batch, NULL, NULL), PB_OK);
    assert_memory_equal(g1, g2, n * 4);

    m.ops->stage_destroy(one.s);
    m.ops->stage_destroy(a.s);
    m.ops->stage_destroy(b.s);
    pb_backend_cpu.close(dev);
    free(params), free(g1), free(g2), free(x), free(table), free(loss), free(labels);
}

/* a strategy's replica hands its before_block hook to the stage in forward
 * and backward, and the strategy's ready callback still runs after each
 * block's backward: stages [1, 3) of the model */
static void test_replica_hooks(void **state)
{
    (void)state;
    static pb_model m;
    assert_int_equal(pb_model_describe(&pb_workload_mlp, &XS, &m), PB_OK);
    pb_config cfg;
    pb_config_defaults(&cfg);
    pb_device *dev = NULL;
    pb_device_opts opts = {.precision = PB_FP32, .threads = 1};
    assert_int_equal(pb_backend_cpu.open(&opts, 0, &dev), PB_OK);
    float *params = calloc(m.n_params, 4);
    assert_non_null(params);
    m.ops->init_params(&m, 7, params);
    pb_replica r;
    assert_int_equal(pb_replica_init(&r, &pb_backend_cpu, dev, &cfg, &m, 1, 3, XS.batch, 1, params, true, true),
                     PB_OK);
    trace t = {0};
    r.before_block = on_before;
    r.before_arg = &t;
    assert_int_equal(pb_replica_forward(&r, 0, XS.batch), PB_OK);
    void *d_in = NULL;
    assert_int_equal(pb_replica_backward(&r, 0, XS.batch, NULL, &d_in, on_ready, &t), PB_OK);
    assert_non_null(d_in);
    static const char *const want[] = {"F1", "F2", "B2", "R2", "B1", "R1"};
    assert_int_equal(t.n, 6);
    for (int i = 0; i < 6; i++) assert_string_equal(t.ev[i], want[i]);
    pb_replica_destroy(&r);
    pb_backend_cpu.close(dev);
    free(params);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_model),
        cmocka_unit_test(test_describe_checks_the_tiling),
        cmocka_unit_test(test_stage_hooks_and_split),
        cmocka_unit_test(test_replica_hooks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
