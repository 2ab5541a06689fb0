#include "registry.h"

#include <stdio.h>
#include <string.h>

#include "../kernels/comm_local.h"
#include "../kernels/comm_mpi.h"
#include "../kernels/comm_nccl.h"
#include "table.h"
#include "env.h"

static const pb_backend *const backends[] = {&pb_backend_cpu, &pb_backend_cuda};

static const pb_comm *const comms[] = {&pb_comm_mpi, &pb_comm_nccl, &pb_comm_local};

static const pb_strategy *const strategies[] = {&pb_strategy_single, &pb_strategy_dp, &pb_strategy_ddp, &pb_strategy_mp,
                                                &pb_strategy_tp,     &pb_strategy_zero, &pb_strategy_mesh};

static const pb_workload workloads[] = {
    {"mlp-xs", "tiny MLP for tests", {256, 256, 3, 10, 64, 0, 0, 0, 0}, &pb_workload_mlp},
    {"mlp-s", "small MLP (launch-bound on GPUs)", {1024, 1024, 4, 1000, 256, 0, 0, 0, 0}, &pb_workload_mlp},
    {"mlp-m", "medium MLP", {4096, 4096, 8, 1000, 512, 0, 0, 0, 0}, &pb_workload_mlp},
    {"mlp-l", "large MLP (GEMM-bound)", {8192, 8192, 8, 1000, 1024, 0, 0, 0, 0}, &pb_workload_mlp},
    {"comm-heavy", "wide, shallow, small batch: communication dominates", {8192, 8192, 4, 1000, 32, 0, 0, 0, 0},
     &pb_workload_mlp},
    {"custom", "shape from --in --hidden --layers --classes --batch (defaults: mlp-s)",
     {1024, 1024, 4, 1000, 256, 0, 0, 0, 0}, &pb_workload_mlp},
    {"gpt-xs", "tiny GPT for tests (CPU, seconds)",
     {.layers = 2, .batch = 8, .seq = 32, .heads = 4, .d_model = 64, .vocab = 256}, &pb_workload_gpt},
    {"gpt2-124m", "GPT-2 small (llm.c's and nanoGPT's figures)",
     {.layers = 12, .batch = 16, .seq = 1024, .heads = 12, .d_model = 768, .vocab = 50257}, &pb_workload_gpt},
    {"gpt2-350m", "GPT-2 medium",
     {.layers = 24, .batch = 16, .seq = 1024, .heads = 16, .d_model = 1024, .vocab = 50257}, &pb_workload_gpt},
    {"gpt-1.3b", "GPT-3 XL shape (d 2048, 24 blocks, 16 heads of 128)",
     {.layers = 24, .batch = 8, .seq = 2048, .heads = 16, .d_model = 2048, .vocab = 50257}, &pb_workload_gpt},
    {"gpt-custom", "shape from --d-model --layers --heads --seq --vocab --batch (defaults: gpt-xs)",
     {.layers = 2, .batch = 8, .seq = 32, .heads = 4, .d_model = 64, .vocab = 256}, &pb_workload_gpt},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const pb_backend *pb_find_backend(const char *name)
{
    for (size_t i = 0; i < COUNT(backends); i++)
        if (strcmp(backends[i]->name, name) == 0) return backends[i];
    return NULL;
}

const pb_comm *pb_find_comm(const char *name)
{
    for (size_t i = 0; i < COUNT(comms); i++)
        if (comms[i] && strcmp(comms[i]->name, name) == 0) return comms[i];
    return NULL;
}

const pb_strategy *pb_find_strategy(const char *name)
{
    for (size_t i = 0; i < COUNT(strategies); i++)
        if (strcmp(strategies[i]->name, name) == 0) return strategies[i];
    return NULL;
}

const pb_strategy *pb_strategy_at(int i)
{
    return i >= 0 && (size_t)i < COUNT(strategies) ? strategies[i] : NULL;
}

int pb_strategy_order(const char *name)
{
    size_t i = 0;
    while (i < COUNT(strategies) && strcmp(strategies[i]->name, name) != 0) i++;
    return (int)i;
}

const pb_workload *pb_find_workload(const char *name)
{
    for (size_t i = 0; i < COUNT(workloads); i++)
        if (strcmp(workloads[i].name, name) == 0) return &workloads[i];
    return NULL;
}

pb_status pb_model_of(const pb_config *cfg, pb_model *out)
{
    const pb_workload *w = pb_find_workload(cfg->workload);
    if (!w) return pb_usage_error("--workload %s: allowed: %s", cfg->workload, pb_workload_names());
    return pb_model_describe(w->ops, &cfg->shape, out);
}

static void join(char *buf, size_t len, const char *name)
{
    size_t used = strlen(buf);
    snprintf(buf + used, len - used, "%s%s", used ? ", " : "", name);
}

const char *pb_backend_names(void)
{
    static char buf[256];
    if (!buf[0]) {
        join(buf, sizeof buf, "auto");
        for (size_t i = 0; i < COUNT(backends); i++) join(buf, sizeof buf, backends[i]->name);
    }
    return buf;
}

const char *pb_comm_names(void)
{
    static char buf[256];
    if (!buf[0]) {
        join(buf, sizeof buf, "auto");
        join(buf, sizeof buf, "none");
        for (size_t i = 0; i < COUNT(comms); i++)
            if (comms[i]) join(buf, sizeof buf, comms[i]->name);
    }
    return buf;
}

const char *pb_strategy_names(void)
{
    static char buf[256];
    if (!buf[0])
        for (size_t i = 0; i < COUNT(strategies); i++) join(buf, sizeof buf, strategies[i]->name);
    return buf;
}

const char *pb_workload_names(void)
{
    static char buf[256];
    if (!buf[0])
        for (size_t i = 0; i < COUNT(workloads); i++) join(buf, sizeof buf, workloads[i].name);
    return buf;
}

/* The widest of n names (at least min), for a column of them. */
static int name_width(const char *const *names, size_t n, int min)
{
    int w = min;
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(names[i]) > w) w = (int)strlen(names[i]);
    return w;
}

