/* The loss: softmax cross-entropy over the logits (and their gradient) in
 * one kernel, then its launcher (the backend's softmax_xent op). */
#ifndef PB_CUDA_LOSS_CUH
#define PB_CUDA_LOSS_CUH

#include <math.h>

#include "cuda_common.cuh"

#define XENT_WARPS 8

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

/* ------------------------------------------------------------------------ */
/* launchers                                                                */

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

#endif /* PB_CUDA_LOSS_CUH */
