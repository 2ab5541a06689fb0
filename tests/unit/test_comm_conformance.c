/* Comm conformance: one suite over `const pb_comm *`, run against every comm.
 *
 * The suite (cs_run) is one participant's side: it joins a group with the
 * comm's init, runs every operation of the ops table (allreduce scaled and
 * not, broadcast from several roots, reduce to several roots, send/recv
 * around a ring and several messages to one peer matched in order,
 * allgather and reduce_scatter out of place and in place (NCCL's layout),
 * several operations outstanding waited in reverse order) over a ladder of
 * sizes (1, 3, 4097 and 262147 elements or bytes, one 16777215-float
 * allreduce: 64 MiB less 4 bytes), then the failures: a
 * participant that never posts makes the others' waits fail within the
 * deadline with the comm's message naming it; destroy with operations
 * outstanding; abort and destroy waking waiters, where the comm has abort.
 * Split (3 and 4 participants, where the comm has it): three splits of the
 * world (color rank % 2; color rank / 2 with keys reversed; one participant
 * with no color and the rest with equal keys), each group running every
 * collective at two sizes (values and roots by the group's ranks, so a
 * wrong key order fails) beside a world allreduce outstanding; on 4, the
 * failures within the groups of the first (destroy, a late participant,
 * abort), an abort of one group that leaves its sibling and the world
 * running, and a split whose last participant comes late.
 * Values are small integers, so every sum is exact in fp32 whatever its
 * order and results are compared bit for bit; a guard after every buffer
 * must come back untouched, and an out-of-place operation's input too.
 * Payloads moved as bytes include bf16 bit patterns (dp broadcasts the bf16
 * compute copy that way).
 *
 * Instances:
 * - `local` (kernels/comm_local.c): a thread per participant, 1 to 4
 *   participants, on the cpu backend and on a "staged" cpu backend that
 *   claims its memory is not the host's (the path cuda takes: peers' values
 *   copied into scratch, buffers uploaded and downloaded by the suite);
 * - `mpi` (kernels/comm_mpi.c): this program re-executed under
 *   `mpirun -np 2|3|4 --oversubscribe` as `--rank mpi`, one participant per
 *   rank on the cpu backend; each rank prints one line, checked here;
 * - `nccl` (kernels/cuda/comm_nccl.c): `--rank nccl`, every rank on cuda
 *   device 0 (NCCL's one-GPU multi-rank mode), from tests/gpu/device-check.sh.
 *
 * What differs between comms is stated, not skipped silently (cs_caps):
 * waiting again on a request whose deadline passed (not `nccl`, which
 * aborts its communicator), the words that name a missing participant. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "harness/config.h"
#include "kernels/progress.h"
#include "harness/timer.h"
#include "kernels/comm_local.h"
#include "kernels/comm_mpi.h"
#include "kernels/comm_nccl.h"

#define GUARD 64          /* bytes after every buffer that no operation may touch */
#define GUARD_BYTE 0xA5
#define WAIT_S 30.0       /* a wait that should succeed */
#define LATE_DEADLINE_S 0.2
#define BIG_FLOATS ((size_t)16777215) /* 64 MiB less one float: the one large, odd case */
#define MAX_PARTS 4

static const size_t ladder[] = {1, 3, 4097, 262147}; /* elements or bytes; the last is 1 MiB + odd */
#define LADDER (sizeof ladder / sizeof ladder[0])

/* What a comm offers beyond the common contract (comm.h). */
typedef struct cs_caps {
    bool rewait;        /* a request whose deadline passed can be waited for again */
    /* a deadline message names the missing participant by its world rank
     * (the ranks' progress slots), not by its rank in a split group */
    bool world_names;
    /* printf format naming participant %d as missing in a deadline message */
    const char *missing_fmt;
} cs_caps;

/* One participant. */
typedef struct cs_env cs_env;
struct cs_env {
    const pb_comm *comm;
    cs_caps caps;
    const pb_backend *be;
    const pb_comm_opts *opts;
    pb_device *dev;
    pb_comm_ctx *ctx;
    int rank, ranks;
    /* a split group's participant: joins by splitting parent's ctx with
     * color and key; rank and ranks are what the split must give it */
    struct cs_env *parent;
    int color, key;
    int late_world;     /* the world rank of participant ranks - 1 */
    void *world;        /* local: the threads' local_world (its barrier) */
    void *stage;        /* host copy of a buffer where device memory is not host memory */
    size_t stage_bytes;
    int cases;          /* cases passed */
    char what[160];     /* the case running, for messages */
    char err[2048];
};

#define CS_FAIL(e, ...)                                                                        \
    do {                                                                                       \
        char m_[1024];                                                                         \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                  \
        snprintf((e)->err, sizeof (e)->err, "%s, participant %d of %d, %s: %s", (e)->comm->name, \
                 (e)->rank, (e)->ranks, (e)->what, m_);                                        \
        return false;                                                                          \
    } while (0)

static bool cs_ok(cs_env *e, pb_status st, const char *call)
{
    if (st == PB_OK) return true;
    const char *m = pb_error_message();
    snprintf(e->err, sizeof e->err, "%s, participant %d of %d, %s: %s failed: %s", e->comm->name, e->rank, e->ranks,
             e->what, call, m ? m : "(no message)");
    pb_error_clear();
    return false;
}

