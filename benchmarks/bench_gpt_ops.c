/* bench_gpt_ops: the CPU GPT ops whose non-GEMM work is largest, against
 * their GEMMs alone.
 *
 * At a gpt-xs-like shape (default B 8, T 64, d 128, 4 heads), one BLAS
 * thread, for each case it times
 *   (a) the op, forward then backward;
 *   (b) the same sgemm calls on the same buffers with nothing between them;
 * in rounds of --reps calls each, alternating which side goes first
 * (ABBA...) so that drift and cache warmth fall on both alike. The cases:
 *   attention: pb_cpu_attention_fwd/bwd against pb_cpu_attention_gemms_fwd/
 *     bwd (2 forward, 4 backward sgemm per head; the op adds the causal
 *     softmax, O(T^2) per head);
 *   fc + GELU: the MLP's first map (C -> 4C), the cpu backend's gemm_fwd
 *     with GELU_BIAS and, backward, the GELU derivative with the bias
 *     gradient (pb_cpu_dgelu_bgrad, what gemm_bwd fuses into the input
 *     gradient of the layer above) and gemm_bwd, against gemm_fwd / gemm_bwd
 *     with no bias and no activation (its 3 GEMMs; the op adds the bias,
 *     GELU and dGELU passes and the bias gradient).
 * It prints the medians of forward, backward and both, the median of the
 * per-round ratios op / GEMMs, and the verdict of that fwd+bwd ratio against
 * --limit (default 1.25, issue 16's "step at most 1.25x the same GEMMs").
 *
 * Usage: bench_gpt_ops [--rounds N] [--reps N] [--limit X] [--strict] [--shape B,T,C,NH]
 * Exit: 0 measured (whatever the verdict, unless --strict), 1 (--strict)
 * a ratio is over the limit, 2 usage. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/parse.h"
#include "../harness/stats.h"
#include "../harness/timer.h"
#include "../kernels/backend.h"
#include "../kernels/cpu/blas_info.h"
#include "../kernels/cpu/gpt_ops.h"

typedef struct shape {
    int B, T, C, NH;
} shape;

/* The buffers of both cases: attention's, and the MLP's first linear map
 * (C -> 4C) whose GELU epilogue is the other loop with an exp per element. */
typedef struct bufs {
    shape s;
    float *qkv, *out, *att, *dout, *dqkv, *scratch;
    float *x, *w, *bias, *pre, *h, *dh, *dpre, *dx, *dw, *dbias;
} bufs;

