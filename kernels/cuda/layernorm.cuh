/* LayerNorm forward and backward, the residual add, and the two fused
 * (residual + LayerNorm forward): kernels, then launchers. Semantics are
 * the CPU's pb_cpu_layernorm_fwd/bwd and pb_cpu_residual_fwd
 * (docs/transformer-ops.md): eps 1e-5, biased variance from centred values
 * (two passes, no E[x^2] - m^2 cancellation), backward accumulating into
 * dx, dw and db. Activations (x, out, dout, dx, the residual) in the
 * device's activation type, fp32 arithmetic; w, b, their gradients, mean
 * and rstd fp32.
 *
 * One warp per row (llm.c's layernorm_forward_kernel3 shape): C is a few
 * hundred to a few thousand, so each lane strides the row a handful of
 * times and the row's reductions are shuffles; the second and third passes
 * hit L1. dw and db are column sums over N rows: partial sums per chunk of
 * rows into the scratch, then added in chunk order (no atomics, the same
 * bits every run). */
#ifndef PB_CUDA_LAYERNORM_CUH
#define PB_CUDA_LAYERNORM_CUH

#include "gpt_state.cuh"

#define LN_WARPS 8      /* rows per block, one warp each */
#define LN_COL_ROWS 8   /* threadIdx.y of the column-sum blocks */
#define LN_CHUNK_ROWS 256

/* ------------------------------------------------------------------------ */
/* kernels                                                                  */

/* out = layernorm(x) per row; with res_a set, x = res_a + res_b is formed
 * and stored first (the fused residual), in the lane that reads it back */
template <typename T>
__global__ void layernorm_fwd_kernel(T *out, float *mean, float *rstd, T *x, const T *res_a, const T *res_b,
                                     const float *w, const float *b, int N, int C)
{
    int row = blockIdx.x * LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    size_t r0 = (size_t)row * (size_t)C;
    T *xr = x + r0;
    float s = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float v;
        if (res_a) {
            v = to_float(res_a[r0 + i]) + to_float(res_b[r0 + i]);
            xr[i] = from_float<T>(v);
            v = to_float(xr[i]); /* the stored value, which backward will read */
        } else {
            v = to_float(xr[i]);
        }
        s += v;
    }
    float m = warp_sum(s) / (float)C;
    float v2 = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float d = to_float(xr[i]) - m;
        v2 += d * d;
    }
    float rs = rsqrtf(warp_sum(v2) / (float)C + 1e-5f);
    for (int i = lane; i < C; i += 32)
        out[r0 + i] = from_float<T>((to_float(xr[i]) - m) * rs * w[i] + b[i]);
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = rs;
    }
}

/* dx += rstd (g - mean(g) - xhat mean(g xhat)), g = dout * w, per row */
template <typename T>
__global__ void layernorm_bwd_dx_kernel(T *dx, const T *dout, const T *x, const float *w, const float *mean,
                                        const float *rstd, int N, int C)
{
    int row = blockIdx.x * LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    size_t r0 = (size_t)row * (size_t)C;
    float m = mean[row], s = rstd[row], g_sum = 0.0f, gx_sum = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float xhat = (to_float(x[r0 + i]) - m) * s, g = to_float(dout[r0 + i]) * w[i];
        g_sum += g;
        gx_sum += g * xhat;
    }
    float g_mean = warp_sum(g_sum) / (float)C, gx_mean = warp_sum(gx_sum) / (float)C;
    for (int i = lane; i < C; i += 32) {
        float xhat = (to_float(x[r0 + i]) - m) * s, g = to_float(dout[r0 + i]) * w[i];
        dx[r0 + i] = from_float<T>(to_float(dx[r0 + i]) + s * (g - g_mean - xhat * gx_mean));
    }
}

/* Per chunk of LN_CHUNK_ROWS rows and 32 columns: the partial sums of
 * dout * xhat (dw) and dout (db) into partial[chunk][0 | 1][C] */
template <typename T>
__global__ void layernorm_bwd_dwdb_kernel(float *partial, const T *dout, const T *x, const float *mean,
                                          const float *rstd, int N, int C)
{
    __shared__ float pw[LN_COL_ROWS][33], pb[LN_COL_ROWS][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * LN_CHUNK_ROWS, r1 = min(N, r0 + LN_CHUNK_ROWS);
    float aw = 0.0f, ab = 0.0f;
    if (col < C)
        for (int r = r0 + threadIdx.y; r < r1; r += LN_COL_ROWS) {
            size_t i = (size_t)r * (size_t)C + col;
            float d = to_float(dout[i]);
            aw += d * (to_float(x[i]) - mean[r]) * rstd[r];
            ab += d;
        }
    pw[threadIdx.y][threadIdx.x] = aw;
    pb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && col < C) {
        float sw = 0.0f, sb = 0.0f;
        for (int y = 0; y < LN_COL_ROWS; y++) {
            sw += pw[y][threadIdx.x];
            sb += pb[y][threadIdx.x];
        }
        float *p = partial + (size_t)blockIdx.y * 2 * (size_t)C;
        p[col] = sw;
        p[C + col] = sb;
    }
}

