/* The cuda backend: one GPU as a pb_backend, with cuBLASLt for the Linear
 * layers (bias, ReLU and their gradients fused into the GEMM epilogues) and
 * small CUDA kernels for the rest. Laid out like llm.c's llmc .cuh files: device
 * helpers, kernels, launchers, the cuBLASLt plan cache, then the ops table.
 *
 * Row-major tensors, column-major cuBLASLt. A row-major [r, c] matrix is the
 * column-major [c, r] matrix with ld = c, i.e. its transpose, for free. So
 * every product is computed transposed, with no copies:
 *   forward  y = x w^T      ->  y^T[n,m]  = op_T(w^T[k,n]) * x^T[k,m]
 *   weights  dw = dy^T x    ->  dw^T[k,n] = x^T[k,m] * op_T(dy^T[n,m])
 *   input    dx = dy w      ->  dx^T[k,m] = w^T[k,n] * dy^T[n,m]
 * where A^T[a,b] names the column-major view of row-major A. In each the
 * bias-like vector runs along the rows of D (forward bias n, db_prev k) or its
 * columns (db n), which is exactly where the BIAS/DRELU_BGRAD (rows) and BGRADB
 * (columns) epilogues put it.
 *
 * What is fused (each checked against cuBLASLt's heuristic per shape and
 * type, with a plain GEMM plus the kernels below when it has no algorithm):
 *   forward   RELU_BIAS / BIAS. In bf16 cuBLASLt 13.1 rejects an fp32 bias
 *             beside a bf16 D (INVALID_VALUE), so b is first rounded into a
 *             bf16 scratch vector, as autocast would.
 *   dW, db    BGRADB: db is the column sum of dy, i.e. the sum of B over the
 *             GEMM's k, read once inside the GEMM; fp32 like dW.
 *   dx        plain GEMM, then one kernel masks it by x > 0 (pb_relu_backward,
 *             as on the CPU) and writes db_prev's column sums.
 * The cuBLASLt ReLU bitmask path (RELU_AUX_BIAS + DRELU_BGRAD) is kept behind
 * use_relu_mask below, tested, but off: it measured slower (see there). */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cublasLt.h>
#include <nccl.h>

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../harness/env.h"
#include "../backend.h"
#include "../elementwise.h"
#include "../gemm_ref.h"
#include "cuda_check.h"
#include "cuda_device.h"

/* cuBLASLt's recommended workspace on Hopper; also ample for Ampere. */
#define WORKSPACE_BYTES ((size_t)32 << 20)
/* Distinct GEMMs of a run: 3 per layer and precision-independent shapes per
 * microbatch size; 64 holds a 16-layer pipeline with room to spare, and the
 * table evicts round-robin beyond that rather than failing. */
#define PLAN_CAP 64
#define XENT_WARPS 8
#define COLSUM_ROWS 8
#define THREADS 256
#define MIB (1024.0 * 1024.0)

typedef __nv_bfloat16 bf16;

/* Whether ReLU layers keep cuBLASLt's 1-bit mask (RELU_AUX_BIAS forward,
 * DRELU(_BGRAD) backward) or the backward masks by x > 0 in a column-sum
 * kernel. Measured on an H200 (cuBLASLt 13.1), fwd+bwd of one layer, m x k
 * by k x k, k = n: the mask path was never faster and up to 11% slower
 * (tf32, 8192 x 4096: 3.13 vs 2.81 ms; bf16: 1.29 vs 1.21 ms; fp32 1024 x
 * 8192: 8.12 vs 8.04 ms; 256 x 1024 equal within noise). In bf16 the mask
 * also disagrees with the stored activation's sign for ~0.03% of elements
 * near zero, whereas x > 0 is exactly the CPU backend's pb_relu_backward.
 * With this off, aux_bytes() is 0 so callers allocate no masks. */
static const bool use_relu_mask = false;

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

    /* fp32 staging for upload_act/download_act in bf16; grows, never shrinks,
     * so steady-state copies allocate nothing */
    float *staging;
    size_t staging_bytes;

    /* bf16 bias vectors for the epilogues: cuBLASLt rejects an fp32 bias or
     * bias gradient beside a bf16 D (INVALID_VALUE in cuBLASLt 13.1), so in
     * bf16 the forward reads a bf16 copy of b (and, with use_relu_mask,
     * DRELU_BGRAD writes db_prev here before it is widened). Sized at open
     * from the workload's shape so that nothing grows inside a capture. */
    bf16 *bias16;
    size_t bias16_bytes;

    mm_plan plans[PLAN_CAP];
    int next_evict;
    /* set once a ReLU forward could not write its cuBLASLt mask */
    bool aux_unusable;

    bool capturing;
    cudaGraphExec_t graph;
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
/* kernels                                                                  */

/* One warp per row: rows are at most a few thousand classes, so a warp's 32
 * lanes stride the row in a few iterations and the reductions are shuffles.
 * An online max/sum keeps it to two passes over the logits. In place
 * (dlogits == logits) is safe: the loss reads its logit before the grad pass
 * and each lane rewrites only what it read. */
template <typename T>
__global__ void softmax_xent_kernel(int m, int c, const T *logits, const int32_t *labels,
                                    float scale, float *loss_sum, T *dlogits)
{
    __shared__ float warp_loss[XENT_WARPS];
    const unsigned full = 0xffffffffu;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int row = blockIdx.x * XENT_WARPS + warp;
    float row_loss = 0.0f;

    if (row < m) {
        const T *z = logits + (size_t)row * c;
        float mx = -INFINITY, sum = 0.0f;
        for (int j = lane; j < c; j += 32) {
            float v = to_float(z[j]);
            if (v > mx) {
                sum = sum * expf(mx - v) + 1.0f;
                mx = v;
            } else {
                sum += expf(v - mx);
            }
        }
        for (int off = 16; off > 0; off >>= 1) {
            float omx = __shfl_xor_sync(full, mx, off);
            float osum = __shfl_xor_sync(full, sum, off);
            float nmx = fmaxf(mx, omx);
            /* lanes that saw no element carry -inf, and -inf - -inf is NaN */
            float a = mx == -INFINITY ? 0.0f : sum * expf(mx - nmx);
            float b = omx == -INFINITY ? 0.0f : osum * expf(omx - nmx);
            sum = a + b;
            mx = nmx;
        }
        int label = labels[row];
        bool valid = label >= 0 && label < c;
        if (lane == 0) {
            /* an out-of-range label is a data bug: make it loud (NaN loss ->
             * PB_ERR_NUMERIC) rather than silently training on nothing */
            row_loss = valid ? scale * (logf(sum) - (to_float(z[label]) - mx)) : NAN;
        }
        if (dlogits) {
            float inv_sum = 1.0f / sum;
            T *dz = dlogits + (size_t)row * c;
            for (int j = lane; j < c; j += 32)
                dz[j] = from_float<T>(pb_xent_grad(to_float(z[j]), mx, inv_sum, j == label, scale));
        }
    }
    if (lane == 0) warp_loss[warp] = row_loss;
    __syncthreads();
    if (threadIdx.x == 0 && loss_sum) {
        float s = 0.0f;
        for (int w = 0; w < XENT_WARPS; w++) s += warp_loss[w];
        atomicAdd(loss_sum, s); /* one atomic per block, not per row */
    }
}

/* Fallback epilogue: y = relu(y + b). */
template <typename T>
__global__ void bias_act_kernel(size_t rows, int n, T *y, const float *b, bool relu)
{
    size_t total = rows * (size_t)n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = to_float(y[i]);
        if (b) v += b[i % n];
        if (relu) v = pb_relu(v);
        y[i] = from_float<T>(v);
    }
}

/* Column sums of a row-major [m, n] gradient, optionally masking it in place
 * by a ReLU output first (dx -> dL/dz of the previous layer). A block owns 32
 * adjacent columns (so each warp reads 32 consecutive elements of a row) and
 * one chunk of rows; it writes its partial sum per column, or nothing when
 * only the mask is wanted. Partials are added in a fixed order by
 * colsum_finish_kernel: deterministic, no atomics, nothing to zero first. */
template <typename T>
__global__ void colsum_mask_kernel(int m, int n, int rows_per_chunk, T *g, const T *relu_out,
                                   float *partial)
{
    __shared__ float part[COLSUM_ROWS][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * rows_per_chunk;
    int r1 = min(m, r0 + rows_per_chunk);
    float acc = 0.0f;
    if (col < n) {
        for (int r = r0 + threadIdx.y; r < r1; r += COLSUM_ROWS) {
            size_t i = (size_t)r * n + col;
            float v = to_float(g[i]);
            if (relu_out) {
                v = pb_relu_backward(v, to_float(relu_out[i]));
                g[i] = from_float<T>(v);
            }
            acc += v;
        }
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < n && partial) {
        float s = 0.0f;
        for (int y = 0; y < COLSUM_ROWS; y++) s += part[y][threadIdx.x];
        partial[(size_t)blockIdx.y * n + col] = s;
    }
}

__global__ void colsum_finish_kernel(int n, int chunks, const float *partial, float *out)
{
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= n) return;
    float s = 0.0f;
    for (int c = 0; c < chunks; c++) s += partial[(size_t)c * n + col];
    out[col] = s;
}

template <typename S, typename D>
__global__ void convert_kernel(size_t n, const S *src, D *dst)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_float<D>(to_float(src[i]));
}

template <bool VEC>
__global__ void axpy_kernel(size_t n, float alpha, const float *x, float *y)
{
    size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t done = 0;
    if (VEC) {
        size_t n4 = n / 4;
        const float4 *x4 = reinterpret_cast<const float4 *>(x);
        float4 *y4 = reinterpret_cast<float4 *>(y);
        for (size_t i = tid; i < n4; i += stride) {
            float4 a = x4[i], b = y4[i];
            b.x += alpha * a.x;
            b.y += alpha * a.y;
            b.z += alpha * a.z;
            b.w += alpha * a.w;
            y4[i] = b;
        }
        done = n4 * 4;
    }
    for (size_t i = done + tid; i < n; i += stride) y[i] += alpha * x[i];
}

