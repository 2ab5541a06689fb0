/* Buffer sizes of the GEMM-alone reference, shared by the backends that
 * implement gemm_reference: every layer its own weights (w_total elements),
 * every activation its own buffer (act_total), gradients as wide as the
 * widest layer (m * widest). */
#ifndef PB_GEMM_REF_H
#define PB_GEMM_REF_H

#include <stddef.h>

typedef struct pb_gemm_ref_sizes {
    size_t w_total, act_total, grad;
} pb_gemm_ref_sizes;

static inline pb_gemm_ref_sizes pb_gemm_ref_size(int n_layers, const int *in, const int *out, int m)
{
    pb_gemm_ref_sizes z = {0, 0, 0};
    size_t widest = 0;
    for (int l = 0; l < n_layers; l++) {
        z.w_total += (size_t)in[l] * (size_t)out[l];
        z.act_total += (size_t)m * (size_t)in[l];
        if ((size_t)in[l] > widest) widest = (size_t)in[l];
        if ((size_t)out[l] > widest) widest = (size_t)out[l];
    }
    z.act_total += (size_t)m * (size_t)out[n_layers - 1];
    z.grad = (size_t)m * widest;
    return z;
}

#endif /* PB_GEMM_REF_H */
