/* CPU backend: CBLAS (OpenBLAS) GEMMs, C loops for the rest, the clock for
 * timing. Everything runs synchronously on the calling thread; the BLAS uses
 * opts->threads threads. Activations are fp32. */
#define _GNU_SOURCE
/* a*b + c stays two roundings everywhere in this file, whatever the flags
 * (GNU C modes fuse it by default, and the AVX-512 clones below have FMA):
 * every clone of a loop must give the plain loop's bits. Set before the
 * includes so that the inline functions of elementwise.h get it too. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "../../harness/timer.h"
#include "../backend.h"
#include "../elementwise.h"
#include "../gemm_ref.h"
#include "backend_cpu_gpt.h"
#include "blas_info.h"
#include "gpt_ops.h"

#define CPU_ALIGN 64

/* Buffers of the GEMM-alone reference, kept between calls so that a
 * benchmark alternating steps and reference sets does not map and unmap
 * tens of megabytes every round (which slowed both sides by half). */
typedef struct gemm_bufs {
    float *w, *dw, *act, *top, *dz[2];
    size_t w_elems, act_elems, dz_elems;
} gemm_bufs;

struct pb_device {
    int ordinal;
    int threads;
    size_t bytes_now, bytes_peak;
    double mem_limit; /* --device-mem-mb in bytes, 0 none */
    gemm_bufs ref;
};

struct pb_mark {
    double ms;
};

/* Each block carries its size in a header so free() can keep the accounting
 * that peak_mem_mb reports. */
typedef struct block_header {
    size_t bytes;
    char pad[CPU_ALIGN - sizeof(size_t)];
} block_header;

static int cpu_device_count(char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    /* The CPU backend can stand in for any number of devices (threads or
     * ranks share the cores); report the cores as the natural count. */
    return n > 0 ? (int)n : 1;
}

static pb_status cpu_open(const pb_device_opts *opts, int ordinal, pb_device **out)
{
    pb_device *dev = calloc(1, sizeof *dev);
    if (!dev) return pb_host_nomem(sizeof *dev);
    dev->ordinal = ordinal;
    dev->threads = opts->threads;
    dev->mem_limit = opts->mem_limit;
    pb_blas_set_threads(opts->threads);
    *out = dev;
    return PB_OK;
}

static void free_gemm_bufs(pb_device *dev);

static void cpu_close(pb_device *dev)
{
    if (!dev) return;
    free_gemm_bufs(dev);
    free(dev);
}

static pb_status cpu_info(pb_device *dev, pb_device_info *out)
{
    (void)dev;
    memset(out, 0, sizeof *out);
    pb_cpu_model(out->name, sizeof out->name);
    snprintf(out->blas, sizeof out->blas, "%s", pb_blas_name());
    snprintf(out->blas_version, sizeof out->blas_version, "%s", pb_blas_version());
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    out->total_mem_mb = pages > 0 && page > 0 ? (double)pages * (double)page / 1048576.0 : 0.0;
    return PB_OK;
}

static size_t cpu_act_bytes(const pb_device *dev, size_t elems)
{
    (void)dev;
    return elems * sizeof(float);
}

/* Blocks of 2 MB and more are 2 MB aligned and asked to be backed by
 * transparent huge pages: the optimizer streams every parameter, gradient
 * and moment each step, and the GEMMs walk the weights, so fewer TLB misses
 * pay off (a no-op where THP is off; "always" gives them anyway). */
#define CPU_HUGE_PAGE ((size_t)2 << 20)

static pb_status cpu_alloc(pb_device *dev, size_t bytes, void **ptr)
{
    if (dev) {
        pb_status st = pb_backend_check_limit(dev->ordinal, dev->mem_limit, dev->bytes_now, bytes);
        if (st != PB_OK) return st;
    }
    size_t total = sizeof(block_header) + ((bytes + CPU_ALIGN - 1) / CPU_ALIGN) * CPU_ALIGN;
    block_header *h;
    if (total >= CPU_HUGE_PAGE) {
        total = (total + CPU_HUGE_PAGE - 1) / CPU_HUGE_PAGE * CPU_HUGE_PAGE;
        h = aligned_alloc(CPU_HUGE_PAGE, total);
        if (h) (void)madvise(h, total, MADV_HUGEPAGE); /* advice only */
    } else {
        h = aligned_alloc(CPU_ALIGN, total);
    }
    if (!h) return pb_host_nomem(bytes);
    memset(h, 0, total);
    h->bytes = bytes;
    if (dev) { /* host_alloc may be called before any device is open */
        dev->bytes_now += bytes;
        if (dev->bytes_now > dev->bytes_peak) dev->bytes_peak = dev->bytes_now;
    }
    *ptr = h + 1;
    return PB_OK;
}

