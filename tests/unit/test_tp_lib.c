/* Tensor parallelism's pieces without bench: the workloads' declared
 * splits and one rank's part of a model (pb_model_describe_tp), the shard
 * mapping between the whole parameter buffer and a rank's (which float goes
 * where: QKV by heads, row-parallel columns), the shapes refused, and the
 * stages of tp ranks (threads joined by the `local` comm) computing the
 * gradients of one step as the whole model does: every rank's part
 * put back together matches the whole model's, and the replicated tensors'
 * gradients are bit for bit the same on every rank (so the replicas never
 * drift apart without a reduction), with Megatron's sequence parallelism
 * too (the GPT's tokens split between the row- and column-parallel layers,
 * reduce-scatters and all-gathers). The runs through ./bench are
 * tests/e2e/test_tp.c. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/comm_local.h"
#include "workloads/gpt.h"
#include "workloads/mlp.h"

static const pb_shape MLP4 = {.in = 6, .hidden = 8, .layers = 4, .classes = 3, .batch = 5};
static const pb_shape MLP3 = {.in = 6, .hidden = 8, .layers = 3, .classes = 3, .batch = 5};
static const pb_shape GPT1 = {.layers = 2, .batch = 2, .seq = 4, .heads = 4, .d_model = 8, .vocab = 10};

static pb_model full_m, local_m;

/* MLP pairs: (0, 1) and (2, 3) column then row; the hidden activations
 * between a pair's layers split, the others whole */
static void test_mlp_even_pairs(void **state)
{
    (void)state;
    assert_int_equal(pb_model_describe(&pb_workload_mlp, &MLP4, &full_m), PB_OK);
    static const pb_tp_split want[8] = {PB_TP_COLUMN, PB_TP_COLUMN, PB_TP_ROW, PB_TP_REPLICATED,
                                        PB_TP_COLUMN, PB_TP_COLUMN, PB_TP_ROW, PB_TP_REPLICATED};
    for (int t = 0; t < 8; t++) assert_int_equal(full_m.tensor[t].tp, want[t]);
    assert_int_equal(pb_model_describe_tp(&pb_workload_mlp, &MLP4, 2, &local_m), PB_OK);
    assert_int_equal(local_m.tp, 2);
    /* layer 0 [4, 6] + [4]; layer 1 [8, 4] + [8]; layer 2 [4, 8] + [4]; layer 3 [3, 4] + [3] */
    static const size_t size[8] = {24, 4, 32, 8, 32, 4, 12, 3}, rows[8] = {4, 0, 8, 0, 4, 0, 3, 0};
    size_t off = 0;
    for (int t = 0; t < 8; t++) {
        assert_int_equal(local_m.tensor[t].size, size[t]);
        assert_int_equal(local_m.tensor[t].rows, rows[t]);
        assert_int_equal(local_m.tensor[t].off, off);
        off += size[t];
    }
    assert_int_equal(local_m.n_params, off);
    static const size_t in[4] = {6, 4, 8, 4}, out[4] = {4, 8, 4, 3};
    for (int l = 0; l < 4; l++) {
        assert_int_equal(local_m.block[l].in_elems, in[l]);
        assert_int_equal(local_m.block[l].out_elems, out[l]);
    }
}

/* An odd last layer stays whole on every rank */
static void test_mlp_odd_last_replicated(void **state)
{
    (void)state;
    assert_int_equal(pb_model_describe_tp(&pb_workload_mlp, &MLP3, 4, &local_m), PB_OK);
    assert_int_equal(local_m.tensor[4].tp, PB_TP_REPLICATED);
    assert_int_equal(local_m.tensor[4].size, 3 * 8);
    assert_int_equal(local_m.block[2].in_elems, 8);
    assert_int_equal(local_m.block[1].in_elems, 2);
}

/* Which float of the whole buffer each of rank 1's is (of 2): QKV's rows
 * of its heads in q, k and v, the projections' columns, the up
 * projection's rows and bias, replicated tensors whole */
