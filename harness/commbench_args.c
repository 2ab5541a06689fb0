/* bench comm's command line: parsed and checked against this host before
 * any rank, device or comm starts. */
#define _POSIX_C_SOURCE 200809L
#include "commbench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_csv.h"
#include "config.h"
#include "launch.h"
#include "log.h"
#include "memplan.h"
#include "parse.h"
#include "registry.h"
#include "../kernels/world.h"

#define MIB (1024.0 * 1024.0)
#define SIZE_MIN ((size_t)4)          /* one float */
#define SIZE_MAX_ALLOWED ((size_t)16 << 30)
#define RANKS_MAX 4096

size_t pb_commbench_rank_bytes(size_t max_size) { return 2 * max_size; }

void pb_commbench_print_help(void)
{
    printf("usage: bench comm [flags]\n\n"
           "Collective bandwidth as nccl-tests measures it (docs/comm.md): all_reduce,\n"
           "reduce_scatter, all_gather, broadcast and sendrecv over sizes doubling from 8 B\n"
           "to 1 GiB; time = median over the repeats of the slowest rank; algbw = size /\n"
           "time, busbw = algbw x nccl-tests' factor; every result checked (#wrong).\n\n"
           "flags (default in brackets):\n");
    printf("  %-22s %s\n", "--comm NAME", "local (threads of one process), mpi or nccl (a rank per device, under "
                                         "mpirun) [auto: nccl on a usable GPU when built, else mpi when built, else local]");
    printf("  %-22s %s\n", "--backend NAME", "cpu or cuda: where the buffers live [auto: cuda for nccl, else cpu]");
    printf("  %-22s %s\n", "--gpus N, --ranks N", "participants, 2 to 4096 [2]");
    printf("  %-22s %s\n", "--sizes MIN:MAX|LIST", "bytes, doubling from MIN to MAX, or a comma list; K, M, G are "
                                                  "KiB, MiB, GiB [8:1G, the top lowered to what fits the host]");
    printf("  %-22s %s\n", "--collectives LIST", "a comma list of all_reduce, reduce_scatter, all_gather, broadcast, "
                                                "sendrecv [all]");
    printf("  %-22s %s\n", "--iters N", "timed repeats per size, 1 to 1000000 [20]");
    printf("  %-22s %s\n", "--warmup N", "untimed repeats before them, 0 to 1000000 [5]");
    printf("  %-22s %s\n", "--timeout S", "seconds a rank may wait for another before the run fails, 1 to 86400 [300]");
    printf("  %-22s %s\n", "--out PATH", "CSV the rows are appended to [results/comm.csv]");
    printf("  %-22s %s\n", "--quiet", "no progress lines on stderr [off]");
    printf("  %-22s %s\n", "--help", "this text");
    printf("\nexample:\n  bench comm --comm mpi --ranks 2 --sizes 8:1M --out results/comm.csv\n");
}

