/* What the transformer ops (encoder, layernorm, gelu, attention,
 * classifier .cuh) keep per device: one scratch buffer they share, and the
 * cuBLASLt plans of attention's strided-batched GEMMs; plus the block and
 * warp reductions their kernels use. Hung off pb_device.gpt, created on the
 * first transformer op and freed by cuda_close (gpt_state_free).
 *
 * The scratch grows on first use and never shrinks, like the staging
 * buffer: the first (warmup) step sizes it, so a measured step, and a CUDA
 * graph captured after warmup, allocates nothing. It is reused op after op
 * on the one compute stream; growing it synchronises that stream first
 * (grow_scratch), so no enqueued op still reads the old one. */
#ifndef PB_CUDA_GPT_STATE_CUH
#define PB_CUDA_GPT_STATE_CUH

#include <math.h>
#include <stdlib.h>

#include "cuda_common.cuh"

/* distinct attention GEMMs of a run: 6 per (T, hs, NH, C) shape; 32 holds
 * five shapes, beyond that plans are evicted round-robin, never failing */
#define BGEMM_PLAN_CAP 32

/* Everything that selects a strided-batched GEMM's algorithm (from a
 * zeroed struct: compared with memcmp). */
typedef struct bgemm_key {
    int32_t m, n, k, batch;
    int32_t trans_a, trans_b;
    int32_t type, compute;
    int64_t lda, ldb, ldc, stride_a, stride_b, stride_c;
    uint32_t align_a, align_b, align_c;
} bgemm_key;

typedef struct bgemm_plan {
    bgemm_key key;
    bool used;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} bgemm_plan;

struct pb_cuda_gpt {
    void *scratch;
    size_t scratch_bytes;
    bgemm_plan plans[BGEMM_PLAN_CAP];
    int next_evict;
};

static void bgemm_plan_release(bgemm_plan *p)
{
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->c) cublasLtMatrixLayoutDestroy(p->c);
    memset(p, 0, sizeof *p);
}

/* cuda_close: the device is current, its streams synchronised */
static void gpt_state_free(pb_device *dev)
{
    pb_cuda_gpt *g = dev->gpt;
    if (!g) return;
    for (int i = 0; i < BGEMM_PLAN_CAP; i++)
        if (g->plans[i].used) bgemm_plan_release(&g->plans[i]);
    cudaFree(g->scratch);
    free(g);
    dev->gpt = NULL;
}

static pb_status gpt_state(pb_device *dev, pb_cuda_gpt **out)
{
    pb_status st = PB_OK;
    if (!dev->gpt) {
        dev->gpt = (pb_cuda_gpt *)calloc(1, sizeof *dev->gpt);
        PB_CHECK_ALLOC(dev->gpt, sizeof *dev->gpt);
    }
    *out = dev->gpt;
cleanup:
    return st;
}

/* At least `bytes` of the shared scratch (256-byte aligned, as cudaMalloc's) */
static pb_status gpt_scratch(pb_device *dev, size_t bytes, void **out)
{
    pb_status st = PB_OK;
    pb_cuda_gpt *g = NULL;
    PB_TRY(gpt_state(dev, &g));
    PB_REQUIRE(!dev->capturing || g->scratch_bytes >= bytes, PB_ERR_INTERNAL,
               "transformer scratch must grow (%zu bytes) inside a CUDA graph capture: run a step first", bytes);
    PB_TRY(grow_scratch(dev, &g->scratch, &g->scratch_bytes, bytes));
    *out = g->scratch;
cleanup:
    return st;
}

/* the byte offset of the next 256-aligned piece after `bytes` of pieces */
static size_t scratch_align(size_t bytes) { return (bytes + 255) / 256 * 256; }

/* ------------------------------------------------------------------------ */
/* reductions (fp32, in a fixed order: the same inputs give the same bits)  */

__device__ __forceinline__ float warp_sum(float v)
{
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

/* Sum (or max) over the block, every thread gets it; blockDim.x a multiple
 * of 32, at most 1024. `shared` holds 32 floats; the block's threads must
 * all call it. */
__device__ float block_reduce(float v, bool is_max, float *shared)
{
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    v = is_max ? warp_max(v) : warp_sum(v);
    __syncthreads(); /* shared may still be read by a previous call */
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float r = lane < warps ? shared[lane] : (is_max ? -INFINITY : 0.0f);
    return is_max ? warp_max(r) : warp_sum(r);
}

#endif /* PB_CUDA_GPT_STATE_CUH */
