/* The fused classifier: softmax cross-entropy over the padded vocabulary
 * and its gradient in one pass, never storing the softmax (kernels, then
 * the launcher). Semantics are the CPU backend's classifier slot
 * (pb_cpu_classifier_fused, docs/transformer-ops.md): over the first V of
 * Vp columns, loss = m + log(sum exp(z - m)) - z[target]; dlogits =
 * scale (softmax - onehot) there and 0 in the padding (which is never
 * read); dlogits may be the logits themselves; *loss_sum += scale * the
 * sum of the rows' losses. Logits and dlogits in the device's activation
 * type, every sum and the loss fp32.
 *
 * One block per row (a row is 50k logits for GPT-2: a warp per row, as
 * loss.cuh does for the MLP's few classes, would leave most of the GPU
 * idle): an online max/sum per thread, combined across the block, then the
 * gradient pass. The rows' losses go to the scratch and are summed by one
 * block in a fixed order, in double, as the CPU sums them: no atomics, the
 * same loss bits every run. */
#ifndef PB_CUDA_CLASSIFIER_CUH
#define PB_CUDA_CLASSIFIER_CUH

#include "gpt_state.cuh"

#define CLS_THREADS 512
#define CLS_SUM_THREADS 1024

/* ------------------------------------------------------------------------ */
/* kernels                                                                  */

template <typename T>
__global__ void classifier_kernel(T *dlogits, const T *logits, const int32_t *targets, float *losses, int V, int Vp,
                                  float scale)
{
    __shared__ float red[32];
    size_t r0 = (size_t)blockIdx.x * (size_t)Vp;
    const T *z = logits + r0;
    T *dz = dlogits + r0;
    int tgt = targets[blockIdx.x];
    bool valid = tgt >= 0 && tgt < V;
    /* read before any thread of the block writes the row (in place) */
    float zt = valid ? to_float(z[tgt]) : 0.0f;
    float mx = -INFINITY, sum = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float v = to_float(z[j]);
        if (v > mx) {
            sum = sum * expf(mx - v) + 1.0f;
            mx = v;
        } else {
            sum += expf(v - mx);
        }
    }
    float m = block_reduce(mx, true, red);
    /* a thread that saw no column carries -inf and sum 0 */
    float total = block_reduce(mx == -INFINITY ? 0.0f : sum * expf(mx - m), false, red);
    if (threadIdx.x == 0) losses[blockIdx.x] = valid ? m + logf(total) - zt : NAN; /* a bad target is loud */
    float inv = 1.0f / total;
    for (int j = threadIdx.x; j < Vp; j += blockDim.x) {
        float g = 0.0f;
        if (j < V) g = scale * (expf(to_float(z[j]) - m) * inv - (j == tgt ? 1.0f : 0.0f));
        dz[j] = from_float<T>(g);
    }
}

/* *loss_sum += scale * sum(losses), one block, fixed order, in double */
__global__ void loss_sum_kernel(float *loss_sum, const float *losses, int N, float scale)
{
    __shared__ double part[CLS_SUM_THREADS];
    double s = 0.0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) s += (double)losses[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) *loss_sum += (float)(part[0] * (double)scale);
}

/* ------------------------------------------------------------------------ */
/* launcher                                                                 */

static pb_status cuda_classifier(pb_device *dev, float *dlogits, const float *logits, const int32_t *targets, int N,
                                 int V, int Vp, float scale, float *loss_sum)
{
    pb_status st = PB_OK;
    float *losses = NULL;
    if (N == 0) return PB_OK;
    PB_REQUIRE(V > 0 && V <= Vp, PB_ERR_INTERNAL, "classifier: V=%d of Vp=%d", V, Vp);
    PB_TRY(use_device(dev));
    PB_TRY(gpt_scratch(dev, (size_t)N * sizeof(float), (void **)&losses));
    if (is_bf16(dev))
        classifier_kernel<bf16><<<N, CLS_THREADS, 0, dev->stream>>>((bf16 *)dlogits, (const bf16 *)logits, targets,
                                                                    losses, V, Vp, scale);
    else
        classifier_kernel<float><<<N, CLS_THREADS, 0, dev->stream>>>(dlogits, logits, targets, losses, V, Vp, scale);
    PB_CUDA_CHECK_LAUNCH("classifier_kernel");
    loss_sum_kernel<<<1, CLS_SUM_THREADS, 0, dev->stream>>>(loss_sum, losses, N, scale);
    PB_CUDA_CHECK_LAUNCH("loss_sum_kernel");
cleanup:
    return st;
}

#endif /* PB_CUDA_CLASSIFIER_CUH */
