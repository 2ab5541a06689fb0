/* NVTX recorder: an NVTX v3 injection library for the tests.
 *
 * NVTX v3 is header-only: the first NVTX call a program makes runs the
 * loader in nvtxDetail/nvtxInit.h, which dlopen()s the library named by
 * NVTX_INJECTION64_PATH and calls its exported InitializeInjectionNvtx2()
 * with the program's export-table getter. This library asks that getter for
 * NVTX_ETID_CALLBACKS, gets the function-pointer tables of the CORE (global
 * ranges) and CORE2 (domain) modules with GetModuleFunctionTable(), and
 * stores its own functions in the slots; the NVTX calls in the program then
 * land here. Slots left alone become no-ops.
 *
 * Every event is appended as one line, with one write(), to the file named
 * by NVTX_RECORD_FILE ("%p" in the name becomes the process id), so the file
 * is complete even when the program crashes, and processes sharing one file
 * interleave whole lines:
 *
 *   domain parbench            nvtxDomainCreateA
 *   push parbench 1 step 0     nvtxDomainRangePushEx: domain, depth, message
 *   pop parbench 1             nvtxDomainRangePop: domain, depth it closed
 *   mark parbench load         nvtxDomainMarkEx
 *   start parbench 7 msg       nvtxDomainRangeStartEx: range id, message
 *   end parbench 7             nvtxDomainRangeEnd
 *
 * Ranges outside any domain (nvtxRangePushA and friends) are recorded under
 * the domain name "(default)", so a test can see them. The depth counts per
 * thread and per domain, as NVTX's push/pop stacks do; a pop with nothing
 * open is recorded with depth 0.
 *
 * Build: cc -fPIC -shared -I$CUDA_HOME/include nvtx_recorder.c -o libnvtx_recorder.so
 */
#define _GNU_SOURCE
#define NVTX_NO_IMPL /* a tool: the types only, not the loader */
#include <nvtx3/nvToolsExt.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#define REC_EXPORT __attribute__((visibility("default")))
#define REC_MAX_DOMAINS 64
#define REC_MAX_STACKS 32 /* domains one thread may have ranges open in */

typedef struct rec_domain {
    char *name;
} rec_domain;

static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static int rec_fd = -1;
static rec_domain rec_default = {.name = "(default)"};
static rec_domain *rec_domains[REC_MAX_DOMAINS];
static int rec_n_domains;
static unsigned long long rec_next_range = 1;

/* Per thread: open-range depth per domain. */
static __thread struct {
    const rec_domain *domain;
    int depth;
} rec_stacks[REC_MAX_STACKS];

static const rec_domain *dom(nvtxDomainHandle_t h)
{
    return h ? (const rec_domain *)h : &rec_default;
}

static int *depth_of(const rec_domain *d)
{
    for (int i = 0; i < REC_MAX_STACKS; i++) {
        if (rec_stacks[i].domain == d) return &rec_stacks[i].depth;
        if (!rec_stacks[i].domain) {
            rec_stacks[i].domain = d;
            return &rec_stacks[i].depth;
        }
    }
    static __thread int overflow;
    return &overflow;
}

/* Appends one line (printf format, newline added) with a single write(). */
__attribute__((format(printf, 1, 2))) static void emit(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    for (int i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
    line[n++] = '\n';
    pthread_mutex_lock(&rec_lock);
    if (rec_fd >= 0) {
        ssize_t w = write(rec_fd, line, (size_t)n);
        (void)w;
    }
    pthread_mutex_unlock(&rec_lock);
}

/* The message of an event, as text in buf. */
static const char *message_of(const nvtxEventAttributes_t *a, char *buf, size_t len)
{
    if (!a) return "";
    switch (a->messageType) {
    case NVTX_MESSAGE_TYPE_ASCII:
        return a->message.ascii ? a->message.ascii : "";
    case NVTX_MESSAGE_TYPE_UNICODE:
        if (!a->message.unicode) return "";
        snprintf(buf, len, "%ls", a->message.unicode);
        return buf;
    case NVTX_MESSAGE_TYPE_REGISTERED:
        /* our string handles are the strings themselves */
        return a->message.registered ? (const char *)a->message.registered : "";
    default:
        return "";
    }
}

/* ---- domain functions (module CORE2) ---------------------------------- */

static nvtxDomainHandle_t NVTX_API rec_domain_create_a(const char *name)
{
    if (!name) name = "";
    rec_domain *d = NULL;
    pthread_mutex_lock(&rec_lock);
    for (int i = 0; i < rec_n_domains && !d; i++)
        if (strcmp(rec_domains[i]->name, name) == 0) d = rec_domains[i];
    bool created = false;
    if (!d && rec_n_domains < REC_MAX_DOMAINS && (d = calloc(1, sizeof *d)) && (d->name = strdup(name))) {
        rec_domains[rec_n_domains++] = d;
        created = true;
    }
    pthread_mutex_unlock(&rec_lock);
    if (!d) return NULL;
    if (created) emit("domain %s", d->name);
    return (nvtxDomainHandle_t)d;
}

static nvtxDomainHandle_t NVTX_API rec_domain_create_w(const wchar_t *name)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%ls", name ? name : L"");
    return rec_domain_create_a(buf);
}

