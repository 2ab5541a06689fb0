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
        if ((out_fd >= 0 && dup2(out_fd, 1) < 0) || (err_fd >= 0 && dup2(err_fd, 2) < 0)) e = errno;
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
