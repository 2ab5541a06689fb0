#define _POSIX_C_SOURCE 200809L
#include "launch.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "child.h"
#include "log.h"
#include "registry.h"
#include "runid.h"

/* Set in the environment of the re-executed ranks: a rank that finds it but
 * no launch variables would re-execute forever, so it stops instead. */
#define REEXEC_MARK "PB_LAUNCHED_BY_BENCH"

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* A task of an srun job step: a numeric step id. An sbatch script (the
 * batch step) and salloc's shell carry the job's SLURM_NTASKS, and may
 * carry SLURM_PROCID, but no step id of their own; there bench launches
 * its own ranks with mpirun. */
static bool slurm_step_task(void)
{
    const char *id = env("SLURM_STEP_ID");
    if (!id) id = env("SLURM_STEPID");
    if (!id || !env("SLURM_PROCID")) return false;
    char *end = NULL;
    long v = strtol(id, &end, 10);
    return end != id && !*end && v >= 0; /* slurmd sets it only for a real step (id >= 0) */
}

bool pb_launch_inside(void)
{
    return env("OMPI_COMM_WORLD_SIZE") || env("PMI_SIZE") || env("PMIX_RANK") || slurm_step_task();
}

static int env_int(const char *const *names)
{
    for (; *names; names++) {
        const char *v = env(*names);
        if (!v) continue;
        char *end = NULL;
        long n = strtol(v, &end, 10);
        if (end != v && !*end && n >= 0 && n <= INT_MAX) return (int)n;
    }
    return -1;
}

int pb_launch_size(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", NULL};
    int n = env_int(names);
    if (n < 0 && slurm_step_task()) {
        static const char *const slurm[] = {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", NULL};
        n = env_int(slurm);
    }
    return n;
}

int pb_launch_rank(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", NULL};
    int r = env_int(names);
    if (r < 0 && slurm_step_task()) {
        static const char *const slurm[] = {"SLURM_PROCID", NULL};
        r = env_int(slurm);
    }
    return r;
}

int pb_launch_backstop_s(const pb_config *cfg)
{
    /* A step may outlast --timeout (which bounds a wait, not a step), so
     * each gets --timeout plus a minute; --verify's single trains the whole
     * global batch on rank 0 (up to N times a rank's work per step) while
     * the others wait; set-up gets four steps' worth */
    double steps = (double)cfg->warmup + cfg->iters;
    if (cfg->verify) steps *= 1.0 + cfg->devices;
    double s = (cfg->timeout_s + 60.0) * (steps + 4) + 60.0;
    return s > INT_MAX ? INT_MAX : (int)s;
}

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void pb_launch_set_log_rank(void)
{
    int size = pb_launch_inside() ? pb_launch_size() : -1, rank = pb_launch_rank();
    if (size > 0) pb_log_set_rank(rank < 0 ? 0 : rank, size);
}

bool pb_launch_reexecuted(void) { return pb_launch_inside() && env(REEXEC_MARK); }

/* --- a rank and its launcher ------------------------------------------------ */

/* The parent this rank started with (mpirun, orted, slurmstepd); 0 outside
 * a launch. */
static pid_t rank_parent;

/* A rank whose parent (the launcher's daemon) dies is lost: its peers and
 * its job are gone with it. So it dies too (SIGKILL), under bench's mpirun
 * and a user's own mpirun or srun alike. */
static pb_status rank_start(void)
{
    rank_parent = getppid();
    if (!pb_child_die_with_parent(rank_parent, SIGKILL))
        return pb_user_error(PB_ERR_IO, "this rank's launcher (pid %d) ended as the rank started; stopping",
                             (int)rank_parent);
    return PB_OK;
}

/* bench's launcher holds a shared lock on its report file while it waits:
 * gone, the lock is free (a zombie or a reused pid cannot pass for it). A
 * launcher that was killed left its file: removed here. */
static bool launcher_gone(int fd, const char *path)
{
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) return false;
    unlink(path);
    return true;
}

pb_status pb_launch_may_write(void)
{
    if (rank_parent > 0 && getppid() != rank_parent)
        return pb_user_error(PB_ERR_IO, "this rank's launcher (mpirun or its daemon, pid %d) has ended; no row "
                                        "written for a job whose launcher is gone",
                             (int)rank_parent);
    const char *path = env(PB_LAUNCH_REPORT_ENV);
    if (!path || !pb_launch_inside()) return PB_OK;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    bool gone = fd < 0 && errno == ENOENT;
    if (fd >= 0) {
        gone = launcher_gone(fd, path);
        close(fd);
    }
    if (gone)
        return pb_user_error(PB_ERR_IO, "the bench launcher that started this job has ended (killed?); no row "
                                        "written for a job whose launcher is gone");
    return PB_OK;
}

/* A line to bench's launcher; whether it was written. */
static bool report_line(const char *what)
{
    const char *path = env(PB_LAUNCH_REPORT_ENV);
    if (!path || !pb_launch_inside() || pb_launch_rank() > 0) return false;
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return false; /* the launcher is gone and its file with it */
    char line[64];
    int n = snprintf(line, sizeof line, "%s\n", what);
    bool written = write(fd, line, (size_t)n) == n;
    if (launcher_gone(fd, path)) written = false;
    close(fd);
    return written;
}

