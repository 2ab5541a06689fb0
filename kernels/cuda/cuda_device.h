/* What other CUDA-aware code (the `nccl` comm) may see of a cuda backend
 * device: its ordinal and its compute stream. Defined in backend_cuda.cu;
 * only for a pb_device opened by pb_backend_cuda. */
#ifndef PB_CUDA_DEVICE_H
#define PB_CUDA_DEVICE_H

#include <cuda_runtime_api.h>

#include "../backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The CUDA device ordinal the device was opened on. */
int pb_cuda_ordinal(const pb_device *dev);
/* The stream every compute operation of the device is issued on. */
cudaStream_t pb_cuda_stream(const pb_device *dev);

#ifdef __cplusplus
}
#endif
#endif /* PB_CUDA_DEVICE_H */
