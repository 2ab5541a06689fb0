/* Which device each rank opens and calibrates, and what each rank's loader
 * generates, with the device layer faked (no GPU here):
 *   - pb_rank_device, the one rank-to-GPU rule: one visible device chosen by
 *     the launcher, as many as the node's ranks, more, fewer, a one-GPU node,
 *     a --device-map;
 *   - the ordinals calibration opens: a ddp rank its own device, dp/mp each
 *     distinct device of --device-map, the cpu once; the row's mean, min and
 *     max peak;
 *   - a rank's loader fills its shard alone, with exactly single's samples;
 *     loader threads share the node's cores among its ranks. */
#include "tests/common/test_util.h"

#include <math.h>

#include "harness/calibrate.h"
#include "harness/config.h"
#include "harness/devmap.h"
#include "harness/loader.h"
#include "harness/registry.h"
#include "strategies/input.h"
#include "workloads/mlp.h"

/* --- pb_rank_device ------------------------------------------------------------ */

static int device_of(int visible, int local_rank, int local_ranks, const char *cuda_visible)
{
    pb_rank_view v = {.visible = visible, .local_rank = local_rank, .local_ranks = local_ranks,
                      .rank = local_rank, .cuda_visible = cuda_visible};
    int ordinal = -7;
    pb_error_clear();
    pb_status st = pb_rank_device(&v, &ordinal);
    if (st != PB_OK) {
        assert_int_equal(pb_status_exit_code(st), 2);
        assert_int_equal(ordinal, -7); /* nothing written */
        return -1;
    }
    return ordinal;
}

/* srun --gpus-per-task=1, --gpu-bind, a per-rank CUDA_VISIBLE_DEVICES: each
 * of 8 ranks sees one device, its own: device 0 of its view */
static void test_one_visible_device(void **state)
{
    (void)state;
    for (int r = 0; r < 8; r++) assert_int_equal(device_of(1, r, 8, "3"), 0);
    /* Slurm's cgroups renumber: every rank sees "0" */
    for (int r = 0; r < 8; r++) assert_int_equal(device_of(1, r, 8, "0"), 0);
    assert_int_equal(device_of(1, 0, 1, NULL), 0); /* one rank, one GPU */
}

/* mpirun on a node: every rank sees the node's GPUs and takes its local rank */
static void test_as_many_as_local_ranks(void **state)
{
    (void)state;
    for (int r = 0; r < 4; r++) assert_int_equal(device_of(4, r, 4, NULL), r);
    for (int r = 0; r < 4; r++) assert_int_equal(device_of(4, r, 4, "0,1,2,3"), r);
}

static void test_more_than_local_ranks(void **state)
{
    (void)state;
    for (int r = 0; r < 2; r++) assert_int_equal(device_of(8, r, 2, NULL), r);
}

/* fewer than the node's ranks (but more than one), or one device that no
 * launcher chose (a one-GPU node given 2 ranks): a usage error naming the
 * counts and CUDA_VISIBLE_DEVICES, on one line */
static void test_fewer_than_local_ranks(void **state)
{
    (void)state;
    assert_int_equal(device_of(2, 3, 4, "0,1"), -1);
    const char *msg = pb_error_message();
    assert_non_null(strstr(msg, "this node runs 4 ranks and rank 3 sees 2 CUDA devices (CUDA_VISIBLE_DEVICES=0,1)"));
    assert_non_null(strstr(msg, "srun --gpus-per-task=1"));
    assert_null(strchr(msg, '\n'));
    assert_int_equal(device_of(1, 1, 2, NULL), -1);
    assert_non_null(strstr(pb_error_message(), "sees 1 CUDA device (CUDA_VISIBLE_DEVICES=unset)"));
    assert_int_equal(device_of(1, 1, 2, ""), -1);
    assert_int_equal(device_of(3, 0, 4, NULL), -1);
}

