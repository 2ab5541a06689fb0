/* The model of a workload preset, as a run with only --workload NAME
 * describes it (for tests that check a row's formulas against the model). */
#ifndef PB_TEST_PRESET_MODEL_H
#define PB_TEST_PRESET_MODEL_H

#include "harness/config.h"
#include "harness/registry.h"
#include "workloads/workload.h"

static inline void preset_model_of(const char *workload, pb_model *m)
{
    pb_config cfg;
    pb_config_defaults(&cfg);
    const pb_workload *w = pb_find_workload(workload);
    assert_non_null(w);
    cfg.shape = w->shape;
    snprintf(cfg.workload, sizeof cfg.workload, "%s", workload);
    assert_int_equal(pb_model_of(&cfg, m), PB_OK);
}

#endif /* PB_TEST_PRESET_MODEL_H */
