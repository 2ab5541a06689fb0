/* CPU backend: CBLAS (OpenBLAS) GEMMs, C loops for the rest, the clock for
 * timing. Everything runs synchronously on the calling thread; the BLAS uses
 * cfg->threads threads. Activations are fp32. */
#define _GNU_SOURCE
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../harness/timer.h"
#include "../backend.h"
#include "../elementwise.h"
#include "blas_info.h"

#define CPU_ALIGN 64

struct pb_device {
    int ordinal;
    int threads;
    size_t bytes_now, bytes_peak;
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

static pb_status cpu_open(const pb_config *cfg, int ordinal, pb_device **out)
{
    pb_device *dev = calloc(1, sizeof *dev);
    if (!dev) return pb_error(PB_ERR_NOMEM, "host allocation of %zu bytes failed", sizeof *dev);
    dev->ordinal = ordinal;
    dev->threads = cfg->threads;
    pb_blas_set_threads(cfg->threads);
    *out = dev;
    return PB_OK;
}

static void cpu_close(pb_device *dev) { free(dev); }

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

/* The CPU's ReLU backward reads the stored activation (a > 0), no mask. */
static size_t cpu_aux_bytes(const pb_device *dev, int m, int n)
{
    (void)dev;
    (void)m;
    (void)n;
    return 0;
}

static pb_status cpu_alloc(pb_device *dev, size_t bytes, void **ptr)
{
    size_t total = sizeof(block_header) + ((bytes + CPU_ALIGN - 1) / CPU_ALIGN) * CPU_ALIGN;
    block_header *h = aligned_alloc(CPU_ALIGN, total);
    if (!h) {
        long avail = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        return pb_error(PB_ERR_NOMEM, "host allocation of %zu bytes failed (%.0f MB free)", bytes,
                        avail > 0 ? (double)avail * (double)page / 1048576.0 : 0.0);
    }
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

static pb_status cpu_copy_act_in(pb_device *dev, void *dst, const float *src, size_t elems)
{
    return cpu_copy(dev, dst, src, elems * sizeof(float));
}

static pb_status cpu_copy_act_out(pb_device *dev, float *dst, const void *src, size_t elems)
{
    return cpu_copy(dev, dst, src, elems * sizeof(float));
}

static double cpu_peak_mem_mb(const pb_device *dev) { return (double)dev->bytes_peak / 1048576.0; }

static pb_status cpu_linear_fwd(pb_device *dev, const pb_linear *l)
{
    (void)dev;
    float *restrict y = l->y;
    const float *restrict b = l->b;
    /* Pre-fill y with the bias and let the GEMM accumulate (beta = 1): the
     * bias costs one streaming write instead of an extra read-modify-write. */
    for (int i = 0; i < l->m; i++) memcpy(y + (size_t)i * l->n, b, (size_t)l->n * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, l->m, l->n, l->k, 1.0f, l->x, l->k, l->w,
                l->k, 1.0f, y, l->n);
    if (l->relu) {
        size_t total = (size_t)l->m * (size_t)l->n;
        for (size_t i = 0; i < total; i++) y[i] = pb_relu(y[i]);
    }
    return PB_OK;
}

/* out[j] = sum over rows of a[i, j] */
static void column_sums(int m, int n, const float *restrict a, float *restrict out)
{
    memset(out, 0, (size_t)n * sizeof(float));
    for (int i = 0; i < m; i++) {
        const float *restrict row = a + (size_t)i * n;
        for (int j = 0; j < n; j++) out[j] += row[j];
    }
}

static pb_status cpu_linear_bwd(pb_device *dev, const pb_linear_grad *g)
{
    (void)dev;
    const float *dy = g->dy;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->n, g->k, g->m, 1.0f, dy, g->n, g->x,
                g->k, 0.0f, g->dw, g->k);
    if (g->db) column_sums(g->m, g->n, dy, g->db);
    if (!g->dx) return PB_OK;
    float *restrict dx = g->dx;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->m, g->k, g->n, 1.0f, dy, g->n, g->w,
                g->k, 0.0f, dx, g->k);
    if (!g->x_relu) return PB_OK;
    /* DRELU_BGRAD: mask by the previous layer's ReLU and sum its bias grad in
     * the same pass over dx. */
    const float *restrict x = g->x;
    float *restrict dbp = g->db_prev;
    if (dbp) memset(dbp, 0, (size_t)g->k * sizeof(float));
    for (int i = 0; i < g->m; i++) {
        float *restrict row = dx + (size_t)i * g->k;
        const float *restrict xr = x + (size_t)i * g->k;
        for (int j = 0; j < g->k; j++) row[j] = pb_relu_backward(row[j], xr[j]);
        if (dbp)
            for (int j = 0; j < g->k; j++) dbp[j] += row[j];
    }
    return PB_OK;
}

