/* The memory plan of a command line (tests/unit/test_memplan.c and
 * tests/e2e/test_memplan_runs.c). */
#ifndef PB_TEST_MEMPLAN_PLAN_H
#define PB_TEST_MEMPLAN_PLAN_H

#include "tests/common/test_util.h"

#include <stdbool.h>

#include "harness/config.h"
#include "harness/memplan.h"
#include "harness/registry.h"

/* validated as a run would be (the cpu backend), or parsed only for a
 * plan of the cuda backend, which this host may not have */
static inline pb_config config(char *const *args, bool validate)
{
    pb_config cfg;
    pb_config_defaults(&cfg);
    int argc = 0;
    while (args[argc]) argc++;
    bool help = false;
    pb_status st = pb_config_parse(&cfg, argc, (char **)args, &help);
    if (st == PB_OK && validate) st = pb_config_validate(&cfg);
    if (st != PB_OK) fail_msg("%s", pb_error_message());
    return cfg;
}

static inline pb_memplan plan_of(char *const *args, bool host_is_device, int local_ranks)
{
    pb_config cfg = config(args, host_is_device);
    static pb_model model;
    assert_int_equal(pb_model_of(&cfg, &model), PB_OK);
    pb_memplan_env env = {.host_is_device = host_is_device, .local_ranks = local_ranks, .writer = true};
    pb_memplan plan;
    pb_memplan_compute(&cfg, &model, &env, &plan);
    return plan;
}

#endif /* PB_TEST_MEMPLAN_PLAN_H */
