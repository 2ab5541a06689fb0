/* The docs say what happens (issue 15): the commands they show run as
 * written, their links lead somewhere, and their sample rows have the CSV's
 * columns. The commands are parsed out of the markdown when the test runs,
 * so a renamed flag, a file that is gone or a changed exit code fails here.
 *
 *  - Every command line of the README's "Examples" section, and of every
 *    fenced block in README.md or docs/ marked `<!-- runnable ... -->` on
 *    the line before it, runs in a temporary folder laid out like the
 *    repository root: ./bench (a link), plots/ (links to the .gp scripts;
 *    images land beside them), results/ (copies of results/baselines), and
 *    the inputs the commands name, made from real runs: results/runs.csv
 *    (mlp-s, single on 1 and dp and mp on 2 CPU devices), base.csv (an
 *    mlp-xs run) and new.csv (the same run 20x slower on paper, both with
 *    a 1% spread, so `bench compare base.csv new.csv` has a regression to
 *    report whatever the machine's load). Nothing is
 *    written into the repository.
 *  - Each command must exit 0, or N where its comment says `exit N`. A
 *    block's commands run in one shell, in order (a variable set by one
 *    reaches the next), each with its own exit code checked.
 *  - Not run, by rules written here: a command that needs a GPU (one of
 *    gpu_markers), and the few long ones of not_run, each with its reason;
 *    each not_run entry must still be in the docs, so the list stays true.
 *    Where the build has no MPI, commands naming ddp or bench check (a
 *    rank per device); where gnuplot is not on PATH, commands that draw
 *    (as test_plot does).
 *  - Every relative link resolves, every path the docs name under a kept
 *    folder exists, and every sample CSV block's header names columns of
 *    the schema (harness/results.h).
 *  - Every test docs/reliability.md's guarantees table cites exists. */
#include "tests/common/files_fixture.h"
#include "tests/common/test_csv.h"

#include <ctype.h>
#include <glob.h>
#include <limits.h>

#include "harness/results.h"

/* Needs a GPU: never run here (CI and this machine have none). */
static const char *const gpu_markers[] = {"--backend cuda", "--precision bf16", "--precision tf32", "--cuda-graph",
                                          "test-gpu", "device-check", "nsys ", NULL};

/* Long or self-referential, not run; the command exactly as the docs have
 * it (spaces collapsed, comment dropped). */
static const struct {
    const char *cmd, *why;
} not_run[] = {
    {"make", "the build itself: this suite runs on the bench that build made"},
    {"make bench-cpu", "a performance check (paired rounds of steps and GEMMs): minutes"},
    {"make bench-comm", "a performance check (ABBA rounds under mpirun): minutes"},
    {"./bench sweep --strategies single,dp,ddp,mp --gpus 1,2,4 --workload mlp-s --repeats 3",
     "12 runs of mlp-s, some 30 s here; docs/sweep.md's baseline sweep (mlp-xs) runs the same code in 3 s"},
};
#define N_NOT_RUN (sizeof not_run / sizeof not_run[0])

/* The pages read: the README, then docs/ (globbed, so a new page is read). */
static size_t doc_pages(char pages[][64], size_t max)
{
    size_t n = 0;
    snprintf(pages[n++], 64, "README.md");
    glob_t g;
    if (glob("docs/*.md", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc && n < max; i++) snprintf(pages[n++], 64, "%s", g.gl_pathv[i]);
        globfree(&g);
    }
    assert_true(n > 5); /* the tests run in the repository root */
    return n;
}

/* ---- the commands of a fenced block -------------------------------------- */

typedef struct doc_cmd {
    char where[96]; /* page:line of its first line */
    char *code;     /* the shell text, comments dropped, lines kept */
    char flat[1024]; /* code on one line, spaces collapsed, for the rules */
    int expect;     /* exit code: 0, or N from "exit N" in its comment */
} doc_cmd;

typedef struct cmd_list {
    doc_cmd v[128];
    size_t n;
} cmd_list;

