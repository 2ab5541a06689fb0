/* Replays the fuzz corpus and every kept crash input (tests/fuzz/corpus/,
 * tests/fuzz/regressions/) through the fuzz entry points, so `make test`
 * (and `make SAN=1 test`) catches a regression without libFuzzer. */
#include "tests/common/test_util.h"

#include <dirent.h>

#include "tests/fuzz/fuzz_targets.h"

#ifndef PB_FUZZ_DIR
#define PB_FUZZ_DIR "tests/fuzz"
#endif

typedef int (*fuzz_fn)(const uint8_t *, size_t);

/* Feeds every regular file of PB_FUZZ_DIR/sub to fn; returns how many. */
static int replay_dir(const char *sub, fuzz_fn fn)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", PB_FUZZ_DIR, sub);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint8_t *buf = malloc((size_t)sb.st_size + 1);
        assert_non_null(buf);
        size_t len = fread(buf, 1, (size_t)sb.st_size, f);
        fclose(f);
        assert_int_equal(len, (size_t)sb.st_size);
        fn(buf, len);
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

static void test_csv_corpus(void **state)
{
    (void)state;
    assert_true(replay_dir("corpus/csv", pb_fuzz_csv) > 0);
    replay_dir("regressions/csv", pb_fuzz_csv);
}

static void test_cli_corpus(void **state)
{
    (void)state;
    assert_true(replay_dir("corpus/cli", pb_fuzz_cli) > 0);
    replay_dir("regressions/cli", pb_fuzz_cli);
}

/* edge cases a fuzzer reaches first: empty, one byte, no newline */
static void test_small_inputs(void **state)
{
    (void)state;
    static const char *const inputs[] = {"", "\n", "\0", "a", "a\n", "\"", "a,b\n\"", "--help", "--gpus\n", "--split=1,"};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        size_t len = strlen(inputs[i]) + (i == 2);
        pb_fuzz_csv((const uint8_t *)inputs[i], len);
        pb_fuzz_cli((const uint8_t *)inputs[i], len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_corpus),
        cmocka_unit_test(test_cli_corpus),
        cmocka_unit_test(test_small_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
