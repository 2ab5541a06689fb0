#include "blas_info.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

void pb_blas_set_threads(int threads) { openblas_set_num_threads(threads); }

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

void pb_cpu_model(char *out, size_t len)
{
    snprintf(out, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *colon = strchr(line, ':');
        if (!colon) break;
        colon++;
        while (*colon == ' ' || *colon == '\t') colon++;
        snprintf(out, len, "%s", colon);
        out[strcspn(out, "\n")] = '\0';
        break;
    }
    fclose(f);
}
