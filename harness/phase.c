#include "phase.h"

#include <stdlib.h>
#include <string.h>

#include "nvtx.h"

/* The run's hooks (pb_phase_set_hooks); none until it sets them. */
static pb_phase_hooks hooks;

void pb_phase_set_hooks(const pb_phase_hooks *h) { hooks = h ? *h : (pb_phase_hooks){0}; }

pb_status pb_phase_timer_init(pb_phase_timer *t, const pb_backend *be, pb_device *dev)
{
    return pb_phase_timer_init_spans(t, be, dev, PB_MAX_PHASE_SPANS);
}

pb_status pb_phase_timer_init_spans(pb_phase_timer *t, const pb_backend *be, pb_device *dev, int cap)
{
    memset(t, 0, sizeof *t);
    t->be = be;
    t->dev = dev;
    t->open = -1;
    t->marks = calloc(2 * (size_t)cap, sizeof *t->marks);
    t->phase = calloc((size_t)cap, sizeof *t->phase);
    if (!t->marks || !t->phase) {
        pb_phase_timer_destroy(t);
        return pb_error(PB_ERR_NOMEM, "out of host memory: a phase timer of %d spans", cap);
    }
    t->cap = cap;
    for (int i = 0; i < 2 * cap; i++) {
        pb_status st = be->mark_create(dev, &t->marks[i]);
        if (st != PB_OK) {
            pb_phase_timer_destroy(t);
            return st;
        }
    }
    return PB_OK;
}

void pb_phase_timer_destroy(pb_phase_timer *t)
{
    for (int i = 0; t->marks && i < 2 * t->cap; i++)
        if (t->marks[i]) t->be->mark_destroy(t->dev, t->marks[i]);
    free(t->marks);
    free(t->phase);
    memset(t, 0, sizeof *t);
    t->open = -1;
}

void pb_phase_timer_reset(pb_phase_timer *t)
{
    t->spans = 0;
    t->open = -1;
}

pb_status pb_phase_begin(pb_phase_timer *t, pb_phase p)
{
    if (t->open >= 0)
        return pb_error(PB_ERR_INTERNAL, "phase %s begun inside phase %s", pb_phase_name(p),
                        pb_phase_name(t->phase[t->open]));
    if (t->spans >= t->cap) return pb_error(PB_ERR_INTERNAL, "more than %d phase spans in one step", t->cap);
    /* the run's hook (progress, then the test-only fault injection) sits
     * where every strategy passes, before the mark: a rank stalled in it
     * reads as stuck in this phase */
    if (hooks.begin) hooks.begin(p);
    int i = t->spans++;
    t->phase[i] = p;
    /* the range is pushed only once the mark is in, so a failed begin leaves
     * no range open to unbalance the step's */
    pb_status st = t->be->mark_record(t->dev, t->marks[2 * i]);
    if (st != PB_OK) return st;
    t->open = i;
    pb_nvtx_push(pb_phase_name(p));
    return PB_OK;
}

pb_status pb_phase_end(pb_phase_timer *t)
{
    if (t->open < 0) return pb_error(PB_ERR_INTERNAL, "phase ended with none open");
    int i = t->open;
    t->open = -1;
    if (hooks.end) hooks.end(t->phase[i]);
    pb_status st = t->be->mark_record(t->dev, t->marks[2 * i + 1]);
    pb_nvtx_pop();
    return st;
}

pb_status pb_phase_timer_collect(pb_phase_timer *t, pb_step_times *out)
{
    for (int i = 0; i < t->spans; i++) {
        double ms = 0.0;
        pb_status st = t->be->mark_elapsed_ms(t->dev, t->marks[2 * i], t->marks[2 * i + 1], &ms);
        if (st != PB_OK) return st;
        out->ms[t->phase[i]] += ms;
    }
    return PB_OK;
}

pb_status pb_phase_timer_replayed(pb_phase_timer *t, const pb_phase *phases, int first, int count)
{
    if (t->open >= 0 || t->spans != first || first + count > t->cap)
        return pb_error(PB_ERR_INTERNAL, "graph replay does not line up with the phase timer");
    for (int i = 0; i < count; i++) t->phase[first + i] = phases[i];
    t->spans = first + count;
    return PB_OK;
}
