/* What the rank-per-device data-parallel strategies (ddp, zero) share. */
#ifndef PB_DP_COMMON_H
#define PB_DP_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "../harness/config.h"
#include "../harness/status.h"

/* Floats of one --bucket-mb bucket (at least 1) */
size_t pb_bucket_floats(const pb_config *cfg);

/* A failed wait's message (it names rank and host) with the strategy's
 * name and the step: "ddp step 7: rank 1 of 2 on ..." */
pb_status pb_with_step(pb_status st, const char *strategy, int64_t step);

#endif /* PB_DP_COMMON_H */
