/* Whether the BLAS runs kernels for the CPU it runs on: OpenBLAS's
 * DYNAMIC_ARCH picks its kernels from the CPU model it recognises, and a
 * model it does not know (0.3.21 on newer AVX-512 Xeons) falls back to
 * Prescott's SSE3 kernels, several times slower (4.5x on mlp-s).
 * Pure functions of the core name and the CPU's flags, so a test can judge
 * any pair (docs/csv-schema.md, "blas_core"). */
#ifndef PB_BLAS_CORE_H
#define PB_BLAS_CORE_H

#include <stdbool.h>
#include <stddef.h>

/* Vector instruction levels, in order. */
typedef enum pb_isa { PB_ISA_UNKNOWN, PB_ISA_SSE2, PB_ISA_SSE3, PB_ISA_AVX, PB_ISA_AVX2, PB_ISA_AVX512 } pb_isa;

const char *pb_isa_name(pb_isa isa); /* "avx512", "unknown" */
/* The level of a BLAS core's kernels ("Prescott" sse3, "Haswell" avx2,
 * "SkylakeX" avx512; any case); unknown for a name not in the table. */
pb_isa pb_blas_core_isa(const char *core);
/* The best level in a /proc/cpuinfo "flags" line (space-separated:
 * "... pni ... avx2 fma ... avx512f avx512dq avx512bw avx512vl ..."). */
pb_isa pb_cpu_flags_isa(const char *flags);

typedef struct pb_blas_verdict {
    pb_isa kernels, cpu;
    bool below;          /* both known and the kernels' level is below the CPU's */
    const char *suggest; /* the OPENBLAS_CORETYPE for the CPU's level ("SkylakeX"), NULL when unknown */
} pb_blas_verdict;

pb_blas_verdict pb_blas_judge(const char *core, const char *cpu_flags);
/* The blas_core column: the core, and when below "(below: sse3 kernels on
 * an avx512 cpu)". */
void pb_blas_core_text(const char *core, const pb_blas_verdict *v, char *out, size_t len);

#endif /* PB_BLAS_CORE_H */