static void cpu_free(pb_device *dev, void *ptr)
{
    if (!ptr) return;
    block_header *h = (block_header *)ptr - 1;
    if (dev) dev->bytes_now -= h->bytes;
    free(h);
}

static pb_status cpu_zero(pb_device *dev, void *ptr, size_t bytes)
{
    (void)dev;
    memset(ptr, 0, bytes);
    return PB_OK;
}

static pb_status cpu_copy(pb_device *dev, void *dst, const void *src, size_t bytes)
{
    (void)dev;
    memcpy(dst, src, bytes);
    return PB_OK;
}

/* Every CPU "device" is host memory, and calls are synchronous. */
static pb_status cpu_copy_peer(pb_device *dst_dev, void *dst, pb_device *src_dev, const void *src, size_t bytes)
{
    (void)src_dev;
    return cpu_copy(dst_dev, dst, src, bytes);
}

/* The CPU has no copy engine: a prefetch is a synchronous copy, done when it
 * returns. */
static pb_status cpu_prefetch_wait(pb_device *dev)
{
    (void)dev;
    return PB_OK;
}

static pb_status cpu_copy_act_in(pb_device *dev, void *dst, const float *src, size_t elems)
{
    return cpu_copy(dev, dst, src, elems * sizeof(float));
}

static pb_status cpu_copy_act_out(pb_device *dev, float *dst, const void *src, size_t elems)
{
    return cpu_copy(dev, dst, src, elems * sizeof(float));
}

static double cpu_peak_mem_mb(const pb_device *dev) { return (double)dev->bytes_peak / 1048576.0; }

/* --- the step's kernels ----------------------------------------------------
 *
 * The build targets baseline x86-64 (SSE2), so the loops that gain from wider
 * vectors are compiled again for AVX-512 and AVX2 and the best clone the CPU
 * supports is picked when the library loads. Each clone applies the same
 * operations to each element in the same order (no reassociation: column and
 * row sums still add rows in order), so results are bitwise those of the
 * plain loops, whichever clone runs (benchmarks/cpu_exact.c checks this). */
#if defined(__x86_64__) && defined(__GNUC__)
#define CPU_X86 1
#define SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CPU_X86 0
#define SIMD_CLONES
#endif

SIMD_CLONES static void relu_inplace(size_t n, float *restrict y)
{
    for (size_t i = 0; i < n; i++) y[i] = pb_relu(y[i]);
}

/* The three GEMMs of a Linear layer, exactly as the step issues them; the
 * GEMM-alone reference (cpu_gemm_reference) calls the same functions.
 * y[m,n] = x[m,k] w[n,k]^T + beta y; beta 1 accumulates onto a bias prefill. */
static void gemm_forward(int m, int n, int k, const float *x, const float *w, float beta, float *y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k, beta, y, n);
}

/* dw[n,k] = dy[m,n]^T x[m,k] + beta dw. With beta 0 OpenBLAS clears dw in
 * a pass of its own first; with SGD's momentum as beta it scales the
 * momentum buffer in that pass instead, and the gradient is never stored. */
static void gemm_weight_grad(int m, int n, int k, const float *dy, const float *x, float beta, float *dw)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, k, m, 1.0f, dy, n, x, k, beta, dw, k);
}

/* dx[m,k] = dy[m,n] w[n,k] + beta dx */
static void gemm_input_grad(int m, int n, int k, const float *dy, const float *w, float beta, float *dx)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, n, 1.0f, dy, n, w, k, beta, dx, k);
}

/* z[i, :] = r[i, :] + b: the residual's prefill, the bias added in the
 * same pass */
SIMD_CLONES static void fill_rows_res(int m, int n, const float *restrict b, const float *restrict r,
                                      float *restrict z)
{
    for (int i = 0; i < m; i++) {
        float *restrict row = z + (size_t)i * (size_t)n;
        const float *restrict rr = r + (size_t)i * (size_t)n;
        for (int j = 0; j < n; j++) row[j] = rr[j] + b[j];
    }
}

pb_status pb_cpu_gemm_residual_fwd(pb_device *dev, const pb_gemm *g, const float *res)
{
    (void)dev;
    pb_status st = PB_OK;
    PB_REQUIRE(g->epilogue == PB_EPI_BIAS && g->bias && (const void *)res != g->y, PB_ERR_INTERNAL,
               "gemm_residual_fwd takes the bias epilogue and a residual apart from y");
    fill_rows_res(g->m, g->n, g->bias, res, g->y);
    gemm_forward(g->m, g->n, g->k, g->x, g->w, 1.0f, g->y);
cleanup:
    return st;
}

