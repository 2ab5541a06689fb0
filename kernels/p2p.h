/* Peer access between the devices a one-process strategy drives (dp, mp):
 * which pairs to enable, and what the row's `p2p` column says about them.
 *
 * The decision is a pure function over what a driver layer reports
 * (pb_p2p_driver), so that it can be tested with the layer faked; the cuda
 * backend supplies the real one (cudaDeviceCanAccessPeer,
 * cudaDeviceGetP2PAttribute, cudaDeviceEnablePeerAccess). */
#ifndef PB_P2P_H
#define PB_P2P_H

#include <stdbool.h>
#include <stddef.h>

#include "../harness/shape.h"
#include "../harness/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* From best to worst: a pair's link, and the row's (its worst pair). */
typedef enum pb_p2p_link {
    PB_P2P_NONE = 0,     /* no device links: the cpu backend */
    PB_P2P_SAME_DEVICE,  /* two logical devices on one GPU (--device-map 0,0) */
    PB_P2P_NVLINK,
    PB_P2P_PCIE,
    PB_P2P_HOST_STAGED,  /* no peer access: copies go through host memory */
} pb_p2p_link;

const char *pb_p2p_link_name(pb_p2p_link link);

/* What the driver says about the link from device a to device b. */
typedef struct pb_p2p_facts {
    bool can_access;    /* a may map b's memory (cudaDeviceCanAccessPeer) */
    bool native_atomic; /* cudaDevP2PAttrNativeAtomicSupported */
    int perf_rank;      /* cudaDevP2PAttrPerformanceRank: 0 the best link */
    int nvlink;         /* NVML's word (nvmlDeviceGetP2PStatus, NVLINK index):
                         * 1 over NVLink, 0 not, -1 unknown (no NVML) */
} pb_p2p_facts;

/* The driver layer (faked in tests). enable: a may access b's memory from
 * now on; an already enabled pair is success; PB_ERR_UNAVAILABLE when the
 * driver has no room for another peer of a or b (cudaErrorTooManyPeers),
 * which leaves the pair host-staged; any other failure is the run's. */
typedef struct pb_p2p_driver {
    pb_status (*facts)(int a, int b, pb_p2p_facts *out);
    pb_status (*enable)(int a, int b);
} pb_p2p_driver;

/* The pairs a strategy moves data over: device 0 with every other (dp's
 * scatter, replicate, gather, reduce) or each stage with the next (mp). */
typedef enum pb_p2p_topology { PB_P2P_STAR, PB_P2P_CHAIN } pb_p2p_topology;

typedef struct pb_p2p_plan {
    int n;                         /* distinct pairs of distinct ordinals */
    int a[PB_MAX_STAGES], b[PB_MAX_STAGES];
    pb_p2p_link link[PB_MAX_STAGES];
    bool enabled[PB_MAX_STAGES];   /* both directions enabled */
    pb_p2p_link worst;             /* the row's `p2p` */
} pb_p2p_plan;

/* Link class of a -> b from the facts: NVML's answer where it gave one;
 * without NVML, full native atomics over the link, which NVLink gives and
 * PCIe peer mappings do not, count as NVLink (docs/gpu.md says where that
 * errs). */
pb_p2p_link pb_p2p_classify(const pb_p2p_facts *f);

/* Plans peer access for the n devices (physical ordinals `ordinal`) of a
 * topology without touching a device: the pairs, each once (ordinals
 * repeated by --device-map collapse, same-ordinal pairs are same-device). */
void pb_p2p_plan_pairs(pb_p2p_topology topo, const int *ordinal, int n, pb_p2p_plan *out);

/* Plans, then asks the driver about every pair and enables both directions
 * where it can, logging each pair that has no peer access (host-staged).
 * drv NULL (the cpu): the plan's worst is PB_P2P_NONE. */
pb_status pb_p2p_setup(const pb_p2p_driver *drv, pb_p2p_topology topo, const int *ordinal, int n,
                       pb_p2p_plan *out);

#ifdef __cplusplus
}
#endif
#endif /* PB_P2P_H */
