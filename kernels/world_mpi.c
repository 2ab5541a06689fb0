/* The MPI world of a rank-per-device run (kernels/world.h), built when the
 * build found MPI; kernels/world_stub.c otherwise. */
#define _POSIX_C_SOURCE 200809L
#include "world.h"

#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../harness/timer.h"
#include "mpi_try.h"
#include "progress.h"

bool pb_mpi_available(void) { return true; }

static bool world_up;

bool pb_world_up(void) { return world_up; }

/* The progress slots of this node's ranks (progress.h): one
 * MPI-3 shared-memory window over the node's communicator, locked for the
 * whole run (MPI_Win_lock_all), so that reading a rank's slot never needs
 * that rank, nor any MPI call: the deadline that fires may be on a thread
 * other than the one inside MPI. */
static MPI_Comm node_comm = MPI_COMM_NULL;
static MPI_Win progress_win = MPI_WIN_NULL;

/* Best effort: without the window, deadline messages stay generic. Every
 * rank of the node calls it (the window's calls are collective on it). */
static void progress_open(const pb_world *w)
{
    void *mine = NULL;
    void **where = NULL;
    MPI_Aint bytes = (MPI_Aint)pb_progress_slot_bytes();
    if (MPI_Win_allocate_shared(bytes, 1, MPI_INFO_NULL, node_comm, &mine, &progress_win) != MPI_SUCCESS) {
        progress_win = MPI_WIN_NULL;
        MPI_Barrier(node_comm); /* the one the others reach below */
        return;
    }
    MPI_Win_set_errhandler(progress_win, MPI_ERRORS_RETURN);
    MPI_Win_lock_all(MPI_MODE_NOCHECK, progress_win);
    where = calloc((size_t)w->local_ranks, sizeof *where);
    bool ok = where != NULL;
    for (int i = 0; ok && i < w->local_ranks; i++) {
        MPI_Aint size = 0;
        int disp = 0;
        ok = MPI_Win_shared_query(progress_win, i, &size, &disp, &where[i]) == MPI_SUCCESS && where[i] &&
             size >= bytes;
    }
    if (ok && pb_progress_attach(where, w->local_ranks, w->local_rank, w->rank, w->ranks, w->host) != PB_OK) {
        pb_error_clear(); /* the run goes on, with generic messages */
        pb_progress_detach();
    }
    free(where);
    /* every rank's slot initialised before any rank reads one */
    MPI_Win_sync(progress_win);
    MPI_Barrier(node_comm);
    MPI_Win_sync(progress_win);
}

static void progress_close(void)
{
    pb_progress_detach();
    if (progress_win != MPI_WIN_NULL) {
        MPI_Win_unlock_all(progress_win);
        MPI_Win_free(&progress_win);
    }
    progress_win = MPI_WIN_NULL;
}

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Appends to a bounded string; one that no longer fits ends in "...". */
__attribute__((format(printf, 4, 5))) static void append(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
    if (*used + 1 >= len) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, len - *used, fmt, ap);
    va_end(ap);
    if (n >= 0 && *used + (size_t)n < len) {
        *used += (size_t)n;
        return;
    }
    *used = len - 1;
    if (len > 4) memcpy(buf + len - 4, "...", 4);
}

/* How the ranks spread over the nodes. Any node with more ranks than cores
 * makes the run oversubscribed, not only rank 0's: the slowest rank paces
 * every step. Rank 0 also gets which host ran which ranks, for its log
 * ("vm1 (ranks 0-7), vm2 (ranks 8-15)"); nodes are told apart by the
 * shared-memory split, so two with one hostname still count twice. */
