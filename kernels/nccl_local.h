/* NCCL within one process, for dp's replicate (broadcast) and gradient
 * reduce, as torch.nn.DataParallel does them (torch/nn/parallel/comm.py:
 * broadcast_coalesced and reduce_add go through NCCL when the tensors are on
 * distinct GPUs): one communicator per device from ncclCommInitAll, each
 * collective issued for every device inside one ncclGroupStart/End, on each
 * device's compute stream. NCCL moves the data over NVLink/PCIe with its
 * own rings and trees, every destination at once.
 *
 * Built with NCCL (kernels/cuda/nccl_local.c, where the build has the CUDA
 * backend and NCCL); kernels/nccl_local_stub.c otherwise, whose init says
 * so and dp keeps its comm's peer copies. NCCL refuses two communicators on
 * one GPU, so dp asks for it only when every device is a distinct GPU. */
#ifndef PB_NCCL_LOCAL_H
#define PB_NCCL_LOCAL_H

#include <stdbool.h>
#include <stddef.h>

#include "../harness/status.h"
#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pb_nccl_local pb_nccl_local;

/* True when this binary has the in-process NCCL path. */
bool pb_nccl_local_built(void);

/* Communicators for the n cuda devices dev[0..n) (distinct GPUs), rank i on
 * dev[i]. PB_ERR_UNAVAILABLE from the stub. */
pb_status pb_nccl_local_init(pb_device *const *dev, int n, pb_nccl_local **out);
void pb_nccl_local_destroy(pb_nccl_local *g);

/* bytes at buf[root] into every buf[i], enqueued on every device's stream:
 * each device's later work sees it, like the comm's broadcast after wait */
pb_status pb_nccl_local_broadcast(pb_nccl_local *g, void *const *buf, size_t bytes, int root);

/* the sum over devices of n floats at buf[i] into buf[root], likewise */
pb_status pb_nccl_local_reduce(pb_nccl_local *g, float *const *buf, size_t n, int root);

#ifdef __cplusplus
}
#endif
#endif /* PB_NCCL_LOCAL_H */
