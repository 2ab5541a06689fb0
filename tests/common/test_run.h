/* The run holder of the strategy tests: one bench run per test, in a
 * temporary folder, freed by the teardown even when an assertion fails. */
#ifndef PB_TEST_RUN_H
#define PB_TEST_RUN_H

#include "test_csv.h"

/* One bench run of a test: its folder (holding r.csv), exit code and
 * output; cmocka's state holds it so the teardown frees it even when an
 * assertion fails (setup: run_setup, teardown: run_teardown). */
typedef struct bench_run {
    char *dir;
    char csv_path[256];
    bench_result res;
} bench_run;

static inline bench_run *bench_run_new(void)
{
    bench_run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->dir = make_temp_dir();
    snprintf(r->csv_path, sizeof r->csv_path, "%s/r.csv", r->dir);
    return r;
}

static inline void bench_run_free(bench_run *r)
{
    if (!r) return;
    remove_temp_dir(r->dir);
    free(r);
}

static inline int run_setup(void **state)
{
    *state = NULL;
    return 0;
}

static inline int run_teardown(void **state)
{
    bench_run_free(*state);
    return 0;
}

/* Makes r the test's run (freeing the one before). */
static inline bench_run *keep(void **state, bench_run *r)
{
    bench_run_free(*state);
    *state = r;
    return r;
}

static inline void expect_exit(const bench_run *r, int code)
{
    if (r->res.exit_code != code)
        fail_msg("bench exited %d, expected %d; stderr:\n%s", r->res.exit_code, code, r->res.err);
}

/* bench --strategy S --backend cpu --gpus N --warmup 0 --threads 1
 * --quiet --out DIR/r.csv [extra...] with env_add added (NULL: none); a
 * rank-per-device strategy's launcher runs mpirun */
static inline bench_run *run_strategy_on(const char *strategy, int gpus, char *const extra[], char *const env_add[])
{
    bench_run *r = bench_run_new();
    char g[16];
    snprintf(g, sizeof g, "%d", gpus);
    char *args[48] = {"--strategy", (char *)strategy, "--backend", "cpu", "--gpus", g, "--warmup", "0",
                      "--threads", "1", "--quiet", "--out", r->csv_path};
    int n = 13;
    for (int i = 0; extra && extra[i] && n < 47; i++) args[n++] = extra[i];
    args[n] = NULL;
    run_bench_env(&r->res, env_add, args);
    return r;
}

/* PB_TEST_LOADER_STATS=1's line of each of ranks: every rank's loader
 * filled `samples` samples of mlp-xs (256 features and a label each) */
static inline void expect_mlp_xs_loader_filled(const bench_run *r, int ranks, int samples)
{
    for (int k = 0; k < ranks; k++) {
        char want[128];
        snprintf(want, sizeof want, "bench: rank %d loader filled %d samples, %d bytes\n", k, samples,
                 samples * (256 * 4 + 4));
        if (!strstr(r->res.err, want)) fail_msg("no '%.*s' in stderr:\n%s", (int)strlen(want) - 1, want, r->res.err);
    }
}

/* A run with rank `hung` stuck (PB_FAULT): it failed, stderr says every
 * one of says[] (n) and names the rank on this host, the row is failed */
static inline void expect_hung_rank_named(const bench_run *r, int hung, const char *const says[], size_t n)
{
    char host[256] = "unknown", want[512];
    gethostname(host, sizeof host - 1);
    if (r->res.exit_code == 0) fail_msg("exited 0; stderr:\n%s", r->res.err);
    snprintf(want, sizeof want, "rank %d on %s (pid ", hung, host);
    for (size_t i = 0; i < n; i++)
        if (!strstr(r->res.err, says[i])) fail_msg("no '%s' in stderr:\n%s", says[i], r->res.err);
    if (!strstr(r->res.err, want)) fail_msg("no '%s' in stderr:\n%s", want, r->res.err);
    csv c;
    csv_load(&c, r->csv_path);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "failed");
    csv_free(&c);
}

#endif /* PB_TEST_RUN_H */
