/* Per-element math shared by the CPU loops and the CUDA kernels, so the CPU
 * tests exercise exactly what the GPU computes. Pure inline functions. */
#ifndef PB_ELEMENTWISE_H
#define PB_ELEMENTWISE_H

#include <math.h>

#if defined(__CUDACC__)
#define PB_HD __host__ __device__ __forceinline__
#else
#define PB_HD static inline
#endif

PB_HD float pb_relu(float z) { return z > 0.0f ? z : 0.0f; }

/* dL/dz for z -> relu(z), given the stored output a = relu(z): a > 0 <=> z > 0 */
PB_HD float pb_relu_backward(float grad_out, float a) { return a > 0.0f ? grad_out : 0.0f; }

/* One softmax cross-entropy gradient element, from e = exp(z - max) already
 * computed (the CPU loop computes it once for the sum and the gradient):
 * scale * (e / sum - [j == label]). */
PB_HD float pb_xent_grad_exp(float e, float inv_sum, int is_label, float scale)
{
    float p = e * inv_sum;
    return scale * (p - (is_label ? 1.0f : 0.0f));
}

/* The same from the logit: e = exp(z - max). */
PB_HD float pb_xent_grad(float z, float row_max, float inv_sum, int is_label, float scale)
{
    return pb_xent_grad_exp(expf(z - row_max), inv_sum, is_label, scale);
}

/* SGD with momentum and L2 weight decay, PyTorch's torch.optim.SGD
 * (dampening 0, nesterov off): g' = g + wd*p; m = mu*m + g'; p -= lr*m.
 * On the first step PyTorch sets m = g'; with m zero-initialised the formula
 * gives the same. */
PB_HD void pb_sgd_momentum(float *p, float *m, float g, float lr, float mu, float wd)
{
    float gd = g + wd * *p;
    *m = mu * *m + gd;
    *p -= lr * *m;
}

/* The same update when the weight-gradient GEMM has already accumulated the
 * gradient into the momentum buffer (m = mu*m + g, pb_gemm_grad.dw_beta):
 * m += wd*p; p -= lr*m. The same SGD to a rounding: the GEMM may fuse
 * mu*m + g into one multiply-add, and the decay is added after the sum
 * rather than before it. */
PB_HD void pb_sgd_momentum_ready(float *p, float *m, float lr, float wd)
{
    if (wd != 0.0f) *m += wd * *p;
    *p -= lr * *m;
}

/* AdamW, PyTorch's torch.optim.AdamW: p -= lr*wd*p (decoupled decay); then
 * m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 * p -= lr * (m / bc1) / (sqrt(v / bc2) + eps), bc = 1 - beta^step. */
PB_HD void pb_adamw(float *p, float *m, float *v, float g, float lr, float wd, float b1,
                    float b2, float eps, float bc1, float bc2)
{
    *p -= lr * wd * *p;
    *m = b1 * *m + (1.0f - b1) * g;
    *v = b2 * *v + (1.0f - b2) * g * g;
    float mhat = *m / bc1;
    float vhat = *v / bc2;
    *p -= lr * mhat / (sqrtf(vhat) + eps);
}

#endif /* PB_ELEMENTWISE_H */
