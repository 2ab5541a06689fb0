/* The cuda backend: one GPU as a pb_backend, with cuBLASLt for the Linear
 * layers (bias, ReLU and their gradients fused into the GEMM epilogues) and
 * small CUDA kernels for the rest. Split the way llm.c's llmc/ is: each
 * .cuh holds one family of kernels and then their launchers, included here
 * so that the backend stays one translation unit (every helper static, no
 * relocatable device code):
 *   cuda_common.cuh  device state, scalar device helpers, host helpers
 *   loss.cuh         softmax cross-entropy
 *   elementwise.cuh  bias/ReLU fallback, masked column sums, conversions, axpy
 *   optimizer.cuh    SGD/AdamW update and the side stream it may run on
 *   matmul.cuh       the cuBLASLt plan cache and the Linear layers' GEMMs
 *   calibrate.cuh    calibration and the GEMM-alone reference
 *   gpt_ops.cuh      the transformer ops table, from gpt_state.cuh (their
 *                    scratch, batched-GEMM plans, reductions), encoder.cuh,
 *                    layernorm.cuh (+ residual), attention.cuh, classifier.cuh
 * This file keeps the devices, memory, copies, peer access, timing marks and
 * graphs, and the ops table. */
#include <cuda_runtime.h>
#include <cublasLt.h>
#include <nccl.h>

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backend.h"
#include "../driver_version.h"
#include "../gpu_check.h"
#include "cuda_check.h"
#include "cuda_device.h"

#include "cuda_common.cuh"
#include "loss.cuh"
#include "elementwise.cuh"
#include "optimizer.cuh"
#include "matmul.cuh"
#include "calibrate.cuh"
#include "gpt_ops.cuh"

/* ------------------------------------------------------------------------ */
/* ops: devices                                                             */