void pb_launch_report(const char *what) { (void)report_line(what); }

static bool exit_handed;

void pb_launch_hand_exit(int code)
{
    char line[32];
    snprintf(line, sizeof line, "exit %d", code);
    exit_handed = code != 0 && report_line(line);
}

bool pb_launch_exit_handed(void) { return exit_handed; }

pb_status pb_launch(const pb_config *cfg, int argc, char **argv)
{
    if (pb_launch_inside()) {
        int size = pb_launch_size();
        if (size > 0 && size != cfg->devices)
            return pb_usage_error("--gpus %d, but this MPI launch has %d rank%s; strategy %s runs one rank per "
                                  "device: give --gpus %d, or launch %d ranks",
                                  cfg->devices, size, size == 1 ? "" : "s", cfg->strategy, size, cfg->devices);
        return rank_start();
    }
    if (env(REEXEC_MARK))
        return pb_error(PB_ERR_INTERNAL, "re-executed under mpirun, but no MPI launch variables are set "
                                         "(OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, SLURM_STEP_ID)");

    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return pb_error(PB_ERR_IO, "cannot find this program through /proc/self/exe: %s", strerror(errno));
    self[len] = '\0';

    char np[16], backstop[16];
    snprintf(np, sizeof np, "%d", cfg->devices);
    snprintf(backstop, sizeof backstop, "%d", pb_launch_backstop_s(cfg));
    bool oversubscribe = cfg->devices > online_cores();
    char **args = calloc((size_t)argc + 20, sizeof *args);
    if (!args) return pb_error(PB_ERR_NOMEM, "host allocation for mpirun's arguments failed");
    int n = 0;
    args[n++] = "mpirun";
    if (geteuid() == 0) args[n++] = "--allow-run-as-root";
    if (oversubscribe) args[n++] = "--oversubscribe";
    /* Open MPI binds each rank to one core when it starts 2 or fewer. A GPU
     * rank's loader workers, comm thread and the driver's threads would then
     * share that core (on an H100, ddp's load phase took 5 ms instead of
     * 0.01). CPU ranks keep the binding: unbound, two ranks whose MPI
     * progress busy-polls on a 2-core machine ran from 28k to 50k samples/s.
     * A user's own mpirun or srun keeps whatever binding the user chose. */
    const pb_backend *be = pb_find_backend(cfg->backend);
    if (be && be->is_gpu) {
        args[n++] = "--bind-to";
        args[n++] = "none";
    } else if (oversubscribe) {
        /* More CPU ranks than cores: Open MPI binds none, and where the
         * scheduler put them decided the step. A gpt-xs mesh dp2 x tp2 on 2
         * cores took 1.87 ms with a tp pair on two cores and 2.8 to 3.1 with
         * it on one, run to run. Rank i on core i mod cores, bound: the same
         * placement every run, and consecutive ranks (a tp group, a
         * pipeline's neighbours) on different cores. */
        args[n++] = "--map-by";
        args[n++] = "core";
        args[n++] = "--bind-to";
        args[n++] = "core:overload-allowed";
    }
    /* mpirun runs in a process group of its own (the launcher's parent
     * forwards it one signal): outside the terminal's foreground group, it
     * must never read the terminal */
    args[n++] = "--stdin";
    args[n++] = "none";
    /* to rank 0 on any node: the file it reports its row in */
    if (env(PB_LAUNCH_REPORT_ENV)) {
        args[n++] = "-x";
        args[n++] = PB_LAUNCH_REPORT_ENV;
    }
    /* to every rank on any node: the run's id (harness/runid.h); bench
     * comm and check have none (mpirun warns of a -x variable not set) */
    if (env(PB_RUN_ID_ENV)) {
        args[n++] = "-x";
        args[n++] = PB_RUN_ID_ENV;
    }
    args[n++] = "--timeout";
    args[n++] = backstop;
    args[n++] = "-np";
    args[n++] = np;
    int shown = n + 4; /* up to the binary and its first flags */
    args[n++] = self;
    for (int i = 1; i < argc; i++) args[n++] = argv[i];
    args[n] = NULL;

    if (!cfg->quiet) {
        char line[1024];
        size_t used = 0;
        for (int i = 0; i < shown && args[i] && used < sizeof line; i++)
            used += (size_t)snprintf(line + used, sizeof line - used, "%s%s", i ? " " : "", args[i]);
        pb_log_info("%s: %d rank%s%s; running: %s ...", cfg->strategy, cfg->devices, cfg->devices == 1 ? "" : "s",
                    oversubscribe ? " (more than the cores: oversubscribed)" : "", line);
    }
    setenv(REEXEC_MARK, "1", 1);
    fflush(stdout);
    fflush(stderr);
    execvp("mpirun", args);
    int e = errno;
    free(args);
    unsetenv(REEXEC_MARK);
    return pb_user_error(PB_ERR_UNAVAILABLE, "strategy %s: cannot run mpirun: %s (is Open MPI installed and on PATH?)",
                         cfg->strategy, strerror(e));
}
