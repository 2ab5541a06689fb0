/* ddp across two "nodes" on this machine: two network namespaces joined by
 * a veth pair (tests/netns/two-nodes.sh), each with its own hostname;
 * mpirun runs in the first and starts the second's daemon through an rsh
 * agent, so the ranks talk real TCP (--mca btl tcp,self) over a link the
 * test can cut. Needs root, `ip` and `unshare`; skipped otherwise.
 *  - a run with one rank per node passes --verify; rank 0 writes the row and
 *    says which ranks ran on which node;
 *  - a node with more ranks than cores marks the row oversubscribed, also
 *    when it is not rank 0's;
 *  - the link cut mid-run: both ranks' deadlines fire within --timeout +
 *    10 s, each naming the cause, rank 0's failed row too, and both exit;
 *    mpirun's own --timeout then ends mpirun, which would otherwise wait for
 *    the unreachable daemon (docs/reliability.md, "Two nodes on one
 *    machine (tests)"). */
#include "tests/common/test_csv.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>

#define NETNS_SCRIPT "tests/netns/two-nodes.sh"
#define LINK_NET "169.254.231.0/30"

typedef struct nodes {
    char name[16];   /* the pair's name; its namespaces (and hostnames) are name+a, name+b */
    char a[24], b[24];
    char *dir;       /* per-rank pid and stderr files, the CSV */
    char csv[512];
    char script[4096]; /* NETNS_SCRIPT's absolute path (mpirun's rsh agent) */
    bool up;
    pid_t mpirun;    /* in a process group of its own */
    int mpirun_code; /* -signal when killed */
} nodes;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void nap(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static bool on_path(const char *tool)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", tool);
    return system(cmd) == 0;
}

/* The script with a verb; its exit code. */
static int netns(const nodes *n, const char *verb)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "'%s' %s %s", n->script, verb, n->name);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int setup(void **state)
{
    nodes *n = calloc(1, sizeof *n);
    assert_non_null(n);
    *state = n;
    n->dir = make_temp_dir();
    snprintf(n->csv, sizeof n->csv, "%s/runs.csv", n->dir);
    assert_non_null(realpath(NETNS_SCRIPT, n->script));
    /* unique per run: the namespaces and interfaces are global names */
    snprintf(n->name, sizeof n->name, "pbn%d", (int)(getpid() % 10000000));
    snprintf(n->a, sizeof n->a, "%sa", n->name);
    snprintf(n->b, sizeof n->b, "%sb", n->name);
    return 0;
}

static int teardown(void **state)
{
    nodes *n = *state;
    if (n->mpirun > 0) { /* an assertion failed with the job still running */
        kill(-n->mpirun, SIGKILL);
        waitpid(n->mpirun, NULL, 0);
    }
    /* kills what is left inside the namespaces (ranks, daemons) by pid */
    if (n->up && netns(n, "down") != 0) fprintf(stderr, "twonode: could not remove the namespaces %s*\n", n->name);
    remove_temp_dir(n->dir);
    free(n);
    return 0;
}

/* Makes the two nodes, or skips the test where that cannot be done. */
static void nodes_up(nodes *n)
{
    if (!PB_EXPECT_MPI) {
        fprintf(stderr, "twonode: skipped: built without MPI\n");
        skip();
    }
    if (geteuid() != 0 || !on_path("ip") || !on_path("unshare")) {
        fprintf(stderr, "twonode: skipped: network namespaces need root, `ip` (iproute2) and `unshare`\n");
        skip();
    }
    if (netns(n, "up") != 0) {
        fprintf(stderr, "twonode: skipped: `%s up %s` could not make the namespaces (a container without "
                        "CAP_SYS_ADMIN/CAP_NET_ADMIN?)\n", NETNS_SCRIPT, n->name);
        skip();
    }
    n->up = true;
}

/* Starts, in node a, mpirun over the two nodes with `ranks` (one per
 * slot: "HOSTa:1,HOSTb:K") running bench with args; each rank writes its
 * pid to DIR/rankR.pid and its stderr to DIR/rankR.err, since output
 * forwarded through mpirun would not cross a cut link. */
