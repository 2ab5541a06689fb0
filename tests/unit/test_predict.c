/* bench predict's model (study/predict.h) on hand-made inputs whose answer
 * is known: the ring and hierarchical all-reduce formulas, ddp's bucket
 * overlap (what is hidden behind backward and what is left), dp's traffic
 * through device 0, mp's bubble (p-1)/(m+p-1), the cpu threads rule, and
 * the node's capacity on shared cores, and the pooling of repeated inputs by
 * their median. */
#include "tests/common/test_util.h"

#include <math.h>

#include "study/predict.h"
#include "study/predict_out.h"

/* an MLP of `layers` square layers of width h, one single row */
static void make_work(pb_pred_work *w, int layers, double h, double batch, double fwd, double bwd, double opt)
{
    memset(w, 0, sizeof *w);
    snprintf(w->workload, sizeof w->workload, "t");
    snprintf(w->backend, sizeof w->backend, "cuda");
    snprintf(w->precision, sizeof w->precision, "fp32");
    snprintf(w->optimizer, sizeof w->optimizer, "sgd");
    w->layers = layers;
    for (int l = 0; l < layers; l++) {
        w->in[l] = w->out[l] = h;
        w->params += h * h + h;
    }
    w->nsingle = 1;
    w->single[0] = (pb_pred_single){.threads = 1, .batch = batch, .fwd_ms = fwd, .bwd_ms = bwd, .opt_ms = opt};
}

static void make_net(pb_pred_net *n, int per_node, double intra_gbps, double inter_gbps, double alpha_us)
{
    memset(n, 0, sizeof *n);
    n->gpus_per_node = per_node;
    n->intra_gbps = intra_gbps;
    n->inter_gbps = inter_gbps;
    n->intra_alpha_us = n->inter_alpha_us = alpha_us;
    n->p2p_gbps = intra_gbps;
}

static void test_ring_and_hierarchical_allreduce(void **state)
{
    (void)state;
    pb_pred_net net;
    make_net(&net, 8, 100, 10, 0);
    const char *src = "none";
    /* one node of 8, no latency: 2 (n-1)/n S / B; 1 GB at 100 GB/s */
    assert_float_equal(pb_pred_allreduce_us(&net, NULL, 8, 1e9, &src), 2.0 * 7 / 8 * 1e9 / 100e3, 1e-6);
    assert_string_equal(src, "topology");
    /* 4 nodes of 8: reduce-scatter and all-gather in the node (each 7/8 S at
     * 100 GB/s), all-reduce of S/8 across 4 nodes at 10 GB/s */
    double want = 2 * (7.0 / 8 * 1e9 / 100e3) + 2.0 * 3 / 4 * (1e9 / 8) / 10e3;
    assert_float_equal(pb_pred_allreduce_us(&net, NULL, 32, 1e9, &src), want, 1e-6);
    /* small messages: the tree's 2 log2(n) latencies beat the ring's 2(n-1) */
    make_net(&net, 4096, 100, 100, 10);
    double t = pb_pred_allreduce_us(&net, NULL, 1024, 8, &src);
    assert_true(t < 2 * 11 * 10 + 1 && t >= 2 * 10 * 10);
    /* one device: nothing to reduce */
    assert_float_equal(pb_pred_allreduce_us(&net, NULL, 1, 1e9, &src), 0, 0);
}

static void test_measured_fit_is_used_and_extrapolated(void **state)
{
    (void)state;
    pb_pred_net net;
    make_net(&net, 0, 0, 0, 0);
    pb_pred_fit *f = &net.fits[net.nfits++];
    snprintf(f->comm, sizeof f->comm, "mpi");
    f->coll = PB_COLL_ALL_REDUCE;
    f->ranks = 2;
    f->nseg = 1;
    f->seg[0] = (pb_fit_segment){.bytes_lo = 8, .bytes_hi = 1 << 30, .alpha_us = 10, .beta_gbps = 5};
    const char *src = "none";
    /* 2 ranks: the fit itself, alpha + S / beta */
    assert_float_equal(pb_pred_allreduce_us(&net, "mpi", 2, 1e6, &src), 10 + 1e6 / 5e3, 1e-9);
    assert_string_equal(src, "measured");
    /* 4 ranks: the fit read as a ring's step (alpha / 2(n0-1) = 5 us) and
     * busbw (beta x 2(n0-1)/n0 = 5 GB/s): 6 x 5 us + 1.5 S / 5 GB/s */
    assert_float_equal(pb_pred_allreduce_us(&net, "mpi", 4, 1e6, &src), 30 + 1.5e6 / 5e3, 1e-9);
    assert_string_equal(src, "extrapolated");
    /* 2 nodes of 2: the fit stands for the node (reduce-scatter and
     * all-gather: 5 us + S/2 at 5 GB/s each), the given inter-node link for
     * the all-reduce of S/2 between the nodes (S/2 at 10 GB/s) */
    net.gpus_per_node = 2;
    net.inter_gbps = 10;
    assert_float_equal(pb_pred_allreduce_us(&net, "mpi", 4, 1e6, &src), 2 * (5 + 0.5e6 / 5e3) + 0.5e6 / 10e3, 1e-9);
    assert_string_equal(src, "extrapolated");
}

static void test_ddp_buckets_overlap_backward(void **state)
{
    (void)state;
    /* 4 layers of 1024: 4.2 MB of gradients each; bwd 40 ms, 10 per layer */
    pb_pred_work w;
    make_work(&w, 4, 1024, 64, 20, 40, 4);
    pb_pred_net net;
    make_net(&net, 8, 1, 1, 0); /* 1 GB/s: a layer's all-reduce on 2 devices takes 4.2 ms; a bucket a layer */
    pb_pred_target t = {.strategy = PB_PRED_DDP, .devices = 2, .batch_global = 128, .bucket_mb = 4198400.0 / 1048576, .threads = 1};
    pb_pred_result r;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    double layer_ms = (1024.0 * 1024 + 1024) * 4 / 1e6; /* 2 (n-1)/n = 1 on 2 devices */
    /* a bucket per layer: three hide behind the layers below, the last
     * (ready when backward ends) is exposed */
    assert_float_equal(r.comm_ms, 4 * layer_ms, 1e-6);
    assert_float_equal(r.comm_exposed_ms, layer_ms, 1e-6);
    assert_float_equal(r.comm_hidden_ms, 3 * layer_ms, 1e-6);
    assert_float_equal(r.step_ms, 20 + 40 + 4 + layer_ms, 1e-6);
    /* --no-overlap: all of it after backward */
    t.no_overlap = true;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(r.comm_exposed_ms, 4 * layer_ms, 1e-6);
    assert_float_equal(r.comm_hidden_ms, 0, 1e-9);
    /* one bucket larger than the model is the same as no overlap */
    t.no_overlap = false;
    t.bucket_mb = 25;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(r.comm_exposed_ms, 4 * layer_ms, 1e-6);
    /* weak scaling's efficiency: one device's time for its rows over the step */
    assert_float_equal(r.efficiency, 64.0 / r.step_ms, 1e-9);
}