__global__ void layernorm_bwd_finish_kernel(float *dw, float *db, const float *partial, int chunks, int C)
{
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= C) return;
    float sw = 0.0f, sb = 0.0f;
    for (int k = 0; k < chunks; k++) {
        sw += partial[(size_t)k * 2 * C + col];
        sb += partial[(size_t)k * 2 * C + C + col];
    }
    dw[col] += sw;
    db[col] += sb;
}

template <typename T>
__global__ void residual_fwd_kernel(T *out, const T *a, const T *b, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = from_float<T>(to_float(a[i]) + to_float(b[i]));
}

/* ------------------------------------------------------------------------ */
/* launchers                                                                */

static pb_status launch_layernorm_fwd(pb_device *dev, float *out, float *mean, float *rstd, float *x,
                                      const float *res_a, const float *res_b, const float *w, const float *b, int N,
                                      int C)
{
    pb_status st = PB_OK;
    if (N == 0) return PB_OK;
    PB_TRY(use_device(dev));
    if (is_bf16(dev))
        layernorm_fwd_kernel<bf16><<<(N + LN_WARPS - 1) / LN_WARPS, LN_WARPS * 32, 0, dev->stream>>>(
            (bf16 *)out, mean, rstd, (bf16 *)x, (const bf16 *)res_a, (const bf16 *)res_b, w, b, N, C);
    else
        layernorm_fwd_kernel<float><<<(N + LN_WARPS - 1) / LN_WARPS, LN_WARPS * 32, 0, dev->stream>>>(
            out, mean, rstd, x, res_a, res_b, w, b, N, C);
    PB_CUDA_CHECK_LAUNCH("layernorm_fwd_kernel");
cleanup:
    return st;
}

static pb_status cuda_layernorm_fwd(pb_device *dev, float *out, float *mean, float *rstd, const float *x,
                                    const float *w, const float *b, int N, int C)
{
    /* x is only read when no residual is given */
    return launch_layernorm_fwd(dev, out, mean, rstd, (float *)x, NULL, NULL, w, b, N, C);
}

/* res = a + b (res may be a or b), then out = layernorm(res): one pass over
 * the residual stream instead of two */
static pb_status cuda_residual_layernorm_fwd(pb_device *dev, float *res, float *out, float *mean, float *rstd,
                                             const float *a, const float *b, const float *w, const float *bias, int N,
                                             int C)
{
    return launch_layernorm_fwd(dev, out, mean, rstd, res, a, b, w, bias, N, C);
}

static pb_status cuda_layernorm_bwd(pb_device *dev, float *dx, float *dw, float *db, const float *dout,
                                    const float *x, const float *w, const float *mean, const float *rstd, int N,
                                    int C)
{
    pb_status st = PB_OK;
    int chunks = (N + LN_CHUNK_ROWS - 1) / LN_CHUNK_ROWS;
    dim3 col_grid((unsigned)((C + 31) / 32), (unsigned)chunks);
    float *partial = NULL;
    if (N == 0 || C == 0) return PB_OK;
    PB_TRY(use_device(dev));
    if (is_bf16(dev))
        layernorm_bwd_dx_kernel<bf16><<<(N + LN_WARPS - 1) / LN_WARPS, LN_WARPS * 32, 0, dev->stream>>>(
            (bf16 *)dx, (const bf16 *)dout, (const bf16 *)x, w, mean, rstd, N, C);
    else
        layernorm_bwd_dx_kernel<float><<<(N + LN_WARPS - 1) / LN_WARPS, LN_WARPS * 32, 0, dev->stream>>>(
            dx, dout, x, w, mean, rstd, N, C);
    PB_CUDA_CHECK_LAUNCH("layernorm_bwd_dx_kernel");
    PB_TRY(gpt_scratch(dev, (size_t)chunks * 2 * (size_t)C * sizeof(float), (void **)&partial));
    if (is_bf16(dev))
        layernorm_bwd_dwdb_kernel<bf16><<<col_grid, dim3(32, LN_COL_ROWS), 0, dev->stream>>>(
            partial, (const bf16 *)dout, (const bf16 *)x, mean, rstd, N, C);
    else
        layernorm_bwd_dwdb_kernel<float><<<col_grid, dim3(32, LN_COL_ROWS), 0, dev->stream>>>(partial, dout, x, mean,
                                                                                              rstd, N, C);
    PB_CUDA_CHECK_LAUNCH("layernorm_bwd_dwdb_kernel");
    layernorm_bwd_finish_kernel<<<(C + THREADS - 1) / THREADS, THREADS, 0, dev->stream>>>(dw, db, partial, chunks, C);
    PB_CUDA_CHECK_LAUNCH("layernorm_bwd_finish_kernel");
cleanup:
    return st;
}

static pb_status cuda_residual_fwd(pb_device *dev, float *out, const float *a, const float *b, size_t n)
{
    pb_status st = PB_OK;
    if (n == 0) return PB_OK;
    PB_TRY(use_device(dev));
    if (is_bf16(dev))
        residual_fwd_kernel<bf16><<<grid_for(dev, n), THREADS, 0, dev->stream>>>((bf16 *)out, (const bf16 *)a,
                                                                                (const bf16 *)b, n);
    else
        residual_fwd_kernel<float><<<grid_for(dev, n), THREADS, 0, dev->stream>>>(out, a, b, n);
    PB_CUDA_CHECK_LAUNCH("residual_fwd_kernel");
cleanup:
    return st;
}

#endif /* PB_CUDA_LAYERNORM_CUH */
