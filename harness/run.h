/* One benchmark run: build the workload, run warmup and measured steps under
 * the strategy, and append the row. */
#ifndef PB_RUN_H
#define PB_RUN_H

#include "config.h"

/* cfg must have passed pb_config_validate. Writes one CSV row: status ok
 * with the figures, or status failed with the error and no figures. */
pb_status pb_run(const pb_config *cfg);

#endif /* PB_RUN_H */