static void test_mp_bubble_is_gpipe(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 4, 256, 64, 40, 80, 0);
    pb_pred_net net;
    make_net(&net, 8, 1e9, 1e9, 0); /* p2p free */
    for (int m = 1; m <= 8; m *= 2) {
        pb_pred_target t = {.strategy = PB_PRED_MP, .devices = 4, .batch_global = 64, .microbatches = m, .threads = 1};
        pb_pred_result r;
        assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
        /* balanced stages of 120/4/m ms each: (m + p - 1) slots */
        assert_float_equal(r.step_ms, (m + 3) * 30.0 / m, 1e-6);
        assert_float_equal(r.bubble_frac, 3.0 / (m + 3), 1e-9);
    }
    pb_pred_target bad = {.strategy = PB_PRED_MP, .devices = 5, .batch_global = 64, .microbatches = 1};
    pb_pred_result r;
    assert_int_equal(pb_predict_one(&w, &net, &bad, &r), PB_ERR_USAGE);
    pb_error_clear();
}

/* zero's volumes are the strategy's own column formulas over the padded
 * shard S = sum of ceil(block / n) (docs/strategies.md "zero"): (n-1) S x 4
 * reduce-scattered, as much gathered at stages 1 and 2, twice at 3 less
 * the last block (its backward reuses forward's gather); each stage holds
 * less. */
static void test_zero_volumes_memory_and_gathers(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 4, 1000, 30, 40, 80, 8);
    pb_pred_net net;
    make_net(&net, 8, 10, 10, 0);
    double S = 4 * ceil((1000.0 * 1000 + 1000) / 3), mem[4] = {0};
    for (int z = 1; z <= 3; z++) {
        pb_pred_target t = {.strategy = PB_PRED_ZERO, .devices = 3, .batch_global = 90, .zero_stage = z,
                            .bucket_mb = 1, .threads = 1}; /* a block a bucket: stage 2 holds 3 blocks' gradients */
        pb_pred_result r;
        assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
        assert_float_equal(r.reduce_scatter_bytes, 2 * S * 4, 1e-3);
        assert_float_equal(r.allgather_bytes, (z == 3 ? 2 * S - S / 4 : S) * 2 * 4, 1e-3);
        assert_true(isnan(r.allreduce_bytes));
        /* a block's reduce-scatter: 2/3 of its padded bytes at 10 GB/s */
        double block_ms = 2.0 / 3 * (S / 4 * 3 * 4) / 10e6;
        assert_float_equal(r.reduce_scatter_ms, 4 * block_ms, 1e-6);
        assert_float_equal(r.comm_ms, r.reduce_scatter_ms + r.allgather_ms, 1e-9);
        /* compute: ddp's shard of the batch, the optimizer over a third */
        assert_float_equal(r.compute_ms, 40 + 80 + 8 * S / w.params, 1e-6);
        assert_float_equal(r.allgather_ms, (z == 3 ? 7 : 4) * block_ms, 1e-6);
        assert_float_equal(r.step_ms, r.compute_ms + r.comm_exposed_ms, 1e-9);
        mem[z] = r.mem_mb;
    }
    assert_true(mem[3] < mem[2] && mem[2] < mem[1]);
    pb_pred_target bad = {.strategy = PB_PRED_ZERO, .devices = 2, .batch_global = 90, .bucket_mb = 25};
    pb_pred_result r;
    assert_int_equal(pb_predict_one(&w, &net, &bad, &r), PB_ERR_USAGE); /* no stage */
    pb_error_clear();
}

/* tp on the MLP: an all-reduce after each pair's forward and in each
 * pair's backward but the first, all exposed; the split GEMMs' time over n,
 * an odd last layer's whole; every rank the whole batch. */
static void test_tp_allreduces_and_split_compute(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 4, 1000, 64, 40, 80, 8);
    pb_pred_net net;
    make_net(&net, 8, 10, 10, 0);
    pb_pred_target t = {.strategy = PB_PRED_TP, .devices = 2, .batch_global = 64, .threads = 1};
    pb_pred_result r;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_int_equal(r.tp_allreduces, 3);
    double S = 64 * 1000 * 4.0;
    assert_float_equal(r.allreduce_bytes, 3 * 2 * S / 2, 1e-6);
    assert_float_equal(r.tp_comm_ms, 3 * S / 10e6, 1e-9);
    assert_float_equal(r.comm_exposed_ms, r.comm_ms, 0);
    assert_float_equal(r.step_ms, 60 + r.compute_ms - 60 + r.comm_ms, 1e-9);
    assert_true(r.compute_ms > 60 && r.compute_ms < 60 + 8); /* half of fwd + bwd, about half the optimizer */
    /* 3 layers: one pair (its forward's all-reduce alone), the last whole */
    make_work(&w, 3, 1000, 64, 30, 60, 0);
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_int_equal(r.tp_allreduces, 1);
    assert_float_equal(r.compute_ms, (30 + 60) * (2 * 0.5 + 1) / 3, 1e-9);
    t.devices = 3; /* 1000 hidden units do not split in 3 */
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_ERR_USAGE);
    pb_error_clear();
}

/* gpt-xs's shape (d 64, 2 blocks, 4 heads, seq 32, vocab 256), its parts
 * described by the workload itself, one single row at 8 sequences */
static void make_gpt_work(pb_pred_work *w, double fwd, double bwd, double opt)
{
    make_work(w, 0, 0, 8, fwd, bwd, opt);
    snprintf(w->workload, sizeof w->workload, "gpt-xs");
    snprintf(w->backend, sizeof w->backend, "cpu");
    w->gpt = (pb_pred_gpt){.on = true, .layers = 2, .d_model = 64, .heads = 4, .seq = 32, .vocab = 256};
    assert_true(pb_pred_describe_gpt(w));
}

