/* The tree's arrows go one way (README "Layout"): read from the sources'
 * #include lines, resolved against the including file's folder.
 *
 * 1. the leaf utilities (status, log, timer, NVTX, the phase names, the
 *    shape types, statistics, number parsing) include nothing of the
 *    project but their own header;
 * 2. the run core (harness/) includes nothing of the study tools (study/)
 *    except main.c, whose command table calls both;
 * 3. the study tools include from harness/ only the results schema, the
 *    config names sweep needs and leaf utilities;
 * 4. the phase timer calls neither progress nor fault (run.c registers them
 *    as hooks), and they do not include the timer: no circle;
 * 5. workloads/ include nothing of the run's configuration;
 * 6. kernels/ (backends, comms, the MPI world, the progress slots) include
 *    from harness/ only the leaf utilities and poll (deadline polling,
 *    which builds on the timer alone): a backend reads pb_device_opts and
 *    a comm pb_comm_opts (harness/shape.h), not the run's config;
 * 7. the run core and the strategies reach the MPI world through
 *    kernels/world.h and never call MPI themselves; only the registry's comm
 *    table names the `mpi` comm (kernels/comm_mpi.h);
 * 8. strategies/ include nothing of the study tools. */
#include "tests/common/test_util.h"

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>

#ifndef PB_SRC_DIR
#error "tests.mk defines PB_SRC_DIR (the source tree)"
#endif

enum { MAX_INC = 64 };

/* The project files path (relative to the tree) includes, as tree-relative
 * paths; system headers (<...>) are not listed. */
static int includes(const char *path, char inc[MAX_INC][PATH_MAX])
{
    char full[PATH_MAX];
    snprintf(full, sizeof full, "%s/%s", PB_SRC_DIR, path);
    char *text = read_file(full);
    if (!text) fail_msg("cannot read %s", full);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else dir[0] = '\0';
    int n = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[PATH_MAX];
        if (sscanf(line, " #include \"%4095[^\"]\"", name) != 1) continue;
        assert_true(n < MAX_INC);
        /* resolve "../x/y.h" against dir */
        char joined[2 * PATH_MAX], *part[64];
        int np = 0;
        snprintf(joined, sizeof joined, "%s%s%s", dir, *dir ? "/" : "", name);
        for (char *s2 = NULL, *p = strtok_r(joined, "/", &s2); p; p = strtok_r(NULL, "/", &s2)) {
            if (strcmp(p, "..") == 0) {
                if (np) np--;
            } else if (strcmp(p, ".") != 0) {
                part[np++] = p;
            }
        }
        inc[n][0] = '\0';
        for (int i = 0; i < np; i++) {
            strcat(inc[n], i ? "/" : "");
            strcat(inc[n], part[i]);
        }
        n++;
    }
    free(text);
    return n;
}

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return true;
    return false;
}

