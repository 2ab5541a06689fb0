/* The GEMM with epilogues: the cuBLASLt plan cache and the gemm_fwd and
 * gemm_bwd ops built on it (kernels/backend.h, pb_gemm).
 *
 * Row-major tensors, column-major cuBLASLt. A row-major [r, c] matrix is the
 * column-major [c, r] matrix with ld = c, i.e. its transpose, for free. So
 * every product is computed transposed, with no copies:
 *   forward  y = x w^T      ->  y^T[n,m]  = op_T(w^T[k,n]) * x^T[k,m]
 *   weights  dw = dy^T x    ->  dw^T[k,n] = x^T[k,m] * op_T(dy^T[n,m])
 *   input    dx = dy w      ->  dx^T[k,m] = w^T[k,n] * dy^T[n,m]
 * where A^T[a,b] names the column-major view of row-major A. In each the
 * bias-like vector runs along the rows of D (forward bias n, the layer
 * below's dx_db k) or its columns (db n), which is exactly where the BIAS /
 * DGELU_BGRAD (rows) and BGRADB (columns) epilogues put it, and GELU's aux
 * (the pre-activation, D's type and [rows, m] shape) has D's leading
 * dimension.
 *
 * What is fused (each checked against cuBLASLt's heuristic per shape and
 * type, with a plain GEMM plus elementwise.cuh's kernels when it has no
 * algorithm):
 *   forward   BIAS / RELU_BIAS / GELU_AUX_BIAS (pre as the aux). In bf16
 *             cuBLASLt 13.1 rejects an fp32 bias beside a bf16 D
 *             (INVALID_VALUE), so the bias is first rounded into a bf16
 *             scratch vector, as autocast would.
 *   dW, db    BGRADB: db is the column sum of dy, i.e. the sum of B over the
 *             GEMM's k, read once inside the GEMM; fp32 like dW.
 *   dx        GELU below: DGELU_BGRAD (x_pre as the aux input; dx_db comes
 *             out in D's type, widened in bf16), or DGELU plus a column sum.
 *             ReLU below: plain GEMM, then one kernel masks dx by x > 0
 *             (pb_relu_backward, as on the CPU) and writes dx_db's column
 *             sums. cuBLASLt's DRELU_BGRAD needs the 1-bit mask of a
 *             RELU_AUX forward: on an H200 (cuBLASLt 13.1, fwd+bwd of one
 *             layer) that path was never faster and up to 11% slower (tf32
 *             8192 x 4096: 3.13 vs 2.81 ms; bf16 1.29 vs 1.21 ms), and in bf16
 *             the mask disagreed with the stored output's sign for ~0.03% of
 *             elements near zero, so it was removed (docs/gpu.md). */
#ifndef PB_CUDA_MATMUL_CUH
#define PB_CUDA_MATMUL_CUH

#include "cuda_common.cuh"
#include "elementwise.cuh"

/* ------------------------------------------------------------------------ */
/* cuBLASLt plans: descriptors + heuristic result per distinct GEMM, built on
 * first use, so a step after the first allocates nothing on the host and
 * makes no heuristic query (which would cost tens of microseconds per GEMM). */

static void plan_release(mm_plan *p)
{
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->d) cublasLtMatrixLayoutDestroy(p->d);
    memset(p, 0, sizeof *p);
}

static mm_key make_key(const pb_device *dev, int m, int n, int k, bool trans_a, bool trans_b,
                       cudaDataType_t ab_type, cudaDataType_t d_type, cublasLtEpilogue_t epilogue,
                       const void *a, int64_t lda, const void *b, int64_t ldb, void *d,
                       int64_t ldd, const void *bias, int32_t bias_type, const void *aux,
                       int64_t aux_ld)
{
    mm_key key;
    memset(&key, 0, sizeof key);
    key.m = m;
    key.n = n;
    key.k = k;
    key.trans_a = trans_a;
    key.trans_b = trans_b;
    key.ab_type = ab_type;
    key.d_type = d_type;
    key.bias_type = bias ? bias_type : -1;
    key.compute = dev->precision == PB_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    key.epilogue = (uint32_t)epilogue;
    key.lda = lda;
    key.ldb = ldb;
    key.ldd = ldd;
    key.aux_ld = aux ? aux_ld : 0;
    key.align_a = ptr_align(a);
    key.align_b = ptr_align(b);
    key.align_d = ptr_align(d);
    key.align_bias = bias ? ptr_align(bias) : 0;
    key.align_aux = aux ? ptr_align(aux) : 0;
    return key;
}

