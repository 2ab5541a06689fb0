/* Causal multi-head self-attention from the fused qkv: cuBLASLt
 * strided-batched GEMMs around a masked softmax, forward saving the
 * probabilities, and backward (kernels, then launchers). The semantics and
 * the GEMM sequence are the CPU's pb_cpu_attention_fwd/bwd
 * (docs/transformer-ops.md): per sequence b and head h,
 *   S = Q K^T / sqrt(hs), P = causal softmax(S) (saved as att), O = P V;
 *   dV += P^T dO, dP = dO V^T, dS = P (dP - rowsum(P dP)),
 *   dQ += dS K / sqrt(hs), dK += dS^T Q / sqrt(hs).
 *
 * Activations (qkv, out, att, their gradients, the dP scratch) in the
 * device's activation type, the GEMMs accumulating in fp32, the softmax in
 * fp32 registers.
 *
 * Like the CPU, no copy: head h of sequence b is a strided view of qkv
 * (rows of stride 3C from b*T*3C + h*hs, K at +C, V at +2C) and of out
 * (stride C). Consecutive heads are hs apart in both, so one GEMM call runs
 * all NH heads of a sequence (batch NH, stride hs; att's heads T*T apart);
 * the sequences are a loop of B calls, since b's offset (T*3C) and h's (hs)
 * are not one stride. The GEMMs are the full T x T products, the upper
 * triangle masked afterwards, as the CPU does and the FLOP count counts.
 *
 * This is the fallback and reference path the issue names beside cuDNN's
 * fused attention, which is not here (kernels/cuda has no cuDNN yet; docs/
 * transformer-ops.md). It keeps P [B,NH,T,T] per layer: 768 MiB a layer for
 * gpt2-124m at 16 x 1024 in fp32 (9 GiB over 12 layers; gpt2-350m 24 GiB),
 * and writes and reads it four times a step, where fused attention saves
 * only the logsumexp [B,NH,T]. Backward's dP takes NH*T*T floats of the
 * shared scratch (one sequence at a time), so attention_scratch asks the
 * caller for none. */
#ifndef PB_CUDA_ATTENTION_CUH
#define PB_CUDA_ATTENTION_CUH

#include "gpt_state.cuh"

#define SOFTMAX_WARPS 8 /* rows per block, one warp each */

/* ------------------------------------------------------------------------ */
/* kernels                                                                  */

/* Row r of rows [R, T] (r % T is its position t): softmax over columns
 * 0..t in place, the columns after t set to 0. */
template <typename T>
__global__ void causal_softmax_kernel(T *p, size_t rows, int Tlen)
{
    size_t row = (size_t)blockIdx.x * SOFTMAX_WARPS + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    int t = (int)(row % (size_t)Tlen);
    T *r = p + row * (size_t)Tlen;
    float mx = -INFINITY;
    for (int j = lane; j <= t; j += 32) mx = fmaxf(mx, to_float(r[j]));
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j <= t; j += 32) sum += expf(to_float(r[j]) - mx);
    float inv = 1.0f / warp_sum(sum); /* >= 1 term: the max's own exp(0) */
    for (int j = lane; j < Tlen; j += 32) r[j] = from_float<T>(j <= t ? expf(to_float(r[j]) - mx) * inv : 0.0f);
}

/* dS = P (dP - rowsum(P dP)) in place of dP, per row. P is 0 above the
 * diagonal, so whole-row sums are the causal ones and dS is 0 there. */
template <typename T>
__global__ void causal_softmax_bwd_kernel(T *dp, const T *p, size_t rows, int Tlen)
{
    size_t row = (size_t)blockIdx.x * SOFTMAX_WARPS + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    T *d = dp + row * (size_t)Tlen;
    const T *pr = p + row * (size_t)Tlen;
    float dot = 0.0f;
    for (int j = lane; j < Tlen; j += 32) dot += to_float(pr[j]) * to_float(d[j]);
    dot = warp_sum(dot);
    for (int j = lane; j < Tlen; j += 32) d[j] = from_float<T>(to_float(pr[j]) * (to_float(d[j]) - dot));
}

/* ------------------------------------------------------------------------ */
/* strided-batched GEMMs on row-major views                                 */

/* One row-major operand: element (i, j) of the stored matrix at
 * p[i * ld + j], batch k at p + k * stride; trans: the product uses its
 * transpose. */
typedef struct rm_mat {
    const void *p;
    int64_t ld, stride;
    bool trans;
} rm_mat;

/* The column-major layout of row-major [rows, cols] with ld: [cols, rows] */
static pb_status bgemm_layout(cublasLtMatrixLayout_t *out, cudaDataType_t type, int rows, int cols, int64_t ld,
                              int batch, int64_t stride)
{
    pb_status st = PB_OK;
    int32_t b = batch;
    PB_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(out, type, (uint64_t)cols, (uint64_t)rows, ld));
    PB_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(*out, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof b));
    PB_CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(*out, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
cleanup:
    return st;
}

