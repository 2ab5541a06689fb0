#define _POSIX_C_SOURCE 200809L
#include "supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "launch.h"
#include "log.h"
#include "timer.h"

/* Test-only: the backstop in seconds instead of pb_launch_backstop_s's
 * (which is at least minutes), so that tests of a hung mpirun end quickly. */
#define BACKSTOP_ENV "PB_TEST_BACKSTOP_S"
/* SIGTERM to SIGKILL: mpirun's own abort waits a second for its ranks */
#define GRACE_S 5.0

static volatile sig_atomic_t caught, child_pid, forwarded;

/* The first SIGINT/SIGTERM, from wherever, goes on to mpirun alone (its
 * relay ends the ranks at a step boundary); later ones are only recorded. */
static void on_stop(int sig)
{
    if (!caught) caught = sig;
    if (child_pid > 0 && !forwarded) {
        forwarded = 1;
        kill((pid_t)child_pid, sig);
    }
}

/* Only wakes the wait's sleep when mpirun ends. */
static void on_child(int sig) { (void)sig; }

static const char *sig_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

static int backstop_s(const pb_config *cfg)
{
    const char *v = getenv(BACKSTOP_ENV);
    if (!v || !*v) return pb_launch_backstop_s(cfg);
    char *end = NULL;
    errno = 0;
    long n = v[0] >= '0' && v[0] <= '9' ? strtol(v, &end, 10) : -1;
    if (errno || !end || *end || n < 1 || n > INT_MAX) return -1;
    return (int)n;
}

/* A locked report file in folder dir (absolute, or relative to cwd). */
static int report_in(const char *dir, const char *cwd, char *path, size_t len)
{
    snprintf(path, len, "%s%s%s/.parbench-launch-XXXXXX", dir[0] == '/' ? "" : cwd, dir[0] == '/' ? "" : "/", dir);
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || flock(fd, LOCK_SH) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        errno = e;
        return -1;
    }
    return fd;
}

/* Creates the report file beside --out (where rank 0, on whatever node,
 * can write, since it appends there), else in $TMPDIR or /tmp (a folder
 * closed to new files but holding a writable --out: enough for a rank 0 on
 * this node), and holds a shared lock on it while this process lives. Its
 * path is absolute: a rank may start in another folder. */
static int make_report(const pb_config *cfg, char *path, size_t len)
{
    char copy[sizeof cfg->out], cwd[PATH_MAX] = "";
    snprintf(copy, sizeof copy, "%s", cfg->out);
    if (!getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
    int fd = report_in(dirname(copy), cwd, path, len);
    if (fd >= 0) return fd;
    int e = errno;
    const char *tmp = getenv("TMPDIR");
    fd = report_in(tmp && tmp[0] == '/' ? tmp : "/tmp", cwd, path, len);
    if (fd < 0) errno = e; /* the reason beside --out */
    return fd;
}

static void signal_group(pid_t pid, int sig)
{
    if (kill(-pid, sig) != 0) kill(pid, sig);
}

static double now_s(void) { return pb_now_ms() * 1e-3; }

/* Waits for mpirun within limit_s (time this process spent stopped not
 * counted); past it, SIGTERM (and SIGCONT, for a stopped mpirun) to its
 * group, SIGKILL grace_s later. *expired tells. */
static int wait_bounded(pid_t pid, double limit_s, double grace_s, int *status, bool *expired)
{
    double counted = 0, last = now_s(), term_at = -1;
    bool stopped = false, killed = false;
    *expired = false;
    for (;;) {
        pid_t got = waitpid(pid, status, WNOHANG | WUNTRACED | WCONTINUED);
        if (got == pid) {
            if (WIFSTOPPED(*status)) stopped = true;
            else if (WIFCONTINUED(*status)) stopped = false;
            else return 0;
            continue;
        }
        if (got < 0 && errno != EINTR) return -1;
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL); /* cut short by SIGCHLD */
        double now = now_s(), d = now - last;
        last = now;
        /* a longer gap: this process itself was stopped (Ctrl-Z); the
         * backstop bounds the job's time, not the user's pause */
        if (d < 1.0) counted += d;
        if (term_at < 0 && counted > limit_s) {
            *expired = true;
            pb_log_error("mpirun (pid %d) did not end within the launcher's backstop (%.0f s; it bounds the "
                         "whole job from --timeout, --iters, --warmup and --verify)%s: sending SIGTERM to it, "
                         "SIGKILL in %.0f s; the run failed",
                         (int)pid, limit_s, stopped ? "; it is stopped" : "", grace_s);
            signal_group(pid, SIGTERM);
            signal_group(pid, SIGCONT);
            term_at = counted;
        } else if (term_at >= 0 && !killed && counted - term_at > grace_s) {
            pb_log_error("mpirun (pid %d) ignored SIGTERM for %.0f s: SIGKILL", (int)pid, grace_s);
            signal_group(pid, SIGKILL);
            killed = true;
        }
    }
}