static pb_status plan_build(pb_device *dev, mm_plan *p, const mm_key *key, const void *bias,
                            const void *aux)
{
    pb_status st = PB_OK;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t result;
    cublasOperation_t ta, tb;
    cublasLtEpilogue_t epi;
    cublasStatus_t hs;
    int found = 0;
    uint64_t ws = WORKSPACE_BYTES;
    int32_t bias_type;
    int64_t ld_aux;

    memset(p, 0, sizeof *p);
    memset(&result, 0, sizeof result);
    p->key = *key;
    p->used = true;
    ta = key->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    tb = key->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    epi = (cublasLtEpilogue_t)key->epilogue;

    PB_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, (cublasComputeType_t)key->compute, CUDA_R_32F));
    PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    /* the heuristic reads the bias/aux pointers for their alignment */
    if (bias) {
        PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias, sizeof bias));
        if (key->bias_type >= 0) {
            bias_type = key->bias_type;
            PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
                p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
        }
    }
    if (aux) {
        ld_aux = key->aux_ld;
        PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                       &aux, sizeof aux));
        PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                       &ld_aux, sizeof ld_aux));
    }
    /* layouts describe the stored matrices, before op(): A is m x k unless
     * transposed, B is k x n unless transposed, D is m x n */
    PB_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, (cudaDataType_t)key->ab_type,
                                               key->trans_a ? key->k : key->m,
                                               key->trans_a ? key->m : key->k, key->lda));
    PB_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, (cudaDataType_t)key->ab_type,
                                               key->trans_b ? key->n : key->k,
                                               key->trans_b ? key->k : key->n, key->ldb));
    PB_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, (cudaDataType_t)key->d_type, key->m, key->n,
                                               key->ldd));

    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &ws, sizeof ws));
    /* the heuristic assumes 256-byte aligned A/B/C/D unless told otherwise;
     * tensors carved out of a flat parameter buffer often are not */
    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                         &key->align_a, sizeof key->align_a));
    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                         &key->align_b, sizeof key->align_b));
    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                         &key->align_d, sizeof key->align_d));
    PB_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                         &key->align_d, sizeof key->align_d));

    hs = cublasLtMatmulAlgoGetHeuristic(dev->lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &result,
                                        &found);
    if (hs == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
        p->algo = result.algo;
        p->supported = true;
    } else if (hs == CUBLAS_STATUS_SUCCESS || hs == CUBLAS_STATUS_NOT_SUPPORTED ||
               hs == CUBLAS_STATUS_INVALID_VALUE) {
        /* an epilogue/type combination this cuBLASLt cannot do: the caller
         * falls back; remembered so the question is asked once */
        p->supported = false;
        p->why = hs == CUBLAS_STATUS_SUCCESS ? CUBLAS_STATUS_NOT_SUPPORTED : hs;
    } else {
        PB_CUBLAS_CHECK(hs);
    }
cleanup:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (st != PB_OK) plan_release(p);
    return st;
}

static pb_status plan_get(pb_device *dev, const mm_key *key, const void *bias, const void *aux,
                          mm_plan **out)
{
    pb_status st = PB_OK;
    mm_plan *slot = NULL;
    for (int i = 0; i < PLAN_CAP; i++) {
        mm_plan *p = &dev->plans[i];
        if (p->used && memcmp(&p->key, key, sizeof *key) == 0) {
            *out = p;
            return PB_OK;
        }
        if (!p->used && !slot) slot = p;
    }
    if (!slot) {
        slot = &dev->plans[dev->next_evict];
        dev->next_evict = (dev->next_evict + 1) % PLAN_CAP;
        plan_release(slot);
    }
    PB_TRY(plan_build(dev, slot, key, bias, aux));
    *out = slot;
cleanup:
    return st;
}

/* D = op(A) op(B) + beta D (beta 0: D is overwritten, never read) */
static pb_status plan_run(pb_device *dev, mm_plan *p, const void *a, const void *b, void *d,
                         const void *bias, const void *aux, float beta)
{
    pb_status st = PB_OK;
    const float alpha = 1.0f;
    /* same alignment class as when the plan was built (it is in the key) */
    if (bias)
        PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias, sizeof bias));
    if (aux)
        PB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                       &aux, sizeof aux));
    PB_CUBLAS_CHECK(cublasLtMatmul(dev->lt, p->desc, &alpha, a, p->a, b, p->b, &beta, d, p->d, d,
                                   p->d, &p->algo, dev->workspace, WORKSPACE_BYTES, dev->stream));