static void flatten(const char *code, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = code; *p && o + 1 < len; p++) {
        if (*p == '\\' && p[1] == '\n') continue;
        char c = (*p == '\n' || *p == '\t') ? ' ' : *p;
        if (c == ' ' && (o == 0 || out[o - 1] == ' ')) continue;
        out[o++] = c;
    }
    while (o > 0 && out[o - 1] == ' ') o--;
    out[o] = '\0';
}

static int comment_exit_code(const char *comment)
{
    for (const char *p = strstr(comment, "exit "); p; p = strstr(p + 5, "exit "))
        if (p[5] >= '0' && p[5] <= '9') return atoi(p + 5);
    return 0;
}

/* Splits the block that starts at p (the line after the opening fence) into
 * commands: a command goes on while a quote is open or a line ends in a
 * backslash; `#` after a blank (outside quotes) starts a comment. Returns
 * the line after the closing fence. */
static const char *parse_block(const char *page, const char *p, int *lineno, cmd_list *out)
{
    char code[8192] = "", comment[1024] = "";
    size_t clen = 0;
    int first_line = 0;
    bool in_s = false, in_d = false;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        (*lineno)++;
        const char *t = p;
        while (t < p + len && (*t == ' ' || *t == '\t')) t++;
        if (!in_s && !in_d && clen == 0 && strncmp(t, "```", 3) == 0) return eol ? eol + 1 : p + len;
        bool blank = t == p + len;
        if (clen == 0 && (blank || *t == '#')) { /* a comment line or a gap between commands */
            p = eol ? eol + 1 : p + len;
            continue;
        }
        if (clen == 0) first_line = *lineno;
        size_t keep = len;
        for (size_t i = 0; i < len; i++) {
            char c = p[i];
            if (in_s) in_s = c != '\'';
            else if (in_d) {
                if (c == '\\') i++;
                else in_d = c != '"';
            } else if (c == '\'') in_s = true;
            else if (c == '"') in_d = true;
            else if (c == '\\') i++;
            else if (c == '#' && (i == 0 || p[i - 1] == ' ' || p[i - 1] == '\t')) {
                keep = i;
                snprintf(comment + strlen(comment), sizeof comment - strlen(comment), "%.*s ", (int)(len - i), p + i);
                break;
            }
        }
        assert_true(clen + keep + 2 < sizeof code);
        memcpy(code + clen, p, keep);
        clen += keep;
        code[clen++] = '\n';
        code[clen] = '\0';
        while (keep > 0 && (p[keep - 1] == ' ' || p[keep - 1] == '\t')) keep--;
        bool continued = in_s || in_d || (keep > 0 && p[keep - 1] == '\\');
        if (!continued) {
            assert_true(out->n < sizeof out->v / sizeof out->v[0]);
            doc_cmd *c = &out->v[out->n++];
            snprintf(c->where, sizeof c->where, "%s:%d", page, first_line);
            c->code = strdup(code);
            flatten(code, c->flat, sizeof c->flat);
            c->expect = comment_exit_code(comment);
            clen = 0;
            code[0] = comment[0] = '\0';
        }
        p = eol ? eol + 1 : p + len;
    }
    fail_msg("%s: a fenced block is not closed", page);
    return p;
}

/* The line after the closing fence of a block not run (any text). */
static const char *skip_block(const char *p, int *lineno)
{
    while (*p) {
        const char *eol = strchr(p, '\n');
        (*lineno)++;
        const char *t = p;
        while (*t == ' ' || *t == '\t') t++;
        if (strncmp(t, "```", 3) == 0 || !eol) return eol ? eol + 1 : p + strlen(p);
        p = eol + 1;
    }
    return p;
}

/* The commands of the README's Examples section (its ```sh blocks, up to
 * the next heading of its level) and of the blocks marked runnable. */