static void put_why(char *why, size_t why_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put_why(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;
    if (!why || !why_len) return;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

static int cuda_device_count(char *why, size_t why_len)
{
    int n = 0, drv = 0, rt = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");

    if (e == cudaSuccess && n > 0) {
        put_why(why, why_len, "%s", "");
        return n;
    }
    (void)cudaGetLastError();
    /* both report 0 rather than fail when there is no driver at all */
    (void)cudaDriverGetVersion(&drv);
    (void)cudaRuntimeGetVersion(&rt);

    if (e == cudaErrorInsufficientDriver && drv == 0) {
        put_why(why, why_len, "no NVIDIA driver found (libcuda.so could not be loaded)");
    } else if (e == cudaErrorInsufficientDriver) {
        put_why(why, why_len,
                "the NVIDIA driver supports CUDA %d.%d, older than the CUDA %d.%d runtime this "
                "binary was built with; upgrade the driver",
                drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
    } else if ((e == cudaSuccess || e == cudaErrorNoDevice) && cvd) {
        put_why(why, why_len, "no CUDA device visible: CUDA_VISIBLE_DEVICES=\"%s\" hides them all",
                cvd);
    } else if (e == cudaSuccess || e == cudaErrorNoDevice) {
        if (drv == 0)
            put_why(why, why_len, "no NVIDIA driver found");
        else
            put_why(why, why_len, "no CUDA-capable device detected (driver supports CUDA %d.%d)",
                    drv / 1000, (drv % 1000) / 10);
    } else {
        put_why(why, why_len, "cudaGetDeviceCount failed: %s (%s)", cudaGetErrorString(e),
                cudaGetErrorName(e));
    }
    return 0;
}

static void cuda_close(pb_device *dev)
{
    cudaGraph_t g = NULL;
    if (!dev) return;
    (void)cudaSetDevice(dev->ordinal);
    if (dev->capturing && cudaStreamEndCapture(dev->stream, &g) == cudaSuccess && g)
        cudaGraphDestroy(g);
    if (dev->stream) (void)cudaStreamSynchronize(dev->stream);
    if (dev->copy_stream) (void)cudaStreamSynchronize(dev->copy_stream);
    if (dev->side_stream) (void)cudaStreamSynchronize(dev->side_stream);
    for (int i = 0; i < PLAN_CAP; i++)
        if (dev->plans[i].used) plan_release(&dev->plans[i]);
    if (dev->graph) cudaGraphExecDestroy(dev->graph);
    gpt_state_free(dev);
    /* free() needs the device, so nothing can free these after close */
    for (size_t i = 0; i < dev->n_allocs; i++) cudaFree(dev->allocs[i].ptr);
    free(dev->allocs);
    cudaFree(dev->staging);
    cudaFree(dev->bias16);
    cudaFree(dev->workspace);
    if (dev->lt) cublasLtDestroy(dev->lt);
    if (dev->prefetched) cudaEventDestroy(dev->prefetched);
    if (dev->copy_stream) cudaStreamDestroy(dev->copy_stream);
    if (dev->side_fork) cudaEventDestroy(dev->side_fork);
    if (dev->side_join) cudaEventDestroy(dev->side_join);
    if (dev->side_stream) cudaStreamDestroy(dev->side_stream);
    if (dev->stream) cudaStreamDestroy(dev->stream);
    (void)cudaGetLastError();
    free(dev);
}

static pb_status cuda_open(const pb_device_opts *opts, int ordinal, pb_device **out)
{
    pb_status st = PB_OK;
    pb_device *dev = NULL;
    char why[256];
    int count;
    struct cudaDeviceProp prop;

    *out = NULL;
    count = cuda_device_count(why, sizeof why);
    PB_REQUIRE(count > 0, PB_ERR_UNAVAILABLE, "cuda backend: %s", why);
    PB_REQUIRE(ordinal >= 0 && ordinal < count, PB_ERR_UNAVAILABLE,
               "cuda device %d asked for, but %d visible", ordinal, count);
    /* PB_ALLOC's void* assignment is C, not C++ */
    dev = (pb_device *)calloc(1, sizeof *dev);
    PB_CHECK_ALLOC(dev, sizeof *dev);
    dev->ordinal = ordinal;
    dev->mem_limit = opts ? opts->mem_limit : 0.0;
    dev->precision = opts ? opts->precision : PB_FP32;
    PB_CUDA_CHECK(cudaSetDevice(ordinal));
    PB_CUDA_CHECK(cudaGetDeviceProperties(&prop, ordinal));
    /* bf16 tensor-core GEMMs and tf32 need Ampere */
    PB_REQUIRE(dev->precision == PB_FP32 || prop.major >= 8, PB_ERR_UNAVAILABLE,
               "--precision %s needs compute capability 8.0 or newer; cuda:%d (%s) is %d.%d",
               pb_precision_name(dev->precision), ordinal, prop.name, prop.major, prop.minor);
    dev->sm_count = prop.multiProcessorCount;
    /* non-blocking: never serialised behind the legacy default stream. The
     * side stream (the optimizer overlapping backward) at the lowest
     * priority, so that waiting GEMM blocks get each SM that frees up first:
     * on an H100, mlp-l bf16 took 7.82 ms a step against 7.96 at equal
     * priorities and 7.95 with no overlap (docs/gpu.md) */
    {
        int least = 0, greatest = 0;
        PB_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
        PB_CUDA_CHECK(cudaStreamCreateWithPriority(&dev->stream, cudaStreamNonBlocking, greatest));
        PB_CUDA_CHECK(cudaStreamCreateWithPriority(&dev->side_stream, cudaStreamNonBlocking, least));
    }
    PB_CUDA_CHECK(cudaStreamCreateWithFlags(&dev->copy_stream, cudaStreamNonBlocking));
    PB_CUDA_CHECK(cudaEventCreateWithFlags(&dev->prefetched, cudaEventDisableTiming));
    PB_CUDA_CHECK(cudaEventCreateWithFlags(&dev->side_fork, cudaEventDisableTiming));
    PB_CUDA_CHECK(cudaEventCreateWithFlags(&dev->side_join, cudaEventDisableTiming));
    PB_CUBLAS_CHECK(cublasLtCreate(&dev->lt));
    PB_CUDA_CHECK(cudaMalloc(&dev->workspace, WORKSPACE_BYTES));
    if (is_bf16(dev)) {
        /* sized now so that no layer grows it mid-run (a graph capture could
         * not allocate); ensure_bias16 still grows it for custom shapes */
        size_t need = 1u << 16;
        if (opts && opts->max_width > need) need = opts->max_width;
        PB_TRY(ensure_bias16(dev, need));
    }
    *out = dev;
    dev = NULL;
cleanup:
    if (dev) cuda_close(dev);
    return st;
}

/* The kernel module's version from /proc/driver/nvidia/version (parsed by
 * pb_parse_driver_version, which the CPU tests exercise). */
static bool driver_module_version(char *out, size_t len)
{
    char line[512];
    bool found = false;
    FILE *f = fopen("/proc/driver/nvidia/version", "r");
    if (!f) return false;
    if (fgets(line, sizeof line, f)) found = pb_parse_driver_version(line, out, len);
    fclose(f);
    return found;
}

static pb_status cuda_info(pb_device *dev, pb_device_info *out)
{
    pb_status st = PB_OK;
    struct cudaDeviceProp prop;
    int drv = 0, rt = 0;
    size_t v;

    memset(out, 0, sizeof *out);
    /* no device: device 0's facts, read without creating a context (a
     * sweep compares them with its rows before it runs anything) */
    if (dev) PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev ? dev->ordinal : 0));
    PB_CUDA_CHECK(cudaDriverGetVersion(&drv));
    PB_CUDA_CHECK(cudaRuntimeGetVersion(&rt));
    /* cudaDeviceProp.name is 256 bytes; every real name fits in 127 */
    snprintf(out->name, sizeof out->name, "%.127s", prop.name);
    /* the kernel module's version (what an upgrade changes), else the CUDA
     * version the driver supports */
    if (!driver_module_version(out->driver, sizeof out->driver))
        snprintf(out->driver, sizeof out->driver, "%d.%d", drv / 1000, (drv % 1000) / 10);
    snprintf(out->runtime, sizeof out->runtime, "%d.%d", rt / 1000, (rt % 1000) / 10);
    snprintf(out->blas, sizeof out->blas, "cuBLASLt");
    /* the library actually loaded, not the header built against */
    v = cublasLtGetVersion();
    snprintf(out->blas_version, sizeof out->blas_version, "%zu.%zu.%zu", v / 10000,
             (v % 10000) / 100, v % 100);
    out->total_mem_mb = (double)prop.totalGlobalMem / MIB;
    /* the link and clocks of the device the row describes (kernels/gpu_check.h) */
    {
        char bus[32];
        pb_gpu_facts facts;
        if (cudaDeviceGetPCIBusId(bus, (int)sizeof bus, dev->ordinal) == cudaSuccess) {
            pb_gpu_facts_read(bus, &facts);
            pb_gpu_check_text(&facts, out->gpu_check, sizeof out->gpu_check);
        }
    }
    /* the NCCL library loaded now, which is what an upgrade changes (the
     * header's NCCL_VERSION_CODE is only what we compiled against) */
    {
        int nv = 0;
        if (ncclGetVersion(&nv) == ncclSuccess && nv > 0)
            snprintf(out->nccl, sizeof out->nccl, "%d.%d.%d", nv / 10000, (nv % 10000) / 100, nv % 100);
    }
cleanup:
    return st;
}

/* ------------------------------------------------------------------------ */
/* ops: memory                                                              */

static size_t cuda_act_bytes(const pb_device *dev, size_t elems)
{
    return elems * (is_bf16(dev) ? sizeof(bf16) : sizeof(float));
}

/* The device's context is created here if it is not yet: the run creates
 * it anyway, and the free figure then leaves it out. */
static pb_status cuda_mem_info(int ordinal, size_t *free_b, size_t *total_b)
{
    pb_status st = PB_OK;
    *free_b = *total_b = 0;
    PB_CUDA_CHECK(cudaSetDevice(ordinal));
    PB_CUDA_CHECK(cudaMemGetInfo(free_b, total_b));
cleanup:
    return st;
}

static pb_status cuda_alloc(pb_device *dev, size_t bytes, void **ptr)
{
    pb_status st = PB_OK;
    void *p = NULL;
    cudaError_t e;
    size_t free_b = 0, total_b = 0;

    *ptr = NULL;
    if (bytes == 0) return PB_OK;
    PB_TRY(pb_backend_check_limit(dev->ordinal, dev->mem_limit, dev->bytes_now, bytes));
    PB_TRY(use_device(dev));
    if (dev->n_allocs == dev->cap_allocs) {
        size_t cap = dev->cap_allocs ? dev->cap_allocs * 2 : 64;
        alloc_rec *grown = (alloc_rec *)realloc(dev->allocs, cap * sizeof *grown);
        PB_CHECK_ALLOC(grown, cap * sizeof *grown);
        dev->allocs = grown;
        dev->cap_allocs = cap;
    }
    e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError(); /* not sticky: keep it out of the next launch check */
        p = NULL;
        (void)cudaMemGetInfo(&free_b, &total_b);
        (void)cudaGetLastError();
        st = pb_user_error(PB_ERR_NOMEM,
                      "cudaMalloc of %zu bytes (%.1f MiB) on cuda:%d failed: %.1f MiB free of "
                      "%.1f MiB",
                      bytes, bytes / MIB, dev->ordinal, free_b / MIB, total_b / MIB);
        goto cleanup;
    }
    PB_CUDA_CHECK(e);
    PB_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, dev->stream));
    /* other streams (a comm library's) may touch the buffer before ours
     * orders them, and alloc is set-up time: make the zeros real now */
    PB_CUDA_CHECK(cudaStreamSynchronize(dev->stream));
    dev->allocs[dev->n_allocs].ptr = p;
    dev->allocs[dev->n_allocs].bytes = bytes;
    dev->n_allocs++;
    dev->bytes_now += bytes;
    if (dev->bytes_now > dev->bytes_peak) dev->bytes_peak = dev->bytes_now;
    *ptr = p;
    p = NULL;