static pb_status cpu_gemm_fwd(pb_device *dev, const pb_gemm *g)
{
    (void)dev;
    const size_t mn = (size_t)g->m * (size_t)g->n;
    /* GELU's GEMM writes the pre-activation it saves; y follows from it */
    float *restrict z = g->epilogue == PB_EPI_GELU_BIAS ? g->pre : g->y;
    const float *restrict b = g->epilogue == PB_EPI_NONE ? NULL : g->bias;
    /* Pre-fill with the bias and let the GEMM accumulate (beta = 1): the
     * bias costs one streaming write instead of an extra read-modify-write
     * (and OpenBLAS would clear C in a pass of its own for beta = 0). */
    if (b)
        for (int i = 0; i < g->m; i++) memcpy(z + (size_t)i * g->n, b, (size_t)g->n * sizeof(float));
    gemm_forward(g->m, g->n, g->k, g->x, g->w, b ? 1.0f : 0.0f, z);
    /* z was just written by the GEMM: the activation's pass runs in cache */
    if (g->epilogue == PB_EPI_RELU_BIAS) relu_inplace(mn, z);
    if (g->epilogue == PB_EPI_GELU_BIAS) pb_cpu_gelu_fwd(g->y, z, mn);
    return PB_OK;
}

/* out[j] = sum over rows of a[i, j], rows added in order */
SIMD_CLONES static void column_sums(int m, int n, const float *restrict a, float *restrict out)
{
    memset(out, 0, (size_t)n * sizeof(float));
    for (int i = 0; i < m; i++) {
        const float *restrict row = a + (size_t)i * n;
        for (int j = 0; j < n; j++) out[j] += row[j];
    }
}

/* DRELU_BGRAD: dx masked by the ReLU of the layer below (its stored output
 * x), and that layer's bias gradient db[j] = sum over rows of the masked dx,
 * in one pass over dx while it is still in cache from the GEMM. */
SIMD_CLONES static void drelu_bgrad(int m, int k, float *restrict dx, const float *restrict x,
                                    float *restrict db)
{
    if (!db) {
        for (size_t i = 0; i < (size_t)m * (size_t)k; i++) dx[i] = pb_relu_backward(dx[i], x[i]);
        return;
    }
    memset(db, 0, (size_t)k * sizeof(float));
    for (int i = 0; i < m; i++) {
        float *restrict row = dx + (size_t)i * k;
        const float *restrict xr = x + (size_t)i * k;
        for (int j = 0; j < k; j++) {
            float v = pb_relu_backward(row[j], xr[j]);
            row[j] = v;
            db[j] += v;
        }
    }
}

static pb_status cpu_gemm_bwd(pb_device *dev, const pb_gemm_grad *g)
{
    (void)dev;
    const float *dy = g->dy;
    gemm_weight_grad(g->m, g->n, g->k, dy, g->x, g->dw_beta, g->dw);
    if (g->db) column_sums(g->m, g->n, dy, g->db);
    if (!g->dx) return PB_OK;
    gemm_input_grad(g->m, g->n, g->k, dy, g->w, g->dx_beta, g->dx);
    if (g->dx_act == PB_DACT_RELU) drelu_bgrad(g->m, g->k, g->dx, g->x, g->dx_db);
    if (g->dx_act == PB_DACT_GELU) {
        /* DGELU_BGRAD: the op adds its column sums; ours are overwritten */
        if (g->dx_db) memset(g->dx_db, 0, (size_t)g->k * sizeof(float));
        pb_cpu_dgelu_bgrad(g->dx, g->dx_db, g->dx, g->x_pre, g->m, g->k);
    }
    return PB_OK;
}

static pb_status cpu_bias_act(pb_device *dev, int m, int n, void *y, const float *b, bool relu)
{
    (void)dev;
    float *restrict v = y;
    if (b)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) v[(size_t)i * n + j] += b[j];
    if (relu) relu_inplace((size_t)m * (size_t)n, v);
    return PB_OK;
}

static pb_status cpu_relu_bwd(pb_device *dev, int m, int n, void *dy, const void *y, float *db)
{
    (void)dev;
    drelu_bgrad(m, n, dy, y, db);
    return PB_OK;
}