typedef struct opt_hparams {
    float lr, momentum, wd, b1, b2, eps, bc1, bc2;
} opt_hparams;

/* READY: SGD whose momentum the weight-gradient GEMM already accumulated
 * (pb_opt_args.momentum_ready); g is not read */
template <pb_optimizer K, bool READY>
__device__ __forceinline__ void opt_elem(float *p, float *m, float *v, float g, const opt_hparams &h)
{
    if (K == PB_OPT_SGD && READY)
        pb_sgd_momentum_ready(p, m, h.lr, h.wd);
    else if (K == PB_OPT_SGD)
        pb_sgd_momentum(p, m, g, h.lr, h.momentum, h.wd);
    else
        pb_adamw(p, m, v, g, h.lr, h.wd, h.b1, h.b2, h.eps, h.bc1, h.bc2);
}

/* One pass over the flat parameter buffer: the optimizer is bandwidth bound
 * (AdamW moves 7 words per parameter: p, g, m, v in, p, m, v out), so fusing
 * the compute-copy refresh saves a full extra read of p. VEC loads float4
 * when every fp32 stream is 16-byte aligned. */
template <pb_optimizer K, typename C, bool VEC, bool READY>
__global__ void optimizer_kernel(size_t n, float *p, const float *g, float *m, float *v, C *pc,
                                 opt_hparams h)
{
    size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t done = 0;
    if (VEC) {
        size_t n4 = n / 4;
        float4 *p4 = reinterpret_cast<float4 *>(p), *m4 = reinterpret_cast<float4 *>(m);
        float4 *v4 = reinterpret_cast<float4 *>(v);
        const float4 *g4 = reinterpret_cast<const float4 *>(g);
        /* two vectors per thread per trip, all loads issued before any use:
         * twice the bytes in flight per SM (as a pass of its own, SGD on
         * mlp-l bf16 moved 10.5 GB in 3.72 ms on an H100: 2.8 TB/s, 94% of
         * a device-to-device copy's) */
        for (size_t i = tid; i < n4; i += 2 * stride) {
            size_t idx[2] = {i, i + stride};
            bool live[2] = {true, i + stride < n4};
            float4 P[2], G[2], M[2], V[2];
#pragma unroll
            for (int u = 0; u < 2; u++) {
                if (!live[u]) continue;
                P[u] = p4[idx[u]];
                G[u] = READY ? make_float4(0.f, 0.f, 0.f, 0.f) : g4[idx[u]];
                M[u] = m4[idx[u]];
                V[u] = K == PB_OPT_ADAMW ? v4[idx[u]] : make_float4(0.f, 0.f, 0.f, 0.f);
            }
#pragma unroll
            for (int u = 0; u < 2; u++) {
                if (!live[u]) continue;
                opt_elem<K, READY>(&P[u].x, &M[u].x, &V[u].x, G[u].x, h);
                opt_elem<K, READY>(&P[u].y, &M[u].y, &V[u].y, G[u].y, h);
                opt_elem<K, READY>(&P[u].z, &M[u].z, &V[u].z, G[u].z, h);
                opt_elem<K, READY>(&P[u].w, &M[u].w, &V[u].w, G[u].w, h);
                p4[idx[u]] = P[u];
                m4[idx[u]] = M[u];
                if (K == PB_OPT_ADAMW) v4[idx[u]] = V[u];
                if (pc) {
                    pc[4 * idx[u] + 0] = from_float<C>(P[u].x);
                    pc[4 * idx[u] + 1] = from_float<C>(P[u].y);
                    pc[4 * idx[u] + 2] = from_float<C>(P[u].z);
                    pc[4 * idx[u] + 3] = from_float<C>(P[u].w);
                }
            }
        }
        done = n4 * 4;
    }
    for (size_t i = done + tid; i < n; i += stride) {
        float P = p[i], M = m ? m[i] : 0.0f, V = K == PB_OPT_ADAMW ? v[i] : 0.0f;
        opt_elem<K, READY>(&P, &M, &V, READY ? 0.0f : g[i], h);
        p[i] = P;
        if (m) m[i] = M;
        if (K == PB_OPT_ADAMW) v[i] = V;
        if (pc) pc[i] = from_float<C>(P);
    }
}

/* Random values in [-1, 1) for calibration inputs: never time on zeros,
 * which can run faster than real data. */
__global__ void fill_uniform_kernel(size_t n, float *p, unsigned long long seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned long long z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        p[i] = (float)(z >> 40) * 0x1p-23f - 1.0f;
    }
}

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

/* The ReLU bitmask's leading dimension, in bits: a multiple of 128 no less
 * than the rows of D (cublasLt.h, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD). */
static int64_t aux_ld(int rows) { return ((int64_t)rows + 127) / 128 * 128; }

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

/* ------------------------------------------------------------------------ */
/* launchers                                                                */

static pb_status launch_bias_act(pb_device *dev, int m, int n, void *y, const float *b, bool relu)
{
    pb_status st = PB_OK;
    size_t total = (size_t)m * n;
    if (is_bf16(dev))
        bias_act_kernel<bf16><<<grid_for(dev, total), THREADS, 0, dev->stream>>>(
            (size_t)m, n, (bf16 *)y, b, relu);
    else
        bias_act_kernel<float><<<grid_for(dev, total), THREADS, 0, dev->stream>>>(
            (size_t)m, n, (float *)y, b, relu);
    PB_CUDA_CHECK_LAUNCH("bias_act_kernel");
cleanup:
    return st;
}

/* out (may be NULL) = column sums of g[m, n], g first masked by relu_out
 * when given. Rows are split into chunks until there are a few blocks per
 * SM; with several chunks the partials go to the cuBLASLt workspace, which
 * is free between GEMMs because everything here runs on the one stream. */
static pb_status launch_colsum_mask(pb_device *dev, int m, int n, void *g, const void *relu_out,
                                    float *out)
{
    pb_status st = PB_OK;
    int col_blocks = (n + 31) / 32;
    int want = 4 * (dev->sm_count > 0 ? dev->sm_count : 1);
    int chunks = (want + col_blocks - 1) / col_blocks;
    int max_chunks = (m + 4 * COLSUM_ROWS - 1) / (4 * COLSUM_ROWS); /* >= 4 rows per thread */
    size_t ws_chunks = WORKSPACE_BYTES / ((size_t)n * sizeof(float));
    int rows_per_chunk;
    float *partial;
    dim3 block(32, COLSUM_ROWS);

    if (chunks > max_chunks) chunks = max_chunks;
    if ((size_t)chunks > ws_chunks) chunks = (int)ws_chunks;
    if (chunks < 1) chunks = 1;
    rows_per_chunk = (m + chunks - 1) / chunks;
    chunks = (m + rows_per_chunk - 1) / rows_per_chunk;
    partial = !out ? NULL : chunks == 1 ? out : (float *)dev->workspace;
    {
        dim3 grid((unsigned)col_blocks, (unsigned)chunks);
        if (is_bf16(dev))
            colsum_mask_kernel<bf16><<<grid, block, 0, dev->stream>>>(
                m, n, rows_per_chunk, (bf16 *)g, (const bf16 *)relu_out, partial);
        else
            colsum_mask_kernel<float><<<grid, block, 0, dev->stream>>>(
                m, n, rows_per_chunk, (float *)g, (const float *)relu_out, partial);
    }
    PB_CUDA_CHECK_LAUNCH("colsum_mask_kernel");
    if (out && chunks > 1) {
        colsum_finish_kernel<<<(unsigned)((n + THREADS - 1) / THREADS), THREADS, 0, dev->stream>>>(
            n, chunks, partial, out);
        PB_CUDA_CHECK_LAUNCH("colsum_finish_kernel");
    }
cleanup:
    return st;
}

static pb_status launch_to_act(pb_device *dev, size_t n, const float *src, void *dst)
{
    pb_status st = PB_OK;
    convert_kernel<float, bf16><<<grid_for(dev, n), THREADS, 0, dev->stream>>>(n, src, (bf16 *)dst);
    PB_CUDA_CHECK_LAUNCH("convert_kernel<float, bf16>");
cleanup:
    return st;
}

static pb_status launch_from_act(pb_device *dev, size_t n, const void *src, float *dst)
{
    pb_status st = PB_OK;
    convert_kernel<bf16, float><<<grid_for(dev, n), THREADS, 0, dev->stream>>>(
        n, (const bf16 *)src, dst);
    PB_CUDA_CHECK_LAUNCH("convert_kernel<bf16, float>");
cleanup:
    return st;
}

template <pb_optimizer K, typename C, bool READY>
static pb_status launch_optimizer_t(pb_device *dev, cudaStream_t stream, const pb_opt_args *a, const opt_hparams &h)
{
    pb_status st = PB_OK;
    C *pc = (C *)a->params_compute;
    bool vec = aligned16(a->params) && (READY || aligned16(a->grads)) && a->m && aligned16(a->m) &&
               (K == PB_OPT_SGD || aligned16(a->v));
    if (vec) {
        optimizer_kernel<K, C, true, READY><<<grid_for(dev, a->n / 4), THREADS, 0, stream>>>(
            a->n, a->params, a->grads, a->m, a->v, pc, h);
    } else {
        optimizer_kernel<K, C, false, READY><<<grid_for(dev, a->n), THREADS, 0, stream>>>(
            a->n, a->params, a->grads, a->m, a->v, pc, h);
    }
    PB_CUDA_CHECK_LAUNCH("optimizer_kernel");
cleanup:
    return st;
}

/* ------------------------------------------------------------------------ */
/* cuBLASLt plans: descriptors + heuristic result per distinct GEMM, built on
 * first use, so a step after the first allocates nothing on the host and
 * makes no heuristic query (which would cost tens of microseconds per GEMM). */

static void plan_release(mm_plan *p)
{
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->d) cublasLtMatrixLayoutDestroy(p->d);
    memset(p, 0, sizeof *p);
}

