#define _POSIX_C_SOURCE 200809L
#include "signals.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"
#include "timer.h"

static volatile sig_atomic_t caught;

static void on_signal(int sig)
{
    if (!caught) caught = sig;
}

void pb_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* blocking calls go on; the loop looks between steps */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int pb_signals_caught(void) { return caught; }
void pb_signals_set(int sig) { caught = sig; }
int pb_signals_exit_code(void) { return caught ? 128 + caught : 0; }

uint64_t pb_hash_bytes(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* --- agreements between the ranks --------------------------------------------- */

#ifdef PB_HAVE_MPI
#include <mpi.h>

/* An Iallreduce of n longs on MPI_COMM_WORLD, waited for until deadline_s:
 * spins briefly (the usual case: the ranks arrive together at a step
 * boundary), then sleeps between tests. Called between steps, when the
 * comm thread is idle (MPI_THREAD_SERIALIZED). */
static pb_status iallreduce_deadline(long *in, long *out, int n, MPI_Op op, double deadline_s, bool *late)
{
    MPI_Request req = MPI_REQUEST_NULL;
    *late = false;
    int rc = MPI_Iallreduce(in, out, n, MPI_LONG, op, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) return pb_error(PB_ERR_COMM, "MPI_Iallreduce failed (error %d)", rc);
    double t0 = pb_now_ms();
    for (long polls = 0;; polls++) {
        int done = 0;
        rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
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

static void who(int *rank, int *ranks, char *host, size_t len)
{
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, ranks);
    if (gethostname(host, len) != 0) snprintf(host, len, "unknown");
    host[len - 1] = '\0';
}

pb_status pb_signals_agree(int *sig, double deadline_s, int64_t step)
{
    long in = *sig, out = 0;
    bool late = false;
    pb_status st = iallreduce_deadline(&in, &out, 1, MPI_MAX, deadline_s, &late);
    if (st != PB_OK) return st;
    if (late) {
        int rank = 0, ranks = 0;
        char host[256], why[640];
        who(&rank, &ranks, host, sizeof host);
        /* who holds the boundary up, from the node's progress slots */
        pb_progress_describe(why, sizeof why);
        return pb_user_error(PB_ERR_COMM,
                             "rank %d of %d on %s: the ranks did not all reach the boundary before step %lld "
                             "within %g s (--timeout): %s",
                             rank, ranks, host, (long long)step, deadline_s, why);
    }
    *sig = (int)out;
    return PB_OK;
}

pb_status pb_signals_agree_hash(uint64_t hash, bool usable, double deadline_s)
{
    /* two halves of 32 bits each fit a long everywhere: MIN and MAX of each,
     * and the MIN of usable */
    long v[3] = {(long)(hash >> 32), (long)(hash & 0xffffffffUL), usable ? 1 : 0}, lo[3], hi[3];
    bool late = false;
    pb_status st = iallreduce_deadline(v, lo, 3, MPI_MIN, deadline_s, &late);
    if (st == PB_OK && !late) st = iallreduce_deadline(v, hi, 3, MPI_MAX, deadline_s, &late);
    if (st != PB_OK) return st;
    int rank = 0, ranks = 0;
    char host[256];
    who(&rank, &ranks, host, sizeof host);
    if (late)
        return pb_user_error(PB_ERR_COMM,
                             "rank %d of %d on %s: the ranks did not all compare configurations within %g s "
                             "(--timeout)",
                             rank, ranks, host, deadline_s);
    if (!lo[2])
        return pb_usage_error("rank %d of %d on %s: another rank cannot run (it says why); every rank stops",
                              rank, ranks, host);
    if (lo[0] != hi[0] || lo[1] != hi[1])
        return pb_usage_error("rank %d of %d on %s: the ranks were started with different configurations "
                              "(configuration hash %016llx here); every rank needs the same flags",
                              rank, ranks, host, (unsigned long long)hash);
    return PB_OK;
}

#else /* built without MPI: one process, nothing to agree with */

pb_status pb_signals_agree(int *sig, double deadline_s, int64_t step)
{
    (void)sig;
    (void)deadline_s;
    (void)step;
    return PB_OK;
}

pb_status pb_signals_agree_hash(uint64_t hash, bool usable, double deadline_s)
{
    (void)hash;
    (void)usable;
    (void)deadline_s;
    return PB_OK;
}
#endif
