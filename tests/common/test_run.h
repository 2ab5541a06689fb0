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

#endif /* PB_TEST_RUN_H */
