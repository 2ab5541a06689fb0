/* `local`: collectives between the devices of one process (comm_local.h).
 *
 * The participants of a group share one struct: a ring of slots for the
 * collectives and one per ordered (sender, receiver) pair for messages. A
 * post fills the caller's part of its slot; the post that completes the slot
 * runs the operation right there, outside the group's lock, on the
 * participants' own buffers, with the backend's own calls:
 *
 * - where device memory is host memory (the cpu backend) every buffer is
 *   readable by every thread, so a reduction adds the peers' buffers straight
 *   into the root's (axpy) and a copy is a memcpy: nothing is staged;
 * - otherwise (cuda) a peer's values reach the root with copy_peer into a
 *   scratch buffer on the root's device, which axpy then adds in; copies are
 *   ordered on the devices' streams, so "done" means enqueued there, ahead of
 *   whatever each device enqueues after its wait returns. Single-process NCCL
 *   would be the faster way on GPUs; this path needs nothing but the backend.
 *
 * Ordering on devices with streams (the backend has mark_wait): a copy waits
 * for a mark recorded on the source's stream when the data was handed over,
 * never for whatever the source enqueued since. A send records its mark
 * when it is posted (per message, created at init), so a receiver that gets
 * to message j late does not wait for the sender's later work (mp's
 * microbatches); the receiver records a mark after the copy, and the
 * sender's device waits for it when the sender waits for its send (the
 * buffer is the sender's again only then, as in MPI), so that the copies of
 * sends posted together (dp's scatter) run side by side. A broadcast records
 * the root's mark once and every destination waits for it: the destinations
 * copy in parallel, each over its own link.
 *
 * Sums go in participant order (root first, then the others ascending), so a
 * result does not depend on which thread ran it. Waits sleep on the group's
 * condition variable (CLOCK_MONOTONIC) until the operation has run, the
 * group was aborted, or the deadline passed without progress; then they
 * name the operation and the participants that never posted it. Once every
 * participant has posted, the operation is running on the last poster's
 * thread and a wait sees it through, deadline or abort, so no buffer is in
 * use after a wait returns. A participant's state is not freed while an
 * operation runs (the group counts them).
 *
 * Each request has a fixed place in its participant's array, matching its
 * slot's ring (collectives; sends to each peer; recvs from each peer), so
 * requests may be waited for in any order: the only limit is DEPTH
 * outstanding per ring. Steps allocate nothing: the slots and requests are
 * allocated with the group, and a scratch buffer (cuda: a peer's values on
 * their way into a sum; any backend: an in-place reduce_scatter's own chunk)
 * grows in post(), on the thread of the participant it belongs to, the
 * first time an operation needs more (in warm-up), while no operation runs. */
#define _POSIX_C_SOURCE 200809L
#include "comm_local.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../harness/timer.h"

#define DEPTH PB_COMM_LOCAL_DEPTH

typedef enum op_kind { OP_ALLREDUCE, OP_BCAST, OP_REDUCE, OP_ALLGATHER, OP_REDUCE_SCATTER, OP_P2P } op_kind;

static const char *const op_names[] = {"allreduce", "broadcast", "reduce", "allgather", "reduce_scatter", "send/recv"};

/* units of an operation's n, for messages */
static const char *op_units(op_kind k) { return k == OP_ALLREDUCE || k == OP_REDUCE || k == OP_REDUCE_SCATTER ? "floats" : "bytes"; }

typedef struct slot slot;
typedef struct group group;

/* A participant's handle on one operation, in the participant's own ring:
 * it outlives the slot (reused once the operation has run), so it carries
 * what a wait reports. */
struct pb_comm_req {
    slot *slot;       /* the operation's slot, while it has not run */
    op_kind kind;
    size_t n;
    int64_t seq;
    int root, peer;
    bool pending;     /* posted and not yet waited for */
    bool done;        /* ran (its outcome in st and ms) */
    /* a send's: the receiver's mark after the copy, which the sender's
     * device waits for when the send is waited for */
    pb_mark *after;
    pb_status st;
    double ms;
};

/* One participant's side of an operation. */
typedef struct part {
    void *buf;       /* the buffer written (recv, in-place collectives, out) */
    const void *in;  /* the buffer read (send, allgather, reduce_scatter) */
    bool posted;
    pb_comm_req *req;
} part;

/* One operation: collective k lives in coll[k % DEPTH], message k from a to
 * b in the pair's ring. Zeroed memory is a free slot; a slot is free again
 * once its operation has run. */
struct slot {
    int64_t seq1;     /* the instance held, plus 1; 0: never used */
    op_kind kind;
    size_t n;         /* floats or bytes (op_units) */
    int root;         /* broadcast/reduce root; messages: the sender */
    int peer;         /* messages: the receiver */
    float scale;
    int width;        /* parts: the group's ranks, or 2 (sender, receiver) */
    int posted;
    bool done;
    part *part;
    /* messages, where marks order copies: the sender's mark recorded at its
     * post, and the receiver's recorded after the copy */
    pb_mark *ready, *after;
};

