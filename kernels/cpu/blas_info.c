#include "blas_info.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

void pb_blas_set_threads(int threads) { openblas_set_num_threads(threads); }

const char *pb_blas_core(void) { return openblas_get_corename(); }

bool pb_blas_dynamic(void)
{
    const char *cfg = openblas_get_config();
    return cfg && strstr(cfg, "DYNAMIC_ARCH") != NULL;
}

const char *pb_blas_name(void)
{
    static char name[64];
    if (!name[0]) snprintf(name, sizeof name, "OpenBLAS (%s)", openblas_get_corename());
    return name;
}

/* openblas_get_config() reads "OpenBLAS 0.3.21 DYNAMIC_ARCH ..."; the second
 * word is the version of the library actually loaded. */
const char *pb_blas_version(void)
{
    static char version[32];
    if (!version[0]) {
        const char *cfg = openblas_get_config();
        const char *sp = cfg ? strchr(cfg, ' ') : NULL;
        if (sp) sscanf(sp + 1, "%31s", version);
        if (!version[0]) snprintf(version, sizeof version, "unknown");
    }
    return version;
}

/* The value of the first /proc/cpuinfo line starting with key into out;
 * false when there is none. */
static bool cpuinfo_value(const char *key, char *out, size_t len)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    char line[8192]; /* a flags line is about 1.5 KiB */
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, strlen(key)) != 0) continue;
        const char *colon = strchr(line, ':');
        if (!colon) break;
        colon++;
        while (*colon == ' ' || *colon == '\t') colon++;
        snprintf(out, len, "%s", colon);
        out[strcspn(out, "\n")] = '\0';
        found = true;
    }
    fclose(f);
    return found;
}

void pb_cpu_flags(char *out, size_t len)
{
    if (!cpuinfo_value("flags", out, len)) snprintf(out, len, "%s", "");
}

void pb_cpu_model(char *out, size_t len)
{
    if (!cpuinfo_value("model name", out, len)) snprintf(out, len, "unknown CPU");
}
