/* Strategy ddp's launch decisions, without running bench: which
 * environments are an MPI launch, and mpirun's backstop. The runs of ddp
 * through ./bench are tests/e2e/test_ddp.c. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <stdbool.h>

#include "harness/launch.h"

/* Which environments are an MPI launch: mpirun's and srun's tasks are; an
 * sbatch script (SLURM_NTASKS and SLURM_PROCID, but no step id of its own)
 * or salloc's shell is not, so bench there launches its ranks itself. */
static void test_launch_environment(void **state)
{
    (void)state;
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK",
                                       "PMIX_RANK", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_STEP_ID",
                                       "SLURM_STEPID", "SLURM_STEP_NUM_TASKS", NULL};
    for (int i = 0; vars[i]; i++) unsetenv(vars[i]);
    assert_false(pb_launch_inside());
    assert_int_equal(pb_launch_size(), -1);

    setenv("SLURM_NTASKS", "4", 1); /* an sbatch script */
    setenv("SLURM_PROCID", "0", 1);
    assert_false(pb_launch_inside());
    assert_int_equal(pb_launch_size(), -1);
    setenv("SLURM_STEP_ID", "-5", 1); /* not a step slurmd sets */
    assert_false(pb_launch_inside());

    setenv("SLURM_STEP_ID", "0", 1); /* a task of srun -n 2 inside it */
    setenv("SLURM_STEP_NUM_TASKS", "2", 1);
    setenv("SLURM_PROCID", "1", 1);
    assert_true(pb_launch_inside());
    assert_int_equal(pb_launch_size(), 2);
    assert_int_equal(pb_launch_rank(), 1);
    unsetenv("SLURM_STEP_NUM_TASKS"); /* older srun: the step's SLURM_NTASKS */
    assert_int_equal(pb_launch_size(), 4);

    for (int i = 0; vars[i]; i++) unsetenv(vars[i]);
    setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
    setenv("OMPI_COMM_WORLD_RANK", "2", 1);
    assert_true(pb_launch_inside());
    assert_int_equal(pb_launch_size(), 3);
    assert_int_equal(pb_launch_rank(), 2);
    for (int i = 0; vars[i]; i++) unsetenv(vars[i]);
}

/* mpirun's backstop leaves every step --timeout plus a minute (a step may
 * outlast the deadline of a wait), and --verify's single N times a rank's
 * work per step. */
static void test_backstop(void **state)
{
    (void)state;
    pb_config cfg;
    pb_config_defaults(&cfg);
    cfg.timeout_s = 3;
    cfg.warmup = 0;
    cfg.iters = 10;
    cfg.devices = 2;
    cfg.verify = false;
    assert_int_equal(pb_launch_backstop_s(&cfg), 63 * (10 + 4) + 60);
    cfg.verify = true;
    assert_int_equal(pb_launch_backstop_s(&cfg), 63 * (10 * 3 + 4) + 60);
    cfg.timeout_s = 86400;
    cfg.iters = 100000000;
    assert_true(pb_launch_backstop_s(&cfg) > 0); /* clamped, not wrapped */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_launch_environment),
        cmocka_unit_test(test_backstop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