struct pb_comm_ctx {
    group *g;
    const pb_backend *be;
    pb_device *dev;
    int rank, ranks;
    int64_t coll_seq;   /* collectives posted */
    int64_t splits;     /* splits of the group called (each a collective) */
    int64_t *send_seq;  /* [ranks]: messages posted to each peer */
    int64_t *recv_seq;  /* [ranks]: receives posted from each peer */
    /* [DEPTH * (1 + 2 * ranks)]: ring 0 the collectives, 1 + peer the sends
     * to peer, 1 + ranks + peer the recvs from peer; request k of a ring at
     * k % DEPTH, as its slot */
    pb_comm_req *reqs;
    /* where the backend orders copies with marks, on dev, created at init:
     * send_mark[peer * DEPTH + k % DEPTH] is recorded when send k to peer is
     * posted, recv_mark[peer * DEPTH + k % DEPTH] after the copy of message
     * k from peer; ready and done are a collective's copy's source and
     * destination marks (collectives run one at a time) */
    pb_mark **send_mark, **recv_mark;
    pb_mark *ready, *done;
    /* on dev: a peer's values on their way into a sum (not host_is_device),
     * then an in-place reduce_scatter's own chunk; only grows, in post().
     * One operation at a time uses it: collectives run one after another
     * (collective k runs inside its last part's post, and that participant
     * posts k + 1 only afterwards; on cuda each is enqueued on the device's
     * stream before the next starts), and messages never use it. */
    void *scratch;
    size_t scratch_bytes;
    /* on dev: the (color, key) pairs a split gathers, kept until destroy. A
     * split whose wait timed out leaves its allgather outstanding, and a
     * late participant's post may still run it into this buffer; destroy
     * frees it once no operation runs (later posts fail: the group is
     * aborted or gone). Splits reuse it: collectives run in order, so a
     * later split's completed allgather ran after any earlier one. */
    void *split_buf;
};

struct group {
    group *next; /* the list of groups still forming */
    uint64_t id; /* unique in the process, so a split's groups never join a later one's */
    /* who joins: init's participants pass the same opts and ranks (parent
     * 0); a split's, the parent group's id, the split's number in it and
     * their color */
    const pb_comm_opts *opts;
    uint64_t parent;
    int64_t split;
    int color;
    const pb_backend *be;
    int ranks, joined, members;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* an operation ran, or the group was aborted */
    pb_comm_ctx **member; /* [ranks] */
    slot *coll;           /* [DEPTH] */
    slot *p2p;            /* [ranks * ranks * DEPTH]: pair (a, b) at (a * ranks + b) * DEPTH */
    part *parts;
    int running;      /* operations running outside the lock: members stay until 0 */
    bool aborted;
    char why[1024];   /* why it was aborted */
    char op_err[1024]; /* the first failed operation's error */
};

/* Groups whose members are still joining, and the lock that orders joining
 * and leaving (taken before any group's own lock). */
static group *forming;
static pthread_mutex_t forming_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t last_group_id; /* under forming_mu */

/* The group a participant joins (struct group's fields of the same names). */
typedef struct group_tag {
    const pb_comm_opts *opts;
    uint64_t parent;
    int64_t split;
    int color;
} group_tag;

/* --- groups ------------------------------------------------------------------ */

static void group_free(group *g)
{
    if (!g) return;
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g->member);
    free(g->coll);
    free(g->p2p);
    free(g->parts);
    free(g);
}

/* The slots and parts for every operation the group can have outstanding,
 * allocated once: calloc leaves the pages of unused pairs untouched. */
static pb_status group_create(const group_tag *tag, const pb_backend *be, int ranks, group **out)
{
    pb_status st = PB_OK;
    group *g = NULL;
    bool mu = false;
    size_t r = (size_t)ranks, n_p2p = r * r * DEPTH;
    *out = NULL;
    PB_ALLOC(g, 1);
    PB_ALLOC(g->member, r);
    PB_ALLOC(g->coll, DEPTH);
    PB_ALLOC(g->p2p, n_p2p);
    PB_ALLOC(g->parts, DEPTH * r + 2 * n_p2p);
    g->id = ++last_group_id;
    g->opts = tag->opts;
    g->parent = tag->parent;
    g->split = tag->split;
    g->color = tag->color;
    g->be = be;
    g->ranks = ranks;
    for (size_t i = 0; i < DEPTH; i++) g->coll[i].part = g->parts + i * r;
    for (size_t i = 0; i < n_p2p; i++) g->p2p[i].part = g->parts + DEPTH * r + 2 * i;
    PB_REQUIRE(pthread_mutex_init(&g->mu, NULL) == 0, PB_ERR_INTERNAL, "comm local: pthread_mutex_init failed");
    mu = true;
    int rc = pb_cond_init_monotonic(&g->cv); /* its waits have deadlines */
    PB_REQUIRE(rc == 0, PB_ERR_INTERNAL, "comm local: pthread_cond_init failed (error %d)", rc);
    *out = g;
    return PB_OK;
cleanup:
    if (g) {
        if (mu) pthread_mutex_destroy(&g->mu);
        free(g->member);
        free(g->coll);
        free(g->p2p);
        free(g->parts);
        free(g);
    }
    return st;
}

/* With g->mu held: the first reason wins; every waiter wakes up and fails. */
static void abort_locked(group *g, const char *why)
{
    if (!g->aborted) {
        g->aborted = true;
        snprintf(g->why, sizeof g->why, "%s", why);
    }
    pthread_cond_broadcast(&g->cv);
}

/* Copies are ordered with marks on this backend (see the top). */
static bool ordered(const pb_backend *be) { return be->mark_wait != NULL; }