cleanup:
    return st;
}

/* D = op(A) op(B) with the key's epilogue. *ran is false, and nothing is
 * enqueued, when cuBLASLt has no algorithm for the combination. */
static pb_status matmul(pb_device *dev, const mm_key *key, const void *a, const void *b, void *d,
                        const void *bias, const void *aux, float beta, bool *ran, cublasStatus_t *why)
{
    pb_status st = PB_OK;
    mm_plan *p = NULL;

    *ran = false;
    PB_TRY(plan_get(dev, key, bias, aux, &p));
    if (!p->supported) {
        if (why) *why = p->why;
        goto cleanup;
    }
    PB_TRY(plan_run(dev, p, a, b, d, bias, aux, beta));
    *ran = true;
cleanup:
    return st;
}

/* The last resort of every fallback chain: a plain GEMM must exist. */
static pb_status matmul_plain(pb_device *dev, mm_key key, const void *a, const void *b, void *d,
                              float beta, const char *what)
{
    pb_status st = PB_OK;
    bool ran = false;
    cublasStatus_t why = CUBLAS_STATUS_SUCCESS;
    key.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    key.bias_type = -1;
    key.align_bias = 0;
    key.align_aux = 0;
    key.aux_ld = 0;
    PB_TRY(matmul(dev, &key, a, b, d, NULL, NULL, beta, &ran, &why));
    PB_REQUIRE(ran, PB_ERR_BACKEND,
               "cuBLASLt has no algorithm for the %s GEMM (m=%d n=%d k=%d, %s): %s", what, key.m,
               key.n, key.k, pb_precision_name(dev->precision), cublasLtGetStatusString(why));
cleanup:
    return st;
}

/* ------------------------------------------------------------------------ */
/* ops: the GEMM with epilogues                                             */

/* One fused GEMM to try: an epilogue, and whether its bias (or bias
 * gradient) vector is the caller's fp32 one or the bf16 scratch. */
typedef struct mm_try {
    cublasLtEpilogue_t epilogue;
    bool bias16;
} mm_try;

static bool epilogue_has_bias(cublasLtEpilogue_t e)
{
    return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_RELU_BIAS ||
           e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS || e == CUBLASLT_EPILOGUE_DGELU_BGRAD;
}

static bool epilogue_has_aux(cublasLtEpilogue_t e)
{
    return e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS || e == CUBLASLT_EPILOGUE_DGELU ||
           e == CUBLASLT_EPILOGUE_DGELU_BGRAD;
}

/* Each epilogue in order of preference; in bf16 an fp32 bias is asked for
 * first (exact, should a later cuBLASLt allow it) and the bf16 copy second.
 * Unsupported forms cost one heuristic query per shape, then none. */
static int expand_tries(const pb_device *dev, const cublasLtEpilogue_t *epis, int n_epis,
                        mm_try *tries)
{
    int n = 0;
    for (int i = 0; i < n_epis; i++) {
        tries[n].epilogue = epis[i];
        tries[n++].bias16 = false;
        if (is_bf16(dev) && epilogue_has_bias(epis[i])) {
            tries[n].epilogue = epis[i];
            tries[n++].bias16 = true;
        }
    }
    return n;
}

/* fp32 bias beside a bf16 D must be declared; otherwise it is D's type */
static int32_t try_bias_type(const pb_device *dev, const mm_try *t)
{
    return is_bf16(dev) && !t->bias16 ? CUDA_R_32F : -1;
}