static float *filled(size_t n, unsigned seed)
{
    float *a = malloc(n * sizeof *a);
    if (!a) return NULL;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        a[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    return a;
}

static void attn_op_fwd(const bufs *b)
{
    pb_cpu_attention_fwd(b->out, b->att, b->qkv, b->s.B, b->s.T, b->s.C, b->s.NH);
}
static void attn_op_bwd(const bufs *b)
{
    pb_cpu_attention_bwd(b->dqkv, b->scratch, b->dout, b->qkv, b->att, b->s.B, b->s.T, b->s.C, b->s.NH);
}
static void attn_gemms_fwd(const bufs *b)
{
    pb_cpu_attention_gemms_fwd(b->out, b->att, b->qkv, b->s.B, b->s.T, b->s.C, b->s.NH);
}
static void attn_gemms_bwd(const bufs *b)
{
    pb_cpu_attention_gemms_bwd(b->dqkv, b->scratch, b->dout, b->qkv, b->att, b->s.B, b->s.T, b->s.C, b->s.NH);
}

/* fc: N x C -> N x 4C with bias and GELU; its GEMMs alone are the plain
 * GEMM with no bias (no bias pass, no column sums). The cpu backend's
 * compute ops do not read their device, so none is opened. */
static void fc_fwd(const bufs *b, pb_epilogue epi, float *y)
{
    pb_gemm g = {.m = b->s.B * b->s.T, .n = 4 * b->s.C, .k = b->s.C, .x = b->x, .w = b->w,
                 .bias = b->bias, .y = y, .pre = b->pre, .epilogue = epi};
    (void)pb_backend_cpu.gemm_fwd(NULL, &g);
}
static void fc_bwd(const bufs *b, const float *dy)
{
    pb_gemm_grad g = {.m = b->s.B * b->s.T, .n = 4 * b->s.C, .k = b->s.C, .dy = dy, .x = b->x, .w = b->w,
                      .dw = b->dw, .dw_beta = 1.0f, .dx = b->dx, .dx_beta = 1.0f};
    (void)pb_backend_cpu.gemm_bwd(NULL, &g);
}
static void fc_op_fwd(const bufs *b) { fc_fwd(b, PB_EPI_GELU_BIAS, b->h); }
static void fc_op_bwd(const bufs *b)
{
    /* dpre in a buffer of its own: in dh's place (as a step runs it) it
     * would shrink call after call into denormals, which slow the GEMMs */
    pb_cpu_dgelu_bgrad(b->dpre, b->dbias, b->dh, b->pre, b->s.B * b->s.T, 4 * b->s.C);
    fc_bwd(b, b->dpre);
}
static void fc_gemms_fwd(const bufs *b) { fc_fwd(b, PB_EPI_NONE, b->pre); }
static void fc_gemms_bwd(const bufs *b) { fc_bwd(b, b->dh); }

typedef struct bench_case {
    const char *name;
    void (*op_fwd)(const bufs *), (*op_bwd)(const bufs *), (*ref_fwd)(const bufs *), (*ref_bwd)(const bufs *);
} bench_case;

static const bench_case cases[] = {
    {"attention (causal, fused QKV in)", attn_op_fwd, attn_op_bwd, attn_gemms_fwd, attn_gemms_bwd},
    {"fc C -> 4C with bias + GELU", fc_op_fwd, fc_op_bwd, fc_gemms_fwd, fc_gemms_bwd},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

/* ms of `reps` forward calls and of `reps` backward calls of one side */
static void time_side(bool op, const bench_case *c, const bufs *b, int reps, double *fwd_ms, double *bwd_ms)
{
    void (*fwd)(const bufs *) = op ? c->op_fwd : c->ref_fwd, (*bwd)(const bufs *) = op ? c->op_bwd : c->ref_bwd;
    double t0 = pb_now_ms();
    for (int r = 0; r < reps; r++) fwd(b);
    double t1 = pb_now_ms();
    for (int r = 0; r < reps; r++) bwd(b);
    double t2 = pb_now_ms();
    *fwd_ms = (t1 - t0) / reps;
    *bwd_ms = (t2 - t1) / reps;
}

static int usage(const char *why)
{
    fprintf(stderr, "bench_gpt_ops: %s\nusage: bench_gpt_ops [--rounds N] [--reps N] [--limit X] [--strict] "
                    "[--shape B,T,C,NH]\n",
            why);
    return 2;
}

int main(int argc, char **argv)
{
    long long rounds = 30, reps = 10;
    double limit = 1.25;
    bool strict = false;
    shape s = {8, 64, 128, 4};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--strict") == 0) {
            strict = true;
        } else if (strcmp(a, "--rounds") == 0 && v) {
            if (!pb_parse_int(v, &rounds) || rounds < 1 || rounds > 100000) return usage("--rounds: 1 to 100000");
            i++;
        } else if (strcmp(a, "--reps") == 0 && v) {
            if (!pb_parse_int(v, &reps) || reps < 1 || reps > 100000) return usage("--reps: 1 to 100000");
            i++;
        } else if (strcmp(a, "--limit") == 0 && v) {
            if (!pb_parse_double(v, &limit) || limit <= 0.0) return usage("--limit: a ratio above 0");
            i++;
        } else if (strcmp(a, "--shape") == 0 && v) {
            const char *p = v;
            long long d[4];
            for (int k = 0; k < 4; k++)
                if (!pb_parse_list_int(&p, &d[k]) || d[k] < 1 || d[k] > 65536)
                    return usage("--shape: B,T,C,NH, four integers 1 to 65536");
            if (*p || d[2] % d[3] != 0) return usage("--shape: B,T,C,NH with C a multiple of NH");
            s = (shape){(int)d[0], (int)d[1], (int)d[2], (int)d[3]};
            i++;
        } else {
            return usage(v || a[0] != '-' ? "unknown argument" : "a flag without its value");
        }
    }
    pb_blas_set_threads(1);
    size_t nq = (size_t)s.B * s.T * 3 * s.C, no = (size_t)s.B * s.T * s.C, na = (size_t)s.B * s.NH * s.T * s.T;
    size_t nh = no * 4, nw = (size_t)s.C * 4 * s.C;
    bufs b = {s,
              filled(nq, 1), filled(no, 2), filled(na, 3), filled(no, 4), filled(nq, 5),
              filled(pb_cpu_attention_scratch(s.T), 6),
              filled(no, 7), filled(nw, 8), filled(4 * (size_t)s.C, 9), filled(nh, 10), filled(nh, 11), filled(nh, 12), filled(nh, 16),
              filled(no, 13), filled(nw, 14), filled(4 * (size_t)s.C, 15)};
    double *m[6], *ratio = malloc((size_t)rounds * sizeof *ratio);
    for (int k = 0; k < 6; k++) m[k] = malloc((size_t)rounds * sizeof *m[k]);
    bool have = ratio && b.qkv && b.out && b.att && b.dout && b.dqkv && b.scratch && b.x && b.w && b.bias && b.pre &&
                b.h && b.dh && b.dpre && b.dx && b.dw && b.dbias;
    for (int k = 0; k < 6; k++) have = have && m[k];
    if (!have) {
        fprintf(stderr, "bench_gpt_ops: out of memory\n");
        return 1;
    }
    printf("CPU ops vs their GEMMs alone (%s, 1 BLAS thread): B %d T %d d %d heads %d (hs %d), "
           "%lld rounds x %lld calls, alternating\n",
           pb_blas_name(), s.B, s.T, s.C, s.NH, s.C / s.NH, rounds, reps);
    bool ok = true;
    for (int ci = 0; ci < N_CASES; ci++) {
        const bench_case *c = &cases[ci];
        /* warm up both sides: first-touch pages and the BLAS's buffers */
        double f, g;
        time_side(true, c, &b, 2, &f, &g);
        time_side(false, c, &b, 2, &f, &g);
        for (long long r = 0; r < rounds; r++) {
            bool op_first = r % 2 == 0;
            time_side(op_first, c, &b, (int)reps, op_first ? &m[0][r] : &m[2][r], op_first ? &m[1][r] : &m[3][r]);
            time_side(!op_first, c, &b, (int)reps, op_first ? &m[2][r] : &m[0][r], op_first ? &m[3][r] : &m[1][r]);
            m[4][r] = m[0][r] + m[1][r];
            m[5][r] = m[2][r] + m[3][r];
            ratio[r] = m[4][r] / m[5][r];
        }
        double med[6];
        for (int k = 0; k < 6; k++) med[k] = pb_stats_median(m[k], (size_t)rounds);
        double paired = pb_stats_median(ratio, (size_t)rounds);
        /* GEMM FLOPs: attention 2 T^2 hs per GEMM, 6 per head (full T x T);
         * fc 2 N C 4C per GEMM, 3 of them */
        double gflop = ci == 0 ? 6.0 * 2.0 * (double)s.T * s.T * (s.C / s.NH) * s.B * s.NH / 1e9
                               : 3.0 * 2.0 * (double)s.B * s.T * s.C * 4.0 * s.C / 1e9;
        printf("%s\n  %-9s %12s %12s %8s\n", c->name, "", "op ms p50", "gemms ms p50", "ratio");
        printf("  %-9s %12.4f %12.4f %8.3f\n", "forward", med[0], med[2], med[0] / med[2]);
        printf("  %-9s %12.4f %12.4f %8.3f\n", "backward", med[1], med[3], med[1] / med[3]);
        printf("  %-9s %12.4f %12.4f %8.3f\n", "fwd+bwd", med[4], med[5], med[4] / med[5]);
        /* pb_stats_median sorted each series: [0] is its minimum, the
         * figure least disturbed by other processes on a shared machine */
        printf("  %-9s %12.4f %12.4f %8.3f\n", "min f+b", m[4][0], m[5][0], m[4][0] / m[5][0]);
        printf("  GEMMs: %.4f GFLOP per fwd+bwd, %.2f GFLOP/s alone, %.2f GFLOP/s in the op\n", gflop,
               gflop / (med[5] / 1e3), gflop / (med[4] / 1e3));
        bool case_ok = paired <= limit;
        ok = ok && case_ok;
        printf("  verdict on the median per-round fwd+bwd ratio %.3f: %s the limit %.2f\n", paired,
               case_ok ? "within" : "OVER", limit);
    }
    free(b.qkv), free(b.out), free(b.att), free(b.dout), free(b.dqkv), free(b.scratch), free(ratio);
    free(b.x), free(b.w), free(b.bias), free(b.pre), free(b.h), free(b.dh), free(b.dpre), free(b.dx), free(b.dw), free(b.dbias);
    for (int k = 0; k < 6; k++) free(m[k]);
    return strict && !ok ? 1 : 0;
}