/* Hand arithmetic of gpt-xs (C = 64, T = 32 tokens, V = 256), per token:
 * a block's split tensors (QKV 3C^2 + 3C, attention projection C^2, MLP
 * up 4C^2 + 4C and down 4C^2: 49600 floats) at 6 FLOPs each plus
 * attention's 12 T C = 24576, split; its replicated LayerNorms and
 * projection biases (6C = 384) at 6 each, whole; the embeddings' 6 T C
 * (wpe) = 12288 and the head's 6 (V C + 2C) = 99072, whole. */
static void test_tp_on_gpt_splits_by_flops(void **state)
{
    (void)state;
    pb_pred_work w;
    make_gpt_work(&w, 10, 20, 4);
    double split_tok = 2 * (6 * 49600.0 + 24576), whole_tok = 12288 + 99072 + 2 * 6 * 384.0;
    assert_float_equal(w.gpt.flops_split, 32 * split_tok, 1e-3);
    assert_float_equal(w.gpt.flops_whole, 32 * whole_tok, 1e-3);
    /* the flat buffer: split 2 x 49600; whole wte 16384, wpe 2048, 2 x 384,
     * ln_f 128 and the tied head's copy 16384 */
    assert_float_equal(w.gpt.params_split, 99200, 0);
    assert_float_equal(w.gpt.params_whole, 16384 + 2048 + 768 + 128 + 16384, 0);
    pb_pred_net net;
    make_net(&net, 8, 10, 10, 5); /* 10 GB/s, 5 us a ring step */
    pb_pred_target t = {.strategy = PB_PRED_TP, .devices = 2, .batch_global = 8, .threads = 1};
    pb_pred_result r;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    /* 4 all-reduces a block of 8 x 32 x 64 floats, each 2 (n-1) alpha +
     * 2 (n-1)/n S / B on 2 ranks */
    double S = 8 * 32 * 64 * 4.0, ar = (2 * 5 + S / 10e3) / 1e3;
    assert_int_equal(r.tp_allreduces, 8);
    assert_float_equal(r.tp_comm_ms, 8 * ar, 1e-9);
    assert_float_equal(r.allreduce_bytes, 8 * S, 1e-6);
    double frac = (whole_tok + split_tok / 2) / (whole_tok + split_tok); /* 0.576 */
    double opt_frac = (35712 + 99200 / 2.0) / 134912;
    assert_float_equal(r.compute_ms, 30 * frac + 4 * opt_frac, 1e-9);
    assert_float_equal(r.step_ms, r.compute_ms + 8 * ar, 1e-9);
    assert_float_equal(r.comm_exposed_ms, r.comm_ms, 0);
    /* heads do not split in 3 */
    t.devices = 3;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_ERR_USAGE);
    pb_error_clear();
}

/* The strategies that place the model by blocks (ddp, zero, dp, mp) see a
 * GPT's blocks as the workload describes them: gpt-xs's embeddings (wte
 * and wpe), its 2 transformer blocks, the head (ln_f and the tied
 * lm_head), with their FLOPs and their spans of the flat buffer. ddp's
 * buckets and mp's split follow them. */
static void test_block_strategies_on_gpt(void **state)
{
    (void)state;
    const double C = 64, T = 32, Vp = 256;
    pb_pred_work w;
    make_gpt_work(&w, 10, 20, 4);
    assert_int_equal(w.layers, 4);
    double block = 49600 + 6 * C; /* a transformer block's floats: split and replicated */
    assert_float_equal(w.block_params[0], Vp * C + T * C, 0);
    assert_float_equal(w.block_params[1], block, 0);
    assert_float_equal(w.block_params[3], 2 * C + Vp * C, 0);
    assert_float_equal(w.block_flops[0], 6 * T * T * C, 1e-6);
    assert_float_equal(w.block_flops[1], T * (6 * block + 12 * T * C), 1e-6);
    assert_float_equal(w.block_flops[3], 6 * T * (Vp * C + 2 * C), 1e-6);
    assert_float_equal(w.in[0], T, 0);
    assert_float_equal(w.out[1], T * C, 0);
    assert_float_equal(w.out[3], T * Vp, 0);
    double flat = 0, flops = 0;
    for (int b = 0; b < 4; b++) flat += w.block_params[b], flops += w.block_flops[b];
    pb_pred_net net;
    make_net(&net, 8, 1, 1, 0); /* 1 GB/s: bytes / 1e6 ms on 2 devices */
    pb_pred_result r;
    /* ddp --no-overlap: the whole flat buffer after backward */
    pb_pred_target t = {.strategy = PB_PRED_DDP, .devices = 2, .batch_global = 16, .no_overlap = true,
                        .bucket_mb = 25, .threads = 1};
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(r.comm_ms, flat * 4 / 1e6, 1e-9);
    assert_float_equal(r.step_ms, 10 + 20 + 4 + flat * 4 / 1e6, 1e-9);
    /* buckets of one block's bytes: the head's is ready first and its
     * all-reduce hides behind the blocks below; the embeddings' (last
     * ready) is exposed: exposed at least its all-reduce */
    t.no_overlap = false;
    t.bucket_mb = w.block_params[3] * 4 / 1048576.0;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(r.comm_ms, flat * 4 / 1e6, 1e-9);
    assert_true(r.comm_exposed_ms < r.comm_ms - 1e-6);
    assert_true(r.comm_exposed_ms >= w.block_params[0] * 4 / 1e6 - 1e-9);
    /* mp on 2 stages, free p2p: split by the blocks' FLOPs, per token
     * 12288 (embeddings), 324480 a block, 99072 (head): embeddings and
     * block 1 | block 2 and the head. One microbatch: the stages one after
     * the other (fwd + bwd of 16 rows, twice the single row's 8), then the
     * heavier stage's optimizer (its FLOPs' share of opt) */
    make_net(&net, 8, 1e9, 1e9, 0);
    pb_pred_target m = {.strategy = PB_PRED_MP, .devices = 2, .batch_global = 16, .microbatches = 1, .threads = 1};
    assert_int_equal(pb_predict_one(&w, &net, &m, &r), PB_OK);
    double heavy = (w.block_flops[2] + w.block_flops[3]) / flops;
    assert_true(heavy > (w.block_flops[0] + w.block_flops[1]) / flops);
    assert_float_equal(r.step_ms, 2 * 30 + 4 * heavy, 1e-6);
    assert_true(r.p2p_bytes > 0);
    assert_float_equal(r.p2p_bytes, 2 * 16 * T * C * 4, 1e-6); /* one boundary of T x C floats a row */
    /* zero stage 1 on 2 ranks: each block padded to 2 chunks */
    pb_pred_target z = {.strategy = PB_PRED_ZERO, .devices = 2, .batch_global = 16, .zero_stage = 1, .bucket_mb = 25,
                        .threads = 1};
    assert_int_equal(pb_predict_one(&w, &net, &z, &r), PB_OK);
    double S = 0;
    for (int b = 0; b < 4; b++) S += ceil(w.block_params[b] / 2);
    assert_float_equal(r.reduce_scatter_bytes, S * 4, 1e-9);
    /* more devices than blocks: refused */
    m.devices = 5;
    assert_int_equal(pb_predict_one(&w, &net, &m, &r), PB_ERR_USAGE);
    pb_error_clear();
}