/* exp(z[j] - mx) over a row: the softmax's transcendental work.
 *
 * On x86-64 with AVX2 and FMA, glibc's expf is __expf_fma: the algorithm of
 * ARM's optimized-routines (exp2f_data: x*32/ln2 = k + r, 2^(k/32) from a
 * 32-entry table of doubles, a cubic in r, all in double, rounded once to
 * float). It is written out below with the same constants and the same
 * fused multiply-adds, so that it vectorises; the results are bitwise those
 * of expf (benchmarks/cpu_exact.c compares all 2^32 floats). Arguments with
 * |x| >= 88 or NaN, glibc's special cases, are handed to expf itself, as is
 * a row's tail of fewer than 16. Other CPUs call expf. */
#if CPU_X86
#define EXPF_BITS 5
#define EXPF_N (1 << EXPF_BITS)
/* asuint64(2^(i/32)) - (i << 47); k's high bits supply the exponent */
static const uint64_t expf_tab[EXPF_N] __attribute__((aligned(64))) = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};
#define EXPF_INVLN2N (0x1.71547652b82fep+0 * EXPF_N)
#define EXPF_SHIFT 0x1.8p+52
#define EXPF_C0 (0x1.c6af84b912394p-5 / EXPF_N / EXPF_N / EXPF_N)
#define EXPF_C1 (0x1.ebfce50fac4f3p-3 / EXPF_N / EXPF_N)
#define EXPF_C2 (0x1.62e42ff0c52d6p-1 / EXPF_N)
#define EXPF_SPECIAL 0x42b /* top 12 bits of |x| from 88.0f up, and inf/NaN */

static inline uint32_t expf_abstop(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (u >> 20) & 0x7ff;
}

/* Lanes of a block whose |x| >= 88 or NaN, glibc's special cases, by glibc.
 * Called before the block is stored, so z is intact even when e == z. */
static void exp_block_special(const float *z, float mx, float *out, int n)
{
    for (int k = 0; k < n; k++) {
        float x = z[k] - mx;
        if (expf_abstop(x) >= EXPF_SPECIAL) out[k] = expf(x);
    }
}

#define EXPF_BLOCK 16

/* AVX2 + FMA: the algorithm in C, vectorised by the compiler, 16 at a time */
__attribute__((target("avx2,fma"))) static void exp_row_avx2(const float *z, float mx, float *e, int c)
{
    int j = 0;
    for (; j + EXPF_BLOCK <= c; j += EXPF_BLOCK) {
        float out[EXPF_BLOCK];
        uint32_t special = 0;
        for (int k = 0; k < EXPF_BLOCK; k++) {
            float x = z[j + k] - mx;
            special |= expf_abstop(x) >= EXPF_SPECIAL;
            double xd = (double)x;
            double kd = __builtin_fma(EXPF_INVLN2N, xd, EXPF_SHIFT); /* x*N/ln2 rounded to k */
            uint64_t ki;
            memcpy(&ki, &kd, sizeof ki);
            kd -= EXPF_SHIFT;
            double r = __builtin_fma(EXPF_INVLN2N, xd, -kd);
            uint64_t t = expf_tab[ki % EXPF_N] + (ki << (52 - EXPF_BITS));
            double s;
            memcpy(&s, &t, sizeof s);
            double p = __builtin_fma(EXPF_C0, r, EXPF_C1);
            double r2 = r * r;
            double y = __builtin_fma(EXPF_C2, r, 1.0);
            y = __builtin_fma(p, r2, y);
            out[k] = (float)(y * s);
        }
        if (special) exp_block_special(z + j, mx, out, EXPF_BLOCK);
        memcpy(e + j, out, sizeof out);
    }
    for (; j < c; j++) e[j] = expf(z[j] - mx); /* the tail */
}

/* AVX-512: the same operations on 8 doubles at a time, the table looked up
 * with two-register permutes instead of gathers */
