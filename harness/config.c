/* Flag table, parser and validation. One table drives parsing, range checks
 * and --help, so a flag's default and its allowed range are stated once. */
#define _POSIX_C_SOURCE 200809L
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devmap.h"
#include "launch.h"
#include "log.h"
#include "parse.h"
#include "paths.h"
#include "registry.h"
#include "results.h"
#include "runid.h"
#include "steps_out.h"
#include "../workloads/transformer_check.h"

typedef enum flag_kind { F_INT, F_U64, F_DOUBLE, F_NAME, F_PATH, F_BOOL, F_PRECISION, F_OPTIMIZER, F_SCHEDULE, F_LIST, F_LABEL } flag_kind;

typedef struct flag {
    const char *name;
    flag_kind kind;
    size_t offset;
    double min, max; /* inclusive range for numbers */
    const char *metavar;
    const char *help;
    const struct flag_scope *only; /* the strategies the flag applies to; NULL: all */
} flag;

/* The strategies a flag applies to: those whose table has a fact (has), or,
 * where no fact of the table says it, a list of names ("dp,mp,ddp"). */
typedef struct flag_scope {
    bool (*has)(const pb_strategy *s);
    const char *names;
} flag_scope;

static bool has_microbatches(const pb_strategy *s) { return s->microbatches; }
static bool has_stages(const pb_strategy *s) { return s->stages; }
static bool has_buckets(const pb_strategy *s) { return s->buckets; }
static bool has_zero_stage(const pb_strategy *s) { return s->zero_stage; }
static bool has_mesh(const pb_strategy *s) { return s->mesh; }

static const flag_scope for_microbatches = {has_microbatches, NULL}, for_stages = {has_stages, NULL},
                        for_buckets = {has_buckets, NULL}, for_zero_stage = {has_zero_stage, NULL},
                        for_mesh = {has_mesh, NULL}, for_tensor_parallel = {NULL, "tp,mesh"},
                        /* every strategy of several devices; the order is the help text's */
                        for_several_devices = {NULL, "dp,mp,ddp,tp"};

#define OFF(field) offsetof(pb_config, field)