static pb_status map_nodes(pb_world *w)
{
    enum { HOST_CHARS = 65 }; /* Linux's HOST_NAME_MAX + 1 */
    pb_status st = PB_OK;
    char *hosts = NULL, mine_host[HOST_CHARS];
    int *leaders = NULL;
    if (w->rank == 0) {
        hosts = malloc((size_t)w->ranks * HOST_CHARS);
        leaders = malloc((size_t)w->ranks * sizeof *leaders);
    }
    /* rank 0 without room for the map skips it on every rank (it is only
     * for the log), rather than leave the others in a gather */
    int mine[3] = {w->local_rank == 0, w->oversubscribed, w->rank == 0 && (!hosts || !leaders)};
    int all[3] = {0, 0, 0};
    MPI_TRY(MPI_Allreduce(mine, all, 3, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    w->nodes = all[0];
    w->oversubscribed = all[1] > 0;
    if (all[2]) goto cleanup;
    /* a node's name is the world rank of its first rank */
    int leader = w->rank;
    MPI_TRY(MPI_Bcast(&leader, 1, MPI_INT, 0, node_comm));
    snprintf(mine_host, sizeof mine_host, "%.*s", HOST_CHARS - 1, w->host);
    MPI_TRY(MPI_Gather(&leader, 1, MPI_INT, leaders, 1, MPI_INT, 0, MPI_COMM_WORLD));
    MPI_TRY(MPI_Gather(mine_host, HOST_CHARS, MPI_CHAR, hosts, HOST_CHARS, MPI_CHAR, 0, MPI_COMM_WORLD));
    if (w->rank != 0) goto cleanup;
    size_t used = 0, len = sizeof w->node_map;
    for (int node = 0; node < w->ranks; node++) {
        if (leaders[node] != node) continue;
        int count = 0;
        for (int r = node; r < w->ranks; r++) count += leaders[r] == node;
        append(w->node_map, len, &used, "%s%s (rank%s ", node ? ", " : "", hosts + (size_t)node * HOST_CHARS,
               count > 1 ? "s" : "");
        /* runs of consecutive ranks as first-last */
        for (int r = node; r < w->ranks; r++) {
            if (leaders[r] != node) continue;
            int last = r;
            while (last + 1 < w->ranks && leaders[last + 1] == node) last++;
            append(w->node_map, len, &used, "%s%d", r > node ? "," : "", r);
            if (last > r) append(w->node_map, len, &used, "-%d", last);
            r = last;
        }
        append(w->node_map, len, &used, ")");
    }
cleanup:
    free(hosts);
    free(leaders);
    return st;
}

/* Open MPI's blocking calls busy-poll while they wait. A rank's comm
 * thread waits inside MPI_Allreduce beside the thread that computes
 * backward, and on the cpu backend both share the rank's core (mpirun
 * binds each of 2 ranks to one): the spin took half that core whenever the
 * peer was behind. Yielding gives it back (2 ranks, mlp-s, --bucket-mb 1:
 * 37 and 34 ms a step -> 30 and 30; 4 ranks on 2 cores: 80 and 72 -> 51
 * and 49; a GPU rank with cores to spare loses nothing). A user's own
 * setting wins. */
void pb_world_prepare_env(void) { setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0); }

pb_status pb_world_init(pb_world *w)
{
    pb_status st = PB_OK;
    memset(w, 0, sizeof *w);
    int provided = 0;
    pb_world_prepare_env();
    MPI_TRY(MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided));
    world_up = true;
    /* errors come back as codes, turned into statuses here */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    PB_REQUIRE(provided >= MPI_THREAD_SERIALIZED, PB_ERR_COMM,
               "MPI provides thread level %d; the mpi comm needs MPI_THREAD_SERIALIZED (%d)", provided,
               MPI_THREAD_SERIALIZED);
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &w->rank));
    MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &w->ranks));
    MPI_TRY(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node_comm));
    MPI_TRY(MPI_Comm_rank(node_comm, &w->local_rank));
    MPI_TRY(MPI_Comm_size(node_comm, &w->local_ranks));
    w->oversubscribed = w->local_ranks > online_cores();
    if (gethostname(w->host, sizeof w->host) != 0) snprintf(w->host, sizeof w->host, "unknown");
    w->host[sizeof w->host - 1] = '\0';
    snprintf(w->version, sizeof w->version, "%s", pb_world_version());
    PB_TRY(map_nodes(w));
    progress_open(w);
cleanup:
    return st;
}

void pb_world_finalize(void)
{
    if (world_up) {
        progress_close();
        if (node_comm != MPI_COMM_NULL) MPI_Comm_free(&node_comm);
        MPI_Finalize();
    }
    world_up = false;
}

pb_status pb_world_max_to_root(double *v, int n)
{
    pb_status st = PB_OK;
    int rank = 0;
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    MPI_TRY(MPI_Reduce(rank == 0 ? MPI_IN_PLACE : v, v, n, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD));
cleanup:
    return st;
}

pb_status pb_world_gather_text(const char *mine, char *all, int each)
{
    pb_status st = PB_OK;
    char *buf = NULL;
    PB_ALLOC(buf, (size_t)each);
    snprintf(buf, (size_t)each, "%s", mine);
    MPI_TRY(MPI_Gather(buf, each, MPI_CHAR, all, each, MPI_CHAR, 0, MPI_COMM_WORLD));
cleanup:
    free(buf);
    return st;
}

pb_status pb_world_slowest_to_root(double *v, double *rows, int n, int width)
{
    pb_status st = PB_OK;
    int rank = 0;
    struct {
        double ms;
        int rank;
    } *who = NULL;
    PB_ALLOC(who, n > 0 ? n : 1);
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    for (int i = 0; i < n; i++) {
        who[i].ms = v[i];
        who[i].rank = rank;
    }
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, who, n, MPI_DOUBLE_INT, MPI_MAXLOC, MPI_COMM_WORLD));
    /* every rank keeps only the rows it was slowest for; summing the rows
     * over ranks then moves each slowest row to rank 0 exactly (x + 0) */
    for (int i = 0; i < n; i++) {
        v[i] = who[i].ms;
        if (who[i].rank != rank) memset(rows + (size_t)i * (size_t)width, 0, (size_t)width * sizeof *rows);
    }
    MPI_TRY(MPI_Reduce(rank == 0 ? MPI_IN_PLACE : rows, rows, n * width, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD));
