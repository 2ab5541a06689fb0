/* End-to-end training through ./bench as a child process: the CSV row, the
 * phase accounting, the --dump arrays against the library's own generator,
 * determinism, AdamW, and a diverging run that must fail cleanly. */
#include "tests/common/test_csv.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <dirent.h>
#include <math.h>
#include <stdbool.h>

#include "harness/registry.h"
#include "workloads/mlp.h"

#define SEED 1234
#define BATCH 64 /* mlp-xs */

/* --- CSV: the header row names the columns ------------------------------ */



/* --- .npy: header dict and data ------------------------------------------ */

typedef struct npy {
    char *bytes;
    size_t size;
    char dict[512];
    const void *data;
    size_t data_bytes;
} npy;

static void npy_load(npy *a, const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s was not written", path);
    fseek(f, 0, SEEK_END);
    a->size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    a->bytes = malloc(a->size);
    assert_non_null(a->bytes);
    assert_int_equal(fread(a->bytes, 1, a->size, f), a->size);
    fclose(f);
    assert_true(a->size >= 10 && memcmp(a->bytes, "\x93NUMPY\x01\x00", 8) == 0);
    size_t hlen = (size_t)(unsigned char)a->bytes[8] | ((size_t)(unsigned char)a->bytes[9] << 8);
    assert_true(10 + hlen <= a->size && hlen < sizeof a->dict);
    memcpy(a->dict, a->bytes + 10, hlen);
    a->dict[hlen] = '\0';
    a->data = a->bytes + 10 + hlen;
    a->data_bytes = a->size - 10 - hlen;
}

/* The dtype and shape as numpy would read them, and the size that implies. */
static void npy_expect(const npy *a, const char *descr, const char *shape, size_t bytes)
{
    char want[128];
    snprintf(want, sizeof want, "'descr': '%s'", descr);
    if (!strstr(a->dict, want)) fail_msg("dtype: %s lacks %s", a->dict, want);
    snprintf(want, sizeof want, "'shape': %s", shape);
    if (!strstr(a->dict, want)) fail_msg("shape: %s lacks %s", a->dict, want);
    assert_int_equal(a->data_bytes, bytes);
}

static void npy_free(npy *a) { free(a->bytes); }

/* --- runs ----------------------------------------------------------------- */

typedef struct run {
    char *dir; /* holds r.csv and the dump folder d/ */
    char csv_path[256], dump[256];
    bench_result res;
} run;

/* bench --workload mlp-xs --iters 50 --warmup 0 --threads 1 --out DIR/r.csv
 *       --quiet --dump DIR/d [extra...]; an --iters or --warmup in extra
 *       replaces 50 or 0 (a flag may be given once) */
static run *bench_train(char *const extra[])
{
    run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->dir = make_temp_dir();
    snprintf(r->csv_path, sizeof r->csv_path, "%s/r.csv", r->dir);
    snprintf(r->dump, sizeof r->dump, "%s/d", r->dir);
    char *args[48] = {"--workload", "mlp-xs", "--threads", "1", "--out", r->csv_path, "--quiet", "--dump", r->dump};
    int n = 9;
    bool iters = false, warmup = false;
    for (int i = 0; extra && extra[i]; i++) {
        iters |= strcmp(extra[i], "--iters") == 0;
        warmup |= strcmp(extra[i], "--warmup") == 0;
    }
    if (!iters) {
        args[n++] = "--iters";
        args[n++] = "50";
    }
    if (!warmup) {
        args[n++] = "--warmup";
        args[n++] = "0";
    }
    for (int i = 0; extra && extra[i] && n < 47; i++) args[n++] = extra[i];
    args[n] = NULL;
    run_bench(&r->res, args);
    return r;
}