static pb_status cpu_softmax_xent(pb_device *dev, int m, int c, const void *logits,
                                  const int32_t *labels, float scale, float *loss_sum,
                                  void *dlogits)
{
    (void)dev;
    double loss = 0.0;
    for (int i = 0; i < m; i++) {
        const float *restrict z = (const float *)logits + (size_t)i * c;
        float *restrict d = (float *)dlogits + (size_t)i * c;
        int label = labels[i];
        if (label < 0 || label >= c)
            return pb_error(PB_ERR_INTERNAL, "label %d of row %d outside [0, %d)", label, i, c);
        float mx = z[0];
        for (int j = 1; j < c; j++) mx = z[j] > mx ? z[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < c; j++) sum += expf(z[j] - mx);
        float inv = 1.0f / sum;
        loss += (double)(logf(sum) - (z[label] - mx));
        for (int j = 0; j < c; j++) d[j] = pb_xent_grad(z[j], mx, inv, j == label, scale);
    }
    *loss_sum += (float)(loss * scale);
    return PB_OK;
}

static pb_status cpu_optimizer(pb_device *dev, const pb_opt_args *a)
{
    (void)dev;
    float *restrict p = a->params;
    float *restrict m = a->m;
    const float *restrict g = a->grads;
    if (a->kind == PB_OPT_SGD) {
        for (size_t i = 0; i < a->n; i++)
            pb_sgd_momentum(&p[i], &m[i], g[i], a->lr, a->momentum, a->weight_decay);
    } else {
        float *restrict v = a->v;
        float bc1 = (float)(1.0 - pow(a->beta1, a->step));
        float bc2 = (float)(1.0 - pow(a->beta2, a->step));
        for (size_t i = 0; i < a->n; i++)
            pb_adamw(&p[i], &m[i], &v[i], g[i], a->lr, a->weight_decay, a->beta1, a->beta2, a->eps,
                     bc1, bc2);
    }
    if (a->params_compute && a->params_compute != (void *)p)
        memcpy(a->params_compute, p, a->n * sizeof(float));
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
    return *mark ? PB_OK : pb_error(PB_ERR_NOMEM, "host allocation of %zu bytes failed", sizeof **mark);
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

const pb_backend pb_backend_cpu = {
    .name = "cpu",
    .description = "host CPU: CBLAS GEMMs (OpenBLAS), C loops, CLOCK_MONOTONIC timing",
    .device_count = cpu_device_count,
    .open = cpu_open,
    .close = cpu_close,
    .info = cpu_info,
    .act_bytes = cpu_act_bytes,
    .aux_bytes = cpu_aux_bytes,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .host_alloc = cpu_alloc,
    .host_free = cpu_free,
    .zero = cpu_zero,
    .upload = cpu_copy,
    .download = cpu_copy,
    .upload_act = cpu_copy_act_in,
    .download_act = cpu_copy_act_out,
    .peak_mem_mb = cpu_peak_mem_mb,
    .linear_fwd = cpu_linear_fwd,
    .linear_bwd = cpu_linear_bwd,
    .softmax_xent = cpu_softmax_xent,
    .optimizer = cpu_optimizer,
    .axpy = cpu_axpy,
    .cast_params = cpu_cast_params,
    .mark_create = cpu_mark_create,
    .mark_destroy = cpu_mark_destroy,
    .mark_record = cpu_mark_record,
    .mark_elapsed_ms = cpu_mark_elapsed,
    .synchronize = cpu_synchronize,
};