static pb_status cuda_gemm_fwd(pb_device *dev, const pb_gemm *g)
{
    pb_status st = PB_OK;
    cudaDataType_t act = act_type(dev);
    const bool gelu = g->epilogue == PB_EPI_GELU_BIAS, has_bias = g->epilogue != PB_EPI_NONE;
    const int act_kind = gelu ? ACT_GELU : g->epilogue == PB_EPI_RELU_BIAS ? ACT_RELU : ACT_NONE;
    bool ran = false;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    mm_try tries[2];
    int n_tries = 0;
    mm_key key;
    mm_plan *p = NULL;
    const void *bias;
    void *aux = gelu ? g->pre : NULL;
    /* GELU's GEMM writes the pre-activation where the epilogue is unfused */
    void *z = gelu ? g->pre : g->y;

    if (g->m == 0) return PB_OK;
    PB_REQUIRE(g->m > 0 && g->n > 0 && g->k > 0 && g->x && g->w && g->y && (!has_bias || g->bias) &&
                   (!gelu || g->pre),
               PB_ERR_INTERNAL, "gemm_fwd: bad shape m=%d n=%d k=%d or NULL tensor (epilogue %d)", g->m,
               g->n, g->k, (int)g->epilogue);
    PB_TRY(use_device(dev));
    if (has_bias && is_bf16(dev)) PB_TRY(ensure_bias16(dev, (size_t)g->n));

    if (g->epilogue == PB_EPI_BIAS) epi = CUBLASLT_EPILOGUE_BIAS;
    if (g->epilogue == PB_EPI_RELU_BIAS) epi = CUBLASLT_EPILOGUE_RELU_BIAS;
    /* the aux is D-shaped: its ld is D's rows, n */
    if (gelu && gelu_aux_ok(g->n)) epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    if (epi != CUBLASLT_EPILOGUE_DEFAULT) n_tries = expand_tries(dev, &epi, 1, tries);
    for (int i = 0; i < n_tries && !ran; i++) {
        bias = tries[i].bias16 ? (const void *)dev->bias16 : (const void *)g->bias;
        /* y^T[n,m] = op_T(w^T[k,n]) x^T[k,m] */
        key = make_key(dev, g->n, g->m, g->k, true, false, act, act, tries[i].epilogue, g->w, g->k, g->x,
                       g->k, g->y, g->n, bias, try_bias_type(dev, &tries[i]), aux, g->n);
        PB_TRY(plan_get(dev, &key, bias, aux, &p));
        if (!p->supported) continue;
        if (tries[i].bias16) PB_TRY(launch_to_act(dev, (size_t)g->n, g->bias, dev->bias16));
        PB_TRY(plan_run(dev, p, g->w, g->x, g->y, bias, aux, 0.0f));
        ran = true;
    }
    if (!ran) {
        key = make_key(dev, g->n, g->m, g->k, true, false, act, act, CUBLASLT_EPILOGUE_DEFAULT, g->w, g->k,
                       g->x, g->k, z, g->n, NULL, -1, NULL, 0);
        PB_TRY(matmul_plain(dev, key, g->w, g->x, z, 0.0f, "forward"));
        if (has_bias) PB_TRY(launch_bias_act(dev, g->m, g->n, z, g->bias, act_kind, g->y));
    }
cleanup:
    return st;
}

/* dx^T[k,m] = w^T[k,n] dy^T[n,m] (+ dx_beta dx^T) through GELU's derivative
 * fused: DGELU_BGRAD (dx_db in the GEMM), else DGELU and a column sum. *ran
 * false: cuBLASLt has neither for this shape and type (or the aux's ld k is
 * not a multiple of 8), nothing was enqueued. Only for dx_beta 0: what
 * cuBLASLt's derivative does to a beta * C term is not documented, and
 * gemm_bwd's contract applies it to the sum. */
static pb_status dx_dgelu_fused(pb_device *dev, const pb_gemm_grad *g, bool *ran)
{
    pb_status st = PB_OK;
    cudaDataType_t act = act_type(dev);
    cublasLtEpilogue_t epis[2];
    mm_try tries[3];
    int n_epis = 0, n_tries;
    mm_key key;
    mm_plan *p = NULL;
    const void *bias;

    *ran = false;
    if (g->dx_beta != 0.0f || !gelu_aux_ok(g->k)) return PB_OK;
    if (g->dx_db && is_bf16(dev)) PB_TRY(ensure_bias16(dev, (size_t)g->k));
    if (g->dx_db) epis[n_epis++] = CUBLASLT_EPILOGUE_DGELU_BGRAD;
    epis[n_epis++] = CUBLASLT_EPILOGUE_DGELU;
    n_tries = expand_tries(dev, epis, n_epis, tries);
    for (int i = 0; i < n_tries && !*ran; i++) {
        bias = !epilogue_has_bias(tries[i].epilogue) ? NULL
               : tries[i].bias16                     ? (const void *)dev->bias16
                                                     : (const void *)g->dx_db;
        key = make_key(dev, g->k, g->m, g->n, false, false, act, act, tries[i].epilogue, g->w, g->k, g->dy,
                       g->n, g->dx, g->k, bias, try_bias_type(dev, &tries[i]), g->x_pre, g->k);
        PB_TRY(plan_get(dev, &key, bias, g->x_pre, &p));
        if (!p->supported) continue;
        PB_TRY(plan_run(dev, p, g->w, g->dy, g->dx, bias, g->x_pre, 0.0f));
        if (tries[i].bias16)
            PB_TRY(launch_from_act(dev, (size_t)g->k, dev->bias16, g->dx_db));
        else if (!bias && g->dx_db)
            PB_TRY(launch_colsum_act(dev, g->m, g->k, g->dx, ACT_NONE, NULL, g->dx_db));
        *ran = true;
    }
cleanup:
    return st;
}