/* The mesh dp2 x tp2 on 16 sequences: each tp group tp's step on 8 rows,
 * then the dp group's all-reduce of the rank's part (P_T floats) and of
 * the loss, all exposed; pp > 1 and a shape that does not multiply out are
 * refused. */
static void test_mesh_is_tp_then_dp_sync(void **state)
{
    (void)state;
    pb_pred_work w;
    make_gpt_work(&w, 10, 20, 4);
    pb_pred_net net;
    make_net(&net, 8, 10, 10, 5);
    pb_pred_target t = {.strategy = PB_PRED_MESH, .devices = 4, .batch_global = 16, .threads = 1, .mesh_dp = 2,
                        .mesh_tp = 2, .mesh_pp = 1};
    pb_pred_result r, tp;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    pb_pred_target tt = {.strategy = PB_PRED_TP, .devices = 2, .batch_global = 8, .threads = 1};
    assert_int_equal(pb_predict_one(&w, &net, &tt, &tp), PB_OK);
    double PT = 35712 + 99200 / 2.0;
    double sync = (2 * 5 + PT * 4 / 10e3) / 1e3 + (2 * 5 + 4 / 10e3) / 1e3;
    assert_float_equal(r.tp_comm_ms, tp.tp_comm_ms, 1e-12);
    assert_float_equal(r.compute_ms, tp.compute_ms, 1e-12);
    assert_float_equal(r.comm_ms, tp.tp_comm_ms + sync, 1e-9);
    assert_float_equal(r.step_ms, tp.step_ms + sync, 1e-9);
    assert_float_equal(r.allreduce_bytes, tp.allreduce_bytes + 2 * PT * 4 / 2, 1e-6);
    /* 4 ranks on 2 cores: each group's compute and collectives share the
     * cores with the other group's, twice tp's alone on 2 ranks */
    net.cores_per_node = 2;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_int_equal(pb_predict_one(&w, &net, &tt, &tp), PB_OK);
    assert_float_equal(r.tp_comm_ms, 2 * tp.tp_comm_ms, 1e-12);
    assert_float_equal(r.compute_ms, 2 * tp.compute_ms, 1e-12);
    assert_float_equal(r.comm_ms, 2 * (tp.tp_comm_ms + sync), 1e-9);
    net.cores_per_node = 0;
    /* the MLP: the same composition over its pairs */
    make_work(&w, 4, 1000, 64, 40, 80, 8);
    t.batch_global = 128;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    tt.batch_global = 64;
    assert_int_equal(pb_predict_one(&w, &net, &tt, &tp), PB_OK);
    assert_float_equal(r.compute_ms, tp.compute_ms, 1e-12);
    assert_true(r.comm_ms > tp.comm_ms);
    t.mesh_pp = 2; /* pipeline stages with ZeRO are not modelled */
    t.devices = 8;
    t.zero_stage = 1;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_ERR_USAGE);
    pb_error_clear();
    t.zero_stage = 0;
    pb_error_clear();
    t.mesh_pp = 1;
    t.mesh_dp = 3; /* 3 x 2 is not 8 */
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_ERR_USAGE);
    pb_error_clear();
}

/* The mesh dp2 x tp2 x pp2 on a 4-layer MLP of width 1000, 128 rows, 2
 * microbatches: mp's schedule over the stages {0, 1}, {2, 3} of a rank's
 * tp part (a pair each: a quarter of fwd + bwd, 60 ms at 32 rows, 15 ms a
 * slot), each slot with its p2p (32 x 1000 floats each way at 10 GB/s,
 * 12.8 us) and its tp all-reduces (stage 0 pair 0's forward one, stage 1
 * pair 1's two, 12.8 us each on a ring of 2), then the dp all-reduce of
 * the stage's part (1001500 floats over 2) and the loss before the
 * optimizer's quarter; hand figures, no latency. */
static void test_mesh_pp_is_mps_schedule_on_the_tp_part(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 4, 1000, 64, 40, 80, 8);
    pb_pred_net net;
    make_net(&net, 8, 10, 10, 0);
    pb_pred_target t = {.strategy = PB_PRED_MESH, .devices = 8, .batch_global = 128, .microbatches = 2,
                        .threads = 1, .mesh_dp = 2, .mesh_tp = 2, .mesh_pp = 2};
    pb_pred_result r;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    double x = 0.0128, slot0 = 15 + x + x, slot1 = 15 + x + 2 * x;
    double sync = 1001500 * 4.0 / 10e6 + 4.0 / 10e6, opt = 8 / 4.0 + sync;
    assert_false(isnan(r.step_ms) || isnan(r.p2p_bytes) || isnan(r.allreduce_bytes));
    assert_float_equal(r.step_ms, slot0 + slot1 + slot1 + opt, 1e-9);
    assert_float_equal(r.bubble_ms, r.step_ms - (2 * (slot0 + slot1) + 2 * opt) / 2, 1e-5); /* cmocka compares floats */
    assert_float_equal(r.tp_comm_ms, 2 * 3 * x, 1e-12);
    assert_int_equal(r.tp_allreduces, 6);
    assert_float_equal(r.comm_exposed_ms, 2 * x + 3 * x + (x + 2 * x) + sync, 1e-9);
    /* rank 0's (stage 0's) volumes as the run's row: its two forward
     * all-reduces of 32 x 1000 on 2 ranks and its part's dp all-reduce;
     * the boundary's 64 rows of 1000 floats each way */
    assert_float_equal(r.allreduce_bytes, 2 * 32000 * 4.0 + 1001500 * 4.0, 1e-6);
    assert_float_equal(r.p2p_bytes, 2 * 64 * 1000 * 4.0, 1e-6);
    /* more stages than layers, and a gpt, are refused */
    t.mesh_pp = 8;
    t.mesh_dp = 1;
    t.devices = 16;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_ERR_USAGE);
    pb_error_clear();
}