static void collect(cmd_list *out, bool examples)
{
    char pages[32][64];
    size_t np = doc_pages(pages, 32);
    for (size_t i = 0; i < np; i++) {
        char *text = read_file(pages[i]);
        assert_non_null(text);
        bool in_examples = false, marked = false;
        int lineno = 0;
        for (const char *p = text; *p;) {
            const char *eol = strchr(p, '\n');
            lineno++;
            if (strncmp(p, "## ", 3) == 0) in_examples = strncmp(p, "## Examples\n", 12) == 0 && i == 0;
            if (strncmp(p, "```", 3) == 0) {
                bool shell = strncmp(p, "```sh\n", 6) == 0 || strncmp(p, "```bash\n", 8) == 0;
                if (examples ? in_examples && shell : marked) p = parse_block(pages[i], eol + 1, &lineno, out);
                else p = skip_block(eol + 1, &lineno);
                marked = false;
                continue;
            }
            if (strncmp(p, "<!-- runnable", 13) == 0) marked = true;
            else if (eol != p) marked = false; /* the marker must be right above the block */
            if (!eol) break;
            p = eol + 1;
        }
        free(text);
    }
}

static const char *needs_gpu(const doc_cmd *c)
{
    for (int i = 0; gpu_markers[i]; i++)
        if (strstr(c->flat, gpu_markers[i])) return gpu_markers[i];
    return NULL;
}

static int not_run_index(const doc_cmd *c)
{
    for (size_t i = 0; i < N_NOT_RUN; i++)
        if (strcmp(c->flat, not_run[i].cmd) == 0) return (int)i;
    return -1;
}

/* ---- the folder the commands run in -------------------------------------- */

typedef struct docs_dir {
    char *dir;
    bench_result r;
} docs_dir;

static void sh_quote(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++)
        if (*s == '\'') fputs("'\\''", f);
        else fputc(*s, f);
    fputc('\'', f);
}

/* The commands are checked once, on the normal build: under the sanitizers
 * (make SAN=1 test sets ASAN_OPTIONS) they would double this program's time
 * for paths the other tests already run there. */
static bool under_sanitizers(void) { return getenv("ASAN_OPTIONS") != NULL; }

static int docs_setup(void **state)
{
    docs_dir *d = calloc(1, sizeof *d);
    assert_non_null(d);
    *state = d;
    if (under_sanitizers()) return 0;
    d->dir = make_temp_dir();
    char bench[PATH_MAX], path[PATH_MAX + 64];
    assert_non_null(realpath(bench_path(), bench));
    snprintf(path, sizeof path, "%s/bench", d->dir);
    assert_int_equal(symlink(bench, path), 0);
    snprintf(path, sizeof path, "%s/plots", d->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/results", d->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/results/baselines", d->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    /* the scripts bench plot finds in ./plots when they are not beside the
     * binary (a build-san/bench), and that a hand-run gnuplot reads */
    glob_t g;
    assert_int_equal(glob("plots/*.gp", 0, NULL, &g), 0);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char src[PATH_MAX];
        assert_non_null(realpath(g.gl_pathv[i], src));
        snprintf(path, sizeof path, "%s/%s", d->dir, g.gl_pathv[i]);
        assert_int_equal(symlink(src, path), 0);
    }
    globfree(&g);
    /* bench predict's example inputs and topology files (read only) */
    char topo[PATH_MAX];
    assert_non_null(realpath("results/topologies", topo));
    snprintf(path, sizeof path, "%s/results/topologies", d->dir);
    assert_int_equal(symlink(topo, path), 0);
    /* copies: a command may append to a baseline (regenerating it) */
    if (glob("results/baselines/*.csv", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            char *text = read_file(g.gl_pathv[i]);
            assert_non_null(text);
            snprintf(path, sizeof path, "%s/%s", d->dir, g.gl_pathv[i]);
            write_text(path, text);
            free(text);
        }
        globfree(&g);
    }
    /* the inputs, from real runs: short mlp-s runs for the plots, an
     * mlp-xs row for compare */
    static const char *const prep[] = {
        "--workload mlp-s --iters 3 --warmup 1 --threads 1 --out results/runs.csv",
        "--strategy dp --gpus 2 --workload mlp-s --iters 3 --warmup 1 --threads 1 --out results/runs.csv",
        "--strategy mp --gpus 2 --workload mlp-s --iters 3 --warmup 1 --threads 1 --out results/runs.csv",
        "--workload mlp-xs --threads 1 --out base.csv",
    };
    for (size_t i = 0; i < sizeof prep / sizeof prep[0]; i++) {
        char cmd[PATH_MAX + 256];
        snprintf(cmd, sizeof cmd, "cd '%s' && ./bench --quiet %s", d->dir, prep[i]);
        run_argv_env(&d->r, NULL, (char *[]){"sh", "-c", cmd, NULL});
        if (d->r.exit_code != 0) fail_msg("preparing (%s): exit %d\n%s", prep[i], d->r.exit_code, d->r.err);
    }
    char base[PATH_MAX + 16], slowed[PATH_MAX + 16];
    snprintf(base, sizeof base, "%s/base.csv", d->dir);
    snprintf(slowed, sizeof slowed, "%s/new.csv", d->dir);
    /* the base run's spread pinned to 1%: on a loaded machine one stalled
     * step can make even a 20x drop "noise" for the t-test */
    write_slowed_cv(base, base, 1.0, 0.01);
    write_slowed_cv(base, slowed, 20.0, 0.01);
    return 0;
}