cleanup:
    if (p) cudaFree(p);
    return st;
}

static void cuda_free(pb_device *dev, void *ptr)
{
    if (!ptr) return;
    (void)use_device(dev);
    for (size_t i = 0; i < dev->n_allocs; i++) {
        if (dev->allocs[i].ptr == ptr) {
            dev->bytes_now -= dev->allocs[i].bytes;
            dev->allocs[i] = dev->allocs[--dev->n_allocs];
            break;
        }
    }
    cudaFree(ptr);
}

/* dev may be NULL: the loader pins its buffers before any device is open.
 * Portable, so that every device's context sees the memory as pinned (dp and
 * mp copy one host batch to several GPUs). */
static pb_status cuda_host_alloc(pb_device *dev, size_t bytes, void **ptr)
{
    pb_status st = PB_OK;
    cudaError_t e;
    *ptr = NULL;
    if (bytes == 0) return PB_OK;
    if (dev) PB_TRY(use_device(dev));
    e = cudaHostAlloc(ptr, bytes, cudaHostAllocPortable);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        *ptr = NULL;
        st = pb_user_error(PB_ERR_NOMEM, "cudaHostAlloc of %zu bytes (%.1f MiB) of pinned memory failed",
                      bytes, bytes / MIB);
        goto cleanup;
    }
    PB_CUDA_CHECK(e);