static void start_job(nodes *n, const char *hosts, int ranks, int mpirun_timeout, char *const args[])
{
    char np[16], limit[16], agent[4200], wrap[1024];
    snprintf(np, sizeof np, "%d", ranks);
    snprintf(limit, sizeof limit, "%d", mpirun_timeout);
    snprintf(agent, sizeof agent, "%s rsh", n->script);
    snprintf(wrap, sizeof wrap,
             "r=$OMPI_COMM_WORLD_RANK; echo $$ > '%s'/rank$r.pid; exec \"$0\" \"$@\" 2> '%s'/rank$r.err", n->dir,
             n->dir);
    char *argv[96] = {n->script, "exec", n->a, "mpirun", "--allow-run-as-root", "-np", np, "-H", (char *)hosts,
                      "--mca", "plm_rsh_agent", agent, "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include",
                      LINK_NET, "--mca", "oob_tcp_if_include", LINK_NET, "--bind-to", "none",
                      /* the bound a user gives a multi-node job (README) */
                      "--timeout", limit, "sh", "-c", wrap, (char *)bench_path()};
    int argc = 0;
    while (argv[argc]) argc++;
    for (int i = 0; args[i] && argc < 95; i++) argv[argc++] = args[i];
    argv[argc] = NULL;

    char out[600];
    snprintf(out, sizeof out, "%s/mpirun.out", n->dir);
    n->mpirun = fork();
    assert_true(n->mpirun >= 0);
    if (n->mpirun == 0) {
        setpgid(0, 0);
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    setpgid(n->mpirun, n->mpirun);
}

/* Waits for mpirun at most limit_s; true when it ended (its code kept). */
static bool wait_mpirun(nodes *n, double limit_s)
{
    double end = now_s() + limit_s;
    for (;;) {
        int status = 0;
        pid_t got = waitpid(n->mpirun, &status, WNOHANG);
        if (got == n->mpirun) {
            n->mpirun_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
            n->mpirun = 0;
            return true;
        }
        if (now_s() >= end) return false;
        nap(0.05);
    }
}

static char *rank_file(const nodes *n, int rank, const char *ext)
{
    char path[600];
    snprintf(path, sizeof path, "%s/rank%d.%s", n->dir, rank, ext);
    char *s = read_file(path);
    return s ? s : strdup("");
}

static pid_t rank_pid(const nodes *n, int rank)
{
    char *s = rank_file(n, rank, "pid");
    pid_t pid = (pid_t)atoi(s);
    free(s);
    return pid;
}

/* Whether pid is still a process (same pid namespace: the nodes share this
 * machine's processes). A zombie counts as gone: it has exited. */
static bool alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z';
}

static void dump_job(const nodes *n, int ranks)
{
    char path[600];
    snprintf(path, sizeof path, "%s/mpirun.out", n->dir);
    char *s = read_file(path);
    fprintf(stderr, "--- mpirun:\n%s", s ? s : "(none)\n");
    free(s);
    for (int r = 0; r < ranks; r++) {
        s = rank_file(n, r, "err");
        fprintf(stderr, "--- rank %d:\n%s", r, s);
        free(s);
    }
}

/* One rank per node, through TCP across the link: --verify passes, rank 0
 * (node a) writes the row and says where each rank ran. */
static void test_ddp_verify_across_nodes(void **state)
{
    nodes *n = *state;
    nodes_up(n);
    char hosts[64];
    snprintf(hosts, sizeof hosts, "%s,%s", n->a, n->b);
    char *args[] = {"--strategy", "ddp", "--gpus", "2", "--backend", "cpu", "--workload", "mlp-xs", "--iters", "5",
                    "--warmup", "1", "--threads", "1", "--verify", "--timeout", "10", "--out", n->csv, NULL};
    start_job(n, hosts, 2, 60, args);
    if (!wait_mpirun(n, 60)) {
        dump_job(n, 2);
        fail_msg("the job did not end within mpirun's --timeout 60");
    }
    if (n->mpirun_code != 0) dump_job(n, 2);
    assert_int_equal(n->mpirun_code, 0);

    csv c;
    csv_load(&c, n->csv);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "ok");
    assert_string_equal(csv_get(&c, "ranks"), "2");
    assert_string_equal(csv_get(&c, "host"), n->a); /* rank 0's node */
    assert_string_equal(csv_get(&c, "oversubscribed"), "0");
    double rel = csv_num(&c, "verify_max_rel_err");
    if (!(rel <= 1e-4)) fail_msg("verify_max_rel_err %g beyond 1e-4", rel);
    csv_free(&c);

    char *e0 = rank_file(n, 0, "err"), *e1 = rank_file(n, 1, "err");
    char want[128];
    snprintf(want, sizeof want, "2 ranks on 2 nodes: %s (rank 0), %s (rank 1)", n->a, n->b);
    if (!strstr(e0, want)) fail_msg("rank 0 did not say '%s':\n%s", want, e0);
    assert_non_null(strstr(e0, "--verify: parameters after step"));
    if (strstr(e1, "error")) fail_msg("rank 1:\n%s", e1);
    free(e0);
    free(e1);
}

/* Node b gets more ranks than this machine has cores, node a (rank 0's)
 * one: the row is oversubscribed, since node b's ranks set every step. */
