/* The progress slots behind the reliability messages (kernels/progress.c),
 * alone, with a second process as the stuck rank: a hang is named by the
 * rank that waited for it, with the rank behind, its phase and step.
 * Reliability through ./bench is tests/e2e/test_reliability.c;
 * docs/reliability.md. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <time.h>

#include "kernels/progress.h"

/* One rank's events up to a point of step 3: the phases of ddp's step
 * until `last` begins. */
static void progress_to(pb_phase last)
{
    static const pb_phase order[] = {PB_PHASE_H2D, PB_PHASE_FWD, PB_PHASE_BWD, PB_PHASE_SYNC, PB_PHASE_OPT};
    pb_progress_set_step(2);
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        pb_progress_phase_begin(order[i]);
        pb_progress_phase_end();
    }
    pb_progress_set_step(3);
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        pb_progress_phase_begin(order[i]);
        if (order[i] == last) return;
        pb_progress_phase_end();
    }
}

static void expect_text(const char *text, const char *want)
{
    if (!strstr(text, want)) fail_msg("'%s' lacks '%s'", text, want);
}

static void expect_no_text(const char *text, const char *unwanted)
{
    if (strstr(text, unwanted)) fail_msg("'%s' has '%s'", text, unwanted);
}

/* Three slots of one node (of a 4-rank world) in shared memory: local rank
 * 1 is another process, stuck in bwd of step 3; local ranks 2 and 0 (this
 * process, attached as each in turn) wait in sync. Rank 0 names rank 1
 * alone, then, once it is gone, says it exited; a slot its owner never
 * initialised and the rank on another node are counted, not guessed at. */
static void test_progress_names_the_rank_behind(void **state)
{
    (void)state;
    size_t bytes = pb_progress_slot_bytes();
    char *mem = mmap(NULL, 3 * bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    void *where[3] = {mem, mem + bytes, mem + 2 * bytes};
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (pb_progress_attach(where, 3, 1, 1, 4, "node-a") != PB_OK) _exit(1);
        progress_to(PB_PHASE_BWD);
        if (write(ready[1], "x", 1) != 1) _exit(1);
        for (;;) pause(); /* stuck, until killed */
    }
    char x;
    assert_int_equal(read(ready[0], &x, 1), 1);
    close(ready[0]);
    close(ready[1]);

    assert_int_equal(pb_progress_attach(where, 3, 2, 2, 4, "node-a"), PB_OK);
    progress_to(PB_PHASE_SYNC);
    assert_int_equal(pb_progress_attach(where, 3, 0, 0, 4, "node-a"), PB_OK);
    progress_to(PB_PHASE_SYNC);
    char text[640], want[128];
    assert_int_equal(pb_progress_describe(text, sizeof text), 1);
    snprintf(want, sizeof want, "rank 1 on node-a (pid %d) is stuck in phase bwd of step 3 (no progress for ",
             (int)child);
    expect_text(text, want);
    expect_no_text(text, "rank 2 on");
    expect_no_text(text, "another rank stopped");
    expect_text(text, "; 1 rank on another node could not be inspected");

    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    assert_int_equal(pb_progress_describe(text, sizeof text), 1);
    snprintf(want, sizeof want, "rank 1 on node-a (pid %d) has exited; it was last in phase bwd of step 3, ",
             (int)child);
    expect_text(text, want);

    /* rank 1 (here now) catches up to sync; a rank that finished the
     * step is not behind either */
    assert_int_equal(pb_progress_attach(where, 3, 1, 1, 4, "node-a"), PB_OK);
    progress_to(PB_PHASE_SYNC);
    assert_int_equal(pb_progress_attach(where, 3, 2, 2, 4, "node-a"), PB_OK);
    progress_to(PB_PHASE_OPT);
    pb_progress_phase_end();
    assert_int_equal(pb_progress_attach(where, 3, 0, 0, 4, "node-a"), PB_OK);
    progress_to(PB_PHASE_SYNC);
    assert_int_equal(pb_progress_describe(text, sizeof text), 0);
    expect_text(text, "another rank stopped or is stuck: no rank on this node (node-a) is behind this one "
                      "(in phase sync of step 3); 1 rank on another node could not be inspected");

    memset(where[2], 0, bytes); /* its owner never attached */
    pb_progress_describe(text, sizeof text);
    expect_text(text, "; 1 rank on this node published no progress");

    pb_progress_detach();
    assert_int_equal(pb_progress_describe(text, sizeof text), 0);
    assert_string_equal(text, "another rank stopped or is stuck");
    pb_progress_set_step(4); /* detached: nothing is written */
    pb_progress_phase_begin(PB_PHASE_FWD);
    munmap(mem, 3 * bytes);
}

#if PB_EXPECT_MPI

#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress_names_the_rank_behind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
