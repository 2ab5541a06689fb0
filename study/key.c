/* The configuration key: see key.h. */
#define _POSIX_C_SOURCE 200809L
#include "key.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The environment's columns; listed here rather than by kind, as other ENV
 * columns say when a run was made or follow from its configuration. */
static const pb_column env_columns[] = {PB_COL_HOST,   PB_COL_CPU_MODEL,    PB_COL_GPU_NAME, PB_COL_DRIVER,
                                        PB_COL_CUDA_RUNTIME, PB_COL_CUBLAS, PB_COL_NCCL,     PB_COL_MPI,
                                        PB_COL_BLAS,   PB_COL_BLAS_VERSION, PB_COL_COMPILER, PB_COL_GIT_REV};

bool pb_key_uses(pb_key_use use, pb_column c)
{
    if (use == PB_KEY_ENV) {
        for (size_t i = 0; i < sizeof env_columns / sizeof env_columns[0]; i++)
            if (env_columns[i] == c) return true;
        return false;
    }
    pb_key_role role = pb_column_key(c);
    return role == PB_KEY_ALL || (use == PB_KEY_SWEEP && role == PB_KEY_RESUME);
}

void pb_key_init(pb_key *k, pb_key_use use, const pb_csv *a, const pb_csv *b)
{
    k->n = 0;
    for (int c = 0; c < PB_COL_COUNT; c++) {
        if (!pb_key_uses(use, (pb_column)c)) continue;
        int ia = pb_csv_find(a, pb_column_name((pb_column)c));
        int ib = b ? pb_csv_find(b, pb_column_name((pb_column)c)) : ia;
        if (ia < 0 || ib < 0) continue;
        k->col[k->n] = (pb_column)c;
        k->ia[k->n] = ia;
        k->ib[k->n] = ib;
        k->n++;
    }
}

void pb_key_drop(pb_key *k, pb_column c)
{
    size_t m = 0;
    for (size_t i = 0; i < k->n; i++) {
        if (k->col[i] == c) continue;
        k->col[m] = k->col[i];
        k->ia[m] = k->ia[i];
        k->ib[m] = k->ib[i];
        m++;
    }
    k->n = m;
}

const char *pb_key_canonical(const char *v, char *buf, size_t len)
{
    double x;
    if (!pb_csv_number(v, &x)) return v;
    snprintf(buf, len, "%.15g", x == 0 ? 0.0 : x); /* -0 is 0 */
    return buf;
}

int pb_key_value_cmp(const char *x, const char *y)
{
    double a, b;
    bool na = pb_csv_number(x, &a), nb = pb_csv_number(y, &b);
    if (na && nb) {
        /* through the canonical text, so equal here means equal there */
        char ba[64], bb[64];
        a = strtod(pb_key_canonical(x, ba, sizeof ba), NULL);
        b = strtod(pb_key_canonical(y, bb, sizeof bb), NULL);
        return (a > b) - (a < b);
    }
    if (na != nb) return na ? -1 : 1;
    return strcmp(x, y);
}

int pb_key_cmp(const pb_key *k, const pb_csv *a, size_t ra, const pb_csv *b, size_t rb)
{
    for (size_t i = 0; i < k->n; i++) {
        int d = pb_key_value_cmp(pb_csv_get(a, ra, (size_t)k->ia[i]), pb_csv_get(b, rb, (size_t)k->ib[i]));
        if (d) return d;
    }
    return 0;
}

size_t pb_key_env_diff(const pb_key *k, const pb_csv *a, size_t ra, const pb_csv *b, size_t rb, size_t *diff)
{
    size_t n = 0;
    for (size_t i = 0; i < k->n; i++) {
        size_t ca = (size_t)k->ia[i], cb = (size_t)k->ib[i];
        const char *x = pb_csv_get(a, ra, ca), *y = pb_csv_get(b, rb, cb);
        if (*x && *y && pb_key_value_cmp(x, y) != 0) diff[n++] = i;
    }
    return n;
}