__attribute__((target("avx512f"))) static __m256 exp8_avx512(__m256 xf, const __m512d tab[4])
{
    const __m512d invln2n = _mm512_set1_pd(EXPF_INVLN2N), shift = _mm512_set1_pd(EXPF_SHIFT);
    __m512d xd = _mm512_cvtps_pd(xf);
    __m512d kd = _mm512_fmadd_pd(invln2n, xd, shift);
    __m512i ki = _mm512_castpd_si512(kd);
    kd = _mm512_sub_pd(kd, shift);
    __m512d r = _mm512_fmsub_pd(invln2n, xd, kd);
    __m512d t_lo = _mm512_permutex2var_pd(tab[0], ki, tab[1]); /* entries 0..15 by bits 0..3 */
    __m512d t_hi = _mm512_permutex2var_pd(tab[2], ki, tab[3]); /* entries 16..31 */
    __mmask8 upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
    __m512i t = _mm512_castpd_si512(_mm512_mask_blend_pd(upper, t_lo, t_hi));
    t = _mm512_add_epi64(t, _mm512_slli_epi64(ki, 52 - EXPF_BITS));
    __m512d p = _mm512_fmadd_pd(_mm512_set1_pd(EXPF_C0), r, _mm512_set1_pd(EXPF_C1));
    __m512d r2 = _mm512_mul_pd(r, r);
    __m512d y = _mm512_fmadd_pd(_mm512_set1_pd(EXPF_C2), r, _mm512_set1_pd(1.0));
    y = _mm512_fmadd_pd(p, r2, y);
    y = _mm512_mul_pd(y, _mm512_castsi512_pd(t));
    return _mm512_cvtpd_ps(y);
}

__attribute__((target("avx512f"))) static void exp_row_avx512(const float *z, float mx, float *e, int c)
{
    const __m512d tab[4] = {_mm512_load_pd((const double *)expf_tab), _mm512_load_pd((const double *)expf_tab + 8),
                            _mm512_load_pd((const double *)expf_tab + 16),
                            _mm512_load_pd((const double *)expf_tab + 24)};
    const __m512 vmx = _mm512_set1_ps(mx);
    const __m512i top_mask = _mm512_set1_epi32(0x7ff), top_special = _mm512_set1_epi32(EXPF_SPECIAL);
    int j = 0;
    for (; j + EXPF_BLOCK <= c; j += EXPF_BLOCK) {
        __m512 x = _mm512_sub_ps(_mm512_loadu_ps(z + j), vmx);
        __m512i top = _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(x), 20), top_mask);
        __mmask16 special = _mm512_cmpge_epu32_mask(top, top_special);
        __m256 lo = exp8_avx512(_mm512_castps512_ps256(x), tab);
        __m256 hi = exp8_avx512(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)), tab);
        if (special) {
            float out[EXPF_BLOCK];
            _mm256_storeu_ps(out, lo);
            _mm256_storeu_ps(out + 8, hi);
            exp_block_special(z + j, mx, out, EXPF_BLOCK);
            memcpy(e + j, out, sizeof out);
        } else {
            _mm256_storeu_ps(e + j, lo);
            _mm256_storeu_ps(e + j + 8, hi);
        }
    }
    for (; j < c; j++) e[j] = expf(z[j] - mx); /* the tail */
}

/* e may be z (the softmax in place): each block reads z before it stores */
static void exp_row(const float *z, float mx, float *e, int c)
{
    if (__builtin_cpu_supports("avx512f")) {
        exp_row_avx512(z, mx, e, c);
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        exp_row_avx2(z, mx, e, c);
    } else {
        for (int j = 0; j < c; j++) e[j] = expf(z[j] - mx);
    }
}
#else
static void exp_row(const float *z, float mx, float *e, int c)
{
    for (int j = 0; j < c; j++) e[j] = expf(z[j] - mx);
}
#endif

/* Row maximum with the sequential scan's comparison `z > mx ? z : mx`, in
 * 16 independent lanes that start at z[0] like the scan (GCC vector
 * extensions: a compare and a bitwise select, on any ISA). The maximum is the
 * same value; only the sign of a zero maximum may differ, which no later use
 * can see (z - mx, log(sum) - (z - mx)). NaNs are skipped as by the scan,
 * and a NaN z[0] fills every lane as it sticks in the scan. */
#define XENT_LANES 16
typedef float lanes_f __attribute__((vector_size(XENT_LANES * sizeof(float))));
typedef int32_t lanes_i __attribute__((vector_size(XENT_LANES * sizeof(float))));

SIMD_CLONES static float row_max(const float *restrict z, int c)
{
    float mx = z[0];
    int j = 0;
    if (c >= XENT_LANES) {
        lanes_f acc;
        for (int k = 0; k < XENT_LANES; k++) acc[k] = mx;
        for (; j + XENT_LANES <= c; j += XENT_LANES) {
            lanes_f v;
            memcpy(&v, z + j, sizeof v);
            lanes_i gt = v > acc; /* -1 where z > acc: false for NaNs */
            acc = (lanes_f)(((lanes_i)v & gt) | ((lanes_i)acc & ~gt));
        }
        for (int k = 0; k < XENT_LANES; k++) mx = acc[k] > mx ? acc[k] : mx;
    }
    for (; j < c; j++) mx = z[j] > mx ? z[j] : mx;
    return mx;
}