static const flag flags[] = {
    {"--strategy", F_NAME, OFF(strategy), 0, 0, "NAME", "how a step is split across devices", NULL},
    {"--backend", F_NAME, OFF(backend), 0, 0, "NAME", "compute device kind; auto picks cuda when usable, else cpu", NULL},
    {"--comm", F_NAME, OFF(comm), 0, 0, "NAME", "collectives library; auto picks per strategy and backend", NULL},
    {"--workload", F_NAME, OFF(workload), 0, 0, "NAME", "model preset (bench list shows the shapes)", NULL},
    {"--gpus", F_INT, OFF(devices), 1, 4096, "N", "devices the strategy uses", NULL},
    {"--in", F_INT, OFF(shape.in), 1, 1 << 20, "N", "input features (default: the workload's)", NULL},
    {"--hidden", F_INT, OFF(shape.hidden), 1, 1 << 20, "N", "hidden width (default: the workload's)", NULL},
    {"--layers", F_INT, OFF(shape.layers), 1, 256, "N", "mlp: Linear layers; gpt: transformer blocks (default: the workload's)", NULL},
    {"--classes", F_INT, OFF(shape.classes), 2, 1 << 20, "N", "output classes (default: the workload's)", NULL},
    {"--d-model", F_INT, OFF(shape.d_model), 1, 1 << 16, "N", "gpt: channels (default: the workload's)", NULL},
    {"--heads", F_INT, OFF(shape.heads), 1, 1024, "N", "gpt: attention heads, a divisor of --d-model (default: the workload's)", NULL},
    {"--seq", F_INT, OFF(shape.seq), 1, 1 << 16, "N", "gpt: tokens per sequence (default: the workload's)", NULL},
    {"--vocab", F_INT, OFF(shape.vocab), 2, 1 << 20, "N", "gpt: vocabulary, padded to a multiple of 128 inside (default: the workload's)", NULL},
    {"--batch", F_INT, OFF(shape.batch), 1, 1 << 24, "N", "global batch, split across devices (default: the workload's)", NULL},
    {"--precision", F_PRECISION, OFF(precision), 0, 0, "P", "fp32, tf32 or bf16 (tf32/bf16: cuda only)", NULL},
    {"--optimizer", F_OPTIMIZER, OFF(optimizer), 0, 0, "NAME", "sgd (with momentum) or adamw", NULL},
    {"--lr", F_DOUBLE, OFF(lr), 0, 10, "X", "learning rate (default: 0.01 for sgd, 0.001 for adamw)", NULL},
    {"--momentum", F_DOUBLE, OFF(momentum), 0, 0.999999, "X", "SGD momentum", NULL},
    {"--weight-decay", F_DOUBLE, OFF(weight_decay), 0, 1, "X", "SGD L2 penalty / AdamW decoupled decay", NULL},
    {"--beta1", F_DOUBLE, OFF(beta1), 0, 0.999999, "X", "AdamW first-moment decay", NULL},
    {"--beta2", F_DOUBLE, OFF(beta2), 0, 0.999999, "X", "AdamW second-moment decay", NULL},
    {"--eps", F_DOUBLE, OFF(eps), 1e-30, 1, "X", "AdamW epsilon", NULL},
    {"--iters", F_INT, OFF(iters), 1, 1000000, "N", "measured steps", NULL},
    {"--warmup", F_INT, OFF(warmup), 0, 1000000, "N", "steps run before measuring (excluded)", NULL},
    {"--seed", F_U64, OFF(seed), 0, 0, "N", "seed of parameters and data", NULL},
    {"--threads", F_INT, OFF(threads), 1, 1024, "N", "BLAS threads per device (cpu backend)", NULL},
    {"--loader-threads", F_INT, OFF(loader_threads), 0, 64, "N", "threads filling each batch; 0: 1 on cpu, on cuda the cores per local rank less one (1 to 8)", NULL},
    {"--calibrate", F_BOOL, OFF(calibrate), 0, 0, NULL, "before the steps, measure the GEMM peak and the step's GEMMs alone (always on for cuda)", NULL},
    {"--microbatches", F_INT, OFF(microbatches), 1, 4096, "M", "pipeline microbatches per step (--schedule); 1 is the plain layer split", &for_microbatches},
    {"--schedule", F_SCHEDULE, OFF(schedule), 0, 0, "NAME", "pipeline schedule: gpipe (all forwards, then all backwards) or 1f1b (at most p microbatches in flight)", &for_microbatches},
    {"--split", F_LIST, OFF(split), 1, 255, "L1,L2,..", "first layer of each stage after the first (default: balanced by FLOPs)", &for_stages},
    {"--bucket-mb", F_DOUBLE, OFF(bucket_mb), 0.001, 65536, "X", "gradient bucket size in MB (2^20 bytes)", &for_buckets},
    {"--no-overlap", F_BOOL, OFF(no_overlap), 0, 0, NULL, "all-reduce once after backward instead of per bucket during it", &for_buckets},
    {"--zero-stage", F_INT, OFF(zero_stage), 1, 3, "S", "what ZeRO shards across ranks: 1 optimizer state, 2 and gradients, 3 and parameters (FSDP)", &for_zero_stage},
    {"--dp", F_INT, OFF(mesh_dp), 1, 4096, "D", "mesh: data-parallel replicas (D x T x P = --gpus)", &for_mesh},
    {"--tp", F_INT, OFF(mesh_tp), 1, 4096, "T", "mesh: tensor-parallel ranks per replica, innermost (consecutive ranks)", &for_mesh},
    {"--sequence-parallel", F_BOOL, OFF(sequence_parallel), 0, 0, NULL, "gpt: Megatron's sequence parallelism: the LayerNorms and residuals split by tokens over the tp ranks, reduce-scatter and all-gather in place of the all-reduces", &for_tensor_parallel},
    {"--pp", F_INT, OFF(mesh_pp), 1, 4096, "P", "mesh: pipeline stages, outermost (only 1 is built yet)", &for_mesh},
    {"--device-map", F_LIST, OFF(device_map), 0, 4095, "D0,D1,..", "physical device of each logical device, e.g. 0,0 (default: identity); ddp: of each rank (test-only, cuda)", &for_several_devices},
    {"--verify", F_BOOL, OFF(verify), 0, 0, NULL, "after the run, compare the parameters after step 10 (AdamW: 3) with single's (exit 1 beyond tolerance)", NULL},
    {"--timeout", F_DOUBLE, OFF(timeout_s), 1, 86400, "S", "seconds a device may wait for another (a collective, a pipeline stage, dp's devices) before the run fails", NULL},
    {"--device-mem-mb", F_DOUBLE, OFF(device_mem_mb), 1, 1e9, "MB", "cap each device's memory at MB (2^20 bytes): a run whose memory plan needs more fails before allocating (exit 1, a failed row), and the backend refuses allocations beyond it", NULL},
    {"--cuda-graph", F_BOOL, OFF(cuda_graph), 0, 0, NULL, "capture the step once as a CUDA graph and replay it (cuda)", NULL},
    {"--out", F_PATH, OFF(out), 0, 0, "PATH", "CSV the run's row is appended to", NULL},
    {"--dump", F_PATH, OFF(dump), 0, 0, "DIR", "write initial/final parameters and the first batch as .npy ({run_id} in DIR: the run's id)", NULL},
    {"--steps-out", F_PATH, OFF(steps_out), 0, 0, "FILE", "every measured step's phase times per rank, as CSV (docs/csv-schema.md; {run_id} in FILE: the run's id)", NULL},
    {"--ranks-out", F_PATH, OFF(ranks_out), 0, 0, "FILE", "each rank's step-time distribution, phase means, GEMM peak and straggler verdict, as CSV (docs/csv-schema.md; {run_id} in FILE: the run's id)", NULL},
    {"--tag", F_LABEL, OFF(tag), 0, 0, "NAME", "a label stored in the row's tag column (not part of the configuration key); " PB_LABEL_ALLOWED, NULL},
    {"--quiet", F_BOOL, OFF(quiet), 0, 0, NULL, "no progress lines on stderr", NULL},
};

