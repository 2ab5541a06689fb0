/* The command line parsed in process: pb_config_parse and the checks
 * behind it for --gpus against the CUDA devices present, shape overrides
 * and --lr defaults, and a parse error being a usage error. The command
 * line as a user meets it (./bench run as a child process: bad input, exit
 * codes, --help, list, runs) is tests/e2e/test_cli.c. */
#include "tests/common/test_util.h"

#include <math.h>

#include "harness/config.h"
#include "harness/registry.h"
#include "harness/results.h"

/* ------------------------------------------------------------------------ */
/* --gpus against the devices present                                        */

/* --gpus against the CUDA devices present, with the count given (this
 * machine has no GPU): more devices than GPUs is a usage error (exit 2)
 * naming both counts, for one-process strategies unless a device map shares
 * GPUs, and for ddp whether the launcher places the ranks (outside a
 * launch) or a node was given more ranks than it has GPUs (inside one). */
static void expect_devices(const char *strategy, const char *gpus, const char *map, int present, int per_node,
                           const char *want)
{
    pb_config cfg;
    pb_config_defaults(&cfg);
    char *argv[8] = {"--strategy", (char *)strategy, "--gpus", (char *)gpus, NULL};
    int argc = 4;
    if (map) {
        argv[argc++] = "--device-map";
        argv[argc++] = (char *)map;
    }
    bool help = false;
    assert_int_equal(pb_config_parse(&cfg, argc, argv, &help), PB_OK);
    pb_error_clear();
    pb_status st = pb_config_check_cuda_devices(&cfg, present, per_node);
    if (!want) {
        if (st != PB_OK) fail_msg("%s --gpus %s on %d GPUs: %s", strategy, gpus, present, pb_error_message());
        return;
    }
    assert_int_equal(pb_status_exit_code(st), 2);
    if (!strstr(pb_error_message(), want))
        fail_msg("%s --gpus %s on %d GPUs: '%s' lacks '%s'", strategy, gpus, present, pb_error_message(), want);
    assert_null(strchr(pb_error_message(), '\n'));
}

static void test_gpus_beyond_cuda_devices(void **state)
{
    (void)state;
    expect_devices("dp", "2", NULL, 2, 2, NULL);
    expect_devices("dp", "4", NULL, 2, 4, "--gpus 4: only 2 CUDA devices present (--device-map can share one)");
    expect_devices("mp", "2", NULL, 1, 2, "--gpus 2: only 1 CUDA device present");
    expect_devices("mp", "2", "0,0", 1, 2, NULL);
    expect_devices("dp", "2", "0,1", 1, 2, "--device-map: device 1 does not exist; allowed: 0 to 0");
    expect_devices("ddp", "2", NULL, 2, 2, NULL);
    expect_devices("ddp", "4", NULL, 2, 4,
                   "--gpus 4: only 2 CUDA devices present on this node; strategy ddp runs one rank per device");
    expect_devices("ddp", "16", NULL, 8, 0, NULL); /* inside a launch: not known before MPI */
    expect_devices("ddp", "16", NULL, 4, 8, "--gpus 16: this node runs 8 ranks but has only 4 CUDA devices");
    expect_devices("ddp", "16", NULL, 8, 8, NULL);
}

/* Inside a launch whose launcher gave each rank its own GPU (srun
 * --gpus-per-task=1: each of the node's 8 ranks sees one device, with
 * CUDA_VISIBLE_DEVICES set), ddp runs; one device that no launcher chose (a
 * one-GPU node, CUDA_VISIBLE_DEVICES unset) still refuses 8 ranks, naming
 * the variable; before the launch, one visible device is one for all the
 * ranks that will inherit it. */
static void test_one_gpu_per_rank_inside_launch(void **state)
{
    (void)state;
    const char *had = getenv("CUDA_VISIBLE_DEVICES");
    char *saved = had ? strdup(had) : NULL;
    setenv("OMPI_COMM_WORLD_SIZE", "16", 1);
    setenv("CUDA_VISIBLE_DEVICES", "5", 1);
    expect_devices("ddp", "16", NULL, 1, 8, NULL);
    expect_devices("ddp", "16", NULL, 2, 8, "this node runs 8 ranks but has only 2 CUDA devices");
    unsetenv("CUDA_VISIBLE_DEVICES");
    expect_devices("ddp", "16", NULL, 1, 8, "(CUDA_VISIBLE_DEVICES=unset)");
    unsetenv("OMPI_COMM_WORLD_SIZE");
    setenv("CUDA_VISIBLE_DEVICES", "5", 1);
    expect_devices("ddp", "4", NULL, 1, 4, "--gpus 4: only 1 CUDA device present on this node");
    if (saved) setenv("CUDA_VISIBLE_DEVICES", saved, 1);
    else unsetenv("CUDA_VISIBLE_DEVICES");
    free(saved);
}

