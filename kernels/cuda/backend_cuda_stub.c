/* The cuda backend of a build without nvcc: it lists no devices and says why,
 * so `bench list` and --backend auto explain themselves instead of failing at
 * link time. Every compute slot is NULL; nothing can reach them because open
 * always fails. */
#include <stdio.h>

#include "../backend.h"

#define STUB_WHY "built without CUDA (nvcc was not found at build time)"

static int stub_device_count(char *why, size_t why_len)
{
    if (why && why_len) snprintf(why, why_len, "%s", STUB_WHY);
    return 0;
}

static pb_status stub_open(const pb_device_opts *opts, int ordinal, pb_device **dev)
{
    (void)opts;
    (void)ordinal;
    if (dev) *dev = NULL;
    return pb_error(PB_ERR_UNAVAILABLE, "cuda backend: %s", STUB_WHY);
}

const pb_backend pb_backend_cuda = {
    .name = "cuda",
    .description = "NVIDIA GPUs through cuBLASLt and CUDA kernels (" STUB_WHY ")",
    .is_gpu = true,
    .device_count = stub_device_count,
    .open = stub_open,
};

bool pb_cuda_built(void) { return false; }
