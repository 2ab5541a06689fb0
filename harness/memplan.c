#define _POSIX_C_SOURCE 200809L
#include "memplan.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../strategies/strategy.h"
#include "registry.h"
#include "run.h"

#define MIB 1048576.0

size_t pb_memplan_act_elem(const pb_config *cfg, bool host_is_device)
{
    return !host_is_device && cfg->precision == PB_BF16 ? 2 : sizeof(float);
}

double pb_memplan_add_replica(const pb_model *model, int b0, int b1, double rows, int slots, bool opt_state,
                              bool targets, bool bound_io, pb_optimizer o, double e, pb_mem_parts *p)
{
    double n = (double)pb_model_span(model, b0, b1);
    p->params += 4.0 * n + (e != 4.0 ? e * n : 0.0);
    p->grads += 4.0 * n;
    if (opt_state) p->optim += 4.0 * n * (o == PB_OPT_ADAMW ? 2.0 : 1.0);
    p->acts += model->ops->stage_bytes(model, b0, b1, rows, slots, e, bound_io) + 4.0; /* and the loss */
    if (targets) p->acts += rows * slots * (double)pb_model_target_bytes(model);
    return n;
}

double pb_memplan_input_bytes(const pb_model *model, double rows, double e)
{
    return model->input_is_act ? e * rows * (double)model->input_elems : rows * (double)pb_model_input_bytes(model);
}

void pb_memplan_add_staging(const pb_model *model, double rows, bool in_place, pb_mem_parts *p)
{
    if (!in_place)
        p->acts += 2.0 * rows * (double)(pb_model_input_bytes(model) + pb_model_target_bytes(model));
}

bool pb_memplan_in_place(const pb_config *cfg, const pb_memplan_env *env)
{
    return env->host_is_device && pb_memplan_act_elem(cfg, env->host_is_device) == sizeof(float);
}

/* harness/loader.c: three slots of the global batch and the data table */
static void add_loader(const pb_model *model, double batch, double *bytes)
{
    *bytes += 3.0 * batch * (double)(pb_model_input_bytes(model) + pb_model_target_bytes(model)) +
              4.0 * (double)model->data_table;
}

double pb_mem_parts_sum(const pb_mem_parts *p)
{
    return p->params + p->grads + p->optim + p->acts + p->loader + p->verify;
}

static void parts_add(pb_mem_parts *to, const pb_mem_parts *p, double times)
{
    to->params += times * p->params;
    to->grads += times * p->grads;
    to->optim += times * p->optim;
    to->acts += times * p->acts;
    to->loader += times * p->loader;
    to->verify += times * p->verify;
}

void pb_memplan_compute(const pb_config *cfg, const pb_model *model, const pb_memplan_env *env,
                        pb_memplan *out)
{
    memset(out, 0, sizeof *out);
    const double e = (double)pb_memplan_act_elem(cfg, env->host_is_device);
    const double B = cfg->shape.batch, P = (double)model->n_params;
    const int L = model->n_blocks, n = cfg->devices;
    const pb_optimizer o = cfg->optimizer;
    const bool in_place = pb_memplan_in_place(cfg, env);
    pb_mem_parts dev[PB_MAX_STAGES];
    memset(dev, 0, sizeof dev);
    const pb_strategy *strategy = pb_find_strategy(cfg->strategy);
    const pb_comm *comm = pb_find_comm(cfg->comm);
    bool per_rank = strategy && strategy->procs == PB_PROC_PER_DEVICE;
    out->n_devices = per_rank ? 1 : n;
    /* a mesh's pipeline stages differ: one figure per stage (a rank holds
     * its stage's), stage 0 rank 0's */
    if (per_rank && strategy && strategy->mesh && cfg->mesh_pp > 1) out->n_devices = cfg->mesh_pp;

    if (strategy && strategy->plan_memory) {
        strategy->plan_memory(cfg, model, env, dev);
    } else {
        /* one replica over the rows this process holds (the batch, or a
         * rank's shard) and their input staging; a CUDA graph stages even
         * an input it could read in place */
        double rows = per_rank ? B / n : B;
        pb_memplan_add_replica(model, 0, L, rows, 1, true, true, false, o, e, &dev[0]);
        pb_memplan_add_staging(model, rows, in_place && !cfg->cuda_graph, &dev[0]);
    }
    for (int i = 0; i < out->n_devices; i++) {
        out->device_parts[i] = dev[i];
        out->device[i] = pb_mem_parts_sum(&dev[i]);
        /* ddp's rank drives the device pb_rank_device gave it */
        out->ordinal[i] = per_rank ? env->device : cfg->n_device_map ? cfg->device_map[i] : i;
    }

    /* one process of the run: its host buffers, and its devices' memory
     * where that is host memory */
    pb_mem_parts proc = {0};
    proc.params += 4.0 * P; /* initial, later final parameters (run.c) */
    /* a rank's loader fills its shard alone (the larger one when the ranks
     * do not divide the batch) */
    int shards = n;
    if (strategy->batch_shard) strategy->batch_shard(cfg, 0, &shards);
    add_loader(model, per_rank && !strategy->rank_full_batch ? ceil(B / (double)shards) : B, &proc.loader);
    /* ddp's gradients staged through the host for a host comm */
    if (per_rank && !env->host_is_device && !(comm && comm->device_buffers)) proc.grads += 4.0 * P;
    if (env->host_is_device)
        for (int i = 0; i < out->n_devices; i++) parts_add(&proc, &dev[i], per_rank ? 1.0 / out->n_devices : 1.0);
    int procs = per_rank && env->local_ranks > 0 ? env->local_ranks : 1;
    parts_add(&out->host_parts, &proc, procs);

    /* --verify on the writer: single's replica on device 0, its loader and
     * two parameter copies, beside the run's own, and the judged step's
     * parameters when it comes before the last */
    if (cfg->verify && env->writer) {
        pb_mem_parts ref = {0};
        pb_memplan_add_replica(model, 0, L, B, 1, true, true, false, o, e, &ref);
        pb_memplan_add_staging(model, B, in_place, &ref);
        double ref_dev = pb_mem_parts_sum(&ref);
        out->verify_parts = ref;
        double host = 8.0 * P;
        add_loader(model, B, &host);
        if (pb_verify_steps(cfg) < (int64_t)cfg->warmup + cfg->iters) host += 4.0 * P;
        if (env->host_is_device) host += ref_dev;
        else out->device[0] += ref_dev;
        out->host_parts.verify += host;
    }
    out->host = pb_mem_parts_sum(&out->host_parts);
}