/* The mesh dp3 x tp2 with --zero-stage on a 4-layer MLP of width 1000:
 * zero's model over the dp group on a rank's tp part (column layers
 * 1000 x 500 + 500, row layers 500 x 1000 + 1000), tp's three all-reduces
 * of 30 rows x 1000 and the loss's added; hand figures at 10 GB/s, no
 * latency. A gpt is refused. */
static void test_mesh_zero_is_zero_on_the_tp_part(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 4, 1000, 30, 40, 80, 8);
    pb_pred_net net;
    make_net(&net, 8, 10, 10, 0);
    double c0 = ceil(500500.0 / 3), c1 = 501000.0 / 3, S = 2 * (c0 + c1);
    double tp_ms = 3 * (30 * 1000 * 4.0) / 10e6; /* a ring of 2: 2 (n-1)/n of the bytes, once */
    double loss_ms = 2.0 * 2 / 3 * 4 / 10e6;
    for (int z = 1; z <= 3; z++) {
        pb_pred_target t = {.strategy = PB_PRED_MESH, .devices = 6, .batch_global = 90, .zero_stage = z,
                            .bucket_mb = 1, .threads = 1, .mesh_dp = 3, .mesh_tp = 2, .mesh_pp = 1};
        pb_pred_result r;
        assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
        assert_false(isnan(r.reduce_scatter_bytes) || isnan(r.reduce_scatter_ms)); /* NaN compares equal */
        assert_float_equal(r.reduce_scatter_bytes, 2 * S * 4, 1e-3);
        assert_float_equal(r.allgather_bytes, (z == 3 ? 2 * S - c1 : S) * 2 * 4, 1e-3);
        assert_float_equal(r.reduce_scatter_ms, 2 * S * 4 / 10e6, 1e-9);
        assert_float_equal(r.allreduce_bytes, 3 * 30 * 1000 * 4.0, 1e-6);
        assert_int_equal(r.tp_allreduces, 3);
        assert_float_equal(r.tp_comm_ms, tp_ms, 1e-12);
        /* half of fwd and bwd (every layer split), the optimizer over S */
        assert_float_equal(r.compute_ms, (40 + 80) / 2.0 + 8 * S / w.params, 1e-9);
        assert_float_equal(r.comm_ms, r.reduce_scatter_ms + r.allgather_ms + tp_ms + loss_ms, 1e-9);
        assert_float_equal(r.step_ms, r.compute_ms + r.comm_exposed_ms, 1e-9);
        assert_true(r.comm_exposed_ms >= tp_ms + loss_ms - 1e-12);
    }
    pb_pred_work g;
    make_gpt_work(&g, 10, 20, 4);
    pb_pred_target t = {.strategy = PB_PRED_MESH, .devices = 4, .batch_global = 16, .zero_stage = 1,
                        .bucket_mb = 25, .threads = 1, .mesh_dp = 2, .mesh_tp = 2, .mesh_pp = 1};
    pb_pred_result r;
    assert_int_equal(pb_predict_one(&g, &net, &t, &r), PB_ERR_USAGE);
    pb_error_clear();
}

/* Two single rows at 64 and 256 rows: a phase at b rows is the line
 * through them (a fixed part, the weights streamed once, plus a per-row
 * part), not the nearest row scaled; one row, or two whose line has no
 * fixed part, scale proportionally. */
static void test_rows_cost_the_two_measured_batches_line(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 4, 1000, 64, 20, 40, 3);
    w.single[w.nsingle++] = (pb_pred_single){.threads = 1, .batch = 256, .fwd_ms = 50, .bwd_ms = 100, .opt_ms = 3};
    pb_pred_phases p;
    pb_pred_single_phases(&w, 128, 1, &p);
    /* fwd: 30 / 192 a row, 10 fixed: 10 + 20 at 128; bwd twice that */
    assert_float_equal(p.fwd, 30, 1e-9);
    assert_float_equal(p.bwd, 60, 1e-9);
    assert_float_equal(p.opt, 3, 0);
    /* beyond the measured rows the line still holds: 32 rows */
    pb_pred_single_phases(&w, 32, 1, &p);
    assert_float_equal(p.fwd, 15, 1e-9);
    /* ddp on 2 ranks of 128 rows each takes the line's figure */
    pb_pred_net net;
    make_net(&net, 8, 1e6, 1e6, 0);
    pb_pred_target t = {.strategy = PB_PRED_DDP, .devices = 2, .batch_global = 256, .bucket_mb = 25, .threads = 1};
    pb_pred_result r;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(r.compute_ms, 30 + 60 + 3, 1e-3);
    /* rows that cost less per row at fewer rows (noise): proportional */
    w.single[1].fwd_ms = 90;
    pb_pred_single_phases(&w, 128, 1, &p);
    assert_float_equal(p.fwd, 40, 1e-9);
    /* one row: proportional */
    w.nsingle = 1;
    pb_pred_single_phases(&w, 128, 1, &p);
    assert_float_equal(p.fwd, 40, 1e-9);
}

/* 1F1B: GPipe's step and bubble, fewer activations held */
static void test_1f1b_same_step_less_memory(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 4, 256, 64, 40, 80, 0);
    pb_pred_net net;
    make_net(&net, 8, 1e9, 1e9, 0);
    pb_pred_target t = {.strategy = PB_PRED_MP, .devices = 2, .batch_global = 64, .microbatches = 8, .threads = 1};
    pb_pred_result g, f;
    assert_int_equal(pb_predict_one(&w, &net, &t, &g), PB_OK);
    t.one_f_one_b = true;
    assert_int_equal(pb_predict_one(&w, &net, &t, &f), PB_OK);
    assert_float_equal(f.step_ms, g.step_ms, 1e-9);
    assert_float_equal(f.bubble_frac, 1.0 / 9, 1e-9);
    assert_true(f.mem_mb < g.mem_mb);
}

