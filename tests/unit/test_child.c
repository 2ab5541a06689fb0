/* harness/child.c: pb_child_spawn gives the child the descriptors it was
 * asked to, also when they already sit where they go (a close-on-exec
 * descriptor that landed on fd 1 or 2 because bench started with that one
 * closed) and when err_fd is 1, which out_fd's placement would overwrite. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <fcntl.h>
#include <sys/wait.h>

#include "harness/child.h"

/* Runs sh -c script with fd 1 replaced by a close-on-exec pipe for the
 * spawn (restored after), out_fd/err_fd as given (PIPE: that pipe, NUL:
 * /dev/null); returns what arrived in the pipe. */
#define PIPE (-2)
#define NUL (-3)
static void spawn_into_pipe(const char *script, int out_fd, int err_fd, char *got, size_t len)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(null >= 0);
    fflush(stdout);
    int saved = dup(1);
    assert_true(saved >= 0);
    assert_int_equal(dup2(p[1], 1), 1);
    assert_int_equal(fcntl(1, F_SETFD, FD_CLOEXEC), 0); /* as an O_CLOEXEC open into a closed fd 1 */
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    pid_t pid = -1;
    pb_status st = pb_child_spawn("/bin/sh", argv, out_fd == PIPE ? 1 : out_fd == NUL ? null : out_fd,
                                  err_fd == PIPE ? 1 : err_fd == NUL ? null : err_fd, &pid);
    dup2(saved, 1);
    close(saved);
    close(p[1]);
    close(null);
    assert_int_equal(st, PB_OK);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    ssize_t n = read(p[0], got, len - 1);
    got[n > 0 ? n : 0] = '\0';
    close(p[0]);
}

static void test_fd_already_in_place_stays_open(void **state)
{
    (void)state;
    char got[64];
    spawn_into_pipe("echo out", PIPE, -1, got, sizeof got);
    assert_string_equal(got, "out\n");
}

static void test_err_fd_on_stdout_is_not_overwritten(void **state)
{
    (void)state;
    char got[64];
    spawn_into_pipe("echo out; echo err >&2", NUL, PIPE, got, sizeof got);
    assert_string_equal(got, "err\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_already_in_place_stays_open),
        cmocka_unit_test(test_err_fd_on_stdout_is_not_overwritten),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
