/* bench_gpt_ops: the CPU attention op against its GEMMs alone.
 *
 * At a gpt-xs-like shape (default B 8, T 64, d 128, 4 heads), one BLAS
 * thread, it times
 *   (a) the attention op, pb_cpu_attention_fwd then pb_cpu_attention_bwd;
 *   (b) the same sgemm calls on the same buffers with nothing between them,
 *       pb_cpu_attention_gemms_fwd/_bwd (2 forward, 4 backward per head);
 * in rounds of --reps calls each, alternating which side goes first
 * (ABBA...) so that drift and cache warmth fall on both alike. It prints
 * the medians of forward, backward and both, the median of the per-round
 * ratios op / GEMMs, and the verdict of the fwd+bwd ratio against --limit
 * (default 1.25, issue 16's "step at most 1.25x the same GEMMs", here for
 * the one op whose non-GEMM work, the causal softmax, is O(T^2) per head).
 *
 * Usage: bench_gpt_ops [--rounds N] [--reps N] [--limit X] [--strict] [--shape B,T,C,NH]
 * Exit: 0 measured (whatever the verdict, unless --strict), 1 (--strict)
 * the ratio is over the limit, 2 usage. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/parse.h"
#include "../harness/stats.h"
#include "../harness/timer.h"
#include "../kernels/cpu/blas_info.h"
#include "../kernels/cpu/gpt_ops.h"

typedef struct shape {
    int B, T, C, NH;
} shape;

typedef struct bufs {
    float *qkv, *out, *att, *dout, *dqkv, *scratch;
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

/* ms of `reps` forward calls and of `reps` backward calls of one side */
static void time_side(bool op, const shape *s, const bufs *b, int reps, double *fwd_ms, double *bwd_ms)
{
    double t0 = pb_now_ms();
    for (int r = 0; r < reps; r++) {
        if (op)
            pb_cpu_attention_fwd(b->out, b->att, b->qkv, s->B, s->T, s->C, s->NH);
        else
            pb_cpu_attention_gemms_fwd(b->out, b->att, b->qkv, s->B, s->T, s->C, s->NH);
    }
    double t1 = pb_now_ms();
    for (int r = 0; r < reps; r++) {
        if (op)
            pb_cpu_attention_bwd(b->dqkv, b->scratch, b->dout, b->qkv, b->att, s->B, s->T, s->C, s->NH);
        else
            pb_cpu_attention_gemms_bwd(b->dqkv, b->scratch, b->dout, b->qkv, b->att, s->B, s->T, s->C, s->NH);
    }
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
    bufs b = {filled(nq, 1), filled(no, 2), filled(na, 3), filled(no, 4), filled(nq, 5),
              filled(pb_cpu_attention_scratch(s.T), 6)};
    double *m[6], *ratio = malloc((size_t)rounds * sizeof *ratio);
    for (int k = 0; k < 6; k++) m[k] = malloc((size_t)rounds * sizeof *m[k]);
    if (!b.qkv || !b.out || !b.att || !b.dout || !b.dqkv || !b.scratch || !ratio || !m[0] || !m[1] || !m[2] || !m[3] ||
        !m[4] || !m[5]) {
        fprintf(stderr, "bench_gpt_ops: out of memory\n");
        return 1;
    }
    /* warm up both sides: first-touch pages and the BLAS's buffers */
    double f, g;
    time_side(true, &s, &b, 2, &f, &g);
    time_side(false, &s, &b, 2, &f, &g);
    for (long long r = 0; r < rounds; r++) {
        bool op_first = r % 2 == 0;
        time_side(op_first, &s, &b, (int)reps, op_first ? &m[0][r] : &m[2][r], op_first ? &m[1][r] : &m[3][r]);
        time_side(!op_first, &s, &b, (int)reps, op_first ? &m[2][r] : &m[0][r], op_first ? &m[3][r] : &m[1][r]);
        m[4][r] = m[0][r] + m[1][r];
        m[5][r] = m[2][r] + m[3][r];
        ratio[r] = m[4][r] / m[5][r];
    }
    /* the GEMMs' FLOPs: 2 T^2 hs per GEMM, 6 GEMMs per head, full T x T */
    double hs = (double)(s.C / s.NH), gflop = 6.0 * 2.0 * (double)s.T * s.T * hs * s.B * s.NH / 1e9;
    double med[6];
    for (int k = 0; k < 6; k++) med[k] = pb_stats_median(m[k], (size_t)rounds);
    double paired = pb_stats_median(ratio, (size_t)rounds);
    printf("attention op vs its GEMMs alone (CPU, %s, 1 BLAS thread): B %d T %d d %d heads %d (hs %d), "
           "%lld rounds x %lld calls, alternating\n",
           pb_blas_name(), s.B, s.T, s.C, s.NH, s.C / s.NH, rounds, reps);
    printf("  %-9s %12s %12s %8s\n", "", "op ms p50", "gemms ms p50", "ratio");
    printf("  %-9s %12.4f %12.4f %8.3f\n", "forward", med[0], med[2], med[0] / med[2]);
    printf("  %-9s %12.4f %12.4f %8.3f\n", "backward", med[1], med[3], med[1] / med[3]);
    printf("  %-9s %12.4f %12.4f %8.3f\n", "fwd+bwd", med[4], med[5], med[4] / med[5]);
    printf("  GEMMs: %.4f GFLOP per fwd+bwd (6 per head, full T x T), %.2f GFLOP/s alone, %.2f GFLOP/s in the op\n",
           gflop, gflop / (med[5] / 1e3), gflop / (med[4] / 1e3));
    bool ok = paired <= limit;
    printf("  verdict on the median per-round fwd+bwd ratio %.3f: %s the limit %.2f\n", paired,
           ok ? "within" : "OVER", limit);
    free(b.qkv), free(b.out), free(b.att), free(b.dout), free(b.dqkv), free(b.scratch), free(ratio);
    for (int k = 0; k < 6; k++) free(m[k]);
    return strict && !ok ? 1 : 0;
}