int pb_supervise_launch(const pb_config *cfg, bool *is_parent)
{
    *is_parent = true;
    int backstop = backstop_s(cfg);
    if (backstop < 0) {
        pb_log_error("%s=%s: not a whole number of seconds >= 1 (test-only setting)", BACKSTOP_ENV,
                     getenv(BACKSTOP_ENV));
        return 2;
    }
    char report[sizeof cfg->out + PATH_MAX + 64];
    int rfd = make_report(cfg, report, sizeof report);
    if (rfd < 0) {
        pb_log_error("--out %s: cannot create the launcher's report file beside it: %s", cfg->out,
                     strerror(errno));
        return 1;
    }
    setenv(PB_LAUNCH_REPORT_ENV, report, 1);
    fflush(stdout);
    fflush(stderr);

    /* SIGCHLD caught (not ignored, which some job runners pass on: the
     * child would be reaped unseen and its exit code lost) */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_child;
    sigaction(SIGCHLD, &sa, NULL);
    /* SIGINT/SIGTERM held until the handler knows the child, so one that
     * comes right after the fork is passed on (the child starts with none
     * pending) */
    sigset_t hold, old;
    sigemptyset(&hold);
    sigaddset(&hold, SIGINT);
    sigaddset(&hold, SIGTERM);
    sigprocmask(SIG_BLOCK, &hold, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* mpirun: dies with the launcher (its SIGTERM abort ends the ranks
         * and cleans its session files); its own process group; writing to
         * the terminal from there is allowed even with `stty tostop` */
        if (!pb_child_die_with_parent(parent, SIGTERM)) _exit(1);
        setpgid(0, 0);
        signal(SIGTTOU, SIG_IGN);
        signal(SIGCHLD, SIG_DFL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        *is_parent = false;
        return 0;
    }
    if (pid < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        unlink(report);
        close(rfd);
        pb_log_error("strategy %s: cannot start mpirun: fork: %s", cfg->strategy, strerror(e));
        return 1;
    }
    setpgid(pid, pid); /* also here: a signal to its group may come before the child runs */
    child_pid = pid;
    sa.sa_handler = on_stop;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);

    double limit = backstop + (backstop / 10.0 < 30 ? backstop / 10.0 : 30);
    double grace = backstop < GRACE_S ? backstop : GRACE_S;
    int status = 0;
    bool expired = false;
    int w = wait_bounded(pid, limit, grace, &status, &expired);
    int werr = errno;

    char said[256] = "";
    ssize_t n = pread(rfd, said, sizeof said - 1, 0);
    said[n > 0 ? n : 0] = '\0';
    unlink(report);
    close(rfd);
    unsetenv(PB_LAUNCH_REPORT_ENV);
    bool row = strstr(said, "row\n") != NULL, stopped = strstr(said, "interrupted\n") != NULL;
    /* rank 0's code, when every rank ended cleanly and exited 0 (launch.h) */
    const char *handed = strstr(said, "exit ");
    int handed_code = handed ? atoi(handed + 5) : 0;

    if (w < 0) {
        pb_log_error("waiting for mpirun (pid %d) failed: %s; its outcome is unknown", (int)pid, strerror(werr));
        return 1;
    }
    if (expired) return 1;
    if (caught) {
        /* rank 0 says so itself when it stops at a step boundary */
        if (row)
            pb_log_error("interrupted by %s after rank 0 had appended its row to %s", sig_name(caught), cfg->out);
        else if (!stopped)
            pb_log_error("interrupted by %s: mpirun ended before rank 0 stopped at a step boundary; no row "
                         "written (an interrupted run writes nothing)",
                         sig_name(caught));
        return 128 + caught;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && handed_code > 0) return handed_code;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !row) {
        pb_log_error("mpirun exited 0, but rank 0 did not report a row appended to %s: the run did not finish; "
                     "its outcome is unknown",
                     cfg->out);
        return 1;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}