static void NVTX_API rec_domain_destroy(nvtxDomainHandle_t h)
{
    emit("destroy %s", dom(h)->name); /* kept: later events may still name it */
}

static int NVTX_API rec_domain_push(nvtxDomainHandle_t h, const nvtxEventAttributes_t *a)
{
    char buf[512];
    const rec_domain *d = dom(h);
    int *depth = depth_of(d);
    int level = ++*depth;
    emit("push %s %d %s", d->name, level, message_of(a, buf, sizeof buf));
    return level - 1; /* NVTX: the depth the range starts at, from 0 */
}

static int NVTX_API rec_domain_pop(nvtxDomainHandle_t h)
{
    const rec_domain *d = dom(h);
    int *depth = depth_of(d);
    int level = *depth;
    if (level > 0) --*depth;
    emit("pop %s %d", d->name, level);
    return level > 0 ? level - 1 : -1;
}

static void NVTX_API rec_domain_mark(nvtxDomainHandle_t h, const nvtxEventAttributes_t *a)
{
    char buf[512];
    emit("mark %s %s", dom(h)->name, message_of(a, buf, sizeof buf));
}

static nvtxRangeId_t NVTX_API rec_domain_start(nvtxDomainHandle_t h, const nvtxEventAttributes_t *a)
{
    char buf[512];
    pthread_mutex_lock(&rec_lock);
    unsigned long long id = rec_next_range++;
    pthread_mutex_unlock(&rec_lock);
    emit("start %s %llu %s", dom(h)->name, id, message_of(a, buf, sizeof buf));
    return id;
}

static void NVTX_API rec_domain_end(nvtxDomainHandle_t h, nvtxRangeId_t id)
{
    emit("end %s %llu", dom(h)->name, (unsigned long long)id);
}

static nvtxStringHandle_t NVTX_API rec_register_a(nvtxDomainHandle_t h, const char *s)
{
    (void)h;
    return (nvtxStringHandle_t)strdup(s ? s : ""); /* lives for the process */
}

static nvtxStringHandle_t NVTX_API rec_register_w(nvtxDomainHandle_t h, const wchar_t *s)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%ls", s ? s : L"");
    return rec_register_a(h, buf);
}

/* ---- global-domain functions (module CORE) ---------------------------- */

static int NVTX_API rec_push_ex(const nvtxEventAttributes_t *a) { return rec_domain_push(NULL, a); }

static int NVTX_API rec_push_a(const char *msg)
{
    nvtxEventAttributes_t a = {0};
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = msg;
    return rec_domain_push(NULL, &a);
}

static int NVTX_API rec_push_w(const wchar_t *msg)
{
    nvtxEventAttributes_t a = {0};
    a.messageType = NVTX_MESSAGE_TYPE_UNICODE;
    a.message.unicode = msg;
    return rec_domain_push(NULL, &a);
}

static int NVTX_API rec_pop(void) { return rec_domain_pop(NULL); }

static void NVTX_API rec_mark_ex(const nvtxEventAttributes_t *a) { rec_domain_mark(NULL, a); }

static void NVTX_API rec_mark_a(const char *msg)
{
    emit("mark %s %s", rec_default.name, msg ? msg : "");
}

static void NVTX_API rec_mark_w(const wchar_t *msg)
{
    emit("mark %s %ls", rec_default.name, msg ? msg : L"");
}

static nvtxRangeId_t NVTX_API rec_start_ex(const nvtxEventAttributes_t *a) { return rec_domain_start(NULL, a); }

static nvtxRangeId_t NVTX_API rec_start_a(const char *msg)
{
    nvtxEventAttributes_t a = {0};
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = msg;
    return rec_domain_start(NULL, &a);
}

static nvtxRangeId_t NVTX_API rec_start_w(const wchar_t *msg)
{
    nvtxEventAttributes_t a = {0};
    a.messageType = NVTX_MESSAGE_TYPE_UNICODE;
    a.message.unicode = msg;
    return rec_domain_start(NULL, &a);
}

static void NVTX_API rec_end(nvtxRangeId_t id) { rec_domain_end(NULL, id); }

/* ---- attaching -------------------------------------------------------- */

typedef struct rec_slot {
    unsigned int id;
    NvtxFunctionPointer fn;
} rec_slot;

#define SLOT(id, fn) {(id), (NvtxFunctionPointer)(fn)}