/* "8", "64K", "1M", "1G": bytes */
static bool parse_bytes(const char *text, size_t *out)
{
    char num[32];
    size_t len = strlen(text), mult = 1;
    if (len == 0 || len >= sizeof num) return false;
    memcpy(num, text, len + 1);
    char last = num[len - 1];
    if (last == 'K' || last == 'k') mult = (size_t)1 << 10;
    if (last == 'M' || last == 'm') mult = (size_t)1 << 20;
    if (last == 'G' || last == 'g') mult = (size_t)1 << 30;
    if (mult > 1) num[len - 1] = '\0';
    long long v;
    if (!pb_parse_int(num, &v) || v < 0 || (unsigned long long)v > SIZE_MAX_ALLOWED / mult) return false;
    *out = (size_t)v * mult;
    return true;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static pb_status sizes_range(pb_commbench_opts *o, size_t lo, size_t hi)
{
    o->n_sizes = 0;
    for (size_t s = lo; s <= hi && o->n_sizes < PB_COMMBENCH_MAX_SIZES; s *= 2) o->sizes[o->n_sizes++] = s;
    return PB_OK;
}

static pb_status parse_sizes(pb_commbench_opts *o, const char *text)
{
    const char *allowed = "allowed: MIN:MAX (doubling) or a comma list, each 4 B to 16G, e.g. 8:1G or 1K,1M";
    const char *colon = strchr(text, ':');
    size_t v[PB_COMMBENCH_MAX_SIZES];
    int n = 0;
    if (colon) {
        char lo_text[32];
        size_t lo, hi;
        if ((size_t)(colon - text) >= sizeof lo_text) return pb_usage_error("--sizes: '%s' is not a range; %s", text, allowed);
        snprintf(lo_text, sizeof lo_text, "%.*s", (int)(colon - text), text);
        if (!parse_bytes(lo_text, &lo) || !parse_bytes(colon + 1, &hi) || lo < SIZE_MIN || hi < lo)
            return pb_usage_error("--sizes: '%s' is not a range of sizes; %s", text, allowed);
        o->sizes_given = true;
        return sizes_range(o, lo, hi);
    }
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        char item[32];
        size_t b;
        if (len == 0 || len >= sizeof item) return pb_usage_error("--sizes: '%s' is not a list of sizes; %s", text, allowed);
        snprintf(item, sizeof item, "%.*s", (int)len, p);
        if (!parse_bytes(item, &b) || b < SIZE_MIN)
            return pb_usage_error("--sizes: '%s' is not a size; %s", item, allowed);
        if (n >= PB_COMMBENCH_MAX_SIZES) return pb_usage_error("--sizes: more than %d sizes", PB_COMMBENCH_MAX_SIZES);
        v[n++] = b;
        p += len;
        if (*p == ',' && !*++p) return pb_usage_error("--sizes: '%s' ends with a comma; %s", text, allowed);
    }
    if (n == 0) return pb_usage_error("--sizes: empty; %s", allowed);
    qsort(v, (size_t)n, sizeof *v, cmp_size);
    o->n_sizes = 0;
    for (int i = 0; i < n; i++) /* each size once */
        if (i == 0 || v[i] != v[i - 1]) o->sizes[o->n_sizes++] = v[i];
    o->sizes_given = true;
    return PB_OK;
}

static pb_status parse_collectives(pb_commbench_opts *o, const char *text)
{
    memset(o->coll, 0, sizeof o->coll);
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        char item[32];
        snprintf(item, sizeof item, "%.*s", (int)(len < sizeof item ? len : sizeof item - 1), p);
        pb_coll c = len < sizeof item ? pb_coll_find(item) : PB_COLL_COUNT;
        if (c == PB_COLL_COUNT)
            return pb_usage_error("--collectives: unknown '%s'; allowed: all_reduce, reduce_scatter, all_gather, "
                                  "broadcast, sendrecv",
                                  item);
        o->coll[c] = true;
        p += len;
        if (*p == ',') p++;
    }
    return PB_OK;
}

static pb_status parse_int_flag(const char *flag, const char *text, long long lo, long long hi, int *out)
{
    long long v;
    if (!pb_parse_int(text, &v) || v < lo || v > hi)
        return pb_usage_error("%s: '%s' is not an integer in range; allowed: %lld to %lld", flag, text, lo, hi);
    *out = (int)v;
    return PB_OK;
}

pb_status pb_commbench_walk_flags(int argc, char **argv, const char *cmd, const char *const *with_value, bool *quiet,
                                  bool *help, pb_commbench_flag_fn fn, void *ctx)
{
    unsigned seen = 0;
    int gpus = 0;
    while (with_value[gpus] && strcmp(with_value[gpus], "--gpus") != 0) gpus++;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *help = true;
            return PB_OK;
        }
        char name[64];
        const char *value = NULL;
        pb_flag_split(argv[i], name, sizeof name, &value);
        if (strcmp(name, "--quiet") == 0) {
            if (value) return pb_usage_error("--quiet takes no value");
            *quiet = true;
            continue;
        }
        int k = 0;
        while (with_value[k] && strcmp(with_value[k], name) != 0) k++;
        if (!with_value[k]) {
            if (strncmp(argv[i], "--", 2) == 0)
                return pb_usage_error("unknown flag '%s' for bench %s; see bench %s --help", argv[i], cmd, cmd);
            return pb_usage_error("unexpected argument '%s' for bench %s; see bench %s --help", argv[i], cmd, cmd);
        }
        int bit = strcmp(name, "--ranks") == 0 ? gpus : k; /* --ranks is --gpus */
        if (seen & (1u << bit)) return pb_usage_error("%s is given twice; allowed: once", name);
        seen |= 1u << bit;
        if (!value) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0) return pb_usage_error("%s needs a value", name);
            value = argv[++i];
        }
        pb_status st = fn(ctx, k, name, value);
        if (st != PB_OK) return st;
    }
    return PB_OK;
}

pb_status pb_commbench_parse_ranks(const char *flag, const char *text, int *out)
{
    return parse_int_flag(flag, text, 2, RANKS_MAX, out);
}

