/* Status codes, their messages, and check macros that keep the first error.
 *
 * Every function that acts returns a pb_status. The first failure records a
 * one-line message (with file:line and the failing library's own words) in a
 * thread-local slot; callers unwind through one cleanup label and main prints
 * the message once. Modelled on NCCL's checks.h. */
#ifndef PB_STATUS_H
#define PB_STATUS_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pb_status {
    PB_OK = 0,
    PB_ERR_USAGE,        /* bad flag or value: exit 2, nothing written */
    PB_ERR_UNAVAILABLE,  /* backend/device asked for is not usable: exit 2 */
    PB_ERR_NOMEM,        /* host or device allocation failed */
    PB_ERR_IO,           /* file could not be read or written */
    PB_ERR_SCHEMA,       /* CSV header differs from this build's schema */
    PB_ERR_NUMERIC,      /* NaN or Inf in the loss or parameters */
    PB_ERR_BACKEND,      /* BLAS/CUDA/cuBLAS library error */
    PB_ERR_COMM,         /* MPI/NCCL error */
    PB_ERR_INVALID,      /* a run that finished but failed validation */
    PB_ERR_INTERNAL,     /* a bug: an invariant did not hold */
    PB_STATUS_COUNT
} pb_status;

/* Short fixed description of a status ("usage error", ...). */
const char *pb_status_name(pb_status s);

/* Process exit code for a status: 0 ok, 2 usage, 1 everything else. */
int pb_status_exit_code(pb_status s);

/* Records the first error of this thread: "file:line: message". Later calls
 * are ignored until pb_error_clear(), so the root cause is what is shown.
 * Returns s so it can be used as `return pb_error(...)`. */
pb_status pb_error_at(pb_status s, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define pb_error(s, ...) pb_error_at((s), __FILE__, __LINE__, __VA_ARGS__)

/* Errors for the user, not the developer (bad flags, no device): no
 * file:line, just what is wrong and what is allowed. */
pb_status pb_user_error(pb_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define pb_usage_error(...) pb_user_error(PB_ERR_USAGE, __VA_ARGS__)
/* A failed host allocation: PB_ERR_NOMEM with the size asked for and the
 * host memory still available (exit 1). */
pb_status pb_host_nomem(size_t bytes);

const char *pb_error_message(void); /* "" when none recorded */
pb_status pb_error_status(void);
void pb_error_clear(void);

/* Propagate a status: on failure set `st` and jump to the cleanup label. */
#define PB_TRY(expr)                                                         \
    do {                                                                     \
        st = (expr);                                                         \
        if (st != PB_OK) goto cleanup;                                       \
    } while (0)

/* Fail with a recorded message when a condition does not hold. */
#define PB_REQUIRE(cond, code, ...)                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            st = pb_error((code), __VA_ARGS__);                              \
            goto cleanup;                                                    \
        }                                                                    \
    } while (0)

/* Fail with a recorded message: for a branch already known to be wrong. */
#define PB_FAIL(code, ...)                                                   \
    do {                                                                     \
        st = pb_error((code), __VA_ARGS__);                                  \
        goto cleanup;                                                        \
    } while (0)

/* Allocation that fails with the size requested in the message. */
/* After malloc/realloc of bytes into ptr: a NULL ptr is pb_host_nomem. */
#define PB_CHECK_ALLOC(ptr, bytes)                                           \
    do {                                                                     \
        if (!(ptr)) {                                                        \
            st = pb_host_nomem(bytes);                                       \
            goto cleanup;                                                    \
        }                                                                    \
    } while (0)

#define PB_ALLOC(ptr, count)                                                 \
    do {                                                                     \
        size_t pb_alloc_n_ = (size_t)(count) * sizeof(*(ptr));               \
        (ptr) = pb_alloc_n_ ? calloc(1, pb_alloc_n_) : NULL;                 \
        if (pb_alloc_n_ && !(ptr)) {                                         \
            st = pb_host_nomem(pb_alloc_n_);                                 \
            goto cleanup;                                                    \
        }                                                                    \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif /* PB_STATUS_H */