static void test_dp_goes_through_device_zero(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 2, 1000, 100, 10, 20, 5);
    pb_pred_net net;
    make_net(&net, 8, 10, 10, 0);
    pb_pred_target t = {.strategy = PB_PRED_DP, .devices = 4, .batch_global = 100, .threads = 1};
    pb_pred_result r;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    double pbytes = 2 * (1000.0 * 1000 + 1000) * 4, rows_b = 25 * 1000 * 4.0;
    /* broadcast and reduce of the parameters (S / B each), and three
     * (n-1) transfers of a quarter batch through device 0 */
    double comm = 2 * pbytes / 10e6 + 3 * 3 * rows_b / 10e6;
    assert_float_equal(r.comm_ms, comm, 1e-6);
    assert_float_equal(r.comm_exposed_ms, comm, 1e-9);
    /* compute: a quarter of fwd and bwd, the optimizer whole on device 0 */
    assert_float_equal(r.step_ms, 7.5 + 5 + comm, 1e-6);
    /* across nodes dp is refused */
    t.devices = 16;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_ERR_USAGE);
    pb_error_clear();
}

static void test_cpu_devices_share_cores(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 2, 100, 100, 10, 20, 2);
    snprintf(w.backend, sizeof w.backend, "cpu");
    w.nsingle = 2;
    w.single[1] = (pb_pred_single){.threads = 2, .batch = 100, .fwd_ms = 6, .bwd_ms = 12, .opt_ms = 1};
    pb_pred_phases p;
    /* the row of the thread count asked for; a batch scales fwd and bwd */
    pb_pred_single_phases(&w, 50, 2, &p);
    assert_float_equal(p.fwd, 3, 1e-12);
    assert_float_equal(p.opt, 1, 1e-12);
    /* 4 threads: the nearest row (2) scaled by the cores: half */
    pb_pred_single_phases(&w, 100, 4, &p);
    assert_float_equal(p.bwd, 6, 1e-12);
    pb_pred_net net;
    make_net(&net, 64, 1, 1, 0);
    net.cores_per_node = 2;
    /* ddp on 4 ranks of 1 thread on 2 cores: processes of their own, each
     * at half its 1-thread speed */
    pb_pred_target t = {.strategy = PB_PRED_DDP, .devices = 4, .batch_global = 100, .bucket_mb = 25, .threads = 0};
    pb_pred_result r;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_int_equal(r.threads, 1);
    assert_float_equal(r.compute_ms, 2 * (2.5 + 5 + 2), 1e-6);
    /* no spare core: the all-reduce's work is not hidden */
    assert_true(r.comm_ms > 0);
    assert_float_equal(r.comm_exposed_ms, r.comm_ms, 1e-12);
    /* efficiency against the same cores: single at 2 threads, whole batch */
    assert_float_equal(r.efficiency, 19.0 / r.step_ms, 1e-9);
    /* 3 ranks on 2 cores: one core holds two of them, and the step is
     * theirs (x2 on 34 rows each, not x1.5) */
    t.devices = 3;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(r.compute_ms, 2 * (10 * 0.34 + 20 * 0.34 + 2), 1e-6);
    t.devices = 4;
    /* 2 ranks are bound to a core each (Open MPI's default for np <= 2):
     * 1 thread whatever --threads says */
    t.devices = 2;
    t.threads = 2;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(r.compute_ms, 5 + 10 + 2, 1e-6);
    /* dp's devices are threads of one process: 2 of 1 thread have a core
     * each and run at their own pace, 15, whatever single on both cores
     * measured; the optimizer on device 0 alone */
    t.strategy = PB_PRED_DP;
    t.threads = 1;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(r.compute_ms, 15 + 2, 1e-6);
    /* 2 of 2 threads want 4 cores of 2: together at most the node's
     * capacity, single on both cores: 2 x (3 + 6) = 18 where one device
     * alone would take 9; the optimizer at 2 threads, 1 */
    t.threads = 2;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(r.compute_ms, 18 + 1, 1e-6);
    t.threads = 1;
    /* on a 16-core node nothing is shared */
    net.cores_per_node = 16;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(r.compute_ms, 15 + 2, 1e-6);
}

/* Devices taking turns on a core (more ranks or 1-thread dp devices than
 * cores) at the pace --single-shared measured: its step over twice the
 * 1-thread row's at those rows (x2.27 for two mlp-s runs on one core),
 * never under exactly the share; nothing changes without it, nor where
 * each device has a core. */