cleanup:
    return st;
}

static void cuda_host_free(pb_device *dev, void *ptr)
{
    if (!ptr) return;
    if (dev) (void)use_device(dev);
    cudaFreeHost(ptr);
}

static pb_status cuda_zero(pb_device *dev, void *ptr, size_t bytes)
{
    pb_status st = PB_OK;
    if (bytes == 0) return PB_OK;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, dev->stream));
cleanup:
    return st;
}

/* Asynchronous on the stream: from pinned memory the call returns before the
 * copy has run, so the host buffer must not be rewritten before a later
 * synchronize (pageable sources are staged by the driver before return). */
/* Every copy of the backend: enqueued on `stream`, optionally waited for. */
static pb_status copy_on(pb_device *dev, void *dst, const void *src, size_t bytes,
                         cudaMemcpyKind kind, cudaStream_t stream, bool wait)
{
    pb_status st = PB_OK;
    if (bytes == 0 || dst == src) return PB_OK;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream));
    if (wait) PB_CUDA_CHECK(cudaStreamSynchronize(stream));
cleanup:
    return st;
}

static pb_status cuda_upload(pb_device *dev, void *dst, const void *src, size_t bytes)
{
    return copy_on(dev, dst, src, bytes, cudaMemcpyHostToDevice, dev->stream, false);
}

