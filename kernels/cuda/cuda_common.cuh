/* What every part of the cuda backend shares: the device state (streams,
 * cuBLASLt handle and plan table, allocation records), the scalar device
 * helpers the kernels convert with, and the host helpers every op starts
 * from (use_device, grid_for, the scratch buffers). Included by each .cuh
 * here and by backend_cuda.cu, the one translation unit (static functions,
 * no relocatable device code). */
#ifndef PB_CUDA_COMMON_CUH
#define PB_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cublasLt.h>

#include <stdint.h>
#include <string.h>

#include "../backend.h"
#include "../elementwise.h"
#include "cuda_check.h"

/* cuBLASLt's recommended workspace on Hopper; also ample for Ampere. */
#define WORKSPACE_BYTES ((size_t)32 << 20)
/* Distinct GEMMs of a run: 3 per layer and precision-independent shapes per
 * microbatch size; 64 holds a 16-layer pipeline with room to spare, and the
 * table evicts round-robin beyond that rather than failing. */
#define PLAN_CAP 64
#define THREADS 256
#define MIB (1024.0 * 1024.0)

typedef __nv_bfloat16 bf16;

/* ------------------------------------------------------------------------ */
/* device state                                                             */

/* Everything that selects a cuBLASLt algorithm. Pointer alignments are part
 * of it because the heuristic picks kernels by them; compared with memcmp,
 * so always built from a zeroed struct. */
typedef struct mm_key {
    int32_t m, n, k;
    int32_t trans_a, trans_b;
    int32_t ab_type, d_type, bias_type; /* cudaDataType_t; bias -1 = default */
    int32_t compute;                    /* cublasComputeType_t */
    uint32_t epilogue;                  /* cublasLtEpilogue_t */
    int64_t lda, ldb, ldd, aux_ld;
    uint32_t align_a, align_b, align_d, align_bias, align_aux;
} mm_key;

typedef struct mm_plan {
    mm_key key;
    bool used;
    bool supported; /* false: the heuristic found nothing; caller falls back */
    cublasStatus_t why; /* heuristic status when unsupported, for messages */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
} mm_plan;

typedef struct alloc_rec {
    void *ptr;
    size_t bytes;
} alloc_rec;

/* the transformer ops' per-device state (gpt_state.cuh) */
typedef struct pb_cuda_gpt pb_cuda_gpt;

struct pb_device {
    int ordinal;
    pb_precision precision;
    int sm_count;
    cudaStream_t stream;
    /* prefetch: host-to-device copies overlapping the compute stream, and
     * the event the compute stream waits on for them */
    cudaStream_t copy_stream;
    cudaEvent_t prefetched;
    /* optimizer_side: updates on a side stream that overlap the rest of
     * backward; fork orders each after its gradients, join ends them */
    cudaStream_t side_stream;
    cudaEvent_t side_fork, side_join;
    bool side_pending;
    cublasLtHandle_t lt;
    void *workspace;

    /* peak_mem_mb: bytes handed out by alloc, not the library's own */
    alloc_rec *allocs;
    size_t n_allocs, cap_allocs;
    size_t bytes_now, bytes_peak;
    double mem_limit; /* --device-mem-mb in bytes, 0 none */

    /* fp32 staging for upload_act/download_act in bf16; grows, never shrinks,
     * so steady-state copies allocate nothing */
    float *staging;
    size_t staging_bytes;

    /* bf16 bias vectors for the epilogues: cuBLASLt rejects an fp32 bias or
     * bias gradient beside a bf16 D (INVALID_VALUE in cuBLASLt 13.1), so in
     * bf16 the forward reads a bf16 copy of the bias (and DGELU_BGRAD writes
     * the layer below's bias gradient here before it is widened). Sized at
     * open from the workload's shape so that nothing grows inside a capture. */
    bf16 *bias16;
    size_t bias16_bytes;

    mm_plan plans[PLAN_CAP];
    int next_evict;

    bool capturing;
    cudaGraphExec_t graph;

    /* NULL until the first transformer op */
    pb_cuda_gpt *gpt;
};

struct pb_mark {
    cudaEvent_t ev;
};

/* ------------------------------------------------------------------------ */
/* device helpers                                                           */

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_float<bf16>(float x) { return __float2bfloat16(x); }

/* ------------------------------------------------------------------------ */
/* host helpers                                                             */

static bool is_bf16(const pb_device *dev) { return dev->precision == PB_BF16; }

static cudaDataType_t act_type(const pb_device *dev)
{
    return is_bf16(dev) ? CUDA_R_16BF : CUDA_R_32F;
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Largest power of two dividing the address, capped at cuBLASLt's default
 * assumption of 256. */
static uint32_t ptr_align(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uint32_t r = 1;
    if (!a) return 256;
    while (r < 256 && !(a & r)) r <<= 1;
    return r;
}

/* GELU's aux matrix (the pre-activation, D's type and shape) may have the
 * dense leading dimension D has only when that is a multiple of 8 elements
 * (cublasLt.h, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: "divisible by 8 and no
 * less than the number of rows in the output matrix"); otherwise the op
 * runs unfused. */
static bool gelu_aux_ok(int rows) { return rows % 8 == 0; }

/* Grid-stride kernels: enough blocks to fill the GPU a few times over. */
static unsigned grid_for(const pb_device *dev, size_t work)
{
    size_t blocks = (work + THREADS - 1) / THREADS;
    size_t cap = (size_t)(dev->sm_count > 0 ? dev->sm_count : 1) * 16;
    if (blocks > cap) blocks = cap;
    if (blocks == 0) blocks = 1;
    return (unsigned)blocks;
}

/* One host thread may drive several devices (mp), and the runtime's current
 * device is per thread: every entry point makes this device current. */
static pb_status use_device(const pb_device *dev)
{
    pb_status st = PB_OK;
    int cur = -1;
    PB_CUDA_CHECK(cudaGetDevice(&cur));
    if (cur != dev->ordinal) PB_CUDA_CHECK(cudaSetDevice(dev->ordinal));
cleanup:
    return st;
}

/* Grows a scratch buffer of the device to at least `bytes` (never shrinks,
 * so steady-state calls allocate nothing). */
static pb_status grow_scratch(pb_device *dev, void **buf, size_t *have, size_t bytes)
{
    pb_status st = PB_OK;
    if (*have >= bytes) return PB_OK;
    /* the old buffer may still feed enqueued work */
    PB_CUDA_CHECK(cudaStreamSynchronize(dev->stream));
    PB_CUDA_CHECK(cudaFree(*buf));
    *buf = NULL;
    *have = 0;
    PB_CUDA_CHECK(cudaMalloc(buf, bytes));
    *have = bytes;
cleanup:
    return st;
}

static pb_status ensure_staging(pb_device *dev, size_t bytes)
{
    return grow_scratch(dev, (void **)&dev->staging, &dev->staging_bytes, bytes);
}

static pb_status ensure_bias16(pb_device *dev, size_t elems)
{
    return grow_scratch(dev, (void **)&dev->bias16, &dev->bias16_bytes, elems * sizeof(bf16));
}

#endif /* PB_CUDA_COMMON_CUH */