#define N_FLAGS (sizeof flags / sizeof flags[0])
_Static_assert(N_FLAGS <= 64, "pb_config.given has a bit per flag");
/* parse_list stores a list's count in the int after its array */
_Static_assert(offsetof(pb_config, n_split) == offsetof(pb_config, split) + sizeof(int) * PB_MAX_STAGES,
               "n_split follows split");
_Static_assert(offsetof(pb_config, n_device_map) ==
                   offsetof(pb_config, device_map) + sizeof(int) * PB_MAX_STAGES,
               "n_device_map follows device_map");

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

pb_device_opts pb_config_device_opts(const pb_config *cfg)
{
    return (pb_device_opts){.precision = cfg->precision,
                            .threads = cfg->threads,
                            .mem_limit = cfg->device_mem_mb * 1048576.0};
}

pb_device_opts pb_config_model_device_opts(const pb_config *cfg, const pb_model *model)
{
    pb_device_opts o = pb_config_device_opts(cfg);
    o.max_width = model->max_width;
    return o;
}

pb_comm_opts pb_config_comm_opts(const pb_config *cfg)
{
    return (pb_comm_opts){.timeout_s = cfg->timeout_s, .device_map = cfg->device_map, .n_device_map = cfg->n_device_map};
}

void pb_config_defaults(pb_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->strategy, sizeof cfg->strategy, "single");
    snprintf(cfg->backend, sizeof cfg->backend, "auto");
    snprintf(cfg->comm, sizeof cfg->comm, "auto");
    snprintf(cfg->workload, sizeof cfg->workload, "mlp-s");
    cfg->shape = pb_find_workload("mlp-s")->shape;
    cfg->devices = 1;
    cfg->precision = PB_FP32;
    cfg->optimizer = PB_OPT_SGD;
    cfg->lr = NAN; /* resolved from the optimizer unless given */
    cfg->momentum = 0.9;
    cfg->weight_decay = 0.0;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->iters = 20;
    cfg->warmup = 3;
    cfg->seed = 1234;
    cfg->threads = online_cpus();
    cfg->microbatches = 1;
    cfg->bucket_mb = 25.0;
    cfg->zero_stage = 1;
    cfg->mesh_dp = cfg->mesh_tp = cfg->mesh_pp = 1;
    cfg->timeout_s = 300.0;
    snprintf(cfg->out, sizeof cfg->out, "results/runs.csv");
}

/* "mp", "dp,mp,ddp": the names of the strategies scope holds, in the
 * registry's order where a fact of the table says which */
bool pb_config_given(const pb_config *cfg, const char *name)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (strcmp(flags[i].name, name) == 0) return (cfg->given & (1ULL << i)) != 0;
    return false;
}

static const char *scope_names(const flag_scope *scope, char *buf, size_t len)
{
    if (scope->names) return scope->names;
    buf[0] = '\0';
    const pb_strategy *s;
    for (int i = 0; (s = pb_strategy_at(i)); i++) {
        size_t used = strlen(buf);
        if (scope->has(s)) snprintf(buf + used, len - used, "%s%s", used ? "," : "", s->name);
    }
    return buf;
}

static bool scope_holds(const flag_scope *scope, const char *strategy)
{
    if (scope->has) {
        const pb_strategy *s = pb_find_strategy(strategy);
        return s && scope->has(s);
    }
    size_t n = strlen(strategy);
    for (const char *p = scope->names; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ','))
        if (strcspn(p, ",") == n && strncmp(p, strategy, n) == 0) return true;
    return false;
}

