/* A run's identity: see runid.h. */
#define _POSIX_C_SOURCE 200809L
#include "runid.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool pb_label_valid(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= PB_LABEL_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* Two runs started in the same second on one host differ in pid; the
 * random part covers pid reuse across containers that share a host name. */
static unsigned random16(void)
{
    unsigned short v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &v, sizeof v) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = (unsigned short)(ts.tv_nsec ^ (getpid() << 4));
    }
    if (fd >= 0) close(fd);
    return v;
}

pb_status pb_run_id_init(char *out, size_t len)
{
    const char *given = getenv(PB_RUN_ID_ENV);
    if (given && *given) {
        if (!pb_label_valid(given))
            return pb_usage_error("%s='%.*s' is not a run id; allowed: %s", PB_RUN_ID_ENV, PB_LABEL_MAX, given,
                                  PB_LABEL_ALLOWED);
        snprintf(out, len, "%s", given);
        return PB_OK;
    }
    char host[256] = "host", clean[24];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    /* the host's first label, in the label's characters */
    size_t n = 0;
    for (const char *p = host; *p && *p != '.' && n + 1 < sizeof clean; p++)
        clean[n++] = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", *p) ? *p : '_';
    clean[n] = '\0';
    if (!n) snprintf(clean, sizeof clean, "host");
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, len, "%s-%s-%ld-%04x", stamp, clean, (long)getpid(), random16());
    setenv(PB_RUN_ID_ENV, out, 1);
    return PB_OK;
}

pb_status pb_run_id_expand(const char *flag, char *path, size_t len, const char *id)
{
    static const char key[] = "{run_id}";
    if (!strstr(path, key)) return PB_OK;
    char *buf = malloc(len);
    if (!buf) return pb_host_nomem(len);
    size_t n = 0;
    bool fits = true;
    for (const char *p = path; *p && fits;) {
        const char *at = strstr(p, key);
        size_t lit = at ? (size_t)(at - p) : strlen(p);
        size_t add = lit + (at ? strlen(id) : 0);
        if (n + add >= len) fits = false;
        else {
            memcpy(buf + n, p, lit);
            if (at) memcpy(buf + n + lit, id, strlen(id));
            n += add;
        }
        p += lit + (at ? sizeof key - 1 : 0);
    }
    pb_status st = PB_OK;
    if (fits) {
        buf[n] = '\0';
        memcpy(path, buf, n + 1);
    } else {
        st = pb_usage_error("%s: path longer than %zu bytes once {run_id} is %s", flag, len - 1, id);
    }
    free(buf);
    return st;
}
