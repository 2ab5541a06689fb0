/* The run's memory plan (harness/memplan.h), computed in process: its
 * numbers for a shape worked out by hand; the presets with default flags
 * accepted on a 16 GiB host; the host's and cgroup's room read from /proc
 * and /sys/fs/cgroup laid out in a folder; a device without room refused.
 * The plan against what runs of ./bench hold, and the overcommitted run of
 * issue 12, are tests/e2e/test_memplan_runs.c. */
#include "tests/common/test_run.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>
#include <stdbool.h>
#include <time.h>

#include "harness/memplan.h"
#include "kernels/backend.h"
#include "tests/common/memplan_plan.h"

#define MIB 1048576.0

/* --- a shape worked out by hand ----------------------------------------------
 * in 4, hidden 8, 2 layers, 3 classes, batch 6: layer 0 is 4x8+8 = 40
 * parameters, layer 1 8x3+3 = 27, P = 67 (268 bytes in fp32). A replica of
 * m rows holds params, grads and (SGD) momentum, 268 bytes each, and
 * activations 4m(4 + 8 + 3) + two gradient buffers of the widest layer
 * 2x4mx8 + db_spare 4x4 + labels 4m + the loss 4. The loader: three slots
 * of 6 rows (4x6x4 + 4x6 bytes each) and 3x4 prototypes: 408 bytes. */
#define SHAPE "--backend", "cpu", "--workload", "custom", "--in", "4", "--hidden", "8", "--layers", "2", \
              "--classes", "3", "--batch", "6"

static void test_single_by_hand(void **state)
{
    (void)state;
    char *args[] = {SHAPE, NULL};
    pb_memplan p = plan_of(args, true, 1);
    assert_int_equal(p.n_devices, 1);
    /* acts 4x6x15 + 2x4x6x8 + 16 + 24 + 4 = 788, read in place (cpu) */
    assert_true(p.device[0] == 268 * 3 + 788);
    assert_true(p.host_parts.params == 268 * 2); /* the replica's and the host's */
    assert_true(p.host_parts.grads == 268 && p.host_parts.optim == 268);
    assert_true(p.host_parts.acts == 788 && p.host_parts.loader == 408 && p.host_parts.verify == 0);
    assert_true(p.host == 2268);
}

static void test_dp_adamw_by_hand(void **state)
{
    (void)state;
    char *args[] = {SHAPE, "--strategy", "dp", "--gpus", "2", "--optimizer", "adamw", NULL};
    pb_memplan p = plan_of(args, true, 1);
    assert_int_equal(p.n_devices, 2);
    /* 3 rows each: acts 4x3x15 + 2x4x3x8 + 16 + 12 + 4 = 404, less the
     * labels (12); device 0 also gives up its input and output rows
     * (4x3x(4+3) = 84) for the full-batch logits and their gradient
     * (2x4x6x3 = 144) and the loss (4), and alone has m and v */
    assert_true(p.device[0] == 268 + 268 + 2 * 268 + (404 - 12 - 84 + 144 + 4));
    assert_true(p.device[1] == 268 + 268 + (404 - 12));
    assert_true(p.host == p.device[0] + p.device[1] + 268 + 408);
}

static void test_mp_microbatches_by_hand(void **state)
{
    (void)state;
    char *args[] = {SHAPE, "--strategy", "mp", "--gpus", "2", "--microbatches", "2", NULL};
    pb_memplan p = plan_of(args, true, 1);
    /* stages by FLOPs: layer 0 (32) | layer 1 (24); each keeps all 6 rows'
     * activations (2 slots of 3), its gradient buffers one microbatch's 3.
     * stage 0: 40 parameters (160 bytes) x3, acts 4x6x(4+8) + 2x4x3x8 + 16
     * + 4 = 500 (no labels: the loss is the last stage's), gradient scratch
     * 160. stage 1: 27 (108) x3, acts 4x6x(8+3) + 2x4x3x8 + 4x8 + 24 + 4 =
     * 516, scratch 108, the input gradient it sends back 4x6x8 = 192 */
    assert_true(p.device[0] == 160 * 3 + 500 + 160);
    assert_true(p.device[1] == 108 * 3 + 516 + 108 + 192);
    assert_true(p.host == p.device[0] + p.device[1] + 268 + 408);
}

