/* The command line as a user meets it: ./bench run as a child process.
 *
 * Bad input (issue: "one line naming the flag and what is allowed, exit code
 * 2, nothing written"): every case is its own test, run twice with --out in a
 * fresh temp folder: once where the CSV does not exist (it must not be
 * created) and once over a valid CSV (it must stay byte-for-byte the same).
 * Then --help, `bench list`, a minimal successful run and two run-time
 * failures. pb_config_parse in process (shape overrides, --lr defaults,
 * --gpus against the devices present) is tests/unit/test_cli_lib.c.
 *
 * Unwritable --out: the tests run as root, and root ignores permission bits,
 * so a chmod'ed folder would not stop it. They use paths nothing can write
 * even as root: a folder under /proc (procfs refuses to create files), a
 * path that is a directory, and a file "inside" a regular file. */
#include "tests/common/test_util.h"

#include <math.h>

#include "harness/config.h"
#include "harness/registry.h"
#include "harness/results.h"
#include "kernels/cpu/blas_core.h"
#include "kernels/cpu/blas_info.h"

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */

/* Fields of one CSV line (RFC 4180: commas inside quotes do not count);
 * -1 when the line is malformed (an unbalanced quote). */
static int csv_field_count(const char *line, size_t len)
{
    int fields = 1;
    bool quoted = false;
    for (size_t i = 0; i < len; i++) {
        char c = line[i];
        if (quoted) {
            if (c == '"') {
                if (i + 1 < len && line[i + 1] == '"') i++;
                else quoted = false;
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            fields++;
        }
    }
    return quoted ? -1 : fields;
}

/* The n-th (0-based) field of a CSV line without quotes, into out. */
static void csv_field(const char *line, int n, char *out, size_t out_len)
{
    int f = 0;
    bool quoted = false;
    size_t k = 0;
    for (const char *p = line; *p && *p != '\n'; p++) {
        if (quoted) {
            if (*p == '"' && p[1] == '"') {
                p++;
            } else if (*p == '"') {
                quoted = false;
                continue;
            }
        } else if (*p == '"') {
            quoted = true;
            continue;
        } else if (*p == ',') {
            if (f++ == n) break;
            continue;
        }
        if (f == n && k + 1 < out_len) out[k++] = *p;
    }
    out[k] = '\0';
}

static char *header_text(void)
{
    static char buf[8192];
    pb_results_header(buf, sizeof buf);
    return buf;
}

/* A valid results file: this build's header and one row. */
static void write_valid_csv(const char *path)
{
    pb_record *r = calloc(1, sizeof *r);
    assert_non_null(r);
    pb_record_set(r, PB_COL_TIME_UTC, "2026-01-01T00:00:00Z");
    pb_record_set(r, PB_COL_STATUS, "ok");
    pb_record_set(r, PB_COL_STRATEGY, "single");
    pb_record_set(r, PB_COL_STEP_MS_P50, "1.5");
    char row[1 << 16];
    size_t n = pb_results_format(r, row, sizeof row);
    assert_true(n > 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(header_text(), f);
    fputs(row, f);
    fclose(f);
    free(r);
}

static void remove_tree(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static bench_result *new_result(void)
{
    bench_result *r = calloc(1, sizeof *r);
    assert_non_null(r);
    return r;
}

/* Builds argv: "@OUT" in args becomes out; when args has neither "@OUT"
 * nor an --out of its own, "--out out" is put first. */
static void build_args(char **argv, int max, const char *const *args, const char *out)
{
    int n = 0;
    bool has_out = false;
    for (int i = 0; args[i]; i++) has_out |= strcmp(args[i], "@OUT") == 0 || strcmp(args[i], "--out") == 0;
    if (!has_out) {
        argv[n++] = "--out";
        argv[n++] = (char *)out;
    }
    for (int i = 0; args[i] && n < max - 1; i++) argv[n++] = strcmp(args[i], "@OUT") == 0 ? (char *)out : (char *)args[i];
    argv[n] = NULL;
}

static void print_on_failure(const bench_result *r)
{
    print_message("exit %d\nstdout: %s\nstderr: %s\n", r->exit_code, r->out, r->err);
}

/* ------------------------------------------------------------------------ */
/* bad input: exit 2, one line on stderr naming the flag and what is allowed */

typedef struct usage_case {
    const char *args[16]; /* NULL-terminated; "@OUT" = the temp --out path */
    const char *flag;     /* the flag the message must name */
    const char *allowed;  /* what the message must say is allowed */
    const char *also;     /* another phrase the message must hold, or NULL */
    bool out_given;       /* the case sets its own --out: no "existing CSV" pass */
} usage_case;

static void check_usage_error(const usage_case *c, const char *out, bench_result *r)
{
    char *argv[40];
    build_args(argv, 40, c->args, out);
    run_bench(r, argv);
    if (r->exit_code != 2 || count_lines(r->err) != 1 || !strstr(r->err, c->flag) ||
        !strstr(r->err, c->allowed) || (c->also && !strstr(r->err, c->also)) || r->out[0])
        print_on_failure(r);
    assert_int_equal(r->exit_code, 2);
    assert_int_equal(count_lines(r->err), 1);
    assert_int_equal(r->err[strlen(r->err) - 1], '\n');
    assert_non_null(strstr(r->err, c->flag));
    assert_non_null(strstr(r->err, c->allowed));
    if (c->also) assert_non_null(strstr(r->err, c->also));
    assert_string_equal(r->out, ""); /* stdout carries only what was asked for */
    if (has_source_location(r->err)) fail_msg("a usage error with a source location: %s", r->err);
}

static void test_usage(void **state)
{
    const usage_case *c = *state;
    char *dir = make_temp_dir();
    char out[4200];
    snprintf(out, sizeof out, "%s/runs.csv", dir);
    bench_result *r = new_result();

    /* 1. no results file yet: none is created, the folder stays empty */
    check_usage_error(c, out, r);
    if (!c->out_given) {
        assert_false(file_exists(out));
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", dir);
        assert_int_equal(system(cmd), 0);
    }

    /* 2. an existing valid results file is left byte-for-byte unchanged */
    if (!c->out_given) {
        write_valid_csv(out);
        char *before = read_file(out);
        check_usage_error(c, out, r);
        char *after = read_file(out);
        assert_non_null(after);
        assert_string_equal(before, after);
        free(before);
        free(after);
    }
    free(r);
    remove_tree(dir);
    free(dir);
}

#define ARGS(...) {__VA_ARGS__, NULL}

static const usage_case unknown_strategy = {ARGS("--strategy", "nosuch"), "--strategy", "allowed: single", "nosuch", false};
static const usage_case unknown_workload = {ARGS("--workload", "mlp-xxl"), "--workload", "allowed: mlp-xs, mlp-s", "mlp-xxl", false};
static const usage_case unknown_backend = {ARGS("--backend", "tpu"), "--backend", "allowed: auto, cpu, cuda", "tpu", false};
static const usage_case unknown_comm = {ARGS("--comm", "gloo"), "--comm", "allowed: auto, none", "gloo", false};
static const usage_case unknown_precision = {ARGS("--precision", "fp8"), "--precision", "allowed: fp32, tf32, bf16", "fp8", false};
static const usage_case unknown_optimizer = {ARGS("--optimizer", "adam"), "--optimizer", "allowed: sgd, adamw", "adam", false};
/* an unknown flag or stray word: the message points at --help for what is allowed */
static const usage_case unknown_flag = {ARGS("--iterations", "5"), "--iterations", "see --help", "unknown flag", false};
static const usage_case stray_positional = {ARGS("--iters", "2", "fast"), "'fast'", "see --help", "unexpected argument", false};
static const usage_case unknown_subcommand = {ARGS("frobnicate", "--out", "@OUT"), "'frobnicate'", "allowed: run, list, calibrate, comm, check, compare, plot, predict, sweep, help", NULL, false};
static const usage_case iters_not_number = {ARGS("--iters", "abc"), "--iters", "allowed: 1 to 1000000", "not an integer", false};
static const usage_case iters_trailing_junk = {ARGS("--iters", "5x"), "--iters", "allowed: 1 to 1000000", "not an integer", false};
static const usage_case iters_zero = {ARGS("--iters", "0"), "--iters", "allowed: 1 to 1000000", "out of range", false};
static const usage_case iters_negative = {ARGS("--iters", "-3"), "--iters", "allowed: 1 to 1000000", "out of range", false};
static const usage_case iters_overflow = {ARGS("--iters", "99999999999999999999"), "--iters", "allowed: 1 to 1000000", NULL, false};
static const usage_case warmup_negative = {ARGS("--warmup", "-1"), "--warmup", "allowed: 0 to", NULL, false};
static const usage_case batch_zero = {ARGS("--batch", "0"), "--batch", "allowed: 1 to", "out of range", false};
static const usage_case hidden_negative = {ARGS("--hidden", "-1"), "--hidden", "allowed: 1 to", "out of range", false};
static const usage_case in_zero = {ARGS("--in", "0"), "--in", "allowed: 1 to", NULL, false};
static const usage_case classes_one = {ARGS("--classes", "1"), "--classes", "allowed: 2 to", NULL, false};
static const usage_case layers_too_many = {ARGS("--layers", "1000"), "--layers", "allowed: 1 to 256", "out of range", false};
static const usage_case lr_nan = {ARGS("--lr", "nan"), "--lr", "allowed: 0 to 10", "not a number", false};
static const usage_case lr_inf = {ARGS("--lr", "inf"), "--lr", "allowed: 0 to 10", "not a number", false};
static const usage_case lr_negative = {ARGS("--lr", "-1"), "--lr", "allowed: 0 to 10", "out of range", false};
static const usage_case seed_negative = {ARGS("--seed", "-5"), "--seed", "allowed: 0 to 18446744073709551615", NULL, false};
static const usage_case threads_zero = {ARGS("--threads", "0"), "--threads", "allowed: 1 to", NULL, false};
/* --gpus N on single: the divisibility check runs first (mlp-s has batch 256,
 * not divisible by 3), so each message is reached with its own inputs */
static const usage_case gpus_3_single = {ARGS("--gpus", "3"), "--gpus 3", "split evenly across devices", "--batch 256", false};
static const usage_case gpus_2_single = {ARGS("--gpus", "2"), "--gpus 2", "exactly 1 device", "strategy single", false};
static const usage_case gpus_3_batch_66 = {ARGS("--batch", "66", "--gpus", "3"), "--gpus 3", "exactly 1 device", "strategy single", false};
static const usage_case batch_64_gpus_3 = {ARGS("--batch", "64", "--gpus", "3"), "--gpus 3", "split evenly across devices", "--batch 64 is not divisible", false};
static const usage_case gpus_zero = {ARGS("--gpus", "0"), "--gpus", "allowed: 1 to", NULL, false};
static const usage_case missing_value_last = {ARGS("--iters"), "--iters", "allowed: 1 to 1000000", "needs a value", false};
/* "--iters --warmup 0" must not read "--warmup" as the value of --iters */
static const usage_case missing_value_before_flag = {ARGS("--iters", "--warmup", "0"), "--iters", "allowed: 1 to 1000000", "needs a value", false};
static const usage_case missing_value_name = {ARGS("--workload"), "--workload", "allowed: mlp-xs", "needs a value", false};
static const usage_case bool_with_value = {ARGS("--quiet=yes"), "--quiet", "takes no value", NULL, false};
static const usage_case out_missing_folder = {ARGS("--out", "/nonexistent-parbench/sub/runs.csv"), "--out", "does not exist", "/nonexistent-parbench/sub", true};
static const usage_case out_is_directory = {ARGS("--out", "/tmp"), "--out", "give a CSV file path", "is a directory", true};
static const usage_case out_in_a_file = {ARGS("--out", "/dev/null/runs.csv"), "--out", "is not a folder", "/dev/null", true};
static const usage_case out_in_procfs = {ARGS("--out", "/proc/parbench-runs.csv"), "--out", "cannot create a file", "/proc", true};
static const usage_case out_empty = {ARGS("--out", ""), "--out", "empty path", NULL, true};
static const usage_case bf16_on_cpu = {ARGS("--precision", "bf16", "--backend", "cpu"), "--precision bf16", "allowed there: fp32", "cpu backend", false};
static const usage_case cuda_graph_on_cpu = {ARGS("--cuda-graph", "--backend", "cpu"), "--cuda-graph", "needs the cuda backend", NULL, false};
/* the comm follows the process model: `local` for one process on several
 * devices, none for one device (ddp's are in test_ddp.c) */
static const usage_case comm_none_on_dp = {ARGS("--strategy", "dp", "--gpus", "2", "--backend", "cpu", "--comm", "none"), "--comm none", "allowed: auto, local", "strategy dp", false};
static const usage_case comm_mpi_on_mp = {ARGS("--strategy", "mp", "--gpus", "2", "--backend", "cpu", "--comm", "mpi"), "--comm mpi", "allowed: auto, local", "strategy mp", false};
static const usage_case comm_nccl_on_dp = {ARGS("--strategy", "dp", "--gpus", "2", "--backend", "cpu", "--comm", "nccl"), "--comm nccl", "allowed: auto, local", NULL, false};
static const usage_case comm_local_on_single = {ARGS("--comm", "local", "--backend", "cpu"), "--comm local", "allowed: auto, none", "strategy single", false};
/* numbers are parsed strictly and alike: no space around them, no '+' */
static const usage_case iters_leading_space = {ARGS("--iters", " 5"), "--iters", "allowed: 1 to 1000000", "not an integer", false};
static const usage_case iters_plus = {ARGS("--iters", "+5"), "--iters", "allowed: 1 to 1000000", "not an integer", false};
static const usage_case iters_trailing_space = {ARGS("--iters", "5 "), "--iters", "allowed: 1 to 1000000", "not an integer", false};
static const usage_case seed_leading_space = {ARGS("--seed", " 5"), "--seed", "allowed: 0 to 18446744073709551615", "not a non-negative integer", false};
static const usage_case lr_leading_space = {ARGS("--lr", " 0.1"), "--lr", "allowed: 0 to 10", "not a number", false};
static const usage_case lr_plus = {ARGS("--lr", "+0.1"), "--lr", "allowed: 0 to 10", "not a number", false};
static const usage_case split_leading_space = {ARGS("--strategy", "mp", "--gpus", "2", "--split", " 2"), "--split", "allowed: 1 to 255 each", "comma-separated list", false};
static const usage_case device_map_plus = {ARGS("--strategy", "dp", "--gpus", "2", "--backend", "cpu", "--device-map", "0,+1"), "--device-map", "allowed: 0 to 4095 each", "comma-separated list", false};
static const usage_case sweep_repeats_leading_space = {ARGS("sweep", "--repeats", " 2", "--out", "@OUT"), "sweep --repeats", "from 1 to 1000", "' 2'", false};
static const usage_case sweep_gpus_plus = {ARGS("sweep", "--gpus", "1,+2", "--out", "@OUT"), "sweep --gpus", "allowed: 1 to 4096 each", NULL, false};
/* the sweep refuses a flag given twice as run does, its own or one it hands on, before or after -- */
static const usage_case sweep_gpus_twice = {ARGS("sweep", "--gpus", "1", "--gpus", "2", "--out", "@OUT"), "sweep: --gpus", "allowed: once", "given twice", false};
static const usage_case sweep_threads_twice = {ARGS("sweep", "--threads", "1", "--out", "@OUT", "--", "--threads", "2"), "sweep: --threads", "allowed: once", "given twice", false};
static const usage_case compare_threshold_plus = {ARGS("compare", "@OUT", "@OUT", "--threshold", "+5"), "--threshold", "allowed: 0 to 1000", "not a number", false};
/* a flag given twice is refused, whichever its form, not the last one taken */
static const usage_case iters_twice = {ARGS("--iters", "5", "--iters", "6"), "--iters", "allowed: once", "given twice", false};
static const usage_case iters_twice_inline = {ARGS("--iters=5", "--iters", "5"), "--iters", "allowed: once", "given twice", false};
static const usage_case quiet_twice = {ARGS("--quiet", "--quiet"), "--quiet", "allowed: once", "given twice", false};
static const usage_case layers_twice = {ARGS("--layers", "3", "--layers", "4"), "--layers", "allowed: once", "given twice", false};
/* a device map names devices that exist: on the cpu backend as many as its
 * cores, or as --gpus asks for */
static const usage_case device_map_beyond = {ARGS("--strategy", "dp", "--gpus", "2", "--backend", "cpu", "--device-map", "0,4095"), "--device-map: device 4095 does not exist", "allowed: 0 to", NULL, false};
static const usage_case list_with_argument = {ARGS("list", "--out", "@OUT"), "list", "takes no arguments", NULL, false};
static const usage_case help_unknown_command = {ARGS("help", "frobnicate", "--out", "@OUT"), "'frobnicate'", "allowed: run, list, calibrate", NULL, false};

/* The cuda backend on a machine without a usable CUDA device (or a build
 * without nvcc): exit 2 and the cause, no row. */
static void test_usage_cuda_unavailable(void **state)
{
    (void)state;
    char why[256] = "";
    if (pb_backend_cuda.device_count(why, sizeof why) > 0) skip(); /* a GPU is here: not an error */
    static const usage_case c = {ARGS("--backend", "cuda"), "--backend cuda", "no usable CUDA device", NULL, false};
    const usage_case *cp = &c;
    void *s = (void *)cp;
    test_usage(&s);
    /* the message carries the cause the backend gave */
    bench_result *r = new_result();
    char *dir = make_temp_dir();
    char out[4200];
    snprintf(out, sizeof out, "%s/runs.csv", dir);
    char *argv[] = {"--backend", "cuda", "--out", out, NULL};
    run_bench(r, argv);
    assert_non_null(strstr(r->err, why));
    free(r);
    remove_tree(dir);
    free(dir);
}

/* A results file written by another schema is refused with exit 2 and the
 * first differing column named, and is left as it was. */
static void test_usage_header_differs(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[4200];
    snprintf(out, sizeof out, "%s/old.csv", dir);
    FILE *f = fopen(out, "wb");
    assert_non_null(f);
    fputs("time_utc,run_id,tag,status,strategy_name,backend\n2026-01-01T00:00:00Z,r1,,ok,single,cpu\n", f);
    fclose(f);
    char *before = read_file(out);
    bench_result *r = new_result();
    char *argv[] = {"--workload", "mlp-xs", "--iters", "1", "--warmup", "0", "--backend", "cpu", "--out", out, NULL};
    run_bench(r, argv);
    if (r->exit_code != 2) print_on_failure(r);
    assert_int_equal(r->exit_code, 2);
    assert_int_equal(count_lines(r->err), 1);
    assert_non_null(strstr(r->err, "--out"));
    assert_non_null(strstr(r->err, "column 5"));
    assert_non_null(strstr(r->err, "'strategy_name', expected 'strategy'"));
    char *after = read_file(out);
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(r);
    remove_tree(dir);
    free(dir);
}

/* ------------------------------------------------------------------------ */
/* --help and list                                                           */

typedef struct flag_default {
    const char *flag;
    char def[4200];
} flag_default;

static void test_help_lists_every_flag_with_default(void **state)
{
    (void)state;
    pb_config d;
    pb_config_defaults(&d);
    flag_default want[] = {
        {"--strategy", ""}, {"--backend", ""}, {"--comm", ""}, {"--workload", ""}, {"--gpus", ""},
        {"--in", ""}, {"--hidden", ""}, {"--layers", ""}, {"--classes", ""}, {"--batch", ""},
        {"--precision", "fp32"}, {"--optimizer", "sgd"}, {"--lr", "by optimizer"}, {"--momentum", ""},
        {"--weight-decay", ""}, {"--beta1", ""}, {"--beta2", ""}, {"--eps", ""}, {"--iters", ""},
        {"--warmup", ""}, {"--seed", ""}, {"--threads", ""}, {"--cuda-graph", "off"}, {"--out", ""},
        {"--dump", "off"}, {"--quiet", "off"},
    };
    snprintf(want[0].def, sizeof want[0].def, "%s", d.strategy);
    snprintf(want[1].def, sizeof want[1].def, "%s", d.backend);
    snprintf(want[2].def, sizeof want[2].def, "%s", d.comm);
    snprintf(want[3].def, sizeof want[3].def, "%s", d.workload);
    snprintf(want[4].def, sizeof want[4].def, "%d", d.devices);
    snprintf(want[5].def, sizeof want[5].def, "%d", d.shape.in);
    snprintf(want[6].def, sizeof want[6].def, "%d", d.shape.hidden);
    snprintf(want[7].def, sizeof want[7].def, "%d", d.shape.layers);
    snprintf(want[8].def, sizeof want[8].def, "%d", d.shape.classes);
    snprintf(want[9].def, sizeof want[9].def, "%d", d.shape.batch);
    snprintf(want[13].def, sizeof want[13].def, "%g", d.momentum);
    snprintf(want[14].def, sizeof want[14].def, "%g", d.weight_decay);
    snprintf(want[15].def, sizeof want[15].def, "%g", d.beta1);
    snprintf(want[16].def, sizeof want[16].def, "%g", d.beta2);
    snprintf(want[17].def, sizeof want[17].def, "%g", d.eps);
    snprintf(want[18].def, sizeof want[18].def, "%d", d.iters);
    snprintf(want[19].def, sizeof want[19].def, "%d", d.warmup);
    snprintf(want[20].def, sizeof want[20].def, "%llu", (unsigned long long)d.seed);
    snprintf(want[21].def, sizeof want[21].def, "%d", d.threads);
    snprintf(want[23].def, sizeof want[23].def, "%s", d.out);

    const char *spellings[] = {"--help", "help", "-h"};
    for (size_t s = 0; s < sizeof spellings / sizeof spellings[0]; s++) {
        bench_result *r = new_result();
        char *argv[] = {(char *)spellings[s], NULL};
        run_bench(r, argv);
        assert_int_equal(r->exit_code, 0);
        assert_string_equal(r->err, "");
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            /* the flag's own line: "  --name[ METAVAR]  help [default]..." */
            char start[64];
            snprintf(start, sizeof start, "\n  %s ", want[i].flag);
            const char *line = strstr(r->out, start);
            if (!line) print_message("--help does not list %s\n", want[i].flag);
            assert_non_null(line);
            line++;
            size_t len = strcspn(line, "\n");
            char text[1024];
            snprintf(text, sizeof text, "%.*s", (int)len, line);
            char bracket[4300];
            snprintf(bracket, sizeof bracket, "[%s]", want[i].def);
            if (!strstr(text, bracket)) print_message("%s: want %s in: %s\n", want[i].flag, bracket, text);
            assert_non_null(strstr(text, bracket));
        }
        /* every flag line --help prints (flags added later too) has a
         * default in brackets, and the parser knows the flag */
        int flags_seen = 0;
        for (const char *p = strstr(r->out, "\n  --"); p; p = strstr(p + 1, "\n  --")) {
            char name[64];
            assert_int_equal(sscanf(p + 3, "%63s", name), 1);
            if (strcmp(name, "--help") == 0) continue;
            flags_seen++;
            size_t len = strcspn(p + 1, "\n");
            char text[1024];
            snprintf(text, sizeof text, "%.*s", (int)len, p + 1);
            const char *lb = strchr(text, '['), *rb = lb ? strchr(lb, ']') : NULL;
            if (!rb) print_message("no [default] on: %s\n", text);
            assert_non_null(rb);
            pb_config cfg;
            pb_config_defaults(&cfg);
            bool help = false;
            char *args[] = {name, NULL};
            pb_error_clear();
            pb_status st = pb_config_parse(&cfg, 1, args, &help);
            if (st != PB_OK) assert_null(strstr(pb_error_message(), "unknown flag"));
            pb_error_clear();
        }
        assert_true(flags_seen >= (int)(sizeof want / sizeof want[0]));
        free(r);
    }
}

/* The commands `bench help` lists (the command table's, so a command
 * added later is tested too), into names; returns how many. */
static int listed_commands(char names[][32], int max)
{
    bench_result *r = new_result();
    run_bench(r, (char *[]){"help", NULL});
    assert_int_equal(r->exit_code, 0);
    const char *p = strstr(r->out, "\ncommands:\n");
    assert_non_null(p);
    int n = 0;
    for (p = strchr(p + 1, '\n') + 1; strncmp(p, "  ", 2) == 0 && n < max; p += strcspn(p, "\n") + 1)
        assert_int_equal(sscanf(p, "%31s", names[n++]), 1);
    free(r);
    return n;
}

/* Like git's: `bench CMD --help`, `-h` and `bench help CMD` print CMD's own
 * usage (its synopsis, flags and an example) on stdout and exit 0; only run
 * (the default command) and help print the whole usage. */
static void test_every_command_has_its_own_help(void **state)
{
    (void)state;
    char names[32][32];
    int n = listed_commands(names, 32);
    assert_true(n >= 7);
    for (int i = 0; i < n; i++) {
        const char *cmd = names[i];
        bool whole = strcmp(cmd, "run") == 0 || strcmp(cmd, "help") == 0;
        char *const forms[][3] = {{(char *)cmd, "--help", NULL}, {(char *)cmd, "-h", NULL}, {"help", (char *)cmd, NULL}};
        for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
            bench_result *r = new_result();
            run_bench(r, forms[f]);
            if (r->exit_code != 0 || r->err[0]) print_message("%s %s:\n%s%s", forms[f][0], forms[f][1], r->out, r->err);
            assert_int_equal(r->exit_code, 0);
            assert_string_equal(r->err, "");
            char synopsis[1100], example[1100];
            snprintf(synopsis, sizeof synopsis, "usage: bench %s", whole ? "[run]" : cmd);
            snprintf(example, sizeof example, "\nexample:\n  bench %s", whole ? "" : cmd);
            if (strncmp(r->out, synopsis, strlen(synopsis)) != 0 || !strstr(r->out, example))
                print_message("%s %s: want '%s' first and an example:\n%s", forms[f][0], forms[f][1], synopsis,
                              r->out);
            assert_int_equal(strncmp(r->out, synopsis, strlen(synopsis)), 0);
            assert_non_null(strstr(r->out, example));
            /* its own: not the command list of the whole usage */
            assert_true(whole == (strstr(r->out, "\ncommands:\n") != NULL));
            free(r);
        }
    }
    /* calibrate's flags are the run flags it reads, with their defaults;
     * the ones it ignores are not offered */
    bench_result *r = new_result();
    run_bench(r, (char *[]){"calibrate", "--help", NULL});
    pb_config d;
    pb_config_defaults(&d);
    char want[128];
    snprintf(want, sizeof want, "\n  --workload NAME        model preset (bench list shows the shapes) [%s]", d.workload);
    assert_non_null(strstr(r->out, want));
    assert_non_null(strstr(r->out, "\n  --precision P "));
    assert_null(strstr(r->out, "\n  --iters "));
    assert_null(strstr(r->out, "\n  --out "));
    free(r);
}

/* Text of the column that starts at byte col of a table row and of its
 * continuation lines (until the next row, a line not blank up to col), joined
 * by spaces, into out. */
static void column_text(const char *row, size_t col, size_t width, char *out, size_t len)
{
    out[0] = '\0';
    for (const char *l = row; *l; l += strcspn(l, "\n") + 1) {
        size_t n = strcspn(l, "\n");
        if (l != row && (n <= 2 || l[2] != ' ')) break; /* the next row, or the next section */
        if (n > col) {
            size_t take = n - col < width ? n - col : width;
            size_t used = strlen(out);
            snprintf(out + used, len - used, "%s%.*s", used ? " " : "", (int)take, l + col);
        }
        if (!l[n]) break;
    }
    /* the cell's own padding */
    for (size_t n = strlen(out); n > 0 && out[n - 1] == ' '; n--) out[n - 1] = '\0';
}

static void test_list(void **state)
{
    (void)state;
    bench_result *r = new_result();
    char *argv[] = {"list", NULL};
    run_bench(r, argv);
    assert_int_equal(r->exit_code, 0);
    assert_string_equal(r->err, "");
    const char *strategies = strstr(r->out, "strategies:\n");
    const char *backends = strstr(r->out, "backends:\n");
    const char *comms = strstr(r->out, "comms:\n");
    const char *workloads = strstr(r->out, "workloads:");
    assert_non_null(strategies);
    assert_non_null(backends);
    assert_non_null(comms);
    assert_non_null(workloads);
    assert_true(strategies < backends && backends < comms && comms < workloads);
    assert_non_null(strstr(strategies, "\n  single "));
    /* each backend with the devices it found (or why none) */
    const char *cpu = strstr(backends, "\n  cpu "), *cuda = strstr(backends, "\n  cuda ");
    assert_non_null(cpu);
    assert_non_null(cuda);
    assert_true(cpu < comms && cuda < comms);
    /* every comm, `local` among them */
    const char *local = strstr(comms, "\n  local ");
    assert_non_null(local);
    assert_true(local < workloads);
    assert_non_null(strstr(backends, "\n  name  available  devices  description"));
    /* then the BLAS the cpu backend runs: its kernels and the CPU's
     * instruction set */
    const char *blas = strstr(r->out, "\nblas (cpu backend):\n");
    assert_non_null(blas);
    char line[1024];
    blas = strchr(blas + 1, '\n') + 1;
    snprintf(line, sizeof line, "%.*s", (int)strcspn(blas, "\n"), blas);
    assert_non_null(strstr(line, "OpenBLAS "));
    assert_non_null(strstr(line, " kernels ("));
    assert_non_null(strstr(line, "; this CPU "));

    /* every workload with its description, then its shape as the CSV's
     * shape column writes it, its batch and its parameters */
    assert_non_null(strstr(workloads, "\n  mlp-s "));
    char names[512];
    snprintf(names, sizeof names, "%s", pb_workload_names());
    int count = 0;
    for (char *save = NULL, *name = strtok_r(names, ", ", &save); name; name = strtok_r(NULL, ", ", &save)) {
        char start[64];
        snprintf(start, sizeof start, "\n  %s ", name);
        const char *p = strstr(workloads, start);
        if (!p) print_message("bench list does not show workload %s\n", name);
        assert_non_null(p);
        const pb_workload *w = pb_find_workload(name);
        char shape[PB_SHAPE_STR], want[160];
        w->ops->shape_str(&w->shape, shape, sizeof shape);
        snprintf(want, sizeof want, "%s batch=%d params=", shape, w->shape.batch);
        /* the shape line: the one after the name's (continuation lines of a
         * long description joined) */
        char row[1024];
        column_text(p + 1, 14, 70, row, sizeof row);
        if (!strstr(row, want)) print_message("%s: '%s' lacks '%s'\n", name, row, want);
        assert_non_null(strstr(row, want));
        if (strcmp(name, "mlp-s") == 0) assert_non_null(strstr(row, "in=1024 hidden=1024 layers=4 classes=1000 batch=256"));
        if (strcmp(name, "gpt2-124m") == 0)
            assert_non_null(strstr(row, "d=768 layers=12 heads=12 seq=1024 vocab=50257 batch=16 params=124475904"));
        count++;
    }
    assert_true(count >= 5);
    free(r);
}

/* bench list reads at 80 columns: no line is wider, and a backend without
 * devices says why in a column of its own, not run into its description. */
static void test_list_layout(void **state)
{
    (void)state;
    bench_result *r = new_result();
    /* whatever the machine, cuda then has no device to show */
    char *env[] = {"CUDA_VISIBLE_DEVICES=", NULL};
    run_bench_env(r, env, (char *[]){"list", NULL});
    assert_int_equal(r->exit_code, 0);
    for (const char *l = r->out; *l; l += strcspn(l, "\n") + 1) {
        size_t n = strcspn(l, "\n");
        if (n > 80) fail_msg("wider than 80 columns (%zu): %.*s", n, (int)n, l);
        if (n && l[n - 1] == ' ') fail_msg("trailing blanks: '%.*s'", (int)n, l);
        if (!l[n]) break;
    }
    const char *header = strstr(r->out, "backends:\n  name  available  devices  description");
    assert_non_null(header);
    header = strchr(header, '\n') + 1;
    size_t hlen = strcspn(header, "\n");
    const char *av = strstr(header, "available"), *dv = strstr(header, "devices"), *ds = strstr(header, "description"),
               *why = strstr(header, "why not");
    if (!why || why > header + hlen) fail_msg("no 'why not' column:\n%s", r->out);
    size_t c_av = (size_t)(av - header), c_dv = (size_t)(dv - header), c_ds = (size_t)(ds - header),
           c_why = (size_t)(why - header);
    const char *cuda = strstr(header, "\n  cuda ");
    assert_non_null(cuda);
    cuda++;
    char avail[64], devices[64], desc[1024], reason[1024];
    column_text(cuda, c_av, c_dv - c_av, avail, sizeof avail);
    column_text(cuda, c_dv, c_ds - c_dv, devices, sizeof devices);
    column_text(cuda, c_ds, c_why - c_ds, desc, sizeof desc);
    column_text(cuda, c_why, 80, reason, sizeof reason);
    assert_string_equal(avail, "no");
    assert_string_equal(devices, "0");
    /* the backend's description in its column, the reason in the other */
    assert_non_null(strstr(desc, "NVIDIA GPUs"));
    if (!reason[0] || strstr(desc, reason) || strstr(reason, "NVIDIA GPUs"))
        fail_msg("description '%s', why not '%s'", desc, reason);
    const char *cpu = strstr(header, "\n  cpu ");
    assert_non_null(cpu);
    column_text(cpu + 1, c_av, c_dv - c_av, avail, sizeof avail);
    column_text(cpu + 1, c_why, 80, reason, sizeof reason);
    assert_string_equal(avail, "yes");
    assert_string_equal(reason, "");
    free(r);
}

/* ------------------------------------------------------------------------ */
/* runs                                                                      */

static void check_rows(const char *text, int want_rows)
{
    const char *hdr = header_text();
    assert_int_equal(count_lines(text), want_rows + 1);
    assert_memory_equal(text, hdr, strlen(hdr));
    const char *p = text;
    int headers = 0;
    for (int i = 0; i <= want_rows; i++) {
        size_t len = strcspn(p, "\n");
        assert_int_equal(p[len], '\n');
        headers += (len + 1 == strlen(hdr) && memcmp(p, hdr, len) == 0);
        assert_int_equal(csv_field_count(p, len), PB_COL_COUNT);
        if (i > 0) {
            char status[64];
            csv_field(p, PB_COL_STATUS, status, sizeof status);
            assert_string_equal(status, "ok");
        }
        p += len + 1;
    }
    assert_int_equal(headers, 1);
}

static void test_run_minimal_appends_one_row(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[4200];
    snprintf(out, sizeof out, "%s/runs.csv", dir);
    char *argv[] = {"--workload", "mlp-xs", "--iters", "2", "--warmup", "0", "--backend", "cpu", "--threads", "1",
                    "--out", out, NULL};
    bench_result *r = new_result();
    run_bench(r, argv);
    if (r->exit_code != 0) print_on_failure(r);
    assert_int_equal(r->exit_code, 0);
    assert_string_equal(r->out, ""); /* progress and the summary go to stderr */
    char *text = read_file(out);
    assert_non_null(text);
    check_rows(text, 1);
    char field[PB_FIELD_MAX];
    csv_field(strchr(text, '\n') + 1, PB_COL_WORKLOAD, field, sizeof field);
    assert_string_equal(field, "mlp-xs");
    csv_field(strchr(text, '\n') + 1, PB_COL_ITERS, field, sizeof field);
    assert_string_equal(field, "2");
    csv_field(strchr(text, '\n') + 1, PB_COL_STEP_MS_P50, field, sizeof field);
    assert_true(field[0] != '\0');
    free(text);

    /* a second run appends exactly one line, and no second header; --quiet
     * leaves stderr empty */
    char *argv2[] = {"--workload", "mlp-xs", "--iters", "2", "--warmup", "0", "--backend", "cpu", "--threads", "1",
                     "--quiet", "--out", out, NULL};
    run_bench(r, argv2);
    if (r->exit_code != 0) print_on_failure(r);
    assert_int_equal(r->exit_code, 0);
    assert_string_equal(r->out, "");
    assert_string_equal(r->err, "");
    text = read_file(out);
    check_rows(text, 2);
    free(text);
    free(r);
    remove_tree(dir);
    free(dir);
}

/* The row names the BLAS's kernel core (blas_core), the core `blas` shows.
 * OPENBLAS_CORETYPE=Prescott stands in for the CI machines' OpenBLAS 0.3.21,
 * which takes an AVX-512 Xeon for a Prescott: on any CPU with more than
 * SSE3 the row says "below" and stderr says how to fix it. */
static void test_run_records_blas_core(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[4200];
    snprintf(out, sizeof out, "%s/runs.csv", dir);
    char *argv[] = {"--workload", "mlp-xs", "--iters", "2", "--warmup", "0", "--backend", "cpu", "--threads", "1",
                    "--out", out, NULL};
    bench_result *r = new_result();
    char *prescott[] = {"OPENBLAS_CORETYPE=Prescott", NULL};
    for (int forced = 0; forced < 2; forced++) {
        run_bench_env(r, forced ? prescott : NULL, argv);
        if (r->exit_code != 0) print_on_failure(r);
        assert_int_equal(r->exit_code, 0);
    }
    char *text = read_file(out);
    assert_non_null(text);
    check_rows(text, 2);
    const char *row = strchr(text, '\n') + 1;
    for (int forced = 0; forced < 2; forced++, row = strchr(row, '\n') + 1) {
        char blas[PB_FIELD_MAX], core[PB_FIELD_MAX], shown[PB_FIELD_MAX];
        csv_field(row, PB_COL_BLAS, blas, sizeof blas);
        csv_field(row, PB_COL_BLAS_CORE, core, sizeof core);
        /* "OpenBLAS (X)" and "X" or "X (below: ...)" */
        assert_int_equal(sscanf(blas, "OpenBLAS (%[^)])", shown), 1);
        assert_int_equal(strncmp(core, shown, strlen(shown)), 0);
        assert_true(core[strlen(shown)] == '\0' || core[strlen(shown)] == ' ');
        if (forced) assert_string_equal(shown, "Prescott");
    }
    /* the forced run's verdict, where the CPU has more than SSE3 */
    char flags[8192];
    pb_cpu_flags(flags, sizeof flags);
    if (pb_cpu_flags_isa(flags) > PB_ISA_SSE3) {
        char core[PB_FIELD_MAX];
        const char *second = strchr(strchr(text, '\n') + 1, '\n') + 1;
        csv_field(second, PB_COL_BLAS_CORE, core, sizeof core);
        assert_non_null(strstr(core, "Prescott (below: sse3 kernels on an "));
        if (!strstr(r->err, "warning: the BLAS runs its Prescott kernels")) print_on_failure(r);
        assert_non_null(strstr(r->err, "warning: the BLAS runs its Prescott kernels"));
        assert_non_null(strstr(r->err, "set OPENBLAS_CORETYPE="));
    } else {
        print_message("this CPU has no more than SSE3: the verdict is not checked\n");
    }
    free(text);
    free(r);
    remove_tree(dir);
    free(dir);
}

/* A run-time failure: exit 1, one clear message, and a row that cannot pass
 * for a measurement (status "failed", no timing, the error kept). */
static void check_failed_run(char **argv, const char *out, const char *phrase)
{
    bench_result *r = new_result();
    char *env[] = {"ASAN_OPTIONS=allocator_may_return_null=1", NULL};
    run_bench_env(r, env, argv);
    if (r->exit_code != 1 || !strstr(r->err, phrase)) print_on_failure(r);
    assert_int_equal(r->exit_code, 1);
    assert_string_equal(r->out, "");
    /* --quiet: the error alone (a sanitizer build may add its own lines) */
    int bench_lines = 0;
    for (const char *l = r->err; *l; l += strcspn(l, "\n") + (l[strcspn(l, "\n")] == '\n')) {
        if (strncmp(l, "bench", 5) == 0) bench_lines++;
        else assert_true(strstr(l, "Sanitizer") && strstr(l, "Sanitizer") < l + strcspn(l, "\n"));
    }
    assert_int_equal(bench_lines, 1);
    assert_non_null(strstr(r->err, phrase));
    char *text = read_file(out);
    assert_non_null(text);
    assert_int_equal(count_lines(text), 2);
    const char *row = strchr(text, '\n') + 1;
    assert_int_equal(csv_field_count(row, strcspn(row, "\n")), PB_COL_COUNT);
    char field[PB_FIELD_MAX];
    csv_field(row, PB_COL_STATUS, field, sizeof field);
    assert_string_equal(field, "failed");
    static const pb_column figures[] = {PB_COL_STEP_MS_MIN, PB_COL_STEP_MS_P50, PB_COL_STEP_MS_MEAN, PB_COL_STEP_MS_MAX,
                                        PB_COL_SAMPLES_PER_S, PB_COL_MODEL_TFLOPS, PB_COL_LOSS_LAST};
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++) {
        csv_field(row, figures[i], field, sizeof field);
        assert_string_equal(field, "");
    }
    csv_field(row, PB_COL_ERROR, field, sizeof field);
    assert_non_null(strstr(field, phrase));
    free(text);
    free(r);
}