/* Each section a table within PB_TABLE_COLUMNS, the last column taking
 * what the others leave: names, then facts, then the description (and for
 * a backend without devices, why not: a column of its own). */
void pb_registry_print(FILE *out)
{
    static const char *const procs[] = {"1 process, its devices", "1 rank per device"};
    const char *names[16];
    int w[5];

    fprintf(out, "strategies:\n");
    for (size_t i = 0; i < COUNT(strategies); i++) names[i] = strategies[i]->name;
    w[0] = name_width(names, COUNT(strategies), 0);
    w[1] = 22;
    w[2] = pb_table_rest(2, w);
    for (size_t i = 0; i < COUNT(strategies); i++)
        pb_table_row(out, 3, w, (const char *[]){names[i], procs[strategies[i]->procs], strategies[i]->description});

    /* a GPU machine shows no reason column: every backend has devices */
    char found[COUNT(backends)][16], why[COUNT(backends)][256];
    bool any_missing = false;
    for (size_t i = 0; i < COUNT(backends); i++) {
        why[i][0] = '\0';
        int n = backends[i]->device_count(why[i], sizeof why[i]);
        snprintf(found[i], sizeof found[i], "%d", n > 0 ? n : 0);
        if (n <= 0) any_missing = true;
        else why[i][0] = '\0';
        names[i] = backends[i]->name;
    }
    fprintf(out, "backends:\n");
    w[0] = name_width(names, COUNT(backends), 4);
    w[1] = 9;
    w[2] = 7;
    int rest = pb_table_rest(3, w);
    w[3] = any_missing ? (rest - 2) / 2 : rest;
    w[4] = rest - 2 - w[3];
    int cols = any_missing ? 5 : 4;
    pb_table_row(out, cols, w, (const char *[]){"name", "available", "devices", "description", "why not"});
    for (size_t i = 0; i < COUNT(backends); i++)
        pb_table_row(out, cols, w,
                     (const char *[]){names[i], why[i][0] || found[i][0] == '0' ? "no" : "yes", found[i],
                                      backends[i]->description, why[i]});
    /* what the cpu backend's GEMMs run on (docs/csv-schema.md, "BLAS
     * kernels"): a BLAS below the CPU's instruction set is said here too */
    char blas[256];
    pb_env_blas_summary(blas, sizeof blas);
    fprintf(out, "blas (cpu backend):\n");
    w[1] = pb_table_rest(0, w);
    pb_table_row(out, 1, w + 1, (const char *[]){blas});

    fprintf(out, "comms:\n");
    names[0] = "none";
    for (size_t i = 0; i < COUNT(comms); i++) names[i + 1] = comms[i] ? comms[i]->name : "";
    w[0] = name_width(names, COUNT(comms) + 1, 0);
    w[1] = pb_table_rest(1, w);
    pb_table_row(out, 2, w, (const char *[]){"none", "no collectives (single device)"});
    for (size_t i = 0; i < COUNT(comms); i++)
        if (comms[i]) pb_table_row(out, 2, w, (const char *[]){comms[i]->name, comms[i]->description});

    for (size_t i = 0; i < COUNT(workloads); i++) names[i] = workloads[i].name;
    w[0] = name_width(names, COUNT(workloads), 0);
    w[1] = pb_table_rest(1, w);
    /* two lines each: what it is, then its shape (one string of its kind's
     * dimensions, as the CSV's shape column), global batch and parameters */
    fprintf(out, "workloads:\n");
    for (size_t i = 0; i < COUNT(workloads); i++) {
        const pb_shape *s = &workloads[i].shape;
        static pb_model model; /* large for a stack; `bench list` runs once */
        size_t params = pb_model_describe(workloads[i].ops, s, &model) == PB_OK ? pb_model_params(&model) : 0;
        char str[PB_SHAPE_STR], shape[128];
        workloads[i].ops->shape_str(s, str, sizeof str);
        snprintf(shape, sizeof shape, "%s batch=%d params=%zu", str, s->batch, params);
        pb_table_row(out, 2, w, (const char *[]){names[i], workloads[i].description});
        pb_table_row(out, 2, w, (const char *[]){"", shape});
    }
}