static void destroy_marks(pb_comm_ctx *c)
{
    size_t n = (size_t)c->ranks * DEPTH;
    for (size_t i = 0; i < n; i++) {
        if (c->send_mark && c->send_mark[i]) c->be->mark_destroy(c->dev, c->send_mark[i]);
        if (c->recv_mark && c->recv_mark[i]) c->be->mark_destroy(c->dev, c->recv_mark[i]);
    }
    if (c->ready) c->be->mark_destroy(c->dev, c->ready);
    if (c->done) c->be->mark_destroy(c->dev, c->done);
    free(c->send_mark);
    free(c->recv_mark);
}

/* The marks of every message and collective this participant can have
 * outstanding, so that no step creates one. */
static pb_status create_marks(pb_comm_ctx *c)
{
    pb_status st = PB_OK;
    size_t n = (size_t)c->ranks * DEPTH;
    PB_ALLOC(c->send_mark, n);
    PB_ALLOC(c->recv_mark, n);
    for (size_t i = 0; i < n; i++) {
        PB_TRY(c->be->mark_create(c->dev, &c->send_mark[i]));
        PB_TRY(c->be->mark_create(c->dev, &c->recv_mark[i]));
    }
    PB_TRY(c->be->mark_create(c->dev, &c->ready));
    PB_TRY(c->be->mark_create(c->dev, &c->done));
cleanup:
    return st;
}

static void local_destroy(pb_comm_ctx *c)
{
    if (!c) return;
    group *g = c->g;
    bool last = false;
    if (g) {
        pthread_mutex_lock(&forming_mu);
        pthread_mutex_lock(&g->mu);
        /* an operation running on another thread reads this participant's
         * device, buffers and scratch and writes its requests */
        while (g->running > 0) pthread_cond_wait(&g->cv, &g->mu);
        g->member[c->rank] = NULL;
        g->members--;
        last = g->members == 0;
        if (g->joined < g->ranks) {
            g->joined--; /* still forming: another may take this rank */
        } else if (!last) {
            char why[64];
            snprintf(why, sizeof why, "participant %d left the group", c->rank);
            abort_locked(g, why);
        }
        pthread_mutex_unlock(&g->mu);
        if (last)
            for (group **p = &forming; *p; p = &(*p)->next)
                if (*p == g) {
                    *p = g->next;
                    break;
                }
        pthread_mutex_unlock(&forming_mu);
    }
    if (c->scratch) c->be->free(c->dev, c->scratch);
    if (c->split_buf) c->be->free(c->dev, c->split_buf);
    destroy_marks(c);
    if (last) group_free(g);
    free(c->send_seq);
    free(c->recv_seq);
    free(c->reqs);
    free(c);
}

/* Joins the group of tag that is still forming as participant rank of
 * ranks, or starts it. */
static pb_status join(const group_tag *tag, const pb_backend *be, pb_device *dev, int rank, int ranks,
                      pb_comm_ctx **out)
{
    pb_status st = PB_OK;
    pb_comm_ctx *c = NULL;
    bool locked = false;
    *out = NULL;
    PB_REQUIRE(ranks >= 1 && ranks <= PB_MAX_STAGES && rank >= 0 && rank < ranks, PB_ERR_INTERNAL,
               "comm local: participant %d of %d (allowed: 1 to %d participants)", rank, ranks, PB_MAX_STAGES);
    PB_ALLOC(c, 1);
    PB_ALLOC(c->send_seq, ranks);
    PB_ALLOC(c->recv_seq, ranks);
    /* a collective ring, and a send and a recv ring per peer */
    PB_ALLOC(c->reqs, (size_t)DEPTH * (2 * (size_t)ranks + 1));
    c->be = be;
    c->dev = dev;
    c->rank = rank;
    c->ranks = ranks;
    if (ordered(be)) PB_TRY(create_marks(c));

    pthread_mutex_lock(&forming_mu);
    locked = true;
    group *g = forming;
    for (; g; g = g->next) {
        pthread_mutex_lock(&g->mu);
        bool fits = g->opts == tag->opts && g->parent == tag->parent && g->split == tag->split &&
                    g->color == tag->color && g->ranks == ranks && !g->member[rank] && !g->aborted;
        pthread_mutex_unlock(&g->mu);
        if (fits) break;
    }
    if (!g) {
        PB_TRY(group_create(tag, be, ranks, &g));
        g->next = forming;
        forming = g;
    }
    PB_REQUIRE(g->be == be, PB_ERR_INTERNAL, "comm local: participant %d is on backend %s, the group's on %s", rank,
               be->name, g->be->name);
    pthread_mutex_lock(&g->mu);
    g->member[rank] = c;
    g->joined++;
    g->members++;
    c->g = g;
    bool complete = g->joined == g->ranks;
    pthread_mutex_unlock(&g->mu);
    if (complete)
        for (group **p = &forming; *p; p = &(*p)->next)
            if (*p == g) {
                *p = g->next;
                break;
            }
    pthread_mutex_unlock(&forming_mu);
    *out = c;
    return PB_OK;
cleanup:
    if (locked) pthread_mutex_unlock(&forming_mu);
    local_destroy(c);
    return st;
}

static pb_status local_init(const pb_comm_opts *opts, const pb_backend *be, pb_device *dev, int rank, int ranks,
                            pb_comm_ctx **out)
{
    return join(&(group_tag){.opts = opts}, be, dev, rank, ranks, out);
}

/* --- running an operation ----------------------------------------------------- */

static pb_device *dev_of(const group *g, int rank) { return g->member[rank]->dev; }

/* bytes from participant src's `from` into dst's `to`: after the work src
 * has enqueued so far, before the work dst enqueues later, and (where marks
 * order copies) before src's later work, which may overwrite `from`. */
