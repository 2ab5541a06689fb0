#include "parse.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The digits after an optional '-' (when allowed): at least one, nothing else. */
static bool plain_integer(const char *text, bool minus)
{
    const char *p = text + (minus && *text == '-');
    if (!*p) return false;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return false;
    return true;
}

bool pb_parse_int(const char *text, long long *out)
{
    if (!plain_integer(text, true)) return false;
    errno = 0;
    *out = strtoll(text, NULL, 10); /* saturates on overflow */
    return true;
}

bool pb_parse_list_int(const char **p, long long *out)
{
    size_t len = strcspn(*p, ",");
    char item[24];
    if (len == 0 || len >= sizeof item) return false;
    memcpy(item, *p, len);
    item[len] = '\0';
    if (!pb_parse_int(item, out)) return false;
    *p += len;
    return **p != ',' || *++*p != '\0';
}

bool pb_parse_u64(const char *text, uint64_t *out)
{
    if (!plain_integer(text, false)) return false;
    errno = 0;
    unsigned long long v = strtoull(text, NULL, 10);
    if (errno == ERANGE) return false;
    *out = (uint64_t)v;
    return true;
}

bool pb_parse_double(const char *text, double *out)
{
    /* strtod would skip leading spaces and take '+', "inf", "nan", hex */
    char c = text[0];
    if (!((c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
    if (strpbrk(text, "xXnNiI")) return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}