int pb_memplan_largest(const pb_memplan *plan)
{
    int best = 0;
    for (int i = 1; i < plan->n_devices; i++)
        if (pb_mem_parts_sum(&plan->device_parts[i]) > pb_mem_parts_sum(&plan->device_parts[best])) best = i;
    return best;
}

static pb_status cap_refusal(const char *who, int device, const pb_mem_parts *p, double cap)
{
    return pb_user_error(PB_ERR_NOMEM,
                         "out of device memory: %sdevice %d needs %.1f MB, has %.1f MB (params %.1f, grads %.1f, "
                         "optimizer %.1f, activations %.1f) under --device-mem-mb; refused before allocating",
                         who, device, pb_mem_parts_sum(p) / MIB, cap / MIB, p->params / MIB, p->grads / MIB,
                         p->optim / MIB, p->acts / MIB);
}

pb_status pb_memplan_check_cap(const pb_memplan *plan, double cap)
{
    for (int i = 0; i < plan->n_devices; i++)
        if (pb_mem_parts_sum(&plan->device_parts[i]) > cap)
            return cap_refusal("", plan->ordinal[i], &plan->device_parts[i], cap);
    if (pb_mem_parts_sum(&plan->verify_parts) > cap)
        return cap_refusal("--verify's single on ", plan->ordinal[0], &plan->verify_parts, cap);
    return PB_OK;
}

/* --- what the host can give ------------------------------------------------ */

static double read_number(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1.0;
    char buf[64] = "";
    double v = -1.0;
    if (fgets(buf, sizeof buf, f) && strncmp(buf, "max", 3) != 0) {
        unsigned long long n = 0;
        if (sscanf(buf, "%llu", &n) == 1) v = (double)n;
    }
    fclose(f);
    return v;
}

/* limit - usage under dir; -1 when unlimited or unknown (v1 reports "no
 * limit" as a huge number, near 2^63) */
static double cgroup_room(const char *dir, const char *limit_file, const char *usage_file)
{
    char path[8800];
    snprintf(path, sizeof path, "%s/%s", dir, limit_file);
    double limit = read_number(path);
    if (limit < 0 || limit >= 4e18) return -1.0;
    snprintf(path, sizeof path, "%s/%s", dir, usage_file);
    double usage = read_number(path);
    if (usage < 0) usage = 0;
    return limit > usage ? limit - usage : 0.0;
}

/* The least room of the cgroup at rel under base and of each cgroup above
 * it: a limit set higher up bounds it too (Slurm limits the job's cgroup,
 * and the process sits in a task's below it, whose own limit is "max");
 * -1 when none has a limit. */
static double cgroup_room_up(const char *base, const char *rel, const char *limit_file, const char *usage_file)
{
    char up[4300], dir[8700];
    snprintf(up, sizeof up, "%s", strcmp(rel, "/") == 0 ? "" : rel);
    double least = -1.0;
    for (;;) {
        snprintf(dir, sizeof dir, "%s%s", base, up);
        double room = cgroup_room(dir, limit_file, usage_file);
        if (room >= 0 && (least < 0 || room < least)) least = room;
        char *slash = strrchr(up, '/');
        if (!slash) break;
        *slash = '\0';
    }
    return least;
}

