/* The environment checks of a row, as pure functions:
 *   - blas_core: OpenBLAS's kernel core against the CPU's flags (0.3.21
 *     takes an AVX-512 Xeon for a Prescott and runs SSE3 kernels);
 *   - env_vars: which variables are recorded (listed prefixes, never a
 *     secret, never an MPI launcher's own wiring), sorted and escaped so a
 *     value with ';' or a newline reads back as it was, cut whole entries
 *     at a time with a "..." marker;
 *   - gpu_check: a GPU's PCIe width and SM clock against their maxima, and
 *     the driver's slowdown reasons (the facts faked: no GPU here). */
#include "tests/common/test_util.h"

#include "harness/cpu_stall.h"
#include "harness/envvars.h"
#include "harness/results.h"
#include "kernels/cpu/blas_core.h"
#include "kernels/gpu_check.h"

/* The flags lines of the CPUs that matter, cut to what decides */
#define FLAGS_SPR                                                                                              \
    "fpu sse sse2 ss pni ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl amx_tile"
#define FLAGS_HASWELL "fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 avx f16c avx2"
#define FLAGS_OLD "fpu sse sse2 pni ssse3"

static void test_prescott_on_avx512_is_below(void **state)
{
    (void)state;
    pb_blas_verdict v = pb_blas_judge("Prescott", FLAGS_SPR);
    assert_true(v.below);
    assert_int_equal(v.kernels, PB_ISA_SSE3);
    assert_int_equal(v.cpu, PB_ISA_AVX512);
    assert_string_equal(v.suggest, "SkylakeX");
    char text[PB_FIELD_MAX];
    pb_blas_core_text("Prescott", &v, text, sizeof text);
    assert_string_equal(text, "Prescott (below: sse3 kernels on an avx512 cpu)");

    /* Haswell's kernels on an AVX-512 CPU: below too, by one level */
    v = pb_blas_judge("Haswell", FLAGS_SPR);
    assert_true(v.below);
    assert_int_equal(v.kernels, PB_ISA_AVX2);
}

static void test_matching_kernels_are_not_below(void **state)
{
    (void)state;
    char text[PB_FIELD_MAX];
    pb_blas_verdict v = pb_blas_judge("SkylakeX", FLAGS_SPR);
    assert_false(v.below);
    pb_blas_core_text("SkylakeX", &v, text, sizeof text);
    assert_string_equal(text, "SkylakeX");
    assert_false(pb_blas_judge("Cooperlake", FLAGS_SPR).below);
    assert_false(pb_blas_judge("Haswell", FLAGS_HASWELL).below);
    assert_false(pb_blas_judge("zen", FLAGS_HASWELL).below); /* any case */
    assert_false(pb_blas_judge("Prescott", FLAGS_OLD).below);
    /* kernels above what the flags say (a VM hiding flags): not below */
    assert_false(pb_blas_judge("SkylakeX", FLAGS_HASWELL).below);
}

static void test_unknown_is_never_judged(void **state)
{
    (void)state;
    /* an ARM core, no flags line (not x86), a name not in the table */
    assert_false(pb_blas_judge("NEOVERSEN1", FLAGS_SPR).below);
    assert_false(pb_blas_judge("Prescott", "").below);
    assert_false(pb_blas_judge("Prescott", "fp asimd evtstrm aes pmull sha1").below);
    assert_int_equal(pb_blas_core_isa("Generic"), PB_ISA_UNKNOWN);
    /* whole words only: "avx512f" alone (Knights Landing) is not SkylakeX's
     * level, and "avx2" does not match inside "xavx2y" */
    assert_int_equal(pb_cpu_flags_isa("sse2 pni avx avx2 fma avx512f"), PB_ISA_AVX2);
    assert_int_equal(pb_cpu_flags_isa("sse2 pni avx xavx2y fma"), PB_ISA_AVX);
}

/* ---- gpu_check ------------------------------------------------------------------ */

static void test_gpu_at_full_width_and_clock(void **state)
{
    (void)state;
    char text[192];
    pb_gpu_facts f = {.have_link = true, .link_width = 16, .link_width_max = 16, .have_clocks = true,
                      .sm_clock_app = 1980, .sm_clock_default = 1980, .throttle = 0x1 | 0x4}; /* idle, power cap */
    pb_gpu_check_text(&f, text, sizeof text);
    assert_string_equal(text, "pcie x16 of x16; sm clock 1980 of 1980 MHz");
    assert_null(strstr(text, "below"));
}