/* Rows handled together: each row's sum is still added in order (bitwise
 * the sequential sum), but the rows' chains are independent, so the adds do
 * not wait on each other's latency. */
#define XENT_ROWS 8

SIMD_CLONES static void row_sums(int rows, int c, float *const *d, float *sum)
{
    if (rows == XENT_ROWS) {
        for (int j = 0; j < c; j++)
            for (int r = 0; r < XENT_ROWS; r++) sum[r] += d[r][j];
    } else {
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < c; j++) sum[r] += d[r][j];
    }
}

SIMD_CLONES static void xent_grad_row(int c, float *restrict d, float inv, float scale)
{
    for (int j = 0; j < c; j++) d[j] = pb_xent_grad_exp(d[j], inv, 0, scale);
}

/* Softmax cross-entropy: per row exp(z - max) once (kept in dlogits), its
 * sum, the loss, and dlogits = scale * (e / sum - onehot) in place. */
static pb_status cpu_softmax_xent(pb_device *dev, int m, int c, const void *logits,
                                  const int32_t *labels, float scale, float *loss_sum,
                                  void *dlogits)
{
    (void)dev;
    for (int i = 0; i < m; i++)
        if (labels[i] < 0 || labels[i] >= c)
            return pb_error(PB_ERR_INTERNAL, "label %d of row %d outside [0, %d)", labels[i], i, c);
    double loss = 0.0;
    for (int i0 = 0; i0 < m; i0 += XENT_ROWS) {
        int rows = m - i0 < XENT_ROWS ? m - i0 : XENT_ROWS;
        float sum[XENT_ROWS] = {0}, z_label[XENT_ROWS]; /* z[label] - max */
        float *d[XENT_ROWS];
        for (int r = 0; r < rows; r++) {
            const float *z = (const float *)logits + (size_t)(i0 + r) * c;
            d[r] = (float *)dlogits + (size_t)(i0 + r) * c;
            float mx = row_max(z, c);
            z_label[r] = z[labels[i0 + r]] - mx; /* before exp_row: dlogits may be logits */
            exp_row(z, mx, d[r], c);
        }
        row_sums(rows, c, d, sum);
        for (int r = 0; r < rows; r++) { /* rows in order: the loss adds up as before */
            int label = labels[i0 + r];
            float inv = 1.0f / sum[r];
            loss += (double)(logf(sum[r]) - z_label[r]);
            float e_label = d[r][label];
            xent_grad_row(c, d[r], inv, scale);
            d[r][label] = pb_xent_grad_exp(e_label, inv, 1, scale);
        }
    }
    *loss_sum += (float)(loss * scale);
    return PB_OK;
}

/* The optimizers stream params, grads and state once: memory bound. */
SIMD_CLONES static void sgd_loop(size_t n, float *restrict p, float *restrict m, const float *restrict g,
                                 float lr, float mu, float wd)
{
    for (size_t i = 0; i < n; i++) pb_sgd_momentum(&p[i], &m[i], g[i], lr, mu, wd);
}

SIMD_CLONES static void sgd_ready_loop(size_t n, float *restrict p, float *restrict m, float lr, float wd)
{
    for (size_t i = 0; i < n; i++) pb_sgd_momentum_ready(&p[i], &m[i], lr, wd);
}

SIMD_CLONES static void adamw_loop(size_t n, float *restrict p, float *restrict m, float *restrict v,
                                   const float *restrict g, float lr, float wd, float b1, float b2,
                                   float eps, float bc1, float bc2)
{
    for (size_t i = 0; i < n; i++) pb_adamw(&p[i], &m[i], &v[i], g[i], lr, wd, b1, b2, eps, bc1, bc2);
}

static pb_status cpu_optimizer(pb_device *dev, const pb_opt_args *a)
{
    (void)dev;
    if (a->kind == PB_OPT_SGD && a->momentum_ready) {
        sgd_ready_loop(a->n, a->params, a->m, a->lr, a->weight_decay);
    } else if (a->kind == PB_OPT_SGD) {
        sgd_loop(a->n, a->params, a->m, a->grads, a->lr, a->momentum, a->weight_decay);
    } else {
        float bc1 = (float)(1.0 - pow(a->beta1, a->step));
        float bc2 = (float)(1.0 - pow(a->beta2, a->step));
        adamw_loop(a->n, a->params, a->m, a->v, a->grads, a->lr, a->weight_decay, a->beta1, a->beta2,
                   a->eps, bc1, bc2);
    }
    if (a->params_compute && a->params_compute != (void *)a->params)
        memcpy(a->params_compute, a->params, a->n * sizeof(float));
    return PB_OK;
}