static void test_oversubscribed_other_node(void **state)
{
    nodes *n = *state;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores > 7) {
        fprintf(stderr, "twonode: skipped: %ld cores; oversubscribing one would take %ld ranks\n", cores, cores + 1);
        skip();
    }
    nodes_up(n);
    int on_b = (int)cores + 1, ranks = 1 + on_b;
    char hosts[64], gpus[16], batch[16];
    snprintf(hosts, sizeof hosts, "%s:1,%s:%d", n->a, n->b, on_b);
    snprintf(gpus, sizeof gpus, "%d", ranks);
    snprintf(batch, sizeof batch, "%d", 8 * ranks);
    char *args[] = {"--strategy", "ddp", "--gpus", gpus, "--backend", "cpu", "--workload", "mlp-xs", "--batch", batch,
                    "--iters", "2", "--warmup", "0", "--threads", "1", "--timeout", "20", "--out", n->csv, NULL};
    start_job(n, hosts, ranks, 60, args);
    if (!wait_mpirun(n, 60)) {
        dump_job(n, ranks);
        fail_msg("the job did not end within mpirun's --timeout 60");
    }
    if (n->mpirun_code != 0) dump_job(n, ranks);
    assert_int_equal(n->mpirun_code, 0);
    csv c;
    csv_load(&c, n->csv);
    assert_string_equal(csv_get(&c, "status"), "ok");
    assert_string_equal(csv_get(&c, "host"), n->a);
    if (strcmp(csv_get(&c, "oversubscribed"), "1") != 0)
        fail_msg("oversubscribed is '%s' with %d ranks on %s's %ld cores", csv_get(&c, "oversubscribed"), on_b, n->b,
                 cores);
    csv_free(&c);
    char *e0 = rank_file(n, 0, "err");
    char want[128];
    snprintf(want, sizeof want, "%d ranks on 2 nodes: %s (rank 0), %s (ranks 1-%d)", ranks, n->a, n->b, ranks - 1);
    if (!strstr(e0, want)) fail_msg("rank 0 did not say '%s':\n%s", want, e0);
    free(e0);
}

/* The link cut while the ranks train: neither can reach the other, so each
 * one's deadline (--timeout 2) must end it, with a message naming the
 * cause, within --timeout + 10 s; rank 0 still writes its failed row. */
static void test_link_down_mid_run(void **state)
{
    nodes *n = *state;
    nodes_up(n);
    const int timeout = 2, mpirun_timeout = 12;
    char hosts[64];
    snprintf(hosts, sizeof hosts, "%s,%s", n->a, n->b);
    char *args[] = {"--strategy", "ddp", "--gpus", "2", "--backend", "cpu", "--workload", "mlp-xs", "--iters", "100000",
                    "--warmup", "1", "--threads", "1", "--timeout", "2", "--out", n->csv, NULL};
    double start = now_s();
    start_job(n, hosts, 2, mpirun_timeout, args);

    /* the steps have begun on both sides once rank 0 reports step 10 */
    bool running = false;
    while (!running && now_s() - start < mpirun_timeout - timeout - 3) {
        char *e0 = rank_file(n, 0, "err");
        running = strstr(e0, "step 10/") != NULL;
        free(e0);
        if (!running) nap(0.05);
    }
    if (!running) {
        dump_job(n, 2);
        fail_msg("rank 0 did not report step 10 within %d s", mpirun_timeout - timeout - 3);
    }
    pid_t pid[2] = {rank_pid(n, 0), rank_pid(n, 1)};
    assert_true(pid[0] > 0 && pid[1] > 0);
    double cut = now_s();
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "'%s' link %s down", n->script, n->name);
    assert_int_equal(system(cmd), 0);

    while ((alive(pid[0]) || alive(pid[1])) && now_s() - cut < timeout + 10) nap(0.05);
    double took = now_s() - cut;
    if (alive(pid[0]) || alive(pid[1])) {
        dump_job(n, 2);
        fail_msg("%s still running %.1f s after the link went down (--timeout %d)",
                 alive(pid[0]) ? alive(pid[1]) ? "both ranks" : "rank 0" : "rank 1", took, timeout);
    }
    /* not before the deadline either: they waited for each other */
    if (took < timeout - 0.5) fail_msg("the ranks ended %.1f s after the cut, before --timeout %d", took, timeout);

    char *e[2] = {rank_file(n, 0, "err"), rank_file(n, 1, "err")};
    for (int r = 0; r < 2; r++) {
        char who[64];
        snprintf(who, sizeof who, "rank %d of 2 on %s", r, r ? n->b : n->a);
        if (!strstr(e[r], who) || !strstr(e[r], "within 2 s (--timeout)") ||
            !strstr(e[r], "1 rank on another node could not be inspected") || !strstr(e[r], "ending all 2 ranks"))
            fail_msg("rank %d's deadline message is missing or incomplete:\n%s", r, e[r]);
    }
    free(e[0]);
    free(e[1]);

    csv c;
    csv_load(&c, n->csv);
    assert_int_equal(c.rows, 1);
    assert_string_equal(csv_get(&c, "status"), "failed");
    const char *why = csv_get(&c, "error");
    char who[64];
    snprintf(who, sizeof who, "rank 0 of 2 on %s", n->a);
    if (!strstr(why, who) || !strstr(why, "within 2 s (--timeout)") || !strstr(why, "another rank stopped or is stuck"))
        fail_msg("the failed row's error does not name the cause: %s", why);
    assert_string_equal(csv_get(&c, "step_ms_p50"), "");
    csv_free(&c);

    /* mpirun waits for node b's daemon, which it cannot reach, until its
     * own --timeout: the bound the README tells a user to give */
    double left = mpirun_timeout + 10 - (now_s() - start);
    if (!wait_mpirun(n, left > 0 ? left : 0)) fail_msg("mpirun outlived its --timeout %d by 10 s", mpirun_timeout);
    assert_int_not_equal(n->mpirun_code, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ddp_verify_across_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversubscribed_other_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_down_mid_run, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
