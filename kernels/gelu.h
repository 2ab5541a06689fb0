/* GELU, tanh approximation (GPT-2's "gelu_new"), per element. Shared by the
 * CPU loops and, later, the CUDA epilogue kernels, so the CPU tests check
 * the math the GPU runs (DESIGN.md "Conventions"). */
#ifndef PB_GELU_H
#define PB_GELU_H

#include "elementwise.h"

/* sqrt(2/pi) and the cubic coefficient of the approximation */
#define PB_GELU_K 0.7978845608028654f
#define PB_GELU_C 0.044715f

/* gelu(x) = 0.5 x (1 + tanh(k (x + c x^3))) */
PB_HD float pb_gelu(float x)
{
    float u = PB_GELU_K * (x + PB_GELU_C * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

/* d gelu / dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) k (1 + 3 c x^2).
 * 1 - tanh^2 rather than sech^2 = 1/cosh^2: coshf overflows to inf for
 * |u| > 89 and the finite-math flags some builds use turn that into NaN. */
PB_HD float pb_gelu_grad(float x)
{
    float u = PB_GELU_K * (x + PB_GELU_C * x * x * x);
    float t = tanhf(u);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * PB_GELU_K * (1.0f + 3.0f * PB_GELU_C * x * x);
}

#endif /* PB_GELU_H */