/* ------------------------------------------------------------------------ */
/* pb_config_parse directly                                                  */

static pb_config parse_ok(int argc, char **argv)
{
    pb_config cfg;
    pb_config_defaults(&cfg);
    bool help = true;
    pb_error_clear();
    pb_status st = pb_config_parse(&cfg, argc, argv, &help);
    if (st != PB_OK) print_message("parse failed: %s\n", pb_error_message());
    assert_int_equal(st, PB_OK);
    assert_false(help);
    return cfg;
}

static void test_parse_shape_override_makes_custom(void **state)
{
    (void)state;
    char *a[] = {"--workload", "mlp-s", "--hidden", "2048"};
    pb_config cfg = parse_ok(4, a);
    assert_int_equal(cfg.shape.hidden, 2048);
    assert_int_equal(cfg.shape.in, 1024); /* the rest is mlp-s's */
    assert_int_equal(cfg.shape.layers, 4);
    assert_int_equal(cfg.shape.classes, 1000);
    assert_int_equal(cfg.shape.batch, 256);
    assert_string_equal(cfg.workload, "custom");
}

static void test_parse_shape_override_order_independent(void **state)
{
    (void)state;
    char *a[] = {"--hidden", "2048", "--workload", "mlp-xs"};
    pb_config cfg = parse_ok(4, a);
    assert_int_equal(cfg.shape.hidden, 2048);
    assert_int_equal(cfg.shape.in, 256); /* the rest is mlp-xs's */
    assert_int_equal(cfg.shape.batch, 64);
    assert_string_equal(cfg.workload, "custom");

    /* the batch alone keeps the model, hence the workload's name (weak
     * scaling grows the batch with the devices) */
    char *b[] = {"--batch=32", "--workload=mlp-xs"};
    cfg = parse_ok(2, b);
    assert_int_equal(cfg.shape.batch, 32);
    assert_int_equal(cfg.shape.hidden, 256);
    assert_string_equal(cfg.workload, "mlp-xs");
}

static void test_parse_preset_unchanged_keeps_name(void **state)
{
    (void)state;
    char *a[] = {"--workload", "mlp-xs"};
    pb_config cfg = parse_ok(2, a);
    assert_string_equal(cfg.workload, "mlp-xs");
    assert_memory_equal(&cfg.shape, &pb_find_workload("mlp-xs")->shape, sizeof cfg.shape);
    /* a shape flag equal to the preset's value leaves the preset's name */
    char *b[] = {"--workload", "mlp-xs", "--hidden", "256"};
    cfg = parse_ok(4, b);
    assert_string_equal(cfg.workload, "mlp-xs");
}

static void test_parse_lr_default_by_optimizer(void **state)
{
    (void)state;
    pb_config cfg = parse_ok(0, NULL);
    assert_int_equal(cfg.optimizer, PB_OPT_SGD);
    assert_true(fabs(cfg.lr - 0.01) < 1e-15);
    char *a[] = {"--optimizer", "adamw"};
    cfg = parse_ok(2, a);
    assert_int_equal(cfg.optimizer, PB_OPT_ADAMW);
    assert_true(fabs(cfg.lr - 0.001) < 1e-15);
    /* a given --lr wins whatever the order */
    char *b[] = {"--lr", "0.5", "--optimizer", "adamw"};
    cfg = parse_ok(4, b);
    assert_true(fabs(cfg.lr - 0.5) < 1e-15);
}

static void test_parse_errors_are_usage(void **state)
{
    (void)state;
    pb_config cfg;
    bool help;
    char *a[] = {"--iters", "abc"};
    pb_config_defaults(&cfg);
    pb_error_clear();
    assert_int_equal(pb_config_parse(&cfg, 2, a, &help), PB_ERR_USAGE);
    assert_int_equal(pb_status_exit_code(PB_ERR_USAGE), 2);
    assert_non_null(strstr(pb_error_message(), "--iters"));
    assert_null(strchr(pb_error_message(), '\n'));
    pb_error_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpus_beyond_cuda_devices),
        cmocka_unit_test(test_one_gpu_per_rank_inside_launch),
        cmocka_unit_test(test_parse_shape_override_makes_custom),
        cmocka_unit_test(test_parse_shape_override_order_independent),
        cmocka_unit_test(test_parse_preset_unchanged_keeps_name),
        cmocka_unit_test(test_parse_lr_default_by_optimizer),
        cmocka_unit_test(test_parse_errors_are_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
