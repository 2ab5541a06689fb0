/* The MLP's numbers, locked: a short run of each strategy on mlp-xs ends
 * with final parameters whose FNV-1a hash is recorded here, so a refactor
 * that changes a single bit of what a strategy computes (an operation
 * reordered, a span of the optimizer dropped, a bucket summed twice) fails
 * by name. The hashes were taken before the model interface (issue 16) and
 * held through it.
 *
 * Bits depend on the BLAS kernels: the runs pin OpenBLAS's kernel set
 * (OPENBLAS_CORETYPE=Haswell, one thread) and the test skips, saying why,
 * where the row shows another BLAS, version or compiler than the one the
 * hashes were recorded with. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <stdint.h>

#define RECORDED_BLAS "OpenBLAS (Haswell)"
#define RECORDED_BLAS_VERSION "0.3.21"
#define RECORDED_COMPILER "gcc 12.2.0"

typedef struct golden {
    const char *name;
    const char *args[12];
    uint64_t hash; /* of params_final.npy, header included */
} golden;

/* dp, ddp and mp on two devices sum the same two halves of the batch, so
 * they agree bit for bit with each other (not with single, whose GEMMs sum
 * all 64 rows at once) */
static const golden cases[] = {
    {"single sgd", {"--strategy", "single", NULL}, 0x8bc4c54e1635c2a2ULL},
    {"single adamw", {"--strategy", "single", "--optimizer", "adamw", "--weight-decay", "0.1", NULL}, 0x7ac1d1ffe0c7b600ULL},
    {"dp 2", {"--strategy", "dp", "--gpus", "2", NULL}, 0x501d7d6d196b74b8ULL},
    {"ddp 2", {"--strategy", "ddp", "--gpus", "2", "--comm", "mpi", "--bucket-mb", "0.05", NULL}, 0x501d7d6d196b74b8ULL},
    {"mp 2 x2", {"--strategy", "mp", "--gpus", "2", "--microbatches", "2", NULL}, 0x501d7d6d196b74b8ULL},
    {"mp 3 x4 adamw",
     {"--strategy", "mp", "--gpus", "3", "--microbatches", "4", "--optimizer", "adamw", NULL},
     0xd1068797e072a75cULL},
};

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t file_hash(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    static unsigned char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    int more = fgetc(f);
    fclose(f);
    if (more != EOF) fail_msg("%s is larger than the test reads", path);
    return fnv1a(buf, n);
}

/* Runs one case; *hash: its final parameters' */
static bool run_case(void **state, const golden *g, uint64_t *hash, char *why, size_t why_len)
{
    bench_run *r = keep(state, bench_run_new());
    char dump[300];
    snprintf(dump, sizeof dump, "%s/dump", r->dir);
    char *args[40];
    int n = 0;
    char *base[] = {"--backend", "cpu", "--workload", "mlp-xs", "--iters", "3", "--warmup", "1", "--threads", "1",
                    "--quiet", "--out", r->csv_path, "--dump", dump};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) args[n++] = base[i];
    for (int i = 0; g->args[i]; i++) args[n++] = (char *)g->args[i];
    args[n] = NULL;
    char *env[] = {"OPENBLAS_CORETYPE=Haswell", NULL};
    run_bench_env(&r->res, env, args);
    expect_exit(r, 0);
    csv c;
    csv_load(&c, r->csv_path);
    bool same = strcmp(csv_get(&c, "blas"), RECORDED_BLAS) == 0 &&
                strcmp(csv_get(&c, "blas_version"), RECORDED_BLAS_VERSION) == 0 &&
                strcmp(csv_get(&c, "compiler"), RECORDED_COMPILER) == 0;
    if (!same)
        snprintf(why, why_len, "%s %s built by %s, not the recorded %s %s by %s", csv_get(&c, "blas"),
                 csv_get(&c, "blas_version"), csv_get(&c, "compiler"), RECORDED_BLAS, RECORDED_BLAS_VERSION,
                 RECORDED_COMPILER);
    csv_free(&c);
    char path[400];
    snprintf(path, sizeof path, "%s/params_final.npy", dump);
    *hash = file_hash(path);
    return same;
}

static void test_final_parameters_as_recorded(void **state)
{
    int wrong = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t h = 0;
        char why[512] = "";
        if (!run_case(state, &cases[i], &h, why, sizeof why)) {
            print_message("skipped: %s\n", why);
            skip();
        }
        if (h != cases[i].hash) {
            print_message("%s: final parameters hash 0x%016llxULL, recorded 0x%016llxULL\n", cases[i].name,
                          (unsigned long long)h, (unsigned long long)cases[i].hash);
            wrong++;
        }
    }
    if (wrong) fail_msg("%d of %zu runs changed their numbers", wrong, sizeof cases / sizeof cases[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_final_parameters_as_recorded, run_setup, run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