static pb_status cuda_gemm_bwd(pb_device *dev, const pb_gemm_grad *g)
{
    pb_status st = PB_OK;
    cudaDataType_t act = act_type(dev);
    bool ran = false;
    mm_key key;

    if (g->m == 0) return PB_OK;
    PB_REQUIRE(g->m > 0 && g->n > 0 && g->k > 0 && g->dy && g->x && g->w && g->dw &&
                   (g->dx_act != PB_DACT_GELU || g->x_pre),
               PB_ERR_INTERNAL, "gemm_bwd: bad shape m=%d n=%d k=%d or NULL tensor", g->m, g->n, g->k);
    PB_TRY(use_device(dev));

    /* dw^T[k,n] = x^T[k,m] op_T(dy^T[n,m]); db = sum of op(B) over the GEMM's
     * k (the batch), which is BGRADB. D is fp32 in every precision, and the
     * bias gradient takes D's type, so db is written directly. */
    if (g->db) {
        key = make_key(dev, g->k, g->n, g->m, false, true, act, CUDA_R_32F, CUBLASLT_EPILOGUE_BGRADB,
                       g->x, g->k, g->dy, g->n, g->dw, g->k, g->db, -1, NULL, 0);
        PB_TRY(matmul(dev, &key, g->x, g->dy, g->dw, g->db, NULL, g->dw_beta, &ran, NULL));
    }
    if (!ran) {
        key = make_key(dev, g->k, g->n, g->m, false, true, act, CUDA_R_32F, CUBLASLT_EPILOGUE_DEFAULT,
                       g->x, g->k, g->dy, g->n, g->dw, g->k, NULL, -1, NULL, 0);
        PB_TRY(matmul_plain(dev, key, g->x, g->dy, g->dw, g->dw_beta, "weight-gradient"));
        if (g->db) PB_TRY(launch_colsum_act(dev, g->m, g->n, (void *)g->dy, ACT_NONE, NULL, g->db));
    }

    if (!g->dx) goto cleanup;
    ran = false;
    if (g->dx_act == PB_DACT_GELU) PB_TRY(dx_dgelu_fused(dev, g, &ran));
    if (!ran) {
        /* dx^T[k,m] = w^T[k,n] dy^T[n,m], then the derivative of the layer
         * below (ReLU: from x > 0, x being its output) and its column sums */
        int act_kind = g->dx_act == PB_DACT_RELU ? ACT_RELU : g->dx_act == PB_DACT_GELU ? ACT_GELU : ACT_NONE;
        const void *src = g->dx_act == PB_DACT_RELU ? g->x : g->x_pre;
        key = make_key(dev, g->k, g->m, g->n, false, false, act, act, CUBLASLT_EPILOGUE_DEFAULT, g->w,
                       g->k, g->dy, g->n, g->dx, g->k, NULL, -1, NULL, 0);
        PB_TRY(matmul_plain(dev, key, g->w, g->dy, g->dx, g->dx_beta, "input-gradient"));
        if (act_kind != ACT_NONE)
            PB_TRY(launch_colsum_act(dev, g->m, g->k, g->dx, act_kind, src, g->dx_db));
    }
cleanup:
    return st;
}

/* the epilogues alone, for a GEMM output summed across ranks first */
static pb_status cuda_bias_act(pb_device *dev, int m, int n, void *y, const float *b, bool relu)
{
    pb_status st = PB_OK;
    if (m == 0 || (!b && !relu)) return PB_OK;
    PB_TRY(use_device(dev));
    PB_TRY(launch_bias_act(dev, m, n, y, b, relu ? ACT_RELU : ACT_NONE, y));
cleanup:
    return st;
}

static pb_status cuda_relu_bwd(pb_device *dev, int m, int n, void *dy, const void *y, float *db)
{
    pb_status st = PB_OK;
    if (m == 0) return PB_OK;
    PB_TRY(use_device(dev));
    PB_TRY(launch_colsum_act(dev, m, n, dy, ACT_RELU, y, db));
cleanup:
    return st;
}

#endif /* PB_CUDA_MATMUL_CUH */
