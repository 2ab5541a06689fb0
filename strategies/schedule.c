/* The pipelines' schedule and balanced split (schedule.h). */
#include "schedule.h"

void pb_sched_ops(pb_schedule sched, int p, int m, int k, int *ops)
{
    int n = 0;
    if (sched == PB_SCHED_GPIPE) {
        for (int j = 0; j < m; j++) ops[n++] = j;
        for (int j = m - 1; j >= 0; j--) ops[n++] = -(j + 1);
        return;
    }
    int w = p - k - 1 < m ? p - k - 1 : m;
    for (int j = 0; j < w; j++) ops[n++] = j;
    for (int i = 0; i < m - w; i++) {
        ops[n++] = w + i;
        ops[n++] = -(i + 1);
    }
    for (int j = m - w; j < m; j++) ops[n++] = -(j + 1);
}

int pb_sched_bwd_rank(pb_schedule sched, int m, int j) { return sched == PB_SCHED_GPIPE ? m - 1 - j : j; }

int pb_sched_slots(pb_schedule sched, int p, int m, int k)
{
    return sched == PB_SCHED_GPIPE || m < p - k ? m : p - k;
}

int pb_sched_send_slots(pb_schedule sched, int m) { return sched == PB_SCHED_GPIPE || m < 2 ? m : 2; }

static double block_flops(const pb_model *model, int b) { return model->block[b].flops; }

/* boundary k goes where the running sum comes closest to k/p of the total */
void pb_sched_balanced_split(const pb_model *model, int p, int *first)
{
    int n = model->n_blocks;
    double total = 0.0;
    for (int l = 0; l < n; l++) total += block_flops(model, l);
    first[0] = 0;
    first[p] = n;
    double run = 0.0;
    int l = 0;
    for (int k = 1; k < p; k++) {
        double target = total * k / p;
        int lo = first[k - 1] + 1, hi = n - (p - k);
        /* advance to lo */
        while (l < lo) run += block_flops(model, l++);
        int best = lo;
        double best_d = run > target ? run - target : target - run;
        double r = run;
        for (int b = lo + 1; b <= hi; b++) {
            r += block_flops(model, b - 1);
            double d = r > target ? r - target : target - r;
            if (d < best_d) {
                best_d = d;
                best = b;
            }
        }
        while (l < best) run += block_flops(model, l++);
        first[k] = best;
    }
}

void pb_sched_plan_extras(const pb_config *cfg, const pb_model *model, const int *first, int p, int k, double mb,
                          double len, double e, pb_mem_parts *dev)
{
    int m = cfg->microbatches;
    if (m > 1) dev->grads += 4.0 * len; /* gscratch */
    if (k > 0) dev->acts += e * mb * pb_sched_send_slots(cfg->schedule, m) * (double)model->block[first[k]].in_elems;
    if (model->n_tied && p > 1 && (k == 0 || k == p - 1)) dev->grads += 4.0 * (double)model->n_tied;
}