cleanup:
    free(who);
    return st;
}

pb_status pb_world_bcast_int_lazy(int *value)
{
    pb_status st = PB_OK;
    MPI_Request req = MPI_REQUEST_NULL;
    int done = 0;
    MPI_TRY(MPI_Ibcast(value, 1, MPI_INT, 0, MPI_COMM_WORLD, &req));
    for (;;) {
        MPI_TRY(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
        if (done) break;
        struct timespec ts = {0, 1000000}; /* 1 ms */
        nanosleep(&ts, NULL);
    }
cleanup:
    return st;
}

void pb_world_abort(int code)
{
    if (world_up) MPI_Abort(MPI_COMM_WORLD, code);
}

const char *pb_world_version(void)
{
    static char v[256];
    if (!v[0]) {
        char lib[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        if (MPI_Get_library_version(lib, &len) != MPI_SUCCESS) len = 0;
        lib[len < MPI_MAX_LIBRARY_VERSION_STRING ? len : MPI_MAX_LIBRARY_VERSION_STRING - 1] = '\0';
        size_t first = strcspn(lib, "\n");
        while (first > 0 && (lib[first - 1] == ' ' || lib[first - 1] == ',')) first--;
        snprintf(v, sizeof v, "%.*s", (int)(first < sizeof v - 1 ? first : sizeof v - 1), lib);
    }
    return v;
}

/* --- agreements between the ranks, between steps ----------------------------- */

/* A nonblocking collective's request, waited for until deadline_s: spins
 * briefly (the usual case: the ranks arrive together at a step boundary),
 * then sleeps between tests. Called between steps, when the comm thread is
 * idle (MPI_THREAD_SERIALIZED). */
static pb_status wait_deadline(MPI_Request *req, double deadline_s, bool *late)
{
    *late = false;
    double t0 = pb_now_ms();
    for (long polls = 0;; polls++) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return pb_error(PB_ERR_COMM, "MPI_Test failed (error %d)", rc);
        if (done) return PB_OK;
        if (polls < 20000) continue;
        if (pb_now_ms() - t0 > deadline_s * 1e3) {
            *late = true;
            return PB_OK; /* the request cannot be cancelled: the caller aborts */
        }
        struct timespec ts = {0, 200000}; /* 0.2 ms */
        nanosleep(&ts, NULL);
    }
}

/* An Iallreduce of n longs on MPI_COMM_WORLD, waited for until deadline_s. */
static pb_status iallreduce_deadline(long *in, long *out, int n, MPI_Op op, double deadline_s, bool *late)
{
    MPI_Request req = MPI_REQUEST_NULL;
    *late = false;
    int rc = MPI_Iallreduce(in, out, n, MPI_LONG, op, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) return pb_error(PB_ERR_COMM, "MPI_Iallreduce failed (error %d)", rc);
    return wait_deadline(&req, deadline_s, late);
}

static void who(int *rank, int *ranks, char *host, size_t len)
{
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, ranks);
    if (gethostname(host, len) != 0) snprintf(host, len, "unknown");
    host[len - 1] = '\0';
}

pb_status pb_world_agree_signal(int *sig, int *failed_rank, double deadline_s, int64_t step)
{
    int rank = 0, ranks = 0;
    char host[256];
    who(&rank, &ranks, host, sizeof host);
    /* MAX of ranks - r picks the lowest failed rank r; 0: none failed */
    long in[2] = {*sig, *failed_rank >= 0 ? ranks - *failed_rank : 0}, out[2] = {0, 0};
    bool late = false;
    pb_status st = iallreduce_deadline(in, out, 2, MPI_MAX, deadline_s, &late);
    if (st != PB_OK) return st;
    if (late) {
        char why[640];
        /* who holds the boundary up, from the node's progress slots */
        pb_progress_describe(why, sizeof why);
        return pb_user_error(PB_ERR_COMM,
                             "rank %d of %d on %s: the ranks did not all reach the boundary before step %lld "
                             "within %g s (--timeout): %s",
                             rank, ranks, host, (long long)step, deadline_s, why);
    }
    *sig = (int)out[0];
    *failed_rank = out[1] ? ranks - (int)out[1] : -1;
    return PB_OK;
}