static mm_key make_key(const pb_device *dev, int m, int n, int k, bool trans_a, bool trans_b,
                       cudaDataType_t ab_type, cudaDataType_t d_type, cublasLtEpilogue_t epilogue,
                       const void *a, int64_t lda, const void *b, int64_t ldb, void *d,
                       int64_t ldd, const void *bias, int32_t bias_type, const void *aux,
                       int64_t aux_ld_bits)
{
    mm_key key;
    memset(&key, 0, sizeof key);
    key.m = m;
    key.n = n;
    key.k = k;
    key.trans_a = trans_a;
    key.trans_b = trans_b;
    key.ab_type = ab_type;
    key.d_type = d_type;
    key.bias_type = bias ? bias_type : -1;
    key.compute = dev->precision == PB_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    key.epilogue = (uint32_t)epilogue;
    key.lda = lda;
    key.ldb = ldb;
    key.ldd = ldd;
    key.aux_ld = aux ? aux_ld_bits : 0;
    key.align_a = ptr_align(a);
    key.align_b = ptr_align(b);
    key.align_d = ptr_align(d);
    key.align_bias = bias ? ptr_align(bias) : 0;
    key.align_aux = aux ? ptr_align(aux) : 0;
    return key;
}

static pb_status plan_build(pb_device *dev, mm_plan *p, const mm_key *key, const void *bias,
                            const void *aux)
{
    pb_status st = PB_OK;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t result;
    cublasOperation_t ta, tb;
    cublasLtEpilogue_t epi;
    cublasStatus_t hs;
    int found = 0;
    uint64_t ws = WORKSPACE_BYTES;
    int32_t bias_type;
    int64_t ld_aux;

    memset(p, 0, sizeof *p);
    memset(&result, 0, sizeof result);
    p->key = *key;
    p->used = true;
    ta = key->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    tb = key->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    epi = (cublasLtEpilogue_t)key->epilogue;

    PB_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, (cublasComputeType_t)key->compute, CUDA_R_32F));
    PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    /* the heuristic reads the bias/aux pointers for their alignment */
    if (bias) {
        PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias, sizeof bias));
        if (key->bias_type >= 0) {
            bias_type = key->bias_type;
            PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
                p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
        }
    }
    if (aux) {
        ld_aux = key->aux_ld;
        PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                       &aux, sizeof aux));
        PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                       &ld_aux, sizeof ld_aux));
    }
    /* layouts describe the stored matrices, before op(): A is m x k unless
     * transposed, B is k x n unless transposed, D is m x n */
    PB_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, (cudaDataType_t)key->ab_type,
                                               key->trans_a ? key->k : key->m,
                                               key->trans_a ? key->m : key->k, key->lda));
    PB_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, (cudaDataType_t)key->ab_type,
                                               key->trans_b ? key->n : key->k,
                                               key->trans_b ? key->k : key->n, key->ldb));
    PB_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, (cudaDataType_t)key->d_type, key->m, key->n,
                                               key->ldd));

    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &ws, sizeof ws));
    /* the heuristic assumes 256-byte aligned A/B/C/D unless told otherwise;
     * tensors carved out of a flat parameter buffer often are not */
    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                         &key->align_a, sizeof key->align_a));
    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                         &key->align_b, sizeof key->align_b));
    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                         &key->align_d, sizeof key->align_d));
    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                         &key->align_d, sizeof key->align_d));

    hs = cublasLtMatmulAlgoGetHeuristic(dev->lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &result,
                                        &found);
    if (hs == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
        p->algo = result.algo;
        p->supported = true;
    } else if (hs == CUBLAS_STATUS_SUCCESS || hs == CUBLAS_STATUS_NOT_SUPPORTED ||
               hs == CUBLAS_STATUS_INVALID_VALUE) {
        /* an epilogue/type combination this cuBLASLt cannot do: the caller
         * falls back; remembered so the question is asked once */
        p->supported = false;
        p->why = hs == CUBLAS_STATUS_SUCCESS ? CUBLAS_STATUS_NOT_SUPPORTED : hs;
    } else {
        PB_CUBLAS_CHECK(hs);
    }
cleanup:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (st != PB_OK) plan_release(p);
    return st;
}

static pb_status plan_get(pb_device *dev, const mm_key *key, const void *bias, const void *aux,
                          mm_plan **out)
{
    pb_status st = PB_OK;
    mm_plan *slot = NULL;
    for (int i = 0; i < PLAN_CAP; i++) {
        mm_plan *p = &dev->plans[i];
        if (p->used && memcmp(&p->key, key, sizeof *key) == 0) {
            *out = p;
            return PB_OK;
        }
        if (!p->used && !slot) slot = p;
    }
    if (!slot) {
        slot = &dev->plans[dev->next_evict];
        dev->next_evict = (dev->next_evict + 1) % PLAN_CAP;
        plan_release(slot);
    }
    PB_TRY(plan_build(dev, slot, key, bias, aux));
    *out = slot;
cleanup:
    return st;
}

/* D = op(A) op(B) + beta D (beta 0: D is overwritten, never read) */
static pb_status plan_run(pb_device *dev, mm_plan *p, const void *a, const void *b, void *d,
                         const void *bias, const void *aux, float beta)
{
    pb_status st = PB_OK;
    const float alpha = 1.0f;
    /* same alignment class as when the plan was built (it is in the key) */
    if (bias)
        PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias, sizeof bias));
    if (aux)
        PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                       &aux, sizeof aux));
    PB_CUBLAS_CHECK(cublasLtMatmul(dev->lt, p->desc, &alpha, a, p->a, b, p->b, &beta, d, p->d, d,
                                   p->d, &p->algo, dev->workspace, WORKSPACE_BYTES, dev->stream));
cleanup:
    return st;
}

/* D = op(A) op(B) with the key's epilogue. *ran is false, and nothing is
 * enqueued, when cuBLASLt has no algorithm for the combination. */
static pb_status matmul(pb_device *dev, const mm_key *key, const void *a, const void *b, void *d,
                        const void *bias, const void *aux, float beta, bool *ran, cublasStatus_t *why)
{
    pb_status st = PB_OK;
    mm_plan *p = NULL;

    *ran = false;
    PB_TRY(plan_get(dev, key, bias, aux, &p));
    if (!p->supported) {
        if (why) *why = p->why;
        goto cleanup;
    }
    PB_TRY(plan_run(dev, p, a, b, d, bias, aux, beta));
    *ran = true;
cleanup:
    return st;
}

/* The last resort of every fallback chain: a plain GEMM must exist. */
static pb_status matmul_plain(pb_device *dev, mm_key key, const void *a, const void *b, void *d,
                              float beta, const char *what)
{
    pb_status st = PB_OK;
    bool ran = false;
    cublasStatus_t why = CUBLAS_STATUS_SUCCESS;
    key.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    key.bias_type = -1;
    key.align_bias = 0;
    key.align_aux = 0;
    key.aux_ld = 0;
    PB_TRY(matmul(dev, &key, a, b, d, NULL, NULL, beta, &ran, &why));
    PB_REQUIRE(ran, PB_ERR_BACKEND,
               "cuBLASLt has no algorithm for the %s GEMM (m=%d n=%d k=%d, %s): %s", what, key.m,
               key.n, key.k, pb_precision_name(dev->precision), cublasLtGetStatusString(why));
cleanup:
    return st;
}

/* ------------------------------------------------------------------------ */
/* ops: devices                                                             */

