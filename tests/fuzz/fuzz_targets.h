/* The two fuzz entry points, shared by the libFuzzer targets (fuzz_csv.c,
 * fuzz_cli.c) and by tests/unit/test_fuzz_regressions.c, which replays the
 * seed corpus and every kept crash input through them under `make test`.
 *
 * Each returns normally for any input; a bug shows up as a sanitizer report
 * or as abort() on a broken invariant. */
#ifndef PB_FUZZ_TARGETS_H
#define PB_FUZZ_TARGETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/config.h"
#include "study/csv_read.h"
#include "harness/status.h"

#define PB_FUZZ_MAX_ARGS 32

/* pb_csv_parse on the bytes (the reader behind `bench compare` and sweep
 * resume), then every accessor over what it stored. */
static inline int pb_fuzz_csv(const uint8_t *data, size_t size)
{
    /* an exact-size copy: the parser must not read past len */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);
    pb_csv c;
    memset(&c, 0x5a, sizeof c); /* the parser must not rely on *out's contents */
    pb_status st = pb_csv_parse("fuzz.csv", text, size, &c);
    if (st == PB_OK) {
        char buf[64];
        size_t total = 0;
        for (size_t col = 0; col < c.ncols; col++) {
            const char *name = pb_csv_name(&c, col);
            total += strlen(name);
            /* header names are unique and non-empty, so each finds itself */
            if (!*name || pb_csv_find(&c, name) != (int)col) abort();
            pb_csv_excerpt(name, buf, sizeof buf);
        }
        for (size_t row = 0; row < c.nrows; row++)
            for (size_t col = 0; col < c.ncols; col++) {
                const char *v = pb_csv_get(&c, row, col);
                total += strlen(v);
                pb_csv_excerpt(v, buf, sizeof buf);
            }
        /* decoded text is never longer than the input (plus a NUL each) */
        if (total > size) abort();
        static const char *const names[] = {"strategy", "gpus", "time_ms", "git_rev", "", "\"", "a"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            int col = pb_csv_find(&c, names[i]);
            if (col >= 0 && ((size_t)col >= c.ncols || strcmp(pb_csv_name(&c, (size_t)col), names[i]) != 0))
                abort();
        }
        size_t kept = c.nskipped < PB_CSV_SKIP_KEPT ? c.nskipped : PB_CSV_SKIP_KEPT;
        for (size_t i = 0; i < kept; i++) pb_csv_skip_text(&c.skip[i], c.ncols, buf, sizeof buf);
    } else if (!*pb_error_message()) {
        abort(); /* a failure always says why */
    }
    pb_csv_free(&c);
    pb_csv_free(&c); /* freeing twice is allowed */
    pb_error_clear();
    free(text);
    return 0;
}

/* The bytes split on NUL or newline into at most PB_FUZZ_MAX_ARGS
 * arguments, then pb_config_parse and, when that succeeds,
 * pb_config_validate (with --out pointed at a folder that does not exist,
 * so validation touches no file). */
static inline int pb_fuzz_cli(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);
    text[size] = '\0';
    char *argv[PB_FUZZ_MAX_ARGS + 1];
    int argc = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && argc < PB_FUZZ_MAX_ARGS; i++) {
        if (i == size || text[i] == '\0' || text[i] == '\n') {
            text[i] = '\0';
            if (i < size || i > start) argv[argc++] = text + start;
            start = i + 1;
        }
    }
    argv[argc] = NULL;
    pb_config cfg;
    pb_config_defaults(&cfg);
    bool help = false;
    pb_status st = pb_config_parse(&cfg, argc, argv, &help);
    if (st != PB_OK && !*pb_error_message()) abort();
    if (st == PB_OK && !help) {
        snprintf(cfg.out, sizeof cfg.out, "/nonexistent-parbench-fuzz/runs.csv");
        pb_config_validate(&cfg);
    }
    pb_error_clear();
    free(text);
    return 0;
}

#endif /* PB_FUZZ_TARGETS_H */