/* a --device-map (ddp's test-only ranks sharing a GPU): rank -> ordinal of
 * the visible devices, repeats allowed, none beyond them */
static void test_device_map(void **state)
{
    (void)state;
    int map[4] = {0, 0, 0, 0}, ordinal = -1;
    for (int r = 0; r < 4; r++) {
        pb_rank_view v = {.visible = 1, .local_rank = r, .local_ranks = 4, .rank = r, .map = map, .n_map = 4};
        assert_int_equal(pb_rank_device(&v, &ordinal), PB_OK);
        assert_int_equal(ordinal, 0);
    }
    int two[2] = {1, 0};
    pb_rank_view v = {.visible = 2, .local_rank = 0, .local_ranks = 1, .rank = 0, .map = two, .n_map = 2};
    assert_int_equal(pb_rank_device(&v, &ordinal), PB_OK);
    assert_int_equal(ordinal, 1); /* global rank 0, alone on its node */
    v.visible = 1;
    pb_error_clear();
    assert_int_equal(pb_status_exit_code(pb_rank_device(&v, &ordinal)), 2);
    assert_non_null(strstr(pb_error_message(), "--device-map: rank 0's device 1 does not exist"));
}

/* --- calibration's devices, with a fake backend -------------------------------- */

static int opened[16], n_opened;

static pb_status fake_open(const pb_device_opts *opts, int ordinal, pb_device **dev)
{
    (void)opts;
    opened[n_opened++] = ordinal;
    *dev = (pb_device *)(intptr_t)(ordinal + 1); /* never dereferenced */
    return PB_OK;
}
static void fake_close(pb_device *dev) { (void)dev; }
static pb_status fake_info(pb_device *dev, pb_device_info *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "fake %d", (int)(intptr_t)dev - 1);
    return PB_OK;
}
/* device d peaks at 100 + 10 d TFLOP/s */
static pb_status fake_calibrate(pb_device *dev, double *tflops)
{
    *tflops = 100.0 + 10.0 * ((int)(intptr_t)dev - 1);
    return PB_OK;
}

/* the step's GEMM sets take these ms in turn (NULL: no gemm_reference) */
static const double *gemm_set_ms;
static int gemm_sets_done;
static pb_status fake_gemm_reference(pb_device *dev, int n_layers, const int *in, const int *out, int m,
                                     float dw_beta, bool first_dx, int reps, double *ms)
{
    (void)dev, (void)n_layers, (void)in, (void)out, (void)m, (void)dw_beta, (void)first_dx, (void)reps;
    *ms = gemm_set_ms[gemm_sets_done++];
    return PB_OK;
}

static pb_backend fake_backend(bool host_is_device)
{
    pb_backend be = {0};
    be.name = "fake";
    be.host_is_device = host_is_device;
    be.open = fake_open;
    be.close = fake_close;
    be.info = fake_info;
    be.calibrate = fake_calibrate;
    if (gemm_set_ms) be.gemm_reference = fake_gemm_reference;
    return be;
}

static pb_config config_of(char *const *args)
{
    pb_config cfg;
    pb_config_defaults(&cfg);
    int argc = 0;
    while (args[argc]) argc++;
    bool help = false;
    assert_int_equal(pb_config_parse(&cfg, argc, (char **)args, &help), PB_OK);
    cfg.quiet = true;
    return cfg;
}

/* Calibrates as pb_calibrate would for cfg on the fake backend; the
 * ordinals opened land in opened[]. */
static pb_calibration calibrate_fake(char *const *args, bool host_is_device, int rank_device)
{
    pb_config cfg = config_of(args);
    pb_backend be = fake_backend(host_is_device);
    static pb_model model;
    assert_int_equal(pb_model_of(&cfg, &model), PB_OK);
    int ordinals[PB_MAX_STAGES];
    int n = pb_calibrate_ordinals(&cfg, &be, rank_device, ordinals);
    pb_calibration cal;
    n_opened = 0;
    assert_int_equal(pb_calibrate_on(&cfg, &model, &be, ordinals, n, &cal), PB_OK);
    assert_int_equal(cal.n, n);
    return cal;
}