/* Removes the run's folder and everything bench wrote there. */
static void run_free(run *r)
{
    if (!r) return;
    const char *const dirs[] = {r->dump, r->dir};
    char path[1024];
    for (int i = 0; i < 2; i++) {
        DIR *d = opendir(dirs[i]);
        for (struct dirent *e; d && (e = readdir(d));) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(path, sizeof path, "%s/%s", dirs[i], e->d_name);
            unlink(path);
        }
        if (d) closedir(d);
        rmdir(dirs[i]);
    }
    free(r->dir);
    free(r);
}

/* Runs a test starts are registered here so the teardown removes them even
 * when an assertion ends the test early. */
typedef struct test_runs {
    run *r[2];
} test_runs;

static int setup_runs(void **state)
{
    *state = calloc(1, sizeof(test_runs));
    return *state ? 0 : -1;
}

static int teardown_runs(void **state)
{
    test_runs *t = *state;
    for (int i = 0; i < 2; i++) run_free(t->r[i]);
    free(t);
    return 0;
}

static run *keep(void **state, run *r)
{
    test_runs *t = *state;
    for (int i = 0; i < 2; i++)
        if (!t->r[i]) return t->r[i] = r;
    fail_msg("more than 2 runs in one test");
    return NULL;
}

static void expect_exit(const run *r, int code)
{
    if (r->res.exit_code != code)
        fail_msg("bench exited %d, expected %d; stderr:\n%s", r->res.exit_code, code, r->res.err);
}

/* The plain SGD run, shared by the tests that only read it. */
static run *sgd_run;

static int setup_sgd_run(void **state)
{
    (void)state;
    sgd_run = bench_train(NULL);
    return 0;
}

static int teardown_sgd_run(void **state)
{
    (void)state;
    run_free(sgd_run);
    return 0;
}

/* One ok row; the loss falls; the phases account for the step time. */
static void test_csv_row(void **state)
{
    (void)state;
    expect_exit(sgd_run, 0);
    csv c;
    csv_load(&c, sgd_run->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "ok");
    assert_string_equal(csv_get(&c, "workload"), "mlp-xs");
    assert_string_equal(csv_get(&c, "params"), "134154");
    assert_string_equal(csv_get(&c, "error"), "");
    double first = csv_num(&c, "loss_first"), last = csv_num(&c, "loss_last");
    /* 10 classes: an untrained model starts near ln 10 = 2.30 */
    assert_true(fabs(first - log(10.0)) < 0.2);
    if (!(last < 0.9 * first)) fail_msg("loss did not fall: %g -> %g", first, last);
    assert_true(csv_num(&c, "step_ms_p50") > 0.0);
    assert_true(csv_num(&c, "samples_per_s") > 0.0);
    assert_true(csv_num(&c, "step_ms_min") <= csv_num(&c, "step_ms_p50"));
    assert_true(csv_num(&c, "step_ms_p50") <= csv_num(&c, "step_ms_max"));

    /* single's step is load, h2d, fwd, bwd, opt back to back: their means
     * must add up to the measured step mean (5%: what falls between the
     * phases is a loss download and some clock reads) */
    expect_phases_add_up(&c);
    /* each compute phase has a span of its own: one timed under another's
     * name would leave its column 0 and the sum whole */
    static const char *const own[] = {"fwd_ms", "bwd_ms", "opt_ms"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (!(csv_num(&c, own[i]) > 0.0)) fail_msg("%s is %s, expected > 0", own[i], csv_get(&c, own[i]));
    csv_free(&c);
}

/* The dump holds what the run used: params_init from pb_mlp_init_params,
 * batch 0 from pb_data_fill at step 0, and trained final parameters. */
static void test_dump(void **state)
{
    (void)state;
    expect_exit(sgd_run, 0);
    pb_layout layout;
    assert_int_equal(pb_mlp_layout(&pb_find_workload("mlp-xs")->shape, &layout), PB_OK);
    size_t n = layout.n_params, in = (size_t)layout.in;
    npy init, final, x, labels;
    npy_load(&init, sgd_run->dump, "params_init.npy");
    npy_load(&final, sgd_run->dump, "params_final.npy");
    npy_load(&x, sgd_run->dump, "batch0_x.npy");
    npy_load(&labels, sgd_run->dump, "batch0_labels.npy");
    npy_expect(&init, "<f4", "(134154,)", n * sizeof(float));
    npy_expect(&final, "<f4", "(134154,)", n * sizeof(float));
    npy_expect(&x, "<f4", "(64, 256)", BATCH * in * sizeof(float));
    npy_expect(&labels, "<i4", "(64,)", BATCH * sizeof(int32_t));

    float *p = malloc(n * sizeof(float)), *proto = malloc((size_t)layout.classes * in * sizeof(float));
    float *bx = malloc(BATCH * in * sizeof(float));
    int32_t bl[BATCH];
    assert_true(p && proto && bx);
    pb_mlp_init_params(&layout, SEED, p);
    assert_memory_equal(init.data, p, n * sizeof(float));
    pb_data_prototypes(&layout, SEED, proto);
    pb_data_fill(&layout, SEED, 0, 0, BATCH, proto, bx, bl);
    assert_memory_equal(x.data, bx, BATCH * in * sizeof(float));
    assert_memory_equal(labels.data, bl, sizeof bl);

    /* training moved (nearly) every parameter, and to finite values */
    const float *f = final.data;
    size_t moved = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(isfinite(f[i]));
        moved += f[i] != p[i];
    }
    assert_true(moved > n / 2);
    free(p);
    free(proto);
    free(bx);
    npy_free(&init);
    npy_free(&final);
    npy_free(&x);
    npy_free(&labels);
}

