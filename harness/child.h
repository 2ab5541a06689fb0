/* Processes bench starts die with it.
 *
 * A child that outlives a SIGKILLed bench (a sweep's run, the launcher's
 * mpirun, gnuplot) would go on alone, and a run would later append a row for
 * a job its user had ended. Every child bench starts asks the kernel, right
 * after fork(), for a signal when its parent dies (PR_SET_PDEATHSIG), then
 * checks that the parent it was forked by is still its parent, which closes
 * the window in which the parent died before the request took effect.
 * docs/reliability.md. */
#ifndef PB_CHILD_H
#define PB_CHILD_H

#include <stdbool.h>
#include <sys/types.h>

#include "status.h"

/* In a child right after fork() (async-signal-safe): sig is sent to this
 * process when its parent (pid parent, as the parent saw itself before the
 * fork) dies. False when that parent has already died: the caller _exits. */
bool pb_child_die_with_parent(pid_t parent, int sig);

/* fork + exec of path with argv, dying with this process (SIGKILL). fd 1
 * and 2 of the child become out_fd and err_fd (-1: inherited unchanged).
 * An exec that fails is reported here, with its reason, as posix_spawn
 * would (PB_ERR_UNAVAILABLE, "cannot run PATH: ..."). */
pb_status pb_child_spawn(const char *path, char *const argv[], int out_fd, int err_fd, pid_t *pid);

#endif /* PB_CHILD_H */