#define CS_TRY(e, call)                           \
    do {                                          \
        if (!cs_ok((e), (call), #call)) return false; \
    } while (0)

/* --- buffers: device memory with a guard, read and written through the host -- */

static bool cs_alloc(cs_env *e, size_t bytes, void **d)
{
    *d = NULL;
    CS_TRY(e, e->be->alloc(e->dev, bytes + GUARD, d));
    if (!e->be->host_is_device && e->stage_bytes < bytes + GUARD) {
        free(e->stage);
        e->stage = malloc(bytes + GUARD);
        e->stage_bytes = e->stage ? bytes + GUARD : 0;
        if (!e->stage) CS_FAIL(e, "host allocation of %zu bytes failed", bytes + GUARD);
    }
    return true;
}

static void cs_free(cs_env *e, void *d)
{
    if (d) e->be->free(e->dev, d);
}

/* Where to write d's new contents (d itself, or the host stage). */
static void *cs_host(cs_env *e, void *d) { return e->be->host_is_device ? d : e->stage; }

/* Sets d's guard and makes the host contents d's. */
static bool cs_put(cs_env *e, void *d, size_t bytes)
{
    unsigned char *h = cs_host(e, d);
    memset(h + bytes, GUARD_BYTE, GUARD);
    if (!e->be->host_is_device) CS_TRY(e, e->be->upload(e->dev, d, h, bytes + GUARD));
    return true;
}

/* d's contents on the host, its guard checked (NULL and e->err on failure). */
static const void *cs_get(cs_env *e, const void *d, size_t bytes, const char *name)
{
    const unsigned char *h = d;
    if (!e->be->host_is_device) {
        if (!cs_ok(e, e->be->download(e->dev, e->stage, d, bytes + GUARD), "download")) return NULL;
        h = e->stage;
    }
    for (size_t i = 0; i < GUARD; i++)
        if (h[bytes + i] != GUARD_BYTE) {
            snprintf(e->err, sizeof e->err,
                     "%s, participant %d of %d, %s: %s's guard byte %zu past its %zu bytes was written (0x%02x)",
                     e->comm->name, e->rank, e->ranks, e->what, name, i, bytes, h[bytes + i]);
            return NULL;
        }
    return h;
}

/* --- values: small integers, so every sum is exact in any order -------------- */

static float fval(int r, size_t i, int salt) { return (float)((i + (size_t)salt) % 61 + 7 * (size_t)r + 1); }

static float fsum(int ranks, size_t i, int salt)
{
    float s = 0.0f;
    for (int r = 0; r < ranks; r++) s += fval(r, i, salt);
    return s;
}

static uint8_t bval(int r, size_t i, int salt) { return (uint8_t)(i * 31 + (size_t)r * 17 + (size_t)salt * 5 + 3); }

/* bf16 bit patterns of small integers: what dp's broadcast of a bf16 copy carries */
static uint16_t bf16val(int r, size_t i)
{
    float f = (float)((i % 251) + (size_t)r);
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16);
}

static void fill_f(float *h, size_t n, int r, int salt)
{
    for (size_t i = 0; i < n; i++) h[i] = fval(r, i, salt);
}

static void fill_b(uint8_t *h, size_t n, int r, int salt)
{
    for (size_t i = 0; i < n; i++) h[i] = bval(r, i, salt);
}

/* the first differing float, bit for bit */
static bool check_f(cs_env *e, const float *got, size_t n, const char *name, float (*want)(const cs_env *, size_t, const void *),
                    const void *arg)
{
    for (size_t i = 0; i < n; i++) {
        float w = want(e, i, arg);
        if (memcmp(&got[i], &w, sizeof w) != 0)
            CS_FAIL(e, "%s[%zu] is %.9g, want %.9g", name, i, (double)got[i], (double)w);
    }
    return true;
}

static bool check_b(cs_env *e, const uint8_t *got, size_t n, const char *name, int r, int salt)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != bval(r, i, salt)) CS_FAIL(e, "%s[%zu] is %u, want %u", name, i, got[i], bval(r, i, salt));
    return true;
}

typedef struct fsum_arg {
    int salt;
    float scale;
    size_t offset; /* index of element 0 in the full vector */
} fsum_arg;

static float want_sum(const cs_env *e, size_t i, const void *arg)
{
    const fsum_arg *a = arg;
    return fsum(e->ranks, a->offset + i, a->salt) * a->scale;
}

static float want_own(const cs_env *e, size_t i, const void *arg)
{
    const fsum_arg *a = arg;
    return fval(e->rank, a->offset + i, a->salt);
}

static bool cs_wait(cs_env *e, pb_comm_req *req) { return cs_ok(e, e->comm->wait(e->ctx, req, WAIT_S), "wait"); }

/* --- the cases ------------------------------------------------------------------- */

static bool case_allreduce(cs_env *e, size_t n, float scale, int salt)
{
    void *d = NULL;
    pb_comm_req *req = NULL;
    snprintf(e->what, sizeof e->what, "allreduce of %zu floats, scale %g", n, (double)scale);
    if (!cs_alloc(e, n * sizeof(float), &d)) return false;
    fill_f(cs_host(e, d), n, e->rank, salt);
    bool ok = cs_put(e, d, n * sizeof(float)) && cs_ok(e, e->comm->allreduce(e->ctx, d, n, scale, &req), "allreduce") &&
              cs_wait(e, req);
    const float *h = ok ? cs_get(e, d, n * sizeof(float), "buf") : NULL;
    ok = h && check_f(e, h, n, "buf", want_sum, &(fsum_arg){salt, scale, 0});
    cs_free(e, d);
    return ok;
}

static bool case_broadcast(cs_env *e, size_t bytes, int root, bool bf16)
{
    void *d = NULL;
    pb_comm_req *req = NULL;
    snprintf(e->what, sizeof e->what, "broadcast of %zu bytes%s from %d", bytes, bf16 ? " (bf16)" : "", root);
    if (!cs_alloc(e, bytes, &d)) return false;
    uint8_t *h = cs_host(e, d);
    if (bf16)
        for (size_t i = 0; i < bytes / 2; i++) {
            uint16_t v = e->rank == root ? bf16val(root, i) : 0xFFFF; /* non-roots: NaN patterns */
            memcpy(h + 2 * i, &v, 2);
        }
    else
        fill_b(h, bytes, e->rank, 1);
    bool ok = cs_put(e, d, bytes) && cs_ok(e, e->comm->broadcast(e->ctx, d, bytes, root, &req), "broadcast") &&
              cs_wait(e, req);
    const uint8_t *g = ok ? cs_get(e, d, bytes, "buf") : NULL;
    ok = g != NULL;
    if (ok && bf16) {
        for (size_t i = 0; ok && i < bytes / 2; i++) {
            uint16_t v, w = bf16val(root, i);
            memcpy(&v, g + 2 * i, 2);
            if (v != w) {
                snprintf(e->err, sizeof e->err, "%s, participant %d of %d, %s: bf16 [%zu] is 0x%04x, want 0x%04x",
                         e->comm->name, e->rank, e->ranks, e->what, i, v, w);
                ok = false;
            }
        }
    } else if (ok) {
        ok = check_b(e, g, bytes, "buf", root, 1);
    }
    cs_free(e, d);
    return ok;
}

