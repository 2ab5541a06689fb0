/* bench: the command table (like git.c's) and the only exit(). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "check.h"
#include "commbench.h"
#include "../study/compare_cli.h"
#include "config.h"
#include "env.h"
#include "launch.h"
#include "log.h"
#include "../study/plot.h"
#include "registry.h"
#include "run.h"
#include "runid.h"
#include "signals.h"
#include "status.h"
#include "supervise.h"
#include "../study/predict.h"
#include "../study/sweep.h"

static void print_usage(void);
static void calibrate_usage(void);

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static int report(pb_status st)
{
    if (st != PB_OK) pb_log_error("%s", pb_error_message());
    return pb_status_exit_code(st);
}

/* Parses and validates the flags of a command that takes the run's flags.
 * *help is set (and the command's own usage printed) for --help. A command
 * that writes no files (!writes) ignores --out and --dump: they are not
 * checked, so it runs from any folder. */
static pb_status load_config(pb_config *cfg, int argc, char **argv, bool writes, void (*usage)(void), bool *help)
{
    pb_config_defaults(cfg);
    pb_status st = pb_config_parse(cfg, argc, argv, help);
    if (st == PB_OK && *help) {
        usage();
        return PB_OK;
    }
    if (!writes) cfg->out[0] = cfg->dump[0] = cfg->steps_out[0] = cfg->ranks_out[0] = '\0';
    pb_log_set_quiet(cfg->quiet);
    pb_launch_set_log_rank();
    /* the run's id names its files, so it exists before they are checked */
    if (st == PB_OK && writes) st = pb_run_id_init(cfg->run_id, sizeof cfg->run_id);
    if (st == PB_OK && writes) st = pb_run_id_expand("--dump", cfg->dump, sizeof cfg->dump, cfg->run_id);
    if (st == PB_OK && writes)
        st = pb_run_id_expand("--steps-out", cfg->steps_out, sizeof cfg->steps_out, cfg->run_id);
    if (st == PB_OK && writes)
        st = pb_run_id_expand("--ranks-out", cfg->ranks_out, sizeof cfg->ranks_out, cfg->run_id);
    return st == PB_OK ? pb_config_validate(cfg) : st;
}

/* The whole command line, for the launcher's re-execution. */
static int main_argc;
static char **main_argv;

static int cmd_run(int argc, char **argv)
{
    pb_config cfg;
    bool help = false;
    pb_status st = load_config(&cfg, argc, argv, true, print_usage, &help);
    /* once, by the process the user started (not by ranks bench launched):
     * the id that the row, --steps-out and {run_id} paths carry */
    if (st == PB_OK && !help && !cfg.quiet && !pb_launch_reexecuted()) pb_log_info("run_id %s", cfg.run_id);
    /* a rank per device: re-executed under mpirun unless already launched;
     * this process stays as mpirun's parent, passing SIGINT/SIGTERM on,
     * bounding the job by its backstop and ending with the run's code (128 +
     * the signal when interrupted) */
    if (st == PB_OK && !help && pb_find_strategy(cfg.strategy)->procs == PB_PROC_PER_DEVICE) {
        if (!pb_launch_inside()) {
            bool parent = false;
            int code = pb_supervise_launch(&cfg, &parent);
            if (parent) return code;
        }
        st = pb_launch(&cfg, main_argc, main_argv);
    }
    /* a signal stops the run at a step boundary; it writes no row */
    if (st == PB_OK && !help) {
        pb_signals_install();
        st = pb_run(&cfg);
        if (pb_signals_caught()) {
            if (st != PB_OK) pb_log_error("%s", pb_error_message());
            return pb_signals_exit_code();
        }
    }
    int code = report(st);
    /* rank 0 handed its code to bench's launcher, which exits with it */
    return pb_launch_exit_handed() ? 0 : code;
}

/* The run flags calibrate reads; the others (--iters, --out, ...) are
 * accepted, so a run's command line can be reused, but change nothing. */
