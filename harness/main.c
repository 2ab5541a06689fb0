/* bench: the command table (like git.c's) and the only exit(). */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "registry.h"
#include "run.h"
#include "status.h"

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

static int cmd_run(int argc, char **argv)
{
    pb_config cfg;
    bool help = false;
    pb_config_defaults(&cfg);
    pb_status st = pb_config_parse(&cfg, argc, argv, &help);
    if (st == PB_OK && help) {
        pb_config_print_help("bench");
        return 0;
    }
    pb_log_set_quiet(cfg.quiet);
    if (st == PB_OK) st = pb_config_validate(&cfg);
    if (st == PB_OK) st = pb_run(&cfg);
    return report(st);
}

static int cmd_list(int argc, char **argv)
{
    (void)argv;
    if (argc > 0) return report(pb_usage_error("list takes no arguments"));
    pb_registry_print(stdout);
    return 0;
}

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    pb_config_print_help("bench");
    return 0;
}

static const command commands[] = {
    {"run", cmd_run, "train and append a CSV row (the default)"},
    {"list", cmd_list, "plugins, workload shapes and devices found"},
    {"help", cmd_help, "flags and their defaults"},
};

int main(int argc, char **argv)
{
    if (argc > 1 && argv[1][0] != '-') {
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 2, argv + 2);
        pb_log_error("unknown command '%s'; allowed: run, list, help (or flags for run)", argv[1]);
        return 2;
    }
    return cmd_run(argc - 1, argv + 1);
}