static int docs_teardown(void **state)
{
    docs_dir *d = *state;
    if (d) remove_temp_dir(d->dir);
    free(d);
    return 0;
}

/* Writes the commands as one bash script that runs each in the folder,
 * checks its exit code and counts the misses; runs it; fails with each
 * miss (page:line, exit code, the tail of its output). */
static void run_commands(docs_dir *d, cmd_list *cmds, bool *seen_not_run)
{
    char script[PATH_MAX + 16];
    snprintf(script, sizeof script, "%s/.docs.sh", d->dir);
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fprintf(f, "cd ");
    sh_quote(f, d->dir);
    fprintf(f, " || exit 99\nfails=0\n");
    int ran = 0;
    for (size_t i = 0; i < cmds->n; i++) {
        doc_cmd *c = &cmds->v[i];
        const char *gpu = needs_gpu(c);
        int nr = not_run_index(c);
        if (nr >= 0) seen_not_run[nr] = true;
        if (gpu || nr >= 0) {
            fprintf(f, "echo %s: not run: ", c->where);
            sh_quote(f, gpu ? "needs a GPU" : not_run[nr].why);
            fputc('\n', f);
            continue;
        }
        if (!PB_EXPECT_MPI && (strstr(c->flat, "ddp") || strstr(c->flat, "bench check"))) {
            fprintf(f, "echo %s: not run: built without MPI\n", c->where);
            continue;
        }
        ran++;
        /* drawing needs gnuplot, which scripts/run-tests.sh installs */
        bool draws = strstr(c->flat, "plot") != NULL;
        if (draws) fprintf(f, "if ! command -v gnuplot >/dev/null; then echo %s: not run: no gnuplot; else\n", c->where);
        fprintf(f, "SECONDS=0\n{\n%s} >.docs.log 2>&1 </dev/null\nrc=$?\n", c->code);
        fprintf(f, "echo \"%s: exit $rc in ${SECONDS} s\"\n", c->where);
        fprintf(f, "if [ $rc -ne %d ]; then\n  echo >&2; echo \"%s: exit $rc, expected %d:\" ", c->expect, c->where,
                c->expect);
        sh_quote(f, c->flat);
        fprintf(f, " >&2\n  tail -n 12 .docs.log >&2\n  fails=$((fails + 1))\nfi\n");
        if (draws) fprintf(f, "fi\n");
    }
    fprintf(f, "exit $fails\n");
    fclose(f);
    assert_true(ran > 0);
    run_argv_env(&d->r, NULL, (char *[]){"timeout", "300", "bash", script, NULL});
    if (d->r.exit_code != 0)
        fail_msg("%d command(s) of the docs did not exit as documented:%s", d->r.exit_code, d->r.err);
    print_message("%s", d->r.out);
    for (size_t i = 0; i < cmds->n; i++) free(cmds->v[i].code);
}