static bool case_reduce(cs_env *e, size_t n, int root)
{
    void *d = NULL;
    pb_comm_req *req = NULL;
    snprintf(e->what, sizeof e->what, "reduce of %zu floats to %d", n, root);
    if (!cs_alloc(e, n * sizeof(float), &d)) return false;
    fill_f(cs_host(e, d), n, e->rank, 2);
    bool ok = cs_put(e, d, n * sizeof(float)) && cs_ok(e, e->comm->reduce(e->ctx, d, n, root, &req), "reduce") &&
              cs_wait(e, req);
    /* only the root's buffer is defined afterwards (as NCCL has it); the
     * others' guards still are */
    const float *h = ok ? cs_get(e, d, n * sizeof(float), "buf") : NULL;
    ok = h && (e->rank != root || check_f(e, h, n, "buf", want_sum, &(fsum_arg){2, 1.0f, 0}));
    cs_free(e, d);
    return ok;
}

/* Each participant sends to the next and receives from the previous, both
 * posted before either is waited for (sends first): no comm may need the
 * receive posted first. With several messages, they go to one peer and
 * match in the order posted. */
static bool case_ring(cs_env *e, const size_t *sizes, int count)
{
    enum { MAXM = 4 };
    void *out[MAXM] = {0}, *in[MAXM] = {0};
    pb_comm_req *sreq[MAXM] = {0}, *rreq[MAXM] = {0};
    int next = (e->rank + 1) % e->ranks, prev = (e->rank + e->ranks - 1) % e->ranks;
    bool ok = true;
    snprintf(e->what, sizeof e->what, "send/recv around the ring, %d message%s, the first of %zu bytes", count,
             count == 1 ? "" : "s", sizes[0]);
    for (int m = 0; ok && m < count; m++) {
        ok = cs_alloc(e, sizes[m], &out[m]) && cs_alloc(e, sizes[m], &in[m]);
        if (!ok) break;
        fill_b(cs_host(e, out[m]), sizes[m], e->rank, 10 + m);
        ok = cs_put(e, out[m], sizes[m]);
        if (!ok) break;
        memset(cs_host(e, in[m]), 0, sizes[m]);
        ok = cs_put(e, in[m], sizes[m]);
    }
    for (int m = 0; ok && m < count; m++) ok = cs_ok(e, e->comm->send(e->ctx, out[m], sizes[m], next, &sreq[m]), "send");
    for (int m = 0; ok && m < count; m++) ok = cs_ok(e, e->comm->recv(e->ctx, in[m], sizes[m], prev, &rreq[m]), "recv");
    for (int m = 0; ok && m < count; m++) ok = cs_wait(e, rreq[m]);
    for (int m = 0; ok && m < count; m++) ok = cs_wait(e, sreq[m]);
    for (int m = 0; ok && m < count; m++) {
        const uint8_t *g = cs_get(e, in[m], sizes[m], "recv buffer");
        ok = g && check_b(e, g, sizes[m], "recv buffer", prev, 10 + m);
        if (!ok) break;
        g = cs_get(e, out[m], sizes[m], "send buffer");
        ok = g && check_b(e, g, sizes[m], "send buffer", e->rank, 10 + m);
    }
    for (int m = 0; m < count; m++) {
        cs_free(e, out[m]);
        cs_free(e, in[m]);
    }
    return ok;
}

static bool case_allgather(cs_env *e, size_t bytes, bool in_place)
{
    void *in = NULL, *out = NULL;
    pb_comm_req *req = NULL;
    size_t total = (size_t)e->ranks * bytes;
    snprintf(e->what, sizeof e->what, "allgather of %zu bytes each%s", bytes, in_place ? ", in place" : "");
    bool ok = cs_alloc(e, total, &out) && (in_place || cs_alloc(e, bytes, &in));
    if (ok) {
        uint8_t *h = cs_host(e, out);
        memset(h, 0, total);
        if (in_place) fill_b(h + (size_t)e->rank * bytes, bytes, e->rank, 3);
        ok = cs_put(e, out, total);
    }
    if (ok && !in_place) {
        fill_b(cs_host(e, in), bytes, e->rank, 3);
        ok = cs_put(e, in, bytes);
    }
    const void *src = in_place ? (const char *)out + (size_t)e->rank * bytes : in;
    ok = ok && cs_ok(e, e->comm->allgather(e->ctx, src, out, bytes, &req), "allgather") && cs_wait(e, req);
    const uint8_t *g = ok ? cs_get(e, out, total, "out") : NULL;
    ok = g != NULL;
    for (int r = 0; ok && r < e->ranks; r++) ok = check_b(e, g + (size_t)r * bytes, bytes, "out chunk", r, 3);
    if (ok && !in_place) {
        g = cs_get(e, in, bytes, "in");
        ok = g && check_b(e, g, bytes, "in (read only)", e->rank, 3);
    }
    cs_free(e, in);
    cs_free(e, out);
    return ok;
}

