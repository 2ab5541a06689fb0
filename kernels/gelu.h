/* GELU, tanh approximation (GPT-2's "gelu_new"), per element. Shared by the
 * CPU loops and, later, the CUDA epilogue kernels, so the CPU tests check
 * the math the GPU runs (DESIGN.md "Conventions").
 *
 * gelu(x) = 0.5 x (1 + tanh(u)), u = k (x + c x^3), written through
 * 0.5 (1 + tanh u) = sigmoid(2u) = 1 / (1 + e), e = exp(-2u): one exp and no
 * tanh, so a loop whose exp vectorises (the CPU's) vectorises whole. The
 * _e forms take e, computed by whichever exp the caller has. */
#ifndef PB_GELU_H
#define PB_GELU_H

#include "elementwise.h"

/* sqrt(2/pi) and the cubic coefficient of the approximation */
#define PB_GELU_K 0.7978845608028654f
#define PB_GELU_C 0.044715f

/* -2u, at most 88 so that exp of it stays finite (x below about -10 gives
 * gelu ~ -0 and gradient ~ 0 either way; NaN stays NaN through x) */
PB_HD float pb_gelu_arg(float x)
{
    float a = -2.0f * PB_GELU_K * (x + PB_GELU_C * x * x * x);
    return a < 88.0f ? a : 88.0f;
}

/* gelu(x) = x sigmoid(2u) = x / (1 + e) */
PB_HD float pb_gelu_e(float x, float e) { return x / (1.0f + e); }

/* d gelu / dx = s + 2 k x (1 + 3 c x^2) s (1 - s), s = sigmoid(2u); with
 * 1 - s = e s, which does not cancel as s -> 1. */
PB_HD float pb_gelu_grad_e(float x, float e)
{
    float s = 1.0f / (1.0f + e);
    return s + 2.0f * PB_GELU_K * x * (1.0f + 3.0f * PB_GELU_C * x * x) * s * (e * s);
}

PB_HD float pb_gelu(float x) { return pb_gelu_e(x, expf(pb_gelu_arg(x))); }
PB_HD float pb_gelu_grad(float x) { return pb_gelu_grad_e(x, expf(pb_gelu_arg(x))); }

#endif /* PB_GELU_H */