pb_status pb_world_share_text(char *text, size_t len, int root, double deadline_s)
{
    MPI_Request req = MPI_REQUEST_NULL;
    bool late = false;
    text[len - 1] = '\0';
    int rc = MPI_Ibcast(text, (int)len, MPI_CHAR, root, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) return pb_error(PB_ERR_COMM, "MPI_Ibcast failed (error %d)", rc);
    pb_status st = wait_deadline(&req, deadline_s, &late);
    if (st == PB_OK && late)
        return pb_user_error(PB_ERR_COMM, "rank %d did not send its message within %g s (--timeout)", root,
                             deadline_s);
    text[len - 1] = '\0';
    return st;
}

/* "--lr, --seed": the names of the values after the first that differ */
static void also_differing(const long *lo, const long *hi, const char *const *names, int first, int n, char *out,
                           size_t len)
{
    out[0] = '\0';
    for (int i = first + 1; i < n; i++) {
        if (lo[2 * i] == hi[2 * i] && lo[2 * i + 1] == hi[2 * i + 1]) continue;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", used ? ", " : "", names[i]);
    }
}

/* The first rank whose text (of `width` bytes each in all) is not rank 0's. */
static int first_other(const char *all, int ranks, size_t width)
{
    for (int r = 1; r < ranks; r++)
        if (strncmp(all + (size_t)r * width, all, width) != 0) return r;
    return 0;
}

pb_status pb_world_agree_config(const uint64_t *hashes, const char *const *names, const char *const *texts, int n,
                                bool usable, double deadline_s, bool *differs)
{
    enum { TEXT = 64 };
    pb_status st = PB_OK;
    *differs = false;
    long *v = calloc((size_t)(2 * n + 1) * 3, sizeof *v), *lo = v + 2 * n + 1, *hi = lo + 2 * n + 1;
    char *all = NULL, mine[TEXT];
    int rank = 0, ranks = 0;
    char host[256];
    who(&rank, &ranks, host, sizeof host);
    if (!v) return pb_error(PB_ERR_NOMEM, "host allocation for the configuration agreement failed");
    /* each value's hash in two halves of 32 bits (they fit a long
     * everywhere): MIN and MAX of each, and the MIN of usable */
    for (int i = 0; i < n; i++) {
        v[2 * i] = (long)(hashes[i] >> 32);
        v[2 * i + 1] = (long)(hashes[i] & 0xffffffffUL);
    }
    v[2 * n] = usable ? 1 : 0;
    bool late = false;
    st = iallreduce_deadline(v, lo, 2 * n + 1, MPI_MIN, deadline_s, &late);
    if (st == PB_OK && !late) st = iallreduce_deadline(v, hi, 2 * n + 1, MPI_MAX, deadline_s, &late);
    if (st != PB_OK) goto cleanup;
    if (late) {
        st = pb_user_error(PB_ERR_COMM,
                           "rank %d of %d on %s: the ranks did not all compare configurations within %g s "
                           "(--timeout)",
                           rank, ranks, host, deadline_s);
        goto cleanup;
    }
    if (!lo[2 * n]) {
        st = pb_usage_error("rank %d of %d on %s: another rank cannot run (it says why); every rank stops", rank,
                            ranks, host);
        goto cleanup;
    }
    int first = 0;
    while (first < n && lo[2 * first] == hi[2 * first] && lo[2 * first + 1] == hi[2 * first + 1]) first++;
    if (first == n) goto cleanup;
    /* which rank holds another value than rank 0's, and both values: every
     * rank's text of the first differing one */
    *differs = true;
    snprintf(mine, sizeof mine, "%s", texts[first]);
    all = calloc((size_t)ranks, TEXT);
    if (!all) {
        st = pb_error(PB_ERR_NOMEM, "host allocation for the configuration agreement failed");
        goto cleanup;
    }
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Iallgather(mine, TEXT, MPI_CHAR, all, TEXT, MPI_CHAR, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) {
        st = pb_error(PB_ERR_COMM, "MPI_Iallgather failed (error %d)", rc);
        goto cleanup;
    }
    if ((st = wait_deadline(&req, deadline_s, &late)) != PB_OK) goto cleanup;
    if (late) {
        st = pb_user_error(PB_ERR_COMM, "rank %d of %d on %s: the ranks did not all send their %s within %g s "
                                        "(--timeout)",
                           rank, ranks, host, names[first], deadline_s);
        goto cleanup;
    }
    int other = first_other(all, ranks, TEXT);
    char also[512];
    also_differing(lo, hi, names, first, n, also, sizeof also);
    st = pb_usage_error("the %d ranks were started with different configurations: rank %d's %s %s differs from "
                        "rank 0's %s%s%s%s; every rank needs the same flags",
                        ranks, other, names[first], all + (size_t)other * TEXT, all, also[0] ? " (also differing: " : "",
                        also, also[0] ? ")" : "");
cleanup:
    free(v);
    free(all);
    return st;
}