static void test_gpu_below_width_clock_and_throttled(void **state)
{
    (void)state;
    char text[192];
    pb_gpu_facts f = {.have_link = true, .link_width = 8, .link_width_max = 16, .have_clocks = true,
                      .sm_clock_app = 1410, .sm_clock_default = 1980, .throttle = 0x40 | 0x8};
    pb_gpu_check_text(&f, text, sizeof text);
    assert_string_equal(text, "pcie x8 of x16 (below); sm clock 1410 of 1980 MHz (below); throttled (below): "
                              "hw-slowdown, hw-thermal");
    /* no NVML, no sysfs: said, never judged */
    pb_gpu_facts none = {0};
    pb_gpu_check_text(&none, text, sizeof text);
    assert_string_equal(text, "pcie unknown; sm clock unknown (no NVML)");
    assert_null(strstr(text, "below"));
}

/* ---- env_vars ------------------------------------------------------------------ */

static void test_listed_and_left_out(void **state)
{
    (void)state;
    assert_true(pb_envvars_listed("NCCL_ALGO"));
    assert_true(pb_envvars_listed("OMPI_MCA_btl"));
    assert_true(pb_envvars_listed("CUDA_VISIBLE_DEVICES"));
    assert_true(pb_envvars_listed("OMP_NUM_THREADS"));
    assert_true(pb_envvars_listed("OPENBLAS_CORETYPE"));
    assert_true(pb_envvars_listed("UCX_TLS"));
    assert_true(pb_envvars_listed("FI_PROVIDER"));
    assert_true(pb_envvars_listed("MKL_NUM_THREADS"));
    assert_true(pb_envvars_listed("LD_PRELOAD"));
    /* not listed */
    assert_false(pb_envvars_listed("PATH"));
    assert_false(pb_envvars_listed("HOME"));
    assert_false(pb_envvars_listed("PMIX_MCA_gds"));
    /* where CUDA is installed; what mpirun sets in every rank */
    assert_false(pb_envvars_listed("CUDA_HOME"));
    assert_false(pb_envvars_listed("OMPI_MCA_orte_hnp_uri"));
    assert_false(pb_envvars_listed("OMPI_MCA_orte_precondition_transports"));
    assert_false(pb_envvars_listed("OMPI_MCA_ess_base_jobid"));
    assert_false(pb_envvars_listed("OMPI_MCA_pmix"));
    /* secrets by name, any case */
    assert_false(pb_envvars_listed("NCCL_API_KEY"));
    assert_false(pb_envvars_listed("CUDA_token"));
    assert_false(pb_envvars_listed("UCX_SECRET"));
    assert_false(pb_envvars_listed("OMPI_MCA_password"));
    assert_false(pb_envvars_listed("FI_CREDENTIALS"));
}

static void test_secret_values(void **state)
{
    (void)state;
    assert_true(pb_envvars_secret_value("ghp_abcdefghijklmnopqrstuvwxyz0123456789"));
    assert_true(pb_envvars_secret_value("https://user:hunter2@example.com/x"));
    assert_true(pb_envvars_secret_value("AKIAIOSFODNN7EXAMPLE"));
    assert_true(pb_envvars_secret_value("x=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdI"));
    /* what real settings look like */
    assert_false(pb_envvars_secret_value("tcp,self"));
    assert_false(pb_envvars_secret_value("Ring"));
    assert_false(pb_envvars_secret_value("GPU-8a3f0c52-1b2d-4e5f-9a8b-7c6d5e4f3a2b"));
    assert_false(pb_envvars_secret_value("/usr/lib/x86_64-linux-gnu/libnccl-net.so"));
    assert_false(pb_envvars_secret_value("https://example.com:8080/path"));
}

static void test_format_sorted_escaped_no_secrets(void **state)
{
    (void)state;
    char *env[] = {"PATH=/bin",
                   "OMPI_MCA_btl=tcp,self",
                   "NCCL_ALGO=Tree",
                   "MY_API_KEY=abc",
                   "NCCL_IB_PKEY=1",
                   "NCCL_DEBUG_FILE=a;b\\c\nd",
                   "CUDA_VISIBLE_DEVICES=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                   "OMPI_MCA_orte_hnp_uri=1.0;tcp://1.2.3.4:5",
                   NULL};
    char out[PB_FIELD_WIDE];
    assert_int_equal(pb_envvars_format(env, out, sizeof out), 3);
    assert_string_equal(out, "NCCL_ALGO=Tree;NCCL_DEBUG_FILE=a\\;b\\\\c\\x0ad;OMPI_MCA_btl=tcp,self");
    assert_null(strstr(out, "KEY"));
    assert_null(strstr(out, "ghp_"));

    /* read back as set */
    const char *p = out;
    char name[64], value[64];
    bool cut;
    assert_true(pb_envvars_next(&p, name, sizeof name, value, sizeof value, &cut));
    assert_string_equal(name, "NCCL_ALGO");
    assert_string_equal(value, "Tree");
    assert_true(pb_envvars_next(&p, name, sizeof name, value, sizeof value, &cut));
    assert_string_equal(name, "NCCL_DEBUG_FILE");
    assert_string_equal(value, "a;b\\c\nd");
    assert_int_equal(pb_envvars_get(out, "OMPI_MCA_btl", value, sizeof value), 1);
    assert_string_equal(value, "tcp,self");
    assert_int_equal(pb_envvars_get(out, "NCCL_PROTO", value, sizeof value), 0);
}