static pb_status cpu_axpy(pb_device *dev, size_t n, float alpha, const float *x, float *y)
{
    (void)dev;
    cblas_saxpy((blasint)n, alpha, x, 1, y, 1);
    return PB_OK;
}

static pb_status cpu_cast_params(pb_device *dev, void *dst, const float *src, size_t n)
{
    return cpu_copy(dev, dst, src, n * sizeof(float));
}

static pb_status cpu_mark_create(pb_device *dev, pb_mark **mark)
{
    (void)dev;
    *mark = calloc(1, sizeof **mark);
    return *mark ? PB_OK : pb_host_nomem(sizeof **mark);
}

static void cpu_mark_destroy(pb_device *dev, pb_mark *mark)
{
    (void)dev;
    free(mark);
}

static pb_status cpu_mark_record(pb_device *dev, pb_mark *mark)
{
    (void)dev;
    mark->ms = pb_now_ms();
    return PB_OK;
}

static pb_status cpu_mark_elapsed(pb_device *dev, const pb_mark *a, const pb_mark *b, double *ms)
{
    (void)dev;
    *ms = b->ms - a->ms;
    return PB_OK;
}

static pb_status cpu_synchronize(pb_device *dev)
{
    (void)dev;
    return PB_OK;
}

/* ------------------------------------------------------------------------ */
/* calibration and the GEMM-alone reference                                 */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Random values in [-1, 1): never time on zeros (or let values decay to
 * denormals), which would flatter or slow the GEMMs. */
static void fill_uniform(float *p, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        p[i] = (float)(z >> 40) * 0x1p-23f - 1.0f;
    }
}

/* One training step's GEMMs alone, in the order and on buffers laid out as
 * the step's: every layer its own weights and gradients, every activation
 * its own buffer, the ping-pong gradients of strategies/replica.c (sharing
 * one weight buffer would let it sit in cache and flatter the reference).
 * The top gradient comes from a fixed buffer so repeated sets cannot shrink
 * into denormals. */
static void gemm_step(const gemm_bufs *b, int n, const int *in, const int *out, int m, float dw_beta,
                      bool first_dx)
{
    size_t wo = 0, ao = 0;
    for (int l = 0; l < n; l++) {
        float *x = b->act + ao;
        gemm_forward(m, out[l], in[l], x, b->w + wo, 1.0f, x + (size_t)m * in[l]);
        wo += (size_t)in[l] * out[l];
        ao += (size_t)m * in[l];
    }
    int cur = 0;
    for (int l = n - 1; l >= 0; l--) {
        wo -= (size_t)in[l] * out[l];
        ao -= (size_t)m * in[l];
        const float *dy = l == n - 1 ? b->top : b->dz[cur];
        gemm_weight_grad(m, out[l], in[l], dy, b->act + ao, dw_beta, b->dw + wo);
        if (l == 0 && !first_dx) break; /* no input gradient below the first layer */
        gemm_input_grad(m, out[l], in[l], dy, b->w + wo, 0.0f, b->dz[cur ^ 1]);
        cur ^= 1;
    }
}

static void free_gemm_bufs(pb_device *dev)
{
    gemm_bufs *b = &dev->ref;
    float **all[] = {&b->w, &b->dw, &b->act, &b->top, &b->dz[0], &b->dz[1]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        cpu_free(dev, *all[i]);
        *all[i] = NULL;
    }
    b->w_elems = b->act_elems = b->dz_elems = 0;
}

/* Random-filled buffers at least this large, reused when they fit. */
static pb_status ensure_gemm_bufs(pb_device *dev, size_t w_elems, size_t act_elems, size_t dz_elems)
{
    pb_status st = PB_OK;
    gemm_bufs *b = &dev->ref;
    if (b->w_elems >= w_elems && b->act_elems >= act_elems && b->dz_elems >= dz_elems) return PB_OK;
    free_gemm_bufs(dev);
    /* the step's allocator, so both sides get the same page placement */
    PB_TRY(cpu_alloc(dev, w_elems * sizeof(float), (void **)&b->w));
    PB_TRY(cpu_alloc(dev, w_elems * sizeof(float), (void **)&b->dw));
    PB_TRY(cpu_alloc(dev, act_elems * sizeof(float), (void **)&b->act));
    float **grads[] = {&b->top, &b->dz[0], &b->dz[1]};
    for (size_t i = 0; i < sizeof grads / sizeof grads[0]; i++)
        PB_TRY(cpu_alloc(dev, dz_elems * sizeof(float), (void **)grads[i]));
    fill_uniform(b->w, w_elems, 1);
    fill_uniform(b->act, act_elems, 2);
    fill_uniform(b->top, dz_elems, 4);
    b->w_elems = w_elems;
    b->act_elems = act_elems;
    b->dz_elems = dz_elems;
    return PB_OK;
cleanup:
    free_gemm_bufs(dev);
    return st;
}

