#define _POSIX_C_SOURCE 200809L
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

static int log_rank = 0, log_ranks = 1, log_quiet = 0;

void pb_log_set_rank(int rank, int ranks)
{
    log_rank = rank;
    log_ranks = ranks;
}

void pb_log_set_quiet(int quiet) { log_quiet = quiet; }

static void emit(const char *level, bool where, const char *fmt, va_list ap)
{
    char line[2048];
    int n = 0;
    if (log_ranks > 1 && where) { /* errors say which rank and host */
        char host[256] = "?";
        gethostname(host, sizeof host);
        host[sizeof host - 1] = '\0';
        n = snprintf(line, sizeof line, "bench[rank %d on %s]: %s", log_rank, host, level);
    } else {
        n = snprintf(line, sizeof line, "bench: %s", level);
    }
    if (n < 0 || (size_t)n >= sizeof line) n = 0;
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    /* one write so lines from several ranks do not interleave */
    fwrite(line, 1, len, stderr);
    fflush(stderr);
}

void pb_log_info(const char *fmt, ...)
{
    if (log_quiet || log_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    emit("", false, fmt, ap);
    va_end(ap);
}

void pb_log_warn(const char *fmt, ...)
{
    if (log_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    emit("warning: ", false, fmt, ap);
    va_end(ap);
}

void pb_log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit("error: ", true, fmt, ap);
    va_end(ap);
}

void pb_log_advise(const char *fmt, ...)
{
    if (log_quiet || log_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    emit("warning: ", false, fmt, ap);
    va_end(ap);
}