static pb_status ordered_copy(group *g, int dst, void *to, int src, const void *from, size_t bytes)
{
    pb_status st = PB_OK;
    const pb_backend *be = g->be;
    if (to == from || bytes == 0) return PB_OK; /* in place: memcpy onto itself is undefined */
    if (dst == src) return be->copy(dev_of(g, dst), to, from, bytes);
    if (!ordered(be)) return be->copy_peer(dev_of(g, dst), to, dev_of(g, src), from, bytes);
    pb_comm_ctx *s = g->member[src], *d = g->member[dst];
    PB_TRY(be->mark_record(s->dev, s->ready));
    PB_TRY(be->mark_wait(d->dev, s->ready));
    PB_TRY(be->copy_peer(d->dev, to, s->dev, from, bytes));
    PB_TRY(be->mark_record(d->dev, d->done));
    PB_TRY(be->mark_wait(s->dev, d->done));
cleanup:
    return st;
}

/* The root's bytes at `from` into every other participant r's to[r]: the
 * root's mark is recorded once and every destination waits for it, so the
 * copies run side by side (one ordered_copy after another would make each
 * wait for the last: the root waits for each copy before its next mark). */
static pb_status fan_out(group *g, int root, const void *from, void *const *to, size_t bytes)
{
    pb_status st = PB_OK;
    const pb_backend *be = g->be;
    if (bytes == 0) return PB_OK;
    if (!ordered(be)) {
        for (int r = 0; r < g->ranks; r++)
            if (r != root) PB_TRY(ordered_copy(g, r, to[r], root, from, bytes));
        return PB_OK;
    }
    pb_comm_ctx *s = g->member[root];
    PB_TRY(be->mark_record(s->dev, s->ready));
    for (int r = 0; r < g->ranks; r++) {
        if (r == root || to[r] == from) continue;
        pb_comm_ctx *d = g->member[r];
        PB_TRY(be->mark_wait(d->dev, s->ready));
        PB_TRY(be->copy_peer(d->dev, to[r], s->dev, from, bytes));
        PB_TRY(be->mark_record(d->dev, d->done));
    }
    for (int r = 0; r < g->ranks; r++)
        if (r != root && to[r] != from) PB_TRY(be->mark_wait(s->dev, g->member[r]->done));
cleanup:
    return st;
}

/* Message s (sender s->root, receiver s->peer): the copy waits for the
 * sender's mark from the send's post, not for the sender's later work, and
 * the receiver's mark after it is left for the sender's wait (s->after). */
static pb_status run_message(group *g, slot *s)
{
    pb_status st = PB_OK;
    const pb_backend *be = g->be;
    int from = s->root, to = s->peer;
    void *dst = s->part[1].buf;
    const void *src = s->part[0].in;
    if (!ordered(be) || from == to || s->n == 0 || !s->ready) return ordered_copy(g, to, dst, from, src, s->n);
    pb_comm_ctx *d = g->member[to];
    pb_mark *after = d->recv_mark[(size_t)from * DEPTH + (size_t)((s->seq1 - 1) % DEPTH)];
    PB_TRY(be->mark_wait(d->dev, s->ready));
    PB_TRY(be->copy_peer(d->dev, dst, dev_of(g, from), src, s->n));
    PB_TRY(be->mark_record(d->dev, after));
    s->after = after;
cleanup:
    return st;
}

/* src's n floats at p as participant dst can read them: in place where
 * device memory is host memory, else copied into dst's scratch. */
static pb_status readable_by(group *g, int dst, int src, const float *p, size_t n, const float **out)
{
    pb_status st = PB_OK;
    if (g->be->host_is_device) {
        *out = p;
        return PB_OK;
    }
    pb_comm_ctx *d = g->member[dst];
    size_t bytes = n * sizeof(float);
    /* post() grew it, on dst's own thread: none is allocated here */
    PB_REQUIRE(d->scratch_bytes >= bytes, PB_ERR_INTERNAL,
               "comm local: participant %d's scratch holds %zu bytes, %zu needed", dst, d->scratch_bytes, bytes);
    PB_TRY(ordered_copy(g, dst, d->scratch, src, p, bytes));
    *out = d->scratch;
cleanup:
    return st;
}

/* dst[0..n) += every other participant's src[0..n), in participant order */
static pb_status sum_into(group *g, int root, float *dst, const float *const *src, size_t n)
{
    pb_status st = PB_OK;
    for (int r = 0; r < g->ranks; r++) {
        if (r == root) continue;
        const float *x = NULL;
        PB_TRY(readable_by(g, root, r, src[r], n, &x));
        PB_TRY(g->be->axpy(dev_of(g, root), n, 1.0f, x, dst));
    }
cleanup:
    return st;
}