/* The plan of one batched GEMM: found in the device's table, or built
 * (descriptors + the heuristic's best algorithm with the backend's
 * workspace) and stored, evicting round-robin when full. */
static pb_status bgemm_plan_for(pb_device *dev, const bgemm_key *key, bgemm_plan **out)
{
    pb_status st = PB_OK;
    pb_cuda_gpt *g = NULL;
    bgemm_plan *p = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    size_t ws = WORKSPACE_BYTES;
    cublasOperation_t ta, tb;
    cudaDataType_t type = (cudaDataType_t)key->type;
    PB_TRY(gpt_state(dev, &g));
    for (int i = 0; i < BGEMM_PLAN_CAP; i++)
        if (g->plans[i].used && memcmp(&g->plans[i].key, key, sizeof *key) == 0) {
            *out = &g->plans[i];
            return PB_OK;
        }
    p = &g->plans[g->next_evict];
    g->next_evict = (g->next_evict + 1) % BGEMM_PLAN_CAP;
    if (p->used) bgemm_plan_release(p);
    p->key = *key;
    /* column-major: C^T [n, m] = op(B)^T op(A)^T, so cuBLASLt's A is our B */
    ta = key->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    tb = key->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    PB_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, (cublasComputeType_t)key->compute, CUDA_R_32F));
    PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    /* our B stored [k, n] (or [n, k] transposed); our A [m, k] (or [k, m]) */
    PB_TRY(bgemm_layout(&p->a, type, key->trans_b ? key->n : key->k, key->trans_b ? key->k : key->n, key->ldb,
                        key->batch, key->stride_b));
    PB_TRY(bgemm_layout(&p->b, type, key->trans_a ? key->k : key->m, key->trans_a ? key->m : key->k, key->lda,
                        key->batch, key->stride_a));
    PB_TRY(bgemm_layout(&p->c, type, key->m, key->n, key->ldc, key->batch, key->stride_c));
    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                         sizeof ws));
    PB_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(dev->lt, p->desc, p->a, p->b, p->c, p->c, pref, 1, &heur, &found));
    PB_REQUIRE(found > 0, PB_ERR_BACKEND,
               "cuBLASLt has no algorithm for attention's batched GEMM m=%d n=%d k=%d batch=%d", key->m, key->n,
               key->k, key->batch);
    p->algo = heur.algo;
    p->used = true;
    *out = p;
    p = NULL;
cleanup:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (p) bgemm_plan_release(p);
    return st;
}

/* C [m, n] (row-major, ldc, batch stride) = alpha op(A) op(B) + beta C, for
 * `batch` matrices of the activation type, fp32 accumulation (tf32
 * operands where the device's precision asks for it). */
static pb_status bgemm(pb_device *dev, int m, int n, int k, int batch, float alpha, rm_mat A, rm_mat B, float beta,
                       void *C, int64_t ldc, int64_t stride_c)
{
    pb_status st = PB_OK;
    bgemm_plan *plan = NULL;
    bgemm_key key;
    memset(&key, 0, sizeof key);
    key.m = m, key.n = n, key.k = k, key.batch = batch;
    key.trans_a = A.trans, key.trans_b = B.trans;
    key.type = act_type(dev);
    key.compute = dev->precision == PB_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    key.lda = A.ld, key.ldb = B.ld, key.ldc = ldc;
    key.stride_a = A.stride, key.stride_b = B.stride, key.stride_c = stride_c;
    key.align_a = ptr_align(A.p), key.align_b = ptr_align(B.p), key.align_c = ptr_align(C);
    PB_TRY(bgemm_plan_for(dev, &key, &plan));
    PB_CUBLAS_CHECK(cublasLtMatmul(dev->lt, plan->desc, &alpha, B.p, plan->a, A.p, plan->b, &beta, C, plan->c, C,
                                   plan->c, &plan->algo, dev->workspace, WORKSPACE_BYTES, dev->stream));
cleanup:
    return st;
}

/* ------------------------------------------------------------------------ */
/* launchers                                                                */

static unsigned softmax_blocks(size_t rows) { return (unsigned)((rows + SOFTMAX_WARPS - 1) / SOFTMAX_WARPS); }

/* The ops in the activation type T (the GEMMs' type is the device's:
 * act_type), offsets in T's elements */