static pb_status comm_flag(void *ctx, int k, const char *name, const char *value)
{
    pb_commbench_opts *o = ctx;
    pb_status st = PB_OK;
    if (k <= 1) {
        if (strlen(value) >= sizeof o->comm) return pb_usage_error("%s: unknown '%s'", name, value);
        snprintf(k == 0 ? o->comm : o->backend, sizeof o->comm, "%s", value);
    } else if (k <= 3) {
        st = parse_int_flag(name, value, 2, RANKS_MAX, &o->ranks);
    } else if (k == 4) {
        st = parse_sizes(o, value);
    } else if (k == 5) {
        st = parse_collectives(o, value);
    } else if (k == 6) {
        st = parse_int_flag(name, value, 1, 1000000, &o->iters);
    } else if (k == 7) {
        st = parse_int_flag(name, value, 0, 1000000, &o->warmup);
    } else if (k == 8) {
        st = pb_commbench_parse_timeout(value, &o->timeout_s);
    } else {
        st = pb_commbench_parse_out(value, o->out, sizeof o->out);
    }
    return st;
}

pb_status pb_commbench_parse_timeout(const char *text, double *out)
{
    if (!pb_parse_double(text, out) || *out < 1 || *out > 86400)
        return pb_usage_error("--timeout: '%s' is out of range; allowed: 1 to 86400", text);
    return PB_OK;
}

pb_status pb_commbench_parse_out(const char *text, char *out, size_t len)
{
    if (!*text || strlen(text) >= len) return pb_usage_error("--out: empty or too long a path");
    snprintf(out, len, "%s", text);
    return PB_OK;
}

static pb_status parse_flags(int argc, char **argv, pb_commbench_opts *o, bool *help)
{
    static const char *const with_value[] = {"--comm", "--backend", "--gpus", "--ranks", "--sizes", "--collectives",
                                             "--iters", "--warmup", "--timeout", "--out", NULL};
    return pb_commbench_walk_flags(argc, argv, "comm", with_value, &o->quiet, help, comm_flag, o);
}

/* comm and backend: auto resolved, and the pair checked */
pb_status pb_commbench_resolve(pb_commbench_opts *o)
{
    char why[256] = "";
    bool nccl_built = pb_find_comm("nccl")->allreduce != NULL;
    bool auto_comm = strcmp(o->comm, "auto") == 0, auto_backend = strcmp(o->backend, "auto") == 0;
    if (!auto_comm && strcmp(o->comm, "local") != 0 && strcmp(o->comm, "mpi") != 0 && strcmp(o->comm, "nccl") != 0)
        return pb_usage_error("--comm: unknown '%s'; allowed: auto, local, mpi, nccl", o->comm);
    if (!auto_backend && strcmp(o->backend, "cpu") != 0 && strcmp(o->backend, "cuda") != 0)
        return pb_usage_error("--backend: unknown '%s'; allowed: auto, cpu, cuda", o->backend);
    if (auto_comm) {
        bool gpu = strcmp(o->backend, "cpu") != 0 && pb_backend_cuda.device_count(why, sizeof why) > 0;
        snprintf(o->comm, sizeof o->comm, "%s",
                 gpu && nccl_built ? "nccl" : pb_mpi_available() ? "mpi" : "local");
    }
    if (auto_backend) snprintf(o->backend, sizeof o->backend, "%s", strcmp(o->comm, "nccl") == 0 ? "cuda" : "cpu");
    if (strcmp(o->comm, "nccl") == 0 && strcmp(o->backend, "cuda") != 0)
        return pb_usage_error("--comm nccl reduces GPU buffers; allowed: --backend cuda (or auto)");
    if (strcmp(o->comm, "mpi") == 0 && strcmp(o->backend, "cpu") != 0)
        return pb_usage_error("--comm mpi measures host buffers; allowed: --backend cpu (or auto)");
    if (strcmp(o->comm, "mpi") == 0 && !pb_mpi_available())
        return pb_user_error(PB_ERR_UNAVAILABLE, "--comm mpi: %s", PB_NO_MPI);
    if (strcmp(o->comm, "nccl") == 0 && !nccl_built)
        return pb_user_error(PB_ERR_UNAVAILABLE, "--comm nccl: this build has no NCCL (needs CUDA and MPI)");
    if (strcmp(o->backend, "cuda") == 0) {
        int n = pb_backend_cuda.device_count(why, sizeof why);
        if (n <= 0) return pb_user_error(PB_ERR_UNAVAILABLE, "--backend cuda: no usable CUDA device: %s", why);
        if (strcmp(o->comm, "local") == 0 && n < o->ranks)
            return pb_usage_error("--gpus %d: only %d CUDA device%s present; allowed with --comm local: 2 to %d",
                                  o->ranks, n, n == 1 ? "" : "s", n);
    }
    return PB_OK;
}