/* 1F1B, 3 microbatches of 2 rows on 2 stages: stage 0 keeps min(3, 2) = 2
 * slots, stage 1 min(3, 1) = 1 (and the targets of one), and stage 1's
 * input-gradient send buffer 2 slots. stage 0: 160 x3, acts 4x2x2x(4+8) +
 * 2x4x2x8 + 16 + 4 = 340, scratch 160. stage 1: 108 x3, acts 4x2x1x(8+3)
 * + 2x4x2x8 + 4x8 + 2x4 + 4 = 260, scratch 108, send buffer 4x2x2x8 = 128
 * (GPipe would keep 3 slots on each and a send buffer of 6 rows). */
static void test_mp_1f1b_by_hand(void **state)
{
    (void)state;
    char *args[] = {SHAPE, "--strategy", "mp", "--gpus", "2", "--microbatches", "3", "--schedule", "1f1b", NULL};
    pb_memplan p = plan_of(args, true, 1);
    assert_true(p.device[0] == 160 * 3 + 340 + 160);
    assert_true(p.device[1] == 108 * 3 + 260 + 108 + 128);
    assert_true(p.host == p.device[0] + p.device[1] + 268 + 408);
}

static void test_ddp_ranks_share_the_host(void **state)
{
    (void)state;
    char *args[] = {SHAPE, "--strategy", "ddp", "--gpus", "2", NULL};
    pb_memplan p = plan_of(args, true, 2);
    /* a rank: a replica of 3 rows (268 x3 + 404), its host parameters and
     * its loader of its own 3 rows (3 x (4x3x4 + 4x3) + 3x4x4 = 228 bytes,
     * not the global batch's 408); two ranks on this host */
    assert_int_equal(p.n_devices, 1);
    assert_true(p.device[0] == 268 * 3 + 404);
    assert_true(p.host == 2 * (268 * 3 + 404 + 268 + 228));
}

static void test_verify_by_hand(void **state)
{
    (void)state;
    char *args[] = {SHAPE, "--verify", NULL}; /* 23 steps: the judged 10th's copy is kept */
    pb_memplan p = plan_of(args, true, 1);
    /* single's replica (268 x3 + 788), its loader (408), the initial and
     * final parameters (2 x 268) and the judged step's (268) */
    assert_true(p.host_parts.verify == 268 * 3 + 788 + 408 + 3 * 268);
    assert_true(p.host == 2268 + p.host_parts.verify);
}

/* cuda, bf16: activations of 2 bytes, a bf16 copy of the weights, the batch
 * staged in two buffers; only the loader and parameters on the host */
static void test_device_bf16_by_hand(void **state)
{
    (void)state;
    char *args[] = {SHAPE, "--precision", "bf16", NULL};
    pb_memplan p = plan_of(args, false, 1);
    double acts = 2 * 6 * 15 + 2 * 2 * 6 * 8 + 16 + 24 + 4 + 2 * (4 * 6 * 4 + 4 * 6);
    assert_true(p.device[0] == 268 + 2 * 67 + 268 + 268 + acts);
    assert_true(p.host == 268 + 408);
}

/* --- the presets ------------------------------------------------------------- */

/* The presets with default flags fit a 16 GiB host: the plan refuses no
 * run of theirs there (mlp-l's ddp on 2 ranks, the largest, plans 14.8 GiB) */
static void test_presets_fit_16_gib(void **state)
{
    (void)state;
    static const char *const presets[] = {"mlp-xs", "mlp-s", "mlp-m", "mlp-l"};
    static const char *const strategies[][2] = {{"single", "1"}, {"dp", "2"}, {"mp", "2"}, {"ddp", "2"}};
    pb_host_room room = {.meminfo = 16384 * MIB, .cgroup = -1, .available = 16384 * MIB};
    for (size_t w = 0; w < 4; w++)
        for (size_t s = 0; s < 4; s++) {
            char *args[] = {"--backend", "cpu", "--workload", (char *)presets[w], "--strategy",
                            (char *)strategies[s][0], "--gpus", (char *)strategies[s][1], NULL};
            int ranks = strcmp(strategies[s][0], "ddp") == 0 ? 2 : 1;
            pb_memplan p = plan_of(args, true, ranks);
            if (pb_memplan_check(&p, ranks, &room, NULL, NULL) != PB_OK)
                fail_msg("%s %s refused: %s", presets[w], strategies[s][0], pb_error_message());
        }
}