template <typename T>
static pb_status attention_fwd_t(pb_device *dev, T *out, T *att, const T *qkv, int B, int Tn, int C, int NH)
{
    pb_status st = PB_OK;
    const int hs = C / NH;
    const int64_t C3 = 3 * (int64_t)C, TT = (int64_t)Tn * Tn;
    const float scale = 1.0f / sqrtf((float)hs);
    const size_t rows = (size_t)B * (size_t)NH * (size_t)Tn;
    for (int b = 0; b < B; b++) {
        const T *q = qkv + (size_t)b * Tn * C3;
        rm_mat Q = {q, C3, hs, false}, Kt = {q + C, C3, hs, true};
        PB_TRY(bgemm(dev, Tn, Tn, hs, NH, scale, Q, Kt, 0.0f, att + (size_t)b * NH * TT, Tn, TT));
    }
    causal_softmax_kernel<T><<<softmax_blocks(rows), SOFTMAX_WARPS * 32, 0, dev->stream>>>(att, rows, Tn);
    PB_CUDA_CHECK_LAUNCH("causal_softmax_kernel");
    for (int b = 0; b < B; b++) {
        const T *q = qkv + (size_t)b * Tn * C3;
        rm_mat P = {att + (size_t)b * NH * TT, Tn, TT, false}, V = {q + 2 * C, C3, hs, false};
        PB_TRY(bgemm(dev, Tn, hs, Tn, NH, 1.0f, P, V, 0.0f, out + (size_t)b * Tn * C, C, hs));
    }
cleanup:
    return st;
}

template <typename T>
static pb_status attention_bwd_t(pb_device *dev, T *dqkv, const T *dout, const T *qkv, const T *att, int B, int Tn,
                                 int C, int NH)
{
    pb_status st = PB_OK;
    const int hs = C / NH;
    const int64_t C3 = 3 * (int64_t)C, TT = (int64_t)Tn * Tn;
    const float scale = 1.0f / sqrtf((float)hs);
    const size_t rows = (size_t)NH * (size_t)Tn;
    T *dp = NULL;
    PB_TRY(gpt_scratch(dev, (size_t)NH * (size_t)TT * sizeof(T), (void **)&dp));
    for (int b = 0; b < B; b++) {
        const T *q = qkv + (size_t)b * Tn * C3, *p = att + (size_t)b * NH * TT;
        T *dq = dqkv + (size_t)b * Tn * C3;
        rm_mat Pt = {p, Tn, TT, true}, dO = {dout + (size_t)b * Tn * C, C, hs, false};
        rm_mat Vt = {q + 2 * C, C3, hs, true}, dS = {dp, Tn, TT, false}, dSt = {dp, Tn, TT, true};
        rm_mat K = {q + C, C3, hs, false}, Q = {q, C3, hs, false};
        PB_TRY(bgemm(dev, Tn, hs, Tn, NH, 1.0f, Pt, dO, 1.0f, dq + 2 * C, C3, hs)); /* dV += P^T dO */
        PB_TRY(bgemm(dev, Tn, Tn, hs, NH, 1.0f, dO, Vt, 0.0f, dp, Tn, TT));         /* dP = dO V^T */
        causal_softmax_bwd_kernel<T><<<softmax_blocks(rows), SOFTMAX_WARPS * 32, 0, dev->stream>>>(dp, p, rows, Tn);
        PB_CUDA_CHECK_LAUNCH("causal_softmax_bwd_kernel");
        PB_TRY(bgemm(dev, Tn, hs, Tn, NH, scale, dS, K, 1.0f, dq, C3, hs));      /* dQ += scale dS K */
        PB_TRY(bgemm(dev, Tn, hs, Tn, NH, scale, dSt, Q, 1.0f, dq + C, C3, hs)); /* dK += scale dS^T Q */
    }
cleanup:
    return st;
}

static pb_status cuda_attention_fwd(pb_device *dev, float *out, float *att, const float *qkv, int B, int T, int C,
                                    int NH)
{
    pb_status st = PB_OK;
    if (B == 0 || T == 0) return PB_OK;
    PB_TRY(use_device(dev));
    if (is_bf16(dev)) return attention_fwd_t<bf16>(dev, (bf16 *)out, (bf16 *)att, (const bf16 *)qkv, B, T, C, NH);
    return attention_fwd_t<float>(dev, out, att, qkv, B, T, C, NH);
cleanup:
    return st;
}

/* dP comes from the shared scratch, one sequence's heads at a time */
static size_t cuda_attention_scratch(int T)
{
    (void)T;
    return 0;
}

static pb_status cuda_attention_bwd(pb_device *dev, float *dqkv, float *scratch, const float *dout,
                                    const float *qkv, const float *att, int B, int T, int C, int NH)
{
    pb_status st = PB_OK;
    (void)scratch;
    if (B == 0 || T == 0) return PB_OK;
    PB_TRY(use_device(dev));
    if (is_bf16(dev))
        return attention_bwd_t<bf16>(dev, (bf16 *)dqkv, (const bf16 *)dout, (const bf16 *)qkv, (const bf16 *)att, B,
                                     T, C, NH);
    return attention_bwd_t<float>(dev, dqkv, dout, qkv, att, B, T, C, NH);
cleanup:
    return st;
}

#endif /* PB_CUDA_ATTENTION_CUH */