static pb_status run_coll(group *g, slot *s)
{
    pb_status st = PB_OK;
    const pb_backend *be = g->be;
    int ranks = g->ranks;
    size_t n = s->n;
    const float *src[PB_MAX_STAGES];
    void *to[PB_MAX_STAGES];
    if (n == 0) return PB_OK;
    for (int r = 0; r < ranks && s->kind != OP_P2P; r++) to[r] = s->part[r].buf;
    switch (s->kind) {
    case OP_BCAST:
        PB_TRY(fan_out(g, s->root, s->part[s->root].buf, to, n));
        break;
    case OP_REDUCE:
        for (int r = 0; r < ranks; r++) src[r] = s->part[r].buf;
        PB_TRY(sum_into(g, s->root, s->part[s->root].buf, src, n));
        break;
    case OP_ALLREDUCE: {
        float *sum = s->part[0].buf;
        for (int r = 0; r < ranks; r++) src[r] = s->part[r].buf;
        PB_TRY(sum_into(g, 0, sum, src, n));
        if (s->scale != 1.0f) {
            if (be->host_is_device)
                for (size_t i = 0; i < n; i++) sum[i] *= s->scale;
            else /* the backend has no scale: y += (scale - 1) y */
                PB_TRY(be->axpy(dev_of(g, 0), n, s->scale - 1.0f, sum, sum));
        }
        PB_TRY(fan_out(g, 0, sum, to, n * sizeof(float)));
        break;
    }
    case OP_ALLGATHER:
        for (int p = 0; p < ranks; p++)
            for (int r = 0; r < ranks; r++)
                PB_TRY(ordered_copy(g, p, (char *)s->part[p].buf + (size_t)r * n, r, s->part[r].in, n));
        break;
    case OP_REDUCE_SCATTER:
        /* participant r's out: the sum of everyone's chunk r, from participant 0's up */
        for (int r = 0; r < ranks; r++) {
            float *out = s->part[r].buf;
            for (int p = 0; p < ranks; p++) src[p] = (const float *)s->part[p].in + (size_t)r * n;
            if (r > 0 && out == src[r]) {
                /* in place: chunk 0 lands on r's own chunk, which the sum
                 * still needs; set it aside (post() sized the scratch) */
                pb_comm_ctx *d = g->member[r];
                float *own = (float *)d->scratch + (be->host_is_device ? 0 : n);
                PB_TRY(be->copy(d->dev, own, out, n * sizeof(float)));
                src[r] = own;
            }
            PB_TRY(ordered_copy(g, r, out, 0, src[0], n * sizeof(float)));
            for (int p = 1; p < ranks; p++) {
                const float *x = NULL;
                if (p == r) {
                    x = src[p];
                } else {
                    PB_TRY(readable_by(g, r, p, src[p], n, &x));
                }
                PB_TRY(be->axpy(dev_of(g, r), n, 1.0f, x, out));
            }
        }
        break;
    case OP_P2P:
        PB_TRY(run_message(g, s));
        break;
    }
cleanup:
    return st;
}

/* Runs a slot whose last part was just posted, on the poster's thread
 * (post() counted it in g->running). */
static void run_slot(group *g, slot *s)
{
    double t0 = pb_now_ms();
    pb_status st = run_coll(g, s);
    double ms = pb_now_ms() - t0;
    char err[1024] = "";
    if (st != PB_OK) { /* the message is this thread's: hand it to the waiters */
        snprintf(err, sizeof err, "%s", pb_error_message());
        pb_error_clear();
    }
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < s->width; i++) {
        pb_comm_req *r = s->part[i].req;
        r->st = st;
        r->ms = ms;
        r->done = true;
        r->slot = NULL;
        r->after = s->kind == OP_P2P && i == 0 && st == PB_OK ? s->after : NULL;
    }
    if (st != PB_OK && !g->op_err[0]) snprintf(g->op_err, sizeof g->op_err, "%s", err);
    s->done = true;
    g->running--;
    pthread_mutex_unlock(&g->mu);
    /* after unlocking, so a waiter that wakes does not block on the lock */
    pthread_cond_broadcast(&g->cv);
}

/* --- posting ------------------------------------------------------------------- */

/* An operation for messages: "allreduce #3 of 10 floats" */
static void describe(op_kind kind, int64_t seq, size_t n, int root, int peer, char *buf, size_t len)
{
    if (kind == OP_P2P)
        snprintf(buf, len, "message #%lld of %zu bytes from participant %d to %d", (long long)seq, n, root, peer);
    else
        snprintf(buf, len, "%s #%lld of %zu %s", op_names[kind], (long long)seq, n, op_units(kind));
}

typedef struct post_args {
    op_kind kind;
    void *buf;
    const void *in;
    size_t n;
    float scale;
    int root, peer; /* messages: sender and receiver */
    bool is_recv;
} post_args;

/* [a, a + an) and [b, b + bn) share a byte (device addresses compare too) */
static bool overlaps(const void *a, size_t an, const void *b, size_t bn)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return an > 0 && bn > 0 && x < y + bn && y < x + an;
}

/* The scratch participant c needs for its part of a's operation, in bytes:
 * where device memory is not host memory, n floats where peers' values are
 * summed into c's buffer (allreduce on participant 0, reduce on its root,
 * reduce_scatter everywhere); and n floats more (any backend) to set aside
 * c's own chunk of an in-place reduce_scatter. */
static size_t scratch_need(const pb_comm_ctx *c, const post_args *a)
{
    const group *g = c->g;
    size_t floats = 0;
    bool sums = (a->kind == OP_ALLREDUCE && c->rank == 0) || (a->kind == OP_REDUCE && c->rank == a->root) ||
                a->kind == OP_REDUCE_SCATTER;
    if (g->ranks > 1 && sums && !g->be->host_is_device) floats += a->n;
    if (g->ranks > 1 && a->kind == OP_REDUCE_SCATTER && c->rank > 0 &&
        (const float *)a->buf == (const float *)a->in + (size_t)c->rank * a->n)
        floats += a->n;
    return floats * sizeof(float);
}