static pb_status cuda_download(pb_device *dev, void *dst, const void *src, size_t bytes)
{
    return copy_on(dev, dst, src, bytes, cudaMemcpyDeviceToHost, dev->stream, true);
}

static pb_status cuda_copy(pb_device *dev, void *dst, const void *src, size_t bytes)
{
    return copy_on(dev, dst, src, bytes, cudaMemcpyDeviceToDevice, dev->stream, false);
}

/* Peer copy on the destination's stream, ordered by the caller's marks
 * (backend.h): recording an event on the source's stream here, as this once
 * did, would order the copy after everything the source has enqueued by the
 * time the receiver gets to it (all of an mp stage's forwards), not after
 * the data. cudaMemcpyPeerAsync goes over NVLink/PCIe directly where peer
 * access is enabled (pb_p2p_setup), else through the host. */
static pb_status cuda_copy_peer(pb_device *dst_dev, void *dst, pb_device *src_dev, const void *src, size_t bytes)
{
    pb_status st = PB_OK;
    if (bytes == 0) return PB_OK;
    PB_TRY(use_device(dst_dev));
    if (dst_dev->ordinal == src_dev->ordinal)
        PB_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, dst_dev->stream));
    else
        PB_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev->ordinal, src, src_dev->ordinal, bytes, dst_dev->stream));
cleanup:
    return st;
}

/* NVML's word on whether a and b talk over NVLink: 1 yes, 0 no, -1 unknown
 * (no libnvidia-ml, or it failed). Loaded at run time so that the build and
 * machines without it need nothing; CUDA and NVML number devices
 * differently, so they are matched by PCI bus id. */
static int nvml_nvlink(int a, int b)
{
    typedef int (*init_fn)(void);
    typedef int (*handle_fn)(const char *bus, void **dev);
    typedef int (*p2p_fn)(void *d1, void *d2, int index, int *status);
    const int caps_index_nvlink = 2, status_ok = 0; /* nvmlGpuP2PCapsIndex_t, nvmlGpuP2PStatus_t */
    int out = -1;
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return -1;
    init_fn init = (init_fn)dlsym(lib, "nvmlInit_v2"), shutdown = (init_fn)dlsym(lib, "nvmlShutdown");
    handle_fn handle = (handle_fn)dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2");
    p2p_fn p2p = (p2p_fn)dlsym(lib, "nvmlDeviceGetP2PStatus");
    if (init && shutdown && handle && p2p && init() == 0) {
        char bus_a[32], bus_b[32];
        void *da = NULL, *db = NULL;
        int status = -1;
        if (cudaDeviceGetPCIBusId(bus_a, sizeof bus_a, a) == cudaSuccess &&
            cudaDeviceGetPCIBusId(bus_b, sizeof bus_b, b) == cudaSuccess && handle(bus_a, &da) == 0 &&
            handle(bus_b, &db) == 0 && p2p(da, db, caps_index_nvlink, &status) == 0)
            out = status == status_ok;
        shutdown();
    }
    (void)cudaGetLastError(); /* a failed bus-id query is not the run's error */
    dlclose(lib);
    return out;
}

