/* Allocation counter, loaded with LD_PRELOAD by `make bench-cpu`: every call
 * to malloc, calloc, realloc, reallocarray, aligned_alloc, posix_memalign,
 * memalign, valloc, pvalloc and free (of a non-NULL pointer) is counted and
 * forwarded to the next definition (glibc's) found with dlsym(RTLD_NEXT).
 * Calls from every thread count: a strategy's device threads and the loader
 * thread run during the measured steps too.
 *
 * pb_alloc_count() returns the calls so far. bench declares it as a weak
 * symbol (harness/run.c) and, when it is present, prints the calls made during
 * the measured steps: a step must make none.
 *
 * dlsym itself may allocate (glibc's dlerror buffer) before the real calloc is
 * known; those few requests are served from a static arena and never freed. A
 * thread-local guard stops the counter from counting its own bootstrap. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

static unsigned long calls; /* updated atomically */
static __thread int in_bootstrap;

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);
static void (*real_free)(void *);

/* bootstrap arena for allocations made by dlsym before the real functions are known */
static _Alignas(64) unsigned char arena[1 << 14];
static size_t arena_used;

static int from_arena(const void *p)
{
    return (const unsigned char *)p >= arena && (const unsigned char *)p < arena + sizeof arena;
}

static void *arena_alloc(size_t n)
{
    size_t off = (arena_used + 63) & ~(size_t)63;
    if (off + n > sizeof arena) return NULL;
    arena_used = off + n;
    return arena + off; /* zero: static storage, never reused */
}

static void resolve(void)
{
    if (real_free || in_bootstrap) return;
    in_bootstrap = 1;
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    real_valloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "valloc");
    real_pvalloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "pvalloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    in_bootstrap = 0;
}

static void count(void)
{
    if (!in_bootstrap) __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
}

EXPORT unsigned long pb_alloc_count(void) { return __atomic_load_n(&calls, __ATOMIC_RELAXED); }

EXPORT void *malloc(size_t n)
{
    resolve();
    if (!real_malloc) return arena_alloc(n);
    count();
    return real_malloc(n);
}

EXPORT void *calloc(size_t k, size_t n)
{
    resolve();
    if (!real_calloc) return n && k > SIZE_MAX / n ? NULL : arena_alloc(k * n);
    count();
    return real_calloc(k, n);
}

EXPORT void *realloc(void *p, size_t n)
{
    resolve();
    count();
    if (from_arena(p)) { /* rare: grow an arena block into the real heap */
        size_t avail = (size_t)(arena + sizeof arena - (unsigned char *)p);
        void *q = real_malloc ? real_malloc(n) : arena_alloc(n);
        if (q) memcpy(q, p, n < avail ? n : avail);
        return q;
    }
    return real_realloc ? real_realloc(p, n) : NULL;
}

EXPORT void *reallocarray(void *p, size_t k, size_t n)
{
    if (n && k > SIZE_MAX / n) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, k * n); /* counted there */
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
    resolve();
    count();
    return real_aligned_alloc ? real_aligned_alloc(align, n) : NULL;
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    resolve();
    count();
    return real_posix_memalign ? real_posix_memalign(out, align, n) : ENOMEM;
}

EXPORT void *memalign(size_t align, size_t n)
{
    resolve();
    count();
    return real_memalign ? real_memalign(align, n) : NULL;
}

EXPORT void *valloc(size_t n)
{
    resolve();
    count();
    return real_valloc ? real_valloc(n) : NULL;
}

EXPORT void *pvalloc(size_t n)
{
    resolve();
    count();
    return real_pvalloc ? real_pvalloc(n) : NULL;
}

/* free(NULL) is not counted: it touches no heap, and glibc makes two such
 * calls whenever a thread exits (__libc_thread_freeres), which the loader
 * thread does during the last measured step. */
EXPORT void free(void *p)
{
    if (!p || from_arena(p)) return;
    resolve();
    count();
    if (real_free) real_free(p);
}