static void default_text(const flag *f, const pb_config *d, char *buf, size_t len)
{
    const char *p = (const char *)d + f->offset;
    switch (f->kind) {
    case F_INT: snprintf(buf, len, "%d", *(const int *)p); break;
    case F_U64: snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case F_DOUBLE:
        if (isnan(*(const double *)p)) snprintf(buf, len, "by optimizer");
        else if (*(const double *)p < f->min) snprintf(buf, len, "off"); /* unset: below its range */
        else snprintf(buf, len, "%g", *(const double *)p);
        break;
    case F_NAME:
    case F_PATH:
    case F_LABEL: snprintf(buf, len, "%s", *p ? p : "off"); break;
    case F_BOOL: snprintf(buf, len, "%s", *(const bool *)p ? "on" : "off"); break;
    case F_LIST: snprintf(buf, len, "off"); break;
    case F_PRECISION: snprintf(buf, len, "%s", pb_precision_name(*(const pb_precision *)p)); break;
    case F_OPTIMIZER: snprintf(buf, len, "%s", pb_optimizer_name(*(const pb_optimizer *)p)); break;
    case F_SCHEDULE: snprintf(buf, len, "%s", pb_schedule_name(*(const pb_schedule *)p)); break;
    }
}

static const char *allowed_names(const flag *f)
{
    if (strcmp(f->name, "--strategy") == 0) return pb_strategy_names();
    if (strcmp(f->name, "--backend") == 0) return pb_backend_names();
    if (strcmp(f->name, "--comm") == 0) return pb_comm_names();
    if (strcmp(f->name, "--workload") == 0) return pb_workload_names();
    if (f->kind == F_PRECISION) return "fp32, tf32, bf16";
    if (f->kind == F_OPTIMIZER) return "sgd, adamw";
    if (f->kind == F_SCHEDULE) return "gpipe, 1f1b";
    return "";
}

/* "  --name METAVAR  help [default]; one of: ..." */
static void print_flag(const flag *f, const pb_config *d)
{
    char left[64], def[64];
    snprintf(left, sizeof left, "%s%s%s", f->name, f->metavar ? " " : "", f->metavar ? f->metavar : "");
    default_text(f, d, def, sizeof def);
    const char *allowed = allowed_names(f);
    char only[256];
    printf("  %-22s %s [%s]%s%s%s%s\n", left, f->help, def, *allowed ? "; one of: " : "", allowed,
           f->only ? "; strategies: " : "", f->only ? scope_names(f->only, only, sizeof only) : "");
}

void pb_config_print_help(const char *prog)
{
    pb_config d;
    pb_config_defaults(&d);
    (void)prog;
    printf("flags of run (default in brackets):\n");
    for (size_t i = 0; i < N_FLAGS; i++) print_flag(&flags[i], &d);
    printf("  %-22s %s\n", "--help", "this text");
}

void pb_config_print_flags(const char *const *names, size_t n)
{
    pb_config d;
    pb_config_defaults(&d);
    for (size_t i = 0; i < N_FLAGS; i++)
        for (size_t j = 0; j < n; j++)
            if (strcmp(flags[i].name, names[j]) == 0) print_flag(&flags[i], &d);
    printf("  %-22s %s\n", "--help", "this text");
}

static const flag *find_flag(const char *name)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (strcmp(flags[i].name, name) == 0) return &flags[i];
    return NULL;
}

static pb_status parse_number(const flag *f, const char *text, void *dst)
{
    if (f->kind == F_DOUBLE) {
        double v;
        if (!pb_parse_double(text, &v))
            return pb_usage_error("%s: '%s' is not a number; allowed: %g to %g", f->name, text, f->min, f->max);
        if (v < f->min || v > f->max)
            return pb_usage_error("%s: %s is out of range; allowed: %g to %g", f->name, text, f->min, f->max);
        *(double *)dst = v;
        return PB_OK;
    }
    if (f->kind == F_U64) {
        uint64_t v;
        if (!pb_parse_u64(text, &v))
            return pb_usage_error("%s: '%s' is not a non-negative integer; allowed: 0 to %llu", f->name,
                                  text, (unsigned long long)UINT64_MAX);
        *(uint64_t *)dst = v;
        return PB_OK;
    }
    long long v;
    if (!pb_parse_int(text, &v))
        return pb_usage_error("%s: '%s' is not an integer; allowed: %.0f to %.0f", f->name, text, f->min, f->max);
    if (v < (long long)f->min || v > (long long)f->max)
        return pb_usage_error("%s: %s is out of range; allowed: %.0f to %.0f", f->name, text, f->min, f->max);
    *(int *)dst = (int)v;
    return PB_OK;
}

/* "2,5,7": comma-separated integers in [min, max] into the int array at the
 * flag's offset, its count into the int right after the array. */
static pb_status parse_list(pb_config *cfg, const flag *f, const char *text)
{
    int *out = (int *)((char *)cfg + f->offset);
    int *count = out + PB_MAX_STAGES;
    int n = 0;
    const char *p = text;
    while (*p) {
        long long v;
        if (!pb_parse_list_int(&p, &v))
            return pb_usage_error("%s: '%s' is not a comma-separated list of integers; allowed: %.0f to %.0f each",
                                  f->name, text, f->min, f->max);
        if (v < f->min || v > f->max)
            return pb_usage_error("%s: '%s' is out of range; allowed: %.0f to %.0f each", f->name, text, f->min,
                                  f->max);
        if (n >= PB_MAX_STAGES)
            return pb_usage_error("%s: more than %d entries", f->name, PB_MAX_STAGES);
        out[n++] = (int)v;
    }
    if (n == 0) return pb_usage_error("%s: empty list", f->name);
    *count = n;
    return PB_OK;
}

