#define _POSIX_C_SOURCE 200809L
#include "envvars.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Variables read by the libraries on the measured path: collectives and
 * their transports, MPI implementations, the CUDA runtime and cuBLAS,
 * OpenMP runtimes and BLAS libraries (docs/csv-schema.md keeps this list). */
static const char *const prefixes[] = {
    "NCCL_",   "OMPI_MCA_", "UCX_",     "FI_",  "PSM2_",   "PSM3_", "HCOLL_", "I_MPI_", "MPIR_CVAR_",
    "MV2_",    "CUDA_",     "CUBLAS_",  "CUBLASLT_", "OMP_", "GOMP_", "KMP_", "OPENBLAS_", "GOTO_",
    "MKL_",    "BLIS_",
};
static const char *const names[] = {
    "LD_PRELOAD", "GLIBC_TUNABLES", "NVIDIA_TF32_OVERRIDE", "NVIDIA_VISIBLE_DEVICES",
    /* bench's own knobs that change a run (test-only; docs/reliability.md) */
    "PB_FAULT", "PB_NCCL_STREAM_PRIORITY", "PB_TEST_STAGE_INPUTS", "PB_TEST_LOADER_STATS",
};
/* Left out although listed above: where CUDA is installed (build tools read
 * it, the runtime does not), and what an MPI launcher sets in every rank for
 * its own wiring, different in every job (ports, job ids, session folders),
 * or said by another column (oversubscribed). */
static const char *const left_out[] = {
    "CUDA_HOME",  "CUDA_PATH",  "CUDA_ROOT", "CUDA_VERSION", "OMPI_MCA_orte_", "OMPI_MCA_ess", "OMPI_MCA_pmix",
    "OMPI_MCA_initial_wdir", "OMPI_MCA_shmem_RUNTIME_QUERY_hint", "OMPI_MCA_mpi_oversubscribe",
    "OMPI_MCA_rmaps_base_oversubscribe",
};
static const char *const secret_words[] = {"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH"};
static const char *const token_prefixes[] = {"ghp_", "gho_", "ghs_", "ghu_", "github_pat_", "glpat-", "xoxb-",
                                             "xoxp-", "xoxa-", "sk-",  "AKIA", "ASIA", "eyJ"};

#define COUNT(a) (sizeof(a) / sizeof(a)[0])

static bool starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

bool pb_envvars_secret_name(const char *name)
{
    char upper[256];
    size_t n = 0;
    for (; name[n] && n + 1 < sizeof upper; n++) upper[n] = (char)toupper((unsigned char)name[n]);
    upper[n] = '\0';
    for (size_t i = 0; i < COUNT(secret_words); i++)
        if (strstr(upper, secret_words[i])) return true;
    return false;
}

/* base64 and hex; not '-', which splits UUIDs (GPU-8a3f0c52-...) into short runs */
static bool token_char(char c) { return isalnum((unsigned char)c) || c == '+' || c == '/' || c == '=' || c == '_'; }

bool pb_envvars_secret_value(const char *value)
{
    for (size_t i = 0; i < COUNT(token_prefixes); i++)
        if (starts(value, token_prefixes[i])) return true;
    /* scheme://user:password@host */
    const char *scheme = strstr(value, "://");
    if (scheme) {
        const char *at = strchr(scheme + 3, '@'), *colon = strchr(scheme + 3, ':');
        const char *slash = strchr(scheme + 3, '/');
        if (at && colon && colon < at && (!slash || at < slash)) return true;
    }
    /* a long random-looking run: GPU UUIDs and paths have no upper case
     * and digits and lower case together over 32 characters */
    for (const char *p = value; *p;) {
        size_t n = 0;
        bool up = false, low = false, digit = false;
        while (p[n] && token_char(p[n])) {
            up |= isupper((unsigned char)p[n]) != 0;
            low |= islower((unsigned char)p[n]) != 0;
            digit |= isdigit((unsigned char)p[n]) != 0;
            n++;
        }
        if (n >= 32 && up && low && digit) return true;
        p += n ? n : 1;
    }
    return false;
}

bool pb_envvars_listed(const char *name)
{
    bool listed = false;
    for (size_t i = 0; i < COUNT(prefixes) && !listed; i++) listed = starts(name, prefixes[i]);
    for (size_t i = 0; i < COUNT(names) && !listed; i++) listed = strcmp(name, names[i]) == 0;
    for (size_t i = 0; i < COUNT(left_out) && listed; i++) listed = !starts(name, left_out[i]);
    /* a name only of what environment names are made of: nothing to escape */
    for (const char *p = name; *p && listed; p++) listed = isalnum((unsigned char)*p) || *p == '_';
    return listed && *name && !pb_envvars_secret_name(name);
}

