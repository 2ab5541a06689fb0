#include "blas_core.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const isa_names[] = {"unknown", "sse2", "sse3", "avx", "avx2", "avx512"};

const char *pb_isa_name(pb_isa isa) { return isa >= PB_ISA_UNKNOWN && isa <= PB_ISA_AVX512 ? isa_names[isa] : "?"; }

/* OpenBLAS's x86 core names (openblas_get_corename) and the widest vector
 * instructions their GEMM kernels use. */
static const struct {
    const char *core;
    pb_isa isa;
} cores[] = {
    {"Katmai", PB_ISA_SSE2},       {"Coppermine", PB_ISA_SSE2},   {"Northwood", PB_ISA_SSE2},
    {"Banias", PB_ISA_SSE2},       {"Athlon", PB_ISA_SSE2},       {"Opteron", PB_ISA_SSE2},
    {"Prescott", PB_ISA_SSE3},     {"Core2", PB_ISA_SSE3},        {"Penryn", PB_ISA_SSE3},
    {"Dunnington", PB_ISA_SSE3},   {"Nehalem", PB_ISA_SSE3},      {"Atom", PB_ISA_SSE3},
    {"Opteron_SSE3", PB_ISA_SSE3}, {"Barcelona", PB_ISA_SSE3},    {"Bobcat", PB_ISA_SSE3},
    {"Sandybridge", PB_ISA_AVX},   {"Bulldozer", PB_ISA_AVX},     {"Piledriver", PB_ISA_AVX},
    {"Steamroller", PB_ISA_AVX},   {"Excavator", PB_ISA_AVX2},    {"Haswell", PB_ISA_AVX2},
    {"Zen", PB_ISA_AVX2},          {"SkylakeX", PB_ISA_AVX512},   {"Cooperlake", PB_ISA_AVX512},
    {"SapphireRapids", PB_ISA_AVX512},
};

pb_isa pb_blas_core_isa(const char *core)
{
    for (size_t i = 0; core && i < sizeof cores / sizeof cores[0]; i++)
        if (strcasecmp(core, cores[i].core) == 0) return cores[i].isa;
    return PB_ISA_UNKNOWN;
}

/* flag is one whole word of flags */
static bool has_flag(const char *flags, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = flags; (p = strstr(p, flag)) != NULL; p += n) {
        bool start = p == flags || p[-1] == ' ' || p[-1] == '\t';
        bool end = p[n] == '\0' || p[n] == ' ' || p[n] == '\t' || p[n] == '\n';
        if (start && end) return true;
    }
    return false;
}

pb_isa pb_cpu_flags_isa(const char *flags)
{
    if (!flags || !*flags) return PB_ISA_UNKNOWN;
    /* OpenBLAS's SkylakeX kernels need the four; a CPU with avx512f alone
     * (Knights Landing) runs Haswell's */
    if (has_flag(flags, "avx512f") && has_flag(flags, "avx512dq") && has_flag(flags, "avx512bw") &&
        has_flag(flags, "avx512vl"))
        return PB_ISA_AVX512;
    if (has_flag(flags, "avx2") && has_flag(flags, "fma")) return PB_ISA_AVX2;
    if (has_flag(flags, "avx")) return PB_ISA_AVX;
    if (has_flag(flags, "pni")) return PB_ISA_SSE3; /* the kernel's name for SSE3 */
    if (has_flag(flags, "sse2")) return PB_ISA_SSE2;
    return PB_ISA_UNKNOWN;
}

pb_blas_verdict pb_blas_judge(const char *core, const char *cpu_flags)
{
    static const char *const suggest[] = {NULL, NULL, "Prescott", "Sandybridge", "Haswell", "SkylakeX"};
    pb_blas_verdict v = {.kernels = pb_blas_core_isa(core), .cpu = pb_cpu_flags_isa(cpu_flags)};
    v.below = v.kernels != PB_ISA_UNKNOWN && v.cpu != PB_ISA_UNKNOWN && v.kernels < v.cpu;
    v.suggest = suggest[v.cpu];
    return v;
}

void pb_blas_core_text(const char *core, const pb_blas_verdict *v, char *out, size_t len)
{
    if (v->below)
        snprintf(out, len, "%s (below: %s kernels on an %s cpu)", core, pb_isa_name(v->kernels), pb_isa_name(v->cpu));
    else
        snprintf(out, len, "%s", core);
}