static void put_why(char *why, size_t why_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put_why(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;
    if (!why || !why_len) return;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

static int cuda_device_count(char *why, size_t why_len)
{
    int n = 0, drv = 0, rt = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");

    if (e == cudaSuccess && n > 0) {
        put_why(why, why_len, "%s", "");
        return n;
    }
    (void)cudaGetLastError();
    /* both report 0 rather than fail when there is no driver at all */
    (void)cudaDriverGetVersion(&drv);
    (void)cudaRuntimeGetVersion(&rt);

    if (e == cudaErrorInsufficientDriver && drv == 0) {
        put_why(why, why_len, "no NVIDIA driver found (libcuda.so could not be loaded)");
    } else if (e == cudaErrorInsufficientDriver) {
        put_why(why, why_len,
                "the NVIDIA driver supports CUDA %d.%d, older than the CUDA %d.%d runtime this "
                "binary was built with; upgrade the driver",
                drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
    } else if ((e == cudaSuccess || e == cudaErrorNoDevice) && cvd) {
        put_why(why, why_len, "no CUDA device visible: CUDA_VISIBLE_DEVICES=\"%s\" hides them all",
                cvd);
    } else if (e == cudaSuccess || e == cudaErrorNoDevice) {
        if (drv == 0)
            put_why(why, why_len, "no NVIDIA driver found");
        else
            put_why(why, why_len, "no CUDA-capable device detected (driver supports CUDA %d.%d)",
                    drv / 1000, (drv % 1000) / 10);
    } else {
        put_why(why, why_len, "cudaGetDeviceCount failed: %s (%s)", cudaGetErrorString(e),
                cudaGetErrorName(e));
    }
    return 0;
}

static void cuda_close(pb_device *dev)
{
    cudaGraph_t g = NULL;
    if (!dev) return;
    (void)cudaSetDevice(dev->ordinal);
    if (dev->capturing && cudaStreamEndCapture(dev->stream, &g) == cudaSuccess && g)
        cudaGraphDestroy(g);
    if (dev->stream) (void)cudaStreamSynchronize(dev->stream);
    if (dev->copy_stream) (void)cudaStreamSynchronize(dev->copy_stream);
    if (dev->side_stream) (void)cudaStreamSynchronize(dev->side_stream);
    for (int i = 0; i < PLAN_CAP; i++)
        if (dev->plans[i].used) plan_release(&dev->plans[i]);
    if (dev->graph) cudaGraphExecDestroy(dev->graph);
    /* free() needs the device, so nothing can free these after close */
    for (size_t i = 0; i < dev->n_allocs; i++) cudaFree(dev->allocs[i].ptr);
    free(dev->allocs);
    cudaFree(dev->staging);
    cudaFree(dev->bias16);
    cudaFree(dev->workspace);
    if (dev->lt) cublasLtDestroy(dev->lt);
    if (dev->prefetched) cudaEventDestroy(dev->prefetched);
    if (dev->copy_stream) cudaStreamDestroy(dev->copy_stream);
    if (dev->side_fork) cudaEventDestroy(dev->side_fork);
    if (dev->side_join) cudaEventDestroy(dev->side_join);
    if (dev->side_stream) cudaStreamDestroy(dev->side_stream);
    if (dev->stream) cudaStreamDestroy(dev->stream);
    (void)cudaGetLastError();
    free(dev);
}

static pb_status cuda_open(const pb_config *cfg, int ordinal, pb_device **out)
{
    pb_status st = PB_OK;
    pb_device *dev = NULL;
    char why[256];
    int count;
    struct cudaDeviceProp prop;

    *out = NULL;
    count = cuda_device_count(why, sizeof why);
    PB_REQUIRE(count > 0, PB_ERR_UNAVAILABLE, "cuda backend: %s", why);
    PB_REQUIRE(ordinal >= 0 && ordinal < count, PB_ERR_UNAVAILABLE,
               "cuda device %d asked for, but %d visible", ordinal, count);
    /* PB_ALLOC's void* assignment is C, not C++ */
    dev = (pb_device *)calloc(1, sizeof *dev);
    PB_CHECK_ALLOC(dev, sizeof *dev);
    dev->ordinal = ordinal;
    dev->precision = cfg ? cfg->precision : PB_FP32;
    PB_CUDA_CHECK(cudaSetDevice(ordinal));
    PB_CUDA_CHECK(cudaGetDeviceProperties(&prop, ordinal));
    /* bf16 tensor-core GEMMs and tf32 need Ampere */
    PB_REQUIRE(dev->precision == PB_FP32 || prop.major >= 8, PB_ERR_UNAVAILABLE,
               "--precision %s needs compute capability 8.0 or newer; cuda:%d (%s) is %d.%d",
               pb_precision_name(dev->precision), ordinal, prop.name, prop.major, prop.minor);
    dev->sm_count = prop.multiProcessorCount;
    /* non-blocking: never serialised behind the legacy default stream. The
     * side stream (the optimizer overlapping backward) at the lowest
     * priority, so that waiting GEMM blocks get each SM that frees up first:
     * on an H100, mlp-l bf16 took 7.82 ms a step against 7.96 at equal
     * priorities and 7.95 with no overlap (docs/gpu.md) */
    {
        int least = 0, greatest = 0;
        PB_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
        PB_CUDA_CHECK(cudaStreamCreateWithPriority(&dev->stream, cudaStreamNonBlocking, greatest));
        PB_CUDA_CHECK(cudaStreamCreateWithPriority(&dev->side_stream, cudaStreamNonBlocking, least));
    }
    PB_CUDA_CHECK(cudaStreamCreateWithFlags(&dev->copy_stream, cudaStreamNonBlocking));
    PB_CUDA_CHECK(cudaEventCreateWithFlags(&dev->prefetched, cudaEventDisableTiming));
    PB_CUDA_CHECK(cudaEventCreateWithFlags(&dev->side_fork, cudaEventDisableTiming));
    PB_CUDA_CHECK(cudaEventCreateWithFlags(&dev->side_join, cudaEventDisableTiming));
    PB_CUBLAS_CHECK(cublasLtCreate(&dev->lt));
    PB_CUDA_CHECK(cudaMalloc(&dev->workspace, WORKSPACE_BYTES));
    if (is_bf16(dev)) {
        /* sized now so that no layer grows it mid-run (a graph capture could
         * not allocate); ensure_bias16 still grows it for custom shapes */
        size_t need = 1u << 16;
        if (cfg && (size_t)cfg->shape.in > need) need = (size_t)cfg->shape.in;
        if (cfg && (size_t)cfg->shape.hidden > need) need = (size_t)cfg->shape.hidden;
        if (cfg && (size_t)cfg->shape.classes > need) need = (size_t)cfg->shape.classes;
        PB_TRY(ensure_bias16(dev, need));
    }
    *out = dev;
    dev = NULL;
cleanup:
    if (dev) cuda_close(dev);
    return st;
}

/* The kernel module's version from /proc/driver/nvidia/version (parsed by
 * pb_parse_driver_version, which the CPU tests exercise). */
static bool driver_module_version(char *out, size_t len)
{
    char line[512];
    bool found = false;
    FILE *f = fopen("/proc/driver/nvidia/version", "r");
    if (!f) return false;
    if (fgets(line, sizeof line, f)) found = pb_parse_driver_version(line, out, len);
    fclose(f);
    return found;
}

static pb_status cuda_info(pb_device *dev, pb_device_info *out)
{
    pb_status st = PB_OK;
    struct cudaDeviceProp prop;
    int drv = 0, rt = 0;
    size_t v;

    memset(out, 0, sizeof *out);
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev->ordinal));
    PB_CUDA_CHECK(cudaDriverGetVersion(&drv));
    PB_CUDA_CHECK(cudaRuntimeGetVersion(&rt));
    /* cudaDeviceProp.name is 256 bytes; every real name fits in 127 */
    snprintf(out->name, sizeof out->name, "%.127s", prop.name);
    /* the kernel module's version (what an upgrade changes), else the CUDA
     * version the driver supports */
    if (!driver_module_version(out->driver, sizeof out->driver))
        snprintf(out->driver, sizeof out->driver, "%d.%d", drv / 1000, (drv % 1000) / 10);
    snprintf(out->runtime, sizeof out->runtime, "%d.%d", rt / 1000, (rt % 1000) / 10);
    snprintf(out->blas, sizeof out->blas, "cuBLASLt");
    /* the library actually loaded, not the header built against */
    v = cublasLtGetVersion();
    snprintf(out->blas_version, sizeof out->blas_version, "%zu.%zu.%zu", v / 10000,
             (v % 10000) / 100, v % 100);
    out->total_mem_mb = (double)prop.totalGlobalMem / MIB;
    /* the NCCL library loaded now, which is what an upgrade changes (the
     * header's NCCL_VERSION_CODE is only what we compiled against) */
    {
        int nv = 0;
        if (ncclGetVersion(&nv) == ncclSuccess && nv > 0)
            snprintf(out->nccl, sizeof out->nccl, "%d.%d.%d", nv / 10000, (nv % 10000) / 100, nv % 100);
    }
cleanup:
    return st;
}

/* ------------------------------------------------------------------------ */
/* ops: memory                                                              */

static size_t cuda_act_bytes(const pb_device *dev, size_t elems)
{
    return elems * (is_bf16(dev) ? sizeof(bf16) : sizeof(float));
}

/* one bit per element of the [n, m] column-major D, columns padded to
 * aux_ld(n) bits = aux_ld(n) / 8 bytes */
static size_t cuda_aux_bytes(const pb_device *dev, int m, int n)
{
    (void)dev;
    if (!use_relu_mask || m <= 0 || n <= 0) return 0;
    return (size_t)(aux_ld(n) / 8) * (size_t)m;
}

/* The device's context is created here if it is not yet: the run creates
 * it anyway, and the free figure then leaves it out. */
static pb_status cuda_mem_info(int ordinal, size_t *free_b, size_t *total_b)
{
    pb_status st = PB_OK;
    *free_b = *total_b = 0;
    PB_CUDA_CHECK(cudaSetDevice(ordinal));
    PB_CUDA_CHECK(cudaMemGetInfo(free_b, total_b));
cleanup:
    return st;
}

static pb_status cuda_alloc(pb_device *dev, size_t bytes, void **ptr)
{
    pb_status st = PB_OK;
    void *p = NULL;
    cudaError_t e;
    size_t free_b = 0, total_b = 0;

    *ptr = NULL;
    if (bytes == 0) return PB_OK;
    PB_TRY(use_device(dev));
    if (dev->n_allocs == dev->cap_allocs) {
        size_t cap = dev->cap_allocs ? dev->cap_allocs * 2 : 64;
        alloc_rec *grown = (alloc_rec *)realloc(dev->allocs, cap * sizeof *grown);
        PB_CHECK_ALLOC(grown, cap * sizeof *grown);
        dev->allocs = grown;
        dev->cap_allocs = cap;
    }
    e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError(); /* not sticky: keep it out of the next launch check */
        p = NULL;
        (void)cudaMemGetInfo(&free_b, &total_b);
        (void)cudaGetLastError();
        st = pb_user_error(PB_ERR_NOMEM,
                      "cudaMalloc of %zu bytes (%.1f MiB) on cuda:%d failed: %.1f MiB free of "
                      "%.1f MiB",
                      bytes, bytes / MIB, dev->ordinal, free_b / MIB, total_b / MIB);
        goto cleanup;
    }
    PB_CUDA_CHECK(e);
    PB_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, dev->stream));
    /* other streams (a comm library's) may touch the buffer before ours
     * orders them, and alloc is set-up time: make the zeros real now */
    PB_CUDA_CHECK(cudaStreamSynchronize(dev->stream));
    dev->allocs[dev->n_allocs].ptr = p;
    dev->allocs[dev->n_allocs].bytes = bytes;
    dev->n_allocs++;
    dev->bytes_now += bytes;
    if (dev->bytes_now > dev->bytes_peak) dev->bytes_peak = dev->bytes_now;
    *ptr = p;
    p = NULL;
cleanup:
    if (p) cudaFree(p);
    return st;
}

static void cuda_free(pb_device *dev, void *ptr)
{
    if (!ptr) return;
    (void)use_device(dev);
    for (size_t i = 0; i < dev->n_allocs; i++) {
        if (dev->allocs[i].ptr == ptr) {
            dev->bytes_now -= dev->allocs[i].bytes;
            dev->allocs[i] = dev->allocs[--dev->n_allocs];
            break;
        }
    }
    cudaFree(ptr);
}