/* The same command twice gives bitwise identical final parameters: data and
 * init are pure functions of the seed and one BLAS thread sums in order. */
static void assert_same_final_params(const run *x, const run *y)
{
    npy a, b;
    npy_load(&a, x->dump, "params_final.npy");
    npy_load(&b, y->dump, "params_final.npy");
    assert_int_equal(a.size, b.size);
    assert_memory_equal(a.bytes, b.bytes, a.size);
    npy_free(&a);
    npy_free(&b);
}

static void test_deterministic(void **state)
{
    expect_exit(sgd_run, 0);
    run *again = keep(state, bench_train(NULL));
    expect_exit(again, 0);
    assert_same_final_params(sgd_run, again);
}

/* Splitting each batch over several loader threads changes nothing: the
 * samples are pure functions of (seed, step, index). */
static void test_loader_threads_same_training(void **state)
{
    expect_exit(sgd_run, 0);
    char *const extra[] = {"--loader-threads", "3", NULL};
    run *split = keep(state, bench_train(extra));
    expect_exit(split, 0);
    assert_same_final_params(sgd_run, split);
}

/* The staged input path (copy slots, prefetch, conversion) that GPUs take
 * trains exactly as reading the loader's buffers in place does; the CPU
 * takes it only when the test-only PB_TEST_STAGE_INPUTS asks. */
static void test_staged_inputs_same_training(void **state)
{
    expect_exit(sgd_run, 0);
    setenv("PB_TEST_STAGE_INPUTS", "1", 1);
    run *staged = keep(state, bench_train(NULL));
    unsetenv("PB_TEST_STAGE_INPUTS");
    expect_exit(staged, 0);
    assert_same_final_params(sgd_run, staged);
}

static void test_adamw_loss_falls(void **state)
{
    char *const extra[] = {"--optimizer", "adamw", NULL};
    run *r = keep(state, bench_train(extra));
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "ok");
    assert_string_equal(csv_get(&c, "optimizer"), "adamw");
    assert_true(csv_num(&c, "lr") == 0.001); /* adamw's default */
    double first = csv_num(&c, "loss_first"), last = csv_num(&c, "loss_last");
    if (!(last < 0.9 * first)) fail_msg("adamw loss did not fall: %g -> %g", first, last);
    csv_free(&c);
}

