#define _GNU_SOURCE /* pipe2 */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

bool pb_child_die_with_parent(pid_t parent, int sig)
{
    (void)prctl(PR_SET_PDEATHSIG, sig);
    /* a parent that died before prctl() took effect sends nothing: this
     * process has been reparented already */
    return getppid() == parent;
}

/* In the child: fd becomes target (-1: target left as it is). One that is
 * already target gets its close-on-exec flag cleared, which dup2() onto
 * itself would leave set (a descriptor opened O_CLOEXEC into a closed
 * stdout is 1). Async-signal-safe. */
static int place_fd(int fd, int target)
{
    if (fd < 0) return 0;
    if (fd == target) return fcntl(target, F_SETFD, 0);
    return dup2(fd, target) < 0 ? -1 : 0;
}

pb_status pb_child_spawn(const char *path, char *const argv[], int out_fd, int err_fd, pid_t *pid)
{
    extern char **environ;
    /* the exec's errno comes back through a close-on-exec pipe: a
     * successful exec closes it with nothing written */
    int errp[2];
    if (pipe2(errp, O_CLOEXEC) != 0)
        return pb_user_error(PB_ERR_UNAVAILABLE, "cannot run %s: pipe: %s", path, strerror(errno));
    pid_t parent = getpid();
    pid_t p = fork();
    if (p < 0) {
        int e = errno;
        close(errp[0]);
        close(errp[1]);
        return pb_user_error(PB_ERR_UNAVAILABLE, "cannot run %s: fork: %s", path, strerror(e));
    }
    if (p == 0) { /* only async-signal-safe calls until exec */
        int e = 0;
        if (!pb_child_die_with_parent(parent, SIGKILL)) _exit(127);
        /* err_fd at 1 would be overwritten by out_fd's dup2 before it is
         * copied to 2: moved out of the way first */
        if (err_fd == 1 && out_fd >= 0 && out_fd != 1 && (err_fd = fcntl(1, F_DUPFD_CLOEXEC, 3)) < 0) e = errno;
        if (!e && (place_fd(out_fd, 1) != 0 || place_fd(err_fd, 2) != 0)) e = errno;
        if (!e) {
            execv(path, argv);
            e = errno;
        }
        ssize_t w = write(errp[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close(errp[1]);
    int e = 0;
    ssize_t got;
    while ((got = read(errp[0], &e, sizeof e)) < 0 && errno == EINTR) {
    }
    close(errp[0]);
    if (got == (ssize_t)sizeof e) {
        while (waitpid(p, NULL, 0) < 0 && errno == EINTR) {
        }
        return pb_user_error(PB_ERR_UNAVAILABLE, "cannot run %s: %s", path, strerror(e));
    }
    *pid = p;
    return PB_OK;
}