/* dev may be NULL: the loader pins its buffers before any device is open.
 * Portable, so that every device's context sees the memory as pinned (dp and
 * mp copy one host batch to several GPUs). */
static pb_status cuda_host_alloc(pb_device *dev, size_t bytes, void **ptr)
{
    pb_status st = PB_OK;
    cudaError_t e;
    *ptr = NULL;
    if (bytes == 0) return PB_OK;
    if (dev) PB_TRY(use_device(dev));
    e = cudaHostAlloc(ptr, bytes, cudaHostAllocPortable);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        *ptr = NULL;
        st = pb_user_error(PB_ERR_NOMEM, "cudaHostAlloc of %zu bytes (%.1f MiB) of pinned memory failed",
                      bytes, bytes / MIB);
        goto cleanup;
    }
    PB_CUDA_CHECK(e);
cleanup:
    return st;
}

static void cuda_host_free(pb_device *dev, void *ptr)
{
    if (!ptr) return;
    if (dev) (void)use_device(dev);
    cudaFreeHost(ptr);
}

static pb_status cuda_zero(pb_device *dev, void *ptr, size_t bytes)
{
    pb_status st = PB_OK;
    if (bytes == 0) return PB_OK;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, dev->stream));
cleanup:
    return st;
}

/* Asynchronous on the stream: from pinned memory the call returns before the
 * copy has run, so the host buffer must not be rewritten before a later
 * synchronize (pageable sources are staged by the driver before return). */
/* Every copy of the backend: enqueued on `stream`, optionally waited for. */
static pb_status copy_on(pb_device *dev, void *dst, const void *src, size_t bytes,
                         cudaMemcpyKind kind, cudaStream_t stream, bool wait)
{
    pb_status st = PB_OK;
    if (bytes == 0 || dst == src) return PB_OK;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream));
    if (wait) PB_CUDA_CHECK(cudaStreamSynchronize(stream));
cleanup:
    return st;
}

static pb_status cuda_upload(pb_device *dev, void *dst, const void *src, size_t bytes)
{
    return copy_on(dev, dst, src, bytes, cudaMemcpyHostToDevice, dev->stream, false);
}

static pb_status cuda_download(pb_device *dev, void *dst, const void *src, size_t bytes)
{
    return copy_on(dev, dst, src, bytes, cudaMemcpyDeviceToHost, dev->stream, true);
}

static pb_status cuda_copy(pb_device *dev, void *dst, const void *src, size_t bytes)
{
    return copy_on(dev, dst, src, bytes, cudaMemcpyDeviceToDevice, dev->stream, false);
}

/* Peer copy on the destination's stream, ordered by the caller's marks
 * (backend.h): recording an event on the source's stream here, as this once
 * did, would order the copy after everything the source has enqueued by the
 * time the receiver gets to it (all of an mp stage's forwards), not after
 * the data. cudaMemcpyPeerAsync goes over NVLink/PCIe directly where peer
 * access is enabled (pb_p2p_setup), else through the host. */
static pb_status cuda_copy_peer(pb_device *dst_dev, void *dst, pb_device *src_dev, const void *src, size_t bytes)
{
    pb_status st = PB_OK;
    if (bytes == 0) return PB_OK;
    PB_TRY(use_device(dst_dev));
    if (dst_dev->ordinal == src_dev->ordinal)
        PB_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, dst_dev->stream));
    else
        PB_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev->ordinal, src, src_dev->ordinal, bytes, dst_dev->stream));
cleanup:
    return st;
}

/* NVML's word on whether a and b talk over NVLink: 1 yes, 0 no, -1 unknown
 * (no libnvidia-ml, or it failed). Loaded at run time so that the build and
 * machines without it need nothing; CUDA and NVML number devices
 * differently, so they are matched by PCI bus id. */
static int nvml_nvlink(int a, int b)
{
    typedef int (*init_fn)(void);
    typedef int (*handle_fn)(const char *bus, void **dev);
    typedef int (*p2p_fn)(void *d1, void *d2, int index, int *status);
    const int caps_index_nvlink = 2, status_ok = 0; /* nvmlGpuP2PCapsIndex_t, nvmlGpuP2PStatus_t */
    int out = -1;
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return -1;
    init_fn init = (init_fn)dlsym(lib, "nvmlInit_v2"), shutdown = (init_fn)dlsym(lib, "nvmlShutdown");
    handle_fn handle = (handle_fn)dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2");
    p2p_fn p2p = (p2p_fn)dlsym(lib, "nvmlDeviceGetP2PStatus");
    if (init && shutdown && handle && p2p && init() == 0) {
        char bus_a[32], bus_b[32];
        void *da = NULL, *db = NULL;
        int status = -1;
        if (cudaDeviceGetPCIBusId(bus_a, sizeof bus_a, a) == cudaSuccess &&
            cudaDeviceGetPCIBusId(bus_b, sizeof bus_b, b) == cudaSuccess && handle(bus_a, &da) == 0 &&
            handle(bus_b, &db) == 0 && p2p(da, db, caps_index_nvlink, &status) == 0)
            out = status == status_ok;
        shutdown();
    }
    (void)cudaGetLastError(); /* a failed bus-id query is not the run's error */
    dlclose(lib);
    return out;
}

/* The driver's view of the link a -> b for pb_p2p_setup. */
static pb_status cuda_peer_facts(int a, int b, pb_p2p_facts *out)
{
    pb_status st = PB_OK;
    int can = 0, atomic = 0, rank = 0;
    memset(out, 0, sizeof *out);
    PB_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, a, b));
    if (can) {
        PB_CUDA_CHECK(cudaDeviceGetP2PAttribute(&atomic, cudaDevP2PAttrNativeAtomicSupported, a, b));
        PB_CUDA_CHECK(cudaDeviceGetP2PAttribute(&rank, cudaDevP2PAttrPerformanceRank, a, b));
    }
    out->can_access = can != 0;
    out->native_atomic = atomic != 0;
    out->perf_rank = rank;
    out->nvlink = can ? nvml_nvlink(a, b) : -1;
cleanup:
    return st;
}

/* Device a may access b's memory. Enabling is per context and process-wide:
 * a second dp/mp in the process (--verify's reference, tests) finds it
 * enabled, which cudaDeviceEnablePeerAccess reports as an error that also
 * stays as the thread's last error; both are cleared here. */
static pb_status cuda_peer_enable(int a, int b)
{
    pb_status st = PB_OK;
    int cur = -1;
    PB_CUDA_CHECK(cudaGetDevice(&cur));
    PB_CUDA_CHECK(cudaSetDevice(a));
    {
        cudaError_t e = cudaDeviceEnablePeerAccess(b, 0);
        if (e == cudaErrorPeerAccessAlreadyEnabled) {
            (void)cudaGetLastError();
            e = cudaSuccess;
        }
        if (e == cudaErrorTooManyPeers) { /* out of peer slots: the pair is host-staged (p2p.h) */
            (void)cudaGetLastError();
            (void)cudaSetDevice(cur);
            return pb_user_error(PB_ERR_UNAVAILABLE, "%s", cudaGetErrorString(e));
        }
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            (void)cudaSetDevice(cur);
            return pb_error(PB_ERR_BACKEND, "cudaDeviceEnablePeerAccess(cuda:%d -> cuda:%d) failed: %s (%s)", a, b,
                            cudaGetErrorString(e), cudaGetErrorName(e));
        }
    }
    PB_CUDA_CHECK(cudaSetDevice(cur));
cleanup:
    return st;
}

static const pb_p2p_driver cuda_peer = {.facts = cuda_peer_facts, .enable = cuda_peer_enable};

/* Only pinned sources overlap (pageable ones are staged synchronously by the
 * driver). Nothing orders the copy after compute work that still reads dst:
 * the caller double-buffers, as the loader does. */
static pb_status cuda_prefetch(pb_device *dev, void *dst, const void *src, size_t bytes)
{
    return copy_on(dev, dst, src, bytes, cudaMemcpyHostToDevice, dev->copy_stream, false);
}

/* An event marks everything issued on the copy stream so far; the compute
 * stream waits for it on the device, the host does not block. */
static pb_status cuda_prefetch_wait(pb_device *dev)
{
    pb_status st = PB_OK;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaEventRecord(dev->prefetched, dev->copy_stream));
    PB_CUDA_CHECK(cudaStreamWaitEvent(dev->stream, dev->prefetched, 0));
cleanup:
    return st;
}

/* bf16 converts on the device (half the bytes over PCIe on the way down is
 * not worth a host conversion loop; the way up sends fp32 and converts in one
 * kernel) through the persistent fp32 staging buffer. */
static pb_status cuda_upload_act(pb_device *dev, void *dst, const float *src, size_t elems)
{
    pb_status st = PB_OK;
    if (elems == 0) return PB_OK;
    if (!is_bf16(dev)) return cuda_upload(dev, dst, src, elems * sizeof(float));
    PB_TRY(use_device(dev));
    PB_TRY(ensure_staging(dev, elems * sizeof(float)));
    PB_CUDA_CHECK(cudaMemcpyAsync(dev->staging, src, elems * sizeof(float), cudaMemcpyHostToDevice,
                                  dev->stream));
    PB_TRY(launch_to_act(dev, elems, dev->staging, dst));
cleanup:
    return st;
}

static pb_status cuda_download_act(pb_device *dev, float *dst, const void *src, size_t elems)
{
    pb_status st = PB_OK;
    if (elems == 0) return PB_OK;
    if (!is_bf16(dev)) return cuda_download(dev, dst, src, elems * sizeof(float));
    PB_TRY(use_device(dev));
    PB_TRY(ensure_staging(dev, elems * sizeof(float)));
    PB_TRY(launch_from_act(dev, elems, src, dev->staging));
    PB_CUDA_CHECK(cudaMemcpyAsync(dst, dev->staging, elems * sizeof(float), cudaMemcpyDeviceToHost,
                                  dev->stream));
    PB_CUDA_CHECK(cudaStreamSynchronize(dev->stream));
cleanup:
    return st;
}

