/* harness/cpu_bind.c: a device thread's share of the process's CPUs (runs
 * of CPUs / devices, or one CPU each round-robin past the CPUs), the
 * process's set kept as the first bind found it (what --ranks-out's cpus
 * column reports for a dp run whose main thread is device 0's), and the
 * main thread given back every CPU. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */
#include <pthread.h>
#include <sched.h>

#include "harness/cpu_bind.h"
#include "harness/ranks.h"

static int allowed[CPU_SETSIZE], nallowed;

static void *idle_thread(void *arg)
{
    pthread_mutex_t *mu = arg;
    pthread_mutex_lock(mu); /* held by the test until it has read us */
    pthread_mutex_unlock(mu);
    return NULL;
}

/* the CPUs device `index` of `count` should get, computed here from the list */
static void expected(int index, int count, cpu_set_t *want)
{
    CPU_ZERO(want);
    if (count <= nallowed) {
        int per = nallowed / count;
        for (int k = index * per; k < (index + 1) * per; k++) CPU_SET(allowed[k], want);
    } else {
        CPU_SET(allowed[index % nallowed], want);
    }
}

static void test_shares(void **state)
{
    (void)state;
    cpu_set_t all;
    assert_int_equal(sched_getaffinity(0, sizeof all, &all), 0);
    nallowed = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all)) allowed[nallowed++] = c;
    assert_true(nallowed >= 1);
    char before[PB_RANK_CPUS_CHARS];
    pb_ranks_cpulist(before, sizeof before);

    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, idle_thread, &mu), 0);
    /* 1 device, one per CPU, one more than the CPUs, twice the CPUs, and
     * a count that leaves CPUs over (3 CPUs or more: n/2 + 1) */
    int counts[] = {1, nallowed, nallowed + 1, 2 * nallowed, nallowed >= 3 ? nallowed / 2 + 1 : 1};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        for (int index = 0; index < counts[i]; index++) {
            assert_true(pb_cpu_bind_thread(t, index, counts[i]));
            cpu_set_t got, want;
            assert_int_equal(pthread_getaffinity_np(t, sizeof got, &got), 0);
            expected(index, counts[i], &want);
            if (!CPU_EQUAL(&got, &want))
                fail_msg("device %d of %d: got %d CPUs, want %d", index, counts[i], CPU_COUNT(&got),
                         CPU_COUNT(&want));
        }
    }
    /* no device past the count */
    assert_false(pb_cpu_bind_thread(t, 2, 2));
    assert_false(pb_cpu_bind_thread(t, -1, 2));
    pthread_mutex_unlock(&mu);
    assert_int_equal(pthread_join(t, NULL), 0);

    /* the main thread as device 0 of one per CPU: on one CPU, yet the
     * process's set and its cpulist are what they were */
    assert_true(pb_cpu_bind_thread(pthread_self(), 0, nallowed));
    cpu_set_t self, process;
    assert_int_equal(sched_getaffinity(0, sizeof self, &self), 0);
    assert_int_equal(CPU_COUNT(&self), 1);
    assert_true(CPU_ISSET(allowed[0], &self));
    cpu_set_t *big = CPU_ALLOC(PB_CPU_MAX);
    assert_non_null(big);
    assert_true(pb_cpu_process_set(big, CPU_ALLOC_SIZE(PB_CPU_MAX)));
    for (int c = 0; c < CPU_SETSIZE; c++) assert_int_equal(!!CPU_ISSET_S(c, CPU_ALLOC_SIZE(PB_CPU_MAX), big), !!CPU_ISSET(c, &all));
    CPU_FREE(big);
    assert_false(pb_cpu_process_set(&process, 1)); /* too small a set */
    char after[PB_RANK_CPUS_CHARS];
    pb_ranks_cpulist(after, sizeof after);
    assert_string_equal(after, before);
    /* and back on all of them */
    pb_cpu_unbind_self();
    assert_int_equal(sched_getaffinity(0, sizeof self, &self), 0);
    assert_true(CPU_EQUAL(&self, &all));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shares),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
