/* The schedule replayed on measured op times (mp_replay.h). */
#include "mp_replay.h"

#include "../harness/shape.h" /* PB_MAX_STAGES */

double pb_mp_replay(const pb_mp_replay_stage *st, int p, int m, bool tied, double *scratch, double *bubble_ms)
{
    /* when each forward and backward of each stage ends, -1 not yet run */
    double *fwd_end = scratch, *bwd_end = scratch + (size_t)p * m;
    for (int i = 0; i < 2 * p * m; i++) scratch[i] = -1.0;
    double t[PB_MAX_STAGES];
    int next[PB_MAX_STAGES];
    for (int k = 0; k < p; k++) t[k] = st[k].pre_ms, next[k] = 0;
    /* run every stage as far as its inputs allow, until none moves */
    for (bool moved = true; moved;) {
        moved = false;
        for (int k = 0; k < p; k++)
            for (; next[k] < 2 * m; next[k]++) {
                int op = st[k].ops[next[k]], j = op >= 0 ? op : -op - 1;
                if (j >= m) return -1.0;
                double ready = 0.0;
                if (op >= 0 && k > 0) ready = fwd_end[(size_t)(k - 1) * m + j];
                if (op < 0 && k < p - 1) ready = bwd_end[(size_t)(k + 1) * m + j];
                if (ready < 0.0) break;
                double free_at = t[k] + (st[k].op_pre_ms ? st[k].op_pre_ms[next[k]] : 0.0);
                t[k] = (free_at > ready ? free_at : ready) + st[k].op_ms[next[k]];
                (op >= 0 ? fwd_end : bwd_end)[(size_t)k * m + j] = t[k];
                moved = true;
            }
    }
    for (int k = 0; k < p; k++)
        if (next[k] < 2 * m) return -1.0;
    double step = 0.0, ends = t[0] > t[p - 1] ? t[0] : t[p - 1];
    for (int k = 0; k < p; k++) {
        double end = (tied && (k == 0 || k == p - 1) ? ends : t[k]) + st[k].post_ms;
        if (end > step) step = end;
    }
    double bubble = 0.0;
    for (int k = 0; k < p; k++) {
        double busy = st[k].pre_ms + st[k].post_ms;
        for (int n = 0; n < 2 * m; n++) busy += st[k].op_ms[n] + (st[k].op_pre_ms ? st[k].op_pre_ms[n] : 0.0);
        bubble += (step - busy) / p;
    }
    *bubble_ms = bubble;
    return step;
}
