#include "registry.h"

#include <string.h>

#include "../kernels/comm_local.h"
#include "../kernels/comm_mpi.h"
#include "../kernels/comm_nccl.h"

static const pb_backend *const backends[] = {&pb_backend_cpu, &pb_backend_cuda};

static const pb_comm *const comms[] = {&pb_comm_mpi, &pb_comm_nccl, &pb_comm_local};

static const pb_strategy *const strategies[] = {&pb_strategy_single, &pb_strategy_dp, &pb_strategy_ddp, &pb_strategy_mp};

static const pb_workload workloads[] = {
    {"mlp-xs", "tiny MLP for tests", {256, 256, 3, 10, 64}, &pb_workload_mlp},
    {"mlp-s", "small MLP (launch-bound on GPUs)", {1024, 1024, 4, 1000, 256}, &pb_workload_mlp},
    {"mlp-m", "medium MLP", {4096, 4096, 8, 1000, 512}, &pb_workload_mlp},
    {"mlp-l", "large MLP (GEMM-bound)", {8192, 8192, 8, 1000, 1024}, &pb_workload_mlp},
    {"comm-heavy", "wide, shallow, small batch: communication dominates", {8192, 8192, 4, 1000, 32},
     &pb_workload_mlp},
    {"custom", "shape from --in --hidden --layers --classes --batch (defaults: mlp-s)",
     {1024, 1024, 4, 1000, 256}, &pb_workload_mlp},
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

void pb_registry_print(FILE *out)
{
    static const char *const procs[] = {"1 process, its devices", "1 rank per device"};
    fprintf(out, "strategies:\n");
    for (size_t i = 0; i < COUNT(strategies); i++)
        fprintf(out, "  %-12s %-24s %s\n", strategies[i]->name, procs[strategies[i]->procs],
                strategies[i]->description);
    fprintf(out, "backends:\n");
    for (size_t i = 0; i < COUNT(backends); i++) {
        char why[256] = "";
        int n = backends[i]->device_count(why, sizeof why);
        char found[300];
        if (n > 0)
            snprintf(found, sizeof found, "%d device%s", n, n == 1 ? "" : "s");
        else
            snprintf(found, sizeof found, "no device: %s", why);
        fprintf(out, "  %-12s %-24s %s\n", backends[i]->name, found, backends[i]->description);
    }
    fprintf(out, "comms:\n");
    fprintf(out, "  %-12s %s\n", "none", "no collectives (single device)");
    for (size_t i = 0; i < COUNT(comms); i++)
        if (comms[i]) fprintf(out, "  %-12s %s\n", comms[i]->name, comms[i]->description);
    fprintf(out, "workloads:%*sin  hidden layers classes batch   params\n", 6, "");
    for (size_t i = 0; i < COUNT(workloads); i++) {
        const pb_shape *s = &workloads[i].shape;
        static pb_model model; /* large for a stack; `bench list` runs once */
        size_t params = pb_model_describe(workloads[i].ops, s, &model) == PB_OK ? model.n_params : 0;
        fprintf(out, "  %-12s %5d %7d %6d %7d %5d %9zu  %s\n", workloads[i].name, s->in, s->hidden,
                s->layers, s->classes, s->batch, params, workloads[i].description);
    }
}