/* More than fits: whole entries, then "...", and a reader calls the names
 * it lost "not recorded" rather than unset. */
static void test_format_cut_whole_entries(void **state)
{
    (void)state;
    char *env[] = {"NCCL_A=11111", "NCCL_B=22222", "NCCL_C=33333", NULL};
    char out[20];
    assert_int_equal(pb_envvars_format(env, out, sizeof out), 1);
    assert_string_equal(out, "NCCL_A=11111;...");
    char value[16];
    assert_int_equal(pb_envvars_get(out, "NCCL_A", value, sizeof value), 1);
    assert_int_equal(pb_envvars_get(out, "NCCL_C", value, sizeof value), -1);
    /* one that fits exactly needs no marker */
    char exact[26];
    char *two[] = {"NCCL_A=11111", "NCCL_B=22222", NULL};
    assert_int_equal(pb_envvars_format(two, exact, sizeof exact), 2);
    assert_string_equal(exact, "NCCL_A=11111;NCCL_B=22222");
}

/* The column is wider than the others, and a long list survives a row. */
static void test_env_vars_column_is_wide(void **state)
{
    (void)state;
    static pb_record r;
    pb_record_clear(&r);
    char text[900];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    memcpy(text, "NCCL_X=", 7);
    pb_record_set(&r, PB_COL_ENV_VARS, "%s", text);
    assert_string_equal(r.v[PB_COL_ENV_VARS], text);
    assert_int_equal(pb_column_width(PB_COL_ENV_VARS), PB_FIELD_WIDE);
    assert_int_equal(pb_column_width(PB_COL_ERROR), PB_FIELD_MAX);
    pb_record_set(&r, PB_COL_ERROR, "%s", text);
    assert_int_equal(strlen(r.v[PB_COL_ERROR]), PB_FIELD_MAX - 1);
}

/* The CPU stall probe's accounting: gaps of 50 ms or more are stalls, the
 * longest gap of any length is kept, the fraction is over every thread's
 * spin; a short spin on this machine adds up to its own length at most. */
static void test_cpu_stalls_accounted(void **state)
{
    (void)state;
    pb_cpu_stall s = {.threads = 2, .seconds = 1.0};
    pb_cpu_stall_add(&s, 0.001);
    pb_cpu_stall_add(&s, 49.9);
    assert_int_equal(s.stalls, 0);
    assert_float_equal(s.longest_ms, 49.9, 1e-9);
    pb_cpu_stall_add(&s, 100);
    pb_cpu_stall_add(&s, 60);
    assert_int_equal(s.stalls, 2);
    assert_float_equal(s.stalled_ms, 160, 1e-9);
    assert_float_equal(s.longest_ms, 100, 1e-9);
    assert_float_equal(pb_cpu_stall_fraction(&s), 160.0 / 2000, 1e-12);
    pb_cpu_stall p;
    assert_int_equal(pb_cpu_stall_probe(2, 0.05, &p), PB_OK);
    assert_int_equal(p.threads, 2);
    assert_true(p.longest_ms > 0 && p.longest_ms < 2 * 50 + 1000);
    assert_true(pb_cpu_stall_fraction(&p) >= 0 && pb_cpu_stall_fraction(&p) <= 1);
    assert_true(pb_cpu_quota_cores() >= 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prescott_on_avx512_is_below),
        cmocka_unit_test(test_cpu_stalls_accounted),
        cmocka_unit_test(test_matching_kernels_are_not_below),
        cmocka_unit_test(test_unknown_is_never_judged),
        cmocka_unit_test(test_gpu_at_full_width_and_clock),
        cmocka_unit_test(test_gpu_below_width_clock_and_throttled),
        cmocka_unit_test(test_listed_and_left_out),
        cmocka_unit_test(test_secret_values),
        cmocka_unit_test(test_format_sorted_escaped_no_secrets),
        cmocka_unit_test(test_format_cut_whole_entries),
        cmocka_unit_test(test_env_vars_column_is_wide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
