/* Shared helpers for the cmocka tests: run ./bench as a child process and
 * capture its exit code, stdout and stderr; temporary folders; file reads. */
#ifndef PB_TEST_UTIL_H
#define PB_TEST_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* also set by tests.mk, so any include order works */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <ftw.h>
#include <unistd.h>

#include <cmocka.h>
#include <math.h>

/* cmocka's assert_float_equal casts to float and passes when either side is
 * NaN (every comparison with NaN is false, and it fails only on one that is
 * true): a test of a NaN result passed, and a tolerance below float's
 * precision meant nothing. Here: in double, and NaN or infinity on either
 * side fails unless both are the same infinity. */
static inline void pb_assert_near(double a, double b, double eps, const char *ea, const char *eb, const char *file,
                                  int line)
{
    if (fabs(a - b) <= eps || (isinf(a) && a == b)) return;
    print_error("%s = %.17g is not within %g of %s = %.17g\n", ea, a, eps, eb, b);
    _fail(file, line);
}
#undef assert_float_equal
#define assert_float_equal(a, b, epsilon) pb_assert_near((a), (b), (epsilon), #a, #b, __FILE__, __LINE__)

typedef struct bench_result {
    int exit_code; /* -signal when killed */
    char out[1 << 16];
    char err[1 << 16];
} bench_result;

/* Path of the bench binary under test ($BENCH, default ./bench). */
static inline const char *bench_path(void)
{
    const char *p = getenv("BENCH");
    return p && *p ? p : "./bench";
}

static inline void read_all(int fd, char *buf, size_t len)
{
    size_t n = 0;
    ssize_t got;
    while (n + 1 < len && (got = read(fd, buf + n, len - 1 - n)) > 0) n += (size_t)got;
    buf[n] = '\0';
    char sink[4096];
    while (read(fd, sink, sizeof sink) > 0) {
    }
}

/* Runs argv (argv[0] a path, or a name looked up on PATH) with stdout and
 * stderr captured and optional extra environment ("NAME=value",
 * NULL-terminated, may be NULL). */
static inline void run_argv_env(bench_result *r, char *const env_add[], char *const argv[])
{
    char out_tmpl[] = "/tmp/pb_out_XXXXXX", err_tmpl[] = "/tmp/pb_err_XXXXXX";
    int out_fd = mkstemp(out_tmpl), err_fd = mkstemp(err_tmpl);
    assert_true(out_fd >= 0 && err_fd >= 0);
    unlink(out_tmpl);
    unlink(err_tmpl);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out_fd, 1);
        dup2(err_fd, 2);
        for (int i = 0; env_add && env_add[i]; i++) putenv(env_add[i]);
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    r->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    lseek(out_fd, 0, SEEK_SET);
    lseek(err_fd, 0, SEEK_SET);
    read_all(out_fd, r->out, sizeof r->out);
    read_all(err_fd, r->err, sizeof r->err);
    close(out_fd);
    close(err_fd);
}

/* Runs bench with a NULL-terminated argument list (without argv[0]) and
 * optional extra environment (as run_argv_env). */
static inline void run_bench_env(bench_result *r, char *const env_add[], char *const args[])
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)bench_path();
    for (int i = 0; args[i] && argc < 63; i++) argv[argc++] = args[i];
    argv[argc] = NULL;
    run_argv_env(r, env_add, argv);
}

static inline void run_bench(bench_result *r, char *const args[]) { run_bench_env(r, NULL, args); }

/* run_bench_env with every file bench writes limited to `limit` bytes (0:
 * no limit): a full disk. The limit is set here and inherited (bench,
 * mpirun and the ranks, a sweep's children); the captured stdout and
 * stderr stay below it. */
static inline void run_bench_fsize(bench_result *r, rlim_t limit, char *const env_add[], char *const args[])
{
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    if (limit) lim.rlim_cur = limit;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    run_bench_env(r, env_add, args);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
}

/* Fresh empty folder under /tmp; caller owns the returned string. */
static inline char *make_temp_dir(void)
{
    char *tmpl = strdup("/tmp/pb_test_XXXXXX");
    assert_non_null(mkdtemp(tmpl));
    return tmpl;
}

static inline int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes a folder made by make_temp_dir and everything in it, and frees it. */
static inline void remove_temp_dir(char *dir)
{
    if (!dir) return;
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static inline int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* How many times needle (not empty) occurs in s, without overlaps. */
static inline int count_substr(const char *s, const char *needle)
{
    int n = 0;
    size_t len = strlen(needle);
    for (const char *p = strstr(s, needle); p; p = strstr(p + len, needle)) n++;
    return n;
}

/* Whether s holds a source location ("run.c:70:", "x.cu:12:"): internal
 * errors carry one, messages for people do not. */
static inline int has_source_location(const char *s)
{
    for (const char *p = strstr(s, ".c"); p; p = strstr(p + 1, ".c")) {
        const char *q = p + 2;
        if (*q == 'u') q++;
        if (*q++ != ':' || *q < '0' || *q > '9') continue;
        while (*q >= '0' && *q <= '9') q++;
        if (*q == ':') return 1;
    }
    return 0;
}

/* Whole file into a malloc'd string (NULL when missing). */
static inline char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

static inline int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A stand-in for a tool bench runs: an executable shell script dir/name
 * running body; path_env gets "PATH=dir:$PATH", so that bench, given it,
 * runs the script instead of the tool. */
static inline void fake_tool(const char *dir, const char *name, const char *body, char *path_env, size_t len)
{
    char script[4200];
    snprintf(script, sizeof script, "%s/%s", dir, name);
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    assert_int_equal(chmod(script, 0755), 0);
    const char *path = getenv("PATH");
    snprintf(path_env, len, "PATH=%s:%s", dir, path ? path : "/usr/bin:/bin");
}

#endif /* PB_TEST_UTIL_H */