static pb_status parse_value(pb_config *cfg, const flag *f, const char *text, bool *shape_given)
{
    char *dst = (char *)cfg + f->offset;
    switch (f->kind) {
    case F_INT:
    case F_U64:
    case F_DOUBLE: {
        pb_status st = parse_number(f, text, dst);
        if (st == PB_OK && f->offset >= OFF(shape) && f->offset < OFF(shape) + sizeof(pb_shape))
            *shape_given = true;
        return st;
    }
    case F_NAME: {
        bool known = (strcmp(f->name, "--strategy") == 0 && pb_find_strategy(text)) ||
                     (strcmp(f->name, "--backend") == 0 && (strcmp(text, "auto") == 0 || pb_find_backend(text))) ||
                     (strcmp(f->name, "--comm") == 0 &&
                      (strcmp(text, "auto") == 0 || strcmp(text, "none") == 0 || pb_find_comm(text))) ||
                     (strcmp(f->name, "--workload") == 0 && pb_find_workload(text));
        if (!known || strlen(text) >= 32)
            return pb_usage_error("%s: unknown '%s'; allowed: %s", f->name, text, allowed_names(f));
        snprintf(dst, 32, "%s", text);
        return PB_OK;
    }
    case F_PATH:
        if (!*text) return pb_usage_error("%s: empty path", f->name);
        if (strlen(text) >= sizeof cfg->out) return pb_usage_error("%s: path longer than %zu bytes", f->name, sizeof cfg->out - 1);
        snprintf(dst, sizeof cfg->out, "%s", text);
        return PB_OK;
    case F_PRECISION:
    case F_OPTIMIZER:
    case F_SCHEDULE: {
        int count = f->kind == F_PRECISION ? PB_PRECISION_COUNT
                    : f->kind == F_OPTIMIZER ? PB_OPTIMIZER_COUNT : PB_SCHEDULE_COUNT;
        for (int i = 0; i < count; i++)
            if (strcmp(f->kind == F_PRECISION   ? pb_precision_name((pb_precision)i)
                       : f->kind == F_OPTIMIZER ? pb_optimizer_name((pb_optimizer)i)
                                                : pb_schedule_name((pb_schedule)i),
                       text) == 0) {
                *(int *)dst = i;
                return PB_OK;
            }
        return pb_usage_error("%s: unknown '%s'; allowed: %s", f->name, text, allowed_names(f));
    }
    case F_LIST: return parse_list(cfg, f, text);
    case F_LABEL:
        if (!pb_label_valid(text))
            return pb_usage_error("%s: '%.*s%s' is not a label; allowed: %s", f->name, PB_LABEL_MAX, text,
                                  strlen(text) > PB_LABEL_MAX ? "..." : "", PB_LABEL_ALLOWED);
        snprintf(dst, PB_CONFIG_TAG_LEN, "%s", text);
        return PB_OK;
    case F_BOOL: break;
    }
    return pb_error(PB_ERR_INTERNAL, "flag %s has no parser", f->name);
}

static pb_status missing_value(const flag *f)
{
    const char *names = allowed_names(f);
    if (*names) return pb_usage_error("%s needs a value; allowed: %s", f->name, names);
    if (f->kind == F_INT)
        return pb_usage_error("%s needs a value; allowed: %.0f to %.0f", f->name, f->min, f->max);
    if (f->kind == F_DOUBLE)
        return pb_usage_error("%s needs a value; allowed: %g to %g", f->name, f->min, f->max);
    if (f->kind == F_U64)
        return pb_usage_error("%s needs a value; allowed: 0 to %llu", f->name, (unsigned long long)UINT64_MAX);
    if (f->kind == F_LABEL) return pb_usage_error("%s needs a value; allowed: %s", f->name, PB_LABEL_ALLOWED);
    return pb_usage_error("%s needs a value; allowed: a %s", f->name, f->kind == F_PATH ? "path" : "value");
}

void pb_flag_split(const char *arg, char *name, size_t len, const char **value)
{
    const char *eq = strchr(arg, '=');
    *value = NULL;
    if (strncmp(arg, "--", 2) == 0 && eq && (size_t)(eq - arg) < len) {
        snprintf(name, len, "%.*s", (int)(eq - arg), arg);
        *value = eq + 1;
    } else {
        snprintf(name, len, "%s", arg);
    }
}