static double cuda_peak_mem_mb(const pb_device *dev) { return (double)dev->bytes_peak / MIB; }

/* ------------------------------------------------------------------------ */
/* ops: compute                                                             */

/* One fused GEMM to try: an epilogue, and whether its bias (or bias
 * gradient) vector is the caller's fp32 one or the bf16 scratch. */
typedef struct mm_try {
    cublasLtEpilogue_t epilogue;
    bool bias16;
} mm_try;

static bool epilogue_has_bias(cublasLtEpilogue_t e)
{
    return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_RELU_BIAS ||
           e == CUBLASLT_EPILOGUE_RELU_AUX_BIAS || e == CUBLASLT_EPILOGUE_DRELU_BGRAD;
}

static bool epilogue_has_aux(cublasLtEpilogue_t e)
{
    return e == CUBLASLT_EPILOGUE_RELU_AUX || e == CUBLASLT_EPILOGUE_RELU_AUX_BIAS ||
           e == CUBLASLT_EPILOGUE_DRELU || e == CUBLASLT_EPILOGUE_DRELU_BGRAD;
}

/* Each epilogue in order of preference; in bf16 an fp32 bias is asked for
 * first (exact, should a later cuBLASLt allow it) and the bf16 copy second.
 * Unsupported forms cost one heuristic query per shape, then none. */
static int expand_tries(const pb_device *dev, const cublasLtEpilogue_t *epis, int n_epis,
                        mm_try *tries)
{
    int n = 0;
    for (int i = 0; i < n_epis; i++) {
        tries[n].epilogue = epis[i];
        tries[n++].bias16 = false;
        if (is_bf16(dev) && epilogue_has_bias(epis[i])) {
            tries[n].epilogue = epis[i];
            tries[n++].bias16 = true;
        }
    }
    return n;
}

/* fp32 bias beside a bf16 D must be declared; otherwise it is D's type */
static int32_t try_bias_type(const pb_device *dev, const mm_try *t)
{
    return is_bf16(dev) && !t->bias16 ? CUDA_R_32F : -1;
}

static pb_status cuda_linear_fwd(pb_device *dev, const pb_linear *l)
{
    pb_status st = PB_OK;
    cudaDataType_t act = act_type(dev);
    bool ran = false, wrote_aux = false;
    bool with_aux = use_relu_mask && l->relu && l->aux;
    cublasLtEpilogue_t epis[2];
    mm_try tries[4];
    int n_epis = 0, n_tries;
    mm_key key;
    mm_plan *p = NULL;
    const void *bias, *aux;

    if (l->m == 0) return PB_OK;
    PB_REQUIRE(l->m > 0 && l->n > 0 && l->k > 0 && l->x && l->w && l->y, PB_ERR_INTERNAL,
               "linear_fwd: bad shape m=%d n=%d k=%d or NULL tensor", l->m, l->n, l->k);
    PB_TRY(use_device(dev));
    if (l->b && is_bf16(dev)) PB_TRY(ensure_bias16(dev, (size_t)l->n));

    /* preferred first: with the mask, then without it; unfused last */
    if (l->relu) {
        if (with_aux) epis[n_epis++] = l->b ? CUBLASLT_EPILOGUE_RELU_AUX_BIAS : CUBLASLT_EPILOGUE_RELU_AUX;
        epis[n_epis++] = l->b ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    } else if (l->b) {
        epis[n_epis++] = CUBLASLT_EPILOGUE_BIAS;
    }
    n_tries = expand_tries(dev, epis, n_epis, tries);
    for (int i = 0; i < n_tries && !ran; i++) {
        bias = !epilogue_has_bias(tries[i].epilogue) ? NULL
               : tries[i].bias16                     ? (const void *)dev->bias16
                                                     : (const void *)l->b;
        aux = epilogue_has_aux(tries[i].epilogue) ? l->aux : NULL;
        /* y^T[n,m] = op_T(w^T[k,n]) x^T[k,m] */
        key = make_key(dev, l->n, l->m, l->k, true, false, act, act, tries[i].epilogue, l->w, l->k,
                       l->x, l->k, l->y, l->n, bias, try_bias_type(dev, &tries[i]), aux,
                       aux_ld(l->n));
        PB_TRY(plan_get(dev, &key, bias, aux, &p));
        if (!p->supported) continue;
        if (tries[i].bias16) PB_TRY(launch_to_act(dev, (size_t)l->n, l->b, dev->bias16));
        PB_TRY(plan_run(dev, p, l->w, l->x, l->y, bias, aux, 0.0f));
        ran = true;
        wrote_aux = aux != NULL;
    }
    if (!ran) {
        key = make_key(dev, l->n, l->m, l->k, true, false, act, act, CUBLASLT_EPILOGUE_DEFAULT, l->w,
                       l->k, l->x, l->k, l->y, l->n, NULL, -1, NULL, 0);
        PB_TRY(matmul_plain(dev, key, l->w, l->x, l->y, 0.0f, "forward"));
        if (l->b || l->relu) PB_TRY(launch_bias_act(dev, l->m, l->n, l->y, l->b, l->relu));
    }
    /* a mask we were asked for but did not write must never be read */
    if (with_aux && !wrote_aux) dev->aux_unusable = true;
cleanup:
    return st;
}

static pb_status cuda_linear_bwd(pb_device *dev, const pb_linear_grad *g)
{
    pb_status st = PB_OK;
    cudaDataType_t act = act_type(dev);
    bool ran = false;
    cublasLtEpilogue_t epis[2];
    mm_try tries[4];
    int n_epis = 0, n_tries;
    mm_key key;
    mm_plan *p = NULL;
    const void *bias;

    if (g->m == 0) return PB_OK;
    PB_REQUIRE(g->m > 0 && g->n > 0 && g->k > 0 && g->dy && g->x && g->w && g->dw, PB_ERR_INTERNAL,
               "linear_bwd: bad shape m=%d n=%d k=%d or NULL tensor", g->m, g->n, g->k);
    PB_TRY(use_device(dev));

    /* dw^T[k,n] = x^T[k,m] op_T(dy^T[n,m]); db = sum of op(B) over the GEMM's
     * k (the batch), which is BGRADB. D is fp32 in every precision, and the
     * bias gradient takes D's type, so db is written directly. */
    if (g->db) {
        key = make_key(dev, g->k, g->n, g->m, false, true, act, CUDA_R_32F, CUBLASLT_EPILOGUE_BGRADB,
                       g->x, g->k, g->dy, g->n, g->dw, g->k, g->db, -1, NULL, 0);
        PB_TRY(matmul(dev, &key, g->x, g->dy, g->dw, g->db, NULL, g->dw_beta, &ran, NULL));
    }
    if (!ran) {
        key = make_key(dev, g->k, g->n, g->m, false, true, act, CUDA_R_32F, CUBLASLT_EPILOGUE_DEFAULT,
                       g->x, g->k, g->dy, g->n, g->dw, g->k, NULL, -1, NULL, 0);
        PB_TRY(matmul_plain(dev, key, g->x, g->dy, g->dw, g->dw_beta, "weight-gradient"));
        if (g->db) PB_TRY(launch_colsum_mask(dev, g->m, g->n, (void *)g->dy, NULL, g->db));
    }

    if (!g->dx) goto cleanup;
    /* dx^T[k,m] = w^T[k,n] dy^T[n,m]; the previous layer's mask has the same
     * [k, m] column-major shape as D here, so its ld is aux_ld(k) as written
     * by that layer's forward (whose n is our k). Preference: DRELU_BGRAD
     * (mask and db_prev in the GEMM; in bf16 db_prev comes out bf16 and is
     * widened, one rounding of an fp32 sum), then DRELU plus a column sum,
     * then the plain GEMM with the mask taken from x > 0. */
    ran = false;
    if (use_relu_mask && g->x_relu && g->x_aux && !dev->aux_unusable) {
        if (g->db_prev && is_bf16(dev)) PB_TRY(ensure_bias16(dev, (size_t)g->k));
        if (g->db_prev) epis[n_epis++] = CUBLASLT_EPILOGUE_DRELU_BGRAD;
        epis[n_epis++] = CUBLASLT_EPILOGUE_DRELU;
        n_tries = expand_tries(dev, epis, n_epis, tries);
        for (int i = 0; i < n_tries && !ran; i++) {
            bias = !epilogue_has_bias(tries[i].epilogue) ? NULL
                   : tries[i].bias16                     ? (const void *)dev->bias16
                                                         : (const void *)g->db_prev;
            key = make_key(dev, g->k, g->m, g->n, false, false, act, act, tries[i].epilogue, g->w,
                           g->k, g->dy, g->n, g->dx, g->k, bias, try_bias_type(dev, &tries[i]),
                           g->x_aux, aux_ld(g->k));
            PB_TRY(plan_get(dev, &key, bias, g->x_aux, &p));
            if (!p->supported) continue;
            PB_TRY(plan_run(dev, p, g->w, g->dy, g->dx, bias, g->x_aux, 0.0f));
            if (tries[i].bias16)
                PB_TRY(launch_from_act(dev, (size_t)g->k, dev->bias16, g->db_prev));
            else if (!bias && g->db_prev)
                PB_TRY(launch_colsum_mask(dev, g->m, g->k, g->dx, NULL, g->db_prev));
            ran = true;
        }
    }
    if (!ran) {
        key = make_key(dev, g->k, g->m, g->n, false, false, act, act, CUBLASLT_EPILOGUE_DEFAULT, g->w,
                       g->k, g->dy, g->n, g->dx, g->k, NULL, -1, NULL, 0);
        PB_TRY(matmul_plain(dev, key, g->w, g->dy, g->dx, 0.0f, "input-gradient"));
        /* mask by x > 0 (x is the previous layer's ReLU output) and sum */
        if (g->x_relu)
            PB_TRY(launch_colsum_mask(dev, g->m, g->k, g->dx, g->x, g->db_prev));
    }
cleanup:
    return st;
}