static void test_run_nan_loss_fails(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[4200];
    snprintf(out, sizeof out, "%s/runs.csv", dir);
    /* lr 10 diverges on mlp-xs within a few steps */
    char *argv[] = {"--workload", "mlp-xs", "--lr", "10", "--iters", "50", "--warmup", "0", "--backend", "cpu",
                    "--threads", "1", "--quiet", "--out", out, NULL};
    check_failed_run(argv, out, "loss is");
    remove_tree(dir);
    free(dir);
}

static void test_run_allocation_failure_fails(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char out[4200];
    snprintf(out, sizeof out, "%s/runs.csv", dir);
    /* within every flag's range, but ~1 PB of parameters */
    char *argv[] = {"--workload", "mlp-xs", "--hidden", "1048576", "--layers", "256", "--iters", "1", "--warmup", "0",
                    "--backend", "cpu", "--threads", "1", "--quiet", "--out", out, NULL};
    /* the memory plan refuses it before any allocation (harness/memplan.h;
     * tests/unit/test_memplan.c, tests/e2e/test_memplan_runs.c) */
    check_failed_run(argv, out, "out of host memory: the run needs about ");
    /* what it needs and the memory available */
    bench_result *r = new_result();
    char *env[] = {"ASAN_OPTIONS=allocator_may_return_null=1", NULL};
    run_bench_env(r, env, argv);
    if (!strstr(r->err, " MiB here (parameters ") || !strstr(r->err, " MiB available"))
        fail_msg("the message lacks what the run needs or the memory available: %s", r->err);
    free(r);
    remove_tree(dir);
    free(dir);
}