/* Grows c's scratch to bytes, on c's own (posting) thread: its device's
 * allocations stay on the thread that makes them. Operations running on
 * other threads may be reading the old one, so it waits for none to run;
 * no other can start meanwhile (they start under the lock). Pending
 * operations read the scratch when they run, and it only grows. */
static pb_status grow_scratch(pb_comm_ctx *c, size_t bytes)
{
    pb_status st = PB_OK;
    group *g = c->g;
    pthread_mutex_lock(&g->mu);
    while (g->running > 0) pthread_cond_wait(&g->cv, &g->mu);
    if (c->scratch) g->be->free(c->dev, c->scratch);
    c->scratch = NULL;
    c->scratch_bytes = 0;
    st = g->be->alloc(c->dev, bytes, &c->scratch);
    if (st == PB_OK) c->scratch_bytes = bytes;
    pthread_mutex_unlock(&g->mu);
    return st;
}

/* Posts the caller's part of its next operation of a's kind; runs the
 * operation when it is the last part. */
static pb_status post(pb_comm_ctx *c, const post_args *a, pb_comm_req **out)
{
    group *g = c->g;
    bool p2p = a->kind == OP_P2P;
    int width = p2p ? 2 : g->ranks;
    char msg[1024];
    pb_status fail = PB_OK;
    *out = NULL;
    if (p2p ? a->root < 0 || a->root >= g->ranks || a->peer < 0 || a->peer >= g->ranks
            : a->root < 0 || a->root >= g->ranks)
        return pb_error(PB_ERR_COMM, "comm local: participant %d: %s with peer or root %d; allowed: 0 to %d", c->rank,
                        p2p ? (a->is_recv ? "recv" : "send") : op_names[a->kind], p2p ? (a->is_recv ? a->root : a->peer) : a->root,
                        g->ranks - 1);
    /* in place is out = in + rank * n (as NCCL has it); any other overlap
     * would be read after it was written */
    size_t ranks = (size_t)g->ranks;
    if (a->kind == OP_REDUCE_SCATTER && overlaps(a->in, ranks * a->n * sizeof(float), a->buf, a->n * sizeof(float)) &&
        (const float *)a->buf != (const float *)a->in + (size_t)c->rank * a->n)
        return pb_error(PB_ERR_COMM,
                        "comm local: participant %d: reduce_scatter's out overlaps its in; allowed: disjoint, or in "
                        "place (out = in + rank * n)",
                        c->rank);
    if (a->kind == OP_ALLGATHER && overlaps(a->in, a->n, a->buf, ranks * a->n) &&
        (const char *)a->in != (const char *)a->buf + (size_t)c->rank * a->n)
        return pb_error(PB_ERR_COMM,
                        "comm local: participant %d: allgather's in overlaps its out; allowed: disjoint, or in place "
                        "(in = out + rank * bytes)",
                        c->rank);
    size_t need = scratch_need(c, a);
    if (need > c->scratch_bytes) {
        pb_status st = grow_scratch(c, need);
        if (st != PB_OK) return st;
    }
    int64_t *seq = !p2p ? &c->coll_seq : a->is_recv ? &c->recv_seq[a->root] : &c->send_seq[a->peer];
    int64_t k = *seq;
    slot *s = !p2p ? &g->coll[k % DEPTH]
                   : &g->p2p[((size_t)a->root * ranks + (size_t)a->peer) * DEPTH + (size_t)(k % DEPTH)];
    int me = p2p ? (a->is_recv ? 1 : 0) : c->rank;
    /* the request's place mirrors the slot's: request k - DEPTH of the same
     * ring still pending is the only way it can be taken */
    size_t ring = !p2p ? 0 : a->is_recv ? 1 + ranks + (size_t)a->root : 1 + (size_t)a->peer;
    pb_comm_req *r = &c->reqs[ring * DEPTH + (size_t)(k % DEPTH)];

    pthread_mutex_lock(&g->mu);
    if (r->pending || (s->seq1 != k + 1 && s->seq1 != 0 && !(s->seq1 == k + 1 - DEPTH && s->done))) {
        if (p2p)
            snprintf(msg, sizeof msg,
                     "comm local: more than %d messages from participant %d to %d outstanding (wait for some "
                     "before posting more)",
                     DEPTH, a->root, a->peer);
        else
            snprintf(msg, sizeof msg,
                     "comm local: participant %d: more than %d collectives outstanding (wait for some before "
                     "posting more)",
                     c->rank, DEPTH);
        fail = PB_ERR_COMM;
    } else if (g->aborted) {
        snprintf(msg, sizeof msg, "comm local: participant %d cannot post %s: the group was aborted (%.800s)", c->rank,
                 p2p ? (a->is_recv ? "a recv" : "a send") : op_names[a->kind], g->why);
        fail = PB_ERR_COMM;
    } else if (s->seq1 != k + 1) { /* the first part of instance k: the slot is free */
        part *parts = s->part;
        *s = (slot){.seq1 = k + 1, .kind = a->kind, .n = a->n, .root = a->root, .peer = a->peer,
                    .scale = a->scale, .width = width, .part = parts};
        memset(parts, 0, (size_t)width * sizeof *parts);
    } else if (s->kind != a->kind || s->n != a->n || s->root != a->root || s->scale != a->scale) {
        char have[160];
        describe(s->kind, s->seq1 - 1, s->n, s->root, s->peer, have, sizeof have);
        if (p2p)
            snprintf(msg, sizeof msg, "comm local: participant %d %s %zu bytes as %s", c->rank,
                     a->is_recv ? "receives" : "sends", a->n, have);
        else
            snprintf(msg, sizeof msg,
                     "comm local: participant %d posted %s of %zu %s (root %d, scale %g) as %s (root %d, scale %g) "
                     "of another participant",
                     c->rank, op_names[a->kind], a->n, op_units(a->kind), a->root, (double)a->scale, have, s->root,
                     (double)s->scale);
        abort_locked(g, msg);
        fail = PB_ERR_COMM;
    }
    if (fail != PB_OK) {
        pthread_mutex_unlock(&g->mu);
        return pb_error(fail, "%s", msg);
    }
    if (p2p && !a->is_recv && ordered(g->be)) {
        /* the data is what the sender's stream has enqueued by now */
        pb_mark *mk = c->send_mark[(size_t)a->peer * DEPTH + (size_t)(k % DEPTH)];
        pb_status st = g->be->mark_record(c->dev, mk);
        if (st != PB_OK) {
            pthread_mutex_unlock(&g->mu);
            return st;
        }
        s->ready = mk;
    }
    part *p = &s->part[me];
    p->buf = a->buf;
    p->in = a->in;
    p->posted = true;
    *r = (pb_comm_req){.slot = s, .kind = a->kind, .n = a->n, .seq = k, .root = a->root, .peer = a->peer,
                       .pending = true};
    p->req = r;
    (*seq)++;
    bool last = ++s->posted == s->width;
    if (last) g->running++; /* counted before any member can leave */
    pthread_mutex_unlock(&g->mu);
    *out = r;
    if (last) run_slot(g, s);
    return PB_OK;
}

