#include "driver_version.h"

#include <string.h>

bool pb_parse_driver_version(const char *line, char *out, size_t len)
{
    const char *p = strstr(line, "Kernel Module");
    if (!p) return false;
    p += strlen("Kernel Module");
    while (*p) {
        while (*p == ' ' || *p == '\t') p++;
        size_t n = strcspn(p, " \t\n");
        if (n == 0) break;
        if (*p >= '0' && *p <= '9' && memchr(p, '.', n) && n < len) {
            memcpy(out, p, n);
            out[n] = '\0';
            return true;
        }
        p += n;
    }
    return false;
}