/* --- what the host can give ---------------------------------------------------- */

static void put(const char *dir, const char *rel, const char *text)
{
    char path[4200], cmd[4400];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", path);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A folder laid out as /proc and /sys/fs/cgroup: meminfo, the process's
 * cgroup line(s), and its cgroup's limit and usage files (under cg_dir) */
static char *fake_host(const char *meminfo, const char *cgroup, const char *cg_dir, const char *limit_file,
                       const char *limit, const char *usage_file, const char *usage)
{
    char *dir = make_temp_dir();
    char rel[512];
    put(dir, "proc/meminfo", meminfo);
    put(dir, "proc/self/cgroup", cgroup);
    snprintf(rel, sizeof rel, "%s/%s", cg_dir, limit_file);
    put(dir, rel, limit);
    snprintf(rel, sizeof rel, "%s/%s", cg_dir, usage_file);
    put(dir, rel, usage);
    return dir;
}

static void test_host_room_cgroup_v2(void **state)
{
    (void)state;
    char *dir = fake_host("MemTotal: 24000000 kB\nMemFree: 100 kB\nMemAvailable: 20971520 kB\n",
                          "0::/job.slice/run\n", "sys/fs/cgroup/job.slice/run", "memory.max", "4294967296\n",
                          "memory.current", "1073741824\n");
    pb_host_room room;
    pb_host_room_read(dir, &room);
    assert_true(room.meminfo == 20 * 1024 * MIB);
    assert_true(room.cgroup == 3 * 1024 * MIB);
    assert_true(room.available == 3 * 1024 * MIB); /* the smaller */
    /* unlimited: MemAvailable alone */
    put(dir, "sys/fs/cgroup/job.slice/run/memory.max", "max\n");
    pb_host_room_read(dir, &room);
    assert_true(room.cgroup < 0 && room.available == 20 * 1024 * MIB);

    /* a cgroup that cannot hold the plan: refused, saying so */
    put(dir, "sys/fs/cgroup/job.slice/run/memory.max", "2147483648\n");
    pb_host_room_read(dir, &room);
    char *args[] = {"--backend", "cpu", "--workload", "mlp-m", NULL}; /* ~2 GiB */
    pb_memplan p = plan_of(args, true, 1);
    pb_error_clear();
    assert_int_equal(pb_memplan_check(&p, 1, &room, NULL, NULL), PB_ERR_NOMEM);
    if (!strstr(pb_error_message(), "out of host memory: the run needs about 1977 MiB here") ||
        !strstr(pb_error_message(), "1024 MiB available (cgroup; MemAvailable 20480 MiB)"))
        fail_msg("%s", pb_error_message());
    remove_temp_dir(dir);
}

/* Slurm limits the job's cgroup; the process sits in a task's cgroup below
 * it, unlimited itself: the job's limit is the room */
static void test_host_room_cgroup_v2_ancestor(void **state)
{
    (void)state;
    char *dir = fake_host("MemAvailable: 20971520 kB\n", "0::/slurm/job_7/step_0/task_0\n",
                          "sys/fs/cgroup/slurm/job_7", "memory.max", "4294967296\n", "memory.current",
                          "1073741824\n");
    put(dir, "sys/fs/cgroup/slurm/job_7/step_0/task_0/memory.max", "max\n");
    put(dir, "sys/fs/cgroup/slurm/job_7/step_0/task_0/memory.current", "1073741824\n");
    pb_host_room room;
    pb_host_room_read(dir, &room);
    assert_true(room.cgroup == 3 * 1024 * MIB && room.available == 3 * 1024 * MIB);
    /* a tighter limit below it wins */
    put(dir, "sys/fs/cgroup/slurm/job_7/step_0/task_0/memory.max", "2147483648\n");
    pb_host_room_read(dir, &room);
    assert_true(room.cgroup == 1024 * MIB);
    remove_temp_dir(dir);
}

static void test_host_room_cgroup_v1(void **state)
{
    (void)state;
    char *dir = fake_host("MemAvailable: 8388608 kB\n", "12:pids:/x\n5:memory:/batch/42\n0::/\n",
                          "sys/fs/cgroup/memory/batch/42", "memory.limit_in_bytes", "6442450944\n",
                          "memory.usage_in_bytes", "1073741824\n");
    pb_host_room room;
    pb_host_room_read(dir, &room);
    assert_true(room.cgroup == 5 * 1024 * MIB && room.available == 5 * 1024 * MIB);
    /* v1's "no limit" is a number near 2^63 */
    put(dir, "sys/fs/cgroup/memory/batch/42/memory.limit_in_bytes", "9223372036854771712\n");
    pb_host_room_read(dir, &room);
    assert_true(room.cgroup < 0 && room.available == 8 * 1024 * MIB);
    remove_temp_dir(dir);
}

/* A device short of memory (cuda: the free figure of cudaMemGetInfo) */
static void test_device_refused(void **state)
{
    (void)state;
    char *args[] = {"--backend", "cpu", "--workload", "mlp-m", "--strategy", "dp", "--gpus", "2", NULL};
    pb_memplan p = plan_of(args, false, 1);
    pb_host_room room = {.meminfo = 1e12, .cgroup = -1, .available = 1e12};
    double free_b[2] = {80e9, 80e9}, total[2] = {80e9, 80e9};
    assert_int_equal(pb_memplan_check(&p, 1, &room, free_b, total), PB_OK);
    free_b[1] = 1e9;
    pb_error_clear(); /* the first error's message stays until cleared */
    assert_int_equal(pb_memplan_check(&p, 1, &room, free_b, total), PB_ERR_NOMEM);
    if (!strstr(pb_error_message(), "out of device memory: the run needs about ") ||
        !strstr(pb_error_message(), "on cuda:1") || !strstr(pb_error_message(), "954 MiB free of 76294 MiB"))
        fail_msg("%s", pb_error_message());
}

/* --device-mem-mb: each device's own figure against the cap, no margin:
 * the hand-worked single (params, grads and momentum 268 bytes each,
 * activations 788) fits 1592 bytes and not one byte less; the message
 * names the device, both figures and the split */
static void test_cap_by_hand(void **state)
{
    (void)state;
    char *args[] = {SHAPE, NULL};
    pb_memplan p = plan_of(args, true, 1);
    assert_int_equal(pb_memplan_largest(&p), 0);
    const pb_mem_parts *d = &p.device_parts[0];
    assert_true(d->params == 268 && d->grads == 268 && d->optim == 268 && d->acts == 788);
    assert_int_equal(pb_memplan_check_cap(&p, 1592), PB_OK);
    pb_error_clear();
    assert_int_equal(pb_memplan_check_cap(&p, 1591), PB_ERR_NOMEM);
    /* mlp-s's dp on 2 devices: device 0 holds more (the full-batch logits,
     * the optimizer) and is the one the cap refuses and the row describes */
    char *dp[] = {"--backend", "cpu", "--workload", "mlp-s", "--strategy", "dp", "--gpus", "2", NULL};
    p = plan_of(dp, true, 1);
    assert_int_equal(pb_memplan_largest(&p), 0);
    pb_error_clear();
    assert_true(p.device[0] > p.device[1] && p.device[1] > 8 * MIB);
    assert_int_equal(pb_memplan_check_cap(&p, 8 * MIB), PB_ERR_NOMEM);
    char want[256];
    d = &p.device_parts[0];
    snprintf(want, sizeof want,
             "out of device memory: device 0 needs %.1f MB, has 8.0 MB (params %.1f, grads %.1f, optimizer %.1f, "
             "activations %.1f) under --device-mem-mb",
             p.device[0] / MIB, d->params / MIB, d->grads / MIB, d->optim / MIB, d->acts / MIB);
    if (!strstr(pb_error_message(), want)) fail_msg("%s\nwanted %s", pb_error_message(), want);
    /* --verify's single, a device of its own, needs the most */
    char *ver[] = {"--backend", "cpu", "--workload", "mlp-s", "--strategy", "dp", "--gpus", "2", "--verify", NULL};
    p = plan_of(ver, true, 1);
    pb_error_clear();
    assert_int_equal(pb_memplan_check_cap(&p, p.device[0] + 1), PB_ERR_NOMEM);
    assert_non_null(strstr(pb_error_message(), "out of device memory: --verify's single on device 0 needs "));
}

/* The backend refuses an allocation beyond --device-mem-mb (what the plan
 * did not foresee), and counts nothing for it */
static void test_backend_refuses_beyond_cap(void **state)
{
    (void)state;
    pb_device_opts opts = {.precision = PB_FP32, .threads = 1, .mem_limit = 3 * MIB};
    pb_device *dev = NULL;
    assert_int_equal(pb_backend_cpu.open(&opts, 0, &dev), PB_OK);
    void *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(pb_backend_cpu.alloc(dev, 2 * 1048576, &a), PB_OK);
    pb_error_clear();
    assert_int_equal(pb_backend_cpu.alloc(dev, 1048577, &b), PB_ERR_NOMEM);
    assert_null(b);
    if (!strstr(pb_error_message(), "out of device memory: device 0: allocating 1.0 MB more would hold 3.0 MB, "
                                    "beyond --device-mem-mb 3.0"))
        fail_msg("%s", pb_error_message());
    assert_int_equal(pb_backend_cpu.alloc(dev, 1048576, &c), PB_OK); /* up to the cap exactly */
    assert_true(pb_backend_cpu.peak_mem_mb(dev) == 3.0);
    pb_backend_cpu.free(dev, a);
    pb_backend_cpu.free(dev, c);
    pb_backend_cpu.close(dev);
}

/* --sequence-parallel on gpt-xs (b 8, s 32, h 64, L 2) over T = 4: per
 * token, each block's output and its residual after attention (h each)
 * and its 4 LayerNorm statistics, and the embedding's output (h), held for
 * 1/T of the tokens; the head keeps its gathered input (h) besides. The
 * activations shrink by 4 b s ((2h + 4) L (1 - 1/T) + h (1 - 1/T) - h)
 * bytes, and nothing else changes. */
static void test_sequence_parallel_by_hand(void **state)
{
    (void)state;
    char *off[] = {"--backend", "cpu", "--workload", "gpt-xs", "--strategy", "tp", "--gpus", "4", NULL};
    char *on[] = {"--backend", "cpu", "--workload", "gpt-xs", "--strategy", "tp", "--gpus", "4",
                  "--sequence-parallel", NULL};
    pb_memplan a = plan_of(off, false, 4), b = plan_of(on, false, 4);
    double tokens = 8.0 * 32.0, h = 64.0, L = 2.0, keep = 1.0 - 1.0 / 4.0;
    double saved = 4.0 * tokens * ((2.0 * h + 4.0) * L * keep + h * keep - h);
    assert_true(a.device_parts[0].acts - b.device_parts[0].acts == saved);
    assert_true(a.device_parts[0].params == b.device_parts[0].params);
    assert_true(a.device_parts[0].grads == b.device_parts[0].grads && a.device_parts[0].optim == b.device_parts[0].optim);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_by_hand),
        cmocka_unit_test(test_dp_adamw_by_hand),
        cmocka_unit_test(test_mp_microbatches_by_hand),
        cmocka_unit_test(test_mp_1f1b_by_hand),
        cmocka_unit_test(test_ddp_ranks_share_the_host),
        cmocka_unit_test(test_verify_by_hand),
        cmocka_unit_test(test_device_bf16_by_hand),
        cmocka_unit_test(test_presets_fit_16_gib),
        cmocka_unit_test(test_host_room_cgroup_v2),
        cmocka_unit_test(test_host_room_cgroup_v2_ancestor),
        cmocka_unit_test(test_host_room_cgroup_v1),
        cmocka_unit_test(test_device_refused),
        cmocka_unit_test(test_cap_by_hand),
        cmocka_unit_test(test_backend_refuses_beyond_cap),
        cmocka_unit_test(test_sequence_parallel_by_hand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
