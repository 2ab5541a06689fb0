/* NCCL within one process (nccl_local.h): ncclCommInitAll over dp's
 * devices, collectives in groups on the devices' compute streams.
 *
 * Blocking communicators: every rank is a device of this process, so init
 * and the group calls cannot wait for a missing peer the way ddp's ranks
 * can; a hung device is caught where dp already catches it (its workers'
 * deadline). */
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "../nccl_local.h"

#include <stdio.h>
#include <stdlib.h>

#include "cuda_device.h"

struct pb_nccl_local {
    int n;
    ncclComm_t comm[PB_MAX_STAGES];
    cudaStream_t stream[PB_MAX_STAGES];
};

/* NCCL's error as a status with its own words. */
#define NCCL_TRY(call)                                                                                          \
    do {                                                                                                        \
        ncclResult_t r_ = (call);                                                                               \
        if (r_ != ncclSuccess) {                                                                                \
            st = pb_error(PB_ERR_COMM, "%s failed: %s", #call, ncclGetErrorString(r_));                         \
            goto cleanup;                                                                                       \
        }                                                                                                       \
    } while (0)

bool pb_nccl_local_built(void) { return true; }

void pb_nccl_local_destroy(pb_nccl_local *g)
{
    if (!g) return;
    for (int i = 0; i < g->n; i++)
        if (g->comm[i]) ncclCommDestroy(g->comm[i]);
    free(g);
}

pb_status pb_nccl_local_init(pb_device *const *dev, int n, pb_nccl_local **out)
{
    pb_status st = PB_OK;
    pb_nccl_local *g = NULL;
    int ordinal[PB_MAX_STAGES];
    *out = NULL;
    PB_REQUIRE(n >= 1 && n <= PB_MAX_STAGES, PB_ERR_INTERNAL, "nccl local: %d devices", n);
    PB_ALLOC(g, 1);
    for (int i = 0; i < n; i++) {
        ordinal[i] = pb_cuda_ordinal(dev[i]);
        g->stream[i] = pb_cuda_stream(dev[i]);
        for (int k = 0; k < i; k++)
            PB_REQUIRE(ordinal[k] != ordinal[i], PB_ERR_INTERNAL,
                       "nccl local: devices %d and %d are both cuda:%d (NCCL takes one rank per GPU)", k, i,
                       ordinal[i]);
    }
    NCCL_TRY(ncclCommInitAll(g->comm, n, ordinal));
    g->n = n;
    *out = g;
    return PB_OK;
cleanup:
    if (g) g->n = n; /* destroy what was made: ncclCommInitAll leaves NULL on failure */
    pb_nccl_local_destroy(g);
    return st;
}

pb_status pb_nccl_local_broadcast(pb_nccl_local *g, void *const *buf, size_t bytes, int root)
{
    pb_status st = PB_OK;
    bool open = false;
    NCCL_TRY(ncclGroupStart());
    open = true;
    for (int i = 0; i < g->n; i++)
        NCCL_TRY(ncclBroadcast(buf[root], buf[i], bytes, ncclChar, root, g->comm[i], g->stream[i]));
    open = false;
    NCCL_TRY(ncclGroupEnd());
cleanup:
    if (open) (void)ncclGroupEnd();
    return st;
}

pb_status pb_nccl_local_reduce(pb_nccl_local *g, float *const *buf, size_t n, int root)
{
    pb_status st = PB_OK;
    bool open = false;
    NCCL_TRY(ncclGroupStart());
    open = true;
    for (int i = 0; i < g->n; i++)
        NCCL_TRY(ncclReduce(buf[i], buf[i], n, ncclFloat, ncclSum, root, g->comm[i], g->stream[i]));
    open = false;
    NCCL_TRY(ncclGroupEnd());
cleanup:
    if (open) (void)ncclGroupEnd();
    return st;
}