pb_status pb_config_parse(pb_config *cfg, int argc, char **argv, bool *help)
{
    /* Shape flags override the workload's preset whatever their order, so
     * the preset is applied first and the flags again on top. */
    bool shape_given = false;
    *help = false;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < argc; i++) {
            const char *arg = argv[i];
            if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
                *help = true;
                return PB_OK;
            }
            char name[64];
            const char *value = NULL;
            pb_flag_split(arg, name, sizeof name, &value);
            const flag *f = find_flag(name);
            if (!f) {
                if (strncmp(arg, "--", 2) == 0)
                    return pb_usage_error("unknown flag '%s'; see --help for the flags", arg);
                return pb_usage_error("unexpected argument '%s'; see --help", arg);
            }
            /* a flag given twice would silently take the last value */
            uint64_t bit = 1ULL << (f - flags);
            if (pass == 0 && (cfg->given & bit))
                return pb_usage_error("%s is given twice; allowed: once", f->name);
            cfg->given |= bit;
            if (f->kind == F_BOOL) {
                if (value) return pb_usage_error("%s takes no value", f->name);
                *(bool *)((char *)cfg + f->offset) = true;
                continue;
            }
            if (!value) {
                /* "--iters --out x" is a forgotten value, not --iters "--out" */
                if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                    return missing_value(f);
                value = argv[++i];
            }
            bool is_shape = f->offset >= OFF(shape) && f->offset < OFF(shape) + sizeof(pb_shape);
            if (pass == 0 && is_shape) {
                pb_config scratch = *cfg;
                pb_status st = parse_value(&scratch, f, value, &shape_given);
                if (st != PB_OK) return st;
                continue;
            }
            if (pass == 1 && !is_shape) continue;
            pb_status st = parse_value(cfg, f, value, &shape_given);
            if (st != PB_OK) return st;
        }
        if (pass == 0) cfg->shape = pb_find_workload(cfg->workload)->shape;
    }
    /* a different model is another workload; a different batch is the same
     * model run differently (weak scaling grows it with the devices), and
     * the batch has its own column */
    const pb_workload *wl = pb_find_workload(cfg->workload);
    const pb_shape *preset = &wl->shape;
    if (shape_given && (cfg->shape.in != preset->in || cfg->shape.hidden != preset->hidden ||
                        cfg->shape.layers != preset->layers || cfg->shape.classes != preset->classes ||
                        cfg->shape.d_model != preset->d_model || cfg->shape.heads != preset->heads ||
                        cfg->shape.seq != preset->seq || cfg->shape.vocab != preset->vocab))
        snprintf(cfg->workload, sizeof cfg->workload, "%s", wl->ops == &pb_workload_gpt ? "gpt-custom" : "custom");
    if (isnan(cfg->lr)) cfg->lr = cfg->optimizer == PB_OPT_ADAMW ? 1e-3 : 1e-2;
    return PB_OK;
}

/* A strategy's option given to another strategy is a mistake worth a
 * message, not a silently ignored flag. */
static pb_status check_strategy_flags(const pb_config *cfg)
{
    for (size_t i = 0; i < N_FLAGS; i++) {
        const flag_scope *only = flags[i].only;
        if (!only || !(cfg->given & (1ULL << i)) || scope_holds(only, cfg->strategy)) continue;
        char names[256];
        return pb_usage_error("%s applies to --strategy %s, not %s", flags[i].name,
                              scope_names(only, names, sizeof names), cfg->strategy);
    }
    /* ddp: one entry per rank */
    const pb_strategy *strategy = pb_find_strategy(cfg->strategy);
    bool ranks = strategy && strategy->procs == PB_PROC_PER_DEVICE;
    if (cfg->n_device_map && cfg->n_device_map != cfg->devices)
        return pb_usage_error("--device-map has %d entries; allowed: one per %s (--gpus %d)", cfg->n_device_map,
                              ranks ? "rank" : "device", cfg->devices);
    return PB_OK;
}

/* A device map may put several logical devices on one physical device, but
 * only on one of the `present` devices. */
static pb_status check_device_map(const pb_config *cfg, int present)
{
    for (int i = 0; i < cfg->n_device_map; i++)
        if (cfg->device_map[i] >= present)
            return pb_usage_error("--device-map: device %d does not exist; allowed: 0 to %d", cfg->device_map[i],
                                  present - 1);
    return PB_OK;
}