static void test_gpt_shard_mapping(void **state)
{
    (void)state;
    assert_int_equal(pb_model_describe(&pb_workload_gpt, &GPT1, &full_m), PB_OK);
    assert_int_equal(pb_model_describe_tp(&pb_workload_gpt, &GPT1, 2, &local_m), PB_OK);
    float *whole = malloc(full_m.n_params * 4), *part = malloc(local_m.n_params * 4);
    assert_true(whole && part);
    for (size_t i = 0; i < full_m.n_params; i++) whole[i] = (float)i;
    pb_model_tp_shard(&full_m, &local_m, 1, whole, part);
    const int C = 8, t0 = pb_gpt_layer_t0(0);
#define FULL(k, r, c) (float)(full_m.tensor[t0 + (k)].off + (size_t)(r) * (full_m.tensor[t0 + (k)].size / full_m.tensor[t0 + (k)].rows) + (c))
#define PART(k, i) part[local_m.tensor[t0 + (k)].off + (i)]
    /* QKV [24, 8] -> [12, 8]: rows 4..7 of q, 12..15 (k), 20..23 (v) */
    assert_int_equal(local_m.tensor[t0 + PB_GPT_QKV_W].rows, 12);
    for (int part_i = 0; part_i < 3; part_i++)
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < C; c++)
                assert_true(PART(PB_GPT_QKV_W, (part_i * 4 + r) * C + c) == FULL(PB_GPT_QKV_W, part_i * C + 4 + r, c));
    for (int part_i = 0; part_i < 3; part_i++)
        for (int r = 0; r < 4; r++)
            assert_true(PART(PB_GPT_QKV_B, part_i * 4 + r) ==
                        (float)(full_m.tensor[t0 + PB_GPT_QKV_B].off + (size_t)(part_i * C + 4 + r)));
    /* attention projection [8, 8] -> [8, 4]: columns 4..7 */
    for (int r = 0; r < C; r++)
        for (int c = 0; c < 4; c++) assert_true(PART(PB_GPT_PROJ_W, r * 4 + c) == FULL(PB_GPT_PROJ_W, r, 4 + c));
    /* MLP up [32, 8] -> rows 16..31; its bias 16..31; down [8, 32] -> columns 16..31 */
    for (int r = 0; r < 16; r++) {
        for (int c = 0; c < C; c++) assert_true(PART(PB_GPT_FC_W, r * C + c) == FULL(PB_GPT_FC_W, 16 + r, c));
        assert_true(PART(PB_GPT_FC_B, r) == (float)(full_m.tensor[t0 + PB_GPT_FC_B].off + 16 + (size_t)r));
    }
    for (int r = 0; r < C; r++)
        for (int c = 0; c < 16; c++)
            assert_true(PART(PB_GPT_FCPROJ_W, r * 16 + c) == FULL(PB_GPT_FCPROJ_W, r, 16 + c));
    /* replicated: the layer's LayerNorms and row-parallel biases, the embeddings and head */
    static const int whole_k[] = {PB_GPT_LN1_W, PB_GPT_LN1_B, PB_GPT_PROJ_B, PB_GPT_LN2_W, PB_GPT_LN2_B,
                                  PB_GPT_FCPROJ_B};
    for (size_t i = 0; i < sizeof whole_k / sizeof *whole_k; i++)
        for (int c = 0; c < C; c++)
            assert_true(PART(whole_k[i], c) == (float)(full_m.tensor[t0 + whole_k[i]].off + (size_t)c));
#undef FULL
#undef PART
    int last = full_m.n_tensors - 1;
    assert_int_equal(local_m.tensor[last].size, full_m.tensor[last].size);
    assert_true(part[local_m.tensor[last].off + 5] == (float)(full_m.tensor[last].off + 5));
    assert_int_equal(local_m.n_tied, full_m.n_tied);
    free(whole);
    free(part);
}

/* Every rank's part put back covers the whole buffer exactly */
static void round_trip(const pb_workload_ops *ops, const pb_shape *shape, int tp)
{
    assert_int_equal(pb_model_describe(ops, shape, &full_m), PB_OK);
    assert_int_equal(pb_model_describe_tp(ops, shape, tp, &local_m), PB_OK);
    float *whole = malloc(full_m.n_params * 4), *back = malloc(full_m.n_params * 4), *part = malloc(local_m.n_params * 4);
    assert_true(whole && back && part);
    for (size_t i = 0; i < full_m.n_params; i++) {
        whole[i] = (float)i + 0.5f;
        back[i] = -1.0f;
    }
    for (int r = 0; r < tp; r++) {
        pb_model_tp_shard(&full_m, &local_m, r, whole, part);
        pb_model_tp_unshard(&full_m, &local_m, r, part, back);
    }
    assert_memory_equal(whole, back, full_m.n_params * 4);
    free(whole);
    free(back);
    free(part);
}

static void test_round_trips(void **state)
{
    (void)state;
    round_trip(&pb_workload_mlp, &MLP4, 2);
    round_trip(&pb_workload_mlp, &MLP3, 4);
    round_trip(&pb_workload_gpt, &GPT1, 2);
    round_trip(&pb_workload_gpt, &GPT1, 4);
}

/* Heads (GPT) and the hidden width (MLP) must divide by the ranks */
static void test_refused_shapes(void **state)
{
    (void)state;
    assert_int_equal(pb_model_describe_tp(&pb_workload_gpt, &GPT1, 3, &local_m), PB_ERR_USAGE);
    assert_non_null(strstr(pb_error_message(), "--heads 4 is not divisible by --gpus 3"));
    pb_error_clear();
    assert_int_equal(pb_model_describe_tp(&pb_workload_mlp, &MLP4, 3, &local_m), PB_ERR_USAGE);
    assert_non_null(strstr(pb_error_message(), "--hidden 8 is not divisible by --gpus 3"));
    pb_error_clear();
}