static bool case_reduce_scatter(cs_env *e, size_t n, bool in_place)
{
    void *in = NULL, *out = NULL;
    pb_comm_req *req = NULL;
    size_t total = (size_t)e->ranks * n;
    snprintf(e->what, sizeof e->what, "reduce_scatter of %zu floats each%s", n, in_place ? ", in place" : "");
    bool ok = cs_alloc(e, total * sizeof(float), &in) && (in_place || cs_alloc(e, n * sizeof(float), &out));
    if (ok) {
        fill_f(cs_host(e, in), total, e->rank, 4);
        ok = cs_put(e, in, total * sizeof(float));
    }
    if (ok && !in_place) {
        memset(cs_host(e, out), 0, n * sizeof(float));
        ok = cs_put(e, out, n * sizeof(float));
    }
    float *dst = in_place ? (float *)in + (size_t)e->rank * n : out;
    ok = ok && cs_ok(e, e->comm->reduce_scatter(e->ctx, in, dst, n, &req), "reduce_scatter") && cs_wait(e, req);
    fsum_arg mine = {4, 1.0f, (size_t)e->rank * n};
    if (ok && in_place) {
        const float *g = cs_get(e, in, total * sizeof(float), "in");
        ok = g && check_f(e, g + (size_t)e->rank * n, n, "own chunk", want_sum, &mine);
    } else if (ok) {
        const float *g = cs_get(e, out, n * sizeof(float), "out");
        ok = g && check_f(e, g, n, "out", want_sum, &mine);
        g = ok ? cs_get(e, in, total * sizeof(float), "in") : NULL;
        ok = ok && g && check_f(e, g, total, "in (read only)", want_own, &(fsum_arg){4, 1.0f, 0});
    }
    cs_free(e, in);
    cs_free(e, out);
    return ok;
}

/* ddp's pattern: several buckets' all-reduces outstanding, then waited for
 * (here the last first), each its own buffer and size. */
static bool case_outstanding(cs_env *e)
{
    enum { K = 8 };
    void *d[K] = {0};
    pb_comm_req *req[K] = {0};
    bool ok = true;
    snprintf(e->what, sizeof e->what, "%d allreduces outstanding, waited last first", K);
    for (int k = 0; ok && k < K; k++) {
        size_t n = 1 + 97 * (size_t)k;
        ok = cs_alloc(e, n * sizeof(float), &d[k]);
        if (!ok) break;
        fill_f(cs_host(e, d[k]), n, e->rank, 20 + k);
        ok = cs_put(e, d[k], n * sizeof(float)) &&
             cs_ok(e, e->comm->allreduce(e->ctx, d[k], n, 1.0f, &req[k]), "allreduce");
    }
    for (int k = K - 1; ok && k >= 0; k--) ok = cs_wait(e, req[k]);
    for (int k = 0; ok && k < K; k++) {
        size_t n = 1 + 97 * (size_t)k;
        const float *h = cs_get(e, d[k], n * sizeof(float), "buf");
        ok = h && check_f(e, h, n, "buf", want_sum, &(fsum_arg){20 + k, 1.0f, 0});
    }
    for (int k = 0; k < K; k++) cs_free(e, d[k]);
    return ok;
}

static void cs_sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* call's st after ms: PB_ERR_COMM in about LATE_DEADLINE_S, the message
 * naming participant late as its comm names a missing one; clears the error. */
static bool failed_late(cs_env *e, const char *call, pb_status st, double ms, int late)
{
    bool ok = true;
    const char *msg = pb_error_message();
    char who[64], within[32];
    /* every instance names how its comm names a missing participant */
    snprintf(who, sizeof who, e->caps.missing_fmt ? e->caps.missing_fmt : "%d",
             e->caps.world_names ? e->late_world : late);
    snprintf(within, sizeof within, "within %g s", LATE_DEADLINE_S);
    if (st != PB_ERR_COMM) {
        snprintf(e->err, sizeof e->err, "%s, participant %d, %s: %s returned %d, want PB_ERR_COMM (%d)",
                 e->comm->name, e->rank, e->what, call, (int)st, (int)PB_ERR_COMM);
        ok = false;
    } else if (ms < LATE_DEADLINE_S * 1e3 * 0.95 || ms > LATE_DEADLINE_S * 1e3 + 5000.0) {
        snprintf(e->err, sizeof e->err, "%s, participant %d, %s: a %g s deadline failed after %.0f ms",
                 e->comm->name, e->rank, e->what, LATE_DEADLINE_S, ms);
        ok = false;
    } else if (!msg || !strstr(msg, who) || !strstr(msg, within)) {
        snprintf(e->err, sizeof e->err, "%s, participant %d, %s: the message lacks '%s' or '%s': %s",
                 e->comm->name, e->rank, e->what, who, within, msg ? msg : "(none)");
        ok = false;
    }
    pb_error_clear();
    return ok;
}

/* The last participant posts nothing until the others' deadline has passed:
 * their waits fail with PB_ERR_COMM in about the deadline, the message
 * naming it. Where the comm allows it, it then posts and every wait (the
 * timed-out one again) completes with the right sum. */
static bool case_deadline(cs_env *e, int step)
{
    int late = e->ranks - 1;
    size_t n = 5;
    void *d = NULL;
    pb_comm_req *req = NULL;
    snprintf(e->what, sizeof e->what, "allreduce whose participant %d comes late", late);
    if (!cs_alloc(e, n * sizeof(float), &d)) return false;
    fill_f(cs_host(e, d), n, e->rank, 5);
    bool ok = cs_put(e, d, n * sizeof(float));
    if (ok && e->rank == late) {
        cs_sleep_s(LATE_DEADLINE_S + 0.8); /* the others' waits end meanwhile */
        pb_progress_set_step(step);
        if (e->caps.rewait)
            ok = cs_ok(e, e->comm->allreduce(e->ctx, d, n, 1.0f, &req), "allreduce") && cs_wait(e, req);
    } else if (ok) {
        pb_progress_set_step(step); /* the late one is behind: the message names it */
        ok = cs_ok(e, e->comm->allreduce(e->ctx, d, n, 1.0f, &req), "allreduce");
        double t0 = pb_now_ms();
        pb_status st = ok ? e->comm->wait(e->ctx, req, LATE_DEADLINE_S) : PB_OK;
        ok = ok && failed_late(e, "the wait", st, pb_now_ms() - t0, late);
        if (ok && e->caps.rewait) ok = cs_wait(e, req);
    }
    if (ok && e->caps.rewait) {
        const float *h = cs_get(e, d, n * sizeof(float), "buf");
        ok = h && check_f(e, h, n, "buf", want_sum, &(fsum_arg){5, 1.0f, 0});
    }
    cs_free(e, d);
    return ok;
}