pb_status pb_config_check_cuda_devices(const pb_config *cfg, int present, int per_node)
{
    const pb_strategy *strategy = pb_find_strategy(cfg->strategy);
    bool per_rank = strategy && strategy->procs == PB_PROC_PER_DEVICE;
    pb_status st = check_device_map(cfg, present);
    if (st != PB_OK) return st;
    if (per_node <= present || cfg->n_device_map) return PB_OK;
    if (!per_rank)
        return pb_usage_error("--gpus %d: only %d CUDA device%s present (--device-map can share one)", cfg->devices,
                              present, present == 1 ? "" : "s");
    /* inside a launch a rank may see only the one device its launcher gave
     * it (harness/devmap.c); before the launch, the ranks will inherit this
     * process's view, so one visible device is one device for them all */
    const char *visible = pb_launch_inside() ? getenv("CUDA_VISIBLE_DEVICES") : NULL;
    pb_rank_view v = {.visible = present, .local_rank = per_node - 1, .local_ranks = per_node,
                      .rank = per_node - 1, .cuda_visible = visible};
    int ordinal;
    if (pb_rank_device(&v, &ordinal) == PB_OK) return PB_OK;
    pb_error_clear();
    if (per_node == cfg->devices)
        return pb_usage_error("--gpus %d: only %d CUDA device%s present on this node; strategy %s runs one rank "
                              "per device (launch across nodes with mpirun or srun; CUDA_VISIBLE_DEVICES=%s)",
                              cfg->devices, present, present == 1 ? "" : "s", cfg->strategy,
                              visible ? visible : "unset");
    return pb_usage_error("--gpus %d: this node runs %d ranks but has only %d CUDA device%s; strategy %s runs one "
                          "rank per device: each rank sees its own one device (srun --gpus-per-task=1) or every "
                          "rank sees at least %d (CUDA_VISIBLE_DEVICES=%s)",
                          cfg->devices, per_node, present, present == 1 ? "" : "s", cfg->strategy, per_node,
                          visible ? visible : "unset");
}

/* A shape flag of one workload kind given to another: the other's model
 * has no such dimension. */
static pb_status check_shape_flags(const pb_config *cfg)
{
    static const char *const mlp_only[] = {"--in", "--hidden", "--classes"};
    static const char *const gpt_only[] = {"--d-model", "--heads", "--seq", "--vocab"};
    const pb_workload *w = pb_find_workload(cfg->workload);
    bool gpt = w->ops == &pb_workload_gpt;
    const char *const *refused = gpt ? mlp_only : gpt_only;
    size_t n = gpt ? sizeof mlp_only / sizeof *mlp_only : sizeof gpt_only / sizeof *gpt_only;
    for (size_t i = 0; i < N_FLAGS; i++)
        for (size_t j = 0; j < n; j++)
            if ((cfg->given & (1ULL << i)) && strcmp(flags[i].name, refused[j]) == 0)
                return pb_usage_error("%s is a flag of %s workloads; the %s workloads' shape flags: %s", refused[j],
                                      gpt ? "mlp" : "gpt", w->ops->kind,
                                      gpt ? "--d-model --heads --seq --vocab --layers --batch"
                                          : "--in --hidden --layers --classes --batch");
    return PB_OK;
}