/* Collects the README's Examples (examples) or the blocks marked runnable,
 * at least at_least commands, and runs them; seen: which not_run entries
 * they hold. */
static void check_doc_commands(void **state, bool examples, size_t at_least, bool *seen)
{
    if (under_sanitizers()) skip();
    static cmd_list cmds;
    cmds.n = 0;
    collect(&cmds, examples);
    assert_true(cmds.n >= at_least);
    run_commands(*state, &cmds, seen);
}

static void test_readme_examples_run(void **state)
{
    bool seen[N_NOT_RUN] = {false};
    check_doc_commands(state, true, 10, seen);
    for (size_t i = 0; i < N_NOT_RUN; i++)
        if (!seen[i]) fail_msg("not_run names '%s', which the README's Examples no longer have", not_run[i].cmd);
}

static void test_runnable_doc_blocks_run(void **state)
{
    bool seen[N_NOT_RUN] = {false};
    check_doc_commands(state, false, 5, seen);
}

/* ---- links, paths and sample rows ----------------------------------------- */

/* Whether target, relative to page's folder (or to the root), exists. */
static bool resolves(const char *page, const char *target, size_t len)
{
    char rel[512], path[1024];
    snprintf(rel, sizeof rel, "%.*s", (int)len, target);
    char *hash = strchr(rel, '#');
    if (hash) *hash = '\0';
    if (!*rel) return true; /* a link within the page */
    const char *slash = strrchr(page, '/');
    snprintf(path, sizeof path, "%.*s%s", slash ? (int)(slash - page + 1) : 0, page, rel);
    return file_exists(path);
}

/* The folders whose files are kept in the repository: a path the docs name
 * under one of them is a file a reader can open (results/ and plots/out are
 * outputs, so only results/baselines/ counts there). */
static const char *const kept[] = {"docs/",   "harness/", "study/",   "strategies/", "kernels/",
                                   "workloads/", "tests/", "scripts/", "benchmarks/", "results/baselines/",
                                   "results/topologies/", NULL};

static bool path_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == '/';
}

/* A name made to stand for any in a folder (tests/e2e/PROGRAM.c; a bare
 * DESIGN.md is a file), or the start of a pattern ("plots/" then a star). */
static bool placeholder(const char *s, size_t len)
{
    const char *base = s;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '/') base = s + i + 1;
    bool upper = true;
    for (const char *p = base; p < s + len && *p != '.'; p++) upper = upper && !(*p >= 'a' && *p <= 'z');
    return (upper && base != s) || s[len] == '*' || s[len] == '<';
}

/* Whether the last part of s[0..len) has an extension: "x.md", not "docs/". */
static bool has_extension(const char *s, size_t len)
{
    const char *dot = NULL, *base = s;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '/') base = s + i + 1;
        if (s[i] == '.') dot = s + i;
    }
    return dot && dot > base && s + len - dot >= 2;
}