static const char *const calibrate_flags[] = {"--backend", "--workload", "--in", "--hidden", "--layers", "--classes",
                                              "--batch", "--precision", "--strategy", "--gpus", "--device-map",
                                              "--threads", "--quiet"};

static void calibrate_usage(void)
{
    printf("usage: bench calibrate [flags]\n\n"
           "Measures the device's GEMM peak at --precision (the best of a set of shapes, the\n"
           "workload's own among them) and the --workload step's GEMMs alone, and prints them\n"
           "on stdout. Writes no file. It takes the run's flags; these change what it measures\n"
           "(default in brackets):\n");
    pb_config_print_flags(calibrate_flags, sizeof calibrate_flags / sizeof calibrate_flags[0]);
    printf("\nexample:\n  bench calibrate --backend cpu --workload mlp-m\n");
}

/* bench calibrate [flags]: the device's GEMM peak at --precision and the
 * --workload step's GEMMs alone, printed on stdout. It writes no file, so
 * --out and --dump are ignored (and not checked). */
static int cmd_calibrate(int argc, char **argv)
{
    pb_config cfg;
    bool help = false;
    pb_model model;
    pb_calibration cal;
    pb_status st = load_config(&cfg, argc, argv, false, calibrate_usage, &help);
    if (st == PB_OK && help) return 0;
    if (st == PB_OK) st = pb_model_of(&cfg, &model);
    if (st == PB_OK) st = pb_calibrate(&cfg, &model, 0, &cal);
    if (st != PB_OK) return report(st);
    printf("device %s (%s, %s)\n", cal.device, cfg.backend, pb_precision_name(cfg.precision));
    if (!isnan(cal.peak_tflops)) printf("gemm_peak_tflops %.2f\n", cal.peak_tflops);
    /* several devices (dp/mp --gpus N): the mean above, and their spread */
    if (cal.n > 1 && !isnan(cal.peak_min))
        printf("gemm_peak_tflops_min %.2f max %.2f over %d devices\n", cal.peak_min, cal.peak_max, cal.n);
    if (!isnan(cal.gemm_ms)) {
        double flops = pb_model_flops(&model, 0, model.n_blocks, cfg.shape.batch / cfg.devices);
        printf("%s_step_gemms_ms %.4f (%.2f TFLOP/s, per-device batch %d)\n", cfg.workload, cal.gemm_ms,
               flops / (cal.gemm_ms * 1e-3) / 1e12, cfg.shape.batch / cfg.devices);
    }
    return 0;
}

static bool is_help(const char *arg) { return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0; }

/* bench comm [flags]: collective bandwidth (harness/commbench.h) */
static int cmd_comm(int argc, char **argv) { return pb_commbench_main(argc, argv, main_argc, main_argv); }
/* bench check [flags]: the all-ranks health check (harness/check.h) */
static int cmd_check(int argc, char **argv) { return pb_check_main(argc, argv, main_argc, main_argv); }

static int cmd_list(int argc, char **argv)
{
    if (argc == 1 && is_help(argv[0])) {
        printf("usage: bench list\n\n"
               "Prints the strategies, backends (available or not, with the devices found or why\n"
               "none), comms and workload presets (their shapes and parameter counts) this build\n"
               "has, on stdout. Takes no flags but --help.\n\n"
               "example:\n  bench list\n");
        return 0;
    }
    if (argc > 0) return report(pb_usage_error("list takes no arguments; allowed: --help"));
    pb_registry_print(stdout);
    return 0;
}

/* bench version (or --version): what was built, on stdout */
static int cmd_version(int argc, char **argv)
{
    if (argc == 1 && is_help(argv[0])) {
        printf("usage: bench version   (or bench --version)\n\n"
               "Prints the version, git revision, build options (CUDA, MPI, NCCL, NVTX on or off)\n"
               "and compiler of this build, one \"key value\" a line, on stdout. Takes no flags but\n"
               "--help.\n\n"
               "example:\n  bench version\n");
        return 0;
    }
    if (argc > 0) return report(pb_usage_error("version takes no arguments; allowed: --help"));
    pb_env_print_version(stdout);
    return 0;
}


