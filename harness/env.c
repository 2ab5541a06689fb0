#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include "env.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../kernels/cpu/blas_core.h"
#include "../kernels/cpu/blas_info.h"
#include "envvars.h"
#include "log.h"

#ifndef PB_GIT_REV
#define PB_GIT_REV "unknown"
#endif
/* the Makefile's generated header says which optional parts were built;
 * a build without it (another build system) says "unknown" */
#ifndef PB_BUILD_CUDA
#define PB_BUILD_CUDA -1
#define PB_BUILD_MPI -1
#define PB_BUILD_NCCL -1
#define PB_BUILD_NVTX -1
#endif

static void blas_core(pb_record *r);

static void compiler_text(char *out, size_t len)
{
#if defined(__clang__)
    snprintf(out, len, "clang %s", __clang_version__);
#elif defined(__GNUC__)
    snprintf(out, len, "gcc %d.%d.%d", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#else
    snprintf(out, len, "unknown");
#endif
}

static const char *on_off(int built) { return built == 1 ? "on" : built == 0 ? "off" : "unknown"; }

void pb_env_print_version(FILE *f)
{
    char compiler[256];
    compiler_text(compiler, sizeof compiler);
    fprintf(f, "bench %s\n", PB_VERSION);
    fprintf(f, "git_rev %s\n", PB_GIT_REV);
    fprintf(f, "cuda %s\nmpi %s\nnccl %s\nnvtx %s\n", on_off(PB_BUILD_CUDA), on_off(PB_BUILD_MPI),
            on_off(PB_BUILD_NCCL), on_off(PB_BUILD_NVTX));
    fprintf(f, "compiler %s\n", compiler);
}

void pb_env_fill(pb_record *r, const pb_backend *be, const pb_device_info *dev, int gpu_count)
{
    char buf[256];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    pb_record_set(r, PB_COL_TIME_UTC, "%s", buf);

    if (gethostname(buf, sizeof buf) != 0) snprintf(buf, sizeof buf, "unknown");
    buf[sizeof buf - 1] = '\0';
    pb_record_set(r, PB_COL_HOST, "%s", buf);
    pb_cpu_model(buf, sizeof buf);
    pb_record_set(r, PB_COL_CPU_MODEL, "%s", buf);
    compiler_text(buf, sizeof buf);
    pb_record_set(r, PB_COL_COMPILER, "%s", buf);
    pb_record_set(r, PB_COL_GIT_REV, "%s", PB_GIT_REV);

    if (be && be->is_gpu) {
        pb_record_set(r, PB_COL_GPU_NAME, "%s", dev->name);
        pb_record_set(r, PB_COL_GPU_COUNT, "%d", gpu_count);
        pb_record_set(r, PB_COL_DRIVER, "%s", dev->driver);
        pb_record_set(r, PB_COL_CUDA_RUNTIME, "%s", dev->runtime);
        pb_record_set(r, PB_COL_CUBLAS, "%s", dev->blas_version);
        pb_record_set(r, PB_COL_NCCL, "%s", dev->nccl);
        pb_record_set(r, PB_COL_GPU_CHECK, "%s", dev->gpu_check);
        if (strstr(dev->gpu_check, "below"))
            pb_log_advise("%s runs below what it can: %s (the row's gpu_check says so; docs/gpu.md)", dev->name,
                        dev->gpu_check);
    } else {
        pb_record_set(r, PB_COL_BLAS, "%s", dev->blas);
        pb_record_set(r, PB_COL_BLAS_VERSION, "%s", dev->blas_version);
        blas_core(r);
    }
}

/* The BLAS's kernels against the CPU's instruction set (kernels/cpu/blas_core.h):
 * recorded always, said on stderr with its fix when they are below it. */
static void blas_core(pb_record *r)
{
    static char flags[8192];
    char text[PB_FIELD_MAX];
    const char *core = pb_blas_core();
    pb_cpu_flags(flags, sizeof flags);
    pb_blas_verdict v = pb_blas_judge(core, flags);
    pb_blas_core_text(core, &v, text, sizeof text);
    pb_record_set(r, PB_COL_BLAS_CORE, "%s", text);
    if (!v.below) return;
    const char *chosen = getenv("OPENBLAS_CORETYPE");
    char fix[256];
    if (!pb_blas_dynamic())
        snprintf(fix, sizeof fix, "this OpenBLAS is built for one CPU: use a DYNAMIC_ARCH build, or one built with "
                                  "TARGET=%s", v.suggest ? v.suggest : "this CPU");
    else if (chosen && *chosen)
        snprintf(fix, sizeof fix, "OPENBLAS_CORETYPE=%.64s chose them: set OPENBLAS_CORETYPE=%s", chosen, v.suggest);
    else
        snprintf(fix, sizeof fix, "OpenBLAS %s does not recognise this CPU: set OPENBLAS_CORETYPE=%s",
                 pb_blas_version(), v.suggest);
    pb_log_advise("the BLAS runs its %s kernels (%s) on a CPU with %s: its GEMMs may be several times slower than this "
                "CPU allows (2.5-4.5x on mlp-s with Prescott's on AVX-512 Xeons); %s",
                core, pb_isa_name(v.kernels), pb_isa_name(v.cpu), fix);
}

void pb_env_blas_summary(char *out, size_t len)
{
    static char flags[8192];
    const char *core = pb_blas_core();
    pb_cpu_flags(flags, sizeof flags);
    pb_blas_verdict v = pb_blas_judge(core, flags);
    snprintf(out, len, "OpenBLAS %s, %s kernels (%s; this CPU %s)%s%s", pb_blas_version(), core,
             pb_isa_name(v.kernels), pb_isa_name(v.cpu), v.below ? ": below it, set OPENBLAS_CORETYPE=" : "",
             v.below ? v.suggest : "");
}

void pb_env_fill_vars(pb_record *r)
{
    extern char **environ;
    pb_envvars_format(environ, r->v[PB_COL_ENV_VARS], pb_column_width(PB_COL_ENV_VARS));
}

double pb_host_rss_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0.0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}