static void test_links_and_paths_resolve(void **state)
{
    (void)state;
    char pages[32][64];
    size_t np = doc_pages(pages, 32);
    char bad[4096] = "";
    for (size_t i = 0; i < np; i++) {
        char *text = read_file(pages[i]);
        assert_non_null(text);
        int line = 1;
        for (const char *p = text; *p; p++) {
            if (*p == '\n') line++;
            /* [text](target) and ![alt](target), relative ones */
            if (p[0] == ']' && p[1] == '(') {
                const char *t = p + 2, *end = strchr(t, ')');
                if (end && strncmp(t, "http", 4) != 0 && strncmp(t, "mailto:", 7) != 0 &&
                    !resolves(pages[i], t, (size_t)(end - t)))
                    snprintf(bad + strlen(bad), sizeof bad - strlen(bad), "\n%s:%d: link %.*s", pages[i], line,
                             (int)(end - t), t);
            }
            /* a path under a kept folder, or a bare NAME.md */
            if (p != text && path_char(p[-1])) continue;
            size_t len = 0;
            while (path_char(p[len])) len++;
            while (len > 0 && (p[len - 1] == '.' || p[len - 1] == '/')) len--;
            if (len < 4) continue;
            bool under_kept = false;
            for (int k = 0; kept[k]; k++) under_kept = under_kept || strncmp(p, kept[k], strlen(kept[k])) == 0;
            bool bare_md = !memchr(p, '/', len) && len > 3 && strncmp(p + len - 3, ".md", 3) == 0;
            if (!has_extension(p, len) || !(under_kept || bare_md) || placeholder(p, len)) continue;
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)len, p);
            char in_docs[300];
            snprintf(in_docs, sizeof in_docs, "docs/%s", name);
            if (!file_exists(name) && !(bare_md && file_exists(in_docs)))
                snprintf(bad + strlen(bad), sizeof bad - strlen(bad), "\n%s:%d: no file %s", pages[i], line, name);
            p += len - 1;
        }
        free(text);
    }
    if (*bad) fail_msg("the docs point at files the repository does not have:%s", bad);
}

/* A fenced block whose first line is a CSV header starting with a column
 * (a sample of rows): every name is a column, every row has as many fields.
 * A block of another file's rows says so on its fence ("```csv
 * schema=steps": the per-step file) and is not a run row. */
static void test_sample_rows_have_real_columns(void **state)
{
    (void)state;
    char pages[32][64];
    size_t np = doc_pages(pages, 32);
    int blocks = 0;
    for (size_t i = 0; i < np; i++) {
        char *text = read_file(pages[i]);
        assert_non_null(text);
        char *open = NULL; /* the body of the block being read */
        bool other_schema = false;
        for (char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
            if (strncmp(p, "```", 3) != 0) continue;
            if (!open) {
                char *nl = strchr(p, '\n');
                open = nl ? nl + 1 : NULL;
                char *schema = strstr(p, "schema=");
                other_schema = schema && nl && schema < nl && strncmp(schema, "schema=run", 10) != 0;
                continue;
            }
            char *body = open, *end = p;
            open = NULL;
            char *nl = strchr(body, '\n');
            bool csv_header = nl && nl < end && memchr(body, ',', (size_t)(nl - body)) &&
                              !memchr(body, ' ', (size_t)(nl - body));
            char first[64] = "";
            if (csv_header) sscanf(body, "%63[^,\n]", first);
            if (!csv_header || other_schema || pb_column_find(first) < 0) continue;
            blocks++;
            int ncols = 0;
            char header[2048];
            snprintf(header, sizeof header, "%.*s", (int)(nl - body), body);
            for (char *save = NULL, *name = strtok_r(header, ",", &save); name;
                 name = strtok_r(NULL, ",", &save), ncols++)
                if (pb_column_find(name) < 0) fail_msg("%s: sample header names '%s', not a column", pages[i], name);
            for (char *row = nl + 1; row < end;) {
                char *rend = strchr(row, '\n');
                int fields = 1;
                for (char *q = row; q < rend; q++) fields += *q == ',';
                if (fields != ncols)
                    fail_msg("%s: sample row '%.*s' has %d fields, its header %d", pages[i], (int)(rend - row), row,
                             fields, ncols);
                row = rend + 1;
            }
        }
        free(text);
    }
    assert_true(blocks >= 1); /* the README's */
}

/* ---- docs/reliability.md's citations ------------------------------------ */

/* Whether the source TEXT of a test program defines and registers test NAME: a
 * function `void NAME(` also named elsewhere (its cmocka_unit_test line),
 * or, in test_cli, a usage case `usage_X` of the table (USAGE_TEST(X)). */