static pb_status cpu_gemm_reference(pb_device *dev, int n_layers, const int *in, const int *out, int m,
                                    float dw_beta, bool first_dx, int reps, double *ms)
{
    pb_status st = PB_OK;
    double t[64];
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    pb_gemm_ref_sizes z = pb_gemm_ref_size(n_layers, in, out, m);
    gemm_bufs *b = &dev->ref;
    bool fresh = b->w_elems < z.w_total || b->act_elems < z.act_total || b->dz_elems < z.grad;
    PB_TRY(ensure_gemm_bufs(dev, z.w_total, z.act_total, z.grad));
    if (fresh) gemm_step(b, n_layers, in, out, m, dw_beta, first_dx); /* warm-up: pages, BLAS buffers */
    for (int i = 0; i < reps; i++) {
        double t0 = pb_now_ms();
        gemm_step(b, n_layers, in, out, m, dw_beta, first_dx);
        t[i] = pb_now_ms() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    *ms = t[reps / 2];
cleanup:
    return st;
}

/* Square sgemm with the device's threads; 1024 is large enough for OpenBLAS
 * to reach its steady rate and small enough to take well under a second. */
static pb_status cpu_calibrate(pb_device *dev, double *tflops)
{
    pb_status st = PB_OK;
    const int n = 1024, reps = 5;
    float *a = NULL, *b = NULL, *c = NULL;
    double t[reps];
    size_t elems = (size_t)n * n;
    PB_TRY(cpu_alloc(dev, elems * sizeof(float), (void **)&a));
    PB_TRY(cpu_alloc(dev, elems * sizeof(float), (void **)&b));
    PB_TRY(cpu_alloc(dev, elems * sizeof(float), (void **)&c));
    fill_uniform(a, elems, 5);
    fill_uniform(b, elems, 6);
    for (int i = -1; i < reps; i++) {
        double t0 = pb_now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        if (i >= 0) t[i] = pb_now_ms() - t0;
    }
    qsort(t, reps, sizeof t[0], cmp_double);
    *tflops = 2.0 * n * (double)n * n / (t[reps / 2] * 1e-3) / 1e12;
cleanup:
    cpu_free(dev, a);
    cpu_free(dev, b);
    cpu_free(dev, c);
    return st;
}

const pb_backend pb_backend_cpu = {
    .name = "cpu",
    .host_is_device = true,
    .is_gpu = false,
    .momentum_in_wgrad = true,
    .description = "host CPU: CBLAS GEMMs (OpenBLAS), C loops, CLOCK_MONOTONIC timing",
    .device_count = cpu_device_count,
    .open = cpu_open,
    .close = cpu_close,
    .info = cpu_info,
    .act_bytes = cpu_act_bytes,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .host_alloc = cpu_alloc,
    .host_free = cpu_free,
    .zero = cpu_zero,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .copy_peer = cpu_copy_peer,
    .prefetch = cpu_copy,
    .prefetch_wait = cpu_prefetch_wait,
    .upload_act = cpu_copy_act_in,
    .download_act = cpu_copy_act_out,
    .peak_mem_mb = cpu_peak_mem_mb,
    .gemm_fwd = cpu_gemm_fwd,
    .gemm_bwd = cpu_gemm_bwd,
    .bias_act = cpu_bias_act,
    .relu_bwd = cpu_relu_bwd,
    .softmax_xent = cpu_softmax_xent,
    .optimizer = cpu_optimizer,
    .axpy = cpu_axpy,
    .cast_params = cpu_cast_params,
    .mark_create = cpu_mark_create,
    .mark_destroy = cpu_mark_destroy,
    .mark_record = cpu_mark_record,
    .mark_elapsed_ms = cpu_mark_elapsed,
    .synchronize = cpu_synchronize,
    .calibrate = cpu_calibrate,
    .gemm_reference = cpu_gemm_reference,
    .transformer = &pb_cpu_transformer_ops,
};
