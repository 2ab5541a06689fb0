/* The optimizer: one fused kernel per optimizer kind (SGD with momentum,
 * AdamW) that also refreshes the compute copy of the parameters, its
 * launchers, and the side stream that lets the updates overlap backward. */
#ifndef PB_CUDA_OPTIMIZER_CUH
#define PB_CUDA_OPTIMIZER_CUH

#include <math.h>

#include "cuda_common.cuh"

/* ------------------------------------------------------------------------ */
/* kernels                                                                  */

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

/* ------------------------------------------------------------------------ */
/* launchers                                                                */

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

#endif /* PB_CUDA_OPTIMIZER_CUH */
