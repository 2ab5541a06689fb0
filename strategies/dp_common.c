#include "dp_common.h"

#include <stdio.h>

size_t pb_bucket_floats(const pb_config *cfg)
{
    double f = cfg->bucket_mb * 1048576.0 / sizeof(float);
    return f < 1.0 ? 1 : (size_t)f;
}

pb_status pb_with_step(pb_status st, const char *strategy, int64_t step)
{
    if (st == PB_OK) return st;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pb_error_message());
    pb_error_clear();
    return pb_user_error(st, "%s step %lld: %s", strategy, (long long)step, msg);
}