static const rec_slot core_slots[] = {
    SLOT(NVTX_CBID_CORE_MarkEx, rec_mark_ex),
    SLOT(NVTX_CBID_CORE_MarkA, rec_mark_a),
    SLOT(NVTX_CBID_CORE_MarkW, rec_mark_w),
    SLOT(NVTX_CBID_CORE_RangeStartEx, rec_start_ex),
    SLOT(NVTX_CBID_CORE_RangeStartA, rec_start_a),
    SLOT(NVTX_CBID_CORE_RangeStartW, rec_start_w),
    SLOT(NVTX_CBID_CORE_RangeEnd, rec_end),
    SLOT(NVTX_CBID_CORE_RangePushEx, rec_push_ex),
    SLOT(NVTX_CBID_CORE_RangePushA, rec_push_a),
    SLOT(NVTX_CBID_CORE_RangePushW, rec_push_w),
    SLOT(NVTX_CBID_CORE_RangePop, rec_pop),
};

static const rec_slot core2_slots[] = {
    SLOT(NVTX_CBID_CORE2_DomainMarkEx, rec_domain_mark),
    SLOT(NVTX_CBID_CORE2_DomainRangeStartEx, rec_domain_start),
    SLOT(NVTX_CBID_CORE2_DomainRangeEnd, rec_domain_end),
    SLOT(NVTX_CBID_CORE2_DomainRangePushEx, rec_domain_push),
    SLOT(NVTX_CBID_CORE2_DomainRangePop, rec_domain_pop),
    SLOT(NVTX_CBID_CORE2_DomainRegisterStringA, rec_register_a),
    SLOT(NVTX_CBID_CORE2_DomainRegisterStringW, rec_register_w),
    SLOT(NVTX_CBID_CORE2_DomainCreateA, rec_domain_create_a),
    SLOT(NVTX_CBID_CORE2_DomainCreateW, rec_domain_create_w),
    SLOT(NVTX_CBID_CORE2_DomainDestroy, rec_domain_destroy),
};

/* Fills the slots of one module; 0 when NVTX does not offer it. */
static int attach(const NvtxExportTableCallbacks *cb, NvtxCallbackModule module, const rec_slot *slots,
                  size_t n)
{
    NvtxFunctionTable table = NULL;
    unsigned int size = 0;
    if (!cb->GetModuleFunctionTable(module, &table, &size) || !table) return 0;
    /* table[1 .. size-1] point at the program's function pointers; [0] is unused */
    for (size_t i = 0; i < n; i++)
        if (slots[i].id < size && table[slots[i].id]) *table[slots[i].id] = slots[i].fn;
    return 1;
}

static int open_record_file(void)
{
    const char *name = getenv("NVTX_RECORD_FILE");
    if (!name || !*name) {
        fprintf(stderr, "nvtx_recorder: NVTX_RECORD_FILE is not set; not attaching\n");
        return 0;
    }
    char path[4096];
    size_t o = 0;
    for (const char *p = name; *p && o + 24 < sizeof path; p++) {
        if (p[0] == '%' && p[1] == 'p') {
            o += (size_t)snprintf(path + o, sizeof path - o, "%ld", (long)getpid());
            p++;
        } else {
            path[o++] = *p;
        }
    }
    path[o] = '\0';
    rec_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (rec_fd < 0) {
        fprintf(stderr, "nvtx_recorder: cannot open %s; not attaching\n", path);
        return 0;
    }
    return 1;
}

REC_EXPORT int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t get_export_table)
{
    if (!get_export_table) return 0;
    const NvtxExportTableCallbacks *cb = get_export_table(NVTX_ETID_CALLBACKS);
    if (!cb || cb->struct_size < sizeof *cb || !cb->GetModuleFunctionTable) return 0;
    const NvtxExportTableVersionInfo *vi = get_export_table(NVTX_ETID_VERSIONINFO);
    if (vi && vi->struct_size >= sizeof *vi && vi->SetInjectionNvtxVersion)
        vi->SetInjectionNvtxVersion(NVTX_VERSION);
    if (!open_record_file()) return 0; /* 0: NVTX unloads us and turns every call into a no-op */
    if (!attach(cb, NVTX_CB_MODULE_CORE2, core2_slots, sizeof core2_slots / sizeof core2_slots[0])) {
        close(rec_fd);
        rec_fd = -1;
        return 0;
    }
    attach(cb, NVTX_CB_MODULE_CORE, core_slots, sizeof core_slots / sizeof core_slots[0]);
    return 1;
}

__attribute__((destructor)) static void rec_close(void)
{
    pthread_mutex_lock(&rec_lock);
    if (rec_fd >= 0) close(rec_fd);
    rec_fd = -1;
    pthread_mutex_unlock(&rec_lock);
}
