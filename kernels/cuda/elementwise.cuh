/* Elementwise kernels and their launchers: the unfused bias + activation
 * epilogue, the column sums of the backward with the activation's
 * derivative, the fp32 <-> bf16
 * conversions and axpy (the per-element formulas are ../elementwise.h's,
 * shared with the CPU backend). Kernels first, then launchers, each launch
 * checked. */
#ifndef PB_CUDA_ELEMENTWISE_CUH
#define PB_CUDA_ELEMENTWISE_CUH

#include "cuda_common.cuh"
#include "../gelu.h"

#define COLSUM_ROWS 8

/* The activation of an unfused epilogue, or whose derivative a column sum
 * applies first (pb_epilogue / pb_dact without the bias) */
enum { ACT_NONE = 0, ACT_RELU, ACT_GELU };

/* ------------------------------------------------------------------------ */
/* kernels                                                                  */

/* Fallback epilogue: z = z + b, then y = act(z) (y may be z; GELU keeps z,
 * its pre-activation, and writes y beside it, as GELU_AUX_BIAS does). */
template <typename T, int ACT>
__global__ void bias_act_kernel(size_t rows, int n, T *z, const float *b, T *y)
{
    size_t total = rows * (size_t)n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = to_float(z[i]);
        if (b) v += b[i % n];
        if (ACT == ACT_GELU) {
            z[i] = from_float<T>(v);
            v = pb_gelu(v);
        }
        if (ACT == ACT_RELU) v = pb_relu(v);
        y[i] = from_float<T>(v);
    }
}

/* Column sums of a row-major [m, n] gradient, optionally applying the
 * derivative of the layer below's activation in place first (dx -> dL/dz of
 * that layer): ReLU from its output src > 0, GELU from its saved
 * pre-activation src (the same formulas as the CPU's). A block owns 32
 * adjacent columns (so each warp reads 32 consecutive elements of a row) and
 * one chunk of rows; it writes its partial sum per column, or nothing when
 * only the mask is wanted. Partials are added in a fixed order by
 * colsum_finish_kernel: deterministic, no atomics, nothing to zero first. */
template <typename T, int ACT>
__global__ void colsum_act_kernel(int m, int n, int rows_per_chunk, T *g, const T *src, float *partial)
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
            if (ACT != ACT_NONE) {
                v = ACT == ACT_RELU ? pb_relu_backward(v, to_float(src[i]))
                                   : v * pb_gelu_grad(to_float(src[i]));
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

/* ------------------------------------------------------------------------ */
/* launchers                                                                */

template <typename T>
static void bias_act_launch(unsigned grid, cudaStream_t s, int act, size_t m, int n, T *z, const float *b, T *y)
{
    if (act == ACT_RELU)
        bias_act_kernel<T, ACT_RELU><<<grid, THREADS, 0, s>>>(m, n, z, b, y);
    else if (act == ACT_GELU)
        bias_act_kernel<T, ACT_GELU><<<grid, THREADS, 0, s>>>(m, n, z, b, y);
    else
        bias_act_kernel<T, ACT_NONE><<<grid, THREADS, 0, s>>>(m, n, z, b, y);
}

/* z [m, n] += b, then y = act(z) (y may be z) */
static pb_status launch_bias_act(pb_device *dev, int m, int n, void *z, const float *b, int act, void *y)
{
    pb_status st = PB_OK;
    size_t total = (size_t)m * n;
    if (is_bf16(dev))
        bias_act_launch<bf16>(grid_for(dev, total), dev->stream, act, (size_t)m, n, (bf16 *)z, b, (bf16 *)y);
    else
        bias_act_launch<float>(grid_for(dev, total), dev->stream, act, (size_t)m, n, (float *)z, b, (float *)y);
    PB_CUDA_CHECK_LAUNCH("bias_act_kernel");
cleanup:
    return st;
}

template <typename T>
static void colsum_act_launch(dim3 grid, dim3 block, cudaStream_t s, int act, int m, int n, int rows, T *g,
                              const T *src, float *partial)
{
    if (act == ACT_RELU)
        colsum_act_kernel<T, ACT_RELU><<<grid, block, 0, s>>>(m, n, rows, g, src, partial);
    else if (act == ACT_GELU)
        colsum_act_kernel<T, ACT_GELU><<<grid, block, 0, s>>>(m, n, rows, g, src, partial);
    else
        colsum_act_kernel<T, ACT_NONE><<<grid, block, 0, s>>>(m, n, rows, g, src, partial);
}

/* out (may be NULL) = column sums of g[m, n], g first taken through the
 * derivative of activation act (src: the ReLU's output or GELU's
 * pre-activation). Rows are split into chunks until there are a few blocks per
 * SM; with several chunks the partials go to the cuBLASLt workspace, which
 * is free between GEMMs because everything here runs on the one stream. */
static pb_status launch_colsum_act(pb_device *dev, int m, int n, void *g, int act, const void *src, float *out)
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
            colsum_act_launch<bf16>(grid, block, dev->stream, act, m, n, rows_per_chunk, (bf16 *)g,
                                    (const bf16 *)src, partial);
        else
            colsum_act_launch<float>(grid, block, dev->stream, act, m, n, rows_per_chunk, (float *)g,
                                     (const float *)src, partial);
    }
    PB_CUDA_CHECK_LAUNCH("colsum_act_kernel");
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

#endif /* PB_CUDA_ELEMENTWISE_CUH */