static bool cs_join(cs_env *e)
{
    e->ctx = NULL;
    if (!e->parent) return cs_ok(e, e->comm->init(e->opts, e->be, e->dev, e->rank, e->ranks, &e->ctx), "init");
    snprintf(e->what, sizeof e->what, "split with color %d, key %d", e->color, e->key);
    if (!cs_ok(e, e->comm->split(e->parent->ctx, e->color, e->key, WAIT_S, &e->ctx), "split")) return false;
    if (!e->ctx) CS_FAIL(e, "split gave no ctx to a participant with color %d", e->color);
    return true;
}

static void cs_leave(cs_env *e)
{
    if (e->ctx) e->comm->destroy(e->ctx);
    e->ctx = NULL;
}

/* Every participant posts and nobody waits: destroy still returns, and a
 * new group forms after it. The buffers outlive the destroy. Threads post
 * before any leaves (`local`'s destroy leaves at once: a participant that
 * leaves before the others posted aborts the group, case_abort); ranks
 * have no barrier outside the comm while it has work. */
static bool case_destroy_outstanding(cs_env *e, void (*sync)(cs_env *))
{
    size_t n = 4097;
    void *d = NULL;
    pb_comm_req *req = NULL;
    snprintf(e->what, sizeof e->what, "destroy with an allreduce of %zu floats outstanding", n);
    if (!cs_alloc(e, n * sizeof(float), &d)) return false;
    fill_f(cs_host(e, d), n, e->rank, 6);
    bool ok = cs_put(e, d, n * sizeof(float)) && cs_ok(e, e->comm->allreduce(e->ctx, d, n, 1.0f, &req), "allreduce");
    if (sync) sync(e);
    cs_leave(e);
    ok = ok && cs_join(e);
    cs_free(e, d);
    return ok;
}

/* Where the comm has abort: the last participant never posts; participant
 * 0 aborts after the others posted; every wait fails at once (well before
 * its 30 s deadline) saying the group was aborted. Then destroy of a
 * participant that did not post wakes the others of the next group. */
static bool case_abort(cs_env *e, void (*sync)(cs_env *))
{
    size_t n = 3;
    void *d = NULL;
    pb_comm_req *req = NULL;
    snprintf(e->what, sizeof e->what, "abort with an allreduce outstanding");
    if (!cs_alloc(e, n * sizeof(float), &d)) return false;
    bool ok = cs_put(e, d, n * sizeof(float));
    int late = e->ranks - 1;
    for (int round = 0; ok && round < 2; round++) {
        if (e->rank != late) ok = cs_ok(e, e->comm->allreduce(e->ctx, d, n, 1.0f, &req), "allreduce");
        sync(e); /* every part that will come is posted */
        if (round == 0 && e->rank == 0) e->comm->abort(e->ctx);
        if (round == 1 && e->rank == late) cs_leave(e);
        if (ok && e->rank != late) {
            double t0 = pb_now_ms();
            pb_status st = e->comm->wait(e->ctx, req, WAIT_S);
            double ms = pb_now_ms() - t0;
            const char *msg = pb_error_message();
            if (st != PB_ERR_COMM || ms > 5000.0 || !msg || !strstr(msg, "aborted")) {
                snprintf(e->err, sizeof e->err,
                         "%s, participant %d, %s: after %s the wait returned %d in %.0f ms, want PB_ERR_COMM at once "
                         "saying 'aborted': %s",
                         e->comm->name, e->rank, e->what, round == 0 ? "abort" : "the late one's destroy", (int)st, ms,
                         msg ? msg : "(none)");
                ok = false;
            }
            pb_error_clear();
        }
        sync(e);
        cs_leave(e);
        ok = ok && cs_join(e);
        snprintf(e->what, sizeof e->what, "destroy of the participant that never posted");
    }
    cs_free(e, d);
    return ok;
}

#define CASE(call)                             \
    do {                                       \
        pb_progress_set_step((*step)++);       \
        if (!(call)) return false;             \
        e->cases++;                            \
    } while (0)

/* Every collective of one size (and salt) on e's group. */
static bool cs_collectives(cs_env *e, size_t n, int salt, int *step)
{
    CASE(case_allreduce(e, n, 1.0f, salt));
    CASE(case_allreduce(e, n, 0.5f, salt + 1));
    CASE(case_broadcast(e, n, e->ranks - 1, false));
    CASE(case_broadcast(e, n, 0, false));
    CASE(case_reduce(e, n, e->ranks - 1));
    CASE(case_reduce(e, n, 0));
    if (e->ranks > 1) CASE(case_ring(e, &n, 1));
    CASE(case_allgather(e, n, false));
    CASE(case_reduce_scatter(e, n, false));
    CASE(case_allgather(e, n, true));
    CASE(case_reduce_scatter(e, n, true));
    return true;
}

/* The failures on e's group: destroy with work outstanding, a late
 * participant, abort (where the comm has it and sync is a barrier). */
static bool cs_failures(cs_env *e, void (*sync)(cs_env *), int *step)
{
    CASE(case_destroy_outstanding(e, sync));
    if (e->ranks > 1) CASE(case_deadline(e, *step));
    if (e->ranks > 1 && e->comm->abort && sync) CASE(case_abort(e, sync));
    return true;
}

/* How the splits below divide the participants of a world of `ranks`. */
typedef struct cs_scheme {
    const char *name;
    int (*color)(int rank);
    int (*key)(int rank);
    /* the failure cases too: only on 4 participants, whose two groups of
     * two take the same path through the barriers */
    bool failures;
} cs_scheme;