/* each ddp rank opens its own device, never device 0 for all */
static void test_ddp_rank_calibrates_its_device(void **state)
{
    (void)state;
    char *args[] = {"--strategy", "ddp", "--gpus", "4", NULL};
    for (int d = 0; d < 4; d++) {
        pb_calibration cal = calibrate_fake(args, false, d);
        assert_int_equal(n_opened, 1);
        assert_int_equal(opened[0], d);
        assert_true(cal.peak_tflops == 100.0 + 10.0 * d);
        assert_true(cal.peak_min == cal.peak_tflops && cal.peak_max == cal.peak_tflops);
    }
}

/* dp and mp: each distinct physical device of --device-map once; the row's
 * peak is their mean, with the spread */
static void test_one_process_calibrates_each_device(void **state)
{
    (void)state;
    char *dp[] = {"--strategy", "dp", "--gpus", "4", "--device-map", "2,2,1,3", NULL};
    pb_calibration cal = calibrate_fake(dp, false, 0);
    assert_int_equal(n_opened, 3);
    assert_int_equal(opened[0], 2);
    assert_int_equal(opened[1], 1);
    assert_int_equal(opened[2], 3);
    assert_true(fabs(cal.peak_tflops - 120.0) < 1e-9);
    assert_true(cal.peak_min == 110.0 && cal.peak_max == 130.0);
    assert_string_equal(cal.device, "fake 2");
    char *mp[] = {"--strategy", "mp", "--gpus", "2", NULL};
    calibrate_fake(mp, false, 0);
    assert_int_equal(n_opened, 2);
    assert_int_equal(opened[0], 0);
    assert_int_equal(opened[1], 1);
    /* the cpu's devices are all the host: once */
    calibrate_fake(mp, true, 0);
    assert_int_equal(n_opened, 1);
}

/* The peak is the best of the square GEMM and the step's own GEMMs,
 * theirs counted in model FLOPs over the fastest set: a peak below what the
 * step's GEMMs reach alone would let mfu pass 1 (it read 1.02 to 1.07 on
 * the CPU). gemm_ms stays the median set. */
static void test_peak_includes_the_step_gemms(void **state)
{
    (void)state;
    char *args[] = {"--workload", "mlp-xs", NULL};
    pb_config cfg = config_of(args);
    pb_layout layout;
    assert_int_equal(pb_mlp_layout(&cfg.shape, &layout), PB_OK);
    double flops = pb_mlp_step_flops(&layout, cfg.shape.batch);
    /* the fastest set runs the step's GEMMs at 250 TFLOP/s, above the fake
     * square's 100 */
    double fast = flops / 250e12 * 1e3;
    double sets[5] = {3 * fast, 2 * fast, fast, 4 * fast, 5 * fast};
    gemm_set_ms = sets;
    gemm_sets_done = 0;
    pb_calibration cal = calibrate_fake(args, true, 0);
    assert_int_equal(gemm_sets_done, 5);
    assert_true(fabs(cal.peak_tflops - 250.0) < 1e-6);
    assert_true(fabs(cal.gemm_ms - 3 * fast) < 1e-12);
    /* slower than the square: the square's peak stands */
    double slow[5] = {9 * fast, 8 * fast, 7 * fast, 8 * fast, 9 * fast};
    gemm_set_ms = slow;
    gemm_sets_done = 0;
    cal = calibrate_fake(args, true, 0);
    assert_true(cal.peak_tflops == 100.0);
    gemm_set_ms = NULL;
}

/* the ranks' gathered peaks: mean, min, max; one unmeasured device leaves
 * the mean (and so mfu) empty rather than partial */