/* "NAME=value" by name: '=' sorts before every name character */
static int by_name(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    for (;; x++, y++) {
        char cx = *x == '=' ? '\0' : *x, cy = *y == '=' ? '\0' : *y;
        if (cx != cy) return (unsigned char)cx < (unsigned char)cy ? -1 : 1;
        if (!cx) return 0;
    }
}

/* One escaped entry into buf; its length (0: did not fit). */
static size_t entry(const char *var, char *buf, size_t len)
{
    size_t n = 0;
    for (const char *p = var; *p; p++) {
        char esc[8];
        bool value = p > var && strchr(var, '=') < p;
        unsigned char c = (unsigned char)*p;
        if (value && (c == '\\' || c == ';')) snprintf(esc, sizeof esc, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) snprintf(esc, sizeof esc, "\\x%02x", c);
        else snprintf(esc, sizeof esc, "%c", c);
        size_t m = strlen(esc);
        if (n + m >= len) return 0;
        memcpy(buf + n, esc, m);
        n += m;
    }
    buf[n] = '\0';
    return n;
}

size_t pb_envvars_format(char *const *env, char *out, size_t len)
{
    if (len) out[0] = '\0';
    size_t count = 0, cap = 0;
    for (char *const *e = env; e && *e; e++) cap++;
    const char **pick = cap ? malloc(cap * sizeof *pick) : NULL;
    if (!pick || len < 4) {
        free(pick);
        return 0;
    }
    for (char *const *e = env; *e; e++) {
        const char *eq = strchr(*e, '=');
        char name[256];
        if (!eq || (size_t)(eq - *e) >= sizeof name) continue;
        snprintf(name, sizeof name, "%.*s", (int)(eq - *e), *e);
        if (pb_envvars_listed(name) && !pb_envvars_secret_value(eq + 1)) pick[count++] = *e;
    }
    qsort(pick, count, sizeof *pick, by_name);
    size_t n = 0, kept = 0;
    char one[4096];
    for (size_t i = 0; i < count; i++) {
        size_t m = entry(pick[i], one, sizeof one);
        /* room for this entry, its ';' and, if more follow, ";..." after it */
        size_t need = (n ? 1 : 0) + m + (i + 1 < count ? 4 : 0);
        if (!m || n + need >= len) {
            snprintf(out + n, len - n, "%s...", n ? ";" : "");
            break;
        }
        n += (size_t)snprintf(out + n, len - n, "%s%s", n ? ";" : "", one);
        kept++;
    }
    free(pick);
    return kept;
}

bool pb_envvars_next(const char **p, char *name, size_t nlen, char *value, size_t vlen, bool *cut)
{
    const char *s = *p;
    *cut = false;
    if (nlen) name[0] = '\0';
    if (vlen) value[0] = '\0';
    if (!s || !*s) return false;
    size_t in = 0, iv = 0;
    bool in_value = false;
    while (*s && *s != ';') {
        char c = *s++;
        if (!in_value && c == '=') {
            in_value = true;
            continue;
        }
        if (c == '\\' && *s) {
            if (*s == 'x' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
                char hex[3] = {s[1], s[2], '\0'};
                c = (char)strtol(hex, NULL, 16);
                s += 3;
            } else {
                c = *s++;
            }
        }
        if (in_value && iv + 1 < vlen) value[iv++] = c;
        if (!in_value && in + 1 < nlen) name[in++] = c;
    }
    if (nlen) name[in] = '\0';
    if (vlen) value[iv] = '\0';
    if (*s == ';') s++;
    *p = s;
    if (!in_value && strcmp(name, "...") == 0) {
        *cut = true;
        name[0] = '\0';
    }
    return true;
}

int pb_envvars_get(const char *list, const char *name, char *value, size_t vlen)
{
    char n[256];
    bool cut = false, any_cut = false;
    if (vlen) value[0] = '\0';
    while (pb_envvars_next(&list, n, sizeof n, value, vlen, &cut)) {
        any_cut |= cut;
        if (!cut && strcmp(n, name) == 0) return 1;
    }
    if (vlen) value[0] = '\0';
    return any_cut ? -1 : 0;
}