static void test_shared_cores_pace(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 2, 100, 100, 10, 20, 2);
    snprintf(w.backend, sizeof w.backend, "cpu");
    w.single[0].step_ms = 32;
    w.nsingle = 2;
    w.single[1] = (pb_pred_single){.threads = 2, .batch = 100, .fwd_ms = 6, .bwd_ms = 12, .opt_ms = 1, .step_ms = 19};
    assert_float_equal(pb_pred_shared_pace(&w, 100), 1, 0);
    pb_pred_net net;
    make_net(&net, 64, 1, 1, 0);
    net.cores_per_node = 2;
    pb_pred_target t = {.strategy = PB_PRED_DDP, .devices = 4, .batch_global = 400, .bucket_mb = 25};
    pb_pred_result alone4, alone2, dp4;
    assert_int_equal(pb_predict_one(&w, &net, &t, &alone4), PB_OK);
    t.devices = 2;
    assert_int_equal(pb_predict_one(&w, &net, &t, &alone2), PB_OK);
    t.strategy = PB_PRED_DP;
    t.devices = 4;
    t.threads = 1;
    assert_int_equal(pb_predict_one(&w, &net, &t, &dp4), PB_OK);

    /* two to a core took 80 ms a step at 100 rows: 1.25 x the share */
    w.nshared = 1;
    w.shared[0] = (pb_pred_single){.threads = 1, .batch = 100, .fwd_ms = 25, .bwd_ms = 50, .opt_ms = 5, .step_ms = 80};
    assert_float_equal(pb_pred_shared_pace(&w, 100), 1.25, 1e-12);
    assert_float_equal(pb_pred_shared_pace(&w, 50), 1.25, 1e-12); /* the nearest rows */
    pb_pred_result r;
    t.strategy = PB_PRED_DDP;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    /* ddp on 4 ranks, 100 rows each: 2 x (10 + 20 + 2) becomes 1.25 x that */
    assert_float_equal(alone4.compute_ms, 2 * (10 + 20 + 2), 1e-6);
    assert_float_equal(r.compute_ms, 1.25 * alone4.compute_ms, 1e-6);
    assert_float_equal(r.step_ms - r.compute_ms, alone4.step_ms - alone4.compute_ms, 1e-9);
    /* dp's 4 devices of 1 thread take turns too: fwd + bwd at the node's
     * capacity, 4 x 18 / 30 = 2.4 x their 30 ms alone, times the pace;
     * the optimizer (2) on device 0 as before */
    t.strategy = PB_PRED_DP;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(dp4.compute_ms, 2.4 * 30 + 2, 1e-6);
    assert_float_equal(r.compute_ms, 2.4 * 30 * 1.25 + 2, 1e-6);
    /* 2 ranks on 2 cores: a core each, nothing shared */
    t.strategy = PB_PRED_DDP;
    t.devices = 2;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(r.step_ms, alone2.step_ms, 1e-12);
    /* 16 cores: 4 ranks share nothing */
    net.cores_per_node = 16;
    t.devices = 4;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    net.cores_per_node = 2;
    assert_float_equal(r.compute_ms, 10 + 20 + 2, 1e-6);
    /* faster than twice alone (noise): exactly the share, never less */
    w.shared[0].step_ms = 60;
    assert_float_equal(pb_pred_shared_pace(&w, 100), 1, 0);
    /* no 1-thread row at the shared row's rows: no pace to read */
    w.shared[0].step_ms = 80;
    w.shared[0].batch = 64;
    assert_float_equal(pb_pred_shared_pace(&w, 100), 1, 0);

    /* mp's waves: 4 stages on 2 cores put two on a core in a full slot,
     * at the pace of their microbatch's rows */
    pb_pred_work w4;
    make_work(&w4, 4, 100, 100, 10, 20, 2);
    snprintf(w4.backend, sizeof w4.backend, "cpu");
    w4.single[0].step_ms = 32;
    pb_pred_target mt = {.strategy = PB_PRED_MP, .devices = 4, .batch_global = 400, .microbatches = 4, .threads = 1};
    pb_pred_result plain, paced;
    assert_int_equal(pb_predict_one(&w4, &net, &mt, &plain), PB_OK);
    w4.nshared = 1;
    w4.shared[0] = (pb_pred_single){.threads = 1, .batch = 100, .step_ms = 80};
    assert_int_equal(pb_predict_one(&w4, &net, &mt, &paced), PB_OK);
    assert_true(paced.step_ms > plain.step_ms);
    /* 1 microbatch: one stage at a time, none shares its core */
    mt.microbatches = 1;
    assert_int_equal(pb_predict_one(&w4, &net, &mt, &paced), PB_OK);
    w4.nshared = 0;
    assert_int_equal(pb_predict_one(&w4, &net, &mt, &plain), PB_OK);
    assert_float_equal(paced.step_ms, plain.step_ms, 1e-12);
}

static void test_repeats_pool_by_median(void **state)
{
    (void)state;
    const char *text = "strategy,status,workload,backend,precision,optimizer,in,hidden,layers,classes,batch_global,"
                       "threads,load_ms,h2d_ms,fwd_ms,bwd_ms,opt_ms,step_ms_mean\n"
                       "single,ok,w,cpu,fp32,sgd,10,10,2,10,8,1,0,0,10,20,1,31\n"
                       "single,ok,w,cpu,fp32,sgd,10,10,2,10,8,1,0,0,50,90,1,141\n"
                       "single,ok,w,cpu,fp32,sgd,10,10,2,10,8,1,0,0,12,22,1,35\n"
                       "single,failed,w,cpu,fp32,sgd,10,10,2,10,8,1,0,0,1,1,1,3\n"
                       "ddp,ok,w,cpu,fp32,sgd,10,10,2,10,8,1,0,0,1,1,1,3\n";
    pb_csv c;
    assert_int_equal(pb_csv_parse("t.csv", text, strlen(text), &c), PB_OK);
    pb_pred_work w;
    assert_int_equal(pb_pred_read_single(&c, "t.csv", PB_PRED_STEP_MEAN, &w), PB_OK);
    /* one (threads, batch): the median of each phase, the slow repeat and
     * the failed run left out */
    assert_int_equal(w.nsingle, 1);
    assert_float_equal(w.single[0].fwd_ms, 12, 1e-12);
    assert_float_equal(w.single[0].bwd_ms, 22, 1e-12);
    assert_float_equal(w.params, 2 * (100 + 10), 1e-12);
    pb_csv_free(&c);
}

/* single's SGD momentum rides in its GEMMs on the cpu backend (opt_fused):
 * every other strategy runs the whole optimizer, 5/3 of single's (5 passes
 * over the parameters' bytes instead of 3); single keeps its own */
static void test_other_strategies_run_the_unfused_optimizer(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 4, 1024, 128, 20, 40, 3);
    pb_pred_net net;
    make_net(&net, 8, 1e6, 1e6, 0);
    pb_pred_target t = {.strategy = PB_PRED_DDP, .devices = 2, .batch_global = 256, .bucket_mb = 25, .threads = 1};
    pb_pred_result fused, plain;
    w.opt_fused = false;
    assert_int_equal(pb_predict_one(&w, &net, &t, &plain), PB_OK);
    w.opt_fused = true;
    assert_int_equal(pb_predict_one(&w, &net, &t, &fused), PB_OK);
    assert_float_equal(fused.compute_ms - plain.compute_ms, 3 * (5.0 / 3 - 1), 1e-9);
    assert_float_equal(w.single[0].opt_ms, 3, 0); /* the inputs stay as measured */
    pb_pred_target s = {.strategy = PB_PRED_SINGLE, .devices = 1, .batch_global = 128, .threads = 1};
    assert_int_equal(pb_predict_one(&w, &net, &s, &fused), PB_OK);
    assert_float_equal(fused.step_ms, 20 + 40 + 3, 1e-9);
}

/* A thread count measured at one batch only (single at every core, the
 * whole batch) costs rows as a count measured at several does: at 64 rows
 * the 2-thread row times 1 thread's 64/256 ratio, not a quarter of it */
