#include "comm_csv.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PB_COMM_COLUMN_NAME(id, name) name,
static const char *const names[PB_CC_N] = {PB_COMM_COLUMNS(PB_COMM_COLUMN_NAME)};
#undef PB_COMM_COLUMN_NAME

const char *pb_comm_column_name(pb_comm_column c) { return c < PB_CC_N ? names[c] : "?"; }

const char *pb_comm_csv_header(void)
{
    static char header[2048];
    if (!header[0]) {
        size_t n = 0;
        for (int c = 0; c < PB_CC_N; c++)
            n += (size_t)snprintf(header + n, sizeof header - n, "%s%s", c ? "," : "", names[c]);
        snprintf(header + n, sizeof header - n, "\n");
    }
    return header;
}

void pb_comm_record_set(pb_comm_record *r, pb_comm_column c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pb_results_field_vset(r->v[c], sizeof r->v[c], fmt, ap);
    va_end(ap);
}

void pb_comm_record_num(pb_comm_record *r, pb_comm_column c, double v)
{
    if (isfinite(v)) pb_comm_record_set(r, c, "%.6g", v);
    else r->v[c][0] = '\0';
}

bool pb_comm_record_add(char **buf, size_t *len, size_t *cap, const pb_comm_record *r)
{
    size_t most = (size_t)PB_CC_N * (2 * PB_FIELD_MAX + 3) + 2;
    if (*len + most + 1 > *cap) {
        size_t want = (*len + most + 1) * 2;
        char *p = realloc(*buf, want);
        if (!p) return false;
        *buf = p;
        *cap = want;
    }
    size_t n = pb_results_format_fields(r->v[0], sizeof r->v[0], PB_CC_N, *buf + *len, *cap - *len);
    if (!n) return false;
    *len += n;
    return true;
}