/* lr 10 with heavy momentum diverges within ~10 steps on mlp-xs. The run
 * must exit 1, say why, and leave a failed row with no performance figures
 * that could pass for a measurement. */
/* Every phase is large on this shape (the loss a third of the step), so
 * the phases adding up to the step (5%) shows no work is timed in none:
 * single, and dp on 2 devices (its loss on device 0). Single's warmup
 * steps count in no mean: phases over 12 steps fell to 10/12 of the step. */
static void test_phases_cover_large_loss(void **state)
{
    char *const one[] = {PB_TEST_LARGE_LOSS_SHAPE, "--iters", "10", "--warmup", "2", NULL};
    char *const two[] = {PB_TEST_LARGE_LOSS_SHAPE, "--iters", "10", "--strategy", "dp", "--gpus", "2", NULL};
    for (int i = 0; i < 2; i++) {
        run *r = keep(state, bench_train(i ? two : one));
        expect_exit(r, 0);
        csv c;
        csv_load(&c, r->csv_path);
        expect_phases_add_up(&c);
        csv_free(&c);
    }
}

/* --calibrate (0.2 s on mlp-xs) fills peak_tflops and mfu: per device, for
 * single and for dp's 2 devices. Batch 8 keeps the step's GEMMs far from
 * the peak, so a loaded host does not push a correct mfu over 1. */
static void test_mfu_per_device(void **state)
{
    char *const one[] = {"--calibrate", "--batch", "8", "--iters", "10", NULL};
    char *const two[] = {"--calibrate", "--batch", "8", "--iters", "10", "--strategy", "dp", "--gpus", "2", NULL};
    for (int i = 0; i < 2; i++) {
        run *r = keep(state, bench_train(i ? two : one));
        expect_exit(r, 0);
        csv c;
        csv_load(&c, r->csv_path);
        assert_int_equal((int)csv_num(&c, "devices"), i ? 2 : 1);
        expect_mfu_per_device(&c);
        csv_free(&c);
    }
}

static void test_divergence_fails(void **state)
{
    char *const extra[] = {"--lr", "10", "--momentum", "0.99", NULL};
    run *r = keep(state, bench_train(extra));
    expect_exit(r, 1);
    if (!strstr(r->res.err, "NaN") && !strstr(r->res.err, "infinite"))
        fail_msg("stderr does not name the NaN/Inf:\n%s", r->res.err);
    if (file_exists(r->csv_path)) {
        csv c;
        csv_load(&c, r->csv_path);
        assert_int_equal(c.rows, 1);
        assert_string_equal(csv_get(&c, "status"), "failed");
        assert_string_equal(csv_get(&c, "step_ms_p50"), "");
        assert_string_equal(csv_get(&c, "samples_per_s"), "");
        assert_true(strlen(csv_get(&c, "error")) > 0);
        csv_free(&c);
    }
    /* a failed run has no final parameters to offer */
    char path[512];
    snprintf(path, sizeof path, "%s/params_final.npy", r->dump);
    assert_false(file_exists(path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_row),
        cmocka_unit_test(test_dump),
        cmocka_unit_test_setup_teardown(test_deterministic, setup_runs, teardown_runs),
        cmocka_unit_test_setup_teardown(test_loader_threads_same_training, setup_runs, teardown_runs),
        cmocka_unit_test_setup_teardown(test_staged_inputs_same_training, setup_runs, teardown_runs),
        cmocka_unit_test_setup_teardown(test_adamw_loss_falls, setup_runs, teardown_runs),
        cmocka_unit_test_setup_teardown(test_mfu_per_device, setup_runs, teardown_runs),
        cmocka_unit_test_setup_teardown(test_phases_cover_large_loss, setup_runs, teardown_runs),
        cmocka_unit_test_setup_teardown(test_divergence_fails, setup_runs, teardown_runs),
    };
    return cmocka_run_group_tests_name("training", tests, setup_sgd_run, teardown_sgd_run);
}