static void test_rows_at_a_thread_count_of_one_batch(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 4, 1000, 64, 20, 40, 3);
    w.single[w.nsingle++] = (pb_pred_single){.threads = 1, .batch = 256, .fwd_ms = 50, .bwd_ms = 100, .opt_ms = 3};
    w.single[w.nsingle++] = (pb_pred_single){.threads = 2, .batch = 256, .fwd_ms = 30, .bwd_ms = 60, .opt_ms = 2};
    pb_pred_phases p;
    pb_pred_single_phases(&w, 64, 2, &p);
    assert_float_equal(p.fwd, 30 * 20.0 / 50, 1e-9);
    assert_float_equal(p.bwd, 60 * 40.0 / 100, 1e-9);
    pb_pred_single_phases(&w, 256, 2, &p); /* the measured batch itself */
    assert_float_equal(p.fwd, 30, 1e-12);
    /* no count measured at two batches: in proportion */
    w.single[1] = w.single[2];
    w.nsingle = 2;
    pb_pred_single_phases(&w, 128, 2, &p);
    assert_float_equal(p.fwd, 15, 1e-9);
}

/* mp's microbatches run their GEMMs at B/m rows, and on shared cores more
 * stages than cores leave two on one core: the step is at least m times
 * single's fwd and bwd on all the cores at those rows (the node's floor),
 * and at least the forwards' and backwards' waves slot by slot, each at the
 * pace of its busiest core */
static void test_mp_on_shared_cores(void **state)
{
    (void)state;
    pb_pred_work w;
    make_work(&w, 4, 1000, 64, 20, 40, 0);
    w.single[w.nsingle++] = (pb_pred_single){.threads = 1, .batch = 256, .fwd_ms = 50, .bwd_ms = 100};
    w.single[w.nsingle++] = (pb_pred_single){.threads = 2, .batch = 256, .fwd_ms = 30, .bwd_ms = 60};
    pb_pred_net net;
    make_net(&net, 8, 1e9, 1e9, 0); /* p2p free */
    net.cores_per_node = 2;
    pb_pred_target t = {.strategy = PB_PRED_MP, .devices = 4, .batch_global = 256, .microbatches = 4, .threads = 1};
    pb_pred_result r;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    /* a stage's slot at 64 rows, 1 thread: fwd 20 / 4, bwd 40 / 4; 1, 2,
     * 3, 4, 3, 2, 1 stages in the waves' slots, on 2 cores 1, 1, 2, 2, 2,
     * 1, 1 a core: 10 x (5 + 10) = 150, above the floor 4 x (12 + 24) */
    assert_float_equal(r.step_ms, 150, 1e-6);
    /* a node whose second core adds little: the floor binds, at the
     * microbatches' rows (4 x (40 + 80) x 20 / 50 at 64 rows) */
    w.single[2].fwd_ms = 100;
    w.single[2].bwd_ms = 200;
    assert_int_equal(pb_predict_one(&w, &net, &t, &r), PB_OK);
    assert_float_equal(r.step_ms, 4 * (40 + 80), 1e-6);
}

/* --step median: an input row's phases scaled by its step_ms_p50 /
 * step_ms_mean (a typical step), and the runs judged by step_ms_p50 */
static void test_typical_step(void **state)
{
    (void)state;
    const char *text = "strategy,status,workload,backend,precision,optimizer,momentum,in,hidden,layers,classes,"
                       "batch_global,threads,load_ms,h2d_ms,fwd_ms,bwd_ms,opt_ms,step_ms_mean,step_ms_p50\n"
                       "single,ok,w,cpu,fp32,sgd,0.9,10,10,2,10,8,1,0,0,12,24,4,40,30\n"
                       "ddp,ok,w,cpu,fp32,sgd,0.9,10,10,2,10,8,1,0,0,12,24,4,50,20\n";
    pb_csv c;
    assert_int_equal(pb_csv_parse("t.csv", text, strlen(text), &c), PB_OK);
    pb_pred_work w;
    assert_int_equal(pb_pred_read_single(&c, "t.csv", PB_PRED_STEP_MEDIAN, &w), PB_OK);
    assert_float_equal(w.single[0].fwd_ms, 9, 1e-12);
    assert_float_equal(w.single[0].bwd_ms, 18, 1e-12);
    assert_float_equal(w.single[0].opt_ms, 3, 1e-12);
    assert_true(w.opt_fused); /* sgd with momentum on the cpu */
    pb_pred_rows rows = {0};
    assert_int_equal(pb_pred_targets_against(&c, "t.csv", &w, PB_PRED_STEP_MEDIAN, &rows), PB_OK);
    assert_int_equal((int)rows.n, 2); /* single's row is a run too */
    assert_int_equal(rows.v[1].t.strategy, PB_PRED_DDP);
    assert_float_equal(rows.v[0].measured_step_ms, 30, 1e-12);
    assert_float_equal(rows.v[1].measured_step_ms, 20, 1e-12);
    free(rows.v);
    rows = (pb_pred_rows){0};
    assert_int_equal(pb_pred_read_single(&c, "t.csv", PB_PRED_STEP_MEAN, &w), PB_OK);
    assert_float_equal(w.single[0].fwd_ms, 12, 1e-12);
    assert_int_equal(pb_pred_targets_against(&c, "t.csv", &w, PB_PRED_STEP_MEAN, &rows), PB_OK);
    assert_float_equal(rows.v[1].measured_step_ms, 50, 1e-12);
    free(rows.v);
    pb_csv_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_and_hierarchical_allreduce),
        cmocka_unit_test(test_measured_fit_is_used_and_extrapolated),
        cmocka_unit_test(test_ddp_buckets_overlap_backward),
        cmocka_unit_test(test_mp_bubble_is_gpipe),
        cmocka_unit_test(test_dp_goes_through_device_zero),
        cmocka_unit_test(test_zero_volumes_memory_and_gathers),
        cmocka_unit_test(test_tp_allreduces_and_split_compute),
        cmocka_unit_test(test_tp_on_gpt_splits_by_flops),
        cmocka_unit_test(test_block_strategies_on_gpt),
        cmocka_unit_test(test_mesh_is_tp_then_dp_sync),
        cmocka_unit_test(test_mesh_zero_is_zero_on_the_tp_part),
        cmocka_unit_test(test_mesh_pp_is_mps_schedule_on_the_tp_part),
        cmocka_unit_test(test_rows_cost_the_two_measured_batches_line),
        cmocka_unit_test(test_1f1b_same_step_less_memory),
        cmocka_unit_test(test_cpu_devices_share_cores),
        cmocka_unit_test(test_shared_cores_pace),
        cmocka_unit_test(test_repeats_pool_by_median),
        cmocka_unit_test(test_other_strategies_run_the_unfused_optimizer),
        cmocka_unit_test(test_rows_at_a_thread_count_of_one_batch),
        cmocka_unit_test(test_mp_on_shared_cores),
        cmocka_unit_test(test_typical_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