static pb_status cuda_softmax_xent(pb_device *dev, int m, int c, const void *logits,
                                   const int32_t *labels, float scale, float *loss_sum, void *dlogits)
{
    pb_status st = PB_OK;
    unsigned blocks;
    if (m == 0) return PB_OK;
    PB_REQUIRE(m > 0 && c > 0 && logits && labels, PB_ERR_INTERNAL,
               "softmax_xent: bad shape m=%d c=%d or NULL tensor", m, c);
    PB_TRY(use_device(dev));
    blocks = (unsigned)((m + XENT_WARPS - 1) / XENT_WARPS);
    if (is_bf16(dev))
        softmax_xent_kernel<bf16><<<blocks, XENT_WARPS * 32, 0, dev->stream>>>(
            m, c, (const bf16 *)logits, labels, scale, loss_sum, (bf16 *)dlogits);
    else
        softmax_xent_kernel<float><<<blocks, XENT_WARPS * 32, 0, dev->stream>>>(
            m, c, (const float *)logits, labels, scale, loss_sum, (float *)dlogits);
    PB_CUDA_CHECK_LAUNCH("softmax_xent_kernel");
cleanup:
    return st;
}

/* The optimizer's kernels on `stream` (the compute stream, or the side
 * stream for optimizer_side): passed in, never swapped into dev->stream,
 * which other threads read (mp's neighbours order their copies on it). */
static pb_status optimizer_on(pb_device *dev, cudaStream_t stream, const pb_opt_args *a)
{
    pb_status st = PB_OK;
    opt_hparams h;
    bool bf16_copy = is_bf16(dev);

    if (a->n == 0) return PB_OK;
    PB_REQUIRE(a->params && (a->grads || a->momentum_ready), PB_ERR_INTERNAL, "optimizer: NULL params or grads");
    PB_TRY(use_device(dev));
    memset(&h, 0, sizeof h);
    h.lr = a->lr;
    h.momentum = a->momentum;
    h.wd = a->weight_decay;
    h.b1 = a->beta1;
    h.b2 = a->beta2;
    h.eps = a->eps;
    PB_REQUIRE(!a->momentum_ready || a->kind == PB_OPT_SGD, PB_ERR_INTERNAL,
               "optimizer: momentum_ready is for SGD only");
    if (a->kind == PB_OPT_SGD && a->momentum_ready) {
        if (bf16_copy) PB_TRY((launch_optimizer_t<PB_OPT_SGD, bf16, true>(dev, stream, a, h)));
        else PB_TRY((launch_optimizer_t<PB_OPT_SGD, float, true>(dev, stream, a, h)));
    } else if (a->kind == PB_OPT_SGD) {
        if (bf16_copy) PB_TRY((launch_optimizer_t<PB_OPT_SGD, bf16, false>(dev, stream, a, h)));
        else PB_TRY((launch_optimizer_t<PB_OPT_SGD, float, false>(dev, stream, a, h)));
    } else if (a->kind == PB_OPT_ADAMW) {
        PB_REQUIRE(a->m && a->v && a->step >= 1, PB_ERR_INTERNAL,
                   "optimizer: AdamW needs both moments and a step >= 1 (step %d)", a->step);
        /* in double: beta^step for large steps underflows float's precision
         * long before it underflows its range */
        h.bc1 = (float)(1.0 - pow((double)a->beta1, (double)a->step));
        h.bc2 = (float)(1.0 - pow((double)a->beta2, (double)a->step));
        if (bf16_copy) PB_TRY((launch_optimizer_t<PB_OPT_ADAMW, bf16, false>(dev, stream, a, h)));
        else PB_TRY((launch_optimizer_t<PB_OPT_ADAMW, float, false>(dev, stream, a, h)));
    } else {
        st = pb_error(PB_ERR_INTERNAL, "optimizer: unknown kind %d", (int)a->kind);
    }
cleanup:
    return st;
}

static pb_status cuda_optimizer(pb_device *dev, const pb_opt_args *a) { return optimizer_on(dev, dev->stream, a); }

/* The optimizer on the side stream, after everything enqueued so far on the
 * compute stream (this layer's gradients): memory-bound updates overlap the
 * compute-bound GEMMs of the layers still to go back through. dev->stream
 * is never changed: another thread (an mp neighbour's copy, the comm) may
 * read it meanwhile. */
static pb_status cuda_optimizer_side(pb_device *dev, const pb_opt_args *a)
{
    pb_status st = PB_OK;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaEventRecord(dev->side_fork, dev->stream));
    PB_CUDA_CHECK(cudaStreamWaitEvent(dev->side_stream, dev->side_fork, 0));
    PB_TRY(optimizer_on(dev, dev->side_stream, a));
    dev->side_pending = true;
cleanup:
    return st;
}

static pb_status cuda_join_side(pb_device *dev)
{
    pb_status st = PB_OK;
    if (!dev->side_pending) return PB_OK;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaEventRecord(dev->side_join, dev->side_stream));
    PB_CUDA_CHECK(cudaStreamWaitEvent(dev->stream, dev->side_join, 0));
    dev->side_pending = false;
cleanup:
    return st;
}

static pb_status cuda_axpy(pb_device *dev, size_t n, float alpha, const float *x, float *y)
{
    pb_status st = PB_OK;
    if (n == 0) return PB_OK;
    PB_TRY(use_device(dev));
    if (aligned16(x) && aligned16(y))
        axpy_kernel<true><<<grid_for(dev, n / 4), THREADS, 0, dev->stream>>>(n, alpha, x, y);
    else
        axpy_kernel<false><<<grid_for(dev, n), THREADS, 0, dev->stream>>>(n, alpha, x, y);
    PB_CUDA_CHECK_LAUNCH("axpy_kernel");
cleanup:
    return st;
}

static pb_status cuda_cast_params(pb_device *dev, void *dst, const float *src, size_t n)
{
    pb_status st = PB_OK;
    if (n == 0) return PB_OK;
    PB_TRY(use_device(dev));
    if (is_bf16(dev)) {
        PB_TRY(launch_to_act(dev, n, src, dst));
    } else if (dst != (const void *)src) {
        PB_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice,
                                      dev->stream));
    }
cleanup:
    return st;
}

/* ------------------------------------------------------------------------ */
/* ops: timing and graphs                                                   */

static pb_status cuda_mark_create(pb_device *dev, pb_mark **mark)
{
    pb_status st = PB_OK;
    pb_mark *mk = NULL;
    *mark = NULL;
    PB_TRY(use_device(dev));
    mk = (pb_mark *)calloc(1, sizeof *mk);
    PB_CHECK_ALLOC(mk, sizeof *mk);
    PB_CUDA_CHECK(cudaEventCreate(&mk->ev));
    *mark = mk;
    mk = NULL;
cleanup:
    free(mk);
    return st;
}

static void cuda_mark_destroy(pb_device *dev, pb_mark *mark)
{
    if (!mark) return;
    (void)use_device(dev);
    cudaEventDestroy(mark->ev);
    free(mark);
}

static pb_status cuda_mark_record(pb_device *dev, pb_mark *mark)
{
    pb_status st = PB_OK;
    PB_TRY(use_device(dev));
    /* inside a capture a plain record only orders captured work; External
     * makes it a node of the graph, recorded at every replay, so the phase
     * marks time the replayed step */
    PB_CUDA_CHECK(cudaEventRecordWithFlags(mark->ev, dev->stream,
                                           dev->capturing ? cudaEventRecordExternal
                                                          : cudaEventRecordDefault));
cleanup:
    return st;
}

static pb_status cuda_mark_wait(pb_device *dev, const pb_mark *mark)
{
    pb_status st = PB_OK;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaStreamWaitEvent(dev->stream, mark->ev, 0));
cleanup:
    return st;
}

static pb_status cuda_mark_elapsed_ms(pb_device *dev, const pb_mark *a, const pb_mark *b, double *ms)
{
    pb_status st = PB_OK;
    float f = 0.0f;
    *ms = 0.0;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaEventElapsedTime(&f, a->ev, b->ev));
    *ms = f;
cleanup:
    return st;
}

static pb_status cuda_synchronize(pb_device *dev)
{
    pb_status st = PB_OK;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaStreamSynchronize(dev->stream));
cleanup:
    return st;
}

/* Thread-local capture: with a host thread per device (dp), global mode would
 * let one thread's cudaMalloc or synchronize invalidate another's capture. */
static pb_status cuda_capture_begin(pb_device *dev)
{
    pb_status st = PB_OK;
    PB_REQUIRE(!dev->capturing, PB_ERR_INTERNAL, "capture_begin while already capturing");
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaStreamBeginCapture(dev->stream, cudaStreamCaptureModeThreadLocal));
    dev->capturing = true;
cleanup:
    return st;
}

static pb_status cuda_capture_end(pb_device *dev)
{
    pb_status st = PB_OK;
    cudaGraph_t g = NULL;
    PB_REQUIRE(dev->capturing, PB_ERR_INTERNAL, "capture_end without capture_begin");
    PB_TRY(use_device(dev));
    dev->capturing = false;
    PB_CUDA_CHECK(cudaStreamEndCapture(dev->stream, &g));
    if (dev->graph) {
        PB_CUDA_CHECK(cudaGraphExecDestroy(dev->graph));
        dev->graph = NULL;
    }
    PB_CUDA_CHECK(cudaGraphInstantiate(&dev->graph, g, 0));
cleanup:
    if (g) cudaGraphDestroy(g);
    return st;
}

static pb_status cuda_replay(pb_device *dev)
{
    pb_status st = PB_OK;
    PB_REQUIRE(dev->graph, PB_ERR_INTERNAL, "replay without a captured graph");
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaGraphLaunch(dev->graph, dev->stream));
cleanup:
    return st;
}

/* ------------------------------------------------------------------------ */

/* Designated, in declaration order (C++20 syntax, accepted by nvcc in
 * C++17 mode without a warning): a slot added to or moved in backend.h then
 * fails to compile here instead of shifting every pointer after it. */
