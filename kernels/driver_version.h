/* The NVIDIA kernel module's version, parsed from text. Pure, and built
 * without CUDA too, so that the CPU tests exercise what the cuda backend's
 * device info reads from /proc/driver/nvidia/version. */
#ifndef PB_DRIVER_VERSION_H
#define PB_DRIVER_VERSION_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The driver version from the first line of /proc/driver/nvidia/version,
 * e.g. "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04
 * Release Build ..." gives "580.159.04": the first word after "Kernel Module"
 * that starts with a digit and holds a dot. False when there is none. */
bool pb_parse_driver_version(const char *line, char *out, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* PB_DRIVER_VERSION_H */