pb_status pb_config_validate(pb_config *cfg)
{
    const pb_strategy *strategy = pb_find_strategy(cfg->strategy);
    pb_status fst = check_strategy_flags(cfg);
    if (fst != PB_OK) return fst;
    if ((fst = check_shape_flags(cfg)) != PB_OK) return fst;
    if (strategy->needs_even_split && cfg->shape.batch % cfg->devices != 0)
        return pb_usage_error("--batch %d is not divisible by --gpus %d; the global batch is split evenly "
                              "across devices",
                              cfg->shape.batch, cfg->devices);
    pb_model model;
    pb_status st = pb_model_of(cfg, &model);
    if (st != PB_OK) return st;
    if ((st = strategy->validate(cfg, &model)) != PB_OK) return st;

    /* the auto-backend notice is printed only once the whole config is
     * valid, so a usage error stays one line */
    char auto_note[320] = "";
    bool resolve_auto = strcmp(cfg->backend, "auto") == 0;
    if (resolve_auto) {
        cfg->backend_auto = true;
        char why[256] = "";
        if (pb_backend_cuda.device_count(why, sizeof why) > 0) {
            snprintf(cfg->backend, sizeof cfg->backend, "cuda");
        } else {
            snprintf(cfg->backend, sizeof cfg->backend, "cpu");
            snprintf(auto_note, sizeof auto_note, "backend auto: using cpu (no usable CUDA device: %s)", why);
        }
    }
    /* resolved: cfg->backend names a registered backend from here on */
    const pb_backend *be = pb_find_backend(cfg->backend);
    bool gpu = be && be->is_gpu, host = be && !be->is_gpu;
    /* before the devices are counted: the refusal holds whatever is present */
    const char *tr_missing = be && model.ops->transformer ? pb_transformer_missing(be, cfg->precision) : NULL;
    if (tr_missing)
        return pb_usage_error("%s workloads need the backend's transformer ops: the %s backend does not have %s "
                              "yet; use %s",
                              model.ops->kind, be->name, tr_missing,
                              strcmp(tr_missing, "bf16 activations") ? "--backend cpu" : "--precision fp32 or tf32");
    if (gpu && !resolve_auto) {
        char why[256] = "";
        int n = be->device_count(why, sizeof why);
        if (n <= 0) return pb_user_error(PB_ERR_UNAVAILABLE, "--backend cuda: no usable CUDA device: %s", why);
        /* a rank-per-device strategy may span nodes, each rank opening a
         * device of its node: inside a launch, how many ranks share this
         * node is known only once MPI has started (harness/run.c) */
        int per_node = strategy->procs == PB_PROC_ONE || !pb_launch_inside() ? cfg->devices : 0;
        pb_status dst = pb_config_check_cuda_devices(cfg, n, per_node);
        if (dst != PB_OK) return dst;
    }
    if (host) {
        /* the cpu backend stands in for as many devices as it has cores, or
         * as --gpus asks for */
        int present = be->device_count(NULL, 0);
        if ((st = check_device_map(cfg, present > cfg->devices ? present : cfg->devices)) != PB_OK) return st;
        /* ddp's device map puts ranks on GPUs (test-only: several on one);
         * a cpu rank is a process with its own threads, nothing to map */
        if (cfg->n_device_map && strategy->procs == PB_PROC_PER_DEVICE)
            return pb_usage_error("--device-map for strategy %s places ranks on CUDA devices; allowed: with "
                                  "--backend cuda",
                                  cfg->strategy);
    }
    if (host && cfg->precision != PB_FP32)
        return pb_usage_error("--precision %s is not supported on the cpu backend; allowed there: fp32",
                              pb_precision_name(cfg->precision));
    if (host && cfg->cuda_graph)
        return pb_usage_error("--cuda-graph needs the cuda backend");
    /* rank-per-device strategies: NCCL between GPUs when it was built, MPI
     * otherwise (host-staged on GPUs). One process driving several devices
     * (dp, mp): `local`, its threads moving data between the devices; one
     * device (single): no comm. */
    bool nccl_built = pb_find_comm("nccl")->allreduce != NULL;
    bool one_proc = strategy->procs == PB_PROC_ONE, one_dev = one_proc && cfg->devices == 1;
    if (strcmp(cfg->comm, "auto") == 0)
        snprintf(cfg->comm, sizeof cfg->comm, "%s",
                 one_dev ? "none" : one_proc ? "local" : gpu && nccl_built ? "nccl" : "mpi");
    if (one_dev && strcmp(cfg->comm, "none") != 0)
        return pb_usage_error("--comm %s: strategy %s on 1 device moves no data between devices; allowed: auto, none",
                              cfg->comm, cfg->strategy);
    const pb_comm *comm = pb_find_comm(cfg->comm); /* NULL: none */
    bool threads_comm = comm && !comm->between_ranks, ranks_comm = comm && comm->between_ranks;
    if (one_proc && !one_dev && !threads_comm)
        return pb_usage_error("--comm %s: strategy %s drives its %d devices from threads of one process; allowed: "
                              "auto, local",
                              cfg->comm, cfg->strategy, cfg->devices);
    if (!one_proc && !ranks_comm)
        return pb_usage_error("--comm %s: strategy %s runs one MPI rank per device; allowed: auto, mpi, nccl",
                              cfg->comm, cfg->strategy);
    if (comm && comm->device_buffers && !gpu)
        return pb_usage_error("--comm nccl needs --backend cuda; allowed on %s: auto, mpi", cfg->backend);
    /* the files the command writes ("" when it writes none: bench calibrate) */
    if (cfg->out[0] && (st = pb_results_check_target(cfg->out)) != PB_OK) return st;
    if (cfg->dump[0] && (st = pb_path_check_dump(cfg->dump)) != PB_OK) return st;
    if (cfg->steps_out[0] && (st = pb_path_check_out_file("--steps-out", cfg->steps_out, cfg->out)) != PB_OK)
        return st;
    if (cfg->ranks_out[0] && (st = pb_path_check_out_file("--ranks-out", cfg->ranks_out, cfg->out)) != PB_OK)
        return st;
    if (cfg->ranks_out[0] && strcmp(cfg->ranks_out, cfg->steps_out) == 0)
        return pb_usage_error("--ranks-out %s: is the --steps-out file; give another file", cfg->ranks_out);
    /* ranks' steps meet at rank 0 in one gather of an int count */
    if (cfg->steps_out[0] && (long long)cfg->devices * cfg->iters > INT_MAX / PB_STEPS_WIDTH)
        return pb_usage_error("--steps-out with --gpus %d x --iters %d: more steps than one file gathers; allowed: "
                              "--gpus x --iters up to %d",
                              cfg->devices, cfg->iters, INT_MAX / PB_STEPS_WIDTH);
    if (auto_note[0] && !cfg->quiet && !pb_launch_reexecuted()) pb_log_info("%s", auto_note);
    return PB_OK;
}
