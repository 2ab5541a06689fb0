/* One benchmark run: build the workload, run warmup and measured steps under
 * the strategy, and append the row. */
#ifndef PB_RUN_H
#define PB_RUN_H

#include "../strategies/strategy.h"
#include "config.h"
#include "loader.h"

/* cfg must have passed pb_config_validate. Writes one CSV row: status ok
 * with the figures, or status failed with the error and no figures. */
pb_status pb_run(const pb_config *cfg);

/* One step exactly as a run times it: the NVTX step range, waiting for the
 * batch (the load phase, stored in res), a look at the next batch, the
 * strategy's step; *step_ms is the whole, wall clock. */
pb_status pb_timed_step(pb_loader *loader, const pb_strategy *strategy, void *state, int64_t step,
                        pb_batch *batch, pb_step_result *res, double *step_ms);

/* --verify judges the parameters after this many steps (warm-up included),
 * or after all of them when there are fewer: beyond it, fp32 sums in another
 * order (a split batch, a reduction) drift apart by more than the tolerance
 * (a ReLU that flips on one side turns an ulp into a whole sample's
 * gradient); the final difference is reported as drift, not judged. */
#define PB_VERIFY_STEPS 10
/* AdamW's judged step: its update divides each gradient by its own size, so
 * from step 4 or 5 on the rounding of small gradients turns into parts of
 * lr-sized steps that change the next gradients, and grows (mlp-s on
 * OpenBLAS's Haswell kernels, ddp against single, normwise: 4.7e-7 after
 * step 3, 7.3e-5 after 5, 2.8e-3 after 10; single against itself on other
 * kernels 1e-2 after 10) */
#define PB_VERIFY_STEPS_ADAMW 3
int64_t pb_verify_steps(const pb_config *cfg);
/* the tolerance --verify's measure (verify_err.h) must stay within for a
 * precision and optimizer (docs/strategies.md) */
double pb_verify_tolerance(pb_precision p, pb_optimizer o);

#endif /* PB_RUN_H */