void pb_host_room_read(const char *root, pb_host_room *out)
{
    char path[4300], line[4200];
    out->meminfo = out->cgroup = out->available = -1.0;
    snprintf(path, sizeof path, "%s/proc/meminfo", root);
    FILE *f = fopen(path, "r");
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    if (f) fclose(f);
    if (kb >= 0) out->meminfo = (double)kb * 1024.0;

    /* the process's cgroup: "0::/path" (v2), "N:memory:/path" or
     * "N:...,memory,...:/path" (v1) */
    snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
    f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = '\0';
        const char *ctrl = c1 + 1, *rel = c2 + 1;
        char base[4300];
        double room = -1.0;
        if (!*ctrl && strcmp(line, "0") == 0) {
            snprintf(base, sizeof base, "%s/sys/fs/cgroup", root);
            room = cgroup_room_up(base, rel, "memory.max", "memory.current");
        } else if (strstr(ctrl, "memory")) {
            snprintf(base, sizeof base, "%s/sys/fs/cgroup/memory", root);
            room = cgroup_room_up(base, rel, "memory.limit_in_bytes", "memory.usage_in_bytes");
        }
        if (room >= 0 && (out->cgroup < 0 || room < out->cgroup)) out->cgroup = room;
    }
    if (f) fclose(f);
    out->available = out->meminfo;
    if (out->cgroup >= 0 && (out->available < 0 || out->cgroup < out->available)) out->available = out->cgroup;
}

/* --- the verdict ------------------------------------------------------------- */

/* A process of bench holds about 160-190 MiB that no plan counts (code, the
 * CUDA, BLAS and MPI libraries, the BLAS's buffers, thread stacks): measured
 * as peak RSS minus plan from mlp-xs to mlp-m, single, dp, mp and ddp, it
 * did not grow with the model. The plan itself came within 1% of the rest. */
double pb_memplan_host_margin(const pb_memplan *plan, int processes)
{
    return 0.02 * plan->host + PB_MEMPLAN_PROCESS_MIB * MIB * (processes > 0 ? processes : 1);
}

/* cuBLAS/cuBLASLt workspaces and NCCL's buffers are the device's unplanned
 * part (the context is already out of the free figure) */
double pb_memplan_device_margin(double device_bytes) { return 0.05 * device_bytes + 512.0 * MIB; }

pb_status pb_memplan_check(const pb_memplan *plan, int processes, const pb_host_room *room,
                           const double *dev_free, const double *dev_total)
{
    const pb_mem_parts *p = &plan->host_parts;
    double margin = pb_memplan_host_margin(plan, processes);
    if (room->available >= 0 && plan->host + margin > room->available) {
        /* within a row's 255-character error field */
        char from[80] = "MemAvailable";
        if (room->cgroup >= 0 && room->cgroup <= room->meminfo)
            snprintf(from, sizeof from, "cgroup; MemAvailable %.0f MiB", room->meminfo / MIB);
        else if (room->cgroup >= 0)
            snprintf(from, sizeof from, "MemAvailable; cgroup %.0f MiB", room->cgroup / MIB);
        return pb_user_error(PB_ERR_NOMEM,
                             "out of host memory: the run needs about %.0f MiB here (parameters %.0f, gradients "
                             "%.0f, optimizer %.0f, activations %.0f, loader %.0f, --verify %.0f) + %.0f margin; "
                             "%.0f MiB available (%s); refused before allocating",
                             plan->host / MIB, p->params / MIB, p->grads / MIB, p->optim / MIB, p->acts / MIB,
                             p->loader / MIB, p->verify / MIB, margin / MIB, room->available / MIB, from);
    }
    /* devices that are one physical device (--device-map 0,0) share it */
    for (int i = 0; dev_free && i < plan->n_devices; i++) {
        double need = 0.0;
        bool first = true;
        for (int j = 0; j < plan->n_devices; j++) {
            if (plan->ordinal[j] != plan->ordinal[i]) continue;
            if (j < i) first = false;
            need += plan->device[j];
        }
        if (!first || dev_free[i] < 0) continue;
        double dmargin = pb_memplan_device_margin(need);
        if (need + dmargin > dev_free[i])
            return pb_user_error(PB_ERR_NOMEM,
                                 "out of device memory: the run needs about %.0f MiB on cuda:%d + %.0f MiB margin; "
                                 "%.0f MiB free of %.0f MiB; refused before allocating",
                                 need / MIB, plan->ordinal[i], dmargin / MIB, dev_free[i] / MIB,
                                 dev_total ? dev_total[i] / MIB : 0.0);
    }
    return PB_OK;
}
