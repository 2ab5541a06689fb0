#define _GNU_SOURCE /* _SC_AVPHYS_PAGES */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const status_names[PB_STATUS_COUNT] = {
    [PB_OK] = "ok",
    [PB_ERR_USAGE] = "usage error",
    [PB_ERR_UNAVAILABLE] = "not available",
    [PB_ERR_NOMEM] = "out of memory",
    [PB_ERR_IO] = "I/O error",
    [PB_ERR_SCHEMA] = "CSV schema mismatch",
    [PB_ERR_NUMERIC] = "non-finite values",
    [PB_ERR_BACKEND] = "backend error",
    [PB_ERR_COMM] = "communication error",
    [PB_ERR_INVALID] = "validation failed",
    [PB_ERR_INTERNAL] = "internal error",
};

static _Thread_local char error_text[1024];
static _Thread_local pb_status error_code = PB_OK;

const char *pb_status_name(pb_status s)
{
    return (s >= 0 && s < PB_STATUS_COUNT) ? status_names[s] : "unknown status";
}

int pb_status_exit_code(pb_status s)
{
    switch (s) {
    case PB_OK: return 0;
    case PB_ERR_USAGE:
    case PB_ERR_UNAVAILABLE:
    case PB_ERR_SCHEMA: return 2;
    default: return 1;
    }
}

static void record(pb_status s, const char *prefix, const char *fmt, va_list ap)
{
    if (error_code != PB_OK) return; /* keep the first, root-cause error */
    error_code = s;
    size_t n = (size_t)snprintf(error_text, sizeof error_text, "%s", prefix);
    if (n < sizeof error_text) vsnprintf(error_text + n, sizeof error_text - n, fmt, ap);
}

pb_status pb_error_at(pb_status s, const char *file, int line, const char *fmt, ...)
{
    char prefix[256];
    const char *base = strrchr(file, '/');
    snprintf(prefix, sizeof prefix, "%s:%d: ", base ? base + 1 : file, line);
    va_list ap;
    va_start(ap, fmt);
    record(s, prefix, fmt, ap);
    va_end(ap);
    return s;
}

pb_status pb_user_error(pb_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(s, "", fmt, ap);
    va_end(ap);
    return s;
}

/* MiB the kernel could give without swapping: MemAvailable (free memory
 * plus reclaimable caches), else free memory alone. */
static double host_available_mib(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    if (f) fclose(f);
    if (kb >= 0) return (double)kb / 1024.0;
    long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (double)pages * (double)page / 1048576.0 : 0.0;
}

pb_status pb_host_nomem(size_t bytes)
{
    double avail_mb = host_available_mib();
    return pb_user_error(PB_ERR_NOMEM, "out of host memory: allocating %zu bytes (%.1f MiB) failed with %.0f MiB available",
                         bytes, (double)bytes / 1048576.0, avail_mb);
}

const char *pb_error_message(void) { return error_text; }
pb_status pb_error_status(void) { return error_code; }

void pb_error_clear(void)
{
    error_code = PB_OK;
    error_text[0] = '\0';
}
