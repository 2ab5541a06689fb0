#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Slots are read by other processes: their fields must be lock-free
 * atomics, which work across processes on shared memory. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_LONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "progress slots need lock-free 32- and 64-bit atomics");

#define SLOT_MAGIC 0x70625f70726f6731ULL /* "pb_prog1": the owner initialised it */
#define GENERIC "another rank stopped or is stuck"

typedef struct slot {
    _Atomic uint64_t magic;   /* stored last by the owner's attach (release) */
    _Atomic uint64_t version; /* seqlock: odd while the owner writes */
    _Atomic int64_t step;     /* -1: no step begun */
    _Atomic int64_t seq;      /* phase begins and ends within the step */
    _Atomic int64_t beat_ns;  /* CLOCK_MONOTONIC of the last event */
    _Atomic int32_t phase;    /* the last phase begun, -1 none this step */
    _Atomic int32_t in_phase; /* 1 until that phase ends */
    /* written once before magic, read-only after */
    int32_t rank;
    int32_t pid;
    uint64_t pidns; /* its PID namespace (inode of /proc/self/ns/pid), 0 unknown */
    char host[256];
} slot;

/* what a reader saw of a slot */
typedef struct snap {
    int64_t step, seq, beat_ns;
    int32_t phase, in_phase, rank, pid;
    uint64_t pidns;
    const char *host;
} snap;