static void test_summarize(void **state)
{
    (void)state;
    pb_calibration cal;
    double peaks[4] = {400.0, 500.0, 600.0, 500.0}, gemm[4] = {2.0, 3.0, 1.0, NAN};
    pb_calibration_summarize(peaks, gemm, 4, &cal);
    assert_true(cal.peak_tflops == 500.0 && cal.peak_min == 400.0 && cal.peak_max == 600.0);
    assert_true(cal.gemm_ms == 3.0);
    peaks[1] = NAN;
    pb_calibration_summarize(peaks, gemm, 4, &cal);
    assert_true(isnan(cal.peak_tflops));
    assert_true(cal.peak_min == 400.0 && cal.peak_max == 600.0);
}

/* --- a rank's loader: its shard, nothing more ----------------------------------- */

static void test_loader_fills_shard_only(void **state)
{
    (void)state;
    char *args[] = {"--workload", "mlp-xs", "--batch", "30", NULL};
    pb_config cfg = config_of(args);
    pb_layout layout;
    assert_int_equal(pb_mlp_layout(&cfg.shape, &layout), PB_OK);
    static pb_model model;
    assert_int_equal(pb_model_of(&cfg, &model), PB_OK);
    const int steps = 4, b = cfg.shape.batch;
    size_t in = (size_t)layout.in;
    float *x = malloc((size_t)b * in * sizeof(float)), *protos = malloc((size_t)layout.classes * in * sizeof(float));
    int32_t *labels = malloc((size_t)b * sizeof(int32_t));
    assert_true(x && protos && labels);
    pb_data_prototypes(&layout, cfg.seed, protos);
    for (int ranks = 2; ranks <= 4; ranks += 2)
        for (int r = 0; r < ranks; r++) {
            int row0, rows;
            pb_input_shard(b, ranks, r, &row0, &rows);
            pb_loader *l = NULL;
            assert_int_equal(pb_loader_create(&pb_backend_cpu, &model, cfg.seed, row0, rows, steps, 3, &l), PB_OK);
            for (int s = 0; s < steps; s++) {
                pb_batch batch;
                assert_int_equal(pb_loader_next(l, s, &batch), PB_OK);
                assert_int_equal(batch.row0, row0);
                assert_int_equal(batch.count, rows);
                /* single's rows of the global batch, bit for bit */
                pb_data_fill(&layout, cfg.seed, s, 0, b, protos, x, labels);
                assert_memory_equal(batch.inputs, x + (size_t)row0 * in, (size_t)rows * in * sizeof(float));
                assert_memory_equal(batch.targets, labels + row0, (size_t)rows * sizeof(int32_t));
            }
            assert_int_equal(pb_loader_filled(l), (int64_t)steps * rows);
            pb_loader_destroy(l);
        }
    free(x);
    free(protos);
    free(labels);
}

static void test_loader_threads_share_cores(void **state)
{
    (void)state;
    assert_int_equal(pb_loader_workers_for(64, 1), 8);
    assert_int_equal(pb_loader_workers_for(64, 8), 7); /* 8 cores a rank, one drives the GPU */
    assert_int_equal(pb_loader_workers_for(32, 8), 3);
    assert_int_equal(pb_loader_workers_for(8, 8), 1);
    assert_int_equal(pb_loader_workers_for(4, 8), 1);
    assert_int_equal(pb_loader_workers_for(1, 1), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_visible_device),
        cmocka_unit_test(test_as_many_as_local_ranks),
        cmocka_unit_test(test_more_than_local_ranks),
        cmocka_unit_test(test_fewer_than_local_ranks),
        cmocka_unit_test(test_device_map),
        cmocka_unit_test(test_ddp_rank_calibrates_its_device),
        cmocka_unit_test(test_one_process_calibrates_each_device),
        cmocka_unit_test(test_summarize),
        cmocka_unit_test(test_peak_includes_the_step_gemms),
        cmocka_unit_test(test_loader_fills_shard_only),
        cmocka_unit_test(test_loader_threads_share_cores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
