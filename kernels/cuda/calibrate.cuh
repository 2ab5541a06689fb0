/* Calibration (the device's GEMM throughput on square matrices) and the
 * GEMM-alone reference (the step's own GEMMs, timed without the rest):
 * the random-input kernel first, then the timing helpers and the two ops. */
#ifndef PB_CUDA_CALIBRATE_CUH
#define PB_CUDA_CALIBRATE_CUH

#include <stdlib.h>

#include "../gemm_ref.h"
#include "cuda_common.cuh"
#include "elementwise.cuh"
#include "matmul.cuh"

/* ------------------------------------------------------------------------ */
/* kernels                                                                  */

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
    bool first_dx; /* layer 0's input gradient too (a GPT's) */
} step_args;

/* The step's GEMMs exactly as gemm_fwd/gemm_bwd issue them (same keys),
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
        if (l == 0 && !a->first_dx) break;
        key = make_key(dev, k, m, n, false, false, act, act, CUBLASLT_EPILOGUE_DEFAULT, w, k, dy, n,
                       a->dz[cur ^ 1], k, NULL, -1, NULL, 0);
        PB_TRY(matmul_plain(dev, key, w, dy, a->dz[cur ^ 1], 0.0f, "input-gradient"));
        cur ^= 1;
    }
cleanup:
    return st;
}

static pb_status cuda_gemm_reference(pb_device *dev, int n_layers, const int *in, const int *out,
                                     int m, float dw_beta, bool first_dx, int reps, double *ms)
{
    pb_status st = PB_OK;
    step_args a = {n_layers, m, in, out, NULL, NULL, NULL, {NULL, NULL}, NULL, dw_beta, first_dx};
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

#endif /* PB_CUDA_CALIBRATE_CUH */
