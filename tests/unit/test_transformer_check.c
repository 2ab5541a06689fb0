/* workloads/transformer_check.c: a backend whose transformer ops table
 * leaves any slot the GPT stage calls NULL, or that has no gemm_fwd /
 * gemm_bwd (the GPT's linear maps), is refused (named), the optional fused
 * residual+LayerNorm is not required, and bf16 needs ops that take bf16
 * activations. The run's refusal (exit 2, one line) is
 * test_gpt_runs:test_refusals. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <stddef.h>

#include "kernels/cpu/backend_cpu_gpt.h"
#include "workloads/transformer_check.h"

#define SLOT(name) {offsetof(pb_transformer_ops, name), #name}

static const struct {
    size_t off;
    const char *name;
} required[] = {
    SLOT(encoder_fwd),   SLOT(encoder_bwd),       SLOT(layernorm_fwd), SLOT(layernorm_bwd),
    SLOT(residual_fwd),  SLOT(attention_fwd),     SLOT(attention_bwd), SLOT(attention_scratch),
    SLOT(classifier),
};

/* the cpu backend with table tr */
static pb_backend with_table(const pb_transformer_ops *tr)
{
    pb_backend be = pb_backend_cpu;
    be.transformer = tr;
    return be;
}

static void test_complete_table_passes(void **state)
{
    (void)state;
    assert_null(pb_transformer_missing(&pb_backend_cpu, PB_FP32));
    assert_null(pb_transformer_missing(&pb_backend_cpu, PB_TF32));
    pb_transformer_ops tr = pb_cpu_transformer_ops;
    tr.residual_layernorm_fwd = NULL; /* optional: the stage runs the two ops */
    pb_backend be = with_table(&tr);
    assert_null(pb_transformer_missing(&be, PB_FP32));
}

static void test_null_slot_refused(void **state)
{
    (void)state;
    pb_backend be = with_table(NULL);
    assert_string_equal(pb_transformer_missing(&be, PB_FP32), "them");
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        pb_transformer_ops tr = pb_cpu_transformer_ops;
        memset((char *)&tr + required[i].off, 0, sizeof(void (*)(void)));
        be = with_table(&tr);
        const char *missing = pb_transformer_missing(&be, PB_FP32);
        assert_non_null(missing);
        assert_string_equal(missing, required[i].name);
    }
    /* the GPT's linear maps are the backend's GEMM with epilogues */
    be = pb_backend_cpu;
    be.gemm_fwd = NULL;
    assert_string_equal(pb_transformer_missing(&be, PB_FP32), "gemm_fwd");
    be = pb_backend_cpu;
    be.gemm_bwd = NULL;
    assert_string_equal(pb_transformer_missing(&be, PB_FP32), "gemm_bwd");
}

static void test_bf16_needs_bf16_ops(void **state)
{
    (void)state;
    pb_transformer_ops tr = pb_cpu_transformer_ops;
    pb_backend be = with_table(&tr);
    tr.bf16_act = false;
    assert_string_equal(pb_transformer_missing(&be, PB_BF16), "bf16 activations");
    tr.bf16_act = true;
    assert_null(pb_transformer_missing(&be, PB_BF16));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_table_passes),
        cmocka_unit_test(test_null_slot_refused),
        cmocka_unit_test(test_bf16_needs_bf16_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