static int color_odd(int r) { return r % 2; }
static int color_pair(int r) { return r / 2; }
static int color_not_first(int r) { return r == 0 ? PB_COMM_SPLIT_NONE : 0; }
static int key_rank(int r) { return r; }
static int key_reverse(int r) { return -r; }
static int key_tie(int r) { (void)r; return 0; }

static const cs_scheme schemes[] = {
    {"color rank % 2, key rank", color_odd, key_rank, true},
    {"color rank / 2, key -rank (reversed)", color_pair, key_reverse, false},
    {"rank 0 in none, the rest color 0 with equal keys (ties by rank)", color_not_first, key_tie, false},
};

/* MPI_Comm_split's order: participant `rank`'s place among those of its
 * color, by key, then by rank; -1 for none. *size: the group's size. */
static int split_place(const cs_scheme *sc, int rank, int ranks, int *size)
{
    int color = sc->color(rank), key = sc->key(rank), place = 0;
    *size = 0;
    if (color < 0) return -1;
    for (int r = 0; r < ranks; r++) {
        if (sc->color(r) != color) continue;
        (*size)++;
        place += sc->key(r) < key || (sc->key(r) == key && r < rank);
    }
    return place;
}

/* Participant e (a world group) in each scheme: the collectives on its
 * split group (the values and roots are the group's ranks, so a wrong
 * order fails them), an allreduce on the world with one on the group
 * outstanding, and on 4 participants the failures within a group. */
static bool cs_splits(cs_env *e, void (*sync)(cs_env *), int *step)
{
    for (size_t k = 0; k < sizeof schemes / sizeof schemes[0]; k++) {
        const cs_scheme *sc = &schemes[k];
        int size = 0, place = split_place(sc, e->rank, e->ranks, &size);
        cs_env sub = {.comm = e->comm, .caps = e->caps, .be = e->be, .opts = e->opts, .dev = e->dev,
                      .rank = place, .ranks = size, .parent = e, .color = sc->color(e->rank),
                      .key = sc->key(e->rank), .world = e->world};
        for (int r = 0; r < e->ranks; r++) {
            int sz = 0;
            if (sc->color(r) == sub.color && split_place(sc, r, e->ranks, &sz) == size - 1) sub.late_world = r;
        }
        bool ok = true;
        if (place < 0) { /* in no group: the split's collective, and the world's below */
            snprintf(e->what, sizeof e->what, "split with color PB_COMM_SPLIT_NONE");
            ok = cs_ok(e, e->comm->split(e->ctx, PB_COMM_SPLIT_NONE, sub.key, WAIT_S, &sub.ctx), "split");
            if (ok && sub.ctx) {
                snprintf(e->err, sizeof e->err, "a participant with PB_COMM_SPLIT_NONE got a ctx");
                ok = false;
            }
        } else {
            ok = cs_join(&sub) && cs_collectives(&sub, 1, 30, step) && cs_collectives(&sub, 4097, 32, step) &&
                 case_outstanding(&sub);
        }
        /* the world's operations go on beside the group's */
        pb_comm_req *wreq = NULL;
        float *w = NULL;
        if (ok) {
            snprintf(e->what, sizeof e->what, "a world allreduce outstanding over one of the group");
            ok = cs_alloc(e, sizeof(float), (void **)&w);
            if (ok) {
                fill_f(cs_host(e, w), 1, e->rank, 40);
                ok = cs_put(e, w, sizeof(float)) && cs_ok(e, e->comm->allreduce(e->ctx, w, 1, 1.0f, &wreq), "allreduce");
            }
        }
        ok = ok && (place < 0 || case_allreduce(&sub, 3, 1.0f, 41)) && cs_wait(e, wreq);
        const float *h = ok ? cs_get(e, w, sizeof(float), "world buf") : NULL;
        ok = ok && h && check_f(e, h, 1, "world buf", want_sum, &(fsum_arg){40, 1.0f, 0});
        cs_free(e, w);
        /* not on nccl (no rewait: a deadline aborts the communicator), whose
         * split groups' failures have not run on a GPU yet */
        if (ok && place >= 0 && sc->failures && e->ranks == 4 && e->caps.rewait) ok = cs_failures(&sub, sync, step);
        if (!ok) {
            char why[2048];
            snprintf(why, sizeof why, "%s", e->err[0] ? e->err : sub.err);
            snprintf(e->err, sizeof e->err, "split (%s): %.1900s", sc->name, why);
        }
        e->cases += sub.cases;
        cs_leave(&sub);
        free(sub.stage);
        if (!ok) return false;
    }
    return true;
}

/* With abort and 4 participants: group {0, 2} (color 0) is aborted by its
 * participant 0 while its other has not posted, which then cannot post;
 * group {1, 3} and the world run on. */