/* The driver's view of the link a -> b for pb_p2p_setup. */
static pb_status cuda_peer_facts(int a, int b, pb_p2p_facts *out)
{
    pb_status st = PB_OK;
    int can = 0, atomic = 0, rank = 0;
    memset(out, 0, sizeof *out);
    PB_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, a, b));
    if (can) {
        PB_CUDA_CHECK(cudaDeviceGetP2PAttribute(&atomic, cudaDevP2PAttrNativeAtomicSupported, a, b));
        PB_CUDA_CHECK(cudaDeviceGetP2PAttribute(&rank, cudaDevP2PAttrPerformanceRank, a, b));
    }
    out->can_access = can != 0;
    out->native_atomic = atomic != 0;
    out->perf_rank = rank;
    out->nvlink = can ? nvml_nvlink(a, b) : -1;
cleanup:
    return st;
}

/* Device a may access b's memory. Enabling is per context and process-wide:
 * a second dp/mp in the process (--verify's reference, tests) finds it
 * enabled, which cudaDeviceEnablePeerAccess reports as an error that also
 * stays as the thread's last error; both are cleared here. */
static pb_status cuda_peer_enable(int a, int b)
{
    pb_status st = PB_OK;
    int cur = -1;
    PB_CUDA_CHECK(cudaGetDevice(&cur));
    PB_CUDA_CHECK(cudaSetDevice(a));
    {
        cudaError_t e = cudaDeviceEnablePeerAccess(b, 0);
        if (e == cudaErrorPeerAccessAlreadyEnabled) {
            (void)cudaGetLastError();
            e = cudaSuccess;
        }
        if (e == cudaErrorTooManyPeers) { /* out of peer slots: the pair is host-staged (p2p.h) */
            (void)cudaGetLastError();
            (void)cudaSetDevice(cur);
            return pb_user_error(PB_ERR_UNAVAILABLE, "%s", cudaGetErrorString(e));
        }
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            (void)cudaSetDevice(cur);
            return pb_error(PB_ERR_BACKEND, "cudaDeviceEnablePeerAccess(cuda:%d -> cuda:%d) failed: %s (%s)", a, b,
                            cudaGetErrorString(e), cudaGetErrorName(e));
        }
    }
    PB_CUDA_CHECK(cudaSetDevice(cur));
cleanup:
    return st;
}

static const pb_p2p_driver cuda_peer = {.facts = cuda_peer_facts, .enable = cuda_peer_enable};

/* Only pinned sources overlap (pageable ones are staged synchronously by the
 * driver). Nothing orders the copy after compute work that still reads dst:
 * the caller double-buffers, as the loader does. */
static pb_status cuda_prefetch(pb_device *dev, void *dst, const void *src, size_t bytes)
{
    return copy_on(dev, dst, src, bytes, cudaMemcpyHostToDevice, dev->copy_stream, false);
}

/* An event marks everything issued on the copy stream so far; the compute
 * stream waits for it on the device, the host does not block. */
static pb_status cuda_prefetch_wait(pb_device *dev)
{
    pb_status st = PB_OK;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaEventRecord(dev->prefetched, dev->copy_stream));
    PB_CUDA_CHECK(cudaStreamWaitEvent(dev->stream, dev->prefetched, 0));
cleanup:
    return st;
}

/* bf16 converts on the device (half the bytes over PCIe on the way down is
 * not worth a host conversion loop; the way up sends fp32 and converts in one
 * kernel) through the persistent fp32 staging buffer. */
