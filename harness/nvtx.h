/* NVTX v3 ranges in the "parbench" domain, or no-ops when the headers were
 * not found at build time (PB_HAVE_NVTX unset). The #if lives here only. */
#ifndef PB_NVTX_H
#define PB_NVTX_H

#ifdef __cplusplus
extern "C" {
#endif

#define PB_NVTX_DOMAIN "parbench"

#ifdef PB_HAVE_NVTX
void pb_nvtx_push(const char *name);
void pb_nvtx_pop(void);
#else
static inline void pb_nvtx_push(const char *name) { (void)name; }
static inline void pb_nvtx_pop(void) {}
#endif

#ifdef __cplusplus
}
#endif
#endif /* PB_NVTX_H */
