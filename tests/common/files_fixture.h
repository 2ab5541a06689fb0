/* The fixture of the results-file tests (tests/unit/test_files_lib.c and
 * tests/e2e/test_files.c): a fresh folder and DIR/r.csv in it, freed by
 * the teardown even when an assertion fails. */
#ifndef PB_TEST_FILES_FIXTURE_H
#define PB_TEST_FILES_FIXTURE_H

#include "tests/common/test_util.h"

#include "harness/status.h"

typedef struct files {
    char *dir;
    char out[512]; /* DIR/r.csv */
    bench_result res;
} files;

static inline int files_setup(void **state)
{
    files *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = make_temp_dir();
    snprintf(f->out, sizeof f->out, "%s/r.csv", f->dir);
    pb_error_clear();
    *state = f;
    return 0;
}

static inline int files_teardown(void **state)
{
    files *f = *state;
    remove_temp_dir(f->dir);
    free(f);
    return 0;
}

static inline void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

#endif /* PB_TEST_FILES_FIXTURE_H */