/* ------------------------------------------------------------------------ */

#define USAGE_TEST(c) {"usage_" #c, test_usage, NULL, NULL, (void *)&c}

int main(void)
{
    const struct CMUnitTest tests[] = {
        USAGE_TEST(unknown_strategy),
        USAGE_TEST(unknown_workload),
        USAGE_TEST(unknown_backend),
        USAGE_TEST(unknown_comm),
        USAGE_TEST(unknown_precision),
        USAGE_TEST(unknown_optimizer),
        USAGE_TEST(unknown_flag),
        USAGE_TEST(stray_positional),
        USAGE_TEST(unknown_subcommand),
        USAGE_TEST(iters_not_number),
        USAGE_TEST(iters_trailing_junk),
        USAGE_TEST(iters_zero),
        USAGE_TEST(iters_negative),
        USAGE_TEST(iters_overflow),
        USAGE_TEST(warmup_negative),
        USAGE_TEST(batch_zero),
        USAGE_TEST(hidden_negative),
        USAGE_TEST(in_zero),
        USAGE_TEST(classes_one),
        USAGE_TEST(layers_too_many),
        USAGE_TEST(lr_nan),
        USAGE_TEST(lr_inf),
        USAGE_TEST(lr_negative),
        USAGE_TEST(seed_negative),
        USAGE_TEST(threads_zero),
        USAGE_TEST(gpus_3_single),
        USAGE_TEST(gpus_2_single),
        USAGE_TEST(gpus_3_batch_66),
        USAGE_TEST(batch_64_gpus_3),
        USAGE_TEST(gpus_zero),
        USAGE_TEST(missing_value_last),
        USAGE_TEST(missing_value_before_flag),
        USAGE_TEST(missing_value_name),
        USAGE_TEST(bool_with_value),
        USAGE_TEST(out_missing_folder),
        USAGE_TEST(out_is_directory),
        USAGE_TEST(out_in_a_file),
        USAGE_TEST(out_in_procfs),
        USAGE_TEST(out_empty),
        USAGE_TEST(bf16_on_cpu),
        USAGE_TEST(cuda_graph_on_cpu),
        USAGE_TEST(comm_none_on_dp),
        USAGE_TEST(comm_mpi_on_mp),
        USAGE_TEST(comm_nccl_on_dp),
        USAGE_TEST(comm_local_on_single),
        USAGE_TEST(list_with_argument),
        USAGE_TEST(help_unknown_command),
        USAGE_TEST(iters_leading_space),
        USAGE_TEST(iters_plus),
        USAGE_TEST(iters_trailing_space),
        USAGE_TEST(seed_leading_space),
        USAGE_TEST(lr_leading_space),
        USAGE_TEST(lr_plus),
        USAGE_TEST(split_leading_space),
        USAGE_TEST(device_map_plus),
        USAGE_TEST(sweep_repeats_leading_space),
        USAGE_TEST(sweep_gpus_plus),
        USAGE_TEST(sweep_gpus_twice),
        USAGE_TEST(sweep_threads_twice),
        USAGE_TEST(compare_threshold_plus),
        USAGE_TEST(iters_twice),
        USAGE_TEST(iters_twice_inline),
        USAGE_TEST(quiet_twice),
        USAGE_TEST(layers_twice),
        USAGE_TEST(device_map_beyond),
        cmocka_unit_test(test_usage_cuda_unavailable),
        cmocka_unit_test(test_usage_header_differs),
        cmocka_unit_test(test_help_lists_every_flag_with_default),
        cmocka_unit_test(test_every_command_has_its_own_help),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_list_layout),
        cmocka_unit_test(test_run_minimal_appends_one_row),
        cmocka_unit_test(test_run_records_blas_core),
        cmocka_unit_test(test_run_nan_loss_fails),
        cmocka_unit_test(test_run_allocation_failure_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