static pb_status local_allreduce(pb_comm_ctx *c, float *buf, size_t n, float scale, pb_comm_req **req)
{
    return post(c, &(post_args){.kind = OP_ALLREDUCE, .buf = buf, .n = n, .scale = scale}, req);
}
static pb_status local_broadcast(pb_comm_ctx *c, void *buf, size_t bytes, int root, pb_comm_req **req)
{
    return post(c, &(post_args){.kind = OP_BCAST, .buf = buf, .n = bytes, .scale = 1.0f, .root = root}, req);
}
static pb_status local_reduce(pb_comm_ctx *c, float *buf, size_t n, int root, pb_comm_req **req)
{
    return post(c, &(post_args){.kind = OP_REDUCE, .buf = buf, .n = n, .scale = 1.0f, .root = root}, req);
}
static pb_status local_send(pb_comm_ctx *c, const void *buf, size_t bytes, int peer, pb_comm_req **req)
{
    return post(c, &(post_args){.kind = OP_P2P, .in = buf, .n = bytes, .scale = 1.0f, .root = c->rank, .peer = peer},
                req);
}
static pb_status local_recv(pb_comm_ctx *c, void *buf, size_t bytes, int peer, pb_comm_req **req)
{
    return post(c,
                &(post_args){.kind = OP_P2P, .buf = buf, .n = bytes, .scale = 1.0f, .root = peer, .peer = c->rank,
                             .is_recv = true},
                req);
}
static pb_status local_allgather(pb_comm_ctx *c, const void *in, void *out, size_t bytes, pb_comm_req **req)
{
    return post(c, &(post_args){.kind = OP_ALLGATHER, .buf = out, .in = in, .n = bytes, .scale = 1.0f}, req);
}
static pb_status local_reduce_scatter(pb_comm_ctx *c, const float *in, float *out, size_t n, pb_comm_req **req)
{
    return post(c, &(post_args){.kind = OP_REDUCE_SCATTER, .buf = out, .in = in, .n = n, .scale = 1.0f}, req);
}

/* --- waiting ---------------------------------------------------------------------- */

/* With g->mu held: who has not posted s, as "participants 2, 3 never posted it". */
static void missing(const group *g, const slot *s, char *buf, size_t len)
{
    if (s->kind == OP_P2P) {
        if (!s->part[0].posted)
            snprintf(buf, len, "participant %d never posted its send to %d", s->root, s->peer);
        else
            snprintf(buf, len, "participant %d never posted its recv from %d", s->peer, s->root);
        return;
    }
    int count = 0;
    size_t used = 0;
    char list[200] = "";
    for (int r = 0; r < g->ranks; r++) {
        if (s->part[r].posted) continue;
        int w = snprintf(list + used, sizeof list - used, "%s%d", count ? ", " : "", r);
        if (w > 0 && (size_t)w < sizeof list - used) used += (size_t)w;
        count++;
    }
    snprintf(buf, len, "participant%s %s never posted it", count == 1 ? "" : "s", list);
}