static bool case_split_abort(cs_env *e, void (*sync)(cs_env *))
{
    cs_env sub = {.comm = e->comm, .caps = e->caps, .be = e->be, .opts = e->opts, .dev = e->dev,
                  .rank = e->rank / 2, .ranks = 2, .parent = e, .color = e->rank % 2, .key = e->rank,
                  .world = e->world};
    void *d = NULL;
    pb_comm_req *req = NULL;
    bool ok = cs_join(&sub) && cs_alloc(e, 3 * sizeof(float), &d);
    snprintf(e->what, sizeof e->what, "abort of the split group of color %d", sub.color);
    if (ok) {
        fill_f(cs_host(e, d), 3, sub.rank, 42);
        ok = cs_put(e, d, 3 * sizeof(float));
    }
    if (ok && (sub.color == 1 || sub.rank == 0)) ok = cs_ok(e, e->comm->allreduce(sub.ctx, d, 3, 1.0f, &req), "allreduce");
    sync(e);
    if (sub.color == 0 && sub.rank == 0) e->comm->abort(sub.ctx);
    sync(e);
    if (ok && sub.color == 1) {
        ok = cs_wait(e, req);
        const float *h = ok ? cs_get(e, d, 3 * sizeof(float), "buf") : NULL;
        sub.ranks = 2;
        ok = ok && h && check_f(&sub, h, 3, "buf", want_sum, &(fsum_arg){42, 1.0f, 0});
        if (!ok && sub.err[0]) snprintf(e->err, sizeof e->err, "%s", sub.err);
    } else if (ok) {
        double t0 = pb_now_ms();
        pb_status st = sub.rank == 0 ? e->comm->wait(sub.ctx, req, WAIT_S)
                                     : e->comm->allreduce(sub.ctx, d, 3, 1.0f, &req);
        double ms = pb_now_ms() - t0;
        const char *msg = pb_error_message();
        if (st != PB_ERR_COMM || ms > 5000.0 || !msg || !strstr(msg, "aborted")) {
            snprintf(e->err, sizeof e->err,
                     "%s, participant %d, %s: its group's %s returned %d in %.0f ms, want PB_ERR_COMM at once "
                     "saying 'aborted': %s",
                     e->comm->name, e->rank, e->what, sub.rank == 0 ? "wait" : "next post", (int)st, ms,
                     msg ? msg : "(none)");
            ok = false;
        }
        pb_error_clear();
    }
    sync(e);
    cs_leave(&sub);
    cs_free(e, d);
    free(sub.stage);
    return ok && case_allreduce(e, 5, 1.0f, 43); /* the world is not aborted */
}

/* A split whose last participant calls it only after the others' deadline
 * has passed: theirs fail with PB_ERR_COMM in about the deadline, naming
 * it. Where a timed-out wait leaves the operation to complete (not nccl),
 * the late one's split then completes (it forms a group nobody else
 * joins). The world's group has an operation nobody waits for now: every
 * participant leaves it and joins a new one. */
static bool case_split_deadline(cs_env *e, void (*sync)(cs_env *), int step)
{
    int late = e->ranks - 1;
    pb_comm_ctx *sub = NULL;
    bool ok = true;
    snprintf(e->what, sizeof e->what, "split whose participant %d comes late", late);
    if (e->rank == late) {
        cs_sleep_s(LATE_DEADLINE_S + 0.8);
        pb_progress_set_step(step);
        ok = cs_ok(e, e->comm->split(e->ctx, 0, 0, WAIT_S, &sub), "split");
        if (sub) e->comm->destroy(sub);
    } else {
        pb_progress_set_step(step);
        double t0 = pb_now_ms();
        pb_status st = e->comm->split(e->ctx, 0, 0, LATE_DEADLINE_S, &sub);
        ok = failed_late(e, "split", st, pb_now_ms() - t0, late);
        if (ok && sub) {
            snprintf(e->err, sizeof e->err, "%s, participant %d, %s: a failed split gave a ctx", e->comm->name,
                     e->rank, e->what);
            ok = false;
        }
    }
    if (sync) sync(e);
    cs_leave(e);
    return cs_join(e) && ok;
}

/* One participant's whole suite; false with e->err on the first failure.
 * sync: a barrier over the participants outside the comm (threads), or NULL
 * (ranks: the failure cases that need one are skipped). */
static bool cs_run(cs_env *e, void (*sync)(cs_env *))
{
    int step_ = 0, *step = &step_;
    if (!cs_join(e)) return false;
    for (size_t k = 0; k < LADDER; k++)
        if (!cs_collectives(e, ladder[k], (int)k, step)) return false;
    CASE(case_broadcast(e, 2 * 4097, 0, true));
    if (e->ranks > 1) CASE(case_ring(e, (const size_t[]){4097, 3, 262147, 1}, 4));
    CASE(case_outstanding(e));
    CASE(case_allreduce(e, BIG_FLOATS, 1.0f, 7));
    /* split groups: 3 participants (groups of 1 and 2, none) and 4 */
    int after = *step + 1000; /* participants run unlike numbers of cases there */
    if (e->ranks >= 3 && e->comm->split && !cs_splits(e, sync, step)) return false;
    *step = after; /* the world's deadline case compares steps across participants */
    /* on 4 only: a second each, and 2 and 3 take no other path */
    if (e->ranks == 4 && e->comm->split && e->caps.rewait) CASE(case_split_deadline(e, sync, (*step)++));
    if (e->ranks == 4 && e->comm->split && e->comm->abort && sync) CASE(case_split_abort(e, sync));
    if (!cs_failures(e, sync, step)) return false;
    cs_leave(e);
    return true;
}
#undef CASE

/* --- local: a thread per participant --------------------------------------------- */

static pb_backend staged_backend; /* pb_backend_cpu that says its memory is not the host's */

/* The threads' barrier: once a participant has failed it lets everyone
 * through, so a failure ends the run instead of leaving the others at a
 * barrier the failed one never reaches. */
typedef struct local_world {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ranks, arrived, round;
    int failed; /* participants failed */
    char first_err[2048]; /* the first failure's message */
    cs_env env[MAX_PARTS];
} local_world;

static local_world *world_of(cs_env *e) { return e->world; }