static bool cites_a_test(const char *text, const char *name)
{
    char pat[160];
    if (strncmp(name, "usage_", 6) == 0) {
        snprintf(pat, sizeof pat, "USAGE_TEST(%s)", name + 6);
        return strstr(text, pat) != NULL;
    }
    int seen = 0;
    bool defined = false;
    size_t n = strlen(name);
    for (const char *p = strstr(text, name); p; p = strstr(p + n, name)) {
        if ((p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) || isalnum((unsigned char)p[n]) ||
            p[n] == '_')
            continue;
        seen++;
        defined |= p >= text + 5 && strncmp(p - 5, "void ", 5) == 0 && p[n] == '(';
    }
    return defined && seen >= 2;
}

/* The source of test program PROG (tests/unit, tests/e2e, or tests/gpu
 * for make test-gpu's), or NULL. */
static char *test_source(const char *prog)
{
    static const char *const dirs[] = {"tests/unit", "tests/e2e", "tests/gpu"};
    char path[256];
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.c", dirs[i], prog);
        if (file_exists(path)) return read_file(path);
    }
    return NULL;
}

/* Every test the guarantees table cites exists and runs: `PROGRAM:function`,
 * a bare `function` after it in the same cell (the same program), or a bare
 * `PROGRAM`; `usage_*` (every usage case) and text in backticks that is no
 * name (`make mutants`, `PB_FAULT`, `PB_FAULT kind=slow`) are not names. */
static void test_reliability_citations_exist(void **state)
{
    (void)state;
    char *text = read_file("docs/reliability.md");
    assert_non_null(text);
    char *start = strstr(text, "\n## Guarantees and their tests");
    assert_non_null(start);
    char *stop = strstr(start + 1, "\n## ");
    if (stop) *stop = '\0';
    char bad[4096] = "";
    int cited = 0, line = 1;
    for (const char *p = text; p < start; p++) line += *p == '\n';
    for (char *row = start + 1; row && *row; row = strchr(row, '\n'), row = row ? row + 1 : NULL) {
        line++;
        if (*row != '|') continue;
        char *eol = strchr(row, '\n'), *cell = eol ? eol : row + strlen(row);
        while (cell > row && cell[-1] != '|') cell--; /* the closing bar */
        if (cell > row) cell--;
        while (cell > row && cell[-1] != '|') cell--; /* the last cell: the tests */
        char prog[128] = "";
        for (char *q = strchr(cell, '`'); q && (!eol || q < eol); q = strchr(q + 1, '`')) {
            char *close = strchr(q + 1, '`');
            if (!close || (eol && close > eol)) break;
            char tok[128];
            snprintf(tok, sizeof tok, "%.*s", (int)(close - q - 1), q + 1);
            q = close;
            bool name = *tok != '\0';
            for (char *t = tok; *t; t++) /* test names are lower case: not PB_FAULT */
                name &= islower((unsigned char)*t) || isdigit((unsigned char)*t) || *t == '_' || *t == ':' || *t == '*';
            if (!name || strchr(tok, '*')) continue;
            char *colon = strchr(tok, ':'), *fn = tok;
            if (colon) {
                *colon = '\0';
                snprintf(prog, sizeof prog, "%s", tok);
                fn = colon + 1;
            }
            char *src = test_source(colon ? prog : tok);
            if (!colon && src) { /* a bare program */
                free(src);
                cited++;
                continue;
            }
            if (!*prog) {
                snprintf(bad + strlen(bad), sizeof bad - strlen(bad), "\n  line %d: `%s`: no program", line, tok);
                continue;
            }
            if (!colon) src = test_source(prog);
            if (!src || !cites_a_test(src, fn))
                snprintf(bad + strlen(bad), sizeof bad - strlen(bad), "\n  line %d: %s:%s", line, prog, fn);
            free(src);
            cited++;
        }
    }
    free(text);
    assert_true(cited > 100);
    if (*bad) fail_msg("docs/reliability.md cites tests that do not exist:%s", bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_readme_examples_run, docs_setup, docs_teardown),
        cmocka_unit_test_setup_teardown(test_runnable_doc_blocks_run, docs_setup, docs_teardown),
        cmocka_unit_test(test_links_and_paths_resolve),
        cmocka_unit_test(test_sample_rows_have_real_columns),
        cmocka_unit_test(test_reliability_citations_exist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