static slot *self; /* NULL: not attached, nothing is published */
static slot **slots;
static int n_slots, self_index, world_ranks;
static int64_t cur_step = -1, cur_seq;
static int32_t cur_phase = -1;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t pid_namespace(void)
{
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

size_t pb_progress_slot_bytes(void) { return sizeof(slot); }

/* The owner's write: no MPI call, no allocation. */
static void publish(int32_t in_phase)
{
    slot *s = self;
    uint64_t v = atomic_load_explicit(&s->version, memory_order_relaxed);
    atomic_store_explicit(&s->version, v + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&s->step, cur_step, memory_order_relaxed);
    atomic_store_explicit(&s->seq, cur_seq, memory_order_relaxed);
    atomic_store_explicit(&s->phase, cur_phase, memory_order_relaxed);
    atomic_store_explicit(&s->in_phase, in_phase, memory_order_relaxed);
    atomic_store_explicit(&s->beat_ns, now_ns(), memory_order_relaxed);
    atomic_store_explicit(&s->version, v + 2, memory_order_release);
}

/* A consistent reading of a slot; false when its owner never initialised
 * it. The retries are bounded: an owner killed in mid-write (version left
 * odd) is read as it is. */
static bool read_slot(slot *s, snap *out)
{
    if (atomic_load_explicit(&s->magic, memory_order_acquire) != SLOT_MAGIC) return false;
    for (int tries = 0; tries < 1000; tries++) {
        uint64_t v1 = atomic_load_explicit(&s->version, memory_order_acquire);
        out->step = atomic_load_explicit(&s->step, memory_order_relaxed);
        out->seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
        out->beat_ns = atomic_load_explicit(&s->beat_ns, memory_order_relaxed);
        out->phase = atomic_load_explicit(&s->phase, memory_order_relaxed);
        out->in_phase = atomic_load_explicit(&s->in_phase, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        uint64_t v2 = atomic_load_explicit(&s->version, memory_order_relaxed);
        if (v1 == v2 && !(v1 & 1)) break;
    }
    out->rank = s->rank;
    out->pid = s->pid;
    out->pidns = s->pidns;
    out->host = s->host;
    return true;
}

void pb_progress_detach(void)
{
    self = NULL;
    free(slots);
    slots = NULL;
    n_slots = 0;
}

pb_status pb_progress_attach(void *const *where, int n, int mine, int rank, int ranks, const char *host)
{
    pb_progress_detach();
    if (n < 1 || mine < 0 || mine >= n || !where[mine])
        return pb_error(PB_ERR_INTERNAL, "progress: slot %d of %d", mine, n);
    /* cleared first: a slot whose owner could not attach reads as
     * publishing nothing, not as a rank stuck before its first step */
    slot *s = where[mine];
    memset(s, 0, sizeof *s);
    slots = calloc((size_t)n, sizeof *slots);
    if (!slots) return pb_error(PB_ERR_NOMEM, "progress: host allocation of %d slot pointers failed", n);
    for (int i = 0; i < n; i++) slots[i] = where[i];
    s->rank = rank;
    s->pid = (int32_t)getpid();
    s->pidns = pid_namespace();
    snprintf(s->host, sizeof s->host, "%s", host && *host ? host : "unknown");
    cur_step = -1;
    cur_seq = 0;
    cur_phase = -1;
    atomic_store_explicit(&s->step, -1, memory_order_relaxed);
    atomic_store_explicit(&s->phase, -1, memory_order_relaxed);
    atomic_store_explicit(&s->beat_ns, now_ns(), memory_order_relaxed);
    atomic_store_explicit(&s->magic, SLOT_MAGIC, memory_order_release);
    n_slots = n;
    self_index = mine;
    world_ranks = ranks;
    self = s;
    return PB_OK;
}

void pb_progress_set_step(int64_t step)
{
    if (!self) return;
    cur_step = step;
    cur_seq = 0;
    cur_phase = -1;
    publish(0);
}

void pb_progress_phase_begin(pb_phase p)
{
    if (!self) return;
    cur_seq++;
    cur_phase = (int32_t)p;
    publish(1);
}

void pb_progress_phase_end(void)
{
    if (!self) return;
    cur_seq++;
    publish(0);
}

/* --- the observer's side ---------------------------------------------------------- */

/* a is behind b: an earlier step, or an earlier event of the same step */
static bool behind(const snap *a, const snap *b)
{
    return a->step < b->step || (a->step == b->step && a->seq < b->seq);
}

static void where(const snap *s, char *buf, size_t len)
{
    if (s->step < 0)
        snprintf(buf, len, "before its first step");
    else if (s->phase < 0)
        snprintf(buf, len, "at the start of step %lld", (long long)s->step);
    else
        snprintf(buf, len, "%s phase %s of step %lld", s->in_phase ? "in" : "after",
                 pb_phase_name((pb_phase)s->phase), (long long)s->step);
}

/* appends to buf[len] at *used, truncating */
static void add(char *buf, size_t len, size_t *used, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void add(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
    if (*used >= len) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, len - *used, fmt, ap);
    va_end(ap);
    if (n > 0) *used = *used + (size_t)n < len ? *used + (size_t)n : len - 1;
}

/* Whether the rank of slot o has exited. Its pid means something here only
 * in our own PID namespace (ranks of one node may live in containers of
 * their own that share memory); elsewhere it cannot be told. */
static bool exited(const snap *o, const snap *me)
{
    if (o->pid <= 0 || !o->pidns || o->pidns != me->pidns) return false;
    return kill((pid_t)o->pid, 0) != 0 && errno == ESRCH;
}

int pb_progress_describe(char *buf, size_t len)
{
    size_t used = 0;
    if (!buf || !len) return 0;
    buf[0] = '\0';
    snap me;
    if (!self || !read_slot(self, &me)) {
        add(buf, len, &used, GENERIC);
        return 0;
    }
    int64_t now = now_ns();
    int named = 0, late = 0, silent = 0;
    /* room kept for the tail (" and N more", other nodes) */
    size_t room = len > 160 ? len - 160 : 0;
    for (int i = 0; i < n_slots; i++) {
        snap o;
        if (i == self_index) continue;
        if (!read_slot(slots[i], &o)) {
            silent++;
            continue;
        }
        if (!behind(&o, &me)) continue;
        late++;
        if (used >= room) continue;
        char at[96];
        where(&o, at, sizeof at);
        double idle_s = (double)(now - o.beat_ns) * 1e-9;
        add(buf, len, &used, "%srank %d on %s (pid %d) ", named ? "; " : "", o.rank, o.host, o.pid);
        if (exited(&o, &me))
            add(buf, len, &used, "has exited; it was last %s, %.1f s ago", at, idle_s);
        else
            add(buf, len, &used, "is stuck %s (no progress for %.1f s)", at, idle_s);
        named++;
    }
    if (late > named) add(buf, len, &used, "; %d more rank%s behind", late - named, late - named == 1 ? "" : "s");
    if (late == 0) {
        char at[96];
        where(&me, at, sizeof at);
        add(buf, len, &used, GENERIC ": no rank on this node (%s) is behind this one (%s)", self->host, at);
    }
    if (silent) add(buf, len, &used, "; %d rank%s on this node published no progress", silent, silent == 1 ? "" : "s");
    int away = world_ranks - n_slots;
    if (away > 0)
        add(buf, len, &used, "; %d %s could not be inspected", away,
            away == 1 ? "rank on another node" : "ranks on other nodes");
    return late;
}
