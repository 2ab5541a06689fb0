/* NVTX v3 is header-only: with no tool attached (no NVTX_INJECTION64_PATH,
 * no Nsight) each call is a cheap check of a null function pointer. */
#include "nvtx.h"

#ifdef PB_HAVE_NVTX
#include <nvtx3/nvToolsExt.h>
#include <pthread.h>

static nvtxDomainHandle_t domain;
static pthread_once_t domain_once = PTHREAD_ONCE_INIT;

static void create_domain(void) { domain = nvtxDomainCreateA(PB_NVTX_DOMAIN); }

void pb_nvtx_push(const char *name)
{
    pthread_once(&domain_once, create_domain);
    nvtxEventAttributes_t attr = {0};
    attr.version = NVTX_VERSION;
    attr.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    attr.messageType = NVTX_MESSAGE_TYPE_ASCII;
    attr.message.ascii = name;
    nvtxDomainRangePushEx(domain, &attr);
}

void pb_nvtx_pop(void)
{
    pthread_once(&domain_once, create_domain);
    nvtxDomainRangePop(domain);
}
#endif