/* --- one step of tp ranks against the whole model ------------------------------ */

#define MAX_TP 4

typedef struct rank_job {
    const pb_workload_ops *ops;
    const pb_model *local;
    int rank, tp;
    const pb_comm_opts *copts;
    const float *params; /* the rank's part */
    float *grads;
    const void *inputs, *targets;
    int rows;
    float loss;
    pb_comm_ctx *comm;
    pb_status st;
} rank_job;

static pb_status sum_across(void *arg, void *buf, size_t n)
{
    rank_job *j = arg;
    pb_comm_req *req = NULL;
    pb_status st = pb_comm_local.allreduce(j->comm, buf, n, 1.0f, &req);
    return st == PB_OK ? pb_comm_local.wait(j->comm, req, 10.0) : st;
}

/* sequence parallel's collectives over the same comm */
static pb_status scatter_across(void *arg, const void *in, void *out, size_t n)
{
    rank_job *j = arg;
    pb_comm_req *req = NULL;
    pb_status st = pb_comm_local.reduce_scatter(j->comm, in, out, n / (size_t)j->tp, &req);
    return st == PB_OK ? pb_comm_local.wait(j->comm, req, 10.0) : st;
}

static pb_status gather_across(void *arg, void *buf, size_t n)
{
    rank_job *j = arg;
    pb_comm_req *req = NULL;
    size_t chunk = n / (size_t)j->tp;
    pb_status st = pb_comm_local.allgather(j->comm, (float *)buf + (size_t)j->rank * chunk, buf, chunk * 4, &req);
    return st == PB_OK ? pb_comm_local.wait(j->comm, req, 10.0) : st;
}

/* forward, loss and backward of a model (a rank's part, or the whole
 * with tp 1) over the batch */
static pb_status one_step(rank_job *j)
{
    pb_status st = PB_OK;
    pb_device *dev = NULL;
    pb_stage *s = NULL;
    const pb_model *m = j->local;
    pb_device_opts opts = {.precision = PB_FP32, .threads = 1};
    PB_TRY(pb_backend_cpu.open(&opts, 0, &dev));
    if (j->tp > 1) PB_TRY(pb_comm_local.init(j->copts, &pb_backend_cpu, dev, j->rank, j->tp, &j->comm));
    pb_stage_opts o = {.be = &pb_backend_cpu, .dev = dev, .b0 = 0, .b1 = m->n_blocks, .rows = j->rows, .slots = 1};
    PB_TRY(j->ops->stage_create(m, &o, &s));
    memcpy(j->ops->stage_buf(s, PB_STAGE_IN, 0), j->inputs, (size_t)j->rows * pb_model_input_bytes(m));
    pb_stage_params sp = {.params = j->params, .grads = j->grads};
    pb_stage_hooks h = {.tp_allreduce = j->tp > 1 ? sum_across : NULL, .tp_reduce_scatter = scatter_across,
                        .tp_allgather = gather_across, .tp_rank = j->rank, .arg = j};
    PB_TRY(j->ops->forward(s, &sp, 0, j->rows, &h));
    PB_TRY(j->ops->loss(m, &pb_backend_cpu, dev, j->rows, j->ops->stage_buf(s, PB_STAGE_OUT, 0), j->targets,
                        1.0f / (float)j->rows, &j->loss, j->ops->stage_buf(s, PB_STAGE_DOUT, 0)));
    PB_TRY(j->ops->backward(s, &sp, 0, j->rows, NULL, &h));
cleanup:
    if (s) j->ops->stage_destroy(s);
    if (j->comm) pb_comm_local.destroy(j->comm);
    if (dev) pb_backend_cpu.close(dev);
    return st;
}

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    j->st = one_step(j);
    return NULL;
}