/* Every file of a folder ending in .c, .h, .cu or .cuh, tree-relative. */
static int folder(const char *dir, char files[][PATH_MAX], int max)
{
    char full[PATH_MAX];
    snprintf(full, sizeof full, "%s/%s", PB_SRC_DIR, dir);
    DIR *d = opendir(full);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const char *dot = strrchr(e->d_name, '.');
        if (!dot || dot == e->d_name || (strcmp(dot, ".c") != 0 && strcmp(dot, ".h") != 0 && strcmp(dot, ".cu") != 0 &&
                                        strcmp(dot, ".cuh") != 0))
            continue;
        assert_true(n < max);
        snprintf(files[n++], PATH_MAX, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    return n;
}

static void test_leaves_include_nothing_above(void **state)
{
    (void)state;
    static const char *const leaves[] = {"status", "log", "timer", "nvtx", "phase_names", "shape", "stats", "parse"};
    static char inc[MAX_INC][PATH_MAX];
    for (size_t i = 0; i < sizeof leaves / sizeof leaves[0]; i++)
        for (int c = 0; c < 2; c++) {
            char path[PATH_MAX], own[PATH_MAX];
            snprintf(path, sizeof path, "harness/%s.%s", leaves[i], c ? "c" : "h");
            snprintf(own, sizeof own, "harness/%s.h", leaves[i]);
            char full[2 * PATH_MAX];
            snprintf(full, sizeof full, "%s/%s", PB_SRC_DIR, path);
            if (c && !file_exists(full)) continue; /* a header only (shape.h) */
            int n = includes(path, inc);
            for (int k = 0; k < n; k++)
                if (strcmp(inc[k], own) != 0) fail_msg("%s (a leaf) includes %s", path, inc[k]);
        }
}

static void test_run_core_and_study_tools(void **state)
{
    (void)state;
    static char files[256][PATH_MAX], inc[MAX_INC][PATH_MAX];
    int n = folder("harness", files, 256);
    for (int f = 0; f < n; f++) {
        if (strcmp(files[f], "harness/main.c") == 0) continue;
        int m = includes(files[f], inc);
        for (int k = 0; k < m; k++)
            if (starts_with(inc[k], "study/")) fail_msg("%s (the run core) includes %s", files[f], inc[k]);
    }
    /* what the study tools may use of harness/ (env.h: the environment a
     * run records, which sweep fills the same way to resume only its own) */
    static const char *const allowed[] = {
        "harness/results.h", "harness/config.h", "harness/registry.h", "harness/status.h", "harness/log.h",
        "harness/parse.h",   "harness/paths.h",  "harness/child.h",    "harness/stats.h",  "harness/env.h",
        "harness/envvars.h", /* the env_vars column's format, read back by compare */
        "harness/comm_fit.h", /* bench comm's busbw factors and alpha-beta fit (libc only): predict refits with it */
        "harness/memplan.h", /* the run's memory plan (a pure function of config and model): predict's memory
                              * per device is the plan a run of that configuration would make */
        NULL};
    n = folder("study", files, 256);
    assert_true(n >= 10);
    for (int f = 0; f < n; f++) {
        int m = includes(files[f], inc);
        for (int k = 0; k < m; k++) {
            if (starts_with(inc[k], "study/")) continue;
            if (!in_list(inc[k], allowed)) fail_msg("%s (a study tool) includes %s", files[f], inc[k]);
        }
    }
}

static void test_no_circle_below_the_run(void **state)
{
    (void)state;
    static char inc[MAX_INC][PATH_MAX], files[64][PATH_MAX];
    static const char *const timer_callers[] = {"kernels/progress.h", "harness/fault.h", NULL};
    static const char *const below_timer[] = {"harness/phase.h", NULL};
    static const char *const checked[][2] = {
        {"harness/phase.c", "progress/fault"}, {"harness/phase.h", "progress/fault"},
        {"harness/fault.h", "phase"},          {"harness/fault.c", "phase"},
        {"kernels/progress.h", "phase"},       {"kernels/progress.c", "phase"},
    };
    for (size_t i = 0; i < sizeof checked / sizeof checked[0]; i++) {
        int m = includes(checked[i][0], inc);
        const char *const *banned = strcmp(checked[i][1], "phase") == 0 ? below_timer : timer_callers;
        for (int k = 0; k < m; k++)
            if (in_list(inc[k], banned)) fail_msg("%s includes %s (a circle)", checked[i][0], inc[k]);
    }
    int n = folder("workloads", files, 64);
    for (int f = 0; f < n; f++) {
        int m = includes(files[f], inc);
        for (int k = 0; k < m; k++)
            if (strcmp(inc[k], "harness/config.h") == 0) fail_msg("%s includes the run's configuration", files[f]);
    }
}

static const char *const leaf_headers[] = {
    "harness/status.h",      "harness/log.h",   "harness/timer.h", "harness/nvtx.h",  "harness/phase_names.h",
    "harness/shape.h",       "harness/stats.h", "harness/parse.h", "harness/poll.h",  NULL};

static void test_kernels_include_only_leaves(void **state)
{
    (void)state;
    static char files[256][PATH_MAX], inc[MAX_INC][PATH_MAX];
    static const char *const dirs[] = {"kernels", "kernels/cpu", "kernels/cuda"};
    int total = 0;
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        int n = folder(dirs[d], files, 256);
        total += n;
        for (int f = 0; f < n; f++) {
            int m = includes(files[f], inc);
            for (int k = 0; k < m; k++) {
                if (starts_with(inc[k], "kernels/")) continue;
                if (!in_list(inc[k], leaf_headers)) fail_msg("%s (below the run) includes %s", files[f], inc[k]);
            }
        }
    }
    assert_true(total >= 30);
    /* poll is allowed above as a leaf that builds on the timer alone */
    static const char *const poll_may[] = {"harness/poll.h", "harness/timer.h", NULL};
    for (int c = 0; c < 2; c++) {
        const char *path = c ? "harness/poll.c" : "harness/poll.h";
        int m = includes(path, inc);
        for (int k = 0; k < m; k++)
            if (!in_list(inc[k], poll_may)) fail_msg("%s includes %s (kernels/ use it as a leaf)", path, inc[k]);
    }
}

/* The text of a tree-relative file holds needle. */
static bool mentions(const char *path, const char *needle)
{
    char full[PATH_MAX];
    snprintf(full, sizeof full, "%s/%s", PB_SRC_DIR, path);
    char *text = read_file(full);
    if (!text) fail_msg("cannot read %s", full);
    bool found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

static void test_world_below_run_and_comms(void **state)
{
    (void)state;
    static char files[256][PATH_MAX], inc[MAX_INC][PATH_MAX];
    static const char *const dirs[] = {"harness", "strategies"};
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        int n = folder(dirs[d], files, 256);
        for (int f = 0; f < n; f++) {
            int m = includes(files[f], inc);
            for (int k = 0; k < m; k++)
                if (strcmp(inc[k], "kernels/comm_mpi.h") == 0 && strcmp(files[f], "harness/registry.c") != 0)
                    fail_msg("%s includes %s: the world is kernels/world.h", files[f], inc[k]);
            if (mentions(files[f], "<mpi.h>")) fail_msg("%s calls MPI itself: the world's agreements are kernels/world.h", files[f]);
            if (d == 1) {
                for (int k = 0; k < m; k++)
                    if (starts_with(inc[k], "study/")) fail_msg("%s (a strategy) includes %s", files[f], inc[k]);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leaves_include_nothing_above),
        cmocka_unit_test(test_run_core_and_study_tools),
        cmocka_unit_test(test_no_circle_below_the_run),
        cmocka_unit_test(test_kernels_include_only_leaves),
        cmocka_unit_test(test_world_below_run_and_comms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
