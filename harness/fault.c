#define _POSIX_C_SOURCE 200809L
#include "fault.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct {
    pb_fault_kind kind;
    int rank;
    int device; /* -1: the process's main thread (device 0 in dp) */
    int64_t step;
    pb_phase phase;
    double sleep_ms; /* ms=: kind=slow's or stretch's sleep per step; 0: the kind's default */
} fault;

static int my_rank;
static _Thread_local int my_device = -1; /* the device this thread drives */
static int64_t cur_step = -1;
static int64_t nan_step = -1;

static const char *const kind_names[] = {
    [PB_FAULT_DIE] = "die", [PB_FAULT_HANG] = "hang", [PB_FAULT_NAN] = "nan", [PB_FAULT_SKEW] = "skew",
    [PB_FAULT_SLOW] = "slow", [PB_FAULT_STRETCH] = "stretch"};

static bool parse_long(const char *v, long lo, long hi, long *out)
{
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < lo || n > hi) return false;
    *out = n;
    return true;
}

pb_status pb_fault_init(void)
{
    memset(&fault, 0, sizeof fault);
    const char *env = getenv("PB_FAULT");
    if (!env || !*env) return PB_OK;
    char buf[256];
    if (strlen(env) >= sizeof buf) return pb_usage_error("PB_FAULT is too long (test-only; docs/reliability.md)");
    snprintf(buf, sizeof buf, "%s", env);
    fault.phase = PB_PHASE_BWD;
    fault.device = -1;
    pb_fault_kind kind = PB_FAULT_NONE;
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq)
            return pb_usage_error("PB_FAULT: '%s' is not KEY=VALUE (keys: rank, device, step, phase, kind, ms)", item);
        *eq = '\0';
        const char *key = item, *val = eq + 1;
        long n = 0;
        if (strcmp(key, "rank") == 0) {
            if (!parse_long(val, 0, 1 << 20, &n)) return pb_usage_error("PB_FAULT: rank=%s is not a rank", val);
            fault.rank = (int)n;
        } else if (strcmp(key, "device") == 0) {
            if (!parse_long(val, 0, 1 << 20, &n)) return pb_usage_error("PB_FAULT: device=%s is not a device", val);
            fault.device = (int)n;
        } else if (strcmp(key, "step") == 0) {
            if (!parse_long(val, 0, 1L << 40, &n)) return pb_usage_error("PB_FAULT: step=%s is not a step", val);
            fault.step = n;
        } else if (strcmp(key, "phase") == 0) {
            int p = 0;
            while (p < PB_PHASE_COUNT && strcmp(pb_phase_name((pb_phase)p), val) != 0) p++;
            if (p == PB_PHASE_COUNT) return pb_usage_error("PB_FAULT: phase=%s is not a phase name", val);
            fault.phase = (pb_phase)p;
        } else if (strcmp(key, "ms") == 0) {
            char *end = NULL;
            double ms = strtod(val, &end);
            if (end == val || *end || !(ms > 0 && ms <= 60000))
                return pb_usage_error("PB_FAULT: ms=%s; allowed: 0 < ms <= 60000 (kind=slow's or stretch's sleep)", val);
            fault.sleep_ms = ms;
        } else if (strcmp(key, "kind") == 0) {
            for (int k = PB_FAULT_DIE; k <= PB_FAULT_STRETCH; k++)
                if (strcmp(kind_names[k], val) == 0) kind = (pb_fault_kind)k;
            if (kind == PB_FAULT_NONE) return pb_usage_error("PB_FAULT: kind=%s; allowed: die, hang, nan, skew, slow, stretch",
                                                         val);
        } else {
            return pb_usage_error("PB_FAULT: unknown key '%s' (keys: rank, device, step, phase, kind, ms)", key);
        }
    }
    if (kind == PB_FAULT_NONE) return pb_usage_error("PB_FAULT needs kind=die|hang|nan|skew|slow|stretch");
    fault.kind = kind;
    return PB_OK;
}

void pb_fault_set_rank(int rank) { my_rank = rank; }
void pb_fault_set_device(int device) { my_device = device; }
void pb_fault_set_step(int64_t step) { cur_step = step; }

/* without device=, the thread that drives no device or device 0 */
static bool my_thread(void)
{
    return my_rank == fault.rank && (fault.device < 0 ? my_device <= 0 : my_device == fault.device);
}

/* kind=slow and kind=stretch: every step from the fault's on, said once */
static void sleep_every_step(const char *what, double ms, const char *where, pb_phase phase)
{
    static atomic_flag said = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&said)) {
        fprintf(stderr, "bench: PB_FAULT (test-only): rank %d: %s: %g ms more %s phase %s from step %lld on\n",
                my_rank, what, ms, where, pb_phase_name(phase), (long long)fault.step);
        fflush(stderr);
    }
    long ns = (long)(ms * 1e6);
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    nanosleep(&ts, NULL);
}

bool pb_fault_at(pb_phase phase)
{
    if (fault.kind == PB_FAULT_NONE || fault.kind == PB_FAULT_SKEW || fault.kind == PB_FAULT_STRETCH ||
        phase != fault.phase || !my_thread())
        return false;
    if (fault.kind == PB_FAULT_SLOW) {
        if (cur_step >= 0 && cur_step >= fault.step)
            sleep_every_step("slow", fault.sleep_ms > 0 ? fault.sleep_ms : PB_FAULT_SLOW_MS, "before", phase);
        return false;
    }
    if (cur_step != fault.step) return false;
    char host[256] = "unknown", dev[32] = "";
    gethostname(host, sizeof host - 1);
    if (fault.device >= 0) snprintf(dev, sizeof dev, " (device %d)", fault.device);
    fprintf(stderr, "bench: PB_FAULT (test-only): rank %d on %s%s: %s at step %lld, phase %s\n", my_rank, host, dev,
            kind_names[fault.kind], (long long)cur_step, pb_phase_name(phase));
    fflush(stderr);
    switch (fault.kind) {
    case PB_FAULT_DIE:
        raise(SIGKILL);
        _exit(137);
    case PB_FAULT_HANG:
        for (;;) {
            struct timespec ts = {3600, 0};
            nanosleep(&ts, NULL);
        }
    case PB_FAULT_NAN:
        nan_step = cur_step;
        return true;
    case PB_FAULT_NONE:
    case PB_FAULT_SKEW:
    case PB_FAULT_SLOW:
    case PB_FAULT_STRETCH:
        break;
    }
    return false;
}

void pb_fault_ending(pb_phase phase)
{
    if (fault.kind != PB_FAULT_STRETCH || phase != fault.phase || !my_thread() || cur_step < 0 ||
        cur_step < fault.step)
        return;
    sleep_every_step("stretch", fault.sleep_ms > 0 ? fault.sleep_ms : PB_FAULT_STRETCH_MS, "inside", phase);
}

bool pb_fault_nan_step(void) { return nan_step >= 0 && nan_step == cur_step; }

bool pb_fault_skew_now(void)
{
    /* cur_step is -1 outside the run's steps (--verify's reference) */
    if (fault.kind != PB_FAULT_SKEW || cur_step < 0 || cur_step < fault.step || !my_thread()) return false;
    static atomic_flag said = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&said)) {
        fprintf(stderr, "bench: PB_FAULT (test-only): rank %d: skew: one gradient element scaled by %g from step "
                        "%lld on\n", my_rank, PB_FAULT_SKEW_FACTOR, (long long)fault.step);
        fflush(stderr);
    }
    return true;
}
