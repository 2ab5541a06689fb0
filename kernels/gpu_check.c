#define _POSIX_C_SOURCE 200809L
#include "gpu_check.h"

#include <ctype.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static const struct {
    unsigned long long bit;
    const char *name;
} reasons[] = {{0x8ULL, "hw-slowdown"}, {0x20ULL, "sw-thermal"}, {0x40ULL, "hw-thermal"}, {0x80ULL, "power-brake"}};

void pb_gpu_check_text(const pb_gpu_facts *f, char *out, size_t len)
{
    size_t n = 0;
#define PUT(...) (n += (size_t)snprintf(out + (n < len ? n : len), n < len ? len - n : 0, __VA_ARGS__))
    if (f->have_link && f->link_width > 0 && f->link_width_max > 0)
        PUT("pcie x%d of x%d%s", f->link_width, f->link_width_max,
            f->link_width < f->link_width_max ? " (below)" : "");
    else
        PUT("pcie unknown");
    if (!f->have_clocks) {
        PUT("; sm clock unknown (no NVML)");
        return;
    }
    if (f->sm_clock_app && f->sm_clock_default)
        PUT("; sm clock %u of %u MHz%s", f->sm_clock_app, f->sm_clock_default,
            f->sm_clock_app < f->sm_clock_default ? " (below)" : "");
    if (f->throttle & PB_GPU_SLOWDOWN_MASK) {
        PUT("; throttled (below):");
        const char *sep = " ";
        for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
            if (f->throttle & reasons[i].bit) {
                PUT("%s%s", sep, reasons[i].name);
                sep = ", ";
            }
    }
#undef PUT
}

static bool read_int(const char *dir, const char *file, int *out)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fscanf(f, "%d", out) == 1;
    fclose(f);
    return ok;
}

/* NVML, opened at run time: its prototypes, as nvml.h declares them */
typedef int (*nvml_void_fn)(void);
typedef int (*nvml_by_bus_fn)(const char *, void **);
typedef int (*nvml_clock_fn)(void *, int, unsigned *);
typedef int (*nvml_reasons_fn)(void *, unsigned long long *);
#define NVML_CLOCK_SM 1

static void read_nvml(const char *bus, pb_gpu_facts *f)
{
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    nvml_void_fn init = (nvml_void_fn)dlsym(lib, "nvmlInit_v2"), shutdown = (nvml_void_fn)dlsym(lib, "nvmlShutdown");
    nvml_by_bus_fn by_bus = (nvml_by_bus_fn)dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2");
    nvml_clock_fn app = (nvml_clock_fn)dlsym(lib, "nvmlDeviceGetApplicationsClock");
    nvml_clock_fn dflt = (nvml_clock_fn)dlsym(lib, "nvmlDeviceGetDefaultApplicationsClock");
    nvml_reasons_fn why = (nvml_reasons_fn)dlsym(lib, "nvmlDeviceGetCurrentClocksThrottleReasons");
    void *dev = NULL;
    if (init && shutdown && by_bus && app && dflt && init() == 0) {
        if (by_bus(bus, &dev) == 0) {
            f->have_clocks = true;
            if (app(dev, NVML_CLOCK_SM, &f->sm_clock_app) != 0) f->sm_clock_app = 0;
            if (dflt(dev, NVML_CLOCK_SM, &f->sm_clock_default) != 0) f->sm_clock_default = 0;
            if (!why || why(dev, &f->throttle) != 0) f->throttle = 0;
        }
        shutdown();
    }
    dlclose(lib);
}

void pb_gpu_facts_read(const char *pci_bus_id, pb_gpu_facts *f)
{
    memset(f, 0, sizeof *f);
    /* sysfs names the device in lower case: "0000:3b:00.0" */
    char bus[64], dir[128];
    size_t i = 0;
    for (; pci_bus_id[i] && i + 1 < sizeof bus; i++) bus[i] = (char)tolower((unsigned char)pci_bus_id[i]);
    bus[i] = '\0';
    snprintf(dir, sizeof dir, "/sys/bus/pci/devices/%s", bus);
    f->have_link = read_int(dir, "current_link_width", &f->link_width) &&
                   read_int(dir, "max_link_width", &f->link_width_max);
    read_nvml(pci_bus_id, f);
}