static void local_sync(cs_env *e)
{
    local_world *w = world_of(e);
    pthread_mutex_lock(&w->mu);
    int round = w->round;
    if (++w->arrived == w->ranks) {
        w->arrived = 0;
        w->round++;
        pthread_cond_broadcast(&w->cv);
    }
    while (w->round == round && !w->failed) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void *local_main(void *arg)
{
    cs_env *e = arg;
    if (!cs_run(e, local_sync)) {
        local_world *w = world_of(e);
        pthread_mutex_lock(&w->mu);
        if (!w->failed++) snprintf(w->first_err, sizeof w->first_err, "%s", e->err);
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        cs_leave(e); /* the others' waits then fail (the group aborts) instead of hanging */
    }
    free(e->stage);
    return NULL;
}

static void run_local(const pb_backend *be, int ranks)
{
    local_world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    pb_config cfg;
    pb_config_defaults(&cfg);
    cfg.threads = 1;
    pb_device_opts dev_opts = pb_config_device_opts(&cfg);
    pb_comm_opts comm_opts = pb_config_comm_opts(&cfg); /* one for the group */
    assert_int_equal(pthread_mutex_init(&w->mu, NULL), 0);
    assert_int_equal(pthread_cond_init(&w->cv, NULL), 0);
    w->ranks = ranks;
    pthread_t t[MAX_PARTS];
    for (int r = 0; r < ranks; r++) {
        cs_env *e = &w->env[r];
        *e = (cs_env){.comm = &pb_comm_local, .be = be, .opts = &comm_opts, .rank = r, .ranks = ranks,
                      .late_world = ranks - 1, .world = w,
                      .caps = {.rewait = true, .missing_fmt = "participant %d never posted it"}};
        assert_int_equal(be->open(&dev_opts, r, &e->dev), PB_OK);
    }
    for (int r = 0; r < ranks; r++) assert_int_equal(pthread_create(&t[r], NULL, local_main, &w->env[r]), 0);
    for (int r = 0; r < ranks; r++) pthread_join(t[r], NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    for (int r = 0; r < ranks; r++) be->close(w->env[r].dev);
    char err[2048];
    snprintf(err, sizeof err, "%s", w->first_err);
    int cases = w->env[0].cases;
    free(w);
    if (err[0]) fail_msg("%s backend, %d participants: %s", be->name, ranks, err);
    assert_true(cases > 0);
}

static void test_local_cpu(void **state)
{
    (void)state;
    for (int n = 1; n <= 4; n++) run_local(&pb_backend_cpu, n);
}

static void test_local_staged(void **state)
{
    (void)state;
    for (int n = 2; n <= 3; n++) run_local(&staged_backend, n);
}

/* --- ranks: this program under mpirun -------------------------------------------- */

/* `--rank mpi|nccl [ordinal]`: one participant per rank; prints one line. */
static int rank_main(const char *name, int ordinal)
{
    pb_world w;
    bool nccl = strcmp(name, "nccl") == 0;
    if (!nccl && strcmp(name, "mpi") != 0) {
        fprintf(stderr, "comm conformance: --rank takes mpi or nccl, not %s\n", name);
        return 2;
    }
    if (pb_world_init(&w) != PB_OK) {
        fprintf(stderr, "comm conformance: %s\n", pb_error_message());
        return 1;
    }
    pb_config cfg;
    pb_config_defaults(&cfg);
    cfg.threads = 1;
    pb_device_opts dev_opts = pb_config_device_opts(&cfg);
    pb_comm_opts comm_opts = pb_config_comm_opts(&cfg);
    cs_env e = {.comm = nccl ? &pb_comm_nccl : &pb_comm_mpi, .be = nccl ? &pb_backend_cuda : &pb_backend_cpu,
                .opts = &comm_opts, .rank = w.rank, .ranks = w.ranks, .late_world = w.ranks - 1,
                .caps = {.rewait = !nccl, .world_names = true, .missing_fmt = "rank %d on "}};
    snprintf(e.what, sizeof e.what, "opening device %d", ordinal);
    bool ok = cs_ok(&e, e.be->open(&dev_opts, nccl ? ordinal : w.rank, &e.dev), "open") && cs_run(&e, NULL);
    if (ok)
        printf("comm conformance: %s rank %d of %d passed %d cases\n", name, w.rank, w.ranks, e.cases);
    else
        fprintf(stderr, "comm conformance FAILED: %s\n", e.err);
    fflush(stdout);
    fflush(stderr);
    if (!ok) pb_world_abort(1); /* the other ranks may be waiting on this one */
    if (e.dev) e.be->close(e.dev);
    free(e.stage);
    pb_world_finalize();
    return 0;
}

#if PB_EXPECT_MPI
static void run_mpi(int np)
{
    char n[16], self[4096];
    snprintf(n, sizeof n, "%d", np);
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(len > 0);
    self[len] = '\0';
    char *argv[16];
    int a = 0;
    argv[a++] = "mpirun";
    if (geteuid() == 0) argv[a++] = "--allow-run-as-root";
    argv[a++] = "--oversubscribe";
    argv[a++] = "-np";
    argv[a++] = n;
    argv[a++] = self;
    argv[a++] = "--rank";
    argv[a++] = "mpi";
    argv[a] = NULL;
    bench_result *r = calloc(1, sizeof *r);
    assert_non_null(r);
    double t0 = pb_now_ms();
    run_argv_env(r, NULL, argv);
    double ms = pb_now_ms() - t0;
    if (r->exit_code != 0 || count_substr(r->out, "passed") != np)
        fail_msg("mpirun -np %d: exit %d after %.0f ms\nstdout: %s\nstderr: %s", np, r->exit_code, ms, r->out, r->err);
    for (int k = 0; k < np; k++) {
        char want[64];
        snprintf(want, sizeof want, "mpi rank %d of %d passed", k, np);
        if (!strstr(r->out, want)) fail_msg("no '%s' in: %s", want, r->out);
    }
    print_message("mpirun -np %d: %.1f s\n", np, ms / 1e3);
    free(r);
}

static void test_mpi_np2(void **state)
{
    (void)state;
    run_mpi(2);
}

static void test_mpi_np3(void **state)
{
    (void)state;
    run_mpi(3);
}

static void test_mpi_np4(void **state)
{
    (void)state;
    run_mpi(4);
}
#endif

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--rank") == 0) return rank_main(argv[2], argc >= 4 ? atoi(argv[3]) : 0);
    staged_backend = pb_backend_cpu;
    staged_backend.name = "staged";
    staged_backend.host_is_device = false;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_cpu),
        cmocka_unit_test(test_local_staged),
#if PB_EXPECT_MPI
        cmocka_unit_test(test_mpi_np2),
        cmocka_unit_test(test_mpi_np3),
        cmocka_unit_test(test_mpi_np4),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