static pb_status local_wait(pb_comm_ctx *c, pb_comm_req *r, double deadline_s)
{
    group *g = c->g;
    struct timespec until = pb_time_after(CLOCK_MONOTONIC, deadline_s); /* the condition's clock */
    char what[160], who[320] = "", err[1024];
    pthread_mutex_lock(&g->mu);
    int rc = 0;
    for (;;) {
        if (r->done) break;
        if (r->slot->posted == r->slot->width) {
            /* running on the last poster's thread: that is progress, and it
             * ends; returning now would blame a participant that posted and
             * leave the operation using the caller's buffers */
            pthread_cond_wait(&g->cv, &g->mu);
            continue;
        }
        if (g->aborted || rc != 0) break;
        rc = pthread_cond_timedwait(&g->cv, &g->mu, &until);
    }
    bool done = r->done, aborted = g->aborted;
    pb_status st = r->st;
    describe(r->kind, r->seq, r->n, r->root, r->peer, what, sizeof what);
    if (done) {
        r->pending = false;
        snprintf(err, sizeof err, "%s", st != PB_OK ? g->op_err : "");
        /* the send's buffer is the sender's again: its later work goes after
         * the copy. Under the lock: a receiver that leaves aborts the group
         * before its marks go. */
        if (st == PB_OK && r->after && !aborted) st = g->be->mark_wait(c->dev, r->after);
        r->after = NULL;
        if (st != PB_OK && !err[0]) snprintf(err, sizeof err, "%s", pb_error_message());
    } else {
        missing(g, r->slot, who, sizeof who); /* the slot holds it until it runs */
        snprintf(err, sizeof err, "%s", g->why);
    }
    pthread_mutex_unlock(&g->mu);
    /* the op's own error keeps its location, if it has one; the rest is
     * what a person reads when a device stalls */
    if (done) return st == PB_OK ? PB_OK : pb_user_error(st, "comm local: participant %d's %s: %s", c->rank, what, err);
    if (aborted)
        return pb_user_error(PB_ERR_COMM, "comm local: participant %d's %s was abandoned: the group was aborted (%s)",
                        c->rank, what, err);
    if (rc != ETIMEDOUT) /* EINVAL: a deadline the clock cannot wait for; waiting on would spin */
        return pb_error(PB_ERR_INTERNAL, "comm local: participant %d's %s: pthread_cond_timedwait failed (error %d)",
                        c->rank, what, rc);
    return pb_user_error(PB_ERR_COMM, "comm local: participant %d's %s did not complete within %g s (--timeout): %s",
                    c->rank, what, deadline_s, who);
}

static double local_req_ms(const pb_comm_req *r) { return r->ms; }

static pb_status local_recv_ready(pb_comm_ctx *c, int peer)
{
    pb_status st = PB_OK;
    group *g = c->g;
    if (!ordered(g->be) || peer < 0 || peer >= g->ranks) return PB_OK;
    int64_t k = c->recv_seq[peer];
    slot *s = &g->p2p[((size_t)peer * (size_t)g->ranks + (size_t)c->rank) * DEPTH + (size_t)(k % DEPTH)];
    pthread_mutex_lock(&g->mu);
    /* the mark stays until the send is waited for, which needs this recv */
    if (s->seq1 == k + 1 && s->part[0].posted && s->ready && !g->aborted) st = g->be->mark_wait(c->dev, s->ready);
    pthread_mutex_unlock(&g->mu);
    return st;
}

static void local_abort(pb_comm_ctx *c)
{
    char why[64];
    snprintf(why, sizeof why, "participant %d failed", c->rank);
    pthread_mutex_lock(&c->g->mu);
    abort_locked(c->g, why);
    pthread_mutex_unlock(&c->g->mu);
}

/* The participants' (color, key) pairs go round in an allgather of the
 * group, in its place among the group's collectives, so a split gets the
 * deadline, abort and mismatch checks of every collective; each then joins
 * the group of (this group, this split, its color) with its rank there. */
static pb_status local_split(pb_comm_ctx *c, int color, int key, double deadline_s, pb_comm_ctx **out)
{
    pb_status st = PB_OK;
    group *g = c->g;
    int ranks = c->ranks, all[2 * PB_MAX_STAGES], mine[2] = {color < 0 ? PB_COMM_SPLIT_NONE : color, key};
    size_t each = sizeof mine;
    pb_comm_req *req = NULL;
    group_tag tag = {.opts = g->opts, .parent = g->id, .split = c->splits++, .color = mine[0]};
    *out = NULL;
    /* device memory: on cuda the allgather's copies are the devices' */
    if (!c->split_buf) PB_TRY(c->be->alloc(c->dev, each * (size_t)ranks, &c->split_buf));
    char *buf = c->split_buf, *me = buf + each * (size_t)c->rank;
    PB_TRY(c->be->upload(c->dev, me, mine, each));
    PB_TRY(local_allgather(c, me, buf, each, &req));
    /* after a timeout a late participant's post may still run the
     * allgather into buf (kept until destroy, see split_buf); the parent's
     * group is not usable after this (the allgather stays outstanding on
     * it), the run ends */
    PB_TRY(local_wait(c, req, deadline_s));
    PB_TRY(c->be->download(c->dev, all, buf, each * (size_t)ranks));
    if (mine[0] < 0) goto cleanup;
    int rank = 0, size = 0;
    for (int r = 0; r < ranks; r++) {
        if (all[2 * r] != mine[0]) continue;
        size++;
        rank += all[2 * r + 1] < key || (all[2 * r + 1] == key && r < c->rank);
    }
    PB_TRY(join(&tag, c->be, c->dev, rank, size, out));
cleanup:
    return st;
}

/* No library: the process's own threads and the backend's copies. */
static const char *local_version(void) { return ""; }

const pb_comm pb_comm_local = {
    .name = "local",
    .description = "devices driven by threads of one process: shared memory on cpu, peer copies on cuda",
    .between_ranks = false,
    .device_buffers = false,
    .init = local_init,
    .destroy = local_destroy,
    .allreduce = local_allreduce,
    .broadcast = local_broadcast,
    .reduce = local_reduce,
    .send = local_send,
    .recv = local_recv,
    .allgather = local_allgather,
    .reduce_scatter = local_reduce_scatter,
    .wait = local_wait,
    .version = local_version,
    .req_ms = local_req_ms,
    .recv_ready = local_recv_ready,
    .abort = local_abort,
    .split = local_split,
};