static const struct command *find_command(const char *name);
static const char *command_names(void);

/* bench help [COMMAND]: the whole usage, or COMMAND's own (as COMMAND --help) */
static int cmd_help(int argc, char **argv)
{
    if (argc == 0 || is_help(argv[0]) || strcmp(argv[0], "help") == 0) {
        print_usage();
        return 0;
    }
    const struct command *c = find_command(argv[0]);
    if (!c) return report(pb_usage_error("help: unknown command '%s'; allowed: %s", argv[0], command_names()));
    if (argc > 1)
        return report(pb_usage_error("help: unexpected argument '%s'; allowed: one command", argv[1]));
    char *help[] = {"--help", NULL};
    return c->fn(1, help);
}

static const command commands[] = {
    {"run", cmd_run, "train and append a CSV row (the default)"},
    {"list", cmd_list, "plugins, workload shapes and devices found"},
    {"calibrate", cmd_calibrate, "measured GEMM peak and the workload's GEMMs alone"},
    {"comm", cmd_comm, "collective bandwidth per size as nccl-tests measures it, an alpha-beta fit; CSV rows"},
    {"check", cmd_check, "all-ranks health check: GEMM, memory, pair links, all-reduce; outliers marked"},
    {"compare", pb_cmd_compare, "two results CSVs: per configuration, change and regression verdict"},
    {"plot", pb_cmd_plot, "PNG and SVG plots of a results CSV, or two compared (gnuplot)"},
    {"predict", pb_cmd_predict, "step time, throughput, efficiency, exposed comm and memory of each strategy at 1 to 4096 devices, from measured rows"},
    {"sweep", pb_cmd_sweep, "every strategy x device count as its own run, resumable; a scaling table"},
    {"help", cmd_help, "this text; help COMMAND (or COMMAND --help): that command's own"},
    {"version", cmd_version, "version, git revision, build options (CUDA, MPI, NCCL, NVTX) and compiler"},
};
static const size_t n_commands = sizeof commands / sizeof commands[0];

/* The commands (from the table, so a new one is listed without more
 * edits), then run's flags. */
static void print_usage(void)
{
    printf("usage: bench [run] [flags]\n       bench COMMAND [args]\n\ncommands:\n");
    for (size_t i = 0; i < n_commands; i++) printf("  %-10s %s\n", commands[i].name, commands[i].help);
    printf("\n");
    pb_config_print_help("bench");
    printf("\nexample:\n  bench --strategy ddp --gpus 2 --workload mlp-s --out results/runs.csv\n");
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < n_commands; i++)
        if (strcmp(name, commands[i].name) == 0) return &commands[i];
    return NULL;
}

/* "run, list, ...": the allowed commands for an error message */
static const char *command_names(void)
{
    static char buf[256];
    size_t n = 0;
    for (size_t i = 0; i < n_commands && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? ", " : "", commands[i].name);
    return buf;
}

int main(int argc, char **argv)
{
    main_argc = argc;
    main_argv = argv;
    /* past the file size limit (ulimit -f) a write fails with EFBIG, as on
     * a full disk, and the writers undo it (no torn row, no truncated .npy)
     * instead of the process dying mid-write */
    signal(SIGXFSZ, SIG_IGN);
    if (argc == 2 && strcmp(argv[1], "--version") == 0) return cmd_version(0, argv + 2);
    /* a run's id is one run's: a sweep's runs each make their own */
    if (argc > 1 && argv[1][0] != '-' && strcmp(argv[1], "run") != 0) unsetenv(PB_RUN_ID_ENV);
    if (argc > 1 && argv[1][0] != '-') {
        const command *c = find_command(argv[1]);
        if (c) return c->fn(argc - 2, argv + 2);
        pb_log_error("unknown command '%s'; allowed: %s (or flags for run)", argv[1], command_names());
        return 2;
    }
    return cmd_run(argc - 1, argv + 1);
}