static pb_status cuda_upload_act(pb_device *dev, void *dst, const float *src, size_t elems)
{
    pb_status st = PB_OK;
    if (elems == 0) return PB_OK;
    if (!is_bf16(dev)) return cuda_upload(dev, dst, src, elems * sizeof(float));
    PB_TRY(use_device(dev));
    PB_TRY(ensure_staging(dev, elems * sizeof(float)));
    PB_CUDA_CHECK(cudaMemcpyAsync(dev->staging, src, elems * sizeof(float), cudaMemcpyHostToDevice,
                                  dev->stream));
    PB_TRY(launch_to_act(dev, elems, dev->staging, dst));
cleanup:
    return st;
}

static pb_status cuda_download_act(pb_device *dev, float *dst, const void *src, size_t elems)
{
    pb_status st = PB_OK;
    if (elems == 0) return PB_OK;
    if (!is_bf16(dev)) return cuda_download(dev, dst, src, elems * sizeof(float));
    PB_TRY(use_device(dev));
    PB_TRY(ensure_staging(dev, elems * sizeof(float)));
    PB_TRY(launch_from_act(dev, elems, src, dev->staging));
    PB_CUDA_CHECK(cudaMemcpyAsync(dst, dev->staging, elems * sizeof(float), cudaMemcpyDeviceToHost,
                                  dev->stream));
    PB_CUDA_CHECK(cudaStreamSynchronize(dev->stream));
cleanup:
    return st;
}

static double cuda_peak_mem_mb(const pb_device *dev) { return (double)dev->bytes_peak / MIB; }

/* ------------------------------------------------------------------------ */
/* ops: timing and graphs                                                   */

static pb_status cuda_mark_create(pb_device *dev, pb_mark **mark)
{
    pb_status st = PB_OK;
    pb_mark *mk = NULL;
    *mark = NULL;
    PB_TRY(use_device(dev));
    mk = (pb_mark *)calloc(1, sizeof *mk);
    PB_CHECK_ALLOC(mk, sizeof *mk);
    PB_CUDA_CHECK(cudaEventCreate(&mk->ev));
    *mark = mk;
    mk = NULL;
cleanup:
    free(mk);
    return st;
}

static void cuda_mark_destroy(pb_device *dev, pb_mark *mark)
{
    if (!mark) return;
    (void)use_device(dev);
    cudaEventDestroy(mark->ev);
    free(mark);
}

static pb_status cuda_mark_record(pb_device *dev, pb_mark *mark)
{
    pb_status st = PB_OK;
    PB_TRY(use_device(dev));
    /* inside a capture a plain record only orders captured work; External
     * makes it a node of the graph, recorded at every replay, so the phase
     * marks time the replayed step */
    PB_CUDA_CHECK(cudaEventRecordWithFlags(mark->ev, dev->stream,
                                           dev->capturing ? cudaEventRecordExternal
                                                          : cudaEventRecordDefault));
cleanup:
    return st;
}

static pb_status cuda_mark_wait(pb_device *dev, const pb_mark *mark)
{
    pb_status st = PB_OK;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaStreamWaitEvent(dev->stream, mark->ev, 0));
cleanup:
    return st;
}

static pb_status cuda_mark_elapsed_ms(pb_device *dev, const pb_mark *a, const pb_mark *b, double *ms)
{
    pb_status st = PB_OK;
    float f = 0.0f;
    *ms = 0.0;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaEventElapsedTime(&f, a->ev, b->ev));
    *ms = f;
cleanup:
    return st;
}

static pb_status cuda_synchronize(pb_device *dev)
{
    pb_status st = PB_OK;
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaStreamSynchronize(dev->stream));
cleanup:
    return st;
}

/* Thread-local capture: with a host thread per device (dp), global mode would
 * let one thread's cudaMalloc or synchronize invalidate another's capture. */
