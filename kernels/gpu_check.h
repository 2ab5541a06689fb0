/* Whether a GPU runs below what it can: its PCIe link trained narrower than
 * its width, its SM clock set below its default, or the driver slowing it
 * (thermal, power brake, hardware slowdown). The facts come from sysfs (the
 * link, no library needed) and NVML when it can be loaded (clocks;
 * libnvidia-ml is opened at run time, never linked); the verdict is a pure
 * function of them, built without CUDA too, so the CPU tests judge it
 * (docs/csv-schema.md, "gpu_check"). */
#ifndef PB_GPU_CHECK_H
#define PB_GPU_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pb_gpu_facts {
    bool have_link;               /* the link widths were read */
    int link_width, link_width_max;
    bool have_clocks;             /* NVML answered */
    unsigned sm_clock_app, sm_clock_default; /* applications clock and its default, MHz */
    unsigned long long throttle;  /* NVML's clocks-event (throttle) reasons now */
} pb_gpu_facts;

/* NVML's reasons that mean the GPU is held below its clocks (hardware
 * slowdown, software and hardware thermal, power brake); not the power cap
 * a busy GPU reaches, nor idle. */
#define PB_GPU_SLOWDOWN_MASK 0xE8ULL

/* "pcie x16 of x16; sm clock 1980 of 1980 MHz"; each finding below its
 * maximum marked "(below)", a slowdown "throttled (below): hw-thermal";
 * what could not be read says so ("pcie unknown", "sm clock unknown (no
 * NVML)"). */
void pb_gpu_check_text(const pb_gpu_facts *f, char *out, size_t len);

/* Reads the facts of the GPU at PCI bus id "0000:3b:00.0" (any case), as
 * cudaDeviceGetPCIBusId gives it. */
void pb_gpu_facts_read(const char *pci_bus_id, pb_gpu_facts *f);

#ifdef __cplusplus
}
#endif
#endif /* PB_GPU_CHECK_H */
