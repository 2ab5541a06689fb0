/* Check macros that turn CUDA runtime, cuBLASLt and NCCL results into a
 * pb_status, modelled on NCCL's checks.h.
 *
 * Each macro expects a `pb_status st` in scope and a `cleanup:` label: on
 * failure it records "file:line: <call>: <library's own message>" through
 * pb_error() (which keeps the first, root-cause message of the thread), sets st
 * and jumps to cleanup. The _KEEP variants are for cleanup code itself: they
 * record the failure without jumping and never overwrite an earlier status.
 *
 * Plain C so that C files compiled against the CUDA headers can use it too. */
#ifndef PB_CUDA_CHECK_H
#define PB_CUDA_CHECK_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "../../harness/status.h"

#define PB_CUDA_CHECK(call)                                                    \
    do {                                                                       \
        cudaError_t pb_cuda_e_ = (call);                                       \
        if (pb_cuda_e_ != cudaSuccess) {                                       \
            st = pb_error(PB_ERR_BACKEND, "%s: %s (%s)", #call,                \
                          cudaGetErrorString(pb_cuda_e_),                      \
                          cudaGetErrorName(pb_cuda_e_));                       \
            goto cleanup;                                                      \
        }                                                                      \
    } while (0)

/* After every kernel launch: launch-configuration errors surface only through
 * cudaGetLastError(), and asynchronous faults of earlier work show up here
 * first, so name the kernel to tell the two apart. */
#define PB_CUDA_CHECK_LAUNCH(kernel_name)                                      \
    do {                                                                       \
        cudaError_t pb_cuda_e_ = cudaGetLastError();                           \
        if (pb_cuda_e_ != cudaSuccess) {                                       \
            st = pb_error(PB_ERR_BACKEND, "launch of %s: %s (%s)",             \
                          (kernel_name), cudaGetErrorString(pb_cuda_e_),       \
                          cudaGetErrorName(pb_cuda_e_));                       \
            goto cleanup;                                                      \
        }                                                                      \
    } while (0)

#define PB_CUDA_KEEP(call)                                                     \
    do {                                                                       \
        cudaError_t pb_cuda_e_ = (call);                                       \
        if (pb_cuda_e_ != cudaSuccess && st == PB_OK)                          \
            st = pb_error(PB_ERR_BACKEND, "%s: %s (%s)", #call,                \
                          cudaGetErrorString(pb_cuda_e_),                      \
                          cudaGetErrorName(pb_cuda_e_));                       \
    } while (0)

/* cuBLASLt's own status strings, so only libcublasLt needs linking. */
#define PB_CUBLAS_CHECK(call)                                                  \
    do {                                                                       \
        cublasStatus_t pb_blas_e_ = (call);                                    \
        if (pb_blas_e_ != CUBLAS_STATUS_SUCCESS) {                             \
            st = pb_error(PB_ERR_BACKEND, "%s: %s (%s)", #call,                \
                          cublasLtGetStatusString(pb_blas_e_),                 \
                          cublasLtGetStatusName(pb_blas_e_));                  \
            goto cleanup;                                                      \
        }                                                                      \
    } while (0)

#define PB_CUBLAS_KEEP(call)                                                   \
    do {                                                                       \
        cublasStatus_t pb_blas_e_ = (call);                                    \
        if (pb_blas_e_ != CUBLAS_STATUS_SUCCESS && st == PB_OK)                \
            st = pb_error(PB_ERR_BACKEND, "%s: %s (%s)", #call,                \
                          cublasLtGetStatusString(pb_blas_e_),                 \
                          cublasLtGetStatusName(pb_blas_e_));                  \
    } while (0)

/* Defined only where nccl.h was included first, so the backend does not
 * depend on NCCL. ncclGetLastError(NULL) adds NCCL's detailed reason (which
 * rank, which transport), which the result code alone does not carry.
 * ncclInProgress is no failure: nonblocking communicators return it while an
 * operation is still being issued. */
#ifdef NCCL_H_
#define PB_NCCL_CHECK(call)                                                    \
    do {                                                                       \
        ncclResult_t pb_nccl_e_ = (call);                                      \
        if (pb_nccl_e_ != ncclSuccess && pb_nccl_e_ != ncclInProgress) {       \
            const char *pb_nccl_last_ = ncclGetLastError(NULL);                \
            st = pb_error(PB_ERR_COMM, "%s: %s%s%s", #call,                    \
                          ncclGetErrorString(pb_nccl_e_),                      \
                          pb_nccl_last_ && *pb_nccl_last_ ? ": " : "",         \
                          pb_nccl_last_ ? pb_nccl_last_ : "");                 \
            goto cleanup;                                                      \
        }                                                                      \
    } while (0)
#endif

#endif /* PB_CUDA_CHECK_H */