static void step_matches_whole(const pb_workload_ops *ops, const pb_shape *shape, int tp, bool seq_parallel)
{
    assert_int_equal(pb_model_describe(ops, shape, &full_m), PB_OK);
    assert_int_equal(pb_model_describe_tp(ops, shape, tp, &local_m), PB_OK);
    local_m.seq_parallel = seq_parallel;
    const pb_model *m = &full_m;
    size_t n = m->n_params, nl = local_m.n_params;
    int B = shape->batch;
    float *p = malloc(n * 4), *g = calloc(n, 4), *back = calloc(n, 4), *table = malloc((m->data_table + 1) * 4);
    float *pl = malloc(nl * 4 * MAX_TP), *gl = calloc(nl * MAX_TP, 4);
    void *in = malloc((size_t)B * pb_model_input_bytes(m)), *tg = malloc((size_t)B * pb_model_target_bytes(m));
    assert_true(p && g && back && table && pl && gl && in && tg);
    m->ops->init_params(m, 5, p);
    /* nonzero biases and LayerNorm parameters: their gradients away from the start */
    for (size_t i = 0; i < n; i++) p[i] += 0.02f * (float)sin((double)i);
    if (m->n_tied) memcpy(p + m->tensor[m->tie_dst].off, p + m->tensor[m->tie_src].off, m->n_tied * 4);
    m->ops->data_table(m, 5, table);
    m->ops->fill(m, 5, table, 0, 0, B, in, tg);

    rank_job whole = {.ops = ops, .local = m, .tp = 1, .params = p, .grads = g, .inputs = in, .targets = tg,
                      .rows = B};
    assert_int_equal(one_step(&whole), PB_OK);

    pb_comm_opts copts = {.timeout_s = 10.0};
    rank_job jobs[MAX_TP];
    pthread_t th[MAX_TP];
    for (int r = 0; r < tp; r++) {
        pb_model_tp_shard(m, &local_m, r, p, pl + (size_t)r * nl);
        jobs[r] = (rank_job){.ops = ops, .local = &local_m, .rank = r, .tp = tp, .copts = &copts,
                             .params = pl + (size_t)r * nl, .grads = gl + (size_t)r * nl, .inputs = in,
                             .targets = tg, .rows = B};
        assert_int_equal(pthread_create(&th[r], NULL, rank_main, &jobs[r]), 0);
    }
    for (int r = 0; r < tp; r++) pthread_join(th[r], NULL);
    for (int r = 0; r < tp; r++) {
        if (jobs[r].st != PB_OK) fail_msg("rank %d: %s", r, pb_error_message());
        /* the loss is the whole model's on every rank */
        if (!(fabsf(jobs[r].loss - whole.loss) <= 1e-5f * fabsf(whole.loss)))
            fail_msg("rank %d loss %.8g, whole %.8g", r, jobs[r].loss, whole.loss);
    }
    /* replicated tensors: the same gradient, bit for bit, on every rank */
    for (int t = 0; t < local_m.n_tensors; t++) {
        const pb_tensor_desc *d = &local_m.tensor[t];
        if (d->tp != PB_TP_REPLICATED) continue;
        for (int r = 1; r < tp; r++)
            if (memcmp(gl + d->off, gl + (size_t)r * nl + d->off, d->size * 4) != 0)
                fail_msg("%s: rank %d's gradient differs from rank 0's", d->name, r);
    }
    /* the parts together: the whole model's gradient */
    for (int r = 0; r < tp; r++) pb_model_tp_unshard(m, &local_m, r, gl + (size_t)r * nl, back);
    for (int t = 0; t < m->n_tensors; t++) {
        const pb_tensor_desc *d = &m->tensor[t];
        for (size_t i = d->off; i < d->off + d->size; i++)
            if (!(fabsf(back[i] - g[i]) <= 1e-4f * fabsf(g[i]) + 1e-6f))
                fail_msg("%s[%zu]: tp %d gives %.8g, the whole model %.8g", d->name, i - d->off, tp, back[i], g[i]);
    }
    free(p);
    free(g);
    free(back);
    free(table);
    free(pl);
    free(gl);
    free(in);
    free(tg);
}

static void test_mlp_step_matches_whole(void **state)
{
    (void)state;
    step_matches_whole(&pb_workload_mlp, &MLP4, 2, false);
    step_matches_whole(&pb_workload_mlp, &MLP3, 4, false);
}

static void test_gpt_step_matches_whole(void **state)
{
    (void)state;
    step_matches_whole(&pb_workload_gpt, &GPT1, 2, false);
    step_matches_whole(&pb_workload_gpt, &GPT1, 4, false);
}

/* Sequence parallel (seq 4 over 2 and 4 ranks: down to one token a rank
 * a sequence): the whole model's gradients, and the replicated tensors'
 * (LayerNorms summed over the ranks, biases and embeddings from gathered
 * gradients) the same bit for bit on every rank */
static void test_gpt_sequence_parallel_step_matches_whole(void **state)
{
    (void)state;
    step_matches_whole(&pb_workload_gpt, &GPT1, 2, true);
    step_matches_whole(&pb_workload_gpt, &GPT1, 4, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_even_pairs),
        cmocka_unit_test(test_mlp_odd_last_replicated),
        cmocka_unit_test(test_gpt_shard_mapping),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_refused_shapes),
        cmocka_unit_test(test_mlp_step_matches_whole),
        cmocka_unit_test(test_gpt_step_matches_whole),
        cmocka_unit_test(test_gpt_sequence_parallel_step_matches_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