/* ------------------------------------------------------------------------ */
/* ops: calibration and the GEMM-alone reference                            */

/* A device buffer of n random values in the activation type (fp32 staging
 * first, then converted), outside the peak-memory accounting. */
static pb_status random_act(pb_device *dev, size_t n, void **out)
{
    pb_status st = PB_OK;
    float *tmp = NULL;
    *out = NULL;
    PB_CUDA_CHECK(cudaMalloc((void **)&tmp, n * sizeof(float)));
    fill_uniform_kernel<<<grid_for(dev, n), THREADS, 0, dev->stream>>>(n, tmp, 0x5eedULL + n);
    PB_CUDA_CHECK_LAUNCH("fill_uniform_kernel");
    if (!is_bf16(dev)) {
        *out = tmp;
        return PB_OK;
    }
    PB_CUDA_CHECK(cudaMalloc(out, n * sizeof(bf16)));
    PB_TRY(launch_to_act(dev, n, tmp, *out));
    PB_CUDA_CHECK(cudaStreamSynchronize(dev->stream));
cleanup:
    cudaFree(tmp);
    return st;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Times `sets` runs of fn (after one warm-up run) with events on the
 * compute stream; *ms is the median. */
typedef pb_status (*gemm_set_fn)(pb_device *dev, void *arg);
static pb_status time_sets(pb_device *dev, gemm_set_fn fn, void *arg, int sets, double *ms)
{
    pb_status st = PB_OK;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double t[64];
    if (sets > 64) sets = 64;
    PB_CUDA_CHECK(cudaEventCreate(&e0));
    PB_CUDA_CHECK(cudaEventCreate(&e1));
    PB_TRY(fn(dev, arg));
    for (int i = 0; i < sets; i++) {
        float f = 0.0f;
        PB_CUDA_CHECK(cudaEventRecord(e0, dev->stream));
        PB_TRY(fn(dev, arg));
        PB_CUDA_CHECK(cudaEventRecord(e1, dev->stream));
        PB_CUDA_CHECK(cudaEventSynchronize(e1));
        PB_CUDA_CHECK(cudaEventElapsedTime(&f, e0, e1));
        t[i] = f;
    }
    qsort(t, (size_t)sets, sizeof t[0], cmp_double);
    *ms = t[sets / 2];
cleanup:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    return st;
}

typedef struct square_args {
    int n, reps;
    void *a, *b, *d;
} square_args;

static pb_status square_set(pb_device *dev, void *arg)
{
    pb_status st = PB_OK;
    square_args *q = (square_args *)arg;
    cudaDataType_t act = act_type(dev);
    mm_key key = make_key(dev, q->n, q->n, q->n, false, false, act, act, CUBLASLT_EPILOGUE_DEFAULT,
                          q->a, q->n, q->b, q->n, q->d, q->n, NULL, -1, NULL, 0);
    for (int i = 0; i < q->reps; i++) PB_TRY(matmul_plain(dev, key, q->a, q->b, q->d, 0.0f, "calibration"));
cleanup:
    return st;
}

static pb_status cuda_calibrate(pb_device *dev, double *tflops)
{
    pb_status st = PB_OK;
    /* 8192^3 fills an H100/H200 and keeps each GEMM far above launch cost;
     * plain fp32 runs ~20x slower than bf16, so it gets fewer per set */
    square_args q = {8192, dev->precision == PB_FP32 ? 2 : 8, NULL, NULL, NULL};
    size_t n = (size_t)q.n * q.n;
    double ms = 0.0;
    PB_TRY(use_device(dev));
    PB_TRY(random_act(dev, n, &q.a));
    PB_TRY(random_act(dev, n, &q.b));
    PB_TRY(random_act(dev, n, &q.d));
    PB_TRY(time_sets(dev, square_set, &q, 7, &ms));
    *tflops = 2.0 * q.n * (double)q.n * q.n * q.reps / (ms * 1e-3) / 1e12;
cleanup:
    cudaFree(q.a);
    cudaFree(q.b);
    cudaFree(q.d);
    return st;
}

typedef struct step_args {
    int n_layers, m;
    const int *in, *out;
    void *act, *w, *top, *dz[2]; /* activation type */
    float *dw;
    float dw_beta;
} step_args;

/* The step's GEMMs exactly as linear_fwd/linear_bwd issue them (same keys),
 * with the default epilogue, on buffers laid out as the step's: every layer
 * its own weights, gradients and activations (one shared weight buffer
 * could sit in L2 and flatter the reference). */
static pb_status step_set(pb_device *dev, void *arg)
{
    pb_status st = PB_OK;
    step_args *a = (step_args *)arg;
    cudaDataType_t act = act_type(dev);
    size_t es = is_bf16(dev) ? sizeof(bf16) : sizeof(float);
    char *acts = (char *)a->act, *ws = (char *)a->w;
    size_t wo = 0, ao = 0;
    int cur = 0;
    for (int l = 0; l < a->n_layers; l++) {
        int k = a->in[l], n = a->out[l], m = a->m;
        void *x = acts + ao * es, *y = acts + (ao + (size_t)m * k) * es, *w = ws + wo * es;
        mm_key key = make_key(dev, n, m, k, true, false, act, act, CUBLASLT_EPILOGUE_DEFAULT, w, k, x, k,
                              y, n, NULL, -1, NULL, 0);
        PB_TRY(matmul_plain(dev, key, w, x, y, 0.0f, "forward"));
        wo += (size_t)k * n;
        ao += (size_t)m * k;
    }
    for (int l = a->n_layers - 1; l >= 0; l--) {
        int k = a->in[l], n = a->out[l], m = a->m;
        wo -= (size_t)k * n;
        ao -= (size_t)m * k;
        void *x = acts + ao * es, *w = ws + wo * es, *dy = l == a->n_layers - 1 ? a->top : a->dz[cur];
        float *dw = a->dw + wo;
        mm_key key = make_key(dev, k, n, m, false, true, act, CUDA_R_32F, CUBLASLT_EPILOGUE_DEFAULT, x, k,
                              dy, n, dw, k, NULL, -1, NULL, 0);
        PB_TRY(matmul_plain(dev, key, x, dy, dw, a->dw_beta, "weight-gradient"));
        if (l == 0) break;
        key = make_key(dev, k, m, n, false, false, act, act, CUBLASLT_EPILOGUE_DEFAULT, w, k, dy, n,
                       a->dz[cur ^ 1], k, NULL, -1, NULL, 0);
        PB_TRY(matmul_plain(dev, key, w, dy, a->dz[cur ^ 1], 0.0f, "input-gradient"));
        cur ^= 1;
    }
cleanup:
    return st;
}

static pb_status cuda_gemm_reference(pb_device *dev, int n_layers, const int *in, const int *out,
                                     int m, float dw_beta, int reps, double *ms)
{
    pb_status st = PB_OK;
    step_args a = {n_layers, m, in, out, NULL, NULL, NULL, {NULL, NULL}, NULL, dw_beta};
    pb_gemm_ref_sizes z = pb_gemm_ref_size(n_layers, in, out, m);
    PB_TRY(use_device(dev));
    PB_TRY(random_act(dev, z.act_total, &a.act));
    PB_TRY(random_act(dev, z.w_total, &a.w));
    PB_TRY(random_act(dev, z.grad, &a.top));
    PB_TRY(random_act(dev, z.grad, &a.dz[0]));
    PB_TRY(random_act(dev, z.grad, &a.dz[1]));
    PB_CUDA_CHECK(cudaMalloc((void **)&a.dw, z.w_total * sizeof(float)));
    PB_CUDA_CHECK(cudaMemset(a.dw, 0, z.w_total * sizeof(float))); /* read when dw_beta != 0 */
    PB_TRY(time_sets(dev, step_set, &a, reps, ms));
cleanup:
    cudaFree(a.act);
    cudaFree(a.w);
    cudaFree(a.top);
    cudaFree(a.dz[0]);
    cudaFree(a.dz[1]);
    cudaFree(a.dw);
    return st;
}

const pb_backend pb_backend_cuda = {
    .name = "cuda",
    .description = "NVIDIA GPUs: cuBLASLt GEMMs with fused bias epilogues, CUDA kernels",
    .host_is_device = false,
    .momentum_in_wgrad = false,
    .peer = &cuda_peer,
    .device_count = cuda_device_count,
    .open = cuda_open,
    .close = cuda_close,
    .info = cuda_info,
    .act_bytes = cuda_act_bytes,
    .aux_bytes = cuda_aux_bytes,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .zero = cuda_zero,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .copy_peer = cuda_copy_peer,
    .prefetch = cuda_prefetch,
    .prefetch_wait = cuda_prefetch_wait,
    .upload_act = cuda_upload_act,
    .download_act = cuda_download_act,
    .peak_mem_mb = cuda_peak_mem_mb,
    .mem_info = cuda_mem_info,
    .linear_fwd = cuda_linear_fwd,
    .linear_bwd = cuda_linear_bwd,
    .softmax_xent = cuda_softmax_xent,
    .optimizer = cuda_optimizer,
    .optimizer_side = cuda_optimizer_side,
    .join_side = cuda_join_side,
    .axpy = cuda_axpy,
    .cast_params = cuda_cast_params,
    .mark_create = cuda_mark_create,
    .mark_destroy = cuda_mark_destroy,
    .mark_record = cuda_mark_record,
    .mark_wait = cuda_mark_wait,
    .mark_elapsed_ms = cuda_mark_elapsed_ms,
    .synchronize = cuda_synchronize,
    .calibrate = cuda_calibrate,
    .gemm_reference = cuda_gemm_reference,
    .capture_begin = cuda_capture_begin,
    .capture_end = cuda_capture_end,
    .replay = cuda_replay,
};

bool pb_cuda_built(void) { return true; }

int pb_cuda_ordinal(const pb_device *dev) { return dev->ordinal; }

cudaStream_t pb_cuda_stream(const pb_device *dev) { return dev->stream; }