static pb_status cuda_capture_begin(pb_device *dev)
{
    pb_status st = PB_OK;
    PB_REQUIRE(!dev->capturing, PB_ERR_INTERNAL, "capture_begin while already capturing");
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaStreamBeginCapture(dev->stream, cudaStreamCaptureModeThreadLocal));
    dev->capturing = true;
cleanup:
    return st;
}

static pb_status cuda_capture_end(pb_device *dev)
{
    pb_status st = PB_OK;
    cudaGraph_t g = NULL;
    PB_REQUIRE(dev->capturing, PB_ERR_INTERNAL, "capture_end without capture_begin");
    PB_TRY(use_device(dev));
    dev->capturing = false;
    PB_CUDA_CHECK(cudaStreamEndCapture(dev->stream, &g));
    if (dev->graph) {
        PB_CUDA_CHECK(cudaGraphExecDestroy(dev->graph));
        dev->graph = NULL;
    }
    PB_CUDA_CHECK(cudaGraphInstantiate(&dev->graph, g, 0));
cleanup:
    if (g) cudaGraphDestroy(g);
    return st;
}

static pb_status cuda_replay(pb_device *dev)
{
    pb_status st = PB_OK;
    PB_REQUIRE(dev->graph, PB_ERR_INTERNAL, "replay without a captured graph");
    PB_TRY(use_device(dev));
    PB_CUDA_CHECK(cudaGraphLaunch(dev->graph, dev->stream));
cleanup:
    return st;
}

/* ------------------------------------------------------------------------ */
/* the ops table                                                            */

/* Designated, in declaration order (C++20 syntax, accepted by nvcc in
 * C++17 mode without a warning): a slot added to or moved in backend.h then
 * fails to compile here instead of shifting every pointer after it. */
const pb_backend pb_backend_cuda = {
    .name = "cuda",
    .description = "NVIDIA GPUs: cuBLASLt GEMMs with fused bias epilogues, CUDA kernels",
    .host_is_device = false,
    .is_gpu = true,
    .momentum_in_wgrad = false,
    .peer = &cuda_peer,
    .device_count = cuda_device_count,
    .open = cuda_open,
    .close = cuda_close,
    .info = cuda_info,
    .act_bytes = cuda_act_bytes,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .zero = cuda_zero,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .copy_peer = cuda_copy_peer,
    .prefetch = cuda_prefetch,
    .prefetch_wait = cuda_prefetch_wait,
    .upload_act = cuda_upload_act,
    .download_act = cuda_download_act,
    .peak_mem_mb = cuda_peak_mem_mb,
    .mem_info = cuda_mem_info,
    .gemm_fwd = cuda_gemm_fwd,
    .gemm_bwd = cuda_gemm_bwd,
    .bias_act = cuda_bias_act,
    .relu_bwd = cuda_relu_bwd,
    .softmax_xent = cuda_softmax_xent,
    .optimizer = cuda_optimizer,
    .optimizer_side = cuda_optimizer_side,
    .join_side = cuda_join_side,
    .axpy = cuda_axpy,
    .cast_params = cuda_cast_params,
    .mark_create = cuda_mark_create,
    .mark_destroy = cuda_mark_destroy,
    .mark_record = cuda_mark_record,
    .mark_wait = cuda_mark_wait,
    .mark_elapsed_ms = cuda_mark_elapsed_ms,
    .synchronize = cuda_synchronize,
    .calibrate = cuda_calibrate,
    .gemm_reference = cuda_gemm_reference,
    /* the GEMM slots still NULL: the GPT workload refuses this backend
     * (gpt_ops.cuh, docs/transformer-ops.md) */
    .transformer = &cuda_transformer_ops,
    .capture_begin = cuda_capture_begin,
    .capture_end = cuda_capture_end,
    .replay = cuda_replay,
};

bool pb_cuda_built(void) { return true; }

int pb_cuda_ordinal(const pb_device *dev) { return dev->ordinal; }

cudaStream_t pb_cuda_stream(const pb_device *dev) { return dev->stream; }