/* Room on the host (and each GPU) for every rank's buffers of the largest
 * size, as the run's memory plan checks its own (harness/memplan.h). Only
 * where the ranks run on this host: `local`, or ranks bench launches. */
static bool fits(const pb_commbench_opts *o, size_t top, char *why, size_t len)
{
    bool gpu = strcmp(o->backend, "cuda") == 0;
    pb_host_room room;
    pb_host_room_read("", &room);
    int procs = strcmp(o->comm, "local") == 0 ? 1 : o->ranks;
    /* on a GPU a host stage of the largest size per rank, for the check */
    double need = (gpu ? 1.0 : 2.0) * (double)top * o->ranks, margin = 0.02 * need + PB_MEMPLAN_PROCESS_MIB * MIB * procs;
    if (room.available >= 0 && need + margin > room.available) {
        snprintf(why, len, "out of host memory: %d ranks x %s buffers of %.0f MiB need %.0f MiB + %.0f MiB margin; "
                 "%.0f MiB available",
                 o->ranks, gpu ? "a host stage" : "two", (double)top / MIB, need / MIB, margin / MIB,
                 room.available / MIB);
        return false;
    }
    for (int d = 0; gpu && d < o->ranks; d++) {
        size_t free_b = 0, total_b = 0;
        if (!pb_backend_cuda.mem_info || pb_backend_cuda.mem_info(d, &free_b, &total_b) != PB_OK) {
            pb_error_clear();
            break;
        }
        double dneed = 2.0 * (double)top, dmargin = pb_memplan_device_margin(dneed);
        if (dneed + dmargin > (double)free_b) {
            snprintf(why, len, "out of device memory on cuda:%d: two buffers of %.0f MiB + %.0f MiB margin; %.0f MiB free",
                     d, (double)top / MIB, dmargin / MIB, (double)free_b / MIB);
            return false;
        }
    }
    return true;
}

static pb_status check_memory(pb_commbench_opts *o)
{
    char why[512];
    size_t top = o->sizes[o->n_sizes - 1];
    if (fits(o, top, why, sizeof why)) return PB_OK;
    if (o->sizes_given)
        return pb_usage_error("--sizes up to %zu bytes: %s; give a smaller MAX", top, why);
    while (o->n_sizes > 1 && !fits(o, o->sizes[o->n_sizes - 1], why, sizeof why)) o->n_sizes--;
    if (!fits(o, o->sizes[o->n_sizes - 1], why, sizeof why)) return pb_usage_error("comm: %s", why);
    if (!o->quiet)
        pb_log_info("comm: sizes up to %zu bytes (%s at %zu); --sizes to choose", o->sizes[o->n_sizes - 1],
                    "the default top does not fit", top);
    return PB_OK;
}

pb_status pb_commbench_parse(int argc, char **argv, pb_commbench_opts *o, bool *help)
{
    memset(o, 0, sizeof *o);
    snprintf(o->comm, sizeof o->comm, "auto");
    snprintf(o->backend, sizeof o->backend, "auto");
    o->ranks = 2;
    sizes_range(o, PB_COMMBENCH_DEFAULT_MIN, PB_COMMBENCH_DEFAULT_MAX);
    for (int c = 0; c < PB_COLL_COUNT; c++) o->coll[c] = true;
    o->iters = 20;
    o->warmup = 5;
    o->timeout_s = 300.0;
    snprintf(o->out, sizeof o->out, "results/comm.csv");
    *help = false;
    pb_status st = parse_flags(argc, argv, o, help);
    if (st != PB_OK || *help) return st;
    pb_log_set_quiet(o->quiet);
    pb_launch_set_log_rank();
    if ((st = pb_commbench_resolve(o)) != PB_OK) return st;
    if ((st = pb_results_check_target_of(o->out, pb_comm_csv_header())) != PB_OK) return st;
    /* a rank bench re-executed has the launcher's sizes, checked there; under
     * a user's own mpirun the ranks' hosts are not known here */
    if (!pb_launch_inside()) st = check_memory(o);
    return st;
}
